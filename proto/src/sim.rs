//! A deterministic discrete-event simulation of a hearsay network on a virtual clock.
//!
//! Each simulated node is either a hearsay [`Engine`] or a [`SeedNode`] that behaves like the
//! Node.js seed (v1). Links carry frames in order with random delays, as a WebSocket over TCP
//! does; dials succeed if the address belongs to a running node. Every random choice comes from
//! one seed, so a run replays exactly, and the tests assert delivery properties over many seeds
//! and topologies in milliseconds of real time.
//!
//! Flow: [`Sim::run_until`] pops the earliest of (queued network event, engine timer), feeds it
//! to the node, and turns the node's outputs into new queued events.

use crate::engine::{Config, ConnId, Engine, Output};
use crate::id::{MsgId, NodeId};
use crate::wire::{Frame, Message};
use crate::{Millis, PeerKind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The virtual clock starts here, so timestamps look like real ones (2026-01-01).
pub const EPOCH: Millis = 1_767_225_600_000;

/// How nodes are wired by their pinned (`--peer`) addresses.
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
                for _ in 0..n / 2 {
                    let a = rng.random_range(0..n);
                    let b = rng.random_range(0..n);
                    if a != b && !edges.contains(&(a, b)) && !edges.contains(&(b, a)) {
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

/// A model of the seed (v1) node: it sends `SOCKETS` with the addresses it has dialed on
/// every new connection, dials every address it hears of that it has not dialed, stores every
/// `MESSAGE` and never forwards, and ignores frame types it does not know.
#[derive(Debug, Default)]
pub struct SeedNode {
    pub dialed: Vec<String>,
    pub sockets: Vec<ConnId>,
    /// Everything it stored, in order, its own commits included.
    pub messages: Vec<String>,
    next_conn: u64,
}

impl SeedNode {
    fn alloc(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
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
    /// For each message id, how many times this node delivered it (should be exactly 1).
    pub delivered: HashMap<MsgId, u32>,
    /// What this node holds, to answer `WANT`s with (its store).
    pub held: HashMap<MsgId, Message>,
    /// Outputs of seeds that still need turning into events.
    pending: Vec<Output>,
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
    Closed {
        to: usize,
        conn: ConnId,
    },
}

/// Aggregate figures from a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub nodes: usize,
    pub messages: usize,
    /// Deliveries at hearsay nodes (each node × each message, when all is well).
    pub deliveries: u64,
    /// Message copies that arrived and were dropped as already seen.
    pub duplicates_suppressed: u64,
    pub frames_sent: u64,
    pub bad_frames: u64,
    /// Mean and worst time from publish to delivery, over every (node, message).
    pub mean_latency_ms: f64,
    pub max_latency_ms: Millis,
}

pub struct Sim {
    pub now: Millis,
    rng: SmallRng,
    pub nodes: Vec<SimNode>,
    queue: BTreeMap<(Millis, u64), Event>,
    seq: u64,
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    last_arrival: HashMap<(usize, ConnId), Millis>,
    /// Link delay range in milliseconds.
    pub delay: (Millis, Millis),
    frames_sent: u64,
    published_at: HashMap<MsgId, Millis>,
    latencies: Vec<Millis>,
    /// While set, the network is cut between these nodes and the rest.
    cut: Option<std::collections::HashSet<usize>>,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            now: EPOCH,
            rng: SmallRng::seed_from_u64(seed),
            nodes: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            links: HashMap::new(),
            last_arrival: HashMap::new(),
            delay: (1, 50),
            frames_sent: 0,
            published_at: HashMap::new(),
            latencies: Vec::new(),
            cut: None,
        }
    }

    /// The address node `i` listens on.
    pub fn address(i: usize) -> String {
        format!("ws://node{i}:3000")
    }

    /// Node `i`'s seed-compatible port (hearsay nodes only), which seed users dial.
    pub fn v1_address(i: usize) -> String {
        format!("ws://node{i}:3001")
    }

    /// Makes seed node `seed` dial hearsay node `node` at its seed-compatible port.
    pub fn seed_add(&mut self, seed: usize, node: usize) {
        let address = Self::v1_address(node);
        self.seed_dial(seed, address);
    }

    /// A seed's `/add`: it records the address as dialed and dials it.
    fn seed_dial(&mut self, seed: usize, address: String) {
        if let NodeKind::Seed(s) = &mut self.nodes[seed].kind {
            s.dialed.push(address.clone());
            let conn = s.alloc();
            self.nodes[seed]
                .pending
                .push(Output::Dial { conn, address });
        }
        self.flush(seed);
    }

    /// An engine with a fresh random id and seed, drawn from the simulation's one seed.
    fn new_engine(&mut self, config: Config) -> Engine {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        let seed = self.rng.random();
        Engine::new(config, NodeId::from_bytes(id), seed, self.now)
    }

    /// Adds a hearsay node; `config.listen_addresses` is filled in.
    pub fn add_hearsay(&mut self, mut config: Config) -> usize {
        let i = self.nodes.len();
        config.listen_addresses = vec![Self::address(i), Self::v1_address(i)];
        let engine = self.new_engine(config);
        self.nodes.push(SimNode {
            address: Self::address(i),
            kind: NodeKind::Hearsay(Box::new(engine)),
            up: true,
            delivered: HashMap::new(),
            held: HashMap::new(),
            pending: Vec::new(),
        });
        i
    }

    /// Adds a browser peer whose page was served by node `home` (already added): it cannot be
    /// dialed, names `home` in its handshake, and keeps `home` pinned.
    pub fn add_browser(&mut self, home: usize) -> usize {
        let i = self.nodes.len();
        let home_id = self.nodes[home]
            .engine()
            .expect("home is a hearsay node")
            .id();
        let config = Config {
            kind: PeerKind::Browser,
            home: Some(home_id),
            target_connections: 3,
            transport_ping: false,
            ..Config::default()
        };
        let engine = self.new_engine(config);
        self.nodes.push(SimNode {
            address: format!("browser{i}"),
            kind: NodeKind::Hearsay(Box::new(engine)),
            up: true,
            delivered: HashMap::new(),
            held: HashMap::new(),
            pending: Vec::new(),
        });
        self.connect(i, home);
        i
    }

    /// Adds a seed (v1) node.
    pub fn add_seed(&mut self) -> usize {
        let i = self.nodes.len();
        self.nodes.push(SimNode {
            address: Self::address(i),
            kind: NodeKind::Seed(SeedNode::default()),
            up: true,
            delivered: HashMap::new(),
            held: HashMap::new(),
            pending: Vec::new(),
        });
        i
    }

    /// Makes node `from` dial node `to` as `--peer` (or the seed's `/add`) would.
    pub fn connect(&mut self, from: usize, to: usize) {
        let address = Self::address(to);
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

    /// Publishes `text` at node `i`; returns the id every hearsay node should deliver.
    pub fn publish(&mut self, i: usize, text: &str) -> MsgId {
        let now = self.now;
        let id = match &mut self.nodes[i].kind {
            NodeKind::Hearsay(e) => e.publish(text, now).expect("valid text").id,
            NodeKind::Seed(s) => {
                s.messages.push(text.to_owned());
                let frame: Arc<str> = Frame::Message {
                    data: text.to_owned(),
                }
                .encode()
                .into();
                let sends: Vec<Output> = s
                    .sockets
                    .iter()
                    .map(|&conn| Output::Send {
                        conn,
                        frame: frame.clone(),
                    })
                    .collect();
                self.nodes[i].pending.extend(sends);
                MsgId::v1(text)
            }
        };
        self.published_at.insert(id, now);
        self.flush(i);
        id
    }

    /// Cuts the network between `side` and every other node: links across are lost and dials
    /// across fail until [`Sim::heal`].
    pub fn partition(&mut self, side: &[usize]) {
        let side: std::collections::HashSet<usize> = side.iter().copied().collect();
        let crossing: Vec<(usize, ConnId)> = self
            .links
            .iter()
            .filter(|((a, _), (b, _))| side.contains(a) != side.contains(b))
            .map(|(&k, _)| k)
            .collect();
        for key in crossing {
            if let Some((peer, peer_conn)) = self.links.remove(&key) {
                let at = self.now + self.random_delay();
                self.schedule(
                    at,
                    Event::Closed {
                        to: key.0,
                        conn: key.1,
                    },
                );
                self.links.remove(&(peer, peer_conn));
                self.schedule(
                    at,
                    Event::Closed {
                        to: peer,
                        conn: peer_conn,
                    },
                );
            }
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

    /// Stops node `i` abruptly: its peers see their links close.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].up = false;
        let mine: Vec<(usize, ConnId)> = self
            .links
            .keys()
            .filter(|(n, _)| *n == i)
            .copied()
            .collect();
        for key in mine {
            if let Some((peer, peer_conn)) = self.links.remove(&key) {
                self.links.remove(&(peer, peer_conn));
                let at = self.now + self.random_delay();
                self.schedule(
                    at,
                    Event::Closed {
                        to: peer,
                        conn: peer_conn,
                    },
                );
            }
        }
    }

    /// Starts node `i` again with a fresh engine (new id) over its old store, dialing `peers`,
    /// as a restarted process with the same `--peer` flags and `--data` would.
    pub fn restart(&mut self, i: usize, config: Config, peers: &[usize]) {
        let mut config = config;
        config.listen_addresses = vec![Self::address(i), Self::v1_address(i)];
        // A restarted node keeps its store (as a node with --data does) but nothing else.
        let mut engine = self.new_engine(config);
        for msg in self.nodes[i].held.values() {
            engine.note_held(crate::sync::key_of(msg));
        }
        self.nodes[i].kind = NodeKind::Hearsay(Box::new(engine));
        self.nodes[i].up = true;
        for &p in peers {
            self.connect(i, p);
        }
    }

    /// Advances the virtual clock to `until`, processing everything due on the way.
    pub fn run_until(&mut self, until: Millis) {
        loop {
            let next_event = self.queue.keys().next().map(|&(t, _)| t);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.engine().map(Engine::poll_timeout))
                .min();
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
                let now = self.now;
                for i in 0..self.nodes.len() {
                    if !self.nodes[i].up {
                        continue;
                    }
                    if let NodeKind::Hearsay(e) = &mut self.nodes[i].kind
                        && e.poll_timeout() <= now
                    {
                        e.handle_timeout(now);
                        self.flush(i);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `ms` more virtual milliseconds.
    pub fn run_for(&mut self, ms: Millis) {
        let until = self.now + ms;
        self.run_until(until);
    }

    /// Checks that every running hearsay node delivered each of `ids` exactly once and nothing
    /// else more than once.
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

    /// Figures over the whole run so far.
    pub fn report(&self) -> Report {
        let mut r = Report {
            nodes: self.nodes.len(),
            messages: self.published_at.len(),
            frames_sent: self.frames_sent,
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

    fn random_delay(&mut self) -> Millis {
        self.rng.random_range(self.delay.0..=self.delay.1)
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn handle(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Connect {
                from,
                conn,
                address,
            } => {
                let target = self.nodes.iter().enumerate().position(|(j, n)| {
                    n.up && (n.address == address
                        || (n.engine().is_some() && Self::v1_address(j) == address))
                });
                let target = target.filter(|&to| !self.across_cut(from, to));
                let (Some(to), true) = (target, self.nodes[from].up) else {
                    if let NodeKind::Hearsay(e) = &mut self.nodes[from].kind {
                        e.dial_failed(conn, "no such node", now);
                    }
                    self.flush(from);
                    return;
                };
                let inbound = match &mut self.nodes[to].kind {
                    NodeKind::Hearsay(e) => e.accepted(now),
                    NodeKind::Seed(s) => s.alloc(),
                };
                self.links.insert((from, conn), (to, inbound));
                self.links.insert((to, inbound), (from, conn));
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
                let node = &mut self.nodes[to];
                match &mut node.kind {
                    NodeKind::Hearsay(e) => e.frame(conn, &frame, now),
                    NodeKind::Seed(s) => seed_frame(s, conn, &frame, &mut node.pending),
                }
                self.flush(to);
            }
            Event::Pong { to, conn } => {
                if let NodeKind::Hearsay(e) = &mut self.nodes[to].kind {
                    e.transport_pong(conn, now);
                }
            }
            Event::Closed { to, conn } => {
                self.links.remove(&(to, conn));
                match &mut self.nodes[to].kind {
                    NodeKind::Hearsay(e) => e.closed(conn, None, now),
                    NodeKind::Seed(s) => s.sockets.retain(|&c| c != conn),
                }
                self.flush(to);
            }
        }
    }

    /// A seed sends `SOCKETS` on every new connection; hearsay engines handle it themselves.
    fn on_open(&mut self, i: usize, conn: ConnId) {
        if let NodeKind::Seed(s) = &mut self.nodes[i].kind {
            s.sockets.push(conn);
            let frame = Frame::Sockets {
                addresses: s.dialed.clone(),
            }
            .encode()
            .into();
            self.nodes[i].pending.push(Output::Send { conn, frame });
        }
    }

    /// Turns node `i`'s outputs into queued events.
    fn flush(&mut self, i: usize) {
        loop {
            let mut outputs = std::mem::take(&mut self.nodes[i].pending);
            if let NodeKind::Hearsay(e) = &mut self.nodes[i].kind {
                while let Some(o) = e.poll_output() {
                    outputs.push(o);
                }
            }
            if outputs.is_empty() {
                return;
            }
            self.carry_out(i, outputs);
        }
    }

    fn carry_out(&mut self, i: usize, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { conn, frame } => {
                    let Some(&(to, to_conn)) = self.links.get(&(i, conn)) else {
                        continue;
                    };
                    self.frames_sent += 1;
                    // In order per direction, as TCP delivers.
                    let at = (self.now + self.random_delay())
                        .max(*self.last_arrival.get(&(i, conn)).unwrap_or(&0));
                    self.last_arrival.insert((i, conn), at);
                    self.schedule(
                        at,
                        Event::Arrive {
                            to,
                            conn: to_conn,
                            frame,
                        },
                    );
                }
                Output::Ping { conn } => {
                    if self.links.contains_key(&(i, conn)) {
                        let at = self.now + 2 * self.random_delay();
                        self.schedule(at, Event::Pong { to: i, conn });
                    }
                }
                Output::Dial { conn, address } => {
                    let at = self.now + self.random_delay();
                    self.schedule(
                        at,
                        Event::Connect {
                            from: i,
                            conn,
                            address,
                        },
                    );
                }
                Output::Close { conn, .. } => {
                    if let Some((to, to_conn)) = self.links.remove(&(i, conn)) {
                        let at = (self.now + self.random_delay())
                            .max(*self.last_arrival.get(&(i, conn)).unwrap_or(&0));
                        self.schedule(at, Event::Closed { to, conn: to_conn });
                    }
                }
                Output::Deliver(msg) => self.delivered(i, msg),
                Output::Acked { .. } | Output::Traced(_) => {}
                Output::Fetch { conn, ids } => {
                    let node = &mut self.nodes[i];
                    let found: Vec<Message> = ids
                        .iter()
                        .filter_map(|id| node.held.get(id).cloned())
                        .collect();
                    if let NodeKind::Hearsay(e) = &mut node.kind {
                        e.provide(conn, found);
                    }
                }
            }
        }
    }

    fn delivered(&mut self, i: usize, msg: Message) {
        *self.nodes[i].delivered.entry(msg.id).or_default() += 1;
        if let Some(&at) = self.published_at.get(&msg.id) {
            self.latencies.push(self.now - at);
        }
        self.nodes[i].held.insert(msg.id, msg);
    }
}

fn seed_frame(s: &mut SeedNode, _conn: ConnId, text: &str, pending: &mut Vec<Output>) {
    // The seed would crash on a frame that is not JSON; hearsay must never send one.
    let value: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("seed got non-JSON {text:?}: {e}"));
    match value.get("type").and_then(|t| t.as_str()) {
        Some("MESSAGE") => {
            if let Some(data) = value.get("data").and_then(|d| d.as_str()) {
                s.messages.push(data.to_owned());
            }
        }
        Some("SOCKETS") => {
            let addresses = value
                .get("addresses")
                .and_then(|a| a.as_array())
                .cloned()
                .unwrap_or_default();
            for a in addresses.iter().filter_map(|a| a.as_str()) {
                if !s.dialed.iter().any(|d| d == a) {
                    s.dialed.push(a.to_owned());
                    let conn = s.alloc();
                    pending.push(Output::Dial {
                        conn,
                        address: a.to_owned(),
                    });
                }
            }
        }
        _ => {}
    }
}

/// A node config for simulations: static wiring (no discovered dials) or discovery on.
///
/// The network map is off: flooding every peer's record is the costliest traffic of all, and
/// most simulations are about messages. `topology_config` turns it on.
pub fn sim_config(discover: bool) -> Config {
    Config {
        kind: PeerKind::Node,
        dial_discovered: discover,
        share_topology: false,
        ..Config::default()
    }
}

/// A node config for simulations of the network map.
pub fn topology_config() -> Config {
    Config {
        share_topology: true,
        ..sim_config(false)
    }
}
