//! Targets with two families: every family by default, `family` narrows, a family the target
//! lacks is refused naming the field, every address fenced, context checks per family.

use std::net::IpAddr;

use super::*;
use crate::model::Layer;
use crate::net::Cidr;
use crate::peers::parse;

const SET: &str = r#"peers:
  - {node: node-1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, node_ips: [198.18.1.11, "fd00:18:1::11"], pod_ips: [198.19.1.10, "fd00:19:1::10"], pod_cidrs: [198.19.1.0/24, "fd00:19:1::/64"]}
  - {node: node-2, node_ip: 198.18.2.12, pod_ip: 198.19.2.10, node_ips: [198.18.2.12, "fd00:18:2::12"], pod_ips: [198.19.2.10, "fd00:19:2::10"], pod_cidrs: [198.19.2.0/24, "fd00:19:2::/64"]}
  - {node: node-5, node_ip: 198.18.5.15, pod_ip: 198.19.5.10, pod_cidrs: [198.19.5.0/24]}
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A plan for `body`, with `pod` as the resolved pod (IPv4 primary, the rest of `ips`).
fn plan_with(body: &str, pod: Option<&[&str]>, also: Option<&str>) -> Result<Plan, Refusal> {
    let set = parse(SET).unwrap();
    let req = parse_body(body.as_bytes())?;
    let pod = pod.map(|ips| ResolvedPod {
        ip: ip(ips[0]),
        ips: ips.iter().map(|s| ip(s)).collect(),
        node: Some("node-2".into()),
        facts: Default::default(),
    });
    let extra: Vec<Cidr> = Vec::new();
    validate(
        &req,
        &Context {
            me: "node-1",
            peers: &set,
            extra_allowed: &extra,
            default_port: 9000,
            pod: pod.as_ref(),
            service: None,
            also: also.map(ip),
        },
    )
}

fn addrs(p: &Plan) -> Vec<String> {
    p.target.addrs().iter().map(ToString::to_string).collect()
}

/// The context checks as (layer, address).
fn context(p: &Plan) -> Vec<(Layer, String)> {
    p.context
        .iter()
        .map(|c| (c.layer, c.ip.to_string()))
        .collect()
}

