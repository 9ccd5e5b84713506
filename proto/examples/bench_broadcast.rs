//! What broadcasting costs, Plumtree beside flooding in the same run: the figures of the
//! issue's table at 1,000 nodes (single and random senders, and a fifth of the nodes killed
//! halfway), each printed for both strategies.
//!
//! `cargo run --release -p hearsay-proto --example bench_broadcast [NODES] [MESSAGES]`

use hearsay_proto::Strategy;
use hearsay_proto::sim::{Figures, Scenario, Senders};

fn run(nodes: usize, messages: usize, strategy: Strategy, senders: Senders, churn: f64) -> Figures {
    let started = std::time::Instant::now();
    let mut f = Scenario {
        nodes,
        messages,
        strategy,
        senders,
        churn,
        ..Scenario::default()
    }
    .run();
    f.wall_s = started.elapsed().as_secs_f64();
    f
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    println!("{nodes} nodes, {messages} messages at 10/s, links 10..50 ms, seed 1");
    println!(
        "| run | strategy | delivered | RMR | LDH | p50 ms | p99 ms | frames/delivery | bytes/delivery | wall s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, senders, churn) in [
        ("one sender", Senders::One, 0.0),
        ("random senders", Senders::Random, 0.0),
        ("random senders, 20% killed", Senders::Random, 0.2),
    ] {
        for strategy in [Strategy::Plumtree, Strategy::Flood] {
            let f = run(nodes, messages, strategy, senders, churn);
            println!(
                "| {name} | {strategy} | {:.4} | {:.3} | {:.1} | {} | {} | {:.2} | {:.0} | {:.1} |",
                f.delivered_ratio,
                f.rmr,
                f.ldh,
                f.p50_ms,
                f.p99_ms,
                f.frames_per_delivery,
                f.bytes_per_delivery,
                f.wall_s
            );
        }
    }
}
