//! The page's state as a yew `Reducible`: what the network driver reports comes in as an
//! [`Action`], and components render [`State`]. Pure, so it is tested on the host.

use hearsay_proto::journey::Journey;
use hearsay_proto::map::TopoRecord;
use hearsay_proto::{LinkInfo, Message, MsgId, NodeId, PeerInfo, PublicKey};
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
    /// Shared, so the list is cheap to copy on every change.
    pub msg: Rc<Message>,
    /// Published from this page.
    pub mine: bool,
    /// For our own messages: a node confirmed it holds it.
    pub stored_by: Option<NodeId>,
    /// For our own messages: a node refused it for now (a rate limit), and why. The page
    /// keeps it, and reconciliation hands it over once the node takes it.
    pub refused: Option<String>,
    /// Older than the newest the page keeps: fetched because the reader scrolled back, or
    /// let go by the engine since. Shown, but held by no one here; dropped when the reader
    /// returns to the top.
    pub archived: bool,
}

/// What the page has received and sent over its links (frames' text, as the engine counts
/// it) since its engine started at `since`, as of `at` (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    pub received: u64,
    pub sent: u64,
    pub since: u64,
    pub at: u64,
}

/// Fetching history older than what the page keeps, as the reader scrolls back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Older {
    /// More may be fetched.
    #[default]
    Idle,
    Loading,
    /// The home has nothing older (`None`), or cannot say (why).
    Done(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    pub phase: Phase,
    pub me: Option<NodeId>,
    /// This browser's key: the author of what it publishes.
    pub key: Option<PublicKey>,
    /// The node that served the page, and its key.
    pub home: Option<NodeId>,
    pub home_key: Option<PublicKey>,
    pub links: Vec<LinkInfo>,
    pub peers: Vec<PeerInfo>,
    /// Newest first (by origin timestamp, then the origin's sequence, then id, so every page
    /// agrees on the order). Shared: the reducer copies the state on every action.
    pub messages: Rc<Vec<Entry>>,
    /// Scrolling back past the kept messages.
    pub older: Older,
    /// Set once the first message list (history included) has been shown.
    pub history_loaded: bool,
    /// The network map as the engine knows it.
    pub topology: Vec<TopoRecord>,
    /// The root of the broadcast tree this page follows.
    pub root: Option<NodeId>,
    /// The latest message that reached the page by gossip, and who published it: the map
    /// draws its journey.
    pub latest: Option<(MsgId, NodeId)>,
    /// The latest message's journey as it happened, when the page's node is part of a demo
    /// (which records it); the map replays it.
    pub journey: Option<Rc<Journey>>,
    /// The demo the page's node is part of, if it is.
    pub demo: Option<DemoStatus>,
    /// What the page has received and sent over its links.
    pub traffic: Traffic,
}

/// What a demo says of itself (`GET /api/demo`, and the answer to each control).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
pub struct DemoStatus {
    /// Nodes started, stopped ones included.
    pub nodes: usize,
    pub live: usize,
    /// Cut in two.
    pub split: bool,
    #[serde(default)]
    pub max_burst: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Started {
        me: NodeId,
        /// This browser's key (its tabs share it), and the home node's.
        key: PublicKey,
        home: NodeId,
        home_key: PublicKey,
    },
    Failed(String),
    /// Messages the serving node already held when the page loaded.
    History(Vec<Message>),
    /// What the page has received and sent so far.
    Traffic(Traffic),
    /// The engine's view of links and peers changed.
    Network {
        links: Vec<LinkInfo>,
        peers: Vec<PeerInfo>,
    },
    /// A message reached this page (or was published here, `mine`); `live` if it came by
    /// gossip rather than reconciliation.
    Delivered {
        msg: Message,
        mine: bool,
        live: bool,
    },
    Acked {
        id: MsgId,
        by: NodeId,
    },
    /// A node refused one of our messages for now, saying why.
    Refused {
        id: MsgId,
        reason: String,
    },
    /// The network map changed: its records, and the broadcast tree's root as this page
    /// follows it (the map is drawn from it).
    Topology {
        records: Vec<TopoRecord>,
        root: Option<NodeId>,
    },
    /// A message's journey as the demo recorded it.
    Journey(Journey),
    /// The demo's status, as it last answered.
    Demo(DemoStatus),
    /// Messages stamped before `before` were let go (the page keeps only the newest).
    Evicted {
        before: u64,
    },
    /// The reader reached the end of the list: older messages are being fetched.
    OlderLoading,
    /// Older messages from the home, newest first; `done` if there are no more.
    Older {
        msgs: Vec<Message>,
        done: bool,
    },
    /// The home could not page back (it let that history go, or is unreachable).
    OlderFailed(String),
    /// The reader is back at the top: what was fetched for scrolling back is let go.
    Trim,
}

