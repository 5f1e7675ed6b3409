//! Prometheus exposition. Hot-path counters are registered metrics with bounded labels; every
//! per-destination figure is rendered at scrape time from the [`Store`] by [`StoreCollector`],
//! so a departed peer's series vanish with its windows and nothing stale lingers.
//!
//! Metric names, types and labels are documented in docs/metrics.md; keep them in step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::config::PairMetrics;
use crate::discovery::DiscoveryStatus;
use std::net::IpAddr;

use crate::model::{DestKind, ErrorClass, Layer, ProbeResult};
use crate::mtu::{MtuReport, MtuState};
use crate::net::Cidr;
use crate::peers::PeerSet;
use crate::store::Store;
use crate::window::WindowStats;

type LayerResult = [(&'static str, &'static str); 2];
type LayerOnly = [(&'static str, &'static str); 1];

/// Who this agent is, as labels.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub zone: Option<String>,
}

/// The agent's registry and its hot-path instruments.
pub struct Metrics {
    registry: Registry,
    probes: Family<LayerResult, Counter>,
    packets_sent: Family<LayerOnly, Counter>,
    packets_received: Family<LayerOnly, Counter>,
    rtt: Family<LayerOnly, Histogram, fn() -> Histogram>,
    pub lateness: Histogram,
    pub rounds: Counter,
    pub rounds_stretched: Counter,
    /// `meshprobe_confirmation_probes_total`: probes sent at once to confirm a first failure.
    pub confirmations: Counter,
    pub mtu_probes: Counter,
    /// `meshprobe_ondemand_requests_total{outcome}`: on-demand probe requests by outcome.
    pub ondemand_requests: Family<[(&'static str, &'static str); 1], Counter>,
    /// `meshprobe_ondemand_probes_total{check}`: on-demand checks started by this agent.
    pub ondemand_probes: Family<[(&'static str, &'static str); 1], Counter>,
    /// Size of the last exposition, to size the next one's buffer at once (a 3.5 MB scrape
    /// grown by doubling holds old and new buffers together: several MB of peak RSS).
    last_size: std::sync::atomic::AtomicUsize,
}

impl Metrics {
    pub fn new(collector: StoreCollector) -> Self {
        let mut registry = Registry::default();
        let probes = Family::<LayerResult, Counter>::default();
        registry.register(
            "meshprobe_probes",
            "Probes completed, by layer and result (ok, or the classified error)",
            probes.clone(),
        );
        let packets_sent = Family::<LayerOnly, Counter>::default();
        registry.register(
            "meshprobe_packets_sent",
            "Probe packets (ICMP echoes) or exchanges (TCP/HTTP) sent, by layer",
            packets_sent.clone(),
        );
        let packets_received = Family::<LayerOnly, Counter>::default();
        registry.register(
            "meshprobe_packets_received",
            "Probe answers received, by layer",
            packets_received.clone(),
        );
        let rtt: Family<LayerOnly, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16)));
        registry.register(
            "meshprobe_rtt_seconds",
            "Round-trip times of successful probes to all destinations, by layer",
            rtt.clone(),
        );
        let lateness = Histogram::new(exponential_buckets(0.000_5, 2.0, 14));
        registry.register(
            "meshprobe_schedule_lateness_seconds",
            "How late probes started compared with their planned time",
            lateness.clone(),
        );
        let rounds = Counter::default();
        registry.register("meshprobe_rounds", "Probe rounds completed", rounds.clone());
        let rounds_stretched = Counter::default();
        registry.register(
            "meshprobe_rounds_stretched",
            "Rounds made longer than --interval by the --max-rate ceiling",
            rounds_stretched.clone(),
        );
        let confirmations = Counter::default();
        registry.register(
            "meshprobe_confirmation_probes",
            "Probes sent at once to confirm a destination's first failure (one per failure streak)",
            confirmations.clone(),
        );
        let mtu_probes = Counter::default();
        registry.register(
            "meshprobe_mtu_probes",
            "Don't-Fragment path-MTU probes sent",
            mtu_probes.clone(),
        );
        let ondemand_requests = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "meshprobe_ondemand_requests",
            "POST /api/v1/probe requests, by outcome (accepted, or why refused)",
            ondemand_requests.clone(),
        );
        let ondemand_probes = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "meshprobe_ondemand_probes",
            "On-demand checks started by this agent (icmp, tcp, http, mtu)",
            ondemand_probes.clone(),
        );
        // Always exported, so a scrape shows zero rather than nothing.
        for outcome in crate::ondemand::request::OUTCOMES {
            let _ = ondemand_requests.get_or_create(&[("outcome", outcome)]);
        }
        for check in ["icmp", "tcp", "http", "mtu"] {
            let _ = ondemand_probes.get_or_create(&[("check", check)]);
        }
        registry.register_collector(Box::new(collector));
        Metrics {
            registry,
            probes,
            packets_sent,
            packets_received,
            rtt,
            lateness,
            rounds,
            rounds_stretched,
            confirmations,
            mtu_probes,
            ondemand_requests,
            ondemand_probes,
            last_size: std::sync::atomic::AtomicUsize::new(16 * 1024),
        }
    }

    /// Count one completed probe.
    pub fn observe(&self, layer: Layer, result: &ProbeResult) {
        let outcome = if result.success() {
            "ok"
        } else {
            result.error.as_ref().map_or("failed", |e| e.label())
        };
        let l = layer.as_str();
        self.probes
            .get_or_create(&[("layer", l), ("result", outcome)])
            .inc();
        self.packets_sent
            .get_or_create(&[("layer", l)])
            .inc_by(u64::from(result.sent));
        self.packets_received
            .get_or_create(&[("layer", l)])
            .inc_by(u64::from(result.received.min(result.sent)));
        if !result.rtts.is_empty() {
            let h = self.rtt.get_or_create(&[("layer", l)]);
            for r in &result.rtts {
                h.observe(r.as_secs_f64());
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let hint = self.last_size.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 16);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        self.last_size.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }
}

