//! An IPv6-only mesh: three real agents and a web target on ULA addresses (fd00:77::/32) inside
//! a network namespace of the test's own, every layer probed over IPv6 — ICMPv6 echo to pod and
//! node addresses, HTTP to the agents and the target, TCP to a closed port (refused), path MTU —
//! the mesh view gathered over IPv6, the closed port diagnosed as the application (its address
//! written `[v6]:port`), an on-demand probe from every node, and a fault on one node's pod
//! address diagnosed as that node's pod network. Issue 24's first check that nothing on the probing and diagnosis path
//! assumes IPv4. Needs root (network namespaces, raw ICMPv6 sockets).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::Agent;
use support::sys::{peers_file, root_or_skip, sh, spawn_logged, Netns, EXE};

const PORT: u16 = 9464;

fn node_ip(i: u8) -> String {
    format!("fd00:77::{i}")
}

fn pod_ip(i: u8) -> String {
    format!("fd00:77:1::{i}")
}

/// The web target (`meshprobe serve`) in the namespace; killed on drop.
struct Web(Child);

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `f` every 250 ms until it returns `Ok`, or panic with its last `Err` after `limit`.
fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(v) => {
                eprintln!("{what}: {:.1} s", t0.elapsed().as_secs_f64());
                return v;
            }
            Err(e) if t0.elapsed() >= limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn layer<'a>(r: &'a Value, kind: &str, name: &str, layer: &str) -> &'a Value {
    let key = if kind == "peers" { "node" } else { "name" };
    r[kind]
        .as_array()
        .and_then(|l| l.iter().find(|d| d[key] == name))
        .map_or(&Value::Null, |d| &d["layers"][layer])
}

fn findings(d: &Value) -> Vec<(String, Vec<String>)> {
    d["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let nodes = f["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            (f["cause"].as_str().unwrap_or("?").to_string(), nodes)
        })
        .collect()
}

