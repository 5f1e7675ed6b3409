//! The lab's address plan and the commands that build and remove it: pure functions, no I/O.
//!
//! Layout (defaults: 4 nodes, 2 zones, prefix `mp`):
//!
//! ```text
//!  mp-fabric: br-z1 (zone-a underlay 198.18.1.0/24)   br-z2 (zone-b underlay 198.18.2.0/24)
//!               |  n1  n3  r-z1                          |  n2  n4  r-z2
//!  mp-router:  z1 198.18.1.1  <---- forwards ---->  z2 198.18.2.1   (routes to every pod subnet)
//!  mp-nI:      eth0 198.18.Z.(10+I)/24, cni0 198.19.I.1/24, forwarding on, NO default route:
//!              same-zone pod subnets via the node IP (host-gw), everything else via the zone router
//!  mp-nI-probe: eth0 198.19.I.10/24 (meshprobe agent on :9464), default via 198.19.I.1
//!  mp-nI-web:   eth0 198.19.I.11/24 (meshprobe serve on :8080), default via 198.19.I.1
//! ```
//!
//! Node I is in zone ((I-1) mod zones)+1, so zones alternate: node-1 zone-a, node-2 zone-b, ...
//!
//! Pod addressing ([`Addressing`], `--pod-addressing`), as real clusters lay it out:
//! - `subnet` (above): one /24 per node, host-local IPAM (flannel, kubenet).
//! - `blocks`: two /26 blocks per node, packed so each /24 holds blocks of four nodes (block k
//!   is 198.19.(k/4).(64·(k mod 4))/26; node I holds blocks I−1 and N+I−1): Calico's IPAM. The
//!   probe pod is in the first block, the web pod in the second; pods are /32s whose default
//!   gateway is 198.19.255.1, one address on every node's cni0 (as Calico's 169.254.1.1).
//! - `vpc`: pod addresses drawn from the zone's underlay subnet (node I's probe pod
//!   198.18.Z.(128+2j), web pod 198.18.Z.(129+2j), j = (I−1) div zones), routed per pod (/32) on
//!   every node and on the router: AWS VPC CNI, Azure CNI, GKE VPC-native. Same gateway as
//!   `blocks`.
//!
//! The peers file states what a cluster would: every target's node, the pod CIDRs where the
//! CNI has them (`subnet`, `blocks`; none in `vpc`) and the pod gateway.
//!
//! IP family ([`IpFamily`], `--ip-family`): `ipv4` is the layout above. `ipv6` is the same
//! lab IPv6-only, on unique local addresses (fd00::/8), IPv4's numbers written as hex digits:
//!
//! ```text
//!  zone Z underlay fd00:198:18:Z::/64, router fd00:198:18:Z::1
//!  mp-nI:       eth0 fd00:198:18:Z::(10+I)/64, cni0 fd00:198:19:I::1/64, IPv6 forwarding on
//!  mp-nI-probe: eth0 fd00:198:19:I::10/64, default via fd00:198:19:I::1
//!  mp-nI-web:   eth0 fd00:198:19:I::11/64, default via fd00:198:19:I::1
//! ```
//!
//! `blocks` in IPv6: /122 blocks (64 addresses, as IPv4's /26), block k is
//! fd00:198:19:(k/4)::(64·(k mod 4) in hex)/122, the probe pod at +0x10 of its block, the web
//! pod at +0x11 of its, /128 pods behind the shared gateway fd00:198:19:ffff::1. `vpc` in IPv6:
//! node I's pods are fd00:198:18:Z::(128+2j) and ::(129+2j) of the zone's underlay (hex digits
//! as the rest), routed per /128.
//!
//! Routes are `ip -6` routes of the same shape; every namespace has duplicate address
//! detection off before its first link exists, and every address is added `nodad` (a new
//! IPv6 address otherwise stays tentative and answers about a second late).
//!
//! `dual` is both on the same links ([`Topology::in_family`] gives each half): IPv4's
//! addresses and routes, then IPv6's; IPv4 is the primary (the nodes' addresses, the proxies'
//! targets), the peers file states both (`node_ips`, `pod_ips`, targets' `ips`, both
//! families' pod CIDRs), the agents and targets listen on `[::]` for both.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod cmds;
pub mod services;

/// Largest number of nodes (pod subnets 198.19.I.0/24, node IPs 198.18.Z.(10+I)).
pub const MAX_NODES: u16 = 200;
/// Largest number of nodes with `vpc` addressing (pods at 198.18.Z.128 and up, above the node
/// IPs 198.18.Z.11 ..= 198.18.Z.70).
pub const MAX_VPC_NODES: u16 = 60;
/// The pods' gateway with `blocks` and `vpc` addressing: one address on every node's cni0, as
/// Calico and AWS VPC CNI share 169.254.1.1 (the lab keeps to its own 198.18.0.0/15).
pub const SHARED_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 1);
/// The same in an IPv6 lab: inside the pods' fd00:198:19::/48, outside every block.
pub const SHARED_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x19, 0xffff, 0, 0, 0, 1);

/// How pod addresses are laid out (see the module's documentation).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// One /24 per node (host-local IPAM).
    #[default]
    Subnet,
    /// Two /26 blocks per node, four nodes' blocks per /24 (Calico IPAM).
    Blocks,
    /// Pods from the underlay subnet, routed per pod (VPC-native CNIs).
    Vpc,
}

impl Addressing {
    pub fn as_str(self) -> &'static str {
        match self {
            Addressing::Subnet => "subnet",
            Addressing::Blocks => "blocks",
            Addressing::Vpc => "vpc",
        }
    }
}
/// The lab's IP family (`--ip-family`): every address of the lab is of this family.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// 198.18.0.0/15 underlay and pods.
    #[default]
    Ipv4,
    /// ULA underlay and pod prefixes (`fd00:198:18:Z::/64`, `fd00:198:19:I::/64`).
    Ipv6,
    /// Both on every link, IPv4 the primary (what the agents probe until they probe both).
    Dual,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
            IpFamily::Dual => "dual",
        }
    }

    /// Whether the single-family helpers take IPv4's form: `dual` is IPv4 first (its primary
    /// addresses), and its IPv6 half is asked for with [`Topology::in_family`].
    fn is_ipv4(self) -> bool {
        self != IpFamily::Ipv6
    }
}

/// Largest number of zones (zone names zone-a .. zone-z).
pub const MAX_ZONES: u16 = 26;
/// The agent's port in every probe pod.
pub const AGENT_PORT: u16 = 9464;
/// The target server's port in every web pod.
pub const WEB_PORT: u16 = 8080;
/// Every nftables table the lab creates starts with this.
pub const NFT_PREFIX: &str = "mplab_";