#[test]
fn every_family_by_default_and_family_narrows() {
    let dual_pod: &[&str] = &["198.19.2.33", "fd00:19:2::33"];
    let pod = r#"{"target":"pod/shop/web"}"#;
    // (body, pod, the addresses probed)
    type Case<'a> = (&'a str, Option<&'a [&'a str]>, &'a [&'a str]);
    let table: &[Case] = &[
        (pod, Some(dual_pod), &["198.19.2.33", "fd00:19:2::33"]),
        (
            r#"{"target":"pod/shop/web","family":"dual"}"#,
            Some(dual_pod),
            &["198.19.2.33", "fd00:19:2::33"],
        ),
        (
            r#"{"target":"pod/shop/web","family":"auto"}"#,
            Some(dual_pod),
            &["198.19.2.33", "fd00:19:2::33"],
        ),
        (
            r#"{"target":"pod/shop/web","family":"ipv6"}"#,
            Some(dual_pod),
            &["fd00:19:2::33"],
        ),
        (
            r#"{"target":"pod/shop/web","family":"ipv4"}"#,
            Some(dual_pod),
            &["198.19.2.33"],
        ),
        // A pod listing one family once as IPv4-mapped: canonicalised, one address.
        (
            pod,
            Some(&["198.19.2.33", "::ffff:198.19.2.33"]),
            &["198.19.2.33"],
        ),
        // A node: its node IP of each family.
        (
            r#"{"target":"node-2"}"#,
            None,
            &["198.18.2.12", "fd00:18:2::12"],
        ),
        (r#"{"target":"node-5"}"#, None, &["198.18.5.15"]),
        // A bare address stays one family.
        (r#"{"target":"198.19.2.33"}"#, None, &["198.19.2.33"]),
        (
            r#"{"target":"fd00:19:2::33","family":"ipv6"}"#,
            None,
            &["fd00:19:2::33"],
        ),
    ];
    for (body, pod, want) in table {
        let p = plan_with(body, *pod, None).unwrap_or_else(|r| panic!("{body}: {r:?}"));
        assert_eq!(addrs(&p), *want, "{body}");
        assert_eq!(p.target.ip, ip(want[0]), "{body}");
        assert_eq!(p.target.dual(), want.len() == 2, "{body}");
    }
}

#[test]
fn context_checks_per_family() {
    let p = plan_with(r#"{"target":"node-2"}"#, None, None).unwrap();
    assert_eq!(
        context(&p),
        [
            (Layer::IcmpPod, "198.19.2.10".to_string()),
            (Layer::IcmpNode, "198.18.2.12".to_string()),
            (Layer::IcmpPod, "fd00:19:2::10".to_string()),
            (Layer::IcmpNode, "fd00:18:2::12".to_string()),
        ]
    );
    let p = plan_with(r#"{"target":"node-2","family":"ipv6"}"#, None, None).unwrap();
    assert_eq!(
        context(&p),
        [
            (Layer::IcmpPod, "fd00:19:2::10".to_string()),
            (Layer::IcmpNode, "fd00:18:2::12".to_string()),
        ]
    );
}

#[test]
fn a_family_the_target_lacks_is_refused_naming_the_field() {
    let v4_pod: &[&str] = &["198.19.2.33"];
    // (body, pod, what the message holds)
    type Case<'a> = (&'a str, Option<&'a [&'a str]>, &'a str);
    let table: &[Case] = &[
        (
            r#"{"target":"pod/shop/web","family":"ipv6"}"#,
            Some(v4_pod),
            "family: ipv6 asked, but target pod/shop/web has no ipv6 address (it has ipv4)",
        ),
        (
            r#"{"target":"pod/shop/web","family":"dual"}"#,
            Some(v4_pod),
            "family: dual asked, but target pod/shop/web has no ipv6 address",
        ),
        (
            r#"{"target":"node-5","family":"dual"}"#,
            None,
            "target node-5 has no ipv6 address",
        ),
        (
            r#"{"target":"198.19.2.33","family":"ipv6"}"#,
            None,
            "has no ipv6 address",
        ),
        (
            r#"{"target":"198.19.2.33","family":"both"}"#,
            None,
            "family: \"both\" is not a family (ipv4, ipv6 or dual)",
        ),
        (
            r#"{"target":"198.19.2.33","family":6}"#,
            None,
            "family: expected",
        ),
        (
            r#"{"target":"dns/web.shop","family":"ipv4"}"#,
            None,
            "family: a dns/NAME target",
        ),
    ];
    for (body, pod, part) in table {
        let r = plan_with(body, *pod, None).expect_err(body);
        assert_eq!((r.status, r.code), (400, "bad_request"), "{body}");
        assert!(
            r.error.contains(part),
            "{body}: {:?} lacks {part:?}",
            r.error
        );
    }
}

#[test]
fn every_address_is_fenced() {
    // The pod's IPv6 address is outside every allowed range: the whole request is refused,
    // naming the pod, not the address.
    let r = plan_with(
        r#"{"target":"pod/shop/web"}"#,
        Some(&["198.19.2.33", "fd00:99::33"]),
        None,
    )
    .unwrap_err();
    assert_eq!(r.code, "target_not_allowed");
    assert!(r.error.starts_with("target pod/shop/web:"), "{}", r.error);
    // Narrowed to the family inside the fence, it is probed.
    let p = plan_with(
        r#"{"target":"pod/shop/web","family":"ipv4"}"#,
        Some(&["198.19.2.33", "fd00:99::33"]),
        None,
    )
    .unwrap();
    assert_eq!(addrs(&p), ["198.19.2.33"]);
    // A forwarding agent's other-family address (ALSO_HEADER) is fenced like a target: the
    // never-list and loopback refuse it, spelled any way.
    for bad in ["fe80::1", "::1", "64:ff9b::a9fe:a9fe", "fd00:99::1"] {
        let r = plan_with(r#"{"target":"198.19.2.33"}"#, None, Some(bad)).unwrap_err();
        assert_eq!(r.code, "target_not_allowed", "{bad}");
    }
    let p = plan_with(r#"{"target":"198.19.2.33"}"#, None, Some("fd00:19:2::33")).unwrap();
    assert_eq!(addrs(&p), ["198.19.2.33", "fd00:19:2::33"]);
    // One of the same family as the target (however spelled) adds nothing: never probed.
    let p = plan_with(
        r#"{"target":"198.19.2.33"}"#,
        None,
        Some("::ffff:169.254.169.254"),
    )
    .unwrap();
    assert_eq!(addrs(&p), ["198.19.2.33"]);
}
