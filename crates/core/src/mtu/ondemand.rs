//! The on-demand search: the agent's questions asked in rounds of concurrent probes, within a
//! budget of rounds (see the [module documentation](crate::mtu)).

use std::net::IpAddr;
use std::time::Duration;

use super::types::{
    random_loss_explains, Conclusion, Fail, FailKind, MtuOutcome, MtuParams, MtuReport, MtuState,
    ProbeKind, ProbeSize, BLACKHOLE_EVIDENCE, MAX_VERIFICATIONS,
};

/// How an on-demand (one-shot) path-MTU search runs: the continuous search's sizes and
/// evidence bar, but every try of a size is sent in the same round, several sizes are probed per
/// round, and the number of rounds is bounded (the caller's budget divided by the per-try
/// timeout). A round costs one round trip when every probe is answered, one probe timeout when
/// one is lost. See [`OnDemandSearch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemandParams {
    /// Base, local MTU, plateaus and tries per size (3) as in the continuous search;
    /// the timing fields are not used.
    pub search: MtuParams,
    /// Sizes probed per bisection round (7: the range shrinks eightfold per round).
    pub points: u32,
    /// Probes at the failed size per verification round (6).
    pub verify_large: u32,
    /// Probes at the largest confirmed size per verification round (6).
    pub verify_small: u32,
    /// Verification rounds of one failed size before it concludes `loss` (3).
    pub verify_rounds: u32,
    /// Rounds at most; when they run out the search concludes with what it has (a silent
    /// failure is verified in the last round rather than bisected further).
    pub max_rounds: u32,
}

impl OnDemandParams {
    /// How many rounds fit in `budget` at `per_try` each (a round lasts one per-try timeout at
    /// most, plus the spacing of its sends), between 1 and [`MAX_ON_DEMAND_ROUNDS`].
    pub fn rounds_within(budget: Duration, per_try: Duration) -> u32 {
        let n = budget.as_micros() / per_try.as_micros().max(1);
        u32::try_from(n)
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_ON_DEMAND_ROUNDS)
    }

    /// The defaults for the destination's address family, within `max_rounds` rounds.
    pub fn for_ip(ip: IpAddr, local_mtu: u32, max_rounds: u32) -> OnDemandParams {
        OnDemandParams {
            search: MtuParams::for_ip(ip, local_mtu),
            points: 7,
            verify_large: 6,
            verify_small: 6,
            verify_rounds: 3,
            max_rounds,
        }
    }
}

/// The most rounds an on-demand search runs (enough for a black hole under 30 % loss: round 0,
/// three bisection rounds, a failed verification and the bisection after it, three
/// verification rounds).
pub const MAX_ON_DEMAND_ROUNDS: u32 = 12;

/// One size's results within an on-demand search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeStat {
    size: u32,
    passed: u32,
    lost: u32,
    /// ICMP (or the local stack) said this size is too big.
    signalled: bool,
    /// Who said so.
    from: Option<IpAddr>,
}

