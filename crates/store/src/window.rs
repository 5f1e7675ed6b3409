//! Sliding-window statistics for one (destination, layer): pure, clock passed in.
//!
//! The window keeps the probes of the last `span` (bounded in count too) and answers: how many
//! probes and packets, the success and loss ratios, RTT quantiles, whether the last probe
//! succeeded, how many failed in a row, and the last classified error.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use meshprobe_core::model::{ErrorClass, Phases, ProbeResult};

/// Hard bounds per window, whatever the interval and span.
const MAX_PROBES: usize = 1024;
const MAX_RTTS: usize = 4096;
const MAX_ERRORS: usize = 256;

/// Times are kept as milliseconds since the window's `base` and RTTs as `f32` seconds (24
/// significant bits: 0.06 ppm), which makes a sample 12 bytes and an RTT 8 instead of 24 each:
/// at 1,000 peers the windows hold ~3,000 × (12 probes + 36 RTTs), and this alone saved ~3 MiB
/// of RSS (bench/agent.sh).
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Ms,
    sent: u16,
    received: u16,
    ok: bool,
}

/// Milliseconds since a window's base instant.
type Ms = u32;

/// Past this offset the base moves forward (every ~12 days of uptime), long before `u32` ends.
const REBASE_AFTER: Ms = 1 << 30;

#[derive(Debug, Clone)]
pub struct Window {
    span: Duration,
    base: Instant,
    probes: VecDeque<Sample>,
    rtts: VecDeque<(Ms, f32)>,
    consecutive_failures: u32,
    last_ok: Option<bool>,
    last_at: Option<Instant>,
    /// When the current failure streak's first failure was recorded (`None` after a success).
    failing_since: Option<Instant>,
    errors: VecDeque<(Ms, ErrorClass)>,
    last_phases: Option<Phases>,
}

/// How often one kind of error occurred in the window, and its latest instance. The latest
/// error alone can hide the evidence: routers rate-limit ICMP errors (1/s per destination by
/// default), so a "net unreachable from 198.19.1.1" is soon followed by plain timeouts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorCount {
    pub kind: &'static str,
    pub count: u32,
    pub last: ErrorClass,
    pub last_age_seconds: f64,
}

/// RTT quantiles in seconds (nearest-rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// What a window says at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    /// Whether the last probe succeeded; `None` before the first probe.
    pub reachable: Option<bool>,
    pub consecutive_failures: u32,
    pub probes: u32,
    pub successes: u32,
    pub sent: u32,
    pub received: u32,
    /// Successful probes ÷ probes in the window; `None` when the window is empty.
    pub success_ratio: Option<f64>,
    /// Lost packets ÷ sent packets in the window; `None` when nothing was sent.
    pub loss_ratio: Option<f64>,
    pub rtt_seconds: Option<Quantiles>,
    /// The last error seen inside the window.
    pub last_error: Option<ErrorClass>,
    pub last_error_age_seconds: Option<f64>,
    /// Every kind of error seen inside the window, most frequent first.
    pub errors: Vec<ErrorCount>,
    pub last_probe_age_seconds: Option<f64>,
    /// Age of the current failure streak's first failure (`None` when the last probe
    /// succeeded): a success on another path probed more recently than this contradicts the
    /// failure; one probed before it says nothing about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_for_seconds: Option<f64>,
    /// Per-phase timings of the last TCP/HTTP probe.
    pub last_phases: Option<PhasesSeconds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhasesSeconds {
    pub resolve: f64,
    pub connect: f64,
    pub first_byte: Option<f64>,
    pub total: f64,
}

impl From<Phases> for PhasesSeconds {
    fn from(p: Phases) -> Self {
        PhasesSeconds {
            resolve: p.resolve.as_secs_f64(),
            connect: p.connect.as_secs_f64(),
            first_byte: p.first_byte.map(|d| d.as_secs_f64()),
            total: p.total.as_secs_f64(),
        }
    }
}

impl WindowStats {
    /// Whether anything failed in the window (a lost packet, a failed probe, an error).
    pub fn has_failures(&self) -> bool {
        self.reachable == Some(false)
            || self.successes < self.probes
            || self.received < self.sent
            || self.last_error.is_some()
    }
}

