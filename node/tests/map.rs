//! The network map against a hostile peer, on a real node and a real socket: records no
//! honest peer sends (thousands of links, a version far ahead of the clock) are refused, and
//! the map's size is reported.

mod common;

use common::raw::*;
use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn oversize_and_far_ahead_map_records_are_refused_and_the_map_is_measured() {
    let node = start_node(&[]).await;
    let before = status(&node.http_url()).await["map"]["bytes"]
        .as_u64()
        .unwrap();
    let mut ws = neighbour(&format!("{}/ws", node.ws_url()), &random_key()).await;
    let made_up = |i: usize| format!("{:032x}", 0xabc0_0000 + i);
    // 20 MAP frames, each one record: ten with 13,000 made-up links, ten with a version of
    // 2^64 - 1 (the second under a real-looking id, as if to hide that peer for a day).
    // Measured before this rule: the node's memory grew by 51 MB, and /api/topology to 9 MB.
    for i in 0..20 {
        let (links, version): (Vec<String>, u64) = if i < 10 {
            ((0..13_000).map(made_up).collect(), 1)
        } else {
            (vec![made_up(1)], u64::MAX)
        };
        let record = json!({
            "node": made_up(100_000 + i), "kind": "node", "address": "ws://203.0.113.9:3000",
            "version": version, "ttl": 86_400_000, "links": links, "eager": [],
        });
        let frame = json!({ "type": "MAP", "records": [record] }).to_string();
        ws.send(Message::text(frame)).await.unwrap();
    }
    let s = wait_for("the 20 records taken or refused", || async {
        let s = status(&node.http_url()).await;
        let (kept, refused) = (&s["map"]["records"], &s["map"]["refused"]);
        (kept.as_u64().unwrap() + refused.as_u64().unwrap() >= 20).then_some(s)
    })
    .await;
    let after = s["map"]["bytes"].as_u64().unwrap();
    eprintln!("map bytes {before} -> {after}; {}", s["map"]);
    assert!(after - before <= 100_000, "{before} -> {after}");
    assert_eq!(s["map"]["refused"], 20);
    assert!(
        s["map"]["records"].as_u64().unwrap() <= 1,
        "at most the node's own record"
    );
    node.stop().await;
}
