//! Seed (v1) compatibility: the rules that let the tutorial network's Node.js nodes join a
//! hearsay mesh and see every message exactly once.
//!
//! What a seed does (reproduced, races included, by the simulator's seed and the tests'):
//! on every new connection, either direction, it sends `SOCKETS` with the addresses it has
//! dialed, then records the new address if it dialed it, so an address counts as dialed only
//! once its dial *opens*; it dials every address a `SOCKETS` names that it has not recorded,
//! so an address named twice while its dial is under way is dialed twice, and its own address
//! too if told it; it stores what it commits and every `MESSAGE` it gets, and sends its commits
//! to every socket; it never forwards; a frame that is not JSON crashes it. Addresses are
//! compared as strings.
//!
//! The rules, and why:
//! - **Each message reaches a seed from exactly one node: its origin** ([`should_receive`]).
//!   A seed never forwards, so it must be linked to every hearsay node; we name the nodes we
//!   know to it, one canonical address per node ([`Seeds::sockets_for`]), never a node it
//!   reached under another address, never its own address. A page cannot be dialed, so its
//!   home passes its messages on. Text from a seed is never sent to a seed: its author sent it
//!   to all its sockets itself.
//! - **A seed's connection is answered after [`SEED_SETTLE`]**, not at once, and only the
//!   first hearsay node it reached names nodes to it ([`Seeds::answered`]: the node whose
//!   link opened with a list naming no hearsay node). The seed dials every node it is told
//!   of at once; nodes answering at once, or several answering, would name nodes whose dials
//!   are still under way, and the seed would dial them again (measured on the real seed: 4
//!   links where 2 were due, commits stored 2–3 times). That first node goes on naming nodes
//!   that join, every [`Config::seed_exchange_interval`](crate::Config), each once. (If it
//!   leaves, nodes that join later are not named to that seed.)
//! - **A second link from one seed is closed on sight** ([`Seeds::links_us_twice`]). A seed's
//!   opening `SOCKETS` lists what it has dialed; if that names one of our listeners, the seed
//!   holds a link to us already, and a second would bring it our messages twice. This catches
//!   what the rules above cannot prevent: a slow dial, or a seed that learns another spelling
//!   of our address from another seed (seeds compare strings: `ws://h:3001` and `ws://h:3000`
//!   are two addresses to them). Such a dial still happens; it carries nothing.
//! - **A seed we dial is introduced and hung up on** ([`Seeds::introduction`]): we name only
//!   ourselves and close, so its dial back is its one link to us and the only dial it makes.
//!   We know that link: it is the first to open with exactly the list the seed sent
//!   us when we dialed, as the seed records us only after sending it. If another seed's link
//!   opens with the same list in that moment, both are taken for it. A seed that held a link
//!   to us already does not dial back; its link is one whose list could be an earlier state
//!   of the one it sent (lists only grow).
//! - **Seeds are introduced to each other in pairs** (`Seeds::should_dial`): at the seed
//!   exchange (by then the map has said which node dialed which seed: `seeds_dialed` in
//!   each node's record), the node that dialed a seed tells one seed that no node dialed, and
//!   that has dialed and been told of no seed, to dial it. The two link directly, as in a
//!   seed-only network, and get each other's commits. Never a seed its own address: a link
//!   that is, or could be, that seed's is not told of it. Only pairs, because a seed passes
//!   what it has dialed to every seed it links to and dials what it is told even when the
//!   other has dialed it: with three seeds linked by introductions, some pair would link
//!   twice and store each other's commits twice (the simulator found it at once).
//!
//! A race left open: two nodes that each dialed a seed decide alone, at their own exchange,
//! and may both introduce one undialed seed before either hears of the other's introduction
//! (a seed's later dials show only on links it opens later). That seed then links two seeds,
//! and one of those may dial a node's other address twice (each link closed on sight, as
//! above, carrying nothing; every text was still held exactly once where it was due). It is
//! not rare: 2 of 300 random cases of `mixed_meshes_over_seeds` (2–11 nodes, 1–3 seeds), the
//! same with the map's repair (which changed which cases hit it) and without; every one
//! had two seeds dialed by nodes, and in none was a text held twice. The test allows a double
//! dial only there. Closing it takes one decider per pair, such as a matching every node
//! computes alike from the map (which now fills in seconds).
//!
//! What stays impossible: seeds beyond one pair per seed a node dialed are not introduced;
//! two seeds neither of which hearsay dialed are never introduced (nobody knows their
//! addresses; a seed that only dials out never says where it listens); and hearsay does not
//! relay one seed's text to another: a seed sends its commit to all its hearsay links at once,
//! and no node could tell whether another had passed it on already. So a seed gets another
//! seed's commits only over a direct link. The same text committed twice at a seed is one
//! message to hearsay: a seed's `MESSAGE` has no id, and every node must derive the same id for
//! one commit, so the id is the text's; the seed's own links (other seeds) get both copies.

