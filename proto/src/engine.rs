//! The gossip engine: one node's protocol state, with no I/O and no clock of its own.
//!
//! The driver feeds it events — a connection accepted or opened, a text frame received, a
//! connection closed, a dial failed, a local publish, time passing — each with the current
//! time, and then drains [`Output`]s with [`Engine::poll_output`]: frames to send, addresses to
//! dial, connections to close, messages to deliver to the application. [`Engine::poll_timeout`]
//! says when to call [`Engine::handle_timeout`] next. Nothing here blocks or sleeps, so a test
//! can run hundreds of engines on a virtual clock (see `sim`).
//!
//! Connections move through `Dialing` (outbound, transport not yet open) → `Handshake` → `V1`
//! or `V2`. A dialer sends `HELLO` at once; an acceptor waits for the first frame: `HELLO`
//! makes the peer v2, a seed frame (or silence for `hello_timeout`) makes it v1.
//!
//! Forwarding is flooding with dedup over v2 links, behind [`Engine::forward`]; v1 links get
//! only what this node is responsible for (see [`Engine::v1_should_receive`]).

use crate::Millis;
use crate::id::{MsgId, NodeId, V1_ORIGIN};
use crate::seen::SeenSet;
use crate::sync::{self, Key, MessageIndex};
use crate::topology::{TopoRecord, TopologyView};
use crate::wire::{
    Frame, Hello, MAX_WANT, MESSAGES_PAGE_BYTES, Message, PROTOCOL_NAME, PROTOCOL_VERSION,
    PeerKind, PeerRecord, Trace, canonical_address,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
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

/// Tunables. The defaults suit a native node; a browser peer lowers `target_connections`.
#[derive(Debug, Clone)]
pub struct Config {
    pub kind: PeerKind,
    /// Our own dialable addresses, canonical form first. Never dialed, never sent to v1 peers.
    pub listen_addresses: Vec<String>,
    /// For a browser: the node that served the page (see [`Hello::home`]).
    pub home: Option<NodeId>,
    /// How many node connections to keep by dialing discovered addresses. Pinned addresses
    /// (`--peer`, `/add`) are dialed regardless; inbound connections are always accepted.
    pub target_connections: usize,
    /// Whether to dial addresses learned from peers at all (off in static-topology tests).
    pub dial_discovered: bool,
    /// How long an accepted connection may stay silent before it is taken to be v1.
    pub hello_timeout: Millis,
    /// Ping a peer that has been quiet this long.
    pub ping_interval: Millis,
    /// Close a peer that has been quiet this long.
    pub idle_timeout: Millis,
    /// Whether the transport can send WebSocket pings to v1 peers (a browser cannot).
    pub transport_ping: bool,
    /// How often to send `PEERS` to every v2 peer.
    pub peer_exchange_interval: Millis,
    /// How often maintenance (timeouts, dials, expiry) runs.
    pub tick_interval: Millis,
    /// Redial backoff: first delay and cap (each has up to 25% jitter added).
    pub backoff_initial: Millis,
    pub backoff_max: Millis,
    /// How often to revisit a pinned seed address to introduce ourselves again (it may have
    /// restarted and forgotten us).
    pub v1_revisit_interval: Millis,
    /// Failed dials after which an address that was not pinned is forgotten.
    pub forget_after_failures: u32,
    /// Seen-set bounds.
    pub seen_capacity: usize,
    pub seen_ttl: Millis,
    /// Whether to flood our record for the network map (see `topology`). Records heard from
    /// others are still kept and passed on.
    pub share_topology: bool,
    /// How often a peer re-floods its record for the network map (at once, at most once a
    /// second, when its links change); records live three times as long.
    pub topology_interval: Millis,
    /// How often a dialer reconciles its message set with each peer (also on connect, and at
    /// once with every other peer when a reconciliation brought something new).
    pub sync_interval: Millis,
    /// Longest message text accepted from the application, in bytes.
    pub max_message_bytes: usize,
    /// Bad frames tolerated from one peer before it is closed.
    pub max_bad_frames: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kind: PeerKind::Node,
            listen_addresses: Vec::new(),
            home: None,
            target_connections: 8,
            dial_discovered: true,
            hello_timeout: 1_000,
            ping_interval: 10_000,
            idle_timeout: 30_000,
            transport_ping: true,
            peer_exchange_interval: 10_000,
            tick_interval: 250,
            backoff_initial: 250,
            backoff_max: 10_000,
            v1_revisit_interval: 30_000,
            forget_after_failures: 12,
            seen_capacity: 100_000,
            seen_ttl: 60 * 60 * 1000,
            sync_interval: 30_000,
            share_topology: true,
            topology_interval: 30_000,
            max_message_bytes: 64 * 1024,
            max_bad_frames: 32,
        }
    }
}

/// What the engine asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this text frame. The same `Arc` goes to every peer a frame is broadcast to, so it
    /// is encoded once.
    Send { conn: ConnId, frame: Arc<str> },
    /// Send a WebSocket ping frame (v1 peers only understand transport-level pings).
    Ping { conn: ConnId },
    /// Open a WebSocket to `address`; report `opened` or `dial_failed` for `conn`.
    Dial { conn: ConnId, address: String },
    /// Close the connection, telling the peer why. The engine has already forgotten it.
    Close { conn: ConnId, reason: String },
    /// A message new to this node: store it and show it. Each id is delivered once.
    Deliver(Message),
    /// A node confirmed it holds message `id`, which this peer published (browsers only).
    Acked { id: MsgId, by: NodeId },
    /// The peer on `conn` asked for these messages: load the ones held and hand them to
    /// [`Engine::provide`].
    Fetch { conn: ConnId, ids: Vec<MsgId> },
    /// A step of a message's journey through the network (for the map; see [`Trace`]).
    Traced(Trace),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Which protocol a connection speaks, as far as the engine knows yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Pending,
    V1,
    V2,
}

/// A connected peer, as the API and the page show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    pub conn: ConnId,
    pub id: Option<NodeId>,
    pub address: Option<String>,
    pub direction: Direction,
    pub protocol: Protocol,
    /// `None` while the handshake is pending or for v1 peers (a seed node never says).
    pub kind: Option<PeerKind>,
    pub connected_at: Millis,
}

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
    /// Known, but not dialed (enough links already, or a seed that dials us).
    Idle,
}

