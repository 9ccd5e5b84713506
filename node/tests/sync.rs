//! Reconciliation between real nodes with real database files: a node joining a network that
//! holds 10,000 messages ends with all of them; two halves cut apart converge when the cut heals.

mod common;

use common::*;
use hearsay::server::NodeConfig;
use hearsay_proto::Config as EngineConfig;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

async fn count(url: &str) -> u64 {
    status(url).await["messages"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_a_network_of_10000_messages_ends_with_all() {
    let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fill_store(old_dir.path(), 0, 10_000).await;
    let disk = |dir: &std::path::Path, peers: Vec<String>| NodeConfig {
        peers,
        data: Some(dir.to_owned()),
        ..NodeConfig::default()
    };
    let a = start_node_with(disk(old_dir.path(), vec![])).await;
    assert_eq!(count(&a.http_url()).await, 10_000);
    let b = start_node_with(disk(new_dir.path(), vec![a.ws_url()])).await;
    wait_for("b to hold all 10,000", || async {
        (count(&b.http_url()).await == 10_000).then_some(())
    })
    .await;
    let ids: Vec<String> = messages(&b.http_url())
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        10_000,
        "no message twice"
    );
    let st = status(&b.http_url()).await;
    assert_eq!(st["stats"]["synced"], 10_000);
    a.stop().await;
    b.stop().await;
}

/// A TCP proxy that can cut every connection through it and refuse new ones.
struct Cut {
    addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    kill: Arc<Notify>,
}

impl Cut {
    async fn to(target: std::net::SocketAddr) -> Cut {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let kill = Arc::new(Notify::new());
        let (o, k) = (Arc::clone(&open), Arc::clone(&kill));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let k = Arc::clone(&k);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = k.notified() => {}
                    }
                });
            }
        });
        Cut { addr, open, kill }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.kill.notify_waiters();
    }

    fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_halves_cut_apart_converge_when_the_cut_heals() {
    // A - B ~ C - D, where ~ runs through a proxy we can cut. Membership makes no links
    // beyond those given (no random walks), so the proxy is the only way between the halves.
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let config = |i: usize, peers: Vec<String>| {
        let mut engine = EngineConfig {
            backoff_max: 1_000,
            ..EngineConfig::default()
        };
        engine.membership.random_walks = false;
        NodeConfig {
            peers,
            data: Some(dirs[i].path().to_owned()),
            engine,
            ..NodeConfig::default()
        }
    };
    let a = start_node_with(config(0, vec![])).await;
    let b = start_node_with(config(1, vec![a.ws_url()])).await;
    let proxy = Cut::to(b.addr).await;
    let c = start_node_with(config(2, vec![format!("ws://{}", proxy.addr)])).await;
    let d = start_node_with(config(3, vec![c.ws_url()])).await;
    let urls = [a.http_url(), b.http_url(), c.http_url(), d.http_url()];
    wait_for("b and c linked through the proxy", || async {
        neighbor_ids(&b.http_url())
            .await
            .contains(&c.id.to_string())
            .then_some(())
    })
    .await;
    let mut texts = vec!["before the cut".to_owned()];
    post_message(&a, &texts[0]).await;
    wait_all_hold(&urls, &texts).await;

    proxy.cut();
    wait_for("the halves to notice", || async {
        (!neighbor_ids(&b.http_url())
            .await
            .contains(&c.id.to_string()))
        .then_some(())
    })
    .await;
    for (node, side) in [(&a, "west"), (&b, "west"), (&c, "east"), (&d, "east")] {
        for i in 0..5 {
            let t = format!("{side} {i} from {}", node.id);
            post_message(node, &t).await;
            texts.push(t);
        }
    }
    // Each half has its own; neither has the other's.
    wait_for("a to hold the west's", || async {
        (count(&a.http_url()).await == 11).then_some(())
    })
    .await;
    assert_eq!(count(&d.http_url()).await, 11);

    proxy.heal();
    wait_all_hold(&urls, &texts).await;
    for n in [a, b, c, d] {
        n.stop().await;
    }
}
