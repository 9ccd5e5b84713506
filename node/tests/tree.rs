//! Taking the tree, on real nodes and sockets. A peer that passed the handshake with a fresh
//! key sends beacons: its own, signed, with the highest term there is and an id ground to
//! start with a zero byte (and the old frame's `root` of all zeros besides); the live root's
//! next term forged in the root's name. Measured before beacons were signed: one such frame,
//! and all three nodes of a line took `000…0` for their root within 4 s. Now no root
//! changes, and a killed root is still replaced, by an honest node, while the attack goes on.

mod common;

use common::raw::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hearsay::server::{NodeConfig, RunningNode};
use hearsay_proto::succession::Beacon;
use hearsay_proto::{Keypair, tree};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A beacon every 400 ms and a root taken for gone after 1.2 s: the protocol's own timers,
/// shortened so the test takes seconds.
fn quick(peers: &[String]) -> NodeConfig {
    let mut config = NodeConfig {
        peers: peers.to_vec(),
        ..NodeConfig::default()
    };
    config.engine.tree = tree::Config {
        beacon_interval: 400,
        root_timeout: 1_200,
        ..tree::Config::default()
    };
    config
}

async fn roots(nodes: &[RunningNode]) -> Vec<Option<String>> {
    let mut roots = Vec::new();
    for n in nodes {
        roots.push(
            status(&n.http_url()).await["root"]
                .as_str()
                .map(String::from),
        );
    }
    roots
}

/// The root all of `nodes` agree on, if they do.
async fn one_root(nodes: &[RunningNode]) -> Option<String> {
    let r = roots(nodes).await;
    r.windows(2).all(|w| w[0] == w[1]).then(|| r[0].clone())?
}

/// The root all of `nodes` agree on, once they have for `stable` (their roots settled).
async fn agreed_root(nodes: &[RunningNode], stable: Duration) -> String {
    let start = Instant::now();
    let (mut last, mut since) = (None, Instant::now());
    loop {
        let one = one_root(nodes).await;
        if one != last {
            (last, since) = (one, Instant::now());
        } else if let Some(root) = last.as_ref().filter(|_| since.elapsed() >= stable) {
            return root.clone();
        }
        assert!(start.elapsed() < DEADLINE, "no settled root: {last:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A counter of a node's `/metrics`.
async fn metric(node: &RunningNode, name: &str) -> u64 {
    let text = get_text(&format!("{}/metrics", node.http_url())).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A key whose id starts with a zero byte: as low as a few hundred tries make it.
fn ground_key() -> Keypair {
    loop {
        let key = random_key();
        if key.public().node_id().as_bytes()[0] == 0 {
            return key;
        }
    }
}

/// The frame of `beacon`, with the old frame's claim besides (`root` of all zeros), which
/// a node that read unsigned beacons would take.
fn frame(beacon: &Beacon) -> String {
    let mut v = serde_json::to_value(tree::Message::Beacon(beacon.clone())).unwrap();
    v["root"] = json!("00000000000000000000000000000000");
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beacon_signed_by_any_other_key_changes_no_live_root() {
    let a = start_node_with(quick(&[])).await;
    let b = start_node_with(quick(&[a.ws_url()])).await;
    let c = start_node_with(quick(&[b.ws_url()])).await;
    let mut nodes = vec![a, b, c];
    // Settled: the same root for more than three rounds everywhere.
    let root = agreed_root(&nodes, Duration::from_millis(2_000)).await;
    let root_key = nodes
        .iter()
        .find(|n| n.id.to_string() == root)
        .expect("the root is one of them")
        .key;

    // The attacker joins the middle node as a neighbour, and beacons faster than the root.
    let attacker = ground_key();
    let middle = &nodes[1];
    let mut ws = neighbour(&middle.ws_url(), &attacker).await;
    let ignored_before = metric(middle, "hearsay_broadcast_beacons_ignored_total").await;
    let forged_before = metric(middle, "hearsay_broadcast_beacons_forged_total").await;
    let (sent, mut seq) = (Instant::now(), 1u64);
    let mut attack = tokio::time::interval(Duration::from_millis(100));
    let forged_in_roots_name = |seq: u64| {
        // The root's next round (term 0: three nodes started at once, no walk), naming the
        // attacker heir and handing over: signed by the attacker, so it does not verify.
        let mut b = Beacon::signed(
            &attacker,
            0,
            1_000_000 + seq,
            None,
            Some(attacker.public().node_id()),
            true,
        );
        b.key = root_key;
        b
    };
    let mut polls = 0;
    // Until the middle node has judged 30 of our beacons and caught 10 forgeries (and
    // every node still follows the root at every look).
    loop {
        tokio::select! {
            _ = attack.tick() => {
                seq += 1;
                for beacon in [
                    Beacon::signed(&attacker, u64::MAX, seq, Some("ws://127.0.0.1:9".into()), None, false),
                    Beacon::signed(&attacker, 1, seq, None, None, false),
                    forged_in_roots_name(seq),
                ] {
                    ws.send(Message::text(frame(&beacon))).await.unwrap();
                }
            }
            frame = ws.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    panic!("the node closed the attacker's link: {frame:?}");
                };
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if let Some(pong) = pong_for(&v) {
                    ws.send(Message::text(pong)).await.unwrap();
                }
            }
        }
        let now = roots(&nodes).await;
        assert!(
            now.iter().all(|r| r.as_deref() == Some(root.as_str())),
            "a root changed {:?} into the attack: {now:?}",
            sent.elapsed()
        );
        polls += 1;
        let ignored = metric(middle, "hearsay_broadcast_beacons_ignored_total").await;
        let forged = metric(middle, "hearsay_broadcast_beacons_forged_total").await;
        if ignored >= ignored_before + 30 && forged >= forged_before + 10 {
            println!(
                "{} beacons ignored, {} forged, {polls} looks over {:?}: the root stayed",
                ignored - ignored_before,
                forged - forged_before,
                sent.elapsed()
            );
            break;
        }
        assert!(
            sent.elapsed() < DEADLINE,
            "the node never judged the beacons: {ignored} ignored, {forged} forged"
        );
    }

    // The root is killed while the attack goes on: an honest node takes over within the
    // root timeout and a few seconds, and the attacker's beacons still take no one.
    let at = nodes.iter().position(|n| n.id.to_string() == root).unwrap();
    let gone = nodes.remove(at);
    let killed = Instant::now();
    gone.stop().await;
    let honest: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
    let mut ws = Some(ws);
    let new_root = loop {
        if let Some(link) = ws.as_mut() {
            // Keep beaconing (the link may close: its end was the root's neighbour too).
            let b = Beacon::signed(&attacker, 1, 1_000_000, None, None, false);
            if link.send(Message::text(frame(&b))).await.is_err() {
                ws = None;
            }
        }
        if let Some(one) = one_root(&nodes).await.filter(|r| *r != root) {
            assert!(
                honest.contains(&one),
                "the new root is one of the two: {one}"
            );
            break one;
        }
        assert!(killed.elapsed() < DEADLINE, "no new root");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let took = killed.elapsed();
    println!("root {root} killed: {new_root} took over in {took:?}");
    assert!(
        took < Duration::from_millis(1_200 + 5_000),
        "replaced within the root timeout + 5 s: {took:?}"
    );
}
