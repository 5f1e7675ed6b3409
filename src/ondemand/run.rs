//! Run a plan's checks here, now, with the agent's own probers (ICMP through its pinger), and
//! the path-MTU search with a Don't-Fragment prober. Every check is bounded by the probe
//! timeout (the MTU search by [`MTU_BUDGET`]: rounds of concurrent probes, see
//! [`crate::mtu::OnDemandSearch`]); the checks of one request run concurrently.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::request::{CheckSpec, ContextCheck, Plan, CONTEXT_ECHOES};
use super::wire::{CheckOutcome, SourceLine};
use crate::checks::dns::DnsCheck;
use crate::diagnosis::ErrorInfo;
use crate::model::{Check, Family, IpFamilies, ProbeResult};
use crate::mtu::{MtuState, OnDemandParams, OnDemandSearch};
use crate::probe::pmtu::{local_mtu, PmtuProber};
use crate::probe::Probers;

/// Longest a path-MTU check may take.
pub const MTU_BUDGET: Duration = Duration::from_secs(10);
/// The per-try timeout of a path-MTU check: the agent's probe timeout, at most this (an echo
/// inside a cluster comes back in milliseconds; a longer wait only costs rounds).
pub const MTU_PER_TRY_MAX: Duration = Duration::from_secs(1);
/// The spacing of a round's sends.
const MTU_SEND_GAP: Duration = Duration::from_millis(1);
/// The most probes one round sends with the defaults (7 sizes × 3 tries).
const MTU_MAX_ROUND_PROBES: u32 = 21;
/// Budget kept back from the rounds (the last round's stragglers, spawning, the answer).
const MTU_MARGIN: Duration = Duration::from_millis(500);

