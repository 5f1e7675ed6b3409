//! What a scrape copies out of the store under its lock: the aggregate counts and the pairs
//! `--pair-metrics` selects, each error labelled with who reported it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::config::PairMetrics;
use crate::model::{DestKind, ErrorClass, Layer};
use crate::mtu::{MtuReport, MtuState};
use crate::net::Cidr;
use crate::peers::PeerSet;
use crate::store::Store;
use crate::window::WindowStats;

/// One pair selected for per-pair series, copied out of the store.
pub(super) struct Row {
    pub(super) kind: DestKind,
    pub(super) dst: String,
    pub(super) dst_zone: String,
    pub(super) layer: Layer,
    pub(super) stats: WindowStats,
    pub(super) mtu: Option<MtuReport>,
    /// Per error kind in the window: (kind, count, age of the latest, who sent the latest).
    pub(super) errors: Vec<(&'static str, u32, f64, &'static str)>,
}

/// The node whose pod IP is `ip`, or whose pod subnet (the /24 or /64 around its pod IP, the
/// diagnosis engine's rule) holds it; "" when none.
pub fn target_node(ip: IpAddr, set: &PeerSet) -> &str {
    set.peers
        .iter()
        .find(|p| p.pod_ip == ip)
        .or_else(|| {
            set.peers
                .iter()
                .find(|p| Cidr::around(p.pod_ip).contains(ip))
        })
        .map_or("", |p| p.node.as_str())
}

/// The address an ICMP error came from, if the error carries one.
fn error_sender(e: &ErrorClass) -> Option<IpAddr> {
    match e {
        ErrorClass::NetUnreachable { from }
        | ErrorClass::HostUnreachable { from }
        | ErrorClass::AdminProhibited { from }
        | ErrorClass::PortUnreachable { from }
        | ErrorClass::FragNeeded { from, .. }
        | ErrorClass::TtlExceeded { from }
        | ErrorClass::Icmp { from, .. } => *from,
        _ => None,
    }
}

/// The `reporter` label: who sent an error, in bounded words instead of an address.
/// `none`: no ICMP sender (a timeout, a refusal, the local stack's own error); `source`: an
/// address of the probing node (node IP, pod IP, or its pod subnet, the /24 or /64 around the
/// pod IP, which holds its pod gateway — the diagnosis engine's rule too); `destination`: the
/// destination's own address or its node's; `peer`: another node of the peer set; `other`: an
/// address outside the peer set (a router).
pub fn reporter(
    from: Option<IpAddr>,
    me: &str,
    dst: &str,
    dst_ip: Option<IpAddr>,
    set: &PeerSet,
) -> &'static str {
    let Some(ip) = from else { return "none" };
    let owns = |p: &crate::peers::Peer| {
        p.node_ip == ip || p.pod_ip == ip || Cidr::around(p.pod_ip).contains(ip)
    };
    if set.peer(me).is_some_and(owns) {
        return "source";
    }
    if dst_ip == Some(ip) || set.peer(dst).is_some_and(owns) {
        return "destination";
    }
    if set.peers.iter().any(owns) {
        return "peer";
    }
    "other"
}

/// Whether `--pair-metrics failing` exports a pair: a failure in the window, or a path MTU
/// below the interface's.
fn failing(stats: &WindowStats, mtu: Option<&MtuReport>) -> bool {
    stats.has_failures()
        || mtu.is_some_and(|m| {
            matches!(
                m.state,
                MtuState::Mismatch | MtuState::Blackhole | MtuState::Loss
            )
        })
}

