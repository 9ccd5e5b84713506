//! The wire format: JSON text frames, one per WebSocket message.
//!
//! **v1** is exactly the seed's two frames, `MESSAGE` and `SOCKETS`. **v2** adds a handshake
//! (`HELLO`, which carries the protocol version so the format can grow), message frames with
//! ids (`GOSSIP`), peer exchange (`PEERS`) and keepalive (`PING`/`PONG`). A frame is decoded
//! into [`Frame`]; anything that is not JSON, has the wrong shape or an unknown type is a
//! [`DecodeError`], never a panic.

use crate::id::{MsgId, NodeId, V1_ORIGIN};
use crate::sync::SyncFrame;
use crate::topology::TopoRecord;
use serde::{Deserialize, Serialize};

/// The version this build speaks. A peer announcing a higher version is spoken to at ours;
/// frames we do not know from such a peer are counted and ignored rather than fatal.
pub const PROTOCOL_VERSION: u32 = 2;
/// The `protocol` field of every `HELLO`, so a stray JSON peer is not mistaken for hearsay.
pub const PROTOCOL_NAME: &str = "hearsay";

/// What kind of peer is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    /// A native node: has listen addresses and can be dialed.
    Node,
    /// A browser tab: dials out only.
    Browser,
}

/// One message as it travels and as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MsgId,
    /// The publishing node's id in hex, or [`V1_ORIGIN`] for text that came from a seed node.
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

/// The v2 handshake, sent first by the dialing side and answered by the accepting side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: String,
    pub version: u32,
    pub id: NodeId,
    pub kind: PeerKind,
    /// Canonical `ws://host:port` addresses this peer can be dialed at (none for browsers).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// For a browser: the node that served its page. That node alone passes the browser's
    /// messages on to v1 peers, so a seed node sees each of them once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<NodeId>,
}

/// A node we can tell others about: its id, its canonical address, and the other addresses
/// it can be reached at (such as its seed-compatible port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub id: NodeId,
    pub address: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// Every frame either version can carry. Encoded by serde; decoded by [`Frame::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Frame {
    /// v1: a published text, no id.
    #[serde(rename = "MESSAGE")]
    Message { data: String },
    /// v1: the addresses the sender has dialed.
    #[serde(rename = "SOCKETS")]
    Sockets { addresses: Vec<String> },
    /// v2: handshake.
    #[serde(rename = "HELLO")]
    Hello(Hello),
    /// v2: a message with its id, origin and timestamp.
    #[serde(rename = "GOSSIP")]
    Gossip(Message),
    /// v2: peer exchange.
    #[serde(rename = "PEERS")]
    Peers { peers: Vec<PeerRecord> },
    /// v2: keepalive probe; answered with a `PONG` carrying the same nonce.
    #[serde(rename = "PING")]
    Ping { nonce: u32 },
    #[serde(rename = "PONG")]
    Pong { nonce: u32 },
    /// v2: a node tells a browser that it now holds a message the browser published, so the
    /// page can show it as stored.
    #[serde(rename = "ACK")]
    Ack { id: MsgId },
    /// v2: one step of set reconciliation (see `sync`).
    #[serde(rename = "SYNC")]
    Sync(SyncFrame),
    /// v2: send me these messages (at most [`MAX_WANT`] ids).
    #[serde(rename = "WANT")]
    Want { ids: Vec<MsgId> },
    /// v2: messages asked for with `WANT`, in pages; `done` marks the last page of an answer.
    #[serde(rename = "MESSAGES")]
    Messages { messages: Vec<Message>, done: bool },
    /// v2: a peer's account of itself for the network map, flooded (see `topology`).
    #[serde(rename = "TOPO")]
    Topo(TopoRecord),
    /// v2: `node` received message `id` first from `from` (none: it published it) at `at`,
    /// flooded so a page can show the message travel.
    #[serde(rename = "TRACE")]
    Trace(Trace),
}

/// One step of a message's journey, for the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub id: MsgId,
    pub node: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NodeId>,
    pub at: u64,
}

/// Most ids in one `WANT`.
pub const MAX_WANT: usize = 256;
/// A `MESSAGES` page is cut once its texts pass this many bytes.
pub const MESSAGES_PAGE_BYTES: usize = 256 * 1024;

/// Why a text frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame has no string \"type\" field")]
    NoType,
    #[error("unknown frame type \"{0}\"")]
    UnknownType(String),
    #[error("malformed {kind} frame: {detail}")]
    Malformed { kind: String, detail: String },
}

impl Frame {
    /// Encodes a frame as JSON text. Encoding our own types cannot fail.
    pub fn encode(&self) -> String {
        // (A `match` rather than `expect`, which would drag serde_json's Debug output into the
        // browser's .wasm.)
        match serde_json::to_string(self) {
            Ok(text) => text,
            Err(_) => unreachable!("frames always serialize"),
        }
    }

