//! Probe planning at scale (pure, deterministic): which peers each agent probes.
//!
//! Up to [`PlanParams::full_mesh_max`] nodes every agent probes every other one. Beyond it the
//! plan is sampled, in the spirit of Pingmesh, in levels:
//!
//! 1. **groups**: inside each zone, nodes fall into groups of about `group_size` by jump
//!    consistent hashing; a full mesh inside each group (a ring of the next `2·group_size − 1`
//!    members when a group is unusually large, so the load stays bounded);
//! 2. **across groups**: the groups of a zone form a ring; every member probes one member of
//!    the next group, chosen by rendezvous hashing;
//! 3. **across zones**: each zone's `zone_reps` representatives (rendezvous-hashed) probe the
//!    representatives of every other zone, so every zone pair is probed every interval;
//! 4. **top-up**: a node still probed by fewer than `min_probers` others (a small group) gets
//!    watchers from its zone by rendezvous hashing, each watcher taking at most `min_probers`
//!    such duties;
//! 5. **rotation**: every agent also probes `rotate` peers at rotating offsets ±c of a global
//!    hash ring (both directions of a pair in the same epoch); the offsets advance every
//!    epoch, so every directed pair is probed within [`Plan::coverage_epochs`] epochs.
//!
//! Levels 1–4 are the stable core: a node joining or leaving changes only a small share of
//! its assignments (tested as a property). All hashing is our own (FNV-1a + a SplitMix64
//! finaliser), so every agent — of any build — computes the same plan from the same peer set.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Planner settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanParams {
    /// Full mesh up to this many nodes (this agent included).
    pub full_mesh_max: usize,
    /// Every node is probed by at least this many others every interval.
    pub min_probers: usize,
    /// Target group size inside a zone (level 1).
    pub group_size: usize,
    /// Representatives per zone, and pairs per ordered zone pair (level 3).
    pub zone_reps: usize,
    /// Rotating peers per agent per epoch (level 5; rounded down to even, at least 2); 0 turns
    /// rotation off.
    pub rotate: usize,
}

impl Default for PlanParams {
    fn default() -> Self {
        PlanParams {
            full_mesh_max: 200,
            min_probers: 3,
            group_size: 8,
            zone_reps: 3,
            rotate: 8,
        }
    }
}

impl PlanParams {
    /// Peers the rotation adds to each agent per epoch.
    pub fn rotating_peers(&self) -> usize {
        if self.rotate == 0 {
            0
        } else {
            2 * classes_per_epoch(self.rotate) as usize
        }
    }

    /// The most peers one agent can be given by a sampled plan over `zones` zones, whatever
    /// the number of nodes: its group ring, one peer in the next group, the representatives
    /// of the other zones, its top-up duties and the rotation. Fallback top-ups beyond the
    /// duty cap (when no watcher in the cluster has spare capacity) would come on top.
    pub fn max_peers(&self, zones: usize) -> usize {
        (2 * self.group_size.max(2) - 1)
            + 1
            + zones.saturating_sub(1) * self.zone_reps.max(1)
            + self.min_probers.max(1)
            + self.rotating_peers()
    }
}

/// A node as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub zone: Option<String>,
}

/// The plan for one epoch: for every node, the peers it probes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Node names, sorted; indices below refer to this list.
    pub names: Vec<String>,
    /// Zone names, sorted (`""` for nodes without a zone).
    pub zones: Vec<String>,
    pub zone_of: Vec<usize>,
    /// Whether the plan is sampled (more nodes than `full_mesh_max`).
    pub sampled: bool,
    pub epoch: u64,
    /// The stable core (levels 1–4), per source: sorted destination indices.
    pub core: Vec<Vec<u32>>,
    /// The whole plan for this epoch (core ∪ rotation), per source: sorted destination indices.
    pub out: Vec<Vec<u32>>,
    rotate: usize,
}

// ---- hashing ---------------------------------------------------------------------------------

/// The SplitMix64 finaliser every hash of the plan ends with (the simulator seeds from it too).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of text (FNV-1a, then mixed).
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn pair_weight(a: u64, b: u64) -> u64 {
    mix(a.rotate_left(17) ^ mix(b))
}

/// Jump consistent hash (Lamping & Veach): a bucket in `0..buckets`; growing `buckets` by one
/// moves only the keys that land in the new bucket.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    let n = i64::try_from(buckets.max(1)).unwrap_or(i64::MAX);
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    usize::try_from(b).unwrap_or(0)
}

const SALT_GROUP: u64 = 0x0067_726f_7570; // "group"
const SALT_REP: u64 = 0x0072_6570; // "rep"
const SALT_RING: u64 = 0x7269_6e67; // "ring"

