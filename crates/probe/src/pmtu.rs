//! The Don't-Fragment prober that [`crate::mtu`] drives: one ICMP echo of exactly `size` bytes
//! (the IP packet: 20 IPv4 header + 8 ICMP header + payload) with DF set, within a timeout.
//!
//! Why a socket of its own: surge-ping has no DF knob and does not expose the next-hop MTU of a
//! "fragmentation needed". Here:
//!
//! * **A raw ICMPv4 socket per probe** (CAP_NET_RAW), non-blocking in a tokio [`AsyncFd`].
//!   Path-MTU probes are rare (about two a minute per destination), so a socket per probe keeps
//!   the prober stateless (no receive task, no waiter table) and its lifetime bounded by the
//!   probe's. A raw socket sees a copy of every ICMP packet the host receives: a kernel type
//!   filter passes only echo replies and the errors that can quote our request (types 0, 3,
//!   11), and each packet is matched on identifier, sequence, an 8-byte random cookie in the
//!   payload and the destination (directly for a reply, in the quoted original for an error).
//!   The socket is never `connect`ed: that would filter out the router's error.
//! * **`IP_MTU_DISCOVER = IP_PMTUDISC_PROBE`**: DF is set and the kernel's cached path MTU is
//!   ignored, so every probe asks the path again (with `IP_PMTUDISC_DO` the second oversize probe
//!   fails locally with EMSGSIZE from the cache, and a DGRAM socket never sees the router's
//!   report without `IP_RECVERR`). Only the egress device's MTU still limits the
//!   send: EMSGSIZE → [`MtuOutcome::LocalTooBig`].
//! * A router's type 3 code 4 carries the next-hop MTU in bytes 6–7 of its ICMP header →
//!   [`MtuOutcome::TooBig`] with the router as `from`.
//!
//! Without CAP_NET_RAW the prober uses ICMP datagram sockets instead
//! ([`crate::pmtu_dgram`], [`SocketKind::Datagram`]): same probes, same outcomes.
//!
//! IPv6 destinations go to [`crate::pmtu6`] (ICMPv6, `IPV6_PMTUDISC_PROBE` and
//! `IPV6_DONTFRAG`, Packet Too Big), through the same [`PmtuProber::probe`].
//!
//! [`local_mtu`] reads the expected MTU toward a destination: the egress device's, found by
//! the kernel's route lookup over netlink ([`crate::route`]).

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::classify::{io_error, truncate};
use crate::df::{open_raw_socket, send_probe, PmtuProbe};
use crate::route::{Route, RouteSocket};
use crate::wire::{Echo, Reply, MIN_PROBE_SIZE};
use crate::{pmtu6, pmtu_dgram};
use meshprobe_core::error::Error;
use meshprobe_core::model::ErrorClass;
use meshprobe_core::mtu::{MtuOutcome, MtuSearch, ProbeSize, MAX_MTU};

/// Receive buffer: the largest IP packet.
const RECV_BUF: usize = 65536;
/// ICMPv4 types the probe socket lets through: echo reply, destination unreachable, time
/// exceeded.
const WANTED: [u8; 3] = [0, 3, 11];

/// Which sockets the DF prober opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// Raw ICMP sockets (CAP_NET_RAW).
    Raw,
    /// ICMP datagram ("ping") sockets with the error queue ([`crate::pmtu_dgram`]):
    /// no capability, only `net.ipv4.ping_group_range` covering the process's group.
    Datagram,
}

impl SocketKind {
    pub fn label(self) -> &'static str {
        match self {
            SocketKind::Raw => "raw",
            SocketKind::Datagram => "datagram",
        }
    }
}

/// The DF prober. Holds no socket between probes; cheap to share.
#[derive(Debug)]
pub struct PmtuProber {
    kind: SocketKind,
}