/// One command: a program and its arguments. `tolerate_failure` marks best-effort steps
/// (removing something that may already be gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub tolerate_failure: bool,
}

impl Cmd {
    pub fn new(program: &str, args: &[&str]) -> Cmd {
        Cmd {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            tolerate_failure: false,
        }
    }

    /// `ip -n NS <words…>` (words split on whitespace).
    pub fn ip(ns: &str, words: &str) -> Cmd {
        let mut args = vec!["-n".to_string(), ns.to_string()];
        args.extend(words.split_whitespace().map(str::to_string));
        Cmd {
            program: "ip".into(),
            args,
            tolerate_failure: false,
        }
    }

    /// `ip netns exec NS <program> <args…>`.
    pub fn exec(ns: &str, program: &str, args: &[&str]) -> Cmd {
        let mut all = vec!["netns", "exec", ns, program];
        all.extend_from_slice(args);
        Cmd::new("ip", &all)
    }

    /// `ip netns exec NS sysctl -qw KEY=VALUE`.
    pub fn sysctl(ns: &str, key_value: &str) -> Cmd {
        Cmd::exec(ns, "sysctl", &["-qw", key_value])
    }

    /// `ip netns exec NS nft SCRIPT` (one argument: nft runs the `;`-separated script atomically).
    pub fn nft(ns: &str, script: &str) -> Cmd {
        Cmd::exec(ns, "nft", &[script])
    }

    pub fn tolerant(mut self) -> Cmd {
        self.tolerate_failure = true;
        self
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || "\"'{};<>|&$*?()".contains(c))
            {
                write!(f, " '{}'", a.replace('\'', r"'\''"))?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

/// The lab's shape: everything else is derived from these three values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Topology {
    pub prefix: String,
    pub nodes: u16,
    pub zones: u16,
    /// Absent from the state of labs made before it: `subnet`.
    #[serde(default)]
    pub addressing: Addressing,
    /// Absent from the state of labs made before it: `ipv4`.
    #[serde(default)]
    pub family: IpFamily,
}

/// One node and everything on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 1-based.
    pub index: u16,
    /// 1-based zone number.
    pub zone: u16,
    pub name: String,
    pub zone_name: String,
    pub ns: String,
    pub probe_ns: String,
    pub web_ns: String,
    pub node_ip: IpAddr,
    /// What the node's pods are routed as, by the other nodes and the router: its /24
    /// (`subnet`), its two /26 blocks (`blocks`), or each pod's /32 (`vpc`).
    pub pod_routes: Vec<String>,
    /// The pod CIDRs a cluster would state (`subnet`, `blocks`; none with `vpc`).
    pub pod_cidrs: Vec<String>,
    pub pod_gateway: IpAddr,
    pub probe_ip: IpAddr,
    pub web_ip: IpAddr,
    /// The fabric-side end of the node's uplink (in the fabric namespace).
    pub fabric_port: String,
    pub web_name: String,
}

/// Validate a namespace prefix: 1-12 characters, lowercase letters and digits, starting with a letter.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 12
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--prefix {prefix:?}: expected 1-12 lowercase letters or digits, starting with a letter"
        ))
    }
}

pub fn zone_name(zone: u16) -> String {
    format!("zone-{}", (b'a' + (zone - 1) as u8) as char)
}

impl Topology {
    pub fn new(prefix: &str, nodes: u16, zones: u16) -> Result<Topology, String> {
        validate_prefix(prefix)?;
        if !(1..=MAX_NODES).contains(&nodes) {
            return Err(format!("--nodes {nodes}: expected 1 to {MAX_NODES}"));
        }
        if !(1..=MAX_ZONES).contains(&zones) || zones > nodes {
            return Err(format!(
                "--zones {zones}: expected 1 to {}, and no more zones than nodes",
                MAX_ZONES.min(nodes)
            ));
        }
        Ok(Topology {
            prefix: prefix.to_string(),
            nodes,
            zones,
            addressing: Addressing::Subnet,
            family: IpFamily::Ipv4,
        })
    }

    /// The same shape in another IP family.
    pub fn with_family(mut self, family: IpFamily) -> Result<Topology, String> {
        self.family = family;
        Ok(self)
    }

    /// The families of the lab's addresses, the primary first (`dual`: IPv4, then IPv6).
    pub fn families(&self) -> Vec<IpFamily> {
        match self.family {
            IpFamily::Ipv4 => vec![IpFamily::Ipv4],
            IpFamily::Ipv6 => vec![IpFamily::Ipv6],
            IpFamily::Dual => vec![IpFamily::Ipv4, IpFamily::Ipv6],
        }
    }

    /// The lab seen in one family: its nodes' addresses, routes and commands of that family
    /// (a single-family lab is its own view; `dual` has an IPv4 and an IPv6 half).
    pub fn in_family(&self, family: IpFamily) -> Topology {
        Topology {
            family,
            ..self.clone()
        }
    }

    /// Each family's view, the primary first.
    pub(crate) fn views(&self) -> Vec<Topology> {
        self.families()
            .into_iter()
            .map(|f| self.in_family(f))
            .collect()
    }

