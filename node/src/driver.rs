//! The driver: owns the engine, carries out its outputs, and runs its timer.
//!
//! The engine sits behind a std `Mutex`: every call into it is short and never awaits, and
//! carrying out its outputs is non-blocking too (a `try_send` into a peer's bounded queue, a
//! spawned dial, a store insert), so the lock is never held across an `.await`. A tokio mutex
//! would buy nothing and cost more.
//!
//! After every call the engine's outputs are drained through [`NodeDriver`], this node's side
//! of `hearsay_proto::Driver` (the contract is in `hearsay_proto`'s docs). The timer task
//! sleeps until the engine's next deadline, and is woken early when a call brings that
//! deadline forward.
//!
//! *Flow control.* A peer's send queue that holds more than [`BACKLOG`] frames *presses*:
//! while any queue presses, connection tasks stop reading (see `conn`), so a sender is slowed
//! to the pace at which its traffic can be passed on, instead of its traffic piling up. A queue
//! that still presses after [`SLOW_AFTER`] belongs to a peer slower than the rest: the engine
//! is told it is backed up (it is then only told of new messages) and the others stop waiting
//! for it, until its queue is down to [`DRAINED`]; if many queues press at once, readers wait
//! for them up to [`MAX_PAUSE`] (the node may be the bottleneck), then not. Nobody is dropped
//! for being slow; a peer that takes nothing for [`crate::conn::STALL`] is closed, with that
//! reason.

