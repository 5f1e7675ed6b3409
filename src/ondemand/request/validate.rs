//! A parsed request, validated against what this agent knows: the target resolved to an
//! address and fenced by the allowed CIDRs, the checks completed with the target's port, the
//! source agents and the context checks chosen. The result is a [`Plan`] or a [`Refusal`].

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::parse::{ProbeRequest, RawCheck, TargetSpec};
use super::spec::{CheckSpec, Refusal};
use crate::model::{Family, IpFamilies, Layer};
use crate::net::{fence, Cidr, Fenced};
use crate::owners::Owner;
use crate::peers::PeerSet;

/// Echoes of each context check (the target node's IPs).
pub const CONTEXT_ECHOES: u16 = 3;

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
    /// A `svc/…` target as Kubernetes resolved it (`None`: not looked up, refused).
    pub service: Option<&'a ResolvedService>,
    /// On a request a peer agent forwards: the target's address of the other family, as the
    /// forwarding agent resolved a dual-stack pod (fenced here like any address).
    pub also: Option<IpAddr>,
}

/// The target, resolved to an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// As the caller wrote it.
    pub label: String,
    /// The primary family's address (a pod's `status.podIP`, a node's first node IP).
    pub ip: IpAddr,
    /// Dual-stack: every family's address probed, `ip` first (empty: `ip` alone, one family).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    pub port: Option<u16>,
    /// The node the address belongs to (by the ownership map: a node, pod or target address, a
    /// known pod CIDR, or the node a pod runs on), when known.
    pub node: Option<String>,
}

impl Resolved {
    /// Every address probed, one per family, the primary first.
    pub fn addrs(&self) -> Vec<IpAddr> {
        if self.ips.is_empty() {
            vec![self.ip]
        } else {
            self.ips.clone()
        }
    }

    /// Whether more than one family is probed (outcomes then carry a `family`).
    pub fn dual(&self) -> bool {
        self.ips.len() > 1
    }
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

/// The CIDRs a target must fall in by default: every known pod CIDR (the peer set's facts:
/// the peers file's `pod_cidrs`, Kubernetes' `Node.spec.podCIDRs`) and, exactly, every peer's
/// pod IPs and node IPs and every target's IPs (each family's) — the addresses meshprobe knows, never a range
/// guessed around them. Loopback never comes from the peer set (a GET to the agent's own
/// localhost is an SSRF): only an explicit `--allow-cidr` admits it.
pub fn derived_cidrs(peers: &PeerSet) -> Vec<Cidr> {
    let exact = |ip: IpAddr| {
        let ip = ip.to_canonical();
        Cidr {
            addr: ip,
            len: if ip.is_ipv4() { 32 } else { 128 },
        }
    };
    let ips = peers
        .peers
        .iter()
        .flat_map(|p| {
            [p.pod_ip, p.node_ip]
                .into_iter()
                .chain(p.pod_ips.iter().chain(&p.node_ips).copied())
        })
        .chain(
            peers
                .targets
                .iter()
                .flat_map(|t| std::iter::once(t.ip).chain(t.ips.iter().copied())),
        )
        .map(exact);
    let mut out: Vec<Cidr> = Vec::new();
    for c in peers.owners().all_pod_cidrs().into_iter().chain(ips) {
        if !c.addr.is_loopback() && !out.iter().any(|o| c.inside(o)) {
            out.push(c);
        }
    }
    out
}

/// The shared fence ([`crate::net::fence`]) as a refusal: `what` names the field (and, where
/// the caller wrote it, the address). Ok: the canonical address, the one to send to.
pub fn fenced(what: &str, ip: IpAddr, allowed: &[Cidr]) -> Result<IpAddr, Refusal> {
    fence(ip, allowed).map_err(|f| {
        let msg = match f {
            Fenced::Never(why) => format!("{what}: {why} is never probed"),
            Fenced::Loopback => format!(
                "{what}: loopback is probed only through an --allow-cidr range inside 127.0.0.0/8 or ::1/128 (e.g. 127.0.0.0/24)"
            ),
            Fenced::Outside => {
                let mut list: Vec<String> = allowed.iter().map(Cidr::to_string).collect();
                list.truncate(16);
                format!(
                    "{what}: outside the allowed CIDRs ({}); an operator can widen them with --allow-cidr",
                    if list.is_empty() { "none".to_string() } else { list.join(", ") }
                )
            }
        };
        Refusal::new(403, "target_not_allowed", msg)
    })
}

/// The node an address belongs to, by the ownership map ([`crate::owners`]): a peer's node IP
/// or pod IP, a target placed on it, or inside its known pod CIDRs; `None` when no fact says.
pub fn owner_of(peers: &PeerSet, ip: IpAddr) -> Option<&crate::peers::Peer> {
    match peers.owners().lookup(ip) {
        Owner::Node { node, .. } => peers.peers.get(node),
        Owner::SendersNode | Owner::Unknown => None,
    }
}

/// The checks a request runs: as written, ports completed with the target's `port`. A
/// `dns/NAME` target takes the `dns` check only (one query from each source, by default
/// through its own resolver) and no other target takes it: a query has a name, a packet an
/// address.
fn checks_of(req: &ProbeRequest, port: Option<u16>) -> Result<Vec<CheckSpec>, Refusal> {
    let dns_name = match &req.target {
        TargetSpec::Dns { name } => Some(name.as_str()),
        _ => None,
    };
    let need_port = |i: usize, what: &str, p: Option<u16>| {
        p.or(port).ok_or_else(|| {
            Refusal::bad(format!(
                "checks[{i}].port: {what} needs a port (in the check or as IP:PORT in the target)"
            ))
        })
    };
    Ok(match (&req.checks, dns_name) {
        (None, Some(name)) => vec![CheckSpec::Dns {
            name: name.to_string(),
            server: None,
        }],
        (None, None) => {
            let mut c = vec![CheckSpec::Icmp { count: 3, size: 56 }];
            if let Some(p) = port {
                c.push(CheckSpec::Tcp { port: p });
            }
            c
        }
        (Some(list), _) => list
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(match (c, dns_name) {
                    (RawCheck::Dns { server }, Some(name)) => CheckSpec::Dns {
                        name: name.to_string(),
                        server: *server,
                    },
                    (RawCheck::Dns { .. }, None) => {
                        return Err(Refusal::bad(format!(
                            "checks[{i}]: the dns check needs a dns/NAME target"
                        )))
                    }
                    (other, Some(_)) => {
                        return Err(Refusal::bad(format!(
                            "checks[{i}]: a dns/NAME target takes only the dns check, not {}",
                            super::parse::raw_kind(other)
                        )))
                    }
                    (RawCheck::Icmp { count, size }, None) => CheckSpec::Icmp {
                        count: *count,
                        size: *size,
                    },
                    (RawCheck::Tcp { port: p }, None) => CheckSpec::Tcp {
                        port: need_port(i, "tcp", *p)?,
                    },
                    (RawCheck::Http { port: p, path }, None) => CheckSpec::Http {
                        port: need_port(i, "http", *p)?,
                        path: path.clone(),
                    },
                    (RawCheck::Mtu, None) => CheckSpec::Mtu,
                })
            })
            .collect::<Result<Vec<_>, Refusal>>()?,
    })
}

