//! Stage 1, cleaning: each cell's verdict ([`CellState`]) and a pair's, the onset rules (a success
//! probed before a failure began is no evidence against it), and the per-node tallies the
//! later stages read.

use std::collections::{BTreeSet, HashMap};

use super::state::*;
use crate::input::{ErrKind, ErrorInfo};
use crate::matrix::{AgentStatus, Cell, Dest, IpRole, Matrix};

/// Onset: a cell whose last probe is at least `onset` seconds old (a failing cell's
/// `failing_for_seconds`) predates that failure and is no evidence against it. Without the ages
/// (older agents, directly or through Prometheus) nothing predates anything.
/// Why: in a fault's first second some paths have been probed since and fail while others still
/// show their last success from before.
fn predates(c: &Cell, onset: Option<f64>) -> bool {
    matches!((c.last_probe_age_seconds, onset), (Some(a), Some(o)) if a >= o)
}

/// The cell's last probe succeeded after the failure that began `onset` seconds ago (its last
/// probe failing is no success, whenever it was).
fn answered_since(c: &Cell, onset: Option<f64>) -> bool {
    c.reachable != Some(false) && !predates(c, onset)
}

pub(super) fn max_age(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The layers that make a pair's pod-IP verdict ([`pod_state`]).
pub(super) fn pod_layers(s: &[CellState; 4]) -> &'static [usize] {
    if s[POD].known() {
        &[POD]
    } else {
        &[HTTP, TCP]
    }
}

/// Lost and sent packets (or failed and total probes when no packet figures).
pub(super) fn lost_of(c: &Cell) -> (u32, u32) {
    if c.sent > 0 {
        (c.sent.saturating_sub(c.received), c.sent)
    } else {
        (c.probes.saturating_sub(c.successes), c.probes)
    }
}

pub(super) fn success_ratio(c: &Cell) -> f64 {
    c.success_ratio.unwrap_or_else(|| {
        if c.probes == 0 {
            1.0
        } else {
            f64::from(c.successes) / f64::from(c.probes)
        }
    })
}

/// The cleaning rule for one cell.
pub fn cell_state(c: &Cell, interval: Option<f64>, window: Option<f64>, p: &Params) -> CellState {
    if c.probes < p.min_probes {
        return CellState::Unknown;
    }
    if let (Some(age), Some(w)) = (c.last_probe_age_seconds, window) {
        if age > 2.0 * w + interval.unwrap_or(0.0) {
            return CellState::Unknown; // stale: the source stopped probing this destination
        }
    }
    let kind = c.last_error.as_ref().map(ErrorInfo::kind);
    if c.reachable == Some(false) && matches!(kind, Some(ErrKind::LocalError | ErrKind::Io)) {
        return CellState::Unknown; // the prober's own trouble, not the network's
    }
    let ratio = success_ratio(c);
    let down_consec =
        c.reachable == Some(false) && c.consecutive_failures >= p.min_consecutive_failures;
    let down_ratio = c.reachable != Some(true)
        && c.probes >= p.min_ratio_probes
        && ratio <= p.dead_success_ratio;
    if down_consec || down_ratio {
        return CellState::Down;
    }
    let (lost, sent) = lost_of(c);
    if sent == 0 {
        return CellState::Ok;
    }
    if lossy_figures(lost, sent, p) {
        if !random_loss(c, interval, p, p.lossy_min_lost, p.lossy_min_ratio) {
            // An outage's marks, or one event: not loss (yet); a working path again once over.
            return if outage_over(c, interval) {
                CellState::Ok
            } else {
                CellState::Unknown
            };
        }
        let recovered = c.reachable == Some(true)
            && quiet_since(
                probing_age(c.last_error_age_seconds, c.last_probe_age_seconds),
                loss_events(c),
                interval,
                window,
            );
        return if recovered {
            CellState::Unknown
        } else {
            CellState::Lossy
        };
    }
    // The last probe failed whole, too few in a row to be down: no answer, so no contrast.
    if c.reachable == Some(false) {
        return CellState::Unknown;
    }
    CellState::Ok
}

/// An outage's marks in a path that has answered for more than 3 probe intervals since its
/// last error are a working path again (a contrast for other failures); until then, or without
/// the interval (older agents), the cell is unknown.
/// Why: by then every source has probed its paths again, so no stale failure elsewhere can
/// contradict it; earlier, a half-recovered fault would split into two findings.
fn outage_over(c: &Cell, interval: Option<f64>) -> bool {
    c.reachable == Some(true)
        && matches!((c.last_error_age_seconds, interval), (Some(age), Some(i)) if age > 3.0 * i)
}

