//! Several real agents on loopback addresses (127.0.0.0/8), one peers file, real probers.
//! ICMP needs CAP_NET_RAW (root) or the ping sysctl: without either the test says why and skips.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use meshprobe::config::AgentConfig;
use serde_json::Value;
use support::eventually_async;
use support::inproc::{self, Running};
use support::net::{free_port, get, get_gzip, ip};
use support::promlint::promtool_findings;
use support::sys::peers_file;
use tokio::net::TcpListener;

const INTERVAL: Duration = Duration::from_millis(1000);
/// Path-MTU discovery on: loopback answers every size up to 65535.
const MTU: Option<Duration> = Some(Duration::from_secs(1));

async fn results(addr: SocketAddr) -> Value {
    let (status, body) = get(addr, "/api/v1/results")
        .await
        .expect("results answered");
    assert_eq!(status, 200);
    serde_json::from_str(&body).expect("results are JSON")
}

fn layer<'a>(r: &'a Value, kind: &str, name: &str, layer: &str) -> &'a Value {
    let list = r[kind].as_array().expect("list");
    let key = if kind == "peers" { "node" } else { "name" };
    let dest = list
        .iter()
        .find(|d| d[key] == name)
        .unwrap_or_else(|| panic!("{name} not in {kind}: {r}"));
    &dest["layers"][layer]
}

