//! CAP_NET_RAW at start-up (Linux; thin I/O around one pure rule).
//!
//! The image gives the binary CAP_NET_RAW as a file capability in the **permitted** set only
//! (`setcap cap_net_raw+p`), not the effective one (`+ep`). A "+ep" binary cannot even be
//! executed when the capability is outside the bounding set — a pod with `capabilities: drop:
//! [ALL]` (Pod Security "restricted", `deploy/base`) would fail with EPERM
//! at exec. With "+p" the exec always succeeds, and the process raises the capability into
//! its effective set itself, here, when the kernel granted it (`deploy/components/raw-sockets`:
//! `add: [NET_RAW]` + `allowPrivilegeEscalation: true`); otherwise the probers fall back to
//! ICMP datagram sockets. Called before the runtime starts: threads created later inherit the
//! effective set (capabilities are per thread).

use std::io;

/// `CAP_NET_RAW` (<linux/capability.h>).
pub const CAP_NET_RAW: u32 = 13;

/// The effective set to install, when it should change: NET_RAW added when it is permitted
/// and not yet effective (pure).
pub fn raised_effective(effective: u32, permitted: u32) -> Option<u32> {
    let bit = 1u32 << CAP_NET_RAW;
    (permitted & bit != 0 && effective & bit == 0).then_some(effective | bit)
}

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

/// Raise CAP_NET_RAW into the calling thread's effective set if it is permitted. Returns
/// whether it is effective afterwards.
pub fn raise_net_raw() -> io::Result<bool> {
    let bit = 1u32 << CAP_NET_RAW;
    let (effective, _) = update(|effective, permitted| {
        (
            raised_effective(effective, permitted).unwrap_or(effective),
            permitted,
        )
    })?;
    Ok(effective & bit != 0)
}

/// Read the calling thread's (effective, permitted) sets (the first 32 capabilities), and
/// install `f`'s answer when it differs (only ever dropping, or raising within permitted:
/// the kernel refuses the rest). Returns the sets in force afterwards.
pub(crate) fn update(f: impl FnOnce(u32, u32) -> (u32, u32)) -> io::Result<(u32, u32)> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a v3 header and a two-element data array, as capget expects.
    if unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let now = (data[0].effective, data[0].permitted);
    let want = f(now.0, now.1);
    if want == now {
        return Ok(now);
    }
    (data[0].effective, data[0].permitted) = want;
    // SAFETY: the same header and data, as capset expects.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_raw_is_raised_only_when_permitted_and_not_yet_effective() {
        let raw = 1u32 << CAP_NET_RAW;
        let other = 1u32 << 10;
        // (effective, permitted, new effective)
        let table = [
            (0, 0, None),
            (0, raw, Some(raw)),
            (other, raw | other, Some(raw | other)),
            (raw, raw, None),
            (0, other, None),
            (other, other, None),
        ];
        for (eff, prm, want) in table {
            assert_eq!(raised_effective(eff, prm), want, "{eff:#x} {prm:#x}");
        }
    }
}
