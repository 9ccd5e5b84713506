//! The engine: one peer's protocol state, composed of its parts, with no I/O and no clock.
//!
//! The driver feeds it events — a connection accepted or opened, a text frame received, a
//! connection closed, a dial failed, a local publish, time passing — each with the current
//! time, and then drains [`Output`]s (see the crate docs for the contract). The engine owns
//! the connections and the handshake, and routes everything else:
//!
//! - [`conns`](crate::conns) and [`book`](crate::book): connections, and the addresses we
//!   dial with their backoff;
//! - [`membership`](crate::membership): which peers are neighbours (HyParView for nodes, a
//!   few links for a page);
//! - [`broadcast`](crate::broadcast): who gets each message (Plumtree, or flooding);
//! - [`seed`](crate::seed): what seed (v1) peers get and are told;
//! - [`sync`](crate::sync): reconciliation, the safety net under broadcast;
//! - [`map`](crate::map): the network map.
//!
//! Connections move through `Dialing` (outbound, transport not yet open) → `Handshake` → `V1`
//! or `V2`. A dialer sends `HELLO` at once; an acceptor waits for the first frame: `HELLO`
//! makes the peer a hearsay peer (once it has proven its key: `Proving` until its `PROOF`
//! comes), a seed frame a seed. Silence never makes a seed: a seed speaks first on every
//! connection, either direction (its `SOCKETS`), and a peer whose thread is busy or whose link
//! is slow may answer late; a connection that says nothing valid for `hello_timeout` is
//! closed, saying so.

use crate::Millis;
use crate::book::{AddressBook, AddressError, Backoff, LinkInfo};
use crate::broadcast::{self, Broadcast, BroadcastStats};
use crate::close::CloseReason;
use crate::conns::{Conn, ConnId, Conns, Direction, Hearsay, Protocol, State};
use crate::dedup::Recent;
use crate::history::History;
use crate::id::{MsgId, NodeId};
use crate::identity::{
    Author, Identity, Keypair, Nonce, PublicKey, Role, Tab, handshake_proof, id_of,
};
use crate::limits::{KindCaps, Limits, TokenBucket};
use crate::map::{self, Map, OwnLinks, TopoRecord};
use crate::membership::{self, Membership};
use crate::message::Message;
use crate::peer::{PeerKind, PeerRecord, canonical_address};
use crate::seed::{self, Seeds};
use crate::sync::{self, MessageIndex, Reconciler, SyncConfig};
use crate::timers::{Timers, earliest};
use crate::wire::{
    Frame, Hello, Inbound, InboundError, MAX_ADDRESSES, MAX_WANT, MESSAGES_PAGE_BYTES,
    PROTOCOL_NAME, PROTOCOL_VERSION, Part,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// Origins whose quota is tracked at once (beyond, the first tracked are forgotten).
const ORIGINS_TRACKED: usize = 20_000;

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
    Close { conn: ConnId, reason: CloseReason },
    /// A message new to this peer: store it and show it. Each id is delivered once. `hops`
    /// is how far it travelled (0: published here or by a seed linked here; `None`: it came
    /// by reconciliation).
    Deliver { msg: Message, hops: Option<u32> },
    /// A node confirmed it holds message `id`, which this peer published (browsers only).
    Acked { id: MsgId, by: NodeId },
    /// A peer refused something we sent (an `ERROR` frame): a page shows it.
    Refused {
        by: NodeId,
        reason: String,
        id: Option<MsgId>,
        retry_after_ms: Option<u64>,
    },
    /// The peer on `conn` asked for these messages: load the ones held and hand them to
    /// [`Engine::provide`].
    Fetch { conn: ConnId, ids: Vec<MsgId> },
    /// Messages stamped (by their reconciliation timestamp) before `before` have aged out of
    /// the retention window: drop them from the store. The engine has forgotten them, and
    /// refuses them if they come again.
    Evict { before: Millis, count: usize },
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

#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Handshake, keepalive and transient-link checks for one connection.
    Conn(ConnId),
    /// What has aged out of the window is evicted.
    Evict,
    /// Pinned addresses may be due for a dial.
    Dial,
    /// Tell seeds about nodes they have not heard of.
    SeedExchange,
    /// Answer a seed's connection, now that its dials under way have opened.
    SeedAnswer(ConnId),
}

/// How soon after its handshake a connection is first checked (keepalive, and whether
/// membership wants it); the checks then set their own next deadline.
const ESTABLISHED_CHECK: Millis = 1_000;

