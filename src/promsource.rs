//! `meshprobe diagnose --prometheus URL`, the pure part: meshprobe's metrics, as instant
//! queries of the Prometheus HTTP API answer them, → the diagnosis engine's [`Inputs`] — the
//! same input `--agents` builds from `/api/v1/results`. The path for large clusters: one
//! Prometheus answers for every agent.
//!
//! The per-pair gauges already are sliding-window figures, so each query is a plain instant
//! selector ([`QUERIES`]) — but for the ages ([`AGES`]): an age is exported as of the scrape, and
//! is read as of the query (its value plus the time since the sample), so ages from agents
//! scraped at different moments compare as `--agents`' do (the onset rule compares a failure's
//! `failing_for_seconds` with other cells' last-probe ages), and `meshprobe_agent_info`, asked
//! for as the age of its sample: when each agent was last scraped, which dates the healthy
//! cells rebuilt from the plan (`unexported`). What the metrics cannot say: the
//! address that sent an ICMP error (labels carry no addresses; `reporter` says `source`,
//! `destination`, `peer`, `other` or `none` instead). A node that peers probe but whose agent
//! has no `meshprobe_agent_info` (not scraped, its series stale) is an unreachable agent:
//! evidence, not an error. I/O lives in [`crate::promclient`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::diagnosis::input::MtuReport;
use crate::diagnosis::{
    AgentReport, Diagnosis, ErrorCountInfo, ErrorInfo, Inputs, LayerStats, MtuState, PeerReport,
    TargetPlace, TargetReport,
};
use crate::mesh::Unanswered;

/// Agents: identity (`node`, `zone`) — its absence is "no meshprobe series". Asked for as the
/// age of its sample (see [`query_for`]): when each agent was last scraped.
pub const AGENT_INFO: &str = "meshprobe_agent_info";
pub const AGENT_READY: &str = "meshprobe_agent_ready";
pub const ROUNDS: &str = "meshprobe_rounds_total";
/// Agents' `--interval` and `--window` (absent from agents before 0.1's metrics had them:
/// then unknown, as before).
pub const INTERVAL: &str = "meshprobe_probe_interval_seconds";
pub const WINDOW: &str = "meshprobe_window_seconds";
pub const REACHABLE: &str = "meshprobe_pair_reachable";
pub const SUCCESS_RATIO: &str = "meshprobe_pair_success_ratio";
pub const LOSS_RATIO: &str = "meshprobe_pair_loss_ratio";
pub const CONSECUTIVE: &str = "meshprobe_pair_consecutive_failures";
pub const PROBES: &str = "meshprobe_pair_window_probes";
pub const SENT: &str = "meshprobe_pair_window_packets_sent";
pub const ERRORS: &str = "meshprobe_pair_window_errors";
pub const ERROR_AGE: &str = "meshprobe_pair_error_age_seconds";
/// Age of a pair's last probe, and of its failure streak's first failure (only while its last
/// probe failed); both absent from older agents: then unknown, and the onset rule does not
/// apply (as with `--agents` on older agents).
pub const LAST_PROBE_AGE: &str = "meshprobe_pair_last_probe_age_seconds";
pub const FAILING_FOR: &str = "meshprobe_pair_failing_for_seconds";
pub const MTU_STATE: &str = "meshprobe_pair_mtu_state";
pub const PATH_MTU: &str = "meshprobe_pair_path_mtu_bytes";
/// Targets → the node the agent's ownership map places them on (`dst_node`, empty when no
/// fact places them): one series per agent and target, the facts `diagnose --prometheus` reads
/// where `--agents` reads `/api/v1/results`' `owners`.
pub const TARGET_INFO: &str = "meshprobe_target_info";
/// A peer an agent probes this plan epoch (exported when healthy pairs have no series), and
/// the layers each agent probes (destinations by kind, layer and state): a planned pair, or a
/// target, with no series of its own was probed and had no failure in its window — a healthy
/// cell, not an unknown one.
pub const PLANNED: &str = "meshprobe_pair_planned";
pub const DESTINATIONS: &str = "meshprobe_destinations";
/// The per-source checks (`dns`, `service`): per agent, by `check` and `target`.
pub const CHECK_UP: &str = "meshprobe_check_up";
pub const CHECK_CONSECUTIVE: &str = "meshprobe_check_consecutive_failures";
pub const CHECK_SUCCESS_RATIO: &str = "meshprobe_check_success_ratio";

