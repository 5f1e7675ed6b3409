//! The probe loop driven with fake probers under tokio's paused clock: how often each
//! destination is probed, how starts are spread, and the in-flight bound. No network.

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshprobe::config::AgentConfig;
use meshprobe::model::{Check, ProbeResult};
use meshprobe::probe::{BoxFuture, Prober};
use support::inproc;
use tokio::time::Instant;

/// Records (destination IP, check kind, start time) and answers after `delay`.
struct Fake {
    log: Mutex<Vec<(String, Instant)>>,
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Destinations (as `describe` names them) that time out, from when to when.
    failing: Mutex<Vec<(String, Instant, Instant)>>,
}

impl Fake {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Fake {
            log: Mutex::new(Vec::new()),
            delay,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            failing: Mutex::new(Vec::new()),
        })
    }
}

/// No path-MTU discovery here: no raw sockets in this test.
const MTU: Option<Duration> = None;

fn describe(check: &Check) -> String {
    match check {
        Check::Icmp { ip, .. } => format!("icmp {ip}"),
        Check::Tcp { addr } => format!("tcp {addr}"),
        Check::Http { addr, .. } => format!("http {addr}"),
    }
}

impl Prober for Fake {
    fn probe<'a>(&'a self, check: &'a Check, _timeout: Duration) -> BoxFuture<'a, ProbeResult> {
        Box::pin(async move {
            let (name, at) = (describe(check), Instant::now());
            self.log.lock().unwrap().push((name.clone(), at));
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let fails = self
                .failing
                .lock()
                .unwrap()
                .iter()
                .any(|(n, from, to)| *n == name && (*from..*to).contains(&at));
            if fails {
                ProbeResult::failed(1, meshprobe::model::ErrorClass::Timeout)
            } else {
                ProbeResult::ok(Duration::from_millis(1), None)
            }
        })
    }
}

fn peers_file(name: &str, peers: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshprobe-sched-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("peers.yaml");
    let mut text = String::from("peers:\n");
    for i in 0..peers {
        text.push_str(&format!(
            "  - {{node: n{i}, node_ip: 198.18.0.{}, pod_ip: 198.19.{i}.10}}\n",
            i + 10
        ));
    }
    text.push_str("targets:\n  - {name: db, ip: 198.19.9.11, port: 5432, protocol: tcp}\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn config(path: std::path::PathBuf, max_in_flight: usize) -> AgentConfig {
    AgentConfig {
        timeout: Duration::from_millis(950),
        max_in_flight,
        mtu_interval: MTU,
        ..inproc::config("n0", "127.0.0.1:0".parse().unwrap(), &path)
    }
}

async fn run_for(fake: Arc<Fake>, cfg: AgentConfig, secs: u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::spawn(meshprobe::agent::run(
        cfg,
        listener,
        inproc::fake_probers(fake),
        tokio::time::sleep(Duration::from_secs(secs)),
    ));
    agent.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn every_destination_is_probed_once_per_interval_with_spread_starts() {
    let fake = Fake::new(Duration::from_millis(2));
    let start = Instant::now();
    // n0 (us) + 4 peers + 1 tcp target: 4×3 + 2 = 14 probes a round.
    run_for(fake.clone(), config(peers_file("spread", 5), 64), 10).await;
    // Only what started within the 10 s: a probe whose slot falls in the shutdown's own
    // millisecond starts in the same timer tick (tokio's timer has 1 ms resolution) and is
    // not part of the measured run (it made 11 probes of one destination in 3 runs of 300).
    let end = start + Duration::from_secs(10);
    let log: Vec<(String, Instant)> = fake
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t)| *t < end)
        .cloned()
        .collect();

    let mut by_dest: HashMap<String, Vec<Instant>> = HashMap::new();
    for (d, t) in &log {
        by_dest.entry(d.clone()).or_default().push(*t);
    }
    assert_eq!(by_dest.len(), 14, "{:?}", by_dest.keys());
    assert!(
        !by_dest
            .keys()
            .any(|d| d.contains("198.19.0.10") || d.contains("198.18.0.10")),
        "never ourselves"
    );
    for (dest, times) in &by_dest {
        // 10 s at 1 s: 9 or 10 probes (the last round may be cut by the shutdown).
        assert!(
            (9..=10).contains(&times.len()),
            "{dest}: {} probes; all counts: {:?}",
            times.len(),
            by_dest
                .iter()
                .map(|(d, t)| (d.as_str(), t.len()))
                .collect::<Vec<_>>()
        );
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap > Duration::from_millis(0) && gap < Duration::from_secs(2),
                "{dest}: gap {gap:?} between two probes"
            );
        }
    }
    // Starts are spread: no 100 ms bucket of the run holds more than a third of a round.
    let mut buckets: HashMap<u128, usize> = HashMap::new();
    for (_, t) in &log {
        *buckets.entry((*t - start).as_millis() / 100).or_default() += 1;
    }
    let worst = buckets.values().max().copied().unwrap_or(0);
    assert!(
        worst <= 5,
        "bursty: {worst} probes started within one 100 ms bucket"
    );
}

