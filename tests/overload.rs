//! A real agent on 127.0.0.0/8 under a burst: 2,000 concurrent connections to `/metrics` and
//! `POST /api/v1/probe`, slowloris clients, silent clients, an oversized body and an oversized
//! head. The agent runs on its own runtime (as in its own process); the clients on the test's.
//! Asserts: no client waits past a bound (the excess is answered 429/503 or closed), probe
//! rounds keep completing with bounded schedule lateness, RSS and open fds come back near the
//! baseline, and the agent answers normally afterwards. Prints the measured figures.
//! ICMP needs CAP_NET_RAW (root) or the ping sysctl: without either the test says why and skips.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use meshprobe::config::AgentConfig;
use support::inproc;
use support::net::{free_port, get_within, ip};
use support::sys::{peers_file, self_rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const INTERVAL: Duration = Duration::from_millis(250);
const BURST: usize = 2000;
/// No client of the burst may take longer than this, connect to close.
const CLIENT_BOUND: Duration = Duration::from_secs(20);
/// The server's header read timeout (5 s) plus slack: slowloris must be cut by then.
const SLOWLORIS_BOUND: Duration = Duration::from_secs(8);
/// The tests measure this process's fds and RSS: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A connection from `from` (a loopback address of our choosing, so the per-client rate limit
/// of the on-demand probe sees distinct clients where the test wants it).
async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    sock.connect(to).await
}

/// What one client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A status line with this code.
    Status(u16),
    /// The server closed (or reset) without an answer.
    Closed,
    /// The connection could not be made within the bound (listen backlog full).
    NoConnect,
    /// Nothing within the bound: the failure this test exists to catch.
    Hung,
}

/// Send `request`, read until the server closes; the status code, or how it ended.
async fn exchange(from: IpAddr, to: SocketAddr, request: Vec<u8>, bound: Duration) -> Outcome {
    let fut = async {
        let Ok(mut s) = connect(from, to).await else {
            return Outcome::NoConnect;
        };
        // The server may answer (and close) before the whole request is written.
        let _ = s.write_all(&request).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Keep the head only: enough for the status line.
                    if buf.len() < 64 {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        status_of(&buf).map_or(Outcome::Closed, Outcome::Status)
    };
    tokio::time::timeout(bound, fut)
        .await
        .unwrap_or(Outcome::Hung)
}

fn status_of(buf: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(buf);
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    rest.get(..3)?.parse().ok()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

fn probe_post(target: &str) -> Vec<u8> {
    let body = format!("{{\"target\":\"{target}\"}}");
    format!(
        "POST /api/v1/probe HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A metrics snapshot: the schedule-lateness histogram (cumulative buckets by `le`), its
/// count, and the rounds completed.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
    rounds: u64,
}

fn parse_metrics(text: &str) -> Snapshot {
    let mut s = Snapshot::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if let Some(le) = name
            .strip_prefix("meshprobe_schedule_lateness_seconds_bucket{le=\"")
            .and_then(|r| r.strip_suffix("\"}"))
        {
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            s.buckets.push((le, value.parse().unwrap()));
        } else if name == "meshprobe_schedule_lateness_seconds_count" {
            s.count = value.parse().unwrap();
        } else if name == "meshprobe_schedule_lateness_seconds_sum" {
            s.sum = value.parse().unwrap();
        } else if name == "meshprobe_rounds_total" {
            s.rounds = value.parse().unwrap();
        }
    }
    s
}

/// The smallest bucket bound holding at least `q` of the probes started between two snapshots.
fn quantile_bound(before: &Snapshot, after: &Snapshot, q: f64) -> f64 {
    let total = after.count - before.count;
    for ((le, a), (_, b)) in after.buckets.iter().zip(&before.buckets) {
        if (a - b) as f64 >= q * total as f64 {
            return *le;
        }
    }
    f64::INFINITY
}

async fn metrics(addr: SocketAddr) -> Snapshot {
    get_within(addr, "/metrics", Duration::from_secs(5))
        .await
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| parse_metrics(&body))
        .expect("/metrics answers 200")
}

/// 2,000 clients at once, half `GET /metrics`, half `POST /api/v1/probe` of a peer's pod IP
/// (answered 200 and run, or fenced: 429 over the per-client rate, 503 over the in-flight
/// bound), from 20 client addresses.
/// Returns the outcomes, the slowest client's time and the whole burst's.
async fn burst(addr: SocketAddr) -> (BTreeMap<Outcome, usize>, Duration, Duration) {
    let burst_start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let from = ip(2 + (i % 20) as u8);
        let req = if i % 2 == 0 {
            get("/metrics")
        } else {
            probe_post("127.0.0.62")
        };
        set.spawn(async move {
            let t = Instant::now();
            (exchange(from, addr, req, CLIENT_BOUND).await, t.elapsed())
        });
    }
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    while let Some(r) = set.join_next().await {
        let (o, took) = r.unwrap();
        *outcomes.entry(o).or_default() += 1;
        slowest = slowest.max(took);
    }
    (outcomes, slowest, burst_start.elapsed())
}

