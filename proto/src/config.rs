//! The engine's tunables, one struct a driver fills ([`Config`]); each part's own settings
//! are drawn from it.

use crate::Millis;
use crate::book::Backoff;
use crate::history::History;
use crate::id::NodeId;
use crate::limits::{KindCaps, Limits};
use crate::peer::{PeerKind, canonical_address};
use crate::sync::SyncConfig;
use crate::{admission, broadcast, keepalive, links, map, membership, tree};

/// Tunables. The defaults suit a native node; a page sets `kind` and `home`.
#[derive(Debug, Clone)]
pub struct Config {
    pub kind: PeerKind,
    /// Our own dialable addresses, canonical form first. Never dialed, never sent to v1 peers.
    pub listen_addresses: Vec<String>,
    /// For a browser: the node that served the page (see `Hello::home`).
    pub home: Option<NodeId>,
    pub membership: membership::Config,
    pub broadcast: broadcast::Config,
    pub tree: tree::Config,
    pub map: map::Config,
    pub sync: SyncConfig,
    /// How long a connection may go without a `HELLO` (or a seed's first frame) before it is
    /// closed: long enough for a phone on a slow link, or a page whose thread is busy.
    pub hello_timeout: Millis,
    /// Ping a peer that has been quiet this long.
    pub ping_interval: Millis,
    /// Close a peer that has been quiet this long.
    pub idle_timeout: Millis,
    /// Whether the transport can send WebSocket pings to v1 peers (a browser cannot).
    pub transport_ping: bool,
    /// Close a connection to a node that membership has no use for after this long.
    pub transient_idle: Millis,
    /// Redial backoff: first delay and cap (each has up to 25% jitter added).
    pub backoff_initial: Millis,
    pub backoff_max: Millis,
    /// How often to revisit a pinned address that we reached but are not linked to (a seed
    /// that may have forgotten us, a node that may be alone).
    pub revisit_interval: Millis,
    /// How often to tell seed (v1) peers about nodes they have not heard of yet.
    pub seed_exchange_interval: Millis,
    /// Longest message text accepted, in bytes.
    pub max_message_bytes: usize,
    /// Bad frames tolerated from one peer before it is closed.
    pub max_bad_frames: u32,
    /// How long a peer closed for bad frames is refused when it comes back.
    pub refuse_for: Millis,
    /// Rate limits (see `limits`).
    pub limits: Limits,
    /// How long messages are kept (see `history`).
    pub history: History,
    /// Inbound connections of each kind one client address may hold.
    pub per_address: KindCaps,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kind: PeerKind::Node,
            listen_addresses: Vec::new(),
            home: None,
            membership: membership::Config::default(),
            broadcast: broadcast::Config::default(),
            tree: tree::Config::default(),
            map: map::Config::default(),
            sync: SyncConfig::default(),
            hello_timeout: 10_000,
            ping_interval: 10_000,
            idle_timeout: 30_000,
            transport_ping: true,
            transient_idle: 5_000,
            backoff_initial: 250,
            backoff_max: 10_000,
            revisit_interval: 30_000,
            seed_exchange_interval: 10_000,
            max_message_bytes: crate::wire::MAX_MESSAGE_BYTES,
            max_bad_frames: 32,
            refuse_for: 10 * 60_000,
            limits: Limits::default(),
            history: History::default(),
            per_address: KindCaps::default(),
        }
    }
}

impl Config {
    /// The config as an engine keeps it: its listen addresses in canonical form (a page has
    /// none).
    pub fn canonical(mut self) -> Self {
        self.listen_addresses = self
            .listen_addresses
            .iter()
            .filter_map(|a| canonical_address(a))
            .collect();
        if self.kind == PeerKind::Browser {
            self.listen_addresses.clear();
        }
        self
    }

    /// What the map is set by: a page joins a network that has formed, so it shows itself
    /// at once.
    pub fn map(&self) -> map::Config {
        let mut map = self.map.clone();
        if self.kind == PeerKind::Browser {
            map.first_check = map.first_check.min(1_000);
        }
        map
    }

    /// What links are set by.
    pub fn links(&self) -> links::Config {
        links::Config {
            keepalive: keepalive::Config {
                hello_timeout: self.hello_timeout,
                ping_interval: self.ping_interval,
                idle_timeout: self.idle_timeout,
                transport_ping: self.transport_ping,
                transient_idle: self.transient_idle,
            },
            backoff: Backoff {
                initial: self.backoff_initial,
                max: self.backoff_max,
                revisit: self.revisit_interval,
            },
            max_bad_frames: self.max_bad_frames,
            refuse_for: self.refuse_for,
            per_address: self.per_address,
            dials: self.limits.dials,
        }
    }

    /// What admission is set by.
    pub fn admission(&self) -> admission::Config {
        admission::Config {
            node: self.kind == PeerKind::Node,
            limits: self.limits.clone(),
            max_message_bytes: self.max_message_bytes,
            expire_every: self.history.evict_every,
        }
    }
}
