//! A deterministic discrete-event simulation of a hearsay network on a virtual clock.
//!
//! Each simulated peer is a hearsay [`Engine`] (a node or a page) or a [`SeedNode`] that
//! behaves like the Node.js seed (v1). Each pair of peers is a latency apart, drawn once from
//! [`Sim::latency`] by a hash of the pair (so a link opened again, or a dial that measures a
//! candidate, finds the same distance: what latency-aware views optimise is the pair, as on
//! a real network); a link's frames arrive in order after that latency plus up to 10% jitter,
//! as a WebSocket over TCP does. The draws are independent per pair, with no geography
//! behind them: a fast pair says nothing of its neighbours' distances. A dial takes two latencies (TCP and the upgrade) and succeeds if
//! the address belongs to a running peer. Every random choice comes from one seed, so a run
//! replays exactly, and tests assert delivery properties over many seeds and topologies in
//! milliseconds of real time.
//!
//! Addresses are where costs lie when keys are free: honest node `i` listens in an IPv4 /24 of
//! its own (`ws://10.x.y.1:3000`), and a listener sees a dialer's address and counts it under
//! its group (see [`crate::group`]). [`Sim::add_adversary`] adds a hostile peer in an IPv6 /48
//! shared with the other adversaries of its group: an ordinary engine whose frames
//! [`adversary`] bends (withholding, forged beacons, eclipsing peer lists, spam, pulls that
//! amplify).
//!
//! Flow: [`Sim::run_until`] takes the earliest of (queued network event, an engine's next
//! deadline) — deadlines sit in a heap, so a step costs O(log n) whatever the network's size —
//! feeds it to the peer, and turns the peer's outputs into new queued events.
//!
//! [`Scenario`] runs the measurement `hearsay sim` prints: warm-up until membership settles,
//! messages at a network-wide rate, then the run until every live honest node has every
//! message; with [`Adversaries`], what honest nodes saw is counted apart.

pub mod adversary;
mod seed_node;

pub use adversary::{Adversary, Attack};
pub use seed_node::{SeedNode, SeedOut};

use crate::close::CloseReason;
use crate::conns::ConnId;
use crate::engine::{Config, Driver, Engine};
use crate::group::Group;
use crate::id::{MsgId, NodeId};
use crate::identity::{Identity, Keypair, Tab};
use crate::message::Message;
use crate::peer::PeerRecord;
use crate::wire::Frame;
use crate::{Millis, PeerKind, Strategy};
use crate::{broadcast, sync, tree};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

/// The virtual clock starts here, so timestamps look like real ones (2026-01-01).
pub const EPOCH: Millis = 1_767_225_600_000;

/// How peers are first linked: who dials whom (`--peer`) when a network starts. Membership
/// reshapes the links from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Node i dials node i-1.
    Line,
    /// A line closed into a loop.
    Ring,
    /// Every node dials node 0.
    Star,
    /// A random spanning tree plus about n/2 random extra links.
    Random,
    /// Every node dials every earlier node.
    Full,
}

impl Topology {
    pub const ALL: [Topology; 5] = [
        Topology::Line,
        Topology::Ring,
        Topology::Star,
        Topology::Random,
        Topology::Full,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Topology::Line => "line",
            Topology::Ring => "ring",
            Topology::Star => "star",
            Topology::Random => "random",
            Topology::Full => "full",
        }
    }

    /// Directed edges (dialer, target) for `n` nodes.
    pub fn edges(self, n: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
        let mut edges = Vec::new();
        match self {
            Topology::Line => edges.extend((1..n).map(|i| (i, i - 1))),
            Topology::Ring => {
                edges.extend((1..n).map(|i| (i, i - 1)));
                if n > 2 {
                    edges.push((0, n - 1));
                }
            }
            Topology::Star => edges.extend((1..n).map(|i| (i, 0))),
            Topology::Random => {
                edges.extend((1..n).map(|i| (i, rng.random_range(0..i))));
                let mut seen: HashSet<(usize, usize)> = edges.iter().copied().collect();
                for _ in 0..n / 2 {
                    let a = rng.random_range(0..n);
                    let b = rng.random_range(0..n);
                    if a != b && !seen.contains(&(a, b)) && !seen.contains(&(b, a)) {
                        seen.insert((a, b));
                        edges.push((a, b));
                    }
                }
            }
            Topology::Full => {
                for i in 0..n {
                    edges.extend((0..i).map(|j| (i, j)));
                }
            }
        }
        edges
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Topology {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Topology::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown topology {s:?}: line, ring, star, random or full"))
    }
}

/// How far apart peers are ([`Sim::latency`] gives the range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Geography {
    /// Each pair's latency drawn on its own: a fast pair says nothing of its neighbours'.
    Pairs,
    /// Peers at random points of a square, a pair's latency growing with their distance (the
    /// range's low end for one place, its high end corner to corner): nearby peers are near
    /// each other's neighbours too, as on the internet, and the triangle inequality holds.
    Plane,
}

impl std::str::FromStr for Geography {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pairs" => Ok(Geography::Pairs),
            "plane" => Ok(Geography::Plane),
            _ => Err(format!("unknown geography {s:?}: pairs or plane")),
        }
    }
}

pub enum NodeKind {
    Hearsay(Box<Engine>),
    Seed(SeedNode),
}

pub struct SimNode {
    pub address: String,
    pub kind: NodeKind,
    pub up: bool,
    /// For each message id, how many times this peer delivered it (should be exactly 1).
    pub delivered: HashMap<MsgId, u32>,
    /// What this peer holds, to answer `WANT`s with (its store).
    pub held: HashMap<MsgId, Message>,
    /// Seed actions that still need turning into events.
    pending: Vec<Action>,
    /// What this peer does against the others, if it is an adversary (see [`adversary`]).
    pub adversary: Option<Box<Adversary>>,
    /// A browser peer ([`Sim::add_browser`]): what it is sent is counted apart from nodes'.
    pub page: bool,
}

impl SimNode {
    pub fn engine(&self) -> Option<&Engine> {
        match &self.kind {
            NodeKind::Hearsay(e) => Some(e),
            NodeKind::Seed(_) => None,
        }
    }
    pub fn seed(&self) -> Option<&SeedNode> {
        match &self.kind {
            NodeKind::Seed(s) => Some(s),
            NodeKind::Hearsay(_) => None,
        }
    }
    /// A hearsay peer that is not an adversary.
    pub fn is_honest(&self) -> bool {
        self.adversary.is_none() && self.engine().is_some()
    }
    /// An honest node (not a page): whose sending the node figures count.
    fn is_honest_node(&self) -> bool {
        self.adversary.is_none() && !self.page
    }
}

/// What a peer asked the network for.
#[derive(Debug)]
enum Action {
    Send(ConnId, Arc<str>),
    Ping(ConnId),
    Dial(ConnId, String),
    /// Closes the connection, saying why (as a WebSocket close frame does).
    Close(ConnId, CloseReason),
}

