//! The commands that apply and clear a [`Fault`] in the lab's namespaces (ip, nft, sysctl):
//! pure, no I/O (the caller runs them).

use super::*;

impl Scoped {
    /// The commands that inject the fault, in its family only when it has one.
    pub fn apply_cmds(&self, topo: &Topology) -> Vec<Cmd> {
        match self.family {
            None => self.fault.apply_cmds(topo),
            Some(f) => self.fault.apply_with(&topo.in_family(f), &only(f)),
        }
    }

    /// The commands that undo exactly what [`Scoped::apply_cmds`] did (idempotent).
    pub fn clear_cmds(&self, topo: &Topology) -> Vec<Cmd> {
        match self.family {
            None => self.fault.clear_cmds(topo),
            Some(f) => self.fault.clear_with(&topo.in_family(f), &only(f)),
        }
    }
}

impl Fault {
    /// The commands that inject the fault (`dual`: in both families).
    pub fn apply_cmds(&self, topo: &Topology) -> Vec<Cmd> {
        if topo.family == IpFamily::Dual {
            return each_family(topo, |t| self.apply_with(t, &EVERY));
        }
        self.apply_with(topo, &EVERY)
    }

    /// The commands that undo the fault. Idempotent: safe to run when it is already undone.
    pub fn clear_cmds(&self, topo: &Topology) -> Vec<Cmd> {
        if topo.family == IpFamily::Dual {
            return each_family(topo, |t| self.clear_with(t, &EVERY));
        }
        self.clear_with(topo, &EVERY)
    }

