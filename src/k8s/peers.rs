//! Pods and Nodes → the peer set (pure). Only Running, Ready pods with an IP that are not
//! terminating are probed; peers that have not had their chance yet (node NotReady or cordoned,
//! pod Ready only for a moment) are probed but *held*: the mesh view reports findings that only
//! concern held nodes apart, without alarm.
//!
//! Address facts for the ownership map ([`crate::owners`]): a target's node is its pod's
//! `spec.nodeName`; a node's pod CIDRs are `Node.spec.podCIDRs` (else `spec.podCIDR`) — but
//! only a CIDR that holds one of the node's agent pod IPs (`status.podIPs`, first per family):
//! CNIs with their own IPAM (Calico blocks, AWS VPC CNI) leave `podCIDRs` set but unused, and
//! a CIDR the node's own pod is not in says nothing about where pods are. CIDRs two nodes
//! overlap on are dropped on both sides (unknown, never a pick).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Serialize;

use crate::net::Cidr;
use crate::peers::{Peer, PeerSet, Target, MAX_PEERS, MAX_TARGETS};
use meshprobe_core::parse::validate_name;

use super::targets::{parse_annotation, PROBE_ANNOTATION};

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A peer probed without alarm for now, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub node: String,
    /// `node_not_ready`, `node_cordoned`, `just_ready` or `node_unknown`.
    pub reason: &'static str,
}

/// A pod whose `meshprobe.io/probe` annotation could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadAnnotation {
    /// `namespace/name`.
    pub pod: String,
    pub error: String,
}

/// What the pure function makes of the cluster's objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KubePeers {
    pub set: PeerSet,
    pub held: Vec<Held>,
    pub bad_annotations: Vec<BadAnnotation>,
    /// Pods seen but not probed (not Running/Ready, no IP, terminating, no node), for the log.
    pub skipped: usize,
}

/// Node state as far as discovery cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub ip: Option<IpAddr>,
    /// Dual-stack: every family's InternalIP, `ip` first (empty when it has one family).
    pub ips: Vec<IpAddr>,
    pub zone: Option<String>,
    pub ready: Option<bool>,
    pub cordoned: bool,
    /// `spec.podCIDRs` (else `spec.podCIDR`), those that parse.
    pub pod_cidrs: Vec<Cidr>,
}

pub fn node_info(n: &Node) -> NodeInfo {
    let status = n.status.as_ref();
    let addrs = status.and_then(|s| s.addresses.as_ref());
    let addr = |kind: &str| {
        addrs.and_then(|a| {
            a.iter()
                .filter(|x| x.type_ == kind)
                .find_map(|x| x.address.parse::<IpAddr>().ok().filter(|ip| usable(*ip)))
        })
    };
    let ip = addr("InternalIP").or_else(|| addr("ExternalIP"));
    let other = ip.and_then(|ip| {
        addrs.and_then(|a| {
            a.iter()
                .filter(|x| x.type_ == "InternalIP")
                .filter_map(|x| x.address.parse::<IpAddr>().ok())
                .map(|x| x.to_canonical())
                .find(|x| usable(*x) && x.is_ipv6() != ip.to_canonical().is_ipv6())
        })
    });
    NodeInfo {
        ip,
        ips: other.map_or_else(Vec::new, |o| ip.into_iter().chain([o]).collect()),
        zone: n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ZONE_LABEL))
            .filter(|z| validate_name(z).is_ok())
            .cloned(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True"),
        cordoned: n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        pod_cidrs: n
            .spec
            .as_ref()
            .map(|s| {
                let list = s.pod_cidrs.as_deref().filter(|l| !l.is_empty());
                list.map_or_else(|| s.pod_cidr.iter().cloned().collect(), <[String]>::to_vec)
            })
            .unwrap_or_default()
            .iter()
            .take(crate::peers::MAX_POD_CIDRS)
            .filter_map(|c| Cidr::parse(c))
            .collect(),
    }
}

/// `primary` and the other family's address among `all`, as the peers file's lists are (empty
/// when there is no other family: the primary alone).
fn family_list(primary: IpAddr, all: &[IpAddr]) -> Vec<IpAddr> {
    let primary = primary.to_canonical();
    all.iter()
        .map(|ip| ip.to_canonical())
        .find(|ip| ip.is_ipv6() != primary.is_ipv6())
        .map_or_else(Vec::new, |other| vec![primary, other])
}

