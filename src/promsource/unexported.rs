//! The healthy cells a selective export leaves out, rebuilt from the plan's series.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{
    target_key, Answers, CellAcc, CellKey, DESTINATIONS, INTERVAL, PLANNED, TARGET_INFO, WINDOW,
};
use crate::diagnosis::AgentReport;

/// The healthy cells a selective export (`--pair-metrics failing`, or `auto` on a sampled
/// plan) leaves out: every peer in an agent's `meshprobe_pair_planned` and, for agents that
/// export it (their export is selective), every target of its `meshprobe_target_info`, with no
/// series of its own, on every layer the agent probes that kind of destination on
/// (`meshprobe_destinations`). Such a pair was probed and had no failure in its window (a
/// failure exports every layer of the destination): a full window of successes
/// (`--window` ÷ `--interval` probes), last probed at most an `--interval` before the agent's
/// last scrape — the age given, so it contradicts only failures that began before that.
/// Why: without them a destination's one failing source reads as every source failing, and a
/// lost route from one node reads as the far node's CNI (bench/README.md, scale-prometheus.sh);
/// without the age, a zone scraped before a fault began contradicts the zones scraped after
/// it (a policy's onset read as `application`, tests: `zones_scraped_before_a_fault_*`).
pub(super) fn fill(
    answers: &Answers,
    agents: &BTreeMap<String, AgentReport>,
    by_target: &HashMap<Vec<(String, String)>, String>,
    scraped: &HashMap<String, f64>,
    cells: &mut BTreeMap<CellKey, CellAcc>,
    notes: &mut Vec<String>,
) {
    let empty = Vec::new();
    let get = |m: &str| answers.get(m).unwrap_or(&empty);
    // (agent, destination kind) → the layers it probes.
    let mut layers: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for s in get(DESTINATIONS) {
        let own = ["__name__", "dst_kind", "layer", "state"];
        if let Some(node) = by_target.get(&target_key(s, &own)) {
            let (kind, layer) = (s.label("dst_kind"), s.label("layer"));
            if matches!(kind, "peer" | "target") && !layer.is_empty() && s.value > 0.0 {
                layers.entry((node, kind)).or_default().insert(layer);
            }
        }
    }
    // (source, kind, destination, destination's zone), each once.
    let mut planned: BTreeMap<(String, &str, String), Option<String>> = BTreeMap::new();
    let mut skipped = 0usize;
    for s in get(PLANNED) {
        let (src, dst) = (s.label("src_node"), s.label("dst"));
        if src.is_empty() || dst.is_empty() || !matches!(s.label("dst_kind"), "" | "peer") {
            skipped += 1;
            continue;
        }
        let zone = Some(s.label("dst_zone").to_string()).filter(|z| !z.is_empty());
        planned.insert((src.to_string(), "peer", dst.to_string()), zone);
    }
    let selective: BTreeSet<String> = planned.keys().map(|k| k.0.clone()).collect();
    for s in get(TARGET_INFO) {
        let own = ["__name__", "dst", "dst_node"];
        if let Some(node) = by_target.get(&target_key(s, &own)) {
            if selective.contains(node) && !s.label("dst").is_empty() {
                planned.insert((node.clone(), "target", s.label("dst").to_string()), None);
            }
        }
    }
    if skipped > 0 {
        notes.push(format!(
            "{PLANNED}: {skipped} series skipped (missing src_node or dst, or not a peer)"
        ));
    }
    let mut untimed = BTreeSet::new();
    for ((src, kind, dst), zone) in planned {
        let exported = cells
            .range(
                (
                    src.clone(),
                    kind.to_string(),
                    dst.clone(),
                    String::new(),
                    String::new(),
                )..,
            )
            .next()
            .is_some_and(|(k, _)| k.0 == src && k.1 == kind && k.2 == dst);
        let Some(a) = agents.get(&src) else { continue };
        if exported {
            continue;
        }
        let (Some(interval), Some(window)) = (a.interval_seconds, a.window_seconds) else {
            untimed.insert(src);
            continue;
        };
        let probes = ((window / interval).floor() as u32).max(1);
        let last_probe_age = scraped.get(&src).map(|age| age + interval);
        for layer in layers.get(&(src.as_str(), kind)).into_iter().flatten() {
            cells.insert(
                (
                    src.clone(),
                    kind.to_string(),
                    dst.clone(),
                    layer.to_string(),
                    String::new(),
                ),
                CellAcc {
                    dst_zone: zone.clone(),
                    reachable: Some(true),
                    success_ratio: Some(1.0),
                    consecutive: Some(0),
                    probes: Some(probes),
                    last_probe_age,
                    ..CellAcc::default()
                },
            );
        }
    }
    if !untimed.is_empty() {
        notes.push(format!(
            "{} agents export {PLANNED} without {INTERVAL} or {WINDOW}: their unexported pairs count as unknown",
            untimed.len()
        ));
    }
}
