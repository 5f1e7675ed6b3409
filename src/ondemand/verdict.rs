//! From the sources' answers to the verdict: reachable from every source or not, and the
//! diagnosis engine's findings for this target. Pure.
//!
//! Each answering source becomes one agent report: the target as a target (its ICMP, TCP and
//! HTTP checks as one-probe windows, the MTU check as its path-MTU report) and the target
//! node's node IP and agent pod IP (the context checks) as a peer. Silent sources are
//! unreachable agents. The engine runs with one-shot thresholds ([`params`]): one failed probe
//! is a down cell, since the checks ran just now.

use std::collections::BTreeMap;

use super::request::{Resolved, DNS_PREFIX, SVC_PREFIX};
use super::wire::{CheckOutcome, FamilyVerdict, SourceLine, Verdict};
use crate::diagnosis::input::{CheckErrorInfo, CheckStats, MtuReport};
use crate::diagnosis::{
    diagnose_inputs, AddressFacts, AgentReport, Cause, Diagnosis, ErrorCountInfo, FamilyReport,
    Inputs, KubeFacts, LayerStats, MtuState, Params, PeerReport, TargetPlace, TargetReport,
};
use crate::model::Family;
use crate::peers::PeerSet;
use std::net::IpAddr;

/// The engine's thresholds for one-shot results.
pub fn params() -> Params {
    Params {
        min_probes: 1,
        min_consecutive_failures: 1,
        min_ratio_probes: 1,
        min_rounds: 0,
        ..Params::default()
    }
}

/// One check's outcome as a one-probe window.
pub fn layer_stats(o: &CheckOutcome) -> LayerStats {
    LayerStats {
        reachable: Some(o.ok),
        consecutive_failures: u32::from(!o.ok),
        probes: 1,
        successes: u32::from(o.ok),
        sent: o.sent,
        received: o.received,
        success_ratio: Some(if o.ok { 1.0 } else { 0.0 }),
        loss_ratio: o.loss_ratio,
        rtt_seconds: None,
        last_error: o.error.clone(),
        last_error_age_seconds: o.error.as_ref().map(|_| 0.0),
        last_probe_age_seconds: Some(0.0),
        // One probe each, all at once: no success is older than a failure.
        failing_for_seconds: None,
        errors: o
            .error
            .iter()
            .map(|e| ErrorCountInfo {
                kind: e.kind.clone(),
                count: 1,
                last: Some(e.clone()),
                last_age_seconds: Some(0.0),
            })
            .collect(),
    }
}

fn mtu_state(s: &str) -> MtuState {
    match s {
        "ok" => MtuState::Ok,
        "mismatch" => MtuState::Mismatch,
        "blackhole" => MtuState::Blackhole,
        _ => MtuState::Unknown,
    }
}

/// The worst outcome of a kind of check (a failing one, else the first).
fn pick<'a>(checks: &'a [CheckOutcome], kind: &str) -> Option<&'a CheckOutcome> {
    let mut of_kind = checks.iter().filter(|c| c.check == kind);
    let first = of_kind.clone().next();
    of_kind.find(|c| !c.ok).or(first)
}

/// One family's checks of one source as a target's layers and path-MTU report.
fn target_layers(
    checks: &[CheckOutcome],
) -> (BTreeMap<String, LayerStats>, BTreeMap<String, MtuReport>) {
    let mut layers = BTreeMap::new();
    for (kind, layer) in [("icmp", "icmp_pod"), ("tcp", "tcp"), ("http", "http")] {
        if let Some(o) = pick(checks, kind) {
            layers.insert(layer.to_string(), layer_stats(o));
        }
    }
    let mut mtu = BTreeMap::new();
    if let Some(m) = pick(checks, "mtu") {
        mtu.insert(
            "icmp_pod".to_string(),
            MtuReport {
                path_mtu: m.path_mtu,
                state: m.mtu_state.as_deref().map(mtu_state),
            },
        );
    }
    (layers, mtu)
}

/// The outcomes of `family` (untagged ones are the primary family's).
fn of_family(list: &[CheckOutcome], family: Family, primary: Family) -> Vec<CheckOutcome> {
    list.iter()
        .filter(|c| c.family_or(primary) == family)
        .cloned()
        .collect()
}

/// The families probed, the primary first.
fn families_of(target: &Resolved) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for ip in target.addrs() {
        if !out.contains(&Family::of(ip)) {
            out.push(Family::of(ip));
        }
    }
    out
}