/// What one scrape renders: the aggregates over every window, and the pairs selected for
/// per-pair series. Only the selected pairs are copied out of the store, so with
/// `--pair-metrics failing` a healthy mesh copies nothing (every layer of a destination that
/// fails on any is selected).
#[derive(Default)]
pub(super) struct Rows {
    pub(super) peers: usize,
    pub(super) targets: usize,
    /// (kind, layer, state of the last probe) → destinations.
    pub(super) states: BTreeMap<(DestKind, Layer, &'static str), u32>,
    /// (layer, path-MTU state) → destinations.
    pub(super) mtu_states: BTreeMap<(Layer, &'static str), u32>,
    pub(super) pairs: Vec<Row>,
    /// (target, the node whose pod subnet holds it, or "").
    pub(super) target_nodes: Vec<(String, String)>,
}

/// Count and select under the store's lock (the collector encodes afterwards): `own_node`
/// is left out of the peer count, `sampled` is whether the plan is sampled.
pub(super) fn collect(
    store: &Mutex<Store>,
    own_node: &str,
    pair_metrics: PairMetrics,
    sampled: bool,
    now: Instant,
) -> Rows {
    let mut rows = Rows::default();
    let Ok(store) = store.lock() else {
        return rows;
    };
    rows.peers = store
        .peers()
        .peers
        .iter()
        .filter(|p| p.node != own_node)
        .count();
    rows.targets = store.peers().targets.len();
    rows.target_nodes = store
        .peers()
        .targets
        .iter()
        .map(|t| (t.name.clone(), target_node(t.ip, store.peers()).to_string()))
        .collect();
    // `failing` selects destinations, not cells: every layer of a destination failing on one
    // (its healthy node IP beside a dead pod IP is what tells CNI from node down or routing).
    let selective = match pair_metrics {
        PairMetrics::Failing => true,
        PairMetrics::Auto => sampled,
        PairMetrics::All | PairMetrics::None => false,
    };
    let mut failing_dsts: std::collections::HashSet<(DestKind, String)> =
        std::collections::HashSet::new();
    if selective {
        store.visit(now, |v| {
            if failing(&v.stats, v.mtu) {
                failing_dsts.insert((v.kind, v.name.to_string()));
            }
        });
    }
    store.visit(now, |v| {
        let state = match v.stats.reachable {
            Some(true) => "reachable",
            Some(false) => "unreachable",
            None => "unknown",
        };
        for s in ["reachable", "unreachable", "unknown"] {
            rows.states.entry((v.kind, v.layer, s)).or_insert(0);
        }
        *rows.states.entry((v.kind, v.layer, state)).or_insert(0) += 1;
        if let Some(m) = v.mtu {
            for s in MtuState::ALL {
                rows.mtu_states.entry((v.layer, s.as_str())).or_insert(0);
            }
            *rows
                .mtu_states
                .entry((v.layer, m.state.as_str()))
                .or_insert(0) += 1;
        }
        // Auto: every pair on a full mesh, failing destinations on a sampled plan.
        let selected = match pair_metrics {
            PairMetrics::None => false,
            _ if selective => failing_dsts.contains(&(v.kind, v.name.to_string())),
            _ => true,
        };
        if selected {
            let set = store.peers();
            let dst_ip = match v.kind {
                DestKind::Target => set.targets.iter().find(|t| t.name == v.name).map(|t| t.ip),
                _ => None,
            };
            let errors = v
                .stats
                .errors
                .iter()
                .map(|e| {
                    let who = reporter(error_sender(&e.last), own_node, v.name, dst_ip, set);
                    (e.kind, e.count, e.last_age_seconds, who)
                })
                .collect();
            rows.pairs.push(Row {
                errors,
                kind: v.kind,
                dst: v.name.to_string(),
                dst_zone: v.zone.unwrap_or_default().to_string(),
                layer: v.layer,
                stats: v.stats,
                mtu: v.mtu.cloned(),
            });
        }
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::parse;

    #[test]
    fn reporter_names_the_sender_in_bounded_words() {
        let set = parse("peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.1.10}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.2.10}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.3.10}\ntargets:\n  - {name: web, ip: 10.1.2.11, port: 80, protocol: http}\n").unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for (from, dst, dst_ip, want) in [
            (None, "b", None, "none"),
            (ip("10.1.1.1"), "b", None, "source"), // a's pod gateway
            (ip("10.0.0.1"), "b", None, "source"),
            (ip("10.1.2.10"), "b", None, "destination"),
            (ip("10.0.0.2"), "b", None, "destination"),
            (ip("10.0.0.3"), "b", None, "peer"),
            (ip("10.1.3.1"), "b", None, "peer"),
            (ip("198.18.1.1"), "b", None, "other"),
            (ip("10.1.2.11"), "web", ip("10.1.2.11"), "destination"),
            (ip("10.0.0.2"), "web", ip("10.1.2.11"), "peer"),
        ] {
            assert_eq!(
                reporter(from, "a", dst, dst_ip, &set),
                want,
                "{from:?} → {dst}"
            );
        }
    }
}