use crate::Millis;
use crate::close::CloseReason;
use crate::conns::ConnId;
use crate::id::NodeId;
use crate::map::TopologyView;
use crate::message::Message as Signed;
use crate::part::Part;
use crate::peer::{PeerKind, PeerRecord, canonical_address};
use crate::timers::Timers;
use std::collections::{BTreeMap, VecDeque};

/// The seed's two frames (v1), exactly as the Node.js seed sends and reads them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type")]
pub enum Message {
    /// A published text, no id.
    #[serde(rename = "MESSAGE")]
    Text { data: String },
    /// The addresses the sender has dialed.
    #[serde(rename = "SOCKETS")]
    Sockets { addresses: Vec<String> },
}

/// How long after a seed's connection opens we answer it (see the module docs).
pub const SEED_SETTLE: crate::Millis = 2_000;

#[derive(Debug, Default)]
struct SeedConn {
    /// The address we dialed it at, if we did.
    dialed: Option<String>,
    /// Addresses already sent to it in `SOCKETS`.
    told: Vec<String>,
    /// Addresses it told us it has dialed, in its order, once it has (its first frame).
    seed_dialed: Option<Vec<String>>,
    /// Whether we were the first hearsay node it reached (see [`Seeds::answered`]).
    first: bool,
    /// Whether it has had a `SOCKETS` from us.
    answered: bool,
}

/// A seed we dialed: what it said it had dialed when we did, and the links that are, or
/// could be, its own.
#[derive(Debug)]
struct DialedSeed {
    list: Vec<String>,
    /// Its dial back; or, if another seed's link opened with the same list at the same
    /// moment, both (we cannot tell them apart, so neither is told of it).
    links: Vec<ConnId>,
    /// Whether we wait for its dial back (it held no link to us when we hung up), and when
    /// the first link that could be it opened: links opening with `list` until
    /// [`SEED_SETTLE`] after that are all taken for it. (No deadline before the first: on a
    /// loaded machine a dial back can take seconds.)
    awaiting: bool,
    first_match: Option<Millis>,
    /// Whether we told a seed to dial it (see `Seeds::should_dial`).
    introduced: bool,
}

/// Which seeds each node dialed (from the map's records), by the node's listener
/// (`ws://host:port`).
pub type Dialers = BTreeMap<String, Vec<String>>;

/// Per-connection state of every seed peer, and the seeds we dialed.
#[derive(Debug, Default)]
pub struct Seeds {
    conns: BTreeMap<ConnId, SeedConn>,
    /// By the canonical address we dialed them at.
    dialed: BTreeMap<String, DialedSeed>,
}

/// `ws://host:port`, lower case, without path: what identifies a listener.
pub(crate) fn authority(address: &str) -> Option<String> {
    let canonical = canonical_address(address)?;
    let after_scheme = canonical.find("://")? + 3;
    Some(match canonical[after_scheme..].find('/') {
        Some(i) => canonical[..after_scheme + i].to_owned(),
        None => canonical,
    })
}