/// The engine's input for these answers. Dual-stack: each destination's primary family's
/// figures at the top with `family` set, the other's under `families`, so
/// [`diagnose_inputs`] runs the engine per family and merges.
pub fn inputs(
    target: &Resolved,
    lines: &[SourceLine],
    peers: &PeerSet,
    kube: Option<KubeFacts>,
) -> Inputs {
    let fams = families_of(target);
    let primary = fams[0];
    let dual = fams.len() > 1;
    let addr_of = |f: Family| target.addrs().into_iter().find(|ip| Family::of(*ip) == f);
    let mut agents = Vec::new();
    let mut unreachable = Vec::new();
    for l in lines {
        if !l.answered {
            unreachable.push(l.node.clone());
            continue;
        }
        let (layers, mtu) = target_layers(&of_family(&l.checks, primary, primary));
        let protocol = if layers.contains_key("http") {
            Some("http".to_string())
        } else if layers.contains_key("tcp") {
            Some("tcp".to_string())
        } else {
            None
        };
        let mut families = BTreeMap::new();
        for &f in &fams[1..] {
            let (layers, mtu) = target_layers(&of_family(&l.checks, f, primary));
            if !layers.is_empty() || !mtu.is_empty() {
                families.insert(
                    f.as_str().to_string(),
                    FamilyReport {
                        node_ip: None,
                        ip: addr_of(f),
                        layers,
                        mtu,
                    },
                );
            }
        }
        // The context checks: the target node as a peer, per family likewise.
        let mut peer_reports = Vec::new();
        if let Some(n) = &target.node {
            let ctx_layers =
                |f: Family| -> (BTreeMap<String, LayerStats>, Option<IpAddr>, Option<IpAddr>) {
                    let mut layers = BTreeMap::new();
                    let (mut pod_ip, mut node_ip) = (None, None);
                    for c in of_family(&l.context, f, primary) {
                        if let Some(layer) = &c.layer {
                            layers.insert(layer.clone(), layer_stats(&c));
                            match layer.as_str() {
                                "icmp_pod" => pod_ip = Some(c.ip),
                                "icmp_node" => node_ip = Some(c.ip),
                                _ => {}
                            }
                        }
                    }
                    (layers, pod_ip, node_ip)
                };
            let with: Vec<(Family, _)> = fams
                .iter()
                .map(|f| (*f, ctx_layers(*f)))
                .filter(|(_, (layers, _, _))| !layers.is_empty())
                .collect();
            if let Some(((top, (layers, pod_ip, node_ip)), rest)) = with.split_first() {
                peer_reports.push(PeerReport {
                    node: n.clone(),
                    layers: layers.clone(),
                    // One family: as before dual-stack (the engine places the peer by name).
                    pod_ip: pod_ip.filter(|_| dual),
                    node_ip: node_ip.filter(|_| dual),
                    family: dual.then(|| top.as_str().to_string()),
                    families: rest
                        .iter()
                        .map(|(f, (layers, pod_ip, node_ip))| {
                            (
                                f.as_str().to_string(),
                                FamilyReport {
                                    node_ip: *node_ip,
                                    ip: *pod_ip,
                                    layers: layers.clone(),
                                    mtu: BTreeMap::new(),
                                },
                            )
                        })
                        .collect(),
                    ..PeerReport::default()
                });
            }
        }
        agents.push(AgentReport {
            node: l.node.clone(),
            zone: l.zone.clone(),
            ready: Some(true),
            peers: peer_reports,
            targets: vec![TargetReport {
                name: target.label.clone(),
                ip: Some(target.ip),
                port: target.port,
                protocol,
                layers,
                mtu,
                family: dual.then(|| primary.as_str().to_string()),
                families,
                ..TargetReport::default()
            }],
            // Where the request resolved the target (a node name, a pod's `spec.nodeName`,
            // the ownership map): a fact for the engine, not re-guessed from the address.
            owners: AddressFacts {
                nodes: Vec::new(),
                targets: vec![TargetPlace {
                    ips: target.ips.clone(),
                    name: target.label.clone(),
                    ip: Some(target.ip),
                    node: target.node.clone(),
                }],
            },
            ..AgentReport::default()
        });
    }
    Inputs {
        agents,
        unreachable_agents: unreachable,
        // The peer set's address facts: the same ownership map as the mesh view's.
        nodes: AddressFacts::of(peers).nodes,
        kube,
    }
}

