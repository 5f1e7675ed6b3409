//! Onset: the first second of a fault.
//!
//! During the first second of a fault some (pair, layer) cells have been probed since it began
//! and fail, others still show their last success from before. Failing cells here began to fail
//! 0.6 s ago (`failing_for_seconds`); every other cell was last probed `ok_age` s ago: 0.9
//! (before the failures began: stale) or 0.2 (after: fresh). Stale successes must not be read
//! as contrasts (pod IP fails, node IP "answers" → cni; one source fails, the others
//! "succeed" → routing): no finding yet, or the right one. Fresh ones are contrasts, as before.

use std::collections::BTreeSet;

use super::helpers::*;
use super::scenarios::*;
use crate::diagnose;
use crate::input::*;
use crate::matrix::Matrix;
use crate::report::{Cause, Diagnosis};

/// Failing since 0.6 s: the first failure and its confirmation.
fn onset_down(e: ErrorInfo) -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 2,
        successes: 8,
        received: 8,
        success_ratio: Some(0.8),
        loss_ratio: Some(0.2),
        last_error: Some(e),
        last_error_age_seconds: Some(0.05),
        last_probe_age_seconds: Some(0.05),
        failing_for_seconds: Some(0.6),
        ..ok()
    }
}

fn onset_timeout() -> LayerStats {
    onset_down(err("timeout"))
}

/// Every peer and target cell answering, last probed `age` s ago.
fn all_ok_at(m: &mut Mesh, age: f64) {
    let st = LayerStats {
        last_probe_age_seconds: Some(age),
        ..ok()
    };
    for s in 1..=N {
        for d in 1..=N {
            if s != d {
                m.p(s, d, &PEER_LAYERS, st.clone());
            }
            m.t(s, d, &TARGET_LAYERS, st.clone());
        }
    }
}

/// zone-a | zone-b cut, 0.6 s in: node-1 → node-3 and node-4 → node-1 fail on every layer;
/// node-1 → node-4, node-2 → node-4 and node-2 → node-3 have seen their pod IPs fail but not
/// yet probed the node IPs again; the other cross-zone pairs not probed yet.
fn partition_onset(m: &mut Mesh) {
    m.p(1, 3, &PEER_LAYERS, onset_timeout());
    m.p(4, 1, &PEER_LAYERS, onset_timeout());
    for (s, d) in [(1, 4), (2, 4), (2, 3)] {
        m.p(s, d, &["icmp_pod", "http"], onset_timeout());
    }
    m.t(2, 3, &TARGET_LAYERS, onset_timeout());
    m.t(1, 4, &["icmp_pod"], onset_timeout());
}

/// The same cut as the diagnosing agent in zone-a sees it: zone-b's agents no longer answer,
/// node-3 fails from both zone-a sources, node-4 has not been probed since (in the lab it read
/// as `node_down` node-2 — the lab's zone-b — for half a second).
fn partition_onset_cut_off(m: &mut Mesh) {
    for s in [1, 2] {
        m.p(s, 3, &PEER_LAYERS, onset_timeout());
        m.t(s, 3, &TARGET_LAYERS, onset_timeout());
    }
    m.missing.insert(3);
    m.missing.insert(4);
}

/// The same while node-4's agent still answers with its last document (all its probes
/// succeeded before the cut), and node-2's window still holds an earlier outage's residue on
/// the node IP (unknown, last probe a success from before).
fn node_down_onset_reporting(m: &mut Mesh) {
    let age = m.peer[&(2, 4, "icmp_node")].last_probe_age_seconds;
    m.p(1, 4, &PEER_LAYERS, onset_timeout());
    m.p(2, 4, &["icmp_pod", "http"], onset_timeout());
    m.p(
        2,
        4,
        &["icmp_node"],
        LayerStats {
            successes: 7,
            sent: 30,
            received: 21,
            success_ratio: Some(0.7),
            loss_ratio: Some(0.3),
            last_error: Some(err("timeout")),
            last_error_age_seconds: Some(5.0),
            last_probe_age_seconds: age,
            ..ok()
        },
    );
    m.t(1, 4, &TARGET_LAYERS, onset_timeout());
    m.t(2, 4, &TARGET_LAYERS, onset_timeout());
}

