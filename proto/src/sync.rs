//! Range-based set reconciliation (the approach of negentropy): two peers find which messages
//! the other lacks by comparing fingerprints over ranges of `(timestamp, id)`, splitting only
//! the ranges that differ, until the differences are small enough to list. The bytes exchanged
//! grow with the size of the difference (times the log of the history), not with the history.
//!
//! Each `SYNC` frame is answered from the receiver's own set alone — no session state — so a
//! reconciliation is simply frames bouncing until a reply would say nothing. What answering
//! costs is metered per peer by the engine: about one session's worth at a time (see
//! `admission::SYNC_ANSWER_PER_MESSAGE`), however many `SYNC`s a peer sends without waiting.
//! Ranges in a frame are contiguous: the first starts at `from`, each ends (exclusively) at
//! its `to`; the last range of the last frame of a round ends at the top of the key space
//! (`to: null`).
//!
//! Modes of a range: `fp` (my fingerprint, compare), `ids` (everything I hold in this range,
//! tell me what you have that I lack), `have` (ids I hold that you lacked: ask for them),
//! `skip` (nothing to do). What each side lacks is fetched with `WANT`/`MESSAGES` in pages, so
//! a huge history streams and never builds one giant frame.
//!
//! A reconciliation covers only messages older than [`SyncConfig::settle`]: newer ones may
//! still be on their way through the broadcast tree, and fetching them again would double
//! their cost. Nor does it reach below a peer's *floor*, where its retention window starts
//! (see `history`): it starts there, and answers from there up, whatever the other side
//! asks. [`Reconciler`] keeps, per peer, when to reconcile next and what is still to be
//! fetched.

use crate::Millis;
use crate::conns::ConnId;
use crate::id::MsgId;
use crate::identity::Author;
use crate::message::Message as Signed;
use crate::part::Part;
use crate::timers::Timers;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;

/// A position in the key space: `(timestamp, id)`. Seed (v1) messages use their stamp rounded
/// down to the hour (see [`sync_timestamp`]).
pub type Key = (u64, MsgId);

/// The first key at timestamp `ts`.
pub fn key_at(ts: u64) -> Key {
    (ts, MsgId::from_bytes([0; 16]))
}

/// Seed (v1) texts are reconciled under their stamp rounded down to this.
pub const V1_STAMP_GRAIN: u64 = 3_600_000;

/// The sort key of a message.
pub fn key_of(msg: &Signed) -> Key {
    (sync_timestamp(&msg.author, msg.timestamp), msg.id)
}

/// The timestamp a message is reconciled under (see [`Key`]). A seed's text is stamped by the
/// first hearsay node that hears it, and two nodes may hear it from two seeds a moment apart:
/// rounded down to the hour, their stamps agree but for texts heard across an hour's turn
/// (which then only cost reconciliation a few frames more when it meets them).
pub fn sync_timestamp(author: &Author, timestamp: u64) -> u64 {
    if author.is_seed() {
        timestamp - timestamp % V1_STAMP_GRAIN
    } else {
        timestamp
    }
}

/// Reconciliation's frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Message {
    /// One step of set reconciliation.
    #[serde(rename = "SYNC")]
    Sync(SyncFrame),
    /// Send me these messages (at most [`MAX_WANT`] ids).
    #[serde(rename = "WANT")]
    Want { ids: Vec<MsgId> },
    /// Messages asked for with `WANT`, in pages; `done` marks the last page of an answer.
    #[serde(rename = "MESSAGES")]
    Messages { messages: Vec<Signed>, done: bool },
}

impl Message {
    /// The ids of the messages a `MESSAGES` page carries.
    pub fn message_ids(&self) -> Vec<MsgId> {
        match self {
            Message::Messages { messages, .. } => messages.iter().map(|m| m.id).collect(),
            _ => Vec::new(),
        }
    }

    /// An empty last page: the answer ends here.
    pub fn end() -> Message {
        Message::Messages {
            messages: Vec::new(),
            done: true,
        }
    }
}

/// Most ids in one `WANT`.
pub const MAX_WANT: usize = 256;
/// Most ids queued to ask one peer for.
const MAX_QUEUED: usize = 200_000;
/// A `MESSAGES` page is cut once its texts pass this many bytes.
pub const MESSAGES_PAGE_BYTES: usize = 256 * 1024;

/// Ranges with at most this many items on our side are listed rather than split.
pub const LIST_AT_MOST: usize = 32;
/// How many parts a differing range is split into.
pub const SPLIT_INTO: usize = 16;
/// Most ranges in one `SYNC` frame (a round with more is sent as several frames).
pub const RANGES_PER_FRAME: usize = 256;
/// Most bytes of ranges in one `SYNC` frame (as gossipsub's 64 KiB per message).
pub const SYNC_FRAME_BYTES: usize = 64 * 1024;

