//! The agent's shared state and the two views every reader builds from it: its own results
//! document ([`results_of`]) and the mesh view ([`mesh_diagnosis`]). The probe loop is the only
//! writer; the HTTP routes, the on-demand fan-out and the event publisher read from here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::time::Instant;

use crate::config::AgentConfig;
use crate::diagnosis::input::{
    AddressFacts, CheckErrorInfo, CheckStats, ErrorCountInfo, ErrorInfo, FamilyReport, LayerStats,
    MtuReport, MtuState, PeerReport, RttSeconds, TargetReport,
};
use crate::diagnosis::{diagnose_inputs, AgentReport, Params};
use crate::discovery::DiscoveryStatus;
use crate::mesh::{self, MeshDiagnosis};
use crate::metrics::{Identity, Metrics, PlanStatus};
use crate::model::Layer;
use crate::store::{PeerResults, Store, TargetResults};
use crate::window::WindowStats;

/// State shared between the probe loop (writer) and the HTTP handlers (readers).
pub struct Shared {
    pub identity: Identity,
    pub config: AgentConfig,
    pub store: Arc<Mutex<Store>>,
    pub discovery: Arc<Mutex<DiscoveryStatus>>,
    pub ready: Arc<AtomicBool>,
    pub rounds: AtomicU64,
    pub metrics: Metrics,
    pub icmp_socket: &'static str,
    /// Whether the probe plan is sampled, and this agent's share of it.
    pub plan: Arc<PlanStatus>,
    /// The last mesh diagnosis and when it was made (see [`mesh_diagnosis`]).
    pub mesh_cache: tokio::sync::Mutex<Option<(Instant, Arc<crate::mesh::MeshDiagnosis>)>>,
    /// Kubernetes facts for the mesh view (with `--discovery kubernetes`).
    pub kube_facts: Option<crate::k8s::FactsSource>,
    /// `POST /api/v1/probe`: limits, allowed CIDRs, the probers it runs checks with.
    pub ondemand: crate::ondemand::OnDemand,
    /// The per-source checks (`dns`, `service`) and their windows.
    pub checks: Arc<crate::checks::Checks>,
}

/// The `/api/v1/results` document.
#[derive(Debug, Serialize)]
pub struct Results {
    pub node: String,
    pub zone: Option<String>,
    pub version: &'static str,
    pub ready: bool,
    pub rounds: u64,
    pub interval_seconds: f64,
    pub timeout_seconds: f64,
    pub window_seconds: f64,
    pub icmp_socket: &'static str,
    pub discovery: DiscoveryStatus,
    pub peers: Vec<PeerResults>,
    pub targets: Vec<TargetResults>,
    /// The address facts of the current peer set (pod CIDRs, targets' nodes), so every reader
    /// of this document builds the same ownership map.
    pub owners: AddressFacts,
    /// The per-source checks by kind (`dns`, `service`), each with its window's figures; empty
    /// when none is configured. Added after the pairs: readers that predate it ignore it.
    pub checks: BTreeMap<&'static str, crate::checks::CheckReport>,
}

pub fn results_of(s: &Shared) -> Results {
    // One lock: the figures and the address facts of the same peer set.
    let (snap, owners) = {
        let st = s.store.lock().unwrap_or_else(|p| p.into_inner());
        (st.snapshot(Instant::now()), AddressFacts::of(st.peers()))
    };
    Results {
        node: s.identity.node.clone(),
        zone: s.identity.zone.clone(),
        version: env!("CARGO_PKG_VERSION"),
        ready: s.ready.load(Ordering::Relaxed),
        rounds: s.rounds.load(Ordering::Relaxed),
        interval_seconds: s.config.interval.as_secs_f64(),
        timeout_seconds: s.config.timeout.as_secs_f64(),
        window_seconds: s.config.window.as_secs_f64(),
        icmp_socket: s.icmp_socket,
        discovery: s.discovery.lock().map(|d| d.clone()).unwrap_or_default(),
        peers: snap.peers,
        targets: snap.targets,
        owners,
        checks: s.checks.reports(Instant::now()),
    }
}

