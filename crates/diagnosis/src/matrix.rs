//! The probe matrix: nodes and targets indexed, one [`PairCells`] per directed (source node,
//! destination node or target) with its per-layer [`Cell`]s. Built in O(reports + pairs).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use meshprobe_core::model::Layer;
use meshprobe_core::net::Cidr;
use meshprobe_core::owners::{NodeAddrs, OwnerMap, TargetAddrs};

/// Which part of a node an address is (the ownership map's roles).
pub use meshprobe_core::owners::Role as IpRole;

use super::input::{AgentReport, ErrorInfo, Inputs, KubeFacts, LayerStats, MtuState};

/// Layers in a fixed order; cells are indexed by [`layer_index`].
pub const LAYERS: [Layer; 4] = [Layer::IcmpPod, Layer::IcmpNode, Layer::Http, Layer::Tcp];

pub fn layer_index(l: Layer) -> usize {
    match l {
        Layer::IcmpPod => 0,
        Layer::IcmpNode => 1,
        Layer::Http => 2,
        Layer::Tcp => 3,
    }
}

fn layer_of(name: &str) -> Option<Layer> {
    LAYERS.iter().copied().find(|l| l.as_str() == name)
}

/// One (source, destination, layer): the window figures the source reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub probes: u32,
    pub successes: u32,
    pub sent: u32,
    pub received: u32,
    pub success_ratio: Option<f64>,
    pub loss_ratio: Option<f64>,
    /// Whether the last probe succeeded.
    pub reachable: Option<bool>,
    pub consecutive_failures: u32,
    pub last_error: Option<ErrorInfo>,
    pub last_error_age_seconds: Option<f64>,
    pub last_probe_age_seconds: Option<f64>,
    /// Age of the current failure streak's first failure, when the source says.
    pub failing_for_seconds: Option<f64>,
    /// Error kinds in the window, one entry per kind.
    pub errors: Vec<ErrorCount>,
}

/// One error kind in a cell's window.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorCount {
    /// The kind's latest instance.
    pub latest: ErrorInfo,
    pub count: u32,
    pub latest_age_seconds: Option<f64>,
}

impl Cell {
    /// Errors recorded in the window (the per-kind counts; the last error alone if absent).
    pub fn error_count(&self) -> u32 {
        if self.errors.is_empty() {
            u32::from(self.last_error.is_some())
        } else {
            self.errors.iter().map(|e| e.count).sum()
        }
    }

    /// The latest error of a kind in the window: the last error, or the per-kind list — but
    /// not one older than the current failure streak (when the source reports both ages): an
    /// error of an earlier failure is no evidence about this one (a route fault's "net
    /// unreachable" still in the window when another fault begins).
    pub fn error_of(&self, kind: super::input::ErrKind) -> Option<&ErrorInfo> {
        /// Slack between a streak's first failure and its error's timestamp.
        const SLACK_SECONDS: f64 = 0.5;
        let of_this_streak = |e: &ErrorCount| match (e.latest_age_seconds, self.failing_for_seconds)
        {
            (Some(age), Some(streak)) => age <= streak + SLACK_SECONDS,
            _ => true,
        };
        self.last_error
            .as_ref()
            .filter(|e| e.kind() == kind)
            .or_else(|| {
                self.errors
                    .iter()
                    .filter(|e| of_this_streak(e))
                    .map(|e| &e.latest)
                    .find(|e| e.kind() == kind)
            })
    }
}

