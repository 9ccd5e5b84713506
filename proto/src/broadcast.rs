//! Broadcast: how a message reaches every peer, over the neighbours membership gives us.
//!
//! **Plumtree** (the default, [`Strategy::Plumtree`]). Each neighbour is either *eager* (new
//! messages are pushed to it whole, `GOSSIP`) or *lazy* (it is only told their ids, `IHAVE`,
//! batched every [`Config::ihave_interval`]). The eager links form a spanning tree, along
//! which each message costs one frame per peer. Lazy links are the safety net: a peer told
//! of a message it does not get within [`Config::graft_timeout`] asks the announcer for it
//! (`GRAFT`), which also makes that link eager, so the tree repairs itself where it broke.
//! Reconciliation (`sync`) stays as the last resort for anything both miss.
//!
//! *How the tree is shaped.* In Plumtree as published, every duplicate prunes the link it
//! came by. With many senders at once that tears the tree: two messages crossing one cycle
//! in opposite directions prune two of its links, a part of the network is cut off, its edge
//! grafts from several places at once, and the new cycles are torn again (measured here: at
//! 100 nodes and 10 messages a second from random senders, RMR 0.47 and a p99 of 3 s). So
//! here only one source prunes: a *root* floods a `BEACON` over every link every
//! [`Config::beacon_interval`]. A peer makes the link its beacon came by first its parent
//! (grafting it if it was lazy) and prunes every link a copy of the same beacon comes by
//! later; a link to a child never brings one, as children do not send their beacon back. So
//! the eager links are exactly the root's fastest-path tree, rebuilt every interval, around
//! failed peers as well; messages themselves never prune, and a link grafted between two
//! beacons is trimmed at the next. The root is elected as the node with the lowest id: every
//! node starts as its own root and yields to any lower one it hears of; if the root's beacons
//! stop, the others take over after [`Config::root_timeout`], lowest ids first. The root then
//! walks towards the graph's centre, where its tree is shortest ([`crate::centre`]: each node
//! reports how deep the tree is below it, `DEPTH`, and the root tries its deepest child,
//! `HANDOVER`, which hands the root back if its tree reaches no sooner).
//!
//! *The first hops flood.* A message fewer than [`Config::eager_radius`] hops from its origin
//! is pushed over every link to a node, lazy ones too, and only then rides the tree. It enters
//! the tree at a few dozen places around its sender instead of one, so a sender far from the
//! root does not wait for its message to climb there first. Measured at 1,000 nodes with
//! random senders: p99 to the last node 296–325 ms without, 278–295 ms with, for 0.045 more
//! RMR. The root's own messages skip this: its tree is already their fastest.
//!
//! *Who is root.* A root's tree is the fastest for the root's own messages and a detour for
//! everyone else's. So a node that published nearly all of the last messages it saw (a feed, a
//! single source; [`Config::publisher_share`] of [`Config::publisher_window`]) claims the root
//! in a new *term*: beacons carry `(term, root, round)`, a later term wins over any id, and
//! within a term the lowest id does. A silent root is also replaced in a new term. With many
//! publishers nobody claims, and the tree stays where it is. While a new root's first beacon
//! spreads, messages sent before it are still on the old tree, so in that round the links it
//! leaves are pruned only after [`Config::switch_overlap`] (both trees push meanwhile: at
//! 1,000 nodes the switch costs no message a detour, where pruning at once sent two of them
//! through `GRAFT`, 1.4 s late).
//!
//! Pages are leaves: they
//! choose a parent among their links the same way but never forward a beacon, and they push
//! what they publish to their parent only, so it enters the tree at one place.
//!
//! **Flooding** ([`Strategy::Flood`]) pushes every new message to every neighbour but the
//! sender. It is kept for tiny networks and as the simulator's baseline. It elects a root the
//! same way (beacons flooded, shaping nothing), because the root is also how a cut in the
//! overlay is found.
//!
//! *Cuts.* Beacons carry the root's address. The node that takes over from a silent root
//! asks membership to join through the old one ([`Out::RootLost`]): if it still runs, it is
//! on the other side of a cut, and the walks of that join merge the two parts (one dial per
//! part, since the first to take over is heard by the rest before their own patience ends).
//!
//! The engine decides what is new (its index of held messages is the authority) and calls
//! [`Broadcast::received_new`]; this module decides who gets what and emits [`Out`]s.

use crate::Millis;
use crate::centre::{Heights, Round};
use crate::dedup::Recent;
use crate::id::MsgId;
use crate::id::NodeId;
use crate::message::Message;
use crate::timers::Timers;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Plumtree,
    Flood,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plumtree" => Ok(Self::Plumtree),
            "flood" => Ok(Self::Flood),
            other => Err(format!("unknown strategy {other:?}: plumtree or flood")),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plumtree => "plumtree",
            Self::Flood => "flood",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub strategy: Strategy,
    /// How long ids wait to be announced to lazy neighbours, so that one `IHAVE` carries
    /// many (gossipsub announces once per heartbeat, iroh-gossip batches for 5 ms; longer
    /// batches cost fewer frames and only slow the repair of a broken tree).
    pub ihave_interval: Millis,
    /// How long after the first announcement of a missing message to ask for it (plus up
    /// to as long again, at random), and then how long to wait before asking the next
    /// announcer.
    pub graft_timeout: Millis,
    pub graft_retry: Millis,
    /// How often the root sends a beacon, which rebuilds the tree.
    pub beacon_interval: Millis,
    /// How long without a beacon before the root is taken for gone.
    pub root_timeout: Millis,
    /// How much later than the first copy of a beacon the current parent's copy may come
    /// and still keep it the parent. Without this, paths of nearly equal length swap at
    /// every round, and each swap is a moment a message can slip through the gap.
    pub parent_stickiness: Millis,
    /// How long the old parent's link stays eager after a switch (both push meanwhile).
    pub switch_overlap: Millis,
    /// A node that published at least this share of the last [`Config::publisher_window`]
    /// messages claims the root, so the tree becomes its fastest-path tree.
    pub publisher_share: f64,
    pub publisher_window: usize,
    /// How long pushed messages are kept to answer `GRAFT`s.
    pub cache_ttl: Millis,
    /// Most ids in one `IHAVE` or `GRAFT`.
    pub max_ids_per_frame: usize,
    /// The root hands over to a child when that shortens the tree's reach by more than this
    /// (see [`crate::centre`]); 0 keeps the root where it is elected.
    pub handover_margin: Millis,
    /// The root walks only in a network this large: a smaller one's tree is shallow, a walk
    /// gains it a few milliseconds, and every step reshapes the tree (measured: map records
    /// that travel along it came late, and seeds were told to dial a node twice).
    pub walk_min_peers: usize,
    /// A message fewer than this many hops from its origin is pushed over every link to a
    /// node, lazy ones too (see the module docs: the first hops flood, the tree does the rest),
    /// as long as the nodes that reach (about d^hops, d links each) stay within
    /// `eager_share` of the network: a small network's tree is shallow, and its every node
    /// would get a message several times.
    pub eager_radius: u32,
    pub eager_share: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            strategy: Strategy::Plumtree,
            ihave_interval: 250,
            graft_timeout: 500,
            graft_retry: 250,
            beacon_interval: 5_000,
            root_timeout: 15_000,
            parent_stickiness: 30,
            switch_overlap: 250,
            publisher_share: 0.8,
            publisher_window: 10,
            cache_ttl: 30_000,
            max_ids_per_frame: 256,
            eager_radius: 2,
            eager_share: 0.05,
            handover_margin: 3,
            walk_min_peers: 100,
        }
    }
}

