//! The fleet emulator (`meshprobe plan --simulate --serve`) scraped by Debian's real
//! Prometheus, one target per zone (`honor_labels`), with the shipped recording and alerting
//! rules loaded, read back by `meshprobe diagnose --prometheus`: a 60-node, 3-zone cluster on a
//! sampled plan (`--full-mesh-max 20`, so the agents' default `--pair-metrics auto` exports
//! failing destinations only, plus `meshprobe_pair_planned`). In turn: healthy with every agent
//! answering; a lost route from node-00001 to a planned peer that does not probe it back (one
//! probed direction) found as `routing` on node-00001, and `MeshprobePodToPodUnreachable` firing for that pair only (before
//! `meshprobe_pair_planned` both read the one failing source as every source: `cni` on the far
//! node, no alert); a CNI fault and a node down found, cause and place, with that node's agent
//! unreachable; healthy again when the faults end.
//!
//! Needs `prometheus` (Debian package); no root, no packet sent.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::net::{free_port, get_via, ip};
use support::prometheus::Prometheus;
use support::sys::{have_or_skip, scratch_dir, spawn_logged, EXE};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn diagnose(prom: SocketAddr) -> (i32, Value, String) {
    let out = Command::new(EXE)
        .args([
            "diagnose",
            "--prometheus",
            &format!("http://{prom}"),
            // Above the default 5 s: a debug Prometheus on a shared 2-core runner can take
            // longer to answer a 1,000-agent query; the answer is what is checked here.
            "--timeout",
            "15s",
            "-o",
            "json",
        ])
        .output()
        .expect("run meshprobe diagnose");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Poll `diagnose --prometheus` every 500 ms until `ok`, at the latest by `deadline`; prints
/// the time since `since` (the emulator's or the fault's start) when it is.
fn until(
    prom: SocketAddr,
    what: &str,
    since: Instant,
    deadline: Instant,
    ok: impl Fn(i32, &Value) -> bool,
) {
    loop {
        let (code, d, err) = diagnose(prom);
        if ok(code, &d) {
            eprintln!("  {what}: after {:.1}s", since.elapsed().as_secs_f64());
            // Nothing odd in the data: every agent's gauges matched, no planned pair left unknown.
            assert!(!err.contains("Prometheus data:"), "{what}: {err}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not by its deadline; last: exit {code}, findings {}, answered {}, unreachable {}\n{err}",
            d["findings"],
            d["agents_answered"].as_array().map_or(0, Vec::len),
            d["agents_unreachable"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One instant query's result (empty when Prometheus does not answer it).
fn query(prom: SocketAddr, q: &str) -> Vec<Value> {
    let enc: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    match get_via(
        prom,
        "prometheus",
        &format!("/api/v1/query?query={enc}"),
        Duration::from_secs(5),
    ) {
        Some((200, body)) => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The first peer `a` probes that does not probe `a` back (one probed direction: the case where
/// the failing export alone shows one source of the far end, and reads as its CNI).
fn one_way_peer(plan: &meshprobe::plan::Plan, a: &str) -> String {
    let ia = plan.index(a).unwrap();
    plan.peers_of(a)
        .into_iter()
        .find(|p| !plan.probes(plan.index(p).unwrap(), ia))
        .unwrap_or_else(|| panic!("{a}: every peer probes it back"))
        .to_string()
}

/// Exactly one finding, of `cause`, on exactly `node`.
fn one_finding(code: i32, d: &Value, cause: &str, node: &str) -> bool {
    let f = d["findings"].as_array().cloned().unwrap_or_default();
    code == 1
        && f.len() == 1
        && f[0]["cause"] == cause
        && f[0]["nodes"] == serde_json::json!([node])
}

/// A running emulator and the Prometheus scraping it (one target per zone, the shipped rules
/// loaded, scraped and evaluated every `every`).
struct Fleet {
    dir: std::path::PathBuf,
    emu: SocketAddr,
    prom: SocketAddr,
    /// When the emulator started: its faults' times count from here.
    t0: Instant,
    _procs: (Killed, Prometheus),
}

impl Fleet {
    fn start(name: &str, args: &[String], every: &str, timeout: &str) -> Fleet {
        let dir = scratch_dir(name);
        let emu = SocketAddr::new(ip(1), free_port(ip(1)));
        let emu_proc = Killed(
            spawn_logged(
                Command::new(EXE)
                    .args(["plan", "--simulate", "--serve", &emu.to_string()])
                    .args(args),
                &dir.join("emulator.log"),
            )
            .expect("start the emulator"),
        );
        let t0 = Instant::now();
        loop {
            match get_via(emu, "emulator", "/", Duration::from_secs(2)) {
                Some((200, body)) => {
                    assert!(body.contains("/metrics/zone-a"), "{body}");
                    break;
                }
                _ => {
                    assert!(
                        t0.elapsed() < Duration::from_secs(20),
                        "emulator not serving: {}",
                        std::fs::read_to_string(dir.join("emulator.log")).unwrap_or_default()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        let prom = SocketAddr::new(ip(1), free_port(ip(1)));
        let targets: String = ["zone-a", "zone-b", "zone-c"]
            .iter()
            .map(|z| {
                format!(
                    "      - targets: [\"{emu}\"]\n        labels: {{__metrics_path__: /metrics/{z}}}\n"
                )
            })
            .collect();
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prometheus/meshprobe-rules.yaml");
        let prom_proc = Prometheus::start(
            &dir,
            prom,
            &format!(
                "global: {{scrape_interval: {every}, scrape_timeout: {timeout}, evaluation_interval: {every}}}\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: meshprobe\n    honor_labels: true\n    static_configs:\n{targets}",
                rules.display()
            ),
            None,
        );
        Fleet {
            dir,
            emu,
            prom,
            t0,
            _procs: (emu_proc, prom_proc),
        }
    }

    /// `secs` after the emulator's start.
    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Poll `query` every 500 ms until `ok` on its result, at the latest by `deadline`.
fn until_query(
    prom: SocketAddr,
    what: &str,
    q: &str,
    since: Instant,
    deadline: Instant,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    loop {
        let r = query(prom, q);
        if ok(&r) {
            eprintln!("  {what}: after {:.1}s", since.elapsed().as_secs_f64());
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not by its deadline; `{q}` answered {r:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether every series of `r` has `label` = `value`.
fn all_have(r: &[Value], label: &str, value: &str) -> bool {
    r.iter().all(|x| x["metric"][label] == value)
}

const NODES: usize = 60;
const FULL_MESH_MAX: usize = 20;
/// The schedule, seconds after the emulator's start: a route fault long enough for its alert
/// (`for: 1m`), then a CNI fault and a node down.
const ROUTE: (u64, u64) = (25, 100);
const CNI: (u64, u64) = (105, 135);
const DOWN: (u64, u64) = (140, 170);
const CNI_NODE: &str = "node-00017";
const DOWN_NODE: &str = "node-00030";

/// `@START-END` of a fault on at those seconds after the emulator's start.
fn at((s, e): (u64, u64)) -> String {
    format!("@{s}s-{e}s")
}

/// The emulator's arguments for a sampled fleet of `nodes` (1 s interval, 8 s window):
/// `extra`, and each of `faults` injected.
fn sampled_fleet(nodes: usize, extra: &[&str], faults: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--nodes",
        &nodes.to_string(),
        "--zones",
        "3",
        "--full-mesh-max",
        &FULL_MESH_MAX.to_string(),
        "--interval",
        "1s",
        "--window",
        "8s",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    for f in faults {
        v.extend(["--inject".to_string(), f.clone()]);
    }
    v
}

#[test]
fn prometheus_scraping_the_emulated_fleet_gives_the_right_diagnosis_and_alerts() {
    if !have_or_skip("prometheus", "prometheus") {
        return;
    }
    // The emulator plans epoch 0 of `plan --simulate`'s cluster (seed 1): node-00001's first
    // planned peer is the far end of the route fault (checked against /peers below).
    let plan = meshprobe::plan::Plan::build(
        &meshprobe::plan::simulate::cluster(NODES, 3, 1),
        &meshprobe::plan::PlanParams {
            full_mesh_max: FULL_MESH_MAX,
            ..Default::default()
        },
        0,
    );
    assert!(plan.sampled);
    let (a, b) = ("node-00001", one_way_peer(&plan, "node-00001"));
    assert!(![CNI_NODE, DOWN_NODE].contains(&b.as_str()), "{b}");
    // Its sources with a planned series: the stable plan's (rotating ones have none).
    let ib = plan.index(&b).unwrap() as u32;
    let probers_of_b = plan.core.iter().filter(|c| c.contains(&ib)).count();
    assert!(probers_of_b >= 3, "{probers_of_b}");
    let args = sampled_fleet(
        NODES,
        &[],
        &[
            format!("route:{a},{b}{}", at(ROUTE)),
            format!("cni:{CNI_NODE}{}", at(CNI)),
            format!("node-down:{DOWN_NODE}{}", at(DOWN)),
        ],
    );
    let fleet = Fleet::start("fleet-emulator", &args, "1s", "900ms");
    let (emu, prom, t0) = (fleet.emu, fleet.prom, fleet.t0);
    let after = |s: u64| fleet.at(s);
    // The plan's peers of a node (what a route fault needs: a probed pair).
    let (code, body) =
        get_via(emu, "emulator", "/peers/node-00001", Duration::from_secs(5)).expect("GET /peers");
    assert_eq!(code, 200, "{body}");
    let peers: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!((3..=33).contains(&peers.len()), "{peers:?}");
    assert!(
        peers.contains(&b),
        "the emulator's plan is not the one this test computed"
    );
    assert_eq!(
        get_via(emu, "emulator", "/peers/node-99", Duration::from_secs(5)).map(|(c, _)| c),
        Some(404)
    );

    // Healthy, every agent in, before the first fault.
    until(
        prom,
        "healthy with 60 agents",
        t0,
        after(ROUTE.0),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|a| a.len() == NODES)
        },
    );

    // The lost route: routing on node-00001, not the far node's CNI.
    until(
        prom,
        &format!("routing on {a} (route {a} -> {b})"),
        after(ROUTE.0),
        after(ROUTE.1),
        |code, d| one_finding(code, d, "routing", a),
    );
    // The far end's share of failing sources is one of its planned probers, not all (once
    // the pair is down: two failures in a row, then a rule evaluation).
    let share = loop {
        let r = query(
            prom,
            &format!(r#"meshprobe:dst_down_sources:ratio{{dst="{b}", layer="icmp_pod"}}"#),
        );
        let v: f64 = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if v > 0.0 {
            break v;
        }
        assert!(
            Instant::now() < after(ROUTE.1),
            "{b}: no share of down sources: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "  {b}'s pod IP down from {share:.3} of its sources ({probers_of_b} in the stable plan)"
    );
    assert!(share <= 2.0 / probers_of_b as f64, "{share}");
    // The pair alert fires (for: 1m) for that pair only, and no other alert does.
    loop {
        let firing = query(
            prom,
            r#"ALERTS{alertstate="firing", alertname=~"Meshprobe.*"}"#,
        );
        if !firing.is_empty() {
            let pair = |x: &Value| {
                (
                    x["metric"]["src_node"].as_str().unwrap_or("").to_string(),
                    x["metric"]["dst"].as_str().unwrap_or("").to_string(),
                )
            };
            for x in &firing {
                assert_eq!(
                    x["metric"]["alertname"], "MeshprobePodToPodUnreachable",
                    "{firing:?}"
                );
                let p = pair(x);
                assert!(
                    p == (a.to_string(), b.clone()) || p == (b.clone(), a.to_string()),
                    "{firing:?}"
                );
            }
            eprintln!(
                "  MeshprobePodToPodUnreachable firing: {:.1}s after the fault's start ({} series)",
                after(ROUTE.0).elapsed().as_secs_f64(),
                firing.len()
            );
            break;
        }
        assert!(
            Instant::now() < after(ROUTE.1),
            "MeshprobePodToPodUnreachable not firing {:.0}s after the route fault's start: {:?}",
            after(ROUTE.0).elapsed().as_secs_f64(),
            query(prom, r#"ALERTS{alertname=~"Meshprobe.*"}"#)
        );
        std::thread::sleep(Duration::from_millis(1000));
    }
    // The recording rules over the planned pairs have data here (the lab's full mesh has none).
    for r in [
        "meshprobe:dst_planned_by_src_zone:count",
        "meshprobe:src_planned:count",
        "meshprobe:zone_planned:count",
    ] {
        assert!(
            !query(prom, &format!("count({r})")).is_empty(),
            "{r}: no data"
        );
    }

    // The CNI fault: exactly that finding, its agent unreachable.
    until(
        prom,
        &format!("cni on {CNI_NODE}"),
        after(CNI.0),
        after(CNI.1),
        |code, d| {
            one_finding(code, d, "cni", CNI_NODE) && d["agents_unreachable"][0]["node"] == CNI_NODE
        },
    );
    // The node down: exactly that finding, its agent unreachable.
    until(
        prom,
        &format!("node_down on {DOWN_NODE}"),
        after(DOWN.0),
        after(DOWN.1),
        |code, d| {
            one_finding(code, d, "node_down", DOWN_NODE)
                && d["agents_unreachable"][0]["node"] == DOWN_NODE
        },
    );
    // Cleared: healthy again.
    until(
        prom,
        "healthy after the faults",
        after(DOWN.1),
        after(DOWN.1 + 40),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|a| a.len() == NODES)
        },
    );
}

/// The CI-sized scale run: 1,000 emulated agents in 3 zones at the agents' own defaults (a
/// sampled plan above `--full-mesh-max` 200; `--pair-metrics auto`), 2 s interval, 10 s window,
/// scraped and the shipped rules evaluated every 5 s (a debug emulator's three zone scrapes took
/// 3.3–3.6 s at once on a loaded 2-core VM: a 2 s scrape timed out). A lost route (one probed
/// direction), a CNI fault and a node down in turn, 40 s each: `diagnose --prometheus` names
/// each, cause and place, and the matching alert's condition holds (pending: its `for: 1m` is
/// not waited for; the 60-node test waits for one firing), no node or zone alert for the route.
/// Ignored in the default run, and run alone by `tests/run.sh` after the other suites (`cargo
/// test --test fleet_emulator -- --ignored`): next to them on the shared 2-core runner a debug
/// 1,000-agent emulator and Prometheus took 12–45 s to the first healthy answer and 3–40 s to
/// the route's (2026-12-06): 25 s fault windows failed, and 40 s ones make a 3½-minute test.
#[test]
#[ignore = "CI-sized scale run, about 3.5 minutes, run alone by tests/run.sh: cargo test --test fleet_emulator -- --ignored"]
fn a_thousand_node_fleet_through_prometheus_gives_the_right_answers() {
    const N: usize = 1000;
    const ROUTE: (u64, u64) = (30, 70);
    const CNI: (u64, u64) = (75, 115);
    const CNI_NODE: &str = "node-00333";
    const DOWN: (u64, u64) = (120, 160);
    const DOWN_NODE: &str = "node-00200";
    if !have_or_skip("prometheus", "prometheus") {
        return;
    }
    let plan = meshprobe::plan::Plan::build(
        &meshprobe::plan::simulate::cluster(N, 3, 1),
        &meshprobe::plan::PlanParams::default(),
        0,
    );
    assert!(plan.sampled);
    let (a, b) = ("node-00001", one_way_peer(&plan, "node-00001"));
    assert!(![CNI_NODE, DOWN_NODE].contains(&b.as_str()), "{b}");
    let args: Vec<String> = [
        "--nodes",
        &N.to_string(),
        "--zones",
        "3",
        "--interval",
        "2s",
        "--window",
        "10s",
        "--inject",
        &format!("route:{a},{b}{}", at(ROUTE)),
        "--inject",
        &format!("cni:{CNI_NODE}{}", at(CNI)),
        "--inject",
        &format!("node-down:{DOWN_NODE}{}", at(DOWN)),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let fleet = Fleet::start("fleet-emulator-1000", &args, "5s", "4500ms");
    let (emu, prom) = (fleet.emu, fleet.prom);
    let (code, body) =
        get_via(emu, "emulator", "/peers/node-00001", Duration::from_secs(5)).expect("GET /peers");
    assert_eq!(code, 200, "{body}");
    assert!(serde_json::from_str::<Vec<String>>(&body)
        .unwrap()
        .contains(&b));
    let node_or_zone = r#"ALERTS{alertname=~"MeshprobeNode.*|MeshprobeZonePartition"}"#;

    until(
        prom,
        "healthy with 1,000 agents",
        fleet.t0,
        fleet.at(ROUTE.0),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|x| x.len() == N)
        },
    );
    assert!(
        query(prom, "ALERTS").is_empty(),
        "{:?}",
        query(prom, "ALERTS")
    );

    until(
        prom,
        &format!("routing on {a} (route {a} -> {b})"),
        fleet.at(ROUTE.0),
        fleet.at(ROUTE.1),
        |code, d| one_finding(code, d, "routing", a),
    );
    until_query(
        prom,
        "MeshprobePodToPodUnreachable pending for the pair",
        &format!(
            r#"ALERTS{{alertname="MeshprobePodToPodUnreachable", src_node="{a}", dst="{b}"}}"#
        ),
        fleet.at(ROUTE.0),
        fleet.at(ROUTE.1),
        |r| !r.is_empty(),
    );
    let others = query(prom, node_or_zone);
    assert!(others.is_empty(), "route: {others:?}");

    until(
        prom,
        &format!("cni on {CNI_NODE}"),
        fleet.at(CNI.0),
        fleet.at(CNI.1),
        |code, d| {
            one_finding(code, d, "cni", CNI_NODE) && d["agents_unreachable"][0]["node"] == CNI_NODE
        },
    );
    let r = until_query(
        prom,
        "MeshprobeNodePodNetworkIsolated pending",
        node_or_zone,
        fleet.at(CNI.0),
        fleet.at(CNI.1),
        |r| !r.is_empty(),
    );
    assert!(
        r.len() == 1
            && all_have(&r, "alertname", "MeshprobeNodePodNetworkIsolated")
            && all_have(&r, "dst", CNI_NODE),
        "cni: {r:?}"
    );

    until(
        prom,
        &format!("node_down on {DOWN_NODE}"),
        fleet.at(DOWN.0),
        fleet.at(DOWN.1),
        |code, d| {
            one_finding(code, d, "node_down", DOWN_NODE)
                && d["agents_unreachable"][0]["node"] == DOWN_NODE
        },
    );
    until_query(
        prom,
        "MeshprobeNodeDown pending",
        &format!(r#"ALERTS{{alertname="MeshprobeNodeDown", dst="{DOWN_NODE}"}}"#),
        fleet.at(DOWN.0),
        fleet.at(DOWN.1),
        |r| r.len() == 1,
    );
    until(
        prom,
        "healthy after the faults",
        fleet.at(DOWN.1),
        fleet.at(DOWN.1 + 40),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|x| x.len() == N)
        },
    );
}

/// A policy on a target, packet loss at a node and an MTU black hole at a node, on a
/// 200-node sampled fleet with 3 targets, scraped and evaluated every 2 s: `diagnose
/// --prometheus` gives exactly the one right finding for each, and its alert's condition holds
/// (pending: their `for` is not waited for).
#[test]
fn the_emulated_fleet_places_policy_loss_and_mtu() {
    const NODES: usize = 200;
    const POLICY: (u64, u64) = (20, 55);
    const POLICY_TARGET: &str = "web-00002";
    const LOSS: (u64, u64) = (60, 100);
    const LOSS_NODE: &str = "node-00020";
    const MTU: (u64, u64) = (105, 140);
    const MTU_NODE: &str = "node-00040";
    if !have_or_skip("prometheus", "prometheus") {
        return;
    }
    let args = sampled_fleet(
        NODES,
        &["--targets", "3"],
        &[
            format!("policy:{POLICY_TARGET}{}", at(POLICY)),
            format!("loss:{LOSS_NODE},30{}", at(LOSS)),
            format!("mtu:{MTU_NODE},1400{}", at(MTU)),
        ],
    );
    let fleet = Fleet::start("fleet-emulator-plm", &args, "2s", "1800ms");
    let (prom, t0) = (fleet.prom, fleet.t0);
    let after = |s: u64| fleet.at(s);
    // web-00002 runs on the node the emulator spreads it to: the second third of the fleet.
    let target_node = format!("node-{:05}", NODES / 3 + 1);
    until(
        prom,
        &format!("healthy with {NODES} agents and 3 targets"),
        t0,
        after(POLICY.0),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|a| a.len() == NODES)
        },
    );
    let alert = |name: &str, since: Instant, deadline: Instant| {
        until_query(
            prom,
            &format!("{name} pending or firing"),
            &format!(r#"ALERTS{{alertname="{name}"}}"#),
            since,
            deadline,
            |r| !r.is_empty(),
        )
    };

    until(
        prom,
        &format!("policy on {POLICY_TARGET}"),
        after(POLICY.0),
        after(POLICY.1),
        |code, d| {
            one_finding(code, d, "policy", &target_node)
                && d["findings"][0]["targets"] == serde_json::json!([POLICY_TARGET])
        },
    );
    let r = alert(
        "MeshprobeTargetUnreachable",
        after(POLICY.0),
        after(POLICY.1),
    );
    assert!(all_have(&r, "dst", POLICY_TARGET), "{r:?}");

    until(
        prom,
        &format!("packet_loss at {LOSS_NODE}"),
        after(LOSS.0),
        after(LOSS.1),
        |code, d| one_finding(code, d, "packet_loss", LOSS_NODE),
    );
    let r = alert("MeshprobePacketLoss", after(LOSS.0), after(LOSS.1));
    assert!(
        r.iter()
            .all(|x| x["metric"]["src_node"] == LOSS_NODE || x["metric"]["dst"] == LOSS_NODE),
        "{r:?}"
    );

    until(
        prom,
        &format!("mtu at {MTU_NODE}"),
        after(MTU.0),
        after(MTU.1),
        |code, d| one_finding(code, d, "mtu", MTU_NODE),
    );
    let r = alert("MeshprobeMtuBlackHole", after(MTU.0), after(MTU.1));
    assert!(
        r.iter()
            .all(|x| x["metric"]["src_node"] == MTU_NODE || x["metric"]["dst"] == MTU_NODE),
        "{r:?}"
    );
    // No node, zone or pair alert through any of it.
    let wrong = query(
        prom,
        r#"ALERTS{alertname=~"MeshprobeNode.*|MeshprobeZonePartition|MeshprobePodToPodUnreachable"}"#,
    );
    assert!(wrong.is_empty(), "{wrong:?}");
    until(
        prom,
        "healthy after the faults",
        after(MTU.1),
        after(MTU.1 + 40),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|a| a.len() == NODES)
        },
    );
}
