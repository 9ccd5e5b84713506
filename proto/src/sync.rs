//! Range-based set reconciliation (the approach of negentropy): two peers find which messages
//! the other lacks by comparing fingerprints over ranges of `(timestamp, id)`, splitting only
//! the ranges that differ, until the differences are small enough to list. The bytes exchanged
//! grow with the size of the difference (times the log of the history), not with the history.
//!
//! Each `SYNC` frame is answered from the receiver's own set alone — no session state — so a
//! reconciliation is simply frames bouncing until a reply would say nothing. Ranges in a frame
//! are contiguous: the first starts at `from`, each ends (exclusively) at its `to`; the last
//! range of the last frame of a round ends at the top of the key space (`to: null`).
//!
//! Modes of a range: `fp` (my fingerprint, compare), `ids` (everything I hold in this range,
//! tell me what you have that I lack), `have` (ids I hold that you lacked: ask for them),
//! `skip` (nothing to do). What each side lacks is fetched with `WANT`/`MESSAGES` in pages, so
//! a huge history streams and never builds one giant frame.

use crate::id::{MsgId, V1_ORIGIN};
use crate::wire::Message;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

/// A position in the key space: `(timestamp, id)`. Seed (v1) messages use timestamp 0, as
/// every node records its own arrival time for them and the key must be the same everywhere.
pub type Key = (u64, MsgId);

/// The sort key of a message.
pub fn key_of(msg: &Message) -> Key {
    (sync_timestamp(&msg.origin, msg.timestamp), msg.id)
}

/// The timestamp a message is reconciled under (see [`Key`]).
pub fn sync_timestamp(origin: &str, timestamp: u64) -> u64 {
    if origin == V1_ORIGIN { 0 } else { timestamp }
}

/// Ranges with at most this many items on our side are listed rather than split.
pub const LIST_AT_MOST: usize = 32;
/// How many parts a differing range is split into.
pub const SPLIT_INTO: usize = 16;
/// Most ranges in one `SYNC` frame (a round with more is sent as several frames).
pub const RANGES_PER_FRAME: usize = 256;

/// Every message id this peer holds, ordered by key.
#[derive(Debug, Default, Clone)]
pub struct MessageIndex {
    keys: BTreeSet<Key>,
    by_id: HashMap<MsgId, u64>,
}

impl MessageIndex {
    /// Records a message; false if its id was already here.
    pub fn insert(&mut self, (ts, id): Key) -> bool {
        if self.by_id.contains_key(&id) {
            return false;
        }
        self.by_id.insert(id, ts);
        self.keys.insert((ts, id));
        true
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
            .then(|| self.keys.range((lo, hi)))
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

/// The opening frame of a reconciliation: one fingerprint over everything we hold.
pub fn initiate(index: &MessageIndex) -> SyncFrame {
    let fp = Fingerprint::of(index.range(None, None));
    SyncFrame {
        from: None,
        ranges: vec![Range {
            to: None,
            fp: Some(fp.encode()),
            ..Range::default()
        }],
    }
}

/// Answers one `SYNC` frame from our own set.
pub fn respond(index: &MessageIndex, frame: &SyncFrame) -> Reply {
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
            want.extend(theirs.iter().filter(|id| !index.contains(id)).copied());
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
            want.extend(have.iter().filter(|id| !index.contains(id)).copied());
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
    let frames = merged
        .chunks(RANGES_PER_FRAME)
        .map(|chunk| SyncFrame {
            from: wire(chunk[0].0),
            ranges: chunk.iter().map(|(_, r)| r.clone()).collect(),
        })
        .collect();
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
            ix.insert((n * 10, id(n)));
        }
        ix
    }

    /// Runs a reconciliation to the end; returns (what a lacks, what b lacks, rounds, bytes).
    pub(crate) fn reconcile(
        a: &MessageIndex,
        b: &MessageIndex,
    ) -> (Vec<MsgId>, Vec<MsgId>, usize, usize) {
        let mut to_b = vec![initiate(a)];
        let mut bytes = serde_json::to_string(&to_b[0]).unwrap().len();
        let (mut a_wants, mut b_wants) = (Vec::new(), Vec::new());
        let mut rounds = 0;
        while !to_b.is_empty() {
            rounds += 1;
            assert!(rounds < 100, "reconciliation does not settle");
            let mut to_a = Vec::new();
            for f in &to_b {
                let r = respond(b, f);
                b_wants.extend(r.want);
                to_a.extend(r.frames);
            }
            to_b = Vec::new();
            for f in &to_a {
                bytes += serde_json::to_string(f).unwrap().len();
                let r = respond(a, f);
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
        let _ = respond(&a, &frame);
    }
}