/// A path-MTU search for one on-demand check: pure, round by round. The caller asks
/// [`OnDemandSearch::next_round`] for a batch of probes, sends them all at once (each with the
/// per-try timeout), and hands the results back ([`OnDemandSearch::on_results`], or one by one
/// with [`OnDemandSearch::on_result`], stopping early once [`OnDemandSearch::settled`], then
/// [`OnDemandSearch::end_round`]); `None` means the search has concluded
/// ([`OnDemandSearch::report`], [`OnDemandSearch::evidence`]); [`OnDemandSearch::give_up`]
/// concludes at once when the caller's time is up.
///
/// 1. **Round 0**: the base size, the local MTU and every plateau between them, each
///    [`MtuParams::tries`](MtuParams#structfield.tries) times. A healthy path concludes `ok`
///    here, in one round trip; an ICMP report names the next size to try (one more round trip:
///    `mismatch`).
/// 2. **Bisection**: [`OnDemandParams::points`] sizes evenly spread between the largest
///    confirmed size C and the smallest failed one U, each `tries` times; a size fails only when
///    every try is lost (or ICMP says so). 1200…1500 takes three rounds. A silent failure
///    between two plateaus (jumbo 9001 → 1500) is not bisected, as in the continuous search.
/// 3. **Verification** of a silent failure (U = C + 1, or the last round left): the same
///    evidence bar as the continuous search ([`random_loss_explains`] ≤
///    [`BLACKHOLE_EVIDENCE`]), gathered faster — each round sends
///    [`OnDemandParams::verify_large`] probes at U interleaved with
///    [`OnDemandParams::verify_small`] at C, all at once. One probe at U passing means random
///    loss (the search goes on above it; a third silent failure concludes `loss`); after
///    [`OnDemandParams::verify_rounds`] rounds without a verdict the state is `loss`. A clean
///    black hole is called after one verification round: 9 losses at U, none at or below C.
///
/// A clean black hole at 1400 behind a 1500 interface takes 5 rounds, each one probe timeout
/// long; `ok` one round trip; a signalled mismatch two.
#[derive(Debug, Clone)]
pub struct OnDemandSearch {
    params: OnDemandParams,
    sizes: Vec<SizeStat>,
    /// A next-hop MTU a router reported, to try next.
    hint: Option<u32>,
    /// The failed size being verified (U, with C), and the verification rounds spent on it.
    verify: Option<(u32, u32, u32)>,
    verifications: u8,
    rounds: u32,
    probes: u32,
    /// The sizes of the round in flight (results for others are ignored).
    asked: Vec<u32>,
    conclusion: Option<Conclusion>,
}

impl OnDemandSearch {
    pub fn new(params: OnDemandParams) -> OnDemandSearch {
        OnDemandSearch {
            params,
            sizes: Vec::new(),
            hint: None,
            verify: None,
            verifications: 0,
            rounds: 0,
            probes: 0,
            asked: Vec::new(),
            conclusion: None,
        }
    }

    pub fn params(&self) -> &OnDemandParams {
        &self.params
    }

    /// Rounds sent so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Probes sent so far.
    pub fn probes(&self) -> u32 {
        self.probes
    }

    /// Whether the search has concluded.
    pub fn concluded(&self) -> bool {
        self.conclusion.is_some()
    }

    /// The caller's time is up: conclude now with what is known (an unverified silent failure
    /// is `loss`, never `blackhole`).
    pub fn give_up(&mut self) {
        self.asked.clear();
        self.conclude();
    }

    /// Tries per size, bounded (a round stays small whatever the parameters say).
    fn tries(&self) -> u32 {
        u32::from(self.params.search.tries.clamp(1, 10))
    }

    /// The next round's probes, to send all at once; `None` once the search has concluded.
    pub fn next_round(&mut self) -> Option<Vec<ProbeSize>> {
        if self.conclusion.is_some() {
            return None;
        }
        if self.rounds >= self.params.max_rounds.max(1) {
            self.conclude();
            return None;
        }
        let plan = self.plan();
        if plan.is_empty() {
            self.conclude();
            return None;
        }
        self.rounds += 1;
        self.probes = self
            .probes
            .saturating_add(u32::try_from(plan.len()).unwrap_or(u32::MAX));
        self.asked = plan.clone();
        Some(
            plan.into_iter()
                .map(|size| ProbeSize {
                    size,
                    kind: ProbeKind::Search,
                })
                .collect(),
        )
    }

    /// The results of the round [`OnDemandSearch::next_round`] asked for (in any order; a
    /// result for a size not asked is ignored, a probe without a result counts as lost).
    pub fn on_results(&mut self, results: &[(u32, MtuOutcome)]) {
        for (size, outcome) in results {
            self.on_result(*size, outcome);
        }
        self.end_round();
    }

    /// One result of the round in flight, as it comes (then [`OnDemandSearch::end_round`]).
    pub fn on_result(&mut self, size: u32, outcome: &MtuOutcome) {
        let Some(i) = self.asked.iter().position(|s| *s == size) else {
            return;
        };
        self.asked.swap_remove(i);
        let min_reported = self.params.search.min_reported();
        let stat = self.stat(size);
        match outcome {
            MtuOutcome::Ok => stat.passed = stat.passed.saturating_add(1),
            MtuOutcome::Lost | MtuOutcome::Failed(_) => stat.lost = stat.lost.saturating_add(1),
            MtuOutcome::LocalTooBig => stat.signalled = true,
            MtuOutcome::TooBig { mtu, from } => {
                stat.signalled = true;
                stat.from = stat.from.or(*from);
                if let Some(m) = mtu.filter(|&m| (min_reported..size).contains(&m)) {
                    // Nothing above m passes that router: m + 1 fails, m is tried next.
                    let bound = self.stat(m + 1);
                    bound.signalled = true;
                    bound.from = bound.from.or(*from);
                    self.hint = Some(m);
                }
            }
        }
    }

