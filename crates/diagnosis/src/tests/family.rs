//! Diagnosis per family: dual-stack documents built from two single-family meshes (the
//! IPv4 one's figures on top, the IPv6 one's under `families`), diagnosed per family and
//! merged.

use std::collections::BTreeMap;

use meshprobe_core::model::Family;

use super::helpers::*;
use super::scenarios::*;
use crate::family::{diagnose_inputs, families, merge, project};
use crate::input::*;
use crate::report::{Cause, Diagnosis, Finding};
use crate::Params;

/// The IPv6 address standing for an IPv4 one of the mesh (`198.19.3.10` → `fd00:198:19:3::10`).
fn v6(ip: Option<std::net::IpAddr>) -> Option<std::net::IpAddr> {
    let std::net::IpAddr::V4(a) = ip? else {
        return ip;
    };
    let [_, b, c, d] = a.octets();
    format!("fd00:198:{b}:{c}::{d}").parse().ok()
}

/// `198.19.3.0/24` → `fd00:198:19:3::/64` (the /24's addresses map into it).
fn v6_cidr(c: &str) -> String {
    let (ip, _) = c.split_once('/').unwrap_or((c, ""));
    let [_, b, c, _]: [&str; 4] = ip.split('.').collect::<Vec<_>>().try_into().unwrap();
    format!("fd00:198:{b}:{c}::/64")
}

/// The same figures with every error's reporter at its IPv6 stand-in.
fn v6_layers(layers: &BTreeMap<String, LayerStats>) -> BTreeMap<String, LayerStats> {
    let from = |e: &mut ErrorInfo| {
        e.from = e
            .from
            .as_deref()
            .and_then(|f| v6(f.parse().ok()))
            .map(|ip| ip.to_string());
    };
    let mut out = layers.clone();
    for l in out.values_mut() {
        l.last_error.iter_mut().for_each(from);
        for e in &mut l.errors {
            e.last.iter_mut().for_each(from);
        }
    }
    out
}

/// Both families' address facts, as a dual-stack agent publishes them.
fn dual_facts(n: &mut NodeMeta) {
    n.node_ips = n.node_ip.into_iter().chain(v6(n.node_ip)).collect();
    n.pod_ips = n.pod_ip.into_iter().chain(v6(n.pod_ip)).collect();
    let extra: Vec<String> = n.pod_cidrs.iter().map(|c| v6_cidr(c)).collect();
    n.pod_cidrs.extend(extra);
}

/// One dual-stack document set: `v4`'s figures as the primary family, `v6`'s as IPv6.
fn dual(v4: &Mesh, v6m: &Mesh) -> Inputs {
    let mut inp = v4.inputs();
    let other = v6m.inputs();
    inp.nodes.iter_mut().for_each(dual_facts);
    for a in &mut inp.agents {
        a.owners.nodes.iter_mut().for_each(dual_facts);
        for t in &mut a.owners.targets {
            t.ips = t.ip.into_iter().chain(v6(t.ip)).collect();
        }
    }
    for (a, b) in inp.agents.iter_mut().zip(&other.agents) {
        for (p, q) in a.peers.iter_mut().zip(&b.peers) {
            p.family = Some("ipv4".into());
            p.families.insert(
                "ipv6".into(),
                FamilyReport {
                    node_ip: v6(q.node_ip),
                    ip: v6(q.pod_ip),
                    layers: v6_layers(&q.layers),
                    // Agents serve the per-layer map; the mesh writes the older pair fields.
                    mtu: q
                        .path_mtu
                        .map(|m| {
                            let r = MtuReport {
                                path_mtu: Some(m),
                                state: q.mtu_state,
                            };
                            [("icmp_pod".to_string(), r)].into()
                        })
                        .unwrap_or_else(|| q.mtu.clone()),
                },
            );
        }
        for (t, u) in a.targets.iter_mut().zip(&b.targets) {
            t.family = Some("ipv4".into());
            t.families.insert(
                "ipv6".into(),
                FamilyReport {
                    node_ip: None,
                    ip: v6(u.ip),
                    layers: v6_layers(&u.layers),
                    mtu: u.mtu.clone(),
                },
            );
        }
    }
    for n in other.unreachable_agents {
        if !inp.unreachable_agents.contains(&n) {
            inp.unreachable_agents.push(n);
        }
    }
    inp
}

/// A finding as the tests compare it: cause, nodes, targets, family.
type Row = (Cause, Vec<String>, Vec<String>, Option<Family>);

fn tagged(d: &Diagnosis, family: Option<Family>) -> Vec<Row> {
    let mut v: Vec<_> = d
        .findings
        .iter()
        .map(|f| (f.cause, f.nodes.clone(), f.targets.clone(), family))
        .collect();
    v.sort();
    v
}

fn got(d: &Diagnosis) -> Vec<Row> {
    let mut v: Vec<_> = d
        .findings
        .iter()
        .map(|f| (f.cause, f.nodes.clone(), f.targets.clone(), f.family))
        .collect();
    v.sort();
    v
}

