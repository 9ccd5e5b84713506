//! Who wrote a message, and who is on the other end of a link: ed25519 keys.
//!
//! Every peer holds a [`Keypair`]. A node keeps one in its data folder for life; a page keeps
//! one in the browser's storage, shared by its tabs. A message's [`Author`] is the public key
//! of the peer that published it, and its `sig` signs the digest its id is cut from (see
//! [`crate::message`]), so nobody can write in another's name and a tampered copy is caught.
//! Seed (v1) texts have no author who could sign: they are [`Author::Seed`], unsigned, keyed
//! by their text alone, as the tutorial network has them.
//!
//! A peer's [`NodeId`] (what membership, broadcast and the map call it) comes from its key,
//! so the handshake can prove it: a node's id is the first half of its public key; a page's
//! is a hash of its key and a per-tab nonce, so two tabs of one browser (one person, one key)
//! are two peers.

use crate::id::{BadId, NodeId, hex_bytes};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};

/// A secret key and its public half.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// The key whose secret is these 32 bytes (from a key file, or from a random source).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&secret))
    }

    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, bytes: &[u8]) -> Signature {
        Signature(self.0.sign(bytes).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "Keypair({:?})", self.public())
    }
}

/// An ed25519 public key: 64 lower-case hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The id of the node that holds this key: the key's first 16 bytes, so a node's id is
    /// the start of its key for people too.
    pub fn node_id(&self) -> NodeId {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.0[..16]);
        NodeId::from_bytes(id)
    }

    /// The id of a page that holds this key, in the tab that drew `tab`.
    pub fn page_id(&self, tab: &Tab) -> NodeId {
        let mut h = Sha256::new();
        h.update(b"hearsay/page-id\0");
        h.update(self.0);
        h.update(tab.0);
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        NodeId::from_bytes(id)
    }

    /// A short form for people to compare: the key's first 8 bytes in four groups.
    pub fn fingerprint(&self) -> String {
        let hex = hex::encode(&self.0[..8]);
        let groups: Vec<&str> = (0..4).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        groups.join("-")
    }

    /// Whether `sig` is this key's signature of `bytes`. Strict: no malleable or
    /// small-order forms. A signature this process found good lately is not checked again
    /// (see [`Verified`]).
    pub fn verify(&self, bytes: &[u8], sig: &Signature) -> bool {
        let seen = Verified::digest(self, bytes, sig);
        if Verified::holds(&seen) {
            return true;
        }
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let good = key
            .verify_strict(bytes, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_ok();
        if good {
            Verified::insert(seen);
        }
        good
    }
}

/// Signatures this process found good lately, by a SHA-256 of key, signature and what was
/// signed (so nothing else can pass for one). Where many peers run in one process (`hearsay
/// sim`, `hearsay demo`) each signed record and beacon reaches all of them, and one
/// verification (about 50 µs) serves them all: a 1,000-node simulation took 161 s with every
/// map record checked by every node, and 35 s before records were signed. A peer alone in its
/// process pays a hash per check. Two generations of [`VERIFIED_KEPT`] each: when the newer
/// fills, the older is let go (about 1 MB at most).
struct Verified {
    newer: HashSet<[u8; 32]>,
    older: HashSet<[u8; 32]>,
}

/// Signatures kept per generation of [`Verified`].
pub const VERIFIED_KEPT: usize = 8_192;

static VERIFIED: LazyLock<Mutex<Verified>> = LazyLock::new(|| {
    Mutex::new(Verified {
        newer: HashSet::new(),
        older: HashSet::new(),
    })
});

impl Verified {
    fn digest(key: &PublicKey, bytes: &[u8], sig: &Signature) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(key.0);
        h.update(sig.0);
        h.update(bytes);
        h.finalize().into()
    }

    fn holds(seen: &[u8; 32]) -> bool {
        let v = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
        v.newer.contains(seen) || v.older.contains(seen)
    }

    fn insert(seen: [u8; 32]) {
        let mut v = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
        if v.newer.len() >= VERIFIED_KEPT {
            v.older = std::mem::take(&mut v.newer);
        }
        v.newer.insert(seen);
    }
}

/// An ed25519 signature: 128 lower-case hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

/// The nonce a page's tab draws at start: its id is derived from it and the shared key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tab([u8; 16]);

/// A fresh random value a peer sends in its `HELLO`, for the other end to sign.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Nonce([u8; 16]);

/// Which end of a link signs: the ends sign under different tags, so what one end signed
/// can never be passed off as the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Acceptor,
    Dialer,
}

