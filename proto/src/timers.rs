//! [`Timers`]: a queue of typed deadlines. Each part of the engine keeps its own, so
//! `poll_timeout` is the earliest real deadline of all of them rather than a fixed tick, and
//! a quiet engine is not woken for nothing.
//!
//! A timer is never cancelled: when it fires, its handler checks whether it still applies
//! (a connection may have closed, a message may have arrived). That keeps scheduling O(log n)
//! and free of bookkeeping.

use crate::Millis;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Timers<T> {
    /// Deadlines in order, each naming the slot its timer waits in. The map holds no `T`, so
    /// every part's timers share one map type: in the page's WebAssembly a B-tree costs its
    /// code once per type it holds, about 2 KB each.
    queue: BTreeMap<(Millis, u64), u32>,
    slots: Vec<Option<T>>,
    /// Slots whose timer has fired, to be used again.
    free: Vec<u32>,
    seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            queue: BTreeMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Schedules `timer` to fire at `at`. Timers due at the same moment fire in the order
    /// they were scheduled.
    pub fn insert(&mut self, at: Millis, timer: T) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(timer);
                slot
            }
            None => {
                self.slots.push(Some(timer));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.insert((at, self.seq), slot);
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Millis> {
        self.queue.keys().next().map(|&(at, _)| at)
    }

    /// Takes the earliest timer due at `now` or before.
    pub fn pop_due(&mut self, now: Millis) -> Option<T> {
        match self.queue.first_key_value() {
            Some((&(at, _), _)) if at <= now => {
                let (_, slot) = self.queue.pop_first()?;
                self.free.push(slot);
                self.slots[slot as usize].take()
            }
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The earliest of several optional deadlines.
pub fn earliest(deadlines: impl IntoIterator<Item = Option<Millis>>) -> Option<Millis> {
    deadlines.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_then_insertion_order() {
        let mut t = Timers::default();
        t.insert(20, "b");
        t.insert(10, "a");
        t.insert(20, "c");
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(25), Some("a"));
        assert_eq!(t.pop_due(25), Some("b"));
        assert_eq!(t.pop_due(25), Some("c"));
        assert_eq!(t.pop_due(25), None);
        assert!(t.is_empty());
    }

    #[test]
    fn earliest_ignores_absent_deadlines() {
        assert_eq!(earliest([None, Some(5), Some(3), None]), Some(3));
        assert_eq!(earliest([None::<Millis>]), None);
    }
}