use crate::clock::Clock;
use crate::store::{Ack, Store, StoreError};
use hearsay_proto::{CloseReason, ConnId, Driver, Engine, Message, MsgId, NodeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A send queue holding more frames than this presses: readers wait for it.
pub const BACKLOG: usize = 256;
/// A queue that presses this long is backed up: its peer is slower than the rest.
pub const SLOW_AFTER: Duration = Duration::from_millis(250);
/// A backed-up queue is drained again at this many frames.
pub const DRAINED: usize = 32;
/// Readers wait at most this long for queues that press, however many press at once: past
/// it they are backed up all the same. Otherwise three connections that take nothing held
/// every other peer's traffic until they were closed for it (30 s, see `conn::STALL`), and
/// opened again.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

pub struct State {
    pub engine: Engine,
    conns: HashMap<ConnId, ConnHandle>,
}

/// What a node checks before it lets a client or a peer have its way.
pub struct Guards {
    pub http_limit: crate::limit::PerAddress,
    pub caps: crate::limit::ConnectionCaps,
    pub dial_rules: crate::dialing::DialRules,
    pub origins: crate::origin::Origins,
    /// How `wss://` dials check the node they reach.
    pub tls: Arc<rustls::ClientConfig>,
    /// What `/add` has pinned.
    pub pins: crate::pins::Pins,
    /// The names the node answers to (for `/api/status`).
    pub hosts: Arc<crate::door::Hosts>,
    /// The demo this node is part of: its side of a cut (see `hub`).
    pub demo: Option<crate::hub::Member>,
}

/// Everything the HTTP handlers, connection tasks and timer share.
pub struct Shared {
    state: Mutex<State>,
    /// Has its own synchronisation (a writer thread; concurrent reads), so it is not behind
    /// the engine's lock.
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    pub metrics: crate::metrics::Metrics,
    pub started_at: u64,
    /// When the timer task will next wake, and how to wake it sooner.
    wake_at: AtomicU64,
    wake: Notify,
    /// Dials the engine asked for, for `conn::dialer` to open.
    dials: mpsc::UnboundedSender<(ConnId, String)>,
    /// How many send queues press (see the module docs); readers wait while any does.
    pub pressure: watch::Sender<usize>,
    /// What HTTP clients may publish, per address.
    pub http_limit: crate::limit::PerAddress,
    /// How many inbound connections there may be.
    pub caps: Arc<crate::limit::ConnectionCaps>,
    /// Where this node may dial.
    pub dial_rules: crate::dialing::DialRules,
    /// Web apps that may write through this node.
    pub origins: crate::origin::Origins,
    /// How `wss://` dials check the node they reach.
    pub tls: Arc<rustls::ClientConfig>,
    /// Why the last dial of each address failed, so the log says it once per change, not
    /// at every retry.
    pub dial_failures: Mutex<HashMap<String, String>>,
    /// The settings the node was started with, as `/api/status` shows them.
    pub settings: std::sync::OnceLock<serde_json::Value>,
    /// What `/add` has pinned (see `pins`).
    pub pins: crate::pins::Pins,
    pub hosts: Arc<crate::door::Hosts>,
    /// The demo this node is part of, if any (see `hub`).
    pub demo: Option<crate::hub::Member>,
    /// The retention window (the engine's), for how long evicted ids are remembered.
    pub retention: Option<u64>,
    /// Messages refused as from the future when the log last said so, and when that was.
    future_seen: AtomicU64,
    future_warned_at: AtomicU64,
}

impl Shared {
    /// The shared state, and the dials it will ask for (hand them to `conn::dialer`).
    pub fn new(
        engine: Engine,
        store: Arc<dyn Store>,
        clock: Clock,
        shutdown: CancellationToken,
        guards: Guards,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<(ConnId, String)>) {
        let Guards {
            http_limit,
            caps,
            dial_rules,
            origins,
            tls,
            pins,
            hosts,
            demo,
        } = guards;
        let (dials, dial_rx) = mpsc::unbounded_channel();
        let retention = engine.config().history.retention;
        let shared = Arc::new(Self {
            retention,
            future_seen: AtomicU64::new(0),
            future_warned_at: AtomicU64::new(0),
            state: Mutex::new(State {
                engine,
                conns: HashMap::new(),
            }),
            store,
            started_at: clock.now(),
            clock,
            tracker: TaskTracker::new(),
            shutdown,
            metrics: crate::metrics::Metrics::new(),
            wake_at: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
            dials,
            pressure: watch::Sender::new(0),
            http_limit,
            caps: Arc::new(caps),
            dial_rules,
            origins,
            tls,
            pins,
            hosts,
            demo,
            dial_failures: Mutex::new(HashMap::new()),
            settings: std::sync::OnceLock::new(),
        });
        (shared, dial_rx)
    }

    /// Reads the state without driving the engine (status pages, API reads).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Calls into the engine with the current time, then carries out everything it asked for.
    pub fn drive<R>(self: &Arc<Self>, f: impl FnOnce(&mut Engine, u64) -> R) -> R {
        let now = self.clock.now();
        let mut state = self.lock();
        let result = f(&mut state.engine, now);
        self.execute(&mut state, now, None);
        result
    }

    /// Publishes `text` from this node and resolves once the message is durably stored.
    pub async fn publish(
        self: &Arc<Self>,
        text: &str,
    ) -> Result<Result<Message, hearsay_proto::PublishError>, StoreError> {
        self.publish_durably(|e, now| e.publish(text, now), |m| Some(m.id))
            .await
    }

    /// An app's own signed message, published through this node: new here (and stored,
    /// once durable), or already held.
    pub async fn publish_signed(
        self: &Arc<Self>,
        msg: Message,
    ) -> Result<Result<bool, hearsay_proto::PublishError>, StoreError> {
        let id = msg.id;
        self.publish_durably(
            |e, now| e.publish_signed(msg, now),
            |&new| new.then_some(id),
        )
        .await
    }

    /// Runs a publish in the engine and, if it gave a message to store (`stored`), waits
    /// until that is durable.
    async fn publish_durably<R>(
        self: &Arc<Self>,
        publish: impl FnOnce(&mut Engine, u64) -> Result<R, hearsay_proto::PublishError>,
        stored: impl Fn(&R) -> Option<MsgId>,
    ) -> Result<Result<R, hearsay_proto::PublishError>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let now = self.clock.now();
        let (published, waits) = {
            let mut state = self.lock();
            let published = publish(&mut state.engine, now);
            let ack = published.as_ref().ok().and_then(&stored).map(|id| (id, tx));
            let waits = ack.is_some();
            self.execute(&mut state, now, ack);
            (published, waits)
        };
        if waits {
            rx.await.map_err(|_| StoreError::Closed)??;
        }
        Ok(published)
    }

    /// A peer connected to us: the engine names the connection and its queue is registered
    /// under the same lock, so no output for it can be missed.
    /// A WebSocket was accepted from `from` (`None`: exempt from the per-address caps), in
    /// the address group of `source`; `foreign` if a browser opened it for another site (see
    /// `door`).
    pub fn accept(
        self: &Arc<Self>,
        handle: ConnHandle,
        from: Option<std::net::IpAddr>,
        source: Option<std::net::IpAddr>,
        foreign: bool,
    ) -> ConnId {
        let now = self.clock.now();
        let mut state = self.lock();
        let from = from.map(|ip| ip.to_string());
        let source = source.map(hearsay_proto::Group::of_ip);
        let conn = state.engine.accepted_from(from, source, foreign, now);
        state.conns.insert(conn, handle);
        self.execute(&mut state, now, None);
        conn
    }

    /// A dial succeeded: register the queue, then let the engine say hello.
    pub fn opened(self: &Arc<Self>, conn: ConnId, handle: ConnHandle) {
        let now = self.clock.now();
        let mut state = self.lock();
        state.conns.insert(conn, handle);
        state.engine.opened(conn, now);
        self.execute(&mut state, now, None);
    }

    /// The socket ended (either side closed it, or it failed), with the peer's close reason
    /// or the transport's error if there was one.
    pub fn closed(self: &Arc<Self>, conn: ConnId, reason: Option<&str>) {
        let now = self.clock.now();
        let mut state = self.lock();
        if let Some(handle) = state.conns.remove(&conn) {
            handle.flow.release(&self.pressure);
        }
        state.engine.closed(conn, reason, now);
        self.execute(&mut state, now, None);
    }

    /// Readers have waited [`SLOW_AFTER`]: the queues that have pressed that long are backed
    /// up, and nobody waits for them any more — if they are a few. When many peers are
    /// behind at once, the bottleneck is this node (or the sender outpaces everyone): they are
    /// not slower than the rest, and readers go on waiting for them, but for [`MAX_PAUSE`] at
    /// most, since peers can be slow on purpose, many at once.
    pub fn mark_slow(self: &Arc<Self>) {
        let now = self.clock.now();
        let mut state = self.lock();
        let slow: Vec<ConnId> = state
            .conns
            .iter()
            .filter(|(_, h)| h.flow.pressing_since(now, SLOW_AFTER))
            .map(|(&conn, _)| conn)
            .collect();
        let many = slow.len() > (state.conns.len() / 8).max(2);
        let long = state
            .conns
            .values()
            .any(|h| h.flow.pressing_since(now, MAX_PAUSE));
        if many && !long {
            return;
        }
        for conn in slow {
            if let Some(h) = state.conns.get(&conn) {
                h.flow.release(&self.pressure);
                h.flow.backed_up.store(true, Ordering::Relaxed);
                tracing::debug!(%conn, "send queue backed up; the peer is told of messages");
            }
            state.engine.backed_up(conn, true, now);
        }
        self.execute(&mut state, now, None);
    }

    /// The queue of `conn` has drained to `queued` frames: it stops pressing, and if it was
    /// backed up and is down to [`DRAINED`], its peer gets messages pushed again.
    pub fn drained(self: &Arc<Self>, conn: ConnId, flow: &Flow, queued: usize) {
        if queued <= BACKLOG / 2 {
            flow.release(&self.pressure);
        }
        if queued <= DRAINED && flow.backed_up.swap(false, Ordering::Relaxed) {
            self.drive(|engine, now| engine.backed_up(conn, false, now));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving rather than cascade.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Carries out the engine's outputs. `ack`, if given, is attached to the storage of that
    /// message, for a publisher waiting on durability.
    fn execute(self: &Arc<Self>, state: &mut State, now: u64, ack: Option<(MsgId, Ack)>) {
        let State { engine, conns } = state;
        let mut driver = NodeDriver {
            shared: self,
            conns,
            ack,
            now,
        };
        engine.drain(&mut driver, now);
        self.warn_of_clock(engine.stats().from_future, now);
        // A call may have brought the next deadline forward: wake the timer if so.
        if let Some(next) = engine.poll_timeout()
            && next < self.wake_at.load(Ordering::Relaxed)
        {
            self.wake.notify_one();
        }
    }

    /// Messages refused as stamped in the future mean the peers' clocks run ahead of ours, or
    /// ours behind theirs: said in the log, at most once a minute, since such a node refuses
    /// everything new and its part of the network sees nothing.
    fn warn_of_clock(&self, refused: u64, now: u64) {
        let (seen, at) = (
            self.future_seen.load(Ordering::Relaxed),
            self.future_warned_at.load(Ordering::Relaxed),
        );
        if refused > seen && now >= at + 60_000 {
            self.future_seen.store(refused, Ordering::Relaxed);
            self.future_warned_at.store(now, Ordering::Relaxed);
            tracing::warn!(
                refused,
                "messages stamped more than 5 minutes in the future are being refused: this node's clock may be behind (keep it synchronised)"
            );
        }
    }

    /// Loads what a peer asked for off the engine's lock, then hands it to the engine.
    fn spawn_fetch(self: &Arc<Self>, conn: ConnId, ids: Vec<hearsay_proto::MsgId>) {
        let shared = Arc::clone(self);
        self.tracker.spawn(async move {
            let store = Arc::clone(&shared.store);
            let found = tokio::task::spawn_blocking(move || store.get_many(&ids)).await;
            match found {
                Ok(Ok(messages)) => shared.drive(|engine, now| engine.provide(conn, messages, now)),
                // Answer with nothing rather than not at all: the peer waits for the end of
                // an answer before it asks again.
                Ok(Err(e)) => {
                    tracing::warn!(%conn, error = %e, "cannot load messages a peer asked for");
                    shared.drive(|engine, now| engine.provide(conn, Vec::new(), now));
                }
                Err(e) => {
                    tracing::warn!(%conn, error = %e, "message load task failed");
                    shared.drive(|engine, now| engine.provide(conn, Vec::new(), now));
                }
            }
        });
    }

    /// Runs the engine's timer until shutdown: sleeps until the engine's next deadline, or
    /// until a call brings it forward.
    /// Lifts the pins `/add` made that were never reached (see `pins`), until shutdown.
    pub async fn run_unpinning(self: Arc<Self>) {
        let every = self.pins.every();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.shutdown.cancelled() => return,
            }
            let now = self.clock.now();
            let links = self.read(|s| s.engine.links());
            let reached = |address: &str| links.iter().any(|l| l.address == address && l.reached);
            let due = self.pins.due(now, reached);
            if !due.is_empty() {
                tracing::info!(?due, "unpinned: never reached since /add");
                self.drive(|engine, _| {
                    for address in &due {
                        engine.unpin(address);
                    }
                });
            }
        }
    }

    /// Has the engine forget every message whose store write failed, so that it is fetched
    /// again (by reconciliation, or the next copy a peer pushes) rather than believed held.
    pub async fn run_forgetting(self: Arc<Self>, mut failures: crate::store::Failures) {
        loop {
            let ids = tokio::select! {
                ids = failures.recv() => match ids {
                    Some(ids) => ids,
                    None => return,
                },
                _ = self.shutdown.cancelled() => return,
            };
            let forgotten = self.drive(|engine, _| engine.forget(&ids));
            self.metrics
                .store_failures_seen
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                messages = ids.len(),
                forgotten,
                "store write failed: its messages are forgotten, to be fetched again"
            );
        }
    }

    pub async fn run_timer(self: Arc<Self>) {
        loop {
            let deadline = self.read(|s| s.engine.poll_timeout());
            self.wake_at
                .store(deadline.unwrap_or(u64::MAX), Ordering::Relaxed);
            // Checked again after publishing when we sleep until: a call in between may
            // already have moved the deadline (and its notification is then kept for us).
            let sleep = match deadline {
                Some(at) => tokio::time::Instant::from_std(self.clock.instant_at(at)),
                None => tokio::time::Instant::now() + Duration::from_secs(3_600),
            };
            tokio::select! {
                _ = tokio::time::sleep_until(sleep) => {}
                _ = self.wake.notified() => continue,
                _ = self.shutdown.cancelled() => return,
            }
            self.drive(|engine, now| engine.handle_timeout(now));
        }
    }
}

