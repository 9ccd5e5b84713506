//! Deterministic simulations of whole networks on a virtual clock: every node delivers every
//! message exactly once, over many seeds and topologies, with and without seed (v1) nodes.

use hearsay_proto::sim::{Sim, Topology, sim_config};
use hearsay_proto::{MsgId, PeerKind, Protocol};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Builds `n` hearsay nodes wired in `topology`, lets handshakes finish, publishes `messages`
/// at random nodes at random moments, and lets everything settle.
fn run_network(
    seed: u64,
    n: usize,
    topology: Topology,
    discover: bool,
    messages: usize,
) -> (Sim, Vec<MsgId>) {
    let mut sim = Sim::new(seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    for _ in 0..n {
        sim.add_hearsay(sim_config(discover));
    }
    sim.wire(topology);
    sim.run_for(5_000);
    let mut ids = Vec::new();
    for m in 0..messages {
        let at = rng.random_range(0..n);
        ids.push(sim.publish(at, &format!("message {m} from node {at}")));
        let gap = rng.random_range(0..200);
        sim.run_for(gap);
    }
    sim.run_for(20_000);
    (sim, ids)
}

#[test]
fn every_topology_delivers_exactly_once() {
    for topology in Topology::ALL {
        for n in [2, 3, 10, 50] {
            for discover in [false, true] {
                let (sim, ids) = run_network(7, n, topology, discover, 20);
                sim.check_exactly_once(&ids)
                    .unwrap_or_else(|e| panic!("{topology:?} n={n} discover={discover}: {e}"));
            }
        }
    }
}

#[test]
fn simulation_is_deterministic() {
    let (a, _) = run_network(42, 20, Topology::Random, true, 30);
    let (b, _) = run_network(42, 20, Topology::Random, true, 30);
    assert_eq!(a.report(), b.report());
}

#[test]
fn a_chain_of_peer_flags_becomes_a_full_mesh() {
    let (sim, _) = run_network(3, 8, Topology::Line, true, 0);
    for (i, node) in sim.nodes.iter().enumerate() {
        let peers = node.engine().unwrap().peers();
        let v2 = peers.iter().filter(|p| p.protocol == Protocol::V2).count();
        assert_eq!(v2, 7, "node {i} has {v2} peers: {peers:?}");
        let mut ids: Vec<_> = peers.iter().filter_map(|p| p.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 7, "node {i} has two links to one node");
    }
}

#[test]
fn discovery_keeps_the_connection_target() {
    let (sim, ids) = run_network(11, 40, Topology::Line, true, 10);
    sim.check_exactly_once(&ids).unwrap();
    for node in &sim.nodes {
        let e = node.engine().unwrap();
        let outbound = e
            .peers()
            .iter()
            .filter(|p| p.direction == hearsay_proto::Direction::Outbound)
            .count();
        assert!(
            outbound <= e.config().target_connections,
            "{outbound} outbound links"
        );
    }
}

#[test]
fn a_restarted_node_rejoins_without_help() {
    let mut sim = Sim::new(5);
    for _ in 0..5 {
        sim.add_hearsay(sim_config(true));
    }
    sim.wire(Topology::Line);
    sim.run_for(5_000);
    sim.kill(2);
    let during = sim.publish(0, "while node 2 is down");
    sim.run_for(3_000);
    sim.restart(2, sim_config(true), &[1]);
    sim.run_for(15_000);
    let after = sim.publish(4, "after the restart");
    sim.run_for(5_000);
    // The restarted node gets new messages, and by reconciliation what it missed, once each.
    sim.check_exactly_once(&[during, after]).unwrap();
}

/// Seed nodes mixed into a hearsay mesh: each seed stores every distinct message exactly
/// once, and what a seed commits reaches every hearsay node exactly once.
fn run_mixed(seed: u64, hearsay: usize, seeds: usize, messages: usize) {
    let mut sim = Sim::new(seed);
    let mut rng = SmallRng::seed_from_u64(seed);
    for _ in 0..hearsay {
        sim.add_hearsay(sim_config(true));
    }
    sim.wire(Topology::Random);
    let seed_nodes: Vec<usize> = (0..seeds).map(|_| sim.add_seed()).collect();
    for &s in &seed_nodes {
        // A seed user runs /add against one hearsay node. (Seeds are not linked to each other:
        // a seed tells a seed it dials that seed's own address, so seeds dial themselves; that
        // is the seed's flaw, not something hearsay can mend.)
        let target = rng.random_range(0..hearsay);
        if rng.random_bool(0.5) {
            sim.connect(s, target);
        } else {
            sim.seed_add(s, target);
        }
    }
    sim.run_for(60_000);
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    for m in 0..messages {
        let at = rng.random_range(0..hearsay + seeds);
        let text = format!("mixed {m} at {at}");
        ids.push(sim.publish(at, &text));
        texts.push((at, text));
        sim.run_for(rng.random_range(0..100));
    }
    sim.run_for(20_000);
    sim.check_exactly_once(&ids)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    for &s in &seed_nodes {
        let stored = &sim.nodes[s].seed().unwrap().messages;
        for (at, text) in &texts {
            // Everything from hearsay nodes, and its own; another seed's text only over a
            // direct seed link, which this network does not have.
            let want = usize::from(*at < hearsay || *at == s);
            let n = stored.iter().filter(|m| *m == text).count();
            assert_eq!(
                n, want,
                "seed {seed}: seed node {s} stored {text:?} {n} times"
            );
        }
    }
    // Seeds never show up as hearsay nodes, and are known as v1 wherever they are linked.
    for node in sim.nodes.iter().filter_map(|n| n.engine()) {
        for p in node.peers() {
            if p.protocol == Protocol::V2 {
                assert_eq!(p.kind, Some(PeerKind::Node));
            }
        }
    }
}

#[test]
fn seed_nodes_join_a_hearsay_mesh() {
    run_mixed(1, 6, 1, 20);
    run_mixed(2, 12, 3, 30);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn exactly_once_over_seeds_and_topologies(
        seed in any::<u64>(),
        n in 2usize..=50,
        topology in 0usize..Topology::ALL.len(),
        discover in any::<bool>(),
    ) {
        let (sim, ids) = run_network(seed, n, Topology::ALL[topology], discover, 15);
        if let Err(e) = sim.check_exactly_once(&ids) {
            return Err(TestCaseError::fail(e));
        }
    }

    #[test]
    fn mixed_meshes_over_seeds(seed in any::<u64>(), hearsay in 2usize..12, seeds in 1usize..4) {
        run_mixed(seed, hearsay, seeds, 12);
    }
}

/// Prints the figures the closing note quotes (run with `--nocapture`).
#[test]
fn report_figures() {
    for (n, topology) in [
        (10, Topology::Random),
        (50, Topology::Random),
        (50, Topology::Line),
    ] {
        let (sim, ids) = run_network(2026, n, topology, true, 100);
        sim.check_exactly_once(&ids).unwrap();
        let r = sim.report();
        println!(
            "sim n={n} {topology:?}: messages={} deliveries={} duplicates_suppressed={} frames={} mean_latency={:.1}ms max_latency={}ms",
            r.messages,
            r.deliveries,
            r.duplicates_suppressed,
            r.frames_sent,
            r.mean_latency_ms,
            r.max_latency_ms
        );
        assert_eq!(r.deliveries, (n * ids.len()) as u64);
    }
}

#[test]
fn a_seed_dialed_by_a_hearsay_node_gets_each_message_once() {
    let mut sim = Sim::new(9);
    for _ in 0..5 {
        sim.add_hearsay(sim_config(true));
    }
    sim.wire(Topology::Line);
    let s = sim.add_seed();
    // A hearsay user runs /add with the seed's address; the seed dials nothing itself.
    sim.connect(2, s);
    sim.run_for(60_000);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(sim.publish(i, &format!("from {i}")));
    }
    ids.push(sim.publish(s, "from the seed"));
    sim.run_for(120_000);
    sim.check_exactly_once(&ids).unwrap();
    let stored = &sim.nodes[s].seed().unwrap().messages;
    let mut sorted = stored.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        stored.len(),
        "seed stored duplicates: {stored:?}"
    );
    assert_eq!(stored.len(), 6, "{stored:?}");
}