/// The agents a request runs on, each passing the fence (`allowed`: the allowed ranges).
fn sources_of(req: &ProbeRequest, cx: &Context, allowed: &[Cidr]) -> Result<Vec<Source>, Refusal> {
    let peer_source = |p: &crate::peers::Peer| Source {
        node: p.node.clone(),
        zone: p.zone.clone(),
        addr: SocketAddr::new(p.pod_ip, p.port.unwrap_or(cx.default_port)),
        me: p.node == cx.me,
    };
    Ok(match &req.from {
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let src = cx.peers.peer(n).map(peer_source).ok_or_else(|| {
                    Refusal::new(
                        404,
                        "unknown_node",
                        format!("from[{i}] {n:?}: no such node in this agent's peer set"),
                    )
                })?;
                // The agent a request is forwarded to passes the same fence as a target.
                if !src.me {
                    let what = format!("from[{i}] {n:?} (its agent at {})", src.addr.ip());
                    fenced(&what, src.addr.ip(), allowed)?;
                }
                Ok(src)
            })
            .collect::<Result<_, Refusal>>()?,
        None => {
            // Every agent the fence admits (one it refuses is not asked).
            let mut all: Vec<Source> = cx
                .peers
                .peers
                .iter()
                .map(peer_source)
                .filter(|s| s.me || fence(s.addr.ip(), allowed).is_ok())
                .collect();
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
    })
}

/// What can be checked of a `pod/NAMESPACE/NAME` request before the pod is looked up: its
/// checks (a pod target has no port of its own) and its `from` agents. Nothing is asked of
/// Kubernetes for a request this refuses.
pub fn precheck(req: &ProbeRequest, cx: &Context) -> Result<(), Refusal> {
    let mut allowed = derived_cidrs(cx.peers);
    allowed.extend_from_slice(cx.extra_allowed);
    match &req.target {
        TargetSpec::Service { .. } => drop(service_checks(req, None)?),
        _ => drop(checks_of(req, None)?),
    }
    sources_of(req, cx, &allowed)?;
    Ok(())
}

