//! Every cause's signature and its look-alikes, through the whole engine.

use super::helpers::*;
use super::scenarios::*;
use crate::input::*;
use crate::report::Cause;

#[test]
fn signatures_and_look_alikes() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        ("clean mesh", |_| {}, vec![]),
        (
            "one lost probe on every pair",
            |m| {
                for s in 1..=N {
                    for d in 1..=N {
                        if s != d {
                            m.p(s, d, &["icmp_pod"], one_lost());
                        }
                    }
                    m.t(s, 1, &["http"], one_lost());
                }
            },
            vec![],
        ),
        (
            "node-4 just joined: few probes to it, its agent on its first rounds",
            |m| {
                for o in 1..=3 {
                    m.p(o, 4, &PEER_LAYERS, fresh_failing());
                    m.p(4, o, &PEER_LAYERS, fresh_failing());
                    m.t(o, 4, &TARGET_LAYERS, fresh_failing());
                }
                m.rounds.insert(4, 1);
            },
            vec![],
        ),
        (
            "restarting agent on node-2: HTTP refused while it starts",
            |m| {
                for o in [1, 3, 4] {
                    m.p(o, 2, &["http"], down(err("refused")));
                    m.p(2, o, &PEER_LAYERS, timeout());
                }
                m.not_ready.insert(2);
            },
            vec![],
        ),
        (
            "node down",
            node3_down,
            vec![Expect {
                targets: &["web-node-3"],
                ..ex(NodeDown, &["node-3"])
            }],
        ),
        (
            "CNI on node-3",
            node3_cni,
            vec![Expect {
                targets: &["web-node-3"],
                ..ex(Cni, &["node-3"])
            }],
        ),
        (
            "CNI on node-3, agent missing",
            |m| {
                node3_cni(m);
                m.missing.insert(3);
            },
            vec![ex(Cni, &["node-3"])],
        ),
        (
            "route to node-3's pods deleted on node-1 (both directions fail)",
            route_1_to_3,
            vec![Expect {
                targets: &["web-node-3", "web-node-1"],
                ..ex(Routing, &["node-1"])
            }],
        ),
        (
            "route to node-3's pods deleted on node-1, no \"net unreachable\" seen",
            route_1_to_3_silent,
            vec![Expect {
                targets: &["web-node-3", "web-node-1"],
                ..ex(Routing, &["node-1"])
            }],
        ),
        (
            "node-2 lost all its pod routes, no \"net unreachable\" seen",
            |m| {
                for o in [1, 3, 4] {
                    m.p(2, o, &["icmp_pod", "http"], timeout());
                    m.t(2, o, &TARGET_LAYERS, timeout());
                    m.p(o, 2, &["icmp_pod", "icmp_node", "http"], timeout());
                    m.t(o, 2, &TARGET_LAYERS, timeout());
                }
            },
            vec![ex(Routing, &["node-2"])],
        ),
        (
            "one-way pod failure node-1 -> node-3",
            one_way_1_to_3,
            vec![ex(Routing, &["node-1", "node-3"])],
        ),
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
        (
            "one-node zone partitioned, agent reports",
            lone_zone_partition,
            vec![Expect {
                zones: &["zone-a", "zone-b", "zone-c"],
                ..ex(Vpc, &[])
            }],
        ),
        (
            "one-node zone, node down (agent missing)",
            lone_zone_node_down,
            vec![ex(NodeDown, &["node-4"])],
        ),
        (
            "MTU on node-3 (path MTU states)",
            mtu_node3_states,
            vec![ex(Mtu, &["node-3"])],
        ),
        (
            "MTU on node-3 (frag-needed, EMSGSIZE, partial loss)",
            mtu_node3_errors,
            vec![ex(Mtu, &["node-3"])],
        ),
        (
            "packet loss on node-2",
            loss_node2,
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "packet loss on node-2 with an unlucky double timeout",
            |m| {
                loss_node2(m);
                m.p(
                    1,
                    2,
                    &["icmp_pod"],
                    LayerStats {
                        successes: 8,
                        received: 20,
                        sent: 30,
                        success_ratio: Some(0.8),
                        consecutive_failures: 2,
                        ..timeout()
                    },
                );
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "policy drops SYN to web-node-2",
            policy_web2,
            vec![Expect {
                targets: &["web-node-2"],
                ..ex(Policy, &["node-2"])
            }],
        ),
        (
            "application: web-node-2 answers 503",
            app_web2,
            vec![Expect {
                targets: &["web-node-2"],
                ..ex(Application, &["node-2"])
            }],
        ),
        (
            "application: web-node-2 refuses",
            refused_web2,
            vec![ex(Application, &["node-2"])],
        ),
        (
            "meshprobe agent on node-4 refuses HTTP",
            |m| {
                for o in 1..=3 {
                    m.p(o, 4, &["http"], down(err("refused")));
                }
            },
            vec![ex(Application, &["node-4"])],
        ),
        (
            "two faults: node-3 down and policy on web-node-2",
            |m| {
                node3_down(m);
                policy_web2(m);
            },
            vec![ex(NodeDown, &["node-3"]), ex(Policy, &["node-2"])],
        ),
        (
            "two faults: route on node-1 and loss on node-4",
            |m| {
                route_1_to_3(m);
                m.around(4, &["icmp_pod", "icmp_node"], &[], lossy(8));
            },
            vec![ex(Routing, &["node-1"]), ex(PacketLoss, &["node-4"])],
        ),
        (
            "two faults: silent route node-1 -> node-3 and CNI on node-2",
            |m| {
                route_1_to_3_silent(m);
                m.around(2, &["icmp_pod", "http"], &TARGET_LAYERS, timeout());
                for o in [1, 3, 4] {
                    m.p(2, o, &["icmp_node"], timeout());
                }
            },
            vec![ex(Routing, &["node-1"]), ex(Cni, &["node-2"])],
        ),
        (
            "two faults: silent route node-2 -> node-4 and CNI on node-3 (the lab's pair)",
            |m| {
                m.p(2, 4, &["icmp_pod", "http"], timeout());
                m.t(2, 4, &TARGET_LAYERS, timeout());
                m.p(4, 2, &["icmp_pod", "icmp_node", "http"], timeout());
                m.t(4, 2, &TARGET_LAYERS, timeout());
                node3_cni(m);
            },
            vec![ex(Routing, &["node-2"]), ex(Cni, &["node-3"])],
        ),
        (
            "two faults: CNI on node-2 and MTU on node-3",
            |m| {
                m.around(2, &["icmp_pod", "http"], &TARGET_LAYERS, timeout());
                mtu_node3_states(m);
            },
            vec![ex(Cni, &["node-2"]), ex(Mtu, &["node-3"])],
        ),
    ];
    // Every signature under every pod addressing (the lab's `--pod-addressing`): the same
    // cause and place whether node i's pods sit in their own /24, in /26 blocks packed into
    // shared /24s, or interleaved /32s from one VPC range with a shared gateway.
    // Every wrong combination is listed (not only the first), so a regression shows its size.
    let mut wrong = Vec::new();
    let mut runs = 0;
    for (label, scenario, want) in &table {
        for layout in [Layout::Subnet, Layout::Blocks, Layout::Vpc] {
            for meta in [false, true] {
                let mut m = Mesh::new();
                m.meta = meta;
                m.layout = layout;
                scenario(&mut m);
                let d = m.diagnose();
                let label = format!("{label} ({layout:?}, meta {meta})");
                runs += 1;
                if let Err(e) = std::panic::catch_unwind(|| check(&label, &d, want)) {
                    let why = e
                        .downcast_ref::<String>()
                        .map_or("?", String::as_str)
                        .lines()
                        .next()
                        .unwrap_or("?")
                        .to_string();
                    wrong.push(why);
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {runs} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `cargo test -p meshprobe-diagnosis --lib tests::signatures::show -- --ignored --nocapture`
/// prints every scenario's text.
#[test]
#[ignore]
fn show() {
    let table: Vec<(&str, Scenario)> = vec![
        ("node down", node3_down),
        ("cni", node3_cni),
        ("route", route_1_to_3),
        ("one way", one_way_1_to_3),
        ("no routes", node2_no_routes),
        ("zone", zone_partition),
        ("lone zone", lone_zone_partition),
        ("lone zone down", lone_zone_node_down),
        ("mtu states", mtu_node3_states),
        ("mtu errors", mtu_node3_errors),
        ("loss", loss_node2),
        ("policy", policy_web2),
        ("app", app_web2),
    ];
    for (label, f) in table {
        let mut m = Mesh::new();
        f(&mut m);
        println!("==== {label}\n{}", m.diagnose());
    }
}

/// Without address facts (a peers file without `pod_cidrs`/`node`, an older agent), a target's
/// node is unknown: findings about it name the target and no node, and no finding names a node
/// the fault does not involve — whatever the layout (the /24 guess named node-1 for every
/// target of the blocks layout).
#[test]
fn without_facts_unknowns_stay_unknown() {
    // (label, scenario, the nodes findings may name, the target that must be named)
    let table: Vec<(&str, Scenario, &[&str], Option<&str>)> = vec![
        ("node down", node3_down, &["node-3"], None),
        ("cni", node3_cni, &["node-3"], None),
        ("route", route_1_to_3, &["node-1", "node-3"], None),
        ("policy", policy_web2, &[], Some("web-node-2")),
        ("app", app_web2, &[], Some("web-node-2")),
        ("refused", refused_web2, &[], Some("web-node-2")),
    ];
    for (label, scenario, allowed, target) in table {
        for layout in [Layout::Subnet, Layout::Blocks, Layout::Vpc] {
            let mut m = Mesh::new();
            m.no_facts = true;
            m.layout = layout;
            scenario(&mut m);
            let d = m.diagnose();
            let text = d.to_text();
            assert!(!d.findings.is_empty(), "{label} ({layout:?}): no finding");
            for f in &d.findings {
                for n in &f.nodes {
                    assert!(
                        allowed.contains(&n.as_str()),
                        "{label} ({layout:?}): names {n}\n{text}"
                    );
                }
            }
            if let Some(t) = target {
                assert!(
                    d.findings.iter().any(|f| f.targets.iter().any(|x| x == t)),
                    "{label} ({layout:?}): {t} not named\n{text}"
                );
            }
        }
    }
}