    /// Whether the outcome is already certain, whatever the round's other results: the local
    /// MTU passed (nothing can be larger). The caller may stop waiting for the rest.
    pub fn settled(&self) -> bool {
        self.confirmed()
            .is_some_and(|c| c >= self.params.search.max())
    }

    /// The round is over: the probes asked for without a result count as lost (unless the
    /// outcome was already [`OnDemandSearch::settled`]).
    pub fn end_round(&mut self) {
        let asked = std::mem::take(&mut self.asked);
        if !self.settled() {
            for size in asked {
                let stat = self.stat(size);
                stat.lost = stat.lost.saturating_add(1);
            }
        }
        self.after_verification();
    }

    /// What is known now (`searching` until concluded).
    pub fn report(&self) -> MtuReport {
        let (path_mtu, state, reported_by) = match self.conclusion {
            Some(c) => (c.path_mtu, c.state, c.reported_by),
            None => (self.confirmed(), MtuState::Searching, None),
        };
        MtuReport {
            path_mtu,
            expected_mtu: self.params.search.local_mtu,
            state,
            searching: self.conclusion.is_none(),
            reported_by,
            probes_sent: u64::from(self.probes),
            searches: u64::from(self.conclusion.is_some()),
        }
    }

    /// The evidence behind the conclusion, in one sentence.
    pub fn evidence(&self) -> String {
        let max = self.params.search.max();
        let c = self.confirmed();
        let failed = self.failed_above(c.unwrap_or(0));
        let (ok, lost) = c.map_or((0, 0), |c| self.at_or_below(c));
        let small = |c: u32| {
            format!(
                "{c} bytes and smaller passed {ok} of {} probes",
                ok.saturating_add(lost)
            )
        };
        let state = self.conclusion.map_or(MtuState::Searching, |c| c.state);
        match (state, c, failed) {
            (MtuState::Ok, Some(c), _) => {
                format!("{c}-byte Don't-Fragment probes (the interface MTU) pass")
            }
            (MtuState::Mismatch, Some(c), Some(f)) => format!(
                "{} bytes: {} said too big (fragmentation needed); {}",
                f.size,
                f.from
                    .map_or("the local stack".to_string(), |a| a.to_string()),
                small(c)
            ),
            (MtuState::Blackhole | MtuState::Loss, Some(c), Some(f)) => {
                let s = self.at(f.size);
                let verdict = if state == MtuState::Blackhole {
                    "random loss at the small probes' rate cannot explain that: a black hole"
                } else {
                    "random loss cannot be ruled out"
                };
                format!(
                    "{}-byte Don't-Fragment probes lost {} of {} with no ICMP error, {}: {verdict}",
                    f.size,
                    s.lost,
                    s.lost.saturating_add(s.passed),
                    small(c)
                )
            }
            (_, None, _) => {
                let s = self.at(self.params.search.base());
                format!(
                    "not even {} bytes passed ({} probes lost)",
                    self.params.search.base(),
                    s.lost
                )
            }
            (_, Some(c), _) => format!(
                "{c} bytes pass; sizes up to {max} not settled within {} rounds",
                self.rounds
            ),
        }
    }

    fn stat(&mut self, size: u32) -> &mut SizeStat {
        let i = match self.sizes.iter().position(|s| s.size == size) {
            Some(i) => i,
            None => {
                self.sizes.push(SizeStat {
                    size,
                    passed: 0,
                    lost: 0,
                    signalled: false,
                    from: None,
                });
                self.sizes.len() - 1
            }
        };
        &mut self.sizes[i]
    }

    fn at(&self, size: u32) -> SizeStat {
        self.sizes
            .iter()
            .find(|s| s.size == size)
            .copied()
            .unwrap_or(SizeStat {
                size,
                passed: 0,
                lost: 0,
                signalled: false,
                from: None,
            })
    }

