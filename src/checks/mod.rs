//! Per-source checks: what one agent checks from its node besides the pairs — a name resolved
//! (`dns`), a Service VIP connected to (`service`), the API server's `/readyz` through its
//! ClusterIP (`apiserver`) and at its endpoints (`apiserver_endpoints`). Not pairs: each agent runs each
//! configured check once per round, in its own slot of the round (so `--max-rate` and
//! `--max-in-flight` count them), keeps a window of outcomes per check and exports per-source
//! series only (docs/metrics.md: a handful per agent whatever the cluster's size).

pub mod apiserver;
pub mod dns;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::ChecksConfig;
use crate::model::{Check as ProbeCheck, ErrorClass, IpFamilies, ProbeResult};
use crate::probe::Prober;
use crate::window::{Quantiles, Window};

/// Longest failure detail kept (from a resolver's or a socket's error text).
const MAX_DETAIL: usize = 200;

/// The kinds of check (`check` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dns,
    Service,
    /// `/readyz` through the API server's ClusterIP (`kubernetes.default.svc`).
    Apiserver,
    /// `/readyz` at each of the API server's endpoint addresses, one check for all.
    ApiserverEndpoints,
}

impl Kind {
    /// The API server's checks: each run is a new TLS connection to the control plane, so the
    /// fleet's runs are spaced by [`apiserver_period`].
    pub fn is_apiserver(self) -> bool {
        matches!(self, Kind::Apiserver | Kind::ApiserverEndpoints)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dns => "dns",
            Kind::Service => "service",
            Kind::Apiserver => "apiserver",
            Kind::ApiserverEndpoints => "apiserver_endpoints",
        }
    }
}

/// One check's outcome: `result` is `ok` or a bounded error kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: &'static str,
    pub duration: Duration,
    /// `dns`: records of the asked type in the answer.
    pub answers: Option<u32>,
    /// `service`: the prober's classified error, as the pair probes report it.
    pub error: Option<ErrorClass>,
    /// Why it failed, at most [`MAX_DETAIL`] bytes; empty on success.
    pub detail: String,
}

impl Outcome {
    pub fn ok(duration: Duration) -> Self {
        Outcome {
            result: "ok",
            duration,
            answers: None,
            error: None,
            detail: String::new(),
        }
    }

    pub fn failed(
        result: &'static str,
        duration: Duration,
        error: Option<ErrorClass>,
        detail: impl Into<String>,
    ) -> Self {
        let mut detail = detail.into();
        if detail.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        Outcome {
            result,
            duration,
            answers: None,
            error,
            detail,
        }
    }

    pub fn success(&self) -> bool {
        self.result == "ok"
    }

    /// The window's view of it: one exchange, answered or not.
    fn probe_result(&self) -> ProbeResult {
        if self.success() {
            ProbeResult::ok(self.duration, None)
        } else {
            let error = self.error.clone().unwrap_or(match self.result {
                "timeout" => ErrorClass::Timeout,
                kind => ErrorClass::Protocol {
                    detail: format!("dns {kind}"),
                },
            });
            ProbeResult::failed(1, error)
        }
    }
}

enum Runner {
    /// Boxed: the resolver is ~400 bytes, the other variant ~100.
    Dns(Box<dns::DnsCheck>),
    /// TCP connect and `GET /ping` with the agents' HTTP prober; any agent answering is a
    /// success (no expected node: the VIP picks one).
    Service {
        check: ProbeCheck,
        http: Arc<dyn Prober>,
    },
    /// TCP, TLS and `GET /readyz` to one or more API server addresses.
    Apiserver(apiserver::ApiserverCheck),
}

/// One configured check.
pub struct Check {
    pub kind: Kind,
    /// What it checks: the name (`dns`) or `IP:PORT` (`service`).
    pub target: String,
    runner: Runner,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .finish()
    }
}

impl Check {
    pub fn dns(
        name: &str,
        server: Option<SocketAddr>,
        families: IpFamilies,
        timeout: Duration,
    ) -> Self {
        Check {
            kind: Kind::Dns,
            target: name.to_string(),
            runner: Runner::Dns(Box::new(dns::DnsCheck::new(
                name, server, families, timeout,
            ))),
        }
    }

