//! Which node an address belongs to, from facts only (pure).
//!
//! The facts: each node's node IP, pod IP, pod gateway and pod CIDRs (the peers file's
//! `pod_cidrs`, Kubernetes' `Node.spec.podCIDRs`), and each target's IP and node (the peers
//! file's `node`, the pod's `spec.nodeName`). The lookup is: an exact address (node IP, pod IP,
//! pod gateway, target IP) → the longest known pod CIDR holding the address → unknown.
//! Nothing is guessed from the shape of an address: real clusters hand out /26 blocks (several
//! per node, one /24 shared by four nodes), per-pod /32s from a shared VPC range, or ranges of
//! any size, so "the /24 around a node's pod IP" names the wrong node as often as the right one.
//! Unknown is an answer of its own: callers name the address instead of a node.
//!
//! Every address is canonicalised (`::ffff:a.b.c.d` is `a.b.c.d`) before it is judged.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::net::Cidr;

/// What is known about one node's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddrs {
    pub name: String,
    pub node_ip: Option<IpAddr>,
    pub pod_ip: Option<IpAddr>,
    /// Every family's node address (dual-stack: `node_ip` and the other family's), when known.
    pub node_ips: Vec<IpAddr>,
    /// Every family's pod address, when known.
    pub pod_ips: Vec<IpAddr>,
    pub pod_gateway: Option<IpAddr>,
    /// Every family's pod gateway, when known.
    pub pod_gateways: Vec<IpAddr>,
    pub pod_cidrs: Vec<Cidr>,
}

/// What is known about one target's address and place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetAddrs {
    pub name: String,
    pub ip: Option<IpAddr>,
    /// Every family's address of the target pod, when known.
    pub ips: Vec<IpAddr>,
    /// The node its pod runs on, when a fact says so.
    pub node: Option<String>,
}

/// Which part of a node an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    NodeIp,
    PodIp,
    PodGateway,
    /// A target pod's address on that node.
    TargetIp,
    /// Inside one of the node's pod CIDRs.
    PodCidr,
}

impl Role {
    pub fn describe(self) -> &'static str {
        match self {
            Role::NodeIp => "node IP",
            Role::PodIp => "pod IP",
            Role::PodGateway => "pod gateway",
            Role::TargetIp => "target pod IP",
            Role::PodCidr => "pod CIDR",
        }
    }
}

/// The answer of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A node (its index in the map's node list) and as what.
    Node { node: usize, role: Role },
    /// A pod gateway every node uses (Calico's 169.254.1.1): the sender's own node, whoever
    /// that is — never a node found by the address.
    SendersNode,
    /// No fact names an owner (or two facts disagree).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    One(usize, Role),
    SharedGateway,
    /// Two nodes claim the address as something else than a gateway: no owner is named.
    Ambiguous,
}

/// The ownership map: built once from facts, asked per address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerMap {
    names: Vec<String>,
    exact: HashMap<IpAddr, Claim>,
    /// Longest prefix first; a CIDR two nodes both claim is left out (ambiguous).
    cidrs: Vec<(Cidr, usize)>,
    pod_cidrs: Vec<Vec<Cidr>>,
    targets: Vec<(String, Option<usize>)>,
}

