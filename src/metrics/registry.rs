//! The hot-path registry: the counters and histograms the probe loop and the on-demand API
//! update, registered once with bounded labels, and the text encoding of the whole registry.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::collector::StoreCollector;
use crate::model::{Layer, ProbeResult};

type LayerResult = [(&'static str, &'static str); 2];
type LayerOnly = [(&'static str, &'static str); 1];

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
    /// Size of the last exposition, so the next one's buffer is allocated once: a buffer grown
    /// by doubling holds the old and the new copy together.
    last_size: AtomicUsize,
    /// When a scrape was last encoded on the async thread ([`Metrics::encode_inline`]).
    inline_at: Mutex<Option<Instant>>,
    /// Whether `last_size` is a real exposition's size (its start value is only a guess).
    sized: AtomicBool,
    /// Per layer, the series every successful probe updates, each taken from its family when
    /// the family would first have made it (so what is exported does not change): a family
    /// lookup hashes its labels under a lock, three times a probe (~4% of the agent's CPU at
    /// 250 peers, perf).
    hot: [HotSeries; 4],
}

/// One layer's series of the probe path (clones share the families' values).
#[derive(Default)]
struct HotSeries {
    ok: OnceLock<Counter>,
    sent: OnceLock<Counter>,
    received: OnceLock<Counter>,
    rtt: OnceLock<Histogram>,
}

fn layer_index(layer: Layer) -> usize {
    match layer {
        Layer::IcmpPod => 0,
        Layer::IcmpNode => 1,
        Layer::Http => 2,
        Layer::Tcp => 3,
    }
}

/// Largest exposition [`Metrics::encode_inline`] encodes on the async thread: 2,000 peers
/// with `--pair-metrics failing` make 213 kB.
pub const INLINE_MAX_BYTES: usize = 256 * 1024;
/// At most one scrape this often is encoded on the async thread (Prometheus scrapes every
/// 15–60 s; a second server of an HA pair at its own offset).
pub const INLINE_GAP: Duration = Duration::from_secs(1);

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
        for check in ["icmp", "tcp", "http", "mtu", "dns"] {
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
            last_size: AtomicUsize::new(16 * 1024),
            inline_at: Mutex::new(None),
            sized: AtomicBool::new(false),
            hot: Default::default(),
        }
    }

    /// Add the per-source checks' series ([`crate::checks`]) to this registry.
    pub fn register_checks(
        &mut self,
        checks: &std::sync::Arc<crate::checks::Checks>,
        node: String,
        zone: String,
    ) {
        checks.register(&mut self.registry, node, zone);
    }

    /// Count one completed probe.
    pub fn observe(&self, layer: Layer, result: &ProbeResult) {
        let l = layer.as_str();
        let hot = &self.hot[layer_index(layer)];
        if result.success() {
            hot.ok
                .get_or_init(|| {
                    self.probes
                        .get_or_create(&[("layer", l), ("result", "ok")])
                        .clone()
                })
                .inc();
        } else {
            let outcome = result.error.as_ref().map_or("failed", |e| e.label());
            self.probes
                .get_or_create(&[("layer", l), ("result", outcome)])
                .inc();
        }
        hot.sent
            .get_or_init(|| self.packets_sent.get_or_create(&[("layer", l)]).clone())
            .inc_by(u64::from(result.sent));
        hot.received
            .get_or_init(|| self.packets_received.get_or_create(&[("layer", l)]).clone())
            .inc_by(u64::from(result.received.min(result.sent)));
        if !result.rtts.is_empty() {
            let h = hot
                .rtt
                .get_or_init(|| self.rtt.get_or_create(&[("layer", l)]).clone());
            for r in &result.rtts {
                h.observe(r.as_secs_f64());
            }
        }
    }

    /// Whether this scrape may be encoded on the async thread that received it instead of on
    /// Tokio's blocking pool. The pool's first use starts a thread, and with it a glibc malloc
    /// arena of its own that stays resident (~0.25 MiB, bench/README.md#footprint-against-the-peer-count-issue-23),
    /// so an agent scraped only by Prometheus should never start it. Inline when the last
    /// exposition was small (at most [`INLINE_MAX_BYTES`]: a few milliseconds; before the
    /// first, when `every_pair` series are not exported) and no other scrape was encoded
    /// inline within [`INLINE_GAP`]: a burst of scrapes goes to the pool and cannot queue up
    /// in front of the probe loop.
    pub fn encode_inline(&self, every_pair: bool) -> bool {
        let small = if self.sized.load(Ordering::Relaxed) {
            self.last_size.load(Ordering::Relaxed) <= INLINE_MAX_BYTES
        } else {
            !every_pair
        };
        if !small {
            return false;
        }
        let now = Instant::now();
        let Ok(mut at) = self.inline_at.lock() else {
            return false;
        };
        if at.is_some_and(|t| now.saturating_duration_since(t) < INLINE_GAP) {
            return false;
        }
        *at = Some(now);
        true
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let hint = self.last_size.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 16);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        self.last_size.store(out.len(), Ordering::Relaxed);
        self.sized.store(true, Ordering::Relaxed);
        Ok(out)
    }
}
