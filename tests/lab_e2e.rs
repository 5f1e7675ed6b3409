//! End-to-end: build a real lab through the binary (`meshprobe lab up`, then `fault`, `clear`,
//! `status`, `down` as separate invocations, as a user would), inject every fault kind in turn
//! and assert what the packets do and what the agents report, then clear and assert recovery.
//!
//! Needs root (network namespaces); without it every test prints why and returns.
//!
//! Agent assertions are made per layer: a layer whose prober is still a stub in this build
//! (every check fails with `local_error` "stub" on a clean lab) is reported and skipped; any
//! other failure on a clean lab fails the test.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use meshprobe::lab::netns;
use serde_json::Value;
use support::lab::Lab;
use support::sys::{root_or_skip, EXE};

/// "Within two probe intervals (1 s each), plus a little slack" (a timed-out probe takes 500 ms to fail).
const DEADLINE: Duration = Duration::from_millis(2 * 1000 + 2500);
/// The window `Lab::up_with` gives the agents.
const WINDOW_SECS: u64 = 8;

macro_rules! require_root {
    () => {
        if !root_or_skip("the lab end-to-end suite needs root (network namespaces)") {
            return;
        }
    };
}

fn lab_namespaces(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Packet-level checks, from inside the pods' namespaces.

#[derive(Debug, PartialEq)]
enum Ping {
    Ok,
    /// An ICMP error line, e.g. "From 198.19.1.1 icmp_seq=1 Destination Net Unreachable".
    Error(String),
    Timeout,
}

fn ping(ns: &str, ip: &str, size: u16, dont_fragment: bool) -> Ping {
    let size = size.to_string();
    let mut args = vec![
        "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", "-s", &size,
    ];
    if dont_fragment {
        args.extend(["-M", "do"]);
    }
    args.push(ip);
    let out = Command::new("ip").args(&args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        return Ping::Ok;
    }
    match text
        .lines()
        .find(|l| l.starts_with("From ") || l.contains("ping: "))
    {
        Some(l) => Ping::Error(l.to_string()),
        None => Ping::Timeout,
    }
}

fn ping_loss_percent(ns: &str, ip: &str, count: u32) -> f64 {
    let count = count.to_string();
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-c", &count, "-i", "0.01", "-W", "1", ip,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pct = text
        .split(',')
        .find(|s| s.contains("packet loss"))
        .and_then(|s| s.trim().split('%').next())
        .and_then(|s| s.parse().ok());
    pct.unwrap_or_else(|| panic!("no loss figure in ping output: {text}"))
}

#[derive(Debug, PartialEq)]
enum Tcp {
    Ok,
    Refused,
    Timeout,
    Other(String),
}

fn tcp(ns: &str, addr: &str) -> Tcp {
    match netns::connect_in_blocking(ns, addr.parse().unwrap(), Duration::from_secs(1)) {
        Ok(_) => Tcp::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Tcp::Refused,
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            Tcp::Timeout
        }
        Err(e) => Tcp::Other(e.to_string()),
    }
}

