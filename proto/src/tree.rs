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
//! beacons is trimmed at the next. Only every [`FULL_ROUND_EVERY`]th round goes over every
//! link, though: the rounds between go down the tree (to children and to links no full
//! round went over yet), which keeps the root heard at a fraction of the bytes, and leaves
//! finding faster paths to the full rounds.
//!
//! Who is root is [`crate::succession`]'s to say: beacons are signed by their root, a live
//! root is displaced only by its own word (the *heir* its beacons name), and a network that
//! forms at once still agrees on its lowest id. If the root's beacons stop, its heir takes
//! over after the root timeout or, if the heir is silent too, the others do, lowest ids
//! first. The root then
//! walks towards the graph's centre, where its tree is shortest ([`crate::centre`]: each node
//! reports how deep the tree is below it, `DEPTH`, and the root tries its deepest child,
//! `HANDOVER`, which hands the root back if its tree reaches no sooner).
//!
//! *Who is root.* A root's tree is the fastest for the root's own messages and a detour for
//! everyone else's. So when nearly all of the last messages the root saw were published by
//! one node (a feed, a single source; [`Config::publisher_share`] of
//! [`Config::publisher_window`]), the root names that node its heir and hands over: the tree
//! becomes its fastest-path tree. (The claim was the publisher's own before; now it is the
//! root's word, on messages it saw signed.) With many publishers nobody is named, and the tree
//! stays where it is. While a new root's first beacon spreads, messages sent before it are
//! still on the old tree, so in that round the links it leaves are pruned only after
//! [`Config::switch_overlap`] (both trees push meanwhile: at 1,000 nodes the switch costs no
//! message a detour, where pruning at once sent two of them through `GRAFT`, 1.4 s late).
//!
//! Pages are leaves: a page's parent is the node whose beacon reached it first (its home,
//! mostly), it never forwards a beacon, and it hears full rounds from its parent only, so an
//! idle page is sent one beacon every [`FULL_ROUND_EVERY`] rounds and keeps its parent until
//! it loses it. Under flooding the tree shapes nothing, but a root is elected all the same
//! (beacons flooded), because the root is also how a cut in the overlay is found.
//!
//! *Cuts.* Beacons carry the root's address. The node that takes over from a silent root
//! asks membership, in its first round as root, to join through the old one
//! ([`Out::RootLost`]): if it still runs, it is on the other side of a cut, and the walks of
//! that join merge the two parts (one dial per part: the others that took over at the same
//! time have yielded to it by then).
//! If the beacons of another root come back over that link, the part that lost its root
//! yields: the node that took over names the other root its heir and hands over. A join can
//! be lost, so the new root looks in each of its first [`SEEK_ROUNDS`] rounds while it has
//! not heard the old one.
//!
//! *Orphans.* A node that loses its parent takes another lazy link at once; with none left
//! (its other links all lead below it), it is an orphan until the next round, and takes the
//! first way back it is shown: a former child that found a way of its own and prunes the
//! link to us, or a link that delivered a message we asked for.
//!
//! The links themselves are Plumtree's ([`Links`]); the tree reads them and, when it adopts a
//! parent or lets a link go, changes them at once and says so ([`Out::Graft`],
//! [`Out::Prune`]), so the peer at the other end hears of it.

use crate::Millis;
use crate::broadcast::{self, BroadcastStats, Links};
use crate::centre::{Heights, Round};
use crate::id::NodeId;
use crate::identity::Keypair;
use crate::part::Part;
use crate::peer::PeerRecord;
use crate::succession::{self, Basis, Beacon, Lost, Patience, Root, Verdict};
use crate::timers::Timers;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    /// When one node published at least this share of the last
    /// [`Config::publisher_window`] messages the root saw, the root hands it the root, so
    /// the tree becomes its fastest-path tree.
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
    /// A round of the root's, signed by it (see [`succession::Beacon`]).
    #[serde(rename = "BEACON")]
    Beacon(Beacon),
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
    /// From the root of `term` to a child, just before the round that names it heir and
    /// hands over: the sender's tree reached `reach` ms; `back`: the sender had the root from
    /// the receiver and did no better, so the receiver takes it back and does not hand it
    /// there again. (What moves the root is the signed round; this only says how far.)
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
    /// This node is the heir of the root as of this round: if nothing newer comes by then,
    /// the root is gone and this node takes over.
    Inherit(Round),
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
    /// Beacons of a root that may not displace ours (see [`crate::succession`]), and beacons
    /// whose signature does not verify.
    pub beacons_ignored: u64,
    pub beacons_forged: u64,
    /// Parents passed over for letting a message through only by `GRAFT`.
    pub parents_withholding: u64,
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
            beacons_ignored: self.beacons_ignored,
            beacons_forged: self.beacons_forged,
            parents_withholding: self.parents_withholding,
            ..plumtree.clone()
        }
    }
}

