//! What both searches use: parameters, the probe asked for and its outcome, the state and
//! report of a path, and the evidence bar that tells a black hole from random loss.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::model::ErrorClass;

/// The base size of an IPv4 search (RFC 8899 suggests 1200 as BASE_PLPMTU for IPv4).
pub const BASE_V4: u32 = 1200;
/// The base size of an IPv6 search: the IPv6 minimum link MTU.
pub const BASE_V6: u32 = 1280;
/// Common path MTUs probed (when below the local MTU) before the binary search: AWS in-VPC,
/// the usual jumbo sizes, Ethernet.
pub const PLATEAUS: [u32; 4] = [9001, 9000, 8500, 1500];
/// The smallest next-hop MTU a router's report may name and be believed over IPv4 (its minimum
/// reassembly size); over IPv6 it is 1280 (see `MtuParams::min_reported`).
pub const MIN_REPORTED_MTU: u32 = 576;
/// The largest IP packet.
pub const MAX_MTU: u32 = 65535;

/// How a search runs and how often. Defaults via [`MtuParams::ipv4`] / [`MtuParams::ipv6`] /
/// [`MtuParams::for_ip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtuParams {
    /// The size every search confirms first (1200 IPv4, 1280 IPv6).
    pub base: u32,
    /// The local interface MTU toward the destination: the largest size probed, and the
    /// expected path MTU.
    pub local_mtu: u32,
    /// Common sizes probed (those below the local MTU) before the binary search.
    pub plateaus: Vec<u32>,
    /// Tries per size before a lost size counts as failed (3).
    pub tries: u8,
    /// A full search every this long (10 min).
    pub search_interval: Duration,
    /// A full-size check every this long (30 s).
    pub check_interval: Duration,
    /// The pause between two probes of one search or check (200 ms).
    pub probe_gap: Duration,
    /// A probe whose result never came back counts as lost after this long (10 s): a safety
    /// net, the prober's own timeout should always answer first (keep it above the probe
    /// timeout).
    pub in_flight_limit: Duration,
    /// A search that has sent this many probes concludes with what it has (64). Black-hole
    /// verification probes are counted apart ([`MtuParams::verify_probes`]).
    pub max_probes_per_search: u32,
    /// The most probes one black-hole verification may send (40) before it gives up and
    /// concludes `loss`; a search runs at most [`MAX_VERIFICATIONS`] of them.
    pub verify_probes: u32,
}

impl MtuParams {
    pub fn ipv4(local_mtu: u32) -> MtuParams {
        MtuParams {
            base: BASE_V4,
            local_mtu,
            plateaus: PLATEAUS.to_vec(),
            tries: 3,
            search_interval: Duration::from_secs(600),
            check_interval: Duration::from_secs(30),
            probe_gap: Duration::from_millis(200),
            in_flight_limit: Duration::from_secs(10),
            max_probes_per_search: 64,
            verify_probes: 40,
        }
    }

    pub fn ipv6(local_mtu: u32) -> MtuParams {
        MtuParams {
            base: BASE_V6,
            ..MtuParams::ipv4(local_mtu)
        }
    }

    /// The defaults for the destination's address family.
    pub fn for_ip(ip: IpAddr, local_mtu: u32) -> MtuParams {
        match ip {
            IpAddr::V4(_) => MtuParams::ipv4(local_mtu),
            IpAddr::V6(_) => MtuParams::ipv6(local_mtu),
        }
    }

    /// The local MTU, bounded to what an IP packet can be and to at least 68 bytes.
    pub(super) fn max(&self) -> u32 {
        self.local_mtu.clamp(68, MAX_MTU)
    }

    /// The base, never above the local MTU.
    pub(super) fn base(&self) -> u32 {
        self.base.clamp(68, self.max())
    }

    pub(super) fn tries(&self) -> u8 {
        self.tries.max(1)
    }

    /// The smallest next-hop MTU a report may name and be believed: 576, or 1280 for IPv6
    /// (base 1280: RFC 8201 §4 — a Packet Too Big below the IPv6 minimum link MTU is never
    /// acted on).
    pub(super) fn min_reported(&self) -> u32 {
        if self.base >= BASE_V6 {
            BASE_V6
        } else {
            MIN_REPORTED_MTU
        }
    }
}

/// What the state machine asks for: one DF probe of `size` bytes (the IP packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSize {
    pub size: u32,
    pub kind: ProbeKind,
}

/// Why a probe is sent (for logs and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Part of a full search.
    Search,
    /// The periodic probe at the path MTU (regression).
    Check,
    /// The periodic probe at the local MTU while the path is smaller (recovery).
    Recovery,
}

/// What one DF probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MtuOutcome {
    /// The echo reply came back: this size passes.
    Ok,
    /// Nothing came back within the timeout.
    Lost,
    /// ICMP fragmentation needed / packet too big from `from`, with the next-hop MTU it
    /// carried (when non-zero).
    TooBig {
        mtu: Option<u32>,
        from: Option<IpAddr>,
    },
    /// EMSGSIZE: the local stack refused the size (above the interface MTU).
    LocalTooBig,
    /// Another failure (unreachable, prohibited, a local error): counts as a lost try.
    Failed(ErrorClass),
}

impl MtuOutcome {
    /// The failure as the rest of meshprobe names it, `None` for `Ok`.
    pub fn error_class(&self) -> Option<ErrorClass> {
        match self {
            MtuOutcome::Ok => None,
            MtuOutcome::Lost => Some(ErrorClass::Timeout),
            MtuOutcome::TooBig { mtu, from } => Some(ErrorClass::FragNeeded {
                from: *from,
                mtu: *mtu,
            }),
            MtuOutcome::LocalTooBig => Some(ErrorClass::MessageTooLong),
            MtuOutcome::Failed(class) => Some(class.clone()),
        }
    }
}