/// The faults one family can have alone (node-down is every family's).
const ONE_FAMILY: &[(&str, Scenario)] = &[
    ("cni node-3", node3_cni),
    ("route node-1 node-3", route_1_to_3),
    ("one-way node-1 node-3", one_way_1_to_3),
    ("node-2 without routes", node2_no_routes),
    ("zone partition", zone_partition),
    ("mtu node-3", mtu_node3_states),
    ("policy web-node-2", policy_web2),
    ("refused web-node-2", refused_web2),
    ("loss node-2", loss_node2_real),
];

#[test]
fn a_fault_of_one_family_is_found_in_it_and_named_by_it() {
    let p = Params::default();
    let healthy = Mesh::new();
    for &(what, fault) in ONE_FAMILY {
        let alone = Mesh::new().tap(fault).diagnose();
        assert!(!alone.healthy, "{what}: the single-family engine finds it");
        // IPv6 only: the IPv6 engine's findings, each with its family; IPv4 says nothing.
        let d = diagnose_inputs(&dual(&healthy, &Mesh::new().tap(fault)), &p);
        assert_eq!(
            got(&d),
            tagged(&alone, Some(Family::Ipv6)),
            "{what} on IPv6\n{d}"
        );
        assert!(
            d.findings.iter().all(|f| f.summary.starts_with("IPv6: ")),
            "{what}\n{d}"
        );
        // What an IPv6 finding says to run names IPv6 addresses, not the IPv4 primaries.
        let said: Vec<&String> = d
            .findings
            .iter()
            .flat_map(|f| f.evidence.iter().chain(&f.next_steps))
            .collect();
        assert!(
            !said.iter().any(|s| s.contains("198.19.")),
            "{what}: IPv4 pod addresses in an IPv6 finding: {said:#?}"
        );
        // IPv4 only, likewise.
        let d = diagnose_inputs(&dual(&Mesh::new().tap(fault), &healthy), &p);
        assert_eq!(
            got(&d),
            tagged(&alone, Some(Family::Ipv4)),
            "{what} on IPv4\n{d}"
        );
        // Both: one finding per place, without a family, as a single-family cluster reads.
        let both = dual(&Mesh::new().tap(fault), &Mesh::new().tap(fault));
        let d = diagnose_inputs(&both, &p);
        assert_eq!(got(&d), tagged(&alone, None), "{what} on both\n{d}");
        assert_eq!(
            d.findings.iter().map(|f| &f.summary).collect::<Vec<_>>(),
            alone
                .findings
                .iter()
                .map(|f| &f.summary)
                .collect::<Vec<_>>(),
            "{what}: both families read as one"
        );
    }
    // Node down is every family's: one finding, no family.
    let down = Mesh::new().tap(node3_down);
    let d = diagnose_inputs(&dual(&down, &Mesh::new().tap(node3_down)), &p);
    assert_eq!(got(&d), tagged(&down.diagnose(), None), "{d}");
    assert!(diagnose_inputs(&dual(&healthy, &healthy), &p).healthy);
}

#[test]
fn two_faults_in_two_families_are_two_findings_each_with_its_family() {
    let d = diagnose_inputs(
        &dual(&Mesh::new().tap(node3_cni), &Mesh::new().tap(route_1_to_3)),
        &Params::default(),
    );
    let mut want = tagged(&Mesh::new().tap(node3_cni).diagnose(), Some(Family::Ipv4));
    want.extend(tagged(
        &Mesh::new().tap(route_1_to_3).diagnose(),
        Some(Family::Ipv6),
    ));
    want.sort();
    assert_eq!(got(&d), want, "{d}");
}

#[test]
fn single_family_documents_are_diagnosed_as_they_always_were() {
    for &(what, fault) in ONE_FAMILY {
        let m = Mesh::new().tap(fault);
        let inp = m.inputs();
        assert_eq!(families(&inp).len(), 1, "{what}");
        assert_eq!(
            diagnose_inputs(&inp, &Params::default()),
            m.diagnose(),
            "{what}"
        );
    }
}

