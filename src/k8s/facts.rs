//! Kubernetes objects → the diagnosis engine's [`KubeFacts`] (pure): node conditions, CNI
//! DaemonSet pods per node, the pods behind targets with their events, and the NetworkPolicies
//! selecting them with the verdict for the probe's port from the agents.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::policy::{evaluate, Labels, Source};
use crate::diagnosis::{CniPodFacts, NodeFacts, PodEvent, PodFacts, PolicyFacts};

/// DaemonSet (or pod name) prefixes of the common CNI plugins' node agents.
pub const CNI_PREFIXES: &[&str] = &[
    "calico-node",
    "kube-flannel",
    "canal",
    "cilium",
    "weave-net",
    "aws-node",
    "antrea-agent",
    "kube-router",
    "kindnet",
    "ovnkube-node",
    "kube-ovn-cni",
    "azure-cns",
    "gke-metadata",
];
/// Events kept per pod (warnings first, then the most frequent).
pub const MAX_EVENTS: usize = 10;

pub fn node_facts(n: &Node) -> NodeFacts {
    let i = super::peers::node_info(n);
    NodeFacts {
        name: n.metadata.name.clone().unwrap_or_default(),
        ready: i.ready,
        cordoned: Some(i.cordoned),
    }
}

/// The CNI plugin's node agent, when this kube-system pod is one: named by its DaemonSet (or
/// its own name without the generated suffix). `cilium-operator` and the like are not.
pub fn cni_pod_facts(p: &Pod) -> Option<CniPodFacts> {
    let name = p.metadata.name.clone()?;
    let owner = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "DaemonSet")
        .map(|o| o.name.clone());
    let base = owner.unwrap_or_else(|| match name.rsplit_once('-') {
        Some((b, _)) => b.to_string(),
        None => name.clone(),
    });
    if !CNI_PREFIXES
        .iter()
        .any(|c| base == *c || base.strip_prefix(c).is_some_and(|r| r.starts_with("-ds")))
    {
        return None;
    }
    let st = p.status.as_ref();
    let statuses = st.and_then(|s| s.container_statuses.as_ref());
    Some(CniPodFacts {
        node: p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        name,
        ready: st
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True"),
        // Saturating: counts come from the API server (three containers near i32::MAX
        // overflowed a plain sum; found writing the k8s_objects fuzz target).
        restarts: statuses.map(|cs| {
            cs.iter().fold(0u32, |sum, c| {
                sum.saturating_add(u32::try_from(c.restart_count).unwrap_or(0))
            })
        }),
        crash_loop: statuses.map(|cs| {
            cs.iter().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
        }),
    })
}

/// The events of one object, warnings first, bounded.
pub fn pod_events(events: &[Event]) -> Vec<PodEvent> {
    let mut ev: Vec<&Event> = events.iter().collect();
    ev.sort_by_key(|e| {
        (
            e.type_.as_deref() != Some("Warning"),
            std::cmp::Reverse(e.count.unwrap_or(1)),
        )
    });
    ev.into_iter()
        .take(MAX_EVENTS)
        .map(|e| PodEvent {
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.as_ref().map(|m| m.chars().take(300).collect()),
            count: e.count.and_then(|c| u32::try_from(c).ok()),
        })
        .collect()
}

pub fn pod_facts(p: &Pod, target: Option<&str>, events: &[Event]) -> PodFacts {
    let st = p.status.as_ref();
    PodFacts {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        ip: st
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|s| s.parse().ok()),
        phase: st.and_then(|s| s.phase.clone()),
        ready: st
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True"),
        target: target.map(str::to_string),
        events: pod_events(events),
    }
}

/// The probing agents as policy sources.
pub fn sources(agents: &[Pod]) -> Vec<Source> {
    agents
        .iter()
        .filter_map(|p| {
            Some(Source {
                namespace: p.metadata.namespace.clone()?,
                labels: p.metadata.labels.clone().unwrap_or_default(),
                ip: p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?,
            })
        })
        .collect()
}

/// One target's policy facts: each policy selecting its pod, with the combined verdict for
/// `port` (policies add up, so all of them carry the same `admits_port`).
pub fn policy_facts(
    policies: &[NetworkPolicy],
    pod: &Pod,
    target: &str,
    port: u16,
    agents: &[Source],
) -> Vec<PolicyFacts> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let labels: Labels = pod.metadata.labels.clone().unwrap_or_default();
    let (names, verdict) = evaluate(policies, &ns, &labels, port, "TCP", agents);
    names
        .into_iter()
        .map(|name| PolicyFacts {
            namespace: ns.clone(),
            name,
            targets: vec![target.to_string()],
            admits_port: verdict.known(),
        })
        .collect()
}

