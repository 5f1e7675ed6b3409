//! The echo request on the wire and what comes back (pure, bounds-checked: any byte string is
//! safe). IPv4: [`Echo`] builds the ICMP message and reads whole IPv4 packets from a raw socket.
//! IPv6: [`Echo6`] builds the ICMPv6 message (the kernel checksums it) and reads messages
//! without their IPv6 header. Every probe carries a random cookie so a stray reply with a
//! reused identifier and sequence is not taken for ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::classify::{icmpv4_error, icmpv6_error};
use meshprobe_core::model::ErrorClass;
use meshprobe_core::mtu::{MtuOutcome, MAX_MTU};

/// IPv4 header (no options, as the kernel builds it) + ICMP echo header.
pub const V4_OVERHEAD: u32 = 28;

/// The random cookie at the start of every probe's payload.
pub const COOKIE_LEN: usize = 8;

/// The smallest probe: headers and the cookie.
pub const MIN_PROBE_SIZE: u32 = V4_OVERHEAD + COOKIE_LEN as u32;

/// One probe's identity: what its answer must quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    pub ident: u16,
    pub seq: u16,
    pub cookie: [u8; COOKIE_LEN],
}

/// What a received packet says about our echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The destination's echo reply.
    Echo,
    /// Fragmentation needed (type 3 code 4) from router `from`, with its next-hop MTU.
    TooBig { from: Ipv4Addr, mtu: Option<u32> },
    /// Another ICMP error quoting our request.
    Error(ErrorClass),
}

impl Echo {
    /// The ICMP message (header + payload) whose IPv4 packet is `size` bytes: type 8, our
    /// identifier and sequence, the cookie then zeros, checksummed. `None` if `size` is outside
    /// [`MIN_PROBE_SIZE`]..=65535.
    pub fn build(&self, size: u32) -> Option<Vec<u8>> {
        if !(MIN_PROBE_SIZE..=MAX_MTU).contains(&size) {
            return None;
        }
        let len = usize::try_from(size - (V4_OVERHEAD - 8)).ok()?;
        let mut msg = vec![0u8; len];
        msg[0] = 8;
        msg[4..6].copy_from_slice(&self.ident.to_be_bytes());
        msg[6..8].copy_from_slice(&self.seq.to_be_bytes());
        msg[8..8 + COOKIE_LEN].copy_from_slice(&self.cookie);
        let sum = checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
        Some(msg)
    }

    /// Read one packet from the raw socket (IPv4 header included). `None` when it is not
    /// about this echo to `dest`. Bounds-checked throughout: any byte string is safe.
    pub fn parse(&self, packet: &[u8], dest: Ipv4Addr) -> Option<Reply> {
        let (source, icmp) = ipv4_payload(packet)?;
        let icmp_type = *icmp.first()?;
        let code = *icmp.get(1)?;
        match icmp_type {
            0 => {
                let ours = source == dest
                    && code == 0
                    && self.matches_echo(icmp, 0)
                    && icmp.get(8..8 + COOKIE_LEN)? == self.cookie;
                ours.then_some(Reply::Echo)
            }
            3 | 11 => {
                // The quoted original: IPv4 header + at least 8 bytes of our request.
                let (_, inner_dst, quoted) = quoted_ipv4(icmp.get(8..)?)?;
                if inner_dst != dest || !self.matches_echo(quoted, 8) {
                    return None;
                }
                // Routers quote at least 8 bytes; Linux quotes up to 576: check the cookie
                // when it is there.
                if let Some(cookie) = quoted.get(8..8 + COOKIE_LEN) {
                    if cookie != self.cookie {
                        return None;
                    }
                }
                if (icmp_type, code) == (3, 4) {
                    let mtu = u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]);
                    Some(Reply::TooBig {
                        from: source,
                        mtu: (mtu > 0).then_some(u32::from(mtu)),
                    })
                } else {
                    Some(Reply::Error(icmpv4_error(
                        icmp_type,
                        code,
                        IpAddr::V4(source),
                        None,
                    )))
                }
            }
            _ => None,
        }
    }

    fn matches_echo(&self, icmp: &[u8], want_type: u8) -> bool {
        is_echo(icmp, want_type, self.ident, self.seq)
    }
}

/// An IPv4 packet carrying ICMP: (source, ICMP message). Total length is not trusted beyond the
/// bytes received.
fn ipv4_payload(packet: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || *packet.get(9)? != 1 {
        return None;
    }
    let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    Some((Ipv4Addr::from(src), packet.get(ihl..)?))
}