    /// Decodes one text frame, telling apart "not JSON", "unknown type" and "wrong shape" so
    /// the engine can count and report each clearly.
    pub fn decode(text: &str) -> Result<Frame, DecodeError> {
        // Two light passes rather than one through serde_json::Value and an internally tagged
        // enum: both of those pull a lot of code into the browser's .wasm.
        let tag: Tag =
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        let kind = tag.kind.ok_or(DecodeError::NoType)?;
        fn body<'a, T: Deserialize<'a>>(kind: &str, text: &'a str) -> Result<T, DecodeError> {
            serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
                kind: kind.to_owned(),
                detail: e.to_string(),
            })
        }
        #[derive(Deserialize)]
        struct Data {
            data: String,
        }
        #[derive(Deserialize)]
        struct Addresses {
            addresses: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Peers {
            peers: Vec<PeerRecord>,
        }
        #[derive(Deserialize)]
        struct Nonce {
            nonce: u32,
        }
        #[derive(Deserialize)]
        struct Id {
            id: MsgId,
        }
        #[derive(Deserialize)]
        struct Ids {
            ids: Vec<MsgId>,
        }
        #[derive(Deserialize)]
        struct Batch {
            messages: Vec<Message>,
            done: bool,
        }
        Ok(match kind.as_str() {
            "MESSAGE" => Frame::Message {
                data: body::<Data>(&kind, text)?.data,
            },
            "SOCKETS" => Frame::Sockets {
                addresses: body::<Addresses>(&kind, text)?.addresses,
            },
            "HELLO" => Frame::Hello(body(&kind, text)?),
            "GOSSIP" => Frame::Gossip(body(&kind, text)?),
            "PEERS" => Frame::Peers {
                peers: body::<Peers>(&kind, text)?.peers,
            },
            "PING" => Frame::Ping {
                nonce: body::<Nonce>(&kind, text)?.nonce,
            },
            "PONG" => Frame::Pong {
                nonce: body::<Nonce>(&kind, text)?.nonce,
            },
            "ACK" => Frame::Ack {
                id: body::<Id>(&kind, text)?.id,
            },
            "SYNC" => Frame::Sync(body(&kind, text)?),
            "TOPO" => Frame::Topo(body(&kind, text)?),
            "TRACE" => Frame::Trace(body(&kind, text)?),
            "WANT" => Frame::Want {
                ids: body::<Ids>(&kind, text)?.ids,
            },
            "MESSAGES" => {
                let b: Batch = body(&kind, text)?;
                Frame::Messages {
                    messages: b.messages,
                    done: b.done,
                }
            }
            _ => return Err(DecodeError::UnknownType(kind)),
        })
    }
}