#[derive(Debug)]
enum Event {
    Connect {
        from: usize,
        conn: ConnId,
        address: String,
    },
    Arrive {
        to: usize,
        conn: ConnId,
        frame: Arc<str>,
    },
    Pong {
        to: usize,
        conn: ConnId,
    },
    /// `reason`: the close frame's, if the other end closed it (a cut link has none).
    Closed {
        to: usize,
        conn: ConnId,
        reason: Option<String>,
    },
    /// Adversary `by` acts on its own (see [`Adversary::act`]).
    Act {
        by: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Link {
    to: usize,
    to_conn: ConnId,
    latency: Millis,
    last_arrival: Millis,
}

/// Aggregate figures from a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub nodes: usize,
    pub messages: usize,
    /// Deliveries at hearsay peers (each peer × each message, when all is well).
    pub deliveries: u64,
    /// Message copies that arrived and were dropped as already held.
    pub duplicates_suppressed: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub bad_frames: u64,
    /// Mean and worst time from publish to delivery, over every (peer, message).
    pub mean_latency_ms: f64,
    pub max_latency_ms: Millis,
}

/// What the simulator tracks of one published message.
#[derive(Debug, Default, Clone)]
struct Tracked {
    published_at: Millis,
    /// Frames that carried its payload (pushes, graft replies, reconciliation).
    payload_frames: u64,
    reached: u64,
    last_delivery: Millis,
    max_hops: u32,
}

pub struct Sim {
    pub now: Millis,
    rng: SmallRng,
    /// Salts the pairs' latencies ([`Sim::pair_latency`]), drawn from the seed.
    latency_salt: u64,
    /// How the pairs' latencies are drawn.
    pub geography: Geography,
    pub nodes: Vec<SimNode>,
    queue: BTreeMap<(Millis, u64), Event>,
    seq: u64,
    /// The engines' next deadlines, and what each node's is now (older entries are stale).
    deadlines: BinaryHeap<Reverse<(Millis, usize)>>,
    scheduled: Vec<Option<Millis>>,
    links: HashMap<(usize, ConnId), Link>,
    by_address: HashMap<String, usize>,
    /// Link latency range in milliseconds.
    pub latency: (Millis, Millis),
    frames_sent: u64,
    bytes_sent: u64,
    tracked: HashMap<MsgId, Tracked>,
    latencies: Vec<Millis>,
    /// Every delivery of a tracked message: (peer, id, when, hops; `None`: reconciled).
    pub deliveries: Vec<(usize, MsgId, Millis, Option<u32>)>,
    /// While set, the network is cut between these nodes and the rest.
    cut: Option<HashSet<usize>>,
    /// Every adversary's record, for the peer lists an eclipse sends.
    roster: Vec<PeerRecord>,
    /// What honest peers sent, by frame type (the `type` of its JSON; `other` for any
    /// without one), in bytes.
    honest_bytes_by_frame: BTreeMap<String, u64>,
    /// What honest peers sent, in bytes (the cost an adversary makes them pay).
    honest_bytes: u64,
    /// What pages were sent, by frame type and in all, and what they sent, in bytes.
    page_in_by_frame: BTreeMap<String, u64>,
    page_frames_in_by_frame: BTreeMap<String, u64>,
    page_in: u64,
    page_out: u64,
}

impl Sim {
    /// A network whose every random choice comes from `rng_seed`.
    pub fn new(rng_seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(rng_seed);
        Self {
            now: EPOCH,
            latency_salt: rng.random(),
            geography: Geography::Pairs,
            rng,
            nodes: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            deadlines: BinaryHeap::new(),
            scheduled: Vec::new(),
            links: HashMap::new(),
            by_address: HashMap::new(),
            latency: (1, 50),
            frames_sent: 0,
            bytes_sent: 0,
            tracked: HashMap::new(),
            latencies: Vec::new(),
            deliveries: Vec::new(),
            cut: None,
            roster: Vec::new(),
            honest_bytes: 0,
            honest_bytes_by_frame: BTreeMap::new(),
            page_in_by_frame: BTreeMap::new(),
            page_frames_in_by_frame: BTreeMap::new(),
            page_in: 0,
            page_out: 0,
        }
    }

    /// The address honest node `i` listens on: each in an IPv4 /24 of its own, as nodes on
    /// the internet mostly are (so each is an address group of its own).
    pub fn address(i: usize) -> String {
        format!("ws://{}:3000", Self::host(i))
    }

    fn host(i: usize) -> String {
        format!("10.{}.{}.1", (i >> 8) & 0xff, i & 0xff)
    }

    /// Node `i`'s seed-compatible port (hearsay nodes only), which seed users dial.
    pub fn v1_address(i: usize) -> String {
        format!("ws://{}:3001", Self::host(i))
    }

    /// Where adversary `i` of address group `group` listens: an IPv6 /48 per group, so a
    /// group holds as many adversaries as a run makes.
    fn adversary_host(i: usize, group: usize) -> String {
        format!("[fd00:0:{:x}::{:x}]", group + 1, i)
    }

    /// Makes seed node `seed` dial hearsay node `node` at its seed-compatible port.
    pub fn seed_add(&mut self, seed: usize, node: usize) {
        let address = Self::v1_address(node);
        self.seed_dial(seed, address);
    }

    /// A seed's `/add`: it dials the address (and records it when the dial opens).
    fn seed_dial(&mut self, seed: usize, address: String) {
        if let NodeKind::Seed(s) = &mut self.nodes[seed].kind {
            s.add(&address);
        }
        self.seed_outputs(seed);
        self.flush(seed);
    }

    /// Turns what seed node `i` asked for into actions; false if it crashed (its process
    /// ends, and its links with it).
    fn seed_outputs(&mut self, i: usize) -> bool {
        let node = &mut self.nodes[i];
        let NodeKind::Seed(s) = &mut node.kind else {
            return true;
        };
        while let Some(out) = s.poll() {
            match out {
                SeedOut::Send(conn, text) => node.pending.push(Action::Send(conn, text.into())),
                SeedOut::Dial(conn, address) => node.pending.push(Action::Dial(conn, address)),
                SeedOut::Crashed => {
                    node.pending.clear();
                    self.kill(i);
                    return false;
                }
            }
        }
        true
    }

    /// An engine with a fresh random key (and tab, for a page) and seed, drawn from the
    /// simulation's one seed.
    fn new_engine(&mut self, config: Config) -> Engine {
        let mut secret = [0u8; 32];
        self.rng.fill(&mut secret);
        let key = Keypair::from_secret(secret);
        let identity = if config.kind == PeerKind::Browser {
            let mut tab = [0u8; 16];
            self.rng.fill(&mut tab);
            Identity::page(key, Tab::from_bytes(tab))
        } else {
            Identity::node(key)
        };
        let seed = self.rng.random();
        Engine::new(config, identity, seed, self.now)
    }

    fn push_node(&mut self, address: String, kind: NodeKind) -> usize {
        let i = self.nodes.len();
        self.by_address.insert(address.clone(), i);
        if matches!(kind, NodeKind::Hearsay(_)) {
            self.by_address.insert(Self::v1_address(i), i);
        }
        self.nodes.push(SimNode {
            address,
            kind,
            up: true,
            delivered: HashMap::new(),
            held: HashMap::new(),
            pending: Vec::new(),
            adversary: None,
            page: false,
        });
        self.scheduled.push(None);
        self.reschedule(i);
        i
    }

    /// Adds a hearsay node; `config.listen_addresses` is filled in.
    pub fn add_hearsay(&mut self, mut config: Config) -> usize {
        let i = self.nodes.len();
        config.listen_addresses = vec![Self::address(i), Self::v1_address(i)];
        let engine = self.new_engine(config);
        self.push_node(Self::address(i), NodeKind::Hearsay(Box::new(engine)))
    }

