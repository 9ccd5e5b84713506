//! Links: every connection this peer has, from the dial (or the accept) to the close, as one
//! part of the engine. It owns the connection table ([`crate::conns`]), the addresses it dials
//! and their backoff ([`crate::book`]), each connection's deadlines ([`crate::keepalive`]) and
//! this peer's side of the handshake ([`crate::handshake`]), and it keeps the door: how many
//! connections of each kind one client address may hold, which peers are refused for a while
//! after misbehaving, how many bad frames a peer may send, how fast peers may make it dial.
//!
//! Connections move through `Dialing` (outbound, transport not yet open) → `Handshake` →
//! `Seed` or `Hearsay`. A dialer sends `HELLO` at once; an acceptor waits for the first frame:
//! `HELLO` makes the peer a hearsay peer (once it has proven its key: `Proving` until its
//! `PROOF` comes), a seed frame a seed. Silence never makes a seed: a seed speaks first on
//! every connection, either direction (its `SOCKETS`), and a peer whose thread is busy or
//! whose link is slow may answer late; a connection that says nothing valid for
//! `hello_timeout` is closed, saying so.
//!
//! Never two connections to one node: with links in both directions, the one dialed by the
//! lower id survives (both ends compute the same answer); with two in the same direction,
//! only the dialer acts, closing the newer one. One end may close its duplicate before the
//! survivor has finished its handshake at the other: that end's link then passes to the
//! survivor, and the node is not taken for gone meanwhile. A node that restarted (a new `run`
//! under the same key) replaces its old link at once. Each handshake is timed (from this
//! end's `HELLO` to the answer), for membership's choice of fast links.
//!
//! What the other parts must hear of is said as [`Out::Established`], [`Out::Lost`] and
//! [`Out::ConnectFailed`]; a frame on an established link is handed back to the engine
//! ([`Arrived`]) to route to its part.

use crate::Millis;
use crate::book::{AddressBook, AddressError, Backoff, LinkInfo};
use crate::close::CloseReason;
use crate::conns::{Conn, ConnId, Conns, Direction, Hearsay, State};
use crate::dedup::Recent;
use crate::group::Group;
use crate::handshake::{self, Handshake, Hello};
use crate::id::{MsgId, NodeId};
use crate::identity::{Nonce, PublicKey, Signature};
use crate::keepalive::{self, Keepalive};
use crate::limits::{KindCaps, Rate, TokenBucket};
use crate::part::Part;
use crate::peer::{PeerKind, PeerRecord, canonical_address};
use crate::seed;
use crate::status::{LinkStats, PeerInfo};
use crate::timers::earliest;
use crate::wire::{Frame, Inbound, InboundError, MAX_ADDRESSES};
use rand::rngs::SmallRng;
use std::collections::VecDeque;
use std::sync::Arc;

/// Peers remembered as refused at once (beyond, the first refused are forgotten).
const REFUSED_TRACKED: usize = 10_000;
/// How soon after its handshake a connection is first checked (keepalive, and whether
/// membership wants it); the checks then set their own next deadline.
const ESTABLISHED_CHECK: Millis = 1_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub keepalive: keepalive::Config,
    pub backoff: Backoff,
    /// Bad frames tolerated from one peer before it is closed.
    pub max_bad_frames: u32,
    /// How long a peer closed for misbehaving is refused when it comes back.
    pub refuse_for: Millis,
    /// Inbound connections of each kind one client address may hold.
    pub per_address: KindCaps,
    /// Dials to addresses learned from peers.
    pub dials: Rate,
}

/// What links ask of the driver and tell the other parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Send(ConnId, Arc<str>),
    /// A WebSocket ping (seeds only understand transport-level pings).
    TransportPing(ConnId),
    Dial(ConnId, String),
    /// The connection is closed, telling the peer why (and forgotten).
    Close(ConnId, CloseReason),
    /// A hearsay peer proved who it is on `conn`.
    Established(Established),
    /// The connection is gone. `disconnected`: the node it linked to, which has no other
    /// link now; `failed`: the node a dial was meant to reach, which it never did.
    Lost {
        conn: ConnId,
        disconnected: Option<NodeId>,
        failed: Option<NodeId>,
    },
    /// A connection membership asked for cannot be made (or reached another node).
    ConnectFailed(NodeId),
}