/// node-4 down, 0.6 s in (its agent no longer answers): node-1 sees it all dead, node-2 its
/// pod IP and target, node-3 nothing yet.
fn node_down_onset(m: &mut Mesh) {
    m.p(1, 4, &PEER_LAYERS, onset_timeout());
    m.p(2, 4, &["icmp_pod", "http"], onset_timeout());
    m.t(1, 4, &TARGET_LAYERS, onset_timeout());
    m.t(2, 4, &TARGET_LAYERS, onset_timeout());
    m.missing.insert(4);
}

/// node-3's pod network broken, 0.6 s in: node-1 saw its pod IP fail (node IP not probed
/// since), node-3's agent failed to reach node-1 on every layer; the rest not probed yet.
fn cni_onset(m: &mut Mesh) {
    m.p(1, 3, &["icmp_pod", "http"], onset_timeout());
    m.p(3, 1, &PEER_LAYERS, onset_timeout());
}

/// node-1's route to node-3's pod subnet gone, 0.6 s in: node-3's probes to node-1 time out
/// (the replies have no route), node-1 has not probed node-3's pod IP since.
fn route_onset(m: &mut Mesh) {
    m.p(3, 1, &PEER_LAYERS, onset_timeout());
    m.t(3, 1, &TARGET_LAYERS, onset_timeout());
}

/// The same, once node-1 probed node-3's pod IP and got its "net unreachable": the right
/// finding at once, whatever the other pairs show.
fn route_onset_answered(m: &mut Mesh) {
    route_onset(m);
    let nu = onset_down(err_from("net_unreachable", "198.19.1.1"));
    m.p(1, 3, &["icmp_pod", "http"], nu.clone());
    m.t(1, 3, &TARGET_LAYERS, nu);
}

/// web-node-2's port dropped, 0.85 s in: connections from node-1 and node-3 have timed out
/// three times (first failure, its confirmation, the next round); node-2 and node-4 have not
/// tried since.
fn policy_onset(m: &mut Mesh) {
    let st = LayerStats {
        consecutive_failures: 3,
        successes: 7,
        received: 7,
        success_ratio: Some(0.7),
        loss_ratio: Some(0.3),
        failing_for_seconds: Some(0.85),
        ..onset_timeout()
    };
    for s in [1, 3] {
        m.t(s, 2, &["http"], st.clone());
    }
}

/// The mesh with every `failing_for_seconds` removed: what an older agent gives the engine
/// (directly or through Prometheus).
fn without_onsets(m: &Mesh) -> Mesh {
    let mut m = m.clone();
    for st in m.peer.values_mut().chain(m.target.values_mut()) {
        st.failing_for_seconds = None;
    }
    m
}

fn summary(d: &Diagnosis) -> Vec<(Cause, Vec<String>, Vec<String>, usize)> {
    let mut v: Vec<_> = d
        .findings
        .iter()
        .map(|f| (f.cause, f.nodes.clone(), f.zones.clone(), f.pairs.len()))
        .collect();
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    v
}

/// One onset case: with stale contrasts no wrong finding (none yet, or exactly `right`); the
/// same data without the onset ages reads as before, wrongly (so the case tests something);
/// with fresh contrasts the usual findings.
fn onset_case(name: &str, build: Scenario, right: &Expect) {
    let mut stale = Mesh::new();
    all_ok_at(&mut stale, 0.9);
    build(&mut stale);
    let d = stale.diagnose();
    if !d.findings.is_empty() {
        check(
            &format!("{name} onset, stale contrasts"),
            &d,
            &[Expect { ..*right }],
        );
    }
    let legacy = without_onsets(&stale).diagnose();
    let right_alone = legacy.findings.len() == 1
        && legacy.findings[0].cause == right.cause
        && legacy.findings[0].nodes == right.nodes;
    assert!(
        !legacy.findings.is_empty() && !right_alone,
        "{name}: the reading without onset ages should be the wrong one\n{}",
        legacy.to_text()
    );
    let mut fresh = Mesh::new();
    all_ok_at(&mut fresh, 0.2);
    build(&mut fresh);
    let d = fresh.diagnose();
    let usual = without_onsets(&fresh).diagnose();
    assert!(!d.findings.is_empty(), "{name}: fresh contrasts");
    assert_eq!(
        summary(&d),
        summary(&usual),
        "{name}: fresh contrasts\n{}\nusual:\n{}",
        d.to_text(),
        usual.to_text()
    );
}