/// A pod's addresses: `status.podIP`, then `status.podIPs`, the first usable one per family.
pub fn pod_ips(p: &Pod) -> Vec<IpAddr> {
    let Some(st) = p.status.as_ref() else {
        return Vec::new();
    };
    let listed = st.pod_ips.iter().flatten().map(|x| x.ip.as_str());
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in st.pod_ip.as_deref().into_iter().chain(listed) {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            continue;
        };
        let ip = ip.to_canonical();
        if usable(ip) && !out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            out.push(ip);
        }
    }
    out
}

/// Keep of a Pod only what [`peer_set`] reads, so the watch stores stay small however large
/// the objects are (managed fields, container specs, other annotations are dropped).
pub fn slim_pod(p: &mut Pod) {
    p.metadata.managed_fields = None;
    p.metadata.owner_references = None;
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.retain(|k, _| k == PROBE_ANNOTATION);
    }
    p.spec = p.spec.take().map(|s| k8s_openapi::api::core::v1::PodSpec {
        node_name: s.node_name,
        ..Default::default()
    });
    if let Some(st) = p.status.as_mut() {
        *st = k8s_openapi::api::core::v1::PodStatus {
            phase: st.phase.take(),
            pod_ip: st.pod_ip.take(),
            pod_ips: st.pod_ips.take(),
            host_ip: st.host_ip.take(),
            conditions: st
                .conditions
                .take()
                .map(|c| c.into_iter().filter(|c| c.type_ == "Ready").collect()),
            ..Default::default()
        };
    }
}

/// Keep of a Node only what [`node_info`] reads (a Node's image list alone can be tens of KiB).
pub fn slim_node(n: &mut Node) {
    n.metadata.managed_fields = None;
    n.metadata.annotations = None;
    if let Some(st) = n.status.as_mut() {
        *st = k8s_openapi::api::core::v1::NodeStatus {
            addresses: st.addresses.take(),
            conditions: st
                .conditions
                .take()
                .map(|c| c.into_iter().filter(|c| c.type_ == "Ready").collect()),
            ..Default::default()
        };
    }
}

/// Running, Ready, with an IP, not terminating: a pod worth probing. Returns its IP and when
/// it became Ready (Unix seconds), when known.
pub fn probe_ready(p: &Pod) -> Option<(IpAddr, Option<i64>)> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let st = p.status.as_ref()?;
    if st.phase.as_deref() != Some("Running") {
        return None;
    }
    let ready = st
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    let ip = *pod_ips(p).first()?;
    Some((
        ip,
        ready.last_transition_time.as_ref().map(|t| t.0.as_second()),
    ))
}

/// An address a peer or target can have: what [`crate::peers::validate`] accepts (a pod or
/// node claiming `0.0.0.0` or a multicast address is not probed: found writing the k8s_objects fuzz target).
fn usable(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast())
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