/// A peer whose identity is proven, as its handshake described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    pub conn: ConnId,
    pub id: NodeId,
    pub kind: PeerKind,
    /// How to dial it (nodes).
    pub record: Option<PeerRecord>,
    /// We dialed it because the operator (or, for a page, its home) asked.
    pub pinned: bool,
    pub outbound: bool,
    /// The address group the link came from, or we dialed (see `Conn::group`).
    pub group: Option<Group>,
    /// It replaced an earlier connection to the same node, which stays linked.
    pub replaced: bool,
    /// The root of its broadcast tree and the term it was elected in, as it says.
    pub root: Option<(NodeId, u64)>,
    /// The handshake's round trip, as this end timed it (from its `HELLO` to the answer).
    pub rtt: Option<Millis>,
}

/// A frame for the engine to route. (A hearsay frame is large beside a seed's, but it lives
/// only while it is handled.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Arrived {
    /// From a hearsay peer; the messages whose signatures the driver checked (see
    /// [`Inbound`]).
    Hearsay {
        from: NodeId,
        kind: PeerKind,
        frame: Frame,
        signed: Vec<MsgId>,
    },
    /// From a seed; `first` with the address we dialed it at, if we did, when this is the
    /// first frame the connection brought (which made it a seed's).
    Seed {
        message: seed::Message,
        first: Option<Option<String>>,
    },
}

pub struct Links {
    me: NodeId,
    config: Config,
    conns: Conns,
    handshake: Handshake,
    book: AddressBook,
    keepalive: Keepalive,
    /// Peers closed lately for misbehaving, with when they may come back.
    refused: Recent<NodeId, Millis>,
    dial_bucket: TokenBucket,
    /// Probe nonces and redial jitter.
    rng: SmallRng,
    stats: LinkStats,
    out: VecDeque<Out>,
}

impl Links {
    pub fn new(
        config: Config,
        handshake: Handshake,
        own: &[String],
        me: NodeId,
        rng: SmallRng,
        now: Millis,
    ) -> Self {
        Self {
            me,
            conns: Conns::default(),
            handshake,
            book: AddressBook::new(own, me, config.backoff.clone()),
            keepalive: Keepalive::new(config.keepalive.clone()),
            refused: Recent::new(REFUSED_TRACKED, config.refuse_for),
            dial_bucket: TokenBucket::new(config.dials, now),
            config,
            rng,
            stats: LinkStats::default(),
            out: VecDeque::new(),
        }
    }

    pub fn conns(&self) -> &Conns {
        &self.conns
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The connection to hearsay peer `node`, if there is one.
    pub fn to_node(&self, node: NodeId) -> Option<ConnId> {
        self.conns.to_node(node)
    }

    /// The node `conn` is the link to (not a second link to it, nor a seed's or a pending one).
    pub fn node_on(&self, conn: ConnId) -> Option<NodeId> {
        let node = self.conns.get(conn).and_then(Conn::node_id)?;
        (self.conns.to_node(node) == Some(conn)).then_some(node)
    }

    /// Connected (and handshaking) peers, in connection order; `roles` says of a hearsay
    /// peer whether it is a neighbour and whether its link is eager.
    pub fn peers(&self, roles: impl Fn(&NodeId) -> (bool, bool)) -> Vec<PeerInfo> {
        self.conns
            .iter()
            .filter_map(|(conn, c)| {
                let (neighbor, eager) = c.node_id().map_or((false, false), |id| roles(&id));
                PeerInfo::of(conn, c, neighbor, eager)
            })
            .collect()
    }

    /// Every address this peer dials and how its link stands.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.book.links(|id| self.conns.to_node(id).is_some())
    }

    /// The operator asked to connect to `address`: pinned, dialed now and redialed with
    /// backoff until it answers.
    pub fn add_peer(&mut self, address: &str, now: Millis) -> Result<String, AddressError> {
        let canonical = self.book.pin(address, now)?;
        self.dial_due(now);
        Ok(canonical)
    }

    /// The operator's pin on `address` is lifted (see [`AddressBook::unpin`]).
    pub fn unpin(&mut self, address: &str) -> bool {
        self.book.unpin(address)
    }

