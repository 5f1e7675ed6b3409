//! The verdict of a target probed at both families: the engine per family, merged — a fault
//! on one family is a finding naming it, the same fault on both one finding without.

use super::*;
use crate::diagnosis::ErrorInfo;
use crate::peers::parse;

const SET: &str = r#"peers:
  - {node: node-1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, zone: zone-a, node_ips: [198.18.1.11, "fd00:18:1::11"], pod_ips: [198.19.1.10, "fd00:19:1::10"], pod_cidrs: [198.19.1.0/24, "fd00:19:1::/64"]}
  - {node: node-2, node_ip: 198.18.2.12, pod_ip: 198.19.2.10, zone: zone-b, node_ips: [198.18.2.12, "fd00:18:2::12"], pod_ips: [198.19.2.10, "fd00:19:2::10"], pod_cidrs: [198.19.2.0/24, "fd00:19:2::/64"]}
  - {node: node-3, node_ip: 198.18.1.13, pod_ip: 198.19.3.10, zone: zone-a, node_ips: [198.18.1.13, "fd00:18:1::13"], pod_ips: [198.19.3.10, "fd00:19:3::10"], pod_cidrs: [198.19.3.0/24, "fd00:19:3::/64"]}
  - {node: node-4, node_ip: 198.18.2.14, pod_ip: 198.19.4.10, zone: zone-b, node_ips: [198.18.2.14, "fd00:18:2::14"], pod_ips: [198.19.4.10, "fd00:19:4::10"], pod_cidrs: [198.19.4.0/24, "fd00:19:4::/64"]}
"#;

const ALL: [&str; 4] = ["node-1", "node-2", "node-3", "node-4"];

/// A pod on node-3 at both families, HTTP on 8080.
fn target() -> Resolved {
    Resolved {
        label: "pod/shop/web-7".into(),
        ip: "198.19.3.11".parse().unwrap(),
        ips: vec![
            "198.19.3.11".parse().unwrap(),
            "fd00:19:3::11".parse().unwrap(),
        ],
        port: Some(8080),
        node: Some("node-3".into()),
    }
}

/// What one family shows from one source: the target's ICMP, its HTTP (an error kind when it
/// fails), node-3's pod IP and node IP.
#[derive(Clone, Copy)]
struct Fam {
    icmp: bool,
    http: Option<&'static str>,
    ctx_pod: bool,
    ctx_node: bool,
}

const FINE: Fam = Fam {
    icmp: true,
    http: None,
    ctx_pod: true,
    ctx_node: true,
};
/// node-3's pod network of this family is down: its pods dead, its node IP fine.
const CNI: Fam = Fam {
    icmp: false,
    http: Some("timeout"),
    ctx_pod: false,
    ctx_node: true,
};
/// The SYN dropped, ICMP fine.
const POLICY: Fam = Fam {
    icmp: true,
    http: Some("timeout"),
    ctx_pod: true,
    ctx_node: true,
};

fn o(check: &str, layer: Option<&str>, ip: &str, ok: bool, err: Option<&str>) -> CheckOutcome {
    let icmp = check == "icmp";
    let ip: IpAddr = ip.parse().unwrap();
    CheckOutcome {
        check: check.into(),
        layer: layer.map(str::to_string),
        ip,
        port: (!icmp).then_some(8080),
        path: None,
        ok,
        sent: if icmp { 3 } else { 1 },
        received: match (icmp, ok) {
            (true, true) => 3,
            (false, true) => 1,
            _ => 0,
        },
        rtt_seconds: ok.then_some(0.0002),
        loss_ratio: Some(if ok { 0.0 } else { 1.0 }),
        path_mtu: None,
        expected_mtu: None,
        mtu_state: None,
        error: err.map(|k| ErrorInfo {
            kind: k.into(),
            ..ErrorInfo::default()
        }),
        error_text: err.map(str::to_string),
        result: None,
        answers: None,
        record_type: None,
        family: Some(Family::of(ip).as_str().into()),
    }
}

/// A source's line at both families (`untagged`: as an agent before dual-stack probes sends
/// it: the IPv4 outcomes only, without a family).
fn line(node: &str, v4: Fam, v6: Fam, untagged: bool) -> SourceLine {
    let mut checks = Vec::new();
    let mut context = Vec::new();
    let fams = [
        (v4, "198.19.3.11", "198.19.3.10", "198.18.1.13"),
        (v6, "fd00:19:3::11", "fd00:19:3::10", "fd00:18:1::13"),
    ];
    for (f, ip, pod, nodeip) in fams.into_iter().take(if untagged { 1 } else { 2 }) {
        let fail = |ok: bool| (!ok).then_some("timeout");
        checks.push(o("icmp", None, ip, f.icmp, fail(f.icmp)));
        checks.push(o("http", None, ip, f.http.is_none(), f.http));
        let p = Some("icmp_pod");
        context.push(o("icmp", p, pod, f.ctx_pod, fail(f.ctx_pod)));
        let n = Some("icmp_node");
        context.push(o("icmp", n, nodeip, f.ctx_node, fail(f.ctx_node)));
    }
    if untagged {
        checks
            .iter_mut()
            .chain(&mut context)
            .for_each(|c| c.family = None);
    }
    SourceLine {
        node: node.into(),
        zone: None,
        answered: true,
        error: None,
        ok: checks.iter().all(|c| c.ok),
        elapsed_seconds: 0.1,
        checks,
        context,
    }
}

