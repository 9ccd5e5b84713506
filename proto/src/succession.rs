//! Who the tree's root is, and who may take it: the root's signed beacon, and the rules a
//! beacon must pass before a peer follows its root ([`judge`]).
//!
//! Ids cost nothing (a key is a random number), so no order over ids or self-declared terms
//! can elect a root: an attacker signs its own beacon with whatever id and term wins. Here a
//! root, once this peer follows it, is never displaced by another while it is live. The root
//! changes only by:
//!
//! - *Its own word.* Every beacon names the root's *heir* (a child it drew, or the child the
//!   walk to the centre hands the root to, or the node that publishes nearly everything), and
//!   says whether the heir takes the root now (`handover`). Followers take the heir's beacons
//!   from then on. A root that falls silent is followed by its heir after
//!   [`HEIR_PATIENCE`] of the root timeout: only the root could have named it.
//! - *Silence with no heir.* When neither the root nor its heir is heard for the root timeout
//!   and a beacon interval more, a beacon in a later term is taken (*fallback*), the lowest id
//!   first for its first [`SETTLE_ROUNDS`] rounds (as at a network's birth), then kept. A
//!   fallback root yields to the lost root's heir whenever that is heard: the heir's claim is
//!   the old root's signature, the fallback's only its id.
//! - *A cut healing.* Every peer remembers the root it lost to silence. If that root's next
//!   round comes after all (the cut healed, and its side kept it), the peer follows it again:
//!   only that root can sign it, so which part yields is decided by which one lost its root,
//!   and nobody can grind for it. The peer that took over also dials the old root (see
//!   [`crate::tree::Out::RootLost`]); if another root's beacons come back over that link (the
//!   old root's side has moved on to another), it names that root heir and hands over. Either
//!   way the part follows within one round.
//!
//! A peer that follows no root takes the first it hears; a node that is its own root and
//! has nobody following it takes any other. A root heard fewer than [`SETTLE_ROUNDS`] rounds
//! (a network forming) still gives way in the old order: to a later term (by one at most) or,
//! in the same term, a lower id.

use crate::Millis;
use crate::centre::Round;
use crate::id::NodeId;
use crate::identity::{Keypair, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Rounds of one root a peer hears before that root is settled, no longer displaced by a
/// lower id. Three rounds (15 s by default) let a network that starts at once agree on its
/// lowest id, as before, and leave no window after that.
pub const SETTLE_ROUNDS: u32 = 3;

/// The share of the root timeout after which a silent root's named heir is followed. Less
/// than the whole, so a peer that heard the root's last round a little after the heir did
/// still takes the heir's first beacon.
pub const HEIR_PATIENCE: f64 = 2.0 / 3.0;

/// How far past the lost root's term a fallback root's term may be. Terms only count
/// successions now, so a higher one wins nothing; this keeps one forged term from using up
/// the range (2^32 successions of a network is beyond any lifetime).
pub const MAX_TERM_STEP: u64 = 1 << 32;

/// The longest root address a beacon may carry, as for a map record: every follower passes
/// the root's beacon over every link each round, so a root's long address would cost the
/// whole network.
pub const MAX_BEACON_ADDRESS: usize = 512;

/// A root's beacon, signed by the root: `key` is the root's (its id is the key's first
/// half), `term` counts the root's successions, `seq` its rounds in the term. Relays pass it
/// on unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub key: PublicKey,
    #[serde(default)]
    pub term: u64,
    pub seq: u64,
    /// How the root is dialed (so a part that stops hearing it can look for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Arc<str>>,
    /// Who takes the root after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heir: Option<NodeId>,
    /// The heir takes the root now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handover: bool,
    pub sig: Signature,
    /// Links the copy came over, counted by each relay (not signed: it only keeps parents
    /// from closing a cycle, see [`crate::tree`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hops: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Beacon {
    /// Round `seq` of `key`'s root in `term`, signed.
    pub fn signed(
        key: &Keypair,
        term: u64,
        seq: u64,
        address: Option<Arc<str>>,
        heir: Option<NodeId>,
        handover: bool,
    ) -> Self {
        let mut b = Self {
            key: key.public(),
            term,
            seq,
            address,
            heir,
            handover,
            sig: Signature::from_bytes([0; 64]),
            hops: 0,
        };
        b.sig = key.sign(&b.digest());
        b
    }

    pub fn root(&self) -> NodeId {
        self.key.node_id()
    }

    pub fn round(&self) -> Round {
        (self.root(), self.term, self.seq)
    }

    /// Whether the root signed exactly this.
    pub fn verify(&self) -> bool {
        self.key.verify(&self.digest(), &self.sig)
    }

    /// What the root signs: every field but the signature and the hop count, under a tag of
    /// its own.
    fn digest(&self) -> Vec<u8> {
        let address = self.address.as_deref().unwrap_or("");
        let heir = self.heir.map(|h| *h.as_bytes()).unwrap_or_default();
        [
            b"hearsay/beacon/v1\0".as_slice(),
            self.key.as_bytes(),
            &self.term.to_be_bytes(),
            &self.seq.to_be_bytes(),
            &[u8::from(self.heir.is_some()), u8::from(self.handover)],
            &heir,
            &(address.len() as u64).to_be_bytes(),
            address.as_bytes(),
        ]
        .concat()
    }
}