/// One address this peer knows of and how its link stands.
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
}

/// Counters for status pages, metrics and the simulation's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub published: u64,
    /// Message frames received (GOSSIP and v1 MESSAGE), duplicates included.
    pub received: u64,
    pub delivered: u64,
    /// Message frames sent on to other peers (not counting our own publishes).
    pub forwarded: u64,
    pub duplicates: u64,
    pub bad_frames: u64,
    /// Messages that arrived through reconciliation rather than gossip.
    pub synced: u64,
    /// Text frame bytes handed to the transport and received from it.
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub dials: u64,
    pub dial_failures: u64,
}

/// Why the application's publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("message is empty")]
    Empty,
    #[error("message is {0} bytes; the limit is {1}")]
    TooLarge(usize, usize),
}

/// Why an address given to [`Engine::add_peer`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address must be a ws:// or wss:// URL, got \"{0}\"")]
    NotWebSocket(String),
    #[error("{0} is this node's own address")]
    OwnAddress(String),
}

#[derive(Debug)]
enum ConnState {
    Dialing,
    Handshake { since: Millis },
    V1,
    V2 { hello: Hello },
}

#[derive(Debug)]
struct Conn {
    direction: Direction,
    /// The address we dialed (outbound only).
    dialed: Option<String>,
    state: ConnState,
    connected_at: Millis,
    last_heard: Millis,
    ping_sent: Option<u32>,
    bad_frames: u32,
    /// Addresses already sent to this (v1) peer in `SOCKETS`.
    told: Vec<String>,
    /// Addresses this (v1) peer has told us it dialed.
    seed_dialed: Vec<String>,
    /// Ids reconciliation found this peer has and we lack, still to ask for.
    wants: VecDeque<MsgId>,
    /// A `WANT` is out and its last `MESSAGES` page has not come back.
    want_in_flight: bool,
    /// When to reconcile with this peer next (`Millis::MAX`: only when something changes).
    next_sync: Millis,
}

impl Conn {
    fn node_id(&self) -> Option<NodeId> {
        match &self.state {
            ConnState::V2 { hello } => Some(hello.id),
            _ => None,
        }
    }
    fn is_v2(&self) -> bool {
        matches!(self.state, ConnState::V2 { .. })
    }
    fn is_v1(&self) -> bool {
        matches!(self.state, ConnState::V1)
    }
    /// The canonical address this peer is known by, if any.
    fn address(&self) -> Option<&str> {
        match &self.state {
            ConnState::V2 { hello } => hello.addresses.first().map(String::as_str),
            _ => self.dialed.as_deref(),
        }
    }
}

/// An address we know of, whether or not we are connected to it.
#[derive(Debug, Default)]
struct Known {
    /// The node found there, once a handshake has told us.
    node: Option<NodeId>,
    /// Given by the operator (`--peer`, `/add`): always redialed, never forgotten.
    pinned: bool,
    /// A seed node answered there.
    v1: bool,
    /// Our own address (configured, or found by dialing ourselves).
    is_self: bool,
    failures: u32,
    next_attempt: Millis,
    conn: Option<ConnId>,
    last_error: Option<String>,
}

/// A trace is one peer's first receipt of one message.
type TraceKey = (MsgId, NodeId);

/// One node's gossip state. See the module docs for how a driver uses it.
pub struct Engine {
    config: Config,
    me: NodeId,
    rng: SmallRng,
    next_conn: u64,
    conns: BTreeMap<ConnId, Conn>,
    known: BTreeMap<String, Known>,
    /// Every hearsay node we know of and its addresses, canonical first.
    nodes: BTreeMap<NodeId, Vec<String>>,
    seen: SeenSet,
    /// Every message held (by key), for reconciliation and lasting dedup.
    index: MessageIndex,
    /// The network map, and what we last said of ourselves in it.
    topology: TopologyView,
    topo_links: Option<Vec<NodeId>>,
    topo_seeds: u32,
    next_topo: Millis,
    topo_version: u64,
    /// Traces already passed on, oldest first (bounded).
    traces_seen: (std::collections::HashSet<TraceKey>, VecDeque<TraceKey>),
    seq: u64,
    outputs: VecDeque<Output>,
    next_tick: Millis,
    next_exchange: Millis,
    stats: Stats,
}

