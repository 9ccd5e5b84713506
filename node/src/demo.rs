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
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let demo = Demo::start(&args).await?;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "hearsay demo: {} nodes, first linked as a {}",
        demo.nodes.len(),
        args.topology
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
    for (i, node) in demo.nodes.iter().enumerate() {
        let _ = writeln!(out, "{i:>4}  {:<28}  {}", node.http_url(), node.id);
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
