//! The per-source checks (`dns`, `service`): the real `dns` check against a DNS responder on
//! loopback (answers, NXDOMAIN, SERVFAIL, REFUSED, no records, silence), and an in-process
//! agent whose checks ask that responder and a local HTTP server standing for the ClusterIP,
//! seen in `/metrics` and in `/api/v1/results`.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use meshprobe::checks::Check;
use meshprobe::config::{AgentConfig, ChecksConfig};
use meshprobe::model::IpFamilies;
use serde_json::Value;
use support::dns::{Mode, Responder};
use support::eventually_async;
use support::inproc;
use support::net::{free_port, get, get_json, ip, metric};
use support::promlint::promtool_findings;
use support::sys::peers_file;
use tokio::net::TcpListener;

const NAME: &str = "meshprobe.mp.svc.cluster.local.";
const TIMEOUT: Duration = Duration::from_millis(400);

/// One query per check (no cache, no retry), classified by its rcode; silence is a timeout
/// within `--timeout`; a server that comes back is seen at the next check (nothing negative
/// is cached either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_check_asks_once_and_names_what_the_server_said() {
    let answers = vec![Ipv4Addr::new(198, 19, 1, 2), Ipv4Addr::new(198, 19, 2, 2)];
    let dns = Responder::start(ip(161), Mode::Answer(answers.clone())).await;
    let check = Check::dns(NAME, Some(dns.addr), IpFamilies::Auto, TIMEOUT);
    let cases = [
        (Mode::Answer(answers.clone()), "ok"),
        (Mode::Answer(answers.clone()), "ok"),
        (Mode::NxDomain, "nxdomain"),
        (Mode::NxDomain, "nxdomain"),
        (Mode::ServFail, "servfail"),
        (Mode::Refused, "refused"),
        (Mode::NoAnswer, "no_answer"),
        (Mode::Silent, "timeout"),
        (Mode::Answer(answers.clone()), "ok"),
    ];
    for (mode, want) in cases {
        dns.set(mode.clone());
        let before = dns.queries();
        let started = tokio::time::Instant::now();
        let o = check.run(TIMEOUT).await;
        let took = started.elapsed();
        assert_eq!(o.result, want, "{mode:?}: {o:?}");
        assert_eq!(dns.queries() - before, 1, "{mode:?}: exactly one query");
        assert!(
            took < TIMEOUT + Duration::from_millis(300),
            "{mode:?}: {took:?}"
        );
        match want {
            "ok" => assert_eq!(o.answers, Some(2), "{o:?}"),
            "timeout" => assert!(took >= TIMEOUT, "{took:?}"),
            _ => assert!(!o.detail.is_empty(), "{o:?}"),
        }
    }
    // AAAA asked of a server with A records only: NOERROR, no answer.
    let v6 = Check::dns(NAME, Some(dns.addr), IpFamilies::Ipv6, TIMEOUT);
    assert_eq!(v6.run(TIMEOUT).await.result, "no_answer");
    // Nothing listening: the port is closed (ICMP port unreachable on loopback).
    let closed = SocketAddr::new(ip(162), free_port(ip(162)));
    let o = Check::dns(NAME, Some(closed), IpFamilies::Auto, TIMEOUT)
        .run(TIMEOUT)
        .await;
    assert_ne!(o.result, "ok", "{o:?}");
}

async fn scrape(addr: SocketAddr) -> String {
    get(addr, "/metrics")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default()
}

async fn checks(addr: SocketAddr) -> Value {
    get_json(addr, "/api/v1/results")
        .await
        .map(|r| r["checks"].clone())
        .unwrap_or(Value::Null)
}

/// `HTTP 200 ok` on `/ping` at `ip`, standing for the agents' ClusterIP; the handle stops it.
async fn ping_server(ip: std::net::IpAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "ok" }));
        let _ = axum::serve(l, app).await;
    });
    (addr, task)
}

