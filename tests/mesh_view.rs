//! The mesh view's cache: `GET /api/v1/diagnosis` gathers every peer agent's results at most
//! once per cache period (a quarter interval, 100 ms to 1 s), however many callers ask at once —
//! the page, pollers, the event publisher and on-demand probes share one fan-out. Above
//! `--full-mesh-max` the view comes from `--prometheus` (no agent asked) or, without one or
//! when it fails, from a bounded subset of the agents — and says which in `scope`.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshprobe::config::AgentConfig;
use support::inproc;
use support::net::{free_port, get_within, ip};
use support::sys::peers_file;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A peer agent "b" that answers `/ping` as b and `/api/v1/results` with an empty, ready
/// document, counting the results requests.
async fn counting_peer(addr: SocketAddr) -> Arc<AtomicU64> {
    named_peer("b", addr).await
}

/// [`counting_peer`] answering as `node`.
async fn named_peer(node: &'static str, addr: SocketAddr) -> Arc<AtomicU64> {
    let listener = TcpListener::bind(addr).await.unwrap();
    let results = Arc::new(AtomicU64::new(0));
    let count = results.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = if head.starts_with(b"GET /api/v1/results") {
                    count.fetch_add(1, Ordering::SeqCst);
                    format!(
                        r#"{{"node":"{node}","ready":true,"rounds":5,"peers":[],"targets":[]}}"#
                    )
                } else {
                    format!(r#"{{"node":"{node}","zone":null}}"#)
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fan_out_per_cache_period() {
    let port = free_port(ip(91));
    let b_port = free_port(ip(92));
    let results = counting_peer(SocketAddr::new(ip(92), b_port)).await;
    let (_dir, peers) = peers_file(
        "mesh-view",
        &format!(
            "peers:\n  - {{node: a, node_ip: 127.0.0.1, pod_ip: 127.0.0.91}}\n  - {{node: b, node_ip: 127.0.0.1, pod_ip: 127.0.0.92, port: {b_port}}}\n"
        ),
    );
    let a_addr = SocketAddr::new(ip(91), port);
    // A 4 s interval: the view is cached for 1 s.
    let Some(a) = inproc::start(AgentConfig {
        interval: Duration::from_secs(4),
        ..inproc::config("a", a_addr, &peers)
    })
    .await
    else {
        return;
    };
    let t0 = std::time::Instant::now();
    while !matches!(
        get_within(a_addr, "/readyz", Duration::from_secs(2)).await,
        Some((200, _))
    ) {
        assert!(t0.elapsed() < Duration::from_secs(15), "agent a not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Twenty callers at once: one fan-out, every caller answered with b among the agents.
    let calls: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                get_within(a_addr, "/api/v1/diagnosis", Duration::from_secs(5)).await
            })
        })
        .collect();
    for c in calls {
        let (status, body) = c.await.unwrap().expect("diagnosis answered");
        assert_eq!(status, 200, "{body}");
        let d: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            d["agents_answered"],
            serde_json::json!(["a", "b"]),
            "{body}"
        );
    }
    assert_eq!(
        results.load(Ordering::SeqCst),
        1,
        "20 concurrent callers made more than one fan-out"
    );

    // After the cache period: the next caller gathers again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _) = get_within(a_addr, "/api/v1/diagnosis", Duration::from_secs(5))
        .await
        .expect("diagnosis answered");
    assert_eq!(status, 200);
    assert_eq!(
        results.load(Ordering::SeqCst),
        2,
        "the cache outlived its period"
    );
    a.stop().await;
}

