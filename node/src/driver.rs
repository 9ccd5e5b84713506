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

use crate::clock::Clock;
use crate::store::{Ack, Store, StoreError};
use hearsay_proto::{CloseReason, ConnId, Driver, Engine, Message, MsgId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct State {
    pub engine: Engine,
    conns: HashMap<ConnId, ConnHandle>,
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
}

impl Shared {
    /// The shared state, and the dials it will ask for (hand them to `conn::dialer`).
    pub fn new(
        engine: Engine,
        store: Arc<dyn Store>,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<(ConnId, String)>) {
        let (dials, dial_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Self {
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
    ) -> Result<Result<hearsay_proto::Message, hearsay_proto::PublishError>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let now = self.clock.now();
        let published = {
            let mut state = self.lock();
            let published = state.engine.publish(text, now);
            let ack = published.as_ref().ok().map(|m| (m.id, tx));
            self.execute(&mut state, now, ack);
            published
        };
        match published {
            Ok(msg) => {
                rx.await.map_err(|_| StoreError::Closed)??;
                Ok(Ok(msg))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// A peer connected to us: the engine names the connection and its queue is registered
    /// under the same lock, so no output for it can be missed.
    pub fn accept(self: &Arc<Self>, handle: ConnHandle) -> ConnId {
        let now = self.clock.now();
        let mut state = self.lock();
        let conn = state.engine.accepted(now);
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
        state.conns.remove(&conn);
        state.engine.closed(conn, reason, now);
        self.execute(&mut state, now, None);
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
        };
        engine.drain(&mut driver, now);
        // A call may have brought the next deadline forward: wake the timer if so.
        if let Some(next) = engine.poll_timeout()
            && next < self.wake_at.load(Ordering::Relaxed)
        {
            self.wake.notify_one();
        }
    }

    /// Loads what a peer asked for off the engine's lock, then hands it to the engine.
    fn spawn_fetch(self: &Arc<Self>, conn: ConnId, ids: Vec<hearsay_proto::MsgId>) {
        let shared = Arc::clone(self);
        self.tracker.spawn(async move {
            let store = Arc::clone(&shared.store);
            let found = tokio::task::spawn_blocking(move || store.get_many(&ids)).await;
            match found {
                Ok(Ok(messages)) => shared.drive(|engine, _| engine.provide(conn, messages)),
                // Answer with nothing rather than not at all: the peer waits for the end of
                // an answer before it asks again.
                Ok(Err(e)) => {
                    tracing::warn!(%conn, error = %e, "cannot load messages a peer asked for");
                    shared.drive(|engine, _| engine.provide(conn, Vec::new()));
                }
                Err(e) => {
                    tracing::warn!(%conn, error = %e, "message load task failed");
                    shared.drive(|engine, _| engine.provide(conn, Vec::new()));
                }
            }
        });
    }

    /// Runs the engine's timer until shutdown: sleeps until the engine's next deadline, or
    /// until a call brings it forward.
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

/// The driver's end of a connection task.
#[derive(Debug)]
pub struct ConnHandle {
    tx: mpsc::Sender<Outgoing>,
    kill: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl ConnHandle {
    /// The handle of a connection task that drains `tx`'s queue, ends when `kill` is
    /// cancelled, and then tells its peer `reason`.
    pub fn new(
        tx: mpsc::Sender<Outgoing>,
        kill: CancellationToken,
        reason: Arc<Mutex<Option<String>>>,
    ) -> Self {
        Self { tx, kill, reason }
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
}

impl Driver for NodeDriver<'_> {
    fn send(&mut self, conn: ConnId, frame: Arc<str>) -> bool {
        self.conns
            .get(&conn)
            .is_none_or(|h| h.try_send(Outgoing::Text(frame)))
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
            if reason == CloseReason::SendQueueFull {
                // A peer that cannot keep up is dropped rather than allowed to grow memory.
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

    fn deliver(&mut self, msg: Message, _hops: Option<u32>) {
        tracing::debug!(id = %msg.id, origin = %msg.origin, "delivered");
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
}