impl Engine {
    /// A new engine for node `me`. `seed` drives every random choice (jitter, sampling), so a
    /// simulation with the same seeds replays exactly.
    pub fn new(config: Config, me: NodeId, seed: u64, now: Millis) -> Self {
        let mut config = config;
        config.listen_addresses = config
            .listen_addresses
            .iter()
            .filter_map(|a| canonical_address(a))
            .collect();
        let mut known = BTreeMap::new();
        for address in &config.listen_addresses {
            known.insert(
                address.clone(),
                Known {
                    is_self: true,
                    node: Some(me),
                    ..Known::default()
                },
            );
        }
        Self {
            seen: SeenSet::new(config.seen_capacity, config.seen_ttl),
            next_exchange: now + config.peer_exchange_interval,
            next_tick: now,
            config,
            me,
            rng: SmallRng::seed_from_u64(seed),
            next_conn: 1,
            conns: BTreeMap::new(),
            known,
            nodes: BTreeMap::new(),
            index: MessageIndex::default(),
            topology: TopologyView::default(),
            topo_links: None,
            topo_seeds: 0,
            next_topo: now,
            topo_version: 0,
            traces_seen: Default::default(),
            seq: 0,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Millis {
        self.next_tick
    }

    /// Connected (and handshaking) peers, in connection order.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.conns
            .iter()
            .filter(|(_, c)| !matches!(c.state, ConnState::Dialing))
            .map(|(&conn, c)| PeerInfo {
                conn,
                id: c.node_id(),
                address: c.address().map(str::to_owned),
                direction: c.direction,
                protocol: match c.state {
                    ConnState::Dialing | ConnState::Handshake { .. } => Protocol::Pending,
                    ConnState::V1 => Protocol::V1,
                    ConnState::V2 { .. } => Protocol::V2,
                },
                kind: match &c.state {
                    ConnState::V2 { hello } => Some(hello.kind),
                    _ => None,
                },
                connected_at: c.connected_at,
            })
            .collect()
    }

    /// Addresses known but not connected, for status pages.
    pub fn known_addresses(&self) -> Vec<String> {
        self.known
            .iter()
            .filter(|(_, k)| !k.is_self)
            .map(|(a, _)| a.clone())
            .collect()
    }

    // ----- events -----

    /// The operator asked to connect to `address` (`--peer`, `/add`). It is pinned: dialed now
    /// and redialed with backoff whenever it is lost.
    pub fn add_peer(&mut self, address: &str, now: Millis) -> Result<String, AddressError> {
        let canonical = canonical_address(address)
            .ok_or_else(|| AddressError::NotWebSocket(address.to_owned()))?;
        let entry = self.known.entry(canonical.clone()).or_default();
        if entry.is_self {
            return Err(AddressError::OwnAddress(canonical));
        }
        entry.pinned = true;
        entry.next_attempt = now;
        entry.failures = 0;
        self.maintain_connections(now);
        Ok(canonical)
    }

    /// A peer connected to us. Returns the handle to report its frames and close under.
    pub fn accepted(&mut self, now: Millis) -> ConnId {
        let conn = self.alloc_conn();
        self.conns.insert(
            conn,
            Conn {
                direction: Direction::Inbound,
                dialed: None,
                state: ConnState::Handshake { since: now },
                connected_at: now,
                last_heard: now,
                ping_sent: None,
                bad_frames: 0,
                told: Vec::new(),
                seed_dialed: Vec::new(),
                wants: VecDeque::new(),
                want_in_flight: false,
                next_sync: Millis::MAX,
            },
        );
        conn
    }

    /// A dial we asked for succeeded: say hello.
    pub fn opened(&mut self, conn: ConnId, now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !matches!(c.state, ConnState::Dialing) {
            return;
        }
        c.state = ConnState::Handshake { since: now };
        c.connected_at = now;
        c.last_heard = now;
        let hello = self.hello_frame();
        self.send(conn, hello);
    }

    /// A dial we asked for failed, for the reason given (shown on status pages).
    pub fn dial_failed(&mut self, conn: ConnId, reason: &str, now: Millis) {
        if let Some(c) = self.conns.remove(&conn) {
            self.stats.dial_failures += 1;
            if let Some(address) = c.dialed {
                if let Some(k) = self.known.get_mut(&address) {
                    if k.conn == Some(conn) {
                        k.conn = None;
                    }
                    k.last_error = Some(reason.to_owned());
                }
                self.schedule_redial(&address, now, true);
            }
        }
    }

    /// The connection closed (by the peer, or the transport failed); `reason` is the peer's
    /// close reason or the transport's error, if any.
    pub fn closed(&mut self, conn: ConnId, reason: Option<&str>, now: Millis) {
        if let Some(c) = self.conns.remove(&conn) {
            let why = match reason {
                Some(r) if !r.is_empty() => format!("closed: {r}"),
                _ => "connection lost".to_owned(),
            };
            self.note_error(&c, &why);
            self.forget_conn(conn, c, now);
        }
    }

    /// Records a message already held (the store's history at start, or history fetched out
    /// of band): it is reconciled with peers and never delivered again.
    pub fn note_held(&mut self, key: Key) {
        self.index.insert(key);
    }

    /// How many messages this engine knows it holds.
    pub fn held(&self) -> usize {
        self.index.len()
    }

    /// The messages the peer on `conn` asked for (after [`Output::Fetch`]), in pages.
    pub fn provide(&mut self, conn: ConnId, messages: Vec<Message>) {
        if !self.conns.get(&conn).is_some_and(Conn::is_v2) {
            return;
        }
        let mut page: Vec<Message> = Vec::new();
        let mut bytes = 0;
        for m in messages {
            if bytes + m.data.len() > MESSAGES_PAGE_BYTES && !page.is_empty() {
                let frame = Frame::Messages {
                    messages: std::mem::take(&mut page),
                    done: false,
                };
                self.send(conn, frame.encode().into());
                bytes = 0;
            }
            bytes += m.data.len();
            page.push(m);
        }
        self.send(
            conn,
            Frame::Messages {
                messages: page,
                done: true,
            }
            .encode()
            .into(),
        );
    }

    /// Every address we know of (not our own) and how its link stands: one entry per node
    /// (its canonical address; a pinned alias too), plus addresses not yet identified.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.known
            .iter()
            .filter(|(address, k)| {
                !k.is_self
                    && (k.pinned
                        || k.node.is_none_or(|id| {
                            self.nodes
                                .get(&id)
                                .is_none_or(|aliases| aliases.first() == Some(address))
                        }))
            })
            .map(|(address, k)| {
                let state = match k.conn.and_then(|c| self.conns.get(&c)) {
                    Some(c) if c.is_v1() || c.is_v2() => LinkState::Open,
                    Some(_) => LinkState::Connecting,
                    None if k.node.is_some_and(|id| self.connected_to(id)) => LinkState::Open,
                    None if k.failures > 0 || k.last_error.is_some() => {
                        if !k.pinned && (k.v1 || !self.config.dial_discovered) {
                            LinkState::Idle
                        } else {
                            LinkState::Retrying { at: k.next_attempt }
                        }
                    }
                    None => LinkState::Idle,
                };
                LinkInfo {
                    address: address.clone(),
                    node: k.node,
                    pinned: k.pinned,
                    state,
                    failures: k.failures,
                    last_error: k.last_error.clone(),
                }
            })
            .collect()
    }

    fn note_error(&mut self, c: &Conn, why: &str) {
        let addresses = c.dialed.iter().chain(match &c.state {
            ConnState::V2 { hello } => hello.addresses.iter(),
            _ => [].iter(),
        });
        for address in addresses {
            if let Some(k) = self.known.get_mut(address) {
                k.last_error = Some(why.to_owned());
            }
        }
    }

