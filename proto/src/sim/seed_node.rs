//! The seed (v1) node of the tutorial network — Node.js, express and `ws` — emulated with no
//! I/O, races included, so that the simulator ([`crate::sim`]) and the node's tests (which
//! drive it over real sockets) emulate one and the same seed.
//!
//! What the real seed does, and so this one:
//! - on every new connection, either direction, it sends `SOCKETS` with the addresses it has
//!   dialed, and only then records the new address if it dialed it: an address counts as
//!   dialed once its dial *opens*, not when it starts;
//! - it dials every address a `SOCKETS` names that is not recorded, so one named twice while
//!   its dial is under way is dialed twice, and its own address (if told) is dialed too;
//! - a commit is stored and sent as `MESSAGE` to every socket; a `MESSAGE` received is
//!   stored and never forwarded; frame types it does not know are ignored;
//! - a frame that is not JSON crashes it (`JSON.parse` throws: the process ends, and every
//!   socket with it).
//!
//! Addresses are compared as strings, as the seed does.

use crate::conns::ConnId;
use crate::seed;
use crate::wire::Frame;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// What the seed asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedOut {
    /// Send this text on the connection.
    Send(ConnId, String),
    /// Open a WebSocket to the address; report [`SeedNode::opened`] (or
    /// [`SeedNode::closed`] if it fails) for the connection.
    Dial(ConnId, String),
    /// The process ended: every connection closes, and it listens no more.
    Crashed,
}

#[derive(Debug, Default)]
pub struct SeedNode {
    /// What it recorded as dialed (dials that opened), in order.
    pub dialed: Vec<String>,
    /// Dials under way, and the address each will record when it opens.
    dialing: HashMap<ConnId, String>,
    /// Every dial it started, in order (an address twice here is a double dial).
    pub dials: Vec<String>,
    /// Its open connections.
    pub sockets: Vec<ConnId>,
    /// Everything it stored, in order, its own commits included.
    pub messages: Vec<String>,
    /// The frame that crashed it, if one did.
    pub crashed: Option<String>,
    next_conn: u64,
    out: VecDeque<SeedOut>,
}

impl SeedNode {
    /// The next thing for the driver to do, if any.
    pub fn poll(&mut self) -> Option<SeedOut> {
        self.out.pop_front()
    }

    /// A connection came in: the handle to report it under ([`SeedNode::opened`] once it is
    /// up).
    pub fn accepted(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// The seed's `/add?address=`: it dials the address (recorded only if it opens).
    pub fn add(&mut self, address: &str) {
        let conn = self.accepted();
        self.dialing.insert(conn, address.to_owned());
        self.dials.push(address.to_owned());
        self.out.push_back(SeedOut::Dial(conn, address.to_owned()));
    }

    /// The seed's `/commit?msg=`: stored, and sent to every socket.
    pub fn commit(&mut self, text: &str) {
        self.messages.push(text.to_owned());
        let frame = Frame::from(seed::Message::Text {
            data: text.to_owned(),
        })
        .encode();
        for &conn in &self.sockets {
            self.out.push_back(SeedOut::Send(conn, frame.clone()));
        }
    }

    /// A connection, accepted or dialed, is open: the seed says what it has dialed, and then
    /// records the address if it dialed it.
    pub fn opened(&mut self, conn: ConnId) {
        if self.crashed.is_some() {
            return;
        }
        self.sockets.push(conn);
        let addresses = self.dialed.clone();
        let frame = Frame::from(seed::Message::Sockets { addresses }).encode();
        self.out.push_back(SeedOut::Send(conn, frame));
        if let Some(address) = self.dialing.remove(&conn) {
            self.dialed.push(address);
        }
    }

    /// A connection closed (or a dial failed).
    pub fn closed(&mut self, conn: ConnId) {
        self.dialing.remove(&conn);
        self.sockets.retain(|&c| c != conn);
    }

    /// A text frame arrived on `conn`.
    pub fn frame(&mut self, _conn: ConnId, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            self.crashed = Some(text.to_owned());
            self.sockets.clear();
            self.out.push_back(SeedOut::Crashed);
            return;
        };
        match value.get("type").and_then(Value::as_str) {
            Some("MESSAGE") => {
                if let Some(data) = value.get("data").and_then(Value::as_str) {
                    self.messages.push(data.to_owned());
                }
            }
            Some("SOCKETS") => {
                let addresses = value.get("addresses").and_then(Value::as_array);
                for a in addresses.into_iter().flatten().filter_map(Value::as_str) {
                    // Only what has opened is recorded: a dial under way is dialed again.
                    if !self.dialed.iter().any(|d| d == a) {
                        self.add(a);
                    }
                }
            }
            _ => {}
        }
    }

    /// How many times it dialed each address it dialed more than once.
    pub fn double_dials(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &self.dials {
            *counts.entry(d.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(a, n)| (a.to_owned(), n))
            .collect()
    }
}
