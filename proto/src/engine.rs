//! The engine: one peer's protocol state, composed of its parts, with no I/O and no clock.
//!
//! The driver feeds it events — a connection accepted or opened, a text frame received, a
//! connection closed, a dial failed, a local publish, time passing — each with the current
//! time, and then drains [`Output`]s (see the crate docs for the contract). Every part keeps
//! the one contract of [`Part`] (it takes its inputs, queues its outputs, keeps its timers),
//! and the engine only composes them: it hands each frame to the part it is for
//! ([`Engine::dispatch`]) and routes every part's outputs, in one place, to other parts or to
//! the driver ([`Engine::route`]).
//!
//! - [`links`](crate::links): connections from dial to close, the handshake, keepalive, and
//!   the door (caps per address, refusals, bad frames);
//! - [`membership`](crate::membership): which peers are neighbours;
//! - [`tree`](crate::tree) and [`broadcast`](crate::broadcast): which links are the broadcast
//!   tree's, and who gets each message over them (Plumtree, or flooding);
//! - [`seed`](crate::seed): what seed (v1) peers get and are told;
//! - [`sync`](crate::sync): reconciliation, the safety net under broadcast;
//! - [`map`](crate::map): the network map;
//! - [`history`](crate::history): the messages held, and what ages out of them;
//! - [`admission`](crate::admission): whether each message that arrives is taken.
//!
//! Every message enters by one way, whatever brought it (a push, a reconciliation page, a
//! seed's text, a local publish): admission's verdict, applied in [`Engine::arrive`], and the
//! same steps to take it, [`Engine::take`].

use crate::Millis;
use crate::admission::{Admission, Dropped, PublishError, Reply, Sender, Verdict};
use crate::book::{AddressError, LinkInfo};
use crate::broadcast::{self, Broadcast, BroadcastStats};
use crate::close::CloseReason;
use crate::conns::{Conn, ConnId};
use crate::group::Group;
use crate::handshake::Handshake;
use crate::history::{Held, HeldOut};
use crate::id::{MsgId, NodeId};
use crate::identity::{Author, Identity, Keypair, Nonce, PublicKey, Tab};
use crate::links::{self, Arrived, Links};
use crate::map::{self, Map, OwnLinks, TopoRecord};
use crate::membership::{self, Directory, Membership};
use crate::message::Message;
use crate::part::Part;
use crate::peer::{PeerKind, PeerRecord};
use crate::seed::{self, SeedPeers};
use crate::status::{PeerInfo, Stats};
use crate::sync::{self, Sync};
use crate::timers::earliest;
use crate::tree::{self, Tree};
use crate::wire::{Frame, Inbound};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

pub use crate::config::Config;
pub use crate::driver::{Driver, Output};

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
    links: Links,
    membership: Membership,
    tree: Tree,
    broadcast: Broadcast,
    seeds: SeedPeers,
    sync: Sync,
    map: Map,
    held: Held,
    admission: Admission,
    /// This peer's last sequence number (see [`crate::message::next_seq`]).
    seq: u64,
    outputs: VecDeque<Output>,
    /// What the engine itself counts (the parts' counters are added in [`Engine::stats`]).
    stats: Stats,
}

