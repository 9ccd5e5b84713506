//! Admission: whether a message that reaches this peer over a connection is taken.
//!
//! Every message from a peer passes the same checks, in this order, cheapest first: its id
//! and size, whether it is held already, the retention window ([`crate::history`]), the rate
//! of the page or seed that sent it (a bucket per connection), its author's signature (the
//! costly check, once per id, after dedup), and, for a node's relay, its origin's quota.
//! [`Admission::judge`] returns a [`Verdict`] (take it, it is a copy, drop it, tell the
//! sender why, close the sender); the engine applies every verdict in one place. What a peer
//! sends thus never decides anything on the way in, and no check closes a connection itself.
//!
//! A node relays a page's or a seed's text under the page's (or every seed's shared) quota,
//! so what one node takes from them, every other takes too. A peer closed for a forged
//! signature or a flood over quota is refused for a while when it comes back (by
//! [`crate::links`], which keeps the door). What this peer publishes itself, or a client
//! publishes through it, is checked the same way ([`Admission::check_own`],
//! [`Admission::check_signed`]), and refused with a [`PublishError`].
//!
//! What a peer pulls (answers to its `WANT`s and `SYNC`s) is charged to its connection's
//! budgets and to its address group's, which a reconnect does not refill
//! ([`Admission::pull`], [`GROUP_PULL_SHARE`]).
//!
//! The frames a sender is answered with are [`Reply`]: `ACK` (a node holds what a page
//! published) and `ERROR` (why something was refused, and when to try again).

use crate::Millis;
use crate::close::CloseReason;
use crate::conns::ConnId;
use crate::dedup::Recent;
use crate::group::Group;
use crate::history::{Held, Outside};
use crate::id::MsgId;
use crate::identity::{Author, PublicKey};
use crate::limits::{Limits, Rate, TokenBucket};
use crate::message::Message;
use crate::part::Part;
use crate::timers::Timers;
use std::collections::{BTreeMap, HashSet};

/// Origins whose quota is tracked at once (beyond, the first tracked are forgotten).
const ORIGINS_TRACKED: usize = 20_000;

/// Address groups whose seed text is metered at once (see `Limits::seed_group_messages`);
/// beyond, the first tracked are forgotten (and start again with a full allowance).
const SEED_GROUPS_TRACKED: usize = 4_096;

/// Address groups whose pulls are metered together at once (see [`GROUP_PULL_SHARE`]);
/// beyond, the first tracked are forgotten (and start again with a full allowance).
const PULL_GROUPS_TRACKED: usize = 4_096;

/// How many peers' worth of pulls one address group may make between refills (their pull
/// budget, `Limits::peer_pulls`, and reconciliation allowance, [`SYNC_ANSWER_PER_MESSAGE`]),
/// however many connections it opens. A connection's own budgets start full, so a peer that
/// reconnected, under its key or a fresh one, was answered afresh each time; its group's
/// budget is where it was. Honest peers behind one address (a node takes at most 8 node links
/// from one) share it only while they all pull at once.
pub const GROUP_PULL_SHARE: f64 = 4.0;

/// How finely messages this peer fetched are metered by their stamps: an author may have
/// published at most its quota's burst plus a minute of its rate within one such slot
/// (see [`Admission::judge`]). Slots tracked at once: [`ORIGINS_TRACKED`].
const STAMP_SLOT: Millis = 60_000;

/// What answering one peer's reconciliation may cost, in bytes of `SYNC` answers per message
/// held (and one frame, [`crate::sync::SYNC_FRAME_BYTES`], more), refilled over
/// [`SYNC_ANSWERS_REFILL`]. An honest peer's session, splitting ranges down to lists, costs
/// less than this even when it lacks everything (about 35 bytes per id listed, and at most
/// 16 ranges of 160 bytes for every 32 messages or more that are split); one that asks the
/// same whole-history range again and again, to be answered each time, is answered about
/// one session's worth at a time (200 such `SYNC`s against 2,000 messages pulled 14 MB).
pub const SYNC_ANSWER_PER_MESSAGE: usize = 128;
/// How long a peer's reconciliation allowance takes to refill: the interval at which a
/// node reconciles with each neighbour (`SyncConfig::interval`).
pub const SYNC_ANSWERS_REFILL: Millis = 30_000;