#[test]
fn onset_partition() {
    let right = Expect {
        zones: &["zone-a", "zone-b"],
        ..ex(Cause::Vpc, &[])
    };
    onset_case("partition", partition_onset, &right);
}

#[test]
fn onset_partition_seen_from_one_side() {
    let right = Expect {
        zones: &["zone-a", "zone-b"],
        ..ex(Cause::Vpc, &[])
    };
    onset_case("partition, one side", partition_onset_cut_off, &right);
}

#[test]
fn onset_policy() {
    let right = Expect {
        targets: &["web-node-2"],
        ..ex(Cause::Policy, &["node-2"])
    };
    onset_case("policy", policy_onset, &right);
}

#[test]
fn onset_node_down() {
    onset_case(
        "node-down",
        node_down_onset,
        &ex(Cause::NodeDown, &["node-4"]),
    );
}

#[test]
fn onset_node_down_agent_still_answering() {
    onset_case(
        "node-down, agent answering",
        node_down_onset_reporting,
        &ex(Cause::NodeDown, &["node-4"]),
    );
}

#[test]
fn onset_cni() {
    onset_case("cni", cni_onset, &ex(Cause::Cni, &["node-3"]));
}

#[test]
fn onset_route() {
    onset_case("route", route_onset, &ex(Cause::Routing, &["node-1"]));
}

#[test]
fn onset_positive_evidence_is_not_held_back() {
    // A "net unreachable" from node-1's own gateway names the fault whatever else is stale.
    for age in [0.9, 0.2] {
        let mut m = Mesh::new();
        all_ok_at(&mut m, age);
        route_onset_answered(&mut m);
        let d = m.diagnose();
        assert_eq!(d.findings.len(), 1, "ok age {age}\n{}", d.to_text());
        assert_eq!(d.findings[0].cause, Cause::Routing, "{}", d.to_text());
        assert!(d.findings[0].nodes.contains(&"node-1".to_string()));
    }
}

#[test]
fn onset_settled_faults_read_as_before() {
    // Faults whose failures are older than every success (steady state): the onset ages
    // change nothing.
    let faults: [(&str, Scenario); 4] = [
        ("node-down", node3_down),
        ("cni", node3_cni),
        ("route", route_1_to_3),
        ("partition", zone_partition),
    ];
    for (name, build) in faults {
        let mut m = Mesh::new();
        build(&mut m);
        let legacy = m.diagnose();
        for st in m.peer.values_mut().chain(m.target.values_mut()) {
            if st.reachable == Some(false) {
                st.failing_for_seconds = Some(3.0);
            }
        }
        assert_eq!(
            summary(&m.diagnose()),
            summary(&legacy),
            "{name}\n{}",
            m.diagnose().to_text()
        );
    }
}

#[test]
fn onset_unconfirmed_contrast_is_no_contrast() {
    // node-1 → node-3 (across the zones): the pod IP failed twice since 0.6 s, the node IP's
    // first failure is 0.1 s old and not confirmed yet (unknown): "pod IP fails, node IP does
    // not" is no routing fault yet (in the lab, `partition` read as `routing` node-1 → node-2).
    let first_failure = LayerStats {
        reachable: Some(false),
        consecutive_failures: 1,
        successes: 9,
        sent: 30,
        received: 27,
        success_ratio: Some(0.9),
        loss_ratio: Some(0.1),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.1),
        last_probe_age_seconds: Some(0.1),
        failing_for_seconds: Some(0.1),
        ..ok()
    };
    for age in [0.9, 0.2] {
        let mut m = Mesh::new();
        all_ok_at(&mut m, age);
        m.p(1, 3, &["icmp_pod", "http"], onset_timeout());
        m.p(1, 3, &["icmp_node"], first_failure.clone());
        check(&format!("ok age {age}"), &m.diagnose(), &[]);
        let legacy = without_onsets(&m).diagnose();
        assert_eq!(legacy.findings.len(), 1, "{}", legacy.to_text());
        assert_eq!(legacy.findings[0].cause, Cause::Routing);
    }
}

