//! A real agent among hostile peers on 127.0.0.0/8: peers that accept TCP and never answer,
//! answer garbage, an endless body, an endless header; and peers that answer `/ping` properly
//! but serve garbage, endless or no JSON at `/api/v1/results`. The agent classifies each within its
//! timeout and keeps its rounds; the mesh view (`/api/v1/diagnosis`) answers in bounded time,
//! names the bad peers and still uses the good one; no hostile peer gets more than the caps
//! read from it, and RSS stays bounded. Prints what it measured.
//! ICMP needs CAP_NET_RAW (root) or the ping sysctl: without either the test says why and skips.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshprobe::config::AgentConfig;
use serde_json::Value;
use support::inproc::{self, Running};
use support::net::{free_port, get_within, ip};
use support::sys::{peers_file, self_rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const INTERVAL: Duration = Duration::from_millis(1000);
const TIMEOUT: Duration = Duration::from_millis(500);

/// How a hostile peer answers a request for a path.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    /// Accept, read the request, never answer (hold the connection).
    Silent,
    /// Bytes that are not HTTP, then close.
    Garbage,
    /// A 200 head, then a chunked body that never ends.
    EndlessBody,
    /// A status line, then one header line that never ends.
    EndlessHeader,
    /// `/ping` answered as node `NAME` would; `/api/v1/results` is not JSON.
    GarbageResults(&'static str),
    /// `/ping` answered as node `NAME` would; `/api/v1/results` is JSON that never ends.
    EndlessResults(&'static str),
    /// `/ping` answered as node `NAME` would; `/api/v1/results` never answered.
    SilentResults(&'static str),
}

/// Write `chunk` until the client stops reading (a write fails) or 60 s pass; the bytes
/// written so far are published after every write, so a client that never closes the
/// connection is counted too.
async fn endless(s: &mut TcpStream, chunk: &[u8], written: &AtomicU64) {
    let mut n = 0u64;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while s.write_all(chunk).await.is_ok() {
            n += chunk.len() as u64;
            written.fetch_max(n, Ordering::Relaxed);
        }
    })
    .await;
}

fn endless_chunk(unit: &str) -> Vec<u8> {
    let data = unit.repeat(4096 / unit.len());
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

async fn answer(mut s: TcpStream, how: Hostile, written: Arc<AtomicU64>) {
    // Read the request head (bounded), to learn the path.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or("").to_string();
    let ok_json = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";
    match how {
        Hostile::Silent => tokio::time::sleep(Duration::from_secs(120)).await,
        Hostile::Garbage => {
            let _ = s
                .write_all(b"\x16\x03\x01\x02\x00 this is not http\r\n\r\n")
                .await;
        }
        Hostile::EndlessBody => {
            let _ = s
                .write_all(format!("{ok_json}transfer-encoding: chunked\r\n\r\n").as_bytes())
                .await;
            endless(&mut s, &endless_chunk("A"), &written).await;
        }
        Hostile::EndlessHeader => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nx-big: ").await;
            endless(&mut s, &[b'a'; 4096], &written).await;
        }
        Hostile::GarbageResults(node)
        | Hostile::EndlessResults(node)
        | Hostile::SilentResults(node)
            if path == "/ping" =>
        {
            let body = format!("{{\"node\":\"{node}\"}}");
            let _ = s
                .write_all(
                    format!(
                        "{ok_json}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
        Hostile::SilentResults(_) => tokio::time::sleep(Duration::from_secs(120)).await,
        Hostile::GarbageResults(_) => {
            let body = "{\"node\": \"f\", \"peers\": [ this is not json";
            let _ = s
                .write_all(
                    format!(
                        "{ok_json}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
        Hostile::EndlessResults(node) => {
            let start = format!("{{\"node\":\"{node}\",\"peers\":[");
            let _ = s
                .write_all(
                    format!(
                        "{ok_json}transfer-encoding: chunked\r\n\r\n{:x}\r\n{start}\r\n",
                        start.len()
                    )
                    .as_bytes(),
                )
                .await;
            endless(&mut s, &endless_chunk("[1,2,3],"), &written).await;
        }
    }
}

/// A hostile peer on `ip`; returns its port and the most bytes it wrote to one connection.
async fn hostile(ip: IpAddr, how: Hostile) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(answer(s, how, w.clone()));
        }
    });
    (port, written)
}

async fn start(node: &str, listen: SocketAddr, peers: &Path) -> Option<Running> {
    inproc::start(AgentConfig {
        interval: INTERVAL,
        timeout: TIMEOUT,
        ..inproc::config(node, listen, peers)
    })
    .await
}

fn http_layer(r: &Value, node: &str) -> Value {
    r["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["node"] == node)
        .map(|p| p["layers"]["http"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_classified_in_time_and_do_not_break_the_mesh_view() {
    let port = free_port(ip(81));
    let table: [(&str, u8, Hostile); 7] = [
        ("b", 82, Hostile::Silent),
        ("c", 83, Hostile::Garbage),
        ("d", 84, Hostile::EndlessBody),
        ("e", 85, Hostile::EndlessHeader),
        ("f", 86, Hostile::GarbageResults("f")),
        ("h", 88, Hostile::EndlessResults("h")),
        ("i", 89, Hostile::SilentResults("i")),
    ];
    let mut peers_text = String::from(
        "peers:\n  - {node: a, node_ip: 127.0.0.1, pod_ip: 127.0.0.81}\n  - {node: g, node_ip: 127.0.0.1, pod_ip: 127.0.0.87}\n"
    );
    let mut written = Vec::new();
    for (node, last, how) in table {
        let (p, w) = hostile(ip(last), how).await;
        peers_text += &format!(
            "  - {{node: {node}, node_ip: 127.0.0.1, pod_ip: 127.0.0.{last}, port: {p}}}\n"
        );
        written.push((node, w));
    }
    let (dir, peers) = peers_file("hostile", &peers_text);

    let rss0 = self_rss_kib();
    let a_addr = SocketAddr::new(ip(81), port);
    let Some(a) = start("a", a_addr, &peers).await else {
        return;
    };
    let g = start("g", SocketAddr::new(ip(87), port), &peers)
        .await
        .unwrap();

    // A round with every hostile peer in it completes (so no probe hung past its timeout).
    let t0 = Instant::now();
    while !matches!(
        get_within(a_addr, "/readyz", Duration::from_secs(2)).await,
        Some((200, _))
    ) {
        assert!(
            t0.elapsed() < INTERVAL * 3,
            "agent a not ready: a probe hung?"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("a ready after {:?}", t0.elapsed());
    // Two more rounds, so every peer has been probed at least twice.
    tokio::time::sleep(INTERVAL * 2 + TIMEOUT).await;

    let (status, body) = get_within(a_addr, "/api/v1/results", Duration::from_secs(3))
        .await
        .expect("results answered");
    assert_eq!(status, 200);
    let r: Value = serde_json::from_str(&body).unwrap();
    let expect = [
        ("b", "timeout"),
        ("c", "protocol"),
        ("d", "protocol"),
        ("e", "protocol"),
    ];
    for (node, kind) in expect {
        let w = http_layer(&r, node);
        println!("a -> {node} http: {}", w["last_error"]);
        assert_eq!(w["reachable"], false, "{node}: {w}");
        assert_eq!(w["last_error"]["kind"], kind, "{node}: {w}");
    }
    for node in ["f", "g", "h", "i"] {
        let w = http_layer(&r, node);
        assert_eq!(w["reachable"], true, "{node} answers /ping: {w}");
    }

    // The mesh view: bounded in time; g used; the hostile peers named, with a reason.
    let t = Instant::now();
    let (status, body) = get_within(a_addr, "/api/v1/diagnosis", Duration::from_secs(5))
        .await
        .expect("diagnosis answered within 5 s");
    let took = t.elapsed();
    assert_eq!(status, 200, "{body}");
    let d: Value = serde_json::from_str(&body).expect("diagnosis is JSON");
    println!("diagnosis in {took:?}; answered {}", d["agents_answered"]);
    let answered: Vec<&str> = d["agents_answered"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(answered, ["a", "g"], "{}", d["agents_answered"]);
    let unreachable = d["agents_unreachable"].as_array().unwrap();
    for node in ["b", "c", "d", "e", "f", "h", "i"] {
        let u = unreachable
            .iter()
            .find(|u| u["node"] == node)
            .unwrap_or_else(|| panic!("{node} not among agents_unreachable: {unreachable:?}"));
        let why = u["error"].as_str().unwrap_or("");
        println!("mesh view: {node} unanswered: {why}");
        assert!(!why.is_empty(), "{node}: {u}");
        if node == "h" {
            // Endless JSON: cut at the size cap, or at the gather timeout.
            assert!(
                why.contains("longer than") || why.contains("timeout"),
                "{node}: {why}"
            );
        }
        if node == "i" {
            // Silent results: cut by the gather timeout, or earlier once the others answered.
            assert!(
                why.contains("timeout") || why.contains("not waited for"),
                "{node}: {why}"
            );
        }
    }
    // Within the gather timeout (2 × probe timeout) plus slack, endless JSON included.
    assert!(took < TIMEOUT * 2 + Duration::from_secs(1), "took {took:?}");

    // The caps held: no hostile peer got far more than the largest cap (8 MiB results) read,
    // socket buffers aside; and RSS stayed bounded.
    for (node, w) in &written {
        let n = w.load(Ordering::Relaxed);
        println!("most bytes {node} wrote to one connection: {n}");
        assert!(n <= 24 << 20, "{node} wrote {n} bytes to one connection");
    }
    let rss1 = self_rss_kib();
    println!("RSS {rss0} KiB -> {rss1} KiB");
    assert!(rss1 <= rss0 + 96 * 1024, "RSS {rss0} -> {rss1} KiB");

    // Still probing on schedule: rounds keep completing.
    let rounds = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("meshprobe_rounds_total "))
            .and_then(|v| v.parse().ok())
            .expect("meshprobe_rounds_total")
    };
    let (_, m0) = get_within(a_addr, "/metrics", Duration::from_secs(3))
        .await
        .unwrap();
    tokio::time::sleep(INTERVAL * 3).await;
    let (_, m1) = get_within(a_addr, "/metrics", Duration::from_secs(3))
        .await
        .unwrap();
    let done = rounds(&m1) - rounds(&m0);
    println!("rounds in 3 intervals: {done}");
    assert!(done >= 2, "{done} rounds in 3 intervals");

    for agent in [a, g] {
        agent.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
