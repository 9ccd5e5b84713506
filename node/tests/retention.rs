//! The history budget on real nodes with real database files: what ages out of a node's
//! retention window leaves its store, is never fetched back from a neighbour that keeps it
//! longer, and a cursor that names it is told it was evicted (410), not that it never was.

mod common;

use common::*;
use hearsay::server::NodeConfig;
use hearsay_proto::{Config as EngineConfig, History};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_ages_out_is_evicted_never_fetched_back_and_answered_with_410() {
    let (short_dir, long_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut engine = EngineConfig::default();
    engine.sync.interval = 300;
    engine.sync.settle = 100;
    engine.history = History {
        retention: Some(3_000),
        evict_every: 200,
        edge: 500,
        ..History::default()
    };
    let short = start_node_with(NodeConfig {
        data: Some(short_dir.path().to_owned()),
        engine: engine.clone(),
        ..NodeConfig::default()
    })
    .await;
    // The other keeps an hour, and dials the first, so it starts every reconciliation
    // between them from the bottom of its own, longer, history.
    engine.history.retention = Some(3_600_000);
    let long = start_node_with(NodeConfig {
        data: Some(long_dir.path().to_owned()),
        peers: vec![short.ws_url()],
        engine,
        ..NodeConfig::default()
    })
    .await;
    let id = post_message(&long, "soon old news").await;
    let (s, l) = (short.http_url(), long.http_url());
    wait_all_hold(&[s.clone(), l.clone()], &["soon old news".into()]).await;
    // (Counted, not paged: a page cursor may name it just as it goes.)
    wait_for("the short window to evict it", || async {
        (status(&s).await["messages"] == 0).then_some(())
    })
    .await;
    let st = status(&s).await;
    assert_eq!(st["stats"]["evicted"], 1);
    // Both kinds of cursor naming it: 410, saying why.
    for url in [
        format!("{s}/api/messages?after={id}"),
        format!("{s}/api/messages?before={id}"),
        format!("{s}/api/stream?after={id}"),
    ] {
        let (code, body) = get(&url).await;
        assert_eq!(code, 410, "{url}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("retention window"), "{error}");
    }
    // One never held: 404.
    let never = "0".repeat(32);
    assert_eq!(get(&format!("{s}/api/messages?after={never}")).await.0, 404);
    // Several reconciliations later it is still gone, and was not even offered.
    let rounds = |st: &serde_json::Value| st["stats"]["sync_rounds"].as_u64().unwrap();
    let from = rounds(&status(&l).await);
    wait_for("three more reconciliations", || async {
        (rounds(&status(&l).await) >= from + 3).then_some(())
    })
    .await;
    assert!(message_texts(&s).await.is_empty());
    assert_eq!(message_texts(&l).await, ["soon old news"]);
    let st = status(&s).await;
    assert_eq!(st["stats"]["too_old"], 0, "{}", st["stats"]);
    assert_eq!(st["stats"]["delivered"], 1, "never twice: {}", st["stats"]);
    short.stop().await;
    long.stop().await;
    // Gone from the file, not only from memory: a restart still lacks it.
    let again = start_node_with(NodeConfig {
        data: Some(short_dir.path().to_owned()),
        ..NodeConfig::default()
    })
    .await;
    assert!(message_texts(&again.http_url()).await.is_empty());
    assert_eq!(
        get(&format!("{}/api/messages?after={id}", again.http_url()))
            .await
            .0,
        410
    );
    again.stop().await;
}