#[test]
fn onset_real_node_down() {
    // Fixture `node-down-node-4.json` (2.4 s into the fault): node-2's node IP to node-4
    // is "lossy" with its last probe failed 0.4 s ago — no success since node-4 began to fail.
    // Its lost packets are that failed probe's 3 plus 1 echo earlier: no loss (`random_loss`)
    // but unknown, so node-3's dead node IP and every dead pod IP already say node_down; nothing
    // (pending) would do too, any other reading is wrong.
    let d = onset_fixture("node-down-node-4.json");
    assert!(
        d.findings.is_empty()
            || summary(&d)
                == vec![(
                    Cause::NodeDown,
                    vec![name(4)],
                    vec!["zone-b".to_string()],
                    5
                )],
        "{}",
        d.to_text()
    );
    // The same moment with one more echo lost earlier on node-2's node IP to node-4 (2 lost
    // in 2 answered probes: a lossy cell, a contrast that predates the failure). The onset rule
    // alone keeps it right; without the onset ages, the wrong reading of that moment.
    let lossier: Vec<String> = onset_results("node-down-node-4.json")
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if d["node"] == "node-2" {
                for p in d["peers"].as_array_mut().unwrap() {
                    if p["node"] == "node-4" {
                        let c = &mut p["layers"]["icmp_node"];
                        c["received"] = 19.into();
                        c["errors"][0]["count"] = 3.into();
                    }
                }
            }
            d.to_string()
        })
        .collect();
    let d = diagnose(&Matrix::from_json_documents(&lossier).unwrap());
    assert!(d.findings.is_empty(), "{}", d.to_text());
    let stripped: Vec<String> = lossier
        .iter()
        .map(|d| d.replace("\"failing_for_seconds\"", "\"x_failing_for_seconds\""))
        .collect();
    let legacy = diagnose(&Matrix::from_json_documents(&stripped).unwrap());
    let causes: BTreeSet<Cause> = legacy.findings.iter().map(|f| f.cause).collect();
    assert_eq!(
        causes,
        BTreeSet::from([Cause::Routing, Cause::Vpc]),
        "{}",
        legacy.to_text()
    );
}

#[test]
fn onset_refusals_need_no_contrast() {
    // web-node-2 refuses connections from every source since 0.6 s; the pod IP was last
    // probed before that: the refusal is the pod answering — `application` at once.
    let mut m = Mesh::new();
    all_ok_at(&mut m, 0.9);
    for s in 1..=N {
        m.t(s, 2, &["http"], onset_down(err("refused")));
    }
    check(
        "refused at onset",
        &m.diagnose(),
        &[Expect {
            targets: &["web-node-2"],
            ..ex(Cause::Application, &["node-2"])
        }],
    );
}

/// A path that came back: it failed most of the window (2 of 10 answered), its last probe
/// 0.1 s ago answered, its last failure 1.2 s ago.
fn came_back() -> LayerStats {
    LayerStats {
        reachable: Some(true),
        consecutive_failures: 0,
        successes: 2,
        received: 2,
        success_ratio: Some(0.2),
        loss_ratio: Some(0.8),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(1.2),
        last_probe_age_seconds: Some(0.1),
        ..ok()
    }
}

/// A path failing for the whole window, last probed 0.8 s ago.
fn still_failing() -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 10,
        successes: 0,
        received: 0,
        success_ratio: Some(0.0),
        loss_ratio: Some(1.0),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.8),
        last_probe_age_seconds: Some(0.8),
        failing_for_seconds: Some(8.0),
        ..ok()
    }
}

/// Recovery, the mirror of onset: node-3's pod network came back (`cni node-3` cleared) 0.3 s
/// ago. Its paths to node-1, node-2 and node-4 have answered since (after failing most of the
/// window); its probes of web-node-1 were last sent before that and still show the old
/// failure. Read as a fault, that mix is a broken pod on node-1 (measured in the lab:
/// `cni nodes=[node-1]`, one poll). Until node-3 probes web-node-1 again: no finding.
#[test]
fn a_source_back_from_an_outage_holds_its_paths_not_yet_probed_again() {
    let back = came_back();
    let stale = still_failing();
    let run = |probed_again: bool| {
        let mut m = Mesh::new();
        for d in [1, 2, 4] {
            m.p(3, d, &["icmp_pod", "http"], back.clone());
        }
        for t in [2, 3, 4] {
            m.t(3, t, &["icmp_pod", "http"], back.clone());
        }
        let w1 = if probed_again {
            // Probed after the answers elsewhere, and still failing: a finding again.
            LayerStats {
                last_probe_age_seconds: Some(0.05),
                last_error_age_seconds: Some(0.05),
                ..stale.clone()
            }
        } else {
            stale.clone()
        };
        m.t(3, 1, &["icmp_pod", "http"], w1);
        m.diagnose()
    };
    let d = run(false);
    assert!(d.findings.is_empty(), "{}", d.to_text());
    let d = run(true);
    assert!(
        d.findings
            .iter()
            .any(|f| f.targets.iter().any(|t| t == "web-node-1")),
        "a failure probed after the recovery counts: {}",
        d.to_text()
    );
}

