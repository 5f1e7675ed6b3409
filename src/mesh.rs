//! The mesh view: this agent's results plus every peer agent's, gathered on demand, turned into
//! the diagnosis engine's input. Assembling the input is pure ([`inputs`]); fetching is
//! [`crate::gather`]; the agent caches one answer per probe interval so a busy dashboard does
//! not fan out to every peer on every refresh.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::diagnosis::{AddressFacts, AgentReport, Diagnosis, Inputs};
use crate::gather::{Gathered, NOT_WAITED_FOR};
use crate::model::Layer;
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
    /// Set when the view is not every agent's own results: above `--full-mesh-max` it comes
    /// from Prometheus or from a bounded subset of the agents, and says so here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// What the view rests on: one result document per answering agent (the agent page's
    /// matrix), the agents that did not answer, the address and Kubernetes facts. Not part of
    /// the JSON unless asked for (`?include=inputs`).
    #[serde(skip)]
    pub inputs: Inputs,
}

/// A mesh view with what it rests on: the `?include=inputs` document, which
/// `diagnose --results FILE` replays.
#[derive(Serialize)]
pub struct WithInputs<'a> {
    #[serde(flatten)]
    view: &'a MeshDiagnosis,
    inputs: &'a Inputs,
}

impl<'a> WithInputs<'a> {
    pub fn of(view: &'a MeshDiagnosis) -> Self {
        WithInputs {
            view,
            inputs: &view.inputs,
        }
    }
}

/// Where a mesh view above `--full-mesh-max` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `prometheus` (every agent's series, as last scraped) or `subset` (some agents asked).
    pub source: String,
    /// Agents in the peer set, this one included.
    pub agents_in_mesh: usize,
    /// Agents asked for their results (0 from Prometheus).
    pub agents_asked: usize,
    /// What that means for the answer, in a sentence.
    pub note: String,
}

/// Agents a mesh view asks at most on a sampled plan without `--prometheus`
/// ([`crate::plan::Plan::view_subset`]): at [`crate::gather`]'s 16 at once and a few ms each,
/// a fan-out of about 4 × the slowest answer.
pub const SUBSET_MAX: usize = 64;

/// The scope of a view gathered from `asked` of `in_mesh` agents on a sampled plan; `why` says
/// why not from Prometheus (none given, or its error).
pub fn subset_scope(asked: usize, in_mesh: usize, why: &str) -> Scope {
    Scope {
        source: "subset".into(),
        agents_in_mesh: in_mesh,
        agents_asked: asked,
        note: format!(
            "a subset: {asked} of the {in_mesh} agents were asked (above --full-mesh-max: the probers of what this agent finds failing, its own peers, then every zone in turn; at most {SUBSET_MAX}); faults no asked agent sees are not in this answer. {why}"
        ),
    }
}

/// The scope of a view built from Prometheus at `url`.
pub fn prometheus_scope(url: &str, in_mesh: usize) -> Scope {
    Scope {
        source: "prometheus".into(),
        agents_in_mesh: in_mesh,
        agents_asked: 0,
        note: format!(
            "from Prometheus at {url} (above --full-mesh-max): every agent's series as last scraped"
        ),
    }
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

/// Whether the answering agents' HTTP probes (`GET /ping` on the agent port) find an agent
/// down: a probe is "down" after two failures in a row, as the agent's own skip rule reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Votes {
    pub down: usize,
    pub up: usize,
}

/// What the ready `answered` reports say of the agent known as `source` or at `addr`'s IP.
pub fn votes(answered: &[&AgentReport], source: &str, addr: SocketAddr) -> Votes {
    let mut v = Votes::default();
    for r in answered.iter().filter(|r| r.ready != Some(false)) {
        let peer = r
            .peers
            .iter()
            .find(|p| p.node == source || p.pod_ip == Some(addr.ip()));
        match peer.and_then(|p| p.layers.get(Layer::Http.as_str())) {
            Some(w) if w.reachable == Some(false) && w.consecutive_failures >= 2 => v.down += 1,
            Some(w) if w.reachable == Some(true) => v.up += 1,
            _ => {}
        }
    }
    v
}