/// A handover the root is making: to whom, whether a round has named it heir yet, and for
/// how many more rounds the root hands over if the heir does not take it (it may have gone).
///
/// The heir is named a round before the round that hands over. The heir's first beacon often
/// overtakes that round on its way to a peer (it comes the new tree's fastest way); a peer
/// keeps such a beacon only from the heir it knows, so it must know the heir beforehand.
/// Named in the same round, measured at 1,000 nodes: a seventh of the nodes dropped the heir's
/// first beacon and stayed on the old tree for a round, and p99 rose from 0.3 to 1.3 s.
#[derive(Debug, Clone, Copy)]
struct Handing {
    to: NodeId,
    named: bool,
    rounds_left: u32,
}

impl Handing {
    /// A handover to `to`, named first.
    fn to(to: NodeId) -> Self {
        Self {
            to,
            named: false,
            rounds_left: HANDING_ROUNDS,
        }
    }
}

/// One round in this many goes over every link; the others go down the tree only (and to
/// links no full round has gone over yet). A full round is what finds faster paths and trims
/// links grafted between rounds; a round down the tree keeps the root heard for about a
/// fifth of the copies (one per node, where a full round sends about five). Every second
/// round, so that a part of the tree cut off just after a full round hears the next one over
/// its other links 10 s later, within the root timeout (15 s). (At 1,000 idle simulated
/// nodes beacons were 324 of 538 bytes a second.) A root's first round, and a round that
/// hands over, are always full: a new tree forms in them (see [`full_round`]).
pub const FULL_ROUND_EVERY: u64 = 2;

/// Whether round `seq` goes over every link: a new root's, one that hands over, and every
/// [`FULL_ROUND_EVERY`]th.
fn full_round(new_root: bool, handover: bool, seq: u64) -> bool {
    new_root || handover || seq.is_multiple_of(FULL_ROUND_EVERY)
}

/// Rounds a root keeps handing over to an heir that does not take the root.
const HANDING_ROUNDS: u32 = 2;

/// Rounds remembered as taken up: a root is never followed again in a round it was followed
/// in before, so no set of rounds fewer than this can pull a network back and forth (each
/// switch passed on over every link) faster than their roots sign new ones.
pub const FOLLOWED_ROUNDS_KEPT: usize = 16;

/// Rounds in which a root that took over looks for the old root ([`Out::RootLost`]): a live
/// old root on the other side of a healed cut is found within them; a dead one costs a
/// refused dial a round for half a minute. From its first round as root, not at the take-over
/// itself, so that only the node that won it looks: when a root fell silent in the beacon
/// attack (1,000 simulated nodes, a tenth forging beacons, the root one of them), nearly
/// every node took over within 5 s and joined through the old root, and each join's walks
/// displaced links their ends had chosen (`membership::JOIN_ANSWERS_TAKEN`): honest p99 676
/// ms, against 307 ms when only the winner looks.
pub const SEEK_ROUNDS: u32 = 7;
/// How long a neighbour that withheld a message as our parent is passed over as parent
/// (see [`Tree::recovered`]): an hour's worth of rounds would do as well; five minutes lets
/// an honest parent that was only cut off upstream back in before long.
pub const WITHHOLDER_PASSED_OVER: Millis = 300_000;
/// How long a parent must have been the parent before a message asked for by `GRAFT`
/// counts against it: as long as the longest wait before asking (`graft_timeout` twice).
pub const PARENT_PROBATION: Millis = 1_000;
/// Most neighbours passed over at once (the oldest go first): more than an active view and
/// its turnover over [`WITHHOLDER_PASSED_OVER`].
pub const WITHHOLDERS_KEPT: usize = 64;

