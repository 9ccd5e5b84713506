//! The network's map, learned within the protocol: every peer (node or page) says who it is
//! linked to in a small [`TopoRecord`] — kind, address, its links, which of them are the
//! broadcast tree's (eager), its seed (v1) peers, how many messages it holds — with a version
//! and a time to live.
//!
//! Records cost a bounded rate per peer, whatever happens to its links: a peer announces its
//! record when its links changed, but at most every [`Config::min_interval`], and otherwise
//! every [`Config::interval`] (three hours) to mend what a lost frame left stale. Both stretch
//! with the size of the map (by [`Config::per_record`] and a fifth of it), so what each peer
//! receives stays near a constant rate however large the network. A peer that left is not
//! waited out: its record goes once no record reachable from here lists it (`Map::prune`),
//! which its neighbours' next records see to, and a part cut off goes the same way. So an
//! idle network sends records only where links change (it renewed every minute before:
//! at 1,000 nodes, 93% of what an idle node sent). Records travel in batches: what a peer learns is
//! passed on at most every [`Config::flush_interval`], in one `MAP` frame per tree link (the
//! broadcast layer's eager neighbours), with dedup by version. A page that joins gets the
//! whole map at once from its parent alone ([`Map::welcome`]). Records that stop being
//! renewed expire too, a backstop.
//! Which links are the tree's changes as the tree is rebuilt; that alone makes a new record
//! only once the tree links have held [`TREE_CHANGE_AFTER`] change intervals (a minute in a
//! small network, four at 1,000 nodes): each new record reaches every peer, so while the root
//! walks to the centre (every node's tree links change at each step) this was most of what
//! the map cost, and a node whose parent goes back and forth is not told each time.
//!
//! Records are signed by the peer they describe (its key, and for a page the tab nonce its id
//! is derived with), so nobody can speak for another peer: a forged record under a real
//! peer's id, which would hide its real one until it expired, is refused. A signature costs
//! a record about 200 bytes. A record no honest peer sends is refused too, not kept or
//! passed on: more links than a node has ([`MAX_RECORD_LINKS`]), an address longer than
//! [`MAX_RECORD_ADDRESS`], more than [`MAX_SEEDS_DIALED`] seed addresses, a version (the
//! maker's clock) more than [`MAX_VERSION_AHEAD`] ahead of ours, which its own next record
//! could never replace, a time to live over a day. Signatures are checked only on records
//! newer than what is held, so copies cost no verification. The whole map is bounded in
//! records ([`MAX_RECORDS`]) and bytes ([`MAX_MAP_BYTES`]), and a `MAP` frame in bytes
//! ([`MAP_FRAME_BYTES`]), well inside the wire's frame limit whatever records it carries.
//!
//! *Repair.* Records travel along a tree that is rebuilt as it forms, so a batch can miss a
//! part of the network that was cut from the tree for a moment (measured: at 200 simulated
//! nodes, 20 of them held half the map 18 s after the start, and waited a minute for the
//! renewals). Every record lists its peer's links, so a peer sees whom it is missing: ids
//! that its records list and it holds no record of. Every [`Config::repair_interval`] it
//! asks its neighbours for those missing at least [`Config::want_after`], in `MAP_WANT`s of
//! at most [`MAX_WANTED`] ids, each neighbour in turn, each id asked again (of the next)
//! only after [`Config::want_again`] (a peer that left stays listed until its neighbours
//! renew). The answer is a `MAP` of the records the neighbour holds, charged to the asker's
//! pull budget like any answer; what is news is passed on along the tree as any record is.
//! What is tracked as missing is bounded ([`MAX_MISSING`]), and kept as records arrive;
//! repair rounds run only while something is missing.
//!
//! A message's journey is not sent at all: each `GOSSIP` carries its hop count, and a page
//! draws the journey along the tree links the records describe.

use crate::Millis;
use crate::id::NodeId;
use crate::identity::{Identity, Keypair, PublicKey, Signature, Tab, id_of};
use crate::part::Part;
use crate::peer::PeerKind;
use crate::timers::Timers;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Most pages a node lists among its links.
pub const LISTED_CLIENTS: usize = 32;
/// Most seed addresses one record lists (a bound on what peers can make us keep).
pub const MAX_SEEDS_DIALED: usize = 8;
/// Most records kept: beyond this, records of peers not yet known are dropped (a bound on
/// memory, whatever peers send).
pub const MAX_RECORDS: usize = 20_000;
/// Most links one record may list: a node's active view and [`LISTED_CLIENTS`] pages come
/// to 38, a page's nodes to 3. A record with more is refused, not passed on.
pub const MAX_RECORD_LINKS: usize = 64;
/// Longest address (or seed address) a record may carry.
pub const MAX_RECORD_ADDRESS: usize = 512;
/// How far ahead of this peer's clock a record's version may be: versions are the clock of
/// the peer that made them (see `Map::check_own`), so one far ahead could never be replaced
/// by the peer's own next record, and would hide it until it expired.
pub const MAX_VERSION_AHEAD: Millis = 60_000;
/// Most bytes of records (as [`TopoRecord::bytes`] counts them) in one `MAP` frame: the
/// largest record a peer accepts is about 10 KB, so a frame of records stays far below
/// [`crate::wire::MAX_FRAME_BYTES`] however they are batched.
pub const MAP_FRAME_BYTES: u64 = 128 * 1024;
/// Most bytes all records may take together (as [`TopologyView::bytes`] counts them): a
/// network of [`MAX_RECORDS`] honest peers needs about a tenth of it.
pub const MAX_MAP_BYTES: u64 = 32 * 1024 * 1024;
/// Most ids one `MAP_WANT` may name: a longer one is refused, as no honest peer sends it.
/// Its answer is then at most this many records (and charged to the asker's pull budget).
pub const MAX_WANTED: usize = 128;
/// Most ids of missing records tracked (listed by records held, but not held themselves).
pub const MAX_MISSING: usize = 4_096;
/// How many times a peer looks at its first record, every [`Config::first_check`], while
/// its tree is not ready; then at the usual pace.
pub const EARLY_CHECKS: u32 = 15;
/// How many least change intervals ([`Config::min_interval`], as stretched) a peer's
/// record is kept while no record reachable from here lists it (see `Map::prune`).
pub const UNREACHED_FOR: Millis = 3;
/// How many least change intervals ([`Config::min_interval`], as stretched) a peer's tree
/// links must have held before a record whose only change is them is told. Measured at 1,000
/// simulated nodes (seed 1, ten quiet minutes after the warm-up, the root still walking):
/// 3 intervals after the last record gave 2,574 B/s of records per node, 12 gave 1,094;
/// never telling such changes, 7. Counted from the tree's last change rather than the last
/// record, so a walk's steps, each a few rounds apart, are told once it stops.
pub const TREE_CHANGE_AFTER: Millis = 12;
/// How long after a page links here this node waits to see whether it is the page's parent
/// before sending it the whole map (see [`Map::welcome`]): the page's prune of its other
/// links comes within a round trip.
pub const WELCOME_AFTER: Millis = 1_000;
/// How many times a missing record is asked for before it is given up.
pub const WANT_TRIES: u8 = 3;

