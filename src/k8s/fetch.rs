//! Facts on demand (the thin I/O side of [`super::facts`]): a handful of bounded list calls
//! for the nodes and targets involved, run when a diagnosis is asked for — never in a hot loop.
//! A failing call is recorded in `KubeFacts::errors` and the rest still counts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, Client};

use super::explain_client_error;
use super::facts::{node_and_cni_facts, pod_facts, policy_facts, sources};
use crate::diagnosis::{AgentReport, KubeFacts};

/// Upper bounds on what one fetch asks for.
pub const MAX_TARGETS: usize = 32;
const LIST_LIMIT: u32 = 5000;
const EVENTS_LIMIT: u32 = 50;

/// A target worth facts: a failing one from the agents' reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetRef {
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
}

/// What to fetch facts about.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FactsQuery {
    pub nodes: BTreeSet<String>,
    pub targets: Vec<TargetRef>,
    /// Label selector and namespace of the agent pods (the sources NetworkPolicies must admit).
    pub agent_selector: String,
    pub agent_namespace: Option<String>,
}

/// The nodes of every report and the targets some agent finds failing (pure).
pub fn query_from_reports(
    reports: &[AgentReport],
    agent_selector: &str,
    agent_namespace: Option<&str>,
) -> FactsQuery {
    let mut nodes = BTreeSet::new();
    let mut targets = BTreeSet::new();
    for r in reports {
        nodes.insert(r.node.clone());
        nodes.extend(r.peers.iter().map(|p| p.node.clone()));
        for t in &r.targets {
            let failing = t
                .layers
                .values()
                .any(|l| l.reachable == Some(false) || l.consecutive_failures > 0);
            if let (true, Some(ip), Some(port)) = (failing, t.ip, t.port) {
                targets.insert(TargetRef {
                    name: t.name.clone(),
                    ip,
                    port,
                });
            }
        }
    }
    FactsQuery {
        nodes,
        targets: targets.into_iter().take(MAX_TARGETS).collect(),
        agent_selector: agent_selector.to_string(),
        agent_namespace: agent_namespace.map(str::to_string),
    }
}

/// Fetch the facts. The caller bounds the whole call in time.
pub async fn fetch_facts(client: &Client, q: &FactsQuery) -> KubeFacts {
    let mut facts = KubeFacts::default();
    let lp = ListParams::default().limit(LIST_LIMIT);
    let agents_api: Api<Pod> = match &q.agent_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let nodes_api = Api::<Node>::all(client.clone());
    let system_api = Api::<Pod>::namespaced(client.clone(), "kube-system");
    let agents_lp = lp.clone().labels(&q.agent_selector);
    let (nodes, system, agents) = tokio::join!(
        nodes_api.list(&lp),
        system_api.list(&lp),
        agents_api.list(&agents_lp),
    );
    let nodes = nodes
        .map(|l| l.items)
        .unwrap_or_else(|e| fail(&mut facts, "list nodes", &e));
    let system = system
        .map(|l| l.items)
        .unwrap_or_else(|e| fail(&mut facts, "list pods in kube-system", &e));
    let agents = agents
        .map(|l| l.items)
        .unwrap_or_else(|e| fail(&mut facts, "list the agent pods", &e));
    let (n, c) = node_and_cni_facts(&nodes, &system, &q.nodes);
    facts.nodes = n;
    facts.cni_pods = c;
    let srcs = sources(&agents);

    let mut policies: BTreeMap<String, Vec<NetworkPolicy>> = BTreeMap::new();
    for t in &q.targets {
        let by_ip = lp.clone().fields(&format!("status.podIP={}", t.ip));
        let pods = match Api::<Pod>::all(client.clone()).list(&by_ip).await {
            Ok(l) => l.items,
            Err(e) => {
                fail::<Pod>(
                    &mut facts,
                    &format!("find the pod of target {}", t.name),
                    &e,
                );
                continue;
            }
        };
        // Host-network pods share the node's IP: prefer one that is not.
        let Some(pod) = pods
            .iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.host_network) != Some(true))
            .or(pods.first())
        else {
            continue;
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ev_lp = ListParams::default()
            .limit(EVENTS_LIMIT)
            .fields(&format!("involvedObject.name={name}"));
        let events = match Api::<Event>::namespaced(client.clone(), &ns)
            .list(&ev_lp)
            .await
        {
            Ok(l) => l.items,
            Err(e) => fail(&mut facts, &format!("list events of pod {ns}/{name}"), &e),
        };
        facts.pods.push(pod_facts(pod, Some(&t.name), &events));
        if !policies.contains_key(&ns) {
            let list = match Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
                .list(&lp)
                .await
            {
                Ok(l) => l.items,
                Err(e) => fail(&mut facts, &format!("list networkpolicies in {ns}"), &e),
            };
            policies.insert(ns.clone(), list);
        }
        facts
            .network_policies
            .extend(policy_facts(&policies[&ns], pod, &t.name, t.port, &srcs));
    }
    facts
}