pub struct Tree {
    config: Config,
    me: NodeId,
    /// What this node signs its beacons with (none for a page: it is never root).
    key: Option<Keypair>,
    /// Nodes relay beacons and may be the root; pages are leaves.
    relay: bool,
    /// Whether the tree shapes the links (Plumtree); under flooding it only elects a root.
    shaping: bool,
    root: Option<Root>,
    /// The root this node (or the root it follows) took over from after its silence.
    lost: Option<Lost>,
    /// The old root this node dialed after taking over, and how many more rounds of ours
    /// look for it again (see [`SEEK_ROUNDS`]): another root's beacons coming from it mean
    /// the cut healed and the other part kept a root, which this part then follows.
    sought: Option<(PeerRecord, u32)>,
    /// The root's heir's beacon, come before the round that named it: taken once that round
    /// comes.
    early: Option<(NodeId, Beacon)>,
    /// How this node is dialed (none for a page, or a node that cannot be dialed).
    address: Option<Arc<str>>,
    own_seq: u64,
    /// The latest term of any root this node followed or was.
    top_term: u64,
    /// As the root: the heir named in our beacons, and a handover under way.
    heir: Option<NodeId>,
    handing: Option<Handing>,
    /// What the root said in the `HANDOVER` before the round that names this node heir.
    offer: Option<(NodeId, u64, Millis, bool)>,
    /// Whether the current round is the first of its root (a new tree forming).
    fresh_root: bool,
    /// The last rounds this node took up (see [`FOLLOWED_ROUNDS_KEPT`]).
    followed_rounds: VecDeque<Round>,
    /// Who published each of the last messages seen (a node, if the author is one).
    recent_publishers: VecDeque<Option<NodeId>>,
    parent: Option<NodeId>,
    /// Since when the parent is the parent.
    parent_since: Millis,
    /// The latest time this tree was told of (links may change between calls that say).
    clock: Millis,
    /// The link the first copy of the current round came by, while we wait to see whether
    /// the parent's copy comes soon enough.
    challenger: Option<NodeId>,
    /// The parent before the last switch: pruned only once the new parent has had time to
    /// hear our graft, so no message slips through while the tree changes.
    former_parent: Option<NodeId>,
    /// When each copy of the current round came, from whom, and over how many hops.
    copies: Vec<(NodeId, Millis, u32)>,
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
    /// Neighbours that let a message through to us only by `GRAFT` while our parent, and
    /// until when they are passed over as parent (see [`Tree::recovered`]).
    withholders: BTreeMap<NodeId, Millis>,
    /// Links a full round of the current root went over from us: a round down the tree
    /// goes also to those not among them (new links), so that a cut that heals is found
    /// within a round. Bounded by the links.
    beaconed: BTreeSet<NodeId>,
    timers: Timers<Timer>,
    stats: TreeStats,
    out: VecDeque<Out>,
}