/// Whether one list of dialed addresses could be an earlier or later state of the other.
fn compatible(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl Seeds {
    pub fn opened(&mut self, conn: ConnId, dialed: Option<String>) {
        self.conns.insert(
            conn,
            SeedConn {
                dialed,
                ..SeedConn::default()
            },
        );
    }

    pub fn closed(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        for d in self.dialed.values_mut() {
            d.links.retain(|&l| l != conn);
        }
    }

    /// The seeds we dialed, for our map record.
    pub fn dialed_addresses(&self) -> Vec<String> {
        self.dialed
            .keys()
            .take(crate::map::MAX_SEEDS_DIALED)
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    /// The seed on `conn` says it has dialed `addresses` (its first frame): remember it, so
    /// we never name a node to it that it already reached under another address; and if it
    /// is the dial back of a seed we dialed, we now know that seed's link.
    pub fn sockets_received(&mut self, conn: ConnId, addresses: &[String], now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let first = c.seed_dialed.is_none();
        let list = c.seed_dialed.get_or_insert_with(Vec::new);
        for a in addresses.iter().filter_map(|a| canonical_address(a)) {
            if !list.contains(&a) {
                list.push(a);
            }
        }
        if first && c.dialed.is_none() {
            let list = list.clone();
            for d in self.dialed.values_mut() {
                let open = d.first_match.is_none_or(|at| now <= at + SEED_SETTLE);
                if d.awaiting && open && d.list == list {
                    d.links.push(conn);
                    d.first_match.get_or_insert(now);
                }
            }
        }
    }

    /// Whether the seed on `conn` already holds a link to us: its list of what it has dialed
    /// names one of our listeners (`own`).
    pub fn links_us_twice(&self, conn: ConnId, own: &PeerRecord) -> bool {
        let Some(list) = self.conns.get(&conn).and_then(|c| c.seed_dialed.as_ref()) else {
            return false;
        };
        let ours: Vec<String> = own.addresses().filter_map(|a| authority(a)).collect();
        list.iter()
            .filter_map(|a| authority(a))
            .any(|a| ours.contains(&a))
    }

    /// We answer the seed on `conn` (its dials under way have opened): we are the first
    /// hearsay node it reached if the list it opened with names none of the nodes in `known`.
    /// Only that node goes on telling it of nodes that join later: several telling it at once
    /// would race its dials as the first answers would.
    pub fn answered<'a>(&mut self, conn: ConnId, known: impl Iterator<Item = &'a PeerRecord>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let reached: Vec<String> = c
            .seed_dialed
            .iter()
            .flatten()
            .filter_map(|a| authority(a))
            .collect();
        let mut known = known;
        c.first = !known.any(|n| {
            n.addresses()
                .filter_map(|a| authority(a))
                .any(|a| reached.contains(&a))
        });
    }

    /// Whether the link `conn` is, or could be, the seed we dialed at `address`.
    fn might_be(&self, conn: ConnId, address: &str) -> bool {
        let (Some(c), Some(d)) = (self.conns.get(&conn), self.dialed.get(address)) else {
            return true;
        };
        if c.dialed.as_deref() == Some(address) {
            return true;
        }
        if d.links.contains(&conn) {
            return true;
        }
        // Its dial back seen: no other link is its own (a second would have been closed).
        // Otherwise any link whose history fits the seed's could be.
        d.links.is_empty() && compatible(c.seed_dialed.as_deref().unwrap_or(&[]), &d.list)
    }

    /// What to tell the seed on `conn`: if we were the first hearsay node it reached, the
    /// canonical address of each node in `known` it has not dialed under any of its
    /// addresses, never `me`; and, given `dialers` (which seeds each node dialed, from the
    /// map), the seeds we dialed that it should dial (see `Seeds::should_dial`).
    pub fn sockets_for<'a>(
        &self,
        conn: ConnId,
        me: NodeId,
        known: impl Iterator<Item = &'a PeerRecord>,
        dialers: Option<&Dialers>,
    ) -> Vec<String> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let reached_at: Vec<String> = c
            .seed_dialed
            .iter()
            .flatten()
            .chain(c.dialed.iter())
            .filter_map(|a| authority(a))
            .collect();
        let mut out: Vec<String> = Vec::new();
        // Nodes only from the first node a seed reached (see [`Seeds::answered`]).
        for node in known.filter(|_| c.first) {
            let reached = node
                .addresses()
                .filter_map(|a| authority(a))
                .any(|a| reached_at.contains(&a));
            if node.id != me && !reached && !out.contains(&node.address) {
                out.push(node.address.clone());
            }
        }
        if let Some(dialers) = dialers {
            for address in self.dialed.keys() {
                let reached = authority(address).is_some_and(|a| reached_at.contains(&a));
                if !reached && self.should_dial(conn, address, dialers) && !out.contains(address) {
                    out.push(address.clone());
                }
            }
        }
        out
    }

    /// Whether the seed on `conn` should be told to dial `address`, a seed we dialed. Seeds
    /// are introduced in pairs only, a seed that no node dialed dialing one that a node did:
    /// a seed passes what it has dialed to every seed it links to, and a seed dials what it
    /// is told even when the other has dialed it, so a seed with two seed links would link
    /// others twice (and they would store each other's commits twice). So not if `conn` is,
    /// or could be, that seed; not if it is itself a seed some node dialed (our own dial
    /// back, or one whose first dial was to a node that dialed seeds: a dialed seed's first
    /// dial is its dial back); not if it has dialed a seed we know of or been told of one;
    /// and not if that seed was introduced already.
    fn should_dial(&self, conn: ConnId, address: &str, dialers: &Dialers) -> bool {
        let (Some(c), Some(d)) = (self.conns.get(&conn), self.dialed.get(address)) else {
            return false;
        };
        let list = c.seed_dialed.as_deref().unwrap_or(&[]);
        let known_seed =
            |a: &String| self.dialed.contains_key(a) || dialers.values().flatten().any(|s| s == a);
        let dialed_seed = self.dialed.values().any(|d| d.links.contains(&conn))
            || list
                .first()
                .and_then(|first| authority(first))
                .is_some_and(|first| dialers.contains_key(&first));
        !d.introduced
            && !self.might_be(conn, address)
            && !dialed_seed
            && !list.iter().any(known_seed)
            && !c.told.iter().any(|a| self.dialed.contains_key(a))
    }

    /// `SOCKETS` for the seed on `conn` if it would learn anything from it (or has had none
    /// yet); remembers what it was told.
    pub fn sockets_update<'a>(
        &mut self,
        conn: ConnId,
        me: NodeId,
        known: impl Iterator<Item = &'a PeerRecord>,
        dialers: Option<&Dialers>,
    ) -> Option<Vec<String>> {
        let told = &self.conns.get(&conn)?.told;
        // Only what it has not been told: what it was told may still be being dialed.
        let mut fresh: Vec<String> = self
            .sockets_for(conn, me, known, dialers)
            .into_iter()
            .filter(|a| !told.contains(a))
            .collect();
        // One seed, at most (see `should_dial`).
        let mut seeds = fresh.iter().filter(|a| self.dialed.contains_key(*a));
        if let Some(seed) = seeds.next().cloned() {
            fresh.retain(|a| *a == seed || !self.dialed.contains_key(a));
            if let Some(d) = self.dialed.get_mut(&seed) {
                d.introduced = true;
            }
        }
        let c = self.conns.get_mut(&conn)?;
        let first_answer = !c.answered;
        c.answered = true;
        c.told.extend(fresh.iter().cloned());
        (first_answer || !fresh.is_empty()).then_some(fresh)
    }

    /// We dialed the seed on `conn` and will hang up: the `SOCKETS` that introduces us (our
    /// address, or, if it holds a link to us already, the nodes and seeds we know). From now
    /// on the seed is one of those we dialed.
    pub fn introduction<'a>(
        &mut self,
        conn: ConnId,
        me: NodeId,
        own: &PeerRecord,
        known: impl Iterator<Item = &'a PeerRecord>,
    ) -> Vec<String> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let list = c.seed_dialed.clone().unwrap_or_default();
        let address = c.dialed.as_deref().and_then(canonical_address);
        let has_us = self.links_us_twice(conn, own);
        if let Some(address) = address {
            // If it holds a link to us already, its link is one of those whose history fits.
            let links = if has_us {
                self.conns
                    .iter()
                    .filter(|&(&other, o)| {
                        other != conn
                            && o.dialed.is_none()
                            && compatible(o.seed_dialed.as_deref().unwrap_or(&[]), &list)
                    })
                    .map(|(&other, _)| other)
                    .collect()
            } else {
                Vec::new()
            };
            self.dialed.insert(
                address,
                DialedSeed {
                    list,
                    links,
                    awaiting: !has_us,
                    first_match: None,
                    introduced: false,
                },
            );
        }
        if has_us {
            self.sockets_for(conn, me, known, None)
        } else {
            // Only us: its dial back is then the only dial it makes, and its list when that
            // opens is exactly the one it sent now, which is how we know the link.
            vec![own.address.clone()]
        }
    }
}