    /// The sysctl that makes a namespace forward this family's packets (IPv6's
    /// `all.forwarding` makes every interface a router's).
    fn forward_sysctl(&self) -> &'static str {
        if self.family.is_ipv4() {
            "net.ipv4.ip_forward=1"
        } else {
            "net.ipv6.conf.all.forwarding=1"
        }
    }

    /// `ip -n NS [-6] WORDS` for an address of this lab's family (`-6` for IPv6: `ip route`
    /// would read `default` as IPv4's).
    fn ip_fam(&self, ns: &str, words: &str) -> Cmd {
        if self.family.is_ipv4() {
            Cmd::ip(ns, words)
        } else {
            Cmd::ip(ns, &format!("-6 {words}"))
        }
    }

    /// The `ip` command's prefix words for this family's routes: `route` or `-6 route`.
    pub fn route_words(&self) -> &'static str {
        if self.family.is_ipv4() {
            "route"
        } else {
            "-6 route"
        }
    }

    /// The suffix of `ip addr add`: `nodad` on IPv6, so an address is usable at once instead of
    /// tentative for about a second (duplicate address detection).
    fn addr_flags(&self) -> &'static str {
        if self.family.is_ipv4() {
            ""
        } else {
            " nodad"
        }
    }

    /// Underlay subnet prefix length.
    fn underlay_len(&self) -> u8 {
        if self.family.is_ipv4() {
            24
        } else {
            64
        }
    }

    /// An IPv6 address from its text (the plan's own, always valid).
    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(
            text.parse::<Ipv6Addr>()
                .expect("the plan's IPv6 addresses are valid"),
        )
    }

    /// The same shape with another pod addressing.
    pub fn with_addressing(mut self, addressing: Addressing) -> Result<Topology, String> {
        if addressing == Addressing::Vpc && self.nodes > MAX_VPC_NODES {
            return Err(format!(
                "--nodes {} with --pod-addressing vpc: expected at most {MAX_VPC_NODES}",
                self.nodes
            ));
        }
        self.addressing = addressing;
        Ok(self)
    }

    /// Block `k` of IPv6 `blocks` addressing, a /122 (64 addresses, as IPv4's /26):
    /// fd00:198:19:(k/4)::(64·(k mod 4)), the /122's number written as hex digits as the
    /// rest of the plan; `offset` added (the pods: +0x10 and +0x11 of their block).
    fn block6(k: u16, offset: u16) -> IpAddr {
        Self::v6(&format!(
            "fd00:198:19:{}::{:x}",
            k / 4,
            64 * (k % 4) + offset
        ))
    }

    /// Block `k` of `blocks` addressing: 198.19.(k/4).(64·(k mod 4)).
    fn block(k: u16) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, (k / 4) as u8, (64 * (k % 4)) as u8)
    }

    fn offset(base: Ipv4Addr, by: u8) -> Ipv4Addr {
        let o = base.octets();
        Ipv4Addr::new(o[0], o[1], o[2], o[3] + by)
    }

    pub fn fabric_ns(&self) -> String {
        format!("{}-fabric", self.prefix)
    }

    pub fn router_ns(&self) -> String {
        format!("{}-router", self.prefix)
    }

    pub fn zone_of(&self, node: u16) -> u16 {
        (node - 1) % self.zones + 1
    }

    pub fn router_ip(&self, zone: u16) -> IpAddr {
        match self.family {
            IpFamily::Ipv4 | IpFamily::Dual => Ipv4Addr::new(198, 18, zone as u8, 1).into(),
            IpFamily::Ipv6 => Self::v6(&format!("fd00:198:18:{zone}::1")),
        }
    }

    pub fn underlay(&self, zone: u16) -> String {
        match self.family {
            IpFamily::Ipv4 | IpFamily::Dual => format!("198.18.{zone}.0/24"),
            IpFamily::Ipv6 => format!("fd00:198:18:{zone}::/64"),
        }
    }

    pub fn node(&self, index: u16) -> Node {
        let zone = self.zone_of(index);
        let i = index as u8;
        let ns = format!("{}-n{index}", self.prefix);
        let (probe_ip, web_ip, pod_gateway, pod_routes, pod_cidrs) = match self.addressing {
            // IPv6 mirrors IPv4's numbers as hex digits, so node-3's pods are ::10 and ::11
            // of fd00:198:19:3::/64 as they are .10 and .11 of 198.19.3.0/24.
            Addressing::Subnet if self.family == IpFamily::Ipv6 => {
                let s = format!("fd00:198:19:{index}::/64");
                (
                    Self::v6(&format!("fd00:198:19:{index}::10")),
                    Self::v6(&format!("fd00:198:19:{index}::11")),
                    Self::v6(&format!("fd00:198:19:{index}::1")),
                    vec![s.clone()],
                    vec![s],
                )
            }
            Addressing::Subnet => {
                let s = format!("198.19.{index}.0/24");
                (
                    Ipv4Addr::new(198, 19, i, 10).into(),
                    Ipv4Addr::new(198, 19, i, 11).into(),
                    Ipv4Addr::new(198, 19, i, 1).into(),
                    vec![s.clone()],
                    vec![s],
                )
            }
            Addressing::Blocks if self.family == IpFamily::Ipv6 => {
                let (k1, k2) = (index - 1, self.nodes + index - 1);
                let blocks = vec![
                    format!("{}/122", Self::block6(k1, 0)),
                    format!("{}/122", Self::block6(k2, 0)),
                ];
                (
                    Self::block6(k1, 0x10),
                    Self::block6(k2, 0x11),
                    SHARED_GATEWAY_V6.into(),
                    blocks.clone(),
                    blocks,
                )
            }
            Addressing::Blocks => {
                let (b1, b2) = (Self::block(index - 1), Self::block(self.nodes + index - 1));
                let blocks = vec![format!("{b1}/26"), format!("{b2}/26")];
                (
                    Self::offset(b1, 10).into(),
                    Self::offset(b2, 11).into(),
                    SHARED_GATEWAY.into(),
                    blocks.clone(),
                    blocks,
                )
            }
            // From the zone's underlay /64, above the node addresses (::11 ..= ::70).
            Addressing::Vpc if self.family == IpFamily::Ipv6 => {
                let j = (index - 1) / self.zones;
                let probe = Self::v6(&format!("fd00:198:18:{zone}::{}", 128 + 2 * j));
                let web = Self::v6(&format!("fd00:198:18:{zone}::{}", 129 + 2 * j));
                (
                    probe,
                    web,
                    SHARED_GATEWAY_V6.into(),
                    vec![format!("{probe}/128"), format!("{web}/128")],
                    Vec::new(),
                )
            }
            Addressing::Vpc => {
                let j = ((index - 1) / self.zones) as u8;
                let probe = Ipv4Addr::new(198, 18, zone as u8, 128 + 2 * j);
                let web = Ipv4Addr::new(198, 18, zone as u8, 129 + 2 * j);
                (
                    probe.into(),
                    web.into(),
                    SHARED_GATEWAY.into(),
                    vec![format!("{probe}/32"), format!("{web}/32")],
                    Vec::new(),
                )
            }
        };
        Node {
            index,
            zone,
            name: format!("node-{index}"),
            zone_name: zone_name(zone),
            probe_ns: format!("{ns}-probe"),
            web_ns: format!("{ns}-web"),
            ns,
            node_ip: match self.family {
                IpFamily::Ipv4 | IpFamily::Dual => {
                    Ipv4Addr::new(198, 18, zone as u8, 10 + i).into()
                }
                IpFamily::Ipv6 => Self::v6(&format!("fd00:198:18:{zone}::{}", 10 + index)),
            },
            pod_routes,
            pod_cidrs,
            pod_gateway,
            probe_ip,
            web_ip,
            fabric_port: format!("n{index}"),
            web_name: format!("web-node-{index}"),
        }
    }

    pub fn all_nodes(&self) -> Vec<Node> {
        (1..=self.nodes).map(|i| self.node(i)).collect()
    }

    /// Every namespace of the lab, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.fabric_ns(), self.router_ns()];
        for n in self.all_nodes() {
            v.extend([n.ns, n.probe_ns, n.web_ns]);
        }
        v.push(self.dns_ns());
        v
    }

    /// The next hop node `from` uses for node `to`'s pod subnet: `to`'s node IP in the same
    /// zone (host-gw), the zone router otherwise.
    pub fn next_hop(&self, from: u16, to: u16) -> IpAddr {
        let (a, b) = (self.node(from), self.node(to));
        if a.zone == b.zone {
            b.node_ip
        } else {
            self.router_ip(a.zone)
        }
    }

    /// Resolve `node-3`, `n3` or `3` to a node index.
    pub fn parse_node(&self, s: &str) -> Result<u16, String> {
        let digits = s
            .strip_prefix("node-")
            .or_else(|| s.strip_prefix('n'))
            .unwrap_or(s);
        match digits.parse::<u16>() {
            Ok(i) if (1..=self.nodes).contains(&i) => Ok(i),
            _ => Err(format!(
                "unknown node {s:?}: the lab has node-1 .. node-{}",
                self.nodes
            )),
        }
    }

    /// Resolve `zone-b` or `b` to a zone number.
    pub fn parse_zone(&self, s: &str) -> Result<u16, String> {
        let letter = s.strip_prefix("zone-").unwrap_or(s);
        let mut chars = letter.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_lowercase() => {
                let z = (c as u8 - b'a') as u16 + 1;
                if z <= self.zones {
                    return Ok(z);
                }
            }
            _ => {}
        }
        Err(format!(
            "unknown zone {s:?}: the lab has {}",
            (1..=self.zones)
                .map(zone_name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Whether `ns` is a namespace this prefix's lab could have made (whatever its size).
    pub fn owns_namespace(prefix: &str, ns: &str) -> bool {
        let Some(rest) = ns.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            return false;
        };
        if rest == "fabric" || rest == "router" {
            return true;
        }
        let Some(rest) = rest.strip_prefix('n') else {
            return false;
        };
        let digits = rest
            .strip_suffix("-probe")
            .or_else(|| rest.strip_suffix("-web"))
            .or_else(|| rest.strip_suffix("-dns"))
            .unwrap_or(rest);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    }
}

/// The peers file every agent reads (JSON): every agent as a peer, every web pod as a target.
/// A `dual` lab states both families as Kubernetes' `podIPs` do: `node_ips`, `pod_ips`,
/// `pod_gateways` and a target's `ips`, the primary (IPv4) first, and every family's pod CIDRs.
pub fn peers_file(topo: &Topology) -> serde_json::Value {
    let nodes = topo.all_nodes();
    let dual = topo.family == IpFamily::Dual;
    // Node i in every family, the primary first.
    let every = |i: u16| -> Vec<Node> { topo.views().iter().map(|t| t.node(i)).collect() };
    let texts = |ns: &[Node], f: fn(&Node) -> IpAddr| -> Vec<String> {
        ns.iter().map(|n| f(n).to_string()).collect()
    };
    serde_json::json!({
        "peers": nodes.iter().map(|n| {
            let mut p = serde_json::json!({
                "node": n.name, "node_ip": n.node_ip.to_string(), "pod_ip": n.probe_ip.to_string(),
                "zone": n.zone_name, "port": AGENT_PORT,
                "pod_gateway": n.pod_gateway.to_string(),
            });
            let all = every(n.index);
            let cidrs: Vec<&String> = all.iter().flat_map(|m| &m.pod_cidrs).collect();
            if !cidrs.is_empty() {
                p["pod_cidrs"] = serde_json::json!(cidrs);
            }
            if dual {
                p["node_ips"] = serde_json::json!(texts(&all, |m| m.node_ip));
                p["pod_ips"] = serde_json::json!(texts(&all, |m| m.probe_ip));
                p["pod_gateways"] = serde_json::json!(texts(&all, |m| m.pod_gateway));
            }
            p
        }).collect::<Vec<_>>(),
        "targets": nodes.iter().map(|n| {
            let mut t = serde_json::json!({
                "name": n.web_name, "ip": n.web_ip.to_string(), "port": WEB_PORT,
                "protocol": "http", "path": "/healthz", "node": n.name,
            });
            if dual {
                t["ips"] = serde_json::json!(texts(&every(n.index), |m| m.web_ip));
            }
            t
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::new("mp", 4, 2).unwrap()
    }

    fn has(cmds: &[Cmd], line: &str) -> bool {
        cmds.iter().any(|c| c.to_string() == line)
    }

    #[test]
    fn address_plan() {
        let t = topo();
        let table = [
            (
                1,
                "zone-a",
                "198.18.1.11",
                "198.19.1.10",
                "198.19.1.11",
                "mp-n1",
            ),
            (
                2,
                "zone-b",
                "198.18.2.12",
                "198.19.2.10",
                "198.19.2.11",
                "mp-n2",
            ),
            (
                3,
                "zone-a",
                "198.18.1.13",
                "198.19.3.10",
                "198.19.3.11",
                "mp-n3",
            ),
            (
                4,
                "zone-b",
                "198.18.2.14",
                "198.19.4.10",
                "198.19.4.11",
                "mp-n4",
            ),
        ];
        for (i, zone, node_ip, probe, web, ns) in table {
            let n = t.node(i);
            assert_eq!(n.zone_name, zone);
            assert_eq!(n.node_ip.to_string(), node_ip);
            assert_eq!(n.probe_ip.to_string(), probe);
            assert_eq!(n.web_ip.to_string(), web);
            assert_eq!(n.ns, ns);
            assert_eq!(n.probe_ns, format!("{ns}-probe"));
        }
        // Fabric, router, three pods' and a node's per node, the DNS pod.
        assert_eq!(t.namespaces().len(), 2 + 4 * 3 + 1);
    }

    #[test]
    fn every_address_is_in_the_benchmarking_range() {
        let t = Topology::new("mp", MAX_NODES, MAX_ZONES).unwrap();
        let blocks = t.clone().with_addressing(Addressing::Blocks).unwrap();
        let vpc = Topology::new("mp", MAX_VPC_NODES, MAX_ZONES)
            .unwrap()
            .with_addressing(Addressing::Vpc)
            .unwrap();
        let all = [t.up_cmds(), blocks.up_cmds(), vpc.up_cmds()].concat();
        for c in all {
            for a in &c.args {
                for word in a.split(|ch: char| ch == '/' || ch.is_whitespace()) {
                    if let Ok(ip) = word.parse::<Ipv4Addr>() {
                        let o = ip.octets();
                        assert!(o[0] == 198 && (o[1] == 18 || o[1] == 19), "{c}");
                    }
                }
            }
            // Nothing runs in the host's namespace except creating namespaces.
            assert!(
                c.args[0] == "-n"
                    || c.args[..2] == ["netns", "exec"]
                    || c.args[..2] == ["netns", "add"],
                "{c}"
            );
        }
    }

    #[test]
    fn routes_are_host_gw_in_zone_and_via_router_across() {
        let c = topo().up_cmds();
        for line in [
            "ip -n mp-n1 route add 198.19.3.0/24 via 198.18.1.13",
            "ip -n mp-n1 route add 198.19.2.0/24 via 198.18.1.1",
            "ip -n mp-n1 route add 198.19.4.0/24 via 198.18.1.1",
            "ip -n mp-n1 route add 198.18.2.0/24 via 198.18.1.1",
            "ip -n mp-n4 route add 198.19.2.0/24 via 198.18.2.12",
            "ip -n mp-router route add 198.19.3.0/24 via 198.18.1.13",
            "ip -n mp-n2-probe route add default via 198.19.2.1",
            "ip -n mp-fabric link set n3 master br-z1 up",
        ] {
            assert!(has(&c, line), "missing {line}");
        }
        assert!(!c
            .iter()
            .any(|c| c.to_string().contains("mp-n1 route add default")));
    }

    #[test]
    fn node_and_zone_names() {
        let t = topo();
        assert_eq!(t.parse_node("node-3"), Ok(3));
        assert_eq!(t.parse_node("n2"), Ok(2));
        assert_eq!(t.parse_node("4"), Ok(4));
        assert!(t
            .parse_node("node-5")
            .unwrap_err()
            .contains("node-1 .. node-4"));
        assert!(t.parse_node("node-0").is_err());
        assert!(t.parse_node("web").is_err());
        assert_eq!(t.parse_zone("zone-b"), Ok(2));
        assert_eq!(t.parse_zone("a"), Ok(1));
        assert!(t
            .parse_zone("zone-c")
            .unwrap_err()
            .contains("zone-a, zone-b"));
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(Topology::new("mp", 0, 1).is_err());
        assert!(Topology::new("mp", 2, 3).is_err());
        assert!(Topology::new("mp", 201, 2).is_err());
        assert!(Topology::new("MP", 2, 1).is_err());
        assert!(Topology::new("m-p", 2, 1).is_err());
        assert!(Topology::new("", 2, 1).is_err());
    }

    #[test]
    fn down_removes_only_this_prefix() {
        let existing: Vec<String> = [
            "mp-fabric",
            "mp-router",
            "mp-n1",
            "mp-n12-probe",
            "mp-n3-web",
            "mpt1-n1",
            "mp-other",
            "mp-n",
            "mp-nx",
            "user-ns",
            "mp-n1-webx",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got: Vec<String> = cmds::down_cmds("mp", &existing)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "ip netns del mp-fabric",
                "ip netns del mp-router",
                "ip netns del mp-n1",
                "ip netns del mp-n12-probe",
                "ip netns del mp-n3-web",
            ]
        );
        assert!(cmds::down_cmds("mpt1", &existing).len() == 1);
    }

    #[test]
    fn peers_file_lists_every_agent_and_target() {
        let v = peers_file(&topo());
        assert_eq!(v["peers"].as_array().unwrap().len(), 4);
        assert_eq!(v["peers"][1]["node_ip"], "198.18.2.12");
        assert_eq!(v["peers"][1]["zone"], "zone-b");
        assert_eq!(v["targets"][2]["ip"], "198.19.3.11");
        assert_eq!(v["targets"][2]["port"], 8080);
    }

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let c = Cmd::nft(
            "mp-n1",
            "add table inet x; add chain inet x c { type filter hook input priority 0 ; }",
        );
        assert_eq!(
            c.to_string(),
            "ip netns exec mp-n1 nft 'add table inet x; add chain inet x c { type filter hook input priority 0 ; }'"
        );
    }

    #[test]
    fn blocks_pack_four_nodes_per_24_and_vpc_draws_from_the_underlay() {
        let blocks = topo().with_addressing(Addressing::Blocks).unwrap();
        // (node, routes, probe pod, web pod)
        let table = [
            (
                1,
                "198.19.0.0/26 198.19.1.0/26",
                "198.19.0.10",
                "198.19.1.11",
            ),
            (
                2,
                "198.19.0.64/26 198.19.1.64/26",
                "198.19.0.74",
                "198.19.1.75",
            ),
            (
                4,
                "198.19.0.192/26 198.19.1.192/26",
                "198.19.0.202",
                "198.19.1.203",
            ),
        ];
        for (i, routes, probe, web) in table {
            let n = blocks.node(i);
            assert_eq!(n.pod_routes.join(" "), routes);
            assert_eq!(n.pod_cidrs, n.pod_routes);
            assert_eq!(
                (n.probe_ip.to_string(), n.web_ip.to_string()),
                (probe.into(), web.into())
            );
            assert_eq!(n.pod_gateway, SHARED_GATEWAY);
        }
        let c = blocks.up_cmds();
        for line in [
            "ip -n mp-n1 addr add 198.19.255.1/32 dev cni0",
            "ip -n mp-n1 route add 198.19.1.0/26 dev cni0",
            "ip -n mp-n1-web addr add 198.19.1.11/32 dev eth0",
            "ip -n mp-n1-web route add 198.19.255.1 dev eth0",
            "ip -n mp-n1-web route add default via 198.19.255.1",
            "ip -n mp-n1 route add 198.19.1.128/26 via 198.18.1.13",
            "ip -n mp-router route add 198.19.1.192/26 via 198.18.2.14",
            "ip netns exec mp-n1 sysctl -qw net.ipv4.conf.all.send_redirects=0",
        ] {
            assert!(has(&c, line), "blocks: missing {line}");
        }
        let vpc = topo().with_addressing(Addressing::Vpc).unwrap();
        let (n3, n4) = (vpc.node(3), vpc.node(4));
        assert_eq!(n3.probe_ip.to_string(), "198.18.1.130");
        assert_eq!(n4.web_ip.to_string(), "198.18.2.131");
        assert!(n3.pod_cidrs.is_empty());
        let c = vpc.up_cmds();
        for line in [
            "ip -n mp-n1 route add 198.18.1.130/32 via 198.18.1.13",
            "ip -n mp-n1 route add 198.18.2.131/32 via 198.18.1.1",
            "ip -n mp-router route add 198.18.2.131/32 via 198.18.2.14",
            "ip -n mp-n3 route add 198.18.1.131/32 dev cni0",
        ] {
            assert!(has(&c, line), "vpc: missing {line}");
        }
        assert!(Topology::new("mp", MAX_VPC_NODES + 1, 2)
            .unwrap()
            .with_addressing(Addressing::Vpc)
            .unwrap_err()
            .contains("at most 60"));
        // The largest vpc lab stays inside each zone's /24, pods above the node IPs.
        let big = Topology::new("mp", MAX_VPC_NODES, 1)
            .unwrap()
            .with_addressing(Addressing::Vpc)
            .unwrap();
        let last = big.node(MAX_VPC_NODES);
        let low = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(_) => panic!("an IPv4 lab"),
        };
        assert!(low(last.node_ip) < 128 && low(last.web_ip) < 255);
    }

    #[test]
    fn the_peers_file_states_facts_and_they_place_every_pod() {
        use meshprobe_core::owners::Owner;
        for a in [Addressing::Subnet, Addressing::Blocks, Addressing::Vpc] {
            let t = Topology::new("mp", 8, 2)
                .unwrap()
                .with_addressing(a)
                .unwrap();
            let text = peers_file(&t).to_string();
            let set = meshprobe_core::peers::parse(&text).unwrap_or_else(|e| panic!("{a:?}: {e}"));
            let owners = set.owners();
            for n in t.all_nodes() {
                let i = usize::from(n.index - 1);
                let want = Owner::Node {
                    node: i,
                    role: meshprobe_core::owners::Role::PodIp,
                };
                assert_eq!(owners.lookup(n.probe_ip), want, "{a:?} {}", n.name);
                assert_eq!(owners.target_node(&n.web_name), Some(i), "{a:?}");
                // The shared gateway is the sender's node, never one found by address.
                if a != Addressing::Subnet {
                    assert_eq!(owners.lookup(SHARED_GATEWAY.into()), Owner::SendersNode);
                }
            }
        }
    }

    fn topo6() -> Topology {
        topo().with_family(IpFamily::Ipv6).unwrap()
    }

    #[test]
    fn ipv6_address_plan_mirrors_ipv4() {
        let (t4, t6) = (topo(), topo6());
        // (node, node IP, probe pod, web pod, pod gateway, pod prefix)
        let table = [
            (
                1,
                "fd00:198:18:1::11",
                "fd00:198:19:1::10",
                "fd00:198:19:1::11",
                "fd00:198:19:1::1",
                "fd00:198:19:1::/64",
            ),
            (
                2,
                "fd00:198:18:2::12",
                "fd00:198:19:2::10",
                "fd00:198:19:2::11",
                "fd00:198:19:2::1",
                "fd00:198:19:2::/64",
            ),
            (
                4,
                "fd00:198:18:2::14",
                "fd00:198:19:4::10",
                "fd00:198:19:4::11",
                "fd00:198:19:4::1",
                "fd00:198:19:4::/64",
            ),
        ];
        for (i, node_ip, probe, web, gw, prefix) in table {
            let (n4, n6) = (t4.node(i), t6.node(i));
            assert_eq!(n6.node_ip.to_string(), node_ip);
            assert_eq!(n6.probe_ip.to_string(), probe);
            assert_eq!(n6.web_ip.to_string(), web);
            assert_eq!(n6.pod_gateway.to_string(), gw);
            assert_eq!(n6.pod_routes, [prefix]);
            assert_eq!(n6.pod_cidrs, [prefix]);
            // Names, zones and namespaces do not depend on the family.
            assert_eq!(
                (&n6.name, &n6.zone_name, &n6.ns, &n6.fabric_port),
                (&n4.name, &n4.zone_name, &n4.ns, &n4.fabric_port)
            );
        }
        assert_eq!(t6.router_ip(2).to_string(), "fd00:198:18:2::1");
        assert_eq!(t6.underlay(1), "fd00:198:18:1::/64");
        assert_eq!(t6.next_hop(1, 3).to_string(), "fd00:198:18:1::13");
        assert_eq!(t6.next_hop(1, 2).to_string(), "fd00:198:18:1::1");
        assert_eq!(t6.namespaces(), t4.namespaces());
    }

    #[test]
    fn ipv6_up_uses_ip6_routes_forwarding_and_no_dad() {
        let c = topo6().up_cmds();
        for line in [
            "ip netns exec mp-n1 sysctl -qw net.ipv6.conf.all.accept_dad=0",
            "ip netns exec mp-n1-probe sysctl -qw net.ipv6.conf.default.accept_dad=0",
            "ip netns exec mp-fabric sysctl -qw net.ipv6.conf.default.accept_dad=0",
            "ip netns exec mp-router sysctl -qw net.ipv6.conf.all.forwarding=1",
            "ip netns exec mp-n3 sysctl -qw net.ipv6.conf.all.forwarding=1",
            "ip -n mp-router addr add fd00:198:18:1::1/64 dev z1 nodad",
            "ip -n mp-n1 addr add fd00:198:18:1::11/64 dev eth0 nodad",
            "ip -n mp-n1 addr add fd00:198:19:1::1/64 dev cni0 nodad",
            "ip -n mp-n2-web addr add fd00:198:19:2::11/64 dev eth0 nodad",
            "ip -n mp-n2-probe -6 route add default via fd00:198:19:2::1",
            "ip -n mp-n1 -6 route add fd00:198:19:3::/64 via fd00:198:18:1::13",
            "ip -n mp-n1 -6 route add fd00:198:19:2::/64 via fd00:198:18:1::1",
            "ip -n mp-n1 -6 route add fd00:198:18:2::/64 via fd00:198:18:1::1",
            "ip -n mp-router -6 route add fd00:198:19:3::/64 via fd00:198:18:1::13",
            "ip -n mp-fabric link set n3 master br-z1 up",
        ] {
            assert!(has(&c, line), "missing {line}");
        }
        // DAD is off in a namespace before any of its links exists.
        for ns in topo6().namespaces() {
            let pos = |want: &dyn Fn(&str) -> bool| c.iter().position(|x| want(&x.to_string()));
            let dad = pos(&|l| {
                l == format!("ip netns exec {ns} sysctl -qw net.ipv6.conf.default.accept_dad=0")
            })
            .unwrap_or_else(|| panic!("{ns}: no accept_dad"));
            let first_link = pos(&|l| {
                l.contains(&format!("netns {ns}")) && l.contains("link add")
                    || l.starts_with(&format!("ip -n {ns} link add"))
            });
            assert!(first_link.is_none_or(|l| dad < l), "{ns}");
        }
        // Nothing IPv4 is configured: no IPv4 forwarding, no 198.18/15 address.
        for x in &c {
            let l = x.to_string();
            assert!(
                !l.contains("198.18.") && !l.contains("198.19.") && !l.contains("ip_forward"),
                "{l}"
            );
        }
        assert_eq!(
            topo6().flush_cache_cmds()[0].to_string(),
            "ip -n mp-fabric -6 route flush cache"
        );
        assert_eq!(
            topo().flush_cache_cmds()[0].to_string(),
            "ip -n mp-fabric route flush cache"
        );
    }

    #[test]
    fn every_ipv6_address_is_unique_local_and_in_the_plan() {
        let t = Topology::new("mp", MAX_NODES, MAX_ZONES)
            .unwrap()
            .with_family(IpFamily::Ipv6)
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for n in t.all_nodes() {
            for ip in [n.node_ip, n.probe_ip, n.web_ip, n.pod_gateway] {
                let IpAddr::V6(v6) = ip else {
                    panic!("{ip}: not IPv6")
                };
                assert_eq!(v6.segments()[0], 0xfd00, "{ip}");
                assert_eq!(v6.segments()[1], 0x198, "{ip}");
                assert!(seen.insert(ip), "{ip} twice");
            }
        }
        for c in t.up_cmds() {
            for a in &c.args {
                for word in a.split(|ch: char| ch == '/' || ch.is_whitespace()) {
                    if let Ok(ip) = word.parse::<Ipv6Addr>() {
                        assert_eq!(ip.segments()[..2], [0xfd00, 0x198], "{c}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_lab_state_from_before_the_family_reads_as_ipv4() {
        let old = r#"{"prefix":"mp","nodes":4,"zones":2,"addressing":"subnet"}"#;
        let t: Topology = serde_json::from_str(old).unwrap();
        assert_eq!(t.family, IpFamily::Ipv4);
        assert_eq!(t, topo());
    }

    #[test]
    fn a_dual_lab_is_the_ipv4_lab_and_the_ipv6_lab_on_the_same_links() {
        for a in [Addressing::Subnet, Addressing::Blocks, Addressing::Vpc] {
            let at = |f: IpFamily| topo().with_addressing(a).unwrap().with_family(f).unwrap();
            let (v4, v6, dual) = (at(IpFamily::Ipv4), at(IpFamily::Ipv6), at(IpFamily::Dual));
            let set = |t: &Topology| -> std::collections::BTreeSet<String> {
                t.up_cmds().iter().map(|c| c.to_string()).collect()
            };
            let both: std::collections::BTreeSet<String> =
                set(&v4).union(&set(&v6)).cloned().collect();
            assert_eq!(set(&dual), both, "{a:?}");
            // Every command once (links are made once, not per family).
            assert_eq!(dual.up_cmds().len(), both.len(), "{a:?}");
            // The primary is IPv4: the nodes, the proxies' and the listeners' addresses.
            assert_eq!(dual.node(2), v4.node(2), "{a:?}");
            assert_eq!(dual.in_family(IpFamily::Ipv6).node(2), v6.node(2), "{a:?}");
            let flush: Vec<String> = dual
                .flush_cache_cmds()
                .iter()
                .take(2)
                .map(|c| c.to_string())
                .collect();
            assert_eq!(
                flush,
                [
                    "ip -n mp-fabric route flush cache",
                    "ip -n mp-fabric -6 route flush cache"
                ]
            );
        }
        // DAD off before the first link, in every namespace of a dual lab too.
        let c: Vec<String> = topo()
            .with_family(IpFamily::Dual)
            .unwrap()
            .up_cmds()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let first_link = c.iter().position(|l| l.contains("link add")).unwrap();
        let last_dad = c.iter().rposition(|l| l.contains("accept_dad")).unwrap();
        assert!(last_dad < first_link);
    }

    #[test]
    fn the_dual_peers_file_states_both_families_and_they_place_every_pod() {
        use meshprobe_core::owners::{Owner, Role};
        for a in [Addressing::Subnet, Addressing::Blocks, Addressing::Vpc] {
            let t = Topology::new("mp", 4, 2)
                .unwrap()
                .with_addressing(a)
                .unwrap()
                .with_family(IpFamily::Dual)
                .unwrap();
            let v = peers_file(&t);
            let set = meshprobe_core::peers::parse(&v.to_string())
                .unwrap_or_else(|e| panic!("{a:?}: {e}"));
            let owners = set.owners();
            for n in t.all_nodes() {
                let i = usize::from(n.index - 1);
                let n6 = t.in_family(IpFamily::Ipv6).node(n.index);
                let p = &v["peers"][i];
                assert_eq!(p["node_ip"], n.node_ip.to_string(), "{a:?}");
                assert_eq!(
                    p["node_ips"],
                    serde_json::json!([n.node_ip.to_string(), n6.node_ip.to_string()])
                );
                assert_eq!(
                    p["pod_ips"],
                    serde_json::json!([n.probe_ip.to_string(), n6.probe_ip.to_string()])
                );
                assert_eq!(
                    v["targets"][i]["ips"],
                    serde_json::json!([n.web_ip.to_string(), n6.web_ip.to_string()])
                );
                // Each family's gateway: an IPv6 "net unreachable" from a gateway outside every
                // pod CIDR (blocks, vpc) is placed on the node only by this fact.
                assert_eq!(
                    p["pod_gateways"],
                    serde_json::json!([n.pod_gateway.to_string(), n6.pod_gateway.to_string()]),
                    "{a:?}"
                );
                let cidrs = p["pod_cidrs"].as_array().map_or(0, Vec::len);
                assert_eq!(cidrs, n.pod_cidrs.len() + n6.pod_cidrs.len(), "{a:?}");
                let pod = Owner::Node {
                    node: i,
                    role: Role::PodIp,
                };
                assert_eq!(owners.lookup(n.probe_ip), pod, "{a:?} {}", n.name);
                assert_eq!(owners.lookup(n6.probe_ip), pod, "{a:?} {}", n.name);
                assert_eq!(owners.target_node(&n.web_name), Some(i), "{a:?}");
            }
        }
        // A single-family file has no per-family lists (Kubernetes' shape: absent when one).
        let v = peers_file(&topo6());
        assert!(v["peers"][0].get("node_ips").is_none() && v["targets"][0].get("ips").is_none());
    }

    #[test]
    fn the_ipv6_peers_file_states_ipv6_facts_and_they_place_every_pod() {
        use meshprobe_core::owners::{Owner, Role};
        let t = topo6();
        let v = peers_file(&t);
        assert_eq!(v["peers"][1]["node_ip"], "fd00:198:18:2::12");
        assert_eq!(v["peers"][1]["pod_ip"], "fd00:198:19:2::10");
        assert_eq!(v["peers"][1]["pod_gateway"], "fd00:198:19:2::1");
        assert_eq!(v["peers"][1]["pod_cidrs"][0], "fd00:198:19:2::/64");
        assert_eq!(v["targets"][2]["ip"], "fd00:198:19:3::11");
        let set = meshprobe_core::peers::parse(&v.to_string()).unwrap();
        let owners = set.owners();
        for n in t.all_nodes() {
            let i = usize::from(n.index - 1);
            let pod = Owner::Node {
                node: i,
                role: Role::PodIp,
            };
            assert_eq!(owners.lookup(n.probe_ip), pod, "{}", n.name);
            assert_eq!(owners.target_node(&n.web_name), Some(i));
        }
    }

    #[test]
    fn ipv6_blocks_and_vpc_mirror_ipv4s() {
        let at = |a: Addressing| {
            topo()
                .with_addressing(a)
                .unwrap()
                .with_family(IpFamily::Ipv6)
                .unwrap()
        };
        let blocks = at(Addressing::Blocks);
        // (node, routes, probe pod, web pod): four nodes' blocks per fd00:198:19:K::/64.
        let table = [
            (
                1,
                "fd00:198:19::/122 fd00:198:19:1::/122",
                "fd00:198:19::10",
                "fd00:198:19:1::11",
            ),
            (
                2,
                "fd00:198:19::40/122 fd00:198:19:1::40/122",
                "fd00:198:19::50",
                "fd00:198:19:1::51",
            ),
            (
                4,
                "fd00:198:19::c0/122 fd00:198:19:1::c0/122",
                "fd00:198:19::d0",
                "fd00:198:19:1::d1",
            ),
        ];
        for (i, routes, probe, web) in table {
            let n = blocks.node(i);
            assert_eq!(n.pod_routes.join(" "), routes);
            assert_eq!(n.pod_cidrs, n.pod_routes);
            assert_eq!(
                (n.probe_ip.to_string(), n.web_ip.to_string()),
                (probe.into(), web.into())
            );
            assert_eq!(n.pod_gateway, IpAddr::V6(SHARED_GATEWAY_V6));
        }
        let c = blocks.up_cmds();
        for line in [
            "ip -n mp-n1 addr add fd00:198:19:ffff::1/128 dev cni0 nodad",
            "ip -n mp-n1 -6 route add fd00:198:19:1::/122 dev cni0",
            "ip -n mp-n1-web addr add fd00:198:19:1::11/128 dev eth0 nodad",
            "ip -n mp-n1-web -6 route add fd00:198:19:ffff::1 dev eth0",
            "ip -n mp-n1-web -6 route add default via fd00:198:19:ffff::1",
            "ip -n mp-n1 -6 route add fd00:198:19:1::80/122 via fd00:198:18:1::13",
            "ip -n mp-router -6 route add fd00:198:19:1::c0/122 via fd00:198:18:2::14",
        ] {
            assert!(has(&c, line), "blocks: missing {line}");
        }
        assert!(!c.iter().any(|x| x.to_string().contains("send_redirects")));
        let vpc = at(Addressing::Vpc);
        let (n3, n4) = (vpc.node(3), vpc.node(4));
        assert_eq!(n3.probe_ip.to_string(), "fd00:198:18:1::130");
        assert_eq!(n4.web_ip.to_string(), "fd00:198:18:2::131");
        assert!(n3.pod_cidrs.is_empty());
        let c = vpc.up_cmds();
        for line in [
            "ip -n mp-n1 -6 route add fd00:198:18:1::130/128 via fd00:198:18:1::13",
            "ip -n mp-n1 -6 route add fd00:198:18:2::131/128 via fd00:198:18:1::1",
            "ip -n mp-router -6 route add fd00:198:18:2::131/128 via fd00:198:18:2::14",
            "ip -n mp-n3 -6 route add fd00:198:18:1::131/128 dev cni0",
        ] {
            assert!(has(&c, line), "vpc: missing {line}");
        }
        // The largest labs: every address once, in fd00:198:18::/48 or fd00:198:19::/48.
        for t in [
            Topology::new("mp", MAX_NODES, MAX_ZONES)
                .unwrap()
                .with_addressing(Addressing::Blocks)
                .unwrap()
                .with_family(IpFamily::Ipv6)
                .unwrap(),
            Topology::new("mp", MAX_VPC_NODES, 1)
                .unwrap()
                .with_addressing(Addressing::Vpc)
                .unwrap()
                .with_family(IpFamily::Ipv6)
                .unwrap(),
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for n in t.all_nodes() {
                for ip in [n.node_ip, n.probe_ip, n.web_ip] {
                    let IpAddr::V6(v6) = ip else { panic!("{ip}") };
                    assert!(
                        v6.segments()[..2] == [0xfd00, 0x198]
                            && [0x18, 0x19].contains(&v6.segments()[2]),
                        "{ip}"
                    );
                    assert!(seen.insert(ip), "{:?}: {ip} twice", t.addressing);
                }
            }
        }
    }

    #[test]
    fn ipv6_peers_files_place_every_pod_in_every_layout() {
        use meshprobe_core::owners::{Owner, Role};
        for a in [Addressing::Subnet, Addressing::Blocks, Addressing::Vpc] {
            let t = Topology::new("mp", 8, 2)
                .unwrap()
                .with_addressing(a)
                .unwrap()
                .with_family(IpFamily::Ipv6)
                .unwrap();
            let set = meshprobe_core::peers::parse(&peers_file(&t).to_string())
                .unwrap_or_else(|e| panic!("{a:?}: {e}"));
            let owners = set.owners();
            for n in t.all_nodes() {
                let i = usize::from(n.index - 1);
                let want = Owner::Node {
                    node: i,
                    role: Role::PodIp,
                };
                assert_eq!(owners.lookup(n.probe_ip), want, "{a:?} {}", n.name);
                assert_eq!(owners.target_node(&n.web_name), Some(i), "{a:?}");
            }
            if a != Addressing::Subnet {
                assert_eq!(
                    owners.lookup(SHARED_GATEWAY_V6.into()),
                    Owner::SendersNode,
                    "{a:?}"
                );
            }
        }
    }
}
