//! `POST /api/v1/probe` on real agents (HTTP server, fan-out, streaming) on 127.0.0.x, with fake
//! probers that record every probe they are asked for: refusals (and that they send nothing),
//! the token, 429, the NDJSON shape, an unreachable peer agent, and the `meshprobe probe` CLI's
//! output and exit codes. No root needed.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshprobe::config::{AgentConfig, ProbeConfig};
use meshprobe::model::{Check, ErrorClass, ProbeResult};
use meshprobe::ondemand::client;
use meshprobe::probe::{BoxFuture, Prober};
use serde_json::Value;
use support::inproc::{self, Running};
use support::sys::EXE;
use tokio::net::TcpListener;
/// The bearer token of the token tests (at least 16 characters, as the agent requires).
const TOKEN: &str = "s3cret-s3cret-s3cret";
/// The target every accepted request probes; refused ones name others.
const TARGET: &str = "127.0.0.50";

/// Records every probe by destination IP; TCP/HTTP to port 9 are refused, TCP to port 7 takes
/// 400 ms, the rest succeed at once.
#[derive(Default)]
struct Fake {
    log: Mutex<Vec<(IpAddr, String)>>,
}

impl Fake {
    fn to(&self, ip: &str) -> usize {
        let ip: IpAddr = ip.parse().unwrap();
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| *d == ip)
            .count()
    }
}

impl Prober for Fake {
    fn probe<'a>(&'a self, check: &'a Check, _timeout: Duration) -> BoxFuture<'a, ProbeResult> {
        Box::pin(async move {
            let kind = match check {
                Check::Icmp { .. } => "icmp",
                Check::Tcp { .. } => "tcp",
                Check::Http { .. } => "http",
            };
            self.log
                .lock()
                .unwrap()
                .push((check.destination_ip(), kind.to_string()));
            match check {
                Check::Icmp { count, .. } => ProbeResult {
                    sent: *count,
                    received: *count,
                    rtts: vec![Duration::from_micros(200); usize::from(*count)],
                    phases: None,
                    error: None,
                },
                Check::Tcp { addr } | Check::Http { addr, .. } if addr.port() == 9 => {
                    ProbeResult::failed(1, ErrorClass::Refused)
                }
                Check::Tcp { addr } if addr.port() == 7 => {
                    // A slow service: holds its in-flight slot for a while.
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    ProbeResult::ok(Duration::from_millis(400), None)
                }
                _ => ProbeResult::ok(Duration::from_micros(500), None),
            }
        })
    }
}

/// A peers file: each (node, pod IP, port) with node IP 127.0.1.N.
fn peers_file(name: &str, agents: &[(&str, &str, u16)]) -> PathBuf {
    let peers: Vec<Value> = agents
        .iter()
        .enumerate()
        .map(|(i, (node, ip, port))| {
            serde_json::json!({"node": node, "node_ip": format!("127.0.1.{}", i + 1), "pod_ip": ip, "port": port})
        })
        .collect();
    let path =
        std::env::temp_dir().join(format!("mp-probe-api-{}-{name}.json", std::process::id()));
    std::fs::write(&path, serde_json::json!({"peers": peers}).to_string()).unwrap();
    path
}

async fn start(
    node: &str,
    listener: TcpListener,
    peers: PathBuf,
    probe: ProbeConfig,
    fake: Arc<Fake>,
) -> Running {
    let cfg = AgentConfig {
        max_in_flight: 16,
        probe,
        ..inproc::config(node, listener.local_addr().unwrap(), &peers)
    };
    inproc::spawn(cfg, listener, inproc::fake_probers(fake))
}

/// POST a body; (status, NDJSON lines parsed).
async fn post(addr: SocketAddr, body: &str, headers: &[(&str, String)]) -> (u16, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut a = client::post(
        addr,
        "/api/v1/probe",
        headers,
        body.as_bytes().to_vec(),
        deadline,
    )
    .await
    .expect("agent answers");
    let text = a.text(1 << 20).await.expect("answer read");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (a.status, lines)
}