    /// Adds an adversary doing `attack` from address group `group` (a /48 of its own, apart
    /// from every honest node's): an ordinary engine whose frames the simulator bends (see
    /// [`adversary`]).
    pub fn add_adversary(&mut self, mut config: Config, attack: Attack, group: usize) -> usize {
        let i = self.nodes.len();
        let host = Self::adversary_host(i, group);
        let address = format!("ws://{host}:3000");
        let v1 = format!("ws://{host}:3001");
        config.listen_addresses = vec![address.clone(), v1.clone()];
        let engine = self.new_engine(config);
        self.roster.push(PeerRecord {
            id: engine.id(),
            address: address.clone(),
            aliases: Vec::new(),
        });
        let adversary = Adversary::new(attack, &mut self.rng);
        self.by_address.insert(address.clone(), i);
        self.nodes.push(SimNode {
            address,
            kind: NodeKind::Hearsay(Box::new(engine)),
            up: true,
            delivered: HashMap::new(),
            held: HashMap::new(),
            pending: Vec::new(),
            adversary: Some(Box::new(adversary)),
            page: false,
        });
        self.by_address.insert(v1, i);
        self.scheduled.push(None);
        self.reschedule(i);
        let at = self.now + self.rng.random_range(0..adversary::PERIOD);
        self.schedule(at, Event::Act { by: i });
        i
    }

    /// Adds a browser peer whose page was served by node `home` (already added): it cannot be
    /// dialed, names `home` in its handshake, and keeps `home` pinned.
    pub fn add_browser(&mut self, home: usize) -> usize {
        let home_id = self.nodes[home]
            .engine()
            .expect("home is a hearsay node")
            .id();
        let config = Config {
            kind: PeerKind::Browser,
            home: Some(home_id),
            transport_ping: false,
            ..Config::default()
        };
        let engine = self.new_engine(config);
        let i = self.nodes.len();
        let i = self.push_node(format!("browser{i}"), NodeKind::Hearsay(Box::new(engine)));
        self.nodes[i].page = true;
        self.connect(i, home);
        i
    }

    /// Adds a seed (v1) node.
    pub fn add_seed(&mut self) -> usize {
        let i = self.nodes.len();
        self.push_node(Self::address(i), NodeKind::Seed(SeedNode::default()))
    }

    /// Makes node `from` dial node `to` as `--peer` (or the seed's `/add`) would.
    pub fn connect(&mut self, from: usize, to: usize) {
        let address = self.nodes[to].address.clone();
        let now = self.now;
        match &mut self.nodes[from].kind {
            NodeKind::Hearsay(e) => {
                e.add_peer(&address, now).expect("sim addresses are valid");
            }
            NodeKind::Seed(_) => return self.seed_dial(from, address),
        }
        self.flush(from);
    }

    /// Wires nodes `0..n` (already added) in `topology`.
    pub fn wire(&mut self, topology: Topology) {
        let n = self.nodes.len();
        for (a, b) in topology.edges(n, &mut self.rng) {
            self.connect(a, b);
        }
    }

    /// Publishes `text` at node `i`; returns the id every hearsay peer should deliver.
    pub fn publish(&mut self, i: usize, text: &str) -> MsgId {
        let now = self.now;
        let id = match &mut self.nodes[i].kind {
            NodeKind::Hearsay(e) => e.publish(text, now).expect("valid text").id,
            NodeKind::Seed(s) => {
                s.commit(text);
                self.seed_outputs(i);
                MsgId::v1(text)
            }
        };
        self.tracked.entry(id).or_default().published_at = now;
        self.flush(i);
        id
    }

    /// Cuts the network between `side` and every other node: links across are lost and dials
    /// across fail until [`Sim::heal`].
    pub fn partition(&mut self, side: &[usize]) {
        let side: HashSet<usize> = side.iter().copied().collect();
        let mut crossing: Vec<(usize, ConnId)> = self
            .links
            .iter()
            .filter(|((a, _), l)| side.contains(a) != side.contains(&l.to))
            .map(|(&k, _)| k)
            .collect();
        crossing.sort();
        for key in crossing {
            self.drop_link(key);
        }
        self.cut = Some(side);
    }

    /// Ends a [`Sim::partition`].
    pub fn heal(&mut self) {
        self.cut = None;
    }

    fn across_cut(&self, a: usize, b: usize) -> bool {
        self.cut
            .as_ref()
            .is_some_and(|side| side.contains(&a) != side.contains(&b))
    }

    /// Both ends of a link see it close.
    fn drop_link(&mut self, key: (usize, ConnId)) {
        if let Some(link) = self.links.remove(&key) {
            self.links.remove(&(link.to, link.to_conn));
            let at = self.now + link.latency;
            self.schedule(
                at,
                Event::Closed {
                    to: key.0,
                    conn: key.1,
                    reason: None,
                },
            );
            self.schedule(
                at,
                Event::Closed {
                    to: link.to,
                    conn: link.to_conn,
                    reason: None,
                },
            );
        }
    }

    /// Stops node `i` abruptly: its peers see their links close.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].up = false;
        let mut mine: Vec<(usize, ConnId)> = self
            .links
            .keys()
            .filter(|(n, _)| *n == i)
            .copied()
            .collect();
        mine.sort();
        // (The dead node's own half hears nothing: a node that is down ignores events.)
        for key in mine {
            self.drop_link(key);
        }
    }

    /// Starts node `i` again with a fresh engine (new id) over its old store, dialing `peers`,
    /// as a restarted process with the same `--peer` flags and `--data` would.
    pub fn restart(&mut self, i: usize, config: Config, peers: &[usize]) {
        let mut config = config;
        config.listen_addresses = vec![Self::address(i), Self::v1_address(i)];
        // A restarted node keeps its store (as a node with --data does) but nothing else.
        let mut engine = self.new_engine(config);
        let mut held: Vec<&Message> = self.nodes[i].held.values().collect();
        held.sort_by_key(|m| m.id);
        for msg in held {
            engine.note_held(crate::sync::key_of(msg), msg.data.len());
        }
        self.nodes[i].kind = NodeKind::Hearsay(Box::new(engine));
        self.nodes[i].up = true;
        self.reschedule(i);
        for &p in peers {
            self.connect(i, p);
        }
    }

