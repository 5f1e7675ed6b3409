//! The `meshprobe.io/probe` pod annotation (pure): `"http:8080/healthz"`, `"tcp:5432"`, or
//! several separated by commas (`"tcp:5432,http:8080/ready"`). Bad text is an error naming
//! what is wrong, never a panic; the caller logs it and reports it in the discovery status.

use crate::peers::Protocol;

pub const PROBE_ANNOTATION: &str = "meshprobe.io/probe";
/// Bounds on what one annotation may ask for.
pub const MAX_SPECS: usize = 8;
const MAX_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub protocol: Protocol,
    pub port: u16,
    /// HTTP only; `None` probes `/`.
    pub path: Option<String>,
}

pub fn parse_annotation(text: &str) -> Result<Vec<ProbeSpec>, String> {
    if text.len() > MAX_LEN {
        return Err(format!(
            "{PROBE_ANNOTATION}: longer than {MAX_LEN} characters"
        ));
    }
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() > MAX_SPECS {
        return Err(format!(
            "{PROBE_ANNOTATION}: {} entries, at most {MAX_SPECS}",
            parts.len()
        ));
    }
    let mut out: Vec<ProbeSpec> = Vec::new();
    for part in parts {
        let spec = parse_one(part).map_err(|e| format!("{PROBE_ANNOTATION} {part:?}: {e}"))?;
        if out.iter().any(|s| s.port == spec.port) {
            return Err(format!(
                "{PROBE_ANNOTATION} {part:?}: port {} listed twice",
                spec.port
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

fn parse_one(s: &str) -> Result<ProbeSpec, String> {
    if s.is_empty() {
        return Err("empty entry (expected http:PORT[/PATH] or tcp:PORT)".into());
    }
    let (proto, rest) = s
        .split_once(':')
        .ok_or("expected PROTOCOL:PORT, e.g. http:8080/healthz or tcp:5432")?;
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "http" => Protocol::Http,
        "tcp" => Protocol::Tcp,
        other => return Err(format!("protocol {other:?}: expected http or tcp")),
    };
    let (port_s, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let port: u16 = port_s
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {port_s:?}: expected a number from 1 to 65535"))?;
    if let Some(p) = path {
        if protocol == Protocol::Tcp {
            return Err("a path is only meaningful for http".into());
        }
        if !meshprobe_core::parse::is_request_path(p) {
            return Err(format!(
                "path {p:?}: not a valid request target (printable ASCII without spaces; percent-encode the rest and ` \" < > {{ }})"
            ));
        }
    }
    Ok(ProbeSpec {
        protocol,
        port,
        path: path.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Want = &'static [(Protocol, u16, Option<&'static str>)];
        let ok: &[(&str, Want)] = &[
            (
                "http:8080/healthz",
                &[(Protocol::Http, 8080, Some("/healthz"))],
            ),
            ("tcp:5432", &[(Protocol::Tcp, 5432, None)]),
            ("HTTP:80", &[(Protocol::Http, 80, None)]),
            ("http:80/a/b?x=1", &[(Protocol::Http, 80, Some("/a/b?x=1"))]),
            (
                "tcp:5432, http:8080/ready",
                &[
                    (Protocol::Tcp, 5432, None),
                    (Protocol::Http, 8080, Some("/ready")),
                ],
            ),
        ];
        for (text, want) in ok {
            let got = parse_annotation(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: Vec<(Protocol, u16, Option<&str>)> = got
                .iter()
                .map(|s| (s.protocol, s.port, s.path.as_deref()))
                .collect();
            assert_eq!(&got, want, "{text}");
        }
        let long = format!("http:80/{}", "a".repeat(2000));
        let many = ["tcp:1"; 9].join(",");
        let bad: &[(&str, &str)] = &[
            ("", "empty entry"),
            ("8080", "expected PROTOCOL:PORT"),
            ("udp:53", "protocol \"udp\""),
            ("http:", "port \"\""),
            ("http:0", "port \"0\""),
            ("http:70000", "port \"70000\""),
            ("tcp:-1", "port \"-1\""),
            ("tcp:5432/x", "only meaningful for http"),
            ("http:80/a b", "not a valid request target"),
            ("http:80/he`-lthz", "not a valid request target"),
            ("http:80/caf\u{e9}", "percent-encode the rest"),
            ("tcp:1,", "empty entry"),
            ("tcp:1,http:1", "listed twice"),
            (&long, "longer than 1024"),
            (&many, "at most 8"),
        ];
        for (text, want) in bad {
            let e = parse_annotation(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e:?} should contain {want:?}");
            assert!(e.starts_with(PROBE_ANNOTATION), "{e}");
        }
    }
}