    /// A peer connected to us, from client address `from` if it is capped; `foreign` if a
    /// browser opened it for another site (it may not be a seed).
    pub fn accepted(
        &mut self,
        from: Option<String>,
        source: Option<Group>,
        foreign: bool,
        now: Millis,
    ) -> ConnId {
        let mut c = Conn::new(
            Direction::Inbound,
            None,
            State::Handshake { since: now },
            now,
        );
        c.from = from;
        c.source = source;
        c.foreign = foreign;
        c.nonce = self.handshake.fresh_nonce();
        let conn = self.conns.insert(c);
        self.keepalive.handshake_started(conn, now);
        conn
    }

    /// The address group the peer on `conn` counts under (see `Conn::group`).
    pub fn group_of(&self, conn: ConnId) -> Option<Group> {
        self.conns.get(conn).and_then(Conn::group)
    }

    /// A dial we asked for succeeded: say hello (`root`: the tree's, as we know it).
    pub fn opened(&mut self, conn: ConnId, root: Option<(NodeId, u64)>, now: Millis) {
        let nonce = self.handshake.fresh_nonce();
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if !matches!(c.state, State::Dialing) {
            return;
        }
        c.state = State::Handshake { since: now };
        c.connected_at = now;
        c.last_heard = now;
        c.nonce = nonce;
        self.keepalive.handshake_started(conn, now);
        self.send_hello(conn, None, root);
    }

    /// A dial we asked for failed, for the reason given (shown on status pages).
    pub fn dial_failed(&mut self, conn: ConnId, reason: &str, now: Millis) {
        let Some(c) = self.conns.remove(conn) else {
            return;
        };
        self.stats.dial_failures += 1;
        if let Some(address) = &c.dialed {
            self.book
                .dial_failed(address, conn, reason, now, &mut self.rng);
        }
        if let Some(node) = c.intended {
            self.out.push_back(Out::ConnectFailed(node));
        }
    }

    /// The connection closed (by the peer, or the transport failed), for this reason if any.
    pub fn closed(&mut self, conn: ConnId, reason: Option<&str>, now: Millis) {
        let text = match reason {
            Some(r) if !r.is_empty() => format!("closed: {r}"),
            _ => "connection lost".to_owned(),
        };
        let duplicate = reason.is_some_and(|r| r == CloseReason::DuplicateConnection.to_string());
        if duplicate {
            self.relink(conn);
        }
        self.forget(conn, None, &text, now);
    }

    /// The peer on `conn` closed it as a duplicate: it keeps another connection with us, which
    /// may not have finished its handshake here yet (two nodes that dial each other at once
    /// each keep the lower id's dial). That one takes the node's link over, so the other parts
    /// are not told the node left (membership took it for gone while the peer kept it as a
    /// neighbour: views went asymmetric). If it fails its handshake, the node is gone then.
    fn relink(&mut self, conn: ConnId) {
        let Some(node) = self.conns.get(conn).and_then(Conn::node_id) else {
            return;
        };
        if self.conns.to_node(node) != Some(conn) {
            return;
        }
        let next = self.conns.iter().find_map(|(id, c)| {
            let same = match &c.state {
                State::Proving { hello, .. } => hello.id == node,
                State::Handshake { .. } | State::Dialing => c.intended == Some(node),
                _ => false,
            };
            (id != conn && same).then_some(id)
        });
        if let Some(next) = next
            && let Some(c) = self.conns.get_mut(next)
        {
            c.relinks = Some(node);
            self.conns.unregister(node);
        }
    }

    /// We dialed the seed at `address` and hung up (see `seed`): its dial back is its link.
    pub fn seed_answered(&mut self, address: &str, now: Millis) {
        self.book.seed_answered(address, now);
    }

