//! The engine: one peer's protocol state, composed of its parts, with no I/O and no clock.
//!
//! The driver feeds it events — a connection accepted or opened, a text frame received, a
//! connection closed, a dial failed, a local publish, time passing — each with the current
//! time, and then drains [`Output`]s (see the crate docs for the contract). The engine owns
//! the connections ([`conns`](crate::conns), [`book`](crate::book)) and carries out the
//! handshake's verdicts ([`handshake`](crate::handshake)); everything else is a part, kept
//! under one contract ([`Part`]): it takes its inputs, queues its outputs, keeps its timers.
//! The engine routes every part's outputs in one place ([`Engine::route`]):
//!
//! - [`keepalive`](crate::keepalive): handshake deadlines, probes, idle and transient links;
//! - [`membership`](crate::membership): which peers are neighbours;
//! - [`tree`](crate::tree) and [`broadcast`](crate::broadcast): which links are the broadcast
//!   tree's, and who gets each message over them (Plumtree, or flooding);
//! - [`seed`](crate::seed): what seed (v1) peers get and are told;
//! - [`sync`](crate::sync): reconciliation, the safety net under broadcast;
//! - [`map`](crate::map): the network map;
//! - [`history`](crate::history): the messages held, and what ages out of them;
//! - [`admission`](crate::admission): whether each message that arrives is taken.
//!
//! Every message enters by one way ([`Engine::arrive`], then [`Engine::take`]), whatever
//! brought it: a push, a reconciliation page, a seed's text, or a local publish.
//!
//! Connections move through `Dialing` (outbound, transport not yet open) → `Handshake` →
//! `Seed` or `Hearsay`. A dialer sends `HELLO` at once; an acceptor waits for the first frame:
//! `HELLO` makes the peer a hearsay peer (once it has proven its key: `Proving` until its
//! `PROOF` comes), a seed frame a seed. Silence never makes a seed: a seed speaks first on
//! every connection, either direction (its `SOCKETS`), and a peer whose thread is busy or
//! whose link is slow may answer late; a connection that says nothing valid for
//! `hello_timeout` is closed, saying so.

use crate::Millis;
use crate::admission::{self, Admission, Dropped, Reply, Sender, Verdict};
use crate::book::{AddressBook, AddressError, Backoff, LinkInfo};
use crate::broadcast::{self, Broadcast, BroadcastStats};
use crate::close::CloseReason;
use crate::conns::{Conn, ConnId, Conns, Direction, Hearsay, Protocol, State};
use crate::handshake::{self, Handshake, Hello};
use crate::history::{Held, HeldOut, History};
use crate::id::{MsgId, NodeId};
use crate::identity::{Author, Identity, Keypair, PublicKey, Tab};
use crate::keepalive::{self, Keepalive};
use crate::limits::{KindCaps, Limits, TokenBucket};
use crate::map::{self, Map, OwnLinks, TopoRecord};
use crate::membership::{self, Membership};
use crate::message::Message;
use crate::part::Part;
use crate::peer::{PeerKind, PeerRecord, canonical_address};
use crate::seed::{self, SeedPeers};
use crate::sync::{self, Sync, SyncConfig};
use crate::timers::earliest;
use crate::tree::{self, Tree};
use crate::wire::{Frame, Inbound, InboundError, MAX_ADDRESSES};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

pub use crate::driver::{Driver, Output};

/// Tunables. The defaults suit a native node; a page sets `kind` and `home`.
#[derive(Debug, Clone)]
pub struct Config {
    pub kind: PeerKind,
    /// Our own dialable addresses, canonical form first. Never dialed, never sent to v1 peers.
    pub listen_addresses: Vec<String>,
    /// For a browser: the node that served the page (see [`Hello::home`]).
    pub home: Option<NodeId>,
    pub membership: membership::Config,
    pub broadcast: broadcast::Config,
    pub tree: tree::Config,
    pub map: map::Config,
    pub sync: SyncConfig,
    /// How long a connection may go without a `HELLO` (or a seed's first frame) before it is
    /// closed: long enough for a phone on a slow link, or a page whose thread is busy.
    pub hello_timeout: Millis,
    /// Ping a peer that has been quiet this long.
    pub ping_interval: Millis,
    /// Close a peer that has been quiet this long.
    pub idle_timeout: Millis,
    /// Whether the transport can send WebSocket pings to v1 peers (a browser cannot).
    pub transport_ping: bool,
    /// Close a connection to a node that membership has no use for after this long.
    pub transient_idle: Millis,
    /// Redial backoff: first delay and cap (each has up to 25% jitter added).
    pub backoff_initial: Millis,
    pub backoff_max: Millis,
    /// How often to revisit a pinned address that we reached but are not linked to (a seed
    /// that may have forgotten us, a node that may be alone).
    pub revisit_interval: Millis,
    /// How often to tell seed (v1) peers about nodes they have not heard of yet.
    pub seed_exchange_interval: Millis,
    /// Longest message text accepted, in bytes.
    pub max_message_bytes: usize,
    /// Bad frames tolerated from one peer before it is closed.
    pub max_bad_frames: u32,
    /// How long a peer closed for bad frames is refused when it comes back.
    pub refuse_for: Millis,
    /// Rate limits (see `limits`).
    pub limits: Limits,
    /// How long messages are kept (see `history`).
    pub history: History,
    /// Inbound connections of each kind one client address may hold.
    pub per_address: KindCaps,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kind: PeerKind::Node,
            listen_addresses: Vec::new(),
            home: None,
            membership: membership::Config::default(),
            broadcast: broadcast::Config::default(),
            tree: tree::Config::default(),
            map: map::Config::default(),
            sync: SyncConfig::default(),
            hello_timeout: 10_000,
            ping_interval: 10_000,
            idle_timeout: 30_000,
            transport_ping: true,
            transient_idle: 5_000,
            backoff_initial: 250,
            backoff_max: 10_000,
            revisit_interval: 30_000,
            seed_exchange_interval: 10_000,
            max_message_bytes: crate::wire::MAX_MESSAGE_BYTES,
            max_bad_frames: 32,
            refuse_for: 10 * 60_000,
            limits: Limits::default(),
            history: History::default(),
            per_address: KindCaps::default(),
        }
    }
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
    /// Whether it is a neighbour (in the active view, a page held here, or a page's link);
    /// other hearsay connections are brief (a membership request or reply).
    pub neighbor: bool,
    /// Whether messages are pushed to it (a broadcast tree link).
    pub eager: bool,
    pub connected_at: Millis,
}

