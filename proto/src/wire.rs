//! The wire format: JSON text frames, one per WebSocket message.
//!
//! **v1** is exactly the seed's two frames, `MESSAGE` and `SOCKETS`. Everything else is
//! hearsay's own protocol, version [`PROTOCOL_VERSION`]:
//! - handshake: `HELLO` (protocol name and version, id, key and a page's tab, a nonce and,
//!   answering a dialer, the proof over its nonce; kind, addresses, a page's home), then
//!   `PROOF` from the dialer (see [`crate::identity::handshake_proof`]);
//! - broadcast: `GOSSIP` (a signed message with its hop count), `IHAVE`, `GRAFT`, `PRUNE`,
//!   `BEACON`, and `DEPTH`/`HANDOVER` (the root's walk to the tree's centre);
//! - membership: `JOIN`, `FORWARD_JOIN`, `NEIGHBOR`, `DISCONNECT`, `SHUFFLE`,
//!   `SHUFFLE_REPLY`, and `PEERS` (nodes a page may link to);
//! - keepalive: `PING`/`PONG`; a node's receipt for a page's message: `ACK`;
//! - reconciliation: `SYNC`, `WANT`, `MESSAGES`;
//! - the network map: `MAP` (a batch of records);
//! - refusals: `ERROR` (why, the message id, when to try again).
//!
//! A frame is decoded into [`Frame`]; anything that is not JSON, has the wrong shape or an
//! unknown type is a [`DecodeError`], never a panic. The payloads of the protocol's parts are
//! defined by those parts (`membership`, `broadcast`, `sync`, `map`); this module only names
//! and encodes them, so nothing there depends on the wire.

use crate::broadcast::Control;
use crate::id::{MsgId, NodeId};
use crate::identity::{Author, Nonce, PublicKey, Signature, Tab};
use crate::map::TopoRecord;
use crate::membership;
use crate::message::Message;
use crate::peer::{PeerKind, PeerRecord};
use crate::sync::SyncFrame;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The version this build speaks. A peer of any other version is closed with a reason that
/// names both.
pub const PROTOCOL_VERSION: u32 = 5;
/// The `protocol` field of every `HELLO`, so a stray JSON peer is not mistaken for hearsay.
pub const PROTOCOL_NAME: &str = "hearsay";

/// The handshake, sent first by the dialing side and answered by the accepting side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: String,
    pub version: u32,
    pub id: NodeId,
    /// The sender's public key: its id must derive from it (and, for a page, `tab`).
    /// Optional only so that a peer of an older version, which sends none, is still read
    /// far enough to be told which versions differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
    /// For a page: the nonce of its tab (tabs of one browser share a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tab: Option<Tab>,
    /// A fresh value for the other end to sign (see [`Frame::Proof`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
    /// In the accepting side's answer: its signature over the dialer's nonce, proving it
    /// holds `key` (see [`crate::identity::handshake_proof`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Signature>,
    /// Drawn when the sender's process started: a node keeps its id across restarts, and a
    /// new run's link replaces the old run's, which may linger half-open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Nonce>,
    pub kind: PeerKind,
    /// Canonical `ws://host:port` addresses this peer can be dialed at (none for browsers).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// For a browser: the node that served its page. That node alone passes the browser's
    /// messages on to v1 peers, so a seed node sees each of them once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<NodeId>,
    /// The root of the sender's broadcast tree, if it knows one, and the term it was
    /// elected in: another root in the same term marks a peer from another overlay (see
    /// `membership`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
}

