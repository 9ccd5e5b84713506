//! The history budget: which messages a peer keeps, judged by the messages' own timestamps.
//!
//! Retention is a window of age, [`History::retention`], the same setting across a network so
//! that every node agrees on what is inside it. A message older than the window is refused on
//! receipt (so it is never delivered twice: whoever evicted it will not take it back), one
//! stamped more than [`History::max_future`] ahead of our clock is refused too (it would
//! otherwise stay for ever), and every [`History::evict_every`] the engine drops what has aged
//! out of its index and tells its driver to drop it from the store
//! ([`crate::Output::Evict`]). Reconciliation covers only the window, less
//! [`History::edge`]: two peers whose clocks disagree by less than that never fetch from each
//! other what one of them would refuse.
//!
//! Seed (v1) texts have no timestamp of their own (their id is a hash of the text alone);
//! the first hearsay node to hear one stamps it, and it is reconciled under that stamp rounded
//! down to the hour ([`crate::sync::sync_timestamp`]), which two nodes that stamp the same
//! text independently almost always agree on.

use crate::Millis;
use crate::part::Part;
use crate::sync::{Key, MessageIndex, key_at};
use crate::timers::Timers;
use std::collections::VecDeque;

/// One day, in milliseconds.
pub const DAY: Millis = 24 * 60 * 60_000;

/// The history settings (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct History {
    /// How old a message may be, by its own timestamp; `None` keeps everything.
    pub retention: Option<Millis>,
    /// How far ahead of our clock a message may be stamped.
    pub max_future: Millis,
    /// How much short of the window's start reconciliation stops.
    pub edge: Millis,
    /// How often what has aged out is evicted.
    pub evict_every: Millis,
    /// A safety net for the disk under the window: past this many messages or bytes of
    /// text, the oldest are evicted, and nothing older than the oldest kept is taken or
    /// fetched again (so the node holds less than the window, for as long as it runs).
    pub max_messages: Option<usize>,
    pub max_bytes: Option<u64>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            retention: Some(30 * DAY),
            max_future: 5 * 60_000,
            edge: 10 * 60_000,
            evict_every: 60_000,
            max_messages: Some(1_000_000),
            max_bytes: Some(1 << 30),
        }
    }
}

/// Why a message is outside the window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Outside {
    #[error("message is {} old; this network keeps {}", span(*age), span(*retention))]
    TooOld { age: Millis, retention: Millis },
    #[error(
        "message is stamped {} ahead of this node's clock (at most {}); check the clock",
        span(*ahead),
        span(*max)
    )]
    Future { ahead: Millis, max: Millis },
    #[error("message is older than the oldest this node keeps (its storage cap was reached)")]
    OverBudget,
}

impl History {
    /// Whether a message stamped `timestamp` (its reconciliation timestamp) is inside the
    /// window at `now`.
    pub fn check(&self, timestamp: Millis, now: Millis) -> Result<(), Outside> {
        if timestamp > now.saturating_add(self.max_future) {
            return Err(Outside::Future {
                ahead: timestamp - now,
                max: self.max_future,
            });
        }
        match self.retention {
            Some(retention) if timestamp.saturating_add(retention) < now => Err(Outside::TooOld {
                age: now - timestamp,
                retention,
            }),
            _ => Ok(()),
        }
    }

    /// Messages stamped before this are evicted at `now`.
    pub fn cutoff(&self, now: Millis) -> Option<Millis> {
        self.retention.map(|r| now.saturating_sub(r))
    }

    /// Where reconciliation starts at `now`: the window's start plus the edge (at most a
    /// quarter of the window, so a short window still has most of it reconciled).
    pub fn sync_floor(&self, now: Millis) -> Option<Millis> {
        let edge = self.edge.min(self.retention.unwrap_or(0) / 4);
        self.cutoff(now).map(|c| c.saturating_add(edge))
    }
}

/// The messages this peer holds, under the retention rules: what is inside the window and
/// the storage cap, and what has aged out and is evicted (a part of the engine: its timer is
/// the eviction round).
pub struct Held {
    config: History,
    index: MessageIndex,
    /// Nothing stamped before this is kept: where the storage cap last cut the history.
    budget_floor: Option<Millis>,
    timers: Timers<()>,
    out: VecDeque<HeldOut>,
}

/// What the held set asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldOut {
    /// Messages stamped before `before` aged out (`count` of them): the driver drops them.
    Evict { before: Millis, count: usize },
}

impl Held {
    pub fn new(config: History, now: Millis) -> Self {
        // The first eviction soon after start, once the driver has noted what its store
        // holds (`Engine::note_held`).
        let mut timers = Timers::default();
        timers.insert(now + config.evict_every.clamp(1, 1_000), ());
        Self {
            config,
            index: MessageIndex::default(),
            budget_floor: None,
            timers,
            out: VecDeque::new(),
        }
    }

