//! The lab's cluster Services (pure): ClusterIPs programmed on every node the way kube-proxy's
//! nftables mode does, and the cluster DNS pod that answers `cluster.local`.
//!
//! ```text
//!  Service CIDR 198.18.96.0/24 (IPv6: fd00:198:18:96::/112), outside the underlays
//!  (198.18.1-26.0/24) and the pods (198.19.0.0/16, or the zones' underlays with `vpc`):
//!    198.18.96.10  kube-dns   udp+tcp 53  -> the DNS pod
//!    198.18.96.20  meshprobe-vip tcp 9464 -> every agent pod, numgen random (kube-proxy's LB)
//!    198.18.96.1   kubernetes tcp 443 -> node-1's node address :6443 (the API server stand-in,
//!                  crate::apiserver)
//!  mp-n1-dns: the DNS pod on node-1, 198.19.1.12 (blocks: 198.19.0.12/32, vpc: 198.18.1.250/32)
//!  mp-nI: table ip mplab_svc (ip6 in IPv6), its nat chains hooked at prerouting (the pods'
//!         traffic) and output (the node's own), a route to the Service CIDR via the zone router
//!         (the node has no default route; the output DNAT needs a route to reroute from)
//! ```
//!
//! One table per family (`ip` and `ip6`, as kube-proxy has), so a dual lab's rules are the
//! IPv4 lab's and the IPv6 lab's side by side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{Addressing, Cmd, Topology, AGENT_PORT, NFT_PREFIX};

/// The DNS port, UDP and TCP, on the DNS VIP and the DNS pod.
pub const DNS_PORT: u16 = 53;
/// The zone the DNS pod serves.
pub const ZONE: &str = "cluster.local.";
/// The agents' headless Service name: every agent pod's address (as CoreDNS answers a headless
/// Service), A and AAAA per family.
pub const AGENTS_NAME: &str = "meshprobe.meshprobe.svc.cluster.local.";
/// The agents' ClusterIP Service name: its VIP.
pub const AGENTS_VIP_NAME: &str = "meshprobe-vip.meshprobe.svc.cluster.local.";
/// The DNS Service's own name: its VIP.
pub const DNS_NAME: &str = "kube-dns.kube-system.svc.cluster.local.";
/// The node the DNS pod runs on.
pub const DNS_NODE: u16 = 1;
/// kube-proxy's masquerade mark: a pod reaching itself through a VIP (hairpin) is masqueraded,
/// or its reply would bypass the node and never be translated back.
const MASQ_MARK: &str = "0x4000";

/// A node's name in the DNS zone: `node-3.nodes.cluster.local.`.
pub fn node_name(index: u16) -> String {
    format!("node-{index}.nodes.{ZONE}")
}

impl Topology {
    /// The DNS pod's namespace (a pod of node-1).
    pub fn dns_ns(&self) -> String {
        format!("{}-n{DNS_NODE}-dns", self.prefix)
    }