/// A destination coming back is not its sources coming back: `cni node-3` cleared 0.3 s ago
/// (every path to node-3 and web-node-3 answers again after failing most of the window) and
/// `reject web-node-2` began since, its refusals probed just before those answers. Each source
/// has one place back (node-3), not two: the refusals count and the answer is the application
/// on node-2. Holding them emptied the diagnosis for a poll with the fault on (lab_e2e,
/// `every_addressing_mode_places_faults_right`, CI of a8a35aa).
#[test]
fn a_destination_back_does_not_hold_its_sources_fresh_failures() {
    let back = came_back();
    let refused = LayerStats {
        last_probe_age_seconds: Some(0.5),
        last_error_age_seconds: Some(0.5),
        ..down(err("refused"))
    };
    let mut m = Mesh::new();
    for s in [1, 2, 4] {
        m.p(s, 3, &["icmp_pod", "http"], back.clone());
        m.t(s, 3, &["icmp_pod", "http"], back.clone());
        m.t(s, 2, &["http"], refused.clone());
    }
    // node-3's own paths came back too: it is a source back from an outage.
    for d in [1, 2, 4] {
        m.p(3, d, &["icmp_pod", "http"], back.clone());
    }
    m.t(3, 1, &["icmp_pod", "http"], back.clone());
    m.t(3, 2, &["http"], refused.clone());
    let d = m.diagnose();
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    let f = &d.findings[0];
    assert_eq!(f.cause, Cause::Application, "{}", d.to_text());
    assert_eq!(f.nodes, ["node-2"], "{}", d.to_text());
    assert_eq!(f.targets, ["web-node-2"], "{}", d.to_text());
}

/// The destination side of recovery: node-3 came back 0.3 s ago for node-2 and node-4, but
/// node-1 has not probed it since and still shows the old failure on every path to it. Read as
/// a fault, that is node-1 cut off from node-3 (measured in the lab after `clear`: a finding
/// naming node-1, one poll). Until node-1 probes again: no finding; once it has, and still
/// fails, a finding again.
#[test]
fn a_destination_back_from_an_outage_holds_paths_to_it_not_yet_probed_again() {
    let back = came_back();
    let stale = still_failing();
    let run = |probed_again: bool| {
        let mut m = Mesh::new();
        for s in [2, 4] {
            m.p(s, 3, &["icmp_pod", "http"], back.clone());
            m.t(s, 3, &["icmp_pod", "http"], back.clone());
        }
        let old = if probed_again {
            LayerStats {
                last_probe_age_seconds: Some(0.05),
                last_error_age_seconds: Some(0.05),
                ..stale.clone()
            }
        } else {
            stale.clone()
        };
        m.p(1, 3, &["icmp_pod", "http"], old.clone());
        m.t(1, 3, &["icmp_pod", "http"], old);
        m.diagnose()
    };
    let d = run(false);
    assert!(d.findings.is_empty(), "{}", d.to_text());
    let d = run(true);
    assert!(
        !d.findings.is_empty(),
        "a failure probed after the recovery counts: {}",
        d.to_text()
    );
}

