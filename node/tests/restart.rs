//! A node killed with SIGKILL and started again on its port is reconnected by the others
//! without anyone's help. The node runs as a real process so the kill is a real one.

mod common;

use common::*;
use std::process::{Child, Command};

struct Proc {
    child: Child,
    url: String,
    ws: String,
    /// Keeps the node's data folder alive (and removes it) with the test.
    _data: std::sync::Arc<tempfile::TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hearsay PORT ...` on a new data folder and reads the port it bound from its first
/// line of output.
fn spawn(port: u16, peers: &[String]) -> Proc {
    spawn_in(
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        port,
        peers,
    )
}

fn spawn_in(data: std::sync::Arc<tempfile::TempDir>, port: u16, peers: &[String]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearsay"));
    cmd.arg(port.to_string())
        .args(["--v1-port", "off"])
        .arg("--data")
        .arg(data.path());
    for p in peers {
        cmd.args(["--peer", p]);
    }
    let (child, url) = spawn_hearsay(&mut cmd);
    let ws = url.replace("http://", "ws://");
    Proc {
        child,
        url,
        ws,
        _data: data,
    }
}

#[tokio::test]
async fn a_killed_and_restarted_node_is_reconnected_without_help() {
    let a = spawn(0, &[]);
    let b = spawn(0, std::slice::from_ref(&a.ws));
    let c = spawn(0, std::slice::from_ref(&b.ws));
    for p in [&a, &b, &c] {
        wait_for("a full mesh of three", || async {
            (neighbor_ids(&p.url).await.len() == 2).then_some(())
        })
        .await;
    }
    let old_b = status(&b.url).await["id"].as_str().unwrap().to_owned();
    let b_port: u16 = b.url.rsplit(':').next().unwrap().parse().unwrap();

    let mut b = b;
    b.child.kill().unwrap(); // SIGKILL: no close frames, no goodbye
    b.child.wait().unwrap();
    for p in [&a, &c] {
        wait_for("b to be noticed gone", || async {
            (!neighbor_ids(&p.url).await.contains(&old_b)).then_some(())
        })
        .await;
    }

    // Started again on its port and folder with no --peer at all: a and c must find it.
    let data = b._data.clone();
    drop(b);
    let b = spawn_in(data, b_port, &[]);
    let new_b = status(&b.url).await["id"].as_str().unwrap().to_owned();
    assert_eq!(
        new_b, old_b,
        "a restarted node is the same node: its key is kept in its folder"
    );
    for p in [&a, &c] {
        wait_for("b to be redialed", || async {
            neighbor_ids(&p.url).await.contains(&new_b).then_some(())
        })
        .await;
    }
    post_message_url(&b.url, "b is back").await;
    wait_all_hold(&[a.url.clone(), c.url.clone()], &["b is back".to_owned()]).await;
}

async fn post_message_url(url: &str, data: &str) {
    let r = client()
        .post(format!("{url}/api/messages"))
        .json(&serde_json::json!({ "data": data }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

/// Ctrl-C (SIGINT) and SIGTERM (what systemd sends) both stop the node cleanly: exit 0,
/// ports freed, peers told.
#[tokio::test]
async fn ctrl_c_or_sigterm_stops_the_node_and_frees_its_ports() {
    for signal in ["-INT", "-TERM"] {
        let a = spawn(0, &[]);
        let b = spawn(0, std::slice::from_ref(&a.ws));
        wait_for("a and b linked", || async {
            (neighbor_ids(&a.url).await.len() == 1).then_some(())
        })
        .await;
        let addr = b.url.trim_start_matches("http://").to_owned();
        let mut b = b;
        let pid = b.child.id().to_string();
        let ok = Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = wait_for("the node to exit", || {
            let s = b.child.try_wait().unwrap();
            async move { s }
        })
        .await;
        assert!(status.success(), "{signal}: exit status {status:?}");
        std::net::TcpListener::bind(&addr).expect("port freed");
        wait_for("a to see b leave", || async {
            neighbor_ids(&a.url).await.is_empty().then_some(())
        })
        .await;
    }
}