    /// The Service CIDR of this family.
    pub fn service_cidr(&self) -> &'static str {
        if self.family.is_ipv4() {
            "198.18.96.0/24"
        } else {
            "fd00:198:18:96::/112"
        }
    }

    fn vip(&self, host: u8) -> IpAddr {
        if self.family.is_ipv4() {
            Ipv4Addr::new(198, 18, 96, host).into()
        } else {
            Self::v6(&format!("fd00:198:18:96::{host}"))
        }
    }

    /// The DNS Service's ClusterIP (kube-dns' `.10`, as kubeadm's default).
    pub fn dns_vip(&self) -> IpAddr {
        self.vip(10)
    }

    /// The agents' ClusterIP (`meshprobe-vip`).
    pub fn agents_vip(&self) -> IpAddr {
        self.vip(20)
    }

    /// The API server's ClusterIP (`kubernetes.default.svc`: the Service CIDR's first address,
    /// as the API server allocates it).
    pub fn apiserver_vip(&self) -> IpAddr {
        self.vip(1)
    }

    /// The API server's endpoint in this family: node-1's node address, port 6443.
    pub fn apiserver_endpoint(&self) -> SocketAddr {
        SocketAddr::new(
            self.node(crate::apiserver::APISERVER_NODE).node_ip,
            crate::apiserver::ENDPOINT_PORT,
        )
    }

    /// The DNS pod's address: node-1's third pod (`.12` beside the agent's `.10` and the
    /// target's `.11`, in its first block with `blocks`); with `vpc` the zone's `.250`, above
    /// every node's pods (`.128` ..= `.247`).
    pub fn dns_pod_ip(&self) -> IpAddr {
        let v4 = self.family.is_ipv4();
        match self.addressing {
            Addressing::Subnet if v4 => Ipv4Addr::new(198, 19, DNS_NODE as u8, 12).into(),
            Addressing::Subnet => Self::v6(&format!("fd00:198:19:{DNS_NODE}::12")),
            Addressing::Blocks if v4 => Self::offset(Self::block(DNS_NODE - 1), 12).into(),
            Addressing::Blocks => Self::block6(DNS_NODE - 1, 0x12),
            Addressing::Vpc if v4 => {
                Ipv4Addr::new(198, 18, self.zone_of(DNS_NODE) as u8, 250).into()
            }
            Addressing::Vpc => Self::v6(&format!("fd00:198:18:{}::250", self.zone_of(DNS_NODE))),
        }
    }

    /// An address no pod holds, for a stale endpoint (`kube-proxy N --stale`): the
    /// Service's endpoints still name an agent pod that is gone. In node N's own pod range
    /// (`.99` of its subnet, `+50` of its first block) or its zone's underlay with `vpc`.
    pub fn dead_pod_ip(&self, node: u16) -> IpAddr {
        let v4 = self.family.is_ipv4();
        let zone = self.zone_of(node);
        match self.addressing {
            Addressing::Subnet if v4 => Ipv4Addr::new(198, 19, node as u8, 99).into(),
            Addressing::Subnet => Self::v6(&format!("fd00:198:19:{node}::99")),
            Addressing::Blocks if v4 => Self::offset(Self::block(node - 1), 50).into(),
            Addressing::Blocks => Self::block6(node - 1, 0x32),
            Addressing::Vpc if v4 => Ipv4Addr::new(198, 18, zone as u8, 251).into(),
            Addressing::Vpc => Self::v6(&format!("fd00:198:18:{zone}::251")),
        }
    }

    /// nftables' family word for this family's tables: `ip` or `ip6`.
    pub fn nft_family(&self) -> &'static str {
        if self.family.is_ipv4() {
            "ip"
        } else {
            "ip6"
        }
    }

    /// The DNS pod on node-1: its link once, its address and routes per family; with `vpc`
    /// its /32 (/128) routed as every pod is (node-1 to cni0, the others and the router to
    /// node-1).
    pub(crate) fn dns_pod_cmds(&self) -> Vec<Cmd> {
        let views = self.views();
        let n = self.node(DNS_NODE);
        let (ns, pod_ns) = (n.ns.as_str(), self.dns_ns());
        let shared = self.addressing != Addressing::Subnet;
        let mut c = vec![
            Cmd::ip(
                ns,
                &format!("link add veth-dns type veth peer name eth0 netns {pod_ns}"),
            ),
            Cmd::ip(ns, "link set veth-dns master cni0 up"),
        ];
        for t in &views {
            c.push(Cmd::ip(
                &pod_ns,
                &format!(
                    "addr add {}/{} dev eth0{}",
                    t.dns_pod_ip(),
                    t.pod_len(),
                    t.addr_flags()
                ),
            ));
        }
        c.push(Cmd::ip(&pod_ns, "link set eth0 up"));
        for t in &views {
            let gw = t.node(DNS_NODE).pod_gateway;
            if shared {
                c.push(t.ip_fam(&pod_ns, &format!("route add {gw} dev eth0")));
            }
            c.push(t.ip_fam(&pod_ns, &format!("route add default via {gw}")));
        }
        if self.addressing == Addressing::Vpc {
            for t in &views {
                let r = format!("{}/{}", t.dns_pod_ip(), t.pod_len());
                c.push(t.ip_fam(ns, &format!("route add {r} dev cni0")));
                c.push(t.ip_fam(
                    &self.router_ns(),
                    &format!("route add {r} via {}", t.node(DNS_NODE).node_ip),
                ));
                for b in (1..=self.nodes).filter(|&b| b != DNS_NODE) {
                    c.push(t.ip_fam(
                        &t.node(b).ns,
                        &format!("route add {r} via {}", t.next_hop(b, DNS_NODE)),
                    ));
                }
            }
        }
        c
    }

    /// Hairpin on every pod's bridge port, as kubelet sets it: a pod that reaches itself
    /// through a VIP has its packet DNATed while being bridged (`br_netfilter`), and the bridge
    /// sends a frame back out of the port it came in only with hairpin on.
    pub(crate) fn hairpin_cmds(&self) -> Vec<Cmd> {
        let mut c = Vec::new();
        for n in self.all_nodes() {
            let mut ports = vec!["veth-probe", "veth-web"];
            if n.index == DNS_NODE {
                ports.push("veth-dns");
            }
            for p in ports {
                c.push(Cmd::ip(
                    &n.ns,
                    &format!("link set {p} type bridge_slave hairpin on"),
                ));
            }
        }
        c
    }

    /// The pods' prefix length: the node's subnet, or one address (`blocks`, `vpc`).
    fn pod_len(&self) -> u8 {
        match (self.addressing != Addressing::Subnet, self.family.is_ipv4()) {
            (true, true) => 32,
            (true, false) => 128,
            (false, true) => 24,
            (false, false) => 64,
        }
    }

    /// Node `node`'s Service commands in this family: the route to the Service CIDR and
    /// kube-proxy's table.
    pub fn service_cmds(&self, node: u16) -> Vec<Cmd> {
        let n = self.node(node);
        vec![
            self.ip_fam(
                &n.ns,
                &format!(
                    "route add {} via {}",
                    self.service_cidr(),
                    self.router_ip(n.zone)
                ),
            ),
            Cmd::nft(&n.ns, &self.service_script(&self.agent_backends())),
        ]
    }

    /// The agents Service's endpoints: every agent pod, in node order.
    pub fn agent_backends(&self) -> Vec<IpAddr> {
        self.all_nodes().iter().map(|n| n.probe_ip).collect()
    }

    /// The name of the Services' table: `mplab_svc`.
    pub fn service_table(&self) -> String {
        format!("{NFT_PREFIX}svc")
    }

    /// kube-proxy's nftables-mode rules for this family, as one atomic nft script: the
    /// `service-ips` verdict map (VIP . protocol . port → the Service's chain), one chain per
    /// Service choosing an endpoint with `numgen random mod N vmap`, one chain per endpoint
    /// (hairpin mark, DNAT), and the masquerade of marked packets. `agents` are the agents
    /// Service's endpoints (a stale node's differ).
    pub fn service_script(&self, agents: &[IpAddr]) -> String {
        let (f, t) = (self.nft_family(), self.service_table());
        let (addr_type, daddr) = if self.family.is_ipv4() {
            ("ipv4_addr", "ip daddr")
        } else {
            ("ipv6_addr", "ip6 daddr")
        };
        let saddr = if self.family.is_ipv4() {
            "ip saddr"
        } else {
            "ip6 saddr"
        };
        let endpoint = |ip: IpAddr, port: u16| -> String {
            match ip {
                IpAddr::V4(_) => format!("{ip}:{port}"),
                IpAddr::V6(_) => format!("[{ip}]:{port}"),
            }
        };
        let mut s = vec![
            format!("add table {f} {t}"),
            format!(
                "add chain {f} {t} prerouting {{ type nat hook prerouting priority -100 ; }}"
            ),
            format!("add chain {f} {t} output {{ type nat hook output priority -100 ; }}"),
            format!(
                "add chain {f} {t} postrouting {{ type nat hook postrouting priority 100 ; }}"
            ),
            format!(
                "add map {f} {t} service-ips {{ type {addr_type} . inet_proto . inet_service : verdict ; }}"
            ),
            format!("add chain {f} {t} services"),
            format!("add rule {f} {t} services {daddr} . meta l4proto . th dport vmap @service-ips"),
            format!("add rule {f} {t} prerouting jump services"),
            format!("add rule {f} {t} output jump services"),
            format!("add rule {f} {t} postrouting meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade"),
        ];
        // (Service chain, its endpoints, the protocols it takes, the target port).
        let dns = [self.dns_pod_ip()];
        let api = [self.apiserver_endpoint().ip()];
        let services: [(&str, &[IpAddr], &str, u16); 3] = [
            ("svc-dns", &dns, "{ tcp, udp }", DNS_PORT),
            ("svc-agents", agents, "tcp", AGENT_PORT),
            (
                "svc-apiserver",
                &api,
                "tcp",
                crate::apiserver::ENDPOINT_PORT,
            ),
        ];
        for (chain, backends, proto, port) in services {
            s.push(format!("add chain {f} {t} {chain}"));
            let mut arms = Vec::new();
            for (i, ip) in backends.iter().enumerate() {
                let ep = format!("{chain}-ep{}", i + 1);
                s.push(format!("add chain {f} {t} {ep}"));
                s.push(format!(
                    "add rule {f} {t} {ep} {saddr} {ip} meta mark set meta mark | {MASQ_MARK}"
                ));
                s.push(format!(
                    "add rule {f} {t} {ep} meta l4proto {proto} dnat to {}",
                    endpoint(*ip, port)
                ));
                arms.push(format!("{i} : goto {ep}"));
            }
            match arms.len() {
                0 => {}
                // One endpoint: no draw.
                1 => s.push(format!("add rule {f} {t} {chain} goto {chain}-ep1")),
                n => s.push(format!(
                    "add rule {f} {t} {chain} numgen random mod {n} vmap {{ {} }}",
                    arms.join(", ")
                )),
            }
        }
        let (dv, av, kv) = (self.dns_vip(), self.agents_vip(), self.apiserver_vip());
        let kp = crate::apiserver::VIP_PORT;
        s.push(format!(
            "add element {f} {t} service-ips {{ {dv} . udp . {DNS_PORT} : goto svc-dns, \
             {dv} . tcp . {DNS_PORT} : goto svc-dns, {av} . tcp . {AGENT_PORT} : goto svc-agents, \
             {kv} . tcp . {kp} : goto svc-apiserver }}"
        ));
        s.join("; ")
    }
}