/// What a source needs to run checks.
#[derive(Clone)]
pub struct Runner {
    pub probers: Probers,
    /// `None` without CAP_NET_RAW: the `mtu` check then says so.
    pub pmtu: Option<Arc<PmtuProber>>,
    pub timeout: Duration,
    /// `--ip-family`: the record type a `dns` check asks (AAAA for IPv6, else A).
    pub ip_family: IpFamilies,
    /// Called once per check started (the probes-sent counter), with the check's name.
    pub on_probe: Arc<dyn Fn(&'static str) + Send + Sync>,
}

/// The longest [`run_local`] can take for `plan`.
pub fn local_deadline(plan: &Plan, timeout: Duration) -> Duration {
    let grace = timeout + Duration::from_millis(250);
    if plan.checks.iter().any(|c| matches!(c, CheckSpec::Mtu)) {
        MTU_BUDGET.max(grace) + Duration::from_millis(500)
    } else {
        grace + Duration::from_millis(500)
    }
}

fn median(v: &mut [Duration]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    Some(v[v.len() / 2].as_secs_f64())
}

/// A prober result as an outcome.
pub fn outcome_of(
    check: &str,
    layer: Option<&str>,
    ip: IpAddr,
    port: Option<u16>,
    r: &ProbeResult,
) -> CheckOutcome {
    let mut rtts = r.rtts.clone();
    let ok = r.success();
    CheckOutcome {
        check: check.to_string(),
        layer: layer.map(str::to_string),
        ip,
        port,
        path: None,
        ok,
        sent: u32::from(r.sent),
        received: u32::from(r.received.min(r.sent)),
        rtt_seconds: median(&mut rtts),
        loss_ratio: (r.sent > 0)
            .then(|| f64::from(r.sent.saturating_sub(r.received)) / f64::from(r.sent)),
        path_mtu: None,
        expected_mtu: None,
        mtu_state: None,
        error: r.error.as_ref().map(ErrorInfo::from),
        error_text: r.error.as_ref().map(|e| e.to_string()),
        result: None,
        answers: None,
        record_type: None,
        family: None,
    }
}

/// The `dns` results that mean a server answered (an rcode, or records): the query got there.
const DNS_ANSWERED: [&str; 6] = [
    "ok",
    "nxdomain",
    "no_answer",
    "servfail",
    "refused",
    "rcode_other",
];

/// One query for `name` through `server` (or this agent's resolver), with the agent's own
/// `dns` check ([`DnsCheck`]): no cache, one attempt, the whole bounded by `timeout`.
async fn dns_check(
    name: &str,
    server: Option<SocketAddr>,
    families: IpFamilies,
    timeout: Duration,
) -> CheckOutcome {
    let check = DnsCheck::new(name, server, families, timeout);
    let o = check.run(timeout).await;
    let answered = DNS_ANSWERED.contains(&o.result);
    let ok = o.result == "ok";
    CheckOutcome {
        check: "dns".into(),
        layer: None,
        ip: server.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
        port: server.map(|a| a.port()),
        path: None,
        ok,
        sent: 1,
        received: u32::from(answered),
        rtt_seconds: Some(o.duration.as_secs_f64()),
        loss_ratio: Some(if answered { 0.0 } else { 1.0 }),
        path_mtu: None,
        expected_mtu: None,
        mtu_state: None,
        error: (!ok).then(|| ErrorInfo {
            kind: o.result.to_string(),
            ..ErrorInfo::default()
        }),
        error_text: (!ok).then(|| {
            if o.detail.is_empty() {
                o.result.to_string()
            } else {
                format!("{}: {}", o.result, o.detail)
            }
        }),
        result: Some(o.result.to_string()),
        answers: o.answers,
        record_type: Some(check.record_type().to_string()),
        family: None,
    }
}

async fn mtu_check(prober: Option<Arc<PmtuProber>>, ip: IpAddr, timeout: Duration) -> CheckOutcome {
    let mut out = CheckOutcome {
        check: "mtu".into(),
        layer: None,
        ip,
        port: None,
        path: None,
        ok: false,
        sent: 0,
        received: 0,
        rtt_seconds: None,
        loss_ratio: None,
        path_mtu: None,
        expected_mtu: None,
        mtu_state: None,
        error: None,
        error_text: None,
        result: None,
        answers: None,
        record_type: None,
        family: None,
    };
    let Some(prober) = prober else {
        let e = crate::model::ErrorClass::LocalError {
            detail: "path-MTU checks need a raw ICMP socket (CAP_NET_RAW) on this agent".into(),
        };
        out.error = Some(ErrorInfo::from(&e));
        out.error_text = Some(e.to_string());
        return out;
    };
    let expected = local_mtu(ip)
        .ok()
        .and_then(|l| l.expected())
        .unwrap_or(1500);
    // Every try of a round is sent at once, so a round lasts one per-try timeout at most; the
    // rounds that fit the budget (less a margin for the last round's stragglers) bound the
    // search.
    let per_try = timeout.clamp(Duration::from_millis(50), MTU_PER_TRY_MAX);
    let round_max = per_try + MTU_SEND_GAP * MTU_MAX_ROUND_PROBES;
    let rounds = OnDemandParams::rounds_within(MTU_BUDGET.saturating_sub(MTU_MARGIN), round_max);
    let mut search = OnDemandSearch::new(OnDemandParams::for_ip(ip, expected, rounds));
    let start = Instant::now();
    let stop = start + MTU_BUDGET;
    let mut last_error = None;
    let mut rtts = Vec::new();
    while let Some(round) = search.next_round() {
        let left = stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            search.give_up();
            break;
        }
        let t = per_try.min(left);
        let mut set = JoinSet::new();
        for (i, p) in round.into_iter().enumerate() {
            let prober = prober.clone();
            // Sends MTU_SEND_GAP apart: every raw ICMP socket receives a copy of every echo
            // reply, and a burst of large replies would overflow the sockets' receive buffers.
            let gap = MTU_SEND_GAP * u32::try_from(i).unwrap_or(u32::MAX);
            set.spawn(async move {
                tokio::time::sleep(gap).await;
                (p.size, prober.probe(ip, p.size, t).await)
            });
        }
        // The prober answers within `t`; the outer deadline only guards against a stuck task
        // (its probe then counts as lost).
        let guard = tokio::time::Instant::from_std(stop + Duration::from_millis(250));
        while let Ok(Some(done)) = tokio::time::timeout_at(guard, set.join_next()).await {
            let Ok((size, r)) = done else { continue };
            out.sent += 1;
            match r.outcome.error_class() {
                Some(e) => last_error = Some(e),
                None => {
                    out.received += 1;
                    rtts.extend(r.rtt);
                }
            }
            search.on_result(size, &r.outcome);
            if search.settled() {
                // The interface MTU passed: the rest of the round cannot change the answer.
                break;
            }
        }
        set.abort_all();
        search.end_round();
    }
    if !search.concluded() {
        search.give_up();
    }
    let report = search.report();
    out.path_mtu = report.path_mtu;
    out.expected_mtu = Some(report.expected_mtu);
    out.mtu_state = Some(report.state.as_str().to_string());
    out.rtt_seconds = median(&mut rtts);
    out.loss_ratio =
        (out.sent > 0).then(|| f64::from(out.sent - out.received) / f64::from(out.sent));
    out.ok = report.state == MtuState::Ok;
    if !out.ok {
        let e = last_error.unwrap_or(crate::model::ErrorClass::Timeout);
        out.error = Some(ErrorInfo::from(&e));
        out.error_text = Some(format!(
            "path MTU {} below the interface MTU {} ({}, {} rounds, {:.1}s): {}",
            report.path_mtu.map_or("?".into(), |m| m.to_string()),
            report.expected_mtu,
            report.state,
            search.rounds(),
            start.elapsed().as_secs_f64(),
            search.evidence()
        ));
    }
    out
}