/// How this peer came to follow its root: what a beacon of another root must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The first root heard, or the lowest id while a network forms, or this peer's own at
    /// birth: settled after [`SETTLE_ROUNDS`].
    Formed,
    /// Named by the root before (its heir, by handover or after its silence): settled.
    Named,
    /// Taken after the root and its heir fell silent: yields to the lost root's heir.
    Fallback,
}

/// The root as this peer knows it.
#[derive(Debug, Clone)]
pub struct Root {
    /// Its latest round's beacon.
    pub beacon: Beacon,
    /// When that round was first heard (or sent, for our own).
    pub heard: Millis,
    /// Rounds heard of this root in this term.
    pub rounds: u32,
    pub basis: Basis,
}

impl Root {
    pub fn new(beacon: Beacon, basis: Basis, now: Millis) -> Self {
        Self {
            beacon,
            heard: now,
            rounds: 1,
            basis,
        }
    }

    pub fn id(&self) -> NodeId {
        self.beacon.root()
    }

    pub fn term(&self) -> u64 {
        self.beacon.term
    }

    pub fn round(&self) -> Round {
        self.beacon.round()
    }

    /// Whether a lower id may still displace it (see [`Basis`]).
    fn settled(&self, followed: bool) -> bool {
        match self.basis {
            Basis::Named => true,
            Basis::Formed | Basis::Fallback => self.rounds >= SETTLE_ROUNDS && followed,
        }
    }
}

/// The root this peer stopped hearing, when it (or the root it then followed) took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub root: NodeId,
    pub term: u64,
    /// Its last round heard.
    pub seq: u64,
    pub heir: Option<NodeId>,
}

impl Lost {
    pub fn of(root: &Root) -> Self {
        Self {
            root: root.id(),
            term: root.term(),
            seq: root.beacon.seq,
            heir: root.beacon.heir,
        }
    }
}

/// What a beacon is to this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first copy of the root's next round.
    Round,
    /// Another copy of the round in hand.
    Copy,
    /// A root to follow from now on, and on what basis.
    Follow(Basis),
    /// An older round, or a root that may not displace ours.
    Ignore,
}

/// The timing rules [`judge`] needs from the tree's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub root_timeout: Millis,
    pub beacon_interval: Millis,
}

impl Patience {
    /// How long the root is silent before its heir's beacons are taken.
    pub fn heir(&self) -> Millis {
        (self.root_timeout as f64 * HEIR_PATIENCE) as Millis
    }

    /// How long the root is silent before any later term is taken: the heir has had a
    /// round to be heard.
    pub fn fallback(&self, heir: bool) -> Millis {
        self.root_timeout + if heir { self.beacon_interval } else { 0 }
    }
}

