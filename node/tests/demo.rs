//! `hearsay demo` as a person runs it: the nodes come up linked (the topology asked for is
//! their first links), a commit at one end of the line reaches the other, and Ctrl-C stops
//! every node and frees every port.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn a_line_demo_carries_a_commit_end_to_end_and_stops_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearsay"))
        .args(["demo", "--nodes", "5", "--topology", "line", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut urls = Vec::new();
    let mut said = String::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the demo ended early"
        );
        if line.starts_with("Open any page") {
            break;
        }
        said.push_str(&line);
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            urls.push(url.to_owned());
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert_eq!(urls.len(), 5, "{urls:?}");
    // Each node on its own loopback address (Linux routes all of 127.0.0.0/8), so each is
    // its own address group, as on a real network; and the demo says so.
    assert!(said.contains("own loopback address (127.0.N.1)"), "{said}");
    let hosts: Vec<&str> = urls
        .iter()
        .map(|u| u["http://".len()..].split(':').next().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            "127.0.1.1",
            "127.0.2.1",
            "127.0.3.1",
            "127.0.4.1",
            "127.0.5.1"
        ]
    );

    // The line is only the first links: membership links the five into a mesh (with five
    // nodes, every node can reach every other in its view of at most five).
    for (i, url) in urls.iter().enumerate() {
        wait_for(&format!("node {i} linked"), || async {
            (neighbor_ids(url).await.len() >= 2).then_some(())
        })
        .await;
    }
    let first = client()
        .get(format!("{}/commit", urls[0]))
        .query(&[("msg", "end to end")])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 303);
    wait_for("the far end to hold it", || async {
        (message_texts(&urls[4]).await == ["end to end"]).then_some(())
    })
    .await;
    for url in &urls {
        wait_for("every node to count it delivered once", || async {
            let metrics = get_text(&format!("{url}/metrics")).await;
            metrics
                .contains("hearsay_messages_delivered_total 1")
                .then_some(())
        })
        .await;
    }

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_for("the demo to exit", || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    assert!(status.success(), "{status:?}");
    for url in &urls {
        std::net::TcpListener::bind(url.trim_start_matches("http://")).expect("port freed");
    }
}
