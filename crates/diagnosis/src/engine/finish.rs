//! Findings under construction ([`Draft`]), the evidence shared by the stages, and the
//! report: drafts to [`Finding`]s, bounded and ordered.

use std::collections::{BTreeMap, BTreeSet};

use super::state::*;
use crate::matrix::Dest;
use crate::report::{Cause, Finding};

impl Draft {
    pub(super) fn new(cause: Cause, summary: String, confidence: f64) -> Draft {
        Draft {
            cause,
            summary,
            nodes: BTreeSet::new(),
            pairs: BTreeSet::new(),
            zones: BTreeSet::new(),
            targets: BTreeSet::new(),
            confidence,
            evidence: Vec::new(),
            next_steps: Vec::new(),
        }
    }
}

impl Engine<'_> {
    pub(super) fn pair_label(&self, i: usize) -> String {
        let pc = &self.m.pairs[i];
        format!("{} -> {}", self.name(pc.src), self.dest_name(pc.dst))
    }

    fn dest_name(&self, d: Dest) -> String {
        match d {
            Dest::Node(n) => self.name(n).to_string(),
            Dest::Target(t) => self
                .m
                .targets
                .get(t)
                .map_or("?".to_string(), |t| t.name.clone()),
        }
    }

    pub(super) fn push_pairs(&mut self, mut d: Draft, pairs: &[usize]) {
        let idx = self.drafts.len();
        for &i in pairs {
            let pc = &self.m.pairs[i];
            d.pairs.insert((pc.src, pc.dst));
            self.explained.entry(i).or_insert(idx);
        }
        self.drafts.push(d);
    }

    /// "last errors: timeout ×6, net_unreachable ×2" over the failing cells of `pairs`.
    pub(super) fn error_summary(&self, pairs: &[usize]) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for &i in pairs {
            for (k, c) in self.m.pairs[i].layers.iter().enumerate() {
                if self.states[i][k] != CellState::Down {
                    continue;
                }
                if let Some(e) = c.as_ref().and_then(|c| c.last_error.as_ref()) {
                    *counts.entry(e.kind.clone()).or_default() += 1;
                }
            }
        }
        if counts.is_empty() {
            return "no error detail in the failing cells".into();
        }
        format!("last errors on failing probes: {}", counts_text(counts))
    }

    pub(super) fn finish(self) -> Vec<Finding> {
        let mut out: Vec<Finding> = self
            .drafts
            .iter()
            .map(|d| {
                let mut pairs: Vec<[String; 2]> = d
                    .pairs
                    .iter()
                    .map(|(s, t)| [self.name(*s).to_string(), self.dest_name(*t)])
                    .collect();
                pairs.sort();
                pairs.dedup();
                let mut evidence = d.evidence.clone();
                if pairs.len() > self.p.max_pairs_per_finding {
                    evidence.push(format!(
                        "{} pairs in all; the first {} are listed",
                        pairs.len(),
                        self.p.max_pairs_per_finding
                    ));
                    pairs.truncate(self.p.max_pairs_per_finding);
                }
                let mut nodes: Vec<String> =
                    d.nodes.iter().map(|&n| self.name(n).to_string()).collect();
                nodes.sort();
                let mut targets: Vec<String> = d
                    .targets
                    .iter()
                    .filter_map(|&t| self.m.targets.get(t).map(|t| t.name.clone()))
                    .collect();
                targets.sort();
                let conf = if d.confidence.is_finite() {
                    d.confidence.clamp(0.0, 1.0)
                } else {
                    0.5
                };
                Finding {
                    cause: d.cause,
                    summary: d.summary.clone(),
                    nodes,
                    pairs,
                    zones: d.zones.iter().cloned().collect(),
                    targets,
                    confidence: (conf * 100.0).round() / 100.0,
                    evidence,
                    next_steps: d.next_steps.clone(),
                    family: None,
                }
            })
            .collect();
        sort(&mut out);
        out
    }
}

/// The report's order: the surest first, then by cause and place (stable between polls).
pub(crate) fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.cause.cmp(&b.cause))
            .then(a.nodes.cmp(&b.nodes))
            .then(a.targets.cmp(&b.targets))
            .then(a.family.cmp(&b.family))
    });
}

/// "timeout ×6, net_unreachable ×2": counts per kind, the most frequent first (then by name).
pub(super) fn counts_text(counts: BTreeMap<String, usize>) -> String {
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|(kind_a, n_a), (kind_b, n_b)| n_b.cmp(n_a).then(kind_a.cmp(kind_b)));
    v.iter()
        .map(|(kind, n)| format!("{kind} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
