//! Serving the node's routes on a listener: one hyper connection per client (HTTP/1.1 with
//! upgrades, for WebSockets), over TLS when the node has a certificate, and a graceful stop
//! that lets every connection finish.
//!
//! warp's own server takes only its own kinds of listener, so this is its accept loop with
//! TLS added. The client's address is recorded in each request ([`ClientAddr`]) and read by
//! the routes through [`client_addr`], in place of `warp::addr::remote`, which only warp's
//! server fills in.
//!
//! Behind a reverse proxy every request comes from the proxy. `--trust-proxy CIDR` names the
//! proxies ([`Proxies`]): for a request from one of them, and only then, the client is the
//! address the proxy put in `Forwarded` (RFC 7239) or `X-Forwarded-For`, read from the right
//! past any further trusted proxy. Every rule that looks at a client's address (per-address
//! limits and caps, loopback-only paths) sees that one.

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::{Filter, Reply};

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The reverse proxies whose word on the client's address is taken (`--trust-proxy`).
#[derive(Debug, Clone, Default)]
pub struct Proxies(Vec<ipnet::IpNet>);

impl Proxies {
    /// Parses CIDRs (`10.0.0.0/8`) and single addresses (`127.0.0.1`).
    pub fn new(cidrs: &[String]) -> Result<Proxies, String> {
        cidrs
            .iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("--trust-proxy {c:?} is not an address or a CIDR like 10.0.0.0/8")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Proxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Who sent a request that reached us from `peer`, with these headers.
    pub fn client(&self, peer: SocketAddr, headers: &hyper::HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let forwarded: Vec<Option<IpAddr>> = if headers.contains_key("forwarded") {
            headers
                .get_all("forwarded")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|entry| {
                    entry
                        .split(';')
                        .find_map(|pair| {
                            let (k, v) = pair.trim().split_once('=')?;
                            k.eq_ignore_ascii_case("for").then_some(v)
                        })
                        .and_then(parse_node)
                })
                .collect()
        } else {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(parse_node)
                .collect()
        };
        // From the right: each hop was added by the one after it; the first that is not a
        // trusted proxy is the client. One that cannot be read ends the trust there.
        for hop in forwarded.into_iter().rev() {
            match hop {
                Some(ip) if self.trusts(ip) => continue,
                Some(ip) => return SocketAddr::new(ip, 0),
                None => break,
            }
        }
        peer
    }
}

/// An address as proxies write it: `203.0.113.7`, `"[2001:db8::1]:4711"`, `198.51.100.2:80`.
fn parse_node(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    v.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// The address the request came from (`None` only where no server recorded one).
pub fn client_addr() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Copy {
    warp::ext::optional::<ClientAddr>().map(|a: Option<ClientAddr>| a.map(|a| a.0))
}

/// A TLS handshake that takes longer than this is dropped (a client that connects and says
/// nothing must not hold a task for ever).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `routes` on `listener` until `shutdown`, then waits for open connections to end.
pub async fn serve<F, R>(
    listener: TcpListener,
    routes: F,
    tls: Option<Arc<rustls::ServerConfig>>,
    proxies: Arc<Proxies>,
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
        let service = warp::service(routes.clone());
        let proxies = Arc::clone(&proxies);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let client = proxies.client(addr, request.headers());
            request.extensions_mut().insert(ClientAddr(client));
            let mut service = service.clone();
            async move { tower_service::Service::call(&mut service, request).await }
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().pipeline_flush(true);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_trusted_proxy_is_believed_and_the_rightmost_untrusted_hop_is_the_client() {
        let proxies = Proxies::new(&["10.0.0.0/8".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:5000".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = headers(&[("x-forwarded-for", "203.0.113.1, 192.0.2.7, 10.9.9.9")]);
        // Anyone can write the header: from a stranger it is ignored.
        assert_eq!(proxies.client(stranger, &xff), stranger);
        // Through two proxies: the client is the first hop not one of ours (203.0.113.1 may
        // have been written by 192.0.2.7 itself).
        assert_eq!(proxies.client(proxy, &xff).ip(), ip("192.0.2.7"));
        let fwd = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=https, for="[2001:db8::1]:4711""#,
        )]);
        assert_eq!(proxies.client(proxy, &fwd).ip(), ip("2001:db8::1"));
        // Unreadable, or no header: the proxy itself.
        let hidden = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(proxies.client(proxy, &hidden), proxy);
        assert_eq!(proxies.client(proxy, &headers(&[])), proxy);
        assert!(Proxies::new(&["not a cidr".to_owned()]).is_err());
    }
}
