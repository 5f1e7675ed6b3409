//! What the three Don't-Fragment probers (raw IPv4 in [`crate::pmtu`], raw IPv6 in
//! [`crate::pmtu6`], datagram in [`crate::pmtu_dgram`]) share: the probe's result, the send that
//! can already decide it, and the socket mode that makes a probe mean "this size fits the path".

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::classify::io_error;
use crate::sockopt::{set_icmp_filter, set_int};
use meshprobe_core::model::ErrorClass;
use meshprobe_core::mtu::MtuOutcome;

/// What one DF probe found, and how long the answer took (replies and ICMP errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtuProbe {
    pub outcome: MtuOutcome,
    pub rtt: Option<Duration>,
}

impl PmtuProbe {
    pub(crate) fn at_once(outcome: MtuOutcome) -> PmtuProbe {
        PmtuProbe { outcome, rtt: None }
    }
}

/// Send one probe to `dest`, waiting until the socket takes it; the time it left. `Err` when
/// the send already decides the probe: no packet (`size` cannot be built) or another local
/// error → `Failed`, EMSGSIZE (above the egress device's MTU) → `LocalTooBig`. Shared by the
/// raw IPv4 / IPv6 and datagram probers.
pub(crate) async fn send_probe(
    socket: &AsyncFd<Socket>,
    packet: Option<&[u8]>,
    size: u32,
    dest: IpAddr,
) -> Result<Instant, MtuOutcome> {
    let packet = packet.ok_or_else(|| {
        MtuOutcome::Failed(ErrorClass::LocalError {
            detail: format!("cannot build a {size}-byte probe to {dest}"),
        })
    })?;
    let to = SockAddr::from(std::net::SocketAddr::new(dest, 0));
    let sent_at = Instant::now();
    loop {
        let mut guard = socket
            .writable()
            .await
            .map_err(|e| MtuOutcome::Failed(io_error(&e)))?;
        match guard.try_io(|s| s.get_ref().send_to(packet, &to)) {
            Ok(Ok(_)) => return Ok(sent_at),
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                return Err(MtuOutcome::LocalTooBig)
            }
            Ok(Err(e)) => return Err(MtuOutcome::Failed(io_error(&e))),
            Err(_would_block) => continue,
        }
    }
}

/// Don't-Fragment without the kernel's cached path MTU: `IP_PMTUDISC_PROBE`, or for IPv6
/// `IPV6_PMTUDISC_PROBE` and `IPV6_DONTFRAG` (the local stack may not fragment either).
pub(crate) fn set_probe_mode(socket: &Socket, v6: bool) -> io::Result<()> {
    if v6 {
        set_int(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )?;
        set_int(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_DONTFRAG,
            1,
        )
    } else {
        set_int(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    }
}

/// Open one raw DF probe socket: ICMP (`v6 = false`) or ICMPv6, non-blocking, in probe mode,
/// passing only the `wanted` ICMP types (best effort: without the filter the prober reads and
/// drops more packets, with the same results).
pub(crate) fn open_raw_socket(v6: bool, wanted: &[u8]) -> io::Result<Socket> {
    let socket = probe_socket(v6, Type::RAW)?;
    if let Err(e) = set_icmp_filter(socket.as_raw_fd(), v6, wanted) {
        tracing::debug!(error = %e, v6, "no ICMP type filter on the path-MTU socket");
    }
    Ok(socket)
}

/// A new ICMP (`v6 = false`) or ICMPv6 socket of type `ty` (raw or datagram), non-blocking, in
/// probe mode ([`set_probe_mode`]).
pub(crate) fn probe_socket(v6: bool, ty: Type) -> io::Result<Socket> {
    let socket = if v6 {
        Socket::new(Domain::IPV6, ty, Some(Protocol::ICMPV6))?
    } else {
        Socket::new(Domain::IPV4, ty, Some(Protocol::ICMPV4))?
    };
    socket.set_nonblocking(true)?;
    set_probe_mode(&socket, v6)?;
    Ok(socket)
}
