//! The egress device toward a destination, asked of the kernel's routing table over
//! `NETLINK_ROUTE`: `RTM_GETROUTE` for the destination (the same lookup `ip route get` makes, so
//! multiple interfaces, policy routing and `src` hints are all honoured) gives the output
//! interface index, the source address and any route MTU; `RTM_GETLINK` for that index gives
//! the device's name and MTU.
//!
//! Hand-written rather than a crate: two fixed-size requests and a few attributes read from the
//! replies (rtnetlink/netlink-packet-route would add a dozen crates for this). Building the
//! requests and parsing the replies is pure and bounds-checked (table tests below); the socket
//! part is thin: one blocking `NETLINK_ROUTE` socket per lookup, a receive timeout
//! ([`TIMEOUT`]) on every read, a bounded receive buffer and a bounded number of reads.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Every read from the kernel gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Receive buffer: one route or link message is well below this.
const RECV_BUF: usize = 32 * 1024;
/// Reads per request before giving up (other messages are skipped by sequence number).
const MAX_READS: usize = 8;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTMSG_LEN: usize = 12;
const IFINFOMSG_LEN: usize = 16;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTAX_MTU: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;

/// What the routing table says about a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Output interface index.
    pub oif: u32,
    /// The source address the kernel would use.
    pub source: Option<IpAddr>,
    /// The route's MTU metric (a configured `mtu`, or a path MTU learned from ICMP), if any.
    pub mtu: Option<u32>,
}

/// A network device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: Option<String>,
    pub mtu: Option<u32>,
}

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The kernel answered with an error (a positive errno, e.g. ENETUNREACH).
    Errno(i32),
    /// The bytes are not a well-formed reply to this request.
    Malformed(&'static str),
    /// Nothing for this request in these bytes (another sequence number): read again.
    NotOurs,
}

impl From<ParseError> for io::Error {
    fn from(e: ParseError) -> io::Error {
        match e {
            ParseError::Errno(n) => io::Error::from_raw_os_error(n),
            ParseError::Malformed(what) => {
                io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"))
            }
            ParseError::NotOurs => io::Error::new(
                io::ErrorKind::InvalidData,
                "netlink: no answer to the request",
            ),
        }
    }
}

// ---- requests (pure) ------------------------------------------------------------------------

fn nlmsg(msg_type: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// `RTM_GETROUTE` for `dest` (a host route lookup, as `ip route get DEST`).
pub fn route_request(dest: IpAddr, seq: u32) -> Vec<u8> {
    let (family, addr): (u8, Vec<u8>) = match dest {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let mut body = vec![0u8; RTMSG_LEN];
    body[0] = family;
    body[1] = (addr.len() * 8) as u8; // rtm_dst_len
    let attr_len = 4 + addr.len();
    body.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    body.extend_from_slice(&RTA_DST.to_ne_bytes());
    body.extend_from_slice(&addr);
    nlmsg(RTM_GETROUTE, seq, &body)
}

/// `RTM_GETLINK` for interface `index`.
pub fn link_request(index: u32, seq: u32) -> Vec<u8> {
    let mut body = vec![0u8; IFINFOMSG_LEN];
    body[0] = libc::AF_UNSPEC as u8;
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    nlmsg(RTM_GETLINK, seq, &body)
}

// ---- replies (pure) -------------------------------------------------------------------------

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// The message answering `seq` in a datagram: (type, payload after the netlink header).
/// Messages for other sequence numbers are skipped; `NLMSG_ERROR` becomes `Errno` (an error
/// code of 0 is an acknowledgement, not an answer, and is skipped too).
fn find_reply(buf: &[u8], seq: u32) -> Result<(u16, &[u8]), ParseError> {
    let mut at = 0;
    // Each message is at least a header long: the walk is bounded by the buffer.
    while at + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, at).ok_or(ParseError::Malformed("header"))? as usize;
        let msg_type = u16_at(buf, at + 4).ok_or(ParseError::Malformed("header"))?;
        let msg_seq = u32_at(buf, at + 8).ok_or(ParseError::Malformed("header"))?;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return Err(ParseError::Malformed("message length"));
        }
        let payload = &buf[at + NLMSG_HDRLEN..at + len];
        if msg_seq == seq {
            match msg_type {
                NLMSG_ERROR => {
                    let code = u32_at(payload, 0).ok_or(ParseError::Malformed("error"))? as i32;
                    if code != 0 {
                        return Err(ParseError::Errno(code.saturating_neg()));
                    }
                }
                NLMSG_DONE => return Err(ParseError::Malformed("no answer before done")),
                _ => return Ok((msg_type, payload)),
            }
        }
        at += align4(len);
    }
    Err(ParseError::NotOurs)
}