    pub fn service(addr: SocketAddr, http: Arc<dyn Prober>) -> Self {
        Check {
            kind: Kind::Service,
            target: addr.to_string(),
            runner: Runner::Service {
                check: ProbeCheck::Http {
                    addr,
                    path: "/ping".into(),
                    expect_node: None,
                },
                http,
            },
        }
    }

    /// An `apiserver` (`kind` [`Kind::Apiserver`], one address: the ClusterIP) or
    /// `apiserver_endpoints` check (every endpoint, at most [`apiserver::MAX_ENDPOINTS`]).
    pub fn apiserver(
        kind: Kind,
        addrs: Vec<SocketAddr>,
        tls: Arc<rustls::ClientConfig>,
        token: Option<std::path::PathBuf>,
    ) -> Self {
        let check = apiserver::ApiserverCheck::new(addrs, tls, token);
        Check {
            kind,
            target: check.target(),
            runner: Runner::Apiserver(check),
        }
    }

    /// Run once, within `timeout`.
    pub async fn run(&self, timeout: Duration) -> Outcome {
        match &self.runner {
            Runner::Dns(d) => d.run(timeout).await,
            Runner::Apiserver(a) => a.run(timeout).await,
            Runner::Service { check, http } => {
                let start = Instant::now();
                // The prober ends by its own deadline; this bound is for a prober that would not.
                let r = tokio::time::timeout(
                    timeout + Duration::from_millis(100),
                    http.probe(check, timeout),
                )
                .await
                .unwrap_or_else(|_| ProbeResult::failed(1, ErrorClass::Timeout));
                service_outcome(&r, start.elapsed())
            }
        }
    }
}

/// A `service` probe's result as an outcome, labelled as `meshprobe_probes_total` labels it.
fn service_outcome(r: &ProbeResult, took: Duration) -> Outcome {
    if r.success() {
        return Outcome::ok(r.rtts.first().copied().unwrap_or(took));
    }
    let error = r.error.clone().unwrap_or(ErrorClass::Timeout);
    let detail = error.to_string();
    Outcome::failed(error.label(), took, Some(error), detail)
}

/// The checks `config` asks for, in a fixed order. Must run inside a Tokio runtime (the DNS
/// resolver).
pub fn from_config(
    config: &ChecksConfig,
    families: IpFamilies,
    timeout: Duration,
    http: Arc<dyn Prober>,
) -> Vec<Check> {
    let mut list = Vec::new();
    if let Some(name) = &config.dns_name {
        list.push(Check::dns(name, config.dns_server, families, timeout));
    }
    if let Some(addr) = config.service {
        list.push(Check::service(addr, http));
    }
    if let Some(api) = &config.apiserver {
        if let Some(addr) = api.vip {
            list.push(Check::apiserver(
                Kind::Apiserver,
                vec![addr],
                api.tls.0.clone(),
                api.token.clone(),
            ));
        }
        if !api.endpoints.is_empty() {
            list.push(Check::apiserver(
                Kind::ApiserverEndpoints,
                api.endpoints.clone(),
                api.tls.0.clone(),
                api.token.clone(),
            ));
        }
    }
    list
}

