//! The broadcast tree: which node is its root, and which link is each node's way to it.
//! Plumtree ([`crate::broadcast`]) pushes messages over the links this module makes eager
//! and announces them over the rest; this module decides which links those are.
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
//! Pages are leaves: they choose a parent among their links the same way but never forward a
//! beacon. Under flooding the tree shapes nothing, but a root is elected all the same
//! (beacons flooded), because the root is also how a cut in the overlay is found.
//!
//! *Cuts.* Beacons carry the root's address. The node that takes over from a silent root
//! asks membership to join through the old one ([`Out::RootLost`]): if it still runs, it is
//! on the other side of a cut, and the walks of that join merge the two parts (one dial per
//! part, since the first to take over is heard by the rest before their own patience ends).
//!
//! The links themselves are Plumtree's ([`Links`]); the tree reads them and, when it adopts a
//! parent or lets a link go, changes them at once and says so ([`Out::Graft`],
//! [`Out::Prune`]), so the peer at the other end hears of it.

use crate::Millis;
use crate::broadcast::{self, BroadcastStats, Links};
use crate::centre::{Heights, Round};
use crate::id::NodeId;
use crate::part::Part;
use crate::peer::PeerRecord;
use crate::timers::Timers;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Config {
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
    /// The root hands over to a child when that shortens the tree's reach by more than this
    /// (see [`crate::centre`]); 0 keeps the root where it is elected.
    pub handover_margin: Millis,
    /// The root walks only in a network this large: a smaller one's tree is shallow, a walk
    /// gains it a few milliseconds, and every step reshapes the tree (measured: map records
    /// that travel along it came late, and seeds were told to dial a node twice).
    pub walk_min_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            beacon_interval: 5_000,
            root_timeout: 15_000,
            parent_stickiness: 30,
            switch_overlap: 250,
            publisher_share: 0.8,
            publisher_window: 10,
            handover_margin: 3,
            walk_min_peers: 100,
        }
    }
}

/// The tree's frames.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type")]
pub enum Message {
    /// The tree's root is `root`, elected in `term`, in its round `seq`; it is dialed at
    /// `address` (so that a part of the network that stops hearing it can look for it).
    #[serde(rename = "BEACON")]
    Beacon {
        root: NodeId,
        term: u64,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<Arc<str>>,
    },
    /// To the parent, in round `seq` of `root`'s `term`: the tree reaches `below` ms below
    /// the sender, which held the round's beacon `held` ms before saying so.
    #[serde(rename = "DEPTH")]
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
    #[serde(rename = "HANDOVER")]
    Handover {
        term: u64,
        reach: Millis,
        back: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Send(NodeId, Message),
    /// A link was made eager (`GRAFT`: it is our new parent, push to us) or lazy (`PRUNE`:
    /// not the tree's, stop pushing): tell the neighbour.
    Link(NodeId, broadcast::Message),
    /// The root fell silent and this node takes over: the network may be cut in two, and
    /// the old root, if it still runs, is on the other side. Link to it (one dial, from the
    /// one node that takes over) so that the parts join again. (Only a WebSocket URL is
    /// named: the address is a peer's claim.)
    RootLost(PeerRecord),
}

#[derive(Debug, Clone, Copy)]
enum Timer {
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

/// Counters for metrics and the simulator (see [`TreeStats::added_to`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub beacons: u64,
    pub depth_reports: u64,
    pub handovers: u64,
    /// Links made eager (a parent adopted) and lazy (a later copy's link let go).
    pub grafts: u64,
    pub prunes: u64,
}

impl TreeStats {
    /// Plumtree's counters with the tree's added: broadcast's, as metrics show them.
    pub fn added_to(&self, plumtree: &BroadcastStats) -> BroadcastStats {
        BroadcastStats {
            grafts: plumtree.grafts + self.grafts,
            prunes: self.prunes,
            beacons: self.beacons,
            depth_reports: self.depth_reports,
            handovers: self.handovers,
            ..plumtree.clone()
        }
    }
}

pub struct Tree {
    config: Config,
    me: NodeId,
    /// Nodes relay beacons and may be the root; pages are leaves.
    relay: bool,
    /// Whether the tree shapes the links (Plumtree); under flooding it only elects a root.
    shaping: bool,
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
    timers: Timers<Timer>,
    stats: TreeStats,
    out: VecDeque<Out>,
}

impl Tree {
    /// The tree at peer `me` (dialed at `address`, if it can be); `relay` for a node, not for
    /// a page; `shaping` under Plumtree.
    pub fn new(
        config: Config,
        me: NodeId,
        relay: bool,
        shaping: bool,
        address: Option<String>,
        now: Millis,
    ) -> Self {
        let mut timers = Timers::default();
        if relay {
            // Lower ids beacon first, so the lowest is usually heard before anyone else
            // starts: the network does not flood with candidates' beacons.
            let first = config.beacon_interval / 2 + me.spread(config.beacon_interval);
            timers.insert(now + first, Timer::Beacon);
        }
        Self {
            config,
            me,
            relay,
            shaping,
            root: None,
            root_address: None,
            address: address.map(Arc::from),
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
            timers,
            stats: TreeStats::default(),
            out: VecDeque::new(),
        }
    }