/// `lost` of `sent` is loss worth a `Lossy` verdict.
fn lossy_figures(lost: u32, sent: u32, p: &Params) -> bool {
    sent > 0 && lost >= p.lossy_min_lost && f64::from(lost) / f64::from(sent) >= p.lossy_min_ratio
}

/// Loss, not an outage's marks: packets lost by probes that were answered, at least `min_lost`
/// and `min_ratio` of those sent; and when the last probe failed whole, lost in at least
/// `lossy_min_probes` answered probes (the window's errors, one per probe that lost anything,
/// less its failed probes), and in more than 2 when 2 or more failed whole and the path has
/// answered cleanly for 2 `interval`s since its last error. Probes that failed whole count for the down rules only. Without
/// per-probe packet figures (`sent` not a multiple of `probes`, or no packets) every lost packet
/// counts; without error counts the number of probes is not asked.
/// Why: an outage leaves whole failures plus at most one cut round per edge (1–2 of 3 echoes
/// answered), random loss leaves partial losses in answered probes again and again.
pub(super) fn random_loss(
    c: &Cell,
    interval: Option<f64>,
    p: &Params,
    min_lost: u32,
    min_ratio: f64,
) -> bool {
    let (lost, sent) = lost_of(c);
    if sent == 0 {
        return false;
    }
    let (lost, probes, failed) = if c.sent == 0 || c.probes == 0 || c.sent % c.probes != 0 {
        (lost, None, 0)
    } else {
        let failed = c.probes.saturating_sub(c.successes);
        let answered_lossy = (!c.errors.is_empty()).then(|| c.error_count().saturating_sub(failed));
        (
            lost.saturating_sub(failed * (c.sent / c.probes)),
            answered_lossy,
            failed,
        )
    };
    // An outage that began and ended in the window (answered cleanly for 2 intervals since)
    // cut a round at each edge; heavy loss keeps losing in answered probes.
    let edges = probes.is_some_and(|n| failed >= 2 && n <= 2)
        && c.reachable == Some(true)
        && matches!((c.last_error_age_seconds, interval), (Some(age), Some(i)) if age >= 2.0 * i);
    lost >= min_lost
        && f64::from(lost) / f64::from(sent) >= min_ratio
        && !edges
        && (c.reachable != Some(false) || probes.is_none_or(|n| n >= p.lossy_min_probes))
}

/// An error's age as of its cell's last probe, not of now: the quiet time the agent saw.
/// Why: figures read from a scrape tens of seconds old make every error look that much older,
/// and ongoing loss read as over (at 5,000 emulated nodes a 30 % lossy node's loss "ended" and
/// its HTTP timeouts read as `routing`, bench/README.md session 18).
fn probing_age(error: Option<f64>, probe: Option<f64>) -> Option<f64> {
    error.map(|e| (e - probe.unwrap_or(0.0)).max(0.0))
}

/// Loss events in a cell's window: its error count (per kind), else its lost packets.
fn loss_events(c: &Cell) -> u32 {
    if c.errors.is_empty() {
        let (lost, _) = lost_of(c);
        lost.max(u32::from(c.last_error.is_some()))
    } else {
        c.error_count()
    }
}

/// Has the trouble stopped? The newest error is `age` old and `events` errors fell within the
/// `window - age` seconds before it: quiet for more than 3 probe intervals and more than 4 times
/// the mean spacing of those errors. Steady loss is caught again at once (age resets); rare
/// errors (≥ window/4 apart) keep a cell lossy until they age out of the window.
/// Why: a spacing taken over the active part of the window does not grow as a cleared burst
/// ages out.
fn quiet_since(age: Option<f64>, events: u32, interval: Option<f64>, window: Option<f64>) -> bool {
    let (Some(age), Some(i)) = (age, interval) else {
        return false;
    };
    let active = window.map_or(age, |w| (w - age).max(i));
    let gap = active / f64::from(events.max(1));
    age > 3.0 * i && age > 4.0 * gap
}