    /// Advances the virtual clock to `until`, processing everything due on the way.
    pub fn run_until(&mut self, until: Millis) {
        loop {
            let next_event = self.queue.keys().next().map(|&(t, _)| t);
            // Drop stale deadlines (the node's deadline moved since it was pushed).
            while let Some(&Reverse((t, i))) = self.deadlines.peek() {
                if self.scheduled[i] == Some(t) && self.nodes[i].up {
                    break;
                }
                self.deadlines.pop();
            }
            let next_timer = self.deadlines.peek().map(|&Reverse((t, _))| t);
            let next = match (next_event, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_event == Some(next) {
                let (_, event) = self.queue.pop_first().expect("peeked");
                self.handle(event);
            } else {
                let Reverse((_, i)) = self.deadlines.pop().expect("peeked");
                self.scheduled[i] = None;
                let now = self.now;
                if let NodeKind::Hearsay(e) = &mut self.nodes[i].kind {
                    e.handle_timeout(now);
                }
                self.flush(i);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `ms` more virtual milliseconds.
    pub fn run_for(&mut self, ms: Millis) {
        let until = self.now + ms;
        self.run_until(until);
    }

    /// Checks that every running hearsay peer delivered each of `ids` exactly once and
    /// nothing else more than once.
    pub fn check_exactly_once(&self, ids: &[MsgId]) -> Result<(), String> {
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.up || node.engine().is_none() {
                continue;
            }
            for id in ids {
                match node.delivered.get(id) {
                    Some(1) => {}
                    Some(n) => return Err(format!("node {i} delivered {id:?} {n} times")),
                    None => return Err(format!("node {i} never delivered {id:?}")),
                }
            }
            if let Some((id, n)) = node.delivered.iter().find(|(_, n)| **n > 1) {
                return Err(format!("node {i} delivered {id:?} {n} times"));
            }
        }
        Ok(())
    }

    /// Whether every running node knows the same root of the broadcast tree (always true
    /// when flooding, which has none).
    pub fn one_root(&self) -> bool {
        let mut roots = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.engine())
            .filter(|e| e.config().kind == PeerKind::Node)
            .map(|e| e.root());
        let first = roots.next().flatten();
        roots.all(|r| r == first)
    }

    /// How far apart the running nodes are in link latency, over their active links and
    /// over the broadcast tree: what bounds the time a message takes to reach them all.
    pub fn spread(&self) -> Spread {
        let n = self.nodes.len();
        let mut links: Vec<Vec<(usize, Millis)>> = vec![Vec::new(); n];
        let mut tree: Vec<Vec<(usize, Millis)>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.up) {
            let Some(engine) = node.engine() else {
                continue;
            };
            for peer in engine.peers() {
                let Some(link) = self.links.get(&(i, peer.conn)) else {
                    continue;
                };
                if !self.nodes[link.to].up || self.nodes[link.to].engine().is_none() {
                    continue;
                }
                if peer.neighbor {
                    links[i].push((link.to, link.latency));
                }
                if peer.eager {
                    tree[i].push((link.to, link.latency));
                }
            }
        }
        // (Between honest nodes: an adversary may keep no link at all.)
        let live: Vec<usize> = (0..n)
            .filter(|&i| self.nodes[i].up && self.nodes[i].is_honest())
            .collect();
        let eccentricity = |graph: &[Vec<(usize, Millis)>], from: usize| {
            let (dist, _) = shortest_paths(graph, from);
            live.iter().map(|&i| dist[i]).max().unwrap_or(0)
        };
        let diameter = |graph: &[Vec<(usize, Millis)>]| {
            live.iter()
                .map(|&i| eccentricity(graph, i))
                .max()
                .unwrap_or(0)
        };
        // The best one root can do: the fastest-path tree from the graph's centre.
        let centre = live
            .iter()
            .copied()
            .min_by_key(|&i| eccentricity(&links, i));
        let mut best: Vec<Vec<(usize, Millis)>> = vec![Vec::new(); n];
        if let Some(centre) = centre {
            let (dist, parent) = shortest_paths(&links, centre);
            for &v in &live {
                if let Some(u) = parent[v] {
                    let w = dist[v] - dist[u];
                    best[u].push((v, w));
                    best[v].push((u, w));
                }
            }
        }
        Spread {
            graph_diameter_ms: diameter(&links),
            tree_diameter_ms: diameter(&tree),
            best_tree_diameter_ms: diameter(&best),
        }
    }

    /// Figures over the whole run so far.
    pub fn report(&self) -> Report {
        let mut r = Report {
            nodes: self.nodes.len(),
            messages: self.tracked.len(),
            frames_sent: self.frames_sent,
            bytes_sent: self.bytes_sent,
            ..Report::default()
        };
        for node in &self.nodes {
            if let Some(e) = node.engine() {
                let s = e.stats();
                r.deliveries += s.delivered;
                r.duplicates_suppressed += s.duplicates;
                r.bad_frames += s.bad_frames;
            }
        }
        if !self.latencies.is_empty() {
            r.mean_latency_ms =
                self.latencies.iter().sum::<Millis>() as f64 / self.latencies.len() as f64;
            r.max_latency_ms = *self.latencies.iter().max().expect("non-empty");
        }
        r
    }

    /// How far apart peers `a` and `b` are: the same whichever dials, and every time.
    fn pair_latency(&self, a: usize, b: usize) -> Millis {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let span = self.latency.1.max(self.latency.0) - self.latency.0;
        match self.geography {
            Geography::Pairs => {
                self.latency.0 + splitmix(self.latency_salt ^ (lo << 32 | hi)) % (span + 1)
            }
            Geography::Plane => {
                let ((ax, ay), (bx, by)) = (self.place(a), self.place(b));
                let far = ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt() / std::f64::consts::SQRT_2;
                self.latency.0 + (span as f64 * far).round() as Millis
            }
        }
    }

    /// Peer `i`'s point in the unit square ([`Geography::Plane`]).
    fn place(&self, i: usize) -> (f64, f64) {
        let unit = |salt: u64| {
            (splitmix(self.latency_salt ^ salt ^ i as u64) >> 11) as f64 / (1u64 << 53) as f64
        };
        (unit(0x7878_0000_0000_0000), unit(0x7979_0000_0000_0000))
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn reschedule(&mut self, i: usize) {
        let deadline = match &self.nodes[i].kind {
            NodeKind::Hearsay(e) if self.nodes[i].up => e.poll_timeout(),
            _ => None,
        };
        if deadline != self.scheduled[i] {
            self.scheduled[i] = deadline;
            if let Some(t) = deadline {
                self.deadlines.push(Reverse((t.max(self.now), i)));
                self.scheduled[i] = Some(t.max(self.now));
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Connect {
                from,
                conn,
                address,
            } => {
                let target = self
                    .by_address
                    .get(&address)
                    .copied()
                    .filter(|&to| self.nodes[to].up && !self.across_cut(from, to));
                let (Some(to), true) = (target, self.nodes[from].up) else {
                    match &mut self.nodes[from].kind {
                        NodeKind::Hearsay(e) => e.dial_failed(conn, "no such node", now),
                        NodeKind::Seed(s) => s.closed(conn),
                    }
                    self.flush(from);
                    return;
                };
                // The listener sees the dialer's address, and counts it under its group.
                let source = Group::of_address(&self.nodes[from].address);
                let host = source.map(|_| self.nodes[from].address.clone());
                let inbound = match &mut self.nodes[to].kind {
                    NodeKind::Hearsay(e) => e.accepted_from(host, source, false, now),
                    NodeKind::Seed(s) => s.accepted(),
                };
                let latency = self.pair_latency(from, to);
                self.links.insert(
                    (from, conn),
                    Link {
                        to,
                        to_conn: inbound,
                        latency,
                        last_arrival: 0,
                    },
                );
                self.links.insert(
                    (to, inbound),
                    Link {
                        to: from,
                        to_conn: conn,
                        latency,
                        last_arrival: 0,
                    },
                );
                self.on_open(to, inbound);
                match &mut self.nodes[from].kind {
                    NodeKind::Hearsay(e) => e.opened(conn, now),
                    NodeKind::Seed(_) => {}
                }
                self.on_open(from, conn);
                self.flush(to);
                self.flush(from);
            }
            Event::Arrive { to, conn, frame } => {
                if !self.links.contains_key(&(to, conn)) || !self.nodes[to].up {
                    return;
                }
                match &mut self.nodes[to].kind {
                    NodeKind::Hearsay(e) => e.frame(conn, &frame, now),
                    NodeKind::Seed(s) => {
                        s.frame(conn, &frame);
                        if !self.seed_outputs(to) {
                            return;
                        }
                    }
                }
                self.flush(to);
            }
            Event::Pong { to, conn } => {
                if let NodeKind::Hearsay(e) = &mut self.nodes[to].kind {
                    e.transport_pong(conn, now);
                }
                self.reschedule(to);
            }
            Event::Closed { to, conn, reason } => {
                self.links.remove(&(to, conn));
                if !self.nodes[to].up {
                    return;
                }
                match &mut self.nodes[to].kind {
                    NodeKind::Hearsay(e) => e.closed(conn, reason.as_deref(), now),
                    NodeKind::Seed(s) => s.sockets.retain(|&c| c != conn),
                }
                self.flush(to);
            }
            Event::Act { by } => self.act(by),
        }
    }

    /// Adversary `by` sends what its attack adds this period to every peer it is linked to.
    fn act(&mut self, by: usize) {
        let now = self.now;
        let node = &mut self.nodes[by];
        let (true, Some(adversary), NodeKind::Hearsay(engine)) =
            (node.up, node.adversary.as_mut(), &node.kind)
        else {
            return;
        };
        let newest = node
            .held
            .values()
            .max_by_key(|m| (m.timestamp, m.id))
            .map(|m| m.id);
        let frames = adversary.act(engine, &node.address, newest, now, &mut self.rng);
        let conns: Vec<ConnId> = engine.peers().iter().map(|p| p.conn).collect();
        for conn in conns {
            for frame in &frames {
                self.transmit(by, conn, frame.clone());
            }
        }
        self.schedule(now + adversary::PERIOD, Event::Act { by });
    }

    /// A seed says what it has dialed on every new connection, then records a dial that
    /// opened (see [`SeedNode`]); hearsay engines handle opens themselves.
    fn on_open(&mut self, i: usize, conn: ConnId) {
        if let NodeKind::Seed(s) = &mut self.nodes[i].kind {
            s.opened(conn);
            self.seed_outputs(i);
        }
    }

    /// Turns node `i`'s outputs into queued events.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let mut effects = Effects {
            actions: std::mem::take(&mut node.pending),
            delivered: Vec::new(),
            held: &node.held,
            evict_before: None,
        };
        if let NodeKind::Hearsay(e) = &mut node.kind {
            e.drain(&mut effects, now);
        }
        let Effects {
            actions,
            delivered,
            evict_before,
            ..
        } = effects;
        if let Some(before) = evict_before {
            node.held.retain(|_, m| crate::sync::key_of(m).0 >= before);
        }
        for (msg, hops) in delivered {
            self.delivered(i, msg, hops);
        }
        for action in actions {
            self.carry_out(i, action);
        }
        self.reschedule(i);
    }

    fn carry_out(&mut self, i: usize, action: Action) {
        match action {
            Action::Send(conn, frame) => {
                let frame = match &self.nodes[i].adversary {
                    Some(a) => match a.outgoing(frame, &self.roster, &mut self.rng) {
                        Some(f) => f,
                        None => return,
                    },
                    None => frame,
                };
                self.transmit(i, conn, frame);
            }
            Action::Ping(conn) => {
                if let Some(link) = self.links.get(&(i, conn)).copied() {
                    let at = self.now + 2 * link.latency;
                    self.schedule(at, Event::Pong { to: i, conn });
                }
            }
            Action::Dial(conn, address) => {
                // A dial to no one fails after as long as the farthest would take.
                let latency = match self.by_address.get(&address) {
                    Some(&to) => self.pair_latency(i, to),
                    None => self.latency.1,
                };
                let at = self.now + 2 * latency;
                self.schedule(
                    at,
                    Event::Connect {
                        from: i,
                        conn,
                        address,
                    },
                );
            }
            Action::Close(conn, reason) => {
                // The other end's half stays until the close reaches it: what was sent before
                // the close still arrives, as over TCP.
                if let Some(link) = self.links.remove(&(i, conn)) {
                    let at = (self.now + link.latency).max(link.last_arrival);
                    self.schedule(
                        at,
                        Event::Closed {
                            to: link.to,
                            conn: link.to_conn,
                            reason: Some(reason.to_string()),
                        },
                    );
                }
            }
        }
    }

    /// How many bytes of frames of type `kind` pages were sent so far.
    pub fn bytes_to_pages(&self, kind: &str) -> u64 {
        self.page_in_by_frame.get(kind).copied().unwrap_or(0)
    }

    /// How many frames of type `kind` (`BEACON`, `MAP`…) pages were sent so far.
    pub fn frames_to_pages(&self, kind: &str) -> u64 {
        self.page_frames_in_by_frame.get(kind).copied().unwrap_or(0)
    }

    /// Runs `window` ms with no message published, and says what each honest node sent per
    /// second meanwhile, and what each page was sent and sent, in all and by frame type.
    fn idle_window(&mut self, window: Millis) -> Idle {
        if window == 0 {
            return Idle::default();
        }
        let bytes_before = self.honest_bytes;
        let by_frame_before = self.honest_bytes_by_frame.clone();
        let (page_in, page_out) = (self.page_in, self.page_out);
        let page_by_frame_before = self.page_in_by_frame.clone();
        self.run_for(window);
        let up = |page: bool| {
            self.nodes
                .iter()
                .filter(|n| n.up && n.adversary.is_none() && n.page == page)
                .count()
                .max(1) as f64
        };
        let (nodes, pages) = (up(false), up(true));
        let per = |bytes: u64, of: f64| bytes as f64 / of / (window as f64 / 1000.0);
        Idle {
            per_node: per(self.honest_bytes - bytes_before, nodes),
            per_node_by_frame: since(&self.honest_bytes_by_frame, &by_frame_before, |b| {
                per(b, nodes)
            }),
            to_page: per(self.page_in - page_in, pages),
            to_page_by_frame: since(&self.page_in_by_frame, &page_by_frame_before, |b| {
                per(b, pages)
            }),
            from_page: per(self.page_out - page_out, pages),
        }
    }

    /// What honest nodes sent by frame type since `before` (see [`since`]).
    fn by_frame_since(
        &self,
        before: &BTreeMap<String, u64>,
        per: impl Fn(u64) -> f64,
    ) -> BTreeMap<String, f64> {
        since(&self.honest_bytes_by_frame, before, per)
    }

    /// Puts `frame` from node `i` on the wire of its link `conn`.
    fn transmit(&mut self, i: usize, conn: ConnId, frame: Arc<str>) {
        let Some(link) = self.links.get(&(i, conn)).copied() else {
            return;
        };
        self.frames_sent += 1;
        self.bytes_sent += frame.len() as u64;
        let bytes = frame.len() as u64;
        let kind = || {
            frame
                .strip_prefix(r#"{"type":""#)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("other")
        };
        if self.nodes[i].page {
            self.page_out += bytes;
        } else if self.nodes[i].is_honest_node() {
            self.honest_bytes += bytes;
            *count(&mut self.honest_bytes_by_frame, kind()) += bytes;
        }
        if self.nodes[link.to].page {
            self.page_in += bytes;
            *count(&mut self.page_in_by_frame, kind()) += bytes;
            *count(&mut self.page_frames_in_by_frame, kind()) += 1;
        }
        self.count_payload(&frame);
        // In order per direction, as TCP delivers.
        let jitter = self.rng.random_range(0..=link.latency / 10);
        let at = (self.now + link.latency + jitter).max(link.last_arrival);
        if let Some(l) = self.links.get_mut(&(i, conn)) {
            l.last_arrival = at;
        }
        self.schedule(
            at,
            Event::Arrive {
                to: link.to,
                conn: link.to_conn,
                frame,
            },
        );
    }

    /// Counts the frames that carry a tracked message's payload, for RMR.
    fn count_payload(&mut self, frame: &str) {
        if self.tracked.is_empty() {
            return;
        }
        if frame.starts_with(r#"{"type":"GOSSIP""#) {
            if let Ok(Frame::Broadcast(broadcast::Message::Gossip { msg, .. })) =
                Frame::decode(frame)
                && let Some(t) = self.tracked.get_mut(&msg.id)
            {
                t.payload_frames += 1;
            }
        } else if frame.starts_with(r#"{"type":"MESSAGES""#)
            && let Ok(Frame::Sync(sync::Message::Messages { messages, .. })) = Frame::decode(frame)
        {
            for m in messages {
                if let Some(t) = self.tracked.get_mut(&m.id) {
                    t.payload_frames += 1;
                }
            }
        }
    }

    fn delivered(&mut self, i: usize, msg: Message, hops: Option<u32>) {
        *self.nodes[i].delivered.entry(msg.id).or_default() += 1;
        if let Some(t) = self.tracked.get_mut(&msg.id) {
            self.deliveries.push((i, msg.id, self.now, hops));
            self.latencies.push(self.now - t.published_at);
            t.reached += 1;
            t.last_delivery = t.last_delivery.max(self.now);
            t.max_hops = t.max_hops.max(hops.unwrap_or(0));
        }
        self.nodes[i].held.insert(msg.id, msg);
    }
}

/// What was counted by frame type in `now` since `before` (an earlier copy), each scaled by
/// `per` and rounded to a tenth; types with none left out.
fn since(
    now: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
    per: impl Fn(u64) -> f64,
) -> BTreeMap<String, f64> {
    now.iter()
        .map(|(kind, bytes)| {
            let then = before.get(kind).copied().unwrap_or(0);
            (kind.clone(), (per(bytes - then) * 10.0).round() / 10.0)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect()
}

/// What a quiet window cost ([`Sim::idle_window`]), per second: what each honest node sent,
/// what each page was sent, and what each page sent.
#[derive(Debug, Default)]
struct Idle {
    per_node: f64,
    per_node_by_frame: BTreeMap<String, f64>,
    to_page: f64,
    to_page_by_frame: BTreeMap<String, f64>,
    from_page: f64,
}

/// The counter of `kind` in `by_kind`, added at 0 the first time (allocating only then).
fn count<'a>(by_kind: &'a mut BTreeMap<String, u64>, kind: &str) -> &'a mut u64 {
    if !by_kind.contains_key(kind) {
        by_kind.insert(kind.to_owned(), 0);
    }
    by_kind.get_mut(kind).expect("just inserted")
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Dijkstra from `from` over a graph of (neighbour, latency) lists: each node's distance
/// (`Millis::MAX` if unreached) and the node before it on its fastest path.
fn shortest_paths(
    graph: &[Vec<(usize, Millis)>],
    from: usize,
) -> (Vec<Millis>, Vec<Option<usize>>) {
    let mut dist = vec![Millis::MAX; graph.len()];
    let mut parent = vec![None; graph.len()];
    let mut queue = BinaryHeap::new();
    dist[from] = 0;
    queue.push(Reverse((0, from)));
    while let Some(Reverse((d, u))) = queue.pop() {
        if d > dist[u] {
            continue;
        }
        for &(v, w) in &graph[u] {
            if d + w < dist[v] {
                dist[v] = d + w;
                parent[v] = Some(u);
                queue.push(Reverse((dist[v], v)));
            }
        }
    }
    (dist, parent)
}

/// [`Sim::spread`]: the longest of the fastest paths between two running nodes, in link
/// latency (jitter aside), over three sets of links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// Over all active links: no broadcast reaches everyone sooner from the worst-placed
    /// sender (flooding comes close).
    pub graph_diameter_ms: Millis,
    /// Over the broadcast tree's eager links: what a message from the worst-placed sender
    /// takes on the tree it rides (under flooding, every link is eager).
    pub tree_diameter_ms: Millis,
    /// Over the fastest-path tree from the graph's centre: the best any one tree can do.
    pub best_tree_diameter_ms: Millis,
}

/// The simulator's side of the driver contract: collects what a peer asked for.
struct Effects<'a> {
    actions: Vec<Action>,
    delivered: Vec<(Message, Option<u32>)>,
    held: &'a HashMap<MsgId, Message>,
    evict_before: Option<Millis>,
}

impl Driver for Effects<'_> {
    fn send(&mut self, conn: ConnId, frame: Arc<str>) -> bool {
        self.actions.push(Action::Send(conn, frame));
        true
    }
    fn ping(&mut self, conn: ConnId) {
        self.actions.push(Action::Ping(conn));
    }
    fn dial(&mut self, conn: ConnId, address: String) {
        self.actions.push(Action::Dial(conn, address));
    }
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.actions.push(Action::Close(conn, reason));
    }
    fn deliver(&mut self, msg: Message, hops: Option<u32>, _from: Option<NodeId>) {
        self.delivered.push((msg, hops));
    }
    fn fetch(&mut self, _conn: ConnId, ids: Vec<MsgId>) -> Option<Vec<Message>> {
        Some(
            ids.iter()
                .filter_map(|id| self.held.get(id).cloned())
                .collect(),
        )
    }
    fn evict(&mut self, before: Millis, _count: usize) {
        self.evict_before = Some(before);
    }
}

