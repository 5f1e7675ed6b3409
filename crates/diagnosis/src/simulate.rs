//! The scale simulator: a synthetic cluster, its plan, the load and coverage the plan implies,
//! and a seeded set of faults run through the real diagnosis engine over the probe matrix the
//! sampled plan would see. No network, no clock: everything is computed from the inputs.
//!
//! Accounting: per assigned peer and interval an agent runs 3 probes — `icmp_pod` and
//! `icmp_node` (each `icmp_count` echoes) and `http` (one new TCP connection and one request).
//! "probes/s" counts those probes; "packets/s" counts echoes plus HTTP exchanges. Path-MTU
//! checks (one Don't-Fragment probe per ICMP destination every `mtu_interval`, plus searches)
//! are reported apart; targets from the peers file are not simulated.
//!
//! Synthetic addresses (node i: node IP 172.16.0.0 + i + 1, pod subnet 10.0.0.0 + 256·i, /24)
//! are data only: the simulator sends nothing. Node metadata is what the agent's mesh view
//! gives the engine (node and pod IPs, no pod CIDR), so net-unreachable routers are attributed
//! the same way.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::Serialize;

use crate::{
    diagnose, AgentReport, Cause, Diagnosis, ErrorInfo, Inputs, LayerStats, Matrix, NodeMeta,
    PeerReport,
};
use meshprobe_core::plan::{NodeSpec, Plan, PlanParams};

/// Largest simulated cluster (synthetic pod subnets are /24s in 10.0.0.0/8).
pub const MAX_NODES: usize = 65_536;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimParams {
    pub nodes: usize,
    pub zones: usize,
    pub seed: u64,
    pub interval: Duration,
    /// Length of a rotation epoch (the plan's rotating peers change once per epoch).
    pub epoch: Duration,
    pub icmp_count: u16,
    pub mtu_interval: Duration,
    pub plan: PlanParams,
    /// Faults per kind.
    pub faults: usize,
    /// Address families every peer is probed at (2: a dual-stack cluster under `--ip-family
    /// auto`): each costs the peer's probes and packets again.
    pub families: usize,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            nodes: 5000,
            zones: 3,
            seed: 1,
            interval: Duration::from_secs(5),
            epoch: Duration::from_secs(60),
            icmp_count: 3,
            mtu_interval: Duration::from_secs(30),
            plan: PlanParams::default(),
            faults: 4,
            families: 1,
        }
    }
}

/// Probes per assigned peer per interval (icmp_pod, icmp_node, http).
pub const PROBES_PER_PEER: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct MinMeanMax {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl MinMeanMax {
    fn of(v: impl IntoIterator<Item = f64>) -> MinMeanMax {
        let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
        for x in v {
            min = min.min(x);
            max = max.max(x);
            sum += x;
            n += 1.0;
        }
        if n == 0.0 {
            return MinMeanMax {
                min: 0.0,
                mean: 0.0,
                max: 0.0,
            };
        }
        MinMeanMax {
            min,
            mean: sum / n,
            max,
        }
    }
}

/// The fault kinds the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The node is off: nothing reaches it, its agent does not answer.
    NodeDown,
    /// The node's pod network is broken: its pod IPs and its agent are cut off, its node IP answers.
    NodeCni,
    /// Two zones cannot reach each other (a VPC route or firewall between them).
    ZonePartition,
    /// One node lost its route to one other node's pod subnet (`lab fault route A B`).
    SinglePair,
    /// One node lost its routes to every other pod subnet.
    NodeEgress,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::NodeDown,
        FaultKind::NodeCni,
        FaultKind::ZonePartition,
        FaultKind::SinglePair,
        FaultKind::NodeEgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::NodeDown => "node_down",
            FaultKind::NodeCni => "node_cni",
            FaultKind::ZonePartition => "zone_partition",
            FaultKind::SinglePair => "single_pair",
            FaultKind::NodeEgress => "node_egress",
        }
    }
}