/// Counters for status pages, metrics and the simulation's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub published: u64,
    /// Message copies received (GOSSIP, v1 MESSAGE and reconciled), duplicates included.
    pub received: u64,
    pub delivered: u64,
    /// Message copies pushed on to other peers (not counting our own publishes).
    pub forwarded: u64,
    pub duplicates: u64,
    pub bad_frames: u64,
    /// Messages that arrived through reconciliation rather than gossip.
    pub synced: u64,
    /// Frames and text bytes handed to the transport, and bytes received from it.
    pub frames_out: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub dials: u64,
    pub dial_failures: u64,
    /// Times a peer's send queue backed up (see [`Engine::backed_up`]).
    pub backed_up: u64,
    /// Messages refused because a page or seed sent more than its rate limit allows.
    pub rate_limited: u64,
    /// Handshakes refused from peers closed lately for bad frames or relaying over quota.
    pub refused: u64,
    /// Dials membership asked for beyond the dial rate limit (told they failed).
    pub dials_limited: u64,
    /// Messages refused as older than the retention window, or stamped too far ahead.
    pub too_old: u64,
    pub from_future: u64,
    /// Messages evicted as they aged out of the window.
    pub evicted: u64,
    /// Messages node peers relayed over their origin's quota (dropped), and node peers
    /// closed for doing it too often.
    pub over_quota: u64,
    pub closed_over_quota: u64,
    /// Messages whose signature was not their author's (dropped, the sender closed), and
    /// handshakes whose id did not derive from the key offered.
    pub bad_signatures: u64,
    pub bad_identities: u64,
    /// Reconciliations this peer started.
    pub sync_rounds: u64,
}

/// Why the application's publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("message is empty")]
    Empty,
    #[error("message is {0} bytes; the limit is {1}")]
    TooLarge(usize, usize),
    /// This peer published its origin's quota (see `Limits::origin_messages`): every other
    /// node would drop the rest, and close us for pushing it.
    #[error(
        "this node may publish {burst} messages at once and {per_second} a second (its origin's quota); try again in {retry_after_ms} ms"
    )]
    OverQuota {
        burst: u64,
        per_second: u64,
        retry_after_ms: u64,
    },
    #[error("a message published through a node must be signed by its author (author and sig)")]
    Unsigned,
    #[error(
        "id does not match the message: it is the first 16 bytes of SHA-256(\"hearsay/msg/v4\\0\" || author || seq || timestamp || text length || text), as hex"
    )]
    IdMismatch,
    #[error("sig is not the author's signature of the message's digest")]
    BadSignature,
    #[error("{0}")]
    Outside(String),
}

/// How soon after its handshake a connection is first checked (keepalive, and whether
/// membership wants it); the checks then set their own next deadline.
const ESTABLISHED_CHECK: Millis = 1_000;

/// How a message reached this peer, for the one way in ([`Engine::take`]).
#[derive(Debug, Clone, Copy)]
enum Via {
    /// Published here (by the application, or through this node by a client).
    Published,
    /// A seed's text, on a seed's connection.
    Seed,
    /// Pushed by neighbour `from` (`GOSSIP`), `hops` from its origin.
    Pushed { from: NodeId, hops: u32 },
    /// Fetched by reconciliation (`MESSAGES`).
    Fetched,
}

