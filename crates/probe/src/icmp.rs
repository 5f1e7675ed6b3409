//! ICMP echo prober, on top of surge-ping.
//!
//! One surge-ping [`Client`] (one socket, one receive task) per address family, shared by every
//! probe. IPv4 prefers a RAW socket (it sees the ICMP errors routers send back, naming the router)
//! and falls back to an unprivileged DGRAM ("ping") socket, which only receives echo replies:
//! there the routers' errors come from the socket's error queue ([`crate::icmp_errq`]),
//! named the same way. IPv6 is optional.
//!
//! A probe sends `count` echo requests spaced [`echo_spacing`] apart, all in flight at once, each
//! waiting until the probe's deadline (start + timeout). How a surge-ping answer is read is pure
//! ([`classify_answer`]); so is the choice of which failure a probe reports ([`merge_error`]).
//!
//! Surge-ping facts this file relies on (0.9.1 source):
//! * waiters are keyed by (destination, identifier, sequence): two pings in flight with the same
//!   key fail with `IdenticalRequests`, hence one sequence counter per client from a random offset;
//! * on RAW sockets an ICMP error quoting our request is delivered as `Ok((packet, rtt))` whose type
//!   is not an echo reply and whose `get_source()` is the reporting router;
//! * the next-hop MTU of a "fragmentation needed" is not exposed by its packet types, so `mtu` is
//!   always `None` here;
//! * `Pinger` is three `Arc` clones: one per echo is cheap.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::Poll;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type as SockType};
use surge_ping::{Client, Config, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};
use tokio::time::Instant;

use crate::classify::{icmpv4_error, icmpv6_error, io_error, truncate};
use crate::icmp_errq::ErrQueue;
use crate::sockopt::{set_icmp_filter, set_int};
use crate::{BoxFuture, Prober};
use meshprobe_core::error::Error;
use meshprobe_core::model::{Check, ErrorClass, ProbeResult};

const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";
const SYSCTL_FIX: &str = "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"";

/// Longest gap between two echo requests of one probe.
const MAX_SPACING: Duration = Duration::from_millis(20);

/// How many fresh sequence numbers to try when surge-ping reports an identical request in flight.
const SEQ_ATTEMPTS: usize = 4;

/// Echo payloads are zeros; a size beyond what an IP packet can carry fails at send (EMSGSIZE).
static PAYLOAD: [u8; u16::MAX as usize] = [0; u16::MAX as usize];

/// ICMPv4 types a RAW socket lets through: echo reply and the errors that can quote a request.
const V4_WANTED: [u8; 6] = [0, 3, 4, 5, 11, 12];
/// ICMPv6 types a RAW socket lets through: the four error types and echo reply.
const V6_WANTED: [u8; 5] = [1, 2, 3, 4, 129];

/// One address family: its client, its sequence counter and, on a datagram socket, the reader
/// of routers' errors ([`ErrQueue`]).
struct Family {
    client: Client,
    seq: AtomicU16,
    errq: Option<ErrQueue>,
}

impl Family {
    fn new(client: Client, sock_type: SockType, v6: bool) -> Self {
        let errq = if sock_type == SockType::DGRAM {
            match ErrQueue::start(client.get_socket().get_native_sock(), v6) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::warn!(error = %e, "routers' ICMP errors on echoes will read as timeouts");
                    None
                }
            }
        } else {
            None
        };
        Family {
            client,
            seq: AtomicU16::new(rand::random()),
            errq,
        }
    }

    fn next_seq(&self) -> PingSequence {
        PingSequence(self.seq.fetch_add(1, Ordering::Relaxed))
    }
}

/// The ICMP prober. Cheap to share (`Arc<IcmpProber>`); all probes reuse its sockets.
pub struct IcmpProber {
    v4: Family,
    /// The IPv6 family, or why it could not be opened.
    v6: Result<Family, String>,
    ident: PingIdentifier,
    kind: &'static str,
}

impl fmt::Debug for IcmpProber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcmpProber")
            .field("socket_kind", &self.kind)
            .field("ident", &self.ident.0)
            .field("ipv6", &self.v6.as_ref().map(|_| "open"))
            .finish()
    }
}

