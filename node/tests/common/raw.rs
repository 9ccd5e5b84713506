//! Hearsay peers written by hand, for tests and benchmarks that need a peer to misbehave or
//! to be counted exactly: a handshake as any kind, a valid `GOSSIP` frame, and a page's answers
//! to what a node sends it (`PONG`, `GRAFT`).

use futures_util::{SinkExt, StreamExt};
use hearsay_proto::{Keypair, Message as HsMessage, NodeId, Tab};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn random_key() -> Keypair {
    Keypair::from_secret(rand::random())
}

/// A page's tab, as these peers draw it: from its key, so one key is one page here.
fn tab_of(key: &Keypair) -> Tab {
    let mut tab = [0u8; 16];
    tab.copy_from_slice(&key.public().as_bytes()[16..]);
    Tab::from_bytes(tab)
}

/// The id a peer with `key` runs under as `kind` ("node" or "browser").
pub fn id_as(key: &Keypair, kind: &str) -> NodeId {
    let tab = (kind == "browser").then(|| tab_of(key));
    hearsay_proto::identity::id_of(&key.public(), tab.as_ref())
}

/// The `HELLO` of a peer with `key`, of `kind`, dialable at `addresses`.
pub fn hello(key: &Keypair, kind: &str, addresses: &[&str]) -> Value {
    let nonce: [u8; 16] = rand::random();
    let mut hello = json!({
        "type": "HELLO", "protocol": "hearsay",
        "version": hearsay_proto::wire::PROTOCOL_VERSION,
        "id": id_as(key, kind).to_string(), "key": key.public().to_string(),
        "kind": kind, "addresses": addresses,
        "nonce": hex_of(&nonce)
    });
    if kind == "browser" {
        hello["tab"] = json!(tab_of(key).to_string());
    }
    hello
}

/// A peer with `key`, of `kind` ("node" or "browser"), dialable at `addresses`, past its
/// handshake (`HELLO`, then its proof over the node's nonce).
pub async fn connect_as(ws_url: &str, key: &Keypair, kind: &str, addresses: &[&str]) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let hello = hello(key, kind, addresses);
    ws.send(Message::text(hello.to_string())).await.unwrap();
    prove(&mut ws, key).await.expect("the node answers HELLO");
    ws
}

/// What a close frame says: its reason, or nothing.
pub fn reason_of(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    frame.map(|f| f.reason.to_string()).unwrap_or_default()
}

/// Reads until the peer closes the socket, for at most `deadline`: its close reason, or what
/// ended the stream instead.
pub async fn close_reason<S>(ws: &mut S, deadline: std::time::Duration) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let read = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => return reason_of(frame),
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
        String::from("(closed without a close frame)")
    };
    tokio::time::timeout(deadline, read)
        .await
        .expect("the peer closes the socket in time")
}

/// Reads the node's answer to our `HELLO` and sends our proof: the node's nonce and id,
/// signed with `key`. `Err` with the close reason if the node closed instead.
pub async fn prove<S>(ws: &mut S, key: &Keypair) -> Result<Value, String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Unpin,
    <S as futures_util::Sink<Message>>::Error: std::fmt::Debug,
{
    use futures_util::StreamExt;
    use hearsay_proto::identity::{Role, handshake_proof};
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] != "HELLO" {
                    continue;
                }
                let nonce: hearsay_proto::Nonce =
                    serde_json::from_value(frame["nonce"].clone()).unwrap();
                let node: NodeId = serde_json::from_value(frame["id"].clone()).unwrap();
                let sig = key.sign(&handshake_proof(Role::Dialer, &nonce, node));
                let proof = json!({ "type": "PROOF", "sig": sig.to_string() });
                ws.send(Message::text(proof.to_string())).await.unwrap();
                return Ok(frame);
            }
            Some(Ok(Message::Close(f))) => return Err(reason_of(f)),
            Some(Ok(_)) => continue,
            other => return Err(format!("{other:?}")),
        }
    }
}

/// A node peer in the node's active view (it joins, as a node would), so the node keeps its
/// link however long a burst takes.
pub async fn neighbour(ws_url: &str, key: &Keypair) -> Ws {
    let mut ws = connect_as(ws_url, key, "node", &["ws://127.0.0.1:9"]).await;
    ws.send(Message::text(r#"{"type":"JOIN"}"#)).await.unwrap();
    ws
}

/// A valid `GOSSIP` frame: message `seq` written and signed by `author` saying `data`,
/// stamped inside the retention window (the same message wherever it is made in one test
/// run).
pub fn gossip(author: &Keypair, seq: u64, data: &str) -> String {
    let timestamp = super::stamp_base() + seq;
    let msg = HsMessage::signed(author, seq, timestamp, data.to_owned());
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

/// The node's next text frame (its length, and it as JSON), its keepalive pings answered on
/// the way; `what` names what the test waits for, if it never comes.
pub async fn next_frame(ws: &mut Ws, what: &str) -> (usize, Value) {
    loop {
        let frame = tokio::time::timeout(super::DEADLINE, ws.next())
            .await
            .expect(what)
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(frame) = frame else {
            continue;
        };
        let v: Value = serde_json::from_str(frame.as_str()).unwrap();
        if let Some(pong) = pong_for(&v) {
            ws.send(Message::text(pong)).await.unwrap();
        }
        return (frame.len(), v);
    }
}
