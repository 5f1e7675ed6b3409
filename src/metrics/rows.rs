//! What a scrape copies out of the store under its lock: the aggregate counts and the pairs
//! `--pair-metrics` selects, each error labelled with who reported it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::config::PairMetrics;
use crate::model::{DestKind, ErrorClass, Family, Layer};
use crate::mtu::{MtuReport, MtuState};
use crate::owners::{Owner, OwnerMap};
use crate::peers::PeerSet;
use crate::store::Store;
use crate::window::WindowStats;

/// One pair selected for per-pair series, copied out of the store.
pub(super) struct Row {
    pub(super) kind: DestKind,
    pub(super) dst: String,
    pub(super) dst_zone: String,
    pub(super) layer: Layer,
    pub(super) family: Family,
    pub(super) stats: WindowStats,
    pub(super) mtu: Option<MtuReport>,
    /// Per error kind in the window: (kind, count, age of the latest, who sent the latest).
    pub(super) errors: Vec<(&'static str, u32, f64, &'static str)>,
}

/// The node of target `name` (at `ip`) by the ownership map: its stated node, else its IP's
/// owner (a node's exact address or known pod CIDR); "" when unknown.
pub fn target_node<'a>(name: &str, ip: IpAddr, set: &'a PeerSet, owners: &OwnerMap) -> &'a str {
    let node = owners.target_node(name).or(match owners.lookup(ip) {
        Owner::Node { node, .. } => Some(node),
        _ => None,
    });
    node.and_then(|n| set.peers.get(n))
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
/// address of the probing node by the ownership map (node IP, pod IP, pod gateway — a gateway
/// every node shares is the sender's own — or inside its known pod CIDRs); `destination`: the
/// destination's own address or its node's; `peer`: another node of the peer set; `other`: an
/// address no fact places (a router).
pub fn reporter(
    from: Option<IpAddr>,
    me: &str,
    dst: &str,
    dst_ip: Option<IpAddr>,
    set: &PeerSet,
    owners: &OwnerMap,
) -> &'static str {
    let Some(ip) = from.map(|ip| ip.to_canonical()) else {
        return "none";
    };
    let idx = |name: &str| set.peers.iter().position(|p| p.node == name);
    let owner = match owners.lookup(ip) {
        Owner::Node { node, .. } => Some(node),
        Owner::SendersNode => idx(me),
        Owner::Unknown => None,
    };
    if owner.is_some() && owner == idx(me) {
        return "source";
    }
    if dst_ip.map(|d| d.to_canonical()) == Some(ip) || (owner.is_some() && owner == idx(dst)) {
        return "destination";
    }
    if owner.is_some() {
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
    /// (target, its node by the ownership map, or "" when unknown).
    pub(super) target_nodes: Vec<(String, String)>,
    /// (peer, its zone or "") for every peer this agent probes, when healthy pairs export no
    /// series (`failing`, or `auto` on a sampled plan): the denominators of "how many sources
    /// find this destination down" that the failing pairs alone cannot give.
    pub(super) planned: Vec<(String, String)>,
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
    // The store's ownership map: built once per peer set, when a target or an exported error
    // first needs it (a healthy agent of a sampled plan without targets never does).
    let owners = || store.owners();
    rows.target_nodes = store
        .peers()
        .targets
        .iter()
        .map(|t| {
            let node = target_node(&t.name, t.ip, store.peers(), owners());
            (t.name.clone(), node.to_string())
        })
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
        rows.planned = store
            .probed_peers()
            .iter()
            .map(|(n, z)| (n.clone(), z.clone().unwrap_or_default()))
            .collect();
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
                DestKind::Target => set
                    .targets
                    .iter()
                    .find(|t| t.name == v.name)
                    .and_then(|t| t.ip_of(v.family.is_v6())),
                _ => None,
            };
            let errors = v
                .stats
                .errors
                .iter()
                .map(|e| {
                    let from = error_sender(&e.last);
                    let who = reporter(from, own_node, v.name, dst_ip, set, owners());
                    (e.kind, e.count, e.last_age_seconds, who)
                })
                .collect();
            rows.pairs.push(Row {
                errors,
                kind: v.kind,
                dst: v.name.to_string(),
                dst_zone: v.zone.unwrap_or_default().to_string(),
                layer: v.layer,
                family: v.family,
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
        let peers = "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.1.10, pod_cidrs: [10.1.1.0/26, 10.1.4.64/26]}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.2.10, pod_cidrs: [10.1.2.0/24]}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.3.10, pod_cidrs: [10.1.3.0/24, 10.1.4.0/26]}\ntargets:\n  - {name: web, ip: 10.1.2.11, port: 80, protocol: http}\n";
        let set = parse(peers).unwrap();
        // The same peers without pod CIDRs, every node behind one shared gateway.
        let bare = parse(
            &peers
                .replace(
                    ", pod_cidrs: [10.1.1.0/26, 10.1.4.64/26]",
                    ", pod_gateway: 169.254.1.1",
                )
                .replace(", pod_cidrs: [10.1.2.0/24]", ", pod_gateway: 169.254.1.1")
                .replace(
                    ", pod_cidrs: [10.1.3.0/24, 10.1.4.0/26]",
                    ", pod_gateway: 169.254.1.1",
                ),
        )
        .unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // (facts, from, dst, dst_ip, want)
        for (set, from, dst, dst_ip, want) in [
            (&set, None, "b", None, "none"),
            (&set, ip("10.1.1.1"), "b", None, "source"), // a's pod gateway, in its CIDR
            (&set, ip("::ffff:10.1.1.1"), "b", None, "source"),
            (&set, ip("10.1.4.65"), "b", None, "source"), // a's second block
            (&set, ip("10.1.4.1"), "b", None, "peer"),    // c's block in the same /24
            (&set, ip("10.0.0.1"), "b", None, "source"),
            (&set, ip("10.1.2.10"), "b", None, "destination"),
            (&set, ip("10.0.0.2"), "b", None, "destination"),
            (&set, ip("10.0.0.3"), "b", None, "peer"),
            (&set, ip("10.1.3.1"), "b", None, "peer"),
            (&set, ip("198.18.1.1"), "b", None, "other"),
            (&set, ip("10.1.2.11"), "web", ip("10.1.2.11"), "destination"),
            (&set, ip("10.0.0.2"), "web", ip("10.1.2.11"), "peer"),
            // No pod CIDRs: an address next to a's pod IP is no one's; the shared gateway is
            // the sender's own node.
            (&bare, ip("10.1.1.1"), "b", None, "other"),
            (&bare, ip("169.254.1.1"), "b", None, "source"),
            (&bare, ip("10.1.1.10"), "b", None, "source"),
        ] {
            assert_eq!(
                reporter(from, "a", dst, dst_ip, set, &set.owners()),
                want,
                "{from:?} → {dst}"
            );
        }
    }

    #[test]
    fn targets_are_placed_by_facts_or_not_at_all() {
        let set = parse("peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.10, pod_cidrs: [10.1.0.0/26]}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.70, pod_cidrs: [10.1.0.64/26]}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.2.0.10}\ntargets:\n  - {name: in-b, ip: 10.1.0.99, port: 80, protocol: http}\n  - {name: on-c, ip: 10.2.0.11, port: 80, protocol: http, node: c}\n  - {name: near-c, ip: 10.2.0.12, port: 80, protocol: http}\n").unwrap();
        let owners = set.owners();
        let node = |t: &str| {
            let ip = set.targets.iter().find(|x| x.name == t).unwrap().ip;
            target_node(t, ip, &set, &owners)
        };
        // The /24 guess said "a" for in-b (first node whose /24 holds it) and "c" for near-c.
        assert_eq!(node("in-b"), "b");
        assert_eq!(node("on-c"), "c");
        assert_eq!(node("near-c"), "");
    }
}
