//! Real nodes on 127.0.0.1 talking over real WebSockets.

mod common;

use common::*;
use hearsay::server::RunningNode;

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
            async move { (neighbor_ids(&url).await == want).then_some(()) }
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
async fn a_star_of_peer_flags_carries_each_message_along_a_tree() {
    // (With flooding, the leaves only linked to the centre, which relayed everything; now
    // membership links the leaves too, and broadcast sends each message over a spanning tree
    // of those links, so no node receives a copy twice.)
    let centre = start_node(&[]).await;
    let mut leaves = Vec::new();
    for _ in 0..4 {
        leaves.push(start_node(&[centre.ws_url()]).await);
    }
    let mut nodes: Vec<&RunningNode> = leaves.iter().collect();
    nodes.push(&centre);
    let urls: Vec<String> = nodes.iter().map(|n| n.http_url()).collect();
    // Wait for the tree: every node in the overlay, one root, and eager links that pair up
    // into a spanning tree (n - 1 links, named by both ends).
    let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
    wait_for("one broadcast tree spanning the five", || async {
        let mut roots = Vec::new();
        let mut eager: Vec<(String, String)> = Vec::new();
        for (url, id) in urls.iter().zip(&ids) {
            roots.push(status(url).await["root"].as_str()?.to_owned());
            for e in eager_ids(url).await {
                eager.push((id.clone(), e));
            }
        }
        roots.dedup();
        let symmetric = eager
            .iter()
            .all(|(a, b)| eager.contains(&(b.clone(), a.clone())));
        (roots.len() == 1 && symmetric && eager.len() == 2 * (ids.len() - 1)).then_some(())
    })
    .await;
    let before: u64 = total_stat(&urls, "duplicates").await;
    let mut texts = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let t = format!("from leaf {i}");
        post_message(leaf, &t).await;
        texts.push(t);
    }
    wait_all_hold(&urls, &texts).await;
    let after: u64 = total_stat(&urls, "duplicates").await;
    assert_eq!(after - before, 0, "a copy arrived twice somewhere");
    for url in &urls {
        let n = neighbor_ids(url).await.len();
        assert!((1..=5).contains(&n), "{n} neighbours");
    }
    centre.stop().await;
    for l in leaves {
        l.stop().await;
    }
}

async fn total_stat(urls: &[String], name: &str) -> u64 {
    let mut total = 0;
    for url in urls {
        total += status(url).await["stats"][name].as_u64().unwrap();
    }
    total
}

#[tokio::test]
async fn a_node_stops_cleanly_and_frees_its_ports() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    wait_for("a and b linked", || async {
        (neighbor_ids(&a.http_url()).await.len() == 1).then_some(())
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
        neighbor_ids(&a.http_url()).await.is_empty().then_some(())
    })
    .await;
    a.stop().await;
}

/// A node behind a reverse proxy that serves it under a path advertises that URL
/// (`--advertise ws://host:port/hearsay`): a node that dials it there links to it, a third
/// that only learns its address from the second links to it there too, and each counts it
/// once; messages cross the proxy each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_proxy_path_is_reached_at_the_url_it_advertises() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = common::proxy::PathProxy::start(listener.local_addr().unwrap(), "/hearsay").await;
    let advertised = format!("ws://127.0.0.1:{}/hearsay", proxy.addr.port());
    let v1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = hearsay::server::start(
        listener,
        Some(v1),
        hearsay::server::NodeConfig {
            advertise_host: Some(advertised.clone()),
            ..Default::default()
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(
        status(&a.http_url()).await["addresses"][0],
        advertised.as_str()
    );
    let b = start_node(std::slice::from_ref(&advertised)).await;
    let c = start_node(&[b.ws_url()]).await;
    for node in [&b, &c] {
        wait_for("a linked through the proxy", || async {
            let peers = get_json(&format!("{}/api/peers", node.http_url())).await;
            let to_a: Vec<&serde_json::Value> = peers["peers"]
                .as_array()?
                .iter()
                .filter(|p| p["id"] == a.id.to_string().as_str())
                .collect();
            (to_a.len() == 1 && to_a[0]["address"] == advertised.as_str()).then_some(())
        })
        .await;
    }
    let texts = ["from a".to_owned(), "from c".to_owned()];
    post_message(&a, "from a").await;
    post_message(&c, "from c").await;
    wait_all_hold(&[a.http_url(), b.http_url(), c.http_url()], &texts).await;
    for node in [&a, &b, &c] {
        assert_eq!(neighbor_ids(&node.http_url()).await.len(), 2);
    }
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

/// A node nobody can dial (`--advertise none`, as behind NAT) joins by dialing out: it is a
/// neighbour over the links it opened and relays between nodes that know only it, it is
/// never named to others to dial, and no one dials it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_nobody_can_dial_joins_by_dialing_out_and_relays() {
    // Nodes keep only the links they are given, so the unlisted node is the only path.
    let fixed = |peers: Vec<String>, advertise: Option<&str>| {
        let mut c = hearsay::server::NodeConfig {
            peers,
            advertise_host: advertise.map(str::to_owned),
            ..Default::default()
        };
        c.engine.membership.random_walks = false;
        c
    };
    let a = start_node_with(fixed(vec![], None)).await;
    let b = start_node_with(fixed(vec![], None)).await;
    let d = start_node_with(fixed(vec![a.ws_url(), b.ws_url()], Some("none"))).await;
    assert_eq!(
        status(&d.http_url()).await["addresses"],
        serde_json::json!([])
    );
    for node in [&a, &b] {
        wait_for("d as a neighbour", || async {
            (neighbor_ids(&node.http_url()).await == [d.id.to_string()]).then_some(())
        })
        .await;
    }
    // Through d only: a's message reaches b and b's reaches a, each once.
    post_message(&a, "from a").await;
    post_message(&b, "from b").await;
    post_message(&d, "from d").await;
    let all = [
        "from a".to_owned(),
        "from b".to_owned(),
        "from d".to_owned(),
    ];
    wait_all_hold(&[a.http_url(), b.http_url(), d.http_url()], &all).await;
    // Nobody was given an address for d, and every link d has, d opened.
    for node in [&a, &b] {
        let peers = get_json(&format!("{}/api/peers", node.http_url())).await;
        let to_d = peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == d.id.to_string().as_str())
            .unwrap()
            .clone();
        assert!(to_d["address"].is_null(), "{to_d}");
        assert_eq!(to_d["direction"], "inbound", "{to_d}");
    }
    assert_eq!(neighbor_ids(&a.http_url()).await, [d.id.to_string()]);
    a.stop().await;
    b.stop().await;
    d.stop().await;
}