fn fail<T>(facts: &mut KubeFacts, action: &str, e: &kube::Error) -> Vec<T> {
    let msg = explain_client_error(action, e);
    tracing::debug!(error = %msg, "kubernetes facts");
    facts.errors.push(msg);
    Vec::new()
}

/// `pod/NAMESPACE/NAME` targets of `POST /api/v1/probe`: where the pod is and the facts the
/// verdict reads (the pod and its events, the NetworkPolicies selecting it, its node and the
/// CNI pod there). A handful of bounded calls per request; the handler bounds the whole.
pub struct KubePodResolver {
    pub client: Client,
}

impl crate::ondemand::PodResolver for KubePodResolver {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        admit: crate::ondemand::wire::Admit<'a>,
    ) -> crate::probe::BoxFuture<'a, Result<crate::ondemand::ResolvedPod, String>> {
        Box::pin(async move {
            let c = self.client.clone();
            let pod = Api::<Pod>::namespaced(c.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| explain_client_error(&format!("get pod {namespace}/{name}"), &e))?;
            let ip: IpAddr = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "pod {namespace}/{name} has no IP yet (phase {})",
                        pod.status
                            .as_ref()
                            .and_then(|s| s.phase.as_deref())
                            .unwrap_or("unknown")
                    )
                })?;
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            // Dual-stack: every family's address (`status.podIPs`), each fenced by the caller.
            let ips = super::peers::pod_ips(&pod);
            if !admit(ip) {
                // It will be refused: no more API calls for it.
                return Ok(crate::ondemand::ResolvedPod {
                    ip,
                    ips,
                    node,
                    facts: KubeFacts::default(),
                });
            }
            let label = format!("pod/{namespace}/{name}");
            let mut facts = KubeFacts::default();
            let ev_lp = ListParams::default()
                .limit(EVENTS_LIMIT)
                .fields(&format!("involvedObject.name={name}"));
            let events = match Api::<Event>::namespaced(c.clone(), namespace)
                .list(&ev_lp)
                .await
            {
                Ok(l) => l.items,
                Err(e) => fail(
                    &mut facts,
                    &format!("list events of pod {namespace}/{name}"),
                    &e,
                ),
            };
            facts.pods.push(pod_facts(&pod, Some(&label), &events));
            let lp = ListParams::default().limit(LIST_LIMIT);
            let policies = match Api::<NetworkPolicy>::namespaced(c.clone(), namespace)
                .list(&lp)
                .await
            {
                Ok(l) => l.items,
                Err(e) => fail(
                    &mut facts,
                    &format!("list networkpolicies in {namespace}"),
                    &e,
                ),
            };
            // The probe's port is the request's, not known here: the policies are named, the
            // verdict on the port is left open.
            facts.network_policies = policy_facts(&policies, &pod, &label, 0, &[])
                .into_iter()
                .map(|mut p| {
                    p.admits_port = None;
                    p
                })
                .collect();
            if let Some(n) = &node {
                let on_node = lp.clone().fields(&format!("spec.nodeName={n}"));
                let nodes_api = Api::<Node>::all(c.clone());
                let system_api = Api::<Pod>::namespaced(c.clone(), "kube-system");
                let (node_obj, system) = tokio::join!(nodes_api.get(n), system_api.list(&on_node));
                let nodes = match node_obj {
                    Ok(x) => vec![x],
                    Err(e) => fail(&mut facts, &format!("get node {n}"), &e),
                };
                let system = match system {
                    Ok(l) => l.items,
                    Err(e) => fail(&mut facts, &format!("list pods in kube-system on {n}"), &e),
                };
                let involved = BTreeSet::from([n.clone()]);
                let (nf, cf) = node_and_cni_facts(&nodes, &system, &involved);
                facts.nodes = nf;
                facts.cni_pods = cf;
            }
            Ok(crate::ondemand::ResolvedPod {
                ip,
                ips,
                node,
                facts,
            })
        })
    }
}