/// One peer's protocol state. See the module docs for how a driver uses it.
pub struct Engine {
    config: Config,
    me: NodeId,
    /// What this peer signs its messages and proves its id with.
    key: Keypair,
    tab: Option<Tab>,
    /// Drawn at start: a node keeps its id across restarts, and this tells its new process
    /// from the old one, whose links may linger half-open.
    run: Nonce,
    /// Messages of the frame being handled whose signatures the driver had checked.
    checked: Vec<MsgId>,
    /// Handshake nonces made so far (see `fresh_nonce`).
    nonces: u64,
    rng: SmallRng,
    conns: Conns,
    book: AddressBook,
    membership: Membership,
    broadcast: Broadcast,
    seeds: Seeds,
    sync: Reconciler<ConnId>,
    map: Map,
    /// Every message held (by key), for reconciliation and lasting dedup.
    index: MessageIndex,
    /// Peers closed for bad frames lately, with when they may come back.
    refused: Recent<NodeId, Millis>,
    /// Dials to addresses learned from peers (see `Limits::dials`).
    dial_bucket: TokenBucket,
    /// Nothing stamped before this is kept: where the storage cap last cut the history.
    budget_floor: Option<Millis>,
    /// What each origin may still have relayed to us (see `Limits::origin_messages`).
    origins: Recent<Author, TokenBucket>,
    /// Messages lately dropped over their origin's quota: not asked for again by `GRAFT`
    /// (reconciliation fetches them once the quota refills), nor charged to a relay twice.
    over_quota: Recent<MsgId, ()>,
    timers: Timers<Timer>,
    dial_timer: Option<Millis>,
    seed_timer: bool,
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
        let refuse_for = config.refuse_for;
        let dial_rate = config.limits.dials;
        let evict_every = config.history.evict_every.max(1);
        config.listen_addresses = config
            .listen_addresses
            .iter()
            .filter_map(|a| canonical_address(a))
            .collect();
        if config.kind == PeerKind::Browser {
            config.listen_addresses.clear();
        }
        let own = record_of(me, &config.listen_addresses);
        let mut rng = SmallRng::seed_from_u64(seed);
        let book = AddressBook::new(
            &config.listen_addresses,
            me,
            Backoff {
                initial: config.backoff_initial,
                max: config.backoff_max,
                revisit: config.revisit_interval,
            },
        );
        let membership = Membership::new(
            me,
            config.kind,
            own.clone(),
            config.membership.clone(),
            rng.random(),
            now,
        );
        let mut map_config = config.map.clone();
        if config.kind == PeerKind::Browser {
            // A page joins a network that has formed: it shows itself at once.
            map_config.first_check = map_config.first_check.min(1_000);
        }
        let address = own.map(|r| r.address);
        let map = Map::new(me, config.kind, address.clone(), map_config, now);
        Self {
            broadcast: Broadcast::new(
                config.broadcast.clone(),
                me,
                config.kind == PeerKind::Node,
                rng.random(),
                now,
            )
            .with_address(address),
            sync: Reconciler::new(config.sync.clone()),
            config,
            me,
            key: identity.key,
            tab: identity.tab,
            run: Nonce::from_bytes(rng.random()),
            checked: Vec::new(),
            nonces: 0,
            rng,
            conns: Conns::default(),
            book,
            membership,
            seeds: Seeds::default(),
            map,
            index: MessageIndex::default(),
            refused: Recent::new(10_000, refuse_for),
            dial_bucket: TokenBucket::new(dial_rate, now),
            budget_floor: None,
            origins: Recent::new(ORIGINS_TRACKED, 10 * 60_000),
            over_quota: Recent::new(ORIGINS_TRACKED, 60_000),
            timers: {
                // The first eviction soon after start, once the driver has noted what its
                // store holds (`note_held`).
                let mut timers = Timers::default();
                timers.insert(now + evict_every.min(1_000), Timer::Evict);
                timers
            },
            dial_timer: None,
            seed_timer: false,
            seq: 0,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The key this peer signs its messages with.
    pub fn public_key(&self) -> crate::identity::PublicKey {
        self.key.public()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn broadcast_stats(&self) -> &BroadcastStats {
        self.broadcast.stats()
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] should run next: the earliest deadline of any part.
    pub fn poll_timeout(&self) -> Option<Millis> {
        earliest([
            self.timers.next(),
            self.membership.poll_timeout(),
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
        self.broadcast.root()
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
        self.index.insert(key, bytes);
    }

    /// Nothing stamped before `ts` is to be taken again: the driver's store evicted up to
    /// there before a restart (for its storage cap, or the window).
    pub fn note_floor(&mut self, ts: Millis) {
        self.budget_floor = self.budget_floor.max(Some(ts));
    }

    // ----- events -----

    /// The operator asked to connect to `address` (`--peer`, `/add`). It is pinned: dialed now
    /// and redialed with backoff until it answers.
    pub fn add_peer(&mut self, address: &str, now: Millis) -> Result<String, AddressError> {
        let canonical = self.book.pin(address, now)?;
        self.dial_pinned(now);
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
        c.nonce = self.fresh_nonce();
        let conn = self.conns.insert(c);
        self.timers
            .insert(now + self.config.hello_timeout, Timer::Conn(conn));
        conn
    }

    /// A dial we asked for succeeded: say hello.
    pub fn opened(&mut self, conn: ConnId, now: Millis) {
        let nonce = self.fresh_nonce();
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
        self.timers
            .insert(now + self.config.hello_timeout, Timer::Conn(conn));
        let hello = self.hello_frame(conn, None);
        self.send(conn, hello);
    }

    /// A nonce for a handshake that no one can predict: a hash of our secret key, this run
    /// and a count (the engine's own random numbers are fast, not secret).
    fn fresh_nonce(&mut self) -> Nonce {
        use sha2::{Digest, Sha256};
        self.nonces = self.nonces.wrapping_add(1);
        let mut h = Sha256::new();
        h.update(b"hearsay/nonce\0");
        h.update(self.key.secret());
        h.update(self.run.as_bytes());
        h.update(self.nonces.to_be_bytes());
        let digest = h.finalize();
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&digest[..16]);
        Nonce::from_bytes(nonce)
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
        self.schedule_dial();
        self.after(now);
    }

    /// The connection closed (by the peer, or the transport failed); `reason` is the peer's
    /// close reason or the transport's error, if any.
    pub fn closed(&mut self, conn: ConnId, reason: Option<&str>, now: Millis) {
        let text = match reason {
            Some(r) if !r.is_empty() => format!("closed: {r}"),
            _ => "connection lost".to_owned(),
        };
        self.forget(conn, None, &text, now);
        self.after(now);
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
        self.after(now);
    }

    /// A frame the protocol has no use for arrived (a binary WebSocket message): counted as
    /// bad, like undecodable text.
    pub fn unsupported_frame(&mut self, conn: ConnId, now: Millis) {
        self.bad_frame(conn, "binary frame", now);
        self.after(now);
    }

    /// The messages the peer on `conn` asked for (after [`Output::Fetch`]), in pages.
    pub fn provide(&mut self, conn: ConnId, messages: Vec<Message>) {
        if !self.conns.get(conn).is_some_and(Conn::is_v2) {
            return;
        }
        let mut page: Vec<Message> = Vec::new();
        let mut bytes = 0;
        for m in messages {
            // Counted as encoded (escapes can make a text's JSON six times its length), so
            // a page always fits in a frame (`MAX_FRAME_BYTES`).
            let size = serde_json::to_string(&m).map_or(m.data.len(), |j| j.len());
            if bytes + size > MESSAGES_PAGE_BYTES && !page.is_empty() {
                let frame = Frame::Messages {
                    messages: std::mem::take(&mut page),
                    done: false,
                };
                self.send(conn, frame.encode().into());
                bytes = 0;
            }
            bytes += size;
            page.push(m);
        }
        let last = Frame::Messages {
            messages: page,
            done: true,
        };
        self.send(conn, last.encode().into());
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
        let frame = match inbound.frame {
            Ok(frame) => frame,
            Err(InboundError::TooLarge) => {
                // A driver should refuse it at the transport already; the page cannot.
                self.bad_frame(conn, "frame larger than the limit", now);
                self.after(now);
                return;
            }
            Err(InboundError::Undecodable) => {
                self.bad_frame(conn, "undecodable frame", now);
                self.after(now);
                return;
            }
        };
        if frame.address_count() > MAX_ADDRESSES {
            self.bad_frame(conn, "too many addresses in one frame", now);
            self.after(now);
            return;
        }
        // Good for this frame only (cleared below).
        self.checked = inbound.signed;
        match &c.state {
            State::Dialing => {}
            State::Handshake { .. } => match frame {
                Frame::Hello(hello) => self.on_hello(conn, hello, now),
                frame @ (Frame::Message { .. } | Frame::Sockets { .. }) => {
                    // Read the seed's first frame (its SOCKETS: what it has dialed) before
                    // answering, so the answer can take it into account.
                    self.start_v1(conn, now);
                    self.on_v1_frame(conn, frame, now);
                    self.answer_v1(conn, now);
                }
                _ => self.close(conn, CloseReason::ExpectedHello, now),
            },
            State::Proving { .. } => match frame {
                Frame::Proof { sig } => self.on_proof(conn, sig, now),
                _ => {
                    self.unproven(conn, now);
                }
            },
            State::V1 => self.on_v1_frame(conn, frame, now),
            State::V2(peer) => {
                let (from, kind) = (peer.id, peer.kind);
                self.on_v2_frame(conn, from, kind, frame, now);
            }
        }
        self.checked.clear();
        self.after(now);
    }

    /// The application publishes `data`, signed with this peer's key. Returns the message
    /// as delivered.
    pub fn publish(&mut self, data: &str, now: Millis) -> Result<Message, PublishError> {
        self.check_size(data)?;
        self.charge_own(Author::Key(self.key.public()), now)?;
        self.seq = next_seq(self.seq, now, self.tab.as_ref());
        let msg = Message::signed(&self.key, self.seq, now, data.to_owned());
        self.stats.published += 1;
        self.originate(msg.clone(), now);
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
        if self.index.contains(&msg.id) {
            return Ok(false);
        }
        if let Err(outside) = self.config.history.check(sync::key_of(&msg).0, now) {
            return Err(PublishError::Outside(outside.to_string()));
        }
        self.charge_own(msg.author, now)?;
        self.stats.published += 1;
        self.originate(msg, now);
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
        self.take_from_quota(author, now)
            .map_err(|wait| PublishError::OverQuota {
                burst: self.config.limits.origin_messages.burst as u64,
                per_second: self.config.limits.origin_messages.per_second as u64,
                retry_after_ms: wait,
            })
    }

    /// Takes one message from `author`'s quota (see `Limits::origin_messages`); over it,
    /// how long until there is room.
    fn take_from_quota(&mut self, author: Author, now: Millis) -> Result<(), Millis> {
        if self.origins.get(&author).is_none() {
            let rate = self.config.limits.origin_messages;
            self.origins
                .insert(author, TokenBucket::new(rate, now), now);
        }
        match self.origins.get_mut(&author) {
            Some(bucket) => bucket.take(1.0, now),
            None => Ok(()),
        }
    }

    /// A message enters the network here: delivered, given to seeds, pushed.
    fn originate(&mut self, msg: Message, now: Millis) {
        self.index.insert(sync::key_of(&msg), msg.data.len());
        self.stats.delivered += 1;
        self.outputs.push_back(Output::Deliver {
            msg: msg.clone(),
            hops: Some(0),
        });
        if seed::should_receive(&msg, true, false) {
            self.send_to_seeds(&msg);
        }
        self.broadcast.publish(Arc::new(msg), now);
        self.after(now);
    }

    /// Time has passed: runs whatever is due in every part.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Conn(conn) => self.check_conn(conn, now),
                Timer::Dial => {
                    self.dial_timer = None;
                    self.dial_pinned(now);
                }
                Timer::Evict => {
                    let every = self.config.history.evict_every.max(1);
                    self.timers.insert(now + every, Timer::Evict);
                    self.origins.expire(now);
                    self.over_quota.expire(now);
                    let window = self.config.history.cutoff(now);
                    let h = &self.config.history;
                    let cap = self.index.cut_for(
                        h.max_messages.unwrap_or(usize::MAX),
                        h.max_bytes.unwrap_or(u64::MAX),
                    );
                    if let Some(cap) = cap
                        && window.is_none_or(|w| cap > w)
                    {
                        // Over the storage cap: the oldest go, and nothing older than what is
                        // kept is taken or fetched again.
                        self.budget_floor = self.budget_floor.max(Some(cap));
                    }
                    if let Some(before) = window.max(self.budget_floor) {
                        let count = self.index.evict_before(before);
                        if count > 0 {
                            self.stats.evicted += count as u64;
                            self.outputs.push_back(Output::Evict { before, count });
                        }
                    }
                }
                Timer::SeedAnswer(conn) => {
                    if self.conns.get(conn).is_some_and(|c| c.state == State::V1) {
                        let known = self.seed_known();
                        self.seeds.answered(conn, known.iter());
                        self.send_sockets(conn, &known, None);
                        self.schedule_seed_exchange(now);
                    }
                }
                Timer::SeedExchange => {
                    self.seed_timer = false;
                    // Seeds are introduced only here, once the map has said who dialed which.
                    let conns: Vec<ConnId> = self.seeds.conns().collect();
                    let known = self.seed_known();
                    let dialers = self.seed_dialers();
                    for conn in conns {
                        self.send_sockets(conn, &known, Some(&dialers));
                    }
                    self.schedule_seed_exchange(now);
                }
            }
        }
        if self.membership.poll_timeout().is_some_and(|t| t <= now) {
            self.membership.handle_timeout(now);
        }
        if self.broadcast.poll_timeout().is_some_and(|t| t <= now) {
            self.broadcast.handle_timeout(now);
        }
        if self.map.poll_timeout().is_some_and(|t| t <= now) {
            let held = self.index.len() as u64;
            let own = self.own_links();
            // A page joins a tree that is there already; flooding needs none.
            let ready = self.config.kind == PeerKind::Browser
                || self.config.broadcast.strategy == broadcast::Strategy::Flood
                || self.broadcast.root().is_some();
            if let Some(batch) = self.map.handle_timeout(now, held, ready, || own) {
                self.send_map(batch);
            }
        }
        if self.sync.poll_timeout().is_some_and(|t| t <= now) {
            let due = self.sync.due(now);
            self.stats.sync_rounds += due.len() as u64;
            if !due.is_empty() {
                let upper = self.sync.upper_bound(now);
                let floor = self.kept_from(self.config.history.sync_floor(now));
                let frame: Arc<str> = Frame::Sync(sync::initiate(&self.index, floor, Some(upper)))
                    .encode()
                    .into();
                for conn in due {
                    self.send(conn, frame.clone());
                }
            }
        }
        self.after(now);
    }