/// `meshprobe_ondemand_*` samples from /metrics: name{labels} → value.
async fn ondemand_metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let body = meshprobe::probe::http::fetch(addr, "/metrics", Duration::from_secs(5), 1 << 22)
        .await
        .expect("metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("meshprobe_ondemand_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sum(m: &HashMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// Loopback targets need an explicit --allow-cidr (the peer set never opens them).
fn allow_loopback() -> ProbeConfig {
    inproc::allow_cidr("127.0.0.0/24")
}

/// Two agents (node-a on 127.0.0.1, node-b on 127.0.0.2) sharing one peers file.
async fn pair(name: &str, probe: ProbeConfig) -> (Running, Running, Arc<Fake>, Arc<Fake>) {
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let file = peers_file(
        name,
        &[
            ("node-a", "127.0.0.1", la.local_addr().unwrap().port()),
            ("node-b", "127.0.0.2", lb.local_addr().unwrap().port()),
        ],
    );
    // node-a's pod CIDRs, two blocks (a fact): the target 127.0.0.50 is in the second.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    doc["peers"][0]["pod_cidrs"] = serde_json::json!(["127.0.0.1/32", "127.0.0.48/28"]);
    std::fs::write(&file, doc.to_string()).unwrap();
    let (fa, fb) = (Arc::new(Fake::default()), Arc::new(Fake::default()));
    let a = start("node-a", la, file.clone(), probe.clone(), fa.clone()).await;
    let b = start("node-b", lb, file, probe, fb.clone()).await;
    (a, b, fa, fb)
}

#[tokio::test]
async fn streams_one_line_per_source_then_the_verdict() {
    let (a, b, fa, fb) = pair("stream", allow_loopback()).await;
    let body = format!(
        r#"{{"target":"{TARGET}:8080","checks":[{{"kind":"icmp","count":4}},{{"kind":"http","path":"/healthz"}}]}}"#
    );
    let (status, lines) = post(a.addr, &body, &[]).await;
    assert_eq!(status, 200, "{lines:?}");
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["accepted", "source", "source", "verdict"],
        "{lines:?}"
    );
    assert_eq!(lines[0]["sources"], serde_json::json!(["node-a", "node-b"]));
    assert_eq!(
        lines[0]["target"]["node"], "node-a",
        "127.0.0.50 is in node-a's pod CIDR 127.0.0.48/28"
    );
    let mut nodes: Vec<&str> = lines[1..3]
        .iter()
        .map(|l| l["node"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node-a", "node-b"]);
    for l in &lines[1..3] {
        assert_eq!(l["answered"], true);
        assert_eq!(l["ok"], true, "{l}");
        let checks: Vec<&str> = l["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["check"].as_str().unwrap())
            .collect();
        assert_eq!(checks, ["icmp", "http"]);
        assert_eq!(l["checks"][0]["sent"], 4);
        assert_eq!(l["checks"][1]["port"], 8080);
    }
    let v = &lines[3];
    assert_eq!(v["reachable"], true, "{v}");
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["reachable_from"], serde_json::json!(["node-a", "node-b"]));
    // Each agent probed the target itself: ICMP and HTTP once each.
    assert_eq!(fa.to(TARGET), 2);
    assert_eq!(fb.to(TARGET), 2);
    let m = ondemand_metrics(a.addr).await;
    assert_eq!(
        m["meshprobe_ondemand_requests_total{outcome=\"accepted\"}"],
        1.0
    );
    assert_eq!(m["meshprobe_ondemand_probes_total{check=\"http\"}"], 1.0);
    // node-b got the forwarded request (and counts it as accepted there).
    let m = ondemand_metrics(b.addr).await;
    assert_eq!(
        m["meshprobe_ondemand_requests_total{outcome=\"accepted\"}"],
        1.0
    );

    // A failing service: refused from both sources reads as `application`, not reachable.
    let body = format!(
        r#"{{"target":"{TARGET}:9","checks":[{{"kind":"icmp","count":3}},{{"kind":"tcp"}}]}}"#
    );
    let (status, lines) = post(a.addr, &body, &[]).await;
    assert_eq!(status, 200);
    let v = lines.last().unwrap();
    assert_eq!(v["reachable"], false, "{v}");
    assert_eq!(v["findings"][0]["cause"], "application", "{v}");
    a.stop().await;
    b.stop().await;
}

/// `dns/NAME` (`meshprobe probe dns NAME --server …`): each source's agent sends one query to
/// a responder on loopback, with its own `dns` check; the verdict names the source it fails
/// from. A server outside the allowed ranges or a bad name is refused and nothing is sent.
#[tokio::test]
async fn dns_names_resolve_from_each_source_with_a_verdict() {
    use support::dns::{Mode, Responder};
    let (a, b, fa, fb) = pair("dns", allow_loopback()).await;
    let web: std::net::Ipv4Addr = "198.19.2.11".parse().unwrap();
    let dns = Responder::start("127.0.0.53".parse().unwrap(), Mode::Answer(vec![web])).await;
    let server = dns.addr.to_string();
    let body = |name: &str, server: &str| {
        format!(r#"{{"target":"dns/{name}","checks":[{{"kind":"dns","server":"{server}"}}]}}"#)
    };
    // Both resolve: one query each, A, one answer.
    let (status, lines) = post(a.addr, &body("Web.Shop.svc.cluster.local", &server), &[]).await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        lines[0]["target"]["label"],
        "dns/web.shop.svc.cluster.local."
    );
    assert_eq!(
        lines[0]["checks"],
        serde_json::json!([{"kind": "dns", "server": server}])
    );
    for l in &lines[1..3] {
        assert_eq!(l["ok"], true, "{l}");
        let c = &l["checks"][0];
        assert_eq!(
            (&c["check"], &c["result"], &c["answers"], &c["record_type"]),
            (
                &Value::from("dns"),
                &Value::from("ok"),
                &Value::from(1),
                &Value::from("A")
            ),
            "{l}"
        );
        assert!(c["rtt_seconds"].as_f64().unwrap() < 0.5, "{l}");
    }
    let v = &lines[3];
    assert_eq!(
        (&v["reachable"], &v["healthy"]),
        (&Value::from(true), &Value::from(true)),
        "{v}"
    );
    assert_eq!(dns.queries(), 2);
    // The query is the only packet to the server: no ICMP, TCP or HTTP probe went there.
    assert_eq!(fa.to("127.0.0.53") + fb.to("127.0.0.53"), 0);

    // It answers one source and not the other: not reachable from that one, `dns` there (its
    // agent answered the fan-out: its pod network works).
    dns.set(Mode::Once(vec![web]));
    let (status, lines) = post(a.addr, &body("web.shop.svc.cluster.local", &server), &[]).await;
    assert_eq!(status, 200, "{lines:?}");
    let v = lines.last().unwrap();
    assert_eq!(v["reachable"], false, "{v}");
    let failed: Vec<&Value> = lines[1..3].iter().filter(|l| l["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    let bad = failed[0]["node"].as_str().unwrap();
    assert_eq!(failed[0]["checks"][0]["result"], "timeout", "{lines:?}");
    assert_eq!(v["unreachable_from"], serde_json::json!([bad]), "{v}");
    assert_eq!(v["findings"][0]["cause"], "dns", "{v}");
    assert_eq!(v["findings"][0]["nodes"], serde_json::json!([bad]), "{v}");
    // One lookup per source, no resolver retry; hickory's UDP client retransmits an unanswered
    // query once 333 ms have passed, so the silent source's lookup sent 2 within its 500 ms.
    let after = dns.queries();
    assert!((5..=6).contains(&after), "{after}");

    // Refused, naming the field; nothing sent.
    let cases = [
        (
            body("web", "10.96.0.10"),
            403,
            "checks[0].server 10.96.0.10:53: outside the allowed CIDRs",
        ),
        (body("web..local", &server), 400, "expected a DNS name"),
        (
            r#"{"target":"dns/web","checks":[{"kind":"tcp","port":53}]}"#.to_string(),
            400,
            "takes only the dns check",
        ),
        // A peers-file agent has no Kubernetes to look a Service up in.
        (
            r#"{"target":"svc/shop/web"}"#.to_string(),
            501,
            "resolving Services needs an agent running with --discovery kubernetes",
        ),
    ];
    for (body, want, part) in cases {
        let (status, lines) = post(a.addr, &body, &[]).await;
        assert_eq!(status, want, "{body}: {lines:?}");
        let error = lines[0]["error"].as_str().unwrap();
        assert!(error.contains(part), "{body}: {error}");
    }
    assert_eq!(dns.queries(), after, "refused: nothing sent");
    let m = ondemand_metrics(a.addr).await;
    assert_eq!(m["meshprobe_ondemand_probes_total{check=\"dns\"}"], 2.0);

    // The CLI: `probe dns NAME --server`, exit 0 when it resolves from every source, 1 with
    // the `dns` finding when not.
    let url = format!("http://{}", a.addr);
    let cli = |server: String, url: String| {
        tokio::task::spawn_blocking(move || {
            let out = Command::new(EXE)
                .args(["probe", "dns", "web.shop.svc.cluster.local", "--server"])
                .args([&server, "--agent", &url])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
            (out.status.code(), text)
        })
    };
    dns.set(Mode::Answer(vec![web]));
    let (code, text) = cli(server.clone(), url.clone()).await.unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("resolving web.shop.svc.cluster.local. from 2 node(s)"),
        "{text}"
    );
    assert!(text.contains("dns A (1 answer)"), "{text}");
    assert!(
        text.contains("verdict: web.shop.svc.cluster.local. resolves from every source (2 of 2)"),
        "{text}"
    );
    dns.set(Mode::Once(vec![web]));
    let (code, text) = cli(server, url).await.unwrap();
    assert_eq!(code, Some(1), "{text}");
    for want in [
        "verdict: web.shop.svc.cluster.local. does NOT resolve from",
        "(1 of 2 sources); it resolves from",
        "[dns] cluster DNS fails from",
        "node-b       FAIL       dns: timeout",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    a.stop().await;
    b.stop().await;
}

/// Fails TCP and HTTP to one address (a ClusterIP whose rules are broken on this node);
/// everything else succeeds at once.
struct BrokenVip(Option<IpAddr>);

impl Prober for BrokenVip {
    fn probe<'a>(&'a self, check: &'a Check, _timeout: Duration) -> BoxFuture<'a, ProbeResult> {
        Box::pin(async move {
            match check {
                Check::Tcp { addr } | Check::Http { addr, .. } if Some(addr.ip()) == self.0 => {
                    ProbeResult::failed(1, ErrorClass::Timeout)
                }
                Check::Icmp { count, .. } => ProbeResult {
                    sent: *count,
                    received: *count,
                    rtts: vec![Duration::from_micros(200); usize::from(*count)],
                    phases: None,
                    error: None,
                },
                _ => ProbeResult::ok(Duration::from_micros(500), None),
            }
        })
    }
}

/// `svc/NAMESPACE/NAME` on two agents with Kubernetes discovery (the fake API server): each
/// agent looks the Service up itself (once per 30 s), connects to its ClusterIP's first TCP
/// port, and the verdict names `service` at the node where the ClusterIP fails while it works
/// from the other. Refusals name the field; the namespace allow-list applies to Services too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_looked_up_and_the_verdict_names_the_node() {
    use meshprobe::config::Discovery;
    use support::fakeapi::{agent_pod, kube_settings, node_at, FakeApi};
    use support::net::{free_port, ip};
    let api = FakeApi::start().await;
    for i in 1..=2u8 {
        api.put("nodes", node_at(&format!("node-{i}"), ip(80 + i)));
        api.put("pods", agent_pod(i, ip(80 + i)));
    }
    let vip = ip(90);
    api.put(
        "services",
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "ClusterIP", "clusterIP": vip.to_string(),
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "http", "port": 80, "protocol": "TCP"},
                               {"name": "https", "port": 443, "protocol": "TCP"}]}}),
    );
    let port = free_port(ip(81));
    let mut agents = Vec::new();
    for i in 1..=2u8 {
        let listen = SocketAddr::new(ip(80 + i), port);
        let cfg = AgentConfig {
            discovery: Discovery::Kubernetes(kube_settings(
                Some(api.url()),
                Duration::from_secs(2),
                Duration::from_secs(30),
            )),
            probe: ProbeConfig {
                token: Some(TOKEN.into()),
                pod_namespaces: Some(vec!["shop".into()]),
                ..allow_loopback()
            },
            ..inproc::config(&format!("node-{i}"), listen, std::path::Path::new(""))
        };
        let listener = TcpListener::bind(listen).await.unwrap();
        // node-2's Service rules are broken: its connects to the ClusterIP time out.
        let broken = BrokenVip((i == 2).then_some(vip));
        agents.push(inproc::spawn(
            cfg,
            listener,
            inproc::fake_probers(Arc::new(broken)),
        ));
    }
    let a1 = SocketAddr::new(ip(81), port);
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    // Once each agent has discovered both (node-2 must know itself to run a forwarded
    // request), the request goes to both and both answer.
    let mut lines = Vec::new();
    support::eventually_async(
        Duration::from_secs(20),
        "node-1 and node-2 discover each other",
        async || {
            let (status, l) = post(a1, r#"{"target":"svc/shop/web"}"#, &auth).await;
            lines = l;
            let answered = lines
                .iter()
                .filter(|l| l["type"] == "source" && l["answered"] == true)
                .count();
            status == 200
                && lines[0]["sources"].as_array().map(Vec::len) == Some(2)
                && answered == 2
        },
    )
    .await;
    assert_eq!(
        lines[0]["checks"],
        serde_json::json!([{"kind": "tcp", "port": 80}])
    );
    assert_eq!(lines[0]["target"]["ip"], vip.to_string());
    let by_node = |n: &str| {
        lines
            .iter()
            .find(|l| l["type"] == "source" && l["node"] == n)
    };
    assert_eq!(by_node("node-1").unwrap()["ok"], true, "{lines:?}");
    let n2 = by_node("node-2").unwrap();
    assert_eq!(n2["ok"], false, "{n2}");
    assert_eq!(n2["checks"][0]["ip"], vip.to_string(), "{n2}");
    assert_eq!(n2["checks"][0]["port"], 80, "{n2}");
    let v = lines.last().unwrap();
    assert_eq!(v["reachable"], false, "{v}");
    assert_eq!(v["unreachable_from"], serde_json::json!(["node-2"]), "{v}");
    assert_eq!(v["findings"][0]["cause"], "service", "{v}");
    assert_eq!(
        v["findings"][0]["nodes"],
        serde_json::json!(["node-2"]),
        "{v}"
    );
    assert!(
        v["findings"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("ClusterIP 127.0.0.90:80 fails from node-2"),
        "{v}"
    );

    // HTTP to its other port; the Service is looked up once per agent however often asked.
    let (status, lines) = post(
        a1,
        r#"{"target":"svc/shop/web","checks":[{"kind":"http","port":443,"path":"/healthz"}]}"#,
        &auth,
    )
    .await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(
        lines.last().unwrap()["unreachable_from"],
        serde_json::json!(["node-2"])
    );
    let lookups = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/shop/services/web"))
        .count();
    assert_eq!(lookups, 2, "one per agent: {:?}", api.requests());

    // Refused, naming the field.
    let cases = [
        (
            r#"{"target":"svc/shop/web","checks":[{"kind":"tcp","port":22}]}"#,
            400,
            "checks[0].port: 22 is not a TCP port of svc/shop/web (80, 443)",
        ),
        (
            r#"{"target":"svc/shop/web","checks":[{"kind":"icmp"}]}"#,
            400,
            "takes tcp and http checks, not icmp",
        ),
        (
            r#"{"target":"svc/kube-system/kube-dns"}"#,
            403,
            "namespace \"kube-system\" is not one this agent resolves Services in (--probe-pod-namespaces)",
        ),
        (r#"{"target":"svc/shop/nope"}"#, 502, "get service shop/nope"),
    ];
    for (body, want, part) in cases {
        let (status, lines) = post(a1, body, &auth).await;
        assert_eq!(status, want, "{body}: {lines:?}");
        let error = lines[0]["error"].as_str().unwrap();
        assert!(error.contains(part), "{body}: {error}");
    }
    for a in agents {
        a.stop().await;
    }
}

#[tokio::test]
async fn refused_requests_get_a_clear_4xx_and_send_nothing() {
    let (a, b, fa, fb) = pair("refuse", allow_loopback()).await;
    let big = format!(r#"{{"target":"{TARGET}","pad":"{}"}}"#, "x".repeat(20_000));
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("not json".into(), 400, "bad_request", "127.0.0.9"),
        (
            r#"{"target":"10.9.8.7"}"#.into(),
            403,
            "target_not_allowed",
            "10.9.8.7",
        ),
        (
            r#"{"target":"198.51.100.7:80"}"#.into(),
            403,
            "target_not_allowed",
            "198.51.100.7",
        ),
        (
            r#"{"target":"127.0.0.9","checks":[{"kind":"icmp","count":50}]}"#.into(),
            400,
            "bad_request",
            "127.0.0.9",
        ),
        (
            r#"{"target":"127.0.0.9","from":["node-z"]}"#.into(),
            404,
            "unknown_node",
            "127.0.0.9",
        ),
        (
            r#"{"target":"pod/default/web"}"#.into(),
            501,
            "kubernetes_unavailable",
            "127.0.0.9",
        ),
        (
            r#"{"target":"224.0.0.1"}"#.into(),
            403,
            "target_not_allowed",
            "224.0.0.1",
        ),
        (
            // Outside the allowed 127.0.0.0/24: loopback is never derived from the peer set.
            r#"{"target":"127.0.2.9:10250"}"#.into(),
            403,
            "target_not_allowed",
            "127.0.2.9",
        ),
        (big, 413, "too_large", TARGET),
    ];
    for (body, status, code, ip) in &cases {
        let (got, lines) = post(a.addr, body, &[]).await;
        assert_eq!(got, *status, "{body:.80}: {lines:?}");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["code"], *code, "{lines:?}");
        assert!(lines[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert_eq!(fa.to(ip) + fb.to(ip), 0, "{code}: probes were sent to {ip}");
    }
    let m = ondemand_metrics(a.addr).await;
    assert_eq!(sum(&m, "meshprobe_ondemand_probes_total"), 0.0, "{m:?}");
    assert_eq!(
        m["meshprobe_ondemand_requests_total{outcome=\"target_not_allowed\"}"],
        4.0
    );
    assert_eq!(
        m["meshprobe_ondemand_requests_total{outcome=\"bad_request\"}"],
        2.0
    );
    assert_eq!(
        m["meshprobe_ondemand_requests_total{outcome=\"accepted\"}"],
        0.0
    );
    let mb = ondemand_metrics(b.addr).await;
    assert_eq!(
        sum(&mb, "meshprobe_ondemand_requests_total"),
        0.0,
        "nothing forwarded"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn token_and_rate_limit() {
    let probe = ProbeConfig {
        token: Some(TOKEN.into()),
        rate_per_minute: 3,
        burst: 3,
        ..allow_loopback()
    };
    let (a, b, fa, _fb) = pair("token", probe).await;
    let body = format!(
        r#"{{"target":"{TARGET}","checks":[{{"kind":"icmp","count":1}}],"from":["node-a"]}}"#
    );
    let good = [("authorization", format!("Bearer {TOKEN}"))];
    // The token is passed on when fanning out: node-a accepts the request node-b forwards,
    // charged to the client that asked node-b (this test, 127.0.0.1): one of its three.
    let (s, l) = post(b.addr, &body, &good).await;
    assert_eq!(s, 200);
    assert_eq!(l.last().unwrap()["reachable"], true, "{l:?}");
    assert_eq!(fa.to(TARGET), 1);
    // Refused ones count too: the 401 and the 403 spend the other two, so wrong tokens
    // cannot be tried faster than the rate.
    let (s, l) = post(a.addr, &body, &[]).await;
    assert_eq!((s, l[0]["code"].as_str()), (401, Some("unauthorized")));
    let (s, l) = post(a.addr, &body, &[("authorization", "Bearer nope".into())]).await;
    assert_eq!((s, l[0]["code"].as_str()), (403, Some("forbidden")));
    for auth in ["Bearer nope", &format!("Bearer {TOKEN}")] {
        let (s, l) = post(a.addr, &body, &[("authorization", auth.to_string())]).await;
        assert_eq!(
            (s, l[0]["code"].as_str()),
            (429, Some("rate_limited")),
            "{l:?}"
        );
        assert!(l[0]["error"]
            .as_str()
            .unwrap()
            .contains("at most 3 per minute"));
    }
    assert_eq!(fa.to(TARGET), 1, "the refusals sent nothing");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_silent_peer_agent_is_a_line_saying_so() {
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // node-c's agent: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = peers_file(
        "silent",
        &[
            ("node-a", "127.0.0.1", la.local_addr().unwrap().port()),
            ("node-c", "127.0.0.3", closed),
        ],
    );
    let fa = Arc::new(Fake::default());
    let a = start("node-a", la, file, allow_loopback(), fa).await;
    let (s, lines) = post(a.addr, &format!(r#"{{"target":"{TARGET}"}}"#), &[]).await;
    assert_eq!(s, 200);
    let c = lines
        .iter()
        .find(|l| l["node"] == "node-c")
        .expect("a line for node-c");
    assert_eq!(c["answered"], false);
    assert!(
        c["error"].as_str().unwrap().contains("did not answer"),
        "{c}"
    );
    let v = lines.last().unwrap();
    assert_eq!(v["type"], "verdict");
    assert_eq!(v["reachable"], false);
    assert_eq!(v["agents_unreachable"], serde_json::json!(["node-c"]));

    // The CLI: progress lines, the table, the verdict; exit 1 (not reachable from node-c).
    let url = format!("http://{}", a.addr);
    let run = |args: &[&str]| {
        let out = Command::new(EXE).arg("probe").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(&[TARGET, "--agent", &url, "--tcp", "8080"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{out}{err}");
    for want in [
        "probing 127.0.0.50",
        "node-a",
        "NO ANSWER",
        "SOURCE",
        "RTT",
        "LOSS",
        "MTU",
        "tcp :8080",
        "verdict: 127.0.0.50 is NOT reachable from node-c",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    // From node-a alone: reachable, exit 0; -o json is one document.
    let (code, out, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(&[TARGET, "--agent", &url, "--from", "node-a", "-o", "json"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["verdict"]["reachable"], true);
    assert_eq!(doc["sources"][0]["node"], "node-a");
    // Refused, bad arguments, no agent: exit 2 with the reason.
    let (code, _, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(&["10.1.1.1", "--agent", &url])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2));
    assert!(err.contains("outside the allowed CIDRs"), "{err}");
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        run(&[TARGET, "--agent", &format!("http://127.0.0.3:{closed}")])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2));
    assert!(err.contains("127.0.0.3"), "{err}");
    // A pod target goes to the agent, which needs Kubernetes discovery to resolve it.
    let (code, _, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(&["pod/default/web", "--kube", "--agent", &url])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2));
    assert!(err.contains("--discovery kubernetes"), "{err}");
    a.stop().await;
}

#[tokio::test]
async fn forwarded_requests_do_not_fan_out_and_slots_are_bounded() {
    let probe = ProbeConfig {
        max_concurrent: 1,
        ..allow_loopback()
    };
    let (a, b, fa, fb) = pair("forwarded", probe).await;
    // Marked as forwarded: node-a runs it itself and answers one line, asking nobody.
    let body = format!(
        r#"{{"target":"{TARGET}","checks":[{{"kind":"icmp","count":2}}],"from":["node-b"]}}"#
    );
    let (s, lines) = post(
        a.addr,
        &body,
        &[(meshprobe::ondemand::FORWARDED_HEADER, "node-b".into())],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "source");
    assert_eq!(lines[0]["node"], "node-a");
    assert_eq!((fa.to(TARGET), fb.to(TARGET)), (1, 0), "no recursion");

    // One request at a time: a second one while a slow one runs is refused, and sends nothing.
    let slow =
        format!(r#"{{"target":"{TARGET}:7","checks":[{{"kind":"tcp"}}],"from":["node-a"]}}"#);
    let addr = a.addr;
    let first = tokio::spawn(async move { post(addr, &slow, &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = fa.to(TARGET);
    let (s, lines) = post(a.addr, &body, &[]).await;
    assert_eq!(
        (s, lines[0]["code"].as_str()),
        (429, Some("busy")),
        "{lines:?}"
    );
    assert_eq!(fa.to(TARGET), before, "the refused request sent nothing");
    let (s, lines) = first.await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(lines.last().unwrap()["reachable"], true);
    // The slot is free again.
    let (s, _) = post(a.addr, &body, &[]).await;
    assert_eq!(s, 200);
    let m = ondemand_metrics(a.addr).await;
    assert_eq!(
        m["meshprobe_ondemand_requests_total{outcome=\"busy\"}"],
        1.0
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_peer_agent_that_hangs_is_cut_off_at_the_deadline() {
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // node-h's agent accepts connections and never answers.
    let hang = TcpListener::bind("127.0.0.4:0").await.unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let file = peers_file(
        "hang",
        &[
            ("node-a", "127.0.0.1", la.local_addr().unwrap().port()),
            ("node-h", "127.0.0.4", hang_port),
        ],
    );
    let a = start(
        "node-a",
        la,
        file,
        allow_loopback(),
        Arc::new(Fake::default()),
    )
    .await;
    let t0 = std::time::Instant::now();
    let (s, lines) = post(a.addr, &format!(r#"{{"target":"{TARGET}"}}"#), &[]).await;
    let took = t0.elapsed();
    assert_eq!(s, 200);
    let deadline = lines[0]["deadline_seconds"].as_f64().unwrap();
    // Probe timeout 500 ms: the local part is bounded by 1.25 s, a peer gets 2 s more.
    assert!((3.0..=4.0).contains(&deadline), "{deadline}");
    assert!(took.as_secs_f64() < deadline + 1.5, "took {took:?}");
    let h = lines
        .iter()
        .find(|l| l["node"] == "node-h")
        .expect("a line for node-h");
    assert_eq!(h["answered"], false);
    assert!(h["error"].as_str().unwrap().contains("timeout"), "{h}");
    // node-a's own line came first, without waiting for node-h.
    assert_eq!(lines[1]["node"], "node-a");
    assert_eq!(lines.last().unwrap()["reachable"], false);
    holder.abort();
    a.stop().await;
}

/// POST a probe request from `source` (a local address of ours), marked as forwarded; the
/// answer's status.
async fn post_forwarded_from(source: &str, to: SocketAddr, body: &str) -> u16 {
    let mark = format!("{}: node-b\r\n", meshprobe::ondemand::FORWARDED_HEADER);
    post_raw(source, to, body, &mark).await.0
}

/// POST a probe request from `source` with extra header lines `extra`: (status, raw answer).
async fn post_raw(source: &str, to: SocketAddr, body: &str, extra: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    let request = format!(
        "POST /api/v1/probe HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("answered within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    (status, text)
}

/// The forwarded mark spares a request the rate limit only when it comes from a peer agent's
/// pod IP: from any other address it is one more client request, limited as such.
#[tokio::test]
async fn a_forwarded_mark_from_outside_the_mesh_does_not_skip_the_rate_limit() {
    let probe = ProbeConfig {
        rate_per_minute: 3,
        burst: 3,
        ..allow_loopback()
    };
    let (a, b, fa, _fb) = pair("forged", probe).await;
    let body = format!(
        r#"{{"target":"{TARGET}","checks":[{{"kind":"icmp","count":1}}],"from":["node-a"]}}"#
    );
    // From node-b's pod IP (a peer): never limited.
    for i in 0..5 {
        let s = post_forwarded_from("127.0.0.2", a.addr, &body).await;
        assert_eq!(s, 200, "forwarded request {i} from the peer node-b");
    }
    // From 127.0.0.9, no agent's address: three in the burst, then 429.
    for i in 0..3 {
        let s = post_forwarded_from("127.0.0.9", a.addr, &body).await;
        assert_eq!(s, 200, "forged forwarded request {i}");
    }
    let s = post_forwarded_from("127.0.0.9", a.addr, &body).await;
    assert_eq!(s, 429, "a forged forwarded mark skipped the rate limit");
    assert_eq!(fa.to(TARGET), 8, "the 429 sent nothing");
    a.stop().await;
    b.stop().await;
}

/// A token shorter than 16 characters stops the agent at start-up: exit 2, the reason named.
#[test]
fn a_short_token_stops_the_agent_at_start_up() {
    let peers = peers_file("short-token", &[("node-a", "127.0.0.1", 9464)]);
    let out = Command::new(EXE)
        .args(["agent", "--node-name", "node-a", "--listen", "127.0.0.1:0"])
        .arg("--peers-file")
        .arg(&peers)
        .env("MESHPROBE_PROBE_TOKEN", "0123456789abcde")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--probe-token (or MESHPROBE_PROBE_TOKEN): 16-256 printable ASCII")
            && err.contains("got 15 characters"),
        "{err}"
    );
    assert!(!err.contains("0123456789abcde"), "the token is not echoed");
}

/// With `--listen [::]:PORT`, an IPv4 peer arrives as `::ffff:a.b.c.d`: it is still recognised
/// as the peer it is (its forwarded requests are not rate-limited again), and an outside
/// client is still limited.
#[tokio::test]
async fn a_dual_stack_listener_recognises_ipv4_peers() {
    let Ok(la) = TcpListener::bind("[::]:0").await else {
        eprintln!("SKIP: no IPv6 socket here");
        return;
    };
    let port = la.local_addr().unwrap().port();
    let file = peers_file(
        "dual-stack",
        &[("node-a", "127.0.0.1", port), ("node-b", "127.0.0.2", 9)],
    );
    let probe = ProbeConfig {
        rate_per_minute: 3,
        burst: 3,
        ..allow_loopback()
    };
    let fa = Arc::new(Fake::default());
    let a = start("node-a", la, file, probe, fa.clone()).await;
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let body = format!(
        r#"{{"target":"{TARGET}","checks":[{{"kind":"icmp","count":1}}],"from":["node-a"]}}"#
    );
    for i in 0..5 {
        let s = post_forwarded_from("127.0.0.2", to, &body).await;
        assert_eq!(
            s, 200,
            "forwarded request {i} from the peer node-b (as ::ffff:127.0.0.2)"
        );
    }
    for i in 0..3 {
        assert_eq!(
            post_forwarded_from("127.0.0.9", to, &body).await,
            200,
            "{i}"
        );
    }
    assert_eq!(post_forwarded_from("127.0.0.9", to, &body).await, 429);
    assert_eq!(fa.to(TARGET), 8);
    a.stop().await;
}

/// One client cannot hold every slot: its second request in flight is refused (429 busy), on
/// the agent it asks and, charged to it, on the agents it forwards to; another client is
/// still served meanwhile.
#[tokio::test]
async fn one_client_cannot_make_another_busy() {
    let (a, b, fa, fb) = pair("one-client", allow_loopback()).await;
    // Slow checks (400 ms) from both agents.
    let slow = format!(r#"{{"target":"{TARGET}:7","checks":[{{"kind":"tcp"}}]}}"#);
    let mut greedy = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (slow, to) = (slow.clone(), a.addr);
        greedy.spawn(async move { post_raw("127.0.0.9", to, &slow, "").await });
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Meanwhile another client: served, by both agents.
    let (s, text) = post_raw("127.0.0.8", a.addr, &slow, "").await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains(r#""reachable":true"#), "{text}");
    let mut statuses = Vec::new();
    while let Some(r) = greedy.join_next().await {
        let (s, text) = r.unwrap();
        if s != 200 {
            assert!(text.contains("one at a time per client"), "{text}");
        }
        statuses.push(s);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 429, 429, 429, 429, 429],
        "the greedy client"
    );
    // Two requests ran, each from both agents.
    assert_eq!((fa.to(TARGET), fb.to(TARGET)), (2, 2));
    a.stop().await;
    b.stop().await;
}

/// A dual-stack pod (`status.podIPs` of both families) through the fake API server: by
/// default every source probes it at each family — the asked agent resolves it and passes the
/// other family's address on to the peer agent — and each outcome says its family. TCP fails
/// at the IPv6 address only (as a NetworkPolicy for one family would): unreachable, reachable
/// on IPv4, and every finding names IPv6. `family` narrows; a family the pod lacks is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_pod_is_probed_at_each_family() {
    use meshprobe::config::Discovery;
    use support::fakeapi::{agent_pod, fixture, kube_settings, node_at, FakeApi};
    use support::net::{free_port, ip};
    let api = FakeApi::start().await;
    for i in 1..=2u8 {
        api.put("nodes", node_at(&format!("node-{i}"), ip(100 + i)));
        api.put("pods", agent_pod(i, ip(100 + i)));
    }
    let v4 = ip(105);
    let v6: IpAddr = "fd00:19:2::105".parse().unwrap();
    let pod = |name: &str, ips: &[IpAddr]| {
        let mut p = fixture("pod-target.json");
        p["metadata"]["name"] = serde_json::json!(name);
        p["metadata"]["labels"] = serde_json::json!({"app": "web"});
        p["metadata"]["annotations"] = serde_json::json!({});
        p["status"]["podIP"] = serde_json::json!(ips[0].to_string());
        p["status"]["podIPs"] = ips
            .iter()
            .map(|i| serde_json::json!({"ip": i.to_string()}))
            .collect();
        p
    };
    api.put("pods", pod("web", &[v4, v6]));
    api.put("pods", pod("web-v4", &[v4]));
    let port = free_port(ip(101));
    let mut agents = Vec::new();
    for i in 1..=2u8 {
        let listen = SocketAddr::new(ip(100 + i), port);
        let cfg = AgentConfig {
            discovery: Discovery::Kubernetes(kube_settings(
                Some(api.url()),
                Duration::from_secs(2),
                Duration::from_secs(30),
            )),
            probe: ProbeConfig {
                token: Some(TOKEN.into()),
                pod_namespaces: Some(vec!["shop".into()]),
                allow_cidrs: ["127.0.0.0/24", "fd00:19::/32"]
                    .iter()
                    .map(|c| meshprobe::net::Cidr::parse(c).unwrap())
                    .collect(),
                ..ProbeConfig::default()
            },
            ..inproc::config(&format!("node-{i}"), listen, std::path::Path::new(""))
        };
        let listener = TcpListener::bind(listen).await.unwrap();
        // TCP to the pod's IPv6 address fails from every node; ICMP answers at both.
        let probers = inproc::fake_probers(Arc::new(BrokenVip(Some(v6))));
        agents.push(inproc::spawn(cfg, listener, probers));
    }
    let a1 = SocketAddr::new(ip(101), port);
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    let body = r#"{"target":"pod/shop/web","checks":[{"kind":"icmp","count":2},{"kind":"tcp","port":8080}]}"#;
    let mut lines = Vec::new();
    support::eventually_async(
        Duration::from_secs(20),
        "node-1 and node-2 discover each other",
        async || {
            let (status, l) = post(a1, body, &auth).await;
            lines = l;
            let answered = lines
                .iter()
                .filter(|l| l["type"] == "source" && l["answered"] == true)
                .count();
            status == 200
                && lines[0]["sources"].as_array().map(Vec::len) == Some(2)
                && answered == 2
        },
    )
    .await;
    assert_eq!(
        lines[0]["target"]["ips"],
        serde_json::json!([v4.to_string(), v6.to_string()]),
        "{lines:?}"
    );
    for node in ["node-1", "node-2"] {
        let l = lines
            .iter()
            .find(|l| l["type"] == "source" && l["node"] == node)
            .unwrap();
        // Each check once per family, tagged; TCP fails at IPv6 only.
        let got: Vec<(String, String, String, bool)> = l["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                (s("check"), s("family"), s("ip"), c["ok"] == true)
            })
            .collect();
        let want = |check: &str, fam: &str, at: IpAddr, ok: bool| {
            (check.to_string(), fam.to_string(), at.to_string(), ok)
        };
        assert_eq!(
            got,
            [
                want("icmp", "ipv4", v4, true),
                want("tcp", "ipv4", v4, true),
                want("icmp", "ipv6", v6, true),
                want("tcp", "ipv6", v6, false),
            ],
            "{node}: {l}"
        );
    }
    let v = lines.last().unwrap();
    assert_eq!(v["reachable"], false, "{v}");
    assert_eq!(
        v["families"],
        serde_json::json!([
            {"family": "ipv4", "ip": v4.to_string(), "reachable": true,
             "reachable_from": ["node-1", "node-2"], "unreachable_from": []},
            {"family": "ipv6", "ip": v6.to_string(), "reachable": false,
             "reachable_from": [], "unreachable_from": ["node-1", "node-2"]},
        ]),
        "{v}"
    );
    let findings = v["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "{v}");
    for f in findings {
        assert_eq!(f["family"], "ipv6", "{f}");
    }

    // Narrowed to IPv4: one family, the shape it always had, reachable.
    let narrowed = body.replace(r#""checks""#, r#""family":"ipv4","checks""#);
    let (status, lines) = post(a1, &narrowed, &auth).await;
    assert_eq!(status, 200, "{lines:?}");
    assert!(lines[0]["target"].get("ips").is_none(), "{lines:?}");
    let v = lines.last().unwrap();
    assert_eq!(v["reachable"], true, "{v}");
    assert!(v.get("families").is_none(), "{v}");
    for l in lines.iter().filter(|l| l["type"] == "source") {
        for c in l["checks"].as_array().unwrap() {
            assert_eq!(c["ip"], v4.to_string(), "{l}");
            assert!(c.get("family").is_none(), "{l}");
        }
    }
    // A family the pod lacks: refused, naming the field, nothing sent.
    let (status, lines) = post(a1, r#"{"target":"pod/shop/web-v4","family":"ipv6"}"#, &auth).await;
    assert_eq!(status, 400, "{lines:?}");
    let error = lines[0]["error"].as_str().unwrap();
    assert!(
        error.contains("family: ipv6 asked, but target pod/shop/web-v4 has no ipv6 address"),
        "{error}"
    );
    for a in agents {
        a.stop().await;
    }
}
