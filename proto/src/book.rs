//! The address book: addresses this peer dials and how each stands.
//!
//! *Pinned* addresses come from the operator (`--peer`, `/add`) or, for a page, the node that
//! served it. They are dialed until they answer, with exponential backoff and jitter; after a
//! contact they are revisited every so often (a node that restarted alone is found again this
//! way, and a seed that forgot us is reminded). Other dials — the ones membership asks for —
//! are entered here while they last, so status pages can show every link and why it is down.

use crate::Millis;
use crate::close::CloseReason;
use crate::conns::ConnId;
use crate::id::NodeId;
use crate::part::Part;
use crate::peer::canonical_address;
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// How an address we dial stands, for a page that shows each link and why it is down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum LinkState {
    /// Dial or handshake under way.
    Connecting,
    Open,
    /// Down; the next attempt is due at `at` (ms since the epoch).
    Retrying {
        at: Millis,
    },
    /// Known, but not dialed now (a seed that dials us, or a contact to revisit later).
    Idle,
}

/// One address this peer dials and how its link stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkInfo {
    pub address: String,
    pub node: Option<NodeId>,
    /// Given by the operator (or, in a browser, the node that served the page).
    pub pinned: bool,
    pub state: LinkState,
    pub failures: u32,
    /// Why the last attempt failed or the last link ended, if it did.
    pub last_error: Option<String>,
    /// A link there has opened at some point (a handshake, or a seed's answer).
    pub reached: bool,
}

/// Why an address given to [`AddressBook::pin`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address must be a ws:// or wss:// URL, got \"{0}\"")]
    NotWebSocket(String),
    #[error("{0} is this node's own address")]
    OwnAddress(String),
}

#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Millis,
    pub max: Millis,
    /// After a contact, when to dial a pinned address again if it is not linked (a quarter
    /// of it the first time after a link ends, then half, then all of it).
    pub revisit: Millis,
}