/// One injected fault and what the engine said.
#[derive(Debug, Clone, Serialize)]
pub struct FaultOutcome {
    pub kind: FaultKind,
    /// Where it was injected: node names, or two zone names.
    pub location: Vec<String>,
    pub expected: Cause,
    /// The engine's single finding matched cause and location.
    pub localised: bool,
    /// The matching finding was there, but with other findings beside it.
    pub found_among_others: bool,
    /// Rotation epoch whose plan first probes the faulty pair (single pairs; else 0), and
    /// the time that means.
    pub epoch: u64,
    pub detect_after_seconds: f64,
    /// The engine's findings, as `cause [nodes] [zones]`.
    pub findings: Vec<String>,
}

/// Everything the simulator reports.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub nodes: usize,
    pub zones: usize,
    pub seed: u64,
    pub interval_seconds: f64,
    pub epoch_seconds: f64,
    pub sampled: bool,
    pub full_mesh_max: usize,
    pub peers_per_agent: MinMeanMax,
    /// The most peers the plan can give one agent at this zone count, whatever N (sampled).
    pub peers_per_agent_bound: Option<usize>,
    /// Address families every peer is probed at.
    pub families: usize,
    pub probes_per_second_per_agent: MinMeanMax,
    pub probes_per_second_cluster: f64,
    pub full_mesh_probes_per_second_cluster: f64,
    pub packets_per_second_per_agent_max: f64,
    pub packets_per_second_cluster: f64,
    /// Cheap path-MTU checks, per agent at most (searches come on top when a path changes).
    pub mtu_checks_per_second_per_agent_max: f64,
    pub probers_per_node: MinMeanMax,
    pub zone_pairs_probed: usize,
    pub zone_pairs: usize,
    pub pairs_probed_per_interval: usize,
    /// Epochs and seconds until every directed node pair has been probed (`None`: never).
    pub coverage_epochs: Option<u64>,
    pub coverage_seconds: Option<f64>,
    /// Filled by the caller, which can run the agent's real metrics encoder.
    pub series_per_agent_steady: Option<usize>,
    pub series_per_agent_one_failing_peer: Option<usize>,
    /// Filled by the caller: wall time of one `Plan::build`.
    pub plan_build_seconds: Option<f64>,
    pub faults: Vec<FaultOutcome>,
}

impl SimReport {
    pub fn localised(&self) -> usize {
        self.faults.iter().filter(|f| f.localised).count()
    }
}

/// A small seeded generator (SplitMix64).
struct Rng {
    state: u64,
}

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        meshprobe_core::plan::mix(self.state.wrapping_sub(0x9e37_79b9_7f4a_7c15))
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The synthetic cluster: `node-00001`… spread round-robin-ish over `zone-a`, `zone-b`, …
/// (the seed shuffles which node lands where).
pub fn cluster(n: usize, zones: usize, seed: u64) -> Vec<NodeSpec> {
    let mut rng = Rng::new(seed);
    let width = n.to_string().len().max(5);
    (0..n)
        .map(|i| NodeSpec {
            name: format!("node-{:0width$}", i + 1),
            zone: (zones > 0).then(|| zone_name(rng.below(zones))),
        })
        .collect()
}

fn zone_name(z: usize) -> String {
    let mut s = String::new();
    let mut z = z;
    loop {
        s.insert(0, char::from(b'a' + (z % 26) as u8));
        if z < 26 {
            break;
        }
        z = z / 26 - 1;
    }
    format!("zone-{s}")
}

// The simulated fleet's addresses (the fleet emulator serves the same): node `i` at
// 172.16.0.(i+1) onwards, its pods in a /24 at 10.0.i.0 onwards, .10 its agent, .1 its gateway.
pub fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xac10_0000u32 + i as u32 + 1))
}
pub fn pod_base(i: usize) -> u32 {
    0x0a00_0000u32 + ((i as u32) << 8)
}
pub fn pod_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(pod_base(i) + 10))
}
pub fn pod_gateway(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(pod_base(i) + 1))
}

// ---- window figures, as in the engine's table tests ------------------------------------------

fn ok() -> LayerStats {
    LayerStats {
        reachable: Some(true),
        consecutive_failures: 0,
        probes: 12,
        successes: 12,
        sent: 12,
        received: 12,
        success_ratio: Some(1.0),
        loss_ratio: Some(0.0),
        last_error: None,
        last_error_age_seconds: None,
        last_probe_age_seconds: Some(0.4),
        errors: Vec::new(),
        ..LayerStats::default()
    }
}

