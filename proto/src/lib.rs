//! hearsay's protocol, with no I/O: the wire format and the engine that native nodes and
//! browser peers both drive.
//!
//! The engine ([`engine`]) only composes parts. Each part is a module with its own state,
//! timers and frames, kept under one contract ([`part::Part`]: it takes its inputs through
//! its own methods, queues its outputs for the engine to poll, keeps its own deadlines), and
//! the engine routes every part's outputs in one place:
//!
//! - [`links`]: every connection from dial to close — the handshake ([`handshake`]: each
//!   side proves it holds the key its id derives from), keepalive ([`keepalive`]), the
//!   addresses dialed and their backoff ([`book`]), the connection table ([`conns`]), and the
//!   door: caps per client address, refusals, bad frames.
//! - [`membership`]: HyParView — a small active view of neighbours, a passive view to repair
//!   it from, joins by random walk, periodic shuffles, each view capped per address group
//!   ([`group`]) against eclipse, a group many keys link from (or the map lists many nodes
//!   in, confirmed by a dial) held to one slot and swapped out; the slowest neighbours
//!   swapped for faster nodes, timed by their handshakes (X-BOT's idea), within those caps;
//!   pages are held as clients. The engine lends it the map as a [`membership::Directory`]
//!   and tells it each handshake's round trip.
//! - [`tree`]: which links are the broadcast tree's — the root's beacons, each node's parent,
//!   the root's walk to the graph's centre ([`centre`]); who may be root is
//!   [`succession`]'s: beacons signed by their root, a live root displaced only by its own
//!   word.
//! - [`broadcast`]: Plumtree — messages pushed over the tree's links, ids announced lazily on
//!   the others, `GRAFT` to repair (flooding is kept as a strategy for baselines and tiny
//!   networks).
//! - [`seed`]: what seed (v1) nodes of the tutorial network get and are told.
//! - [`sync`]: range-based set reconciliation, the safety net under broadcast.
//! - [`map`]: the network map, from records each peer sends at a bounded rate.
//! - [`history`]: the messages held under the retention window — which are refused as too
//!   old or stamped in the future, when held ones are evicted, where reconciliation starts.
//! - [`admission`]: whether a message that arrives is taken (id, size, window, a sender's
//!   rate, the author's signature, the origin's quota), as a verdict the engine applies.
//!
//! Underneath: [`id`] (node and message ids), [`journey`] (a message's journey as a page replays it), [`group`] (address groups, the unit a peer's
//! cost is counted in where keys cost nothing), [`identity`] (keys, signatures, authors, and
//! the ids derived from keys), [`message`] (a signed message), [`peer`] (kinds of
//! peer, dialable records, canonical addresses), [`wire`] (the JSON frames, nested by part),
//! [`limits`] (token buckets and the default rate limits), [`close`] (typed close reasons),
//! [`dedup`] (the one bounded expiring set), [`timers`] (typed deadlines), [`status`] (what
//! an engine reports), [`driver`] (what it asks of its driver). [`sim`] runs many engines on
//! a virtual clock, for tests and `hearsay sim`.
//!
//! ## The driver contract
//!
//! A driver (the native node, the page, the simulator) owns the sockets and the clock. Time is
//! milliseconds since the Unix epoch ([`Millis`]), passed in with every call and never read
//! here, so the crate builds for wasm32.
//!
//! 1. Feed every event to the engine with the current time: [`Engine::accepted_from`] for an
//!    inbound socket, with the address group it came from (the engine names it), [`Engine::opened`] or [`Engine::dial_failed`]
//!    for a dial it asked for, [`Engine::frame`] for each text frame (or
//!    [`Engine::inbound`] for one read and checked off the engine's thread, see
//!    [`wire::Inbound`]), [`Engine::transport_pong`], [`Engine::closed`],
//!    [`Engine::publish`], [`Engine::add_peer`], and [`Engine::backed_up`] when a peer's
//!    send queue backs up or drains (a driver with bounded queues should read its peers only
//!    as fast as it can pass their traffic on).
//! 2. After every call, drain every [`Output`] — [`Engine::drain`] does it through a
//!    [`Driver`], including the follow-ups: answering a [`Output::Fetch`] with
//!    [`Engine::provide`] and closing a peer whose send queue is full.
//! 3. Call [`Engine::handle_timeout`] when [`Engine::poll_timeout`] says (the earliest real
//!    deadline of any part), then drain again.
//!
//! Data flow: socket bytes → [`Engine::inbound`] → `links` (the handshake, the door) → the
//! part the frame is for → outputs → `Send` to other sockets, `Deliver` to the store and the
//! page.

#![forbid(unsafe_code)]

pub mod admission;
pub mod book;
pub mod broadcast;
pub mod centre;
pub mod close;
pub mod config;
pub mod conns;
pub mod dedup;
pub mod driver;
pub mod engine;
pub mod group;
pub mod handshake;
pub mod history;
pub mod id;
pub mod identity;
pub mod journey;
pub mod keepalive;
pub mod limits;
pub mod links;
pub mod map;
pub mod membership;
pub mod message;
pub mod part;
pub mod peer;
pub mod seed;
pub mod sim;
pub mod status;
pub mod succession;
pub mod sync;
pub mod timers;
pub mod tree;
pub mod wire;

pub use admission::PublishError;
pub use book::{AddressError, LinkInfo, LinkState};
pub use broadcast::Strategy;
pub use close::CloseReason;
pub use conns::{ConnId, Direction, Protocol};
pub use engine::{Config, Driver, Engine, Output};
pub use group::Group;
pub use history::History;
pub use id::{MsgId, NodeId};
pub use identity::{Author, Identity, Keypair, Nonce, PublicKey, SEED_AUTHOR, Signature, Tab};
pub use limits::{KindCaps, Limits, Rate, TokenBucket};
pub use message::Message;
pub use peer::{PeerKind, PeerRecord, canonical_address};
pub use status::{PeerInfo, Stats};
pub use wire::Frame;

/// Milliseconds since the Unix epoch, as the driver's clock (real or virtual) tells it.
pub type Millis = u64;
