//! `POST /api/v1/probe` requests: parse the body and validate it against what this agent knows
//! (peer set, allowed CIDRs). Pure: bytes and data in, a [`Plan`] or a [`Refusal`] out. Nothing
//! is sent for a request this module refuses.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Layer;
use crate::net::Cidr;
use crate::peers::PeerSet;
use meshprobe_core::parse::validate_name;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// ICMP echoes per ICMP check, at most.
pub const MAX_ICMP_COUNT: u16 = 20;
/// ICMP payload bytes, at most (a 1500-byte IPv4 packet).
pub const MAX_ICMP_SIZE: u16 = 1472;
/// Checks per request, at most.
pub const MAX_CHECKS: usize = 8;
/// HTTP path length, at most.
pub const MAX_PATH_LEN: usize = 256;
/// Target text length, at most.
pub const MAX_TARGET_LEN: usize = 300;
/// Echoes of each context check (the target node's IPs).
pub const CONTEXT_ECHOES: u16 = 3;

/// One check to run against the target from every source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckSpec {
    Icmp {
        count: u16,
        size: u16,
    },
    Tcp {
        port: u16,
    },
    Http {
        port: u16,
        path: String,
    },
    /// A Don't-Fragment path-MTU search toward the target.
    Mtu,
}

impl CheckSpec {
    pub fn name(&self) -> &'static str {
        match self {
            CheckSpec::Icmp { .. } => "icmp",
            CheckSpec::Tcp { .. } => "tcp",
            CheckSpec::Http { .. } => "http",
            CheckSpec::Mtu => "mtu",
        }
    }
}

/// A request refused before anything was sent: HTTP status, a bounded code (also the
/// `outcome` label of `meshprobe_ondemand_requests_total`) and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    #[serde(skip)]
    pub status: u16,
    pub code: &'static str,
    pub error: String,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, error: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            error: error.into(),
        }
    }
    pub fn bad(error: impl Into<String>) -> Refusal {
        Refusal::new(400, "bad_request", error)
    }
}

/// Every `code` a refusal can carry (metric label values), plus `accepted`.
pub const OUTCOMES: &[&str] = &[
    "accepted",
    "bad_request",
    "too_large",
    "target_not_allowed",
    "unknown_node",
    "kubernetes_unavailable",
    "kubernetes_error",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "busy",
];

/// What the caller wrote as the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Addr { ip: IpAddr, port: Option<u16> },
    Node(String),
    Pod { namespace: String, name: String },
}

/// `IP`, `IP:PORT` (`[v6]:PORT`), `pod/NAMESPACE/NAME` or a node name.
pub fn parse_target(s: &str) -> Result<TargetSpec, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("target: must not be empty".into());
    }
    if s.len() > MAX_TARGET_LEN {
        return Err(format!("target: longer than {MAX_TARGET_LEN} characters"));
    }
    if let Some(rest) = s.strip_prefix("pod/") {
        let (ns, name) = rest
            .split_once('/')
            .ok_or_else(|| format!("target {s:?}: expected pod/NAMESPACE/NAME"))?;
        validate_name(ns).map_err(|e| format!("target {s:?}: namespace {e}"))?;
        validate_name(name).map_err(|e| format!("target {s:?}: pod name {e}"))?;
        return Ok(TargetSpec::Pod {
            namespace: ns.into(),
            name: name.into(),
        });
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(TargetSpec::Addr { ip, port: None });
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("target {s:?}: port must be 1-65535"));
        }
        return Ok(TargetSpec::Addr {
            ip: sa.ip(),
            port: Some(sa.port()),
        });
    }
    if s.contains(':') || s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "target {s:?}: not an IP, IP:PORT, pod/NAMESPACE/NAME or node name"
        ));
    }
    validate_name(s).map_err(|e| {
        format!("target {s:?}: not an IP, IP:PORT or pod/NAMESPACE/NAME, and as a node name it {e}")
    })?;
    Ok(TargetSpec::Node(s.into()))
}

/// The request as the caller sent it (syntax checked, not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub target: TargetSpec,
    pub target_text: String,
    /// `None`: the defaults (ICMP ×3, plus TCP to the target's port when it has one).
    pub checks: Option<Vec<RawCheck>>,
    pub from: Option<Vec<String>>,
}