/// Every message id this peer holds, ordered by key, with the size of each text (for the
/// history's byte cap).
#[derive(Debug, Default, Clone)]
pub struct MessageIndex {
    keys: BTreeMap<Key, u32>,
    by_id: HashMap<MsgId, u64>,
    bytes: u64,
}

impl MessageIndex {
    /// Records a message of `bytes` bytes of text; false if its id was already here.
    pub fn insert(&mut self, (ts, id): Key, bytes: usize) -> bool {
        if self.by_id.contains_key(&id) {
            return false;
        }
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.by_id.insert(id, ts);
        self.keys.insert((ts, id), bytes);
        self.bytes += u64::from(bytes);
        true
    }

    /// Bytes of text held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the history starts once it holds `count` messages or `bytes` bytes: anything
    /// stamped before its oldest would only be let go again. `None` while there is room.
    pub fn full_from(&self, count: usize, bytes: u64) -> Option<u64> {
        if self.keys.len() < count && self.bytes < bytes {
            return None;
        }
        self.keys.keys().next().map(|(ts, _)| *ts)
    }

    /// The timestamp to evict before so that at most `count` messages and `bytes` bytes stay
    /// (the oldest go first); `None` if they fit already.
    pub fn cut_for(&self, count: usize, bytes: u64) -> Option<u64> {
        let (mut n, mut b) = (self.keys.len(), self.bytes);
        if n <= count && b <= bytes {
            return None;
        }
        for ((ts, _), size) in &self.keys {
            n -= 1;
            b -= u64::from(*size);
            if n <= count && b <= bytes {
                // Evicting is by timestamp: everything stamped like the last one goes too.
                return Some(ts.saturating_add(1));
            }
        }
        Some(u64::MAX)
    }

    pub fn contains(&self, id: &MsgId) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets message `id`, if held; whether it was.
    pub fn remove(&mut self, id: &MsgId) -> bool {
        let Some(ts) = self.by_id.remove(id) else {
            return false;
        };
        if let Some(size) = self.keys.remove(&(ts, *id)) {
            self.bytes -= u64::from(size);
        }
        true
    }

    /// Forgets every message stamped before `ts`; returns how many.
    pub fn evict_before(&mut self, ts: u64) -> usize {
        let kept = self.keys.split_off(&key_at(ts));
        let evicted = std::mem::replace(&mut self.keys, kept);
        for ((_, id), size) in &evicted {
            self.by_id.remove(id);
            self.bytes -= u64::from(*size);
        }
        evicted.len()
    }

    fn range(&self, from: Option<Key>, to: Option<Key>) -> impl Iterator<Item = &Key> {
        let lo = match from {
            Some(k) => Bound::Included(k),
            None => Bound::Unbounded,
        };
        let hi = match to {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        // An empty or inverted range (a confused or hostile peer) holds nothing.
        let valid = match (from, to) {
            (Some(a), Some(b)) => a < b,
            _ => true,
        };
        valid
            .then(|| self.keys.range((lo, hi)).map(|(k, _)| k))
            .into_iter()
            .flatten()
    }
}

/// A fingerprint of a set of ids: their count and their sum modulo 2^128. Ids are hashes, so
/// the sum of two different sets collides only by (2^-128) chance; it is cheap to compute and
/// to combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    count: u64,
    sum: u128,
}

impl Fingerprint {
    fn add(&mut self, id: &MsgId) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(*id.as_bytes()));
    }

    fn of<'a>(keys: impl Iterator<Item = &'a Key>) -> Self {
        let mut fp = Fingerprint::default();
        keys.for_each(|(_, id)| fp.add(id));
        fp
    }

    /// `count:sum` with the sum in hex, compact in JSON.
    pub fn encode(&self) -> String {
        format!("{}:{:032x}", self.count, self.sum)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (count, sum) = s.split_once(':')?;
        Some(Fingerprint {
            count: count.parse().ok()?,
            sum: u128::from_str_radix(sum, 16).ok()?,
        })
    }
}

/// A range's upper bound on the wire: `[timestamp, "id"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireKey(pub u64, pub MsgId);

/// One range of a `SYNC` frame; exactly one mode field is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Range {
    /// Exclusive upper bound; `None` is the top of the key space.
    pub to: Option<WireKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<MsgId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub have: Option<Vec<MsgId>>,
}