/// The target's addresses, one per family (the first usable of each, canonical), the
/// primary first.
fn one_per_family(all: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in all.into_iter().map(|ip| ip.to_canonical()) {
        if !out.iter().any(|o| Family::of(*o) == Family::of(ip)) {
            out.push(ip);
        }
    }
    out
}

/// The addresses `family` keeps (`None`: every family the target has). Asking for a family
/// the target lacks is refused, naming the field: a silent fallback would answer another
/// question than the one asked.
fn narrow(
    addrs: Vec<IpAddr>,
    family: Option<IpFamilies>,
    label: &str,
) -> Result<Vec<IpAddr>, Refusal> {
    let Some(want) = family.filter(|f| *f != IpFamilies::Auto) else {
        return Ok(addrs);
    };
    let have = |f: Family| addrs.iter().any(|ip| Family::of(*ip) == f);
    let needed: Vec<Family> = Family::ALL.into_iter().filter(|f| want.wants(*f)).collect();
    if let Some(missing) = needed.iter().find(|f| !have(**f)) {
        let has: Vec<&str> = addrs.iter().map(|ip| Family::of(*ip).as_str()).collect();
        return Err(Refusal::bad(format!(
            "family: {} asked, but target {label} has no {missing} address (it has {})",
            want.as_str(),
            has.join(", ")
        )));
    }
    Ok(addrs
        .into_iter()
        .filter(|ip| want.wants(Family::of(*ip)))
        .collect())
}

/// Validate and resolve a parsed request.
pub fn validate(req: &ProbeRequest, cx: &Context) -> Result<Plan, Refusal> {
    let (addrs, port, named_node) = match &req.target {
        TargetSpec::Pod { namespace, name } => match cx.pod {
            Some(p) => (
                one_per_family(std::iter::once(p.ip).chain(p.ips.iter().copied())),
                None,
                p.node.clone(),
            ),
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
            let all = std::iter::once(p.node_ip).chain(p.node_ips.iter().copied());
            (one_per_family(all), None, Some(p.node.clone()))
        }
        // A bare address is one family; a forwarding agent adds a dual-stack pod's other one.
        TargetSpec::Addr { ip, port } => (
            one_per_family(std::iter::once(*ip).chain(cx.also)),
            *port,
            None,
        ),
        TargetSpec::Dns { .. } => return validate_dns(req, cx),
        TargetSpec::Service { .. } => return validate_service(req, cx),
    };
    let addrs = narrow(addrs, req.family, &req.target_text)?;
    let mut allowed = derived_cidrs(cx.peers);
    allowed.extend_from_slice(cx.extra_allowed);
    // Every address passes the fence. A pod's address is not the caller's to learn: its
    // refusals name the pod only.
    let addrs = addrs
        .into_iter()
        .map(|ip| {
            let what = match &req.target {
                TargetSpec::Pod { .. } => format!("target {}", req.target_text),
                _ => format!("target {ip}"),
            };
            fenced(&what, ip, &allowed)
        })
        .collect::<Result<Vec<IpAddr>, Refusal>>()?;
    // Never empty (one address per family the target has, narrowed or refused); no panic on
    // input all the same.
    let Some(&ip) = addrs.first() else {
        return Err(Refusal::bad(format!(
            "target {}: no address",
            req.target_text
        )));
    };
    let checks = checks_of(req, port)?;
    let sources = sources_of(req, cx, &allowed)?;
    let owner = match &named_node {
        Some(n) => cx.peers.peer(n).or_else(|| owner_of(cx.peers, ip)),
        None => owner_of(cx.peers, ip),
    };
    let mut context = Vec::new();
    // Context checks are packets too: only to addresses the fence admits. One pair per
    // family probed, each at the owner's address of that family.
    let admitted = |ip: IpAddr| fence(ip, &allowed).is_ok();
    if let Some(o) = owner {
        for &target_ip in &addrs {
            let v6 = Family::of(target_ip).is_v6();
            let fam = |primary: IpAddr, all: &[IpAddr]| {
                std::iter::once(primary)
                    .chain(all.iter().copied())
                    .map(|ip| ip.to_canonical())
                    .find(|ip| ip.is_ipv6() == v6)
            };
            if let Some(pod_ip) = fam(o.pod_ip, &o.pod_ips) {
                if pod_ip != target_ip && admitted(pod_ip) {
                    context.push(ContextCheck {
                        node: o.node.clone(),
                        layer: Layer::IcmpPod,
                        ip: pod_ip,
                    });
                }
            }
            if let Some(node_ip) = fam(o.node_ip, &o.node_ips) {
                if (node_ip != target_ip || named_node.is_some()) && admitted(node_ip) {
                    context.push(ContextCheck {
                        node: o.node.clone(),
                        layer: Layer::IcmpNode,
                        ip: node_ip,
                    });
                }
            }
        }
    }
    Ok(Plan {
        target: Resolved {
            label: req.target_text.clone(),
            ip,
            ips: if addrs.len() > 1 { addrs } else { Vec::new() },
            port,
            node: owner.map(|o| o.node.clone()).or(named_node),
        },
        checks,
        sources,
        context,
    })
}