impl PmtuProber {
    /// A prober on raw sockets when they can be opened (CAP_NET_RAW), else on ICMP datagram
    /// sockets (`net.ipv4.ping_group_range`); a Privilege error naming both fixes when neither
    /// can. Must be called inside a Tokio runtime with I/O enabled (probes need it).
    pub fn new() -> Result<PmtuProber, Error> {
        match PmtuProber::with_kind(SocketKind::Raw) {
            Ok(p) => Ok(p),
            Err(Error::Privilege(raw)) => {
                PmtuProber::with_kind(SocketKind::Datagram).map_err(|e| match e {
                    Error::Privilege(dgram) => Error::Privilege(format!(
                        "path-MTU discovery needs a raw ICMP socket or an ICMP datagram socket: {raw}; {dgram}"
                    )),
                    other => other,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A prober on exactly this kind of socket (the agent takes [`PmtuProber::new`]'s choice;
    /// tests take both).
    pub fn with_kind(kind: SocketKind) -> Result<PmtuProber, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Socket(
                "the path-MTU prober must be created inside a Tokio runtime".into(),
            ));
        }
        let opened = match kind {
            SocketKind::Raw => open_raw_socket(false, &WANTED).map(drop),
            SocketKind::Datagram => pmtu_dgram::available(false),
        };
        match (opened, kind) {
            (Ok(()), _) => Ok(PmtuProber { kind }),
            (Err(e), SocketKind::Raw)
                if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) =>
            {
                Err(Error::Privilege(format!(
                    "raw ICMP socket refused ({e}): grant CAP_NET_RAW (add NET_RAW to the \
                     container's securityContext.capabilities)"
                )))
            }
            (Err(e), SocketKind::Datagram)
                if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) =>
            {
                // SAFETY: getegid has no preconditions and cannot fail.
                let gid = unsafe { libc::getegid() };
                Err(Error::Privilege(format!(
                    "ICMP datagram socket refused ({e}): set the sysctl net.ipv4.ping_group_range \
                     to a range covering group {gid} (the pod's securityContext.sysctls)"
                )))
            }
            (Err(e), kind) => Err(Error::Socket(format!(
                "cannot open a {} ICMP socket for path-MTU discovery: {e}",
                kind.label()
            ))),
        }
    }

    /// The kind of socket the probes use.
    pub fn kind(&self) -> SocketKind {
        self.kind
    }

    /// Send one echo of exactly `size` bytes (IP packet) with Don't-Fragment to `dest`, and
    /// wait up to `timeout` for the reply or an ICMP error about it. Never panics; completes
    /// within `timeout` (plus scheduling noise).
    pub async fn probe(&self, dest: IpAddr, size: u32, timeout: Duration) -> PmtuProbe {
        let min = match dest {
            IpAddr::V4(_) => MIN_PROBE_SIZE,
            IpAddr::V6(_) => crate::wire::MIN_PROBE_SIZE_V6,
        };
        if !(min..=MAX_MTU).contains(&size) {
            return PmtuProbe::at_once(MtuOutcome::Failed(ErrorClass::LocalError {
                detail: format!("probe size {size} outside {min}..={MAX_MTU}"),
            }));
        }
        let deadline = Instant::now() + timeout;
        let exchange = async {
            match (self.kind, dest) {
                (SocketKind::Datagram, dest) => pmtu_dgram::exchange(dest, size, deadline).await,
                (SocketKind::Raw, IpAddr::V4(v4)) => self.exchange(v4, size, deadline).await,
                (SocketKind::Raw, IpAddr::V6(v6)) => pmtu6::exchange(v6, size, deadline).await,
            }
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(probe) => probe,
            Err(_) => PmtuProbe::at_once(MtuOutcome::Lost),
        }
    }

    async fn exchange(&self, dest: Ipv4Addr, size: u32, deadline: Instant) -> PmtuProbe {
        let socket = match open_raw_socket(false, &WANTED).and_then(|s| {
            // SAFETY: the socket owns its fd, which stays open and the same until the
            // AsyncFd (which owns the socket) is dropped.
            unsafe { AsyncFd::register(s) }.map_err(io::Error::from)
        }) {
            Ok(s) => s,
            Err(e) => return PmtuProbe::at_once(MtuOutcome::Failed(io_error(&e))),
        };
        let echo = Echo {
            ident: rand::random(),
            seq: rand::random(),
            cookie: rand::random(),
        };
        let sent_at =
            match send_probe(&socket, echo.build(size).as_deref(), size, IpAddr::V4(dest)).await {
                Ok(t) => t,
                Err(outcome) => return PmtuProbe::at_once(outcome),
            };
        let mut buf = vec![0u8; RECV_BUF];
        // On a raw socket an ICMP error may also surface as a pending socket error (sk_err):
        // remembered, in case the packet itself never shows up.
        let mut socket_error: Option<io::Error> = None;
        loop {
            let mut guard = match tokio::time::timeout_at(deadline, socket.readable()).await {
                Err(_elapsed) => break,
                Ok(Ok(g)) => g,
                Ok(Err(e)) => return PmtuProbe::at_once(MtuOutcome::Failed(io_error(&e))),
            };
            let n = match guard.try_io(|s| {
                let mut sock: &Socket = s.get_ref();
                sock.read(&mut buf)
            }) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    socket_error = Some(e);
                    continue;
                }
                Err(_would_block) => continue,
            };
            let Some(reply) = buf.get(..n).and_then(|p| echo.parse(p, dest)) else {
                continue;
            };
            let rtt = Some(sent_at.elapsed());
            let outcome = match reply {
                Reply::Echo => MtuOutcome::Ok,
                Reply::TooBig { from, mtu } => MtuOutcome::TooBig {
                    mtu,
                    from: Some(IpAddr::V4(from)),
                },
                Reply::Error(class) => MtuOutcome::Failed(class),
            };
            return PmtuProbe { outcome, rtt };
        }
        let outcome = match socket_error {
            Some(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => MtuOutcome::TooBig {
                mtu: None,
                from: None,
            },
            _ => MtuOutcome::Lost,
        };
        PmtuProbe::at_once(outcome)
    }
}

