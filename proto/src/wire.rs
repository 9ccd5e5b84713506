//! The wire format: JSON text frames, one per WebSocket message.
//!
//! **v1** is exactly the seed's two frames, `MESSAGE` and `SOCKETS`. Everything else is
//! hearsay's own protocol, version [`PROTOCOL_VERSION`]. A [`Frame`] is nested by the part of
//! the protocol it is for, and each part defines its own frames (the JSON `type` of each is
//! that part's to name):
//! - the seed's, [`seed::Message`]: `MESSAGE`, `SOCKETS`;
//! - the handshake, [`handshake::Message`]: `HELLO` (protocol name and version, id, key and
//!   a page's tab, a nonce and, answering a dialer, the proof over its nonce; kind,
//!   addresses, a page's home), then `PROOF` from the dialer;
//! - membership, [`membership::Message`]: `JOIN`, `FORWARD_JOIN`, `NEIGHBOR`, `DISCONNECT`,
//!   `SHUFFLE`, `SHUFFLE_REPLY`, and `PEERS` (nodes a page may link to);
//! - broadcast (Plumtree), [`broadcast::Message`]: `GOSSIP` (a signed message with its hop
//!   count), `IHAVE`, `GRAFT`, `PRUNE`;
//! - the tree, [`tree::Message`]: `BEACON`, and `DEPTH`/`HANDOVER` (the root's walk to the
//!   tree's centre);
//! - keepalive, [`keepalive::Message`]: `PING`/`PONG`;
//! - reconciliation, [`sync::Message`]: `SYNC`, `WANT`, `MESSAGES`;
//! - the network map, [`map::Message`]: `MAP` (a batch of records), `MAP_WANT` (the records
//!   of the peers it names);
//! - admission's answers, [`Reply`]: a node's receipt for a page's message, `ACK`, and
//!   refusals, `ERROR` (why, the message id, when to try again).
//!
//! A frame is encoded as its part's message alone (the nesting adds nothing on the wire) and
//! decoded by its `type` first ([`Frame::decode`]); anything that is not JSON, has the wrong
//! shape or an unknown type is a [`DecodeError`], never a panic.

use crate::admission::Reply;
use crate::id::{MsgId, NodeId};
use crate::identity::{Author, Signature};
use crate::map::TopoRecord;
use crate::message::Message;
use crate::peer::PeerRecord;
use crate::{broadcast, handshake, keepalive, map, membership, seed, sync, tree};
use serde::{Deserialize, Serialize};

pub use crate::handshake::{Hello, PROTOCOL_NAME, PROTOCOL_VERSION};