/// The list's order: newest first. Several messages can share a millisecond: the origin's
/// sequence keeps their order, and the id breaks ties so every page agrees.
pub fn order(m: &Message) -> std::cmp::Reverse<(u64, u64, MsgId)> {
    std::cmp::Reverse((m.timestamp, m.seq, m.id))
}

impl State {
    fn insert(messages: &mut Vec<Entry>, msg: Message, mine: bool, archived: bool) {
        if messages.iter().any(|e| e.msg.id == msg.id) {
            return;
        }
        let at = messages.partition_point(|e| order(&e.msg) < order(&msg));
        messages.insert(
            at,
            Entry {
                msg: Rc::new(msg),
                mine,
                stored_by: None,
                refused: None,
                archived,
            },
        );
    }

    /// Where message `id` is, if `wanted` holds for it.
    fn position(&self, id: MsgId, wanted: impl Fn(&Entry) -> bool) -> Option<usize> {
        self.messages
            .iter()
            .position(|e| e.msg.id == id && wanted(e))
    }

    /// Changes the list (a copy of it: the previous state still shares the old one).
    fn edit(&mut self) -> &mut Vec<Entry> {
        Rc::make_mut(&mut self.messages)
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            Action::Started {
                me,
                key,
                home,
                home_key,
            } => {
                s.me = Some(me);
                s.key = Some(key);
                s.home = Some(home);
                s.home_key = Some(home_key);
                s.phase = Phase::Running;
            }
            Action::Failed(why) => s.phase = Phase::Failed(why),
            Action::History(msgs) => {
                let list = s.edit();
                for m in msgs {
                    State::insert(list, m, false, false);
                }
                s.history_loaded = true;
            }
            Action::Traffic(traffic) => s.traffic = traffic,
            Action::Network { links, peers } => {
                if s.links == links && s.peers == peers {
                    return self;
                }
                s.links = links;
                s.peers = peers;
            }
            Action::Delivered { msg, mine, live } => {
                // The map follows the newest message that travelled here.
                // It starts at its author: this page for ours, the node whose id is the
                // key's first half for a node's (another page's cannot be placed).
                let origin = if mine {
                    s.me
                } else {
                    msg.author.key().map(PublicKey::node_id)
                };
                if live && let Some(origin) = origin {
                    s.latest = Some((msg.id, origin));
                    s.journey = None;
                }
                State::insert(s.edit(), msg, mine, false);
            }
            Action::Journey(journey) => {
                // Only the latest message's is drawn; an answer about an older one is late.
                if s.latest.map(|(id, _)| id) != Some(journey.id)
                    || s.journey.as_deref() == Some(&journey)
                {
                    return self;
                }
                s.journey = Some(Rc::new(journey));
            }
            Action::Demo(status) => s.demo = Some(status),
            Action::Topology { records, root } => {
                if s.topology == records && s.root == root {
                    return self;
                }
                s.topology = records;
                s.root = root;
            }
            Action::Evicted { before } => {
                let kept = |e: &Entry| hearsay_proto::sync::key_of(&e.msg).0 >= before;
                if s.messages.iter().all(kept) {
                    return self;
                }
                let scrolled_back = s.messages.iter().any(|e| e.archived);
                let list = s.edit();
                if scrolled_back {
                    // The reader is reading older history: keep the list whole under them.
                    for e in list.iter_mut().filter(|e| !kept(e)) {
                        e.archived = true;
                    }
                } else {
                    list.retain(kept);
                }
            }
            Action::OlderLoading => s.older = Older::Loading,
            Action::Older { msgs, done } => {
                let list = s.edit();
                for m in msgs {
                    State::insert(list, m, false, true);
                }
                s.older = if done { Older::Done(None) } else { Older::Idle };
            }
            Action::OlderFailed(why) => s.older = Older::Done(Some(why)),
            Action::Trim => {
                if !s.messages.iter().any(|e| e.archived) {
                    return self;
                }
                s.edit().retain(|e| !e.archived);
                s.older = Older::Idle;
            }
            Action::Acked { id, by } => {
                let Some(i) = s.position(id, |e| e.stored_by.is_none()) else {
                    return self;
                };
                s.edit()[i].stored_by = Some(by);
            }
            Action::Refused { id, reason } => {
                let Some(i) = s.position(id, |e| {
                    e.stored_by.is_none() && e.refused.as_ref() != Some(&reason)
                }) else {
                    return self;
                };
                s.edit()[i].refused = Some(reason);
            }
        }
        Rc::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author() -> hearsay_proto::Keypair {
        hearsay_proto::Keypair::from_secret([9; 32])
    }