#[test]
fn a_peer_that_starts_late_is_dialed_until_it_answers() {
    let mut sim = Sim::new(21);
    sim.add_hearsay(sim_config(true));
    sim.add_hearsay(sim_config(true));
    sim.kill(0);
    sim.connect(1, 0);
    sim.run_for(20_000);
    assert!(sim.nodes[1].engine().unwrap().stats().dial_failures >= 3);
    sim.restart(0, sim_config(true), &[]);
    // Backoff is capped at 10 s (+25% jitter), so within 15 s the dialer is back.
    sim.run_for(15_000);
    let id = sim.publish(0, "late but here");
    sim.run_for(2_000);
    sim.check_exactly_once(&[id]).unwrap();
}

#[test]
fn browser_peers_relay_and_their_messages_reach_seeds_once() {
    for seed in 0..8 {
        let mut sim = Sim::new(seed);
        for _ in 0..6 {
            sim.add_hearsay(sim_config(true));
        }
        sim.wire(Topology::Line);
        let pages: Vec<usize> = (0..3).map(|k| sim.add_browser(k * 2)).collect();
        let s = sim.add_seed();
        sim.seed_add(s, 1);
        sim.run_for(60_000);
        let mut ids = Vec::new();
        for (k, &p) in pages.iter().enumerate() {
            ids.push(sim.publish(p, &format!("from page {k}")));
        }
        ids.push(sim.publish(3, "from node 3"));
        ids.push(sim.publish(s, "from the seed"));
        sim.run_for(20_000);
        // Pages are full peers: they deliver everything once too.
        sim.check_exactly_once(&ids)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let stored = &sim.nodes[s].seed().unwrap().messages;
        let mut sorted = stored.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "from node 3",
                "from page 0",
                "from page 1",
                "from page 2",
                "from the seed"
            ],
            "seed {seed}"
        );
        // Each page links to its home and two more nodes.
        for &p in &pages {
            let links = sim.nodes[p].engine().unwrap().peers().len();
            assert_eq!(links, 3, "seed {seed}: page {p} has {links} links");
        }
    }
}

