//! Prints the durable history's figures (`cargo run --release -p hearsay --example
//! bench_history`): durable commits per second for 1 and 16 concurrent clients (against the
//! same node keeping messages in memory, measured in the same run), the time and bytes to sync
//! 100,000 messages to an empty node, and the bytes to reconcile 100,000 against 100,100,
//! compared with simply sending the whole set.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use hearsay::server::NodeConfig;
use hearsay_proto::{Limits, Rate};
use std::time::Instant;

/// Posts `per_client` messages from each of `clients` concurrent clients; returns messages/s.
async fn commits_per_second(url: &str, clients: usize, per_client: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = client();
            for n in 0..per_client {
                let body = serde_json::json!({ "data": format!("bench {c} {n}") });
                let r = http
                    .post(format!("{url}/api/messages"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (clients * per_client) as f64 / start.elapsed().as_secs_f64()
}

async fn stat(url: &str, field: &str) -> u64 {
    status(url).await["stats"][field].as_u64().unwrap()
}

async fn count(url: &str) -> u64 {
    status(url).await["messages"].as_u64().unwrap()
}

#[tokio::main]
async fn main() {
    println!("| figure | value |");
    println!("|---|---|");
    for (name, disk) in [("memory (baseline)", false), ("redb, fsync'd", true)] {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            data: disk.then(|| dir.path().to_owned()),
            ..NodeConfig::default()
        };
        let node = start_node_with(config).await;
        let one = commits_per_second(&node.http_url(), 1, 300).await;
        let sixteen = commits_per_second(&node.http_url(), 16, 100).await;
        println!("| acknowledged commits/s, 1 client, {name} | {one:.0} |");
        println!("| acknowledged commits/s, 16 clients, {name} | {sixteen:.0} |");
        node.stop().await;
    }

    // 100,000 messages to an empty node: without a pull budget (the baseline), then as
    // configured by default.
    let full = tempfile::tempdir().unwrap();
    fill_store(full.path(), 0, 100_000).await;
    for (name, pulls) in [
        ("no pull budget (baseline)", Rate::new(f64::MAX, f64::MAX)),
        ("default pull budget", Limits::default().peer_pulls),
    ] {
        let empty = tempfile::tempdir().unwrap();
        let mut config = NodeConfig {
            data: Some(full.path().to_owned()),
            ..NodeConfig::default()
        };
        config.engine.limits.peer_pulls = pulls;
        let a = start_node_with(config).await;
        let start = Instant::now();
        let b = start_node_with(NodeConfig {
            peers: vec![a.ws_url()],
            data: Some(empty.path().to_owned()),
            ..NodeConfig::default()
        })
        .await;
        wait_for_long(|| async { count(&b.http_url()).await == 100_000 }).await;
        let secs = start.elapsed().as_secs_f64();
        let bytes = stat(&a.http_url(), "bytes_out").await + stat(&b.http_url(), "bytes_out").await;
        println!(
            "| sync 100,000 messages to an empty node, {name} | {secs:.1} s, {:.1} MB on the wire |",
            bytes as f64 / 1e6
        );
        a.stop().await;
        b.stop().await;
    }

    // 100,000 against 100,100.
    let (small, big) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fill_store(small.path(), 0, 100_000).await;
    fill_store(big.path(), 0, 100_100).await;
    let a = start_node_with(NodeConfig {
        data: Some(big.path().to_owned()),
        ..NodeConfig::default()
    })
    .await;
    let b = start_node_with(NodeConfig {
        peers: vec![a.ws_url()],
        data: Some(small.path().to_owned()),
        ..NodeConfig::default()
    })
    .await;
    wait_for_long(|| async { count(&b.http_url()).await == 100_100 }).await;
    let bytes = stat(&a.http_url(), "bytes_out").await + stat(&b.http_url(), "bytes_out").await;
    let ids_only = 100_100 * 35; // every id as a JSON string: the least "send the whole set" costs
    println!(
        "| reconcile 100,000 vs 100,100 (100 missing) | {:.1} KB on the wire, vs {:.1} MB to send every id |",
        bytes as f64 / 1e3,
        ids_only as f64 / 1e6
    );
    a.stop().await;
    b.stop().await;
}

/// Like `wait_for`, for waits that are measured rather than tested (up to ten minutes).
async fn wait_for_long<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed().as_secs() < 600, "gave up after ten minutes");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