impl Range {
    /// At most how long this range is as JSON, counted without encoding it (it is encoded
    /// once, when sent): a bound and a fingerprint of at most 64 bytes each, and 35 bytes
    /// for each id listed (32 hex digits, quotes and a comma).
    fn encoded_bytes_at_most(&self) -> usize {
        let listed = self.ids.as_ref().map_or(0, Vec::len) + self.have.as_ref().map_or(0, Vec::len);
        160 + self.fp.as_ref().map_or(0, String::len) + 35 * listed
    }
}

/// A `SYNC` frame's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFrame {
    /// Inclusive lower bound of the first range; `None` is the bottom of the key space.
    pub from: Option<WireKey>,
    pub ranges: Vec<Range>,
}

fn key(w: Option<WireKey>) -> Option<Key> {
    w.map(|WireKey(ts, id)| (ts, id))
}

fn wire(k: Option<Key>) -> Option<WireKey> {
    k.map(|(ts, id)| WireKey(ts, id))
}

/// What answering a `SYNC` frame produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Frames to send back (empty: this exchange is settled).
    pub frames: Vec<SyncFrame>,
    /// Ids the peer has and we lack: fetch them.
    pub want: Vec<MsgId>,
}

/// The opening frame of a reconciliation: one fingerprint over everything we hold from
/// `lower` to `upper` (`None`: the bottom and the top of the key space); the rest of the key
/// space is skipped.
pub fn initiate(index: &MessageIndex, lower: Option<Key>, upper: Option<Key>) -> SyncFrame {
    let mut ranges = Vec::new();
    if lower.is_some() {
        ranges.push(Range {
            to: wire(lower),
            ..Range::default()
        });
    }
    let fp = Fingerprint::of(index.range(lower, upper));
    ranges.push(Range {
        to: wire(upper),
        fp: Some(fp.encode()),
        ..Range::default()
    });
    if upper.is_some() {
        ranges.push(Range::default());
    }
    SyncFrame { from: None, ranges }
}

/// When and how often to reconcile.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How often the dialing side of a link reconciles (also on connect, and at once with
    /// every other peer when a reconciliation brought something new).
    pub interval: Millis,
    /// Messages younger than this are left out of a reconciliation: they may be in flight.
    pub settle: Millis,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval: 30_000,
            settle: 3_000,
        }
    }
}

#[derive(Debug)]
struct Session {
    /// The dialing side reconciles on its own schedule; the other only when told of news.
    initiator: bool,
    /// Set while a reconciliation is due at this time.
    next: Option<Millis>,
    /// Rounds started so far.
    rounds: u32,
    /// The coming round was brought forward by news: follow it with one more once what is
    /// in flight has settled (the round itself leaves out the newest messages).
    follow_up: bool,
    /// Ids this peer has and we lack, still to ask for (and the same as a set, to keep
    /// each once without a scan).
    wants: VecDeque<MsgId>,
    wanted: HashSet<MsgId>,
    /// A `WANT` is out and its last `MESSAGES` page has not come back.
    in_flight: bool,
}

/// Reconciliation sessions with every peer, keyed by the caller's peer handle.
#[derive(Debug)]
pub struct Reconciler<P> {
    config: SyncConfig,
    sessions: BTreeMap<P, Session>,
    timers: Timers<P>,
}

impl<P: Ord + Copy> Reconciler<P> {
    pub fn new(config: SyncConfig) -> Self {
        Self {
            config,
            sessions: BTreeMap::new(),
            timers: Timers::default(),
        }
    }

    /// A link to `peer` is up. The dialer reconciles now, once more when what was in flight
    /// has settled, and then every interval.
    pub fn open(&mut self, peer: P, initiator: bool, now: Millis) {
        self.sessions.insert(
            peer,
            Session {
                initiator,
                next: None,
                rounds: 0,
                follow_up: false,
                wants: VecDeque::new(),
                wanted: HashSet::new(),
                in_flight: false,
            },
        );
        if initiator {
            self.schedule(peer, now);
        }
    }

