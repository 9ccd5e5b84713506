//! Prometheus metrics at `GET /metrics`, in the text exposition format, written by the
//! `prometheus-client` crate. The engine keeps plain counters (it is sans-IO and also runs in
//! browsers); on each scrape they are copied into the registry's counters and gauges.

use hearsay_proto::broadcast::BroadcastStats;
use hearsay_proto::{PeerInfo, PeerKind, Protocol, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Mutex<Registry>,
    received: Counter,
    delivered: Counter,
    forwarded: Counter,
    duplicates: Counter,
    bad_frames: Counter,
    synced: Counter,
    published: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    frames_out: Counter,
    ihave_frames: Counter,
    grafts: Counter,
    prunes: Counter,
    beacons: Counter,
    beacons_ignored: Counter,
    beacons_forged: Counter,
    parents_withholding: Counter,
    queue_drops: Counter,
    peers: Family<Labels, Gauge>,
    stored: Gauge,
    /// Peers dropped because their send queue was full (counted by the driver).
    pub queue_drops_seen: AtomicU64,
    store_failures: Counter,
    /// Messages whose store write failed (counted by the driver).
    pub store_failures_seen: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("hearsay");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            received: Counter::default(),
            delivered: Counter::default(),
            forwarded: Counter::default(),
            duplicates: Counter::default(),
            bad_frames: Counter::default(),
            synced: Counter::default(),
            published: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            frames_out: Counter::default(),
            ihave_frames: Counter::default(),
            grafts: Counter::default(),
            prunes: Counter::default(),
            beacons: Counter::default(),
            beacons_ignored: Counter::default(),
            beacons_forged: Counter::default(),
            parents_withholding: Counter::default(),
            queue_drops: Counter::default(),
            peers: Family::default(),
            stored: Gauge::default(),
            queue_drops_seen: AtomicU64::new(0),
            store_failures: Counter::default(),
            store_failures_seen: AtomicU64::new(0),
        };
        r.register(
            "messages_received",
            "Message frames received (gossip and seed), copies included",
            m.received.clone(),
        );
        r.register(
            "messages_delivered",
            "Messages new to this node, delivered once each",
            m.delivered.clone(),
        );
        r.register(
            "messages_forwarded",
            "Message frames sent on to other peers",
            m.forwarded.clone(),
        );
        r.register(
            "messages_duplicates",
            "Message copies dropped as already seen",
            m.duplicates.clone(),
        );
        r.register(
            "messages_synced",
            "Messages that arrived through reconciliation",
            m.synced.clone(),
        );
        r.register(
            "messages_published",
            "Messages published at this node",
            m.published.clone(),
        );
        r.register(
            "frames_bad",
            "Frames that could not be decoded or broke the protocol",
            m.bad_frames.clone(),
        );
        r.register(
            "bytes_in",
            "WebSocket text bytes received",
            m.bytes_in.clone(),
        );
        r.register(
            "bytes_out",
            "WebSocket text bytes queued to send",
            m.bytes_out.clone(),
        );
        r.register(
            "frames_out",
            "WebSocket text frames queued to send",
            m.frames_out.clone(),
        );
        r.register(
            "broadcast_ihave_frames",
            "IHAVE frames sent: message ids announced to lazy links",
            m.ihave_frames.clone(),
        );
        r.register(
            "broadcast_grafts",
            "Links made part of the broadcast tree (a missed message asked for, or a new parent)",
            m.grafts.clone(),
        );
        r.register(
            "broadcast_prunes",
            "Links taken out of the broadcast tree",
            m.prunes.clone(),
        );
        r.register(
            "broadcast_beacons",
            "Beacons sent or passed on (they rebuild the tree)",
            m.beacons.clone(),
        );
        r.register(
            "broadcast_beacons_ignored",
            "Beacons of a root that may not displace this node's (a live root changes only by its own word)",
            m.beacons_ignored.clone(),
        );
        r.register(
            "broadcast_beacons_forged",
            "Beacons whose root's signature does not verify",
            m.beacons_forged.clone(),
        );
        r.register(
            "broadcast_parents_withholding",
            "Parents passed over for letting a message through only when asked for (GRAFT)",
            m.parents_withholding.clone(),
        );
        r.register(
            "queue_drops",
            "Peers dropped because their send queue was full",
            m.queue_drops.clone(),
        );
        r.register(
            "store_write_failures",
            "Messages whose store write failed (forgotten, so fetched again from peers)",
            m.store_failures.clone(),
        );
        r.register(
            "peers",
            "Connected peers by kind (node, browser, v1, pending)",
            m.peers.clone(),
        );
        r.register(
            "messages_stored",
            "Messages in this node's store",
            m.stored.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = r;
        m
    }

    /// The text exposition of the current figures.
    pub fn render(
        &self,
        stats: &Stats,
        broadcast: &BroadcastStats,
        peers: &[PeerInfo],
        stored: u64,
    ) -> String {
        let set = |c: &Counter, v: u64| {
            c.inc_by(v.saturating_sub(c.get()));
        };
        set(&self.received, stats.received);
        set(&self.delivered, stats.delivered);
        set(&self.forwarded, stats.forwarded);
        set(&self.duplicates, stats.duplicates);
        set(&self.bad_frames, stats.bad_frames);
        set(&self.synced, stats.synced);
        set(&self.published, stats.published);
        set(&self.bytes_in, stats.bytes_in);
        set(&self.bytes_out, stats.bytes_out);
        set(&self.frames_out, stats.frames_out);
        set(&self.ihave_frames, broadcast.ihave_frames);
        set(&self.grafts, broadcast.grafts);
        set(&self.prunes, broadcast.prunes);
        set(&self.beacons, broadcast.beacons);
        set(&self.beacons_ignored, broadcast.beacons_ignored);
        set(&self.beacons_forged, broadcast.beacons_forged);
        set(&self.parents_withholding, broadcast.parents_withholding);
        set(
            &self.queue_drops,
            self.queue_drops_seen.load(Ordering::Relaxed),
        );
        set(
            &self.store_failures,
            self.store_failures_seen.load(Ordering::Relaxed),
        );
        for kind in ["node", "browser", "v1", "pending"] {
            let n = peers
                .iter()
                .filter(|p| match (p.protocol, p.kind) {
                    (Protocol::Seed, _) => kind == "v1",
                    (Protocol::Pending, _) => kind == "pending",
                    (_, Some(PeerKind::Browser)) => kind == "browser",
                    _ => kind == "node",
                })
                .count();
            self.peers
                .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
                .set(n as i64);
        }
        self.stored.set(stored as i64);
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}
