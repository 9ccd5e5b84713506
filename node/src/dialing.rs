//! Where this node may dial. Anyone who can reach a node can name it addresses to dial (in
//! `/add`, or in the addresses peers exchange); without rules, a public node could be made to
//! open connections into the network behind it or to a cloud's metadata service (SSRF).
//!
//! The rules, checked against the address actually connected to (after DNS resolution, so a
//! name that resolves to a forbidden address is refused, and `::ffff:127.0.0.1` is loopback):
//! - never link-local (169.254.0.0/16, fe80::/10: where metadata services live), unspecified
//!   or multicast addresses;
//! - a node whose advertised address is public dials only public addresses; one whose
//!   advertised address is private (a LAN) dials private and public ones, not loopback; only
//!   a node advertised on loopback dials loopback;
//! - `--allow-private-dials` lifts the private and loopback rules (never the link-local one).
//!
//! What the operator asked for is trusted and dialed as given (`--peer`, and `/add` from this
//! machine: a seed user's `/add?address=ws://localhost:3001` keeps working), but never a
//! link-local address, whoever names it ([`never_dialed`]).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What kind of address an IP is, for the dialing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Link-local, unspecified, multicast or broadcast: never dialed.
    Never,
    Loopback,
    /// RFC 1918, carrier-grade NAT (100.64.0.0/10), IPv6 unique-local (fc00::/7).
    Private,
    Public,
}

impl Scope {
    pub fn of(ip: IpAddr) -> Scope {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of_v4(v4),
                None => Self::of_v6(v6),
            },
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Scope {
        let [a, b, ..] = ip.octets();
        if ip.is_link_local() || ip.is_multicast() || ip.is_broadcast() || a == 0 {
            Scope::Never
        } else if ip.is_loopback() {
            Scope::Loopback
        } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
            Scope::Private
        } else {
            Scope::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Scope {
        let first = ip.segments()[0];
        if ip.is_unspecified() || ip.is_multicast() || first & 0xffc0 == 0xfe80 {
            Scope::Never
        } else if ip.is_loopback() {
            Scope::Loopback
        } else if first & 0xfe00 == 0xfc00 {
            Scope::Private
        } else {
            Scope::Public
        }
    }

    /// The scope of the host a node advertises: an IP's own; `localhost` is loopback; a name
    /// without a dot or under `.local`, `.lan`, `.internal` or `.home.arpa` is private (a LAN
    /// name); any other name is public.
    pub fn of_host(host: &str) -> Scope {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Scope::of(ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            Scope::Loopback
        } else if !host.contains('.')
            || [".local", ".lan", ".internal", ".home.arpa"]
                .iter()
                .any(|s| host.ends_with(s))
        {
            Scope::Private
        } else {
            Scope::Public
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scope::Never => "link-local, unspecified or multicast",
            Scope::Loopback => "a loopback address",
            Scope::Private => "a private address",
            Scope::Public => "a public address",
        }
    }
}

/// The rules for one node: its own scope, whether `--allow-private-dials` was given, and the
/// addresses its operator named.
#[derive(Debug)]
pub struct DialRules {
    own: Scope,
    allow_private: bool,
    trusted: Mutex<HashSet<String>>,
    /// The address this node listens on, if it is one address (not `0.0.0.0`): dials go out
    /// from it too, so that peers see the address it advertises, and its address group (on
    /// one machine, nodes on 127.0.N.1 are in different groups as on a real network).
    source: Option<IpAddr>,
    /// Dials refused so far, and the last refusal's reason (for `/api/status`).
    refused: AtomicU64,
    last_refused: Mutex<Option<String>>,
}

impl DialRules {
    /// Rules for a node advertised at `host`.
    pub fn new(host: &str, allow_private: bool) -> DialRules {
        DialRules {
            own: Scope::of_host(host),
            allow_private,
            trusted: Mutex::new(HashSet::new()),
            source: None,
            refused: AtomicU64::new(0),
            last_refused: Mutex::new(None),
        }
    }

