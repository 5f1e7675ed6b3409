//! NetworkPolicy evaluation (pure): which policies select a pod, and whether their ingress
//! rules admit a probe's port from the probing agents. Policies add up: traffic is admitted
//! when any policy selecting the pod for ingress admits it. What cannot be decided from the
//! objects at hand (named ports, namespace labels other than `kubernetes.io/metadata.name`)
//! is `Unknown`, never guessed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub type Labels = BTreeMap<String, String>;

/// Three-valued truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    fn and(self, o: Tri) -> Tri {
        match (self, o) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Unknown,
        }
    }
    fn or(self, o: Tri) -> Tri {
        match (self, o) {
            (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
            (Tri::No, Tri::No) => Tri::No,
            _ => Tri::Unknown,
        }
    }
    fn any(it: impl IntoIterator<Item = Tri>) -> Tri {
        it.into_iter().fold(Tri::No, Tri::or)
    }
    pub fn known(self) -> Option<bool> {
        match self {
            Tri::Yes => Some(true),
            Tri::No => Some(false),
            Tri::Unknown => None,
        }
    }
}

/// A label selector against labels. `None` (absent) selects nothing here; an empty selector
/// selects everything. `known`: label keys whose absence is certain (`None`: all are known).
fn select(sel: &LabelSelector, labels: &Labels, known: Option<&[&str]>) -> Tri {
    let has = |k: &str| -> Tri {
        match (labels.contains_key(k), known) {
            (true, _) => Tri::Yes,
            (false, None) => Tri::No,
            (false, Some(keys)) if keys.contains(&k) => Tri::No,
            (false, Some(_)) => Tri::Unknown,
        }
    };
    let mut r = Tri::Yes;
    for (k, v) in sel.match_labels.iter().flatten() {
        r = r.and(match labels.get(k) {
            Some(x) if x == v => Tri::Yes,
            Some(_) => Tri::No,
            None => has(k),
        });
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        let v = labels.get(&e.key);
        let t = match e.operator.as_str() {
            "In" => match v {
                Some(x) => bool_tri(values.contains(x)),
                None => match has(&e.key) {
                    Tri::Unknown => Tri::Unknown,
                    _ => Tri::No,
                },
            },
            "NotIn" => match v {
                Some(x) => bool_tri(!values.contains(x)),
                None => match has(&e.key) {
                    Tri::Unknown => Tri::Unknown,
                    _ => Tri::Yes,
                },
            },
            "Exists" => has(&e.key),
            "DoesNotExist" => match has(&e.key) {
                Tri::Yes => Tri::No,
                Tri::No => Tri::Yes,
                Tri::Unknown => Tri::Unknown,
            },
            _ => Tri::Unknown,
        };
        r = r.and(t);
    }
    r
}

fn bool_tri(b: bool) -> Tri {
    if b {
        Tri::Yes
    } else {
        Tri::No
    }
}

/// Whether a policy's podSelector selects a pod with `labels` (the policy's namespace is the pod's).
pub fn selects(p: &NetworkPolicy, labels: &Labels) -> bool {
    let sel = p
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.clone())
        .unwrap_or_default();
    select(&sel, labels, None) == Tri::Yes
}

/// Whether the policy restricts ingress: `policyTypes` names Ingress, or is absent (then
/// Ingress is always implied).
pub fn governs_ingress(p: &NetworkPolicy) -> bool {
    match p.spec.as_ref().and_then(|s| s.policy_types.as_ref()) {
        None => true,
        Some(t) => t.iter().any(|x| x == "Ingress"),
    }
}

/// A probing agent, as a NetworkPolicy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub namespace: String,
    pub labels: Labels,
    pub ip: IpAddr,
}