/// Every frame either protocol can carry. Encoded by serde; decoded by [`Frame::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Frame {
    /// v1: a published text, no id.
    #[serde(rename = "MESSAGE")]
    Message { data: String },
    /// v1: the addresses the sender has dialed.
    #[serde(rename = "SOCKETS")]
    Sockets { addresses: Vec<String> },
    #[serde(rename = "HELLO")]
    Hello(Hello),
    /// The dialer's answer to the acceptor's `HELLO`: its signature over the acceptor's
    /// nonce. Until it comes, the acceptor takes the connection for nothing.
    #[serde(rename = "PROOF")]
    Proof { sig: Signature },
    /// A message pushed whole; the receiver is `hops` hops from its origin.
    #[serde(rename = "GOSSIP")]
    Gossip {
        #[serde(flatten)]
        msg: Message,
        hops: u32,
    },
    /// Ids of messages the sender has, each with the hop count it received it at.
    #[serde(rename = "IHAVE")]
    IHave { ids: Vec<(MsgId, u32)> },
    /// Send me these, and push to me from now on.
    #[serde(rename = "GRAFT")]
    Graft { ids: Vec<MsgId> },
    /// Stop pushing to me.
    #[serde(rename = "PRUNE")]
    Prune,
    /// The broadcast tree's root, elected in `term`, in its round `seq` (see `broadcast`).
    #[serde(rename = "BEACON")]
    Beacon {
        root: NodeId,
        term: u64,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<Arc<str>>,
    },
    /// To the parent: how far the tree reaches below the sender (see `centre`).
    #[serde(rename = "DEPTH")]
    Depth {
        root: NodeId,
        term: u64,
        seq: u64,
        held: u64,
        below: u64,
    },
    /// From the root to a child: take the root. `reach` is how far the sender's tree
    /// reached; `back` says the sender's own tree reached no sooner, so it returns the root.
    #[serde(rename = "HANDOVER")]
    Handover { term: u64, reach: u64, back: bool },
    #[serde(rename = "JOIN")]
    Join,
    #[serde(rename = "FORWARD_JOIN")]
    ForwardJoin { peer: PeerRecord, ttl: u8 },
    #[serde(rename = "NEIGHBOR")]
    Neighbor { high: bool },
    #[serde(rename = "DISCONNECT")]
    Disconnect { alive: bool },
    #[serde(rename = "SHUFFLE")]
    Shuffle {
        origin: PeerRecord,
        peers: Vec<PeerRecord>,
        ttl: u8,
    },
    #[serde(rename = "SHUFFLE_REPLY")]
    ShuffleReply { peers: Vec<PeerRecord> },
    /// To a page: nodes it may link to.
    #[serde(rename = "PEERS")]
    Peers { peers: Vec<PeerRecord> },
    /// Keepalive probe; answered with a `PONG` carrying the same nonce.
    #[serde(rename = "PING")]
    Ping { nonce: u32 },
    #[serde(rename = "PONG")]
    Pong { nonce: u32 },
    /// A node tells a page that it now holds a message the page published, so the page can
    /// show it as stored.
    #[serde(rename = "ACK")]
    Ack { id: MsgId },
    /// One step of set reconciliation (see `sync`).
    #[serde(rename = "SYNC")]
    Sync(SyncFrame),
    /// Send me these messages (at most [`MAX_WANT`] ids).
    #[serde(rename = "WANT")]
    Want { ids: Vec<MsgId> },
    /// Messages asked for with `WANT`, in pages; `done` marks the last page of an answer.
    #[serde(rename = "MESSAGES")]
    Messages { messages: Vec<Message>, done: bool },
    /// Records for the network map (see `map`).
    #[serde(rename = "MAP")]
    Map { records: Vec<TopoRecord> },
    /// Something the peer sent was refused: `reason` for people, the message's `id` if it
    /// was one, and when to try again if waiting helps (a rate limit).
    #[serde(rename = "ERROR")]
    Error {
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl From<membership::Message> for Frame {
    fn from(m: membership::Message) -> Self {
        use membership::Message as M;
        match m {
            M::Join => Frame::Join,
            M::ForwardJoin { peer, ttl } => Frame::ForwardJoin { peer, ttl },
            M::Neighbor { high } => Frame::Neighbor { high },
            M::Disconnect { alive } => Frame::Disconnect { alive },
            M::Shuffle { origin, peers, ttl } => Frame::Shuffle { origin, peers, ttl },
            M::ShuffleReply { peers } => Frame::ShuffleReply { peers },
            M::Peers { peers } => Frame::Peers { peers },
        }
    }
}

impl From<Control> for Frame {
    fn from(c: Control) -> Self {
        match c {
            Control::IHave(ids) => Frame::IHave { ids },
            Control::Graft(ids) => Frame::Graft { ids },
            Control::Prune => Frame::Prune,
            Control::Beacon {
                root,
                term,
                seq,
                address,
            } => Frame::Beacon {
                root,
                term,
                seq,
                address,
            },
            Control::Depth {
                root,
                term,
                seq,
                held,
                below,
            } => Frame::Depth {
                root,
                term,
                seq,
                held,
                below,
            },
            Control::Handover { term, reach, back } => Frame::Handover { term, reach, back },
        }
    }
}

/// What part of the protocol a decoded frame is for.
pub enum Part {
    Membership(membership::Message),
    Broadcast(Control),
    Other(Frame),
}

impl Frame {
    /// Sorts a frame by the part of the protocol that handles it.
    pub fn part(self) -> Part {
        use membership::Message as M;
        match self {
            Frame::Join => Part::Membership(M::Join),
            Frame::ForwardJoin { peer, ttl } => Part::Membership(M::ForwardJoin { peer, ttl }),
            Frame::Neighbor { high } => Part::Membership(M::Neighbor { high }),
            Frame::Disconnect { alive } => Part::Membership(M::Disconnect { alive }),
            Frame::Shuffle { origin, peers, ttl } => {
                Part::Membership(M::Shuffle { origin, peers, ttl })
            }
            Frame::ShuffleReply { peers } => Part::Membership(M::ShuffleReply { peers }),
            Frame::Peers { peers } => Part::Membership(M::Peers { peers }),
            Frame::IHave { ids } => Part::Broadcast(Control::IHave(ids)),
            Frame::Graft { ids } => Part::Broadcast(Control::Graft(ids)),
            Frame::Prune => Part::Broadcast(Control::Prune),
            Frame::Beacon {
                root,
                term,
                seq,
                address,
            } => Part::Broadcast(Control::Beacon {
                root,
                term,
                seq,
                address,
            }),
            Frame::Depth {
                root,
                term,
                seq,
                held,
                below,
            } => Part::Broadcast(Control::Depth {
                root,
                term,
                seq,
                held,
                below,
            }),
            Frame::Handover { term, reach, back } => {
                Part::Broadcast(Control::Handover { term, reach, back })
            }
            other => Part::Other(other),
        }
    }

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
            Ok(Frame::Gossip { msg, .. }) => std::slice::from_ref(msg),
            Ok(Frame::Messages { messages, .. }) => messages,
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
        match self {
            Frame::Sockets { addresses } => addresses.len(),
            Frame::Hello(h) => h.addresses.len(),
            Frame::ForwardJoin { peer, .. } => records(std::slice::from_ref(peer)),
            Frame::Shuffle { origin, peers, .. } => {
                records(std::slice::from_ref(origin)) + records(peers)
            }
            Frame::ShuffleReply { peers } | Frame::Peers { peers } => records(peers),
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
            ids: Vec<(MsgId, u32)>,
        }
        #[derive(Deserialize)]
        struct Beacon {
            root: NodeId,
            #[serde(default)]
            term: u64,
            seq: u64,
            #[serde(default)]
            address: Option<Arc<str>>,
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
        Ok(match kind.as_str() {
            "MESSAGE" => Frame::Message {
                data: body::<Data>(&kind, text)?.data,
            },
            "SOCKETS" => Frame::Sockets {
                addresses: body::<Addresses>(&kind, text)?.addresses,
            },
            "HELLO" => Frame::Hello(body(&kind, text)?),
            "PROOF" => {
                #[derive(Deserialize)]
                struct Proof {
                    sig: Signature,
                }
                Frame::Proof {
                    sig: body::<Proof>(&kind, text)?.sig,
                }
            }
            "GOSSIP" => {
                let g: Gossip = body(&kind, text)?;
                Frame::Gossip {
                    msg: Message {
                        id: g.id,
                        author: g.author,
                        seq: g.seq,
                        timestamp: g.timestamp,
                        data: g.data,
                        sig: g.sig,
                    },
                    hops: g.hops,
                }
            }
            "IHAVE" => Frame::IHave {
                ids: body::<Have>(&kind, text)?.ids,
            },
            "GRAFT" => Frame::Graft {
                ids: body::<Ids>(&kind, text)?.ids,
            },
            "PRUNE" => Frame::Prune,
            "BEACON" => {
                let b: Beacon = body(&kind, text)?;
                Frame::Beacon {
                    root: b.root,
                    term: b.term,
                    seq: b.seq,
                    address: b.address,
                }
            }
            "DEPTH" => {
                let d: Depth = body(&kind, text)?;
                Frame::Depth {
                    root: d.root,
                    term: d.term,
                    seq: d.seq,
                    held: d.held,
                    below: d.below,
                }
            }
            "HANDOVER" => {
                let h: Handover = body(&kind, text)?;
                Frame::Handover {
                    term: h.term,
                    reach: h.reach,
                    back: h.back,
                }
            }
            "JOIN" => Frame::Join,
            "FORWARD_JOIN" => {
                let f: ForwardJoin = body(&kind, text)?;
                Frame::ForwardJoin {
                    peer: f.peer,
                    ttl: f.ttl,
                }
            }
            "NEIGHBOR" => Frame::Neighbor {
                high: body::<Neighbor>(&kind, text)?.high,
            },
            "DISCONNECT" => Frame::Disconnect {
                alive: body::<Disconnect>(&kind, text)?.alive,
            },
            "SHUFFLE" => {
                let s: Shuffle = body(&kind, text)?;
                Frame::Shuffle {
                    origin: s.origin,
                    peers: s.peers,
                    ttl: s.ttl,
                }
            }
            "SHUFFLE_REPLY" => Frame::ShuffleReply {
                peers: body::<Peers>(&kind, text)?.peers,
            },
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
            "MAP" => Frame::Map {
                records: body::<Records>(&kind, text)?.records,
            },
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
                Frame::Error {
                    reason: e.reason,
                    id: e.id,
                    retry_after_ms: e.retry_after_ms,
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
    fn hearsay_frames_round_trip() {
        let id = NodeId::from_bytes([7; 16]);
        let record = PeerRecord {
            id,
            address: "ws://h:1".into(),
            aliases: vec!["ws://h:2".into()],
        };
        let key = crate::identity::Keypair::from_secret([7; 32]);
        let msg = Message::signed(&key, 1, 5, "x".into());
        let frames = [
            Frame::Hello(Hello {
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
            }),
            Frame::Gossip {
                msg: msg.clone(),
                hops: 4,
            },
            Frame::IHave {
                ids: vec![(msg.id, 3)],
            },
            Frame::Graft { ids: vec![msg.id] },
            Frame::Prune,
            Frame::Proof {
                sig: key.sign(b"y"),
            },
            Frame::Beacon {
                root: id,
                term: 2,
                seq: 3,
                address: Some("ws://example.org:3000".into()),
            },
            Frame::Depth {
                root: id,
                term: 2,
                seq: 3,
                held: 40,
                below: 120,
            },
            Frame::Handover {
                term: 2,
                reach: 150,
                back: true,
            },
            Frame::Join,
            Frame::ForwardJoin {
                peer: record.clone(),
                ttl: 6,
            },
            Frame::Neighbor { high: true },
            Frame::Disconnect { alive: false },
            Frame::Shuffle {
                origin: record.clone(),
                peers: vec![record.clone()],
                ttl: 2,
            },
            Frame::ShuffleReply {
                peers: vec![record.clone()],
            },
            Frame::Peers {
                peers: vec![record],
            },
            Frame::Ping { nonce: 9 },
            Frame::Pong { nonce: 9 },
            Frame::Ack { id: MsgId::v1("x") },
            Frame::Want { ids: vec![msg.id] },
            Frame::Messages {
                messages: vec![msg.clone()],
                done: true,
            },
            Frame::Map { records: vec![] },
            Frame::Error {
                reason: "rate limited".to_owned(),
                id: Some(msg.id),
                retry_after_ms: Some(200),
            },
        ];
        for f in frames {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        assert_eq!(
            Frame::encode_gossip(&msg, 4),
            Frame::Gossip { msg, hops: 4 }.encode()
        );
        assert_eq!(Frame::Prune.encode(), r#"{"type":"PRUNE"}"#);
    }

    #[test]
    fn a_checked_read_vouches_only_for_messages_whose_signatures_verify() {
        let key = crate::identity::Keypair::from_secret([7; 32]);
        let good = Message::signed(&key, 1, 5, "good".into());
        let mut forged = Message::signed(&key, 2, 5, "forged".into());
        forged.sig = good.sig;
        let frame = Frame::Messages {
            messages: vec![good.clone(), forged],
            done: true,
        }
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
        assert!(matches!(Frame::decode(&text).unwrap(), Frame::Hello(h) if h.version == 4));
        // An older peer's HELLO (no key) is still read, so it can be told the versions.
        let old = format!(
            r#"{{"type":"HELLO","protocol":"hearsay","version":3,"id":"{}","kind":"node"}}"#,
            "0a".repeat(16)
        );
        assert!(matches!(Frame::decode(&old).unwrap(), Frame::Hello(h) if h.version == 3));
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