/// An agent with both checks: `meshprobe_check_up` 1 for each while they answer, 0 for the
/// one that stops (the other stays 1), the results' `checks` naming the error, and back to 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_both_checks_and_reports_them() {
    let dns = Responder::start(ip(163), Mode::Answer(vec![Ipv4Addr::new(127, 0, 0, 164)])).await;
    let (vip, server) = ping_server(ip(165)).await;
    let listen = SocketAddr::new(ip(164), free_port(ip(164)));
    let (_dir, peers) = peers_file(
        "agent-checks",
        "peers:\n  - {node: a, node_ip: 127.0.0.164, pod_ip: 127.0.0.164}\n",
    );
    let Some(agent) = inproc::start(AgentConfig {
        checks: ChecksConfig {
            dns_name: Some(NAME.into()),
            dns_server: Some(dns.addr),
            service: Some(vip),
            service_lookup: None,
            apiserver: None,
        },
        ..inproc::config("a", listen, &peers)
    })
    .await
    else {
        return;
    };
    let up = |check: &str, target: &str| {
        format!(r#"src_node="a",src_zone="",check="{check}",target="{target}""#)
    };
    let (dns_up, svc_up) = (up("dns", NAME), up("service", &vip.to_string()));
    let within = Duration::from_secs(8);
    eventually_async(within, "both checks up", async || {
        let m = scrape(listen).await;
        metric(&m, "meshprobe_check_up", &dns_up) == Some(1.0)
            && metric(&m, "meshprobe_check_up", &svc_up) == Some(1.0)
    })
    .await;
    let c = checks(listen).await;
    assert_eq!(c["dns"]["target"], NAME, "{c}");
    assert_eq!(c["dns"]["reachable"], true, "{c}");
    assert_eq!(c["dns"]["answers"], 1, "{c}");
    assert_eq!(c["dns"]["record_type"], "A", "{c}");
    assert_eq!(c["service"]["target"], vip.to_string(), "{c}");
    assert_eq!(c["service"]["last_result"], "ok", "{c}");
    assert!(c["service"]["probes"].as_u64() >= Some(1), "{c}");
    let m = scrape(listen).await;
    assert!(
        metric(
            &m,
            "meshprobe_check_duration_seconds_count",
            r#"check="dns""#
        ) >= Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "meshprobe_check_total",
            r#"check="service",result="ok""#
        ) >= Some(1.0),
        "{m}"
    );

    // DNS answers NXDOMAIN: the dns check goes down, the service check stays up.
    dns.set(Mode::NxDomain);
    eventually_async(within, "dns down, service up", async || {
        let m = scrape(listen).await;
        metric(&m, "meshprobe_check_up", &dns_up) == Some(0.0)
            && metric(&m, "meshprobe_check_up", &svc_up) == Some(1.0)
    })
    .await;
    let c = checks(listen).await;
    assert_eq!(c["dns"]["last_error"]["kind"], "nxdomain", "{c}");
    assert_eq!(c["dns"]["reachable"], false, "{c}");
    let m = scrape(listen).await;
    assert!(
        metric(
            &m,
            "meshprobe_check_total",
            r#"check="dns",result="nxdomain""#
        ) >= Some(1.0),
        "{m}"
    );

    // The "ClusterIP" stops answering (refused), DNS comes back.
    server.abort();
    let _ = server.await;
    dns.set(Mode::Answer(vec![Ipv4Addr::new(127, 0, 0, 164)]));
    eventually_async(within, "service down, dns up", async || {
        let m = scrape(listen).await;
        metric(&m, "meshprobe_check_up", &dns_up) == Some(1.0)
            && metric(&m, "meshprobe_check_up", &svc_up) == Some(0.0)
    })
    .await;
    let c = checks(listen).await;
    assert_eq!(c["service"]["last_error"]["kind"], "refused", "{c}");
    assert!(
        c["service"]["consecutive_failures"].as_u64() >= Some(1),
        "{c}"
    );
    assert_eq!(c["dns"]["reachable"], true, "{c}");

    // Silence: a timeout, bounded by --timeout.
    dns.set(Mode::Silent);
    eventually_async(within, "dns timeout", async || {
        checks(listen).await["dns"]["last_result"] == "timeout"
    })
    .await;

    // Cardinality (docs/metrics.md): 15 histogram series per check, one `up` per check, one
    // counter per (check, result) seen — here ok, nxdomain, timeout and ok, refused.
    let m = scrape(listen).await;
    let series = |prefix: &str| {
        m.lines()
            .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
            .count()
    };
    assert_eq!(series("meshprobe_check_duration_seconds"), 30, "{m}");
    assert_eq!(series("meshprobe_check_up"), 2, "{m}");
    // The window's figures `diagnose --prometheus` reads: both checks failing in a row now
    // (the DNS server silent, the service refusing), each after answering earlier.
    assert_eq!(series("meshprobe_check_consecutive_failures"), 2, "{m}");
    assert_eq!(series("meshprobe_check_success_ratio"), 2, "{m}");
    for check in ["dns", "service"] {
        let sel = format!(r#"check="{check}""#);
        assert!(
            metric(&m, "meshprobe_check_consecutive_failures", &sel).is_some_and(|v| v >= 1.0),
            "{check}: {m}"
        );
        assert!(
            metric(&m, "meshprobe_check_success_ratio", &sel).is_some_and(|v| v > 0.0 && v < 1.0),
            "{check}: {m}"
        );
    }
    for seen in [
        r#"check="dns",result="ok""#,
        r#"check="dns",result="nxdomain""#,
        r#"check="dns",result="timeout""#,
        r#"check="service",result="ok""#,
        r#"check="service",result="refused""#,
    ] {
        assert!(
            metric(&m, "meshprobe_check_total", seen).is_some(),
            "{seen}: {m}"
        );
    }
    // A probe cut by the server's stop could also read as a reset: one kind more at most.
    assert!((5..=6).contains(&series("meshprobe_check_total")), "{m}");
    if let Some(findings) = promtool_findings(&m) {
        assert!(findings.is_empty(), "promtool check metrics: {findings:#?}");
    }
    agent.stop().await;
}

/// No check configured: no `meshprobe_check_up` series and an empty `checks` section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checks_nothing_is_exported() {
    let listen = SocketAddr::new(ip(166), free_port(ip(166)));
    let (_dir, peers) = peers_file(
        "agent-no-checks",
        "peers:\n  - {node: a, node_ip: 127.0.0.166, pod_ip: 127.0.0.166}\n",
    );
    let Some(agent) = inproc::start(inproc::config("a", listen, &peers)).await else {
        return;
    };
    eventually_async(Duration::from_secs(5), "a round", async || {
        metric(&scrape(listen).await, "meshprobe_rounds_total", "") >= Some(1.0)
    })
    .await;
    let m = scrape(listen).await;
    assert_eq!(metric(&m, "meshprobe_check_up", ""), None, "{m}");
    assert_eq!(checks(listen).await, serde_json::json!({}));
    agent.stop().await;
}