/// Dual-stack: reachable per family (a source is reachable on a family when it answered and
/// every check of that family passed). Empty for one family.
pub fn family_verdicts(target: &Resolved, lines: &[SourceLine]) -> Vec<FamilyVerdict> {
    let fams = families_of(target);
    if fams.len() < 2 {
        return Vec::new();
    }
    let primary = fams[0];
    fams.iter()
        .map(|&f| {
            // A silent agent fails every family; one that ran no check of this family (an
            // agent from before dual-stack probes) is neither.
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            for l in lines {
                let mine = of_family(&l.checks, f, primary);
                if !l.answered || mine.iter().any(|c| !c.ok) {
                    bad.push(l);
                } else if !mine.is_empty() {
                    good.push(l);
                }
            }
            FamilyVerdict {
                family: f.as_str().to_string(),
                ip: target
                    .addrs()
                    .into_iter()
                    .find(|ip| Family::of(*ip) == f)
                    .unwrap_or(target.ip),
                reachable: !lines.is_empty() && bad.is_empty(),
                reachable_from: good.iter().map(|l| l.node.clone()).collect(),
                unreachable_from: bad.iter().map(|l| l.node.clone()).collect(),
            }
        })
        .collect()
}

/// The asked agent (`me`) answered but reached none of the other sources (at least two), and
/// its own checks fail: from its view alone "everyone else is down" and "I am cut off" look the
/// same, and the second is far likelier (docs/design/ondemand.md, "caution").
pub fn caution(me: &str, lines: &[SourceLine]) -> Option<String> {
    let own = lines.iter().find(|l| l.node == me && l.answered)?;
    let others: Vec<&SourceLine> = lines.iter().filter(|l| l.node != me).collect();
    if own.ok || others.len() < 2 || others.iter().any(|l| l.answered) {
        return None;
    }
    Some(format!(
        "{me}, the agent asked, reached none of the {} other agents and its own checks fail: the fault may be on {me} itself (its pod network or uplink), and the findings rest on its view alone. Ask an agent on another node (--agent).",
        others.len()
    ))
}

/// Every agent of the other zone(s) is silent while every agent of the asked agent's zone
/// answered: the per-target checks cannot show it, but the silence itself points at a zone
/// partition (docs/design/ondemand.md, "zone silence").
pub fn zone_silence(me: &str, lines: &[SourceLine], peers: &PeerSet) -> Option<String> {
    let zone = |n: &str| peers.peer(n).and_then(|p| p.zone.clone());
    let mine = zone(me)?;
    let silent: Vec<&SourceLine> = lines.iter().filter(|l| !l.answered).collect();
    if silent.len() < 2
        || lines
            .iter()
            .any(|l| l.answered != (zone(&l.node).as_deref() == Some(&mine)))
    {
        return None;
    }
    let mut zones: Vec<String> = silent.iter().filter_map(|l| zone(&l.node)).collect();
    zones.sort();
    zones.dedup();
    let names: Vec<&str> = silent.iter().map(|l| l.node.as_str()).collect();
    Some(format!(
        "every agent in {} ({}) is silent while every agent in {mine} answered: the zones may be cut off from each other (VPC routes, security groups, a zone partition); `meshprobe diagnose` shows the whole mesh",
        zones.join(", "),
        names.join(", ")
    ))
}

/// Longest error detail carried into a finding's evidence from a source's answer.
const MAX_CHECK_DETAIL: usize = 200;

/// One source's `dns` or `service` outcome as the per-source check figures the diagnosis
/// reads (one run: down on its first failure). Read from a peer agent's answer, so the result
/// label is kept only when it is one of the bounded labels and the detail is cut short.
pub fn check_stats(target: &str, o: &CheckOutcome) -> CheckStats {
    let result = o
        .result
        .as_deref()
        .filter(|r| crate::checks::dns::RESULTS.contains(r))
        .or_else(|| o.error.as_ref().map(|e| e.kind.as_str()))
        .unwrap_or(if o.ok { "ok" } else { "other" });
    let result: String = result.chars().take(32).collect();
    let detail = o.error_text.as_deref().unwrap_or("");
    let detail = detail
        .strip_prefix(&format!("{result}: "))
        .unwrap_or(detail)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_CHECK_DETAIL)
        .collect();
    CheckStats {
        target: target.to_string(),
        reachable: Some(o.ok),
        consecutive_failures: u32::from(!o.ok),
        probes: 1,
        successes: u32::from(o.ok),
        success_ratio: Some(if o.ok { 1.0 } else { 0.0 }),
        last_error: (!o.ok).then(|| CheckErrorInfo {
            kind: result.clone(),
            detail,
            age_seconds: None,
        }),
        last_result: Some(result),
        // Every source ran once, at the same time: no age, so no source reads as having run
        // before another's failure began (the engine's fresh-contrast rule is for windows).
        last_probe_age_seconds: None,
    }
}

