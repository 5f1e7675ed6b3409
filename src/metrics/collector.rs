//! The scrape-time collector: renders the store's current content on every scrape, one function
//! per metric family, called in exposition order.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tokio::time::Instant;

use super::rows::{Row, Rows};
use crate::config::PairMetrics;
use crate::discovery::DiscoveryStatus;
use crate::mtu::MtuReport;
use crate::store::Store;

/// Who this agent is, as labels.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub zone: Option<String>,
}

/// The probe plan as the probe loop last computed it (written there, read at scrape time).
#[derive(Debug, Default)]
pub struct PlanStatus {
    /// The plan is sampled: this agent probes its share of the peers, not all of them.
    pub sampled: AtomicBool,
    /// Peers this agent probes in the current epoch.
    pub peers: AtomicUsize,
    /// The plan itself (when sampled), for the mesh view's subset.
    pub current: Mutex<Option<Arc<meshprobe_core::plan::Plan>>>,
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
    pub interval: Duration,
    pub window: Duration,
}

/// A series' labels, in exposition order.
type Labels = Vec<(&'static str, String)>;

impl Collector for StoreCollector {
    /// The agent, discovery and plan families, the aggregates (always exported), then the
    /// per-pair series `--pair-metrics` selected. The store is locked only while `rows` copies.
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let now = Instant::now();
        let rows = super::rows::collect(
            &self.store,
            &self.identity.node,
            self.pair_metrics,
            self.plan.sampled.load(Ordering::Relaxed),
            now,
        );
        let enc = &mut enc;
        self.agent_info(enc)?;
        self.agent_ready(enc)?;
        self.probe_interval_seconds(enc)?;
        self.window_seconds(enc)?;
        runtime_tasks(enc)?;
        discovered(enc, &rows)?;
        let status = self.discovery.lock().map(|s| s.clone()).unwrap_or_default();
        discovery_reloads(enc, &status)?;
        self.plan_sampled(enc)?;
        self.plan_peers(enc)?;
        discovery_healthy(enc, &status)?;
        discovery_held(enc, &status)?;
        target_info(enc, &rows)?;
        destinations(enc, &rows)?;
        mtu_destinations(enc, &rows)?;

        let pairs = Pairs {
            src_node: self.identity.node.clone(),
            src_zone: self.identity.zone.clone().unwrap_or_default(),
            rows: &rows.pairs,
        };
        pairs.planned(enc, &self.stable(rows.planned))?;
        pairs.reachable(enc)?;
        pairs.success_ratio(enc)?;
        pairs.loss_ratio(enc)?;
        pairs.consecutive_failures(enc)?;
        pairs.rtt_seconds(enc)?;
        pairs.window_probes(enc)?;
        pairs.window_packets_sent(enc)?;
        pairs.window_errors(enc)?;
        pairs.error_age_seconds(enc)?;
        pairs.last_probe_age_seconds(enc)?;
        pairs.failing_for_seconds(enc)?;
        pairs.path_mtu_bytes(enc)?;
        pairs.expected_mtu_bytes(enc)?;
        pairs.mtu_state(enc)
    }
}