/// The probe plan as the probe loop last computed it (written there, read at scrape time).
#[derive(Debug, Default)]
pub struct PlanStatus {
    /// The plan is sampled: this agent probes its share of the peers, not all of them.
    pub sampled: AtomicBool,
    /// Peers this agent probes in the current epoch.
    pub peers: AtomicUsize,
}

/// Renders the store's current content on every scrape.
#[derive(Debug)]
pub struct StoreCollector {
    pub identity: Identity,
    pub store: Arc<Mutex<Store>>,
    pub discovery: Arc<Mutex<DiscoveryStatus>>,
    pub ready: Arc<AtomicBool>,
    pub pair_metrics: PairMetrics,
    pub icmp_socket: &'static str,
    /// Path-MTU discovery's sockets: `raw`, `datagram` or `off`.
    pub pmtu_socket: &'static str,
    pub plan: Arc<PlanStatus>,
    /// `--interval` and `--window`, exported so `diagnose --prometheus` judges staleness and
    /// recovery as `--agents` does.
    pub interval: std::time::Duration,
    pub window: std::time::Duration,
}

struct Row {
    kind: DestKind,
    dst: String,
    dst_zone: String,
    layer: Layer,
    stats: WindowStats,
    mtu: Option<MtuReport>,
    /// Per error kind in the window: (kind, count, age of the latest, who sent the latest).
    errors: Vec<(&'static str, u32, f64, &'static str)>,
}

/// The node whose pod IP is `ip`, or whose pod subnet (the /24 or /64 around its pod IP, the
/// diagnosis engine's rule) holds it; "" when none.
pub fn target_node(ip: IpAddr, set: &PeerSet) -> &str {
    set.peers
        .iter()
        .find(|p| p.pod_ip == ip)
        .or_else(|| {
            set.peers
                .iter()
                .find(|p| Cidr::around(p.pod_ip).contains(ip))
        })
        .map_or("", |p| p.node.as_str())
}

/// The address an ICMP error came from, if the error carries one.
fn error_sender(e: &ErrorClass) -> Option<IpAddr> {
    match e {
        ErrorClass::NetUnreachable { from }
        | ErrorClass::HostUnreachable { from }
        | ErrorClass::AdminProhibited { from }
        | ErrorClass::PortUnreachable { from }
        | ErrorClass::FragNeeded { from, .. }
        | ErrorClass::TtlExceeded { from }
        | ErrorClass::Icmp { from, .. } => *from,
        _ => None,
    }
}