impl Engine {
    /// A new engine for the peer with this identity. `rng_seed` drives every random choice
    /// (jitter, sampling), so a simulation replays exactly.
    pub fn new(config: Config, identity: Identity, rng_seed: u64, now: Millis) -> Self {
        let me = identity.id();
        let config = config.canonical();
        let own = links::record_of(me, &config.listen_addresses);
        let node = config.kind == PeerKind::Node;
        let c = &config;
        let mut rng = SmallRng::seed_from_u64(rng_seed);
        let membership = Membership::new(
            me,
            c.kind,
            own.clone(),
            c.membership.clone(),
            rng.random(),
            now,
        );
        let broadcast = Broadcast::new(c.broadcast.clone(), node, rng.random());
        let run = Nonce::from_bytes(rng.random());
        let handshake = Handshake::new(
            identity.key.clone(),
            identity.tab,
            c.kind,
            run,
            c.listen_addresses.clone(),
            c.home,
        );
        let address = own.as_ref().map(|r| r.address.clone());
        let shaping = c.broadcast.strategy == broadcast::Strategy::Plumtree;
        Self {
            links: Links::new(c.links(), handshake, &c.listen_addresses, me, rng, now),
            tree: Tree::new(
                c.tree.clone(),
                me,
                node.then(|| identity.key.clone()),
                shaping,
                address.clone(),
                now,
            ),
            seeds: SeedPeers::new(me, own, c.seed_exchange_interval),
            sync: Sync::new(c.sync.clone()),
            map: Map::new(identity.clone(), c.kind, address, c.map(), now),
            held: Held::new(c.history.clone(), now),
            admission: Admission::new(c.admission(), now),
            membership,
            broadcast,
            config,
            me,
            key: identity.key,
            tab: identity.tab,
            checked: Vec::new(),
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

    /// Counters for status pages, metrics and the simulation's report.
    pub fn stats(&self) -> Stats {
        self.stats.with(self.links.stats(), self.sync.rounds())
    }

    /// Broadcast's counters, the tree's included.
    pub fn broadcast_stats(&self) -> BroadcastStats {
        self.tree.stats().added_to(self.broadcast.stats())
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] should run next: the earliest deadline of any part.
    pub fn poll_timeout(&self) -> Option<Millis> {
        earliest([
            self.links.poll_timeout(),
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
        let (membership, broadcast) = (&self.membership, &self.broadcast);
        self.links
            .peers(|id| (membership.is_neighbor(*id), broadcast.is_eager(id)))
    }

    /// The active view (a page's links), as node ids.
    pub fn neighbors(&self) -> Vec<NodeId> {
        self.membership.active()
    }

    /// The root of the broadcast tree, as this peer knows it.
    pub fn root(&self) -> Option<NodeId> {
        self.tree.root()
    }

    /// The root of the broadcast tree and its term, as this peer knows them.
    pub fn root_term(&self) -> Option<(NodeId, u64)> {
        self.tree.root_and_term()
    }

    /// The passive view: nodes known and not linked.
    pub fn passive(&self) -> &[PeerRecord] {
        self.membership.passive()
    }

    /// Every address this peer dials and how its link stands.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.links.links()
    }

    /// How many peers the map knows of.
    pub fn map_size(&self) -> usize {
        self.map.view().len()
    }

    /// The map's records, the bytes they take (about), and how many were refused as none an
    /// honest peer sends.
    pub fn map_stats(&self) -> (usize, u64, u64) {
        let view = self.map.view();
        (view.len(), view.bytes(), self.map.refused())
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

    /// The driver could not keep these messages after all (its store write failed): they
    /// are no longer held, so reconciliation fetches them again from peers, and a copy that
    /// arrives is taken and delivered (stored) anew. Otherwise the id would stay in the index
    /// and the message would never be fetched again. Returns how many were held.
    pub fn forget(&mut self, ids: &[MsgId]) -> usize {
        ids.iter().filter(|id| self.held.forget(id)).count()
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
        let canonical = self.links.add_peer(address, now);
        self.route(now);
        canonical
    }

    /// The operator's pin on `address` is lifted: it is dialed no more (a link there that is
    /// open stays). False if it was not pinned.
    pub fn unpin(&mut self, address: &str) -> bool {
        self.links.unpin(address)
    }

    /// A peer connected to us. Returns the handle to report its frames and close under.
    pub fn accepted(&mut self, now: Millis) -> ConnId {
        self.accepted_from(None, None, false, now)
    }

    /// An inbound socket from client address `from` (`None` if the driver exempts it from
    /// per-address caps): once its kind is known, it is closed if that address holds as many
    /// of that kind as [`Config::per_address`] allows. `source` is the address group it came
    /// from, exempt or not (seed text and views are counted under it). `foreign`: a browser
    /// opened it for another site; it may not speak the seed protocol.
    pub fn accepted_from(
        &mut self,
        from: Option<String>,
        source: Option<Group>,
        foreign: bool,
        now: Millis,
    ) -> ConnId {
        self.links.accepted(from, source, foreign, now)
    }

    /// A dial we asked for succeeded: say hello.
    pub fn opened(&mut self, conn: ConnId, now: Millis) {
        self.links.opened(conn, self.tree.root_and_term(), now);
        self.route(now);
    }

    /// A dial we asked for failed, for the reason given (shown on status pages).
    pub fn dial_failed(&mut self, conn: ConnId, reason: &str, now: Millis) {
        self.links.dial_failed(conn, reason, now);
        self.route(now);
    }

    /// The connection closed (by the peer, or the transport failed); `reason` is the peer's
    /// close reason or the transport's error, if any.
    pub fn closed(&mut self, conn: ConnId, reason: Option<&str>, now: Millis) {
        self.links.closed(conn, reason, now);
        self.route(now);
    }

    /// A WebSocket pong arrived: the peer is alive.
    pub fn transport_pong(&mut self, conn: ConnId, now: Millis) {
        self.links.transport_pong(conn, now);
    }

    /// The driver's word that the send queue of `conn` is backed up (`true`: the peer reads
    /// more slowly than we send) or has drained again (`false`). A backed-up peer is only
    /// told of new messages until it drains (see `broadcast`): it is never dropped for it,
    /// and the other peers never wait for it.
    pub fn backed_up(&mut self, conn: ConnId, backed_up: bool, now: Millis) {
        if let Some(node) = self.links.node_on(conn) {
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
        self.links.bad_frame(conn, "binary frame", now);
        self.route(now);
    }

    /// The messages the peer on `conn` asked for (after [`Output::Fetch`]), in pages, each
    /// charged to its pull budget (`Limits::peer_pulls`): past it, the answer ends there.
    pub fn provide(&mut self, conn: ConnId, messages: Vec<Message>, now: Millis) {
        if !self.links.conns().get(conn).is_some_and(Conn::is_hearsay) {
            return;
        }
        let messages = self.admission.to_give(conn, messages, now);
        for page in sync::pages(messages) {
            let ids = page.message_ids();
            if !self.reply(conn, page, now) {
                return self.send(conn, Frame::from(sync::Message::end()).encode().into());
            }
            self.admission.given(conn, ids, now);
        }
    }

    /// Answers what the peer on `conn` asked for, if it may pull that much (see `admission`).
    fn reply(&mut self, conn: ConnId, message: sync::Message, now: Millis) -> bool {
        let sync_held = matches!(message, sync::Message::Sync(_)).then(|| self.held.index().len());
        let frame: Arc<str> = Frame::from(message).encode().into();
        let group = self.links.group_of(conn);
        if !self
            .admission
            .pull(conn, group, frame.len(), sync_held, now)
        {
            self.stats.pulls_refused += 1;
            return false;
        }
        self.send(conn, frame);
        true
    }

    /// A text frame arrived on `conn`.
    pub fn frame(&mut self, conn: ConnId, text: &str, now: Millis) {
        self.inbound(conn, Inbound::read(text), now);
    }

    /// A frame read (and perhaps its signatures checked) off the engine's thread: see
    /// [`Inbound`].
    pub fn inbound(&mut self, conn: ConnId, inbound: Inbound, now: Millis) {
        let root = self.tree.root_and_term();
        if let Some(arrived) = self.links.inbound(conn, inbound, root, now) {
            self.route_links(now);
            self.dispatch(conn, arrived, now);
        }
        self.route(now);
    }

    /// The application publishes `data`, signed with this peer's key. Returns the message
    /// as delivered.
    pub fn publish(&mut self, data: &str, now: Millis) -> Result<Message, PublishError> {
        self.admission.check_own(data, self.key.public(), now)?;
        self.seq = crate::message::next_seq(self.seq, now, self.tab.as_ref());
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
        let checked = self.admission.check_signed(&msg, &self.held, now);
        if checked == Err(PublishError::BadSignature) {
            self.stats.bad_signatures += 1;
        }
        if !checked? {
            return Ok(false);
        }
        self.stats.published += 1;
        self.take(msg, Via::Published, now);
        self.route(now);
        Ok(true)
    }

    /// Time has passed: runs whatever is due in every part, in a fixed order. The parts whose
    /// effects others read at once are carried out as soon as they have run.
    pub fn handle_timeout(&mut self, now: Millis) {
        let due = |t: Option<Millis>| t.is_some_and(|t| t <= now);
        if due(self.links.poll_timeout()) {
            let membership = &self.membership;
            self.links
                .handle_timeout(now, &|node| membership.wants(node));
            self.route_links(now);
        }
        if due(self.held.poll_timeout()) {
            self.held.handle_timeout(now, ());
        }
        if due(self.admission.poll_timeout()) {
            self.admission.handle_timeout(now, ());
        }
        if due(self.seeds.poll_timeout()) {
            let (me, membership, view) = (self.me, &self.membership, self.map.view());
            let known = || seed::known(me, membership.known_nodes(), view);
            let cx = seed::Context {
                known: &known,
                map: view,
            };
            self.seeds.handle_timeout(now, cx);
        }
        self.route_direct(now);
        if due(self.membership.poll_timeout()) {
            self.membership.handle_timeout(now, self.map.view());
        }
        if due(self.broadcast.poll_timeout()) {
            self.broadcast.handle_timeout(now, ());
        }
        if due(self.tree.poll_timeout()) {
            self.tree.handle_timeout(now, self.broadcast.links_mut());
        }
        if due(self.map.poll_timeout()) {
            let (membership, broadcast, seeds) = (&self.membership, &self.broadcast, &self.seeds);
            let cx = map::Context {
                held: self.held.len() as u64,
                ready: self.tree.carries_records(),
                own: &|| OwnLinks {
                    clients: membership.clients() as u32,
                    seeds: seeds.len() as u32,
                    seeds_dialed: seeds.dialed_addresses(),
                    ..OwnLinks::of(membership.active(), membership.client_ids(), |id| {
                        broadcast.is_eager(id)
                    })
                },
                eager: &|| broadcast.eager().copied().collect(),
                neighbours: &|| membership.active(),
            };
            self.map.handle_timeout(now, cx);
            self.route_direct(now);
        }
        if due(self.sync.poll_timeout()) {
            let floor = self.held.kept_from(self.held.history().sync_floor(now));
            let index = self.held.index();
            self.sync
                .handle_timeout(now, sync::Context { index, floor });
            self.route_direct(now);
        }
        self.route(now);
    }

    // ----- frames -----

    /// Hands a frame to the part it is for.
    fn dispatch(&mut self, conn: ConnId, arrived: Arrived, now: Millis) {
        let (from, kind, frame) = match arrived {
            Arrived::Seed { message, first } => return self.on_seed(conn, message, first, now),
            Arrived::Hearsay {
                from,
                kind,
                frame,
                signed,
            } => {
                // Good for this frame only.
                self.checked = signed;
                (from, kind, frame)
            }
        };
        match frame {
            Frame::Membership(m) => self.membership.message(from, m, now),
            Frame::Broadcast(broadcast::Message::Gossip { msg, hops }) => {
                self.arrive(conn, kind, msg, Via::Pushed { from, hops }, now);
            }
            Frame::Broadcast(m) => {
                let (held, admission) = (&self.held, &self.admission);
                let held = |id: &MsgId| held.contains(id) || admission.dropped_over_quota(id);
                let upstream = self.tree.upstream();
                self.broadcast.message(from, m, held, upstream, now);
            }
            Frame::Tree(m) => self.tree.message(from, m, self.broadcast.links_mut(), now),
            Frame::Keepalive(m) => self.links.keepalive(conn, m, now),
            Frame::Reply(reply) => self.outputs.push_back(Output::replied(from, reply)),
            Frame::Sync(sync::Message::Messages { messages, done }) => {
                self.on_messages(conn, kind, messages, done, now);
            }
            Frame::Sync(m) => {
                let floor = self.held.kept_from(self.held.history().cutoff(now));
                let index = self.held.index();
                self.sync.message(conn, m, sync::Context { index, floor });
            }
            Frame::Map(map::Message::Map { records }) => self.map.received(from, records, now),
            Frame::Map(map::Message::Want { nodes }) => self.map.wanted(from, nodes),
            Frame::Seed(_) | Frame::Handshake(_) => {
                self.links.bad_frame(conn, "unexpected frame", now);
            }
        }
        self.checked.clear();
    }

    /// A seed's frame; `first` (with the address we dialed it at, if we did) if it is the
    /// connection's first, read before we answer so the answer can take it into account.
    fn on_seed(
        &mut self,
        conn: ConnId,
        message: seed::Message,
        first: Option<Option<String>>,
        now: Millis,
    ) {
        if let Some(dialed) = &first {
            self.seeds.opened(conn, dialed.clone());
        }
        match message {
            seed::Message::Text { data } => {
                let msg = Message::from_seed(data, now);
                self.arrive(conn, PeerKind::Node, msg, Via::Seed, now);
            }
            seed::Message::Sockets { addresses } => self.seeds.sockets(conn, &addresses, now),
        }
        if let Some(dialed) = first {
            let nodes = self.membership.known_nodes();
            self.seeds.first_frame(conn, dialed, nodes, now);
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
            (Via::Seed, _) => Sender::Seed(self.links.group_of(conn)),
            (_, PeerKind::Browser) => Sender::Page,
            (via, PeerKind::Node) => Sender::Node {
                pushed: matches!(via, Via::Pushed { .. }),
            },
        };
        let checked = self.checked.contains(&msg.id);
        let verdict = self
            .admission
            .judge(conn, sender, &msg, checked, &self.held, now);
        let mut taken = false;
        match verdict {
            Verdict::Take => {
                taken = true;
                self.ack(conn, &msg);
                self.take(msg, via, now);
            }
            Verdict::Duplicate => {
                self.stats.duplicates += 1;
                if matches!(via, Via::Pushed { .. }) {
                    self.ack(conn, &msg);
                }
            }
            Verdict::Bad(why) => self.links.bad_frame(conn, why, now),
            Verdict::Drop { why, tell } => {
                let counter = match why {
                    Dropped::TooOld => &mut self.stats.too_old,
                    Dropped::Future => &mut self.stats.from_future,
                    Dropped::RateLimited => &mut self.stats.rate_limited,
                    Dropped::OverQuota => &mut self.stats.over_quota,
                };
                *counter += 1;
                if let Some(reply) = tell {
                    self.send(conn, Frame::from(reply).encode().into());
                }
            }
            Verdict::Close(reason) => {
                match reason {
                    CloseReason::BadSignature => self.stats.bad_signatures += 1,
                    _ => {
                        self.stats.over_quota += 1;
                        self.stats.closed_over_quota += 1;
                    }
                }
                // An honest peer never does this: it is refused for a while.
                if let Some(node) = self.links.conns().get(conn).and_then(Conn::node_id) {
                    self.links.refuse(node, now);
                }
                self.links.close(conn, reason, now);
            }
        }
        self.route_links(now);
        self.links.conns().get(conn).map(|_| taken)
    }

    /// A message new here is taken: held, delivered, passed to seeds, broadcast.
    fn take(&mut self, msg: Message, via: Via, now: Millis) {
        self.held.insert(sync::key_of(&msg), msg.data.len());
        self.stats.delivered += 1;
        let own = matches!(via, Via::Published);
        // (Only looked at when seeds are linked: a scan of the pages held here.)
        let homed = matches!(via, Via::Pushed { .. })
            && !self.seeds.is_empty()
            && self.links.conns().homes_page(self.me, &msg.author);
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
            from: match via {
                Via::Pushed { from, .. } => Some(from),
                _ => None,
            },
        });
        let msg = Arc::new(msg);
        let (from, hops) = match via {
            Via::Fetched => {
                self.stats.synced += 1;
                return self.broadcast.received_otherwise(msg, now);
            }
            Via::Pushed { from, hops } => (Some(from), hops),
            Via::Published | Via::Seed => (None, 0),
        };
        // The root hands the root to a node that publishes nearly everything (see `tree`).
        let node = msg.author.key().map(|k| k.node_id()).filter(|id| {
            *id == self.me
                || self
                    .map
                    .view()
                    .get(id)
                    .is_some_and(|r| r.kind == PeerKind::Node)
        });
        self.tree.note_publisher(node, self.broadcast.links(), now);
        let tree = (self.tree.root(), self.tree.upstream());
        self.broadcast.received_new(from, msg, hops, tree, now);
    }

    // ----- the parts' outputs -----

    /// Carries out what the parts asked for, until none has anything more to say. The parts
    /// whose effects the others read at once (links, the held set, seeds, the map,
    /// reconciliation) are carried out as soon as they speak; membership's and broadcast's
    /// outputs in turn, each part's in the order it queued them (the tree's before
    /// Plumtree's).
    fn route(&mut self, now: Millis) {
        // What broadcast scales by (how far a message's first hops go, whether the root
        // walks): the nodes on the map as of this call, for the next. (Not its pages: they
        // relay nothing, and 50 pages open on a 60-node network would set its root walking.)
        let size = self.map.view().nodes();
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
            let mut any = self.route_links(now);
            while let Some(HeldOut::Evict { before, count }) = self.held.poll() {
                any = true;
                self.stats.evicted += count as u64;
                self.outputs.push_back(Output::Evict { before, count });
            }
            while let Some(out) = self.seeds.poll() {
                any = true;
                match out {
                    seed::Out::Send { to, message } => self.send_all(&to, Frame::from(message)),
                    seed::Out::Close(conn, reason) => self.links.close(conn, reason, now),
                    seed::Out::Introduced(address) => self.links.seed_answered(&address, now),
                }
                self.route_links(now);
            }
            // Neighbours that get the same records share one encoding.
            let mut encoded: Vec<(Arc<map::Message>, Arc<str>)> = Vec::new();
            while let Some(out) = self.map.poll() {
                any = true;
                let (node, message, reply) = match out {
                    map::Out::Send(node, message) => (node, message, false),
                    map::Out::Reply(node, message) => (node, message, true),
                    map::Out::Bad(node, why) => {
                        if let Some(conn) = self.links.to_node(node) {
                            self.links.bad_frame(conn, why, now);
                        }
                        continue;
                    }
                };
                let Some(conn) = self.links.to_node(node) else {
                    continue;
                };
                let frame = match encoded.iter().find(|(m, _)| Arc::ptr_eq(m, &message)) {
                    Some((_, frame)) => frame.clone(),
                    None => {
                        let frame: Arc<str> = Frame::from((*message).clone()).encode().into();
                        encoded.push((message, frame.clone()));
                        frame
                    }
                };
                // An answer to what the peer asked for is charged like any (see `reply`).
                let group = self.links.group_of(conn);
                if reply && !self.admission.pull(conn, group, frame.len(), None, now) {
                    self.stats.pulls_refused += 1;
                    continue;
                }
                self.send(conn, frame);
            }
            while let Some(out) = self.sync.poll() {
                any = true;
                match out {
                    sync::Out::Send { to, message } => self.send_all(&to, Frame::from(message)),
                    sync::Out::Reply { conn, message } => _ = self.reply(conn, message, now),
                    // Each message once, and not again for a while, however often it is asked.
                    sync::Out::Fetch { conn, ids } => match self.admission.wanted(conn, ids, now) {
                        ids if ids.is_empty() => self.provide(conn, Vec::new(), now),
                        ids => self.outputs.push_back(Output::Fetch { conn, ids }),
                    },
                    sync::Out::Bad(conn, why) => self.links.bad_frame(conn, why, now),
                }
                self.route_links(now);
            }
            if !any {
                return;
            }
        }
    }

    /// Carries out what links asked for: the driver's part at once, and what the other parts
    /// must hear of a link's coming and going. Whether there was anything.
    fn route_links(&mut self, now: Millis) -> bool {
        let mut any = false;
        while let Some(out) = self.links.poll() {
            any = true;
            match out {
                links::Out::Send(conn, frame) => self.send(conn, frame),
                links::Out::TransportPing(conn) => self.outputs.push_back(Output::Ping { conn }),
                links::Out::Dial(conn, address) => {
                    self.outputs.push_back(Output::Dial { conn, address });
                }
                links::Out::Close(conn, reason) => {
                    self.outputs.push_back(Output::Close { conn, reason });
                }
                links::Out::Lost {
                    conn,
                    disconnected,
                    failed,
                } => {
                    self.seeds.closed(conn);
                    self.sync.close(conn);
                    self.admission.forget(conn);
                    if let Some(node) = disconnected {
                        self.membership.disconnected(node, now);
                    } else if let Some(node) = failed {
                        self.membership.connect_failed(node, now);
                    }
                }
                links::Out::ConnectFailed(node) => self.membership.connect_failed(node, now),
                links::Out::Established(peer) => {
                    if peer.replaced && self.membership.is_neighbor(peer.id) {
                        self.sync.open(peer.conn, peer.outbound, now);
                    }
                    let elsewhere = self.tree.elsewhere(peer.root);
                    if let Some(rtt) = peer.rtt {
                        self.membership.timed(peer.id, rtt);
                    }
                    self.membership.connected(
                        peer.id,
                        peer.kind,
                        peer.record,
                        peer.pinned,
                        elsewhere,
                        peer.group,
                        now,
                    );
                }
            }
        }
        any
    }

    fn on_membership(&mut self, out: membership::Out, now: Millis) {
        use membership::Out;
        match out {
            Out::Send(node, message) => self.send_to(node, Frame::from(message)),
            Out::Connect { peer, then } => {
                let then = then.map(|m| Frame::from(m).encode().into());
                self.links.connect(&peer, then, now);
            }
            Out::Close(node, reason) => {
                if let Some(conn) = self.links.to_node(node) {
                    self.links.close(conn, reason, now);
                }
            }
            Out::NeighborUp(node) => {
                let conns = self.links.conns();
                let Some((conn, c)) = conns.to_node(node).and_then(|c| Some((c, conns.get(c)?)))
                else {
                    return;
                };
                let client = c.hearsay().is_some_and(|h| h.kind == PeerKind::Browser);
                let initiator = c.direction == crate::conns::Direction::Outbound;
                let formed = self.tree.root().is_some();
                self.broadcast.neighbor_up(node, client, formed, now);
                self.sync.open(conn, initiator, now);
                if client && self.config.kind == PeerKind::Node {
                    self.map.welcome(node, now);
                }
            }
            Out::NeighborDown(node) => {
                // A lost parent leaves this peer's part of the tree without what was in
                // flight: while the new one is on probation, ask for what others announce
                // sooner (its being late is no sign of withholding then).
                if self.tree.parent() == Some(node) {
                    self.broadcast.hurry(now + tree::PARENT_PROBATION, now);
                }
                self.broadcast.neighbor_down(node);
                self.tree
                    .neighbor_down(node, self.broadcast.links_mut(), now);
                if let Some(conn) = self.links.to_node(node) {
                    self.sync.close(conn);
                }
            }
        }
    }

    fn on_tree(&mut self, out: tree::Out, now: Millis) {
        match out {
            tree::Out::Send(node, message) => self.send_to(node, Frame::from(message)),
            tree::Out::Link(node, message) => self.send_to(node, Frame::from(message)),
            // A link to the old root that is no neighbour's (a revisit, a shuffle's carrier)
            // is no path between the parts: the join goes over it.
            tree::Out::RootLost(root) if !self.membership.is_neighbor(root.id) => {
                self.membership.reach(root, now);
            }
            tree::Out::RootLost(_) => {}
        }
    }

    fn on_broadcast(&mut self, out: broadcast::Out, now: Millis) {
        match out {
            broadcast::Out::Push { to, msg, hops } => {
                let frame: Arc<str> = Frame::encode_gossip(&msg, hops).into();
                let own = msg.author == Author::Key(self.key.public());
                for node in to {
                    if let Some(conn) = self.links.to_node(node) {
                        if !own {
                            self.stats.forwarded += 1;
                        }
                        self.send(conn, frame.clone());
                    }
                }
            }
            broadcast::Out::Send(node, message) => self.send_to(node, Frame::from(message)),
            broadcast::Out::Pruned(node) => self.tree.pruned_by(node, self.broadcast.links_mut()),
            broadcast::Out::Recovered(node, asked) => {
                self.tree
                    .recovered(node, asked, self.broadcast.links_mut(), now)
            }
        }
    }

    fn send(&mut self, conn: ConnId, frame: Arc<str>) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        self.outputs.push_back(Output::Send { conn, frame });
    }

    /// Sends `frame` to the connection of hearsay peer `node`, if there is one.
    fn send_to(&mut self, node: NodeId, frame: Frame) {
        if let Some(conn) = self.links.to_node(node) {
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

    /// Acknowledges a page's own message to it (even a copy: the page wants to know that
    /// some node holds what it published).
    fn ack(&mut self, conn: ConnId, msg: &Message) {
        if self.config.kind == PeerKind::Node && self.links.conns().is_page_of(conn, &msg.author) {
            self.send(conn, Frame::from(Reply::Ack { id: msg.id }).encode().into());
        }
    }

    /// A peer whose send queue is full is dropped rather than allowed to grow memory (see
    /// [`Engine::drain`]).
    pub(crate) fn queue_full(&mut self, conn: ConnId, now: Millis) {
        self.links.close(conn, CloseReason::SendQueueFull, now);
        self.route(now);
    }
}

/// Membership reads the map's records of nodes as a directory: how many each address group
/// holds (by the addresses records claim), and nodes to ask.
impl Directory for map::TopologyView {
    fn crowded_groups(&self, keys: usize) -> HashSet<Group> {
        let mut count: HashMap<Group, usize> = HashMap::new();
        for g in self.records().filter_map(node_group) {
            *count.entry(g).or_default() += 1;
        }
        count
            .into_iter()
            .filter(|&(_, n)| n >= keys)
            .map(|(g, _)| g)
            .collect()
    }

    fn sample(&self, me: NodeId, n: usize, rng: &mut dyn rand::RngCore) -> Vec<PeerRecord> {
        use rand::seq::IteratorRandom;
        self.records()
            .filter(|r| r.node != me)
            .filter_map(dialable)
            .choose_multiple(rng, n)
    }

    fn in_group(&self, group: Group) -> Vec<PeerRecord> {
        self.records()
            .filter(|r| node_group(r) == Some(group))
            .filter_map(dialable)
            .collect()
    }
}

/// The address group a node's record claims.
fn node_group(record: &TopoRecord) -> Option<Group> {
    (record.kind == PeerKind::Node)
        .then_some(record.address.as_deref())
        .flatten()
        .and_then(Group::of_address)
}

/// How to dial the node a record describes, if it is one and says.
fn dialable(record: &TopoRecord) -> Option<PeerRecord> {
    let address = record
        .address
        .clone()
        .filter(|_| record.kind == PeerKind::Node)?;
    PeerRecord {
        id: record.node,
        address,
        aliases: Vec::new(),
    }
    .canonical()
}