fn port_matches(ports: &[NetworkPolicyPort], port: u16, protocol: &str) -> Tri {
    if ports.is_empty() {
        return Tri::Yes;
    }
    Tri::any(ports.iter().map(|p| {
        if p.protocol.as_deref().unwrap_or("TCP") != protocol {
            return Tri::No;
        }
        match &p.port {
            None => Tri::Yes,
            Some(IntOrString::Int(n)) => {
                let end = p.end_port.unwrap_or(*n);
                bool_tri((*n..=end).contains(&i32::from(port)))
            }
            // Named ports need the target container's port names: not decided here.
            Some(IntOrString::String(_)) => Tri::Unknown,
        }
    }))
}

/// Whether `ip` is in the ipBlock CIDR `cidr`; `None` when it is not a CIDR (undecided).
fn cidr_contains(cidr: &str, ip: IpAddr) -> Option<bool> {
    crate::net::Cidr::parse(cidr).map(|c| c.contains(ip))
}

fn peer_matches(peer: &NetworkPolicyPeer, policy_ns: &str, src: &Source) -> Tri {
    if let Some(b) = &peer.ip_block {
        let inside = match cidr_contains(&b.cidr, src.ip) {
            Some(x) => bool_tri(x),
            None => return Tri::Unknown,
        };
        let excepted =
            Tri::any(
                b.except
                    .iter()
                    .flatten()
                    .map(|e| match cidr_contains(e, src.ip) {
                        Some(x) => bool_tri(x),
                        None => Tri::Unknown,
                    }),
            );
        return inside.and(match excepted {
            Tri::Yes => Tri::No,
            Tri::No => Tri::Yes,
            Tri::Unknown => Tri::Unknown,
        });
    }
    let ns_ok = match &peer.namespace_selector {
        // No namespaceSelector: the policy's own namespace.
        None => bool_tri(src.namespace == policy_ns),
        Some(sel) => {
            // Namespace objects are not read (no RBAC for them): only the automatic name label is known.
            let mut l = Labels::new();
            l.insert("kubernetes.io/metadata.name".into(), src.namespace.clone());
            select(sel, &l, Some(&["kubernetes.io/metadata.name"]))
        }
    };
    let pod_ok = match &peer.pod_selector {
        None => Tri::Yes,
        Some(sel) => select(sel, &src.labels, None),
    };
    ns_ok.and(pod_ok)
}

/// Does this one policy admit `port`/`protocol` from `src`? (Only meaningful for a policy that
/// selects the pod and governs ingress.)
pub fn policy_admits(p: &NetworkPolicy, port: u16, protocol: &str, src: &Source) -> Tri {
    let ns = p.metadata.namespace.as_deref().unwrap_or("");
    let rules = p.spec.as_ref().and_then(|s| s.ingress.as_ref());
    Tri::any(rules.into_iter().flatten().map(|r| {
        let ports = port_matches(r.ports.as_deref().unwrap_or(&[]), port, protocol);
        let from = match r.from.as_deref() {
            None | Some([]) => Tri::Yes,
            Some(peers) => Tri::any(peers.iter().map(|x| peer_matches(x, ns, src))),
        };
        ports.and(from)
    }))
}