impl IcmpProber {
    /// Open the ICMP sockets. Must be called inside a Tokio runtime (with I/O enabled).
    ///
    /// IPv4 is required: RAW preferred, DGRAM as fallback; when neither opens the error says what
    /// is missing (CAP_NET_RAW, or the ping sysctl and its current value). IPv6 is best effort.
    pub fn new() -> Result<IcmpProber, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Socket(
                "the ICMP prober must be created inside a Tokio runtime".into(),
            ));
        }
        let (v4, sock_type) = open_client(ICMP::V4).map_err(|e| e.into_error(false))?;
        let kind = if sock_type == SockType::RAW {
            "raw"
        } else {
            "dgram"
        };
        let v6 = match open_client(ICMP::V6) {
            Ok((client, t)) => Ok(Family::new(client, t, true)),
            Err(e) => {
                let why = e.into_error(true).to_string();
                tracing::warn!(reason = %why, "no ICMPv6 socket: ICMP probes to IPv6 addresses will fail");
                Err(truncate(&format!("no ICMPv6 socket: {why}")))
            }
        };
        Ok(IcmpProber {
            v4: Family::new(v4, sock_type, false),
            v6,
            ident: PingIdentifier(rand::random()),
            kind,
        })
    }

    /// "raw" or "dgram": the kind of the IPv4 ICMP socket (for an info metric).
    pub fn socket_kind(&self) -> &'static str {
        self.kind
    }

    async fn run(&self, check: &Check, timeout: Duration) -> ProbeResult {
        let (ip, count, size) = match check {
            Check::Icmp { ip, count, size } => (*ip, *count, *size),
            Check::Tcp { .. } | Check::Http { .. } => {
                return ProbeResult::failed(
                    0,
                    ErrorClass::LocalError {
                        detail: "the ICMP prober was handed a non-ICMP check".into(),
                    },
                )
            }
        };
        let family = match (ip, &self.v6) {
            (IpAddr::V4(_), _) => &self.v4,
            (IpAddr::V6(_), Ok(family)) => family,
            (IpAddr::V6(_), Err(why)) => {
                return ProbeResult::failed(
                    0,
                    ErrorClass::LocalError {
                        detail: why.clone(),
                    },
                )
            }
        };
        if count == 0 {
            return ProbeResult::failed(
                0,
                ErrorClass::LocalError {
                    detail: "ICMP check with a count of 0".into(),
                },
            );
        }
        let payload = &PAYLOAD[..usize::from(size).min(PAYLOAD.len())];
        let start = Instant::now();
        let deadline = start + timeout;
        let spacing = echo_spacing(timeout, count);

        let mut tally = Tally::new(count);
        if count == 1 {
            // One echo (the common low-rate setting): awaited in place, without the boxed set
            // below (two allocations a probe fewer).
            let one = self.echo(family, ip, payload, start, deadline);
            if let Ok(outcome) = tokio::time::timeout_at(deadline, one).await {
                tally.record(outcome);
            }
            return tally.finish(count);
        }
        let mut pending: Vec<Pin<Box<_>>> = (0..count)
            .map(|i| {
                let send_at = start + spacing * u32::from(i);
                Box::pin(self.echo(family, ip, payload, send_at, deadline))
            })
            .collect();
        let all = std::future::poll_fn(|cx| {
            pending.retain_mut(|echo| match echo.as_mut().poll(cx) {
                Poll::Ready(outcome) => {
                    tally.record(outcome);
                    false
                }
                Poll::Pending => true,
            });
            if pending.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        // Belt and braces: surge-ping's own timer starts after the send, which could stall.
        let _ = tokio::time::timeout_at(deadline, all).await;
        tally.finish(count)
    }

    /// One echo: wait for its send time, send, wait for the answer until the deadline.
    async fn echo(
        &self,
        family: &Family,
        ip: IpAddr,
        payload: &[u8],
        send_at: Instant,
        deadline: Instant,
    ) -> Result<Duration, ErrorClass> {
        if send_at > Instant::now() {
            tokio::time::sleep_until(send_at).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ErrorClass::Timeout);
        }
        let mut pinger = family.client.pinger(ip, self.ident).await;
        pinger.timeout(remaining);
        let mut last = ErrorClass::Timeout;
        for _ in 0..SEQ_ATTEMPTS {
            let seq = family.next_seq();
            // A datagram socket: a router's error arrives through the error queue.
            let mut routers = family.errq.as_ref().map(|q| q.wait(ip, seq.0));
            let ping = timed_ping(&mut pinger, seq, payload);
            let answer = match routers.as_mut() {
                None => ping.await,
                Some(w) => tokio::select! {
                    answer = ping => answer,
                    error = w.error() => return Err(error),
                },
            };
            match answer {
                Ok((packet, rtt)) => return read_packet(&packet, ip, rtt),
                Err(SurgeError::IdenticalRequests { .. }) => {
                    last = ErrorClass::LocalError {
                        detail: "ICMP sequence numbers exhausted for this host".into(),
                    };
                }
                Err(SurgeError::Timeout { .. }) => return Err(ErrorClass::Timeout),
                Err(SurgeError::IOError(err)) => return Err(io_error(&err)),
                Err(other) => {
                    return Err(ErrorClass::LocalError {
                        detail: truncate(&other.to_string()),
                    })
                }
            }
        }
        Err(last)
    }
}

/// `Pinger::ping` with the RTT counted from just before the send instead of just after it.
///
/// surge-ping starts its clock when `send_to` returns. On a veth or loopback path the kernel
/// delivers the request, builds the reply and queues it for us *inside* that `send_to`, so the
/// clock starts after the round trip is over and reads only the wake-up of the receive task:
/// 18 µs where iputils `ping` measured 60–100 µs on the lab. The first poll of the ping future
/// registers the waiter and sends; the time it took is added back. Where the network is real,
/// `send_to` returns at once and this adds next to nothing. (Counting to when our own task
/// wakes instead would add our scheduling delay: +40 µs measured.)
async fn timed_ping(
    pinger: &mut surge_ping::Pinger,
    seq: PingSequence,
    payload: &[u8],
) -> Result<(IcmpPacket, Duration), SurgeError> {
    let started = std::time::Instant::now();
    let mut send_took: Option<Duration> = None;
    let mut ping = std::pin::pin!(pinger.ping(seq, payload));
    let (packet, rtt) = std::future::poll_fn(|cx| {
        let r = ping.as_mut().poll(cx);
        send_took.get_or_insert_with(|| started.elapsed());
        r
    })
    .await?;
    Ok((packet, rtt + send_took.unwrap_or_default()))
}

