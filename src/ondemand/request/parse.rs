//! The request body, parsed into a [`ProbeRequest`]: syntax and bounds only, every error
//! naming the field. Resolving the target and fencing it is `validate`'s work.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use super::spec::{CheckSpec, Refusal};
use meshprobe_core::model::IpFamilies;
use meshprobe_core::parse::validate_name;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// ICMP echoes per ICMP check, at most: with the context checks' 2 × 3 echoes, a request
/// makes each source send at most [`MAX_ECHOES_PER_REQUEST`].
pub const MAX_ICMP_COUNT: u16 = 14;
/// Echo requests one request makes each source send per family probed, at most (the ICMP
/// check and the context checks): a dual-stack target, twice this.
pub const MAX_ECHOES_PER_REQUEST: u16 = 20;
/// ICMP payload bytes, at most (a 1500-byte IPv4 packet).
pub const MAX_ICMP_SIZE: u16 = 1472;
/// Checks per request, at most: one of each kind (icmp, tcp, http, mtu), so a request holds
/// one path-MTU search at most.
pub const MAX_CHECKS: usize = 4;
/// HTTP path length, at most.
pub const MAX_PATH_LEN: usize = 256;
/// Target text length, at most.
pub const MAX_TARGET_LEN: usize = 300;

/// What the caller wrote as the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Addr {
        ip: IpAddr,
        port: Option<u16>,
    },
    Node(String),
    Pod {
        namespace: String,
        name: String,
    },
    /// `dns/NAME`: a name each source resolves (absolute, lower case).
    Dns {
        name: String,
    },
    /// `svc/NAMESPACE/NAME`: a Service's ClusterIP, looked up through Kubernetes.
    Service {
        namespace: String,
        name: String,
    },
}

/// The prefix of a name to resolve: `dns/NAME`.
pub const DNS_PREFIX: &str = "dns/";

/// The prefix of a Service target: `svc/NAMESPACE/NAME`.
pub const SVC_PREFIX: &str = "svc/";

/// `IP`, `IP:PORT` (`[v6]:PORT`), `pod/NAMESPACE/NAME`, `dns/NAME` or a node name.
pub fn parse_target(s: &str) -> Result<TargetSpec, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("target: must not be empty".into());
    }
    if s.len() > MAX_TARGET_LEN {
        return Err(format!("target: longer than {MAX_TARGET_LEN} characters"));
    }
    if let Some(rest) = s.strip_prefix("pod/") {
        let (ns, name) = rest
            .split_once('/')
            .ok_or_else(|| format!("target {s:?}: expected pod/NAMESPACE/NAME"))?;
        validate_name(ns).map_err(|e| format!("target {s:?}: namespace {e}"))?;
        validate_name(name).map_err(|e| format!("target {s:?}: pod name {e}"))?;
        return Ok(TargetSpec::Pod {
            namespace: ns.into(),
            name: name.into(),
        });
    }
    if let Some(rest) = s.strip_prefix(SVC_PREFIX) {
        let (ns, name) = rest
            .split_once('/')
            .ok_or_else(|| format!("target {s:?}: expected svc/NAMESPACE/NAME"))?;
        validate_name(ns).map_err(|e| format!("target {s:?}: namespace {e}"))?;
        validate_name(name).map_err(|e| format!("target {s:?}: Service name {e}"))?;
        return Ok(TargetSpec::Service {
            namespace: ns.into(),
            name: name.into(),
        });
    }
    if let Some(name) = s.strip_prefix(DNS_PREFIX) {
        // Only what a resolver would send: DNS name syntax, made absolute (no search list).
        let name = crate::config::dns_name(name).map_err(|e| format!("target {s:?}: name {e}"))?;
        return Ok(TargetSpec::Dns { name });
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(TargetSpec::Addr { ip, port: None });
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("target {s:?}: port must be 1-65535"));
        }
        return Ok(TargetSpec::Addr {
            ip: sa.ip(),
            port: Some(sa.port()),
        });
    }
    if s.contains(':') || s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "target {s:?}: not an IP, IP:PORT, pod/NAMESPACE/NAME, svc/NAMESPACE/NAME, dns/NAME or node name"
        ));
    }
    validate_name(s).map_err(|e| {
        format!("target {s:?}: not an IP, IP:PORT or pod/NAMESPACE/NAME, and as a node name it {e}")
    })?;
    Ok(TargetSpec::Node(s.into()))
}

