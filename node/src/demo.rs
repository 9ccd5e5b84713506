//! `hearsay demo`: a whole network in one process — N nodes, each with its own listener and
//! its own store in a temporary folder, linked in the topology asked for, until Ctrl-C.

use crate::cli::DemoArgs;
use crate::server::{self, NodeConfig, RunningNode, StartError};
use std::io::Write;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running demo network.
pub struct Demo {
    pub nodes: Vec<RunningNode>,
    /// The stores' folders, removed when the demo is dropped.
    _data: Vec<tempfile::TempDir>,
}

impl Demo {
    /// Binds every node's ports first (so links can name them), then starts them linked.
    pub async fn start(args: &DemoArgs) -> Result<Demo, StartError> {
        let n = usize::from(args.nodes);
        let mut listeners = Vec::new();
        for i in 0..n {
            let (main, v1) = if args.port == 0 {
                (0, None)
            } else {
                let base = args.port + 2 * i as u16;
                (base, Some(base + 1))
            };
            let listener = TcpListener::bind(("127.0.0.1", main)).await?;
            let v1 = match v1 {
                Some(p) => TcpListener::bind(("127.0.0.1", p)).await.ok(),
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
        Ok(Demo { nodes, _data: data })
    }

    /// Stops every node and waits for all of them.
    pub async fn stop(self) {
        let Demo { nodes, _data } = self;
        futures_util::future::join_all(nodes.into_iter().map(RunningNode::stop)).await;
    }
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