/// The pending agents not to wait for: those that at least two answering agents, and more of
/// them than not, find down on the agent's HTTP port. Their silence is already evidence the
/// engine reads; waiting out the timeout would only delay the answer (≈ 5 s at the defaults).
/// Two votes, not one, so one agent with a broken network of its own that happens to answer
/// first does not make the view skip everyone it cannot reach.
pub fn not_waited_for(
    answered: &[&Gathered],
    pending: &[(usize, &str, SocketAddr)],
) -> Vec<(usize, String)> {
    let reports: Vec<&AgentReport> = answered
        .iter()
        .filter_map(|g| g.result.as_ref().ok())
        .collect();
    pending
        .iter()
        .filter_map(|&(i, source, addr)| {
            let v = votes(&reports, source, addr);
            (v.down >= 2 && v.down > v.up).then(|| {
                (
                    i,
                    format!(
                        "{NOT_WAITED_FOR}: the HTTP probes of {} of the {} answering agents that probe it fail",
                        v.down,
                        v.down + v.up
                    ),
                )
            })
        })
        .collect()
}

/// Assemble the engine's input from our own report and what the peers answered.
pub fn inputs(
    own: AgentReport,
    gathered: Vec<Gathered>,
    set: &PeerSet,
) -> (Inputs, Vec<String>, Vec<Unanswered>) {
    let mut answered = vec![own.node.clone()];
    let mut unanswered = Vec::new();
    let mut agents = vec![own];
    for g in gathered {
        match g.result {
            Ok(report) => {
                answered.push(g.source);
                agents.push(report);
            }
            Err(error) => unanswered.push(Unanswered {
                node: g.source,
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
    use crate::diagnosis::{diagnose_inputs, Params};
    use crate::model::ErrorClass;
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
            Gathered::from_wire(
                "b".into(),
                "198.19.2.10:9000".parse().unwrap(),
                Ok(doc("b", &[("a", true), ("c", false)])),
            ),
            Gathered::from_wire(
                "c".into(),
                "198.19.3.10:9464".parse().unwrap(),
                Err(ErrorClass::Timeout),
            ),
        ];
        let (inputs, answered, unanswered) = inputs(own, gathered, &set);
        assert_eq!(answered, ["a", "b"]);
        assert_eq!(unanswered.len(), 1);
        assert_eq!(unanswered[0].node, "c");
        assert_eq!(unanswered[0].error, "timeout");
        let d = diagnose_inputs(&inputs, &Params::default());
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
        let gathered = vec![Gathered::from_wire(
            "b".into(),
            "198.19.2.10:9000".parse().unwrap(),
            Ok("<html>".into()),
        )];
        let (_, answered, unanswered) = inputs(own, gathered, &set);
        assert_eq!(answered, ["a"]);
        assert!(unanswered[0].error.starts_with("bad results JSON"));
    }

    fn answer(node: &str, peers: &[(&str, bool)]) -> Gathered {
        Gathered::from_wire(
            node.into(),
            "127.0.0.1:1".parse().unwrap(),
            Ok(doc(node, peers)),
        )
    }

    #[test]
    fn an_agent_two_answering_agents_find_down_is_not_waited_for() {
        let d: SocketAddr = "198.19.4.10:9464".parse().unwrap();
        let pending = [(3, "d", d)];
        // One vote is not enough: the one answer may come from an agent cut off itself.
        let a = answer("a", &[("b", true), ("c", true), ("d", false)]);
        assert!(not_waited_for(&[&a], &pending).is_empty());
        // Two agents find it down, none up: given up on, saying why.
        let b = answer("b", &[("a", true), ("c", true), ("d", false)]);
        let got = not_waited_for(&[&a, &b], &pending);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 3);
        assert!(got[0].1.starts_with(NOT_WAITED_FOR), "{}", got[0].1);
        assert!(got[0].1.contains("2 of the 2"), "{}", got[0].1);
        // More find it up than down (a route fault between two nodes): waited for.
        let c = answer("c", &[("a", true), ("b", true), ("d", true)]);
        let e = answer("e", &[("d", true)]);
        assert!(not_waited_for(&[&a, &b, &c, &e], &pending).is_empty());
        // Known by pod IP when asked by address (`diagnose --agents`).
        let by_ip = [(0, "198.19.4.10:9464", d)];
        let mut a2 = a.clone();
        let mut b2 = b.clone();
        for g in [&mut a2, &mut b2] {
            for p in &mut g.result.as_mut().unwrap().peers {
                if p.node == "d" {
                    p.pod_ip = Some(d.ip());
                }
            }
        }
        assert_eq!(not_waited_for(&[&a2, &b2], &by_ip).len(), 1);
        // Agents still in their first round and failed answers have no say.
        let mut unready = b.clone();
        unready.result.as_mut().unwrap().ready = Some(false);
        let failed = Gathered::from_wire("x".into(), d, Err(ErrorClass::Timeout));
        assert!(not_waited_for(&[&a, &unready, &failed], &pending).is_empty());
    }
}