/// A node's answers to what a peer sent it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type")]
pub enum Reply {
    /// A node tells a page that it now holds a message the page published, so the page can
    /// show it as stored.
    #[serde(rename = "ACK")]
    Ack { id: MsgId },
    /// Something the peer sent was refused: `reason` for people, the message's `id` if it
    /// was one, and when to try again if waiting helps (a rate limit).
    #[serde(rename = "ERROR")]
    Error {
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// Why the application's publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("message is empty")]
    Empty,
    #[error("message is {0} bytes; the limit is {1}")]
    TooLarge(usize, usize),
    /// This peer published its origin's quota (see `Limits::origin_messages`): every other
    /// node would drop the rest, and close us for pushing it.
    #[error(
        "this node may publish {burst} messages at once and {per_second} a second (its origin's quota); try again in {retry_after_ms} ms"
    )]
    OverQuota {
        burst: u64,
        per_second: u64,
        retry_after_ms: u64,
    },
    #[error("a message published through a node must be signed by its author (author and sig)")]
    Unsigned,
    #[error(
        "id does not match the message: it is the first 16 bytes of SHA-256(\"hearsay/msg/v4\\0\" || author || seq || timestamp || text length || text), as hex"
    )]
    IdMismatch,
    #[error("sig is not the author's signature of the message's digest")]
    BadSignature,
    #[error("{0}")]
    Outside(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Whether this peer is a node (pages charge nothing: their node charges them).
    pub node: bool,
    pub limits: Limits,
    /// Longest message text accepted, in bytes.
    pub max_message_bytes: usize,
    /// How often the tables of origins and refusals are let go of what expired.
    pub expire_every: Millis,
}

/// Who handed a message to this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A seed (v1) peer: unsigned text, stamped here; from this address group, if known.
    Seed(Option<Group>),
    /// A page, linked to this peer.
    Page,
    /// A node relaying it: pushed (`GOSSIP`) or fetched by us (`MESSAGES`).
    Node { pushed: bool },
}

/// Why a message was dropped (each is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    TooOld,
    Future,
    RateLimited,
    OverQuota,
}

/// What to do with a message that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// New here and within every limit: take it.
    Take,
    /// Held already.
    Duplicate,
    /// Malformed: counted against the sender as a bad frame, for this reason.
    Bad(&'static str),
    /// Not taken, nor marked as seen (it may come again, once a quota refills or from an
    /// honest peer); the sender is told why if it is a page.
    Drop { why: Dropped, tell: Option<Reply> },
    /// The sender is closed for it (and refused for a while).
    Close(CloseReason),
}

/// How long a message given to a peer (`MESSAGES`) is not given to it again, however often
/// it asks: an honest peer asks once, and a copy lost on the way is found again by a later
/// reconciliation.
const PROVIDED_FOR: Millis = 60_000;
/// Messages remembered as given to one peer (beyond, the first given are forgotten): a bound
/// on what one peer makes this node remember.
const PROVIDED_TRACKED: usize = 4_096;

/// What one connection may still send, and what it has pulled.
#[derive(Debug, Default)]
struct Buckets {
    /// Messages, for peers whose messages are charged to them (pages, seeds).
    messages: Option<TokenBucket>,
    /// For a node peer: how many more messages over their origins' quotas it may push.
    over_quota: Option<TokenBucket>,
    /// Bytes it may still pull (see `Limits::peer_pulls`).
    pulls: Option<TokenBucket>,
    /// Bytes of `SYNC` answers it may still pull (see [`SYNC_ANSWER_PER_MESSAGE`]).
    syncs: Option<TokenBucket>,
    /// Messages given to it lately (see [`PROVIDED_FOR`]).
    provided: Option<Recent<MsgId>>,
}

/// What one address group may still pull (see [`GROUP_PULL_SHARE`]).
#[derive(Debug)]
struct GroupPulls {
    pulls: TokenBucket,
    syncs: Option<TokenBucket>,
}