    pub fn close(&mut self, peer: P) {
        self.sessions.remove(&peer);
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// The upper bound of a reconciliation started at `now`.
    pub fn upper_bound(&self, now: Millis) -> Key {
        (
            now.saturating_sub(self.config.settle),
            MsgId::from_bytes([0; 16]),
        )
    }

    /// Peers to start a reconciliation with now.
    pub fn due(&mut self, now: Millis) -> Vec<P> {
        let mut due = Vec::new();
        while let Some(peer) = self.timers.pop_due(now) {
            let Some(s) = self.sessions.get_mut(&peer) else {
                continue;
            };
            if s.next.is_none_or(|at| at > now) || due.contains(&peer) {
                continue;
            }
            s.next = None;
            s.rounds += 1;
            let (initiator, rounds) = (s.initiator, s.rounds);
            let follow_up = std::mem::take(&mut s.follow_up);
            due.push(peer);
            // The first round after connecting, and a round brought forward by news, are
            // followed soon by one that covers what was too new for them.
            if (initiator && rounds == 1) || follow_up {
                self.schedule(peer, now + self.config.settle);
            } else if initiator {
                self.schedule(peer, now + self.config.interval);
            }
        }
        due
    }

    /// A reconciliation brought something new: every other peer may lack it too, so
    /// reconcile with them at once; that carries it on hop by hop.
    pub fn news(&mut self, except: P, now: Millis) {
        let others: Vec<P> = self
            .sessions
            .keys()
            .copied()
            .filter(|&p| p != except)
            .collect();
        for p in others {
            if let Some(s) = self.sessions.get_mut(&p) {
                s.follow_up = true;
            }
            self.schedule(p, now);
        }
    }

    /// Queues ids `peer` has and we lack; returns a `WANT` to send if none is out.
    pub fn want(
        &mut self,
        peer: P,
        ids: Vec<MsgId>,
        held: impl Fn(&MsgId) -> bool,
    ) -> Option<Vec<MsgId>> {
        let s = self.sessions.get_mut(&peer)?;
        for id in ids {
            // A peer can only make us queue so much; the rest is found by a later round.
            if s.wants.len() < MAX_QUEUED && !held(&id) && s.wanted.insert(id) {
                s.wants.push_back(id);
            }
        }
        Self::next_want(s, held)
    }

    /// A `MESSAGES` page from `peer` arrived; `done` if it was the last of its answer.
    /// Returns the next `WANT`, if any.
    pub fn page(
        &mut self,
        peer: P,
        done: bool,
        held: impl Fn(&MsgId) -> bool,
    ) -> Option<Vec<MsgId>> {
        let s = self.sessions.get_mut(&peer)?;
        if !done {
            return None;
        }
        s.in_flight = false;
        Self::next_want(s, held)
    }

    fn next_want(s: &mut Session, held: impl Fn(&MsgId) -> bool) -> Option<Vec<MsgId>> {
        if s.in_flight {
            return None;
        }
        let mut ids = Vec::new();
        while ids.len() < MAX_WANT {
            let Some(id) = s.wants.pop_front() else { break };
            s.wanted.remove(&id);
            if !held(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return None;
        }
        s.in_flight = true;
        Some(ids)
    }

    fn schedule(&mut self, peer: P, at: Millis) {
        if let Some(s) = self.sessions.get_mut(&peer)
            && s.next.is_none_or(|next| at < next)
        {
            s.next = Some(at);
            self.timers.insert(at, peer);
        }
    }
}

/// What reconciliation asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `message` to each of these connections (encoded once).
    Send { to: Vec<ConnId>, message: Message },
    /// Answer the peer on `conn` with `message`: what it asked for, which it pulls (and is
    /// charged for).
    Reply { conn: ConnId, message: Message },
    /// The peer on `conn` asked for these messages: the driver loads what it holds.
    Fetch { conn: ConnId, ids: Vec<MsgId> },
    /// The peer on `conn` sent something no honest peer does, for this reason.
    Bad(ConnId, &'static str),
}

/// What a reconciliation reads: the messages held, and where the history kept starts (its
/// floor; nothing below it is compared, offered or asked for).
pub struct Context<'a> {
    pub index: &'a MessageIndex,
    pub floor: Option<Key>,
}

/// Reconciliation with every linked peer, as a part of the engine: it starts rounds on its
/// timers, answers `SYNC` and `WANT`, and asks for what the other side has and we lack.
/// (`MESSAGES` pages are taken by the engine, which admits each message, then tells this
/// part with [`Sync::page`] and [`Sync::news`].)
pub struct Sync {
    sessions: Reconciler<ConnId>,
    out: VecDeque<Out>,
    /// Rounds this peer started.
    rounds: u64,
}

impl Sync {
    pub fn new(config: SyncConfig) -> Self {
        Self {
            sessions: Reconciler::new(config),
            out: VecDeque::new(),
            rounds: 0,
        }
    }

    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// A neighbour's link is up on `conn` (`initiator`: we dialed it).
    pub fn open(&mut self, conn: ConnId, initiator: bool, now: Millis) {
        self.sessions.open(conn, initiator, now);
    }

    pub fn close(&mut self, conn: ConnId) {
        self.sessions.close(conn);
    }

