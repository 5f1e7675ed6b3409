//! Fixture builders shared by the table tests: window figures, the 4-node mesh builder,
//! expectations and their check, recorded onsets.

use std::collections::{BTreeSet, HashMap};

use crate::diagnose;
use crate::input::*;
use crate::matrix::Matrix;
use crate::report::{Cause, Diagnosis};

pub(super) const N: usize = 4;

pub(super) const PEER_LAYERS: [&str; 3] = ["icmp_pod", "icmp_node", "http"];

pub(super) const TARGET_LAYERS: [&str; 2] = ["icmp_pod", "http"];

pub(super) fn name(i: usize) -> String {
    format!("node-{i}")
}

pub(super) fn web(i: usize) -> String {
    format!("web-node-{i}")
}

// ---- window figures ------------------------------------------------------------------------

pub(super) fn ok() -> LayerStats {
    LayerStats {
        reachable: Some(true),
        consecutive_failures: 0,
        probes: 10,
        successes: 10,
        sent: 10,
        received: 10,
        success_ratio: Some(1.0),
        loss_ratio: Some(0.0),
        rtt_seconds: None,
        last_error: None,
        last_error_age_seconds: None,
        last_probe_age_seconds: Some(0.4),
        failing_for_seconds: None,
        errors: Vec::new(),
    }
}

pub(super) fn err(kind: &str) -> ErrorInfo {
    ErrorInfo {
        kind: kind.into(),
        ..ErrorInfo::default()
    }
}

pub(super) fn err_from(kind: &str, from: &str) -> ErrorInfo {
    ErrorInfo {
        kind: kind.into(),
        from: Some(from.into()),
        ..ErrorInfo::default()
    }
}

/// A fault that started 3 probes ago: 7/10 succeeded, the last 3 failed.
pub(super) fn down(e: ErrorInfo) -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 3,
        successes: 7,
        received: 7,
        success_ratio: Some(0.7),
        loss_ratio: Some(0.3),
        last_error: Some(e),
        last_error_age_seconds: Some(0.4),
        ..ok()
    }
}

pub(super) fn timeout() -> LayerStats {
    down(err("timeout"))
}

/// Partial loss: 3 echoes per probe, `lost` of 30 lost, every probe answered.
pub(super) fn lossy(lost: u32) -> LayerStats {
    LayerStats {
        sent: 30,
        received: 30 - lost,
        loss_ratio: Some(f64::from(lost) / 30.0),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(1.0),
        ..ok()
    }
}

/// One probe lost, and it was the last one.
pub(super) fn one_lost() -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 1,
        successes: 9,
        received: 9,
        success_ratio: Some(0.9),
        loss_ratio: Some(0.1),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.4),
        ..ok()
    }
}

/// A destination that just appeared: two probes, both failed.
pub(super) fn fresh_failing() -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 2,
        probes: 2,
        successes: 0,
        sent: 2,
        received: 0,
        success_ratio: Some(0.0),
        loss_ratio: Some(1.0),
        last_error: Some(err("timeout")),
        ..ok()
    }
}

// ---- the mesh builder ----------------------------------------------------------------------

#[derive(Clone)]
pub(super) struct Mesh {
    pub(super) zone: Vec<&'static str>,
    pub(super) peer: HashMap<(usize, usize, &'static str), LayerStats>,
    pub(super) target: HashMap<(usize, usize, &'static str), LayerStats>,
    pub(super) mtu: HashMap<(usize, usize), (u32, MtuState)>,
    pub(super) missing: BTreeSet<usize>,
    /// Node pairs (src, dst) the plan does not probe (a sampled plan); targets always are.
    pub(super) unprobed: BTreeSet<(usize, usize)>,
    pub(super) not_ready: BTreeSet<usize>,
    pub(super) rounds: HashMap<usize, u64>,
    pub(super) kube: Option<KubeFacts>,
    pub(super) meta: bool,
    /// The agents publish no address facts (an older agent, a peers file without them).
    pub(super) no_facts: bool,
    /// How pod addresses are laid out (the lab's `--pod-addressing`).
    pub(super) layout: Layout,
}

/// Pod addressing, as in the lab: `Subnet` node i's pods in 198.19.i.0/24 (gateway .1);
/// `Blocks` Calico-like /26 blocks, all four nodes' first blocks packed into 198.19.0.0/24 and
/// their second ones into 198.19.1.0/24 in reverse order (gateway: the block's .1);
/// `Vpc` pods from one shared range interleaved across nodes (198.18.9.x, per-pod routes),
/// no pod CIDRs, one gateway every node shares (169.254.1.1), targets' nodes stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Layout {
    #[default]
    Subnet,
    Blocks,
    Vpc,
}

pub(super) fn zone_num(z: &str) -> u8 {
    match z {
        "zone-a" => 1,
        "zone-b" => 2,
        _ => 3,
    }
}

impl Mesh {
    pub(super) fn new() -> Mesh {
        Mesh {
            zone: vec!["", "zone-a", "zone-a", "zone-b", "zone-b"],
            peer: HashMap::new(),
            target: HashMap::new(),
            mtu: HashMap::new(),
            missing: BTreeSet::new(),
            unprobed: BTreeSet::new(),
            not_ready: BTreeSet::new(),
            rounds: HashMap::new(),
            kube: None,
            meta: false,
            no_facts: false,
            layout: Layout::Subnet,
        }
    }