    /// A WebSocket pong arrived: the peer is alive.
    pub fn transport_pong(&mut self, conn: ConnId, now: Millis) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.last_heard = now;
            c.ping_sent = None;
        }
    }

    /// A keepalive frame from the peer on `conn` (a `PING` is answered).
    pub fn keepalive(&mut self, conn: ConnId, message: keepalive::Message, now: Millis) {
        self.keepalive.message(conn, message);
        self.drain_keepalive(now);
    }

    fn drain_keepalive(&mut self, now: Millis) {
        while let Some(out) = self.keepalive.poll() {
            match out {
                keepalive::Out::Send(conn, m) => {
                    let frame = Frame::from(m).encode().into();
                    self.out.push_back(Out::Send(conn, frame));
                }
                keepalive::Out::TransportPing(conn) => {
                    self.out.push_back(Out::TransportPing(conn));
                }
                keepalive::Out::Close(conn, reason) => self.close(conn, reason, now),
            }
        }
    }

    /// Membership wants a link to `peer` (dialed if there is none), then `then` sent on it.
    pub fn connect(&mut self, peer: &PeerRecord, then: Option<Arc<str>>, now: Millis) {
        if let Some(conn) = self.conns.to_node(peer.id) {
            if let Some(frame) = then {
                self.out.push_back(Out::Send(conn, frame));
            }
            return;
        }
        if self.book.is_self(&peer.address) {
            return self.out.push_back(Out::ConnectFailed(peer.id));
        }
        let conn = match self.book.dialing(&peer.address, Some(peer.id)) {
            Some(conn) => conn,
            None => {
                if self.dial_bucket.take(1.0, now).is_err() {
                    self.stats.dials_limited += 1;
                    return self.out.push_back(Out::ConnectFailed(peer.id));
                }
                self.dial(peer.address.clone(), Some(peer.id), now)
            }
        };
        if let (Some(frame), Some(c)) = (then, self.conns.get_mut(conn)) {
            c.queued.push(frame);
        }
    }

    /// A frame read off `conn`: what the handshake or the door makes of it, and the frame
    /// for the engine to route if it is for a part. `root`: the tree's, for our `HELLO`.
    pub fn inbound(
        &mut self,
        conn: ConnId,
        inbound: Inbound,
        root: Option<(NodeId, u64)>,
        now: Millis,
    ) -> Option<Arrived> {
        self.stats.bytes_in += inbound.len as u64;
        let c = self.conns.get_mut(conn)?;
        c.last_heard = now;
        c.ping_sent = None;
        let frame = match inbound.frame {
            Ok(frame) if frame.address_count() <= MAX_ADDRESSES => frame,
            bad => {
                let why = match bad {
                    Ok(_) => "too many addresses in one frame",
                    // A driver should refuse it at the transport already; the page cannot.
                    Err(InboundError::TooLarge) => "frame larger than the limit",
                    Err(InboundError::Undecodable) => "undecodable frame",
                };
                self.bad_frame(conn, why, now);
                return None;
            }
        };
        match (&c.state, frame) {
            (State::Hearsay(peer), frame) => Some(Arrived::Hearsay {
                from: peer.id,
                kind: peer.kind,
                frame,
                signed: inbound.signed,
            }),
            (State::Seed, Frame::Seed(message)) => Some(Arrived::Seed {
                message,
                first: None,
            }),
            (State::Seed, _) => {
                // A seed ignores frames it does not know; so do we, but we count them.
                self.bad_frame(conn, "unexpected frame from a v1 peer", now);
                None
            }
            (State::Handshake { .. }, Frame::Handshake(handshake::Message::Hello(hello))) => {
                self.on_hello(conn, hello, root, now);
                None
            }
            (State::Handshake { .. }, Frame::Seed(message)) => {
                let dialed = c.dialed.clone();
                self.start_seed(conn, now).then_some(Arrived::Seed {
                    message,
                    first: Some(dialed),
                })
            }
            (State::Handshake { .. }, _) => {
                self.close(conn, CloseReason::ExpectedHello, now);
                None
            }
            (State::Proving { .. }, Frame::Handshake(handshake::Message::Proof { sig })) => {
                self.on_proof(conn, sig, now);
                None
            }
            (State::Proving { .. }, _) => {
                self.close(conn, CloseReason::BadIdentity, now);
                None
            }
            (State::Dialing, _) => None,
        }
    }

    /// The peer on `conn` sent something no honest peer sends, for this reason: counted, and
    /// past [`Config::max_bad_frames`] the peer is closed (and a node or page refused for a
    /// while when it comes back; a seed has no id, it is only closed).
    pub fn bad_frame(&mut self, conn: ConnId, why: &str, now: Millis) {
        self.stats.bad_frames += 1;
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.bad_frames += 1;
        if c.bad_frames >= self.config.max_bad_frames {
            if let Some(node) = c.node_id() {
                self.refuse(node, now);
            }
            let reason = CloseReason::TooManyBadFrames {
                last: why.to_owned(),
            };
            self.close(conn, reason, now);
        }
    }

    /// `node` misbehaved: it is refused for a while when it comes back.
    pub fn refuse(&mut self, node: NodeId, now: Millis) {
        let until = now + self.config.refuse_for;
        self.refused.insert(node, until, now);
    }

    /// Closes `conn`, telling the peer why.
    pub fn close(&mut self, conn: ConnId, reason: CloseReason, now: Millis) {
        if self.conns.get(conn).is_none() {
            return;
        }
        if reason == CloseReason::BadIdentity {
            self.stats.bad_identities += 1;
        }
        let text = format!("we closed it: {reason}");
        self.out.push_back(Out::Close(conn, reason.clone()));
        self.forget(conn, Some(&reason), &text, now);
    }

    /// Bookkeeping after a connection is gone; the other parts are told ([`Out::Lost`]).
    fn forget(&mut self, conn: ConnId, reason: Option<&CloseReason>, text: &str, now: Millis) {
        let registered = self
            .conns
            .get(conn)
            .and_then(Conn::node_id)
            .is_some_and(|n| self.conns.to_node(n) == Some(conn));
        let Some(c) = self.conns.remove(conn) else {
            return;
        };
        self.book
            .closed(conn, c.dialed.as_deref(), reason, text, now, &mut self.rng);
        let node = c.node_id();
        // A connection that was to take a node's link over and never got through its
        // handshake leaves the node gone.
        let relinked = c.relinks.filter(|_| node.is_none());
        self.out.push_back(Out::Lost {
            conn,
            disconnected: node.filter(|_| registered).or(relinked),
            failed: c.intended.filter(|_| !registered && node.is_none()),
        });
    }

    fn dial(&mut self, address: String, intended: Option<NodeId>, now: Millis) -> ConnId {
        let mut c = Conn::new(
            Direction::Outbound,
            Some(address.clone()),
            State::Dialing,
            now,
        );
        c.intended = intended;
        let conn = self.conns.insert(c);
        self.book.dial_started(&address, conn, intended);
        self.stats.dials += 1;
        self.out.push_back(Out::Dial(conn, address));
        conn
    }

    /// Dials the pinned addresses that are due.
    fn dial_due(&mut self, now: Millis) {
        let conns = &self.conns;
        self.book
            .handle_timeout(now, &|id| conns.to_node(id).is_some());
        while let Some(address) = self.book.poll() {
            self.dial(address, None, now);
        }
    }

    // ----- the handshake -----

    /// Our `HELLO` on `conn`, with its nonce; answering a dialer, with our proof over its
    /// nonce and the id it claims.
    fn send_hello(
        &mut self,
        conn: ConnId,
        answering: Option<(Nonce, NodeId)>,
        root: Option<(NodeId, u64)>,
    ) {
        let nonce = self.conns.get(conn).map(|c| c.nonce);
        let hello = self.handshake.hello(nonce, answering, root);
        self.out
            .push_back(Out::Send(conn, Frame::from(hello).encode().into()));
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello, root: Option<(NodeId, u64)>, now: Millis) {
        let key = match self.handshake.check(&hello) {
            Ok(key) => key,
            Err(reason) => return self.close(conn, reason, now),
        };
        self.refused.expire(now);
        if let Some(&until) = self.refused.get(&hello.id) {
            self.stats.refused += 1;
            let seconds = until.saturating_sub(now).div_ceil(1_000);
            return self.close(conn, CloseReason::Refused { seconds }, now);
        }
        if self.over_address_cap(conn, Some(hello.kind), now) {
            return;
        }
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let (direction, ours) = (c.direction, c.nonce);
        // A dialer's round trip: from its `HELLO` to the answer.
        let sent = match c.state {
            State::Handshake { since } => Some(since),
            _ => None,
        };
        if hello.id == self.me {
            if let Some(address) = c.dialed.clone() {
                self.book.mark_self(&address, self.me);
            }
            return self.close(conn, CloseReason::ConnectedToSelf, now);
        }
        let Some(theirs) = hello.nonce else {
            return self.close(conn, CloseReason::BadIdentity, now);
        };
        match direction {
            Direction::Inbound => {
                // Answer with our proof, then wait for the dialer's before taking it for
                // the node it says it is.
                self.send_hello(conn, Some((theirs, hello.id)), root);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.state = State::Proving {
                        since: now,
                        hello: Box::new(hello),
                        key,
                    };
                }
                self.keepalive.handshake_started(conn, now);
            }
            Direction::Outbound => match self.handshake.answer(&key, &hello, &ours, &theirs) {
                Some(proof) => {
                    let proof = Frame::from(proof).encode().into();
                    self.out.push_back(Out::Send(conn, proof));
                    let rtt = sent.map(|t| now.saturating_sub(t));
                    self.establish(conn, hello, key, rtt, now);
                }
                None => self.close(conn, CloseReason::BadIdentity, now),
            },
        }
    }

    /// The dialer's proof: it holds the key its `HELLO` named.
    fn on_proof(&mut self, conn: ConnId, sig: Signature, now: Millis) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let State::Proving { key, since, .. } = &c.state else {
            return;
        };
        // An acceptor's round trip: from its `HELLO` (answering the dialer's) to the proof.
        let (key, rtt) = (*key, now.saturating_sub(*since));
        if !self.handshake.proven(&key, &c.nonce, &sig) {
            return self.close(conn, CloseReason::BadIdentity, now);
        }
        let since = c.connected_at;
        let State::Proving { hello, .. } =
            std::mem::replace(&mut c.state, State::Handshake { since })
        else {
            return;
        };
        self.establish(conn, *hello, key, Some(rtt), now);
    }

    /// A peer whose identity is proven becomes the node (or page) it says it is.
    fn establish(
        &mut self,
        conn: ConnId,
        hello: Hello,
        key: PublicKey,
        rtt: Option<Millis>,
        now: Millis,
    ) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let (direction, dialed, intended) = (c.direction, c.dialed.clone(), c.intended);
        // Taking over a node's link the peer closed as our duplicate (see `relink`): the
        // node stays linked; if another node answered here, the one it was to take over is
        // gone.
        let relinks = c.relinks;
        if let Some(gone) = relinks.filter(|&n| n != hello.id) {
            self.out.push_back(Out::Lost {
                conn,
                disconnected: Some(gone),
                failed: None,
            });
        }
        let addresses: Vec<String> = if hello.kind == PeerKind::Browser {
            Vec::new()
        } else {
            hello
                .addresses
                .iter()
                .filter_map(|a| canonical_address(a))
                .collect()
        };
        let mut replaced = relinks == Some(hello.id);
        let mut second = false;
        if let Some(other) = self.conns.to_node(hello.id).filter(|&o| o != conn)
            && let Some(old) = self
                .conns
                .get(other)
                .and_then(Conn::hearsay)
                .and_then(|h| h.run)
            && hello.run.is_some_and(|run| run != old)
        {
            // The same node in a new process (its key is kept across restarts): the old link
            // is its previous run's, dead even if no close ever came.
            self.close(other, CloseReason::PeerRestarted, now);
        }
        if let Some(other) = self.conns.to_node(hello.id).filter(|&o| o != conn) {
            let other_dir = self.conns.get(other).map(|c| c.direction);
            let drop_new = match (direction, other_dir) {
                (_, None) => false,
                (Direction::Outbound, Some(Direction::Outbound)) => true,
                (Direction::Inbound, Some(Direction::Inbound)) => false,
                (Direction::Outbound, Some(Direction::Inbound)) => self.me > hello.id,
                (Direction::Inbound, Some(Direction::Outbound)) => self.me < hello.id,
            };
            if drop_new {
                // (An inbound one was answered already, so the dialer learns who we are
                // and stops redialing.) A pinned address we dialed is that node's: the book
                // learns it, so it is revisited, not counted as failing. (Membership still
                // hears of a failed dial and repairs from elsewhere: measured at 1,000 nodes,
                // keeping its request pending instead lengthens the tree, p99 280 ms -> 1.6 s.)
                if dialed.as_deref().is_some_and(|a| self.book.is_pinned(a)) {
                    self.book
                        .established(conn, dialed.as_deref(), hello.id, &[]);
                }
                // What we meant to send on this connection goes on the surviving one.
                let queued = self.conns.take_queued(conn);
                self.close(conn, CloseReason::DuplicateConnection, now);
                for frame in queued {
                    self.out.push_back(Out::Send(other, frame));
                }
                return;
            } else if Some(direction) != other_dir {
                // The surviving connection takes over what the other one had queued.
                let queued = self.conns.take_queued(other);
                if let Some(c) = self.conns.get_mut(conn) {
                    c.queued.extend(queued);
                }
                // The node stays linked, over this connection: the other parts are not told
                // it left.
                self.conns.unregister(hello.id);
                replaced = true;
                self.close(other, CloseReason::DuplicateConnection, now);
            } else {
                second = true;
            }
        }

        let record = record_of(hello.id, &addresses);
        self.book
            .established(conn, dialed.as_deref(), hello.id, &addresses);
        let peer = Hearsay {
            id: hello.id,
            key,
            run: hello.run,
            kind: hello.kind,
            record: record.clone(),
            home: hello.home,
        };
        self.conns.established(conn, peer, !second);
        for frame in self.conns.take_queued(conn) {
            self.out.push_back(Out::Send(conn, frame));
        }
        // Keepalive and the transient check start now, not at the handshake's deadline.
        self.keepalive.check_at(conn, now + ESTABLISHED_CHECK);
        if second {
            // The node dialed us twice; its dialer closes the newer connection.
            return;
        }
        if let Some(intended) = intended
            && intended != hello.id
        {
            // The address now belongs to another node (another key in that folder, or
            // another node on that port).
            self.out.push_back(Out::ConnectFailed(intended));
        }
        self.out.push_back(Out::Established(Established {
            conn,
            id: hello.id,
            kind: hello.kind,
            record,
            pinned: dialed.as_deref().is_some_and(|a| self.book.is_pinned(a)),
            outbound: direction == Direction::Outbound,
            group: self.group_of(conn),
            replaced,
            root: hello.root.zip(Some(hello.term.unwrap_or(0))),
            rtt,
        }));
    }

    /// The peer on `conn` is a seed (its first frame is a seed's); false if it was closed
    /// instead, its address holding as many seeds as it may.
    fn start_seed(&mut self, conn: ConnId, now: Millis) -> bool {
        if self.conns.get(conn).is_some_and(|c| c.foreign) {
            self.close(conn, CloseReason::SeedFromWebPage, now);
            return false;
        }
        if self.over_address_cap(conn, None, now) {
            return false;
        }
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        c.state = State::Seed;
        c.last_heard = now;
        true
    }

    /// Whether `conn`'s client address already holds as many connections of `kind` (`None`:
    /// a seed) as it may; if so, `conn` is closed, saying why.
    fn over_address_cap(&mut self, conn: ConnId, kind: Option<PeerKind>, now: Millis) -> bool {
        let caps = self.config.per_address;
        let (max, name) = match kind {
            Some(PeerKind::Node) => (caps.nodes, "node"),
            Some(PeerKind::Browser) => (caps.pages, "page"),
            None => (caps.seeds, "seed"),
        };
        if self.conns.held_from(conn, kind) < max {
            return false;
        }
        let reason = CloseReason::TooManyFromAddress { kind: name, max };
        self.close(conn, reason, now);
        true
    }
}

/// Links' deadlines: each connection's (keepalive) and the book's (pinned addresses due for
/// a dial). They read whether membership wants a node.
impl Part for Links {
    type Out = Out;
    type Context<'a> = &'a dyn Fn(NodeId) -> bool;

    fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        earliest([self.keepalive.poll_timeout(), self.book.poll_timeout()])
    }

    fn handle_timeout(&mut self, now: Millis, wants: &dyn Fn(NodeId) -> bool) {
        let due = |t: Option<Millis>| t.is_some_and(|t| t <= now);
        if due(self.keepalive.poll_timeout()) {
            let cx = keepalive::Context {
                conns: &mut self.conns,
                wants,
                rng: &mut self.rng,
            };
            self.keepalive.handle_timeout(now, cx);
            self.drain_keepalive(now);
        }
        if due(self.book.poll_timeout()) {
            self.dial_due(now);
        }
    }
}

/// How a node with these (canonical) addresses is dialed, if it can be.
pub fn record_of(id: NodeId, addresses: &[String]) -> Option<PeerRecord> {
    addresses.first().map(|address| PeerRecord {
        id,
        address: address.clone(),
        aliases: addresses[1..].to_vec(),
    })
}