    /// Dials go out from `listen`, this node's listening address, if it is one address.
    pub fn dialing_from(mut self, listen: IpAddr) -> DialRules {
        self.source = (!listen.is_unspecified()).then(|| listen.to_canonical());
        self
    }

    /// The address to dial `target` from: this node's own, where it can reach `target` (the
    /// same family, and loopback only to loopback); `None` leaves it to the system.
    pub fn source_for(&self, target: &SocketAddr) -> Option<IpAddr> {
        let source = self.source?;
        let to = target.ip().to_canonical();
        (source.is_ipv4() == to.is_ipv4() && source.is_loopback() == to.is_loopback())
            .then_some(source)
    }

    /// What `/api/status` shows under `dialing`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "scope": self.own.name(),
            "allow_private_dials": self.allow_private,
            "refused": self.refused.load(Ordering::Relaxed),
            "last_refused": *self.last_refused.lock().expect("not poisoned"),
        })
    }

    /// Counts a refused dial; logged when the reason is not the last one's again.
    fn note_refused(&self, address: &str, why: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let line = format!("{address}: {why}");
        let mut last = self.last_refused.lock().expect("not poisoned");
        if last.as_deref() != Some(line.as_str()) {
            tracing::info!(%address, reason = %why, "dial refused");
            *last = Some(line);
        }
    }

    /// The operator named `address` (`--peer`, a loopback `/add`): it is dialed as given.
    pub fn trust(&self, address: &str) {
        if let Some(a) = hearsay_proto::canonical_address(address) {
            self.trusted.lock().expect("not poisoned").insert(a);
        }
    }

    pub fn is_trusted(&self, address: &str) -> bool {
        hearsay_proto::canonical_address(address)
            .is_some_and(|a| self.trusted.lock().expect("not poisoned").contains(&a))
    }

    /// Whether an untrusted address resolving to `ip` may be dialed; if not, why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let scope = Scope::of(ip);
        let allowed = match scope {
            Scope::Never => false,
            Scope::Public => true,
            _ if self.allow_private => true,
            Scope::Loopback => self.own == Scope::Loopback,
            Scope::Private => matches!(self.own, Scope::Loopback | Scope::Private),
        };
        if allowed {
            return Ok(());
        }
        Err(match scope {
            Scope::Never => format!("refused to dial {ip}: it is {}", scope.name()),
            _ => format!(
                "refused to dial {ip}: it is {} and this node is advertised at {} (--allow-private-dials lifts this)",
                scope.name(),
                self.own.name()
            ),
        })
    }

    /// The first of `resolved` that may be dialed, or why none may.
    pub fn first_allowed(&self, resolved: &[SocketAddr]) -> Result<SocketAddr, String> {
        let mut why = None;
        for a in resolved {
            match self.check(a.ip()) {
                Ok(()) => return Ok(*a),
                Err(e) => {
                    why.get_or_insert(e);
                }
            }
        }
        Err(why.unwrap_or_else(|| "the name resolved to no address".to_owned()))
    }
}

/// Resolves `address`'s host (a `ws://` or `wss://` URL) and picks what may be dialed under
/// `rules`; every address when `address` is trusted.
/// Why `address` is never dialed, if its host is an IP literal no one may dial (link-local,
/// unspecified, multicast): checked when the operator names it, so they hear at once.
pub fn never_dialed(address: &str) -> Option<String> {
    let url = url::Url::parse(address).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    (Scope::of(ip) == Scope::Never).then(|| {
        format!(
            "{address} is never dialed: {ip} is {} (where cloud metadata services live)",
            Scope::Never.name()
        )
    })
}