// ---------------------------------------------------------------------------------------------
// The expected MTU.

/// The local side of the path toward a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMtu {
    /// The source address the kernel picks for the destination.
    pub source: Option<IpAddr>,
    /// The egress device.
    pub device: Option<String>,
    /// That device's MTU.
    pub device_mtu: Option<u32>,
    /// The route's MTU metric: a configured `mtu`, or the path MTU the kernel cached from an
    /// ICMP report.
    pub route_mtu: Option<u32>,
}

impl LocalMtu {
    /// The expected path MTU: the device's, else the route's; at most 65535.
    pub fn expected(&self) -> Option<u32> {
        self.device_mtu.or(self.route_mtu).map(|m| m.min(MAX_MTU))
    }
}

/// The local interface MTU toward `dest` (no packet is sent).
///
/// The kernel's route lookup over netlink ([`crate::route`]: `RTM_GETROUTE`, as `ip
/// route get`) names the egress device, so multiple interfaces, policy routing and `src`
/// hints naming another device's address are all honoured; the device's MTU comes from
/// `RTM_GETLINK`.
///
/// Why not `getsockopt(IP_MTU)`: it returns the route's current MTU, which *includes the path
/// MTU the kernel cached from a fragmentation-needed* (for ~10 minutes) — after our own probes
/// have met a 1400 hop it says 1400, and a mismatch would look "as expected". The route's MTU
/// metric is returned as `route_mtu` for diagnosis and used only when the device's is unknown.
/// Why not `/sys/class/net/<dev>/mtu`: sysfs shows the network namespace of whoever mounted
/// it, not the caller's; netlink answers for the caller's namespace.
pub fn local_mtu(dest: IpAddr) -> io::Result<LocalMtu> {
    local_mtu_with(dest, &mut RouteCache::default())
}

/// Route lookups remembered for [`RouteCache::TTL`] per destination (at 2,000 destinations
/// checked every 30 s the lookups were most of the path-MTU driver's CPU), and the netlink
/// socket kept open between calls. The device's MTU is still read on every call.
#[derive(Default)]
pub struct RouteCache {
    known: std::collections::HashMap<IpAddr, (Route, std::time::Instant)>,
    socket: Option<RouteSocket>,
}

impl RouteCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(60);
    /// Destinations remembered at most (a bound for safety; expired entries go first).
    const MAX: usize = 8192;

    fn socket(&mut self) -> io::Result<&mut RouteSocket> {
        if self.socket.is_none() {
            self.socket = Some(RouteSocket::open()?);
        }
        Ok(self.socket.as_mut().expect("just opened"))
    }

    fn route(&mut self, dest: IpAddr, now: std::time::Instant) -> io::Result<Route> {
        if let Some((route, at)) = self.known.get(&dest) {
            if now.duration_since(*at) < Self::TTL {
                return Ok(route.clone());
            }
        }
        let route = self.ask(|s| s.route(dest))?;
        if self.known.len() >= Self::MAX {
            self.known
                .retain(|_, (_, at)| now.duration_since(*at) < Self::TTL);
            if self.known.len() >= Self::MAX {
                self.known.clear();
            }
        }
        self.known.insert(dest, (route.clone(), now));
        Ok(route)
    }

    /// One request; a socket that failed is dropped (a new one is opened next time).
    fn ask<T>(&mut self, f: impl FnOnce(&mut RouteSocket) -> io::Result<T>) -> io::Result<T> {
        let r = f(self.socket()?);
        if let Err(e) = &r {
            if e.raw_os_error().is_none() || e.kind() == io::ErrorKind::WouldBlock {
                // A timeout or a garbled answer: the socket may hold a late reply.
                self.socket = None;
            }
        }
        r
    }
}

