//! `hearsay demo`: a whole network in one process — N nodes, each with its own listener and
//! its own store in a temporary folder, linked in the topology asked for, until Ctrl-C.
//!
//! One task owns the nodes and carries out the demo's controls ([`Command`]) one at a time,
//! as any node's `/api/demo` passes them on through the [`Hub`] every node shares (which also
//! holds the journal of journeys and the cut; see [`crate::hub`]).
//!
//! Each node listens on, and dials out from, its own loopback address, 127.0.N.1 (Linux
//! routes all of 127.0.0.0/8 to loopback): each is then its own address group, as on a real
//! network, and the views' per-group caps apply as they would there. Where only 127.0.0.1
//! answers (macOS, unless aliases are added to `lo0`), every node shares it; a node does not
//! cap peers in its own loopback group, so the demo works the same, without the caps.

use crate::cli::{DemoArgs, MAX_DEMO_NODES};
use crate::hub::Request;
pub use crate::hub::{Command, Cut, Hub, MAX_BURST};
use crate::server::{self, NodeConfig, RunningNode, StartError};
use hearsay_proto::NodeId;
use hearsay_proto::sim::Topology;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Most nodes `--topology full` links: every pair is a first link, so 50 nodes are 1,225 and
/// 1,000 would be 499,500 (a node keeps 6 of them anyway).
pub const MAX_FULL: u16 = 50;
/// Open files one demo node needs, about: its two listeners, its store, its links (both ends
/// of each are in this process), the dials that come and go, a page or two.
pub const FILES_PER_NODE: u64 = 16;
/// Nodes listed by page address when the demo starts; the rest are summed up.
const LISTED: usize = 20;

/// Why a demo cannot start as asked.
pub fn check(args: &DemoArgs) -> Result<(), String> {
    let n = args.nodes;
    if args.topology == Topology::Full && n > MAX_FULL {
        return Err(format!(
            "--topology full links every pair of nodes: {} links for {n} nodes; it takes at most {MAX_FULL} nodes (random links each to a few)",
            u64::from(n) * u64::from(n.saturating_sub(1)) / 2
        ));
    }
    if args.port != 0 && u32::from(args.port) + 2 * u32::from(n) > 65_536 {
        return Err(format!(
            "{n} nodes from port {} would need ports past 65535 (node i takes BASE+2i and BASE+2i+1): choose a lower --port, or --port 0 for any free ports",
            args.port
        ));
    }
    Ok(())
}

/// Raises this process's open-file limit as far as the system lets it, and says whether that
/// holds `nodes` demo nodes; an error says what to raise if not.
pub fn raise_file_limit(nodes: u16) -> Result<u64, String> {
    let need = u64::from(nodes) * FILES_PER_NODE + 64;
    let have = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    if have < need {
        return Err(format!(
            "{nodes} nodes need about {need} open files, and this process may open {have}: raise the limit first (ulimit -n {need}, or the hard limit your system sets) or run fewer nodes"
        ));
    }
    Ok(have)
}

/// A demo node's place: where it listens and who it is (the same after a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoNode {
    pub addr: SocketAddr,
    pub id: NodeId,
}

impl DemoNode {
    /// Its page, e.g. `http://127.0.1.1:3000`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address other nodes dial.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

/// A running demo network. Its controls ([`Command`], from any node's `/api/demo`, or
/// [`Demo::ask`]) are carried out one at a time by a task that owns the nodes.
pub struct Demo {
    /// The nodes it started with, in order (stopped ones too; added ones are not listed).
    pub nodes: Vec<DemoNode>,
    /// Whether each node has its own loopback address ([`loopback_address`]), or all share
    /// 127.0.0.1 (see the module docs).
    pub own_addresses: bool,
    hub: Arc<Hub>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// One node of the demo, running or stopped.
struct Slot {
    place: DemoNode,
    v1: Option<SocketAddr>,
    running: Option<RunningNode>,
    /// Its first links, dialed again when it restarts.
    peers: Vec<String>,
    /// Its store and key: kept while it is stopped, removed with the demo.
    dir: tempfile::TempDir,
}

/// What the control task owns.
struct Nodes {
    slots: Vec<Slot>,
    own_addresses: bool,
    /// The first port asked for (0: any).
    port: u16,
    hub: Arc<Hub>,
}

impl Demo {
    /// Binds every node's ports first (so links can name them), then starts them linked.
    pub async fn start(args: &DemoArgs) -> Result<Demo, StartError> {
        let n = usize::from(args.nodes);
        let own_addresses = loopback_addresses_answer();
        let mut listeners = Vec::new();
        for i in 0..n {
            listeners.push(bind(i, own_addresses, args.port).await?);
        }
        let urls: Vec<String> = listeners
            .iter()
            .map(|(l, _)| l.local_addr().map(|a| format!("ws://{a}")))
            .collect::<Result<_, _>>()?;
        let mut peers: Vec<Vec<String>> = vec![Vec::new(); n];
        for (a, b) in args.topology.edges(n, &mut rand::rng()) {
            peers[a].push(urls[b].clone());
        }
        let (hub, commands) = Hub::new();
        let mut nodes = Nodes {
            slots: Vec::new(),
            own_addresses,
            port: args.port,
            hub: Arc::clone(&hub),
        };
        for ((listener, v1), peers) in listeners.into_iter().zip(peers) {
            nodes.launch(listener, v1, peers)?;
        }
        hub.set_live(nodes.slots.len());
        let places = nodes.slots.iter().map(|s| s.place).collect();
        let stop = CancellationToken::new();
        let task = tokio::spawn(nodes.serve(commands, stop.clone()));
        Ok(Demo {
            nodes: places,
            own_addresses,
            hub,
            stop,
            task,
        })
    }