#[derive(Debug, Clone)]
pub struct Config {
    /// A record is renewed this often; it lives three times as long. Rarely: a peer that
    /// left fades off as soon as no record lists it (see `Map::prune`), so renewals only
    /// mend what a lost frame left stale (and the count of messages a record tells).
    pub interval: Millis,
    /// A changed record is announced at most this often.
    pub min_interval: Millis,
    /// What is learned is passed on at most this often: a record crosses the tree a hop
    /// per flush, so this is most of its time to the farthest peer. (Batching saves frames,
    /// not bytes: a frame's own overhead is a few dozen bytes beside records of hundreds.)
    pub flush_interval: Millis,
    /// Each record known stretches `interval` by this much (and `min_interval` by a fifth
    /// of it), so what each peer receives stays near a constant rate.
    pub per_record: Millis,
    /// When a peer first looks at its own record (plus up to as long again, by id): it is
    /// announced once the peer has links and, under Plumtree, a broadcast tree to send it
    /// along, looked at this often until then ([`EARLY_CHECKS`]). So a new network shows
    /// on its pages within seconds (what the tree loses as it forms, repair finds).
    pub first_check: Millis,
    /// Most records in one `MAP` frame.
    pub records_per_frame: usize,
    /// How often a peer looks for records it is missing (see the module's *Repair*).
    pub repair_interval: Millis,
    /// How long an id is listed without a record before it is asked for: records in
    /// flight arrive by then.
    pub want_after: Millis,
    /// How long before an id asked for is asked for again (of the next neighbour).
    pub want_again: Millis,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: 3 * 3_600_000,
            min_interval: 5_000,
            flush_interval: 250,
            per_record: 100,
            first_check: 1_000,
            records_per_frame: 200,
            repair_interval: 2_000,
            want_after: 4_000,
            want_again: 10_000,
        }
    }
}

/// One peer's account of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopoRecord {
    pub node: NodeId,
    pub kind: PeerKind,
    /// Where it can be dialed (none for browsers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Grows with every new record from the same peer; a lower one is stale.
    pub version: u64,
    /// Milliseconds the record stays valid after it is received.
    pub ttl: Millis,
    /// Its neighbours: a node's active view and up to [`LISTED_CLIENTS`] of its pages, a
    /// page's nodes. (Each page's own record names its nodes too, so a node with a thousand
    /// pages keeps a small record.)
    pub links: Vec<NodeId>,
    /// The links messages are pushed over (the broadcast tree), a subset of `links`.
    #[serde(default)]
    pub eager: Vec<NodeId>,
    /// How many pages it holds (nodes).
    #[serde(default)]
    pub clients: u32,
    /// How many seed (v1) peers are linked to it.
    #[serde(default)]
    pub seeds: u32,
    /// The seeds it dialed (its operator named them), by address: so that the nodes other
    /// seeds reach first can tell which of their seeds those are (see `seed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds_dialed: Vec<String>,
    /// How many messages it holds.
    #[serde(default)]
    pub held: u64,
    /// The key of the peer it describes: `node` must be the id of this key (with `tab`).
    pub key: PublicKey,
    /// For a page: the nonce its tab drew, which its id is derived with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tab: Option<Tab>,
    /// The peer's signature of every other field (see `TopoRecord::digest`).
    pub sig: Signature,
}

/// The map's frames: a batch of records, and a request for the records of some peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Message {
    #[serde(rename = "MAP")]
    Map { records: Vec<TopoRecord> },
    /// The records of these peers, if held (at most [`MAX_WANTED`]).
    #[serde(rename = "MAP_WANT")]
    Want { nodes: Vec<NodeId> },
}

/// What a peer currently says of itself, before it is stamped into a record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnLinks {
    pub links: Vec<NodeId>,
    pub eager: Vec<NodeId>,
    pub clients: u32,
    pub seeds: u32,
    pub seeds_dialed: Vec<String>,
}

impl OwnLinks {
    /// A peer's links: its neighbours (`active`) and up to [`LISTED_CLIENTS`] of its
    /// `pages`, and which of them are the tree's (`eager`). Counts and seeds are left to fill.
    pub fn of<'a>(
        mut links: Vec<NodeId>,
        pages: impl Iterator<Item = &'a NodeId>,
        eager: impl Fn(&NodeId) -> bool,
    ) -> OwnLinks {
        links.extend(pages.take(LISTED_CLIENTS).copied());
        let eager = links.iter().copied().filter(|id| eager(id)).collect();
        OwnLinks {
            links,
            eager,
            ..OwnLinks::default()
        }
    }
}

/// The newest unexpired record of every peer heard of.
#[derive(Debug, Default, Clone)]
pub struct TopologyView {
    records: BTreeMap<NodeId, (TopoRecord, Millis)>,
    /// What the records take, as [`TopoRecord::bytes`] counts it.
    bytes: u64,
    /// How many of the records are pages'.
    pages: usize,
}

impl TopoRecord {
    /// About how many bytes this record takes, kept or sent as JSON: its fixed fields with
    /// key and signature, and what it lists (an id is 34 bytes as JSON).
    pub fn bytes(&self) -> u64 {
        let listed = 34 * (self.links.len() + self.eager.len()) as u64;
        let strings = self.address.as_ref().map_or(0, String::len)
            + self.seeds_dialed.iter().map(String::len).sum::<usize>();
        let tab = if self.tab.is_some() { 40 } else { 0 };
        420 + tab + listed + strings as u64
    }