/// A Prometheus answering every instant query from a recorded fixture
/// (tests/fixtures/prom/*.json: metric → answer), an empty vector for metrics it lacks.
async fn fake_prometheus(fixture: &str) -> SocketAddr {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let answers = Arc::new(doc["answers"].clone());
    let listener = TcpListener::bind((ip(110), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                // GET /api/v1/query?query=…METRIC… : the query's first `meshprobe_` name.
                let q = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.split_once("query="))
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default();
                let metric: String = q[q.find("meshprobe_").unwrap_or(q.len())..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let body = match answers.get(&metric) {
                    Some(a) => a.to_string(),
                    None => r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
                        .to_string(),
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Agent `me` (at 127.0.0.`first`) and peers `others` (the next addresses), every peer a
/// [`named_peer`]; `--full-mesh-max 3`, so the plan is sampled. Returns the agent's address,
/// the peers' results counters and the running agent.
async fn sampled_agent(
    me: &'static str,
    others: &[&'static str],
    first: u8,
    prometheus: Option<&str>,
) -> Option<(SocketAddr, Vec<Arc<AtomicU64>>, inproc::Running)> {
    let mut peers_yaml =
        format!("peers:\n  - {{node: {me}, node_ip: 127.0.0.1, pod_ip: 127.0.0.{first}}}\n");
    let mut counters = Vec::new();
    for (i, node) in others.iter().enumerate() {
        let a = ip(first + 1 + i as u8);
        let port = free_port(a);
        counters.push(named_peer(node, SocketAddr::new(a, port)).await);
        peers_yaml.push_str(&format!(
            "  - {{node: {node}, node_ip: 127.0.0.1, pod_ip: {a}, port: {port}}}\n"
        ));
    }
    let (_dir, peers) = peers_file(&format!("mesh-view-{me}-{first}"), &peers_yaml);
    let addr = SocketAddr::new(ip(first), free_port(ip(first)));
    let prometheus = prometheus.map(|u| meshprobe::promclient::PromSource {
        url: meshprobe::promclient::PromUrl::parse(u).unwrap(),
        matchers: None,
    });
    let agent = inproc::start(AgentConfig {
        full_mesh_max: 3,
        prometheus,
        ..inproc::config(me, addr, &peers)
    })
    .await?;
    let t0 = std::time::Instant::now();
    while !matches!(
        get_within(addr, "/readyz", Duration::from_secs(2)).await,
        Some((200, _))
    ) {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "agent {me} not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((addr, counters, agent))
}

async fn diagnosis_of(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = get_within(addr, "/api/v1/diagnosis", Duration::from_secs(10))
        .await
        .expect("diagnosis answered");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_full_mesh_max_the_view_comes_from_prometheus_without_asking_agents() {
    let prom = fake_prometheus("tests/fixtures/prom/cni-node-3.json").await;
    let Some((addr, counters, agent)) = sampled_agent(
        "node-1",
        &["node-2", "node-3", "node-4", "node-5"],
        111,
        Some(&format!("http://{prom}")),
    )
    .await
    else {
        return;
    };
    let d = diagnosis_of(addr).await;
    assert_eq!(d["scope"]["source"], "prometheus", "{d}");
    assert_eq!(d["scope"]["agents_in_mesh"], 5, "{d}");
    assert!(
        d["scope"]["note"]
            .as_str()
            .unwrap()
            .contains(&prom.to_string()),
        "{d}"
    );
    // The recorded fault, found from the metrics.
    let findings = d["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{d}");
    assert_eq!(findings[0]["cause"], "cni", "{d}");
    assert_eq!(findings[0]["nodes"], serde_json::json!(["node-3"]), "{d}");
    assert_eq!(
        d["agents_answered"],
        serde_json::json!(["node-1", "node-2", "node-3", "node-4"]),
        "{d}"
    );
    // No agent was asked for its results.
    let asked: u64 = counters.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    assert_eq!(
        asked, 0,
        "the view asked agents although Prometheus answered"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_full_mesh_max_without_a_working_prometheus_a_subset_is_asked_and_said() {
    // A Prometheus that is not there: refused at once.
    let gone = SocketAddr::new(ip(120), free_port(ip(120)));
    let Some((addr, counters, agent)) = sampled_agent(
        "a",
        &["b", "c", "d", "e"],
        121,
        Some(&format!("http://{gone}")),
    )
    .await
    else {
        return;
    };
    let d = diagnosis_of(addr).await;
    assert_eq!(d["scope"]["source"], "subset", "{d}");
    assert_eq!(d["scope"]["agents_in_mesh"], 5, "{d}");
    // Four peers: all within the bound (its limits are the planner's unit test's).
    assert_eq!(d["scope"]["agents_asked"], 4, "{d}");
    let note = d["scope"]["note"].as_str().unwrap();
    assert!(note.contains("4 of the 5 agents"), "{note}");
    assert!(note.contains("Prometheus failed"), "{note}");
    assert!(note.contains(&gone.to_string()), "{note}");
    assert_eq!(d["healthy"], true, "{d}");
    for c in &counters {
        assert_eq!(c.load(Ordering::SeqCst), 1);
    }
    agent.stop().await;
}