    /// The root of the tree as this peer knows it.
    pub fn root(&self) -> Option<NodeId> {
        self.root.map(|r| r.id)
    }

    /// The root and the term it was elected in.
    pub fn root_and_term(&self) -> Option<(NodeId, u64)> {
        self.root.map(|r| (r.id, r.term))
    }

    /// The current round: root, term and sequence number (for tests).
    #[cfg(test)]
    pub(crate) fn round(&self) -> Round {
        self.root.map(|r| r.round()).expect("a root")
    }

    /// Whether a peer whose tree has root `theirs` (and its term) is in another overlay:
    /// another root in the same term is a tree we are not part of. (In another term it may
    /// only be a new root's first beacon still on its way: joining again then would reshape
    /// the overlay under every message in flight; measured at 1,000 nodes with revisits
    /// every 7.5 s, p99 280 ms -> 1.4 s. A part that lost the root is found by its new root
    /// instead: [`Out::RootLost`].)
    pub fn elsewhere(&self, theirs: Option<(NodeId, u64)>) -> bool {
        let ours = self.root_and_term();
        matches!((theirs, ours), (Some((a, t)), Some((b, u))) if a != b && t == u)
    }

    /// Whether records can go out along the tree (see [`crate::map`]): a node that starts
    /// with the network waits for a root, so its first record does not go out over links
    /// that are about to be pruned; a page joins a tree that is there already; flooding
    /// needs none.
    pub fn carries_records(&self) -> bool {
        !self.relay || !self.shaping || self.root.is_some()
    }

    /// The neighbour this peer's beacons come from (none for the root).
    pub fn parent(&self) -> Option<NodeId> {
        self.parent
    }

    pub fn stats(&self) -> &TreeStats {
        &self.stats
    }

    /// How many peers the network has, as far as this one knows.
    pub fn set_network_size(&mut self, peers: usize) {
        self.network_size = peers;
    }

    /// A neighbour is gone (Plumtree has dropped its link already). A lost parent cuts this
    /// peer's part of the tree off until the next beacon, or longer if the parent was the
    /// root: take the link that brought this round first (if we were waiting to see), or any
    /// other link to a node, at once. A cycle this makes is trimmed by the next beacon.
    pub fn neighbor_down(&mut self, peer: NodeId, links: &mut Links) {
        self.heights.forget(&peer);
        if self.challenger == Some(peer) {
            self.challenger = None;
        }
        if self.parent == Some(peer) && self.shaping {
            self.parent = None;
            let next = self.challenger.take().or_else(|| links.any_lazy_node());
            if let Some(next) = next {
                self.adopt(next, links);
            }
        }
    }

    /// The neighbour `from` pruned its link to us (Plumtree has made it lazy). A stale prune
    /// (it heard from us before we took it for our parent, or its timer outlived the round
    /// that set it) from the parent: the parent must push to us, so graft it again at once.
    pub fn pruned_by(&mut self, from: NodeId, links: &mut Links) {
        if self.parent == Some(from) {
            self.adopt(from, links);
        }
    }

