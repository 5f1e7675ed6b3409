//! Fences around `POST /api/v1/probe`: the bearer token, a per-client rate limit (token
//! buckets, time passed in), per-agent budgets (requests and path-MTU searches a minute), and
//! slots: one request in flight per client, a bounded pool for clients and another for requests
//! peer agents forward. The decisions are pure; [`Limits`] holds the state behind short locks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::request::Refusal;

/// Clients remembered by the rate limiter at most; beyond, the fullest buckets are forgotten.
pub const MAX_CLIENTS: usize = 4096;

/// `Authorization: Bearer TOKEN` against the configured token (none configured: open).
/// Missing header: 401; wrong token: 403. Both were charged to the client's rate first (the
/// handler's order), so wrong tokens cannot be tried faster than requests.
pub fn check_token(configured: Option<&str>, header: Option<&str>) -> Result<(), Refusal> {
    let Some(want) = configured else {
        return Ok(());
    };
    let Some(h) = header else {
        return Err(Refusal::new(
            401,
            "unauthorized",
            "this agent requires a bearer token: send `Authorization: Bearer TOKEN` (meshprobe probe --token)",
        ));
    };
    let got = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    // subtle's comparison takes the same time wherever the first difference is (only the
    // length, which a 16-256 byte token does not give away usefully, may show).
    if bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::new(403, "forbidden", "bearer token not accepted"))
    }
}

/// The key a client is counted under: its canonical address, and for IPv6 its /64 (one host
/// usually holds a whole /64, so per-address buckets would be free to multiply).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 => crate::net::mask(v6, 64),
    }
}

/// Per-client token buckets: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    burst: u32,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            burst: burst.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `client` at `now`; the refusal says when to retry.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Result<(), Refusal> {
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        if self.buckets.len() >= MAX_CLIENTS && !self.buckets.contains_key(&client) {
            // Forget clients whose bucket has refilled (they lose nothing), else the oldest.
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + rate * now.duration_since(*at).as_secs_f64() < burst
            });
            if self.buckets.len() >= MAX_CLIENTS {
                if let Some(oldest) = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| *k)
                {
                    self.buckets.remove(&oldest);
                }
            }
        }
        let (tokens, at) = self.buckets.entry(client).or_insert((burst, now));
        let refilled =
            (*tokens + rate * now.saturating_duration_since(*at).as_secs_f64()).min(burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            let wait = if rate > 0.0 {
                (1.0 - refilled) / rate
            } else {
                60.0
            };
            Err(Refusal::new(
                429,
                "rate_limited",
                format!(
                    "too many probe requests from {client}: at most {} per minute (burst {}); retry in {:.0}s",
                    self.per_minute,
                    self.burst,
                    wait.ceil().max(1.0)
                ),
            ))
        }
    }
}

/// On-demand requests one agent runs per minute, at most, whoever asks (bursts of 10): with
/// the per-request caps, what one agent can be made to send in a minute.
pub const AGENT_PER_MINUTE: u32 = 60;
/// The burst of [`AGENT_PER_MINUTE`].
pub const AGENT_BURST: u32 = 10;
/// Path-MTU searches one agent runs per minute, at most (bursts of 6): the costliest check
/// (up to 252 Don't-Fragment probes) gets a budget of its own.
pub const AGENT_MTU_PER_MINUTE: u32 = 12;
/// The burst of [`AGENT_MTU_PER_MINUTE`].
pub const AGENT_MTU_BURST: u32 = 6;

/// Which pool a request's slot comes from: requests from clients, or requests peer agents
/// forward (their own pool, so no outside client can starve the mesh's fan-outs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    Direct,
    Forwarded,
}

/// A held slot: the pool's permit and the client's one request in flight, both given back on
/// drop.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    key: (Pool, IpAddr),
    busy: Arc<Mutex<HashSet<(Pool, IpAddr)>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(&self.key);
        }
    }
}

/// The on-demand limits of one agent.
pub struct Limits {
    pub token: Option<String>,
    rate: Mutex<RateLimiter>,
    /// All on-demand work of this agent, one bucket; path-MTU searches, another.
    agent_rate: Mutex<RateLimiter>,
    agent_mtu: Mutex<RateLimiter>,
    direct: Arc<Semaphore>,
    forwarded: Arc<Semaphore>,
    max_in_flight: usize,
    /// (pool, client) with a request in flight: one each. Bounded by the slots.
    busy: Arc<Mutex<HashSet<(Pool, IpAddr)>>>,
}