fn config(listen: SocketAddr, peers: &Path) -> AgentConfig {
    AgentConfig {
        zone: Some("zone-a".into()),
        interval: INTERVAL,
        timeout: Duration::from_millis(200),
        // Loopback peers give no pod subnets to derive: allow 127.0.0.0/8 so on-demand probes
        // of a peer are accepted and run (up to the rate and concurrency fences).
        probe: inproc::allow_cidr("127.0.0.0/8"),
        ..inproc::config("a", listen, peers)
    }
}

/// The agent on its own 2-thread runtime in its own thread; dropping the sender stops it.
fn start_agent(
    cfg: AgentConfig,
) -> Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let probers = inproc::probers()?;
    let listen = cfg.listen;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
            bound_tx.send(()).unwrap();
            let stop = async move {
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            };
            meshprobe::agent::run(cfg, listener, probers, stop)
                .await
                .expect("agent runs");
        });
    });
    bound_rx.recv().unwrap();
    Some((stop_tx, thread))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_clients_does_not_stop_probing_and_leaks_nothing() {
    let _serial = SERIAL.lock().await;
    let agent_ip = ip(61);
    let addr = SocketAddr::new(agent_ip, free_port(agent_ip));
    // a is us; b..e have no agent: their ICMP answers (loopback), their HTTP is refused.
    let mut text = String::from("peers:\n");
    for (n, last) in [("a", 61), ("b", 62), ("c", 63), ("d", 64), ("e", 65)] {
        text += &format!("  - {{node: {n}, node_ip: 127.0.0.1, pod_ip: 127.0.0.{last}}}\n");
    }
    let (dir, peers) = peers_file("overload", &text);
    let Some((stop, agent)) = start_agent(config(addr, &peers)) else {
        return;
    };

    // Ready, then a settled baseline.
    let t0 = Instant::now();
    while exchange(ip(1), addr, get("/readyz"), Duration::from_secs(2)).await
        != Outcome::Status(200)
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "agent never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(INTERVAL * 4).await;
    let (rss0, fds0) = (self_rss_kib(), fds());
    let before = metrics(addr).await;

    // Slowloris: a request head dribbled one byte every 100 ms, never finished; and clients
    // that connect and say nothing. Both must be cut at the header read timeout.
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..40u8 {
        slow.spawn(async move {
            let started = Instant::now();
            let Ok(mut s) = connect(ip(100 + i % 20), addr).await else {
                return (false, Duration::ZERO);
            };
            let head = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ";
            let silent = i % 2 == 1;
            let done = if silent {
                // Connect and say nothing: wait for the server to close.
                let mut buf = [0u8; 1024];
                tokio::time::timeout(SLOWLORIS_BOUND, async {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await
            } else {
                // Dribble the head until a write fails (the server closed).
                tokio::time::timeout(SLOWLORIS_BOUND, async {
                    let mut i = 0usize;
                    loop {
                        let b = head.get(i).copied().unwrap_or(b'a');
                        if s.write_all(&[b]).await.is_err() {
                            return;
                        }
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
                .await
            };
            (done.is_ok(), started.elapsed())
        });
    }

    // Oversized body (1 MiB, on-demand probe) and oversized head (64 KiB header), each from a
    // client address of its own so the rate limit does not answer first.
    let oversized_body = tokio::spawn(async move {
        let body = vec![b'x'; 1 << 20];
        let mut req = format!(
            "POST /api/v1/probe HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        exchange(ip(200), addr, req, Duration::from_secs(10)).await
    });
    let oversized_head = tokio::spawn(async move {
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "y".repeat(64 * 1024)
        );
        exchange(ip(201), addr, req.into_bytes(), Duration::from_secs(10)).await
    });

    // The burst: half /metrics, half on-demand probes, from 20 client addresses.
    let (outcomes, slowest, burst_took) = burst(addr).await;
    let during = metrics(addr).await;

    let mut slow_cut = 0;
    let mut slow_longest = Duration::ZERO;
    while let Some(r) = slow.join_next().await {
        let (cut, took) = r.unwrap();
        slow_cut += usize::from(cut);
        slow_longest = slow_longest.max(took);
    }
    let body_outcome = oversized_body.await.unwrap();
    let head_outcome = oversized_head.await.unwrap();

    // Afterwards: fds back near the baseline (server-side sockets close as tasks end).
    let settle = Instant::now();
    while fds() > fds0 + 16 && settle.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rss1, fds1) = (self_rss_kib(), fds());
    // The allocator keeps some of what a burst used: a second burst must not add much more.
    let (outcomes2, _, _) = burst(addr).await;
    let settle = Instant::now();
    while fds() > fds0 + 16 && settle.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rss2, fds2) = (self_rss_kib(), fds());
    let after_ok = exchange(ip(1), addr, get("/metrics"), Duration::from_secs(5)).await;
    let ready_ok = exchange(ip(1), addr, get("/readyz"), Duration::from_secs(5)).await;

    let rounds = during.rounds - before.rounds;
    let probes = during.count - before.count;
    let p50 = quantile_bound(&before, &during, 0.5);
    let p99 = quantile_bound(&before, &during, 0.99);
    let mean = (during.sum - before.sum) / probes.max(1) as f64;
    println!("burst: {BURST} clients in {burst_took:?}, slowest client {slowest:?}");
    println!("burst outcomes: {outcomes:?}");
    println!("slowloris/silent: {slow_cut}/40 cut, longest {slow_longest:?}");
    println!("oversized body: {body_outcome:?}; oversized head: {head_outcome:?}");
    println!(
        "probing during the burst: {rounds} rounds, {probes} probes; lateness mean {:.1} ms, p50 <= {} ms, p99 <= {} ms",
        mean * 1e3,
        p50 * 1e3,
        p99 * 1e3
    );
    println!("second burst outcomes: {outcomes2:?}");
    println!(
        "RSS {rss0} KiB -> {rss1} KiB after the first burst -> {rss2} KiB after the second; open fds {fds0} -> {fds1} -> {fds2}"
    );

    assert_eq!(
        outcomes.get(&Outcome::Hung),
        None,
        "clients hung: {outcomes:?}"
    );
    for o in outcomes.keys() {
        assert!(
            matches!(
                o,
                Outcome::Status(200 | 403 | 429 | 503) | Outcome::Closed | Outcome::NoConnect
            ),
            "unexpected outcome {o:?}: {outcomes:?}"
        );
    }
    // Bounds below: measured 2026-12-06 on this 2-core machine while two other cargo builds
    // ran (6 runs: 693-870 answered 200 in the first 4, rounds = the schedule's every time,
    // RSS +48-51 MiB after the first burst, +0-4 MiB after the second). Lateness re-measured
    // 2026-12-07 on a quiet machine, 11 runs and CI's: mean 8-51 ms, p99 64-512 ms (the code of
    // 12-06, c7c9d3d, 5 runs the same day: mean 10-68 ms, p99 64-512 ms: the machine, not the
    // code, moved). Each bound is set so that half the throughput, half the rounds, twice the
    // memory or a prober stalled for a second fails.
    let served = outcomes.get(&Outcome::Status(200)).copied().unwrap_or(0);
    assert!(served >= 400, "{served} clients answered 200: {outcomes:?}");
    assert_eq!(slow_cut, 40, "every slowloris/silent client is cut");
    assert_eq!(body_outcome, Outcome::Status(413), "1 MiB body");
    assert!(
        matches!(head_outcome, Outcome::Status(431) | Outcome::Closed),
        "64 KiB head: {head_outcome:?}"
    );
    // Rounds keep completing: at least half of what the burst's length asks for, one spared
    // (the snapshots and the burst do not start on a round boundary). A round late by the
    // p99 measured here (512 ms) skips two of 250 ms; a stopped prober completes none.
    let expected = (burst_took.as_secs_f64() / INTERVAL.as_secs_f64()) as u64;
    assert!(
        2 * (rounds + 1) >= expected,
        "{rounds} rounds in {burst_took:?} (expected {expected})"
    );
    // One histogram bucket above the worst measured p99 (512 ms); a starved loop is seconds.
    assert!(p99 <= 1.024, "p99 schedule lateness {p99} s");
    assert!(mean <= 0.128, "mean schedule lateness {mean} s");
    assert!(rss1 <= rss0 + 80 * 1024, "RSS grew {rss0} -> {rss1} KiB");
    // After a burst the allocator keeps a working set of ~50 MiB above the start (measured:
    // 24 -> 73 -> 78 MiB, and 26 -> 62 -> 79 MiB when the first burst happened to end lower):
    // the second burst is compared with the higher of the first's and that working set, so a
    // leak shows and a low first reading does not.
    let settled = rss1.max(rss0 + 64 * 1024);
    assert!(
        rss2 <= settled + 16 * 1024,
        "RSS grew again on a second burst: {rss0} -> {rss1} -> {rss2} KiB"
    );
    assert!(fds1 <= fds0 + 16, "open fds {fds0} -> {fds1}");
    assert!(fds2 <= fds0 + 16, "open fds {fds0} -> {fds2}");
    assert_eq!(outcomes2.get(&Outcome::Hung), None, "{outcomes2:?}");
    assert_eq!(after_ok, Outcome::Status(200));
    assert_eq!(ready_ok, Outcome::Status(200));

    drop(stop);
    agent.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// No route answers with the on-demand token, whatever is asked (the team's rule: no secret on
/// any endpoint). The token is a canary string; every GET route and refused POSTs are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_reveals_the_probe_token() {
    let _serial = SERIAL.lock().await;
    const CANARY: &str = "canary-0d9f4e7b2c61a8";
    let agent_ip = ip(66);
    let addr = SocketAddr::new(agent_ip, free_port(agent_ip));
    let (dir, peers) = peers_file(
        "canary",
        "peers:\n  - {node: a, node_ip: 127.0.0.1, pod_ip: 127.0.0.66}\n  - {node: b, node_ip: 127.0.0.1, pod_ip: 127.0.0.67}\n",
    );
    let mut cfg = config(addr, &peers);
    cfg.node_name = "a".into();
    cfg.probe.token = Some(CANARY.into());
    let Some((stop, agent)) = start_agent(cfg) else {
        return;
    };
    let t0 = Instant::now();
    while exchange(ip(1), addr, get("/readyz"), Duration::from_secs(2)).await
        != Outcome::Status(200)
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "agent never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read_all = |req: Vec<u8>| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&req).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("answered within 5 s")
            .unwrap();
        String::from_utf8_lossy(&buf).to_string()
    };
    let mut asked = 0;
    for path in [
        "/",
        "/?layer=http",
        "/heatmap.svg",
        "/metrics",
        "/healthz",
        "/readyz",
        "/ping",
        "/api/v1/results",
        "/api/v1/diagnosis",
        "/no/such/route",
    ] {
        let answer = read_all(get(path)).await;
        assert!(answer.starts_with("HTTP/1.1 "), "{path}: {answer}");
        assert!(!answer.contains(CANARY), "{path} reveals the token");
        asked += 1;
    }
    let body = r#"{"target":"127.0.0.67"}"#;
    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Basic x\r\n",
    ] {
        let req = format!(
            "POST /api/v1/probe HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = read_all(req.into_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 403"),
            "{auth:?}: {answer}"
        );
        assert!(!answer.contains(CANARY), "a refusal reveals the token");
        asked += 1;
    }
    println!("{asked} answers read, none carries the token");
    drop(stop);
    agent.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
