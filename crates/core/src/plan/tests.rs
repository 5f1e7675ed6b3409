//! The plan's properties, checked over many cluster sizes, zone layouts and seeds.

use super::*;

/// A small seeded generator (SplitMix64): test clusters without a new dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0.wrapping_sub(0x9e37_79b9_7f4a_7c15))
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `n` nodes in `zones` zones; odd seeds make the zones uneven (one zone holds most nodes).
fn cluster(n: usize, zones: usize, seed: u64) -> Vec<NodeSpec> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let z = if zones == 0 {
                None
            } else if seed % 2 == 1 && rng.below(4) != 0 {
                Some(0)
            } else {
                Some(rng.below(zones))
            };
            NodeSpec {
                name: format!("node-{:x}-{i}", rng.next() % 4096),
                zone: z.map(|z| format!("zone-{z}")),
            }
        })
        .collect()
}

fn check_properties(nodes: &[NodeSpec], p: &PlanParams, epoch: u64) -> Plan {
    let plan = Plan::build(nodes, p, epoch);
    let n = plan.names.len();
    let label = format!("n={n} zones={} epoch={epoch}", plan.zones.len());
    assert_eq!(plan.sampled, n > p.full_mesh_max, "{label}");
    // Nobody probes itself; lists are sorted and unique.
    for (s, out) in plan.out.iter().enumerate() {
        assert!(out.windows(2).all(|w| w[0] < w[1]), "{label}");
        assert!(!out.contains(&(s as u32)), "{label}: {s} probes itself");
        for d in &plan.core[s] {
            assert!(out.contains(d), "{label}: core edge missing from the plan");
        }
    }
    // Every node is probed by at least k others every interval.
    let want = p.min_probers.min(n.saturating_sub(1));
    for (d, deg) in plan.in_degrees().iter().enumerate() {
        assert!(
            *deg >= want,
            "{label}: {} probed by {deg} < {want}",
            plan.names[d]
        );
    }
    // Every ordered zone pair is probed every interval.
    let mut seen = BTreeSet::new();
    for (s, out) in plan.out.iter().enumerate() {
        for &d in out {
            seen.insert((plan.zone_of[s], plan.zone_of[d as usize]));
        }
    }
    for za in 0..plan.zones.len() {
        for zb in 0..plan.zones.len() {
            if za != zb {
                assert!(
                    seen.contains(&(za, zb)),
                    "{label}: zone pair {za}->{zb} unprobed"
                );
            }
        }
    }
    // Per-agent load bounded, independently of n.
    if plan.sampled {
        let bound = p.max_peers(plan.zones.len());
        let max = plan.out.iter().map(Vec::len).max().unwrap_or(0);
        assert!(
            max <= bound,
            "{label}: an agent probes {max} peers > {bound}"
        );
    }
    plan
}

#[test]
fn properties_hold_across_sizes_zones_and_seeds() {
    let p = PlanParams::default();
    for n in [1usize, 2, 3, 5, 50, 200, 201, 260, 700, 1500] {
        for zones in [0usize, 1, 2, 3, 5] {
            for seed in 0..4u64 {
                let nodes = cluster(n, zones, seed * 7 + n as u64);
                for epoch in [0u64, 1, 1000] {
                    check_properties(&nodes, &p, epoch);
                }
            }
        }
    }
}

#[test]
fn properties_hold_at_5000_nodes() {
    let p = PlanParams::default();
    for (zones, seed) in [(3usize, 1u64), (3, 2), (1, 3), (8, 4)] {
        check_properties(&cluster(5000, zones, seed), &p, seed);
    }
}

#[test]
fn properties_hold_with_other_parameters() {
    for p in [
        PlanParams {
            full_mesh_max: 10,
            min_probers: 5,
            group_size: 3,
            zone_reps: 1,
            rotate: 0,
        },
        PlanParams {
            full_mesh_max: 50,
            min_probers: 1,
            group_size: 16,
            zone_reps: 6,
            rotate: 9,
        },
        PlanParams {
            full_mesh_max: 0,
            min_probers: 3,
            group_size: 2,
            zone_reps: 2,
            rotate: 1,
        },
    ] {
        for n in [1usize, 2, 4, 11, 60, 333] {
            for zones in [1usize, 3, 4] {
                check_properties(&cluster(n, zones, n as u64), &p, 3);
            }
        }
    }
}