    /// A tree frame from neighbour `from`.
    pub fn message(&mut self, from: NodeId, message: Message, links: &mut Links, now: Millis) {
        let neighbor = links.is_neighbor(&from);
        if !self.shaping {
            // Flooding has no tree, but it elects a root all the same: a different root in
            // a peer's handshake, or a root gone silent, is how a cut in the overlay shows.
            if let Message::Beacon {
                root,
                term,
                seq,
                address,
            } = message
                && neighbor
                && self.root.is_none_or(|r| r.superseded_by(root, term, seq))
            {
                self.hear_root(root, term, seq, address, now);
                if self.relay {
                    let address = self.root_address.clone();
                    self.send_beacon(&[Some(from)], root, term, seq, address, links);
                }
            }
            return;
        }
        match message {
            Message::Beacon {
                root,
                term,
                seq,
                address,
            } => {
                if neighbor {
                    self.on_beacon(from, root, term, seq, address, links, now);
                }
            }
            Message::Depth {
                root,
                term,
                seq,
                held,
                below,
            } => {
                if neighbor && self.relay {
                    self.on_depth(from, (root, term, seq), held, below, links, now);
                }
            }
            Message::Handover { term, reach, back } => {
                if self.relay
                    && self.parent == Some(from)
                    && self.root.is_some_and(|r| r.id == from && r.term == term)
                {
                    // The root found this side deepest: from here, the tree may reach
                    // everyone sooner. Or it tried this side and it did not.
                    self.originate(term.saturating_add(1), links, now);
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
    fn on_depth(
        &mut self,
        from: NodeId,
        round: Round,
        held: Millis,
        below: Millis,
        links: &Links,
        now: Millis,
    ) {
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
            let reach = self.heights.reach(round, |p| self.is_child(p, links));
            if reach.abs_diff(reported) > 1 {
                self.report_due = true;
                self.timers
                    .insert(now + self.config.parent_stickiness, Timer::Report(round));
            }
        }
    }

    /// Tells the parent how far the tree reaches below this node.
    fn send_report(&mut self, round: Round, links: &Links, now: Millis) {
        let Some(parent) = self.parent else { return };
        let Some(&(_, at)) = self.copies.iter().find(|(p, _)| *p == parent) else {
            // The parent's copy of this round never came (it was adopted since): the report
            // could not be timed.
            return;
        };
        let below = self.heights.reach(round, |p| self.is_child(p, links));
        self.reported = Some(below);
        self.stats.depth_reports += 1;
        let (root, term, seq) = round;
        self.out.push_back(Out::Send(
            parent,
            Message::Depth {
                root,
                term,
                seq,
                held: now.saturating_sub(at),
                below,
            },
        ));
    }

    /// A neighbour below this node in the tree: an eager link to a node, not the parent.
    fn is_child(&self, peer: &NodeId, links: &Links) -> bool {
        links.is_eager(peer) && self.parent != Some(*peer) && !links.is_client(peer)
    }

    /// A beacon of round `seq` of root `root` elected in `term`, from `from`.
    #[allow(clippy::too_many_arguments)]
    fn on_beacon(
        &mut self,
        from: NodeId,
        root: NodeId,
        term: u64,
        seq: u64,
        address: Option<Arc<str>>,
        links: &mut Links,
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
                Some(p) if p != from && same_root && links.is_neighbor(&p) => {
                    self.challenger = Some(from);
                    self.timers.insert(
                        now + self.config.parent_stickiness,
                        Timer::Switch((root, term, seq)),
                    );
                }
                Some(p) if p != from && !same_root && links.is_neighbor(&p) => {
                    // A new root: the old tree still carries messages sent before the
                    // switch, so its link is let go only after the new one has pushed.
                    self.former_parent = Some(p);
                    self.adopt(from, links);
                }
                _ => self.adopt(from, links),
            }
            if self.relay {
                // Not back to the parent either, even one kept while we wait or one being
                // left: a copy from a child would make it prune the link at once.
                let except = [Some(from), self.parent];
                let address = self.root_address.clone();
                self.send_beacon(&except, root, term, seq, address, links);
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
                    self.prune(c, links);
                }
                self.adopt(from, links);
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
                    self.prune(from, links);
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
    fn adopt(&mut self, peer: NodeId, links: &mut Links) {
        self.parent = Some(peer);
        if links.graft(peer) {
            self.stats.grafts += 1;
            let graft = broadcast::Message::Graft { ids: Vec::new() };
            self.out.push_back(Out::Link(peer, graft));
        }
    }

    fn prune(&mut self, peer: NodeId, links: &mut Links) {
        if links.prune(peer) {
            self.stats.prunes += 1;
            self.out
                .push_back(Out::Link(peer, broadcast::Message::Prune));
        }
    }

    fn send_beacon(
        &mut self,
        except: &[Option<NodeId>],
        root: NodeId,
        term: u64,
        seq: u64,
        address: Option<Arc<str>>,
        links: &Links,
    ) {
        for peer in links.all() {
            if !except.contains(&Some(peer)) {
                self.stats.beacons += 1;
                let beacon = Message::Beacon {
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
    fn successor(&mut self, round: Round, links: &Links) -> Option<(NodeId, bool)> {
        if !self.relay
            || !self.shaping
            || self.config.handover_margin == 0
            || self.network_size < self.config.walk_min_peers
            || self.term_rounds < 2
            || self.publishes_most()
        {
            return None;
        }
        let predecessor = self.predecessor.take();
        let is_child = |p: &NodeId| self.is_child(p, links);
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
    fn originate(&mut self, term: u64, links: &Links, now: Millis) {
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
        self.send_beacon(&[], self.me, term, seq, self.address.clone(), links);
        self.heights.sent((self.me, term, seq), now);
        self.copies.clear();
        self.reported = None;
    }

    /// Notes who published the message just seen (`mine`: this node). A node that publishes
    /// nearly everything (a feed, a single source) takes the root in a new term: the tree
    /// then is its own fastest-path tree, the best there is for its messages. With many
    /// publishers, nobody does, and the root stays where it is.
    pub fn note_publisher(&mut self, mine: bool, links: &Links, now: Millis) {
        if !self.relay || !self.shaping {
            return;
        }
        self.recent_publishers.push_back(mine);
        while self.recent_publishers.len() > self.config.publisher_window {
            self.recent_publishers.pop_front();
        }
        let Some(root) = self.root else { return };
        if root.id != self.me && self.publishes_most() {
            self.originate(root.term.saturating_add(1), links, now);
        }
    }

    /// Whether this node published nearly all of the last messages it saw.
    fn publishes_most(&self) -> bool {
        let window = self.config.publisher_window;
        let mine = self.recent_publishers.iter().filter(|&&m| m).count();
        self.recent_publishers.len() == window
            && mine as f64 >= self.config.publisher_share * window as f64
    }
}

impl Part for Tree {
    type Out = Out;
    type Context<'a> = &'a mut Links;

    fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    fn handle_timeout(&mut self, now: Millis, links: &mut Links) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Beacon => {
                    self.timers
                        .insert(now + self.config.beacon_interval, Timer::Beacon);
                    // Lower ids take over first when the root falls silent.
                    let patience =
                        self.config.root_timeout + self.me.spread(self.config.beacon_interval);
                    match self.root {
                        None => self.originate(0, links, now),
                        Some(r) if r.id == self.me => {
                            if let Some((next, back)) = self.successor(r.round(), links) {
                                self.stats.handovers += 1;
                                let reach =
                                    self.heights.reach(r.round(), |p| self.is_child(p, links));
                                let handover = Message::Handover {
                                    term: r.term,
                                    reach,
                                    back,
                                };
                                self.out.push_back(Out::Send(next, handover));
                            }
                            // Rounds go on until the successor's first: if it never comes,
                            // nothing is lost.
                            self.originate(r.term, links, now)
                        }
                        // A silent root is replaced in a new term.
                        Some(r) if now.saturating_sub(r.heard) > patience => {
                            // Everyone who stops hearing the root waits, lower ids less, and
                            // the first to take over is heard by the rest before they do:
                            // one node per cut-off part looks for the old root.
                            let lost = self.root_address.take().and_then(|address| {
                                let id = r.id;
                                let address = address.to_string();
                                PeerRecord::canonical(&PeerRecord {
                                    id,
                                    address,
                                    aliases: Vec::new(),
                                })
                            });
                            if let Some(root) = lost {
                                self.out.push_back(Out::RootLost(root));
                            }
                            self.originate(r.term.saturating_add(1), links, now)
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
                        if links.is_neighbor(&c) {
                            self.former_parent = self.parent;
                            self.adopt(c, links);
                        }
                    }
                }
                Timer::Report(round) => {
                    self.report_due = false;
                    if self.root.is_some_and(|r| r.round() == round) {
                        self.send_report(round, links, now);
                    }
                }
                Timer::LetGo(peer, round) => {
                    if self.parent != Some(peer) && self.root.is_some_and(|r| r.round() == round) {
                        self.prune(peer, links);
                    }
                }
            }
        }
    }
}
