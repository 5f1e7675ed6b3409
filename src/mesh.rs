//! The mesh view: this agent's results plus every peer agent's, gathered on demand, turned into
//! the diagnosis engine's input. Assembling the input is pure ([`inputs`]); fetching is
//! [`crate::gather`]; the agent caches one answer per probe interval so a busy dashboard does
//! not fan out to every peer on every refresh.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::diagnosis::{AddressFacts, AgentReport, Diagnosis, Inputs};
use crate::gather::Gathered;
use crate::model::ErrorClass;
use crate::peers::PeerSet;

/// `GET /api/v1/diagnosis`: the engine's answer, and whose results it rests on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshDiagnosis {
    /// The agent that gathered the view.
    pub node: String,
    /// Agents whose results were used (this one included).
    pub agents_answered: Vec<String>,
    /// Agents that did not answer, and why (evidence for the engine, not an error).
    pub agents_unreachable: Vec<Unanswered>,
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
    /// Findings set apart because they only concern peers that have not had their chance yet
    /// (Kubernetes: node NotReady or cordoned, agent just Ready). Not alarms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<crate::diagnosis::Finding>,
    /// The result documents the view rests on, one per answering agent (for the agent page's
    /// matrix; not part of the JSON).
    #[serde(skip)]
    pub reports: Vec<AgentReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unanswered {
    pub node: String,
    pub error: String,
}

/// The peer agents to ask: every peer of the set but `me`, at its pod IP and agent port.
pub fn peer_agents(set: &PeerSet, me: &str, default_port: u16) -> Vec<(String, SocketAddr)> {
    set.peers
        .iter()
        .filter(|p| p.node != me)
        .map(|p| {
            (
                p.node.clone(),
                SocketAddr::new(p.pod_ip, p.port.unwrap_or(default_port)),
            )
        })
        .collect()
}

/// Assemble the engine's input from our own report and what the peers answered.
pub fn inputs(
    own: AgentReport,
    gathered: &[Gathered],
    set: &PeerSet,
) -> (Inputs, Vec<String>, Vec<Unanswered>) {
    let mut answered = vec![own.node.clone()];
    let mut unanswered = Vec::new();
    let mut agents = vec![own];
    for g in gathered {
        let parsed = g
            .result
            .as_ref()
            .map_err(ErrorClass::to_string)
            .and_then(|text| {
                AgentReport::from_json(text).map_err(|e| format!("bad results JSON: {e}"))
            });
        match parsed {
            Ok(report) => {
                answered.push(g.source.clone());
                agents.push(report);
            }
            Err(error) => unanswered.push(Unanswered {
                node: g.source.clone(),
                error,
            }),
        }
    }
    // The peer set's address facts (pod CIDRs, targets' nodes): the ownership map's input.
    let nodes = AddressFacts::of(set).nodes;
    let inputs = Inputs {
        agents,
        unreachable_agents: unanswered.iter().map(|u| u.node.clone()).collect(),
        nodes,
        kube: None,
    };
    (inputs, answered, unanswered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::{diagnose, Matrix};
    use crate::peers::parse;

    fn doc(node: &str, peers: &[(&str, bool)]) -> String {
        let layer = |ok: bool| {
            format!(
                r#"{{"reachable":{ok},"consecutive_failures":{f},"probes":10,"successes":{s},"sent":10,"received":{s},"success_ratio":{r},"loss_ratio":{l},"last_error":{e}}}"#,
                f = if ok { 0 } else { 10 },
                s = if ok { 10 } else { 0 },
                r = if ok { 1.0 } else { 0.0 },
                l = if ok { 0.0 } else { 1.0 },
                e = if ok { "null" } else { r#"{"kind":"timeout"}"# },
            )
        };
        let peers: Vec<String> = peers
            .iter()
            .map(|(n, ok)| {
                format!(
                    r#"{{"node":"{n}","layers":{{"icmp_pod":{l},"icmp_node":{l},"http":{l}}}}}"#,
                    l = layer(*ok)
                )
            })
            .collect();
        format!(
            r#"{{"node":"{node}","ready":true,"rounds":10,"peers":[{}],"targets":[]}}"#,
            peers.join(",")
        )
    }

    const SET: &str = "peers:\n  - {node: a, node_ip: 198.18.1.11, pod_ip: 198.19.1.10}\n  - {node: b, node_ip: 198.18.1.12, pod_ip: 198.19.2.10, port: 9000}\n  - {node: c, node_ip: 198.18.1.13, pod_ip: 198.19.3.10}\n";

    #[test]
    fn peers_are_asked_at_their_agent_port() {
        let set = parse(SET).unwrap();
        let got = peer_agents(&set, "a", 9464);
        assert_eq!(
            got,
            vec![
                ("b".to_string(), "198.19.2.10:9000".parse().unwrap()),
                ("c".to_string(), "198.19.3.10:9464".parse().unwrap())
            ]
        );
    }

    #[test]
    fn a_silent_agent_is_evidence_and_a_dead_node_is_found() {
        let set = parse(SET).unwrap();
        let own = AgentReport::from_json(&doc("a", &[("b", true), ("c", false)])).unwrap();
        let gathered = vec![
            Gathered {
                source: "b".into(),
                addr: "198.19.2.10:9000".parse().unwrap(),
                result: Ok(doc("b", &[("a", true), ("c", false)])),
            },
            Gathered {
                source: "c".into(),
                addr: "198.19.3.10:9464".parse().unwrap(),
                result: Err(ErrorClass::Timeout),
            },
        ];
        let (inputs, answered, unanswered) = inputs(own, &gathered, &set);
        assert_eq!(answered, ["a", "b"]);
        assert_eq!(unanswered.len(), 1);
        assert_eq!(unanswered[0].node, "c");
        assert_eq!(unanswered[0].error, "timeout");
        let d = diagnose(&Matrix::build(&inputs));
        assert_eq!(d.findings.len(), 1, "{d}");
        assert_eq!(d.findings[0].nodes, ["c"]);
        assert_eq!(
            serde_json::to_value(d.findings[0].cause).unwrap(),
            "node_down"
        );
    }

    #[test]
    fn garbage_from_a_peer_is_reported_not_fatal() {
        let set = parse(SET).unwrap();
        let own = AgentReport::from_json(&doc("a", &[("b", true), ("c", true)])).unwrap();
        let gathered = vec![Gathered {
            source: "b".into(),
            addr: "198.19.2.10:9000".parse().unwrap(),
            result: Ok("<html>".into()),
        }];
        let (_, answered, unanswered) = inputs(own, &gathered, &set);
        assert_eq!(answered, ["a"]);
        assert!(unanswered[0].error.starts_with("bad results JSON"));
    }
}