/// Every source shows `v4` and `v6`; node-3 itself (the target's node) is fine on both.
fn from_all(v4: Fam, v6: Fam) -> Vec<SourceLine> {
    ALL.iter()
        .map(|n| match *n {
            "node-3" => line(n, FINE, FINE, false),
            _ => line(n, v4, v6, false),
        })
        .collect()
}

/// (cause, family) of each finding.
fn found(v: &Verdict) -> Vec<(String, Option<&'static str>)> {
    v.diagnosis
        .findings
        .iter()
        .map(|f| (f.cause.as_str().to_string(), f.family.map(Family::as_str)))
        .collect()
}

#[test]
fn one_family_failing_is_a_finding_naming_it_both_one_without() {
    let set = parse(SET).unwrap();
    // (name, lines, reachable, reachable per family, findings as (cause, family))
    type Case = (
        &'static str,
        Vec<SourceLine>,
        bool,
        [bool; 2],
        Vec<(&'static str, Option<&'static str>)>,
    );
    let table: Vec<Case> = vec![
        ("healthy", from_all(FINE, FINE), true, [true, true], vec![]),
        (
            "cni on node-3, IPv6 only",
            from_all(FINE, CNI),
            false,
            [true, false],
            vec![("cni", Some("ipv6"))],
        ),
        (
            "cni on node-3, IPv4 only",
            from_all(CNI, FINE),
            false,
            [false, true],
            vec![("cni", Some("ipv4"))],
        ),
        (
            "cni on node-3, both families: one finding",
            from_all(CNI, CNI),
            false,
            [false, false],
            vec![("cni", None)],
        ),
        (
            "a policy dropping IPv4 SYNs only",
            from_all(POLICY, FINE),
            false,
            [false, true],
            vec![("policy", Some("ipv4"))],
        ),
        (
            "cni on IPv4, node-4's agent from before dual-stack probes: its line reads as IPv4",
            ALL.iter()
                .map(|n| match *n {
                    "node-3" => line(n, FINE, FINE, false),
                    _ => line(n, CNI, FINE, *n == "node-4"),
                })
                .collect(),
            false,
            [false, true],
            vec![("cni", Some("ipv4"))],
        ),
    ];
    for (name, lines, reachable, per_family, want) in table {
        let v = verdict(&target(), &lines, &set, None, "node-1");
        assert_eq!(v.reachable, reachable, "{name}");
        let got = found(&v);
        let want: Vec<(String, Option<&str>)> =
            want.iter().map(|(c, f)| (c.to_string(), *f)).collect();
        assert_eq!(got, want, "{name}: {}", v.diagnosis);
        let fams: Vec<(&str, bool)> = v
            .families
            .iter()
            .map(|f| (f.family.as_str(), f.reachable))
            .collect();
        assert_eq!(
            fams,
            [("ipv4", per_family[0]), ("ipv6", per_family[1])],
            "{name}"
        );
        for f in &v.diagnosis.findings {
            assert!(
                f.nodes.contains(&"node-3".to_string())
                    || f.targets.contains(&"pod/shop/web-7".to_string()),
                "{name}: {f:?}"
            );
        }
    }
}

#[test]
fn the_inputs_hold_each_family_for_the_engine() {
    let set = parse(SET).unwrap();
    let inp = inputs(&target(), &from_all(FINE, CNI), &set, None);
    let t = &inp.agents[0].targets[0];
    assert_eq!(t.family.as_deref(), Some("ipv4"));
    let v6 = &t.families["ipv6"];
    assert_eq!(v6.ip, Some("fd00:19:3::11".parse().unwrap()));
    assert_eq!(v6.layers["icmp_pod"].reachable, Some(false));
    assert_eq!(t.layers["icmp_pod"].reachable, Some(true));
    let p = &inp.agents[0].peers[0];
    assert_eq!(
        (p.node.as_str(), p.family.as_deref()),
        ("node-3", Some("ipv4"))
    );
    assert_eq!(p.families["ipv6"].layers["icmp_pod"].reachable, Some(false));
    assert_eq!(
        p.families["ipv6"].node_ip,
        Some("fd00:18:1::13".parse().unwrap())
    );
    // One family: the shape it always had (no family, no families).
    let one = Resolved {
        ips: Vec::new(),
        ..target()
    };
    let lines: Vec<SourceLine> = ALL.iter().map(|n| line(n, FINE, FINE, true)).collect();
    let inp = inputs(&one, &lines, &set, None);
    let t = &inp.agents[0].targets[0];
    assert!(t.family.is_none() && t.families.is_empty());
    assert!(inp.agents[0].peers[0].family.is_none());
    assert!(verdict(&one, &lines, &set, None, "node-1")
        .families
        .is_empty());
}