    pub(super) fn node_ip(&self, i: usize) -> String {
        format!("198.18.{}.{}", zone_num(self.zone[i]), 10 + i)
    }

    pub(super) fn pod_ip(&self, i: usize) -> String {
        match self.layout {
            Layout::Subnet => format!("198.19.{i}.10"),
            Layout::Blocks => format!("198.19.0.{}", 64 * (i - 1) + 10),
            Layout::Vpc => format!("198.18.9.{}", 2 * i),
        }
    }

    /// The address of target `web-node-t`.
    pub(super) fn target_ip(&self, t: usize) -> String {
        match self.layout {
            Layout::Subnet => format!("198.19.{t}.11"),
            // The second block: the /24 guess would name node-4's block owner for node-1.
            Layout::Blocks => format!("198.19.1.{}", 64 * (N - t) + 11),
            // Interleaved: node-1's target sits next to node-4's pod, and so on.
            Layout::Vpc => format!("198.18.9.{}", 2 * (N + 1 - t) + 1),
        }
    }

    /// Node i's pod gateway: where its "net unreachable" comes from.
    pub(super) fn gw(&self, i: usize) -> String {
        match self.layout {
            Layout::Subnet => format!("198.19.{i}.1"),
            Layout::Blocks => format!("198.19.0.{}", 64 * (i - 1) + 1),
            Layout::Vpc => "169.254.1.1".into(),
        }
    }

    fn pod_cidrs(&self, i: usize) -> Vec<String> {
        match self.layout {
            Layout::Subnet => vec![format!("198.19.{i}.0/24")],
            Layout::Blocks => vec![
                format!("198.19.0.{}/26", 64 * (i - 1)),
                format!("198.19.1.{}/26", 64 * (N - i)),
            ],
            Layout::Vpc => Vec::new(),
        }
    }

