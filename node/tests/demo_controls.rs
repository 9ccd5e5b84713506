//! The demo's journal and controls on real nodes: a message's journey as it happened (who
//! took it, when, from whom), nodes killed and restarted, the network cut in two and healed
//! (the halves reconcile), nodes added, a burst; and the controls refused to other sites.

mod common;

use common::*;
use hearsay::cli::DemoArgs;
use hearsay::demo::Demo;
use hearsay_proto::sim::Topology;
use serde_json::Value;
use std::collections::HashSet;

async fn demo(nodes: u16) -> Demo {
    let demo = Demo::start(&DemoArgs {
        nodes,
        topology: Topology::Random,
        port: 0,
    })
    .await
    .unwrap();
    for (i, node) in demo.nodes.iter().enumerate() {
        wait_for(&format!("node {i} linked"), || async {
            (neighbor_ids(&node.http_url()).await.len() >= 2).then_some(())
        })
        .await;
    }
    demo
}

/// `POST url` with these headers: (status, JSON body).
async fn post(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = client().post(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Publishes `text` at `url` through the API; its id.
async fn publish(url: &str, text: &str) -> String {
    let r = client()
        .post(format!("{url}/api/messages"))
        .json(&serde_json::json!({ "data": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "publishing {text}");
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The ids of the nodes a message's journey has reached so far, asked of `url`.
async fn reached(url: &str, id: &str) -> Vec<String> {
    let (status, journey) = get(&format!("{url}/api/journey?id={id}")).await;
    if status != 200 {
        return Vec::new();
    }
    journey["reached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until message `id`'s journey, asked of `url`, has reached `n` nodes.
async fn wait_reached(url: &str, id: &str, n: usize, what: &str) {
    wait_for(what, || async {
        (reached(url, id).await.len() == n).then_some(())
    })
    .await;
}

/// Waits until every node holds `n` messages whose text starts with `prefix`.
async fn wait_hold(urls: &[String], prefix: &str, n: usize) {
    for url in urls {
        wait_for(&format!("{url} to hold {n} × {prefix:?}"), || async {
            let held = message_texts(url).await;
            (held.iter().filter(|t| t.starts_with(prefix)).count() == n).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn the_demo_records_each_message_s_journey_as_it_happened() {
    let demo = demo(8).await;
    let urls: Vec<String> = demo.nodes.iter().map(|n| n.http_url()).collect();
    let ids: HashSet<String> = demo.nodes.iter().map(|n| n.id.to_string()).collect();
    let id = publish(&urls[0], "where did I go").await;
    // Any node answers for the whole demo.
    let journey = wait_for("the journey to reach all eight", || async {
        let (_, j) = get(&format!("{}/api/journey?id={id}", urls[5])).await;
        (j["reached"].as_array().map(Vec::len) == Some(8)).then_some(j)
    })
    .await;
    assert_eq!(journey["nodes"], 8);
    let reached = journey["reached"].as_array().unwrap();
    // It starts where it was published, and each node took it from one that had it before.
    assert_eq!(reached[0]["node"], demo.nodes[0].id.to_string());
    assert_eq!(reached[0]["from"], Value::Null);
    assert_eq!(reached[0]["after_us"], 0);
    let mut had = HashSet::new();
    let mut last = 0;
    for r in reached {
        let node = r["node"].as_str().unwrap().to_owned();
        assert!(ids.contains(&node), "{r}");
        if let Some(from) = r["from"].as_str() {
            assert!(
                had.contains(from),
                "{node} took it from {from}, before it had it"
            );
        }
        let after = r["after_us"].as_u64().unwrap();
        assert!(after >= last, "in the order it happened");
        last = after;
        assert!(had.insert(node), "each node once");
    }

    // What is not known says so: a bad id, an id never seen, a node outside any demo.
    let (status, body) = get(&format!("{}/api/journey?id=nope", urls[0])).await;
    assert_eq!((status, body["error"].is_string()), (400, true), "{body}");
    let unknown = "0".repeat(32);
    let (status, body) = get(&format!("{}/api/journey?id={unknown}", urls[0])).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("newest 256"),
        "{body}"
    );
    let plain = start_node(&[]).await;
    let (status, body) = get(&format!("{}/api/journey?id={id}", plain.http_url())).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not part of a demo"),
        "{body}"
    );
    let (status, _) = post(&format!("{}/api/demo/split", plain.http_url()), &[]).await;
    assert_eq!(status, 404);
    plain.stop().await;
    demo.stop().await;
}

#[tokio::test]
async fn another_site_may_not_control_the_demo() {
    let demo = demo(4).await;
    let url = demo.nodes[1].http_url();
    let split = format!("{url}/api/demo/split");
    // A page of another site, as a browser sends it (with or without Sec-Fetch-Site), and
    // a web app the node lets publish: none may cut the network.
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "http://127.0.9.1:3000"),
        ],
    ] {
        let (status, body) = post(&split, &headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("may not control"),
            "{body}"
        );
    }
    let (_, status) = get(&format!("{url}/api/demo")).await;
    assert_eq!(status["split"], false, "nothing was cut");
    // Its own page may.
    let (status, body) = post(
        &split,
        &[("origin", &url), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(
        (status, body["split"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    // Bad asks are told what is wrong.
    let (status, body) = post(&format!("{url}/api/demo/explode"), &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(&format!("{url}/api/demo/burst?count=0"), &[]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&format!("{url}/api/demo/kill"), &[]).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(&format!("{url}/api/demo/add?count=5000"), &[]).await;
    assert_eq!(status, 409, "{body}");
    demo.stop().await;
}

#[tokio::test]
async fn killed_nodes_come_back_and_a_cut_network_reconciles_once_healed() {
    let demo = demo(8).await;
    let urls: Vec<String> = demo.nodes.iter().map(|n| n.http_url()).collect();
    let control = |action: &str| format!("{}/api/demo/{action}", urls[0]);

    // Kill a quarter (never the node asked): the message reaches every live node.
    let (status, body) = post(&control("kill?share=25"), &[]).await;
    assert_eq!((status, &body["live"]), (200, &Value::from(6)), "{body}");
    let killed: HashSet<String> = body["killed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(killed.len(), 2);
    assert!(!killed.contains(&demo.nodes[0].id.to_string()));
    let while_down = publish(&urls[0], "while two are down").await;
    wait_reached(&urls[0], &while_down, 6, "every live node reached").await;

    // Restarted, on their addresses with their stores: they catch up by reconciliation.
    let (status, body) = post(&control("restart"), &[]).await;
    assert_eq!((status, &body["live"]), (200, &Value::from(8)), "{body}");
    wait_reached(&urls[0], &while_down, 8, "the restarted nodes to catch up").await;

    // Cut in two: no link crosses, and a message stays on its side.
    let (status, body) = post(&control("split"), &[]).await;
    assert_eq!(
        (status, &body["split"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    let side: HashSet<String> = demo.nodes[..4].iter().map(|n| n.id.to_string()).collect();
    for (i, url) in urls.iter().enumerate() {
        wait_for(&format!("node {i} linked on its side only"), || async {
            let n = neighbor_ids(url).await;
            (!n.is_empty() && n.iter().all(|p| side.contains(p) == (i < 4))).then_some(())
        })
        .await;
    }
    let during = publish(&urls[0], "during the cut").await;
    wait_reached(&urls[0], &during, 4, "its side reached").await;
    for url in &urls[4..] {
        assert!(
            !message_texts(url)
                .await
                .contains(&"during the cut".to_owned()),
            "the cut held"
        );
    }

    // Healed: the halves link again and reconcile, and a new message reaches all.
    let (status, body) = post(&control("heal"), &[]).await;
    assert_eq!(
        (status, &body["split"]),
        (200, &Value::Bool(false)),
        "{body}"
    );
    wait_hold(&urls, "during the cut", 1).await;
    let after = publish(&urls[7], "after the cut").await;
    wait_reached(&urls[0], &after, 8, "every node reached").await;

    // Two nodes more, linked in; then a burst of 100 from nodes at random reaches all ten.
    let (status, body) = post(&control("add?count=2"), &[]).await;
    assert_eq!((status, &body["nodes"]), (200, &Value::from(10)), "{body}");
    let (status, body) = post(&control("burst?count=100"), &[]).await;
    assert_eq!(
        (status, &body["published"]),
        (200, &Value::from(100)),
        "{body}"
    );
    let (_, status) = get(&format!("{}/api/demo", urls[0])).await;
    assert_eq!(status["live"], 10);
    // The added nodes are not in `demo.nodes`; every started node must hold the burst.
    wait_hold(&urls, "burst ", 100).await;
    demo.stop().await;
}
