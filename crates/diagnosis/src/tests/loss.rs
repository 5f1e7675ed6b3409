//! Stage 5, packet loss: loss against an outage's marks, and failures the loss explains.

use super::helpers::*;
use super::scenarios::*;
use crate::input::*;
use crate::report::Cause;
use crate::Params;

#[test]
fn real_data_problems_stay_fixed() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        (
            // Was: packet_loss node-2 plus 5 `policy` findings ("from 1 of 4 sources only").
            "loss: timeouts on the lossy node's paths are the loss, not policy",
            loss_node2_real,
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            // Was: an extra `routing` node-2 -> node-3 (e2e run): two ICMP probes in a row lost
            // on the lossy node's path and its HTTP mostly timing out, ICMP still delivering.
            "loss: a pair of the lossy node with two failed ICMP probes in a row is the loss",
            |m| {
                loss_node2_real(m);
                let icmp_unlucky = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 2,
                    successes: 8,
                    received: 15,
                    sent: 30,
                    success_ratio: Some(0.8),
                    loss_ratio: Some(0.5),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.5),
                    errors: vec![timeout_count(15, 0.5)],
                    ..ok()
                };
                let http_dead = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 4,
                    successes: 1,
                    received: 1,
                    success_ratio: Some(0.1),
                    loss_ratio: Some(0.9),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.7),
                    errors: vec![timeout_count(9, 0.7)],
                    ..ok()
                };
                m.p(2, 3, &["icmp_pod"], icmp_unlucky);
                m.p(2, 3, &["http"], http_dead);
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            // Was: an extra `cni` for web-node-2 "from 1 of 3 sources" (e2e run under load):
            // one source's last three probes to the target's pod IP lost, its HTTP dead.
            "loss: a target on the lossy node unanswered by one source for a while is the loss",
            |m| {
                loss_node2_real(m);
                let icmp_unlucky = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 3,
                    successes: 6,
                    received: 14,
                    sent: 30,
                    success_ratio: Some(0.6),
                    loss_ratio: Some(0.53),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.5),
                    errors: vec![timeout_count(16, 0.5)],
                    ..ok()
                };
                m.t(3, 2, &["icmp_pod"], icmp_unlucky);
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            // Was: an extra `mtu` finding for node-1 -> node-2 (agent's verdict "black hole").
            "loss: a path-MTU black hole verdict on a lossy path is the loss",
            |m| {
                loss_node2_real(m);
                m.mtu.insert((1, 2), (1405, MtuState::Blackhole));
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "a timeout to a target from 1 of 4 sources, intermittent: noise, not policy",
            |m| {
                m.t(
                    1,
                    2,
                    &["http"],
                    LayerStats {
                        consecutive_failures: 2,
                        ..down(err("timeout"))
                    },
                );
            },
            vec![],
        ),
        (
            "a persistent timeout from 1 of 4 sources is no NetworkPolicy",
            |m| {
                m.t(
                    1,
                    2,
                    &["http"],
                    LayerStats {
                        consecutive_failures: 10,
                        successes: 0,
                        success_ratio: Some(0.0),
                        ..down(err("timeout"))
                    },
                );
            },
            vec![ex(Application, &["node-2"])],
        ),
        (
            // Was: two stale pair findings 6 s after `clear` (ICMP partial loss leaves no
            // error of its own; the pair's HTTP had been quiet for seconds).
            "cleared loss: ICMP lossy without errors, the pair quiet for 5 s",
            |m| {
                let icmp = LayerStats {
                    sent: 30,
                    received: 24,
                    loss_ratio: Some(0.2),
                    ..ok()
                };
                let http = LayerStats {
                    successes: 6,
                    received: 6,
                    success_ratio: Some(0.6),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(5.0),
                    errors: vec![timeout_count(4, 5.0)],
                    ..ok()
                };
                for (a, b) in [(2, 3), (3, 2), (2, 4), (4, 2)] {
                    m.p(a, b, &["icmp_pod", "icmp_node"], icmp.clone());
                    m.p(a, b, &["http"], http.clone());
                }
            },
            vec![],
        ),
        (
            // The old rule (window / lost) flipped back to lossy as the count fell.
            "cleared loss: 3 errors left, the newest 8 s old",
            |m| {
                let st = LayerStats {
                    last_error_age_seconds: Some(8.0),
                    errors: vec![timeout_count(3, 8.0)],
                    ..lossy(3)
                };
                m.around(2, &["icmp_pod", "icmp_node"], &["icmp_pod"], st);
            },
            vec![],
        ),
        (
            // Was: "packet_loss node-4 ~7%" right after `node-down node-4` was cleared.
            "a node that came back: whole probes failed, none partially, answering now",
            |m| {
                let st = LayerStats {
                    successes: 7,
                    sent: 30,
                    received: 21,
                    success_ratio: Some(0.7),
                    loss_ratio: Some(0.3),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(1.5),
                    errors: vec![timeout_count(3, 1.5)],
                    ..ok()
                };
                m.around(4, &["icmp_pod", "icmp_node"], &["icmp_pod"], st);
            },
            vec![],
        ),
        (
            "a node going down: its first whole-probe failure is no loss",
            |m| {
                let st = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 1,
                    successes: 9,
                    sent: 30,
                    received: 27,
                    success_ratio: Some(0.9),
                    loss_ratio: Some(0.1),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.3),
                    ..ok()
                };
                m.around(4, &["icmp_pod", "icmp_node"], &["icmp_pod"], st);
            },
            vec![],
        ),
        (
            // The gateway rate-limits its "net unreachable": the last error is a timeout,
            // the window's per-kind list keeps the one from 198.19.1.1.
            "route: net unreachable only in the window's error list names node-1",
            |m| {
                let st = LayerStats {
                    errors: vec![
                        timeout_count(5, 0.4),
                        ErrorCountInfo {
                            kind: "net_unreachable".into(),
                            count: 1,
                            last: Some(err_from("net_unreachable", "198.19.1.1")),
                            last_age_seconds: Some(4.0),
                        },
                    ],
                    ..timeout()
                };
                m.p(1, 3, &["icmp_pod", "http"], st.clone());
                m.t(1, 3, &TARGET_LAYERS, st);
                m.missing.insert(3);
            },
            vec![ex(Routing, &["node-1"])],
        ),
    ];
    for (label, f, want) in table {
        let mut m = Mesh::new();
        f(&mut m);
        check(label, &m.diagnose(), &want);
    }
}

