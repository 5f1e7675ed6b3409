//! Fences around `POST /api/v1/probe`: the bearer token, a per-client rate limit (token
//! buckets, time passed in) and a global bound on requests in flight. The decisions are pure;
//! [`Limits`] holds the state behind short locks.

use std::collections::HashMap;
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

/// The on-demand limits of one agent.
pub struct Limits {
    pub token: Option<String>,
    rate: Mutex<RateLimiter>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Limits {
    pub fn new(token: Option<String>, per_minute: u32, burst: u32, max_in_flight: usize) -> Limits {
        Limits {
            token,
            rate: Mutex::new(RateLimiter::new(per_minute, burst)),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight: max_in_flight.max(1),
        }
    }

    pub fn rate(&self, client: IpAddr) -> Result<(), Refusal> {
        self.rate
            .lock()
            .map_err(|_| Refusal::new(503, "busy", "rate limiter unavailable"))?
            .check(client, Instant::now())
    }

    /// A slot for one request, held until the answer is complete.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            Refusal::new(
                429,
                "busy",
                format!(
                    "{} on-demand probes are already running on this agent (the limit); retry shortly",
                    self.max_in_flight
                ),
            )
        })
    }
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
        let l = Limits::new(None, 60, 10, 2);
        let a = l.slot().unwrap();
        let _b = l.slot().unwrap();
        let e = l.slot().unwrap_err();
        assert_eq!((e.status, e.code), (429, "busy"));
        drop(a);
        assert!(l.slot().is_ok());
    }
}
