//! One task per WebSocket: it writes what the driver queued for the peer and hands what the
//! peer sends to the engine; and the dialer, which opens the WebSockets the engine asks for.
//!
//! A task reads its peer only while no send queue presses (see `driver`'s flow control), and
//! only as fast as the peer's frame and byte rates allow (`Limits::peer_frames`,
//! `peer_bytes`), so a fast sender is slowed, never dropped. It writes in batches, flushing once per batch. A
//! peer that takes nothing for [`STALL`] is closed with that reason. The queue is bounded
//! ([`QUEUE_CAPACITY`]) as a last line for memory. Frames arrive as `Arc<str>` encoded once for every peer they go to. Accepted
//! sockets (warp) and dialed ones (tokio-tungstenite) are different types, so the loop is
//! generic over [`WsMessage`]. This module uses the driver; the driver never calls in here
//! (it asks for dials through a channel), so the two do not depend on each other in a circle.

use crate::driver::{ConnHandle, Flow, Outgoing, SLOW_AFTER, Shared};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hearsay_proto::{ConnId, TokenBucket};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Most frames queued for one peer. A backed-up peer is only told of new messages, so its
/// queue grows slowly; one that fills it anyway is dropped, to bound memory.
pub const QUEUE_CAPACITY: usize = 16_384;

/// A peer that takes no frame for this long is closed.
pub const STALL: Duration = Duration::from_secs(30);

/// Most frames written before a flush.
const BATCH: usize = 64;

/// Addresses whose last dial failure is remembered (so the log says it once).
const DIAL_FAILURES_KEPT: usize = 1_024;

/// How long a dial may take before it counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens every WebSocket the engine asks for, until shutdown.
pub async fn dialer(shared: Arc<Shared>, mut dials: mpsc::UnboundedReceiver<(ConnId, String)>) {
    loop {
        let next = tokio::select! {
            d = dials.recv() => d,
            _ = shared.shutdown.cancelled() => return,
        };
        let Some((conn, address)) = next else { return };
        let tracker = shared.tracker.clone();
        tracker.spawn(dial(Arc::clone(&shared), conn, address));
    }
}

async fn dial(shared: Arc<Shared>, conn: ConnId, address: String) {
    let attempt = tokio::time::timeout(DIAL_TIMEOUT, open(&shared, &address));
    let result = tokio::select! {
        r = attempt => r,
        _ = shared.shutdown.cancelled() => return,
    };
    let reason = match result {
        Ok(Ok(ws)) => {
            tracing::debug!(%conn, %address, "dialed");
            if shared
                .dial_failures
                .lock()
                .unwrap()
                .remove(&address)
                .is_some()
            {
                tracing::info!(%address, "dial succeeded again");
            }
            let (ws, peer) = ws;
            let addresses = Addresses {
                peer: Some(peer),
                ..Addresses::default()
            };
            run(shared, Some(conn), addresses, false, ws).await;
            return;
        }
        Ok(Err(reason)) => reason,
        Err(_) => "dial timed out".to_owned(),
    };
    // Said once per address and reason, not at every retry. (Peers can name many addresses
    // over months: past a bound the memory of what was said starts afresh.)
    let said = {
        let mut failures = shared.dial_failures.lock().unwrap();
        if failures.len() >= DIAL_FAILURES_KEPT && !failures.contains_key(&address) {
            failures.clear();
        }
        failures.insert(address.clone(), reason.clone())
    };
    if said.as_ref() != Some(&reason) {
        tracing::info!(%address, error = %reason, "dial failed (retrying with backoff)");
    } else {
        tracing::debug!(%conn, %address, error = %reason, "dial failed");
    }
    shared.drive(|engine, now| engine.dial_failed(conn, &reason, now));
}

/// Resolves `address`, connects to the first address the dialing rules allow (so the address
/// checked is the one connected to) and opens the WebSocket over it; says which address that
/// was. In a demo cut in two, an address on the other side fails as a dial would.
async fn open(
    shared: &Shared,
    address: &str,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        std::net::IpAddr,
    ),
    String,