/// A fault that started 3 probes ago.
fn down(kind: &str, from: Option<IpAddr>) -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 3,
        successes: 9,
        received: 9,
        success_ratio: Some(0.75),
        loss_ratio: Some(0.25),
        last_error: Some(ErrorInfo {
            kind: kind.into(),
            from: from.map(|ip| ip.to_string()),
            ..ErrorInfo::default()
        }),
        last_error_age_seconds: Some(0.4),
        ..ok()
    }
}

const POD: &str = "icmp_pod";
const NODE: &str = "icmp_node";
const HTTP: &str = "http";
const ALL_LAYERS: [&str; 3] = [POD, NODE, HTTP];

/// A fault as a rewrite of the matrix: which (src, dst, layer) cells fail and how, and which
/// agents stop answering.
struct Fault {
    kind: FaultKind,
    location: Vec<String>,
    expected: Cause,
    /// Expected finding's nodes (compared as sets), or zones for a partition.
    want_nodes: Vec<String>,
    want_zones: Vec<String>,
    epoch: u64,
    cells: Vec<FaultCell>,
    silent: Option<usize>,
}

/// One (src, dst, layer) cell a fault rewrites, and what it shows.
struct FaultCell {
    src: usize,
    dst: usize,
    layer: &'static str,
    stats: LayerStats,
}

impl FaultCell {
    fn new(src: usize, dst: usize, layer: &'static str, stats: LayerStats) -> FaultCell {
        FaultCell {
            src,
            dst,
            layer,
            stats,
        }
    }
}

/// The synthesised reports of every agent, and what the engine makes of them.
fn run_engine(plan: &Plan, fault: &Fault, interval: f64, window: f64) -> Diagnosis {
    let n = plan.names.len();
    let mut over: BTreeMap<(usize, usize), BTreeMap<&str, LayerStats>> = BTreeMap::new();
    for c in &fault.cells {
        if plan.probes(c.src, c.dst) {
            over.entry((c.src, c.dst))
                .or_default()
                .insert(c.layer, c.stats.clone());
        }
    }
    let zone = |i: usize| {
        let z = &plan.zones[plan.zone_of[i]];
        (!z.is_empty()).then(|| z.clone())
    };
    let healthy: BTreeMap<String, LayerStats> =
        ALL_LAYERS.iter().map(|l| (l.to_string(), ok())).collect();
    let agents: Vec<AgentReport> = (0..n)
        .filter(|&s| fault.silent != Some(s))
        .map(|s| AgentReport {
            node: plan.names[s].clone(),
            zone: zone(s),
            ready: Some(true),
            rounds: Some(100),
            interval_seconds: Some(interval),
            timeout_seconds: None,
            window_seconds: Some(window),
            peers: plan.out[s]
                .iter()
                .map(|&d| {
                    let d = d as usize;
                    let mut layers = healthy.clone();
                    if let Some(o) = over.get(&(s, d)) {
                        for (l, st) in o {
                            layers.insert(l.to_string(), st.clone());
                        }
                    }
                    PeerReport {
                        node: plan.names[d].clone(),
                        zone: zone(d),
                        node_ip: Some(node_ip(d)),
                        pod_ip: Some(pod_ip(d)),
                        layers,
                        ..PeerReport::default()
                    }
                })
                .collect(),
            targets: Vec::new(),
            owners: Default::default(),
            checks: BTreeMap::new(),
        })
        .collect();
    let nodes = (0..n)
        .map(|i| NodeMeta {
            name: plan.names[i].clone(),
            zone: zone(i),
            node_ip: Some(node_ip(i)),
            pod_ip: Some(pod_ip(i)),
            // The simulated fleet's facts: one /24 per node, its gateway the first address.
            pod_gateway: Some(pod_gateway(i)),
            pod_cidrs: vec![format!("{}/24", Ipv4Addr::from(pod_base(i)))],
            ..NodeMeta::default()
        })
        .collect();
    let matrix = Matrix::build(&Inputs {
        agents,
        unreachable_agents: fault
            .silent
            .map(|x| plan.names[x].clone())
            .into_iter()
            .collect(),
        nodes,
        kube: None,
    });
    diagnose(&matrix)
}