/// Fixture `tests/fixtures/views/node-down-clear-blocks.json` (a saved lab view 0.27 s after
/// clearing `node-down node-4`): node-4 is back by three other paths, and node-3 -> node-4's
/// HTTP probe, sent into the outage, timed out just after. Counted from when it ended, that
/// timeout read as a fresh failure (`routing` node-3 -> node-4, naming uninvolved node-3); it
/// was sent before node-4 came back, so it is held like any failure from before. The same
/// view without the probe timeout known reads that timeout as fresh again (a finding on node-3
/// -> node-4): the rule needs the agents' `timeout_seconds`. In that control node-4's node IP
/// is made settled (its outage 5 s old), or the pod failures would wait for it anyway
/// (`pod_failures_wait_while_the_node_ip_answers_but_is_still_unknown`).
#[test]
fn a_probe_sent_into_an_outage_that_times_out_after_it_is_held() {
    let d = view_fixture("node-down-clear-blocks.json");
    assert!(d.findings.is_empty(), "{}", d.to_text());
    let path = format!(
        "{}/tests/fixtures/views/node-down-clear-blocks.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut inputs: Inputs = serde_json::from_value(v["inputs"].clone()).unwrap();
    for a in &mut inputs.agents {
        a.timeout_seconds = None;
        for p in a.peers.iter_mut().filter(|p| p.node == "node-4") {
            let n = p.layers.get_mut("icmp_node").unwrap();
            if n.reachable == Some(true) {
                n.last_error_age_seconds = Some(5.0);
            }
        }
    }
    let d = diagnose(&Matrix::build(&inputs));
    assert!(
        d.findings
            .iter()
            .any(|f| f.pairs.iter().any(|p| p[0] == "node-3" && p[1] == "node-4")),
        "{}",
        d.to_text()
    );
}

/// Fixture `tests/fixtures/views/cni6-onset-unconfirmed-dual.json` (a saved dual-stack lab
/// view ~1.5 s into `cni node-3 --family ipv6`): node-1 has confirmed its failures toward
/// node-3, node-2 and node-4 have seen only their first. An unconfirmed failure is no answer:
/// read as one, node-2's and node-4's paths "reached" node-3's pods and node-1 took the blame
/// (`routing` node-1). No finding yet, or node-3's CNI; nothing at node-1.
#[test]
fn an_unconfirmed_failure_is_no_contrast() {
    let path = format!(
        "{}/tests/fixtures/views/cni6-onset-unconfirmed-dual.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let inputs: Inputs = serde_json::from_value(v["inputs"].clone()).unwrap();
    let d = crate::diagnose_inputs(&inputs, &crate::Params::default());
    for f in &d.findings {
        assert!(
            f.cause == Cause::Cni && f.nodes == ["node-3"],
            "{}",
            d.to_text()
        );
    }
}

/// Fixture `tests/fixtures/views/route6-reapplied-dual.json` (a saved dual-stack lab view
/// just after `route node-1 node-3 --family ipv6` was applied again, seconds after the same
/// fault cleared): node-1's pod probe to node-3 has failed once since ("net unreachable" from
/// its own gateway, unconfirmed), its probe to web-node-3 is down with the same answer, and
/// node-3 -> node-1 is down on every layer (node-1's replies have no route). Without the target
/// pair's evidence that reverse pair read as a second finding, `vpc` node-3 -> node-1.
#[test]
fn a_missing_route_seen_on_a_target_pair_explains_the_reverse_peer_pair() {
    let path = format!(
        "{}/tests/fixtures/views/route6-reapplied-dual.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let inputs: Inputs = serde_json::from_value(v["inputs"].clone()).unwrap();
    let d = crate::diagnose_inputs(&inputs, &crate::Params::default());
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    let f = &d.findings[0];
    assert!(
        f.cause == Cause::Routing
            && f.nodes == ["node-1"]
            && f.family == Some(meshprobe_core::model::Family::Ipv6),
        "{}",
        d.to_text()
    );
    assert!(
        f.pairs.iter().any(|p| p[0] == "node-3" && p[1] == "node-1"),
        "the reverse pair is the routing finding's: {}",
        d.to_text()
    );
}

/// Fixture `tests/fixtures/views/cni-after-node-down-clear.json` (a lab's mesh view gathered
/// from node-1..3 ~1.6 s into `cni node-4`, which was injected as soon as a `node-down node-4`
/// had cleared; node-4's agent not waited for): node-4's node IP answers every source again,
/// but its cells are unknown (the outage's marks, last error 2.5–2.9 s ago, under 3
/// intervals); its pod IP is down from node-2 and node-3 and unknown from node-1. With no
/// node-IP contrast either way, the pod failures read as `routing` at node-4 ("node IPs
/// answer"). They wait for the node IP now: no finding, or node-4's CNI.
#[test]
fn pod_failures_wait_while_the_node_ip_answers_but_is_still_unknown() {
    let d = view_fixture("cni-after-node-down-clear.json");
    for f in &d.findings {
        assert!(
            f.cause == Cause::Cni && f.nodes == ["node-4"],
            "{}",
            d.to_text()
        );
    }
}
