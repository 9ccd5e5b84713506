//! The node's door: who a request comes from, and whether it may come in by the name it
//! asks for.
//!
//! **The client.** Behind a reverse proxy every request comes from the proxy. `--trust-proxy
//! CIDR` names the proxies ([`Proxies`]): for a request from one of them, and only then, the
//! client is the address in the one header that proxy sets, `X-Forwarded-For` by default or
//! `Forwarded` (RFC 7239) with `--proxy-header forwarded` ([`ProxyHeader`]), read from the
//! right past any further trusted proxy. Only that header is read: a proxy appends to
//! `X-Forwarded-For` but passes a client's own `Forwarded` on untouched, so reading both would
//! believe whichever the client wrote. A hop that cannot be read, or no header at all, leaves
//! the client unknown, and an unknown client is treated as a stranger: never as the proxy
//! itself (which is often this machine). A forwarded client is never this machine's operator,
//! whatever address it claims.
//!
//! **The name asked for.** A website can point a name of its own at 127.0.0.1 (DNS
//! rebinding), and then a visitor's browser reads and writes this node as if it were that
//! site. Rebinding needs a name, so `Host` is checked ([`Hosts`]): an IP literal or no `Host`
//! at all is served (the LAN, health checks); a name must be this node's advertised host, a
//! name given with `--host-name`, or `localhost` on a connection from this machine; any
//! other name is answered 421.
//!
//! **Browsers acting for another site.** A request or WebSocket whose `Origin` is not this
//! node's own (the host and port asked for), nor a web app `--allow-origin` names, comes
//! from a browser acting for that site. It is served as a stranger would be, whatever address
//! the browser is at: never the operator's exemptions, the caps of a remote page, and no seed
//! protocol (a page never speaks it).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use warp::http::HeaderMap;

/// Which header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeader {
    /// `X-Forwarded-For`: what Caddy and nginx (`$proxy_add_x_forwarded_for`) set.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239): for a proxy that writes it, and overwrites a client's.
    Forwarded,
}

impl std::str::FromStr for ProxyHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(format!(
                "--proxy-header {s:?}: forwarded or x-forwarded-for"
            )),
        }
    }
}

/// The reverse proxies whose word on the client's address is taken (`--trust-proxy`), and
/// the header they give it in.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    nets: Vec<ipnet::IpNet>,
    header: ProxyHeader,
}

/// Who a request came from, as far as this node can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address: the connection's own, or, from a trusted proxy, the one that
    /// proxy names. `None`: the proxy named none that could be read.
    pub ip: Option<IpAddr>,
    /// It came through a trusted proxy.
    pub forwarded: bool,
    /// A browser sent it for another site (see the module docs).
    pub foreign: bool,
}

impl Client {
    /// The connection's own address, no proxy, no other site: how tests and tools are seen.
    pub fn direct(ip: IpAddr) -> Client {
        Client {
            ip: Some(ip),
            forwarded: false,
            foreign: false,
        }
    }

    /// Whether this is the operator at this machine: a loopback connection, not proxied, not
    /// a browser acting for another site.
    pub fn is_local(&self) -> bool {
        !self.forwarded
            && !self.foreign
            && self.ip.is_some_and(|ip| ip.to_canonical().is_loopback())
    }

