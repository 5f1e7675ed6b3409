//! The vocabulary every module shares: what is probed (a [`Check`] against a destination on a
//! [`Layer`]), what one probe found (a [`ProbeResult`]) and how a failure is named ([`ErrorClass`]).
//!
//! Pure data: no I/O, no clocks beyond the `Instant`s carried in results.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The layer a probe exercises. One sliding window is kept per (destination, layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// ICMP echo to the destination's pod IP (the overlay / pod network).
    IcmpPod,
    /// ICMP echo to the destination's node IP (the underlay / host network).
    IcmpNode,
    /// HTTP GET over a new TCP connection.
    Http,
    /// TCP connect (handshake only).
    Tcp,
}

impl Layer {
    pub const ALL: [Layer; 4] = [Layer::IcmpPod, Layer::IcmpNode, Layer::Http, Layer::Tcp];

    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::IcmpPod => "icmp_pod",
            Layer::IcmpNode => "icmp_node",
            Layer::Http => "http",
            Layer::Tcp => "tcp",
        }
    }
}

/// A set of layers (`--layers`): which kinds of probe the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers(u8);

impl Layers {
    pub const ALL: Layers = Layers(0b1111);

    fn bit(layer: Layer) -> u8 {
        1 << (layer as u8)
    }

    pub fn contains(self, layer: Layer) -> bool {
        self.0 & Self::bit(layer) != 0
    }

