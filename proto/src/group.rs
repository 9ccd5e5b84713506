//! Address groups: the unit a peer's cost is counted in where keys cost nothing.
//!
//! Anyone can make as many keys as they like, and reconnect as often as they like, but
//! addresses cost something: peers in one IPv4 /24 or IPv6 /48 are most likely one operator
//! (as Bitcoin's and gossipsub's IP colocation rules assume). What is metered per group
//! (seed text, see [`crate::admission`]) survives a reconnect and a fresh key; what is capped per
//! group (the views, see [`crate::membership`]) cannot be filled from one network.
//!
//! A connection's group is that of the address it came from (an inbound socket, as the
//! driver saw it) or of the address this peer dialed (an IP literal, or else the host name
//! itself: a name costs as much as an address to its owner).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// An address group: IPv4 /24, IPv6 /48, or a host name (by a hash of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    V4([u8; 3]),
    V6([u8; 6]),
    Name(u64),
}

impl Group {
    /// The group of an IP address (an IPv4-mapped IPv6 address is IPv4).
    pub fn of_ip(ip: IpAddr) -> Group {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Group::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Group::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        }
    }

    /// Whether this is a loopback group (127.0.0.0/8, or ::1's): peers on this machine.
    pub fn is_loopback(&self) -> bool {
        match self {
            Group::V4([a, ..]) => *a == 127,
            Group::V6(o) => *o == [0; 6],
            Group::Name(_) => false,
        }
    }

    /// The group of a host: an IP literal's (bracketed or not), or the name's.
    pub fn of_host(host: &str) -> Group {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Group::of_ip(ip),
            Err(_) => {
                // SipHash with fixed keys: the same name is the same group in every run.
                #[allow(deprecated)]
                let mut h = std::hash::SipHasher::new();
                bare.to_ascii_lowercase().hash(&mut h);
                Group::Name(h.finish())
            }
        }
    }

    /// The group of the host in a `ws://` or `wss://` address; none if it names no host.
    pub fn of_address(address: &str) -> Option<Group> {
        let rest = address.split_once("://")?.1;
        let authority = rest.split('/').next()?;
        let host = match authority.rfind(']') {
            // [v6]:port
            Some(end) => &authority[..=end],
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        (!host.is_empty()).then(|| Group::of_host(host))
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Group::V6(o) => write!(
                f,
                "{:x}:{:x}:{:x}::/48",
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([o[2], o[3]]),
                u16::from_be_bytes([o[4], o[5]])
            ),
            Group::Name(h) => write!(f, "name#{h:016x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_slash_24_slash_48_or_the_name() {
        let g = |s: &str| Group::of_address(s).unwrap();
        assert_eq!(g("ws://127.0.3.1:3001"), g("ws://127.0.3.200:9"));
        assert_ne!(g("ws://127.0.3.1:3001"), g("ws://127.0.4.1:3001"));
        assert_eq!(g("ws://127.0.3.1:3001").to_string(), "127.0.3.0/24");
        assert_eq!(
            g("wss://[2001:db8:1:2::1]:443/ws"),
            g("ws://[2001:db8:1:ffff::9]")
        );
        assert_ne!(g("ws://[2001:db8:1::1]"), g("ws://[2001:db8:2::1]"));
        assert_eq!(g("ws://[2001:db8:1::1]:1").to_string(), "2001:db8:1::/48");
        assert_eq!(
            Group::of_ip("::ffff:10.1.2.3".parse().unwrap()),
            g("ws://10.1.2.77")
        );
        assert_eq!(g("ws://Node.Example:3001"), g("wss://node.example/ws"));
        assert_ne!(g("ws://a.example"), g("ws://b.example"));
        assert_eq!(Group::of_address("nothing"), None);
    }
}
