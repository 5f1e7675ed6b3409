//! Stage 3, network: failing node pairs explained greedily by the candidate (zone pair, node
//! down, node CNI, a node's or a router's routing table) covering most of them; the rest folded
//! per node or reported per pair.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use super::clean::{max_age, net_failing, pod_layers, pod_state, NetUnreachableFrom};
use super::state::*;
use crate::matrix::{AgentStatus, Dest};
use crate::report::Cause;

/// A way to explain a set of failing node pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    Zone(usize, usize),
    /// One zone cut off from every zone in `dead_zone_pairs` it appears in (≥ 2 of them).
    ZoneIsolated(usize),
    NodeDown(usize),
    NodeCni(usize),
    Egress(usize),
    Router(usize),
}

/// A candidate and the failing pairs it would explain.
struct CandidateCover {
    candidate: Candidate,
    /// Positions in the stage's `failing` list.
    covers: Vec<usize>,
    /// Tie-break between covers of the same size: the lowest first.
    priority: u8,
}

impl CandidateCover {
    fn new(candidate: Candidate, covers: Vec<usize>, priority: u8) -> CandidateCover {
        CandidateCover {
            candidate,
            covers,
            priority,
        }
    }
}

/// A cross-zone block (one unordered zone pair): its node-IP and pod-IP tallies, and its
/// failing pairs (positions in the stage's `failing` list).
#[derive(Debug, Clone, Default)]
struct CrossZoneBlock {
    node_ip: Tally,
    pod_ip: Tally,
    failing: Vec<usize>,
}