/// A node config for simulations, with the broadcast strategy given. The map is on, as
/// nodes ship.
pub fn sim_config(strategy: Strategy) -> Config {
    let mut config = Config {
        kind: PeerKind::Node,
        ..Config::default()
    };
    config.broadcast.strategy = strategy;
    config
}

/// Who publishes in a [`Scenario`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Senders {
    /// Node 0 publishes everything.
    One,
    /// Each message from a node picked at random among the live ones.
    Random,
}

impl std::str::FromStr for Senders {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "one" => Ok(Senders::One),
            "random" => Ok(Senders::Random),
            other => Err(format!("unknown senders {other:?}: one or random")),
        }
    }
}

/// Hostile peers in a [`Scenario`]: `fraction` of its nodes do `attack` from the start, spread
/// over `groups` address groups of their own (see [`adversary`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adversaries {
    pub fraction: f64,
    pub attack: Attack,
    pub groups: usize,
}

/// A measured run: `nodes` linked first in `topology`, warm-up until membership settles,
/// `messages` published at `rate` per second network-wide, `churn` of the nodes killed when
/// half are out, then the run until every live node has every message (or a minute passes).
/// With `adversaries`, the last of the nodes are hostile, only honest nodes publish or are
/// killed, and the figures say what honest nodes saw.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub nodes: usize,
    pub messages: usize,
    pub latency: (Millis, Millis),
    pub seed: u64,
    pub rate: f64,
    pub senders: Senders,
    pub churn: f64,
    pub strategy: Strategy,
    pub topology: Topology,
    pub adversaries: Option<Adversaries>,
    /// A quiet window after the warm-up, before any message: what honest nodes send to say
    /// nothing, per node and second (0: none).
    pub idle: Millis,
    /// Pages opened after the warm-up, each served by an honest node drawn at random, for
    /// the quiet window: what a page is sent at rest. They close before the first message,
    /// so the message figures are the nodes' alone.
    pub pages: usize,
    /// Whether nodes swap slow neighbours for faster ones ([`crate::membership`]'s
    /// `fast_links`); off, as a baseline.
    pub fast_links: bool,
    pub geography: Geography,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            nodes: 100,
            messages: 50,
            latency: (10, 50),
            seed: 1,
            rate: 10.0,
            senders: Senders::Random,
            churn: 0.0,
            strategy: Strategy::Plumtree,
            topology: Topology::Random,
            adversaries: None,
            idle: 0,
            pages: 0,
            fast_links: true,
            geography: Geography::Pairs,
        }
    }
}