impl From<&LayerStats> for Cell {
    fn from(s: &LayerStats) -> Self {
        let ratio = |r: Option<f64>| r.filter(|x| x.is_finite()).map(|x| x.clamp(0.0, 1.0));
        Cell {
            probes: s.probes,
            successes: s.successes.min(s.probes),
            sent: s.sent,
            received: s.received.min(s.sent),
            success_ratio: ratio(s.success_ratio),
            loss_ratio: ratio(s.loss_ratio),
            reachable: s.reachable,
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error.clone(),
            last_error_age_seconds: s.last_error_age_seconds.filter(|x| x.is_finite()),
            last_probe_age_seconds: s.last_probe_age_seconds.filter(|x| x.is_finite()),
            failing_for_seconds: s
                .failing_for_seconds
                .filter(|x| x.is_finite() && *x >= 0.0 && s.reachable == Some(false)),
            errors: s
                .errors
                .iter()
                .map(|e| {
                    let latest = e.last.clone().unwrap_or_else(|| ErrorInfo {
                        kind: e.kind.clone(),
                        ..ErrorInfo::default()
                    });
                    ErrorCount {
                        latest,
                        count: e.count,
                        latest_age_seconds: e.last_age_seconds.filter(|x| x.is_finite()),
                    }
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dest {
    Node(usize),
    Target(usize),
}

/// Everything one source reported about one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct PairCells {
    pub src: usize,
    pub dst: Dest,
    pub layers: [Option<Cell>; 4],
    pub path_mtu: Option<u32>,
    pub mtu_state: Option<MtuState>,
    /// Last errors of layers this version does not know (a future large-probe layer, say).
    pub other_errors: Vec<ErrorInfo>,
}

impl PairCells {
    pub fn cell(&self, l: Layer) -> Option<&Cell> {
        self.layers[layer_index(l)].as_ref()
    }
}

/// The report status of a node's own agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    /// Its document is here and the agent is ready.
    Reporting,
    /// Its document is here but the agent is not ready (first round, restart).
    NotReady,
    /// No document: asked and unreachable, or never asked.
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub zone: Option<String>,
    pub node_ip: Option<IpAddr>,
    pub pod_ip: Option<IpAddr>,
    /// Dual-stack: every family's node / pod address, when published.
    pub node_ips: Vec<IpAddr>,
    pub pod_ips: Vec<IpAddr>,
    pub pod_gateway: Option<IpAddr>,
    /// Known pod CIDRs (facts only; empty when none is known).
    pub pod_cidrs: Vec<Cidr>,
    pub agent: AgentStatus,
    /// Asked and did not answer (versus never asked).
    pub agent_unreachable: bool,
    pub rounds: Option<u64>,
    pub interval_seconds: Option<f64>,
    pub timeout_seconds: Option<f64>,
    pub window_seconds: Option<f64>,
}

impl NodeInfo {
    /// Its facts for the ownership map.
    pub fn addrs(&self) -> NodeAddrs {
        NodeAddrs {
            name: self.name.clone(),
            node_ip: self.node_ip,
            pod_ip: self.pod_ip,
            node_ips: self.node_ips.clone(),
            pod_ips: self.pod_ips.clone(),
            pod_gateway: self.pod_gateway,
            pod_gateways: Vec::new(),
            pod_cidrs: self.pod_cidrs.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    pub name: String,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    /// The node its pod runs on: Kubernetes facts, an agent's published fact, else the
    /// ownership map's answer for its IP; `None` when unknown (located as itself).
    pub node: Option<usize>,
}

/// The matrix the engine reads.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    pub nodes: Vec<NodeInfo>,
    pub targets: Vec<TargetInfo>,
    pub pairs: Vec<PairCells>,
    pub kube: KubeFacts,
    node_index: HashMap<String, usize>,
    target_index: HashMap<String, usize>,
    /// Who owns an address: built from the nodes' and targets' facts once they are merged.
    owners: OwnerMap,
}

impl Matrix {
    /// Build from agents' `/api/v1/results` JSON documents only (node metadata from their
    /// peers lists). A document that does not parse is an error naming its position.
    pub fn from_json_documents<S: AsRef<str>>(docs: &[S]) -> Result<Matrix, String> {
        let agents = docs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                AgentReport::from_json(d.as_ref()).map_err(|e| format!("document {}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Matrix::build(&Inputs {
            agents,
            ..Inputs::default()
        }))
    }

    pub fn build(inp: &Inputs) -> Matrix {
        let mut m = Matrix {
            kube: inp.kube.clone().unwrap_or_default(),
            ..Matrix::default()
        };
        // Nodes: explicit metadata first (it wins), then the facts agents publish, then the
        // reports, then their peers lists.
        let published = inp.agents.iter().flat_map(|r| r.owners.nodes.iter());
        for meta in inp.nodes.iter().chain(published) {
            if meta.name.is_empty() {
                continue;
            }
            let i = m.node(&meta.name);
            let n = &mut m.nodes[i];
            n.zone = n.zone.take().or(meta.zone.clone());
            n.node_ip = n.node_ip.or(meta.node_ip);
            n.pod_ip = n.pod_ip.or(meta.pod_ip);
            n.pod_gateway = n.pod_gateway.or(meta.pod_gateway);
            if n.node_ips.is_empty() {
                n.node_ips = meta.node_ips.clone();
            }
            if n.pod_ips.is_empty() {
                n.pod_ips = meta.pod_ips.clone();
            }
            if n.pod_cidrs.is_empty() {
                n.pod_cidrs = meta.cidrs();
            }
        }
        let mut seen_reports = BTreeSet::new();
        for r in &inp.agents {
            if r.node.is_empty() || !seen_reports.insert(r.node.clone()) {
                continue;
            }
            let i = m.node(&r.node);
            let n = &mut m.nodes[i];
            n.zone = n.zone.take().or(r.zone.clone());
            n.agent = if r.ready == Some(false) {
                AgentStatus::NotReady
            } else {
                AgentStatus::Reporting
            };
            n.rounds = r.rounds;
            n.interval_seconds = r.interval_seconds.filter(|x| x.is_finite() && *x > 0.0);
            n.timeout_seconds = r.timeout_seconds.filter(|x| x.is_finite() && *x > 0.0);
            n.window_seconds = r.window_seconds.filter(|x| x.is_finite() && *x > 0.0);
            for p in &r.peers {
                if p.node.is_empty() {
                    continue;
                }
                let j = m.node(&p.node);
                let n = &mut m.nodes[j];
                n.zone = n.zone.take().or(p.zone.clone());
                n.node_ip = n.node_ip.or(p.node_ip);
                n.pod_ip = n.pod_ip.or(p.pod_ip);
            }
        }
        for name in &inp.unreachable_agents {
            let i = m.node(name);
            m.nodes[i].agent_unreachable = m.nodes[i].agent == AgentStatus::Missing;
        }
        // Cells.
        let mut pair_index: HashMap<(usize, Dest), usize> = HashMap::new();
        let mut seen_reports = BTreeSet::new();
        for r in &inp.agents {
            if r.node.is_empty() || !seen_reports.insert(r.node.clone()) {
                continue;
            }
            let src = m.node_index[&r.node];
            for p in &r.peers {
                let Some(&dst) = m.node_index.get(&p.node) else {
                    continue;
                };
                if dst == src {
                    continue;
                }
                let (path_mtu, mtu_state) = mtu_of(p.path_mtu, p.mtu_state, &p.mtu);
                m.add_pair(
                    &mut pair_index,
                    src,
                    Dest::Node(dst),
                    &p.layers,
                    path_mtu,
                    mtu_state,
                );
            }
            for t in &r.targets {
                if t.name.is_empty() {
                    continue;
                }
                let ti = m.target(&t.name);
                let ts = &mut m.targets[ti];
                ts.ip = ts.ip.or(t.ip);
                ts.port = ts.port.or(t.port);
                ts.protocol = ts.protocol.take().or(t.protocol.clone());
                let (path_mtu, mtu_state) = mtu_of(t.path_mtu, t.mtu_state, &t.mtu);
                m.add_pair(
                    &mut pair_index,
                    src,
                    Dest::Target(ti),
                    &t.layers,
                    path_mtu,
                    mtu_state,
                );
            }
        }
        // Targets → nodes: Kubernetes facts first, then the facts agents publish, then the
        // ownership map (exact address, longest pod CIDR); else unknown.
        let mut by_name: HashMap<&str, &str> = HashMap::new();
        let mut by_ip: HashMap<IpAddr, &str> = HashMap::new();
        for pod in &m.kube.pods {
            let Some(n) = pod
                .node
                .as_deref()
                .filter(|n| m.node_index.contains_key(*n))
            else {
                continue;
            };
            if let Some(t) = pod.target.as_deref() {
                by_name.entry(t).or_insert(n);
            }
            if let Some(ip) = pod.ip {
                by_ip.entry(ip.to_canonical()).or_insert(n);
            }
        }
        let mut target_ips: HashMap<&str, Vec<IpAddr>> = HashMap::new();
        for t in inp.agents.iter().flat_map(|r| r.owners.targets.iter()) {
            if let Some(n) = t.node.as_deref().filter(|n| m.node_index.contains_key(*n)) {
                by_name.entry(t.name.as_str()).or_insert(n);
            }
            if !t.ips.is_empty() {
                target_ips
                    .entry(t.name.as_str())
                    .or_insert_with(|| t.ips.clone());
            }
        }
        let node_addrs: Vec<NodeAddrs> = m.nodes.iter().map(NodeInfo::addrs).collect();
        let target_addrs: Vec<TargetAddrs> = m
            .targets
            .iter()
            .map(|t| TargetAddrs {
                name: t.name.clone(),
                ip: t.ip,
                ips: target_ips.get(t.name.as_str()).cloned().unwrap_or_default(),
                node: by_name
                    .get(t.name.as_str())
                    .or_else(|| t.ip.and_then(|ip| by_ip.get(&ip.to_canonical())))
                    .map(|n| n.to_string()),
            })
            .collect();
        m.owners = OwnerMap::new(&node_addrs, &target_addrs);
        for t in &mut m.targets {
            t.node = m.owners.target_node(&t.name);
        }
        m
    }

    fn node(&mut self, name: &str) -> usize {
        if let Some(&i) = self.node_index.get(name) {
            return i;
        }
        self.nodes.push(NodeInfo {
            name: name.to_string(),
            zone: None,
            node_ip: None,
            pod_ip: None,
            node_ips: Vec::new(),
            pod_ips: Vec::new(),
            pod_gateway: None,
            pod_cidrs: Vec::new(),
            agent: AgentStatus::Missing,
            agent_unreachable: false,
            rounds: None,
            interval_seconds: None,
            timeout_seconds: None,
            window_seconds: None,
        });
        self.node_index
            .insert(name.to_string(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    fn target(&mut self, name: &str) -> usize {
        if let Some(&i) = self.target_index.get(name) {
            return i;
        }
        self.targets.push(TargetInfo {
            name: name.to_string(),
            ip: None,
            port: None,
            protocol: None,
            node: None,
        });
        self.target_index
            .insert(name.to_string(), self.targets.len() - 1);
        self.targets.len() - 1
    }

    fn add_pair(
        &mut self,
        index: &mut HashMap<(usize, Dest), usize>,
        src: usize,
        dst: Dest,
        layers: &std::collections::BTreeMap<String, LayerStats>,
        path_mtu: Option<u32>,
        mtu_state: Option<MtuState>,
    ) {
        if index.contains_key(&(src, dst)) {
            return;
        }
        let mut cells: [Option<Cell>; 4] = [None, None, None, None];
        let mut other_errors = Vec::new();
        for (name, stats) in layers {
            match layer_of(name) {
                Some(l) => cells[layer_index(l)] = Some(Cell::from(stats)),
                None => other_errors.extend(stats.last_error.clone()),
            }
        }
        index.insert((src, dst), self.pairs.len());
        self.pairs.push(PairCells {
            src,
            dst,
            layers: cells,
            path_mtu,
            mtu_state,
            other_errors,
        });
    }

    /// The node an address belongs to (an ICMP error's `from`, a target's IP), and as what,
    /// when `sender` (the node whose probe drew the answer) received it: a pod gateway every
    /// node shares is the sender's own. `None`: no fact names an owner.
    pub fn owner_of(&self, ip: IpAddr, sender: usize) -> Option<(usize, IpRole)> {
        self.owners.lookup_from(ip, sender)
    }

    /// The ownership map the matrix was built with.
    pub fn owners(&self) -> &OwnerMap {
        &self.owners
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    pub fn target_index(&self, name: &str) -> Option<usize> {
        self.target_index.get(name).copied()
    }

    /// The cell a source reported for a destination node and layer (linear: for tests and tools).
    pub fn peer_cell(&self, src: &str, dst: &str, layer: Layer) -> Option<&Cell> {
        let (s, d) = (self.node_index(src)?, self.node_index(dst)?);
        self.pairs
            .iter()
            .find(|p| p.src == s && p.dst == Dest::Node(d))
            .and_then(|p| p.cell(layer))
    }

    pub fn target_cell(&self, src: &str, target: &str, layer: Layer) -> Option<&Cell> {
        let (s, t) = (self.node_index(src)?, self.target_index(target)?);
        self.pairs
            .iter()
            .find(|p| p.src == s && p.dst == Dest::Target(t))
            .and_then(|p| p.cell(layer))
    }

    /// Sources whose agent reported and is ready: with none, the engine can say nothing.
    pub fn reporting_sources(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.agent == AgentStatus::Reporting)
            .count()
    }
}

/// The pair's path MTU: flat fields when given, else the worst of the per-layer reports
/// (black hole over mismatch over ok).
fn mtu_of(
    path_mtu: Option<u32>,
    state: Option<MtuState>,
    per_layer: &std::collections::BTreeMap<String, super::input::MtuReport>,
) -> (Option<u32>, Option<MtuState>) {
    if path_mtu.is_some() || state.is_some() {
        return (path_mtu, state);
    }
    let rank = |s: Option<MtuState>| match s {
        Some(MtuState::Blackhole) => 3,
        Some(MtuState::Mismatch) => 2,
        Some(MtuState::Ok) => 1,
        _ => 0,
    };
    per_layer
        .values()
        .max_by_key(|r| rank(r.state))
        .map_or((None, None), |r| (r.path_mtu, r.state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{ErrKind, ErrorCountInfo};

    #[test]
    fn an_error_older_than_the_failure_streak_is_not_its_evidence() {
        let stats = |streak: Option<f64>, age: f64| LayerStats {
            reachable: Some(false),
            consecutive_failures: 2,
            probes: 8,
            successes: 6,
            failing_for_seconds: streak,
            last_error: Some(ErrorInfo {
                kind: "timeout".into(),
                ..ErrorInfo::default()
            }),
            errors: vec![ErrorCountInfo {
                kind: "net_unreachable".into(),
                count: 1,
                last: Some(ErrorInfo {
                    kind: "net_unreachable".into(),
                    from: Some("198.19.255.1".into()),
                    ..ErrorInfo::default()
                }),
                last_age_seconds: Some(age),
            }],
            ..LayerStats::default()
        };
        // (streak age, error age, counted)
        for (streak, age, counted) in [
            (Some(2.0), 5.0, false), // from the failure before this one
            (Some(2.0), 1.5, true),
            (Some(2.0), 2.3, true), // the streak's first failure, timed a little later
            (None, 5.0, true),      // an older agent: no streak age, nothing to compare
        ] {
            let c = Cell::from(&stats(streak, age));
            assert_eq!(
                c.error_of(ErrKind::NetUnreachable).is_some(),
                counted,
                "streak {streak:?}, error {age} s old"
            );
        }
    }
}
