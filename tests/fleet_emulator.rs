//! The fleet emulator (`meshprobe plan --simulate --serve`) scraped by Debian's real
//! Prometheus, one target per zone (`honor_labels`), with the shipped recording and alerting
//! rules loaded, read back by `meshprobe diagnose --prometheus`: a 60-node, 3-zone cluster on a
//! sampled plan (`--full-mesh-max 20`, so the agents' default `--pair-metrics auto` exports
//! failing destinations only, plus `meshprobe_pair_planned`). In turn: healthy with every agent
//! answering; a lost route from node-00001 to its first planned peer found as `routing` on
//! node-00001, and `MeshprobePodToPodUnreachable` firing for that pair only (before
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

/// Exactly one finding, of `cause`, on exactly `node`.
fn one_finding(code: i32, d: &Value, cause: &str, node: &str) -> bool {
    let f = d["findings"].as_array().cloned().unwrap_or_default();
    code == 1
        && f.len() == 1
        && f[0]["cause"] == cause
        && f[0]["nodes"] == serde_json::json!([node])
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
    let (a, b) = ("node-00001", plan.peers_of("node-00001")[0].to_string());
    assert!(![CNI_NODE, DOWN_NODE].contains(&b.as_str()), "{b}");
    let probers_of_b = plan.in_degrees()[plan.index(&b).unwrap()];
    assert!(probers_of_b >= 3, "{probers_of_b}");
    let dir = scratch_dir("fleet-emulator");
    let emu = SocketAddr::new(ip(1), free_port(ip(1)));
    let at = |(s, e): (u64, u64)| format!("@{s}s-{e}s");
    let _emu = Killed(
        spawn_logged(
            Command::new(EXE).args([
                "plan",
                "--simulate",
                "--serve",
                &emu.to_string(),
                "--nodes",
                &NODES.to_string(),
                "--zones",
                "3",
                "--full-mesh-max",
                &FULL_MESH_MAX.to_string(),
                "--interval",
                "1s",
                "--window",
                "8s",
                "--inject",
                &format!("route:{a},{b}{}", at(ROUTE)),
                "--inject",
                &format!("cni:{CNI_NODE}{}", at(CNI)),
                "--inject",
                &format!("node-down:{DOWN_NODE}{}", at(DOWN)),
            ]),
            &dir.join("emulator.log"),
        )
        .expect("start the emulator"),
    );
    let t0 = Instant::now();
    let after = |s: u64| t0 + Duration::from_secs(s);
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
    // The plan's peers of a node (what a route fault needs: a probed pair).
    let (code, body) =
        get_via(emu, "emulator", "/peers/node-00001", Duration::from_secs(5)).expect("GET /peers");
    assert_eq!(code, 200, "{body}");
    let peers: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!((3..=33).contains(&peers.len()), "{peers:?}");
    assert_eq!(
        peers[0], b,
        "the emulator's plan is not the one this test computed"
    );
    assert_eq!(
        get_via(emu, "emulator", "/peers/node-99", Duration::from_secs(5)).map(|(c, _)| c),
        Some(404)
    );
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
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}}\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: meshprobe\n    honor_labels: true\n    static_configs:\n{targets}",
            rules.display()
        ),
    )
    .unwrap();
    let _prom = Killed(
        spawn_logged(
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={prom}"))
                .arg("--log.level=warn"),
            &dir.join("prometheus.log"),
        )
        .expect("start prometheus"),
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
    eprintln!("  {b}'s pod IP down from {share:.3} of its sources ({probers_of_b} planned)");
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
        "meshprobe:pair_planned:bool",
        "meshprobe:pair_planned:intra_zone",
        "meshprobe:pair_planned:cross_zone",
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
    let _ = std::fs::remove_dir_all(&dir);
}
