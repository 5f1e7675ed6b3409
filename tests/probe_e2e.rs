//! End-to-end on the real lab (root): `meshprobe probe` through node-1's agent against the
//! lab's target pod on node-3 (`web-node-3`, 198.19.3.11:8080, see crates/lab/src/plan.rs) — green
//! from every node on a clean lab; `policy` behind a `policy` fault; `application` behind
//! `reject`; `cni` with a `cni` fault on its node; a caution when the asked agent's own node is
//! cut off; and a refused target sends nothing (every agent's on-demand counters).
//!
//! Needs root (network namespaces); without it the test prints why and returns.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use meshprobe::lab::netns;
use serde_json::Value;
use support::lab::Lab;
use support::sys::{root_or_skip, EXE};
const WEB3: &str = "198.19.3.11:8080";

/// `meshprobe probe ARGS -o json` against `agent`: (exit code, the JSON document, stderr).
fn probe(agent: SocketAddr, args: &[&str]) -> (Option<i32>, Value, String) {
    let t = Instant::now();
    let out = Command::new(EXE)
        .arg("probe")
        .args(args)
        .args([
            "--agent",
            &format!("http://{agent}"),
            "-o",
            "json",
            "--timeout",
            "30s",
        ])
        .output()
        .expect("run meshprobe probe");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    eprintln!(
        "  probe {} -> exit {:?} in {:.2}s",
        args.join(" "),
        out.status.code(),
        t.elapsed().as_secs_f64()
    );
    (
        out.status.code(),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn causes(doc: &Value) -> Vec<String> {
    doc["verdict"]["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|x| x["cause"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The sum of an agent's `meshprobe_ondemand_*` samples whose name starts with `prefix`.
fn counter(agent: SocketAddr, prefix: &str) -> f64 {
    let s = TcpStream::connect_timeout(&agent, Duration::from_secs(2)).expect("agent proxy");
    let (code, body) =
        netns::http_get_blocking(s, "lab", "/metrics", Duration::from_secs(3)).expect("metrics");
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn on_demand_probe_on_the_lab() {
    if !root_or_skip("the on-demand probe end-to-end test needs root (network namespaces)") {
        return;
    }
    let prefix = format!("mpo{}", std::process::id() % 100_000);
    let lab = Lab::up_with(&prefix, 4, 2, &[]);
    let proxies = lab.proxies.clone();
    assert_eq!(proxies.len(), 4);
    let n1 = proxies["node-1"];
    let http = ["--http", "8080/healthz"];

    // Healthy: green from every node, exit 0, no finding.
    let (code, doc, err) = probe(n1, &[WEB3, http[0], http[1]]);
    assert_eq!(code, Some(0), "{doc:#}\n{err}");
    let sources = doc["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 4, "{doc:#}");
    for s in sources {
        assert_eq!(s["ok"], true, "{s:#}");
        assert_eq!(
            s["checks"].as_array().map(Vec::len),
            Some(2),
            "icmp and http: {s:#}"
        );
    }
    assert_eq!(doc["verdict"]["reachable"], true);
    assert_eq!(doc["verdict"]["healthy"], true, "{doc:#}");
    assert_eq!(doc["accepted"]["target"]["node"], "node-3");
    // Progress: one line per source node as it answered.
    for n in ["node-1", "node-2", "node-3", "node-4"] {
        assert!(
            err.contains(&format!("  {n}")),
            "no progress line for {n}: {err}"
        );
    }

    // A node name resolves through the peer set.
    let (code, doc, _) = probe(n1, &["node-2"]);
    assert_eq!(code, Some(0), "{doc:#}");

    // Faults on node-3's target pod, then on node-3's pod network.
    for (fault, want) in [
        (&["policy", "node-3"][..], "policy"),
        (&["reject", "node-3"][..], "application"),
        (&["cni", "node-3"][..], "cni"),
    ] {
        let mut args = vec!["fault"];
        args.extend_from_slice(fault);
        lab.ok(&args);
        let (code, doc, err) = probe(n1, &[WEB3, http[0], http[1]]);
        assert_eq!(code, Some(1), "{}: {doc:#}\n{err}", fault.join(" "));
        assert_eq!(doc["verdict"]["reachable"], false);
        // Exactly one finding, of the right cause, on node-3.
        let c = causes(&doc);
        assert_eq!(c, [want], "{}: {c:?}\n{doc:#}", fault.join(" "));
        let f = &doc["verdict"]["findings"][0];
        assert_eq!(
            f["nodes"],
            serde_json::json!(["node-3"]),
            "{}",
            fault.join(" ")
        );
        assert!(!f["evidence"].as_array().unwrap().is_empty());
        assert!(!f["next_steps"].as_array().unwrap().is_empty());
        if want == "cni" {
            // node-3's agent sits on the broken pod network: its silence is a line, not an error.
            assert_eq!(
                doc["verdict"]["agents_unreachable"],
                serde_json::json!(["node-3"])
            );
        }
        lab.ok(&["clear"]);
    }
    // The asked agent's own pod network broken: it reaches nobody, and says its view is suspect.
    lab.ok(&["fault", "cni", "node-1"]);
    let (code, doc, err) = probe(n1, &[WEB3, http[0], http[1]]);
    assert_eq!(code, Some(1), "{doc:#}\n{err}");
    let caution = doc["verdict"]["caution"].as_str().unwrap_or("");
    assert!(
        caution.contains("the fault may be on node-1 itself"),
        "{doc:#}"
    );
    lab.ok(&["clear"]);

    // Cleared: green again.
    let (code, doc, _) = probe(n1, &[WEB3, http[0], http[1]]);
    assert_eq!(code, Some(0), "after clear: {doc:#}");

    // Refused targets send nothing: no on-demand check starts on any agent.
    let before: Vec<f64> = proxies
        .values()
        .map(|a| counter(*a, "meshprobe_ondemand_probes_total"))
        .collect();
    let refused_before = counter(
        n1,
        "meshprobe_ondemand_requests_total{outcome=\"target_not_allowed\"}",
    );
    for target in ["198.18.200.5:80", "10.1.2.3"] {
        let (code, _, err) = probe(n1, &[target, "--tcp", "80"]);
        assert_eq!(code, Some(2), "{target}: {err}");
        assert!(err.contains("outside the allowed CIDRs"), "{err}");
    }
    let after: Vec<f64> = proxies
        .values()
        .map(|a| counter(*a, "meshprobe_ondemand_probes_total"))
        .collect();
    assert_eq!(before, after, "a refused request started checks");
    assert!(
        before.iter().all(|c| *c > 0.0),
        "the counter counts: {before:?}"
    );
    assert_eq!(
        counter(
            n1,
            "meshprobe_ondemand_requests_total{outcome=\"target_not_allowed\"}"
        ),
        refused_before + 2.0
    );
}

/// One source's MTU check: (node, state, path MTU, error text).
type MtuLine = (String, String, Option<u64>, String);

/// The MTU check of each source in `doc`.
fn mtu_checks(doc: &Value) -> Vec<MtuLine> {
    doc["sources"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|src| {
                    let c = src["checks"]
                        .as_array()
                        .and_then(|c| c.iter().find(|c| c["check"] == "mtu"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    (
                        src["node"].as_str().unwrap_or("?").to_string(),
                        c["mtu_state"].as_str().unwrap_or("none").to_string(),
                        c["path_mtu"].as_u64(),
                        c["error_text"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `meshprobe probe TARGET --icmp 0 --mtu --from FROM`, timed: (the MTU checks, seconds).
fn mtu_probe(agent: SocketAddr, target: &str, from: &str) -> (Vec<MtuLine>, f64) {
    let t = Instant::now();
    let (code, doc, err) = probe(agent, &[target, "--icmp", "0", "--mtu", "--from", from]);
    let took = t.elapsed().as_secs_f64();
    assert!(matches!(code, Some(0 | 1)), "{doc:#}\n{err}");
    let checks = mtu_checks(&doc);
    assert_eq!(
        checks.len(),
        from.split(',').count(),
        "one line per source: {doc:#}"
    );
    for (node, state, mtu, text) in &checks {
        eprintln!("    {node} -> {target}: {state} {mtu:?} {text}");
    }
    (checks, took)
}

/// The on-demand path-MTU check concludes within its budget against the lab's MTU faults:
/// `pmtu-blackhole node-2 1400` reads `blackhole` (largest size that passed, and why) toward
/// and from node-2; `mtu node-2 1400` reads `mismatch` 1400 from node-2 (node-2 itself says
/// frag-needed), and toward node-2 its veth drops oversized frames silently (a black hole at
/// 1404: a veth accepts MTU + 4 bytes).
#[test]
fn on_demand_mtu_check_on_the_lab() {
    if !root_or_skip("the on-demand MTU end-to-end test needs root (network namespaces)") {
        return;
    }
    // The budget of one MTU check (src/ondemand/run.rs MTU_BUDGET), plus the CLI's start-up.
    let budget = meshprobe::ondemand::run::MTU_BUDGET.as_secs_f64() + 1.0;
    let prefix = format!("mpu{}", std::process::id() % 100_000);
    let lab = Lab::up_with(&prefix, 4, 2, &[]);
    let n1 = lab.proxies["node-1"];
    let pod1 = "198.19.1.10";
    let pod2 = "198.19.2.10";
    let others = "node-1,node-3,node-4";
    let mut timings = Vec::new();

    // Clean: ok at 1500, in a round trip.
    let (checks, took) = mtu_probe(n1, pod2, others);
    for (node, state, mtu, _) in &checks {
        assert_eq!((state.as_str(), *mtu), ("ok", Some(1500)), "{node}");
    }
    timings.push(("clean, toward node-2's pod", took));

    lab.ok(&["fault", "pmtu-blackhole", "node-2", "1400"]);
    // Toward node-2 the search ends at 1404 (its veth's MTU + 4), from node-2 at its own 1400.
    for (target, from, want, what) in [
        (pod2, others, 1404, "pmtu-blackhole, toward node-2's pod"),
        (pod1, "node-2", 1400, "pmtu-blackhole, from node-2"),
    ] {
        let (checks, took) = mtu_probe(n1, target, from);
        for (node, state, mtu, text) in &checks {
            assert_eq!(state, "blackhole", "{what}, {node}: {text}");
            assert_eq!(*mtu, Some(want), "{what}, {node}: {text}");
            assert!(text.contains("no ICMP error"), "{what}, {node}: {text}");
        }
        assert!(took < budget, "{what}: {took:.1}s");
        timings.push((what, took));
    }
    lab.ok(&["clear"]);

    lab.ok(&["fault", "mtu", "node-2", "1400"]);
    let (checks, took) = mtu_probe(n1, pod1, "node-2");
    assert_eq!(
        (checks[0].1.as_str(), checks[0].2),
        ("mismatch", Some(1400)),
        "{checks:?}"
    );
    assert!(checks[0].3.contains("said too big"), "{checks:?}");
    assert!(took < budget, "mtu, from node-2: {took:.1}s");
    timings.push(("mtu, from node-2", took));
    let (checks, took) = mtu_probe(n1, pod2, others);
    for (node, state, mtu, text) in &checks {
        assert_eq!(
            (state.as_str(), *mtu),
            ("blackhole", Some(1404)),
            "mtu, toward node-2, {node}: {text}"
        );
        assert!(text.contains("no ICMP error"), "{node}: {text}");
    }
    assert!(took < budget, "mtu, toward node-2: {took:.1}s");
    timings.push(("mtu, toward node-2's pod", took));
    lab.ok(&["clear"]);

    let (checks, _) = mtu_probe(n1, pod2, others);
    assert!(
        checks.iter().all(|c| c.1 == "ok"),
        "after clear: {checks:?}"
    );
    for (what, took) in timings {
        eprintln!("on-demand MTU check, {what}: {took:.2}s");
    }
}

/// The families of each finding in `doc`: (cause, nodes, family or "").
fn findings(doc: &Value) -> Vec<(String, Value, String)> {
    doc["verdict"]["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|x| {
                    (
                        x["cause"].as_str().unwrap_or("?").to_string(),
                        x["nodes"].clone(),
                        x["family"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A dual-stack lab (`lab up --ip-family dual`): `probe node-2` probes node-2 at both
/// families (its node IPs, and its agent's pod IPs as context) from every node; with node-2's
/// IPv6 pod network broken (`fault cni node-2 --family ipv6`) the verdict is `cni` on node-2
/// for IPv6 alone, and `--ip-family ipv4` narrows the probe to the family that works.
#[test]
fn on_demand_probe_per_family_on_a_dual_lab() {
    if !root_or_skip("the dual-stack on-demand end-to-end test needs root (network namespaces)") {
        return;
    }
    let prefix = format!("mpf{}", std::process::id() % 100_000);
    let lab = Lab::up_with(&prefix, 4, 2, &["--ip-family", "dual"]);
    let n1 = lab.proxies["node-1"];

    // Healthy: every source ran its checks at both families, no finding.
    let (code, doc, err) = probe(n1, &["node-2"]);
    assert_eq!(code, Some(0), "{doc:#}\n{err}");
    assert_eq!(
        doc["accepted"]["target"]["ips"].as_array().map(Vec::len),
        Some(2),
        "{doc:#}"
    );
    for s in doc["sources"].as_array().expect("sources") {
        let fams: Vec<&str> = s["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["family"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(fams, ["ipv4", "ipv6"], "{s:#}");
    }
    assert_eq!(doc["verdict"]["healthy"], true, "{doc:#}");

    lab.ok(&["fault", "cni", "node-2", "--family", "ipv6"]);
    let (_, doc, err) = probe(n1, &["node-2"]);
    assert_eq!(
        findings(&doc),
        [(
            "cni".to_string(),
            serde_json::json!(["node-2"]),
            "ipv6".to_string()
        )],
        "{doc:#}\n{err}"
    );
    // Narrowed to IPv4, node-2 is fine.
    let (code, doc, err) = probe(n1, &["node-2", "--ip-family", "ipv4"]);
    assert_eq!(code, Some(0), "{doc:#}\n{err}");
    assert_eq!(doc["verdict"]["healthy"], true, "{doc:#}");
    lab.ok(&["clear"]);
}
