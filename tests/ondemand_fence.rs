//! The on-demand fence and budgets on a real `meshprobe agent` process with the real probers,
//! inside a private network namespace that has loopback only (root; skipped otherwise): every
//! spelling of a refused address is refused with a 4xx before any packet (a listener on
//! 127.0.0.1 sees nothing, `meshprobe_ondemand_probes_total` and the namespace's OutEchos do
//! not move), and the echoes an accepted request sends stay within the documented budget.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::agent::Agent;
use support::net::metric;
use support::sys::{is_root, peers_file, sh, Netns};

/// A namespace with loopback up and nothing else, deleted on drop.
fn loopback_ns(tag: &str) -> (String, Netns) {
    let ns = format!("mpfence-{}-{tag}", std::process::id());
    let guard = Netns(vec![ns.clone()]);
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
    (ns, guard)
}

/// A TCP socket made inside `ns` (a thread joins it; the socket keeps it).
fn socket_in(ns: &str, v6: bool) -> socket2::Socket {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a valid namespace fd; only this short-lived thread moves.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let d = if v6 {
                socket2::Domain::IPV6
            } else {
                socket2::Domain::IPV4
            };
            socket2::Socket::new(d, socket2::Type::STREAM, None).unwrap()
        })
        .join()
        .unwrap()
    })
}

/// A listener on `addr` inside `ns` counting the connections it accepts.
fn counting_listener(ns: &str, addr: SocketAddr) -> Arc<AtomicUsize> {
    let s = socket_in(ns, addr.is_ipv6());
    if addr.is_ipv6() {
        s.set_only_v6(true).unwrap();
    }
    s.set_reuse_address(true).unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(64).unwrap();
    let l: TcpListener = s.into();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    n
}

/// POST `body` to `/api/v1/probe` at `to` inside `ns`, from source address `from`, with
/// `headers`: (status, body). 20 s at most.
fn post_from(ns: &str, from: IpAddr, to: SocketAddr, body: &str, headers: &str) -> (u16, String) {
    let s = socket_in(ns, false);
    s.bind(&SocketAddr::new(from, 0).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /api/v1/probe HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        String::from_utf8_lossy(&support::net::dechunk(body.as_bytes())).into_owned()
    } else {
        body.to_string()
    };
    (status, body)
}