    /// Parse `icmp_pod,icmp_node,http,tcp` (any non-empty subset, any order; `all`).
    pub fn parse(s: &str) -> Result<Layers, String> {
        let mut set = 0u8;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                set |= Self::ALL.0;
                continue;
            }
            let Some(layer) = Layer::ALL.into_iter().find(|l| l.as_str() == name) else {
                return Err(format!(
                    "{s:?}: unknown layer {name:?}, expected a comma-separated subset of icmp_pod, icmp_node, http, tcp (or all)"
                ));
            };
            set |= Self::bit(layer);
        }
        if set == 0 {
            return Err(format!(
                "{s:?}: no layer given, expected e.g. icmp_pod,icmp_node,http"
            ));
        }
        Ok(Layers(set))
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address family. Windows, series and findings are kept per family: the two break
/// separately (a route, a policy or a CNI that programs one family only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family of an address, IPv4-mapped IPv6 (`::ffff:a.b.c.d`) read as IPv4.
    pub fn of(ip: IpAddr) -> Family {
        if ip.to_canonical().is_ipv6() {
            Family::Ipv6
        } else {
            Family::Ipv4
        }
    }

    pub fn is_v6(self) -> bool {
        self == Family::Ipv6
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::Ipv4 => Family::Ipv6,
            Family::Ipv6 => Family::Ipv4,
        }
    }

    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--ip-family`: which families an agent probes its destinations at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamilies {
    Ipv4,
    Ipv6,
    /// Both: a destination without an address of one family is probed at the other, and the
    /// agent says so (on a dual-stack cluster that is a node or pod missing an address).
    Dual,
    /// Every family the destination has (single-stack and dual-stack clusters alike).
    #[default]
    Auto,
}

impl IpFamilies {
    /// Whether a destination's address of `family` is probed.
    pub fn wants(self, family: Family) -> bool {
        match self {
            IpFamilies::Ipv4 => family == Family::Ipv4,
            IpFamilies::Ipv6 => family == Family::Ipv6,
            IpFamilies::Dual | IpFamilies::Auto => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IpFamilies::Ipv4 => "ipv4",
            IpFamilies::Ipv6 => "ipv6",
            IpFamilies::Dual => "dual",
            IpFamilies::Auto => "auto",
        }
    }

    /// Parse `ipv4`, `ipv6`, `dual` or `auto`.
    pub fn parse(s: &str) -> Result<IpFamilies, String> {
        [
            IpFamilies::Ipv4,
            IpFamilies::Ipv6,
            IpFamilies::Dual,
            IpFamilies::Auto,
        ]
        .into_iter()
        .find(|f| f.as_str() == s.trim())
        .ok_or_else(|| format!("{s:?}: unknown IP family, expected ipv4, ipv6, dual or auto"))
    }
}

/// Whether a destination is another meshprobe agent (a peer) or a selected target pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestKind {
    Peer,
    Target,
}

impl DestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestKind::Peer => "peer",
            DestKind::Target => "target",
        }
    }
}

/// One probed destination, layer and family: the key of a sliding window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    pub kind: DestKind,
    /// Node name for a peer, target name for a target.
    pub name: String,
    pub layer: Layer,
    /// The family of the destination's pod (or target) address the probe belongs to.
    pub family: Family,
}

/// What to do for one probe. Every prober takes one of these (`meshprobe_probe::Prober`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `count` ICMP echo requests of `size` payload bytes, one after the other.
    Icmp { ip: IpAddr, count: u16, size: u16 },
    /// A TCP handshake, then close.
    Tcp { addr: SocketAddr },
    /// `GET path` on a new connection. When `expect_node` is set the answer must be a meshprobe
    /// `/ping` body naming that node (catches a recycled pod IP answering for someone else).
    Http {
        addr: SocketAddr,
        path: String,
        expect_node: Option<String>,
    },
}

impl Check {
    pub fn destination_ip(&self) -> IpAddr {
        match self {
            Check::Icmp { ip, .. } => *ip,
            Check::Tcp { addr } | Check::Http { addr, .. } => addr.ip(),
        }
    }
}

/// Per-phase timings of one TCP/HTTP probe, each measured from the probe's start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Phases {
    /// Name resolution (zero for IP literals, which is all meshprobe uses today).
    pub resolve: Duration,
    /// TCP handshake done.
    pub connect: Duration,
    /// First byte of the response head (HTTP only).
    pub first_byte: Option<Duration>,
    /// Whole exchange, body included.
    pub total: Duration,
}

/// What one probe found. A probe may send several packets (ICMP `count`), so success is
/// "at least one answer" and `sent`/`received` carry the packet-level loss.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub sent: u16,
    pub received: u16,
    /// Round-trip time of every answered packet (ICMP) or the exchange's total (TCP/HTTP).
    pub rtts: Vec<Duration>,
    pub phases: Option<Phases>,
    /// The last failure seen during this probe, if any (a probe can succeed with some loss).
    pub error: Option<ErrorClass>,
}

impl ProbeResult {
    pub fn success(&self) -> bool {
        self.received > 0 && self.error.as_ref().is_none_or(|e| !e.is_fatal())
    }

    /// A one-shot failure: nothing answered.
    pub fn failed(sent: u16, error: ErrorClass) -> Self {
        ProbeResult {
            sent,
            received: 0,
            rtts: Vec::new(),
            phases: None,
            error: Some(error),
        }
    }

    /// A one-shot success with one round-trip time.
    pub fn ok(rtt: Duration, phases: Option<Phases>) -> Self {
        ProbeResult {
            sent: 1,
            received: 1,
            rtts: vec![rtt],
            phases,
            error: None,
        }
    }
}

/// A failure, named as precisely as the evidence allows. The diagnosis engine reads these:
/// keep them exact. `from` is the address of the router that reported the failure by ICMP,
/// when one did (a gateway's "net unreachable" names the node with the bad routing table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ErrorClass {
    /// No answer within the probe timeout.
    Timeout,
    /// TCP RST in answer to SYN: nothing listening, or a reject rule.
    Refused,
    /// Connection reset after it was established.
    Reset,
    /// ICMP destination net unreachable, or ENETUNREACH from the local stack (`from` empty).
    NetUnreachable { from: Option<IpAddr> },
    /// ICMP destination host unreachable (e.g. ARP failed at the last hop), or EHOSTUNREACH.
    HostUnreachable { from: Option<IpAddr> },
    /// ICMP communication administratively prohibited (a firewall's reject).
    AdminProhibited { from: Option<IpAddr> },
    /// ICMP port/protocol unreachable.
    PortUnreachable { from: Option<IpAddr> },
    /// ICMP fragmentation needed / packet too big, with the next-hop MTU it carried.
    FragNeeded {
        from: Option<IpAddr>,
        mtu: Option<u32>,
    },
    /// EMSGSIZE: the local stack refused a packet larger than the cached path MTU.
    MessageTooLong,
    /// ICMP time exceeded (a routing loop, or a TTL too low).
    TtlExceeded { from: Option<IpAddr> },
    /// Another ICMP error we do not name more precisely.
    Icmp {
        from: Option<IpAddr>,
        icmp_type: u8,
        code: u8,
    },
    /// The HTTP exchange completed with a non-2xx status.
    HttpStatus { code: u16 },
    /// A meshprobe peer answered, but as another node (a recycled pod IP?).
    WrongPeer { expected: String, got: String },
    /// The answer broke the protocol (malformed HTTP, oversized head or body, bad JSON).
    Protocol { detail: String },
    /// No local route / address for the destination (EADDRNOTAVAIL and friends).
    LocalError { detail: String },
    /// Any other I/O error, with its OS errno when there is one.
    Io { errno: Option<i32>, detail: String },
}

impl ErrorClass {
    /// Short, bounded label for metrics (`result` label): never carries addresses or free text.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Refused => "refused",
            ErrorClass::Reset => "reset",
            ErrorClass::NetUnreachable { .. } => "net_unreachable",
            ErrorClass::HostUnreachable { .. } => "host_unreachable",
            ErrorClass::AdminProhibited { .. } => "admin_prohibited",
            ErrorClass::PortUnreachable { .. } => "port_unreachable",
            ErrorClass::FragNeeded { .. } => "frag_needed",
            ErrorClass::MessageTooLong => "message_too_long",
            ErrorClass::TtlExceeded { .. } => "ttl_exceeded",
            ErrorClass::Icmp { .. } => "icmp_other",
            ErrorClass::HttpStatus { .. } => "http_status",
            ErrorClass::WrongPeer { .. } => "wrong_peer",
            ErrorClass::Protocol { .. } => "protocol",
            ErrorClass::LocalError { .. } => "local_error",
            ErrorClass::Io { .. } => "io",
        }
    }

    /// Whether this error alone makes a probe fail even if some packet was answered.
    /// Only an ICMP probe can see both answers and errors; an HTTP status or a wrong peer is
    /// always fatal because the one answer it got was the wrong one.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ErrorClass::HttpStatus { .. }
                | ErrorClass::WrongPeer { .. }
                | ErrorClass::Protocol { .. }
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn by(f: &mut fmt::Formatter<'_>, from: &Option<IpAddr>) -> fmt::Result {
            match from {
                Some(ip) => write!(f, " (reported by {ip})"),
                None => Ok(()),
            }
        }
        match self {
            ErrorClass::Timeout => f.write_str("timeout"),
            ErrorClass::Refused => f.write_str("connection refused"),
            ErrorClass::Reset => f.write_str("connection reset"),
            ErrorClass::NetUnreachable { from } => {
                f.write_str("network unreachable")?;
                by(f, from)
            }
            ErrorClass::HostUnreachable { from } => {
                f.write_str("host unreachable")?;
                by(f, from)
            }
            ErrorClass::AdminProhibited { from } => {
                f.write_str("administratively prohibited")?;
                by(f, from)
            }
            ErrorClass::PortUnreachable { from } => {
                f.write_str("port unreachable")?;
                by(f, from)
            }
            ErrorClass::FragNeeded { from, mtu } => {
                f.write_str("fragmentation needed")?;
                if let Some(mtu) = mtu {
                    write!(f, " (next-hop MTU {mtu})")?;
                }
                by(f, from)
            }
            ErrorClass::MessageTooLong => f.write_str("message too long for the path MTU"),
            ErrorClass::TtlExceeded { from } => {
                f.write_str("time to live exceeded")?;
                by(f, from)
            }
            ErrorClass::Icmp {
                from,
                icmp_type,
                code,
            } => {
                write!(f, "ICMP type {icmp_type} code {code}")?;
                by(f, from)
            }
            ErrorClass::HttpStatus { code } => write!(f, "HTTP status {code}"),
            ErrorClass::WrongPeer { expected, got } => {
                write!(f, "answered as node {got:?}, expected {expected:?}")
            }
            ErrorClass::Protocol { detail } => write!(f, "protocol error: {detail}"),
            ErrorClass::LocalError { detail } => write!(f, "local error: {detail}"),
            ErrorClass::Io { errno, detail } => match errno {
                Some(e) => write!(f, "I/O error {e}: {detail}"),
                None => write!(f, "I/O error: {detail}"),
            },
        }
    }
}

/// The body of an agent's `GET /ping`, the endpoint its peers probe over HTTP. Naming the node
/// lets a prober notice a recycled pod IP answering for another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PingBody {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}
