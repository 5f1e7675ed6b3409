//! Path-MTU discovery per destination, as pure state machines (no I/O, no clock reads: the
//! caller passes `now`). The Don't-Fragment prober that sends what they ask for is
//! `meshprobe_probe::pmtu`.
//!
//! * [`MtuSearch`] (`search.rs`): the agent's search, one probe at a time, and its cadence.
//! * [`OnDemandSearch`] (`ondemand.rs`): the same questions in rounds of concurrent probes, for
//!   `meshprobe probe --mtu`.
//! * `types.rs`: what both use ([`MtuParams`], [`ProbeSize`], [`MtuOutcome`], [`MtuState`],
//!   [`MtuReport`]) and the black-hole evidence bar ([`random_loss_explains`]).
//!
//! The figures below are those the tests assert; measured ones, and why the search is built
//! this way, are in `docs/design/mtu.md`.
//!
//! # The search (RFC 4821 / RFC 8899 style)
//!
//! Sizes are IP packet sizes (IPv4: 20 header + 8 ICMP + payload; IPv6: 40 + 8 + payload), the
//! unit interface MTUs and ICMP reports use: `ping -M do -s N` passes when N + 28 ≤ the path
//! MTU. One probe is in flight at a time; search probes are spaced [`MtuParams::probe_gap`]
//! apart.
//!
//! 1. **Base first**: the base size (1200 IPv4, 1280 IPv6) must pass; if it never does (three
//!    tries lost) the destination is unreachable and the state is `unknown`.
//! 2. **Then the largest candidates, largest first**: the local interface MTU, then each common
//!    size it allows (9001, 9000, 8500, 1500).
//! 3. **Then binary search** between the largest confirmed size and the smallest failed one,
//!    down to one byte.
//! 4. **A size fails only when all its tries fail**: a lost probe is retried, up to
//!    [`MtuParams::tries`](MtuParams#structfield.tries) (3) in all, so random loss does not
//!    shrink the MTU. An ICMP fragmentation-needed / packet-too-big fails the size at once (the
//!    router said so), and its next-hop MTU `m` is trusted as an upper bound (`m + 1` fails)
//!    and probed next: when `m` passes the search is over. `EMSGSIZE` from the local stack
//!    fails the size at once too.
//! 5. **A silent failure is verified before it is called a black hole** (random loss must not
//!    look like one): the failed size F and the largest confirmed size C are probed in turn — C
//!    until the search holds 16 results at or below C (cheap: they pass in one round trip),
//!    then F and C alternately. With `r` the loss rate of those small probes (smoothed, plus one
//!    standard error: [`random_loss_explains`]), F is a black hole once `r^(F's losses)` ≤
//!    10⁻⁵ — random loss at the small probes' rate would almost never lose F that often. F
//!    passing once ends the verification (it was loss; the search goes on); after
//!    [`MtuParams::verify_probes`] (40) without a verdict, or a third silent failure in one
//!    search, the state is `loss`. Random loss alone (10, 30, 50 %) never reads as a black
//!    hole, and at 30 % random loss at least 90 % of real black holes are still found (the
//!    tests `random_loss_is_never_a_blackhole`, `a_blackhole_under_loss_is_still_found`).
//! 6. **Conclusion**: the path MTU is the largest confirmed size, and the state is
//!    * `ok` when it equals the local interface MTU;
//!    * `mismatch` when it is smaller and the tightest failure was signalled (ICMP, or EMSGSIZE);
//!    * `blackhole` when it is smaller and the tightest failure was silent and verified (probes
//!      just lost while smaller ones passed: an RFC 2923 PMTUD black hole);
//!    * `loss` when the verification could not tell a black hole from random loss (`path_mtu`
//!      is then a lower bound);
//!    * `unknown` when not even the base size passed;
//!    * `searching` until the first search concludes (later searches keep the previous result,
//!      with [`MtuReport::searching`] set).
//!
//! # On demand
//!
//! `meshprobe probe --mtu` (the on-demand probe) cannot wait for this search through a black
//! hole (one probe at a time, every lost try a full timeout). [`OnDemandSearch`] asks the same
//! questions in rounds of concurrent probes — base, local MTU and plateaus at once, then seven
//! sizes per bisection round, every try of a size in the same round, and the black-hole
//! verification as rounds of large and small probes interleaved — so a round costs one timeout
//! at most and a clean black hole is called after 5 rounds, with the same evidence bar
//! ([`random_loss_explains`] ≤ [`BLACKHOLE_EVIDENCE`]). The number of rounds is a parameter
//! (the caller's budget over the round's length); when they run out, an unverified silent
//! failure is `loss`, never `blackhole`.
//!
//! # Cadence
//!
//! A full search when the destination appears, and every [`MtuParams::search_interval`]
//! (10 min) after the last one concluded. In between, every [`MtuParams::check_interval`]
//! (30 s), a cheap check:
//! * state `ok`: one probe at the path MTU (up to three tries if lost). If it fails, a new search
//!   starts at once: a regression is concluded within one check interval plus one search.
//! * state `mismatch`/`blackhole`/`loss`: first one probe at the local MTU (recovery: if it
//!   passes the path is whole again and the state is `ok` at once; an ICMP naming another MTU
//!   starts a new search), then the regression probe at the path MTU as above.
//! * state `unknown`: a new search (one base probe while the destination stays down, three
//!   tries).
//!
//! # Cost, in probe packets sent per destination per hour (replies are as many, same size)
//!
//! Asserted by the test `cost_per_destination_per_hour` at the defaults:
//! * healthy path (`ok`; local MTU 1500 over IPv4 or IPv6, or 9001): 6 searches × 2 probes
//!   (base + full size) + 6 × 19 checks = **126 probes/h**; at 1500 over IPv4, 187,200 bytes/h
//!   each way (≈ 52 B/s).
//! * signalled mismatch (1500 local, 1400 path, IPv4 or IPv6): each search is base, 1500
//!   (ICMP), 1400 = 3 probes, each check 2 (recovery at 1500 answered by ICMP, 1400) →
//!   **246 probes/h**.
//! * black hole (1500 local, 1400 path, ICMP filtered): each search is a binary search in which
//!   each failed size costs three lost tries, then the verification; each check 2 (the lost
//!   recovery probe is not retried) → **390 to 420 probes/h** (IPv6: 400 to 440).
//! * unreachable destination: three base probes per search → **300 to 340 probes/h**.

mod ondemand;
mod search;
mod types;

pub use ondemand::{OnDemandParams, OnDemandSearch, MAX_ON_DEMAND_ROUNDS};
pub use search::MtuSearch;
pub use types::{
    random_loss_explains, MtuOutcome, MtuParams, MtuReport, MtuState, ProbeKind, ProbeSize,
    BASE_V4, BASE_V6, BLACKHOLE_EVIDENCE, MAX_MTU, MAX_VERIFICATIONS, MIN_REPORTED_MTU, PLATEAUS,
};

#[cfg(test)]
mod sim_path;