/// The `type` of a frame: `Some` only for a JSON object whose `type` is a string.
struct Tag {
    kind: Option<String>,
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        struct StrOrOther(Option<String>);
        impl<'de> Deserialize<'de> for StrOrOther {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = StrOrOther;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("any JSON value")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOrOther, E> {
                        Ok(StrOrOther(Some(v.to_owned())))
                    }
                    fn visit_bool<E>(self, _: bool) -> Result<StrOrOther, E> {
                        Ok(StrOrOther(None))
                    }
                    fn visit_i64<E>(self, _: i64) -> Result<StrOrOther, E> {
                        Ok(StrOrOther(None))
                    }
                    fn visit_u64<E>(self, _: u64) -> Result<StrOrOther, E> {
                        Ok(StrOrOther(None))
                    }
                    fn visit_f64<E>(self, _: f64) -> Result<StrOrOther, E> {
                        Ok(StrOrOther(None))
                    }
                    fn visit_unit<E>(self) -> Result<StrOrOther, E> {
                        Ok(StrOrOther(None))
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut a: A,
                    ) -> Result<StrOrOther, A::Error> {
                        while a.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(StrOrOther(None))
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut a: A,
                    ) -> Result<StrOrOther, A::Error> {
                        while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok(StrOrOther(None))
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct TagVisitor;
        impl<'de> Visitor<'de> for TagVisitor {
            type Value = Tag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON frame")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Tag, A::Error> {
                let mut kind = None;
                while let Some(key) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "type" {
                        kind = a.next_value::<StrOrOther>()?.0;
                    } else {
                        a.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Tag { kind })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Tag, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Tag { kind: None })
            }
            fn visit_str<E>(self, _: &str) -> Result<Tag, E> {
                Ok(Tag { kind: None })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tag, E> {
                Ok(Tag { kind: None })
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tag, E> {
                Ok(Tag { kind: None })
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tag, E> {
                Ok(Tag { kind: None })
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tag, E> {
                Ok(Tag { kind: None })
            }
            fn visit_unit<E>(self) -> Result<Tag, E> {
                Ok(Tag { kind: None })
            }
        }
        d.deserialize_any(TagVisitor)
    }
}

/// Reduces a WebSocket URL to the one form a node is advertised by: `ws://host:port` (or
/// `wss://`), lower-case, with the node's own paths `/` and `/ws` dropped. Seed nodes compare
/// addresses as strings, so one node must always be named the same way. Returns `None` for
/// anything that is not a ws:// or wss:// URL with a host.
pub fn canonical_address(address: &str) -> Option<String> {
    let address = address.trim();
    let (scheme, rest) = address.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty()
        || authority.contains('@')
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
    {
        return None;
    }
    let path = match path.trim_end_matches('/') {
        "" | "/ws" => "",
        other => other,
    };
    Some(format!(
        "{scheme}://{}{path}",
        authority.to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_frames_are_the_seeds_exactly() {
        let m = Frame::Message { data: "hi".into() };
        assert_eq!(m.encode(), r#"{"type":"MESSAGE","data":"hi"}"#);
        let s = Frame::Sockets {
            addresses: vec!["ws://a:1".into()],
        };
        assert_eq!(s.encode(), r#"{"type":"SOCKETS","addresses":["ws://a:1"]}"#);
        assert_eq!(
            Frame::decode(r#"{"type":"MESSAGE","data":"hi"}"#).unwrap(),
            m
        );
        assert_eq!(
            Frame::decode(r#"{"addresses":["ws://a:1"],"type":"SOCKETS"}"#).unwrap(),
            s
        );
    }

    #[test]
    fn v2_frames_round_trip() {
        let id = NodeId::from_bytes([7; 16]);
        let frames = [
            Frame::Hello(Hello {
                protocol: PROTOCOL_NAME.into(),
                version: PROTOCOL_VERSION,
                id,
                kind: PeerKind::Node,
                addresses: vec!["ws://127.0.0.1:3000".into()],
                home: None,
            }),
            Frame::Gossip(Message {
                id: MsgId::v2(&id, 1, 5, "x"),
                origin: id.to_string(),
                seq: 1,
                timestamp: 5,
                data: "x".into(),
            }),
            Frame::Peers {
                peers: vec![PeerRecord {
                    id,
                    address: "ws://h:1".into(),
                    aliases: vec!["ws://h:2".into()],
                }],
            },
            Frame::Ping { nonce: 9 },
            Frame::Pong { nonce: 9 },
            Frame::Ack { id: MsgId::v1("x") },
        ];
        for f in frames {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn a_newer_peers_extra_fields_are_ignored() {
        let text = format!(
            r#"{{"type":"HELLO","protocol":"hearsay","version":3,"id":"{}","kind":"node","addresses":[],"shiny":true}}"#,
            "0a".repeat(16)
        );
        assert!(matches!(Frame::decode(&text).unwrap(), Frame::Hello(h) if h.version == 3));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases = [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("[1,2]", "no string"),
            (r#"{"type":5}"#, "no string"),
            (r#"{"type":"NOPE"}"#, "unknown frame type"),
            (r#"{"type":"MESSAGE"}"#, "malformed MESSAGE"),
            (
                r#"{"type":"MESSAGE","data":["a","b"]}"#,
                "malformed MESSAGE",
            ),
            (
                r#"{"type":"SOCKETS","addresses":"ws://x"}"#,
                "malformed SOCKETS",
            ),
            (r#"{"type":"HELLO","id":"xyz"}"#, "malformed HELLO"),
            (
                r#"{"type":"GOSSIP","id":"00","data":"x"}"#,
                "malformed GOSSIP",
            ),
            (r#"{"type":"PING","nonce":-1}"#, "malformed PING"),
        ];
        for (text, want) in cases {
            let err = Frame::decode(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?} gave {err:?}, wanted {want:?}");
        }
    }

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

    #[test]
    fn addresses_have_one_canonical_form() {
        let cases = [
            ("ws://127.0.0.1:3000", Some("ws://127.0.0.1:3000")),
            ("ws://127.0.0.1:3000/", Some("ws://127.0.0.1:3000")),
            ("WS://LocalHost:3000/ws", Some("ws://localhost:3000")),
            (
                "wss://example.org/hearsay/",
                Some("wss://example.org/hearsay"),
            ),
            (" ws://h:1 ", Some("ws://h:1")),
            ("http://h:1", None),
            ("ws://", None),
            ("ws:///x", None),
            ("h:1", None),
            ("ws://user@h:1", None),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_address(input).as_deref(), want, "{input:?}");
        }
    }
}