pub struct Admission {
    config: Config,
    /// What each origin may still have relayed to us (see `Limits::origin_messages`).
    origins: Recent<Author, TokenBucket>,
    /// What seed text each address group may still send (see `Limits::seed_group_messages`),
    /// kept across reconnects.
    seed_groups: Recent<Group, TokenBucket>,
    /// How many messages this peer fetched per author and [`STAMP_SLOT`] of their stamps.
    stamped: Recent<(Author, u64), u32>,
    /// Messages lately dropped over their origin's quota: not asked for again by `GRAFT`
    /// (reconciliation fetches them once the quota refills), nor charged to a relay twice.
    over_quota: Recent<MsgId, ()>,
    /// Per connection (bounded by the connections held).
    buckets: BTreeMap<ConnId, Buckets>,
    /// Per address group, kept across reconnects (see [`GROUP_PULL_SHARE`]).
    pull_groups: Recent<Group, GroupPulls>,
    timers: Timers<()>,
}

impl Admission {
    pub fn new(config: Config, now: Millis) -> Self {
        let mut timers = Timers::default();
        timers.insert(now + config.expire_every.clamp(1, 1_000), ());
        Self {
            origins: Recent::new(ORIGINS_TRACKED, 10 * 60_000),
            seed_groups: Recent::new(SEED_GROUPS_TRACKED, 10 * 60_000),
            stamped: Recent::new(ORIGINS_TRACKED, 10 * 60_000),
            over_quota: Recent::new(ORIGINS_TRACKED, 60_000),
            buckets: BTreeMap::new(),
            pull_groups: Recent::new(PULL_GROUPS_TRACKED, 10 * 60_000),
            timers,
            config,
        }
    }

    /// Whether `id` was lately dropped over its origin's quota (so not asked for again).
    pub fn dropped_over_quota(&self, id: &MsgId) -> bool {
        self.over_quota.contains(id)
    }

    /// The connection is gone: what it could still send is forgotten.
    pub fn forget(&mut self, conn: ConnId) {
        self.buckets.remove(&conn);
    }

    /// Whether this peer may publish `data`, signed with its `key`: its size, and, at a
    /// node, its origin's quota, which every node that relays it charges too (a page is
    /// charged by its node instead).
    pub fn check_own(
        &mut self,
        data: &str,
        key: PublicKey,
        now: Millis,
    ) -> Result<(), PublishError> {
        self.check_size(data)?;
        self.charge_own(Author::Key(key), now)
    }

    /// A message an application signed with its own key and publishes through this peer:
    /// checked as any message from a peer would be (id, signature, size, window) and charged
    /// to its author's quota. False if it is held already. A forgery is refused even then:
    /// a client is never told a forgery was taken.
    pub fn check_signed(
        &mut self,
        msg: &Message,
        held: &Held,
        now: Millis,
    ) -> Result<bool, PublishError> {
        if msg.author.is_seed() {
            return Err(PublishError::Unsigned);
        }
        self.check_size(&msg.data)?;
        if !msg.id_is_valid() {
            return Err(PublishError::IdMismatch);
        }
        if !msg.signature_is_valid() {
            return Err(PublishError::BadSignature);
        }
        if held.contains(&msg.id) {
            return Ok(false);
        }
        if let Err(outside) = held.history().check(crate::sync::key_of(msg).0, now) {
            return Err(PublishError::Outside(outside.to_string()));
        }
        self.charge_own(msg.author, now)?;
        Ok(true)
    }

    fn check_size(&self, data: &str) -> Result<(), PublishError> {
        let max = self.config.max_message_bytes;
        match data.len() {
            0 => Err(PublishError::Empty),
            n if n > max => Err(PublishError::TooLarge(n, max)),
            _ => Ok(()),
        }
    }

    fn charge_own(&mut self, author: Author, now: Millis) -> Result<(), PublishError> {
        if !self.config.node {
            return Ok(());
        }
        let rate = self.config.limits.origin_messages;
        self.take_from_quota(author, now)
            .map_err(|wait| PublishError::OverQuota {
                burst: rate.burst as u64,
                per_second: rate.per_second as u64,
                retry_after_ms: wait,
            })
    }

    /// Which of the messages the peer on `conn` asks for (`WANT`) to fetch for it: each once,
    /// and none given to it in the last [`PROVIDED_FOR`].
    pub fn wanted(&mut self, conn: ConnId, mut ids: Vec<MsgId>, now: Millis) -> Vec<MsgId> {
        let provided = self.provided(conn, now);
        let mut seen = HashSet::new();
        ids.retain(|id| !provided.contains(id) && seen.insert(*id));
        ids
    }