/// Echo requests sent from inside `ns` so far (ICMP and ICMPv6, from /proc/net/snmp{,6}).
fn out_echos(ns: &str) -> u64 {
    let read = |file: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", file])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let snmp = read("/proc/net/snmp");
    let icmp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Icmp:")).collect();
    let v4 = icmp
        .first()
        .zip(icmp.get(1))
        .and_then(|(h, v)| {
            let i = h.split_whitespace().position(|x| x == "OutEchos")?;
            v.split_whitespace().nth(i)?.parse::<u64>().ok()
        })
        .expect("OutEchos in /proc/net/snmp");
    let v6 = read("/proc/net/snmp6")
        .lines()
        .find_map(|l| l.strip_prefix("Icmp6OutEchos"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    v4 + v6
}

/// `meshprobe_ondemand_probes_total`, all checks.
fn probes_started(a: &Agent) -> f64 {
    metric(&a.metrics(), "meshprobe_ondemand_probes_total", "").unwrap_or(0.0)
}

/// An agent alone in a loopback-only namespace on 127.0.0.1, with `args`.
fn lone_agent(ns: &str, tag: &str, args: &[&str]) -> Option<(Agent, std::path::PathBuf)> {
    let (dir, peers) = peers_file(
        &format!("fence-{tag}"),
        "peers:\n  - {node: a, node_ip: 127.0.0.1, pod_ip: 127.0.0.1}\n",
    );
    let p = peers.display().to_string();
    let mut all = vec!["--peers-file", p.as_str(), "--timeout", "500ms"];
    all.extend_from_slice(args);
    let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    Agent::spawn_in(Some(ns), "a", addr, &all, &[]).map(|a| (a, dir))
}

/// Issue 21, item 1: with `--allow-cidr ::/0,0.0.0.0/0` (wide open), every spelling of
/// loopback, "this network", link-local and provider endpoints is refused before anything is
/// sent. Each request comes from its own client address so no rate limit answers instead.
#[test]
fn every_bypass_spelling_is_refused_before_any_packet() {
    if !is_root() {
        eprintln!("SKIP: the fence test needs root (a network namespace)");
        return;
    }
    let (ns, _guard) = loopback_ns("bypass");
    let port = 18080;
    let seen = counting_listener(&ns, SocketAddr::from(([127, 0, 0, 1], port)));
    let seen6 = counting_listener(&ns, SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
    let Some((a, dir)) = lone_agent(&ns, "bypass", &["--allow-cidr", "::/0,0.0.0.0/0"]) else {
        return;
    };
    let echos0 = out_echos(&ns);
    let targets = [
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::ffff:0.0.0.0]:{port}"),
        format!("[::ffff:7f00:1]:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        format!("0.0.0.0:{port}"),
        format!("0.1.2.3:{port}"),
        format!("[::127.0.0.1]:{port}"),
        format!("[64:ff9b::7f00:1]:{port}"),
        format!("[64:ff9b:1::7f00:1]:{port}"),
        format!("[2002:7f00:1::1]:{port}"),
        "[::ffff:169.254.169.254]:80".to_string(),
        "[64:ff9b::a9fe:a9fe]:80".to_string(),
        "169.254.169.254:80".to_string(),
        "169.254.170.2:80".to_string(),
        "169.254.170.23:80".to_string(),
        "[fd00:ec2::23]:80".to_string(),
        "[fd00:ec2::254]:80".to_string(),
        "[fe80::1]:80".to_string(),
    ];
    for (i, t) in targets.iter().enumerate() {
        let from = IpAddr::from([127, 0, 3, 10 + i as u8]);
        let body = format!(
            r#"{{"target":"{t}","checks":[{{"kind":"http","path":"/"}},{{"kind":"tcp"}},{{"kind":"icmp","count":1}}]}}"#
        );
        let (status, answer) = post_from(&ns, from, a.addr, &body, "");
        assert!(
            (400..500).contains(&status),
            "{t}: {status} {answer} (the fence let it through)"
        );
        assert!(
            answer.contains("target_not_allowed"),
            "{t}: {status} {answer}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(seen.load(Ordering::SeqCst), 0, "127.0.0.1 got a connection");
    assert_eq!(seen6.load(Ordering::SeqCst), 0, "::1 got a connection");
    assert_eq!(probes_started(&a), 0.0, "on-demand probes were started");
    assert_eq!(out_echos(&ns), echos0, "echo requests were sent");
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}

/// A peer "agent" on `addr` inside `ns` that answers a POST with 200 and a chunked body
/// dripped a byte per chunk, never a newline, until the connection closes (20 s at most);
/// anything else is closed at once. Counts the chunks written.
fn dripping_peer(ns: &str, addr: SocketAddr) -> Arc<AtomicUsize> {
    let s = socket_in(ns, false);
    s.set_reuse_address(true).unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(64).unwrap();
    let l: TcpListener = s.into();
    let chunks = Arc::new(AtomicUsize::new(0));
    let count = chunks.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = [0u8; 4096];
                let n = c.read(&mut head).unwrap_or(0);
                if !head[..n].starts_with(b"POST") {
                    return;
                }
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let t0 = std::time::Instant::now();
                while t0.elapsed() < Duration::from_secs(20) {
                    if c.write_all(b"1\r\nx\r\n").is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    chunks
}

/// Issue 21, item 6: a peer agent dripping its answer a byte per chunk costs the asking agent
/// less than 0.1 s of CPU per request (the reader that rescanned the line per frame: 2.7 s each).
#[test]
fn a_dripping_peer_costs_little_cpu() {
    if !is_root() {
        eprintln!("SKIP: the drip test needs root (a network namespace)");
        return;
    }
    let (ns, _guard) = loopback_ns("drip");
    let drip_port = 19464;
    let chunks = dripping_peer(&ns, SocketAddr::from(([127, 0, 0, 2], drip_port)));
    let (dir, peers) = peers_file(
        "fence-drip",
        &format!(
            "peers:\n  - {{node: a, node_ip: 127.0.0.1, pod_ip: 127.0.0.1}}\n  - {{node: b, node_ip: 127.0.0.2, pod_ip: 127.0.0.2, port: {drip_port}}}\n"
        ),
    );
    let p = peers.display().to_string();
    let args = [
        "--peers-file",
        p.as_str(),
        "--timeout",
        "500ms",
        "--allow-cidr",
        "127.0.0.0/24",
    ];
    let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let Some(a) = Agent::spawn_in(Some(&ns), "a", addr, &args, &[]) else {
        return;
    };
    let body = r#"{"target":"127.0.0.50","checks":[{"kind":"icmp","count":1}],"from":["b"]}"#;
    let requests = 3;
    let cpu0 = a.cpu();
    let t0 = std::time::Instant::now();
    let sent0 = chunks.load(Ordering::Relaxed);
    for i in 0..requests {
        let from = IpAddr::from([127, 0, 4, 10 + i]);
        let (status, answer) = post_from(&ns, from, a.addr, body, "");
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("\"answered\":false"), "{answer}");
    }
    let cpu = a.cpu() - cpu0;
    let dripped = chunks.load(Ordering::Relaxed) - sent0;
    eprintln!(
        "drip: {requests} requests in {:.1?}, {dripped} one-byte chunks written, agent CPU {cpu:?} ({:?} per request)",
        t0.elapsed(),
        cpu / u32::from(requests)
    );
    assert!(
        dripped > 0,
        "the peer dripped nothing: the test tests nothing"
    );
    assert!(
        cpu < Duration::from_millis(100) * u32::from(requests),
        "a dripping peer cost {cpu:?} of CPU for {requests} requests"
    );
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 21, item 2: the 8 × `icmp(count 20, size 1472)` request is refused, and what an
/// accepted request makes the agent send stays within the documented budget, counted by the
/// namespace's OutEchos: at most 20 echo requests (ICMP check ≤ 14, context 2 × 3), plus one
/// path-MTU search of at most 12 rounds × 21 probes when it asks for one.
#[test]
fn an_accepted_request_stays_within_the_echo_budget() {
    if !is_root() {
        eprintln!("SKIP: the echo budget test needs root (a network namespace)");
        return;
    }
    let (ns, _guard) = loopback_ns("budget");
    let port = 18081;
    let seen = counting_listener(&ns, SocketAddr::from(([127, 0, 0, 50], port)));
    let Some((a, dir)) = lone_agent(&ns, "budget", &["--allow-cidr", "127.0.0.0/24"]) else {
        return;
    };
    let from = IpAddr::from([127, 0, 5, 10]);
    let eight = format!(
        r#"{{"target":"127.0.0.50","checks":[{}]}}"#,
        [r#"{"kind":"icmp","count":20,"size":1472}"#; 8].join(",")
    );
    let e0 = out_echos(&ns);
    let (status, answer) = post_from(&ns, from, a.addr, &eight, "");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(out_echos(&ns), e0, "the refused request sent echoes");
    // The most echoes one request can ask for, with a TCP and an HTTP check.
    let most = format!(
        r#"{{"target":"127.0.0.50:{port}","checks":[{{"kind":"icmp","count":14,"size":1472}},{{"kind":"tcp"}},{{"kind":"http"}}]}}"#
    );
    let e0 = out_echos(&ns);
    let (status, answer) = post_from(&ns, from, a.addr, &most, "");
    assert_eq!(status, 200, "{answer}");
    let sent = out_echos(&ns) - e0;
    eprintln!("echo budget: one accepted request sent {sent} echo requests");
    assert!(
        (14..=20).contains(&sent),
        "{sent} echo requests for one request (budget 20)"
    );
    assert!(
        seen.load(Ordering::SeqCst) >= 2,
        "the TCP and HTTP checks ran"
    );
    // With a path-MTU search.
    let with_mtu =
        r#"{"target":"127.0.0.50","checks":[{"kind":"icmp","count":14},{"kind":"mtu"}]}"#;
    let e0 = out_echos(&ns);
    let (status, answer) = post_from(&ns, from, a.addr, with_mtu, "");
    assert_eq!(status, 200, "{answer}");
    let sent = out_echos(&ns) - e0;
    eprintln!("echo budget: one accepted request with an MTU search sent {sent} echo requests");
    assert!(
        (14..=20 + 12 * 21).contains(&sent),
        "{sent} echo requests for one request with an MTU search (budget 20 + 252)"
    );
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}
