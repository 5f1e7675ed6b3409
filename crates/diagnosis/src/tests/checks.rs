//! The per-source checks (`service`, `dns`) on top of the network engine: which failing
//! checks become `service` / `dns` findings, at which place, and which belong to a network
//! fault already found.

use super::helpers::*;
use super::scenarios::*;
use crate::input::*;
use crate::report::Cause;
use crate::{diagnose_inputs, Params};

const SVC: &str = "198.18.96.20:9464";
const NAME: &str = "meshprobe.mp.svc.cluster.local.";

fn check_ok(target: &str) -> CheckStats {
    CheckStats {
        target: target.into(),
        reachable: Some(true),
        consecutive_failures: 0,
        probes: 10,
        successes: 10,
        success_ratio: Some(1.0),
        last_result: Some("ok".into()),
        last_error: None,
        last_probe_age_seconds: Some(0.3),
    }
}

/// Failing its last `n` runs of 10 (the rest answered).
fn check_failing(target: &str, n: u32, kind: &str) -> CheckStats {
    CheckStats {
        reachable: Some(false),
        consecutive_failures: n,
        successes: 10 - n,
        success_ratio: Some(f64::from(10 - n) / 10.0),
        last_result: Some(kind.into()),
        last_error: Some(CheckErrorInfo {
            kind: kind.into(),
            detail: String::new(),
            age_seconds: Some(0.3),
        }),
        ..check_ok(target)
    }
}

/// Each node's checks: `(node, service failing runs, dns failing runs)` of the last 10 (a
/// long failure, 8, is down even while another fault stands), 0 = answering.
type Checks = &'static [(usize, u32, u32)];

fn inputs(scenario: Option<Scenario>, failing: Checks) -> Inputs {
    let mut m = Mesh::new();
    if let Some(s) = scenario {
        s(&mut m);
    }
    let mut inp = m.inputs();
    for a in &mut inp.agents {
        let i: usize = a.node.trim_start_matches("node-").parse().unwrap();
        let (svc, dns) = failing
            .iter()
            .find(|(n, _, _)| *n == i)
            .map_or((0, 0), |&(_, s, d)| (s, d));
        let of = |target: &str, n: u32, kind: &str| {
            if n == 0 {
                check_ok(target)
            } else {
                check_failing(target, n, kind)
            }
        };
        a.checks.insert("service".into(), of(SVC, svc, "timeout"));
        a.checks.insert("dns".into(), of(NAME, dns, "timeout"));
    }
    inp
}