/// A pair recovering from loss: every layer answers now and the pair as a whole (all its
/// layers' errors together) has been quiet long enough ([`quiet_since`]): its lossy cells become
/// unknown. Why: partial ICMP loss leaves few errors of its own, the HTTP probe on the same path
/// many, so the pair's errors together are the better clock.
fn pair_recovery(
    pc: &crate::matrix::PairCells,
    s: &mut [CellState; 4],
    interval: Option<f64>,
    window: Option<f64>,
) {
    if !s.contains(&CellState::Lossy) {
        return;
    }
    let cells = || pc.layers.iter().flatten();
    if cells().any(|c| c.reachable == Some(false)) {
        return;
    }
    let age = cells()
        .filter_map(|c| probing_age(c.last_error_age_seconds, c.last_probe_age_seconds))
        .min_by(f64::total_cmp);
    let events: u32 = cells().map(loss_events).sum();
    if quiet_since(age, events, interval, window) {
        for x in s.iter_mut().filter(|x| **x == CellState::Lossy) {
            *x = CellState::Unknown;
        }
    }
}

/// A node that just came back: paths of its own to or from at least two other places (nodes, or
/// targets whose node is unknown) failed most of the window and answer now. Its failing cells,
/// as source or destination, last probed before it came back are unknown until probed again (at
/// most one interval; a timed-out probe counts from when it was sent). Why: after a fault clears, paths come back one probe at a time; one not
/// yet probed again still shows the old failure next to fresh successes, and that mix reads as a
/// new fault on an uninvolved node. Two places, not one: one path coming back is that path's
/// own news (a route cleared) and must not hold a fresh fault elsewhere on the same node. When
/// it came back: the first probe after a path's last failure (one interval later; without the
/// interval, its last probe — later, so more is held), the latest such moment.
fn node_recovery(m: &Matrix, states: &mut [[CellState; 4]]) {
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Place {
        Node(usize),
        Target(usize),
    }
    let place_of = |d: Dest| match d {
        Dest::Node(n) => Place::Node(n),
        Dest::Target(t) => m
            .targets
            .get(t)
            .and_then(|t| t.node)
            .map_or(Place::Target(t), Place::Node),
    };
    // Per place: the latest moment (smallest age) a path came back, and with whom.
    let mut back: HashMap<Place, (f64, BTreeSet<usize>)> = HashMap::new();
    let key = |p: Place| match p {
        Place::Node(n) => n,
        Place::Target(t) => usize::MAX - t,
    };
    for pc in &m.pairs {
        let interval = m.nodes.get(pc.src).and_then(|n| n.interval_seconds);
        let (src, dst) = (Place::Node(pc.src), place_of(pc.dst));
        for c in pc.layers.iter().flatten() {
            let Some(probed) = c.last_probe_age_seconds else {
                continue;
            };
            if c.reachable != Some(true) || c.probes < 2 || success_ratio(c) >= 0.5 {
                continue;
            }
            let at = match (c.last_error_age_seconds, interval) {
                (Some(failed), Some(i)) => (failed - i).max(probed),
                _ => probed,
            };
            for (me, other) in [(src, dst), (dst, src)] {
                let e = back.entry(me).or_insert((at, BTreeSet::new()));
                e.0 = e.0.min(at);
                e.1.insert(key(other));
            }
        }
    }
    let came_back = |p: Place| back.get(&p).filter(|b| b.1.len() >= 2).map(|b| b.0);
    for (i, pc) in m.pairs.iter().enumerate() {
        let since = [came_back(Place::Node(pc.src)), came_back(place_of(pc.dst))]
            .into_iter()
            .flatten()
            .min_by(f64::total_cmp);
        let Some(since) = since else {
            continue;
        };
        let timeout = m.nodes.get(pc.src).and_then(|n| n.timeout_seconds);
        for (k, c) in pc.layers.iter().enumerate() {
            // When the last probe was sent: a timed-out one a timeout before it ended (a probe
            // sent into the outage can time out after the path came back).
            let before = c
                .as_ref()
                .and_then(|c| {
                    let timed_out = c.reachable == Some(false)
                        && c.last_error
                            .as_ref()
                            .is_some_and(|e| e.kind() == ErrKind::Timeout);
                    c.last_probe_age_seconds
                        .map(|age| age + timeout.filter(|_| timed_out).unwrap_or(0.0))
                })
                .is_some_and(|sent| sent > since);
            if states[i][k] == CellState::Down && before {
                states[i][k] = CellState::Unknown;
            }
        }
    }
}