/// The engine's input for a per-source check request (`dns/NAME`: kind `dns`): each answering
/// source's outcome as its `checks[kind]`, and, as the evidence that its pod network works,
/// the fan-out itself — the asked agent (`me`) reached that source's agent by pod IP over HTTP
/// and got its answer, so each answering source reports `me` as an answering peer, and `me`
/// every other answering source (with none, its own pod network is not known to work). A check that fails where the pod network
/// works is the checked layer's fault (crates/diagnosis/src/checks.rs).
pub fn check_inputs(kind: &str, target: &str, lines: &[SourceLine], me: &str) -> Inputs {
    let stats = |ok: bool| LayerStats {
        reachable: Some(ok),
        consecutive_failures: u32::from(!ok),
        probes: 1,
        successes: u32::from(ok),
        sent: 1,
        received: u32::from(ok),
        success_ratio: Some(if ok { 1.0 } else { 0.0 }),
        last_probe_age_seconds: Some(0.0),
        ..LayerStats::default()
    };
    let peer = |node: &str, ok: bool| PeerReport {
        node: node.to_string(),
        layers: BTreeMap::from([("http".to_string(), stats(ok))]),
        ..PeerReport::default()
    };
    let mut agents = Vec::new();
    let mut unreachable = Vec::new();
    for l in lines {
        if !l.answered {
            unreachable.push(l.node.clone());
            continue;
        }
        // Only answers count: a silent agent is already `unreachable_agents`, and one missed
        // forward is no evidence of a routing fault for the network engine to name.
        let peers: Vec<PeerReport> = if l.node == me {
            lines
                .iter()
                .filter(|o| o.node != me && o.answered)
                .map(|o| peer(&o.node, true))
                .collect()
        } else {
            vec![peer(me, true)]
        };
        // `service`: the TCP and HTTP checks to the ClusterIP, the worst of them.
        let o = match kind {
            "service" => l.checks.iter().find(|c| !c.ok).or(l.checks.first()),
            _ => pick(&l.checks, kind),
        };
        let checks = o
            .map(|o| BTreeMap::from([(kind.to_string(), check_stats(target, o))]))
            .unwrap_or_default();
        agents.push(AgentReport {
            node: l.node.clone(),
            zone: l.zone.clone(),
            ready: Some(true),
            peers,
            checks,
            ..AgentReport::default()
        });
    }
    Inputs {
        agents,
        unreachable_agents: unreachable,
        nodes: Vec::new(),
        kube: None,
    }
}

/// The engine words `service` findings for the agents' own check (`GET /ping` to their own
/// Service, whose backends are the agents): said of any Service probed on demand.
fn service_wording(mut d: Diagnosis, label: &str) -> Diagnosis {
    for f in &mut d.findings {
        if f.cause != Cause::Service {
            continue;
        }
        let fix = |t: &str| {
            t.replace("TCP + GET /ping to ClusterIP", "TCP/HTTP to ClusterIP")
                .replace(
                    "while the agents behind it answer by pod IP",
                    "while the agents there answer by pod IP",
                )
        };
        f.summary = format!("{} ({label})", fix(&f.summary));
        for e in &mut f.evidence {
            *e = fix(e);
        }
    }
    d
}

/// The verdict for these answers; `me` is the agent that fanned out.
pub fn verdict(
    target: &Resolved,
    lines: &[SourceLine],
    peers: &PeerSet,
    kube: Option<KubeFacts>,
    me: &str,
) -> Verdict {
    let (inp, diagnosis) = match target.label.strip_prefix(DNS_PREFIX) {
        // A name: the per-source checks reader of the engine (no target address to diagnose).
        Some(name) => {
            let inp = check_inputs("dns", name, lines, me);
            let d = diagnose_inputs(&inp, &params());
            (inp, d)
        }
        // A Service: its ClusterIP's checks read as the `service` check.
        None if target.label.starts_with(SVC_PREFIX) => {
            let vip = match target.port {
                Some(p) => std::net::SocketAddr::new(target.ip, p).to_string(),
                None => target.ip.to_string(),
            };
            let inp = check_inputs("service", &vip, lines, me);
            let d = service_wording(diagnose_inputs(&inp, &params()), &target.label);
            (inp, d)
        }
        // An address (or two: the engine per family, merged).
        None => {
            let inp = inputs(target, lines, peers, kube);
            let d = diagnose_inputs(&inp, &params());
            (inp, d)
        }
    };
    let (good, bad): (Vec<&SourceLine>, Vec<&SourceLine>) = lines.iter().partition(|l| l.ok);
    Verdict {
        caution: caution(me, lines).or_else(|| zone_silence(me, lines, peers)),
        families: family_verdicts(target, lines),
        target: target.clone(),
        reachable: !lines.is_empty() && bad.is_empty(),
        reachable_from: good.iter().map(|l| l.node.clone()).collect(),
        unreachable_from: bad.iter().map(|l| l.node.clone()).collect(),
        agents_unreachable: inp.unreachable_agents.clone(),
        diagnosis,
    }
}