#[test]
fn an_ipv6_only_mesh_is_probed_on_every_layer_and_diagnosed() {
    if !root_or_skip("the IPv6 mesh test needs root (network namespaces, raw ICMPv6 sockets)") {
        return;
    }
    let ns = format!("mp6m{}", std::process::id() % 100_000);
    let _guard = Netns(vec![ns.clone()]);
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    // Loopback addresses: no duplicate address detection, no neighbour discovery.
    for i in 1..=3 {
        for a in [node_ip(i), pod_ip(i)] {
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{a}/128"),
                "dev",
                "lo",
            ]);
        }
    }
    sh(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        "fd00:77:1::9/128",
        "dev",
        "lo",
    ]);

    let web_log =
        std::env::temp_dir().join(format!("meshprobe-ipv6-web-{}.log", std::process::id()));
    let _web = Web(spawn_logged(
        Command::new("ip").args([
            "netns",
            "exec",
            &ns,
            EXE,
            "serve",
            "--listen",
            "[fd00:77:1::9]:8080",
            "--name",
            "web",
        ]),
        &web_log,
    )
    .expect("spawn meshprobe serve"));

    let mut text = String::from("peers:\n");
    for i in 1..=3u8 {
        text.push_str(&format!(
            "  - {{node: node-{i}, node_ip: \"{}\", pod_ip: \"{}\", zone: zone-{}, port: {PORT}}}\n",
            node_ip(i),
            pod_ip(i),
            if i == 2 { "b" } else { "a" },
        ));
    }
    text.push_str(
        "targets:\n  - {name: web, ip: \"fd00:77:1::9\", port: 8080, protocol: http, node: node-1}\n  - {name: closed, ip: \"fd00:77:1::2\", port: 1, protocol: tcp, node: node-2}\n",
    );
    let (_dir, peers) = peers_file("ipv6-mesh", &text);
    let p = peers.display().to_string();
    let args = [
        "--peers-file",
        &p,
        "--interval",
        "1s",
        "--timeout",
        "500ms",
        "--window",
        "8s",
        "--icmp-count",
        "2",
        "--mtu-interval",
        "2s",
    ];
    let mut agents = Vec::new();
    for i in 1..=3u8 {
        let addr: SocketAddr = format!("[{}]:{PORT}", pod_ip(i)).parse().unwrap();
        let a = Agent::spawn_in(Some(&ns), &format!("node-{i}"), addr, &args, &[])
            .expect("as root the agent opens its ICMPv6 sockets");
        agents.push(a);
    }

    // Every layer over IPv6, from node-1.
    let r = within(
        Duration::from_secs(15),
        "every layer answers over IPv6",
        || {
            let r = agents[0].json("/api/v1/results");
            let mut missing = Vec::new();
            for peer in ["node-2", "node-3"] {
                for l in ["icmp_pod", "icmp_node", "http"] {
                    if layer(&r, "peers", peer, l)["reachable"] != true {
                        missing.push(format!("{peer} {l}"));
                    }
                }
            }
            if layer(&r, "targets", "web", "http")["reachable"] != true {
                missing.push("web http".into());
            }
            let closed = layer(&r, "targets", "closed", "tcp");
            if closed["last_error"]["kind"] != "refused" {
                missing.push(format!("closed tcp refused (got {closed})"));
            }
            if missing.is_empty() {
                Ok(r)
            } else {
                Err(format!("{missing:?}: {r}"))
            }
        },
    );
    let rtt = layer(&r, "peers", "node-2", "icmp_pod")["rtt_seconds"]["p50"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(rtt > 0.0 && rtt < 0.1, "ICMPv6 RTT p50 {rtt}: {r}");
    // The owners published: IPv6 addresses, the targets' nodes.
    assert_eq!(r["owners"]["nodes"][1]["pod_ip"], pod_ip(2), "{r}");

    // Path MTU over IPv6 (loopback: everything up to its MTU crosses).
    within(
        Duration::from_secs(20),
        "path MTU measured over IPv6",
        || {
            let r = agents[0].json("/api/v1/results");
            let got: Vec<Value> = r["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["node"] != "node-1")
                .map(|p| p["mtu"]["icmp_pod"].clone())
                .collect();
            // Loopback's MTU is 65536: every probe size up to the largest IPv6 packet crosses.
            let ok =
                |m: &Value| m["state"] == "ok" && m["path_mtu"].as_u64().is_some_and(|v| v > 1500);
            if got.len() == 2 && got.iter().all(ok) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );

    // The mesh view, gathered over IPv6: the closed port is the one finding (its pod answers
    // ICMPv6, TCP is refused: the application), written as an IPv6 socket address.
    let closed = ("application".to_string(), vec!["node-2".to_string()]);
    within(
        Duration::from_secs(10),
        "the mesh view has the one finding",
        || {
            let d = agents[0].json("/api/v1/diagnosis");
            let answered = d["agents_answered"].as_array().map_or(0, Vec::len);
            if answered == 3 && findings(&d) == [closed.clone()] {
                Ok(d)
            } else {
                Err(d.to_string())
            }
        },
    );
    let d = agents[0].json("/api/v1/diagnosis");
    let text = d["findings"][0].to_string();
    assert!(text.contains("closed ([fd00:77:1::2]:1)"), "{text}");
    assert!(text.contains("curl -gv http://[fd00:77:1::2]:1/"), "{text}");

    // The view saved with what it rests on replays offline to the same finding; an unknown
    // `include` is a 400 naming it.
    let saved = agents[0].json("/api/v1/diagnosis?include=inputs");
    assert_eq!(
        saved["inputs"]["agents"].as_array().map_or(0, Vec::len),
        3,
        "{saved}"
    );
    let file = std::env::temp_dir().join(format!("mp6-view-{}.json", std::process::id()));
    std::fs::write(&file, saved.to_string()).unwrap();
    let out = Command::new(EXE)
        .args([
            "diagnose",
            "--results",
            file.to_str().unwrap(),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let replay: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(findings(&replay), findings(&saved), "{replay}");
    assert_eq!(out.status.code(), Some(1), "{replay}");
    let (code, body) = agents[0]
        .get("/api/v1/diagnosis?include=everything")
        .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("include=everything: unknown"), "{body}");

    // On demand over IPv6: the web target from every node (the CLI asks node-1, which fans out
    // to the others over IPv6), one JSON document, exit 0.
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, EXE, "probe", "[fd00:77:1::9]:8080"])
        .args([
            "--http",
            "8080/",
            "--agent",
            &format!("http://[{}]:{PORT}", pod_ip(1)),
        ])
        .args(["-o", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(doc["verdict"]["reachable"], true, "{doc}");
    let mut sources: Vec<&str> = doc["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["node"].as_str())
        .collect();
    sources.sort();
    assert_eq!(sources, ["node-1", "node-2", "node-3"], "{doc}");

    // Everything sent to node-3's pod address is dropped (on loopback every source address is
    // the destination's own, so no source can be told apart): its pod network, not its node.
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "nft",
        &format!(
            "add table inet mp6t; add chain inet mp6t in {{ type filter hook input priority 0; }}; add rule inet mp6t in ip6 daddr {} drop",
            pod_ip(3)
        ),
    ]);
    let cni = ("cni".to_string(), vec!["node-3".to_string()]);
    within(Duration::from_secs(15), "cni on node-3 over IPv6", || {
        let d = agents[0].json("/api/v1/diagnosis");
        let mut f = findings(&d);
        f.sort();
        if f == [closed.clone(), cni.clone()] {
            Ok(())
        } else {
            Err(d.to_string())
        }
    });
    sh(&["ip", "netns", "exec", &ns, "nft", "delete table inet mp6t"]);
    within(Duration::from_secs(20), "back to the one finding", || {
        let d = agents[0].json("/api/v1/diagnosis");
        if findings(&d) == [closed.clone()] {
            Ok(())
        } else {
            Err(d.to_string())
        }
    });
}
