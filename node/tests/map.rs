//! The network map against a hostile peer, on real nodes and a real socket: records no honest
//! peer sends (thousands of links, a version far ahead of the clock) are refused, and so is a
//! record signed by anyone but the peer it describes; the map's size is reported. A record
//! the map lists but lacks is asked for (`MAP_WANT`), and what such asks pull back is bounded.

mod common;

use common::raw::*;
use common::*;
use futures_util::SinkExt;
use hearsay_proto::map::TopoRecord;
use hearsay_proto::{Keypair, NodeId};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A record for `node`, signed with `key` (an honest peer's own, or anyone's).
fn record(node: NodeId, key: &Keypair, version: u64, links: Vec<String>) -> Value {
    let mut record: TopoRecord = serde_json::from_value(json!({
        "node": node, "kind": "node", "address": "ws://203.0.113.9:3000",
        "version": version, "ttl": 86_400_000, "links": links, "eager": [],
        "key": key.public(), "sig": "00".repeat(64),
    }))
    .unwrap();
    record.sign(key, None);
    serde_json::to_value(record).unwrap()
}

async fn send_map(ws: &mut Ws, records: Vec<Value>) {
    let frame = json!({ "type": "MAP", "records": records }).to_string();
    ws.send(Message::text(frame)).await.unwrap();
}

/// The map's records taken and refused reach `n` together; the node's status then.
async fn taken_or_refused(node: &hearsay::server::RunningNode, n: u64) -> Value {
    wait_for("the records taken or refused", || async {
        let s = status(&node.http_url()).await;
        let (kept, refused) = (&s["map"]["records"], &s["map"]["refused"]);
        (kept.as_u64().unwrap() + refused.as_u64().unwrap() >= n).then_some(s)
    })
    .await
}

#[tokio::test]
async fn oversize_and_far_ahead_map_records_are_refused_and_the_map_is_measured() {
    let node = start_node(&[]).await;
    let before = status(&node.http_url()).await["map"]["bytes"]
        .as_u64()
        .unwrap();
    let mut ws = neighbour(&format!("{}/ws", node.ws_url()), &random_key()).await;
    let made_up = |i: usize| format!("{:032x}", 0xabc0_0000 + i);
    // 20 MAP frames, each one record signed by a fresh key of its own: ten with 13,000
    // made-up links, ten with a version of 2^64 - 1 (which its peer could never renew).
    // Measured before this rule: the node's memory grew by 51 MB, and /api/topology to 9 MB.
    for i in 0..20 {
        let (links, version): (Vec<String>, u64) = if i < 10 {
            ((0..13_000).map(made_up).collect(), 1)
        } else {
            (vec![made_up(1)], u64::MAX)
        };
        let key = random_key();
        send_map(
            &mut ws,
            vec![record(id_as(&key, "node"), &key, version, links)],
        )
        .await;
    }
    let s = taken_or_refused(&node, 20).await;
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

/// Records signed by someone else under a real node's id, newer than its own: before records
/// were signed, the first of them replaced that node's record (and so hid its links) until
/// the node renewed it, a minute or more later.
#[tokio::test]
async fn a_record_forged_under_a_real_nodes_id_is_refused_and_hides_nothing() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    let b_record = || async {
        let map = get_json(&format!("{}/api/topology", a.http_url())).await;
        map["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node"] == b.id.to_string())
            .cloned()
    };
    let honest = wait_for_within(
        "B's record, naming A, on A",
        std::time::Duration::from_secs(40),
        || async {
            let r = b_record().await?;
            let links = r["links"].as_array()?;
            links.contains(&json!(a.id.to_string())).then_some(r)
        },
    )
    .await;
    let version = honest["version"].as_u64().unwrap();
    let attacker = random_key();
    let mut ws = neighbour(&format!("{}/ws", a.ws_url()), &attacker).await;
    // Twenty newer records for B, each linked to nobody, signed by the attacker.
    let forged = (1..=20)
        .map(|i| record(b.id, &attacker, version + i, Vec::new()))
        .collect();
    send_map(&mut ws, forged).await;
    let s = wait_for("the forged records refused", || async {
        let s = status(&a.http_url()).await;
        (s["map"]["refused"].as_u64()? >= 20).then_some(s)
    })
    .await;
    assert_eq!(s["map"]["refused"], 20);
    let now = b_record().await.expect("B's record is still on A");
    assert_eq!(now["key"], json!(b.key.to_string()), "still B's own");
    assert!(
        now["links"]
            .as_array()
            .unwrap()
            .contains(&json!(a.id.to_string())),
        "B's links still show: {now}"
    );
    // No link dropped: B is still A's neighbour, and the attacker's own link stays open.
    assert!(
        neighbor_ids(&a.http_url())
            .await
            .contains(&b.id.to_string())
    );
    assert!(
        neighbor_ids(&a.http_url())
            .await
            .contains(&id_as(&attacker, "node").to_string())
    );
    a.stop().await;
    b.stop().await;
}

