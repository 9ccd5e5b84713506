//! What a demo's nodes share, being in one process: the journal of who took each message
//! when and from whom (`GET /api/journey`), the cut between two halves while the network is
//! split, and the way to the demo's controls (`/api/demo`).
//!
//! A node outside a demo has none of this ([`crate::driver::Shared::demo`] is `None`).

use hearsay_proto::journey::{Journal, Journey};
use hearsay_proto::{MsgId, NodeId};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

/// The most messages one burst publishes.
pub const MAX_BURST: u32 = 1_000;

/// What the page's controls ask of the demo (see [`crate::demo::Demo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// What the demo is: its nodes, how many are live, whether it is cut.
    Status,
    /// Stop `share` percent of the live nodes (at random), or the node whose id starts with
    /// `node`; never `except`, the node serving the page that asked.
    Kill {
        share: Option<u32>,
        node: Option<String>,
        except: Option<NodeId>,
    },
    /// Start every stopped node again, on its address, with its store and key.
    Restart,
    /// Cut the network in two halves: links across close, and dials across fail.
    Split,
    /// End the cut.
    Heal,
    /// Start `count` more nodes, each first linked to three live ones.
    Add { count: u32 },
    /// Publish `count` messages, each from a live node chosen at random.
    Burst { count: u32 },
}

/// A command and where its answer goes.
pub type Request = (Command, oneshot::Sender<Result<serde_json::Value, String>>);

/// Which loopback addresses are on which side of a cut.
#[derive(Debug, Default)]
pub struct Cut {
    /// One half's addresses.
    pub side: HashSet<IpAddr>,
    /// Every demo node's address: others (pages, tools) are on neither side.
    pub all: HashSet<IpAddr>,
}

impl Cut {
    /// Whether `a` and `b` are demo nodes on different sides.
    pub fn apart(&self, a: IpAddr, b: IpAddr) -> bool {
        let (a, b) = (a.to_canonical(), b.to_canonical());
        self.all.contains(&a)
            && self.all.contains(&b)
            && self.side.contains(&a) != self.side.contains(&b)
    }
}

/// Shared by every node of one demo.
pub struct Hub {
    epoch: Instant,
    journal: Mutex<Journal>,
    /// Live nodes, for "reached n of m".
    live: AtomicUsize,
    cut: watch::Sender<Option<Arc<Cut>>>,
    control: mpsc::UnboundedSender<Request>,
}

impl Hub {
    /// A hub, and the commands its nodes will pass on (for the demo to carry out).
    pub fn new() -> (Arc<Hub>, mpsc::UnboundedReceiver<Request>) {
        let (control, commands) = mpsc::unbounded_channel();
        let hub = Hub {
            epoch: Instant::now(),
            journal: Mutex::new(Journal::default()),
            live: AtomicUsize::new(0),
            cut: watch::Sender::new(None),
            control,
        };
        (Arc::new(hub), commands)
    }

    /// `node` took message `id` from `from` (see [`hearsay_proto::Output::Deliver`]).
    pub fn note(&self, id: MsgId, node: NodeId, from: Option<NodeId>) {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(id, node, from, now);
    }

    /// Message `id`'s journey so far, if it is among the newest kept.
    pub fn journey(&self, id: MsgId) -> Option<Journey> {
        let live = self.live();
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .journey(id, live)
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn set_live(&self, n: usize) {
        self.live.store(n, Ordering::Relaxed);
    }

    /// The cut now, and its changes (each connection watches it).
    pub fn cut(&self) -> watch::Receiver<Option<Arc<Cut>>> {
        self.cut.subscribe()
    }

    /// Whether the cut keeps `a` and `b` apart now.
    pub fn apart(&self, a: IpAddr, b: IpAddr) -> bool {
        self.cut.borrow().as_ref().is_some_and(|c| c.apart(a, b))
    }

    pub fn set_cut(&self, cut: Option<Cut>) {
        self.cut.send_replace(cut.map(Arc::new));
    }

    /// Asks the demo to carry out `command`, and waits for its answer.
    pub async fn ask(&self, command: Command) -> Result<serde_json::Value, String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send((command, tx))
            .map_err(|_| "the demo is stopping".to_owned())?;
        rx.await.map_err(|_| "the demo is stopping".to_owned())?
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

/// This node's place in a demo.
#[derive(Clone)]
pub struct Member {
    pub hub: Arc<Hub>,
    pub node: NodeId,
    /// The loopback address it listens on and dials from: its side of a cut.
    pub ip: IpAddr,
}

impl Member {
    /// Why a connection between this node and `peer` may not be, if the demo is cut.
    pub fn refuses(&self, peer: IpAddr) -> Option<String> {
        self.hub.apart(self.ip, peer).then(|| {
            format!(
                "the demo cut the network in two: {peer} is on the other side from {}",
                self.ip
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_parts_demo_nodes_only() {
        let ip = |i: u8| IpAddr::from([127, 0, i, 1]);
        let cut = Cut {
            side: [ip(1), ip(2)].into(),
            all: [ip(1), ip(2), ip(3), ip(4)].into(),
        };
        assert!(cut.apart(ip(1), ip(3)));
        assert!(!cut.apart(ip(1), ip(2)));
        assert!(!cut.apart(ip(3), ip(4)));
        // A page on 127.0.0.1 reaches either side.
        assert!(!cut.apart(ip(1), IpAddr::from([127, 0, 0, 1])));
    }
}