    /// A `SYNC` or `WANT` from the peer on `conn`; `cx.floor` is where the window starts.
    pub fn message(&mut self, conn: ConnId, message: Message, cx: Context<'_>) {
        match message {
            Message::Sync(frame) => {
                let reply = respond(cx.index, &frame, cx.floor);
                for frame in reply.frames {
                    self.out.push_back(Out::Reply {
                        conn,
                        message: Message::Sync(frame),
                    });
                }
                let index = cx.index;
                if let Some(ids) = self
                    .sessions
                    .want(conn, reply.want, |id| index.contains(id))
                {
                    self.out.push_back(Out::Send {
                        to: vec![conn],
                        message: Message::Want { ids },
                    });
                }
            }
            Message::Want { ids } if ids.len() > MAX_WANT => {
                self.out
                    .push_back(Out::Bad(conn, "WANT asks for too many messages"));
            }
            Message::Want { ids } => self.out.push_back(Out::Fetch { conn, ids }),
            Message::Messages { .. } => {}
        }
    }

    /// A `MESSAGES` page from `conn` was taken (`done`: the last of its answer): the next
    /// `WANT`, if any.
    pub fn page(&mut self, conn: ConnId, done: bool, index: &MessageIndex) {
        if let Some(ids) = self.sessions.page(conn, done, |id| index.contains(id)) {
            self.out.push_back(Out::Send {
                to: vec![conn],
                message: Message::Want { ids },
            });
        }
    }

    /// What `conn` sent was new here: reconcile with every other peer at once.
    pub fn news(&mut self, conn: ConnId, now: Millis) {
        self.sessions.news(conn, now);
    }
}

impl Part for Sync {
    type Out = Out;
    type Context<'a> = Context<'a>;

    fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.sessions.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Millis, cx: Context<'_>) {
        let due = self.sessions.due(now);
        self.rounds += due.len() as u64;
        if !due.is_empty() {
            let upper = self.sessions.upper_bound(now);
            let message = Message::Sync(initiate(cx.index, cx.floor, Some(upper)));
            self.out.push_back(Out::Send { to: due, message });
        }
    }
}

/// Messages asked for with `WANT`, in `MESSAGES` pages of about [`MESSAGES_PAGE_BYTES`]; the
/// last is marked `done`.
pub fn pages(messages: Vec<Signed>) -> Vec<Message> {
    let mut pages = Vec::new();
    let mut page: Vec<Signed> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        // Counted as encoded (escapes can make a text's JSON six times its length), so
        // a page always fits in a frame (`MAX_FRAME_BYTES`).
        let size = serde_json::to_string(&m).map_or(m.data.len(), |j| j.len());
        if bytes + size > MESSAGES_PAGE_BYTES && !page.is_empty() {
            pages.push(Message::Messages {
                messages: std::mem::take(&mut page),
                done: false,
            });
            bytes = 0;
        }
        bytes += size;
        page.push(m);
    }
    pages.push(Message::Messages {
        messages: page,
        done: true,
    });
    pages
}