/// How long the mesh view waits for a peer's results: twice the probe timeout (2 s by default).
/// A peer agent that does not answer within that is evidence; waiting longer only delays the
/// answer for everyone else.
fn gather_timeout(s: &Shared) -> std::time::Duration {
    s.config.timeout * 2
}

/// Peers asked at once when gathering.
const GATHER_CONCURRENCY: usize = 16;

/// How long a computed mesh view is served again: a quarter of the probe interval, between
/// 100 ms and 1 s. Short enough that the cache adds little to the time from a fault to its
/// finding (a whole interval did: up to 1 s of a 2-interval budget at `--interval 1s`), long
/// enough that pollers, the page, the event publisher and on-demand probes share one fan-out:
/// an agent asks its peers at most 4 times per interval, and never more than 10 times a second.
pub fn mesh_cache_ttl(interval: std::time::Duration) -> std::time::Duration {
    (interval / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(1),
    )
}

/// The mesh view, computed at most once per [`mesh_cache_ttl`]: concurrent callers wait for
/// the one fan-out in progress instead of starting their own.
pub async fn mesh_diagnosis(s: &Shared) -> Arc<MeshDiagnosis> {
    let mut cache = s.mesh_cache.lock().await;
    if let Some((at, d)) = cache.as_ref() {
        if at.elapsed() < mesh_cache_ttl(s.config.interval) {
            return d.clone();
        }
    }
    let set = s
        .store
        .lock()
        .map(|st| st.peers().clone())
        .unwrap_or_default();
    let results = results_of(s);
    // Above --full-mesh-max: from Prometheus when given one, else from a bounded subset.
    let sampled = s.plan.current.lock().ok().and_then(|p| p.clone());
    let mut why_subset = "Give the agents --prometheus for a view of the whole mesh.".to_string();
    if let (Some(plan), Some(src)) = (&sampled, &s.config.prometheus) {
        match from_prometheus(s, src, &results, plan.names.len()).await {
            Ok(d) => {
                let d = Arc::new(d);
                *cache = Some((Instant::now(), d.clone()));
                return d;
            }
            Err(e) => {
                tracing::warn!(error = %e, "mesh view: Prometheus failed; asking a subset of the agents");
                why_subset = format!("Prometheus failed: {e}");
            }
        }
    }
    // Peers whose agent our own HTTP probes find down (two failures in a row) are not asked:
    // waiting out the timeout for them would only delay the answer. Their silence is evidence.
    let down: std::collections::HashSet<&str> = results
        .peers
        .iter()
        .filter(|p| {
            p.layers
                .get(&Layer::Http)
                .is_some_and(|w| w.reachable == Some(false) && w.consecutive_failures >= 2)
        })
        .map(|p| p.node.as_str())
        .collect();
    let mut agents = mesh::peer_agents(&set, &s.identity.node, s.config.listen.port());
    let scope = sampled.as_ref().map(|plan| {
        let failing: Vec<&str> = results
            .peers
            .iter()
            .filter(|p| p.layers.values().any(|w| w.reachable == Some(false)))
            .map(|p| p.node.as_str())
            .collect();
        let chosen: std::collections::HashSet<&str> = plan
            .view_subset(&s.identity.node, &failing, mesh::SUBSET_MAX)
            .into_iter()
            .collect();
        agents.retain(|(node, _)| chosen.contains(node.as_str()));
        mesh::subset_scope(agents.len(), plan.names.len(), &why_subset)
    });
    let (skipped, ask): (Vec<_>, Vec<_>) = agents
        .into_iter()
        .partition(|(node, _)| down.contains(node.as_str()));
    let own = results.report();
    // Kubernetes facts (when discovery is kubernetes) are fetched alongside the gathering,
    // within the same deadline, so a slow API server never delays the view.
    let facts = async {
        match &s.kube_facts {
            Some(k) => k.facts(std::slice::from_ref(&own), gather_timeout(s)).await,
            None => None,
        }
    };
    // Peers that two answering agents (this one included) find down are not waited for either.
    let mine = crate::gather::Gathered {
        source: own.node.clone(),
        addr: s.config.listen,
        result: Ok(own.clone()),
    };
    let (mut gathered, facts) = tokio::join!(
        crate::gather::gather(
            ask,
            gather_timeout(s),
            GATHER_CONCURRENCY,
            |answered, pending| {
                let mut with_mine = answered.to_vec();
                with_mine.push(&mine);
                mesh::not_waited_for(&with_mine, pending)
            }
        ),
        facts
    );
    gathered.extend(
        skipped
            .into_iter()
            .map(|(source, addr)| crate::gather::Gathered {
                source,
                addr,
                result: Err(format!(
                    "{}: this agent's own HTTP probes to it fail",
                    crate::gather::NOT_WAITED_FOR
                )),
            }),
    );
    let (mut inputs, agents_answered, agents_unreachable) = mesh::inputs(own, gathered, &set);
    inputs.kube = facts.map(|f| f.as_ref().clone());
    let (diagnosis, held) = crate::k8s::hold_findings(
        diagnose_inputs(&inputs, &Params::default()),
        &results.discovery.held,
    );
    let d = Arc::new(MeshDiagnosis {
        node: s.identity.node.clone(),
        agents_answered,
        agents_unreachable,
        diagnosis,
        held,
        scope,
        inputs,
    });
    *cache = Some((Instant::now(), d.clone()));
    d
}