/// A check as written: ports may be missing (the target's port is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCheck {
    Icmp { count: u16, size: u16 },
    Tcp { port: Option<u16> },
    Http { port: Option<u16>, path: String },
    Mtu,
}

fn field_u16(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    key: &str,
    range: std::ops::RangeInclusive<u16>,
) -> Result<Option<u16>, Refusal> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| {
                Refusal::bad(format!("{at}.{key}: expected a whole number, got {v}"))
            })?;
            let n = u16::try_from(n).ok().filter(|n| range.contains(n));
            n.map(Some).ok_or_else(|| {
                Refusal::bad(format!(
                    "{at}.{key}: {v} is out of range ({}-{})",
                    range.start(),
                    range.end()
                ))
            })
        }
    }
}

fn only_keys(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    allowed: &[&str],
) -> Result<(), Refusal> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Refusal::bad(format!(
            "{at}: unknown field {k:?} (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn parse_check(v: &Value, i: usize) -> Result<RawCheck, Refusal> {
    let at = format!("checks[{i}]");
    let obj = v.as_object().ok_or_else(|| {
        Refusal::bad(format!(
            "{at}: expected an object like {{\"kind\": \"icmp\", \"count\": 3}}"
        ))
    })?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::bad(format!("{at}.kind: missing (icmp, tcp, http or mtu)")))?;
    match kind {
        "icmp" => {
            only_keys(obj, &at, &["kind", "count", "size"])?;
            let count = field_u16(obj, &at, "count", 1..=MAX_ICMP_COUNT)?.unwrap_or(3);
            let size = field_u16(obj, &at, "size", 8..=MAX_ICMP_SIZE)?.unwrap_or(56);
            Ok(RawCheck::Icmp { count, size })
        }
        "tcp" => {
            only_keys(obj, &at, &["kind", "port"])?;
            Ok(RawCheck::Tcp {
                port: field_u16(obj, &at, "port", 1..=u16::MAX)?,
            })
        }
        "http" => {
            only_keys(obj, &at, &["kind", "port", "path"])?;
            let port = field_u16(obj, &at, "port", 1..=u16::MAX)?;
            let path = match obj.get("path") {
                None | Some(Value::Null) => "/".to_string(),
                Some(Value::String(p)) => p.clone(),
                Some(other) => {
                    return Err(Refusal::bad(format!(
                        "{at}.path: expected a string, got {other}"
                    )))
                }
            };
            if !path.starts_with('/') || path.len() > MAX_PATH_LEN {
                return Err(Refusal::bad(format!(
                    "{at}.path: must start with '/' and be at most {MAX_PATH_LEN} characters"
                )));
            }
            if !meshprobe_core::parse::is_request_path(&path) {
                return Err(Refusal::bad(format!(
                    "{at}.path: only printable ASCII without spaces (percent-encode the rest)"
                )));
            }
            Ok(RawCheck::Http { port, path })
        }
        "mtu" => {
            only_keys(obj, &at, &["kind"])?;
            Ok(RawCheck::Mtu)
        }
        other => Err(Refusal::bad(format!(
            "{at}.kind: {other:?} is not a check (icmp, tcp, http or mtu)"
        ))),
    }
}

/// Parse a request body. Unknown fields are refused, every error names the field.
pub fn parse_body(body: &[u8]) -> Result<ProbeRequest, Refusal> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Refusal::new(
            413,
            "too_large",
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad(format!("request body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Refusal::bad("request body: expected a JSON object"))?;
    only_keys(obj, "request", &["target", "checks", "from"])?;
    let target_text = obj
        .get("target")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Refusal::bad("target: missing (an IP, IP:PORT, pod/NAMESPACE/NAME or node name)")
        })?
        .trim()
        .to_string();
    let target = parse_target(&target_text).map_err(Refusal::bad)?;
    let checks = match obj.get("checks") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(Refusal::bad(
                    "checks: empty; omit it for the defaults (ICMP, plus TCP to the target's port)",
                ));
            }
            if list.len() > MAX_CHECKS {
                return Err(Refusal::bad(format!(
                    "checks: {} given, at most {MAX_CHECKS}",
                    list.len()
                )));
            }
            Some(
                list.iter()
                    .enumerate()
                    .map(|(i, c)| parse_check(c, i))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        Some(other) => {
            return Err(Refusal::bad(format!(
                "checks: expected a list, got {other}"
            )))
        }
    };
    let from = match obj.get("from") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(Refusal::bad(
                    "from: empty; omit it to probe from every node",
                ));
            }
            let mut names = Vec::new();
            for (i, n) in list.iter().enumerate() {
                let s = n
                    .as_str()
                    .ok_or_else(|| Refusal::bad(format!("from[{i}]: expected a node name")))?;
                validate_name(s).map_err(|e| Refusal::bad(format!("from[{i}] {s:?}: {e}")))?;
                if !names.iter().any(|x| x == s) {
                    names.push(s.to_string());
                }
            }
            Some(names)
        }
        Some(other) => {
            return Err(Refusal::bad(format!(
                "from: expected a list of node names, got {other}"
            )))
        }
    };
    Ok(ProbeRequest {
        target,
        target_text,
        checks,
        from,
    })
}