/// What a peer signs to prove it holds its key: its role, the other end's nonce, and the
/// id it believes the other end has (so a proof made for one peer is worth nothing to
/// another). Without TLS to bind it to, a relay in the middle could still pass a whole
/// handshake along; it could not sign messages.
pub fn handshake_proof(role: Role, nonce: &Nonce, verifier: NodeId) -> Vec<u8> {
    let tag: &[u8] = match role {
        Role::Acceptor => b"hearsay/hello/v4/acceptor\0",
        Role::Dialer => b"hearsay/hello/v4/dialer\0",
    };
    [tag, &nonce.0, verifier.as_bytes()].concat()
}

/// Who wrote a message: a key, or a seed (v1) node, which has none.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Author {
    Key(PublicKey),
    Seed,
}

/// How [`Author::Seed`] is written, on the wire and in the API.
pub const SEED_AUTHOR: &str = "v1";

impl Author {
    pub fn key(&self) -> Option<&PublicKey> {
        match self {
            Author::Key(k) => Some(k),
            Author::Seed => None,
        }
    }

    pub fn is_seed(&self) -> bool {
        matches!(self, Author::Seed)
    }
}

/// The key and id a peer runs under.
#[derive(Clone, Debug)]
pub struct Identity {
    pub key: Keypair,
    /// For a page: the nonce its tab drew, which its id is derived with.
    pub tab: Option<Tab>,
}

impl Identity {
    /// A node: its id is its key's.
    pub fn node(key: Keypair) -> Self {
        Self { key, tab: None }
    }

    /// A page in one tab.
    pub fn page(key: Keypair, tab: Tab) -> Self {
        Self {
            key,
            tab: Some(tab),
        }
    }

    pub fn id(&self) -> NodeId {
        id_of(&self.key.public(), self.tab.as_ref())
    }
}

/// The id a peer with `key` (and, for a page, `tab`) runs under.
pub fn id_of(key: &PublicKey, tab: Option<&Tab>) -> NodeId {
    match tab {
        None => key.node_id(),
        Some(tab) => key.page_id(tab),
    }
}

hex_bytes!(PublicKey, 32);
hex_bytes!(Signature, 64);
hex_bytes!(Tab, 16);
hex_bytes!(Nonce, 16);

impl fmt::Display for Author {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Author::Key(k) => k.fmt(f),
            Author::Seed => f.write_str(SEED_AUTHOR),
        }
    }
}

impl FromStr for Author {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, BadId> {
        if s == SEED_AUTHOR {
            Ok(Author::Seed)
        } else {
            s.parse().map(Author::Key)
        }
    }
}

impl Serialize for Author {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Author {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom("an author is a public key (64 hex digits) or \"v1\"")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_verify_and_ids_come_from_them() {
        let k = Keypair::from_secret([7; 32]);
        let p = k.public();
        let sig = k.sign(b"hello");
        assert!(p.verify(b"hello", &sig));
        assert!(!p.verify(b"hellO", &sig));
        let other = Keypair::from_secret([8; 32]).public();
        assert!(!other.verify(b"hello", &sig));

        assert_eq!(&p.node_id().as_bytes()[..], &p.as_bytes()[..16]);
        let (t1, t2) = (Tab::from_bytes([1; 16]), Tab::from_bytes([2; 16]));
        assert_ne!(p.page_id(&t1), p.page_id(&t2), "two tabs");
        assert_eq!(Identity::node(k.clone()).id(), p.node_id());
        assert_eq!(Identity::page(k, t1).id(), p.page_id(&t1));
        assert_eq!(p.fingerprint().len(), 19);
    }

    #[test]
    fn a_signature_found_good_once_vouches_for_nothing_else() {
        let (k, other) = (Keypair::from_secret([5; 32]), Keypair::from_secret([6; 32]));
        let sig = k.sign(b"record v1");
        for _ in 0..2 {
            // The second time from the cache, with the same answers.
            assert!(k.public().verify(b"record v1", &sig));
            assert!(!k.public().verify(b"record v2", &sig), "other bytes");
            assert!(!other.public().verify(b"record v1", &sig), "another key");
        }
        let mut bent = *sig.as_bytes();
        bent[0] ^= 1;
        assert!(
            !k.public()
                .verify(b"record v1", &Signature::from_bytes(bent))
        );
    }

    #[test]
    fn keys_signatures_and_authors_round_trip_as_hex() {
        let k = Keypair::from_secret([9; 32]);
        let p = k.public();
        let s = p.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<PublicKey>().unwrap(), p);
        let sig = k.sign(b"x");
        assert_eq!(sig.to_string().parse::<Signature>().unwrap(), sig);
        for a in [Author::Key(p), Author::Seed] {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Author>(&json).unwrap(), a);
        }
        assert!(serde_json::from_str::<Author>("\"nobody\"").is_err());
        assert!("AB".repeat(32).parse::<PublicKey>().is_err());
    }
}