impl Tally {
    pub(super) fn add(&mut self, known: bool, bad: bool) {
        if known {
            self.known += 1;
            self.bad += u32::from(bad);
        }
    }
    /// `add`, noting a good cell that predates the failures (`stale`) or a bad one whose
    /// contrast does (`pending`).
    pub(super) fn add_cell(&mut self, known: bool, bad: bool, stale: bool, pending: bool) {
        self.add(known, bad);
        if known && bad {
            self.pending += u32::from(pending);
        } else if known {
            self.stale += u32::from(stale);
        }
    }
    /// The bad share once the stale good ones are probed again and fail too: what the ratio
    /// may become (a candidate that passes only with it is pending, not refuted).
    pub(super) fn ratio_if_stale_fail(self) -> f64 {
        if self.known == 0 {
            0.0
        } else {
            f64::from(self.bad + self.stale) / f64::from(self.known)
        }
    }
    /// The bad share counting only failures whose contrast is fresh (stale good ones still
    /// count as good: they refute until probed again).
    pub(super) fn ratio_settled(self) -> f64 {
        let known = self.known - self.pending;
        if known == 0 {
            0.0
        } else {
            f64::from(self.bad - self.pending) / f64::from(known)
        }
    }
    /// The bad share among evidence probed since the failures began; `None` without any.
    pub(super) fn fresh_ratio(self) -> Option<f64> {
        let known = self.known - self.stale;
        (known > 0).then(|| f64::from(self.bad) / f64::from(known))
    }
    pub(super) fn ratio(self) -> f64 {
        if self.known == 0 {
            0.0
        } else {
            f64::from(self.bad) / f64::from(self.known)
        }
    }
    pub(super) fn good(self) -> u32 {
        self.known - self.bad
    }
    pub(super) fn frac(self) -> String {
        format!("{}/{}", self.bad, self.known)
    }
}

/// Who answered "net unreachable" ([`Engine::net_unreachable_from`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NetUnreachableFrom {
    /// A node: its own stack (`role` none, a local ENETUNREACH) or one of its addresses.
    Node { node: usize, role: Option<IpRole> },
    /// A router that is no node (its address, or the raw `from` text).
    Router(String),
}

pub(super) fn worst_app(s: &[CellState; 4]) -> CellState {
    match (s[HTTP], s[TCP]) {
        (CellState::Down, _) | (_, CellState::Down) => CellState::Down,
        (CellState::Lossy, _) | (_, CellState::Lossy) => CellState::Lossy,
        (CellState::Ok, _) | (_, CellState::Ok) => CellState::Ok,
        _ => CellState::Unknown,
    }
}

/// The pod-IP verdict: ICMP to the pod IP, or the HTTP/TCP probe when ICMP is not measured.
pub(super) fn pod_state(s: &[CellState; 4]) -> CellState {
    if s[POD].known() {
        s[POD]
    } else {
        worst_app(s)
    }
}

pub(super) fn net_failing(s: &[CellState; 4]) -> bool {
    pod_state(s) == CellState::Down || s[NODE] == CellState::Down
}

