//! Hearsay peers written by hand, for tests and benchmarks that need a peer to misbehave or
//! to be counted exactly: a handshake as any kind, a valid `GOSSIP` frame, and a page's answers
//! to what a node sends it (`PONG`, `GRAFT`).

use futures_util::SinkExt;
use hearsay_proto::{Message as HsMessage, MsgId, NodeId};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn random_id() -> NodeId {
    NodeId::from_bytes(rand::random())
}

/// A peer of `kind` ("node" or "browser") dialable at `addresses`, past its `HELLO`.
pub async fn connect_as(ws_url: &str, id: NodeId, kind: &str, addresses: &[&str]) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let hello = json!({
        "type": "HELLO", "protocol": "hearsay",
        "version": hearsay_proto::wire::PROTOCOL_VERSION,
        "id": id.to_string(), "kind": kind, "addresses": addresses
    });
    ws.send(Message::text(hello.to_string())).await.unwrap();
    ws
}

/// A node peer in the node's active view (it joins, as a node would), so the node keeps its
/// link however long a burst takes.
pub async fn neighbour(ws_url: &str, id: NodeId) -> Ws {
    let mut ws = connect_as(ws_url, id, "node", &["ws://127.0.0.1:9"]).await;
    ws.send(Message::text(r#"{"type":"JOIN"}"#)).await.unwrap();
    ws
}

/// A valid `GOSSIP` frame: message `seq` of `origin` saying `data`, stamped inside the
/// retention window (the same message wherever it is made in one test run).
pub fn gossip(origin: NodeId, seq: u64, data: &str) -> String {
    let timestamp = super::stamp_base() + seq;
    let msg = HsMessage {
        id: MsgId::v2(&origin, seq, timestamp, data),
        origin: origin.to_string(),
        seq,
        timestamp,
        data: data.to_owned(),
    };
    hearsay_proto::wire::Frame::encode_gossip(&msg, 0)
}

/// A peer's answer to the node's keepalive `PING`.
pub fn pong_for(frame: &Value) -> Option<String> {
    (frame["type"] == "PING")
        .then(|| json!({ "type": "PONG", "nonce": frame["nonce"] }).to_string())
}

/// A page's answer to an `IHAVE`: a `GRAFT` for the ids it has not had.
pub fn graft_for(frame: &Value, have: impl Fn(&str) -> bool) -> Option<String> {
    if frame["type"] != "IHAVE" {
        return None;
    }
    let missing: Vec<&Value> = frame["ids"]
        .as_array()?
        .iter()
        .map(|pair| &pair[0])
        .filter(|id| !id.as_str().is_some_and(&have))
        .collect();
    (!missing.is_empty()).then(|| json!({ "type": "GRAFT", "ids": missing }).to_string())
}