    /// Whether an honest peer could have sent this record: at most [`MAX_RECORD_LINKS`]
    /// links, addresses of at most [`MAX_RECORD_ADDRESS`] and [`MAX_SEEDS_DIALED`] seeds, a
    /// version at most [`MAX_VERSION_AHEAD`] ahead of our clock, and a time to live of at
    /// most a day. (Cheap: checked before the signature.)
    pub fn plausible(&self, now: Millis) -> bool {
        let short = |s: &String| s.len() <= MAX_RECORD_ADDRESS;
        self.links.len() <= MAX_RECORD_LINKS
            && self.eager.len() <= self.links.len()
            && self.address.as_ref().is_none_or(short)
            && self.seeds_dialed.len() <= MAX_SEEDS_DIALED
            && self.seeds_dialed.iter().all(short)
            && self.version <= now.saturating_add(MAX_VERSION_AHEAD)
            && self.ttl <= 24 * 3_600_000
    }

    /// Signs the record with `key` (for a page, with its `tab`): what its peer does before
    /// sending it.
    pub fn sign(&mut self, key: &Keypair, tab: Option<Tab>) {
        self.key = key.public();
        self.tab = tab;
        self.sig = key.sign(&self.digest());
    }

    /// Whether the peer this record describes signed it: `node` is the id of `key` (with
    /// `tab`), and `sig` is the key's signature of every other field.
    pub fn verify(&self) -> bool {
        id_of(&self.key, self.tab.as_ref()) == self.node
            && self.key.verify(&self.digest(), &self.sig)
    }

    /// What the peer signs: every field but the signature, each fixed-size or
    /// length-prefixed, under a tag of its own (so no other signed thing can pass for one).
    fn digest(&self) -> Vec<u8> {
        let mut d = b"hearsay/record/v1\0".to_vec();
        let string = |d: &mut Vec<u8>, s: &str| {
            d.extend((s.len() as u64).to_be_bytes());
            d.extend(s.as_bytes());
        };
        d.extend(self.node.as_bytes());
        d.push(match self.kind {
            PeerKind::Node => 0,
            PeerKind::Browser => 1,
        });
        d.push(u8::from(self.address.is_some()));
        string(&mut d, self.address.as_deref().unwrap_or(""));
        for n in [
            self.version,
            self.ttl,
            self.clients.into(),
            self.seeds.into(),
            self.held,
        ] {
            d.extend(n.to_be_bytes());
        }
        for list in [&self.links, &self.eager] {
            d.extend((list.len() as u64).to_be_bytes());
            for id in list {
                d.extend(id.as_bytes());
            }
        }
        d.extend((self.seeds_dialed.len() as u64).to_be_bytes());
        for s in &self.seeds_dialed {
            string(&mut d, s);
        }
        d.extend(self.key.as_bytes());
        d.push(u8::from(self.tab.is_some()));
        d.extend(self.tab.map(|t| *t.as_bytes()).unwrap_or_default());
        d
    }
}

impl TopologyView {
    /// Keeps `record` if it is newer than what we have; true if it was (so pass it on).
    pub fn accept(&mut self, record: TopoRecord, now: Millis) -> bool {
        if !self.is_news(&record) {
            return false;
        }
        let expires = now.saturating_add(record.ttl);
        self.bytes += record.bytes();
        self.pages += usize::from(record.kind == PeerKind::Browser);
        if let Some((old, _)) = self.records.insert(record.node, (record, expires)) {
            self.bytes -= old.bytes();
            self.pages -= usize::from(old.kind == PeerKind::Browser);
        }
        true
    }

    /// Whether `record` is newer than what we have of its peer.
    pub fn is_news(&self, record: &TopoRecord) -> bool {
        self.records
            .get(&record.node)
            .is_none_or(|(known, _)| known.version < record.version)
    }

    /// Forgets records whose time to live has run out.
    pub fn expire(&mut self, now: Millis) {
        let (mut freed, mut pages) = (0, 0);
        self.records.retain(|_, (record, expires)| {
            let keep = *expires > now;
            if !keep {
                freed += record.bytes();
                pages += usize::from(record.kind == PeerKind::Browser);
            }
            keep
        });
        self.bytes -= freed;
        self.pages -= pages;
    }

    /// Forgets the record of `node`, if held.
    pub fn remove(&mut self, node: &NodeId) {
        if let Some((old, _)) = self.records.remove(node) {
            self.bytes -= old.bytes();
            self.pages -= usize::from(old.kind == PeerKind::Browser);
        }
    }

    /// How many of the records are nodes' (not pages').
    pub fn nodes(&self) -> usize {
        self.records.len() - self.pages
    }

    /// What the records take together, about (see [`TopoRecord::bytes`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Current records, by node id.
    pub fn records(&self) -> impl Iterator<Item = &TopoRecord> {
        self.records.values().map(|(r, _)| r)
    }

    pub fn get(&self, node: &NodeId) -> Option<&TopoRecord> {
        self.records.get(node).map(|(r, _)| r)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Time to compare our links with what we last announced (and to expire records).
    Check,
    Flush,
    /// Time to ask for records listed but missing.
    Repair,
    /// Time to send the whole map to a page that linked here, if we are its parent.
    Welcome(NodeId),
}

/// What the map asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `message` to this neighbour. Neighbours that get the same records share one
    /// `Arc`, so the frame is encoded once.
    Send(NodeId, Arc<Message>),
    /// Answer this neighbour's `MAP_WANT` with `message`, if its pull budget allows.
    Reply(NodeId, Arc<Message>),
    /// This neighbour sent what no honest peer sends.
    Bad(NodeId, &'static str),
}

/// What the map reads when its timers fire: how many messages this peer holds, whether its
/// record can go out yet (a node that starts with the network waits for the broadcast tree to
/// form, so its first record does not go out over links that are about to be pruned and miss
/// part of the network), its links as they are now (read only when its record may be due),
/// the tree's links, which records travel along, and the neighbours missing records may be
/// asked of.
pub struct Context<'a> {
    pub held: u64,
    pub ready: bool,
    pub own: &'a dyn Fn() -> OwnLinks,
    pub eager: &'a dyn Fn() -> Vec<NodeId>,
    pub neighbours: &'a dyn Fn() -> Vec<NodeId>,
}

/// A record listed by others that this peer does not hold.
#[derive(Debug, Clone, Copy)]
struct Missing {
    since: Millis,
    asked: Option<Millis>,
    tries: u8,
}