/// A `dns/NAME` request: the `dns` check from every source. A server the caller names is an
/// address every node sends a query to, so it passes the same fence as a target; without one,
/// each source asks its own resolver (its /etc/resolv.conf: the cluster DNS) and the target's
/// address is the unspecified one (no packet goes to it). No context checks: the verdict reads
/// whether each source's pod network works from the fan-out itself.
fn validate_dns(req: &ProbeRequest, cx: &Context) -> Result<Plan, Refusal> {
    if req.family.is_some() {
        return Err(Refusal::bad(
            "family: a dns/NAME target is resolved, not probed at an address; leave family out",
        ));
    }
    let mut allowed = derived_cidrs(cx.peers);
    allowed.extend_from_slice(cx.extra_allowed);
    let mut checks = checks_of(req, None)?;
    let mut server_at = None;
    for (i, c) in checks.iter_mut().enumerate() {
        if let CheckSpec::Dns {
            server: Some(addr), ..
        } = c
        {
            let what = format!("checks[{i}].server {addr}");
            let ip = fenced(&what, addr.ip(), &allowed)?;
            *addr = SocketAddr::new(ip, addr.port());
            server_at = Some(*addr);
        }
    }
    let sources = sources_of(req, cx, &allowed)?;
    let label = match &req.target {
        TargetSpec::Dns { name } => format!("{}{name}", super::parse::DNS_PREFIX),
        _ => req.target_text.clone(),
    };
    Ok(Plan {
        target: Resolved {
            label,
            ip: server_at.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
            ips: Vec::new(),
            port: server_at.map(|a| a.port()),
            node: None,
        },
        checks,
        sources,
        context: Vec::new(),
    })
}

/// The checks of a `svc/NAMESPACE/NAME` request: TCP connect and HTTP GET only (a ClusterIP
/// is a forwarding rule: it answers no ICMP, and its path MTU is its backends'), by default a
/// TCP connect to the Service's first TCP port, and only to ports the Service has — a
/// ClusterIP forwards those alone, and the Service, not the caller, names what is probed.
/// `svc` `None`: before the lookup (the kinds only).
fn service_checks(
    req: &ProbeRequest,
    svc: Option<&ResolvedService>,
) -> Result<Vec<CheckSpec>, Refusal> {
    let label = &req.target_text;
    let first = svc.and_then(|s| s.ports.first().copied());
    let port_of = |i: usize, what: &str, p: Option<u16>| -> Result<u16, Refusal> {
        let Some(s) = svc else {
            return Ok(p.unwrap_or(0));
        };
        let p = p.or(first).ok_or_else(|| {
            Refusal::bad(format!(
                "checks[{i}].port: {label} has no TCP port; {what} needs one"
            ))
        })?;
        if !s.ports.contains(&p) {
            let list: Vec<String> = s.ports.iter().map(u16::to_string).collect();
            return Err(Refusal::bad(format!(
                "checks[{i}].port: {p} is not a TCP port of {label} ({})",
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            )));
        }
        Ok(p)
    };
    match &req.checks {
        None => Ok(vec![CheckSpec::Tcp {
            port: port_of(0, "tcp", None)?,
        }]),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                RawCheck::Tcp { port } => Ok(CheckSpec::Tcp {
                    port: port_of(i, "tcp", *port)?,
                }),
                RawCheck::Http { port, path } => Ok(CheckSpec::Http {
                    port: port_of(i, "http", *port)?,
                    path: path.clone(),
                }),
                other => Err(Refusal::bad(format!(
                    "checks[{i}]: a svc/NAMESPACE/NAME target takes tcp and http checks, not {} (a ClusterIP answers no ICMP)",
                    super::parse::raw_kind(other)
                ))),
            })
            .collect(),
    }
}