impl Topology {
    /// The agents' per-source checks through the lab's Services, in the primary family (IPv4
    /// in a dual lab): resolve the agents' headless name at the DNS VIP, `GET /ping` at the
    /// agents' VIP, `/readyz` at the API server's VIP and at its endpoint (the CA file is the
    /// caller's: `--apiserver-ca`) — so `kube-proxy N` and `dns-from N` show on node N's checks.
    pub fn agent_check_args(&self) -> Vec<String> {
        let primary = self
            .views()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.clone());
        vec![
            "--dns-name".into(),
            AGENTS_NAME.into(),
            "--dns-server".into(),
            SocketAddr::new(primary.dns_vip(), DNS_PORT).to_string(),
            "--service".into(),
            SocketAddr::new(primary.agents_vip(), AGENT_PORT).to_string(),
            "--apiserver".into(),
            SocketAddr::new(primary.apiserver_vip(), crate::apiserver::VIP_PORT).to_string(),
            "--apiserver-endpoints".into(),
            primary.apiserver_endpoint().to_string(),
        ]
    }
}

/// The DNS zone's address records: (name, address) for every family of the lab, the primary's
/// first. The agents' headless name (every agent pod), the two ClusterIPs, each node's name.
pub fn dns_records(topo: &Topology) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for t in topo.views() {
        for ip in t.agent_backends() {
            out.push((AGENTS_NAME.to_string(), ip));
        }
        out.push((AGENTS_VIP_NAME.to_string(), t.agents_vip()));
        out.push((DNS_NAME.to_string(), t.dns_vip()));
        for n in t.all_nodes() {
            out.push((node_name(n.index), n.node_ip));
        }
    }
    out
}

