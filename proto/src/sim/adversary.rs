//! Adversaries in the simulator: hostile peers that do one attack from the start.
//!
//! An adversary is an ordinary [`crate::Engine`] (it keeps links, answers keepalives, follows
//! the tree), so it passes every check an honest peer does. The simulator then bends what it
//! sends: [`Adversary::outgoing`] drops or rewrites each frame its engine sends, and
//! [`Adversary::act`] adds frames of its own every [`PERIOD`], sent to every peer it is
//! linked to. Keys cost an adversary nothing, so it makes as many as the attack wants; its
//! addresses are what it cannot make: adversaries sit in a few address groups of their own
//! (see [`super::Sim::add_adversary`]).
//!
//! The attacks ([`Attack`]):
//! - `withhold`: relays nothing. Its engine's `GOSSIP`, `IHAVE` and `MESSAGES` are dropped,
//!   so a neighbour whose parent it is hears a message only from someone else.
//! - `beacon`: every period, a `BEACON` signed by a key ground for a low id, in a far term,
//!   a near one or term 0, naming itself heir and handing over; and every beacon it relays
//!   claims to have come straight from the root (`hops` 0, which is not signed).
//! - `eclipse`: every peer list it sends (`FORWARD_JOIN`, `SHUFFLE`, `SHUFFLE_REPLY`,
//!   `PEERS`) names adversaries only, and each adversary also joins [`ECLIPSE_DIALS`] honest
//!   nodes at the start, so honest views fill with adversaries wherever the caps allow.
//! - `spam`: from the first published message on, [`SPAM_PER_PERIOD`] messages every period,
//!   each signed by a fresh key (so no author's quota holds them), pushed to every peer.
//! - `amplify`: every period, to every peer, a `WANT` naming the newest message it holds
//!   [`MAX_WANT`] times and a `SYNC` asking for the whole history.

use crate::engine::Engine;
use crate::id::{MsgId, NodeId};
use crate::identity::Keypair;
use crate::message::Message;
use crate::peer::PeerRecord;
use crate::succession::Beacon;
use crate::sync::{MAX_WANT, Range, SyncFrame};
use crate::wire::Frame;
use crate::{Millis, membership, sync, tree};
use rand::Rng;
use rand::rngs::SmallRng;
use serde::Serialize;
use std::sync::Arc;

/// How often an adversary acts on its own ([`Adversary::act`]): about a beacon round's
/// tenth, so a forged round is always fresher than the honest one.
pub const PERIOD: Millis = 500;
/// Honest nodes each `eclipse` adversary joins at the start, beside its place in the topology.
pub const ECLIPSE_DIALS: usize = 6;
/// Messages each `spam` adversary pushes every period, each under a fresh key.
pub const SPAM_PER_PERIOD: usize = 1;
/// Keys an adversary tries for the lowest id it can find (`beacon`).
const GROUND_KEYS: usize = 256;

/// What the adversaries of a run do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attack {
    Withhold,
    Beacon,
    Eclipse,
    Spam,
    Amplify,
}

impl Attack {
    pub const ALL: [Attack; 5] = [
        Attack::Withhold,
        Attack::Beacon,
        Attack::Eclipse,
        Attack::Spam,
        Attack::Amplify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Withhold => "withhold",
            Attack::Beacon => "beacon",
            Attack::Eclipse => "eclipse",
            Attack::Spam => "spam",
            Attack::Amplify => "amplify",
        }
    }
}

impl std::fmt::Display for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Attack {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Attack::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!("unknown attack {s:?}: withhold, beacon, eclipse, spam or amplify")
            })
    }
}

/// One adversary's own state.
pub struct Adversary {
    pub attack: Attack,
    /// The key its forged beacons are signed with (`beacon`): the lowest id of
    /// [`GROUND_KEYS`] tried.
    ground: Keypair,
    /// Periods acted so far: the forged beacons' `seq`, and what varies between rounds.
    rounds: u64,
    /// From when it spams (`spam`; the simulator sets it at the first published message, so
    /// the warm-up does not fill every store).
    pub spam_from: Option<Millis>,
}

impl Adversary {
    pub fn new(attack: Attack, rng: &mut SmallRng) -> Self {
        let tries = if attack == Attack::Beacon {
            GROUND_KEYS
        } else {
            1
        };
        let ground = (0..tries)
            .map(|_| Keypair::from_secret(rng.random()))
            .min_by_key(|k| k.public().node_id())
            .expect("at least one key");
        Self {
            attack,
            ground,
            rounds: 0,
            spam_from: None,
        }
    }

