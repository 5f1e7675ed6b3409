//! `POST /api/v1/probe` requests: parse the body (`parse`) and validate it against what this
//! agent knows (`validate`: peer set, allowed CIDRs). Pure: bytes and data in, a [`Plan`] or a
//! [`Refusal`] out. Nothing is sent for a request this module refuses.

mod parse;
mod spec;
mod validate;

pub use parse::{
    body, parse_body, parse_dns_server, parse_target, ProbeRequest, RawCheck, TargetSpec,
    DNS_PREFIX, MAX_BODY_BYTES, MAX_CHECKS, MAX_ECHOES_PER_REQUEST, MAX_ICMP_COUNT, MAX_ICMP_SIZE,
    MAX_PATH_LEN, MAX_TARGET_LEN, SVC_PREFIX,
};
pub use spec::{CheckSpec, Refusal, OUTCOMES};
pub use validate::{
    derived_cidrs, fenced, owner_of, precheck, validate, Context, ContextCheck, Plan, Resolved,
    ResolvedPod, ResolvedService, Source, CONTEXT_ECHOES,
};

#[cfg(test)]
mod family_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Cidr;
    use crate::peers::parse;

    pub(super) const SET: &str = "peers:\n  - {node: node-1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, zone: zone-a, port: 9464, pod_cidrs: [198.19.1.0/24]}\n  - {node: node-2, node_ip: 198.18.2.12, pod_ip: 198.19.2.10, zone: zone-b, pod_cidrs: [198.19.2.0/26, 198.19.9.64/26]}\ntargets:\n  - {name: web-1, ip: 198.19.1.11, port: 8080, protocol: http}\n";

    pub(super) fn plan(body: &str, extra: &[&str]) -> Result<Plan, Refusal> {
        let set = parse(SET).unwrap();
        let extra: Vec<Cidr> = extra.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        let req = parse_body(body.as_bytes())?;
        validate(
            &req,
            &Context {
                me: "node-1",
                peers: &set,
                extra_allowed: &extra,
                default_port: 9000,
                pod: None,
                service: None,
                also: None,
            },
        )
    }

    #[test]
    fn every_refusal_reason() {
        let big = format!(
            r#"{{"target":"198.19.1.11","pad":"{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        let many = format!(
            r#"{{"target":"198.19.1.11","checks":[{}]}}"#,
            [r#"{"kind":"mtu"}"#; MAX_CHECKS + 1].join(",")
        );
        // (body, status, code, part of the message)
        let table: &[(&str, u16, &str, &str)] = &[
            ("", 400, "bad_request", "not JSON"),
            ("[1]", 400, "bad_request", "expected a JSON object"),
            (r#"{"checks":[]}"#, 400, "bad_request", "target: missing"),
            (r#"{"target":""}"#, 400, "bad_request", "must not be empty"),
            (
                r#"{"target":"198.19.1.11","color":"red"}"#,
                400,
                "bad_request",
                "unknown field \"color\"",
            ),
            (r#"{"target":"1.2.3"}"#, 400, "bad_request", "not an IP"),
            (
                r#"{"target":"198.19.1.11:0"}"#,
                400,
                "bad_request",
                "port must be 1-65535",
            ),
            (
                r#"{"target":"pod/ns"}"#,
                400,
                "bad_request",
                "expected pod/NAMESPACE/NAME",
            ),
            (r#"{"target":"pod/ns/a b"}"#, 400, "bad_request", "pod name"),
            (
                r#"{"target":"node 1"}"#,
                400,
                "bad_request",
                "as a node name",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[]}"#,
                400,
                "bad_request",
                "checks: empty",
            ),
            (
                r#"{"target":"198.19.1.11","checks":{}}"#,
                400,
                "bad_request",
                "checks: expected a list",
            ),
            (
                r#"{"target":"198.19.1.11","checks":["icmp"]}"#,
                400,
                "bad_request",
                "checks[0]: expected an object",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"count":3}]}"#,
                400,
                "bad_request",
                "checks[0].kind: missing",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"udp"}]}"#,
                400,
                "bad_request",
                "\"udp\" is not a check",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","count":0}]}"#,
                400,
                "bad_request",
                "checks[0].count: 0 is out of range (1-14)",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","count":15}]}"#,
                400,
                "bad_request",
                "checks[0].count: 15 is out of range",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","count":"3"}]}"#,
                400,
                "bad_request",
                "expected a whole number",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","size":9000}]}"#,
                400,
                "bad_request",
                "checks[0].size: 9000 is out of range",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp","ttl":1}]}"#,
                400,
                "bad_request",
                "checks[0]: unknown field \"ttl\"",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"tcp","port":70000}]}"#,
                400,
                "bad_request",
                "checks[0].port: 70000 is out of range",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"icmp"},{"kind":"tcp"}]}"#,
                400,
                "bad_request",
                "checks[1].port: tcp needs a port",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"http","port":80,"path":"healthz"}]}"#,
                400,
                "bad_request",
                "checks[0].path: must start with '/'",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"http","port":80,"path":"/a b"}]}"#,
                400,
                "bad_request",
                "printable ASCII",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"http","port":80,"path":"/he`-lthz"}]}"#,
                400,
                "bad_request",
                "printable ASCII",
            ),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"mtu","size":1}]}"#,
                400,
                "bad_request",
                "unknown field \"size\"",
            ),
            (&many, 400, "bad_request", "5 given, at most 4"),
            (
                r#"{"target":"198.19.1.11","checks":[{"kind":"mtu"},{"kind":"icmp"},{"kind":"mtu"}]}"#,
                400,
                "bad_request",
                "checks[2]: a second mtu check; one check of each kind per request",
            ),
            (
                r#"{"target":"198.19.1.11:80","checks":[{"kind":"tcp"},{"kind":"tcp","port":22}]}"#,
                400,
                "bad_request",
                "checks[1]: a second tcp check",
            ),
            (
                r#"{"target":"198.19.1.11","from":[]}"#,
                400,
                "bad_request",
                "from: empty",
            ),
            (
                r#"{"target":"198.19.1.11","from":"node-2"}"#,
                400,
                "bad_request",
                "from: expected a list",
            ),
            (
                r#"{"target":"198.19.1.11","from":[7]}"#,
                400,
                "bad_request",
                "from[0]: expected a node name",
            ),
            (
                r#"{"target":"198.19.1.11","from":["node-9"]}"#,
                404,
                "unknown_node",
                "from[0] \"node-9\"",
            ),
            (
                r#"{"target":"node-9"}"#,
                404,
                "unknown_node",
                "target \"node-9\"",
            ),
            (
                r#"{"target":"pod/default/web"}"#,
                501,
                "kubernetes_unavailable",
                "needs an agent running with --discovery kubernetes",
            ),
            (
                r#"{"target":"10.0.0.1"}"#,
                403,
                "target_not_allowed",
                "outside the allowed CIDRs (198.19.1.0/24, 198.19.2.0/26, 198.19.9.64/26, 198.18.1.11/32, 198.18.2.12/32)",
            ),
            (
                r#"{"target":"198.18.3.1:80"}"#,
                403,
                "target_not_allowed",
                "--allow-cidr",
            ),
            (
                r#"{"target":"0.0.0.0"}"#,
                403,
                "target_not_allowed",
                "0.0.0.0/8",
            ),
            (
                r#"{"target":"255.255.255.255"}"#,
                403,
                "target_not_allowed",
                "broadcast",
            ),
            (
                r#"{"target":"224.0.0.1"}"#,
                403,
                "target_not_allowed",
                "multicast",
            ),
            (
                r#"{"target":"[::ffff:127.0.0.1]:80"}"#,
                403,
                "target_not_allowed",
                "loopback is probed only through an --allow-cidr range inside",
            ),
            (
                r#"{"target":"pod/x/y","from":["node-2"]}"#,
                501,
                "kubernetes_unavailable",
                "pod/x/y",
            ),
            (
                r#"{"target":"svc/shop/web"}"#,
                501,
                "kubernetes_unavailable",
                "resolving Services needs an agent running with --discovery kubernetes",
            ),
            (&big, 413, "too_large", "larger than 16384 bytes"),
        ];
        for (body, status, code, part) in table {
            let r = plan(body, &[]).expect_err(body);
            assert_eq!((r.status, r.code), (*status, *code), "{body}: {r:?}");
            assert!(
                r.error.contains(part),
                "{body}: {:?} lacks {part:?}",
                r.error
            );
            assert!(OUTCOMES.contains(&r.code));
        }
        // Even an explicit --allow-cidr 0.0.0.0/0 never admits these.
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "239.1.1.1",
            "ff02::1",
            "169.254.169.254",
            "fd00:ec2::254",
            // Every spelling of a refused address is refused (canonicalised, embedded IPv4).
            "0.1.2.3",
            "169.254.170.2",
            "fd00:ec2::23",
            "fe80::1",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:0.0.0.0]:80",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1:a9fe:a9:fe00::",
            "::169.254.169.254",
            "::1",
            "127.0.0.1",
        ] {
            let r = plan(&format!(r#"{{"target":"{ip}"}}"#), &["0.0.0.0/0", "::/0"]).unwrap_err();
            assert_eq!(r.code, "target_not_allowed", "{ip}");
        }
    }
}