/// A node whose records list a peer it holds no record of (the tree lost it as it formed)
/// asks a neighbour for it, and keeps the answer. Before `MAP_WANT`, such a record waited for
/// its peer's renewal, a minute or more later: at 200 simulated nodes, 20 held half the map
/// 18 s after the start.
#[tokio::test]
async fn a_record_listed_but_missing_is_asked_for_and_kept() {
    let node = start_node(&[]).await;
    let mut ws = neighbour(&format!("{}/ws", node.ws_url()), &random_key()).await;
    let (a, b) = (random_key(), random_key());
    let (a_id, b_id) = (id_as(&a, "node"), id_as(&b, "node"));
    send_map(&mut ws, vec![record(a_id, &a, 1, vec![b_id.to_string()])]).await;
    let asked = loop {
        let (_, v) = next_frame(&mut ws, "a MAP_WANT naming B").await;
        if v["type"] == "MAP_WANT" {
            break v;
        }
    };
    assert_eq!(asked["nodes"], json!([b_id.to_string()]), "{asked}");
    send_map(&mut ws, vec![record(b_id, &b, 1, vec![a_id.to_string()])]).await;
    wait_for("B's record on the node", || async {
        let map = get_json(&format!("{}/api/topology", node.http_url())).await;
        let nodes = map["nodes"].as_array()?.clone();
        nodes
            .iter()
            .any(|r| r["node"] == b_id.to_string())
            .then_some(())
    })
    .await;
    node.stop().await;
}

/// `MAP_WANT`s are answered within the peer's pull budget, however often they come, and one
/// naming more than `MAX_WANTED` peers closes the link. Without the charge, the 40 asks below
/// pull back 40 times the 128 records (about 22 MB).
#[tokio::test]
async fn map_wants_are_charged_to_the_pull_budget_and_bounded() {
    let mut config = hearsay::server::NodeConfig::default();
    // A budget small enough to see: 1 MB at once, 20 KB a second after.
    config.engine.limits.peer_pulls = hearsay_proto::limits::Rate::new(20_000.0, 1_000_000.0);
    let bad_frames = config.engine.max_bad_frames;
    let node = start_node_with(config).await;
    let mut ws = neighbour(&format!("{}/ws", node.ws_url()), &random_key()).await;
    // 128 records of peers of ours, each listing 60 peers (about 4.5 KB each).
    let made_up = |i: usize| format!("{:032x}", 0xdef0_0000 + i);
    let keys: Vec<Keypair> = (0..128).map(|_| random_key()).collect();
    let ids: Vec<String> = keys.iter().map(|k| id_as(k, "node").to_string()).collect();
    let records = keys
        .iter()
        .map(|k| record(id_as(k, "node"), k, 1, (0..60).map(made_up).collect()))
        .collect();
    send_map(&mut ws, records).await;
    taken_or_refused(&node, 129).await;
    let want = json!({ "type": "MAP_WANT", "nodes": ids }).to_string();
    let started = std::time::Instant::now();
    for _ in 0..40 {
        ws.send(Message::text(want.clone())).await.unwrap();
    }
    // The node answers in order: once our PING's PONG comes back, every ask was answered
    // (or refused) before it.
    ws.send(Message::text(r#"{"type":"PING","nonce":4242}"#))
        .await
        .unwrap();
    let (mut received, mut records) = (0, 0);
    loop {
        let (len, v) = next_frame(&mut ws, "the PING answered in time").await;
        match v["type"].as_str() {
            Some("MAP") => {
                received += len;
                records += v["records"].as_array().unwrap().len();
            }
            Some("PONG") if v["nonce"] == 4242 => break,
            _ => {}
        }
    }
    let took = started.elapsed().as_secs_f64();
    let refused = status(&node.http_url()).await["stats"]["pulls_refused"]
        .as_u64()
        .unwrap();
    eprintln!(
        "40 MAP_WANTs of {} bytes pulled {received} bytes ({records} records) in {took:.1} s; \
         {refused} answers refused",
        want.len()
    );
    // The burst, what refilled meanwhile, and one frame of at most `MAP_FRAME_BYTES`.
    let bound = 1_000_000.0 + 20_000.0 * took + 2.0 * 128.0 * 1024.0;
    assert!(records >= 128, "the first is answered: {records}");
    assert!(
        (received as f64) < bound,
        "{received} bytes back, over {bound:.0}"
    );
    assert!(refused > 0);
    // Asks over the bound on names are bad frames: as many as a peer is allowed close the
    // link, with the reason.
    let ids: Vec<String> = (0..=hearsay_proto::map::MAX_WANTED).map(made_up).collect();
    let over = json!({ "type": "MAP_WANT", "nodes": ids }).to_string();
    for _ in 0..bad_frames {
        ws.send(Message::text(over.clone())).await.unwrap();
    }
    let reason = close_reason(&mut ws, DEADLINE).await;
    assert!(reason.contains("MAP_WANT"), "{reason}");
    node.stop().await;
}

/// A node that stops fades off the others' maps once no record lists it: its neighbours say
/// they lost it, and a record that nothing reachable lists is let go after a grace. (Records
/// are renewed only every three hours now, so their time to live no longer says who left;
/// before, it took that time to live, three minutes.)
#[tokio::test]
async fn a_node_that_stops_fades_off_the_map_once_nothing_lists_it() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    let c = start_node(&[b.ws_url()]).await;
    let mapped = |url: String| async move {
        let map = get_json(&format!("{url}/api/topology")).await;
        map["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|r| r["node"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let c_id = c.id.to_string();
    wait_for_within("C on A's map", Duration::from_secs(60), || async {
        mapped(a.http_url()).await.contains(&c_id).then_some(())
    })
    .await;
    c.stop().await;
    wait_for_within("C off A's map", Duration::from_secs(60), || async {
        (!mapped(a.http_url()).await.contains(&c_id)).then_some(())
    })
    .await;
    assert!(
        mapped(a.http_url()).await.contains(&b.id.to_string()),
        "B, still linked, stays"
    );
    a.stop().await;
    b.stop().await;
}
