//! The real mesh's figures (`cargo run --release -p hearsay --example bench_mesh [NODES]
//! [MESSAGES]`): 32 nodes on loopback, each on its own address (127.0.N.1), first linked at random as `hearsay demo` links them,
//! each followed through `/api/stream`; 64-byte messages published at random nodes, ten a
//! second. Printed for Plumtree and for flooding, measured in the same run: every byte and
//! frame every node sent (gossip, membership, map, keepalive, reconciliation) per delivered
//! message, and the time from publish to the last node's stream (p50, p99).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use hearsay::server::NodeConfig;
use hearsay_proto::Strategy;
use hearsay_proto::sim::Topology;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Follows one node's open stream, reporting (message id, when it arrived).
async fn follow(mut response: reqwest::Response, tx: mpsc::UnboundedSender<(String, Instant)>) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let at = Instant::now();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) {
                let _ = tx.send((id.trim().to_owned(), at));
            }
        }
    }
}

async fn total(urls: &[String], field: &str) -> u64 {
    let mut sum = 0;
    for url in urls {
        sum += status(url).await["stats"][field].as_u64().unwrap();
    }
    sum
}

struct Figures {
    bytes: f64,
    frames: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(strategy: Strategy, n: usize, messages: usize) -> Figures {
    // Each node on its own loopback address (as `hearsay demo` places them), so each is its
    // own address group, as on a real network.
    let own = hearsay::demo::loopback_addresses_answer();
    let mut listeners = Vec::new();
    for i in 0..n {
        let ip = if own {
            hearsay::demo::loopback_address(i)
        } else {
            std::net::Ipv4Addr::LOCALHOST
        };
        listeners.push(tokio::net::TcpListener::bind((ip, 0)).await.unwrap());
    }
    let ws: Vec<String> = listeners
        .iter()
        .map(|l| format!("ws://{}", l.local_addr().unwrap()))
        .collect();
    let mut peers: Vec<Vec<String>> = vec![Vec::new(); n];
    for (a, b) in Topology::Random.edges(n, &mut rand::rng()) {
        peers[a].push(ws[b].clone());
    }
    let mut nodes = Vec::new();
    for (listener, peers) in listeners.into_iter().zip(peers) {
        let mut config = NodeConfig {
            peers,
            ..NodeConfig::default()
        };
        config.engine.broadcast.strategy = strategy;
        nodes.push(
            hearsay::server::start(
                listener,
                None,
                config,
                tokio_util::sync::CancellationToken::new(),
            )
            .unwrap(),
        );
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.http_url()).collect();
    // Settled: every node linked, and under Plumtree one root and a spanning tree.
    let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
    wait_for_long("the mesh to settle", || async {
        let mut roots = Vec::new();
        let mut eager = 0;
        for url in &urls {
            if neighbor_ids(url).await.is_empty() {
                return None;
            }
            roots.push(status(url).await["root"].clone());
            eager += eager_ids(url).await.len();
        }
        roots.dedup();
        let settled = match strategy {
            Strategy::Plumtree => roots.len() == 1 && eager == 2 * (ids.len() - 1),
            Strategy::Flood => true,
        };
        settled.then_some(())
    })
    .await;

    // Every stream open (its headers in) before the first message.
    let (tx, mut rx) = mpsc::unbounded_channel();
    for url in &urls {
        let response = client()
            .get(format!("{url}/api/stream"))
            .send()
            .await
            .unwrap();
        tokio::spawn(follow(response, tx.clone()));
    }
    let (bytes0, frames0) = (
        total(&urls, "bytes_out").await,
        total(&urls, "frames_out").await,
    );
    let mut published: HashMap<String, Instant> = HashMap::new();
    let http = client();
    for m in 0..messages {
        let at = rand::random_range(0..n);
        // 64 bytes of text.
        let data = format!("{:064}", m);
        let sent = Instant::now();
        let r: serde_json::Value = http
            .post(format!("{}/api/messages", urls[at]))
            .json(&serde_json::json!({ "data": data }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        published.insert(r["id"].as_str().unwrap().to_owned(), sent);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut last: HashMap<String, (usize, Instant)> = HashMap::new();
    let want = n * messages;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < want && Instant::now() < deadline {
        if let Ok(Some((id, at))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            let e = last.entry(id).or_insert((0, at));
            e.0 += 1;
            e.1 = e.1.max(at);
            got += 1;
        }
    }
    let (bytes1, frames1) = (
        total(&urls, "bytes_out").await,
        total(&urls, "frames_out").await,
    );
    let mut to_last: Vec<Duration> = published
        .iter()
        .filter_map(|(id, sent)| last.get(id).map(|(_, at)| at.duration_since(*sent)))
        .collect();
    to_last.sort();
    let pct =
        |p: f64| to_last[((to_last.len() as f64 * p).ceil() as usize).clamp(1, to_last.len()) - 1];
    let deliveries = got.max(1) as f64;
    let figures = Figures {
        bytes: (bytes1 - bytes0) as f64 / deliveries,
        frames: (frames1 - frames0) as f64 / deliveries,
        p50: pct(0.5),
        p99: pct(0.99),
    };
    assert_eq!(got, want, "every node streamed every message");
    for node in nodes {
        node.stop().await;
    }
    figures
}

/// `wait_for` with a longer deadline: a network of 32 takes a few beacon rounds to settle.
async fn wait_for_long<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let start = Instant::now();
    while check().await.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    println!("{n} nodes on loopback, {messages} messages of 64 bytes at 10/s from random nodes");
    println!(
        "| strategy | bytes sent per delivery | frames per delivery | publish to last node p50 | p99 |"
    );
    println!("|---|---|---|---|---|");
    for strategy in [Strategy::Plumtree, Strategy::Flood] {
        let f = run(strategy, n, messages).await;
        println!(
            "| {strategy} | {:.0} | {:.2} | {:.1} ms | {:.1} ms |",
            f.bytes,
            f.frames,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3
        );
    }
}