#[test]
fn checks_are_read_above_the_pod_network() {
    let svc3 = || ex(Cause::Service, &["node-3"]);
    let dns3 = || ex(Cause::Dns, &["node-3"]);
    type Case = (&'static str, Option<Scenario>, Checks, Vec<Expect>);
    fn case(label: &'static str, s: Option<Scenario>, failing: Checks, want: Vec<Expect>) -> Case {
        (label, s, failing, want)
    }
    let cases: Vec<Case> = vec![
        case("all answering", None, &[], vec![]),
        case("one failed run is no verdict", None, &[(3, 1, 1)], vec![]),
        // kube-proxy's rules gone on node-3: its Service and its DNS (a ClusterIP too) fail.
        case("kube-proxy node-3", None, &[(3, 3, 3)], vec![svc3()]),
        // Stale endpoints on node-3: the Service fails, DNS (other endpoints) answers.
        case("kube-proxy node-3 stale", None, &[(3, 3, 0)], vec![svc3()]),
        case("dns-from node-3", None, &[(3, 0, 3)], vec![dns3()]),
        case(
            "dns-down: every node",
            None,
            &[(1, 0, 3), (2, 0, 3), (3, 0, 3), (4, 0, 3)],
            vec![ex(Cause::Dns, &[])],
        ),
        case(
            "a Service without endpoints: every node",
            None,
            &[(1, 3, 0), (2, 3, 0), (3, 3, 0), (4, 3, 0)],
            vec![ex(Cause::Service, &[])],
        ),
        // node-3's pod network is down: its checks fail with it, nothing more to say.
        case(
            "cni node-3",
            Some(node3_cni),
            &[(3, 8, 8)],
            vec![ex(Cause::Cni, &["node-3"])],
        ),
        // node-3 down, and with it the DNS pod: every other node's DNS fails behind the
        // network fault (where the DNS pods run is not known).
        case(
            "node-3 down with the DNS pod",
            Some(node3_down),
            &[(1, 0, 8), (2, 0, 8), (4, 0, 8)],
            vec![ex(Cause::NodeDown, &["node-3"])],
        ),
        // A route fault at node-1 and node-1's DNS failing: the route's, not DNS'.
        case(
            "route node-1 to node-3, node-1's checks fail",
            Some(route_1_to_3),
            &[(1, 8, 8)],
            vec![ex(Cause::Routing, &["node-1"])],
        ),
    ];
    for (label, scenario, failing, want) in cases {
        let d = diagnose_inputs(&inputs(scenario, failing), &Params::default());
        check(label, &d, &want);
    }
}

#[test]
fn a_zone_whose_nodes_all_fail_is_named() {
    let d = diagnose_inputs(&inputs(None, &[(3, 0, 3), (4, 0, 3)]), &Params::default());
    check("dns from zone-b", &d, &[ex(Cause::Dns, &[])]);
    assert_eq!(d.findings[0].zones, ["zone-b"], "{}", d.to_text());
    assert!(d.findings[0].summary.contains("zone-b"), "{}", d.to_text());
}

#[test]
fn the_service_finding_says_why_and_what_next() {
    let d = diagnose_inputs(&inputs(None, &[(3, 3, 3)]), &Params::default());
    let f = &d.findings[0];
    let text = d.to_text();
    assert!(
        f.summary.contains(SVC) && f.summary.contains("node-3"),
        "{text}"
    );
    assert!(
        f.evidence
            .iter()
            .any(|e| e.contains("reaches 3/3 agents by pod IP")),
        "{text}"
    );
    assert!(
        f.evidence
            .iter()
            .any(|e| e.contains(NAME) && e.contains("too")),
        "the DNS failure folded in: {text}"
    );
    assert!(
        f.next_steps.iter().any(|s| s.contains("kube-proxy")),
        "{text}"
    );
    assert_eq!(f.family, None);
}

/// While another fault stands, a check that mostly answered is not down: a VIP drawing a
/// dead backend now and then, or loss, fails single runs.
#[test]
fn in_a_fault_a_mostly_answering_check_is_not_down() {
    let mut inp = inputs(Some(node3_down), &[]);
    for a in &mut inp.agents {
        if a.node == "node-2" {
            // 2 of its last runs failed, 8 of 10 answered.
            a.checks
                .insert("service".into(), check_failing(SVC, 2, "timeout"));
        }
    }
    let d = diagnose_inputs(&inp, &Params::default());
    check(
        "node-3 down, node-2's VIP drew it twice",
        &d,
        &[ex(Cause::NodeDown, &["node-3"])],
    );
}

/// A stale check (its source stopped running it) and a source still in its first rounds say
/// nothing.
#[test]
fn stale_checks_and_new_sources_say_nothing() {
    let mut inp = inputs(None, &[(3, 0, 3)]);
    for a in &mut inp.agents {
        if a.node == "node-3" {
            a.checks.get_mut("dns").unwrap().last_probe_age_seconds = Some(60.0);
        }
    }
    check("stale", &diagnose_inputs(&inp, &Params::default()), &[]);
    let mut inp = inputs(None, &[(3, 0, 3)]);
    for a in &mut inp.agents {
        if a.node == "node-3" {
            a.rounds = Some(1);
        }
    }
    check(
        "first round",
        &diagnose_inputs(&inp, &Params::default()),
        &[],
    );
}

/// Answering sources are contrasts only when they ran since the failures began and have not
/// failed since. Right after `dns-down` clears, node-2 and node-3 have resolved again while
/// node-1's and node-4's checks have not re-run: not "DNS fails from node-1 and node-4" (the
/// lab read that for 0.3 s) but the same cluster-wide reading until they run. At a fault's
/// onset, others not run since say nothing yet.
#[test]
fn answering_sources_are_contrasts_only_when_fresh() {
    let mut inp = inputs(None, &[(1, 0, 8), (4, 0, 8)]);
    for a in &mut inp.agents {
        if a.node == "node-2" || a.node == "node-3" {
            let c = a.checks.get_mut("dns").unwrap();
            c.last_error = Some(CheckErrorInfo {
                kind: "timeout".into(),
                detail: String::new(),
                age_seconds: Some(0.5),
            });
        }
    }
    let d = diagnose_inputs(&inp, &Params::default());
    check("dns-down clearing", &d, &[ex(Cause::Dns, &[])]);

    let mut inp = inputs(None, &[(3, 0, 2)]);
    for a in &mut inp.agents {
        if a.node != "node-3" {
            a.checks.get_mut("dns").unwrap().last_probe_age_seconds = Some(1.5);
        }
    }
    check(
        "onset: the others last ran before node-3's failures began",
        &diagnose_inputs(&inp, &Params::default()),
        &[],
    );
    // The same a round later: they ran since, and resolve.
    let inp = inputs(None, &[(3, 0, 2)]);
    check(
        "a round later",
        &diagnose_inputs(&inp, &Params::default()),
        &[ex(Cause::Dns, &["node-3"])],
    );
}

/// Right after `cni node-3` clears (CI, dual lab, the next fault's first poll): node-3's agent
/// reaches every agent again, but its `service` check has not run since it failed 6 times
/// during the fault. Its peers' probes failed within that streak: the pod network did not
/// answer throughout, so no `service` finding; once the check answers, nothing to say.
#[test]
fn a_check_that_failed_while_the_pod_network_did_is_not_the_layers() {
    let mut inp = inputs(None, &[(3, 6, 0)]);
    for a in &mut inp.agents {
        if a.node == "node-3" {
            for p in &mut a.peers {
                for l in p.layers.values_mut() {
                    l.last_error_age_seconds = Some(0.8);
                }
            }
        }
    }
    check(
        "cni node-3 just cleared",
        &diagnose_inputs(&inp, &Params::default()),
        &[],
    );
    // The same check with the peers' errors older than its streak: the pod network answered
    // all along, the ClusterIP did not.
    for a in &mut inp.agents {
        if a.node == "node-3" {
            for p in &mut a.peers {
                for l in p.layers.values_mut() {
                    l.last_error_age_seconds = Some(30.0);
                }
            }
        }
    }
    check(
        "errors from long before",
        &diagnose_inputs(&inp, &Params::default()),
        &[ex(Cause::Service, &["node-3"])],
    );
}

/// At a fault's onset, before its finding (CI, vpc lab, `cni node-3` at +1.6 s): node-1's
/// `service` check drew node-3's dead agent behind the VIP twice in a row (8 of 10 runs
/// answered) while node-3's cells already failed: no finding for it. The same check failing
/// that way with nothing else failing is the Service's.
#[test]
fn a_vip_drawing_a_broken_backend_at_a_faults_onset_is_not_the_service() {
    let mut inp = inputs(None, &[(1, 2, 0)]);
    for a in &mut inp.agents {
        if a.node == "node-2" {
            let p = a.peers.iter_mut().find(|p| p.node == "node-3").unwrap();
            p.layers.get_mut("icmp_pod").unwrap().reachable = Some(false);
        }
    }
    check(
        "onset elsewhere",
        &diagnose_inputs(&inp, &Params::default()),
        &[],
    );
    check(
        "nothing else failing",
        &diagnose_inputs(&inputs(None, &[(1, 2, 0)]), &Params::default()),
        &[ex(Cause::Service, &["node-1"])],
    );
}

const API_VIP: &str = "198.18.96.1:443";
const API_EPS: &str = "198.18.1.11:6443";

/// Each node's checks with the API server's: `(node, service, dns, apiserver,
/// apiserver_endpoints)` failing runs of the last 10, 0 = answering.
type ApiChecks = &'static [(usize, u32, u32, u32, u32)];

fn api_inputs(scenario: Option<Scenario>, failing: ApiChecks) -> Inputs {
    let plain: Vec<(usize, u32, u32)> = failing.iter().map(|&(n, s, d, _, _)| (n, s, d)).collect();
    let mut inp = inputs(scenario, Box::leak(plain.into_boxed_slice()));
    for a in &mut inp.agents {
        let i: usize = a.node.trim_start_matches("node-").parse().unwrap();
        let (vip, eps) = failing
            .iter()
            .find(|f| f.0 == i)
            .map_or((0, 0), |&(_, _, _, v, e)| (v, e));
        let of = |target: &str, n: u32, kind: &str| {
            if n == 0 {
                check_ok(target)
            } else {
                check_failing(target, n, kind)
            }
        };
        a.checks
            .insert("apiserver".into(), of(API_VIP, vip, "timeout"));
        a.checks
            .insert("apiserver_endpoints".into(), of(API_EPS, eps, "timeout"));
    }
    inp
}

/// The API server's checks: through its ClusterIP one more Service check (kube-proxy's rules
/// gone fail it with the agents' Service: one `service` finding); at its endpoints, from some
/// nodes `apiserver` there, from most `apiserver` without nodes; behind a network fault
/// nothing more.
#[test]
fn the_api_servers_checks_are_read_as_service_and_apiserver() {
    let z = &[];
    type Case = (&'static str, Option<Scenario>, ApiChecks, Vec<Expect>);
    let cases: Vec<Case> = vec![
        ("all answering", None, &[], vec![]),
        (
            "kube-proxy node-3: both ClusterIPs and DNS fail, the endpoints answer",
            None,
            &[(3, 3, 3, 3, 0)],
            vec![ex(Cause::Service, &["node-3"])],
        ),
        // kube-proxy node-3 while the agents' Service check has failed once only (the checks
        // run in different slots): the API server's ClusterIP and DNS down, one `service`.
        (
            "kube-proxy node-3, the service check one run behind",
            None,
            &[(3, 1, 3, 3, 0)],
            vec![ex(Cause::Service, &["node-3"])],
        ),
        (
            "only the kubernetes Service's rules on node-3",
            None,
            &[(3, 0, 0, 3, 0)],
            vec![ex(Cause::Service, &["node-3"])],
        ),
        (
            "node-3 cut off from the control plane",
            None,
            &[(3, 0, 0, 3, 3)],
            vec![ex(Cause::Apiserver, &["node-3"])],
        ),
        (
            "the API server not ready: every node",
            None,
            &[
                (1, 0, 0, 3, 3),
                (2, 0, 0, 3, 3),
                (3, 0, 0, 3, 3),
                (4, 0, 0, 3, 3),
            ],
            vec![ex(Cause::Apiserver, z)],
        ),
        (
            "cni node-3: its checks fail with its pod network",
            Some(node3_cni),
            &[(3, 8, 8, 8, 8)],
            vec![ex(Cause::Cni, &["node-3"])],
        ),
    ];
    for (label, scenario, failing, want) in cases {
        let d = diagnose_inputs(&api_inputs(scenario, failing), &Params::default());
        check(label, &d, &want);
    }

    // kube-proxy node-3: one finding, the API server's failure and its endpoints answering in
    // its evidence.
    let d = diagnose_inputs(&api_inputs(None, &[(3, 3, 3, 3, 0)]), &Params::default());
    let text = d.to_text();
    let f = &d.findings[0];
    assert!(f.summary.contains(SVC), "{text}");
    for want in [
        format!("the `apiserver` check (TCP + TLS + GET /readyz to the API server's ClusterIP {API_VIP}) failed on node-3's last 3 runs"),
        format!("the API server answers at its endpoints ({API_EPS}) from node-3"),
    ] {
        assert!(f.evidence.iter().any(|e| e.contains(&want)), "{want}\n{text}");
    }
    // Only the API server's ClusterIP: a `service` finding of its own, worded for it.
    let d = diagnose_inputs(&api_inputs(None, &[(3, 0, 0, 3, 0)]), &Params::default());
    let text = d.to_text();
    assert!(
        d.findings[0]
            .summary
            .contains(&format!("API server's ClusterIP {API_VIP}")),
        "{text}"
    );
    assert!(
        d.findings[0]
            .evidence
            .iter()
            .any(|e| e.contains("answers at its endpoints")),
        "{text}"
    );
    // Cut off: the endpoints named, the path to the control plane as the cause.
    let d = diagnose_inputs(&api_inputs(None, &[(3, 0, 0, 3, 3)]), &Params::default());
    let text = d.to_text();
    let f = &d.findings[0];
    assert!(
        f.summary.contains(API_EPS) && f.summary.contains("control plane"),
        "{text}"
    );
    assert!(
        f.evidence
            .iter()
            .any(|e| e.contains("reaches 3/3 agents by pod IP")),
        "{text}"
    );
    assert!(
        f.evidence
            .iter()
            .any(|e| e.contains("ClusterIP fails from node-3 too")),
        "{text}"
    );
    assert!(text.contains("[apiserver]"), "{text}");
    // A whole zone cut off is named as the zone.
    let d = diagnose_inputs(
        &api_inputs(None, &[(3, 0, 0, 3, 3), (4, 0, 0, 3, 3)]),
        &Params::default(),
    );
    check("zone-b cut off", &d, &[ex(Cause::Apiserver, z)]);
    assert_eq!(d.findings[0].zones, ["zone-b"], "{}", d.to_text());
}
