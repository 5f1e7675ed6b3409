//! HTTP prober: `GET path` over a new TCP connection, with per-phase timings.
//!
//! The connection is built by hand ([`connect_timed`], then hyper's HTTP/1 client handshake)
//! so connect and first-byte times are measured, not hidden in a pool. hyper's connection
//! future is driven inside the probe's own future (no spawned task), so nothing outlives the
//! probe: when the probe ends, for whatever reason, the connection is dropped and closed.
//!
//! Bounds: the whole exchange finishes by `start + timeout` (else `Timeout`), the response
//! head is at most [`MAX_HEAD`] bytes and the body at most [`MAX_BODY`] bytes (else
//! `Protocol`).

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{HeaderValue, CONNECTION, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::tcp::{check_kind, connect_timed};
use super::{classify, BoxFuture, Prober};
use meshprobe_core::model::{Check, ErrorClass, Phases, PingBody, ProbeResult};

/// Largest response head accepted (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Probes `Check::Http`.
#[derive(Debug, Clone)]
pub struct HttpProber {
    user_agent: HeaderValue,
}

impl HttpProber {
    pub fn new() -> Self {
        HttpProber {
            user_agent: HeaderValue::from_static(concat!("meshprobe/", env!("CARGO_PKG_VERSION"))),
        }
    }

    async fn probe_http(
        &self,
        addr: SocketAddr,
        path: &str,
        expect_node: Option<&str>,
        timeout: Duration,
    ) -> ProbeResult {
        let start = Instant::now();
        let deadline = start + timeout;
        let request = match self.request(addr, path) {
            Ok(r) => r,
            Err(e) => return ProbeResult::failed(1, e),
        };
        let stream = match connect_timed(addr, deadline).await {
            Ok((stream, _)) => stream,
            Err(e) => return ProbeResult::failed(1, e),
        };
        let mut phases = Phases {
            resolve: Duration::ZERO,
            connect: start.elapsed(),
            first_byte: None,
            total: Duration::ZERO,
        };
        let outcome = tokio::time::timeout_at(
            deadline,
            exchange(stream, request, start, &mut phases, MAX_BODY),
        )
        .await
        .unwrap_or(Err(ErrorClass::Timeout))
        .and_then(|(status, body)| judge(status, body, expect_node));
        phases.total = start.elapsed();
        match outcome {
            Ok(()) => ProbeResult::ok(phases.total, Some(phases)),
            Err(error) => ProbeResult {
                // Connected: the phases reached are kept (a timeout after connect is not a
                // timeout at connect).
                phases: Some(phases),
                ..ProbeResult::failed(1, error)
            },
        }
    }

    fn request(&self, addr: SocketAddr, path: &str) -> Result<Request<Empty<Bytes>>, ErrorClass> {
        let local = |detail: String| ErrorClass::LocalError {
            detail: classify::truncate(&detail),
        };
        if !path.starts_with('/') {
            return Err(local(format!("HTTP path {path:?} does not start with '/'")));
        }
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, addr.to_string())
            .header(USER_AGENT, self.user_agent.clone())
            .header(CONNECTION, HeaderValue::from_static("close"))
            .body(Empty::new())
            .map_err(|e| local(format!("invalid HTTP request for path {path:?}: {e}")))
    }
}

impl Default for HttpProber {
    fn default() -> Self {
        Self::new()
    }
}

impl Prober for HttpProber {
    fn probe<'a>(&'a self, check: &'a Check, timeout: Duration) -> BoxFuture<'a, ProbeResult> {
        Box::pin(async move {
            match check {
                Check::Http {
                    addr,
                    path,
                    expect_node,
                } => {
                    self.probe_http(*addr, path, expect_node.as_deref(), timeout)
                        .await
                }
                other => ProbeResult::failed(
                    1,
                    ErrorClass::LocalError {
                        detail: format!("the HTTP prober cannot run {}", check_kind(other)),
                    },
                ),
            }
        })
    }
}

