//! A real `meshprobe agent` process on a loopback address, for the fault tests: spawned with
//! the given flags, its log (stderr, text) in a file, blocking HTTP helpers and a metric
//! reader; killed on drop. Returns `None` (after printing why) where the agent cannot open its
//! ICMP socket (no CAP_NET_RAW and no ping sysctl), so callers skip.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const EXE: &str = env!("CARGO_BIN_EXE_meshprobe");

/// A port free on `ip` right now.
pub fn free_port(ip: IpAddr) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// Poll `check` every 100 ms until it holds; panic naming `what` after `within`.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "not true within {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body), or None on any failure or
/// after `timeout`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    http_in(None, addr, method, path, body, timeout)
}

/// [`http`] from inside network namespace `ns` (when given).
pub fn http_in(
    ns: Option<&str>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut s = match ns {
        Some(ns) => meshprobe::lab::netns::connect_in_blocking(ns, addr, timeout).ok()?,
        None => TcpStream::connect_timeout(&addr, timeout).ok()?,
    };
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // Chunked bodies (axum streams): good enough to undo for JSON and text checks.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sum of the samples of metric `name` (exact name) whose labels contain `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(labels) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// VmRSS of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

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
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, EXE]);
                c
            }
            None => Command::new(EXE),
        };
        let child = cmd
            .args(["agent", "--node-name", node, "--listen", &addr.to_string()])
            .args(args)
            .envs(env.iter().copied())
            .env("MESHPROBE_LOG", "meshprobe=info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn meshprobe agent");
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
                if text.contains("ICMP") && text.contains("socket") {
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
