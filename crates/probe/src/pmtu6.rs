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

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::classify::io_error;
use crate::df::{open_raw_socket, send_probe, PmtuProbe};
use crate::wire::Echo6;
use meshprobe_core::mtu::MtuOutcome;

const RECV_BUF: usize = 65536;
/// ICMPv6 types the socket lets through: destination unreachable, packet too big, time
/// exceeded, parameter problem, echo reply.
const WANTED: [u8; 5] = [1, 2, 3, 4, 129];

/// One IPv6 probe: send, then read until our answer or `deadline` (the caller also enforces
/// it).
pub async fn exchange(dest: Ipv6Addr, size: u32, deadline: Instant) -> PmtuProbe {
    let at_once = |outcome| PmtuProbe { outcome, rtt: None };
    let socket = match open_raw_socket(true, &WANTED).and_then(|s| {
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
