//! What a peer can pull from a node, on a real node and a real socket: a message is given to
//! one peer once, however often it asks for it, and every answer counts against the peer's
//! pull budget.

mod common;

use common::raw::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
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
        let frame = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("every WANT answered in time")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(frame) = frame else {
            continue;
        };
        let v: Value = serde_json::from_str(frame.as_str()).unwrap();
        if let Some(pong) = pong_for(&v) {
            ws.send(Message::text(pong)).await.unwrap();
        }
        if v["type"] == "MESSAGES" {
            received += frame.len();
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
