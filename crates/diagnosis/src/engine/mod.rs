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
//!    A node whose every TCP endpoint (its agent and its targets) drops connections that way,
//!    while most other agents accept them, is `conntrack` (`node_drops`).
//! 5. **Packet loss**: partial loss concentrated on a node's pairs (in or out), greedy by node;
//!    strong leftover loss per pair.
//!
//! One module per stage: `clean`, `mtu`, `network` (with `network_drafts`, its findings'
//! text), `application`, `node_drops`, `loss`; `finish` turns the drafts into the report. This module holds
//! the entry points and the stage order ([`diagnose_with`]); `state` the thresholds ([`Params`]) and
//! the shared state every stage reads and extends. Why
//! each rule exists, and the incident behind it: `docs/design/diagnosis.md`.

mod application;
mod clean;
mod finish;
mod loss;
mod mtu;
mod network;
mod network_drafts;
mod node_drops;
mod state;

use crate::matrix::Matrix;
use crate::report::Diagnosis;

pub use clean::cell_state;
pub(crate) use finish::sort as sort_findings;
use state::Engine;
pub use state::{CellState, Params};

/// Run the engine with the default thresholds.
pub fn diagnose(m: &Matrix) -> Diagnosis {
    diagnose_with(m, &Params::default())
}

pub fn diagnose_with(m: &Matrix, p: &Params) -> Diagnosis {
    let mut e = Engine::new(m, p);
    e.mtu_stage();
    e.network_stage();
    e.app_stage();
    e.node_drops_stage();
    e.loss_stage();
    Diagnosis::new(e.finish())
}
