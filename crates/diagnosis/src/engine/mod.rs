//! The engine: a [`Matrix`] in, a [`Diagnosis`] out. Pure, and O(pairs) (plus sorting).
//!
//! Stages, in the runbook's spirit (the network first, then policy and application):
//! 1. **Clean**: every cell becomes `Unknown`, `Ok`, `Lossy` or `Down` ([`Params`]); sources whose
//!    agent is not ready or just started, and cells with too few probes, are `Unknown`.
//!    `Lossy` counts only packets lost by answered probes: probes that failed whole are an
//!    outage's, and so is the one round an outage's edge cuts; a cell whose last probe failed
//!    after a single partial answer waits for the next probe (`random_loss`).
//!    **Onset**: a success last probed before a failure began (`failing_for_seconds`) is no
//!    evidence against it. A failing pair whose contrast is such a success (or an unconfirmed
//!    first failure), or that a zone / node-down / CNI candidate would explain once its stale
//!    successes are probed again, is *pending*: no other contrast-based candidate takes it and
//!    no finding reports it yet (likewise target and agent-HTTP pairs).
//! 2. **MTU**: pairs with path-MTU evidence (frag-needed / message-too-long errors, or an
//!    `mtu_state` of mismatch/blackhole while small probes pass), folded per node (star cover) or
//!    cluster-wide. Their other failures (stalled HTTP) are explained by it.
//! 3. **Network**: failing node pairs (pod-IP or node-IP ICMP down) explained greedily by the
//!    candidate covering most of them whose hit ratio clears its threshold: zone pair (`vpc`),
//!    node down, node CNI (or the node's routing table when its gateway answers net unreachable),
//!    a node's routing table (net unreachable from its address). What is left is folded per node
//!    when one node is common to ≥ 2 of them, else reported per node pair.
//! 4. **Targets and agents' HTTP**: failures not explained by stage 2/3 become `policy` (SYN
//!    timeouts with ICMP fine, or a NetworkPolicy that does not admit the port) or `application`
//!    (refused/reset/HTTP status, pod not Ready), or `cni` when the pod IP itself is dead.
//! 5. **Packet loss**: partial loss concentrated on a node's pairs (in or out), greedy by node;
//!    strong leftover loss per pair.
//!
//! One module per stage: `clean`, `mtu`, `network` (with `network_drafts`, its findings'
//! text), `application`, `loss`; `finish` turns the drafts into the report. This module holds
//! the entry points, [`Params`], the shared state and the stage order ([`diagnose_with`]). Why
//! each rule exists, and the incident behind it: `docs/design/diagnosis.md`.

mod application;
mod clean;
mod finish;
mod loss;
mod mtu;
mod network;
mod network_drafts;

use std::collections::{BTreeSet, HashMap};

use crate::matrix::{Dest, Matrix};
use crate::report::Diagnosis;

pub use clean::cell_state;
use clean::{NodeTally, Tally};
use finish::Draft;

/// Thresholds. `Params::default()` documents the values used by the CLI and the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// A cell with fewer probes in its window is unknown (a node that just joined).
    pub min_probes: u32,
    /// A cell is down when its last `n` probes failed (and it has `min_probes`).
    pub min_consecutive_failures: u32,
    /// ... or when its success ratio is at most this with `min_ratio_probes` probes.
    pub dead_success_ratio: f64,
    pub min_ratio_probes: u32,
    /// A source whose agent has done fewer rounds is ignored (a restarting agent).
    pub min_rounds: u64,
    /// A cell is lossy when at least this many packets (or probes) were lost ...
    pub lossy_min_lost: u32,
    /// ... and they are at least this fraction of those sent.
    pub lossy_min_ratio: f64,
    /// ... and, when the last probe failed whole, they were lost in at least this many answered
    /// probes (when the window's error counts say): one partial answer before a failure is
    /// what the round an outage cut looks like.
    pub lossy_min_probes: u32,
    /// Loss not concentrated on a node is reported per pair only above these.
    pub pair_loss_min_ratio: f64,
    pub pair_loss_min_lost: u32,
    /// deTector's hit ratio: a candidate must fail on this share of the pairs it covers.
    pub hit_ratio: f64,
    /// Node down: node-IP ICMP to it fails from at least this share of sources.
    pub node_down_ratio: f64,
    /// "Node IP fine": node-IP ICMP to it fails from at most this share of sources.
    pub node_ip_fine_max: f64,
    /// Zone partition: the cross-zone block fails on this share of its pairs.
    pub zone_ratio: f64,
    /// ... while inside each zone at most this share fails.
    pub zone_intra_max: f64,
    /// Lossy node: this share of its inbound or outbound pairs lose packets.
    pub loss_node_ratio: f64,
    /// Output bound: pairs listed per finding (the evidence says how many there were).
    pub max_pairs_per_finding: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_probes: 3,
            min_consecutive_failures: 2,
            dead_success_ratio: 0.1,
            min_ratio_probes: 5,
            min_rounds: 2,
            lossy_min_lost: 2,
            lossy_min_ratio: 0.05,
            lossy_min_probes: 2,
            pair_loss_min_ratio: 0.2,
            pair_loss_min_lost: 3,
            hit_ratio: 0.6,
            node_down_ratio: 0.8,
            node_ip_fine_max: 0.2,
            zone_ratio: 0.8,
            zone_intra_max: 0.5,
            loss_node_ratio: 0.5,
            max_pairs_per_finding: 500,
        }
    }
}