/// Answers one `SYNC` frame from our own set. Nothing below `floor` (where our window starts)
/// is compared, offered or asked for, whatever the peer's window.
pub fn respond(index: &MessageIndex, frame: &SyncFrame, floor: Option<Key>) -> Reply {
    let mut out: Vec<(Option<Key>, Range)> = Vec::new(); // (lower bound, range)
    let mut want = Vec::new();
    let mut lower = key(frame.from);
    let skip = |lower: Option<Key>, to: Option<Key>, out: &mut Vec<(Option<Key>, Range)>| {
        out.push((
            lower,
            Range {
                to: wire(to),
                ..Range::default()
            },
        ));
    };
    for r in &frame.ranges {
        let upper = key(r.to);
        if let Some(f) = floor {
            // Below our window nothing is compared, offered or asked for: a range wholly
            // below it is skipped, one that straddles it is answered from the floor up.
            if upper.is_some_and(|u| u <= f) {
                skip(lower, upper, &mut out);
                lower = upper;
                continue;
            }
            if lower.is_none_or(|l| l < f) {
                skip(lower, Some(f), &mut out);
                lower = Some(f);
                if r.ids.is_some() || r.have.is_some() {
                    // Their list reaches below our floor: compare from the floor up instead
                    // of asking for any of it.
                    let fp = Fingerprint::of(index.range(lower, upper));
                    out.push((
                        lower,
                        Range {
                            to: r.to,
                            fp: Some(fp.encode()),
                            ..Range::default()
                        },
                    ));
                    lower = upper;
                    continue;
                }
            }
        }
        let want_of = |ids: &[MsgId], want: &mut Vec<MsgId>| {
            want.extend(ids.iter().filter(|id| !index.contains(id)).copied());
        };
        let mine: Vec<&Key> = index.range(lower, upper).collect();
        if let Some(theirs) = r.fp.as_deref().and_then(Fingerprint::decode) {
            if Fingerprint::of(mine.iter().copied()) == theirs {
                skip(lower, upper, &mut out);
            } else if mine.len() <= LIST_AT_MOST {
                let ids = mine.iter().map(|(_, id)| *id).collect();
                out.push((
                    lower,
                    Range {
                        to: r.to,
                        ids: Some(ids),
                        ..Range::default()
                    },
                ));
            } else {
                // Split at our own items' quantiles; each part gets our fingerprint.
                let mut part_lower = lower;
                for p in 1..=SPLIT_INTO {
                    let part_upper = if p == SPLIT_INTO {
                        upper
                    } else {
                        Some(*mine[p * mine.len() / SPLIT_INTO])
                    };
                    if part_upper == part_lower {
                        continue;
                    }
                    let fp = Fingerprint::of(index.range(part_lower, part_upper));
                    out.push((
                        part_lower,
                        Range {
                            to: wire(part_upper),
                            fp: Some(fp.encode()),
                            ..Range::default()
                        },
                    ));
                    part_lower = part_upper;
                }
            }
        } else if let Some(theirs) = &r.ids {
            let theirs_set: std::collections::HashSet<&MsgId> = theirs.iter().collect();
            want_of(theirs, &mut want);
            let have: Vec<MsgId> = mine
                .iter()
                .map(|(_, id)| *id)
                .filter(|id| !theirs_set.contains(id))
                .collect();
            if have.is_empty() {
                skip(lower, upper, &mut out);
            } else {
                out.push((
                    lower,
                    Range {
                        to: r.to,
                        have: Some(have),
                        ..Range::default()
                    },
                ));
            }
        } else if let Some(have) = &r.have {
            want_of(have, &mut want);
            skip(lower, upper, &mut out);
        } else {
            skip(lower, upper, &mut out);
        }
        lower = upper;
    }
    if out
        .iter()
        .all(|(_, r)| r.fp.is_none() && r.ids.is_none() && r.have.is_none())
    {
        return Reply {
            frames: Vec::new(),
            want,
        };
    }
    // Merge runs of skips, then cut into frames of bounded size.
    let mut merged: Vec<(Option<Key>, Range)> = Vec::new();
    for (lo, r) in out {
        let is_skip = r.fp.is_none() && r.ids.is_none() && r.have.is_none();
        if let Some((_, last)) = merged.last_mut()
            && is_skip
            && last.fp.is_none()
            && last.ids.is_none()
            && last.have.is_none()
        {
            last.to = r.to;
            continue;
        }
        merged.push((lo, r));
    }
    // Cut by bytes as well as by ranges: a range listing its ids is over a kilobyte, and
    // one small frame could otherwise pull hundreds back.
    let mut frames: Vec<SyncFrame> = Vec::new();
    let mut bytes = 0;
    for (lower, range) in merged {
        let size = range.encoded_bytes_at_most();
        let full = frames
            .last()
            .is_none_or(|f| f.ranges.len() >= RANGES_PER_FRAME || bytes + size > SYNC_FRAME_BYTES);
        if full {
            frames.push(SyncFrame {
                from: wire(lower),
                ranges: Vec::new(),
            });
            bytes = 0;
        }
        bytes += size;
        if let Some(frame) = frames.last_mut() {
            frame.ranges.push(range);
        }
    }
    Reply { frames, want }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MsgId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
        MsgId::from_bytes(b)
    }

    fn index(items: impl IntoIterator<Item = u64>) -> MessageIndex {
        let mut ix = MessageIndex::default();
        for n in items {
            ix.insert((n * 10, id(n)), 10);
        }
        ix
    }

    /// Runs a reconciliation to the end; returns (what a lacks, what b lacks, rounds, bytes).
    pub(crate) fn reconcile(
        a: &MessageIndex,
        b: &MessageIndex,
    ) -> (Vec<MsgId>, Vec<MsgId>, usize, usize) {
        let mut to_b = vec![initiate(a, None, None)];
        let mut bytes = serde_json::to_string(&to_b[0]).unwrap().len();
        let (mut a_wants, mut b_wants) = (Vec::new(), Vec::new());
        let mut rounds = 0;
        while !to_b.is_empty() {
            rounds += 1;
            assert!(rounds < 100, "reconciliation does not settle");
            let mut to_a = Vec::new();
            for f in &to_b {
                let r = respond(b, f, None);
                b_wants.extend(r.want);
                to_a.extend(r.frames);
            }
            to_b = Vec::new();
            for f in &to_a {
                bytes += serde_json::to_string(f).unwrap().len();
                let r = respond(a, f, None);
                a_wants.extend(r.want);
                to_b.extend(r.frames);
            }
            bytes += to_b
                .iter()
                .map(|f| serde_json::to_string(f).unwrap().len())
                .sum::<usize>();
        }
        a_wants.sort();
        b_wants.sort();
        (a_wants, b_wants, rounds, bytes)
    }

    #[test]
    fn identical_sets_settle_in_one_round_trip() {
        let a = index(0..1000);
        let (aw, bw, rounds, bytes) = reconcile(&a, &a.clone());
        assert!(aw.is_empty() && bw.is_empty());
        assert_eq!(rounds, 1);
        assert!(bytes < 100, "{bytes} bytes");
    }

    #[test]
    fn each_side_learns_exactly_what_it_lacks() {
        let a = index((0..500).chain(600..700));
        let b = index(100..650);
        let (aw, bw, _, _) = reconcile(&a, &b);
        let mut want_a: Vec<MsgId> = (500..600).map(id).collect();
        want_a.sort();
        let mut want_b: Vec<MsgId> = (0..100).chain(650..700).map(id).collect();
        want_b.sort();
        assert_eq!(aw, want_a);
        assert_eq!(bw, want_b);
    }

    #[test]
    fn empty_and_disjoint_sets() {
        let empty = MessageIndex::default();
        let a = index(0..300);
        let (aw, bw, _, _) = reconcile(&empty, &a);
        assert_eq!(aw.len(), 300);
        assert!(bw.is_empty());
        let (aw, bw, _, _) = reconcile(&empty, &empty);
        assert!(aw.is_empty() && bw.is_empty());
        let (aw, bw, _, _) = reconcile(&index(0..100), &index(1000..1100));
        assert_eq!((aw.len(), bw.len()), (100, 100));
    }

    #[test]
    fn a_bounded_reconciliation_leaves_newer_messages_alone() {
        // a has 0..300, b has 0..200 and 250..260: below key 2000 (item 200) they differ
        // only where b lacks nothing a would fetch above the bound.
        let a = index(0..300);
        let b = index((0..200).chain(250..260));
        let upper = Some((2000, MsgId::from_bytes([0; 16])));
        let mut to_b = vec![initiate(&a, None, upper)];
        let mut b_wants = Vec::new();
        let mut a_wants = Vec::new();
        for _ in 0..20 {
            let mut to_a = Vec::new();
            for f in &to_b {
                let r = respond(&b, f, None);
                b_wants.extend(r.want);
                to_a.extend(r.frames);
            }
            to_b.clear();
            for f in &to_a {
                let r = respond(&a, f, None);
                a_wants.extend(r.want);
                to_b.extend(r.frames);
            }
        }
        assert!(to_b.is_empty(), "settles");
        assert!(a_wants.is_empty() && b_wants.is_empty(), "{b_wants:?}");
    }

    #[test]
    fn a_windowed_reconciliation_never_asks_for_what_lies_before_either_window() {
        // a evicted everything before item 100 (key 1000); b still holds it all. Started by
        // a from its floor, nothing older is compared; started by b from the bottom, a asks
        // for nothing wholly below its floor.
        let mut a = index(0..300);
        assert_eq!(a.evict_before(1000), 100);
        assert_eq!(a.len(), 200);
        assert!(!a.contains(&id(99)) && a.contains(&id(100)));
        let b = index(0..300);
        let floor = Some(key_at(1000));
        // `to_b`/`to_a`: the first frame's way (a started it, or b did).
        let run = |mut to_b: Vec<SyncFrame>, mut to_a: Vec<SyncFrame>, a_floor| {
            let (mut a_wants, mut b_wants) = (Vec::new(), Vec::new());
            for _ in 0..20 {
                for f in std::mem::take(&mut to_b) {
                    let r = respond(&b, &f, None);
                    b_wants.extend(r.want);
                    to_a.extend(r.frames);
                }
                for f in std::mem::take(&mut to_a) {
                    let r = respond(&a, &f, a_floor);
                    a_wants.extend(r.want);
                    to_b.extend(r.frames);
                }
            }
            (a_wants, b_wants)
        };
        let (a_wants, b_wants) = run(vec![initiate(&a, floor, None)], vec![], floor);
        assert!(a_wants.is_empty() && b_wants.is_empty(), "{a_wants:?}");
        // Without the floor a would ask for all 100 it evicted; with it, for none.
        let (a_wants, _) = run(vec![], vec![initiate(&b, None, None)], None);
        assert_eq!(a_wants.len(), 100);
        let (a_wants, b_wants) = run(vec![], vec![initiate(&b, None, None)], floor);
        assert!(a_wants.is_empty() && b_wants.is_empty(), "{a_wants:?}");
    }

    #[test]
    fn the_cut_for_a_cap_keeps_the_newest_within_count_and_bytes() {
        let ix = index(0..10); // keys 0, 10, ..., 90; 10 bytes each
        assert_eq!(ix.bytes(), 100);
        assert_eq!(ix.cut_for(10, 100), None);
        assert_eq!(ix.cut_for(7, 1_000), Some(21), "the three oldest go");
        assert_eq!(ix.cut_for(100, 45), Some(51), "four fit in 45 bytes");
        assert_eq!(ix.cut_for(0, 0), Some(91), "all go");
        let mut ix = ix;
        assert_eq!(ix.evict_before(60), 6);
        assert_eq!((ix.len(), ix.bytes()), (4, 40));
        // Ties: what shares the last evicted one's timestamp goes with it.
        let mut ties = MessageIndex::default();
        for (ts, n) in [(10, 1), (10, 2), (20, 3)] {
            ties.insert((ts, id(n)), 5);
        }
        let cut = ties.cut_for(1, u64::MAX).unwrap();
        assert_eq!(ties.evict_before(cut), 2);
        assert_eq!(ties.len(), 1);
    }

    #[test]
    fn sessions_reconcile_on_connect_periodically_and_on_news() {
        let mut r: Reconciler<u8> = Reconciler::new(SyncConfig {
            interval: 1_000,
            settle: 100,
        });
        r.open(1, true, 0);
        r.open(2, false, 0);
        assert_eq!(r.due(0), vec![1]);
        assert_eq!(r.due(99), Vec::<u8>::new());
        assert_eq!(r.due(100), vec![1], "again once in-flight messages settled");
        assert_eq!(r.due(1_099), Vec::<u8>::new());
        assert_eq!(r.due(1_100), vec![1]);
        r.news(1, 1_500);
        assert_eq!(r.due(1_500), vec![2], "the acceptor only on news");
        assert_eq!(r.due(1_599), Vec::<u8>::new());
        assert_eq!(r.due(1_600), vec![2], "and once more when that has settled");
        assert_eq!(r.due(100_000), vec![1], "then the dialer's rounds only");
        let held = |_: &MsgId| false;
        let want = r.want(2, vec![id(1), id(2)], held).unwrap();
        assert_eq!(want, vec![id(1), id(2)]);
        assert_eq!(r.want(2, vec![id(3)], held), None, "one WANT at a time");
        assert_eq!(r.page(2, false, held), None);
        assert_eq!(r.page(2, true, held), Some(vec![id(3)]));
    }

    #[test]
    fn a_ranges_counted_size_is_never_below_its_json() {
        let id = |n: u8| MsgId::from_bytes([n; 16]);
        let top = Some(WireKey(u64::MAX, id(0xff)));
        let ids: Vec<MsgId> = (0..=255).map(id).collect();
        for range in [
            Range {
                to: top,
                fp: Some("64:".to_owned() + &"f".repeat(61)),
                ..Range::default()
            },
            Range {
                to: top,
                ids: Some(ids.clone()),
                ..Range::default()
            },
            Range {
                to: top,
                have: Some(ids.clone()),
                ids: Some(ids),
                ..Range::default()
            },
            Range::default(),
        ] {
            let json = serde_json::to_string(&range).unwrap().len();
            assert!(
                range.encoded_bytes_at_most() >= json,
                "{json} bytes: {range:?}"
            );
        }
    }

    #[test]
    fn hostile_ranges_do_not_panic() {
        let a = index(0..100);
        let frame = SyncFrame {
            from: Some(WireKey(500, id(5))),
            ranges: vec![
                Range {
                    to: Some(WireKey(10, id(1))),
                    fp: Some("3:ff".into()),
                    ..Range::default()
                },
                Range {
                    to: None,
                    fp: Some("not a fingerprint".into()),
                    ..Range::default()
                },
            ],
        };
        let reply = respond(&a, &frame, None);
        // Answered, and no more than asked: one frame, a range for each range.
        assert_eq!(reply.frames.len(), 1);
        let ranges = &reply.frames[0].ranges;
        assert_eq!(ranges.len(), 2);
        // A range that ends before it starts holds nothing here.
        assert_eq!(ranges[0].ids, Some(vec![]));
        // A fingerprint we cannot read is neither a match nor a difference: nothing over
        // it is listed, offered or asked for (90 messages of ours lie there).
        assert_eq!(
            (&ranges[1].fp, &ranges[1].ids, &ranges[1].have),
            (&None, &None, &None)
        );
        assert!(reply.want.is_empty());
    }
}