impl OwnerMap {
    /// The map of `nodes` and `targets`. Lenient: facts from several agents may disagree, and
    /// a disagreement leaves the address unknown rather than picking a side. A target's node
    /// that is not among `nodes` is unknown.
    pub fn new(nodes: &[NodeAddrs], targets: &[TargetAddrs]) -> OwnerMap {
        let mut m = OwnerMap {
            names: nodes.iter().map(|n| n.name.clone()).collect(),
            pod_cidrs: nodes.iter().map(|n| n.pod_cidrs.clone()).collect(),
            ..OwnerMap::default()
        };
        for (i, n) in nodes.iter().enumerate() {
            for (ip, role) in [
                (n.node_ip, Role::NodeIp),
                (n.pod_ip, Role::PodIp),
                (n.pod_gateway, Role::PodGateway),
            ] {
                if let Some(ip) = ip {
                    m.claim(ip, i, role);
                }
            }
            for &ip in &n.node_ips {
                m.claim(ip, i, Role::NodeIp);
            }
            for &ip in &n.pod_ips {
                m.claim(ip, i, Role::PodIp);
            }
            for &ip in &n.pod_gateways {
                m.claim(ip, i, Role::PodGateway);
            }
        }
        let mut by_cidr: HashMap<(IpAddr, u8), Option<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for c in &n.pod_cidrs {
                let e = by_cidr.entry((c.addr, c.len)).or_insert(Some(i));
                if *e != Some(i) {
                    *e = None;
                }
            }
        }
        m.cidrs = by_cidr
            .into_iter()
            .filter_map(|((addr, len), n)| n.map(|n| (Cidr { addr, len }, n)))
            .collect();
        // Longest first; ties in a fixed order so every agent answers alike.
        m.cidrs
            .sort_by(|a, b| b.0.len.cmp(&a.0.len).then(a.0.addr.cmp(&b.0.addr)));
        for t in targets {
            let named = t
                .node
                .as_deref()
                .and_then(|n| m.names.iter().position(|x| x == n));
            // A target's IP is its node's only when a fact names that node; otherwise the
            // node IP / pod IP / pod CIDR facts place it (or nothing does).
            let node = named.or_else(|| match t.ip.map(|ip| m.lookup(ip)) {
                Some(Owner::Node { node, .. }) => Some(node),
                _ => None,
            });
            if let Some(n) = named {
                for ip in t.ip.iter().chain(&t.ips) {
                    m.claim(*ip, n, Role::TargetIp);
                }
            }
            m.targets.push((t.name.clone(), node));
        }
        m
    }

    fn claim(&mut self, ip: IpAddr, node: usize, role: Role) {
        let ip = ip.to_canonical();
        let new = Claim::One(node, role);
        let merged = match self.exact.get(&ip) {
            None => new,
            // The same node claiming again: the first role stays (node IP before pod IP).
            Some(&Claim::One(n, r)) if n == node => Claim::One(n, r),
            Some(&Claim::One(_, Role::PodGateway)) | Some(&Claim::SharedGateway)
                if role == Role::PodGateway =>
            {
                Claim::SharedGateway
            }
            Some(_) => Claim::Ambiguous,
        };
        self.exact.insert(ip, merged);
    }

    /// Who `ip` belongs to: exact address → longest known pod CIDR → unknown.
    pub fn lookup(&self, ip: IpAddr) -> Owner {
        let ip = ip.to_canonical();
        match self.exact.get(&ip) {
            Some(Claim::One(node, role)) => {
                return Owner::Node {
                    node: *node,
                    role: *role,
                }
            }
            Some(Claim::SharedGateway) => return Owner::SendersNode,
            Some(Claim::Ambiguous) => return Owner::Unknown,
            None => {}
        }
        self.cidrs
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map_or(Owner::Unknown, |&(_, node)| Owner::Node {
                node,
                role: Role::PodCidr,
            })
    }

    /// The node that sent something from `ip`, as seen by `sender` (the node whose probe drew
    /// the answer): a shared pod gateway is the sender's own node.
    pub fn lookup_from(&self, ip: IpAddr, sender: usize) -> Option<(usize, Role)> {
        match self.lookup(ip) {
            Owner::Node { node, role } => Some((node, role)),
            Owner::SendersNode => Some((sender, Role::PodGateway)),
            Owner::Unknown => None,
        }
    }

    /// The node of the target named `name`: the fact naming it, else its IP's owner (exact
    /// node/pod IP or pod CIDR); `None` when unknown.
    pub fn target_node(&self, name: &str) -> Option<usize> {
        self.targets
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, node)| *node)
    }

    /// The node names, in the order given.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A node's known pod CIDRs (empty when none is known).
    pub fn pod_cidrs(&self, node: usize) -> &[Cidr] {
        self.pod_cidrs.get(node).map_or(&[], Vec::as_slice)
    }

    /// Every known pod CIDR, each once (the on-demand default allow-list's part).
    pub fn all_pod_cidrs(&self) -> Vec<Cidr> {
        let mut out: Vec<Cidr> = Vec::new();
        for c in self.pod_cidrs.iter().flatten() {
            if !out.contains(c) {
                out.push(*c);
            }
        }
        out
    }
}