    /// (passed, lost) over the sizes at or below `size`: the small probes' loss rate.
    fn at_or_below(&self, size: u32) -> (u32, u32) {
        self.sizes
            .iter()
            .filter(|s| s.size <= size)
            .fold((0, 0), |(o, l), s| {
                (o.saturating_add(s.passed), l.saturating_add(s.lost))
            })
    }

    /// The largest size that passed.
    fn confirmed(&self) -> Option<u32> {
        self.sizes
            .iter()
            .filter(|s| s.passed > 0)
            .map(|s| s.size)
            .max()
    }

    /// The smallest size above `c` that failed: never passed, and ICMP said too big or every
    /// try was lost.
    fn failed_above(&self, c: u32) -> Option<Fail> {
        let tries = self.tries();
        self.sizes
            .iter()
            .filter(|s| s.size > c && s.passed == 0 && (s.signalled || s.lost >= tries))
            .min_by_key(|s| s.size)
            .map(|s| Fail {
                size: s.size,
                kind: if s.signalled {
                    FailKind::Signalled
                } else {
                    FailKind::Silent
                },
                from: s.from,
            })
    }

    fn probed(&self, size: u32) -> bool {
        self.sizes
            .iter()
            .any(|s| s.size == size && (s.passed.saturating_add(s.lost) > 0 || s.signalled))
    }

    /// `n` tries of each size, interleaved (one of each, then again), so a burst lost on the
    /// wire does not take all the tries of one size.
    fn tries_of(sizes: &[u32], n: u32) -> Vec<u32> {
        (0..n).flat_map(|_| sizes.iter().copied()).collect()
    }

    /// The sizes of the next round (empty: conclude).
    fn plan(&mut self) -> Vec<u32> {
        let tries = self.tries();
        let p = &self.params;
        let max = p.search.max();
        let base = p.search.base();
        let Some(c) = self.confirmed() else {
            if self.sizes.is_empty() {
                // Round 0: base, the local MTU and the plateaus between them.
                let mut sizes = vec![base];
                for s in std::iter::once(max).chain(p.search.plateaus.iter().copied()) {
                    if s > base && s <= max && !sizes.contains(&s) {
                        sizes.push(s);
                    }
                }
                return Self::tries_of(&sizes, tries);
            }
            // The base failed: a smaller reported size may still pass.
            return match self.hint.take() {
                Some(h) if h < base && !self.probed(h) => Self::tries_of(&[h], tries),
                _ => Vec::new(),
            };
        };
        if c >= max {
            return Vec::new();
        }
        let Some(fail) = self.failed_above(c) else {
            // Nothing above c failed and max never passed: only after a flapping path.
            return if self.probed(max) {
                Vec::new()
            } else {
                Self::tries_of(&[max], tries)
            };
        };
        let upper = fail.size;
        if let Some(h) = self.hint.take().filter(|&h| c < h && h < upper) {
            if !self.probed(h) {
                return Self::tries_of(&[h], tries);
            }
        }
        if let Some((large, small, rounds)) = self.verify {
            if large == upper && small == c && rounds < p.verify_rounds {
                return self.verification_round(large, small);
            }
        }
        let last_round = self.rounds.saturating_add(1) >= p.max_rounds.max(1);
        let silent = fail.kind == FailKind::Silent;
        let plateau_gap = silent && {
            let is_plateau = |s: u32| s < max && p.search.plateaus.contains(&s);
            is_plateau(c) && (upper == max || is_plateau(upper))
        };
        if upper - c > 1 && !plateau_gap && !(silent && last_round) {
            // Bisection: `points` sizes evenly spread strictly between c and upper.
            let span = u64::from(upper - c);
            let k = u64::from(p.points.clamp(1, 31));
            let mut sizes: Vec<u32> = (1..=k)
                .map(|i| c + u32::try_from(span * i / (k + 1)).unwrap_or(0))
                .filter(|&s| c < s && s < upper)
                .collect();
            sizes.dedup();
            return Self::tries_of(&sizes, tries);
        }
        if !silent {
            return Vec::new();
        }
        // A silent failure: verify it before calling it a black hole.
        if self.verifications >= MAX_VERIFICATIONS {
            return Vec::new();
        }
        self.verifications += 1;
        self.verify = Some((upper, c, 0));
        self.verification_round(upper, c)
    }