/// The request as the caller sent it (syntax checked, not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub target: TargetSpec,
    pub target_text: String,
    /// `None`: the defaults (ICMP ×3, plus TCP to the target's port when it has one).
    pub checks: Option<Vec<RawCheck>>,
    pub from: Option<Vec<String>>,
    /// `family`: the address families to probe (`ipv4`, `ipv6`, `dual`); `None` (or `auto`):
    /// every family the target has.
    pub family: Option<IpFamilies>,
}

/// A check as written: ports may be missing (the target's port is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCheck {
    Icmp {
        count: u16,
        size: u16,
    },
    Tcp {
        port: Option<u16>,
    },
    Http {
        port: Option<u16>,
        path: String,
    },
    Mtu,
    /// `server`: `None` is the source agent's own resolver (its /etc/resolv.conf).
    Dns {
        server: Option<SocketAddr>,
    },
}

/// A DNS server: `IP` (port 53) or `IP:PORT`, or the tail of an error message.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(format!(
            "{s:?} is not IP or IP:PORT of a DNS server (e.g. 10.96.0.10 or [fd00::a]:53)"
        )),
    }
}

/// A check's `server` field.
fn dns_server(at: &str, v: &Value) -> Result<Option<SocketAddr>, Refusal> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => parse_dns_server(s)
            .map(Some)
            .map_err(|e| Refusal::bad(format!("{at}.server: {e}"))),
        other => Err(Refusal::bad(format!(
            "{at}.server: expected \"IP\" or \"IP:PORT\", got {other}"
        ))),
    }
}

fn field_u16(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    key: &str,
    range: std::ops::RangeInclusive<u16>,
) -> Result<Option<u16>, Refusal> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| {
                Refusal::bad(format!("{at}.{key}: expected a whole number, got {v}"))
            })?;
            let n = u16::try_from(n).ok().filter(|n| range.contains(n));
            n.map(Some).ok_or_else(|| {
                Refusal::bad(format!(
                    "{at}.{key}: {v} is out of range ({}-{})",
                    range.start(),
                    range.end()
                ))
            })
        }
    }
}

fn only_keys(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    allowed: &[&str],
) -> Result<(), Refusal> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Refusal::bad(format!(
            "{at}: unknown field {k:?} (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn parse_check(v: &Value, i: usize) -> Result<RawCheck, Refusal> {
    let at = format!("checks[{i}]");
    let obj = v.as_object().ok_or_else(|| {
        Refusal::bad(format!(
            "{at}: expected an object like {{\"kind\": \"icmp\", \"count\": 3}}"
        ))
    })?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::bad(format!("{at}.kind: missing (icmp, tcp, http, mtu or dns)")))?;
    match kind {
        "icmp" => {
            only_keys(obj, &at, &["kind", "count", "size"])?;
            let count = field_u16(obj, &at, "count", 1..=MAX_ICMP_COUNT)?.unwrap_or(3);
            let size = field_u16(obj, &at, "size", 8..=MAX_ICMP_SIZE)?.unwrap_or(56);
            Ok(RawCheck::Icmp { count, size })
        }
        "tcp" => {
            only_keys(obj, &at, &["kind", "port"])?;
            Ok(RawCheck::Tcp {
                port: field_u16(obj, &at, "port", 1..=u16::MAX)?,
            })
        }
        "http" => {
            only_keys(obj, &at, &["kind", "port", "path"])?;
            let port = field_u16(obj, &at, "port", 1..=u16::MAX)?;
            let path = match obj.get("path") {
                None | Some(Value::Null) => "/".to_string(),
                Some(Value::String(p)) => p.clone(),
                Some(other) => {
                    return Err(Refusal::bad(format!(
                        "{at}.path: expected a string, got {other}"
                    )))
                }
            };
            if !path.starts_with('/') || path.len() > MAX_PATH_LEN {
                return Err(Refusal::bad(format!(
                    "{at}.path: must start with '/' and be at most {MAX_PATH_LEN} characters"
                )));
            }
            if !meshprobe_core::parse::is_request_path(&path) {
                return Err(Refusal::bad(format!(
                    "{at}.path: only printable ASCII without spaces (percent-encode the rest)"
                )));
            }
            Ok(RawCheck::Http { port, path })
        }
        "mtu" => {
            only_keys(obj, &at, &["kind"])?;
            Ok(RawCheck::Mtu)
        }
        "dns" => {
            only_keys(obj, &at, &["kind", "server"])?;
            Ok(RawCheck::Dns {
                server: dns_server(&at, obj.get("server").unwrap_or(&Value::Null))?,
            })
        }
        other => Err(Refusal::bad(format!(
            "{at}.kind: {other:?} is not a check (icmp, tcp, http, mtu or dns)"
        ))),
    }
}