    /// A WebSocket pong arrived: the peer is alive.
    pub fn transport_pong(&mut self, conn: ConnId, now: Millis) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_heard = now;
            c.ping_sent = None;
        }
    }

    /// A text frame arrived on `conn`.
    pub fn frame(&mut self, conn: ConnId, text: &str, now: Millis) {
        self.stats.bytes_in += text.len() as u64;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_heard = now;
        c.ping_sent = None;
        let frame = match Frame::decode(text) {
            Ok(frame) => frame,
            Err(_) => {
                self.bad_frame(conn, "undecodable frame");
                return;
            }
        };
        match (&c.state, frame) {
            (ConnState::Dialing, _) => {}
            (ConnState::Handshake { .. }, Frame::Hello(hello)) => self.on_hello(conn, hello, now),
            (
                ConnState::Handshake { .. },
                frame @ (Frame::Message { .. } | Frame::Sockets { .. }),
            ) => {
                // Read the seed's first frame (its SOCKETS: what it has dialed) before
                // answering, so the answer can take it into account.
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.state = ConnState::V1;
                }
                self.on_v1_frame(conn, frame, now);
                self.become_v1(conn, now);
            }
            (ConnState::Handshake { .. }, _) => self.close(
                conn,
                "protocol error: expected HELLO or a seed frame first",
                now,
            ),
            (ConnState::V1, frame) => self.on_v1_frame(conn, frame, now),
            (ConnState::V2 { .. }, Frame::Gossip(msg)) => self.on_gossip(conn, msg, now),
            (ConnState::V2 { .. }, Frame::Peers { peers }) => {
                for record in peers {
                    let addresses: Vec<String> = std::iter::once(&record.address)
                        .chain(&record.aliases)
                        .filter_map(|a| canonical_address(a))
                        .collect();
                    if record.id == self.me || addresses.is_empty() {
                        continue;
                    }
                    // Second-hand: only fills gaps; a node's own HELLO overrides it.
                    let claimed = self.nodes.iter().any(|(&id, known)| {
                        id != record.id && known.iter().any(|a| addresses.contains(a))
                    });
                    if !claimed {
                        self.nodes
                            .entry(record.id)
                            .or_insert_with(|| addresses.clone());
                    }
                    for address in &addresses {
                        self.learn(address, Some(record.id), now);
                    }
                }
            }
            (ConnState::V2 { .. }, Frame::Ping { nonce }) => {
                self.send(conn, Frame::Pong { nonce }.encode().into());
            }
            (ConnState::V2 { .. }, Frame::Pong { .. }) => {}
            (ConnState::V2 { .. }, Frame::Trace(t)) => {
                if t.node != self.me && self.note_trace(&t) {
                    self.outputs.push_back(Output::Traced(t));
                    let frame: Arc<str> = Frame::Trace(t).encode().into();
                    self.send_to_v2_except(Some(conn), &frame);
                }
            }
            (ConnState::V2 { .. }, Frame::Topo(record)) => {
                if record.node != self.me && record.ttl <= 10 * self.config.topology_interval {
                    let frame: Arc<str> = Frame::Topo(record.clone()).encode().into();
                    if self.topology.accept(record, now) {
                        self.send_to_v2_except(Some(conn), &frame);
                    }
                }
            }
            (ConnState::V2 { .. }, Frame::Sync(frame)) => {
                let reply = sync::respond(&self.index, &frame);
                for f in reply.frames {
                    self.send(conn, Frame::Sync(f).encode().into());
                }
                self.want(conn, reply.want);
            }
            (ConnState::V2 { .. }, Frame::Want { ids }) => {
                if ids.len() > MAX_WANT {
                    self.bad_frame(conn, "WANT asks for too many messages");
                } else {
                    self.outputs.push_back(Output::Fetch { conn, ids });
                }
            }
            (ConnState::V2 { .. }, Frame::Messages { messages, done }) => {
                self.on_messages(conn, messages, done, now)
            }
            (ConnState::V2 { hello }, Frame::Ack { id }) => {
                let by = hello.id;
                self.outputs.push_back(Output::Acked { id, by });
            }
            (ConnState::V2 { .. }, _) => self.bad_frame(conn, "unexpected frame"),
        }
    }

    /// A frame the protocol has no use for arrived (a binary WebSocket message): counted as
    /// bad, like undecodable text.
    pub fn unsupported_frame(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.bad_frame(conn, "binary frame");
        }
    }

    /// The application publishes `data`. Returns the message as delivered.
    pub fn publish(&mut self, data: &str, now: Millis) -> Result<Message, PublishError> {
        if data.is_empty() {
            return Err(PublishError::Empty);
        }
        if data.len() > self.config.max_message_bytes {
            return Err(PublishError::TooLarge(
                data.len(),
                self.config.max_message_bytes,
            ));
        }
        self.seq += 1;
        let msg = Message {
            id: MsgId::v2(&self.me, self.seq, now, data),
            origin: self.me.to_string(),
            seq: self.seq,
            timestamp: now,
            data: data.to_owned(),
        };
        self.seen.insert(msg.id, now);
        self.index.insert(sync::key_of(&msg));
        self.stats.published += 1;
        self.stats.delivered += 1;
        self.outputs.push_back(Output::Deliver(msg.clone()));
        self.forward(&msg, None, true);
        self.trace(msg.id, None, now);
        Ok(msg)
    }

    /// Time has passed: handshake and keepalive timeouts, peer exchange, dials, expiry.
    pub fn handle_timeout(&mut self, now: Millis) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.config.tick_interval;
        self.seen.expire(now);

        let mut to_v1 = Vec::new();
        let mut to_close = Vec::new();
        let mut to_ping = Vec::new();
        for (&conn, c) in &self.conns {
            match c.state {
                ConnState::Dialing => {}
                ConnState::Handshake { since } => {
                    if now.saturating_sub(since) >= self.config.hello_timeout {
                        to_v1.push(conn);
                    }
                }
                ConnState::V1 | ConnState::V2 { .. } => {
                    let idle = now.saturating_sub(c.last_heard);
                    let can_ping = c.is_v2() || self.config.transport_ping;
                    if idle >= self.config.idle_timeout && can_ping {
                        to_close.push(conn);
                    } else if idle >= self.config.ping_interval && c.ping_sent.is_none() && can_ping
                    {
                        to_ping.push(conn);
                    }
                }
            }
        }
        for conn in to_v1 {
            self.become_v1(conn, now);
        }
        for conn in to_close {
            self.close(conn, "keepalive timeout", now);
        }
        for conn in to_ping {
            let nonce: u32 = self.rng.random();
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.ping_sent = Some(nonce);
            if c.is_v2() {
                self.send(conn, Frame::Ping { nonce }.encode().into());
            } else {
                self.outputs.push_back(Output::Ping { conn });
            }
        }

        if now >= self.next_exchange {
            self.next_exchange = now + self.config.peer_exchange_interval;
            let frame: Arc<str> = self.peers_frame(None).encode().into();
            let targets: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.is_v2())
                .map(|(&id, _)| id)
                .collect();
            for conn in targets {
                self.send(conn, frame.clone());
            }
            // A seed only learns addresses from SOCKETS, and ignores ones it has dialed, so
            // tell each v1 peer again whenever we know of nodes we have not told it about.
            let v1: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.is_v1())
                .map(|(&id, _)| id)
                .collect();
            for conn in v1 {
                self.send_sockets(conn);
            }
        }
        self.sync_due(now);
        self.topology_due(now);
        self.maintain_connections(now);
    }

    /// The network map as this peer knows it: its own record and every unexpired one heard.
    pub fn topology(&self) -> Vec<TopoRecord> {
        self.topology.records().cloned().collect()
    }

    fn own_record(&self, links: Vec<NodeId>, seeds: u32) -> TopoRecord {
        TopoRecord {
            node: self.me,
            kind: self.config.kind,
            address: self.config.listen_addresses.first().cloned(),
            version: self.topo_version,
            ttl: 3 * self.config.topology_interval,
            links,
            seeds,
            held: self.index.len() as u64,
        }
    }

    /// Records that we received message `id` (first from `from`) and floods it, so pages can
    /// show the message travel. Part of the map: off with `share_topology`.
    fn trace(&mut self, id: MsgId, from: Option<NodeId>, now: Millis) {
        if !self.config.share_topology {
            return;
        }
        let t = Trace {
            id,
            node: self.me,
            from,
            at: now,
        };
        self.note_trace(&t);
        self.outputs.push_back(Output::Traced(t));
        let frame: Arc<str> = Frame::Trace(t).encode().into();
        self.send_to_v2_except(None, &frame);
    }

    /// True if this trace is new (and remembers it, within a bound).
    fn note_trace(&mut self, t: &Trace) -> bool {
        let (set, order) = &mut self.traces_seen;
        if !set.insert((t.id, t.node)) {
            return false;
        }
        order.push_back((t.id, t.node));
        if order.len() > 50_000
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }

    /// Floods our record when it is due, or at once when our links changed.
    fn topology_due(&mut self, now: Millis) {
        self.topology.expire(now);
        if !self.config.share_topology {
            return;
        }
        let mut links: Vec<NodeId> = self.conns.values().filter_map(Conn::node_id).collect();
        links.sort();
        links.dedup();
        let seeds = self.conns.values().filter(|c| c.is_v1()).count() as u32;
        if self.topo_links.is_none() && links.is_empty() {
            // Nothing to say before our first link; say it the moment there is one.
            return;
        }
        let changed = self.topo_links.as_ref() != Some(&links) || self.topo_seeds != seeds;
        // A change is announced soon, but at most once a second: while a mesh forms, links
        // change many times a second and every announcement floods the whole network.
        let last = self.next_topo.saturating_sub(self.config.topology_interval);
        let due = now >= self.next_topo || (changed && now >= last + 1_000);
        if !due {
            return;
        }
        self.next_topo = now + self.config.topology_interval;
        // Versions must grow across restarts too (a restarted browser keeps no state): use the
        // clock, nudged past the last one.
        self.topo_version = now.max(self.topo_version + 1);
        self.topo_links = Some(links.clone());
        self.topo_seeds = seeds;
        let record = self.own_record(links, seeds);
        self.topology.accept(record.clone(), now);
        let frame: Arc<str> = Frame::Topo(record).encode().into();
        self.send_to_v2_except(None, &frame);
    }

    fn send_to_v2_except(&mut self, except: Option<ConnId>, frame: &Arc<str>) {
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|&(&id, c)| Some(id) != except && c.is_v2())
            .map(|(&id, _)| id)
            .collect();
        for conn in targets {
            self.send(conn, frame.clone());
        }
    }

    /// Whether `msg` was published by the browser on `conn` (and we are a node, which
    /// acknowledges it).
    fn published_by_browser_on(&self, conn: ConnId, msg: &Message) -> bool {
        self.config.kind == PeerKind::Node
            && self.conns.get(&conn).is_some_and(|c| match &c.state {
                ConnState::V2 { hello } => {
                    hello.kind == PeerKind::Browser && msg.origin == hello.id.to_string()
                }
                _ => false,
            })
    }

    /// Starts reconciliation with every peer whose turn has come.
    fn sync_due(&mut self, now: Millis) {
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_v2() && c.next_sync <= now)
            .map(|(&id, _)| id)
            .collect();
        if due.is_empty() {
            return;
        }
        let frame: Arc<str> = Frame::Sync(sync::initiate(&self.index)).encode().into();
        for conn in due {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.next_sync = if c.direction == Direction::Outbound {
                now + self.config.sync_interval
            } else {
                Millis::MAX
            };
            self.send(conn, frame.clone());
        }
    }

    /// Queues ids to ask `conn` for, and asks if nothing is outstanding.
    fn want(&mut self, conn: ConnId, ids: Vec<MsgId>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for id in ids {
            if !self.index.contains(&id) && !c.wants.contains(&id) {
                c.wants.push_back(id);
            }
        }
        self.pump_wants(conn);
    }

    fn pump_wants(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.want_in_flight {
            return;
        }
        let mut ids = Vec::new();
        while ids.len() < MAX_WANT {
            match c.wants.pop_front() {
                Some(id) if !self.index.contains(&id) => ids.push(id),
                Some(_) => {}
                None => break,
            }
        }
        if ids.is_empty() {
            return;
        }
        c.want_in_flight = true;
        self.send(conn, Frame::Want { ids }.encode().into());
    }

    /// Messages fetched by reconciliation: delivered like gossip but not flooded on. Instead,
    /// every other peer is reconciled with at once, which carries them on hop by hop.
    fn on_messages(&mut self, conn: ConnId, messages: Vec<Message>, done: bool, now: Millis) {
        let mut new = 0;
        for msg in messages {
            self.stats.received += 1;
            if !msg.id_is_valid() || msg.data.len() > self.config.max_message_bytes {
                self.bad_frame(conn, "message id does not match its content");
                continue;
            }
            if self.index.contains(&msg.id) || !self.seen.insert(msg.id, now) {
                self.stats.duplicates += 1;
                continue;
            }
            self.index.insert(sync::key_of(&msg));
            self.stats.delivered += 1;
            self.stats.synced += 1;
            new += 1;
            // A page that published while offline hands its message over this way.
            if self.published_by_browser_on(conn, &msg) {
                self.send(conn, Frame::Ack { id: msg.id }.encode().into());
            }
            self.outputs.push_back(Output::Deliver(msg));
        }
        if done {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.want_in_flight = false;
            }
            self.pump_wants(conn);
        }
        if new > 0 {
            for (&other, c) in self.conns.iter_mut() {
                if other != conn && c.is_v2() {
                    c.next_sync = c.next_sync.min(now);
                }
            }
        }
    }

    // ----- handshake -----

    fn hello_frame(&self) -> Arc<str> {
        Frame::Hello(Hello {
            protocol: PROTOCOL_NAME.to_owned(),
            version: PROTOCOL_VERSION,
            id: self.me,
            kind: self.config.kind,
            addresses: self.config.listen_addresses.clone(),
            home: self.config.home,
        })
        .encode()
        .into()
    }

    fn on_hello(&mut self, conn: ConnId, mut hello: Hello, now: Millis) {
        if hello.protocol != PROTOCOL_NAME || hello.version < 2 {
            self.close(conn, "not a hearsay v2 peer", now);
            return;
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let direction = c.direction;
        let dialed = c.dialed.clone();
        if hello.id == self.me {
            if let Some(address) = &dialed {
                let k = self.known.entry(address.clone()).or_default();
                k.is_self = true;
                k.node = Some(self.me);
            }
            self.close(conn, "connected to self", now);
            return;
        }
        hello.addresses = hello
            .addresses
            .iter()
            .filter_map(|a| canonical_address(a))
            .collect();
        if hello.kind == PeerKind::Browser {
            hello.addresses.clear();
        }

        // Never two connections to one node. With links in both directions, the one dialed by
        // the lower id survives (both ends compute the same answer). With two links in the same
        // direction, only the dialer acts, closing the newer one.
        let existing = self
            .conns
            .iter()
            .find(|&(&other, oc)| other != conn && oc.node_id() == Some(hello.id))
            .map(|(&other, oc)| (other, oc.direction));
        if let Some((other, other_dir)) = existing {
            let drop_new = match (direction, other_dir) {
                (Direction::Outbound, Direction::Outbound) => true,
                (Direction::Inbound, Direction::Inbound) => false,
                (Direction::Outbound, Direction::Inbound) => self.me > hello.id,
                (Direction::Inbound, Direction::Outbound) => self.me < hello.id,
            };
            if drop_new {
                if let Some(address) = &dialed {
                    self.known.entry(address.clone()).or_default().node = Some(hello.id);
                }
                if direction == Direction::Inbound {
                    // Answer first so the dialer learns who we are and stops redialing.
                    let frame = self.hello_frame();
                    self.send(conn, frame);
                }
                self.close(conn, "duplicate connection", now);
                return;
            } else if direction != other_dir {
                self.close(other, "duplicate connection", now);
            }
        }

        if direction == Direction::Inbound {
            let frame = self.hello_frame();
            self.send(conn, frame);
        }
        for address in &hello.addresses {
            self.learn(address, Some(hello.id), now);
        }
        self.set_node_addresses(hello.id, hello.addresses.clone());
        for address in dialed.iter().chain(hello.addresses.iter()) {
            if let Some(k) = self.known.get_mut(address) {
                k.node = Some(hello.id);
                k.failures = 0;
                k.v1 = false;
                k.last_error = None;
                if k.conn.is_none() || dialed.as_ref() == Some(address) {
                    k.conn = Some(conn);
                }
            }
        }
        let peers = self.peers_frame(Some(hello.id)).encode().into();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::V2 { hello };
            // The dialer reconciles at once and then periodically; the acceptor only when
            // something changes.
            c.next_sync = if direction == Direction::Outbound {
                now
            } else {
                Millis::MAX
            };
        }
        self.send(conn, peers);
        // A new peer (a page, most often) gets the whole map at once rather than over the
        // next few intervals.
        let records: Vec<Arc<str>> = self
            .topology
            .records()
            .map(|r| Frame::Topo(r.clone()).encode().into())
            .collect();
        for frame in records {
            self.send(conn, frame);
        }
        self.sync_due(now);
    }

    fn become_v1(&mut self, conn: ConnId, now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = ConnState::V1;
        c.last_heard = now;
        let own = c.dialed.clone();
        if let Some(address) = &own {
            let k = self.known.entry(address.clone()).or_default();
            k.v1 = true;
            k.failures = 0;
        }
        let Some(own) = own.filter(|_| !self.config.listen_addresses.is_empty()) else {
            // Inbound, or we cannot be dialed (a browser): this link is the seed's only one.
            self.send_sockets(conn);
            return;
        };
        // We dialed a seed. It will dial every address it hears of, ours included once any
        // node mentions it, and a seed with two links to us would get our messages twice. So
        // introduce ourselves — our address and the nodes we know — and hang up: the seed's
        // own dial back becomes its one link. A seed ignores addresses it has dialed already,
        // so introducing ourselves again later (a pinned seed is revisited) is harmless.
        let mut addresses = self.v1_addresses(conn);
        let seed_has_us = self.conns.get(&conn).is_some_and(|c| {
            self.config
                .listen_addresses
                .iter()
                .any(|a| c.seed_dialed.contains(a))
        });
        if !seed_has_us {
            addresses.insert(0, self.config.listen_addresses[0].clone());
        }
        self.send(conn, Frame::Sockets { addresses }.encode().into());
        self.close(conn, "hearsay nodes let seed nodes dial them", now);
        if let Some(k) = self.known.get_mut(&own) {
            k.next_attempt = now + self.config.v1_revisit_interval;
        }
    }

    /// Sends a v1 peer `SOCKETS` if it would learn anything from it (or has had none yet).
    fn send_sockets(&mut self, conn: ConnId) {
        let addresses = self.v1_addresses(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let fresh = addresses.iter().any(|a| !c.told.contains(a));
        if fresh || c.told.is_empty() {
            c.told.extend(addresses.iter().cloned());
            self.send(conn, Frame::Sockets { addresses }.encode().into());
        }
    }

    /// What to tell the seed on `conn` in `SOCKETS`: the canonical address of each hearsay node
    /// we know of, except nodes the seed has already dialed under any of their addresses (a
    /// seed compares addresses as strings, so naming a node it reached at its seed port again
    /// by its main port would link it twice and it would get everything twice), and never
    /// ours. Seed addresses are never passed on: an inbound seed's own address is unknown to
    /// us, so passing them on could make a seed dial itself.
    fn v1_addresses(&self, conn: ConnId) -> Vec<String> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .filter(|&(&id, aliases)| {
                id != self.me
                    && !aliases
                        .iter()
                        .any(|a| c.seed_dialed.contains(a) || c.dialed.as_ref() == Some(a))
            })
            .filter_map(|(_, aliases)| aliases.first().cloned())
            .collect()
    }

    fn peers_frame(&self, exclude: Option<NodeId>) -> Frame {
        let peers = self
            .nodes
            .iter()
            .filter(|&(&id, aliases)| id != self.me && Some(id) != exclude && !aliases.is_empty())
            .map(|(&id, aliases)| PeerRecord {
                id,
                address: aliases[0].clone(),
                aliases: aliases[1..].to_vec(),
            })
            .collect();
        Frame::Peers { peers }
    }

    /// Records what a node says its addresses are (its `HELLO` is the authority). Any other
    /// node id claiming one of these addresses is stale — a restart gives a node a new id —
    /// and is dropped.
    fn set_node_addresses(&mut self, id: NodeId, addresses: Vec<String>) {
        if addresses.is_empty() {
            return;
        }
        self.nodes.retain(|&other, aliases| {
            other == id || !aliases.iter().any(|a| addresses.contains(a))
        });
        self.nodes.insert(id, addresses);
    }

    // ----- messages -----

    fn on_v1_frame(&mut self, conn: ConnId, frame: Frame, now: Millis) {
        match frame {
            Frame::Message { data } => {
                self.stats.received += 1;
                if data.is_empty() || data.len() > self.config.max_message_bytes {
                    self.bad_frame(conn, "message empty or too large");
                    return;
                }
                let id = MsgId::v1(&data);
                if self.index.contains(&id) || !self.seen.insert(id, now) {
                    self.stats.duplicates += 1;
                    return;
                }
                self.index.insert((0, id));
                let msg = Message {
                    id,
                    origin: V1_ORIGIN.to_owned(),
                    seq: 0,
                    timestamp: now,
                    data,
                };
                self.stats.delivered += 1;
                self.outputs.push_back(Output::Deliver(msg.clone()));
                self.forward(&msg, Some(conn), false);
                self.trace(id, None, now);
            }
            Frame::Sockets { addresses } => {
                // A seed's SOCKETS is the list of addresses it has dialed: remember it, so we
                // never name a node to it that it already reached under another address.
                let canonical: Vec<String> = addresses
                    .iter()
                    .filter_map(|a| canonical_address(a))
                    .collect();
                if let Some(c) = self.conns.get_mut(&conn) {
                    for a in &canonical {
                        if !c.seed_dialed.contains(a) {
                            c.seed_dialed.push(a.clone());
                        }
                    }
                }
                for address in canonical {
                    self.learn(&address, None, now);
                }
            }
            // A seed ignores frames it does not know; so do we, but we count them.
            _ => self.bad_frame(conn, "unexpected frame from a v1 peer"),
        }
    }

    fn on_gossip(&mut self, conn: ConnId, msg: Message, now: Millis) {
        self.stats.received += 1;
        if !msg.id_is_valid() || msg.data.len() > self.config.max_message_bytes {
            self.bad_frame(conn, "message id does not match its content");
            return;
        }
        // A browser we hold a link to published this: tell it we have it (even a copy: the
        // page wants to know that some node holds its message).
        if self.published_by_browser_on(conn, &msg) {
            self.send(conn, Frame::Ack { id: msg.id }.encode().into());
        }
        if self.index.contains(&msg.id) || !self.seen.insert(msg.id, now) {
            self.stats.duplicates += 1;
            return;
        }
        self.index.insert(sync::key_of(&msg));
        self.stats.delivered += 1;
        self.outputs.push_back(Output::Deliver(msg.clone()));
        self.forward(&msg, Some(conn), false);
        let from = self.conns.get(&conn).and_then(Conn::node_id);
        self.trace(msg.id, from, now);
    }

    /// The forwarding seam: who gets `msg`, which arrived on `from` (or was published here).
    /// Today this floods every other v2 link; Plumtree will replace the v2 half.
    fn forward(&mut self, msg: &Message, from: Option<ConnId>, own: bool) {
        let v2_targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|&(&id, c)| Some(id) != from && c.is_v2())
            .map(|(&id, _)| id)
            .collect();
        let v1_targets: Vec<ConnId> = if self.v1_should_receive(msg, own) {
            self.conns
                .iter()
                .filter(|(_, c)| c.is_v1())
                .map(|(&id, _)| id)
                .collect()
        } else {
            Vec::new()
        };
        if !own {
            self.stats.forwarded += (v2_targets.len() + v1_targets.len()) as u64;
        }
        if !v2_targets.is_empty() {
            let frame: Arc<str> = Frame::Gossip(msg.clone()).encode().into();
            for conn in v2_targets {
                self.send(conn, frame.clone());
            }
        }
        if !v1_targets.is_empty() {
            let frame: Arc<str> = Frame::Message {
                data: msg.data.clone(),
            }
            .encode()
            .into();
            for conn in v1_targets {
                self.send(conn, frame.clone());
            }
        }
    }

    /// A seed node dials every address it hears of and never forwards, so it ends up linked
    /// to every node and must get each message from exactly one of them: its origin. Messages
    /// from a browser (which a seed cannot dial) are passed on by the browser's home node.
    /// Text that came from a seed is never sent back to one: it sent it to all its sockets.
    fn v1_should_receive(&self, msg: &Message, own: bool) -> bool {
        if own {
            return true;
        }
        if msg.origin == V1_ORIGIN {
            return false;
        }
        // Decided by the origin, not by the link a copy arrived on: the browser sends to all
        // its links at once, and its home node may well hear it first through another node.
        self.conns.values().any(|c| match &c.state {
            ConnState::V2 { hello } => {
                hello.kind == PeerKind::Browser
                    && hello.home == Some(self.me)
                    && msg.origin == hello.id.to_string()
            }
            _ => false,
        })
    }

    // ----- connections -----

    fn alloc_conn(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        conn
    }

    fn send(&mut self, conn: ConnId, frame: Arc<str>) {
        self.stats.bytes_out += frame.len() as u64;
        self.outputs.push_back(Output::Send { conn, frame });
    }

    fn bad_frame(&mut self, conn: ConnId, why: &str) {
        self.stats.bad_frames += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.bad_frames += 1;
        if c.bad_frames >= self.config.max_bad_frames {
            let reason = format!("too many bad frames (last: {why})");
            // The timestamp only matters for redial scheduling; last_heard is current.
            let now = c.last_heard;
            self.close(conn, &reason, now);
        }
    }

    fn close(&mut self, conn: ConnId, reason: &str, now: Millis) {
        if let Some(c) = self.conns.remove(&conn) {
            self.outputs.push_back(Output::Close {
                conn,
                reason: reason.to_owned(),
            });
            if reason != "duplicate connection" {
                self.note_error(&c, &format!("we closed it: {reason}"));
            }
            self.forget_conn(conn, c, now);
        }
    }

    /// Bookkeeping after a connection is gone: free its address entries and plan a redial.
    fn forget_conn(&mut self, conn: ConnId, c: Conn, now: Millis) {
        let established = c.is_v2() || c.is_v1();
        let still_linked = c.node_id().is_some_and(|id| self.connected_to(id));
        let mut addresses: Vec<String> = c.dialed.iter().cloned().collect();
        if let ConnState::V2 { hello } = &c.state {
            addresses.extend(hello.addresses.iter().cloned());
        }
        for address in addresses {
            if let Some(k) = self.known.get_mut(&address)
                && k.conn == Some(conn)
            {
                k.conn = None;
            }
            if !still_linked {
                self.schedule_redial(&address, now, !established);
            }
        }
    }

    fn schedule_redial(&mut self, address: &str, now: Millis, failed: bool) {
        let Some(k) = self.known.get_mut(address) else {
            return;
        };
        if failed {
            k.failures += 1;
        }
        if !k.pinned && k.failures >= self.config.forget_after_failures {
            self.known.remove(address);
            self.nodes
                .retain(|_, aliases| aliases.first().map(String::as_str) != Some(address));
            return;
        }
        let exp = k.failures.min(16);
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u64 << exp)
            .min(self.config.backoff_max);
        let jitter = self.rng.random_range(0..=base / 4);
        k.next_attempt = now + base + jitter;
    }

    fn connected_to(&self, node: NodeId) -> bool {
        self.conns.values().any(|c| c.node_id() == Some(node))
    }

    /// Records an address heard from a peer. Unknown addresses are dialed by maintenance.
    fn learn(&mut self, address: &str, node: Option<NodeId>, now: Millis) {
        let Some(address) = canonical_address(address) else {
            return;
        };
        if node == Some(self.me) {
            let k = self.known.entry(address).or_default();
            k.is_self = true;
            k.node = Some(self.me);
            return;
        }
        let k = self.known.entry(address).or_insert_with(|| Known {
            next_attempt: now,
            ..Known::default()
        });
        if k.node.is_none() && !k.is_self {
            k.node = node;
        }
    }

    /// Dials what should be dialed: pinned addresses always, discovered ones while we have
    /// fewer than `target_connections` node links.
    fn maintain_connections(&mut self, now: Millis) {
        let mut links = self
            .conns
            .values()
            .filter(|c| match &c.state {
                ConnState::V2 { hello } => hello.kind == PeerKind::Node,
                _ => true,
            })
            .count();
        let mut candidates: Vec<String> = Vec::new();
        for (address, k) in &self.known {
            if k.is_self || k.conn.is_some() || k.next_attempt > now || (k.v1 && !k.pinned) {
                continue;
            }
            if k.node.is_some_and(|id| self.connected_to(id)) {
                continue;
            }
            if k.pinned {
                candidates.insert(0, address.clone());
            } else if self.config.dial_discovered {
                candidates.push(address.clone());
            }
        }
        // Discovered candidates in random order, so nodes do not all pick the same few.
        let pinned = candidates
            .iter()
            .take_while(|a| self.known[*a].pinned)
            .count();
        for i in (pinned + 1..candidates.len()).rev() {
            let j = self.rng.random_range(pinned..=i);
            candidates.swap(i, j);
        }
        let mut dialing_nodes: Vec<NodeId> = Vec::new();
        for address in candidates {
            let k = &self.known[&address];
            if !k.pinned && links >= self.config.target_connections {
                continue;
            }
            if let Some(id) = k.node {
                // Two addresses of one node: dial only one of them.
                if dialing_nodes.contains(&id) || self.dialing_node(id) {
                    continue;
                }
                dialing_nodes.push(id);
            }
            let conn = self.alloc_conn();
            self.known
                .get_mut(&address)
                .expect("candidate is known")
                .conn = Some(conn);
            self.conns.insert(
                conn,
                Conn {
                    direction: Direction::Outbound,
                    dialed: Some(address.clone()),
                    state: ConnState::Dialing,
                    connected_at: now,
                    last_heard: now,
                    ping_sent: None,
                    bad_frames: 0,
                    told: Vec::new(),
                    seed_dialed: Vec::new(),
                    wants: VecDeque::new(),
                    want_in_flight: false,
                    next_sync: Millis::MAX,
                },
            );
            self.stats.dials += 1;
            links += 1;
            self.outputs.push_back(Output::Dial { conn, address });
        }
    }

    fn dialing_node(&self, node: NodeId) -> bool {
        self.conns.values().any(|c| {
            matches!(c.state, ConnState::Dialing | ConnState::Handshake { .. })
                && c.dialed
                    .as_ref()
                    .is_some_and(|a| self.known.get(a).is_some_and(|k| k.node == Some(node)))
        })
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.me)
            .field("conns", &self.conns.len())
            .field("known", &self.known.len())
            .field("seen", &self.seen.len())
            .finish()
    }
}