/// What [`Scenario::run`] measured. Field names are `hearsay sim --json`'s keys.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub nodes: usize,
    pub messages: usize,
    pub strategy: String,
    /// Whether nodes swapped slow neighbours for faster ones.
    pub fast_links: bool,
    pub geography: Geography,
    pub senders: Senders,
    pub churn: f64,
    pub seed: u64,
    pub latency: String,
    /// Deliveries / (live nodes × messages).
    pub delivered_ratio: f64,
    /// Per message: payload frames / (nodes reached − 1) − 1, averaged.
    pub rmr: f64,
    /// Per message: the hop count of the farthest delivery, averaged.
    pub ldh: f64,
    /// Time from publish to the last node, over messages.
    pub p50_ms: Millis,
    pub p99_ms: Millis,
    /// Every frame sent from the first publish until the last delivery, per delivery.
    pub frames_per_delivery: f64,
    pub bytes_per_delivery: f64,
    /// Filled in by the caller, which has a clock.
    pub wall_s: f64,
    /// Virtual seconds the warm-up took.
    pub warmup_s: f64,
    /// Virtual seconds from the start until every node's map knew 99% of the nodes (none:
    /// not within the warm-up's two minutes).
    pub mapped_s: Option<f64>,
    /// How far apart the nodes were when the first message was published.
    #[serde(flatten)]
    pub spread: Spread,
    /// The share of nodes that were adversaries, what they did, and over how many groups.
    pub adversaries: f64,
    pub attack: Option<Attack>,
    pub adversary_groups: usize,
    /// Deliveries at honest live nodes / (honest live nodes × messages).
    pub honest_delivered_ratio: f64,
    /// Time from publish to the last honest node, over messages.
    pub honest_p99_ms: Millis,
    /// At the end of the run, the share of honest nodes' active-view entries that are
    /// adversaries, and of their passive-view entries.
    pub adversary_active_share: f64,
    pub adversary_passive_share: f64,
    /// At the end of the run, the share of honest nodes whose tree's root is no honest node.
    pub adversary_root_share: f64,
    /// Bytes honest nodes sent from the first publish until the last delivery, per delivery
    /// at an honest node: what the adversaries cost honest peers.
    pub honest_bytes_per_delivery: f64,
    /// The same bytes by frame type (`GOSSIP`, `IHAVE`, `MAP`, `SYNC`…), per delivery at an
    /// honest node: where they go.
    pub honest_bytes_per_delivery_by_frame: BTreeMap<String, f64>,
    /// The quiet window after the warm-up ([`Scenario::idle`]), in virtual seconds.
    pub idle_s: f64,
    /// Frame bytes each honest node sent per second in it (as the frames' text: no
    /// WebSocket, TCP or TLS framing), and by frame type.
    pub idle_bytes_per_node_s: f64,
    pub idle_bytes_per_node_s_by_frame: BTreeMap<String, f64>,
    /// Pages open in the quiet window ([`Scenario::pages`]); what each was sent per second
    /// over it, in all and by frame type, and what each sent.
    pub pages: usize,
    pub idle_bytes_to_page_s: f64,
    pub idle_bytes_to_page_s_by_frame: BTreeMap<String, f64>,
    pub idle_bytes_from_page_s: f64,
}

