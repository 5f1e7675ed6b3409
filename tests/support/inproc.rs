//! An agent in the test's own process (`meshprobe::agent::run` on a tokio task): the config
//! builder, the probers (real, or a test's fake for all three kinds), start and stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshprobe::config::{AgentConfig, Discovery, PairMetrics, ProbeConfig};
use meshprobe::probe::{Prober, Probers};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The config the tests start from, changed with struct update syntax
/// (`AgentConfig { interval, ..config(node, listen, peers) }`): node `node` listening on
/// `listen`, no zone, peers from the file `peers` (an empty path with Kubernetes discovery),
/// every layer, a probe a second timing out at 500 ms, one ICMP echo of 56 bytes, a 10 s window,
/// 64 probes in flight at most, per-pair metrics, no path-MTU discovery, on-demand defaults.
pub fn config(node: &str, listen: SocketAddr, peers: &Path) -> AgentConfig {
    AgentConfig {
        node_name: node.into(),
        zone: None,
        listen,
        peers_file: peers.to_path_buf(),
        discovery: Discovery::File,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        window: Duration::from_secs(10),
        icmp_count: 1,
        icmp_size: 56,
        max_rate: 1000,
        max_in_flight: 64,
        pair_metrics: PairMetrics::All,
        full_mesh_max: 200,
        layers: meshprobe::model::Layers::ALL,
        ip_family: meshprobe::model::IpFamilies::Auto,
        mtu_interval: None,
        mtu_search_interval: Duration::from_secs(600),
        probe: ProbeConfig::default(),
        prometheus: None,
        checks: Default::default(),
    }
}

/// On-demand probes allowed to `cidr` (loopback targets are in no pod subnet the peer set
/// gives: they need an explicit `--allow-cidr`).
pub fn allow_cidr(cidr: &str) -> ProbeConfig {
    ProbeConfig {
        allow_cidrs: vec![meshprobe::net::Cidr::parse(cidr).unwrap()],
        ..ProbeConfig::default()
    }
}

/// The real probers, or None (saying why the test skips) where no ICMP socket can be opened
/// without root (no CAP_NET_RAW, no ping sysctl). As root they must open: a broken prober fails
/// the test instead of skipping it.
pub fn probers() -> Option<(Probers, &'static str)> {
    match meshprobe::agent::default_probers() {
        Ok(p) => Some(p),
        Err(e) if super::sys::is_root() => panic!("as root the real probers must open: {e}"),
        Err(e) => {
            eprintln!("SKIP: the agent cannot open ICMP sockets here: {e}");
            None
        }
    }
}

/// `fake` as the prober of every kind.
pub fn fake_probers(fake: Arc<dyn Prober>) -> (Probers, &'static str) {
    let probers = Probers {
        icmp: fake.clone(),
        tcp: fake.clone(),
        http: fake,
    };
    (probers, "fake")
}

/// An agent running on a task of the test's runtime.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Tell the agent to stop, without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Stop the agent and wait for it (5 s at most).
    pub async fn stop(mut self) {
        self.signal_stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

/// Run `cfg` with `probers` on `listener` until stopped.
pub fn spawn(cfg: AgentConfig, listener: TcpListener, probers: (Probers, &'static str)) -> Running {
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        meshprobe::agent::run(cfg, listener, probers, async {
            let _ = rx.await;
        })
        .await
        .expect("agent runs");
    });
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

/// Bind `cfg.listen` and run `cfg` with the real probers; None (the test skips) without an
/// ICMP socket.
pub async fn start(cfg: AgentConfig) -> Option<Running> {
    let listener = TcpListener::bind(cfg.listen).await.expect("bind agent");
    let probers = probers()?;
    Some(spawn(cfg, listener, probers))
}