#[test]
fn full_mesh_up_to_the_threshold() {
    let p = PlanParams::default();
    let plan = Plan::build(&cluster(200, 3, 1), &p, 0);
    assert!(!plan.sampled);
    assert!(plan.out.iter().all(|o| o.len() == 199));
    assert_eq!(plan.coverage_epochs(), Some(1));
    let big = Plan::build(&cluster(201, 3, 1), &p, 0);
    assert!(big.sampled);
    assert!(big.out.iter().all(|o| o.len() < 60));
}

#[test]
fn input_order_and_duplicates_do_not_matter() {
    let p = PlanParams::default();
    let nodes = cluster(400, 3, 5);
    let mut rev = nodes.clone();
    rev.reverse();
    rev.push(nodes[3].clone());
    let (a, b) = (Plan::build(&nodes, &p, 2), Plan::build(&rev, &p, 2));
    assert_eq!(a.names, b.names);
    assert_eq!(a.out, b.out);
}

#[test]
fn rotation_covers_every_pair_within_the_coverage_time() {
    let p = PlanParams {
        rotate: 5,
        ..PlanParams::default()
    };
    for (n, zones) in [(230usize, 3usize), (301, 1)] {
        let nodes = cluster(n, zones, n as u64);
        let first = Plan::build(&nodes, &p, 0);
        let epochs = first.coverage_epochs().unwrap();
        // 5 rotating peers: 2 offset classes (4 offsets) per epoch, ⌊n/2⌋ classes.
        assert_eq!(epochs, (n as u64 / 2).div_ceil(2));
        let mut seen = vec![vec![false; n]; n];
        for e in 0..epochs {
            let plan = Plan::build(&nodes, &p, e);
            assert_eq!(plan.core, first.core, "the core does not rotate");
            for (s, out) in plan.out.iter().enumerate() {
                for &d in out {
                    seen[s][d as usize] = true;
                }
            }
        }
        let missing = (0..n)
            .flat_map(|s| (0..n).map(move |d| (s, d)))
            .filter(|&(s, d)| s != d && !seen[s][d])
            .count();
        assert_eq!(
            missing, 0,
            "n={n}: pairs never probed within {epochs} epochs"
        );
        // One epoch short of it, some pair is still unprobed by the rotation alone.
        let no_core = n * (n - 1) - first.core.iter().map(Vec::len).sum::<usize>();
        assert!(no_core > 0);
    }
    let off = PlanParams {
        rotate: 0,
        ..PlanParams::default()
    };
    assert_eq!(
        Plan::build(&cluster(300, 2, 1), &off, 0).coverage_epochs(),
        None
    );
}

#[test]
fn a_node_joining_or_leaving_changes_a_small_share_of_assignments() {
    let p = PlanParams::default();
    let g = p.group_size;
    // Regrouping is the costly case: a zone's group count changes and jump hashing moves
    // about one group's worth of nodes (~g), each with ~2g mesh assignments, into the new group.
    let regroup_bound = 3 * g * (2 * g + 4);
    let (mut total, mut runs) = (0.0, 0u32);
    let mut worst_large: f64 = 0.0;
    for n in [201usize, 240, 500, 1200, 3000] {
        for zones in [1usize, 3, 4] {
            for seed in 0..3u64 {
                let joined = cluster(n + 1, zones, seed + 100 * n as u64);
                let before = Plan::build(&joined[..n], &p, 0);
                let after = Plan::build(&joined, &p, 0);
                // A random member leaves (staying above the full-mesh threshold).
                let mut left = joined.clone();
                left.remove(Rng::new(seed).below(n));
                let gone = Plan::build(&left, &p, 0);
                for (a, b) in [(&before, &after), (&after, &gone)] {
                    let (share, changed) = (core_churn(a, b), churn_count(a, b));
                    assert!(
                        changed <= regroup_bound,
                        "n={n} zones={zones} seed={seed}: {changed} assignments changed ({share:.3})"
                    );
                    if n >= 1000 {
                        worst_large = worst_large.max(share);
                    }
                    total += share;
                    runs += 1;
                }
            }
        }
    }
    let mean = total / f64::from(runs);
    assert!(mean <= 0.02, "mean churn {mean:.4}");
    assert!(
        worst_large <= 0.03,
        "worst churn at n >= 1000: {worst_large:.4}"
    );
    eprintln!(
        "churn: mean {mean:.4} over {runs} joins/leaves; worst at n >= 1000 {worst_large:.4}"
    );
}

