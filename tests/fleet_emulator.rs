//! The fleet emulator (`meshprobe plan --simulate --serve`) scraped by Debian's real
//! Prometheus, one target per zone (`honor_labels`), read back by `meshprobe diagnose
//! --prometheus`: a 60-node, 3-zone cluster on a sampled plan (`--full-mesh-max 20`, so the
//! agents' default `--pair-metrics auto` exports failing pairs only) is healthy with every agent
//! answering; a scheduled CNI fault on one node is found, cause and place, with that node's
//! agent unreachable; when the fault ends the answer is healthy again.
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

/// Poll `diagnose --prometheus` every 500 ms until `ok`, at most `limit`; the time it took.
fn until(
    prom: SocketAddr,
    what: &str,
    limit: Duration,
    ok: impl Fn(i32, &Value) -> bool,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let (code, d, err) = diagnose(prom);
        if ok(code, &d) {
            eprintln!("  {what}: after {:.1}s", t0.elapsed().as_secs_f64());
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "{what}: not within {limit:?}; last: exit {code}, findings {}, answered {}, unreachable {}\n{err}",
            d["findings"],
            d["agents_answered"].as_array().map_or(0, Vec::len),
            d["agents_unreachable"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_scraping_the_emulated_fleet_gives_the_right_diagnosis() {
    if !have_or_skip("prometheus", "prometheus") {
        return;
    }
    let dir = scratch_dir("fleet-emulator");
    let emu = SocketAddr::new(ip(1), free_port(ip(1)));
    // The fault from 25 s to 55 s after start: time for Prometheus to start and scrape a
    // healthy fleet first.
    let _emu = Killed(
        spawn_logged(
            Command::new(EXE).args([
                "plan",
                "--simulate",
                "--serve",
                &emu.to_string(),
                "--nodes",
                "60",
                "--zones",
                "3",
                "--full-mesh-max",
                "20",
                "--interval",
                "1s",
                "--window",
                "8s",
                "--inject",
                "cni:node-00017@25s-55s",
            ]),
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
    // The plan's peers of a node (what a route fault needs: a probed pair).
    let (code, body) =
        get_via(emu, "emulator", "/peers/node-00001", Duration::from_secs(5)).expect("GET /peers");
    assert_eq!(code, 200, "{body}");
    let peers: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!((3..=33).contains(&peers.len()), "{peers:?}");
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
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n  - job_name: meshprobe\n    honor_labels: true\n    static_configs:\n{targets}"
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

    // Healthy, every agent in, before the fault.
    until(
        prom,
        "healthy with 60 agents",
        Duration::from_secs(22),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|a| a.len() == 60)
        },
    );
    // The CNI fault on node-00017: exactly that finding, its agent unreachable.
    until(
        prom,
        "cni on node-00017",
        Duration::from_secs(45),
        |code, d| {
            let f = d["findings"].as_array().cloned().unwrap_or_default();
            code == 1
                && f.len() == 1
                && f[0]["cause"] == "cni"
                && f[0]["nodes"] == serde_json::json!(["node-00017"])
                && d["agents_unreachable"][0]["node"] == "node-00017"
        },
    );
    // Cleared at 55 s: healthy again.
    until(
        prom,
        "healthy after the fault",
        Duration::from_secs(45),
        |code, d| {
            code == 0
                && d["agents_answered"]
                    .as_array()
                    .is_some_and(|a| a.len() == 60)
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
}
