//! The per-source checks' settings (`--dns-name`, `--dns-server`, `--service`, the API
//! server's) and the parsers of their values; `config` reads the flags and names them in
//! errors.

use std::net::SocketAddr;

use crate::config::apiserver::ApiserverConfig;

/// The per-source checks: one name resolved and one Service VIP connected to, every interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChecksConfig {
    /// `--dns-name`, absolute (ends in a dot); `None`: no `dns` check.
    pub dns_name: Option<String>,
    /// `--dns-server`; `None`: the name servers of `/etc/resolv.conf`.
    pub dns_server: Option<SocketAddr>,
    /// `--service`: a ClusterIP and port answering `GET /ping`; `None`: no fixed address.
    pub service: Option<SocketAddr>,
    /// Under Kubernetes discovery without `--service`: the Service whose ClusterIP the
    /// `service` check connects to, read from the API (`--service-name`); `None`: none read.
    pub service_lookup: Option<ServiceRef>,
    /// The `apiserver` and `apiserver_endpoints` checks (`--apiserver`,
    /// `--apiserver-endpoints`, `--apiserver-ca`); `None`: both off.
    pub apiserver: Option<ApiserverConfig>,
}

/// A Service by namespace and name (`--service-name` in the agents' namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The agents' Service in deploy/base/service.yaml: its cluster name is the `dns` check's
/// default under Kubernetes discovery.
pub const AGENT_SERVICE_NAME: &str = "meshprobe";

/// The agents' ClusterIP Service in deploy/base/service-vip.yaml: `--service-name`'s default.
pub const VIP_SERVICE_NAME: &str = "meshprobe-vip";

/// A Service name as `--service-name` takes it (an RFC 1035 label, what the API server
/// accepts for a Service), or the tail of an error message.
pub fn service_name(s: &str) -> std::result::Result<String, String> {
    let ok = (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: expected a Service name (lowercase letters, digits and '-', starting with a letter, at most 63 characters) or none"
        ))
    }
}

/// A DNS name as `--dns-name` takes it, made absolute (a trailing dot: one query, no search
/// list), or the tail of an error message. Letters, digits, `-` and `_` in labels of 1-63
/// characters, 253 in all: what a resolver sends, so nothing else reaches the wire.
pub fn dns_name(s: &str) -> std::result::Result<String, String> {
    let bare = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
        return Err(format!(
            "{s:?}: expected a DNS name like meshprobe.meshprobe.svc.cluster.local. (labels of letters, digits, '-' and '_', 1-63 characters each, 253 in all)"
        ));
    }
    Ok(format!("{}.", bare.to_ascii_lowercase()))
}

/// `IP` (port 53) or `IP:PORT`, or the tail of an error message.
pub fn dns_server(s: &str) -> std::result::Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(format!(
            "{s:?}: expected IP or IP:PORT of a DNS server, e.g. 10.96.0.10 or [fd00::a]:53"
        )),
    }
}

/// `IP:PORT` of a ClusterIP, or the tail of an error message.
pub fn service_addr(s: &str) -> std::result::Result<SocketAddr, String> {
    match s.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => Ok(a),
        _ => Err(format!(
            "{s:?}: expected IP:PORT of a Service's ClusterIP, e.g. 10.96.0.20:9464 or [fd00::14]:9464"
        )),
    }
}