    /// The apply commands in a single-family view `topo`, confined by `only`.
    fn apply_with(&self, topo: &Topology, only: &Only) -> Vec<Cmd> {
        let t = NFT_PREFIX;
        let (sfx, inet) = (only.table, only.inet);
        match *self {
            Fault::Route { from, to } => {
                let ns = topo.node(from).ns;
                topo.node(to)
                    .pod_routes
                    .iter()
                    .map(|r| match topo.addressing {
                        // The pods are inside the underlay subnet, which the node routes
                        // anyway: a `throw` route ends the lookup as if there were no route
                        // (net unreachable), as deleting does in the other layouts.
                        Addressing::Vpc => Cmd::ip(
                            &ns,
                            &format!("{} replace throw {r}", topo.route_words()),
                        ),
                        Addressing::Subnet | Addressing::Blocks => {
                            Cmd::ip(&ns, &format!("{} del {r}", topo.route_words()))
                        }
                    })
                    .collect()
            }
            Fault::Mtu { node, mtu } => {
                vec![Cmd::ip(&topo.node(node).ns, &format!("link set eth0 mtu {mtu}"))]
            }
            Fault::PmtuBlackhole { node, mtu } => {
                let ns = topo.node(node).ns;
                // The path-MTU signal of each family: IPv4's frag-needed, ICMPv6's packet-too-big.
                let rule = match topo.family {
                    IpFamily::Ipv4 => "icmp type destination-unreachable icmp code frag-needed drop",
                    IpFamily::Ipv6 | IpFamily::Dual => "icmpv6 type packet-too-big drop",
                };
                vec![
                    Cmd::nft(
                        &ns,
                        &format!(
                            "add table inet {t}pmtu{sfx}; \
                             add chain inet {t}pmtu{sfx} output {{ type filter hook output priority 0 ; }} ; \
                             add chain inet {t}pmtu{sfx} forward {{ type filter hook forward priority 0 ; }} ; \
                             add rule inet {t}pmtu{sfx} output {rule}; \
                             add rule inet {t}pmtu{sfx} forward {rule}"
                        ),
                    ),
                    Cmd::ip(&ns, &format!("link set eth0 mtu {mtu}")),
                ]
            }
            Fault::Policy { node, port } | Fault::Reject { node, port } => {
                let verdict = if matches!(self, Fault::Reject { .. }) {
                    "reject with tcp reset"
                } else {
                    "drop"
                };
                vec![Cmd::nft(
                    &topo.node(node).web_ns,
                    &format!(
                        "add table inet {t}policy{sfx}; \
                         add chain inet {t}policy{sfx} input {{ type filter hook input priority 0 ; }} ; \
                         add rule inet {t}policy{sfx} input {inet}tcp dport {port} {verdict}"
                    ),
                )]
            }
            Fault::Loss { node, percent } => {
                // `numgen random mod 100` is 0 to 99 and nft refuses a bound outside that range
                // (`< 100`): 100% is every packet, without the draw.
                let draw = match percent {
                    100.. => String::new(),
                    p => format!("numgen random mod 100 < {p} "),
                };
                let rule = format!("{}{draw}counter drop", only.netdev);
                vec![Cmd::nft(
                    &topo.node(node).ns,
                    &format!(
                        "add table netdev {t}loss{sfx}; \
                         add chain netdev {t}loss{sfx} rx {{ type filter hook ingress device \"eth0\" priority 0 ; }} ; \
                         add chain netdev {t}loss{sfx} tx {{ type filter hook egress device \"eth0\" priority 0 ; }} ; \
                         add rule netdev {t}loss{sfx} rx {rule}; \
                         add rule netdev {t}loss{sfx} tx {rule}"
                    ),
                )]
            }
            Fault::Cni { node } => {
                let n = topo.node(node);
                let s = match n.pod_routes.as_slice() {
                    [one] => one.clone(),
                    many => format!("{{ {} }}", many.join(", ")),
                };
                // `inet` tables see both families; an address match names its family.
                let ip = match topo.family {
                    IpFamily::Ipv4 => "ip",
                    IpFamily::Ipv6 | IpFamily::Dual => "ip6",
                };
                vec![Cmd::nft(
                    &n.ns,
                    &format!(
                        "add table inet {t}cni{sfx}; \
                         add chain inet {t}cni{sfx} forward {{ type filter hook forward priority 0 ; }} ; \
                         add rule inet {t}cni{sfx} forward {ip} saddr {s} drop; \
                         add rule inet {t}cni{sfx} forward {ip} daddr {s} drop"
                    ),
                )]
            }
            Fault::NodeDown { node } => vec![Cmd::ip(
                &topo.fabric_ns(),
                &format!("link set {} down", topo.node(node).fabric_port),
            )],
            Fault::Partition { a, b } => vec![Cmd::nft(
                &topo.router_ns(),
                &format!(
                    "add table inet {t}partition_{a}_{b}{sfx}; \
                     add chain inet {t}partition_{a}_{b}{sfx} forward {{ type filter hook forward priority 0 ; }} ; \
                     add rule inet {t}partition_{a}_{b}{sfx} forward {inet}iifname \"z{a}\" oifname \"z{b}\" drop; \
                     add rule inet {t}partition_{a}_{b}{sfx} forward {inet}iifname \"z{b}\" oifname \"z{a}\" drop"
                ),
            )],
            // kube-proxy's table is per family already (`ip`, `ip6`): the view's family is
            // the confinement, no suffix needed.
            Fault::KubeProxy { node, stale } => {
                let ns = topo.node(node).ns;
                let del = Cmd::exec(
                    &ns,
                    "nft",
                    &["delete", "table", topo.nft_family(), &topo.service_table()],
                );
                if !stale {
                    return vec![del];
                }
                // A kube-proxy that missed the endpoints' update: every agents endpoint is a
                // pod that has gone (its address held by no one), the DNS Service still right.
                let dead: Vec<_> = topo
                    .all_nodes()
                    .iter()
                    .map(|n| topo.dead_pod_ip(n.index))
                    .collect();
                vec![del.tolerant(), Cmd::nft(&ns, &topo.service_script(&dead))]
            }
            Fault::DnsDown => vec![Cmd::nft(
                &topo.dns_ns(),
                &format!(
                    "add table inet {t}dnsdown{sfx}; \
                     add chain inet {t}dnsdown{sfx} input {{ type filter hook input priority 0 ; }} ; \
                     add rule inet {t}dnsdown{sfx} input {inet}meta l4proto {{ tcp, udp }} th dport {DNS_PORT} drop"
                ),
            )],
            // After the Service DNAT (forward): the pods' queries to the VIP and to the DNS
            // pod itself; `cni0` in is the node's pods (other nodes' arrive on eth0).
            Fault::DnsFrom { node } => vec![Cmd::nft(
                &topo.node(node).ns,
                &format!(
                    "add table inet {t}dnsfrom{sfx}; \
                     add chain inet {t}dnsfrom{sfx} forward {{ type filter hook forward priority 0 ; }} ; \
                     add rule inet {t}dnsfrom{sfx} forward {inet}iifname \"cni0\" meta l4proto {{ tcp, udp }} th dport {DNS_PORT} drop"
                ),
            )],
            // The node's pods (`cni0` in) to the API server's port, after the Service DNAT
            // (so its ClusterIP too): forward to another node's address, input to this
            // node's own (node-1 is the stand-in's).
            Fault::ApiserverFrom { node } => vec![Cmd::nft(
                &topo.node(node).ns,
                &format!(
                    "add table inet {t}apifrom{sfx}; \
                     add chain inet {t}apifrom{sfx} forward {{ type filter hook forward priority 0 ; }} ; \
                     add chain inet {t}apifrom{sfx} input {{ type filter hook input priority 0 ; }} ; \
                     add rule inet {t}apifrom{sfx} forward {inet}iifname \"cni0\" tcp dport {api} drop; \
                     add rule inet {t}apifrom{sfx} input {inet}iifname \"cni0\" tcp dport {api} drop",
                    api = crate::apiserver::ENDPOINT_PORT
                ),
            )],
            // `nf_conntrack_max` is read-only outside the host's namespace (0444 in every other
            // namespace, kernel 6.18), so the full table is what the kernel then does: a packet
            // that would add an entry is dropped, one of an entry already there passes.
            // Priority -150: after conntrack (-200) has classified the packet, before DNAT.
            Fault::Conntrack { node } => vec![Cmd::nft(
                &topo.node(node).ns,
                &format!(
                    "add table inet {t}conntrack{sfx}; \
                     add chain inet {t}conntrack{sfx} prerouting {{ type filter hook prerouting priority -150 ; }} ; \
                     add chain inet {t}conntrack{sfx} output {{ type filter hook output priority -150 ; }} ; \
                     add rule inet {t}conntrack{sfx} prerouting {inet}ct state new counter drop; \
                     add rule inet {t}conntrack{sfx} output {inet}ct state new counter drop"
                ),
            )],
        }
    }

