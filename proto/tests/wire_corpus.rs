//! The wire does not change under the code: every frame of a corpus recorded before the
//! engine was recomposed (2026-12-02, protocol 5) decodes and encodes again byte for byte.
//! Protocol 6 (2026-12-03) changed one frame, `BEACON`, now signed by its root (see
//! `succession`): its lines were made again then. Protocol 7 (2026-12-03) signs `MAP` records
//! by their peer (`key`, a page's `tab`, `sig`): those fields were added to its lines.
//! Protocol 8 (2026-12-04) says in each `IHAVE` id how long its announcer has held it: a
//! third number was added to those lines.
//!
//! `corpus/frames.jsonl` holds up to six frames of every type that crossed the simulated
//! networks of `tests/simulation.rs` (nodes, pages, seeds; joins, partitions, churn,
//! reconciliation), then hand-made ones for what those networks never send (`ERROR`, a
//! page's `HELLO`, texts with escapes, frames with their optional fields left out), one
//! JSON frame per line.

use hearsay_proto::Frame;
use std::collections::BTreeSet;

/// Every frame type of protocols 5 to 8.
const TYPES: [&str; 26] = [
    "ACK",
    "BEACON",
    "DEPTH",
    "DISCONNECT",
    "ERROR",
    "FORWARD_JOIN",
    "GOSSIP",
    "GRAFT",
    "HANDOVER",
    "HELLO",
    "IHAVE",
    "JOIN",
    "MAP",
    "MESSAGE",
    "MESSAGES",
    "NEIGHBOR",
    "PEERS",
    "PING",
    "PONG",
    "PROOF",
    "PRUNE",
    "SHUFFLE",
    "SHUFFLE_REPLY",
    "SOCKETS",
    "SYNC",
    "WANT",
];

#[test]
fn every_recorded_frame_decodes_and_encodes_again_byte_for_byte() {
    let corpus = include_str!("corpus/frames.jsonl");
    let mut seen = BTreeSet::new();
    for (n, line) in corpus.lines().enumerate() {
        let frame = Frame::decode(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        assert_eq!(frame.encode(), line, "line {}", n + 1);
        let tag: serde_json::Value = serde_json::from_str(line).expect("JSON");
        seen.insert(tag["type"].as_str().expect("a type").to_owned());
    }
    let all: BTreeSet<String> = TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, all, "the corpus holds every frame type");
}
