//! The handshake: how two hearsay peers learn who the other is, and prove it.
//!
//! The dialer sends `HELLO` at once, with a fresh nonce; the acceptor waits for the first
//! frame. A `HELLO` makes the peer a hearsay peer, a seed frame a seed (a seed speaks first
//! on every connection, either direction). The acceptor answers with its own `HELLO`,
//! carrying its signature over the dialer's nonce and the id the dialer claims
//! ([`crate::identity::handshake_proof`]); the dialer checks it and answers with `PROOF`, its
//! signature over the acceptor's nonce. Until that comes, the acceptor takes the connection
//! for nothing. A peer whose id does not derive from the key it offers, or that cannot sign
//! for it, is closed ([`CloseReason::BadIdentity`]).
//!
//! This module holds what the handshake needs of this peer's identity and checks what the
//! other end says; the engine, which owns the connections, carries the verdicts out.

use crate::close::CloseReason;
use crate::id::NodeId;
use crate::identity::{Keypair, Nonce, PublicKey, Role, Signature, Tab, handshake_proof, id_of};
use crate::peer::PeerKind;
use serde::{Deserialize, Serialize};

/// The version this build speaks. A peer of any other version is closed with a reason that
/// names both.
pub const PROTOCOL_VERSION: u32 = 9;
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
    /// A fresh value for the other end to sign (see [`Message::Proof`]).
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

/// The handshake's frames. (A `HELLO` is large beside a `PROOF`, but a frame lives only while
/// it is handled.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Message {
    #[serde(rename = "HELLO")]
    Hello(Hello),
    /// The dialer's answer to the acceptor's `HELLO`: its signature over the acceptor's
    /// nonce. Until it comes, the acceptor takes the connection for nothing.
    #[serde(rename = "PROOF")]
    Proof { sig: Signature },
}

/// This peer's side of every handshake: who it says it is, and its nonces.
pub struct Handshake {
    me: NodeId,
    key: Keypair,
    tab: Option<Tab>,
    kind: PeerKind,
    /// Drawn at start: a node keeps its id across restarts, and this tells its new process
    /// from the old one, whose links may linger half-open.
    run: Nonce,
    /// Nonces made so far (see [`Handshake::fresh_nonce`]).
    nonces: u64,
    addresses: Vec<String>,
    home: Option<NodeId>,
}

impl Handshake {
    pub fn new(
        key: Keypair,
        tab: Option<Tab>,
        kind: PeerKind,
        run: Nonce,
        addresses: Vec<String>,
        home: Option<NodeId>,
    ) -> Self {
        Self {
            me: id_of(&key.public(), tab.as_ref()),
            key,
            tab,
            kind,
            run,
            nonces: 0,
            addresses,
            home,
        }
    }

    /// A nonce for a handshake that no one can predict: a hash of our secret key, this run
    /// and a count (the engine's own random numbers are fast, not secret).
    pub fn fresh_nonce(&mut self) -> Nonce {
        use sha2::{Digest, Sha256};
        self.nonces = self.nonces.wrapping_add(1);
        let mut h = Sha256::new();
        h.update(b"hearsay/nonce\0");
        h.update(self.key.secret());
        h.update(self.run.as_bytes());
        h.update(self.nonces.to_be_bytes());
        let digest = h.finalize();
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&digest[..16]);
        Nonce::from_bytes(nonce)
    }

    /// Our `HELLO`, with our nonce; answering a dialer (its nonce and the id it claims), with
    /// our proof. `root` is the tree's root and term as we know them.
    pub fn hello(
        &self,
        nonce: Option<Nonce>,
        answering: Option<(Nonce, NodeId)>,
        root: Option<(NodeId, u64)>,
    ) -> Message {
        let proof = answering
            .map(|(theirs, id)| self.key.sign(&handshake_proof(Role::Acceptor, &theirs, id)));
        Message::Hello(Hello {
            protocol: PROTOCOL_NAME.to_owned(),
            version: PROTOCOL_VERSION,
            id: self.me,
            key: Some(self.key.public()),
            tab: self.tab,
            nonce,
            proof,
            run: Some(self.run),
            kind: self.kind,
            addresses: self.addresses.clone(),
            home: self.home,
            root: root.map(|(id, _)| id),
            term: root.map(|(_, term)| term),
        })
    }

    /// Whether `hello` is a hearsay peer of our version whose id derives from the key it
    /// offers (a page's with its tab, a node's without): the key, or why it is closed.
    pub fn check(&self, hello: &Hello) -> Result<PublicKey, CloseReason> {
        if hello.protocol != PROTOCOL_NAME {
            return Err(CloseReason::NotHearsay);
        }
        if hello.version != PROTOCOL_VERSION {
            return Err(CloseReason::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: hello.version,
            });
        }
        hello
            .key
            .filter(|k| id_of(k, hello.tab.as_ref()) == hello.id)
            .filter(|_| (hello.kind == PeerKind::Node) == hello.tab.is_none())
            .ok_or(CloseReason::BadIdentity)
    }

    /// As the dialer: whether the acceptor's `HELLO` proves it holds `key`, by its signature
    /// over our nonce `ours`; if so, our `PROOF` over its nonce `theirs`.
    pub fn answer(
        &self,
        key: &PublicKey,
        hello: &Hello,
        ours: &Nonce,
        theirs: &Nonce,
    ) -> Option<Message> {
        let proven = hello
            .proof
            .is_some_and(|sig| key.verify(&handshake_proof(Role::Acceptor, ours, self.me), &sig));
        proven.then(|| Message::Proof {
            sig: self
                .key
                .sign(&handshake_proof(Role::Dialer, theirs, hello.id)),
        })
    }

    /// As the acceptor: whether the dialer's `PROOF` is its signature over our nonce.
    pub fn proven(&self, key: &PublicKey, ours: &Nonce, sig: &Signature) -> bool {
        key.verify(&handshake_proof(Role::Dialer, ours, self.me), sig)
    }
}