#[test]
fn a_projection_puts_the_family_on_top_and_leaves_out_who_has_none() {
    // As an agent serves it: a dual-stack peer, an IPv4-only peer, an IPv6-primary target.
    let doc = r#"{"node": "a", "ready": true, "peers": [
        {"node": "b", "family": "ipv4", "node_ip": "10.0.0.2", "pod_ip": "10.1.0.2",
         "layers": {"icmp_pod": {"reachable": true, "probes": 5, "successes": 5, "sent": 5, "received": 5}},
         "families": {"ipv6": {"node_ip": "fd00::2", "ip": "fd01::2",
           "layers": {"icmp_pod": {"reachable": false, "consecutive_failures": 5, "probes": 5, "sent": 5}},
           "mtu": {"icmp_pod": {"path_mtu": 1400, "state": "mismatch"}}}}},
        {"node": "c", "node_ip": "10.0.0.3", "pod_ip": "10.1.0.3", "layers": {}}],
      "targets": [{"name": "web", "family": "ipv6", "ip": "fd01::9", "port": 80, "layers": {"tcp": {"reachable": false}},
        "families": {"ipv4": {"ip": "10.1.0.9", "layers": {"tcp": {"reachable": true}}}}}]}"#;
    let inp = Inputs {
        agents: vec![AgentReport::from_json(doc).unwrap()],
        ..Inputs::default()
    };
    assert_eq!(
        families(&inp).into_iter().collect::<Vec<_>>(),
        [Family::Ipv4, Family::Ipv6]
    );
    let v6 = project(&inp, Family::Ipv6);
    let a = &v6.agents[0];
    let names: Vec<&str> = a.peers.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(names, ["b"], "c has no IPv6: left out of IPv6's view");
    let b = &a.peers[0];
    assert_eq!(b.pod_ip, "fd01::2".parse().ok());
    assert_eq!(b.node_ip, "fd00::2".parse().ok());
    assert_eq!(b.layers["icmp_pod"].reachable, Some(false));
    assert_eq!(b.mtu["icmp_pod"].path_mtu, Some(1400));
    assert!(b.family.is_none() && b.families.is_empty());
    assert_eq!(a.targets[0].ip, "fd01::9".parse().ok());
    assert_eq!(a.targets[0].port, Some(80));
    let v4 = project(&inp, Family::Ipv4);
    let a = &v4.agents[0];
    assert_eq!(a.peers.len(), 2);
    assert_eq!(a.peers[0].layers["icmp_pod"].reachable, Some(true));
    assert_eq!(a.targets[0].ip, "10.1.0.9".parse().ok());
    assert_eq!(a.targets[0].layers["tcp"].reachable, Some(true));
    // An unknown family word is no family, not an error.
    let odd = doc.replace(r#""family": "ipv4""#, r#""family": "ipx""#);
    assert!(AgentReport::from_json(&odd).is_ok());
}

fn finding(cause: Cause, nodes: &[&str], pairs: &[[&str; 2]], confidence: f64) -> Finding {
    Finding {
        cause,
        summary: format!("{cause} on {}", nodes.join(",")),
        nodes: nodes.iter().map(|s| s.to_string()).collect(),
        pairs: pairs
            .iter()
            .map(|[a, b]| [a.to_string(), b.to_string()])
            .collect(),
        zones: vec![],
        targets: vec![],
        confidence,
        evidence: vec!["e".into()],
        next_steps: vec!["s".into()],
        family: None,
    }
}

#[test]
fn merge_joins_one_fault_seen_by_both_families_and_names_the_rest() {
    use Cause::*;
    let v4 = Diagnosis::new(vec![
        finding(Cni, &["node-3"], &[["node-1", "node-3"]], 0.8),
        finding(Routing, &["node-1"], &[["node-1", "node-2"]], 0.7),
        finding(Mtu, &["node-2"], &[["node-2", "node-1"]], 0.9),
    ]);
    let v6 = Diagnosis::new(vec![
        finding(Cni, &["node-3"], &[["node-2", "node-3"]], 0.9),
        // Another place is another fault, even of the same cause.
        finding(Routing, &["node-2", "node-4"], &[["node-4", "node-2"]], 0.6),
        // One end more than the other family names: the same fault, the surer reading kept.
        finding(Mtu, &["node-2", "node-3"], &[["node-3", "node-2"]], 0.5),
    ]);
    let d = merge(&[(Family::Ipv4, v4), (Family::Ipv6, v6)]);
    type Merged<'a> = (Cause, Vec<String>, Option<Family>, f64, usize, &'a str);
    let rows: Vec<Merged> = d
        .findings
        .iter()
        .map(|f| {
            (
                f.cause,
                f.nodes.clone(),
                f.family,
                f.confidence,
                f.pairs.len(),
                f.summary.as_str(),
            )
        })
        .collect();
    let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        [
            // Both families: one finding, the surer one's words, both families' pairs.
            (Cni, n(&["node-3"]), None, 0.9, 2, "cni on node-3"),
            (Mtu, n(&["node-2"]), None, 0.9, 2, "mtu on node-2"),
            (
                Routing,
                n(&["node-1"]),
                Some(Family::Ipv4),
                0.7,
                1,
                "IPv4: routing on node-1"
            ),
            (
                Routing,
                n(&["node-2", "node-4"]),
                Some(Family::Ipv6),
                0.6,
                1,
                "IPv6: routing on node-2,node-4"
            ),
        ]
    );
    let json = serde_json::to_value(&d).unwrap();
    assert!(json["findings"][0].get("family").is_none());
    assert_eq!(json["findings"][2]["family"], "ipv4");
    assert!(
        merge(&[
            (Family::Ipv4, Diagnosis::new(vec![])),
            (Family::Ipv6, Diagnosis::new(vec![]))
        ])
        .healthy
    );
}