/// What `beacon` (its signature checked by the caller) is to a peer that follows `root`
/// (none yet) and lost `lost` before; `followed` is false only for a peer that is its own
/// root and has no node reporting to it. Pure: the tree applies the verdict.
pub fn judge(
    root: Option<&Root>,
    lost: Option<&Lost>,
    followed: bool,
    beacon: &Beacon,
    patience: Patience,
    now: Millis,
) -> Verdict {
    if beacon
        .address
        .as_ref()
        .is_some_and(|a| a.len() > MAX_BEACON_ADDRESS)
    {
        return Verdict::Ignore;
    }
    let Some(r) = root else {
        return Verdict::Follow(Basis::Formed);
    };
    let id = beacon.root();
    // (Terms are a peer's claim: the next one may not exist.)
    let next_term = r.term().checked_add(1);
    if id == r.id() && beacon.term == r.term() {
        return match beacon.seq.cmp(&r.beacon.seq) {
            std::cmp::Ordering::Greater => Verdict::Round,
            std::cmp::Ordering::Equal => Verdict::Copy,
            std::cmp::Ordering::Less => Verdict::Ignore,
        };
    }
    let silent = now.saturating_sub(r.heard);
    let heir = r.beacon.heir;
    if heir == Some(id) && id != r.id() {
        // The root named it: now, or once the root falls silent, in the next term. (Not in
        // an earlier term: that is a copy of an old round of the heir's, come late, which
        // may hand back to a root that has moved on since; found at 1,000 nodes, where one
        // such copy split the tree in two for good.)
        let now_or_later = r.beacon.handover && beacon.term >= r.term();
        if now_or_later || (silent >= patience.heir() && Some(beacon.term) == next_term) {
            return Verdict::Follow(Basis::Named);
        }
    }
    if let Some(l) = lost {
        if l.root == id && beacon.term == l.term && beacon.seq > l.seq {
            // The root we lost, live after all (a cut healed, and its side kept it): only
            // it can sign its next round. Its part is the one that did not lose it.
            return Verdict::Follow(Basis::Named);
        }
        let after_lost = l.term.checked_add(1);
        if r.basis == Basis::Fallback && l.heir == Some(id) && Some(beacon.term) == after_lost {
            // The lost root's heir: its claim is the lost root's word.
            return Verdict::Follow(Basis::Named);
        }
    }
    let step = beacon.term.saturating_sub(r.term());
    if silent >= patience.fallback(heir.is_some()) && (1..=MAX_TERM_STEP).contains(&step) {
        return Verdict::Follow(Basis::Fallback);
    }
    let lone = match r.basis {
        Basis::Formed => true,
        // (A fallback's first rounds go out before anyone can have reported.)
        Basis::Fallback => r.rounds >= 2,
        Basis::Named => false,
    };
    if !followed && lone {
        // Our own root, born with us or taken alone, and nobody follows it: nothing to keep.
        return Verdict::Follow(r.basis);
    }
    let formed = matches!(r.basis, Basis::Formed | Basis::Fallback);
    if formed && !r.settled(followed) {
        // A network forming: a later term by one, or the lowest id in the same term.
        let better = (beacon.term, std::cmp::Reverse(id)) > (r.term(), std::cmp::Reverse(r.id()));
        if better && step <= 1 {
            return Verdict::Follow(r.basis);
        }
    }
    Verdict::Ignore
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_secret([n; 32])
    }

    fn beacon(n: u8, term: u64, seq: u64) -> Beacon {
        Beacon::signed(&key(n), term, seq, None, None, false)
    }

    const P: Patience = Patience {
        root_timeout: 15_000,
        beacon_interval: 5_000,
    };

    fn named(b: Beacon, heir: u8, handover: bool) -> Beacon {
        let k = key(match b.key {
            k if k == key(1).public() => 1,
            _ => 2,
        });
        let heir = Some(key(heir).public().node_id());
        Beacon::signed(&k, b.term, b.seq, b.address, heir, handover)
    }

    #[test]
    fn a_signature_covers_every_field() {
        let b = Beacon::signed(&key(1), 2, 3, Some("ws://a:1".into()), None, false);
        assert!(b.verify());
        let mut forged = b.clone();
        forged.term = 9;
        assert!(!forged.verify());
        let mut forged = b.clone();
        forged.address = Some("ws://evil:1".into());
        assert!(!forged.verify());
        let mut forged = b.clone();
        forged.heir = Some(key(3).public().node_id());
        assert!(!forged.verify());
        let mut forged = b;
        forged.key = key(2).public();
        assert!(!forged.verify());
        let json = serde_json::to_string(&beacon(4, 0, 1)).unwrap();
        assert_eq!(
            serde_json::from_str::<Beacon>(&json).unwrap(),
            beacon(4, 0, 1)
        );
    }

    /// A settled root is kept against any other root's beacon, whatever its term or id,
    /// until it is silent; its named heir is taken on its word.
    #[test]
    fn a_live_root_is_displaced_only_by_its_own_word() {
        let mut r = Root::new(beacon(1, 5, 10), Basis::Named, 0);
        for attacker in [beacon(2, u64::MAX, 1), beacon(2, 6, 1), beacon(2, 5, 99)] {
            assert_eq!(
                judge(Some(&r), None, true, &attacker, P, 1_000),
                Verdict::Ignore
            );
        }
        assert_eq!(
            judge(Some(&r), None, true, &beacon(1, 5, 11), P, 1),
            Verdict::Round
        );
        assert_eq!(
            judge(Some(&r), None, true, &beacon(1, 5, 10), P, 1),
            Verdict::Copy
        );
        assert_eq!(
            judge(Some(&r), None, true, &beacon(1, 5, 9), P, 1),
            Verdict::Ignore
        );
        // Named heir, handing over now: a later term, not an old round of its own.
        r.beacon = named(beacon(1, 5, 11), 2, true);
        let heir = beacon(2, 6, 1);
        let follow = Verdict::Follow(Basis::Named);
        assert_eq!(judge(Some(&r), None, true, &heir, P, 1), follow);
        let stale = beacon(2, 4, 9);
        assert_eq!(judge(Some(&r), None, true, &stale, P, 1), Verdict::Ignore);
        // Named heir, not handing over: only after the root's silence, and in the next term.
        r.beacon = named(beacon(1, 5, 11), 2, false);
        assert_eq!(judge(Some(&r), None, true, &heir, P, 1), Verdict::Ignore);
        assert_eq!(judge(Some(&r), None, true, &heir, P, P.heir()), follow);
        let far = beacon(2, 9, 1);
        assert_eq!(
            judge(Some(&r), None, true, &far, P, P.heir()),
            Verdict::Ignore
        );
        // Silent with its heir silent too: a later term, not a forged far one.
        let late = P.fallback(true);
        let any = beacon(3, 6, 1);
        let fallback = Verdict::Follow(Basis::Fallback);
        assert_eq!(
            judge(Some(&r), None, true, &any, P, late - 1),
            Verdict::Ignore
        );
        assert_eq!(judge(Some(&r), None, true, &any, P, late), fallback);
        let forged = beacon(3, u64::MAX, 1);
        assert_eq!(
            judge(Some(&r), None, true, &forged, P, late),
            Verdict::Ignore
        );
        // A root in the last term there is, silent: its heir has no next term to take, and
        // nothing overflows.
        let mut last = Root::new(beacon(1, u64::MAX, 1), Basis::Named, 0);
        last.beacon = named(beacon(1, u64::MAX, 1), 2, false);
        let heir_beacon = beacon(2, u64::MAX, 2);
        assert_eq!(
            judge(Some(&last), None, true, &heir_beacon, P, late),
            Verdict::Ignore
        );
        // An address longer than a map record's is not carried.
        let long = Beacon::signed(&key(2), 0, 1, Some("x".repeat(513).into()), None, false);
        assert_eq!(judge(None, None, false, &long, P, 1), Verdict::Ignore);
    }

    #[test]
    fn a_fallback_yields_to_the_lost_roots_heir_and_a_forming_network_to_the_lowest_id() {
        let lost = Lost {
            root: key(1).public().node_id(),
            term: 5,
            seq: 10,
            heir: Some(key(2).public().node_id()),
        };
        let r = Root::new(beacon(3, 6, 1), Basis::Fallback, 0);
        let heir = beacon(2, 6, 4);
        let follow = Verdict::Follow(Basis::Named);
        assert_eq!(judge(Some(&r), Some(&lost), true, &heir, P, 1), follow);
        // Not a root of the heir's id in some other term.
        let other = beacon(2, 9, 4);
        assert_eq!(
            judge(Some(&r), Some(&lost), true, &other, P, 1),
            Verdict::Ignore
        );
        // The lost root itself, live after all: its next round, not an old one.
        assert_eq!(
            judge(Some(&r), Some(&lost), true, &beacon(1, 5, 11), P, 1),
            follow
        );
        let old = beacon(1, 5, 10);
        assert_eq!(
            judge(Some(&r), Some(&lost), true, &old, P, 1),
            Verdict::Ignore
        );

        // Forming: the lower id of the same term wins, until settled.
        let (low, high) = if key(4).public().node_id() < key(5).public().node_id() {
            (4, 5)
        } else {
            (5, 4)
        };
        let mut r = Root::new(beacon(high, 0, 1), Basis::Formed, 0);
        let lower = beacon(low, 0, 1);
        let formed = Verdict::Follow(Basis::Formed);
        assert_eq!(judge(Some(&r), None, true, &lower, P, 1), formed);
        assert_eq!(
            judge(Some(&r), None, true, &beacon(low, 7, 1), P, 1),
            Verdict::Ignore
        );
        r.rounds = SETTLE_ROUNDS;
        assert_eq!(judge(Some(&r), None, true, &lower, P, 1), Verdict::Ignore);
        // A node alone, its own root, takes any other; so does a peer with no root yet.
        let any = beacon(high, 9, 1);
        assert_eq!(judge(Some(&r), None, false, &any, P, 1), formed);
        assert_eq!(judge(None, None, false, &any, P, 1), formed);
    }
}
