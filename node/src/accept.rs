//! Serving the node's routes on a listener: one hyper connection per client (HTTP/1.1 with
//! upgrades, for WebSockets), over TLS when the node has a certificate, and a graceful stop
//! that lets every connection finish.
//!
//! warp's own server takes only its own kinds of listener, so this is its accept loop with
//! TLS added. Every request is told who sent it ([`door::Client`], read by the routes through
//! [`client`]): the connection's address, or the client a trusted proxy names.
//!
//! A request asking for a name that is not this node's is answered 421 here, before any
//! route sees it (see [`door::Hosts`]).
//!
//! Nothing here waits on a client for ever. A client has [`HEADER_READ_TIMEOUT`] to send a
//! request's headers, and a kept-alive connection as long to start its next request; a TLS
//! handshake has [`HANDSHAKE_TIMEOUT`]. A response that streams (`/api/stream`) and a socket
//! upgraded to a WebSocket are not cut by either. One client address holds at most
//! [`HTTP_PER_ADDRESS`] connections at once, the node [`HTTP_CONNECTIONS`] in all: a
//! connection from this machine or a trusted proxy is not counted when it is accepted, and a
//! proxied client's requests are counted under its own address once their headers are read.

use crate::door::{self, Client, Hosts, Proxies};
use crate::limit::{ConnectionCaps, Place};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::{Filter, Reply};

/// Who the request came from (`None` only where no server recorded it).
pub fn client() -> impl Filter<Extract = (Option<Client>,), Error = Infallible> + Copy {
    warp::ext::optional::<Client>()
}

/// How long a client may take to send a request's headers, and a kept-alive connection to
/// start its next request: long enough for a phone on a slow link.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most HTTP connections one client address holds at once. A browser opens six to a host,
/// and a page a WebSocket or two beside them; a proxy in front of a crowd is not counted.
pub const HTTP_PER_ADDRESS: usize = 32;

/// Most HTTP connections the node holds at once, from everyone (each is a task and a file
/// descriptor; the WebSockets among them are also held to their own caps).
pub const HTTP_CONNECTIONS: usize = 8_192;

/// A TLS handshake that takes longer than this is dropped (a client that connects and says
/// nothing must not hold a task for ever).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a listener's door is made of: the trusted proxies, the node's names, and the caps on
/// HTTP connections (shared by the node's listeners).
#[derive(Clone)]
pub struct Door {
    pub proxies: Arc<Proxies>,
    pub hosts: Arc<Hosts>,
    pub caps: Arc<ConnectionCaps>,
}

impl Door {
    /// Every HTTP connection's place, counted per client address (see the module docs).
    pub fn caps() -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps::new(
            HTTP_CONNECTIONS,
            HTTP_PER_ADDRESS,
            false,
        ))
    }
}

/// Serves `routes` on `listener` until `shutdown`, then waits for open connections to end.
pub async fn serve<F, R>(
    listener: TcpListener,
    routes: F,
    tls: Option<Arc<rustls::ServerConfig>>,
    door: Door,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // This machine and the trusted proxies are not counted here: a proxied client is,
        // under its own address, once its request's headers are read.
        let exempt = addr.ip().to_canonical().is_loopback() || door.proxies.trusts(addr.ip());
        let place: Place = match door.caps.open((!exempt).then(|| addr.ip().to_canonical())) {
            Ok(place) => place,
            Err(why) => {
                tracing::debug!(%addr, %why, "connection refused");
                continue;
            }
        };
        let service = warp::service(routes.clone());
        let door_here = door.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let client = door_here
                .proxies
                .client(addr, request.headers(), &door_here.hosts);
            let misdirected = door_here.hosts.refuse(request.headers(), &client);
            let held = client
                .forwarded
                .then(|| door_here.caps.open(Some(client.limited_as())));
            request.extensions_mut().insert(client);
            let mut service = service.clone();
            async move {
                if let Some(why) = misdirected {
                    return Ok(door::refusal(StatusCode::MISDIRECTED_REQUEST, &why, None));
                }
                if let Some(Err(why)) = held {
                    let status = StatusCode::SERVICE_UNAVAILABLE;
                    return Ok(door::refusal(status, &why, Some(10)));
                }
                let response = tower_service::Service::call(&mut service, request).await;
                drop(held);
                response
            }
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _place = place;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .pipeline_flush(true)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let result = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
