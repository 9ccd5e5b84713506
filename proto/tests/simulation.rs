//! Deterministic simulations of whole networks on a virtual clock: every node delivers every
//! message exactly once, over many seeds and topologies, with either broadcast strategy, with
//! churn, partitions, pages and seed (v1) nodes; membership keeps bounded, symmetric views.

use hearsay_proto::sim::{
    Adversaries, Attack, Figures, Scenario, Senders, Sim, Topology, sim_config,
};
use hearsay_proto::{MsgId, NodeId, PeerKind, Protocol, Strategy, tree};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Builds `n` hearsay nodes wired in `topology`, lets handshakes finish, publishes `messages`
/// at random nodes at random moments, and lets everything settle.
fn run_network(
    run: u64,
    n: usize,
    topology: Topology,
    strategy: Strategy,
    messages: usize,
) -> (Sim, Vec<MsgId>) {
    let mut sim = Sim::new(run);
    let mut rng = SmallRng::seed_from_u64(run ^ 0x5eed);
    for _ in 0..n {
        sim.add_hearsay(sim_config(strategy));
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

const STRATEGIES: [Strategy; 2] = [Strategy::Plumtree, Strategy::Flood];

#[test]
fn every_topology_delivers_exactly_once() {
    for topology in Topology::ALL {
        for n in [2, 3, 10, 50] {
            for strategy in STRATEGIES {
                let (sim, ids) = run_network(7, n, topology, strategy, 20);
                sim.check_exactly_once(&ids)
                    .unwrap_or_else(|e| panic!("{topology:?} n={n} {strategy}: {e}"));
            }
        }
    }
}

#[test]
fn simulation_is_deterministic() {
    let (a, _) = run_network(42, 20, Topology::Random, Strategy::Plumtree, 30);
    let (b, _) = run_network(42, 20, Topology::Random, Strategy::Plumtree, 30);
    assert_eq!(a.report(), b.report());
}

/// Membership's invariants, once what is in flight has landed: [`views_now`] holds at one of
/// three moments two seconds apart. (Nodes swap slow neighbours for faster ones at any time,
/// so at a given moment a request or its answer may be on its way; a view that is wrong
/// stays wrong at all three.)
fn check_views(sim: &mut Sim) -> Result<(), String> {
    let mut result = views_now(sim);
    for _ in 0..2 {
        if result.is_ok() {
            break;
        }
        sim.run_for(2_000);
        result = views_now(sim);
    }
    result
}

/// Membership's invariants: each node's active view is within capacity and never names it
/// twice, views are symmetric, and together they connect every node.
fn views_now(sim: &Sim) -> Result<(), String> {
    let engines: Vec<_> = sim
        .nodes
        .iter()
        .filter(|n| n.up)
        .filter_map(|n| n.engine())
        .collect();
    let index: std::collections::HashMap<NodeId, usize> = engines
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id(), i))
        .collect();
    for e in &engines {
        let view = e.neighbors();
        let capacity = e.config().membership.active_capacity;
        if view.is_empty() || view.len() > capacity {
            return Err(format!("{:?} has {} neighbours", e.id(), view.len()));
        }
        let mut unique = view.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != view.len() {
            return Err(format!("{:?} names a neighbour twice", e.id()));
        }
        for n in &view {
            let other = index.get(n).ok_or("a neighbour that is not running")?;
            if !engines[*other].neighbors().contains(&e.id()) {
                return Err(format!("{:?} -> {n:?} is not symmetric", e.id()));
            }
        }
    }
    let mut reached = vec![false; engines.len()];
    let mut stack = vec![0];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut reached[i], true) {
            continue;
        }
        stack.extend(
            engines[i]
                .neighbors()
                .iter()
                .filter_map(|n| index.get(n))
                .copied(),
        );
    }
    match reached.iter().position(|r| !r) {
        Some(i) => Err(format!("node {i} is cut off from node 0")),
        None => Ok(()),
    }
}

#[test]
fn a_chain_of_peer_flags_becomes_a_connected_overlay_of_bounded_degree() {
    // (With flooding, nodes linked to every node they heard of, so 8 nodes made a full mesh
    // of 7 links each; HyParView keeps at most 5 and still connects everyone.)
    for n in [8, 40] {
        let (mut sim, _) = run_network(3, n, Topology::Line, Strategy::Plumtree, 0);
        check_views(&mut sim).unwrap_or_else(|e| panic!("n={n}: {e}"));
        for (i, node) in sim.nodes.iter().enumerate() {
            let peers = node.engine().unwrap().peers();
            let mut ids: Vec<_> = peers.iter().filter_map(|p| p.id).collect();
            let all = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), all, "node {i} has two links to one node");
        }
    }
}

#[test]
fn a_restarted_node_rejoins_without_help() {
    let mut sim = Sim::new(5);
    for _ in 0..5 {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
    }
    sim.wire(Topology::Line);
    sim.run_for(5_000);
    sim.kill(2);
    let during = sim.publish(0, "while node 2 is down");
    sim.run_for(3_000);
    sim.restart(2, sim_config(Strategy::Plumtree), &[1]);
    sim.run_for(15_000);
    let after = sim.publish(4, "after the restart");
    sim.run_for(5_000);
    // The restarted node gets new messages, and by reconciliation what it missed, once each.
    sim.check_exactly_once(&[during, after]).unwrap();
}