/// What the driver asks a connection task to send.
#[derive(Debug)]
pub enum Outgoing {
    Text(Arc<str>),
    Ping,
}

/// How a connection's send queue stands, shared by its task and the driver.
#[derive(Debug, Default)]
pub struct Flow {
    /// Whether the queue presses (counted in [`Shared::pressure`]).
    pressing: AtomicBool,
    /// Since when, in the clock's milliseconds.
    since: AtomicU64,
    /// Whether the engine was told the peer is backed up.
    backed_up: AtomicBool,
}

impl Flow {
    /// The queue holds `queued` frames after a send at `now`.
    fn sent(&self, queued: usize, now: u64, pressure: &watch::Sender<usize>) {
        if queued > BACKLOG
            && !self.backed_up.load(Ordering::Relaxed)
            && !self.pressing.swap(true, Ordering::Relaxed)
        {
            self.since.store(now, Ordering::Relaxed);
            pressure.send_modify(|n| *n += 1);
        }
    }

    /// Stops pressing, if it did.
    fn release(&self, pressure: &watch::Sender<usize>) {
        if self.pressing.swap(false, Ordering::Relaxed) {
            pressure.send_modify(|n| *n = n.saturating_sub(1));
        }
    }

    fn pressing_since(&self, now: u64, at_least: Duration) -> bool {
        self.pressing.load(Ordering::Relaxed)
            && now.saturating_sub(self.since.load(Ordering::Relaxed)) >= at_least.as_millis() as u64
    }
}