/// A `svc/NAMESPACE/NAME` request, its Service looked up: its ClusterIP, probed from every
/// source. The address is Kubernetes' fact, not the caller's choice, so it needs no allowed
/// range (the namespace allow-list fenced the lookup) — but the never-list and loopback still
/// refuse it: nothing read from the API is sent to blindly.
fn validate_service(req: &ProbeRequest, cx: &Context) -> Result<Plan, Refusal> {
    let Some(svc) = cx.service else {
        return Err(Refusal::new(
            501,
            "kubernetes_unavailable",
            format!(
                "target {}: resolving Services needs an agent running with --discovery kubernetes; give the ClusterIP as IP:PORT (inside an --allow-cidr range)",
                req.target_text
            ),
        ));
    };
    // Any address but the never-list; loopback only through an --allow-cidr inside it.
    let mut any: Vec<Cidr> = [Cidr::parse("0.0.0.0/0"), Cidr::parse("::/0")]
        .into_iter()
        .flatten()
        .collect();
    any.extend_from_slice(cx.extra_allowed);
    let what = format!("target {}", req.target_text);
    let ip = fenced(&what, svc.ip, &any)?;
    narrow(vec![ip], req.family, &req.target_text)?;
    let checks = service_checks(req, Some(svc))?;
    let mut allowed = derived_cidrs(cx.peers);
    allowed.extend_from_slice(cx.extra_allowed);
    let sources = sources_of(req, cx, &allowed)?;
    Ok(Plan {
        target: Resolved {
            label: req.target_text.clone(),
            ip,
            ips: Vec::new(),
            port: checks.iter().find_map(|c| match c {
                CheckSpec::Tcp { port } | CheckSpec::Http { port, .. } => Some(*port),
                _ => None,
            }),
            node: None,
        },
        checks,
        sources,
        context: Vec::new(),
    })
}

/// A Service, as Kubernetes knows it: its ClusterIP and TCP ports (in the Service's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedService {
    pub ip: IpAddr,
    pub ports: Vec<u16>,
}

/// A pod, as Kubernetes knows it: where to probe it and the facts the diagnosis reads (pod
/// Ready and events, NetworkPolicies selecting it, the CNI pod on its node).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPod {
    /// `status.podIP`: the primary family's address.
    pub ip: IpAddr,
    /// Dual-stack: every family's address (`status.podIPs`, the first usable per family).
    pub ips: Vec<IpAddr>,
    /// The node it runs on.
    pub node: Option<String>,
    pub facts: crate::diagnosis::KubeFacts,
}

#[cfg(test)]
mod tests {
    use super::super::parse_body;
    use super::super::tests::{plan, SET};
    use super::*;
    use crate::peers::parse;

