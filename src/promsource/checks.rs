//! The per-source checks (`dns`, `service`, `apiserver`, `apiserver_endpoints`) from their series: `meshprobe_check_up`,
//! `…_consecutive_failures`, `…_success_ratio`.

use std::collections::BTreeMap;

use super::{count, finite, Sample, CHECK_CONSECUTIVE, CHECK_SUCCESS_RATIO, CHECK_UP};
use crate::diagnosis::AgentReport;

/// The per-source checks of each answering agent, by its `src_node` and the `check` label
/// (the four the agent runs; others ignored). A check with no `meshprobe_check_up` has not run.
pub(super) fn read<'a>(
    agents: &mut BTreeMap<String, AgentReport>,
    get: &dyn Fn(&str) -> &'a Vec<Sample>,
    notes: &mut Vec<String>,
) {
    let mut odd = 0usize;
    for (metric, set) in [
        (
            CHECK_UP,
            (|c, v| c.reachable = finite(v, 0.0, 1.0).map(|v| v >= 0.5)) as SetCheck,
        ),
        (CHECK_CONSECUTIVE, |c, v| {
            c.consecutive_failures = count(v).unwrap_or(0)
        }),
        (CHECK_SUCCESS_RATIO, |c, v| {
            c.success_ratio = finite(v, 0.0, 1.0)
        }),
    ] {
        for s in get(metric) {
            let kind = s.label("check");
            let Some(a) = agents.get_mut(s.label("src_node")) else {
                continue;
            };
            if !matches!(
                kind,
                "dns" | "service" | "apiserver" | "apiserver_endpoints"
            ) {
                odd += 1;
                continue;
            }
            let target = s.label("target");
            let c = a.checks.entry(kind.to_string()).or_default();
            if c.target.is_empty() {
                c.target = target.chars().take(MAX_CHECK_TARGET).collect();
            }
            set(c, s.value);
        }
    }
    // Figures without the `up` gauge (a series set torn mid-scrape): not a check's reading.
    for a in agents.values_mut() {
        a.checks.retain(|_, c| c.reachable.is_some());
    }
    if odd > 0 {
        notes.push(format!(
            "meshprobe_check_*: {odd} series of a check kind other than dns, service, apiserver or apiserver_endpoints skipped"
        ));
    }
}

/// Longest `target` label kept from a check's series (a name is at most 253 bytes, 8
/// endpoints `[v6]:port` joined ~380).
const MAX_CHECK_TARGET: usize = 512;

type SetCheck = fn(&mut crate::diagnosis::CheckStats, f64);