    fn verification_round(&mut self, large: u32, small: u32) -> Vec<u32> {
        if let Some(v) = self.verify.as_mut() {
            v.2 += 1;
        }
        let (l, s) = (
            self.params.verify_large.clamp(1, 32),
            self.params.verify_small.clamp(1, 32),
        );
        let mut sizes = Vec::new();
        for i in 0..l.max(s) {
            if i < s {
                sizes.push(small);
            }
            if i < l {
                sizes.push(large);
            }
        }
        sizes
    }

    /// After a round: a verification running reaches its verdict when it can.
    fn after_verification(&mut self) {
        let Some((large, small, rounds)) = self.verify else {
            return;
        };
        let s = self.at(large);
        if s.passed > 0 || s.signalled {
            // It passed after all (random loss), or ICMP spoke: back to the search.
            self.verify = None;
            return;
        }
        let (ok, lost) = self.at_or_below(small);
        if s.lost >= self.tries() && random_loss_explains(s.lost, ok, lost) <= BLACKHOLE_EVIDENCE {
            self.conclusion = Some(Conclusion {
                path_mtu: Some(small),
                state: MtuState::Blackhole,
                reported_by: None,
            });
        } else if rounds >= self.params.verify_rounds {
            self.conclusion = Some(Conclusion {
                path_mtu: Some(small),
                state: MtuState::Loss,
                reported_by: None,
            });
        }
    }