impl Engine<'_> {
    pub(super) fn network_stage(&mut self) {
        let failing: Vec<usize> = self
            .peer_pairs
            .iter()
            .copied()
            .filter(|i| !self.explained.contains_key(i) && net_failing(&self.states[*i]))
            .collect();
        if failing.is_empty() {
            return;
        }
        let failing_position: HashMap<usize, usize> =
            failing.iter().enumerate().map(|(k, i)| (*i, k)).collect();
        let n = self.m.nodes.len();

        // Node-level facts.
        let dead_missing: Vec<bool> = (0..n)
            .map(|x| {
                let a = self.node_tally[x];
                a.in_node.known > 0
                    && a.in_node.ratio() >= self.p.node_down_ratio
                    && self.m.nodes[x].agent != AgentStatus::Reporting
            })
            .collect();

        // Zone blocks; first the oldest onset in each cross-zone block.
        let mut cross_onset: HashMap<(usize, usize), Option<f64>> = HashMap::new();
        for &i in &self.peer_pairs {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            if let (Some(za), Some(zb)) = (self.zone_id[pc.src], self.zone_id[d]) {
                if za != zb && !self.explained.contains_key(&i) {
                    let o = cross_onset.entry(unordered_key(za, zb)).or_default();
                    *o = max_age(*o, self.onset_in(i, &[POD, NODE, HTTP, TCP]));
                }
            }
        }
        let mut cross: HashMap<(usize, usize), CrossZoneBlock> = HashMap::new();
        let mut intra: HashMap<usize, Tally> = HashMap::new();
        for &i in &self.peer_pairs {
            if self.explained.contains_key(&i) {
                continue;
            }
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let (Some(za), Some(zb)) = (self.zone_id[pc.src], self.zone_id[d]) else {
                continue;
            };
            let s = self.states[i];
            let pod = pod_state(&s);
            if za == zb {
                if dead_missing[pc.src] || dead_missing[d] {
                    continue;
                }
                intra
                    .entry(za)
                    .or_default()
                    .add(s[NODE].known() || pod.known(), net_failing(&s));
            } else {
                let on = cross_onset.get(&unordered_key(za, zb)).copied().flatten();
                let stale_node = self.good_predates(i, &[NODE], on);
                let stale_pod = self.good_predates(i, pod_layers(&s), on);
                let block = cross.entry(unordered_key(za, zb)).or_default();
                block.node_ip.add_cell(
                    s[NODE].known(),
                    s[NODE] == CellState::Down,
                    stale_node,
                    false,
                );
                block
                    .pod_ip
                    .add_cell(pod.known(), pod == CellState::Down, stale_pod, false);
                if let Some(&k) = failing_position.get(&i) {
                    block.failing.push(k);
                }
            }
        }

        let mut candidates: Vec<CandidateCover> = Vec::new();
        for ((za, zb), block) in &cross {
            let (node_l, pod_l, cover) = (&block.node_ip, &block.pod_ip, &block.failing);
            let intra_ok = |z: usize| {
                intra
                    .get(&z)
                    .is_none_or(|a| a.ratio() <= self.p.zone_intra_max)
            };
            let zr = self.p.zone_ratio;
            let node_dead = node_l.known == 0 || node_l.ratio() >= zr;
            let shape = node_l.known + pod_l.known > 0
                && intra_ok(*za)
                && intra_ok(*zb)
                && !cover.is_empty();
            if shape && node_dead && pod_l.ratio() >= zr {
                candidates.push(CandidateCover::new(
                    Candidate::Zone(*za, *zb),
                    cover.clone(),
                    1,
                ));
            } else if shape
                && (node_l.known == 0 || node_l.ratio_if_stale_fail() >= zr)
                && pod_l.ratio_if_stale_fail() >= zr
            {
                // The block's other pairs still show successes from before its failures began.
                self.pending.extend(cover.iter().map(|&k| failing[k]));
            }
        }
        let dead_zone_pairs: Vec<(usize, usize)> = {
            let mut v: Vec<(usize, usize)> = candidates
                .iter()
                .filter_map(|c| match c.candidate {
                    Candidate::Zone(a, b) => Some((a, b)),
                    _ => None,
                })
                .collect();
            v.sort_unstable();
            v
        };
        for z in 0..self.zones.len() {
            let mine: Vec<usize> = candidates
                .iter()
                .filter(|c| matches!(c.candidate, Candidate::Zone(a, b) if a == z || b == z))
                .flat_map(|c| c.covers.iter().copied())
                .collect();
            let n_pairs = dead_zone_pairs
                .iter()
                .filter(|(a, b)| *a == z || *b == z)
                .count();
            if n_pairs >= 2 {
                candidates.push(CandidateCover::new(Candidate::ZoneIsolated(z), mine, 1));
            }
        }
        // Sources whose own stack or pod gateway says "net unreachable" toward a node's pods,
        // on any pair (targets too, and pairs not failing yet): their replies to that node's
        // pods have no route either, so the reverse pairs fail with them (node IPs included).
        let no_route: HashSet<(usize, usize)> = self
            .peer_pairs
            .iter()
            .chain(&self.target_pairs)
            .filter_map(|&i| {
                let src = self.m.pairs[i].src;
                match self.net_unreachable_from(i) {
                    Some(NetUnreachableFrom::Node { node, .. }) if node == src => {
                        Some((src, self.dst_node(i)?))
                    }
                    _ => None,
                }
            })
            .collect();
        // Per-node covers.
        let mut touching: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut egress: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut routers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (k, &i) in failing.iter().enumerate() {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            touching[pc.src].push(k);
            touching[d].push(k);
            if no_route.contains(&(d, pc.src)) {
                egress.entry(d).or_default().push(k);
            }
            match self.net_unreachable_from(i) {
                Some(NetUnreachableFrom::Node { node: owner, .. }) => {
                    let v = egress.entry(owner).or_default();
                    v.push(k);
                    if let Some(&r) = self
                        .pair_of
                        .get(&(d, pc.src))
                        .and_then(|r| failing_position.get(r))
                    {
                        v.push(r);
                    }
                }
                Some(NetUnreachableFrom::Router(ip)) => {
                    let v = routers.entry(ip).or_default();
                    v.push(k);
                    if let Some(&r) = self
                        .pair_of
                        .get(&(d, pc.src))
                        .and_then(|r| failing_position.get(r))
                    {
                        v.push(r);
                    }
                }
                None => {
                    // No ICMP error (rate-limited, or aged out of the window): the shape alone.
                    if let Some(r) = self.silent_route_reverse(i) {
                        if let Some(&r) = failing_position.get(&r) {
                            let v = egress.entry(pc.src).or_default();
                            v.push(k);
                            v.push(r);
                        }
                    }
                }
            }
        }
        for (x, touch) in touching.iter().enumerate() {
            let a = self.node_tally[x];
            if touch.is_empty() {
                continue;
            }
            let agent = self.m.nodes[x].agent;
            let ndr = self.p.node_down_ratio;
            let in_dead = a.in_node.known > 0 && a.in_node.ratio() >= ndr;
            let pod_dead = a.in_pod.known == 0 || a.in_pod.ratio() >= ndr;
            let isolated = a.out_node.known > 0 && a.out_node.ratio() >= ndr;
            if in_dead && pod_dead && (agent != AgentStatus::Reporting || isolated) {
                let prio = if agent == AgentStatus::Reporting {
                    2
                } else {
                    0
                };
                candidates.push(CandidateCover::new(
                    Candidate::NodeDown(x),
                    touch.clone(),
                    prio,
                ));
            } else if a.in_node.known > 0
                && a.in_node.ratio_if_stale_fail() >= ndr
                && (a.in_pod.known == 0 || a.in_pod.ratio_if_stale_fail() >= ndr)
                && (agent != AgentStatus::Reporting
                    || (a.out_node.known > 0 && a.out_node.ratio_if_stale_fail() >= ndr))
            {
                // Down, unless the successes from before its failures began still hold.
                self.pending.extend(touch.iter().map(|&k| failing[k]));
            }
            // "Node IP fine" needs successes probed since the pod IPs began to fail; pod
            // failures count when their own node IP answered since.
            let fine = self.p.node_ip_fine_max;
            let node_fine = a.in_node.fresh_ratio().is_some_and(|r| r <= fine)
                || (a.in_node.known == 0 && agent == AgentStatus::Reporting);
            // Node IPs that answer their last probes but are still unknown (an outage's marks,
            // e.g. the node just came back) may be fine: the pod failures wait for them.
            let maybe_fine = (a.in_node.known > 0 && a.in_node.ratio() <= fine)
                || (a.in_node.known == 0
                    && (agent == AgentStatus::Reporting || a.in_node_answering > 0));
            // Inbound: pod layers only (node IPs answer). Outbound: everything, since the
            // agent itself lives on the broken pod network.
            let cover: Vec<usize> = touch
                .iter()
                .copied()
                .filter(|&k| {
                    let i = failing[k];
                    self.m.pairs[i].src == x || self.states[i][NODE] != CellState::Down
                })
                .collect();
            let settled: Vec<usize> = cover
                .iter()
                .copied()
                .filter(|&k| !self.stale_contrast(failing[k]))
                .collect();
            if node_fine
                && a.in_pod.known > a.in_pod.pending
                && a.in_pod.ratio_settled() >= self.p.hit_ratio
                && !settled.is_empty()
            {
                candidates.push(CandidateCover::new(Candidate::NodeCni(x), settled, 3));
            } else if maybe_fine
                && a.in_pod.known > 0
                && a.in_pod.ratio_if_stale_fail() >= self.p.hit_ratio
            {
                self.pending.extend(cover.iter().map(|&k| failing[k]));
            }
        }
        for (x, mut cover) in egress {
            cover.sort_unstable();
            cover.dedup();
            candidates.push(CandidateCover::new(Candidate::Egress(x), cover, 4));
        }
        let router_names: Vec<String> = routers.keys().cloned().collect();
        for (r, (_, mut cover)) in routers.into_iter().enumerate() {
            cover.sort_unstable();
            cover.dedup();
            candidates.push(CandidateCover::new(Candidate::Router(r), cover, 5));
        }

        // A pair a pending candidate would explain is explained by no other contrast-based
        // candidate yet: its stale contrasts may be failing too by now, which would make the
        // pending candidate the cause. A "net unreachable" (egress, router) is positive
        // evidence and not held back.
        if !self.pending.is_empty() {
            for c in candidates.iter_mut() {
                if !matches!(c.candidate, Candidate::Egress(_) | Candidate::Router(_)) {
                    c.covers.retain(|&k| !self.pending.contains(&failing[k]));
                }
            }
            candidates.retain(|c| !c.covers.is_empty());
        }

        // Lazy greedy set cover.
        let mut covered = vec![false; failing.len()];
        let mut heap: BinaryHeap<(usize, Reverse<u8>, Reverse<usize>)> = candidates
            .iter()
            .enumerate()
            .map(|(ci, c)| (c.covers.len(), Reverse(c.priority), Reverse(ci)))
            .collect();
        while let Some((count, prio, Reverse(ci))) = heap.pop() {
            let fresh = candidates[ci]
                .covers
                .iter()
                .filter(|&&k| !covered[k])
                .count();
            if fresh == 0 {
                continue;
            }
            if fresh < count {
                heap.push((fresh, prio, Reverse(ci)));
                continue;
            }
            let c = &candidates[ci];
            for &k in &c.covers {
                covered[k] = true;
            }
            let pairs: Vec<usize> = c.covers.iter().map(|&k| failing[k]).collect();
            self.network_finding(c.candidate, &pairs, &router_names, &dead_zone_pairs);
        }

        // Leftovers.
        let lossy_nodes = self.lossy_nodes();
        let mut left: Vec<usize> = Vec::new();
        for (k, &i) in failing.iter().enumerate() {
            if covered[k] {
                continue;
            }
            let pc = &self.m.pairs[i];
            let d = self.dst_node(i).unwrap_or(pc.src);
            if (lossy_nodes.contains(&pc.src) || lossy_nodes.contains(&d)) && self.loss_explains(i)
            {
                self.deferred_loss.push(i);
            } else if self.stale_contrast(i) {
                self.pending.insert(i); // its contrast predates it: wait for the next probe
            } else if !self.pending.contains(&i) {
                left.push(i);
            }
        }
        self.leftovers(&left);
    }

    /// A's missing route to B's pod subnet without its "net unreachable": A's pods cannot reach
    /// B's pod IPs while B's node IP answers them, and B's pods reach nothing of A — not even
    /// A's node IP, because A's replies to B's pod subnet have no route. Returns the reverse
    /// pair (B → A). A CNI fault on B has the same shape from each single source; it is told
    /// apart by its cover (every pair touching B), which the set cover prefers.
    fn silent_route_reverse(&self, i: usize) -> Option<usize> {
        let pc = &self.m.pairs[i];
        let Dest::Node(b) = pc.dst else { return None };
        let s = &self.states[i];
        if pod_state(s) != CellState::Down || s[NODE] != CellState::Ok || self.stale_contrast(i) {
            return None;
        }
        let r = *self.pair_of.get(&(b, pc.src))?;
        let rs = &self.states[r];
        (rs[NODE] == CellState::Down && pod_state(rs) == CellState::Down).then_some(r)
    }

    fn network_finding(
        &mut self,
        candidate: Candidate,
        pairs: &[usize],
        routers: &[String],
        dead_zone_pairs: &[(usize, usize)],
    ) {
        let idx = self.drafts.len();
        let d = match candidate {
            Candidate::Zone(za, zb) => {
                self.zone_finding.insert(unordered_key(za, zb), idx);
                self.zone_draft(&[(za, zb)], pairs)
            }
            Candidate::ZoneIsolated(z) => {
                let zp: Vec<(usize, usize)> = dead_zone_pairs
                    .iter()
                    .copied()
                    .filter(|(a, b)| *a == z || *b == z)
                    .collect();
                for &(a, b) in &zp {
                    self.zone_finding.insert(unordered_key(a, b), idx);
                }
                self.zone_draft(&zp, pairs)
            }
            Candidate::NodeDown(x) => {
                self.node_finding.insert(x, idx);
                self.node_down_draft(x, pairs)
            }
            Candidate::NodeCni(x) => {
                self.node_finding.insert(x, idx);
                self.cni_draft(x, pairs)
            }
            Candidate::Egress(x) => {
                self.egress_finding.insert(
                    x,
                    RoutingFinding {
                        draft: idx,
                        pairs: pairs.to_vec(),
                    },
                );
                self.egress_draft(Some(x), None, pairs)
            }
            Candidate::Router(r) => {
                self.egress_draft(None, routers.get(r).map(String::as_str), pairs)
            }
        };
        self.push_pairs(d, pairs);
    }

    fn leftovers(&mut self, left: &[usize]) {
        // Cause per pair: node IPs dead too → the underlay between them (vpc); else routing.
        let mut by_cause: BTreeMap<Cause, Vec<usize>> = BTreeMap::new();
        for &i in left {
            let c = if self.states[i][NODE] == CellState::Down {
                Cause::Vpc
            } else {
                Cause::Routing
            };
            by_cause.entry(c).or_default().push(i);
        }
        for (cause, pairs) in by_cause {
            // Star cover: a node common to pairs with ≥ 2 different counterparts.
            let mut star: HashMap<usize, BTreeSet<usize>> = HashMap::new();
            for &i in &pairs {
                let pc = &self.m.pairs[i];
                let Dest::Node(d) = pc.dst else { continue };
                star.entry(pc.src).or_default().insert(d);
                star.entry(d).or_default().insert(pc.src);
            }
            let mut by_node: HashMap<usize, Vec<usize>> = HashMap::new();
            for &i in &pairs {
                let pc = &self.m.pairs[i];
                let Dest::Node(d) = pc.dst else { continue };
                by_node.entry(pc.src).or_default().push(i);
                by_node.entry(d).or_default().push(i);
            }
            let mut order: Vec<(usize, usize)> = star.iter().map(|(n, s)| (*n, s.len())).collect();
            order.sort_by_key(|(n, c)| (Reverse(*c), *n));
            let mut done: BTreeSet<usize> = BTreeSet::new();
            for (x, _) in order {
                let mine: Vec<usize> = by_node
                    .get(&x)
                    .map(|v| v.iter().copied().filter(|i| !done.contains(i)).collect())
                    .unwrap_or_default();
                let others: BTreeSet<usize> = mine
                    .iter()
                    .filter_map(|&i| {
                        let pc = &self.m.pairs[i];
                        match pc.dst {
                            Dest::Node(d) if d == x => Some(pc.src),
                            Dest::Node(d) => Some(d),
                            Dest::Target(_) => None,
                        }
                    })
                    .collect();
                if others.len() < 2 {
                    continue;
                }
                done.extend(mine.iter().copied());
                let d = self.partial_node_draft(cause, x, &others, &mine);
                self.push_pairs(d, &mine);
            }
            let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
            for &i in &pairs {
                if done.contains(&i) {
                    continue;
                }
                let pc = &self.m.pairs[i];
                let Dest::Node(d) = pc.dst else { continue };
                groups.entry(unordered_key(pc.src, d)).or_default().push(i);
            }
            for ((a, b), g) in groups {
                let d = self.pair_draft(cause, a, b, &g);
                self.push_pairs(d, &g);
            }
        }
    }
}