/// The `reporter` label: who sent an error, in bounded words instead of an address.
/// `none`: no ICMP sender (a timeout, a refusal, the local stack's own error); `source`: an
/// address of the probing node (node IP, pod IP, or its pod subnet, the /24 or /64 around the
/// pod IP, which holds its pod gateway — the diagnosis engine's rule too); `destination`: the
/// destination's own address or its node's; `peer`: another node of the peer set; `other`: an
/// address outside the peer set (a router).
pub fn reporter(
    from: Option<IpAddr>,
    me: &str,
    dst: &str,
    dst_ip: Option<IpAddr>,
    set: &PeerSet,
) -> &'static str {
    let Some(ip) = from else { return "none" };
    let owns = |p: &crate::peers::Peer| {
        p.node_ip == ip || p.pod_ip == ip || Cidr::around(p.pod_ip).contains(ip)
    };
    if set.peer(me).is_some_and(owns) {
        return "source";
    }
    if dst_ip == Some(ip) || set.peer(dst).is_some_and(owns) {
        return "destination";
    }
    if set.peers.iter().any(owns) {
        return "peer";
    }
    "other"
}

/// Whether `--pair-metrics failing` exports a pair: a failure in the window, or a path MTU
/// below the interface's.
fn failing(stats: &WindowStats, mtu: Option<&MtuReport>) -> bool {
    stats.has_failures()
        || mtu.is_some_and(|m| {
            matches!(
                m.state,
                MtuState::Mismatch | MtuState::Blackhole | MtuState::Loss
            )
        })
}

