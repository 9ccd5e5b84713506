//! The connection table: every connection the engine has, dialed or accepted, from dial to
//! close — its direction, what the handshake found, and keepalive bookkeeping. What other
//! parts keep per connection (seed, reconciliation and admission state) they keep
//! themselves, keyed by [`ConnId`].

use crate::Millis;
use crate::group::Group;
use crate::id::NodeId;
use crate::identity::{Author, PublicKey};
use crate::peer::{PeerKind, PeerRecord};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// A connection handle, chosen by the engine for every connection (dialed or accepted) so that
/// the engine and its driver always agree on names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Which protocol a connection speaks, as far as the engine knows yet. (The API shows
/// them as `"v1"` and `"v2"`, the names they had when hearsay was the seed's second
/// version.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    #[serde(rename = "pending")]
    Pending,
    /// The seed's protocol.
    #[serde(rename = "v1")]
    Seed,
    /// hearsay's own.
    #[serde(rename = "v2")]
    Hearsay,
}

/// A hearsay peer, as its handshake described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hearsay {
    pub id: NodeId,
    /// The key it proved it holds.
    pub key: PublicKey,
    /// Which run of that peer's process this is (see `Hello::run`).
    pub run: Option<crate::identity::Nonce>,
    pub kind: PeerKind,
    /// How to dial it (nodes), canonical address first.
    pub record: Option<PeerRecord>,
    /// For a page: the node that served it.
    pub home: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Outbound, transport not open yet.
    Dialing,
    Handshake {
        since: Millis,
    },
    /// Inbound: the dialer's `HELLO` is read and answered; its proof of identity (`PROOF`)
    /// has not come yet.
    Proving {
        since: Millis,
        hello: Box<crate::handshake::Hello>,
        key: PublicKey,
    },
    /// A seed (v1) peer.
    Seed,
    Hearsay(Hearsay),
}

#[derive(Debug)]
pub struct Conn {
    pub direction: Direction,
    /// The address we dialed (outbound only).
    pub dialed: Option<String>,
    pub state: State,
    pub connected_at: Millis,
    pub last_heard: Millis,
    /// A keepalive probe is out, with its nonce.
    pub ping_sent: Option<u32>,
    pub bad_frames: u32,
    /// Frames to send once the handshake is done (asked for while dialing).
    pub queued: Vec<Arc<str>>,
    /// The node membership meant to reach with this dial, if it was membership's.
    pub intended: Option<NodeId>,
    /// Membership has wanted this peer at some point.
    pub wanted: bool,
    /// Since when membership has had no use for this peer.
    pub unwanted_since: Option<Millis>,
    /// The client address an inbound connection came from, if it is capped (see
    /// `limits::KindCaps`).
    pub from: Option<String>,
    /// What this end sent in its `HELLO` for the other to sign.
    pub nonce: crate::identity::Nonce,
    /// A browser opened it for another site (the driver says so): it may not be a seed.
    pub foreign: bool,
    /// The address group an inbound connection came from, as the driver saw it (loopback
    /// included, unlike `from`).
    pub source: Option<Group>,
    /// The node whose link this connection, still in its handshake, takes over: the peer
    /// closed the one it had as a duplicate of this (see `Links::closed`).
    pub relinks: Option<NodeId>,
}

impl Conn {
    pub fn new(direction: Direction, dialed: Option<String>, state: State, now: Millis) -> Self {
        Self {
            direction,
            dialed,
            state,
            connected_at: now,
            last_heard: now,
            ping_sent: None,
            bad_frames: 0,
            from: None,
            nonce: Default::default(),
            foreign: false,
            source: None,
            queued: Vec::new(),
            intended: None,
            wanted: false,
            unwanted_since: None,
            relinks: None,
        }
    }

    /// The address group this connection counts under (see [`crate::group`]): where an
    /// inbound one came from, or the host an outbound one dialed.
    pub fn group(&self) -> Option<Group> {
        self.source
            .or_else(|| self.dialed.as_deref().and_then(Group::of_address))
    }

    pub fn hearsay(&self) -> Option<&Hearsay> {
        match &self.state {
            State::Hearsay(h) => Some(h),
            _ => None,
        }
    }

