//! Who a peer is: its kind, and for a node the addresses it can be dialed at.
//!
//! Addresses have one canonical form ([`canonical_address`]) because seed (v1) nodes compare
//! them as strings and membership compares them to tell nodes apart.

use crate::id::NodeId;
use serde::{Deserialize, Serialize};

/// What kind of peer is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    /// A native node: has listen addresses, can be dialed, takes part in membership.
    Node,
    /// A browser tab: dials out only, and is held by the nodes it links to outside their
    /// membership views.
    Browser,
}

/// A node others can dial: its id, its canonical address, and the other addresses it can be
/// reached at (such as its seed-compatible port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub id: NodeId,
    pub address: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl PeerRecord {
    /// The record with every address in canonical form, or `None` if its main address is not
    /// a WebSocket URL (a peer's claim we cannot use).
    pub fn canonical(&self) -> Option<PeerRecord> {
        Some(PeerRecord {
            id: self.id,
            address: canonical_address(&self.address)?,
            aliases: self
                .aliases
                .iter()
                .filter_map(|a| canonical_address(a))
                .collect(),
        })
    }

    /// A node that cannot be dialed (behind NAT, `--advertise none`): it dials out only.
    /// It can be a neighbour over the link it opened, but is never passed on to be dialed.
    pub fn unlisted(id: NodeId) -> PeerRecord {
        PeerRecord {
            id,
            address: String::new(),
            aliases: Vec::new(),
        }
    }

    /// Whether the node can be dialed at all.
    pub fn is_dialable(&self) -> bool {
        !self.address.is_empty()
    }

    /// Every address of the node, canonical first.
    pub fn addresses(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.address).chain(&self.aliases)
    }
}

/// Reduces a WebSocket URL to the one form a node is advertised by: `ws://host:port` (or
/// `wss://`), lower-case, with the node's own paths `/` and `/ws` dropped. Seed nodes compare
/// addresses as strings, so one node must always be named the same way. Returns `None` for
/// anything that is not a ws:// or wss:// URL with a host.
pub fn canonical_address(address: &str) -> Option<String> {
    let address = address.trim();
    let (scheme, rest) = address.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty()
        || authority.contains('@')
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
    {
        return None;
    }
    let path = match path.trim_end_matches('/') {
        "" | "/ws" => "",
        other => other,
    };
    Some(format!(
        "{scheme}://{}{path}",
        authority.to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_have_one_canonical_form() {
        let cases = [
            ("ws://127.0.0.1:3000", Some("ws://127.0.0.1:3000")),
            ("ws://127.0.0.1:3000/", Some("ws://127.0.0.1:3000")),
            ("WS://LocalHost:3000/ws", Some("ws://localhost:3000")),
            (
                "wss://example.org/hearsay/",
                Some("wss://example.org/hearsay"),
            ),
            (" ws://h:1 ", Some("ws://h:1")),
            ("http://h:1", None),
            ("ws://", None),
            ("ws:///x", None),
            ("h:1", None),
            ("ws://user@h:1", None),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_address(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn records_are_made_canonical_and_bad_aliases_dropped() {
        let r = PeerRecord {
            id: NodeId::from_bytes([1; 16]),
            address: "WS://H:1/ws".into(),
            aliases: vec!["ws://h:2/".into(), "nonsense".into()],
        };
        let c = r.canonical().unwrap();
        assert_eq!(c.address, "ws://h:1");
        assert_eq!(c.aliases, vec!["ws://h:2".to_owned()]);
        let bad = PeerRecord {
            address: "http://h:1".into(),
            ..r
        };
        assert!(bad.canonical().is_none());
    }
}