> {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let targets = crate::dialing::resolve(&shared.dial_rules, address).await?;
    let mut why = format!("{address} resolved to no address");
    for target in targets {
        if let Some(refused) = shared.demo.as_ref().and_then(|d| d.refuses(target.ip())) {
            why = refused;
            continue;
        }
        match connect_from(shared.dial_rules.source_for(&target), target).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                let limits = WebSocketConfig::default()
                    .max_message_size(Some(hearsay_proto::wire::MAX_FRAME_BYTES))
                    .max_frame_size(Some(hearsay_proto::wire::MAX_FRAME_BYTES));
                // `wss://` over TLS checked against the node's roots; `ws://` as it is.
                let tls = tokio_tungstenite::Connector::Rustls(Arc::clone(&shared.tls));
                return tokio_tungstenite::client_async_tls_with_config(
                    address,
                    tcp,
                    Some(limits),
                    Some(tls),
                )
                .await
                .map(|(ws, _response)| (ws, target.ip()))
                .map_err(|e| e.to_string());
            }
            Err(e) => why = format!("cannot connect to {target}: {e}"),
        }
    }
    Err(why)
}

/// What a connection task needs to know about a message, whichever library made it.
pub enum Incoming {
    Text(String),
    Pong,
    /// The peer's close, with its reason if it gave one.
    Close(Option<String>),
    Binary,
    Other,
}

pub trait WsMessage: Sized {
    fn text(frame: &str) -> Self;
    fn ping() -> Self;
    fn close(reason: &str) -> Self;
    fn classify(self) -> Incoming;
}

/// Close reasons are limited to 123 bytes by the WebSocket spec; cut on a char boundary.
fn short_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl WsMessage for warp::ws::Message {
    fn text(frame: &str) -> Self {
        warp::ws::Message::text(frame)
    }
    fn ping() -> Self {
        warp::ws::Message::ping(Vec::new())
    }
    fn close(reason: &str) -> Self {
        warp::ws::Message::close_with(1000u16, short_reason(reason).to_owned())
    }
    fn classify(self) -> Incoming {
        if self.is_text() {
            match self.to_str() {
                Ok(s) => Incoming::Text(s.to_owned()),
                Err(()) => Incoming::Binary,
            }
        } else if self.is_pong() {
            Incoming::Pong
        } else if self.is_close() {
            Incoming::Close(self.close_frame().map(|(_, r)| r.to_owned()))
        } else if self.is_binary() {
            Incoming::Binary
        } else {
            Incoming::Other
        }
    }
}

impl WsMessage for tokio_tungstenite::tungstenite::Message {
    fn text(frame: &str) -> Self {
        Self::text(frame)
    }
    fn ping() -> Self {
        Self::Ping(Default::default())
    }
    fn close(reason: &str) -> Self {
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
        Self::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: short_reason(reason).into(),
        }))
    }
    fn classify(self) -> Incoming {
        match self {
            Self::Text(t) => Incoming::Text(t.as_str().to_owned()),
            Self::Pong(_) => Incoming::Pong,
            Self::Close(frame) => Incoming::Close(frame.map(|f| f.reason.to_string())),
            Self::Binary(_) => Incoming::Binary,
            _ => Incoming::Other,
        }
    }
}

/// The addresses a connection is known by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Addresses {
    /// The client address an accepted socket is capped under (none if exempt).
    pub capped: Option<std::net::IpAddr>,
    /// The one it is metered under, exempt or not.
    pub metered: Option<std::net::IpAddr>,
    /// The address at the other end, for a demo's cut (see `hub`).
    pub peer: Option<std::net::IpAddr>,
}