#[cfg(test)]
mod dual_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::ErrorInfo;
    use crate::peers::parse;

    const SET: &str = "peers:\n  - {node: node-1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, zone: zone-a}\n  - {node: node-2, node_ip: 198.18.2.12, pod_ip: 198.19.2.10, zone: zone-b}\n  - {node: node-3, node_ip: 198.18.1.13, pod_ip: 198.19.3.10, zone: zone-a}\n  - {node: node-4, node_ip: 198.18.2.14, pod_ip: 198.19.4.10, zone: zone-b}\n";

    fn o(check: &str, layer: Option<&str>, ok: bool, err: Option<&str>) -> CheckOutcome {
        let icmp = check == "icmp";
        CheckOutcome {
            check: check.into(),
            layer: layer.map(str::to_string),
            ip: "198.19.3.11".parse().unwrap(),
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
            family: None,
        }
    }

    /// A source's line: ICMP and HTTP to the target, ICMP to node-3's pod IP and node IP.
    fn line(
        node: &str,
        icmp: bool,
        http: Option<&str>,
        ctx_pod: bool,
        ctx_node: bool,
    ) -> SourceLine {
        let checks = vec![
            o("icmp", None, icmp, (!icmp).then_some("timeout")),
            o("http", None, http.is_none(), http),
        ];
        SourceLine {
            node: node.into(),
            zone: None,
            answered: true,
            error: None,
            ok: checks.iter().all(|c| c.ok),
            elapsed_seconds: 0.1,
            checks,
            context: vec![
                o(
                    "icmp",
                    Some("icmp_pod"),
                    ctx_pod,
                    (!ctx_pod).then_some("timeout"),
                ),
                o(
                    "icmp",
                    Some("icmp_node"),
                    ctx_node,
                    (!ctx_node).then_some("timeout"),
                ),
            ],
        }
    }

    fn target() -> Resolved {
        Resolved {
            label: "198.19.3.11:8080".into(),
            ip: "198.19.3.11".parse().unwrap(),
            ips: Vec::new(),
            port: Some(8080),
            node: Some("node-3".into()),
        }
    }

    fn causes(v: &Verdict) -> Vec<String> {
        v.diagnosis
            .findings
            .iter()
            .map(|f| f.cause.as_str().to_string())
            .collect()
    }

    #[test]
    fn the_lab_faults_from_one_shot_answers() {
        let set = parse(SET).unwrap();
        let all = ["node-1", "node-2", "node-3", "node-4"];
        // (name, lines, reachable, causes)
        type Case = (&'static str, Vec<SourceLine>, bool, Vec<&'static str>);
        let table: Vec<Case> = vec![
            (
                "healthy",
                all.iter()
                    .map(|n| line(n, true, None, true, true))
                    .collect(),
                true,
                vec![],
            ),
            (
                "policy: SYN dropped, ICMP fine, from every node",
                all.iter()
                    .map(|n| line(n, true, Some("timeout"), true, true))
                    .collect(),
                false,
                vec!["policy"],
            ),
            (
                "reject: refused from every node",
                all.iter()
                    .map(|n| line(n, true, Some("refused"), true, true))
                    .collect(),
                false,
                vec!["application"],
            ),
            (
                "cni on node-3: pods there dead, its node IP fine, its agent silent",
                all.iter()
                    .map(|n| {
                        if *n == "node-3" {
                            SourceLine::silent(n, None, "timeout".into(), 2.0)
                        } else {
                            line(n, false, Some("timeout"), false, true)
                        }
                    })
                    .collect(),
                false,
                vec!["cni"],
            ),
            (
                "node-3 down: everything on it dead",
                all.iter()
                    .map(|n| {
                        if *n == "node-3" {
                            SourceLine::silent(n, None, "timeout".into(), 2.0)
                        } else {
                            line(n, false, Some("timeout"), false, false)
                        }
                    })
                    .collect(),
                false,
                vec!["node_down"],
            ),
        ];
        for (name, lines, reachable, want) in table {
            let v = verdict(&target(), &lines, &set, None, "node-1");
            assert_eq!(v.reachable, reachable, "{name}");
            assert_eq!(causes(&v), want, "{name}: {}", v.diagnosis);
            assert_eq!(v.diagnosis.healthy, want.is_empty(), "{name}");
            for f in &v.diagnosis.findings {
                assert!(!f.evidence.is_empty() && !f.next_steps.is_empty(), "{name}");
            }
            if !want.is_empty() {
                let f = &v.diagnosis.findings[0];
                assert!(
                    f.targets.contains(&"198.19.3.11:8080".to_string())
                        || f.nodes.contains(&"node-3".to_string()),
                    "{name}: {f:?}"
                );
            }
        }
    }

    #[test]
    fn kubernetes_facts_sharpen_the_verdict() {
        use crate::diagnosis::{PodEvent, PodFacts};
        let set = parse(SET).unwrap();
        let all = ["node-1", "node-2", "node-4"];
        // The pod IP is dead from everywhere while node-3's other pods answer.
        let dead: Vec<SourceLine> = all
            .iter()
            .map(|n| line(n, false, Some("timeout"), true, true))
            .collect();
        let pod = |ready: bool, events: Vec<PodEvent>| KubeFacts {
            pods: vec![PodFacts {
                namespace: "shop".into(),
                name: "web-7".into(),
                node: Some("node-3".into()),
                ip: Some("198.19.3.11".parse().unwrap()),
                phase: Some("Running".into()),
                ready: Some(ready),
                target: None,
                events,
            }],
            ..KubeFacts::default()
        };
        let sandbox = vec![PodEvent {
            reason: "FailedCreatePodSandbox".into(),
            message: Some("failed to set up pod network".into()),
            count: Some(4),
        }];
        for (facts, want, text) in [
            (None, "cni", "pod IP does not answer"),
            (Some(pod(true, sandbox)), "cni", "sandbox creation failed"),
            (Some(pod(false, vec![])), "application", "not running/Ready"),
        ] {
            let v = verdict(&target(), &dead, &set, facts, "node-1");
            assert_eq!(causes(&v), [want], "{}", v.diagnosis);
            assert!(
                v.diagnosis.findings[0].summary.contains(text),
                "{}",
                v.diagnosis
            );
        }
    }

    #[test]
    fn an_isolated_asked_agent_says_so() {
        let set = parse(SET).unwrap();
        let silent = |n: &str| SourceLine::silent(n, None, "timeout".into(), 3.0);
        // cni on node-1, asked through node-1: it reaches nothing, nobody answers it.
        let cut_off = vec![
            line("node-1", false, Some("timeout"), false, false),
            silent("node-2"),
            silent("node-3"),
            silent("node-4"),
        ];
        let v = verdict(&target(), &cut_off, &set, None, "node-1");
        assert!(
            v.caution
                .as_deref()
                .is_some_and(|c| c.contains("the fault may be on node-1 itself")),
            "{v:?}"
        );
        // Not when another agent answered, when node-1's own checks pass, or with one other source.
        let mut one_answers = cut_off.clone();
        one_answers[1] = line("node-2", false, Some("timeout"), false, false);
        let mut own_ok = cut_off.clone();
        own_ok[0] = line("node-1", true, None, true, true);
        for lines in [one_answers, own_ok, cut_off[..2].to_vec()] {
            assert_eq!(
                verdict(&target(), &lines, &set, None, "node-1").caution,
                None
            );
        }
    }

    #[test]
    fn a_silent_zone_is_pointed_out() {
        let set = parse(SET).unwrap();
        let silent = |n: &str| SourceLine::silent(n, None, "timeout".into(), 3.0);
        // zone-a: node-1, node-3; zone-b: node-2, node-4.
        let partition = vec![
            line("node-1", true, None, true, true),
            silent("node-2"),
            line("node-3", true, None, true, true),
            silent("node-4"),
        ];
        let v = verdict(&target(), &partition, &set, None, "node-1");
        let c = v.caution.expect("a caution");
        assert!(c.contains("every agent in zone-b (node-2, node-4) is silent while every agent in zone-a answered"), "{c}");
        // One zone-b agent answering, or a zone-a agent silent: no such note.
        let mut one = partition.clone();
        one[1] = line("node-2", true, None, true, true);
        let mut mate = partition.clone();
        mate[2] = silent("node-3");
        for lines in [one, mate] {
            let v = verdict(&target(), &lines, &set, None, "node-1");
            assert!(
                v.caution.as_deref().is_none_or(|c| !c.contains("zones")),
                "{v:?}"
            );
        }
    }

    #[test]
    fn partial_answers_are_not_reachable() {
        let set = parse(SET).unwrap();
        let lines = vec![
            line("node-1", true, None, true, true),
            SourceLine::silent("node-2", None, "refused".into(), 0.0),
        ];
        let v = verdict(&target(), &lines, &set, None, "node-1");
        assert!(!v.reachable);
        assert_eq!(v.reachable_from, ["node-1"]);
        assert_eq!(v.unreachable_from, ["node-2"]);
        assert_eq!(v.agents_unreachable, ["node-2"]);
        assert!(!verdict(&target(), &[], &set, None, "node-1").reachable);
    }

    /// A source's answer to `dns/NAME`: the query's result (`ok` or a failure label), or
    /// silence.
    fn dns_line(node: &str, zone: &str, result: Option<&str>) -> SourceLine {
        let Some(result) = result else {
            return SourceLine::silent(node, Some(zone.into()), "timeout".into(), 2.0);
        };
        let ok = result == "ok";
        let c = CheckOutcome {
            check: "dns".into(),
            layer: None,
            ip: "0.0.0.0".parse().unwrap(),
            port: None,
            result: Some(result.into()),
            answers: ok.then_some(1),
            record_type: Some("A".into()),
            family: None,
            error_text: (!ok).then(|| format!("{result}: no answer within 500 ms")),
            ..o("dns", None, ok, (!ok).then_some(result))
        };
        SourceLine {
            node: node.into(),
            zone: Some(zone.into()),
            answered: true,
            error: None,
            ok,
            elapsed_seconds: 0.01,
            checks: vec![c],
            context: Vec::new(),
        }
    }

    fn dns_target() -> Resolved {
        Resolved {
            label: "dns/web.shop.svc.cluster.local.".into(),
            ip: "0.0.0.0".parse().unwrap(),
            ips: Vec::new(),
            port: None,
            node: None,
        }
    }

    /// `dns/NAME` through the engine's per-source checks reader, the pod network's evidence
    /// being the fan-out itself: (sources as (node, zone, result), causes, where, what the
    /// summary says).
    #[test]
    fn dns_verdicts_from_one_shot_answers() {
        let set = parse(SET).unwrap();
        type Row<'a> = (
            &'a [(&'a str, &'a str, Option<&'a str>)],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a str,
        );
        // (sources, causes, nodes, zones, part of the first summary)
        let table: &[Row] = &[
            // Resolves everywhere: healthy.
            (
                &[
                    ("node-1", "zone-a", Some("ok")),
                    ("node-2", "zone-b", Some("ok")),
                    ("node-3", "zone-a", Some("ok")),
                ],
                &[],
                &[],
                &[],
                "",
            ),
            // One node times out while its agent answered the fan-out: dns at that node.
            (
                &[
                    ("node-1", "zone-a", Some("ok")),
                    ("node-2", "zone-b", Some("timeout")),
                    ("node-3", "zone-a", Some("ok")),
                    ("node-4", "zone-b", Some("ok")),
                ],
                &["dns"],
                &["node-2"],
                &[],
                "cluster DNS fails from node-2",
            ),
            // A whole zone fails while the other resolves: dns in that zone.
            (
                &[
                    ("node-1", "zone-a", Some("ok")),
                    ("node-2", "zone-b", Some("servfail")),
                    ("node-3", "zone-a", Some("ok")),
                    ("node-4", "zone-b", Some("timeout")),
                ],
                &["dns"],
                &[],
                &["zone-b"],
                "cluster DNS fails from zone-b",
            ),
            // Every node: NXDOMAIN everywhere reads as the DNS itself (cluster-wide).
            (
                &[
                    ("node-1", "zone-a", Some("nxdomain")),
                    ("node-2", "zone-b", Some("nxdomain")),
                    ("node-3", "zone-a", Some("nxdomain")),
                ],
                &["dns"],
                &[],
                &[],
                "cluster DNS fails from 3 of 3 nodes",
            ),
            // A silent agent is no evidence about its DNS: no finding for it, the rest resolve.
            (
                &[
                    ("node-1", "zone-a", Some("ok")),
                    ("node-2", "zone-b", None),
                    ("node-3", "zone-a", Some("ok")),
                ],
                &[],
                &[],
                &[],
                "",
            ),
            // The asked agent fails and reached no other agent: its pod network is not known
            // to work, so its failure is not called DNS.
            (
                &[
                    ("node-1", "zone-a", Some("timeout")),
                    ("node-2", "zone-b", None),
                    ("node-3", "zone-a", None),
                ],
                &[],
                &[],
                &[],
                "",
            ),
        ];
        for (srcs, want_causes, nodes, zones, summary) in table {
            let lines: Vec<SourceLine> = srcs.iter().map(|(n, z, r)| dns_line(n, z, *r)).collect();
            let v = verdict(&dns_target(), &lines, &set, None, "node-1");
            let dns: Vec<&crate::diagnosis::Finding> = v
                .diagnosis
                .findings
                .iter()
                .filter(|f| f.cause == crate::diagnosis::Cause::Dns)
                .collect();
            let got: Vec<String> = dns.iter().map(|f| f.cause.as_str().to_string()).collect();
            assert_eq!(got, *want_causes, "{srcs:?}: {:#?}", v.diagnosis.findings);
            assert_eq!(
                causes(&v),
                *want_causes,
                "{srcs:?}: {:#?}",
                v.diagnosis.findings
            );
            let failing = srcs.iter().filter(|(_, _, r)| *r != Some("ok")).count();
            assert_eq!(v.reachable, failing == 0, "{srcs:?}");
            assert_eq!(v.unreachable_from.len(), failing, "{srcs:?}");
            if let Some(f) = dns.first() {
                assert_eq!(f.nodes, *nodes, "{srcs:?}");
                assert_eq!(f.zones, *zones, "{srcs:?}");
                assert!(f.summary.contains(summary), "{srcs:?}: {}", f.summary);
                assert!(
                    f.summary.contains("web.shop.svc.cluster.local."),
                    "{}",
                    f.summary
                );
            }
        }
    }

    /// What a peer's answer carries is bounded before it reaches a finding.
    #[test]
    fn a_peers_dns_answer_is_not_trusted() {
        let mut l = dns_line("node-2", "zone-b", Some("timeout"));
        l.checks[0].result = Some("<script>".repeat(50));
        l.checks[0].error = None;
        l.checks[0].error_text = Some(format!("x\n{}", "y".repeat(5000)));
        let s = check_stats("n.", &l.checks[0]);
        assert_eq!(s.last_result.as_deref(), Some("other"));
        let e = s.last_error.unwrap();
        assert!(e.detail.len() <= MAX_CHECK_DETAIL && !e.detail.contains('\n'));
    }

    /// `svc/NAMESPACE/NAME`: the ClusterIP's checks read as the `service` check.
    #[test]
    fn service_verdicts_from_one_shot_answers() {
        let set = parse(SET).unwrap();
        let target = Resolved {
            label: "svc/shop/web".into(),
            ip: "10.96.0.20".parse().unwrap(),
            ips: Vec::new(),
            port: Some(80),
            node: None,
        };
        let line = |node: &str, zone: &str, ok: bool| SourceLine {
            node: node.into(),
            zone: Some(zone.into()),
            answered: true,
            error: None,
            ok,
            elapsed_seconds: 0.01,
            checks: vec![o("tcp", None, ok, (!ok).then_some("timeout"))],
            context: Vec::new(),
        };
        // (sources ok?, causes, nodes, part of the summary)
        type Row<'a> = (&'a [bool], &'a [&'a str], &'a [&'a str], &'a str);
        let table: &[Row] = &[
            (&[true, true, true, true], &[], &[], ""),
            (
                &[true, false, true, true],
                &["service"],
                &["node-2"],
                "node-2's Service rules (kube-proxy) are broken: ClusterIP 10.96.0.20:80 fails from node-2 while the agents there answer by pod IP (svc/shop/web)",
            ),
            (
                &[false, false, false, false],
                &["service"],
                &[],
                "the Service at ClusterIP 10.96.0.20:80 fails from 4 of 4 nodes",
            ),
        ];
        let zones = ["zone-a", "zone-b", "zone-a", "zone-b"];
        for (oks, want, nodes, summary) in table {
            let lines: Vec<SourceLine> = oks
                .iter()
                .enumerate()
                .map(|(i, ok)| line(&format!("node-{}", i + 1), zones[i], *ok))
                .collect();
            let v = verdict(&target, &lines, &set, None, "node-1");
            assert_eq!(causes(&v), *want, "{oks:?}: {:#?}", v.diagnosis.findings);
            assert_eq!(v.reachable, oks.iter().all(|o| *o));
            if let Some(f) = v.diagnosis.findings.first() {
                assert_eq!(f.nodes, *nodes);
                assert!(f.summary.contains(summary), "{}", f.summary);
                assert!(
                    f.evidence.iter().all(|e| !e.contains("/ping")),
                    "{:?}",
                    f.evidence
                );
            }
        }
    }
}
