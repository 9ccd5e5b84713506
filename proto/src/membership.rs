//! Membership: which peers this one keeps links with.
//!
//! **Nodes run HyParView.** Each keeps a small *active view* (links it holds open and gossips
//! over, [`Config::active_capacity`]) and a larger *passive view* (nodes it knows of and can
//! dial to repair the active view, [`Config::passive_capacity`]). A node joins through any
//! member (`JOIN`); the contact takes it into its active view and sends `FORWARD_JOIN` random
//! walks through the network, whose ends take it in too, so a newcomer gets several links
//! spread over the network rather than all at its contact. Every [`Config::shuffle_interval`]
//! a node sends a sample of its views on a random walk (`SHUFFLE`); the node where it ends
//! answers with a sample of its own (`SHUFFLE_REPLY`), and both keep what they learn in their
//! passive views. When an active link drops, a passive node is asked to take its place
//! (`NEIGHBOR`, high priority if no link is left, which is never refused). A node asked to
//! take one more neighbour when its view is full evicts a random one (`DISCONNECT`), which then
//! repairs its own view. Views are symmetric: a link is in both ends' active views.
//!
//! **Views resist eclipse.** Keys cost nothing, addresses do: the active view takes at most
//! [`ACTIVE_PER_GROUP`] peers of one address group (by the address a link came from, or the
//! one we dialed; see [`crate::group`]), and the passive view at most [`PASSIVE_PER_GROUP`]
//! addresses of one. [`OUTBOUND_SLOTS`] active slots are kept for links this node chose
//! from its passive view: a `JOIN` takes at most the rest, and one that finds them full
//! evicts no one (the newcomer's walks still go out, and their ends take it in), so a swarm
//! of joins cannot displace the neighbours already here. Only a node left with no neighbours
//! (a high-priority `NEIGHBOR`, which HyParView never refuses) evicts one, at random, but
//! never a pinned `--peer` nor a link this node chose; except that a node that joined through
//! another part of the network (a healed cut) takes the first [`JOIN_ANSWERS_TAKEN`] ends of
//! its join's walks as answers, in place of links it chose. Peers on loopback in this node's
//! own loopback group are not capped: on a machine with only 127.0.0.1, every local node
//! shares it.
//!
//! **A swarm shows itself by its keys.** Honest peers behind one address are a few; one
//! operator making keys is many. A group from which [`CROWDED_KEYS`] keys have linked to this
//! node lately is *crowded*: it holds one active slot, not two; its peers are evicted first,
//! dialed last, and never taken at a neighbour's cost (a full view refuses even their
//! high-priority requests, and a view missing a single link waits for someone else); a walk
//! naming one ends without a link (a swarm's members rewrite the walks they pass on to name
//! themselves). Every [`SETTLE_INTERVAL`] a node whose full view holds a crowded group's peer
//! asks a passive node of its choosing to take that slot, and a full view takes any other
//! node that asks in place of a crowded group's peer, so swarms are swapped out of views
//! that filled while the network formed. The count is of keys that completed a handshake
//! from the group, which no one can forge for another's address; a group of one or two
//! honest nodes is never crowded. (20 % sybils in one group, 1,000 nodes: 23 % of honest
//! active slots before, 2 % with it.)
//!
//! **The map shows a swarm spread thin.** A swarm of 50 groups, four keys each, each key
//! joining honest nodes of its own, shows few nodes two keys of a group by their links. But
//! every node is on the map, signed, at the address it is dialed at, so each
//! [`SETTLE_INTERVAL`] a node reads the map through a [`Directory`]: the groups it lists
//! [`CROWDED_KEYS`] nodes in. Where a neighbour is in one, the node dials one more node
//! listed there; once [`CONFIRMED_KEYS`] keys of the group have linked here, it is crowded
//! (the listing is believed only then: anyone can sign records of made-up keys at an honest
//! node's address, but only an operator holding a second address in its group answers
//! there). Until confirmed, a listed group's nodes are dialed after others. And a node whose
//! passive view holds no one worth asking (a swarm that names only itself fills passive
//! views; it cannot add to the map more than one record per key it runs) asks a node drawn
//! from the map ([`DIRECTORY_SAMPLE`]). (20 % sybils over 50 groups, 1,000 nodes: 25.5 % of
//! honest active slots before, 4.3 % with it.)
//!
//! **Views prefer fast links** (as X-BOT, HyParView's follow-up, does). A message's time to
//! the last node is the tree's depth in milliseconds, so every slow link a view holds makes
//! paths longer. Each handshake times its link (the engine tells [`Membership::timed`]); a
//! node with a full view now and then dials a node of its passive view just to time it, and
//! one whose round trip beats the slowest neighbour's by [`FAST_GAIN_MIN`] and a fifth is
//! asked to take that one's place (`NEIGHBOR` with `swap`). The node asked takes it if it has
//! room, or in place of its own slowest inbound link if the asker beats that one by as much
//! (at most one a [`FAST_TAKEN_EVERY`]). Neither side gives up a pinned link, the asked side
//! never one it chose, and the caps per address group and the avoidance of crowded and
//! listed groups hold as for any other link: a swap is a choice made within the eclipse
//! rules above, never over them. A node makes [`FAST_LOOKS`] looks once its view is first
//! full, the first after [`FAST_LOOK_EVERY`] and each wait twice the one before, and one more
//! whenever a neighbour fails (its place is filled at random): a network's swaps die down once
//! it has found its fast links, as each costs the map four new records. Where no link could gain that much (one machine), nothing is dialed. (1,000
//! simulated nodes, random senders, seeds 1-10: p99 200-244 ms and a graph diameter of
//! 129-136 ms, against 294-321 and 182-189 without.)
//!
//! **Browsers are clients.** A page cannot be dialed, so it is kept out of the nodes' views:
//! a node holds up to [`Config::max_clients`] of them beside its active view and tells each
//! some nodes to link to (`PEERS`). A client links to its pinned home node plus
//! [`Config::client_extra_links`] more, and replaces any it loses; short of nodes to try, it
//! asks its links again (an empty `PEERS`).
//!
//! The module knows peers by [`NodeId`] and never sees a connection: the engine tells it when
//! a handshake with a peer completes ([`Membership::connected`]) or a link ends, passes it the
//! membership frames, and carries out its [`Out`]s — sending, dialing a record (then sending
//! the message it asked for), closing, and telling the broadcast layer of neighbours.

use crate::Millis;
use crate::close::CloseReason;
use crate::dedup::Recent;
use crate::group::Group;
use crate::id::NodeId;
use crate::part::Part;
use crate::peer::{PeerKind, PeerRecord};
use crate::timers::Timers;
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, RngCore, SeedableRng};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// Tunables (defaults as iroh-gossip's, but for timeouts that suit WebSocket dials and an
/// active view of 6).
#[derive(Debug, Clone)]
pub struct Config {
    /// Six rather than iroh-gossip's five: one more link shortens every path, and messages
    /// ride a tree whose depth is what the time to the last node is made of (1,000 nodes,
    /// random senders: p99 372 -> 323 ms) for a few more `IHAVE`s (2.10 -> 2.48 frames per
    /// delivery).
    pub active_capacity: usize,
    pub passive_capacity: usize,
    /// Length of a `FORWARD_JOIN` and `SHUFFLE` random walk.
    pub active_walk: u8,
    pub shuffle_interval: Millis,
    /// How many active and passive entries a `SHUFFLE` carries.
    pub shuffle_active: usize,
    pub shuffle_passive: usize,
    /// How long a `NEIGHBOR` request may go unanswered.
    pub neighbor_timeout: Millis,
    /// How often to try again to fill an active (or client's) view that is not full.
    pub repair_interval: Millis,
    /// Browser peers a node holds beside its active view.
    pub max_clients: usize,
    /// Nodes a client links to besides its pinned home.
    pub client_extra_links: usize,
    /// Nodes named to a client in `PEERS`.
    pub peers_sample: usize,
    /// A client that can open only `wss://` links (a page served over https: browsers refuse
    /// plain WebSockets from a secure page) takes only nodes that advertise one.
    pub client_secure_only: bool,
    /// Whether joins spread by random walks and views are shuffled. Off, a node keeps the
    /// links it was given (`--peer`, and nodes that dialed it) and nothing more: for tests
    /// that need a fixed shape, and for layouts an operator wants exactly.
    pub random_walks: bool,
    /// Whether a node with a full view swaps its slowest neighbours for faster ones (see
    /// [`FAST_LOOK_EVERY`]). Off, views are HyParView's alone, as a baseline.
    pub fast_links: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            active_capacity: 6,
            passive_capacity: 30,
            active_walk: 6,
            shuffle_interval: 60_000,
            shuffle_active: 3,
            shuffle_passive: 4,
            neighbor_timeout: 2_000,
            repair_interval: 2_000,
            max_clients: 2_000,
            client_extra_links: 2,
            peers_sample: 8,
            client_secure_only: false,
            random_walks: true,
            fast_links: true,
        }
    }
}

/// Membership frames (see the module docs), as they go on the wire (`crate::wire`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type")]
pub enum Message {
    #[serde(rename = "JOIN")]
    Join,
    #[serde(rename = "FORWARD_JOIN")]
    ForwardJoin { peer: PeerRecord, ttl: u8 },
    /// `swap`: the asker found its link to us faster than its slowest, and drops that one for
    /// us; a full view may take it in place of its own slowest inbound link.
    #[serde(rename = "NEIGHBOR")]
    Neighbor {
        high: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        swap: bool,
    },
    #[serde(rename = "DISCONNECT")]
    Disconnect { alive: bool },
    #[serde(rename = "SHUFFLE")]
    Shuffle {
        origin: PeerRecord,
        peers: Vec<PeerRecord>,
        ttl: u8,
    },
    #[serde(rename = "SHUFFLE_REPLY")]
    ShuffleReply { peers: Vec<PeerRecord> },
    /// To a client: nodes it may link to.
    #[serde(rename = "PEERS")]
    Peers { peers: Vec<PeerRecord> },
}

/// What membership asks the engine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send to a peer we are connected to.
    Send(NodeId, Message),
    /// Make sure we are connected to `peer` (dial it if not), then send `then`.
    Connect {
        peer: PeerRecord,
        then: Option<Message>,
    },
    /// End the connection to this peer.
    Close(NodeId, CloseReason),
    /// A peer became a neighbour: the broadcast layer gossips with it.
    NeighborUp(NodeId),
    NeighborDown(NodeId),
}