/// Attributes (type, value) after a fixed header of `skip` bytes. Stops at the first
/// malformed one.
fn attrs(payload: &[u8], skip: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = skip;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(payload, at)?);
        let kind = u16_at(payload, at + 2)? & 0x3fff; // without NLA_F_NESTED / NET_BYTEORDER
        if len < 4 {
            return None;
        }
        let value = payload.get(at + 4..at + len)?;
        at += align4(len);
        Some((kind, value))
    })
}

fn ip_of(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), b.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        (libc::AF_INET6, 16) => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// The route in the reply to [`route_request`] number `seq`.
pub fn parse_route(buf: &[u8], seq: u32) -> Result<Route, ParseError> {
    let (msg_type, payload) = find_reply(buf, seq)?;
    if msg_type != RTM_NEWROUTE {
        return Err(ParseError::Malformed("not a route message"));
    }
    let family = *payload.first().ok_or(ParseError::Malformed("rtmsg"))?;
    if payload.len() < RTMSG_LEN {
        return Err(ParseError::Malformed("rtmsg"));
    }
    let mut route = Route {
        oif: 0,
        source: None,
        mtu: None,
    };
    for (kind, value) in attrs(payload, RTMSG_LEN) {
        match kind {
            RTA_OIF => route.oif = u32_at(value, 0).unwrap_or(0),
            RTA_PREFSRC => route.source = ip_of(family, value),
            RTA_METRICS => {
                for (metric, v) in attrs(value, 0) {
                    if metric == RTAX_MTU {
                        route.mtu = u32_at(v, 0).filter(|&m| m > 0);
                    }
                }
            }
            _ => {}
        }
    }
    if route.oif == 0 {
        return Err(ParseError::Malformed("route without an output interface"));
    }
    Ok(route)
}

/// The link in the reply to [`link_request`] number `seq`.
pub fn parse_link(buf: &[u8], seq: u32) -> Result<Link, ParseError> {
    let (msg_type, payload) = find_reply(buf, seq)?;
    if msg_type != RTM_NEWLINK || payload.len() < IFINFOMSG_LEN {
        return Err(ParseError::Malformed("not a link message"));
    }
    let mut link = Link {
        name: None,
        mtu: None,
    };
    for (kind, value) in attrs(payload, IFINFOMSG_LEN) {
        match kind {
            IFLA_IFNAME => {
                let name = value.split(|&b| b == 0).next().unwrap_or_default();
                if !name.is_empty() && name.len() < libc::IFNAMSIZ {
                    link.name = Some(String::from_utf8_lossy(name).into_owned());
                }
            }
            IFLA_MTU => link.mtu = u32_at(value, 0).filter(|&m| m > 0),
            _ => {}
        }
    }
    Ok(link)
}

// ---- the socket (thin) ----------------------------------------------------------------------

/// A `NETLINK_ROUTE` socket of the caller's network namespace, blocking, with a receive
/// timeout.
pub struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