/// The request body for a plan's checks, as the CLI and forwarding agents send it.
pub fn body(target: &str, checks: &[CheckSpec], from: Option<&[String]>) -> Value {
    let mut v = serde_json::json!({ "target": target, "checks": checks });
    if let Some(f) = from {
        v["from"] = serde_json::json!(f);
    }
    v
}

/// What validation knows: this agent, its peer set and its allowed CIDRs.
pub struct Context<'a> {
    pub me: &'a str,
    pub peers: &'a PeerSet,
    /// Extra CIDRs from `--allow-cidr` (the peer set's subnets are always allowed).
    pub extra_allowed: &'a [Cidr],
    /// The agent port of peers that do not name one.
    pub default_port: u16,
    /// A `pod/…` target as Kubernetes resolved it (`None`: no Kubernetes support, refused).
    pub pod: Option<&'a ResolvedPod>,
}

/// The target, resolved to an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// As the caller wrote it.
    pub label: String,
    pub ip: IpAddr,
    pub port: Option<u16>,
    /// The node the address belongs to (its pod subnet or node IP), when known.
    pub node: Option<String>,
}

/// A source agent to run the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub node: String,
    pub zone: Option<String>,
    /// Its agent's HTTP address.
    pub addr: SocketAddr,
    pub me: bool,
}

/// A context check: ICMP to the target node's node IP and to its agent's pod IP, so the
/// diagnosis can tell a dead node from a dead pod network from one dead pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextCheck {
    pub node: String,
    pub layer: Layer,
    pub ip: IpAddr,
}

/// A validated request: what to send, to where, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub target: Resolved,
    pub checks: Vec<CheckSpec>,
    pub sources: Vec<Source>,
    pub context: Vec<ContextCheck>,
}

/// The CIDRs a target must fall in by default: the /24 (IPv4) or /64 (IPv6) around every
/// peer's pod IP and node IP and every target's IP — the pod and node subnets meshprobe knows.
/// Loopback never comes from the peer set (a GET to the agent's own localhost is an SSRF):
/// only an explicit `--allow-cidr` admits it.
pub fn derived_cidrs(peers: &PeerSet) -> Vec<Cidr> {
    let ips = peers
        .peers
        .iter()
        .flat_map(|p| [p.pod_ip, p.node_ip])
        .chain(peers.targets.iter().map(|t| t.ip))
        .filter(|ip| !ip.is_loopback());
    let mut out: Vec<Cidr> = Vec::new();
    for ip in ips {
        let c = Cidr::around(ip);
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Addresses never probed, whatever the allowed CIDRs say.
fn never(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v) if v.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(v) if v.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(v) if v.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v) if v.octets() == [169, 254, 169, 254] => Some("the cloud metadata address"),
        IpAddr::V6(v) if v.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(v) if v.is_multicast() => Some("a multicast address"),
        IpAddr::V6(v) if v.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => {
            Some("the cloud metadata address")
        }
        _ => None,
    }
}

fn cidr_text(c: &Cidr) -> String {
    format!("{}/{}", c.addr, c.len)
}

/// The node an address belongs to: a peer's node IP or pod IP, or inside the /24 around a
/// peer's pod IP (its assumed pod subnet).
pub fn owner_of(peers: &PeerSet, ip: IpAddr) -> Option<&crate::peers::Peer> {
    peers
        .peers
        .iter()
        .find(|p| p.node_ip == ip || p.pod_ip == ip)
        .or_else(|| {
            peers
                .peers
                .iter()
                .find(|p| Cidr::around(p.pod_ip).contains(ip))
        })
}