/// Most active-view entries from one address group: a dozen keys made on one network hold
/// two of a node's six slots, not all of them.
pub const ACTIVE_PER_GROUP: usize = 2;
/// Most passive-view entries whose address lies in one address group.
pub const PASSIVE_PER_GROUP: usize = 2;
/// Active slots kept for links this node chose itself, from its passive view.
pub const OUTBOUND_SLOTS: usize = 2;
/// How long after a `JOIN` of ours its walks' ends may ask us (six hops, then a dial).
pub const JOIN_ANSWERED_WITHIN: Millis = 10_000;
/// How many of them are taken as if we had asked, evicting a link this node chose if need be:
/// enough to link two parts of a healed cut, few enough that a contact's sybils taking the
/// walks' ends replace at most this many of the links we chose.
pub const JOIN_ANSWERS_TAKEN: usize = 2;
/// Distinct keys linked to this node from one address group (by a completed handshake, over
/// [`CROWD_MEMORY`]) that make it *crowded*: one operator making keys. Honest peers behind one
/// address are a few; a sybil swarm is many. A crowded group holds one active slot, not
/// [`ACTIVE_PER_GROUP`], is evicted first and dialed last, and a full view is not made to
/// take one more of it, however it asks. (Gossipsub's IP colocation factor, P6, penalises
/// peers sharing an address in the same spirit.)
pub const CROWDED_KEYS: usize = 4;
/// Keys of a group the map lists [`CROWDED_KEYS`] nodes in that must have linked here (or
/// answered our dial) before that listing is believed: a record's address is its maker's
/// claim, and anyone may sign records of made-up keys at an honest node's address, but only
/// an operator holding a second address in the group can answer a dial there.
pub const CONFIRMED_KEYS: usize = 2;
/// Nodes from the map kept at hand as candidates when the passive view holds none worth
/// asking (a swarm that names only itself in every peer list fills passive views; it cannot
/// fill a map of signed records, one per node), drawn afresh at each settle.
pub const DIRECTORY_SAMPLE: usize = 16;
/// Address groups whose keys are counted at once (beyond, the first counted are forgotten).
pub const CROWD_GROUPS: usize = 1_024;
/// How long a key linked from a group is counted.
pub const CROWD_MEMORY: Millis = 600_000;
/// How long after its view is first full a node first looks for a faster neighbour than its
/// slowest (as X-BOT, HyParView's follow-up, does): it dials a node of its passive view, and
/// the handshake times the link. Each look doubles the wait, up to [`FAST_LOOK_MAX`],
/// whatever it found (and whether or not the view was full), so the swaps of a whole network
/// die down rather than go on reshaping the tree: with a swap starting the looks over, p99
/// on seeds 1-10 of 1,000 nodes ranged 187-372 ms, and tree diameters were not even measured
/// on three seeds (a node off the tree at the end).
pub const FAST_LOOK_EVERY: Millis = 10_000;
/// Looks a node makes once its view is first full: at 10, 20, 40, 80 and 160 s or so. Every
/// swap changes four nodes' links, and so their records on the map, which reach every peer:
/// looks every 21 minutes at most, for ever, cost 1,000 simulated nodes 1,831 B/s of `MAP`
/// each over their first twenty quiet minutes (against 356 without fast links). A neighbour
/// lost to a failure (its place filled at random) grants one more look.
pub const FAST_LOOKS: u32 = 5;
/// The longest wait before a look (one granted by a lost neighbour comes after the wait the
/// looks had reached, at most this).
pub const FAST_LOOK_MAX: Millis = 1_280_000;
/// A neighbour is swapped for a faster node only when the round trip gains at least this
/// much, and a fifth of the old one: less is a measure's noise, and every swap costs the tree
/// a rebuild around it. (On one machine no link gains this much, so nothing is swapped.)
pub const FAST_GAIN_MIN: Millis = 5;
/// A full view takes a faster asker in place of its slowest inbound link at most this often.
pub const FAST_TAKEN_EVERY: Millis = 10_000;

/// Whether a link of round trip `new` is worth one of `old` (see [`FAST_GAIN_MIN`]).
fn faster(new: Millis, old: Millis) -> bool {
    new + FAST_GAIN_MIN.max(old / 5) <= old
}

/// How often a node whose view holds a crowded group's peer asks one it chose from its
/// passive view to take that slot (plus up to a quarter more, at random).
pub const SETTLE_INTERVAL: Millis = 30_000;

/// What membership reads of the network's map at each settle (see the module docs):
/// which address groups it lists many nodes in, and nodes to ask beyond the passive view.
/// The engine gives it the map; a page, or a test, may give `()`, which lists no one.
pub trait Directory {
    /// The address groups in which the map lists at least `keys` nodes, by their records'
    /// addresses (at most [`crate::map::MAX_RECORDS`] / `keys` of them).
    fn crowded_groups(&self, keys: usize) -> HashSet<Group>;
    /// Up to `n` nodes the map lists, chosen at random with `rng`, other than `me`.
    fn sample(&self, me: NodeId, n: usize, rng: &mut dyn RngCore) -> Vec<PeerRecord>;
    /// The nodes the map lists at addresses in `group`.
    fn in_group(&self, group: Group) -> Vec<PeerRecord>;
}

impl Directory for () {
    fn crowded_groups(&self, _: usize) -> HashSet<Group> {
        HashSet::new()
    }
    fn sample(&self, _: NodeId, _: usize, _: &mut dyn RngCore) -> Vec<PeerRecord> {
        Vec::new()
    }
    fn in_group(&self, _: Group) -> Vec<PeerRecord> {
        Vec::new()
    }
}

/// How a peer comes to be taken into the active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Came {
    /// It joined through us (`JOIN`): taken if there is room, evicting no one.
    Join,
    /// It asked (`NEIGHBOR`): at high priority (it has no neighbour left) it may evict.
    Asked,
    /// It answered our own request (or asked at the same time): outbound.
    Answer,
}

/// A peer we have a completed handshake with.
#[derive(Debug, Clone)]
struct Link {
    /// How it is dialed (nodes).
    record: Option<PeerRecord>,
    /// The address group the link came from, or we dialed.
    group: Option<Group>,
    /// The operator asked for this link (`--peer`).
    pinned: bool,
}

/// What an active-view entry is, for eviction and caps.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Its address group, if capped (see [`Membership::capped`]).
    group: Option<Group>,
    /// The operator asked for this link (`--peer`): never evicted.
    pinned: bool,
    /// This node chose it (it answered our request).
    outbound: bool,
}

/// Below this many neighbours a node keeps trying its passive view on a timer.
const MIN_ACTIVE: usize = 2;
/// A page short of nodes to link to asks its nodes for more at most this often.
const ASK_EVERY: Millis = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Shuffle,
    Repair,
    /// A request may have gone unanswered.
    Lapse,
    /// Time to swap a crowded group's peer for one this node chooses.
    Settle,
    /// Time to look for a faster neighbour.
    Fast,
}

pub struct Membership {
    me: NodeId,
    kind: PeerKind,
    /// How others dial us (nodes only).
    own: Option<PeerRecord>,
    config: Config,
    rng: SmallRng,
    /// Peers we have a completed handshake with.
    connected: HashMap<NodeId, Link>,
    active: Vec<PeerRecord>,
    /// What each active-view entry is (the same keys as `active`).
    slots: HashMap<NodeId, Slot>,
    /// This node's own group, if on loopback: peers in it are not capped.
    own_group: Option<Group>,
    passive: Vec<PeerRecord>,
    /// Nodes we asked to be neighbours (or a client dialed), and when the request lapses.
    pending: Vec<(NodeId, Millis)>,
    /// After a `JOIN` of ours: until when its walks' ends may answer, and how many more may
    /// be taken as if we had asked them (see [`JOIN_ANSWERS_TAKEN`]).
    joined: Option<(Millis, usize)>,
    /// At a node: browser peers held outside the views.
    clients: BTreeSet<NodeId>,
    /// At a client: linked nodes, and which of them are pinned (its home).
    links: Vec<(NodeId, bool)>,
    /// At a client: nodes it may link to.
    candidates: Vec<PeerRecord>,
    /// What our last `SHUFFLE` sent, evicted first when its reply fills the passive view.
    last_shuffled: Vec<NodeId>,
    /// Nodes whose dial failed, or that refused us, lately: not asked again for a while.
    failed: Recent<NodeId>,
    /// Keys linked to us lately, by address group (up to [`CROWDED_KEYS`] each): which
    /// groups are crowded.
    crowd: Recent<Group, Vec<NodeId>>,
    /// Groups the map lists [`CROWDED_KEYS`] nodes in, as of the last settle: crowded once
    /// [`CONFIRMED_KEYS`] of their keys have linked here, and dialed last until then.
    listed: HashSet<Group>,
    /// Nodes drawn from the map at the last settle ([`DIRECTORY_SAMPLE`]), to ask where the
    /// passive view holds none worth asking; each is taken out when asked.
    listings: Vec<PeerRecord>,
    /// Draws them (apart from `rng`, so that a network with no group the map lists many
    /// nodes in makes the same choices as without the map).
    listings_rng: SmallRng,
    /// When a page last asked its nodes for more to link to.
    asked_at: Option<Millis>,
    timers: Timers<Timer>,
    repair_scheduled: bool,
    /// A client's repair on its timer may ask its nodes for more candidates.
    asking: bool,
    /// Each connected peer's handshake round trip (see [`Membership::timed`]): one entry per
    /// connection, dropped with it, so bounded as connections are (the links' caps).
    rtt: HashMap<NodeId, Millis>,
    /// A node dialed to time its link, and until when the look waits for it.
    timing: Option<(NodeId, Millis)>,
    /// A faster node asked to take a neighbour's place: (it, the neighbour it replaces).
    swapping: Option<(NodeId, NodeId)>,
    /// How long until the next look for a faster neighbour.
    fast_wait: Millis,
    /// The looks have started (once the view was first full).
    looking: bool,
    /// Looks left to make (see [`FAST_LOOKS`]), and whether the next is scheduled.
    looks_left: u32,
    fast_armed: bool,
    /// When a faster asker last took an inbound link's place here.
    fast_taken_at: Option<Millis>,
    /// The looks' timing (apart from `rng`, so a network where nothing can gain chooses as
    /// without them).
    fast_rng: SmallRng,
    out: VecDeque<Out>,
}

impl Membership {
    /// Membership for peer `me`. A node passes its own record (how others dial it); a client
    /// (kind `Browser`) passes none.
    pub fn new(
        me: NodeId,
        kind: PeerKind,
        own: Option<PeerRecord>,
        config: Config,
        seed: u64,
        now: Millis,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut timers = Timers::default();
        if kind == PeerKind::Node {
            // A newcomer's passive view is nearly empty until it shuffles, so the first
            // shuffle comes soon (spread, so a network started at once does not shuffle at
            // once); later ones every interval.
            let first: Millis = rng.random_range(2_000..=10_000);
            timers.insert(now + first.min(config.shuffle_interval), Timer::Shuffle);
            timers.insert(
                now + SETTLE_INTERVAL + rng.random_range(0..=SETTLE_INTERVAL / 4),
                Timer::Settle,
            );
        }
        let fast_rng = SmallRng::seed_from_u64(seed ^ 0x6661_7374);
        let own_group = own
            .as_ref()
            .and_then(|r| Group::of_address(&r.address))
            .filter(Group::is_loopback);
        Self {
            me,
            kind,
            own,
            own_group,
            slots: HashMap::new(),
            failed: Recent::new(1_024, 4 * config.repair_interval.max(1)),
            crowd: Recent::new(CROWD_GROUPS, CROWD_MEMORY),
            listed: HashSet::new(),
            listings: Vec::new(),
            listings_rng: SmallRng::seed_from_u64(seed ^ 0x6c69_7374),
            config,
            rng,
            connected: HashMap::new(),
            active: Vec::new(),
            passive: Vec::new(),
            pending: Vec::new(),
            joined: None,
            clients: BTreeSet::new(),
            links: Vec::new(),
            candidates: Vec::new(),
            last_shuffled: Vec::new(),
            timers,
            repair_scheduled: false,
            asking: false,
            asked_at: None,
            rtt: HashMap::new(),
            timing: None,
            swapping: None,
            fast_wait: FAST_LOOK_EVERY,
            looking: false,
            looks_left: 0,
            fast_armed: false,
            fast_taken_at: None,
            fast_rng,
            out: VecDeque::new(),
        }
    }

    /// The active view (nodes), or a client's linked nodes.
    pub fn active(&self) -> Vec<NodeId> {
        match self.kind {
            PeerKind::Node => self.active.iter().map(|r| r.id).collect(),
            PeerKind::Browser => self.links.iter().map(|&(id, _)| id).collect(),
        }
    }

