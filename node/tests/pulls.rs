//! What a peer can pull from a node, on a real node and a real socket: a message is given to
//! one peer once, however often it asks for it, and every answer counts against the peer's
//! pull budget, and against its address group's, which reconnecting does not refill.

mod common;

use common::raw::*;
use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_peer_asking_for_one_message_again_and_again_gets_it_once() {
    let node = start_node(&[]).await;
    // One message of 48 KB held by the node.
    let text = "x".repeat(48 * 1024);
    let id = post_message(&node, &text).await;
    // A node peer asks for it 256 times in each of 20 WANTs (about 185 KB sent). Measured on
    // the node before this rule: 247 MB came back.
    let mut ws = neighbour(&format!("{}/ws", node.ws_url()), &random_key()).await;
    let want = json!({ "type": "WANT", "ids": vec![id.clone(); 256] }).to_string();
    for _ in 0..20 {
        ws.send(Message::text(want.clone())).await.unwrap();
    }
    let sent = 20 * want.len();
    // Every WANT is answered (its last page says `done`); count what came back.
    let (mut answers, mut received, mut copies) = (0, 0, 0);
    while answers < 20 {
        let (len, v) = next_frame(&mut ws, "every WANT answered in time").await;
        if v["type"] == "MESSAGES" {
            received += len;
            copies += v["messages"].as_array().unwrap().len();
            if v["done"] == true {
                answers += 1;
            }
        }
    }
    eprintln!("{sent} bytes of WANTs pulled {received} bytes back ({copies} copy)");
    assert_eq!(copies, 1, "the message was given once");
    assert!(
        received < text.len() + 20 * 100,
        "{received} bytes came back for {sent} sent"
    );
    node.stop().await;
}

/// A node on a store of `held` messages (and the store's folder, removed when dropped).
async fn node_holding(held: u64) -> (tempfile::TempDir, hearsay::server::RunningNode) {
    let dir = tempfile::tempdir().unwrap();
    fill_store(dir.path(), 0, held).await;
    let node = start_node_with(hearsay::server::NodeConfig {
        data: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .await;
    (dir, node)
}

/// `n` whole-history `SYNC`s from a peer, each asking the node to list everything it holds;
/// the bytes sent, and the bytes of `SYNC` answers that came back.
async fn replay_syncs(ws: &mut Ws, n: usize) -> (usize, usize) {
    // (From 27 days back: inside the window, so the node lists rather than compares.)
    let from = json!([stamp_base() - 27 * 86_400_000, "0".repeat(32)]);
    let sync =
        json!({ "type": "SYNC", "from": from, "ranges": [{ "to": null, "ids": [] }] }).to_string();
    for _ in 0..n {
        ws.send(Message::text(sync.clone())).await.unwrap();
    }
    // The node answers in order: once our PONG's match comes back, every SYNC was answered
    // (or refused) before it.
    ws.send(Message::text(r#"{"type":"PING","nonce":4242}"#))
        .await
        .unwrap();
    let mut received = 0;
    loop {
        let (len, v) = next_frame(ws, "the PING answered in time").await;
        match v["type"].as_str() {
            Some("SYNC") => received += len,
            Some("PONG") if v["nonce"] == 4242 => return (n * sync.len(), received),
            _ => {}
        }
    }
}

/// A peer that replays whole-history reconciliations over one connection after another, each
/// under a fresh key, is answered its address group's allowance (four peers' worth), not one
/// allowance per connection. Measured before the group's budget: 20 connections pulled 20
/// allowances back.
#[tokio::test]
async fn a_peer_that_reconnects_is_answered_no_more_than_its_group_allows() {
    const HELD: u64 = 2_000;
    let (_dir, node) = node_holding(HELD).await;
    let started = std::time::Instant::now();
    let mut received = 0;
    for _ in 0..20 {
        let mut ws = neighbour(&format!("{}/ws", node.ws_url()), &random_key()).await;
        received += replay_syncs(&mut ws, 10).await.1;
        ws.close(None).await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let allowance = 128 * HELD as usize + 64 * 1024;
    eprintln!(
        "20 connections pulled {received} bytes in {took:.1} s; one allowance is {allowance}"
    );
    // Four allowances, and what refills meanwhile (four times one allowance per 30 s).
    let bound = 4.0 * allowance as f64 * (1.0 + took / 30.0);
    assert!(
        (received as f64) < bound + 100_000.0,
        "{received} bytes back, over {bound:.0}"
    );
    assert!(received > allowance, "more than one allowance: {received}");
    node.stop().await;
}

/// A peer that opens the same whole-history reconciliation again and again, without waiting
/// for the answers, is answered about one session's worth (its reconciliation allowance),
/// not once per `SYNC`; an honest node catching up meanwhile gets everything.
#[tokio::test]
async fn a_peer_replaying_a_reconciliation_is_answered_one_sessions_worth() {
    const HELD: u64 = 2_000;
    let (_dir, node) = node_holding(HELD).await;
    // 200 SYNCs, each one range over all time listing nothing held, so that every answer
    // lists every id the node holds (about 23 KB sent). Measured on the node before this
    // rule: 14 MB came back.
    let mut ws = neighbour(&format!("{}/ws", node.ws_url()), &random_key()).await;
    // A node catching up on all of it while the attack goes on.
    let honest = start_node(&[node.ws_url()]).await;
    let (sent, received) = replay_syncs(&mut ws, 200).await;
    let started = std::time::Instant::now();
    let refused = status(&node.http_url()).await["stats"]["pulls_refused"]
        .as_u64()
        .unwrap();
    eprintln!(
        "{sent} bytes of SYNCs pulled {received} bytes back; {refused} answers refused; \
         /api/status took {:?}",
        started.elapsed()
    );
    // One allowance: 128 bytes per message held and one 64 KiB frame (and what refills
    // while the test runs, about 11 KB a second).
    let allowance = 128 * HELD as usize + 64 * 1024;
    assert!(received > 0, "the first is answered");
    assert!(
        received < allowance + 200 * 1024,
        "{received} bytes came back for {sent} sent"
    );
    assert!(refused > 100, "{refused}");
    wait_for("the honest node to catch up", || async {
        (status(&honest.http_url()).await["messages"] == HELD).then_some(())
    })
    .await;
    node.stop().await;
    honest.stop().await;
}
