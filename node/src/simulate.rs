//! `hearsay sim`: runs `hearsay_proto::sim::Scenario` and prints its figures, as a table or
//! as one JSON line.

use crate::cli::SimArgs;
use hearsay_proto::sim::{Adversaries, Geography, Scenario};
use std::io::Write;

pub fn run(args: &SimArgs) -> anyhow::Result<()> {
    if args.nodes < 2 || args.messages == 0 {
        anyhow::bail!("a simulation needs at least 2 nodes and 1 message");
    }
    if !(0.0..1.0).contains(&args.churn) {
        anyhow::bail!("--churn is a fraction of the nodes, from 0 up to (not including) 1");
    }
    if args.rate <= 0.0 {
        anyhow::bail!("--rate must be more than 0 messages a second");
    }
    let adversaries = match (args.adversaries, args.attack) {
        (f, _) if !(0.0..1.0).contains(&f) => {
            anyhow::bail!(
                "--adversaries is a fraction of the nodes, from 0 up to (not including) 1"
            )
        }
        (_, Some(_)) if args.adversary_groups == 0 => {
            anyhow::bail!("--adversary-groups must be at least 1")
        }
        (f, Some(attack)) if f > 0.0 => Some(Adversaries {
            fraction: f,
            attack,
            groups: args.adversary_groups,
        }),
        (0.0, None) => None,
        (_, None) => anyhow::bail!("--adversaries needs --attack to say what they do"),
        (_, Some(_)) => anyhow::bail!("--attack needs --adversaries to say how many"),
    };
    let scenario = Scenario {
        nodes: args.nodes,
        messages: args.messages,
        latency: args.latency,
        seed: args.seed,
        rate: args.rate,
        senders: args.senders,
        churn: args.churn,
        strategy: args.strategy,
        topology: args.topology,
        adversaries,
        idle: args.idle.saturating_mul(1000),
        pages: args.pages,
        fast_links: !args.no_fast_links,
        geography: args.geography,
    };
    let started = std::time::Instant::now();
    let mut f = scenario.run();
    f.wall_s = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&f)?)?;
    } else {
        writeln!(
            out,
            "{} nodes, {} messages from {} senders at {}/s, links {} ms{}, {}{}, churn {}, seed {}{}",
            f.nodes,
            f.messages,
            serde_json::to_value(f.senders)?.as_str().unwrap_or("?"),
            args.rate,
            f.latency,
            match f.geography {
                Geography::Pairs => "",
                Geography::Plane => " on a plane",
            },
            f.strategy,
            if f.fast_links { "" } else { ", no fast links" },
            f.churn,
            f.seed,
            match f.attack {
                Some(a) => format!(
                    ", {} % adversaries ({a}, {} groups)",
                    f.adversaries * 100.0,
                    f.adversary_groups
                ),
                None => String::new(),
            }
        )?;
        let rows = [
            ("delivered ratio", format!("{:.4}", f.delivered_ratio)),
            ("RMR", format!("{:.3}", f.rmr)),
            ("LDH (hops)", format!("{:.1}", f.ldh)),
            ("publish to last node p50", format!("{} ms", f.p50_ms)),
            ("publish to last node p99", format!("{} ms", f.p99_ms)),
            (
                "frames per delivery",
                format!("{:.2}", f.frames_per_delivery),
            ),
            ("bytes per delivery", format!("{:.0}", f.bytes_per_delivery)),
            (
                "graph / tree diameter",
                format!(
                    "{} / {} ms (best one tree: {} ms)",
                    f.spread.graph_diameter_ms,
                    f.spread.tree_diameter_ms,
                    f.spread.best_tree_diameter_ms
                ),
            ),
            ("warm-up (virtual)", format!("{:.0} s", f.warmup_s)),
            (
                "every map 99% full after",
                f.mapped_s
                    .map_or("not within the warm-up".to_owned(), |s| format!("{s:.0} s")),
            ),
            (
                "honest delivered / p99",
                format!("{:.4} / {} ms", f.honest_delivered_ratio, f.honest_p99_ms),
            ),
            (
                "honest bytes per delivery",
                format!("{:.0}", f.honest_bytes_per_delivery),
            ),
            (
                "  of which, by frame",
                largest_first(&f.honest_bytes_per_delivery_by_frame),
            ),
            (
                "adversaries' view share",
                format!(
                    "{:.1} % active, {:.1} % passive",
                    f.adversary_active_share * 100.0,
                    f.adversary_passive_share * 100.0
                ),
            ),
            ("wall time", format!("{:.1} s", f.wall_s)),
        ];
        let idle = [
            (
                "idle bytes per node / s",
                format!("{:.0} over {:.0} s", f.idle_bytes_per_node_s, f.idle_s),
            ),
            (
                "  of which, by frame",
                largest_first(&f.idle_bytes_per_node_s_by_frame),
            ),
        ];
        let pages = [
            (
                "idle bytes to a page / s",
                format!(
                    "{:.0} ({} pages; {:.0} from each)",
                    f.idle_bytes_to_page_s, f.pages, f.idle_bytes_from_page_s
                ),
            ),
            (
                "  of which, by frame",
                largest_first(&f.idle_bytes_to_page_s_by_frame),
            ),
        ];
        let rows = rows
            .into_iter()
            .chain(idle.into_iter().filter(|_| f.idle_s > 0.0))
            .chain(pages.into_iter().filter(|_| f.idle_s > 0.0 && f.pages > 0));
        for (name, value) in rows {
            writeln!(out, "  {name:<26} {value}")?;
        }
    }
    Ok(())
}

/// Bytes by frame type, the largest first: `MAP 7467, BEACON 392, …`.
fn largest_first(by_frame: &std::collections::BTreeMap<String, f64>) -> String {
    let mut by: Vec<_> = by_frame.iter().collect();
    by.sort_by(|a, b| b.1.total_cmp(a.1));
    by.iter()
        .map(|(kind, bytes)| format!("{kind} {bytes:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
