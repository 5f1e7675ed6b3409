//! Faults, each as it looks on the wire in the lab: what the agents' windows show.

use super::helpers::*;
use crate::input::*;

pub(super) fn node3_down(m: &mut Mesh) {
    m.around(
        3,
        &PEER_LAYERS,
        &TARGET_LAYERS,
        down(err("host_unreachable")),
    );
    m.missing.insert(3);
}

pub(super) fn node3_cni(m: &mut Mesh) {
    // Pod layers to and from node-3 dead; node-3's node IP answers; its agent (on the pod
    // network) reaches no node IP either.
    m.around(3, &["icmp_pod", "http"], &TARGET_LAYERS, timeout());
    for o in [1, 2, 4] {
        m.p(3, o, &["icmp_node"], timeout());
    }
}

pub(super) fn route_1_to_3(m: &mut Mesh) {
    // Route to node-3's pod CIDR deleted on node-1: node-1's gateway answers.
    let nu = down(err_from("net_unreachable", &m.gw(1)));
    m.p(1, 3, &["icmp_pod", "http"], nu.clone());
    m.t(1, 3, &TARGET_LAYERS, nu);
    // node-3's agent lives on a pod: node-1's replies to it have no route, node IP included.
    m.p(3, 1, &["icmp_pod", "icmp_node", "http"], timeout());
    m.t(3, 1, &TARGET_LAYERS, timeout());
}

/// The same route fault when node-1's rate-limited "net unreachable" is not in the windows
/// (in the lab, `route node-2 node-4` while `cni node-3` read as `routing` one way plus a `vpc`
/// the other way for > 16 s).
pub(super) fn route_1_to_3_silent(m: &mut Mesh) {
    m.p(1, 3, &["icmp_pod", "http"], timeout());
    m.t(1, 3, &TARGET_LAYERS, timeout());
    m.p(3, 1, &["icmp_pod", "icmp_node", "http"], timeout());
    m.t(3, 1, &TARGET_LAYERS, timeout());
}

pub(super) fn one_way_1_to_3(m: &mut Mesh) {
    m.p(1, 3, &["icmp_pod", "http"], timeout());
    m.t(1, 3, &TARGET_LAYERS, timeout());
}

pub(super) fn node2_no_routes(m: &mut Mesh) {
    let nu = down(err_from("net_unreachable", &m.gw(2)));
    for o in [1, 3, 4] {
        m.p(2, o, &["icmp_pod", "http"], nu.clone());
        m.t(2, o, &TARGET_LAYERS, nu.clone());
        m.p(o, 2, &["icmp_pod", "icmp_node", "http"], timeout());
        m.t(o, 2, &TARGET_LAYERS, timeout());
    }
}

pub(super) fn zone_partition(m: &mut Mesh) {
    for a in [1, 2] {
        for b in [3, 4] {
            m.p(a, b, &PEER_LAYERS, timeout());
            m.p(b, a, &PEER_LAYERS, timeout());
            m.t(a, b, &TARGET_LAYERS, timeout());
            m.t(b, a, &TARGET_LAYERS, timeout());
        }
    }
}

/// node-4 alone in zone-c, cut off from everybody; its agent still reports.
pub(super) fn lone_zone_partition(m: &mut Mesh) {
    m.zone[4] = "zone-c";
    m.around(4, &PEER_LAYERS, &[], timeout());
    for o in 1..=3 {
        m.t(o, 4, &TARGET_LAYERS, timeout());
        m.t(4, o, &TARGET_LAYERS, timeout());
    }
}

pub(super) fn lone_zone_node_down(m: &mut Mesh) {
    lone_zone_partition(m);
    m.missing.insert(4);
}

pub(super) fn mtu_node3_states(m: &mut Mesh) {
    for o in [1, 2, 4] {
        m.mtu.insert((3, o), (1400, MtuState::Mismatch));
        m.mtu.insert((o, 3), (1400, MtuState::Blackhole));
    }
}

