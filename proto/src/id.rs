//! Identifiers: [`NodeId`] names a peer (derived from its key: see [`crate::identity`]),
//! [`MsgId`] names a message everywhere it travels.
//!
//! Both are 16 bytes written as 32 lower-case hex digits on the wire. A message id is cut from
//! a hash over what the message *is* (author, sequence, timestamp and text: see
//! [`crate::message`]), so every node that sees the same message derives the same id and a
//! forged id is detected by recomputing it.

use sha2::{Digest, Sha256};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not the expected number of lower-case hex digits (an id has 32)")]
pub struct BadId;

/// `s` as `N` bytes of lower-case hex.
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], BadId> {
    if s.len() != 2 * N || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(BadId);
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| BadId)?;
    Ok(out)
}

/// What every byte-array newtype here needs (ids, and the keys, signatures and nonces of
/// [`crate::identity`]): constructors, lower-case hex for `Display`, `FromStr` and serde,
/// and a short `Debug` (eight digits tell values apart in logs and test failures).
macro_rules! hex_bytes {
    ($name:ident, $len:literal) => {
        impl $name {
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), &hex::encode(self.0)[..8])
            }
        }
        impl std::str::FromStr for $name {
            type Err = $crate::id::BadId;
            fn from_str(s: &str) -> Result<Self, $crate::id::BadId> {
                $crate::id::parse_hex::<$len>(s).map(Self)
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(|_| {
                    serde::de::Error::custom(concat!(
                        "expected ",
                        stringify!($len),
                        " bytes as lower-case hex"
                    ))
                })
            }
        }
    };
}
pub(crate) use hex_bytes;

/// A peer's id: a node's is the first half of its public key, a page's a hash of its key
/// and its tab (see [`crate::identity`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 16]);
hex_bytes!(NodeId, 16);

impl NodeId {
    /// Where this id falls in `[0, span)`: spreads timers over nodes, lowest ids first.
    pub fn spread(&self, span: u64) -> u64 {
        let b = &self.0;
        let x = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
        x * span / (u32::MAX as u64 + 1)
    }
}

/// A message's identity, the same on every node (see [`MsgId::v2`] and [`MsgId::v1`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId([u8; 16]);
hex_bytes!(MsgId, 16);

impl MsgId {
    /// The id of a signed message: the first half of its digest (see
    /// [`crate::message::digest`]).
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Self(out)
    }

    /// The id of a message that came from a seed node. The seed sends its text with no id, one
    /// copy per socket, so the id depends on the text alone: every copy, at every node, collapses
    /// into one message.
    pub fn v1(data: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"hearsay/msg/v1\0");
        h.update(data.as_bytes());
        Self::from_digest(&h.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_hex() {
        let id = NodeId::from_bytes([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s, "ab".repeat(16));
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
        assert_eq!(
            serde_json::from_str::<NodeId>(&format!("\"{s}\"")).unwrap(),
            id
        );
    }

    #[test]
    fn bad_ids_are_rejected() {
        for bad in [
            "",
            "ab",
            &"AB".repeat(16),
            &"zz".repeat(16),
            &"a".repeat(33),
        ] {
            assert_eq!(bad.parse::<MsgId>(), Err(BadId), "{bad:?}");
        }
    }

    #[test]
    fn message_ids_depend_on_every_field() {
        use crate::identity::PublicKey;
        use crate::message::digest;
        let id = |a: u8, seq, ts, text| {
            MsgId::from_digest(&digest(&PublicKey::from_bytes([a; 32]), seq, ts, text))
        };
        let base = id(1, 1, 1000, "hi");
        assert_eq!(base, id(1, 1, 1000, "hi"));
        assert_ne!(base, id(2, 1, 1000, "hi"));
        assert_ne!(base, id(1, 2, 1000, "hi"));
        assert_ne!(base, id(1, 1, 1001, "hi"));
        assert_ne!(base, id(1, 1, 1000, "ho"));
        assert_eq!(MsgId::v1("hi"), MsgId::v1("hi"));
        assert_ne!(MsgId::v1("hi"), MsgId::v1("ho"));
    }
}
