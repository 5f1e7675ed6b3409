//! Socket options the probers set through libc, each in one place: integer options, the ICMP
//! type filters of raw sockets. The kernel checks every value; these wrappers only pass them.
//! Where an option is best effort, the caller decides how loudly to say it failed.

use std::io;
use std::os::fd::RawFd;

/// `setsockopt` of one `c_int` value.
pub(crate) fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: fd is a live socket of the caller's; the value is a c_int of the given length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel filter mask of a RAW ICMP socket: a set bit drops that type (Linux `ICMP_FILTER`
/// for types below 32, one bit per type; `ICMP6_FILTER` uses the same convention over 256 types).
pub fn icmp_filter_mask<const WORDS: usize>(wanted: &[u8]) -> [u32; WORDS] {
    let mut mask = [u32::MAX; WORDS];
    for &t in wanted {
        if let Some(word) = mask.get_mut(usize::from(t >> 5)) {
            *word &= !(1u32 << (t & 31));
        }
    }
    mask
}

/// Let a raw ICMP (`v6 = false`) or ICMPv6 socket pass only the `wanted` message types: the
/// kernel then drops the rest (every echo request a probed host receives, for one) before they
/// wake us. Linux `ICMP_FILTER` at `SOL_RAW` covers types below 32; `ICMPV6_FILTER` at
/// `IPPROTO_ICMPV6` all 256.
pub fn set_icmp_filter(fd: RawFd, v6: bool, wanted: &[u8]) -> io::Result<()> {
    // <linux/icmp.h> ICMP_FILTER; <linux/icmpv6.h> ICMPV6_FILTER: both 1, at different levels.
    const FILTER: libc::c_int = 1;
    let v4_mask: [u32; 1];
    let v6_mask: [u32; 8];
    let (level, mask): (libc::c_int, &[u32]) = if v6 {
        v6_mask = icmp_filter_mask(wanted);
        (libc::IPPROTO_ICMPV6, &v6_mask)
    } else {
        v4_mask = icmp_filter_mask(wanted);
        (libc::SOL_RAW, &v4_mask)
    };
    // SAFETY: fd is a live socket of the caller's; the value is `mask.len()` u32s (struct
    // icmp_filter or struct icmp6_filter) and its length is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            FILTER,
            mask.as_ptr().cast(),
            std::mem::size_of_val(mask) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