    /// The address per-address limits and caps count this client under. The operator's is
    /// loopback (which they exempt); anyone else who is on, or claims, loopback, and a client
    /// no proxy could name, share one stranger's address, which nothing exempts.
    pub fn limited_as(&self) -> IpAddr {
        match self.ip.map(|ip| ip.to_canonical()) {
            Some(ip) if self.is_local() || !ip.is_loopback() => ip,
            _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl Proxies {
    /// Parses CIDRs (`10.0.0.0/8`) and single addresses (`127.0.0.1`).
    pub fn new(cidrs: &[String], header: ProxyHeader) -> Result<Proxies, String> {
        let nets = cidrs
            .iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("--trust-proxy {c:?} is not an address or a CIDR like 10.0.0.0/8")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Proxies { nets, header })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Who sent a request that reached us from `peer`, with these headers (its `Origin`
    /// judged against `hosts`).
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap, hosts: &Hosts) -> Client {
        let foreign = hosts.foreign(headers);
        if !self.trusts(peer.ip()) {
            return Client {
                ip: Some(peer.ip()),
                forwarded: false,
                foreign,
            };
        }
        let values = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::to_owned)
                .collect::<Vec<String>>()
        };
        let hops: Vec<Option<IpAddr>> = match self.header {
            ProxyHeader::XForwardedFor => values("x-forwarded-for")
                .iter()
                .map(|v| parse_node(v))
                .collect(),
            ProxyHeader::Forwarded => values("forwarded")
                .iter()
                .map(|entry| {
                    entry
                        .split(';')
                        .find_map(|pair| {
                            let (k, v) = pair.trim().split_once('=')?;
                            k.eq_ignore_ascii_case("for").then_some(v)
                        })
                        .and_then(parse_node)
                })
                .collect(),
        };
        // From the right: each hop was added by the one after it; the first that is not a
        // trusted proxy is the client. One that cannot be read, or none left, and the client
        // is unknown.
        let mut ip = None;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(hop) if self.trusts(hop) => continue,
                Some(hop) => ip = Some(hop),
                None => {}
            }
            break;
        }
        Client {
            ip,
            forwarded: true,
            foreign,
        }
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

/// The names this node may be asked by (see the module docs), and the web apps that may use
/// it from a browser.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// Lower case, no port: the advertised host and every `--host-name`.
    names: Vec<String>,
    origins: crate::origin::Origins,
}

impl Hosts {
    pub fn new(names: impl IntoIterator<Item = String>, origins: crate::origin::Origins) -> Hosts {
        let mut list: Vec<String> = Vec::new();
        for name in names {
            let name = name
                .trim()
                .trim_end_matches('.')
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            if !name.is_empty() && !list.contains(&name) {
                list.push(name);
            }
        }
        Hosts {
            names: list,
            origins,
        }
    }

    /// The names accepted besides IP literals (for `/api/status`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Why a request with these headers, from `client`, is not served under the name it asks
    /// for (421), if it is not.
    pub fn refuse(&self, headers: &HeaderMap, client: &Client) -> Option<String> {
        let host = headers.get("host")?;
        let Some(name) = host.to_str().ok().and_then(host_name) else {
            return Some("the Host header is not a host name or address".to_owned());
        };
        if name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
        {
            return None;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let local_name = name == "localhost" || name.ends_with(".localhost");
        if self.names.contains(&name) || (local_name && client.is_local()) {
            return None;
        }
        Some(format!(
            "this node is not served as {name:?}: it answers to its own names ({}), localhost from this machine, and IP addresses (its operator can add a name with --host-name)",
            if self.names.is_empty() {
                "none set".to_owned()
            } else {
                self.names.join(", ")
            }
        ))
    }

    /// Whether a browser sent these headers for another site than this node.
    pub fn foreign(&self, headers: &HeaderMap) -> bool {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(origin) = get("origin") else {
            return false;
        };
        if self.origins.allows(origin) {
            return false;
        }
        !get("host").is_some_and(|host| crate::origin::same_host(origin, host))
    }
}

/// A request refused at the door: `status`, and why in JSON, as the routes answer.
pub fn refusal(
    status: warp::http::StatusCode,
    why: &str,
    retry_after: Option<u64>,
) -> warp::reply::Response {
    use warp::Reply;
    let body = warp::reply::json(&serde_json::json!({ "error": why }));
    let mut response = warp::reply::with_status(body, status).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(warp::http::header::RETRY_AFTER, secs.into());
    }
    response
}

