//! What the engine reads: agents' `/api/v1/results` documents (own `Deserialize` structs, lenient
//! and forward compatible: unknown fields are ignored, most fields are optional), node metadata,
//! optional Kubernetes facts and optional path-MTU figures.
//!
//! Two ways in: parse the JSON an agent serves ([`AgentReport::from_json`]), or convert the
//! in-memory pieces an agent holds (`From<&WindowStats>`, `From<&ErrorClass>`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use meshprobe_core::model::ErrorClass;

/// One agent's `/api/v1/results` document: the view of one source node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AgentReport {
    pub node: String,
    pub zone: Option<String>,
    /// `false` while the agent's first probe round runs: such a source is ignored.
    pub ready: Option<bool>,
    pub rounds: Option<u64>,
    pub interval_seconds: Option<f64>,
    /// The probe timeout: a probe that timed out was sent this long before it ended.
    pub timeout_seconds: Option<f64>,
    pub window_seconds: Option<f64>,
    pub peers: Vec<PeerReport>,
    pub targets: Vec<TargetReport>,
    /// What the agent knows about addresses (its peer set's facts): absent from older agents.
    pub owners: AddressFacts,
    /// Its per-source checks by kind (`dns`, `service`); other kinds are kept, not read.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, CheckStats>,
}

/// One per-source check's figures (`checks.dns`, `checks.service` of `/api/v1/results`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CheckStats {
    /// The name resolved (`dns`) or the `IP:PORT` connected to (`service`).
    pub target: String,
    pub reachable: Option<bool>,
    pub consecutive_failures: u32,
    pub probes: u32,
    pub successes: u32,
    pub success_ratio: Option<f64>,
    pub last_result: Option<String>,
    pub last_error: Option<CheckErrorInfo>,
    pub last_probe_age_seconds: Option<f64>,
}

/// A check's last failure inside the window.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CheckErrorInfo {
    pub kind: String,
    pub detail: String,
    pub age_seconds: Option<f64>,
}

/// The facts behind the ownership map ([`meshprobe_core::owners`]) as agents publish them in
/// `/api/v1/results`: every node's addresses and pod CIDRs, every target's IP and node. Each
/// reader (the mesh view, `diagnose --agents`, the on-demand verdict) builds the same map.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AddressFacts {
    pub nodes: Vec<NodeMeta>,
    pub targets: Vec<TargetPlace>,
}

/// Where a target runs, when a fact says so.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TargetPlace {
    pub name: String,
    pub ip: Option<IpAddr>,
    /// Dual-stack: every family's address, `ip` first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl TargetPlace {
    /// Its facts for the ownership map.
    pub fn addrs(&self) -> meshprobe_core::owners::TargetAddrs {
        meshprobe_core::owners::TargetAddrs {
            name: self.name.clone(),
            ip: self.ip,
            ips: self.ips.clone(),
            node: self.node.clone(),
        }
    }
}

impl AddressFacts {
    /// The ownership map of these facts alone (CIDRs that do not parse are left out).
    pub fn owner_map(&self) -> meshprobe_core::owners::OwnerMap {
        use meshprobe_core::owners::{NodeAddrs, OwnerMap, TargetAddrs};
        let nodes: Vec<NodeAddrs> = self.nodes.iter().map(NodeMeta::addrs).collect();
        let targets: Vec<TargetAddrs> = self.targets.iter().map(TargetPlace::addrs).collect();
        OwnerMap::new(&nodes, &targets)
    }

    /// A peer set's facts (the peers file's, or Kubernetes discovery's).
    pub fn of(set: &meshprobe_core::peers::PeerSet) -> AddressFacts {
        AddressFacts {
            nodes: set
                .peers
                .iter()
                .map(|p| NodeMeta {
                    name: p.node.clone(),
                    zone: p.zone.clone(),
                    node_ip: Some(p.node_ip),
                    pod_ip: Some(p.pod_ip),
                    node_ips: p.node_ips.clone(),
                    pod_ips: p.pod_ips.clone(),
                    pod_gateway: p.pod_gateway,
                    pod_gateways: p.pod_gateways.clone(),
                    pod_cidr: None,
                    pod_cidrs: p.pod_cidrs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            targets: set
                .targets
                .iter()
                .map(|t| TargetPlace {
                    name: t.name.clone(),
                    ip: Some(t.ip),
                    ips: t.ips.clone(),
                    node: t.node.clone(),
                })
                .collect(),
        }
    }
}

/// One peer (another agent's node) as seen from the reporting node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PeerReport {
    pub node: String,
    pub zone: Option<String>,
    pub node_ip: Option<IpAddr>,
    pub pod_ip: Option<IpAddr>,
    /// Layer name (`icmp_pod`, `icmp_node`, `http`, `tcp`, or a future one) → window figures.
    pub layers: BTreeMap<String, LayerStats>,
    /// Path MTU toward this peer's pod IP (issue 4), when measured.
    pub path_mtu: Option<u32>,
    pub mtu_state: Option<MtuState>,
    /// Path MTU per ICMP layer, as agents serve it: `{"icmp_pod": {"path_mtu", "state", …},
    /// "icmp_node": {…}}`. The worst state of the two is the pair's.
    pub mtu: BTreeMap<String, MtuReport>,
    /// The family (`ipv4`, `ipv6`) of the figures above, when the agent probed two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The other family's figures, keyed by family, on a destination probed at two.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub families: BTreeMap<String, FamilyReport>,
}

/// A destination's figures at one more family (agents' `families` entries).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FamilyReport {
    /// A peer's node address of this family (absent: the node has none).
    pub node_ip: Option<IpAddr>,
    /// The pod's (or target's) address of this family.
    pub ip: Option<IpAddr>,
    pub layers: BTreeMap<String, LayerStats>,
    pub mtu: BTreeMap<String, MtuReport>,
}