/// The driver's end of a connection task.
#[derive(Debug)]
pub struct ConnHandle {
    tx: mpsc::Sender<Outgoing>,
    kill: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
    flow: Arc<Flow>,
}

impl ConnHandle {
    /// The handle of a connection task that drains `tx`'s queue, ends when `kill` is
    /// cancelled, and then tells its peer `reason`.
    pub fn new(
        tx: mpsc::Sender<Outgoing>,
        kill: CancellationToken,
        reason: Arc<Mutex<Option<String>>>,
        flow: Arc<Flow>,
    ) -> Self {
        Self {
            tx,
            kill,
            reason,
            flow,
        }
    }

    fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a frame; false if the queue is full.
    pub fn try_send(&self, out: Outgoing) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // The task is already ending; its close will reach the engine.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// Makes the task send a close frame with `reason` and end.
    pub fn close(self, reason: String) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        self.kill.cancel();
    }
}

/// This node's side of the driver contract: frames into the peers' bounded queues, dials and
/// fetches spawned off the lock, deliveries into the store and to stream subscribers.
struct NodeDriver<'a> {
    shared: &'a Arc<Shared>,
    conns: &'a mut HashMap<ConnId, ConnHandle>,
    ack: Option<(MsgId, Ack)>,
    now: u64,
}

