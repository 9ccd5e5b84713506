//! A message's journey: which peer took it, when, and from whom, as hops a page can replay.
//!
//! No frame carries this: a peer knows only whom it took a message from. Where every node is
//! in one process (`hearsay demo`), their drivers note each delivery in one [`Journal`], and
//! a page asks for a message's [`Journey`] and replays it ([`Journey::steps`]). Elsewhere a
//! page can only predict the way along the tree the map describes ([`predict`]), and says so.

use crate::id::{MsgId, NodeId};
use crate::map::TopoRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Messages whose journeys a journal keeps: the newest, the oldest let go first.
pub const MAX_JOURNEYS: usize = 256;
/// Deliveries kept per message: a delivery per node, and a demo holds at most 1,000 nodes
/// plus those added; past this a journey stops growing (its peers still take the message).
pub const MAX_REACHED: usize = 2_048;

/// One peer taking a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    pub node: NodeId,
    /// The peer it came from (for the first, who handed it in: the publishing page, or
    /// none if it was published here). None later means it came by reconciliation.
    pub from: Option<NodeId>,
    /// Microseconds after the first peer took it.
    pub after_us: u64,
}

/// What a journal knows of one message, in the order its peers took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journey {
    pub id: MsgId,
    /// The nodes of the network now (the live ones), to say "reached n of m".
    pub nodes: usize,
    pub reached: Vec<Reached>,
}

/// One step of a journey as a map draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub node: NodeId,
    /// The peer it came from (none at the origin, or by reconciliation).
    pub from: Option<NodeId>,
    /// Hops from the origin: the step is lit at that hop of a replay.
    pub hop: u32,
    /// When it happened, in microseconds after the origin; none for a prediction.
    pub after_us: Option<u64>,
}

impl Journey {
    /// The journey hop by hop, in the order it happened: each peer one hop past the peer it
    /// came from. A peer that handed the message in without being in the journal (the page
    /// that published it) is the origin, at hop 0; peers that caught up by reconciliation
    /// come a hop after the furthest.
    pub fn steps(&self) -> Vec<Step> {
        let mut hop: HashMap<NodeId, u32> = HashMap::new();
        let mut steps = Vec::with_capacity(self.reached.len() + 1);
        let mut synced = Vec::new();
        for r in &self.reached {
            let at = match r.from {
                None if steps.is_empty() => 0,
                None => {
                    synced.push(r);
                    continue;
                }
                Some(from) => match hop.get(&from) {
                    Some(h) => h + 1,
                    None => {
                        // Handed in from outside the journal: that peer is an origin.
                        hop.insert(from, 0);
                        steps.push(Step {
                            node: from,
                            from: None,
                            hop: 0,
                            after_us: Some(r.after_us),
                        });
                        1
                    }
                },
            };
            if hop.contains_key(&r.node) {
                continue;
            }
            hop.insert(r.node, at);
            steps.push(Step {
                node: r.node,
                from: r.from,
                hop: at,
                after_us: Some(r.after_us),
            });
        }
        let last = steps.iter().map(|s| s.hop).max().unwrap_or(0);
        for r in synced {
            if hop.insert(r.node, last + 1).is_none() {
                steps.push(Step {
                    node: r.node,
                    from: None,
                    hop: last + 1,
                    after_us: Some(r.after_us),
                });
            }
        }
        steps
    }
}

/// Deliveries noted as they happen, for the newest [`MAX_JOURNEYS`] messages.
#[derive(Debug, Default)]
pub struct Journal {
    journeys: HashMap<MsgId, (u64, Vec<Reached>)>,
    order: VecDeque<MsgId>,
}

impl Journal {
    /// `node` took message `id` from `from` at `now_us` (microseconds on any one clock).
    pub fn note(&mut self, id: MsgId, node: NodeId, from: Option<NodeId>, now_us: u64) {
        if !self.journeys.contains_key(&id) {
            if self.order.len() >= MAX_JOURNEYS
                && let Some(oldest) = self.order.pop_front()
            {
                self.journeys.remove(&oldest);
            }
            self.order.push_back(id);
            self.journeys.insert(id, (now_us, Vec::new()));
        }
        let (first, reached) = self.journeys.get_mut(&id).expect("inserted above");
        if reached.len() < MAX_REACHED {
            reached.push(Reached {
                node,
                from,
                after_us: now_us.saturating_sub(*first),
            });
        }
    }

    /// Message `id`'s journey so far, if it is one of those kept.
    pub fn journey(&self, id: MsgId, nodes: usize) -> Option<Journey> {
        self.journeys.get(&id).map(|(_, reached)| Journey {
            id,
            nodes,
            reached: reached.clone(),
        })
    }