/// Whether seeds `a` and `b` have a direct link (either dialed the other).
fn seeds_linked(sim: &Sim, a: usize, b: usize) -> bool {
    let dialed = |x: usize, y: usize| {
        sim.nodes[x]
            .seed()
            .unwrap()
            .dialed
            .iter()
            .any(|d| d == &sim.nodes[y].address)
    };
    dialed(a, b) || dialed(b, a)
}

/// Checks what the seeds of a mixed mesh hold once `texts` (published at the given nodes)
/// have spread: every seed holds every text of a hearsay node and its own exactly once, and
/// another seed's exactly once if the two are linked, which they must be wherever hearsay
/// knows either's address (`dialed_by_hearsay`); no seed dialed anything twice or crashed.
fn check_seeds(
    sim: &Sim,
    seed_nodes: &[usize],
    dialed_by_hearsay: &[usize],
    texts: &[(usize, String)],
    run: &str,
) {
    for &s in seed_nodes {
        let node = sim.nodes[s].seed().unwrap();
        assert_eq!(node.crashed, None, "{run}: seed node {s} crashed");
        // A double dial is the race `seed` leaves open: two nodes that each dialed a seed
        // introduce one undialed seed at once. Where fewer than two seeds were dialed it
        // cannot happen; where it can, what follows checks it carried nothing.
        if dialed_by_hearsay.len() < 2 {
            assert_eq!(
                node.double_dials(),
                [],
                "{run}: seed node {s} dialed these more than once"
            );
        }
        // Seeds are introduced in pairs, one no node dialed to one a node did (see `seed`):
        // with one of each, they are linked.
        let undialed = seed_nodes
            .iter()
            .filter(|t| !dialed_by_hearsay.contains(t))
            .count();
        if seed_nodes.len() == 2 && dialed_by_hearsay.len() == 1 && undialed == 1 {
            let t = seed_nodes.iter().find(|&&t| t != s).copied().unwrap();
            assert!(
                seeds_linked(sim, s, t),
                "{run}: hearsay knows seed {s} or {t} and did not introduce them"
            );
        }
        for (at, text) in texts {
            let want = if sim.nodes[*at].seed().is_none() || *at == s {
                1
            } else {
                usize::from(seeds_linked(sim, s, *at))
            };
            let n = node.messages.iter().filter(|m| *m == text).count();
            assert_eq!(n, want, "{run}: seed node {s} stored {text:?} {n} times");
        }
    }
}