/// The verdict for a pod: the policies that select it for ingress (names), and whether they
/// together admit `port` from every source (`Yes` only if all sources are admitted, `No` if
/// some source is certainly refused). No selecting policy → everything is admitted.
pub fn evaluate(
    policies: &[NetworkPolicy],
    pod_ns: &str,
    pod_labels: &Labels,
    port: u16,
    protocol: &str,
    sources: &[Source],
) -> (Vec<String>, Tri) {
    let selecting: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(pod_ns))
        .filter(|p| governs_ingress(p) && selects(p, pod_labels))
        .collect();
    let names = selecting
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if selecting.is_empty() {
        return (names, Tri::Yes);
    }
    if sources.is_empty() {
        return (names, Tri::Unknown);
    }
    let mut all = Tri::Yes;
    for s in sources {
        all = all.and(Tri::any(
            selecting
                .iter()
                .map(|p| policy_admits(p, port, protocol, s)),
        ));
    }
    (names, all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pol(v: serde_json::Value) -> NetworkPolicy {
        let mut v = v;
        v["metadata"]["namespace"] = json!("shop");
        if v["metadata"]["name"].is_null() {
            v["metadata"]["name"] = json!("p");
        }
        serde_json::from_value(v).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn agent(ip: &str) -> Source {
        Source {
            namespace: "meshprobe".into(),
            labels: labels(&[("app.kubernetes.io/name", "meshprobe")]),
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn table() {
        let web = labels(&[("app", "web")]);
        let agents = [agent("10.1.0.5"), agent("10.2.0.5")];
        let from_agents_ns = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "meshprobe"}}});
        // (policy spec, port, expected verdict, selects?)
        let table: Vec<(&str, serde_json::Value, u16, Tri, bool)> = vec![
            (
                "deny all ingress",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "egress only: ingress untouched",
                json!({"podSelector": {}, "policyTypes": ["Egress"]}),
                8080,
                Tri::Yes,
                false,
            ),
            (
                "other pods",
                json!({"podSelector": {"matchLabels": {"app": "db"}}}),
                8080,
                Tri::Yes,
                false,
            ),
            (
                "allow all",
                json!({"podSelector": {}, "ingress": [{}]}),
                8080,
                Tri::Yes,
                true,
            ),
            (
                "port allowed",
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 8080}]}]}),
                8080,
                Tri::Yes,
                true,
            ),
            (
                "other port only",
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "port range",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 9000}]}]}),
                8080,
                Tri::Yes,
                true,
            ),
            (
                "udp only",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 8080, "protocol": "UDP"}]}]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "named port: unknown",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}),
                8080,
                Tri::Unknown,
                true,
            ),
            (
                "from the agents' namespace",
                json!({"podSelector": {}, "ingress": [{"from": [from_agents_ns]}]}),
                8080,
                Tri::Yes,
                true,
            ),
            (
                "from same namespace pods only",
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "from agents by ns+pod labels",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "meshprobe"}}}]}]}),
                8080,
                Tri::Yes,
                true,
            ),
            (
                "from other pods in any ns",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "frontend"}}}]}]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "ns by a custom label: unknown",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "infra"}}}]}]}),
                8080,
                Tri::Unknown,
                true,
            ),
            (
                "ipBlock covering both agents",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
                8080,
                Tri::Yes,
                true,
            ),
            (
                "ipBlock covering one agent",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "ipBlock with except",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.2.0.0/16"]}}]}]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "matchExpressions In",
                json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}, "ingress": [{"ports": [{"port": 80}]}]}),
                8080,
                Tri::No,
                true,
            ),
            (
                "matchExpressions NotIn",
                json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}}),
                8080,
                Tri::Yes,
                false,
            ),
            (
                "matchExpressions DoesNotExist",
                json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}),
                8080,
                Tri::No,
                true,
            ),
        ];
        for (what, spec, port, want, want_selects) in table {
            let p = pol(json!({"spec": spec}));
            let (names, got) = evaluate(&[p], "shop", &web, port, "TCP", &agents);
            assert_eq!(got, want, "{what}");
            assert_eq!(!names.is_empty(), want_selects, "{what}");
        }
    }

    #[test]
    fn policies_add_up_and_namespaces_matter() {
        let web = labels(&[("app", "web")]);
        let agents = [agent("10.1.0.5")];
        let deny = pol(
            json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        );
        let allow = pol(
            json!({"metadata": {"name": "allow-probe"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 8080}]}]}}),
        );
        let (names, v) = evaluate(&[deny.clone(), allow], "shop", &web, 8080, "TCP", &agents);
        assert_eq!(names, ["deny", "allow-probe"]);
        assert_eq!(v, Tri::Yes);
        // A policy in another namespace does not apply.
        let (names, v) = evaluate(&[deny], "other", &web, 8080, "TCP", &agents);
        assert!(names.is_empty());
        assert_eq!(v, Tri::Yes);
    }
}