impl Scenario {
    /// Every simulated node's configuration.
    fn config(&self) -> Config {
        let mut config = sim_config(self.strategy);
        config.membership.fast_links = self.fast_links;
        config
    }

    pub fn run(&self) -> Figures {
        let mut sim = Sim::new(self.seed);
        sim.latency = self.latency;
        sim.geography = self.geography;
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0x5eed_5eed);
        let hostile = self.adversaries.map_or(0, |a| {
            ((self.nodes as f64 * a.fraction).round() as usize).min(self.nodes - 1)
        });
        let honest = self.nodes - hostile;
        for _ in 0..honest {
            sim.add_hearsay(self.config());
        }
        if let Some(a) = self.adversaries {
            for k in 0..hostile {
                sim.add_adversary(self.config(), a.attack, k % a.groups.max(1));
            }
        }
        sim.wire(self.topology);
        if self
            .adversaries
            .is_some_and(|a| a.attack == Attack::Eclipse)
        {
            for k in honest..self.nodes {
                for _ in 0..adversary::ECLIPSE_DIALS {
                    let target = rng.random_range(0..honest);
                    sim.connect(k, target);
                }
            }
        }

        // Warm-up: until the links have stopped growing (their count changed by less than
        // 1% over ten seconds), every node knows the same root of the broadcast tree, the
        // tree has gone a full beacon round without a graft (rounds in between go down the
        // tree only, and graft nothing), and every node's map knows 99% of the nodes; at
        // most two minutes. (Shuffles go on reshaping views forever, so "no change" would
        // never come in a large network.)
        let span =
            (tree::FULL_ROUND_EVERY * Config::default().tree.beacon_interval / 1_000) as usize;
        let start = sim.now;
        let mut history: Vec<(usize, u64)> = Vec::new();
        let mut mapped_s = None;
        loop {
            sim.run_for(1_000);
            let engines = || sim.nodes.iter().filter_map(|n| n.engine());
            let links: usize = engines().map(|e| e.neighbors().len()).sum();
            let grafts: u64 = engines().map(|e| e.broadcast_stats().grafts).sum();
            history.push((links, grafts));
            let settled = history.len() > span && {
                let (then, grafts_then) = history[history.len() - 1 - span];
                let then = then as f64;
                (links as f64 - then).abs() <= then * 0.01 && grafts == grafts_then
            };
            let mapped = sim
                .nodes
                .iter()
                .filter_map(|n| n.engine())
                .all(|e| e.map_size() * 100 >= self.nodes * 99);
            if mapped && mapped_s.is_none() {
                mapped_s = Some((sim.now - start) as f64 / 1000.0);
            }
            if (settled && mapped && sim.one_root()) || sim.now >= start + 120_000 {
                break;
            }
        }
        let warmup_s = (sim.now - start) as f64 / 1000.0;
        let spread = sim.spread();

        // Pages open once the network has formed, as people open them, and are given until
        // each holds all its links and knows the root (at most a minute), and a full beacon
        // round more.
        let pages: Vec<usize> = (0..self.pages)
            .map(|_| sim.add_browser(rng.random_range(0..honest)))
            .collect();
        if !pages.is_empty() {
            let links = 1 + Config::default().membership.client_extra_links;
            let until = sim.now + 60_000;
            while sim.now < until
                && !pages.iter().all(|&i| {
                    sim.nodes[i]
                        .engine()
                        .is_some_and(|e| e.neighbors().len() >= links && e.root().is_some())
                })
            {
                sim.run_for(1_000);
            }
            sim.run_for(span as Millis * 1_000);
        }
        let idle = sim.idle_window(self.idle);
        for &i in &pages {
            sim.kill(i);
        }
        let frames_before = sim.frames_sent;
        let bytes_before = sim.bytes_sent;
        let honest_bytes_before = sim.honest_bytes;
        let by_frame_before = sim.honest_bytes_by_frame.clone();
        for node in &mut sim.nodes {
            if let Some(a) = &mut node.adversary {
                a.spam_from = Some(sim.now);
            }
        }
        let gap = (1000.0 / self.rate.max(0.001)) as Millis;
        let mut ids = Vec::new();
        let mut killed = false;
        for m in 0..self.messages {
            if !killed && self.churn > 0.0 && m >= self.messages / 2 {
                killed = true;
                let victims = ((self.nodes as f64) * self.churn).round() as usize;
                let mut candidates: Vec<usize> = (1..honest).collect();
                for k in 0..victims.min(candidates.len()) {
                    let j = rng.random_range(k..candidates.len());
                    candidates.swap(k, j);
                    sim.kill(candidates[k]);
                }
            }
            let live: Vec<usize> = (0..honest).filter(|&i| sim.nodes[i].up).collect();
            let at = match self.senders {
                Senders::One => 0,
                Senders::Random => live[rng.random_range(0..live.len())],
            };
            ids.push(sim.publish(at, &format!("message {m} from node {at}")));
            sim.run_for(gap);
        }
        // Until every live node has every message, or a minute.
        let deadline = sim.now + 60_000;
        // (Adversaries may never get what they withhold from others: not waited for.)
        let honest_live: Vec<usize> = (0..honest).filter(|&i| sim.nodes[i].up).collect();
        while sim.now < deadline {
            let done = honest_live
                .iter()
                .all(|&i| ids.iter().all(|id| sim.nodes[i].delivered.contains_key(id)));
            if done {
                break;
            }
            sim.run_for(100);
        }
        let frames = sim.frames_sent - frames_before;
        let bytes = sim.bytes_sent - bytes_before;
        let honest_bytes = sim.honest_bytes - honest_bytes_before;
        let on_honest = sim.honest_figures(&ids);