/// Every metric asked for, one instant query each (a selector, see [`query_for`]).
pub const QUERIES: [&str; 23] = [
    AGENT_INFO,
    AGENT_READY,
    ROUNDS,
    INTERVAL,
    WINDOW,
    REACHABLE,
    SUCCESS_RATIO,
    LOSS_RATIO,
    CONSECUTIVE,
    PROBES,
    SENT,
    ERRORS,
    ERROR_AGE,
    LAST_PROBE_AGE,
    FAILING_FOR,
    MTU_STATE,
    PATH_MTU,
    TARGET_INFO,
    PLANNED,
    DESTINATIONS,
    CHECK_UP,
    CHECK_CONSECUTIVE,
    CHECK_SUCCESS_RATIO,
];

/// The ages among [`QUERIES`]: asked for as of the query's evaluation time (see [`query_for`]).
pub const AGES: [&str; 3] = [ERROR_AGE, LAST_PROBE_AGE, FAILING_FOR];

/// Ceiling on the series one query may return (beyond it: an error naming the query).
pub const MAX_SERIES: usize = 2_000_000;

/// The PromQL for `metric`, scoped by optional extra label matchers (e.g. `cluster="prod"`).
/// An age ([`AGES`]) is the value as scraped plus the time since that sample, `time() -
/// timestamp(…)`: its age at the query's evaluation time (the answer's series lose
/// `__name__`, which nothing reads). [`AGENT_INFO`] (always 1) is asked for the age of its
/// sample, `time() - timestamp(…)`: how long ago its agent was scraped. [`DESTINATIONS`] is
/// asked for its non-zero series only.
pub fn query_for(metric: &str, matchers: Option<&str>) -> String {
    let selector = match matchers.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!("{metric}{{{m}}}"),
        None => metric.to_string(),
    };
    if metric == AGENT_INFO {
        format!("time() - timestamp({selector})")
    } else if AGES.contains(&metric) {
        format!("{selector} + (time() - timestamp({selector}))")
    } else if metric == DESTINATIONS {
        // Only the layers an agent probes are read (a non-zero count in some state): the
        // zeros are two thirds of the series (13 MB of 75,000 series at 5,000 agents).
        format!("{selector} > 0")
    } else {
        selector
    }
}

/// What the queries answered: metric → samples (a metric absent from the map was not asked).
pub type Answers = BTreeMap<&'static str, Vec<Sample>>;

/// The engine's input built from the answers, and what it rests on.
#[derive(Debug, Clone, Default)]
pub struct Built {
    pub inputs: Inputs,
    /// Agents with `meshprobe_agent_info`.
    pub answered: Vec<String>,
    /// Nodes probed by their peers whose agent has no series (evidence for the engine).
    pub unanswered: Vec<Unanswered>,
    /// What was odd in the data (skipped samples, duplicates), one line each.
    pub notes: Vec<String>,
}

/// `meshprobe_agent_info`'s own labels: the rest is its scrape target's identity, which the
/// agent's unlabelled gauges (ready, rounds, interval, window, destinations) carry alone.
const OWN_INFO_LABELS: [&str; 6] = [
    "__name__",
    "node",
    "zone",
    "version",
    "icmp_socket",
    "pmtu_socket",
];