/// Runs one connection to its end. `dialed` is the engine's id for a dial we made; accepted
/// sockets get theirs from the engine here, under their `addresses`.
pub async fn run<S, M, E>(
    shared: Arc<Shared>,
    dialed: Option<ConnId>,
    addresses: Addresses,
    foreign: bool,
    socket: S,
) where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Unpin + Send,
    M: WsMessage + Send,
    E: std::fmt::Display,
{
    let (tx, mut rx) = mpsc::channel(QUEUE_CAPACITY);
    let kill = CancellationToken::new();
    let reason = Arc::new(Mutex::new(None));
    let flow = Arc::new(Flow::default());
    let handle = ConnHandle::new(tx, kill.clone(), Arc::clone(&reason), Arc::clone(&flow));
    let conn = match dialed {
        Some(conn) => {
            shared.opened(conn, handle);
            conn
        }
        None => shared.accept(handle, addresses.capped, addresses.metered, foreign),
    };
    let mut pressure = shared.pressure.subscribe();
    // In a demo, a cut between this node and the peer closes the link.
    let mut cut = shared
        .demo
        .as_ref()
        .zip(addresses.peer)
        .map(|(demo, peer)| {
            let mut cut = demo.hub.cut();
            // Checked at once too: a cut made while this link was being opened (after the
            // dial or the upgrade was let through) would not show as a change.
            cut.mark_changed();
            (demo.clone(), peer, cut)
        });
    // What this peer may send; beyond it, its socket is read later (see `limit`).
    let limits = shared.read(|s| s.engine.config().limits.clone());
    let (mut frames, mut bytes) = {
        let now = shared.clock.now();
        (
            TokenBucket::new(limits.peer_frames, now),
            TokenBucket::new(limits.peer_bytes, now),
        )
    };
    let mut read_after = tokio::time::Instant::now();
    // While some queue presses: when readers stop waiting for it.
    let mut patience: Option<tokio::time::Instant> = None;
    let (mut sink, mut stream) = socket.split();
    let end = loop {
        let paused = *pressure.borrow_and_update() > 0;
        if !paused {
            patience = None;
        } else if patience.is_none() {
            patience = Some(tokio::time::Instant::now() + SLOW_AFTER);
        }
        let give_up = patience.unwrap_or_else(tokio::time::Instant::now);
        let over_rate = read_after > tokio::time::Instant::now();
        tokio::select! {
            _ = kill.cancelled() => {
                break End::WeClose(reason.lock().unwrap_or_else(|p| p.into_inner()).take());
            }
            _ = shared.shutdown.cancelled() => break End::WeClose(Some("node shutting down".to_owned())),
            out = rx.recv() => {
                // The driver dropped its handle: it closed this peer (a reason is set) or
                // the node is going away.
                let Some(first) = out else {
                    break End::WeClose(reason.lock().unwrap_or_else(|p| p.into_inner()).take());
                };
                let write = async {
                    sink.feed(first.into_message()).await?;
                    for _ in 1..BATCH {
                        match rx.try_recv() {
                            Ok(more) => sink.feed(more.into_message()).await?,
                            Err(_) => break,
                        }
                    }
                    sink.flush().await
                };
                // A peer that reads nothing blocks the write: the engine may close it
                // meanwhile (keepalive), and the node may stop. The write is polled first, so
                // what it takes is in the socket's buffer before a close can interrupt it (a
                // seed must get the SOCKETS we send just before hanging up), and the graceful
                // close below flushes it.
                let written = tokio::select! {
                    biased;
                    w = tokio::time::timeout(STALL, write) => w,
                    _ = kill.cancelled() => {
                        break End::WeClose(reason.lock().unwrap_or_else(|p| p.into_inner()).take());
                    }
                    _ = shared.shutdown.cancelled() => break End::WeClose(Some("node shutting down".to_owned())),
                };
                match written {
                    Ok(Ok(())) => shared.drained(conn, &flow, rx.len()),
                    Ok(Err(e)) => break End::Lost(e.to_string()),
                    Err(_) => break End::WeClose(Some(format!(
                        "peer stopped reading: nothing could be sent for {} s",
                        STALL.as_secs()
                    ))),
                }
            }
            _ = pressure.changed(), if paused => {}
            changed = async { cut.as_mut().map(|c| c.2.changed()).expect("guarded").await }, if cut.is_some() => {
                match (changed, &cut) {
                    (Ok(()), Some((demo, peer, _))) => {
                        if let Some(why) = demo.refuses(*peer) {
                            break End::WeClose(Some(why));
                        }
                    }
                    // The demo is gone: nothing will cut again.
                    _ => cut = None,
                }
            }
            _ = tokio::time::sleep_until(give_up), if paused => {
                shared.mark_slow();
                patience = None;
            }
            _ = tokio::time::sleep_until(read_after), if over_rate && !paused => {}
            incoming = stream.next(), if !paused && !over_rate => match incoming {
                Some(Ok(msg)) => match msg.classify() {
                    Incoming::Text(text) => {
                        let now = shared.clock.now();
                        let wait = frames
                            .charge(1.0, now)
                            .max(bytes.charge(text.len() as f64, now));
                        if wait > 0 {
                            read_after = tokio::time::Instant::now() + Duration::from_millis(wait);
                        }
                        // Decoded and its signatures checked here, on this socket's task,
                        // so the cores share that work and the engine's lock is held less.
                        let inbound = hearsay_proto::wire::Inbound::read_checked(&text);
                        shared.drive(|e, now| e.inbound(conn, inbound, now))
                    }
                    Incoming::Pong => shared.drive(|e, now| e.transport_pong(conn, now)),
                    Incoming::Binary => shared.drive(|e, now| e.unsupported_frame(conn, now)),
                    Incoming::Close(why) => break End::PeerClosed(why),
                    Incoming::Other => {}
                },
                Some(Err(e)) => {
                    tracing::debug!(%conn, error = %e, "socket error");
                    // Say why, if the socket still takes it (a frame over the size limit
                    // leaves it open; a reset does not, and the close is then dropped).
                    break End::WeClose(Some(format!("socket error: {e}")));
                }
                None => break End::Lost("connection lost".to_owned()),
            },
        }
    };
    let reason = match end {
        End::WeClose(Some(reason)) => {
            close_gracefully(&mut sink, &mut stream, &mut rx, &reason).await;
            Some(reason)
        }
        End::WeClose(None) => None,
        End::PeerClosed(why) => why,
        End::Lost(why) => Some(why),
    };
    shared.closed(conn, reason.as_deref());
}

