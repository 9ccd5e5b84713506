//! Fan-out throughput: one publisher, K subscribers, one relay in the middle
//! (`cargo run --release -p hearsay --example bench_fanout [K] [MESSAGES] [ROUNDS]`).
//!
//! Three relays, measured in turn in the same run, with the same clients (tokio-tungstenite,
//! in this process) and 64-byte messages:
//! - a hearsay node: the publisher is a node peer in its active view, the subscribers pages
//!   (every message goes through the engine: validation, dedup, the store, broadcast);
//! - a raw relay written here with tokio-tungstenite: each text frame to every other socket;
//! - the same relay in Node.js with `ws` (installed from npm into `target/bench-fanout`).
//!
//! The hearsay node runs with its per-peer frame limit raised, as an operator of a relay
//! would (its default, 5,000 frames a second per peer, would be what is measured).
//! Printed: deliveries a second (messages × K / time from the first send to the last
//! subscriber's last frame), best of ROUNDS, and each relay against the raw one.

#[path = "../tests/common/mod.rs"]
mod common;

use common::raw::{Ws, connect_as, gossip, neighbour, random_key};
use futures_util::{SinkExt, StreamExt};
use hearsay::server::{self, NodeConfig};
use hearsay_proto::Keypair;
use hearsay_proto::Rate;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, PartialEq)]
enum Relay {
    Hearsay,
    Raw,
    Node,
}

/// Message `seq` as the relay carries it; `measured` ones are marked so subscribers tell
/// them from the warm-up.
fn frame(relay: Relay, origin: &Keypair, seq: u64, measured: bool) -> String {
    let mark = if measured { "M-" } else { "w-" };
    // 64 bytes of text.
    let data = format!("{mark}{seq:0>62}");
    match relay {
        Relay::Hearsay => gossip(origin, seq, &data),
        Relay::Raw | Relay::Node => data,
    }
}

/// A subscriber: reports its first frame, then when it has `want` measured ones.
async fn subscribe(
    mut ws: Ws,
    want: usize,
    first: mpsc::UnboundedSender<()>,
    done: mpsc::UnboundedSender<Instant>,
) {
    let mut seen_first = false;
    let mut got = 0;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        if !(t.contains("M-") || t.contains("w-")) {
            continue;
        }
        if !seen_first {
            seen_first = true;
            let _ = first.send(());
        }
        if t.contains("M-") {
            got += 1;
            if got == want {
                let _ = done.send(Instant::now());
                return;
            }
        }
    }
}

/// One measurement against the relay at `url`: deliveries a second.
async fn measure(relay: Relay, url: &str, k: usize, messages: usize) -> f64 {
    let (first_tx, mut first_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for _ in 0..k {
        let ws = if relay == Relay::Hearsay {
            connect_as(url, &random_key(), "browser", &[]).await
        } else {
            tokio_tungstenite::connect_async(url).await.unwrap().0
        };
        tokio::spawn(subscribe(ws, messages, first_tx.clone(), done_tx.clone()));
    }
    let origin = random_key();
    let mut publisher = if relay == Relay::Hearsay {
        neighbour(url, &origin).await
    } else {
        tokio_tungstenite::connect_async(url).await.unwrap().0
    };
    // Warm up until every subscriber is reached, so that only relaying is timed.
    let mut reached = 0;
    let mut seq = 0;
    while reached < k {
        seq += 1;
        publisher
            .send(Message::text(frame(relay, &origin, seq, false)))
            .await
            .unwrap();
        let deadline = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                Some(()) = first_rx.recv() => reached += 1,
                _ = &mut deadline => break,
            }
        }
    }
    // Signed before the clock starts: only relaying is timed.
    let frames: Vec<String> = (0..messages as u64)
        .map(|i| frame(relay, &origin, seq + 1 + i, true))
        .collect();
    let started = Instant::now();
    for f in frames {
        publisher.feed(Message::text(f)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    let mut last = started;
    for _ in 0..k {
        let at = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
            .await
            .expect("every subscriber gets every message")
            .unwrap();
        last = last.max(at);
    }
    (messages * k) as f64 / last.duration_since(started).as_secs_f64()
}

/// The raw relay: every text frame to every other socket.
async fn raw_relay(listener: TcpListener) {
    type Peers = Arc<Mutex<Vec<(u64, mpsc::UnboundedSender<Message>)>>>;
    let peers: Peers = Arc::default();
    let mut next = 0;
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        next += 1;
        let (me, peers) = (next, Arc::clone(&peers));
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
            peers.lock().unwrap().push((me, tx));
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if sink.feed(m).await.is_err() {
                        return;
                    }
                    while let Ok(m) = rx.try_recv() {
                        if sink.feed(m).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(m)) = stream.next().await {
                if m.is_text() {
                    for (id, tx) in peers.lock().unwrap().iter() {
                        if *id != me {
                            let _ = tx.send(m.clone());
                        }
                    }
                }
            }
            peers.lock().unwrap().retain(|(id, _)| *id != me);
        });
    }
}

const NODE_RELAY: &str = r#"
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false }, () => {
  console.log(wss.address().port);
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const c of wss.clients) if (c !== ws && c.readyState === 1) c.send(data, { binary: isBinary });
  });
});
"#;

/// Installs `ws` once, starts the Node.js relay and returns it with its port.
fn node_relay() -> Option<(std::process::Child, u16)> {
    use std::io::BufRead;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-fanout");
    std::fs::create_dir_all(&dir).ok()?;
    if !dir.join("node_modules/ws").exists() {
        let ok = std::process::Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "ws@8"])
            .current_dir(&dir)
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
    }
    std::fs::write(dir.join("relay.js"), NODE_RELAY).ok()?;
    let mut child = std::process::Command::new("node")
        .arg("relay.js")
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    Some((child, line.trim().parse().ok()?))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let k: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(400);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);

    let mut config = NodeConfig::default();
    config.engine.limits.peer_frames = Rate::new(1e9, 1e9);
    config.engine.limits.peer_bytes = Rate::new(1e12, 1e12);
    config.engine.limits.origin_messages = Rate::new(1e9, 1e9);
    let node = server::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        None,
        config,
        CancellationToken::new(),
    )
    .unwrap();
    let hearsay_url = format!("{}/ws", node.ws_url());
    let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw_url = format!("ws://{}", raw.local_addr().unwrap());
    tokio::spawn(raw_relay(raw));
    let nodejs = node_relay();
    if nodejs.is_none() {
        eprintln!("Node.js relay unavailable (needs node and npm's `ws`); measuring the others");
    }
    let node_url = nodejs
        .as_ref()
        .map(|(_, port)| format!("ws://127.0.0.1:{port}"));

    let mut best = [0f64; 3];
    for _ in 0..rounds {
        best[0] = best[0].max(measure(Relay::Hearsay, &hearsay_url, k, messages).await);
        best[1] = best[1].max(measure(Relay::Raw, &raw_url, k, messages).await);
        if let Some(url) = &node_url {
            best[2] = best[2].max(measure(Relay::Node, url, k, messages).await);
        }
    }
    println!("fan-out to {k} subscribers, {messages} messages of 64 B, best of {rounds}");
    println!("| relay | deliveries/s | vs raw tokio-tungstenite |");
    println!("|---|---|---|");
    let names = [
        "hearsay node",
        "raw tokio-tungstenite relay",
        "Node.js ws relay",
    ];
    for (name, rate) in names.iter().zip(best) {
        if rate > 0.0 {
            println!("| {name} | {:.0} | {:.2}× |", rate, rate / best[1]);
        }
    }
    if let Some((mut child, _)) = nodejs {
        let _ = child.kill();
    }
}