    pub fn history(&self) -> &History {
        &self.config
    }

    pub fn index(&self) -> &MessageIndex {
        &self.index
    }

    pub fn contains(&self, id: &crate::MsgId) -> bool {
        self.index.contains(id)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Records a message held (taken now, or held by the store already).
    pub fn insert(&mut self, key: Key, bytes: usize) {
        self.index.insert(key, bytes);
    }

    /// Forgets a message the driver could not keep after all (its store write failed).
    pub fn forget(&mut self, id: &crate::MsgId) -> bool {
        self.index.remove(id)
    }

    /// Nothing stamped before `ts` is to be taken again (the store evicted up to there).
    pub fn note_floor(&mut self, ts: Millis) {
        self.budget_floor = self.budget_floor.max(Some(ts));
    }

    /// Below this, nothing is fetched or taken: what the storage cap let go, and, while the
    /// history is full, anything older than its oldest (it would only be let go again). A
    /// page that starts with its home's newest 2,000 messages thus never fetches the rest.
    pub fn floor(&self) -> Option<Millis> {
        let h = &self.config;
        let full = self.index.full_from(
            h.max_messages.unwrap_or(usize::MAX),
            h.max_bytes.unwrap_or(u64::MAX),
        );
        self.budget_floor.max(full)
    }

    /// Where the history this peer keeps starts, as a key: `start` (the window's), or the
    /// floor if that is later.
    pub fn kept_from(&self, start: Option<Millis>) -> Option<Key> {
        start.max(self.floor()).map(key_at)
    }

    /// Whether a message stamped `timestamp` (its reconciliation timestamp) is to be taken
    /// at `now`: inside the window and above the floor.
    pub fn check(&self, timestamp: Millis, now: Millis) -> Result<(), Outside> {
        self.config.check(timestamp, now).and(match self.floor() {
            Some(floor) if timestamp < floor => Err(Outside::OverBudget),
            _ => Ok(()),
        })
    }
}

impl Part for Held {
    type Out = HeldOut;
    type Context<'a> = ();

    fn poll(&mut self) -> Option<HeldOut> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    fn handle_timeout(&mut self, now: Millis, _: ()) {
        while self.timers.pop_due(now).is_some() {
            self.timers.insert(now + self.config.evict_every.max(1), ());
            let window = self.config.cutoff(now);
            let h = &self.config;
            let cap = self.index.cut_for(
                h.max_messages.unwrap_or(usize::MAX),
                h.max_bytes.unwrap_or(u64::MAX),
            );
            if let Some(cap) = cap
                && window.is_none_or(|w| cap > w)
            {
                // Over the storage cap: the oldest go, and nothing older than what is kept
                // is taken or fetched again.
                self.budget_floor = self.budget_floor.max(Some(cap));
            }
            if let Some(before) = window.max(self.budget_floor) {
                let count = self.index.evict_before(before);
                if count > 0 {
                    self.out.push_back(HeldOut::Evict { before, count });
                }
            }
        }
    }
}

/// A duration as a person reads it: in the largest unit it reaches, to a tenth below ten.
pub fn span(ms: Millis) -> String {
    const UNITS: [(Millis, &str); 4] =
        [(DAY, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")];
    for (size, unit) in UNITS {
        if ms >= size {
            let v = ms as f64 / size as f64;
            let text = if v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}").trim_end_matches(".0").to_owned()
            };
            return format!("{text} {unit}");
        }
    }
    format!("{ms} ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_refuses_the_old_and_the_future_with_reasons_a_person_reads() {
        let h = History::default();
        let now = 100 * DAY;
        assert_eq!(h.check(now, now), Ok(()));
        assert_eq!(h.check(now - 30 * DAY, now), Ok(()));
        let old = h.check(now - 31 * DAY, now).unwrap_err();
        assert_eq!(
            old.to_string(),
            "message is 31 d old; this network keeps 30 d"
        );
        assert_eq!(h.check(now + 4 * 60_000, now), Ok(()));
        let ahead = h.check(now + 3_600_000, now).unwrap_err();
        assert_eq!(
            ahead.to_string(),
            "message is stamped 1 h ahead of this node's clock (at most 5 min); check the clock"
        );
        assert_eq!(h.cutoff(now), Some(70 * DAY));
        assert_eq!(h.sync_floor(now), Some(70 * DAY + 10 * 60_000));
        let forever = History {
            retention: None,
            ..History::default()
        };
        assert_eq!(forever.check(0, now), Ok(()));
        assert_eq!(forever.cutoff(now), None);
        let short = History {
            retention: Some(8 * 60_000),
            ..History::default()
        };
        assert_eq!(short.sync_floor(now), Some(now - 6 * 60_000));
        assert_eq!(span(90 * 60_000), "1.5 h");
        assert_eq!(span(3_600_001), "1 h");
        assert_eq!(span(250), "250 ms");
    }
}
