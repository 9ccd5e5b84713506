//! [`Recent`]: the one bounded, expiring keyed set used wherever something must be remembered
//! for a while and must not grow without limit — the payloads broadcast can still serve to a
//! `GRAFT`, the nodes membership leaves alone after a failed dial, the ids a node's event
//! stream has just replayed.
//!
//! Entries are kept in insertion order beside a hash map, so expiry and eviction pop from the
//! front in O(1).

use crate::Millis;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Keys remembered for at most `ttl` milliseconds and at most `capacity` at once (the oldest
/// go first), each with a value.
#[derive(Debug, Clone)]
pub struct Recent<K, V = ()> {
    entries: HashMap<K, (Millis, V)>,
    order: VecDeque<(Millis, K)>,
    capacity: usize,
    ttl: Millis,
}

impl<K: Hash + Eq + Clone, V> Recent<K, V> {
    pub fn new(capacity: usize, ttl: Millis) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Remembers `key` with `value`; false (and nothing changes) if it was already here.
    pub fn insert(&mut self, key: K, value: V, now: Millis) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key.clone(), (now, value));
        self.order.push_back((now, key));
        while self.entries.len() > self.capacity {
            self.pop_front();
        }
        true
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        // Its place in `order` is skipped when it comes up (see `pop_front`).
        self.entries.remove(key).map(|(_, v)| v)
    }

    /// Forgets entries older than the time to live.
    pub fn expire(&mut self, now: Millis) {
        while let Some((at, key)) = self.order.front() {
            let live = self.entries.get(key).is_some_and(|(t, _)| t == at);
            if live && now.saturating_sub(*at) < self.ttl {
                break;
            }
            if live {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// What was remembered at or after `since`, newest first, with when.
    pub fn since(&self, since: Millis) -> impl Iterator<Item = (&K, &V, Millis)> {
        self.order
            .iter()
            .rev()
            .take_while(move |(at, _)| *at >= since)
            .filter_map(|(at, key)| {
                self.entries
                    .get_key_value(key)
                    .filter(|(_, (t, _))| t == at)
                    .map(|(k, (t, v))| (k, v, *t))
            })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn pop_front(&mut self) {
        while let Some((at, key)) = self.order.pop_front() {
            // An entry removed (and perhaps inserted again later) leaves a stale place behind.
            if self.entries.get(&key).is_some_and(|(t, _)| *t == at) {
                self.entries.remove(&key);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry() {
        let mut s: Recent<u32> = Recent::new(10, 100);
        assert!(s.insert(1, (), 0));
        assert!(!s.insert(1, (), 50));
        s.expire(99);
        assert!(s.contains(&1));
        s.expire(100);
        assert!(!s.contains(&1));
        assert!(s.insert(1, (), 100));
    }

    #[test]
    fn evicts_oldest_beyond_capacity() {
        let mut s: Recent<u32, &str> = Recent::new(2, 1000);
        s.insert(1, "a", 0);
        s.insert(2, "b", 1);
        s.insert(3, "c", 2);
        assert_eq!(s.len(), 2);
        assert!(!s.contains(&1));
        assert_eq!(s.get(&3), Some(&"c"));
    }

    #[test]
    fn a_removed_key_inserted_again_keeps_its_new_age() {
        let mut s: Recent<u32> = Recent::new(10, 100);
        s.insert(1, (), 0);
        s.remove(&1);
        s.insert(1, (), 90);
        s.expire(150);
        assert!(
            s.contains(&1),
            "the stale place at 0 must not expire the new entry"
        );
        s.expire(190);
        assert!(!s.contains(&1));
        assert!(s.is_empty());
    }
}