    /// What becomes of a frame this adversary's engine sends: `None` drops it; otherwise the
    /// frame to send instead (the same one, unless the attack rewrites it). `roster`: every
    /// adversary, for the peer lists an eclipse sends.
    pub fn outgoing(
        &self,
        frame: Arc<str>,
        roster: &[PeerRecord],
        rng: &mut SmallRng,
    ) -> Option<Arc<str>> {
        let starts = |tag: &str| frame.starts_with(&format!(r#"{{"type":"{tag}""#));
        match self.attack {
            Attack::Withhold => {
                (!(starts("GOSSIP") || starts("IHAVE") || starts("MESSAGES"))).then_some(frame)
            }
            Attack::Beacon if starts("BEACON") => match Frame::decode(&frame) {
                Ok(Frame::Tree(tree::Message::Beacon(mut b))) if b.hops > 0 => {
                    b.hops = 0;
                    Some(Frame::from(tree::Message::Beacon(b)).encode().into())
                }
                _ => Some(frame),
            },
            Attack::Eclipse if !roster.is_empty() => {
                use membership::Message as M;
                let Ok(Frame::Membership(m)) = Frame::decode(&frame) else {
                    return Some(frame);
                };
                let mut pick = |n: usize| -> Vec<PeerRecord> {
                    (0..n.max(1))
                        .map(|_| roster[rng.random_range(0..roster.len())].clone())
                        .collect()
                };
                let bent = match m {
                    M::ForwardJoin { ttl, .. } => M::ForwardJoin {
                        peer: pick(1).remove(0),
                        ttl,
                    },
                    M::Shuffle { origin, peers, ttl } => M::Shuffle {
                        origin,
                        peers: pick(peers.len()),
                        ttl,
                    },
                    M::ShuffleReply { peers } => M::ShuffleReply {
                        peers: pick(peers.len()),
                    },
                    M::Peers { peers } => M::Peers {
                        peers: pick(peers.len()),
                    },
                    other => other,
                };
                Some(Frame::from(bent).encode().into())
            }
            _ => Some(frame),
        }
    }

    /// The frames this adversary sends to every peer it is linked to, this period.
    /// `engine` is its own; `newest` the newest message it holds, if any.
    pub fn act(
        &mut self,
        engine: &Engine,
        address: &str,
        newest: Option<MsgId>,
        now: Millis,
        rng: &mut SmallRng,
    ) -> Vec<Arc<str>> {
        self.rounds += 1;
        let mut frames: Vec<Arc<str>> = Vec::new();
        match self.attack {
            Attack::Withhold | Attack::Eclipse => {}
            Attack::Beacon => {
                // A near term (the one a fallback would take), a far one and term 0 in turn:
                // none of them may move a live root.
                let honest = engine.root_term().map_or(0, |(_, term)| term);
                let term = match self.rounds % 3 {
                    0 => honest.saturating_add(1),
                    1 => u64::MAX - self.rounds,
                    _ => 0,
                };
                let heir: NodeId = engine.id();
                let beacon = Beacon::signed(
                    &self.ground,
                    term,
                    self.rounds,
                    Some(address.into()),
                    Some(heir),
                    self.rounds.is_multiple_of(2),
                );
                frames.push(Frame::from(tree::Message::Beacon(beacon)).encode().into());
            }
            Attack::Spam => {
                if self.spam_from.is_some_and(|from| now >= from) {
                    for _ in 0..SPAM_PER_PERIOD {
                        let key = Keypair::from_secret(rng.random());
                        let msg =
                            Message::signed(&key, 1, now, format!("spam {}", rng.random::<u64>()));
                        frames.push(Frame::encode_gossip(&msg, 0).into());
                    }
                }
            }
            Attack::Amplify => {
                if let Some(id) = newest {
                    let want = sync::Message::Want {
                        ids: vec![id; MAX_WANT],
                    };
                    frames.push(Frame::from(want).encode().into());
                }
                let all = sync::Message::Sync(SyncFrame {
                    from: None,
                    ranges: vec![Range {
                        to: None,
                        fp: None,
                        ids: Some(Vec::new()),
                        have: None,
                    }],
                });
                frames.push(Frame::from(all).encode().into());
            }
        }
        frames
    }
}