#[tokio::test(start_paused = true)]
async fn probes_in_flight_never_exceed_the_bound() {
    // Slow answers (900 ms) and a bound of 3: the loop waits for permits instead of piling up.
    let fake = Fake::new(Duration::from_millis(900));
    run_for(fake.clone(), config(peers_file("bound", 5), 3), 6).await;
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 3);
    assert!(
        fake.log.lock().unwrap().len() >= 6 * 3 / 2,
        "still probing, slower"
    );
    // The loop does not touch addresses outside the peer set.
    let ips: Vec<IpAddr> = fake
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(d, _)| d.split(' ').nth(1)?.split(':').next()?.parse().ok())
        .collect();
    assert!(ips.iter().all(|ip| ip.to_string().starts_with("198.1")));
}

#[tokio::test(start_paused = true)]
async fn above_full_mesh_max_the_agent_probes_only_its_share_of_the_plan() {
    use meshprobe::plan::{epoch_at, Plan, PlanParams};
    let fake = Fake::new(Duration::from_millis(2));
    let path = peers_file("sampled", 40);
    let mut cfg = config(path.clone(), 64);
    cfg.full_mesh_max = 10;
    let set = meshprobe::peers::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let params = PlanParams {
        full_mesh_max: 10,
        ..PlanParams::default()
    };
    // The agent's rotation epoch comes from the wall clock: allow for crossing one boundary.
    let e = epoch_at(std::time::SystemTime::now(), cfg.window);
    let plans: Vec<Plan> = [e, e + 1]
        .iter()
        .map(|&e| Plan::for_peer_set(&set, "n0", None, &params, e))
        .collect();
    assert!(plans[0].sampled);
    let ip_of = |node: &str| set.peer(node).unwrap().pod_ip.to_string();
    run_for(fake.clone(), cfg, 5).await;
    let log = fake.log.lock().unwrap().clone();
    let probed: std::collections::BTreeSet<String> = log
        .iter()
        .filter(|(d, _)| d.starts_with("http "))
        .map(|(d, _)| d.trim_start_matches("http ").to_string())
        .collect();
    // The listener is on port 0 in this config: HTTP probes go to the peers' port 0.
    let allowed: std::collections::BTreeSet<String> = plans
        .iter()
        .flat_map(|p| p.peers_of("n0"))
        .map(|n| format!("{}:0", ip_of(n)))
        .collect();
    let core: Vec<String> = plans[0].core[plans[0].index("n0").unwrap()]
        .iter()
        .map(|&d| format!("{}:0", ip_of(&plans[0].names[d as usize])))
        .collect();
    assert!(probed.is_subset(&allowed), "{probed:?} vs {allowed:?}");
    for c in &core {
        assert!(probed.contains(c), "core peer {c} not probed: {probed:?}");
    }
    assert!(
        probed.len() < 39 && probed.len() >= 3,
        "{} of 39 peers probed",
        probed.len()
    );
    // Targets are not sampled.
    assert!(log.iter().any(|(d, _)| d == "tcp 198.19.9.11:5432"));
}

#[tokio::test(start_paused = true)]
async fn a_first_failure_is_confirmed_at_once_then_the_interval_resumes() {
    let fake = Fake::new(Duration::from_millis(2));
    let t0 = Instant::now();
    let db = "tcp 198.19.9.11:5432".to_string();
    // The target fails from 3.0 s to 6.0 s, and again from 8.0 s on: two failure streaks.
    fake.failing.lock().unwrap().extend([
        (
            db.clone(),
            t0 + Duration::from_secs(3),
            t0 + Duration::from_secs(6),
        ),
        (
            db.clone(),
            t0 + Duration::from_secs(8),
            t0 + Duration::from_secs(60),
        ),
    ]);
    run_for(fake.clone(), config(peers_file("confirm", 2), 64), 12).await;
    let times: Vec<f64> = fake
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(d, _)| *d == db)
        .map(|(_, t)| (*t - t0).as_secs_f64())
        .collect();
    // Gaps: one interval (1 s) between rounds, one probe delay (2 ms) for a confirmation.
    let quick: Vec<f64> = times
        .windows(2)
        .filter(|w| w[1] - w[0] < 0.1)
        .map(|w| w[1])
        .collect();
    assert_eq!(
        quick.len(),
        2,
        "one confirmation per failure streak: {times:?}"
    );
    assert!((3.0..4.1).contains(&quick[0]), "{times:?}");
    assert!((8.0..9.1).contains(&quick[1]), "{times:?}");
    // Outside the confirmations, still once per interval.
    assert!(
        (11..=14).contains(&(times.len() - quick.len())),
        "{} round probes in 12 s: {times:?}",
        times.len() - quick.len()
    );
}