impl RouteSocket {
    pub fn open() -> io::Result<RouteSocket> {
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: TIMEOUT.as_secs() as libc::time_t,
            tv_usec: TIMEOUT.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: a live socket; the value is a timeval of the given length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RouteSocket {
            fd,
            seq: rand::random(),
        })
    }

    /// Send `request` (built with sequence number `seq`) and parse the answer with `parse`.
    fn ask<T>(
        &mut self,
        request: &[u8],
        seq: u32,
        parse: impl Fn(&[u8], u32) -> Result<T, ParseError>,
    ) -> io::Result<T> {
        // SAFETY: zeroed sockaddr_nl is valid; nl_pid 0 addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: a live socket, a buffer and an address of the given lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&raw const kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; RECV_BUF];
        for _ in 0..MAX_READS {
            // SAFETY: a live socket and a buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // EAGAIN after SO_RCVTIMEO: the kernel did not answer in time.
                return Err(e);
            }
            match parse(&buf[..n as usize], seq) {
                Err(ParseError::NotOurs) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
        Err(ParseError::NotOurs.into())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// `ip route get DEST`.
    pub fn route(&mut self, dest: IpAddr) -> io::Result<Route> {
        let seq = self.next_seq();
        self.ask(&route_request(dest, seq), seq, parse_route)
    }

    /// `ip link show` of one interface.
    pub fn link(&mut self, index: u32) -> io::Result<Link> {
        let seq = self.next_seq();
        self.ask(&link_request(index, seq), seq, parse_link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn msg(msg_type: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = nlmsg(msg_type, seq, body);
        m[6..8].copy_from_slice(&0u16.to_ne_bytes());
        m
    }

    fn route_reply(seq: u32, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0u8; RTMSG_LEN];
        body[0] = family;
        for a in attrs {
            body.extend_from_slice(a);
        }
        msg(RTM_NEWROUTE, seq, &body)
    }

    fn error_reply(seq: u32, errno: i32) -> Vec<u8> {
        let mut body = (-errno).to_ne_bytes().to_vec();
        body.extend_from_slice(&nlmsg(RTM_GETROUTE, seq, &[])); // the quoted request header
        msg(NLMSG_ERROR, seq, &body)
    }

    #[test]
    fn requests_are_well_formed() {
        let r = route_request("198.18.1.11".parse().unwrap(), 7);
        assert_eq!(r.len(), 16 + 12 + 8);
        assert_eq!(u32_at(&r, 0), Some(36));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETROUTE));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&r, 8), Some(7));
        assert_eq!(r[16], libc::AF_INET as u8);
        assert_eq!(r[17], 32);
        assert_eq!(u16_at(&r, 28), Some(8));
        assert_eq!(u16_at(&r, 30), Some(RTA_DST));
        assert_eq!(&r[32..36], &[198, 18, 1, 11]);

        let r = route_request("2001:2::1".parse().unwrap(), 8);
        assert_eq!(r.len(), 16 + 12 + 20);
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(r[17], 128);
        assert_eq!(u16_at(&r, 28), Some(20));

        let l = link_request(42, 9);
        assert_eq!(l.len(), 32);
        assert_eq!(u16_at(&l, 4), Some(RTM_GETLINK));
        assert_eq!(u32_at(&l, 20), Some(42));
    }

    #[test]
    fn route_replies_are_read() {
        let v4 = libc::AF_INET as u8;
        let v6 = libc::AF_INET6 as u8;
        let metrics = attr(RTA_METRICS, &attr(RTAX_MTU, &1400u32.to_ne_bytes()));
        type Case = (&'static str, Vec<u8>, u32, Result<Route, ParseError>);
        let cases: Vec<Case> = vec![
            (
                "oif and source",
                route_reply(
                    5,
                    v4,
                    &[
                        attr(RTA_DST, &[198, 18, 2, 12]),
                        attr(RTA_OIF, &3u32.to_ne_bytes()),
                        attr(RTA_PREFSRC, &[198, 18, 1, 11]),
                    ],
                ),
                5,
                Ok(Route {
                    oif: 3,
                    source: Some("198.18.1.11".parse().unwrap()),
                    mtu: None,
                }),
            ),
            (
                "a learned path MTU in the metrics",
                route_reply(
                    5,
                    v4,
                    &[attr(RTA_OIF, &3u32.to_ne_bytes()), metrics.clone()],
                ),
                5,
                Ok(Route {
                    oif: 3,
                    source: None,
                    mtu: Some(1400),
                }),
            ),
            (
                "IPv6",
                route_reply(
                    6,
                    v6,
                    &[
                        attr(RTA_OIF, &2u32.to_ne_bytes()),
                        attr(
                            RTA_PREFSRC,
                            &"2001:2:0:1::1".parse::<Ipv6Addr>().unwrap().octets(),
                        ),
                    ],
                ),
                6,
                Ok(Route {
                    oif: 2,
                    source: Some("2001:2:0:1::1".parse().unwrap()),
                    mtu: None,
                }),
            ),
            (
                "a source of the wrong length is ignored",
                route_reply(
                    5,
                    v4,
                    &[
                        attr(RTA_OIF, &3u32.to_ne_bytes()),
                        attr(RTA_PREFSRC, &[1, 2]),
                    ],
                ),
                5,
                Ok(Route {
                    oif: 3,
                    source: None,
                    mtu: None,
                }),
            ),
            (
                "no route",
                error_reply(5, libc::ENETUNREACH),
                5,
                Err(ParseError::Errno(libc::ENETUNREACH)),
            ),
            (
                "another request's answer",
                route_reply(4, v4, &[attr(RTA_OIF, &3u32.to_ne_bytes())]),
                5,
                Err(ParseError::NotOurs),
            ),
            (
                "no output interface",
                route_reply(5, v4, &[]),
                5,
                Err(ParseError::Malformed("route without an output interface")),
            ),
            (
                "a link message",
                msg(RTM_NEWLINK, 5, &[0; 16]),
                5,
                Err(ParseError::Malformed("not a route message")),
            ),
            (
                "length beyond the datagram",
                {
                    let mut m = route_reply(5, v4, &[attr(RTA_OIF, &3u32.to_ne_bytes())]);
                    m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
                    m
                },
                5,
                Err(ParseError::Malformed("message length")),
            ),
            ("empty", Vec::new(), 5, Err(ParseError::NotOurs)),
        ];
        for (name, buf, seq, want) in cases {
            assert_eq!(parse_route(&buf, seq), want, "{name}");
        }
        // An acknowledgement and another request's answer before ours, in one datagram.
        let mut buf = error_reply(5, 0);
        buf.extend(route_reply(4, v4, &[attr(RTA_OIF, &9u32.to_ne_bytes())]));
        buf.extend(route_reply(5, v4, &[attr(RTA_OIF, &3u32.to_ne_bytes())]));
        assert_eq!(parse_route(&buf, 5).map(|r| r.oif), Ok(3));
    }

    #[test]
    fn link_replies_are_read() {
        let reply = |attrs: &[Vec<u8>]| {
            let mut body = vec![0u8; IFINFOMSG_LEN];
            for a in attrs {
                body.extend_from_slice(a);
            }
            msg(RTM_NEWLINK, 1, &body)
        };
        let cases = [
            (
                reply(&[
                    attr(IFLA_IFNAME, b"eth0\0"),
                    attr(IFLA_MTU, &1450u32.to_ne_bytes()),
                ]),
                Ok(Link {
                    name: Some("eth0".into()),
                    mtu: Some(1450),
                }),
            ),
            (
                reply(&[attr(IFLA_MTU, &0u32.to_ne_bytes())]),
                Ok(Link {
                    name: None,
                    mtu: None,
                }),
            ),
            (
                reply(&[attr(IFLA_IFNAME, &[b'x'; 40])]),
                Ok(Link {
                    name: None,
                    mtu: None,
                }),
            ),
            (
                msg(RTM_NEWLINK, 1, &[0; 8]),
                Err(ParseError::Malformed("not a link message")),
            ),
            (
                error_reply(1, libc::ENODEV),
                Err(ParseError::Errno(libc::ENODEV)),
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(parse_link(&buf, 1), want);
        }
    }

    /// Truncations and random mutations of real-shaped replies never panic.
    #[test]
    fn no_panic_on_any_reply() {
        let v4 = libc::AF_INET as u8;
        let samples = [
            route_reply(
                1,
                v4,
                &[
                    attr(RTA_OIF, &3u32.to_ne_bytes()),
                    attr(RTA_PREFSRC, &[198, 18, 1, 11]),
                    attr(RTA_METRICS, &attr(RTAX_MTU, &1400u32.to_ne_bytes())),
                ],
            ),
            error_reply(1, libc::ENETUNREACH),
        ];
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        for sample in &samples {
            for len in 0..=sample.len() {
                let _ = parse_route(&sample[..len], 1);
                let _ = parse_link(&sample[..len], 1);
            }
            for _ in 0..20_000 {
                let mut p = sample.clone();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = (x as usize) % p.len();
                    p[at] = (x >> 32) as u8;
                }
                let _ = parse_route(&p, 1);
                let _ = parse_link(&p, 1);
            }
        }
    }

    /// The kernel's own answer for loopback in this namespace.
    #[test]
    fn loopback_route_is_lo() {
        let mut s = RouteSocket::open().expect("a NETLINK_ROUTE socket");
        let r = s
            .route(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect("route to 127.0.0.1");
        let l = s.link(r.oif).expect("link");
        assert_eq!(l.name.as_deref(), Some("lo"), "{r:?} {l:?}");
        assert_eq!(l.mtu, Some(65536));
        assert_eq!(r.source, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