async fn start(node: &str, listen: SocketAddr, peers: &Path) -> Option<Running> {
    inproc::start(AgentConfig {
        zone: Some(format!("zone-{node}")),
        interval: INTERVAL,
        icmp_count: 2,
        mtu_interval: MTU,
        ..inproc::config(node, listen, peers)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_each_other_a_stopped_peer_a_closed_port_and_a_departed_peer() {
    // A free port, used on every agent address; a closed port for the "refused" target.
    let port = free_port(ip(41));
    let closed_port = free_port(ip(50));
    // An HTTP target that answers.
    let web = TcpListener::bind((ip(51), 0)).await.unwrap();
    let web_addr = web.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let _ = axum::serve(web, app).await;
    });

    let peer_line = |n: &str, last: u8| {
        format!("  - {{node: {n}, node_ip: 127.0.0.1, pod_ip: 127.0.0.{last}, zone: zone-{n}}}\n")
    };
    let targets = format!(
        "targets:\n  - {{name: closed, ip: 127.0.0.50, port: {closed_port}, protocol: tcp}}\n  - {{name: web, ip: {}, port: {}, protocol: http, path: /healthz}}\n",
        web_addr.ip(),
        web_addr.port()
    );
    let all = format!(
        "peers:\n{}{}{}{targets}",
        peer_line("a", 41),
        peer_line("b", 42),
        peer_line("c", 43)
    );
    let (dir, peers) = peers_file("loopback", &all);

    let addr = |last| SocketAddr::new(ip(last), port);
    let Some(a) = start("a", addr(41), &peers).await else {
        return;
    };
    let b = start("b", addr(42), &peers).await.unwrap();
    let c = start("c", addr(43), &peers).await.unwrap();

    // Everyone is ready after a first full round.
    eventually_async(INTERVAL * 3, "all agents ready", async || {
        for last in [41, 42, 43] {
            if !matches!(get(addr(last), "/readyz").await, Some((200, _))) {
                return false;
            }
        }
        true
    })
    .await;

    let r = results(addr(41)).await;
    assert_eq!(r["node"], "a");
    let peer_names: Vec<_> = r["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["node"].clone())
        .collect();
    assert_eq!(peer_names, ["b", "c"], "an agent does not probe itself");
    for peer in ["b", "c"] {
        for l in ["icmp_pod", "icmp_node", "http"] {
            let w = layer(&r, "peers", peer, l);
            assert_eq!(w["reachable"], true, "a → {peer} {l}: {w}");
        }
        let http = layer(&r, "peers", peer, "http");
        let ph = &http["last_phases"];
        let (connect, fb, total) = (
            ph["connect"].as_f64().unwrap(),
            ph["first_byte"].as_f64().unwrap(),
            ph["total"].as_f64().unwrap(),
        );
        assert!(connect <= fb && fb <= total, "phases in order: {ph}");
        let icmp = layer(&r, "peers", peer, "icmp_pod");
        assert_eq!(
            icmp["sent"].as_u64(),
            Some(icmp["received"].as_u64().unwrap())
        );
        assert_eq!(icmp["loss_ratio"], 0.0);
    }
    // The closed port is refused, not timed out; the web target answers.
    let closed = layer(&r, "targets", "closed", "tcp");
    assert_eq!(closed["reachable"], false);
    assert_eq!(closed["last_error"]["kind"], "refused", "{closed}");
    assert_eq!(layer(&r, "targets", "web", "http")["reachable"], true);
    assert_eq!(layer(&r, "targets", "web", "icmp_pod")["reachable"], true);

    // Path MTU: loopback carries the largest packet there is.
    eventually_async(Duration::from_secs(5), "path MTU to b known", async || {
        let r = results(addr(41)).await;
        let p = r["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"] == "b")
            .cloned();
        p.is_some_and(|p| {
            p["mtu"]["icmp_pod"]["state"] == "ok" && p["mtu"]["icmp_pod"]["path_mtu"] == 65535
        })
    })
    .await;

    // Metrics carry per-pair series with documented labels.
    let (_, metrics) = get(addr(41), "/metrics").await.unwrap();
    assert!(metrics.contains(r#"meshprobe_pair_reachable{src_node="a",src_zone="zone-a",dst_kind="peer",dst="b",dst_zone="zone-b",layer="http",family="ipv4"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"meshprobe_probes_total{layer="tcp",result="refused"}"#));
    assert!(metrics.contains(r#"meshprobe_pair_path_mtu_bytes{src_node="a",src_zone="zone-a",dst_kind="peer",dst="b",dst_zone="zone-b",layer="icmp_pod",family="ipv4"} 65535"#), "{metrics}");
    assert!(metrics.contains(r#"meshprobe_mtu_destinations{layer="icmp_pod",state="ok"}"#));
    // The scrape lints clean: per-pair RTT quantiles, error kinds and MTU series included.
    if let Some(findings) = promtool_findings(&metrics) {
        assert!(findings.is_empty(), "promtool check metrics: {findings:#?}");
    }
    assert!(metrics.contains(r#"meshprobe_pair_rtt_seconds{src_node="a",src_zone="zone-a",dst_kind="peer",dst="b",dst_zone="zone-b",layer="http",family="ipv4",q="0.99"} "#), "{metrics}");
    assert!(metrics.contains(r#"meshprobe_pair_window_errors{"#));

    // Asked for gzip (as Prometheus and browsers do), /metrics and the page come compressed
    // and decompress to the same documents; a small answer stays plain.
    for path in ["/metrics", "/"] {
        let (head, body) = get_gzip(addr(41), path).await.expect("gzip answer");
        assert!(head.contains("content-encoding: gzip"), "{path}: {head}");
        assert!(head.contains("vary: accept-encoding"), "{path}: {head}");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("valid gzip");
        if path == "/metrics" {
            assert!(text.contains(r#"meshprobe_pair_reachable{src_node="a",src_zone="zone-a",dst_kind="peer",dst="b",dst_zone="zone-b",layer="http",family="ipv4"} 1"#), "{text}");
            assert!(text.ends_with("# EOF\n"));
        } else {
            assert!(text.contains("<section id=findings>") && text.ends_with("</html>"));
        }
        assert!(
            body.len() * 3 < text.len(),
            "{path}: {} -> {}",
            text.len(),
            body.len()
        );
    }
    let (head, _) = get_gzip(addr(41), "/healthz").await.unwrap();
    assert!(!head.contains("content-encoding"), "{head}");

    // Stop c: within two intervals a sees c's agent refuse HTTP.
    c.stop().await;
    eventually_async(
        INTERVAL * 2 + Duration::from_millis(600),
        "a sees c down",
        async || {
            let r = results(addr(41)).await;
            let w = layer(&r, "peers", "c", "http");
            w["reachable"] == false && w["last_error"]["kind"] == "refused"
        },
    )
    .await;
    assert_eq!(
        layer(&results(addr(41)).await, "peers", "b", "http")["reachable"],
        true
    );

    // Restart c: reachable again.
    let c = start("c", addr(43), &peers).await.unwrap();
    eventually_async(
        INTERVAL * 2 + Duration::from_millis(600),
        "a sees c back",
        async || layer(&results(addr(41)).await, "peers", "c", "http")["reachable"] == true,
    )
    .await;

    // A bad edit keeps the last good set; removing c takes c and its series away.
    std::fs::write(&peers, "peers: [broken").unwrap();
    eventually_async(Duration::from_secs(3), "bad edit reported", async || {
        results(addr(41)).await["discovery"]["last_error"].is_string()
    })
    .await;
    assert_eq!(
        results(addr(41)).await["peers"].as_array().unwrap().len(),
        2
    );
    let without_c = format!(
        "peers:\n{}{}{targets}",
        peer_line("a", 41),
        peer_line("b", 42)
    );
    std::fs::write(&peers, without_c).unwrap();
    eventually_async(INTERVAL * 3, "c removed", async || {
        let r = results(addr(41)).await;
        r["peers"].as_array().unwrap().len() == 1 && r["discovery"]["last_error"].is_null()
    })
    .await;
    let (_, metrics) = get(addr(41), "/metrics").await.unwrap();
    assert!(
        !metrics.contains(r#"dst="c""#),
        "series of a departed peer must go"
    );
    assert!(metrics.contains(r#"dst="b""#));

    for agent in [a, b, c] {
        agent.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The lint check itself: a gauge labelled `quantile` is a finding, and so is a counter without
/// help; an OpenMetrics counter's `X_total no help text` is tolerated only when the scrape gives
/// `X` a type and help.
#[test]
fn promtool_findings_keep_all_but_the_openmetrics_counter_line() {
    let scrape = "# HELP ok_events Events.\n# TYPE ok_events counter\nok_events_total 1\n\
                  # TYPE bare counter\nbare_total 1\n\
                  # HELP rtt_seconds RTT.\n# TYPE rtt_seconds gauge\nrtt_seconds{quantile=\"0.5\"} 1\n# EOF\n";
    let Some(findings) = promtool_findings(scrape) else {
        return;
    };
    assert_eq!(
        findings,
        [
            "bare_total no help text",
            r#"rtt_seconds non-summary metrics should not have "quantile" label"#
        ],
        "{findings:#?}"
    );
}
