//! The on-demand probe's wire format and seams: the NDJSON lines, one source's check
//! outcomes, the pod resolver Kubernetes plugs in.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::request::{CheckSpec, Resolved, ResolvedPod};
use crate::diagnosis::{Diagnosis, ErrorInfo};
use crate::model::Family;

/// Marks a request one agent forwards to another: run here, do not fan out again.
pub const FORWARDED_HEADER: &str = "x-meshprobe-forwarded";

/// On a forwarded request, the address of the client that asked the forwarding agent: the
/// receiving agent charges the work to that client (read only from a peer agent's address).
pub const CLIENT_HEADER: &str = "x-meshprobe-client";

/// On a forwarded request for a dual-stack pod (sent as its primary address): the pod's
/// address of the other family. A header, not a body field, so an agent from before
/// dual-stack probes ignores it and probes the primary family (its line reads as that family);
/// the receiving agent fences it like any target address.
pub const ALSO_HEADER: &str = "x-meshprobe-also";

/// The seam for `pod/NAMESPACE/NAME` targets. The Kubernetes support (src/k8s) implements it
/// and sets [`super::OnDemand::pods`]; without one (this build) pod targets are refused with
/// 501 "needs Kubernetes support". Implementations bound their own waits; the handler also
/// gives up after [`super::fanout::RESOLVE_TIMEOUT`].
pub trait PodResolver: Send + Sync {
    /// `admit`: whether the agent would probe the pod's IP (the shared fence). For one it
    /// would not, the facts are not gathered: a pod it will refuse costs one API call.
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        admit: Admit<'a>,
    ) -> crate::probe::BoxFuture<'a, Result<ResolvedPod, String>>;
}

/// The seam for `svc/NAMESPACE/NAME` targets: the Service's ClusterIP and TCP ports. The
/// Kubernetes support (src/k8s) implements it and sets [`super::OnDemand::services`]; without
/// one such targets are refused with 501. Implementations bound their own waits; the handler
/// also gives up after [`super::fanout::RESOLVE_TIMEOUT`].
pub trait ServiceResolver: Send + Sync {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> crate::probe::BoxFuture<'a, Result<super::request::ResolvedService, String>>;
}

/// Whether an address passes the on-demand fence.
pub type Admit<'a> = &'a (dyn Fn(IpAddr) -> bool + Send + Sync);

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
    /// `dns`: how the query ended (`ok`, `nxdomain`, `servfail`, `refused`, `no_answer`,
    /// `timeout`, …: [`crate::checks::dns::RESULTS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// `dns`: records of the type asked for in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<u32>,
    /// `dns`: the record type asked for (`A` or `AAAA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    /// The address family (`ipv4`, `ipv6`) of a target probed at two; absent: the target's
    /// primary family (one family, or an agent from before dual-stack probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

impl CheckOutcome {
    /// The family this outcome stands for: as tagged, else the target's primary family.
    pub fn family_or(&self, primary: Family) -> Family {
        self.family
            .as_deref()
            .and_then(|w| Family::ALL.into_iter().find(|f| f.as_str() == w))
            .unwrap_or(primary)
    }
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
    /// Dual-stack: the same per family probed (empty: one family). `reachable` above is
    /// reachable on every family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<FamilyVerdict>,
    #[serde(flatten)]
    pub diagnosis: Diagnosis,
}

/// One family's part of a dual-stack verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyVerdict {
    pub family: String,
    pub ip: IpAddr,
    pub reachable: bool,
    pub reachable_from: Vec<String>,
    pub unreachable_from: Vec<String>,
}

/// One NDJSON line of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Accepted(Accepted),
    Source(SourceLine),
    Verdict(Verdict),
}