pub(super) fn raw_kind(c: &RawCheck) -> &'static str {
    match c {
        RawCheck::Icmp { .. } => "icmp",
        RawCheck::Tcp { .. } => "tcp",
        RawCheck::Http { .. } => "http",
        RawCheck::Mtu => "mtu",
        RawCheck::Dns { .. } => "dns",
    }
}

/// Parse a request body. Unknown fields are refused, every error names the field.
pub fn parse_body(body: &[u8]) -> Result<ProbeRequest, Refusal> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Refusal::new(
            413,
            "too_large",
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad(format!("request body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Refusal::bad("request body: expected a JSON object"))?;
    only_keys(obj, "request", &["target", "checks", "from", "family"])?;
    let target_text = obj
        .get("target")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Refusal::bad(
                "target: missing (an IP, IP:PORT, pod/NAMESPACE/NAME, dns/NAME or node name)",
            )
        })?
        .trim()
        .to_string();
    let target = parse_target(&target_text).map_err(Refusal::bad)?;
    let checks = match obj.get("checks") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(Refusal::bad(
                    "checks: empty; omit it for the defaults (ICMP, plus TCP to the target's port)",
                ));
            }
            if list.len() > MAX_CHECKS {
                return Err(Refusal::bad(format!(
                    "checks: {} given, at most {MAX_CHECKS}",
                    list.len()
                )));
            }
            let checks = list
                .iter()
                .enumerate()
                .map(|(i, c)| parse_check(c, i))
                .collect::<Result<Vec<_>, _>>()?;
            // One check of each kind: what a request may cost is the sum of one of each.
            for (i, c) in checks.iter().enumerate() {
                let kind = raw_kind(c);
                if checks[..i].iter().any(|d| raw_kind(d) == kind) {
                    return Err(Refusal::bad(format!(
                        "checks[{i}]: a second {kind} check; one check of each kind per request"
                    )));
                }
            }
            Some(checks)
        }
        Some(other) => {
            return Err(Refusal::bad(format!(
                "checks: expected a list, got {other}"
            )))
        }
    };
    let from = match obj.get("from") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(Refusal::bad(
                    "from: empty; omit it to probe from every node",
                ));
            }
            let mut names = Vec::new();
            for (i, n) in list.iter().enumerate() {
                let s = n
                    .as_str()
                    .ok_or_else(|| Refusal::bad(format!("from[{i}]: expected a node name")))?;
                validate_name(s).map_err(|e| Refusal::bad(format!("from[{i}] {s:?}: {e}")))?;
                if !names.iter().any(|x| x == s) {
                    names.push(s.to_string());
                }
            }
            Some(names)
        }
        Some(other) => {
            return Err(Refusal::bad(format!(
                "from: expected a list of node names, got {other}"
            )))
        }
    };
    let family = match obj.get("family") {
        None | Some(Value::Null) => None,
        Some(Value::String(w)) => match IpFamilies::parse(w) {
            Ok(IpFamilies::Auto) => None,
            Ok(f) => Some(f),
            Err(_) => {
                return Err(Refusal::bad(format!(
                    "family: {w:?} is not a family (ipv4, ipv6 or dual)"
                )))
            }
        },
        Some(other) => {
            return Err(Refusal::bad(format!(
                "family: expected \"ipv4\", \"ipv6\" or \"dual\", got {other}"
            )))
        }
    };
    Ok(ProbeRequest {
        target,
        target_text,
        checks,
        from,
        family,
    })
}

/// The request body for a plan's checks, as the CLI and forwarding agents send it. `family`
/// only when it narrows (an agent before it refuses the field; without it, every family).
pub fn body(
    target: &str,
    checks: &[CheckSpec],
    from: Option<&[String]>,
    family: Option<IpFamilies>,
) -> Value {
    let mut v = serde_json::json!({ "target": target, "checks": checks });
    if let Some(f) = from {
        v["from"] = serde_json::json!(f);
    }
    if let Some(f) = family.filter(|f| *f != IpFamilies::Auto) {
        v["family"] = serde_json::json!(f.as_str());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::super::tests::plan;
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let checks = vec![
            CheckSpec::Icmp { count: 5, size: 56 },
            CheckSpec::Http {
                port: 8080,
                path: "/x".into(),
            },
            CheckSpec::Mtu,
        ];
        let b = body("198.19.1.11", &checks, Some(&["node-2".to_string()]), None);
        let p = plan(&b.to_string(), &[]).unwrap();
        assert_eq!(p.checks, checks);
        assert_eq!(p.sources[0].node, "node-2");
    }
}