    pub fn passive(&self) -> &[PeerRecord] {
        &self.passive
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The pages held here, by id.
    pub fn client_ids(&self) -> impl Iterator<Item = &NodeId> {
        self.clients.iter()
    }

    /// Every node this peer knows how to dial: active and passive views (a client's
    /// candidates).
    pub fn known_nodes(&self) -> impl Iterator<Item = &PeerRecord> {
        self.active
            .iter()
            .chain(&self.passive)
            .chain(&self.candidates)
            .filter(|r| r.is_dialable())
    }

    /// Whether `peer` is a neighbour (gossiped with) or one we are waiting on. Connections to
    /// anyone else are transient, and the engine closes them once idle.
    pub fn wants(&self, peer: NodeId) -> bool {
        self.is_neighbor(peer) || self.pending.iter().any(|&(p, _)| p == peer)
    }

    pub fn is_neighbor(&self, peer: NodeId) -> bool {
        self.active.iter().any(|r| r.id == peer)
            || self.clients.contains(&peer)
            || self.links.iter().any(|&(id, _)| id == peer)
    }

    // ----- events from the engine -----

    /// The handshake with `peer` took `rtt` (told just before [`Membership::connected`]).
    pub fn timed(&mut self, peer: NodeId, rtt: Millis) {
        self.rtt.insert(peer, rtt);
    }

    /// A handshake with `peer` completed. `record` is how it can be dialed (nodes);
    /// `pinned` says we dialed it because the operator (or, for a page, its home) asked;
    /// `elsewhere` says it belongs to another overlay (its broadcast tree has another root:
    /// the two sides of a healed partition); `group` is the address group the link came from
    /// (or we dialed).
    #[allow(clippy::too_many_arguments)]
    pub fn connected(
        &mut self,
        peer: NodeId,
        kind: PeerKind,
        record: Option<PeerRecord>,
        pinned: bool,
        elsewhere: bool,
        group: Option<Group>,
        now: Millis,
    ) {
        // A node with no address dialed us: a neighbour like any other over this link, but
        // never named to others to dial (receivers drop what they cannot dial, and it never
        // enters a passive view).
        let record =
            record.or_else(|| (kind == PeerKind::Node).then(|| PeerRecord::unlisted(peer)));
        let link = Link {
            record: record.clone(),
            group,
            pinned,
        };
        self.connected.insert(peer, link);
        if kind == PeerKind::Node {
            self.count_in_crowd(peer, group, now);
        }
        if let Some(r) = &record {
            // A node's own handshake is the authority on its addresses.
            for view in [&mut self.active, &mut self.passive] {
                if let Some(known) = view.iter_mut().find(|k| k.id == peer) {
                    *known = r.clone();
                }
            }
        }
        match (self.kind, kind) {
            (PeerKind::Node, PeerKind::Browser) => {
                if self.clients.len() >= self.config.max_clients {
                    self.out
                        .push_back(Out::Close(peer, CloseReason::TooManyClients));
                    return;
                }
                self.clients.insert(peer);
                self.out.push_back(Out::NeighborUp(peer));
                let peers = self.sample_for_client();
                self.out
                    .push_back(Out::Send(peer, Message::Peers { peers }));
            }
            (PeerKind::Node, PeerKind::Node) => {
                if record.is_none() || self.active.iter().any(|r| r.id == peer) {
                    return;
                }
                let asked = self.pending.iter().any(|&(p, _)| p == peer);
                let alone = self.active.is_empty() && self.pending.is_empty();
                // With no one left to repair from, a node may be in a small island (nodes that
                // joined each other at once can form one): join again through whoever
                // reaches it from outside — its pinned peer revisited, or a node revisiting
                // it — whose random walks link it to the rest.
                let stranded = !asked
                    && self.passive.is_empty()
                    && self.active.len() < self.config.active_capacity;
                // A pinned peer on the other side of a healed partition: the two overlays
                // know nothing of each other any more (failed nodes are dropped from passive
                // views), so join through it, and its walks merge them.
                let merge = pinned && elsewhere && !asked;
                if alone || stranded || merge {
                    self.await_answer(peer, now);
                    if merge {
                        self.joining(now);
                    }
                    self.out.push_back(Out::Send(peer, Message::Join));
                } else if pinned && !asked && self.room() {
                    self.await_answer(peer, now);
                    self.out.push_back(Out::Send(
                        peer,
                        Message::Neighbor {
                            high: false,
                            swap: false,
                        },
                    ));
                } else if self.timing.is_some_and(|(p, _)| p == peer) {
                    self.timing = None;
                    self.consider_faster(peer, now);
                }
            }
            (PeerKind::Browser, PeerKind::Node) => {
                self.pending.retain(|&(p, _)| p != peer);
                if !self.links.iter().any(|&(id, _)| id == peer) {
                    self.links.push((peer, pinned));
                    self.out.push_back(Out::NeighborUp(peer));
                }
            }
            (PeerKind::Browser, PeerKind::Browser) => {
                self.out
                    .push_back(Out::Close(peer, CloseReason::BrowserCannotAccept));
            }
        }
    }

    /// The connection to `peer` ended.
    pub fn disconnected(&mut self, peer: NodeId, now: Millis) {
        self.connected.remove(&peer);
        self.forget_timing(peer);
        self.pending.retain(|&(p, _)| p != peer);
        let was_neighbor = if let Some(i) = self.active.iter().position(|r| r.id == peer) {
            // A failed neighbour is not kept in the passive view: it may be gone for good. Its
            // place is filled at random, so one more look for a faster node is due.
            self.remove_active(i);
            if self.looking {
                self.looks_left = self.looks_left.max(1);
                self.arm_look(now);
            }
            true
        } else if self.clients.remove(&peer) {
            true
        } else if let Some(i) = self.links.iter().position(|&(id, _)| id == peer) {
            self.links.remove(i);
            true
        } else {
            false
        };
        if was_neighbor {
            self.out.push_back(Out::NeighborDown(peer));
        }
        self.repair(now);
    }

    /// A dial membership asked for failed: the node is dropped from the passive view.
    pub fn connect_failed(&mut self, peer: NodeId, now: Millis) {
        self.forget_timing(peer);
        self.passive.retain(|r| r.id != peer);
        self.candidates.retain(|r| r.id != peer);
        self.pending.retain(|&(p, _)| p != peer);
        self.failed.insert(peer, (), now);
        self.repair(now);
    }

    /// A membership frame from `from`.
    pub fn message(&mut self, from: NodeId, message: Message, now: Millis) {
        let from_record = self.connected.get(&from).and_then(|l| l.record.clone());
        match (self.kind, message) {
            (PeerKind::Browser, Message::Peers { peers }) => {
                let secure = self.config.client_secure_only;
                for p in peers
                    .iter()
                    .filter_map(PeerRecord::canonical)
                    .filter(|p| !secure || p.address.starts_with("wss://"))
                {
                    if p.id != self.me && !self.candidates.iter().any(|c| c.id == p.id) {
                        self.candidates.push(p);
                    }
                }
                let excess = self.candidates.len().saturating_sub(64);
                self.candidates.drain(..excess);
                self.repair(now);
            }
            (PeerKind::Browser, _) => {}
            (PeerKind::Node, Message::Join) => {
                let Some(record) = from_record else { return };
                // Where the slots others may take are full, the newcomer is not let in at the
                // cost of a neighbour already here, but its walks still go out: their ends,
                // which dial it themselves, take it in. One whose address group has its
                // share here already is sent nowhere else either.
                let crowded = self.crowded(from);
                self.add_active(record.clone(), Came::Join);
                if crowded || !self.config.random_walks {
                    return;
                }
                let walk = self.config.active_walk;
                for other in self.active.iter().filter(|r| r.id != from) {
                    self.out.push_back(Out::Send(
                        other.id,
                        Message::ForwardJoin {
                            peer: record.clone(),
                            ttl: walk,
                        },
                    ));
                }
            }
            (PeerKind::Node, Message::ForwardJoin { peer, ttl }) => {
                let Some(peer) = peer.canonical() else { return };
                if peer.id == self.me || self.active.iter().any(|r| r.id == peer.id) {
                    return;
                }
                // A walk that names a crowded group's node ends here, linking no one: a
                // swarm's members rewrite the walks they pass on to name themselves.
                if self.record_crowded(&peer) && self.active.len() >= MIN_ACTIVE {
                    return;
                }
                if ttl == 0 || self.active.len() <= 1 {
                    self.request(peer, true, now);
                    return;
                }
                // (HyParView adds it to the passive view at one step of the walk; every step
                // learning it fills passive views sooner after a network starts.)
                self.add_passive(peer.clone());
                match self.random_active_except(&[from, peer.id]) {
                    Some(next) => self
                        .out
                        .push_back(Out::Send(next, Message::ForwardJoin { peer, ttl: ttl - 1 })),
                    None => self.request(peer, true, now),
                }
            }
            (PeerKind::Node, Message::Neighbor { high, swap }) => {
                let Some(record) = from_record else { return };
                if self.active.iter().any(|r| r.id == from) {
                    return;
                }
                if self.pending.iter().any(|&(p, _)| p == from) {
                    // The answer to our own request (or a crossing request): both agree. If
                    // we asked it to take a slower neighbour's place, that one goes now.
                    if let Some((_, old)) = self.swapping.take_if(|(p, _)| *p == from) {
                        let full = self.active.len() >= self.config.active_capacity;
                        if let Some(i) = self.active.iter().position(|r| r.id == old)
                            && full
                        {
                            self.evict(i);
                        }
                    }
                    self.add_active(record, Came::Answer);
                } else if swap && let Some(i) = self.takes_faster(from, now) {
                    // Faster than our slowest inbound link: it takes that one's place.
                    self.fast_taken_at = Some(now);
                    self.evict(i);
                    self.add_active(record, Came::Asked);
                } else if high && self.answers_our_join(now) {
                    // A walk of our own join ended there: as good as an answer to us. (Taken
                    // as asked, it finds every slot one this node chose and is refused; two
                    // complete parts of a healed cut then stayed apart for good.)
                    self.add_active(record, Came::Answer);
                } else if self.takes_asker(from, high) {
                    self.add_active(record, Came::Asked);
                } else {
                    // Refused, but told of others to try, so a node in a small part of the
                    // network can still find its way out.
                    let mut peers: Vec<PeerRecord> = self
                        .active
                        .iter()
                        .chain(&self.passive)
                        .filter(|r| r.id != from)
                        .cloned()
                        .collect();
                    peers.shuffle(&mut self.rng);
                    peers.truncate(self.config.shuffle_active + self.config.shuffle_passive);
                    self.out
                        .push_back(Out::Send(from, Message::ShuffleReply { peers }));
                    self.out
                        .push_back(Out::Send(from, Message::Disconnect { alive: true }));
                    self.out
                        .push_back(Out::Close(from, CloseReason::ActiveViewFull));
                }
            }
            (PeerKind::Node, Message::Disconnect { alive }) => {
                let was_pending = self.pending.iter().any(|&(p, _)| p == from);
                self.swapping.take_if(|(p, _)| *p == from);
                self.pending.retain(|&(p, _)| p != from);
                if let Some(i) = self.active.iter().position(|r| r.id == from) {
                    self.remove_active(i);
                    self.out.push_back(Out::NeighborDown(from));
                }
                if alive && let Some(record) = from_record {
                    self.add_passive(record);
                }
                self.out
                    .push_back(Out::Close(from, CloseReason::Disconnected));
                if was_pending {
                    // Refused: do not ask the same node again at once.
                    self.failed.insert(from, (), now);
                }
                self.repair(now);
            }
            (PeerKind::Node, Message::Shuffle { origin, peers, ttl }) => {
                let Some(origin) = origin.canonical() else {
                    return;
                };
                if ttl > 0
                    && self.active.len() > 1
                    && let Some(next) = self.random_active_except(&[from, origin.id])
                {
                    self.out.push_back(Out::Send(
                        next,
                        Message::Shuffle {
                            origin,
                            peers,
                            ttl: ttl - 1,
                        },
                    ));
                    return;
                }
                if origin.id == self.me {
                    return;
                }
                let mut reply: Vec<PeerRecord> = self
                    .passive
                    .iter()
                    .filter(|r| r.id != origin.id && !peers.iter().any(|p| p.id == r.id))
                    .cloned()
                    .collect();
                reply.shuffle(&mut self.rng);
                reply.truncate(peers.len() + 1);
                self.out.push_back(Out::Connect {
                    peer: origin.clone(),
                    then: Some(Message::ShuffleReply { peers: reply }),
                });
                for p in
                    std::iter::once(origin).chain(peers.iter().filter_map(PeerRecord::canonical))
                {
                    self.add_passive(p);
                }
            }
            (PeerKind::Node, Message::ShuffleReply { peers }) => {
                for p in peers.iter().filter_map(PeerRecord::canonical) {
                    self.add_passive(p);
                }
                self.last_shuffled.clear();
            }
            (PeerKind::Node, Message::Peers { .. }) => {
                // A page short of nodes to link to asks again.
                if self.clients.contains(&from) {
                    let peers = self.sample_for_client();
                    self.out
                        .push_back(Out::Send(from, Message::Peers { peers }));
                }
            }
        }
        if self.kind == PeerKind::Node && self.active.len() < self.config.active_capacity {
            self.repair(now);
        }
        // Looks for faster neighbours start once the view is first full.
        let full = self.active.len() >= self.config.active_capacity;
        if full && !self.looking && self.config.fast_links {
            self.looking = true;
            self.looks_left = FAST_LOOKS;
            self.arm_look(now);
        }
    }

    /// Joins again through `peer`, which may be in a part of the network we are cut off
    /// from (the root we lost): as with a pinned peer found in another overlay, its random
    /// walks link us to its part, which merges the two.
    pub fn reach(&mut self, peer: PeerRecord, now: Millis) {
        let busy = self.pending.iter().any(|&(p, _)| p == peer.id);
        if self.kind != PeerKind::Node || peer.id == self.me || self.is_neighbor(peer.id) || busy {
            return;
        }
        self.await_answer(peer.id, now);
        self.joining(now);
        self.out.push_back(Out::Connect {
            peer,
            then: Some(Message::Join),
        });
    }

    /// Notes a `JOIN` of ours into another part of the network going out (a healed cut):
    /// the ends of its walks will ask us at high priority, and their links are what merges
    /// the parts. (Not a newcomer's first join: its view has room, and taking walks' ends in
    /// place of links it chose while a network forms churned it, measured at 60 nodes: RMR
    /// 0.03 -> 0.31.)
    fn joining(&mut self, now: Millis) {
        self.joined = Some((now + JOIN_ANSWERED_WITHIN, JOIN_ANSWERS_TAKEN));
    }

    /// Whether a high-priority request now is (as far as we can tell) the end of one of our
    /// join's walks, and may be taken as an answer; counts it if so.
    fn answers_our_join(&mut self, now: Millis) -> bool {
        match &mut self.joined {
            Some((until, left)) if now <= *until && *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    // ----- views -----

    fn room(&self) -> bool {
        self.active.len() + self.pending.len() < self.config.active_capacity
    }

    /// Whether a peer that joins through us (rather than one this node chose, or one that
    /// asks while repairing its view) may take a free slot.
    fn room_for_inbound(&self) -> bool {
        let inbound = self.slots.values().filter(|s| !s.outbound).count();
        self.active.len() < self.config.active_capacity
            && inbound + OUTBOUND_SLOTS < self.config.active_capacity
    }

    /// `group`, unless it is this node's own loopback group (see the module docs).
    fn capped(&self, group: Option<Group>) -> Option<Group> {
        group.filter(|g| Some(*g) != self.own_group)
    }

    /// Whether `peer`'s address group holds its share of the active view already (a pinned
    /// peer never does).
    fn crowded(&self, peer: NodeId) -> bool {
        let (group, pinned) = self.link_of(peer);
        !pinned
            && self.capped(group).is_some_and(|g| {
                let share = if self.is_crowded(Some(g)) {
                    1
                } else {
                    ACTIVE_PER_GROUP
                };
                self.slots.values().filter(|s| s.group == Some(g)).count() >= share
            })
    }

    /// Notes that `peer` linked to us from `group`.
    fn count_in_crowd(&mut self, peer: NodeId, group: Option<Group>, now: Millis) {
        let Some(g) = self.capped(group) else { return };
        self.crowd.expire(now);
        if let Some(keys) = self.crowd.get_mut(&g) {
            if keys.len() < CROWDED_KEYS && !keys.contains(&peer) {
                keys.push(peer);
            }
        } else {
            self.crowd.insert(g, vec![peer], now);
        }
        self.keep_one_if_crowded(g);
        self.swap_crowded(now);
    }

    /// Where `g` is crowded, it keeps one slot of the active view (and any pinned).
    fn keep_one_if_crowded(&mut self, g: Group) {
        if !self.is_crowded(Some(g)) {
            return;
        }
        loop {
            let held: Vec<usize> = (0..self.active.len())
                .filter(|&i| {
                    let s = &self.slots[&self.active[i].id];
                    !s.pinned && s.group == Some(g)
                })
                .collect();
            let Some(&i) = held.get(1) else { break };
            self.evict(i);
        }
    }

    /// Whether `group` is crowded (see [`CROWDED_KEYS`]).
    fn is_crowded(&self, group: Option<Group>) -> bool {
        self.capped(group).is_some_and(|g| {
            let keys = self.keys_seen(g);
            keys >= CROWDED_KEYS || (keys >= CONFIRMED_KEYS && self.listed.contains(&g))
        })
    }

    /// How many keys of `group` have linked here lately.
    fn keys_seen(&self, group: Group) -> usize {
        self.crowd.get(&group).map_or(0, Vec::len)
    }

    /// How much a candidate from the passive view (or the map) is to be avoided: 0 for most,
    /// 1 in a group the map lists many nodes in (not yet confirmed here), 2 in a crowded one.
    fn avoid(&self, record: &PeerRecord) -> u8 {
        let group = self.capped(Group::of_address(&record.address));
        if self.is_crowded(group) {
            2
        } else {
            u8::from(group.is_some_and(|g| self.listed.contains(&g)))
        }
    }

    /// Whether `peer`'s link comes from a crowded group (a pinned one never does).
    fn crowded_link(&self, peer: NodeId) -> bool {
        let (group, pinned) = self.link_of(peer);
        !pinned && self.is_crowded(group)
    }

    /// Whether a node that asks to be a neighbour (`NEIGHBOR`, not answering ours) is taken.
    fn takes_asker(&self, from: NodeId, high: bool) -> bool {
        let active = self.active.len();
        if self.crowded_link(from) {
            // A crowded group's peer is taken only by a view short of more than one link,
            // never at a neighbour's cost: the swarm it belongs to has keys enough to link
            // to, and one let into every free slot is swapped out again (see `settle`),
            // churning the tree.
            active + 1 < self.config.active_capacity
        } else {
            // Any other takes a free slot or a crowded group's, or may evict at high priority.
            high || active < self.config.active_capacity || !self.crowded_slots().is_empty()
        }
    }

    /// The active-view entries of crowded groups that may be evicted (not pinned), by index.
    fn crowded_slots(&self) -> Vec<usize> {
        (0..self.active.len())
            .filter(|&i| {
                let s = &self.slots[&self.active[i].id];
                !s.pinned && self.is_crowded(s.group)
            })
            .collect()
    }

    /// Whether a passive entry's address lies in a crowded group.
    fn record_crowded(&self, record: &PeerRecord) -> bool {
        self.is_crowded(Group::of_address(&record.address))
    }

    /// The address group `peer`'s link counts under (if capped), and whether it is pinned.
    fn link_of(&self, peer: NodeId) -> (Option<Group>, bool) {
        self.connected
            .get(&peer)
            .map_or((None, false), |l| (self.capped(l.group), l.pinned))
    }

    fn remove_active(&mut self, i: usize) -> PeerRecord {
        let record = self.active.remove(i);
        self.slots.remove(&record.id);
        record
    }

    /// Takes `record` into the active view, if its address group has room there. If the view
    /// is full, a neighbour it may displace is evicted (not for a `JOIN`, which is refused,
    /// as one is where the slots joins may take are full: see the module docs). The peer is
    /// told with a `NEIGHBOR` however it came: an answer is confirmed too, as a request that
    /// crossed ours may have been lost with a connection (where it was not, the peer has us
    /// already and ignores it). False if refused.
    fn add_active(&mut self, record: PeerRecord, came: Came) -> bool {
        let peer = record.id;
        self.pending.retain(|&(p, _)| p != peer);
        if peer == self.me || self.active.iter().any(|r| r.id == peer) {
            return true;
        }
        let (group, pinned) = self.link_of(peer);
        let outbound = came == Came::Answer;
        let evict = came != Came::Join;
        let crowded = self.crowded(peer);
        let full = self.active.len() >= self.config.active_capacity;
        if crowded || full || (came == Came::Join && !self.room_for_inbound()) {
            // Who may be displaced, at random (as HyParView): not a pinned link, and, for a
            // peer that asked, not one this node chose. (Evicting the newest instead, so
            // that askers displace each other, made trees deeper after churn: 20 % of 1,000
            // nodes killed, p99 2,225 ms against 1,534 at random.)
            let victim = if crowded || !evict {
                None
            } else {
                let open: Vec<usize> = (0..self.active.len())
                    .filter(|&i| {
                        let s = &self.slots[&self.active[i].id];
                        !s.pinned && (outbound || !s.outbound)
                    })
                    .collect();
                // A crowded group's peer goes first, however it came.
                let crowded = self.crowded_slots();
                if crowded.is_empty() {
                    open.choose(&mut self.rng).copied()
                } else {
                    crowded.choose(&mut self.rng).copied()
                }
            };
            let Some(i) = victim else {
                self.out
                    .push_back(Out::Send(peer, Message::Disconnect { alive: true }));
                self.out
                    .push_back(Out::Close(peer, CloseReason::ActiveViewFull));
                return false;
            };
            self.evict(i);
        }
        self.passive.retain(|r| r.id != peer);
        self.slots.insert(
            peer,
            Slot {
                group,
                pinned,
                outbound,
            },
        );
        self.active.push(record);
        self.out.push_back(Out::Send(
            peer,
            Message::Neighbor {
                high: true,
                swap: false,
            },
        ));
        self.out.push_back(Out::NeighborUp(peer));
        true
    }

    /// Ends the link of active-view entry `i`, keeping it in the passive view.
    fn evict(&mut self, i: usize) {
        let evicted = self.remove_active(i);
        self.out
            .push_back(Out::Send(evicted.id, Message::Disconnect { alive: true }));
        self.out
            .push_back(Out::Close(evicted.id, CloseReason::Disconnected));
        self.out.push_back(Out::NeighborDown(evicted.id));
        self.add_passive(evicted);
    }

    fn add_passive(&mut self, record: PeerRecord) {
        if record.id == self.me
            || !record.is_dialable()
            || self.active.iter().any(|r| r.id == record.id)
        {
            return;
        }
        // Only a node's own handshake may change what we know of its addresses.
        if self.passive.iter().any(|r| r.id == record.id) {
            return;
        }
        if let Some(group) = self.capped(Group::of_address(&record.address)) {
            let same = self
                .passive
                .iter()
                .filter(|r| Group::of_address(&r.address) == Some(group))
                .count();
            if same >= PASSIVE_PER_GROUP {
                return;
            }
        }
        if self.passive.len() >= self.config.passive_capacity {
            // Make room, preferably with an entry we just gave away in a shuffle.
            let i = self
                .passive
                .iter()
                .position(|r| self.last_shuffled.contains(&r.id))
                .unwrap_or_else(|| self.rng.random_range(0..self.passive.len()));
            self.passive.remove(i);
        }
        self.passive.push(record);
    }

    /// Asks `peer` to become a neighbour, dialing it if need be.
    fn request(&mut self, peer: PeerRecord, high: bool, now: Millis) {
        if self.pending.iter().any(|&(p, _)| p == peer.id) {
            return;
        }
        self.await_answer(peer.id, now);
        self.out.push_back(Out::Connect {
            peer,
            then: Some(Message::Neighbor { high, swap: false }),
        });
    }

    /// Notes that we wait for `peer` to answer a request, until the request lapses.
    fn await_answer(&mut self, peer: NodeId, now: Millis) {
        let until = now + self.config.neighbor_timeout;
        self.pending.push((peer, until));
        self.timers.insert(until, Timer::Lapse);
    }

    fn random_active_except(&mut self, except: &[NodeId]) -> Option<NodeId> {
        let choices: Vec<NodeId> = self
            .active
            .iter()
            .map(|r| r.id)
            .filter(|id| !except.contains(id))
            .collect();
        choices.choose(&mut self.rng).copied()
    }

    /// Fills the active view from the passive one (a client's links from its candidates),
    /// and keeps trying every [`Config::repair_interval`] while it is not full.
    fn repair(&mut self, now: Millis) {
        self.failed.expire(now);
        let tried = match self.kind {
            PeerKind::Node => {
                while self.room() {
                    let Some(peer) = self.candidate(2) else {
                        break;
                    };
                    // With no neighbour left a request must not be refused (HyParView), nor with
                    // one: two nodes left with only each other would otherwise be refused by
                    // every full view for ever.
                    let high = self.active.len() < MIN_ACTIVE;
                    self.request(peer, high, now);
                }
                // Keep trying on a timer only while the view is fragile; otherwise a view
                // that is not full is fine, and failures and refusals trigger repairs anyway.
                let fragile = self.active.len() < MIN_ACTIVE;
                fragile && !self.passive.is_empty()
            }
            PeerKind::Browser => {
                loop {
                    let extra = self.links.iter().filter(|&&(_, pinned)| !pinned).count();
                    if extra + self.pending.len() >= self.config.client_extra_links {
                        break false;
                    }
                    let choices: Vec<usize> = (0..self.candidates.len())
                        .filter(|&i| {
                            let id = self.candidates[i].id;
                            !self.failed.contains(&id)
                                && !self.pending.iter().any(|&(p, _)| p == id)
                                && !self.links.iter().any(|&(l, _)| l == id)
                        })
                        .collect();
                    let Some(&i) = choices.choose(&mut self.rng) else {
                        // Out of candidates: try again later, and then ask the linked nodes
                        // for more (a node that knew no one when we came may know some now).
                        let due = self.asked_at.is_none_or(|at| now >= at + ASK_EVERY);
                        if self.asking && due {
                            self.asked_at = Some(now);
                            for &(node, _) in &self.links {
                                self.out.push_back(Out::Send(
                                    node,
                                    Message::Peers { peers: Vec::new() },
                                ));
                            }
                        }
                        break !self.links.is_empty() || !self.candidates.is_empty();
                    };
                    let peer = self.candidates[i].clone();
                    self.await_answer(peer.id, now);
                    self.out.push_back(Out::Connect { peer, then: None });
                }
            }
        };
        if tried && !self.repair_scheduled {
            self.repair_scheduled = true;
            self.timers
                .insert(now + self.config.repair_interval, Timer::Repair);
        }
    }

    /// A node to ask to be a neighbour, none worse than `worst` (see
    /// [`Membership::avoid`]), not failed nor asked already: of the passive view's least to
    /// be avoided, at random; but where the nodes drawn from the map hold one less to be
    /// avoided than any the passive view holds, one of those (and it is taken out of them).
    /// An empty passive view is left to fill by shuffles, as HyParView's: the map is the
    /// remedy for one a swarm filled, so a network with no swarm chooses as without it.
    fn candidate(&mut self, worst: u8) -> Option<PeerRecord> {
        let open = |r: &PeerRecord| {
            !self.failed.contains(&r.id)
                && !self.pending.iter().any(|&(p, _)| p == r.id)
                && !self.active.iter().any(|a| a.id == r.id)
        };
        // The least avoided of `records`, and at which rank.
        let least = |records: &[PeerRecord]| -> (Vec<usize>, Option<u8>) {
            let ranked: Vec<(usize, u8)> = (0..records.len())
                .filter(|&i| open(&records[i]))
                .map(|i| (i, self.avoid(&records[i])))
                .collect();
            let least = ranked.iter().map(|&(_, a)| a).min();
            let at = ranked.into_iter().filter(|&(_, a)| Some(a) == least);
            (at.map(|(i, _)| i).collect(), least)
        };
        let (passive, p) = least(&self.passive);
        let (listings, l) = least(&self.listings);
        let from_map = matches!((p, l), (Some(p), Some(l)) if l < p);
        let (choices, rank) = if from_map {
            (listings, l)
        } else {
            (passive, p)
        };
        if rank.is_none_or(|r| r > worst) {
            return None;
        }
        let &i = choices.choose(&mut self.rng)?;
        Some(if from_map {
            self.listings.swap_remove(i)
        } else {
            self.passive[i].clone()
        })
    }

    /// Every [`SETTLE_INTERVAL`]: reads the map (see [`Directory`]); probes a group the map
    /// lists many nodes in, where one of them is a neighbour, by dialing another it lists
    /// there (a handshake is all it takes to count a key); and where the view is full and
    /// holds a crowded group's peer, asks a node this node chooses, of no crowded group, to
    /// take a slot: its answer evicts a crowded group's peer first (see
    /// [`Membership::add_active`]).
    fn settle(&mut self, now: Millis, directory: &dyn Directory) {
        self.failed.expire(now);
        self.crowd.expire(now);
        self.listed = directory.crowded_groups(CROWDED_KEYS);
        self.listings = directory.sample(self.me, DIRECTORY_SAMPLE, &mut self.listings_rng);
        let groups: BTreeSet<Group> = self.slots.values().filter_map(|s| s.group).collect();
        for &g in &groups {
            self.keep_one_if_crowded(g);
        }
        self.probe(&groups, directory);
        self.swap_crowded(now);
    }

    /// Where the view is full and holds a crowded group's peer, asks a node this node
    /// chooses, of no crowded group, to take a slot (one at a time).
    fn swap_crowded(&mut self, now: Millis) {
        let full = self.active.len() >= self.config.active_capacity;
        if !full || self.crowded_slots().is_empty() || !self.pending.is_empty() {
            return;
        }
        if let Some(peer) = self.candidate(1) {
            self.request(peer, false, now);
        }
    }

    /// For each group of our neighbours' that the map lists many nodes in, too few of whose
    /// keys have linked here to tell, dials one more node the map lists there (so at most one
    /// per neighbour a settle). The connection is transient: nothing is asked of it, and it
    /// is closed once idle.
    fn probe(&mut self, groups: &BTreeSet<Group>, directory: &dyn Directory) {
        for &g in groups {
            let unsure = self.capped(Some(g)).is_some()
                && self.listed.contains(&g)
                && self.keys_seen(g) < CONFIRMED_KEYS;
            if unsure {
                self.probe_group(g, directory);
            }
        }
    }

    fn probe_group(&mut self, g: Group, directory: &dyn Directory) {
        let seen = self.crowd.get(&g).cloned().unwrap_or_default();
        let others: Vec<PeerRecord> = directory
            .in_group(g)
            .into_iter()
            .filter(|r| {
                r.id != self.me
                    && !seen.contains(&r.id)
                    && !self.failed.contains(&r.id)
                    && !self.connected.contains_key(&r.id)
            })
            .collect();
        if let Some(peer) = others.choose(&mut self.rng) {
            self.out.push_back(Out::Connect {
                peer: peer.clone(),
                then: None,
            });
        }
    }

    /// Drops what a look for a faster neighbour waited on `peer` for.
    fn forget_timing(&mut self, peer: NodeId) {
        self.rtt.remove(&peer);
        self.timing.take_if(|(p, _)| *p == peer);
        self.swapping.take_if(|(p, _)| *p == peer);
    }

    /// The slowest active entry this node may swap (timed, not pinned; with `inbound`, not
    /// one it chose either), by index, and its round trip.
    fn slowest(&self, inbound: bool) -> Option<(usize, Millis)> {
        (0..self.active.len())
            .filter_map(|i| {
                let id = self.active[i].id;
                let slot = &self.slots[&id];
                if slot.pinned || (inbound && slot.outbound) {
                    return None;
                }
                self.rtt.get(&id).map(|&rtt| (i, rtt))
            })
            .max_by_key(|&(i, rtt)| (rtt, std::cmp::Reverse(i)))
    }

    /// Whether `peer`'s address group would keep within its share of the active view were
    /// entry `i` gone.
    fn group_room_without(&self, peer: NodeId, i: usize) -> bool {
        let (group, pinned) = self.link_of(peer);
        let Some(g) = self.capped(group).filter(|_| !pinned) else {
            return true;
        };
        let share = if self.is_crowded(Some(g)) {
            1
        } else {
            ACTIVE_PER_GROUP
        };
        let gone = self.active[i].id;
        let held = self
            .active
            .iter()
            .filter(|r| r.id != gone && self.slots[&r.id].group == Some(g))
            .count();
        held < share
    }

    /// Every [`FAST_LOOK_EVERY`] or more: where the view is full and nothing else is asked,
    /// dials a node of the passive view to time the link (see
    /// [`Membership::consider_faster`]); a node with room is left to repair.
    fn look_for_faster(&mut self, now: Millis) {
        self.fast_armed = false;
        let busy = !self.pending.is_empty()
            || self.swapping.is_some()
            || self.timing.is_some_and(|(_, until)| until > now);
        if busy {
            return self.arm_look(now);
        }
        // Whatever this look finds, it is spent, and the one after next waits twice as long:
        // also where the view is not full (repairs fill it at random meanwhile), or nothing
        // could gain.
        self.looks_left = self.looks_left.saturating_sub(1);
        self.arm_look(now);
        self.fast_wait = (self.fast_wait * 2).min(FAST_LOOK_MAX);
        let full = self.active.len() >= self.config.active_capacity;
        if !self.config.fast_links || !self.config.random_walks || !full {
            return;
        }
        // Where even an instant link would not gain enough (one machine), nothing is dialed.
        let Some((_, slowest)) = self.slowest(false) else {
            return;
        };
        if !faster(0, slowest) {
            return;
        }
        let Some(peer) = self.candidate(0) else {
            return;
        };
        if self.rtt.contains_key(&peer.id) {
            return self.consider_faster(peer.id, now);
        }
        self.timing = Some((peer.id, now + self.config.neighbor_timeout));
        self.out.push_back(Out::Connect { peer, then: None });
    }

    /// Schedules the next look, if one is left (see [`FAST_LOOKS`]).
    fn arm_look(&mut self, now: Millis) {
        if self.looks_left == 0 || self.fast_armed {
            return;
        }
        self.fast_armed = true;
        let jitter = self.fast_rng.random_range(0..=self.fast_wait / 4);
        self.timers
            .insert(now + self.fast_wait + jitter, Timer::Fast);
    }

    /// `peer`, dialed to be timed, is linked: if its round trip beats our slowest
    /// neighbour's by enough, it is asked to take that one's place (`NEIGHBOR` with `swap`);
    /// otherwise the connection is left to close as idle.
    fn consider_faster(&mut self, peer: NodeId, now: Millis) {
        let Some(&rtt) = self.rtt.get(&peer) else {
            return;
        };
        let Some((i, slowest)) = self.slowest(false) else {
            return;
        };
        let full = self.active.len() >= self.config.active_capacity;
        if !full || !faster(rtt, slowest) || !self.group_room_without(peer, i) {
            return;
        }
        self.swapping = Some((peer, self.active[i].id));
        self.await_answer(peer, now);
        self.out.push_back(Out::Send(
            peer,
            Message::Neighbor {
                high: false,
                swap: true,
            },
        ));
    }

    /// Whether a full view takes `from`, which asks with `swap`, in place of its slowest
    /// inbound link, and which: only one it may be swapped for (never pinned, nor one this
    /// node chose: those slots hold whatever the askers' latency), only for a gain as the
    /// asker's own rule, one a [`FAST_TAKEN_EVERY`], and never a crowded or listed group's
    /// node. An asker can do no more this way than a high-priority `NEIGHBOR` can (which
    /// evicts an inbound link at random), and must be faster to do it.
    fn takes_faster(&self, from: NodeId, now: Millis) -> Option<usize> {
        let full = self.active.len() >= self.config.active_capacity;
        let recent = self
            .fast_taken_at
            .is_some_and(|at| now < at + FAST_TAKEN_EVERY);
        if !self.config.fast_links || !full || recent || self.crowded_link(from) {
            return None;
        }
        let record = self.connected.get(&from)?.record.as_ref()?;
        if self.avoid(record) > 0 {
            return None;
        }
        let &rtt = self.rtt.get(&from)?;
        let (i, slowest) = self.slowest(true)?;
        (faster(rtt, slowest) && self.group_room_without(from, i)).then_some(i)
    }

    fn shuffle(&mut self) {
        let Some(own) = self.own.clone() else { return };
        let Some(target) = self.random_active_except(&[]) else {
            return;
        };
        let mut actives: Vec<PeerRecord> = self
            .active
            .iter()
            .filter(|r| r.id != target)
            .cloned()
            .collect();
        actives.shuffle(&mut self.rng);
        actives.truncate(self.config.shuffle_active);
        let mut passives = self.passive.clone();
        passives.shuffle(&mut self.rng);
        passives.truncate(self.config.shuffle_passive);
        let peers: Vec<PeerRecord> = actives.into_iter().chain(passives).collect();
        self.last_shuffled = peers.iter().map(|r| r.id).collect();
        self.out.push_back(Out::Send(
            target,
            Message::Shuffle {
                origin: own,
                peers,
                ttl: self.config.active_walk,
            },
        ));
    }

    fn sample_for_client(&mut self) -> Vec<PeerRecord> {
        let mut all: Vec<PeerRecord> = self.active.iter().chain(&self.passive).cloned().collect();
        all.shuffle(&mut self.rng);
        all.truncate(self.config.peers_sample);
        all
    }
}

impl Part for Membership {
    type Out = Out;
    type Context<'a> = &'a dyn Directory;

    fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// Runs what is due: shuffles, lapsed requests, repairs.
    fn handle_timeout(&mut self, now: Millis, directory: &dyn Directory) {
        let lapsed = self.pending.iter().any(|&(_, until)| until <= now);
        if lapsed {
            for &(p, until) in &self.pending {
                if until <= now {
                    self.failed.insert(p, (), now);
                }
            }
            self.pending.retain(|&(_, until)| until > now);
            if let Some((p, _)) = self.swapping
                && !self.pending.iter().any(|&(q, _)| q == p)
            {
                self.swapping = None;
            }
        }
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Shuffle => {
                    let jitter = self.rng.random_range(0..=self.config.shuffle_interval / 4);
                    self.timers
                        .insert(now + self.config.shuffle_interval + jitter, Timer::Shuffle);
                    if self.config.random_walks {
                        self.shuffle();
                    }
                }
                Timer::Repair => {
                    self.repair_scheduled = false;
                    self.asking = true;
                    self.repair(now);
                    self.asking = false;
                }
                Timer::Lapse => {}
                Timer::Settle => {
                    let jitter = self.rng.random_range(0..=SETTLE_INTERVAL / 4);
                    self.timers
                        .insert(now + SETTLE_INTERVAL + jitter, Timer::Settle);
                    self.settle(now, directory);
                }
                Timer::Fast => self.look_for_faster(now),
            }
        }
        if lapsed {
            self.repair(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

    fn rec(n: u8) -> PeerRecord {
        PeerRecord {
            id: id(n),
            address: format!("ws://n{n}:3000"),
            aliases: vec![],
        }
    }

    fn node(n: u8) -> Membership {
        Membership::new(
            id(n),
            PeerKind::Node,
            Some(rec(n)),
            Config::default(),
            n as u64,
            0,
        )
    }

    fn drain(m: &mut Membership) -> Vec<Out> {
        std::iter::from_fn(|| m.poll()).collect()
    }

    /// `m` with these nodes in its active view: each joined it, but for those past the
    /// slots others may take, which it asked to be its neighbours.
    fn with_active(n: u8, peers: &[u8]) -> Membership {
        linked(node(n), peers)
    }

    /// `with_active`, each link timed: peer `p`'s round trip is `rtt(p)`.
    fn timed_active(n: u8, peers: &[u8], rtt: impl Fn(u8) -> Millis) -> Membership {
        let mut m = node(n);
        for &p in peers {
            m.timed(id(p), rtt(p));
        }
        linked(m, peers)
    }

    fn linked(mut m: Membership, peers: &[u8]) -> Membership {
        let inbound = m.config.active_capacity - OUTBOUND_SLOTS;
        for (i, &p) in peers.iter().enumerate() {
            m.connected(id(p), PeerKind::Node, Some(rec(p)), false, false, None, 0);
            if i < inbound {
                m.message(id(p), Message::Join, 0);
            } else {
                m.request(rec(p), false, 0);
                let answer = Message::Neighbor {
                    high: true,
                    swap: false,
                };
                m.message(id(p), answer, 0);
            }
        }
        drain(&mut m);
        m
    }

    /// Runs `m`'s timers up to `now`, and what they sent.
    fn run_to(m: &mut Membership, now: Millis) -> Vec<Out> {
        m.handle_timeout(now, &());
        drain(m)
    }

    /// The nodes `out` dials with nothing to ask (to time them).
    fn timing_dials(out: &[Out]) -> Vec<NodeId> {
        out.iter()
            .filter_map(|o| match o {
                Out::Connect { peer, then: None } => Some(peer.id),
                _ => None,
            })
            .collect()
    }

    /// X-BOT's idea: a full view dials a passive node to time it; one faster than its slowest
    /// neighbour by enough is asked to take that one's place, and once it agrees the slowest
    /// goes (to the passive view). One no faster is left alone. Each look waits twice as long
    /// as the one before.
    #[test]
    fn a_full_view_swaps_its_slowest_neighbour_for_a_faster_node() {
        let peers: Vec<u8> = (2..8).collect();
        // Round trips 30, 40, ... 80 ms: node 7 (80 ms, one this node chose) is the slowest.
        let mut m = timed_active(1, &peers, |p| 10 * Millis::from(p) + 10);
        m.add_passive(rec(20));
        let mut now = FAST_LOOK_EVERY * 5 / 4;
        let out = run_to(&mut m, now);
        assert_eq!(timing_dials(&out), vec![id(20)]);
        // Faster, but not by enough: 80 ms against 70 is within a fifth.
        m.timed(id(20), 70);
        m.connected(
            id(20),
            PeerKind::Node,
            Some(rec(20)),
            false,
            false,
            None,
            now,
        );
        assert!(drain(&mut m).is_empty(), "no gain worth a swap");
        assert!(!m.wants(id(20)), "the timed link is left to close");
        m.disconnected(id(20), now);
        drain(&mut m);
        // The next look comes after twice the wait.
        assert!(timing_dials(&run_to(&mut m, now + FAST_LOOK_EVERY)).is_empty());
        now += 2 * FAST_LOOK_EVERY * 5 / 4;
        assert_eq!(timing_dials(&run_to(&mut m, now)), vec![id(20)]);
        m.timed(id(20), 20);
        m.connected(
            id(20),
            PeerKind::Node,
            Some(rec(20)),
            false,
            false,
            None,
            now,
        );
        let ask = Message::Neighbor {
            high: false,
            swap: true,
        };
        assert_eq!(drain(&mut m), vec![Out::Send(id(20), ask)]);
        let agree = Message::Neighbor {
            high: true,
            swap: false,
        };
        m.message(id(20), agree, now + 50);
        let out = drain(&mut m);
        assert!(out.contains(&Out::Send(id(7), Message::Disconnect { alive: true })));
        assert!(out.contains(&Out::NeighborUp(id(20))));
        assert!(m.active().contains(&id(20)) && !m.active().contains(&id(7)));
        assert!(m.passive().iter().any(|r| r.id == id(7)));
        assert_eq!(
            m.fast_wait,
            4 * FAST_LOOK_EVERY,
            "every look doubles the wait"
        );
    }

    /// On one machine every link is fast: no look dials anyone.
    #[test]
    fn where_no_link_could_gain_nothing_is_dialed() {
        let peers: Vec<u8> = (2..8).collect();
        let mut m = timed_active(1, &peers, |_| 1);
        m.add_passive(rec(20));
        for k in 1..=8 {
            let out = run_to(&mut m, k * FAST_LOOK_MAX);
            assert!(timing_dials(&out).is_empty(), "{out:?}");
        }
    }

    /// Looks stop after `FAST_LOOKS`, each wait twice the one before; a neighbour that fails
    /// (its place filled at random) grants one more.
    #[test]
    fn looks_die_down_and_a_failed_neighbour_grants_one_more() {
        let peers: Vec<u8> = (2..8).collect();
        let mut m = timed_active(1, &peers, |p| 10 * Millis::from(p) + 10);
        m.add_passive(rec(20));
        let mut dials = Vec::new();
        let mut now = 0;
        while now < 4 * FAST_LOOK_MAX {
            now += 1_000;
            let out = run_to(&mut m, now);
            dials.extend(timing_dials(&out).into_iter().map(|_| now));
        }
        assert_eq!(dials.len() as u32, FAST_LOOKS, "{dials:?}");
        assert!(dials.windows(2).all(|w| w[1] - w[0] >= FAST_LOOK_EVERY));
        m.disconnected(id(3), now);
        drain(&mut m);
        let mut more = 0;
        m.connected(
            id(30),
            PeerKind::Node,
            Some(rec(30)),
            false,
            false,
            None,
            now,
        );
        m.request(rec(30), false, now);
        let agree = Message::Neighbor {
            high: true,
            swap: false,
        };
        m.message(id(30), agree, now);
        m.timed(id(30), 90);
        drain(&mut m);
        let end = now + 4 * FAST_LOOK_MAX;
        while now < end {
            now += 1_000;
            more += timing_dials(&run_to(&mut m, now)).len();
        }
        assert_eq!(more, 1, "one more look");
    }

    /// A full view takes a faster asker in place of its slowest inbound link only: never one
    /// it chose (whatever their latency), never for a small gain, and one a
    /// `FAST_TAKEN_EVERY`.
    #[test]
    fn a_faster_asker_takes_the_slowest_inbound_slot_only() {
        let peers: Vec<u8> = (2..8).collect();
        // Inbound 2..=5 at 30..60 ms; outbound 6 and 7 at 90 and 100 ms, slower still.
        let mut m = timed_active(1, &peers, |p| {
            if p < 6 {
                10 * Millis::from(p) + 10
            } else {
                10 * Millis::from(p) + 30
            }
        });
        let ask = Message::Neighbor {
            high: false,
            swap: true,
        };
        let asks = |m: &mut Membership, p: u8, rtt: Millis, now: Millis| -> Vec<Out> {
            m.timed(id(p), rtt);
            m.connected(id(p), PeerKind::Node, Some(rec(p)), false, false, None, now);
            m.message(id(p), ask.clone(), now);
            drain(m)
        };
        // 55 ms against the slowest inbound's 60: too little.
        let out = asks(&mut m, 30, 55, 100);
        assert!(out.contains(&Out::Close(id(30), CloseReason::ActiveViewFull)));
        // 20 ms: node 5 (60 ms) goes, not 6 or 7 (slower, but chosen here).
        let out = asks(&mut m, 31, 20, 200);
        assert!(out.contains(&Out::Send(id(5), Message::Disconnect { alive: true })));
        assert!(m.active().contains(&id(31)) && m.active().contains(&id(7)));
        // Another as fast, too soon after: refused.
        let out = asks(&mut m, 32, 10, 300);
        assert!(out.contains(&Out::Close(id(32), CloseReason::ActiveViewFull)));
        // Later, taken in place of node 4 (50 ms).
        let out = asks(&mut m, 33, 10, 300 + FAST_TAKEN_EVERY);
        assert!(out.contains(&Out::Send(id(4), Message::Disconnect { alive: true })));
        assert_eq!(m.active().len(), 6);
    }

    /// A node whose every slot is one it chose refuses a high-priority request, unless it
    /// has just joined through someone: then the first ends of that join's walks are taken
    /// (two, within the window), each in place of one of its links.
    #[test]
    fn the_ends_of_our_own_joins_walks_are_taken_though_every_slot_is_chosen() {
        let mut m = node(1);
        for p in 2..8 {
            m.connected(id(p), PeerKind::Node, Some(rec(p)), false, false, None, 0);
            m.request(rec(p), false, 0);
            m.message(
                id(p),
                Message::Neighbor {
                    high: true,
                    swap: false,
                },
                0,
            );
        }
        drain(&mut m);
        assert_eq!(m.active().len(), 6);
        let asks = |m: &mut Membership, p: u8, now: Millis| -> bool {
            m.connected(id(p), PeerKind::Node, Some(rec(p)), false, false, None, now);
            m.message(
                id(p),
                Message::Neighbor {
                    high: true,
                    swap: false,
                },
                now,
            );
            drain(m);
            m.active().contains(&id(p))
        };
        // (Some time in: whatever came before is past the window.)
        let t = JOIN_ANSWERED_WITHIN + 1;
        assert!(!asks(&mut m, 20, t), "no join of ours: refused");
        m.reach(rec(30), t + 1_000);
        drain(&mut m);
        assert!(asks(&mut m, 21, t + 1_500));
        assert!(asks(&mut m, 22, t + 1_600));
        assert_eq!(m.active().len(), 6, "each in place of one");
        assert!(!asks(&mut m, 23, t + 1_700), "two at most");
        m.reach(rec(31), t + 2_000);
        drain(&mut m);
        assert!(
            !asks(&mut m, 24, t + 2_000 + JOIN_ANSWERED_WITHIN + 1),
            "and only soon after"
        );
    }

    #[test]
    fn a_join_is_taken_in_and_walked_through_the_network() {
        let mut m = with_active(1, &[2, 3]);
        m.connected(id(9), PeerKind::Node, Some(rec(9)), false, false, None, 0);
        m.message(id(9), Message::Join, 0);
        let out = drain(&mut m);
        assert!(out.contains(&Out::Send(
            id(9),
            Message::Neighbor {
                high: true,
                swap: false
            }
        )));
        assert!(out.contains(&Out::NeighborUp(id(9))));
        for p in [2, 3] {
            assert!(out.contains(&Out::Send(
                id(p),
                Message::ForwardJoin {
                    peer: rec(9),
                    ttl: 6
                }
            )));
        }
        assert_eq!(m.active(), vec![id(2), id(3), id(9)]);
    }

    #[test]
    fn a_forward_join_is_passed_on_until_its_walk_ends_and_then_taken_in() {
        let mut m = with_active(1, &[2, 3]);
        m.message(
            id(2),
            Message::ForwardJoin {
                peer: rec(9),
                ttl: 4,
            },
            0,
        );
        let out = drain(&mut m);
        assert!(
            out.contains(&Out::Send(
                id(3),
                Message::ForwardJoin {
                    peer: rec(9),
                    ttl: 3
                }
            )),
            "passed on to a neighbour other than the sender: {out:?}"
        );
        assert!(m.passive().iter().any(|r| r.id == id(9)), "and learned");
        m.message(
            id(3),
            Message::ForwardJoin {
                peer: rec(8),
                ttl: 0,
            },
            0,
        );
        assert!(drain(&mut m).contains(&Out::Connect {
            peer: rec(8),
            then: Some(Message::Neighbor {
                high: true,
                swap: false
            })
        }));
    }

    #[test]
    fn a_full_view_evicts_for_high_priority_and_refuses_low_with_others_to_try() {
        let full = Config::default().active_capacity;
        let peers: Vec<u8> = (2..).take(full).collect();
        let mut m = with_active(1, &peers);
        assert_eq!(m.active().len(), full);
        // Low priority: refused, told of others, closed.
        m.connected(id(99), PeerKind::Node, Some(rec(99)), false, false, None, 0);
        m.message(
            id(99),
            Message::Neighbor {
                high: false,
                swap: false,
            },
            0,
        );
        let out = drain(&mut m);
        assert!(
            matches!(&out[0], Out::Send(p, Message::ShuffleReply { peers }) if *p == id(99) && !peers.is_empty())
        );
        assert!(out.contains(&Out::Send(id(99), Message::Disconnect { alive: true })));
        assert!(out.contains(&Out::Close(id(99), CloseReason::ActiveViewFull)));
        assert_eq!(m.active().len(), full);
        // High priority: taken in, a neighbour that joined evicted to the passive view at
        // random (the links this node chose are kept).
        m.message(
            id(99),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            0,
        );
        let out = drain(&mut m);
        let evicted: Vec<NodeId> = out
            .iter()
            .filter_map(|o| match o {
                Out::Send(p, Message::Disconnect { alive: true }) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(evicted.len(), 1);
        assert!(out.contains(&Out::Close(evicted[0], CloseReason::Disconnected)));
        assert!(m.active().contains(&id(99)) && !m.active().contains(&evicted[0]));
        assert!(m.passive().iter().any(|r| r.id == evicted[0]));
        assert!(
            (2..6).any(|p| evicted[0] == id(p)),
            "one that joined, not one it chose"
        );
    }

    fn in_group(n: u8, group: [u8; 3]) -> (PeerRecord, Option<Group>) {
        let [a, b, c] = group;
        let record = PeerRecord {
            id: id(n),
            address: format!("ws://{a}.{b}.{c}.{n}:3000"),
            aliases: vec![],
        };
        (record, Some(Group::V4(group)))
    }

    /// Twelve keys from one address group, each joining: at most two slots, not six (here
    /// one: the slots for joins are then taken), and the neighbours already there stay;
    /// their addresses take two passive entries.
    #[test]
    fn one_address_group_holds_two_active_slots_and_two_passive_entries() {
        let mut m = with_active(1, &[2, 3, 4]);
        let sybils: Vec<u8> = (100..112).collect();
        for &s in &sybils {
            let (record, group) = in_group(s, [203, 0, 113]);
            m.connected(id(s), PeerKind::Node, Some(record), false, false, group, 10);
            m.message(id(s), Message::Join, 10);
        }
        let active = m.active();
        let held = active
            .iter()
            .filter(|p| sybils.iter().any(|&s| id(s) == **p))
            .count();
        assert!(held <= 2, "{active:?}");
        for honest in [2, 3, 4] {
            assert!(active.contains(&id(honest)));
        }
        // Their addresses, learned by walks, fill at most two passive entries.
        for s in 150..170 {
            let (record, _) = in_group(s, [198, 51, 100]);
            m.message(
                id(2),
                Message::ForwardJoin {
                    peer: record,
                    ttl: 3,
                },
                20,
            );
        }
        let from_group = |r: &&PeerRecord| r.address.starts_with("ws://198.51.100.");
        assert_eq!(m.passive().iter().filter(from_group).count(), 2);
    }

    /// Links `m` to `n` of group `g`, which joins it.
    /// Node `n` of group `g` completes a handshake with `m`.
    fn links_from(m: &mut Membership, n: u8, g: [u8; 3], now: Millis) {
        let (record, group) = in_group(n, g);
        m.connected(
            id(n),
            PeerKind::Node,
            Some(record),
            false,
            false,
            group,
            now,
        );
    }

    fn joins_from(m: &mut Membership, n: u8, g: [u8; 3], now: Millis) {
        links_from(m, n, g, now);
        m.message(id(n), Message::Join, now);
    }

    /// Once [`CROWDED_KEYS`] keys have linked from one group, it holds one slot, not two;
    /// and a node whose full view holds one asks a passive node of its choosing to take that
    /// slot, whose answer evicts it.
    #[test]
    fn a_crowded_group_keeps_one_slot_and_is_swapped_for_a_node_of_our_choosing() {
        const G: [u8; 3] = [203, 0, 113];
        let mut m = with_active(1, &[2, 3]);
        joins_from(&mut m, 100, G, 10);
        joins_from(&mut m, 101, G, 10);
        let held = |m: &Membership| m.active().iter().filter(|p| p.as_bytes()[0] >= 100).count();
        assert_eq!(held(&m), 2, "two keys: not crowded yet");
        joins_from(&mut m, 102, G, 10);
        joins_from(&mut m, 103, G, 10);
        assert_eq!(held(&m), 1, "four keys: one slot left them");
        let out = drain(&mut m);
        assert!(
            out.iter().any(
                |o| matches!(o, Out::Close(p, CloseReason::Disconnected) if p.as_bytes()[0] >= 100)
            ),
            "{out:?}"
        );
        // Full (three more chosen by this node), and a passive node to swap in.
        for p in 4..7 {
            m.connected(id(p), PeerKind::Node, Some(rec(p)), false, false, None, 20);
            m.request(rec(p), false, 20);
            m.message(
                id(p),
                Message::Neighbor {
                    high: true,
                    swap: false,
                },
                20,
            );
        }
        m.add_passive(rec(9));
        drain(&mut m);
        assert_eq!(m.active().len(), 6);
        m.handle_timeout(SETTLE_INTERVAL * 2, &());
        let out = drain(&mut m);
        assert!(
            out.iter().any(|o| matches!(o, Out::Connect { peer, then: Some(Message::Neighbor { high: false, swap: false }) } if peer.id == id(9))),
            "{out:?}"
        );
        let now = SETTLE_INTERVAL * 2 + 10;
        m.connected(id(9), PeerKind::Node, Some(rec(9)), false, false, None, now);
        m.message(
            id(9),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            now,
        );
        assert_eq!(held(&m), 0, "{:?}", m.active());
        assert!(m.active().contains(&id(9)));
        assert_eq!(m.active().len(), 6);
    }

    /// A crowded group's node evicts no one, however it asks, and walks that name one end
    /// without a link; any other node asking takes its slot.
    /// The map, as membership reads it: these nodes, listed at their addresses.
    struct Listing(Vec<PeerRecord>);

    impl Directory for Listing {
        fn crowded_groups(&self, keys: usize) -> HashSet<Group> {
            let mut count: HashMap<Group, usize> = HashMap::new();
            for r in &self.0 {
                *count
                    .entry(Group::of_address(&r.address).unwrap())
                    .or_default() += 1;
            }
            count
                .into_iter()
                .filter(|&(_, n)| n >= keys)
                .map(|(g, _)| g)
                .collect()
        }
        fn sample(&self, me: NodeId, n: usize, _: &mut dyn RngCore) -> Vec<PeerRecord> {
            self.0
                .iter()
                .filter(|r| r.id != me)
                .take(n)
                .cloned()
                .collect()
        }
        fn in_group(&self, group: Group) -> Vec<PeerRecord> {
            let of = |r: &&PeerRecord| Group::of_address(&r.address) == Some(group);
            self.0.iter().filter(of).cloned().collect()
        }
    }

    /// A swarm of four keys to a group, each linking to a different node, never shows a
    /// node two keys of one group by its links. The map lists them all: a node with one of
    /// them as a neighbour dials another it lists there, and the second key to answer from
    /// the group confirms it crowded, so the neighbour is swapped for a node the map lists
    /// elsewhere. Records made up under an honest neighbour's group confirm nothing: no one
    /// answers at their addresses, and the neighbour stays.
    #[test]
    fn a_swarm_over_many_groups_is_found_through_the_map_and_swapped_out() {
        const SWARM: [u8; 3] = [198, 51, 100];
        const FRAMED: [u8; 3] = [192, 0, 2];
        let mut m = node(1);
        // A neighbour in a group of its own (framed below), one of the swarm, and four
        // others; the last two chosen by this node.
        joins_from(&mut m, 2, FRAMED, 0);
        joins_from(&mut m, 100, SWARM, 0);
        for p in 3..7 {
            m.connected(id(p), PeerKind::Node, Some(rec(p)), false, false, None, 0);
            if p < 5 {
                m.message(id(p), Message::Join, 0);
            } else {
                m.request(rec(p), false, 0);
                m.message(
                    id(p),
                    Message::Neighbor {
                        high: true,
                        swap: false,
                    },
                    0,
                );
            }
        }
        // What the swarm's peer lists filled the passive view with.
        m.add_passive(in_group(103, SWARM).0);
        drain(&mut m);
        assert_eq!(m.active().len(), 6);
        let mut listed: Vec<PeerRecord> = (100..104).map(|n| in_group(n, SWARM).0).collect();
        listed.push(in_group(2, FRAMED).0);
        listed.extend((200..203).map(|n| in_group(n, FRAMED).0));
        listed.push(in_group(20, [203, 0, 113]).0);
        let map = Listing(listed);

        let now = SETTLE_INTERVAL * 2;
        m.handle_timeout(now, &map);
        let out = drain(&mut m);
        let probes: Vec<NodeId> = out
            .iter()
            .filter_map(|o| match o {
                Out::Connect { peer, then: None } => Some(peer.id),
                _ => None,
            })
            .collect();
        assert_eq!(probes.len(), 2, "one probe a listed group: {out:?}");
        let swarm_probe = *probes.iter().find(|p| p.as_bytes()[0] < 200).unwrap();
        let framed_probe = *probes.iter().find(|p| p.as_bytes()[0] >= 200).unwrap();
        assert!(
            m.active().contains(&id(100)),
            "a listing alone confirms nothing"
        );

        // The framed group's made-up node does not answer; the swarm's does.
        m.connect_failed(framed_probe, now);
        links_from(&mut m, swarm_probe.as_bytes()[0], SWARM, now);
        let out = drain(&mut m);
        assert!(
            out.iter().any(|o| matches!(o, Out::Connect { peer, then: Some(Message::Neighbor { high: false, swap: false }) } if peer.id == id(20))),
            "the swarm confirmed, a node the map lists elsewhere is asked: {out:?}"
        );
        m.connected(
            id(20),
            PeerKind::Node,
            Some(in_group(20, [203, 0, 113]).0),
            false,
            false,
            None,
            now,
        );
        m.message(
            id(20),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            now,
        );
        let active = m.active();
        assert!(!active.contains(&id(100)), "{active:?}");
        assert!(
            active.contains(&id(20)) && active.contains(&id(2)),
            "{active:?}"
        );
        assert_eq!(active.len(), 6);
    }

    #[test]
    fn a_crowded_group_cannot_evict_and_its_walks_link_no_one() {
        const G: [u8; 3] = [203, 0, 113];
        let mut m = with_active(1, &[2, 3, 4]);
        for n in 100..104 {
            joins_from(&mut m, n, G, 10);
        }
        for p in 5..7 {
            m.connected(id(p), PeerKind::Node, Some(rec(p)), false, false, None, 20);
            m.request(rec(p), false, 20);
            m.message(
                id(p),
                Message::Neighbor {
                    high: true,
                    swap: false,
                },
                20,
            );
        }
        drain(&mut m);
        assert_eq!(m.active().len(), 6);
        let before = m.active();
        // High priority from the crowded group: refused.
        let (record, group) = in_group(110, G);
        m.connected(
            id(110),
            PeerKind::Node,
            Some(record),
            false,
            false,
            group,
            30,
        );
        m.message(
            id(110),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            30,
        );
        assert_eq!(m.active(), before);
        // A walk naming one of its nodes ends here: no dial.
        drain(&mut m);
        let (record, _) = in_group(111, G);
        m.message(
            id(2),
            Message::ForwardJoin {
                peer: record,
                ttl: 0,
            },
            40,
        );
        assert!(drain(&mut m).is_empty());
        // A node of another group asking at low priority takes the crowded group's slot.
        m.connected(id(8), PeerKind::Node, Some(rec(8)), false, false, None, 50);
        m.message(
            id(8),
            Message::Neighbor {
                high: false,
                swap: false,
            },
            50,
        );
        let active = m.active();
        assert!(active.contains(&id(8)), "{active:?}");
        assert!(active.iter().all(|p| p.as_bytes()[0] < 100), "{active:?}");
        for honest in 2..7 {
            assert!(active.contains(&id(honest)), "{active:?}");
        }
    }

    /// A node on loopback in its own group (a machine with only 127.0.0.1) caps no one there.
    #[test]
    fn peers_in_this_nodes_own_loopback_group_are_not_capped() {
        let mut m = Membership::new(
            id(1),
            PeerKind::Node,
            Some(PeerRecord {
                id: id(1),
                address: "ws://127.0.0.1:3000".into(),
                aliases: vec![],
            }),
            Config::default(),
            1,
            0,
        );
        for p in 2..6 {
            let (mut record, _) = in_group(p, [127, 0, 0]);
            record.address = format!("ws://127.0.0.1:{}", 3000 + p as u16);
            let group = Some(Group::V4([127, 0, 0]));
            m.connected(id(p), PeerKind::Node, Some(record), false, false, group, 0);
            m.message(id(p), Message::Join, 0);
        }
        assert_eq!(m.active().len(), 4);
    }

    /// Sybils from fifty groups joining a node whose slots for joins are taken evict no one:
    /// its neighbours, and a pinned one, stay.
    #[test]
    fn joins_evict_no_one_and_a_pinned_link_stays() {
        let mut m = node(1);
        m.connected(id(2), PeerKind::Node, Some(rec(2)), true, false, None, 0);
        m.request(rec(2), false, 0);
        m.message(
            id(2),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            0,
        );
        for p in 3..7 {
            m.connected(
                id(p),
                PeerKind::Node,
                Some(rec(p)),
                false,
                false,
                None,
                p as u64,
            );
            m.message(id(p), Message::Join, p as u64);
        }
        drain(&mut m);
        // Sybils from fifty groups, one after another.
        for s in 0..50u8 {
            let (record, group) = in_group(100 + s, [10, s, 0]);
            let at = 1_000 + s as u64;
            m.connected(
                id(100 + s),
                PeerKind::Node,
                Some(record),
                false,
                false,
                group,
                at,
            );
            m.message(id(100 + s), Message::Join, at);
        }
        let active = m.active();
        for first in 2..6 {
            assert!(active.contains(&id(first)), "{first} evicted: {active:?}");
        }
        assert_eq!(active.len(), 5, "{active:?}");
    }

    #[test]
    fn a_view_that_is_not_full_is_filled_and_a_lost_neighbour_replaced() {
        let mut m = with_active(1, &[2]);
        m.message(
            id(2),
            Message::ShuffleReply {
                peers: vec![rec(5)],
            },
            0,
        );
        // With one neighbour the view is fragile: a request that may not be refused.
        assert!(drain(&mut m).contains(&Out::Connect {
            peer: rec(5),
            then: Some(Message::Neighbor {
                high: true,
                swap: false
            })
        }));
        m.disconnected(id(2), 10);
        assert!(drain(&mut m).contains(&Out::NeighborDown(id(2))));
        // The answer makes it a neighbour.
        m.connected(id(5), PeerKind::Node, Some(rec(5)), false, false, None, 20);
        m.message(
            id(5),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            20,
        );
        assert_eq!(m.active(), vec![id(5)]);
    }

    #[test]
    fn a_shuffle_goes_on_a_walk_and_its_reply_fills_the_passive_view() {
        let mut m = with_active(1, &[2, 3]);
        m.message(
            id(3),
            Message::ShuffleReply {
                peers: vec![rec(8)],
            },
            0,
        );
        drain(&mut m);
        // Its own shuffle, due within ten seconds of starting.
        m.handle_timeout(10_000, &());
        let out = drain(&mut m);
        assert!(
            out.iter().any(|o| matches!(o, Out::Send(_, Message::Shuffle { origin, ttl: 6, .. }) if origin.id == id(1))),
            "{out:?}"
        );
        // Another's shuffle ending here: answered straight to its origin, and learned from.
        m.message(
            id(2),
            Message::Shuffle {
                origin: rec(20),
                peers: vec![rec(21), rec(22)],
                ttl: 0,
            },
            0,
        );
        let out = drain(&mut m);
        assert!(out.iter().any(|o| matches!(o, Out::Connect { peer, then: Some(Message::ShuffleReply { .. }) } if peer.id == id(20))));
        for n in [20, 21, 22] {
            assert!(m.passive().iter().any(|r| r.id == id(n)), "learned {n}");
        }
    }

    #[test]
    fn pages_are_held_as_clients_and_told_of_nodes() {
        let mut m = with_active(1, &[2, 3]);
        m.connected(id(50), PeerKind::Browser, None, false, false, None, 0);
        let out = drain(&mut m);
        assert!(out.contains(&Out::NeighborUp(id(50))));
        assert!(out.iter().any(|o| matches!(o, Out::Send(p, Message::Peers { peers }) if *p == id(50) && peers.len() == 2)));
        assert_eq!(m.clients(), 1);
        assert_eq!(m.active().len(), 2, "a page is not in the active view");
        let mut full = with_active(1, &[]);
        full.config.max_clients = 0;
        full.connected(id(51), PeerKind::Browser, None, false, false, None, 0);
        assert_eq!(
            drain(&mut full),
            vec![Out::Close(id(51), CloseReason::TooManyClients)]
        );
    }

    #[test]
    fn a_node_with_no_address_is_a_neighbour_but_never_passed_on() {
        let mut m = node(1);
        m.connected(id(2), PeerKind::Node, Some(rec(2)), true, false, None, 0);
        m.message(
            id(2),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            0,
        );
        // Node 70 cannot be dialed; it dialed us and joins.
        m.connected(id(70), PeerKind::Node, None, false, false, None, 0);
        m.message(id(70), Message::Join, 0);
        let out = drain(&mut m);
        assert!(m.active().contains(&id(70)), "{out:?}");
        assert!(
            m.known_nodes().all(|r| r.id != id(70)),
            "never named to dial"
        );
        // Its walk ends here: what is forwarded cannot be dialed, and receivers drop it.
        let forwarded = out.iter().find_map(|o| match o {
            Out::Send(_, Message::ForwardJoin { peer, .. }) => Some(peer.clone()),
            _ => None,
        });
        assert!(forwarded.is_none_or(|p| p.canonical().is_none()));
        // Evicted to make room, it is not kept to dial later.
        let small = Config {
            active_capacity: 1,
            ..Config::default()
        };
        let mut full = Membership::new(id(3), PeerKind::Node, Some(rec(3)), small, 3, 0);
        full.connected(id(70), PeerKind::Node, None, false, false, None, 0);
        full.message(id(70), Message::Join, 0);
        full.connected(id(4), PeerKind::Node, Some(rec(4)), false, false, None, 0);
        full.message(
            id(4),
            Message::Neighbor {
                high: true,
                swap: false,
            },
            0,
        );
        assert!(!full.active().contains(&id(70)));
        assert!(full.passive().iter().all(|r| r.id != id(70)));
    }

    #[test]
    fn a_page_served_over_https_links_only_to_wss_nodes() {
        let config = Config {
            client_secure_only: true,
            ..Config::default()
        };
        let mut page = Membership::new(id(60), PeerKind::Browser, None, config, 1, 0);
        page.connected(id(1), PeerKind::Node, Some(rec(1)), true, false, None, 0);
        let secure = |n: u8| PeerRecord {
            address: format!("wss://n{n}.example.org"),
            ..rec(n)
        };
        page.message(
            id(1),
            Message::Peers {
                peers: vec![rec(2), secure(3), rec(4)],
            },
            0,
        );
        let dialed: Vec<String> = drain(&mut page)
            .into_iter()
            .filter_map(|o| match o {
                Out::Connect { peer, then: None } => Some(peer.address),
                _ => None,
            })
            .collect();
        assert_eq!(dialed, ["wss://n3.example.org"]);
    }

    #[test]
    fn a_page_links_to_its_home_and_two_more() {
        let mut page = Membership::new(id(60), PeerKind::Browser, None, Config::default(), 1, 0);
        page.connected(id(1), PeerKind::Node, Some(rec(1)), true, false, None, 0);
        page.message(
            id(1),
            Message::Peers {
                peers: vec![rec(2), rec(3), rec(4)],
            },
            0,
        );
        let out = drain(&mut page);
        let dials = out
            .iter()
            .filter(|o| matches!(o, Out::Connect { then: None, .. }))
            .count();
        assert_eq!(dials, 2, "{out:?}");
        // One of them fails: another takes its place.
        let failed = out
            .iter()
            .find_map(|o| match o {
                Out::Connect { peer, .. } => Some(peer.id),
                _ => None,
            })
            .unwrap();
        page.connect_failed(failed, 10);
        assert_eq!(
            drain(&mut page)
                .iter()
                .filter(|o| matches!(o, Out::Connect { .. }))
                .count(),
            1
        );
    }
}