    // ----- hearsay frames -----

    fn on_v2_frame(
        &mut self,
        conn: ConnId,
        from: NodeId,
        kind: PeerKind,
        frame: Frame,
        now: Millis,
    ) {
        match frame.part() {
            Part::Membership(m) => self.membership.message(from, m, now),
            Part::Broadcast(control) => {
                let (index, dropped) = (&self.index, &self.over_quota);
                self.broadcast.control(
                    from,
                    control,
                    |id| index.contains(id) || dropped.contains(id),
                    now,
                );
            }
            Part::Other(frame) => match frame {
                Frame::Gossip { msg, hops } => self.on_gossip(conn, from, kind, msg, hops, now),
                Frame::Ping { nonce } => self.send(conn, Frame::Pong { nonce }.encode().into()),
                Frame::Pong { .. } => {}
                Frame::Ack { id } => self.outputs.push_back(Output::Acked { id, by: from }),
                Frame::Error {
                    reason,
                    id,
                    retry_after_ms,
                } => self.outputs.push_back(Output::Refused {
                    by: from,
                    reason,
                    id,
                    retry_after_ms,
                }),
                Frame::Sync(f) => {
                    let floor = self.kept_from(self.config.history.cutoff(now));
                    let reply = sync::respond(&self.index, &f, floor);
                    for f in reply.frames {
                        self.send(conn, Frame::Sync(f).encode().into());
                    }
                    let index = &self.index;
                    if let Some(ids) = self.sync.want(conn, reply.want, |id| index.contains(id)) {
                        self.send(conn, Frame::Want { ids }.encode().into());
                    }
                }
                Frame::Want { ids } => {
                    if ids.len() > MAX_WANT {
                        self.bad_frame(conn, "WANT asks for too many messages", now);
                    } else {
                        self.outputs.push_back(Output::Fetch { conn, ids });
                    }
                }
                Frame::Messages { messages, done } => {
                    self.on_messages(conn, kind, messages, done, now)
                }
                Frame::Map { records } => self.map.received(from, records, now),
                _ => self.bad_frame(conn, "unexpected frame", now),
            },
        }
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
            self.send(conn, Frame::Ack { id: msg.id }.encode().into());
        }
    }

    /// Charges a new message to the connection it entered by, if that is a page's (`kind`
    /// browser, at a node) or a seed's (`kind` none); false if it is over its limit. A page
    /// is told, with when to try again; nothing is marked as seen, so the message can come
    /// again later (by reconciliation, once the page's bucket has refilled).
    fn admit(
        &mut self,
        conn: ConnId,
        kind: Option<PeerKind>,
        id: Option<MsgId>,
        now: Millis,
    ) -> bool {
        let limits = &self.config.limits;
        let (rate, who) = match kind {
            Some(PeerKind::Browser) if self.config.kind == PeerKind::Node => {
                (limits.page_messages, "a page")
            }
            None => (limits.seed_messages, "a seed"),
            Some(_) => return true,
        };
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        let bucket = c
            .messages
            .get_or_insert_with(|| TokenBucket::new(rate, now));
        let Err(wait) = bucket.take(1.0, now) else {
            return true;
        };
        self.stats.rate_limited += 1;
        if kind.is_some() {
            let reason = format!(
                "rate limited: {who} may send {} messages at once and {} a second; try again in {} ms",
                rate.burst, rate.per_second, wait
            );
            let frame = Frame::Error {
                reason,
                id,
                retry_after_ms: Some(wait),
            };
            self.send(conn, frame.encode().into());
        }
        false
    }

    /// Where the history this node keeps starts, as a key: the window's `start`, or the
    /// storage cap's floor if that is later.
    fn kept_from(&self, start: Option<Millis>) -> Option<sync::Key> {
        start.max(self.floor()).map(sync::key_at)
    }

    /// Below this, nothing is fetched or taken: what the storage cap let go, and, while the
    /// history is full, anything older than its oldest (it would only be let go again). A
    /// page that starts with its home's newest 2,000 messages thus never fetches the rest.
    fn floor(&self) -> Option<Millis> {
        let h = &self.config.history;
        let full = self.index.full_from(
            h.max_messages.unwrap_or(usize::MAX),
            h.max_bytes.unwrap_or(u64::MAX),
        );
        self.budget_floor.max(full)
    }

    /// Whether `msg` is inside the retention window. A page is told why not (its clock may
    /// be wrong); a node's copy is dropped and counted.
    fn in_window(
        &mut self,
        conn: ConnId,
        kind: Option<PeerKind>,
        msg: &Message,
        now: Millis,
    ) -> bool {
        let ts = sync::key_of(msg).0;
        let checked = self.config.history.check(ts, now).and(match self.floor() {
            Some(floor) if ts < floor => Err(crate::history::Outside::OverBudget),
            _ => Ok(()),
        });
        let Err(outside) = checked else {
            return true;
        };
        match outside {
            crate::history::Outside::Future { .. } => self.stats.from_future += 1,
            _ => self.stats.too_old += 1,
        }
        if kind == Some(PeerKind::Browser) && self.config.kind == PeerKind::Node {
            let frame = Frame::Error {
                reason: outside.to_string(),
                id: Some(msg.id),
                retry_after_ms: None,
            };
            self.send(conn, frame.encode().into());
        }
        false
    }

    /// Charges a new message that a node peer relayed to its origin's quota. Over it, the
    /// message is dropped, not marked as seen (it may come again once the quota refills).
    /// If the peer pushed it (we did not fetch it), the peer's tolerance is charged too: it
    /// applies the same quota before relaying, so it crosses ours only by a little unless it
    /// floods; one that keeps on is closed and refused for a while, as for bad frames.
    fn charge_origin(
        &mut self,
        conn: ConnId,
        kind: PeerKind,
        msg: &Message,
        pushed: bool,
        now: Millis,
    ) -> bool {
        // Seed texts relayed by nodes are charged too, under their one shared origin.
        if kind != PeerKind::Node {
            return true;
        }
        if self.take_from_quota(msg.author, now).is_ok() {
            return true;
        }
        self.stats.over_quota += 1;
        // A copy of one already dropped (a relay answering our GRAFT, another relay) is not
        // held against anyone again.
        let again = !self.over_quota.insert(msg.id, (), now);
        let tolerance = self.config.limits.over_quota;
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        let bucket = c
            .over_quota
            .get_or_insert_with(|| TokenBucket::new(tolerance, now));
        if pushed && !again && bucket.take(1.0, now).is_err() {
            self.stats.closed_over_quota += 1;
            if let Some(node) = c.node_id() {
                let until = now + self.config.refuse_for;
                self.refused.insert(node, until, now);
            }
            self.close(conn, CloseReason::OverQuota, now);
        }
        false
    }

    /// Whether a message new here was signed by its author: checked once per id (after
    /// dedup, as it is the costly check), before it is charged, stored or passed on. A copy
    /// that fails is dropped without marking the id as seen, so a forged copy cannot keep
    /// the real one out; its sender is closed and refused for a while, as an honest peer
    /// checks what it passes on and never sends one.
    ///
    /// Seed texts are unsigned by nature; a node relays those it took from a seed, but a page
    /// never has one to give (it links to no seed), so one from a page is a forgery too.
    fn signed(&mut self, conn: ConnId, kind: PeerKind, msg: &Message, now: Millis) -> bool {
        let valid = self.checked.contains(&msg.id) || msg.signature_is_valid();
        if valid && !(msg.author.is_seed() && kind == PeerKind::Browser) {
            return true;
        }
        self.stats.bad_signatures += 1;
        if let Some(node) = self.conns.get(conn).and_then(Conn::node_id) {
            let until = now + self.config.refuse_for;
            self.refused.insert(node, until, now);
        }
        self.close(conn, CloseReason::BadSignature, now);
        false
    }

    fn valid(&mut self, conn: ConnId, msg: &Message, now: Millis) -> bool {
        if !msg.id_is_valid()
            || msg.data.is_empty()
            || msg.data.len() > self.config.max_message_bytes
        {
            self.bad_frame(
                conn,
                "message id does not match its content, or bad size",
                now,
            );
            return false;
        }
        true
    }

    fn on_gossip(
        &mut self,
        conn: ConnId,
        from: NodeId,
        kind: PeerKind,
        msg: Message,
        hops: u32,
        now: Millis,
    ) {
        self.stats.received += 1;
        if !self.valid(conn, &msg, now) {
            return;
        }
        if self.index.contains(&msg.id) {
            self.ack_if_page_published(conn, kind, &msg);
            self.stats.duplicates += 1;
            return;
        }
        if !self.in_window(conn, Some(kind), &msg, now)
            || !self.admit(conn, Some(kind), Some(msg.id), now)
            || !self.signed(conn, kind, &msg, now)
            || !self.charge_origin(conn, kind, &msg, true, now)
        {
            return;
        }
        self.ack_if_page_published(conn, kind, &msg);
        self.index.insert(sync::key_of(&msg), msg.data.len());
        self.stats.delivered += 1;
        if !self.seeds.is_empty() && seed::should_receive(&msg, false, self.homed_here(&msg.author))
        {
            self.send_to_seeds(&msg);
        }
        self.outputs.push_back(Output::Deliver {
            msg: msg.clone(),
            hops: Some(hops),
        });
        self.broadcast
            .received_new(Some(from), Arc::new(msg), hops, now);
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
            self.stats.received += 1;
            if !self.valid(conn, &msg, now) {
                continue;
            }
            if self.index.contains(&msg.id) {
                self.stats.duplicates += 1;
                continue;
            }
            if !self.in_window(conn, Some(kind), &msg, now)
                || !self.admit(conn, Some(kind), Some(msg.id), now)
            {
                continue;
            }
            if !self.signed(conn, kind, &msg, now) {
                // Closed: nothing more of what it sent is taken (nor checked, which costs).
                return;
            }
            if !self.charge_origin(conn, kind, &msg, false, now) {
                continue;
            }
            self.index.insert(sync::key_of(&msg), msg.data.len());
            self.stats.delivered += 1;
            self.stats.synced += 1;
            new += 1;
            // A page that published while offline hands its message over this way.
            self.ack_if_page_published(conn, kind, &msg);
            self.broadcast
                .received_otherwise(Arc::new(msg.clone()), now);
            self.outputs.push_back(Output::Deliver { msg, hops: None });
        }
        let index = &self.index;
        if let Some(ids) = self.sync.page(conn, done, |id| index.contains(id)) {
            self.send(conn, Frame::Want { ids }.encode().into());
        }
        if new > 0 {
            self.sync.news(conn, now);
        }
    }

    // ----- seed (v1) frames -----

    fn on_v1_frame(&mut self, conn: ConnId, frame: Frame, now: Millis) {
        match frame {
            Frame::Message { data } => {
                self.stats.received += 1;
                if data.is_empty() || data.len() > self.config.max_message_bytes {
                    self.bad_frame(conn, "message empty or too large", now);
                    return;
                }
                let id = MsgId::v1(&data);
                if self.index.contains(&id) {
                    self.stats.duplicates += 1;
                    return;
                }
                // A seed has no error frame: what it sends over its limit is dropped, and
                // counted.
                if !self.admit(conn, None, None, now) {
                    return;
                }
                let msg = Message::from_seed(data, now);
                self.index.insert(sync::key_of(&msg), msg.data.len());
                self.stats.delivered += 1;
                self.outputs.push_back(Output::Deliver {
                    msg: msg.clone(),
                    hops: Some(0),
                });
                self.broadcast.publish(Arc::new(msg), now);
            }
            Frame::Sockets { addresses } => {
                self.seeds.sockets_received(conn, &addresses, now);
            }
            // A seed ignores frames it does not know; so do we, but we count them.
            _ => self.bad_frame(conn, "unexpected frame from a v1 peer", now),
        }
    }

    fn send_to_seeds(&mut self, msg: &Message) {
        if self.seeds.is_empty() {
            return;
        }
        let frame: Arc<str> = Frame::Message {
            data: msg.data.clone(),
        }
        .encode()
        .into();
        let conns: Vec<ConnId> = self.seeds.conns().collect();
        for conn in conns {
            self.send(conn, frame.clone());
        }
    }

    /// Whether `conn`'s client address already holds as many connections of `kind` (`None`:
    /// a seed) as it may; if so, `conn` is closed, saying why.
    fn over_address_cap(&mut self, conn: ConnId, kind: Option<PeerKind>, now: Millis) -> bool {
        let Some(from) = self.conns.get(conn).and_then(|c| c.from.clone()) else {
            return false;
        };
        let caps = self.config.per_address;
        let (max, name) = match kind {
            Some(PeerKind::Node) => (caps.nodes, "node"),
            Some(PeerKind::Browser) => (caps.pages, "page"),
            None => (caps.seeds, "seed"),
        };
        let held = self
            .conns
            .iter()
            .filter(|&(other, c)| {
                other != conn
                    && c.from.as_deref() == Some(from.as_str())
                    && match (&c.state, kind) {
                        (State::V2(h), Some(k)) => h.kind == k,
                        // Still proving who it is: it holds its place meanwhile.
                        (State::Proving { hello, .. }, Some(k)) => hello.kind == k,
                        (State::V1, None) => true,
                        _ => false,
                    }
            })
            .count();
        if held < max {
            return false;
        }
        let reason = CloseReason::TooManyFromAddress { kind: name, max };
        self.close(conn, reason, now);
        true
    }

    /// The peer on `conn` is a seed.
    fn start_v1(&mut self, conn: ConnId, now: Millis) {
        if self.over_address_cap(conn, None, now) {
            return;
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.state = State::V1;
        c.last_heard = now;
        let dialed = c.dialed.clone();
        self.seeds.opened(conn, dialed);
    }

    /// Answers a seed's first frame (or its silence): introduces us and hangs up if we
    /// dialed it, or tells it the nodes we know.
    fn answer_v1(&mut self, conn: ConnId, now: Millis) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let dialed = c.dialed.clone();
        let own = self.own_record();
        match (dialed, own) {
            (Some(address), Some(own)) => {
                // We dialed a seed. It will dial every address it hears of, ours included
                // once any node mentions it, and a seed with two links to us would get our
                // messages twice. So introduce ourselves and hang up: the seed's own dial
                // back becomes its one link.
                let addresses =
                    self.seeds
                        .introduction(conn, self.me, &own, self.membership.known_nodes());
                self.send(conn, Frame::Sockets { addresses }.encode().into());
                self.book.seed_answered(&address, now);
                self.close(conn, CloseReason::SeedDialsUs, now);
                self.schedule_dial();
            }
            (None, Some(own)) if self.seeds.links_us_twice(conn, &own) => {
                // Its list names us: it holds a link to us already (see `seed`).
                self.close(conn, CloseReason::SeedLinkedTwice, now);
            }
            _ => {
                // Inbound, or we cannot be dialed (a page): this link is the seed's only one.
                // Answered once the dials it has under way have had time to open.
                self.timers
                    .insert(now + seed::SEED_SETTLE, Timer::SeedAnswer(conn));
            }
        }
    }

    /// The nodes to name to seeds: those membership knows (with every address), and those
    /// only the map knows (their main address).
    fn seed_known(&self) -> Vec<PeerRecord> {
        let mut known: Vec<PeerRecord> = self.membership.known_nodes().cloned().collect();
        for r in self.map.view().records() {
            if r.kind == PeerKind::Node
                && r.node != self.me
                && !known.iter().any(|k| k.id == r.node)
                && let Some(address) = &r.address
            {
                known.push(PeerRecord {
                    id: r.node,
                    address: address.clone(),
                    aliases: Vec::new(),
                });
            }
        }
        known
    }

    /// Which seeds each node dialed, from the map (ours included).
    fn seed_dialers(&self) -> seed::Dialers {
        let mut dialers = seed::Dialers::new();
        for r in self.map.view().records() {
            if let Some(address) = r.address.as_deref().and_then(seed::authority)
                && !r.seeds_dialed.is_empty()
            {
                dialers.insert(address, r.seeds_dialed.clone());
            }
        }
        for address in &self.config.listen_addresses {
            if let Some(address) = seed::authority(address) {
                dialers.insert(address, self.seeds.dialed_addresses());
            }
        }
        dialers
    }

    fn own_record(&self) -> Option<PeerRecord> {
        record_of(self.me, &self.config.listen_addresses)
    }

    /// Tells the seed on `conn` what it should dial (see `seed`): nodes of `known`, and with
    /// `dialers`, seeds.
    fn send_sockets(
        &mut self,
        conn: ConnId,
        known: &[PeerRecord],
        dialers: Option<&seed::Dialers>,
    ) {
        if let Some(addresses) = self
            .seeds
            .sockets_update(conn, self.me, known.iter(), dialers)
        {
            self.send(conn, Frame::Sockets { addresses }.encode().into());
        }
    }

    fn schedule_seed_exchange(&mut self, now: Millis) {
        if !self.seed_timer && !self.seeds.is_empty() {
            self.seed_timer = true;
            self.timers.insert(
                now + self.config.seed_exchange_interval,
                Timer::SeedExchange,
            );
        }
    }

    // ----- handshake -----

    /// Our `HELLO` on `conn`, with its nonce; answering a dialer, with our proof over its
    /// nonce and the id it claims.
    fn hello_frame(&self, conn: ConnId, answering: Option<(Nonce, NodeId)>) -> Arc<str> {
        let nonce = self.conns.get(conn).map(|c| c.nonce);
        let proof = answering
            .map(|(theirs, id)| self.key.sign(&handshake_proof(Role::Acceptor, &theirs, id)));
        Frame::Hello(Hello {
            protocol: PROTOCOL_NAME.to_owned(),
            version: PROTOCOL_VERSION,
            id: self.me,
            key: Some(self.key.public()),
            tab: self.tab,
            nonce,
            proof,
            run: Some(self.run),
            kind: self.config.kind,
            addresses: self.config.listen_addresses.clone(),
            home: self.config.home,
            root: self.broadcast.root(),
            term: self.broadcast.root_and_term().map(|(_, t)| t),
        })
        .encode()
        .into()
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello, now: Millis) {
        if hello.protocol != PROTOCOL_NAME {
            self.close(conn, CloseReason::NotHearsay, now);
            return;
        }
        if hello.version != PROTOCOL_VERSION {
            let reason = CloseReason::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: hello.version,
            };
            self.close(conn, reason, now);
            return;
        }
        let Some(key) = hello
            .key
            .filter(|k| id_of(k, hello.tab.as_ref()) == hello.id)
            .filter(|_| (hello.kind == PeerKind::Node) == hello.tab.is_none())
        else {
            self.unproven(conn, now);
            return;
        };
        self.refused.expire(now);
        if let Some(&until) = self.refused.get(&hello.id) {
            self.stats.refused += 1;
            let seconds = until.saturating_sub(now).div_ceil(1_000);
            self.close(conn, CloseReason::Refused { seconds }, now);
            return;
        }
        if self.over_address_cap(conn, Some(hello.kind), now) {
            return;
        }
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let (direction, dialed) = (c.direction, c.dialed.clone());
        if hello.id == self.me {
            if let Some(address) = &dialed {
                self.book.mark_self(address, self.me);
            }
            self.close(conn, CloseReason::ConnectedToSelf, now);
            return;
        }
        let (Some(theirs), Some(ours)) = (hello.nonce, self.conns.get(conn).map(|c| c.nonce))
        else {
            self.unproven(conn, now);
            return;
        };
        match direction {
            Direction::Inbound => {
                // Answer with our proof, then wait for the dialer's before taking it for
                // the node it says it is.
                let frame = self.hello_frame(conn, Some((theirs, hello.id)));
                self.send(conn, frame);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.state = State::Proving {
                        since: now,
                        hello: Box::new(hello),
                        key,
                    };
                }
                self.timers
                    .insert(now + self.config.hello_timeout, Timer::Conn(conn));
            }
            Direction::Outbound => {
                let proven = hello.proof.is_some_and(|sig| {
                    key.verify(&handshake_proof(Role::Acceptor, &ours, self.me), &sig)
                });
                if !proven {
                    self.unproven(conn, now);
                    return;
                }
                let sig = self
                    .key
                    .sign(&handshake_proof(Role::Dialer, &theirs, hello.id));
                self.send(conn, Frame::Proof { sig }.encode().into());
                self.establish(conn, hello, key, now);
            }
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
        if !key.verify(&handshake_proof(Role::Dialer, &c.nonce, self.me), &sig) {
            self.unproven(conn, now);
            return;
        }
        let since = c.connected_at;
        let State::Proving { hello, .. } =
            std::mem::replace(&mut c.state, State::Handshake { since })
        else {
            return;
        };
        self.establish(conn, *hello, key, now);
    }

    /// The peer on `conn` did not prove the identity it claimed: counted and closed.
    fn unproven(&mut self, conn: ConnId, now: Millis) {
        self.stats.bad_identities += 1;
        self.close(conn, CloseReason::BadIdentity, now);
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
                // and stops redialing.)
                // A pinned address we dialed is that node's: the book learns it, so it is
                // revisited, not counted as failing. (Membership still hears of a failed
                // dial and repairs from elsewhere: measured at 1,000 nodes, keeping its
                // request pending instead lengthens the tree, p99 280 ms -> 1.6 s.)
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
        self.conns.established(
            conn,
            Hearsay {
                id: hello.id,
                key,
                run: hello.run,
                kind: hello.kind,
                record: record.clone(),
                home: hello.home,
            },
            !second,
        );
        for frame in self.conns.take_queued(conn) {
            self.send(conn, frame);
        }
        // Keepalive and the transient check start now, not at the handshake's deadline.
        self.timers
            .insert(now + ESTABLISHED_CHECK, Timer::Conn(conn));
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
        // its new root instead (`broadcast::Out::RootLost`).
        let ours = self.broadcast.root_and_term();
        let theirs = hello.root.zip(Some(hello.term.unwrap_or(0)));
        let elsewhere = matches!((theirs, ours), (Some((a, t)), Some((b, u))) if a != b && t == u);
        self.membership
            .connected(hello.id, hello.kind, record, pinned, elsewhere, now);
    }

    // ----- the parts' outputs -----

    /// Carries out what the parts asked for, until none has anything more to say.
    fn after(&mut self, now: Millis) {
        // What broadcast scales by (how far a message's first hops go, whether the root
        // walks): the map's size as of this call, for the next.
        self.broadcast.set_network_size(self.map.view().len());
        loop {
            let mut any = false;
            while let Some(out) = self.membership.poll() {
                any = true;
                self.on_membership(out, now);
            }
            while let Some(out) = self.broadcast.poll() {
                any = true;
                self.on_broadcast(out, now);
            }
            if !any {
                break;
            }
        }
    }

    fn on_membership(&mut self, out: membership::Out, now: Millis) {
        use membership::Out;
        match out {
            Out::Send(node, message) => {
                if let Some(conn) = self.conns.to_node(node) {
                    self.send(conn, Frame::from(message).encode().into());
                }
            }
            Out::Connect { peer, then } => {
                let frame: Option<Arc<str>> = then.map(|m| Frame::from(m).encode().into());
                if let Some(conn) = self.conns.to_node(peer.id) {
                    if let Some(frame) = frame {
                        self.send(conn, frame);
                    }
                    return;
                }
                if self.book.is_self(&peer.address) {
                    self.membership.connect_failed(peer.id, now);
                    return;
                }
                let conn = match self.book.dialing(&peer.address, Some(peer.id)) {
                    Some(conn) => conn,
                    None => {
                        if self.dial_bucket.take(1.0, now).is_err() {
                            self.stats.dials_limited += 1;
                            self.membership.connect_failed(peer.id, now);
                            return;
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
                let Some(conn) = self.conns.to_node(node) else {
                    return;
                };
                let client = self
                    .conns
                    .get(conn)
                    .and_then(Conn::hearsay)
                    .is_some_and(|h| h.kind == PeerKind::Browser);
                self.broadcast.neighbor_up(node, client);
                let initiator = self
                    .conns
                    .get(conn)
                    .is_some_and(|c| c.direction == Direction::Outbound);
                self.sync.open(conn, initiator, now);
                if client && self.config.kind == PeerKind::Node {
                    // A page gets the whole map at once, not over the next minute.
                    let records: Vec<(TopoRecord, Option<NodeId>)> = self
                        .map
                        .view()
                        .records()
                        .map(|r| (r.clone(), None))
                        .collect();
                    self.send_map_to(conn, &records);
                }
            }
            Out::NeighborDown(node) => {
                self.broadcast.neighbor_down(node);
                if let Some(conn) = self.conns.to_node(node) {
                    self.sync.close(conn);
                }
            }
        }
    }

    fn on_broadcast(&mut self, out: broadcast::Out, now: Millis) {
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
            broadcast::Out::Send(node, control) => {
                if let Some(conn) = self.conns.to_node(node) {
                    self.send(conn, Frame::from(control).encode().into());
                }
            }
            broadcast::Out::RootLost { root, address } => {
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

    fn own_links(&self) -> OwnLinks {
        let mut links = self.membership.active();
        links.extend(
            self.membership
                .client_ids()
                .take(map::LISTED_CLIENTS)
                .copied(),
        );
        let eager = links
            .iter()
            .copied()
            .filter(|id| self.broadcast.is_eager(id))
            .collect();
        OwnLinks {
            links,
            eager,
            clients: self.membership.clients() as u32,
            seeds: self.seeds.len() as u32,
            seeds_dialed: self.seeds.dialed_addresses(),
        }
    }

    /// Passes map records on along the tree: every eager neighbour gets the batch, less what
    /// it sent us itself.
    fn send_map(&mut self, batch: Vec<(TopoRecord, Option<NodeId>)>) {
        let eager: Vec<NodeId> = self.broadcast.eager().copied().collect();
        let mut everything: Option<Vec<Arc<str>>> = None;
        for node in eager {
            let Some(conn) = self.conns.to_node(node) else {
                continue;
            };
            if batch.iter().any(|(_, from)| *from == Some(node)) {
                let theirs: Vec<(TopoRecord, Option<NodeId>)> = batch
                    .iter()
                    .filter(|(_, from)| *from != Some(node))
                    .cloned()
                    .collect();
                self.send_map_to(conn, &theirs);
            } else {
                let frames = everything.get_or_insert_with(|| self.map_frames(&batch));
                for frame in frames.clone() {
                    self.send(conn, frame);
                }
            }
        }
    }

    fn send_map_to(&mut self, conn: ConnId, records: &[(TopoRecord, Option<NodeId>)]) {
        for frame in self.map_frames(records) {
            self.send(conn, frame);
        }
    }

    fn map_frames(&self, records: &[(TopoRecord, Option<NodeId>)]) -> Vec<Arc<str>> {
        records
            .chunks(self.config.map.records_per_frame.max(1))
            .map(|chunk| {
                Frame::Map {
                    records: chunk.iter().map(|(r, _)| r.clone()).collect(),
                }
                .encode()
                .into()
            })
            .collect()
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

    /// Dials the pinned addresses that are due.
    fn dial_pinned(&mut self, now: Millis) {
        let due = self.book.due(now, |id| self.conns.to_node(id).is_some());
        for address in due {
            self.dial(address, None, now);
        }
        self.schedule_dial();
    }

    fn schedule_dial(&mut self) {
        if let Some(at) = self.book.next_due()
            && self.dial_timer.is_none_or(|t| at < t)
        {
            self.dial_timer = Some(at);
            self.timers.insert(at, Timer::Dial);
        }
    }

    /// Handshake timeout, keepalive, and closing links membership has no use for.
    fn check_conn(&mut self, conn: ConnId, now: Millis) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let next = match &c.state {
            State::Dialing => None,
            State::Handshake { since } => {
                let since = *since;
                if now >= since + self.config.hello_timeout {
                    self.close(conn, CloseReason::HandshakeTimeout, now);
                    return;
                }
                Some(since + self.config.hello_timeout)
            }
            State::Proving { since, .. } => {
                let since = *since;
                if now >= since + self.config.hello_timeout {
                    self.unproven(conn, now);
                    return;
                }
                Some(since + self.config.hello_timeout)
            }
            State::V1 | State::V2(_) => {
                let idle = now.saturating_sub(c.last_heard);
                let can_ping = c.is_v2() || self.config.transport_ping;
                if !can_ping {
                    None
                } else if idle >= self.config.idle_timeout {
                    self.close(conn, CloseReason::KeepaliveTimeout, now);
                    return;
                } else if idle >= self.config.ping_interval && c.ping_sent.is_none() {
                    let nonce: u32 = self.rng.random();
                    c.ping_sent = Some(nonce);
                    if c.is_v2() {
                        self.send(conn, Frame::Ping { nonce }.encode().into());
                    } else {
                        self.outputs.push_back(Output::Ping { conn });
                    }
                    Some(now + self.config.idle_timeout - idle)
                } else if c.ping_sent.is_some() {
                    Some(c.last_heard + self.config.idle_timeout)
                } else {
                    Some(c.last_heard + self.config.ping_interval)
                }
            }
        };
        // A node connection that membership has no use for (it carried a request or a reply,
        // or the node left our view) is closed after a while, however busy the other end
        // keeps it: closing is how the other end learns it is not our neighbour, should it
        // think it is.
        let mut next = next;
        let node = self
            .conns
            .get(conn)
            .and_then(Conn::hearsay)
            .filter(|h| h.kind == PeerKind::Node)
            .map(|h| h.id);
        if let Some(node) = node {
            let wanted = self.membership.wants(node);
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            if wanted {
                c.wanted = true;
                c.unwanted_since = None;
                // Look again now and then: the view may change.
                next = earliest([next, Some(now + self.config.transient_idle)]);
            } else {
                let first = if c.wanted { now } else { c.connected_at };
                let since = *c.unwanted_since.get_or_insert(first);
                if now >= since + self.config.transient_idle {
                    self.close(conn, CloseReason::NotANeighbour, now);
                    return;
                }
                next = earliest([next, Some(since + self.config.transient_idle)]);
            }
        }
        if let Some(at) = next {
            self.timers.insert(at.max(now + 1), Timer::Conn(conn));
        }
    }

    fn send(&mut self, conn: ConnId, frame: Arc<str>) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        self.outputs.push_back(Output::Send { conn, frame });
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
                let until = now + self.config.refuse_for;
                self.refused.insert(node, until, now);
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
        if registered && let Some(node) = c.node_id() {
            self.membership.disconnected(node, now);
        } else if let Some(node) = c.intended
            && c.node_id().is_none()
        {
            self.membership.connect_failed(node, now);
        }
        self.schedule_dial();
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
            .field("held", &self.index.len())
            .finish()
    }
}

/// Bookkeeping shared by every driver: carries out the engine's outputs through a
/// [`Driver`], going round until nothing is left (answering a `Fetch` or closing a peer
/// whose queue is full makes more output).
pub trait Driver {
    /// Queues a frame for the peer; false if its queue is full (the engine then closes it).
    fn send(&mut self, conn: ConnId, frame: Arc<str>) -> bool;
    fn ping(&mut self, conn: ConnId);
    fn dial(&mut self, conn: ConnId, address: String);
    fn close(&mut self, conn: ConnId, reason: CloseReason);
    fn deliver(&mut self, msg: Message, hops: Option<u32>);
    fn acked(&mut self, _id: MsgId, _by: NodeId) {}
    /// A peer refused something (an `ERROR` frame); see [`Output::Refused`].
    fn refused(
        &mut self,
        _by: NodeId,
        _reason: &str,
        _id: Option<MsgId>,
        _retry_after_ms: Option<u64>,
    ) {
    }
    /// The messages held of `ids`, if they can be had at once; `None` means the driver will
    /// call [`Engine::provide`] itself later.
    fn fetch(&mut self, conn: ConnId, ids: Vec<MsgId>) -> Option<Vec<Message>>;
    /// Messages stamped before `before` aged out: drop them from the store (see
    /// [`Output::Evict`]).
    fn evict(&mut self, before: Millis, count: usize);
}

impl Engine {
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
                self.after(now);
            }
            if !more {
                return;
            }
        }
    }
}