impl Outgoing {
    fn into_message<M: WsMessage>(self) -> M {
        match self {
            Outgoing::Text(frame) => M::text(&frame),
            Outgoing::Ping => M::ping(),
        }
    }
}

/// How a connection task's loop ended.
enum End {
    /// We are closing it (the engine closed the peer, or the node is stopping).
    WeClose(Option<String>),
    /// The peer sent a close frame, maybe with a reason.
    PeerClosed(Option<String>),
    /// The transport failed.
    Lost(String),
}

/// Sends what is still queued, then a close frame with `reason`, then waits for the peer's
/// close. Frames queued before the close still go out first (a seed we hang up on must get
/// the SOCKETS we sent it). Best effort and bounded: the peer may already be gone.
async fn close_gracefully<Si, St, M, E>(
    sink: &mut Si,
    stream: &mut St,
    rx: &mut mpsc::Receiver<Outgoing>,
    reason: &str,
) where
    Si: Sink<M> + Unpin,
    St: Stream<Item = Result<M, E>> + Unpin,
    M: WsMessage,
{
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(out) = rx.try_recv() {
            if matches!(out, Outgoing::Ping) {
                continue;
            }
            if sink.feed(out.into_message()).await.is_err() {
                return;
            }
        }
        if sink.send(M::close(reason)).await.is_err() {
            return;
        }
        // Complete the closing handshake: read until the peer's close. Dropping a socket with
        // unread input makes the kernel reset the connection, and the peer could lose our
        // close frame (and its reason) with it.
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg.classify(), Incoming::Close(_)) {
                break;
            }
        }
        let _ = sink.close().await;
    })
    .await;
}

/// Connects to `target`, from `source` if given (see `DialRules::source_for`).
async fn connect_from(
    source: Option<std::net::IpAddr>,
    target: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = source else {
        return tokio::net::TcpStream::connect(target).await;
    };
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind((source, 0).into())?;
    socket.connect(target).await
}
