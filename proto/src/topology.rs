//! The network's map, learned within the protocol: every peer (node or browser) regularly
//! floods a small record of itself — kind, address, the peers it is linked to, how many seed
//! (v1) peers hang off it, how many messages it holds — with a version and a time to live.
//! Each peer keeps the newest record of every other one and forgets records that stop being
//! renewed, so a peer that leaves fades off the map. This works on any network, not only in
//! `hearsay demo`: it is how a page draws links it is not part of.

use crate::Millis;
use crate::id::NodeId;
use crate::wire::PeerKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One peer's account of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopoRecord {
    pub node: NodeId,
    pub kind: PeerKind,
    /// Where it can be dialed (none for browsers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Grows with every new record from the same peer; a lower one is stale.
    pub version: u64,
    /// Milliseconds the record stays valid after it is received.
    pub ttl: Millis,
    /// The hearsay peers (nodes and browsers) it is linked to.
    pub links: Vec<NodeId>,
    /// How many seed (v1) peers are linked to it.
    #[serde(default)]
    pub seeds: u32,
    /// How many messages it holds.
    #[serde(default)]
    pub held: u64,
}

/// The newest unexpired record of every peer heard of.
#[derive(Debug, Default, Clone)]
pub struct TopologyView {
    records: BTreeMap<NodeId, (TopoRecord, Millis)>,
}

impl TopologyView {
    /// Keeps `record` if it is newer than what we have; true if it was (so pass it on).
    pub fn accept(&mut self, record: TopoRecord, now: Millis) -> bool {
        if let Some((known, _)) = self.records.get(&record.node)
            && known.version >= record.version
        {
            return false;
        }
        let expires = now.saturating_add(record.ttl);
        self.records.insert(record.node, (record, expires));
        true
    }

    /// Forgets records whose time to live has run out.
    pub fn expire(&mut self, now: Millis) {
        self.records.retain(|_, (_, expires)| *expires > now);
    }

    /// Current records, by node id.
    pub fn records(&self) -> impl Iterator<Item = &TopoRecord> {
        self.records.values().map(|(r, _)| r)
    }

    pub fn get(&self, node: &NodeId) -> Option<&TopoRecord> {
        self.records.get(node).map(|(r, _)| r)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Frame;

    fn rec(node: u8, version: u64, links: &[u8]) -> TopoRecord {
        TopoRecord {
            node: NodeId::from_bytes([node; 16]),
            kind: PeerKind::Node,
            address: Some(format!("ws://n{node}:3000")),
            version,
            ttl: 1_000,
            links: links.iter().map(|&l| NodeId::from_bytes([l; 16])).collect(),
            seeds: 1,
            held: 7,
        }
    }

    #[test]
    fn records_round_trip_on_the_wire() {
        let frame = Frame::Topo(rec(1, 5, &[2, 3]));
        assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        let browser = TopoRecord {
            kind: PeerKind::Browser,
            address: None,
            ..rec(9, 1, &[1])
        };
        let text = Frame::Topo(browser.clone()).encode();
        assert!(!text.contains("address"), "{text}");
        assert_eq!(Frame::decode(&text).unwrap(), Frame::Topo(browser));
    }

    #[test]
    fn only_newer_versions_are_kept_and_passed_on() {
        let mut v = TopologyView::default();
        assert!(v.accept(rec(1, 5, &[2]), 0));
        assert!(
            !v.accept(rec(1, 5, &[2]), 10),
            "the same version again is not news"
        );
        assert!(!v.accept(rec(1, 4, &[3]), 10), "an older version is stale");
        assert!(v.accept(rec(1, 6, &[3]), 10));
        assert_eq!(
            v.get(&NodeId::from_bytes([1; 16])).unwrap().links,
            vec![NodeId::from_bytes([3; 16])]
        );
    }

    #[test]
    fn records_expire_unless_renewed() {
        let mut v = TopologyView::default();
        v.accept(rec(1, 1, &[]), 0);
        v.accept(rec(2, 1, &[]), 500);
        v.expire(999);
        assert_eq!(v.len(), 2);
        v.expire(1_000);
        assert_eq!(v.len(), 1, "node 1's record ran out");
        v.accept(rec(2, 2, &[]), 1_400);
        v.expire(1_600);
        assert_eq!(v.len(), 1, "node 2 renewed in time");
    }
}