/// Control frames of the broadcast layer (message pushes are [`Out::Push`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Ids with the hop count at which the sender received each.
    IHave(Vec<(MsgId, u32)>),
    /// Send me these (and push to me eagerly from now on).
    Graft(Vec<MsgId>),
    /// Stop pushing to me; announce instead.
    Prune,
    /// The tree's root is `root`, elected in `term`, in its round `seq`; it is dialed at
    /// `address` (so that a part of the network that stops hearing it can look for it).
    Beacon {
        root: NodeId,
        term: u64,
        seq: u64,
        address: Option<Arc<str>>,
    },
    /// To the parent, in round `seq` of `root`'s `term`: the tree reaches `below` ms below
    /// the sender, which held the round's beacon `held` ms before saying so.
    Depth {
        root: NodeId,
        term: u64,
        seq: u64,
        held: Millis,
        below: Millis,
    },
    /// From the root of `term` to a child: take the root (a new term). The sender's tree
    /// reached `reach` ms; `back`: the sender had the root from the receiver and did no
    /// better, so the receiver takes it back and does not hand it there again.
    Handover {
        term: u64,
        reach: Millis,
        back: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Push `msg` whole to these neighbours; they receive it `hops` hops from its origin.
    Push {
        to: Vec<NodeId>,
        msg: Arc<Message>,
        hops: u32,
    },
    Send(NodeId, Control),
    /// The root fell silent and this node takes over: the network may be cut in two, and
    /// the old root, if it still runs, is on the other side. Link to it (one dial, from the
    /// one node that takes over) so that the parts join again.
    RootLost {
        root: NodeId,
        address: Arc<str>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    Graft(MsgId),
    FlushIHave,
    Beacon,
    /// The parent's copy of this round did not come in time: take the first one's link.
    Switch(Round),
    /// The old parent's link, kept while the new parent learns of its child. Only in the
    /// round it was set in: by the next, that link may have become a child's.
    LetGo(NodeId, Round),
    /// Time to tell the parent how deep the tree is below (again, if it changed).
    Report(Round),
}

/// The root as this peer knows it: who, in which term, its latest round, and when that was
/// heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Root {
    id: NodeId,
    term: u64,
    seq: u64,
    heard: Millis,
}

impl Root {
    /// Whether a beacon (`id`, `term`, `seq`) is news: a later term, a lower id in the same
    /// term, or a later round of this root.
    fn superseded_by(&self, id: NodeId, term: u64, seq: u64) -> bool {
        (term, std::cmp::Reverse(id), seq) > (self.term, std::cmp::Reverse(self.id), self.seq)
    }

    fn round(&self) -> Round {
        (self.id, self.term, self.seq)
    }
}

#[derive(Debug, Default)]
struct Missing {
    /// Who announced it, in order, with their hop counts.
    announcers: VecDeque<(NodeId, u32)>,
}

/// Counters for metrics and the simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BroadcastStats {
    /// Messages pushed whole (each peer a push went to counts).
    pub pushed: u64,
    pub ihave_frames: u64,
    pub grafts: u64,
    pub prunes: u64,
    pub beacons: u64,
    pub depth_reports: u64,
    pub handovers: u64,
}

pub struct Broadcast {
    config: Config,
    me: NodeId,
    /// Nodes relay beacons and may be the root; pages are leaves.
    relay: bool,
    rng: SmallRng,
    eager: BTreeSet<NodeId>,
    lazy: BTreeSet<NodeId>,
    /// Neighbours that are pages held here: leaves, never a way to the rest of the tree.
    clients: BTreeSet<NodeId>,
    /// Neighbours whose send queue is backed up (the driver says so): they are told of
    /// messages (`IHAVE`) instead of being pushed them, whatever their link, and take what
    /// they want at their own pace (`GRAFT`, reconciliation).
    slow: BTreeSet<NodeId>,
    root: Option<Root>,
    /// How the root is dialed, as its beacons say; ours if we are root.
    root_address: Option<Arc<str>>,
    /// How this node is dialed (none for a page, or a node that cannot be dialed).
    address: Option<Arc<str>>,
    own_seq: u64,
    /// Whether the current round is the first of its root (a new tree forming).
    fresh_root: bool,
    /// Whether each of the last messages seen was published here.
    recent_publishers: VecDeque<bool>,
    parent: Option<NodeId>,
    /// The link the first copy of the current round came by, while we wait to see whether
    /// the parent's copy comes soon enough.
    challenger: Option<NodeId>,
    /// The parent before the last switch: pruned only once the new parent has had time to
    /// hear our graft, so no message slips through while the tree changes.
    former_parent: Option<NodeId>,
    /// When each copy of the current round came, and from whom.
    copies: Vec<(NodeId, Millis)>,
    /// What the tree below reports, for the walk to the centre.
    heights: Heights,
    /// The reach last reported to the parent this round, and whether a report is due.
    reported: Option<Millis>,
    report_due: bool,
    /// Rounds sent as root in the current term.
    term_rounds: u64,
    /// How many peers the network has, as far as this one knows (its map's size).
    network_size: usize,
    /// The root this node took the root from, and how far its tree reached: handed back
    /// if this node's tree reaches no sooner.
    predecessor: Option<(NodeId, Millis)>,
    /// Children that handed the root back: not tried again.
    declined: BTreeSet<NodeId>,
    cache: Recent<MsgId, (Arc<Message>, u32)>,
    missing: BTreeMap<MsgId, Missing>,
    lazy_queue: BTreeMap<NodeId, Vec<(MsgId, u32)>>,
    flush_scheduled: bool,
    timers: Timers<Timer>,
    stats: BroadcastStats,
    out: VecDeque<Out>,
}

impl Broadcast {
    /// Broadcast for peer `me`; `relay` for a node, not for a page.
    pub fn new(config: Config, me: NodeId, relay: bool, seed: u64, now: Millis) -> Self {
        let mut timers = Timers::default();
        if relay {
            // Lower ids beacon first, so the lowest is usually heard before anyone else
            // starts: the network does not flood with candidates' beacons.
            let first = config.beacon_interval / 2 + me.spread(config.beacon_interval);
            timers.insert(now + first, Timer::Beacon);
        }
        Self {
            me,
            relay,
            rng: SmallRng::seed_from_u64(seed),
            cache: Recent::new(50_000, config.cache_ttl),
            config,
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            clients: BTreeSet::new(),
            slow: BTreeSet::new(),
            root: None,
            root_address: None,
            address: None,
            own_seq: 0,
            fresh_root: false,
            recent_publishers: VecDeque::new(),
            parent: None,
            challenger: None,
            former_parent: None,
            copies: Vec::new(),
            heights: Heights::default(),
            reported: None,
            report_due: false,
            term_rounds: 0,
            network_size: 0,
            predecessor: None,
            declined: BTreeSet::new(),
            missing: BTreeMap::new(),
            lazy_queue: BTreeMap::new(),
            flush_scheduled: false,
            timers,
            stats: BroadcastStats::default(),
            out: VecDeque::new(),
        }
    }

    /// Says how this node is dialed, for its beacons to carry.
    pub fn with_address(mut self, address: Option<String>) -> Self {
        self.address = address.map(Arc::from);
        self
    }

    /// The root of the tree as this peer knows it.
    pub fn root(&self) -> Option<NodeId> {
        self.root.map(|r| r.id)
    }

    /// The root and the term it was elected in.
    pub fn root_and_term(&self) -> Option<(NodeId, u64)> {
        self.root.map(|r| (r.id, r.term))
    }

    /// The neighbour this peer's beacons come from (none for the root).
    pub fn parent(&self) -> Option<NodeId> {
        self.parent
    }

    pub fn stats(&self) -> &BroadcastStats {
        &self.stats
    }

    pub fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// Neighbours messages are pushed to (the tree's links, under Plumtree).
    pub fn eager(&self) -> impl Iterator<Item = &NodeId> {
        self.eager.iter()
    }

    pub fn is_eager(&self, peer: &NodeId) -> bool {
        self.eager.contains(peer)
    }

    /// The driver's word on `peer`'s send queue: backed up (`true`) or drained again. A slow
    /// peer keeps its place in the tree but is only told of new messages until it catches
    /// up, so one slow reader neither holds the others back nor makes its queue grow with
    /// everything published meanwhile.
    pub fn set_slow(&mut self, peer: NodeId, slow: bool) {
        if !self.is_neighbor(&peer) {
            return;
        }
        if slow {
            self.slow.insert(peer);
        } else {
            self.slow.remove(&peer);
        }
    }

    pub fn slow(&self) -> usize {
        self.slow.len()
    }

    /// A new neighbour. `client` says it is a page held here (it starts eager: a page
    /// prunes what it does not need). Other links start eager until there is a tree, and
    /// lazy after: the next beacon (or a graft, if a message is missed first) puts them in
    /// it. A page pushes only to its first link and tells the others so.
    pub fn neighbor_up(&mut self, peer: NodeId, client: bool) {
        let lazy = match (self.config.strategy, self.relay) {
            (Strategy::Flood, _) => false,
            (Strategy::Plumtree, true) => !client && self.root.is_some(),
            (Strategy::Plumtree, false) => !self.eager.is_empty(),
        };
        if client {
            self.clients.insert(peer);
        }
        if lazy {
            self.eager.remove(&peer);
            self.lazy.insert(peer);
            if !self.relay {
                self.out.push_back(Out::Send(peer, Control::Prune));
            }
        } else {
            self.make_eager(peer);
        }
    }