    /// The clear commands in a single-family view `topo`, confined by `only`.
    fn clear_with(&self, topo: &Topology, only: &Only) -> Vec<Cmd> {
        let t = NFT_PREFIX;
        let del = |ns: &str, family: &str, table: &str| {
            Cmd::exec(
                ns,
                "nft",
                &[
                    "delete",
                    "table",
                    family,
                    &format!("{t}{table}{}", only.table),
                ],
            )
            .tolerant()
        };
        match *self {
            Fault::Route { from, to } => topo
                .node(to)
                .pod_routes
                .iter()
                .map(|r| {
                    Cmd::ip(
                        &topo.node(from).ns,
                        &format!(
                            "{} replace {r} via {}",
                            topo.route_words(),
                            topo.next_hop(from, to)
                        ),
                    )
                })
                .collect(),
            Fault::Mtu { node, .. } => vec![Cmd::ip(
                &topo.node(node).ns,
                &format!("link set eth0 mtu {BASE_MTU}"),
            )],
            Fault::PmtuBlackhole { node, .. } => {
                let ns = topo.node(node).ns;
                vec![
                    Cmd::ip(&ns, &format!("link set eth0 mtu {BASE_MTU}")),
                    del(&ns, "inet", "pmtu"),
                ]
            }
            Fault::Policy { node, .. } | Fault::Reject { node, .. } => {
                vec![del(&topo.node(node).web_ns, "inet", "policy")]
            }
            Fault::Loss { node, .. } => vec![del(&topo.node(node).ns, "netdev", "loss")],
            Fault::Cni { node } => vec![del(&topo.node(node).ns, "inet", "cni")],
            Fault::NodeDown { node } => vec![Cmd::ip(
                &topo.fabric_ns(),
                &format!("link set {} up", topo.node(node).fabric_port),
            )],
            Fault::Partition { a, b } => {
                vec![del(
                    &topo.router_ns(),
                    "inet",
                    &format!("partition_{a}_{b}"),
                )]
            }
            // The rules as `lab up` programmed them, whatever was left (none, or stale ones).
            Fault::KubeProxy { node, .. } => {
                let ns = topo.node(node).ns;
                vec![
                    Cmd::exec(
                        &ns,
                        "nft",
                        &["delete", "table", topo.nft_family(), &topo.service_table()],
                    )
                    .tolerant(),
                    Cmd::nft(&ns, &topo.service_script(&topo.agent_backends())),
                ]
            }
            Fault::DnsDown => vec![del(&topo.dns_ns(), "inet", "dnsdown")],
            Fault::DnsFrom { node } => vec![del(&topo.node(node).ns, "inet", "dnsfrom")],
            Fault::Conntrack { node } => vec![del(&topo.node(node).ns, "inet", "conntrack")],
            Fault::ApiserverFrom { node } => vec![del(&topo.node(node).ns, "inet", "apifrom")],
        }
    }
}

/// A dual-stack lab's commands for a fault: each family's, in order, a command both families
/// share (a link's MTU, a table's deletion, a rule on ports or names) once. nft's `add table`
/// and `add chain` leave what exists, so the second family's rules join the first's table.
fn each_family(topo: &Topology, cmds: impl Fn(&Topology) -> Vec<Cmd>) -> Vec<Cmd> {
    let mut out: Vec<Cmd> = Vec::new();
    for f in topo.families() {
        for c in cmds(&topo.in_family(f)) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// How a fault's commands are confined to one family. Empty for every family: the lab's own
/// commands, unchanged. One family: its nftables tables get the family's suffix (so each
/// family's fault is a table of its own: faults of one place on different families coexist and
/// clear apart), and a rule that would match both families (a port, interface names, every
/// frame) matches only that family's packets.
struct Only {
    /// Appended to the nftables table name.
    table: &'static str,
    /// Prepended to an `inet` table's rule: `meta nfproto` is the packet's family there.
    inet: &'static str,
    /// Prepended to a `netdev` table's rule: at a device hook `nfproto` is `netdev`, so the
    /// frame's ethertype (`meta protocol`) names the family.
    netdev: &'static str,
}

const EVERY: Only = Only {
    table: "",
    inet: "",
    netdev: "",
};

fn only(family: IpFamily) -> Only {
    match family {
        IpFamily::Ipv4 => Only {
            table: "_ipv4",
            inet: "meta nfproto ipv4 ",
            netdev: "meta protocol ip ",
        },
        IpFamily::Ipv6 | IpFamily::Dual => Only {
            table: "_ipv6",
            inet: "meta nfproto ipv6 ",
            netdev: "meta protocol ip6 ",
        },
    }
}
