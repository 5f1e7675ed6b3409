//! Several real agents on loopback addresses (127.0.0.0/8), one peers file, real probers.
//! ICMP needs CAP_NET_RAW (root) or the ping sysctl: without either the test says why and skips.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use meshprobe::config::{AgentConfig, PairMetrics};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const INTERVAL: Duration = Duration::from_millis(1000);
/// Path-MTU discovery on: loopback answers every size up to 65535.
const MTU: Option<Duration> = Some(Duration::from_secs(1));

/// GET a path over a fresh connection; returns (status, body).
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

/// GET with `Accept-Encoding: gzip`: (lower-cased head, raw body bytes).
async fn get_gzip(addr: SocketAddr, path: &str) -> Option<(String, Vec<u8>)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let body = buf[end + 4..].to_vec();
        // A chunked body: join the chunks.
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&body)?
        } else {
            body
        };
        Some((head, body))
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..nl]).ok()?.trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

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

/// Poll `check` every 100 ms until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("not true within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

fn config(node: &str, listen: SocketAddr, peers: &Path) -> AgentConfig {
    AgentConfig {
        node_name: node.into(),
        zone: Some(format!("zone-{node}")),
        listen,
        peers_file: peers.to_path_buf(),
        discovery: meshprobe::config::Discovery::File,
        interval: INTERVAL,
        timeout: Duration::from_millis(500),
        window: Duration::from_secs(10),
        icmp_count: 2,
        icmp_size: 56,
        max_rate: 1000,
        max_in_flight: 64,
        pair_metrics: PairMetrics::All,
        full_mesh_max: 200,
        layers: meshprobe::model::Layers::ALL,
        mtu_interval: MTU,
        mtu_search_interval: Duration::from_secs(600),
        probe: Default::default(),
    }
}

async fn start(node: &str, listen: SocketAddr, peers: &Path) -> Option<Running> {
    let listener = TcpListener::bind(listen).await.expect("bind agent");
    let probers = match meshprobe::agent::default_probers() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIP: the agent cannot open ICMP sockets here: {e}");
            return None;
        }
    };
    let (tx, rx) = oneshot::channel::<()>();
    let cfg = config(node, listen, peers);
    let task = tokio::spawn(async move {
        meshprobe::agent::run(cfg, listener, probers, async {
            let _ = rx.await;
        })
        .await
        .expect("agent runs");
    });
    Some(Running {
        stop: Some(tx),
        task,
    })
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_each_other_a_stopped_peer_a_closed_port_and_a_departed_peer() {
    // A free port, used on every agent address; a closed port for the "refused" target.
    let port = {
        let l = std::net::TcpListener::bind((ip(41), 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let closed_port = {
        let l = std::net::TcpListener::bind((ip(50), 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    // An HTTP target that answers.
    let web = TcpListener::bind((ip(51), 0)).await.unwrap();
    let web_addr = web.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let _ = axum::serve(web, app).await;
    });

    let dir = std::env::temp_dir().join(format!("meshprobe-loopback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let peers = dir.join("peers.yaml");
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
    std::fs::write(&peers, &all).unwrap();

    let addr = |last| SocketAddr::new(ip(last), port);
    let Some(a) = start("a", addr(41), &peers).await else {
        return;
    };
    let b = start("b", addr(42), &peers).await.unwrap();
    let c = start("c", addr(43), &peers).await.unwrap();

    // Everyone is ready after a first full round.
    eventually(INTERVAL * 3, "all agents ready", async || {
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
    eventually(Duration::from_secs(5), "path MTU to b known", async || {
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
    assert!(metrics.contains(r#"meshprobe_pair_reachable{src_node="a",src_zone="zone-a",dst_kind="peer",dst="b",dst_zone="zone-b",layer="http"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"meshprobe_probes_total{layer="tcp",result="refused"}"#));
    assert!(metrics.contains(r#"meshprobe_pair_path_mtu_bytes{src_node="a",src_zone="zone-a",dst_kind="peer",dst="b",dst_zone="zone-b",layer="icmp_pod"} 65535"#), "{metrics}");
    assert!(metrics.contains(r#"meshprobe_mtu_destinations{layer="icmp_pod",state="ok"}"#));

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
            assert!(text.contains(r#"meshprobe_pair_reachable{src_node="a",src_zone="zone-a",dst_kind="peer",dst="b",dst_zone="zone-b",layer="http"} 1"#), "{text}");
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
    eventually(
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
    eventually(
        INTERVAL * 2 + Duration::from_millis(600),
        "a sees c back",
        async || layer(&results(addr(41)).await, "peers", "c", "http")["reachable"] == true,
    )
    .await;

    // A bad edit keeps the last good set; removing c takes c and its series away.
    std::fs::write(&peers, "peers: [broken").unwrap();
    eventually(Duration::from_secs(3), "bad edit reported", async || {
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
    eventually(INTERVAL * 3, "c removed", async || {
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
