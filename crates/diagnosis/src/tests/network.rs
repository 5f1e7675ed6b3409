//! Stage 3, network: localisation of node-level, routing and pair faults, and their evidence.

use super::helpers::*;
use super::scenarios::*;
use crate::report::Cause;

#[test]
fn evidence_names_numbers_and_directions() {
    let d = Mesh::new().tap(node3_cni).diagnose();
    let f = &d.findings[0];
    assert!(
        f.evidence.iter().any(|e| e == "pod IPs on node-3 unreachable from 3/3 nodes by ICMP; node-3's node IP reachable from 3/3"),
        "{:#?}",
        f.evidence
    );
    let d = Mesh::new().tap(route_1_to_3).diagnose();
    let f = &d.findings[0];
    assert!(f.pairs.contains(&["node-1".into(), "node-3".into()]));
    assert!(f.pairs.contains(&["node-3".into(), "node-1".into()]));
    assert!(f.pairs.contains(&["node-1".into(), "web-node-3".into()]));
    assert!(
        f.evidence
            .iter()
            .any(|e| e.contains("198.19.1.1") && e.contains("node-1's")),
        "{:#?}",
        f.evidence
    );
    assert!(
        f.next_steps
            .iter()
            .any(|s| s.contains("ip route get 198.19.3.10")),
        "{:#?}",
        f.next_steps
    );
    let d = Mesh::new().tap(one_way_1_to_3).diagnose();
    let f = &d.findings[0];
    assert_eq!(
        f.pairs.iter().filter(|p| p[1].starts_with("node")).count(),
        1,
        "{}",
        d.to_text()
    );
    assert!(
        f.evidence.iter().any(|e| e.contains("one-way")),
        "{}",
        d.to_text()
    );
    // Directed pairs of a node down: all inbound ones.
    let d = Mesh::new().tap(node3_down).diagnose();
    let f = &d.findings[0];
    for o in ["node-1", "node-2", "node-4"] {
        assert!(f.pairs.contains(&[o.to_string(), "node-3".to_string()]));
    }
}

#[test]
fn route_without_its_icmp_error_points_at_the_source_table() {
    // node-3's agent unreachable from node-1, net unreachable aged out: the one-way pair.
    let mut m = Mesh::new();
    one_way_1_to_3(&mut m);
    m.missing.insert(3);
    let d = m.diagnose();
    check(
        "one way, node-3 silent",
        &d,
        &[ex(Cause::Routing, &["node-1", "node-3"])],
    );
    let f = &d.findings[0];
    assert!(f
        .pairs
        .contains(&["node-1".to_string(), "node-3".to_string()]));
    assert!(
        f.next_steps[0].starts_with("Runbook diagnosis 5: on node-1, `ip route get 198.19.3.10`"),
        "{}",
        f.next_steps[0]
    );
}

/// A lost route seen on a peer pair only (no target on the far node), on a sampled plan where
/// the far node probes the source's target but not its agent: that target pair times out (its
/// replies have no route) and belongs to the routing finding. Seen at 5,000 emulated nodes
/// (bench/README.md, session 18): `route node-00001 node-00125` answered `routing` node-00001
/// plus `cni` for web-00001 "from 1 of 5000 sources" (node-00125's).
#[test]
fn a_route_seen_on_a_peer_pair_takes_the_far_nodes_target_pair_back() {
    let mut m = Mesh::new();
    m.unprobed.extend([(3, 1), (2, 4), (4, 2)]);
    let nu = down(err_from("net_unreachable", &m.gw(1)));
    m.p(1, 3, &["icmp_pod", "http"], nu);
    m.t(3, 1, &TARGET_LAYERS, timeout());
    let mut inputs = m.inputs();
    // No target runs on node-3.
    for a in &mut inputs.agents {
        a.targets.retain(|t| t.name != web(3));
    }
    let d = crate::diagnose_inputs(&inputs, &crate::Params::default());
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    let f = &d.findings[0];
    assert!(
        f.cause == Cause::Routing && f.nodes == [name(1)],
        "{}",
        d.to_text()
    );
    assert!(
        f.pairs.iter().any(|p| p[0] == name(3) && p[1] == web(1)),
        "node-3's pair to node-1's target is the route's: {}",
        d.to_text()
    );
}

/// A sampled plan (issue 9): node pairs nobody probes, in both directions; targets are always
/// probed. Node-level faults and partitions are localised from the pairs that remain; a lost
/// route whose peer pairs are unprobed is still pinned on its node through the targets.
#[test]
fn on_a_sampled_plan_faults_are_still_localised() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        ("healthy", |_| {}, vec![]),
        (
            "route to node-3's pods deleted on node-1, seen through the targets only",
            route_1_to_3,
            vec![Expect {
                targets: &["web-node-3", "web-node-1"],
                ..ex(Routing, &["node-1"])
            }],
        ),
        ("node down", node3_down, vec![ex(NodeDown, &["node-3"])]),
        ("CNI on node-3", node3_cni, vec![ex(Cni, &["node-3"])]),
        (
            "node-2 lost all its pod routes",
            node2_no_routes,
            vec![ex(Routing, &["node-2"])],
        ),
        (
            "zone partition",
            zone_partition,
            vec![Expect {
                zones: &["zone-a", "zone-b"],
                ..ex(Vpc, &[])
            }],
        ),
    ];
    for (label, scenario, want) in table {
        let mut m = Mesh::new();
        m.unprobed.extend([(1, 3), (3, 1), (2, 4), (4, 2)]);
        scenario(&mut m);
        check(label, &m.diagnose(), &want);
    }
    // Without the target probes a route lost on an unprobed pair is invisible: nothing to say.
    let mut m = Mesh::new();
    m.unprobed.extend([(1, 3), (3, 1)]);
    let nu = down(err_from("net_unreachable", "198.19.1.1"));
    m.p(1, 3, &["icmp_pod", "http"], nu);
    check(
        "route on an unprobed pair, targets fine",
        &m.diagnose(),
        &[],
    );
}