/// One selected target as seen from the reporting node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TargetReport {
    pub name: String,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub layers: BTreeMap<String, LayerStats>,
    pub path_mtu: Option<u32>,
    pub mtu_state: Option<MtuState>,
    pub mtu: BTreeMap<String, MtuReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub families: BTreeMap<String, FamilyReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct MtuReport {
    pub path_mtu: Option<u32>,
    pub state: Option<MtuState>,
}

/// Path-MTU verdict for one path: `ok`, `mismatch` (below the interface MTU, ICMP tells so) or
/// `blackhole` (large DF packets vanish silently). Unknown words read as `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtuState {
    Ok,
    Mismatch,
    Blackhole,
    #[serde(other)]
    Unknown,
}

/// The window figures of one (destination, layer), as `WindowStats` serializes them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LayerStats {
    pub reachable: Option<bool>,
    pub consecutive_failures: u32,
    pub probes: u32,
    pub successes: u32,
    pub sent: u32,
    pub received: u32,
    pub success_ratio: Option<f64>,
    pub loss_ratio: Option<f64>,
    /// RTT quantiles over the window (read by the agent page, not by the engine).
    pub rtt_seconds: Option<RttSeconds>,
    pub last_error: Option<ErrorInfo>,
    pub last_error_age_seconds: Option<f64>,
    pub last_probe_age_seconds: Option<f64>,
    /// Age of the current failure streak's first failure; absent when the last probe succeeded
    /// or the source cannot tell (older agents, directly or through Prometheus). Successes
    /// elsewhere probed before it are no evidence against this failure (the onset of a fault).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_for_seconds: Option<f64>,
    /// Every kind of error seen inside the window, with its count and latest instance (the
    /// last error alone hides a rate-limited "net unreachable" behind later timeouts).
    pub errors: Vec<ErrorCountInfo>,
}

/// RTT quantiles of a window, as `WindowStats` serializes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RttSeconds {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// One kind of error in a window: how often, the latest instance and its age.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ErrorCountInfo {
    pub kind: String,
    pub count: u32,
    pub last: Option<ErrorInfo>,
    pub last_age_seconds: Option<f64>,
}

/// A classified error as `ErrorClass` serializes it: `{"kind": "...", ...}`. Only the fields the
/// engine reads are kept; `from` stays text so an odd value cannot reject the whole document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ErrorInfo {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

/// The error kinds the engine reasons about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrKind {
    Timeout,
    Refused,
    Reset,
    NetUnreachable,
    HostUnreachable,
    AdminProhibited,
    PortUnreachable,
    FragNeeded,
    MessageTooLong,
    TtlExceeded,
    IcmpOther,
    HttpStatus,
    WrongPeer,
    Protocol,
    LocalError,
    Io,
    Other,
}

impl ErrorInfo {
    pub fn kind(&self) -> ErrKind {
        match self.kind.as_str() {
            "timeout" => ErrKind::Timeout,
            "refused" => ErrKind::Refused,
            "reset" => ErrKind::Reset,
            "net_unreachable" => ErrKind::NetUnreachable,
            "host_unreachable" => ErrKind::HostUnreachable,
            "admin_prohibited" => ErrKind::AdminProhibited,
            "port_unreachable" => ErrKind::PortUnreachable,
            "frag_needed" => ErrKind::FragNeeded,
            "message_too_long" => ErrKind::MessageTooLong,
            "ttl_exceeded" => ErrKind::TtlExceeded,
            "icmp" | "icmp_other" => ErrKind::IcmpOther,
            "http_status" => ErrKind::HttpStatus,
            "wrong_peer" => ErrKind::WrongPeer,
            "protocol" => ErrKind::Protocol,
            "local_error" => ErrKind::LocalError,
            "io" => ErrKind::Io,
            _ => ErrKind::Other,
        }
    }

    /// The reporting router's address, when it parses.
    pub fn from_ip(&self) -> Option<IpAddr> {
        self.from.as_deref().and_then(|s| s.trim().parse().ok())
    }