/// [`local_mtu`] with route lookups remembered in `cache`.
pub fn local_mtu_with(dest: IpAddr, cache: &mut RouteCache) -> io::Result<LocalMtu> {
    let now = std::time::Instant::now();
    let mut route = cache.route(dest, now)?;
    let link = match cache.ask(|s| s.link(route.oif)) {
        Ok(link) => link,
        Err(_) => {
            // The device went away since the route was cached: look the route up again.
            cache.known.remove(&dest);
            route = cache.route(dest, now)?;
            cache.ask(|s| s.link(route.oif))?
        }
    };
    Ok(LocalMtu {
        source: route.source,
        device: link.name.map(|n| truncate(&n)),
        device_mtu: link.mtu,
        route_mtu: route.mtu,
    })
}

// ---------------------------------------------------------------------------------------------
// Driving a search.

/// Send the search's next probe if one is due, and feed its result back. Returns what was
/// probed, or `None` when nothing was due (sleep until [`MtuSearch::next_due`]).
pub async fn step(
    prober: &PmtuProber,
    search: &mut MtuSearch,
    dest: IpAddr,
    timeout: Duration,
) -> Option<(ProbeSize, PmtuProbe)> {
    let probe = search.next_probe(std::time::Instant::now())?;
    let result = prober.probe(dest, probe.size, timeout).await;
    search.on_result(
        probe.size,
        result.outcome.clone(),
        std::time::Instant::now(),
    );
    Some((probe, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshprobe_core::mtu::{MtuParams, MtuReport, MtuState};

    const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);

    // ---- real sockets -----------------------------------------------------------------------

    /// The prober, or None (the test skips) where it lacks the privilege without root; as root
    /// it must open.
    fn prober_or_skip() -> Option<PmtuProber> {
        match PmtuProber::new() {
            Ok(p) => Some(p),
            Err(e) if crate::testnet::is_root() => {
                panic!("as root the path-MTU prober must open: {e}")
            }
            Err(Error::Privilege(why)) => {
                eprintln!("skipped: {why}");
                None
            }
            Err(e) => panic!("unexpected error opening the path-MTU prober: {e}"),
        }
    }

    #[tokio::test]
    async fn loopback_answers_and_oversize_is_local_too_big() {
        let Some(prober) = prober_or_skip() else {
            return;
        };
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let local = local_mtu(lo).unwrap();
        assert_eq!(local.device.as_deref(), Some("lo"), "{local:?}");
        assert_eq!(local.expected(), Some(65535), "{local:?}");
        let t = Duration::from_secs(1);
        let r = prober.probe(lo, 1500, t).await;
        assert_eq!(r.outcome, MtuOutcome::Ok, "{r:?}");
        assert!(r.rtt.is_some());
        let r = prober.probe(lo, 65535, t).await;
        assert_eq!(r.outcome, MtuOutcome::Ok, "{r:?}");
        for bad in [0, 35, 65536] {
            let r = prober.probe(lo, bad, t).await;
            assert!(matches!(r.outcome, MtuOutcome::Failed(_)), "{bad}: {r:?}");
        }
        // IPv6 over loopback: the same.
        let lo6: IpAddr = "::1".parse().unwrap();
        let local6 = local_mtu(lo6).unwrap();
        assert_eq!(local6.device.as_deref(), Some("lo"), "{local6:?}");
        for size in [1280, 1500, 65535] {
            let r = prober.probe(lo6, size, t).await;
            assert_eq!(r.outcome, MtuOutcome::Ok, "{size}: {r:?}");
        }
        for bad in [0, 55, 65536] {
            let r = prober.probe(lo6, bad, t).await;
            assert!(matches!(r.outcome, MtuOutcome::Failed(_)), "{bad}: {r:?}");
        }
    }

    // ---- network namespaces: A — R — B ------------------------------------------------------

    use crate::testnet::{drop_cap_net_raw, in_netns, in_ns, ipn, ns_sh, skip_reason, TestNetns};

    /// Drive `search` until `done` says so or `limit` passes; returns the report and the time.
    async fn drive(
        prober: &PmtuProber,
        search: &mut MtuSearch,
        dest: IpAddr,
        timeout: Duration,
        limit: Duration,
        done: impl Fn(&MtuReport) -> bool,
    ) -> (MtuReport, Duration) {
        let start = std::time::Instant::now();
        while !done(&search.report()) && start.elapsed() < limit {
            if step(prober, search, dest, timeout).await.is_none() {
                let due = search.next_due();
                let now = std::time::Instant::now();
                let wait = due
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(50));
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            }
        }
        (search.report(), start.elapsed())
    }

    /// A — R — B: MTU 1500 on A–R, 1400 on R–B. From A, B's path MTU is 1400: `mismatch`
    /// (R's frag-needed names 1400); with frag-needed dropped in R, `blackhole` at 1400; with
    /// ICMP back, `mismatch` again; with R–B back at 1500, `ok` at the next check; narrowed
    /// again, `mismatch` at the next check.
    #[test]
    fn netns_mismatch_blackhole_and_recovery() {
        mismatch_blackhole_and_recovery(SocketKind::Raw, "mpt-mtu");
    }

    /// The same path, found the same way by the prober without CAP_NET_RAW (ICMP datagram
    /// sockets, the router's reports read from the error queue).
    #[test]
    fn netns_mismatch_blackhole_and_recovery_datagram() {
        mismatch_blackhole_and_recovery(SocketKind::Datagram, "mpt-mtud");
    }

    fn mismatch_blackhole_and_recovery(kind: SocketKind, prefix: &'static str) {
        if let Some(why) = skip_reason(&["ip", "iptables"]) {
            eprintln!("skipped: {why}");
            return;
        }
        let mut lab = TestNetns::new(prefix);
        let a = lab.add("a");
        let r = lab.add("r");
        let b = lab.add("b");
        ipn(&a, &format!("link add v0 type veth peer name v1 netns {r}"));
        ipn(
            &r,
            &format!("link add w0 mtu 1400 type veth peer name w1 netns {b}"),
        );
        ipn(&b, "link set w1 mtu 1400");
        ipn(&a, "addr add 198.18.20.1/30 dev v0");
        ipn(&r, "addr add 198.18.20.2/30 dev v1");
        ipn(&r, "addr add 198.18.20.5/30 dev w0");
        ipn(&b, "addr add 198.18.20.6/30 dev w1");
        for (ns, dev) in [
            (&a, "v0"),
            (&a, "lo"),
            (&r, "v1"),
            (&r, "w0"),
            (&r, "lo"),
            (&b, "w1"),
            (&b, "lo"),
        ] {
            ipn(ns, &format!("link set {dev} up"));
        }
        ipn(&a, "route add 198.18.20.4/30 via 198.18.20.2");
        ipn(&b, "route add 198.18.20.0/30 via 198.18.20.5");
        in_ns(&r, "sysctl -qw net.ipv4.ip_forward=1");
        // Datagram: ICMP echo sockets for every group in A, and no CAP_NET_RAW on the probing
        // thread (below), as in a pod without the capability.
        if kind == SocketKind::Datagram {
            ns_sh(&a, "sysctl -qw net.ipv4.ping_group_range='0 2147483647'");
        }
        // No ICMP rate limit in R: the search sends several oversize probes a second.
        in_ns(&r, "sysctl -qw net.ipv4.icmp_ratelimit=0");

        let dest = IpAddr::V4(Ipv4Addr::new(198, 18, 20, 6));
        let router = IpAddr::V4(ROUTER);
        let timeout = Duration::from_millis(200);
        let rules = [
            "FORWARD -p icmp --icmp-type fragmentation-needed -j DROP",
            "OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP",
        ];
        let (r_ns, a_ns, b_ns) = (r.clone(), a.clone(), b.clone());
        let (local, direct, reports) = in_netns(
            &a,
            move || {
                if kind == SocketKind::Datagram {
                    drop_cap_net_raw();
                }
            },
            move || async move {
                let prober = PmtuProber::with_kind(kind).expect("root opens the socket");
                assert_eq!(prober.kind(), kind);
                // What the agent would pick here.
                assert_eq!(PmtuProber::new().map(|p| p.kind()).ok(), Some(kind));
                let local = local_mtu(dest).expect("a route to B");
                let direct = [
                    prober.probe(dest, 1400, timeout).await,
                    prober.probe(dest, 1401, timeout).await,
                    prober.probe(dest, 1500, timeout).await,
                    prober.probe(dest, 1501, timeout).await,
                ];
                let params = MtuParams {
                    probe_gap: Duration::from_millis(5),
                    check_interval: Duration::from_millis(500),
                    ..MtuParams::ipv4(local.expected().expect("expected MTU"))
                };
                let mut search = MtuSearch::new(params, std::time::Instant::now());
                let limit = Duration::from_secs(20);
                let mut reports = Vec::new();
                let concluded = |r: &MtuReport| !r.searching && r.searches > 0;
                reports.push(drive(&prober, &mut search, dest, timeout, limit, concluded).await);

                // ICMP frag-needed dropped in R, caches flushed: a true black hole.
                for rule in rules {
                    in_ns(&r_ns, &format!("iptables -A {rule}"));
                }
                ipn(&a_ns, "route flush cache");
                search.restart();
                reports.push(drive(&prober, &mut search, dest, timeout, limit, concluded).await);

                // ICMP back.
                for rule in rules {
                    in_ns(&r_ns, &format!("iptables -D {rule}"));
                }
                ipn(&a_ns, "route flush cache");
                search.restart();
                reports.push(drive(&prober, &mut search, dest, timeout, limit, concluded).await);

                // The narrow link is widened: the next check's recovery probe sees it.
                ipn(&r_ns, "link set w0 mtu 1500");
                ipn(&b_ns, "link set w1 mtu 1500");
                reports.push(
                    drive(&prober, &mut search, dest, timeout, limit, |r| {
                        r.state == MtuState::Ok
                    })
                    .await,
                );

                // The narrow link is back: the next check's probe at 1500 meets R's report and a
                // new search concludes.
                ipn(&r_ns, "link set w0 mtu 1400");
                reports.push(
                    drive(&prober, &mut search, dest, timeout, limit, |r| {
                        r.state == MtuState::Mismatch
                    })
                    .await,
                );
                (local, direct, reports)
            },
        );
        eprintln!("local: {local:?}");
        assert_eq!(local.device.as_deref(), Some("v0"));
        assert_eq!(local.expected(), Some(1500));

        eprintln!("direct probes: {direct:?}");
        assert_eq!(direct[0].outcome, MtuOutcome::Ok);
        let too_big = MtuOutcome::TooBig {
            mtu: Some(1400),
            from: Some(router),
        };
        assert_eq!(direct[1].outcome, too_big);
        assert_eq!(direct[2].outcome, too_big);
        assert_eq!(direct[3].outcome, MtuOutcome::LocalTooBig);

        for (r, took) in &reports {
            eprintln!("{r:?} after {took:?}");
        }
        let got: Vec<_> = reports.iter().map(|(r, _)| (r.path_mtu, r.state)).collect();
        assert_eq!(
            got,
            [
                (Some(1400), MtuState::Mismatch),
                (Some(1400), MtuState::Blackhole),
                (Some(1400), MtuState::Mismatch),
                (Some(1500), MtuState::Ok),
                (Some(1400), MtuState::Mismatch),
            ]
        );
        // Recovery and regression are seen by the periodic check (500 ms here).
        assert!(reports[3].1 < Duration::from_secs(2), "{:?}", reports[3]);
        assert!(reports[4].1 < Duration::from_secs(2), "{:?}", reports[4]);
        assert_eq!(reports[0].0.reported_by, Some(router));
        assert_eq!(reports[0].0.expected_mtu, 1500);
    }

    /// A — R — B over IPv6 (2001:2::/48, RFC 5180's benchmarking prefix): MTU 1500 on A–R,
    /// 1400 on R–B. From A, B's path MTU is 1400, `mismatch` (R's Packet Too Big names 1400);
    /// with Packet Too Big dropped in R (ip6tables), `blackhole` at 1400.
    #[test]
    fn netns_ipv6_mismatch_and_blackhole() {
        ipv6_mismatch_and_blackhole(SocketKind::Raw, "mpt-mtu6");
    }

    /// The same over ICMPv6 datagram sockets (Packet Too Big from the error queue).
    #[test]
    fn netns_ipv6_mismatch_and_blackhole_datagram() {
        ipv6_mismatch_and_blackhole(SocketKind::Datagram, "mpt-mtu6d");
    }

    fn ipv6_mismatch_and_blackhole(kind: SocketKind, prefix: &'static str) {
        if let Some(why) = skip_reason(&["ip", "ip6tables"]) {
            eprintln!("skipped: {why}");
            return;
        }
        let mut lab = TestNetns::new(prefix);
        let a = lab.add("a");
        let r = lab.add("r");
        let b = lab.add("b");
        for ns in [&a, &r, &b] {
            // No duplicate-address detection: addresses are usable at once.
            crate::testnet::ns_sh(
                ns,
                "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
            );
        }
        ipn(&a, &format!("link add v0 type veth peer name v1 netns {r}"));
        ipn(
            &r,
            &format!("link add w0 mtu 1400 type veth peer name w1 netns {b}"),
        );
        ipn(&b, "link set w1 mtu 1400");
        ipn(&a, "addr add 2001:2:0:1::1/64 dev v0 nodad");
        ipn(&r, "addr add 2001:2:0:1::2/64 dev v1 nodad");
        ipn(&r, "addr add 2001:2:0:2::1/64 dev w0 nodad");
        ipn(&b, "addr add 2001:2:0:2::2/64 dev w1 nodad");
        for (ns, dev) in [
            (&a, "v0"),
            (&a, "lo"),
            (&r, "v1"),
            (&r, "w0"),
            (&r, "lo"),
            (&b, "w1"),
            (&b, "lo"),
        ] {
            ipn(ns, &format!("link set {dev} up"));
        }
        ipn(&a, "-6 route add 2001:2:0:2::/64 via 2001:2:0:1::2");
        ipn(&b, "-6 route add 2001:2:0:1::/64 via 2001:2:0:2::1");
        in_ns(&r, "sysctl -qw net.ipv6.conf.all.forwarding=1");
        // Datagram: ICMP echo sockets for every group in A, and no CAP_NET_RAW on the probing
        // thread (below), as in a pod without the capability.
        if kind == SocketKind::Datagram {
            ns_sh(&a, "sysctl -qw net.ipv4.ping_group_range='0 2147483647'");
        }
        // No ICMPv6 rate limit in R: the search sends several oversize probes a second.
        in_ns(&r, "sysctl -qw net.ipv6.icmp.ratelimit=0");

        let dest: IpAddr = "2001:2:0:2::2".parse().unwrap();
        let router: IpAddr = "2001:2:0:1::2".parse().unwrap();
        let timeout = Duration::from_millis(300);
        let rules = [
            "FORWARD -p icmpv6 --icmpv6-type packet-too-big -j DROP",
            "OUTPUT -p icmpv6 --icmpv6-type packet-too-big -j DROP",
        ];
        let (r_ns, a_ns) = (r.clone(), a.clone());
        let (local, direct, reports) = in_netns(
            &a,
            move || {
                if kind == SocketKind::Datagram {
                    drop_cap_net_raw();
                }
            },
            move || async move {
                let prober = PmtuProber::with_kind(kind).expect("root opens the socket");
                assert_eq!(prober.kind(), kind);
                // What the agent would pick here.
                assert_eq!(PmtuProber::new().map(|p| p.kind()).ok(), Some(kind));
                // Neighbour discovery on both links before anything is measured.
                let mut warm = prober.probe(dest, 1280, timeout).await;
                for _ in 0..20 {
                    if warm.outcome == MtuOutcome::Ok {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    warm = prober.probe(dest, 1280, timeout).await;
                }
                assert_eq!(warm.outcome, MtuOutcome::Ok, "B never answered");
                let local = local_mtu(dest).expect("a route to B");
                let direct = [
                    prober.probe(dest, 1400, timeout).await,
                    prober.probe(dest, 1401, timeout).await,
                    prober.probe(dest, 1500, timeout).await,
                    prober.probe(dest, 1501, timeout).await,
                ];
                let params = MtuParams {
                    probe_gap: Duration::from_millis(5),
                    check_interval: Duration::from_millis(500),
                    ..MtuParams::for_ip(dest, local.expected().expect("expected MTU"))
                };
                let mut search = MtuSearch::new(params, std::time::Instant::now());
                let limit = Duration::from_secs(30);
                let mut reports = Vec::new();
                let concluded = |r: &MtuReport| !r.searching && r.searches > 0;
                reports.push(drive(&prober, &mut search, dest, timeout, limit, concluded).await);

                // Packet Too Big dropped in R, cached path MTUs flushed: a true black hole.
                for rule in rules {
                    in_ns(&r_ns, &format!("ip6tables -A {rule}"));
                }
                ipn(&a_ns, "-6 route flush cache");
                search.restart();
                reports.push(drive(&prober, &mut search, dest, timeout, limit, concluded).await);
                (local, direct, reports)
            },
        );
        eprintln!("local: {local:?}");
        assert_eq!(local.device.as_deref(), Some("v0"));
        assert_eq!(local.expected(), Some(1500));
        assert_eq!(local.source, Some("2001:2:0:1::1".parse().unwrap()));

        eprintln!("direct probes: {direct:?}");
        assert_eq!(direct[0].outcome, MtuOutcome::Ok);
        let too_big = MtuOutcome::TooBig {
            mtu: Some(1400),
            from: Some(router),
        };
        assert_eq!(direct[1].outcome, too_big);
        assert_eq!(direct[2].outcome, too_big);
        assert_eq!(direct[3].outcome, MtuOutcome::LocalTooBig);

        for (r, took) in &reports {
            eprintln!("{r:?} after {took:?}");
        }
        let got: Vec<_> = reports.iter().map(|(r, _)| (r.path_mtu, r.state)).collect();
        assert_eq!(
            got,
            [
                (Some(1400), MtuState::Mismatch),
                (Some(1400), MtuState::Blackhole),
            ]
        );
        assert_eq!(reports[0].0.reported_by, Some(router));
        assert_eq!(reports[0].0.expected_mtu, 1500);
    }

    /// The egress device comes from the kernel's route lookup: a route whose `src` names
    /// another device's address, and a policy-routing rule sending one prefix out of a second
    /// device, both give that second device's MTU (the source-address guess gave the first's).
    #[test]
    fn netns_egress_device_follows_src_hints_and_policy_routing() {
        if let Some(why) = skip_reason(&["ip"]) {
            eprintln!("skipped: {why}");
            return;
        }
        let mut lab = TestNetns::new("mpt-route");
        let n = lab.add("n");
        ipn(&n, "link add a0 mtu 1500 type veth peer name a1");
        ipn(&n, "link add b0 mtu 1450 type veth peer name b1 mtu 1450");
        ipn(&n, "addr add 198.18.30.1/24 dev a0");
        ipn(&n, "addr add 198.18.31.1/24 dev b0");
        for dev in ["a0", "a1", "b0", "b1", "lo"] {
            ipn(&n, &format!("link set {dev} up"));
        }
        // A `src` hint naming a0's address on a route out of b0.
        ipn(&n, "route add 198.18.40.0/24 dev b0 src 198.18.30.1");
        // Policy routing: the main table says a0, a rule's table says b0.
        ipn(&n, "route add 198.18.41.0/24 dev a0");
        ipn(&n, "route add 198.18.41.0/24 dev b0 table 100");
        ipn(&n, "rule add to 198.18.41.0/24 table 100 priority 100");
        let got = in_netns(
            &n,
            || {},
            || async {
                let mut cache = RouteCache::default();
                ["198.18.30.7", "198.18.31.7", "198.18.40.7", "198.18.41.7"]
                    .map(|d| local_mtu_with(d.parse().unwrap(), &mut cache).unwrap())
            },
        );
        let summary: Vec<_> = got
            .iter()
            .map(|l| (l.device.as_deref(), l.expected(), l.source))
            .collect();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            summary,
            [
                (Some("a0"), Some(1500), ip("198.18.30.1")),
                (Some("b0"), Some(1450), ip("198.18.31.1")),
                (Some("b0"), Some(1450), ip("198.18.30.1")),
                (Some("b0"), Some(1450), ip("198.18.31.1")),
            ]
        );
    }
}
