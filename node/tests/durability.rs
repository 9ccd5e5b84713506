//! Durable history on a real database file: what a node acknowledged survives SIGKILL, each
//! message once; a folder serves one node at a time; a message stored before a restart is not
//! stored again.

mod common;

use common::seed::Seed;
use common::*;
use hearsay::server::NodeConfig;
use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn hearsay(port: u16, data: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearsay"));
    cmd.arg(port.to_string())
        .args(["--v1-port", "off"])
        .arg("--data")
        .arg(data);
    cmd
}

/// Starts the binary and returns it with its base URL.
fn spawn(port: u16, data: &std::path::Path) -> (std::process::Child, String) {
    spawn_hearsay(&mut hearsay(port, data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(0, data.path());
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();

    // Sixteen clients post as fast as they are answered.
    let mut clients = Vec::new();
    for c in 0..16 {
        let (url, acked) = (url.clone(), Arc::clone(&acked));
        clients.push(tokio::spawn(async move {
            let http = client();
            for n in 0.. {
                let body = serde_json::json!({ "data": format!("client {c} message {n}") });
                let Ok(r) = http
                    .post(format!("{url}/api/messages"))
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 201 {
                    return;
                }
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    wait_for("300 acknowledged messages", || async {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    child.kill().unwrap(); // SIGKILL, mid-stream
    child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();

    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (mut child, url) = spawn(port, data.path());
    let held = messages(&url).await;
    let ids: Vec<String> = held
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "a message is stored twice");
    let lost: Vec<&String> = acked.iter().filter(|id| !unique.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    println!(
        "{} acknowledged before the kill, {} held after the restart",
        acked.len(),
        ids.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_second_node_on_a_folder_in_use_gets_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let (mut first, _) = spawn(0, data.path());
    let out = hearsay(0, data.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another hearsay node"),
        "{stderr}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}

#[tokio::test]
async fn a_restarted_node_keeps_its_messages_and_does_not_store_them_again() {
    let data = tempfile::tempdir().unwrap();
    let config = || NodeConfig {
        data: Some(data.path().to_owned()),
        ..NodeConfig::default()
    };
    let node = start_node_with(config()).await;
    let seed = Seed::start().await;
    seed.add(&node.ws_url());
    wait_for("the seed linked", || async {
        (seed.open_sockets() == 1).then_some(())
    })
    .await;
    seed.commit("said before the restart");
    // Stored in this order (the seed's frame and the HTTP post race otherwise).
    wait_for("the seed's text stored", || async {
        (messages(&node.http_url()).await.len() == 1).then_some(())
    })
    .await;
    post_message(&node, "posted before the restart").await;
    wait_for("both stored", || async {
        (messages(&node.http_url()).await.len() == 2).then_some(())
    })
    .await;
    node.stop().await;

    let node = start_node_with(config()).await;
    assert_eq!(
        message_texts(&node.http_url()).await,
        ["said before the restart", "posted before the restart"]
    );
    // The seed says it again (same text, so the same id): not stored, not delivered again.
    let seed2 = Seed::start().await;
    seed2.add(&node.ws_url());
    wait_for("the seed linked", || async {
        (seed2.open_sockets() == 1).then_some(())
    })
    .await;
    seed2.commit("said before the restart");
    seed2.commit("said after the restart");
    wait_for("the new message", || async {
        (messages(&node.http_url()).await.len() == 3).then_some(())
    })
    .await;
    let st = status(&node.http_url()).await;
    assert_eq!(st["stats"]["delivered"], 1);
    assert_eq!(st["stats"]["duplicates"], 1);
    node.stop().await;
}