    pub fn neighbor_down(&mut self, peer: NodeId) {
        self.eager.remove(&peer);
        self.lazy.remove(&peer);
        self.clients.remove(&peer);
        self.slow.remove(&peer);
        self.heights.forget(&peer);
        if self.challenger == Some(peer) {
            self.challenger = None;
        }
        if self.parent == Some(peer) && self.config.strategy == Strategy::Plumtree {
            // A lost parent cuts this peer's part of the tree off until the next beacon, or
            // longer if the parent was the root: take the link that brought this round first
            // (if we were waiting to see), or any other link to a node, at once. A cycle this
            // makes is trimmed by the next beacon.
            self.parent = None;
            let next = self.challenger.take().or_else(|| {
                let nodes: Vec<NodeId> = self
                    .lazy
                    .iter()
                    .copied()
                    .filter(|p| !self.clients.contains(p))
                    .collect();
                nodes
                    .get(self.rng.random_range(0..nodes.len().max(1)))
                    .copied()
            });
            if let Some(next) = next {
                self.adopt(next);
            }
        }
        self.lazy_queue.remove(&peer);
        for m in self.missing.values_mut() {
            m.announcers.retain(|&(p, _)| p != peer);
        }
    }

    /// How many peers the network has, as far as this one knows.
    pub fn set_network_size(&mut self, peers: usize) {
        self.network_size = peers;
    }

    /// How many hops from its origin a message is pushed over every link to a node.
    fn radius(&self) -> u32 {
        let links = (self.eager.len() + self.lazy.len()).saturating_sub(self.clients.len());
        let budget = self.config.eager_share * self.network_size as f64;
        (1..=self.config.eager_radius)
            .take_while(|&r| (links.max(2) as f64).powi(r as i32) <= budget)
            .last()
            .unwrap_or(0)
    }

    /// This peer published `msg`.
    pub fn publish(&mut self, msg: Arc<Message>, now: Millis) {
        self.received_new(None, msg, 0, now);
    }

    /// `msg` is new here; it came from `from` (none: published here) at hop count `hops`.
    /// Pushes it on and queues its announcement.
    pub fn received_new(
        &mut self,
        from: Option<NodeId>,
        msg: Arc<Message>,
        hops: u32,
        now: Millis,
    ) {
        let id = msg.id;
        self.missing.remove(&id);
        self.cache.expire(now);
        self.note_publisher(from.is_none() && !msg.author.is_seed(), now);
        if let Some(f) = from
            && self.lazy.contains(&f)
            && self.config.strategy == Strategy::Plumtree
            // (Another node may reckon the radius larger than this one does.)
            && hops > self.config.eager_radius
        {
            // It pushed to us: it thinks the link is eager, and now so do we (unless the
            // message is still within its origin's radius, pushed over every link).
            self.make_eager(f);
        }
        self.cache.insert(id, (Arc::clone(&msg), hops), now);
        // The root's own messages ride its fastest-path tree already: more links would only
        // bring duplicates. (Checked in this order: most messages are past the radius.)
        let from_root = || {
            msg.author
                .key()
                .is_some_and(|k| self.root.is_some_and(|r| r.id == k.node_id()))
        };
        let near_origin =
            self.relay && hops < self.config.eager_radius && hops < self.radius() && !from_root();
        let to: Vec<NodeId> = self
            .eager
            .iter()
            .chain(
                self.lazy
                    .iter()
                    .filter(|p| near_origin && !self.clients.contains(p)),
            )
            .copied()
            .filter(|p| Some(*p) != from && !self.slow.contains(p))
            .collect();
        if self.config.strategy == Strategy::Plumtree {
            let lazy: Vec<NodeId> = self
                .lazy
                .iter()
                .chain(self.eager.iter().filter(|p| self.slow.contains(p)))
                .copied()
                .filter(|p| Some(*p) != from && !to.contains(p))
                .collect();
            for p in lazy {
                self.lazy_queue.entry(p).or_default().push((id, hops));
            }
            self.schedule_flush(now);
        }
        if !to.is_empty() {
            self.stats.pushed += to.len() as u64;
            self.out.push_back(Out::Push {
                to,
                msg,
                // A hop count comes from the wire: it may be anything.
                hops: hops.saturating_add(1),
            });
        }
    }

    /// `msg` arrived by other means (reconciliation): nothing to push, but no need to ask
    /// for it any more, and it can be given to peers that graft.
    pub fn received_otherwise(&mut self, msg: Arc<Message>, now: Millis) {
        self.missing.remove(&msg.id);
        let id = msg.id;
        self.cache.insert(id, (msg, u32::MAX / 2), now);
    }

    /// A control frame from neighbour `from`. `held` says whether a message is already here.
    pub fn control(
        &mut self,
        from: NodeId,
        control: Control,
        held: impl Fn(&MsgId) -> bool,
        now: Millis,
    ) {
        let neighbor = self.is_neighbor(&from);
        if self.config.strategy != Strategy::Plumtree {
            // Flooding has no tree, but it elects a root all the same: a different root in
            // a peer's handshake, or a root gone silent, is how a cut in the overlay shows.
            if let Control::Beacon {
                root,
                term,
                seq,
                address,
            } = control
                && neighbor
                && self.root.is_none_or(|r| r.superseded_by(root, term, seq))
            {
                self.hear_root(root, term, seq, address, now);
                if self.relay {
                    let address = self.root_address.clone();
                    self.send_beacon(&[Some(from)], root, term, seq, address);
                }
            }
            return;
        }
        match control {
            Control::IHave(ids) => {
                // What it announces it has, it need not be told of.
                if let Some(queue) = self.lazy_queue.get_mut(&from) {
                    queue.retain(|(id, _)| !ids.iter().any(|(a, _)| a == id));
                }
                if !neighbor {
                    return;
                }
                for (id, hops) in ids.into_iter().take(self.config.max_ids_per_frame) {
                    if held(&id) {
                        continue;
                    }
                    let fresh = !self.missing.contains_key(&id);
                    let m = self.missing.entry(id).or_default();
                    if !m.announcers.iter().any(|&(p, _)| p == from) {
                        m.announcers.push_back((from, hops));
                    }
                    if fresh {
                        // Spread over [timeout, 2 × timeout]: the peers at the edge of a
                        // broken part of the tree all hear of the message at about the same
                        // time, and one graft usually repairs it for all of them.
                        let t = self.config.graft_timeout;
                        let at = now + t + self.rng.random_range(0..=t);
                        self.timers.insert(at, Timer::Graft(id));
                    }
                }
            }
            Control::Graft(ids) => {
                if !neighbor {
                    return;
                }
                self.make_eager(from);
                for id in ids.into_iter().take(self.config.max_ids_per_frame) {
                    if let Some((msg, hops)) = self.cache.get(&id) {
                        let (msg, hops) = (Arc::clone(msg), *hops);
                        self.stats.pushed += 1;
                        self.out.push_back(Out::Push {
                            to: vec![from],
                            msg,
                            hops: hops.saturating_add(1),
                        });
                    }
                }
            }
            Control::Prune => {
                if self.eager.remove(&from) {
                    self.lazy.insert(from);
                }
                if self.parent == Some(from) {
                    // A stale prune (it heard from us before we took it for our parent,
                    // or its timer outlived the round that set it): the parent must push
                    // to us, so graft it again at once.
                    self.adopt(from);
                }
            }
            Control::Beacon {
                root,
                term,
                seq,
                address,
            } => {
                if neighbor {
                    self.on_beacon(from, root, term, seq, address, now);
                }
            }
            Control::Depth {
                root,
                term,
                seq,
                held,
                below,
            } => {
                if neighbor && self.relay {
                    self.on_depth(from, (root, term, seq), held, below, now);
                }
            }
            Control::Handover { term, reach, back } => {
                if self.relay
                    && self.parent == Some(from)
                    && self.root.is_some_and(|r| r.id == from && r.term == term)
                {
                    // The root found this side deepest: from here, the tree may reach
                    // everyone sooner. Or it tried this side and it did not.
                    self.originate(term.saturating_add(1), now);
                    if back {
                        self.declined.insert(from);
                    } else {
                        self.declined.clear();
                        self.predecessor = Some((from, reach));
                    }
                }
            }
        }
    }