impl Prober for IcmpProber {
    fn probe<'a>(&'a self, check: &'a Check, timeout: Duration) -> BoxFuture<'a, ProbeResult> {
        Box::pin(self.run(check, timeout))
    }
}

/// The gap between two echo requests of one probe: at most 20 ms, and small enough that the
/// last request leaves by half the timeout, so it too has time to be answered.
pub fn echo_spacing(timeout: Duration, count: u16) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    MAX_SPACING.min(timeout / (2 * u32::from(count)))
}

/// What one surge-ping answer means for the echo it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An echo reply from the probed host.
    Echo,
    /// An ICMP error about our request, reported by `from` (a router, or the host).
    Error(ErrorClass),
    /// Not an answer to our request (an echo reply from another host, an echo request): the
    /// echo counts as unanswered.
    Stray,
}

/// Read an answer: ICMP type and code, the address that sent it, and the host we probed.
/// `mtu` is the next-hop MTU of a "fragmentation needed" / "packet too big", when known.
pub fn classify_answer(
    icmp_type: u8,
    code: u8,
    source: IpAddr,
    expected: IpAddr,
    mtu: Option<u32>,
) -> Answer {
    match (expected, source) {
        (IpAddr::V4(_), IpAddr::V4(_)) => match icmp_type {
            0 if source == expected => Answer::Echo,
            0 | 8 => Answer::Stray,
            _ => Answer::Error(icmpv4_error(icmp_type, code, source, mtu)),
        },
        (IpAddr::V6(_), IpAddr::V6(_)) => match icmp_type {
            129 if source == expected => Answer::Echo,
            129 | 128 => Answer::Stray,
            _ => Answer::Error(icmpv6_error(icmp_type, code, source, mtu)),
        },
        _ => Answer::Stray,
    }
}

fn read_packet(
    packet: &IcmpPacket,
    expected: IpAddr,
    rtt: Duration,
) -> Result<Duration, ErrorClass> {
    let (icmp_type, code, source) = match packet {
        IcmpPacket::V4(p) => (
            p.get_icmp_type().0,
            p.get_icmp_code().0,
            IpAddr::V4(p.get_source()),
        ),
        IcmpPacket::V6(p) => (
            p.get_icmpv6_type().0,
            p.get_icmpv6_code().0,
            IpAddr::V6(p.get_source()),
        ),
    };
    // surge-ping's packet types do not carry the next-hop MTU.
    match classify_answer(icmp_type, code, source, expected, None) {
        Answer::Echo => Ok(rtt),
        Answer::Error(class) => Err(class),
        Answer::Stray => Err(ErrorClass::Timeout),
    }
}

/// Which failure a probe reports: the latest, except that a timeout (the absence of an answer)
/// never hides a precise error seen earlier. Routers rate-limit their ICMP errors (about one a
/// second per destination after a burst of six on Linux), so some echoes of an unreachable host
/// time out while another got the "unreachable" that names the culprit.
pub fn merge_error(previous: Option<ErrorClass>, new: ErrorClass) -> Option<ErrorClass> {
    match (previous, new) {
        (Some(prev), ErrorClass::Timeout) if prev != ErrorClass::Timeout => Some(prev),
        (_, new) => Some(new),
    }
}

/// What the echoes of one probe found so far.
struct Tally {
    done: u16,
    rtts: Vec<Duration>,
    error: Option<ErrorClass>,
}

impl Tally {
    fn new(count: u16) -> Self {
        Tally {
            done: 0,
            rtts: Vec::with_capacity(usize::from(count)),
            error: None,
        }
    }

    fn record(&mut self, outcome: Result<Duration, ErrorClass>) {
        self.done = self.done.saturating_add(1);
        match outcome {
            Ok(rtt) => self.rtts.push(rtt),
            Err(class) => self.error = merge_error(self.error.take(), class),
        }
    }