    /// Of the messages fetched for the peer on `conn`, those not given to it lately. They
    /// are counted as given only as they go ([`Admission::given`]), not when asked: an
    /// honest peer asks again for what it was not given (a message still being stored here
    /// is not found), and many `WANT`s may each be fetched before the first answer goes.
    pub fn to_give(
        &mut self,
        conn: ConnId,
        mut messages: Vec<Message>,
        now: Millis,
    ) -> Vec<Message> {
        let provided = self.provided(conn, now);
        messages.retain(|m| !provided.contains(&m.id));
        messages
    }

    /// These messages went to the peer on `conn`: not again for [`PROVIDED_FOR`].
    pub fn given(&mut self, conn: ConnId, ids: impl IntoIterator<Item = MsgId>, now: Millis) {
        let provided = self.provided(conn, now);
        for id in ids {
            provided.insert(id, (), now);
        }
    }

    fn provided(&mut self, conn: ConnId, now: Millis) -> &mut Recent<MsgId> {
        let b = self.buckets.entry(conn).or_default();
        let provided = b
            .provided
            .get_or_insert_with(|| Recent::new(PROVIDED_TRACKED, PROVIDED_FOR));
        provided.expire(now);
        provided
    }

    /// Whether the peer on `conn`, from address `group`, may pull `bytes` more now (charged
    /// if so): an answer to what it asked for (see `Limits::peer_pulls`). A `SYNC` answer is
    /// charged to its reconciliation allowance too, which follows the count of messages
    /// `held` (see [`SYNC_ANSWER_PER_MESSAGE`]; `None` for other answers). Both are charged
    /// to its group as well (see [`GROUP_PULL_SHARE`]).
    pub fn pull(
        &mut self,
        conn: ConnId,
        group: Option<Group>,
        bytes: usize,
        sync_held: Option<usize>,
        now: Millis,
    ) -> bool {
        let pulls = self.config.limits.peer_pulls;
        let share =
            |r: Rate| Rate::new(r.per_second * GROUP_PULL_SHARE, r.burst * GROUP_PULL_SHARE);
        if let Some(g) = group
            && !self.pull_groups.contains(&g)
        {
            let first = GroupPulls {
                pulls: TokenBucket::new(share(pulls), now),
                syncs: None,
            };
            self.pull_groups.insert(g, first, now);
        }
        let b = self.buckets.entry(conn).or_default();
        let mut theirs = group.and_then(|g| self.pull_groups.get_mut(&g));
        if let Some(held) = sync_held {
            let burst = (SYNC_ANSWER_PER_MESSAGE * held + crate::sync::SYNC_FRAME_BYTES) as f64;
            let rate = Rate::new(burst * 1_000.0 / SYNC_ANSWERS_REFILL as f64, burst);
            // An answer longer than the whole allowance waits for all of it.
            let cost = (bytes as f64).min(burst);
            let syncs = b.syncs.get_or_insert_with(|| TokenBucket::new(rate, now));
            syncs.set_rate(rate, now);
            if syncs.take(cost, now).is_err() {
                return false;
            }
            if let Some(g) = theirs.as_deref_mut() {
                let syncs = g
                    .syncs
                    .get_or_insert_with(|| TokenBucket::new(share(rate), now));
                syncs.set_rate(share(rate), now);
                if syncs.take(cost, now).is_err() {
                    return false;
                }
            }
        }
        let bucket = b.pulls.get_or_insert_with(|| TokenBucket::new(pulls, now));
        bucket.take(bytes as f64, now).is_ok()
            && theirs.is_none_or(|g| g.pulls.take(bytes as f64, now).is_ok())
    }

    /// Takes one message from `author`'s quota (see `Limits::origin_messages`); over it,
    /// how long until there is room.
    pub fn take_from_quota(&mut self, author: Author, now: Millis) -> Result<(), Millis> {
        let rate = self.config.limits.origin_messages;
        take_one(&mut self.origins, author, rate, now)
    }