/// `(agent pods, nodes by name, now, grace)` → the peer set. `grace`: how long a freshly Ready
/// pod is held. Deterministic: sorted by node name; two agents on one node (a rolling update)
/// → the one Ready longest... then by name, so every agent picks the same.
pub fn peer_set(
    agents: &[&Pod],
    targets: &[&Pod],
    nodes: &BTreeMap<String, NodeInfo>,
    now_unix: i64,
    grace_secs: i64,
) -> KubePeers {
    let mut out = KubePeers::default();
    let mut by_node: BTreeMap<String, (Peer, Option<i64>, String)> = BTreeMap::new();
    for p in agents {
        let Some((pod_ip, ready_since)) = probe_ready(p) else {
            out.skipped += 1;
            continue;
        };
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            out.skipped += 1;
            continue;
        };
        if validate_name(&node).is_err() {
            out.skipped += 1;
            continue;
        }
        let info = nodes.get(&node);
        // The node's address: its status, else the pod's hostIP.
        let node_ip = info.and_then(|n| n.ip).or_else(|| {
            p.status
                .as_ref()
                .and_then(|s| s.host_ip.as_deref())
                .and_then(|s| s.parse().ok())
                .filter(|ip| usable(*ip))
        });
        let Some(node_ip) = node_ip else {
            out.skipped += 1;
            continue;
        };
        let peer = Peer {
            node: node.clone(),
            node_ip,
            pod_ip,
            // Dual-stack: the other family's addresses, when the node's or pod's status has them.
            node_ips: info
                .map(|n| family_list(node_ip, &n.ips))
                .unwrap_or_default(),
            pod_ips: family_list(pod_ip, &pod_ips(p)),
            zone: info.and_then(|n| n.zone.clone()),
            port: None,
            // Only CIDRs that hold this node's own pod: the CNI uses them.
            pod_cidrs: info
                .map(|n| {
                    let ips = pod_ips(p);
                    n.pod_cidrs
                        .iter()
                        .filter(|c| ips.iter().any(|ip| c.contains(*ip)))
                        .copied()
                        .collect()
                })
                .unwrap_or_default(),
            pod_gateway: None,
            pod_gateways: Vec::new(),
        };
        let key = pod_key(p);
        let better = match by_node.get(&node) {
            None => true,
            Some((_, since, k)) => {
                (ready_since.unwrap_or(i64::MAX), &key) < (since.unwrap_or(i64::MAX), k)
            }
        };
        if better {
            by_node.insert(node, (peer, ready_since, key));
        } else {
            out.skipped += 1;
        }
    }
    for (node, (peer, since, _)) in by_node.into_iter().take(MAX_PEERS) {
        let reason = match nodes.get(&node) {
            None => Some("node_unknown"),
            Some(n) if n.ready != Some(true) => Some("node_not_ready"),
            Some(n) if n.cordoned => Some("node_cordoned"),
            // A Ready time more than one grace in the future is this clock (or the API
            // server's) stepped or skewed, not a fresh pod: holding it would hide the peer for
            // as long as the skew lasts.
            _ if since.is_some_and(|s| (-grace_secs..grace_secs).contains(&(now_unix - s))) => {
                Some("just_ready")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            out.held.push(Held {
                node: node.clone(),
                reason,
            });
        }
        out.set.peers.push(peer);
    }
    drop_overlapping_cidrs(&mut out.set.peers);
    let mut names = std::collections::BTreeSet::new();
    let mut sorted: Vec<&&Pod> = targets.iter().collect();
    sorted.sort_by_key(|p| pod_key(p));
    for p in sorted {
        let Some(spec) = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROBE_ANNOTATION))
        else {
            continue;
        };
        let Some((ip, _)) = probe_ready(p) else {
            continue;
        };
        let ns = p.metadata.namespace.as_deref().unwrap_or("default");
        let name = p.metadata.name.as_deref().unwrap_or("");
        // Its node, when an agent runs there (a node name is a fact about peers only) and no
        // other node's pod CIDR holds its IP (facts that disagree place nothing).
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| out.set.peer(n).is_some())
            .filter(|n| {
                !out.set
                    .peers
                    .iter()
                    .any(|q| q.node != *n && q.pod_cidrs.iter().any(|c| c.contains(ip)))
            });
        match parse_annotation(spec) {
            Ok(specs) => {
                for (i, s) in specs.iter().enumerate() {
                    let tname = if specs.len() == 1 {
                        format!("{name}.{ns}")
                    } else {
                        format!("{name}.{ns}.{}", s.port)
                    };
                    if out.set.targets.len() >= MAX_TARGETS
                        || validate_name(&tname).is_err()
                        || !names.insert(tname.clone())
                    {
                        if i == 0 {
                            out.bad_annotations.push(BadAnnotation {
                                pod: pod_key(p),
                                error: format!("target {tname:?} is a duplicate, invalid, or beyond {MAX_TARGETS} targets"),
                            });
                        }
                        continue;
                    }
                    out.set.targets.push(Target {
                        name: tname,
                        ip,
                        port: s.port,
                        protocol: s.protocol,
                        path: s.path.clone(),
                        node: node.clone(),
                        ips: family_list(ip, &pod_ips(p)),
                    });
                }
            }
            Err(error) => out.bad_annotations.push(BadAnnotation {
                pod: pod_key(p),
                error,
            }),
        }
    }
    out
}