impl Window {
    /// Failed probes since the last success (0 after a success).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn new(span: Duration) -> Self {
        Window {
            span,
            base: Instant::now(),
            probes: VecDeque::new(),
            rtts: VecDeque::new(),
            consecutive_failures: 0,
            last_ok: None,
            last_at: None,
            failing_since: None,
            errors: VecDeque::new(),
            last_phases: None,
        }
    }

    /// `t` as milliseconds since the base (instants before the base count as the base).
    fn ms(&self, t: Instant) -> Ms {
        let ms = t.saturating_duration_since(self.base).as_millis();
        Ms::try_from(ms).unwrap_or(Ms::MAX)
    }

    fn instant(&self, ms: Ms) -> Instant {
        self.base + Duration::from_millis(u64::from(ms))
    }

    /// Move the base forward so offsets stay far from `u32::MAX`. Entries older than the new
    /// base (only possible with a window longer than ~12 days) are clamped to it.
    fn rebase(&mut self, at: Instant) {
        if self.ms(at) < REBASE_AFTER {
            return;
        }
        let shift = self.ms(at) - REBASE_AFTER / 2;
        self.base += Duration::from_millis(u64::from(shift));
        for s in &mut self.probes {
            s.at = s.at.saturating_sub(shift);
        }
        for r in &mut self.rtts {
            r.0 = r.0.saturating_sub(shift);
        }
        for e in &mut self.errors {
            e.0 = e.0.saturating_sub(shift);
        }
    }

    /// Add one probe's result, observed at `at`.
    pub fn record(&mut self, at: Instant, result: &ProbeResult) {
        if self.probes.is_empty() && self.rtts.is_empty() && self.errors.is_empty() {
            self.base = at; // offsets count from the first entry
        }
        self.rebase(at);
        let ok = result.success();
        let ms = self.ms(at);
        self.probes.push_back(Sample {
            at: ms,
            ok,
            sent: result.sent,
            received: result.received,
        });
        for rtt in &result.rtts {
            self.rtts.push_back((ms, rtt.as_secs_f32()));
        }
        self.consecutive_failures = if ok {
            0
        } else {
            self.consecutive_failures.saturating_add(1)
        };
        self.failing_since = match (ok, self.failing_since) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(at),
        };
        self.last_ok = Some(ok);
        self.last_at = Some(at);
        if let Some(e) = &result.error {
            self.errors.push_back((ms, e.clone()));
        }
        if result.phases.is_some() {
            self.last_phases = result.phases;
        }
        self.prune(at);
    }

    /// Drop what fell out of the window (by age or count).
    pub fn prune(&mut self, now: Instant) {
        let horizon = self.horizon(now);
        let old = |t: Ms| horizon.is_some_and(|h| t < h);
        while self.probes.front().is_some_and(|s| old(s.at)) || self.probes.len() > MAX_PROBES {
            self.probes.pop_front();
        }
        while self.rtts.front().is_some_and(|(t, _)| old(*t)) || self.rtts.len() > MAX_RTTS {
            self.rtts.pop_front();
        }
        while self.errors.front().is_some_and(|(t, _)| old(*t)) || self.errors.len() > MAX_ERRORS {
            self.errors.pop_front();
        }
    }

    /// The oldest offset inside the window at `now`; `None` when the window reaches back past
    /// the base (everything is inside).
    fn horizon(&self, now: Instant) -> Option<Ms> {
        now.checked_sub(self.span)
            .filter(|h| *h > self.base)
            .map(|h| self.ms(h))
    }

    pub fn stats(&self, now: Instant) -> WindowStats {
        let horizon = self.horizon(now);
        let inside = |t: Ms| horizon.is_none_or(|h| t >= h);
        let (mut probes, mut successes, mut sent, mut received) = (0u32, 0u32, 0u32, 0u32);
        for s in self.probes.iter().filter(|s| inside(s.at)) {
            probes += 1;
            successes += u32::from(s.ok);
            sent += u32::from(s.sent);
            received += u32::from(s.received.min(s.sent));
        }
        let mut rtts: Vec<f64> = self
            .rtts
            .iter()
            .filter(|(t, _)| inside(*t))
            .map(|(_, r)| f64::from(*r))
            .collect();
        let in_window = || self.errors.iter().filter(|(t, _)| inside(*t));
        let last_error = in_window().next_back();
        let mut errors: Vec<ErrorCount> = Vec::new();
        for (t, e) in in_window() {
            match errors.iter_mut().find(|c| c.kind == e.label()) {
                Some(c) => {
                    c.count += 1;
                    c.last = e.clone();
                    c.last_age_seconds = age(now, self.instant(*t));
                }
                None => errors.push(ErrorCount {
                    kind: e.label(),
                    count: 1,
                    last: e.clone(),
                    last_age_seconds: age(now, self.instant(*t)),
                }),
            }
        }
        errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(b.kind)));
        WindowStats {
            reachable: self.last_ok,
            consecutive_failures: self.consecutive_failures,
            probes,
            successes,
            sent,
            received,
            success_ratio: (probes > 0).then(|| f64::from(successes) / f64::from(probes)),
            loss_ratio: (sent > 0).then(|| f64::from(sent - received) / f64::from(sent)),
            rtt_seconds: quantiles(&mut rtts),
            last_error: last_error.map(|(_, e)| e.clone()),
            last_error_age_seconds: last_error.map(|(t, _)| age(now, self.instant(*t))),
            errors,
            last_probe_age_seconds: self.last_at.map(|t| age(now, t)),
            failing_for_seconds: self
                .failing_since
                .filter(|_| self.last_ok == Some(false))
                .map(|t| age(now, t)),
            last_phases: self.last_phases.map(PhasesSeconds::from),
        }
    }
}

