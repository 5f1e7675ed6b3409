//! End-to-end, the lab's Services and DNS (issue 25, step 5): a real lab through the binary,
//! then from pod namespaces: the agents' ClusterIP reaches an agent (drawn at random), the DNS
//! VIP answers the zone over UDP and TCP, and each Service fault (`kube-proxy`, `kube-proxy
//! stale`, `dns-down`, `dns-from`, `conntrack`) breaks exactly what it should from the affected
//! node's pods and not from another node's; `lab clear` restores it.
//!
//! Needs root (network namespaces); without it every test prints why and returns.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use meshprobe::lab::dns::{self, Answer, RecordType, ResponseCode};
use meshprobe::lab::netns;
use meshprobe::lab::plan::services::{AGENTS_NAME, AGENTS_VIP_NAME, DNS_NAME, DNS_PORT};
use meshprobe::lab::plan::{IpFamily, Topology, AGENT_PORT};
use support::eventually;
use support::lab::Lab;
use support::net::metric;
use support::sys::root_or_skip;

/// A check expected to fail fails within this (a dropped packet is a timeout).
const FAIL_WAIT: Duration = Duration::from_millis(1500);
/// A check expected to pass gets this long per attempt, and is retried until [`PASS_WITHIN`]
/// (the machine is shared: one slow answer is not a broken Service).
const PASS_WAIT: Duration = Duration::from_secs(3);
const PASS_WITHIN: Duration = Duration::from_secs(15);

/// What a pod asks, from its namespace.
struct Pods {
    topo: Topology,
}

impl Pods {
    fn ns(&self, node: u16) -> String {
        self.topo.node(node).web_ns
    }

    fn dns_vip(&self) -> SocketAddr {
        SocketAddr::new(self.topo.dns_vip(), DNS_PORT)
    }

    /// GET the agents' ClusterIP from node `node`'s target pod: the agent that answered.
    fn vip(&self, node: u16, wait: Duration) -> Result<String, String> {
        let addr = SocketAddr::new(self.topo.agents_vip(), AGENT_PORT);
        self.get(node, addr, wait)
    }

    /// GET `/api/v1/results` at `addr` from node `node`'s target pod: the answering agent's node.
    fn get(&self, node: u16, addr: SocketAddr, wait: Duration) -> Result<String, String> {
        let ns = self.ns(node);
        let s = netns::connect_in_blocking(&ns, addr, wait)
            .map_err(|e| format!("connect {addr} from {ns}: {e}"))?;
        let (code, body) = netns::http_get_blocking(s, "lab", "/api/v1/results", wait)
            .map_err(|e| format!("GET {addr} from {ns}: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {addr} from {ns}: HTTP {code}, not JSON: {e}"))?;
        v["node"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("GET {addr} from {ns}: HTTP {code}, no node in {v}"))
    }

    /// Resolve `name` through the DNS VIP from node `node`'s target pod.
    fn dns(&self, node: u16, name: &str, tcp: bool, wait: Duration) -> Result<Answer, String> {
        let (ns, server) = (self.ns(node), self.dns_vip());
        let rtype = dns::rtype_for(server.ip());
        let r = if tcp {
            dns::query_tcp_in(&ns, server, name, rtype, wait)
        } else {
            dns::query_udp_in(&ns, server, name, rtype, wait)
        };
        r.map_err(|e| format!("{name} via {server} ({}) from {ns}: {e}", proto(tcp)))
    }

    /// The VIP of the agents, resolved over UDP and TCP: answers with exactly that address.
    fn dns_ok(&self, node: u16, tcp: bool, wait: Duration) -> Result<(), String> {
        let a = self.dns(node, AGENTS_VIP_NAME, tcp, wait)?;
        if a.rcode == ResponseCode::NoError && a.ips == [self.topo.agents_vip()] {
            Ok(())
        } else {
            Err(format!("{AGENTS_VIP_NAME} from node-{node}: {a:?}"))
        }
    }