/// One gauge family: its descriptor, then every series.
fn gauge<V>(enc: &mut DescriptorEncoder, name: &str, help: &str, series: V) -> fmt::Result
where
    V: IntoIterator<Item = (Labels, f64)>,
{
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

// The agent, its discovery source and its plan.

impl StoreCollector {
    /// The planned peers without the rotation's: on a sampled plan only the stable plan's
    /// (levels 1–4) keep their `meshprobe_pair_planned` series.
    /// Why: rotating peers change every epoch; a series each would create about 8 series per
    /// agent per epoch (40,000 a minute at 5,000 nodes) for Prometheus to hold until its head
    /// compaction. A rotating pair then counts as a source only when it exports (failing).
    fn stable(&self, planned: Vec<(String, String)>) -> Vec<(String, String)> {
        let current = self.plan.current.lock().ok().and_then(|p| p.clone());
        let Some(plan) = current else {
            return planned; // a full mesh: no rotation
        };
        let Some(me) = plan.index(&self.identity.node) else {
            return planned;
        };
        let core: std::collections::HashSet<&str> = plan.core[me]
            .iter()
            .map(|&d| plan.names[d as usize].as_str())
            .collect();
        planned
            .into_iter()
            .filter(|(dst, _)| core.contains(dst.as_str()))
            .collect()
    }

    fn agent_info(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_agent_info",
            "Always 1: this agent's identity, its ICMP echo socket kind (raw or dgram) and its path-MTU discovery sockets (raw, datagram or off)",
            [(
                vec![
                    ("node", self.identity.node.clone()),
                    ("zone", self.identity.zone.clone().unwrap_or_default()),
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("icmp_socket", self.icmp_socket.to_string()),
                    ("pmtu_socket", self.pmtu_socket.to_string()),
                ],
                1.0,
            )],
        )
    }

    fn agent_ready(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_agent_ready",
            "1 once the agent has completed a full probe round",
            [(
                vec![],
                f64::from(u8::from(self.ready.load(Ordering::Relaxed))),
            )],
        )
    }

    fn probe_interval_seconds(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_probe_interval_seconds",
            "Time between two probes of the same destination and layer (--interval)",
            [(vec![], self.interval.as_secs_f64())],
        )
    }

    fn window_seconds(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_window_seconds",
            "Length of the sliding window the per-pair figures cover (--window)",
            [(vec![], self.window.as_secs_f64())],
        )
    }

    fn plan_sampled(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let sampled = self.plan.sampled.load(Ordering::Relaxed);
        gauge(
            enc,
            "meshprobe_plan_sampled",
            "1 when the peer set exceeds --full-mesh-max and this agent probes its share of a sampled plan",
            [(vec![], f64::from(u8::from(sampled)))],
        )
    }

    fn plan_peers(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_plan_peers",
            "Peers this agent probes in the current plan epoch",
            [(vec![], self.plan.peers.load(Ordering::Relaxed) as f64)],
        )
    }
}

/// Tokio's stable runtime metrics, when a runtime runs the scrape: a task leak shows as a
/// climbing count (bench/soak.sh watches it).
fn runtime_tasks(enc: &mut DescriptorEncoder) -> fmt::Result {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        gauge(
            enc,
            "meshprobe_runtime_tasks",
            "Tasks alive in the agent's Tokio runtime",
            [(vec![], rt.metrics().num_alive_tasks() as f64)],
        )?;
    }
    Ok(())
}

fn discovered(enc: &mut DescriptorEncoder, rows: &Rows) -> fmt::Result {
    gauge(
        enc,
        "meshprobe_discovered",
        "Destinations in the current peer set (this agent excluded), by kind",
        [
            (vec![("dst_kind", "peer".to_string())], rows.peers as f64),
            (
                vec![("dst_kind", "target".to_string())],
                rows.targets as f64,
            ),
        ],
    )
}