fn age(now: Instant, then: Instant) -> f64 {
    now.saturating_duration_since(then).as_secs_f64()
}

/// Nearest-rank quantiles of `values` (sorted in place); `None` when empty.
pub fn quantiles(values: &mut [f64]) -> Option<Quantiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let n = values.len();
        let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        values[idx]
    };
    Some(Quantiles {
        p50: rank(0.5),
        p90: rank(0.9),
        p99: rank(0.99),
        max: values[values.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn icmp(sent: u16, rtts: &[u64], error: Option<ErrorClass>) -> ProbeResult {
        ProbeResult {
            sent,
            received: rtts.len() as u16,
            rtts: rtts.iter().map(|r| ms(*r)).collect(),
            phases: None,
            error,
        }
    }

    #[test]
    fn empty_window_says_nothing() {
        let w = Window::new(ms(60_000));
        let s = w.stats(Instant::now());
        assert_eq!(s.reachable, None);
        assert_eq!(s.success_ratio, None);
        assert_eq!(s.loss_ratio, None);
        assert_eq!(s.rtt_seconds, None);
        assert!(!s.has_failures());
    }

    #[test]
    fn loss_and_success_are_different_figures() {
        // Three echoes per probe: one probe loses one echo (success, 1/3 loss), one loses all.
        let t0 = Instant::now();
        let mut w = Window::new(ms(60_000));
        w.record(t0, &icmp(3, &[1, 2, 3], None));
        w.record(t0 + ms(1000), &icmp(3, &[4, 5], Some(ErrorClass::Timeout)));
        w.record(t0 + ms(2000), &icmp(3, &[], Some(ErrorClass::Timeout)));
        let s = w.stats(t0 + ms(2000));
        assert_eq!((s.probes, s.successes, s.sent, s.received), (3, 2, 9, 5));
        assert!((s.success_ratio.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.loss_ratio.unwrap() - 4.0 / 9.0).abs() < 1e-9);
        assert_eq!(s.reachable, Some(false));
        assert_eq!(s.consecutive_failures, 1);
        assert_eq!(s.last_error, Some(ErrorClass::Timeout));
        assert!(s.has_failures());
    }

    #[test]
    fn quantiles_nearest_rank() {
        type Case = (&'static [f64], (f64, f64, f64, f64));
        let table: &[Case] = &[
            (&[5.0], (5.0, 5.0, 5.0, 5.0)),
            (&[1.0, 2.0], (1.0, 2.0, 2.0, 2.0)),
            (&[4.0, 1.0, 3.0, 2.0], (2.0, 4.0, 4.0, 4.0)),
            (
                &[10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
                (5.0, 9.0, 10.0, 10.0),
            ),
        ];
        for (values, (p50, p90, p99, max)) in table {
            let mut v = values.to_vec();
            let q = quantiles(&mut v).unwrap();
            assert_eq!(
                (q.p50, q.p90, q.p99, q.max),
                (*p50, *p90, *p99, *max),
                "{values:?}"
            );
        }
        assert!(quantiles(&mut []).is_none());
    }

    #[test]
    fn old_samples_leave_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(ms(10_000));
        w.record(t0, &icmp(1, &[], Some(ErrorClass::Refused)));
        for i in 1..=5 {
            w.record(t0 + ms(i * 1000), &icmp(1, &[1], None));
        }
        let s = w.stats(t0 + ms(5000));
        assert_eq!((s.probes, s.successes), (6, 5));
        assert_eq!(s.last_error, Some(ErrorClass::Refused));
        // 10.5 s after the failure it is gone, error included; the last five remain.
        let s = w.stats(t0 + ms(10_500));
        assert_eq!((s.probes, s.successes), (5, 5));
        assert_eq!(s.last_error, None);
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.reachable, Some(true));
        assert!(!s.has_failures());
        assert!((s.last_probe_age_seconds.unwrap() - 5.5).abs() < 1e-9);
    }

    #[test]
    fn failures_in_a_row_reset_on_success() {
        let t0 = Instant::now();
        let mut w = Window::new(ms(60_000));
        for i in 0..3 {
            w.record(t0 + ms(i), &icmp(1, &[], Some(ErrorClass::Timeout)));
        }
        assert_eq!(w.stats(t0).consecutive_failures, 3);
        w.record(t0 + ms(5), &icmp(1, &[1], None));
        let s = w.stats(t0 + ms(5));
        assert_eq!(s.consecutive_failures, 0);
        // The error stays as evidence while it is inside the window.
        assert_eq!(s.last_error, Some(ErrorClass::Timeout));
    }

    #[test]
    fn failing_for_is_the_age_of_the_streaks_first_failure() {
        let t0 = Instant::now();
        let mut w = Window::new(ms(60_000));
        w.record(t0, &icmp(1, &[1], None));
        assert_eq!(w.stats(t0 + ms(300)).failing_for_seconds, None);
        w.record(t0 + ms(1000), &icmp(1, &[], Some(ErrorClass::Timeout)));
        w.record(t0 + ms(1500), &icmp(1, &[], Some(ErrorClass::Timeout)));
        w.record(t0 + ms(2500), &icmp(1, &[], Some(ErrorClass::Refused)));
        let s = w.stats(t0 + ms(3000));
        assert!((s.failing_for_seconds.unwrap() - 2.0).abs() < 1e-9);
        assert!((s.last_probe_age_seconds.unwrap() - 0.5).abs() < 1e-9);
        // A success ends the streak; the next failure starts a new one.
        w.record(t0 + ms(3500), &icmp(1, &[1], None));
        assert_eq!(w.stats(t0 + ms(3600)).failing_for_seconds, None);
        w.record(t0 + ms(4000), &icmp(1, &[], Some(ErrorClass::Timeout)));
        let s = w.stats(t0 + ms(4250));
        assert!((s.failing_for_seconds.unwrap() - 0.25).abs() < 1e-9);
        // Serialized only while failing.
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["failing_for_seconds"].as_f64().is_some());
        let json = serde_json::to_value(w.stats(t0)).unwrap();
        assert!(json["failing_for_seconds"].as_f64().is_some());
        w.record(t0 + ms(5000), &icmp(1, &[1], None));
        let json = serde_json::to_value(w.stats(t0 + ms(5000))).unwrap();
        assert!(json.get("failing_for_seconds").is_none());
    }

    #[test]
    fn a_precise_error_survives_later_timeouts_in_the_error_counts() {
        let t0 = Instant::now();
        let gw: std::net::IpAddr = "198.19.1.1".parse().unwrap();
        let unreachable = ErrorClass::NetUnreachable { from: Some(gw) };
        let mut w = Window::new(ms(10_000));
        w.record(t0, &icmp(3, &[], Some(unreachable.clone())));
        for i in 1..=4 {
            w.record(t0 + ms(i * 1000), &icmp(3, &[], Some(ErrorClass::Timeout)));
        }
        let s = w.stats(t0 + ms(4000));
        assert_eq!(s.last_error, Some(ErrorClass::Timeout));
        assert_eq!(s.errors.len(), 2);
        assert_eq!((s.errors[0].kind, s.errors[0].count), ("timeout", 4));
        assert_eq!(
            (s.errors[1].kind, s.errors[1].count),
            ("net_unreachable", 1)
        );
        assert_eq!(s.errors[1].last, unreachable);
        assert!((s.errors[1].last_age_seconds - 4.0).abs() < 1e-9);
        // Out of the window, it is gone.
        let s = w.stats(t0 + ms(10_500));
        assert_eq!(
            s.errors.iter().map(|c| c.kind).collect::<Vec<_>>(),
            ["timeout"]
        );
    }

    #[test]
    fn http_status_fails_a_probe_that_got_an_answer() {
        let t0 = Instant::now();
        let mut w = Window::new(ms(60_000));
        let mut r = ProbeResult::ok(ms(3), None);
        r.error = Some(ErrorClass::HttpStatus { code: 503 });
        w.record(t0, &r);
        let s = w.stats(t0);
        assert_eq!(s.reachable, Some(false));
        assert_eq!(s.successes, 0);
    }

    #[test]
    fn count_is_bounded() {
        let t0 = Instant::now();
        let mut w = Window::new(ms(3_600_000));
        for i in 0..(MAX_PROBES as u64 + 100) {
            w.record(t0 + ms(i), &icmp(3, &[1, 1, 1], None));
        }
        let s = w.stats(t0 + ms(MAX_PROBES as u64 + 100));
        assert_eq!(s.probes as usize, MAX_PROBES);
        assert!(w.rtts.len() <= MAX_RTTS);
    }

    #[test]
    fn weeks_of_uptime_keep_offsets_small_and_figures_exact() {
        // Offsets are u32 milliseconds from a base that moves forward; a window recording for
        // 60 days (past u32::MAX ms) must still see exactly its last minute.
        let t0 = Instant::now();
        let mut w = Window::new(ms(60_000));
        let day = 86_400_000u64;
        let mut t = t0;
        for d in 0..60 {
            t = t0 + ms(d * day);
            w.record(t, &icmp(1, &[7], None));
            w.record(t + ms(30_000), &icmp(1, &[], Some(ErrorClass::Timeout)));
        }
        assert!(w.probes.iter().all(|s| s.at < REBASE_AFTER + 60_000));
        let s = w.stats(t + ms(30_000));
        assert_eq!((s.probes, s.successes, s.sent, s.received), (2, 1, 2, 1));
        assert_eq!(s.rtt_seconds.map(|q| q.max as f32), Some(0.007));
        assert_eq!(s.last_error_age_seconds, Some(0.0));
        assert_eq!(s.errors[0].count, 1);
    }

    #[test]
    fn rtts_keep_their_precision_from_microseconds_to_seconds() {
        let t0 = Instant::now();
        for rtt in [
            Duration::from_nanos(23_417),
            Duration::from_micros(1_234),
            Duration::from_millis(987),
        ] {
            let mut w = Window::new(ms(60_000));
            w.record(
                t0,
                &ProbeResult {
                    sent: 1,
                    received: 1,
                    rtts: vec![rtt],
                    phases: None,
                    error: None,
                },
            );
            let p50 = w.stats(t0).rtt_seconds.unwrap().p50;
            let rel = (p50 - rtt.as_secs_f64()).abs() / rtt.as_secs_f64();
            assert!(rel < 1e-6, "{rtt:?} read back as {p50}");
        }
    }
}