pub async fn resolve(rules: &DialRules, address: &str) -> Result<Vec<SocketAddr>, String> {
    let url = url::Url::parse(address).map_err(|e| format!("bad address {address:?}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("no host in {address:?}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("no port in {address:?}"))?;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if rules.is_trusted(address) {
        let allowed: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|a| Scope::of(a.ip()) != Scope::Never)
            .collect();
        if allowed.is_empty()
            && let Some(first) = resolved.first()
        {
            let why = format!(
                "refused to dial {}: it is {}",
                first.ip(),
                Scope::Never.name()
            );
            rules.note_refused(address, &why);
            return Err(why);
        }
        return Ok(allowed);
    }
    let first = rules.first_allowed(&resolved).inspect_err(|why| {
        rules.note_refused(address, why);
    })?;
    // The allowed addresses, first the one checked first.
    let mut out = vec![first];
    out.extend(
        resolved
            .into_iter()
            .filter(|a| *a != first && rules.check(a.ip()).is_ok()),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_fall_in_the_right_scope() {
        for (a, scope) in [
            ("169.254.169.254", Scope::Never),
            ("fe80::1", Scope::Never),
            ("0.0.0.0", Scope::Never),
            ("::", Scope::Never),
            ("224.0.0.1", Scope::Never),
            ("127.0.0.1", Scope::Loopback),
            ("::1", Scope::Loopback),
            ("::ffff:127.0.0.1", Scope::Loopback),
            ("::ffff:169.254.169.254", Scope::Never),
            ("10.1.2.3", Scope::Private),
            ("172.20.0.1", Scope::Private),
            ("192.168.1.20", Scope::Private),
            ("100.64.0.1", Scope::Private),
            ("fd00::1", Scope::Private),
            ("203.0.113.5", Scope::Public),
            ("2001:db8::1", Scope::Public),
        ] {
            assert_eq!(Scope::of(ip(a)), scope, "{a}");
        }
        assert_eq!(Scope::of_host("localhost"), Scope::Loopback);
        assert_eq!(Scope::of_host("[::1]"), Scope::Loopback);
        assert_eq!(Scope::of_host("laptop"), Scope::Private);
        assert_eq!(Scope::of_host("laptop.local"), Scope::Private);
        assert_eq!(Scope::of_host("nodes.example.org"), Scope::Public);
    }

    #[test]
    fn each_kind_of_node_dials_only_what_its_place_allows() {
        let public = DialRules::new("203.0.113.5", false);
        let lan = DialRules::new("192.168.1.20", false);
        let local = DialRules::new("127.0.0.1", false);
        let lifted = DialRules::new("203.0.113.5", true);
        for (a, p, l, o, x) in [
            ("198.51.100.7", true, true, true, true),
            ("192.168.1.21", false, true, true, true),
            ("127.0.0.1", false, false, true, true),
            ("::ffff:127.0.0.1", false, false, true, true),
            ("169.254.169.254", false, false, false, false),
            ("fe80::1", false, false, false, false),
        ] {
            assert_eq!(public.check(ip(a)).is_ok(), p, "public node, {a}");
            assert_eq!(lan.check(ip(a)).is_ok(), l, "LAN node, {a}");
            assert_eq!(local.check(ip(a)).is_ok(), o, "loopback node, {a}");
            assert_eq!(lifted.check(ip(a)).is_ok(), x, "--allow-private-dials, {a}");
        }
        let why = public.check(ip("10.0.0.1")).unwrap_err();
        assert!(
            why.contains("private") && why.contains("--allow-private-dials"),
            "{why}"
        );
    }

    #[test]
    fn what_the_operator_named_is_trusted_under_any_spelling() {
        let rules = DialRules::new("203.0.113.5", false);
        rules.trust("ws://LOCALHOST:3001/");
        assert!(rules.is_trusted("ws://localhost:3001"));
        assert!(!rules.is_trusted("ws://localhost:3002"));
    }

    #[tokio::test]
    async fn a_name_is_checked_by_what_it_resolves_to() {
        let rules = DialRules::new("192.168.1.20", false);
        let why = resolve(&rules, "ws://localhost:3001").await.unwrap_err();
        assert!(why.contains("loopback"), "{why}");
        let rules = DialRules::new("127.0.0.1", false);
        let ok = resolve(&rules, "ws://localhost:3001").await.unwrap();
        assert!(ok.iter().all(|a| a.ip().is_loopback()), "{ok:?}");
    }
}