    /// A short human text: `net_unreachable from 198.19.1.1`, `http_status 503`.
    pub fn describe(&self) -> String {
        let mut s = self.kind.clone();
        if let Some(code) = self.code {
            s.push_str(&format!(" {code}"));
        }
        if let Some(mtu) = self.mtu {
            s.push_str(&format!(" (mtu {mtu})"));
        }
        if let Some(from) = &self.from {
            s.push_str(&format!(" from {from}"));
        }
        s
    }
}

impl From<&ErrorClass> for ErrorInfo {
    fn from(e: &ErrorClass) -> Self {
        // Through the JSON form, so both paths read exactly the same fields.
        serde_json::to_value(e)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_else(|| ErrorInfo {
                kind: e.label().to_string(),
                ..ErrorInfo::default()
            })
    }
}

impl AgentReport {
    /// Parse one `/api/v1/results` document.
    pub fn from_json(text: &str) -> Result<AgentReport, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// What is known about a node besides its agent's report. Anything missing is taken from the
/// reports' `owners` facts and peers lists. `pod_gateway` and `pod_cidrs` let an ICMP error's
/// `from` name the node whose routing table answered; without them such an address has an
/// unknown owner (nothing is assumed from the pod IP's shape).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct NodeMeta {
    pub name: String,
    pub zone: Option<String>,
    pub node_ip: Option<IpAddr>,
    pub pod_ip: Option<IpAddr>,
    /// Dual-stack: every family's node address, `node_ip` first (absent: one family).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_ips: Vec<IpAddr>,
    /// Dual-stack: every family's pod address, `pod_ip` first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<IpAddr>,
    pub pod_gateway: Option<IpAddr>,
    /// Dual-stack: every family's pod gateway, `pod_gateway` first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pod_gateways: Vec<IpAddr>,
    /// e.g. `198.19.3.0/24` (one CIDR; older form of `pod_cidrs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// e.g. `["198.19.3.0/26", "198.19.9.64/26"]`; entries that do not parse are ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

impl NodeMeta {
    /// Its pod CIDRs, both spellings, parsed (entries that do not parse are left out).
    pub fn cidrs(&self) -> Vec<meshprobe_core::net::Cidr> {
        self.pod_cidr
            .iter()
            .chain(&self.pod_cidrs)
            .filter_map(|c| meshprobe_core::net::Cidr::parse(c))
            .collect()
    }

    /// Its facts for the ownership map.
    pub fn addrs(&self) -> meshprobe_core::owners::NodeAddrs {
        meshprobe_core::owners::NodeAddrs {
            name: self.name.clone(),
            node_ip: self.node_ip,
            pod_ip: self.pod_ip,
            node_ips: self.node_ips.clone(),
            pod_ips: self.pod_ips.clone(),
            pod_gateway: self.pod_gateway,
            pod_gateways: self.pod_gateways.clone(),
            pod_cidrs: self.cidrs(),
        }
    }
}

/// Kubernetes facts, all optional (from `--kube`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct KubeFacts {
    pub nodes: Vec<NodeFacts>,
    /// The CNI plugin's pods in kube-system (calico-node, kube-flannel, cilium, ...).
    pub cni_pods: Vec<CniPodFacts>,
    /// Pods behind targets (matched by IP, or by `target` name).
    pub pods: Vec<PodFacts>,
    pub network_policies: Vec<PolicyFacts>,
    /// Requests for facts that failed (RBAC, timeouts): the facts above may be incomplete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct NodeFacts {
    pub name: String,
    pub ready: Option<bool>,
    pub cordoned: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CniPodFacts {
    pub node: String,
    pub name: String,
    pub ready: Option<bool>,
    pub restarts: Option<u32>,
    /// The container's waiting reason is CrashLoopBackOff.
    pub crash_loop: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    /// Pending, Running, Succeeded, Failed, Unknown.
    pub phase: Option<String>,
    pub ready: Option<bool>,
    /// The target name this pod backs, when known; otherwise matched by IP.
    pub target: Option<String>,
    pub events: Vec<PodEvent>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PodEvent {
    /// e.g. FailedCreatePodSandbox.
    pub reason: String,
    pub message: Option<String>,
    pub count: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PolicyFacts {
    pub namespace: String,
    pub name: String,
    /// Target names whose pod the policy selects.
    pub targets: Vec<String>,
    /// Whether its ingress rules admit the target's port from the agents; `None`: not evaluated.
    pub admits_port: Option<bool>,
}

/// Everything the matrix is built from. Serialisable so a mesh view can be saved with what
/// it rests on (`/api/v1/diagnosis?include=inputs`) and replayed offline (`diagnose --results`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Inputs {
    /// One document per agent that answered.
    pub agents: Vec<AgentReport>,
    /// Nodes whose agent was asked and did not answer (evidence, not an error).
    pub unreachable_agents: Vec<String>,
    pub nodes: Vec<NodeMeta>,
    pub kube: Option<KubeFacts>,
}