    /// A child's report for `round`. The reach this node reported already changes with it:
    /// say so again, a moment later (more reports may follow).
    fn on_depth(&mut self, from: NodeId, round: Round, held: Millis, below: Millis, now: Millis) {
        if !self.heights.report(from, round, held, below, now) {
            return;
        }
        let Some(current) = self.root.map(|r| r.round()) else {
            return;
        };
        if current != round || self.root.is_some_and(|r| r.id == self.me) || self.report_due {
            return;
        }
        if let Some(reported) = self.reported {
            let reach = self.heights.reach(round, |p| self.is_child(p));
            if reach.abs_diff(reported) > 1 {
                self.report_due = true;
                self.timers
                    .insert(now + self.config.parent_stickiness, Timer::Report(round));
            }
        }
    }

    /// Tells the parent how far the tree reaches below this node.
    fn send_report(&mut self, round: Round, now: Millis) {
        let Some(parent) = self.parent else { return };
        let Some(&(_, at)) = self.copies.iter().find(|(p, _)| *p == parent) else {
            // The parent's copy of this round never came (it was adopted since): the report
            // could not be timed.
            return;
        };
        let below = self.heights.reach(round, |p| self.is_child(p));
        self.reported = Some(below);
        self.stats.depth_reports += 1;
        let (root, term, seq) = round;
        self.out.push_back(Out::Send(
            parent,
            Control::Depth {
                root,
                term,
                seq,
                held: now.saturating_sub(at),
                below,
            },
        ));
    }

    /// A neighbour below this node in the tree: an eager link to a node, not the parent.
    fn is_child(&self, peer: &NodeId) -> bool {
        self.eager.contains(peer) && self.parent != Some(*peer) && !self.clients.contains(peer)
    }

    /// A beacon of round `seq` of root `root` elected in `term`, from `from`.
    fn on_beacon(
        &mut self,
        from: NodeId,
        root: NodeId,
        term: u64,
        seq: u64,
        address: Option<Arc<str>>,
        now: Millis,
    ) {
        let newer = self.root.is_none_or(|r| r.superseded_by(root, term, seq));
        if newer {
            // The first copy of a new round: it came the fastest way from the root. Pass it
            // on at once; keep the parent if its copy follows closely.
            let same_root = self.root.is_some_and(|r| r.id == root && r.term == term);
            self.hear_root(root, term, seq, address, now);
            self.challenger = None;
            self.fresh_root = !same_root;
            match self.parent {
                Some(p) if p != from && same_root && self.is_neighbor(&p) => {
                    self.challenger = Some(from);
                    self.timers.insert(
                        now + self.config.parent_stickiness,
                        Timer::Switch((root, term, seq)),
                    );
                }
                Some(p) if p != from && !same_root && self.is_neighbor(&p) => {
                    // A new root: the old tree still carries messages sent before the
                    // switch, so its link is let go only after the new one has pushed.
                    self.former_parent = Some(p);
                    self.adopt(from);
                }
                _ => self.adopt(from),
            }
            if self.relay {
                // Not back to the parent either, even one kept while we wait or one being
                // left: a copy from a child would make it prune the link at once.
                let except = [Some(from), self.parent];
                let address = self.root_address.clone();
                self.send_beacon(&except, root, term, seq, address);
                let round = (root, term, seq);
                self.heights.sent(round, now);
                self.copies = vec![(from, now)];
                self.reported = None;
                // Once the parent is settled (its copy may follow the first closely).
                self.report_due = true;
                self.timers.insert(
                    now + self.config.parent_stickiness + 1,
                    Timer::Report(round),
                );
            }
        } else if self
            .root
            .is_some_and(|r| r.id == root && r.term == term && r.seq == seq)
        {
            self.copies.push((from, now));
            if Some(from) == self.parent && self.challenger.is_some() {
                // The parent's copy came soon enough: it stays; the first copy's link is
                // not the tree's.
                if let Some(c) = self.challenger.take() {
                    self.prune(c);
                }
                self.adopt(from);
            } else if Some(from) == self.former_parent {
                // The parent we left: let it go once the new one pushes to us.
                self.former_parent = None;
                self.timers.insert(
                    now + self.config.switch_overlap,
                    Timer::LetGo(from, (root, term, seq)),
                );
            } else if Some(from) != self.parent {
                // A later copy of this round: that link is not the tree's. In a new root's
                // first round it may still be the old tree's, carrying messages sent before
                // the switch: it is let go a little later.
                if self.fresh_root {
                    self.timers.insert(
                        now + self.config.switch_overlap,
                        Timer::LetGo(from, (root, term, seq)),
                    );
                } else {
                    self.prune(from);
                }
            }
        }
        // An older round, or a root with a higher id than ours: it dies out here.
    }

    /// Notes a newer round of the root (its address as well, unless a relay left it out).
    fn hear_root(
        &mut self,
        root: NodeId,
        term: u64,
        seq: u64,
        address: Option<Arc<str>>,
        now: Millis,
    ) {
        if address.is_some() || self.root.is_none_or(|r| r.id != root) {
            self.root_address = address;
        }
        self.root = Some(Root {
            id: root,
            term,
            seq,
            heard: now,
        });
    }

    /// Makes `peer` the parent, grafting its link if it was lazy.
    fn adopt(&mut self, peer: NodeId) {
        self.parent = Some(peer);
        if self.lazy.remove(&peer) {
            self.eager.insert(peer);
            self.stats.grafts += 1;
            self.out
                .push_back(Out::Send(peer, Control::Graft(Vec::new())));
        }
    }

    fn prune(&mut self, peer: NodeId) {
        if self.eager.remove(&peer) {
            self.lazy.insert(peer);
            self.stats.prunes += 1;
            self.out.push_back(Out::Send(peer, Control::Prune));
        }
    }

    fn is_neighbor(&self, peer: &NodeId) -> bool {
        self.eager.contains(peer) || self.lazy.contains(peer)
    }

    fn make_eager(&mut self, peer: NodeId) {
        self.lazy.remove(&peer);
        self.eager.insert(peer);
    }

    fn send_beacon(
        &mut self,
        except: &[Option<NodeId>],
        root: NodeId,
        term: u64,
        seq: u64,
        address: Option<Arc<str>>,
    ) {
        for &peer in self.eager.iter().chain(&self.lazy) {
            if !except.contains(&Some(peer)) {
                self.stats.beacons += 1;
                let beacon = Control::Beacon {
                    root,
                    term,
                    seq,
                    address: address.clone(),
                };
                self.out.push_back(Out::Send(peer, beacon));
            }
        }
    }

    /// As the root, after round `round`: the child to hand the root to, if the tree's centre
    /// lies that way. Not while the tree is new (its reports are not all in), and not while
    /// this node publishes nearly everything (the tree is then best where it is).
    /// `back` when the root goes back to where it came from: this tree reaches no sooner.
    fn successor(&mut self, round: Round) -> Option<(NodeId, bool)> {
        if !self.relay
            || self.config.strategy != Strategy::Plumtree
            || self.config.handover_margin == 0
            || self.network_size < self.config.walk_min_peers
            || self.term_rounds < 2
            || self.publishes_most()
        {
            return None;
        }
        let predecessor = self.predecessor.take();
        let is_child = |p: &NodeId| self.is_child(p);
        if let Some((before, reached)) = predecessor
            && is_child(&before)
            && self.heights.reach(round, is_child) >= reached
        {
            // Not forward to it again either, should this node stay root a while.
            self.declined.insert(before);
            return Some((before, true));
        }
        self.heights
            .successor(round, is_child, self.config.handover_margin)
            .filter(|next| !self.declined.contains(next))
            .map(|next| (next, false))
    }

    /// Starts a round as the root, in `term`.
    fn originate(&mut self, term: u64, now: Millis) {
        self.own_seq += 1;
        self.fresh_root = self.root.is_none_or(|r| r.id != self.me || r.term != term);
        if self.fresh_root {
            self.term_rounds = 0;
            self.predecessor = None;
        }
        self.term_rounds += 1;
        self.root = Some(Root {
            id: self.me,
            term,
            seq: self.own_seq,
            heard: now,
        });
        self.parent = None;
        self.challenger = None;
        self.root_address = self.address.clone();
        let seq = self.own_seq;
        self.send_beacon(&[], self.me, term, seq, self.address.clone());
        self.heights.sent((self.me, term, seq), now);
        self.copies.clear();
        self.reported = None;
    }