impl Driver for NodeDriver<'_> {
    fn send(&mut self, conn: ConnId, frame: Arc<str>) -> bool {
        let Some(h) = self.conns.get(&conn) else {
            return true;
        };
        if !h.try_send(Outgoing::Text(frame)) {
            return false;
        }
        h.flow.sent(h.queued(), self.now, &self.shared.pressure);
        true
    }

    fn ping(&mut self, conn: ConnId) {
        if let Some(handle) = self.conns.get(&conn) {
            handle.try_send(Outgoing::Ping);
        }
    }

    fn dial(&mut self, conn: ConnId, address: String) {
        // The connection module's dialer opens it (and would have ended only at shutdown).
        let _ = self.shared.dials.send((conn, address));
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(handle) = self.conns.remove(&conn) {
            handle.flow.release(&self.shared.pressure);
            if reason == CloseReason::SendQueueFull {
                // Only a peer that let a backed-up queue fill (it is told of messages, not
                // pushed them) gets here: memory stays bounded.
                tracing::warn!(%conn, "send queue full; dropping peer");
                self.shared
                    .metrics
                    .queue_drops_seen
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                tracing::debug!(%conn, %reason, "closing peer");
            }
            handle.close(reason.to_string());
        }
    }

    fn deliver(&mut self, msg: Message, _hops: Option<u32>, from: Option<NodeId>) {
        tracing::debug!(id = %msg.id, author = %msg.author, "delivered");
        if let Some(demo) = &self.shared.demo {
            demo.hub.note(msg.id, demo.node, from);
        }
        let waiting = match self.ack.take() {
            Some((id, tx)) if id == msg.id => Some(tx),
            other => {
                self.ack = other;
                None
            }
        };
        self.shared.store.insert(msg, waiting);
    }

    fn fetch(&mut self, conn: ConnId, ids: Vec<MsgId>) -> Option<Vec<Message>> {
        // The store is read off the engine's lock; the answer comes back through `provide`.
        self.shared.spawn_fetch(conn, ids);
        None
    }

    fn evict(&mut self, before: u64, count: usize) {
        tracing::info!(
            count,
            before,
            "evicting messages older than the retention window"
        );
        // Their ids are remembered one more window (at least a day), for a 410 to a cursor
        // naming one.
        let window = self
            .shared
            .retention
            .unwrap_or(0)
            .max(hearsay_proto::history::DAY);
        self.shared
            .store
            .evict(before, before.saturating_sub(window), None);
    }
}
