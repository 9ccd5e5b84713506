//! A message as it travels, as it is stored and as the API shows it.

use crate::id::{MsgId, NodeId, V1_ORIGIN};
use serde::{Deserialize, Serialize};

/// One message. Its id is a hash of the other fields (see [`MsgId`]), so every peer derives
/// the same id and a copy with a tampered field is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MsgId,
    /// The publishing peer's id in hex, or [`V1_ORIGIN`] for text that came from a seed node.
    pub origin: String,
    /// Per-origin sequence number (0 for v1 messages).
    pub seq: u64,
    /// Milliseconds since the Unix epoch at the origin (at the first hearsay node, for v1).
    pub timestamp: u64,
    pub data: String,
}

impl Message {
    /// Whether `id` is what the other fields hash to. A message whose id does not match is
    /// rejected, so one peer cannot make others drop a message by reusing its id.
    pub fn id_is_valid(&self) -> bool {
        let expected = if self.origin == V1_ORIGIN {
            MsgId::v1(&self.data)
        } else {
            match self.origin.parse::<NodeId>() {
                Ok(origin) => MsgId::v2(&origin, self.seq, self.timestamp, &self.data),
                Err(_) => return false,
            }
        };
        expected == self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_checked() {
        let id = NodeId::from_bytes([3; 16]);
        let mut m = Message {
            id: MsgId::v2(&id, 4, 10, "hello"),
            origin: id.to_string(),
            seq: 4,
            timestamp: 10,
            data: "hello".into(),
        };
        assert!(m.id_is_valid());
        m.data = "tampered".into();
        assert!(!m.id_is_valid());
        let v1 = Message {
            id: MsgId::v1("seed"),
            origin: V1_ORIGIN.into(),
            seq: 0,
            timestamp: 99,
            data: "seed".into(),
        };
        assert!(v1.id_is_valid());
        let bad_origin = Message {
            origin: "nobody".into(),
            ..v1
        };
        assert!(!bad_origin.id_is_valid());
    }
}