/// Run `plan`'s checks and context checks from here. `node`/`zone`: this agent.
pub async fn run_local(
    plan: &Plan,
    runner: &Runner,
    node: &str,
    zone: Option<String>,
) -> SourceLine {
    let start = Instant::now();
    // Dual-stack: every check once per family, each outcome tagged with its family.
    let dual = plan.target.dual();
    let tag = move |ip: IpAddr| dual.then(|| Family::of(ip).as_str().to_string());
    let mut set: JoinSet<(usize, bool, CheckOutcome)> = JoinSet::new();
    let per_family = plan.checks.iter().enumerate();
    let jobs = plan
        .target
        .addrs()
        .into_iter()
        .flat_map(|ip| per_family.clone().map(move |(i, c)| (ip, i, c)));
    for (n, (ip, _, c)) in jobs.enumerate() {
        let r = runner.clone();
        let c = c.clone();
        (r.on_probe)(c.name());
        set.spawn(async move {
            let o = match &c {
                CheckSpec::Icmp { count, size } => {
                    let check = Check::Icmp {
                        ip,
                        count: *count,
                        size: *size,
                    };
                    outcome_of(
                        "icmp",
                        None,
                        ip,
                        None,
                        &r.probers.run(&check, r.timeout).await,
                    )
                }
                CheckSpec::Tcp { port } => {
                    let check = Check::Tcp {
                        addr: SocketAddr::new(ip, *port),
                    };
                    outcome_of(
                        "tcp",
                        None,
                        ip,
                        Some(*port),
                        &r.probers.run(&check, r.timeout).await,
                    )
                }
                CheckSpec::Http { port, path } => {
                    let check = Check::Http {
                        addr: SocketAddr::new(ip, *port),
                        path: path.clone(),
                        expect_node: None,
                    };
                    CheckOutcome {
                        path: Some(path.clone()),
                        ..outcome_of(
                            "http",
                            None,
                            ip,
                            Some(*port),
                            &r.probers.run(&check, r.timeout).await,
                        )
                    }
                }
                CheckSpec::Mtu => mtu_check(r.pmtu.clone(), ip, r.timeout).await,
                CheckSpec::Dns { name, server } => {
                    dns_check(name, *server, r.ip_family, r.timeout).await
                }
            };
            (
                n,
                false,
                CheckOutcome {
                    family: tag(ip),
                    ..o
                },
            )
        });
    }
    for (i, ContextCheck { layer, ip, .. }) in plan.context.iter().cloned().enumerate() {
        let r = runner.clone();
        (r.on_probe)("icmp");
        set.spawn(async move {
            let check = Check::Icmp {
                ip,
                count: CONTEXT_ECHOES,
                size: 56,
            };
            let res = r.probers.run(&check, r.timeout).await;
            let o = outcome_of("icmp", Some(layer.as_str()), ip, None, &res);
            (
                i,
                true,
                CheckOutcome {
                    family: tag(ip),
                    ..o
                },
            )
        });
    }
    let mut checks: Vec<(usize, CheckOutcome)> = Vec::new();
    let mut context: Vec<(usize, CheckOutcome)> = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok((i, is_context, o)) = done {
            if is_context {
                context.push((i, o));
            } else {
                checks.push((i, o));
            }
        }
    }
    checks.sort_by_key(|(i, _)| *i);
    context.sort_by_key(|(i, _)| *i);
    let checks: Vec<CheckOutcome> = checks.into_iter().map(|(_, o)| o).collect();
    SourceLine {
        node: node.to_string(),
        zone,
        answered: true,
        error: None,
        ok: !checks.is_empty() && checks.iter().all(|c| c.ok),
        elapsed_seconds: start.elapsed().as_secs_f64(),
        checks,
        context: context.into_iter().map(|(_, o)| o).collect(),
    }
}
