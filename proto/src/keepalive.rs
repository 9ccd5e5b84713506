//! Keepalive: each connection's deadlines. A connection that has not finished its
//! handshake in [`Config::hello_timeout`] is closed, saying so; a peer quiet for
//! [`Config::ping_interval`] is probed (`PING`, answered `PONG`; a seed only understands
//! WebSocket pings, which the driver sends) and closed after [`Config::idle_timeout`]; and a
//! link to a node that membership has no use for (it carried a request or a reply, or the
//! node left our view) is closed after [`Config::transient_idle`], however busy the other
//! end keeps it: closing is how the other end learns it is not our neighbour, should it
//! think it is.

use crate::Millis;
use crate::close::CloseReason;
use crate::conns::{ConnId, Conns, State};
use crate::id::NodeId;
use crate::part::Part;
use crate::peer::PeerKind;
use crate::timers::{Timers, earliest};
use rand::Rng;
use rand::rngs::SmallRng;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct Config {
    /// How long a connection may go without a `HELLO` (or a seed's first frame) before it is
    /// closed: long enough for a phone on a slow link, or a page whose thread is busy.
    pub hello_timeout: Millis,
    /// Ping a peer that has been quiet this long.
    pub ping_interval: Millis,
    /// Close a peer that has been quiet this long.
    pub idle_timeout: Millis,
    /// Whether the transport can send WebSocket pings to seed peers (a browser cannot).
    pub transport_ping: bool,
    /// Close a connection to a node that membership has no use for after this long.
    pub transient_idle: Millis,
}

/// Keepalive's frames.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type")]
pub enum Message {
    /// Keepalive probe; answered with a `PONG` carrying the same nonce.
    #[serde(rename = "PING")]
    Ping { nonce: u32 },
    #[serde(rename = "PONG")]
    Pong { nonce: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Send(ConnId, Message),
    /// Send a WebSocket ping (seeds only understand transport-level pings).
    TransportPing(ConnId),
    Close(ConnId, CloseReason),
}

/// What the checks read: the connections, whether membership wants a node, and the engine's
/// random numbers (for probe nonces).
pub struct Context<'a> {
    pub conns: &'a mut Conns,
    pub wants: &'a dyn Fn(NodeId) -> bool,
    pub rng: &'a mut SmallRng,
}

pub struct Keepalive {
    config: Config,
    timers: Timers<ConnId>,
    out: VecDeque<Out>,
}

impl Keepalive {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            timers: Timers::default(),
            out: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks `conn` at `at` (its handshake deadline, or its first check once established);
    /// the checks then set their own next deadline.
    pub fn check_at(&mut self, conn: ConnId, at: Millis) {
        self.timers.insert(at, conn);
    }

    /// Checks `conn` when its handshake is due to have finished.
    pub fn handshake_started(&mut self, conn: ConnId, now: Millis) {
        self.check_at(conn, now + self.config.hello_timeout);
    }

    /// A `PING` from the peer on `conn`: answered.
    pub fn message(&mut self, conn: ConnId, message: Message) {
        if let Message::Ping { nonce } = message {
            self.out.push_back(Out::Send(conn, Message::Pong { nonce }));
        }
    }

    fn check(&mut self, conn: ConnId, cx: &mut Context<'_>, now: Millis) {
        let closing = |o: &Out| matches!(o, Out::Close(c, _) if *c == conn);
        let Some(c) = cx
            .conns
            .get_mut(conn)
            .filter(|_| !self.out.iter().any(closing))
        else {
            return;
        };
        let timeout = self.config.hello_timeout;
        let next = match &c.state {
            State::Dialing => None,
            State::Handshake { since } | State::Proving { since, .. } => {
                if now >= since + timeout {
                    let reason = if matches!(c.state, State::Proving { .. }) {
                        CloseReason::BadIdentity
                    } else {
                        CloseReason::HandshakeTimeout
                    };
                    self.out.push_back(Out::Close(conn, reason));
                    return;
                }
                Some(since + timeout)
            }
            State::Seed | State::Hearsay(_) => {
                let idle = now.saturating_sub(c.last_heard);
                let hearsay = c.is_hearsay();
                if !hearsay && !self.config.transport_ping {
                    None
                } else if idle >= self.config.idle_timeout {
                    self.out
                        .push_back(Out::Close(conn, CloseReason::KeepaliveTimeout));
                    return;
                } else if idle >= self.config.ping_interval && c.ping_sent.is_none() {
                    let nonce: u32 = cx.rng.random();
                    c.ping_sent = Some(nonce);
                    self.out.push_back(if hearsay {
                        Out::Send(conn, Message::Ping { nonce })
                    } else {
                        Out::TransportPing(conn)
                    });
                    Some(now + self.config.idle_timeout - idle)
                } else if c.ping_sent.is_some() {
                    Some(c.last_heard + self.config.idle_timeout)
                } else {
                    Some(c.last_heard + self.config.ping_interval)
                }
            }
        };
        let mut next = next;
        let node = c
            .hearsay()
            .filter(|h| h.kind == PeerKind::Node)
            .map(|h| h.id);
        if let Some(node) = node {
            if (cx.wants)(node) {
                c.wanted = true;
                c.unwanted_since = None;
                // Look again now and then: the view may change.
                next = earliest([next, Some(now + self.config.transient_idle)]);
            } else {
                let first = if c.wanted { now } else { c.connected_at };
                let since = *c.unwanted_since.get_or_insert(first);
                if now >= since + self.config.transient_idle {
                    self.out
                        .push_back(Out::Close(conn, CloseReason::NotANeighbour));
                    return;
                }
                next = earliest([next, Some(since + self.config.transient_idle)]);
            }
        }
        if let Some(at) = next {
            self.timers.insert(at.max(now + 1), conn);
        }
    }
}

impl Part for Keepalive {
    type Out = Out;
    type Context<'a> = Context<'a>;

    fn poll(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    fn handle_timeout(&mut self, now: Millis, mut cx: Context<'_>) {
        while let Some(conn) = self.timers.pop_due(now) {
            self.check(conn, &mut cx, now);
        }
    }
}