impl Tree {
    /// The tree at peer `me` (dialed at `address`, if it can be); `key` signs its beacons if
    /// it may be root (a node, not a page); `shaping` under Plumtree.
    pub fn new(
        config: Config,
        me: NodeId,
        key: Option<Keypair>,
        shaping: bool,
        address: Option<String>,
        now: Millis,
    ) -> Self {
        let relay = key.is_some();
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
            key,
            relay,
            shaping,
            root: None,
            lost: None,
            sought: None,
            early: None,
            address: address.map(Arc::from),
            own_seq: 0,
            top_term: 0,
            heir: None,
            handing: None,
            offer: None,
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
            withholders: BTreeMap::new(),
            beaconed: BTreeSet::new(),
            followed_rounds: VecDeque::new(),
            parent_since: now,
            clock: now,
            timers,
            stats: TreeStats::default(),
            out: VecDeque::new(),
        }
    }

    /// The root of the tree as this peer knows it.
    pub fn root(&self) -> Option<NodeId> {
        self.root.as_ref().map(|r| r.id())
    }

    /// The root and the term it was elected in.
    pub fn root_and_term(&self) -> Option<(NodeId, u64)> {
        self.root.as_ref().map(|r| (r.id(), r.term()))
    }

    /// The current round: root, term and sequence number (for tests).
    #[cfg(test)]
    pub(crate) fn round(&self) -> Round {
        self.root.as_ref().map(|r| r.round()).expect("a root")
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

    /// Where this peer's copies of a message come from in the tree (see
    /// [`broadcast::Upstream`]).
    pub fn upstream(&self) -> broadcast::Upstream {
        match (self.parent, self.root()) {
            (Some(parent), _) => broadcast::Upstream::Parent(parent),
            (None, Some(root)) if root == self.me => broadcast::Upstream::Root,
            _ => broadcast::Upstream::None,
        }
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
    pub fn neighbor_down(&mut self, peer: NodeId, links: &mut Links, now: Millis) {
        // (The next parent's probation starts now, not at the last frame this tree saw.)
        self.clock = now;
        self.heights.forget(&peer);
        self.beaconed.remove(&peer);
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
    /// An orphan (see [`Tree::orphan`]) takes the link too: the peer found a way to the root
    /// of its own (it was our child, cut off with us, and `recovered` elsewhere).
    pub fn pruned_by(&mut self, from: NodeId, links: &mut Links) {
        if self.parent == Some(from) || (self.orphan() && links.is_neighbor(&from)) {
            self.adopt(from, links);
        }
    }

    /// Whether this peer follows a root but has no parent: it lost the parent with no other
    /// link to take, so nothing is pushed to it.
    fn orphan(&self) -> bool {
        self.shaping
            && self.parent.is_none()
            && self.root.as_ref().is_some_and(|r| r.id() != self.me)
    }

    /// A message this peer had to ask for by `GRAFT` came from neighbour `from`: the parent
    /// did not push it in time, though `from` had it. An honest parent pushes every message
    /// that does not come from below it; one that relays beacons but withholds messages keeps
    /// its children waiting on `GRAFT` for every message. So the parent is passed over for
    /// [`WITHHOLDER_PASSED_OVER`] (its beacon copies, however early, make it parent no more,
    /// unless no other link brings one) and `from`, which delivered, is the parent now. An
    /// honest parent cut off upstream is passed over too: it had nothing to give, and `from`
    /// is a way around the cut.
    pub fn recovered(&mut self, from: NodeId, asked: Millis, links: &mut Links, now: Millis) {
        self.clock = now;
        if self.orphan() && links.is_neighbor(&from) {
            // Nothing pushes to an orphan: the link that delivered is its way back.
            self.adopt(from, links);
            return;
        }
        let Some(parent) = self.parent else { return };
        if !self.shaping
            || parent == from
            || !links.is_neighbor(&from)
            || asked < self.parent_since.saturating_add(PARENT_PROBATION)
        {
            // (A parent adopted just before we asked had no fair chance to push it.)
            return;
        }
        if self.withholders.len() >= WITHHOLDERS_KEPT
            && let Some(oldest) = self
                .withholders
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(p, _)| *p)
        {
            self.withholders.remove(&oldest);
        }
        self.withholders
            .insert(parent, now + WITHHOLDER_PASSED_OVER);
        self.stats.parents_withholding += 1;
        self.challenger = None;
        self.adopt(from, links);
        self.prune(parent, links);
    }

    /// Whether `peer` is passed over as parent: it let a message through only by `GRAFT`
    /// (see [`Tree::recovered`]), or it has told us of no message at all while we took
    /// several from others ([`Links::is_silent`]).
    fn withholding(&self, peer: NodeId, links: &Links, now: Millis) -> bool {
        links.is_silent(&peer)
            || self
                .withholders
                .get(&peer)
                .is_some_and(|&until| until > now)
    }

    /// A tree frame from neighbour `from`.
    pub fn message(&mut self, from: NodeId, message: Message, links: &mut Links, now: Millis) {
        self.clock = now;
        if !links.is_neighbor(&from) {
            return;
        }
        match message {
            Message::Beacon(beacon) => self.on_beacon(from, beacon, links, now),
            Message::Depth {
                root,
                term,
                seq,
                held,
                below,
            } => {
                if self.relay && self.shaping {
                    self.on_depth(from, (root, term, seq), held, below, links, now);
                }
            }
            Message::Handover { term, reach, back } => {
                if self.relay && self.shaping && self.parent == Some(from) {
                    // Kept for the round that names us; a later handover replaces it.
                    self.offer = Some((from, term, reach, back));
                }
            }
        }
    }

    /// What [`succession::judge`] needs of the configuration.
    fn patience(&self) -> Patience {
        Patience {
            root_timeout: self.config.root_timeout,
            beacon_interval: self.config.beacon_interval,
        }
    }

    /// Whether the root is followed: by us if it is another's, by a reporting child if it is
    /// ours (a node alone is a root anyone may replace).
    fn followed(&self, links: &Links) -> bool {
        match &self.root {
            Some(r) if r.id() == self.me => self
                .heights
                .followers(r.round(), |p| self.is_child(p, links)),
            _ => true,
        }
    }

    /// A beacon from `from`: judged (see [`crate::succession`]), its signature checked when
    /// it would change anything, then taken.
    fn on_beacon(&mut self, from: NodeId, beacon: Beacon, links: &mut Links, now: Millis) {
        if self.yields_to(from, &beacon) {
            if !beacon.verify() {
                self.stats.beacons_forged += 1;
                return;
            }
            // The cut healed and the other part kept a root: this part follows it. One more
            // round of ours names it and hands over, so our followers take it too.
            self.sought = None;
            // (Named and handed over at once: its beacons reach our part through us.)
            self.handing = Some(Handing {
                named: true,
                ..Handing::to(beacon.root())
            });
            let term = self.root.as_ref().map_or(0, |r| r.term());
            self.originate(term, Basis::Named, links, now);
        }
        let followed = self.followed(links);
        let verdict = succession::judge(
            self.root.as_ref(),
            self.lost.as_ref(),
            followed,
            &beacon,
            self.patience(),
            now,
        );
        match verdict {
            Verdict::Ignore => {
                self.stats.beacons_ignored += 1;
                // The root's heir, heard before the round that hands over to it: in a later
                // term (an old round of the heir's, come late, is no news).
                let heir = self.root.as_ref().and_then(|r| r.beacon.heir);
                let later = self.root.as_ref().is_some_and(|r| beacon.term > r.term());
                if heir == Some(beacon.root()) && later && beacon.verify() {
                    self.early = Some((from, beacon));
                }
            }
            Verdict::Copy => {
                // The very round in hand, or a forgery of it.
                if self
                    .root
                    .as_ref()
                    .is_some_and(|r| r.beacon.sig == beacon.sig)
                {
                    self.on_copy(from, beacon.hops, links, now);
                } else {
                    self.stats.beacons_forged += 1;
                }
            }
            Verdict::Follow(_) if self.followed_rounds.contains(&beacon.round()) => {
                // A round followed before and left since: going back to it would let two
                // rounds pull each other's followers back and forth, each time passed on.
                self.stats.beacons_ignored += 1;
            }
            Verdict::Round | Verdict::Follow(_) => {
                if !beacon.verify() {
                    self.stats.beacons_forged += 1;
                    return;
                }
                if self.followed_rounds.len() >= FOLLOWED_ROUNDS_KEPT {
                    self.followed_rounds.pop_front();
                }
                self.followed_rounds.push_back(beacon.round());
                self.on_news(from, beacon, verdict, links, now);
            }
        }
    }

    /// Whether this node, root after taking over from a silent root, hears another root
    /// from that old root's node: the other part kept a root.
    fn yields_to(&self, from: NodeId, beacon: &Beacon) -> bool {
        self.sought.as_ref().is_some_and(|(r, _)| r.id == from)
            && beacon.root() != self.me
            && self.root.as_ref().is_some_and(|r| r.id() == self.me)
    }

    /// The first copy of a new round: of our root, or of a root we now follow.
    fn on_news(
        &mut self,
        from: NodeId,
        beacon: Beacon,
        verdict: Verdict,
        links: &mut Links,
        now: Millis,
    ) {
        let round = beacon.round();
        let hops = beacon.hops;
        // Only a round of the latest term this node knows names it: an old round that did,
        // come late, hands it nothing.
        let named_me = beacon.heir == Some(self.me) && beacon.term >= self.top_term;
        let handover = beacon.handover;
        let previous = self.root.take();
        match (verdict, previous) {
            (Verdict::Round, Some(mut r)) => {
                r.beacon = beacon;
                r.heard = now;
                r.rounds = r.rounds.saturating_add(1);
                self.root = Some(r);
            }
            (Verdict::Follow(basis), previous) => {
                if let Some(p) = &previous
                    && p.id() != self.me
                    && now.saturating_sub(p.heard) >= self.patience().heir()
                {
                    // Left after its silence: followed again if it turns out live.
                    self.lost = Some(Lost::of(p));
                } else if self.lost.as_ref().is_some_and(|l| l.root == beacon.root()) {
                    // The lost root, found again: lost no more. (Kept, its next round would
                    // pull us back from the heir it hands over to, and that heir's from it,
                    // round after round: found at 1,000 nodes under forged beacons, a storm
                    // that filled memory.)
                    self.lost = None;
                }
                if previous.as_ref().is_some_and(|p| p.id() == self.me) {
                    // Our own term ends: what we kept as root goes with it.
                    self.handing = None;
                    self.sought = None;
                }
                // What the old root said or whose beacon came early is of no use now.
                self.early = None;
                self.offer = None;
                self.root = Some(Root::new(beacon, basis, now));
            }
            (_, previous) => {
                self.root = previous;
                return;
            }
        }
        let same_root = verdict == Verdict::Round;
        self.top_term = self.top_term.max(round.1);
        if !self.shaping {
            // Flooding has no tree, but it elects a root all the same: a root gone silent is
            // how a cut in the overlay shows.
            if self.relay
                && let Some(b) = self.relayed()
            {
                self.send_beacon(&[Some(from)], b, links, true);
            }
            self.after_round(named_me, handover, round, links, now);
            return;
        }
        // The first copy of a new round: it came the fastest way from the root. Pass it on
        // at once; keep the parent if its copy follows closely.
        self.challenger = None;
        self.fresh_root = !same_root;
        match self.parent {
            Some(p)
                if p != from
                    && self.withholding(from, links, now)
                    && links.is_neighbor(&p)
                    && !self.withholding(p, links, now) =>
            {
                // The first copy came from a neighbour that withheld messages: the parent
                // stays, and its copy follows.
            }
            Some(p) if p != from && same_root && links.is_neighbor(&p) => {
                self.challenger = Some(from);
                self.timers
                    .insert(now + self.config.parent_stickiness, Timer::Switch(round));
            }
            Some(p) if p != from && !same_root && links.is_neighbor(&p) => {
                // A new root: the old tree still carries messages sent before the switch,
                // so its link is let go only after the new one has pushed.
                self.former_parent = Some(p);
                self.adopt(from, links);
            }
            _ => self.adopt(from, links),
        }
        if self.relay {
            // Not back to the parent either, even one kept while we wait or one being left:
            // a copy from a child would make it prune the link at once.
            let except = [Some(from), self.parent];
            let full = full_round(!same_root, handover, round.2);
            if let Some(b) = self.relayed() {
                self.send_beacon(&except, b, links, full);
            }
            self.heights.sent(round, now);
            self.copies = vec![(from, now, hops)];
            self.reported = None;
            // Once the parent is settled (its copy may follow the first closely).
            self.report_due = true;
            self.timers.insert(
                now + self.config.parent_stickiness + 1,
                Timer::Report(round),
            );
        }
        self.after_round(named_me, handover, round, links, now);
    }

    /// After a new round is passed on: the heir it names takes over now if it hands over,
    /// or when the root falls silent; an heir's beacon that came early is taken now.
    fn after_round(
        &mut self,
        named_me: bool,
        handover: bool,
        round: Round,
        links: &mut Links,
        now: Millis,
    ) {
        if named_me && self.relay {
            if handover {
                self.inherit(links, now);
                return;
            }
            self.timers
                .insert(now + self.config.root_timeout + 1, Timer::Inherit(round));
        }
        if handover
            && let Some((from, beacon)) = self.early.take()
            && links.is_neighbor(&from)
            && self.root.as_ref().and_then(|r| r.beacon.heir) == Some(beacon.root())
        {
            self.on_beacon(from, beacon, links, now);
        }
    }

    /// The round in hand as this node passes it on: one hop further than it came.
    fn relayed(&self) -> Option<Beacon> {
        let mut b = self.root.as_ref()?.beacon.clone();
        b.hops = b.hops.saturating_add(1);
        Some(b)
    }

    /// Takes the root as the heir the root named: in the next term, with what the old root
    /// offered (how far its tree reached) if it was the walk's step.
    fn inherit(&mut self, links: &mut Links, now: Millis) {
        let Some(r) = self.root.as_ref() else { return };
        let (old, term) = (r.id(), r.term());
        let offer = self.offer.take().filter(|o| o.0 == old && o.1 == term);
        // (In the last term there is no next one: the root stays where it is.)
        let Some(next) = term.checked_add(1) else {
            return;
        };
        self.originate(next, Basis::Named, links, now);
        if let Some((from, _, reach, back)) = offer {
            if back {
                self.declined.insert(from);
            } else {
                self.declined.clear();
                self.predecessor = Some((from, reach));
            }
        }
    }

    /// Another copy of the round in hand, from `from`, over `hops` hops.
    fn on_copy(&mut self, from: NodeId, hops: u32, links: &mut Links, now: Millis) {
        if !self.shaping {
            return;
        }
        let Some(round) = self.root.as_ref().map(|r| r.round()) else {
            return;
        };
        self.copies.push((from, now, hops));
        let first_hops = self.copies.first().map_or(u32::MAX, |c| c.2);
        if let Some(p) = self.parent
            && p != from
            && self.withholding(p, links, now)
            && !self.withholding(from, links, now)
        {
            // The parent withheld messages and was taken only as the one way to the root:
            // this copy's link is another.
            self.challenger = None;
            self.adopt(from, links);
            self.prune(p, links);
        } else if Some(from) == self.parent && self.challenger.is_some() && hops <= first_hops {
            // The parent's copy came soon enough, over no more hops: it stays; the first
            // copy's link is not the tree's.
            if let Some(c) = self.challenger.take() {
                self.prune(c, links);
            }
            self.adopt(from, links);
        } else if Some(from) == self.parent
            && let Some(c) = self.challenger.take()
        {
            // Soon enough but over more hops than the first: the parent's copy went round
            // through the first one's side. Kept, parents like this close a cycle that
            // beacons keep alive round after round, cut off from the root (found at 1,000
            // nodes: eight nodes that got every message by `GRAFT`). So the first copy's
            // link is the tree's now, and the parent's is let go a little later.
            self.adopt(c, links);
            self.timers
                .insert(now + self.config.switch_overlap, Timer::LetGo(from, round));
        } else if Some(from) == self.former_parent {
            // The parent we left: let it go once the new one pushes to us.
            self.former_parent = None;
            self.timers
                .insert(now + self.config.switch_overlap, Timer::LetGo(from, round));
        } else if Some(from) != self.parent {
            // A later copy of this round: that link is not the tree's. In a new root's first
            // round it may still be the old tree's, carrying messages sent before the switch:
            // it is let go a little later.
            if self.fresh_root {
                self.timers
                    .insert(now + self.config.switch_overlap, Timer::LetGo(from, round));
            } else {
                self.prune(from, links);
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
        let Some(current) = self.root.as_ref().map(|r| r.round()) else {
            return;
        };
        if current != round || current.0 == self.me || self.report_due {
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
        let Some(&(_, at, _)) = self.copies.iter().find(|(p, ..)| *p == parent) else {
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

    /// Makes `peer` the parent, grafting its link if it was lazy.
    /// A new parent is told even when our end of the link is eager already: its end may be
    /// lazy (each end made the link lazy or eager by whether it had a tree when the link came
    /// up), and a parent that does not push to its child cuts it off from every message but
    /// by `GRAFT` (found at 1,000 nodes: one node, round after round).
    fn adopt(&mut self, peer: NodeId, links: &mut Links) {
        let new = self.parent != Some(peer);
        if new {
            self.parent_since = self.clock;
        }
        self.parent = Some(peer);
        let grafted = links.graft(peer);
        if grafted {
            self.stats.grafts += 1;
        }
        if grafted || new {
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

    /// Passes a round on over every link but `except`, or, unless `full`, down the tree
    /// only: to children (not pages) and links no full round went over yet (see
    /// [`FULL_ROUND_EVERY`]).
    fn send_beacon(
        &mut self,
        except: &[Option<NodeId>],
        beacon: Beacon,
        links: &Links,
        full: bool,
    ) {
        if full {
            self.beaconed.clear();
        }
        for peer in links.all() {
            // A page hears the root from its parent only, in full rounds (and the first
            // after it links). It is a leaf: its other nodes' rounds would only have it weigh
            // paths no one depends on, and those nodes pass a round on when their parent's
            // copy comes rather than their first (the others send them none), so in the
            // rounds between full ones the page saw them slower than they are and flapped
            // between them, each flap a record for the map from the page and from both
            // nodes, sent to every peer. It learns of its other nodes' loss by keepalive, as
            // they learn of its, and a full round every 10 s is within the root timeout.
            let page = links.is_client(&peer);
            if page && !links.is_eager(&peer) {
                continue;
            }
            let down = links.is_eager(&peer) && !page;
            // (A full round reaches `except` too: they sent it to us.)
            let new = self.beaconed.insert(peer);
            if except.contains(&Some(peer)) || !(full || down || new) {
                continue;
            }
            self.stats.beacons += 1;
            self.out
                .push_back(Out::Send(peer, Message::Beacon(beacon.clone())));
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
            || self.top_publisher() == Some(self.me)
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

    /// The heir our beacons name while no handover is under way: the one we named before if
    /// it is still a child, else the child that hashes lowest with a signature of ours (so
    /// no child can grind its id to be drawn), none without children.
    fn draw_heir(&self, salt: &[u8], links: &Links) -> Option<NodeId> {
        let children: Vec<NodeId> = links
            .all()
            .into_iter()
            .filter(|p| self.is_child(p, links))
            .collect();
        if let Some(h) = self.heir
            && children.contains(&h)
        {
            return Some(h);
        }
        children.into_iter().min_by_key(|c| {
            let mut h = Sha256::new();
            h.update(salt);
            h.update(c.as_bytes());
            h.finalize()
        })
    }

    /// Starts a round as the root, in `term` (`basis`: how this node came to it).
    fn originate(&mut self, term: u64, basis: Basis, links: &Links, now: Millis) {
        let Some(key) = self.key.clone() else { return };
        self.own_seq += 1;
        self.fresh_root = self
            .root
            .as_ref()
            .is_none_or(|r| r.id() != self.me || r.term() != term);
        if self.fresh_root {
            self.term_rounds = 0;
            self.predecessor = None;
            self.heir = None;
            self.early = None;
        }
        self.term_rounds += 1;
        self.top_term = self.top_term.max(term);
        self.parent = None;
        self.challenger = None;
        let handover = match &mut self.handing {
            Some(h) if !h.named => {
                h.named = true;
                self.heir = Some(h.to);
                false
            }
            Some(h) if h.rounds_left > 0 => {
                h.rounds_left -= 1;
                self.heir = Some(h.to);
                true
            }
            _ => {
                self.handing = None;
                // Our own signature of the round: nobody else can know it beforehand.
                let salt =
                    key.sign(&[&term.to_be_bytes()[..], &self.own_seq.to_be_bytes()].concat());
                self.heir = self.draw_heir(salt.as_bytes(), links);
                false
            }
        };
        let beacon = Beacon::signed(
            &key,
            term,
            self.own_seq,
            self.address.clone(),
            self.heir,
            handover,
        );
        let round = beacon.round();
        match &mut self.root {
            Some(r) if !self.fresh_root => {
                r.beacon = beacon.clone();
                r.heard = now;
                r.rounds = r.rounds.saturating_add(1);
            }
            _ => self.root = Some(Root::new(beacon.clone(), basis, now)),
        }
        let full = full_round(self.fresh_root, handover, self.own_seq);
        self.send_beacon(&[], beacon, links, full);
        self.heights.sent(round, now);
        self.copies.clear();
        self.reported = None;
    }

    /// Takes over from a root gone silent (as its heir, or as anyone once the heir is silent
    /// too), and looks for it: it may be on the other side of a cut.
    fn take_over(&mut self, basis: Basis, links: &Links, now: Millis) {
        let Some(r) = self.root.clone() else { return };
        let lost = r.beacon.address.as_ref().and_then(|address| {
            PeerRecord::canonical(&PeerRecord {
                id: r.id(),
                address: address.to_string(),
                aliases: Vec::new(),
            })
        });
        if let Some(root) = lost {
            // Looked for from its next round on, if it is still the root then (see
            // [`SEEK_ROUNDS`]).
            self.sought = Some((root, SEEK_ROUNDS));
        }
        self.lost = Some(Lost::of(&r));
        self.originate(r.term().saturating_add(1), basis, links, now);
    }

    /// As a root that took over, looks for the old root, while it is sought: in its first
    /// round, and again in the next ones, as the join through it can be lost (traced in the
    /// simulator: it went over a link the other end was closing at that moment, and two
    /// complete parts, each node's view full of its own part, then stayed apart for good).
    fn seek_again(&mut self) {
        let Some((root, left)) = self.sought.as_mut().filter(|(_, left)| *left > 0) else {
            return;
        };
        *left -= 1;
        let root = root.clone();
        self.out.push_back(Out::RootLost(root));
    }

    /// Notes who published the message just seen: this node, another node (`Some`), or an
    /// author that is no node. As the root, when one node published nearly all of the
    /// last messages, hand it the root: the tree then is its own fastest-path tree, the best
    /// there is for its messages. With many publishers nobody is named, and the root stays.
    pub fn note_publisher(&mut self, author: Option<NodeId>, links: &Links, now: Millis) {
        if !self.relay || !self.shaping {
            return;
        }
        self.recent_publishers.push_back(author);
        while self.recent_publishers.len() > self.config.publisher_window {
            self.recent_publishers.pop_front();
        }
        let Some(r) = self.root.as_ref() else { return };
        let term = r.term();
        if r.id() != self.me || self.handing.is_some() {
            return;
        }
        if let Some(top) = self.top_publisher().filter(|p| *p != self.me) {
            // Named now, handed over at the next round.
            self.handing = Some(Handing::to(top));
            self.originate(term, Basis::Named, links, now);
        }
    }

    /// The node that published nearly all of the last messages seen, if one did.
    fn top_publisher(&self) -> Option<NodeId> {
        let window = self.config.publisher_window;
        if self.recent_publishers.len() < window {
            return None;
        }
        let first = (*self.recent_publishers.back()?)?;
        let count = self
            .recent_publishers
            .iter()
            .filter(|p| **p == Some(first))
            .count();
        (count as f64 >= self.config.publisher_share * window as f64).then_some(first)
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
        self.clock = now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Beacon => {
                    self.timers
                        .insert(now + self.config.beacon_interval, Timer::Beacon);
                    let Some(r) = self.root.clone() else {
                        self.originate(0, Basis::Formed, links, now);
                        continue;
                    };
                    // Lower ids take over first when the root and its heir fall silent.
                    let patience = self.patience().fallback(r.beacon.heir.is_some())
                        + self.me.spread(self.config.beacon_interval);
                    if r.id() == self.me {
                        self.seek_again();
                        if self.handing.is_none()
                            && let Some((next, back)) = self.successor(r.round(), links)
                        {
                            let reach = self.heights.reach(r.round(), |p| self.is_child(p, links));
                            let handover = Message::Handover {
                                term: r.term(),
                                reach,
                                back,
                            };
                            self.stats.handovers += 1;
                            self.out.push_back(Out::Send(next, handover));
                            self.handing = Some(Handing::to(next));
                        }
                        // Rounds go on until the heir's first: if it never comes, nothing
                        // is lost.
                        self.originate(r.term(), r.basis, links, now);
                    } else if now.saturating_sub(r.heard) > patience {
                        // Everyone who stops hearing the root waits, lower ids less, and the
                        // first to take over is heard by the rest before they do: one node
                        // per cut-off part looks for the old root.
                        self.take_over(Basis::Fallback, links, now);
                    }
                }
                Timer::Inherit(round) => {
                    if self.root.as_ref().is_some_and(|r| r.round() == round) {
                        self.take_over(Basis::Named, links, now);
                    }
                }
                Timer::Switch(round) => {
                    if self.root.as_ref().is_some_and(|r| r.round() == round)
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
                    if self.root.as_ref().is_some_and(|r| r.round() == round) {
                        self.send_report(round, links, now);
                    }
                }
                Timer::LetGo(peer, round) => {
                    if self.parent != Some(peer)
                        && self.root.as_ref().is_some_and(|r| r.round() == round)
                    {
                        self.prune(peer, links);
                    }
                }
            }
        }
    }
}
