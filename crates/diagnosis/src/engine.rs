//! The engine: a [`Matrix`] in, a [`Diagnosis`] out. Pure, and O(pairs) (plus sorting).
//!
//! Stages, in the runbook's spirit (the network first, then policy and application):
//! 1. **Clean**: every cell becomes `Unknown`, `Ok`, `Lossy` or `Down` ([`Params`]); sources whose
//!    agent is not ready or just started, and cells with too few probes, are `Unknown`.
//!    `Lossy` counts only packets lost by answered probes: probes that failed whole are an
//!    outage's, and so is the one round an outage's edge cuts; a cell whose last probe failed
//!    after a single partial answer waits for the next probe (`random_loss`).
//!    **Onset**: a success last probed before a failure began (`failing_for_seconds`) is no
//!    evidence against it. A failing pair whose contrast is such a success (or an unconfirmed
//!    first failure), or that a zone / node-down / CNI candidate would explain once its stale
//!    successes are probed again, is *pending*: no other contrast-based candidate takes it and
//!    no finding reports it yet (likewise target and agent-HTTP pairs).
//! 2. **MTU**: pairs with path-MTU evidence (frag-needed / message-too-long errors, or an
//!    `mtu_state` of mismatch/blackhole while small probes pass), folded per node (star cover) or
//!    cluster-wide. Their other failures (stalled HTTP) are explained by it.
//! 3. **Network**: failing node pairs (pod-IP or node-IP ICMP down) explained greedily by the
//!    candidate covering most of them whose hit ratio clears its threshold: zone pair (`vpc`),
//!    node down, node CNI (or the node's routing table when its gateway answers net unreachable),
//!    a node's routing table (net unreachable from its address). What is left is folded per node
//!    when one node is common to ≥ 2 of them, else reported per node pair.
//! 4. **Targets and agents' HTTP**: failures not explained by stage 2/3 become `policy` (SYN
//!    timeouts with ICMP fine, or a NetworkPolicy that does not admit the port) or `application`
//!    (refused/reset/HTTP status, pod not Ready), or `cni` when the pod IP itself is dead.
//! 5. **Packet loss**: partial loss concentrated on a node's pairs (in or out), greedy by node;
//!    strong leftover loss per pair.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use super::input::{ErrKind, ErrorInfo, MtuState};
use super::matrix::{AgentStatus, Cell, Dest, IpRole, Matrix};
use super::report::{Cause, Diagnosis, Finding};

/// Thresholds. `Params::default()` documents the values used by the CLI and the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// A cell with fewer probes in its window is unknown (a node that just joined).
    pub min_probes: u32,
    /// A cell is down when its last `n` probes failed (and it has `min_probes`).
    pub min_consecutive_failures: u32,
    /// ... or when its success ratio is at most this with `min_ratio_probes` probes.
    pub dead_success_ratio: f64,
    pub min_ratio_probes: u32,
    /// A source whose agent has done fewer rounds is ignored (a restarting agent).
    pub min_rounds: u64,
    /// A cell is lossy when at least this many packets (or probes) were lost ...
    pub lossy_min_lost: u32,
    /// ... and they are at least this fraction of those sent.
    pub lossy_min_ratio: f64,
    /// ... and, when the last probe failed whole, they were lost in at least this many answered
    /// probes (when the window's error counts say): one partial answer before a failure is
    /// what the round an outage cut looks like.
    pub lossy_min_probes: u32,
    /// Loss not concentrated on a node is reported per pair only above these.
    pub pair_loss_min_ratio: f64,
    pub pair_loss_min_lost: u32,
    /// deTector's hit ratio: a candidate must fail on this share of the pairs it covers.
    pub hit_ratio: f64,
    /// Node down: node-IP ICMP to it fails from at least this share of sources.
    pub node_down_ratio: f64,
    /// "Node IP fine": node-IP ICMP to it fails from at most this share of sources.
    pub node_ip_fine_max: f64,
    /// Zone partition: the cross-zone block fails on this share of its pairs.
    pub zone_ratio: f64,
    /// ... while inside each zone at most this share fails.
    pub zone_intra_max: f64,
    /// Lossy node: this share of its inbound or outbound pairs lose packets.
    pub loss_node_ratio: f64,
    /// Output bound: pairs listed per finding (the evidence says how many there were).
    pub max_pairs_per_finding: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_probes: 3,
            min_consecutive_failures: 2,
            dead_success_ratio: 0.1,
            min_ratio_probes: 5,
            min_rounds: 2,
            lossy_min_lost: 2,
            lossy_min_ratio: 0.05,
            lossy_min_probes: 2,
            pair_loss_min_ratio: 0.2,
            pair_loss_min_lost: 3,
            hit_ratio: 0.6,
            node_down_ratio: 0.8,
            node_ip_fine_max: 0.2,
            zone_ratio: 0.8,
            zone_intra_max: 0.5,
            loss_node_ratio: 0.5,
            max_pairs_per_finding: 500,
        }
    }
}

/// Run the engine with the default thresholds.
pub fn diagnose(m: &Matrix) -> Diagnosis {
    diagnose_with(m, &Params::default())
}

pub fn diagnose_with(m: &Matrix, p: &Params) -> Diagnosis {
    let mut e = Engine::new(m, p);
    e.mtu_stage();
    e.network_stage();
    e.app_stage();
    e.loss_stage();
    Diagnosis::new(e.finish())
}

/// A cell's verdict after cleaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    Unknown,
    Ok,
    Lossy,
    Down,
}

impl St {
    fn known(self) -> bool {
        self != St::Unknown
    }
}

const POD: usize = 0;
const NODE: usize = 1;
const HTTP: usize = 2;
const TCP: usize = 3;

/// Onset: a success says nothing against a failure that began after it was probed. With
/// `failing_for_seconds` (the age of a failing cell's streak), a good cell whose last probe is
/// at least that old predates the failure: during the first second of a fault some paths have
/// been probed since and fail, others still show their last success from before (real data:
/// `partition` read as `cni` + `routing` for half a second). Without the ages (older agents,
/// directly or through Prometheus) nothing predates anything: today's reading.
fn predates(c: &Cell, onset: Option<f64>) -> bool {
    matches!((c.last_probe_age_seconds, onset), (Some(a), Some(o)) if a >= o)
}

/// The cell's last probe succeeded after the failure that began `onset` seconds ago (its last
/// probe failing is no success, whenever it was).
fn answered_since(c: &Cell, onset: Option<f64>) -> bool {
    c.reachable != Some(false) && !predates(c, onset)
}

fn max_age(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The layers that make a pair's pod-IP verdict ([`pod_state`]).
fn pod_layers(s: &[St; 4]) -> &'static [usize] {
    if s[POD].known() {
        &[POD]
    } else {
        &[HTTP, TCP]
    }
}

/// Lost and sent packets (or failed and total probes when no packet figures).
fn lost_of(c: &Cell) -> (u32, u32) {
    if c.sent > 0 {
        (c.sent.saturating_sub(c.received), c.sent)
    } else {
        (c.probes.saturating_sub(c.successes), c.probes)
    }
}

fn success_ratio(c: &Cell) -> f64 {
    c.success_ratio.unwrap_or_else(|| {
        if c.probes == 0 {
            1.0
        } else {
            f64::from(c.successes) / f64::from(c.probes)
        }
    })
}

/// The cleaning rule for one cell.
pub fn cell_state(c: &Cell, interval: Option<f64>, window: Option<f64>, p: &Params) -> St {
    if c.probes < p.min_probes {
        return St::Unknown;
    }
    if let (Some(age), Some(w)) = (c.last_probe_age_seconds, window) {
        if age > 2.0 * w + interval.unwrap_or(0.0) {
            return St::Unknown; // stale: the source stopped probing this destination
        }
    }
    let kind = c.last_error.as_ref().map(ErrorInfo::kind);
    if c.reachable == Some(false) && matches!(kind, Some(ErrKind::LocalError | ErrKind::Io)) {
        return St::Unknown; // the prober's own trouble, not the network's
    }
    let ratio = success_ratio(c);
    let down_consec =
        c.reachable == Some(false) && c.consecutive_failures >= p.min_consecutive_failures;
    let down_ratio = c.reachable != Some(true)
        && c.probes >= p.min_ratio_probes
        && ratio <= p.dead_success_ratio;
    if down_consec || down_ratio {
        return St::Down;
    }
    let (lost, sent) = lost_of(c);
    if sent == 0 {
        return St::Ok;
    }
    if lossy_figures(lost, sent, p) {
        if !random_loss(c, p, p.lossy_min_lost, p.lossy_min_ratio) {
            // An outage's marks, or one event: not loss (yet); a working path again once over.
            return if outage_over(c, interval) {
                St::Ok
            } else {
                St::Unknown
            };
        }
        let recovered = c.reachable == Some(true)
            && quiet_since(c.last_error_age_seconds, loss_events(c), interval, window);
        return if recovered { St::Unknown } else { St::Lossy };
    }
    St::Ok
}

