//! A lab brought up through the binary for the end-to-end tests (lab_e2e, probe_e2e,
//! prometheus_e2e, heatmap_e2e): `lab --prefix P up --port-base 0`, the live-view ports from
//! `lab status --json`, `lab down` on drop whatever happened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::get_via;
use super::sys::{spawn_logged, EXE};

pub struct Lab {
    pub prefix: String,
    pub nodes: u16,
    pub zones: u16,
    child: Option<Child>,
    pub log: PathBuf,
    /// node name → its agent's live view on 127.0.0.1.
    pub proxies: BTreeMap<String, SocketAddr>,
}

impl Lab {
    /// 4 nodes in 2 zones (node-1, node-3: zone-a; node-2, node-4: zone-b), 1 s interval, 8 s window.
    pub fn up(prefix: &str) -> Lab {
        Lab::up_with(prefix, 4, 2, &["--mtu-interval", "2s"])
    }

    /// `nodes` nodes in `zones` zones, 1 s interval, 500 ms timeout, 8 s window, plus `extra`
    /// flags of `lab up`.
    pub fn up_with(prefix: &str, nodes: u16, zones: u16, extra: &[&str]) -> Lab {
        let log = std::env::temp_dir().join(format!("{prefix}-lab-up.log"));
        let started = Instant::now();
        let mut cmd = Command::new(EXE);
        cmd.args(["lab", "--prefix", prefix, "up", "--port-base", "0"])
            .args(["--nodes", &nodes.to_string(), "--zones", &zones.to_string()])
            .args(["--interval", "1s", "--timeout", "500ms", "--window", "8s"])
            .args(extra);
        let child = spawn_logged(&mut cmd, &log).expect("spawn meshprobe lab up");
        let mut lab = Lab {
            prefix: prefix.to_string(),
            nodes,
            zones,
            child: Some(child),
            log,
            proxies: BTreeMap::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = std::fs::read_to_string(&lab.log).unwrap_or_default();
            if text.contains("Ctrl-C here tears the lab down") {
                break;
            }
            if let Some(status) = lab.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("lab up exited ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "lab up did not finish in 90s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let st: Value =
            serde_json::from_str(&lab.ok(&["status", "--json"])).expect("status --json");
        lab.proxies = st["state"]["proxies"]
            .as_array()
            .expect("state.proxies")
            .iter()
            .map(|p| {
                (
                    p["node"].as_str().unwrap().to_string(),
                    p["listen"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(lab.proxies.len(), usize::from(nodes), "{st}");
        eprintln!(
            "lab {prefix} up ({nodes} nodes, {zones} zones) in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        lab
    }

    /// The `lab up` process, for a test that kills it itself.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// `lab status --json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status --json")
    }

    /// The namespace of `node`'s `pod` ("" for the node itself).
    pub fn ns(&self, node: u16, pod: &str) -> String {
        if pod.is_empty() {
            format!("{}-n{node}", self.prefix)
        } else {
            format!("{}-n{node}-{pod}", self.prefix)
        }
    }

    /// GET `path` from `node`'s agent as JSON (Null when it does not answer 200 with JSON).
    pub fn get_json(&self, node: &str, path: &str, timeout: Duration) -> Value {
        self.get(node, path, timeout)
            .filter(|(code, _)| *code == 200)
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or(Value::Null)
    }

    /// Every agent's `/api/v1/results`, by node number.
    pub fn results(&self) -> BTreeMap<u16, Value> {
        (1..=self.nodes)
            .map(|i| {
                let v = self.get_json(
                    &format!("node-{i}"),
                    "/api/v1/results",
                    Duration::from_secs(3),
                );
                (i, v)
            })
            .collect()
    }

    /// node-1's `GET /api/v1/diagnosis` (its mesh view).
    pub fn diagnosis(&self) -> Value {
        self.get_json("node-1", "/api/v1/diagnosis", Duration::from_secs(5))
    }

    /// node-1's mesh view with what it rests on (`?include=inputs`): a wrong one can be replayed
    /// with `meshprobe diagnose --results FILE`.
    pub fn diagnosis_with_inputs(&self) -> Value {
        self.get_json(
            "node-1",
            "/api/v1/diagnosis?include=inputs",
            Duration::from_secs(5),
        )
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(EXE)
            .args(["lab", "--prefix", &self.prefix])
            .args(args)
            .output()
            .expect("run meshprobe lab")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "meshprobe lab {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// GET `path` from `node`'s agent through its live view: (status, body).
    pub fn get(&self, node: &str, path: &str, timeout: Duration) -> Option<(u16, String)> {
        get_via(self.proxies[node], "lab", path, timeout)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.cli(&["down"]);
        if !out.status.success() {
            eprintln!("lab down: {}", String::from_utf8_lossy(&out.stderr));
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