/// What the seed protocol asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `message` to each of these seeds (encoded once).
    Send {
        to: Vec<ConnId>,
        message: Message,
    },
    Close(ConnId, CloseReason),
    /// We dialed the seed at this address, introduced ourselves and hung up: its dial back
    /// will be its link, so the address is not redialed as failing.
    Introduced(String),
}

/// What the seed protocol reads when its timers fire: the nodes this peer knows to name to
/// seeds ([`known`]: membership's records and the map's), and the map (which
/// node dialed which seed).
pub struct Context<'a> {
    pub known: &'a dyn Fn() -> Vec<PeerRecord>,
    pub map: &'a TopologyView,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Answer a seed's connection, now that its dials under way have opened.
    Answer(ConnId),
    /// Tell seeds about nodes they have not heard of.
    Exchange,
}

/// The seed protocol as a part of the engine: every seed linked to this peer, the rules
/// above ([`Seeds`]), and when to answer and tell them.
pub struct SeedPeers {
    seeds: Seeds,
    me: NodeId,
    /// How this peer is dialed (nodes): named to a seed we dial.
    own: Option<PeerRecord>,
    /// How often to tell seeds of nodes they have not heard of yet.
    exchange_interval: Millis,
    exchange_scheduled: bool,
    timers: Timers<Timer>,
    out: VecDeque<Out>,
}

