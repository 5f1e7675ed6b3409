//! Stage 5, packet loss: partial loss concentrated on a node's pairs, greedy by node, then
//! strong leftover loss per pair; and the rules by which loss explains other failures.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::clean::{lost_of, random_loss, success_ratio};
use super::state::*;
use crate::input::ErrKind;
use crate::matrix::{Cell, Dest};
use crate::report::Cause;

fn loss_steps(a: &str, b: &str) -> Vec<String> {
    let target = if b.starts_with('<') {
        "<peer IP>".to_string()
    } else {
        format!("<{b} IP>")
    };
    vec![
        format!("Confirm: from {a}, `ping -c 200 -i 0.05 {target}` (or `fping -c 200`) and compare with a pair not touching {a}"),
        format!("On {a}: `ip -s link show` and `ethtool -S <uplink>` (drops, errors), `tc qdisc show`, `nft list ruleset` / `iptables -S` for random-drop rules, `conntrack -S`"),
    ]
}

impl Engine<'_> {
    /// A failure that could be bad luck under heavy loss: most probes of the window succeeded
    /// and nothing but timeouts was seen.
    pub(super) fn weak_failure(&self, i: usize) -> bool {
        let pc = &self.m.pairs[i];
        pc.layers.iter().enumerate().all(|(k, c)| {
            let Some(c) = c else { return true };
            if self.states[i][k] != CellState::Down {
                return true;
            }
            c.consecutive_failures <= 2
                && success_ratio(c) >= 0.5
                && c.last_error
                    .as_ref()
                    .is_none_or(|e| e.kind() == ErrKind::Timeout)
        })
    }

    /// On a pair touching a lossy node: a failure the loss explains. Nothing but timeouts was
    /// seen, and each failing layer's path still delivers — ICMP layers answer at least 30% of
    /// their probes, an HTTP/TCP layer rides on a pod path (ICMP to the pod IP) that does.
    /// Why: heavy loss fails a few probes in a row now and then; a routing or CNI fault leaves
    /// its pod path near 0%.
    pub(super) fn loss_explains(&self, i: usize) -> bool {
        const DELIVERS: f64 = 0.3;
        let pc = &self.m.pairs[i];
        let delivers = |c: &Option<Cell>| {
            c.as_ref()
                .is_some_and(|c| c.probes >= 3 && success_ratio(c) >= DELIVERS)
        };
        let pod_path = pc.layers.first().is_some_and(delivers);
        pc.layers.iter().enumerate().all(|(k, c)| {
            let Some(cell) = c else { return true };
            if self.states[i][k] != CellState::Down {
                return true;
            }
            let only_timeouts = cell
                .last_error
                .as_ref()
                .is_none_or(|e| e.kind() == ErrKind::Timeout);
            let icmp = k <= 1;
            only_timeouts
                && if icmp {
                    delivers(c)
                } else {
                    delivers(c) || pod_path
                }
        })
    }

    pub(super) fn pair_lossy(&self, i: usize) -> bool {
        self.states[i][POD] == CellState::Lossy || self.states[i][NODE] == CellState::Lossy
    }

    fn pair_loss_known(&self, i: usize) -> bool {
        self.states[i][POD].known() || self.states[i][NODE].known()
    }

    /// A pair whose window shows loss that has gone quiet (no longer lossy by the cleaning
    /// rules): the loss of its node is ending.
    fn pair_loss_ending(&self, i: usize) -> bool {
        self.raw_loss[i] && !self.pair_lossy(i)
    }

    /// Pair `i` has started failing whole: some layer's last probe failed, and every layer
    /// probed since the earliest of those failure streaks began failed too. Its lost packets
    /// are then the past or an outage's edge, no news of loss.
    fn outage_onset(&self, i: usize) -> bool {
        let cells = || self.m.pairs[i].layers.iter().flatten();
        let Some(began) = cells()
            .filter(|c| c.reachable == Some(false))
            .map(|c| {
                c.failing_for_seconds
                    .or(c.last_probe_age_seconds)
                    .unwrap_or(0.0)
            })
            .max_by(f64::total_cmp)
        else {
            return false;
        };
        cells().all(|c| {
            c.reachable == Some(false) || c.last_probe_age_seconds.is_none_or(|age| age > began)
        })
    }

    /// Per node, inbound and outbound: pairs with ICMP figures, and how many of them are lossy.
    /// `ending`: a pair whose loss is ending counts as lossy (for placing loss only, never for
    /// excusing other failures). Why: a cleared lossy node's pairs go quiet one by one, and its
    /// last lossy pair alone would read as loss between it and an uninvolved peer; it stays the
    /// node's until every pair is quiet.
    fn loss_tallies(&self, ending: bool) -> (Vec<Tally>, Vec<Tally>) {
        let n = self.m.nodes.len();
        let mut inn = vec![Tally::default(); n];
        let mut out = vec![Tally::default(); n];
        for &i in &self.peer_pairs {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let ending = ending && self.pair_loss_ending(i);
            let known = self.pair_loss_known(i) || ending;
            let bad = self.pair_lossy(i) || ending;
            inn[d].add(known, bad);
            out[pc.src].add(known, bad);
        }
        (inn, out)
    }

    /// Nodes with partial loss on at least `loss_node_ratio` of their inbound or outbound pairs.
    pub(super) fn lossy_nodes(&self) -> BTreeSet<usize> {
        self.lossy_nodes_of(&self.loss_tallies(false))
    }

    /// Pairs touching `x` whose loss is ending.
    fn loss_ending_at(&self, x: usize) -> usize {
        self.peer_pairs
            .iter()
            .filter(|&&i| {
                let pc = &self.m.pairs[i];
                (pc.src == x || pc.dst == Dest::Node(x)) && self.pair_loss_ending(i)
            })
            .count()
    }

    fn lossy_nodes_of(&self, (inn, out): &(Vec<Tally>, Vec<Tally>)) -> BTreeSet<usize> {
        let n = self.m.nodes.len();
        (0..n)
            .filter(|&x| {
                (inn[x].bad >= 2 && inn[x].ratio() >= self.p.loss_node_ratio)
                    || (out[x].bad >= 2 && out[x].ratio() >= self.p.loss_node_ratio)
            })
            .collect()
    }

    pub(super) fn loss_stage(&mut self) {
        let mut lossy: Vec<usize> = self
            .peer_pairs
            .iter()
            .copied()
            .filter(|&i| !self.explained.contains_key(&i) && self.pair_lossy(i))
            .collect();
        lossy.extend(self.deferred_loss.iter().copied());
        // A pair of a node whose loss is ending that now starts to fail whole is an outage
        // beginning (its own finding comes from the network stage), not that loss coming back.
        // Why: the cleared loss's residue in its window would otherwise revive a loss finding.
        lossy.retain(|&i| {
            let pc = &self.m.pairs[i];
            let ending = |x: usize| self.loss_ending_at(x) > 0;
            !(self.outage_onset(i) && (ending(pc.src) || self.dst_node(i).is_some_and(ending)))
        });
        let apps = std::mem::take(&mut self.deferred_app_loss);
        if lossy.is_empty() {
            return;
        }
        let tallies = self.loss_tallies(true);
        let nodes = self.lossy_nodes_of(&tallies);
        let (inn, out) = tallies;
        let mut covered: BTreeSet<usize> = BTreeSet::new();
        // Greedy by node: most lossy pairs first.
        let mut per_node: BTreeMap<usize, Vec<usize>> =
            nodes.iter().map(|&x| (x, Vec::new())).collect();
        for &i in &lossy {
            let pc = &self.m.pairs[i];
            if let Some(v) = per_node.get_mut(&pc.src) {
                v.push(i);
            }
            if let Dest::Node(d) = pc.dst {
                if let Some(v) = per_node.get_mut(&d) {
                    v.push(i);
                }
            }
        }
        let mut order: Vec<(usize, Vec<usize>)> = per_node.into_iter().collect();
        order.sort_by_key(|(x, v)| (Reverse(v.len()), *x));
        for (x, v) in order {
            let fresh: Vec<usize> = v.into_iter().filter(|i| !covered.contains(i)).collect();
            let ending = self.loss_ending_at(x);
            if fresh.is_empty() || fresh.len() + ending < 2 {
                continue;
            }
            covered.extend(fresh.iter().copied());
            let mut d = self.loss_node_draft(x, &fresh, inn[x].known, out[x].known);
            if ending > 0 {
                d.evidence.push(format!(
                    "{ending} more of its pairs lost packets in the window and have gone quiet since: its loss may be ending"
                ));
            }
            let absorbed: Vec<usize> = apps
                .iter()
                .copied()
                .filter(|&i| {
                    !covered.contains(&i)
                        && (self.m.pairs[i].src == x || self.dst_node(i) == Some(x))
                })
                .collect();
            if !absorbed.is_empty() {
                d.evidence.push(format!(
                    "HTTP/TCP probes on {} of its paths time out ({}): lost SYNs and replies, explained by this loss",
                    absorbed.len(),
                    absorbed
                        .iter()
                        .take(4)
                        .map(|&i| self.pair_label(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            covered.extend(absorbed.iter().copied());
            let mut all = fresh;
            all.extend(absorbed);
            self.push_pairs(d, &all);
        }
        let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for &i in &lossy {
            if covered.contains(&i) {
                continue;
            }
            let strong = self.m.pairs[i].layers[..2].iter().flatten().any(|c| {
                random_loss(
                    c,
                    self.m
                        .nodes
                        .get(self.m.pairs[i].src)
                        .and_then(|n| n.interval_seconds),
                    self.p,
                    self.p.pair_loss_min_lost,
                    self.p.pair_loss_min_ratio,
                )
            });
            if !strong {
                continue;
            }
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            groups.entry(unordered_key(pc.src, d)).or_default().push(i);
        }
        for &i in &apps {
            if covered.contains(&i) {
                continue;
            }
            let pc = &self.m.pairs[i];
            let Some(d) = self.dst_node(i) else { continue };
            if let Some(g) = groups.get_mut(&unordered_key(pc.src, d)) {
                g.push(i);
            }
        }
        for ((a, b), g) in groups {
            let mut d = Draft::new(
                Cause::PacketLoss,
                format!("packet loss between {} and {}", self.name(a), self.name(b)),
                0.5,
            );
            d.nodes.insert(a);
            d.nodes.insert(b);
            for &i in &g {
                d.evidence
                    .push(format!("{}: {}", self.pair_label(i), self.loss_text(i)));
            }
            d.next_steps = loss_steps(self.name(a), self.name(b));
            self.push_pairs(d, &g);
        }
    }

    fn loss_text(&self, i: usize) -> String {
        let pc = &self.m.pairs[i];
        let mut parts = Vec::new();
        for k in [POD, NODE] {
            if let Some(c) = &pc.layers[k] {
                let (lost, sent) = lost_of(c);
                if sent > 0 && lost > 0 {
                    parts.push(format!(
                        "{} lost {lost}/{sent} ({:.0}%)",
                        crate::matrix::LAYERS[k].as_str(),
                        100.0 * f64::from(lost) / f64::from(sent)
                    ));
                }
            }
        }
        if parts.is_empty() {
            "failed probes under loss".into()
        } else {
            parts.join(", ")
        }
    }

    /// `known_in` / `known_out`: the node's inbound / outbound pairs with ICMP figures.
    fn loss_node_draft(&self, x: usize, pairs: &[usize], known_in: u32, known_out: u32) -> Draft {
        let name = self.name(x).to_string();
        let (mut lost, mut sent) = (0u64, 0u64);
        for &i in pairs {
            for c in self.m.pairs[i].layers[..2].iter().flatten() {
                let (l, s) = lost_of(c);
                lost += u64::from(l);
                sent += u64::from(s);
            }
        }
        let pct = if sent > 0 {
            100.0 * lost as f64 / sent as f64
        } else {
            0.0
        };
        let n_out = pairs.iter().filter(|&&i| self.m.pairs[i].src == x).count() as u32;
        let inn = Tally {
            bad: (pairs.len() as u32 - n_out).min(known_in),
            known: known_in,
            ..Tally::default()
        };
        let out = Tally {
            bad: n_out.min(known_out),
            known: known_out,
            ..Tally::default()
        };
        let mut d = Draft::new(
            Cause::PacketLoss,
            format!("{name} drops packets: about {pct:.0}% loss on its paths while probes mostly succeed"),
            (0.55 + 0.35 * inn.ratio().max(out.ratio())).min(0.92),
        );
        d.nodes.insert(x);
        d.evidence.push(format!(
            "lossy pairs: {} inbound to {name}, {} outbound from {name}; ICMP packets lost on them: {lost}/{sent} ({pct:.0}%)",
            inn.frac(),
            out.frac()
        ));
        for &i in pairs.iter().take(3) {
            d.evidence
                .push(format!("{}: {}", self.pair_label(i), self.loss_text(i)));
        }
        d.evidence.push("pairs not touching it show no loss".into());
        d.next_steps = loss_steps(&name, "<peer>");
        d
    }
}
