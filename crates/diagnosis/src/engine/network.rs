//! Stage 3, network: failing node pairs explained greedily by the candidate (zone pair, node
//! down, node CNI, a node's or a router's routing table) covering most of them; the rest folded
//! per node or reported per pair.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use super::clean::{max_age, net_failing, pod_layers, pod_state};
use super::*;
use crate::matrix::{AgentStatus, Dest};
use crate::report::Cause;

/// A way to explain a set of failing node pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cand {
    Zone(usize, usize),
    /// One zone cut off from every zone in `dead_zone_pairs` it appears in (≥ 2 of them).
    ZoneIso(usize),
    NodeDown(usize),
    NodeCni(usize),
    Egress(usize),
    Router(usize),
}

impl Engine<'_> {
    pub(super) fn network_stage(&mut self) {
        let failing: Vec<usize> = self
            .peer
            .iter()
            .copied()
            .filter(|i| !self.explained.contains_key(i) && net_failing(&self.st[*i]))
            .collect();
        if failing.is_empty() {
            return;
        }
        let fpos: HashMap<usize, usize> =
            failing.iter().enumerate().map(|(k, i)| (*i, k)).collect();
        let n = self.m.nodes.len();

        // Node-level facts.
        let dead_missing: Vec<bool> = (0..n)
            .map(|x| {
                let a = self.agg[x];
                a.in_node.known > 0
                    && a.in_node.ratio() >= self.p.node_down_ratio
                    && self.m.nodes[x].agent != AgentStatus::Reporting
            })
            .collect();

        // Zone blocks; first the oldest onset in each cross-zone block.
        let mut cross_onset: HashMap<(usize, usize), Option<f64>> = HashMap::new();
        for &i in &self.peer {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            if let (Some(za), Some(zb)) = (self.zone_id[pc.src], self.zone_id[d]) {
                if za != zb && !self.explained.contains_key(&i) {
                    let o = cross_onset.entry(zkey(za, zb)).or_default();
                    *o = max_age(*o, self.onset_in(i, &[POD, NODE, HTTP, TCP]));
                }
            }
        }
        let mut cross: HashMap<(usize, usize), (Agg, Agg, Vec<usize>)> = HashMap::new();
        let mut intra: HashMap<usize, Agg> = HashMap::new();
        for &i in &self.peer {
            if self.explained.contains_key(&i) {
                continue;
            }
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let (Some(za), Some(zb)) = (self.zone_id[pc.src], self.zone_id[d]) else {
                continue;
            };
            let s = self.st[i];
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
                let on = cross_onset.get(&zkey(za, zb)).copied().flatten();
                let stale_node = self.good_predates(i, &[NODE], on);
                let stale_pod = self.good_predates(i, pod_layers(&s), on);
                let e = cross.entry(zkey(za, zb)).or_default();
                e.0.add_cell(s[NODE].known(), s[NODE] == St::Down, stale_node, false);
                e.1.add_cell(pod.known(), pod == St::Down, stale_pod, false);
                if let Some(&k) = fpos.get(&i) {
                    e.2.push(k);
                }
            }
        }

        let mut cands: Vec<(Cand, Vec<usize>, u8)> = Vec::new();
        for ((za, zb), (node_l, pod_l, cover)) in &cross {
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
                cands.push((Cand::Zone(*za, *zb), cover.clone(), 1));
            } else if shape
                && (node_l.known == 0 || node_l.ratio_if_stale_fail() >= zr)
                && pod_l.ratio_if_stale_fail() >= zr
            {
                // The block's other pairs still show successes from before its failures began.
                self.pending.extend(cover.iter().map(|&k| failing[k]));
            }
        }
        let dead_zone_pairs: Vec<(usize, usize)> = {
            let mut v: Vec<(usize, usize)> = cands
                .iter()
                .filter_map(|(c, _, _)| match c {
                    Cand::Zone(a, b) => Some((*a, *b)),
                    _ => None,
                })
                .collect();
            v.sort_unstable();
            v
        };
        for z in 0..self.zones.len() {
            let mine: Vec<usize> = cands
                .iter()
                .filter(|(c, _, _)| matches!(c, Cand::Zone(a, b) if *a == z || *b == z))
                .flat_map(|(_, cover, _)| cover.iter().copied())
                .collect();
            let n_pairs = dead_zone_pairs
                .iter()
                .filter(|(a, b)| *a == z || *b == z)
                .count();
            if n_pairs >= 2 {
                cands.push((Cand::ZoneIso(z), mine, 1));
            }
        }
        // Per-node covers.
        let mut touching: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut egress: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut routers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (k, &i) in failing.iter().enumerate() {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            touching[pc.src].push(k);
            touching[d].push(k);
            match self.netunreach_owner(i) {
                Some(Ok((owner, _))) => {
                    let v = egress.entry(owner).or_default();
                    v.push(k);
                    if let Some(&r) = self.pair_of.get(&(d, pc.src)).and_then(|r| fpos.get(r)) {
                        v.push(r);
                    }
                }
                Some(Err(ip)) => {
                    let v = routers.entry(ip).or_default();
                    v.push(k);
                    if let Some(&r) = self.pair_of.get(&(d, pc.src)).and_then(|r| fpos.get(r)) {
                        v.push(r);
                    }
                }
                None => {
                    // No ICMP error (rate-limited, or aged out of the window): the shape alone.
                    if let Some(r) = self.silent_route_reverse(i) {
                        if let Some(&r) = fpos.get(&r) {
                            let v = egress.entry(pc.src).or_default();
                            v.push(k);
                            v.push(r);
                        }
                    }
                }
            }
        }
        for (x, touch) in touching.iter().enumerate() {
            let a = self.agg[x];
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
                cands.push((Cand::NodeDown(x), touch.clone(), prio));
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
            let maybe_fine = (a.in_node.known > 0 && a.in_node.ratio() <= fine)
                || (a.in_node.known == 0 && agent == AgentStatus::Reporting);
            // Inbound: pod layers only (node IPs answer). Outbound: everything, since the
            // agent itself lives on the broken pod network.
            let cover: Vec<usize> = touch
                .iter()
                .copied()
                .filter(|&k| {
                    let i = failing[k];
                    self.m.pairs[i].src == x || self.st[i][NODE] != St::Down
                })
                .collect();
            let settled: Vec<usize> = cover
                .iter()
                .copied()
                .filter(|&k| !self.stale_contrast(failing[k]))
                .collect();
            if node_fine
                && a.in_pod.known > a.in_pod.pend
                && a.in_pod.ratio_settled() >= self.p.hit_ratio
                && !settled.is_empty()
            {
                cands.push((Cand::NodeCni(x), settled, 3));
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
            cands.push((Cand::Egress(x), cover, 4));
        }
        let router_names: Vec<String> = routers.keys().cloned().collect();
        for (r, (_, mut cover)) in routers.into_iter().enumerate() {
            cover.sort_unstable();
            cover.dedup();
            cands.push((Cand::Router(r), cover, 5));
        }

        // A pair a pending candidate would explain is explained by no other contrast-based
        // candidate yet (real data: at `partition` onset, node-1 gathers no agent across the
        // cut and node-2's node IP had failed from both zone-a sources while node-4's still
        // showed successes from before: `node_down` node-2 for half a second). A "net
        // unreachable" (egress, router) is positive evidence and not held back.
        if !self.pending.is_empty() {
            for (c, cover, _) in cands.iter_mut() {
                if !matches!(c, Cand::Egress(_) | Cand::Router(_)) {
                    cover.retain(|&k| !self.pending.contains(&failing[k]));
                }
            }
            cands.retain(|(_, cover, _)| !cover.is_empty());
        }

        // Lazy greedy set cover.
        let mut covered = vec![false; failing.len()];
        let mut heap: BinaryHeap<(usize, Reverse<u8>, Reverse<usize>)> = cands
            .iter()
            .enumerate()
            .map(|(ci, (_, cover, prio))| (cover.len(), Reverse(*prio), Reverse(ci)))
            .collect();
        while let Some((count, prio, Reverse(ci))) = heap.pop() {
            let fresh = cands[ci].1.iter().filter(|&&k| !covered[k]).count();
            if fresh == 0 {
                continue;
            }
            if fresh < count {
                heap.push((fresh, prio, Reverse(ci)));
                continue;
            }
            let (cand, cover, _) = &cands[ci];
            for &k in cover {
                covered[k] = true;
            }
            let pairs: Vec<usize> = cover.iter().map(|&k| failing[k]).collect();
            self.network_finding(*cand, &pairs, &router_names, &dead_zone_pairs);
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
        let s = &self.st[i];
        if pod_state(s) != St::Down || s[NODE] != St::Ok || self.stale_contrast(i) {
            return None;
        }
        let r = *self.pair_of.get(&(b, pc.src))?;
        let rs = &self.st[r];
        (rs[NODE] == St::Down && pod_state(rs) == St::Down).then_some(r)
    }

    fn network_finding(
        &mut self,
        cand: Cand,
        pairs: &[usize],
        routers: &[String],
        dead_zone_pairs: &[(usize, usize)],
    ) {
        let idx = self.drafts.len();
        let d = match cand {
            Cand::Zone(za, zb) => {
                self.zone_finding.insert(zkey(za, zb), idx);
                self.zone_draft(&[(za, zb)], pairs)
            }
            Cand::ZoneIso(z) => {
                let zp: Vec<(usize, usize)> = dead_zone_pairs
                    .iter()
                    .copied()
                    .filter(|(a, b)| *a == z || *b == z)
                    .collect();
                for &(a, b) in &zp {
                    self.zone_finding.insert(zkey(a, b), idx);
                }
                self.zone_draft(&zp, pairs)
            }
            Cand::NodeDown(x) => {
                self.node_finding.insert(x, idx);
                self.node_down_draft(x, pairs)
            }
            Cand::NodeCni(x) => {
                self.node_finding.insert(x, idx);
                self.cni_draft(x, pairs)
            }
            Cand::Egress(x) => {
                self.egress_finding.insert(x, (idx, pairs.to_vec()));
                self.egress_draft(Some(x), None, pairs)
            }
            Cand::Router(r) => self.egress_draft(None, routers.get(r).map(String::as_str), pairs),
        };
        self.push_pairs(d, pairs);
    }

    fn leftovers(&mut self, left: &[usize]) {
        // Cause per pair: node IPs dead too → the underlay between them (vpc); else routing.
        let mut by_cause: BTreeMap<Cause, Vec<usize>> = BTreeMap::new();
        for &i in left {
            let c = if self.st[i][NODE] == St::Down {
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
                groups.entry(zkey(pc.src, d)).or_default().push(i);
            }
            for ((a, b), g) in groups {
                let d = self.pair_draft(cause, a, b, &g);
                self.push_pairs(d, &g);
            }
        }
    }
}