fn churn_count(a: &Plan, b: &Plan) -> usize {
    let edges = |p: &Plan| -> Vec<usize> { p.core.iter().map(Vec::len).collect() };
    let share = core_churn(a, b);
    let base: usize = edges(a).iter().sum();
    (share * base as f64).round() as usize
}

#[test]
fn jump_hash_moves_few_keys_when_buckets_grow() {
    let mut moved = 0;
    for k in 0..10_000u64 {
        let (a, b) = (jump(mix(k), 40), jump(mix(k), 41));
        assert!(a < 40 && b < 41);
        if a != b {
            assert_eq!(b, 40, "a key only ever moves to the new bucket");
            moved += 1;
        }
    }
    assert!(
        (150..350).contains(&moved),
        "moved {moved} of 10000, expected ~244"
    );
}

#[test]
fn hashes_are_stable_across_builds() {
    // Agents of different builds must compute the same plan: pin the hash.
    assert_eq!(hash_str(""), mix(0xcbf2_9ce4_8422_2325));
    assert_eq!(hash_str("node-1"), 0x94a9_d409_86da_123d);
    assert_eq!(hash_str("node-2"), 0xaa52_92ee_5091_7d7b);
    assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf);
}

#[test]
fn the_default_plan_bounds_an_agent_below_20_probes_per_second_at_3_zones() {
    // 3 probes per peer every 5 s.
    let p = PlanParams::default();
    assert_eq!(p.max_peers(3), 33);
    assert!(p.max_peers(3) as f64 * 3.0 / 5.0 <= 20.0);
}

/// Agents of two builds (a rolling update) must compute the same plan from the same peer set:
/// a small sampled plan, pinned. A change here is a change of the plan's hashing or levels
/// and must be deliberate.
#[test]
fn a_small_sampled_plan_is_the_same_in_every_build() {
    let nodes: Vec<NodeSpec> = (1..=12)
        .map(|i| NodeSpec {
            name: format!("node-{i}"),
            zone: Some(format!("zone-{}", i % 3)),
        })
        .collect();
    let p = PlanParams {
        full_mesh_max: 4,
        ..PlanParams::default()
    };
    let plan = Plan::build(&nodes, &p, 7);
    let got: Vec<(&str, Vec<&str>)> = plan
        .names
        .iter()
        .zip(&plan.out)
        .map(|(n, out)| {
            let peers = out.iter().map(|&d| plan.names[d as usize].as_str());
            (n.as_str(), peers.collect())
        })
        .collect();
    let want: &[(&str, &[&str])] = &[
        (
            "node-1",
            &[
                "node-10", "node-11", "node-2", "node-3", "node-4", "node-5", "node-6", "node-7",
                "node-9",
            ],
        ),
        (
            "node-10",
            &[
                "node-1", "node-11", "node-2", "node-3", "node-4", "node-6", "node-7", "node-8",
                "node-9",
            ],
        ),
        (
            "node-11",
            &[
                "node-1", "node-10", "node-12", "node-2", "node-3", "node-5", "node-8", "node-9",
            ],
        ),
        (
            "node-12",
            &[
                "node-11", "node-2", "node-3", "node-4", "node-5", "node-6", "node-7", "node-8",
                "node-9",
            ],
        ),
        (
            "node-2",
            &[
                "node-1", "node-10", "node-11", "node-12", "node-3", "node-5", "node-6", "node-7",
                "node-8", "node-9",
            ],
        ),
        (
            "node-3",
            &[
                "node-1", "node-10", "node-11", "node-12", "node-2", "node-4", "node-5", "node-6",
                "node-7", "node-8", "node-9",
            ],
        ),
        (
            "node-4",
            &[
                "node-1", "node-10", "node-12", "node-3", "node-5", "node-6", "node-7", "node-9",
            ],
        ),
        (
            "node-5",
            &[
                "node-1", "node-11", "node-12", "node-2", "node-3", "node-4", "node-6", "node-7",
                "node-8",
            ],
        ),
        (
            "node-6",
            &[
                "node-1", "node-10", "node-12", "node-2", "node-3", "node-4", "node-5", "node-7",
                "node-8", "node-9",
            ],
        ),
        (
            "node-7",
            &[
                "node-1", "node-10", "node-12", "node-2", "node-3", "node-4", "node-5", "node-6",
                "node-8", "node-9",
            ],
        ),
        (
            "node-8",
            &[
                "node-10", "node-11", "node-12", "node-2", "node-3", "node-5", "node-6", "node-7",
                "node-9",
            ],
        ),
        (
            "node-9",
            &[
                "node-1", "node-10", "node-11", "node-12", "node-2", "node-3", "node-4", "node-6",
                "node-7", "node-8",
            ],
        ),
    ];
    let want: Vec<(&str, Vec<&str>)> = want.iter().map(|(n, o)| (*n, o.to_vec())).collect();
    assert_eq!(got, want);
}