/// How long the mesh view waits for Prometheus (its queries run at once): twice the probe
/// timeout, at least 5 s — one Prometheus answers for thousands of agents.
fn prometheus_timeout(s: &Shared) -> std::time::Duration {
    (s.config.timeout * 2).max(std::time::Duration::from_secs(5))
}

/// The mesh view from Prometheus (`--prometheus`, above `--full-mesh-max`): the same build as
/// `diagnose --prometheus`; this agent's own results stand in when Prometheus has none of its
/// series yet. `in_mesh`: agents in the peer set.
async fn from_prometheus(
    s: &Shared,
    src: &crate::promclient::PromSource,
    results: &Results,
    in_mesh: usize,
) -> Result<MeshDiagnosis, String> {
    let answers = crate::promclient::answers(src, prometheus_timeout(s)).await?;
    let url = src.url.display();
    let mut built = crate::promsource::build(&answers, src.matchers.as_deref())
        .map_err(|e| format!("Prometheus at {url}: {e}"))?;
    for n in &built.notes {
        tracing::debug!(note = %n, "mesh view: Prometheus data");
    }
    let own = results.report();
    if !built.inputs.agents.iter().any(|a| a.node == own.node) {
        built.answered.push(own.node.clone());
        built.inputs.agents.push(own.clone());
    }
    let facts = match &s.kube_facts {
        Some(k) => k.facts(std::slice::from_ref(&own), gather_timeout(s)).await,
        None => None,
    };
    built.inputs.kube = facts.map(|f| f.as_ref().clone());
    let (mut diagnosis, held) = crate::k8s::hold_findings(
        diagnose_inputs(&built.inputs, &Params::default()),
        &results.discovery.held,
    );
    crate::promsource::finish(&mut diagnosis, &url);
    Ok(MeshDiagnosis {
        node: s.identity.node.clone(),
        agents_answered: built.answered,
        agents_unreachable: built.unanswered,
        diagnosis,
        held,
        scope: Some(mesh::prometheus_scope(&url, in_mesh)),
        inputs: built.inputs,
    })
}

fn layers_of(l: &BTreeMap<Layer, WindowStats>) -> BTreeMap<String, LayerStats> {
    l.iter()
        .map(|(k, v)| (k.as_str().to_string(), layer_stats(v)))
        .collect()
}

/// The agent's own path-MTU reports, in the engine's terms.
fn mtu_reports(m: &BTreeMap<Layer, crate::mtu::MtuReport>) -> BTreeMap<String, MtuReport> {
    m.iter()
        .map(|(layer, r)| {
            let state = match r.state {
                crate::mtu::MtuState::Ok => MtuState::Ok,
                crate::mtu::MtuState::Mismatch => MtuState::Mismatch,
                crate::mtu::MtuState::Blackhole => MtuState::Blackhole,
                _ => MtuState::Unknown,
            };
            (
                layer.as_str().to_string(),
                MtuReport {
                    path_mtu: r.path_mtu,
                    state: Some(state),
                },
            )
        })
        .collect()
}