/// A scrape target's identity: every label but the metric's own (`instance`, `job`, and what a
/// ServiceMonitor adds); used to join an agent's unlabelled gauges to its `agent_info`.
fn target_key(s: &Sample, own: &[&str]) -> Vec<(String, String)> {
    s.labels
        .iter()
        .filter(|(k, _)| !own.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A finite value in `lo..=hi`, else `None`.
fn finite(v: f64, lo: f64, hi: f64) -> Option<f64> {
    (v.is_finite() && v >= lo && v <= hi).then_some(v)
}

fn count(v: f64) -> Option<u32> {
    finite(v, 0.0, f64::from(u32::MAX)).map(|x| x.round() as u32)
}

/// The text standing in for an ICMP sender's address in the engine's input. `source` (and no
/// sender) read as the source's own stack — the engine's owner of a "net unreachable" is then
/// the source node, as it is when the address is the source's pod gateway.
fn reporter_text(reporter: &str, dst: &str) -> Option<String> {
    match reporter {
        "" | "none" | "source" => None,
        "destination" => Some(format!("an address of {dst} (from metrics)")),
        "peer" => Some("another node's address (from metrics)".into()),
        _ => Some("a router outside the peer set (from metrics)".into()),
    }
}

/// src_node, dst_kind, dst, layer, family (empty: an agent from before families were kept).
type CellKey = (String, String, String, String, String);

#[derive(Default)]
struct CellAcc {
    dst_zone: Option<String>,
    reachable: Option<bool>,
    success_ratio: Option<f64>,
    loss_ratio: Option<f64>,
    consecutive: Option<u32>,
    probes: Option<u32>,
    sent: Option<u32>,
    errors: BTreeMap<String, (u32, Option<f64>, String)>, // kind → (count, age, reporter)
    last_probe_age: Option<f64>,
    failing_for: Option<f64>,
    mtu_state: Option<MtuState>,
    path_mtu: Option<u32>,
}

impl CellAcc {
    fn stats(&self, dst: &str) -> LayerStats {
        let probes = self.probes.unwrap_or(0);
        let sent = self.sent.unwrap_or(0);
        let ratio_of =
            |r: Option<f64>, n: u32| r.map(|r| ((r * f64::from(n)).round() as u32).min(n));
        let successes = ratio_of(self.success_ratio, probes).unwrap_or_else(|| {
            if self.consecutive.unwrap_or(0) > 0 {
                0
            } else {
                probes
            }
        });
        let lost = ratio_of(self.loss_ratio, sent).unwrap_or(0);
        let errors: Vec<ErrorCountInfo> = self
            .errors
            .iter()
            .map(|(kind, (count, age, reporter))| ErrorCountInfo {
                kind: kind.clone(),
                count: *count,
                last: Some(ErrorInfo {
                    kind: kind.clone(),
                    from: reporter_text(reporter, dst),
                    ..ErrorInfo::default()
                }),
                last_age_seconds: *age,
            })
            .collect();
        // The last error: the kind whose latest instance is the youngest.
        let last = errors
            .iter()
            .filter(|e| e.last_age_seconds.is_some())
            .min_by(|a, b| {
                a.last_age_seconds
                    .unwrap_or(0.0)
                    .total_cmp(&b.last_age_seconds.unwrap_or(0.0))
            })
            .or_else(|| errors.iter().max_by_key(|e| e.count));
        LayerStats {
            reachable: self.reachable,
            consecutive_failures: self.consecutive.unwrap_or(0),
            probes,
            successes,
            sent,
            received: sent - lost,
            success_ratio: self.success_ratio,
            loss_ratio: self.loss_ratio,
            last_error: last.and_then(|e| e.last.clone()),
            last_error_age_seconds: last.and_then(|e| e.last_age_seconds),
            last_probe_age_seconds: self.last_probe_age,
            failing_for_seconds: self.failing_for.filter(|_| self.reachable == Some(false)),
            errors,
            ..LayerStats::default()
        }
    }
}

/// Build the engine's input from the answers. `Err` when there is nothing to diagnose: no
/// `meshprobe_agent_info` at all (the message names the query).
/// Sets one per-agent figure from a sample's value.
type SetAgent = fn(&mut AgentReport, f64);

pub fn build(answers: &Answers, matchers: Option<&str>) -> Result<Built, String> {
    let empty = Vec::new();
    let get = |m: &str| answers.get(m).unwrap_or(&empty);
    let mut notes = Vec::new();

    // Agents.
    let mut agents: BTreeMap<String, AgentReport> = BTreeMap::new();
    let mut by_target: HashMap<Vec<(String, String)>, String> = HashMap::new();
    // Agent → seconds since its last scrape.
    let mut scraped: HashMap<String, f64> = HashMap::new();
    for s in get(AGENT_INFO) {
        let node = s.label("node");
        if node.is_empty() {
            notes.push(format!(
                "{AGENT_INFO}: a series without a node label was skipped"
            ));
            continue;
        }
        if let Some(age) = finite(s.value, 0.0, 1e9) {
            scraped.insert(node.to_string(), age);
        }
        by_target.insert(target_key(s, &OWN_INFO_LABELS), node.to_string());
        let a = agents
            .entry(node.to_string())
            .or_insert_with(|| AgentReport {
                node: node.to_string(),
                ..AgentReport::default()
            });
        let zone = s.label("zone");
        if a.zone.is_none() && !zone.is_empty() {
            a.zone = Some(zone.to_string());
        }
    }
    if agents.is_empty() {
        return Err(format!(
            "no meshprobe series: query `{}` returned nothing (are the agents scraped by this Prometheus?)",
            query_for(AGENT_INFO, matchers)
        ));
    }
    // Per-agent gauges, matched to their agent by scrape target.
    let per_agent: [(&str, SetAgent); 4] = [
        (AGENT_READY, |a, v| {
            a.ready = finite(v, 0.0, 1.0).map(|v| v >= 0.5)
        }),
        (ROUNDS, |a, v| {
            a.rounds = finite(v, 0.0, 1e15).map(|v| v as u64)
        }),
        (INTERVAL, |a, v| {
            a.interval_seconds = finite(v, 0.001, 86_400.0)
        }),
        (WINDOW, |a, v| {
            a.window_seconds = finite(v, 0.001, 86_400.0 * 7.0)
        }),
    ];
    for (metric, set) in per_agent {
        for s in get(metric) {
            if let Some(a) = by_target
                .get(&target_key(s, &["__name__"]))
                .and_then(|n| agents.get_mut(n))
            {
                set(a, s.value);
            }
        }
    }

    checks::read(&mut agents, &get, &mut notes);

    // Cells.
    let mut cells: BTreeMap<CellKey, CellAcc> = BTreeMap::new();
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut duplicates: BTreeSet<&str> = BTreeSet::new();
    for metric in [
        REACHABLE,
        SUCCESS_RATIO,
        LOSS_RATIO,
        CONSECUTIVE,
        PROBES,
        SENT,
        ERRORS,
        ERROR_AGE,
        LAST_PROBE_AGE,
        FAILING_FOR,
        MTU_STATE,
        PATH_MTU,
    ] {
        for s in get(metric) {
            let key = (
                s.label("src_node").to_string(),
                s.label("dst_kind").to_string(),
                s.label("dst").to_string(),
                s.label("layer").to_string(),
                s.label("family").to_string(),
            );
            if key.0.is_empty()
                || key.2.is_empty()
                || key.3.is_empty()
                || !matches!(key.1.as_str(), "peer" | "target")
            {
                *skipped.entry(metric).or_default() += 1;
                continue;
            }
            let v = s.value;
            let c = cells.entry(key).or_default();
            if c.dst_zone.is_none() && !s.label("dst_zone").is_empty() {
                c.dst_zone = Some(s.label("dst_zone").to_string());
            }
            let ok = match metric {
                REACHABLE => set(&mut c.reachable, finite(v, 0.0, 1.0).map(|x| x >= 0.5)),
                SUCCESS_RATIO => set(&mut c.success_ratio, finite(v, 0.0, 1.0)),
                LOSS_RATIO => set(&mut c.loss_ratio, finite(v, 0.0, 1.0)),
                CONSECUTIVE => set(&mut c.consecutive, count(v)),
                PROBES => set(&mut c.probes, count(v)),
                SENT => set(&mut c.sent, count(v)),
                PATH_MTU => set(&mut c.path_mtu, count(v)),
                LAST_PROBE_AGE => set(&mut c.last_probe_age, finite(v, 0.0, 1e9)),
                FAILING_FOR => set(&mut c.failing_for, finite(v, 0.0, 1e9)),
                MTU_STATE => {
                    let st: MtuState =
                        serde_json::from_value(serde_json::Value::from(s.label("state")))
                            .unwrap_or(MtuState::Unknown);
                    set(&mut c.mtu_state, (v == 1.0).then_some(st))
                }
                ERRORS | ERROR_AGE => {
                    let kind = s.label("kind");
                    if kind.is_empty() {
                        Some(false)
                    } else {
                        let e = c
                            .errors
                            .entry(kind.to_string())
                            .or_insert_with(|| (0, None, s.label("reporter").to_string()));
                        if metric == ERRORS {
                            count(v).map(|n| {
                                e.0 = e.0.saturating_add(n);
                                true
                            })
                        } else {
                            finite(v, 0.0, 1e9).map(|age| {
                                e.1 = Some(e.1.map_or(age, |a: f64| a.min(age)));
                                true
                            })
                        }
                    }
                }
                _ => Some(true),
            };
            match ok {
                Some(true) => {}
                Some(false) => {
                    duplicates.insert(metric);
                }
                None => *skipped.entry(metric).or_default() += 1,
            }
        }
    }
    for (metric, n) in &skipped {
        notes.push(format!(
            "{metric}: {n} series skipped (missing labels, or a NaN/Inf/out-of-range value)"
        ));
    }
    for metric in &duplicates {
        notes.push(format!(
            "{metric}: the same pair came more than once (scraped by two jobs?); the first was used"
        ));
    }
    unexported::fill(
        answers, &agents, &by_target, &scraped, &mut cells, &mut notes,
    );
    let without_probes = cells.values().filter(|c| c.probes.is_none()).count();
    if without_probes > 0 {
        notes.push(format!(
            "{without_probes} (source, destination, layer) cells have no {PROBES} (an older agent?): they count as unknown"
        ));
    }

    // Reports: one per agent with series of its own; cells of sources without agent_info too
    // (their identity series can lag a scrape behind).
    // A destination seen at two families: IPv4's figures on top (as agents serve them when
    // IPv4 is the primary), the other's under `families`; the engine splits them again.
    let mut fams: BTreeMap<(&str, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    for (src, kind, dst, _, family) in cells.keys() {
        if !family.is_empty() {
            fams.entry((src, kind, dst)).or_default().insert(family);
        }
    }
    let top = |src: &str, kind: &str, dst: &str| -> Option<&str> {
        let f = fams.get(&(src, kind, dst))?;
        (f.len() > 1).then(|| {
            if f.contains("ipv4") {
                "ipv4"
            } else {
                f.first().copied().unwrap_or_default()
            }
        })
    };
    for ((src, kind, dst, layer, family), c) in &cells {
        let top = top(src, kind, dst);
        // `Some(f)`: this cell belongs under `families[f]`.
        let aside = top.and_then(|t| (!family.is_empty() && family != t).then_some(family));
        let a = agents.entry(src.clone()).or_insert_with(|| AgentReport {
            node: src.clone(),
            ..AgentReport::default()
        });
        let stats = c.stats(dst);
        let mtu = c.mtu_state.map(|st| {
            (
                layer.clone(),
                MtuReport {
                    path_mtu: c.path_mtu,
                    state: Some(st),
                },
            )
        });
        if kind == "peer" {
            let p = match a.peers.iter().position(|p| &p.node == dst) {
                Some(i) => &mut a.peers[i],
                None => {
                    a.peers.push(PeerReport {
                        node: dst.clone(),
                        zone: c.dst_zone.clone(),
                        ..PeerReport::default()
                    });
                    a.peers.last_mut().expect("just pushed")
                }
            };
            p.family = top.map(str::to_string);
            match aside {
                Some(f) => {
                    let e = p.families.entry(f.clone()).or_default();
                    e.layers.insert(layer.clone(), stats);
                    e.mtu.extend(mtu);
                }
                None => {
                    p.layers.insert(layer.clone(), stats);
                    p.mtu.extend(mtu);
                }
            }
        } else {
            let t = match a.targets.iter().position(|t| &t.name == dst) {
                Some(i) => &mut a.targets[i],
                None => {
                    a.targets.push(TargetReport {
                        name: dst.clone(),
                        ..TargetReport::default()
                    });
                    a.targets.last_mut().expect("just pushed")
                }
            };
            t.family = top.map(str::to_string);
            match aside {
                Some(f) => {
                    let e = t.families.entry(f.clone()).or_default();
                    e.layers.insert(layer.clone(), stats);
                    e.mtu.extend(mtu);
                }
                None => {
                    t.layers.insert(layer.clone(), stats);
                    t.mtu.extend(mtu);
                }
            }
        }
    }
    let answered: Vec<String> = get(AGENT_INFO)
        .iter()
        .map(|s| s.label("node").to_string())
        .filter(|n| !n.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let probed: BTreeSet<&String> = cells
        .keys()
        .filter(|k| k.1 == "peer")
        .map(|k| &k.2)
        .collect();
    let unanswered: Vec<Unanswered> = probed
        .into_iter()
        .filter(|n| !answered.contains(n))
        .map(|n| Unanswered {
            node: n.clone(),
            error: format!(
                "no {AGENT_INFO} series in Prometheus: its agent is not scraped (down, cut off, or not running)"
            ),
        })
        .collect();
    // Where the targets run, as each agent's ownership map placed them (`dst_node` empty:
    // unknown): the same fact `/api/v1/results` publishes, so `--agents` and this path place
    // every target alike. The first answer per target wins (agents share one peer set).
    let mut places: BTreeMap<String, TargetPlace> = BTreeMap::new();
    for s in get(TARGET_INFO) {
        let (t, n) = (s.label("dst"), s.label("dst_node"));
        if !t.is_empty() && !n.is_empty() {
            places.entry(t.to_string()).or_insert_with(|| TargetPlace {
                ips: Vec::new(),
                name: t.to_string(),
                ip: None,
                node: Some(n.to_string()),
            });
        }
    }
    if let Some(first) = agents.values_mut().next() {
        first.owners.targets = places.into_values().collect();
    }
    let inputs = Inputs {
        agents: agents.into_values().collect(),
        unreachable_agents: unanswered.iter().map(|u| u.node.clone()).collect(),
        nodes: Vec::new(),
        kube: None,
    };
    Ok(Built {
        inputs,
        answered,
        unanswered,
        notes,
    })
}

/// Set `slot` once: `Some(true)` when set, `Some(false)` for a duplicate, `None` for no value.
fn set<T>(slot: &mut Option<T>, v: Option<T>) -> Option<bool> {
    let v = v?;
    if slot.is_some() {
        return Some(false);
    }
    *slot = Some(v);
    Some(true)
}

/// The finishing touch on a diagnosis built from metrics: every finding says where its
/// figures come from.
pub fn finish(d: &mut Diagnosis, url: &str) {
    let line = format!(
        "from Prometheus at {url}: window figures as last scraped; senders of ICMP errors are known only as source, destination, peer or other (metrics carry no addresses)"
    );
    for f in &mut d.findings {
        f.evidence.push(line.clone());
    }
}

mod checks;
mod response;
mod unexported;

pub use response::{parse_response, Sample};

#[cfg(test)]
mod tests;