/// The map as this peer knows it, and what it still has to pass on.
pub struct Map {
    me: NodeId,
    /// What our own records are signed with.
    identity: Identity,
    kind: PeerKind,
    address: Option<String>,
    config: Config,
    view: TopologyView,
    /// What we last announced, and when.
    announced: Option<(OwnLinks, Millis)>,
    /// Which links were the tree's at the last check, and since when they have been.
    tree_since: (Vec<NodeId>, Millis),
    version: u64,
    /// Records to pass on, each with the neighbour it came from (not sent back there).
    outbox: Vec<(TopoRecord, Option<NodeId>)>,
    flush_scheduled: bool,
    timers: Timers<Timer>,
    out: VecDeque<Out>,
    /// Records refused as no honest peer would send them.
    refused: u64,
    /// Ids listed by records held, with no record of their own here (at most
    /// [`MAX_MISSING`]).
    missing: BTreeMap<NodeId, Missing>,
    /// How many `MAP_WANT`s were sent: picks the next neighbour asked.
    asks: usize,
    /// How many times our first record was looked at before the tree was ready.
    early: u32,
    /// Whether a repair round is due (only while something is missing).
    repair_scheduled: bool,
    /// Peers whose records no record reachable from here lists, since when (at most one
    /// entry per record held, so within [`MAX_RECORDS`]).
    unreached: BTreeMap<NodeId, Millis>,
}

