//! A disk that fails under a node: what it could not store is neither lost nor believed
//! stored. Real redb files on a backend whose writes fail on demand (`common::faulty`), and
//! real nodes on 127.0.0.1.

mod common;

use common::faulty::failing_store;
use common::*;
use hearsay::server::{NodeConfig, ProvidedStore};
use hearsay::store::{Store, StoreError};
use hearsay_proto::{Config as EngineConfig, Keypair, Message, MsgId};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

fn msg(n: u64) -> Message {
    Message::signed(&Keypair::from_secret([2; 32]), n, n, format!("m{n}"))
}

async fn insert(store: &dyn Store, m: Message) -> Result<bool, StoreError> {
    let (tx, rx) = oneshot::channel();
    store.insert(m, Some(tx));
    rx.await.unwrap()
}

/// A write the disk fails is acknowledged as failed and its ids are told (for the engine to
/// forget); once the disk is back, the store is opened again by itself and the same message
/// is stored — not refused, nor every later write failed with redb's `PreviousIo` until a
/// restart.
#[tokio::test]
async fn a_failed_write_is_told_and_the_store_recovers_when_the_disk_does() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fail) = failing_store(dir.path());
    let mut failures = store.failures().expect("a disk store tells its failures");
    assert!(store.failures().is_none(), "taken once");
    assert_eq!(insert(&store, msg(1)).await, Ok(true));

    fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        insert(&store, msg(2)).await,
        Err(StoreError::Io(_))
    ));
    assert_eq!(failures.recv().await, Some(vec![msg(2).id]));
    // Still failing: every write is refused and told, none hangs.
    assert!(insert(&store, msg(3)).await.is_err());
    assert_eq!(failures.recv().await, Some(vec![msg(3).id]));

    fail.store(false, Ordering::SeqCst);
    assert_eq!(
        insert(&store, msg(2)).await,
        Ok(true),
        "stored once the disk is back"
    );
    assert_eq!(
        insert(&store, msg(1)).await,
        Ok(false),
        "what was stored before still is"
    );
    let ids: Vec<MsgId> = store.page(None, 10).unwrap().iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![msg(1).id, msg(2).id]);
    assert!(failures.try_recv().is_err(), "no failure since");
    drop(store);
    // And the file opens as a plain store afterwards.
    let again = hearsay::store::DiskStore::open(dir.path()).unwrap();
    assert_eq!(again.len(), Ok(2));
}

fn writes_failed(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("hearsay_store_write_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no store_write_failures in {metrics}"))
}

/// A message that arrives while the node's disk is full is counted, not believed held, and
/// fetched again from a neighbour once the disk is back: before, its id stayed in the
/// engine's index, so no reconciliation ever asked for it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_disk_failed_to_store_is_fetched_again_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fail) = failing_store(dir.path());
    let mut engine = EngineConfig::default();
    // Reconcile every second rather than every 30 s.
    engine.sync.interval = 1_000;
    let a = start_node_with(NodeConfig {
        data: Some(dir.path().to_owned()),
        store: Some(ProvidedStore(Arc::new(store))),
        engine: engine.clone(),
        ..NodeConfig::default()
    })
    .await;
    let b = start_node_with(NodeConfig {
        peers: vec![a.ws_url()],
        engine,
        ..NodeConfig::default()
    })
    .await;
    let (a_url, b_url) = (a.http_url(), b.http_url());
    wait_for("the nodes to link", || async {
        (node_neighbors(&a_url).await == 1).then_some(())
    })
    .await;
    post_message(&b, "before").await;
    wait_all_hold(std::slice::from_ref(&a_url), &["before".to_owned()]).await;

    fail.store(true, Ordering::SeqCst);
    post_message(&b, "while the disk is full").await;
    wait_for("the failed write to be counted", || async {
        let metrics = get_text(&format!("{a_url}/metrics")).await;
        (writes_failed(&metrics) >= 1.0).then_some(())
    })
    .await;
    // Meanwhile the node answers reads, with what it holds or with a clear error.
    let (code, body) = get(&format!("{a_url}/api/messages")).await;
    match code {
        200 => assert_eq!(body["messages"].as_array().unwrap().len(), 1, "{body}"),
        503 => assert!(body["error"].as_str().unwrap().contains("store"), "{body}"),
        _ => panic!("{code} {body}"),
    }

    fail.store(false, Ordering::SeqCst);
    let holds = |texts: &'static [&'static str]| {
        let url = a_url.clone();
        move || {
            let url = url.clone();
            async move { (message_texts(&url).await == texts).then_some(()) }
        }
    };
    wait_for(
        "the lost message fetched again",
        holds(&["before", "while the disk is full"]),
    )
    .await;
    // And it stores what comes next as ever, each once.
    post_message(&b, "after").await;
    wait_for(
        "the next message",
        holds(&["before", "while the disk is full", "after"]),
    )
    .await;
    assert_eq!(message_texts(&b_url).await.len(), 3);
    b.stop().await;
    a.stop().await;
}