impl Limits {
    pub fn new(token: Option<String>, per_minute: u32, burst: u32, max_in_flight: usize) -> Limits {
        let n = max_in_flight.max(1);
        Limits {
            token,
            rate: Mutex::new(RateLimiter::new(per_minute, burst)),
            agent_rate: Mutex::new(RateLimiter::new(AGENT_PER_MINUTE, AGENT_BURST)),
            agent_mtu: Mutex::new(RateLimiter::new(AGENT_MTU_PER_MINUTE, AGENT_MTU_BURST)),
            direct: Arc::new(Semaphore::new(n)),
            forwarded: Arc::new(Semaphore::new(n)),
            max_in_flight: n,
            busy: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Charge one request to `client` (see [`client_key`]).
    pub fn rate(&self, client: IpAddr) -> Result<(), Refusal> {
        self.rate
            .lock()
            .map_err(|_| Refusal::new(503, "busy", "rate limiter unavailable"))?
            .check(client, Instant::now())
    }

    /// Charge one request to this agent's per-minute budget, and its path-MTU search (`mtu`)
    /// to the search budget — `families` times: a dual-stack request runs every check once
    /// per family, so it costs what two requests cost and the per-minute bounds stay put.
    pub fn agent_rate(&self, families: u32, mtu: bool) -> Result<(), Refusal> {
        let now = Instant::now();
        for _ in 0..families {
            if mtu {
                charge_agent(
                    &self.agent_mtu,
                    now,
                    "path-MTU searches",
                    AGENT_MTU_PER_MINUTE,
                    AGENT_MTU_BURST,
                )?;
            }
            charge_agent(
                &self.agent_rate,
                now,
                "on-demand probes",
                AGENT_PER_MINUTE,
                AGENT_BURST,
            )?;
        }
        Ok(())
    }

    /// A slot for one request of `client` (its key) from `pool`, held until the answer is
    /// complete: one request in flight per client and pool, `max_in_flight` per pool.
    pub fn slot(&self, pool: Pool, client: IpAddr) -> Result<Slot, Refusal> {
        let key = (pool, client);
        let mut busy = self
            .busy
            .lock()
            .map_err(|_| Refusal::new(503, "busy", "slot table unavailable"))?;
        if busy.contains(&key) {
            return Err(Refusal::new(
                429,
                "busy",
                format!(
                    "a request from {client} is already running on this agent: one at a time per client"
                ),
            ));
        }
        let sem = match pool {
            Pool::Direct => &self.direct,
            Pool::Forwarded => &self.forwarded,
        };
        let permit = sem.clone().try_acquire_owned().map_err(|_| {
            Refusal::new(
                429,
                "busy",
                format!(
                    "{} on-demand probes are already running on this agent (the limit); retry shortly",
                    self.max_in_flight
                ),
            )
        })?;
        busy.insert(key);
        Ok(Slot {
            _permit: permit,
            key,
            busy: self.busy.clone(),
        })
    }
}

/// One charge to an agent-wide budget (every client shares one key).
fn charge_agent(
    limiter: &Mutex<RateLimiter>,
    now: Instant,
    what: &str,
    per_minute: impl std::fmt::Display,
    burst: impl std::fmt::Display,
) -> Result<(), Refusal> {
    limiter
        .lock()
        .map_err(|_| Refusal::new(503, "busy", "rate limiter unavailable"))?
        .check(IpAddr::from([0, 0, 0, 0]), now)
        .map_err(|_| {
            Refusal::new(
                429,
                "rate_limited",
                format!(
                    "this agent runs at most {per_minute} {what} per minute (bursts of {burst}), whoever asks; retry shortly"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(check_token(None, None).is_ok());
        assert!(check_token(None, Some("Bearer x")).is_ok());
        type Want = Result<(), (u16, &'static str)>;
        let table: &[(Option<&str>, Want)] = &[
            (None, Err((401, "unauthorized"))),
            (Some("Bearer s3cret"), Ok(())),
            (Some("bearer s3cret"), Ok(())),
            (Some("Bearer s3cre"), Err((403, "forbidden"))),
            (Some("Bearer s3cret2"), Err((403, "forbidden"))),
            (Some("s3cret"), Err((403, "forbidden"))),
            (Some("Basic s3cret"), Err((403, "forbidden"))),
            (Some("Bearer "), Err((403, "forbidden"))),
        ];
        for (header, want) in table {
            let got = check_token(Some("s3cret"), *header).map_err(|r| (r.status, r.code));
            assert_eq!(&got, want, "{header:?}");
        }
    }

    #[test]
    fn client_keys() {
        let table: &[(&str, &str)] = &[
            ("198.19.1.10", "198.19.1.10"),
            ("::ffff:198.19.1.10", "198.19.1.10"),
            ("2001:db8:1:2::5", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff::1", "2001:db8:1:2::"),
            ("2001:db8:1:3::5", "2001:db8:1:3::"),
        ];
        for (ip, want) in table {
            assert_eq!(
                client_key(ip.parse().unwrap()),
                want.parse::<IpAddr>().unwrap(),
                "{ip}"
            );
        }
    }

    #[test]
    fn rate_limit_per_client_with_burst_and_refill() {
        let mut r = RateLimiter::new(6, 2); // one token every 10 s, two at once
        let t0 = Instant::now();
        let a: IpAddr = "198.19.1.10".parse().unwrap();
        let b: IpAddr = "198.19.2.10".parse().unwrap();
        assert!(r.check(a, t0).is_ok());
        assert!(r.check(a, t0).is_ok());
        let e = r.check(a, t0).unwrap_err();
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        assert!(e.error.contains("retry in 10s"), "{}", e.error);
        // Another client has its own bucket.
        assert!(r.check(b, t0).is_ok());
        // Refill: one token after 10 s, not before.
        assert!(r.check(a, t0 + Duration::from_secs(5)).is_err());
        assert!(r.check(a, t0 + Duration::from_secs(11)).is_ok());
        assert!(r.check(a, t0 + Duration::from_secs(11)).is_err());
        // The bucket never holds more than the burst.
        let later = t0 + Duration::from_secs(3600);
        assert!(r.check(a, later).is_ok());
        assert!(r.check(a, later).is_ok());
        assert!(r.check(a, later).is_err());
    }

    #[test]
    fn the_client_table_is_bounded() {
        let mut r = RateLimiter::new(60, 1);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = r.check(ip, t0);
        }
        assert!(r.buckets.len() <= MAX_CLIENTS);
    }

    #[test]
    fn in_flight_slots() {
        let ip = |last: u8| IpAddr::from([198, 19, 9, last]);
        let l = Limits::new(None, 60, 10, 2);
        let a = l.slot(Pool::Direct, ip(1)).unwrap();
        // One request in flight per client: its second is refused, others are not.
        let e = l.slot(Pool::Direct, ip(1)).err().unwrap();
        assert_eq!((e.status, e.code), (429, "busy"));
        assert!(e.error.contains("one at a time per client"), "{}", e.error);
        let _b = l.slot(Pool::Direct, ip(2)).unwrap();
        let e = l.slot(Pool::Direct, ip(3)).err().unwrap();
        assert!(e.error.contains("2 on-demand probes"), "{}", e.error);
        // Full to clients, the forwarded pool is still there, one per originating client.
        let f = l.slot(Pool::Forwarded, ip(1)).unwrap();
        assert!(l.slot(Pool::Forwarded, ip(1)).is_err());
        let _g = l.slot(Pool::Forwarded, ip(3)).unwrap();
        assert!(l.slot(Pool::Forwarded, ip(4)).is_err());
        drop(a);
        drop(f);
        assert!(l.slot(Pool::Direct, ip(1)).is_ok());
        assert!(l.slot(Pool::Forwarded, ip(1)).is_ok());
    }

    #[test]
    fn the_agent_budget_is_shared_by_every_client() {
        let l = Limits::new(None, 6000, 100, 4);
        // Path-MTU searches: 6 at once, then refused while other checks still run.
        for _ in 0..AGENT_MTU_BURST {
            assert!(l.agent_rate(1, true).is_ok());
        }
        let e = l.agent_rate(1, true).unwrap_err();
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        assert!(
            e.error.contains("at most 12 path-MTU searches"),
            "{}",
            e.error
        );
        for _ in AGENT_MTU_BURST..AGENT_BURST {
            assert!(l.agent_rate(1, false).is_ok());
        }
        let e = l.agent_rate(1, false).unwrap_err();
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        assert!(
            e.error.contains("at most 60 on-demand probes per minute"),
            "{}",
            e.error
        );
    }

    #[test]
    fn a_dual_stack_request_costs_one_per_family() {
        let l = Limits::new(None, 6000, 100, 4);
        // Probed at two families, a request costs two: the per-minute bounds hold.
        for _ in 0..AGENT_MTU_BURST / 2 {
            assert!(l.agent_rate(2, true).is_ok());
        }
        assert!(l.agent_rate(1, true).is_err());
        for _ in 0..(AGENT_BURST - AGENT_MTU_BURST) / 2 {
            assert!(l.agent_rate(2, false).is_ok());
        }
        assert!(l.agent_rate(1, false).is_err());
    }
}
