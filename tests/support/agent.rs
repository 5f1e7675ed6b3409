//! A real `meshprobe agent` process on a loopback address, for the fault tests: spawned with
//! the given flags, its log (stderr, text) in a file, blocking HTTP helpers (over
//! [`super::net::http_in`]) and a metric reader; killed on drop. Returns `None` (after printing
//! why) where the agent cannot open its ICMP socket without root (no CAP_NET_RAW and no ping
//! sysctl), so callers skip; as root an agent that exits fails the test: a broken prober must
//! not read as a skip.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::net::{http_in, metric};
use super::sys::is_root;
use super::sys::{spawn_logged, EXE};

pub struct Agent {
    pub addr: SocketAddr,
    /// The network namespace it runs in (None: this one).
    pub ns: Option<String>,
    pub log: PathBuf,
    child: Child,
}

impl Agent {
    /// `meshprobe agent --node-name NODE --listen ADDR ARGS…`, waited for until `/readyz`
    /// answers 200 (20 s at most).
    pub fn spawn(node: &str, addr: SocketAddr, args: &[&str]) -> Option<Agent> {
        Self::spawn_with(node, addr, args, &[])
    }

    /// The same, with extra environment variables.
    pub fn spawn_with(
        node: &str,
        addr: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Agent> {
        Self::spawn_in(None, node, addr, args, env)
    }

    /// The same, inside network namespace `ns` (`ip netns exec`, root) when given.
    pub fn spawn_in(
        ns: Option<&str>,
        node: &str,
        addr: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Agent> {
        let log = std::env::temp_dir().join(format!(
            "meshprobe-agent-{}-{node}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, EXE]);
                c
            }
            None => Command::new(EXE),
        };
        cmd.args(["agent", "--node-name", node, "--listen", &addr.to_string()])
            .args(args)
            .envs(env.iter().copied())
            .env("MESHPROBE_LOG", "meshprobe=info");
        let child = spawn_logged(&mut cmd, &log).expect("spawn meshprobe agent");
        let mut a = Agent {
            addr,
            ns: ns.map(str::to_string),
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = a.child.try_wait().unwrap() {
                let text = a.log_text();
                if !is_root() && text.contains("ICMP") && text.contains("socket") {
                    eprintln!("SKIP: the agent cannot open ICMP sockets here ({st}): {text}");
                    return None;
                }
                panic!("agent {node} exited ({st}):\n{text}");
            }
            if matches!(a.get("/readyz"), Some((200, _))) {
                return Some(a);
            }
            assert!(
                Instant::now() < deadline,
                "agent {node} not ready in 20 s:\n{}",
                a.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's PID (`ip netns exec` execs in place: the same process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the agent used so far.
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / hz)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_in(
            self.ns.as_deref(),
            self.addr,
            "GET",
            path,
            "",
            Duration::from_secs(5),
        )
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self
            .get(path)
            .unwrap_or_else(|| panic!("GET {path}: no answer"));
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// See [`metric`]; 0 when absent or unanswered.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        metric(&self.metrics(), name, labels).unwrap_or(0.0)
    }

    /// Peer names in `/api/v1/results`, sorted.
    pub fn peers(&self) -> Vec<String> {
        let r = self.json("/api/v1/results");
        let mut v: Vec<String> = r["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["node"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// Probes completed, all layers and results.
    pub fn probes(&self) -> f64 {
        self.metric("meshprobe_probes_total", "")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
