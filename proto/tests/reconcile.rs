//! Range-based reconciliation over random sets: both sides learn exactly what they lack, and
//! rounds and bytes stay within a bound that grows with the difference, not the history.

use hearsay_proto::MsgId;
use hearsay_proto::sync::{MessageIndex, SyncFrame, initiate, respond};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// A message id as real ones are, hash-like: a mix of `n` with no structure a sum could see.
/// (An earlier `n * golden ratio` beside `n` made the fingerprints, sums of ids, collide
/// whenever two sets had the same count and sum of `n`s: a proptest run found a range where
/// two ids on each side summed alike. Real ids are cut from a SHA-256 digest.)
fn id(n: u64) -> MsgId {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&mix(n.wrapping_add(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    b[8..].copy_from_slice(&mix(n ^ 0xD1B5_4A32_D192_ED03).to_le_bytes());
    MsgId::from_bytes(b)
}

fn index(items: &BTreeSet<u64>) -> MessageIndex {
    let mut ix = MessageIndex::default();
    for &n in items {
        // Timestamps collide on purpose (several messages per millisecond).
        ix.insert((n / 3, id(n)), 10);
    }
    ix
}

struct Outcome {
    a_wants: BTreeSet<MsgId>,
    b_wants: BTreeSet<MsgId>,
    rounds: usize,
    bytes: usize,
}

fn size(frames: &[SyncFrame]) -> usize {
    frames
        .iter()
        .map(|f| serde_json::to_string(f).unwrap().len())
        .sum()
}

fn reconcile(a: &MessageIndex, b: &MessageIndex) -> Outcome {
    let mut to_b = vec![initiate(a, None, None)];
    let mut o = Outcome {
        a_wants: BTreeSet::new(),
        b_wants: BTreeSet::new(),
        rounds: 0,
        bytes: size(&to_b),
    };
    while !to_b.is_empty() {
        o.rounds += 1;
        assert!(o.rounds < 50, "does not settle");
        let mut to_a = Vec::new();
        for f in &to_b {
            let r = respond(b, f, None);
            o.b_wants.extend(r.want);
            to_a.extend(r.frames);
        }
        o.bytes += size(&to_a);
        to_b.clear();
        for f in &to_a {
            let r = respond(a, f, None);
            o.a_wants.extend(r.want);
            to_b.extend(r.frames);
        }
        o.bytes += size(&to_b);
    }
    o
}

fn check(
    shared: BTreeSet<u64>,
    only_a: BTreeSet<u64>,
    only_b: BTreeSet<u64>,
) -> Result<(), TestCaseError> {
    let only_b: BTreeSet<u64> = only_b.difference(&only_a).copied().collect();
    let only_a: BTreeSet<u64> = only_a.difference(&shared).copied().collect();
    let only_b: BTreeSet<u64> = only_b.difference(&shared).copied().collect();
    let a: BTreeSet<u64> = shared.union(&only_a).copied().collect();
    let b: BTreeSet<u64> = shared.union(&only_b).copied().collect();
    let o = reconcile(&index(&a), &index(&b));
    prop_assert_eq!(
        &o.a_wants,
        &only_b.iter().map(|&n| id(n)).collect::<BTreeSet<_>>()
    );
    prop_assert_eq!(
        &o.b_wants,
        &only_a.iter().map(|&n| id(n)).collect::<BTreeSet<_>>()
    );
    let d = only_a.len() + only_b.len();
    let n = a.len().max(b.len()).max(2) as f64;
    let depth = (n.ln() / 16f64.ln()).ceil() as usize + 2;
    prop_assert!(o.rounds <= depth + 1, "{} rounds for n={n} d={d}", o.rounds);
    // Each differing item costs at most one split path of 16 fingerprints (~60 bytes each)
    // per level, plus listing; identical sets cost one fingerprint.
    let bound = 200 + d * depth * 16 * 70;
    prop_assert!(
        o.bytes <= bound,
        "{} bytes > {bound} for n={n} d={d}",
        o.bytes
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sets_reconcile(
        shared in prop::collection::btree_set(0u64..100_000, 0..3000),
        only_a in prop::collection::btree_set(0u64..100_000, 0..60),
        only_b in prop::collection::btree_set(0u64..100_000, 0..60),
    ) {
        check(shared, only_a, only_b)?;
    }

    #[test]
    fn one_side_a_superset(shared in prop::collection::btree_set(0u64..50_000, 0..2000), extra in prop::collection::btree_set(50_000u64..60_000, 0..200)) {
        check(shared, extra, BTreeSet::new())?;
    }
}

#[test]
fn a_small_difference_in_a_large_history_costs_little() {
    let shared: BTreeSet<u64> = (0..100_000).collect();
    let extra: BTreeSet<u64> = (100_000..100_100).collect();
    let a = index(&shared);
    let b = index(&shared.union(&extra).copied().collect());
    let o = reconcile(&a, &b);
    assert_eq!(o.a_wants.len(), 100);
    let whole: usize = 100_100 * 35; // every id as JSON, the cost of just sending the set
    println!(
        "reconcile 100,000 vs 100,100: {} rounds, {} bytes; sending every id: {whole} bytes",
        o.rounds, o.bytes
    );
    assert!(o.bytes * 5 < whole, "{} bytes", o.bytes);
}