#[test]
fn a_late_joiner_gets_the_whole_history_by_reconciliation() {
    let mut sim = Sim::new(77);
    for _ in 0..10 {
        sim.add_hearsay(sim_config(true));
    }
    sim.wire(Topology::Random);
    sim.run_for(5_000);
    let mut ids = Vec::new();
    for m in 0..500 {
        ids.push(sim.publish(m % 10, &format!("history {m}")));
        sim.run_for(5);
    }
    sim.run_for(5_000);
    let late = sim.add_hearsay(sim_config(true));
    sim.connect(late, 3);
    sim.run_for(30_000);
    sim.check_exactly_once(&ids).unwrap();
    let e = sim.nodes[late].engine().unwrap();
    assert_eq!(
        e.stats().synced,
        500,
        "the late joiner got the history by reconciliation"
    );
}

/// Two halves are cut apart, both take commits, the cut heals: every node ends with every
/// message exactly once.
fn partition_heals(seed: u64, n: usize, topology: Topology) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    let mut rng = SmallRng::seed_from_u64(seed);
    for _ in 0..n {
        sim.add_hearsay(sim_config(true));
    }
    sim.wire(topology);
    sim.run_for(10_000);
    let half: Vec<usize> = (0..n / 2).collect();
    sim.partition(&half);
    sim.run_for(2_000);
    let mut ids = Vec::new();
    for m in 0..40 {
        let at = rng.random_range(0..n);
        ids.push(sim.publish(at, &format!("during the cut {m} at {at}")));
        sim.run_for(rng.random_range(0..100));
    }
    sim.run_for(5_000);
    sim.heal();
    // Redials back off up to 10 s; reconciliation then runs on every new link.
    sim.run_for(60_000);
    sim.check_exactly_once(&ids)
}

#[test]
fn a_healed_partition_converges() {
    for topology in [Topology::Line, Topology::Ring, Topology::Random] {
        partition_heals(5, 12, topology).unwrap_or_else(|e| panic!("{topology:?}: {e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn partitions_heal_over_seeds(seed in any::<u64>(), n in 4usize..30, topology in 0usize..4) {
        if let Err(e) = partition_heals(seed, n, Topology::ALL[topology]) {
            return Err(TestCaseError::fail(e));
        }
    }
}

#[test]
fn every_view_of_the_map_converges_to_the_real_links() {
    use hearsay_proto::sim::topology_config;
    for (seed, n, topology) in [
        (1, 12, Topology::Random),
        (2, 20, Topology::Line),
        (3, 8, Topology::Star),
    ] {
        let mut sim = Sim::new(seed);
        for _ in 0..n {
            sim.add_hearsay(topology_config());
        }
        sim.wire(topology);
        sim.run_for(20_000);
        let truth: std::collections::BTreeMap<_, Vec<_>> = sim
            .nodes
            .iter()
            .map(|node| {
                let e = node.engine().unwrap();
                let mut links: Vec<_> = e.peers().iter().filter_map(|p| p.id).collect();
                links.sort();
                (e.id(), links)
            })
            .collect();
        for (i, node) in sim.nodes.iter().enumerate() {
            let view: std::collections::BTreeMap<_, Vec<_>> = node
                .engine()
                .unwrap()
                .topology()
                .into_iter()
                .map(|r| (r.node, r.links))
                .collect();
            assert_eq!(view, truth, "seed {seed}: node {i}'s map");
        }
        // A node that leaves fades: its neighbours drop the link at once, its record expires.
        sim.kill(0);
        sim.run_for(100_000);
        let gone = sim.nodes[0].engine().unwrap().id();
        for node in &sim.nodes[1..] {
            let view = node.engine().unwrap().topology();
            assert!(
                view.iter()
                    .all(|r| r.node != gone && !r.links.contains(&gone)),
                "seed {seed}"
            );
        }
    }
}