#[derive(Debug, Default)]
struct Entry {
    /// The node found there, once a handshake has told us.
    node: Option<NodeId>,
    pinned: bool,
    /// A seed node answered there.
    v1: bool,
    /// Our own address (configured, or found by dialing ourselves).
    is_self: bool,
    failures: u32,
    /// Revisits since the node there was last linked.
    revisits: u32,
    next_attempt: Millis,
    conn: Option<ConnId>,
    /// The handshake on `conn` completed.
    open: bool,
    /// A handshake (or a seed's answer) has completed there at some point.
    reached: bool,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct AddressBook {
    entries: BTreeMap<String, Entry>,
    backoff: Backoff,
    /// Addresses due for a dial, for the engine to dial.
    due: VecDeque<String>,
}

impl AddressBook {
    /// A book that knows `own` addresses (never dialed) belong to `me`.
    pub fn new(own: &[String], me: NodeId, backoff: Backoff) -> Self {
        let entries = own
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    Entry {
                        is_self: true,
                        node: Some(me),
                        ..Entry::default()
                    },
                )
            })
            .collect();
        Self {
            entries,
            backoff,
            due: VecDeque::new(),
        }
    }

    /// Pins `address`: it is dialed now and kept dialed. Returns its canonical form.
    pub fn pin(&mut self, address: &str, now: Millis) -> Result<String, AddressError> {
        let canonical = canonical_address(address)
            .ok_or_else(|| AddressError::NotWebSocket(address.to_owned()))?;
        let e = self.entries.entry(canonical.clone()).or_default();
        if e.is_self {
            return Err(AddressError::OwnAddress(canonical));
        }
        e.pinned = true;
        e.next_attempt = now;
        e.failures = 0;
        Ok(canonical)
    }

    /// The operator's pin on `address` is lifted: it is no longer redialed, and forgotten
    /// unless a link there is open. False if it was not pinned.
    pub fn unpin(&mut self, address: &str) -> bool {
        let Some(e) = self.entries.get_mut(address).filter(|e| e.pinned) else {
            return false;
        };
        e.pinned = false;
        if e.conn.is_none() && !e.is_self {
            self.entries.remove(address);
        }
        true
    }

    pub fn is_pinned(&self, address: &str) -> bool {
        self.entries.get(address).is_some_and(|e| e.pinned)
    }

    pub fn is_self(&self, address: &str) -> bool {
        self.entries.get(address).is_some_and(|e| e.is_self)
    }

    /// A dial of `address` reached ourselves.
    pub fn mark_self(&mut self, address: &str, me: NodeId) {
        let e = self.entries.entry(address.to_owned()).or_default();
        e.is_self = true;
        e.node = Some(me);
    }

    /// Whether a dial of `address` (or of `node`, under any address) is under way.
    pub fn dialing(&self, address: &str, node: Option<NodeId>) -> Option<ConnId> {
        self.entries
            .iter()
            .find(|(a, e)| {
                e.conn.is_some()
                    && !e.open
                    && (a.as_str() == address || (node.is_some() && e.node == node))
            })
            .and_then(|(_, e)| e.conn)
    }

    /// Pinned addresses due for a dial. `linked` says whether a node is linked already; such
    /// an address is looked at again after the revisit interval.
    pub fn due(&mut self, now: Millis, linked: impl Fn(NodeId) -> bool) -> Vec<String> {
        let mut nodes: Vec<NodeId> = Vec::new();
        let mut due = Vec::new();
        let dialing: Vec<NodeId> = self
            .entries
            .values()
            .filter(|e| e.conn.is_some() && !e.open)
            .filter_map(|e| e.node)
            .collect();
        for (address, e) in &mut self.entries {
            if !e.pinned || e.is_self || e.conn.is_some() || e.next_attempt > now {
                continue;
            }
            if let Some(id) = e.node {
                if linked(id) {
                    e.revisits = 0;
                    e.next_attempt = now + self.backoff.revisit;
                    continue;
                }
                // Two pinned addresses of one node: dial only one of them.
                if nodes.contains(&id) || dialing.contains(&id) {
                    e.next_attempt = now + self.backoff.initial;
                    continue;
                }
                nodes.push(id);
            }
            due.push(address.clone());
        }
        due
    }

    /// When the next pinned address falls due, if one is waiting.
    pub fn next_due(&self) -> Option<Millis> {
        self.entries
            .values()
            .filter(|e| e.pinned && !e.is_self && e.conn.is_none())
            .map(|e| e.next_attempt)
            .min()
    }

    /// A dial of `address` started on `conn`.
    pub fn dial_started(&mut self, address: &str, conn: ConnId, node: Option<NodeId>) {
        let e = self.entries.entry(address.to_owned()).or_default();
        e.conn = Some(conn);
        e.open = false;
        if e.node.is_none() {
            e.node = node;
        }
    }

    /// The dial on `conn` to `address` failed.
    pub fn dial_failed(
        &mut self,
        address: &str,
        conn: ConnId,
        reason: &str,
        now: Millis,
        rng: &mut impl Rng,
    ) {
        let Some(e) = self.entries.get_mut(address) else {
            return;
        };
        if e.conn == Some(conn) {
            e.conn = None;
        }
        if !e.pinned {
            self.entries.remove(address);
            return;
        }
        e.last_error = Some(reason.to_owned());
        e.failures += 1;
        e.next_attempt = now + backoff(&self.backoff, e.failures, rng);
    }

    /// The handshake on `conn` completed with `node`, reachable at `addresses` (and at
    /// `dialed`, if we dialed it).
    pub fn established(
        &mut self,
        conn: ConnId,
        dialed: Option<&str>,
        node: NodeId,
        addresses: &[String],
    ) {
        for address in dialed
            .into_iter()
            .chain(addresses.iter().map(String::as_str))
        {
            let is_dialed = dialed == Some(address);
            let Some(e) = self.entries.get_mut(address) else {
                continue;
            };
            e.node = Some(node);
            e.failures = 0;
            e.v1 = false;
            e.last_error = None;
            if is_dialed {
                e.conn = Some(conn);
                e.open = true;
                e.reached = true;
            }
        }
    }

    /// A seed answered at `address`: it will dial us; revisit it only now and then.
    pub fn seed_answered(&mut self, address: &str, now: Millis) {
        if let Some(e) = self.entries.get_mut(address) {
            e.v1 = true;
            e.reached = true;
            e.failures = 0;
            e.conn = None;
            e.open = false;
            e.next_attempt = now + self.backoff.revisit;
        }
    }

    /// The connection `conn` (dialed at `dialed`, if we dialed it) ended. `failure` says it
    /// ended badly (with `why`): a pinned address is then redialed soon, otherwise revisited.
    pub fn closed(
        &mut self,
        conn: ConnId,
        dialed: Option<&str>,
        why: Option<&CloseReason>,
        text: &str,
        now: Millis,
        rng: &mut impl Rng,
    ) {
        let Some(address) = dialed else { return };
        let Some(e) = self.entries.get_mut(address) else {
            return;
        };
        if e.conn != Some(conn) {
            return;
        }
        e.conn = None;
        let was_open = e.open;
        e.open = false;
        if !e.pinned {
            self.entries.remove(address);
            return;
        }
        let failure = why.is_none_or(CloseReason::is_failure);
        if failure {
            e.last_error = Some(text.to_owned());
        }
        e.next_attempt = if !was_open {
            e.failures += 1;
            now + backoff(&self.backoff, e.failures, rng)
        } else if failure {
            now + backoff(&self.backoff, 0, rng)
        } else {
            // A link that ended may have been the last between two parts of the network
            // (nodes that joined at once can wall themselves off from the rest before any
            // root is elected); the first revisits, soon, find out (`membership`, `merge`).
            let shift = 2u32.saturating_sub(e.revisits);
            e.revisits = e.revisits.saturating_add(1);
            now + (self.backoff.revisit >> shift)
        };
    }

    /// Every address in the book (not our own) and how its link stands. `linked` says
    /// whether a node is linked over some other connection.
    pub fn links(&self, linked: impl Fn(NodeId) -> bool) -> Vec<LinkInfo> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.is_self)
            .map(|(address, e)| {
                let state = match e.conn {
                    Some(_) if e.open => LinkState::Open,
                    Some(_) => LinkState::Connecting,
                    None if e.node.is_some_and(&linked) => LinkState::Open,
                    None if e.v1 => LinkState::Idle,
                    None if e.failures > 0 || e.last_error.is_some() => {
                        LinkState::Retrying { at: e.next_attempt }
                    }
                    None => LinkState::Idle,
                };
                LinkInfo {
                    address: address.clone(),
                    node: e.node,
                    pinned: e.pinned,
                    state,
                    failures: e.failures,
                    last_error: e.last_error.clone(),
                    reached: e.reached,
                }
            })
            .collect()
    }
}