#[derive(Debug)]
struct State {
    kind: Kind,
    /// `None` while the check's target is not known (a `service` check waiting for its
    /// Service's ClusterIP): not run, not reported, no `up` series.
    check: Option<Arc<Check>>,
    window: Window,
    last: Option<Outcome>,
    /// The last failure: when, its kind and detail.
    last_error: Option<(Instant, &'static str, String)>,
    /// `dns`: the last answer's record count.
    answers: Option<u32>,
    /// Failed runs since the last success.
    failures_in_row: u32,
    /// When its last run was scheduled ([`Checks::due`]).
    last_started: Option<Instant>,
}

impl State {
    fn new(kind: Kind, check: Option<Arc<Check>>, window: Duration) -> Self {
        State {
            kind,
            check,
            window: Window::new(window),
            last: None,
            last_error: None,
            answers: None,
            failures_in_row: 0,
            last_started: None,
        }
    }
}

/// New TLS connections per second the whole fleet's API server checks may open, counted per
/// check kind: each agent runs them at most every `nodes / APISERVER_RUNS_PER_SECOND` seconds.
pub const APISERVER_RUNS_PER_SECOND: f64 = 25.0;

/// How often an agent runs the API server checks in a cluster of `nodes`: every round up to
/// 25 × the interval's seconds nodes (125 at the 5 s default), then spaced so the fleet opens
/// at most [`APISERVER_RUNS_PER_SECOND`] connections per second per endpoint and check kind;
/// never longer than `window`, so a window always holds a run (the diagnosis reads an older
/// check as stale). 5,000 nodes, 5 s, 60 s window: every 60 s, about 83 per second.
pub fn apiserver_period(nodes: usize, interval: Duration, window: Duration) -> Duration {
    let spread = Duration::from_secs_f64(nodes as f64 / APISERVER_RUNS_PER_SECOND);
    spread.min(window).max(interval)
}

type CheckResult = [(&'static str, &'static str); 2];
type CheckOnly = [(&'static str, &'static str); 1];

/// The configured checks, their windows and their hot-path series. One slot per check kind,
/// fixed at start; a slot's check (its target) may be set later and changed
/// ([`Checks::set`]: the `service` check's ClusterIP found by Kubernetes discovery).
pub struct Checks {
    state: Mutex<Vec<State>>,
    window: Duration,
    total: Family<CheckResult, Counter>,
    duration: Family<CheckOnly, Histogram, fn() -> Histogram>,
}

impl fmt::Debug for Checks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checks")
            .field("targets", &self.targets())
            .finish()
    }
}

