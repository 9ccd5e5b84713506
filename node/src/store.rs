//! Where delivered messages are kept. One small interface, [`Store`], so the durability work
//! can put a database behind it without touching the rest of the node.

use hearsay_proto::{Message, MsgId};
use std::collections::HashMap;

/// Why a page of messages could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("no message with id {0} (the `after` cursor must be an id this node holds)")]
    UnknownAfter(MsgId),
}

/// The node's message history, in the order this node received it.
pub trait Store: Send {
    /// Keeps `msg`; returns false (and keeps nothing) if a message with its id is already here.
    fn insert(&mut self, msg: &Message) -> bool;
    /// Up to `limit` messages following `after` (from the start when `None`), oldest first.
    fn page(&self, after: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError>;
    /// The `n` most recent messages, newest first.
    fn recent(&self, n: usize) -> Vec<Message>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Messages in memory, lost on restart (until the durable store exists).
#[derive(Debug, Default)]
pub struct MemoryStore {
    messages: Vec<Message>,
    position: HashMap<MsgId, usize>,
}

impl Store for MemoryStore {
    fn insert(&mut self, msg: &Message) -> bool {
        if self.position.contains_key(&msg.id) {
            return false;
        }
        self.position.insert(msg.id, self.messages.len());
        self.messages.push(msg.clone());
        true
    }

    fn page(&self, after: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError> {
        let start = match after {
            None => 0,
            Some(id) => self.position.get(id).ok_or(PageError::UnknownAfter(*id))? + 1,
        };
        Ok(self
            .messages
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }

    fn recent(&self, n: usize) -> Vec<Message> {
        self.messages.iter().rev().take(n).cloned().collect()
    }

    fn len(&self) -> usize {
        self.messages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearsay_proto::NodeId;

    fn msg(n: u64) -> Message {
        let origin = NodeId::from_bytes([1; 16]);
        let data = format!("m{n}");
        Message {
            id: MsgId::v2(&origin, n, n, &data),
            origin: origin.to_string(),
            seq: n,
            timestamp: n,
            data,
        }
    }

    #[test]
    fn pages_follow_insertion_order_and_skip_duplicates() {
        let mut s = MemoryStore::default();
        for n in 0..5 {
            assert!(s.insert(&msg(n)));
        }
        assert!(!s.insert(&msg(2)));
        assert_eq!(s.len(), 5);
        let first = s.page(None, 2).unwrap();
        assert_eq!(first, vec![msg(0), msg(1)]);
        let next = s.page(Some(&first[1].id), 10).unwrap();
        assert_eq!(next, vec![msg(2), msg(3), msg(4)]);
        assert!(s.page(Some(&msg(4).id), 10).unwrap().is_empty());
        assert_eq!(
            s.page(Some(&msg(9).id), 1),
            Err(PageError::UnknownAfter(msg(9).id))
        );
        assert_eq!(s.recent(2), vec![msg(4), msg(3)]);
    }
}
