//! The commands that build the lab's network from its [`Topology`] and remove it: pure,
//! no I/O (the caller runs them).

use super::*;

impl Topology {
    /// The commands that build the whole network (namespaces, links, addresses, routes):
    /// links once, addresses and routes once per family (`dual`: IPv4's, then IPv6's).
    pub fn up_cmds(&self) -> Vec<Cmd> {
        let fabric = self.fabric_ns();
        let router = self.router_ns();
        let views = self.views();
        let any_v6 = self.family != IpFamily::Ipv4;
        let any_v4 = self.family != IpFamily::Ipv6;
        let shared = self.addressing != Addressing::Subnet;
        let mut c = Vec::new();
        for ns in self.namespaces() {
            c.push(Cmd::new("ip", &["netns", "add", &ns]));
            if any_v6 {
                // Before any link exists in it: a link copies `default` when made, and without
                // duplicate address detection its addresses (link-local too) answer at once,
                // instead of about a second late; the agents start on settled links.
                for dev in ["all", "default"] {
                    c.push(Cmd::sysctl(
                        &ns,
                        &format!("net.ipv6.conf.{dev}.accept_dad=0"),
                    ));
                }
            }
            c.push(Cmd::ip(&ns, "link set lo up"));
        }
        // Fabric: one bridge per zone.
        for z in 1..=self.zones {
            c.push(Cmd::ip(&fabric, &format!("link add br-z{z} type bridge")));
            c.push(Cmd::ip(&fabric, &format!("link set br-z{z} up")));
        }
        // Router: one leg per zone.
        for t in &views {
            c.push(Cmd::sysctl(&router, t.forward_sysctl()));
        }
        for z in 1..=self.zones {
            c.push(Cmd::ip(
                &fabric,
                &format!("link add r-z{z} type veth peer name z{z} netns {router}"),
            ));
            c.push(Cmd::ip(
                &fabric,
                &format!("link set r-z{z} master br-z{z} up"),
            ));
            for t in &views {
                c.push(Cmd::ip(
                    &router,
                    &format!(
                        "addr add {}/{} dev z{z}{}",
                        t.router_ip(z),
                        t.underlay_len(),
                        t.addr_flags()
                    ),
                ));
            }
            c.push(Cmd::ip(&router, &format!("link set z{z} up")));
        }
        for n in self.all_nodes() {
            let ns = &n.ns;
            // The node in each family (`n` is the primary's).
            let ms: Vec<(&Topology, Node)> = views.iter().map(|t| (t, t.node(n.index))).collect();
            for (t, _) in &ms {
                c.push(Cmd::sysctl(ns, t.forward_sysctl()));
            }
            c.push(Cmd::ip(
                &fabric,
                &format!(
                    "link add {} type veth peer name eth0 netns {ns}",
                    n.fabric_port
                ),
            ));
            c.push(Cmd::ip(
                &fabric,
                &format!("link set {} master br-z{} up", n.fabric_port, n.zone),
            ));
            for (t, m) in &ms {
                c.push(Cmd::ip(
                    ns,
                    &format!(
                        "addr add {}/{} dev eth0{}",
                        m.node_ip,
                        t.underlay_len(),
                        t.addr_flags()
                    ),
                ));
            }
            c.push(Cmd::ip(ns, "link set eth0 up"));
            // IPv6 has no send_redirects knob; a pod that follows the node's redirect reaches a
            // same-node pod directly on cni0, which only same-node pairs see.
            if shared && any_v4 {
                // Pods reach each other through the node (one gateway, /32 pods): no
                // redirects telling them to go direct.
                for dev in ["all", "default"] {
                    c.push(Cmd::sysctl(
                        ns,
                        &format!("net.ipv4.conf.{dev}.send_redirects=0"),
                    ));
                }
            }
            c.push(Cmd::ip(ns, "link add cni0 type bridge"));
            // Pods' and gateway's prefix length: the node's subnet, or one address (shared).
            let pod_len = |t: &Topology| match (shared, t.family.is_ipv4()) {
                (true, true) => 32,
                (true, false) => 128,
                (false, true) => 24,
                (false, false) => 64,
            };
            for (t, m) in &ms {
                c.push(Cmd::ip(
                    ns,
                    &format!(
                        "addr add {}/{} dev cni0{}",
                        m.pod_gateway,
                        pod_len(t),
                        t.addr_flags()
                    ),
                ));
            }
            c.push(Cmd::ip(ns, "link set cni0 up"));
            if shared {
                for (t, m) in &ms {
                    for r in &m.pod_routes {
                        c.push(t.ip_fam(ns, &format!("route add {r} dev cni0")));
                    }
                }
            }
            for (pod_ns, veth, web) in [
                (&n.probe_ns, "veth-probe", false),
                (&n.web_ns, "veth-web", true),
            ] {
                c.push(Cmd::ip(
                    ns,
                    &format!("link add {veth} type veth peer name eth0 netns {pod_ns}"),
                ));
                c.push(Cmd::ip(ns, &format!("link set {veth} master cni0 up")));
                for (t, m) in &ms {
                    let ip = if web { m.web_ip } else { m.probe_ip };
                    c.push(Cmd::ip(
                        pod_ns,
                        &format!("addr add {ip}/{} dev eth0{}", pod_len(t), t.addr_flags()),
                    ));
                }
                c.push(Cmd::ip(pod_ns, "link set eth0 up"));
                for (t, m) in &ms {
                    if shared {
                        c.push(t.ip_fam(pod_ns, &format!("route add {} dev eth0", m.pod_gateway)));
                    }
                    c.push(t.ip_fam(pod_ns, &format!("route add default via {}", m.pod_gateway)));
                }
                // Unprivileged ICMP echo sockets, as a pod spec's safe sysctl would allow
                // (the IPv4 key governs ICMPv6 echo sockets too).
                c.push(Cmd::sysctl(
                    pod_ns,
                    "net.ipv4.ping_group_range=0 2147483647",
                ));
            }
        }
        // Routes, once every link is up.
        for t in &views {
            c.extend(t.route_cmds());
        }
        // The cluster's Services: the DNS pod, then every node's kube-proxy rules.
        c.extend(self.dns_pod_cmds());
        c.extend(self.hairpin_cmds());
        for t in &views {
            for n in self.all_nodes() {
                c.extend(t.service_cmds(n.index));
            }
        }
        c
    }