    pub fn node_id(&self) -> Option<NodeId> {
        self.hearsay().map(|h| h.id)
    }

    pub fn is_hearsay(&self) -> bool {
        matches!(self.state, State::Hearsay(_))
    }

    pub fn protocol(&self) -> Protocol {
        match self.state {
            State::Dialing | State::Handshake { .. } | State::Proving { .. } => Protocol::Pending,
            State::Seed => Protocol::Seed,
            State::Hearsay(_) => Protocol::Hearsay,
        }
    }

    /// The canonical address this peer is known by, if any.
    pub fn address(&self) -> Option<&str> {
        match &self.state {
            State::Hearsay(h) => h.record.as_ref().map(|r| r.address.as_str()),
            _ => self.dialed.as_deref(),
        }
    }
}

/// Every connection, with an index of hearsay peers by node id (one connection per node).
#[derive(Debug, Default)]
pub struct Conns {
    conns: BTreeMap<ConnId, Conn>,
    by_node: HashMap<NodeId, ConnId>,
    next: u64,
}

impl Conns {
    /// Adds a connection under a fresh id.
    pub fn insert(&mut self, conn: Conn) -> ConnId {
        self.next += 1;
        let id = ConnId(self.next);
        self.conns.insert(id, conn);
        id
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(&id)
    }

    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        if let Some(node) = c.node_id()
            && self.by_node.get(&node) == Some(&id)
        {
            self.by_node.remove(&node);
        }
        Some(c)
    }

    /// The handshake on `id` completed with `peer`; it becomes the node's connection unless
    /// `register` is false (a second connection from a node that already has one).
    pub fn established(&mut self, id: ConnId, peer: Hearsay, register: bool) {
        if register {
            self.by_node.insert(peer.id, id);
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.state = State::Hearsay(peer);
        }
    }

    /// Takes the frames queued on `id` for after its handshake.
    pub fn take_queued(&mut self, id: ConnId) -> Vec<Arc<str>> {
        self.conns
            .get_mut(&id)
            .map(|c| std::mem::take(&mut c.queued))
            .unwrap_or_default()
    }

    /// Forgets which connection `node` is on (one is about to replace it).
    pub fn unregister(&mut self, node: NodeId) {
        self.by_node.remove(&node);
    }

    /// The connection to hearsay peer `node`, if there is one.
    pub fn to_node(&self, node: NodeId) -> Option<ConnId> {
        self.by_node.get(&node).copied()
    }

    /// How many connections other than `conn` came from `conn`'s client address and are of
    /// `kind` (`None`: seeds), those still proving who they are included (they hold their
    /// place meanwhile). None for a connection that is not capped.
    pub fn held_from(&self, conn: ConnId, kind: Option<PeerKind>) -> usize {
        let Some(from) = self.get(conn).and_then(|c| c.from.as_deref()) else {
            return 0;
        };
        self.conns
            .iter()
            .filter(|&(&other, c)| {
                other != conn
                    && c.from.as_deref() == Some(from)
                    && match (&c.state, kind) {
                        (State::Hearsay(h), Some(k)) => h.kind == k,
                        (State::Proving { hello, .. }, Some(k)) => hello.kind == k,
                        (State::Seed, None) => true,
                        _ => false,
                    }
            })
            .count()
    }

    /// Whether a page homed at node `home` and signing as `author` is linked here.
    pub fn homes_page(&self, home: NodeId, author: &Author) -> bool {
        let Some(key) = author.key() else {
            return false;
        };
        self.conns.values().any(|c| {
            c.hearsay().is_some_and(|h| {
                h.kind == PeerKind::Browser && h.home == Some(home) && &h.key == key
            })
        })
    }

    /// Whether the peer on `conn` is a page that signs as `author`.
    pub fn is_page_of(&self, conn: ConnId, author: &Author) -> bool {
        self.get(conn)
            .and_then(Conn::hearsay)
            .is_some_and(|h| h.kind == PeerKind::Browser && *author == Author::Key(h.key))
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.conns.iter().map(|(&id, c)| (id, c))
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