    fn finish(mut self, count: u16) -> ProbeResult {
        if self.done < count {
            self.error = merge_error(self.error.take(), ErrorClass::Timeout);
        }
        ProbeResult {
            sent: count,
            received: u16::try_from(self.rtts.len()).unwrap_or(u16::MAX),
            rtts: self.rtts,
            phases: None,
            error: self.error,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Opening the sockets.

/// Why neither socket type opened, with both errors.
struct OpenError {
    raw: io::Error,
    dgram: io::Error,
}

impl OpenError {
    fn into_error(self, v6: bool) -> Error {
        let permission = |e: &io::Error| {
            matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
                || e.kind() == io::ErrorKind::PermissionDenied
        };
        if permission(&self.raw) || permission(&self.dgram) {
            let range = std::fs::read_to_string(PING_GROUP_RANGE);
            // SAFETY: getegid has no preconditions and cannot fail.
            let gid = unsafe { libc::getegid() };
            Error::Privilege(privilege_message(
                v6,
                &self.raw,
                &self.dgram,
                range.as_deref().map_err(|e| e.to_string()),
                gid,
            ))
        } else {
            let family = if v6 { "ICMPv6" } else { "ICMP" };
            Error::Socket(format!(
                "cannot open an {family} socket: raw: {}; datagram: {}",
                self.raw, self.dgram
            ))
        }
    }
}

/// Parse `net.ipv4.ping_group_range` ("1\t0", "0 2147483647").
pub fn parse_ping_group_range(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split_whitespace();
    let low = parts.next()?.parse().ok()?;
    let high = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((low, high))
}

/// The message of `Error::Privilege` when no ICMP socket opens: what each socket type needs,
/// what the ping sysctl holds (`range`: the file's text, or why it could not be read) against
/// the process gid, and the fixes.
pub fn privilege_message(
    v6: bool,
    raw: &io::Error,
    dgram: &io::Error,
    range: Result<&str, String>,
    gid: u32,
) -> String {
    let family = if v6 { "ICMPv6" } else { "ICMP" };
    let sysctl = match range {
        Ok(text) => match parse_ping_group_range(text) {
            Some((low, high)) if low <= gid && gid <= high => format!(
                "net.ipv4.ping_group_range is \"{low} {high}\", which includes the process gid {gid}, \
                 yet the socket failed"
            ),
            Some((low, high)) => format!(
                "net.ipv4.ping_group_range is \"{low} {high}\", which does not include the process gid {gid}"
            ),
            None => format!(
                "net.ipv4.ping_group_range is {:?} (unreadable), process gid {gid}",
                text.trim()
            ),
        },
        Err(why) => format!("cannot read {PING_GROUP_RANGE} ({why}), process gid {gid}"),
    };
    format!(
        "cannot open an {family} socket. Raw socket: {raw}: needs CAP_NET_RAW (add NET_RAW to the \
         container's securityContext.capabilities). Datagram socket: {dgram}: {sysctl}. Fix: grant \
         CAP_NET_RAW, or run `{SYSCTL_FIX}` (Kubernetes allows it as a safe pod sysctl: \
         securityContext.sysctls)"
    )
}

/// Open a surge-ping client for `kind`, RAW first then DGRAM. On failure, report both errors.
fn open_client(kind: ICMP) -> Result<(Client, SockType), OpenError> {
    let config = Config::builder()
        .kind(kind)
        .sock_type_hint(SockType::RAW)
        .build();
    match Client::new(&config) {
        Ok(client) => {
            let socket = client.get_socket();
            let sock_type = socket.get_type();
            if sock_type == SockType::RAW {
                install_icmp_filter(socket.get_native_sock(), kind);
            }
            grow_receive_buffer(socket.get_native_sock());
            Ok((client, sock_type))
        }
        Err(_) => {
            // Open both types again to learn why each failed (surge-ping reports one error).
            let (domain, proto) = match kind {
                ICMP::V4 => (Domain::IPV4, Protocol::ICMPV4),
                ICMP::V6 => (Domain::IPV6, Protocol::ICMPV6),
            };
            let raw = Socket::new(domain, SockType::RAW, Some(proto)).err();
            let dgram = Socket::new(domain, SockType::DGRAM, Some(proto)).err();
            let other = || io::Error::other("opened on retry, failed inside surge-ping");
            Err(OpenError {
                raw: raw.unwrap_or_else(other),
                dgram: dgram.unwrap_or_else(other),
            })
        }
    }
}

/// One socket receives the replies of every probe: ask for 1 MiB of receive buffer (the kernel
/// caps it at net.core.rmem_max) so a burst of replies is not dropped. Best effort.
fn grow_receive_buffer(fd: std::os::fd::RawFd) {
    if let Err(e) = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20) {
        tracing::debug!(error = %e, "could not grow the ICMP receive buffer");
    }
}

/// A RAW ICMP socket receives a copy of every ICMP packet the host gets, including the echo
/// requests of every peer probing us: let the kernel drop the types we never match. Best effort.
fn install_icmp_filter(fd: std::os::fd::RawFd, kind: ICMP) {
    let (v6, wanted): (bool, &[u8]) = match kind {
        ICMP::V4 => (false, &V4_WANTED),
        ICMP::V6 => (true, &V6_WANTED),
    };
    if let Err(e) = set_icmp_filter(fd, v6, wanted) {
        tracing::warn!(
            error = %e,
            "could not install the ICMP type filter on the raw socket (more wake-ups, same results)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockopt::icmp_filter_mask;
    use std::net::Ipv4Addr;

    // ---- pure -------------------------------------------------------------------------------

    #[test]
    fn spacing_is_at_most_20ms_and_leaves_half_the_timeout() {
        let ms = Duration::from_millis;
        assert_eq!(echo_spacing(ms(1000), 3), ms(20));
        assert_eq!(echo_spacing(ms(100), 3), Duration::from_nanos(16_666_666));
        assert_eq!(echo_spacing(ms(100), 1), ms(20));
        assert_eq!(echo_spacing(ms(10), 5), ms(1));
        assert_eq!(echo_spacing(Duration::ZERO, 3), Duration::ZERO);
        assert_eq!(echo_spacing(ms(1000), 0), Duration::ZERO);
        // The last send leaves by half the timeout, whatever the count.
        for count in 1..=u16::MAX {
            for timeout in [ms(1), ms(50), ms(1000), Duration::from_secs(30)] {
                let last = echo_spacing(timeout, count) * u32::from(count - 1);
                assert!(last <= timeout / 2, "count {count} timeout {timeout:?}");
            }
        }
    }

    #[test]
    fn answers_are_classified() {
        let host: IpAddr = "198.19.2.7".parse().unwrap();
        let gw: IpAddr = "198.19.1.1".parse().unwrap();
        let host6: IpAddr = "2001:db8::7".parse().unwrap();
        let gw6: IpAddr = "2001:db8::1".parse().unwrap();
        let table = [
            ((0, 0, host, host), Answer::Echo),
            ((0, 0, gw, host), Answer::Stray), // an echo reply from someone else
            ((8, 0, host, host), Answer::Stray), // our own request, looped back
            (
                (3, 0, gw, host),
                Answer::Error(ErrorClass::NetUnreachable { from: Some(gw) }),
            ),
            (
                (3, 1, gw, host),
                Answer::Error(ErrorClass::HostUnreachable { from: Some(gw) }),
            ),
            (
                (3, 13, gw, host),
                Answer::Error(ErrorClass::AdminProhibited { from: Some(gw) }),
            ),
            (
                (3, 4, gw, host),
                Answer::Error(ErrorClass::FragNeeded {
                    from: Some(gw),
                    mtu: None,
                }),
            ),
            (
                (11, 0, gw, host),
                Answer::Error(ErrorClass::TtlExceeded { from: Some(gw) }),
            ),
            // The host itself can report an error too (port/protocol unreachable).
            (
                (3, 3, host, host),
                Answer::Error(ErrorClass::PortUnreachable { from: Some(host) }),
            ),
            ((129, 0, host6, host6), Answer::Echo),
            ((129, 0, gw6, host6), Answer::Stray),
            ((128, 0, host6, host6), Answer::Stray),
            (
                (1, 0, gw6, host6),
                Answer::Error(ErrorClass::NetUnreachable { from: Some(gw6) }),
            ),
            (
                (2, 0, gw6, host6),
                Answer::Error(ErrorClass::FragNeeded {
                    from: Some(gw6),
                    mtu: None,
                }),
            ),
            // Mixed families can never answer each other.
            ((0, 0, host, host6), Answer::Stray),
            ((129, 0, host6, host), Answer::Stray),
        ];
        for ((t, c, source, expected), want) in table {
            assert_eq!(
                classify_answer(t, c, source, expected, None),
                want,
                "type {t} code {c} from {source} for {expected}"
            );
        }
        assert_eq!(
            classify_answer(3, 4, gw, host, Some(1400)),
            Answer::Error(ErrorClass::FragNeeded {
                from: Some(gw),
                mtu: Some(1400)
            })
        );
    }

    #[test]
    fn a_timeout_never_hides_a_precise_error() {
        let gw: IpAddr = "198.19.1.1".parse().unwrap();
        let unreachable = ErrorClass::NetUnreachable { from: Some(gw) };
        assert_eq!(
            merge_error(None, ErrorClass::Timeout),
            Some(ErrorClass::Timeout)
        );
        assert_eq!(
            merge_error(Some(unreachable.clone()), ErrorClass::Timeout),
            Some(unreachable.clone())
        );
        assert_eq!(
            merge_error(Some(ErrorClass::Timeout), unreachable.clone()),
            Some(unreachable.clone())
        );
        // Otherwise the latest wins.
        assert_eq!(
            merge_error(Some(unreachable), ErrorClass::MessageTooLong),
            Some(ErrorClass::MessageTooLong)
        );
    }

    #[test]
    fn tally_counts_loss_and_keeps_rtts() {
        let mut t = Tally::new(3);
        t.record(Ok(Duration::from_micros(50)));
        t.record(Err(ErrorClass::Timeout));
        let r = t.finish(3); // the third never finished: a timeout
        assert_eq!(r.sent, 3);
        assert_eq!(r.received, 1);
        assert_eq!(r.rtts, vec![Duration::from_micros(50)]);
        assert_eq!(r.error, Some(ErrorClass::Timeout));
        assert!(r.success());

        let mut t = Tally::new(1);
        t.record(Ok(Duration::ZERO));
        let r = t.finish(1);
        assert_eq!((r.received, r.error), (1, None));
    }

    #[test]
    fn ping_group_range_parsing() {
        assert_eq!(parse_ping_group_range("1\t0\n"), Some((1, 0)));
        assert_eq!(
            parse_ping_group_range("0 2147483647"),
            Some((0, 2147483647))
        );
        assert_eq!(parse_ping_group_range(""), None);
        assert_eq!(parse_ping_group_range("1"), None);
        assert_eq!(parse_ping_group_range("a b"), None);
        assert_eq!(parse_ping_group_range("1 2 3"), None);
    }

    #[test]
    fn privilege_message_names_what_is_missing() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        let msg = privilege_message(false, &eperm, &eacces, Ok("1\t0\n"), 1000);
        for needle in [
            "CAP_NET_RAW",
            "\"1 0\"",
            "does not include the process gid 1000",
            "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
            "safe pod sysctl",
        ] {
            assert!(msg.contains(needle), "{needle:?} missing from {msg}");
        }
        let msg = privilege_message(true, &eperm, &eacces, Ok("0 2000"), 1000);
        assert!(msg.contains("ICMPv6"), "{msg}");
        assert!(msg.contains("includes the process gid 1000"), "{msg}");
        let msg = privilege_message(false, &eperm, &eacces, Err("gone".into()), 5);
        assert!(msg.contains("cannot read /proc/sys/net/ipv4/ping_group_range (gone)"));
    }

    #[test]
    fn icmp_filter_masks_pass_only_the_wanted_types() {
        let v4: [u32; 1] = icmp_filter_mask(&V4_WANTED);
        for t in 0u8..32 {
            let dropped = v4[0] & (1 << t) != 0;
            assert_eq!(dropped, !V4_WANTED.contains(&t), "type {t}");
        }
        assert!(v4[0] & (1 << 8) != 0, "echo requests are dropped");
        let v6: [u32; 8] = icmp_filter_mask(&V6_WANTED);
        for t in 0u8..=255 {
            let dropped = v6[usize::from(t >> 5)] & (1 << (t & 31)) != 0;
            assert_eq!(dropped, !V6_WANTED.contains(&t), "type {t}");
        }
    }

    // ---- real sockets -----------------------------------------------------------------------

    /// The prober, or None (the test skips) where it lacks the privilege without root; as root
    /// it must open.
    fn prober_or_skip() -> Option<IcmpProber> {
        match IcmpProber::new() {
            Ok(p) => Some(p),
            Err(e) if crate::testnet::is_root() => panic!("as root the ICMP prober must open: {e}"),
            Err(Error::Privilege(why)) => {
                eprintln!("skipped: {why}");
                None
            }
            Err(e) => panic!("unexpected error opening the ICMP prober: {e}"),
        }
    }

    fn icmp(ip: IpAddr, count: u16, size: u16) -> Check {
        Check::Icmp { ip, count, size }
    }

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn loopback_answers_every_echo() {
        let Some(prober) = prober_or_skip() else {
            return;
        };
        assert!(["raw", "dgram"].contains(&prober.socket_kind()));
        let r = prober
            .probe(&icmp(LOOPBACK, 3, 56), Duration::from_secs(1))
            .await;
        assert_eq!((r.sent, r.received, &r.error), (3, 3, &None), "{r:?}");
        assert_eq!(r.rtts.len(), 3);
        assert!(r.success());
        if prober.socket_kind() == "raw" {
            // The kernel type filter is in place on the raw socket.
            let fd = prober.v4.client.get_socket().get_native_sock();
            let mut mask = 0u32;
            let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
            // SAFETY: a live socket fd; a u32 buffer and its length.
            let rc =
                unsafe { libc::getsockopt(fd, libc::SOL_RAW, 1, (&raw mut mask).cast(), &mut len) };
            assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            assert_eq!([mask], icmp_filter_mask::<1>(&V4_WANTED));
        }
    }

    /// CPU cost at the agent's target rate: 400 probes/s of 3 echoes to 127.0.0.1 for 10 s, on
    /// a current-thread runtime. Loopback charges the kernel's echo replies to this process
    /// too, so this is an upper bound. Run with `--ignored --nocapture`.
    #[test]
    #[ignore = "a 10 s measurement"]
    fn bench_cpu_at_400_probes_per_second() {
        /// (user, system) CPU time of this process.
        fn cpu() -> (Duration, Duration) {
            // SAFETY: getrusage fills the struct it is given.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            (tv(ru.ru_utime), tv(ru.ru_stime))
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let Some(prober) = prober_or_skip() else {
                return;
            };
            let prober = std::sync::Arc::new(prober);
            let (rate, secs) = (400u32, 10u32);
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
            let mut tasks = tokio::task::JoinSet::new();
            let mut received = 0u64;
            let mut errors = std::collections::BTreeMap::new();
            let mut tally = |r: ProbeResult| {
                received += u64::from(r.received);
                if let Some(e) = r.error {
                    *errors.entry(e.to_string()).or_insert(0u32) += 1;
                }
            };
            let (cpu0, wall0) = (cpu(), std::time::Instant::now());
            for _ in 0..rate * secs {
                tick.tick().await;
                let p = prober.clone();
                tasks.spawn(async move {
                    p.probe(&icmp(LOOPBACK, 3, 56), Duration::from_secs(1))
                        .await
                });
                while let Some(r) = tasks.try_join_next() {
                    tally(r.unwrap());
                }
            }
            while let Some(r) = tasks.join_next().await {
                tally(r.unwrap());
            }
            let ((user1, sys1), wall) = (cpu(), wall0.elapsed());
            let (user, sys) = (user1 - cpu0.0, sys1 - cpu0.1);
            eprintln!(
                "{} probes in {wall:?}: user {user:?} + sys {sys:?} = {:.2}% of one core; \
                 {received} echoes answered, {:.1} µs CPU per echo; errors {errors:?}",
                rate * secs,
                100.0 * (user + sys).as_secs_f64() / wall.as_secs_f64(),
                (user + sys).as_secs_f64() * 1e6 / f64::from(rate * secs * 3),
            );
        });
    }

    #[tokio::test]
    async fn ipv6_loopback_answers_or_names_why_not() {
        let Some(prober) = prober_or_skip() else {
            return;
        };
        let r = prober
            .probe(&icmp("::1".parse().unwrap(), 2, 56), Duration::from_secs(1))
            .await;
        match &prober.v6 {
            Ok(_) => assert_eq!((r.received, &r.error), (2, &None), "{r:?}"),
            Err(_) => assert_eq!(r.error.as_ref().map(|e| e.label()), Some("local_error")),
        }
    }

    #[tokio::test]
    async fn other_checks_are_local_errors() {
        let Some(prober) = prober_or_skip() else {
            return;
        };
        let tcp = Check::Tcp {
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let r = prober.probe(&tcp, Duration::from_secs(1)).await;
        assert_eq!(r.sent, 0);
        assert_eq!(r.error.as_ref().map(|e| e.label()), Some("local_error"));
        let r = prober
            .probe(&icmp(LOOPBACK, 0, 56), Duration::from_secs(1))
            .await;
        assert_eq!(r.error.as_ref().map(|e| e.label()), Some("local_error"));
    }

    #[tokio::test]
    async fn an_oversized_echo_is_message_too_long() {
        let Some(prober) = prober_or_skip() else {
            return;
        };
        let start = std::time::Instant::now();
        let r = prober
            .probe(&icmp(LOOPBACK, 2, u16::MAX), Duration::from_secs(1))
            .await;
        assert_eq!(r.received, 0);
        assert_eq!(r.error, Some(ErrorClass::MessageTooLong), "{r:?}");
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    /// Hundreds of probes in flight, the same host on several "layers" at once: no
    /// `IdenticalRequests`, every echo answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_probes_to_one_host_do_not_collide() {
        let Some(prober) = prober_or_skip() else {
            return;
        };
        let prober = std::sync::Arc::new(prober);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let p = prober.clone();
            tasks.spawn(async move {
                p.probe(&icmp(LOOPBACK, 3, 56), Duration::from_secs(2))
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            let r = r.unwrap();
            assert_eq!((r.received, &r.error), (3, &None), "{r:?}");
        }
    }

    // ---- network namespaces -----------------------------------------------------------------

    use crate::testnet::{drop_cap_net_raw, in_netns, ipn, ns_sh, skip_reason, TestNetns};

    /// A, the prober's namespace, joined to a router R by a veth. A routes 198.18.251-255.x via
    /// R. In R: no route to .251 (net unreachable), `prohibit` .252, `blackhole` .253 (silence),
    /// `unreachable` .254 (host unreachable), .255 via a dummy link of MTU 1280 (frag needed).
    /// R forwards and does not rate-limit ICMP errors. Returns (lab, A).
    fn two_namespaces(tag: &str) -> Option<(TestNetns, String)> {
        if let Some(why) = skip_reason(&["ip"]) {
            eprintln!("skipped: {why}");
            return None;
        }
        let mut lab = TestNetns::new("mpt-icmp");
        let a = lab.add(&format!("{tag}-a"));
        let r = lab.add(&format!("{tag}-r"));
        ipn(&a, &format!("link add v0 type veth peer name v1 netns {r}"));
        ipn(&a, "addr add 198.18.250.2/30 dev v0");
        ipn(&r, "addr add 198.18.250.1/30 dev v1");
        for (ns, dev) in [(&a, "v0"), (&a, "lo"), (&r, "v1"), (&r, "lo")] {
            ipn(ns, &format!("link set {dev} up"));
        }
        for net in ["251", "252", "253", "254", "255"] {
            ipn(&a, &format!("route add 198.18.{net}.0/24 via 198.18.250.1"));
        }
        ipn(&r, "route add prohibit 198.18.252.0/24");
        ipn(&r, "route add blackhole 198.18.253.0/24");
        ipn(&r, "route add unreachable 198.18.254.0/24");
        // No dummy driver on this kernel: a veth pair with both ends in R is the narrow link.
        ipn(&r, "link add n0 mtu 1280 type veth peer name n1");
        ipn(&r, "link set n0 up");
        ipn(&r, "link set n1 up");
        ipn(&r, "route add 198.18.255.0/24 dev n0");
        let sysctls = "echo 1 > /proc/sys/net/ipv4/ip_forward \
                       && echo 0 > /proc/sys/net/ipv4/icmp_ratelimit";
        ns_sh(&r, sysctls);
        Some((lab, a))
    }

    fn ip4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Each probe (address, count, size), with its elapsed time.
    async fn run_all(
        prober: &IcmpProber,
        checks: &[(&str, u16, u16)],
        timeout: Duration,
    ) -> Vec<(ProbeResult, Duration)> {
        let mut out = Vec::new();
        for (ip, count, size) in checks {
            let start = std::time::Instant::now();
            let r = prober.probe(&icmp(ip4(ip), *count, *size), timeout).await;
            out.push((r, start.elapsed()));
        }
        out
    }

    /// Probes through [`two_namespaces`]' router: (address, count, size). The kernel sends at
    /// most 5 route errors (net/host unreachable, prohibited) to one source, then 1/s
    /// (net.ipv4.route.error_cost/error_burst, global sysctls we leave alone): 4 here.
    /// Frag-needed is limited by icmp_ratelimit, off in R.
    const ROUTER_CHECKS: [(&str, u16, u16); 6] = [
        ("198.18.250.1", 3, 56),
        ("198.18.251.5", 2, 56),
        ("198.18.252.5", 1, 56),
        ("198.18.253.5", 3, 56),
        ("198.18.254.5", 1, 56),
        ("198.18.255.5", 3, 1400),
    ];

    /// What [`ROUTER_CHECKS`] must read: each router error named with the router, the
    /// blackhole a timeout, each within the probe timeout; an error ends its echo at once
    /// (only the blackhole and the frag-needed path — later echoes are fragmented locally,
    /// then dropped — wait for the deadline).
    fn assert_router_errors(
        results: &[(ProbeResult, Duration)],
        timeout: Duration,
        frag_mtu: Option<u32>,
    ) {
        let router = Some(ip4("198.18.250.1"));
        let want = [
            None,
            Some(ErrorClass::NetUnreachable { from: router }),
            Some(ErrorClass::AdminProhibited { from: router }),
            Some(ErrorClass::Timeout),
            Some(ErrorClass::HostUnreachable { from: router }),
            Some(ErrorClass::FragNeeded {
                from: router,
                mtu: frag_mtu,
            }),
        ];
        assert_eq!(results.len(), want.len());
        for ((r, elapsed), want) in results.iter().zip(want) {
            assert_eq!(r.error, want, "{r:?}");
            assert!(
                *elapsed < timeout + Duration::from_millis(250),
                "{r:?} took {elapsed:?}"
            );
        }
        assert_eq!(results[0].0.received, 3);
        assert!(results[1..].iter().all(|(r, _)| r.received == 0));
        for i in [1, 2, 4] {
            assert!(
                results[i].1 < Duration::from_millis(500),
                "{:?}",
                results[i]
            );
        }
    }

    /// With a RAW socket the router's ICMP errors come back named, with the router as `from`;
    /// a silent drop is a timeout that ends within the probe timeout.
    #[test]
    fn netns_raw_socket_names_router_errors() {
        let Some((_lab, a)) = two_namespaces("raw") else {
            return;
        };
        let timeout = Duration::from_secs(1);
        let (kind, results) = in_netns(
            &a,
            || {},
            move || async move {
                let prober = IcmpProber::new().expect("root opens a raw socket");
                (
                    prober.socket_kind(),
                    run_all(&prober, &ROUTER_CHECKS, timeout).await,
                )
            },
        );
        assert_eq!(kind, "raw");
        // surge-ping's packet types do not carry a frag-needed's next-hop MTU.
        assert_router_errors(&results, timeout, None);
    }

    /// Without CAP_NET_RAW and with the ping sysctl open, the prober falls back to a datagram
    /// socket, and routers' errors still come back named (from the socket's error queue): the
    /// raw socket's table, with the next-hop MTU of the frag-needed known here too.
    #[test]
    fn netns_dgram_fallback_names_router_errors_too() {
        let Some((_lab, a)) = two_namespaces("dgram") else {
            return;
        };
        ns_sh(
            &a,
            "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range",
        );
        let timeout = Duration::from_secs(1);
        let (kind, results, left) = in_netns(&a, drop_cap_net_raw, move || async move {
            let prober = IcmpProber::new().expect("the sysctl allows a datagram socket");
            let results = run_all(&prober, &ROUTER_CHECKS, timeout).await;
            let left = prober.v4.errq.as_ref().map(|q| q.waiting());
            (prober.socket_kind(), results, left)
        });
        assert_eq!(kind, "dgram");
        // The error queue carries the frag-needed's next-hop MTU.
        assert_router_errors(&results, timeout, Some(1280));
        // Every echo unregistered itself.
        assert_eq!(left, Some(0));
    }

    /// Without CAP_NET_RAW and with the default sysctl, `new` fails with a Privilege error that
    /// says what is missing and how to fix it.
    #[test]
    fn netns_without_privilege_the_error_says_what_is_missing() {
        if let Some(why) = skip_reason(&["ip"]) {
            eprintln!("skipped: {why}");
            return;
        }
        let mut lab = TestNetns::new("mpt-icmp");
        let a = lab.add("priv");
        ns_sh(&a, "echo 1 0 > /proc/sys/net/ipv4/ping_group_range");
        let err = in_netns(&a, drop_cap_net_raw, || async { IcmpProber::new().err() });
        let Some(Error::Privilege(msg)) = err else {
            panic!("expected a Privilege error, got {err:?}");
        };
        for needle in ["CAP_NET_RAW", "\"1 0\"", "gid 0", "0 2147483647"] {
            assert!(msg.contains(needle), "{needle:?} missing from {msg}");
        }
    }
}