/// What later code and users need to reach the Services (`services.json` in the state
/// directory, `lab status --json`'s `services`): per family, the VIPs, the DNS pod and names.
pub fn services_file(topo: &Topology) -> serde_json::Value {
    let fams: Vec<serde_json::Value> = topo
        .views()
        .iter()
        .map(|t| {
            serde_json::json!({
                "family": t.family.as_str(),
                "service_cidr": t.service_cidr(),
                "dns": {
                    "name": DNS_NAME, "vip": t.dns_vip().to_string(), "port": DNS_PORT,
                    "protocols": ["udp", "tcp"], "pod_ip": t.dns_pod_ip().to_string(),
                },
                "agents": {
                    "name": AGENTS_VIP_NAME, "vip": t.agents_vip().to_string(), "port": AGENT_PORT,
                    "protocol": "tcp",
                    "endpoints": t.agent_backends().iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                },
                "apiserver": {
                    "name": crate::apiserver::SERVER_NAME, "vip": t.apiserver_vip().to_string(),
                    "port": crate::apiserver::VIP_PORT, "protocol": "tcp",
                    "endpoints": [t.apiserver_endpoint().to_string()],
                },
            })
        })
        .collect();
    serde_json::json!({
        "zone": ZONE,
        "dns_node": format!("node-{DNS_NODE}"),
        "dns_namespace": topo.dns_ns(),
        "headless": AGENTS_NAME,
        "nft_table": topo.service_table(),
        "apiserver_ca": crate::apiserver::CA_FILE,
        "families": fams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::IpFamily;

    fn topo() -> Topology {
        Topology::new("mp", 4, 2).unwrap()
    }

    fn at(a: Addressing, f: IpFamily) -> Topology {
        topo().with_addressing(a).unwrap().with_family(f).unwrap()
    }

    #[test]
    fn addresses_of_the_services_and_the_dns_pod() {
        use Addressing::*;
        use IpFamily::*;
        // (addressing, family, DNS pod, DNS VIP, agents VIP, node-2's dead endpoint)
        let table = [
            (
                Subnet,
                Ipv4,
                "198.19.1.12",
                "198.18.96.10",
                "198.18.96.20",
                "198.19.2.99",
            ),
            (
                Blocks,
                Ipv4,
                "198.19.0.12",
                "198.18.96.10",
                "198.18.96.20",
                "198.19.0.114",
            ),
            (
                Vpc,
                Ipv4,
                "198.18.1.250",
                "198.18.96.10",
                "198.18.96.20",
                "198.18.2.251",
            ),
            (
                Subnet,
                Ipv6,
                "fd00:198:19:1::12",
                "fd00:198:18:96::10",
                "fd00:198:18:96::20",
                "fd00:198:19:2::99",
            ),
            (
                Blocks,
                Ipv6,
                "fd00:198:19::12",
                "fd00:198:18:96::10",
                "fd00:198:18:96::20",
                "fd00:198:19::72",
            ),
            (
                Vpc,
                Ipv6,
                "fd00:198:18:1::250",
                "fd00:198:18:96::10",
                "fd00:198:18:96::20",
                "fd00:198:18:2::251",
            ),
        ];
        for (a, f, dns, dvip, avip, dead) in table {
            let t = at(a, f);
            let got = (
                t.dns_pod_ip().to_string(),
                t.dns_vip().to_string(),
                t.agents_vip().to_string(),
                t.dead_pod_ip(2).to_string(),
            );
            assert_eq!(
                got,
                (dns.into(), dvip.into(), avip.into(), dead.into()),
                "{a:?} {f:?}"
            );
        }
        assert_eq!(topo().dns_ns(), "mp-n1-dns");
        assert!(Topology::owns_namespace("mp", "mp-n1-dns"));
        assert!(!Topology::owns_namespace("mp", "mp-dns"));
    }

    #[test]
    fn no_service_address_is_any_pods_or_nodes_in_the_largest_labs() {
        let big = |a: Addressing, f: IpFamily, nodes: u16| {
            Topology::new("mp", nodes, super::super::MAX_ZONES.min(nodes))
                .unwrap()
                .with_addressing(a)
                .unwrap()
                .with_family(f)
                .unwrap()
        };
        for f in [IpFamily::Ipv4, IpFamily::Ipv6] {
            for (a, nodes) in [
                (Addressing::Subnet, super::super::MAX_NODES),
                (Addressing::Blocks, super::super::MAX_NODES),
                (Addressing::Vpc, super::super::MAX_VPC_NODES),
                (Addressing::Vpc, 7),
            ] {
                let t = big(a, f, nodes);
                let mut taken = std::collections::BTreeSet::new();
                for n in t.all_nodes() {
                    for ip in [n.node_ip, n.probe_ip, n.web_ip, n.pod_gateway] {
                        taken.insert(ip);
                    }
                    for z in 1..=t.zones {
                        taken.insert(t.router_ip(z));
                    }
                }
                let mut ours = vec![t.dns_pod_ip(), t.dns_vip(), t.agents_vip()];
                ours.extend(t.all_nodes().iter().map(|n| t.dead_pod_ip(n.index)));
                for ip in ours {
                    assert!(!taken.contains(&ip), "{a:?} {f:?} {nodes}: {ip} is taken");
                    match ip {
                        IpAddr::V4(v4) => {
                            assert_eq!(v4.octets()[0], 198);
                            assert!([18, 19].contains(&v4.octets()[1]));
                        }
                        IpAddr::V6(v6) => assert_eq!(v6.segments()[..2], [0xfd00, 0x198]),
                    }
                }
            }
        }
    }

    #[test]
    fn every_node_programs_kube_proxys_rules_in_its_own_namespace() {
        let c: Vec<String> = topo().up_cmds().iter().map(|c| c.to_string()).collect();
        let script = "add table ip mplab_svc; \
            add chain ip mplab_svc prerouting { type nat hook prerouting priority -100 ; }; \
            add chain ip mplab_svc output { type nat hook output priority -100 ; }; \
            add chain ip mplab_svc postrouting { type nat hook postrouting priority 100 ; }; \
            add map ip mplab_svc service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }; \
            add chain ip mplab_svc services; \
            add rule ip mplab_svc services ip daddr . meta l4proto . th dport vmap @service-ips; \
            add rule ip mplab_svc prerouting jump services; \
            add rule ip mplab_svc output jump services; \
            add rule ip mplab_svc postrouting meta mark & 0x4000 == 0x4000 masquerade; \
            add chain ip mplab_svc svc-dns; \
            add chain ip mplab_svc svc-dns-ep1; \
            add rule ip mplab_svc svc-dns-ep1 ip saddr 198.19.1.12 meta mark set meta mark | 0x4000; \
            add rule ip mplab_svc svc-dns-ep1 meta l4proto { tcp, udp } dnat to 198.19.1.12:53; \
            add rule ip mplab_svc svc-dns goto svc-dns-ep1; \
            add chain ip mplab_svc svc-agents; \
            add chain ip mplab_svc svc-agents-ep1; \
            add rule ip mplab_svc svc-agents-ep1 ip saddr 198.19.1.10 meta mark set meta mark | 0x4000; \
            add rule ip mplab_svc svc-agents-ep1 meta l4proto tcp dnat to 198.19.1.10:9464; \
            add chain ip mplab_svc svc-agents-ep2; \
            add rule ip mplab_svc svc-agents-ep2 ip saddr 198.19.2.10 meta mark set meta mark | 0x4000; \
            add rule ip mplab_svc svc-agents-ep2 meta l4proto tcp dnat to 198.19.2.10:9464; \
            add chain ip mplab_svc svc-agents-ep3; \
            add rule ip mplab_svc svc-agents-ep3 ip saddr 198.19.3.10 meta mark set meta mark | 0x4000; \
            add rule ip mplab_svc svc-agents-ep3 meta l4proto tcp dnat to 198.19.3.10:9464; \
            add chain ip mplab_svc svc-agents-ep4; \
            add rule ip mplab_svc svc-agents-ep4 ip saddr 198.19.4.10 meta mark set meta mark | 0x4000; \
            add rule ip mplab_svc svc-agents-ep4 meta l4proto tcp dnat to 198.19.4.10:9464; \
            add rule ip mplab_svc svc-agents numgen random mod 4 vmap { 0 : goto svc-agents-ep1, 1 : goto svc-agents-ep2, 2 : goto svc-agents-ep3, 3 : goto svc-agents-ep4 }; \
            add chain ip mplab_svc svc-apiserver; \
            add chain ip mplab_svc svc-apiserver-ep1; \
            add rule ip mplab_svc svc-apiserver-ep1 ip saddr 198.18.1.11 meta mark set meta mark | 0x4000; \
            add rule ip mplab_svc svc-apiserver-ep1 meta l4proto tcp dnat to 198.18.1.11:6443; \
            add rule ip mplab_svc svc-apiserver goto svc-apiserver-ep1; \
            add element ip mplab_svc service-ips { 198.18.96.10 . udp . 53 : goto svc-dns, 198.18.96.10 . tcp . 53 : goto svc-dns, 198.18.96.20 . tcp . 9464 : goto svc-agents, 198.18.96.1 . tcp . 443 : goto svc-apiserver }";
        assert_eq!(topo().service_script(&topo().agent_backends()), script);
        for i in 1..=4 {
            for line in [
                format!(
                    "ip -n mp-n{i} route add 198.18.96.0/24 via 198.18.{}.1",
                    2 - i % 2
                ),
                format!("ip netns exec mp-n{i} nft '{script}'"),
            ] {
                assert!(c.contains(&line), "missing {line}");
            }
        }
        // The DNS pod, after every node's routes.
        for line in [
            "ip netns add mp-n1-dns",
            "ip -n mp-n1 link add veth-dns type veth peer name eth0 netns mp-n1-dns",
            "ip -n mp-n1 link set veth-dns master cni0 up",
            "ip -n mp-n1-dns addr add 198.19.1.12/24 dev eth0",
            "ip -n mp-n1-dns link set eth0 up",
            "ip -n mp-n1-dns route add default via 198.19.1.1",
            "ip -n mp-n1 link set veth-dns type bridge_slave hairpin on",
            "ip -n mp-n4 link set veth-probe type bridge_slave hairpin on",
            "ip -n mp-n4 link set veth-web type bridge_slave hairpin on",
        ] {
            assert!(c.contains(&line.to_string()), "missing {line}");
        }
    }

    #[test]
    fn ipv6_and_vpc_services_mirror_ipv4s() {
        let t6 = at(Addressing::Subnet, IpFamily::Ipv6);
        let s = t6.service_script(&t6.agent_backends());
        for part in [
            "add table ip6 mplab_svc",
            "type ipv6_addr . inet_proto . inet_service : verdict",
            "ip6 daddr . meta l4proto . th dport vmap @service-ips",
            "add rule ip6 mplab_svc svc-agents-ep2 ip6 saddr fd00:198:19:2::10 meta mark set meta mark | 0x4000",
            "add rule ip6 mplab_svc svc-agents-ep2 meta l4proto tcp dnat to [fd00:198:19:2::10]:9464",
            "dnat to [fd00:198:19:1::12]:53",
            "fd00:198:18:96::10 . udp . 53 : goto svc-dns",
        ] {
            assert!(s.contains(part), "missing {part} in {s}");
        }
        let c: Vec<String> = t6.up_cmds().iter().map(|c| c.to_string()).collect();
        assert!(c.contains(
            &"ip -n mp-n2 -6 route add fd00:198:18:96::/112 via fd00:198:18:2::1".to_string()
        ));
        let vpc: Vec<String> = at(Addressing::Vpc, IpFamily::Ipv4)
            .up_cmds()
            .iter()
            .map(|c| c.to_string())
            .collect();
        for line in [
            "ip -n mp-n1-dns addr add 198.18.1.250/32 dev eth0",
            "ip -n mp-n1-dns route add 198.19.255.1 dev eth0",
            "ip -n mp-n1-dns route add default via 198.19.255.1",
            "ip -n mp-n1 route add 198.18.1.250/32 dev cni0",
            "ip -n mp-router route add 198.18.1.250/32 via 198.18.1.11",
            "ip -n mp-n3 route add 198.18.1.250/32 via 198.18.1.11",
            "ip -n mp-n2 route add 198.18.1.250/32 via 198.18.2.1",
        ] {
            assert!(vpc.contains(&line.to_string()), "vpc: missing {line}");
        }
    }

    #[test]
    fn the_agents_check_the_primary_familys_services() {
        // (family, DNS server, agents' VIP, API server's VIP, its endpoint: node-1:6443)
        for (f, server, service, api, endpoint) in [
            (
                IpFamily::Ipv4,
                "198.18.96.10:53",
                "198.18.96.20:9464",
                "198.18.96.1:443",
                "198.18.1.11:6443",
            ),
            (
                IpFamily::Dual,
                "198.18.96.10:53",
                "198.18.96.20:9464",
                "198.18.96.1:443",
                "198.18.1.11:6443",
            ),
            (
                IpFamily::Ipv6,
                "[fd00:198:18:96::10]:53",
                "[fd00:198:18:96::20]:9464",
                "[fd00:198:18:96::1]:443",
                "[fd00:198:18:1::11]:6443",
            ),
        ] {
            assert_eq!(
                at(Addressing::Subnet, f).agent_check_args(),
                [
                    "--dns-name",
                    AGENTS_NAME,
                    "--dns-server",
                    server,
                    "--service",
                    service,
                    "--apiserver",
                    api,
                    "--apiserver-endpoints",
                    endpoint,
                ],
                "{f:?}"
            );
        }
    }

    #[test]
    fn the_zone_names_every_agent_the_vips_and_the_nodes_per_family() {
        let d = dns_records(&at(Addressing::Subnet, IpFamily::Dual));
        let of = |name: &str| -> Vec<String> {
            d.iter()
                .filter(|(n, _)| n == name)
                .map(|(_, ip)| ip.to_string())
                .collect()
        };
        assert_eq!(
            of(AGENTS_NAME),
            [
                "198.19.1.10",
                "198.19.2.10",
                "198.19.3.10",
                "198.19.4.10",
                "fd00:198:19:1::10",
                "fd00:198:19:2::10",
                "fd00:198:19:3::10",
                "fd00:198:19:4::10"
            ]
        );
        assert_eq!(of(AGENTS_VIP_NAME), ["198.18.96.20", "fd00:198:18:96::20"]);
        assert_eq!(of(DNS_NAME), ["198.18.96.10", "fd00:198:18:96::10"]);
        assert_eq!(
            of("node-3.nodes.cluster.local."),
            ["198.18.1.13", "fd00:198:18:1::13"]
        );
        let f = services_file(&topo());
        assert_eq!(f["families"][0]["dns"]["vip"], "198.18.96.10");
        assert_eq!(f["families"][0]["agents"]["endpoints"][3], "198.19.4.10");
        assert_eq!(f["dns_namespace"], "mp-n1-dns");
    }
}