    /// Notes who published the message just seen. A node that publishes nearly everything
    /// (a feed, a single source) takes the root in a new term: the tree then is its own
    /// fastest-path tree, the best there is for its messages. With many publishers, nobody
    /// does, and the root stays where it is.
    fn note_publisher(&mut self, mine: bool, now: Millis) {
        if !self.relay || self.config.strategy != Strategy::Plumtree {
            return;
        }
        self.recent_publishers.push_back(mine);
        while self.recent_publishers.len() > self.config.publisher_window {
            self.recent_publishers.pop_front();
        }
        let Some(root) = self.root else { return };
        if root.id != self.me && self.publishes_most() {
            self.originate(root.term.saturating_add(1), now);
        }
    }

    /// Whether this node published nearly all of the last messages it saw.
    fn publishes_most(&self) -> bool {
        let window = self.config.publisher_window;
        let mine = self.recent_publishers.iter().filter(|&&m| m).count();
        self.recent_publishers.len() == window
            && mine as f64 >= self.config.publisher_share * window as f64
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        let mut grafts: BTreeMap<NodeId, Vec<MsgId>> = BTreeMap::new();
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::FlushIHave => {
                    self.flush_scheduled = false;
                    self.flush_ihave();
                }
                Timer::Beacon => {
                    self.timers
                        .insert(now + self.config.beacon_interval, Timer::Beacon);
                    // Lower ids take over first when the root falls silent.
                    let patience =
                        self.config.root_timeout + self.me.spread(self.config.beacon_interval);
                    match self.root {
                        None => self.originate(0, now),
                        Some(r) if r.id == self.me => {
                            if let Some((next, back)) = self.successor(r.round()) {
                                self.stats.handovers += 1;
                                let reach = self.heights.reach(r.round(), |p| self.is_child(p));
                                let handover = Control::Handover {
                                    term: r.term,
                                    reach,
                                    back,
                                };
                                self.out.push_back(Out::Send(next, handover));
                            }
                            // Rounds go on until the successor's first: if it never comes,
                            // nothing is lost.
                            self.originate(r.term, now)
                        }
                        // A silent root is replaced in a new term.
                        Some(r) if now.saturating_sub(r.heard) > patience => {
                            // Everyone who stops hearing the root waits, lower ids less, and
                            // the first to take over is heard by the rest before they do:
                            // one node per cut-off part looks for the old root.
                            if let Some(address) = self.root_address.take() {
                                self.out.push_back(Out::RootLost {
                                    root: r.id,
                                    address,
                                });
                            }
                            self.originate(r.term.saturating_add(1), now)
                        }
                        Some(_) => {}
                    }
                }
                Timer::Switch(round) => {
                    if self.root.is_some_and(|r| r.round() == round)
                        && let Some(c) = self.challenger.take()
                    {
                        // The old parent's copy is late (or lost): the tree goes the new
                        // way; the old link is pruned when its copy comes.
                        if self.is_neighbor(&c) {
                            self.former_parent = self.parent;
                            self.adopt(c);
                        }
                    }
                }
                Timer::Report(round) => {
                    self.report_due = false;
                    if self.root.is_some_and(|r| r.round() == round) {
                        self.send_report(round, now);
                    }
                }
                Timer::LetGo(peer, round) => {
                    if self.parent != Some(peer) && self.root.is_some_and(|r| r.round() == round) {
                        self.prune(peer);
                    }
                }
                Timer::Graft(id) => {
                    let Some(m) = self.missing.get_mut(&id) else {
                        continue;
                    };
                    let Some((peer, _)) = m.announcers.pop_front() else {
                        self.missing.remove(&id);
                        continue;
                    };
                    if m.announcers.is_empty() {
                        // Nobody else to ask: reconciliation will find it if this fails.
                        self.missing.remove(&id);
                    } else {
                        self.timers
                            .insert(now + self.config.graft_retry, Timer::Graft(id));
                    }
                    grafts.entry(peer).or_default().push(id);
                }
            }
        }
        for (peer, ids) in grafts {
            if !(self.eager.contains(&peer) || self.lazy.contains(&peer)) {
                continue;
            }
            self.make_eager(peer);
            self.stats.grafts += 1;
            self.out.push_back(Out::Send(peer, Control::Graft(ids)));
        }
        self.cache.expire(now);
    }

    fn schedule_flush(&mut self, now: Millis) {
        if !self.flush_scheduled && !self.lazy_queue.is_empty() {
            self.flush_scheduled = true;
            self.timers
                .insert(now + self.config.ihave_interval, Timer::FlushIHave);
        }
    }

    fn flush_ihave(&mut self) {
        for (peer, ids) in std::mem::take(&mut self.lazy_queue) {
            if !self.lazy.contains(&peer) && !self.eager.contains(&peer) {
                continue;
            }
            for chunk in ids.chunks(self.config.max_ids_per_frame) {
                self.stats.ihave_frames += 1;
                self.out
                    .push_back(Out::Send(peer, Control::IHave(chunk.to_vec())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

    fn msg(n: u8) -> Arc<Message> {
        let author = crate::identity::Keypair::from_secret([99; 32]);
        Arc::new(Message::signed(&author, n as u64, 1, format!("m{n}")))
    }

    /// What `b` sends, but its depth reports (tested on their own, in the tests of the walk
    /// to the centre).
    fn drain(b: &mut Broadcast) -> Vec<Out> {
        drain_all(b)
            .into_iter()
            .filter(|o| !matches!(o, Out::Send(_, Control::Depth { .. })))
            .collect()
    }

    fn drain_all(b: &mut Broadcast) -> Vec<Out> {
        std::iter::from_fn(|| b.poll()).collect()
    }

    fn depth(root: u8, term: u64, seq: u64, held: Millis, below: Millis) -> Control {
        Control::Depth {
            root: node(root),
            term,
            seq,
            held,
            below,
        }
    }

    /// A node (id 50) with these neighbours, before any beacon.
    fn with_neighbors(n: &[u8]) -> Broadcast {
        let mut b = Broadcast::new(Config::default(), node(50), true, 1, 0);
        for &p in n {
            b.neighbor_up(node(p), false);
        }
        b
    }

    fn beacon(root: u8, seq: u64) -> Control {
        Control::Beacon {
            root: node(root),
            term: 0,
            seq,
            address: None,
        }
    }

    #[test]
    fn before_any_beacon_messages_go_to_every_neighbour_but_the_sender() {
        let mut b = with_neighbors(&[1, 2, 3]);
        b.received_new(Some(node(1)), msg(1), 1, 0);
        assert_eq!(
            drain(&mut b),
            vec![Out::Push {
                to: vec![node(2), node(3)],
                msg: msg(1),
                hops: 2
            }]
        );
    }

    #[test]
    fn a_beacon_makes_its_first_link_the_parent_and_later_copies_prune() {
        let mut b = with_neighbors(&[1, 2, 3]);
        b.control(node(2), beacon(0, 7), |_| false, 10);
        assert_eq!(b.parent(), Some(node(2)));
        assert_eq!(b.root(), Some(node(0)));
        assert_eq!(
            drain(&mut b),
            vec![
                Out::Send(node(1), beacon(0, 7)),
                Out::Send(node(3), beacon(0, 7))
            ],
            "passed on over every other link"
        );
        // A later copy: that link is not the tree's. In a new root's first round it is let
        // go a little later (it may be the old tree's, still carrying messages).
        b.control(node(3), beacon(0, 7), |_| false, 20);
        assert!(drain(&mut b).is_empty());
        b.handle_timeout(20 + 250);
        assert_eq!(drain(&mut b), vec![Out::Send(node(3), Control::Prune)]);
        // Node 1 never sent the beacon back: it is a child. Messages go to 1 and 2, and
        // node 3 is told of them, batched.
        b.received_new(Some(node(2)), msg(2), 1, 100);
        b.received_new(Some(node(2)), msg(3), 1, 120);
        let out = drain(&mut b);
        assert!(
            out.iter()
                .all(|o| matches!(o, Out::Push { to, .. } if to == &vec![node(1)]))
        );
        assert_eq!(b.poll_timeout(), Some(100 + 250));
        b.handle_timeout(350);
        assert_eq!(
            drain(&mut b),
            vec![Out::Send(
                node(3),
                Control::IHave(vec![(msg(2).id, 1), (msg(3).id, 1)])
            )]
        );
        // An older round or a worse root changes nothing.
        b.control(node(1), beacon(0, 6), |_| false, 400);
        b.control(node(1), beacon(9, 100), |_| false, 400);
        assert!(drain(&mut b).is_empty());
        assert_eq!(b.parent(), Some(node(2)));
    }

    /// Found at 1,000 nodes (seed 2): while roots took over from each other at start-up, a
    /// parent let its child go on a timer set in an earlier root's round, and the child kept
    /// a parent that pushed nothing to it; each message then reached it by `GRAFT`, 1.2 s
    /// late, round after round.
    #[test]
    fn a_link_let_go_in_an_old_round_is_kept_if_it_became_a_child_and_the_parent_always_pushes() {
        // Root 9's first round: node 2's copy is later than node 1's, so it is to be let go.
        let mut b = with_neighbors(&[1, 2]);
        b.control(node(1), beacon(9, 1), |_| false, 0);
        b.control(node(2), beacon(9, 1), |_| false, 5);
        // Before that timer fires, a lower root's first beacon comes through node 1; node 2
        // does not send it back: it is now a child.
        b.control(node(1), beacon(3, 1), |_| false, 100);
        drain(&mut b);
        b.handle_timeout(5 + 250);
        assert!(drain(&mut b).is_empty(), "the child is not pruned");
        assert!(b.is_eager(&node(2)));

        // The parent prunes us all the same (its own stale timer): we graft it back at once.
        b.control(node(1), Control::Prune, |_| false, 300);
        assert_eq!(b.parent(), Some(node(1)));
        assert_eq!(
            drain(&mut b),
            vec![Out::Send(node(1), Control::Graft(Vec::new()))]
        );
        assert!(b.is_eager(&node(1)));
    }

    #[test]
    fn the_parent_is_kept_unless_another_link_is_clearly_faster() {
        let mut b = with_neighbors(&[1, 2]);
        b.control(node(1), beacon(0, 1), |_| false, 0);
        b.control(node(2), beacon(0, 1), |_| false, 5);
        b.handle_timeout(5 + 250);
        drain(&mut b);
        assert!(!b.is_eager(&node(2)));
        // Round 2: node 2's copy is first, but the parent's follows within 30 ms.
        b.control(node(2), beacon(0, 2), |_| false, 5_000);
        b.control(node(1), beacon(0, 2), |_| false, 5_010);
        b.handle_timeout(5_100);
        assert!(
            drain(&mut b).is_empty(),
            "nothing to pass on: both links have it"
        );
        assert_eq!(b.parent(), Some(node(1)));
        // Round 3: the parent's copy is 60 ms late: node 2's link becomes the tree's.
        b.control(node(2), beacon(0, 3), |_| false, 10_000);
        b.handle_timeout(10_030);
        assert_eq!(
            drain(&mut b),
            vec![Out::Send(node(2), Control::Graft(vec![]))]
        );
        // The old parent's copy comes: it is let go a little later, once the new parent
        // has heard the graft (both push meanwhile, so nothing slips through).
        b.control(node(1), beacon(0, 3), |_| false, 10_060);
        assert!(drain(&mut b).is_empty());
        assert!(b.is_eager(&node(1)));
        b.handle_timeout(10_060 + 250);
        assert_eq!(drain(&mut b), vec![Out::Send(node(1), Control::Prune)]);
        assert!(b.is_eager(&node(2)) && !b.is_eager(&node(1)));
        assert_eq!(b.parent(), Some(node(2)));
    }

    #[test]
    fn the_lowest_id_is_the_root_and_a_silent_root_is_replaced() {
        let mut b = with_neighbors(&[1, 2]);
        // Node 50 starts as its own root once its first beacon is due.
        let first = b.poll_timeout().unwrap();
        b.handle_timeout(first);
        assert_eq!(b.root(), Some(node(50)));
        assert_eq!(
            drain(&mut b),
            vec![
                Out::Send(node(1), beacon(50, 1)),
                Out::Send(node(2), beacon(50, 1))
            ]
        );
        // A lower root is heard: node 50 yields and stops beaconing.
        b.control(node(1), beacon(3, 40), |_| false, first + 10);
        drain(&mut b);
        let mut now = first + 10;
        for _ in 0..3 {
            now += 5_000;
            b.handle_timeout(now);
            b.control(node(1), beacon(3, 40 + now / 5_000), |_| false, now);
            let out = drain(&mut b);
            assert!(!out.iter().any(
                |o| matches!(o, Out::Send(_, Control::Beacon { root, .. }) if *root == node(50))
            ));
        }
        // The root falls silent: node 50 takes over.
        for _ in 0..6 {
            now += 5_000;
            b.handle_timeout(now);
        }
        assert_eq!(b.root(), Some(node(50)));
    }

    #[test]
    fn the_node_that_takes_over_from_a_silent_root_looks_for_it_once() {
        let mut b = with_neighbors(&[1, 2]).with_address(Some("ws://me:50".into()));
        let at = |n: u8| Some(Arc::<str>::from(format!("ws://node{n}:3000")));
        let beacon_at = |root: u8, seq: u64| Control::Beacon {
            root: node(root),
            term: 0,
            seq,
            address: at(root),
        };
        b.control(node(1), beacon_at(3, 1), |_| false, 0);
        // Relayed with the root's address.
        assert!(drain(&mut b).contains(&Out::Send(node(2), beacon_at(3, 1))));
        let mut now = 0;
        let mut lost = Vec::new();
        for _ in 0..8 {
            now += 5_000;
            b.handle_timeout(now);
            for o in drain(&mut b) {
                match o {
                    Out::RootLost { root, address } => lost.push((root, address)),
                    Out::Send(_, Control::Beacon { root, address, .. }) => {
                        // Our own beacons say how to dial us.
                        assert_eq!(root, node(50));
                        assert_eq!(address.as_deref(), Some("ws://me:50"));
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(b.root(), Some(node(50)));
        assert_eq!(lost, vec![(node(3), at(3).unwrap())]);
    }

    #[test]
    fn a_node_that_publishes_nearly_everything_claims_the_root_in_a_new_term() {
        let mut b = with_neighbors(&[1, 2]);
        b.control(node(1), beacon(0, 4), |_| false, 0);
        drain(&mut b);
        let origin = node(99).to_string();
        let me = crate::identity::Keypair::from_secret([50; 32]);
        let mine = |n: u8| Arc::new(Message::signed(&me, n as u64, 1, format!("mine {n}")));
        // Others publish too: no claim.
        for n in 0..5 {
            b.publish(mine(n), 10);
            b.received_new(Some(node(1)), msg(n), 2, 10);
        }
        assert!(
            !drain(&mut b)
                .iter()
                .any(|o| matches!(o, Out::Send(_, Control::Beacon { .. }))),
            "{origin} publishes half"
        );
        for n in 5..13 {
            b.publish(mine(n), 20);
        }
        let out = drain(&mut b);
        assert!(
            out.iter().any(|o| matches!(o,
                Out::Send(_, Control::Beacon { root, term: 1, .. }) if *root == node(50))),
            "{out:?}"
        );
        assert_eq!(b.root(), Some(node(50)));
        // The old root's next round is of an older term: it changes nothing.
        b.control(node(1), beacon(0, 5), |_| false, 5_000);
        assert_eq!(b.root(), Some(node(50)));
    }

    #[test]
    fn a_new_root_lets_the_old_tree_carry_messages_a_while() {
        let mut b = with_neighbors(&[1, 2, 3]);
        b.control(node(1), beacon(0, 1), |_| false, 0);
        b.control(node(2), beacon(0, 1), |_| false, 5);
        b.control(node(3), beacon(0, 1), |_| false, 5);
        b.handle_timeout(300);
        drain(&mut b);
        assert_eq!(b.parent(), Some(node(1)));
        assert!(!b.is_eager(&node(2)) && !b.is_eager(&node(3)));
        // Node 7 claims the root in term 1; its beacon comes first by node 2.
        let new_root = Control::Beacon {
            root: node(7),
            term: 1,
            seq: 1,
            address: None,
        };
        b.control(node(2), new_root.clone(), |_| false, 1_000);
        assert_eq!(b.parent(), Some(node(2)));
        assert_eq!(
            drain(&mut b),
            vec![
                Out::Send(node(2), Control::Graft(vec![])),
                Out::Send(node(1), new_root.clone()),
                Out::Send(node(3), new_root.clone()),
            ]
        );
        // The old parent's and another link's copies: neither is pruned at once, and a
        // message sent before the switch still comes down the old tree and goes on.
        b.control(node(1), new_root.clone(), |_| false, 1_040);
        b.control(node(3), new_root, |_| false, 1_050);
        b.received_new(Some(node(1)), msg(1), 4, 1_100);
        let out = drain(&mut b);
        assert!(
            matches!(&out[..], [Out::Push { to, .. }] if to == &vec![node(2)]),
            "{out:?}"
        );
        assert!(b.is_eager(&node(1)));
        b.handle_timeout(1_300);
        let out = drain(&mut b);
        assert!(out.contains(&Out::Send(node(1), Control::Prune)), "{out:?}");
        assert!(b.is_eager(&node(2)) && !b.is_eager(&node(1)));
        // Later rounds of the new root prune a late copy at once.
        let next = Control::Beacon {
            root: node(7),
            term: 1,
            seq: 2,
            address: None,
        };
        b.control(node(2), next.clone(), |_| false, 6_000);
        b.control(node(3), next.clone(), |_| false, 6_010);
        drain(&mut b);
        b.received_new(Some(node(3)), msg(2), 4, 6_020);
        b.control(node(3), next, |_| false, 6_030);
        assert_eq!(
            drain(&mut b).last(),
            Some(&Out::Send(node(3), Control::Prune))
        );
    }

    #[test]
    fn a_slow_peer_is_told_of_messages_until_it_catches_up() {
        let mut b = with_neighbors(&[1, 2, 3]);
        b.set_slow(node(3), true);
        b.received_new(Some(node(1)), msg(1), 1, 0);
        let out = drain(&mut b);
        assert!(
            matches!(&out[..], [Out::Push { to, .. }] if to == &vec![node(2)]),
            "{out:?}"
        );
        b.handle_timeout(250);
        assert_eq!(
            drain(&mut b),
            vec![Out::Send(node(3), Control::IHave(vec![(msg(1).id, 1)]))]
        );
        // What it asks for, it gets, at its own pace.
        b.control(node(3), Control::Graft(vec![msg(1).id]), |_| false, 300);
        assert!(matches!(&drain(&mut b)[..], [Out::Push { to, .. }] if to == &vec![node(3)]));
        b.set_slow(node(3), false);
        b.received_new(Some(node(1)), msg(2), 1, 400);
        let out = drain(&mut b);
        assert!(
            matches!(&out[..], [Out::Push { to, .. }] if to == &vec![node(2), node(3)]),
            "{out:?}"
        );
    }

    #[test]
    fn a_prune_makes_the_link_lazy_and_a_graft_eager_again_with_the_message() {
        let mut b = with_neighbors(&[1, 2]);
        b.control(node(2), Control::Prune, |_| false, 0);
        b.publish(msg(1), 0);
        assert_eq!(
            drain(&mut b),
            vec![Out::Push {
                to: vec![node(1)],
                msg: msg(1),
                hops: 1
            }]
        );
        b.control(node(2), Control::Graft(vec![msg(1).id]), |_| true, 5);
        assert_eq!(
            drain(&mut b),
            vec![Out::Push {
                to: vec![node(2)],
                msg: msg(1),
                hops: 1
            }]
        );
        assert!(b.is_eager(&node(2)));
    }

    #[test]
    fn an_announced_message_that_does_not_arrive_is_grafted_from_each_announcer_in_turn() {
        let mut b = with_neighbors(&[1, 2, 3]);
        let id = msg(7).id;
        b.control(node(2), Control::IHave(vec![(id, 3)]), |_| false, 100);
        b.control(node(3), Control::IHave(vec![(id, 2)]), |_| false, 110);
        let at = b.poll_timeout().unwrap();
        assert!((600..=1_100).contains(&at), "{at}");
        b.handle_timeout(599);
        assert!(drain(&mut b).is_empty());
        b.handle_timeout(1_100);
        assert_eq!(
            drain(&mut b),
            vec![Out::Send(node(2), Control::Graft(vec![id]))]
        );
        b.handle_timeout(1_350);
        assert_eq!(
            drain(&mut b),
            vec![Out::Send(node(3), Control::Graft(vec![id]))]
        );
        // Nobody left to ask.
        b.handle_timeout(3_000);
        assert!(drain(&mut b).is_empty());
    }

    #[test]
    fn a_message_that_arrives_in_time_is_not_grafted() {
        let mut b = with_neighbors(&[1, 2]);
        let m = msg(4);
        b.control(node(2), Control::IHave(vec![(m.id, 1)]), |_| false, 0);
        b.received_new(Some(node(1)), m, 2, 50);
        drain(&mut b);
        b.handle_timeout(2_000);
        let grafts: Vec<Out> = drain(&mut b)
            .into_iter()
            .filter(|o| matches!(o, Out::Send(_, Control::Graft(_))))
            .collect();
        assert!(grafts.is_empty(), "{grafts:?}");
    }

    #[test]
    fn what_a_lazy_neighbour_announced_is_not_announced_back() {
        let mut b = with_neighbors(&[1, 2]);
        b.control(node(2), Control::Prune, |_| false, 0);
        let m = msg(6);
        b.received_new(Some(node(1)), Arc::clone(&m), 1, 0);
        b.control(node(2), Control::IHave(vec![(m.id, 1)]), |_| true, 5);
        drain(&mut b);
        b.handle_timeout(300);
        assert!(
            !drain(&mut b)
                .iter()
                .any(|o| matches!(o, Out::Send(_, Control::IHave(_)))),
            "node 2 said it has it"
        );
    }

    #[test]
    fn a_page_pushes_to_its_first_link_and_never_passes_beacons_on() {
        let mut b = Broadcast::new(Config::default(), node(60), false, 1, 0);
        b.neighbor_up(node(1), false);
        b.neighbor_up(node(2), false);
        assert_eq!(drain(&mut b), vec![Out::Send(node(2), Control::Prune)]);
        b.publish(msg(1), 0);
        assert!(matches!(&drain(&mut b)[..], [Out::Push { to, .. }] if to == &vec![node(1)]));
        b.control(node(2), beacon(0, 1), |_| false, 10);
        assert_eq!(
            drain(&mut b),
            vec![Out::Send(node(2), Control::Graft(vec![]))],
            "the faster link becomes its parent; nothing is passed on"
        );
        b.control(node(1), beacon(0, 1), |_| false, 20);
        b.handle_timeout(20 + 250);
        assert_eq!(
            drain(&mut b).last(),
            Some(&Out::Send(node(1), Control::Prune))
        );
        b.handle_timeout(60_000);
        assert!(
            !drain(&mut b)
                .iter()
                .any(|o| matches!(o, Out::Send(_, Control::Beacon { .. }))),
            "a page never beacons"
        );
    }

    #[test]
    fn flooding_pushes_to_everyone_and_relays_beacons_without_shaping_anything() {
        let mut b = Broadcast::new(
            Config {
                strategy: Strategy::Flood,
                ..Config::default()
            },
            node(50),
            true,
            1,
            0,
        );
        for p in [1, 2, 3] {
            b.neighbor_up(node(p), false);
        }
        b.control(node(3), beacon(0, 1), |_| false, 0);
        b.control(node(1), beacon(0, 1), |_| false, 5);
        b.received_new(Some(node(2)), msg(1), 1, 10);
        assert_eq!(
            drain(&mut b),
            vec![
                Out::Send(node(1), beacon(0, 1)),
                Out::Send(node(2), beacon(0, 1)),
                Out::Push {
                    to: vec![node(1), node(3)],
                    msg: msg(1),
                    hops: 2
                }
            ]
        );
        assert_eq!(b.root(), Some(node(0)));
        assert!([1, 2, 3].iter().all(|&p| b.is_eager(&node(p))));
    }

    #[test]
    fn the_first_hops_go_over_every_link_to_a_node_and_the_rest_along_the_tree() {
        // Node 2 is the parent, 3 a lazy link, 1 a child, 4 a page held here. In a network of
        // 200, nine nodes (three links, two hops) are within a share of 5 %.
        let mut b = with_neighbors(&[1, 2, 3]);
        b.set_network_size(200);
        b.neighbor_up(node(4), true);
        b.control(node(4), Control::Prune, |_| false, 0);
        b.control(node(2), beacon(0, 7), |_| false, 0);
        b.control(node(3), beacon(0, 7), |_| false, 5);
        b.handle_timeout(5 + 250);
        drain(&mut b);
        assert!(!b.is_eager(&node(3)));
        let pushed_to = |b: &mut Broadcast| -> Vec<NodeId> {
            drain(b)
                .into_iter()
                .flat_map(|o| match o {
                    Out::Push { to, .. } => to,
                    _ => vec![],
                })
                .collect()
        };
        // Published here, or one hop away: every link to a node, lazy ones too.
        b.publish(msg(1), 1_000);
        assert_eq!(pushed_to(&mut b), vec![node(1), node(2), node(3)]);
        b.received_new(Some(node(2)), msg(2), 1, 1_000);
        assert_eq!(pushed_to(&mut b), vec![node(1), node(3)]);
        // Two hops away: the tree only.
        b.received_new(Some(node(2)), msg(3), 2, 1_000);
        assert_eq!(pushed_to(&mut b), vec![node(1)]);
        // Only those not pushed to are told of them: the page, and node 3 of the last one.
        b.handle_timeout(1_250);
        let told: Vec<(NodeId, usize)> = drain(&mut b)
            .into_iter()
            .filter_map(|o| match o {
                Out::Send(p, Control::IHave(ids)) => Some((p, ids.len())),
                _ => None,
            })
            .collect();
        assert_eq!(told, vec![(node(3), 1), (node(4), 3)]);
        // Such a push over a lazy link leaves it lazy; one from further away grafts it.
        b.received_new(Some(node(3)), msg(4), 2, 1_300);
        assert!(!b.is_eager(&node(3)));
        b.received_new(Some(node(3)), msg(5), 3, 1_300);
        assert!(b.is_eager(&node(3)));
        drain(&mut b);
        b.control(node(3), Control::Prune, |_| false, 1_300);
        // In a network of 100, only the sender's links: nine nodes would be too many.
        b.set_network_size(100);
        b.publish(msg(6), 1_400);
        assert_eq!(pushed_to(&mut b), vec![node(1), node(2), node(3)]);
        b.received_new(Some(node(2)), msg(7), 1, 1_400);
        assert_eq!(pushed_to(&mut b), vec![node(1)]);
    }

    #[test]
    fn the_roots_own_messages_ride_its_tree_only() {
        let author = crate::identity::Keypair::from_secret([99; 32]);
        let root = author.public().node_id();
        let mut b = with_neighbors(&[1, 2, 3]);
        let beacon = |seq| Control::Beacon {
            root,
            term: 0,
            seq,
            address: None,
        };
        b.control(node(2), beacon(1), |_| false, 0);
        b.control(node(3), beacon(1), |_| false, 5);
        b.handle_timeout(5 + 250);
        drain(&mut b);
        b.received_new(Some(node(2)), msg(1), 1, 1_000);
        let out = drain(&mut b);
        assert!(
            matches!(&out[..], [Out::Push { to, .. }] if to == &vec![node(1)]),
            "{out:?}"
        );
    }

    #[test]
    fn a_node_reports_how_deep_the_tree_is_below_it_and_again_when_that_changes() {
        let mut b = with_neighbors(&[1, 2, 3]);
        b.control(node(1), beacon(0, 7), |_| false, 0);
        drain_all(&mut b);
        // Once the parent is settled (a copy of its may follow closely): nothing below yet.
        b.handle_timeout(31);
        assert_eq!(
            drain_all(&mut b),
            vec![Out::Send(node(1), depth(0, 0, 7, 31, 0))]
        );
        // Node 2 reports: sent at 0, held 10 ms, back at 50, so 20 ms away; 100 ms below it.
        b.control(node(2), depth(0, 0, 7, 10, 100), |_| false, 50);
        // Node 3 sends a copy of the round: not a child, and its report would not count.
        b.control(node(3), beacon(0, 7), |_| false, 60);
        b.handle_timeout(80);
        assert_eq!(
            drain_all(&mut b),
            vec![Out::Send(node(1), depth(0, 0, 7, 80, 120))]
        );
        // A report for a round this node never passed on is not timed, and changes nothing.
        b.control(node(3), depth(0, 0, 3, 0, 900), |_| false, 90);
        assert_eq!(b.poll_timeout().filter(|&t| t < 200), None);
    }

    #[test]
    fn the_root_walks_to_the_deep_side_and_is_handed_back_if_that_is_no_better() {
        // Node 0 is root (the lowest id), with children 1 and 2, in a network of 1,000.
        let mut root = Broadcast::new(Config::default(), node(0), true, 1, 0);
        root.set_network_size(1_000);
        root.neighbor_up(node(1), false);
        root.neighbor_up(node(2), false);
        let round = |root: &mut Broadcast, reports: &[(u8, Millis)]| {
            let t = root.poll_timeout().unwrap();
            root.handle_timeout(t);
            let out = drain_all(root);
            let (_, term, seq) = root.root.unwrap().round();
            // Each child 10 ms away, reporting at once.
            for &(child, below) in reports {
                root.control(
                    node(child),
                    depth(0, term, seq, 0, below),
                    |_| false,
                    t + 20,
                );
            }
            out
        };
        let handovers = |out: &[Out]| -> Vec<(NodeId, Control)> {
            out.iter()
                .filter_map(|o| match o {
                    Out::Send(p, c @ Control::Handover { .. }) => Some((*p, c.clone())),
                    _ => None,
                })
                .collect()
        };
        // Node 1's side is 200 ms deep, node 2's 50: not in the tree's first rounds, then
        // to node 1.
        assert!(handovers(&round(&mut root, &[(1, 200), (2, 50)])).is_empty());
        assert!(handovers(&round(&mut root, &[(1, 200), (2, 50)])).is_empty());
        let handover = Control::Handover {
            term: 0,
            reach: 210,
            back: false,
        };
        assert_eq!(
            handovers(&round(&mut root, &[])),
            vec![(node(1), handover.clone())]
        );

        // Node 1, a child of node 0's, takes the root in a new term.
        let mut next = Broadcast::new(Config::default(), node(1), true, 2, 0);
        next.set_network_size(1_000);
        next.neighbor_up(node(0), false);
        next.neighbor_up(node(3), false);
        next.control(node(0), beacon(0, 3), |_| false, 15_000);
        drain_all(&mut next);
        next.control(node(0), handover, |_| false, 15_020);
        assert_eq!(next.root_and_term(), Some((node(1), 1)));
        let out = drain_all(&mut next);
        assert!(out.contains(&Out::Send(
            node(0),
            Control::Beacon {
                root: node(1),
                term: 1,
                seq: 1,
                address: None
            }
        )));
        // Its tree reaches no sooner (node 0's side now 200 ms deep): after two rounds it
        // hands the root back.
        let mut rounds = vec![];
        for _ in 0..3 {
            let t = next.poll_timeout().unwrap();
            next.handle_timeout(t);
            rounds.push(drain_all(&mut next));
            let (_, term, seq) = next.root.unwrap().round();
            next.control(node(0), depth(1, term, seq, 0, 205), |_| false, t + 20);
        }
        assert_eq!(
            handovers(&rounds.concat()),
            vec![(
                node(0),
                Control::Handover {
                    term: 1,
                    reach: 215,
                    back: true
                }
            )]
        );

        // Node 0 takes it back and does not try node 1 again, deepest as it is.
        let beacon = Control::Beacon {
            root: node(1),
            term: 1,
            seq: 1,
            address: None,
        };
        root.control(node(1), beacon, |_| false, 25_000);
        root.control(
            node(1),
            Control::Handover {
                term: 1,
                reach: 200,
                back: true,
            },
            |_| false,
            25_010,
        );
        assert_eq!(root.root_and_term(), Some((node(0), 2)));
        drain_all(&mut root);
        for _ in 0..4 {
            assert!(handovers(&round(&mut root, &[(1, 200), (2, 50)])).is_empty());
        }
    }
}
