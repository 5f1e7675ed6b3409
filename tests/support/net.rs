//! Addresses and small HTTP/1.1 clients: blocking (for tests driving processes) and async (for
//! tests on a tokio runtime), each on a fresh connection with `Connection: close`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 127.0.0.LAST: every test takes addresses of its own on loopback.
pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A port free on `ip` right now.
pub fn free_port(ip: IpAddr) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// One HTTP/1.1 request over a fresh connection: (status, body), or None on any failure or
/// after `timeout`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    http_in(None, addr, method, path, body, timeout)
}

/// [`http`] from inside network namespace `ns` (when given).
pub fn http_in(
    ns: Option<&str>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut s = match ns {
        Some(ns) => meshprobe::lab::netns::connect_in_blocking(ns, addr, timeout).ok()?,
        None => TcpStream::connect_timeout(&addr, timeout).ok()?,
    };
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // Chunked bodies (axum streams): good enough to undo for JSON and text checks.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        String::from_utf8_lossy(&dechunk(body.as_bytes())).into_owned()
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// GET `path` from the HTTP server at `addr` (connecting within 2 s), sending `Host: HOST`:
/// (status, body).
pub fn get_via(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    meshprobe::lab::netns::http_get_blocking(s, host, path, timeout).ok()
}

/// A chunked body's chunks joined, up to the last chunk or the first one malformed or cut.
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let Some(size) = std::str::from_utf8(&b[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            break;
        };
        b = &b[nl + 2..];
        let Some(chunk) = b.get(..size).filter(|_| size > 0) else {
            break;
        };
        out.extend_from_slice(chunk);
        b = b.get(size..).unwrap_or_default();
        b = b.strip_prefix(b"\r\n").unwrap_or(b);
    }
    out
}

/// Sum of the samples of metric `name` (exact name) whose labels contain `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(labels) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Async: GET `path` (3 s at most): (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    get_within(addr, path, Duration::from_secs(3)).await
}

/// Async: GET `path`, `within` at most: (status, body).
pub async fn get_within(addr: SocketAddr, path: &str, within: Duration) -> Option<(u16, String)> {
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
    tokio::time::timeout(within, fut).await.ok().flatten()
}

/// Async: GET `path` (5 s at most), its body as JSON, whatever the status.
pub async fn get_json(addr: SocketAddr, path: &str) -> Option<Value> {
    let (_, body) = get_within(addr, path, Duration::from_secs(5)).await?;
    serde_json::from_str(&body).ok()
}

/// Async: GET with `Accept-Encoding: gzip` (3 s at most): (lower-cased head, raw body bytes,
/// chunked encoding undone).
pub async fn get_gzip(addr: SocketAddr, path: &str) -> Option<(String, Vec<u8>)> {
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
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&body)
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