    #[test]
    fn accepted_requests_resolve_sources_checks_and_context() {
        // Defaults: ICMP x3 and TCP to the given port, from every node; the target's node is
        // found by its pod CIDR and its node IP and agent pod IP are context.
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
            r#"{"target":"198.19.1.11:8080","checks":[{"kind":"icmp","count":14},{"kind":"http","path":"/healthz"},{"kind":"tcp","port":22},{"kind":"mtu"}],"from":["node-2","node-2"]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            p.checks,
            [
                CheckSpec::Icmp {
                    count: 14,
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
    fn the_default_allow_list_is_known_cidrs_and_exact_addresses() {
        // node-2's second block sits in a /24 no pod IP is in: it is admitted and owned.
        let p = plan(r#"{"target":"198.19.9.70:8080"}"#, &[]).unwrap();
        assert_eq!(p.target.node.as_deref(), Some("node-2"));
        // Next to node-2's first block, not inside any: refused (no /24 guess).
        let r = plan(r#"{"target":"198.19.2.99:8080"}"#, &[]).unwrap_err();
        assert_eq!(r.code, "target_not_allowed");
        // Without pod CIDRs: exact node, pod and target addresses only.
        let set = parse("peers:\n  - {node: a, node_ip: 198.18.0.1, pod_ip: 198.19.0.10}\n  - {node: b, node_ip: 198.18.0.2, pod_ip: 198.19.0.70}\ntargets:\n  - {name: w, ip: 198.19.0.99, port: 80, protocol: http, node: b}\n").unwrap();
        let shown: Vec<String> = derived_cidrs(&set).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "198.19.0.10/32",
                "198.18.0.1/32",
                "198.19.0.70/32",
                "198.18.0.2/32",
                "198.19.0.99/32"
            ]
        );
        // Dual-stack: each family's exact addresses.
        let dual = parse("peers:\n  - {node: a, node_ip: 198.18.0.1, pod_ip: 198.19.0.10, pod_ips: [198.19.0.10, \"fd00::10\"], node_ips: [198.18.0.1, \"fd00::1\"]}\ntargets:\n  - {name: w, ip: \"fd00::99\", ips: [\"fd00::99\", 198.19.0.99], port: 80, protocol: http}\n").unwrap();
        let shown: Vec<String> = derived_cidrs(&dual).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "198.19.0.10/32",
                "198.18.0.1/32",
                "fd00::10/128",
                "fd00::1/128",
                "fd00::99/128",
                "198.19.0.99/32"
            ]
        );
        let cx = Context {
            me: "a",
            peers: &set,
            extra_allowed: &[],
            default_port: 9464,
            pod: None,
            service: None,
            also: None,
        };
        let go = |t: &str| validate(&parse_body(t.as_bytes()).unwrap(), &cx);
        assert_eq!(
            go(r#"{"target":"198.19.0.11"}"#).unwrap_err().code,
            "target_not_allowed"
        );
        // The target's node is the fact's; an address no fact places has no owner.
        let p = go(r#"{"target":"198.19.0.99:80"}"#).unwrap();
        assert_eq!(p.target.node.as_deref(), Some("b"));
        let wide = [Cidr::parse("198.19.0.0/24").unwrap()];
        let cx = Context {
            me: "a",
            peers: &set,
            extra_allowed: &wide,
            default_port: 9464,
            pod: None,
            service: None,
            also: None,
        };
        let p = validate(&parse_body(br#"{"target":"198.19.0.11"}"#).unwrap(), &cx).unwrap();
        assert!(p.target.node.is_none() && p.context.is_empty(), "{p:?}");
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
            service: None,
            also: None,
        };
        assert_eq!(
            validate(&req, &cx(&[])).unwrap_err().code,
            "target_not_allowed"
        );
        let lo = [Cidr::parse("127.0.0.0/8").unwrap()];
        assert!(validate(&req, &cx(&lo)).is_ok());
        // A range wider than loopback does not admit it, in any spelling.
        let wide = [
            Cidr::parse("0.0.0.0/0").unwrap(),
            Cidr::parse("::/0").unwrap(),
        ];
        for t in ["127.0.0.1:10250", "[::ffff:127.0.0.1]:10250", "[::1]:10250"] {
            let req = parse_body(format!(r#"{{"target":"{t}"}}"#).as_bytes()).unwrap();
            let r = validate(&req, &cx(&wide)).unwrap_err();
            assert_eq!(r.code, "target_not_allowed", "{t}");
        }
        // Admitted through loopback's own range, the mapped spelling is probed as IPv4.
        let req = parse_body(br#"{"target":"[::ffff:127.0.0.1]:10250"}"#).unwrap();
        let p = validate(&req, &cx(&lo)).unwrap();
        assert_eq!(p.target.ip, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn from_agents_pass_the_same_fence() {
        // node-b's agent sits on a never-listed address: asked explicitly, refused; by
        // default, not asked.
        let set = parse(
            "peers:\n  - {node: a, node_ip: 198.18.0.1, pod_ip: 198.19.0.1, pod_cidrs: [198.19.0.0/24]}\n  - {node: b, node_ip: 198.18.0.2, pod_ip: 169.254.0.2}\n",
        )
        .unwrap();
        let cx = Context {
            me: "a",
            peers: &set,
            extra_allowed: &[],
            default_port: 9464,
            pod: None,
            service: None,
            also: None,
        };
        let req = parse_body(br#"{"target":"198.19.0.9","from":["b"]}"#).unwrap();
        let r = validate(&req, &cx).unwrap_err();
        assert_eq!((r.status, r.code), (403, "target_not_allowed"));
        assert!(r.error.contains("from[0] \"b\""), "{}", r.error);
        let req = parse_body(br#"{"target":"198.19.0.9"}"#).unwrap();
        let p = validate(&req, &cx).unwrap();
        let srcs: Vec<&str> = p.sources.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(srcs, ["a"]);
    }

    #[test]
    fn pod_targets_through_the_resolver_seam() {
        let set = parse(SET).unwrap();
        let req =
            parse_body(br#"{"target":"pod/shop/web-7","checks":[{"kind":"tcp","port":8080}]}"#)
                .unwrap();
        let pod = |ip: &str| ResolvedPod {
            ip: ip.parse().unwrap(),
            ips: Vec::new(),
            node: Some("node-2".into()),
            facts: Default::default(),
        };
        let cx = |p| Context {
            me: "node-1",
            peers: &set,
            extra_allowed: &[],
            default_port: 9000,
            pod: p,
            service: None,
            also: None,
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

    /// `dns/NAME`: the name checked and made absolute, the `dns` check the only one, a named
    /// server fenced like a target.
    #[test]
    fn dns_targets() {
        let ok = |body: &str, extra: &[&str]| {
            plan(body, extra).unwrap_or_else(|r| panic!("{body}: {r:?}"))
        };
        let p = ok(
            r#"{"target":"dns/Kube-DNS.kube-system.svc.cluster.local"}"#,
            &[],
        );
        assert_eq!(
            p.target.label,
            "dns/kube-dns.kube-system.svc.cluster.local."
        );
        assert!(p.target.ip.is_unspecified() && p.target.node.is_none());
        assert_eq!(
            p.checks,
            [CheckSpec::Dns {
                name: "kube-dns.kube-system.svc.cluster.local.".into(),
                server: None
            }]
        );
        assert!(p.context.is_empty());
        assert_eq!(p.sources.len(), 2);
        // A server inside the allowed ranges (port 53 unless given), canonicalised.
        let p = ok(
            r#"{"target":"dns/web.","checks":[{"kind":"dns","server":"::ffff:198.19.2.53"}],"from":["node-2"]}"#,
            &[],
        );
        let server: SocketAddr = "198.19.2.53:53".parse().unwrap();
        assert_eq!(
            p.checks,
            [CheckSpec::Dns {
                name: "web.".into(),
                server: Some(server)
            }]
        );
        assert_eq!((p.target.ip, p.target.port), (server.ip(), Some(53)));
        assert_eq!(p.sources[0].node, "node-2");
        let p = ok(
            r#"{"target":"dns/web","checks":[{"kind":"dns","server":"10.96.0.10:5353"}]}"#,
            &["10.96.0.0/12"],
        );
        assert_eq!(p.target.port, Some(5353));
        // What a forwarding agent sends parses back to the same plan.
        let b = super::super::body(&p.target.label, &p.checks, None, None).to_string();
        let again = plan(&b, &["10.96.0.0/12"]).unwrap();
        assert_eq!(again.checks, p.checks);
        assert_eq!(again.target, p.target);
        // The longest name a resolver sends: 253 characters, labels of 63.
        let l63 = "a".repeat(63);
        let longest = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(longest.len(), 253);
        ok(&format!(r#"{{"target":"dns/{longest}"}}"#), &[]);
        // Refused, naming the field.
        let table: &[(&str, u16, &str)] = &[
            (r#"{"target":"dns/"}"#, 400, "target \"dns/\": name"),
            (r#"{"target":"dns/a..b"}"#, 400, "expected a DNS name"),
            (r#"{"target":"dns/-a.b"}"#, 400, "expected a DNS name"),
            (r#"{"target":"dns/a b"}"#, 400, "expected a DNS name"),
            (r#"{"target":"dns/ä.local"}"#, 400, "expected a DNS name"),
            (r#"{"target":"dns/a/b"}"#, 400, "expected a DNS name"),
            (r#"{"target":"dns/1.2.3.4:53"}"#, 400, "expected a DNS name"),
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns","server":"dns.local"}]}"#,
                400,
                "checks[0].server: \"dns.local\" is not IP or IP:PORT",
            ),
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns","server":"10.0.0.1:0"}]}"#,
                400,
                "checks[0].server",
            ),
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns","server":53}]}"#,
                400,
                "checks[0].server: expected",
            ),
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns","type":"MX"}]}"#,
                400,
                "checks[0]: unknown field \"type\"",
            ),
            (
                r#"{"target":"dns/web","checks":[{"kind":"icmp"}]}"#,
                400,
                "checks[0]: a dns/NAME target takes only the dns check, not icmp",
            ),
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns"},{"kind":"dns"}]}"#,
                400,
                "checks[1]: a second dns check",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"dns"}]}"#,
                400,
                "checks[0]: the dns check needs a dns/NAME target",
            ),
            (
                r#"{"target":"dns/web","from":["node-9"]}"#,
                404,
                "from[0] \"node-9\"",
            ),
            // A server is an address every node sends to: fenced like a target.
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns","server":"10.96.0.10"}]}"#,
                403,
                "checks[0].server 10.96.0.10:53: outside the allowed CIDRs",
            ),
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns","server":"169.254.169.254"}]}"#,
                403,
                "is never probed",
            ),
            (
                r#"{"target":"dns/web","checks":[{"kind":"dns","server":"127.0.0.53"}]}"#,
                403,
                "loopback",
            ),
        ];
        for (body, status, part) in table {
            let r = plan(body, &[]).expect_err(body);
            assert_eq!(r.status, *status, "{body}: {r:?}");
            assert!(
                r.error.contains(part),
                "{body}: {:?} lacks {part:?}",
                r.error
            );
        }
        let long = format!(r#"{{"target":"dns/{longest}b"}}"#);
        assert!(plan(&long, &[]).unwrap_err().error.contains("253 in all"));
        let label = format!(r#"{{"target":"dns/{l63}a.b"}}"#);
        assert!(plan(&label, &[])
            .unwrap_err()
            .error
            .contains("1-63 characters"));
    }

    /// `svc/NAMESPACE/NAME`: looked up (the seam), its ClusterIP fenced by the never-list only,
    /// TCP/HTTP checks to the Service's own ports.
    #[test]
    fn service_targets() {
        let set = parse(SET).unwrap();
        let web = ResolvedService {
            ip: "10.96.0.20".parse().unwrap(),
            ports: vec![80, 443],
        };
        let go = |body: &str, svc: Option<&ResolvedService>| {
            let req = parse_body(body.as_bytes())?;
            let cx = Context {
                me: "node-1",
                peers: &set,
                extra_allowed: &[],
                default_port: 9000,
                pod: None,
                service: svc,
                also: None,
            };
            precheck(&req, &cx)?;
            validate(&req, &cx)
        };
        // Default: TCP to the first TCP port, from every node, no context.
        let p = go(r#"{"target":"svc/shop/web"}"#, Some(&web)).unwrap();
        assert_eq!(p.target.label, "svc/shop/web");
        assert_eq!((p.target.ip, p.target.port), (web.ip, Some(80)));
        assert_eq!(p.checks, [CheckSpec::Tcp { port: 80 }]);
        assert!(p.context.is_empty() && p.target.node.is_none());
        assert_eq!(p.sources.len(), 2);
        // HTTP to another of its ports.
        let p = go(
            r#"{"target":"svc/shop/web","checks":[{"kind":"http","port":443,"path":"/healthz"}],"from":["node-2"]}"#,
            Some(&web),
        )
        .unwrap();
        assert_eq!(
            p.checks,
            [CheckSpec::Http {
                port: 443,
                path: "/healthz".into()
            }]
        );
        assert_eq!(p.target.port, Some(443));
        // Refused, naming the field.
        let no_tcp = ResolvedService {
            ip: "10.96.0.10".parse().unwrap(),
            ports: vec![],
        };
        let metadata = ResolvedService {
            ip: "169.254.169.254".parse().unwrap(),
            ports: vec![80],
        };
        let lo = ResolvedService {
            ip: "127.0.0.1".parse().unwrap(),
            ports: vec![80],
        };
        let table: &[(&str, Option<&ResolvedService>, u16, &str)] = &[
            (
                r#"{"target":"svc/shop"}"#,
                Some(&web),
                400,
                "expected svc/NAMESPACE/NAME",
            ),
            (
                r#"{"target":"svc/shop/a b"}"#,
                Some(&web),
                400,
                "Service name",
            ),
            (r#"{"target":"svc//web"}"#, Some(&web), 400, "namespace"),
            (
                r#"{"target":"svc/shop/web"}"#,
                None,
                501,
                "resolving Services needs an agent running with --discovery kubernetes",
            ),
            (
                r#"{"target":"svc/shop/web","checks":[{"kind":"tcp","port":22}]}"#,
                Some(&web),
                400,
                "checks[0].port: 22 is not a TCP port of svc/shop/web (80, 443)",
            ),
            (
                r#"{"target":"svc/shop/web","checks":[{"kind":"icmp"}]}"#,
                Some(&web),
                400,
                "checks[0]: a svc/NAMESPACE/NAME target takes tcp and http checks, not icmp",
            ),
            (
                r#"{"target":"svc/shop/web","checks":[{"kind":"mtu"}]}"#,
                None,
                400,
                "not mtu",
            ),
            (
                r#"{"target":"svc/shop/web","checks":[{"kind":"dns"}]}"#,
                Some(&web),
                400,
                "not dns",
            ),
            (
                r#"{"target":"svc/kube-system/kube-dns"}"#,
                Some(&no_tcp),
                400,
                "has no TCP port",
            ),
            (
                r#"{"target":"svc/x/meta"}"#,
                Some(&metadata),
                403,
                "is never probed",
            ),
            (r#"{"target":"svc/x/lo"}"#, Some(&lo), 403, "loopback"),
        ];
        for (body, svc, status, part) in table {
            let r = go(body, *svc).expect_err(body);
            assert_eq!(r.status, *status, "{body}: {r:?}");
            assert!(
                r.error.contains(part),
                "{body}: {:?} lacks {part:?}",
                r.error
            );
        }
    }
}
