//! Naming failures: pure functions from what the OS or an ICMP error said to an [`ErrorClass`].

use std::io;
use std::net::IpAddr;

use meshprobe_core::model::ErrorClass;

/// Name an I/O error from a socket call (connect, send, recv). `from` is unknown here: the
/// local stack (or a queued ICMP error without its origin) reported it.
pub fn io_error(err: &io::Error) -> ErrorClass {
    if let Some(errno) = err.raw_os_error() {
        return errno_class(errno, err);
    }
    match err.kind() {
        io::ErrorKind::TimedOut => ErrorClass::Timeout,
        io::ErrorKind::ConnectionRefused => ErrorClass::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ErrorClass::Reset,
        io::ErrorKind::UnexpectedEof => ErrorClass::Protocol {
            detail: "connection closed before the answer was complete".into(),
        },
        _ => ErrorClass::Io {
            errno: None,
            detail: truncate(&err.to_string()),
        },
    }
}

fn errno_class(errno: i32, err: &io::Error) -> ErrorClass {
    match errno {
        libc::ETIMEDOUT => ErrorClass::Timeout,
        libc::ECONNREFUSED => ErrorClass::Refused,
        libc::ECONNRESET | libc::ECONNABORTED | libc::EPIPE => ErrorClass::Reset,
        libc::ENETUNREACH => ErrorClass::NetUnreachable { from: None },
        libc::EHOSTUNREACH => ErrorClass::HostUnreachable { from: None },
        libc::EMSGSIZE => ErrorClass::MessageTooLong,
        libc::EACCES | libc::EPERM => ErrorClass::AdminProhibited { from: None },
        libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT | libc::ENETDOWN => ErrorClass::LocalError {
            detail: truncate(&err.to_string()),
        },
        _ => ErrorClass::Io {
            errno: Some(errno),
            detail: truncate(&err.to_string()),
        },
    }
}

/// Name an ICMPv4 error message (RFC 792 / RFC 1812) sent by `from`. `mtu` is the next-hop
/// MTU carried by "fragmentation needed" (type 3 code 4), when non-zero.
pub fn icmpv4_error(icmp_type: u8, code: u8, from: IpAddr, mtu: Option<u32>) -> ErrorClass {
    let from = Some(from);
    match (icmp_type, code) {
        (3, 0) | (3, 6) | (3, 11) => ErrorClass::NetUnreachable { from },
        (3, 1) | (3, 7) | (3, 12) => ErrorClass::HostUnreachable { from },
        (3, 2) | (3, 3) => ErrorClass::PortUnreachable { from },
        (3, 4) => ErrorClass::FragNeeded {
            from,
            mtu: mtu.filter(|m| *m > 0),
        },
        (3, 9) | (3, 10) | (3, 13) => ErrorClass::AdminProhibited { from },
        (11, _) => ErrorClass::TtlExceeded { from },
        (icmp_type, code) => ErrorClass::Icmp {
            from,
            icmp_type,
            code,
        },
    }
}

/// Name an ICMPv6 error message (RFC 4443) sent by `from`. `mtu` is the MTU of a
/// "packet too big" (type 2).
pub fn icmpv6_error(icmp_type: u8, code: u8, from: IpAddr, mtu: Option<u32>) -> ErrorClass {
    let from = Some(from);
    match (icmp_type, code) {
        (1, 0) | (1, 2) => ErrorClass::NetUnreachable { from },
        (1, 3) => ErrorClass::HostUnreachable { from },
        (1, 4) => ErrorClass::PortUnreachable { from },
        (1, 1) | (1, 5) | (1, 6) => ErrorClass::AdminProhibited { from },
        (2, _) => ErrorClass::FragNeeded {
            from,
            mtu: mtu.filter(|m| *m > 0),
        },
        (3, _) => ErrorClass::TtlExceeded { from },
        (icmp_type, code) => ErrorClass::Icmp {
            from,
            icmp_type,
            code,
        },
    }
}

/// Keep free text bounded: error details end up in JSON and logs.
pub fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_name_the_failure() {
        let table = [
            (libc::ECONNREFUSED, "refused"),
            (libc::ECONNRESET, "reset"),
            (libc::ETIMEDOUT, "timeout"),
            (libc::ENETUNREACH, "net_unreachable"),
            (libc::EHOSTUNREACH, "host_unreachable"),
            (libc::EMSGSIZE, "message_too_long"),
            (libc::EADDRNOTAVAIL, "local_error"),
            (libc::EIO, "io"),
        ];
        for (errno, label) in table {
            let got = io_error(&io::Error::from_raw_os_error(errno));
            assert_eq!(got.label(), label, "errno {errno}");
        }
    }

    #[test]
    fn error_kinds_without_errno() {
        assert_eq!(
            io_error(&io::ErrorKind::TimedOut.into()),
            ErrorClass::Timeout
        );
        assert_eq!(
            io_error(&io::ErrorKind::ConnectionRefused.into()),
            ErrorClass::Refused
        );
        assert_eq!(
            io_error(&io::ErrorKind::UnexpectedEof.into()).label(),
            "protocol"
        );
    }

    #[test]
    fn icmpv4_errors_keep_the_reporter_and_mtu() {
        let gw: IpAddr = "198.19.1.1".parse().unwrap();
        let table = [
            ((3, 0), "net_unreachable"),
            ((3, 1), "host_unreachable"),
            ((3, 3), "port_unreachable"),
            ((3, 4), "frag_needed"),
            ((3, 13), "admin_prohibited"),
            ((11, 0), "ttl_exceeded"),
            ((5, 1), "icmp_other"),
        ];
        for ((t, c), label) in table {
            assert_eq!(
                icmpv4_error(t, c, gw, None).label(),
                label,
                "type {t} code {c}"
            );
        }
        assert_eq!(
            icmpv4_error(3, 4, gw, Some(1400)),
            ErrorClass::FragNeeded {
                from: Some(gw),
                mtu: Some(1400)
            }
        );
        assert_eq!(
            icmpv4_error(3, 0, gw, None),
            ErrorClass::NetUnreachable { from: Some(gw) }
        );
        // An MTU of zero (pre-RFC 1191 routers) means "unknown".
        assert_eq!(
            icmpv4_error(3, 4, gw, Some(0)),
            ErrorClass::FragNeeded {
                from: Some(gw),
                mtu: None
            }
        );
    }

    #[test]
    fn icmpv6_errors() {
        let gw: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(icmpv6_error(1, 0, gw, None).label(), "net_unreachable");
        assert_eq!(icmpv6_error(1, 3, gw, None).label(), "host_unreachable");
        assert_eq!(icmpv6_error(1, 1, gw, None).label(), "admin_prohibited");
        assert_eq!(
            icmpv6_error(2, 0, gw, Some(1280)),
            ErrorClass::FragNeeded {
                from: Some(gw),
                mtu: Some(1280)
            }
        );
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        let long = "é".repeat(300);
        let t = truncate(&long);
        assert!(t.len() <= 204);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }
}