    /// Carries out a control, as a page's `/api/demo` does.
    pub async fn ask(&self, command: Command) -> Result<serde_json::Value, String> {
        self.hub.ask(command).await
    }

    /// Stops every node and waits for all of them.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds the `i`th node's ports: its own loopback address if this machine has them, BASE+2i
/// and the seed's port beside it if a first port was asked for.
async fn bind(
    i: usize,
    own_addresses: bool,
    port: u16,
) -> std::io::Result<(TcpListener, Option<TcpListener>)> {
    let ip = if own_addresses {
        IpAddr::V4(loopback_address(i))
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let base = u32::from(port) + 2 * i as u32;
    let (main, v1) = if port == 0 || base + 1 > u32::from(u16::MAX) {
        (0, None)
    } else {
        (base as u16, Some(base as u16 + 1))
    };
    let listener = TcpListener::bind((ip, main)).await?;
    let v1 = match v1 {
        Some(p) => TcpListener::bind((ip, p)).await.ok(),
        None => None,
    };
    Ok((listener, v1))
}

/// Nodes each added node first links to.
const ADDED_LINKS: usize = 3;

impl Nodes {
    /// Starts a new node on `listener` with its own store.
    fn launch(
        &mut self,
        listener: TcpListener,
        v1: Option<TcpListener>,
        peers: Vec<String>,
    ) -> Result<(), StartError> {
        let dir = tempfile::Builder::new().prefix("hearsay-demo-").tempdir()?;
        let v1_addr = v1.as_ref().and_then(|l| l.local_addr().ok());
        let running = self.run(listener, v1, &peers, &dir)?;
        self.slots.push(Slot {
            place: DemoNode {
                addr: running.addr,
                id: running.id,
            },
            v1: v1_addr,
            running: Some(running),
            peers,
            dir,
        });
        Ok(())
    }

    fn run(
        &self,
        listener: TcpListener,
        v1: Option<TcpListener>,
        peers: &[String],
        dir: &tempfile::TempDir,
    ) -> Result<RunningNode, StartError> {
        // The topology is only the first links: membership and broadcast are the same as
        // in any network.
        let config = NodeConfig {
            peers: peers.to_vec(),
            data: Some(dir.path().to_owned()),
            demo: Some(Arc::clone(&self.hub)),
            ..NodeConfig::default()
        };
        server::start(listener, v1, config, CancellationToken::new())
    }

    fn live(&self) -> impl Iterator<Item = (usize, &RunningNode)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.running.as_ref().map(|r| (i, r)))
    }

    /// Carries out commands until the demo stops, then stops every node.
    async fn serve(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Request>,
        stop: CancellationToken,
    ) {
        loop {
            let (command, reply) = tokio::select! {
                c = commands.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
                _ = stop.cancelled() => break,
            };
            let answer = self.carry_out(command).await;
            self.hub.set_live(self.live().count());
            let _ = reply.send(answer);
        }
        let running = self.slots.iter_mut().filter_map(|s| s.running.take());
        futures_util::future::join_all(running.map(RunningNode::stop)).await;
    }

    fn status(&self) -> serde_json::Value {
        json!({
            "nodes": self.slots.len(),
            "live": self.live().count(),
            "stopped": self.slots.iter().filter(|s| s.running.is_none()).map(|s| s.place.id.to_string()).collect::<Vec<_>>(),
            "split": self.hub.cut().borrow().is_some(),
            "max_nodes": MAX_DEMO_NODES,
            "max_burst": MAX_BURST,
        })
    }