/// Seed nodes mixed into a hearsay mesh: each seed stores every distinct message exactly
/// once, and what a seed commits reaches every hearsay node exactly once.
fn run_mixed(run: u64, hearsay: usize, seeds: usize, messages: usize) {
    let mut sim = Sim::new(run);
    let mut rng = SmallRng::seed_from_u64(run);
    for _ in 0..hearsay {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
    }
    sim.wire(Topology::Random);
    // Seeds join a mesh that has formed (its nodes know each other): while it forms, the
    // nodes a seed reaches first may not know one another, and more than one then names
    // nodes to it (each link is still closed if it would be a second).
    sim.run_for(15_000);
    let seed_nodes: Vec<usize> = (0..seeds).map(|_| sim.add_seed()).collect();
    let mut dialed_by_hearsay = Vec::new();
    for &s in &seed_nodes {
        // Their users come one after another (a seed that a user /adds to the very node that
        // dials another fresh seed in the same moment cannot be told from it: see `seed`).
        sim.run_for(3_000);
        // A seed user runs /add against one hearsay node (at its main or its seed port), or
        // a hearsay user runs /add with the seed.
        let target = rng.random_range(0..hearsay);
        match rng.random_range(0..3) {
            0 => sim.connect(s, target),
            1 => sim.seed_add(s, target),
            _ => {
                sim.connect(target, s);
                dialed_by_hearsay.push(s);
            }
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
        .unwrap_or_else(|e| panic!("run {run}: {e}"));
    check_seeds(
        &sim,
        &seed_nodes,
        &dialed_by_hearsay,
        &texts,
        &format!("run {run}"),
    );
    // Seeds never show up as hearsay nodes, and are known as v1 wherever they are linked.
    for node in sim.nodes.iter().filter_map(|n| n.engine()) {
        for p in node.peers() {
            if p.protocol == Protocol::Hearsay {
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

/// The mixed mesh measured against the real seed: three hearsay nodes, two seeds; a seed user
/// runs /add with a hearsay node, a hearsay user runs /add with the other seed, and every node
/// commits once. Before the seed rules were fixed, a seed dialed a hearsay node twice (and
/// stored its commits twice) in some runs, and neither seed ever got the other's commit.
#[test]
fn two_seeds_and_three_nodes_each_hold_every_commit_once() {
    for run in 0..40 {
        let mut sim = Sim::new(run);
        for _ in 0..3 {
            sim.add_hearsay(sim_config(Strategy::Plumtree));
        }
        sim.connect(1, 0);
        sim.connect(2, 1);
        let (a, b) = (sim.add_seed(), sim.add_seed());
        sim.run_for(5_000);
        sim.seed_add(a, 0);
        sim.connect(2, b);
        sim.run_for(30_000);
        let mut ids = Vec::new();
        let mut texts = Vec::new();
        for at in 0..5 {
            let text = format!("commit at {at}");
            ids.push(sim.publish(at, &text));
            texts.push((at, text));
        }
        sim.run_for(20_000);
        sim.check_exactly_once(&ids)
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        check_seeds(&sim, &[a, b], &[b], &texts, &format!("run {run}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn exactly_once_over_seeds_and_topologies(
        run in any::<u64>(),
        n in 2usize..=200,
        topology in 0usize..Topology::ALL.len(),
        flood in any::<bool>(),
    ) {
        let strategy = if flood { Strategy::Flood } else { Strategy::Plumtree };
        let (mut sim, ids) = run_network(run, n, Topology::ALL[topology], strategy, 15);
        let checked = sim.check_exactly_once(&ids).and_then(|()| check_views(&mut sim));
        if let Err(e) = checked {
            return Err(TestCaseError::fail(e));
        }
    }

    #[test]
    fn mixed_meshes_over_seeds(run in any::<u64>(), hearsay in 2usize..12, seeds in 1usize..4) {
        run_mixed(run, hearsay, seeds, 12);
    }
}

/// A small `hearsay sim` run: both strategies deliver everything, and Plumtree costs about
/// one payload frame per node where flooding costs several (run with `--nocapture` to see
/// the figures).
#[test]
fn plumtree_costs_about_one_frame_per_node_and_flooding_several() {
    let run = |strategy, senders| {
        Scenario {
            nodes: 60,
            messages: 20,
            seed: 2026,
            strategy,
            senders,
            ..Scenario::default()
        }
        .run()
    };
    for senders in [Senders::One, Senders::Random] {
        let tree = run(Strategy::Plumtree, senders);
        let flood = run(Strategy::Flood, senders);
        println!("{}", serde_json::to_string(&tree).unwrap());
        println!("{}", serde_json::to_string(&flood).unwrap());
        for f in [&tree, &flood] {
            assert_eq!(f.delivered_ratio, 1.0, "{f:?}");
        }
        // iroh-gossip asserts RMR < 0.2 (one sender) and < 1 (random senders) at 100 nodes.
        assert!(tree.rmr < 0.2, "{tree:?}");
        assert!(flood.rmr > 1.0, "{flood:?}");
        assert!(
            tree.frames_per_delivery < flood.frames_per_delivery,
            "{tree:?}"
        );
        assert!(tree.ldh < 15.0, "{tree:?}");
    }
}

/// A network that starts at once has every node's map nearly full within seconds: records go
/// out as soon as the tree has a root, and what the tree lost while it formed is asked for
/// (`MAP_WANT`). Measured before: at 200 nodes, 20 nodes held half the map 18 s after the
/// start, and waited for renewals (80 s until 99% everywhere).
#[test]
fn every_map_fills_within_seconds_of_the_start() {
    for seed in [1, 2, 3] {
        let f = Scenario {
            nodes: 200,
            messages: 1,
            seed,
            ..Scenario::default()
        }
        .run();
        let mapped = f.mapped_s.expect("every map 99% full in the warm-up");
        println!("seed {seed}: every map 99% full after {mapped} s");
        assert!(mapped <= 20.0, "seed {seed}: {mapped} s");
    }
}

/// A fifth of the nodes die halfway through: every live node still gets every message.
#[test]
fn every_live_node_gets_every_message_when_a_fifth_of_the_nodes_die() {
    for run in [1, 2, 3] {
        let f = Scenario {
            nodes: 80,
            messages: 30,
            seed: run,
            churn: 0.2,
            ..Scenario::default()
        }
        .run();
        assert_eq!(f.delivered_ratio, 1.0, "run {run}: {f:?}");
    }
}

#[test]
fn a_seed_dialed_by_a_hearsay_node_gets_each_message_once() {
    let mut sim = Sim::new(9);
    for _ in 0..5 {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
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
    sim.add_hearsay(sim_config(Strategy::Plumtree));
    sim.add_hearsay(sim_config(Strategy::Plumtree));
    sim.kill(0);
    sim.connect(1, 0);
    sim.run_for(20_000);
    assert!(sim.nodes[1].engine().unwrap().stats().dial_failures >= 3);
    sim.restart(0, sim_config(Strategy::Plumtree), &[]);
    // Backoff is capped at 10 s (+25% jitter), so within 15 s the dialer is back.
    sim.run_for(15_000);
    let id = sim.publish(0, "late but here");
    sim.run_for(2_000);
    sim.check_exactly_once(&[id]).unwrap();
}

#[test]
fn browser_peers_relay_and_their_messages_reach_seeds_once() {
    for run in 0..8 {
        let mut sim = Sim::new(run);
        for _ in 0..6 {
            sim.add_hearsay(sim_config(Strategy::Plumtree));
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
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
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
            "run {run}"
        );
        // Each page links to its home and two more nodes, and messages are pushed to it
        // over one of them.
        for &p in &pages {
            let peers = sim.nodes[p].engine().unwrap().peers();
            assert_eq!(
                peers.len(),
                3,
                "run {run}: page {p} has {} links",
                peers.len()
            );
            let eager = peers.iter().filter(|x| x.eager).count();
            assert_eq!(
                eager, 1,
                "run {run}: page {p} is pushed to over {eager} links"
            );
        }
    }
}

/// A page gets each message once, pushed over one link and announced over the others; when
/// the node it is pushed from dies, the others carry on.
#[test]
fn a_page_gets_each_message_once_and_outlives_its_parent() {
    for run in 0..6 {
        let mut sim = Sim::new(run);
        for _ in 0..8 {
            sim.add_hearsay(sim_config(Strategy::Plumtree));
        }
        sim.wire(Topology::Random);
        let page = sim.add_browser(0);
        sim.run_for(30_000);
        let mut ids = Vec::new();
        for m in 0..10 {
            ids.push(sim.publish(1 + m % 7, &format!("to the page {m}")));
            sim.run_for(200);
        }
        sim.run_for(5_000);
        sim.check_exactly_once(&ids)
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        let e = sim.nodes[page].engine().unwrap();
        assert_eq!(
            e.stats().duplicates,
            0,
            "run {run}: a copy reached the page twice"
        );
        // Kill the node that pushes to the page: the page still gets what comes next.
        let parent = e.peers().into_iter().find(|p| p.eager).unwrap().id.unwrap();
        let index = sim
            .nodes
            .iter()
            .position(|n| n.engine().is_some_and(|x| x.id() == parent))
            .unwrap();
        sim.kill(index);
        sim.run_for(1_000);
        let mut after = Vec::new();
        for m in 0..5 {
            let from = (1..8).find(|&i| i != index && sim.nodes[i].up).unwrap();
            after.push(sim.publish(from, &format!("after the parent died {m}")));
            sim.run_for(200);
        }
        sim.run_for(20_000);
        sim.check_exactly_once(&after)
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
    }
}

/// One node holds a thousand pages beside its neighbours; every page gets every message
/// exactly once.
#[test]
fn a_node_holds_a_thousand_pages() {
    let mut sim = Sim::new(1000);
    for _ in 0..4 {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
    }
    sim.wire(Topology::Full);
    sim.run_for(10_000);
    let pages: Vec<usize> = (0..1000).map(|_| sim.add_browser(0)).collect();
    sim.run_for(30_000);
    let home = sim.nodes[0].engine().unwrap();
    assert!(
        home.peers()
            .iter()
            .filter(|p| p.kind == Some(PeerKind::Browser))
            .count()
            >= 1000 / 3,
        "pages spread over the four nodes, but many stay at their home"
    );
    let ids = vec![
        sim.publish(1, "to a thousand pages"),
        sim.publish(pages[500], "from one page to all"),
    ];
    sim.run_for(20_000);
    sim.check_exactly_once(&ids).unwrap();
    assert!(
        sim.nodes[0]
            .engine()
            .unwrap()
            .peers()
            .iter()
            .all(|p| p.kind != Some(PeerKind::Browser) || p.protocol == Protocol::Hearsay),
        "every page is a hearsay peer"
    );
}

#[test]
fn a_late_joiner_gets_the_whole_history_by_reconciliation() {
    let mut sim = Sim::new(77);
    for _ in 0..10 {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
    }
    sim.wire(Topology::Random);
    sim.run_for(5_000);
    let mut ids = Vec::new();
    for m in 0..500 {
        ids.push(sim.publish(m % 10, &format!("history {m}")));
        sim.run_for(5);
    }
    sim.run_for(5_000);
    let late = sim.add_hearsay(sim_config(Strategy::Plumtree));
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
fn partition_heals(run: u64, n: usize, topology: Topology) -> Result<(), String> {
    let mut sim = Sim::new(run);
    let mut rng = SmallRng::seed_from_u64(run);
    for _ in 0..n {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
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

/// Fifteen nodes cut in two parts in which every node's view is full of its own part, every
/// slot one it chose: the part that lost the root joins through it, and the ends of that
/// join's walks ask the joiner to link at high priority. Taken as asked they were refused
/// (only links a node did not choose may be displaced), and the parts stayed apart for good
/// (found by `partitions_heal_over_seeds`); taken as answers to the join, they merge them.
#[test]
fn parts_whose_views_are_full_of_chosen_links_merge_after_a_cut() {
    partition_heals(3527988767326659254, 15, Topology::Star).unwrap();
}

/// A short cut splits the overlay after the tree has a root, and no operator's `--peer` spans
/// it (pinned addresses are not revisited here): the part that lost the root elects its own,
/// whose first act is to join through the old one, so the overlay is one again.
fn lost_root_found_again(run: u64) -> Result<(), String> {
    let n = 30;
    let mut sim = Sim::new(run);
    for _ in 0..n {
        let mut config = sim_config(Strategy::Plumtree);
        config.revisit_interval = 3_600_000;
        sim.add_hearsay(config);
    }
    sim.wire(Topology::Random);
    sim.run_for(20_000);
    let root = sim.nodes[0].engine().unwrap().root().ok_or("no root")?;
    let side: Vec<usize> = (0..n)
        .filter(|&i| sim.nodes[i].engine().unwrap().id() != root)
        .filter(|&i| i % 2 == 0)
        .collect();
    sim.partition(&side);
    sim.run_for(1_000);
    sim.heal();
    sim.run_for(40_000);
    check_views(&mut sim)?;
    if !sim.one_root() {
        return Err("two roots".into());
    }
    let id = sim.publish(1, "after the cut");
    sim.run_for(5_000);
    sim.check_exactly_once(&[id])
}

#[test]
fn a_part_that_loses_the_root_joins_through_it_again() {
    for run in 1..=5 {
        lost_root_found_again(run).unwrap_or_else(|e| panic!("run {run}: {e}"));
    }
}

/// A fifth of the nodes die while messages flow: every live node still delivers every
/// message exactly once.
fn churn(run: u64, n: usize, topology: Topology) -> Result<(), String> {
    let mut sim = Sim::new(run);
    let mut rng = SmallRng::seed_from_u64(run);
    for _ in 0..n {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
    }
    sim.wire(topology);
    sim.run_for(15_000);
    let mut ids = Vec::new();
    for m in 0..20 {
        if m == 10 {
            for _ in 0..n / 5 {
                let victim = rng.random_range(0..n);
                sim.kill(victim);
            }
        }
        let live: Vec<usize> = (0..n).filter(|&i| sim.nodes[i].up).collect();
        let at = live[rng.random_range(0..live.len())];
        ids.push(sim.publish(at, &format!("churn {m} at {at}")));
        sim.run_for(rng.random_range(0..200));
    }
    sim.run_for(60_000);
    // A message whose origin died before any node still up had it is gone with it; every
    // other message must reach every node still up, exactly once.
    let survived: Vec<MsgId> = ids
        .into_iter()
        .filter(|id| {
            sim.nodes
                .iter()
                .any(|node| node.up && node.delivered.contains_key(id))
        })
        .collect();
    sim.check_exactly_once(&survived)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn exactly_once_with_churn_over_seeds(run in any::<u64>(), n in 10usize..120, topology in 0usize..5) {
        if let Err(e) = churn(run, n, Topology::ALL[topology]) {
            return Err(TestCaseError::fail(e));
        }
    }

    #[test]
    fn partitions_heal_over_seeds(run in any::<u64>(), n in 4usize..30, topology in 0usize..4) {
        if let Err(e) = partition_heals(run, n, Topology::ALL[topology]) {
            return Err(TestCaseError::fail(e));
        }
    }
}

#[test]
fn every_view_of_the_map_converges_to_the_real_links() {
    for (run, n, topology) in [
        (1, 12, Topology::Random),
        (2, 20, Topology::Line),
        (3, 8, Topology::Star),
    ] {
        let mut sim = Sim::new(run);
        for _ in 0..n {
            sim.add_hearsay(sim_config(Strategy::Plumtree));
        }
        sim.wire(topology);
        // Until the views and the tree have held still for 20 s (records of a change take a
        // few seconds to be announced and to spread; the root walks to the centre for a
        // while), at most five minutes.
        let views = |sim: &Sim| -> Vec<(Vec<NodeId>, Vec<bool>)> {
            sim.nodes
                .iter()
                .map(|n| {
                    let e = n.engine().unwrap();
                    (e.neighbors(), e.peers().iter().map(|p| p.eager).collect())
                })
                .collect()
        };
        let mut last = views(&sim);
        let mut still = 0;
        while still < 20 && sim.now < hearsay_proto::sim::EPOCH + 300_000 {
            sim.run_for(1_000);
            let now = views(&sim);
            still = if now == last { still + 1 } else { 0 };
            last = now;
        }
        // Records go out along the tree; one sent while the tree was still forming may miss
        // part of the network, which then has it at the record's next renewal.
        sim.run_for(70_000);
        let truth: std::collections::BTreeMap<_, Vec<_>> = sim
            .nodes
            .iter()
            .map(|node| {
                let e = node.engine().unwrap();
                let mut links = e.neighbors();
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
                .map(|r| {
                    let mut links = r.links;
                    links.sort();
                    (r.node, links)
                })
                .collect();
            assert_eq!(view, truth, "run {run}: node {i}'s map");
        }
        // Every tree link a record names is a link, and the tree spans the network.
        let records = sim.nodes[0].engine().unwrap().topology();
        let tree_links: usize = records.iter().map(|r| r.eager.len()).sum();
        for r in &records {
            assert!(r.eager.iter().all(|e| r.links.contains(e)), "run {run}");
        }
        assert!(
            tree_links >= 2 * (n - 1),
            "run {run}: {tree_links} tree link ends"
        );
        // A node that leaves fades: its neighbours drop the link at once, its record expires.
        sim.kill(0);
        sim.run_for(200_000);
        let gone = sim.nodes[0].engine().unwrap().id();
        for node in &sim.nodes[1..] {
            let view = node.engine().unwrap().topology();
            assert!(
                view.iter()
                    .all(|r| r.node != gone && !r.links.contains(&gone)),
                "run {run}"
            );
        }
    }
}

/// Retention: a node that keeps a minute evicts what ages out and never takes it back, not
/// even from neighbours that keep an hour (a network should agree on its window; this is the
/// worst case) and reconcile with it all along.
#[test]
fn what_ages_out_is_evicted_and_never_fetched_back() {
    let mut sim = Sim::new(3);
    let mut short = sim_config(Strategy::Plumtree);
    short.history.retention = Some(60_000);
    short.history.evict_every = 5_000;
    short.history.edge = 5_000;
    let mut long = sim_config(Strategy::Plumtree);
    long.history.retention = Some(3_600_000);
    let a = sim.add_hearsay(short);
    sim.add_hearsay(long.clone());
    sim.add_hearsay(long);
    sim.wire(Topology::Ring);
    sim.run_for(5_000);
    let old = sim.publish(1, "old news");
    sim.run_for(10_000);
    assert!(sim.nodes[a].held.contains_key(&old));
    sim.run_for(180_000);
    let fresh = sim.publish(2, "fresh news");
    sim.run_for(10_000);
    let e = sim.nodes[a].engine().unwrap();
    assert!(!sim.nodes[a].held.contains_key(&old), "evicted");
    assert!(
        sim.nodes[1].held.contains_key(&old),
        "kept where the window is longer"
    );
    assert_eq!(e.stats().evicted, 1);
    assert_eq!(e.stats().too_old, 0, "never even fetched");
    assert!(e.stats().synced == 0 && e.stats().duplicates == 0);
    // Delivered once everywhere, the evicted message included.
    sim.check_exactly_once(&[old, fresh]).unwrap();
}

/// The storage cap under the window: a node capped at 3 messages keeps the newest 3, and
/// neither takes nor fetches anything older again, from neighbours that keep everything.
#[test]
fn a_node_over_its_storage_cap_keeps_the_newest_and_fetches_nothing_older() {
    let mut sim = Sim::new(4);
    let mut capped = sim_config(Strategy::Plumtree);
    capped.history.max_messages = Some(3);
    capped.history.evict_every = 5_000;
    let a = sim.add_hearsay(capped);
    sim.add_hearsay(sim_config(Strategy::Plumtree));
    sim.add_hearsay(sim_config(Strategy::Plumtree));
    sim.wire(Topology::Ring);
    sim.run_for(5_000);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(sim.publish(1 + i % 2, &format!("message {i}")));
        sim.run_for(1_000);
    }
    sim.run_for(120_000);
    let held: Vec<bool> = ids
        .iter()
        .map(|id| sim.nodes[a].held.contains_key(id))
        .collect();
    assert_eq!(held, [false, false, false, true, true, true]);
    let e = sim.nodes[a].engine().unwrap();
    assert_eq!(e.stats().evicted, 3);
    assert_eq!(e.stats().too_old, 0, "nothing older was even offered");
    assert_eq!(e.stats().synced, 0);
    sim.check_exactly_once(&ids).unwrap();
}

/// A node that starts at its cap (a page opening with its home's newest messages, or a node
/// restarted over a full store) fetches nothing older than what it holds: it would only let
/// it go again.
#[test]
fn a_node_that_starts_full_fetches_nothing_older() {
    let mut sim = Sim::new(5);
    let mut capped = sim_config(Strategy::Plumtree);
    capped.history.max_messages = Some(3);
    capped.history.evict_every = 5_000;
    let a = sim.add_hearsay(capped.clone());
    sim.add_hearsay(sim_config(Strategy::Plumtree));
    sim.add_hearsay(sim_config(Strategy::Plumtree));
    sim.wire(Topology::Ring);
    sim.run_for(5_000);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(sim.publish(1 + i % 2, &format!("message {i}")));
        sim.run_for(1_000);
    }
    sim.run_for(30_000);
    assert_eq!(sim.nodes[a].held.len(), 3);
    sim.kill(a);
    sim.run_for(1_000);
    sim.restart(a, capped, &[1, 2]);
    sim.run_for(60_000);
    let e = sim.nodes[a].engine().unwrap();
    assert!(e.stats().sync_rounds > 0, "it reconciled");
    assert_eq!(e.stats().synced, 0, "nothing older fetched");
    assert_eq!(e.stats().evicted, 0, "so nothing let go again");
    assert_eq!(sim.nodes[a].held.len(), 3);
}

/// The root's walk to the centre (`centre`), at a size where it runs: the elected root
/// hands over, the tree it ends with is shorter than the elected root's, and messages
/// published while the root moves reach every node exactly once.
#[test]
fn the_root_walks_towards_the_centre_and_nothing_is_lost_on_the_way() {
    let run = |walk: bool| {
        let mut sim = Sim::new(7);
        for _ in 0..200 {
            let mut config = sim_config(Strategy::Plumtree);
            if !walk {
                config.tree.handover_margin = 0;
            }
            sim.add_hearsay(config);
        }
        sim.wire(Topology::Random);
        // Publish all along, from random nodes, while the root is elected and walks.
        let mut rng = SmallRng::seed_from_u64(7);
        let mut ids = Vec::new();
        for i in 0..60 {
            sim.run_for(2_000);
            ids.push(sim.publish(rng.random_range(0..200), &format!("m{i}")));
        }
        sim.run_for(30_000);
        sim.check_exactly_once(&ids).unwrap();
        assert!(sim.one_root());
        let handovers: u64 = sim
            .nodes
            .iter()
            .filter_map(|n| n.engine())
            .map(|e| e.broadcast_stats().handovers)
            .sum();
        (sim.spread(), handovers)
    };
    let (walked, handovers) = run(true);
    let (stayed, none) = run(false);
    println!("walked ({handovers} handovers): {walked:?}; stayed: {stayed:?}");
    assert_eq!(none, 0);
    assert!(handovers > 0);
    assert!(
        walked.tree_diameter_ms < stayed.tree_diameter_ms,
        "{walked:?} {stayed:?}"
    );
}

/// Figures by frame type add up to their whole (each part is rounded to a tenth).
fn assert_parts_add_up(by: &std::collections::BTreeMap<String, f64>, whole: f64) {
    let parts: f64 = by.values().sum();
    let slack = 0.05 * by.len() as f64 + 1e-6;
    assert!(
        (parts - whole).abs() <= slack,
        "{by:?} add up to {parts}, not {whole}"
    );
}

/// Honest bytes per delivery are broken down by frame type (`hearsay sim` prints where they
/// go), and the parts add up to the whole.
#[test]
fn honest_bytes_are_broken_down_by_frame_type() {
    let f = Scenario {
        nodes: 30,
        messages: 10,
        seed: 3,
        ..Scenario::default()
    }
    .run();
    let by = &f.honest_bytes_per_delivery_by_frame;
    assert_parts_add_up(by, f.honest_bytes_per_delivery);
    assert!(by.get("GOSSIP").is_some_and(|b| *b > 0.0), "{by:?}");
}

/// A quiet window after the warm-up says what a node sends to say nothing: no message, only
/// what keeps the network correct (beacons, keepalives, the map's renewals, and the tree's
/// mending where a node swapped a slow neighbour for a faster one), and its parts add up to
/// the whole.
#[test]
fn a_quiet_window_reports_what_a_node_sends_to_say_nothing() {
    let f = Scenario {
        nodes: 30,
        messages: 1,
        seed: 3,
        idle: 120_000,
        ..Scenario::default()
    }
    .run();
    let by = &f.idle_bytes_per_node_s_by_frame;
    println!("{} B/s per node: {by:?}", f.idle_bytes_per_node_s);
    assert_eq!(f.idle_s, 120.0);
    assert!(f.idle_bytes_per_node_s > 0.0);
    assert_parts_add_up(by, f.idle_bytes_per_node_s);
    assert!(by.contains_key("BEACON"), "{by:?}");
    for payload in ["GOSSIP", "MESSAGES"] {
        assert!(
            !by.contains_key(payload),
            "{payload} sent while idle: {by:?}"
        );
    }
}

/// One run of `nodes` with a share of adversaries doing `attack` from the start.
fn attacked(nodes: usize, fraction: f64, attack: Attack, groups: usize, seed: u64) -> Figures {
    Scenario {
        nodes,
        messages: 20,
        seed,
        adversaries: Some(Adversaries {
            fraction,
            attack,
            groups,
        }),
        ..Scenario::default()
    }
    .run()
}

/// Adversaries of every kind, a tenth of the nodes: every honest node still gets every
/// message. (Each attack's own bound is asserted below; `hearsay sim` measures them at
/// 1,000 nodes.)
#[test]
fn every_honest_node_gets_every_message_whatever_a_tenth_of_the_nodes_do() {
    for attack in Attack::ALL {
        let f = attacked(60, 0.1, attack, 1, 7);
        println!("{}", serde_json::to_string(&f).unwrap());
        assert_eq!(f.honest_delivered_ratio, 1.0, "{attack}: {f:?}");
        assert_eq!(f.attack, Some(attack));
    }
}

/// Beacons signed by the adversaries' own keys, ground for low ids, in any term, from the
/// network's start: honest delivery keeps its pace (the bound: p99 within 1.5 times
/// the honest-only run). (A network's first rounds still go to the lowest id heard, so a
/// ground key present at the birth becomes the root: `adversary_root_share` says so, and
/// the closing note of this change counts it among what is open.)
#[test]
fn forged_beacons_do_not_slow_honest_delivery() {
    for seed in [1, 2] {
        let honest = Scenario {
            nodes: 60,
            messages: 20,
            seed,
            ..Scenario::default()
        }
        .run();
        let f = attacked(60, 0.1, Attack::Beacon, 1, seed);
        assert_eq!(f.honest_delivered_ratio, 1.0, "seed {seed}: {f:?}");
        assert!(
            f.honest_p99_ms as f64 <= 1.5 * honest.p99_ms as f64,
            "seed {seed}: {} ms against {} ms honest-only",
            f.honest_p99_ms,
            honest.p99_ms
        );
    }
}

/// Sybils in one address group that name only each other in every peer list, and join
/// honest nodes besides, hold at most the two passive entries a group may have at each
/// honest node; and, their group crowded, they are swapped out of the active views they
/// took while the network formed, to below half their share of the nodes (before: 23%).
#[test]
fn sybils_of_one_group_are_swapped_out_of_honest_views() {
    let f = attacked(60, 0.2, Attack::Eclipse, 1, 3);
    println!("{}", serde_json::to_string(&f).unwrap());
    assert!(f.adversary_active_share <= 0.10, "{f:?}");
    assert!(f.adversary_passive_share <= 2.0 / 6.0, "{f:?}");
    assert_eq!(f.honest_delivered_ratio, 1.0, "{f:?}");
}

/// At rest, only every second round of the root's goes over every link; the rounds between
/// go down the tree. Each node relays a full round to all its links but the one it came by
/// (and its parent's), a round down the tree to its children only: over the same rounds a
/// network of 40 nodes sends 0.49 copies per link end and round, where it sent 0.82 when
/// every round went over every link. And the root stays heard: no one takes over.
#[test]
fn beacons_go_down_the_tree_between_full_rounds() {
    let mut sim = Sim::new(11);
    for _ in 0..40 {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
    }
    sim.wire(Topology::Random);
    sim.run_for(60_000);
    assert!(sim.one_root());
    let engines = |sim: &Sim| -> Vec<(u64, usize, Option<NodeId>)> {
        sim.nodes
            .iter()
            .filter_map(|n| n.engine())
            .map(|e| (e.broadcast_stats().beacons, e.neighbors().len(), e.root()))
            .collect()
    };
    let before = engines(&sim);
    let rounds = 12;
    sim.run_for(rounds * 5_000);
    let after = engines(&sim);
    let sent: u64 = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
    let link_ends: u64 = after.iter().map(|a| a.1 as u64).sum();
    let share = sent as f64 / (link_ends * rounds) as f64;
    println!("{sent} beacons over {rounds} rounds and {link_ends} link ends: {share:.2}");
    assert!(share < 0.7, "{share:.2} of a copy per link end and round");
    assert!(sim.one_root());
    assert_eq!(before[0].2, after[0].2, "the root changed");
}

/// A page hears the root from its parent only, in full rounds, so an idle page is sent one
/// beacon every second round and keeps its parent (before: a copy of every round from each of
/// its three nodes, and, weighing them in the rounds between full ones too, pages changed
/// parent up to four times in two minutes, each time a record for the map from the page and
/// both nodes, sent to every peer).
#[test]
fn an_idle_page_hears_its_parents_full_rounds_only_and_keeps_it() {
    let mut sim = Sim::new(5);
    let nodes = 40;
    for _ in 0..nodes {
        sim.add_hearsay(sim_config(Strategy::Plumtree));
    }
    sim.wire(Topology::Random);
    sim.run_for(60_000);
    let mut rng = SmallRng::seed_from_u64(5);
    let pages: Vec<usize> = (0..20)
        .map(|_| sim.add_browser(rng.random_range(0..nodes)))
        .collect();
    sim.run_for(30_000);
    // Joining, each page was sent the whole map by its parent alone (not by each of its
    // three nodes), and what changed meanwhile (the other pages' records among it): 1.56
    // maps' worth of records, 2.95 when each node sent it.
    let one_map: usize = sim.nodes[0]
        .engine()
        .expect("a node")
        .topology()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap().len())
        .sum();
    let joining = sim.bytes_to_pages("MAP") as f64 / pages.len() as f64;
    println!("joining, {joining:.0} bytes of records per page; the map is {one_map}");
    assert!(
        joining < 2.0 * one_map as f64,
        "{joining:.0} bytes, the map {one_map}"
    );
    let page_state = |sim: &Sim| -> Vec<(u64, usize, Option<NodeId>)> {
        pages
            .iter()
            .map(|&i| {
                let e = sim.nodes[i].engine().expect("a page runs an engine");
                (e.broadcast_stats().grafts, e.neighbors().len(), e.root())
            })
            .collect()
    };
    let before = page_state(&sim);
    let beacons_before = sim.frames_to_pages("BEACON");
    let rounds = 24;
    sim.run_for(rounds * 5_000);
    let after = page_state(&sim);
    let beacons = sim.frames_to_pages("BEACON") - beacons_before;
    let per_round = beacons as f64 / (pages.len() as u64 * rounds) as f64;
    println!("{per_round:.2} beacons per page and round; {after:?}");
    let expected = 1.0 / tree::FULL_ROUND_EVERY as f64;
    assert!(
        (per_round - expected).abs() <= 0.05,
        "{per_round:.2} beacons per page and round"
    );
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.0, b.0, "a page changed parent: {before:?} -> {after:?}");
        assert_eq!(a.1, 3, "a page lost a link: {after:?}");
        assert!(a.2.is_some() && a.2 == b.2, "{before:?} -> {after:?}");
    }
}

/// Sybils spread over groups of four keys, each key joining honest nodes of its own, so that
/// few honest nodes see two keys of one group by their links. The map lists each group's
/// four: a node with one of them as a neighbour dials another listed there, and, the group
/// confirmed crowded, swaps its neighbour for a node of its choosing (without the map:
/// 21.9 % of honest active slots after two quiet minutes).
#[test]
fn sybils_spread_over_groups_are_found_through_the_map_and_swapped_out() {
    let f = Scenario {
        nodes: 100,
        messages: 20,
        seed: 3,
        idle: 120_000,
        adversaries: Some(Adversaries {
            fraction: 0.2,
            attack: Attack::Eclipse,
            groups: 5,
        }),
        ..Scenario::default()
    }
    .run();
    println!("{}", serde_json::to_string(&f).unwrap());
    assert!(f.adversary_active_share <= 0.05, "{f:?}");
    assert_eq!(f.honest_delivered_ratio, 1.0, "{f:?}");
}

/// Parents that relay beacons but withhold messages: honest nodes below them pass them over
/// once a message comes by `GRAFT` instead, so the later messages ride the tree.
#[test]
fn withholding_parents_are_passed_over() {
    let f = attacked(100, 0.1, Attack::Withhold, 1, 5);
    println!("{}", serde_json::to_string(&f).unwrap());
    assert_eq!(f.honest_delivered_ratio, 1.0, "{f:?}");
}