/// Declares [`Frame`], one variant a part, and how each part's message becomes a frame.
macro_rules! frames {
    ($($(#[$doc:meta])* $variant:ident($ty:ty)),* $(,)?) => {
        /// Every frame either protocol can carry, by the part it is for. Encoded by serde
        /// (each part's message carries its own `type`); decoded by [`Frame::decode`].
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(untagged)]
        pub enum Frame {
            $($(#[$doc])* $variant($ty),)*
        }

        $(impl From<$ty> for Frame {
            fn from(m: $ty) -> Self {
                Frame::$variant(m)
            }
        })*
    };
}

frames!(
    /// The seed's (v1): `MESSAGE`, `SOCKETS`.
    Seed(seed::Message),
    Handshake(handshake::Message),
    Membership(membership::Message),
    /// Plumtree's: `GOSSIP`, `IHAVE`, `GRAFT`, `PRUNE`.
    Broadcast(broadcast::Message),
    /// The tree's: `BEACON`, `DEPTH`, `HANDOVER`.
    Tree(tree::Message),
    Keepalive(keepalive::Message),
    /// Reconciliation's: `SYNC`, `WANT`, `MESSAGES`.
    Sync(sync::Message),
    Map(map::Message),
    /// A node's answers: `ACK`, `ERROR`.
    Reply(Reply),
);

impl Frame {
    /// The `GOSSIP` frame for `msg`, encoded without copying the message.
    pub fn encode_gossip(msg: &Message, hops: u32) -> String {
        #[derive(Serialize)]
        struct Gossip<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(flatten)]
            msg: &'a Message,
            hops: u32,
        }
        to_json(&Gossip {
            kind: "GOSSIP",
            msg,
            hops,
        })
    }
}

pub use crate::sync::{MAX_WANT, MESSAGES_PAGE_BYTES};

/// A text frame as read off a socket, before the engine takes it: decoded, and, if the
/// driver asked, the signatures of the messages it carries already checked.
///
/// Checking a signature is the costliest thing done per message. A driver with one thread
/// (the page, the simulator) hands text to [`crate::Engine::frame`], which checks each
/// message once, after dedup. A driver with several cores (the node) makes an `Inbound`
/// with [`Inbound::read_checked`] on the socket's own task, outside the engine's lock, and
/// passes it to [`crate::Engine::inbound`]; the engine then takes the verdicts as they are.
/// Only this module can make one, so no driver can vouch for a message itself.
pub struct Inbound {
    pub(crate) len: usize,
    pub(crate) frame: Result<Frame, InboundError>,
    /// Ids of the carried messages whose ids and signatures checked out.
    pub(crate) signed: Vec<MsgId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InboundError {
    TooLarge,
    Undecodable,
}

impl Inbound {
    /// Decodes `text`; signatures are left to the engine.
    pub fn read(text: &str) -> Self {
        let frame = if text.len() > MAX_FRAME_BYTES {
            Err(InboundError::TooLarge)
        } else {
            Frame::decode(text).map_err(|_| InboundError::Undecodable)
        };
        Self {
            len: text.len(),
            frame,
            signed: Vec::new(),
        }
    }

    /// Decodes `text` and checks the signature of every message it carries (a copy of one
    /// already held is checked too: the price of checking off the engine's thread).
    pub fn read_checked(text: &str) -> Self {
        let mut inbound = Self::read(text);
        let messages: &[Message] = match &inbound.frame {
            Ok(Frame::Broadcast(broadcast::Message::Gossip { msg, .. })) => {
                std::slice::from_ref(msg)
            }
            Ok(Frame::Sync(sync::Message::Messages { messages, .. })) => messages,
            _ => &[],
        };
        // The id too: a verdict is kept by id, and a validly signed message under another's
        // id must not vouch for a forged copy of that other one in the same frame.
        inbound.signed = messages
            .iter()
            .filter(|m| m.id_is_valid() && m.signature_is_valid())
            .map(|m| m.id)
            .collect();
        inbound
    }
}

/// The largest frame any peer accepts, node or page. Every frame the protocol makes fits:
/// the largest is a `MESSAGES` page (256 KiB of encoded messages plus one more, itself at most
/// 6 × 64 KiB when every character of its text needs an escape). strfry allows 128 KiB per
/// frame and 64 KiB per event; gossipsub 64 KiB per RPC; ours is larger only because history
/// is sent in pages.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// The longest message text, in bytes (the engine's `max_message_bytes` defaults to it).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most addresses in one frame (`SOCKETS`, `PEERS`, `SHUFFLE`, a `HELLO`…), aliases
/// included. Ours carry a handful; more is a peer trying to make us work or remember.
pub const MAX_ADDRESSES: usize = 64;

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

fn to_json<T: Serialize>(value: &T) -> String {
    // (A `match` rather than `expect`, which would drag serde_json's Debug output into the
    // browser's .wasm.)
    match serde_json::to_string(value) {
        Ok(text) => text,
        Err(_) => unreachable!("frames always serialize"),
    }
}

impl Frame {
    /// Encodes a frame as JSON text. Encoding our own types cannot fail.
    /// How many addresses the frame carries, aliases included (see [`MAX_ADDRESSES`]).
    pub fn address_count(&self) -> usize {
        fn records(r: &[PeerRecord]) -> usize {
            r.iter().map(|p| 1 + p.aliases.len()).sum()
        }
        use membership::Message as M;
        match self {
            Frame::Seed(seed::Message::Sockets { addresses }) => addresses.len(),
            Frame::Handshake(handshake::Message::Hello(h)) => h.addresses.len(),
            Frame::Membership(m) => match m {
                M::ForwardJoin { peer, .. } => records(std::slice::from_ref(peer)),
                M::Shuffle { origin, peers, .. } => {
                    records(std::slice::from_ref(origin)) + records(peers)
                }
                M::ShuffleReply { peers } | M::Peers { peers } => records(peers),
                M::Join | M::Neighbor { .. } | M::Disconnect { .. } => 0,
            },
            _ => 0,
        }
    }

    pub fn encode(&self) -> String {
        to_json(self)
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
        struct Gossip {
            // Field by field, not `flatten` (which buffers the whole frame first): this is
            // the frame every message travels in.
            id: MsgId,
            author: Author,
            seq: u64,
            timestamp: u64,
            data: String,
            #[serde(default)]
            sig: Option<Signature>,
            #[serde(default)]
            hops: u32,
        }
        #[derive(Deserialize)]
        struct Peers {
            peers: Vec<PeerRecord>,
        }
        #[derive(Deserialize)]
        struct ForwardJoin {
            peer: PeerRecord,
            ttl: u8,
        }
        #[derive(Deserialize)]
        struct Neighbor {
            high: bool,
            #[serde(default)]
            swap: bool,
        }
        #[derive(Deserialize)]
        struct Disconnect {
            alive: bool,
        }
        #[derive(Deserialize)]
        struct Shuffle {
            origin: PeerRecord,
            peers: Vec<PeerRecord>,
            ttl: u8,
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
        struct Have {
            ids: Vec<crate::broadcast::Announced>,
        }
        #[derive(Deserialize)]
        struct Depth {
            root: NodeId,
            term: u64,
            seq: u64,
            held: u64,
            below: u64,
        }
        #[derive(Deserialize)]
        struct Handover {
            term: u64,
            reach: u64,
            #[serde(default)]
            back: bool,
        }
        #[derive(Deserialize)]
        struct Batch {
            messages: Vec<Message>,
            done: bool,
        }
        #[derive(Deserialize)]
        struct Records {
            records: Vec<TopoRecord>,
        }
        #[derive(Deserialize)]
        struct Nodes {
            nodes: Vec<NodeId>,
        }
        use broadcast::Message as B;
        use membership::Message as M;
        use tree::Message as T;
        Ok(match kind.as_str() {
            "MESSAGE" => Frame::Seed(seed::Message::Text {
                data: body::<Data>(&kind, text)?.data,
            }),
            "SOCKETS" => Frame::Seed(seed::Message::Sockets {
                addresses: body::<Addresses>(&kind, text)?.addresses,
            }),
            "HELLO" => Frame::Handshake(handshake::Message::Hello(body(&kind, text)?)),
            "PROOF" => {
                #[derive(Deserialize)]
                struct Proof {
                    sig: Signature,
                }
                Frame::Handshake(handshake::Message::Proof {
                    sig: body::<Proof>(&kind, text)?.sig,
                })
            }
            "GOSSIP" => {
                let g: Gossip = body(&kind, text)?;
                Frame::Broadcast(B::Gossip {
                    msg: Message {
                        id: g.id,
                        author: g.author,
                        seq: g.seq,
                        timestamp: g.timestamp,
                        data: g.data,
                        sig: g.sig,
                    },
                    hops: g.hops,
                })
            }
            "IHAVE" => Frame::Broadcast(B::IHave {
                ids: body::<Have>(&kind, text)?.ids,
            }),
            "GRAFT" => Frame::Broadcast(B::Graft {
                ids: body::<Ids>(&kind, text)?.ids,
            }),
            "PRUNE" => Frame::Broadcast(B::Prune),
            "BEACON" => Frame::Tree(T::Beacon(body(&kind, text)?)),
            "DEPTH" => {
                let d: Depth = body(&kind, text)?;
                Frame::Tree(T::Depth {
                    root: d.root,
                    term: d.term,
                    seq: d.seq,
                    held: d.held,
                    below: d.below,
                })
            }
            "HANDOVER" => {
                let h: Handover = body(&kind, text)?;
                Frame::Tree(T::Handover {
                    term: h.term,
                    reach: h.reach,
                    back: h.back,
                })
            }
            "JOIN" => Frame::Membership(M::Join),
            "FORWARD_JOIN" => {
                let f: ForwardJoin = body(&kind, text)?;
                Frame::Membership(M::ForwardJoin {
                    peer: f.peer,
                    ttl: f.ttl,
                })
            }
            "NEIGHBOR" => {
                let n: Neighbor = body(&kind, text)?;
                Frame::Membership(M::Neighbor {
                    high: n.high,
                    swap: n.swap,
                })
            }
            "DISCONNECT" => Frame::Membership(M::Disconnect {
                alive: body::<Disconnect>(&kind, text)?.alive,
            }),
            "SHUFFLE" => {
                let s: Shuffle = body(&kind, text)?;
                Frame::Membership(M::Shuffle {
                    origin: s.origin,
                    peers: s.peers,
                    ttl: s.ttl,
                })
            }
            "SHUFFLE_REPLY" => Frame::Membership(M::ShuffleReply {
                peers: body::<Peers>(&kind, text)?.peers,
            }),
            "PEERS" => Frame::Membership(M::Peers {
                peers: body::<Peers>(&kind, text)?.peers,
            }),
            "PING" => Frame::Keepalive(keepalive::Message::Ping {
                nonce: body::<Nonce>(&kind, text)?.nonce,
            }),
            "PONG" => Frame::Keepalive(keepalive::Message::Pong {
                nonce: body::<Nonce>(&kind, text)?.nonce,
            }),
            "ACK" => Frame::Reply(Reply::Ack {
                id: body::<Id>(&kind, text)?.id,
            }),
            "SYNC" => Frame::Sync(sync::Message::Sync(body(&kind, text)?)),
            "WANT" => Frame::Sync(sync::Message::Want {
                ids: body::<Ids>(&kind, text)?.ids,
            }),
            "MESSAGES" => {
                let b: Batch = body(&kind, text)?;
                Frame::Sync(sync::Message::Messages {
                    messages: b.messages,
                    done: b.done,
                })
            }
            "MAP" => Frame::Map(map::Message::Map {
                records: body::<Records>(&kind, text)?.records,
            }),
            "MAP_WANT" => Frame::Map(map::Message::Want {
                nodes: body::<Nodes>(&kind, text)?.nodes,
            }),
            "ERROR" => {
                #[derive(Deserialize)]
                struct Error {
                    reason: String,
                    #[serde(default)]
                    id: Option<MsgId>,
                    #[serde(default)]
                    retry_after_ms: Option<u64>,
                }
                let e: Error = body(&kind, text)?;
                Frame::Reply(Reply::Error {
                    reason: e.reason,
                    id: e.id,
                    retry_after_ms: e.retry_after_ms,
                })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Nonce, Tab};
    use crate::peer::PeerKind;

    #[test]
    fn v1_frames_are_the_seeds_exactly() {
        let m = Frame::Seed(seed::Message::Text { data: "hi".into() });
        assert_eq!(m.encode(), r#"{"type":"MESSAGE","data":"hi"}"#);
        let s = Frame::Seed(seed::Message::Sockets {
            addresses: vec!["ws://a:1".into()],
        });
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
    fn hearsay_frames_round_trip() {
        use broadcast::Message as B;
        use membership::Message as M;
        let id = NodeId::from_bytes([7; 16]);
        let record = PeerRecord {
            id,
            address: "ws://h:1".into(),
            aliases: vec!["ws://h:2".into()],
        };
        let key = crate::identity::Keypair::from_secret([7; 32]);
        let msg = Message::signed(&key, 1, 5, "x".into());
        let frames = [
            Frame::Handshake(handshake::Message::Hello(Hello {
                protocol: PROTOCOL_NAME.into(),
                version: PROTOCOL_VERSION,
                id,
                key: Some(key.public()),
                tab: Some(Tab::from_bytes([1; 16])),
                nonce: Some(Nonce::from_bytes([2; 16])),
                proof: Some(key.sign(b"x")),
                run: Some(Nonce::from_bytes([3; 16])),
                kind: PeerKind::Node,
                addresses: vec!["ws://127.0.0.1:3000".into()],
                home: None,
                root: Some(id),
                term: Some(2),
            })),
            B::Gossip {
                msg: msg.clone(),
                hops: 4,
            }
            .into(),
            B::IHave {
                ids: vec![(msg.id, 3, 40)],
            }
            .into(),
            B::Graft { ids: vec![msg.id] }.into(),
            B::Prune.into(),
            handshake::Message::Proof {
                sig: key.sign(b"y"),
            }
            .into(),
            tree::Message::Beacon(crate::succession::Beacon::signed(
                &key,
                2,
                3,
                Some("ws://example.org:3000".into()),
                Some(id),
                true,
            ))
            .into(),
            tree::Message::Depth {
                root: id,
                term: 2,
                seq: 3,
                held: 40,
                below: 120,
            }
            .into(),
            tree::Message::Handover {
                term: 2,
                reach: 150,
                back: true,
            }
            .into(),
            M::Join.into(),
            M::ForwardJoin {
                peer: record.clone(),
                ttl: 6,
            }
            .into(),
            M::Neighbor {
                high: true,
                swap: false,
            }
            .into(),
            M::Neighbor {
                high: false,
                swap: true,
            }
            .into(),
            M::Disconnect { alive: false }.into(),
            M::Shuffle {
                origin: record.clone(),
                peers: vec![record.clone()],
                ttl: 2,
            }
            .into(),
            M::ShuffleReply {
                peers: vec![record.clone()],
            }
            .into(),
            M::Peers {
                peers: vec![record],
            }
            .into(),
            keepalive::Message::Ping { nonce: 9 }.into(),
            keepalive::Message::Pong { nonce: 9 }.into(),
            Reply::Ack { id: MsgId::v1("x") }.into(),
            sync::Message::Want { ids: vec![msg.id] }.into(),
            sync::Message::Messages {
                messages: vec![msg.clone()],
                done: true,
            }
            .into(),
            map::Message::Map { records: vec![] }.into(),
            map::Message::Want {
                nodes: vec![NodeId::from_bytes([3; 16])],
            }
            .into(),
            Reply::Error {
                reason: "rate limited".to_owned(),
                id: Some(msg.id),
                retry_after_ms: Some(200),
            }
            .into(),
        ];
        for f in frames {
            let f: Frame = f;
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        assert_eq!(
            Frame::encode_gossip(&msg, 4),
            Frame::from(B::Gossip { msg, hops: 4 }).encode()
        );
        assert_eq!(Frame::from(B::Prune).encode(), r#"{"type":"PRUNE"}"#);
    }

    #[test]
    fn a_checked_read_vouches_only_for_messages_whose_signatures_verify() {
        let key = crate::identity::Keypair::from_secret([7; 32]);
        let good = Message::signed(&key, 1, 5, "good".into());
        let mut forged = Message::signed(&key, 2, 5, "forged".into());
        forged.sig = good.sig;
        let frame = Frame::from(sync::Message::Messages {
            messages: vec![good.clone(), forged],
            done: true,
        })
        .encode();
        assert_eq!(Inbound::read_checked(&frame).signed, vec![good.id]);
        assert!(
            Inbound::read(&frame).signed.is_empty(),
            "left to the engine"
        );
        let gossip = Frame::encode_gossip(&good, 1);
        assert_eq!(Inbound::read_checked(&gossip).signed, vec![good.id]);
        assert!(matches!(
            Inbound::read_checked(&"x".repeat(MAX_FRAME_BYTES + 1)).frame,
            Err(InboundError::TooLarge)
        ));
        assert!(matches!(
            Inbound::read_checked("nope").frame,
            Err(InboundError::Undecodable)
        ));
    }

    #[test]
    fn a_newer_peers_extra_fields_are_ignored() {
        let text = format!(
            r#"{{"type":"HELLO","protocol":"hearsay","version":4,"id":"{}","kind":"node","addresses":[],"shiny":true}}"#,
            "0a".repeat(16)
        );
        assert!(
            matches!(Frame::decode(&text).unwrap(), Frame::Handshake(handshake::Message::Hello(h)) if h.version == 4)
        );
        // An older peer's HELLO (no key) is still read, so it can be told the versions.
        let old = format!(
            r#"{{"type":"HELLO","protocol":"hearsay","version":3,"id":"{}","kind":"node"}}"#,
            "0a".repeat(16)
        );
        assert!(
            matches!(Frame::decode(&old).unwrap(), Frame::Handshake(handshake::Message::Hello(h)) if h.version == 3)
        );
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
}
