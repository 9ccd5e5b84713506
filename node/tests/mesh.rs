//! Real nodes on 127.0.0.1 talking over real WebSockets.

mod common;

use common::*;
use hearsay::server::NodeConfig;
use hearsay_proto::Config as EngineConfig;

#[tokio::test]
async fn a_chain_of_peer_flags_forms_a_mesh_and_commits_reach_every_node_once() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    let c = start_node(&[b.ws_url()]).await;
    let nodes = [&a, &b, &c];
    let urls: Vec<String> = nodes.iter().map(|n| n.http_url()).collect();

    // c was only told about b, yet ends up linked to a too, and nobody holds two links to one
    // node.
    for (i, node) in nodes.iter().enumerate() {
        let mut want: Vec<String> = nodes
            .iter()
            .filter(|n| n.id != node.id)
            .map(|n| n.id.to_string())
            .collect();
        want.sort();
        wait_for(&format!("node {i} to see both others"), || {
            let want = want.clone();
            let url = node.http_url();
            async move { (v2_peer_ids(&url).await == want).then_some(()) }
        })
        .await;
    }

    let mut texts = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let t1 = format!("commit from node {i}");
        commit(node, &t1).await;
        let t2 = format!("post from node {i} <script>alert(1)</script>");
        post_message(node, &t2).await;
        texts.extend([t1, t2]);
    }
    wait_all_hold(&urls, &texts).await;

    // Every node agrees on each message's id and origin.
    let reference = messages(&urls[0]).await;
    for url in &urls[1..] {
        let mut mine = messages(url).await;
        mine.sort_by_key(|m| m["id"].as_str().unwrap().to_owned());
        let mut theirs = reference.clone();
        theirs.sort_by_key(|m| m["id"].as_str().unwrap().to_owned());
        assert_eq!(mine, theirs);
    }

    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test]
async fn the_centre_of_a_star_relays_between_leaves() {
    // Leaves may not dial what they learn, so the only paths run through the centre.
    let static_config = |peers: Vec<String>| NodeConfig {
        peers,
        engine: EngineConfig {
            dial_discovered: false,
            ..EngineConfig::default()
        },
        ..NodeConfig::default()
    };
    let centre = start_node_with(static_config(vec![])).await;
    let mut leaves = Vec::new();
    for _ in 0..4 {
        leaves.push(start_node_with(static_config(vec![centre.ws_url()])).await);
    }
    wait_for("four leaves at the centre", || async {
        (v2_peer_ids(&centre.http_url()).await.len() == 4).then_some(())
    })
    .await;
    for leaf in &leaves {
        assert_eq!(
            v2_peer_ids(&leaf.http_url()).await,
            vec![centre.id.to_string()]
        );
    }

    let mut texts = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let t = format!("from leaf {i}");
        post_message(leaf, &t).await;
        texts.push(t);
    }
    let mut urls: Vec<String> = leaves.iter().map(|l| l.http_url()).collect();
    urls.push(centre.http_url());
    wait_all_hold(&urls, &texts).await;
    let forwarded = status(&centre.http_url()).await["stats"]["forwarded"]
        .as_u64()
        .unwrap();
    assert_eq!(
        forwarded,
        4 * 3,
        "the centre forwards each leaf's message to the other three"
    );

    centre.stop().await;
    for l in leaves {
        l.stop().await;
    }
}

#[tokio::test]
async fn a_node_stops_cleanly_and_frees_its_ports() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    wait_for("a and b linked", || async {
        (v2_peer_ids(&a.http_url()).await.len() == 1).then_some(())
    })
    .await;
    let (addr, v1) = (b.addr, b.v1_addr.unwrap());
    tokio::time::timeout(DEADLINE, b.stop())
        .await
        .expect("stop finishes");
    // Both ports are free again.
    tokio::net::TcpListener::bind(addr)
        .await
        .expect("main port freed");
    tokio::net::TcpListener::bind(v1)
        .await
        .expect("v1 port freed");
    // And a saw b leave.
    wait_for("a to drop b", || async {
        v2_peer_ids(&a.http_url()).await.is_empty().then_some(())
    })
    .await;
    a.stop().await;
}
