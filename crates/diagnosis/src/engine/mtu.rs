//! Stage 2, MTU: pairs with path-MTU evidence, folded per node (star cover) or cluster-wide.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::clean::pod_state;
use super::state::*;
use crate::input::{ErrKind, MtuState};
use crate::matrix::Dest;
use crate::report::Cause;

fn mtu_steps(node: Option<&str>) -> Vec<String> {
    let on = node.map_or("a node".to_string(), |n| n.to_string());
    vec![
        format!("Runbook, last section (MTU mismatch): on {on}, `ip link show` — compare the uplink's MTU with cni0 / the pod veths / the overlay device (VXLAN needs 50 bytes, WireGuard 60)"),
        "From a pod: `ping -M do -s 1472 <peer pod IP>` (1500-byte packets; lower -s until it passes) and `ip route get <peer pod IP>` (a cached `mtu` shows a learned path MTU)".into(),
        "Align the CNI's MTU setting (flannel `--iface-mtu`, calico `veth_mtu`, cilium `mtu`) with the underlay; after fixing, `ip route flush cache` on the nodes".into(),
    ]
}

impl Engine<'_> {
    fn mtu_evidence(&self, i: usize) -> Option<String> {
        let pc = &self.m.pairs[i];
        let s = &self.states[i];
        let errs = pc
            .layers
            .iter()
            .flatten()
            .filter_map(|c| c.last_error.as_ref())
            .chain(pc.other_errors.iter());
        for e in errs {
            if matches!(e.kind(), ErrKind::FragNeeded | ErrKind::MessageTooLong) {
                return Some(e.describe());
            }
        }
        let small_ok = pod_state(s) != CellState::Down && s[NODE] != CellState::Down;
        // A "black hole" verdict on a path that loses packets is the loss, not MTU: under
        // loss, large DF probes vanish like small ones; a true black hole loses no small packet.
        let blackhole_ok =
            !self.raw_loss[i] && s[POD] != CellState::Lossy && s[NODE] != CellState::Lossy;
        match pc.mtu_state {
            Some(MtuState::Blackhole) if !blackhole_ok => None,
            Some(MtuState::Mismatch | MtuState::Blackhole) if small_ok => Some(format!(
                "path MTU {}{}",
                match pc.mtu_state {
                    Some(MtuState::Blackhole) => "black hole",
                    _ => "mismatch",
                },
                pc.path_mtu.map(|m| format!(" ({m})")).unwrap_or_default()
            )),
            _ => None,
        }
    }

    pub(super) fn mtu_stage(&mut self) {
        let suspects: Vec<(usize, String)> = self
            .peer_pairs
            .iter()
            .chain(self.target_pairs.iter())
            .filter_map(|&i| self.mtu_evidence(i).map(|e| (i, e)))
            .collect();
        if suspects.is_empty() {
            return;
        }
        let evidence: HashMap<usize, String> = suspects.iter().cloned().collect();
        // Star cover by node.
        let mut by_node: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut blamed: HashMap<usize, u32> = HashMap::new();
        for (i, _) in &suspects {
            let pc = &self.m.pairs[*i];
            by_node.entry(pc.src).or_default().push(*i);
            if let Some(d) = self.dst_node(*i) {
                if d != pc.src {
                    by_node.entry(d).or_default().push(*i);
                }
            }
            for e in pc
                .layers
                .iter()
                .flatten()
                .filter_map(|c| c.last_error.as_ref())
            {
                if e.kind() == ErrKind::FragNeeded {
                    if let Some((n, _)) = e.from_ip().and_then(|ip| self.m.owner_of(ip, pc.src)) {
                        *blamed.entry(n).or_default() += 1;
                    }
                }
            }
        }
        // Cluster-wide: beyond the most involved node, most other pairs show it too.
        let top = by_node
            .iter()
            .max_by_key(|(n, v)| (v.len(), blamed.get(n).copied().unwrap_or(0), Reverse(**n)))
            .map(|(n, _)| *n);
        if let Some(x) = top {
            let mut known = Tally::default();
            for &i in &self.peer_pairs {
                let pc = &self.m.pairs[i];
                if pc.src == x || pc.dst == Dest::Node(x) {
                    continue;
                }
                known.add(true, evidence.contains_key(&i));
            }
            if known.known >= 2 && known.ratio() >= self.p.hit_ratio {
                let all: Vec<usize> = suspects.iter().map(|(i, _)| *i).collect();
                let mut d = Draft::new(
                    Cause::Mtu,
                    "path MTU problem across the cluster: large packets are dropped or refused on most paths".into(),
                    0.8,
                );
                d.evidence.push(format!(
                    "{} paths show path-MTU trouble, including {} of the {} node pairs not touching {}",
                    all.len(),
                    known.frac(),
                    known.known,
                    self.name(x)
                ));
                self.mtu_examples(&mut d, &all, &evidence);
                d.next_steps = mtu_steps(None);
                self.push_mtu(d, &all);
                return;
            }
        }
        let mut covered: BTreeSet<usize> = BTreeSet::new();
        let mut nodes: Vec<(usize, Vec<usize>)> = by_node.into_iter().collect();
        nodes.sort_by_key(|(n, v)| {
            (
                Reverse(v.len()),
                Reverse(blamed.get(n).copied().unwrap_or(0)),
                *n,
            )
        });
        for (x, pairs) in nodes {
            let fresh: Vec<usize> = pairs
                .iter()
                .copied()
                .filter(|i| !covered.contains(i))
                .collect();
            let counterparts: BTreeSet<usize> = fresh
                .iter()
                .map(|&i| {
                    let pc = &self.m.pairs[i];
                    if pc.src == x {
                        self.dst_node(i).unwrap_or(usize::MAX - i)
                    } else {
                        pc.src
                    }
                })
                .collect();
            if counterparts.len() < 2 {
                continue;
            }
            let own = blamed.get(&x).copied().unwrap_or(0);
            let mut d = Draft::new(
                Cause::Mtu,
                format!(
                    "path MTU problem at {}: large packets to and from it are dropped or refused while small ones pass",
                    self.name(x)
                ),
                if own > 0 { 0.9 } else { 0.8 },
            );
            d.nodes.insert(x);
            d.evidence.push(format!(
                "{} paths touching {} show path-MTU trouble (with {} different peers or targets); small probes on them succeed",
                fresh.len(),
                self.name(x),
                counterparts.len()
            ));
            if own > 0 {
                d.evidence.push(format!(
                    "{own} \"fragmentation needed\" errors were sent by {}'s own addresses",
                    self.name(x)
                ));
            }
            self.mtu_examples(&mut d, &fresh, &evidence);
            d.next_steps = mtu_steps(Some(self.name(x)));
            covered.extend(fresh.iter().copied());
            self.push_mtu(d, &fresh);
        }
        // Pair level.
        let mut rest: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (i, _) in &suspects {
            if covered.contains(i) {
                continue;
            }
            let pc = &self.m.pairs[*i];
            let d = self.dst_node(*i).unwrap_or(pc.src);
            rest.entry(unordered_key(pc.src, d)).or_default().push(*i);
        }
        for ((a, b), pairs) in rest {
            let mut d = Draft::new(
                Cause::Mtu,
                format!(
                    "path MTU problem between {} and {}",
                    self.name(a),
                    self.name(b)
                ),
                0.7,
            );
            self.mtu_examples(&mut d, &pairs, &evidence);
            d.next_steps = mtu_steps(Some(self.name(a)));
            self.push_mtu(d, &pairs);
        }
    }

    fn mtu_examples(&self, d: &mut Draft, pairs: &[usize], evidence: &HashMap<usize, String>) {
        for &i in pairs.iter().take(3) {
            if let Some(e) = evidence.get(&i) {
                d.evidence.push(format!("{}: {e}", self.pair_label(i)));
            }
        }
    }

    fn push_mtu(&mut self, mut d: Draft, pairs: &[usize]) {
        let idx = self.drafts.len();
        for &i in pairs {
            let pc = &self.m.pairs[i];
            d.pairs.insert((pc.src, pc.dst));
            if let Dest::Target(t) = pc.dst {
                d.targets.insert(t);
            }
            self.explained.insert(i, idx);
        }
        self.drafts.push(d);
    }
}
