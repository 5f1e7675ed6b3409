//! The engine's shared state: the thresholds, a cell's cleaned state, and [`Engine`], which
//! every stage reads and extends (each stage's `impl Engine` lives in its own file).

use std::collections::{BTreeSet, HashMap};

use crate::matrix::{Dest, Matrix};
use crate::report::Cause;

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
/// A cell's verdict after cleaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    Unknown,
    Ok,
    Lossy,
    Down,
}
impl CellState {
    pub(super) fn known(self) -> bool {
        self != CellState::Unknown
    }
}
pub(super) struct Engine<'a> {
    pub(super) m: &'a Matrix,
    pub(super) p: &'a Params,
    pub(super) restarting: Vec<bool>,
    pub(super) states: Vec<[CellState; 4]>,
    /// Indices into `m.pairs` of node→node pairs from usable sources.
    pub(super) peer_pairs: Vec<usize>,
    /// ... and of node→target pairs.
    pub(super) target_pairs: Vec<usize>,
    pub(super) pair_of: HashMap<(usize, usize), usize>,
    pub(super) zone_id: Vec<Option<usize>>,
    pub(super) zones: Vec<String>,
    pub(super) node_tally: Vec<NodeTally>,
    pub(super) drafts: Vec<Draft>,
    /// `m.pairs` index → the finding that explains it.
    pub(super) explained: HashMap<usize, usize>,
    /// Node → node-level network finding (node down, CNI, node routing).
    pub(super) node_finding: HashMap<usize, usize>,
    /// Node → its missing-route finding from the network stage, so target evidence of the
    /// same fault joins it instead of raising a second finding.
    pub(super) egress_finding: HashMap<usize, RoutingFinding>,
    pub(super) zone_finding: HashMap<(usize, usize), usize>,
    /// Peer pairs left failing by the network stage whose failure looks like heavy loss.
    pub(super) deferred_loss: Vec<usize>,
    /// Per `m.pairs` index: its ICMP cells lost packets in the window (random loss, not an
    /// outage's residue), whatever the cleaning made of them.
    pub(super) raw_loss: Vec<bool>,
    /// Target / agent HTTP pairs whose timeouts the packet loss on their path explains.
    pub(super) deferred_app_loss: Vec<usize>,
    /// Per `m.pairs` index and layer: the failure's onset (streak age) of a down cell.
    pub(super) onset: Vec<[Option<f64>; 4]>,
    /// Per node: the oldest onset among failing cells toward it / from it.
    pub(super) in_onset: Vec<Option<f64>>,
    pub(super) out_onset: Vec<Option<f64>>,
    /// Failing peer pairs a pending candidate would explain once its stale evidence is
    /// probed again: not reported yet.
    pub(super) pending: BTreeSet<usize>,
}
/// A node's missing-route finding: its draft and the pairs it explains.
#[derive(Debug, Clone)]
pub(super) struct RoutingFinding {
    pub(super) draft: usize,
    pub(super) pairs: Vec<usize>,
}
pub(super) fn unordered_key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}
impl Engine<'_> {
    pub(super) fn dst_node(&self, i: usize) -> Option<usize> {
        match self.m.pairs[i].dst {
            Dest::Node(d) => Some(d),
            Dest::Target(t) => self.m.targets.get(t).and_then(|t| t.node),
        }
    }

    pub(super) fn name(&self, n: usize) -> &str {
        self.m.nodes.get(n).map_or("?", |x| x.name.as_str())
    }
}

pub(super) const POD: usize = 0;
pub(super) const NODE: usize = 1;
pub(super) const HTTP: usize = 2;
pub(super) const TCP: usize = 3;

/// Known cells (or pairs) counted against a candidate, and how many of them are bad.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    pub(super) bad: u32,
    pub(super) known: u32,
    /// Good ones last probed before the failures they are counted against began (onset).
    pub(super) stale: u32,
    /// Bad ones whose own contrast (the pair's other layer) predates their failure.
    pub(super) pending: u32,
}

/// Per node, per direction: node-IP ICMP, pod-IP (ICMP, or HTTP without ICMP), HTTP.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct NodeTally {
    pub(super) in_node: Tally,
    pub(super) in_pod: Tally,
    pub(super) in_http: Tally,
    pub(super) out_node: Tally,
    pub(super) out_pod: Tally,
    /// Outbound pod failures answered net unreachable by this node's own addresses.
    pub(super) out_own_net_unreachable: u32,
    /// Inbound node-IP cells unknown while their last probe answered (an outage's marks still
    /// in the window): the node IP may be fine, not yet a contrast.
    pub(super) in_node_answering: u32,
}

pub(super) struct Draft {
    pub(super) cause: Cause,
    pub(super) summary: String,
    pub(super) nodes: BTreeSet<usize>,
    pub(super) pairs: BTreeSet<(usize, Dest)>,
    pub(super) zones: BTreeSet<String>,
    pub(super) targets: BTreeSet<usize>,
    pub(super) confidence: f64,
    pub(super) evidence: Vec<String>,
    pub(super) next_steps: Vec<String>,
}