#[test]
fn cut_rounds_are_no_packet_loss() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        (
            // Was: packet_loss node-3 <-> node-2, one pair, for up to a second (lab partition).
            "a cut round after an earlier outage's failed probe, one pair",
            |m| {
                m.p(3, 2, &["icmp_node"], cut_after_residue());
            },
            vec![],
        ),
        (
            "a cut round then a whole failure, one pair",
            |m| {
                m.p(1, 4, &["icmp_pod"], cut_then_failed());
            },
            vec![],
        ),
        (
            // Was (answered packets without the probe count): packet_loss node-3.
            "cut rounds on two of a node's outbound pairs",
            |m| {
                m.p(3, 2, &["icmp_node"], cut_after_residue());
                m.p(3, 4, &["icmp_node"], cut_then_failed());
            },
            vec![],
        ),
        (
            "steady loss on one pair, one direction, one layer",
            |m| {
                m.p(1, 2, &["icmp_pod"], steady_pair_loss());
            },
            vec![ex(PacketLoss, &["node-1", "node-2"])],
        ),
        (
            "steady loss on one pair, both layers",
            |m| {
                m.p(1, 2, &["icmp_pod", "icmp_node"], steady_pair_loss());
            },
            vec![ex(PacketLoss, &["node-1", "node-2"])],
        ),
        (
            "steady loss with a whole failure just now, one pair",
            |m| {
                m.p(1, 2, &["icmp_pod", "icmp_node"], echo_cell(1, 4, 6, true));
            },
            vec![ex(PacketLoss, &["node-1", "node-2"])],
        ),
        (
            "steady loss around node-2, with error counts",
            |m| {
                m.around(
                    2,
                    &["icmp_pod", "icmp_node"],
                    &["icmp_pod"],
                    steady_pair_loss(),
                );
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "loss onset around node-2: one echo lost in each of two probes",
            |m| {
                m.around(
                    2,
                    &["icmp_pod", "icmp_node"],
                    &[],
                    echo_cell(0, 2, 2, false),
                );
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
    ];
    for (label, build, want) in table {
        let mut m = Mesh::new();
        build(&mut m);
        let d = m.diagnose();
        check(label, &d, &want);
        if let Some(f) = d.findings.iter().find(|f| f.nodes.len() == 2) {
            assert_eq!(f.pairs.len(), 1, "{label}: {}", d.to_text());
        }
    }
    // Counting answered losses alone, not in how many probes: the two cut rounds of node-3
    // read as loss on node-3.
    let mut m = Mesh::new();
    m.p(3, 2, &["icmp_node"], cut_after_residue());
    m.p(3, 4, &["icmp_node"], cut_then_failed());
    let p = Params {
        lossy_min_probes: 1,
        ..Params::default()
    };
    let d = crate::diagnose_with(&m.matrix(), &p);
    check("one probe enough", &d, &[ex(PacketLoss, &["node-3"])]);
}

/// Recorded `lab partition zone-a zone-b` onsets that read as packet_loss before the right
/// `vpc` (see each fixture's `what`): half a second in, the right answer is no finding yet, or
/// the partition itself — never loss, never any other finding.
#[test]
fn onset_real_cut_rounds() {
    for f in [
        "partition-cut-round.json",
        "partition-cut-rounds-node3.json",
    ] {
        let d = onset_fixture(f);
        let partition = d.findings.len() == 1
            && d.findings[0].cause == Cause::Vpc
            && d.findings[0].zones == ["zone-a", "zone-b"];
        assert!(d.findings.is_empty() || partition, "{f}: {}", d.to_text());
    }
}

/// A node's loss cleared 3.4 s ago (`loss node-2 30`, then `clear`; interval 1 s): its pairs
/// go quiet one by one, and node-2 → node-3, whose node-IP echoes last lost a packet 2.8 s
/// ago, is the last still lossy. Read alone, that pair is loss between node-2 and node-3 — an
/// uninvolved node (lab, 2026-12-06, blocks layout: 3 of 3 clears, one poll each, 3.4 s after
/// `clear`; the figures below are that capture's). The pairs gone quiet say whose loss it was:
/// node-2's, until its last pair is quiet too.
#[test]
fn a_lossy_node_going_quiet_keeps_its_last_lossy_pair() {
    let quiet = |lost: u32| LayerStats {
        last_error_age_seconds: Some(3.4),
        ..lossy(lost)
    };
    let mut m = Mesh::new();
    for o in [1, 3, 4] {
        m.p(o, 2, &["icmp_pod", "icmp_node"], quiet(9));
        if o != 3 {
            m.p(2, o, &["icmp_pod", "icmp_node"], quiet(9));
        }
    }
    m.p(2, 3, &["icmp_pod"], quiet(7));
    m.p(
        2,
        3,
        &["icmp_node"],
        LayerStats {
            last_error_age_seconds: Some(2.8),
            ..lossy(7)
        },
    );
    let d = m.diagnose();
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    assert_eq!(d.findings[0].cause, Cause::PacketLoss, "{}", d.to_text());
    assert_eq!(d.findings[0].nodes, ["node-2"], "{}", d.to_text());

    // The same pair losing on its own, no other pair of node-2 having lost anything: loss
    // between the two.
    let mut m = Mesh::new();
    m.p(2, 3, &["icmp_pod", "icmp_node"], lossy(7));
    let d = m.diagnose();
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    assert_eq!(d.findings[0].nodes, ["node-2", "node-3"], "{}", d.to_text());
}

/// Fixtures `tests/fixtures/views/node-down-after-loss-*.json` (saved lab views, blocks and vpc
/// addressing): `node-down node-4` a few seconds after `loss node-2 30` cleared. node-2 -> node-4
/// starts failing whole while its window still holds the cleared loss, and node-2's other pairs
/// have gone quiet: that is node-4's outage beginning, not node-2's loss back (which the view
/// read, naming uninvolved node-2, in 6 of ~25 such onsets).
#[test]
fn an_outage_beginning_on_a_pair_of_a_node_whose_loss_ended_is_no_loss() {
    for f in [
        "node-down-after-loss-blocks-1.json",
        "node-down-after-loss-blocks-2.json",
        "node-down-after-loss-vpc.json",
    ] {
        let d = view_fixture(f);
        assert!(
            d.findings
                .iter()
                .all(|x| x.cause != Cause::PacketLoss && !x.nodes.contains(&"node-2".to_string())),
            "{f}: {}",
            d.to_text()
        );
    }
}

/// Fixture `tests/fixtures/views/loss-after-partition-vpc.json` (a saved lab view): `loss node-2
/// 30` 0.8 s in, 4 s after a zone partition cleared. node-1's paths across the partition hold
/// its marks — whole failures and a cut round at each edge — which read as loss on node-1.
/// An outage that began and ended in the window cuts two rounds: that is no loss. But heavy
/// loss fails most probes whole too (`views/heavy-loss-agent-left-out-blocks.json`, node-2's
/// agent left out of the view): it keeps losing in answered probes, so it stays loss.
#[test]
fn a_cleared_outage_with_both_edges_cut_is_no_loss() {
    let d = view_fixture("heavy-loss-agent-left-out-blocks.json");
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    assert_eq!(d.findings[0].cause, Cause::PacketLoss, "{}", d.to_text());
    assert_eq!(d.findings[0].nodes, ["node-2"], "{}", d.to_text());
    let d = view_fixture("loss-after-partition-vpc.json");
    assert!(
        d.findings
            .iter()
            .all(|x| x.nodes.iter().all(|n| n == "node-2")),
        "{}",
        d.to_text()
    );
}
