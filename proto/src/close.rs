//! Why the engine ends a connection. Logic matches on [`CloseReason`]; its text (from
//! `Display`) is what the peer reads in the WebSocket close frame and what status pages show.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Both ends dialed each other (or one dialed twice); one connection per pair is kept.
    DuplicateConnection,
    /// We dialed an address that turned out to be our own.
    ConnectedToSelf,
    /// The peer's `HELLO` is not hearsay's, or names a protocol version we do not speak.
    NotHearsay,
    VersionMismatch {
        ours: u32,
        theirs: u32,
    },
    /// The first frame was neither `HELLO` nor a seed frame.
    ExpectedHello,
    /// Nothing valid arrived within the handshake timeout.
    HandshakeTimeout,
    TooManyBadFrames {
        last: String,
    },
    KeepaliveTimeout,
    /// We dialed a seed node, introduced ourselves and hang up so that it dials us back.
    SeedDialsUs,
    /// A seed dialed us while it holds a link to us already (its list names us).
    SeedLinkedTwice,
    /// Membership: the peer left our active view (evicted to make room, or it asked to leave).
    Disconnected,
    /// Membership: our active view is full and the request had low priority.
    ActiveViewFull,
    /// Membership: a connection that never became a neighbour (a shuffle reply's carrier, a
    /// refused request) and has nothing more to say.
    NotANeighbour,
    /// A node holds at most so many browser peers.
    TooManyClients,
    /// A browser peer cannot be dialed and does not take part in membership.
    BrowserCannotAccept,
    /// The driver could not queue a frame for this peer.
    SendQueueFull,
    /// A node peer kept relaying messages over their origins' quotas.
    OverQuota,
    /// The peer's id does not derive from the key in its `HELLO`, or it could not prove it
    /// holds that key.
    BadIdentity,
    /// The peer's node started again (same key, new process): this link was its previous
    /// run's.
    PeerRestarted,
    /// The peer sent a message whose signature is not its author's. An honest peer checks
    /// every message before passing it on, so it never does.
    BadSignature,
    /// One client address holds as many connections of this kind as it may.
    TooManyFromAddress {
        kind: &'static str,
        max: usize,
    },
    /// The peer was closed for bad frames or relaying over quota lately, and is refused
    /// until then.
    Refused {
        seconds: u64,
    },
    /// A browser acting for another site spoke the seed protocol, which no page needs.
    SeedFromWebPage,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateConnection => f.write_str("duplicate connection"),
            Self::ConnectedToSelf => f.write_str("connected to self"),
            Self::NotHearsay => f.write_str("not a hearsay peer"),
            Self::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: this node speaks hearsay v{ours}, the peer v{theirs}"
            ),
            Self::ExpectedHello => {
                f.write_str("protocol error: expected HELLO or a seed frame first")
            }
            Self::HandshakeTimeout => f.write_str("handshake timeout: no HELLO or seed frame"),
            Self::TooManyBadFrames { last } => write!(f, "too many bad frames (last: {last})"),
            Self::KeepaliveTimeout => f.write_str("keepalive timeout"),
            Self::TooManyFromAddress { kind, max } => {
                write!(
                    f,
                    "too many {kind} connections from your address (at most {max})"
                )
            }
            Self::BadIdentity => {
                f.write_str("identity not proven: the id must derive from a key the peer holds")
            }
            Self::BadSignature => f.write_str("sent a message whose signature is not its author's"),
            Self::PeerRestarted => {
                f.write_str("the peer started again; this link was its previous run's")
            }
            Self::OverQuota => f.write_str("relayed too many messages over their origins' quotas"),
            Self::SeedDialsUs => f.write_str("hearsay nodes let seed nodes dial them"),
            Self::SeedLinkedTwice => f.write_str("this seed is linked to this node already"),
            Self::Disconnected => f.write_str("left the active view"),
            Self::ActiveViewFull => f.write_str("active view full"),
            Self::NotANeighbour => f.write_str("not a neighbour"),
            Self::TooManyClients => f.write_str("too many browser peers at this node"),
            Self::BrowserCannotAccept => f.write_str("a browser peer does not accept links"),
            Self::SendQueueFull => f.write_str("send queue full: peer too slow"),
            Self::SeedFromWebPage => f.write_str(
                "a web page may not speak the seed (v1) protocol: this socket was opened for another site",
            ),
            Self::Refused { seconds } => write!(
                f,
                "refused for another {seconds} s: closed lately for bad frames, forged messages or relaying over quota"
            ),
        }
    }
}

impl CloseReason {
    /// Whether the link's address should show this as a failure on status pages. Closes
    /// that are part of normal operation (duplicate links, membership changes) are not.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            Self::DuplicateConnection
                | Self::PeerRestarted
                | Self::SeedDialsUs
                | Self::SeedLinkedTwice
                | Self::Disconnected
                | Self::NotANeighbour
                | Self::ActiveViewFull
        )
    }
}
