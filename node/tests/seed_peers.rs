//! Seed (v1) nodes joining a hearsay mesh: each sees every distinct message exactly once and
//! its own commits reach every hearsay node once.

mod common;

use common::seed::Seed;
use common::*;

/// Waits until `seed` holds exactly `want` (any order), then checks no text came twice.
async fn wait_seed_holds(seed: &Seed, want: &[String]) {
    let mut want = want.to_vec();
    want.sort();
    wait_for(&format!("the seed to hold {} messages", want.len()), || {
        let want = want.clone();
        async move {
            let mut got = seed.messages();
            got.sort();
            (got.len() >= want.len()).then_some(())
        }
    })
    .await;
    let mut got = seed.messages();
    got.sort();
    assert_eq!(got, want, "the seed's messages");
}

/// Three nodes started along a chain of `--peer` flags, once each links to the other two.
async fn three_nodes() -> [hearsay::server::RunningNode; 3] {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    let c = start_node(&[b.ws_url()]).await;
    for url in [a.http_url(), b.http_url(), c.http_url()] {
        wait_for("full mesh", || async {
            (neighbor_ids(&url).await.len() == 2).then_some(())
        })
        .await;
    }
    [a, b, c]
}

#[tokio::test]
async fn a_seed_that_dials_one_node_joins_the_whole_mesh() {
    let [a, b, c] = three_nodes().await;
    let urls = [a.http_url(), b.http_url(), c.http_url()];

    // The seed user runs /add against a's seed-compatible port (PORT+1).
    let seed = Seed::start().await;
    seed.add(&format!("ws://{}", a.v1_addr.unwrap()));
    // It learns b and c from a's SOCKETS and dials them: three links, one per node (b and c
    // must not name a to it again by a's main port).
    wait_for("the seed linked to all three nodes", || async {
        (seed.open_sockets() == 3).then_some(())
    })
    .await;

    let mut texts = Vec::new();
    for (i, node) in [&a, &b, &c].into_iter().enumerate() {
        let t = format!("hearsay {i}");
        post_message(node, &t).await;
        texts.push(t);
    }
    seed.commit("from the seed");
    texts.push("from the seed".to_owned());

    wait_all_hold(&urls, &texts).await;
    // Frames on each link arrive in order: a marker from every node after the test messages
    // means anything else those nodes sent the seed has arrived too.
    for (i, node) in [&a, &b, &c].into_iter().enumerate() {
        let m = format!("marker {i}");
        post_message(node, &m).await;
        texts.push(m);
    }
    wait_seed_holds(&seed, &texts).await;
    assert!(
        seed.non_json_frames().is_empty(),
        "hearsay sent the seed non-JSON: {:?}",
        seed.non_json_frames()
    );
    // The seed shows up as a v1 peer, never as a hearsay node.
    let peers = get_json(&format!("{}/api/peers", b.http_url())).await;
    assert!(
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["protocol"] == "v1" && p["kind"].is_null())
    );

    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test]
async fn a_seed_added_at_a_hearsay_node_dials_back_and_gets_each_message_once() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    for url in [a.http_url(), b.http_url()] {
        wait_for("a and b linked", || async {
            (neighbor_ids(&url).await.len() == 1).then_some(())
        })
        .await;
    }
    let seed = Seed::start().await;
    // A hearsay user adds the seed through the seed-style path.
    let (status, _) = get(&format!("{}/add?address={}", b.http_url(), seed.address)).await;
    assert_eq!(status, 303);
    wait_for("the seed linked to a and b", || async {
        (seed.open_sockets() == 2 && seed.dialed().len() == 2).then_some(())
    })
    .await;

    let mut texts = vec![
        "to the seed from a".to_owned(),
        "to the seed from b".to_owned(),
    ];
    post_message(&a, &texts[0]).await;
    commit(&b, &texts[1]).await;
    seed.commit("seed says hi");
    texts.push("seed says hi".to_owned());
    wait_all_hold(&[a.http_url(), b.http_url()], &texts).await;
    for (i, node) in [&a, &b].into_iter().enumerate() {
        let m = format!("marker {i}");
        post_message(node, &m).await;
        texts.push(m);
    }
    wait_seed_holds(&seed, &texts).await;
    a.stop().await;
    b.stop().await;
}

/// The mixed mesh measured against the real seed: three hearsay nodes and two seeds; a seed
/// user runs /add with a hearsay node, a hearsay user runs /add with the other seed, and every
/// node commits once. Before the seed rules were fixed, a seed dialed a hearsay node twice in
/// half the runs and stored its commits twice, and neither seed ever got the other's commit.
/// Then a text committed twice at a seed: one message to hearsay, two copies at the other seed
/// (which got both from it directly), as at the seed itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seeds_and_three_nodes_each_hold_every_commit_once() {
    for run in 0..2 {
        let [a, b, c] = three_nodes().await;
        let urls = [a.http_url(), b.http_url(), c.http_url()];
        let (one, two) = (Seed::start().await, Seed::start().await);
        one.add(&format!("ws://{}", a.v1_addr.unwrap()));
        let (status, _) = get(&format!("{}/add?address={}", c.http_url(), two.address)).await;
        assert_eq!(status, 303);
        // Each seed linked to the three nodes and the two to each other (at the nodes' seed
        // exchange, every 10 s).
        let settle = std::time::Duration::from_secs(45);
        wait_for_within(&format!("run {run}: every link"), settle, || async {
            (one.open_sockets() == 4 && two.open_sockets() == 4).then_some(())
        })
        .await;

        // Every node and seed says something; then a marker from each after the rest (frames
        // arrive in order per link, so the markers' arrival means the rest arrived).
        let mut texts = Vec::new();
        for what in ["says", "marker"] {
            for (i, node) in [&a, &b, &c].into_iter().enumerate() {
                let t = format!("run {run}: node {i} {what}");
                post_message(node, &t).await;
                texts.push(t);
            }
            for (i, seed) in [&one, &two].into_iter().enumerate() {
                let t = format!("run {run}: seed {i} {what}");
                seed.commit(&t);
                texts.push(t);
            }
            wait_all_hold(&urls, &texts).await;
        }
        wait_seed_holds(&one, &texts).await;
        wait_seed_holds(&two, &texts).await;
        for seed in [&one, &two] {
            assert!(!seed.crashed(), "{:?}", seed.non_json_frames());
            assert_eq!(seed.double_dials(), Vec::<String>::new(), "run {run}");
        }

        // The same text twice at a seed.
        one.commit("twice");
        one.commit("twice");
        texts.push("twice".to_owned());
        wait_all_hold(&urls, &texts).await;
        wait_for("the other seed to get both copies", || async {
            (two.messages().iter().filter(|m| *m == "twice").count() == 2).then_some(())
        })
        .await;
        for url in &urls {
            let held = message_texts(url).await;
            assert_eq!(held.iter().filter(|m| *m == "twice").count(), 1, "{url}");
        }
        for n in [a, b, c] {
            n.stop().await;
        }
    }
}