/// A destination's other families, in the engine's terms.
fn family_reports(
    f: &BTreeMap<crate::model::Family, crate::store::FamilyResults>,
) -> BTreeMap<String, FamilyReport> {
    f.iter()
        .map(|(family, r)| {
            (
                family.as_str().to_string(),
                FamilyReport {
                    node_ip: r.node_ip,
                    ip: Some(r.ip),
                    layers: layers_of(&r.layers),
                    mtu: mtu_reports(&r.mtu),
                },
            )
        })
        .collect()
}

impl Results {
    /// This agent's own results in the engine's terms: the same fields the JSON document
    /// carries, without the round trip through text.
    pub fn report(&self) -> AgentReport {
        AgentReport {
            node: self.node.clone(),
            zone: self.zone.clone(),
            ready: Some(self.ready),
            rounds: Some(self.rounds),
            interval_seconds: Some(self.interval_seconds),
            timeout_seconds: Some(self.timeout_seconds),
            window_seconds: Some(self.window_seconds),
            peers: self
                .peers
                .iter()
                .map(|p| PeerReport {
                    node: p.node.clone(),
                    zone: p.zone.clone(),
                    node_ip: Some(p.node_ip),
                    pod_ip: Some(p.pod_ip),
                    layers: layers_of(&p.layers),
                    mtu: mtu_reports(&p.mtu),
                    family: p.family.map(|f| f.as_str().to_string()),
                    families: family_reports(&p.families),
                    ..PeerReport::default()
                })
                .collect(),
            targets: self
                .targets
                .iter()
                .map(|t| TargetReport {
                    name: t.name.clone(),
                    ip: Some(t.ip),
                    port: Some(t.port),
                    protocol: Some(t.protocol.to_string()),
                    layers: layers_of(&t.layers),
                    mtu: mtu_reports(&t.mtu),
                    family: t.family.map(|f| f.as_str().to_string()),
                    families: family_reports(&t.families),
                    ..TargetReport::default()
                })
                .collect(),
            owners: self.owners.clone(),
            checks: self
                .checks
                .iter()
                .map(|(kind, c)| (kind.to_string(), check_stats(c)))
                .collect(),
        }
    }
}

/// One check's figures in the engine's terms (the fields of the results document).
fn check_stats(c: &crate::checks::CheckReport) -> CheckStats {
    CheckStats {
        target: c.target.clone(),
        reachable: c.reachable,
        consecutive_failures: c.consecutive_failures,
        probes: c.probes,
        successes: c.successes,
        success_ratio: c.success_ratio,
        last_result: c.last_result.map(str::to_string),
        last_error: c.last_error.as_ref().map(|e| CheckErrorInfo {
            kind: e.kind.to_string(),
            detail: e.detail.clone(),
            age_seconds: Some(e.age_seconds),
        }),
        last_probe_age_seconds: c.last_probe_age_seconds,
    }
}

