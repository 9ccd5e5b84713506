//! Seed (v1) compatibility: the rules that let the tutorial network's Node.js nodes join a
//! hearsay mesh and see every message exactly once.
//!
//! What a seed does, and what follows from it:
//! - It sends `SOCKETS` (the addresses it has dialed) on every new connection and dials every
//!   address it hears of that it has not dialed. So it ends up linked to every hearsay node it
//!   is told of, transitively. We tell it one canonical address per hearsay node we know
//!   ([`Seeds::sockets_for`]), never a node it already reached under another address (it
//!   compares strings, and two links to one node would bring it everything twice), never ours.
//! - It never forwards, so each message must reach it from exactly one node: its origin
//!   ([`should_receive`]). A page cannot be dialed by a seed, so the page's home node passes
//!   the page's messages on. Text that came from a seed is never sent to one: it sent it to
//!   all its sockets itself.
//! - A hearsay node that dials a seed introduces itself (its address and the nodes it knows)
//!   and hangs up, so the seed dials back and keeps exactly one link to it
//!   ([`Seeds::introduction`]).
//!
//! A seed sends its text to every node it is linked to, so seed text enters the network at
//! many places at once and travels several parts of the tree; that costs copies, never a
//! wrong tree, as only beacons prune (see `broadcast`).

use crate::conns::ConnId;
use crate::id::NodeId;
use crate::message::Message;
use crate::peer::{PeerRecord, canonical_address};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
struct SeedConn {
    /// The address we dialed it at, if we did.
    dialed: Option<String>,
    /// Addresses already sent to it in `SOCKETS`.
    told: Vec<String>,
    /// Addresses it told us it has dialed.
    seed_dialed: Vec<String>,
}

/// Per-connection state of every seed peer.
#[derive(Debug, Default)]
pub struct Seeds {
    conns: BTreeMap<ConnId, SeedConn>,
}

impl Seeds {
    pub fn opened(&mut self, conn: ConnId, dialed: Option<String>) {
        self.conns.insert(
            conn,
            SeedConn {
                dialed,
                ..SeedConn::default()
            },
        );
    }

    pub fn closed(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    /// The seed on `conn` says it has dialed `addresses`: remember it, so we never name a
    /// node to it that it already reached under another address.
    pub fn sockets_received(&mut self, conn: ConnId, addresses: &[String]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for a in addresses.iter().filter_map(|a| canonical_address(a)) {
            if !c.seed_dialed.contains(&a) {
                c.seed_dialed.push(a);
            }
        }
    }

    /// What to tell the seed on `conn`: the canonical address of each hearsay node in
    /// `known`, except nodes it has already dialed under any of their addresses, and never
    /// `me`. Seed addresses are never passed on: an inbound seed's own address is unknown to
    /// us, so passing them on could make a seed dial itself.
    pub fn sockets_for<'a>(
        &self,
        conn: ConnId,
        me: NodeId,
        known: impl Iterator<Item = &'a PeerRecord>,
    ) -> Vec<String> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for node in known {
            let reached = node
                .addresses()
                .any(|a| c.seed_dialed.contains(a) || c.dialed.as_ref() == Some(a));
            if node.id != me && !reached && !out.contains(&node.address) {
                out.push(node.address.clone());
            }
        }
        out
    }

    /// `SOCKETS` for the seed on `conn` if it would learn anything from it (or has had none
    /// yet); remembers what it was told.
    pub fn sockets_update<'a>(
        &mut self,
        conn: ConnId,
        me: NodeId,
        known: impl Iterator<Item = &'a PeerRecord>,
    ) -> Option<Vec<String>> {
        let addresses = self.sockets_for(conn, me, known);
        let c = self.conns.get_mut(&conn)?;
        let fresh = addresses.iter().any(|a| !c.told.contains(a));
        if fresh || c.told.is_empty() {
            for a in &addresses {
                if !c.told.contains(a) {
                    c.told.push(a.clone());
                }
            }
            Some(addresses)
        } else {
            None
        }
    }

    /// We dialed the seed on `conn` and will hang up: the `SOCKETS` that introduces us (our
    /// address first, unless it has dialed us already) and the nodes we know.
    pub fn introduction<'a>(
        &self,
        conn: ConnId,
        me: NodeId,
        own: &PeerRecord,
        known: impl Iterator<Item = &'a PeerRecord>,
    ) -> Vec<String> {
        let mut addresses = self.sockets_for(conn, me, known);
        let has_us = self
            .conns
            .get(&conn)
            .is_some_and(|c| own.addresses().any(|a| c.seed_dialed.contains(a)));
        if !has_us {
            addresses.insert(0, own.address.clone());
        }
        addresses
    }
}

/// Whether the seeds linked to this node get `msg`: what this node published (`own`), and
/// what a page homed here published (`homed_here`); never what came from a seed.
pub fn should_receive(msg: &Message, own: bool, homed_here: bool) -> bool {
    own || (!msg.author.is_seed() && homed_here)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, addresses: &[&str]) -> PeerRecord {
        PeerRecord {
            id: NodeId::from_bytes([n; 16]),
            address: addresses[0].into(),
            aliases: addresses[1..].iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn a_seed_is_never_told_a_node_it_reached_by_another_address_nor_us() {
        let me = NodeId::from_bytes([1; 16]);
        let known = [
            record(1, &["ws://me:3000", "ws://me:3001"]),
            record(2, &["ws://b:3000", "ws://b:3001"]),
            record(3, &["ws://c:3000"]),
        ];
        let mut s = Seeds::default();
        s.opened(ConnId(7), None);
        s.sockets_received(ConnId(7), &["ws://me:3001".into(), "WS://B:3001/".into()]);
        assert_eq!(
            s.sockets_update(ConnId(7), me, known.iter()),
            Some(vec!["ws://c:3000".to_owned()])
        );
        assert_eq!(
            s.sockets_update(ConnId(7), me, known.iter()),
            None,
            "nothing new to say"
        );
    }

    #[test]
    fn only_the_origin_or_a_pages_home_passes_a_message_to_seeds() {
        let key = crate::identity::Keypair::from_secret([1; 32]);
        let signed = Message::signed(&key, 1, 0, "x".into());
        assert!(should_receive(&signed, true, false));
        assert!(should_receive(&signed, false, true));
        assert!(!should_receive(&signed, false, false));
        let seed_text = Message::from_seed("x".into(), 0);
        assert!(!should_receive(&seed_text, false, true));
    }
}
