//! Rate limits: token buckets, and the defaults every node and page starts with.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each unit of traffic takes
//! one. The engine charges what enters the network through a connection it cannot slow down
//! by reading later: messages a page publishes (over the limit: refused with an `ERROR` frame
//! saying when to try again) and messages a seed sends (it has no error frame: the excess is
//! dropped and counted), and the dials peers make it make. The node charges HTTP publishers
//! per client address (429 with `Retry-After`) and every peer's frames and bytes, by reading
//! its socket later.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst }
    }
}

/// Every rate limit, with defaults that let a person paste a hundred lines at once but not
/// let one client fill every node's disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Messages a page may publish (and hand over by reconciliation), per connection.
    pub page_messages: Rate,
    /// Messages a seed (v1) peer may send, per connection.
    pub seed_messages: Rate,
    /// Messages all seed (v1) peers of one address group may send to this node together
    /// (IPv4 /24, IPv6 /48, see `group`), kept across reconnects: seed text is anonymous,
    /// and a connection's allowance would start afresh with every reconnect.
    pub seed_group_messages: Rate,
    /// Messages one HTTP client address may publish (`POST /api/messages`, `/commit`).
    pub http_messages: Rate,
    /// Frames any peer may send; beyond, its socket is read later.
    pub peer_frames: Rate,
    /// Bytes any peer may send; beyond, its socket is read later.
    pub peer_bytes: Rate,
    /// Dials to addresses learned from peers (the operator's own are not counted): beyond,
    /// membership is told the dial failed and tries again later, so no peer can make a node
    /// dial without bound.
    pub dials: Rate,
    /// New messages of one author that node peers may relay to this node; beyond, they are
    /// dropped (and may come again once the quota refills). Charged after the signature is
    /// checked, so no one can spend another's quota; keys cost nothing to make, though, so it
    /// bounds a flood under one name, not a relay that invents names (the per-peer limits
    /// do). What this node fetched (history) is metered by the minute of its stamps instead
    /// of its arrival: this burst and a minute of this rate per minute of stamps.
    pub origin_messages: Rate,
    /// Bytes a peer may pull from this node (the `MESSAGES` pages its `WANT`s ask for, the
    /// answers to its `SYNC`s); beyond, what it asks for is not answered until the budget
    /// refills. A peer catching up on a long history pulls about 40 MB for 100,000 signed
    /// messages: the burst lets 16 MiB of that through at once, and the rest follows at
    /// 8 MiB/s.
    pub peer_pulls: Rate,
    /// How many messages over their origin's quota a node peer may push before it is closed
    /// and refused for a while (every node applies the same quota before relaying, so an
    /// honest relay only crosses it by a little, when clocks and paths differ).
    pub over_quota: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            page_messages: Rate::new(5.0, 100.0),
            seed_messages: Rate::new(10.0, 100.0),
            seed_group_messages: Rate::new(10.0, 100.0),
            http_messages: Rate::new(10.0, 100.0),
            peer_frames: Rate::new(5_000.0, 20_000.0),
            peer_bytes: Rate::new(8.0 * 1024.0 * 1024.0, 32.0 * 1024.0 * 1024.0),
            dials: Rate::new(4.0, 32.0),
            origin_messages: Rate::new(100.0, 10_000.0),
            over_quota: Rate::new(1.0, 100.0),
            peer_pulls: Rate::new(8.0 * 1024.0 * 1024.0, 16.0 * 1024.0 * 1024.0),
        }
    }
}

/// How many inbound connections of each kind one client address may hold (the driver says
/// which address a connection came from, or none for addresses it exempts, such as loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KindCaps {
    pub nodes: usize,
    pub pages: usize,
    pub seeds: usize,
}

impl Default for KindCaps {
    fn default() -> Self {
        // A machine runs a node or two, a seed or two; many people behind one address (an
        // office, a phone network) open pages.
        Self {
            nodes: 8,
            pages: 64,
            seeds: 8,
        }
    }
}

/// A token bucket, full when made.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    at: Millis,
}

impl TokenBucket {
    pub fn new(rate: Rate, now: Millis) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = now.saturating_sub(self.at) as f64 / 1_000.0;
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.at = self.at.max(now);
    }

    /// Takes `n` tokens if there are that many; otherwise takes none and says how many
    /// milliseconds until there will be.
    pub fn take(&mut self, n: f64, now: Millis) -> Result<(), Millis> {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            Err(self.wait_for(n))
        }
    }

    /// Takes `n` tokens even if that leaves the bucket in debt, and says how long until it
    /// is out of debt (0 if it is not in debt): for traffic already read, which is paid for
    /// by reading the next later.
    pub fn charge(&mut self, n: f64, now: Millis) -> Millis {
        self.refill(now);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            0
        } else {
            self.wait_for(0.0)
        }
    }

    /// From `now` on, fills at `rate` (the tokens it holds are kept, up to the new burst):
    /// for an allowance that follows something that changes, as the history held.
    pub fn set_rate(&mut self, rate: Rate, now: Millis) {
        self.refill(now);
        self.rate = rate;
        self.tokens = self.tokens.min(rate.burst);
    }

    /// Whether the bucket is full at `now` (it can be forgotten: a new one would be the same).
    pub fn is_full(&mut self, now: Millis) -> bool {
        self.refill(now);
        self.tokens >= self.rate.burst
    }

    fn wait_for(&self, n: f64) -> Millis {
        if self.rate.per_second <= 0.0 {
            return Millis::MAX;
        }
        let missing = (n.min(self.rate.burst) - self.tokens).max(0.0);
        (missing / self.rate.per_second * 1_000.0).ceil() as Millis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let mut b = TokenBucket::new(Rate::new(10.0, 100.0), 0);
        for _ in 0..100 {
            assert_eq!(b.take(1.0, 0), Ok(()));
        }
        assert_eq!(b.take(1.0, 0), Err(100), "one token comes every 100 ms");
        assert_eq!(b.take(1.0, 50), Err(50));
        assert_eq!(b.take(1.0, 100), Ok(()));
        // A long pause refills to the burst, not beyond.
        assert!(b.is_full(1_000_000));
        for _ in 0..100 {
            assert_eq!(b.take(1.0, 1_000_000), Ok(()));
        }
        assert!(b.take(1.0, 1_000_000).is_err());
    }

    #[test]
    fn a_charge_may_go_into_debt_and_says_how_long_it_lasts() {
        let mut b = TokenBucket::new(Rate::new(1_000.0, 1_000.0), 0);
        assert_eq!(b.charge(500.0, 0), 0);
        assert_eq!(b.charge(1_500.0, 0), 1_000);
        assert_eq!(b.charge(0.0, 1_000), 0);
    }
}
