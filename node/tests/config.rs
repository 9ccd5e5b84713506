//! `hearsay --config FILE` with flags over it, as an operator runs it: the settings in effect
//! are the documented ones, shown in `/api/status` and logged without terminal colour codes;
//! a bad `--peer` stops the node with a usage error.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};

#[tokio::test]
async fn a_config_file_with_flags_over_it_gives_the_documented_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearsay.toml");
    std::fs::write(
        &file,
        r#"
port = 1
host = "127.0.0.1"
v1_port = "off"
peers = ["ws://127.0.0.1:9"]

[limits]
page_messages = { burst = 20, per_second = 2 }

[connections]
max_per_address = 8
"#,
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearsay"));
    // The flags override the file's port and peers.
    cmd.arg("0")
        .arg("--config")
        .arg(&file)
        .args(["--peer", "ws://127.0.0.1:7"])
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "hearsay=info");
    let (mut child, url) = {
        let log_file = std::fs::File::create(&log).unwrap();
        cmd.stderr(Stdio::from(log_file));
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut first = Vec::new();
        let mut byte = [0u8];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            first.push(byte[0]);
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let line = String::from_utf8(first).unwrap();
        (child, line.split_whitespace().last().unwrap().to_owned())
    };
    let s = status(&url).await;
    let settings = &s["settings"];
    assert_eq!(
        settings["peers"],
        serde_json::json!(["ws://127.0.0.1:7"]),
        "{s}"
    );
    assert_ne!(settings["port"], 1, "{s}");
    assert_eq!(settings["v1_port"], "off");
    assert_eq!(settings["connections"]["max_per_address"], 8);
    assert_eq!(settings["connections"]["max"], 4096, "unset: the default");
    assert_eq!(s["limits"]["page_messages"]["burst"], 20.0);
    assert_eq!(
        s["limits"]["http_messages"]["burst"], 100.0,
        "unset: the default"
    );
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("starting") && logged.contains("page_messages"),
        "{logged}"
    );
    assert!(
        !logged.contains('\u{1b}'),
        "no colour codes in a log file: {logged:?}"
    );
}

#[test]
fn a_bad_peer_or_a_typo_in_the_file_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearsay"))
        .args(["0", "--v1-port", "off", "--peer", "localhost:3000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("localhost:3000") && err.contains("ws://"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearsay.toml");
    std::fs::write(&file, "prot = 3000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearsay"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prot"), "{err}");
}