    /// Nothing more to probe (or no rounds left): conclude from what is known.
    fn conclude(&mut self) {
        if self.conclusion.is_some() {
            return;
        }
        let max = self.params.search.max();
        let c = self.confirmed();
        self.conclusion = Some(match (c, c.and_then(|c| self.failed_above(c))) {
            (None, _) => Conclusion {
                path_mtu: None,
                state: MtuState::Unknown,
                reported_by: None,
            },
            (Some(c), _) if c >= max => Conclusion {
                path_mtu: Some(c),
                state: MtuState::Ok,
                reported_by: None,
            },
            (Some(c), Some(f)) => Conclusion {
                path_mtu: Some(c),
                state: match f.kind {
                    FailKind::Signalled => MtuState::Mismatch,
                    // Unverified (or verified as random loss): not a black hole.
                    FailKind::Silent => MtuState::Loss,
                },
                reported_by: f.from,
            },
            (Some(c), None) => Conclusion {
                path_mtu: Some(c),
                state: MtuState::Unknown,
                reported_by: None,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mtu::sim_path::{concluded, router, Path, RTT, TIMEOUT};

    /// Drives an on-demand search against a path in simulated time: each round lasts the
    /// longest of its probes (a round trip, or the per-try timeout when one is lost).
    struct OnDemandRun {
        report: MtuReport,
        evidence: String,
        rounds: u32,
        probes: u32,
        took: Duration,
    }

    fn on_demand(params: OnDemandParams, path: &mut Path, per_try: Duration) -> OnDemandRun {
        let mut search = OnDemandSearch::new(params);
        let mut took = Duration::ZERO;
        while let Some(round) = search.next_round() {
            assert!(search.rounds() <= MAX_ON_DEMAND_ROUNDS);
            let results: Vec<(u32, MtuOutcome)> = round
                .iter()
                .map(|p| (p.size, path.answer(p.size)))
                .collect();
            took += results
                .iter()
                .map(|(_, o)| match o {
                    MtuOutcome::Ok => RTT,
                    MtuOutcome::Lost | MtuOutcome::Failed(_) => per_try,
                    MtuOutcome::TooBig { .. } => RTT / 2,
                    MtuOutcome::LocalTooBig => Duration::ZERO,
                })
                .max()
                .unwrap_or_default()
                // The driver spaces a round's sends 1 ms apart.
                + Duration::from_millis(u64::try_from(round.len()).unwrap_or(0));
            search.on_results(&results);
        }
        assert!(search.concluded());
        OnDemandRun {
            report: search.report(),
            evidence: search.evidence(),
            rounds: search.rounds(),
            probes: search.probes(),
            took,
        }
    }

    /// The on-demand budget the agent gives its rounds (src/ondemand/run.rs: 10 s less a
    /// 500 ms margin; a round lasts the per-try timeout, the agent's probe timeout up to 1 s,
    /// plus 1 ms per probe sent).
    const OD_BUDGET: Duration = Duration::from_millis(9500);

    fn od_params(local: u32, per_try: Duration) -> OnDemandParams {
        OnDemandParams::for_ip(
            IpAddr::from([198, 19, 2, 10]),
            local,
            OnDemandParams::rounds_within(OD_BUDGET, per_try + Duration::from_millis(21)),
        )
    }

    #[test]
    fn on_demand_against_simulated_paths() {
        struct Case {
            name: &'static str,
            path: Path,
            want: (Option<u32>, MtuState),
            max_rounds: u32,
            evidence: &'static str,
        }
        let cases = [
            Case {
                name: "clean 1500",
                path: Path::clean(1500),
                want: (Some(1500), MtuState::Ok),
                max_rounds: 1,
                evidence: "1500-byte Don't-Fragment probes (the interface MTU) pass",
            },
            Case {
                name: "signalled 1400",
                path: Path::clean(1500).hop(1500, true).hop(1400, true),
                want: (Some(1400), MtuState::Mismatch),
                max_rounds: 2,
                evidence: "1401 bytes: 198.18.0.2 said too big",
            },
            Case {
                name: "black hole 1400",
                path: Path::clean(1500).hop(1400, false),
                want: (Some(1400), MtuState::Blackhole),
                max_rounds: 5,
                evidence: "1401-byte Don't-Fragment probes lost 9 of 9 with no ICMP error, 1400 bytes and smaller passed",
            },
            Case {
                name: "black hole 1404 (the lab's veth)",
                path: Path::clean(1500).hop(1404, false),
                want: (Some(1404), MtuState::Blackhole),
                max_rounds: 5,
                evidence: "a black hole",
            },
            Case {
                name: "black hole 1460 (GCP)",
                path: Path::clean(1500).hop(1460, false),
                want: (Some(1460), MtuState::Blackhole),
                max_rounds: 5,
                evidence: "a black hole",
            },
            Case {
                name: "signalled 1450 then a silent 1420",
                path: Path::clean(1500).hop(1450, true).hop(1420, false),
                want: (Some(1420), MtuState::Blackhole),
                // round 0, 1450 (the report), three bisection rounds, the verification.
                max_rounds: 6,
                evidence: "1421-byte",
            },
            Case {
                name: "black hole at the base (1200)",
                path: Path::clean(1500).hop(1200, false),
                want: (Some(1200), MtuState::Blackhole),
                max_rounds: 5,
                evidence: "1201-byte",
            },
            Case {
                name: "jumbo 9001 clean",
                path: Path::clean(9001),
                want: (Some(9001), MtuState::Ok),
                max_rounds: 1,
                evidence: "9001-byte",
            },
            Case {
                name: "jumbo 9001, 1500 across a gateway, signalled",
                path: Path::clean(9001).hop(1500, true),
                want: (Some(1500), MtuState::Mismatch),
                max_rounds: 1,
                evidence: "said too big",
            },
            Case {
                name: "jumbo 9001, 1500 across a gateway, silent",
                path: Path::clean(9001).hop(1500, false),
                want: (Some(1500), MtuState::Blackhole),
                max_rounds: 2,
                evidence: "8500-byte",
            },
            Case {
                name: "jumbo 9001, 9000 path, silent",
                path: Path::clean(9001).hop(9000, false),
                want: (Some(9000), MtuState::Blackhole),
                max_rounds: 2,
                evidence: "9001-byte",
            },
            Case {
                name: "destination down",
                path: Path {
                    down: true,
                    ..Path::clean(1500)
                },
                want: (None, MtuState::Unknown),
                max_rounds: 1,
                evidence: "not even 1200 bytes passed",
            },
            Case {
                name: "local MTU below the base",
                path: Path::clean(1000),
                want: (Some(1000), MtuState::Ok),
                max_rounds: 1,
                evidence: "1000-byte",
            },
        ];
        for per_try in [Duration::from_secs(1), Duration::from_millis(500)] {
            for case in &cases {
                let mut path = case.path.clone();
                let r = on_demand(od_params(path.local_mtu, per_try), &mut path, per_try);
                assert_eq!(
                    concluded(&r.report),
                    case.want,
                    "{}: {}",
                    case.name,
                    r.evidence
                );
                assert!(!r.report.searching, "{}", case.name);
                assert!(
                    r.rounds <= case.max_rounds,
                    "{}: {} rounds",
                    case.name,
                    r.rounds
                );
                assert!(r.took <= OD_BUDGET, "{}: {:?}", case.name, r.took);
                assert!(
                    r.evidence.contains(case.evidence),
                    "{}: {}",
                    case.name,
                    r.evidence
                );
                eprintln!(
                    "per try {per_try:?}: {:50} {} rounds, {:>3} probes, {:>4.1} s: {}",
                    case.name,
                    r.rounds,
                    r.probes,
                    r.took.as_secs_f64(),
                    r.evidence
                );
            }
        }
        // The signalled mismatch names the router.
        let mut path = Path::clean(1500).hop(1500, true).hop(1400, true);
        let r = on_demand(od_params(1500, TIMEOUT), &mut path, TIMEOUT);
        assert_eq!(r.report.reported_by, Some(router(2)));
        // IPv6: base 1280.
        let mut path = Path::clean(1500).hop(1280, false);
        let params = OnDemandParams::for_ip("2001:db8::1".parse().unwrap(), 1500, 9);
        let r = on_demand(params, &mut path, TIMEOUT);
        assert_eq!(concluded(&r.report), (Some(1280), MtuState::Blackhole));
    }

    /// Random loss alone on a clean path, 200 seeds each at 10, 30 and 50 %: never a black hole,
    /// nearly always `ok`, always within the budget.
    #[test]
    fn on_demand_random_loss_is_never_a_blackhole() {
        for (loss, min_ok) in [(10, 200), (30, 195), (50, 180)] {
            let mut states = std::collections::BTreeMap::<MtuState, u32>::new();
            let mut worst = Duration::ZERO;
            for seed in 1..=200u64 {
                let mut path = Path::clean(1500).lossy(loss);
                path.rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let r = on_demand(od_params(1500, TIMEOUT), &mut path, TIMEOUT);
                assert_ne!(
                    r.report.state,
                    MtuState::Blackhole,
                    "{loss} % loss, seed {seed}: {}",
                    r.evidence
                );
                assert!(r.took <= OD_BUDGET, "{loss} %, seed {seed}: {:?}", r.took);
                worst = worst.max(r.took);
                *states.entry(r.report.state).or_default() += 1;
            }
            eprintln!("on demand, {loss} % loss: {states:?}, slowest {worst:?}");
            let ok = states.get(&MtuState::Ok).copied().unwrap_or(0);
            assert!(ok >= min_ok, "{loss} %: {states:?}");
        }
        // Loss at one size only (a flaky large frame, small ones clean): 3 lost tries by
        // chance at 1500 are re-checked, never a black hole.
        let mut false_bh = 0;
        for seed in 1..=200u64 {
            let mut rng = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
            let mut search = OnDemandSearch::new(od_params(1500, TIMEOUT));
            while let Some(round) = search.next_round() {
                let results: Vec<_> = round
                    .iter()
                    .map(|p| {
                        rng ^= rng >> 12;
                        rng ^= rng << 25;
                        rng ^= rng >> 27;
                        let r = (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % 100;
                        let lost = r < if p.size > 1400 { 30 } else { 10 };
                        (
                            p.size,
                            if lost {
                                MtuOutcome::Lost
                            } else {
                                MtuOutcome::Ok
                            },
                        )
                    })
                    .collect();
                search.on_results(&results);
            }
            if search.report().state == MtuState::Blackhole {
                false_bh += 1;
            }
        }
        assert_eq!(false_bh, 0, "lossier large frames read as a black hole");
    }

    /// A real black hole under random loss (0, 10 and 30 %) is still found, within the budget,
    /// never at the wrong size.
    #[test]
    fn on_demand_blackhole_under_loss_is_found() {
        for (loss, min_found) in [(0, 100), (10, 97), (30, 90)] {
            let mut other = std::collections::BTreeMap::<(Option<u32>, MtuState), u32>::new();
            let mut found = 0;
            let mut worst = Duration::ZERO;
            for seed in 1..=100u64 {
                let mut path = Path::clean(1500).hop(1400, false).lossy(loss);
                path.rng = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
                let r = on_demand(od_params(1500, TIMEOUT), &mut path, TIMEOUT);
                assert!(r.took <= OD_BUDGET, "{loss} %, seed {seed}: {:?}", r.took);
                worst = worst.max(r.took);
                let got = concluded(&r.report);
                if got == (Some(1400), MtuState::Blackhole) {
                    found += 1;
                } else {
                    assert_ne!(got.1, MtuState::Blackhole, "wrong size: {}", r.evidence);
                    *other.entry(got).or_default() += 1;
                }
            }
            eprintln!(
                "on demand, black hole 1400 under {loss} % loss: {found}/100, others {other:?}, slowest {worst:?}"
            );
            assert!(found >= min_found, "{loss} %: {found} {other:?}");
        }
    }

    #[test]
    fn on_demand_rounds_and_odd_inputs() {
        assert_eq!(
            OnDemandParams::rounds_within(Duration::from_millis(9500), Duration::from_secs(1)),
            9
        );
        assert_eq!(
            OnDemandParams::rounds_within(Duration::from_secs(10), Duration::from_millis(100)),
            MAX_ON_DEMAND_ROUNDS
        );
        assert_eq!(
            OnDemandParams::rounds_within(Duration::from_secs(1), Duration::ZERO),
            MAX_ON_DEMAND_ROUNDS
        );
        assert_eq!(
            OnDemandParams::rounds_within(Duration::ZERO, Duration::from_secs(1)),
            1
        );
        // A single round: a black hole cannot be verified in it, and is not called one.
        let mut path = Path::clean(1500).hop(1400, false);
        let r = on_demand(
            OnDemandParams::for_ip(IpAddr::from([10, 0, 0, 1]), 1500, 1),
            &mut path,
            TIMEOUT,
        );
        assert_eq!(r.rounds, 1);
        assert_eq!(r.report.state, MtuState::Loss, "{}", r.evidence);
        // Few rounds: the last one verifies what the bisection has (a lower bound).
        for rounds in 2..=5 {
            let mut path = Path::clean(1500).hop(1400, false);
            let r = on_demand(
                OnDemandParams::for_ip(IpAddr::from([10, 0, 0, 1]), 1500, rounds),
                &mut path,
                TIMEOUT,
            );
            assert!(r.rounds <= rounds);
            assert_eq!(
                r.report.state,
                MtuState::Blackhole,
                "{rounds}: {}",
                r.evidence
            );
            assert!(r
                .report
                .path_mtu
                .is_some_and(|m| (1200..=1400).contains(&m)));
        }
        // Results never asked for, missing results, odd parameters: no panic, a conclusion.
        for local in [0, 1, 68, 1200, 1500, 65535, u32::MAX] {
            for tries in [0, 1, 3, 255] {
                let mut params = OnDemandParams::for_ip(IpAddr::from([10, 0, 0, 1]), local, 12);
                params.search.tries = tries;
                params.points = u32::from(tries);
                let mut s = OnDemandSearch::new(params);
                let mut n = 0u32;
                while let Some(round) = s.next_round() {
                    let results: Vec<_> = round
                        .iter()
                        .skip(1)
                        .map(|p| {
                            n += 1;
                            let o = match n % 5 {
                                0 => MtuOutcome::Ok,
                                1 => MtuOutcome::Lost,
                                2 => MtuOutcome::TooBig {
                                    mtu: Some(p.size / 2),
                                    from: None,
                                },
                                3 => MtuOutcome::LocalTooBig,
                                _ => MtuOutcome::Ok,
                            };
                            (p.size.wrapping_add(n % 2), o)
                        })
                        .collect();
                    s.on_results(&results);
                    assert!(s.rounds() <= 12);
                }
                let _ = s.evidence();
                assert!(!s.report().searching);
            }
        }
    }
}