impl SeedPeers {
    pub fn new(me: NodeId, own: Option<PeerRecord>, exchange_interval: Millis) -> Self {
        Self {
            seeds: Seeds::default(),
            me,
            own,
            exchange_interval,
            exchange_scheduled: false,
            timers: Timers::default(),
            out: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// The seeds we dialed, for our map record.
    pub fn dialed_addresses(&self) -> Vec<String> {
        self.seeds.dialed_addresses()
    }

    /// Which seeds each node dialed, from the map (ours included).
    fn dialers(&self, map: &TopologyView) -> Dialers {
        let mut dialers = Dialers::new();
        for r in map.records() {
            if let Some(address) = r.address.as_deref().and_then(authority)
                && !r.seeds_dialed.is_empty()
            {
                dialers.insert(address, r.seeds_dialed.clone());
            }
        }
        for address in self.own.iter().flat_map(PeerRecord::addresses) {
            if let Some(address) = authority(address) {
                dialers.insert(address, self.seeds.dialed_addresses());
            }
        }
        dialers
    }

    /// The peer on `conn` (which we dialed at `dialed`, if we did) is a seed: its first
    /// frame came. `nodes` are the nodes membership knows.
    pub fn opened(&mut self, conn: ConnId, dialed: Option<String>) {
        self.seeds.opened(conn, dialed);
    }

    pub fn closed(&mut self, conn: ConnId) {
        self.seeds.closed(conn);
    }

    /// A seed's `SOCKETS` (what it has dialed).
    pub fn sockets(&mut self, conn: ConnId, addresses: &[String], now: Millis) {
        self.seeds.sockets_received(conn, addresses, now);
    }

    /// Answers a seed's first frame: introduces us and hangs up if we dialed it, closes a
    /// second link from one seed, or tells it the nodes we know once its dials under way
    /// have opened. `nodes` are the nodes membership knows.
    pub fn first_frame<'a>(
        &mut self,
        conn: ConnId,
        dialed: Option<String>,
        nodes: impl Iterator<Item = &'a PeerRecord>,
        now: Millis,
    ) {
        match (dialed, self.own.clone()) {
            (Some(address), Some(own)) => {
                // We dialed a seed. It will dial every address it hears of, ours included
                // once any node mentions it, and a seed with two links to us would get our
                // messages twice. So introduce ourselves and hang up: the seed's own dial
                // back becomes its one link.
                let addresses = self.seeds.introduction(conn, self.me, &own, nodes);
                self.out.push_back(Out::Send {
                    to: vec![conn],
                    message: Message::Sockets { addresses },
                });
                self.out.push_back(Out::Introduced(address));
                self.out
                    .push_back(Out::Close(conn, CloseReason::SeedDialsUs));
            }
            (None, Some(own)) if self.seeds.links_us_twice(conn, &own) => {
                // Its list names us: it holds a link to us already (see the module docs).
                self.out
                    .push_back(Out::Close(conn, CloseReason::SeedLinkedTwice));
            }
            _ => {
                // Inbound, or we cannot be dialed (a page): this link is the seed's only one.
                // Answered once the dials it has under way have had time to open.
                self.timers.insert(now + SEED_SETTLE, Timer::Answer(conn));
            }
        }
    }

    /// Passes `msg` on to every seed (see [`should_receive`] for which).
    pub fn pass_on(&mut self, msg: &Signed) {
        if self.seeds.is_empty() {
            return;
        }
        self.out.push_back(Out::Send {
            to: self.seeds.conns().collect(),
            message: Message::Text {
                data: msg.data.clone(),
            },
        });
    }

    /// Tells the seed on `conn` what it should dial: nodes of `known`, and with `dialers`,
    /// seeds.
    fn send_sockets(&mut self, conn: ConnId, known: &[PeerRecord], dialers: Option<&Dialers>) {
        if let Some(addresses) = self
            .seeds
            .sockets_update(conn, self.me, known.iter(), dialers)
        {
            self.out.push_back(Out::Send {
                to: vec![conn],
                message: Message::Sockets { addresses },
            });
        }
    }

    fn schedule_exchange(&mut self, now: Millis) {
        if !self.exchange_scheduled && !self.seeds.is_empty() {
            self.exchange_scheduled = true;
            self.timers
                .insert(now + self.exchange_interval, Timer::Exchange);
        }
    }
}

impl Part for SeedPeers {
    type Out = Out;
    type Context<'a> = Context<'a>;

    fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    fn handle_timeout(&mut self, now: Millis, cx: Context<'_>) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Answer(conn) => {
                    if self.seeds.conns().any(|c| c == conn) {
                        let known = (cx.known)();
                        self.seeds.answered(conn, known.iter());
                        self.send_sockets(conn, &known, None);
                        self.schedule_exchange(now);
                    }
                }
                Timer::Exchange => {
                    self.exchange_scheduled = false;
                    // Seeds are introduced only here, once the map has said who dialed
                    // which.
                    let conns: Vec<ConnId> = self.seeds.conns().collect();
                    let known = (cx.known)();
                    let dialers = self.dialers(cx.map);
                    for conn in conns {
                        self.send_sockets(conn, &known, Some(&dialers));
                    }
                    self.schedule_exchange(now);
                }
            }
        }
    }
}

/// The nodes peer `me` names to seeds: those membership knows (`nodes`, with every address),
/// and those only the map knows (their main address).
pub fn known<'a>(
    me: NodeId,
    nodes: impl Iterator<Item = &'a PeerRecord>,
    map: &TopologyView,
) -> Vec<PeerRecord> {
    let mut known: Vec<PeerRecord> = nodes.cloned().collect();
    for r in map.records() {
        if r.kind == PeerKind::Node
            && r.node != me
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

/// Whether the seeds linked to this node get `msg`: what this node published (`own`), and
/// what a page homed here published (`homed_here`); never what came from a seed.
pub fn should_receive(msg: &Signed, own: bool, homed_here: bool) -> bool {
    own || (!msg.author.is_seed() && homed_here)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, addresses: &[&str]) -> PeerRecord {
        PeerRecord {
            id: NodeId::from_bytes([n; 16]),
            address: addresses[0].into(),
            aliases: addresses[1..].iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn only_the_first_node_a_seed_reached_names_nodes_and_never_one_it_reached_nor_us() {
        let me = NodeId::from_bytes([1; 16]);
        let known = [
            record(1, &["ws://me:3000", "ws://me:3001"]),
            record(2, &["ws://b:3000", "ws://b:3001"]),
            record(3, &["ws://c:3000"]),
        ];
        let mut s = Seeds::default();
        // A seed that has dialed nothing yet (or only what we do not know): we are first.
        s.opened(ConnId(7), None);
        s.sockets_received(ConnId(7), &["ws://elsewhere:9".into()], 0);
        s.answered(ConnId(7), known.iter());
        assert_eq!(
            s.sockets_update(ConnId(7), me, known.iter(), None),
            Some(vec!["ws://b:3000".to_owned(), "ws://c:3000".to_owned()])
        );
        assert_eq!(
            s.sockets_update(ConnId(7), me, known.iter(), None),
            None,
            "nothing new to say"
        );
        // A seed that reached b (by its seed port) already: b is its first, we name nothing.
        s.opened(ConnId(8), None);
        s.sockets_received(ConnId(8), &["WS://B:3001/".into()], 0);
        s.answered(ConnId(8), known.iter());
        assert_eq!(
            s.sockets_update(ConnId(8), me, known.iter(), None),
            Some(vec![])
        );
        // One whose list names us holds a link to us already.
        s.opened(ConnId(9), None);
        s.sockets_received(ConnId(9), &["ws://me:3001/".into()], 0);
        assert!(s.links_us_twice(ConnId(9), &known[0]));
        assert!(!s.links_us_twice(ConnId(8), &known[0]));
    }

    #[test]
    fn a_seed_we_dialed_is_known_by_its_dial_back_and_never_told_its_own_address() {
        let me = NodeId::from_bytes([1; 16]);
        let own = record(1, &["ws://me:3000", "ws://me:3001"]);
        let mut s = Seeds::default();
        // Another seed's link, opened earlier: it has dialed b.
        s.opened(ConnId(1), None);
        s.sockets_received(ConnId(1), &["ws://b:3000".into()], 0);
        // We dial seed S, which has dialed nothing: we name only ourselves.
        s.opened(ConnId(2), Some("ws://s:6001".into()));
        s.sockets_received(ConnId(2), &[], 0);
        let intro = s.introduction(ConnId(2), me, &own, std::iter::empty());
        assert_eq!(intro, ["ws://me:3000"]);
        s.closed(ConnId(2));
        // Until its dial back is seen, a link with an empty list could be S.
        s.opened(ConnId(3), None);
        s.sockets_received(ConnId(3), &[], 10);
        assert_eq!(
            s.sockets_for(ConnId(1), me, std::iter::empty(), Some(&Dialers::new())),
            ["ws://s:6001"]
        );
        assert!(
            s.sockets_for(ConnId(3), me, std::iter::empty(), Some(&Dialers::new()))
                .is_empty(),
            "S itself"
        );
        // Its dial back was ConnId(3) (the first with exactly the list it sent): another
        // fresh seed's link is told of S.
        s.opened(ConnId(4), None);
        s.sockets_received(ConnId(4), &[], SEED_SETTLE + 11);
        assert_eq!(
            s.sockets_for(ConnId(4), me, std::iter::empty(), Some(&Dialers::new())),
            ["ws://s:6001"]
        );
        assert!(
            s.sockets_for(ConnId(3), me, std::iter::empty(), Some(&Dialers::new()))
                .is_empty()
        );
    }

    #[test]
    fn only_the_origin_or_a_pages_home_passes_a_message_to_seeds() {
        let key = crate::identity::Keypair::from_secret([1; 32]);
        let signed = Signed::signed(&key, 1, 0, "x".into());
        assert!(should_receive(&signed, true, false));
        assert!(should_receive(&signed, false, true));
        assert!(!should_receive(&signed, false, false));
        let seed_text = Signed::from_seed("x".into(), 0);
        assert!(!should_receive(&seed_text, false, true));
    }
}
