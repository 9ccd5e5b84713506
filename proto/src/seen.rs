//! The seen-set: which message ids this engine has already delivered, bounded in size and
//! in age so a long-running node does not grow without limit.
//!
//! Entries are kept in arrival order beside a hash set, so expiry and eviction pop from the
//! front in O(1). An id that has expired is treated as new again; the node's store still
//! refuses to keep it twice, and by then no copy of it should still be in flight.

use crate::Millis;
use crate::id::MsgId;
use std::collections::{HashSet, VecDeque};

#[derive(Debug)]
pub struct SeenSet {
    ids: HashSet<MsgId>,
    order: VecDeque<(Millis, MsgId)>,
    capacity: usize,
    ttl: Millis,
}

impl SeenSet {
    pub fn new(capacity: usize, ttl: Millis) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    pub fn contains(&self, id: &MsgId) -> bool {
        self.ids.contains(id)
    }

    /// Records `id`; returns false if it was already there.
    pub fn insert(&mut self, id: MsgId, now: Millis) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        while self.order.len() > self.capacity {
            self.pop_front();
        }
        true
    }

    /// Forgets entries older than the time-to-live.
    pub fn expire(&mut self, now: Millis) {
        while let Some(&(at, _)) = self.order.front() {
            if now.saturating_sub(at) < self.ttl {
                break;
            }
            self.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn pop_front(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MsgId {
        MsgId::from_bytes([n; 16])
    }

    #[test]
    fn remembers_until_expiry() {
        let mut s = SeenSet::new(10, 100);
        assert!(s.insert(id(1), 0));
        assert!(!s.insert(id(1), 50));
        s.expire(99);
        assert!(s.contains(&id(1)));
        s.expire(100);
        assert!(!s.contains(&id(1)));
        assert!(s.insert(id(1), 100));
    }

    #[test]
    fn evicts_oldest_beyond_capacity() {
        let mut s = SeenSet::new(2, 1000);
        s.insert(id(1), 0);
        s.insert(id(2), 1);
        s.insert(id(3), 2);
        assert_eq!(s.len(), 2);
        assert!(!s.contains(&id(1)));
        assert!(s.contains(&id(2)) && s.contains(&id(3)));
    }
}
