//! The IPv6 half of the Don't-Fragment prober ([`crate::pmtu`] dispatches here): one
//! ICMPv6 echo of exactly `size` bytes (the IPv6 packet: 40 header + 8 ICMPv6 header +
//! payload), never fragmented, within a timeout.
//!
//! * **A raw ICMPv6 socket per probe**, like IPv4 (CAP_NET_RAW). The kernel fills in the
//!   ICMPv6 checksum (it covers a pseudo-header with the source address, which only the kernel
//!   knows) and strips the IPv6 header from what is received: the sender comes from
//!   `recvfrom`. A type filter passes echo replies and the errors that can quote our request
//!   (destination unreachable, packet too big, time exceeded, parameter problem).
//! * **`IPV6_MTU_DISCOVER = IPV6_PMTUDISC_PROBE`** ignores the path MTU the kernel cached from
//!   an earlier Packet Too Big, and **`IPV6_DONTFRAG`** stops the local stack from fragmenting
//!   (an IPv6 source may; routers never do): a probe above the egress device's MTU fails with
//!   EMSGSIZE → [`MtuOutcome::LocalTooBig`].
//! * A router's Packet Too Big (type 2) carries the next-hop MTU in a 32-bit field →
//!   [`MtuOutcome::TooBig`] with the router as `from`.
//!
//! Parsing is pure and bounds-checked ([`Echo6::parse`], table tests below).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv6Addr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::classify::{icmpv6_error, io_error};
use crate::icmp::icmp_filter_mask;
use crate::pmtu::{send_probe, set_probe_mode, PmtuProbe};
use meshprobe_core::mtu::{MtuOutcome, MAX_MTU};

/// IPv6 header + ICMPv6 echo header.
pub const V6_OVERHEAD: u32 = 48;
const COOKIE_LEN: usize = 8;
/// The smallest IPv6 probe: headers and the cookie.
pub const MIN_PROBE_SIZE_V6: u32 = V6_OVERHEAD + COOKIE_LEN as u32;
const RECV_BUF: usize = 65536;
/// ICMPv6 types the socket lets through: destination unreachable, packet too big, time
/// exceeded, parameter problem, echo reply.
const WANTED: [u8; 5] = [1, 2, 3, 4, 129];
const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;
const PACKET_TOO_BIG: u8 = 2;
const NEXT_HEADER_ICMPV6: u8 = 58;

/// One IPv6 probe's identity: what its answer must carry or quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo6 {
    pub ident: u16,
    pub seq: u16,
    pub cookie: [u8; COOKIE_LEN],
}

impl Echo6 {
    /// The ICMPv6 message (header + payload) whose IPv6 packet is `size` bytes: type 128, our
    /// identifier and sequence, the cookie then zeros; checksum left to the kernel. `None`
    /// outside [`MIN_PROBE_SIZE_V6`]..=65535 (no jumbograms).
    pub fn build(&self, size: u32) -> Option<Vec<u8>> {
        if !(MIN_PROBE_SIZE_V6..=MAX_MTU).contains(&size) {
            return None;
        }
        let len = usize::try_from(size - 40).ok()?;
        let mut msg = vec![0u8; len];
        msg[0] = ECHO_REQUEST;
        msg[4..6].copy_from_slice(&self.ident.to_be_bytes());
        msg[6..8].copy_from_slice(&self.seq.to_be_bytes());
        msg[8..8 + COOKIE_LEN].copy_from_slice(&self.cookie);
        Some(msg)
    }

    /// One ICMPv6 message received from `source` (no IPv6 header: a raw ICMPv6 socket strips
    /// it). `None` when it is not about this echo to `dest`. Any byte string is safe.
    pub fn parse(&self, source: Ipv6Addr, msg: &[u8], dest: Ipv6Addr) -> Option<MtuOutcome> {
        let icmp_type = *msg.first()?;
        let code = *msg.get(1)?;
        match icmp_type {
            ECHO_REPLY => {
                let ours = source == dest
                    && code == 0
                    && self.matches_echo(msg, ECHO_REPLY)
                    && msg.get(8..8 + COOKIE_LEN)? == self.cookie;
                ours.then_some(MtuOutcome::Ok)
            }
            1..=4 => {
                // The invoking packet: IPv6 header (no extension headers: we send none) and
                // at least the 8-byte echo header.
                let quoted = msg.get(8..)?;
                if quoted.first()? >> 4 != 6 || *quoted.get(6)? != NEXT_HEADER_ICMPV6 {
                    return None;
                }
                let inner_dst: [u8; 16] = quoted.get(24..40)?.try_into().ok()?;
                let request = quoted.get(40..)?;
                if Ipv6Addr::from(inner_dst) != dest || !self.matches_echo(request, ECHO_REQUEST) {
                    return None;
                }
                if let Some(cookie) = request.get(8..8 + COOKIE_LEN) {
                    if cookie != self.cookie {
                        return None;
                    }
                }
                let from = Some(IpAddr::V6(source));
                if icmp_type == PACKET_TOO_BIG {
                    let mtu = u32::from_be_bytes(msg.get(4..8)?.try_into().ok()?);
                    Some(MtuOutcome::TooBig {
                        mtu: (mtu > 0).then_some(mtu),
                        from,
                    })
                } else {
                    Some(MtuOutcome::Failed(icmpv6_error(
                        icmp_type,
                        code,
                        IpAddr::V6(source),
                        None,
                    )))
                }
            }
            _ => None,
        }
    }