pub(super) fn mtu_node3_errors(m: &mut Mesh) {
    // Large DF probes mixed in: the ones from node-3 get frag-needed from node-3's uplink,
    // then EMSGSIZE; those toward node-3 vanish (a third of the echoes lost).
    let frag = LayerStats {
        last_error: Some(ErrorInfo {
            kind: "frag_needed".into(),
            from: Some("198.18.2.13".into()),
            mtu: Some(1400),
            code: None,
        }),
        ..lossy(10)
    };
    let tl = LayerStats {
        last_error: Some(err("message_too_long")),
        ..lossy(10)
    };
    for o in [1, 2, 4] {
        m.p(3, o, &["icmp_pod"], frag.clone());
        m.p(o, 3, &["icmp_pod"], tl.clone());
    }
}

pub(super) fn loss_node2(m: &mut Mesh) {
    m.around(2, &["icmp_pod", "icmp_node"], &["icmp_pod"], lossy(9));
}

pub(super) fn policy_web2(m: &mut Mesh) {
    for s in 1..=N {
        m.t(s, 2, &["http"], timeout());
    }
}

pub(super) fn app_web2(m: &mut Mesh) {
    for s in 1..=N {
        m.t(
            s,
            2,
            &["http"],
            down(ErrorInfo {
                kind: "http_status".into(),
                code: Some(503),
                ..ErrorInfo::default()
            }),
        );
    }
}

pub(super) fn refused_web2(m: &mut Mesh) {
    for s in 1..=N {
        m.t(s, 2, &["http"], down(err("refused")));
    }
}

/// `loss node-2 30` as the agents saw it: ~50% of round trips lost on every path touching
/// node-2, so HTTP to node-2's agent and to web-node-2 mostly times out (1/10 succeeded).
pub(super) fn loss_node2_real(m: &mut Mesh) {
    loss_node2(m);
    let http_dead = LayerStats {
        reachable: Some(false),
        consecutive_failures: 2,
        successes: 1,
        received: 1,
        success_ratio: Some(0.1),
        loss_ratio: Some(0.9),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.9),
        errors: vec![timeout_count(9, 0.9)],
        ..ok()
    };
    let http_flaky = LayerStats {
        successes: 4,
        received: 4,
        success_ratio: Some(0.4),
        loss_ratio: Some(0.6),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(1.5),
        errors: vec![timeout_count(6, 1.5)],
        ..ok()
    };
    m.p(1, 2, &["http"], http_dead.clone());
    m.p(4, 2, &["http"], http_dead.clone());
    m.p(3, 2, &["http"], http_flaky.clone());
    m.t(1, 2, &["http"], http_dead.clone());
    m.t(3, 2, &["http"], http_dead);
    m.t(4, 2, &["http"], http_flaky);
    // Bad luck: all 3 echoes of 2 probes in a row lost, node-2 -> web-node-1.
    m.t(
        2,
        1,
        &["icmp_pod"],
        LayerStats {
            consecutive_failures: 2,
            successes: 8,
            success_ratio: Some(0.8),
            sent: 30,
            received: 14,
            ..down(err("timeout"))
        },
    );
}

/// `conntrack node-2` as the lab shows it: every new connection to node-2's pods (its agent,
/// web-node-2) silently dropped, ICMP (flows already tracked) answering; node-2's agent cannot
/// be asked for its results (its HTTP server takes no new connection).
pub(super) fn conntrack_node2(m: &mut Mesh) {
    for s in [1, 3, 4] {
        m.p(s, 2, &["http"], timeout());
        m.t(s, 2, &["http"], timeout());
    }
    m.missing.insert(2);
}

/// The same while node-2's agent still reports: its own new connections fail too.
pub(super) fn conntrack_node2_reporting(m: &mut Mesh) {
    for s in [1, 3, 4] {
        m.p(s, 2, &["http"], timeout());
        m.t(s, 2, &["http"], timeout());
        m.p(2, s, &["http"], timeout());
        m.t(2, s, &["http"], timeout());
    }
}
