//! The mesh view's cache: `GET /api/v1/diagnosis` gathers every peer agent's results at most
//! once per cache period (a quarter interval, 100 ms to 1 s), however many callers ask at once —
//! the page, pollers, the event publisher and on-demand probes share one fan-out.

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
                    r#"{"node":"b","ready":true,"rounds":5,"peers":[],"targets":[]}"#
                } else {
                    r#"{"node":"b","zone":null}"#
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