    fn matches_echo(&self, icmp: &[u8], want_type: u8) -> bool {
        icmp.len() >= 8
            && icmp[0] == want_type
            && icmp[4..6] == self.ident.to_be_bytes()
            && icmp[6..8] == self.seq.to_be_bytes()
    }
}

/// Open one IPv6 probe socket: raw ICMPv6, non-blocking, `IPV6_PMTUDISC_PROBE`,
/// `IPV6_DONTFRAG`, type filter (best effort).
pub fn open_socket() -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.set_nonblocking(true)?;
    set_probe_mode(&socket, true)?;
    // <linux/icmpv6.h> ICMPV6_FILTER at level IPPROTO_ICMPV6: a set bit drops that type.
    const ICMPV6_FILTER: libc::c_int = 1;
    let mask: [u32; 8] = icmp_filter_mask(&WANTED);
    use std::os::fd::AsRawFd;
    // SAFETY: a live socket; the value is struct icmp6_filter (eight u32).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMPV6_FILTER,
            mask.as_ptr().cast(),
            std::mem::size_of_val(&mask) as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "no ICMPv6 type filter on the path-MTU socket");
    }
    Ok(socket)
}

/// One IPv6 probe: send, then read until our answer or `deadline` (the caller also enforces
/// it).
pub async fn exchange(dest: Ipv6Addr, size: u32, deadline: Instant) -> PmtuProbe {
    let at_once = |outcome| PmtuProbe { outcome, rtt: None };
    let socket = match open_socket().and_then(|s| {
        // SAFETY: the socket owns its fd, which stays open and the same until the AsyncFd
        // (which owns the socket) is dropped.
        unsafe { AsyncFd::register(s) }.map_err(io::Error::from)
    }) {
        Ok(s) => s,
        Err(e) => return at_once(MtuOutcome::Failed(io_error(&e))),
    };
    let echo = Echo6 {
        ident: rand::random(),
        seq: rand::random(),
        cookie: rand::random(),
    };
    let sent_at =
        match send_probe(&socket, echo.build(size).as_deref(), size, IpAddr::V6(dest)).await {
            Ok(t) => t,
            Err(outcome) => return at_once(outcome),
        };
    let mut buf = vec![MaybeUninit::<u8>::uninit(); RECV_BUF];
    loop {
        let mut guard = match tokio::time::timeout_at(deadline, socket.readable()).await {
            Err(_elapsed) => break,
            Ok(Ok(g)) => g,
            Ok(Err(e)) => return at_once(MtuOutcome::Failed(io_error(&e))),
        };
        let (n, from) = match guard.try_io(|s| s.get_ref().recv_from(&mut buf)) {
            Ok(Ok(r)) => r,
            // A pending socket error (an ICMP error noted on the socket): keep reading.
            Ok(Err(_)) => continue,
            Err(_would_block) => continue,
        };
        let Some(source) = from.as_socket_ipv6().map(|a| *a.ip()) else {
            continue;
        };
        // SAFETY: recv_from initialised the first n bytes (n ≤ buf.len()).
        let msg =
            unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n.min(buf.len())) };
        if let Some(outcome) = echo.parse(source, msg, dest) {
            return PmtuProbe {
                outcome,
                rtt: Some(sent_at.elapsed()),
            };
        }
    }
    at_once(MtuOutcome::Lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
    const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 2);
    const DEST: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 2);

    fn echo() -> Echo6 {
        Echo6 {
            ident: 0xBEEF,
            seq: 7,
            cookie: *b"meshprob",
        }
    }

    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = ECHO_REPLY;
        r
    }

    fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload_len: usize) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&u16::try_from(payload_len).unwrap_or(u16::MAX).to_be_bytes());
        h[6] = next;
        h[7] = 64;
        h[8..24].copy_from_slice(&src.octets());
        h[24..40].copy_from_slice(&dst.octets());
        h
    }

    /// An ICMPv6 error quoting `quote_len` bytes of our request (after its IPv6 header).
    fn error_about(
        icmp_type: u8,
        code: u8,
        word: u32,
        request: &[u8],
        quote_len: usize,
    ) -> Vec<u8> {
        let mut msg = vec![icmp_type, code, 0, 0];
        msg.extend_from_slice(&word.to_be_bytes());
        msg.extend(ipv6_header(ME, DEST, NEXT_HEADER_ICMPV6, request.len()));
        msg.extend_from_slice(&request[..quote_len.min(request.len())]);
        msg
    }

    #[test]
    fn requests_have_the_exact_size() {
        let e = echo();
        for size in [MIN_PROBE_SIZE_V6, 1280, 1400, 1500, 9000, MAX_MTU] {
            let msg = e.build(size).unwrap();
            assert_eq!(msg.len() as u32 + 40, size);
            assert_eq!(&msg[..4], &[128, 0, 0, 0]);
            assert_eq!(&msg[8..16], b"meshprob");
        }
        for size in [0, 48, MIN_PROBE_SIZE_V6 - 1, MAX_MTU + 1, u32::MAX] {
            assert_eq!(e.build(size), None, "{size}");
        }
    }

    #[test]
    fn replies_and_errors_are_matched_and_read() {
        let e = echo();
        let request = e.build(1500).unwrap();
        let router = Some(IpAddr::V6(ROUTER));
        type Case = (&'static str, Ipv6Addr, Vec<u8>, Option<MtuOutcome>);
        let cases: Vec<Case> = vec![
            ("echo reply", DEST, reply_to(&request), Some(MtuOutcome::Ok)),
            ("reply from someone else", ROUTER, reply_to(&request), None),
            ("our own request looped back", DEST, request.clone(), None),
            (
                "packet too big, 1280 quoted (RFC 4443 fills the minimum MTU)",
                ROUTER,
                error_about(2, 0, 1400, &request, 1280 - 48),
                Some(MtuOutcome::TooBig {
                    mtu: Some(1400),
                    from: router,
                }),
            ),
            (
                "packet too big, only the echo header quoted",
                ROUTER,
                error_about(2, 0, 1280, &request, 8),
                Some(MtuOutcome::TooBig {
                    mtu: Some(1280),
                    from: router,
                }),
            ),
            (
                "packet too big with a 32-bit MTU (jumbo link)",
                ROUTER,
                error_about(2, 0, 70_000, &request, 8),
                Some(MtuOutcome::TooBig {
                    mtu: Some(70_000),
                    from: router,
                }),
            ),
            (
                "packet too big naming 0",
                ROUTER,
                error_about(2, 0, 0, &request, 8),
                Some(MtuOutcome::TooBig {
                    mtu: None,
                    from: router,
                }),
            ),
            (
                "quoting fewer than 8 bytes of the echo",
                ROUTER,
                error_about(2, 0, 1400, &request, 4),
                None,
            ),
            (
                "no route (unreachable code 0)",
                ROUTER,
                error_about(1, 0, 0, &request, 8),
                Some(MtuOutcome::Failed(icmpv6_error(
                    1,
                    0,
                    IpAddr::V6(ROUTER),
                    None,
                ))),
            ),
            (
                "administratively prohibited",
                ROUTER,
                error_about(1, 1, 0, &request, 64),
                Some(MtuOutcome::Failed(icmpv6_error(
                    1,
                    1,
                    IpAddr::V6(ROUTER),
                    None,
                ))),
            ),
            (
                "hop limit exceeded",
                ROUTER,
                error_about(3, 0, 0, &request, 8),
                Some(MtuOutcome::Failed(icmpv6_error(
                    3,
                    0,
                    IpAddr::V6(ROUTER),
                    None,
                ))),
            ),
            ("unknown type", ROUTER, vec![200, 0, 0, 0, 0, 0, 0, 0], None),
            ("empty", ROUTER, Vec::new(), None),
        ];
        for (name, source, msg, want) in cases {
            assert_eq!(e.parse(source, &msg, DEST), want, "{name}");
        }
        // Another probe's error, or an error about another destination: not ours.
        let err = error_about(2, 0, 1400, &request, 64);
        for other in [
            Echo6 { seq: 8, ..e },
            Echo6 { ident: 1, ..e },
            Echo6 {
                cookie: [0; 8],
                ..e
            },
        ] {
            assert_eq!(other.parse(ROUTER, &err, DEST), None, "{other:?}");
        }
        assert_eq!(e.parse(ROUTER, &err, ROUTER), None);
        // A quoted packet that is not ICMPv6 (an extension header, or UDP) or not IPv6.
        let mut not_icmp = err.clone();
        not_icmp[8 + 6] = 17;
        assert_eq!(e.parse(ROUTER, &not_icmp, DEST), None);
        let mut v4 = err.clone();
        v4[8] = 0x45;
        assert_eq!(e.parse(ROUTER, &v4, DEST), None);
    }

    #[test]
    fn no_panic_on_any_input() {
        let e = echo();
        let request = e.build(600).unwrap();
        let samples = [
            reply_to(&request),
            error_about(2, 0, 1400, &request, 552),
            error_about(1, 3, 0, &request, 8),
        ];
        for s in &samples {
            for len in 0..=s.len() {
                let _ = e.parse(DEST, &s[..len], DEST);
                let _ = e.parse(ROUTER, &s[..len], DEST);
            }
        }
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        for i in 0..20_000 {
            let mut p = samples[i % samples.len()].clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % p.len();
                p[at] = (x >> 32) as u8;
            }
            let len = (x >> 40) as usize % (p.len() + 1);
            let _ = e.parse(ROUTER, &p[..len], DEST);
        }
    }
}