fn discovery_reloads(enc: &mut DescriptorEncoder, status: &DiscoveryStatus) -> fmt::Result {
    let mut m = enc.encode_descriptor(
        "meshprobe_discovery_reloads",
        "Peer-set reloads by the discovery source, by result",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(status.reloads_ok).encode(m.encode_family(&[("result", "ok")])?)?;
    ConstCounter::new(status.reloads_failed).encode(m.encode_family(&[("result", "error")])?)?;
    Ok(())
}

fn discovery_healthy(enc: &mut DescriptorEncoder, status: &DiscoveryStatus) -> fmt::Result {
    gauge(
        enc,
        "meshprobe_discovery_healthy",
        "0 while the discovery source is failing (the last good peer set is kept) and, after a Kubernetes API failure, until every watched resource has been listed again",
        [(
            vec![],
            if status.last_error.is_some() {
                0.0
            } else {
                1.0
            },
        )],
    )
}

fn discovery_held(enc: &mut DescriptorEncoder, status: &DiscoveryStatus) -> fmt::Result {
    gauge(
        enc,
        "meshprobe_discovery_held",
        "Kubernetes discovery: 1 per peer probed without alarm for now (reason: node_not_ready, node_cordoned, just_ready, node_unknown); alert rules can exclude them",
        status.held.iter().map(|h| {
            (
                vec![("dst", h.node.clone()), ("reason", h.reason.to_string())],
                1.0,
            )
        }),
    )
}

fn target_info(enc: &mut DescriptorEncoder, rows: &Rows) -> fmt::Result {
    gauge(
        enc,
        "meshprobe_target_info",
        "Always 1 per target: the node it runs on by the ownership map (its peers-file or Kubernetes node, else the node whose known pod CIDR holds its IP; dst_node empty when unknown)",
        rows.target_nodes
            .iter()
            .map(|(t, n)| (vec![("dst", t.clone()), ("dst_node", n.clone())], 1.0)),
    )
}

// The aggregates, always exported.

fn destinations(enc: &mut DescriptorEncoder, rows: &Rows) -> fmt::Result {
    gauge(
        enc,
        "meshprobe_destinations",
        "Destinations by kind, layer and state of their last probe (reachable, unreachable, unknown)",
        rows.states.iter().map(|((kind, layer, state), n)| {
            (
                vec![
                    ("dst_kind", kind.as_str().to_string()),
                    ("layer", layer.as_str().to_string()),
                    ("state", state.to_string()),
                ],
                f64::from(*n),
            )
        }),
    )
}

fn mtu_destinations(enc: &mut DescriptorEncoder, rows: &Rows) -> fmt::Result {
    gauge(
        enc,
        "meshprobe_mtu_destinations",
        "Destinations by ICMP layer and path-MTU state (ok, mismatch, blackhole, searching, unknown)",
        rows.mtu_states.iter().map(|((layer, state), n)| {
            (
                vec![
                    ("layer", layer.as_str().to_string()),
                    ("state", state.to_string()),
                ],
                f64::from(*n),
            )
        }),
    )
}

/// The per-pair families: the pairs `--pair-metrics` selected, labelled from this agent.
struct Pairs<'a> {
    src_node: String,
    src_zone: String,
    rows: &'a [Row],
}

impl<'a> Pairs<'a> {
    fn labels(&self, r: &Row) -> Labels {
        vec![
            ("src_node", self.src_node.clone()),
            ("src_zone", self.src_zone.clone()),
            ("dst_kind", r.kind.as_str().to_string()),
            ("dst", r.dst.clone()),
            ("dst_zone", r.dst_zone.clone()),
            ("layer", r.layer.as_str().to_string()),
            ("family", r.family.as_str().to_string()),
        ]
    }

