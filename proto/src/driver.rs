//! What the engine asks its driver to do ([`Output`]), and the bookkeeping every driver shares
//! ([`Driver`], carried out by [`crate::Engine::drain`]). The contract itself is in the crate
//! docs.

use crate::Millis;
use crate::close::CloseReason;
use crate::conns::ConnId;
use crate::id::{MsgId, NodeId};
use crate::message::Message;
use std::sync::Arc;

/// What the engine asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this text frame. The same `Arc` goes to every peer a frame is broadcast to, so it
    /// is encoded once.
    Send { conn: ConnId, frame: Arc<str> },
    /// Send a WebSocket ping frame (v1 peers only understand transport-level pings).
    Ping { conn: ConnId },
    /// Open a WebSocket to `address`; report `opened` or `dial_failed` for `conn`.
    Dial { conn: ConnId, address: String },
    /// Close the connection, telling the peer why. The engine has already forgotten it.
    Close { conn: ConnId, reason: CloseReason },
    /// A message new to this peer: store it and show it. Each id is delivered once. `hops`
    /// is how far it travelled (0: published here or by a seed linked here; `None`: it came
    /// by reconciliation). `from` is the peer that pushed it here (none if it was published
    /// here, came from a seed, or by reconciliation): only a journal of a whole network
    /// ([`crate::journey`]) has a use for it.
    Deliver {
        msg: Message,
        hops: Option<u32>,
        from: Option<NodeId>,
    },
    /// A node confirmed it holds message `id`, which this peer published (browsers only).
    Acked { id: MsgId, by: NodeId },
    /// A peer refused something we sent (an `ERROR` frame): a page shows it.
    Refused {
        by: NodeId,
        reason: String,
        id: Option<MsgId>,
        retry_after_ms: Option<u64>,
    },
    /// The peer on `conn` asked for these messages: load the ones held and hand them to
    /// [`crate::Engine::provide`].
    Fetch { conn: ConnId, ids: Vec<MsgId> },
    /// Messages stamped (by their reconciliation timestamp) before `before` have aged out of
    /// the retention window: drop them from the store. The engine has forgotten them, and
    /// refuses them if they come again.
    Evict { before: Millis, count: usize },
}

impl Output {
    /// What a peer's answer (`by`) to something we sent means for the driver.
    pub fn replied(by: NodeId, reply: crate::admission::Reply) -> Self {
        match reply {
            crate::admission::Reply::Ack { id } => Output::Acked { id, by },
            crate::admission::Reply::Error {
                reason,
                id,
                retry_after_ms,
            } => Output::Refused {
                by,
                reason,
                id,
                retry_after_ms,
            },
        }
    }
}

/// Bookkeeping shared by every driver: carries out the engine's outputs through a
/// [`Driver`], going round until nothing is left (answering a `Fetch` or closing a peer
/// whose queue is full makes more output).
pub trait Driver {
    /// Queues a frame for the peer; false if its queue is full (the engine then closes it).
    fn send(&mut self, conn: ConnId, frame: Arc<str>) -> bool;
    fn ping(&mut self, conn: ConnId);
    fn dial(&mut self, conn: ConnId, address: String);
    fn close(&mut self, conn: ConnId, reason: CloseReason);
    fn deliver(&mut self, msg: Message, hops: Option<u32>, from: Option<NodeId>);
    fn acked(&mut self, _id: MsgId, _by: NodeId) {}
    /// A peer refused something (an `ERROR` frame); see [`Output::Refused`].
    fn refused(
        &mut self,
        _by: NodeId,
        _reason: &str,
        _id: Option<MsgId>,
        _retry_after_ms: Option<u64>,
    ) {
    }
    /// The messages held of `ids`, if they can be had at once; `None` means the driver will
    /// call [`crate::Engine::provide`] itself later.
    fn fetch(&mut self, conn: ConnId, ids: Vec<MsgId>) -> Option<Vec<Message>>;
    /// Messages stamped before `before` aged out: drop them from the store (see
    /// [`Output::Evict`]).
    fn evict(&mut self, before: Millis, count: usize);
}

impl crate::Engine {
    /// Drains every output into `driver`. Call after every event (see the crate docs).
    pub fn drain(&mut self, driver: &mut impl Driver, now: Millis) {
        loop {
            let mut full = Vec::new();
            let mut more = false;
            while let Some(output) = self.poll_output() {
                match output {
                    Output::Send { conn, frame } => {
                        if !driver.send(conn, frame) && !full.contains(&conn) {
                            full.push(conn);
                        }
                    }
                    Output::Ping { conn } => driver.ping(conn),
                    Output::Dial { conn, address } => driver.dial(conn, address),
                    Output::Close { conn, reason } => driver.close(conn, reason),
                    Output::Deliver { msg, hops, from } => driver.deliver(msg, hops, from),
                    Output::Acked { id, by } => driver.acked(id, by),
                    Output::Refused {
                        by,
                        reason,
                        id,
                        retry_after_ms,
                    } => driver.refused(by, &reason, id, retry_after_ms),
                    Output::Evict { before, count } => driver.evict(before, count),
                    Output::Fetch { conn, ids } => {
                        if let Some(found) = driver.fetch(conn, ids) {
                            self.provide(conn, found, now);
                            more = true;
                        }
                    }
                }
            }
            for conn in full {
                more = true;
                self.queue_full(conn, now);
            }
            if !more {
                return;
            }
        }
    }
}