    /// Set the given peer layers for src → dst.
    pub(super) fn p(
        &mut self,
        s: usize,
        d: usize,
        layers: &[&'static str],
        st: LayerStats,
    ) -> &mut Self {
        for l in layers {
            self.peer.insert((s, d, l), st.clone());
        }
        self
    }

    /// Set the given target layers for src → web-node-t.
    pub(super) fn t(
        &mut self,
        s: usize,
        t: usize,
        layers: &[&'static str],
        st: LayerStats,
    ) -> &mut Self {
        for l in layers {
            self.target.insert((s, t, l), st.clone());
        }
        self
    }

    /// Everything to and from node `x` on `layers` (peers) and its target (`tlayers`).
    pub(super) fn around(
        &mut self,
        x: usize,
        layers: &[&'static str],
        tlayers: &[&'static str],
        st: LayerStats,
    ) -> &mut Self {
        for o in 1..=N {
            if o != x {
                self.p(o, x, layers, st.clone());
                self.p(x, o, layers, st.clone());
                self.t(x, o, tlayers, st.clone());
            }
            self.t(o, x, tlayers, st.clone());
        }
        self
    }

    /// The address facts every agent publishes for the layout: pod CIDRs (subnet, blocks:
    /// targets placed by them) or the shared gateway and each target's node (vpc). None with
    /// `no_facts`.
    pub(super) fn owners(&self) -> AddressFacts {
        if self.no_facts {
            return AddressFacts::default();
        }
        AddressFacts {
            nodes: (1..=N)
                .map(|i| NodeMeta {
                    name: name(i),
                    node_ip: self.node_ip(i).parse().ok(),
                    pod_ip: self.pod_ip(i).parse().ok(),
                    pod_cidrs: self.pod_cidrs(i),
                    pod_gateway: (self.layout == Layout::Vpc).then(|| self.gw(i).parse().unwrap()),
                    ..NodeMeta::default()
                })
                .collect(),
            targets: (1..=N)
                .filter(|_| self.layout == Layout::Vpc)
                .map(|t| TargetPlace {
                    name: web(t),
                    ip: self.target_ip(t).parse().ok(),
                    node: Some(name(t)),
                    ..TargetPlace::default()
                })
                .collect(),
        }
    }

    pub(super) fn docs(&self) -> Vec<String> {
        (1..=N)
            .filter(|i| !self.missing.contains(i))
            .map(|s| {
                let peers: Vec<PeerReport> = (1..=N)
                    .filter(|&d| d != s && !self.unprobed.contains(&(s, d)))
                    .map(|d| {
                        let layers = PEER_LAYERS
                            .iter()
                            .map(|l| {
                                (
                                    l.to_string(),
                                    self.peer.get(&(s, d, *l)).cloned().unwrap_or_else(ok),
                                )
                            })
                            .collect();
                        let (path_mtu, mtu_state) = match self.mtu.get(&(s, d)) {
                            Some((m, st)) => (Some(*m), Some(*st)),
                            None => (None, None),
                        };
                        PeerReport {
                            node: name(d),
                            zone: Some(self.zone[d].to_string()),
                            node_ip: self.node_ip(d).parse().ok(),
                            pod_ip: self.pod_ip(d).parse().ok(),
                            layers,
                            path_mtu,
                            mtu_state,
                            mtu: Default::default(),
                            ..PeerReport::default()
                        }
                    })
                    .collect();
                let targets: Vec<TargetReport> = (1..=N)
                    .map(|t| TargetReport {
                        name: web(t),
                        ip: self.target_ip(t).parse().ok(),
                        port: Some(8080),
                        protocol: Some("http".into()),
                        layers: TARGET_LAYERS
                            .iter()
                            .map(|l| {
                                (
                                    l.to_string(),
                                    self.target.get(&(s, t, *l)).cloned().unwrap_or_else(ok),
                                )
                            })
                            .collect(),
                        ..TargetReport::default()
                    })
                    .collect();
                let r = AgentReport {
                    node: name(s),
                    zone: Some(self.zone[s].to_string()),
                    ready: Some(!self.not_ready.contains(&s)),
                    rounds: Some(self.rounds.get(&s).copied().unwrap_or(120)),
                    interval_seconds: Some(1.0),
                    timeout_seconds: None,
                    window_seconds: Some(10.0),
                    peers,
                    targets,
                    owners: self.owners(),
                    checks: Default::default(),
                };
                serde_json::to_string(&r).unwrap()
            })
            .collect()
    }

    pub(super) fn matrix(&self) -> Matrix {
        Matrix::build(&self.inputs())
    }

    /// What [`Mesh::matrix`] is built from.
    pub(super) fn inputs(&self) -> Inputs {
        let agents = self
            .docs()
            .iter()
            .map(|d| AgentReport::from_json(d).unwrap())
            .collect();
        let nodes = (1..=N)
            .map(|i| NodeMeta {
                name: name(i),
                zone: Some(self.zone[i].to_string()),
                node_ip: self.node_ip(i).parse().ok(),
                pod_ip: self.pod_ip(i).parse().ok(),
                pod_gateway: self.meta.then(|| self.gw(i).parse().unwrap()),
                pod_cidr: None,
                pod_cidrs: if self.meta {
                    self.pod_cidrs(i)
                } else {
                    Vec::new()
                },
                ..NodeMeta::default()
            })
            .collect();
        Inputs {
            agents,
            unreachable_agents: self.missing.iter().map(|&i| name(i)).collect(),
            nodes,
            kube: self.kube.clone(),
        }
    }

    pub(super) fn diagnose(&self) -> Diagnosis {
        diagnose(&self.matrix())
    }
}

// ---- expectations --------------------------------------------------------------------------

pub(super) struct Expect {
    pub(super) cause: Cause,
    pub(super) nodes: &'static [&'static str],
    pub(super) zones: &'static [&'static str],
    pub(super) targets: &'static [&'static str],
}

pub(super) const fn ex(cause: Cause, nodes: &'static [&'static str]) -> Expect {
    Expect {
        cause,
        nodes,
        zones: &[],
        targets: &[],
    }
}

pub(super) fn check(label: &str, d: &Diagnosis, want: &[Expect]) {
    let text = d.to_text();
    assert_eq!(d.healthy, want.is_empty(), "{label}: healthy\n{text}");
    assert_eq!(
        d.findings.len(),
        want.len(),
        "{label}: number of findings\n{text}"
    );
    for w in want {
        let hit = d
            .findings
            .iter()
            .find(|f| f.cause == w.cause && f.nodes == w.nodes);
        let Some(f) = hit else {
            panic!("{label}: no {:?} finding on {:?}\n{text}", w.cause, w.nodes);
        };
        if !w.zones.is_empty() {
            assert_eq!(f.zones, w.zones, "{label}: zones\n{text}");
        }
        for t in w.targets {
            assert!(
                f.targets.iter().any(|x| x == t),
                "{label}: target {t} missing\n{text}"
            );
        }
        assert!((0.0..=1.0).contains(&f.confidence), "{label}: confidence");
        assert!(
            !f.evidence.is_empty() && !f.next_steps.is_empty(),
            "{label}: evidence/steps"
        );
        assert!(!f.summary.is_empty());
    }
}

pub(super) type Scenario = fn(&mut Mesh);

pub(super) trait Tap {
    fn tap(self, f: fn(&mut Mesh)) -> Self;
}

impl Tap for Mesh {
    fn tap(mut self, f: fn(&mut Mesh)) -> Self {
        f(&mut self);
        self
    }
}

// ---- error counts, recorded onsets ---------------------------------------------------------

pub(super) fn timeout_count(n: u32, age: f64) -> ErrorCountInfo {
    ErrorCountInfo {
        kind: "timeout".into(),
        count: n,
        last: Some(err("timeout")),
        last_age_seconds: Some(age),
    }
}

/// The diagnosis of a recorded onset: `tests/fixtures/onset/NAME`, every agent's
/// `/api/v1/results` document as served during a lab fault's first seconds.
pub(super) fn onset_fixture(name: &str) -> Diagnosis {
    let docs: Vec<String> = onset_results(name).iter().map(|d| d.to_string()).collect();
    diagnose(&Matrix::from_json_documents(&docs).unwrap())
}

/// The diagnosis of a saved mesh view, `tests/fixtures/views/NAME`: an agent's
/// `/api/v1/diagnosis?include=inputs` (its `inputs`: what that view rested on).
pub(super) fn view_fixture(name: &str) -> Diagnosis {
    let path = format!("{}/tests/fixtures/views/{name}", env!("CARGO_MANIFEST_DIR"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let inputs: Inputs = serde_json::from_value(v["inputs"].clone()).unwrap();
    diagnose(&Matrix::build(&inputs))
}

/// The documents of a recorded onset (see [`onset_fixture`]), to edit before diagnosing.
pub(super) fn onset_results(name: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/tests/fixtures/onset/{name}", env!("CARGO_MANIFEST_DIR"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut docs = v["results"].as_array().unwrap().clone();
    // Recorded before agents published address facts: add what the lab's peers file now
    // states (its subnet layout: each node's pods in the /24 of its agent's pod IP, the lab
    // plan's 198.19.N.0/24), as every agent of the same lab would publish it.
    let mut nodes = serde_json::Map::new();
    for d in &docs {
        for p in d["peers"].as_array().into_iter().flatten() {
            let (Some(n), Some(ip)) = (p["node"].as_str(), p["pod_ip"].as_str()) else {
                continue;
            };
            let o: Vec<&str> = ip.split('.').collect();
            let cidr = format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
            nodes.insert(
                n.to_string(),
                serde_json::json!({"name": n, "node_ip": p["node_ip"], "pod_ip": ip, "pod_cidrs": [cidr]}),
            );
        }
    }
    let facts = serde_json::json!({"nodes": nodes.values().collect::<Vec<_>>()});
    for d in &mut docs {
        if d.get("owners").is_none() {
            d["owners"] = facts.clone();
        }
    }
    docs
}

// ---- loss vs an outage's cut round ---------------------------------------------------------

/// Lab-like figures (8 probes of 3 echoes in the window): `failed` probes failed whole,
/// `partial` answered probes lost `partial_lost` echoes between them; the last probe failed
/// when `last_failed`.
pub(super) fn echo_cell(
    failed: u32,
    partial: u32,
    partial_lost: u32,
    last_failed: bool,
) -> LayerStats {
    let lost = 3 * failed + partial_lost;
    LayerStats {
        reachable: Some(!last_failed),
        consecutive_failures: u32::from(last_failed),
        probes: 8,
        successes: 8 - failed,
        sent: 24,
        received: 24 - lost,
        success_ratio: Some(f64::from(8 - failed) / 8.0),
        loss_ratio: Some(f64::from(lost) / 24.0),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.1),
        last_probe_age_seconds: Some(0.1),
        failing_for_seconds: last_failed.then_some(0.1),
        errors: vec![timeout_count(failed + partial, 0.1)],
        ..ok()
    }
}

/// A probe failed whole in an earlier outage (still in the window), then this outage's cut
/// round: 1 of 3 echoes answered just now. 5/24 lost.
pub(super) fn cut_after_residue() -> LayerStats {
    echo_cell(1, 1, 2, false)
}

/// The cut round, then the first probe that failed whole. 5/24 lost.
pub(super) fn cut_then_failed() -> LayerStats {
    echo_cell(1, 1, 2, true)
}

/// Steady loss on one path: 6 echoes lost in 4 answered probes (25%).
pub(super) fn steady_pair_loss() -> LayerStats {
    echo_cell(0, 4, 6, false)
}

impl LayerStats {
    pub(super) fn with_cf(mut self, n: u32) -> LayerStats {
        self.consecutive_failures = n;
        self
    }
}