        let live: Vec<&SimNode> = sim.nodes.iter().filter(|n| n.up).collect();
        let deliveries: u64 = live
            .iter()
            .map(|n| ids.iter().filter(|id| n.delivered.contains_key(id)).count() as u64)
            .sum();
        let all_deliveries: u64 = ids
            .iter()
            .filter_map(|id| sim.tracked.get(id))
            .map(|t| t.reached)
            .sum();
        let mut rmr = 0.0;
        let mut ldh = 0.0;
        let mut to_all: Vec<Millis> = Vec::new();
        for id in &ids {
            let t = &sim.tracked[id];
            if t.reached > 1 {
                rmr += t.payload_frames as f64 / (t.reached - 1) as f64 - 1.0;
            }
            ldh += t.max_hops as f64;
            to_all.push(t.last_delivery.saturating_sub(t.published_at));
        }
        let n = ids.len().max(1) as f64;
        to_all.sort();
        let pct = |p: f64| -> Millis {
            if to_all.is_empty() {
                return 0;
            }
            let i = ((to_all.len() as f64 * p).ceil() as usize).clamp(1, to_all.len()) - 1;
            to_all[i]
        };
        Figures {
            nodes: self.nodes,
            messages: self.messages,
            strategy: self.strategy.to_string(),
            fast_links: self.fast_links,
            geography: self.geography,
            senders: self.senders,
            churn: self.churn,
            seed: self.seed,
            latency: format!("{}..{}", self.latency.0, self.latency.1),
            delivered_ratio: deliveries as f64 / (live.len() as f64 * ids.len().max(1) as f64),
            rmr: rmr / n,
            ldh: ldh / n,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            frames_per_delivery: frames as f64 / all_deliveries.max(1) as f64,
            bytes_per_delivery: bytes as f64 / all_deliveries.max(1) as f64,
            wall_s: 0.0,
            warmup_s,
            mapped_s,
            spread,
            adversaries: self.adversaries.map_or(0.0, |a| a.fraction),
            attack: self.adversaries.map(|a| a.attack),
            adversary_groups: self.adversaries.map_or(0, |a| a.groups),
            honest_delivered_ratio: on_honest.delivered_ratio,
            honest_p99_ms: on_honest.p99_ms,
            adversary_active_share: on_honest.active_share,
            adversary_passive_share: on_honest.passive_share,
            adversary_root_share: on_honest.root_share,
            honest_bytes_per_delivery: honest_bytes as f64 / on_honest.deliveries.max(1) as f64,
            honest_bytes_per_delivery_by_frame: sim.by_frame_since(&by_frame_before, |bytes| {
                bytes as f64 / on_honest.deliveries.max(1) as f64
            }),
            idle_s: self.idle as f64 / 1000.0,
            idle_bytes_per_node_s: idle.per_node,
            idle_bytes_per_node_s_by_frame: idle.per_node_by_frame,
            pages: self.pages,
            idle_bytes_to_page_s: idle.to_page,
            idle_bytes_to_page_s_by_frame: idle.to_page_by_frame,
            idle_bytes_from_page_s: idle.from_page,
        }
    }
}

/// What honest nodes saw of a run ([`Sim::honest_figures`]).
struct OnHonest {
    deliveries: u64,
    delivered_ratio: f64,
    p99_ms: Millis,
    active_share: f64,
    passive_share: f64,
    root_share: f64,
}

impl Sim {
    /// Delivery of `ids` at the honest live nodes, and how much of their views adversaries
    /// hold now.
    fn honest_figures(&self, ids: &[MsgId]) -> OnHonest {
        let honest: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].is_honest())
            .collect();
        let deliveries: u64 = honest
            .iter()
            .map(|&i| {
                ids.iter()
                    .filter(|id| self.nodes[i].delivered.contains_key(id))
                    .count() as u64
            })
            .sum();
        let mut last: HashMap<MsgId, Millis> = HashMap::new();
        for &(i, id, at, _) in &self.deliveries {
            if self.nodes[i].up && self.nodes[i].is_honest() {
                let l = last.entry(id).or_default();
                *l = (*l).max(at);
            }
        }
        let mut to_all: Vec<Millis> = ids
            .iter()
            .filter_map(|id| {
                Some(
                    last.get(id)?
                        .saturating_sub(self.tracked.get(id)?.published_at),
                )
            })
            .collect();
        to_all.sort();
        let p99_ms = match to_all.len() {
            0 => 0,
            n => to_all[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1],
        };
        let adversary_ids: HashSet<NodeId> = self.roster.iter().map(|r| r.id).collect();
        let (mut active, mut active_bad, mut passive, mut passive_bad) = (0, 0, 0, 0);
        for &i in &honest {
            let engine = self.nodes[i].engine().expect("honest nodes run an engine");
            for peer in engine.neighbors() {
                active += 1;
                active_bad += usize::from(adversary_ids.contains(&peer));
            }
            for record in engine.passive() {
                passive += 1;
                let hostile = self
                    .by_address
                    .get(&record.address)
                    .is_some_and(|&j| self.nodes[j].adversary.is_some());
                passive_bad += usize::from(hostile);
            }
        }
        let honest_ids: HashSet<NodeId> = honest
            .iter()
            .filter_map(|&i| self.nodes[i].engine().map(Engine::id))
            .collect();
        let rooted_elsewhere = honest
            .iter()
            .filter_map(|&i| self.nodes[i].engine())
            .filter(|e| e.root().is_some_and(|r| !honest_ids.contains(&r)))
            .count();
        let share = |bad: usize, all: usize| {
            if all == 0 {
                0.0
            } else {
                bad as f64 / all as f64
            }
        };
        OnHonest {
            deliveries,
            delivered_ratio: deliveries as f64 / (honest.len().max(1) * ids.len().max(1)) as f64,
            p99_ms,
            active_share: share(active_bad, active),
            passive_share: share(passive_bad, passive),
            root_share: share(rooted_elsewhere, honest.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_parse_by_name() {
        for t in Topology::ALL {
            assert_eq!(t.name().parse::<Topology>(), Ok(t));
        }
        assert!("mesh".parse::<Topology>().is_err());
    }
}