#[test]
fn the_view_subset_is_bounded_zone_aware_and_starts_with_the_failing_nodes_probers() {
    let p = PlanParams::default();
    for (n, zones, seed) in [(5000, 3, 1), (1000, 3, 2), (250, 0, 3), (5000, 7, 4)] {
        let plan = Plan::build(&cluster(n, zones, seed), &p, 7);
        assert!(plan.sampled);
        let me = plan.names[n / 2].clone();
        let failing = plan.names[n / 3].clone();
        let f = plan.index(&failing).unwrap();
        let probers: BTreeSet<&str> = (0..n)
            .filter(|&s| plan.probes(s, f))
            .map(|s| plan.names[s].as_str())
            .filter(|s| *s != me)
            .collect();
        for max in [0, 5, 64] {
            let got = plan.view_subset(&me, &[failing.as_str(), "no-such-node"], max);
            assert!(got.len() <= max, "{n}: {} > {max}", got.len());
            assert!(!got.contains(&me.as_str()));
            let uniq: BTreeSet<&str> = got.iter().copied().collect();
            assert_eq!(uniq.len(), got.len(), "{n}: an agent twice");
            // The failing node's probers come first.
            let k = probers.len().min(max);
            let first: BTreeSet<&str> = got[..k].iter().copied().collect();
            assert!(
                first.is_subset(&probers),
                "{n}: {first:?} not probers of {failing}"
            );
            if max == 64 {
                assert_eq!(got.len(), 64);
                assert!(probers.iter().all(|p| got.contains(p)));
                // Then the peers `me` probes; every zone is heard from.
                assert!(plan.peers_of(&me).iter().all(|p| got.contains(p)), "{n}");
                let zones_heard: BTreeSet<usize> = got
                    .iter()
                    .map(|g| plan.zone_of[plan.index(g).unwrap()])
                    .collect();
                assert_eq!(zones_heard.len(), plan.zones.len(), "{n}");
            }
        }
        // Without failing nodes: its own peers first; deterministic.
        let got = plan.view_subset(&me, &[], 64);
        let own = plan.peers_of(&me);
        assert_eq!(&got[..own.len()], &own[..]);
        assert_eq!(got, plan.view_subset(&me, &[], 64));
    }
}

#[test]
fn nodes_in_counts_what_for_peer_set_plans() {
    let set = crate::peers::parse(
        "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.0.3}\n",
    )
    .unwrap();
    let p = PlanParams::default();
    for me in ["a", "z"] {
        let plan = Plan::for_peer_set(&set, me, None, &p, 0);
        assert_eq!(Plan::nodes_in(&set, me), plan.names.len(), "{me}");
    }
}
