//! The page's state as a yew `Reducible`: what the network driver reports comes in as an
//! [`Action`], and components render [`State`]. Pure, so it is tested on the host.

use hearsay_proto::topology::TopoRecord;
use hearsay_proto::wire::Trace;
use hearsay_proto::{LinkInfo, Message, MsgId, NodeId, PeerInfo};
use std::rc::Rc;
use yew::Reducible;

/// How far the page has got joining the network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// Asking the node that served the page who it is and what it holds.
    #[default]
    Loading,
    /// The engine is running.
    Running,
    /// Could not start; the text says why.
    Failed(String),
}

/// A message as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub msg: Message,
    /// Published from this page.
    pub mine: bool,
    /// For our own messages: a node confirmed it holds it.
    pub stored_by: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    pub phase: Phase,
    pub me: Option<NodeId>,
    /// The node that served the page.
    pub home: Option<NodeId>,
    pub links: Vec<LinkInfo>,
    pub peers: Vec<PeerInfo>,
    /// Newest first (by origin timestamp, then id, so every page agrees on the order).
    pub messages: Vec<Entry>,
    /// Set once the first message list (history included) has been shown.
    pub history_loaded: bool,
    /// The network map as the engine knows it.
    pub topology: Vec<TopoRecord>,
    /// The journey of the latest message the page heard of, in arrival order.
    pub spread: Vec<Trace>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Started {
        me: NodeId,
        home: NodeId,
    },
    Failed(String),
    /// Messages the serving node already held when the page loaded.
    History(Vec<Message>),
    /// The engine's view of links and peers changed.
    Network {
        links: Vec<LinkInfo>,
        peers: Vec<PeerInfo>,
    },
    /// A message reached this page (or was published here, `mine`).
    Delivered {
        msg: Message,
        mine: bool,
    },
    Acked {
        id: MsgId,
        by: NodeId,
    },
    /// The network map changed.
    Topology(Vec<TopoRecord>),
    /// A peer received a message (for the map to show it travel).
    Traced(Trace),
}

impl State {
    fn insert(&mut self, msg: Message, mine: bool) {
        if self.messages.iter().any(|e| e.msg.id == msg.id) {
            return;
        }
        // Several messages can share a millisecond: the origin's sequence keeps its order.
        let key = |m: &Message| std::cmp::Reverse((m.timestamp, m.seq, m.id));
        let at = self.messages.partition_point(|e| key(&e.msg) < key(&msg));
        self.messages.insert(
            at,
            Entry {
                msg,
                mine,
                stored_by: None,
            },
        );
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            Action::Started { me, home } => {
                s.me = Some(me);
                s.home = Some(home);
                s.phase = Phase::Running;
            }
            Action::Failed(why) => s.phase = Phase::Failed(why),
            Action::History(msgs) => {
                for m in msgs {
                    s.insert(m, false);
                }
                s.history_loaded = true;
            }
            Action::Network { links, peers } => {
                if s.links == links && s.peers == peers {
                    return self;
                }
                s.links = links;
                s.peers = peers;
            }
            Action::Delivered { msg, mine } => s.insert(msg, mine),
            Action::Traced(t) => {
                // The map follows the newest message: a trace of another one starts afresh.
                if s.spread.first().is_some_and(|first| first.id != t.id) {
                    if s.spread.iter().all(|x| x.at > t.at) {
                        return self; // a late trace of an older message
                    }
                    s.spread.clear();
                }
                if s.spread.iter().any(|x| x.node == t.node) {
                    return self;
                }
                s.spread.push(t);
                s.spread.sort_by_key(|x| x.at);
            }
            Action::Topology(records) => {
                if s.topology == records {
                    return self;
                }
                s.topology = records;
            }
            Action::Acked { id, by } => match s.messages.iter_mut().find(|e| e.msg.id == id) {
                Some(e) if e.stored_by.is_none() => e.stored_by = Some(by),
                _ => return self,
            },
        }
        Rc::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ts: u64, text: &str) -> Message {
        let origin = NodeId::from_bytes([9; 16]);
        Message {
            id: MsgId::v2(&origin, ts, ts, text),
            origin: origin.to_string(),
            seq: ts,
            timestamp: ts,
            data: text.into(),
        }
    }

    fn apply(state: Rc<State>, actions: Vec<Action>) -> Rc<State> {
        actions.into_iter().fold(state, |s, a| s.reduce(a))
    }

    #[test]
    fn messages_are_newest_first_and_never_twice() {
        let s = apply(
            Rc::default(),
            vec![
                Action::History(vec![msg(1, "a"), msg(3, "c")]),
                Action::Delivered {
                    msg: msg(2, "b"),
                    mine: false,
                },
                Action::Delivered {
                    msg: msg(3, "c"),
                    mine: false,
                },
            ],
        );
        let texts: Vec<&str> = s.messages.iter().map(|e| e.msg.data.as_str()).collect();
        assert_eq!(texts, ["c", "b", "a"]);
        assert!(s.history_loaded);
    }

    #[test]
    fn own_messages_are_marked_when_a_node_has_them() {
        let node = NodeId::from_bytes([1; 16]);
        let m = msg(5, "mine");
        let s = apply(
            Rc::default(),
            vec![Action::Delivered {
                msg: m.clone(),
                mine: true,
            }],
        );
        assert!(s.messages[0].mine && s.messages[0].stored_by.is_none());
        let s = apply(s, vec![Action::Acked { id: m.id, by: node }]);
        assert_eq!(s.messages[0].stored_by, Some(node));
    }

    #[test]
    fn the_map_follows_the_newest_message() {
        let node = |n: u8| NodeId::from_bytes([n; 16]);
        let t = |id: &str, n: u8, at: u64| {
            Action::Traced(Trace {
                id: MsgId::v1(id),
                node: node(n),
                from: None,
                at,
            })
        };
        let s = apply(
            Rc::default(),
            vec![t("a", 1, 10), t("a", 2, 12), t("a", 2, 13), t("a", 3, 11)],
        );
        let order: Vec<NodeId> = s.spread.iter().map(|x| x.node).collect();
        assert_eq!(
            order,
            [node(1), node(3), node(2)],
            "in the order it happened, once per peer"
        );
        let s = apply(s, vec![t("b", 1, 20)]);
        assert_eq!(s.spread.len(), 1);
        let s = apply(s, vec![t("a", 4, 14)]);
        assert_eq!(
            s.spread.len(),
            1,
            "an older message's late trace is ignored"
        );
    }

    #[test]
    fn unchanged_network_views_do_not_rerender() {
        let s: Rc<State> = Rc::default();
        let same = Rc::clone(&s).reduce(Action::Network {
            links: vec![],
            peers: vec![],
        });
        assert!(Rc::ptr_eq(&s, &same));
    }

    #[test]
    fn start_and_failure_move_the_phase() {
        let me = NodeId::from_bytes([2; 16]);
        let home = NodeId::from_bytes([3; 16]);
        let s = apply(Rc::default(), vec![Action::Started { me, home }]);
        assert_eq!(
            (s.phase.clone(), s.me, s.home),
            (Phase::Running, Some(me), Some(home))
        );
        let s = apply(s, vec![Action::Failed("no node".into())]);
        assert_eq!(s.phase, Phase::Failed("no node".into()));
    }
}