    /// Takes a fetched message from its author's allowance for the [`STAMP_SLOT`] its stamp
    /// falls in; false if the author could not have published so many in one slot.
    fn take_from_slot(&mut self, msg: &Message, now: Millis) -> bool {
        let rate = self.config.limits.origin_messages;
        let allowance = rate.burst + rate.per_second * (STAMP_SLOT / 1_000) as f64;
        let slot = (msg.author, msg.timestamp / STAMP_SLOT);
        self.stamped.insert(slot, 0, now);
        match self.stamped.get_mut(&slot) {
            Some(taken) if f64::from(*taken) + 1.0 > allowance => false,
            Some(taken) => {
                *taken += 1;
                true
            }
            None => true,
        }
    }

    /// Whether to take `msg`, which `sender` handed over on `conn`. `checked` says the
    /// driver has verified its signature already (see [`crate::wire::Inbound`]).
    pub fn judge(
        &mut self,
        conn: ConnId,
        sender: Sender,
        msg: &Message,
        checked: bool,
        held: &Held,
        now: Millis,
    ) -> Verdict {
        let bad_size = msg.data.is_empty() || msg.data.len() > self.config.max_message_bytes;
        if matches!(sender, Sender::Seed(_)) {
            if bad_size {
                return Verdict::Bad("message empty or too large");
            }
        } else if !msg.id_is_valid() || bad_size {
            return Verdict::Bad("message id does not match its content, or bad size");
        }
        if held.contains(&msg.id) {
            return Verdict::Duplicate;
        }
        let page = sender == Sender::Page && self.config.node;
        // A seed's text is stamped here, now: it is inside any window.
        if !matches!(sender, Sender::Seed(_))
            && let Err(outside) = held.check(crate::sync::key_of(msg).0, now)
        {
            let why = match outside {
                Outside::Future { .. } => Dropped::Future,
                _ => Dropped::TooOld,
            };
            // A page is told (its clock may be wrong); a node's copy is dropped and counted.
            let tell = page.then(|| Reply::Error {
                reason: outside.to_string(),
                id: Some(msg.id),
                retry_after_ms: None,
            });
            return Verdict::Drop { why, tell };
        }
        if let Some(verdict) = self.charge_sender(conn, sender, msg, now) {
            return verdict;
        }
        // Once per id (after dedup, as it is the costly check), before it is charged,
        // stored or passed on. A forged copy is dropped without marking the id as seen, so
        // it cannot keep the real one out; an honest peer checks what it passes on and
        // never sends one. Seed texts are unsigned by nature; a node relays those it took
        // from a seed, but a page never has one to give (it links to no seed).
        let signed = matches!(sender, Sender::Seed(_))
            || ((checked || msg.signature_is_valid())
                && !(msg.author.is_seed() && sender == Sender::Page));
        if !signed {
            return Verdict::Close(CloseReason::BadSignature);
        }
        if let Sender::Node { pushed } = sender {
            return self.charge_origin(conn, msg, pushed, now);
        }
        Verdict::Take
    }

    /// Whether a seed's text from `group` may be taken: within the group's allowance, which
    /// survives reconnects (per connection, it would not), and within the one quota all seed
    /// text shares (see `Limits::origin_messages`), which every node that relays it charges
    /// too: charged here first, where it enters, so what this node passes on is what its
    /// neighbours take, and a flood from one group is not this node's to answer for.
    fn seed_text_allowed(&mut self, group: Option<Group>, now: Millis) -> bool {
        let rate = self.config.limits.seed_group_messages;
        if let Some(group) = group
            && take_one(&mut self.seed_groups, group, rate, now).is_err()
        {
            return false;
        }
        self.take_from_quota(Author::Seed, now).is_ok()
    }