/// The conclusion about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtuState {
    /// The path carries the local interface MTU.
    Ok,
    /// The path is smaller than the local MTU and ICMP (or the local stack) said so.
    Mismatch,
    /// The path is smaller than the local MTU and larger probes vanish without an ICMP error.
    Blackhole,
    /// Large probes were lost silently, but small ones were lost at a similar rate: random
    /// loss, not a black hole; `path_mtu` is a lower bound (the largest size seen to pass).
    Loss,
    /// The first search has not concluded yet.
    Searching,
    /// Not even the base size passes (the destination is unreachable).
    Unknown,
}

impl MtuState {
    pub const ALL: [MtuState; 6] = [
        MtuState::Ok,
        MtuState::Mismatch,
        MtuState::Blackhole,
        MtuState::Loss,
        MtuState::Searching,
        MtuState::Unknown,
    ];

    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MtuState::Ok => "ok",
            MtuState::Mismatch => "mismatch",
            MtuState::Blackhole => "blackhole",
            MtuState::Loss => "loss",
            MtuState::Searching => "searching",
            MtuState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for MtuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about one destination's path MTU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtuReport {
    /// The largest IP packet that passes with Don't-Fragment (bytes), once a search found one.
    pub path_mtu: Option<u32>,
    /// The local interface MTU toward the destination (bytes).
    pub expected_mtu: u32,
    pub state: MtuState,
    /// A search is running; `state` and `path_mtu` are the previous search's until it ends.
    pub searching: bool,
    /// The router whose ICMP report set the conclusion (state `mismatch`), when one did.
    pub reported_by: Option<IpAddr>,
    /// Probes sent since creation.
    pub probes_sent: u64,
    /// Searches concluded since creation.
    pub searches: u64,
}

/// How a size failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailKind {
    /// ICMP said so (or the local stack did).
    Signalled,
    /// All tries lost, nothing said.
    Silent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fail {
    pub(super) size: u32,
    pub(super) kind: FailKind,
    pub(super) from: Option<IpAddr>,
}

/// A search runs at most this many black-hole verifications: when a size that "failed" (all
/// its tries lost) has passed twice after all, the path is lossy, and a third silent failure
/// concludes `loss` without another verification.
pub const MAX_VERIFICATIONS: u8 = 2;

/// A black hole is concluded only when random loss at the rate the small probes show would
/// lose the large size that many times with at most this probability (see
/// [`random_loss_explains`]).
pub const BLACKHOLE_EVIDENCE: f64 = 1e-5;

/// The probability that random loss, at an upper estimate of the rate the small probes show
/// (`small_lost` of `small_lost + small_ok`), loses `large_lost` large probes: `p^large_lost`
/// with `p = p̃ + sqrt(p̃(1 − p̃)/(n + 2))`, `p̃ = (lost + 1)/(n + 2)` (the smoothed rate plus one
/// standard error, so a lucky run of small probes does not make the bar too low).
pub fn random_loss_explains(large_lost: u32, small_ok: u32, small_lost: u32) -> f64 {
    let n = f64::from(small_ok) + f64::from(small_lost);
    let rate = (f64::from(small_lost) + 1.0) / (n + 2.0);
    let upper = (rate + (rate * (1.0 - rate) / (n + 2.0)).sqrt()).clamp(0.0, 1.0);
    upper.powf(f64::from(large_lost))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Conclusion {
    pub(super) path_mtu: Option<u32>,
    pub(super) state: MtuState,
    pub(super) reported_by: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_loss_explains_large_losses_only_when_small_ones_lose_too() {
        // (large lost, small passed, small lost) -> black hole at BLACKHOLE_EVIDENCE?
        let cases = [
            // The search's three tries alone, however clean the small probes: not enough.
            ((3, 0, 0), false),
            ((3, 16, 0), false),
            ((3, 40, 0), false),
            // Clean small probes: a few more lost large ones suffice.
            ((5, 16, 0), false),
            ((6, 16, 0), true),
            ((5, 40, 0), true),
            // Small probes lost about as often as large ones: random loss.
            ((8, 8, 8), false),
            ((16, 16, 16), false),
            ((12, 20, 10), false),
            // 30 % loss on the small probes, every large one lost: a black hole, given enough.
            ((8, 21, 9), false),
            ((14, 21, 9), true),
            // Nothing passes at all: no evidence either way.
            ((20, 0, 20), false),
            ((0, 0, 0), false),
        ];
        for ((large_lost, small_ok, small_lost), want) in cases {
            let e = random_loss_explains(large_lost, small_ok, small_lost);
            assert!((0.0..=1.0).contains(&e), "{e}");
            assert_eq!(
                e <= BLACKHOLE_EVIDENCE,
                want,
                "({large_lost}, {small_ok}, {small_lost}): {e:e}"
            );
        }
        // More lost large probes never make random loss likelier; more lost small ones do.
        for ok in 0..20 {
            for lost in 0..10 {
                for large in 0..20 {
                    let e = random_loss_explains(large, ok, lost);
                    assert!(random_loss_explains(large + 1, ok, lost) <= e + 1e-15);
                    assert!(random_loss_explains(large, ok, lost + 1) >= e - 1e-15);
                }
            }
        }
    }
}
