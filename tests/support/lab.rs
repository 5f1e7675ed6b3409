//! A lab brought up through the binary for the viz e2e tests (shared by prometheus_e2e.rs and
//! heatmap_e2e.rs): `lab --prefix P up --port-base 0`, the live-view ports from
//! `lab status --json`, `lab down` on drop whatever happened.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const EXE: &str = env!("CARGO_BIN_EXE_meshprobe");

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub struct Lab {
    pub prefix: String,
    child: Option<Child>,
    pub log: PathBuf,
    /// node name → its agent's live view on 127.0.0.1.
    pub proxies: BTreeMap<String, SocketAddr>,
}

impl Lab {
    /// 4 nodes in 2 zones (node-1, node-3: zone-a; node-2, node-4: zone-b), 1 s interval, 8 s window.
    pub fn up(prefix: &str) -> Lab {
        let log = std::env::temp_dir().join(format!("{prefix}-lab-up.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(EXE)
            .args(["lab", "--prefix", prefix, "up", "--port-base", "0"])
            .args(["--nodes", "4", "--zones", "2"])
            .args(["--interval", "1s", "--timeout", "500ms", "--window", "8s"])
            .args(["--mtu-interval", "2s"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn meshprobe lab up");
        let mut lab = Lab {
            prefix: prefix.to_string(),
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
        assert_eq!(lab.proxies.len(), 4, "{st}");
        lab
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
        let s = TcpStream::connect_timeout(&self.proxies[node], Duration::from_secs(2)).ok()?;
        meshprobe::lab::netns::http_get_blocking(s, "lab", path, timeout).ok()
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