impl<'a> Engine<'a> {
    pub(super) fn new(m: &'a Matrix, p: &'a Params) -> Engine<'a> {
        let n = m.nodes.len();
        let min_rounds_ok = |r: Option<u64>| r.is_none_or(|r| r >= p.min_rounds);
        let usable: Vec<bool> = m
            .nodes
            .iter()
            .map(|x| x.agent == AgentStatus::Reporting && min_rounds_ok(x.rounds))
            .collect();
        let restarting: Vec<bool> = m
            .nodes
            .iter()
            .map(|x| {
                x.agent == AgentStatus::NotReady
                    || (x.agent == AgentStatus::Reporting && !min_rounds_ok(x.rounds))
            })
            .collect();
        let mut states = Vec::with_capacity(m.pairs.len());
        let mut raw_loss = Vec::with_capacity(m.pairs.len());
        let mut peer_pairs = Vec::new();
        let mut target_pairs = Vec::new();
        let mut pair_of = HashMap::new();
        for (i, pc) in m.pairs.iter().enumerate() {
            let src = &m.nodes[pc.src];
            let mut s = [CellState::Unknown; 4];
            let mut loss = false;
            if usable.get(pc.src).copied().unwrap_or(false) {
                for (k, c) in pc.layers.iter().enumerate() {
                    if let Some(c) = c {
                        s[k] = cell_state(c, src.interval_seconds, src.window_seconds, p);
                    }
                }
                pair_recovery(pc, &mut s, src.interval_seconds, src.window_seconds);
                loss = pc.layers[..2].iter().flatten().any(|c| {
                    random_loss(
                        c,
                        src.interval_seconds,
                        p,
                        p.lossy_min_lost,
                        p.lossy_min_ratio,
                    )
                });
                match pc.dst {
                    Dest::Node(d) => {
                        if restarting.get(d).copied().unwrap_or(false) {
                            s[HTTP] = CellState::Unknown; // its agent is (re)starting
                        }
                        peer_pairs.push(i);
                        pair_of.insert((pc.src, d), i);
                    }
                    Dest::Target(_) => target_pairs.push(i),
                }
            }
            states.push(s);
            raw_loss.push(loss);
        }
        node_recovery(m, &mut states);
        let mut zones: Vec<String> = m
            .nodes
            .iter()
            .filter_map(|x| x.zone.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        zones.dedup();
        let zone_index: HashMap<&str, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.as_str(), i))
            .collect();
        let zone_id = m
            .nodes
            .iter()
            .map(|x| x.zone.as_deref().and_then(|z| zone_index.get(z).copied()))
            .collect();
        let mut e = Engine {
            m,
            p,
            restarting,
            states,
            peer_pairs,
            target_pairs,
            pair_of,
            zone_id,
            zones,
            node_tally: vec![NodeTally::default(); n],
            drafts: Vec::new(),
            explained: HashMap::new(),
            node_finding: HashMap::new(),
            egress_finding: HashMap::new(),
            zone_finding: HashMap::new(),
            deferred_loss: Vec::new(),
            raw_loss,
            deferred_app_loss: Vec::new(),
            onset: Vec::new(),
            in_onset: vec![None; n],
            out_onset: vec![None; n],
            pending: BTreeSet::new(),
        };
        e.onsets();
        e.aggregate();
        e
    }

    fn onsets(&mut self) {
        self.onset = self
            .m
            .pairs
            .iter()
            .zip(&self.states)
            .map(|(pc, s)| {
                let mut o = [None; 4];
                for (k, c) in pc.layers.iter().enumerate() {
                    if s[k] == CellState::Down {
                        o[k] = c.as_ref().and_then(|c| c.failing_for_seconds);
                    }
                }
                o
            })
            .collect();
        for &i in &self.peer_pairs {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let o = self.onset[i].iter().copied().fold(None, max_age);
            self.in_onset[d] = max_age(self.in_onset[d], o);
            self.out_onset[pc.src] = max_age(self.out_onset[pc.src], o);
        }
    }

    /// The oldest onset among the failing cells of pair `i` in `layers`.
    pub(super) fn onset_in(&self, i: usize, layers: &[usize]) -> Option<f64> {
        layers.iter().map(|&k| self.onset[i][k]).fold(None, max_age)
    }

    /// Pair `i`'s known, not failing cells in `layers` (at least one) have not answered since
    /// `onset`: their last success predates it, or their last probe failed.
    pub(super) fn good_predates(&self, i: usize, layers: &[usize], onset: Option<f64>) -> bool {
        if onset.is_none() {
            return false;
        }
        let s = &self.states[i];
        let mut any = false;
        for &k in layers {
            if !s[k].known() || s[k] == CellState::Down {
                continue;
            }
            let Some(c) = self.m.pairs[i].layers[k].as_ref() else {
                continue;
            };
            if answered_since(c, onset) {
                return false;
            }
            any = true;
        }
        any
    }

    /// A failing peer pair whose contrast — its node IP answering while its pod IP fails, or
    /// the other way round — was last probed before the failure began, or is itself an
    /// unconfirmed first failure: it may be failing too by now, so the pair says neither
    /// `cni`/`routing` nor anything else yet. Needs the failure's onset age.
    pub(super) fn stale_contrast(&self, i: usize) -> bool {
        let s = &self.states[i];
        let pl = pod_layers(s);
        match (pod_state(s) == CellState::Down, s[NODE] == CellState::Down) {
            (true, false) => self.contrast_predates(i, &[NODE], self.onset_in(i, pl)),
            (false, true) => {
                self.contrast_predates(i, &[POD, HTTP, TCP], self.onset_in(i, &[NODE]))
            }
            _ => false,
        }
    }

    /// Pair `i`'s cells in `layers` that are not down (at least one present) give no evidence
    /// since `onset`: none answered since — a success from before (also in a window still
    /// holding an earlier outage's residue), or a failure not confirmed yet. The prober's own
    /// trouble (local errors) is no onset.
    pub(super) fn contrast_predates(&self, i: usize, layers: &[usize], onset: Option<f64>) -> bool {
        if onset.is_none() {
            return false;
        }
        let mut any = false;
        for &k in layers {
            let Some(c) = self.m.pairs[i].layers[k].as_ref() else {
                continue;
            };
            if self.states[i][k] == CellState::Down {
                continue;
            }
            let local = c.reachable == Some(false)
                && c.last_error
                    .as_ref()
                    .is_some_and(|e| matches!(e.kind(), ErrKind::LocalError | ErrKind::Io));
            if local || answered_since(c, onset) {
                return false;
            }
            any = true;
        }
        any
    }

    /// Who answered "net unreachable" for a failing pod-layer probe of pair `i`: the node
    /// owning `from`, or the source itself for a local ENETUNREACH; else a router that is no
    /// node.
    pub(super) fn net_unreachable_from(&self, i: usize) -> Option<NetUnreachableFrom> {
        let pc = &self.m.pairs[i];
        let s = &self.states[i];
        for k in [POD, HTTP, TCP] {
            if s[k] != CellState::Down {
                continue;
            }
            // The window's per-kind list too: the gateway rate-limits its ICMP errors, so a
            // "net unreachable" is usually followed by plain timeouts.
            let Some(e) = pc.layers[k]
                .as_ref()
                .and_then(|c| c.error_of(ErrKind::NetUnreachable))
            else {
                continue;
            };
            return Some(match (e.from.as_deref(), e.from_ip()) {
                (None, _) => NetUnreachableFrom::Node {
                    node: pc.src,
                    role: None,
                },
                (Some(_), Some(ip)) => match self.m.owner_of(ip, pc.src) {
                    Some((node, role)) => NetUnreachableFrom::Node {
                        node,
                        role: Some(role),
                    },
                    None => NetUnreachableFrom::Router(ip.to_string()),
                },
                (Some(raw), None) => NetUnreachableFrom::Router(raw.to_string()),
            });
        }
        None
    }

    fn aggregate(&mut self) {
        for &i in &self.peer_pairs {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let s = self.states[i];
            let pod = pod_state(&s);
            let (a, b) = (pc.src, d);
            let pl = pod_layers(&s);
            let pending = self.stale_contrast(i);
            // The oldest failure touching the node, either way (a node that went down still
            // shows its own successes from before).
            let onset_at_dst = max_age(self.in_onset[b], self.out_onset[b]);
            let onset_at_src = max_age(self.in_onset[a], self.out_onset[a]);
            let node_known = s[NODE].known();
            let node_bad = s[NODE] == CellState::Down;
            let (stale_in_node, stale_in_pod) = (
                self.good_predates(i, &[NODE], onset_at_dst),
                self.good_predates(i, pl, onset_at_dst),
            );
            let (stale_out_node, stale_out_pod) = (
                self.good_predates(i, &[NODE], onset_at_src),
                self.good_predates(i, pl, onset_at_src),
            );
            self.node_tally[b]
                .in_node
                .add_cell(node_known, node_bad, stale_in_node, pending);
            if !node_known
                && pc.layers[NODE]
                    .as_ref()
                    .is_some_and(|c| c.reachable == Some(true))
            {
                self.node_tally[b].in_node_answering += 1;
            }
            self.node_tally[b].in_pod.add_cell(
                pod.known(),
                pod == CellState::Down,
                stale_in_pod,
                pending,
            );
            self.node_tally[b]
                .in_http
                .add(s[HTTP].known(), s[HTTP] == CellState::Down);
            self.node_tally[a]
                .out_node
                .add_cell(node_known, node_bad, stale_out_node, pending);
            self.node_tally[a].out_pod.add_cell(
                pod.known(),
                pod == CellState::Down,
                stale_out_pod,
                pending,
            );
            if pod == CellState::Down {
                if let Some(NetUnreachableFrom::Node { node: owner, .. }) =
                    self.net_unreachable_from(i)
                {
                    if owner == a {
                        self.node_tally[a].out_own_net_unreachable += 1;
                    }
                }
            }
        }
    }
}