/// Pod CIDRs two nodes overlap on are nobody's: drop them from both (the peers file refuses
/// overlap; from the API it is a disagreement, and a disagreement places nothing).
fn drop_overlapping_cidrs(peers: &mut [Peer]) {
    let all: Vec<(usize, Cidr)> = peers
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.pod_cidrs.iter().map(move |c| (i, *c)))
        .collect();
    for (i, p) in peers.iter_mut().enumerate() {
        p.pod_cidrs.retain(|c| {
            !all.iter()
                .any(|(j, o)| *j != i && (c.inside(o) || o.inside(c)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::testobj::{node, pod};

    fn nodes(list: &[Node]) -> BTreeMap<String, NodeInfo> {
        list.iter()
            .map(|n| (n.metadata.name.clone().unwrap(), node_info(n)))
            .collect()
    }

    /// Addresses `peers::validate` refuses never reach the published set (pod IP, node
    /// address, hostIP fallback, target pod IP).
    #[test]
    fn unusable_addresses_are_skipped() {
        for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1"] {
            let mut target = pod("web", "n1", Some(bad), "Running", true);
            crate::k8s::testobj::annotate(&mut target, "tcp:80");
            let got = peer_set(
                &[&pod("a", "n1", Some(bad), "Running", true)],
                &[&target],
                &nodes(&[node("n1", "198.18.1.11", None, true, false)]),
                0,
                0,
            );
            assert!(
                got.set.peers.is_empty() && got.set.targets.is_empty(),
                "{bad}"
            );
            assert_eq!(got.skipped, 1);
            let got = peer_set(
                &[&pod("a", "n1", Some("198.19.1.10"), "Running", true)],
                &[],
                &nodes(&[node("n1", bad, None, true, false)]),
                0,
                0,
            );
            assert!(got.set.peers.is_empty(), "node address {bad}");
            crate::peers::validate(&got.set).unwrap();
        }
    }

    #[test]
    fn slimming_keeps_what_the_peer_set_reads() {
        let full: Pod =
            serde_json::from_str(include_str!("../../tests/fixtures/k8s/pod-target.json")).unwrap();
        let mut slim = full.clone();
        slim_pod(&mut slim);
        assert!(slim.spec.as_ref().unwrap().containers.is_empty());
        assert_eq!(
            slim.status
                .as_ref()
                .unwrap()
                .conditions
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        assert!(
            serde_json::to_string(&slim).unwrap().len()
                < serde_json::to_string(&full).unwrap().len() / 2
        );
        let ns = nodes(&[node("node-2", "10.0.0.2", None, true, false)]);
        assert_eq!(
            peer_set(&[&full], &[&full], &ns, 0, 0),
            peer_set(&[&slim], &[&slim], &ns, 0, 0)
        );
        let full_node: Node =
            serde_json::from_str(include_str!("../../tests/fixtures/k8s/node.json")).unwrap();
        let mut slim_n = full_node.clone();
        slim_node(&mut slim_n);
        assert_eq!(node_info(&full_node), node_info(&slim_n));
        assert!(slim_n.status.as_ref().unwrap().node_info.is_none());
    }

    #[test]
    fn node_facts_from_the_object() {
        let n = node("n1", "10.0.0.1", Some("zone-a"), true, false);
        assert_eq!(
            node_info(&n),
            NodeInfo {
                ip: Some("10.0.0.1".parse().unwrap()),
                ips: Vec::new(),
                zone: Some("zone-a".into()),
                ready: Some(true),
                cordoned: false,
                pod_cidrs: Vec::new(),
            }
        );
        let n = node("n2", "10.0.0.2", None, false, true);
        let i = node_info(&n);
        assert_eq!((i.ready, i.cordoned, i.zone), (Some(false), true, None));
    }

    #[test]
    fn only_running_ready_pods_with_an_ip_not_terminating_are_probed() {
        let ns = nodes(&[
            node("n1", "10.0.0.1", Some("a"), true, false),
            node("n2", "10.0.0.2", Some("b"), true, false),
        ]);
        // (pod, expected to be probed)
        let mut pending = pod("mp-p", "n1", Some("10.1.0.9"), "Pending", false);
        pending.metadata.name = Some("mp-p".into());
        let mut terminating = pod("mp-t", "n2", Some("10.1.1.9"), "Running", true);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1000).unwrap(),
            ));
        let table: Vec<(Pod, bool)> = vec![
            (pod("mp-1", "n1", Some("10.1.0.5"), "Running", true), true),
            (pod("mp-2", "n2", Some("10.1.1.5"), "Running", false), false),
            (pod("mp-3", "n2", None, "Running", true), false),
            (pending, false),
            (terminating, false),
        ];
        for (p, want) in &table {
            let got = peer_set(&[p], &[], &ns, 10_000, 0);
            assert_eq!(got.set.peers.len() == 1, *want, "{:?}", p.metadata.name);
        }
        let all: Vec<&Pod> = table.iter().map(|(p, _)| p).collect();
        let got = peer_set(&all, &[], &ns, 10_000, 0);
        assert_eq!(got.set.peers.len(), 1);
        assert_eq!(got.skipped, 4);
        let p = &got.set.peers[0];
        assert_eq!(p.node, "n1");
        assert_eq!(p.node_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.pod_ip, "10.1.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(p.zone.as_deref(), Some("a"));
        assert!(got.held.is_empty());
    }

    #[test]
    fn not_ready_cordoned_unknown_and_fresh_are_held() {
        let ns = nodes(&[
            node("ok", "10.0.0.1", None, true, false),
            node("down", "10.0.0.2", None, false, false),
            node("cordoned", "10.0.0.3", None, true, true),
            node("fresh", "10.0.0.4", None, true, false),
        ]);
        let mut fresh = pod("mp-f", "fresh", Some("10.1.4.5"), "Running", true);
        crate::k8s::testobj::ready_since(&mut fresh, 9_990);
        let pods = [
            pod("mp-ok", "ok", Some("10.1.1.5"), "Running", true),
            pod("mp-d", "down", Some("10.1.2.5"), "Running", true),
            pod("mp-c", "cordoned", Some("10.1.3.5"), "Running", true),
            fresh,
            pod("mp-u", "unknown", Some("10.1.5.5"), "Running", true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let got = peer_set(&refs, &[], &ns, 10_000, 30);
        // Held peers are still probed.
        assert_eq!(got.set.peers.len(), 4, "unknown node has no IP: {got:?}");
        let held: Vec<(&str, &str)> = got
            .held
            .iter()
            .map(|h| (h.node.as_str(), h.reason))
            .collect();
        assert_eq!(
            held,
            [
                ("cordoned", "node_cordoned"),
                ("down", "node_not_ready"),
                ("fresh", "just_ready")
            ]
        );
        // After the grace the fresh one is an ordinary peer.
        let later = peer_set(&refs, &[], &ns, 10_100, 30);
        assert!(!later.held.iter().any(|h| h.node == "fresh"));
        // The unknown node's pod with a hostIP is probed but held.
        let mut u = pod("mp-u", "unknown", Some("10.1.5.5"), "Running", true);
        u.status.as_mut().unwrap().host_ip = Some("10.0.0.5".into());
        let got = peer_set(&[&u], &[], &ns, 10_000, 30);
        assert_eq!(got.held[0].reason, "node_unknown");
    }

    #[test]
    fn a_stepped_wall_clock_holds_a_fresh_pod_for_one_grace_at_most() {
        let ns = nodes(&[node("n1", "10.0.0.1", None, true, false)]);
        let mut p = pod("mp-1", "n1", Some("10.1.0.5"), "Running", true);
        crate::k8s::testobj::ready_since(&mut p, 100_000);
        // (agent's clock minus the Ready time, held?)
        let table: &[(i64, bool)] = &[
            (0, true),
            (29, true),
            (30, false),
            (3_600, false), // clock stepped forward 1 h: not held (as after the grace)
            (-5, true),     // a few seconds of skew: still held
            (-29, true),
            (-30, true),
            (-31, false),    // clock more than one grace behind: not held ...
            (-3_600, false), // ... not for the hour the clock was stepped back
            (-86_400, false),
        ];
        for &(age, held) in table {
            let got = peer_set(&[&p], &[], &ns, 100_000 + age, 30);
            assert_eq!(got.set.peers.len(), 1, "age {age}: always probed");
            assert_eq!(
                got.held.iter().any(|h| h.reason == "just_ready"),
                held,
                "age {age}"
            );
        }
    }

    #[test]
    fn two_agents_on_one_node_pick_the_same_one_everywhere() {
        let ns = nodes(&[node("n1", "10.0.0.1", None, true, false)]);
        let mut old = pod("mp-old", "n1", Some("10.1.0.5"), "Running", true);
        crate::k8s::testobj::ready_since(&mut old, 100);
        let mut new = pod("mp-new", "n1", Some("10.1.0.6"), "Running", true);
        crate::k8s::testobj::ready_since(&mut new, 200);
        for order in [[&old, &new], [&new, &old]] {
            let got = peer_set(&order, &[], &ns, 10_000, 0);
            assert_eq!(got.set.peers.len(), 1);
            assert_eq!(got.set.peers[0].pod_ip.to_string(), "10.1.0.5");
        }
    }

    #[test]
    fn annotated_pods_become_targets_and_bad_annotations_are_reported() {
        let ns = nodes(&[]);
        let mut web = pod("web", "n1", Some("10.1.0.7"), "Running", true);
        crate::k8s::testobj::annotate(&mut web, "http:8080/healthz");
        let mut db = pod("db", "n1", Some("10.1.0.8"), "Running", true);
        crate::k8s::testobj::annotate(&mut db, "tcp:5432, http:8080");
        let mut bad = pod("bad", "n1", Some("10.1.0.9"), "Running", true);
        crate::k8s::testobj::annotate(&mut bad, "udp:53");
        let mut notready = pod("nr", "n1", Some("10.1.0.10"), "Running", false);
        crate::k8s::testobj::annotate(&mut notready, "tcp:1");
        let plain = pod("plain", "n1", Some("10.1.0.11"), "Running", true);
        let got = peer_set(&[], &[&web, &db, &bad, &notready, &plain], &ns, 0, 0);
        let t: Vec<String> = got
            .set
            .targets
            .iter()
            .map(|t| {
                format!(
                    "{} {}:{} {} {}",
                    t.name,
                    t.ip,
                    t.port,
                    t.protocol.as_str(),
                    t.http_path()
                )
            })
            .collect();
        assert_eq!(
            t,
            [
                "db.default.5432 10.1.0.8:5432 tcp /",
                "db.default.8080 10.1.0.8:8080 http /",
                "web.default 10.1.0.7:8080 http /healthz"
            ]
        );
        assert_eq!(got.bad_annotations.len(), 1);
        assert_eq!(got.bad_annotations[0].pod, "default/bad");
        assert!(
            got.bad_annotations[0].error.contains("udp"),
            "{:?}",
            got.bad_annotations
        );
        assert!(crate::peers::validate(&got.set).is_ok());
    }

    #[test]
    fn pod_cidrs_pod_ips_and_target_nodes_are_read_as_facts() {
        use k8s_openapi::api::core::v1::PodIP;
        let with_cidrs = |mut n: Node, cidrs: &[&str]| {
            let spec = n.spec.get_or_insert_with(Default::default);
            spec.pod_cidr = cidrs.first().map(|c| c.to_string());
            spec.pod_cidrs = Some(cidrs.iter().map(|c| c.to_string()).collect());
            n
        };
        let dual = |mut p: Pod, ips: &[&str]| {
            p.status.as_mut().unwrap().pod_ips =
                Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
            p
        };
        let mut legacy = node("n4", "10.0.0.4", None, true, false);
        legacy.spec.get_or_insert_with(Default::default).pod_cidr = Some("10.4.0.0/24".into());
        let ns = nodes(&[
            // Dual-stack, as kube-controller-manager allocates them.
            with_cidrs(
                node("n1", "10.0.0.1", None, true, false),
                &["10.1.0.0/24", "fd00:1::/64"],
            ),
            // Set but unused (a CNI with its own IPAM): the agent pod is elsewhere.
            with_cidrs(node("n2", "10.0.0.2", None, true, false), &["10.2.0.0/24"]),
            // Overlapping n1's: nobody's.
            with_cidrs(
                node("n3", "10.0.0.3", None, true, false),
                &["10.1.0.128/25", "junk"],
            ),
            // Only the older single field.
            legacy,
        ]);
        let a1 = dual(
            pod("mp-1", "n1", Some("10.1.0.5"), "Running", true),
            &["10.1.0.5", "10.1.0.6", "fd00:1::5", "fd00:1::6"],
        );
        let a2 = pod("mp-2", "n2", Some("10.9.7.5"), "Running", true);
        let a3 = pod("mp-3", "n3", Some("10.1.0.133"), "Running", true);
        let a4 = pod("mp-4", "n4", Some("10.4.0.9"), "Running", true);
        // Only podIPs (no podIP): its first is the pod IP.
        let mut only_list = dual(
            pod("web", "n2", None, "Running", true),
            &["fd00:2::7", "10.9.7.7"],
        );
        crate::k8s::testobj::annotate(&mut only_list, "tcp:80");
        // On a node with no agent: no node fact.
        let mut elsewhere = pod("db", "n9", Some("10.9.9.9"), "Running", true);
        crate::k8s::testobj::annotate(&mut elsewhere, "tcp:5432");
        // spec.nodeName says n4; n1's pod CIDR holds its IP only once n3's overlap is gone.
        let mut odd = pod("odd", "n4", Some("10.1.0.77"), "Running", true);
        crate::k8s::testobj::annotate(&mut odd, "tcp:1");
        let got = peer_set(
            &[&a1, &a2, &a3, &a4],
            &[&only_list, &elsewhere, &odd],
            &ns,
            10_000,
            0,
        );
        let cidrs: Vec<(String, Vec<String>)> = got
            .set
            .peers
            .iter()
            .map(|p| {
                let c = p.pod_cidrs.iter().map(ToString::to_string).collect();
                (p.node.clone(), c)
            })
            .collect();
        let want: Vec<(String, Vec<String>)> = vec![
            ("n1".into(), vec![]),
            ("n2".into(), vec![]),
            ("n3".into(), vec![]),
            ("n4".into(), vec!["10.4.0.0/24".into()]),
        ];
        // n1 and n3 overlap (10.1.0.128/25 inside 10.1.0.0/24): both dropped; n1's IPv6 /64
        // stays only when nothing overlaps it.
        assert_eq!(
            cidrs[0].1,
            ["fd00:1::/64"],
            "n1 keeps the CIDR nobody overlaps: {cidrs:?}"
        );
        assert_eq!(cidrs[1..], want[1..], "{cidrs:?}");
        let targets: Vec<(&str, String, Option<&str>)> = got
            .set
            .targets
            .iter()
            .map(|t| (t.name.as_str(), t.ip.to_string(), t.node.as_deref()))
            .collect();
        assert_eq!(
            targets,
            [
                ("db.default", "10.9.9.9".to_string(), None),
                ("odd.default", "10.1.0.77".to_string(), Some("n4")),
                ("web.default", "fd00:2::7".to_string(), Some("n2")),
            ]
        );
        assert_eq!(got.set.peers[0].pod_ip.to_string(), "10.1.0.5");
        // Dual-stack: the other family's first pod IP (and none for single-stack pods).
        let ips = |v: &[IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(ips(&got.set.peers[0].pod_ips), ["10.1.0.5", "fd00:1::5"]);
        assert!(got.set.peers[1].pod_ips.is_empty());
        assert_eq!(ips(&got.set.targets[2].ips), ["fd00:2::7", "10.9.7.7"]);
        assert!(got.set.targets[0].ips.is_empty());
        crate::peers::validate(&got.set).unwrap();
        // Without n3, n1's IPv4 CIDR is a fact and holds odd's IP: the facts disagree, so its
        // node fact (n4) is dropped and the CIDR places it.
        let got = peer_set(&[&a1, &a2, &a4], &[&odd], &ns, 10_000, 0);
        assert_eq!(
            got.set.peers[0].pod_cidrs.len(),
            2,
            "{:?}",
            got.set.peers[0]
        );
        assert_eq!(got.set.targets[0].node, None);
        let owners = got.set.owners();
        assert_eq!(owners.target_node("odd.default"), Some(0));
        crate::peers::validate(&got.set).unwrap();
    }

    /// A dual-stack node lists an InternalIP per family: the first is the node IP, the other
    /// family's first is its second address; a second address of one family is not.
    #[test]
    fn a_dual_stack_node_has_an_address_per_family() {
        use k8s_openapi::api::core::v1::NodeAddress;
        let mut n = node("n1", "10.0.0.1", None, true, false);
        let addrs = n.status.as_mut().unwrap().addresses.as_mut().unwrap();
        for a in ["10.0.0.99", "fd00::1", "fd00::2"] {
            addrs.push(NodeAddress {
                type_: "InternalIP".into(),
                address: a.into(),
            });
        }
        let info = node_info(&n);
        assert_eq!(info.ip, Some("10.0.0.1".parse().unwrap()));
        let got: Vec<String> = info.ips.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.1", "fd00::1"]);
        let single = node_info(&node("n2", "10.0.0.2", None, true, false));
        assert!(single.ips.is_empty());
        let a = pod("mp-1", "n1", Some("10.1.0.5"), "Running", true);
        let got = peer_set(&[&a], &[], &nodes(&[n]), 10_000, 0);
        let ips: Vec<String> = got.set.peers[0]
            .node_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.0.0.1", "fd00::1"]);
        crate::peers::validate(&got.set).unwrap();
    }
}