    /// This family's routes: the router's to every node's pods, each node's to the other
    /// zones' underlays (via its zone's router) and to every other node's pods.
    fn route_cmds(&self) -> Vec<Cmd> {
        let router = self.router_ns();
        let mut c = Vec::new();
        for n in self.all_nodes() {
            for r in &n.pod_routes {
                c.push(self.ip_fam(&router, &format!("route add {r} via {}", n.node_ip)));
            }
        }
        for a in self.all_nodes() {
            for z in (1..=self.zones).filter(|&z| z != a.zone) {
                c.push(self.ip_fam(
                    &a.ns,
                    &format!(
                        "route add {} via {}",
                        self.underlay(z),
                        self.router_ip(a.zone)
                    ),
                ));
            }
            for b in self.all_nodes().into_iter().filter(|b| b.index != a.index) {
                for r in &b.pod_routes {
                    c.push(self.ip_fam(
                        &a.ns,
                        &format!("route add {r} via {}", self.next_hop(a.index, b.index)),
                    ));
                }
            }
        }
        c
    }

    /// `ip route flush cache` in every namespace (forgets learned path MTUs).
    pub fn flush_cache_cmds(&self) -> Vec<Cmd> {
        let views = self.views();
        self.namespaces()
            .iter()
            .flat_map(|ns| {
                views
                    .iter()
                    .map(|t| t.ip_fam(ns, "route flush cache").tolerant())
            })
            .collect()
    }
}

/// The commands that delete the given namespaces (those this prefix owns; others are ignored).
/// Deleting a namespace removes every link, address, route and nftables table in it.
pub fn down_cmds(prefix: &str, existing: &[String]) -> Vec<Cmd> {
    existing
        .iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .map(|ns| Cmd::new("ip", &["netns", "del", ns]).tolerant())
        .collect()
}
