//! `hearsay sim` as a person runs it: a small network, the figures as one JSON line with
//! every documented key, and clear usage errors.

use std::process::Command;

fn hearsay(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hearsay"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_small_simulation_prints_its_figures_as_json() {
    let out = hearsay(&[
        "sim",
        "--nodes",
        "30",
        "--messages",
        "10",
        "--seed",
        "7",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let f: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    for key in [
        "nodes",
        "messages",
        "strategy",
        "senders",
        "churn",
        "seed",
        "latency",
        "delivered_ratio",
        "rmr",
        "ldh",
        "p50_ms",
        "p99_ms",
        "frames_per_delivery",
        "bytes_per_delivery",
        "wall_s",
    ] {
        assert!(f.get(key).is_some(), "no {key} in {f}");
    }
    assert_eq!(f["nodes"], 30);
    assert_eq!(f["strategy"], "plumtree");
    assert_eq!(f["latency"], "10..50");
    assert_eq!(f["delivered_ratio"], 1.0);
    assert!(f["rmr"].as_f64().unwrap() < 0.5, "{f}");
}

#[test]
fn the_table_names_each_figure() {
    let out = hearsay(&[
        "sim",
        "--nodes",
        "10",
        "--messages",
        "5",
        "--strategy",
        "flood",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "delivered ratio",
        "RMR",
        "LDH",
        "p99",
        "frames per delivery",
        "flood",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for (args, says) in [
        (&["sim", "--latency", "50..10"][..], "--latency"),
        (&["sim", "--strategy", "gossip"][..], "strategy"),
        (&["sim", "--churn", "1.5"][..], "--churn"),
        (&["sim", "--nodes", "1"][..], "at least 2 nodes"),
    ] {
        let out = hearsay(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