/// One window's statistics in the engine's terms (the fields of the results document).
fn layer_stats(w: &WindowStats) -> LayerStats {
    LayerStats {
        reachable: w.reachable,
        consecutive_failures: w.consecutive_failures,
        probes: w.probes,
        successes: w.successes,
        sent: w.sent,
        received: w.received,
        success_ratio: w.success_ratio,
        loss_ratio: w.loss_ratio,
        rtt_seconds: w.rtt_seconds.map(|q| RttSeconds {
            p50: q.p50,
            p90: q.p90,
            p99: q.p99,
            max: q.max,
        }),
        last_error: w.last_error.as_ref().map(ErrorInfo::from),
        last_error_age_seconds: w.last_error_age_seconds,
        last_probe_age_seconds: w.last_probe_age_seconds,
        failing_for_seconds: w.failing_for_seconds,
        errors: w
            .errors
            .iter()
            .map(|e| ErrorCountInfo {
                kind: e.kind.to_string(),
                count: e.count,
                last: Some(ErrorInfo::from(&e.last)),
                last_age_seconds: Some(e.last_age_seconds),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::mesh_cache_ttl;
    use std::time::Duration;

    /// The agent's own report (no text round trip) is what its document reads as, both
    /// families included: the mesh view diagnoses its own cells per family like the others'.
    #[test]
    fn the_own_report_is_the_document_dual_stack_included() {
        use crate::diagnosis::AgentReport;
        use crate::model::{ErrorClass, Family, IpFamilies, ProbeResult};
        use crate::schedule::{tasks, TaskParams};
        use std::sync::Arc;
        let set = Arc::new(crate::peers::parse("peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2, node_ips: [10.0.0.2, 'fd00::2'], pod_ips: [10.1.0.2, 'fd01::2']}\ntargets:\n  - {name: web, ip: 10.1.0.9, ips: [10.1.0.9, 'fd01::9'], port: 80, protocol: http}\n").unwrap());
        let params = TaskParams {
            default_port: 9464,
            icmp_count: 1,
            icmp_size: 56,
            families: IpFamilies::Auto,
        };
        let t = tasks(&set, "a", params);
        let mut store = crate::store::Store::new("a", Duration::from_secs(60));
        store.set_peers(set.clone(), &t);
        let now = tokio::time::Instant::now();
        for task in &t {
            let r = if task.key.family == Family::Ipv6 {
                ProbeResult::failed(1, ErrorClass::Timeout)
            } else {
                ProbeResult::ok(Duration::from_millis(1), None)
            };
            store.record(&task.key, now, &r);
        }
        let snap = store.snapshot(now);
        let results = super::Results {
            node: "a".into(),
            zone: None,
            version: "test",
            ready: true,
            rounds: 3,
            interval_seconds: 1.0,
            timeout_seconds: 1.0,
            window_seconds: 10.0,
            icmp_socket: "raw",
            discovery: Default::default(),
            peers: snap.peers,
            targets: snap.targets,
            owners: crate::diagnosis::AddressFacts::of(&set),
            // The checks section: the own report carries it as the document does.
            checks: [(
                "dns",
                crate::checks::CheckReport {
                    target: "meshprobe.mp.svc.cluster.local.".into(),
                    record_type: Some("A"),
                    reachable: Some(false),
                    consecutive_failures: 1,
                    probes: 2,
                    successes: 1,
                    success_ratio: Some(0.5),
                    rtt_seconds: None,
                    last_result: Some("nxdomain"),
                    answers: Some(3),
                    last_error: Some(crate::checks::CheckError {
                        kind: "nxdomain",
                        detail: "no records".into(),
                        age_seconds: 1.0,
                    }),
                    last_probe_age_seconds: Some(1.0),
                },
            )]
            .into_iter()
            .collect(),
        };
        assert!(serde_json::to_string(&results)
            .unwrap()
            .contains(r#""checks":{"dns":{"target":"meshprobe.mp.svc.cluster.local.""#));
        let own = results.report();
        let doc = AgentReport::from_json(&serde_json::to_string(&results).unwrap()).unwrap();
        assert_eq!(own, doc);
        assert_eq!(own.peers[0].family.as_deref(), Some("ipv4"));
        assert_eq!(
            own.peers[0].families["ipv6"].layers["icmp_pod"].reachable,
            Some(false)
        );
        assert_eq!(own.targets[0].families["ipv6"].ip, "fd01::9".parse().ok());
    }

    #[test]
    fn the_mesh_view_is_cached_a_quarter_interval_within_bounds() {
        let ms = Duration::from_millis;
        for (interval, ttl) in [
            (ms(100), ms(100)),   // floor: at most 10 fan-outs a second
            (ms(400), ms(100)),   // a quarter
            (ms(1000), ms(250)),  // the lab's suite
            (ms(2000), ms(500)),  // the lab's default
            (ms(5000), ms(1000)), // the agent's default: capped
            (ms(60_000), ms(1000)),
        ] {
            assert_eq!(mesh_cache_ttl(interval), ttl, "interval {interval:?}");
        }
    }
}