/// A probe's verdict on an answer: the status first (it says more than a broken body would),
/// then the body, then (peers) whose `/ping` answer it is.
fn judge(
    status: StatusCode,
    body: Result<Bytes, ErrorClass>,
    expect_node: Option<&str>,
) -> Result<(), ErrorClass> {
    if !status.is_success() {
        return Err(ErrorClass::HttpStatus {
            code: status.as_u16(),
        });
    }
    let body = body?;
    match expect_node {
        None => Ok(()),
        Some(expected) => check_peer(&body, expected),
    }
}

/// The fuzzing seam: `reply` (the bytes a peer sends back) read by the code a probe runs —
/// hyper's client over an in-memory stream, [`read_body`], [`judge`] — within `timeout`.
#[doc(hidden)]
pub async fn judge_reply(
    reply: &[u8],
    expect_node: Option<&str>,
    timeout: Duration,
) -> Result<(), ErrorClass> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], 9464));
    let request = HttpProber::new().request(addr, "/ping")?;
    // Room for the whole reply and our request: neither side waits for the other to read.
    let (client, mut server) = tokio::io::duplex(reply.len() + 64 * 1024);
    // The peer answers once it has our request's head, as a server on a socket would.
    let peer = async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = server.write_all(reply).await;
        let _ = server.shutdown().await;
        server
    };
    let mut phases = Phases::default();
    let work = async {
        let (outcome, _server) = tokio::join!(
            exchange(client, request, start, &mut phases, MAX_BODY),
            peer
        );
        outcome
    };
    tokio::time::timeout_at(start + timeout, work)
        .await
        .unwrap_or(Err(ErrorClass::Timeout))
        .and_then(|(status, body)| judge(status, body, expect_node))
}

/// One request/response on a connected stream, filling `phases.first_byte`; the body is read up
/// to `max_body` bytes (its own error is kept apart, so a status can be reported even when the
/// body is broken). The caller bounds it in time; the connection is driven here and closed when
/// this returns or is dropped.
async fn exchange<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    start: Instant,
    phases: &mut Phases,
    max_body: usize,
) -> Result<(StatusCode, Result<Bytes, ErrorClass>), ErrorClass>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_header_size(MAX_HEAD)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_error(&e))?;

    let work = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| hyper_error(&e))?;
        phases.first_byte = Some(start.elapsed());
        let status = response.status();
        let body = read_body(response.into_body(), max_body).await;
        Ok((status, body))
    };

    // Drive the connection alongside the request. If the connection ends first, the request
    // side still resolves (with hyper's error, or with the data already delivered).
    let mut work = pin!(work);
    let mut conn = pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            result = &mut work => return result,
            result = &mut conn, if !conn_done => {
                conn_done = true;
                if let Err(e) = result {
                    tracing::trace!("http connection ended: {e}");
                }
            }
        }
    }
}

/// Read a body, at most `max` bytes.
async fn read_body(body: hyper::body::Incoming, max: usize) -> Result<Bytes, ErrorClass> {
    if body.size_hint().lower() > max as u64 {
        return Err(body_too_long(max));
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Err(body_too_long(max))
            } else if let Some(h) = e.downcast_ref::<hyper::Error>() {
                Err(hyper_error(h))
            } else {
                Err(ErrorClass::Protocol {
                    detail: classify::truncate(&format!("reading the body: {e}")),
                })
            }
        }
    }
}

fn body_too_long(max: usize) -> ErrorClass {
    ErrorClass::Protocol {
        detail: format!("response body longer than {max} bytes"),
    }
}