/// Every probe pod reaches every other probe pod and node IP (ICMP, small and 1472-byte DF).
fn assert_all_pairs_ping(lab: &Lab) {
    let mut bad = Vec::new();
    for a in 1..=lab.nodes {
        let ns = lab.ns(a, "probe");
        for b in (1..=lab.nodes).filter(|&b| b != a) {
            let zone = (b - 1) % lab.zones + 1;
            let node_ip = format!("198.18.{zone}.{}", 10 + b);
            for (ip, size, df) in [
                (format!("198.19.{b}.10"), 56, false),
                (node_ip, 56, false),
                (format!("198.19.{b}.10"), 1472, true),
            ] {
                // A path that just came back may need a moment (neighbour re-resolution).
                let mut r = ping(&ns, &ip, size, df);
                for _ in 0..3 {
                    if r == Ping::Ok {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                    r = ping(&ns, &ip, size, df);
                }
                if r != Ping::Ok {
                    bad.push(format!("node-{a} → {ip} ({size} bytes): {r:?}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "clean lab, yet:\n{}", bad.join("\n"));
}

/// Every target pod's `meshprobe serve` (started by `lab up`) accepts connections on its port
/// within a few seconds: the test never stands in for the lab's own targets.
fn assert_targets_listen(lab: &Lab) {
    for i in 1..=lab.nodes {
        let addr: SocketAddr = format!("198.19.{i}.11:8080").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while tcp(&lab.ns(i, "probe"), &addr.to_string()) != Tcp::Ok {
            assert!(
                Instant::now() < deadline,
                "nothing listens on the target pod {addr} of node-{i} 5 s after lab up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Agent-level expectations.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dest {
    Peer(u16),
    Target(u16),
}

#[derive(Debug, Clone, Copy)]
enum Exp {
    /// The last probe succeeded.
    Up,
    /// The last probe failed with one of these kinds (empty: any kind).
    Down(&'static [&'static str]),
    /// Not asserted.
    Any,
}

const TIMEOUT: &[&str] = &["timeout"];
const ANY_FAILURE: &[&str] = &[];

/// (source node, destination, layer) → what the source's agent reports.
fn layers_of(results: &Value) -> Vec<(Dest, String, Value)> {
    let mut out = Vec::new();
    for (list, key, make) in [
        ("peers", "node", Dest::Peer as fn(u16) -> Dest),
        ("targets", "name", Dest::Target as fn(u16) -> Dest),
    ] {
        for d in results[list].as_array().into_iter().flatten() {
            let name = d[key].as_str().unwrap_or_default();
            let Some(n) = name.rsplit('-').next().and_then(|s| s.parse::<u16>().ok()) else {
                continue;
            };
            for (layer, l) in d["layers"].as_object().into_iter().flatten() {
                out.push((make(n), layer.clone(), l.clone()));
            }
        }
    }
    out
}

/// The layers the agents report, once every check of every layer is up on the clean lab. A
/// prober that answers "stub" fails the test: no layer's assertions are ever skipped.
fn usable_layers(lab: &Lab) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = lab.results();
        let mut up: BTreeMap<String, bool> = BTreeMap::new();
        let mut complete = true;
        for (src, r) in &all {
            if r.is_null() {
                complete = false;
                continue;
            }
            let layers = layers_of(r);
            let dests: BTreeSet<Dest> = layers.iter().map(|(d, _, _)| *d).collect();
            // Every other agent (an agent may or may not probe itself) and every target.
            if dests.len() < 2 * lab.nodes as usize - 1 {
                complete = false;
            }
            for (dest, layer, l) in layers {
                let ok = l["reachable"] == Value::Bool(true);
                assert!(
                    l["last_error"]["detail"] != "stub",
                    "node-{src} → {dest:?}: the {layer} prober is a stub in this build"
                );
                *up.entry(layer.clone()).or_insert(true) &= ok;
                if !ok && Instant::now() >= deadline {
                    panic!(
                        "clean lab: node-{src} → {dest:?} {layer} is not reachable: {}",
                        l
                    );
                }
            }
        }
        if complete && up.values().all(|ok| *ok) {
            return up.into_keys().collect();
        }
        assert!(
            Instant::now() < deadline,
            "agents did not report a clean lab within 20s: {}",
            serde_json::to_string(&all)
                .unwrap_or_default()
                .chars()
                .take(3000)
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Poll every agent until each (source, destination, layer) matches `expect`, or panic after
/// `DEADLINE` with every mismatch.
fn assert_agents(
    lab: &Lab,
    usable: &BTreeSet<String>,
    what: &str,
    t0: Instant,
    expect: &dyn Fn(u16, Dest, &str) -> Exp,
) -> Duration {
    loop {
        let all = lab.results();
        let mut bad = Vec::new();
        for (&src, r) in &all {
            if r.is_null() {
                bad.push(format!("node-{src}: no results"));
                continue;
            }
            for (dest, layer, l) in layers_of(r) {
                if !usable.contains(&layer) {
                    continue;
                }
                let kind = l["last_error"]["kind"].as_str().unwrap_or("none");
                let reachable = &l["reachable"];
                match expect(src, dest, &layer) {
                    Exp::Any => {}
                    Exp::Up if *reachable == Value::Bool(true) => {}
                    Exp::Down(kinds)
                        if *reachable == Value::Bool(false)
                            && (kinds.is_empty() || kinds.contains(&kind)) => {}
                    e => bad.push(format!(
                        "node-{src} → {dest:?} {layer}: want {e:?}, got reachable={reachable} last_error={}",
                        l["last_error"]
                    )),
                }
            }
        }
        if bad.is_empty() {
            eprintln!(
                "  agents agree ({what}) {:.1}s after the command",
                t0.elapsed().as_secs_f64()
            );
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "{what}: agents disagree after {:.1}s:\n{}",
            t0.elapsed().as_secs_f64(),
            bad.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How long path-MTU discovery may take to see an MTU fault (the issue: within one minute).
const MTU_DEADLINE: Duration = Duration::from_secs(60);

/// Poll every agent until the path MTU toward every peer (pod IP and node IP) matches
/// `expect(source, destination) -> (MTU range, allowed states)`, or panic with every mismatch.
fn assert_mtu(
    lab: &Lab,
    what: &str,
    expect: &dyn Fn(u16, u16) -> (std::ops::RangeInclusive<u64>, &'static [&'static str]),
) -> Duration {
    let t0 = Instant::now();
    loop {
        let mut bad = Vec::new();
        for (&src, r) in &lab.results() {
            let Some(peers) = r["peers"].as_array() else {
                bad.push(format!("node-{src}: no results"));
                continue;
            };
            for p in peers {
                let dst: u16 = p["node"]
                    .as_str()
                    .and_then(|n| n.strip_prefix("node-"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let (range, states) = expect(src, dst);
                for layer in ["icmp_pod", "icmp_node"] {
                    let m = &p["mtu"][layer];
                    let mtu = m["path_mtu"].as_u64().unwrap_or(0);
                    let state = m["state"].as_str().unwrap_or("none");
                    if !range.contains(&mtu) || !states.contains(&state) || m["searching"] == true {
                        bad.push(format!(
                            "node-{src} → node-{dst} {layer}: want {range:?} {states:?}, got {m}"
                        ));
                    }
                }
            }
        }
        if bad.is_empty() {
            eprintln!(
                "  path MTUs agree ({what}) after {:.1}s",
                t0.elapsed().as_secs_f64()
            );
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < MTU_DEADLINE,
            "{what}: path MTUs disagree after {:.1}s:\n{}",
            t0.elapsed().as_secs_f64(),
            bad.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

const NORMAL_MTU: (std::ops::RangeInclusive<u64>, &[&str]) = (1500..=1500, &["ok"]);
/// Into a node whose underlay MTU is 1400: its veth drops larger frames silently, and a veth
/// accepts MTU + 4 bytes (room for a VLAN tag), so the search ends at exactly 1404 (measured
/// on every run of the mtu, pmtu-blackhole and unprivileged steps, privileged and not).
const INBOUND_BLACKHOLE_1400: (std::ops::RangeInclusive<u64>, &[&str]) =
    (1404..=1404, &["blackhole"]);

fn pod_layer(layer: &str) -> bool {
    layer != "icmp_node"
}

fn zone(n: u16) -> u16 {
    (n - 1) % 2 + 1
}

fn dest_node(d: Dest) -> u16 {
    match d {
        Dest::Peer(n) | Dest::Target(n) => n,
    }
}

// ---- diagnosis ------------------------------------------------------------------------------

/// What node-1's diagnosis must say: exactly one finding of `cause` whose `nodes` equal
/// `nodes` (or `or_nodes`, when not empty), with these zones / targets among its own and, when
/// `pairs` is not empty, its pairs a non-empty subset of `pairs`; `None`: healthy, no finding.
struct Want {
    cause: &'static str,
    nodes: &'static [&'static str],
    or_nodes: &'static [&'static str],
    zones: &'static [&'static str],
    targets: &'static [&'static str],
    pairs: &'static [[&'static str; 2]],
    /// The finding's `family`: `None` when it must have none (both families, or one probed).
    family: Option<&'static str>,
}

const fn want(cause: &'static str, nodes: &'static [&'static str]) -> Want {
    Want {
        cause,
        nodes,
        or_nodes: &[],
        zones: &[],
        targets: &[],
        pairs: &[],
        family: None,
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn short(d: &Value) -> String {
    let f: Vec<String> = d["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{} nodes={:?} zones={:?} targets={:?} pairs={} — {}",
                f["cause"].as_str().unwrap_or("?"),
                strs(&f["nodes"]),
                strs(&f["zones"]),
                strs(&f["targets"]),
                f["pairs"],
                f["summary"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "answered={:?} unreachable={} findings=[{}]",
        strs(&d["agents_answered"]),
        d["agents_unreachable"],
        f.join(" | ")
    )
}

fn diagnosis_matches(d: &Value, w: Option<&Want>) -> Result<(), String> {
    diagnosis_matches_all(d, w.map(std::slice::from_ref).unwrap_or_default())
}

/// Exactly one finding per `Want`, each matching it; no wants = healthy.
fn diagnosis_matches_all(d: &Value, ws: &[Want]) -> Result<(), String> {
    if d.is_null() {
        return Err("no diagnosis".into());
    }
    let findings = d["findings"].as_array().cloned().unwrap_or_default();
    if ws.is_empty() {
        return if findings.is_empty() && d["healthy"] == true {
            Ok(())
        } else {
            Err(format!("want healthy, got {}", short(d)))
        };
    }
    let wanted: Vec<String> = ws
        .iter()
        .map(|w| format!("{} {:?}", w.cause, w.nodes))
        .collect();
    let all_found = ws
        .iter()
        .all(|w| findings.iter().filter(|f| finding_matches(f, w)).count() == 1);
    if findings.len() == ws.len() && all_found {
        Ok(())
    } else {
        Err(format!("want {}, got {}", wanted.join(" + "), short(d)))
    }
}

fn finding_matches(f: &Value, w: &Want) -> bool {
    let nodes = strs(&f["nodes"]);
    let nodes_ok = nodes == w.nodes || (!w.or_nodes.is_empty() && nodes == w.or_nodes);
    let zones = strs(&f["zones"]);
    let targets = strs(&f["targets"]);
    let pairs: Vec<Vec<String>> = f["pairs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(strs)
        .collect();
    f["cause"] == w.cause
        && nodes_ok
        && w.zones.iter().all(|z| zones.iter().any(|x| x == z))
        && (w.zones.is_empty() || zones.len() == w.zones.len())
        && w.targets.iter().all(|t| targets.iter().any(|x| x == t))
        && (w.pairs.is_empty()
            || (!pairs.is_empty()
                && pairs
                    .iter()
                    .all(|p| w.pairs.iter().any(|[a, b]| p == &[*a, *b]))))
        && f["family"].as_str() == w.family
        && !strs(&f["evidence"]).is_empty()
        && !strs(&f["next_steps"]).is_empty()
}

/// Poll node-1's diagnosis until it matches `w`, or panic at `deadline` with the last answer.
fn assert_diagnosis(
    lab: &Lab,
    what: &str,
    t0: Instant,
    deadline: Instant,
    w: Option<&Want>,
) -> (Duration, Value) {
    let ws = w.map(std::slice::from_ref).unwrap_or_default();
    assert_diagnosis_all(lab, what, t0, deadline, ws)
}

/// Poll node-1's diagnosis until it has exactly the findings `ws` (none: healthy).
fn assert_diagnosis_all(
    lab: &Lab,
    what: &str,
    t0: Instant,
    deadline: Instant,
    ws: &[Want],
) -> (Duration, Value) {
    assert_diagnosis_within(lab, what, t0, deadline, ws, &[1, 2, 3, 4])
}

/// [`assert_diagnosis_all`], and no poll on the way may place a finding on a node outside
/// `involved`.
fn assert_diagnosis_within(
    lab: &Lab,
    what: &str,
    t0: Instant,
    deadline: Instant,
    ws: &[Want],
    involved: &[u16],
) -> (Duration, Value) {
    loop {
        // With its inputs: a wrong poll is printed whole, to be replayed and kept as a fixture.
        let d = lab.diagnosis_with_inputs();
        let mut stray = uninvolved(&d, involved);
        if onset_blip(&stray, t0.elapsed()) {
            eprintln!(
                "{what}: TOLERATED onset blip {:.1}s after the command: {stray:?} (see ONSET_BLIP); the poll with its inputs:\n{d}",
                t0.elapsed().as_secs_f64()
            );
            stray.clear();
        }
        assert!(
            stray.is_empty(),
            "{what}: a finding names an uninvolved node {:.1}s after the command: {stray:?}\n\
             the poll with its inputs (save as view.json; `meshprobe diagnose --results view.json` replays it):\n{d}",
            t0.elapsed().as_secs_f64()
        );
        match diagnosis_matches_all(&d, ws) {
            Ok(()) => {
                eprintln!(
                    "  diagnosis right ({what}) {:.1}s after the command",
                    t0.elapsed().as_secs_f64()
                );
                return (t0.elapsed(), d);
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "{what}: diagnosis still wrong after {:.1}s: {e}\nthe last poll with its inputs:\n{d}",
                t0.elapsed().as_secs_f64()
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// After agents agree: two probe intervals, plus the mesh view's quarter-interval cache, plus slack.
const DIAG_AFTER_AGREE: Duration = Duration::from_millis(2 * 1000 + 250 + 750);
/// Polling the diagnosis of a non-MTU fault stops after this (the bound is checked against
/// the agents' time afterwards).
const DIAG_DEADLINE: Duration = Duration::from_secs(20);
/// After a clear: the window ages out, plus a few intervals.
const DIAG_CLEAR: Duration = Duration::from_secs(WINDOW_SECS + 4);

/// Poll the diagnosis for `secs` seconds: healthy at every poll.
fn assert_clean_run(lab: &Lab, secs: u64) {
    let t0 = Instant::now();
    let mut polls = 0u32;
    while t0.elapsed() < Duration::from_secs(secs) {
        let d = lab.diagnosis();
        if let Err(e) = diagnosis_matches(&d, None) {
            panic!(
                "clean lab: finding after {:.1}s ({polls} healthy polls before): {e}",
                t0.elapsed().as_secs_f64()
            );
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("  clean run: {polls} polls over {secs}s, zero findings at every poll");
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_fault_is_seen_by_packets_and_agents_then_clears() {
    require_root!();
    let suite = Instant::now();
    let prefix = format!("mpt{}", std::process::id() % 100_000);
    let lab = Lab::up_with(
        &prefix,
        4,
        2,
        &["--icmp-count", "3", "--mtu-interval", "2s"],
    );
    // Fabric, router, a node and its two pods per node, the DNS pod.
    assert_eq!(lab_namespaces(&prefix).len(), 2 + 4 * 3 + 1);

    let st = lab.status();
    assert_eq!(st["state"]["phase"], "running");
    let proxies = lab.proxies.clone();
    assert_eq!(proxies.len(), 4);
    for p in st["processes"].as_array().unwrap() {
        if p["role"] == "agent" {
            assert_eq!(p["alive"], true, "agent died: {p}");
        }
    }

    // The live view: node-1's page and metrics through 127.0.0.1.
    for path in ["/", "/metrics", "/readyz"] {
        let s = TcpStream::connect(proxies["node-1"]).unwrap();
        let (code, body) =
            netns::http_get_blocking(s, "lab", path, Duration::from_secs(3)).unwrap();
        assert_eq!(code, 200, "GET {path} via the live view: {body}");
    }

    assert_targets_listen(&lab);
    assert_all_pairs_ping(&lab);
    let usable = usable_layers(&lab);
    let all_up = |_: u16, _: Dest, _: &str| Exp::Up;
    assert_agents(&lab, &usable, "clean lab", Instant::now(), &all_up);

    // The diagnosis of a clean lab: healthy, and stays so.
    let t = Instant::now();
    assert_diagnosis(&lab, "clean lab", t, t + DIAG_CLEAR, None);
    let clean_secs = std::env::var("MESHPROBE_E2E_CLEAN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    assert_clean_run(&lab, clean_secs);

    // A second lab with the same prefix is refused, and leaves the first alone.
    let again = lab.cli(&["up", "--port-base", "0"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(lab_namespaces(&prefix).len(), 2 + 4 * 3 + 1);

    // Wrong invocations are refused with status 2 and change nothing.
    for bad in [
        &["fault", "flood", "node-1"][..],
        &["fault", "route", "node-1", "node-9"],
        &["fault", "partition", "zone-a", "zone-a"],
        &["clear", "cni", "node-1"],
        // An IPv4 lab has no IPv6 to confine a fault to.
        &["fault", "cni", "node-1", "--family", "ipv6"],
        &["fault", "cni", "node-1", "--family", "dual"],
    ] {
        let out = lab.cli(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }

    // Packet checks start in the target pods, so a path MTU they learn never fools an agent.
    let n1 = lab.ns(1, "");
    let p1 = lab.ns(1, "web");
    let p2 = lab.ns(2, "web");
    let p3 = lab.ns(3, "web");
    let mut timings = Vec::new();
    let mut diag_timings: Vec<(String, Duration, Duration, Duration)> = Vec::new();
    let mut step = |name: &str,
                    fault: &[&str],
                    early: &dyn Fn(),
                    packets: &dyn Fn(),
                    expect: &dyn Fn(u16, Dest, &str) -> Exp,
                    diag: &Want| {
        eprintln!("fault {}", fault.join(" "));
        let mut args = vec!["fault"];
        args.extend_from_slice(fault);
        let injected = Instant::now();
        lab.ok(&args);
        let involved = involved_by(fault);
        // The diagnosis is polled from the command on, alongside the agents' results, so its
        // time is its own (not bounded below by every agent's every layer agreeing).
        let (seen, diagnosed) = std::thread::scope(|sc| {
            let diagnosis = sc.spawn(|| {
                // MTU faults: path-MTU discovery has one minute; the others are checked
                // against the agents below.
                let deadline = injected
                    + if diag.cause == "mtu" {
                        MTU_DEADLINE
                    } else {
                        DIAG_DEADLINE
                    };
                assert_diagnosis_within(
                    &lab,
                    name,
                    injected,
                    deadline,
                    std::slice::from_ref(diag),
                    &involved,
                )
                .0
            });
            early();
            let seen = assert_agents(&lab, &usable, name, injected, expect);
            (
                seen,
                diagnosis
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            )
        });
        // The others: at most two intervals after the agents agree.
        assert!(
            diag.cause == "mtu" || diagnosed <= seen + DIAG_AFTER_AGREE,
            "{name}: diagnosis right after {diagnosed:?}, agents agreed after {seen:?}"
        );
        packets();
        // Still right once every agent agrees and the packets were checked: an answer that
        // drifts to another cause or an uninvolved node fails here.
        if diag.cause != "mtu" {
            let mut d = lab.diagnosis();
            if diagnosis_matches(&d, Some(diag)).is_err() && gap(&d) {
                // The known gap ([`gap`]): one more poll.
                eprintln!("  {name}: one empty poll with an agent left out; polled again");
                std::thread::sleep(Duration::from_millis(500));
                d = lab.diagnosis();
            }
            if let Err(e) = diagnosis_matches(&d, Some(diag)) {
                panic!("{name}: right at first, then wrong: {e}");
            }
        }
        let st = lab.status();
        let active = st["state"]["faults"].as_array().unwrap();
        assert_eq!(active.len(), 1, "{st}");
        assert_eq!(active[0][0], fault[0], "{st}");
        let cleared = Instant::now();
        lab.ok(&["clear"]);
        let what = format!("{name} cleared");
        let recovered = assert_agents(&lab, &usable, &what, cleared, &all_up);
        assert!(lab.status()["state"]["faults"]
            .as_array()
            .unwrap()
            .is_empty());
        let (healthy, _) =
            assert_diagnosis_within(&lab, &what, cleared, cleared + DIAG_CLEAR, &[], &involved);
        assert_all_pairs_ping(&lab);
        timings.push((name.to_string(), seen, recovered));
        diag_timings.push((name.to_string(), seen, diagnosed, healthy));
    };

    // route: node-1 loses its route to node-3's pods (same zone, host-gw).
    step(
        "route node-1 node-3",
        &["route", "node-1", "node-3"],
        // From node-1 itself: its own stack refuses (no route). A pod on node-1 would get
        // node-1's "net unreachable" only while node-1's ICMP error budget toward it lasts
        // (1/s, burst 6), and node-3's probes of that pod spend it (their replies have no
        // route either): a race, so the pod's view is left to the agents' windows.
        &|| match ping(&n1, "198.19.3.10", 56, false) {
            Ping::Error(l) => assert!(l.contains("Network is unreachable"), "{l}"),
            r => panic!("node-1 → node-3 pod: {r:?}"),
        },
        &|| {
            assert_eq!(ping(&p3, "198.19.1.10", 56, false), Ping::Timeout);
            assert_eq!(ping(&p3, "198.18.1.11", 56, false), Ping::Timeout);
            assert_eq!(ping(&p1, "198.18.1.13", 56, false), Ping::Ok);
            assert_eq!(ping(&p1, "198.19.2.10", 56, false), Ping::Ok);
        },
        &|src, d, layer| match (src, dest_node(d)) {
            // Mostly `timeout`: node-1 answers "net unreachable" at most about once a second
            // per source, and node-3's probes' replies use up that budget (measured: 4 errors
            // sent, 87 rate-limited in 30 s). The window's `errors` keep it when it comes.
            (1, 3) if pod_layer(layer) => Exp::Down(&["net_unreachable", "timeout"]),
            // node-1's pod reaches node-3's node IP: node-3 answers through its own routes.
            (1, 3) => Exp::Up,
            // Whatever node-3's pod sends node-1 (its pods or the node itself), the answer
            // is addressed to node-3's pod subnet, which node-1 no longer routes: silence.
            (3, 1) => Exp::Down(TIMEOUT),
            _ => Exp::Up,
        },
        // Two answers, both naming only the fault's nodes: while node-1's "net unreachable"
        // is in the windows, node-1's table is blamed; once rate-limiting and the window age
        // it out, the same pairs are reported as one-way between node-1 and node-3.
        &Want {
            or_nodes: &["node-1", "node-3"],
            pairs: &[["node-1", "node-3"], ["node-1", "web-node-3"]],
            ..want("routing", &["node-1"])
        },
    );

    // node-down: node-4's uplink is cut at the fabric.
    step(
        "node-down node-4",
        &["node-down", "node-4"],
        &|| {},
        &|| {
            assert_ne!(ping(&p1, "198.19.4.10", 56, false), Ping::Ok);
            assert_ne!(ping(&p1, "198.18.2.14", 56, false), Ping::Ok);
            assert_eq!(ping(&p1, "198.19.2.10", 56, false), Ping::Ok);
        },
        &|src, d, _| match (src, dest_node(d)) {
            (4, 4) => Exp::Any,
            (_, 4) => Exp::Down(&["timeout", "host_unreachable"]),
            (4, _) => Exp::Down(ANY_FAILURE),
            _ => Exp::Up,
        },
        &Want {
            zones: &["zone-b"],
            ..want("node_down", &["node-4"])
        },
    );

    // cni: node-3's pod network is broken, the node itself answers.
    step(
        "cni node-3",
        &["cni", "node-3"],
        &|| {},
        &|| {
            assert_eq!(ping(&p1, "198.19.3.10", 56, false), Ping::Timeout);
            assert_eq!(ping(&p1, "198.18.1.13", 56, false), Ping::Ok);
        },
        &|src, d, layer| match (src, dest_node(d)) {
            (3, 3) => Exp::Any,
            (_, 3) if pod_layer(layer) => Exp::Down(TIMEOUT),
            (_, 3) => Exp::Up,
            (3, _) => Exp::Down(ANY_FAILURE),
            _ => Exp::Up,
        },
        &want("cni", &["node-3"]),
    );

    // policy: TCP to web-node-2:8080 dropped; ICMP to it fine.
    step(
        "policy web-node-2",
        &["policy", "web-node-2"],
        &|| {},
        &|| {
            assert_eq!(tcp(&p1, "198.19.2.11:8080"), Tcp::Timeout);
            assert_eq!(ping(&p1, "198.19.2.11", 56, false), Ping::Ok);
            assert_eq!(tcp(&p1, "198.19.4.11:8080"), Tcp::Ok);
        },
        &|_, d, layer| match d {
            Dest::Target(2) if layer == "http" || layer == "tcp" => Exp::Down(TIMEOUT),
            _ => Exp::Up,
        },
        &Want {
            targets: &["web-node-2"],
            ..want("policy", &["node-2"])
        },
    );

    // reject: the same, answered with a reset.
    step(
        "reject web-node-2",
        &["reject", "web-node-2"],
        &|| {},
        &|| {
            assert_eq!(tcp(&p1, "198.19.2.11:8080"), Tcp::Refused);
            assert_eq!(ping(&p1, "198.19.2.11", 56, false), Ping::Ok);
        },
        &|_, d, layer| match d {
            Dest::Target(2) if layer == "http" || layer == "tcp" => Exp::Down(&["refused"]),
            _ => Exp::Up,
        },
        &Want {
            targets: &["web-node-2"],
            ..want("application", &["node-2"])
        },
    );

    // partition: zone-a and zone-b cannot talk; inside each zone all is well.
    step(
        "partition zone-a zone-b",
        &["partition", "zone-a", "zone-b"],
        &|| {},
        &|| {
            assert_eq!(ping(&p1, "198.19.2.10", 56, false), Ping::Timeout);
            assert_eq!(ping(&p1, "198.18.2.12", 56, false), Ping::Timeout);
            assert_eq!(ping(&p1, "198.19.3.10", 56, false), Ping::Ok);
        },
        &|src, d, _| {
            if zone(src) == zone(dest_node(d)) {
                Exp::Up
            } else {
                Exp::Down(TIMEOUT)
            }
        },
        &Want {
            zones: &["zone-a", "zone-b"],
            ..want("vpc", &[])
        },
    );

    // mtu: node-2's underlay at 1400, pods at 1500. The agents' small probes pass; the packets
    // show it (oversized DF pings die, small ones pass) and so does path-MTU discovery.
    step(
        "mtu node-2 1400",
        &["mtu", "node-2", "1400"],
        &|| {},
        &|| {
            assert_eq!(ping(&p1, "198.19.2.10", 56, false), Ping::Ok);
            // Inbound oversize: dropped silently at node-2's veth.
            assert_eq!(ping(&p1, "198.19.2.10", 1472, true), Ping::Timeout);
            // Outbound oversize: node-2 says frag-needed, then the cached PMTU says too long.
            match ping(&p2, "198.19.1.10", 1472, true) {
                Ping::Error(l) => {
                    assert!(l.contains("Frag needed") || l.contains("too long"), "{l}")
                }
                r => panic!("node-2 → node-1 1472 DF: {r:?}"),
            }
            assert_eq!(ping(&p2, "198.19.1.10", 1372, true), Ping::Ok);
            // Path-MTU discovery: node-2 itself reports 1400 on the way out (mismatch);
            // on the way in, node-2's veth drops oversized frames silently (a black hole).
            assert_mtu(&lab, "mtu node-2 1400", &|src, dst| match (src, dst) {
                (2, _) => (1400..=1400, &["mismatch"]),
                (_, 2) => INBOUND_BLACKHOLE_1400,
                _ => NORMAL_MTU,
            });
        },
        &|_, _, _| Exp::Up,
        &want("mtu", &["node-2"]),
    );
    assert_mtu(&lab, "mtu cleared", &|_, _| NORMAL_MTU);

    // pmtu-blackhole: the same, but frag-needed never comes back: oversized just times out.
    step(
        "pmtu-blackhole node-2 1400",
        &["pmtu-blackhole", "node-2", "1400"],
        &|| {},
        &|| {
            assert_eq!(ping(&p2, "198.19.1.10", 1472, true), Ping::Timeout);
            assert_eq!(ping(&p2, "198.19.1.10", 1472, true), Ping::Timeout);
            assert_eq!(ping(&p2, "198.19.1.10", 56, false), Ping::Ok);
            // No frag-needed anywhere now: large packets vanish both ways.
            // Outbound, node-2's own 1400 is found but its frag-needed is dropped: a black hole.
            assert_mtu(
                &lab,
                "pmtu-blackhole node-2 1400",
                &|src, dst| match (src, dst) {
                    (2, _) => (1400..=1400, &["blackhole"]),
                    (_, 2) => INBOUND_BLACKHOLE_1400,
                    _ => NORMAL_MTU,
                },
            );
        },
        &|_, _, _| Exp::Up,
        &want("mtu", &["node-2"]),
    );
    assert_mtu(&lab, "pmtu-blackhole cleared", &|_, _| NORMAL_MTU);

    // loss: 30% of node-2's packets each way. Wait one full window so the ratios only hold
    // the fault, then: clearly lossy, clearly not dead.
    eprintln!("fault loss node-2 30");
    let injected = Instant::now();
    lab.ok(&["fault", "loss", "node-2", "30"]);
    let loss_want = want("packet_loss", &["node-2"]);
    let (loss_seen, _) = assert_diagnosis_within(
        &lab,
        "loss node-2 30",
        injected,
        injected + Duration::from_secs(WINDOW_SECS),
        std::slice::from_ref(&loss_want),
        &[2],
    );
    let loss = ping_loss_percent(&p1, "198.19.2.10", 100);
    assert!((15.0..=85.0).contains(&loss), "ping loss {loss}%");
    assert_eq!(ping_loss_percent(&p1, "198.19.3.10", 20), 0.0);
    let icmp: Vec<&str> = ["icmp_pod", "icmp_node"]
        .into_iter()
        .filter(|l| usable.contains(*l))
        .collect();
    if !icmp.is_empty() {
        std::thread::sleep(Duration::from_secs(WINDOW_SECS + 1));
        let all = lab.results();
        for src in [1u16, 3, 4] {
            let (mut sent, mut received) = (0u64, 0u64);
            for (dest, layer, l) in layers_of(&all[&src]) {
                if dest == Dest::Peer(2) && icmp.contains(&layer.as_str()) {
                    sent += l["sent"].as_u64().unwrap_or(0);
                    received += l["received"].as_u64().unwrap_or(0);
                }
            }
            let ratio = 1.0 - received as f64 / sent.max(1) as f64;
            eprintln!(
                "  node-{src} → node-2 ICMP loss over the window: {ratio:.2} ({received}/{sent})"
            );
            assert!(sent >= 20, "node-{src}: only {sent} packets to node-2");
            assert!(
                (0.1..0.95).contains(&ratio),
                "node-{src} → node-2 ICMP loss ratio {ratio}"
            );
            // Pairs without node-2 lose nothing.
            for (dest, layer, l) in layers_of(&all[&src]) {
                if dest == Dest::Peer(if src == 1 { 3 } else { 1 })
                    && icmp.contains(&layer.as_str())
                {
                    assert_eq!(
                        l["loss_ratio"].as_f64(),
                        Some(0.0),
                        "node-{src} → {dest:?} {layer}"
                    );
                }
            }
        }
    }
    // Steady loss: still exactly that, poll after poll (no timeouts read as policy, no MTU).
    for _ in 0..6 {
        let d = lab.diagnosis();
        if let Err(e) = diagnosis_matches(&d, Some(&loss_want)) {
            panic!("loss node-2 30, steady: {e}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Random loss is not a path-MTU black hole: large probes lost by chance are weighed
    // against small ones, which lose as often (`loss`, or `ok` when the large ones got through).
    for (src, r) in &lab.results() {
        for p in r["peers"].as_array().into_iter().flatten() {
            for layer in ["icmp_pod", "icmp_node"] {
                let state = p["mtu"][layer]["state"].as_str().unwrap_or("none");
                assert_ne!(
                    state, "blackhole",
                    "loss node-2 30: node-{src} → {}",
                    p["node"]
                );
            }
        }
    }
    let cleared = Instant::now();
    lab.ok(&["clear"]);
    assert_agents(&lab, &usable, "loss cleared", cleared, &all_up);
    let (loss_healthy, _) =
        assert_diagnosis(&lab, "loss cleared", cleared, cleared + DIAG_CLEAR, None);
    diag_timings.push((
        "loss node-2 30".into(),
        Duration::ZERO,
        loss_seen,
        loss_healthy,
    ));
    assert_all_pairs_ping(&lab);

    // Two faults at once, each found with its own cause and place, cleared together; a
    // duplicate is refused. (Real data: node-2's rate-limited "net unreachable" toward node-4
    // missing from the windows once split the route into `routing` one way + `vpc` the other.)
    let injected = Instant::now();
    lab.ok(&["fault", "route", "node-2", "node-4"]);
    lab.ok(&["fault", "cni", "node-3"]);
    let (two_seen, _) = assert_diagnosis_within(
        &lab,
        "route node-2 node-4 + cni node-3",
        injected,
        injected + Duration::from_secs(2 * WINDOW_SECS),
        &[want("routing", &["node-2"]), want("cni", &["node-3"])],
        &[2, 3, 4],
    );
    // Steady: both findings, poll after poll, once the windows hold no ICMP error any more.
    std::thread::sleep(Duration::from_secs(WINDOW_SECS));
    for _ in 0..6 {
        let d = lab.diagnosis();
        if let Err(e) = diagnosis_matches_all(
            &d,
            &[want("routing", &["node-2"]), want("cni", &["node-3"])],
        ) {
            panic!("route node-2 node-4 + cni node-3, steady: {e}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        lab.cli(&["fault", "route", "node-2", "node-4"])
            .status
            .code(),
        Some(2)
    );
    let text = lab.ok(&["status"]);
    assert!(
        text.contains("route node-2 node-4") && text.contains("cni node-3"),
        "{text}"
    );
    let cleared = Instant::now();
    lab.ok(&["clear"]);
    let (two_healthy, _) = assert_diagnosis(
        &lab,
        "two faults cleared",
        cleared,
        cleared + DIAG_CLEAR,
        None,
    );
    diag_timings.push((
        "route 2→4 + cni node-3".into(),
        Duration::ZERO,
        two_seen,
        two_healthy,
    ));
    assert_all_pairs_ping(&lab);

    for (name, seen, recovered) in &timings {
        eprintln!(
            "  {name:<28} seen after {:.1}s, recovered after {:.1}s",
            seen.as_secs_f64(),
            recovered.as_secs_f64()
        );
    }

    eprintln!("diagnosis (node-1's view): time from the command to the right finding");
    for (name, agree, diagnosed, healthy) in &diag_timings {
        eprintln!(
            "  {name:<28} agents agree {:>4.1}s, right finding {:>4.1}s, healthy {:>4.1}s after clear",
            agree.as_secs_f64(),
            diagnosed.as_secs_f64(),
            healthy.as_secs_f64()
        );
    }

    let t = Instant::now();
    drop(lab);
    eprintln!("lab down in {:.1}s", t.elapsed().as_secs_f64());
    assert!(lab_namespaces(&prefix).is_empty(), "namespaces left behind");
    assert!(!PathBuf::from(format!("/run/meshprobe-lab/{prefix}")).exists());
    eprintln!("suite: {:.1}s", suite.elapsed().as_secs_f64());
}

// ---- pod addressing ---------------------------------------------------------------------------

/// One fault of the addressing runs: the command, the one finding it must give, the nodes it
/// involves (no finding on any poll may name another), how long the finding may take.
struct Placed {
    fault: &'static [&'static str],
    want: Want,
    involved: &'static [u16],
    deadline: Duration,
}

const fn placed(fault: &'static [&'static str], want: Want, involved: &'static [u16]) -> Placed {
    Placed {
        fault,
        want,
        involved,
        deadline: DIAG_DEADLINE,
    }
}

/// The faults whose place depends on who owns an address: a route between two nodes of one
/// zone (the shared gateway's "net unreachable"), a broken pod network (its pods' addresses),
/// a target refusing (the target's node), a node cut off.
fn sampled_faults() -> Vec<Placed> {
    vec![
        placed(
            &["route", "node-1", "node-3"],
            Want {
                or_nodes: &["node-1", "node-3"],
                pairs: &[["node-1", "node-3"], ["node-1", "web-node-3"]],
                ..want("routing", &["node-1"])
            },
            &[1, 3],
        ),
        placed(&["cni", "node-3"], want("cni", &["node-3"]), &[3]),
        placed(
            &["reject", "web-node-2"],
            Want {
                targets: &["web-node-2"],
                ..want("application", &["node-2"])
            },
            &[2],
        ),
        placed(
            &["node-down", "node-4"],
            Want {
                zones: &["zone-b"],
                ..want("node_down", &["node-4"])
            },
            &[4],
        ),
    ]
}

/// Faults of one family in a dual-stack lab: found in that family, named by it, and nothing
/// said of the other (whose paths work).
fn one_family_faults() -> Vec<Placed> {
    let mut v = vec![
        placed(
            &["route", "node-1", "node-3", "--family", "ipv6"],
            Want {
                or_nodes: &["node-1", "node-3"],
                // node-3's agent answers over IPv4, so its side shows too: its pods' IPv6
                // packets to node-1 get no answer (node-1 has no route back).
                pairs: &[
                    ["node-1", "node-3"],
                    ["node-1", "web-node-3"],
                    ["node-3", "node-1"],
                    ["node-3", "web-node-1"],
                ],
                family: Some("ipv6"),
                ..want("routing", &["node-1"])
            },
            &[1, 3],
        ),
        placed(
            &["cni", "node-3", "--family", "ipv4"],
            Want {
                family: Some("ipv4"),
                ..want("cni", &["node-3"])
            },
            &[3],
        ),
        placed(
            &["reject", "web-node-2", "--family", "ipv6"],
            Want {
                targets: &["web-node-2"],
                family: Some("ipv6"),
                ..want("application", &["node-2"])
            },
            &[2],
        ),
    ];
    // Every other kind on one family each, alternating (both families of every kind:
    // `one_family_matrix`).
    let pick = |family: &'static str, kind: &str| {
        every_one_family_fault(family)
            .into_iter()
            .find(|p| p.fault[0] == kind)
            .unwrap_or_else(|| panic!("no one-family {kind}"))
    };
    v.extend([
        pick("ipv4", "policy"),
        pick("ipv6", "partition"),
        pick("ipv4", "loss"),
        pick("ipv6", "pmtu-blackhole"),
    ]);
    v
}

/// Every fault kind that acts on one family (`--family`), on `family` (the bench's matrix).
fn every_one_family_fault(family: &'static str) -> Vec<Placed> {
    let f = Some(family);
    let on = |args: &'static [&'static str]| -> &'static [&'static str] {
        let mut v = args.to_vec();
        v.extend(["--family", family]);
        Vec::leak(v)
    };
    vec![
        placed(
            on(&["route", "node-1", "node-2"]),
            Want {
                or_nodes: &["node-1", "node-2"],
                // The other family carries node-2's agent's answers, so its side shows too.
                pairs: &[
                    ["node-1", "node-2"],
                    ["node-1", "web-node-2"],
                    ["node-2", "node-1"],
                    ["node-2", "web-node-1"],
                ],
                family: f,
                ..want("routing", &["node-1"])
            },
            &[1, 2],
        ),
        placed(
            on(&["cni", "node-3"]),
            Want {
                family: f,
                ..want("cni", &["node-3"])
            },
            &[3],
        ),
        placed(
            on(&["policy", "web-node-4"]),
            Want {
                targets: &["web-node-4"],
                family: f,
                ..want("policy", &["node-4"])
            },
            &[4],
        ),
        placed(
            on(&["reject", "web-node-2"]),
            Want {
                targets: &["web-node-2"],
                family: f,
                ..want("application", &["node-2"])
            },
            &[2],
        ),
        placed(
            on(&["partition", "zone-a", "zone-b"]),
            Want {
                zones: &["zone-a", "zone-b"],
                family: f,
                ..want("vpc", &[])
            },
            &[1, 2, 3, 4],
        ),
        // The lowered link MTU is both families' (only the dropped ICMP is one family's): an
        // MTU fault on node-2 in both, one finding without a family.
        Placed {
            deadline: MTU_DEADLINE,
            ..placed(
                on(&["pmtu-blackhole", "node-2", "1400"]),
                want("mtu", &["node-2"]),
                &[2],
            )
        },
        placed(
            on(&["loss", "node-2", "30"]),
            Want {
                family: f,
                ..want("packet_loss", &["node-2"])
            },
            &[2],
        ),
    ]
}

/// The bench's one-family matrix (`bench/addressing.sh` with `ADDRESSING_FAMILIES=one`): in
/// a dual-stack lab under each addressing, every fault kind that takes `--family` on each
/// family alone — found in that family, named by it, nothing said of the other.
#[test]
#[ignore = "about 8 minutes; run by bench/addressing.sh"]
fn one_family_matrix() {
    require_root!();
    let modes = std::env::var("ADDRESSING_MODES").unwrap_or_else(|_| "subnet,blocks,vpc".into());
    let mut rows = Vec::new();
    for (mode, tag) in [("subnet", "s"), ("blocks", "b"), ("vpc", "v")] {
        if !modes.split(',').any(|m| m.trim() == mode) {
            continue;
        }
        let mut faults = every_one_family_fault("ipv4");
        faults.extend(every_one_family_fault("ipv6"));
        rows.extend(addressing_run(mode, "dual", &faults, &format!("{tag}o")));
    }
    println!("ADDRESSING TABLE\n{}", addressing_table(&rows));
    assert_placed(&rows);
}

/// Every lab fault kind (the bench's matrix).
fn every_fault() -> Vec<Placed> {
    let mut v = sampled_faults();
    v.extend([
        placed(
            &["route", "node-1", "node-2"],
            Want {
                or_nodes: &["node-1", "node-2"],
                pairs: &[["node-1", "node-2"], ["node-1", "web-node-2"]],
                ..want("routing", &["node-1"])
            },
            &[1, 2],
        ),
        placed(
            &["policy", "web-node-4"],
            Want {
                targets: &["web-node-4"],
                ..want("policy", &["node-4"])
            },
            &[4],
        ),
        placed(
            &["partition", "zone-a", "zone-b"],
            Want {
                zones: &["zone-a", "zone-b"],
                ..want("vpc", &[])
            },
            &[1, 2, 3, 4],
        ),
        Placed {
            deadline: MTU_DEADLINE,
            ..placed(&["mtu", "node-2", "1400"], want("mtu", &["node-2"]), &[2])
        },
        Placed {
            deadline: MTU_DEADLINE,
            ..placed(
                &["pmtu-blackhole", "node-2", "1400"],
                want("mtu", &["node-2"]),
                &[2],
            )
        },
        placed(
            &["loss", "node-2", "30"],
            want("packet_loss", &["node-2"]),
            &[2],
        ),
    ]);
    v
}

/// What one fault gave under one addressing mode.
struct PlacedRow {
    mode: &'static str,
    /// `ipv4`, `ipv6` or `dual` (`lab up --ip-family`).
    family: &'static str,
    fault: String,
    /// Command → the right cause and place (None: not within the deadline).
    right: Option<Duration>,
    /// `clear` → healthy.
    healthy: Option<Duration>,
    polls: u32,
    /// Findings naming a node the fault does not involve, on any poll while it is on.
    stray: Vec<String>,
    /// The same after `clear`, until healthy.
    recovery_stray: Vec<String>,
    /// Steady polls with no finding at all while the view left an agent out (see [`gap`]).
    gaps: Vec<String>,
    /// The last answer when the right one never came, or the first wrong one while steady.
    wrong: Option<String>,
    /// The first two wrong, stray or empty polls, each as node-1's view with its inputs: saved
    /// to a file, `meshprobe diagnose --results FILE` replays it (printed when the test fails).
    views: Vec<String>,
}

impl PlacedRow {
    /// The mode, and the family when not IPv4 (the IPv4 table reads as before).
    fn label(&self) -> String {
        match self.family {
            "ipv4" => self.mode.to_string(),
            f => format!("{} ({f})", self.mode),
        }
    }

    fn ok(&self) -> bool {
        self.right.is_some()
            && self.healthy.is_some()
            && self.stray.is_empty()
            && self.recovery_stray.is_empty()
            && self.wrong.is_none()
    }
}

/// The nodes a lab fault command involves: those it names (a target `web-node-N`: node N), or
/// every node of the lab's 4 for a partition (each is in one of the two zones).
fn involved_by(fault: &[&str]) -> Vec<u16> {
    if fault[0] == "partition" {
        return vec![1, 2, 3, 4];
    }
    fault[1..]
        .iter()
        .filter_map(|w| {
            w.strip_prefix("web-")
                .unwrap_or(w)
                .strip_prefix("node-")
                .and_then(|i| i.parse().ok())
        })
        .collect()
}

/// Findings of `d` placing a fault on a node outside `involved` (their `nodes`: where the
/// finding says the fault is; `targets` and `pairs` list the paths it affects, which may run
/// to any node).
/// Known onset blip, tolerated until the engine has its rule (then remove this): in the first
/// [`ONSET_BLIP`] after a fault's command, a poll whose only strays are `packet_loss` on
/// uninvolved nodes (a probe cut at the fault's edge read as loss). Seen on 2026-12-07 in 2 of
/// 4 full `lab_e2e` runs (`route node-2 node-4 + cni node-3`: packet_loss node-1 at +1.3 s;
/// IPv6 `route node-1 node-2`: packet_loss node-4 at +0.6 s and +1.4 s), never after 3 s.
/// Printed whole with its inputs (replayable), never counted as right; any other stray fails.
const ONSET_BLIP: Duration = Duration::from_secs(3);

fn onset_blip(stray: &[String], since: Duration) -> bool {
    since < ONSET_BLIP && !stray.is_empty() && stray.iter().all(|s| s.starts_with("packet_loss "))
}

fn uninvolved(d: &Value, involved: &[u16]) -> Vec<String> {
    let ok = |name: &str| {
        name.strip_prefix("node-")
            .and_then(|i| i.parse::<u16>().ok())
            .is_some_and(|i| involved.contains(&i))
    };
    d["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| strs(&f["nodes"]).iter().any(|n| !ok(n)))
        .map(|f| {
            format!(
                "{} nodes={:?} targets={:?}",
                f["cause"].as_str().unwrap_or("?"),
                strs(&f["nodes"]),
                strs(&f["targets"])
            )
        })
        .collect()
}

/// Bring up a lab with `--pod-addressing mode`, check it is clean, then inject each fault:
/// node-1's diagnosis polled every 250 ms from the command until it is exactly the wanted
/// finding, then 6 more polls 0.5 s apart (the same answer: it must not drift; MTU faults
/// excepted, as in the full suite), then `clear` and polled until healthy and every agent sees
/// every path up again. Every poll is checked for findings that name an uninvolved node, while
/// the fault is on and after `clear` until healthy; both are asserted (the recovery transient
/// that CI of a1b4fc6 read after clearing blocks `node-down node-4` is replayed in the engine's
/// tests: `views/node-down-clear-blocks.json`).
fn addressing_run(
    mode: &'static str,
    family: &'static str,
    faults: &[Placed],
    tag: &str,
) -> Vec<PlacedRow> {
    let prefix = format!("mp{tag}{}", std::process::id() % 10_000);
    let lab = Lab::up_with(
        &prefix,
        4,
        2,
        &[
            "--pod-addressing",
            mode,
            "--ip-family",
            family,
            "--icmp-count",
            "3",
            "--mtu-interval",
            "2s",
        ],
    );
    let usable = usable_layers(&lab);
    let all_up = |_: u16, _: Dest, _: &str| Exp::Up;
    let t = Instant::now();
    assert_diagnosis(&lab, &format!("{mode}: clean lab"), t, t + DIAG_CLEAR, None);
    // The peers file's facts reach the results (and so every reader's ownership map).
    let r = lab.get_json("node-1", "/api/v1/results", Duration::from_secs(3));
    let places = strs(&r["owners"]["targets"].as_array().map_or(Value::Null, |a| {
        Value::Array(a.iter().map(|t| t["node"].clone()).collect())
    }));
    assert_eq!(
        places,
        ["node-1", "node-2", "node-3", "node-4"],
        "{mode}: {r}"
    );
    // The agents probe the family asked for: every target's address, as the agents state it.
    let ips: Vec<std::net::IpAddr> = r["owners"]["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["ip"].as_str()?.parse().ok())
        .collect();
    assert_eq!(ips.len(), 4, "{mode} {family}: {r}");
    assert!(
        ips.iter().all(|ip| ip.is_ipv6() == (family == "ipv6")),
        "{mode} {family}: target addresses {ips:?}"
    );
    if family == "dual" {
        // Both families are facts (the primary, IPv4, first) and both carry packets: node-1's
        // probe pod reaches every other node's pod at each of its addresses.
        for (i, n) in r["owners"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let pod_ips = strs(&n["pod_ips"]);
            assert_eq!(pod_ips.len(), 2, "{n}");
            assert!(pod_ips[0].parse::<std::net::Ipv4Addr>().is_ok(), "{n}");
            assert!(pod_ips[1].parse::<std::net::Ipv6Addr>().is_ok(), "{n}");
            if i > 0 {
                for ip in &pod_ips {
                    assert_eq!(ping(&lab.ns(1, "probe"), ip, 56, false), Ping::Ok, "{ip}");
                }
            }
        }
    }
    if family != "ipv4" {
        // Below IPv6's minimum link MTU the node would lose its addresses: refused, exit 2.
        let out = lab.cli(&["fault", "mtu", "node-2", "1200"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("1280"), "{err}");
    }
    let mut rows = Vec::new();
    for c in faults {
        let name = c.fault.join(" ");
        eprintln!("{mode} {family}: fault {name}");
        let mut args = vec!["fault"];
        args.extend_from_slice(c.fault);
        let mut row = PlacedRow {
            mode,
            family,
            fault: name.clone(),
            right: None,
            healthy: None,
            polls: 0,
            stray: Vec::new(),
            recovery_stray: Vec::new(),
            gaps: Vec::new(),
            wrong: None,
            views: Vec::new(),
        };
        let keep = |row: &mut PlacedRow, d: &Value| {
            if row.views.len() < 2 {
                row.views.push(d.to_string());
            }
        };
        let t0 = Instant::now();
        lab.ok(&args);
        let at = |phase: &str, t: Instant, list: Vec<String>| {
            list.into_iter()
                .map(|f| format!("{phase} +{:.1}s: {f}", t.elapsed().as_secs_f64()))
                .collect::<Vec<_>>()
        };
        loop {
            let d = lab.diagnosis_with_inputs();
            row.polls += 1;
            let stray = uninvolved(&d, c.involved);
            if onset_blip(&stray, t0.elapsed()) {
                eprintln!(
                    "{mode} {family} {name}: TOLERATED onset blip {:.1}s after the command: {stray:?} (see ONSET_BLIP); the poll with its inputs:\n{d}",
                    t0.elapsed().as_secs_f64()
                );
            } else {
                if !stray.is_empty() {
                    keep(&mut row, &d);
                }
                row.stray.extend(at("onset", t0, stray));
            }
            match diagnosis_matches(&d, Some(&c.want)) {
                Ok(()) => {
                    row.right = Some(t0.elapsed());
                    break;
                }
                Err(e) if t0.elapsed() >= c.deadline => {
                    keep(&mut row, &d);
                    row.wrong = Some(e);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        if row.right.is_some() && c.want.cause != "mtu" {
            for _ in 0..6 {
                std::thread::sleep(Duration::from_millis(500));
                let d = lab.diagnosis_with_inputs();
                row.polls += 1;
                let stray = uninvolved(&d, c.involved);
                if !stray.is_empty() {
                    keep(&mut row, &d);
                }
                row.stray.extend(at("steady", t0, stray));
                if let Err(e) = diagnosis_matches(&d, Some(&c.want)) {
                    keep(&mut row, &d);
                    if gap(&d) && row.gaps.is_empty() {
                        row.gaps
                            .push(format!("+{:.1}s", t0.elapsed().as_secs_f64()));
                        continue;
                    }
                    row.wrong
                        .get_or_insert(format!("right at first, then: {e}"));
                }
            }
        }
        let cleared = Instant::now();
        lab.ok(&["clear"]);
        loop {
            let d = lab.diagnosis_with_inputs();
            row.polls += 1;
            let stray = uninvolved(&d, c.involved);
            if !stray.is_empty() {
                keep(&mut row, &d);
            }
            row.recovery_stray.extend(at("cleared", cleared, stray));
            if diagnosis_matches(&d, None).is_ok() {
                row.healthy = Some(cleared.elapsed());
                break;
            }
            if cleared.elapsed() >= DIAG_CLEAR {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_agents(
            &lab,
            &usable,
            &format!("{mode}: {name} cleared"),
            cleared,
            &all_up,
        );
        if c.want.cause == "mtu" {
            assert_mtu(&lab, &format!("{mode}: {name} cleared"), &|_, _| NORMAL_MTU);
        }
        row.stray.dedup();
        row.recovery_stray.dedup();
        eprintln!(
            "  {mode} {family} {name}: right {:?}, healthy {:?}, {} polls, stray {:?}, empty polls {:?}, wrong {:?}",
            row.right, row.healthy, row.polls, row.stray, row.gaps, row.wrong
        );
        rows.push(row);
    }
    if family == "dual" {
        assert_family_faults(&lab, &r);
    }
    rows
}

/// `lab fault … --family` in the dual lab: a fault confined to one family breaks that family's
/// paths and leaves the other's; two families' faults of one place coexist and clear apart;
/// `clear` restores both. Pings from node-1's probe pod to another node's probe pod, and TCP to
/// a target pod, at each of its addresses.
fn assert_family_faults(lab: &Lab, results: &Value) {
    let t = Instant::now();
    let owned = |list: &str, name: &str, key: &str| -> Vec<std::net::IpAddr> {
        let entry = results["owners"][list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {results}"));
        let ips: Vec<std::net::IpAddr> = strs(&entry[key])
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        assert!(
            ips.len() == 2 && ips[0].is_ipv4() && ips[1].is_ipv6(),
            "{entry}"
        );
        ips
    };
    let from = lab.ns(1, "probe");
    // An answer may take a retry (one echo, 1 s); a broken path fails every try.
    let answers =
        |ip: std::net::IpAddr| (0..3).any(|_| ping(&from, &ip.to_string(), 56, false) == Ping::Ok);
    let paths = |node: &str, want: (bool, bool), when: &str| {
        let ips = owned("nodes", node, "pod_ips");
        let got = (answers(ips[0]), answers(ips[1]));
        assert_eq!(
            got, want,
            "{when}: {node}'s pod {ips:?} (IPv4, IPv6) answers"
        );
    };
    let refused = |args: &[&str], says: &str| {
        let out = lab.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };

    let out = lab.ok(&["fault", "route", "node-1", "node-3", "--family", "ipv6"]);
    assert!(out.contains("ipv6 only"), "{out}");
    paths("node-3", (true, false), "route node-1 node-3 --family ipv6");
    let status = lab.ok(&["status"]);
    assert!(
        status.contains("route node-1 node-3 --family ipv6  (ipv6 only)"),
        "{status}"
    );
    // The same place on both families overlaps the IPv6 fault; on IPv4 alone it coexists,
    // and clearing it leaves the IPv6 fault in place.
    refused(&["fault", "route", "node-1", "node-3"], "already active");
    lab.ok(&["fault", "route", "node-1", "node-3", "--family", "ipv4"]);
    paths(
        "node-3",
        (false, false),
        "route node-1 node-3 in each family",
    );
    lab.ok(&["clear", "route", "node-1", "node-3", "--family", "ipv4"]);
    paths("node-3", (true, false), "the IPv4 route cleared");
    lab.ok(&["clear"]);
    paths("node-3", (true, true), "route cleared");

    // Address matches (cni), `meta nfproto` (partition), `meta protocol` (loss): one family.
    for (fault, node, want) in [
        (
            &["cni", "node-3", "--family", "ipv4"][..],
            "node-3",
            (false, true),
        ),
        (
            &["partition", "zone-a", "zone-b", "--family", "ipv6"],
            "node-2",
            (true, false),
        ),
        (
            &["loss", "node-2", "100", "--family", "ipv4"],
            "node-2",
            (false, true),
        ),
    ] {
        let mut args = vec!["fault"];
        args.extend_from_slice(fault);
        lab.ok(&args);
        paths(node, want, &fault.join(" "));
        // `clear KIND ARGS…` without --family clears the place's fault of each family.
        let mut args = vec!["clear"];
        args.extend_from_slice(&fault[..fault.len() - 2]);
        lab.ok(&args);
        paths(node, (true, true), &format!("{} cleared", fault.join(" ")));
    }
    // A target port filter (`meta nfproto`): TCP to web-node-2 at each address.
    let web = owned("targets", "web-node-2", "ips");
    let tcp_to = |ip: std::net::IpAddr| tcp(&from, &SocketAddr::new(ip, 8080).to_string());
    for (fault, want4, want6) in [
        (
            ["reject", "web-node-2", "--family", "ipv4"],
            Tcp::Refused,
            Tcp::Ok,
        ),
        (
            ["policy", "web-node-2", "--family", "ipv6"],
            Tcp::Ok,
            Tcp::Timeout,
        ),
    ] {
        let mut args = vec!["fault"];
        args.extend_from_slice(&fault);
        lab.ok(&args);
        assert_eq!(
            (tcp_to(web[0]), tcp_to(web[1])),
            (want4, want6),
            "{fault:?}"
        );
        lab.ok(&["clear"]);
        assert_eq!(
            (tcp_to(web[0]), tcp_to(web[1])),
            (Tcp::Ok, Tcp::Ok),
            "{fault:?} cleared"
        );
    }

    // A link is both families': refused, naming the fault; the lab is left as it was.
    refused(
        &["fault", "node-down", "node-4", "--family", "ipv4"],
        "`fault node-down`",
    );
    refused(
        &["fault", "mtu", "node-2", "--family", "ipv6"],
        "`fault mtu`",
    );
    refused(&["clear", "--family", "ipv6"], "--family on `clear`");
    assert!(lab.ok(&["status"]).contains("faults: none"));
    eprintln!("dual --family checks: {:.1}s", t.elapsed().as_secs_f64());
}

/// A known gap, tolerated once per fault while steady (issue 22's note, 2026-12-06): an answer
/// with no finding at all while the view left out an agent that node-1's own HTTP probes find
/// down ("not waited for") — seen in 2 of ~10 runs of this suite, at `route node-1 node-3` and
/// `loss node-2 30`, for one poll. It is no misplaced finding (what this suite is about) and
/// is counted in the table; a second such poll, or any wrong or stray finding, fails.
fn gap(d: &Value) -> bool {
    let empty = d["findings"].as_array().is_some_and(Vec::is_empty);
    let left_out = d["agents_unreachable"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|u| {
            u["error"]
                .as_str()
                .is_some_and(|e| e.contains("not waited for"))
        });
    empty && left_out
}

fn addressing_table(rows: &[PlacedRow]) -> String {
    let secs =
        |d: Option<Duration>| d.map_or("—".into(), |d| format!("{:.1} s", d.as_secs_f64()));
    let mut out = String::from(
        "| mode | fault | right cause and place, no uninvolved node | command → right | clear → healthy | polls | findings naming an uninvolved node while on | the same after clear, until healthy | empty polls, an agent left out |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.label(),
            r.fault,
            if r.ok() { "yes" } else { "NO" },
            secs(r.right),
            secs(r.healthy),
            r.polls,
            if r.stray.is_empty() {
                "0".to_string()
            } else {
                r.stray.join("; ")
            },
            if r.recovery_stray.is_empty() {
                "0".to_string()
            } else {
                r.recovery_stray.join("; ")
            },
            if r.gaps.is_empty() {
                "0".to_string()
            } else {
                r.gaps.join("; ")
            }
        ));
    }
    out
}

fn assert_placed(rows: &[PlacedRow]) {
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| {
            format!(
                "{} {}: right {:?}, healthy {:?}, stray {:?}, after clear {:?}, wrong {:?}",
                r.label(),
                r.fault,
                r.right,
                r.healthy,
                r.stray,
                r.recovery_stray,
                r.wrong
            )
        })
        .collect();
    for r in rows.iter().filter(|r| !r.ok()) {
        for v in &r.views {
            eprintln!(
                "{} {}: a wrong poll with its inputs (save as view.json; `meshprobe diagnose --results view.json` replays it):\n{v}",
                r.label(),
                r.fault
            );
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Calico-like blocks and VPC-native addressing (the full fault set runs under `subnet` in
/// `every_fault_is_seen_by_packets_and_agents_then_clears`): the faults whose place depends on
/// who owns an address give the right cause and place, and no poll names an uninvolved node.
#[test]
fn every_addressing_mode_places_faults_right() {
    require_root!();
    let t = Instant::now();
    let mut rows = addressing_run("blocks", "ipv4", &sampled_faults(), "b");
    rows.extend(addressing_run("vpc", "ipv4", &sampled_faults(), "v"));
    eprintln!("{}", addressing_table(&rows));
    eprintln!("addressing suite: {:.1}s", t.elapsed().as_secs_f64());
    assert_placed(&rows);
}

/// The IPv6-only lab (issue 24 step 1): every fault kind, the same assertions as the IPv4
/// runs (the right cause and place, no poll naming an uninvolved node while the fault is on,
/// healthy and every path up after `clear`), on ULA addresses only.
#[test]
fn the_ipv6_lab_places_every_fault_right() {
    require_root!();
    let t = Instant::now();
    let rows = addressing_run("subnet", "ipv6", &every_fault(), "6");
    eprintln!("{}", addressing_table(&rows));
    eprintln!("ipv6 suite: {:.1}s", t.elapsed().as_secs_f64());
    assert_placed(&rows);
}

/// The dual-stack lab: both families on every link and in the peers file, the agents probing
/// the primary (IPv4) addresses, every fault acting on both families. The faults whose place
/// depends on who owns an address give the right cause and place with both families' facts
/// in the ownership map; then `lab fault … --family` breaks one family alone
/// ([`assert_family_faults`]).
#[test]
fn the_dual_stack_lab_places_faults_right() {
    require_root!();
    let t = Instant::now();
    let mut faults = sampled_faults();
    faults.extend(one_family_faults());
    let rows = addressing_run("subnet", "dual", &faults, "d");
    eprintln!("{}", addressing_table(&rows));
    eprintln!("dual suite: {:.1}s", t.elapsed().as_secs_f64());
    assert_placed(&rows);
}

/// The faults one layer above the pod network (issue 25), each placed by the agents'
/// per-source checks: a node's Service rules gone (its DNS, behind a ClusterIP too, with
/// them) or stale, one node's DNS traffic dropped, the DNS server down; and a node whose
/// conntrack table takes no new flow, placed by the pair probes. The lab's agents
/// check the agents' ClusterIP and resolve through the DNS ClusterIP
/// (`Topology::agent_check_args`).
fn service_faults() -> Vec<Placed> {
    vec![
        placed(
            &["kube-proxy", "node-3"],
            want("service", &["node-3"]),
            &[3],
        ),
        placed(
            &["kube-proxy", "node-2", "stale"],
            want("service", &["node-2"]),
            &[2],
        ),
        placed(&["dns-from", "node-3"], want("dns", &["node-3"]), &[3]),
        placed(&["dns-down"], want("dns", &[]), &[]),
        // Node-3's pods cut off from the API server (its endpoint, so its ClusterIP too).
        placed(
            &["apiserver-from", "node-3"],
            want("apiserver", &["node-3"]),
            &[3],
        ),
        placed(
            &["conntrack", "node-2"],
            Want {
                targets: &["web-node-2"],
                ..want("conntrack", &["node-2"])
            },
            &[2],
        ),
    ]
}

/// Issue 25: each Service/DNS fault read as `service` or `dns` at its place, `conntrack` as
/// `conntrack` (and, with the other tests, no pod-network fault read as any of them: their
/// findings must match exactly).
#[test]
fn the_service_and_dns_faults_are_placed_right() {
    require_root!();
    let t = Instant::now();
    let rows = addressing_run("subnet", "ipv4", &service_faults(), "s");
    eprintln!("{}", addressing_table(&rows));
    eprintln!("service suite: {:.1}s", t.elapsed().as_secs_f64());
    assert_placed(&rows);
}

/// The bench's matrix (`bench/addressing.sh`): every fault kind under every addressing mode,
/// in each IP family.
#[test]
#[ignore = "about 12 minutes; run by bench/addressing.sh"]
fn addressing_matrix() {
    require_root!();
    let mut rows = Vec::new();
    // ADDRESSING_FAMILIES=ipv4,ipv6,dual (the default: all three) picks the families.
    let families = std::env::var("ADDRESSING_FAMILIES").unwrap_or_else(|_| "ipv4,ipv6,dual".into());
    let families: Vec<&str> = families.split(',').map(str::trim).collect();
    for f in &families {
        assert!(
            ["ipv4", "ipv6", "dual"].contains(f),
            "ADDRESSING_FAMILIES: {f:?} is none of ipv4, ipv6, dual"
        );
    }
    for (family, t) in [("ipv4", ""), ("ipv6", "6"), ("dual", "d")] {
        if !families.contains(&family) {
            continue;
        }
        for (mode, tag) in [("subnet", "s"), ("blocks", "b"), ("vpc", "v")] {
            rows.extend(addressing_run(
                mode,
                family,
                &every_fault(),
                &format!("{tag}{t}"),
            ));
        }
    }
    println!("ADDRESSING TABLE\n{}", addressing_table(&rows));
    assert_placed(&rows);
}

/// `lab up --unprivileged`: the agents run without CAP_NET_RAW (as under
/// `deploy/base`), on ICMP datagram sockets, and path-MTU discovery still
/// reads `mtu node-2 1400` as the privileged agents do (node-2's own report outbound, the
/// black hole inbound), then goes back to 1500 after `clear`.
#[test]
fn unprivileged_agents_still_find_path_mtu_faults() {
    require_root!();
    let prefix = format!("mpu{}", std::process::id() % 100_000);
    let lab = Lab::up_with(&prefix, 2, 2, &["--mtu-interval", "2s", "--unprivileged"]);
    for p in lab.status()["processes"].as_array().unwrap() {
        if p["role"] != "agent" {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", p["pid"])).unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(
            eff & (1 << 13),
            0,
            "{} holds CAP_NET_RAW: {status}",
            p["node"]
        );
    }
    for node in ["node-1", "node-2"] {
        let (code, text) = lab.get(node, "/metrics", Duration::from_secs(5)).unwrap();
        assert_eq!(code, 200);
        assert!(
            text.contains(r#"icmp_socket="dgram",pmtu_socket="datagram"} 1"#),
            "{node}: {}",
            text.lines()
                .find(|l| l.starts_with("meshprobe_agent_info"))
                .unwrap_or("")
        );
    }
    assert_mtu(&lab, "unprivileged, clean", &|_, _| NORMAL_MTU);
    lab.ok(&["fault", "mtu", "node-2", "1400"]);
    let took = assert_mtu(
        &lab,
        "unprivileged, mtu node-2 1400",
        &|src, dst| match (src, dst) {
            (2, _) => (1400..=1400, &["mismatch"]),
            (_, 2) => INBOUND_BLACKHOLE_1400,
            _ => NORMAL_MTU,
        },
    );
    eprintln!(
        "unprivileged agents: mtu fault read in {:.1}s",
        took.as_secs_f64()
    );
    lab.ok(&["clear"]);
    assert_mtu(&lab, "unprivileged, cleared", &|_, _| NORMAL_MTU);
}

#[test]
fn down_after_kill_9_removes_every_namespace_and_process() {
    require_root!();
    let prefix = format!("mpk{}", std::process::id() % 100_000);
    let mut lab = Lab::up_with(
        &prefix,
        2,
        1,
        &["--icmp-count", "3", "--mtu-interval", "2s"],
    );
    let st = lab.status();
    let pids: Vec<u32> = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    // A stray process in a lab namespace must go too.
    let mut stray = Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-n1-web"), "sleep", "300"])
        .spawn()
        .unwrap();
    lab.ok(&["fault", "loss", "node-1", "10"]);

    // kill -9 the lab process: nothing gets a chance to clean up.
    let mut child = lab.take_child().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        lab_namespaces(&prefix).len(),
        2 + 2 * 3 + 1,
        "namespaces survive the crash"
    );
    let status = lab.cli(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("gone"));

    let out = lab.cli(&["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab_namespaces(&prefix).is_empty(), "namespaces left behind");
    assert!(!PathBuf::from(format!("/run/meshprobe-lab/{prefix}")).exists());
    let stray_status = stray.wait().unwrap();
    assert!(!stray_status.success(), "stray process was not killed");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} still alive: {stat}"
        );
    }
    // Nothing left: status says so (exit 1), a second down is a no-op.
    assert_eq!(lab.cli(&["status"]).status.code(), Some(1));
    assert!(lab.cli(&["down"]).status.success());
}

#[test]
fn refuses_without_root_and_with_bad_flags() {
    require_root!();
    // Not root: exit 2 with a reason (run as nobody).
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            EXE,
            "lab",
            "status",
        ])
        .output();
    match out {
        Ok(out) => {
            assert_eq!(out.status.code(), Some(2), "{out:?}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("root"));
        }
        Err(e) => eprintln!("setpriv unavailable ({e}): not-root check skipped"),
    }
    for args in [
        &["lab", "--prefix", "Bad-Prefix", "status"][..],
        &["lab", "--prefix", "mpz", "up", "--nodes", "0"],
        &[
            "lab", "--prefix", "mpz", "up", "--zones", "5", "--nodes", "4",
        ],
        &["lab", "--prefix", "mpz", "up", "--interval", "soon"],
        &["lab", "--prefix", "mpz", "up", "--interval", "1s"],
        &["lab", "--prefix", "mpz", "up", "--ip-family", "ipv5"],
    ] {
        let out = Command::new(EXE).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    assert!(lab_namespaces("mpz").is_empty());
    // Faults against a lab that does not exist: a clear error.
    let out = Command::new(EXE)
        .args(["lab", "--prefix", "mpz", "fault", "cni", "node-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lab"));
}

/// `lab --prefix P up` with 2 nodes in 1 zone, its output to pipes, PATH as given.
fn spawn_small_lab(prefix: &str, path: &str) -> std::process::Child {
    use std::process::Stdio;
    Command::new(EXE)
        .args(["lab", "--prefix", prefix, "up", "--port-base", "0"])
        .args(["--nodes", "2", "--zones", "1", "--interval", "1s"])
        .args(["--timeout", "500ms", "--window", "8s"])
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshprobe lab up")
}

/// Read `child`'s stdout until `lab up` prints its guidance (bounded: 90 s).
fn read_until_up(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl-C here tears the lab down") {
                // Dropping the reader closes the pipe: the lab's next write finds no reader.
                let _ = tx.send(Ok(text));
                return;
            }
        }
        let _ = tx.send(Err(text));
    });
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(Ok(text)) => text,
        Ok(Err(text)) => panic!("lab up ended its output before it was up:\n{text}"),
        Err(_) => panic!("lab up was not up within 90 s"),
    }
}

/// Wait (bounded) for `child` to exit; its exit status.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("lab up did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {}", child.id());
}

#[test]
fn ctrl_c_tears_down_even_when_the_output_pipes_are_closed() {
    require_root!();
    let prefix = format!("mpc{}", std::process::id() % 100_000);
    let path = std::env::var("PATH").unwrap_or_default();
    let mut child = spawn_small_lab(&prefix, &path);
    read_until_up(&mut child);
    let pids: Vec<u64> = {
        let out = Command::new(EXE)
            .args(["lab", "--prefix", &prefix, "status", "--json"])
            .output()
            .unwrap();
        let st: Value = serde_json::from_slice(&out.stdout).expect("status --json");
        st["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap())
            .collect()
    };
    assert!(!pids.is_empty());
    // Close stderr too (stdout's reader is already gone), as `lab 2>&1 | tee log` then Ctrl-C does.
    drop(child.stderr.take());
    std::thread::sleep(Duration::from_millis(200));
    send_signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let left = lab_namespaces(&prefix);
    // Clean up whatever a failure left, before asserting.
    let _ = Command::new(EXE)
        .args(["lab", "--prefix", &prefix, "down"])
        .output();
    assert!(
        status.success(),
        "lab up after SIGINT with closed pipes: {status}"
    );
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} still alive: {stat}"
        );
    }
}

/// A directory holding links to `tools` (found on this machine's PATH) and nothing else.
fn path_with(dir: &std::path::Path, tools: &[&str]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    for t in tools {
        let real = std::env::split_paths(&path)
            .map(|d| d.join(t))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{t} is not installed (tests/run.sh installs it as root)"));
        std::os::unix::fs::symlink(real, dir.join(t)).unwrap();
    }
}

#[test]
fn up_checks_its_tools_first_and_installs_what_is_missing() {
    require_root!();
    let prefix = format!("mpi{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("{prefix}-path"));
    // Without nft and with --no-install: exit 2 naming the package, nothing built.
    path_with(&dir, &["ip", "sysctl"]);
    let out = Command::new(EXE)
        .args(["lab", "--prefix", &prefix, "up", "--no-install"])
        .env("PATH", &dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nftables") && err.contains("apt-get install"),
        "{err}"
    );
    assert!(lab_namespaces(&prefix).is_empty());

    // Without nft, with an apt-get on PATH: `up` installs it (here a stand-in apt-get that logs
    // its arguments and links the real nft, so the machine's packages are left alone), then
    // builds; a fault that needs nft works.
    let real_nft = std::env::split_paths(&std::env::var("PATH").unwrap_or_default())
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
        .expect("nft is not installed (tests/run.sh installs it as root)");
    let apt_log = dir.join("apt-get.log");
    let apt = dir.join("apt-get");
    std::fs::write(
        &apt,
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\ncase \"$1\" in install) ln -sf {nft} {dir}/nft ;; esac\n",
            log = apt_log.display(),
            nft = real_nft.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    // apt-get's script runs under /bin/sh with this PATH: give it ln.
    let ln = std::env::split_paths(&std::env::var("PATH").unwrap_or_default())
        .map(|d| d.join("ln"))
        .find(|p| p.is_file())
        .unwrap();
    std::os::unix::fs::symlink(ln, dir.join("ln")).unwrap();

    let mut child = spawn_small_lab(&prefix, &dir.display().to_string());
    read_until_up(&mut child);
    let calls = std::fs::read_to_string(&apt_log).unwrap_or_default();
    let fault = Command::new(EXE)
        .args(["lab", "--prefix", &prefix, "fault", "loss", "node-1", "10"])
        .env("PATH", &dir)
        .output()
        .unwrap();
    send_signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let left = lab_namespaces(&prefix);
    let _ = Command::new(EXE)
        .args(["lab", "--prefix", &prefix, "down"])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        calls,
        "update -qq\ninstall -y -qq --no-install-recommends nftables\n"
    );
    assert!(
        fault.status.success(),
        "fault loss after up installed nft: {}",
        String::from_utf8_lossy(&fault.stderr)
    );
    assert!(status.success(), "lab up after SIGTERM: {status}");
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
