//! On-demand probes: "is this target reachable from every node — and if not, why?"
//!
//! `POST /api/v1/probe` on any agent: the request is validated ([`request`], pure) and fenced
//! ([`limits`]: token, per-client rate, global in-flight bound); the agent fans it out to the
//! chosen source agents, itself included ([`fanout`]), each runs the checks now with the agent's
//! own probers ([`run`]), and the answer streams back as NDJSON — an `accepted` line, one
//! `source` line per node as it arrives, then a `verdict` line: the diagnosis engine fed with
//! these results ([`verdict`], pure). A refused request sends no packet.
//!
//! Wire format: [`Line`]. Forwarded requests carry [`FORWARDED_HEADER`] and run on the receiving
//! agent only (no recursion); their answer is one `source` line.

pub mod client;
pub mod fanout;
pub mod limits;
pub mod request;
pub mod run;
pub mod verdict;

use std::net::IpAddr;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};

use crate::diagnosis::{Diagnosis, ErrorInfo};
use crate::net::Cidr;
use limits::Limits;
pub use request::{CheckSpec, Plan, Refusal, Resolved};
use run::Runner;

/// Marks a request one agent forwards to another: run here, do not fan out again.
pub const FORWARDED_HEADER: &str = "x-meshprobe-forwarded";

/// A pod, as Kubernetes knows it: where to probe it and the facts the diagnosis reads (pod
/// Ready and events, NetworkPolicies selecting it, the CNI pod on its node).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPod {
    pub ip: IpAddr,
    /// The node it runs on.
    pub node: Option<String>,
    pub facts: crate::diagnosis::KubeFacts,
}

/// The seam for `pod/NAMESPACE/NAME` targets. The Kubernetes support (src/k8s) implements it
/// and sets [`fanout::OnDemand::pods`]; without one (this build) pod targets are refused with
/// 501 "needs Kubernetes support". Implementations bound their own waits; the handler also
/// gives up after [`fanout::RESOLVE_TIMEOUT`].
pub trait PodResolver: Send + Sync {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> crate::probe::BoxFuture<'a, Result<ResolvedPod, String>>;
}

/// What one check found from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// `icmp`, `tcp`, `http` or `mtu` (context checks: `icmp`).
    pub check: String,
    /// For context checks, the layer they stand for (`icmp_pod`, `icmp_node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP checks: the path asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub ok: bool,
    pub sent: u32,
    pub received: u32,
    /// Median round trip (ICMP) or whole exchange (TCP/HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_state: Option<String>,
    /// The classified error (`{"kind": "timeout"}`, `{"kind": "net_unreachable", "from": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_text: Option<String>,
}

/// One source node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceLine {
    pub node: String,
    #[serde(default)]
    pub zone: Option<String>,
    /// Whether its agent answered; when not, `error` says why (evidence: node down?).
    pub answered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every check passed.
    pub ok: bool,
    pub elapsed_seconds: f64,
    #[serde(default)]
    pub checks: Vec<CheckOutcome>,
    /// ICMP to the target node's node IP and agent pod IP.
    #[serde(default)]
    pub context: Vec<CheckOutcome>,
}

impl SourceLine {
    /// An agent that gave no usable answer.
    pub fn silent(node: &str, zone: Option<String>, error: String, elapsed: f64) -> SourceLine {
        SourceLine {
            node: node.to_string(),
            zone,
            answered: false,
            error: Some(error),
            ok: false,
            elapsed_seconds: elapsed,
            checks: Vec::new(),
            context: Vec::new(),
        }
    }
}

/// The first line: what will be probed, from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub target: Resolved,
    pub checks: Vec<CheckSpec>,
    pub sources: Vec<String>,
    /// The longest this answer can take.
    pub deadline_seconds: f64,
}

/// The last line: reachable from every source, and the diagnosis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub target: Resolved,
    /// Every check passed from every source, and every source answered.
    pub reachable: bool,
    pub reachable_from: Vec<String>,
    pub unreachable_from: Vec<String>,
    /// Sources whose agent did not answer.
    pub agents_unreachable: Vec<String>,
    /// Set when the findings rest on a view that may itself be the problem (the asked agent
    /// reached no other agent and its own checks fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caution: Option<String>,
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
}

/// One NDJSON line of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Accepted(Accepted),
    Source(SourceLine),
    Verdict(Verdict),
}

pub type OutcomeCounter = Family<[(&'static str, &'static str); 1], Counter>;

/// The on-demand state of an agent.
pub struct OnDemand {
    pub limits: Limits,
    /// `--allow-cidr`: allowed besides the peer set's subnets.
    pub extra_allowed: Vec<Cidr>,
    pub runner: Runner,
    /// `meshprobe_ondemand_requests_total{outcome}`.
    pub requests: OutcomeCounter,
    /// Resolves `pod/NAMESPACE/NAME` targets; `None` in this build (refused with 501).
    pub pods: Option<Arc<dyn PodResolver>>,
}