    /// How many messages' journeys are kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The way a message from `origin` should travel: outward along the broadcast tree's links
/// (each record names its own), breadth first, so every peer appears once with the hop at
/// which the message reaches it. What a page can know without a journal: a prediction.
pub fn predict(records: &[TopoRecord], origin: NodeId) -> Vec<Step> {
    let mut tree: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
    for r in records {
        for &e in &r.eager {
            tree.entry(r.node).or_default().insert(e);
            tree.entry(e).or_default().insert(r.node);
        }
    }
    let mut steps = vec![Step {
        node: origin,
        from: None,
        hop: 0,
        after_us: None,
    }];
    let mut seen = BTreeSet::from([origin]);
    let mut queue = VecDeque::from([0]);
    while let Some(i) = queue.pop_front() {
        let Step { node, hop, .. } = steps[i];
        for &next in tree.get(&node).into_iter().flatten() {
            if seen.insert(next) {
                steps.push(Step {
                    node: next,
                    from: Some(node),
                    hop: hop + 1,
                    after_us: None,
                });
                queue.push_back(steps.len() - 1);
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> NodeId {
        NodeId::from_bytes([i; 16])
    }

    fn m(i: u8) -> MsgId {
        MsgId::from_bytes([i; 16])
    }

    #[test]
    fn a_journey_replays_hop_by_hop_from_the_page_that_published_it() {
        let mut j = Journal::default();
        // Page 9 hands it to node 1, which passes it to 2 and 3; 3 to 4; 5 catches up late.
        j.note(m(1), n(1), Some(n(9)), 1_000);
        j.note(m(1), n(2), Some(n(1)), 1_400);
        j.note(m(1), n(3), Some(n(1)), 1_500);
        j.note(m(1), n(4), Some(n(3)), 2_000);
        j.note(m(1), n(5), None, 90_000);
        let journey = j.journey(m(1), 5).unwrap();
        assert_eq!(journey.reached[0].after_us, 0);
        assert_eq!(journey.reached[4].after_us, 89_000);
        let hops: Vec<(NodeId, u32, Option<NodeId>)> = journey
            .steps()
            .iter()
            .map(|s| (s.node, s.hop, s.from))
            .collect();
        assert_eq!(
            hops,
            vec![
                (n(9), 0, None),
                (n(1), 1, Some(n(9))),
                (n(2), 2, Some(n(1))),
                (n(3), 2, Some(n(1))),
                (n(4), 3, Some(n(3))),
                (n(5), 4, None),
            ]
        );
        assert!(j.journey(m(2), 5).is_none());
    }

    #[test]
    fn a_node_that_published_is_the_origin() {
        let mut j = Journal::default();
        j.note(m(1), n(1), None, 5);
        j.note(m(1), n(2), Some(n(1)), 7);
        let steps = j.journey(m(1), 2).unwrap().steps();
        assert_eq!(steps.len(), 2);
        assert_eq!((steps[0].node, steps[0].hop), (n(1), 0));
        assert_eq!(
            (steps[1].node, steps[1].hop, steps[1].after_us),
            (n(2), 1, Some(2))
        );
    }

    #[test]
    fn a_journal_is_bounded_in_messages_and_in_deliveries() {
        let mut j = Journal::default();
        for i in 0..(MAX_JOURNEYS + 10) {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            j.note(MsgId::from_bytes(id), n(1), None, i as u64);
        }
        assert_eq!(j.len(), MAX_JOURNEYS);
        // The oldest went first.
        assert!(j.journey(MsgId::from_bytes([0; 16]), 1).is_none());
        for i in 0..(MAX_REACHED + 10) {
            j.note(m(7), n((i % 250) as u8), None, i as u64);
        }
        assert_eq!(j.journey(m(7), 1).unwrap().reached.len(), MAX_REACHED);
    }

    #[test]
    fn a_journey_follows_the_tree_outward_from_the_origin() {
        let n = |k: u8| NodeId::from_bytes([k; 16]);
        let rec = |k: u8, links: &[u8], eager: &[u8]| TopoRecord {
            node: n(k),
            kind: crate::peer::PeerKind::Node,
            address: None,
            version: 1,
            ttl: 1_000,
            links: links.iter().map(|&l| n(l)).collect(),
            eager: eager.iter().map(|&l| n(l)).collect(),
            clients: 0,
            seeds: 0,
            seeds_dialed: Vec::new(),
            held: 0,
            // (Unsigned: the journey reads records the engine has checked.)
            key: crate::identity::PublicKey::from_bytes([k; 32]),
            tab: None,
            sig: crate::identity::Signature::from_bytes([0; 64]),
        };
        // Tree 1-2, 2-3, 2-4 (named by either end); 1-4 is a lazy link.
        let records = vec![
            rec(1, &[2, 4], &[2]),
            rec(2, &[1, 3, 4], &[3]),
            rec(3, &[2], &[]),
            rec(4, &[1, 2], &[2]),
        ];
        let steps = predict(&records, n(3));
        let got: Vec<(NodeId, Option<NodeId>, u32)> =
            steps.iter().map(|s| (s.node, s.from, s.hop)).collect();
        assert_eq!(
            got,
            vec![
                (n(3), None, 0),
                (n(2), Some(n(3)), 1),
                (n(1), Some(n(2)), 2),
                (n(4), Some(n(2)), 2)
            ]
        );
    }
}