/// Validate and resolve a parsed request. `forwarded`: another agent sent it (run here only).
pub fn validate(req: &ProbeRequest, cx: &Context) -> Result<Plan, Refusal> {
    let (ip, port, named_node) = match &req.target {
        TargetSpec::Pod { namespace, name } => match cx.pod {
            Some(p) => (p.ip, None, p.node.clone()),
            None => {
                return Err(Refusal::new(
                    501,
                    "kubernetes_unavailable",
                    format!(
                        "target pod/{namespace}/{name}: resolving pods needs an agent running with --discovery kubernetes; give the pod's IP or IP:PORT"
                    ),
                ))
            }
        },
        TargetSpec::Node(n) => {
            let p = cx.peers.peer(n).ok_or_else(|| {
                Refusal::new(
                    404,
                    "unknown_node",
                    format!("target {n:?}: no such node in this agent's peer set"),
                )
            })?;
            (p.node_ip, None, Some(p.node.clone()))
        }
        TargetSpec::Addr { ip, port } => (*ip, *port, None),
    };
    if let Some(what) = never(ip) {
        return Err(Refusal::new(
            403,
            "target_not_allowed",
            format!("target {ip}: {what} is never probed"),
        ));
    }
    let derived = derived_cidrs(cx.peers);
    if !derived
        .iter()
        .chain(cx.extra_allowed)
        .any(|c| c.contains(ip))
    {
        let mut list: Vec<String> = derived
            .iter()
            .chain(cx.extra_allowed)
            .map(cidr_text)
            .collect();
        list.truncate(16);
        return Err(Refusal::new(
            403,
            "target_not_allowed",
            format!(
                "target {ip}: outside the allowed CIDRs ({}); an operator can widen them with --allow-cidr",
                if list.is_empty() { "none".to_string() } else { list.join(", ") }
            ),
        ));
    }
    let need_port = |i: usize, what: &str, p: Option<u16>| {
        p.or(port).ok_or_else(|| {
            Refusal::bad(format!(
                "checks[{i}].port: {what} needs a port (in the check or as IP:PORT in the target)"
            ))
        })
    };
    let checks = match &req.checks {
        None => {
            let mut c = vec![CheckSpec::Icmp { count: 3, size: 56 }];
            if let Some(p) = port {
                c.push(CheckSpec::Tcp { port: p });
            }
            c
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(match c {
                    RawCheck::Icmp { count, size } => CheckSpec::Icmp {
                        count: *count,
                        size: *size,
                    },
                    RawCheck::Tcp { port: p } => CheckSpec::Tcp {
                        port: need_port(i, "tcp", *p)?,
                    },
                    RawCheck::Http { port: p, path } => CheckSpec::Http {
                        port: need_port(i, "http", *p)?,
                        path: path.clone(),
                    },
                    RawCheck::Mtu => CheckSpec::Mtu,
                })
            })
            .collect::<Result<Vec<_>, Refusal>>()?,
    };
    let peer_source = |p: &crate::peers::Peer| Source {
        node: p.node.clone(),
        zone: p.zone.clone(),
        addr: SocketAddr::new(p.pod_ip, p.port.unwrap_or(cx.default_port)),
        me: p.node == cx.me,
    };
    let sources: Vec<Source> = match &req.from {
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                cx.peers.peer(n).map(peer_source).ok_or_else(|| {
                    Refusal::new(
                        404,
                        "unknown_node",
                        format!("from[{i}] {n:?}: no such node in this agent's peer set"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        None => {
            let mut all: Vec<Source> = cx.peers.peers.iter().map(peer_source).collect();
            if !all.iter().any(|s| s.me) {
                all.insert(
                    0,
                    Source {
                        node: cx.me.to_string(),
                        zone: None,
                        addr: SocketAddr::new(IpAddr::from([127, 0, 0, 1]), cx.default_port),
                        me: true,
                    },
                );
            }
            all
        }
    };
    let owner = match &named_node {
        Some(n) => cx.peers.peer(n).or_else(|| owner_of(cx.peers, ip)),
        None => owner_of(cx.peers, ip),
    };
    let mut context = Vec::new();
    if let Some(o) = owner {
        if o.pod_ip != ip {
            context.push(ContextCheck {
                node: o.node.clone(),
                layer: Layer::IcmpPod,
                ip: o.pod_ip,
            });
        }
        if o.node_ip != ip || named_node.is_some() {
            context.push(ContextCheck {
                node: o.node.clone(),
                layer: Layer::IcmpNode,
                ip: o.node_ip,
            });
        }
    }
    Ok(Plan {
        target: Resolved {
            label: req.target_text.clone(),
            ip,
            port,
            node: owner.map(|o| o.node.clone()).or(named_node),
        },
        checks,
        sources,
        context,
    })
}

/// A pod, as Kubernetes knows it: where to probe it and the facts the diagnosis reads (pod
/// Ready and events, NetworkPolicies selecting it, the CNI pod on its node).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPod {
    pub ip: IpAddr,
    /// The node it runs on.
    pub node: Option<String>,
    pub facts: crate::diagnosis::KubeFacts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::parse;

    const SET: &str = "peers:\n  - {node: node-1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, zone: zone-a, port: 9464}\n  - {node: node-2, node_ip: 198.18.2.12, pod_ip: 198.19.2.10, zone: zone-b}\ntargets:\n  - {name: web-1, ip: 198.19.1.11, port: 8080, protocol: http}\n";

    fn plan(body: &str, extra: &[&str]) -> Result<Plan, Refusal> {
        let set = parse(SET).unwrap();
        let extra: Vec<Cidr> = extra.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        let req = parse_body(body.as_bytes())?;
        validate(
            &req,
            &Context {
                me: "node-1",
                peers: &set,
                extra_allowed: &extra,
                default_port: 9000,
                pod: None,
            },
        )
    }

    #[test]
    fn every_refusal_reason() {
        let big = format!(
            r#"{{"target":"198.19.1.11","pad":"{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        let many = format!(
            r#"{{"target":"198.19.1.11","checks":[{}]}}"#,
            [r#"{"kind":"mtu"}"#; MAX_CHECKS + 1].join(",")
        );
        // (body, status, code, part of the message)
        let table: &[(&str, u16, &str, &str)] = &[
            ("", 400, "bad_request", "not JSON"),
            ("[1]", 400, "bad_request", "expected a JSON object"),
            (r#"{"checks":[]}"#, 400, "bad_request", "target: missing"),
            (r#"{"target":""}"#, 400, "bad_request", "must not be empty"),
            (
                r#"{"target":"198.19.1.11","color":"red"}"#,
                400,
                "bad_request",
                "unknown field \"color\"",
            ),
            (r#"{"target":"1.2.3"}"#, 400, "bad_request", "not an IP"),
            (
                r#"{"target":"198.19.1.11:0"}"#,
                400,
                "bad_request",
                "port must be 1-65535",
            ),
            (
                r#"{"target":"pod/ns"}"#,
                400,
                "bad_request",
                "expected pod/NAMESPACE/NAME",
            ),
            (r#"{"target":"pod/ns/a b"}"#, 400, "bad_request", "pod name"),
            (
                r#"{"target":"node 1"}"#,
                400,
                "bad_request",
                "as a node name",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[]}"#,
                400,
                "bad_request",
                "checks: empty",
            ),
            (
                r#"{"target":"198.19.1.11","checks":{}}"#,
                400,
                "bad_request",
                "checks: expected a list",
            ),
            (
                r#"{"target":"198.19.1.11","checks":["icmp"]}"#,
                400,
                "bad_request",
                "checks[0]: expected an object",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"count":3}]}"#,
                400,
                "bad_request",
                "checks[0].kind: missing",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"udp"}]}"#,
                400,
                "bad_request",
                "\"udp\" is not a check",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","count":0}]}"#,
                400,
                "bad_request",
                "checks[0].count: 0 is out of range (1-20)",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","count":21}]}"#,
                400,
                "bad_request",
                "checks[0].count: 21 is out of range",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","count":"3"}]}"#,
                400,
                "bad_request",
                "expected a whole number",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","size":9000}]}"#,
                400,
                "bad_request",
                "checks[0].size: 9000 is out of range",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","ttl":1}]}"#,
                400,
                "bad_request",
                "checks[0]: unknown field \"ttl\"",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"tcp","port":70000}]}"#,
                400,
                "bad_request",
                "checks[0].port: 70000 is out of range",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp"},{"kind":"tcp"}]}"#,
                400,
                "bad_request",
                "checks[1].port: tcp needs a port",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"http","port":80,"path":"healthz"}]}"#,
                400,
                "bad_request",
                "checks[0].path: must start with '/'",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"http","port":80,"path":"/a b"}]}"#,
                400,
                "bad_request",
                "printable ASCII",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"http","port":80,"path":"/he`-lthz"}]}"#,
                400,
                "bad_request",
                "printable ASCII",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"mtu","size":1}]}"#,
                400,
                "bad_request",
                "unknown field \"size\"",
            ),
            (&many, 400, "bad_request", "at most 8"),
            (
                r#"{"target":"198.19.1.11","from":[]}"#,
                400,
                "bad_request",
                "from: empty",
            ),
            (
                r#"{"target":"198.19.1.11","from":"node-2"}"#,
                400,
                "bad_request",
                "from: expected a list",
            ),
            (
                r#"{"target":"198.19.1.11","from":[7]}"#,
                400,
                "bad_request",
                "from[0]: expected a node name",
            ),
            (
                r#"{"target":"198.19.1.11","from":["node-9"]}"#,
                404,
                "unknown_node",
                "from[0] \"node-9\"",
            ),
            (
                r#"{"target":"node-9"}"#,
                404,
                "unknown_node",
                "target \"node-9\"",
            ),
            (
                r#"{"target":"pod/default/web"}"#,
                501,
                "kubernetes_unavailable",
                "needs an agent running with --discovery kubernetes",
            ),
            (
                r#"{"target":"10.0.0.1"}"#,
                403,
                "target_not_allowed",
                "outside the allowed CIDRs (198.19.1.0/24, 198.18.1.0/24",
            ),
            (
                r#"{"target":"198.18.3.1:80"}"#,
                403,
                "target_not_allowed",
                "--allow-cidr",
            ),
            (
                r#"{"target":"0.0.0.0"}"#,
                403,
                "target_not_allowed",
                "unspecified",
            ),
            (
                r#"{"target":"255.255.255.255"}"#,
                403,
                "target_not_allowed",
                "broadcast",
            ),
            (
                r#"{"target":"224.0.0.1"}"#,
                403,
                "target_not_allowed",
                "multicast",
            ),
            (&big, 413, "too_large", "larger than 16384 bytes"),
        ];
        for (body, status, code, part) in table {
            let r = plan(body, &[]).expect_err(body);
            assert_eq!((r.status, r.code), (*status, *code), "{body}: {r:?}");
            assert!(
                r.error.contains(part),
                "{body}: {:?} lacks {part:?}",
                r.error
            );
            assert!(OUTCOMES.contains(&r.code));
        }
        // Even an explicit --allow-cidr 0.0.0.0/0 never admits these.
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "239.1.1.1",
            "ff02::1",
            "169.254.169.254",
            "fd00:ec2::254",
        ] {
            let r = plan(&format!(r#"{{"target":"{ip}"}}"#), &["0.0.0.0/0", "::/0"]).unwrap_err();
            assert_eq!(r.code, "target_not_allowed", "{ip}");
        }
    }

    #[test]
    fn accepted_requests_resolve_sources_checks_and_context() {
        // Defaults: ICMP x3 and TCP to the given port, from every node; the target's node is
        // found by its pod subnet and its node IP and agent pod IP are context.
        let p = plan(r#"{"target":"198.19.2.11:8080"}"#, &[]).unwrap();
        assert_eq!(
            p.checks,
            [
                CheckSpec::Icmp { count: 3, size: 56 },
                CheckSpec::Tcp { port: 8080 }
            ]
        );
        assert_eq!(p.target.node.as_deref(), Some("node-2"));
        let srcs: Vec<(&str, String, bool)> = p
            .sources
            .iter()
            .map(|s| (s.node.as_str(), s.addr.to_string(), s.me))
            .collect();
        assert_eq!(
            srcs,
            [
                ("node-1", "198.19.1.10:9464".to_string(), true),
                ("node-2", "198.19.2.10:9000".to_string(), false)
            ]
        );
        assert_eq!(
            p.context,
            [
                ContextCheck {
                    node: "node-2".into(),
                    layer: Layer::IcmpPod,
                    ip: "198.19.2.10".parse().unwrap()
                },
                ContextCheck {
                    node: "node-2".into(),
                    layer: Layer::IcmpNode,
                    ip: "198.18.2.12".parse().unwrap()
                },
            ]
        );
        // Explicit checks take the target's port when they have none; `from` narrows.
        let p = plan(
            r#"{"target":"198.19.1.11:8080","checks":[{"kind":"icmp","count":20},{"kind":"http","path":"/healthz"},{"kind":"tcp","port":22},{"kind":"mtu"}],"from":["node-2","node-2"]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            p.checks,
            [
                CheckSpec::Icmp {
                    count: 20,
                    size: 56
                },
                CheckSpec::Http {
                    port: 8080,
                    path: "/healthz".into()
                },
                CheckSpec::Tcp { port: 22 },
                CheckSpec::Mtu
            ]
        );
        assert_eq!(p.sources.len(), 1);
        assert_eq!(p.sources[0].node, "node-2");
        // A node name resolves to its node IP; --allow-cidr widens.
        let p = plan(r#"{"target":"node-2"}"#, &[]).unwrap();
        assert_eq!(p.target.ip, "198.18.2.12".parse::<IpAddr>().unwrap());
        assert_eq!(p.target.node.as_deref(), Some("node-2"));
        assert!(plan(r#"{"target":"10.0.0.1"}"#, &["10.0.0.0/8"]).is_ok());
        // No owner: no context.
        let p = plan(r#"{"target":"10.1.2.3"}"#, &["10.0.0.0/8"]).unwrap();
        assert!(p.context.is_empty() && p.target.node.is_none());
    }

    #[test]
    fn loopback_needs_an_explicit_allow_cidr() {
        // Agents on loopback (a test bed): their peer set does not open 127.0.0.0/8.
        let set = parse("peers:\n  - {node: a, node_ip: 127.0.1.1, pod_ip: 127.0.0.1}\n").unwrap();
        assert!(derived_cidrs(&set).is_empty());
        let req = parse_body(br#"{"target":"127.0.0.1:10250"}"#).unwrap();
        let cx = |extra| Context {
            me: "a",
            peers: &set,
            extra_allowed: extra,
            default_port: 9464,
            pod: None,
        };
        assert_eq!(
            validate(&req, &cx(&[])).unwrap_err().code,
            "target_not_allowed"
        );
        let lo = [Cidr::parse("127.0.0.0/8").unwrap()];
        assert!(validate(&req, &cx(&lo)).is_ok());
    }

    #[test]
    fn pod_targets_through_the_resolver_seam() {
        let set = parse(SET).unwrap();
        let req =
            parse_body(br#"{"target":"pod/shop/web-7","checks":[{"kind":"tcp","port":8080}]}"#)
                .unwrap();
        let pod = |ip: &str| ResolvedPod {
            ip: ip.parse().unwrap(),
            node: Some("node-2".into()),
            facts: Default::default(),
        };
        let cx = |p| Context {
            me: "node-1",
            peers: &set,
            extra_allowed: &[],
            default_port: 9000,
            pod: p,
        };
        let inside = pod("198.19.2.33");
        let p = validate(&req, &cx(Some(&inside))).unwrap();
        assert_eq!(p.target.label, "pod/shop/web-7");
        assert_eq!(p.target.ip, "198.19.2.33".parse::<IpAddr>().unwrap());
        assert_eq!(p.target.node.as_deref(), Some("node-2"));
        assert_eq!(p.context.len(), 2);
        // A resolved pod is fenced like any address.
        let outside = pod("10.0.0.7");
        let r = validate(&req, &cx(Some(&outside))).unwrap_err();
        assert_eq!(r.code, "target_not_allowed");
        let r = validate(&req, &cx(None)).unwrap_err();
        assert_eq!((r.status, r.code), (501, "kubernetes_unavailable"));
    }

    #[test]
    fn bodies_round_trip() {
        let checks = vec![
            CheckSpec::Icmp { count: 5, size: 56 },
            CheckSpec::Http {
                port: 8080,
                path: "/x".into(),
            },
            CheckSpec::Mtu,
        ];
        let b = body("198.19.1.11", &checks, Some(&["node-2".to_string()]));
        let p = plan(&b.to_string(), &[]).unwrap();
        assert_eq!(p.checks, checks);
        assert_eq!(p.sources[0].node, "node-2");
    }
}