/// Check facts a user wrote (the peers file): every pod CIDR holds its node's pod IP when the
/// family matches, no two nodes' CIDRs overlap, every target's node exists and its IP is not
/// inside another node's pod CIDR. The error names the entry and field (`peers[2].pod_cidrs[1]`).
/// Overlap is refused rather than resolved: a file is one author's statement, and two nodes
/// owning one address is a typo, not a layout.
pub fn validate(nodes: &[NodeAddrs], targets: &[TargetAddrs]) -> Result<(), String> {
    let mut seen: Vec<(Cidr, usize, usize)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for (j, c) in n.pod_cidrs.iter().enumerate() {
            let at = format!("peers[{i}].pod_cidrs[{j}] {c}");
            for &(o, oi, oj) in &seen {
                if oi != i && (c.inside(&o) || o.inside(c)) {
                    return Err(format!(
                        "{at}: overlaps peers[{oi}].pod_cidrs[{oj}] {o} of node {:?}",
                        nodes[oi].name
                    ));
                }
            }
            seen.push((*c, i, j));
        }
        for ip in n
            .pod_ip
            .iter()
            .chain(&n.pod_ips)
            .map(|ip| ip.to_canonical())
        {
            let same: Vec<&Cidr> = n
                .pod_cidrs
                .iter()
                .filter(|c| c.addr.is_ipv4() == ip.is_ipv4())
                .collect();
            if !same.is_empty() && !same.iter().any(|c| c.contains(ip)) {
                return Err(format!(
                    "peers[{i}].pod_cidrs: none holds the node's pod_ip {ip}"
                ));
            }
        }
    }
    let map = OwnerMap::new(nodes, &[]);
    for (i, t) in targets.iter().enumerate() {
        let Some(name) = t.node.as_deref() else {
            continue;
        };
        let Some(n) = nodes.iter().position(|x| x.name == name) else {
            return Err(format!(
                "targets[{i}].node {name:?}: no peer has this node name"
            ));
        };
        if let Some(ip) = t.ip {
            if let Owner::Node { node, role } = map.lookup(ip) {
                if node != n && role == Role::PodCidr {
                    return Err(format!(
                        "targets[{i}].node {name:?}: ip {} is in a pod CIDR of node {:?}",
                        ip.to_canonical(),
                        nodes[node].name
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn node(name: &str, node_ip: &str, pod_ip: &str, cidrs: &[&str]) -> NodeAddrs {
        NodeAddrs {
            name: name.into(),
            node_ip: Some(ip(node_ip)),
            pod_ip: Some(ip(pod_ip)),
            pod_gateway: None,
            pod_cidrs: cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
            ..NodeAddrs::default()
        }
    }

    fn target(name: &str, addr: &str, node: Option<&str>) -> TargetAddrs {
        TargetAddrs {
            name: name.into(),
            ip: Some(ip(addr)),
            node: node.map(String::from),
            ..TargetAddrs::default()
        }
    }

    /// The answer as text: `node-name role`, `senders-node` or `unknown`.
    fn say(m: &OwnerMap, addr: &str) -> String {
        match m.lookup(ip(addr)) {
            Owner::Node { node, role } => format!("{} {}", m.names()[node], role.describe()),
            Owner::SendersNode => "senders-node".into(),
            Owner::Unknown => "unknown".into(),
        }
    }

    #[test]
    fn lookups_follow_exact_then_longest_cidr_then_unknown() {
        // Calico-like blocks: /26s of three nodes packed into 198.19.0.0/24, a /28 of node c
        // carved out of node a's /25 range (longest wins), an IPv6 /80 per node.
        let mut a = node("a", "198.18.0.11", "198.19.0.10", &["198.19.0.0/26"]);
        a.pod_cidrs.push(Cidr::parse("198.19.0.128/26").unwrap());
        a.pod_cidrs.push(Cidr::parse("198.19.2.0/24").unwrap());
        a.pod_cidrs.push(Cidr::parse("2001:db8:0:1::/80").unwrap());
        let b = node("b", "198.18.0.12", "198.19.0.70", &["198.19.0.64/26"]);
        let c = node(
            "c",
            "198.18.0.13",
            "198.19.0.200",
            &["198.19.0.192/26", "198.19.2.16/28"],
        );
        // d: facts without pod CIDRs (peers file without them): only its exact addresses.
        let d = node("d", "198.18.0.14", "198.19.9.10", &[]);
        let nodes = [a, b, c, d];
        let targets = [
            target("web-b", "198.19.0.71", Some("b")),
            // Placed by a fact that contradicts no CIDR: node d owns it exactly.
            target("db-d", "198.19.9.11", Some("d")),
            target("free", "198.19.9.12", None),
        ];
        let m = OwnerMap::new(&nodes, &targets);
        let table: &[(&str, &str)] = &[
            ("198.18.0.12", "b node IP"),
            ("198.19.0.70", "b pod IP"),
            ("::ffff:198.19.0.70", "b pod IP"),
            ("198.19.0.71", "b target pod IP"),
            ("198.19.0.72", "b pod CIDR"),
            ("198.19.0.1", "a pod CIDR"),
            ("198.19.0.130", "a pod CIDR"),
            ("198.19.0.201", "c pod CIDR"),
            // One /24 holds three nodes' blocks: the /24 guess would say "a" for all.
            ("198.19.0.65", "b pod CIDR"),
            ("198.19.2.17", "c pod CIDR"),
            ("198.19.2.33", "a pod CIDR"),
            ("2001:db8:0:1::5", "a pod CIDR"),
            ("2001:db8:0:2::5", "unknown"),
            ("198.19.9.11", "d target pod IP"),
            // Next to d's pod IP but no fact: unknown, not "d's /24".
            ("198.19.9.12", "unknown"),
            ("198.19.9.99", "unknown"),
            ("203.0.113.1", "unknown"),
        ];
        for (addr, want) in table {
            assert_eq!(say(&m, addr), *want, "{addr}");
        }
        let tn = |t: &str| m.target_node(t).map(|n| m.names()[n].clone());
        assert_eq!(tn("web-b").as_deref(), Some("b"));
        assert_eq!(tn("db-d").as_deref(), Some("d"));
        assert_eq!(tn("free"), None);
        assert_eq!(tn("nonesuch"), None);
        assert_eq!(m.pod_cidrs(1), &[Cidr::parse("198.19.0.64/26").unwrap()]);
        assert_eq!(m.all_pod_cidrs().len(), 7);
    }

    #[test]
    fn targets_without_a_node_are_placed_by_cidr_or_stay_unknown() {
        let nodes = [
            node("a", "10.0.0.1", "10.1.0.10", &["10.1.0.0/26"]),
            node("b", "10.0.0.2", "10.1.0.70", &["10.1.0.64/26"]),
            node("v", "10.0.0.3", "10.0.0.50", &[]),
        ];
        let targets = [
            target("in-b", "10.1.0.99", None),
            // VPC-style: a pod address from the node subnet, no fact: unknown.
            target("vpc", "10.0.0.77", None),
            // Naming a node that is not in the map: unknown, and not claimed.
            target("ghost", "10.0.0.78", Some("zz")),
            target("host-net", "10.0.0.2", None),
        ];
        let m = OwnerMap::new(&nodes, &targets);
        let tn = |t: &str| m.target_node(t).map(|n| m.names()[n].as_str());
        assert_eq!(tn("in-b"), Some("b"));
        assert_eq!(tn("vpc"), None);
        assert_eq!(tn("ghost"), None);
        assert_eq!(tn("host-net"), Some("b"));
        assert_eq!(m.lookup(ip("10.0.0.78")), Owner::Unknown);
    }

    #[test]
    fn shared_gateways_are_the_senders_node_and_conflicts_are_unknown() {
        let mut nodes = vec![
            node("a", "10.0.0.1", "10.1.0.10", &["10.1.0.0/24"]),
            node("b", "10.0.0.2", "10.1.1.10", &["10.1.1.0/24"]),
            node("c", "10.0.0.3", "10.1.2.10", &["10.1.0.0/24"]),
        ];
        for n in &mut nodes {
            n.pod_gateway = Some(ip("169.254.1.1"));
        }
        // Two nodes claim one pod IP (stale facts): neither is named.
        nodes[1].pod_ip = Some(ip("10.1.2.10"));
        let m = OwnerMap::new(&nodes, &[]);
        assert_eq!(m.lookup(ip("169.254.1.1")), Owner::SendersNode);
        assert_eq!(
            m.lookup_from(ip("169.254.1.1"), 2),
            Some((2, Role::PodGateway))
        );
        assert_eq!(m.lookup(ip("10.1.2.10")), Owner::Unknown);
        assert_eq!(m.lookup_from(ip("10.1.2.10"), 0), None);
        // The same /24 claimed by a and c: ambiguous, unknown — not "first node wins".
        assert_eq!(m.lookup(ip("10.1.0.99")), Owner::Unknown);
        assert_eq!(
            m.lookup(ip("10.1.1.99")),
            Owner::Node {
                node: 1,
                role: Role::PodCidr
            }
        );
        // One node's own gateway (not shared) is that node's, whoever sent.
        let mut one = nodes[..1].to_vec();
        one[0].pod_gateway = Some(ip("10.1.0.1"));
        let m = OwnerMap::new(&one, &[]);
        assert_eq!(
            m.lookup_from(ip("10.1.0.1"), 7),
            Some((0, Role::PodGateway))
        );
    }

    #[test]
    fn validation_names_the_entry_and_field() {
        let ok = [
            node(
                "a",
                "10.0.0.1",
                "10.1.0.10",
                &["10.1.0.0/26", "10.1.0.128/26", "fd00:1::/64"],
            ),
            node("b", "10.0.0.2", "10.1.0.70", &["10.1.0.64/26"]),
            node("c", "10.0.0.3", "10.0.0.3", &[]),
        ];
        assert_eq!(
            validate(&ok, &[target("t", "10.1.0.71", Some("b"))]),
            Ok(())
        );
        // (nodes, targets, expected error fragment)
        let overlap = [
            ok[0].clone(),
            node(
                "b",
                "10.0.0.2",
                "10.1.0.70",
                &["10.1.0.64/26", "10.1.0.0/24"],
            ),
        ];
        let v6_overlap = [
            ok[0].clone(),
            node(
                "b",
                "10.0.0.2",
                "10.1.0.70",
                &["10.1.0.64/26", "fd00:1::8:0/112"],
            ),
        ];
        let outside = [node("a", "10.0.0.1", "10.2.0.10", &["10.1.0.0/26"])];
        let table: Vec<(&[NodeAddrs], Vec<TargetAddrs>, &str)> = vec![
            (
                &overlap,
                vec![],
                "peers[1].pod_cidrs[1] 10.1.0.0/24: overlaps peers[0].pod_cidrs[0] 10.1.0.0/26 of node \"a\"",
            ),
            (&v6_overlap, vec![], "peers[1].pod_cidrs[1] fd00:1::8:0/112: overlaps peers[0].pod_cidrs[2]"),
            (&outside, vec![], "peers[0].pod_cidrs: none holds the node's pod_ip 10.2.0.10"),
            (&ok, vec![target("t", "10.1.0.71", Some("x"))], "targets[0].node \"x\": no peer"),
            (
                &ok,
                vec![target("t", "10.1.0.71", Some("b")), target("u", "10.1.0.72", Some("a"))],
                "targets[1].node \"a\": ip 10.1.0.72 is in a pod CIDR of node \"b\"",
            ),
        ];
        for (nodes, targets, want) in table {
            let err = validate(nodes, &targets).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