/// `GET path` from `addr` on a new connection, within `timeout`, body capped at `max_body`:
/// what the mesh view uses to gather other agents' results. Non-2xx is `HttpStatus`.
pub async fn fetch(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, ErrorClass> {
    let start = Instant::now();
    let deadline = start + timeout;
    let request = HttpProber::new().request(addr, path)?;
    let (stream, _) = connect_timed(addr, deadline).await?;
    let mut phases = Phases::default();
    let (status, body) = tokio::time::timeout_at(
        deadline,
        exchange(stream, request, start, &mut phases, max_body),
    )
    .await
    .unwrap_or(Err(ErrorClass::Timeout))?;
    if !status.is_success() {
        return Err(ErrorClass::HttpStatus {
            code: status.as_u16(),
        });
    }
    body
}

/// The body must be a meshprobe `/ping` answer naming `expected`.
fn check_peer(body: &[u8], expected: &str) -> Result<(), ErrorClass> {
    let ping: PingBody = serde_json::from_slice(body).map_err(|e| ErrorClass::Protocol {
        detail: classify::truncate(&format!("not a meshprobe ping answer: {e}")),
    })?;
    if ping.node == expected {
        Ok(())
    } else {
        Err(ErrorClass::WrongPeer {
            expected: expected.to_string(),
            got: classify::truncate(&ping.node),
        })
    }
}

/// Name a hyper error: an underlying socket error by its errno (reset, ...), anything else
/// (malformed or oversized head, connection closed mid-answer) as a protocol error.
fn hyper_error(e: &hyper::Error) -> ErrorClass {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify::io_error(io);
        }
        source = s.source();
    }
    let what = if e.is_parse_too_large() {
        format!("response head larger than {MAX_HEAD} bytes")
    } else if e.is_incomplete_message() {
        "connection closed before the answer was complete".to_string()
    } else {
        e.to_string()
    };
    ErrorClass::Protocol {
        detail: classify::truncate(&what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::closed_port;
    use axum::routing::get;
    use meshprobe_server::server::{serve, ServerLimits};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const T: Duration = Duration::from_millis(800);

    /// A meshprobe target (`serve::router`) plus `/ping` answering as `node`, on 127.0.0.1:0.
    /// The server stops when the returned sender is dropped.
    async fn target(node: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = serde_json::to_string(&PingBody {
            node: node.to_string(),
            zone: None,
        })
        .unwrap();
        let app = meshprobe_server::serve::router(Some("t".into()))
            .route("/named-ping", get(move || async move { body }))
            .route("/notjson", get(|| async { "hello" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, ServerLimits::default(), async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// A raw peer: for each connection, reads the request head, then runs `answer`.
    async fn raw_peer<F, Fut>(answer: F) -> SocketAddr
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::spawn(answer(s));
            }
        });
        addr
    }

    fn check(addr: SocketAddr, path: &str, expect_node: Option<&str>) -> Check {
        Check::Http {
            addr,
            path: path.into(),
            expect_node: expect_node.map(str::to_string),
        }
    }

    fn label(r: &ProbeResult) -> &'static str {
        r.error.as_ref().map_or("ok", |e| e.label())
    }

    #[tokio::test]
    async fn ok_with_ordered_phases() {
        let (addr, _stop) = target("node-a").await;
        let r = HttpProber::new().probe(&check(addr, "/", None), T).await;
        assert!(r.success(), "{r:?}");
        let p = r.phases.unwrap();
        let first_byte = p.first_byte.unwrap();
        assert_eq!(p.resolve, Duration::ZERO);
        assert!(p.resolve <= p.connect, "{p:?}");
        assert!(p.connect <= first_byte, "{p:?}");
        assert!(first_byte <= p.total, "{p:?}");
        assert_eq!(r.rtts, vec![p.total]);
        assert!(p.total < T);
    }

    #[tokio::test]
    async fn sends_host_user_agent_and_connection_close() {
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let tx = std::sync::Mutex::new(Some(tx));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
            let _ = tx
                .lock()
                .unwrap()
                .take()
                .unwrap()
                .send(String::from_utf8(head).unwrap());
        });
        let r = HttpProber::new()
            .probe(&check(addr, "/x?y=1", None), T)
            .await;
        assert!(r.success(), "{r:?}");
        let head = rx.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /x?y=1 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
        assert!(
            head.contains(&format!(
                "user-agent: meshprobe/{}\r\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{head}"
        );
        assert!(head.contains("connection: close\r\n"), "{head}");
    }

    #[tokio::test]
    async fn closed_port_is_refused_quickly() {
        let start = Instant::now();
        let r = HttpProber::new()
            .probe(&check(closed_port(), "/", None), T)
            .await;
        assert_eq!(r.error, Some(ErrorClass::Refused));
        assert_eq!(r.phases, None);
        assert!(start.elapsed() < Duration::from_millis(300));
    }

    #[tokio::test]
    async fn silent_peer_times_out_within_the_timeout() {
        // The kernel completes the handshake; nobody ever answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let start = Instant::now();
        let r = HttpProber::new().probe(&check(addr, "/", None), T).await;
        let took = start.elapsed();
        assert_eq!(r.error, Some(ErrorClass::Timeout));
        assert!(
            took >= T && took < T + Duration::from_millis(200),
            "{took:?}"
        );
        // Connected, then no answer: the phases say so.
        let p = r.phases.unwrap();
        assert!(p.connect < T && p.first_byte.is_none());
        drop(listener);
    }

    #[tokio::test]
    async fn status_500_is_http_status_with_phases() {
        let (addr, _stop) = target("node-a").await;
        let r = HttpProber::new()
            .probe(&check(addr, "/status/500", None), T)
            .await;
        assert_eq!(r.error, Some(ErrorClass::HttpStatus { code: 500 }));
        assert!(!r.success());
        let p = r.phases.unwrap();
        assert!(p.connect <= p.first_byte.unwrap() && p.first_byte.unwrap() <= p.total);
    }

    #[tokio::test]
    async fn expect_node_matches_or_is_wrong_peer() {
        let (addr, _stop) = target("node-a").await;
        let prober = HttpProber::new();
        let r = prober
            .probe(&check(addr, "/named-ping", Some("node-a")), T)
            .await;
        assert!(r.success(), "{r:?}");
        let r = prober
            .probe(&check(addr, "/named-ping", Some("node-b")), T)
            .await;
        assert_eq!(
            r.error,
            Some(ErrorClass::WrongPeer {
                expected: "node-b".into(),
                got: "node-a".into()
            })
        );
        let r = prober
            .probe(&check(addr, "/notjson", Some("node-a")), T)
            .await;
        assert_eq!(label(&r), "protocol", "{r:?}");
    }

    #[tokio::test]
    async fn garbage_is_protocol() {
        let addr = raw_peer(|mut s| async move {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n").await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
        .await;
        let r = HttpProber::new().probe(&check(addr, "/", None), T).await;
        assert_eq!(label(&r), "protocol", "{r:?}");
    }

    #[tokio::test]
    async fn oversized_head_is_protocol() {
        let addr = raw_peer(|mut s| async move {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                head.extend_from_slice(format!("x-h{i}: 0123456789\r\n").as_bytes());
            }
            let _ = s.write_all(&head).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
        .await;
        let r = HttpProber::new().probe(&check(addr, "/", None), T).await;
        assert_eq!(label(&r), "protocol", "{r:?}");
    }

    #[tokio::test]
    async fn endless_body_is_protocol_in_bounded_time() {
        for head in [
            // Read-until-close body, then chunked, then a lying content-length.
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n",
        ] {
            let chunked = head.ends_with(b"chunked\r\n\r\n");
            let addr = raw_peer(move |mut s| async move {
                if s.write_all(head).await.is_err() {
                    return;
                }
                let data = vec![b'x'; 4096];
                let chunk = [b"1000\r\n".as_slice(), &data, b"\r\n"].concat();
                loop {
                    let w = if chunked { &chunk[..] } else { &data[..] };
                    if s.write_all(w).await.is_err() {
                        return;
                    }
                }
            })
            .await;
            let start = Instant::now();
            let r = HttpProber::new()
                .probe(&check(addr, "/", None), Duration::from_secs(5))
                .await;
            assert_eq!(label(&r), "protocol", "{r:?}");
            assert!(start.elapsed() < Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn body_at_the_cap_is_fine_one_more_byte_is_not() {
        let (addr, _stop) = target("node-a").await;
        let prober = HttpProber::new();
        let r = prober
            .probe(&check(addr, &format!("/bytes/{MAX_BODY}"), None), T)
            .await;
        assert!(r.success(), "{r:?}");
        let r = prober
            .probe(&check(addr, &format!("/bytes/{}", MAX_BODY + 1), None), T)
            .await;
        assert_eq!(label(&r), "protocol", "{r:?}");
    }

    #[tokio::test]
    async fn closed_without_answer_and_reset() {
        let closes = raw_peer(|s| async move { drop(s) }).await;
        let r = HttpProber::new().probe(&check(closes, "/", None), T).await;
        assert_eq!(label(&r), "protocol", "{r:?}");

        let resets = raw_peer(|s| async move {
            let s = s.into_std().unwrap();
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        })
        .await;
        let r = HttpProber::new().probe(&check(resets, "/", None), T).await;
        assert_eq!(r.error, Some(ErrorClass::Reset), "{r:?}");
    }

    #[tokio::test]
    async fn truncated_body_is_protocol() {
        let addr = raw_peer(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
                .await;
        })
        .await;
        let r = HttpProber::new().probe(&check(addr, "/", None), T).await;
        assert_eq!(label(&r), "protocol", "{r:?}");
    }

    #[tokio::test]
    async fn bad_path_and_other_checks_are_local_errors() {
        let prober = HttpProber::new();
        let r = prober
            .probe(&check("127.0.0.1:1".parse().unwrap(), "no-slash", None), T)
            .await;
        assert_eq!(label(&r), "local_error");
        let r = prober
            .probe(
                &Check::Tcp {
                    addr: "127.0.0.1:1".parse().unwrap(),
                },
                T,
            )
            .await;
        assert_eq!(label(&r), "local_error");
    }

    #[test]
    fn check_peer_table() {
        let table: &[(&[u8], &str, &str)] = &[
            (br#"{"node":"a"}"#, "a", "ok"),
            (br#"{"node":"a","zone":"z1"}"#, "a", "ok"),
            (br#"{"node":"b"}"#, "a", "wrong_peer"),
            (br#"{"name":"a"}"#, "a", "protocol"),
            (b"ok\n", "a", "protocol"),
            (b"", "a", "protocol"),
        ];
        for (body, expected, want) in table {
            let got = check_peer(body, expected).err();
            assert_eq!(
                got.as_ref().map_or("ok", |e| e.label()),
                *want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// No task outlives a probe: the runtime's live task count is back to where it was as soon
    /// as the probe returns, whatever the outcome.
    #[tokio::test(flavor = "current_thread")]
    async fn no_task_outlives_a_probe() {
        // Peers on plain threads, so only the prober could add tokio tasks.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let ok = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ok_addr = ok.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for s in ok.incoming() {
                let Ok(mut s) = s else { return };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            }
        });
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let prober = HttpProber::new();
        let r = prober
            .probe(&check(ok_addr, "/", None), Duration::from_secs(2))
            .await;
        assert!(r.success(), "{r:?}");
        assert_eq!(metrics.num_alive_tasks(), before);
        let r = prober
            .probe(&check(silent_addr, "/", None), Duration::from_millis(200))
            .await;
        assert_eq!(r.error, Some(ErrorClass::Timeout));
        assert_eq!(metrics.num_alive_tasks(), before);
        let r = prober
            .probe(&check(closed_port(), "/", None), Duration::from_millis(200))
            .await;
        assert_eq!(r.error, Some(ErrorClass::Refused));
        assert_eq!(metrics.num_alive_tasks(), before);
        drop(silent);
    }
}