/// The original packet quoted in an ICMP error: (source, destination, its ICMP bytes).
fn quoted_ipv4(quoted: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let first = *quoted.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || *quoted.get(9)? != 1 {
        return None;
    }
    let src: [u8; 4] = quoted.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = quoted.get(16..20)?.try_into().ok()?;
    Some((Ipv4Addr::from(src), Ipv4Addr::from(dst), quoted.get(ihl..)?))
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([pair[0], pair[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv6 header + ICMPv6 echo header.
pub const V6_OVERHEAD: u32 = 48;
/// The smallest IPv6 probe: headers and the cookie.
pub const MIN_PROBE_SIZE_V6: u32 = V6_OVERHEAD + COOKIE_LEN as u32;
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
        is_echo(icmp, want_type, self.ident, self.seq)
    }
}

/// Whether `icmp` is an echo of type `want_type` carrying identifier `ident` and sequence `seq`.
fn is_echo(icmp: &[u8], want_type: u8, ident: u16, seq: u16) -> bool {
    icmp.len() >= 8
        && icmp[0] == want_type
        && icmp[4..6] == ident.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

#[cfg(test)]
mod v4_tests {
    use super::*;

    const DEST: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 6);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);
    const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 1);

    fn echo() -> Echo {
        Echo {
            ident: 0xBEEF,
            seq: 7,
            cookie: *b"meshprob",
        }
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 1;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = 0;
        r[2..4].fill(0);
        let sum = checksum(&r);
        r[2..4].copy_from_slice(&sum.to_be_bytes());
        r
    }

    /// An ICMP error from `from` quoting `quote_len` bytes of our request's ICMP message.
    fn error_about(icmp_type: u8, code: u8, mtu: u16, request: &[u8], quote_len: usize) -> Vec<u8> {
        let mut icmp = vec![icmp_type, code, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        let original = ipv4(ME, DEST, request);
        icmp.extend_from_slice(&original[..(20 + quote_len).min(original.len())]);
        ipv4(ROUTER, ME, &icmp)
    }

    #[test]
    fn echo_requests_have_the_exact_size_and_a_valid_checksum() {
        let e = echo();
        for size in [MIN_PROBE_SIZE, 1200, 1399, 1400, 1500, 9001, MAX_MTU] {
            let msg = e.build(size).unwrap();
            assert_eq!(msg.len() as u32 + 20, size);
            assert_eq!(checksum(&msg), 0, "size {size}");
            assert_eq!(&msg[..2], &[8, 0]);
            assert_eq!(&msg[8..16], b"meshprob");
        }
        for size in [0, 27, 28, MIN_PROBE_SIZE - 1, MAX_MTU + 1, u32::MAX] {
            assert_eq!(e.build(size), None, "size {size}");
        }
    }

    #[test]
    fn checksum_matches_rfc1071_examples() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (one's complement 220d).
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn replies_and_errors_are_matched_and_read() {
        let e = echo();
        let request = e.build(1500).unwrap();
        let reply = ipv4(DEST, ME, &reply_to(&request));
        assert_eq!(e.parse(&reply, DEST), Some(Reply::Echo));
        // From someone else, to another destination, another probe: not ours.
        assert_eq!(e.parse(&ipv4(ROUTER, ME, &reply_to(&request)), DEST), None);
        assert_eq!(e.parse(&reply, ROUTER), None);
        for other in [
            Echo { ident: 1, ..e },
            Echo { seq: 8, ..e },
            Echo {
                cookie: *b"someone.",
                ..e
            },
        ] {
            assert_eq!(other.parse(&reply, DEST), None, "{other:?}");
        }
        // Our own request looped back is not a reply.
        assert_eq!(e.parse(&ipv4(ME, DEST, &request), DEST), None);

        // Fragmentation needed, quoting 8 bytes (RFC 792 minimum) or 548 (Linux).
        for quote in [8, 548] {
            let err = error_about(3, 4, 1400, &request, quote);
            assert_eq!(
                e.parse(&err, DEST),
                Some(Reply::TooBig {
                    from: ROUTER,
                    mtu: Some(1400)
                }),
                "quote {quote}"
            );
            // Quoting someone else's probe, or another destination.
            assert_eq!(Echo { seq: 9, ..e }.parse(&err, DEST), None);
            assert_eq!(e.parse(&err, ROUTER), None);
        }
        // The quoted cookie, when present, must match.
        let err = error_about(3, 4, 1400, &request, 548);
        assert_eq!(
            Echo {
                cookie: [0; 8],
                ..e
            }
            .parse(&err, DEST),
            None
        );
        // An MTU of zero: unknown.
        assert_eq!(
            e.parse(&error_about(3, 4, 0, &request, 8), DEST),
            Some(Reply::TooBig {
                from: ROUTER,
                mtu: None
            })
        );
        // Other errors are named.
        assert_eq!(
            e.parse(&error_about(3, 1, 0, &request, 8), DEST),
            Some(Reply::Error(ErrorClass::HostUnreachable {
                from: Some(IpAddr::V4(ROUTER))
            }))
        );
        assert_eq!(
            e.parse(&error_about(11, 0, 0, &request, 8), DEST),
            Some(Reply::Error(ErrorClass::TtlExceeded {
                from: Some(IpAddr::V4(ROUTER))
            }))
        );
        // Quoting fewer than 8 bytes of the request: cannot be matched.
        assert_eq!(e.parse(&error_about(3, 4, 1400, &request, 4), DEST), None);
    }

    /// Every truncation and a pseudo-random corpus of mutations parse without panicking.
    #[test]
    fn no_panic_on_any_input() {
        let e = echo();
        let request = e.build(600).unwrap();
        let samples = [
            ipv4(DEST, ME, &reply_to(&request)),
            error_about(3, 4, 1400, &request, 548),
            error_about(11, 0, 0, &request, 8),
        ];
        for sample in &samples {
            for len in 0..=sample.len() {
                let _ = e.parse(&sample[..len], DEST);
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
            let _ = e.parse(&p[..len], DEST);
        }
        // IHL pointing past the end, version 6, empty.
        let _ = e.parse(&[0x4f; 30], DEST);
        let _ = e.parse(&[0x60; 60], DEST);
        let _ = e.parse(&[], DEST);
    }
}

#[cfg(test)]
mod v6_tests {
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
