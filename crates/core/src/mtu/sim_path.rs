//! A simulated path for the tests of both searches: hops that drop packets above their MTU,
//! with or without an ICMP report, and random loss from a seeded generator.

use std::net::IpAddr;
use std::time::Duration;

use super::{MtuOutcome, MtuReport, MtuState};

/// One hop of a simulated path: packets above `mtu` are dropped, with an ICMP report from
/// `router` when `signals`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hop {
    pub(super) mtu: u32,
    pub(super) signals: bool,
    pub(super) router: IpAddr,
}

#[derive(Debug, Clone)]
pub(super) struct Path {
    pub(super) local_mtu: u32,
    pub(super) hops: Vec<Hop>,
    /// Percent of probes lost at random.
    pub(super) loss: u32,
    /// Everything lost (the destination is down).
    pub(super) down: bool,
    pub(super) rng: u64,
}

pub(super) fn router(n: u8) -> IpAddr {
    IpAddr::from([198, 18, 0, n])
}

impl Path {
    pub(super) fn clean(local_mtu: u32) -> Path {
        Path {
            local_mtu,
            hops: Vec::new(),
            loss: 0,
            down: false,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub(super) fn hop(mut self, mtu: u32, signals: bool) -> Path {
        let n = u8::try_from(self.hops.len() + 1).unwrap();
        self.hops.push(Hop {
            mtu,
            signals,
            router: router(n),
        });
        self
    }

    pub(super) fn lossy(mut self, percent: u32) -> Path {
        self.loss = percent;
        self
    }

    fn random(&mut self) -> u32 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % 100
    }

    pub(super) fn answer(&mut self, size: u32) -> MtuOutcome {
        if size > self.local_mtu {
            return MtuOutcome::LocalTooBig;
        }
        if self.down || self.random() < self.loss {
            return MtuOutcome::Lost;
        }
        for hop in &self.hops {
            if size > hop.mtu {
                return if hop.signals {
                    MtuOutcome::TooBig {
                        mtu: Some(hop.mtu),
                        from: Some(hop.router),
                    }
                } else {
                    MtuOutcome::Lost
                };
            }
        }
        MtuOutcome::Ok
    }
}

pub(super) const RTT: Duration = Duration::from_millis(1);
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn concluded(r: &MtuReport) -> (Option<u32>, MtuState) {
    (r.path_mtu, r.state)
}