fn backoff(b: &Backoff, failures: u32, rng: &mut impl Rng) -> Millis {
    let base = b
        .initial
        .saturating_mul(1u64 << failures.min(16))
        .min(b.max);
    base + rng.random_range(0..=base / 4)
}

/// The book as a part of the engine: its deadline is the earliest pinned address due for a
/// dial, and when it comes the due addresses are handed out to dial. It reads which nodes
/// are linked (a pinned node linked already is only revisited later).
impl Part for AddressBook {
    type Out = String;
    type Context<'a> = &'a dyn Fn(NodeId) -> bool;

    fn poll(&mut self) -> Option<String> {
        self.due.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.next_due()
    }

    fn handle_timeout(&mut self, now: Millis, linked: &dyn Fn(NodeId) -> bool) {
        let due = self.due(now, linked);
        self.due.extend(due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn book() -> AddressBook {
        AddressBook::new(
            &["ws://me:1".into()],
            NodeId::from_bytes([1; 16]),
            Backoff {
                initial: 100,
                max: 1_000,
                revisit: 30_000,
            },
        )
    }

    #[test]
    fn pinned_addresses_back_off_on_failure_and_are_revisited_after_contact() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut b = book();
        assert_eq!(
            b.pin("ws://me:1/", 0),
            Err(AddressError::OwnAddress("ws://me:1".into()))
        );
        let a = b.pin("WS://Peer:2", 0).unwrap();
        assert_eq!(b.due(0, |_| false), vec![a.clone()]);
        b.dial_started(&a, ConnId(1), None);
        assert!(b.due(0, |_| false).is_empty());
        b.dial_failed(&a, ConnId(1), "refused", 0, &mut rng);
        let at = b.next_due().unwrap();
        assert!((200..=250).contains(&at), "{at}");
        assert!(matches!(
            b.links(|_| false)[0].state,
            LinkState::Retrying { .. }
        ));
        b.dial_started(&a, ConnId(2), None);
        let peer = NodeId::from_bytes([2; 16]);
        b.established(ConnId(2), Some(&a), peer, std::slice::from_ref(&a));
        assert_eq!(b.links(|_| false)[0].state, LinkState::Open);
        // It left our view: back in 7.5 s, then 15 s, then every 30 s, and not shown as an
        // error.
        let mut at = 1_000;
        for (conn, wait) in [(2, 7_500), (3, 15_000), (4, 30_000), (5, 30_000)] {
            if conn > 2 {
                assert_eq!(b.due(at, |_| false), vec![a.clone()]);
                b.dial_started(&a, ConnId(conn), None);
                b.established(ConnId(conn), Some(&a), peer, std::slice::from_ref(&a));
            }
            let reason = CloseReason::NotANeighbour;
            b.closed(ConnId(conn), Some(&a), Some(&reason), "x", at, &mut rng);
            assert_eq!(b.next_due(), Some(at + wait));
            at += wait;
        }
        assert_eq!(b.links(|_| false)[0].last_error, None);
        assert_eq!(b.links(|id| id == peer)[0].state, LinkState::Open);
        // Linked over another connection: not dialed, looked at again later; once linked,
        // the next loss is looked at soon again.
        assert!(b.due(at, |id| id == peer).is_empty());
        assert_eq!(b.next_due(), Some(at + 30_000));
        at += 30_000;
        assert_eq!(b.due(at, |_| false), vec![a.clone()]);
        b.dial_started(&a, ConnId(6), None);
        b.established(ConnId(6), Some(&a), peer, std::slice::from_ref(&a));
        let reason = CloseReason::NotANeighbour;
        b.closed(ConnId(6), Some(&a), Some(&reason), "x", at, &mut rng);
        assert_eq!(b.next_due(), Some(at + 7_500));
    }

    #[test]
    fn other_dials_are_forgotten_when_they_end() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut b = book();
        b.dial_started("ws://x:1", ConnId(5), None);
        assert_eq!(b.dialing("ws://x:1", None), Some(ConnId(5)));
        b.dial_failed("ws://x:1", ConnId(5), "refused", 0, &mut rng);
        assert!(b.links(|_| false).is_empty());
    }
}