/// An outage's marks in a path that has answered for more than 3 probe intervals since its
/// last error: by then every source has probed its paths again, so no stale failure elsewhere
/// can contradict it — it is a working path, a contrast for other failures. Until then it is
/// unknown (during a recovery, a path that answers again next to one not re-probed yet would
/// split one fault's finding in two). Without the interval (older agents) it stays unknown.
/// Real data (`bench/onset.sh` at the agent's defaults, 5 s interval, 60 s window): paths to
/// node-3 that had recovered from `cni node-3` stayed unknown for the rest of the window, and a
/// `route node-1 node-3` injected meanwhile read as `cni` node-3 for over 20 s.
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
/// `lossy_min_probes` answered probes.
///
/// Random loss on `--icmp-count` echoes leaves partial losses in answered probes, again and
/// again. An outage leaves probes that failed whole — a node that is or was down, cut off or
/// unrouted — plus, at each of its edges, at most one *cut round* per cell: the probe in flight
/// when the path died (or came back), 1 or 2 of its 3 echoes answered. So whole failures count
/// for the down rules, never as loss (a cell whose lost packets all belong to failed probes is
/// down when the down rules say so, else unknown: an outage that just began or just ended),
/// and a cut round alone (≤ 2 packets) stays below the per-pair threshold
/// (`pair_loss_min_lost`). A cell whose last probe failed whole, after one partial answer, is
/// an outage that just began as much as loss: it waits for the next probe (unknown: the failure
/// confirmed is down, an answer makes it lossy again). Answered probes that lost packets are
/// the window's errors (one per probe that lost anything) less its failed probes. Steady loss
/// is hardly slowed: under `loss node-2 30` (about half the round trips lost) three probes in
/// four lose some echoes but not all, one in eight all of them.
///
/// Real data: the residue of `node-down node-4` read as "packet_loss node-4 ~7%" for a few
/// seconds after the node came back, and its first failed probe as loss for a second; at
/// `partition` / `node-down` onsets (lab, 8 s window), a probe failed whole in the previous
/// fault still in the window plus the cut round of this one (2 of 3 echoes lost) made 5/24 =
/// 21% and a one-pair `packet_loss` for up to a second before the right finding, and two such
/// cells from one node a `packet_loss` on that node (`tests/fixtures/onset/`). Requiring two
/// lossy probes always also held those back but slowed `loss node-2 30` by 0.5–1 s and let its
/// first failed pairs read as `routing` meanwhile (replayed lab data).
///
/// Without per-probe packet figures (`sent` not a multiple of `probes`, or no packets), every
/// lost packet counts; without error counts, the number of probes is not asked.
fn random_loss(c: &Cell, p: &Params, min_lost: u32, min_ratio: f64) -> bool {
    let (lost, sent) = lost_of(c);
    if sent == 0 {
        return false;
    }
    let (lost, probes) = if c.sent == 0 || c.probes == 0 || c.sent % c.probes != 0 {
        (lost, None)
    } else {
        let failed = c.probes.saturating_sub(c.successes);
        let answered_lossy = (!c.errors.is_empty()).then(|| c.error_count().saturating_sub(failed));
        (
            lost.saturating_sub(failed * (c.sent / c.probes)),
            answered_lossy,
        )
    };
    lost >= min_lost
        && f64::from(lost) / f64::from(sent) >= min_ratio
        && (c.reachable != Some(false) || probes.is_none_or(|n| n >= p.lossy_min_probes))
}

/// Loss events in a cell's window: its error count (per kind), else its lost packets.
fn loss_events(c: &Cell) -> u32 {
    if c.errors.is_empty() {
        lost_of(c).0.max(u32::from(c.last_error.is_some()))
    } else {
        c.error_count()
    }
}

/// Has the trouble stopped? The newest error is `age` old and `events` errors fell in the
/// window before it, i.e. within `window - age` seconds: quiet for more than 3 probe intervals
/// and more than 4 times the mean spacing of those errors. The estimate of the spacing uses the
/// active part of the window only, so it does not grow as a cleared burst ages out (the older
/// rule, `window / lost`, flipped back to "lossy" as the count fell: real data, 8 s after
/// clearing `loss node-2 30`). Steady loss is caught again at once (age resets); rare errors
/// (≥ window/4 apart) keep a cell lossy until they age out of the window.
fn quiet_since(age: Option<f64>, events: u32, interval: Option<f64>, window: Option<f64>) -> bool {
    let (Some(age), Some(i)) = (age, interval) else {
        return false;
    };
    let active = window.map_or(age, |w| (w - age).max(i));
    let gap = active / f64::from(events.max(1));
    age > 3.0 * i && age > 4.0 * gap
}