    /// One series per error kind of each pair, labelled with the kind and its reporter.
    fn with_errors(&self) -> impl Iterator<Item = (Labels, u32, f64)> + '_ {
        self.rows.iter().flat_map(move |r| {
            r.errors.iter().map(move |&(kind, count, age, who)| {
                let mut l = self.labels(r);
                l.push(("kind", kind.to_string()));
                l.push(("reporter", who.to_string()));
                (l, count, age)
            })
        })
    }

    /// The pairs with a path-MTU report.
    fn with_mtu(&self) -> impl Iterator<Item = (&'a Row, &'a MtuReport)> {
        let rows: &'a [Row] = self.rows;
        rows.iter().filter_map(|r| r.mtu.as_ref().map(|m| (r, m)))
    }

    /// Always 1, one series per peer of the stable plan, exported only when healthy pairs have
    /// no series of their own: rules and `diagnose --prometheus` count a destination's
    /// sources with it, so one failing source of eleven reads as one, not as all.
    fn planned(&self, enc: &mut DescriptorEncoder, planned: &[(String, String)]) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_planned",
            "Always 1: a peer this agent probes by its stable plan, rotating peers left out (exported when healthy pairs have no series: --pair-metrics failing, or auto on a sampled plan)",
            planned.iter().map(|(dst, zone)| {
                (
                    vec![
                        ("src_node", self.src_node.clone()),
                        ("src_zone", self.src_zone.clone()),
                        ("dst_kind", "peer".to_string()),
                        ("dst", dst.clone()),
                        ("dst_zone", zone.clone()),
                    ],
                    1.0,
                )
            }),
        )
    }

    fn reachable(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_reachable",
            "1 if the last probe from this agent to the destination on this layer succeeded, else 0",
            self.rows.iter().filter_map(|r| {
                r.stats
                    .reachable
                    .map(|ok| (self.labels(r), f64::from(u8::from(ok))))
            }),
        )
    }

    fn success_ratio(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_success_ratio",
            "Successful probes / probes over the sliding window",
            self.rows
                .iter()
                .filter_map(|r| r.stats.success_ratio.map(|v| (self.labels(r), v))),
        )
    }

    fn loss_ratio(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_loss_ratio",
            "Lost packets / sent packets over the sliding window",
            self.rows
                .iter()
                .filter_map(|r| r.stats.loss_ratio.map(|v| (self.labels(r), v))),
        )
    }

    fn consecutive_failures(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_consecutive_failures",
            "Probes failed in a row (0 after any success)",
            self.rows
                .iter()
                .map(|r| (self.labels(r), f64::from(r.stats.consecutive_failures))),
        )
    }

    /// The window's RTT quantiles as gauges labelled `q`, not `quantile`: that label name is
    /// reserved for summaries, and linters (`promtool check metrics`) flag it on a gauge. Not a
    /// summary: prometheus-client cannot encode one, and it would add lifetime `_sum` and
    /// `_count` series per pair that nothing reads.
    fn rtt_seconds(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_rtt_seconds",
            "Round-trip time quantiles over the sliding window, by q (0.5, 0.9, 0.99; 1 is the maximum)",
            self.rows.iter().flat_map(|r| {
                r.stats.rtt_seconds.into_iter().flat_map(move |q| {
                    [
                        ("0.5", q.p50),
                        ("0.9", q.p90),
                        ("0.99", q.p99),
                        ("1", q.max),
                    ]
                    .map(|(q, v)| {
                        let mut l = self.labels(r);
                        l.push(("q", q.to_string()));
                        (l, v)
                    })
                })
            }),
        )
    }

    fn window_probes(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_window_probes",
            "Probes over the sliding window",
            self.rows
                .iter()
                .map(|r| (self.labels(r), f64::from(r.stats.probes))),
        )
    }

    fn window_packets_sent(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_window_packets_sent",
            "Packets (ICMP echoes) or exchanges (TCP/HTTP) sent over the sliding window",
            self.rows
                .iter()
                .map(|r| (self.labels(r), f64::from(r.stats.sent))),
        )
    }

    fn window_errors(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_window_errors",
            "Failed probes over the sliding window by error kind, labelled with who sent the latest (reporter: none, source, destination, peer, other)",
            self.with_errors().map(|(l, count, _)| (l, f64::from(count))),
        )
    }

    fn error_age_seconds(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_error_age_seconds",
            "Age of the latest error of this kind in the sliding window (the smallest is the last error)",
            self.with_errors().map(|(l, _, age)| (l, age)),
        )
    }

    fn last_probe_age_seconds(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_last_probe_age_seconds",
            "Age of the last probe from this agent to the destination on this layer (what diagnose --prometheus compares with a failure's onset)",
            self.rows
                .iter()
                .filter_map(|r| r.stats.last_probe_age_seconds.map(|v| (self.labels(r), v))),
        )
    }

    /// Only while the last probe failed: a recovered pair has no streak, whatever the window holds.
    fn failing_for_seconds(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_failing_for_seconds",
            "Age of the current failure streak's first failure; only while the last probe failed (absent otherwise)",
            self.rows
                .iter()
                .filter(|r| r.stats.reachable == Some(false))
                .filter_map(|r| r.stats.failing_for_seconds.map(|v| (self.labels(r), v))),
        )
    }

    fn path_mtu_bytes(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_path_mtu_bytes",
            "Largest IP packet that crosses the path with Don't-Fragment set, once measured",
            self.with_mtu()
                .filter_map(|(r, m)| m.path_mtu.map(|v| (self.labels(r), f64::from(v)))),
        )
    }

    fn expected_mtu_bytes(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_expected_mtu_bytes",
            "MTU of the local interface toward the destination",
            self.with_mtu()
                .map(|(r, m)| (self.labels(r), f64::from(m.expected_mtu))),
        )
    }

    fn mtu_state(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "meshprobe_pair_mtu_state",
            "Always 1, labelled with the path-MTU state: ok, mismatch (ICMP reported a smaller MTU), blackhole (large packets vanish silently), searching, unknown",
            self.with_mtu().map(|(r, m)| {
                let mut l = self.labels(r);
                l.push(("state", m.state.as_str().to_string()));
                (l, 1.0)
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::model::{ErrorClass, Layer, ProbeResult};
    use crate::peers::parse;
    use crate::schedule::{tasks, TaskParams};
    use std::sync::atomic::AtomicUsize;

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
                families: crate::model::IpFamilies::Auto,
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
        let m = metrics_of("a", Some("z1"), store, mode, plan_status(sampled, 2));
        m.encode().unwrap()
    }

    /// Metrics over `store` as node `node` in `zone` would export them: `mode`, the given plan
    /// status, the other settings at the agent's defaults.
    fn metrics_of(
        node: &str,
        zone: Option<&str>,
        store: Store,
        mode: PairMetrics,
        plan: PlanStatus,
    ) -> Metrics {
        Metrics::new(StoreCollector {
            identity: Identity {
                node: node.into(),
                zone: zone.map(Into::into),
            },
            store: Arc::new(Mutex::new(store)),
            discovery: Arc::new(Mutex::new(DiscoveryStatus::default())),
            ready: Arc::new(AtomicBool::new(true)),
            pair_metrics: mode,
            icmp_socket: "raw",
            pmtu_socket: "raw",
            interval: Duration::from_secs(5),
            window: Duration::from_secs(60),
            plan: Arc::new(plan),
        })
    }

    /// A plan status: sampled or not, `peers` probed, no current plan.
    fn plan_status(sampled: bool, peers: usize) -> PlanStatus {
        PlanStatus {
            sampled: AtomicBool::new(sampled),
            peers: AtomicUsize::new(peers),
            current: Default::default(),
        }
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
        assert!(all.contains(r#"meshprobe_pair_reachable{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http",family="ipv4"} 0"#), "{all}");

        // `failing`: every layer of the failing destination (c fails on http only), and
        // nothing of the healthy one.
        let failing = encode(PairMetrics::Failing);
        assert_eq!(count(&failing, "meshprobe_pair_reachable{"), 3, "{failing}");
        assert!(failing.contains(r#"dst="c",dst_zone="",layer="http",family="ipv4"} 0"#));
        assert!(failing.contains(r#"dst="c",dst_zone="",layer="icmp_node",family="ipv4"} 1"#));
        // Nothing of the healthy one but its planned-pair series (the denominator).
        assert!(
            failing
                .lines()
                .filter(|l| l.contains(r#"dst="b""#))
                .all(|l| l.starts_with("meshprobe_pair_planned{")),
            "{failing}"
        );

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

    /// The window's RTT quantiles: four gauges per answering pair, labelled `q`; no gauge
    /// carries `quantile` or `le`, which Prometheus reserves for summaries and histograms.
    #[test]
    fn rtt_quantiles_are_labelled_q_and_no_gauge_uses_a_reserved_label() {
        let all = encode(PairMetrics::All);
        let b_http = r#"meshprobe_pair_rtt_seconds{src_node="a",src_zone="z1",dst_kind="peer",dst="b",dst_zone="z2",layer="http",family="ipv4",q=""#;
        for q in ["0.5", "0.9", "0.99", "1"] {
            // Every probe took 2 ms (stored as f32): every quantile is 2 ms.
            let v: f64 = all
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{b_http}{q}\"}} ")))
                .unwrap_or_else(|| panic!("q={q}\n{all}"))
                .parse()
                .unwrap();
            assert!((v - 0.002).abs() < 1e-6, "q={q}: {v}");
        }
        let mut gauges = Vec::new();
        for line in all.lines() {
            if let Some(name) = line
                .strip_prefix("# TYPE ")
                .and_then(|l| l.strip_suffix(" gauge"))
            {
                gauges.push(format!("{name}{{"));
            }
        }
        assert!(gauges.len() > 20, "{gauges:?}");
        let reserved: Vec<&str> = all
            .lines()
            .filter(|l| gauges.iter().any(|g| l.starts_with(g.as_str())))
            .filter(|l| {
                l.contains(",quantile=")
                    || l.contains("{quantile=")
                    || l.contains(",le=")
                    || l.contains("{le=")
            })
            .collect();
        assert!(reserved.is_empty(), "{reserved:#?}");
    }

    #[test]
    fn window_figures_and_error_kinds_per_pair() {
        let all = encode(PairMetrics::All);
        assert_eq!(count(&all, "meshprobe_pair_window_probes{"), 6);
        assert_eq!(count(&all, "meshprobe_pair_window_packets_sent{"), 6);
        assert!(all.contains(r#"meshprobe_pair_window_probes{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http",family="ipv4"} 1"#), "{all}");
        // Only the failing cell has error series: one kind, sent by nobody (a TCP refusal).
        assert_eq!(count(&all, "meshprobe_pair_window_errors{"), 1);
        assert!(all.contains(r#"meshprobe_pair_window_errors{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http",family="ipv4",kind="refused",reporter="none"} 1"#), "{all}");
        assert_eq!(count(&all, "meshprobe_pair_error_age_seconds{"), 1);
        assert_eq!(
            count(&encode(PairMetrics::None), "meshprobe_pair_window_"),
            0
        );
    }

    /// The value of the one series of `metric` for (dst, layer), if any.
    fn pair_value(text: &str, metric: &str, dst: &str, layer: &str) -> Option<f64> {
        let key = format!(r#"dst="{dst}","#);
        let layer = format!(r#"layer="{layer}",family="ipv4"}}"#);
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
            text.contains(r#"meshprobe_pair_failing_for_seconds{src_node="a",src_zone="z1",dst_kind="peer",dst="c",dst_zone="",layer="http",family="ipv4"} "#),
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
        assert_eq!(count(&encode(PairMetrics::Failing), &format!("{M}{{")), 3);
        assert_eq!(count(&encode(PairMetrics::None), &format!("{M}{{")), 0);
    }

    #[test]
    fn auto_exports_every_pair_on_a_full_mesh_and_failing_pairs_on_a_sampled_plan() {
        let full = encode_with(PairMetrics::Auto, false);
        assert_eq!(count(&full, "meshprobe_pair_reachable{"), 6);
        assert!(full.contains("meshprobe_plan_sampled 0"), "{full}");
        let sampled = encode_with(PairMetrics::Auto, true);
        assert_eq!(count(&sampled, "meshprobe_pair_reachable{"), 3);
        assert!(sampled.contains(r#"dst="c",dst_zone="",layer="http",family="ipv4"} 0"#));
        assert!(sampled.contains("meshprobe_plan_sampled 1"));
        assert!(sampled.contains("meshprobe_plan_peers 2"));
        // The denominators: every probed peer once, healthy b included; none where every
        // pair has its own series (the pairs are then their own denominators).
        assert_eq!(count(&sampled, "meshprobe_pair_planned{"), 2, "{sampled}");
        assert!(sampled.contains(
            r#"meshprobe_pair_planned{src_node="a",src_zone="z1",dst_kind="peer",dst="b",dst_zone="z2"} 1"#
        ));
        assert_eq!(count(&full, "meshprobe_pair_planned{"), 0);
        assert_eq!(
            count(
                &encode_with(PairMetrics::Failing, false),
                "meshprobe_pair_planned{"
            ),
            2
        );
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
            families: crate::model::IpFamilies::Auto,
        };
        let t: Vec<_> = tasks(&set, "a", params)
            .into_iter()
            .filter(|t| t.key.name == "c")
            .collect();
        let mut store = Store::new("a", Duration::from_secs(60));
        store.set_peers(set, &t);
        let m = metrics_of("a", None, store, PairMetrics::Auto, plan_status(true, 1));
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"meshprobe_discovered{dst_kind="peer"} 2"#),
            "{text}"
        );
        assert!(text.contains("meshprobe_plan_peers 1"));
        // Only the probed peer is planned: b, in the set but not probed, is not a source's.
        assert_eq!(count(&text, "meshprobe_pair_planned{"), 1, "{text}");
        assert!(text.contains(r#"dst="c",dst_zone=""} 1"#), "{text}");
    }

    /// A scrape is encoded on the async thread when small and not one of a burst: the first
    /// only without every-pair series, then by the last exposition's size, at most one a
    /// second ([`crate::metrics::registry::INLINE_GAP`]).
    #[test]
    fn small_scrapes_are_encoded_inline_one_a_second() {
        let new = || {
            let store = Store::new("a", Duration::from_secs(60));
            metrics_of(
                "a",
                None,
                store,
                PairMetrics::Failing,
                plan_status(false, 0),
            )
        };
        let m = new();
        assert!(!m.encode_inline(true), "size unknown, every pair: the pool");
        assert!(m.encode_inline(false), "size unknown, no every-pair series");
        assert!(!m.encode_inline(false), "a second one within the gap");
        let m = new();
        let text = m.encode().unwrap();
        assert!(text.len() <= crate::metrics::registry::INLINE_MAX_BYTES);
        assert!(
            m.encode_inline(true),
            "a small last exposition, whatever the mode"
        );
        assert!(!m.encode_inline(true), "a second one within the gap");
    }

    /// On a sampled plan the rotating peers are probed but have no planned series: only the
    /// stable plan's peers do (rotating ones would be new series every epoch).
    #[test]
    fn only_the_stable_plans_peers_are_planned_series() {
        use meshprobe_core::plan::{NodeSpec, Plan, PlanParams};
        let n = 40;
        let nodes: Vec<NodeSpec> = (0..n)
            .map(|i| NodeSpec {
                name: format!("n{i:02}"),
                zone: None,
            })
            .collect();
        let plan = Plan::build(
            &nodes,
            &PlanParams {
                full_mesh_max: 10,
                ..PlanParams::default()
            },
            3,
        );
        let me = plan.index("n00").unwrap();
        let (core, all) = (plan.core[me].len(), plan.out[me].len());
        assert!(core >= 3 && all > core, "{core} of {all}");
        let peers: String = (0..n)
            .map(|i| {
                format!(
                    "  - {{node: n{i:02}, node_ip: 10.0.0.{}, pod_ip: 10.1.0.{}}}\n",
                    i + 1,
                    i + 1
                )
            })
            .collect();
        let set = Arc::new(parse(&format!("peers:\n{peers}")).unwrap());
        let mine: std::collections::HashSet<&str> = plan.peers_of("n00").into_iter().collect();
        let t: Vec<_> = tasks(
            &set,
            "n00",
            TaskParams {
                default_port: 9464,
                icmp_count: 1,
                icmp_size: 56,
                families: crate::model::IpFamilies::Auto,
            },
        )
        .into_iter()
        .filter(|t| mine.contains(t.key.name.as_str()))
        .collect();
        let mut store = Store::new("n00", Duration::from_secs(60));
        store.set_peers(set, &t);
        let m = metrics_of(
            "n00",
            None,
            store,
            PairMetrics::Auto,
            PlanStatus {
                current: Mutex::new(Some(Arc::new(plan.clone()))),
                ..plan_status(true, all)
            },
        );
        let text = m.encode().unwrap();
        assert_eq!(count(&text, "meshprobe_pair_planned{"), core, "{text}");
        for &d in &plan.core[me] {
            let dst = format!(r#"dst="{}""#, plan.names[d as usize]);
            assert!(
                text.lines()
                    .any(|l| l.starts_with("meshprobe_pair_planned{") && l.contains(&dst)),
                "{dst}: {text}"
            );
        }
    }
}