/// One peer's protocol state. See the module docs for how a driver uses it.
pub struct Engine {
    config: Config,
    me: NodeId,
    /// What this peer signs its messages with.
    key: Keypair,
    tab: Option<Tab>,
    /// Messages of the frame being handled whose signatures the driver had checked.
    checked: Vec<MsgId>,
    /// The engine's own random numbers (probe nonces, redial jitter).
    rng: SmallRng,
    conns: Conns,
    handshake: Handshake,
    book: AddressBook,
    /// Dials to addresses learned from peers (see `Limits::dials`).
    dial_bucket: TokenBucket,
    keepalive: Keepalive,
    membership: Membership,
    tree: Tree,
    broadcast: Broadcast,
    seeds: SeedPeers,
    sync: Sync,
    map: Map,
    held: Held,
    admission: Admission,
    seq: u64,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl Engine {
    /// A new engine for the peer with this identity. `seed` drives every random choice
    /// (jitter, sampling), so a simulation with the same seeds replays exactly.
    pub fn new(config: Config, identity: Identity, seed: u64, now: Millis) -> Self {
        let me = identity.id();
        let mut config = config;
        config.listen_addresses = config
            .listen_addresses
            .iter()
            .filter_map(|a| canonical_address(a))
            .collect();
        if config.kind == PeerKind::Browser {
            config.listen_addresses.clear();
        }
        let own = record_of(me, &config.listen_addresses);
        let node = config.kind == PeerKind::Node;
        let mut rng = SmallRng::seed_from_u64(seed);
        let backoff = Backoff {
            initial: config.backoff_initial,
            max: config.backoff_max,
            revisit: config.revisit_interval,
        };
        let membership = Membership::new(
            me,
            config.kind,
            own.clone(),
            config.membership.clone(),
            rng.random(),
            now,
        );
        let broadcast = Broadcast::new(config.broadcast.clone(), node, rng.random());
        let run = crate::identity::Nonce::from_bytes(rng.random());
        let mut map_config = config.map.clone();
        if !node {
            // A page joins a network that has formed: it shows itself at once.
            map_config.first_check = map_config.first_check.min(1_000);
        }
        let address = own.as_ref().map(|r| r.address.clone());
        let shaping = config.broadcast.strategy == broadcast::Strategy::Plumtree;
        Self {
            handshake: Handshake::new(
                identity.key.clone(),
                identity.tab,
                config.kind,
                run,
                config.listen_addresses.clone(),
                config.home,
            ),
            book: AddressBook::new(&config.listen_addresses, me, backoff),
            dial_bucket: TokenBucket::new(config.limits.dials, now),
            keepalive: Keepalive::new(keepalive::Config {
                hello_timeout: config.hello_timeout,
                ping_interval: config.ping_interval,
                idle_timeout: config.idle_timeout,
                transport_ping: config.transport_ping,
                transient_idle: config.transient_idle,
            }),
            membership,
            tree: Tree::new(config.tree.clone(), me, node, shaping, address.clone(), now),
            broadcast,
            seeds: SeedPeers::new(me, own, config.seed_exchange_interval),
            sync: Sync::new(config.sync.clone()),
            map: Map::new(me, config.kind, address, map_config, now),
            held: Held::new(config.history.clone(), now),
            admission: Admission::new(
                admission::Config {
                    node,
                    limits: config.limits.clone(),
                    max_message_bytes: config.max_message_bytes,
                    refuse_for: config.refuse_for,
                    expire_every: config.history.evict_every,
                },
                now,
            ),
            config,
            me,
            key: identity.key,
            tab: identity.tab,
            checked: Vec::new(),
            rng,
            conns: Conns::default(),
            seq: 0,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The key this peer signs its messages with.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Broadcast's counters, the tree's included.
    pub fn broadcast_stats(&self) -> BroadcastStats {
        let (plumtree, tree) = (self.broadcast.stats(), self.tree.stats());
        BroadcastStats {
            grafts: plumtree.grafts + tree.grafts,
            prunes: tree.prunes,
            beacons: tree.beacons,
            depth_reports: tree.depth_reports,
            handovers: tree.handovers,
            ..plumtree.clone()
        }
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] should run next: the earliest deadline of any part.
    pub fn poll_timeout(&self) -> Option<Millis> {
        earliest([
            self.keepalive.poll_timeout(),
            self.book.poll_timeout(),
            self.held.poll_timeout(),
            self.admission.poll_timeout(),
            self.seeds.poll_timeout(),
            self.membership.poll_timeout(),
            self.tree.poll_timeout(),
            self.broadcast.poll_timeout(),
            self.map.poll_timeout(),
            self.sync.poll_timeout(),
        ])
    }

    /// Connected (and handshaking) peers, in connection order.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.conns
            .iter()
            .filter(|(_, c)| !matches!(c.state, State::Dialing))
            .map(|(conn, c)| {
                let hearsay = c.hearsay();
                PeerInfo {
                    conn,
                    id: hearsay.map(|h| h.id),
                    address: c.address().map(str::to_owned),
                    direction: c.direction,
                    protocol: c.protocol(),
                    kind: hearsay.map(|h| h.kind),
                    neighbor: hearsay.is_some_and(|h| self.membership.is_neighbor(h.id)),
                    eager: hearsay.is_some_and(|h| self.broadcast.is_eager(&h.id)),
                    connected_at: c.connected_at,
                }
            })
            .collect()
    }

    /// The active view (a page's links), as node ids.
    pub fn neighbors(&self) -> Vec<NodeId> {
        self.membership.active()
    }

    /// The root of the broadcast tree, as this peer knows it.
    pub fn root(&self) -> Option<NodeId> {
        self.tree.root()
    }

    /// The passive view: nodes known and not linked.
    pub fn passive(&self) -> &[PeerRecord] {
        self.membership.passive()
    }

    /// Every address this peer dials and how its link stands.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.book.links(|id| self.conns.to_node(id).is_some())
    }

    /// How many peers the map knows of.
    pub fn map_size(&self) -> usize {
        self.map.view().len()
    }

    /// The network map as this peer knows it: its own record and every unexpired one heard.
    pub fn topology(&self) -> Vec<TopoRecord> {
        self.map.view().records().cloned().collect()
    }

    /// Records a message already held (the store's history at start, or history fetched out
    /// of band): it is reconciled with peers and never delivered again.
    pub fn note_held(&mut self, key: sync::Key, bytes: usize) {
        self.held.insert(key, bytes);
    }

    /// Nothing stamped before `ts` is to be taken again: the driver's store evicted up to
    /// there before a restart (for its storage cap, or the window).
    pub fn note_floor(&mut self, ts: Millis) {
        self.held.note_floor(ts);
    }

    // ----- events -----

    /// The operator asked to connect to `address` (`--peer`, `/add`). It is pinned: dialed now
    /// and redialed with backoff until it answers.
    pub fn add_peer(&mut self, address: &str, now: Millis) -> Result<String, AddressError> {
        let canonical = self.book.pin(address, now)?;
        let conns = &self.conns;
        self.book
            .handle_timeout(now, &|id| conns.to_node(id).is_some());
        self.route(now);
        Ok(canonical)
    }

    /// A peer connected to us. Returns the handle to report its frames and close under.
    pub fn accepted(&mut self, now: Millis) -> ConnId {
        self.accepted_from(None, now)
    }

    /// An inbound socket from client address `from` (`None` if the driver exempts it from
    /// per-address caps): once its kind is known, it is closed if that address holds as many
    /// of that kind as [`Config::per_address`] allows.
    pub fn accepted_from(&mut self, from: Option<String>, now: Millis) -> ConnId {
        let mut c = Conn::new(
            Direction::Inbound,
            None,
            State::Handshake { since: now },
            now,
        );
        c.from = from;
        c.nonce = self.handshake.fresh_nonce();
        let conn = self.conns.insert(c);
        self.keepalive.handshake_started(conn, now);
        conn
    }

    /// A dial we asked for succeeded: say hello.
    pub fn opened(&mut self, conn: ConnId, now: Millis) {
        let nonce = self.handshake.fresh_nonce();
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if !matches!(c.state, State::Dialing) {
            return;
        }
        c.state = State::Handshake { since: now };
        c.connected_at = now;
        c.last_heard = now;
        c.nonce = nonce;
        self.keepalive.handshake_started(conn, now);
        let hello = self.hello(conn, None);
        self.send(conn, hello);
    }

    /// A dial we asked for failed, for the reason given (shown on status pages).
    pub fn dial_failed(&mut self, conn: ConnId, reason: &str, now: Millis) {
        let Some(c) = self.conns.remove(conn) else {
            return;
        };
        self.stats.dial_failures += 1;
        if let Some(address) = &c.dialed {
            self.book
                .dial_failed(address, conn, reason, now, &mut self.rng);
        }
        if let Some(node) = c.intended {
            self.membership.connect_failed(node, now);
        }
        self.route(now);
    }

    /// The connection closed (by the peer, or the transport failed); `reason` is the peer's
    /// close reason or the transport's error, if any.
    pub fn closed(&mut self, conn: ConnId, reason: Option<&str>, now: Millis) {
        let text = match reason {
            Some(r) if !r.is_empty() => format!("closed: {r}"),
            _ => "connection lost".to_owned(),
        };
        self.forget(conn, None, &text, now);
        self.route(now);
    }

    /// A WebSocket pong arrived: the peer is alive.
    pub fn transport_pong(&mut self, conn: ConnId, now: Millis) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.last_heard = now;
            c.ping_sent = None;
        }
    }

    /// The driver's word that the send queue of `conn` is backed up (`true`: the peer reads
    /// more slowly than we send) or has drained again (`false`). A backed-up peer is only
    /// told of new messages until it drains (see `broadcast`): it is never dropped for it,
    /// and the other peers never wait for it.
    pub fn backed_up(&mut self, conn: ConnId, backed_up: bool, now: Millis) {
        if let Some(node) = self.conns.get(conn).and_then(Conn::node_id)
            && self.conns.to_node(node) == Some(conn)
        {
            self.broadcast.set_slow(node, backed_up);
        }
        if backed_up {
            self.stats.backed_up += 1;
        }
        self.route(now);
    }

    /// A frame the protocol has no use for arrived (a binary WebSocket message): counted as
    /// bad, like undecodable text.
    pub fn unsupported_frame(&mut self, conn: ConnId, now: Millis) {
        self.bad_frame(conn, "binary frame", now);
        self.route(now);
    }

    /// The messages the peer on `conn` asked for (after [`Output::Fetch`]), in pages.
    pub fn provide(&mut self, conn: ConnId, messages: Vec<Message>) {
        if !self.conns.get(conn).is_some_and(Conn::is_hearsay) {
            return;
        }
        for page in sync::pages(messages) {
            self.send(conn, Frame::from(page).encode().into());
        }
    }

    /// A text frame arrived on `conn`.
    pub fn frame(&mut self, conn: ConnId, text: &str, now: Millis) {
        self.inbound(conn, Inbound::read(text), now);
    }

    /// A frame read (and perhaps its signatures checked) off the engine's thread: see
    /// [`Inbound`].
    pub fn inbound(&mut self, conn: ConnId, inbound: Inbound, now: Millis) {
        self.stats.bytes_in += inbound.len as u64;
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.last_heard = now;
        c.ping_sent = None;
        let state = match &c.state {
            State::Hearsay(peer) => Some((peer.id, peer.kind)),
            _ => None,
        };
        match inbound.frame {
            Err(InboundError::TooLarge) => {
                // A driver should refuse it at the transport already; the page cannot.
                self.bad_frame(conn, "frame larger than the limit", now);
            }
            Err(InboundError::Undecodable) => self.bad_frame(conn, "undecodable frame", now),
            Ok(frame) if frame.address_count() > MAX_ADDRESSES => {
                self.bad_frame(conn, "too many addresses in one frame", now);
            }
            Ok(frame) => {
                // Good for this frame only (cleared below).
                self.checked = inbound.signed;
                match state {
                    Some((from, kind)) => self.on_hearsay_frame(conn, from, kind, frame, now),
                    None => self.on_other_frame(conn, frame, now),
                }
                self.checked.clear();
            }
        }
        self.route(now);
    }

    /// The application publishes `data`, signed with this peer's key. Returns the message
    /// as delivered.
    pub fn publish(&mut self, data: &str, now: Millis) -> Result<Message, PublishError> {
        self.check_size(data)?;
        self.charge_own(Author::Key(self.key.public()), now)?;
        self.seq = next_seq(self.seq, now, self.tab.as_ref());
        let msg = Message::signed(&self.key, self.seq, now, data.to_owned());
        self.stats.published += 1;
        self.take(msg.clone(), Via::Published, now);
        self.route(now);
        Ok(msg)
    }

    /// An application publishes a message it signed with its own key, through this peer.
    /// It is checked as any message from a peer would be (id, signature, size, window) and
    /// charged to its author's quota. Returns whether it is new here (false: already held,
    /// nothing done).
    pub fn publish_signed(&mut self, msg: Message, now: Millis) -> Result<bool, PublishError> {
        if msg.author.is_seed() {
            return Err(PublishError::Unsigned);
        }
        self.check_size(&msg.data)?;
        if !msg.id_is_valid() {
            return Err(PublishError::IdMismatch);
        }
        // Checked even if held: a client is never told a forgery was taken.
        if !msg.signature_is_valid() {
            self.stats.bad_signatures += 1;
            return Err(PublishError::BadSignature);
        }
        if self.held.contains(&msg.id) {
            return Ok(false);
        }
        if let Err(outside) = self.held.history().check(sync::key_of(&msg).0, now) {
            return Err(PublishError::Outside(outside.to_string()));
        }
        self.charge_own(msg.author, now)?;
        self.stats.published += 1;
        self.take(msg, Via::Published, now);
        self.route(now);
        Ok(true)
    }

    fn check_size(&self, data: &str) -> Result<(), PublishError> {
        if data.is_empty() {
            return Err(PublishError::Empty);
        }
        if data.len() > self.config.max_message_bytes {
            return Err(PublishError::TooLarge(
                data.len(),
                self.config.max_message_bytes,
            ));
        }
        Ok(())
    }

    /// Charges a message published here to its author's quota, as every node that relays it
    /// will (a page is charged by its node instead).
    fn charge_own(&mut self, author: Author, now: Millis) -> Result<(), PublishError> {
        if self.config.kind != PeerKind::Node {
            return Ok(());
        }
        let rate = self.config.limits.origin_messages;
        self.admission
            .take_from_quota(author, now)
            .map_err(|wait| PublishError::OverQuota {
                burst: rate.burst as u64,
                per_second: rate.per_second as u64,
                retry_after_ms: wait,
            })
    }

    /// Time has passed: runs whatever is due in every part, in a fixed order.
    pub fn handle_timeout(&mut self, now: Millis) {
        let due = |t: Option<Millis>| t.is_some_and(|t| t <= now);
        if due(self.keepalive.poll_timeout()) {
            let membership = &self.membership;
            let cx = keepalive::Context {
                conns: &mut self.conns,
                wants: &|node| membership.wants(node),
                rng: &mut self.rng,
            };
            self.keepalive.handle_timeout(now, cx);
            self.route_direct(now);
        }
        if due(self.book.poll_timeout()) {
            let conns = &self.conns;
            self.book
                .handle_timeout(now, &|id| conns.to_node(id).is_some());
            self.route_direct(now);
        }
        if due(self.held.poll_timeout()) {
            self.held.handle_timeout(now, ());
            self.route_direct(now);
        }
        if due(self.admission.poll_timeout()) {
            self.admission.handle_timeout(now, ());
        }
        if due(self.seeds.poll_timeout()) {
            let (me, membership, view) = (self.me, &self.membership, self.map.view());
            let cx = seed::Context {
                known: &|| seed::known(me, membership.known_nodes(), view),
                map: view,
            };
            self.seeds.handle_timeout(now, cx);
            self.route_direct(now);
        }
        if due(self.membership.poll_timeout()) {
            self.membership.handle_timeout(now, ());
        }
        if due(self.broadcast.poll_timeout()) {
            self.broadcast.handle_timeout(now, ());
        }
        if due(self.tree.poll_timeout()) {
            self.tree.handle_timeout(now, self.broadcast.links_mut());
        }
        if due(self.map.poll_timeout()) {
            // A page joins a tree that is there already; flooding needs none.
            let ready = self.config.kind == PeerKind::Browser
                || self.config.broadcast.strategy == broadcast::Strategy::Flood
                || self.tree.root().is_some();
            let (membership, broadcast, seeds) = (&self.membership, &self.broadcast, &self.seeds);
            let cx = map::Context {
                held: self.held.len() as u64,
                ready,
                own: &|| own_links(membership, broadcast, seeds),
                eager: &|| broadcast.eager().copied().collect(),
            };
            self.map.handle_timeout(now, cx);
            self.route_direct(now);
        }
        if due(self.sync.poll_timeout()) {
            let history = self.held.history();
            let cx = sync::Context {
                index: self.held.index(),
                floor: self.held.kept_from(history.sync_floor(now)),
            };
            self.sync.handle_timeout(now, cx);
            self.stats.sync_rounds = self.sync.rounds();
            self.route_direct(now);
        }
        self.route(now);
    }

    /// Drains every output into `driver`. Call after every event (see the crate docs).
    pub fn drain(&mut self, driver: &mut impl Driver, now: Millis) {
        loop {
            let mut full = Vec::new();
            let mut more = false;
            while let Some(output) = self.poll_output() {
                match output {
                    Output::Send { conn, frame } => {
                        if !driver.send(conn, frame) && !full.contains(&conn) {
                            full.push(conn);
                        }
                    }
                    Output::Ping { conn } => driver.ping(conn),
                    Output::Dial { conn, address } => driver.dial(conn, address),
                    Output::Close { conn, reason } => driver.close(conn, reason),
                    Output::Deliver { msg, hops } => driver.deliver(msg, hops),
                    Output::Acked { id, by } => driver.acked(id, by),
                    Output::Refused {
                        by,
                        reason,
                        id,
                        retry_after_ms,
                    } => driver.refused(by, &reason, id, retry_after_ms),
                    Output::Evict { before, count } => driver.evict(before, count),
                    Output::Fetch { conn, ids } => {
                        if let Some(found) = driver.fetch(conn, ids) {
                            self.provide(conn, found);
                            more = true;
                        }
                    }
                }
            }
            for conn in full {
                more = true;
                // A peer that cannot keep up is dropped rather than allowed to grow memory.
                self.close(conn, CloseReason::SendQueueFull, now);
                self.route(now);
            }
            if !more {
                return;
            }
        }
    }

    // ----- frames -----

    /// A frame on a connection whose handshake is not done, or from a seed.
    fn on_other_frame(&mut self, conn: ConnId, frame: Frame, now: Millis) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        match (&c.state, frame) {
            (State::Handshake { .. }, Frame::Handshake(handshake::Message::Hello(hello))) => {
                self.on_hello(conn, hello, now);
            }
            (State::Handshake { .. }, Frame::Seed(message)) => {
                // Read the seed's first frame (its SOCKETS: what it has dialed) before
                // answering, so the answer can take it into account.
                let dialed = c.dialed.clone();
                if !self.start_seed(conn, now) {
                    return;
                }
                self.on_seed_frame(conn, Frame::Seed(message), now);
                let nodes = self.membership.known_nodes();
                self.seeds.first_frame(conn, dialed, nodes, now);
            }
            (State::Handshake { .. }, _) => self.close(conn, CloseReason::ExpectedHello, now),
            (State::Proving { .. }, Frame::Handshake(handshake::Message::Proof { sig })) => {
                self.on_proof(conn, sig, now);
            }
            (State::Proving { .. }, _) => self.close(conn, CloseReason::BadIdentity, now),
            (State::Seed, frame) => self.on_seed_frame(conn, frame, now),
            (State::Dialing | State::Hearsay(_), _) => {}
        }
    }

    fn on_hearsay_frame(
        &mut self,
        conn: ConnId,
        from: NodeId,
        kind: PeerKind,
        frame: Frame,
        now: Millis,
    ) {
        match frame {
            Frame::Membership(m) => self.membership.message(from, m, now),
            Frame::Broadcast(broadcast::Message::Gossip { msg, hops }) => {
                self.arrive(conn, kind, msg, Via::Pushed { from, hops }, now);
            }
            Frame::Broadcast(m) => {
                let (held, admission) = (&self.held, &self.admission);
                let held = |id: &MsgId| held.contains(id) || admission.dropped_over_quota(id);
                self.broadcast.message(from, m, held, now);
            }
            Frame::Tree(m) => self.tree.message(from, m, self.broadcast.links_mut(), now),
            Frame::Keepalive(m) => self.keepalive.message(conn, m),
            Frame::Reply(Reply::Ack { id }) => {
                self.outputs.push_back(Output::Acked { id, by: from })
            }
            Frame::Reply(Reply::Error {
                reason,
                id,
                retry_after_ms,
            }) => self.outputs.push_back(Output::Refused {
                by: from,
                reason,
                id,
                retry_after_ms,
            }),
            Frame::Sync(sync::Message::Messages { messages, done }) => {
                self.on_messages(conn, kind, messages, done, now);
            }
            Frame::Sync(m) => {
                let history = self.held.history();
                let cx = sync::Context {
                    index: self.held.index(),
                    floor: self.held.kept_from(history.cutoff(now)),
                };
                self.sync.message(conn, m, cx);
            }
            Frame::Map(map::Message::Map { records }) => self.map.received(from, records, now),
            Frame::Seed(_) | Frame::Handshake(_) => self.bad_frame(conn, "unexpected frame", now),
        }
    }

    fn on_seed_frame(&mut self, conn: ConnId, frame: Frame, now: Millis) {
        match frame {
            Frame::Seed(seed::Message::Text { data }) => {
                let msg = Message::from_seed(data, now);
                self.arrive(conn, PeerKind::Node, msg, Via::Seed, now);
            }
            Frame::Seed(seed::Message::Sockets { addresses }) => {
                self.seeds.sockets(conn, &addresses, now);
            }
            // A seed ignores frames it does not know; so do we, but we count them.
            _ => self.bad_frame(conn, "unexpected frame from a v1 peer", now),
        }
    }

    /// Messages fetched by reconciliation: delivered but not pushed on. Instead, every other
    /// peer is reconciled with at once, which carries them on hop by hop.
    fn on_messages(
        &mut self,
        conn: ConnId,
        kind: PeerKind,
        messages: Vec<Message>,
        done: bool,
        now: Millis,
    ) {
        let mut new = 0;
        for msg in messages {
            match self.arrive(conn, kind, msg, Via::Fetched, now) {
                // Closed: nothing more of what it sent is taken (nor checked, which costs).
                None => return,
                Some(taken) => new += usize::from(taken),
            }
        }
        self.sync.page(conn, done, self.held.index());
        if new > 0 {
            self.sync.news(conn, now);
        }
    }

    // ----- the one way in -----

    /// A message arrived from the peer on `conn` (of `kind`; a seed's by [`Via::Seed`]):
    /// admission judges it and the verdict is carried out here. Whether it was taken, or
    /// `None` if the connection is gone.
    fn arrive(
        &mut self,
        conn: ConnId,
        kind: PeerKind,
        msg: Message,
        via: Via,
        now: Millis,
    ) -> Option<bool> {
        self.stats.received += 1;
        let sender = match (via, kind) {
            (Via::Seed, _) => Sender::Seed,
            (_, PeerKind::Browser) => Sender::Page,
            (via, PeerKind::Node) => Sender::Node {
                pushed: matches!(via, Via::Pushed { .. }),
            },
        };
        let from = self.conns.get(conn).and_then(Conn::node_id);
        let checked = self.checked.contains(&msg.id);
        let verdict = self
            .admission
            .judge(conn, from, sender, &msg, checked, &self.held, now);
        let mut taken = false;
        match verdict {
            Verdict::Take => {
                taken = true;
                self.ack_if_page_published(conn, kind, &msg);
                self.take(msg, via, now);
            }
            Verdict::Duplicate => {
                self.stats.duplicates += 1;
                if matches!(via, Via::Pushed { .. }) {
                    self.ack_if_page_published(conn, kind, &msg);
                }
            }
            Verdict::Bad(why) => self.bad_frame(conn, why, now),
            Verdict::Drop { why, tell } => {
                match why {
                    Dropped::TooOld => self.stats.too_old += 1,
                    Dropped::Future => self.stats.from_future += 1,
                    Dropped::RateLimited => self.stats.rate_limited += 1,
                    Dropped::OverQuota => self.stats.over_quota += 1,
                }
                if let Some(reply) = tell {
                    self.send(conn, Frame::from(reply).encode().into());
                }
            }
            Verdict::Close(reason) => {
                match reason {
                    CloseReason::BadSignature => self.stats.bad_signatures += 1,
                    CloseReason::OverQuota => {
                        self.stats.over_quota += 1;
                        self.stats.closed_over_quota += 1;
                    }
                    _ => {}
                }
                self.close(conn, reason, now);
            }
        }
        self.conns.get(conn).map(|_| taken)
    }

    /// A message new here is taken: held, delivered, passed to seeds, broadcast.
    fn take(&mut self, msg: Message, via: Via, now: Millis) {
        self.held.insert(sync::key_of(&msg), msg.data.len());
        self.stats.delivered += 1;
        let own = matches!(via, Via::Published);
        let homed = matches!(via, Via::Pushed { .. })
            && !self.seeds.is_empty()
            && self.homed_here(&msg.author);
        if seed::should_receive(&msg, own, homed) {
            self.seeds.pass_on(&msg);
        }
        let hops = match via {
            Via::Published | Via::Seed => Some(0),
            Via::Pushed { hops, .. } => Some(hops),
            Via::Fetched => None,
        };
        self.outputs.push_back(Output::Deliver {
            msg: msg.clone(),
            hops,
        });
        let msg = Arc::new(msg);
        let (from, hops) = match via {
            Via::Fetched => {
                self.stats.synced += 1;
                self.broadcast.received_otherwise(msg, now);
                return;
            }
            Via::Pushed { from, hops } => (Some(from), hops),
            Via::Published | Via::Seed => (None, 0),
        };
        // A node that publishes nearly everything takes the root (see `tree`).
        let mine = from.is_none() && !msg.author.is_seed();
        self.tree.note_publisher(mine, self.broadcast.links(), now);
        let root = self.tree.root();
        self.broadcast.received_new(from, msg, hops, root, now);
    }

    /// Whether `author` is a page homed at this node (we pass its messages to seeds).
    fn homed_here(&self, author: &Author) -> bool {
        let Some(key) = author.key() else {
            return false;
        };
        // Only looked at when seeds are linked: a scan of the pages held here.
        self.conns.iter().any(|(_, c)| {
            c.hearsay().is_some_and(|h| {
                h.kind == PeerKind::Browser && h.home == Some(self.me) && &h.key == key
            })
        })
    }

    /// Acknowledges a page's own message to it (even a copy: the page wants to know that
    /// some node holds what it published).
    fn ack_if_page_published(&mut self, conn: ConnId, kind: PeerKind, msg: &Message) {
        let key = self.conns.get(conn).and_then(Conn::hearsay).map(|h| h.key);
        if self.config.kind == PeerKind::Node
            && kind == PeerKind::Browser
            && key.is_some_and(|k| msg.author == Author::Key(k))
        {
            let ack = Frame::from(Reply::Ack { id: msg.id });
            self.send(conn, ack.encode().into());
        }
    }

    // ----- the handshake -----

    /// Our `HELLO` on `conn`, with its nonce; answering a dialer, with our proof over its
    /// nonce and the id it claims.
    fn hello(&self, conn: ConnId, answering: Option<(crate::identity::Nonce, NodeId)>) -> Arc<str> {
        let nonce = self.conns.get(conn).map(|c| c.nonce);
        let hello = self
            .handshake
            .hello(nonce, answering, self.tree.root_and_term());
        Frame::from(hello).encode().into()
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello, now: Millis) {
        let key = match self.handshake.check(&hello) {
            Ok(key) => key,
            Err(reason) => return self.close(conn, reason, now),
        };
        if let Some(until) = self.admission.refused_until(&hello.id, now) {
            self.stats.refused += 1;
            let seconds = until.saturating_sub(now).div_ceil(1_000);
            return self.close(conn, CloseReason::Refused { seconds }, now);
        }
        if self.over_address_cap(conn, Some(hello.kind), now) {
            return;
        }
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let (direction, ours) = (c.direction, c.nonce);
        if hello.id == self.me {
            if let Some(address) = &c.dialed {
                self.book.mark_self(address, self.me);
            }
            return self.close(conn, CloseReason::ConnectedToSelf, now);
        }
        let Some(theirs) = hello.nonce else {
            return self.close(conn, CloseReason::BadIdentity, now);
        };
        match direction {
            Direction::Inbound => {
                // Answer with our proof, then wait for the dialer's before taking it for
                // the node it says it is.
                let frame = self.hello(conn, Some((theirs, hello.id)));
                self.send(conn, frame);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.state = State::Proving {
                        since: now,
                        hello: Box::new(hello),
                        key,
                    };
                }
                self.keepalive.handshake_started(conn, now);
            }
            Direction::Outbound => match self.handshake.answer(&key, &hello, &ours, &theirs) {
                Some(proof) => {
                    self.send(conn, Frame::from(proof).encode().into());
                    self.establish(conn, hello, key, now);
                }
                None => self.close(conn, CloseReason::BadIdentity, now),
            },
        }
    }

    /// The dialer's proof: it holds the key its `HELLO` named.
    fn on_proof(&mut self, conn: ConnId, sig: crate::identity::Signature, now: Millis) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let State::Proving { key, .. } = &c.state else {
            return;
        };
        let key = *key;
        if !self.handshake.proven(&key, &c.nonce, &sig) {
            return self.close(conn, CloseReason::BadIdentity, now);
        }
        let since = c.connected_at;
        let State::Proving { hello, .. } =
            std::mem::replace(&mut c.state, State::Handshake { since })
        else {
            return;
        };
        self.establish(conn, *hello, key, now);
    }

    /// A peer whose identity is proven becomes the node (or page) it says it is.
    fn establish(&mut self, conn: ConnId, hello: Hello, key: PublicKey, now: Millis) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let (direction, dialed, intended) = (c.direction, c.dialed.clone(), c.intended);
        let addresses: Vec<String> = if hello.kind == PeerKind::Browser {
            Vec::new()
        } else {
            hello
                .addresses
                .iter()
                .filter_map(|a| canonical_address(a))
                .collect()
        };

        // Never two connections to one node. With links in both directions, the one dialed by
        // the lower id survives (both ends compute the same answer). With two links in the same
        // direction, only the dialer acts, closing the newer one; the acceptor keeps the older
        // one as the node's until then.
        let mut replaced = false;
        let mut second = false;
        if let Some(other) = self.conns.to_node(hello.id).filter(|&o| o != conn)
            && let Some(old) = self
                .conns
                .get(other)
                .and_then(Conn::hearsay)
                .and_then(|h| h.run)
            && hello.run.is_some_and(|run| run != old)
        {
            // The same node in a new process (its key is kept across restarts): the old link
            // is its previous run's, dead even if no close ever came.
            self.close(other, CloseReason::PeerRestarted, now);
        }
        if let Some(other) = self.conns.to_node(hello.id).filter(|&o| o != conn) {
            let other_dir = self.conns.get(other).map(|c| c.direction);
            let drop_new = match (direction, other_dir) {
                (_, None) => false,
                (Direction::Outbound, Some(Direction::Outbound)) => true,
                (Direction::Inbound, Some(Direction::Inbound)) => false,
                (Direction::Outbound, Some(Direction::Inbound)) => self.me > hello.id,
                (Direction::Inbound, Some(Direction::Outbound)) => self.me < hello.id,
            };
            if drop_new {
                // (An inbound one was answered already, so the dialer learns who we are
                // and stops redialing.) A pinned address we dialed is that node's: the book
                // learns it, so it is revisited, not counted as failing. (Membership still
                // hears of a failed dial and repairs from elsewhere: measured at 1,000 nodes,
                // keeping its request pending instead lengthens the tree, p99 280 ms -> 1.6 s.)
                if dialed.as_deref().is_some_and(|a| self.book.is_pinned(a)) {
                    self.book
                        .established(conn, dialed.as_deref(), hello.id, &[]);
                }
                // What we meant to send on this connection goes on the surviving one.
                let queued = self.conns.take_queued(conn);
                self.close(conn, CloseReason::DuplicateConnection, now);
                for frame in queued {
                    self.send(other, frame);
                }
                return;
            } else if Some(direction) != other_dir {
                // The surviving connection takes over what the other one had queued.
                let queued = self.conns.take_queued(other);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.queued.extend(queued);
                }
                // The node stays linked, over this connection: membership and broadcast are
                // not told it left.
                self.conns.unregister(hello.id);
                replaced = true;
                self.close(other, CloseReason::DuplicateConnection, now);
            } else {
                second = true;
            }
        }

        let record = record_of(hello.id, &addresses);
        self.book
            .established(conn, dialed.as_deref(), hello.id, &addresses);
        let peer = Hearsay {
            id: hello.id,
            key,
            run: hello.run,
            kind: hello.kind,
            record: record.clone(),
            home: hello.home,
        };
        self.conns.established(conn, peer, !second);
        for frame in self.conns.take_queued(conn) {
            self.send(conn, frame);
        }
        // Keepalive and the transient check start now, not at the handshake's deadline.
        self.keepalive.check_at(conn, now + ESTABLISHED_CHECK);
        if second {
            // The node dialed us twice; its dialer closes the newer connection.
            return;
        }
        if let Some(intended) = intended
            && intended != hello.id
        {
            // The address now belongs to another node (another key in that folder, or
            // another node on that port).
            self.membership.connect_failed(intended, now);
        }
        let pinned = dialed.as_deref().is_some_and(|a| self.book.is_pinned(a));
        if replaced && self.membership.is_neighbor(hello.id) {
            self.sync.open(conn, direction == Direction::Outbound, now);
        }
        // Another root in the same term: a tree we are not part of. (In another term it may
        // only be a new root's first beacon still on its way: joining again then would
        // reshape the overlay under every message in flight; measured at 1,000 nodes with
        // revisits every 7.5 s, p99 280 ms -> 1.4 s.) A part that lost the root is found by
        // its new root instead (`tree::Out::RootLost`).
        let ours = self.tree.root_and_term();
        let theirs = hello.root.zip(Some(hello.term.unwrap_or(0)));
        let elsewhere = matches!((theirs, ours), (Some((a, t)), Some((b, u))) if a != b && t == u);
        self.membership
            .connected(hello.id, hello.kind, record, pinned, elsewhere, now);
    }

    /// The peer on `conn` is a seed (its first frame is a seed's); false if it was closed
    /// instead, its address holding as many seeds as it may.
    fn start_seed(&mut self, conn: ConnId, now: Millis) -> bool {
        if self.over_address_cap(conn, None, now) {
            return false;
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        c.state = State::Seed;
        c.last_heard = now;
        let dialed = c.dialed.clone();
        self.seeds.opened(conn, dialed);
        true
    }

    /// Whether `conn`'s client address already holds as many connections of `kind` (`None`:
    /// a seed) as it may; if so, `conn` is closed, saying why.
    fn over_address_cap(&mut self, conn: ConnId, kind: Option<PeerKind>, now: Millis) -> bool {
        let caps = self.config.per_address;
        let (max, name) = match kind {
            Some(PeerKind::Node) => (caps.nodes, "node"),
            Some(PeerKind::Browser) => (caps.pages, "page"),
            None => (caps.seeds, "seed"),
        };
        if self.conns.held_from(conn, kind) < max {
            return false;
        }
        let reason = CloseReason::TooManyFromAddress { kind: name, max };
        self.close(conn, reason, now);
        true
    }

    // ----- the parts' outputs -----

    /// Carries out what the parts asked for, until none has anything more to say. Parts
    /// whose effects the others read at once (keepalive, the book, the held set, seeds, the
    /// map, reconciliation) are carried out as soon as they speak; membership's and
    /// broadcast's outputs in turn, each part's in the order it queued them.
    fn route(&mut self, now: Millis) {
        // What broadcast scales by (how far a message's first hops go, whether the root
        // walks): the map's size as of this call, for the next.
        let size = self.map.view().len();
        self.broadcast.set_network_size(size);
        self.tree.set_network_size(size);
        loop {
            self.route_direct(now);
            let mut any = false;
            while let Some(out) = self.membership.poll() {
                any = true;
                self.on_membership(out, now);
                self.route_direct(now);
            }
            while let Some(out) = self.tree.poll() {
                any = true;
                self.on_tree(out, now);
                self.route_direct(now);
            }
            while let Some(out) = self.broadcast.poll() {
                any = true;
                self.on_broadcast(out, now);
                self.route_direct(now);
            }
            if !any {
                break;
            }
        }
    }

    fn route_direct(&mut self, now: Millis) {
        loop {
            let mut any = false;
            while let Some(out) = self.keepalive.poll() {
                any = true;
                match out {
                    keepalive::Out::Send(conn, m) => {
                        self.send(conn, Frame::from(m).encode().into())
                    }
                    keepalive::Out::TransportPing(conn) => {
                        self.outputs.push_back(Output::Ping { conn });
                    }
                    keepalive::Out::Close(conn, reason) => self.close(conn, reason, now),
                }
            }
            while let Some(address) = self.book.poll() {
                any = true;
                self.dial(address, None, now);
            }
            while let Some(HeldOut::Evict { before, count }) = self.held.poll() {
                any = true;
                self.stats.evicted += count as u64;
                self.outputs.push_back(Output::Evict { before, count });
            }
            while let Some(out) = self.seeds.poll() {
                any = true;
                match out {
                    seed::Out::Send { to, message } => self.send_all(&to, Frame::from(message)),
                    seed::Out::Close(conn, reason) => self.close(conn, reason, now),
                    seed::Out::Introduced(address) => self.book.seed_answered(&address, now),
                }
            }
            // Neighbours that get the same records share one encoding.
            let mut encoded: Vec<(Arc<map::Message>, Arc<str>)> = Vec::new();
            while let Some(map::Out::Send(node, message)) = self.map.poll() {
                any = true;
                let frame = match encoded.iter().find(|(m, _)| Arc::ptr_eq(m, &message)) {
                    Some((_, frame)) => frame.clone(),
                    None => {
                        let frame: Arc<str> = Frame::from((*message).clone()).encode().into();
                        encoded.push((message, frame.clone()));
                        frame
                    }
                };
                if let Some(conn) = self.conns.to_node(node) {
                    self.send(conn, frame);
                }
            }
            while let Some(out) = self.sync.poll() {
                any = true;
                match out {
                    sync::Out::Send { to, message } => self.send_all(&to, Frame::from(message)),
                    sync::Out::Fetch { conn, ids } => {
                        self.outputs.push_back(Output::Fetch { conn, ids });
                    }
                    sync::Out::Bad(conn, why) => self.bad_frame(conn, why, now),
                }
            }
            if !any {
                return;
            }
        }
    }

    fn on_membership(&mut self, out: membership::Out, now: Millis) {
        use membership::Out;
        match out {
            Out::Send(node, message) => self.send_to(node, Frame::from(message)),
            Out::Connect { peer, then } => {
                let frame: Option<Arc<str>> = then.map(|m| Frame::from(m).encode().into());
                if let Some(conn) = self.conns.to_node(peer.id) {
                    if let Some(frame) = frame {
                        self.send(conn, frame);
                    }
                    return;
                }
                if self.book.is_self(&peer.address) {
                    return self.membership.connect_failed(peer.id, now);
                }
                let conn = match self.book.dialing(&peer.address, Some(peer.id)) {
                    Some(conn) => conn,
                    None => {
                        if self.dial_bucket.take(1.0, now).is_err() {
                            self.stats.dials_limited += 1;
                            return self.membership.connect_failed(peer.id, now);
                        }
                        self.dial(peer.address.clone(), Some(peer.id), now)
                    }
                };
                if let (Some(frame), Some(c)) = (frame, self.conns.get_mut(conn)) {
                    c.queued.push(frame);
                }
            }
            Out::Close(node, reason) => {
                if let Some(conn) = self.conns.to_node(node) {
                    self.close(conn, reason, now);
                }
            }
            Out::NeighborUp(node) => {
                let Some(c) = self.conns.to_node(node).and_then(|c| self.conns.get(c)) else {
                    return;
                };
                let client = c.hearsay().is_some_and(|h| h.kind == PeerKind::Browser);
                let initiator = c.direction == Direction::Outbound;
                let formed = self.tree.root().is_some();
                self.broadcast.neighbor_up(node, client, formed);
                if let Some(conn) = self.conns.to_node(node) {
                    self.sync.open(conn, initiator, now);
                }
                if client && self.config.kind == PeerKind::Node {
                    self.map.send_all(node);
                }
            }
            Out::NeighborDown(node) => {
                self.broadcast.neighbor_down(node);
                self.tree.neighbor_down(node, self.broadcast.links_mut());
                if let Some(conn) = self.conns.to_node(node) {
                    self.sync.close(conn);
                }
            }
        }
    }

    fn on_tree(&mut self, out: tree::Out, now: Millis) {
        match out {
            tree::Out::Send(node, message) => self.send_to(node, Frame::from(message)),
            tree::Out::Graft(node) => {
                let graft = broadcast::Message::Graft { ids: Vec::new() };
                self.send_to(node, Frame::from(graft));
            }
            tree::Out::Prune(node) => self.send_to(node, Frame::from(broadcast::Message::Prune)),
            tree::Out::RootLost { root, address } => {
                let record = PeerRecord {
                    id: root,
                    address: address.to_string(),
                    aliases: Vec::new(),
                };
                // A peer's claim: only a WebSocket URL that is not our own is dialed. A link
                // to it that is no neighbour's (a revisit, a shuffle's carrier) is no path
                // between the parts: the join goes over it.
                if let Some(record) = record.canonical()
                    && !self.membership.is_neighbor(root)
                {
                    self.membership.reach(record, now);
                }
            }
        }
    }

    fn on_broadcast(&mut self, out: broadcast::Out, _now: Millis) {
        match out {
            broadcast::Out::Push { to, msg, hops } => {
                let frame: Arc<str> = Frame::encode_gossip(&msg, hops).into();
                let own = msg.author == Author::Key(self.key.public());
                for node in to {
                    if let Some(conn) = self.conns.to_node(node) {
                        if !own {
                            self.stats.forwarded += 1;
                        }
                        self.send(conn, frame.clone());
                    }
                }
            }
            broadcast::Out::Send(node, message) => self.send_to(node, Frame::from(message)),
            broadcast::Out::Pruned(node) => self.tree.pruned_by(node, self.broadcast.links_mut()),
        }
    }

    // ----- connections -----

    fn dial(&mut self, address: String, intended: Option<NodeId>, now: Millis) -> ConnId {
        let mut c = Conn::new(
            Direction::Outbound,
            Some(address.clone()),
            State::Dialing,
            now,
        );
        c.intended = intended;
        let conn = self.conns.insert(c);
        self.book.dial_started(&address, conn, intended);
        self.stats.dials += 1;
        self.outputs.push_back(Output::Dial { conn, address });
        conn
    }

    fn send(&mut self, conn: ConnId, frame: Arc<str>) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        self.outputs.push_back(Output::Send { conn, frame });
    }

    /// Sends `frame` to the connection of hearsay peer `node`, if there is one.
    fn send_to(&mut self, node: NodeId, frame: Frame) {
        if let Some(conn) = self.conns.to_node(node) {
            self.send(conn, frame.encode().into());
        }
    }

    /// Sends `frame`, encoded once, to each of `conns`.
    fn send_all(&mut self, conns: &[ConnId], frame: Frame) {
        let frame: Arc<str> = frame.encode().into();
        for &conn in conns {
            self.send(conn, frame.clone());
        }
    }

    fn bad_frame(&mut self, conn: ConnId, why: &str, now: Millis) {
        self.stats.bad_frames += 1;
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.bad_frames += 1;
        if c.bad_frames >= self.config.max_bad_frames {
            // A node or page that comes back under the same id is refused for a while (a
            // seed has no id: it is only closed).
            if let Some(node) = c.node_id() {
                self.admission.refuse(node, now);
            }
            let reason = CloseReason::TooManyBadFrames {
                last: why.to_owned(),
            };
            self.close(conn, reason, now);
        }
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason, now: Millis) {
        if self.conns.get(conn).is_none() {
            return;
        }
        if reason == CloseReason::BadIdentity {
            self.stats.bad_identities += 1;
        }
        let text = format!("we closed it: {reason}");
        self.outputs.push_back(Output::Close {
            conn,
            reason: reason.clone(),
        });
        self.forget(conn, Some(&reason), &text, now);
    }

    /// Bookkeeping after a connection is gone: every part forgets it.
    fn forget(&mut self, conn: ConnId, reason: Option<&CloseReason>, text: &str, now: Millis) {
        let registered = self
            .conns
            .get(conn)
            .and_then(Conn::node_id)
            .is_some_and(|n| self.conns.to_node(n) == Some(conn));
        let Some(c) = self.conns.remove(conn) else {
            return;
        };
        self.book
            .closed(conn, c.dialed.as_deref(), reason, text, now, &mut self.rng);
        self.seeds.closed(conn);
        self.sync.close(conn);
        self.admission.forget(conn);
        if registered && let Some(node) = c.node_id() {
            self.membership.disconnected(node, now);
        } else if let Some(node) = c.intended
            && c.node_id().is_none()
        {
            self.membership.connect_failed(node, now);
        }
    }
}