    fn msg(ts: u64, text: &str) -> Message {
        Message::signed(&author(), ts, ts, text.into())
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
                    live: true,
                },
                Action::Delivered {
                    msg: msg(3, "c"),
                    mine: false,
                    live: false,
                },
            ],
        );
        let texts: Vec<&str> = s.messages.iter().map(|e| e.msg.data.as_str()).collect();
        assert_eq!(texts, ["c", "b", "a"]);
        assert!(s.history_loaded);
    }

    #[test]
    fn what_the_engine_lets_go_leaves_the_list() {
        let before = hearsay_proto::sync::key_of(&msg(2, "b")).0;
        let s = apply(
            Rc::default(),
            vec![
                Action::History(vec![msg(1, "a"), msg(2, "b"), msg(3, "c")]),
                Action::Evicted { before },
            ],
        );
        let texts: Vec<&str> = s.messages.iter().map(|e| e.msg.data.as_str()).collect();
        assert_eq!(texts, ["c", "b"]);
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
                live: true,
            }],
        );
        assert!(s.messages[0].mine && s.messages[0].stored_by.is_none());
        // Held back by a rate limit first; reconciliation hands it over later.
        let s = apply(
            s,
            vec![Action::Refused {
                id: m.id,
                reason: "rate limited".to_owned(),
            }],
        );
        assert_eq!(s.messages[0].refused.as_deref(), Some("rate limited"));
        let s = apply(s, vec![Action::Acked { id: m.id, by: node }]);
        assert_eq!(s.messages[0].stored_by, Some(node));
    }

    #[test]
    fn the_map_follows_the_newest_message_that_travelled() {
        let s = apply(
            Rc::default(),
            vec![Action::Delivered {
                msg: msg(1, "a"),
                mine: false,
                live: true,
            }],
        );
        assert_eq!(
            s.latest,
            Some((msg(1, "a").id, author().public().node_id()))
        );
        let s = apply(
            s,
            vec![Action::Delivered {
                msg: msg(0, "old"),
                mine: false,
                live: false,
            }],
        );
        assert_eq!(
            s.latest.map(|l| l.0),
            Some(msg(1, "a").id),
            "a reconciled message did not travel"
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
    fn only_the_latest_message_s_journey_is_kept() {
        let origin = NodeId::from_bytes([4; 16]);
        let journey = |id: MsgId| Journey {
            id,
            nodes: 3,
            reached: Vec::new(),
        };
        let (old, new) = (MsgId::from_bytes([1; 16]), MsgId::from_bytes([2; 16]));
        let s = State {
            latest: Some((new, origin)),
            ..State::default()
        };
        let s = apply(Rc::new(s), vec![Action::Journey(journey(old))]);
        assert_eq!(s.journey, None, "a late answer about an older message");
        let s = apply(s, vec![Action::Journey(journey(new))]);
        assert_eq!(s.journey.as_deref(), Some(&journey(new)));
    }

    #[test]
    fn start_and_failure_move_the_phase() {
        let me = NodeId::from_bytes([2; 16]);
        let home = NodeId::from_bytes([3; 16]);
        let (key, home_key) = (author().public(), author().public());
        let s = apply(
            Rc::default(),
            vec![Action::Started {
                me,
                key,
                home,
                home_key,
            }],
        );
        assert_eq!(
            (s.phase.clone(), s.me, s.home),
            (Phase::Running, Some(me), Some(home))
        );
        let s = apply(s, vec![Action::Failed("no node".into())]);
        assert_eq!(s.phase, Phase::Failed("no node".into()));
    }
}