impl Map {
    /// Records refused as no honest peer would send them (see [`TopoRecord::plausible`]) or
    /// as their peer did not sign them.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    pub fn new(
        identity: Identity,
        kind: PeerKind,
        address: Option<String>,
        config: Config,
        now: Millis,
    ) -> Self {
        let me = identity.id();
        let mut timers = Timers::default();
        timers.insert(
            now + config.first_check + me.spread(config.first_check),
            Timer::Check,
        );
        Self {
            me,
            identity,
            kind,
            address,
            config,
            view: TopologyView::default(),
            announced: None,
            tree_since: (Vec::new(), now),
            version: 0,
            outbox: Vec::new(),
            flush_scheduled: false,
            timers,
            out: VecDeque::new(),
            refused: 0,
            missing: BTreeMap::new(),
            asks: 0,
            early: 0,
            repair_scheduled: false,
            unreached: BTreeMap::new(),
        }
    }

    pub fn view(&self) -> &TopologyView {
        &self.view
    }

    /// The renewal and the least change intervals, stretched with the size of the map.
    pub fn pace(&self) -> (Millis, Millis) {
        let stretch = self.view.len() as Millis * self.config.per_record;
        (
            self.config.interval.max(stretch),
            self.config.min_interval.max(stretch / 5),
        )
    }

    /// Records from neighbour `from`; the new ones are kept and queued to pass on.
    pub fn received(&mut self, from: NodeId, records: Vec<TopoRecord>, now: Millis) {
        for record in records {
            if record.node == self.me {
                continue;
            }
            if !record.plausible(now) {
                self.refused += 1;
                continue;
            }
            let full = self.view.len() >= MAX_RECORDS || self.view.bytes() >= MAX_MAP_BYTES;
            if (full && self.view.get(&record.node).is_none()) || !self.view.is_news(&record) {
                continue;
            }
            // Only now, for news: what is checked costs a verification each.
            if !record.verify() {
                self.refused += 1;
                continue;
            }
            if self.view.accept(record.clone(), now) {
                self.note_missing(&record, now);
                self.outbox.push((record, Some(from)));
            }
        }
        self.schedule_flush(now);
    }

    /// A neighbour's `MAP_WANT`: the records it names that we hold, in frames of the usual
    /// bounds (see [`Map::messages`]).
    pub fn wanted(&mut self, from: NodeId, nodes: Vec<NodeId>) {
        if nodes.len() > MAX_WANTED {
            self.out
                .push_back(Out::Bad(from, "MAP_WANT names too many peers"));
            return;
        }
        let nodes: BTreeSet<NodeId> = nodes.into_iter().collect();
        let records: Vec<&TopoRecord> = nodes.iter().filter_map(|n| self.view.get(n)).collect();
        for message in self.messages(&records) {
            self.out.push_back(Out::Reply(from, message));
        }
    }

    /// How many ids are listed by the records held but have no record here.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    /// Notes the ids `record` lists that have no record here (and that its own peer's is
    /// no longer missing): kept as records arrive, so a repair round reads no records.
    fn note_missing(&mut self, record: &TopoRecord, now: Millis) {
        self.missing.remove(&record.node);
        for id in &record.links {
            if self.missing.len() >= MAX_MISSING {
                break;
            }
            if *id != self.me && self.view.get(id).is_none() {
                self.missing.entry(*id).or_insert(Missing {
                    since: now,
                    asked: None,
                    tries: 0,
                });
            }
        }
        // Repair rounds run only while something is missing (an idle peer stays quiet).
        if !self.missing.is_empty() && !self.repair_scheduled {
            self.repair_scheduled = true;
            let at =
                now + self.config.repair_interval + self.me.spread(self.config.repair_interval);
            self.timers.insert(at, Timer::Repair);
        }
    }

    /// Asks the neighbours, each in turn, for the ids missing long enough and not asked
    /// for lately; an id asked for [`WANT_TRIES`] times in vain is forgotten (its peer has
    /// most likely left; a record that lists it again notes it again).
    fn repair(&mut self, neighbours: Vec<NodeId>, now: Millis) {
        let (after, again) = (self.config.want_after, self.config.want_again);
        let due =
            |m: &Missing| now >= m.since + after && m.asked.is_none_or(|at| now >= at + again);
        self.missing.retain(|_, m| m.tries < WANT_TRIES || !due(m));
        if neighbours.is_empty() {
            return;
        }
        let asked: Vec<NodeId> = self
            .missing
            .iter_mut()
            .filter(|(_, m)| due(m))
            .take(MAX_WANTED * neighbours.len())
            .map(|(id, m)| {
                m.asked = Some(now);
                m.tries += 1;
                *id
            })
            .collect();
        // A peer that missed much of the map (cut from the tree as it formed) spreads its
        // asking over its neighbours.
        for nodes in asked.chunks(MAX_WANTED) {
            let to = neighbours[self.asks % neighbours.len()];
            self.asks += 1;
            let nodes = nodes.to_vec();
            self.out
                .push_back(Out::Send(to, Arc::new(Message::Want { nodes })));
        }
    }

    /// Forgets the records of peers that can no longer be reached from here through the
    /// links records list, once they have been so for [`UNREACHED_FOR`] checks' worth of
    /// time (a new peer's record can come before the records that list it). A page's record
    /// stays while it lists a node that can be reached: a node lists only some of its pages.
    ///
    /// This, not a record's time to live, is how a peer that left fades off the map: its
    /// neighbours drop their links to it and say so within [`Config::min_interval`], and a
    /// part of the network cut off goes the same way. So records need renewing only
    /// rarely ([`Config::interval`]), and an idle network sends almost no records.
    fn prune(&mut self, neighbours: Vec<NodeId>, now: Millis) {
        let mut reached: BTreeSet<NodeId> = BTreeSet::new();
        let mut next: Vec<NodeId> = std::iter::once(self.me).chain(neighbours).collect();
        while let Some(id) = next.pop() {
            if reached.insert(id)
                && let Some(record) = self.view.get(&id)
            {
                next.extend(record.links.iter().filter(|l| !reached.contains(l)));
            }
        }
        let grace = UNREACHED_FOR * self.pace().1;
        let mut gone = Vec::new();
        let mut still = BTreeMap::new();
        for record in self.view.records() {
            let held = reached.contains(&record.node)
                || (record.kind == PeerKind::Browser
                    && record.links.iter().any(|l| reached.contains(l)));
            if held {
                continue;
            }
            let since = self.unreached.get(&record.node).copied().unwrap_or(now);
            if now >= since + grace {
                gone.push(record.node);
            } else {
                still.insert(record.node, since);
            }
        }
        self.unreached = still;
        for id in gone {
            self.view.remove(&id);
        }
    }

    /// A page linked to this node gets the whole map at once, not over the next minute: in
    /// [`WELCOME_AFTER`], if its link is then the page's way to the tree (eager). A page
    /// links to three nodes and keeps one as its parent, pruning the others at once, so only
    /// that one sends it the map (each sent it before: three copies of the whole map on
    /// every page load). A page's next parent sends only what changes: it holds the rest.
    pub fn welcome(&mut self, page: NodeId, now: Millis) {
        self.timers
            .insert(now + WELCOME_AFTER, Timer::Welcome(page));
    }

    /// Sends the whole map to `to`.
    pub fn send_all(&mut self, to: NodeId) {
        let records: Vec<&TopoRecord> = self.view.records().collect();
        for message in self.messages(&records) {
            self.out.push_back(Out::Send(to, message));
        }
    }

    /// Records in frames of at most [`Config::records_per_frame`] records and
    /// [`MAP_FRAME_BYTES`] bytes.
    fn messages(&self, records: &[&TopoRecord]) -> Vec<Arc<Message>> {
        let most = self.config.records_per_frame.max(1);
        let mut frames = Vec::new();
        let (mut batch, mut bytes): (Vec<TopoRecord>, u64) = (Vec::new(), 0);
        for &r in records {
            if !batch.is_empty() && (batch.len() >= most || bytes + r.bytes() > MAP_FRAME_BYTES) {
                frames.push(Arc::new(Message::Map {
                    records: std::mem::take(&mut batch),
                }));
                bytes = 0;
            }
            bytes += r.bytes();
            batch.push(r.clone());
        }
        if !batch.is_empty() {
            frames.push(Arc::new(Message::Map { records: batch }));
        }
        frames
    }

    /// Passes what was learned on along the tree: every eager neighbour gets the batch, less
    /// what it sent us itself.
    fn flush(&mut self, batch: Vec<(TopoRecord, Option<NodeId>)>, eager: Vec<NodeId>) {
        let mut everything: Option<Vec<Arc<Message>>> = None;
        for node in eager {
            let messages = if batch.iter().any(|(_, from)| *from == Some(node)) {
                let theirs: Vec<&TopoRecord> = batch
                    .iter()
                    .filter(|(_, from)| *from != Some(node))
                    .map(|(r, _)| r)
                    .collect();
                self.messages(&theirs)
            } else {
                everything
                    .get_or_insert_with(|| {
                        let all: Vec<&TopoRecord> = batch.iter().map(|(r, _)| r).collect();
                        self.messages(&all)
                    })
                    .clone()
            };
            for message in messages {
                self.out.push_back(Out::Send(node, message));
            }
        }
    }

    fn check_own(&mut self, links: OwnLinks, held: u64, now: Millis) {
        let (interval, min_interval) = self.pace();
        if self.tree_since.0 != links.eager {
            self.tree_since = (links.eager.clone(), now);
        }
        let due = match &self.announced {
            // Nothing to say before our first link.
            None => !links.links.is_empty(),
            Some((last, at)) => {
                let changed = (&last.links, last.clients, last.seeds, &last.seeds_dialed)
                    != (
                        &links.links,
                        links.clients,
                        links.seeds,
                        &links.seeds_dialed,
                    );
                // The tree changes as it is rebuilt; that alone is told once it has held.
                let tree_changed = last.eager != links.eager
                    && now >= self.tree_since.1 + TREE_CHANGE_AFTER * min_interval;
                // Renewals spread by id, so a network started at once does not renew at once.
                let renewal = at + interval + self.me.spread(interval / 4);
                changed || tree_changed || now >= renewal
            }
        };
        if !due {
            return;
        }
        // Versions must grow across restarts too (a reloaded page keeps no state): use the
        // clock, nudged past the last one.
        self.version = now.max(self.version + 1);
        let mut seeds_dialed = links.seeds_dialed.clone();
        seeds_dialed.truncate(MAX_SEEDS_DIALED);
        let mut record = TopoRecord {
            node: self.me,
            kind: self.kind,
            address: self.address.clone(),
            version: self.version,
            ttl: 3 * interval,
            links: links.links.clone(),
            eager: links.eager.clone(),
            clients: links.clients,
            seeds: links.seeds,
            seeds_dialed,
            held,
            key: self.identity.key.public(),
            tab: None,
            sig: Signature::from_bytes([0; 64]),
        };
        record.sign(&self.identity.key, self.identity.tab);
        self.announced = Some((links, now));
        self.view.accept(record.clone(), now);
        self.outbox.push((record, None));
        self.schedule_flush(now);
    }

    fn schedule_flush(&mut self, now: Millis) {
        if !self.flush_scheduled && !self.outbox.is_empty() {
            self.flush_scheduled = true;
            self.timers
                .insert(now + self.config.flush_interval, Timer::Flush);
        }
    }
}

impl Part for Map {
    type Out = Out;
    type Context<'a> = Context<'a>;

    fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    fn handle_timeout(&mut self, now: Millis, cx: Context<'_>) {
        let mut checked = false;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Check => {
                    // Not ready (no tree yet): looked at again soon, as the tree forms in
                    // seconds and the first record is what a new network waits for (for
                    // [`EARLY_CHECKS`] at most: a peer with no links stays quiet).
                    let (_, min_interval) = self.pace();
                    let early = !cx.ready && self.announced.is_none() && self.early < EARLY_CHECKS;
                    self.early += u32::from(early);
                    let next = match early {
                        true => self.config.first_check,
                        false => min_interval,
                    };
                    self.timers.insert(now + next, Timer::Check);
                    self.view.expire(now);
                    self.prune((cx.neighbours)(), now);
                    if !checked && cx.ready {
                        checked = true;
                        self.check_own((cx.own)(), cx.held, now);
                    }
                }
                Timer::Flush => {
                    self.flush_scheduled = false;
                    if !self.outbox.is_empty() {
                        let batch = std::mem::take(&mut self.outbox);
                        self.flush(batch, (cx.eager)());
                    }
                }
                Timer::Welcome(page) => {
                    if (cx.eager)().contains(&page) {
                        self.send_all(page);
                    }
                }
                Timer::Repair => {
                    self.repair((cx.neighbours)(), now);
                    self.repair_scheduled = !self.missing.is_empty();
                    if self.repair_scheduled {
                        self.timers
                            .insert(now + self.config.repair_interval, Timer::Repair);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_secret([n; 32])
    }

    fn id(n: u8) -> NodeId {
        key(n).public().node_id()
    }

    /// Signs `record` as node `n`'s.
    fn signed(n: u8, mut record: TopoRecord) -> TopoRecord {
        record.node = id(n);
        record.sign(&key(n), None);
        record
    }

    fn rec(node: u8, version: u64, links: &[u8]) -> TopoRecord {
        let unsigned = TopoRecord {
            node: id(node),
            kind: PeerKind::Node,
            address: Some(format!("ws://n{node}:3000")),
            version,
            ttl: 1_000,
            links: links.iter().map(|&l| id(l)).collect(),
            eager: Vec::new(),
            clients: 0,
            seeds: 1,
            seeds_dialed: Vec::new(),
            held: 7,
            key: key(node).public(),
            tab: None,
            sig: Signature::from_bytes([0; 64]),
        };
        signed(node, unsigned)
    }

    fn map(n: u8, config: Config) -> Map {
        Map::new(Identity::node(key(n)), PeerKind::Node, None, config, 0)
    }

    #[test]
    fn a_browsers_record_has_no_address_field() {
        let browser = signed(
            9,
            TopoRecord {
                kind: PeerKind::Browser,
                address: None,
                ..rec(9, 1, &[1])
            },
        );
        assert!(browser.verify());
        let text = serde_json::to_string(&browser).unwrap();
        assert!(!text.contains("address"), "{text}");
        assert_eq!(serde_json::from_str::<TopoRecord>(&text).unwrap(), browser);
    }

    #[test]
    fn only_newer_versions_are_kept_and_passed_on() {
        let mut v = TopologyView::default();
        assert!(v.accept(rec(1, 5, &[2]), 0));
        assert!(
            !v.accept(rec(1, 5, &[2]), 10),
            "the same version again is not news"
        );
        assert!(!v.accept(rec(1, 4, &[3]), 10), "an older version is stale");
        assert!(v.accept(rec(1, 6, &[3]), 10));
        assert_eq!(v.get(&id(1)).unwrap().links, vec![id(3)]);
    }

    #[test]
    fn records_expire_unless_renewed() {
        let mut v = TopologyView::default();
        v.accept(rec(1, 1, &[]), 0);
        v.accept(rec(2, 1, &[]), 500);
        v.expire(999);
        assert_eq!(v.len(), 2);
        v.expire(1_000);
        assert_eq!(v.len(), 1, "node 1's record ran out");
        v.accept(rec(2, 2, &[]), 1_400);
        v.expire(1_600);
        assert_eq!(v.len(), 1, "node 2 renewed in time");
    }

    /// Runs the map's timers with a tree of one link; the records that went out on it.
    fn tick(m: &mut Map, now: Millis, own: impl Fn() -> OwnLinks) -> Option<Vec<TopoRecord>> {
        let cx = Context {
            held: 0,
            ready: true,
            own: &own,
            eager: &|| vec![id(99)],
            neighbours: &|| vec![id(99)],
        };
        m.handle_timeout(now, cx);
        let records: Vec<TopoRecord> = std::iter::from_fn(|| m.poll())
            .flat_map(|out| match out {
                Out::Send(_, message) => match &*message {
                    Message::Map { records } => records.clone(),
                    Message::Want { .. } => Vec::new(),
                },
                _ => Vec::new(),
            })
            .collect();
        (!records.is_empty()).then_some(records)
    }

    #[test]
    fn own_records_go_out_at_a_bounded_rate_and_news_is_batched() {
        let config = Config::default();
        let mut m = map(1, config.clone());
        let links = |l: &[u8]| OwnLinks {
            links: l.iter().map(|&n| id(n)).collect(),
            ..OwnLinks::default()
        };
        // Links change every 1.25 s for 25 s: at most one record per 5 s.
        let (mut announced, mut heard, mut flushes) = (0, 0, 0);
        let mut now = 0;
        for step in 0..20u8 {
            now += 1_250;
            m.received(id(7), vec![rec(20 + step, 1, &[])], now);
            if let Some(batch) = tick(&mut m, now, || links(&[2, 3 + step])) {
                announced += batch.iter().filter(|r| r.node == id(1)).count();
                heard += batch.iter().filter(|r| r.node != id(1)).count();
                flushes += 1;
            }
        }
        assert!((3..=5).contains(&announced), "{announced} records in 25 s");
        assert!(
            heard >= 19 && flushes <= 20,
            "{heard} records heard went out in {flushes} batches"
        );
        // Unchanged links: renewed once the interval is up, not at every check.
        let mut quiet = 0;
        for _ in 0..15 {
            now += 5_000;
            if let Some(batch) = tick(&mut m, now, || links(&[2, 40])) {
                quiet += batch.iter().filter(|r| r.node == id(1)).count();
            }
        }
        assert!(
            (1..=2).contains(&quiet),
            "{quiet} records in 75 quiet seconds"
        );
        // Checks every 5 s for `checks`, the tree links at each check chosen by `tree`: how
        // many of our own records went out.
        let mut own_told = |checks: u64, tree: &dyn Fn(u64) -> u8| {
            let mut told = 0;
            for step in 0..checks {
                now += 5_000;
                let own = || OwnLinks {
                    eager: vec![id(tree(step))],
                    ..links(&[2, 40])
                };
                if let Some(batch) = tick(&mut m, now, own) {
                    told += batch.iter().filter(|r| r.node == id(1)).count();
                }
            }
            told
        };
        // A tree link changing alone is told at a slower pace: once in 70 s.
        assert_eq!(own_told(TREE_CHANGE_AFTER + 2, &|_| 2), 1);
        // Tree links that keep changing (a root walking to the centre rebuilds the tree at
        // each step) are told once they have held that long, not while they change.
        let walking = own_told(3 * TREE_CHANGE_AFTER, &|step| [40, 2][step as usize % 2]);
        assert_eq!(
            walking, 0,
            "records told while the tree changed at every check"
        );
        assert_eq!(own_told(TREE_CHANGE_AFTER + 2, &|_| 40), 1);
    }

    #[test]
    fn intervals_stretch_with_the_size_of_the_map() {
        let config = Config {
            interval: 20_000,
            ..Config::default()
        };
        let mut m = map(1, config);
        assert_eq!(m.pace(), (20_000, 5_000));
        let many: Vec<TopoRecord> = (2..=252u8).map(|n| rec(n, 1, &[])).collect();
        m.received(id(9), many, 0);
        let n = m.view().len() as u64;
        assert_eq!(m.pace(), (20_000.max(n * 100), 5_000.max(n * 20)));
        assert_eq!(Config::default().interval, 3 * 3_600_000, "rare renewals");
    }

    #[test]
    fn a_peer_no_reachable_record_lists_fades_off_after_a_grace() {
        let mut m = map(1, Config::default());
        let mut page = rec(6, 1, &[3]);
        page.kind = PeerKind::Browser;
        page.address = None;
        page.sign(&key(6), None);
        // 1 - 2 - 3, a page on 3 that 3 does not list, and 4 - 5 cut off from us.
        let records = vec![
            rec(2, 1, &[1, 3]),
            rec(3, 1, &[2]),
            rec(4, 1, &[5]),
            rec(5, 1, &[4]),
            page,
        ];
        m.received(id(2), records, 0);
        let grace = UNREACHED_FOR * m.pace().1;
        let held = |m: &Map| {
            let mut ids: Vec<NodeId> = m.view().records().map(|r| r.node).collect();
            ids.sort();
            ids
        };
        m.prune(vec![id(2)], 0);
        assert_eq!(held(&m).len(), 5, "kept through the grace");
        assert_eq!(
            m.view().nodes(),
            4,
            "what broadcast scales by: nodes, not pages"
        );
        m.prune(vec![id(2)], grace - 1);
        assert_eq!(held(&m).len(), 5);
        // 4 comes back into reach (3 links to it) before the grace ends: it stays, and
        // its grace starts again if it goes out of reach once more.
        m.received(id(2), vec![rec(3, 2, &[2, 4])], grace - 1);
        m.prune(vec![id(2)], grace);
        let mut want = vec![id(2), id(3), id(4), id(5), id(6)];
        want.sort();
        assert_eq!(held(&m), want);
        m.received(id(2), vec![rec(3, 3, &[2])], grace + 1);
        m.prune(vec![id(2)], grace + 1);
        m.prune(vec![id(2)], 2 * grace);
        assert_eq!(held(&m).len(), 5, "4 and 5: a new grace");
        m.prune(vec![id(2)], 2 * grace + 1);
        let mut want = vec![id(2), id(3), id(6)];
        want.sort();
        assert_eq!(
            held(&m),
            want,
            "the part cut off is gone; the page on 3 stays"
        );
        assert_eq!(m.view().nodes(), 2);
        m.view.expire(u64::MAX);
        assert_eq!((m.view().len(), m.view().nodes()), (0, 0));
        assert_eq!(
            m.view().bytes(),
            m.view().records().map(TopoRecord::bytes).sum::<u64>()
        );
    }

    #[test]
    fn a_record_is_kept_only_as_its_peer_signed_it() {
        let mut m = map(1, Config::default());
        let honest = rec(2, 10, &[1]);
        m.received(id(7), vec![honest.clone()], 100);
        assert_eq!(m.view().get(&id(2)), Some(&honest));
        // Another key speaks for node 2, with a newer version that would hide its record.
        let mut forged = rec(3, 20, &[3]);
        forged.node = id(2);
        forged.sign(&key(3), None);
        // Node 2's own signature, on a record changed after it signed.
        let mut tampered = rec(2, 30, &[1]);
        tampered.links.push(id(5));
        // A page's record under another tab's id.
        let (tab, other) = (Tab::from_bytes([1; 16]), Tab::from_bytes([2; 16]));
        let mut page = rec(4, 1, &[1]);
        page.node = key(4).public().page_id(&other);
        page.sign(&key(4), Some(tab));
        m.received(id(7), vec![forged, tampered, page], 200);
        assert_eq!(m.refused(), 3);
        assert_eq!(m.view().get(&id(2)), Some(&honest), "node 2's record stays");
        assert_eq!(m.view().len(), 1);
        // A page's own record verifies under its tab.
        let mut page = Map::new(
            Identity::page(key(4), tab),
            PeerKind::Browser,
            None,
            Config::default(),
            0,
        );
        let own = || OwnLinks {
            links: vec![id(1)],
            ..OwnLinks::default()
        };
        assert_eq!(tick(&mut page, 20_000, own), None, "batched for a flush");
        let records = tick(&mut page, 21_000, own).unwrap();
        assert!(records[0].verify() && records[0].tab == Some(tab));
        m.received(id(7), records, 300);
        assert_eq!(m.view().len(), 2);
    }

    /// What `m` sent: each `MAP_WANT` with whom it went to, and each answer's records.
    fn wants_and_replies(m: &mut Map) -> (Vec<(NodeId, Vec<NodeId>)>, Vec<TopoRecord>) {
        let (mut wants, mut replies) = (Vec::new(), Vec::new());
        while let Some(out) = m.poll() {
            match out {
                Out::Send(to, message) => {
                    if let Message::Want { nodes } = &*message {
                        wants.push((to, nodes.clone()));
                    }
                }
                Out::Reply(_, message) => {
                    if let Message::Map { records } = &*message {
                        replies.extend(records.iter().cloned());
                    }
                }
                Out::Bad(..) => panic!("refused"),
            }
        }
        (wants, replies)
    }

    #[test]
    fn records_listed_but_missing_are_asked_for_spread_over_the_neighbours() {
        let config = Config::default();
        let mut m = map(1, config.clone());
        let cx = |now: Millis, m: &mut Map| {
            let cx = Context {
                held: 0,
                ready: true,
                own: &OwnLinks::default,
                eager: &Vec::new,
                neighbours: &|| vec![id(50), id(51)],
            };
            m.handle_timeout(now, cx);
        };
        // Records list 3 and 4, and 151 more ids (the tree lost their records).
        let listing = |n: u8, ids: &mut dyn Iterator<Item = u8>| {
            let mut r = rec(n, 1, &[]);
            r.links = ids.map(id).collect();
            r.ttl = 3_600_000;
            signed(n, r)
        };
        let records = vec![
            listing(2, &mut [3, 4].into_iter().chain(100..=159)),
            listing(5, &mut (160..=223)),
            listing(6, &mut (224..=250).chain([1])),
        ];
        m.received(id(50), records, 0);
        m.received(id(50), vec![listing(3, &mut [2].into_iter())], 0);
        assert_eq!(m.missing(), 152, "4 and 100..=250, not 3 nor ourselves");
        // Not asked before `want_after`: records in flight arrive meanwhile.
        cx(config.repair_interval, &mut m);
        let (wants, _) = wants_and_replies(&mut m);
        assert!(wants.is_empty(), "{wants:?}");
        m.received(id(51), vec![listing(4, &mut [2].into_iter())], 2_000);
        assert_eq!(m.missing(), 151);
        let mut now = 0;
        let mut asked = Vec::new();
        while asked.is_empty() {
            now += config.repair_interval;
            cx(now, &mut m);
            asked = wants_and_replies(&mut m).0;
        }
        assert!(now >= config.want_after);
        // Two neighbours, 151 ids: one want each, none over the bound.
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert_ne!(asked[0].0, asked[1].0);
        assert!(asked.iter().all(|(_, n)| n.len() <= MAX_WANTED));
        assert_eq!(asked.iter().map(|(_, n)| n.len()).sum::<usize>(), 151);
        // Not asked again before `want_again`; given up after `WANT_TRIES` asks.
        let mut asks = 1;
        for _ in 0..40 {
            now += config.repair_interval;
            cx(now, &mut m);
            let wants = wants_and_replies(&mut m).0;
            asks += usize::from(!wants.is_empty());
        }
        assert_eq!(asks, WANT_TRIES as usize);
        assert_eq!(m.missing(), 0, "peers that never answered are given up");
    }

    #[test]
    fn a_want_is_answered_with_the_records_held_and_refused_past_its_bound() {
        let mut m = map(1, Config::default());
        m.received(id(7), vec![rec(2, 1, &[]), rec(3, 1, &[])], 0);
        // Named twice, and one not held: each record held once.
        m.wanted(id(9), vec![id(2), id(2), id(4), id(3)]);
        let (_, replies) = wants_and_replies(&mut m);
        let mut got: Vec<NodeId> = replies.iter().map(|r| r.node).collect();
        got.sort();
        let mut want = vec![id(2), id(3)];
        want.sort();
        assert_eq!(got, want);
        m.wanted(id(9), vec![id(2); MAX_WANTED + 1]);
        assert!(matches!(m.poll(), Some(Out::Bad(n, _)) if n == id(9)));
        assert!(m.poll().is_none(), "nothing answered");
    }

    /// A page links to three nodes and keeps one as its parent: only that one sends it the
    /// whole map, once the page has pruned the others.
    #[test]
    fn only_a_pages_parent_sends_it_the_whole_map() {
        let records: Vec<TopoRecord> = (2..=11u8)
            .map(|n| {
                let mut r = rec(n, 1, &[]);
                r.ttl = 60_000;
                signed(n, r)
            })
            .collect();
        let sent_to = |eager: Vec<NodeId>| {
            let mut m = map(1, Config::default());
            // What the page is sent at `now` of the map's records, with `eager` the tree's
            // links then.
            let run = |m: &mut Map, now: Millis, eager: Vec<NodeId>| {
                let cx = Context {
                    held: 0,
                    ready: false,
                    own: &OwnLinks::default,
                    eager: &|| eager.clone(),
                    neighbours: &|| vec![id(7)],
                };
                m.handle_timeout(now, cx);
                std::iter::from_fn(|| m.poll())
                    .filter_map(|out| match out {
                        Out::Send(to, message) => match &*message {
                            Message::Map { records } if to == id(50) => Some(records.len()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .sum::<usize>()
            };
            m.received(id(7), records.clone(), 0);
            run(&mut m, 1_000, vec![id(7)]);
            m.welcome(id(50), 1_000);
            assert_eq!(run(&mut m, 1_000 + WELCOME_AFTER - 1, eager.clone()), 0);
            run(&mut m, 1_000 + WELCOME_AFTER, eager)
        };
        assert_eq!(
            sent_to(vec![id(7), id(50)]),
            10,
            "its parent: the whole map"
        );
        assert_eq!(sent_to(vec![id(7)]), 0, "pruned by the page: nothing");
    }

    #[test]
    fn frames_stay_within_their_byte_bound_whatever_records_they_carry() {
        let mut m = map(1, Config::default());
        // The largest records a peer accepts: every link and address as long as allowed.
        let big: Vec<TopoRecord> = (2..=201u8)
            .map(|n| {
                let mut r = rec(n, 1, &[]);
                r.links = (0..MAX_RECORD_LINKS as u8).map(id).collect();
                r.eager = r.links.clone();
                r.address = Some("x".repeat(MAX_RECORD_ADDRESS));
                r.seeds_dialed = vec!["y".repeat(MAX_RECORD_ADDRESS); MAX_SEEDS_DIALED];
                signed(n, r)
            })
            .collect();
        m.received(id(7), big, 0);
        assert_eq!(m.view().len(), 200);
        m.send_all(id(9));
        let frames: Vec<Arc<Message>> = std::iter::from_fn(|| m.poll())
            .filter_map(|out| match out {
                Out::Send(_, message) => Some(message),
                _ => None,
            })
            .collect();
        let mut records = 0;
        for frame in &frames {
            let Message::Map { records: batch } = &**frame else {
                panic!("{frame:?}");
            };
            records += batch.len();
            let text = crate::wire::Frame::from((**frame).clone()).encode();
            assert!(
                text.len() as u64 <= 2 * MAP_FRAME_BYTES,
                "{} bytes",
                text.len()
            );
        }
        assert_eq!(records, 200);
        assert!(frames.len() > 10, "{} frames", frames.len());
    }
}
