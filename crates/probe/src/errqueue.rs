//! A socket's error queue (`IP_RECVERR` / `IPV6_RECVERR`), read and parsed in one place: the
//! `recvmsg(MSG_ERRQUEUE)` call, the control-message walk, `sock_extended_err` and what a
//! router's report says about one of our echo requests. Parsing is pure and bounds-checked:
//! any byte string is safe (fuzzed).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use crate::classify::{icmpv4_error, icmpv6_error};
use meshprobe_core::model::ErrorClass;

/// Control buffer for one error-queue message: cmsghdr + sock_extended_err + sockaddr_in6,
/// with room to spare.
pub(crate) const CONTROL_BUF: usize = 256;

/// `sock_extended_err.ee_origin` (<linux/errqueue.h>).
pub(crate) const SO_EE_ORIGIN_LOCAL: u8 = 1;

pub(crate) const SO_EE_ORIGIN_ICMP: u8 = 2;

pub(crate) const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// What an error-queue entry says about one of our echo requests: its sequence number and
/// the error, the reporting router as `from` (pure). `None` for what is not a router's report
/// about an echo request (local errors, other origins, a quote that is not our request).
pub fn echo_error(err: &ExtendedErr, quoted: &[u8], v6: bool) -> Option<(u16, ErrorClass)> {
    let request = if v6 { 128 } else { 8 };
    if quoted.len() < 8 || quoted[0] != request {
        return None;
    }
    let seq = u16::from_be_bytes([quoted[6], quoted[7]]);
    let from = err.offender?;
    let class = match (err.origin, v6) {
        (SO_EE_ORIGIN_ICMP, false) if matches!(err.icmp_type, 3 | 11 | 12) => {
            let mtu = ((err.icmp_type, err.code) == (3, 4) && (1..=0xffff).contains(&err.info))
                .then_some(err.info);
            icmpv4_error(err.icmp_type, err.code, from, mtu)
        }
        (SO_EE_ORIGIN_ICMP6, true) if matches!(err.icmp_type, 1..=4) => {
            let mtu = (err.icmp_type == 2 && err.info > 0).then_some(err.info);
            icmpv6_error(err.icmp_type, err.code, from, mtu)
        }
        _ => return None,
    };
    Some((seq, class))
}

/// A `sock_extended_err` and the offender address after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedErr {
    pub errno: u32,
    pub origin: u8,
    pub icmp_type: u8,
    pub code: u8,
    pub info: u32,
    pub offender: Option<IpAddr>,
}

impl ExtendedErr {
    /// Parse the data of an `IP_RECVERR` / `IPV6_RECVERR` control message (native byte order
    /// for the struct, network order inside the sockaddr). Any byte string is safe.
    pub fn parse(data: &[u8]) -> Option<ExtendedErr> {
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(data.get(i..i + 4)?.try_into().ok()?))
        };
        // The whole struct (ee_data ends it at 16), then the address.
        data.get(..16)?;
        let errno = u32_at(0)?;
        let origin = *data.get(4)?;
        let icmp_type = *data.get(5)?;
        let code = *data.get(6)?;
        let info = u32_at(8)?;
        let addr = data.get(16..).unwrap_or(&[]);
        let family = addr
            .get(0..2)
            .map(|f| u16::from_ne_bytes([f[0], f[1]]))
            .unwrap_or(0);
        let offender = match i32::from(family) {
            libc::AF_INET => {
                let a: [u8; 4] = addr.get(4..8)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(a)))
            }
            libc::AF_INET6 => {
                let a: [u8; 16] = addr.get(8..24)?.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        };
        Some(ExtendedErr {
            errno,
            origin,
            icmp_type,
            code,
            info,
            offender,
        })
    }
}

/// The control messages in a `recvmsg` control buffer of `len` bytes: (level, type, data).
/// Linux layout: `cmsghdr` is { size_t len; int level; int type; }, data and the next header
/// aligned to `size_t`. Bounds-checked: a short or lying length ends the walk.
pub fn parse_cmsgs(buf: &[u8]) -> Vec<(i32, i32, &[u8])> {
    const WORD: usize = std::mem::size_of::<usize>();
    let header = std::mem::size_of::<libc::cmsghdr>();
    let align = |n: usize| n.div_ceil(WORD) * WORD;
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = buf.get(at..at + header) {
        let len = usize::from_ne_bytes(h[..WORD].try_into().unwrap_or([0; WORD]));
        let level = i32::from_ne_bytes(h[WORD..WORD + 4].try_into().unwrap_or([0; 4]));
        let kind = i32::from_ne_bytes(h[WORD + 4..WORD + 8].try_into().unwrap_or([0; 4]));
        if len < header {
            break;
        }
        // A length past the buffer ends the walk; checked, since it may be near usize::MAX
        // (found by fuzzing). Once `data` is in the buffer, `len` is small: `align` is safe.
        let Some(data) = at
            .checked_add(len)
            .and_then(|end| buf.get(at + align(header)..end))
        else {
            break;
        };
        out.push((level, kind, data));
        at += align(len);
    }
    out
}

/// One `recvmsg(MSG_ERRQUEUE | MSG_DONTWAIT)` on `fd`: (data length, control length, the
/// destination of the packet the error is about), or WouldBlock when the queue is empty.
pub(crate) fn recv_errqueue(
    fd: &impl AsRawFd,
    data: &mut [u8],
    control: &mut [u8],
) -> io::Result<(usize, usize, Option<IpAddr>)> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: sockaddr_storage and msghdr are plain data; zeroed is a valid empty value.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: a live socket; name, iov and control point to buffers of the given lengths
    // that outlive the call.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &raw mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0).min(data.len());
    // size_t on glibc, socklen_t on musl.
    #[allow(clippy::useless_conversion)]
    let c = usize::try_from(msg.msg_controllen)
        .unwrap_or(0)
        .min(control.len());
    let dest = match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage, which
            // is large and aligned enough for it.
            let sin = unsafe { &*(&raw const name).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let sin6 = unsafe { &*(&raw const name).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    };
    Ok((n, c, dest))
}

/// The `IP_RECVERR` / `IPV6_RECVERR` report among the control messages, if any.
pub(crate) fn extended_err(control: &[u8]) -> Option<ExtendedErr> {
    parse_cmsgs(control)
        .into_iter()
        .find_map(|(level, kind, data)| {
            let ours = (level == libc::IPPROTO_IP && kind == libc::IP_RECVERR)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_RECVERR);
            ours.then(|| ExtendedErr::parse(data)).flatten()
        })
}

/// `recv_from` takes `MaybeUninit` bytes; an initialised buffer is a valid one.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: same layout; recv only writes initialised bytes into it, and u8 has no invalid
    // values, so the buffer stays initialised.
    unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [std::mem::MaybeUninit<u8>]) }
}