/// Nodes and CNI pods limited to the nodes involved (all when `involved` is empty).
pub fn node_and_cni_facts(
    nodes: &[Node],
    system_pods: &[Pod],
    involved: &BTreeSet<String>,
) -> (Vec<NodeFacts>, Vec<CniPodFacts>) {
    let keep = |n: &str| involved.is_empty() || involved.contains(n);
    (
        nodes
            .iter()
            .map(node_facts)
            .filter(|f| keep(&f.name))
            .collect(),
        system_pods
            .iter()
            .filter_map(cni_pod_facts)
            .filter(|c| keep(&c.node))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cni_pods_are_recognised_with_their_health() {
        let table = [
            (
                json!({"metadata": {"name": "calico-node-x7k2p", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "calico-node", "uid": "u"}]},
                "spec": {"nodeName": "n1", "containers": []},
                "status": {"conditions": [{"type": "Ready", "status": "False"}],
                  "containerStatuses": [{"name": "calico-node", "image": "i", "imageID": "", "ready": false, "restartCount": 7,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
                Some(("n1", Some(false), Some(7), Some(true))),
            ),
            (
                json!({"metadata": {"name": "kube-flannel-ds-abcde"}, "spec": {"nodeName": "n2", "containers": []},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                  "containerStatuses": [{"name": "kube-flannel", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}}),
                Some(("n2", Some(true), Some(0), Some(false))),
            ),
            (
                json!({"metadata": {"name": "cilium-9fz2q"}, "spec": {"nodeName": "n3", "containers": []}, "status": {}}),
                Some(("n3", None, None, None)),
            ),
            (
                json!({"metadata": {"name": "cilium-operator-5d8f7-abcde", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "cilium-operator-5d8f7", "uid": "u"}]},
                "spec": {"nodeName": "n3", "containers": []}}),
                None,
            ),
            (
                json!({"metadata": {"name": "coredns-abc12"}, "spec": {"nodeName": "n1", "containers": []}}),
                None,
            ),
        ];
        for (v, want) in table {
            let name = v["metadata"]["name"].as_str().unwrap().to_string();
            let got = cni_pod_facts(&pod(v));
            let got = got.map(|c| (c.node.clone(), c.ready, c.restarts, c.crash_loop));
            let want = want.map(|(n, r, x, c)| (n.to_string(), r, x, c));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn restart_counts_saturate() {
        let status = |n: i64| json!({"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": n});
        for (counts, want) in [
            (vec![1, 2], 3),
            (vec![i64::from(i32::MAX); 3], u32::MAX),
            (vec![-5, 7], 7),
        ] {
            let cs: Vec<_> = counts.iter().map(|n| status(*n)).collect();
            let p = pod(
                json!({"metadata": {"name": "calico-node-x"}, "spec": {"nodeName": "n1", "containers": []},
                "status": {"containerStatuses": cs}}),
            );
            assert_eq!(
                cni_pod_facts(&p).unwrap().restarts,
                Some(want),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn pod_and_events() {
        let p = pod(
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"nodeName": "n2", "containers": []},
            "status": {"phase": "Pending", "podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        let ev: Vec<Event> = serde_json::from_value(json!([
            {"metadata": {"name": "e1"}, "involvedObject": {}, "type": "Normal", "reason": "Scheduled", "count": 1},
            {"metadata": {"name": "e2"}, "involvedObject": {}, "type": "Warning", "reason": "FailedCreatePodSandbox",
             "message": "plugin type=\"calico\" failed (add): connection refused", "count": 12}
        ])).unwrap();
        let f = pod_facts(&p, Some("web.shop"), &ev);
        assert_eq!(f.phase.as_deref(), Some("Pending"));
        assert_eq!(f.ready, Some(false));
        assert_eq!(f.ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(f.node.as_deref(), Some("n2"));
        assert_eq!(f.events[0].reason, "FailedCreatePodSandbox");
        assert_eq!(f.events[0].count, Some(12));
        assert_eq!(f.events.len(), 2);
    }

    #[test]
    fn policies_for_a_target_carry_the_combined_verdict() {
        let web = pod(
            json!({"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}}}),
        );
        let deny: NetworkPolicy =
            serde_json::from_value(json!({"metadata": {"name": "deny", "namespace": "shop"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}))
            .unwrap();
        let agents = sources(&[pod(
            json!({"metadata": {"name": "mp", "namespace": "meshprobe", "labels": {"app.kubernetes.io/name": "meshprobe"}},
            "status": {"podIP": "10.9.0.1"}}),
        )]);
        let f = policy_facts(&[deny], &web, "web.shop", 8080, &agents);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].name.as_str(), f[0].admits_port),
            ("deny", Some(false))
        );
        assert_eq!(f[0].targets, ["web.shop"]);
    }
}
