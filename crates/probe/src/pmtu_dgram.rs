//! The Don't-Fragment prober without CAP_NET_RAW: one ICMP **datagram** ("ping") socket per
//! probe, IPv4 or IPv6, opened by any process whose group is in `net.ipv4.ping_group_range`
//! (a namespaced sysctl Kubernetes counts as safe; the DaemonSet sets it).
//!
//! A datagram socket never hands the router's ICMP error over as a packet, and the kernel
//! swallows "fragmentation needed" unless asked: with **`IP_RECVERR` / `IPV6_RECVERR`** the
//! error goes to the socket's error queue instead, read with `recvmsg(MSG_ERRQUEUE)`: a
//! `sock_extended_err` (origin ICMP / ICMP6, type, code, `ee_info` = the next-hop MTU of a
//! frag-needed / Packet Too Big), the router's address after it (`SO_EE_OFFENDER`), and the
//! quoted part of our request as data. `IP_PMTUDISC_PROBE` / `IPV6_PMTUDISC_PROBE` (+
//! `IPV6_DONTFRAG`) as on the raw socket: DF set, the cached path MTU ignored.
//!
//! The kernel owns the echo identifier (the socket's "port") and the checksum, and strips the
//! IP header from replies: a reply is ours when it comes from the destination with our
//! sequence and 8-byte cookie; an error when it quotes our sequence (and the cookie, when the
//! router quoted that far). The socket is ours alone for one probe, so nothing else arrives.
//!
//! What it cannot see that the raw socket does: nothing for path-MTU purposes (frag-needed,
//! Packet Too Big, other unreachables all reach the error queue). Parsing is pure and
//! bounds-checked ([`parse_cmsgs`], [`ExtendedErr::parse`], [`DgramEcho::reply`],
//! [`DgramEcho::error`]; table tests below).

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use socket2::{Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::time::Instant;

use crate::classify::io_error;
use crate::df::{probe_socket, send_probe, PmtuProbe};
use crate::errqueue::{
    as_uninit, echo_error, extended_err, recv_errqueue, ExtendedErr, CONTROL_BUF,
    SO_EE_ORIGIN_LOCAL,
};
use crate::sockopt::set_int;
use crate::wire::{Echo, Echo6, COOKIE_LEN};
use meshprobe_core::model::ErrorClass;
use meshprobe_core::mtu::MtuOutcome;

const RECV_BUF: usize = 65536;

/// Whether an ICMP datagram socket of `family` can be opened (the group is in
/// `net.ipv4.ping_group_range`).
pub fn available(v6: bool) -> io::Result<()> {
    open_socket(v6).map(drop)
}

/// Open one datagram probe socket: non-blocking, DF with PROBE, errors to the error queue.
fn open_socket(v6: bool) -> io::Result<Socket> {
    let socket = probe_socket(v6, Type::DGRAM)?;
    if v6 {
        set_int(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVERR,
            1,
        )?;
    } else {
        set_int(socket.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
    }
    Ok(socket)
}

/// One datagram probe's identity. The identifier is the kernel's; sequence and cookie are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DgramEcho {
    pub v6: bool,
    pub seq: u16,
    pub cookie: [u8; COOKIE_LEN],
}

impl DgramEcho {
    /// The ICMP message whose IP packet is `size` bytes (the raw probers' builders: the
    /// kernel rewrites the identifier and, for IPv4, the checksum).
    pub fn build(&self, size: u32) -> Option<Vec<u8>> {
        if self.v6 {
            Echo6 {
                ident: 0,
                seq: self.seq,
                cookie: self.cookie,
            }
            .build(size)
        } else {
            Echo {
                ident: 0,
                seq: self.seq,
                cookie: self.cookie,
            }
            .build(size)
        }
    }

    /// Whether `msg` (an ICMP message without IP header) received from `source` is the echo
    /// reply to this probe toward `dest`.
    pub fn reply(&self, source: IpAddr, msg: &[u8], dest: IpAddr) -> bool {
        let want = if self.v6 { 129 } else { 0 };
        source == dest
            && msg.len() >= 8 + COOKIE_LEN
            && msg[0] == want
            && msg[1] == 0
            && msg[6..8] == self.seq.to_be_bytes()
            && msg[8..8 + COOKIE_LEN] == self.cookie
    }

    /// What an error-queue entry says about this probe: `quoted` is the part of our request
    /// the router sent back (ICMP header first). `None` when it is not about this probe or
    /// says nothing the search can use.
    pub fn error(&self, err: &ExtendedErr, quoted: &[u8]) -> Option<MtuOutcome> {
        match err.origin {
            SO_EE_ORIGIN_LOCAL if err.errno == libc::EMSGSIZE as u32 => {
                Some(MtuOutcome::LocalTooBig)
            }
            SO_EE_ORIGIN_LOCAL => Some(MtuOutcome::Failed(io_error(
                &io::Error::from_raw_os_error(i32::try_from(err.errno).unwrap_or(libc::EIO)),
            ))),
            _ => {
                // The echo prober's reading of a router's report; here it must be about this
                // probe (sequence, and the cookie when quoted), and like the raw prober only
                // unreachable / time exceeded (IPv4) count.
                let (seq, class) = echo_error(err, quoted, self.v6)?;
                let cookie = quoted.get(8..8 + COOKIE_LEN);
                if seq != self.seq
                    || cookie.is_some_and(|c| c != self.cookie)
                    || (!self.v6 && err.icmp_type == 12)
                {
                    return None;
                }
                Some(match class {
                    ErrorClass::FragNeeded { from, mtu } => MtuOutcome::TooBig { mtu, from },
                    other => MtuOutcome::Failed(other),
                })
            }
        }
    }
}

/// One datagram probe: send, then read replies and the error queue until our answer or
/// `deadline` (the caller also enforces it).
pub async fn exchange(dest: IpAddr, size: u32, deadline: Instant) -> PmtuProbe {
    let at_once = |outcome| PmtuProbe { outcome, rtt: None };
    let v6 = dest.is_ipv6();
    let socket = match open_socket(v6).and_then(|s| {
        // SAFETY: the socket owns its fd, which stays open and the same until the AsyncFd
        // (which owns the socket) is dropped.
        unsafe {
            AsyncFd::register_with_interest(
                s,
                Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
            )
        }
        .map_err(io::Error::from)
    }) {
        Ok(s) => s,
        Err(e) => return at_once(MtuOutcome::Failed(io_error(&e))),
    };
    let echo = DgramEcho {
        v6,
        seq: rand::random(),
        cookie: rand::random(),
    };
    let sent_at = match send_probe(&socket, echo.build(size).as_deref(), size, dest).await {
        Ok(t) => t,
        Err(outcome) => return at_once(outcome),
    };
    let mut buf = vec![0u8; RECV_BUF];
    let mut control = [0u8; CONTROL_BUF];
    let done = |outcome| PmtuProbe {
        outcome,
        rtt: Some(sent_at.elapsed()),
    };
    loop {
        let ready = Interest::READABLE | Interest::ERROR;
        let mut guard = match tokio::time::timeout_at(deadline, socket.ready(ready)).await {
            Err(_elapsed) => break,
            Ok(Ok(g)) => g,
            Ok(Err(e)) => return at_once(MtuOutcome::Failed(io_error(&e))),
        };
        // The error queue first: a router's report about our probe.
        loop {
            match recv_errqueue(guard.get_inner(), &mut buf, &mut control) {
                Ok((n, c, _)) => {
                    let err = extended_err(&control[..c]);
                    if let Some(outcome) = err.and_then(|e| echo.error(&e, &buf[..n])) {
                        return done(outcome);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        guard.clear_ready_matching(Ready::ERROR);
        // Then the replies.
        loop {
            match guard.get_inner().recv_from(as_uninit(&mut buf)) {
                Ok((n, from)) => {
                    let Some(source) = from.as_socket().map(|a| a.ip()) else {
                        continue;
                    };
                    if echo.reply(source, &buf[..n.min(buf.len())], dest) {
                        return done(MtuOutcome::Ok);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready_matching(Ready::READABLE);
                    break;
                }
                // A pending socket error (the queued report, also noted as sk_err): the
                // error queue has the details.
                Err(_) => break,
            }
        }
    }
    at_once(MtuOutcome::Lost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::icmpv4_error;
    use crate::errqueue::parse_cmsgs;
    use std::net::Ipv4Addr;

    const DEST: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 6);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);

    fn echo(v6: bool) -> DgramEcho {
        DgramEcho {
            v6,
            seq: 0x1234,
            cookie: *b"cookie!!",
        }
    }

    /// A `sock_extended_err` + sockaddr as the kernel lays it out.
    fn ee(errno: i32, origin: u8, t: u8, code: u8, info: u32, offender: Option<IpAddr>) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(errno as u32).to_ne_bytes());
        v.extend_from_slice(&[origin, t, code, 0]);
        v.extend_from_slice(&info.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        match offender {
            Some(IpAddr::V4(a)) => {
                v.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                v.extend_from_slice(&[0, 0]);
                v.extend_from_slice(&a.octets());
                v.extend_from_slice(&[0; 8]);
            }
            Some(IpAddr::V6(a)) => {
                v.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                v.extend_from_slice(&[0; 6]);
                v.extend_from_slice(&a.octets());
                v.extend_from_slice(&[0; 4]);
            }
            None => v.extend_from_slice(&[0; 16]),
        }
        v
    }

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let word = std::mem::size_of::<usize>();
        let header = std::mem::size_of::<libc::cmsghdr>();
        let len = header + data.len();
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.resize(header.div_ceil(word) * word, 0);
        v.extend_from_slice(data);
        v.resize(len.div_ceil(word) * word, 0);
        v
    }

    #[test]
    fn control_messages_are_walked_within_bounds() {
        let a = cmsg(libc::IPPROTO_IP, libc::IP_RECVERR, &[1, 2, 3]);
        let b = cmsg(libc::IPPROTO_IPV6, libc::IPV6_RECVERR, &[9; 40]);
        let both = [a.clone(), b.clone()].concat();
        let got = parse_cmsgs(&both);
        assert_eq!(
            got,
            vec![
                (libc::IPPROTO_IP, libc::IP_RECVERR, &[1u8, 2, 3][..]),
                (libc::IPPROTO_IPV6, libc::IPV6_RECVERR, &[9u8; 40][..]),
            ]
        );
        // Truncated anywhere: what is whole is kept, nothing is read past the end.
        for cut in 0..both.len() {
            let got = parse_cmsgs(&both[..cut]);
            assert!(got.len() <= 1 || cut >= a.len() + 16, "{cut}: {got:?}");
        }
        // A length below the header or past the buffer ends the walk.
        let mut lying = a.clone();
        lying[..8].copy_from_slice(&4usize.to_ne_bytes());
        assert!(parse_cmsgs(&lying).is_empty());
        let mut lying = a.clone();
        lying[..8].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert!(parse_cmsgs(&lying).is_empty());
        // The same after a good message: the end would overflow (found by fuzzing).
        let mut lying = [a.clone(), a.clone()].concat();
        lying[a.len()..a.len() + 8].copy_from_slice(&(usize::MAX - 4).to_ne_bytes());
        assert_eq!(parse_cmsgs(&lying).len(), 1);
        assert!(parse_cmsgs(&[]).is_empty());
    }

    #[test]
    fn extended_errors_are_read() {
        let r = IpAddr::V4(ROUTER);
        let got = ExtendedErr::parse(&ee(libc::EMSGSIZE, 2, 3, 4, 1400, Some(r))).unwrap();
        assert_eq!(
            got,
            ExtendedErr {
                errno: libc::EMSGSIZE as u32,
                origin: 2,
                icmp_type: 3,
                code: 4,
                info: 1400,
                offender: Some(r),
            }
        );
        let r6: IpAddr = "2001:2:0:1::2".parse().unwrap();
        let got = ExtendedErr::parse(&ee(libc::EMSGSIZE, 3, 2, 0, 1400, Some(r6))).unwrap();
        assert_eq!(got.offender, Some(r6));
        assert_eq!(
            ExtendedErr::parse(&ee(90, 1, 0, 0, 1500, None))
                .unwrap()
                .offender,
            None
        );
        // Short: no struct, or a struct with a cut address.
        assert_eq!(ExtendedErr::parse(&[0; 15]), None);
        let full = ee(libc::EMSGSIZE, 2, 3, 4, 1400, Some(r));
        assert_eq!(ExtendedErr::parse(&full[..16]).unwrap().offender, None);
        assert_eq!(ExtendedErr::parse(&full[..22]), None);
    }

    #[test]
    fn errors_and_replies_are_matched_to_the_probe() {
        let e = echo(false);
        let request = e.build(1500).unwrap();
        let quoted = &request[..8 + COOKIE_LEN];
        let router = IpAddr::V4(ROUTER);
        let parse = |b: Vec<u8>| ExtendedErr::parse(&b).unwrap();
        let frag = parse(ee(libc::EMSGSIZE, 2, 3, 4, 1400, Some(router)));
        let too_big = MtuOutcome::TooBig {
            mtu: Some(1400),
            from: Some(router),
        };
        // (error, quoted request, outcome)
        let mut other = request.clone();
        other[7] ^= 1;
        let mut bad_cookie = request.clone();
        bad_cookie[9] ^= 1;
        let table: Vec<(ExtendedErr, &[u8], Option<MtuOutcome>)> = vec![
            (frag.clone(), quoted, Some(too_big.clone())),
            // Routers may quote only the 8-byte header: no cookie to check.
            (frag.clone(), &request[..8], Some(too_big)),
            (frag.clone(), &other[..16], None),
            (frag.clone(), &bad_cookie[..16], None),
            (frag.clone(), &request[..7], None),
            // No MTU in the report: the search probes on.
            (
                parse(ee(libc::EMSGSIZE, 2, 3, 4, 0, Some(router))),
                quoted,
                Some(MtuOutcome::TooBig {
                    mtu: None,
                    from: Some(router),
                }),
            ),
            (
                parse(ee(libc::EHOSTUNREACH, 2, 3, 1, 0, Some(router))),
                quoted,
                Some(MtuOutcome::Failed(icmpv4_error(3, 1, router, None))),
            ),
            (
                parse(ee(libc::EHOSTUNREACH, 2, 11, 0, 0, Some(router))),
                quoted,
                Some(MtuOutcome::Failed(icmpv4_error(11, 0, router, None))),
            ),
            // An ICMP origin without the router's address says nothing usable.
            (parse(ee(libc::EMSGSIZE, 2, 3, 4, 1400, None)), quoted, None),
            // An ICMPv6 report on an IPv4 probe is not ours.
            (
                parse(ee(libc::EMSGSIZE, 3, 2, 0, 1400, Some(router))),
                quoted,
                None,
            ),
            // The local stack refused the size.
            (
                parse(ee(libc::EMSGSIZE, 1, 0, 0, 1500, None)),
                &[],
                Some(MtuOutcome::LocalTooBig),
            ),
        ];
        for (err, quoted, want) in table {
            assert_eq!(e.error(&err, quoted), want, "{err:?} {quoted:?}");
        }

        // IPv6: Packet Too Big.
        let e6 = echo(true);
        let req6 = e6.build(1500).unwrap();
        let r6: IpAddr = "2001:2:0:1::2".parse().unwrap();
        let ptb = parse(ee(libc::EMSGSIZE, 3, 2, 0, 1400, Some(r6)));
        assert_eq!(
            e6.error(&ptb, &req6[..16]),
            Some(MtuOutcome::TooBig {
                mtu: Some(1400),
                from: Some(r6)
            })
        );
        assert_eq!(e.error(&ptb, &req6[..16]), None, "an IPv4 probe");

        // Replies: from the destination, with our sequence and cookie.
        let mut reply = request.clone();
        reply[0] = 0;
        reply[4..6].copy_from_slice(&[0xab, 0xcd]); // the kernel's identifier
        let d = IpAddr::V4(DEST);
        assert!(e.reply(d, &reply, d));
        assert!(!e.reply(router, &reply, d));
        assert!(!e.reply(d, &reply[..15], d));
        assert!(!e.reply(d, &other, d));
        let mut r6 = req6.clone();
        r6[0] = 129;
        let d6: IpAddr = "2001:2:0:2::2".parse().unwrap();
        assert!(e6.reply(d6, &r6, d6));
        assert!(!e.reply(d6, &r6, d6), "type 129 is not an IPv4 reply");
    }

    #[test]
    fn no_panic_on_any_input() {
        let e = echo(false);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut b = vec![0u8; (x % 80) as usize];
            for byte in &mut b {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            let _ = parse_cmsgs(&b);
            if let Some(err) = ExtendedErr::parse(&b) {
                let _ = e.error(&err, &b);
                let _ = echo(true).error(&err, &b);
            }
            let _ = e.reply(IpAddr::V4(DEST), &b, IpAddr::V4(DEST));
        }
    }
}