/// What one scrape renders: the aggregates over every window, and the pairs selected for
/// per-pair series. Only the selected pairs are copied out of the store, so with
/// `--pair-metrics failing` a healthy 1,000-peer mesh copies nothing.
#[derive(Default)]
struct Rows {
    peers: usize,
    targets: usize,
    /// (kind, layer, state of the last probe) → destinations.
    states: BTreeMap<(DestKind, Layer, &'static str), u32>,
    /// (layer, path-MTU state) → destinations.
    mtu_states: BTreeMap<(Layer, &'static str), u32>,
    pairs: Vec<Row>,
    /// (target, the node whose pod subnet holds it, or "").
    target_nodes: Vec<(String, String)>,
}

impl StoreCollector {
    /// Count and select under the store's lock; encode afterwards.
    fn rows(&self, now: Instant) -> Rows {
        let mut rows = Rows::default();
        let sampled = self.plan.sampled.load(Ordering::Relaxed);
        let Ok(store) = self.store.lock() else {
            return rows;
        };
        rows.peers = store
            .peers()
            .peers
            .iter()
            .filter(|p| p.node != self.identity.node)
            .count();
        rows.targets = store.peers().targets.len();
        rows.target_nodes = store
            .peers()
            .targets
            .iter()
            .map(|t| (t.name.clone(), target_node(t.ip, store.peers()).to_string()))
            .collect();
        store.visit(now, |v| {
            let state = match v.stats.reachable {
                Some(true) => "reachable",
                Some(false) => "unreachable",
                None => "unknown",
            };
            for s in ["reachable", "unreachable", "unknown"] {
                rows.states.entry((v.kind, v.layer, s)).or_insert(0);
            }
            *rows.states.entry((v.kind, v.layer, state)).or_insert(0) += 1;
            if let Some(m) = v.mtu {
                for s in MtuState::ALL {
                    rows.mtu_states.entry((v.layer, s.as_str())).or_insert(0);
                }
                *rows
                    .mtu_states
                    .entry((v.layer, m.state.as_str()))
                    .or_insert(0) += 1;
            }
            let selected = match self.pair_metrics {
                PairMetrics::All => true,
                // Auto: every pair on a full mesh, failing ones on a sampled plan.
                PairMetrics::Auto => !sampled || failing(&v.stats, v.mtu),
                PairMetrics::Failing => failing(&v.stats, v.mtu),
                PairMetrics::None => false,
            };
            if selected {
                let set = store.peers();
                let dst_ip = match v.kind {
                    DestKind::Target => set.targets.iter().find(|t| t.name == v.name).map(|t| t.ip),
                    _ => None,
                };
                let errors = v
                    .stats
                    .errors
                    .iter()
                    .map(|e| {
                        let who = reporter(
                            error_sender(&e.last),
                            &self.identity.node,
                            v.name,
                            dst_ip,
                            set,
                        );
                        (e.kind, e.count, e.last_age_seconds, who)
                    })
                    .collect();
                rows.pairs.push(Row {
                    errors,
                    kind: v.kind,
                    dst: v.name.to_string(),
                    dst_zone: v.zone.unwrap_or_default().to_string(),
                    layer: v.layer,
                    stats: v.stats,
                    mtu: v.mtu.cloned(),
                });
            }
        });
        rows
    }
}

fn gauge<V>(enc: &mut DescriptorEncoder, name: &str, help: &str, series: V) -> std::fmt::Result
where
    V: IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
{
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let now = Instant::now();
        let rows = self.rows(now);
        let (n_peers, n_targets) = (rows.peers, rows.targets);
        let src_node = self.identity.node.clone();
        let src_zone = self.identity.zone.clone().unwrap_or_default();

        gauge(
            &mut enc,
            "meshprobe_agent_info",
            "Always 1: this agent's identity, its ICMP echo socket kind (raw or dgram) and its path-MTU discovery sockets (raw, datagram or off)",
            [(
                vec![
                    ("node", src_node.clone()),
                    ("zone", src_zone.clone()),
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("icmp_socket", self.icmp_socket.to_string()),
                    ("pmtu_socket", self.pmtu_socket.to_string()),
                ],
                1.0,
            )],
        )?;
        gauge(
            &mut enc,
            "meshprobe_agent_ready",
            "1 once the agent has completed a full probe round",
            [(
                vec![],
                f64::from(u8::from(self.ready.load(Ordering::Relaxed))),
            )],
        )?;
        gauge(
            &mut enc,
            "meshprobe_probe_interval_seconds",
            "Time between two probes of the same destination and layer (--interval)",
            [(vec![], self.interval.as_secs_f64())],
        )?;
        gauge(
            &mut enc,
            "meshprobe_window_seconds",
            "Length of the sliding window the per-pair figures cover (--window)",
            [(vec![], self.window.as_secs_f64())],
        )?;
        // Tokio's stable runtime metrics: a task leak shows as a climbing count (bench/soak.sh).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            gauge(
                &mut enc,
                "meshprobe_runtime_tasks",
                "Tasks alive in the agent's Tokio runtime",
                [(vec![], rt.metrics().num_alive_tasks() as f64)],
            )?;
        }
        gauge(
            &mut enc,
            "meshprobe_discovered",
            "Destinations in the current peer set (this agent excluded), by kind",
            [
                (vec![("dst_kind", "peer".to_string())], n_peers as f64),
                (vec![("dst_kind", "target".to_string())], n_targets as f64),
            ],
        )?;
        let status = self.discovery.lock().map(|s| s.clone()).unwrap_or_default();
        {
            let mut m = enc.encode_descriptor(
                "meshprobe_discovery_reloads",
                "Peer-set reloads by the discovery source, by result",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            ConstCounter::new(status.reloads_ok).encode(m.encode_family(&[("result", "ok")])?)?;
            ConstCounter::new(status.reloads_failed)
                .encode(m.encode_family(&[("result", "error")])?)?;
        }
        let sampled = self.plan.sampled.load(Ordering::Relaxed);
        gauge(
            &mut enc,
            "meshprobe_plan_sampled",
            "1 when the peer set exceeds --full-mesh-max and this agent probes its share of a sampled plan",
            [(vec![], f64::from(u8::from(sampled)))],
        )?;
        gauge(
            &mut enc,
            "meshprobe_plan_peers",
            "Peers this agent probes in the current plan epoch",
            [(vec![], self.plan.peers.load(Ordering::Relaxed) as f64)],
        )?;
        gauge(
            &mut enc,
            "meshprobe_discovery_healthy",
            "0 while the discovery source is failing (the last good peer set is kept)",
            [(
                vec![],
                if status.last_error.is_some() {
                    0.0
                } else {
                    1.0
                },
            )],
        )?;

        gauge(
            &mut enc,
            "meshprobe_discovery_held",
            "Kubernetes discovery: 1 per peer probed without alarm for now (reason: node_not_ready, node_cordoned, just_ready, node_unknown); alert rules can exclude them",
            status.held.iter().map(|h| {
                (
                    vec![("dst", h.node.clone()), ("reason", h.reason.to_string())],
                    1.0,
                )
            }),
        )?;

        gauge(
            &mut enc,
            "meshprobe_target_info",
            "Always 1 per target: the node whose pod subnet holds it (dst_node empty when none does)",
            rows.target_nodes.iter().map(|(t, n)| {
                (vec![("dst", t.clone()), ("dst_node", n.clone())], 1.0)
            }),
        )?;

        // Aggregates, always exported: destinations by kind, layer and state.
        let counts = &rows.states;
        gauge(
            &mut enc,
            "meshprobe_destinations",
            "Destinations by kind, layer and state of their last probe (reachable, unreachable, unknown)",
            counts.iter().map(|((kind, layer, state), n)| {
                (
                    vec![
                        ("dst_kind", kind.as_str().to_string()),
                        ("layer", layer.as_str().to_string()),
                        ("state", state.to_string()),
                    ],
                    f64::from(*n),
                )
            }),
        )?;

        // Path-MTU states by layer, always exported.
        let mtu_counts = &rows.mtu_states;
        gauge(
            &mut enc,
            "meshprobe_mtu_destinations",
            "Destinations by ICMP layer and path-MTU state (ok, mismatch, blackhole, searching, unknown)",
            mtu_counts.iter().map(|((layer, state), n)| {
                (
                    vec![
                        ("layer", layer.as_str().to_string()),
                        ("state", state.to_string()),
                    ],
                    f64::from(*n),
                )
            }),
        )?;

        // Per-pair series, as selected by --pair-metrics (in `rows`).
        let pairs = &rows.pairs;
        let labels = |r: &Row| {
            vec![
                ("src_node", src_node.clone()),
                ("src_zone", src_zone.clone()),
                ("dst_kind", r.kind.as_str().to_string()),
                ("dst", r.dst.clone()),
                ("dst_zone", r.dst_zone.clone()),
                ("layer", r.layer.as_str().to_string()),
            ]
        };
        gauge(
            &mut enc,
            "meshprobe_pair_reachable",
            "1 if the last probe from this agent to the destination on this layer succeeded, else 0",
            pairs
                .iter()
                .filter_map(|r| r.stats.reachable.map(|ok| (labels(r), f64::from(u8::from(ok))))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_success_ratio",
            "Successful probes / probes over the sliding window",
            pairs
                .iter()
                .filter_map(|r| r.stats.success_ratio.map(|v| (labels(r), v))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_loss_ratio",
            "Lost packets / sent packets over the sliding window",
            pairs
                .iter()
                .filter_map(|r| r.stats.loss_ratio.map(|v| (labels(r), v))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_consecutive_failures",
            "Probes failed in a row (0 after any success)",
            pairs
                .iter()
                .map(|r| (labels(r), f64::from(r.stats.consecutive_failures))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_rtt_seconds",
            "Round-trip time quantiles over the sliding window (quantile 1 is the maximum)",
            pairs.iter().flat_map(|r| {
                r.stats.rtt_seconds.into_iter().flat_map(move |q| {
                    [
                        ("0.5", q.p50),
                        ("0.9", q.p90),
                        ("0.99", q.p99),
                        ("1", q.max),
                    ]
                    .map(|(quantile, v)| {
                        let mut l = labels(r);
                        l.push(("quantile", quantile.to_string()));
                        (l, v)
                    })
                })
            }),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_window_probes",
            "Probes over the sliding window",
            pairs.iter().map(|r| (labels(r), f64::from(r.stats.probes))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_window_packets_sent",
            "Packets (ICMP echoes) or exchanges (TCP/HTTP) sent over the sliding window",
            pairs.iter().map(|r| (labels(r), f64::from(r.stats.sent))),
        )?;
        let with_errors = || {
            pairs.iter().flat_map(move |r| {
                r.errors.iter().map(move |&(kind, count, age, who)| {
                    let mut l = labels(r);
                    l.push(("kind", kind.to_string()));
                    l.push(("reporter", who.to_string()));
                    (l, count, age)
                })
            })
        };
        gauge(
            &mut enc,
            "meshprobe_pair_window_errors",
            "Failed probes over the sliding window by error kind, labelled with who sent the latest (reporter: none, source, destination, peer, other)",
            with_errors().map(|(l, count, _)| (l, f64::from(count))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_error_age_seconds",
            "Age of the latest error of this kind in the sliding window (the smallest is the last error)",
            with_errors().map(|(l, _, age)| (l, age)),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_last_probe_age_seconds",
            "Age of the last probe from this agent to the destination on this layer (what diagnose --prometheus compares with a failure's onset)",
            pairs
                .iter()
                .filter_map(|r| r.stats.last_probe_age_seconds.map(|v| (labels(r), v))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_failing_for_seconds",
            "Age of the current failure streak's first failure; only while the last probe failed (absent otherwise)",
            pairs
                .iter()
                .filter(|r| r.stats.reachable == Some(false))
                .filter_map(|r| r.stats.failing_for_seconds.map(|v| (labels(r), v))),
        )?;
        let with_mtu = || pairs.iter().filter_map(|r| r.mtu.as_ref().map(|m| (r, m)));
        gauge(
            &mut enc,
            "meshprobe_pair_path_mtu_bytes",
            "Largest IP packet that crosses the path with Don't-Fragment set, once measured",
            with_mtu().filter_map(|(r, m)| m.path_mtu.map(|v| (labels(r), f64::from(v)))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_expected_mtu_bytes",
            "MTU of the local interface toward the destination",
            with_mtu().map(|(r, m)| (labels(r), f64::from(m.expected_mtu))),
        )?;
        gauge(
            &mut enc,
            "meshprobe_pair_mtu_state",
            "Always 1, labelled with the path-MTU state: ok, mismatch (ICMP reported a smaller MTU), blackhole (large packets vanish silently), searching, unknown",
            with_mtu().map(|(r, m)| {
                let mut l = labels(r);
                l.push(("state", m.state.as_str().to_string()));
                (l, 1.0)
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorClass;
    use crate::peers::parse;
    use crate::schedule::{tasks, TaskParams};
    use std::time::Duration;

    fn encode(mode: PairMetrics) -> String {
        encode_with(mode, false)
    }

    fn encode_with(mode: PairMetrics, sampled: bool) -> String {
        encode_history(mode, sampled, &[])
    }

    /// The store after one round (at `now - 5 s`: c's HTTP refused, the rest answering), then
    /// `later` results at `now - s` seconds for (destination, layer): `true` a success.
    fn encode_history(
        mode: PairMetrics,
        sampled: bool,
        later: &[(u64, &str, Layer, bool)],
    ) -> String {
        let set = Arc::new(
            parse("peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, zone: z1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2, zone: z2}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.0.3}\n")
                .unwrap(),
        );
        let t = tasks(
            &set,
            "a",
            TaskParams {
                default_port: 9464,
                icmp_count: 1,
                icmp_size: 56,
            },
        );
        let mut store = Store::new("a", Duration::from_secs(60));
        store.set_peers(set, &t);
        let now = Instant::now();
        let ago = |s: u64| now.checked_sub(Duration::from_secs(s)).unwrap_or(now);
        let result = |ok: bool| {
            if ok {
                ProbeResult::ok(Duration::from_millis(2), None)
            } else {
                ProbeResult::failed(1, ErrorClass::Refused)
            }
        };
        for task in &t {
            let failed = task.key.name == "c" && task.key.layer == Layer::Http;
            store.record(&task.key, ago(5), &result(!failed));
        }
        for &(s, name, layer, ok) in later {
            let task = t
                .iter()
                .find(|t| t.key.name == name && t.key.layer == layer)
                .unwrap();
            store.record(&task.key, ago(s), &result(ok));
        }
        let m = Metrics::new(StoreCollector {
            identity: Identity {
                node: "a".into(),
                zone: Some("z1".into()),
            },
            store: Arc::new(Mutex::new(store)),
            discovery: Arc::new(Mutex::new(DiscoveryStatus::default())),
            ready: Arc::new(AtomicBool::new(true)),
            pair_metrics: mode,
            icmp_socket: "raw",
            pmtu_socket: "raw",
            interval: std::time::Duration::from_secs(5),
            window: std::time::Duration::from_secs(60),
            plan: Arc::new(PlanStatus {
                sampled: AtomicBool::new(sampled),
                peers: AtomicUsize::new(2),
            }),
        });
        m.encode().unwrap()
    }

    fn count(text: &str, prefix: &str) -> usize {
        text.lines().filter(|l| l.starts_with(prefix)).count()
    }

    #[test]
    fn pair_series_follow_the_selected_mode_and_aggregates_always_exist() {
        let all = encode(PairMetrics::All);
        // 2 peers × 3 layers.
        assert_eq!(count(&all, "meshprobe_pair_reachable{"), 6);
        assert_eq!(
            count(&all, "meshprobe_pair_rtt_seconds{"),
            5 * 4,
            "no RTT for the refused pair"
        );
        assert!(all.contains(r#"meshprobe_pair_reachable{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http"} 0"#), "{all}");

        let failing = encode(PairMetrics::Failing);
        assert_eq!(count(&failing, "meshprobe_pair_reachable{"), 1);
        assert!(failing.contains(r#"dst="c",dst_zone="",layer="http"} 0"#));

        let none = encode(PairMetrics::None);
        assert_eq!(count(&none, "meshprobe_pair_"), 0);
        for text in [&all, &failing, &none] {
            assert!(
                text.contains(
                    r#"meshprobe_destinations{dst_kind="peer",layer="http",state="unreachable"} 1"#
                ),
                "{text}"
            );
            assert!(text.contains(
                r#"meshprobe_destinations{dst_kind="peer",layer="http",state="reachable"} 1"#
            ));
            assert!(text.contains(r#"meshprobe_agent_info{node="a",zone="z1",version="#));
            assert!(
                text.contains(r#",icmp_socket="raw",pmtu_socket="raw"} 1"#),
                "{text}"
            );
            assert!(text.ends_with("# EOF\n"));
        }
    }

    #[test]
    fn window_figures_and_error_kinds_per_pair() {
        let all = encode(PairMetrics::All);
        assert_eq!(count(&all, "meshprobe_pair_window_probes{"), 6);
        assert_eq!(count(&all, "meshprobe_pair_window_packets_sent{"), 6);
        assert!(all.contains(r#"meshprobe_pair_window_probes{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http"} 1"#), "{all}");
        // Only the failing cell has error series: one kind, sent by nobody (a TCP refusal).
        assert_eq!(count(&all, "meshprobe_pair_window_errors{"), 1);
        assert!(all.contains(r#"meshprobe_pair_window_errors{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http",kind="refused",reporter="none"} 1"#), "{all}");
        assert_eq!(count(&all, "meshprobe_pair_error_age_seconds{"), 1);
        assert_eq!(
            count(&encode(PairMetrics::None), "meshprobe_pair_window_"),
            0
        );
    }

    /// The value of the one series of `metric` for (dst, layer), if any.
    fn pair_value(text: &str, metric: &str, dst: &str, layer: &str) -> Option<f64> {
        let key = format!(r#"dst="{dst}","#);
        let layer = format!(r#"layer="{layer}"}}"#);
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .find(|l| l.contains(&key) && l.contains(&layer))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn failing_for_exists_only_while_the_last_probe_failed() {
        use Layer::{Http, IcmpPod};
        const M: &str = "meshprobe_pair_failing_for_seconds";
        // (what, --pair-metrics, later results, want: (dst, layer, streak began s ago)).
        type Case = (
            &'static str,
            PairMetrics,
            &'static [(u64, &'static str, Layer, bool)],
            &'static [(&'static str, &'static str, u64)],
        );
        let cases: [Case; 6] = [
            ("one failure", PairMetrics::All, &[], &[("c", "http", 5)]),
            (
                "a streak: its first failure",
                PairMetrics::All,
                &[(3, "c", Http, false), (1, "c", Http, false)],
                &[("c", "http", 5)],
            ),
            (
                "recovered: gone, though the window holds the failure",
                PairMetrics::All,
                &[(2, "c", Http, true)],
                &[],
            ),
            (
                "a new streak after a success",
                PairMetrics::All,
                &[(3, "c", Http, true), (2, "c", Http, false)],
                &[("c", "http", 2)],
            ),
            (
                "two failing pairs, `failing` exports both",
                PairMetrics::Failing,
                &[(1, "b", IcmpPod, false)],
                &[("b", "icmp_pod", 1), ("c", "http", 5)],
            ),
            ("--pair-metrics none", PairMetrics::None, &[], &[]),
        ];
        for (what, mode, later, want) in cases {
            let text = encode_history(mode, false, later);
            assert_eq!(
                count(&text, &format!("{M}{{")),
                want.len(),
                "{what}\n{text}"
            );
            for &(dst, layer, began) in want {
                let v = pair_value(&text, M, dst, layer)
                    .unwrap_or_else(|| panic!("{what}: {dst} {layer}\n{text}"));
                // The age at scrape time: at least the streak's age when recorded.
                assert!(v >= began as f64 && v < began as f64 + 30.0, "{what}: {v}");
            }
        }
        // Same labels as the other per-pair series.
        let text = encode(PairMetrics::All);
        assert!(
            text.contains(r#"meshprobe_pair_failing_for_seconds{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http"} "#),
            "{text}"
        );
        assert!(
            text.contains("# HELP meshprobe_pair_failing_for_seconds "),
            "{text}"
        );
    }

    #[test]
    fn last_probe_age_for_every_exported_pair() {
        const M: &str = "meshprobe_pair_last_probe_age_seconds";
        let all = encode_history(PairMetrics::All, false, &[(2, "b", Layer::IcmpPod, true)]);
        assert_eq!(count(&all, &format!("{M}{{")), 6, "{all}");
        let b = pair_value(&all, M, "b", "icmp_pod").unwrap();
        let c = pair_value(&all, M, "c", "http").unwrap();
        assert!((2.0..30.0).contains(&b) && c >= 5.0 && c > b, "{b} {c}");
        assert_eq!(count(&encode(PairMetrics::Failing), &format!("{M}{{")), 1);
        assert_eq!(count(&encode(PairMetrics::None), &format!("{M}{{")), 0);
    }

    #[test]
    fn reporter_names_the_sender_in_bounded_words() {
        let set = parse("peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.1.10}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.2.10}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.3.10}\ntargets:\n  - {name: web, ip: 10.1.2.11, port: 80, protocol: http}\n").unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for (from, dst, dst_ip, want) in [
            (None, "b", None, "none"),
            (ip("10.1.1.1"), "b", None, "source"), // a's pod gateway
            (ip("10.0.0.1"), "b", None, "source"),
            (ip("10.1.2.10"), "b", None, "destination"),
            (ip("10.0.0.2"), "b", None, "destination"),
            (ip("10.0.0.3"), "b", None, "peer"),
            (ip("10.1.3.1"), "b", None, "peer"),
            (ip("198.18.1.1"), "b", None, "other"),
            (ip("10.1.2.11"), "web", ip("10.1.2.11"), "destination"),
            (ip("10.0.0.2"), "web", ip("10.1.2.11"), "peer"),
        ] {
            assert_eq!(
                reporter(from, "a", dst, dst_ip, &set),
                want,
                "{from:?} → {dst}"
            );
        }
    }

    #[test]
    fn auto_exports_every_pair_on_a_full_mesh_and_failing_pairs_on_a_sampled_plan() {
        let full = encode_with(PairMetrics::Auto, false);
        assert_eq!(count(&full, "meshprobe_pair_reachable{"), 6);
        assert!(full.contains("meshprobe_plan_sampled 0"), "{full}");
        let sampled = encode_with(PairMetrics::Auto, true);
        assert_eq!(count(&sampled, "meshprobe_pair_reachable{"), 1);
        assert!(sampled.contains(r#"dst="c",dst_zone="",layer="http"} 0"#));
        assert!(sampled.contains("meshprobe_plan_sampled 1"));
        assert!(sampled.contains("meshprobe_plan_peers 2"));
        // An explicit choice wins over the plan.
        assert_eq!(
            count(
                &encode_with(PairMetrics::All, true),
                "meshprobe_pair_reachable{"
            ),
            6
        );
    }

    #[test]
    fn discovered_counts_the_peer_set_even_when_the_plan_probes_a_share() {
        let set = Arc::new(
            parse("peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.0.3}\n").unwrap(),
        );
        let params = TaskParams {
            default_port: 9464,
            icmp_count: 1,
            icmp_size: 56,
        };
        let t: Vec<_> = tasks(&set, "a", params)
            .into_iter()
            .filter(|t| t.key.name == "c")
            .collect();
        let mut store = Store::new("a", Duration::from_secs(60));
        store.set_peers(set, &t);
        let m = Metrics::new(StoreCollector {
            identity: Identity {
                node: "a".into(),
                zone: None,
            },
            store: Arc::new(Mutex::new(store)),
            discovery: Arc::new(Mutex::new(DiscoveryStatus::default())),
            ready: Arc::new(AtomicBool::new(true)),
            pair_metrics: PairMetrics::Auto,
            icmp_socket: "raw",
            pmtu_socket: "raw",
            interval: std::time::Duration::from_secs(5),
            window: std::time::Duration::from_secs(60),
            plan: Arc::new(PlanStatus {
                sampled: AtomicBool::new(true),
                peers: AtomicUsize::new(1),
            }),
        });
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"meshprobe_discovered{dst_kind="peer"} 2"#),
            "{text}"
        );
        assert!(text.contains("meshprobe_plan_peers 1"));
    }
}