/// Run the engine with the default thresholds.
pub fn diagnose(m: &Matrix) -> Diagnosis {
    diagnose_with(m, &Params::default())
}

pub fn diagnose_with(m: &Matrix, p: &Params) -> Diagnosis {
    let mut e = Engine::new(m, p);
    e.mtu_stage();
    e.network_stage();
    e.app_stage();
    e.loss_stage();
    Diagnosis::new(e.finish())
}

/// A cell's verdict after cleaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    Unknown,
    Ok,
    Lossy,
    Down,
}

impl CellState {
    fn known(self) -> bool {
        self != CellState::Unknown
    }
}

const POD: usize = 0;
const NODE: usize = 1;
const HTTP: usize = 2;
const TCP: usize = 3;

struct Engine<'a> {
    m: &'a Matrix,
    p: &'a Params,
    restarting: Vec<bool>,
    states: Vec<[CellState; 4]>,
    /// Indices into `m.pairs` of node→node pairs from usable sources.
    peer_pairs: Vec<usize>,
    /// ... and of node→target pairs.
    target_pairs: Vec<usize>,
    pair_of: HashMap<(usize, usize), usize>,
    zone_id: Vec<Option<usize>>,
    zones: Vec<String>,
    node_tally: Vec<NodeTally>,
    drafts: Vec<Draft>,
    /// `m.pairs` index → the finding that explains it.
    explained: HashMap<usize, usize>,
    /// Node → node-level network finding (node down, CNI, node routing).
    node_finding: HashMap<usize, usize>,
    /// Node → its missing-route finding from the network stage, so target evidence of the
    /// same fault joins it instead of raising a second finding.
    egress_finding: HashMap<usize, RoutingFinding>,
    zone_finding: HashMap<(usize, usize), usize>,
    /// Peer pairs left failing by the network stage whose failure looks like heavy loss.
    deferred_loss: Vec<usize>,
    /// Per `m.pairs` index: its ICMP cells lost packets in the window (random loss, not an
    /// outage's residue), whatever the cleaning made of them.
    raw_loss: Vec<bool>,
    /// Target / agent HTTP pairs whose timeouts the packet loss on their path explains.
    deferred_app_loss: Vec<usize>,
    /// Per `m.pairs` index and layer: the failure's onset (streak age) of a down cell.
    onset: Vec<[Option<f64>; 4]>,
    /// Per node: the oldest onset among failing cells toward it / from it.
    in_onset: Vec<Option<f64>>,
    out_onset: Vec<Option<f64>>,
    /// Failing peer pairs a pending candidate would explain once its stale evidence is
    /// probed again: not reported yet.
    pending: BTreeSet<usize>,
}

/// A node's missing-route finding: its draft and the pairs it explains.
#[derive(Debug, Clone)]
struct RoutingFinding {
    draft: usize,
    pairs: Vec<usize>,
}

fn unordered_key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Engine<'_> {
    fn dst_node(&self, i: usize) -> Option<usize> {
        match self.m.pairs[i].dst {
            Dest::Node(d) => Some(d),
            Dest::Target(t) => self.m.targets.get(t).and_then(|t| t.node),
        }
    }

    fn name(&self, n: usize) -> &str {
        self.m.nodes.get(n).map_or("?", |x| x.name.as_str())
    }
}