/// What this peer says of itself in its map record: its links (a node's active view and some
/// of its pages), which are the tree's, and its seeds.
fn own_links(membership: &Membership, broadcast: &Broadcast, seeds: &SeedPeers) -> OwnLinks {
    let mut links = membership.active();
    links.extend(membership.client_ids().take(map::LISTED_CLIENTS).copied());
    let eager = links
        .iter()
        .copied()
        .filter(|id| broadcast.is_eager(id))
        .collect();
    OwnLinks {
        links,
        eager,
        clients: membership.clients() as u32,
        seeds: seeds.len() as u32,
        seeds_dialed: seeds.dialed_addresses(),
    }
}

/// How far apart the sequence numbers of one author's tabs are kept (see [`next_seq`]).
const SEQ_SLOTS: u64 = 1024;

/// The sequence number of an author's next message. It grows with the clock (the
/// millisecond, times [`SEQ_SLOTS`]), so a restarted node never reuses one even if it kept
/// nothing; within a millisecond it counts on. A page's tabs share one key: each starts from
/// its own slot (drawn from its tab nonce), so two tabs repeat a number only if they publish
/// in the same millisecond from the same slot.
fn next_seq(last: u64, now: Millis, tab: Option<&Tab>) -> u64 {
    let slot = tab.map_or(0, |t| {
        u64::from(u16::from_le_bytes([t.as_bytes()[0], t.as_bytes()[1]])) % SEQ_SLOTS
    });
    (last + 1).max(now.saturating_mul(SEQ_SLOTS) + slot)
}

/// How a node with these (canonical) addresses is dialed, if it can be.
fn record_of(id: NodeId, addresses: &[String]) -> Option<PeerRecord> {
    addresses.first().map(|address| PeerRecord {
        id,
        address: address.clone(),
        aliases: addresses[1..].to_vec(),
    })
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.me)
            .field("conns", &self.conns.len())
            .field("active", &self.membership.active().len())
            .field("held", &self.held.len())
            .finish()
    }
}
