//! `hearsay demo`: a whole network in one process — N nodes, each with its own listener and
//! its own store in a temporary folder, linked in the topology asked for, until Ctrl-C.
//!
//! Each node listens on, and dials out from, its own loopback address, 127.0.N.1 (Linux
//! routes all of 127.0.0.0/8 to loopback): each is then its own address group, as on a real
//! network, and the views' per-group caps apply as they would there. Where only 127.0.0.1
//! answers (macOS, unless aliases are added to `lo0`), every node shares it; a node does not
//! cap peers in its own loopback group, so the demo works the same, without the caps.

use crate::cli::DemoArgs;
use crate::server::{self, NodeConfig, RunningNode, StartError};
use hearsay_proto::sim::Topology;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Most nodes one demo runs: all in one process, on one machine's loopback.
pub const MAX_NODES: u16 = 1_000;
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

/// A running demo network.
pub struct Demo {
    pub nodes: Vec<RunningNode>,
    /// Whether each node has its own loopback address ([`loopback_address`]), or all share
    /// 127.0.0.1 (see the module docs).
    pub own_addresses: bool,
    /// The stores' folders, removed when the demo is dropped.
    _data: Vec<tempfile::TempDir>,
}

impl Demo {
    /// Binds every node's ports first (so links can name them), then starts them linked.
    pub async fn start(args: &DemoArgs) -> Result<Demo, StartError> {
        let n = usize::from(args.nodes);
        let own_addresses = loopback_addresses_answer();
        let mut listeners = Vec::new();
        for i in 0..n {
            let ip = if own_addresses {
                IpAddr::V4(loopback_address(i))
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            let (main, v1) = if args.port == 0 {
                (0, None)
            } else {
                let base = args.port + 2 * i as u16;
                (base, Some(base + 1))
            };
            let listener = TcpListener::bind((ip, main)).await?;
            let v1 = match v1 {
                Some(p) => TcpListener::bind((ip, p)).await.ok(),
                None => None,
            };
            listeners.push((listener, v1));
        }
        let urls: Vec<String> = listeners
            .iter()
            .map(|(l, _)| l.local_addr().map(|a| format!("ws://{a}")))
            .collect::<Result<_, _>>()?;
        let mut peers: Vec<Vec<String>> = vec![Vec::new(); n];
        for (a, b) in args.topology.edges(n, &mut rand::rng()) {
            peers[a].push(urls[b].clone());
        }
        let mut nodes = Vec::new();
        let mut data = Vec::new();
        for ((listener, v1), peers) in listeners.into_iter().zip(peers) {
            let dir = tempfile::Builder::new().prefix("hearsay-demo-").tempdir()?;
            // The topology is only the first links: membership and broadcast are the same as
            // in any network.
            let config = NodeConfig {
                peers,
                data: Some(dir.path().to_owned()),
                ..NodeConfig::default()
            };
            nodes.push(server::start(
                listener,
                v1,
                config,
                CancellationToken::new(),
            )?);
            data.push(dir);
        }
        Ok(Demo {
            nodes,
            own_addresses,
            _data: data,
        })
    }

    /// Stops every node and waits for all of them.
    pub async fn stop(self) {
        let Demo { nodes, .. } = self;
        futures_util::future::join_all(nodes.into_iter().map(RunningNode::stop)).await;
    }
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