    async fn carry_out(&mut self, command: Command) -> Result<serde_json::Value, String> {
        match command {
            Command::Status => {}
            Command::Kill {
                share,
                node,
                except,
            } => {
                let mut victims: Vec<usize> = match (share, node) {
                    (Some(share), None) => {
                        let mut live: Vec<usize> = self
                            .live()
                            .filter(|(_, r)| Some(r.id) != except)
                            .map(|(i, _)| i)
                            .collect();
                        let n = (self.live().count() * share.min(100) as usize).div_ceil(100);
                        live.shuffle(&mut rand::rng());
                        live.truncate(n);
                        live
                    }
                    (None, Some(prefix)) => {
                        let prefix = prefix.to_lowercase();
                        let found: Vec<usize> = self
                            .live()
                            .filter(|(_, r)| r.id.to_string().starts_with(&prefix))
                            .map(|(i, _)| i)
                            .collect();
                        if found.len() != 1 || prefix.is_empty() {
                            return Err(format!(
                                "{} live nodes have an id starting with {prefix:?}: name one",
                                found.len()
                            ));
                        }
                        found
                    }
                    _ => return Err("say which nodes: share=PERCENT or node=ID".to_owned()),
                };
                victims.sort_unstable();
                let stopping = victims.iter().filter_map(|&i| self.slots[i].running.take());
                futures_util::future::join_all(stopping.map(RunningNode::stop)).await;
                let killed: Vec<String> = victims
                    .iter()
                    .map(|&i| self.slots[i].place.id.to_string())
                    .collect();
                tracing::info!(count = killed.len(), "demo: stopped nodes");
                let mut status = self.status();
                status["killed"] = json!(killed);
                return Ok(status);
            }
            Command::Restart => {
                let mut restarted = Vec::new();
                for i in 0..self.slots.len() {
                    if self.slots[i].running.is_some() {
                        continue;
                    }
                    let slot = &self.slots[i];
                    let listener = TcpListener::bind(slot.place.addr)
                        .await
                        .map_err(|e| format!("cannot listen on {} again: {e}", slot.place.addr))?;
                    let v1 = match slot.v1 {
                        Some(a) => TcpListener::bind(a).await.ok(),
                        None => None,
                    };
                    let running = self
                        .run(listener, v1, &slot.peers, &slot.dir)
                        .map_err(|e| format!("cannot restart {}: {e}", slot.place.id))?;
                    restarted.push(running.id.to_string());
                    self.slots[i].running = Some(running);
                }
                tracing::info!(count = restarted.len(), "demo: restarted nodes");
                let mut status = self.status();
                status["restarted"] = json!(restarted);
                return Ok(status);
            }
            Command::Split => {
                if !self.own_addresses {
                    return Err("the network can be cut only where each node has its own loopback address (127.0.N.1), and here all share 127.0.0.1".to_owned());
                }
                let all: HashSet<IpAddr> = self.slots.iter().map(|s| s.place.addr.ip()).collect();
                let side = self.slots[..self.slots.len() / 2]
                    .iter()
                    .map(|s| s.place.addr.ip())
                    .collect();
                self.hub.set_cut(Some(Cut { side, all }));
                tracing::info!("demo: cut the network in two");
            }
            Command::Heal => {
                self.hub.set_cut(None);
                tracing::info!("demo: healed the cut");
            }
            Command::Add { count } => {
                let room = usize::from(MAX_DEMO_NODES).saturating_sub(self.slots.len());
                if count == 0 || count as usize > room {
                    return Err(format!(
                        "add 1 to {room} nodes: a demo holds at most {MAX_DEMO_NODES}, and has {}",
                        self.slots.len()
                    ));
                }
                let live: Vec<String> = self.live().map(|(_, r)| r.ws_url()).collect();
                let mut added = Vec::new();
                for _ in 0..count {
                    let i = self.slots.len();
                    let (listener, v1) = bind(i, self.own_addresses, self.port)
                        .await
                        .map_err(|e| format!("cannot listen for node {i}: {e}"))?;
                    let peers = live
                        .choose_multiple(&mut rand::rng(), ADDED_LINKS)
                        .cloned()
                        .collect();
                    self.launch(listener, v1, peers)
                        .map_err(|e| format!("cannot start node {i}: {e}"))?;
                    added.push(self.slots[i].place.id.to_string());
                }
                // Added nodes are on no side of a cut that is already there: they reach both.
                tracing::info!(count, "demo: added nodes");
                let mut status = self.status();
                status["added"] = json!(added);
                return Ok(status);
            }
            Command::Burst { count } => {
                if count == 0 || count > MAX_BURST {
                    return Err(format!("a burst is 1 to {MAX_BURST} messages"));
                }
                let live: Vec<&RunningNode> = self.live().map(|(_, r)| r).collect();
                if live.is_empty() {
                    return Err("no node is running".to_owned());
                }
                let at = clock_mark();
                let sends = (0..count).map(|k| {
                    let node = live[rand::rng().random_range(0..live.len())];
                    let text = format!("burst {at} · {} of {count}", k + 1);
                    async move { node.publish(&text).await }
                });
                let results = futures_util::future::join_all(sends).await;
                let published = results.iter().filter(|r| r.is_ok()).count();
                let refused: Vec<&String> =
                    results.iter().filter_map(|r| r.as_ref().err()).collect();
                tracing::info!(published, refused = refused.len(), "demo: burst");
                let mut status = self.status();
                status["published"] = json!(published);
                status["refused"] = json!(refused.len());
                if let Some(why) = refused.first() {
                    status["why"] = json!(why);
                }
                return Ok(status);
            }
        }
        Ok(self.status())
    }
}

/// A short mark telling one burst from the next: the seconds of the hour it started.
fn clock_mark() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{:02}:{:02}", secs / 60 % 60, secs % 60)
}

/// The loopback address of the `i`th node of a demo or benchmark on one machine: 127.0.N.1,
/// N = i + 1, then 127.1.N.1 and on past 254 nodes (each its own /24, so its own group).
pub fn loopback_address(i: usize) -> Ipv4Addr {
    let i = i % (254 * 255);
    Ipv4Addr::new(127, (i / 254) as u8, (i % 254 + 1) as u8, 1)
}

/// Whether this machine answers on loopback addresses besides 127.0.0.1 (Linux does; macOS
/// answers only on those given to `lo0`).
pub fn loopback_addresses_answer() -> bool {
    std::net::TcpListener::bind((loopback_address(0), 0)).is_ok()
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    check(&args).map_err(anyhow::Error::msg)?;
    let files = raise_file_limit(args.nodes).map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    let demo = Demo::start(&args).await?;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "hearsay demo: {} nodes, first linked as a {}, started in {:.1} s; each stores in redb in a temporary folder (removed on exit); open files allowed: {files}",
        demo.nodes.len(),
        args.topology,
        started.elapsed().as_secs_f64()
    );
    if demo.own_addresses {
        let _ = writeln!(
            out,
            "each on its own loopback address (127.0.N.1), so each is its own address group"
        );
    } else {
        let _ = writeln!(
            out,
            "all on 127.0.0.1 (only it answers here): one address group, which nodes do not cap"
        );
    }
    let _ = writeln!(out, "{:>4}  {:<28}  id", "node", "page");
    for (i, node) in demo.nodes.iter().enumerate().take(LISTED) {
        let _ = writeln!(out, "{i:>4}  {:<28}  {}", node.http_url(), node.id);
    }
    if let [.., last] = &demo.nodes[..]
        && demo.nodes.len() > LISTED
    {
        let _ = writeln!(
            out,
            "  ... and {} more, up to node {}  {}",
            demo.nodes.len() - LISTED,
            demo.nodes.len() - 1,
            last.http_url()
        );
    }
    let _ = writeln!(
        out,
        "Open any page, send a message and watch it cross. Ctrl-C stops every node."
    );
    let _ = out.flush();
    tokio::signal::ctrl_c().await?;
    tracing::info!("Ctrl-C: stopping every node");
    demo.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: u16, topology: Topology, port: u16) -> DemoArgs {
        DemoArgs {
            nodes,
            topology,
            port,
        }
    }

    #[test]
    fn full_links_are_capped_and_ports_must_fit() {
        assert_eq!(check(&args(1_000, Topology::Random, 3000)), Ok(()));
        assert_eq!(check(&args(MAX_FULL, Topology::Full, 3000)), Ok(()));
        let full = check(&args(1_000, Topology::Full, 3000)).unwrap_err();
        assert!(full.contains("499500 links"), "{full}");
        let ports = check(&args(1_000, Topology::Random, 64_000)).unwrap_err();
        assert!(ports.contains("past 65535"), "{ports}");
        assert_eq!(check(&args(1_000, Topology::Random, 0)), Ok(()));
    }

    #[test]
    fn the_file_limit_is_raised_or_what_to_raise_is_said() {
        // One node always fits; 65,535 need about a million files, more than most systems
        // allow a process, and the error then says what to raise.
        assert!(raise_file_limit(1).is_ok());
        let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().1;
        if hard < u64::from(u16::MAX) * FILES_PER_NODE + 64 {
            let e = raise_file_limit(u16::MAX).unwrap_err();
            assert!(e.contains("ulimit -n"), "{e}");
        }
    }
}