impl Checks {
    pub fn new(list: Vec<Check>, window: Duration) -> Self {
        let duration: Family<CheckOnly, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_5, 2.0, 12)));
        // Exported from the start, so a scrape shows zero rather than nothing.
        for c in &list {
            let _ = duration.get_or_create(&[("check", c.kind.as_str())]);
        }
        let state = list
            .into_iter()
            .map(|c| State::new(c.kind, Some(Arc::new(c)), window))
            .collect();
        Checks {
            state: Mutex::new(state),
            window,
            total: Family::default(),
            duration,
        }
    }

    /// A slot for a `kind` check whose target comes later ([`Checks::set`]); skipped until then.
    pub fn with_pending(self, kind: Kind) -> Self {
        {
            let mut state = self.lock();
            if !state.iter().any(|s| s.kind == kind) {
                state.push(State::new(kind, None, self.window));
            }
        }
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<State>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set (or clear, `None`) the `kind` slot's check. A new target starts a new window: the
    /// old target's outcomes say nothing of the new one (and its `up` series goes). The same
    /// target again changes nothing. False when there is no such slot.
    pub fn set(&self, kind: Kind, check: Option<Check>) -> bool {
        let mut state = self.lock();
        let Some(s) = state.iter_mut().find(|s| s.kind == kind) else {
            return false;
        };
        let same = match (&s.check, &check) {
            (Some(a), Some(b)) => a.target == b.target,
            (None, None) => true,
            _ => false,
        };
        if same {
            return true;
        }
        if check.is_some() {
            let _ = self.duration.get_or_create(&[("check", kind.as_str())]);
        }
        *s = State::new(kind, check.map(Arc::new), self.window);
        true
    }

    /// The checks that run now (their target known), by slot: what a round schedules.
    pub fn active(&self) -> Vec<usize> {
        let state = self.lock();
        (0..state.len())
            .filter(|&i| state[i].check.is_some())
            .collect()
    }

    /// The active checks due in the round starting `now`, marked as started: every check each
    /// round, but a kind whose `period_of` is longer at most once per that period (a quarter
    /// of it early, so a period of whole rounds is not missed by the rounds' jitter).
    pub fn due(&self, now: Instant, period_of: impl Fn(Kind) -> Duration) -> Vec<usize> {
        let mut state = self.lock();
        let mut out = Vec::new();
        for (i, s) in state.iter_mut().enumerate() {
            if s.check.is_none() {
                continue;
            }
            let period = period_of(s.kind);
            let waited = s
                .last_started
                .map(|t| now.saturating_duration_since(t) + period / 4);
            if waited.is_none_or(|w| w >= period) {
                s.last_started = Some(now);
                out.push(i);
            }
        }
        out
    }

    /// Checks that run now.
    pub fn len(&self) -> usize {
        self.active().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(kind, target)` of each check that runs now.
    pub fn targets(&self) -> Vec<(Kind, String)> {
        self.lock()
            .iter()
            .filter_map(|s| Some((s.kind, s.check.as_ref()?.target.clone())))
            .collect()
    }

    /// The `kind` check's failed runs since its last success (0 without a target).
    pub fn failures_in_row(&self, kind: Kind) -> u32 {
        self.lock()
            .iter()
            .find(|s| s.kind == kind && s.check.is_some())
            .map_or(0, |s| s.failures_in_row)
    }

    /// Run slot `i`'s check once and record its outcome; `None` when it has no target.
    pub async fn run(&self, i: usize, timeout: Duration) -> Option<Outcome> {
        let check = self.lock().get(i)?.check.clone()?;
        let outcome = check.run(timeout).await;
        self.record_for(i, Instant::now(), outcome.clone(), Some(&check));
        Some(outcome)
    }

    /// Record slot `i`'s outcome at `at`: its window, its last error, its series.
    pub fn record(&self, i: usize, at: Instant, outcome: Outcome) {
        self.record_for(i, at, outcome, None);
    }

    /// As [`record`](Self::record); with `ran`, only while that check is still the slot's (a
    /// run that outlived its target's change is dropped).
    fn record_for(&self, i: usize, at: Instant, outcome: Outcome, ran: Option<&Arc<Check>>) {
        let mut state = self.lock();
        let Some(s) = state.get_mut(i) else { return };
        let Some(check) = &s.check else { return };
        if ran.is_some_and(|r| !Arc::ptr_eq(r, check)) {
            return;
        }
        let kind = check.kind.as_str();
        self.total
            .get_or_create(&[("check", kind), ("result", outcome.result)])
            .inc();
        self.duration
            .get_or_create(&[("check", kind)])
            .observe(outcome.duration.as_secs_f64());
        s.window.record(at, &outcome.probe_result());
        if outcome.success() {
            s.failures_in_row = 0;
            if outcome.answers.is_some() {
                s.answers = outcome.answers;
            }
        } else {
            s.failures_in_row = s.failures_in_row.saturating_add(1);
            s.last_error = Some((at, outcome.result, outcome.detail.clone()));
        }
        s.last = Some(outcome);
    }

    /// Each check's figures now, by check kind (the `checks` section of `/api/v1/results`);
    /// a check without a target is not there.
    pub fn reports(&self, now: Instant) -> BTreeMap<&'static str, CheckReport> {
        let state = self.lock();
        state
            .iter()
            .filter_map(|s| {
                let c = s.check.as_ref()?;
                let w = s.window.stats(now);
                let last_error = s.last_error.as_ref().and_then(|(at, kind, detail)| {
                    let age = now.saturating_duration_since(*at);
                    (age <= self.window).then(|| CheckError {
                        kind,
                        detail: detail.clone(),
                        age_seconds: age.as_secs_f64(),
                    })
                });
                let report = CheckReport {
                    target: c.target.clone(),
                    record_type: match &c.runner {
                        Runner::Dns(d) => Some(d.record_type()),
                        Runner::Service { .. } | Runner::Apiserver(_) => None,
                    },
                    reachable: w.reachable,
                    consecutive_failures: w.consecutive_failures,
                    probes: w.probes,
                    successes: w.successes,
                    success_ratio: w.success_ratio,
                    rtt_seconds: w.rtt_seconds,
                    last_result: s.last.as_ref().map(|o| o.result),
                    answers: s.answers,
                    last_error,
                    last_probe_age_seconds: w.last_probe_age_seconds,
                };
                Some((c.kind.as_str(), report))
            })
            .collect()
    }

    /// Each check's `(kind, target, up)` after its last run; nothing before the first.
    fn up(&self) -> Vec<(&'static str, String, bool)> {
        self.lock()
            .iter()
            .filter_map(|s| {
                let c = s.check.as_ref()?;
                let last = s.last.as_ref()?;
                Some((c.kind.as_str(), c.target.clone(), last.success()))
            })
            .collect()
    }

    /// Register the checks' series: the hot-path families and the scrape-time `up` gauge.
    pub fn register(self: &Arc<Self>, registry: &mut Registry, node: String, zone: String) {
        registry.register(
            "meshprobe_check",
            "Per-source checks completed, by check (dns, service, apiserver, apiserver_endpoints) and result (ok or the error kind)",
            self.total.clone(),
        );
        registry.register(
            "meshprobe_check_duration_seconds",
            "Time each per-source check took, answered or not, by check",
            self.duration.clone(),
        );
        registry.register_collector(Box::new(UpCollector {
            checks: self.clone(),
            node,
            zone,
        }));
    }
}

/// `meshprobe_check_up`, rendered at scrape time from the checks' last outcomes.
#[derive(Debug)]
struct UpCollector {
    checks: Arc<Checks>,
    node: String,
    zone: String,
}

impl Collector for UpCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let labels = |check: &str, target: &str| -> Vec<(&str, String)> {
            vec![
                ("src_node", self.node.clone()),
                ("src_zone", self.zone.clone()),
                ("check", check.to_string()),
                ("target", target.to_string()),
            ]
        };
        let mut m = enc.encode_descriptor(
            "meshprobe_check_up",
            "1 if the last run of a per-source check succeeded, else 0; absent before its first run",
            None,
            MetricType::Gauge,
        )?;
        for (check, target, up) in self.checks.up() {
            ConstGauge::new(if up { 1.0 } else { 0.0 })
                .encode(m.encode_family(&labels(check, &target))?)?;
        }
        // The window's figures the diagnosis reads through Prometheus (`diagnose
        // --prometheus`): a check is down after failed runs in a row, not one.
        let reports: Vec<(&str, CheckReport)> = self
            .checks
            .reports(Instant::now())
            .into_iter()
            .filter(|(_, r)| r.reachable.is_some())
            .collect();
        let mut m = enc.encode_descriptor(
            "meshprobe_check_consecutive_failures",
            "Failed runs in a row of a per-source check (0 after a success)",
            None,
            MetricType::Gauge,
        )?;
        for (check, r) in &reports {
            ConstGauge::new(i64::from(r.consecutive_failures))
                .encode(m.encode_family(&labels(check, &r.target))?)?;
        }
        let mut m = enc.encode_descriptor(
            "meshprobe_check_success_ratio",
            "Share of a per-source check's runs in the window that succeeded",
            None,
            MetricType::Gauge,
        )?;
        for (check, r) in &reports {
            if let Some(ratio) = r.success_ratio {
                ConstGauge::new(ratio).encode(m.encode_family(&labels(check, &r.target))?)?;
            }
        }
        Ok(())
    }
}

