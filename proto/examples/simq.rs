use hearsay_proto::Strategy;
use hearsay_proto::sim::{Scenario, Senders};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let m: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    for strategy in [Strategy::Plumtree, Strategy::Flood] {
        for senders in [Senders::One, Senders::Random] {
            let t = std::time::Instant::now();
            let mut f = Scenario {
                nodes: n,
                messages: m,
                strategy,
                senders,
                ..Scenario::default()
            }
            .run();
            f.wall_s = t.elapsed().as_secs_f64();
            println!("{}", serde_json::to_string(&f).unwrap());
        }
    }
}