/// The host of a `Host` header, without its port (`[::1]:3000` → `[::1]`).
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    if host.is_empty() {
        return None;
    }
    if host.starts_with('[') {
        return host.find(']').map(|end| &host[..=end]);
    }
    Some(match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_trusted_proxy_is_believed_and_only_in_the_header_it_sets() {
        let proxies = Proxies::new(
            &["10.0.0.0/8".to_owned(), "127.0.0.1".to_owned()],
            ProxyHeader::XForwardedFor,
        )
        .unwrap();
        let hosts = Hosts::default();
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:5000".parse().unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let xff = headers(&[("x-forwarded-for", "203.0.113.1, 192.0.2.7, 10.9.9.9")]);
        // Anyone can write the header: from a stranger it is ignored.
        let c = proxies.client(stranger, &xff, &hosts);
        assert_eq!((c.ip, c.forwarded), (Some(stranger.ip()), false));
        // Through two proxies: the client is the first hop not one of ours (203.0.113.1 may
        // have been written by 192.0.2.7 itself).
        assert_eq!(proxies.client(proxy, &xff, &hosts).ip, ip("192.0.2.7"));
        // A client's own Forwarded, passed on by the proxy, is not read: only the proxy's
        // X-Forwarded-For is.
        let spoof = headers(&[
            ("forwarded", "for=127.0.0.1"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert_eq!(proxies.client(proxy, &spoof, &hosts).ip, ip("203.0.113.5"));
        // Unreadable, or no header: unknown, never the proxy itself.
        let hidden = headers(&[("x-forwarded-for", "_hidden")]);
        assert_eq!(proxies.client(proxy, &hidden, &hosts).ip, None);
        assert_eq!(proxies.client(proxy, &headers(&[]), &hosts).ip, None);
        // A forwarded client is never this machine's operator, whatever it claims.
        let claim = headers(&[("x-forwarded-for", "127.0.0.1")]);
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let c = proxies.client(local, &claim, &hosts);
        assert!(!c.is_local());
        assert_eq!(c.limited_as(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        // With --proxy-header forwarded, that one is read instead.
        let rfc = Proxies::new(&["10.0.0.0/8".to_owned()], ProxyHeader::Forwarded).unwrap();
        let fwd = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=https, for="[2001:db8::1]:4711""#,
        )]);
        assert_eq!(rfc.client(proxy, &fwd, &hosts).ip, ip("2001:db8::1"));
        assert!(Proxies::new(&["not a cidr".to_owned()], ProxyHeader::default()).is_err());
    }

    #[test]
    fn a_name_is_served_only_if_it_is_ours_and_an_address_always() {
        let hosts = Hosts::new(
            ["Nodes.Example.org".to_owned()],
            crate::origin::Origins::default(),
        );
        let local = Client::direct("127.0.0.1".parse().unwrap());
        let remote = Client::direct("198.51.100.9".parse().unwrap());
        let host = |h: &str| headers(&[("host", h)]);
        for ok in [
            "127.0.0.1:3000",
            "[::1]:3000",
            "192.168.1.20",
            "nodes.example.org",
        ] {
            assert_eq!(hosts.refuse(&host(ok), &remote), None, "{ok}");
        }
        assert_eq!(hosts.refuse(&headers(&[]), &remote), None, "no Host at all");
        assert_eq!(hosts.refuse(&host("localhost:3000"), &local), None);
        assert!(hosts.refuse(&host("localhost:3000"), &remote).is_some());
        let why = hosts.refuse(&host("rebind.example:3000"), &local).unwrap();
        assert!(
            why.contains("rebind.example") && why.contains("--host-name"),
            "{why}"
        );
    }

    #[test]
    fn a_browser_acting_for_another_site_is_foreign() {
        let hosts = Hosts::new(
            Vec::<String>::new(),
            crate::origin::Origins::new(&["https://app.example.org".to_owned()]).unwrap(),
        );
        let asks = |origin: &str| {
            hosts.foreign(&headers(&[("host", "127.0.0.1:3000"), ("origin", origin)]))
        };
        assert!(!asks("http://127.0.0.1:3000"), "its own page");
        assert!(asks("http://evil.example"));
        assert!(asks("http://127.0.0.1:3002"), "another node's page");
        assert!(
            !asks("https://app.example.org"),
            "an app the operator allows"
        );
        assert!(
            !hosts.foreign(&headers(&[("host", "127.0.0.1:3000")])),
            "no Origin: a tool"
        );
    }
}