/// One check's figures in `/api/v1/results` (`checks.dns`, `checks.service`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub target: String,
    /// `dns`: the record type asked for (A, AAAA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_type: Option<&'static str>,
    /// Whether the last run succeeded; `None` before the first.
    pub reachable: Option<bool>,
    pub consecutive_failures: u32,
    /// Runs and successes over the window.
    pub probes: u32,
    pub successes: u32,
    pub success_ratio: Option<f64>,
    /// Durations of the successful runs over the window.
    pub rtt_seconds: Option<Quantiles>,
    /// `ok` or the error kind of the last run.
    pub last_result: Option<&'static str>,
    /// `dns`: records in the last successful answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<u32>,
    /// The last failure inside the window.
    pub last_error: Option<CheckError>,
    pub last_probe_age_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckError {
    pub kind: &'static str,
    pub detail: String,
    pub age_seconds: f64,
}

/// Which of a round's `total` slots check `j` of `checks` takes: slot `j × total / checks`,
/// spread over the round instead of bunched at its start (distinct while `total ≥ checks`).
pub fn slot_of(i: usize, total: usize, checks: usize) -> Option<usize> {
    if checks == 0 || total < checks {
        return None;
    }
    // Slot i is check j's when j·total/checks == i; j is the smallest with j·total ≥ i·checks.
    let j = (i * checks).div_ceil(total);
    (j < checks && j * total / checks == i).then_some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_take_distinct_spread_slots() {
        for total in 1..40 {
            for checks in 0..=total.min(4) {
                let slots: Vec<(usize, usize)> = (0..total)
                    .filter_map(|i| slot_of(i, total, checks).map(|j| (i, j)))
                    .collect();
                assert_eq!(slots.len(), checks, "total {total} checks {checks}");
                for (n, (_, j)) in slots.iter().enumerate() {
                    assert_eq!(*j, n, "checks in order: {slots:?}");
                }
                if checks == 2 && total >= 4 {
                    // The second check starts in the round's second half.
                    assert!(slots[1].0 >= total / 2, "{slots:?}");
                }
            }
        }
    }

    /// A `service` probe's result keeps the pair probes' error kinds as its result label.
    #[test]
    fn service_results_are_labelled_as_the_pair_probes_label_them() {
        let ms = Duration::from_millis;
        let ok = service_outcome(&ProbeResult::ok(ms(2), None), ms(3));
        assert_eq!(
            (ok.result, ok.duration, ok.detail.as_str()),
            ("ok", ms(2), "")
        );
        for (error, label) in [
            (ErrorClass::Refused, "refused"),
            (ErrorClass::Timeout, "timeout"),
            (ErrorClass::NetUnreachable { from: None }, "net_unreachable"),
            (ErrorClass::HttpStatus { code: 503 }, "http_status"),
        ] {
            let o = service_outcome(&ProbeResult::failed(1, error.clone()), ms(1));
            assert_eq!(o.result, label);
            assert_eq!(o.error, Some(error.clone()));
            assert_eq!(o.detail, error.to_string());
            assert!(!o.success());
            assert_eq!(o.probe_result().error, Some(error));
        }
        // A DNS failure reaches the window as a failed exchange, a timeout as a timeout.
        let t = Outcome::failed("timeout", ms(500), None, "");
        assert_eq!(t.probe_result().error, Some(ErrorClass::Timeout));
        let nx = Outcome::failed("nxdomain", ms(1), None, "");
        assert!(!nx.probe_result().success());
    }

    /// A `service` check waiting for its ClusterIP is neither run nor reported nor exported;
    /// set, it is; the same target again keeps its window, a new one starts a new window (and
    /// drops a run of the old target that ends after the change); cleared, it is gone again.
    #[tokio::test]
    async fn a_pending_check_runs_once_its_target_is_set() {
        let http: Arc<dyn Prober> = Arc::new(crate::probe::http::HttpProber::new());
        let svc = |a: &str| Some(Check::service(a.parse().unwrap(), http.clone()));
        let checks = Checks::new(vec![], Duration::from_secs(10)).with_pending(Kind::Service);
        assert!(checks.active().is_empty() && checks.is_empty());
        assert!(checks.reports(Instant::now()).is_empty());
        assert_eq!(checks.run(0, Duration::from_millis(10)).await, None);
        checks.record(0, Instant::now(), Outcome::ok(Duration::from_millis(1)));
        assert!(checks.up().is_empty(), "nothing recorded without a target");
        assert!(!checks.set(Kind::Dns, None), "no dns slot");

        assert!(checks.set(Kind::Service, svc("192.0.2.1:9464")));
        assert_eq!(checks.active(), vec![0]);
        assert_eq!(
            checks.targets(),
            vec![(Kind::Service, "192.0.2.1:9464".to_string())]
        );
        let t0 = Instant::now();
        let fail = || Outcome::failed("refused", Duration::from_millis(1), None, "");
        checks.record(0, t0, fail());
        checks.record(0, t0, fail());
        assert_eq!(checks.failures_in_row(Kind::Service), 2);
        checks.set(Kind::Service, svc("192.0.2.1:9464"));
        assert_eq!(checks.reports(t0)["service"].probes, 2, "same target: kept");

        // A run of the old target outlives the change: dropped.
        let old = checks.lock()[0].check.clone().unwrap();
        checks.set(Kind::Service, svc("192.0.2.2:9464"));
        checks.record_for(0, t0, fail(), Some(&old));
        let r = &checks.reports(t0)["service"];
        assert_eq!((r.target.as_str(), r.probes), ("192.0.2.2:9464", 0));
        assert_eq!(checks.failures_in_row(Kind::Service), 0);
        assert!(checks.up().is_empty(), "the old target's up series is gone");

        checks.set(Kind::Service, None);
        assert!(checks.active().is_empty() && checks.reports(t0).is_empty());
        assert_eq!(checks.failures_in_row(Kind::Service), 0);
    }

    /// The API server checks' period grows with the fleet (the fleet's new TLS connections
    /// per second bounded), between the interval and the window.
    #[test]
    fn the_api_server_checks_are_spaced_by_the_fleets_size() {
        let s = Duration::from_secs;
        let p = |nodes| apiserver_period(nodes, s(5), s(60));
        assert_eq!(p(4), s(5), "a small cluster: every round");
        assert_eq!(p(125), s(5));
        assert_eq!(p(1000), s(40), "1,000 nodes: 25 runs per second fleet-wide");
        assert_eq!(p(5000), s(60), "capped at the window");
        assert_eq!(
            apiserver_period(4, s(1), s(8)),
            s(1),
            "the lab: every round"
        );
    }

    /// A check with a period runs once per period (a quarter early allowed), the others every
    /// round; a check without a target never.
    #[test]
    fn a_check_with_a_period_is_due_once_per_period() {
        let http: Arc<dyn Prober> = Arc::new(crate::probe::http::HttpProber::new());
        let addr: SocketAddr = "192.0.2.1:9464".parse().unwrap();
        let checks = Checks::new(vec![Check::service(addr, http)], Duration::from_secs(10))
            .with_pending(Kind::Dns);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let every_20s = |k: Kind| if k == Kind::Service { s(20) } else { s(0) };
        assert_eq!(checks.due(t0, every_20s), vec![0], "the first round");
        assert!(checks.due(t0 + s(5), every_20s).is_empty());
        assert!(checks.due(t0 + s(14), every_20s).is_empty());
        assert_eq!(
            checks.due(t0 + s(15), every_20s),
            vec![0],
            "a quarter early"
        );
        assert!(checks.due(t0 + s(20), every_20s).is_empty());
        assert_eq!(
            checks.due(t0 + s(20), |_| s(0)),
            vec![0],
            "no period: every round"
        );
    }

    /// A window per check: failures counted in a row, the last error kept with its kind and
    /// bounded detail, the answer count of the last success, `up` from the last run.
    #[test]
    fn the_window_and_the_reports_follow_the_outcomes() {
        let http: Arc<dyn Prober> = Arc::new(crate::probe::http::HttpProber::new());
        let addr: SocketAddr = "192.0.2.1:9464".parse().unwrap();
        let checks = Checks::new(vec![Check::service(addr, http)], Duration::from_secs(10));
        assert!(checks.up().is_empty(), "nothing before the first run");
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        checks.record(0, t0, Outcome::ok(ms(2)));
        let long = "x".repeat(1000);
        checks.record(
            0,
            t0 + ms(100),
            Outcome::failed("refused", ms(1), Some(ErrorClass::Refused), long),
        );
        checks.record(
            0,
            t0 + ms(200),
            Outcome::failed("timeout", ms(500), None, ""),
        );
        let r = &checks.reports(t0 + ms(300))["service"];
        assert_eq!(r.target, "192.0.2.1:9464");
        assert_eq!(
            (r.reachable, r.consecutive_failures, r.probes, r.successes),
            (Some(false), 2, 3, 1)
        );
        assert_eq!(r.last_result, Some("timeout"));
        let e = r.last_error.as_ref().unwrap();
        assert_eq!(e.kind, "timeout");
        assert_eq!(
            checks.up(),
            vec![("service", "192.0.2.1:9464".into(), false)]
        );
        checks.record(0, t0 + ms(300), Outcome::ok(ms(3)));
        assert_eq!(
            checks.up(),
            vec![("service", "192.0.2.1:9464".into(), true)]
        );
        // Past the window the last error is gone.
        let later = &checks.reports(t0 + Duration::from_secs(11))["service"];
        assert_eq!(later.last_error, None);
        assert!(
            Outcome::failed("io", ms(1), None, "é".repeat(200))
                .detail
                .len()
                <= MAX_DETAIL
        );
    }
}