/// Every cell touching node `x`: `inbound` on `in_layers` toward it, `outbound` on
/// `out_layers` from it.
fn around(
    n: usize,
    x: usize,
    in_layers: &[&'static str],
    inbound: &LayerStats,
    out_layers: &[&'static str],
    outbound: &LayerStats,
) -> Vec<FaultCell> {
    let mut v = Vec::new();
    for o in (0..n).filter(|&o| o != x) {
        for l in in_layers {
            v.push(FaultCell::new(o, x, l, inbound.clone()));
        }
        for l in out_layers {
            v.push(FaultCell::new(x, o, l, outbound.clone()));
        }
    }
    v
}

fn make_faults(plan: &Plan, p: &SimParams) -> Vec<Fault> {
    let n = plan.names.len();
    let mut rng = Rng::new(p.seed ^ 0x6661_756c_7473);
    let mut out = Vec::new();
    if n < 2 {
        return out;
    }
    let name = |i: usize| plan.names[i].clone();
    let timeout = down("timeout", None);
    for _ in 0..p.faults {
        let x = rng.below(n);
        out.push(Fault {
            kind: FaultKind::NodeDown,
            location: vec![name(x)],
            expected: Cause::NodeDown,
            want_nodes: vec![name(x)],
            want_zones: vec![],
            epoch: 0,
            cells: around(
                n,
                x,
                &ALL_LAYERS,
                &down("host_unreachable", None),
                &[],
                &timeout,
            ),
            silent: Some(x),
        });
        let x = rng.below(n);
        out.push(Fault {
            kind: FaultKind::NodeCni,
            location: vec![name(x)],
            expected: Cause::Cni,
            want_nodes: vec![name(x)],
            want_zones: vec![],
            epoch: 0,
            cells: around(n, x, &[POD, HTTP], &timeout, &ALL_LAYERS, &timeout),
            silent: None,
        });
        if plan.zones.len() >= 2 {
            let za = rng.below(plan.zones.len());
            let zb = (za + 1 + rng.below(plan.zones.len() - 1)) % plan.zones.len();
            // Only the planned pairs matter (the matrix holds nothing else).
            let mut cells = Vec::new();
            for (s, out) in plan.out.iter().enumerate() {
                for &d in out {
                    let (a, b) = (plan.zone_of[s], plan.zone_of[d as usize]);
                    if (a == za && b == zb) || (a == zb && b == za) {
                        for l in ALL_LAYERS {
                            cells.push(FaultCell::new(s, d as usize, l, timeout.clone()));
                        }
                    }
                }
            }
            let mut zones = vec![plan.zones[za].clone(), plan.zones[zb].clone()];
            zones.sort();
            out.push(Fault {
                kind: FaultKind::ZonePartition,
                location: zones.clone(),
                expected: Cause::Vpc,
                want_nodes: vec![],
                want_zones: zones,
                epoch: 0,
                cells,
                silent: None,
            });
        }
        // A (a → b) route lost on a.
        let a = rng.below(n);
        let b = (a + 1 + rng.below(n - 1)) % n;
        out.push(route_fault(plan, a, b, first_epoch_probing(plan, p, a, b)));
        let x = rng.below(n);
        out.push(Fault {
            kind: FaultKind::NodeEgress,
            location: vec![name(x)],
            expected: Cause::Routing,
            want_nodes: vec![name(x)],
            want_zones: vec![],
            epoch: 0,
            cells: around(
                n,
                x,
                &[POD, HTTP],
                &timeout,
                &[POD, HTTP],
                &down("net_unreachable", Some(pod_gateway(x))),
            ),
            silent: None,
        });
    }
    out
}

/// Node `a` lost its route to `b`'s pod subnet: a gets "net unreachable" from its own pod
/// gateway, b's answers to a time out.
fn route_fault(plan: &Plan, a: usize, b: usize, epoch: u64) -> Fault {
    let nu = down("net_unreachable", Some(pod_gateway(a)));
    let timeout = down("timeout", None);
    Fault {
        kind: FaultKind::SinglePair,
        location: vec![plan.names[a].clone(), plan.names[b].clone()],
        expected: Cause::Routing,
        want_nodes: vec![plan.names[a].clone()],
        want_zones: vec![],
        epoch,
        cells: vec![
            FaultCell::new(a, b, POD, nu.clone()),
            FaultCell::new(a, b, HTTP, nu),
            FaultCell::new(b, a, POD, timeout.clone()),
            FaultCell::new(b, a, HTTP, timeout),
        ],
        silent: None,
    }
}

/// The first epoch whose plan probes a → b or b → a (`u64::MAX` if none within the
/// coverage time, i.e. rotation off and the pair outside the core).
fn first_epoch_probing(plan: &Plan, p: &SimParams, a: usize, b: usize) -> u64 {
    if plan.core[a].contains(&(b as u32)) || plan.core[b].contains(&(a as u32)) {
        return 0;
    }
    let limit = plan.coverage_epochs().unwrap_or(0);
    // Only the rotation differs between epochs: its offsets say when (a, b) comes up.
    let ring = meshprobe_core::plan::ring_positions(&plan.names);
    let n = plan.names.len();
    let (pa, pb) = (ring[a], ring[b]);
    let off_ab = (pb + n - pa) % n;
    let off_ba = (pa + n - pb) % n;
    (0..limit)
        .find(|&e| {
            let offs = meshprobe_core::plan::rotation_offsets(n, p.plan.rotate, e);
            offs.contains(&off_ab) || offs.contains(&off_ba)
        })
        .unwrap_or(u64::MAX)
}

/// Whether the engine's findings name the fault: (its only finding, one of several). A single
/// pair counts when the finding names its source or the pair: when the plan of that epoch
/// probes only b → a, timeouts cannot tell which side lost its route.
fn matches(d: &Diagnosis, f: &Fault) -> (bool, bool) {
    let hit = d.findings.iter().any(|x| {
        let mut a = x.nodes.clone();
        a.sort();
        x.cause == f.expected
            && if f.want_zones.is_empty() {
                let mut b = f.want_nodes.clone();
                b.sort();
                let mut pair = f.location.clone();
                pair.sort();
                a == b || (f.kind == FaultKind::SinglePair && a == pair)
            } else {
                let mut z = x.zones.clone();
                z.sort();
                z == f.want_zones
            }
    });
    (hit && d.findings.len() == 1, hit && d.findings.len() > 1)
}

/// Run the simulation.
pub fn simulate(p: &SimParams) -> SimReport {
    let nodes = cluster(p.nodes, p.zones, p.seed);
    let plan = Plan::build(&nodes, &p.plan, 0);
    let n = plan.names.len();
    let interval = p.interval.as_secs_f64().max(1e-9);
    let peers: Vec<f64> = plan.out.iter().map(|o| o.len() as f64).collect();
    let peers_mm = MinMeanMax::of(peers.iter().copied());
    let families = p.families.max(1) as f64;
    let per_peer = PROBES_PER_PEER as f64 * families / interval;
    let probes_mm = MinMeanMax::of(peers.iter().map(|x| x * per_peer));
    let packets_per_peer = (2.0 * f64::from(p.icmp_count) + 1.0) * families / interval;
    let pairs = plan.pairs();
    let mut zone_pairs = std::collections::BTreeSet::new();
    for (s, out) in plan.out.iter().enumerate() {
        for &d in out {
            let (a, b) = (plan.zone_of[s], plan.zone_of[d as usize]);
            if a != b {
                zone_pairs.insert((a, b));
            }
        }
    }
    let zc = plan.zones.len();
    let mut faults = Vec::new();
    let window = 12.0 * interval;
    for f in make_faults(&plan, p) {
        let epoch_plan = if f.epoch == 0 || f.epoch == u64::MAX {
            None
        } else {
            Some(Plan::build(&nodes, &p.plan, f.epoch))
        };
        let d = if f.epoch == u64::MAX {
            Diagnosis::new(Vec::new())
        } else {
            run_engine(epoch_plan.as_ref().unwrap_or(&plan), &f, interval, window)
        };
        let (localised, among) = matches(&d, &f);
        faults.push(FaultOutcome {
            kind: f.kind,
            location: f.location.clone(),
            expected: f.expected,
            localised,
            found_among_others: among,
            epoch: f.epoch,
            detect_after_seconds: if f.epoch == u64::MAX {
                f64::INFINITY
            } else {
                f.epoch as f64 * p.epoch.as_secs_f64()
            },
            findings: d
                .findings
                .iter()
                .map(|x| {
                    let mut s = format!("{} [{}]", x.cause, x.nodes.join(","));
                    if !x.zones.is_empty() {
                        s.push_str(&format!(" zones [{}]", x.zones.join(",")));
                    }
                    s
                })
                .collect(),
        });
    }
    let coverage_epochs = plan.coverage_epochs();
    SimReport {
        nodes: n,
        zones: zc,
        seed: p.seed,
        interval_seconds: interval,
        epoch_seconds: p.epoch.as_secs_f64(),
        sampled: plan.sampled,
        full_mesh_max: p.plan.full_mesh_max,
        peers_per_agent: peers_mm,
        peers_per_agent_bound: plan.sampled.then(|| p.plan.max_peers(zc)),
        families: p.families.max(1),
        probes_per_second_per_agent: probes_mm,
        probes_per_second_cluster: pairs as f64 * per_peer,
        full_mesh_probes_per_second_cluster: (n * n.saturating_sub(1)) as f64 * per_peer,
        packets_per_second_per_agent_max: peers.iter().copied().fold(0.0, f64::max)
            * packets_per_peer,
        packets_per_second_cluster: pairs as f64 * packets_per_peer,
        mtu_checks_per_second_per_agent_max: peers.iter().copied().fold(0.0, f64::max) * 2.0
            / p.mtu_interval.as_secs_f64().max(1.0),
        probers_per_node: MinMeanMax::of(plan.in_degrees().into_iter().map(|x| x as f64)),
        zone_pairs_probed: zone_pairs.len(),
        zone_pairs: zc * zc.saturating_sub(1),
        pairs_probed_per_interval: pairs,
        coverage_epochs,
        coverage_seconds: coverage_epochs.map(|e| {
            if plan.sampled {
                e as f64 * p.epoch.as_secs_f64()
            } else {
                interval
            }
        }),
        series_per_agent_steady: None,
        series_per_agent_one_failing_peer: None,
        plan_build_seconds: None,
        faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(nodes: usize, zones: usize, seed: u64) -> SimParams {
        SimParams {
            nodes,
            zones,
            seed,
            faults: 2,
            ..SimParams::default()
        }
    }

    #[test]
    fn a_full_mesh_localises_every_fault() {
        for seed in [1, 2] {
            let r = simulate(&params(40, 2, seed));
            assert!(!r.sampled);
            assert_eq!(r.peers_per_agent.min, 39.0);
            assert_eq!(r.coverage_seconds, Some(5.0));
            assert_eq!(r.faults.len(), 10);
            for f in &r.faults {
                assert!(f.localised, "seed {seed}: {f:?}");
                assert_eq!(f.epoch, 0);
            }
        }
    }

    #[test]
    fn a_dual_stack_cluster_costs_each_peer_twice() {
        let one = simulate(&params(400, 3, 1));
        let two = simulate(&SimParams {
            families: 2,
            ..params(400, 3, 1)
        });
        let (p, q) = (&one.peers_per_agent, &two.peers_per_agent);
        assert_eq!(
            (p.min, p.mean, p.max),
            (q.min, q.mean, q.max),
            "the same plan"
        );
        let (a, b) = (
            &one.probes_per_second_per_agent,
            &two.probes_per_second_per_agent,
        );
        assert!((b.max - 2.0 * a.max).abs() < 1e-9, "{a:?} {b:?}");
        assert!((two.probes_per_second_cluster - 2.0 * one.probes_per_second_cluster).abs() < 1e-6);
        assert_eq!(two.families, 2);
    }

    #[test]
    fn a_sampled_plan_meets_the_targets_and_localises_faults() {
        for (nodes, zones, seed) in [(400usize, 3usize, 1u64), (650, 2, 7), (900, 4, 3)] {
            let r = simulate(&params(nodes, zones, seed));
            let label = format!("{nodes} nodes, {zones} zones, seed {seed}");
            assert!(r.sampled, "{label}");
            assert!(
                r.probes_per_second_per_agent.max <= 20.0,
                "{label}: {:?}",
                r.probes_per_second_per_agent
            );
            assert!(r.probers_per_node.min >= 3.0, "{label}");
            assert_eq!(r.zone_pairs_probed, zones * (zones - 1), "{label}");
            let cover = r.coverage_epochs.unwrap();
            assert_eq!(cover, (nodes as u64 / 2).div_ceil(4), "{label}");
            for f in &r.faults {
                assert!(f.localised, "{label}: {f:?}");
                assert!(f.epoch < cover, "{label}: {f:?}");
            }
            // Every kind was injected.
            for k in FaultKind::ALL {
                assert!(r.faults.iter().any(|f| f.kind == k), "{label}: no {k:?}");
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let a = serde_json::to_string(&simulate(&params(300, 3, 9))).unwrap();
        let b = serde_json::to_string(&simulate(&params(300, 3, 9))).unwrap();
        assert_eq!(a, b);
        let c = serde_json::to_string(&simulate(&params(300, 3, 10))).unwrap();
        assert_ne!(a, c);
    }

    /// What the engine can and cannot tell on a sampled plan, with the sparsest settings: groups
    /// of 2, one representative per zone, no rotation, the minimum of 3 probers per node.
    #[test]
    fn on_a_minimal_plan_node_and_zone_faults_are_localised_unprobed_pairs_are_not_seen() {
        let sparse = PlanParams {
            full_mesh_max: 50,
            min_probers: 3,
            group_size: 2,
            zone_reps: 1,
            rotate: 0,
        };
        for (nodes, zones, seed) in [
            (120usize, 1usize, 1u64),
            (120, 2, 2),
            (150, 3, 3),
            (90, 4, 4),
        ] {
            let p = SimParams {
                plan: sparse,
                faults: 3,
                ..params(nodes, zones, seed)
            };
            let r = simulate(&p);
            let label = format!("{nodes} nodes, {zones} zones");
            assert!(r.sampled && r.coverage_epochs.is_none(), "{label}");
            assert!(r.probers_per_node.min >= 3.0, "{label}");
            for f in &r.faults {
                if f.kind == FaultKind::SinglePair {
                    // Without rotation a pair outside the core is never probed: invisible.
                    assert_eq!(f.localised, f.epoch == 0, "{label}: {f:?}");
                    if f.epoch != 0 {
                        assert!(f.findings.is_empty(), "{label}: {f:?}");
                    }
                } else {
                    assert!(f.localised, "{label}: {f:?}");
                }
            }
        }
    }

    /// A route lost on a → b: when the plan probes a → b, "net unreachable" from a's gateway
    /// names a; when it probes only b → a, the timeouts name the pair but not the side.
    #[test]
    fn a_lost_route_is_pinned_on_its_node_only_when_that_direction_is_probed() {
        let nodes = cluster(300, 3, 5);
        let plan = Plan::build(&nodes, &PlanParams::default(), 0);
        let n = plan.names.len();
        let one_way = |forward: bool| {
            (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .find(|&(a, b)| {
                    a != b && plan.probes(a, b) == forward && plan.probes(b, a) != forward
                })
                .unwrap()
        };
        let (a, b) = one_way(true);
        let d = run_engine(&plan, &route_fault(&plan, a, b, 0), 5.0, 60.0);
        assert_eq!(d.findings.len(), 1, "{}", d.to_text());
        assert_eq!(d.findings[0].cause, Cause::Routing);
        assert_eq!(
            d.findings[0].nodes,
            vec![plan.names[a].clone()],
            "{}",
            d.to_text()
        );

        let (a, b) = one_way(false);
        let d = run_engine(&plan, &route_fault(&plan, a, b, 0), 5.0, 60.0);
        assert_eq!(d.findings.len(), 1, "{}", d.to_text());
        assert_eq!(d.findings[0].cause, Cause::Routing);
        let mut pair = vec![plan.names[a].clone(), plan.names[b].clone()];
        pair.sort();
        assert_eq!(d.findings[0].nodes, pair, "{}", d.to_text());

        // A pair the plan does not probe at all: nothing to see this epoch.
        let (a, b) = (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .find(|&(a, b)| a != b && !plan.probes(a, b) && !plan.probes(b, a))
            .unwrap();
        assert!(run_engine(&plan, &route_fault(&plan, a, b, 0), 5.0, 60.0).healthy);
    }

    #[test]
    fn zone_names_are_unique() {
        let names: std::collections::BTreeSet<String> = (0..800).map(zone_name).collect();
        assert_eq!(names.len(), 800);
        assert_eq!(zone_name(0), "zone-a");
        assert_eq!(zone_name(26), "zone-aa");
    }
}
