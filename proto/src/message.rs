//! A message as it travels, as it is stored and as the API shows it.
//!
//! A message's id is cut from a digest of what it is: SHA-256 over a domain tag, the author's
//! key, the author's sequence number, the timestamp and the text, each length-fixed or
//! length-prefixed so distinct tuples never hash the same bytes. Its `sig` is the author's
//! signature of that whole digest. So a copy whose fields were changed no longer matches its
//! id (cheap to check, and checked on every copy), and a message whose id and fields match
//! but whose author did not write it fails the signature (checked once per id, on the first
//! copy that is new: see `Engine`).

use crate::id::MsgId;
use crate::identity::{Author, Keypair, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MsgId,
    /// Who wrote it: a public key, or `"v1"` for text that came from a seed node.
    pub author: Author,
    /// The author's sequence number: it only grows, across restarts too (0 for seed texts).
    pub seq: u64,
    /// Milliseconds since the Unix epoch at the author (at the first hearsay node, for v1).
    pub timestamp: u64,
    pub data: String,
    /// The author's signature of the digest the id is cut from (none for seed texts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Signature>,
}

/// What an author signs: the digest of its message's fields.
pub fn digest(author: &PublicKey, seq: u64, timestamp: u64, data: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"hearsay/msg/v4\0");
    h.update(author.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(timestamp.to_be_bytes());
    h.update((data.len() as u64).to_be_bytes());
    h.update(data.as_bytes());
    h.finalize().into()
}

impl Message {
    /// A message written and signed by `key`.
    pub fn signed(key: &Keypair, seq: u64, timestamp: u64, data: String) -> Self {
        let author = key.public();
        let sig = key.sign(&digest(&author, seq, timestamp, &data));
        Self::with_signature(author, seq, timestamp, data, sig)
    }

    /// A message its author signed elsewhere (an app with its own key), with the id its
    /// fields give; whether `sig` is the author's is for [`Message::signature_is_valid`].
    pub fn with_signature(
        author: PublicKey,
        seq: u64,
        timestamp: u64,
        data: String,
        sig: Signature,
    ) -> Self {
        Self {
            id: MsgId::from_digest(&digest(&author, seq, timestamp, &data)),
            author: Author::Key(author),
            seq,
            timestamp,
            data,
            sig: Some(sig),
        }
    }

    /// A text from a seed node, first heard at `timestamp`.
    pub fn from_seed(data: String, timestamp: u64) -> Self {
        Self {
            id: MsgId::v1(&data),
            author: Author::Seed,
            seq: 0,
            timestamp,
            data,
            sig: None,
        }
    }

    /// Whether `id` is what the other fields hash to. A message whose id does not match is
    /// rejected, so one peer cannot make others drop a message by reusing its id.
    pub fn id_is_valid(&self) -> bool {
        let expected = match &self.author {
            Author::Seed => MsgId::v1(&self.data),
            Author::Key(k) => MsgId::from_digest(&digest(k, self.seq, self.timestamp, &self.data)),
        };
        expected == self.id
    }

    /// Whether the author signed it (a seed text carries no signature and needs none). The
    /// costly check: run it once per id, after [`Message::id_is_valid`].
    pub fn signature_is_valid(&self) -> bool {
        match (&self.author, &self.sig) {
            (Author::Seed, None) => true,
            (Author::Key(k), Some(sig)) => {
                k.verify(&digest(k, self.seq, self.timestamp, &self.data), sig)
            }
            _ => false,
        }
    }
}

/// How far apart the sequence numbers of one author's tabs are kept (see [`next_seq`]).
const SEQ_SLOTS: u64 = 1024;

/// The sequence number of an author's next message. It grows with the clock (the
/// millisecond, times [`SEQ_SLOTS`]), so a restarted node never reuses one even if it kept
/// nothing; within a millisecond it counts on. A page's tabs share one key: each starts from
/// its own slot (drawn from its tab nonce), so two tabs repeat a number only if they publish
/// in the same millisecond from the same slot.
pub fn next_seq(last: u64, now: u64, tab: Option<&crate::identity::Tab>) -> u64 {
    let slot = tab.map_or(0, |t| {
        u64::from(u16::from_le_bytes([t.as_bytes()[0], t.as_bytes()[1]])) % SEQ_SLOTS
    });
    (last + 1).max(now.saturating_mul(SEQ_SLOTS) + slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_signatures_are_checked() {
        let key = Keypair::from_secret([3; 32]);
        let m = Message::signed(&key, 4, 10, "hello".into());
        assert!(m.id_is_valid() && m.signature_is_valid());

        let tampered = Message {
            data: "tampered".into(),
            ..m.clone()
        };
        assert!(!tampered.id_is_valid());

        // A forger recomputes the id for its own text under the real author: the id
        // matches, the signature does not.
        let mallory = Keypair::from_secret([4; 32]);
        let mut forged = Message::signed(&mallory, 4, 10, "I owe you".into());
        forged.author = m.author;
        forged.id = MsgId::from_digest(&digest(&key.public(), 4, 10, "I owe you"));
        assert!(forged.id_is_valid());
        assert!(!forged.signature_is_valid());
        assert!(
            !Message {
                sig: None,
                ..m.clone()
            }
            .signature_is_valid(),
            "unsigned"
        );

        let v1 = Message::from_seed("seed".into(), 99);
        assert!(v1.id_is_valid() && v1.signature_is_valid());
        assert!(
            !Message {
                sig: m.sig,
                ..v1.clone()
            }
            .signature_is_valid(),
            "a seed text carries no signature"
        );
    }

    #[test]
    fn messages_round_trip_as_json_with_author_and_sig() {
        let m = Message::signed(&Keypair::from_secret([5; 32]), 1, 2, "hi".into());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["author"].as_str().unwrap().len(), 64);
        assert_eq!(json["sig"].as_str().unwrap().len(), 128);
        assert_eq!(serde_json::from_value::<Message>(json).unwrap(), m);
        let v1 = serde_json::to_value(Message::from_seed("s".into(), 1)).unwrap();
        assert_eq!(v1["author"], "v1");
        assert!(v1.get("sig").is_none());
    }
}