// ---- the plan --------------------------------------------------------------------------------

impl Plan {
    /// Plan `nodes` (names unique; duplicates after the first are ignored) for `epoch`.
    pub fn build(nodes: &[NodeSpec], p: &PlanParams, epoch: u64) -> Plan {
        let mut uniq: BTreeMap<&str, &str> = BTreeMap::new();
        for n in nodes {
            uniq.entry(n.name.as_str())
                .or_insert(n.zone.as_deref().unwrap_or(""));
        }
        let names: Vec<String> = uniq.keys().map(|s| s.to_string()).collect();
        let zones: Vec<String> = uniq
            .values()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        let zone_index: HashMap<&str, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.as_str(), i))
            .collect();
        let zone_of: Vec<usize> = uniq.values().map(|z| zone_index[z]).collect();
        let n = names.len();
        let sampled = n > p.full_mesh_max;
        let mut plan = Plan {
            names,
            zones,
            zone_of,
            sampled,
            epoch,
            core: vec![Vec::new(); n],
            out: vec![Vec::new(); n],
            rotate: p.rotate,
        };
        if !sampled {
            for (s, out) in plan.core.iter_mut().enumerate() {
                *out = (0..n as u32).filter(|&d| d as usize != s).collect();
            }
            plan.out = plan.core.clone();
            return plan;
        }
        let h: Vec<u64> = plan.names.iter().map(|s| hash_str(s)).collect();
        let mut edges: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); n];
        let add = |edges: &mut Vec<BTreeSet<u32>>, s: usize, d: usize| {
            if s != d {
                edges[s].insert(d as u32);
            }
        };
        let g = p.group_size.max(2);
        let ring_max = 2 * g - 1;
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); plan.zones.len()];
        for (i, &z) in plan.zone_of.iter().enumerate() {
            members[z].push(i);
        }
        for zm in &members {
            // Level 1: groups, a mesh inside each (a bounded ring when large).
            let n_groups = zm.len().div_ceil(g).max(1);
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
            for &i in zm {
                groups[jump(mix(h[i] ^ SALT_GROUP), n_groups)].push(i);
            }
            groups.retain(|g| !g.is_empty());
            for grp in &mut groups {
                grp.sort_by_key(|&i| (h[i], i));
                let s = grp.len();
                let reach = (s - 1).min(ring_max);
                for r in 0..s {
                    for k in 1..=reach {
                        add(&mut edges, grp[r], grp[(r + k) % s]);
                    }
                }
            }
            // Level 2: every member probes one member of the next group, its rendezvous
            // choice (stable when either group changes).
            if groups.len() >= 2 {
                for gi in 0..groups.len() {
                    let next = &groups[(gi + 1) % groups.len()];
                    for &a in &groups[gi] {
                        if let Some(&b) = next.iter().max_by_key(|&&b| pair_weight(h[a], h[b])) {
                            add(&mut edges, a, b);
                        }
                    }
                }
            }
        }
        // Level 3: zone representatives probe each other's.
        let reps: Vec<Vec<usize>> = members
            .iter()
            .enumerate()
            .map(|(z, zm)| {
                let zh = mix(hash_str(&plan.zones[z]) ^ SALT_REP);
                let mut v: Vec<(u64, usize)> =
                    zm.iter().map(|&i| (pair_weight(zh, h[i]), i)).collect();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v.truncate(p.zone_reps.max(1));
                v.into_iter().map(|(_, i)| i).collect()
            })
            .collect();
        for (za, ra) in reps.iter().enumerate() {
            for (zb, rb) in reps.iter().enumerate() {
                if za == zb || ra.is_empty() || rb.is_empty() {
                    continue;
                }
                for k in 0..ra.len().max(rb.len()) {
                    add(&mut edges, ra[k % ra.len()], rb[k % rb.len()]);
                }
            }
        }
        // Level 4: top-up for nodes probed by fewer than `min_probers` others.
        let want = p.min_probers.min(n - 1);
        let mut probers: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); n];
        for (s, out) in edges.iter().enumerate() {
            for &d in out {
                probers[d as usize].insert(s as u32);
            }
        }
        let mut short: Vec<usize> = (0..n).filter(|&d| probers[d].len() < want).collect();
        short.sort_by_key(|&d| (h[d], d));
        let mut duties = vec![0usize; n];
        let cap = p.min_probers.max(1);
        for d in short {
            let zone_first = |i: usize| u8::from(plan.zone_of[i] != plan.zone_of[d]);
            let mut cands: Vec<(u8, u64, usize)> = (0..n)
                .filter(|&i| i != d && !probers[d].contains(&(i as u32)))
                .map(|i| (zone_first(i), u64::MAX - pair_weight(h[d], h[i]), i))
                .collect();
            cands.sort_unstable();
            // Prefer watchers with spare duty capacity, else anyone (never leave a node short).
            let mut picked: Vec<usize> = cands
                .iter()
                .map(|c| c.2)
                .filter(|&i| duties[i] < cap)
                .take(want - probers[d].len())
                .collect();
            if picked.len() < want - probers[d].len() {
                for c in &cands {
                    if picked.len() >= want - probers[d].len() {
                        break;
                    }
                    if !picked.contains(&c.2) {
                        picked.push(c.2);
                    }
                }
            }
            for i in picked {
                duties[i] += 1;
                edges[i].insert(d as u32);
                probers[d].insert(i as u32);
            }
        }
        plan.core = edges.iter().map(|e| e.iter().copied().collect()).collect();
        // Level 5: rotation over a global ring.
        let mut out = edges;
        if p.rotate > 0 && n > 1 {
            let mut ring = vec![0; n];
            for (i, pos) in ring_positions(&plan.names).into_iter().enumerate() {
                ring[pos] = i;
            }
            for off in rotation_offsets(n, p.rotate, epoch) {
                for pos in 0..n {
                    add(&mut out, ring[pos], ring[(pos + off) % n]);
                }
            }
        }
        plan.out = out.iter().map(|e| e.iter().copied().collect()).collect();
        plan
    }

    /// Plan a peer set as the agent `me` (in `zone`) sees it; `me` is added when the file
    /// does not list it.
    pub fn for_peer_set(
        set: &crate::peers::PeerSet,
        me: &str,
        zone: Option<&str>,
        p: &PlanParams,
        epoch: u64,
    ) -> Plan {
        let mut nodes: Vec<NodeSpec> = set
            .peers
            .iter()
            .map(|x| NodeSpec {
                name: x.node.clone(),
                zone: x.zone.clone(),
            })
            .collect();
        if set.peer(me).is_none() {
            nodes.push(NodeSpec {
                name: me.to_string(),
                zone: zone.map(str::to_string),
            });
        }
        Plan::build(&nodes, p, epoch)
    }

    /// How many nodes [`Plan::for_peer_set`] would plan (distinct names, `me` included), without
    /// building the plan: a full mesh's plan holds every directed pair twice (`core` and
    /// `out`), 32 MB of indices at 2,000 nodes, which an agent that probes everyone must not
    /// allocate only to read "not sampled" from it.
    pub fn nodes_in(set: &crate::peers::PeerSet, me: &str) -> usize {
        let mut names: std::collections::HashSet<&str> =
            set.peers.iter().map(|p| p.node.as_str()).collect();
        names.insert(me);
        names.len()
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    /// The peers `name` probes this epoch.
    pub fn peers_of(&self, name: &str) -> Vec<&str> {
        self.index(name)
            .map(|i| {
                self.out[i]
                    .iter()
                    .map(|&d| self.names[d as usize].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of (directed) probed pairs this epoch.
    pub fn pairs(&self) -> usize {
        self.out.iter().map(Vec::len).sum()
    }

    /// How many others probe each node this epoch.
    pub fn in_degrees(&self) -> Vec<usize> {
        let mut v = vec![0; self.names.len()];
        for out in &self.out {
            for &d in out {
                v[d as usize] += 1;
            }
        }
        v
    }

    /// Epochs until every directed pair has been probed at least once (1 for a full mesh;
    /// `None` when the plan is sampled and rotation is off).
    pub fn coverage_epochs(&self) -> Option<u64> {
        let n = self.names.len();
        if !self.sampled || n <= 1 {
            Some(1)
        } else if self.rotate == 0 {
            None
        } else {
            Some(offset_classes(n).div_ceil(classes_per_epoch(self.rotate)))
        }
    }

    /// Whether `s` probes `d` this epoch.
    pub fn probes(&self, s: usize, d: usize) -> bool {
        self.out[s].binary_search(&(d as u32)).is_ok()
    }

    /// The agents a mesh view gathered by `me` asks when it cannot ask them all: at most
    /// `max`, `me` left out, in this order (each agent once):
    ///
    /// 1. the probers of every node in `failing` (what `me` finds failing): the cells that
    ///    place a fault on a node, or between two, are theirs;
    /// 2. the peers `me` probes (its group, a peer of the next group, other zones'
    ///    representatives, its rotation);
    /// 3. then one agent of each zone in turn (zones in name order, each zone's agents in an
    ///    order hashed from `me`), so every zone has its say however few slots are left.
    ///
    /// Unknown names are ignored.
    pub fn view_subset(&self, me: &str, failing: &[&str], max: usize) -> Vec<&str> {
        let n = self.names.len();
        let mine = self.index(me);
        let mut taken = vec![false; n];
        let mut out: Vec<usize> = Vec::new();
        let mut take = |i: usize, out: &mut Vec<usize>| {
            if out.len() < max && Some(i) != mine && !taken[i] {
                taken[i] = true;
                out.push(i);
            }
        };
        let failing: BTreeSet<usize> = failing.iter().filter_map(|f| self.index(f)).collect();
        if !failing.is_empty() {
            for (src, dsts) in self.out.iter().enumerate() {
                if dsts.iter().any(|d| failing.contains(&(*d as usize))) {
                    take(src, &mut out);
                }
            }
        }
        if let Some(m) = mine {
            for &d in &self.out[m] {
                take(d as usize, &mut out);
            }
        }
        let seed = hash_str(me);
        let mut by_zone: Vec<Vec<usize>> = vec![Vec::new(); self.zones.len()];
        for i in 0..n {
            by_zone[self.zone_of[i]].push(i);
        }
        for z in &mut by_zone {
            z.sort_by_key(|&i| pair_weight(seed, hash_str(&self.names[i])));
        }
        let deepest = by_zone.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..deepest {
            if out.len() >= max {
                break;
            }
            for z in &by_zone {
                if let Some(&i) = z.get(k) {
                    take(i, &mut out);
                }
            }
        }
        out.into_iter().map(|i| self.names[i].as_str()).collect()
    }
}

/// The rotation epoch at wall-clock time `now`: agents agree on it through their clocks.
pub fn epoch_at(now: std::time::SystemTime, epoch_len: std::time::Duration) -> u64 {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    (secs / epoch_len.as_secs_f64().max(1.0)) as u64
}

/// Each node's position (by index into the sorted `names`) on the rotation's global ring.
pub fn ring_positions(names: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&i| (mix(hash_str(&names[i]) ^ SALT_RING), i));
    let mut pos = vec![0; names.len()];
    for (p, &i) in order.iter().enumerate() {
        pos[i] = p;
    }
    pos
}

/// Offset classes of a ring of `n`: `{c, n − c}` for `c` in `1..=⌊n/2⌋` (one offset when
/// `c = n − c`); together they hold every offset `1..n` once.
fn offset_classes(n: usize) -> u64 {
    (n / 2) as u64
}

/// Rotating classes per epoch: `rotate / 2` (at least one), so an epoch adds at most `rotate`
/// peers, and both directions of a rotated pair are probed in the same epoch.
fn classes_per_epoch(rotate: usize) -> u64 {
    (rotate / 2).max(1) as u64
}

/// The ring offsets probed in `epoch`: consecutive offset classes, advancing every epoch and
/// wrapping, so every offset comes up within [`Plan::coverage_epochs`] epochs.
pub fn rotation_offsets(n: usize, rotate: usize, epoch: u64) -> Vec<usize> {
    let k = offset_classes(n);
    if rotate == 0 || k == 0 {
        return Vec::new();
    }
    let per = classes_per_epoch(rotate).min(k);
    let start = (epoch % k) * (per % k) % k;
    let mut out = Vec::new();
    for j in 0..per {
        let c = 1 + ((start + j) % k) as usize;
        out.push(c);
        if n - c != c {
            out.push(n - c);
        }
    }
    out
}

/// The share of `old`'s stable assignments (core pairs between nodes present in both plans)
/// that `new` does not keep, plus those `new` adds between such nodes, over `old`'s count.
pub fn core_churn(old: &Plan, new: &Plan) -> f64 {
    let both: BTreeSet<&str> = old
        .names
        .iter()
        .filter(|n| new.index(n).is_some())
        .map(String::as_str)
        .collect();
    let set = |p: &Plan| -> BTreeSet<(String, String)> {
        let mut s = BTreeSet::new();
        for (i, out) in p.core.iter().enumerate() {
            let a = p.names[i].as_str();
            if !both.contains(a) {
                continue;
            }
            for &d in out {
                let b = p.names[d as usize].as_str();
                if both.contains(b) {
                    s.insert((a.to_string(), b.to_string()));
                }
            }
        }
        s
    };
    let (a, b) = (set(old), set(new));
    if a.is_empty() {
        return 0.0;
    }
    (a.symmetric_difference(&b).count()) as f64 / a.len() as f64
}

#[cfg(test)]
mod tests;
