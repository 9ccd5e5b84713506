//! The driver: owns the engine, carries out its outputs, and runs its timer.
//!
//! The engine sits behind a std `Mutex`: every call into it is short and never awaits, and
//! carrying out its outputs is non-blocking too (a `try_send` into a peer's bounded queue, a
//! spawned dial, a store insert), so the lock is never held across an `.await`. A tokio mutex
//! would buy nothing and cost more.

use crate::clock::Clock;
use crate::conn::{self, ConnHandle, Outgoing};
use crate::store::{Ack, Store, StoreError};
use hearsay_proto::{ConnId, Engine, Output};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a dial may take before it counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

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
}

impl Shared {
    pub fn new(
        engine: Engine,
        store: Arc<dyn Store>,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
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
        })
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
    fn execute(
        self: &Arc<Self>,
        state: &mut State,
        now: u64,
        mut ack: Option<(hearsay_proto::MsgId, Ack)>,
    ) {
        loop {
            let mut overflowed = Vec::new();
            while let Some(output) = state.engine.poll_output() {
                match output {
                    Output::Send { conn, frame } => {
                        if let Some(handle) = state.conns.get(&conn)
                            && !handle.try_send(Outgoing::Text(frame))
                        {
                            overflowed.push(conn);
                        }
                    }
                    Output::Ping { conn } => {
                        if let Some(handle) = state.conns.get(&conn) {
                            handle.try_send(Outgoing::Ping);
                        }
                    }
                    Output::Close { conn, reason } => {
                        if let Some(handle) = state.conns.remove(&conn) {
                            tracing::debug!(%conn, %reason, "closing peer");
                            handle.close(reason);
                        }
                    }
                    Output::Dial { conn, address } => self.spawn_dial(conn, address),
                    // Only pages wait for acknowledgements and draw messages travelling.
                    Output::Acked { .. } | Output::Traced(_) => {}
                    Output::Fetch { conn, ids } => self.spawn_fetch(conn, ids),
                    Output::Deliver(msg) => {
                        tracing::debug!(id = %msg.id, origin = %msg.origin, "delivered");
                        let waiting = match ack.take() {
                            Some((id, tx)) if id == msg.id => Some(tx),
                            other => {
                                ack = other;
                                None
                            }
                        };
                        self.store.insert(msg, waiting);
                    }
                }
            }
            if overflowed.is_empty() {
                break;
            }
            // A peer that cannot keep up is dropped rather than allowed to grow memory or to
            // slow everyone else down; the engine hears it as a close.
            for conn in overflowed {
                if let Some(handle) = state.conns.remove(&conn) {
                    tracing::warn!(%conn, "send queue full; dropping peer");
                    self.metrics
                        .queue_drops_seen
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    handle.close("send queue full: peer too slow".to_owned());
                }
                state.engine.closed(conn, Some("send queue full"), now);
            }
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
                Ok(Err(e)) => {
                    tracing::warn!(%conn, error = %e, "cannot load messages a peer asked for")
                }
                Err(e) => tracing::warn!(%conn, error = %e, "message load task failed"),
            }
        });
    }

    fn spawn_dial(self: &Arc<Self>, conn: ConnId, address: String) {
        let shared = Arc::clone(self);
        self.tracker.spawn(async move {
            let attempt =
                tokio::time::timeout(DIAL_TIMEOUT, tokio_tungstenite::connect_async(&address));
            let result = tokio::select! {
                r = attempt => r,
                _ = shared.shutdown.cancelled() => return,
            };
            match result {
                Ok(Ok((ws, _response))) => {
                    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                        let _ = tcp.set_nodelay(true);
                    }
                    tracing::debug!(%conn, %address, "dialed");
                    conn::run(shared, Some(conn), ws).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%conn, %address, error = %e, "dial failed");
                    let reason = e.to_string();
                    shared.drive(|engine, now| engine.dial_failed(conn, &reason, now));
                }
                Err(_) => {
                    tracing::debug!(%conn, %address, "dial timed out");
                    shared.drive(|engine, now| engine.dial_failed(conn, "dial timed out", now));
                }
            }
        });
    }

    /// Runs the engine's timer until shutdown.
    pub async fn run_timer(self: Arc<Self>) {
        loop {
            let deadline = self.read(|s| s.engine.poll_timeout());
            let at = tokio::time::Instant::from_std(self.clock.instant_at(deadline));
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.shutdown.cancelled() => return,
            }
            self.drive(|engine, now| engine.handle_timeout(now));
        }
    }
}
