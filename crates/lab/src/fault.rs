//! Faults: parsing `KIND ARGS…`, and the commands that apply and undo each one (pure).

use std::fmt;

use super::plan::services::DNS_PORT;
use super::plan::{Addressing, Cmd, IpFamily, Topology, NFT_PREFIX, WEB_PORT};

mod cmds;

pub const DEFAULT_MTU: u32 = 1400;
pub const BASE_MTU: u32 = 1500;
/// The lowest MTU an `mtu` fault may set: IPv4's 576 (every host must accept it).
pub const MIN_MTU_V4: u32 = 576;
/// In an IPv6 lab: IPv6's minimum link MTU. Below it the kernel removes the link's IPv6
/// addresses (the node would be cut off, not given a small MTU), so it is refused, not adapted.
pub const MIN_MTU_V6: u32 = 1280;

/// Every fault kind, with its argument synopsis and what it does (for help and errors).
pub const KINDS: &[(&str, &str, &str)] = &[
    (
        "route",
        "NODE-A NODE-B",
        "delete node A's routes to node B's pods (its pod subnet, blocks or pod /32s)",
    ),
    (
        "mtu",
        "NODE [MTU=1400]",
        "lower the node's underlay MTU (pods keep 1500; IPv6: 1280 at least)",
    ),
    (
        "pmtu-blackhole",
        "NODE [MTU=1400]",
        "lower the underlay MTU and drop ICMP fragmentation-needed (IPv6: packet-too-big)",
    ),
    (
        "policy",
        "NODE|web-node-N [PORT=8080]",
        "drop TCP to the node's target pod port (a NetworkPolicy)",
    ),
    (
        "reject",
        "NODE|web-node-N [PORT=8080]",
        "answer TCP to the target pod port with a reset",
    ),
    (
        "loss",
        "NODE PERCENT",
        "drop PERCENT% of the node's underlay packets each way",
    ),
    (
        "cni",
        "NODE",
        "break pod networking on the node (the node stays up)",
    ),
    ("node-down", "NODE", "cut the node off the underlay"),
    (
        "partition",
        "ZONE-A ZONE-B",
        "block traffic between two zones at the router",
    ),
    (
        "kube-proxy",
        "NODE [stale]",
        "the node's Service rules gone; stale (or --stale): its agents VIP left on pods that are gone",
    ),
    (
        "dns-down",
        "",
        "the DNS pod stops answering (its port 53 dropped)",
    ),
    (
        "dns-from",
        "NODE",
        "drop DNS traffic (port 53) from the node's pods",
    ),
    (
        "conntrack",
        "NODE",
        "the node's conntrack table full: new flows dropped, established ones pass",
    ),
    (
        "apiserver-from",
        "NODE",
        "drop the node's pods' traffic to the API server (its endpoint, port 6443; so its ClusterIP too)",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Route { from: u16, to: u16 },
    Mtu { node: u16, mtu: u32 },
    PmtuBlackhole { node: u16, mtu: u32 },
    Policy { node: u16, port: u16 },
    Reject { node: u16, port: u16 },
    Loss { node: u16, percent: u8 },
    Cni { node: u16 },
    NodeDown { node: u16 },
    Partition { a: u16, b: u16 },
    KubeProxy { node: u16, stale: bool },
    DnsDown,
    DnsFrom { node: u16 },
    Conntrack { node: u16 },
    ApiserverFrom { node: u16 },
}

fn usage(kind: &str) -> String {
    match KINDS.iter().find(|(k, _, _)| *k == kind) {
        Some((k, args, _)) => format!("usage: meshprobe lab fault {k} {args}")
            .trim_end()
            .to_string(),
        None => format!(
            "unknown fault kind {kind:?}: expected one of {}",
            KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl Fault {
    /// Parse `KIND ARGS…` against a topology.
    pub fn parse(topo: &Topology, kind: &str, args: &[String]) -> Result<Fault, String> {
        let u = || usage(kind);
        let arity = |min: usize, max: usize| {
            if args.len() < min || args.len() > max {
                Err(u())
            } else {
                Ok(())
            }
        };
        let node = |i: usize| topo.parse_node(&args[i]);
        let target_node = |i: usize| {
            let s = args[i].strip_prefix("web-").unwrap_or(&args[i]);
            topo.parse_node(s)
        };
        let min_mtu = match topo.family {
            IpFamily::Ipv4 => MIN_MTU_V4,
            IpFamily::Ipv6 | IpFamily::Dual => MIN_MTU_V6,
        };
        let mtu = |i: usize| match args.get(i) {
            None => Ok(DEFAULT_MTU),
            Some(s) => match s.parse::<u32>() {
                Ok(m) if (min_mtu..BASE_MTU).contains(&m) => Ok(m),
                _ if min_mtu == MIN_MTU_V6 => Err(format!(
                    "MTU {s:?}: expected {min_mtu} to {} (IPv6's minimum link MTU is {min_mtu}: \
                     below it the node's IPv6 addresses would go)",
                    BASE_MTU - 1
                )),
                _ => Err(format!("MTU {s:?}: expected {min_mtu} to {}", BASE_MTU - 1)),
            },
        };
        let port = |i: usize| match args.get(i) {
            None => Ok(WEB_PORT),
            Some(s) => s
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {s:?}: expected 1 to 65535")),
        };
        let fault = match kind {
            "route" => {
                arity(2, 2)?;
                let (from, to) = (node(0)?, node(1)?);
                if from == to {
                    return Err("route: the two nodes must differ".into());
                }
                Fault::Route { from, to }
            }
            "mtu" => {
                arity(1, 2)?;
                Fault::Mtu {
                    node: node(0)?,
                    mtu: mtu(1)?,
                }
            }
            "pmtu-blackhole" => {
                arity(1, 2)?;
                Fault::PmtuBlackhole {
                    node: node(0)?,
                    mtu: mtu(1)?,
                }
            }
            "policy" => {
                arity(1, 2)?;
                Fault::Policy {
                    node: target_node(0)?,
                    port: port(1)?,
                }
            }
            "reject" => {
                arity(1, 2)?;
                Fault::Reject {
                    node: target_node(0)?,
                    port: port(1)?,
                }
            }
            "loss" => {
                arity(2, 2)?;
                let s = args[1].trim_end_matches('%');
                let percent = match s.parse::<u8>() {
                    Ok(p) if (1..=100).contains(&p) => p,
                    _ => return Err(format!("loss percent {:?}: expected 1 to 100", args[1])),
                };
                Fault::Loss {
                    node: node(0)?,
                    percent,
                }
            }
            "cni" => {
                arity(1, 1)?;
                Fault::Cni { node: node(0)? }
            }
            "node-down" => {
                arity(1, 1)?;
                Fault::NodeDown { node: node(0)? }
            }
            "partition" => {
                arity(2, 2)?;
                let (a, b) = (topo.parse_zone(&args[0])?, topo.parse_zone(&args[1])?);
                if a == b {
                    return Err("partition: the two zones must differ".into());
                }
                Fault::Partition {
                    a: a.min(b),
                    b: a.max(b),
                }
            }
            "kube-proxy" => {
                arity(1, 2)?;
                let stale = match args.get(1).map(String::as_str) {
                    None => false,
                    Some("stale") => true,
                    Some(other) => {
                        return Err(format!(
                        "kube-proxy: {other:?} after the node: expected `stale` or nothing ({})",
                        u()
                    ))
                    }
                };
                Fault::KubeProxy {
                    node: node(0)?,
                    stale,
                }
            }
            "dns-down" => {
                arity(0, 0)?;
                Fault::DnsDown
            }
            "dns-from" => {
                arity(1, 1)?;
                Fault::DnsFrom { node: node(0)? }
            }
            "apiserver-from" => {
                arity(1, 1)?;
                Fault::ApiserverFrom { node: node(0)? }
            }
            "conntrack" => {
                arity(1, 1)?;
                Fault::Conntrack { node: node(0)? }
            }
            _ => return Err(u()),
        };
        Ok(fault)
    }

    /// The canonical `KIND ARGS…` words (what the state file records; parses back to `self`).
    pub fn words(&self) -> Vec<String> {
        let n = |i: &u16| format!("node-{i}");
        let z = |i: &u16| super::plan::zone_name(*i);
        match self {
            Fault::Route { from, to } => vec!["route".into(), n(from), n(to)],
            Fault::Mtu { node, mtu } => vec!["mtu".into(), n(node), mtu.to_string()],
            Fault::PmtuBlackhole { node, mtu } => {
                vec!["pmtu-blackhole".into(), n(node), mtu.to_string()]
            }
            Fault::Policy { node, port } => {
                vec![
                    "policy".into(),
                    format!("web-node-{node}"),
                    port.to_string(),
                ]
            }
            Fault::Reject { node, port } => {
                vec![
                    "reject".into(),
                    format!("web-node-{node}"),
                    port.to_string(),
                ]
            }
            Fault::Loss { node, percent } => vec!["loss".into(), n(node), percent.to_string()],
            Fault::Cni { node } => vec!["cni".into(), n(node)],
            Fault::NodeDown { node } => vec!["node-down".into(), n(node)],
            Fault::Partition { a, b } => vec!["partition".into(), z(a), z(b)],
            Fault::KubeProxy { node, stale } => {
                let mut w = vec!["kube-proxy".into(), n(node)];
                if *stale {
                    w.push("stale".into());
                }
                w
            }
            Fault::DnsDown => vec!["dns-down".into()],
            Fault::DnsFrom { node } => vec!["dns-from".into(), n(node)],
            Fault::Conntrack { node } => vec!["conntrack".into(), n(node)],
            Fault::ApiserverFrom { node } => vec!["apiserver-from".into(), n(node)],
        }
    }

    /// What the fault occupies: two faults with the same slot cannot be active together
    /// (they would fight over the same route, MTU or nftables table).
    pub fn slot(&self) -> String {
        match self {
            Fault::Route { from, to } => format!("route {from} {to}"),
            Fault::Mtu { node, .. } | Fault::PmtuBlackhole { node, .. } => format!("mtu {node}"),
            Fault::Policy { node, .. } | Fault::Reject { node, .. } => format!("policy {node}"),
            Fault::Loss { node, .. } => format!("loss {node}"),
            Fault::Cni { node } => format!("cni {node}"),
            Fault::NodeDown { node } => format!("node-down {node}"),
            Fault::Partition { a, b } => format!("partition {a} {b}"),
            Fault::KubeProxy { node, .. } => format!("kube-proxy {node}"),
            Fault::DnsDown => "dns-down".into(),
            Fault::DnsFrom { node } => format!("dns-from {node}"),
            Fault::Conntrack { node } => format!("conntrack {node}"),
            Fault::ApiserverFrom { node } => format!("apiserver-from {node}"),
        }
    }
}

/// What `--family` says about each kind, for help and errors: the kinds that take it, and why
/// the others refuse it.
pub const FAMILY_KINDS: &str = "route, cni, pmtu-blackhole, policy, reject, loss, partition, \
     kube-proxy, dns-down, dns-from, conntrack, apiserver-from (not mtu or node-down)";

/// A fault as the lab applies and records it: the fault, and the one family it is confined to
/// (`lab fault … --family`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scoped {
    pub fault: Fault,
    /// `Some`: only this family's routes, rules or packets, in a dual-stack lab. `None`: every
    /// family of the lab (a single-family lab's faults are always `None`: the flag naming its
    /// own family is the whole lab).
    pub family: Option<IpFamily>,
}

impl Scoped {
    /// Parse `KIND ARGS… [--family FAMILY]` against a topology: the fault's own errors first,
    /// then the flag's, each naming the flag and the fault.
    pub fn parse(
        topo: &Topology,
        kind: &str,
        args: &[String],
        family: Option<&str>,
    ) -> Result<Scoped, String> {
        let fault = Fault::parse(topo, kind, args)?;
        let Some(s) = family else {
            return Ok(Scoped {
                fault,
                family: None,
            });
        };
        let flag = format!("--family {s} on `fault {kind}`");
        let fam = match s {
            "ipv4" => IpFamily::Ipv4,
            "ipv6" => IpFamily::Ipv6,
            _ => {
                return Err(format!(
                    "--family {s:?} on `fault {kind}`: expected ipv4 or ipv6 (without --family \
                     the fault acts on every family of the lab)"
                ))
            }
        };
        // A link is both families': its MTU is one number (IPv6's own send MTU per interface
        // would leave what the link takes in, the inbound black hole, both families'), and down
        // is down for both.
        match fault {
            Fault::Mtu { .. } => {
                return Err(format!(
                    "{flag}: a link's MTU is one for both families, so it cannot be lowered \
                     for one; `pmtu-blackhole NODE --family {s}` lowers it and drops only \
                     {s}'s path-MTU signal (--family takes {FAMILY_KINDS})"
                ))
            }
            Fault::NodeDown { .. } => {
                return Err(format!(
                    "{flag}: a node cut off the underlay (its link down) is cut off in both \
                     families; `partition` or `loss … --family {s}` act on one \
                     (--family takes {FAMILY_KINDS})"
                ))
            }
            _ => {}
        }
        let family = match topo.family {
            IpFamily::Dual => Some(fam),
            own if own == fam => None,
            own => {
                return Err(format!(
                    "{flag}: this lab is {own}-only (`lab up --ip-family {own}`); --family \
                     picks one family of a dual-stack lab (`--ip-family dual`)",
                    own = own.as_str()
                ))
            }
        };
        Ok(Scoped { fault, family })
    }

    /// Parse the words the state file records ([`Scoped::words`]).
    pub fn from_words(topo: &Topology, words: &[String]) -> Result<Scoped, String> {
        match words {
            [] => Err("an empty fault".into()),
            [kind, args @ .., flag, fam] if flag == "--family" => {
                Scoped::parse(topo, kind, args, Some(fam))
            }
            [kind, args @ ..] => Scoped::parse(topo, kind, args, None),
        }
    }

    /// The canonical `KIND ARGS… [--family FAMILY]` words: what the state file records and
    /// `clear` takes; a fault on every family is the fault's own words, as before the flag.
    pub fn words(&self) -> Vec<String> {
        let mut w = self.fault.words();
        if let Some(f) = self.family {
            w.extend(["--family".to_string(), f.as_str().to_string()]);
        }
        w
    }

    /// Whether two faults cannot be active together. The rule: the same slot (the same route,
    /// link or table's place), unless each is confined to a different family and what it
    /// changes is that family's alone (routes, a per-family table). The MTU pair always
    /// overlaps: a link's MTU is both families', and clearing one would reset the other's.
    pub fn overlaps(&self, other: &Scoped) -> bool {
        let whole = |s: &Scoped| {
            s.family.is_none() || matches!(s.fault, Fault::Mtu { .. } | Fault::PmtuBlackhole { .. })
        };
        self.fault.slot() == other.fault.slot()
            && (whole(self) || whole(other) || self.family == other.family)
    }

    /// Whether `lab clear` naming `self` clears the active `active`: the same slot, and, when a
    /// family is named, that family's fault only (a fault on both families is cleared whole,
    /// by naming it without --family).
    pub fn names(&self, active: &Scoped) -> bool {
        self.fault.slot() == active.fault.slot()
            && (self.family.is_none() || self.family == active.family)
    }
}

impl fmt::Display for Scoped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words().join(" "))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn topo() -> Topology {
        Topology::new("mp", 4, 2).unwrap()
    }

    fn parse(line: &str) -> Result<Fault, String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        Fault::parse(&topo(), &words[0], &words[1..])
    }

    fn lines(cmds: Vec<Cmd>) -> Vec<String> {
        cmds.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn apply_and_clear_commands() {
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "route node-1 node-3",
                &["ip -n mp-n1 route del 198.19.3.0/24"],
                &["ip -n mp-n1 route replace 198.19.3.0/24 via 198.18.1.13"],
            ),
            (
                "route n1 n2",
                &["ip -n mp-n1 route del 198.19.2.0/24"],
                &["ip -n mp-n1 route replace 198.19.2.0/24 via 198.18.1.1"],
            ),
            (
                "mtu node-2",
                &["ip -n mp-n2 link set eth0 mtu 1400"],
                &["ip -n mp-n2 link set eth0 mtu 1500"],
            ),
            (
                "mtu node-2 1280",
                &["ip -n mp-n2 link set eth0 mtu 1280"],
                &["ip -n mp-n2 link set eth0 mtu 1500"],
            ),
            (
                "node-down node-4",
                &["ip -n mp-fabric link set n4 down"],
                &["ip -n mp-fabric link set n4 up"],
            ),
            (
                "loss node-1 30",
                &["ip netns exec mp-n1 nft 'add table netdev mplab_loss; add chain netdev mplab_loss rx { type filter hook ingress device \"eth0\" priority 0 ; } ; add chain netdev mplab_loss tx { type filter hook egress device \"eth0\" priority 0 ; } ; add rule netdev mplab_loss rx numgen random mod 100 < 30 counter drop; add rule netdev mplab_loss tx numgen random mod 100 < 30 counter drop'"],
                &["ip netns exec mp-n1 nft delete table netdev mplab_loss"],
            ),
            (
                "loss node-1 100",
                &["ip netns exec mp-n1 nft 'add table netdev mplab_loss; add chain netdev mplab_loss rx { type filter hook ingress device \"eth0\" priority 0 ; } ; add chain netdev mplab_loss tx { type filter hook egress device \"eth0\" priority 0 ; } ; add rule netdev mplab_loss rx counter drop; add rule netdev mplab_loss tx counter drop'"],
                &["ip netns exec mp-n1 nft delete table netdev mplab_loss"],
            ),
            (
                "partition zone-b zone-a",
                &["ip netns exec mp-router nft 'add table inet mplab_partition_1_2; add chain inet mplab_partition_1_2 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_partition_1_2 forward iifname \"z1\" oifname \"z2\" drop; add rule inet mplab_partition_1_2 forward iifname \"z2\" oifname \"z1\" drop'"],
                &["ip netns exec mp-router nft delete table inet mplab_partition_1_2"],
            ),
            (
                "policy web-node-2",
                &["ip netns exec mp-n2-web nft 'add table inet mplab_policy; add chain inet mplab_policy input { type filter hook input priority 0 ; } ; add rule inet mplab_policy input tcp dport 8080 drop'"],
                &["ip netns exec mp-n2-web nft delete table inet mplab_policy"],
            ),
            (
                "reject node-3 9000",
                &["ip netns exec mp-n3-web nft 'add table inet mplab_policy; add chain inet mplab_policy input { type filter hook input priority 0 ; } ; add rule inet mplab_policy input tcp dport 9000 reject with tcp reset'"],
                &["ip netns exec mp-n3-web nft delete table inet mplab_policy"],
            ),
            (
                "cni node-2",
                &["ip netns exec mp-n2 nft 'add table inet mplab_cni; add chain inet mplab_cni forward { type filter hook forward priority 0 ; } ; add rule inet mplab_cni forward ip saddr 198.19.2.0/24 drop; add rule inet mplab_cni forward ip daddr 198.19.2.0/24 drop'"],
                &["ip netns exec mp-n2 nft delete table inet mplab_cni"],
            ),
        ];
        for (line, apply, clear) in table {
            let f = parse(line).unwrap();
            assert_eq!(lines(f.apply_cmds(&topo())), *apply, "{line}");
            assert_eq!(lines(f.clear_cmds(&topo())), *clear, "{line}");
        }
    }

    #[test]
    fn pmtu_blackhole_lowers_mtu_and_drops_frag_needed() {
        let f = parse("pmtu-blackhole node-1").unwrap();
        let a = lines(f.apply_cmds(&topo()));
        assert!(a[0].contains("icmp type destination-unreachable icmp code frag-needed drop"));
        assert!(a[0].contains("hook output") && a[0].contains("hook forward"));
        assert_eq!(a[1], "ip -n mp-n1 link set eth0 mtu 1400");
        let c = lines(f.clear_cmds(&topo()));
        assert_eq!(
            c,
            [
                "ip -n mp-n1 link set eth0 mtu 1500",
                "ip netns exec mp-n1 nft delete table inet mplab_pmtu"
            ]
        );
    }

    #[test]
    fn clear_tolerates_already_removed_tables() {
        for line in ["loss n1 5", "cni n1", "policy n1", "partition a b"] {
            assert!(parse(line)
                .unwrap()
                .clear_cmds(&topo())
                .iter()
                .all(|c| c.tolerate_failure));
        }
        assert!(!parse("route n1 n2").unwrap().apply_cmds(&topo())[0].tolerate_failure);
    }

    #[test]
    fn words_round_trip() {
        for line in [
            "route node-1 node-3",
            "mtu n2 1300",
            "pmtu-blackhole 3",
            "policy node-2",
            "reject web-node-4 81",
            "loss node-1 25%",
            "cni node-2",
            "node-down node-4",
            "partition b a",
            "kube-proxy n2",
            "kube-proxy 3 stale",
            "dns-down",
            "dns-from node-4",
            "conntrack 1",
        ] {
            let f = parse(line).unwrap();
            let w = f.words();
            assert_eq!(Fault::parse(&topo(), &w[0], &w[1..]).unwrap(), f, "{line}");
        }
        assert_eq!(
            parse("partition b a").unwrap().to_string(),
            "partition zone-a zone-b"
        );
    }

    #[test]
    fn validation_errors() {
        let table = [
            ("route node-1 node-9", "unknown node \"node-9\""),
            ("route node-1 node-1", "must differ"),
            (
                "route node-1",
                "usage: meshprobe lab fault route NODE-A NODE-B",
            ),
            ("mtu node-1 9000", "MTU \"9000\""),
            ("loss node-1 0", "expected 1 to 100"),
            ("loss node-1 abc", "expected 1 to 100"),
            ("loss node-1", "usage"),
            ("partition zone-a zone-q", "unknown zone \"zone-q\""),
            ("partition zone-a a", "must differ"),
            ("policy node-2 0", "port \"0\""),
            ("cni node-1 extra", "usage"),
            ("flood node-1", "unknown fault kind \"flood\""),
            (
                "kube-proxy",
                "usage: meshprobe lab fault kube-proxy NODE [stale]",
            ),
            ("kube-proxy node-9", "unknown node \"node-9\""),
            (
                "kube-proxy node-2 --stale",
                "\"--stale\" after the node: expected `stale`",
            ),
            ("kube-proxy node-2 stale extra", "usage"),
            ("dns-down node-1", "usage: meshprobe lab fault dns-down"),
            ("dns-from", "usage: meshprobe lab fault dns-from NODE"),
            ("dns-from zone-a", "unknown node \"zone-a\""),
            ("conntrack node-0", "unknown node \"node-0\""),
            (
                "conntrack node-1 5",
                "usage: meshprobe lab fault conntrack NODE",
            ),
        ];
        for (line, want) in table {
            let err = parse(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn service_faults_apply_and_clear_commands() {
        let t = topo();
        let rules = |agents: &[std::net::IpAddr]| {
            format!("ip netns exec mp-n2 nft '{}'", t.service_script(agents))
        };
        let dead: Vec<std::net::IpAddr> =
            ["198.19.1.99", "198.19.2.99", "198.19.3.99", "198.19.4.99"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        let restore = [
            "ip netns exec mp-n2 nft delete table ip mplab_svc".to_string(),
            rules(&t.agent_backends()),
        ];
        // (fault, apply, clear)
        let table: Vec<(&str, Vec<String>, Vec<String>)> = vec![
            (
                "kube-proxy node-2",
                vec!["ip netns exec mp-n2 nft delete table ip mplab_svc".into()],
                restore.to_vec(),
            ),
            (
                "kube-proxy n2 stale",
                vec![
                    "ip netns exec mp-n2 nft delete table ip mplab_svc".into(),
                    rules(&dead),
                ],
                restore.to_vec(),
            ),
            (
                "dns-down",
                vec!["ip netns exec mp-n1-dns nft 'add table inet mplab_dnsdown; add chain inet mplab_dnsdown input { type filter hook input priority 0 ; } ; add rule inet mplab_dnsdown input meta l4proto { tcp, udp } th dport 53 drop'".into()],
                vec!["ip netns exec mp-n1-dns nft delete table inet mplab_dnsdown".into()],
            ),
            (
                "dns-from node-3",
                vec!["ip netns exec mp-n3 nft 'add table inet mplab_dnsfrom; add chain inet mplab_dnsfrom forward { type filter hook forward priority 0 ; } ; add rule inet mplab_dnsfrom forward iifname \"cni0\" meta l4proto { tcp, udp } th dport 53 drop'".into()],
                vec!["ip netns exec mp-n3 nft delete table inet mplab_dnsfrom".into()],
            ),
            (
                "conntrack node-4",
                vec!["ip netns exec mp-n4 nft 'add table inet mplab_conntrack; add chain inet mplab_conntrack prerouting { type filter hook prerouting priority -150 ; } ; add chain inet mplab_conntrack output { type filter hook output priority -150 ; } ; add rule inet mplab_conntrack prerouting ct state new counter drop; add rule inet mplab_conntrack output ct state new counter drop'".into()],
                vec!["ip netns exec mp-n4 nft delete table inet mplab_conntrack".into()],
            ),
        ];
        for (line, apply, clear) in table {
            let f = parse(line).unwrap();
            assert_eq!(lines(f.apply_cmds(&t)), apply, "{line}");
            assert_eq!(lines(f.clear_cmds(&t)), clear, "{line}");
            // Clearing twice is harmless: every delete is tolerated, the rules re-made whole.
            assert!(f
                .clear_cmds(&t)
                .iter()
                .all(|c| c.tolerate_failure
                    || c.args.last().is_some_and(|a| a.starts_with("add table"))));
        }
        // The stale rules keep the DNS Service right and point the agents' at no pod.
        let stale = parse("kube-proxy 2 stale").unwrap().apply_cmds(&t);
        let script = stale[1].args.last().unwrap();
        assert!(script.contains("dnat to 198.19.1.12:53"), "{script}");
        for n in t.all_nodes() {
            assert!(
                !script.contains(&format!("dnat to {}:", n.probe_ip)),
                "{script}"
            );
        }
        // The restore is exactly what `lab up` programmed on the node.
        let up: Vec<String> = lines(t.up_cmds());
        assert!(up.contains(&restore[1]));
    }

    #[test]
    fn kube_proxy_acts_per_family_table() {
        let t = dual();
        let f = scoped(&t, "kube-proxy node-3", None).unwrap();
        let applied = lines(f.apply_cmds(&t));
        assert_eq!(
            applied,
            [
                "ip netns exec mp-n3 nft delete table ip mplab_svc",
                "ip netns exec mp-n3 nft delete table ip6 mplab_svc"
            ]
        );
        for (fam, table, other) in [("ipv4", "ip", "ip6"), ("ipv6", "ip6", "ip")] {
            let f = scoped(&t, "kube-proxy node-3", Some(fam)).unwrap();
            let (a, c) = (lines(f.apply_cmds(&t)), lines(f.clear_cmds(&t)));
            assert_eq!(
                a,
                [format!(
                    "ip netns exec mp-n3 nft delete table {table} mplab_svc"
                )]
            );
            assert_eq!(c[0], a[0]);
            assert!(
                c[1].contains(&format!("add table {table} mplab_svc;")),
                "{}",
                c[1]
            );
            assert!(
                !c.iter().any(|l| l.contains(&format!(" {other} mplab_svc"))),
                "{c:?}"
            );
        }
        // The two families' rules are apart: each may be broken alone, together they overlap
        // with the fault on both.
        let (v4, v6) = (
            scoped(&t, "kube-proxy node-3", Some("ipv4")).unwrap(),
            scoped(&t, "kube-proxy node-3 stale", Some("ipv6")).unwrap(),
        );
        assert!(!v4.overlaps(&v6));
        assert!(v4.overlaps(&scoped(&t, "kube-proxy node-3", None).unwrap()));
    }

    #[test]
    fn slots_conflict_where_faults_would_fight() {
        let s = |l: &str| parse(l).unwrap().slot();
        assert_eq!(s("mtu n1"), s("pmtu-blackhole n1 1300"));
        assert_eq!(s("policy n2"), s("reject web-node-2"));
        assert_eq!(s("partition a b"), s("partition b a"));
        assert_ne!(s("route n1 n2"), s("route n2 n1"));
        assert_ne!(s("loss n1 5"), s("loss n2 5"));
    }

    #[test]
    fn route_and_cni_follow_the_pod_addressing() {
        let at = |a: Addressing| {
            Topology::new("mp", 4, 2)
                .unwrap()
                .with_addressing(a)
                .unwrap()
        };
        let route = Fault::Route { from: 1, to: 3 };
        let cni = Fault::Cni { node: 3 };
        // (addressing, route apply, route clear, cni's address match)
        let table: &[(Addressing, &[&str], &[&str], &str)] = &[
            (
                Addressing::Blocks,
                &[
                    "ip -n mp-n1 route del 198.19.0.128/26",
                    "ip -n mp-n1 route del 198.19.1.128/26",
                ],
                &[
                    "ip -n mp-n1 route replace 198.19.0.128/26 via 198.18.1.13",
                    "ip -n mp-n1 route replace 198.19.1.128/26 via 198.18.1.13",
                ],
                "ip saddr { 198.19.0.128/26, 198.19.1.128/26 } drop",
            ),
            (
                Addressing::Vpc,
                &[
                    "ip -n mp-n1 route replace throw 198.18.1.130/32",
                    "ip -n mp-n1 route replace throw 198.18.1.131/32",
                ],
                &[
                    "ip -n mp-n1 route replace 198.18.1.130/32 via 198.18.1.13",
                    "ip -n mp-n1 route replace 198.18.1.131/32 via 198.18.1.13",
                ],
                "ip daddr { 198.18.1.130/32, 198.18.1.131/32 } drop",
            ),
        ];
        for (a, apply, clear, cni_match) in table {
            let t = at(*a);
            assert_eq!(lines(route.apply_cmds(&t)), *apply, "{a:?}");
            assert_eq!(lines(route.clear_cmds(&t)), *clear, "{a:?}");
            let c = lines(cni.apply_cmds(&t)).join(" ");
            assert!(c.contains(cni_match), "{a:?}: {c}");
            // Every other fault is the same in every layout (links, nftables on names).
            for other in [
                "mtu node-2",
                "pmtu-blackhole node-2",
                "policy web-node-2",
                "reject web-node-2",
                "loss node-2 30",
                "node-down node-4",
                "partition zone-a zone-b",
            ] {
                let f = parse(other).unwrap();
                assert_eq!(
                    lines(f.apply_cmds(&t)),
                    lines(f.apply_cmds(&topo())),
                    "{a:?} {other}"
                );
            }
        }
    }

    #[test]
    fn every_fault_acts_on_ipv6_in_an_ipv6_lab() {
        let t6 = topo().with_family(IpFamily::Ipv6).unwrap();
        let p6 = |line: &str| {
            let w: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            Fault::parse(&t6, &w[0], &w[1..])
        };
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "route node-1 node-3",
                &["ip -n mp-n1 -6 route del fd00:198:19:3::/64"],
                &["ip -n mp-n1 -6 route replace fd00:198:19:3::/64 via fd00:198:18:1::13"],
            ),
            (
                "route n1 n2",
                &["ip -n mp-n1 -6 route del fd00:198:19:2::/64"],
                &["ip -n mp-n1 -6 route replace fd00:198:19:2::/64 via fd00:198:18:1::1"],
            ),
            (
                "mtu node-2 1280",
                &["ip -n mp-n2 link set eth0 mtu 1280"],
                &["ip -n mp-n2 link set eth0 mtu 1500"],
            ),
            (
                "pmtu-blackhole node-2",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_pmtu; add chain inet mplab_pmtu output { type filter hook output priority 0 ; } ; add chain inet mplab_pmtu forward { type filter hook forward priority 0 ; } ; add rule inet mplab_pmtu output icmpv6 type packet-too-big drop; add rule inet mplab_pmtu forward icmpv6 type packet-too-big drop'",
                    "ip -n mp-n2 link set eth0 mtu 1400",
                ],
                &[
                    "ip -n mp-n2 link set eth0 mtu 1500",
                    "ip netns exec mp-n2 nft delete table inet mplab_pmtu",
                ],
            ),
            (
                "cni node-2",
                &["ip netns exec mp-n2 nft 'add table inet mplab_cni; add chain inet mplab_cni forward { type filter hook forward priority 0 ; } ; add rule inet mplab_cni forward ip6 saddr fd00:198:19:2::/64 drop; add rule inet mplab_cni forward ip6 daddr fd00:198:19:2::/64 drop'"],
                &["ip netns exec mp-n2 nft delete table inet mplab_cni"],
            ),
        ];
        for (line, apply, clear) in table {
            let f = p6(line).unwrap();
            assert_eq!(lines(f.apply_cmds(&t6)), *apply, "{line}");
            assert_eq!(lines(f.clear_cmds(&t6)), *clear, "{line}");
        }
        // Faults on links, ports and interface names are the same commands in both families.
        for line in [
            "mtu node-2",
            "policy web-node-2",
            "reject web-node-3 9000",
            "loss node-1 30",
            "node-down node-4",
            "partition zone-b zone-a",
        ] {
            let (f4, f6) = (parse(line).unwrap(), p6(line).unwrap());
            assert_eq!(
                lines(f6.apply_cmds(&t6)),
                lines(f4.apply_cmds(&topo())),
                "{line}"
            );
            assert_eq!(
                lines(f6.clear_cmds(&t6)),
                lines(f4.clear_cmds(&topo())),
                "{line}"
            );
        }
        // No IPv4 match or address in any IPv6 fault.
        for line in ["route n2 n4", "cni n1", "pmtu-blackhole n3 1300"] {
            let f = p6(line).unwrap();
            for l in lines([f.apply_cmds(&t6), f.clear_cmds(&t6)].concat()) {
                assert!(
                    !l.contains(" ip saddr") && !l.contains("icmp type") && !l.contains("198."),
                    "{line}: {l}"
                );
            }
        }
    }

    #[test]
    fn ipv6_route_and_cni_follow_the_pod_addressing() {
        let at = |a: Addressing| {
            topo()
                .with_addressing(a)
                .unwrap()
                .with_family(IpFamily::Ipv6)
                .unwrap()
        };
        let route = Fault::Route { from: 1, to: 3 };
        let cni = Fault::Cni { node: 3 };
        // (addressing, route apply, route clear, cni's address match)
        let table: &[(Addressing, &[&str], &[&str], &str)] = &[
            (
                Addressing::Blocks,
                &[
                    "ip -n mp-n1 -6 route del fd00:198:19::80/122",
                    "ip -n mp-n1 -6 route del fd00:198:19:1::80/122",
                ],
                &[
                    "ip -n mp-n1 -6 route replace fd00:198:19::80/122 via fd00:198:18:1::13",
                    "ip -n mp-n1 -6 route replace fd00:198:19:1::80/122 via fd00:198:18:1::13",
                ],
                "ip6 saddr { fd00:198:19::80/122, fd00:198:19:1::80/122 } drop",
            ),
            (
                Addressing::Vpc,
                &[
                    "ip -n mp-n1 -6 route replace throw fd00:198:18:1::130/128",
                    "ip -n mp-n1 -6 route replace throw fd00:198:18:1::131/128",
                ],
                &[
                    "ip -n mp-n1 -6 route replace fd00:198:18:1::130/128 via fd00:198:18:1::13",
                    "ip -n mp-n1 -6 route replace fd00:198:18:1::131/128 via fd00:198:18:1::13",
                ],
                "ip6 daddr { fd00:198:18:1::130/128, fd00:198:18:1::131/128 } drop",
            ),
        ];
        for (a, apply, clear, cni_match) in table {
            let t = at(*a);
            assert_eq!(lines(route.apply_cmds(&t)), *apply, "{a:?}");
            assert_eq!(lines(route.clear_cmds(&t)), *clear, "{a:?}");
            let c = lines(cni.apply_cmds(&t)).join(" ");
            assert!(c.contains(cni_match), "{a:?}: {c}");
        }
    }

    #[test]
    fn a_dual_lab_fault_acts_on_both_families() {
        let t = topo().with_family(IpFamily::Dual).unwrap();
        let p = |line: &str| {
            let w: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            Fault::parse(&t, &w[0], &w[1..]).unwrap()
        };
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "route node-1 node-3",
                &[
                    "ip -n mp-n1 route del 198.19.3.0/24",
                    "ip -n mp-n1 -6 route del fd00:198:19:3::/64",
                ],
                &[
                    "ip -n mp-n1 route replace 198.19.3.0/24 via 198.18.1.13",
                    "ip -n mp-n1 -6 route replace fd00:198:19:3::/64 via fd00:198:18:1::13",
                ],
            ),
            (
                "pmtu-blackhole node-2",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_pmtu; add chain inet mplab_pmtu output { type filter hook output priority 0 ; } ; add chain inet mplab_pmtu forward { type filter hook forward priority 0 ; } ; add rule inet mplab_pmtu output icmp type destination-unreachable icmp code frag-needed drop; add rule inet mplab_pmtu forward icmp type destination-unreachable icmp code frag-needed drop'",
                    "ip -n mp-n2 link set eth0 mtu 1400",
                    "ip netns exec mp-n2 nft 'add table inet mplab_pmtu; add chain inet mplab_pmtu output { type filter hook output priority 0 ; } ; add chain inet mplab_pmtu forward { type filter hook forward priority 0 ; } ; add rule inet mplab_pmtu output icmpv6 type packet-too-big drop; add rule inet mplab_pmtu forward icmpv6 type packet-too-big drop'",
                ],
                &[
                    "ip -n mp-n2 link set eth0 mtu 1500",
                    "ip netns exec mp-n2 nft delete table inet mplab_pmtu",
                ],
            ),
            (
                "node-down node-4",
                &["ip -n mp-fabric link set n4 down"],
                &["ip -n mp-fabric link set n4 up"],
            ),
        ];
        for (line, apply, clear) in table {
            let f = p(line);
            assert_eq!(lines(f.apply_cmds(&t)), *apply, "{line}");
            assert_eq!(lines(f.clear_cmds(&t)), *clear, "{line}");
        }
        let cni = lines(p("cni node-2").apply_cmds(&t)).join("\n");
        assert!(
            cni.contains("ip saddr 198.19.2.0/24 drop")
                && cni.contains("ip6 saddr fd00:198:19:2::/64 drop"),
            "{cni}"
        );
        assert_eq!(lines(p("cni node-2").clear_cmds(&t)).len(), 1);
        // The IPv6 half sets the floor: 1280.
        assert!(Fault::parse(&t, "mtu", &["node-1".into(), "1279".into()]).is_err());
    }

    #[test]
    fn an_ipv6_mtu_below_1280_is_refused_naming_the_minimum() {
        let t6 = topo().with_family(IpFamily::Ipv6).unwrap();
        for kind in ["mtu", "pmtu-blackhole"] {
            for bad in ["1279", "576", "1500"] {
                let e = Fault::parse(&t6, kind, &["node-1".into(), bad.into()]).unwrap_err();
                assert!(
                    e.contains(&format!("MTU \"{bad}\": expected 1280 to 1499")),
                    "{e}"
                );
                assert!(e.contains("IPv6's minimum link MTU is 1280"), "{e}");
            }
            assert!(Fault::parse(&t6, kind, &["node-1".into(), "1280".into()]).is_ok());
        }
        // IPv4 keeps its own lower bound.
        assert!(parse("mtu node-1 576").is_ok());
        assert!(parse("mtu node-1 575")
            .unwrap_err()
            .contains("expected 576 to 1499"));
    }

    /// `--family` in a dual lab, the fault's `KIND ARGS…` and the family.
    fn scoped(t: &Topology, line: &str, family: Option<&str>) -> Result<Scoped, String> {
        let w: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        Scoped::parse(t, &w[0], &w[1..], family)
    }

    fn dual() -> Topology {
        topo().with_family(IpFamily::Dual).unwrap()
    }

    #[test]
    fn a_dual_lab_fault_on_one_family_acts_on_that_family_alone() {
        let t = dual();
        // (fault, --family, apply, clear): every kind that takes the flag, in each family.
        let table: &[(&str, &str, &[&str], &[&str])] = &[
            (
                "dns-down",
                "ipv4",
                &["ip netns exec mp-n1-dns nft 'add table inet mplab_dnsdown_ipv4; add chain inet mplab_dnsdown_ipv4 input { type filter hook input priority 0 ; } ; add rule inet mplab_dnsdown_ipv4 input meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 drop'"],
                &["ip netns exec mp-n1-dns nft delete table inet mplab_dnsdown_ipv4"],
            ),
            (
                "dns-down",
                "ipv6",
                &["ip netns exec mp-n1-dns nft 'add table inet mplab_dnsdown_ipv6; add chain inet mplab_dnsdown_ipv6 input { type filter hook input priority 0 ; } ; add rule inet mplab_dnsdown_ipv6 input meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 drop'"],
                &["ip netns exec mp-n1-dns nft delete table inet mplab_dnsdown_ipv6"],
            ),
            (
                "dns-from node-2",
                "ipv4",
                &["ip netns exec mp-n2 nft 'add table inet mplab_dnsfrom_ipv4; add chain inet mplab_dnsfrom_ipv4 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_dnsfrom_ipv4 forward meta nfproto ipv4 iifname \"cni0\" meta l4proto { tcp, udp } th dport 53 drop'"],
                &["ip netns exec mp-n2 nft delete table inet mplab_dnsfrom_ipv4"],
            ),
            (
                "dns-from node-2",
                "ipv6",
                &["ip netns exec mp-n2 nft 'add table inet mplab_dnsfrom_ipv6; add chain inet mplab_dnsfrom_ipv6 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_dnsfrom_ipv6 forward meta nfproto ipv6 iifname \"cni0\" meta l4proto { tcp, udp } th dport 53 drop'"],
                &["ip netns exec mp-n2 nft delete table inet mplab_dnsfrom_ipv6"],
            ),
            (
                "conntrack node-3",
                "ipv4",
                &["ip netns exec mp-n3 nft 'add table inet mplab_conntrack_ipv4; add chain inet mplab_conntrack_ipv4 prerouting { type filter hook prerouting priority -150 ; } ; add chain inet mplab_conntrack_ipv4 output { type filter hook output priority -150 ; } ; add rule inet mplab_conntrack_ipv4 prerouting meta nfproto ipv4 ct state new counter drop; add rule inet mplab_conntrack_ipv4 output meta nfproto ipv4 ct state new counter drop'"],
                &["ip netns exec mp-n3 nft delete table inet mplab_conntrack_ipv4"],
            ),
            (
                "conntrack node-3",
                "ipv6",
                &["ip netns exec mp-n3 nft 'add table inet mplab_conntrack_ipv6; add chain inet mplab_conntrack_ipv6 prerouting { type filter hook prerouting priority -150 ; } ; add chain inet mplab_conntrack_ipv6 output { type filter hook output priority -150 ; } ; add rule inet mplab_conntrack_ipv6 prerouting meta nfproto ipv6 ct state new counter drop; add rule inet mplab_conntrack_ipv6 output meta nfproto ipv6 ct state new counter drop'"],
                &["ip netns exec mp-n3 nft delete table inet mplab_conntrack_ipv6"],
            ),
            (
                "route node-1 node-3",
                "ipv4",
                &[
                    "ip -n mp-n1 route del 198.19.3.0/24",
                ],
                &[
                    "ip -n mp-n1 route replace 198.19.3.0/24 via 198.18.1.13",
                ],
            ),
            (
                "route node-1 node-3",
                "ipv6",
                &[
                    "ip -n mp-n1 -6 route del fd00:198:19:3::/64",
                ],
                &[
                    "ip -n mp-n1 -6 route replace fd00:198:19:3::/64 via fd00:198:18:1::13",
                ],
            ),
            (
                "cni node-2",
                "ipv4",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_cni_ipv4; add chain inet mplab_cni_ipv4 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_cni_ipv4 forward ip saddr 198.19.2.0/24 drop; add rule inet mplab_cni_ipv4 forward ip daddr 198.19.2.0/24 drop'",
                ],
                &[
                    "ip netns exec mp-n2 nft delete table inet mplab_cni_ipv4",
                ],
            ),
            (
                "cni node-2",
                "ipv6",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_cni_ipv6; add chain inet mplab_cni_ipv6 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_cni_ipv6 forward ip6 saddr fd00:198:19:2::/64 drop; add rule inet mplab_cni_ipv6 forward ip6 daddr fd00:198:19:2::/64 drop'",
                ],
                &[
                    "ip netns exec mp-n2 nft delete table inet mplab_cni_ipv6",
                ],
            ),
            (
                "pmtu-blackhole node-2",
                "ipv4",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_pmtu_ipv4; add chain inet mplab_pmtu_ipv4 output { type filter hook output priority 0 ; } ; add chain inet mplab_pmtu_ipv4 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_pmtu_ipv4 output icmp type destination-unreachable icmp code frag-needed drop; add rule inet mplab_pmtu_ipv4 forward icmp type destination-unreachable icmp code frag-needed drop'",
                    "ip -n mp-n2 link set eth0 mtu 1400",
                ],
                &[
                    "ip -n mp-n2 link set eth0 mtu 1500",
                    "ip netns exec mp-n2 nft delete table inet mplab_pmtu_ipv4",
                ],
            ),
            (
                "pmtu-blackhole node-2",
                "ipv6",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_pmtu_ipv6; add chain inet mplab_pmtu_ipv6 output { type filter hook output priority 0 ; } ; add chain inet mplab_pmtu_ipv6 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_pmtu_ipv6 output icmpv6 type packet-too-big drop; add rule inet mplab_pmtu_ipv6 forward icmpv6 type packet-too-big drop'",
                    "ip -n mp-n2 link set eth0 mtu 1400",
                ],
                &[
                    "ip -n mp-n2 link set eth0 mtu 1500",
                    "ip netns exec mp-n2 nft delete table inet mplab_pmtu_ipv6",
                ],
            ),
            (
                "policy web-node-2",
                "ipv4",
                &[
                    "ip netns exec mp-n2-web nft 'add table inet mplab_policy_ipv4; add chain inet mplab_policy_ipv4 input { type filter hook input priority 0 ; } ; add rule inet mplab_policy_ipv4 input meta nfproto ipv4 tcp dport 8080 drop'",
                ],
                &[
                    "ip netns exec mp-n2-web nft delete table inet mplab_policy_ipv4",
                ],
            ),
            (
                "policy web-node-2",
                "ipv6",
                &[
                    "ip netns exec mp-n2-web nft 'add table inet mplab_policy_ipv6; add chain inet mplab_policy_ipv6 input { type filter hook input priority 0 ; } ; add rule inet mplab_policy_ipv6 input meta nfproto ipv6 tcp dport 8080 drop'",
                ],
                &[
                    "ip netns exec mp-n2-web nft delete table inet mplab_policy_ipv6",
                ],
            ),
            (
                "reject web-node-3 9000",
                "ipv4",
                &[
                    "ip netns exec mp-n3-web nft 'add table inet mplab_policy_ipv4; add chain inet mplab_policy_ipv4 input { type filter hook input priority 0 ; } ; add rule inet mplab_policy_ipv4 input meta nfproto ipv4 tcp dport 9000 reject with tcp reset'",
                ],
                &[
                    "ip netns exec mp-n3-web nft delete table inet mplab_policy_ipv4",
                ],
            ),
            (
                "reject web-node-3 9000",
                "ipv6",
                &[
                    "ip netns exec mp-n3-web nft 'add table inet mplab_policy_ipv6; add chain inet mplab_policy_ipv6 input { type filter hook input priority 0 ; } ; add rule inet mplab_policy_ipv6 input meta nfproto ipv6 tcp dport 9000 reject with tcp reset'",
                ],
                &[
                    "ip netns exec mp-n3-web nft delete table inet mplab_policy_ipv6",
                ],
            ),
            (
                "loss node-1 30",
                "ipv4",
                &[
                    "ip netns exec mp-n1 nft 'add table netdev mplab_loss_ipv4; add chain netdev mplab_loss_ipv4 rx { type filter hook ingress device \"eth0\" priority 0 ; } ; add chain netdev mplab_loss_ipv4 tx { type filter hook egress device \"eth0\" priority 0 ; } ; add rule netdev mplab_loss_ipv4 rx meta protocol ip numgen random mod 100 < 30 counter drop; add rule netdev mplab_loss_ipv4 tx meta protocol ip numgen random mod 100 < 30 counter drop'",
                ],
                &[
                    "ip netns exec mp-n1 nft delete table netdev mplab_loss_ipv4",
                ],
            ),
            (
                "loss node-1 30",
                "ipv6",
                &[
                    "ip netns exec mp-n1 nft 'add table netdev mplab_loss_ipv6; add chain netdev mplab_loss_ipv6 rx { type filter hook ingress device \"eth0\" priority 0 ; } ; add chain netdev mplab_loss_ipv6 tx { type filter hook egress device \"eth0\" priority 0 ; } ; add rule netdev mplab_loss_ipv6 rx meta protocol ip6 numgen random mod 100 < 30 counter drop; add rule netdev mplab_loss_ipv6 tx meta protocol ip6 numgen random mod 100 < 30 counter drop'",
                ],
                &[
                    "ip netns exec mp-n1 nft delete table netdev mplab_loss_ipv6",
                ],
            ),
            (
                "partition zone-a zone-b",
                "ipv4",
                &[
                    "ip netns exec mp-router nft 'add table inet mplab_partition_1_2_ipv4; add chain inet mplab_partition_1_2_ipv4 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_partition_1_2_ipv4 forward meta nfproto ipv4 iifname \"z1\" oifname \"z2\" drop; add rule inet mplab_partition_1_2_ipv4 forward meta nfproto ipv4 iifname \"z2\" oifname \"z1\" drop'",
                ],
                &[
                    "ip netns exec mp-router nft delete table inet mplab_partition_1_2_ipv4",
                ],
            ),
            (
                "partition zone-a zone-b",
                "ipv6",
                &[
                    "ip netns exec mp-router nft 'add table inet mplab_partition_1_2_ipv6; add chain inet mplab_partition_1_2_ipv6 forward { type filter hook forward priority 0 ; } ; add rule inet mplab_partition_1_2_ipv6 forward meta nfproto ipv6 iifname \"z1\" oifname \"z2\" drop; add rule inet mplab_partition_1_2_ipv6 forward meta nfproto ipv6 iifname \"z2\" oifname \"z1\" drop'",
                ],
                &[
                    "ip netns exec mp-router nft delete table inet mplab_partition_1_2_ipv6",
                ],
            ),
            (
                "apiserver-from node-2",
                "ipv4",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_apifrom_ipv4; add chain inet mplab_apifrom_ipv4 forward { type filter hook forward priority 0 ; } ; add chain inet mplab_apifrom_ipv4 input { type filter hook input priority 0 ; } ; add rule inet mplab_apifrom_ipv4 forward meta nfproto ipv4 iifname \"cni0\" tcp dport 6443 drop; add rule inet mplab_apifrom_ipv4 input meta nfproto ipv4 iifname \"cni0\" tcp dport 6443 drop'",
                ],
                &["ip netns exec mp-n2 nft delete table inet mplab_apifrom_ipv4"],
            ),
            (
                "apiserver-from node-2",
                "ipv6",
                &[
                    "ip netns exec mp-n2 nft 'add table inet mplab_apifrom_ipv6; add chain inet mplab_apifrom_ipv6 forward { type filter hook forward priority 0 ; } ; add chain inet mplab_apifrom_ipv6 input { type filter hook input priority 0 ; } ; add rule inet mplab_apifrom_ipv6 forward meta nfproto ipv6 iifname \"cni0\" tcp dport 6443 drop; add rule inet mplab_apifrom_ipv6 input meta nfproto ipv6 iifname \"cni0\" tcp dport 6443 drop'",
                ],
                &["ip netns exec mp-n2 nft delete table inet mplab_apifrom_ipv6"],
            ),
        ];
        for (line, fam, apply, clear) in table {
            let f = scoped(&t, line, Some(fam)).unwrap();
            assert_eq!(lines(f.apply_cmds(&t)), *apply, "{line} --family {fam}");
            assert_eq!(lines(f.clear_cmds(&t)), *clear, "{line} --family {fam}");
        }
        // Every kind that takes the flag is in the table, in both families.
        for (kind, _, _) in KINDS {
            let rows = table.iter().filter(|r| r.0.split(' ').next() == Some(kind));
            match *kind {
                "mtu" | "node-down" => assert_eq!(rows.count(), 0, "{kind}"),
                // Its clear is the whole rule set: `kube_proxy_acts_per_family_table`.
                "kube-proxy" => assert_eq!(rows.count(), 0, "{kind}"),
                _ => assert_eq!(
                    rows.map(|r| r.1).collect::<Vec<_>>(),
                    ["ipv4", "ipv6"],
                    "{kind}"
                ),
            }
        }
    }

    /// The tables an nft command list adds (`add table FAMILY NAME`) or deletes.
    fn tables(cmds: &[String], verb: &str) -> BTreeSet<String> {
        cmds.iter()
            .flat_map(|c| {
                let words: Vec<&str> = c
                    .split(|ch: char| ch.is_whitespace() || ch == ';' || ch == '\'')
                    .filter(|w| !w.is_empty())
                    .collect();
                words
                    .windows(4)
                    .filter(|w| w[0] == verb && w[1] == "table")
                    .map(|w| format!("{} {}", w[2], w[3]))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_confined_fault_touches_its_family_only_and_clears_exactly_what_it_applied() {
        let t = dual();
        // The other family's marks: its addresses, address matches, ICMP and family matches.
        let foreign = |fam: &str| -> &[&str] {
            match fam {
                "ipv4" => &[
                    "fd00:",
                    "ip6 ",
                    "icmpv6",
                    "nfproto ipv6",
                    "protocol ip6",
                    "-6 ",
                ],
                _ => &[
                    "198.",
                    " ip saddr",
                    " ip daddr",
                    "icmp type",
                    "nfproto ipv4",
                    "protocol ip ",
                ],
            }
        };
        for line in [
            "route node-1 node-3",
            "route node-2 node-4",
            "cni node-3",
            "pmtu-blackhole node-2 1300",
            "policy web-node-4 81",
            "reject node-1",
            "loss node-2 30",
            "partition zone-b zone-a",
        ] {
            for fam in ["ipv4", "ipv6"] {
                let f = scoped(&t, line, Some(fam)).unwrap();
                let (apply, clear) = (lines(f.apply_cmds(&t)), lines(f.clear_cmds(&t)));
                for l in apply.iter().chain(&clear) {
                    for mark in foreign(fam) {
                        assert!(!l.contains(mark), "{line} --family {fam}: {mark:?} in {l}");
                    }
                }
                // nftables: the tables it adds are the ones clear deletes, and they are its
                // family's own (`_ipv4`/`_ipv6`), never the both-families fault's table.
                let added = tables(&apply, "add");
                assert_eq!(added, tables(&clear, "delete"), "{line} --family {fam}");
                assert!(
                    added.iter().all(|n| n.ends_with(&format!("_{fam}"))),
                    "{added:?}"
                );
                let both = tables(&lines(f.fault.apply_cmds(&t)), "add");
                assert!(added.is_disjoint(&both), "{line}: {added:?} {both:?}");
                // Routes: clear restores exactly the routes apply removed.
                let routes = |ls: &[String], verb: &str| -> Vec<String> {
                    ls.iter()
                        .filter_map(|l| l.split(&format!("route {verb} ")).nth(1))
                        .map(|r| r.split(' ').next().unwrap_or("").to_string())
                        .collect()
                };
                assert_eq!(routes(&apply, "del"), routes(&clear, "replace"), "{line}");
            }
        }
    }

    #[test]
    fn family_errors_name_the_flag_and_the_fault() {
        let t = dual();
        let v4 = topo();
        let v6 = topo().with_family(IpFamily::Ipv6).unwrap();
        // (lab, fault, --family, what the error says)
        let table: &[(&Topology, &str, &str, &[&str])] = &[
            (
                &t,
                "cni node-1",
                "ipv5",
                &["--family \"ipv5\" on `fault cni`", "expected ipv4 or ipv6"],
            ),
            (
                &t,
                "route n1 n2",
                "dual",
                &[
                    "--family \"dual\" on `fault route`",
                    "expected ipv4 or ipv6",
                ],
            ),
            (&t, "route n1 n2", "IPv6", &["expected ipv4 or ipv6"]),
            (
                &t,
                "mtu node-2 1400",
                "ipv6",
                &[
                    "--family ipv6 on `fault mtu`",
                    "a link's MTU is one for both families",
                    "pmtu-blackhole NODE --family ipv6",
                ],
            ),
            (
                &t,
                "node-down node-4",
                "ipv4",
                &[
                    "--family ipv4 on `fault node-down`",
                    "cut off in both families",
                ],
            ),
            (
                &v4,
                "cni node-1",
                "ipv6",
                &[
                    "--family ipv6 on `fault cni`",
                    "this lab is ipv4-only",
                    "--ip-family dual",
                ],
            ),
            (
                &v6,
                "policy web-node-2",
                "ipv4",
                &["--family ipv4 on `fault policy`", "this lab is ipv6-only"],
            ),
            // mtu and node-down refuse the flag in every lab, their own family too.
            (
                &v4,
                "node-down node-4",
                "ipv4",
                &["`fault node-down`", "both families"],
            ),
            (
                &v6,
                "mtu node-2",
                "ipv6",
                &["`fault mtu`", "one for both families"],
            ),
            // The fault's own errors come first.
            (&t, "route n1 n9", "ipv6", &["unknown node \"n9\""]),
            (&t, "flood n1", "ipv4", &["unknown fault kind \"flood\""]),
            (&t, "mtu n1 1279", "ipv4", &["MTU \"1279\": expected 1280"]),
        ];
        for (lab, line, fam, want) in table {
            let e = scoped(lab, line, Some(fam)).unwrap_err();
            for w in *want {
                assert!(e.contains(w), "{line} --family {fam}: {e}");
            }
        }
    }

    #[test]
    fn a_single_family_lab_takes_its_own_family_as_the_whole_lab() {
        let v6 = topo().with_family(IpFamily::Ipv6).unwrap();
        for (lab, fam) in [(topo(), "ipv4"), (v6, "ipv6")] {
            for line in [
                "route n1 n3",
                "cni n2",
                "pmtu-blackhole n2",
                "policy n4",
                "loss n1 5",
                "partition a b",
            ] {
                let with = scoped(&lab, line, Some(fam)).unwrap();
                let without = scoped(&lab, line, None).unwrap();
                // The same fault: the same commands, words and state as without the flag.
                assert_eq!(with, without, "{line}");
                assert_eq!(with.family, None);
                assert_eq!(with.words(), without.fault.words());
            }
        }
    }

    #[test]
    fn faults_on_different_families_coexist_where_their_state_is_apart() {
        let t = dual();
        let s = |l: &str| {
            let (line, fam) = match l.split_once(" --family ") {
                Some((line, fam)) => (line, Some(fam)),
                None => (l, None),
            };
            scoped(&t, line, fam).unwrap()
        };
        // (a, b, may both be active)
        let table = [
            // Each family's routes, tables: apart.
            (
                "route n1 n3 --family ipv4",
                "route n1 n3 --family ipv6",
                true,
            ),
            ("cni n3 --family ipv4", "cni n3 --family ipv6", true),
            ("policy n2 --family ipv4", "reject n2 --family ipv6", true),
            ("loss n2 30 --family ipv4", "loss n2 5 --family ipv6", true),
            (
                "partition a b --family ipv6",
                "partition b a --family ipv4",
                true,
            ),
            // The same family, or a fault on both: the same slot as before.
            ("cni n3 --family ipv4", "cni n3 --family ipv4", false),
            ("cni n3", "cni n3 --family ipv6", false),
            ("route n1 n3", "route n1 n3 --family ipv4", false),
            ("policy n2 --family ipv4", "reject n2 --family ipv4", false),
            ("partition a b", "partition a b --family ipv6", false),
            // A link's MTU is both families': the MTU pair always overlaps.
            (
                "pmtu-blackhole n2 --family ipv4",
                "pmtu-blackhole n2 --family ipv6",
                false,
            ),
            ("mtu n2", "pmtu-blackhole n2 --family ipv6", false),
            // Other places never overlap.
            ("cni n3 --family ipv4", "cni n2 --family ipv4", true),
            (
                "route n1 n3 --family ipv6",
                "route n3 n1 --family ipv6",
                true,
            ),
        ];
        for (a, b, apart) in table {
            assert_eq!(!s(a).overlaps(&s(b)), apart, "{a} | {b}");
            assert_eq!(!s(b).overlaps(&s(a)), apart, "{b} | {a}");
        }
        // Two coexisting faults: clearing one leaves the other's state (no shared table or route).
        let (a, b) = (s("cni n3 --family ipv4"), s("cni n3 --family ipv6"));
        assert!(tables(&lines(a.clear_cmds(&t)), "delete")
            .is_disjoint(&tables(&lines(b.apply_cmds(&t)), "add")));
    }

    #[test]
    fn clear_names_one_family_or_every_family_of_a_place() {
        let t = dual();
        let s = |line: &str, fam: Option<&str>| scoped(&t, line, fam).unwrap();
        let v4 = s("cni n3", Some("ipv4"));
        let v6 = s("cni n3", Some("ipv6"));
        let both = s("cni n3", None);
        // Without --family: the place's faults of every family.
        assert!(both.names(&v4) && both.names(&v6) && both.names(&both));
        // With it: that family's fault alone; a fault on both is cleared whole, by its own words.
        assert!(v4.names(&v4) && !v4.names(&v6) && !v4.names(&both));
        // The slot still joins kinds that share a place: `clear mtu` names a pmtu-blackhole.
        assert!(s("mtu n2", None).names(&s("pmtu-blackhole n2", Some("ipv6"))));
        assert!(!s("cni n2", None).names(&v4));
    }

    #[test]
    fn confined_words_round_trip_through_the_state() {
        let t = dual();
        for (line, fam) in [
            ("route node-1 node-3", Some("ipv6")),
            ("cni node-2", Some("ipv4")),
            ("pmtu-blackhole node-2 1300", Some("ipv6")),
            ("reject web-node-4 81", Some("ipv4")),
            ("loss node-1 25", Some("ipv6")),
            ("partition zone-a zone-b", Some("ipv4")),
            ("node-down node-4", None),
            ("cni node-2", None),
        ] {
            let f = scoped(&t, line, fam).unwrap();
            assert_eq!(Scoped::from_words(&t, &f.words()).unwrap(), f, "{line}");
            let want = match fam {
                Some(fam) => format!("{line} --family {fam}"),
                None => line.to_string(),
            };
            assert_eq!(f.to_string(), want);
        }
        // A state written before the flag (no --family) reads as a fault on every family.
        let old: Vec<String> = ["cni", "node-2"].map(String::from).to_vec();
        assert_eq!(Scoped::from_words(&t, &old).unwrap().family, None);
    }
}