/// A pair recovering from loss: every layer answers now and the pair as a whole (all its
/// layers' errors together: more events, a better clock) has been quiet long enough. Its lossy
/// cells become unknown. Needed because partial ICMP loss leaves few errors of its own while
/// the HTTP probe on the same path fails often (real data: after clearing `loss node-2 30`,
/// node-2↔node-3 stayed "lossy" on ICMP while its HTTP had been quiet for seconds).
fn pair_recovery(
    pc: &super::matrix::PairCells,
    s: &mut [St; 4],
    interval: Option<f64>,
    window: Option<f64>,
) {
    if !s.contains(&St::Lossy) {
        return;
    }
    let cells = || pc.layers.iter().flatten();
    if cells().any(|c| c.reachable == Some(false)) {
        return;
    }
    let age = cells()
        .filter_map(|c| c.last_error_age_seconds)
        .min_by(f64::total_cmp);
    let events: u32 = cells().map(loss_events).sum();
    if quiet_since(age, events, interval, window) {
        for x in s.iter_mut().filter(|x| **x == St::Lossy) {
            *x = St::Unknown;
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Agg {
    bad: u32,
    known: u32,
    /// Good ones last probed before the failures they are counted against began (onset).
    stale: u32,
    /// Bad ones whose own contrast (the pair's other layer) predates their failure.
    pend: u32,
}

impl Agg {
    fn add(&mut self, known: bool, bad: bool) {
        if known {
            self.known += 1;
            self.bad += u32::from(bad);
        }
    }
    /// `add`, noting a good cell that predates the failures (`stale`) or a bad one whose
    /// contrast does (`pend`).
    fn add_cell(&mut self, known: bool, bad: bool, stale: bool, pend: bool) {
        self.add(known, bad);
        if known && bad {
            self.pend += u32::from(pend);
        } else if known {
            self.stale += u32::from(stale);
        }
    }
    /// The bad share once the stale good ones are probed again and fail too: what the ratio
    /// may become (a candidate that passes only with it is pending, not refuted).
    fn ratio_if_stale_fail(self) -> f64 {
        if self.known == 0 {
            0.0
        } else {
            f64::from(self.bad + self.stale) / f64::from(self.known)
        }
    }
    /// The bad share counting only failures whose contrast is fresh (stale good ones still
    /// count as good: they refute until probed again).
    fn ratio_settled(self) -> f64 {
        let known = self.known - self.pend;
        if known == 0 {
            0.0
        } else {
            f64::from(self.bad - self.pend) / f64::from(known)
        }
    }
    /// The bad share among evidence probed since the failures began; `None` without any.
    fn fresh_ratio(self) -> Option<f64> {
        let known = self.known - self.stale;
        (known > 0).then(|| f64::from(self.bad) / f64::from(known))
    }
    fn ratio(self) -> f64 {
        if self.known == 0 {
            0.0
        } else {
            f64::from(self.bad) / f64::from(self.known)
        }
    }
    fn good(self) -> u32 {
        self.known - self.bad
    }
    fn frac(self) -> String {
        format!("{}/{}", self.bad, self.known)
    }
}

/// Per node, per direction: node-IP ICMP, pod-IP (ICMP, or HTTP without ICMP), HTTP.
#[derive(Debug, Clone, Copy, Default)]
struct NodeAgg {
    in_node: Agg,
    in_pod: Agg,
    in_http: Agg,
    out_node: Agg,
    out_pod: Agg,
    /// Outbound pod failures answered net unreachable by this node's own addresses.
    out_own_netunreach: u32,
}

struct Draft {
    cause: Cause,
    summary: String,
    nodes: BTreeSet<usize>,
    pairs: BTreeSet<(usize, Dest)>,
    zones: BTreeSet<String>,
    targets: BTreeSet<usize>,
    confidence: f64,
    evidence: Vec<String>,
    next_steps: Vec<String>,
}

impl Draft {
    fn new(cause: Cause, summary: String, confidence: f64) -> Draft {
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

struct Engine<'a> {
    m: &'a Matrix,
    p: &'a Params,
    restarting: Vec<bool>,
    st: Vec<[St; 4]>,
    /// Indices into `m.pairs` of node→node pairs from usable sources.
    peer: Vec<usize>,
    /// ... and of node→target pairs.
    tpairs: Vec<usize>,
    pair_of: HashMap<(usize, usize), usize>,
    zone_id: Vec<Option<usize>>,
    zones: Vec<String>,
    agg: Vec<NodeAgg>,
    drafts: Vec<Draft>,
    /// `m.pairs` index → the finding that explains it.
    explained: HashMap<usize, usize>,
    /// Node → node-level network finding (node down, CNI, node routing).
    node_finding: HashMap<usize, usize>,
    /// Node → (draft, pairs) of its missing-route finding from the network stage, so target
    /// evidence of the same fault joins it instead of raising a second finding.
    egress_finding: HashMap<usize, (usize, Vec<usize>)>,
    zone_finding: HashMap<(usize, usize), usize>,
    /// Peer pairs left failing by the network stage whose failure looks like heavy loss.
    deferred_loss: Vec<usize>,
    /// Per `m.pairs` index: its ICMP cells lost packets in the window (random loss, not an
    /// outage's residue), whatever the cleaning made of them.
    raw_loss: Vec<bool>,
    /// Target / agent HTTP pairs whose timeouts the packet loss on their path explains.
    deferred_app_loss: Vec<usize>,
    /// Per `m.pairs` index and layer: the failure's onset (streak age) of a down cell.
    onset: Vec<[Option<f64>; 4]>,
    /// Per node: the oldest onset among failing cells toward it / from it.
    in_onset: Vec<Option<f64>>,
    out_onset: Vec<Option<f64>>,
    /// Failing peer pairs a pending candidate would explain once its stale evidence is
    /// probed again: not reported yet.
    pending: BTreeSet<usize>,
}

fn zkey(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

fn worst_app(s: &[St; 4]) -> St {
    match (s[HTTP], s[TCP]) {
        (St::Down, _) | (_, St::Down) => St::Down,
        (St::Lossy, _) | (_, St::Lossy) => St::Lossy,
        (St::Ok, _) | (_, St::Ok) => St::Ok,
        _ => St::Unknown,
    }
}

/// The pod-IP verdict: ICMP to the pod IP, or the HTTP/TCP probe when ICMP is not measured.
fn pod_state(s: &[St; 4]) -> St {
    if s[POD].known() {
        s[POD]
    } else {
        worst_app(s)
    }
}

fn net_failing(s: &[St; 4]) -> bool {
    pod_state(s) == St::Down || s[NODE] == St::Down
}

impl<'a> Engine<'a> {
    fn new(m: &'a Matrix, p: &'a Params) -> Engine<'a> {
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
        let mut st = Vec::with_capacity(m.pairs.len());
        let mut raw_loss = Vec::with_capacity(m.pairs.len());
        let mut peer = Vec::new();
        let mut tpairs = Vec::new();
        let mut pair_of = HashMap::new();
        for (i, pc) in m.pairs.iter().enumerate() {
            let src = &m.nodes[pc.src];
            let mut s = [St::Unknown; 4];
            let mut loss = false;
            if usable.get(pc.src).copied().unwrap_or(false) {
                for (k, c) in pc.layers.iter().enumerate() {
                    if let Some(c) = c {
                        s[k] = cell_state(c, src.interval_seconds, src.window_seconds, p);
                    }
                }
                pair_recovery(pc, &mut s, src.interval_seconds, src.window_seconds);
                loss = pc.layers[..2]
                    .iter()
                    .flatten()
                    .any(|c| random_loss(c, p, p.lossy_min_lost, p.lossy_min_ratio));
                match pc.dst {
                    Dest::Node(d) => {
                        if restarting.get(d).copied().unwrap_or(false) {
                            s[HTTP] = St::Unknown; // its agent is (re)starting
                        }
                        peer.push(i);
                        pair_of.insert((pc.src, d), i);
                    }
                    Dest::Target(_) => tpairs.push(i),
                }
            }
            st.push(s);
            raw_loss.push(loss);
        }
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
            st,
            peer,
            tpairs,
            pair_of,
            zone_id,
            zones,
            agg: vec![NodeAgg::default(); n],
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
            .zip(&self.st)
            .map(|(pc, s)| {
                let mut o = [None; 4];
                for (k, c) in pc.layers.iter().enumerate() {
                    if s[k] == St::Down {
                        o[k] = c.as_ref().and_then(|c| c.failing_for_seconds);
                    }
                }
                o
            })
            .collect();
        for &i in &self.peer {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let o = self.onset[i].iter().copied().fold(None, max_age);
            self.in_onset[d] = max_age(self.in_onset[d], o);
            self.out_onset[pc.src] = max_age(self.out_onset[pc.src], o);
        }
    }

    /// The oldest onset among the failing cells of pair `i` in `layers`.
    fn onset_in(&self, i: usize, layers: &[usize]) -> Option<f64> {
        layers.iter().map(|&k| self.onset[i][k]).fold(None, max_age)
    }

    /// Pair `i`'s known, not failing cells in `layers` (at least one) have not answered since
    /// `onset`: their last success predates it, or their last probe failed.
    fn good_predates(&self, i: usize, layers: &[usize], onset: Option<f64>) -> bool {
        if onset.is_none() {
            return false;
        }
        let s = &self.st[i];
        let mut any = false;
        for &k in layers {
            if !s[k].known() || s[k] == St::Down {
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
    fn stale_contrast(&self, i: usize) -> bool {
        let s = &self.st[i];
        let pl = pod_layers(s);
        match (pod_state(s) == St::Down, s[NODE] == St::Down) {
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
    fn contrast_predates(&self, i: usize, layers: &[usize], onset: Option<f64>) -> bool {
        if onset.is_none() {
            return false;
        }
        let mut any = false;
        for &k in layers {
            let Some(c) = self.m.pairs[i].layers[k].as_ref() else {
                continue;
            };
            if self.st[i][k] == St::Down {
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

    fn dst_node(&self, i: usize) -> Option<usize> {
        match self.m.pairs[i].dst {
            Dest::Node(d) => Some(d),
            Dest::Target(t) => self.m.targets.get(t).and_then(|t| t.node),
        }
    }

    fn name(&self, n: usize) -> &str {
        self.m.nodes.get(n).map_or("?", |x| x.name.as_str())
    }

    /// The node that answered "net unreachable" for a failing pod-layer probe of pair `i`:
    /// the owner of `from`, or the source itself for a local ENETUNREACH. `Err(ip)` when a
    /// router that is no node answered.
    fn netunreach_owner(&self, i: usize) -> Option<Result<(usize, Option<IpRole>), String>> {
        let pc = &self.m.pairs[i];
        let s = &self.st[i];
        for k in [POD, HTTP, TCP] {
            if s[k] != St::Down {
                continue;
            }
            // The window's per-kind list too: the gateway rate-limits its ICMP errors, so a
            // "net unreachable" is usually followed by plain timeouts (real data, `route`).
            let Some(e) = pc.layers[k]
                .as_ref()
                .and_then(|c| c.error_of(ErrKind::NetUnreachable))
            else {
                continue;
            };
            return Some(match (e.from.as_deref(), e.from_ip()) {
                (None, _) => Ok((pc.src, None)),
                (Some(_), Some(ip)) => match self.m.owner_of(ip) {
                    Some((n, role)) => Ok((n, Some(role))),
                    None => Err(ip.to_string()),
                },
                (Some(raw), None) => Err(raw.to_string()),
            });
        }
        None
    }

    fn aggregate(&mut self) {
        for &i in &self.peer {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let s = self.st[i];
            let pod = pod_state(&s);
            let (a, b) = (pc.src, d);
            let pl = pod_layers(&s);
            let pend = self.stale_contrast(i);
            // The oldest failure touching the node, either way (a node that went down still
            // shows its own successes from before).
            let ion = max_age(self.in_onset[b], self.out_onset[b]);
            let oon = max_age(self.in_onset[a], self.out_onset[a]);
            let node_known = s[NODE].known();
            let node_bad = s[NODE] == St::Down;
            let (stale_in_node, stale_in_pod) = (
                self.good_predates(i, &[NODE], ion),
                self.good_predates(i, pl, ion),
            );
            let (stale_out_node, stale_out_pod) = (
                self.good_predates(i, &[NODE], oon),
                self.good_predates(i, pl, oon),
            );
            self.agg[b]
                .in_node
                .add_cell(node_known, node_bad, stale_in_node, pend);
            self.agg[b]
                .in_pod
                .add_cell(pod.known(), pod == St::Down, stale_in_pod, pend);
            self.agg[b]
                .in_http
                .add(s[HTTP].known(), s[HTTP] == St::Down);
            self.agg[a]
                .out_node
                .add_cell(node_known, node_bad, stale_out_node, pend);
            self.agg[a]
                .out_pod
                .add_cell(pod.known(), pod == St::Down, stale_out_pod, pend);
            if pod == St::Down {
                if let Some(Ok((owner, _))) = self.netunreach_owner(i) {
                    if owner == a {
                        self.agg[a].out_own_netunreach += 1;
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- MTU

    fn mtu_evidence(&self, i: usize) -> Option<String> {
        let pc = &self.m.pairs[i];
        let s = &self.st[i];
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
        let small_ok = pod_state(s) != St::Down && s[NODE] != St::Down;
        // Under packet loss, large DF probes vanish like small ones: a "black hole" verdict
        // is then loss, not MTU (real data: `loss node-2 30` gave node-1 -> node-2 "black
        // hole (1405)"). A true black hole loses no small packet.
        let blackhole_ok = !self.raw_loss[i] && s[POD] != St::Lossy && s[NODE] != St::Lossy;
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

    fn mtu_stage(&mut self) {
        let cand: Vec<(usize, String)> = self
            .peer
            .iter()
            .chain(self.tpairs.iter())
            .filter_map(|&i| self.mtu_evidence(i).map(|e| (i, e)))
            .collect();
        if cand.is_empty() {
            return;
        }
        let ev: HashMap<usize, String> = cand.iter().cloned().collect();
        // Star cover by node.
        let mut by_node: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut blamed: HashMap<usize, u32> = HashMap::new();
        for (i, _) in &cand {
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
                    if let Some((n, _)) = e.from_ip().and_then(|ip| self.m.owner_of(ip)) {
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
            let mut known = Agg::default();
            for &i in &self.peer {
                let pc = &self.m.pairs[i];
                if pc.src == x || pc.dst == Dest::Node(x) {
                    continue;
                }
                known.add(true, ev.contains_key(&i));
            }
            if known.known >= 2 && known.ratio() >= self.p.hit_ratio {
                let all: Vec<usize> = cand.iter().map(|(i, _)| *i).collect();
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
                self.mtu_examples(&mut d, &all, &ev);
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
            self.mtu_examples(&mut d, &fresh, &ev);
            d.next_steps = mtu_steps(Some(self.name(x)));
            covered.extend(fresh.iter().copied());
            self.push_mtu(d, &fresh);
        }
        // Pair level.
        let mut rest: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (i, _) in &cand {
            if covered.contains(i) {
                continue;
            }
            let pc = &self.m.pairs[*i];
            let d = self.dst_node(*i).unwrap_or(pc.src);
            rest.entry(zkey(pc.src, d)).or_default().push(*i);
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
            self.mtu_examples(&mut d, &pairs, &ev);
            d.next_steps = mtu_steps(Some(self.name(a)));
            self.push_mtu(d, &pairs);
        }
    }

    fn mtu_examples(&self, d: &mut Draft, pairs: &[usize], ev: &HashMap<usize, String>) {
        for &i in pairs.iter().take(3) {
            if let Some(e) = ev.get(&i) {
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

    fn pair_label(&self, i: usize) -> String {
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

    // ---------------------------------------------------------------- network

    fn network_stage(&mut self) {
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

    /// A failure that could be bad luck under heavy loss: most probes of the window succeeded
    /// and nothing but timeouts was seen.
    fn weak_failure(&self, i: usize) -> bool {
        let pc = &self.m.pairs[i];
        pc.layers.iter().enumerate().all(|(k, c)| {
            let Some(c) = c else { return true };
            if self.st[i][k] != St::Down {
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
    /// their probes, an HTTP/TCP layer rides on a pod path (ICMP to the pod IP) that does. A
    /// routing or CNI fault leaves its pod path near 0%. (Real data: under `loss node-2 30`
    /// about half the round trips die; HTTP from node-2 to node-3's agent succeeded 1 time in
    /// 10 and its last two ICMP probes once failed in a row — read as `routing` node-2 → node-3
    /// — while ICMP succeeded on most probes.)
    fn loss_explains(&self, i: usize) -> bool {
        const DELIVERS: f64 = 0.3;
        let pc = &self.m.pairs[i];
        let delivers = |c: &Option<Cell>| {
            c.as_ref()
                .is_some_and(|c| c.probes >= 3 && success_ratio(c) >= DELIVERS)
        };
        let pod_path = pc.layers.first().is_some_and(delivers);
        pc.layers.iter().enumerate().all(|(k, c)| {
            let Some(cell) = c else { return true };
            if self.st[i][k] != St::Down {
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

    fn push_pairs(&mut self, mut d: Draft, pairs: &[usize]) {
        let idx = self.drafts.len();
        for &i in pairs {
            let pc = &self.m.pairs[i];
            d.pairs.insert((pc.src, pc.dst));
            self.explained.entry(i).or_insert(idx);
        }
        self.drafts.push(d);
    }

    fn zone_draft(&self, zp: &[(usize, usize)], pairs: &[usize]) -> Draft {
        let keys: BTreeSet<(usize, usize)> = zp.iter().map(|&(a, b)| zkey(a, b)).collect();
        let involved: BTreeSet<usize> = zp.iter().flat_map(|&(a, b)| [a, b]).collect();
        let mut node_l = Agg::default();
        let mut pod_l = Agg::default();
        let mut http_l = Agg::default();
        for &i in &self.peer {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let (Some(za), Some(zb)) = (self.zone_id[pc.src], self.zone_id[d]) else {
                continue;
            };
            if za == zb || !keys.contains(&zkey(za, zb)) {
                continue;
            }
            let s = self.st[i];
            node_l.add(s[NODE].known(), s[NODE] == St::Down);
            pod_l.add(s[POD].known(), s[POD] == St::Down);
            http_l.add(s[HTTP].known(), s[HTTP] == St::Down);
        }
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for x in 0..self.m.nodes.len() {
            if let Some(z) = self.zone_id[x].filter(|z| involved.contains(z)) {
                members.entry(z).or_default().push(x);
            }
        }
        let missing: Vec<&str> = members
            .values()
            .flatten()
            .filter(|&&x| self.m.nodes[x].agent != AgentStatus::Reporting)
            .map(|&x| self.name(x))
            .collect();
        // The zone common to every pair, when there are several.
        let hub = involved
            .iter()
            .copied()
            .find(|z| zp.iter().all(|&(a, b)| a == *z || b == *z));
        let zname = |z: usize| self.zones.get(z).map_or("?", String::as_str);
        let (head, others): (String, Vec<&str>) = match (zp.len(), hub) {
            (1, _) | (_, None) => (
                zname(zp[0].0).to_string(),
                zp.iter()
                    .flat_map(|&(a, b)| [a, b])
                    .filter(|&z| z != zp[0].0)
                    .map(zname)
                    .collect(),
            ),
            (_, Some(h)) => (
                zname(h).to_string(),
                involved
                    .iter()
                    .copied()
                    .filter(|&z| z != h)
                    .map(zname)
                    .collect(),
            ),
        };
        let others_s = others.join(", ");
        let hit = node_l.ratio().max(pod_l.ratio());
        let mut d = Draft::new(
            Cause::Vpc,
            if zp.len() == 1 {
                format!("{head} and {others_s} cannot reach each other (cloud network / VPC partition between zones); traffic inside each zone works")
            } else {
                format!("{head} is cut off from {others_s} (cloud network / VPC partition); traffic inside each zone works")
            },
            (0.55 + 0.35 * hit).min(0.95),
        );
        for z in &involved {
            d.zones.insert(zname(*z).to_string());
        }
        d.evidence.push(format!(
            "between {head} and {others_s}: node IPs unreachable by ICMP on {} directed pairs, pod IPs by ICMP on {}{}",
            node_l.frac(),
            pod_l.frac(),
            if http_l.known > 0 { format!(", HTTP on {}", http_l.frac()) } else { String::new() }
        ));
        d.evidence.push(format!(
            "inside each zone the same probes succeed ({} directed pairs failing across zones)",
            pairs.len()
        ));
        for (z, xs) in &members {
            let cut_off = match hub {
                Some(h) if zp.len() > 1 => h == *z,
                _ => true,
            };
            if let [x] = xs.as_slice() {
                if !cut_off {
                    continue;
                }
                if self.m.nodes[*x].agent == AgentStatus::Reporting {
                    d.evidence.push(format!(
                        "{} holds only {}, whose agent still reports (it reaches nobody outside its zone): a partition, not a dead node",
                        zname(*z),
                        self.name(*x)
                    ));
                }
            }
        }
        if !missing.is_empty() {
            d.evidence.push(format!(
                "agents that did not report: {}",
                missing.join(", ")
            ));
        }
        d.evidence.push(self.error_summary(pairs));
        let far = others.first().copied().unwrap_or("the other zone");
        d.next_steps = vec![
            format!("Runbook, last section (cloud provider networking): from a node in {head}, `ping -c3 <node IP in {far}>` and `traceroute -n <node IP in {far}>` to see where packets stop"),
            format!("Check the cloud network between {head} and {others_s}: VPC/subnet route tables, security groups / NACLs / firewall rules, peering or transit attachments (e.g. `aws ec2 describe-route-tables`, `gcloud compute firewall-rules list`)"),
            "`kubectl get nodes -L topology.kubernetes.io/zone` to confirm which nodes sit in each zone".into(),
        ];
        d
    }

    fn node_facts(&self, x: usize) -> Vec<String> {
        let name = self.name(x);
        let mut out = Vec::new();
        for f in self.m.kube.nodes.iter().filter(|f| f.name == name) {
            match f.ready {
                Some(false) => out.push(format!("Kubernetes: node {name} is NotReady")),
                Some(true) => out.push(format!("Kubernetes: node {name} is Ready")),
                None => {}
            }
            if f.cordoned == Some(true) {
                out.push(format!(
                    "Kubernetes: node {name} is cordoned (being drained or removed?)"
                ));
            }
        }
        out
    }

    fn node_down_draft(&self, x: usize, pairs: &[usize]) -> Draft {
        let a = self.agg[x];
        let name = self.name(x).to_string();
        let node = &self.m.nodes[x];
        let agent_missing = node.agent != AgentStatus::Reporting;
        let not_ready_fact = self
            .m
            .kube
            .nodes
            .iter()
            .any(|f| f.name == name && f.ready == Some(false));
        let mut conf = 0.55 + 0.3 * a.in_node.ratio();
        if agent_missing {
            conf += 0.1;
        }
        if not_ready_fact {
            conf += 0.05;
        }
        let mut d = Draft::new(
            Cause::NodeDown,
            if agent_missing {
                format!("{name} is down or cut off: neither its node IP nor its pods answer, and its agent does not report")
            } else {
                format!(
                    "{name} is cut off from the network: nobody reaches it and it reaches nobody"
                )
            },
            conf.min(0.97),
        );
        d.nodes.insert(x);
        if let Some(z) = &node.zone {
            d.zones.insert(z.clone());
        }
        d.evidence.push(format!(
            "{name}'s node IP unreachable from {} nodes by ICMP; pod IPs on {name} unreachable from {}",
            a.in_node.frac(),
            a.in_pod.frac()
        ));
        if a.in_http.known > 0 {
            d.evidence.push(format!(
                "HTTP to {name}'s agent fails from {}",
                a.in_http.frac()
            ));
        }
        if agent_missing {
            d.evidence.push(if node.agent_unreachable {
                format!("{name}'s agent did not answer the results request")
            } else if node.agent == AgentStatus::NotReady {
                format!("{name}'s agent reports not ready")
            } else {
                format!("no results from {name}'s agent")
            });
        } else {
            d.evidence.push(format!(
                "{name}'s own agent reaches {} of {} nodes' node IPs",
                a.out_node.good(),
                a.out_node.known
            ));
        }
        d.evidence.extend(self.node_facts(x));
        d.evidence.push(self.error_summary(pairs));
        d.next_steps = vec![
            format!("Runbook: check the node before the pods: `kubectl get node {name} -o wide` (Ready? last heartbeat) and `kubectl describe node {name}` (conditions, events)"),
            format!("From a healthy node: `ping -c3 {}`; on the cloud console, check the instance state and its network interface", node.node_ip.map_or("<node IP>".to_string(), |ip| ip.to_string())),
            format!("If it is up, on {name}: `ip link`, `ip addr`, `ip route` (uplink down? routes gone?)"),
        ];
        d
    }

    fn cni_facts(&self, x: usize) -> (Vec<String>, Option<bool>) {
        let name = self.name(x);
        let mut out = Vec::new();
        let mut unhealthy: Option<bool> = None;
        for c in self.m.kube.cni_pods.iter().filter(|c| c.node == name) {
            let bad =
                c.ready == Some(false) || c.crash_loop == Some(true) || c.restarts.unwrap_or(0) > 3;
            unhealthy = Some(unhealthy.unwrap_or(false) || bad);
            let mut words = Vec::new();
            match c.ready {
                Some(false) => words.push("not Ready".to_string()),
                Some(true) => words.push("Ready".to_string()),
                None => {}
            }
            if c.crash_loop == Some(true) {
                words.push("CrashLoopBackOff".into());
            }
            if let Some(r) = c.restarts {
                words.push(format!("{r} restarts"));
            }
            out.push(format!(
                "Kubernetes: CNI pod kube-system/{} on {name}: {}",
                c.name,
                words.join(", ")
            ));
        }
        let mut sandbox = 0u32;
        for p in self
            .m
            .kube
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(name))
        {
            for e in p
                .events
                .iter()
                .filter(|e| e.reason == "FailedCreatePodSandbox")
            {
                sandbox += e.count.unwrap_or(1).max(1);
            }
        }
        if sandbox > 0 {
            unhealthy = Some(true);
            out.push(format!(
                "Kubernetes: {sandbox} FailedCreatePodSandbox events for pods on {name}"
            ));
        }
        (out, unhealthy)
    }

    fn cni_draft(&self, x: usize, pairs: &[usize]) -> Draft {
        let a = self.agg[x];
        let name = self.name(x).to_string();
        let routing = a.out_own_netunreach > 0
            && a.out_pod.known > 0
            && f64::from(a.out_own_netunreach) >= 0.5 * f64::from(a.out_pod.bad.max(1));
        if routing {
            return self.egress_draft(Some(x), None, pairs);
        }
        let (facts, unhealthy) = self.cni_facts(x);
        let mut conf = 0.5 + 0.3 * a.in_pod.ratio() + if a.in_node.known > 0 { 0.1 } else { 0.0 };
        match unhealthy {
            Some(true) => conf += 0.1,
            Some(false) => conf -= 0.1,
            None => {}
        }
        let mut d = Draft::new(
            Cause::Cni,
            format!("pod network on {name} is broken (CNI): its node IP answers, its pods do not"),
            conf.clamp(0.0, 0.97),
        );
        d.nodes.insert(x);
        if let Some(z) = &self.m.nodes[x].zone {
            d.zones.insert(z.clone());
        }
        d.evidence.push(format!(
            "pod IPs on {name} unreachable from {} nodes by ICMP; {name}'s node IP reachable from {}/{}",
            a.in_pod.frac(),
            a.in_node.good(),
            a.in_node.known
        ));
        if a.out_pod.known > 0 {
            d.evidence.push(format!(
                "from {name}'s agent, pod IPs of {} nodes unreachable",
                a.out_pod.frac()
            ));
        } else if self.m.nodes[x].agent != AgentStatus::Reporting {
            d.evidence.push(format!(
                "{name}'s agent did not report (it runs on the pod network)"
            ));
        }
        d.evidence.extend(facts);
        d.evidence.push(self.error_summary(pairs));
        d.next_steps = vec![
            format!("Runbook diagnosis 1–2: `kubectl get pods -n kube-system -o wide --field-selector spec.nodeName={name}` — is the CNI pod (calico-node / kube-flannel / cilium) Ready, restarting, in CrashLoopBackOff?"),
            format!("`kubectl get events -A --field-selector reason=FailedCreatePodSandbox` and `kubectl logs -n kube-system <cni-pod-on-{name}> --previous`"),
            format!("On {name}: `ip link show cni0` (or the CNI's bridge/interface), `ip addr`, `ip route` — bridge down, veths missing, pod subnet route gone?"),
        ];
        d
    }

    /// Routing: `node`'s table lacks routes (net unreachable from its addresses), or a router
    /// that is no node answered.
    fn egress_draft(&self, node: Option<usize>, router: Option<&str>, pairs: &[usize]) -> Draft {
        let mut dsts = BTreeSet::new();
        let mut examples = Vec::new();
        let mut signalled = 0usize;
        for &i in pairs {
            let pc = &self.m.pairs[i];
            if Some(pc.src) == node {
                if let Some(dn) = self.dst_node(i) {
                    dsts.insert(dn);
                }
            }
            if let Some(Ok((owner, role))) = self.netunreach_owner(i) {
                if Some(owner) == node {
                    if let Some(dn) = self.dst_node(i) {
                        dsts.insert(dn);
                    }
                    signalled += 1;
                    if examples.len() < 3 {
                        let e = pc
                            .layers
                            .iter()
                            .flatten()
                            .find_map(|c| c.error_of(ErrKind::NetUnreachable));
                        examples.push(format!(
                            "{}: {}{}",
                            self.pair_label(i),
                            e.map_or("net_unreachable".into(), ErrorInfo::describe),
                            role.map_or(" (the source's own stack)".to_string(), |r| format!(
                                " ({}'s {})",
                                self.name(owner),
                                r.describe()
                            ))
                        ));
                    }
                }
            }
        }
        let mut d;
        match node {
            Some(x) => {
                let name = self.name(x).to_string();
                let dst_names: Vec<String> =
                    dsts.iter().map(|&n| self.name(n).to_string()).collect();
                let subnets: Vec<String> = dsts
                    .iter()
                    .map(|&n| {
                        let ni = &self.m.nodes[n];
                        ni.pod_cidr
                            .map(|c| format!("{}/{}", c.addr, c.len))
                            .or_else(|| {
                                ni.pod_ip.map(|ip| {
                                    let c = meshprobe_core::net::Cidr::around(ip);
                                    format!("{}/{} (assumed)", c.addr, c.len)
                                })
                            })
                            .unwrap_or_else(|| format!("{}'s pod subnet", ni.name))
                    })
                    .collect();
                let all = dsts.len() + 1 >= self.m.nodes.len() && dsts.len() > 1;
                d = Draft::new(
                    Cause::Routing,
                    if dst_names.is_empty() {
                        format!("{name}'s routing table is missing pod routes")
                    } else if all {
                        format!(
                            "{name}'s routing table has no routes to the other nodes' pod subnets"
                        )
                    } else {
                        format!(
                            "{name}'s routing table has no route to the pod subnet of {}",
                            dst_names.join(", ")
                        )
                    },
                    if signalled > 0 { 0.9 } else { 0.75 },
                );
                d.nodes.insert(x);
                let fwd = pairs.iter().filter(|&&i| self.m.pairs[i].src == x).count();
                let back = pairs.len() - fwd;
                if signalled > 0 {
                    d.evidence.push(format!(
                        "pod probes from {name} answered \"net unreachable\" by {name} itself on {signalled} of {fwd} {}; {back} {} toward {name} time out (its replies have no route); node IPs answer", plural(fwd, "pair"), plural(back, "pair")
                    ));
                } else {
                    d.evidence.push(format!(
                        "pod IPs fail from {name} on {fwd} {} while those nodes' node IPs answer {name}; from their pods, {name}'s node IP and pod IPs fail alike ({back} {}) — {name}'s replies to their pod subnets have no route. No \"net unreachable\" in the windows (rate-limited or aged out); an ingress filter on {name} dropping their pod subnets looks the same",
                        plural(fwd, "pair"),
                        plural(back, "pair")
                    ));
                }
                d.evidence.extend(examples);
                d.evidence.push(self.error_summary(pairs));
                let probe_ip = dsts
                    .iter()
                    .next()
                    .and_then(|&n| self.m.nodes[n].pod_ip)
                    .map_or("<pod IP>".to_string(), |ip| ip.to_string());
                d.next_steps = vec![
                    format!("Runbook playbook 6 / diagnosis 5: on {name}, `ip route get {probe_ip}` and `ip route show` — expect a route to {} via that node's IP", subnets.first().cloned().unwrap_or_else(|| "each pod subnet".into())),
                    format!("Runbook diagnosis 6: CNI logs on {name} for route programming errors: `kubectl logs -n kube-system <cni-pod-on-{name}> | grep -i route`; restarting the CNI pod usually reprograms the routes"),
                ];
                if signalled == 0 {
                    d.next_steps.push(format!("If the routes are there: filters on {name} dropping those pod subnets, `nft list ruleset`, `iptables -S INPUT`, `iptables -S FORWARD`"));
                }
            }
            None => {
                let r = router.unwrap_or("?");
                d = Draft::new(
                    Cause::Routing,
                    format!("router {r} has no route for some pod subnets"),
                    0.75,
                );
                d.evidence.push(format!(
                    "{} failing pod paths were answered \"net unreachable\" by {r}, which is no node's address",
                    pairs.len()
                ));
                d.evidence.push(self.error_summary(pairs));
                d.next_steps = vec![
                    format!("Find {r}: `ip route get <pod IP>` on a source node; check that router's (or the VPC's) route table for the pod CIDRs"),
                ];
            }
        }
        d
    }

    /// "last errors: timeout ×6, net_unreachable ×2" over the failing cells of `pairs`.
    fn error_summary(&self, pairs: &[usize]) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for &i in pairs {
            for (k, c) in self.m.pairs[i].layers.iter().enumerate() {
                if self.st[i][k] != St::Down {
                    continue;
                }
                if let Some(e) = c.as_ref().and_then(|c| c.last_error.as_ref()) {
                    *counts.entry(e.kind.clone()).or_default() += 1;
                }
            }
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        if v.is_empty() {
            return "no error detail in the failing cells".into();
        }
        format!(
            "last errors on failing probes: {}",
            v.iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
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

    fn partial_node_draft(
        &self,
        cause: Cause,
        x: usize,
        others: &BTreeSet<usize>,
        pairs: &[usize],
    ) -> Draft {
        let name = self.name(x).to_string();
        let out = pairs.iter().filter(|&&i| self.m.pairs[i].src == x).count();
        let inn = pairs.len() - out;
        let names: Vec<&str> = others.iter().map(|&n| self.name(n)).collect();
        let what = if cause == Cause::Vpc {
            "node IPs and pod IPs"
        } else {
            "pod IPs (node IPs answer)"
        };
        let mut d = Draft::new(
            cause,
            format!(
                "{name} cannot exchange traffic with {} ({what})",
                names.join(", ")
            ),
            0.6,
        );
        d.nodes.insert(x);
        d.evidence.push(format!(
            "{out} pairs from {name} and {inn} pairs toward {name} fail on {what}; {name}'s other pairs work"
        ));
        d.evidence.push(self.error_summary(pairs));
        d.next_steps = if cause == Cause::Vpc {
            vec![
                format!("From {name}: `ping -c3 <node IP>` and `traceroute -n <node IP>` to each of {}", names.join(", ")),
                "Check security groups / NACLs / host firewalls (`nft list ruleset`, `iptables -S`) between these nodes".into(),
            ]
        } else {
            vec![
                format!("Runbook diagnosis 5: on {name}, `ip route show` and `ip route get <pod IP of each peer>`; on the peers, `ip route get <pod IP on {name}>`"),
                format!("Check filters on {name}: `nft list ruleset`, `iptables -S FORWARD`; and CNI logs on {name}"),
            ]
        };
        d
    }

    fn pair_draft(&self, cause: Cause, a: usize, b: usize, pairs: &[usize]) -> Draft {
        let (na, nb) = (self.name(a).to_string(), self.name(b).to_string());
        let both = pairs.len() >= 2;
        // The direction that fails, and whether the other one was seen working.
        let (s, t) = {
            let pc = &self.m.pairs[pairs[0]];
            (pc.src, self.dst_node(pairs[0]).unwrap_or(b))
        };
        let reverse_ok = !both
            && self
                .pair_of
                .get(&(t, s))
                .is_some_and(|&r| !net_failing(&self.st[r]) && pod_state(&self.st[r]) == St::Ok);
        let what = if cause == Cause::Vpc {
            "node IPs and pod IPs"
        } else {
            "pod IPs"
        };
        let summary = if both {
            format!("{na} and {nb} cannot reach each other's {what} (both directions)")
        } else {
            format!(
                "{} cannot reach {}'s {what} (one direction)",
                self.name(s),
                self.name(t)
            )
        };
        let mut d = Draft::new(cause, summary, if both { 0.6 } else { 0.5 });
        d.nodes.insert(a);
        d.nodes.insert(b);
        for &i in pairs {
            let pc = &self.m.pairs[i];
            let cells: Vec<String> = [POD, NODE, HTTP]
                .iter()
                .filter(|&&k| self.st[i][k] == St::Down)
                .map(|&k| {
                    let err = pc.layers[k]
                        .as_ref()
                        .and_then(|c| c.last_error.as_ref())
                        .map_or(String::new(), |e| format!(" ({})", e.describe()));
                    format!("{}{err}", super::matrix::LAYERS[k].as_str())
                })
                .collect();
            d.evidence.push(format!(
                "{}: failing on {}",
                self.pair_label(i),
                cells.join(", ")
            ));
        }
        if reverse_ok {
            d.evidence.push(format!(
                "{} -> {} works: the fault is one-way (a filter, or an asymmetric route on {}'s egress or {}'s ingress)",
                self.name(t),
                self.name(s),
                self.name(s),
                self.name(t)
            ));
        }
        d.evidence.push("both nodes reach their other peers".into());
        d.next_steps = if cause == Cause::Vpc {
            vec![
                format!("From {na}: `ping -c3 <{nb} node IP>`, `traceroute -n <{nb} node IP>`; check security groups / NACLs / host firewalls between them"),
            ]
        } else {
            vec![
                {
                    // The failing source first: its table is the usual culprit (a deleted
                    // host-gw route); the destination's return route second.
                    let pod = |n: usize| {
                        self.m.nodes[n]
                            .pod_ip
                            .map_or(format!("<pod IP on {}>", self.name(n)), |ip| ip.to_string())
                    };
                    let via = self.m.nodes[t]
                        .node_ip
                        .map_or(String::new(), |ip| format!(" via {ip}"));
                    format!(
                        "Runbook diagnosis 5: on {}, `ip route get {}` and `ip route show` — expect a route to {}'s pod subnet{via}; then on {}, `ip route get {}` (the return path)",
                        self.name(s),
                        pod(t),
                        self.name(t),
                        self.name(t),
                        pod(s)
                    )
                },
                format!("Check filters on both nodes: `nft list ruleset`, `iptables -S FORWARD`"),
            ]
        };
        d
    }

    // ---------------------------------------------------------------- targets and agents

    /// The network finding that explains a failure from `src` to something on node `d`.
    fn network_explains(&self, src: usize, d: Option<usize>, pair: Option<usize>) -> Option<usize> {
        if let Some(&f) = pair.and_then(|p| self.explained.get(&p)) {
            return Some(f);
        }
        if let Some(&f) = self.node_finding.get(&src) {
            return Some(f);
        }
        let d = d?;
        if let Some(&f) = self.node_finding.get(&d) {
            return Some(f);
        }
        if let Some(&pi) = self.pair_of.get(&(src, d)) {
            if let Some(&f) = self.explained.get(&pi) {
                if self.drafts[f].cause != Cause::Mtu {
                    return Some(f);
                }
            }
        }
        if let (Some(za), Some(zb)) = (self.zone_id[src], self.zone_id[d]) {
            if let Some(&f) = self.zone_finding.get(&zkey(za, zb)) {
                return Some(f);
            }
        }
        None
    }

    /// Timeouts on a path that loses packets: the loss explains them (a lost SYN or SYN-ACK
    /// outlasts a probe timeout below the 1 s SYN retransmission). Real data: `loss node-2 30`
    /// (about half the round trips lost) made HTTP to web-node-2 and to node-2's agent time out
    /// from several sources, which read as five `policy` findings.
    fn loss_explains_app(&self, i: usize, lossy: &BTreeSet<usize>) -> bool {
        let pc = &self.m.pairs[i];
        // A dead pod IP is the network's, unless it is bad luck under heavy loss (at 50%
        // round-trip loss, 3 echoes all vanish one probe in 8: real data, node-2 ->
        // web-node-1 read as `cni` "from 1 of 4 sources only").
        if self.st[i][POD] == St::Down && !self.weak_failure(i) {
            return false;
        }
        let timeouts_only = [HTTP, TCP].iter().all(|&k| {
            self.st[i][k] != St::Down
                || pc.layers[k]
                    .as_ref()
                    .and_then(|c| c.last_error.as_ref())
                    .is_none_or(|e| e.kind() == ErrKind::Timeout)
        });
        let on_lossy_node =
            lossy.contains(&pc.src) || self.dst_node(i).is_some_and(|d| lossy.contains(&d));
        let pair_loss = (self.raw_loss[i] || self.pair_lossy(i))
            && self.loss_since(i, self.onset_in(i, &[HTTP, TCP]));
        timeouts_only && (pair_loss || on_lossy_node)
    }

    /// May pair `i`'s ICMP paths still be losing packets since its connection failures began
    /// `onset` seconds ago? No when an ICMP layer was probed since, answered, and its last lost
    /// echo is older than the failures: loss that ended before them does not explain them
    /// (real data, `tests/fixtures/onset/policy-after-loss.json`: a cleared `loss node-2 30`
    /// still in the window excused three sources' HTTP timeouts under a NetworkPolicy drop, and
    /// the fourth read as `application` "from 1 of 4 sources only" for the whole fault). A
    /// node that is lossy now still explains them (a lucky probe proves little). Without the
    /// onset (older agents) or an ICMP probe since, it may.
    fn loss_since(&self, i: usize, onset: Option<f64>) -> bool {
        let Some(onset) = onset else {
            return true;
        };
        let mut probed_since = false;
        for c in self.m.pairs[i].layers[..=NODE].iter().flatten() {
            if !c.last_probe_age_seconds.is_some_and(|a| a < onset) {
                continue;
            }
            if c.reachable != Some(true) || c.last_error_age_seconds.is_some_and(|a| a <= onset) {
                return true; // lost something since
            }
            probed_since = true;
        }
        !probed_since
    }

    /// A source whose own stack or pod gateway says "net unreachable" to a target's pod is
    /// missing a route, as on peer pairs. On a sampled plan the source may probe the target
    /// (targets are never sampled) but not the agent on the target's node, so the network
    /// stage had no peer pair to see it from; the targets on the source's node, probed from the
    /// target's node, time out (the replies have no route) and go with it.
    fn target_routing(&mut self) {
        let mut by_src: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &self.tpairs {
            let src = self.m.pairs[i].src;
            if self.explained.contains_key(&i) || self.st[i][POD] != St::Down {
                continue;
            }
            let Some(Ok((owner, _))) = self.netunreach_owner(i) else {
                continue;
            };
            if owner == src && self.network_explains(src, self.dst_node(i), None).is_none() {
                by_src.entry(src).or_default().push(i);
            }
        }
        for (x, mut pairs) in by_src {
            let far: BTreeSet<usize> = pairs.iter().filter_map(|&i| self.dst_node(i)).collect();
            for &j in &self.tpairs {
                let pc = &self.m.pairs[j];
                let s = self.st[j];
                if far.contains(&pc.src)
                    && self.dst_node(j) == Some(x)
                    && !self.explained.contains_key(&j)
                    && (s[POD] == St::Down || worst_app(&s) == St::Down)
                {
                    pairs.push(j);
                }
            }
            if let Some((idx, mut all)) = self.egress_finding.get(&x).cloned() {
                all.extend(pairs);
                let mut d = self.egress_draft(Some(x), None, &all);
                for &i in &all {
                    let pc = &self.m.pairs[i];
                    d.pairs.insert((pc.src, pc.dst));
                    self.explained.entry(i).or_insert(idx);
                }
                d.targets.extend(self.drafts[idx].targets.iter().copied());
                self.drafts[idx] = d;
                self.egress_finding.insert(x, (idx, all));
            } else {
                let d = self.egress_draft(Some(x), None, &pairs);
                self.push_pairs(d, &pairs);
            }
        }
    }

    fn app_stage(&mut self) {
        self.target_routing();
        let lossy = self.lossy_nodes();
        // Targets.
        let mut per_target: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &self.tpairs {
            if let Dest::Target(t) = self.m.pairs[i].dst {
                per_target.entry(t).or_default().push(i);
            }
        }
        for (t, pairs) in per_target {
            let node = self.m.targets.get(t).and_then(|x| x.node);
            let mut fails = Vec::new();
            let mut pend = Vec::new();
            let mut known = 0u32;
            for &i in &pairs {
                let s = self.st[i];
                let app = worst_app(&s);
                if app.known() || s[POD].known() {
                    known += 1;
                }
                if app != St::Down && s[POD] != St::Down {
                    continue;
                }
                if let Some(&f) = self.explained.get(&i) {
                    self.drafts[f].targets.insert(t);
                    continue;
                }
                if let Some(f) = self.network_explains(self.m.pairs[i].src, node, None) {
                    // A node-level finding lists the targets on that node; the others show
                    // up in its pairs (its own agent cannot reach them).
                    let node_level = matches!(self.drafts[f].cause, Cause::NodeDown | Cause::Cni)
                        && !self.drafts[f].nodes.is_empty();
                    if !node_level || node.is_some_and(|n| self.drafts[f].nodes.contains(&n)) {
                        self.drafts[f].targets.insert(t);
                    }
                    self.drafts[f]
                        .pairs
                        .insert((self.m.pairs[i].src, Dest::Target(t)));
                    continue;
                }
                if self.loss_explains_app(i, &lossy) {
                    // Loss's, or not yet known to be otherwise: no contrast for the others.
                    self.deferred_app_loss.push(i);
                    pend.push(i);
                    continue;
                }
                if self.app_pending(i, node) {
                    pend.push(i);
                    continue;
                }
                fails.push(i);
            }
            if !fails.is_empty() && !self.app_wide_pending(&pairs, &fails, &pend, known) {
                if let Some(d) = self.app_draft(Some(t), node, &fails, known) {
                    self.push_pairs(d, &fails);
                }
            }
        }
        // Agents' own HTTP endpoint, with the pod IP answering.
        // Per node: failing pairs, known pairs, pending pairs, all pairs.
        type Group = (Vec<usize>, u32, Vec<usize>, Vec<usize>);
        let mut per_node: BTreeMap<usize, Group> = BTreeMap::new();
        for &i in &self.peer {
            let Dest::Node(d) = self.m.pairs[i].dst else {
                continue;
            };
            let s = self.st[i];
            let e = per_node.entry(d).or_default();
            e.3.push(i);
            if worst_app(&s).known() {
                e.1 += 1;
            }
            if worst_app(&s) != St::Down || net_failing(&s) || self.explained.contains_key(&i) {
                continue;
            }
            if self
                .network_explains(self.m.pairs[i].src, Some(d), Some(i))
                .is_some()
            {
                continue;
            }
            let e = per_node.entry(d).or_default();
            if self.loss_explains_app(i, &lossy) {
                self.deferred_app_loss.push(i);
                e.2.push(i);
                continue;
            }
            if self.app_pending(i, Some(d)) {
                e.2.push(i);
                continue;
            }
            e.0.push(i);
        }
        for (x, (fails, known, pend, all)) in per_node {
            if fails.is_empty()
                || self.restarting[x]
                || self.app_wide_pending(&all, &fails, &pend, known)
            {
                continue;
            }
            if let Some(d) = self.app_draft(None, Some(x), &fails, known) {
                self.push_pairs(d, &fails);
            }
        }
    }

    /// A failing target (or agent HTTP) pair whose contrast predates its failure: HTTP/TCP
    /// fails while the pod IP's last answer is older than that (policy? not yet), or the pod
    /// IP fails while this source's last probe of the node's agent pod succeeded before that
    /// (the network between them may be failing too: cni? not yet), or that peer pair waits.
    fn app_pending(&self, i: usize, node: Option<usize>) -> bool {
        let s = self.st[i];
        let app_onset = self.onset_in(i, &[HTTP, TCP]);
        if worst_app(&s) == St::Down && s[POD] != St::Down {
            // A refusal, reset or error status is the pod answering: no contrast needed.
            let answered = [HTTP, TCP].iter().any(|&k| {
                s[k] == St::Down
                    && self.m.pairs[i].layers[k]
                        .as_ref()
                        .and_then(|c| c.last_error.as_ref())
                        .is_some_and(|e| {
                            matches!(
                                e.kind(),
                                ErrKind::Refused | ErrKind::Reset | ErrKind::HttpStatus
                            )
                        })
            });
            return !answered && self.contrast_predates(i, &[POD], app_onset);
        }
        let Some(peer) = node.and_then(|n| self.pair_of.get(&(self.m.pairs[i].src, n))) else {
            return false;
        };
        if self.pending.contains(peer) {
            return true;
        }
        let ps = self.st[*peer];
        let onset = self.onset_in(i, &[POD, HTTP, TCP]);
        !net_failing(&ps) && self.contrast_predates(*peer, &[POD, NODE, HTTP, TCP], onset)
    }

    /// A minority of failing sources (`fails`, with `pend` pending — waiting for a contrast, or
    /// failing in a way loss may explain) that becomes the majority if the other sources'
    /// successes from before these failures began fail too: the verdict "from some sources
    /// only" waits for them to be probed again. (Real data: right after a cleared loss, a
    /// NetworkPolicy's timeouts from three sources waited for their pod IPs' next ICMP answer
    /// while the fourth's already read as `application` "from 1 of 4 sources only".)
    fn app_wide_pending(&self, all: &[usize], fails: &[usize], pend: &[usize], known: u32) -> bool {
        let hit = self.p.hit_ratio;
        let bad = fails.len() as u32;
        if f64::from(bad) / f64::from(known.max(bad).max(1)) >= hit {
            return false;
        }
        let onset = fails
            .iter()
            .chain(pend)
            .map(|&i| self.onset_in(i, &[POD, HTTP, TCP]))
            .fold(None, max_age);
        // Others whose connection (or pod IP) has not answered since: a success from before,
        // or an unconfirmed first failure.
        let stale = all
            .iter()
            .filter(|i| !fails.contains(i) && !pend.contains(i))
            .filter(|&&i| {
                self.contrast_predates(i, &[HTTP, TCP], onset)
                    || self.contrast_predates(i, &[POD], onset)
            })
            .count() as u32;
        let known = known.max(bad);
        known > 0 && f64::from(bad + pend.len() as u32 + stale) / f64::from(known) >= hit
    }

    fn app_draft(
        &self,
        target: Option<usize>,
        node: Option<usize>,
        fails: &[usize],
        known: u32,
    ) -> Option<Draft> {
        let tname = match target {
            Some(t) => self
                .m
                .targets
                .get(t)
                .map_or("?".to_string(), |x| x.name.clone()),
            None => format!("meshprobe agent on {}", node.map_or("?", |n| self.name(n))),
        };
        let tinfo = target.and_then(|t| self.m.targets.get(t));
        let port = tinfo.and_then(|t| t.port);
        let ip = tinfo.and_then(|t| t.ip).or_else(|| {
            node.filter(|_| target.is_none())
                .and_then(|n| self.m.nodes[n].pod_ip)
        });
        let addr = match (ip, port) {
            (Some(ip), Some(p)) => format!("{ip}:{p}"),
            (Some(ip), None) => ip.to_string(),
            _ => "<ip:port>".into(),
        };
        let ratio = f64::from(fails.len() as u32) / f64::from(known.max(fails.len() as u32).max(1));
        let wide = ratio >= self.p.hit_ratio;
        let mut icmp_dead = 0usize;
        let mut icmp_ok = 0usize;
        let (mut timeouts, mut rejects) = (0usize, 0usize);
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for &i in fails {
            let s = self.st[i];
            match s[POD] {
                St::Down => icmp_dead += 1,
                St::Ok | St::Lossy => icmp_ok += 1,
                St::Unknown => {}
            }
            for k in [HTTP, TCP] {
                if s[k] != St::Down {
                    continue;
                }
                if let Some(e) = self.m.pairs[i].layers[k]
                    .as_ref()
                    .and_then(|c| c.last_error.as_ref())
                {
                    *kinds.entry(e.describe()).or_default() += 1;
                    match e.kind() {
                        ErrKind::Timeout | ErrKind::AdminProhibited => timeouts += 1,
                        ErrKind::Refused
                        | ErrKind::Reset
                        | ErrKind::HttpStatus
                        | ErrKind::Protocol
                        | ErrKind::WrongPeer
                        | ErrKind::PortUnreachable => rejects += 1,
                        _ => {}
                    }
                }
            }
        }
        // Kubernetes facts about the pod and policies.
        let tn = tinfo.map(|t| t.name.as_str());
        let pod = tinfo.and_then(|t| {
            self.m.kube.pods.iter().find(|p| {
                (tn.is_some() && p.target.as_deref() == tn) || (t.ip.is_some() && p.ip == t.ip)
            })
        });
        let pod_not_ready = pod.is_some_and(|p| {
            p.ready == Some(false) || p.phase.as_deref().is_some_and(|ph| ph != "Running")
        });
        let sandbox = pod.is_some_and(|p| {
            p.events
                .iter()
                .any(|e| e.reason == "FailedCreatePodSandbox")
        });
        let policies: Vec<&super::input::PolicyFacts> = tn.map_or(Vec::new(), |tn| {
            self.m
                .kube
                .network_policies
                .iter()
                .filter(|p| p.targets.iter().any(|x| x == tn))
                .collect()
        });
        let policy_blocks = policies.iter().any(|p| p.admits_port == Some(false));
        let policy_known_none = !self.m.kube.network_policies.is_empty() && policies.is_empty();
        let pod_dead = icmp_dead * 2 > fails.len();
        // A pod IP that other sources reach, and that still answers this minority of sources
        // now and then (only timeouts, ≥ 30% delivered), is no dead pod network: under `loss
        // node-2 30` one source's last probes to web-node-2 once failed in a row and read as
        // `cni` from 1 of 3 sources. Loss is reported for the node; nothing to add here.
        if pod_dead && !wide && !sandbox && fails.iter().all(|&i| self.loss_explains(i)) {
            return None;
        }

        let (cause, mut conf, summary) = if pod_dead {
            if sandbox {
                (
                    Cause::Cni,
                    0.85,
                    format!("{tname}'s pod has no working network: sandbox creation failed (CNI)"),
                )
            } else if pod_not_ready {
                (
                    Cause::Application,
                    0.75,
                    format!("{tname}'s pod is not running/Ready and its IP does not answer"),
                )
            } else if policy_blocks {
                (Cause::Policy, 0.7, format!("a NetworkPolicy blocks traffic to {tname} (its IP does not answer ICMP either)"))
            } else {
                (Cause::Cni, 0.5, format!("{tname}'s pod IP does not answer while its node's other pods do: the pod's network (CNI) or the pod is gone"))
            }
        } else if !wide && !policy_blocks && timeouts >= rejects && timeouts > 0 {
            // A NetworkPolicy treats every meshprobe agent alike: timeouts from a minority of
            // sources are no policy. Intermittent ones (most probes pass) are noise; persistent
            // ones point at those sources' paths.
            if fails.iter().all(|&i| self.weak_failure(i)) {
                return None;
            }
            (
                Cause::Application,
                0.4,
                format!("connections to {tname} ({addr}) time out from some sources only while it answers ICMP and other sources connect: not a NetworkPolicy (it would drop them all); look at those sources' nodes (host firewall, conntrack)"),
            )
        } else if policy_blocks || (timeouts >= rejects && timeouts > 0 && !pod_not_ready) {
            let mut c = 0.65 + 0.2 * ratio;
            if policy_blocks {
                c += 0.1;
            }
            if policy_known_none {
                c -= 0.2;
            }
            (Cause::Policy, c, format!("connections to {tname} ({addr}) are silently dropped while it answers ICMP: a NetworkPolicy or firewall drops the SYN"))
        } else {
            let mut c = 0.65 + 0.2 * ratio;
            if pod_not_ready {
                c += 0.1;
            }
            (Cause::Application, c, format!("{tname} ({addr}) answers ICMP but its service fails (refused / reset / error status)"))
        };
        if !wide {
            conf *= 0.75;
        }
        let mut d = Draft::new(
            cause,
            if wide {
                summary
            } else {
                format!("{summary} — from {} of {known} sources only", fails.len())
            },
            conf.clamp(0.0, 0.97),
        );
        if let Some(t) = target {
            d.targets.insert(t);
        }
        if let Some(n) = node {
            d.nodes.insert(n);
        }
        let app_layer = tinfo
            .and_then(|t| t.protocol.clone())
            .unwrap_or_else(|| "http".into())
            .to_uppercase();
        d.evidence.push(format!(
            "{app_layer} to {tname} fails from {}/{} sources; its pod IP answers ICMP from {icmp_ok}/{}",
            fails.len(),
            known,
            fails.len()
        ));
        if !kinds.is_empty() {
            let mut v: Vec<(String, usize)> = kinds.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            d.evidence.push(format!(
                "errors: {}",
                v.iter()
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(p) = pod {
            d.evidence.push(format!(
                "Kubernetes: pod {}/{} phase {}, Ready {}",
                p.namespace,
                p.name,
                p.phase.as_deref().unwrap_or("?"),
                p.ready.map_or("?".to_string(), |r| r.to_string())
            ));
        }
        for p in &policies {
            d.evidence.push(format!(
                "Kubernetes: NetworkPolicy {}/{} selects {tname}{}",
                p.namespace,
                p.name,
                match p.admits_port {
                    Some(false) => " and does not admit its port",
                    Some(true) => " and admits its port",
                    None => "",
                }
            ));
        }
        if policy_known_none && cause == Cause::Policy {
            d.evidence.push(format!("no NetworkPolicy selects {tname}: look for a host firewall rule or a hung listener"));
        }
        let ns = pod.map_or("<namespace>".to_string(), |p| p.namespace.clone());
        let pod_name = pod.map_or("<pod>".to_string(), |p| p.name.clone());
        d.next_steps = match cause {
            Cause::Policy => vec![
                format!("Runbook diagnosis 4: `kubectl get networkpolicy -n {ns}` and `kubectl describe networkpolicy -n {ns}` — which policy selects {pod_name}, and does an ingress rule admit port {}?", port.map_or("<port>".into(), |p| p.to_string())),
                format!("From another pod: `nc -zv -w2 {}` (a timeout means the SYN is dropped; \"refused\" would mean nobody listens)", addr.replace(':', " ")),
            ],
            Cause::Application => vec![
                format!("Runbook diagnosis 3: `kubectl get pod -n {ns} {pod_name} -o wide` (Ready?) and `kubectl describe pod -n {ns} {pod_name}` (readiness probe, restarts)"),
                format!("`kubectl logs -n {ns} {pod_name}` and `curl -v http://{addr}/` from another pod"),
            ],
            _ => vec![
                format!("Runbook diagnosis 1: `kubectl describe pod -n {ns} {pod_name}` and `kubectl get events -n {ns} --field-selector involvedObject.name={pod_name}` (FailedCreatePodSandbox?)"),
                "Runbook diagnosis 2: check the CNI pod on that node in kube-system (Ready, restarts, logs)".into(),
            ],
        };
        Some(d)
    }

    // ---------------------------------------------------------------- loss

    fn pair_lossy(&self, i: usize) -> bool {
        self.st[i][POD] == St::Lossy || self.st[i][NODE] == St::Lossy
    }

    fn pair_loss_known(&self, i: usize) -> bool {
        self.st[i][POD].known() || self.st[i][NODE].known()
    }

    /// Nodes with partial loss on at least `loss_node_ratio` of their inbound or outbound pairs.
    /// Per node, inbound and outbound: pairs with ICMP figures, and how many of them are lossy.
    fn loss_aggs(&self) -> (Vec<Agg>, Vec<Agg>) {
        let n = self.m.nodes.len();
        let mut inn = vec![Agg::default(); n];
        let mut out = vec![Agg::default(); n];
        for &i in &self.peer {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let known = self.pair_loss_known(i);
            let bad = self.pair_lossy(i);
            inn[d].add(known, bad);
            out[pc.src].add(known, bad);
        }
        (inn, out)
    }

    fn lossy_nodes(&self) -> BTreeSet<usize> {
        let n = self.m.nodes.len();
        let (inn, out) = self.loss_aggs();
        (0..n)
            .filter(|&x| {
                (inn[x].bad >= 2 && inn[x].ratio() >= self.p.loss_node_ratio)
                    || (out[x].bad >= 2 && out[x].ratio() >= self.p.loss_node_ratio)
            })
            .collect()
    }

    fn loss_stage(&mut self) {
        let mut lossy: Vec<usize> = self
            .peer
            .iter()
            .copied()
            .filter(|&i| !self.explained.contains_key(&i) && self.pair_lossy(i))
            .collect();
        lossy.extend(self.deferred_loss.iter().copied());
        let apps = std::mem::take(&mut self.deferred_app_loss);
        if lossy.is_empty() {
            return;
        }
        let nodes = self.lossy_nodes();
        let (inn, out) = self.loss_aggs();
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
            if fresh.len() < 2 {
                continue;
            }
            covered.extend(fresh.iter().copied());
            let known = (inn[x].known, out[x].known);
            let mut d = self.loss_node_draft(x, &fresh, known);
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
            groups.entry(zkey(pc.src, d)).or_default().push(i);
        }
        for &i in &apps {
            if covered.contains(&i) {
                continue;
            }
            let pc = &self.m.pairs[i];
            let Some(d) = self.dst_node(i) else { continue };
            if let Some(g) = groups.get_mut(&zkey(pc.src, d)) {
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
                        super::matrix::LAYERS[k].as_str(),
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

    fn loss_node_draft(&self, x: usize, pairs: &[usize], known: (u32, u32)) -> Draft {
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
        let inn = Agg {
            bad: (pairs.len() as u32 - n_out).min(known.0),
            known: known.0,
            ..Agg::default()
        };
        let out = Agg {
            bad: n_out.min(known.1),
            known: known.1,
            ..Agg::default()
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

    // ---------------------------------------------------------------- output

    fn finish(self) -> Vec<Finding> {
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
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.cause.cmp(&b.cause))
                .then(a.nodes.cmp(&b.nodes))
                .then(a.targets.cmp(&b.targets))
        });
        out
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

fn mtu_steps(node: Option<&str>) -> Vec<String> {
    let on = node.map_or("a node".to_string(), |n| n.to_string());
    vec![
        format!("Runbook, last section (MTU mismatch): on {on}, `ip link show` — compare the uplink's MTU with cni0 / the pod veths / the overlay device (VXLAN needs 50 bytes, WireGuard 60)"),
        "From a pod: `ping -M do -s 1472 <peer pod IP>` (1500-byte packets; lower -s until it passes) and `ip route get <peer pod IP>` (a cached `mtu` shows a learned path MTU)".into(),
        "Align the CNI's MTU setting (flannel `--iface-mtu`, calico `veth_mtu`, cilium `mtu`) with the underlay; after fixing, `ip route flush cache` on the nodes".into(),
    ]
}

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