    /// Node `node`'s pods reach the agents' VIP and resolve over UDP and TCP (retried, bounded).
    fn assert_all_pass(&self, node: u16, what: &str) {
        for (check, name) in [
            (0, "the agents' VIP"),
            (1, "DNS over UDP"),
            (2, "DNS over TCP"),
        ] {
            let mut last = String::new();
            eventually(
                PASS_WITHIN,
                &format!("{what}: {name} from node-{node}"),
                || {
                    let r = match check {
                        0 => self.vip(node, PASS_WAIT).map(|_| ()),
                        1 => self.dns_ok(node, false, PASS_WAIT),
                        _ => self.dns_ok(node, true, PASS_WAIT),
                    };
                    if let Err(e) = &r {
                        if *e != last {
                            eprintln!("  {what}: {name} from node-{node} not yet: {e}");
                            last = e.clone();
                        }
                    }
                    r.is_ok()
                },
            );
        }
    }
}

fn proto(tcp: bool) -> &'static str {
    if tcp {
        "tcp"
    } else {
        "udp"
    }
}

/// `f`'s first success, tried until [`PASS_WITHIN`] (each attempt bounded by its own wait);
/// panics with the last error after that.
fn pass<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PASS_WITHIN;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(e) => {
                eprintln!("  {what}: not yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// `r` is an error; what it was is printed (what the pods see under the fault).
fn assert_fails<T: std::fmt::Debug>(r: Result<T, String>, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected a failure, got {v:?}"),
        Err(e) => eprintln!("  {what}: fails as it should: {e}"),
    }
}

fn ips(list: &[IpAddr]) -> BTreeSet<IpAddr> {
    list.iter().copied().collect()
}

#[test]
fn services_and_dns_answer_and_each_service_fault_breaks_only_its_place() {
    if !root_or_skip("the lab's Services suite needs root (network namespaces)") {
        return;
    }
    let t0 = Instant::now();
    let prefix = format!("mps{}", std::process::id() % 100_000);
    let lab = Lab::up_with(&prefix, 4, 2, &["--mtu-interval", "0s"]);
    let topo = Topology::new(&prefix, 4, 2).unwrap();
    let pods = Pods { topo: topo.clone() };

    // The start-up summary and status name the Services; services.json holds them.
    let up_log = std::fs::read_to_string(&lab.log).unwrap_or_default();
    assert!(
        up_log.contains("kube-dns       198.18.96.10:53"),
        "{up_log}"
    );
    let st = lab.status();
    assert_eq!(st["dns_answering"], true, "{st}");
    assert_eq!(
        st["services"]["families"][0]["agents"]["vip"],
        "198.18.96.20"
    );

    // Clean: every node's pods reach the VIP and resolve over both transports.
    for n in 1..=4 {
        pods.assert_all_pass(n, "clean");
    }
    // The ClusterIP spreads over the agents (numgen random: 16 draws miss an agent of four
    // with probability 4·(3/4)^16 ≈ 4 %, so the bar is two agents, missed with ~1e-8).
    let mut seen = BTreeSet::new();
    for _ in 0..16 {
        if let Ok(node) = pods.vip(2, PASS_WAIT) {
            seen.insert(node);
        }
    }
    assert!(seen.len() >= 2, "the VIP reached only {seen:?}");
    // A pod reaching itself through the VIP (hairpin): the agents' own pods, every draw.
    for n in [1, 3] {
        let addr = SocketAddr::new(topo.agents_vip(), AGENT_PORT);
        for _ in 0..8 {
            let ns = topo.node(n).probe_ns;
            eventually(PASS_WITHIN, &format!("hairpin from {ns}"), || {
                netns::connect_in_blocking(&ns, addr, PASS_WAIT)
                    .and_then(|s| netns::http_get_blocking(s, "lab", "/readyz", PASS_WAIT))
                    .is_ok_and(|(code, _)| code == 200)
            });
        }
    }
    // The zone: the headless name is every agent pod, the VIPs and nodes theirs, the rest NXDOMAIN.
    let agents: Vec<IpAddr> = topo.all_nodes().iter().map(|n| n.probe_ip).collect();
    let ask = |node: u16, name: &str, tcp: bool| {
        pass(&format!("{name} ({}) from node-{node}", proto(tcp)), || {
            pods.dns(node, name, tcp, PASS_WAIT)
        })
    };
    for tcp in [false, true] {
        let a = ask(3, AGENTS_NAME, tcp);
        assert_eq!(ips(&a.ips), ips(&agents), "{}", proto(tcp));
        let a = ask(3, DNS_NAME, tcp);
        assert_eq!(a.ips, [topo.dns_vip()]);
        let a = ask(3, "node-2.nodes.cluster.local.", tcp);
        assert_eq!(a.ips, [topo.node(2).node_ip]);
        let a = ask(3, "nobody.meshprobe.svc.cluster.local.", tcp);
        assert_eq!(
            (a.rcode, a.ips.len()),
            (ResponseCode::NXDomain, 0),
            "{}",
            proto(tcp)
        );
    }
    let a = ask(1, "node-4.nodes.cluster.local.", false);
    assert_eq!(a.ips, [topo.node(4).node_ip], "from the DNS pod's own node");
    eprintln!("clean checks: {:.1}s", t0.elapsed().as_secs_f64());

    // Bad arguments: exit 2, naming what is wrong, nothing applied.
    for (bad, says) in [
        (
            &["fault", "kube-proxy", "node-9"][..],
            "unknown node \"node-9\"",
        ),
        (
            &["fault", "kube-proxy", "node-2", "old"],
            "expected `stale`",
        ),
        (
            &["fault", "dns-down", "node-1"],
            "usage: meshprobe lab fault dns-down",
        ),
        (
            &["fault", "dns-from"],
            "usage: meshprobe lab fault dns-from NODE",
        ),
        (&["fault", "conntrack", "zone-a"], "unknown node \"zone-a\""),
        (
            &["fault", "policy", "node-2", "--stale"],
            "--stale on `fault policy`",
        ),
    ] {
        let out = lab.cli(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    assert_eq!(lab.status()["state"]["faults"], serde_json::json!([]));

    // kube-proxy node-2: node-2's pods lose every ClusterIP; the agents still answer by pod IP
    // from there; node-4 (same zone) keeps them.
    lab.ok(&["fault", "kube-proxy", "node-2"]);
    assert_fails(
        pods.vip(2, FAIL_WAIT),
        "kube-proxy node-2: the VIP from node-2",
    );
    assert_fails(
        pods.dns_ok(2, false, FAIL_WAIT),
        "kube-proxy node-2: DNS from node-2",
    );
    let by_pod_ip = SocketAddr::new(topo.node(3).probe_ip, AGENT_PORT);
    let answered = pass("kube-proxy node-2: an agent by pod IP from node-2", || {
        pods.get(2, by_pod_ip, PASS_WAIT)
    });
    assert_eq!(answered, "node-3");
    pods.assert_all_pass(4, "kube-proxy node-2");
    lab.ok(&["clear"]);
    pods.assert_all_pass(2, "kube-proxy node-2 cleared");

    // kube-proxy node-2 --stale: the agents' endpoints on node-2 are pods that are gone; DNS's
    // rule is still right.
    lab.ok(&["fault", "kube-proxy", "node-2", "--stale"]);
    assert_fails(
        pods.vip(2, FAIL_WAIT),
        "kube-proxy node-2 stale: the VIP from node-2",
    );
    pass("kube-proxy node-2 stale: DNS from node-2", || {
        pods.dns_ok(2, false, PASS_WAIT)
    });
    pods.assert_all_pass(4, "kube-proxy node-2 stale");
    lab.ok(&["clear", "kube-proxy", "node-2"]);
    pods.assert_all_pass(2, "kube-proxy node-2 stale cleared");

    // dns-down: nobody resolves, over either transport; the other Service still works.
    lab.ok(&["fault", "dns-down"]);
    for n in [1, 2, 3] {
        for tcp in [false, true] {
            assert_fails(
                pods.dns_ok(n, tcp, FAIL_WAIT),
                &format!("dns-down: DNS over {} from node-{n}", proto(tcp)),
            );
        }
    }
    pass("dns-down: the agents' VIP from node-2", || {
        pods.vip(2, PASS_WAIT)
    });
    assert_eq!(lab.status()["dns_answering"], false);
    lab.ok(&["clear"]);
    assert_eq!(lab.status()["dns_answering"], true);
    for n in [1, 2, 3] {
        pods.assert_all_pass(n, "dns-down cleared");
    }

    // dns-from node-3: node-3's pods cannot resolve (nor reach the DNS pod's port 53 by its
    // pod IP); node-3 still reaches the agents' VIP; node-1 (the DNS pod's node) and node-4
    // still resolve.
    lab.ok(&["fault", "dns-from", "node-3"]);
    for tcp in [false, true] {
        assert_fails(
            pods.dns_ok(3, tcp, FAIL_WAIT),
            &format!("dns-from node-3: DNS over {} from node-3", proto(tcp)),
        );
    }
    let direct = SocketAddr::new(topo.dns_pod_ip(), DNS_PORT);
    assert_fails(
        dns::query_udp_in(
            &pods.ns(3),
            direct,
            AGENTS_VIP_NAME,
            RecordType::A,
            FAIL_WAIT,
        )
        .map_err(|e| e.to_string()),
        "dns-from node-3: the DNS pod by its IP from node-3",
    );
    pass("dns-from node-3: the agents' VIP from node-3", || {
        pods.vip(3, PASS_WAIT)
    });
    pods.assert_all_pass(1, "dns-from node-3");
    pods.assert_all_pass(4, "dns-from node-3");
    lab.ok(&["clear"]);
    pods.assert_all_pass(3, "dns-from node-3 cleared");

    // conntrack node-4: a connection open before the fault keeps working; every new flow from
    // node-4's pods fails; node-2's pods still resolve (the DNS pod is on node-1).
    let rtype = dns::rtype_for(topo.dns_vip());
    let mut open = pass("conntrack node-4: a TCP connection to DNS first", || {
        let mut s = dns::connect_tcp_in(&pods.ns(4), pods.dns_vip(), PASS_WAIT)
            .map_err(|e| e.to_string())?;
        dns::query_tcp_on(&mut s, AGENTS_VIP_NAME, rtype, PASS_WAIT).map_err(|e| e.to_string())?;
        Ok(s)
    });
    lab.ok(&["fault", "conntrack", "node-4"]);
    for tcp in [false, true] {
        assert_fails(
            pods.dns_ok(4, tcp, FAIL_WAIT),
            &format!(
                "conntrack node-4: a new DNS flow over {} from node-4",
                proto(tcp)
            ),
        );
    }
    assert_fails(
        pods.vip(4, FAIL_WAIT),
        "conntrack node-4: the VIP from node-4",
    );
    let a = dns::query_tcp_on(&mut open, AGENTS_VIP_NAME, rtype, PASS_WAIT)
        .expect("conntrack node-4: the connection open before the fault still answers");
    assert_eq!(a.ips, [topo.agents_vip()]);
    for tcp in [false, true] {
        eventually(PASS_WITHIN, "conntrack node-4: DNS from node-2", || {
            pods.dns_ok(2, tcp, PASS_WAIT).is_ok()
        });
    }
    lab.ok(&["clear"]);
    pods.assert_all_pass(4, "conntrack node-4 cleared");

    assert_eq!(lab.status()["state"]["faults"], serde_json::json!([]));
    eprintln!("services suite: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Node `node`'s `meshprobe_check_up` for `dns` and `service` (None: no series, or no answer).
fn checks_up(lab: &Lab, node: u16) -> (Option<f64>, Option<f64>) {
    let text = lab
        .get(&format!("node-{node}"), "/metrics", Duration::from_secs(3))
        .map(|(_, body)| body)
        .unwrap_or_default();
    (
        metric(&text, "meshprobe_check_up", r#"check="dns""#),
        metric(&text, "meshprobe_check_up", r#"check="service""#),
    )
}

/// One node's `apiserver` (through the ClusterIP) and `apiserver_endpoints` checks.
fn api_up(lab: &Lab, node: u16) -> (Option<f64>, Option<f64>) {
    let text = lab
        .get(&format!("node-{node}"), "/metrics", Duration::from_secs(3))
        .map(|(_, body)| body)
        .unwrap_or_default();
    (
        metric(&text, "meshprobe_check_up", r#"check="apiserver""#),
        metric(
            &text,
            "meshprobe_check_up",
            r#"check="apiserver_endpoints""#,
        ),
    )
}

/// Every node's API server checks up, except `node`'s as `theirs`.
fn api_is(lab: &Lab, node: u16, theirs: (f64, f64)) -> bool {
    (1..=lab.nodes).all(|n| {
        let (v, e) = if n == node { theirs } else { (1.0, 1.0) };
        api_up(lab, n) == (Some(v), Some(e))
    })
}

/// Every node's checks as `want`, except `node`'s as `theirs`.
fn checks_are(lab: &Lab, node: u16, theirs: (f64, f64), want: (f64, f64)) -> bool {
    (1..=lab.nodes).all(|n| {
        let (d, s) = if n == node { theirs } else { want };
        checks_up(lab, n) == (Some(d), Some(s))
    })
}

/// The agents' own `dns` and `service` checks (issue 25, steps 1-2) through the lab's DNS VIP
/// and agents' VIP: all up on a clean lab; `dns-from node-3` takes node-3's `dns` check down
/// and nothing else; `kube-proxy node-2` both of node-2's (its DNS goes through a ClusterIP
/// too); `lab clear` brings them back.
#[test]
fn the_agents_checks_go_down_on_the_faulted_node_only() {
    if !root_or_skip("the lab's Services suite needs root (network namespaces)") {
        return;
    }
    let t0 = Instant::now();
    let prefix = format!("mpk{}", std::process::id() % 100_000);
    let lab = Lab::up_with(&prefix, 4, 2, &["--mtu-interval", "0s"]);
    let up = (1.0, 1.0);
    // A check runs every 1 s interval and fails within its 500 ms timeout.
    let within = Duration::from_secs(15);
    eventually(within, "every node's checks up on a clean lab", || {
        checks_are(&lab, 1, up, up) && api_is(&lab, 1, up)
    });
    let r = lab.get_json("node-1", "/api/v1/results", Duration::from_secs(3));
    // The API server stand-in, verified for kubernetes.default.svc with the lab's CA.
    assert_eq!(r["checks"]["apiserver"]["target"], "198.18.96.1:443", "{r}");
    assert_eq!(
        r["checks"]["apiserver_endpoints"]["target"], "198.18.1.11:6443",
        "{r}"
    );
    assert_eq!(r["checks"]["dns"]["target"], AGENTS_NAME, "{r}");
    assert_eq!(r["checks"]["dns"]["answers"], 4, "the 4 agents: {r}");
    assert_eq!(r["checks"]["service"]["target"], "198.18.96.20:9464", "{r}");

    lab.ok(&["fault", "dns-from", "node-3"]);
    let faulted = Instant::now();
    eventually(
        within,
        "dns-from node-3: node-3's dns check down only",
        || checks_are(&lab, 3, (0.0, 1.0), up) && api_is(&lab, 3, up),
    );
    eprintln!(
        "dns-from node-3 seen in {:.1}s",
        faulted.elapsed().as_secs_f64()
    );
    let r = lab.get_json("node-3", "/api/v1/results", Duration::from_secs(3));
    assert_eq!(r["checks"]["dns"]["last_error"]["kind"], "timeout", "{r}");
    lab.ok(&["clear"]);
    eventually(within, "dns-from cleared: all up", || {
        checks_are(&lab, 1, up, up)
    });

    lab.ok(&["fault", "kube-proxy", "node-2"]);
    let faulted = Instant::now();
    eventually(
        within,
        "kube-proxy node-2: node-2's checks down only (the API server's ClusterIP too, not its endpoint)",
        || checks_are(&lab, 2, (0.0, 0.0), up) && api_is(&lab, 2, (0.0, 1.0)),
    );
    eprintln!(
        "kube-proxy node-2 seen in {:.1}s",
        faulted.elapsed().as_secs_f64()
    );
    let r = lab.get_json("node-2", "/api/v1/results", Duration::from_secs(3));
    eprintln!("node-2 checks under kube-proxy: {}", r["checks"]);
    lab.ok(&["clear"]);
    eventually(within, "kube-proxy cleared: all up", || {
        checks_are(&lab, 1, up, up) && api_is(&lab, 1, up)
    });

    // Node-3's pods cut off from the API server: both its API server checks, nothing else.
    lab.ok(&["fault", "apiserver-from", "node-3"]);
    let faulted = Instant::now();
    eventually(
        within,
        "apiserver-from node-3: node-3's API server checks down only",
        || checks_are(&lab, 1, up, up) && api_is(&lab, 3, (0.0, 0.0)),
    );
    eprintln!(
        "apiserver-from node-3 seen in {:.1}s",
        faulted.elapsed().as_secs_f64()
    );
    let r = lab.get_json("node-3", "/api/v1/results", Duration::from_secs(3));
    assert_eq!(
        r["checks"]["apiserver_endpoints"]["last_error"]["kind"], "timeout",
        "{r}"
    );
    lab.ok(&["clear"]);
    eventually(within, "apiserver-from cleared: all up", || {
        checks_are(&lab, 1, up, up) && api_is(&lab, 1, up)
    });
    eprintln!("agents' checks suite: {:.1}s", t0.elapsed().as_secs_f64());
}

/// The same Services in an IPv6 lab (`ip6 mplab_svc`, AAAA records): the VIPs answer from every
/// node, the headless name is every agent's IPv6 address, and `kube-proxy` and `dns-from` break
/// their node only.
#[test]
fn ipv6_services_answer_and_break_per_node() {
    if !root_or_skip("the lab's Services suite needs root (network namespaces)") {
        return;
    }
    let t0 = Instant::now();
    let prefix = format!("mps6{}", std::process::id() % 10_000);
    let lab = Lab::up_with(
        &prefix,
        4,
        2,
        &["--mtu-interval", "0s", "--ip-family", "ipv6"],
    );
    let topo = Topology::new(&prefix, 4, 2)
        .unwrap()
        .with_family(IpFamily::Ipv6)
        .unwrap();
    assert!(topo.agents_vip().is_ipv6() && topo.dns_vip().is_ipv6());
    let pods = Pods { topo: topo.clone() };
    for n in 1..=4 {
        pods.assert_all_pass(n, "ipv6 clean");
    }
    let a = pass("ipv6: the headless name from node-2", || {
        pods.dns(2, AGENTS_NAME, false, PASS_WAIT)
    });
    let agents: Vec<IpAddr> = topo.all_nodes().iter().map(|n| n.probe_ip).collect();
    assert_eq!(ips(&a.ips), ips(&agents));
    // The agents' checks ask AAAA of the IPv6 DNS VIP, and reach the IPv6 agents' VIP.
    eventually(
        Duration::from_secs(15),
        "ipv6: every node's checks up",
        || checks_are(&lab, 1, (1.0, 1.0), (1.0, 1.0)),
    );
    let r = lab.get_json("node-2", "/api/v1/results", Duration::from_secs(3));
    assert_eq!(r["checks"]["dns"]["record_type"], "AAAA", "{r}");

    lab.ok(&["fault", "kube-proxy", "node-2"]);
    assert_fails(
        pods.vip(2, FAIL_WAIT),
        "ipv6 kube-proxy node-2: the VIP from node-2",
    );
    pods.assert_all_pass(4, "ipv6 kube-proxy node-2");
    lab.ok(&["clear"]);
    pods.assert_all_pass(2, "ipv6 kube-proxy node-2 cleared");

    lab.ok(&["fault", "dns-from", "node-3"]);
    for tcp in [false, true] {
        assert_fails(
            pods.dns_ok(3, tcp, FAIL_WAIT),
            &format!("ipv6 dns-from node-3: DNS over {} from node-3", proto(tcp)),
        );
    }
    pods.assert_all_pass(1, "ipv6 dns-from node-3");
    lab.ok(&["clear"]);
    pods.assert_all_pass(3, "ipv6 dns-from node-3 cleared");
    eprintln!("ipv6 services suite: {:.1}s", t0.elapsed().as_secs_f64());
}