    /// Charges a new message to the connection it came by, if that is a page's (at a node)
    /// or a seed's. Over its limit, a page is told, with when to try again; nothing is
    /// marked as seen, so the message can come again later (by reconciliation, once the
    /// page's bucket has refilled). A seed has no error frame: what it sends over its limit
    /// is dropped.
    fn charge_sender(
        &mut self,
        conn: ConnId,
        sender: Sender,
        msg: &Message,
        now: Millis,
    ) -> Option<Verdict> {
        let limits = &self.config.limits;
        let (rate, who) = match sender {
            Sender::Page if self.config.node => (limits.page_messages, "a page"),
            Sender::Seed(_) => (limits.seed_messages, "a seed"),
            _ => return None,
        };
        let bucket = self
            .buckets
            .entry(conn)
            .or_default()
            .messages
            .get_or_insert_with(|| TokenBucket::new(rate, now));
        let Err(wait) = bucket.take(1.0, now) else {
            // Within the connection's limit; a seed's text also within its group's, and the
            // quota all seed text shares (charged only for what the connection may send).
            return match sender {
                Sender::Seed(group) if !self.seed_text_allowed(group, now) => Some(Verdict::Drop {
                    why: Dropped::RateLimited,
                    tell: None,
                }),
                _ => None,
            };
        };
        let tell = (sender == Sender::Page).then(|| Reply::Error {
            reason: format!(
                "rate limited: {who} may send {} messages at once and {} a second; try again in {} ms",
                rate.burst, rate.per_second, wait
            ),
            id: Some(msg.id),
            retry_after_ms: Some(wait),
        });
        Some(Verdict::Drop {
            why: Dropped::RateLimited,
            tell,
        })
    }

    /// Charges a message a node relayed to its origin's quota. Over it, the message is
    /// dropped, not marked as seen (it may come again once the quota refills). If the peer
    /// pushed it (we did not fetch it), the peer's tolerance is charged too: it applies the
    /// same quota before relaying, so it crosses ours only by a little unless it floods;
    /// one that keeps on is closed and refused for a while, as for bad frames. Seed texts
    /// relayed by nodes are charged too, under their one shared origin.
    ///
    /// What is pushed is live, and metered as it arrives. What this peer fetched is history
    /// it is catching up on, at its own pace: metered as it arrives, an author who published
    /// at its full rate for an hour would take this peer an hour to fetch. So it is metered
    /// by when it was published instead: within one [`STAMP_SLOT`] of stamps, no more than
    /// the author could have published live (its burst and a slot of its rate).
    fn charge_origin(&mut self, conn: ConnId, msg: &Message, pushed: bool, now: Millis) -> Verdict {
        let within = if pushed {
            self.take_from_quota(msg.author, now).is_ok()
        } else {
            self.take_from_slot(msg, now)
        };
        if within {
            return Verdict::Take;
        }
        // A copy of one already dropped (a relay answering our GRAFT, another relay) is not
        // held against anyone again.
        let again = !self.over_quota.insert(msg.id, (), now);
        let tolerance = self.config.limits.over_quota;
        let bucket = self
            .buckets
            .entry(conn)
            .or_default()
            .over_quota
            .get_or_insert_with(|| TokenBucket::new(tolerance, now));
        // All seed text shares one origin but enters at many nodes, each within the quota:
        // together they may cross it, and no relay is to blame for that.
        if pushed && !again && !msg.author.is_seed() && bucket.take(1.0, now).is_err() {
            return Verdict::Close(CloseReason::OverQuota);
        }
        Verdict::Drop {
            why: Dropped::OverQuota,
            tell: None,
        }
    }
}

/// Takes one token from `key`'s bucket in `table` (made full, at `rate`, if there is none):
/// over it, how long until there is room.
fn take_one<K: std::hash::Hash + Eq + Clone>(
    table: &mut Recent<K, TokenBucket>,
    key: K,
    rate: Rate,
    now: Millis,
) -> Result<(), Millis> {
    if !table.contains(&key) {
        table.insert(key.clone(), TokenBucket::new(rate, now), now);
    }
    match table.get_mut(&key) {
        Some(bucket) => bucket.take(1.0, now),
        None => Ok(()),
    }
}

impl Part for Admission {
    /// Admission asks for nothing: its verdicts are returned.
    type Out = ();
    type Context<'a> = ();

    fn poll(&mut self) -> Option<()> {
        None
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    fn handle_timeout(&mut self, now: Millis, _: ()) {
        while self.timers.pop_due(now).is_some() {
            self.timers
                .insert(now + self.config.expire_every.max(1), ());
            self.origins.expire(now);
            self.stamped.expire(now);
            self.seed_groups.expire(now);
            self.over_quota.expire(now);
        }
    }
}
