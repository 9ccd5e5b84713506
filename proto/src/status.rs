//! What an engine reports of itself: its counters ([`Stats`]) and its peers ([`PeerInfo`]),
//! for status pages, metrics and the simulation's report.

use crate::Millis;
use crate::conns::{Conn, ConnId, Direction, Protocol, State};
use crate::id::NodeId;
use crate::peer::PeerKind;
use serde::Serialize;

/// A connected peer, as the API and the page show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    pub conn: ConnId,
    pub id: Option<NodeId>,
    pub address: Option<String>,
    pub direction: Direction,
    pub protocol: Protocol,
    /// `None` while the handshake is pending or for v1 peers (a seed node never says).
    pub kind: Option<PeerKind>,
    /// Whether it is a neighbour (in the active view, a page held here, or a page's link);
    /// other hearsay connections are brief (a membership request or reply).
    pub neighbor: bool,
    /// Whether messages are pushed to it (a broadcast tree link).
    pub eager: bool,
    pub connected_at: Millis,
}

impl PeerInfo {
    /// The connection `conn`, unless it is still being dialed.
    pub fn of(conn: ConnId, c: &Conn, neighbor: bool, eager: bool) -> Option<Self> {
        if matches!(c.state, State::Dialing) {
            return None;
        }
        let hearsay = c.hearsay();
        Some(Self {
            conn,
            id: hearsay.map(|h| h.id),
            address: c.address().map(str::to_owned),
            direction: c.direction,
            protocol: c.protocol(),
            kind: hearsay.map(|h| h.kind),
            neighbor,
            eager,
            connected_at: c.connected_at,
        })
    }
}

/// Counters for status pages, metrics and the simulation's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub published: u64,
    /// Message copies received (GOSSIP, v1 MESSAGE and reconciled), duplicates included.
    pub received: u64,
    pub delivered: u64,
    /// Message copies pushed on to other peers (not counting our own publishes).
    pub forwarded: u64,
    pub duplicates: u64,
    pub bad_frames: u64,
    /// Messages that arrived through reconciliation rather than gossip.
    pub synced: u64,
    /// Frames and text bytes handed to the transport, and bytes received from it.
    pub frames_out: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub dials: u64,
    pub dial_failures: u64,
    /// Times a peer's send queue backed up (see [`crate::Engine::backed_up`]).
    pub backed_up: u64,
    /// Messages refused because a page or seed sent more than its rate limit allows.
    pub rate_limited: u64,
    /// Handshakes refused from peers closed lately for bad frames or relaying over quota.
    pub refused: u64,
    /// Dials membership asked for beyond the dial rate limit (told they failed).
    pub dials_limited: u64,
    /// Messages refused as older than the retention window, or stamped too far ahead.
    pub too_old: u64,
    pub from_future: u64,
    /// Messages evicted as they aged out of the window.
    pub evicted: u64,
    /// Messages node peers relayed over their origin's quota (dropped), and node peers
    /// closed for doing it too often.
    pub over_quota: u64,
    pub closed_over_quota: u64,
    /// Messages whose signature was not their author's (dropped, the sender closed), and
    /// handshakes whose id did not derive from the key offered.
    pub bad_signatures: u64,
    pub bad_identities: u64,
    /// Reconciliations this peer started.
    pub sync_rounds: u64,
    /// Answers not sent because the peer had pulled its budget (`Limits::peer_pulls`).
    pub pulls_refused: u64,
}

/// What links count (see [`crate::links`]), for the engine's [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub bytes_in: u64,
    pub bad_frames: u64,
    pub dials: u64,
    pub dial_failures: u64,
    pub refused: u64,
    pub dials_limited: u64,
    pub bad_identities: u64,
}

impl Stats {
    /// These counters, with the links' and the number of reconciliations started.
    pub fn with(&self, links: &LinkStats, sync_rounds: u64) -> Stats {
        Stats {
            bytes_in: links.bytes_in,
            bad_frames: links.bad_frames,
            dials: links.dials,
            dial_failures: links.dial_failures,
            refused: links.refused,
            dials_limited: links.dials_limited,
            bad_identities: links.bad_identities,
            sync_rounds,
            ..self.clone()
        }
    }
}
