//! The bounded HTTP serve loop shared by the agent and `meshprobe serve`.
//!
//! The caller binds the listener and supplies the shutdown future (so tests run on
//! `127.0.0.1:0` and stop the server when they like). Every resource is bounded:
//!
//! * at most [`ServerLimits::max_connections`] connections are served at once; one beyond that
//!   is answered a minimal `503 Service Unavailable` (`Connection: close`) and closed, never
//!   queued (the 503 writers are themselves bounded, beyond them a connection is just closed);
//! * a request head must arrive within [`ServerLimits::header_read_timeout`] (slowloris);
//! * a connection lives at most [`ServerLimits::connection_timeout`], whatever it does;
//! * a failing `accept` (EMFILE, ENFILE, ENOBUFS, ...) is logged and retried after a short
//!   sleep, never in a busy loop;
//! * on shutdown the listener is closed at once, in-flight connections get
//!   [`SHUTDOWN_GRACE`] to finish gracefully, then are cut and `serve` returns.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Bounds on what clients may hold of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; beyond this a client gets a 503 and is closed (default 512).
    pub max_connections: usize,
    /// Time allowed for a complete request head to arrive (default 5 s).
    pub header_read_timeout: Duration,
    /// A connection's whole life, keep-alive included (default 60 s).
    pub connection_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(60),
        }
    }
}

/// How long in-flight connections may take to finish once shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Pause after an `accept` failure that is not about one connection (EMFILE and friends).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bound on writing a 503 to (and draining) a connection over the limit.
const REJECT_TIMEOUT: Duration = Duration::from_millis(500);
/// At most this many connections are being answered a 503 at once; more are just closed.
const MAX_REJECTERS: usize = 64;
/// Largest request head accepted.
const MAX_HEADER_SIZE: usize = 32 * 1024;

const REJECT_BODY: &str = "too many connections, retry later\n";
/// The whole answer to a connection over the limit, written without hyper.
fn reject_response() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{REJECT_BODY}",
        REJECT_BODY.len()
    )
}

/// Serve `app` on `listener` until `shutdown` completes, within `limits`.
///
/// Returns once the listener is closed and every connection has finished (or was cut after
/// [`SHUTDOWN_GRACE`]). Accept failures are logged and retried, so in practice this returns
/// `Ok(())`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr().ok();
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let rejecters = Arc::new(Semaphore::new(MAX_REJECTERS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_SIZE);
    let builder = Arc::new(builder);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut accept_failures: u64 = 0;
    tracing::debug!(?local, ?limits, "serving");

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!("a connection task panicked: {e}");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_failures = 0;
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let conn = Connection {
                                builder: builder.clone(),
                                app: app.clone(),
                                connection_timeout: limits.connection_timeout,
                                stop: stop_rx.clone(),
                            };
                            tasks.spawn(async move {
                                conn.run(stream, peer).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "over max_connections: answering 503");
                            if let Ok(permit) = rejecters.clone().try_acquire_owned() {
                                tasks.spawn(async move {
                                    reject(stream).await;
                                    drop(permit);
                                });
                            } // else: dropping the stream closes it.
                        }
                    }
                }
                Err(e) if accept_error_is_per_connection(&e) => {
                    tracing::debug!("accept: {e}");
                }
                Err(e) => {
                    accept_failures += 1;
                    if accept_failures == 1 || accept_failures % 100 == 0 {
                        tracing::warn!(
                            failures = accept_failures,
                            "accept failed, retrying in {ACCEPT_BACKOFF:?}: {e}"
                        );
                    }
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = tasks.len();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            "connections still open {SHUTDOWN_GRACE:?} after shutdown: cut"
        );
    }
    tasks.shutdown().await;
    tracing::debug!(?local, in_flight, "server stopped");
    Ok(())
}

/// Whether an `accept` error concerns only the connection being accepted (which is then
/// gone), so accepting again at once is right. Linux passes pending network errors of the new
/// connection through `accept` (see accept(2)).
fn accept_error_is_per_connection(e: &io::Error) -> bool {
    if let Some(errno) = e.raw_os_error() {
        return matches!(
            errno,
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EOPNOTSUPP
                | libc::EAGAIN
                | libc::EINTR
        );
    }
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// One accepted connection, served by hyper until it ends, `connection_timeout` passes, or
/// shutdown (graceful: the request in flight finishes, keep-alive ends).
struct Connection {
    builder: Arc<http1::Builder>,
    app: axum::Router,
    connection_timeout: Duration,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        // The client's address, for handlers that need it (the on-demand probe's rate limit).
        let app = tower::ServiceExt::map_request(
            self.app,
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let service = TowerToHyperService::new(app);
        let mut conn = pin!(self.builder.serve_connection(TokioIo::new(stream), service));
        let mut cutoff = pin!(tokio::time::sleep(self.connection_timeout));
        let mut stopping = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    return;
                }
                () = &mut cutoff => {
                    tracing::debug!(%peer, "connection cut after {:?}", self.connection_timeout);
                    return;
                }
                _ = self.stop.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answer a connection over the limit with a 503 and close it, all within [`REJECT_TIMEOUT`].
/// After the answer the write side is shut and what the client sent is drained (bounded), so
/// the close is a FIN, not a reset that could destroy the 503 before the client reads it.
async fn reject(mut stream: TcpStream) {
    let response = reject_response();
    let _ = tokio::time::timeout(REJECT_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 2048];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            drained += n;
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    fn app() -> axum::Router {
        axum::Router::new().route("/", get(|| async { "hello\n" }))
    }

    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        handle: JoinHandle<io::Result<()>>,
    }

    impl Running {
        async fn start(limits: ServerLimits) -> Running {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            let handle = tokio::spawn(serve(listener, app(), limits, async {
                let _ = rx.await;
            }));
            Running {
                addr,
                stop: Some(tx),
                handle,
            }
        }

        /// Ask for shutdown; return how long `serve` took to return.
        async fn stop(mut self) -> Duration {
            let start = Instant::now();
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(10), self.handle)
                .await
                .expect("serve did not return after shutdown")
                .unwrap()
                .unwrap();
            start.elapsed()
        }
    }

    /// Send raw bytes, then read until the server closes (bounded by `limit`).
    async fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(limit, s.read_to_end(&mut out))
            .await
            .expect("server did not close")
            .ok();
        String::from_utf8_lossy(&out).into_owned()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn serves_a_request() {
        let server = Running::start(ServerLimits::default()).await;
        let answer = exchange(server.addr, GET, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("hello\n"), "{answer}");
        server.stop().await;
    }

    #[tokio::test]
    async fn slowloris_is_cut_at_header_read_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let server = Running::start(limits).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow:")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        let took = start.elapsed();
        assert!(read.is_ok(), "slowloris connection still open after 3 s");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
            "cut after {took:?}"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn silent_client_is_cut_at_header_read_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let server = Running::start(limits).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        let took = start.elapsed();
        assert!(read.is_ok(), "silent connection still open after 3 s");
        assert!(took < Duration::from_millis(1000), "cut after {took:?}");
        server.stop().await;
    }

    /// One keep-alive request, answered; then the connection idles until the server closes
    /// it (bounded by 3 s). The answer and how long the connection lived; `None`: still open.
    async fn keep_alive_until_cut(limits: ServerLimits) -> Option<(String, Duration)> {
        let server = Running::start(limits).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        let took = start.elapsed();
        server.stop().await;
        read.ok()
            .map(|_| (String::from_utf8_lossy(&buf).into_owned(), took))
    }

    #[tokio::test]
    async fn connection_is_cut_at_connection_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let (answer, took) = keep_alive_until_cut(limits)
            .await
            .expect("connection still open after 3 s");
        assert!(answer.starts_with("HTTP/1.1 200"));
        assert!(took >= Duration::from_millis(250), "cut after {took:?}");
    }

    /// An idle keep-alive connection waits for its next request head only as long as a head may
    /// take (`header_read_timeout`, 5 s by default), not the connection's whole life.
    #[tokio::test]
    async fn idle_keep_alive_is_cut_at_header_read_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            connection_timeout: Duration::from_secs(30),
            ..ServerLimits::default()
        };
        let (answer, took) = keep_alive_until_cut(limits)
            .await
            .expect("idle keep-alive connection still open after 3 s");
        assert!(answer.starts_with("HTTP/1.1 200"));
        assert!(took >= Duration::from_millis(250), "cut after {took:?}");
    }

    /// A request head up to `MAX_HEADER_SIZE` (32 KiB) is served; a larger one is refused.
    #[tokio::test]
    async fn request_heads_over_32_kib_are_refused() {
        let server = Running::start(ServerLimits::default()).await;
        let head = |pad: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
                "a".repeat(pad)
            )
        };
        let small = exchange(
            server.addr,
            head(30 * 1024).as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(small.starts_with("HTTP/1.1 200 OK\r\n"), "{small}");
        let large = exchange(
            server.addr,
            head(40 * 1024).as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(
            !large.starts_with("HTTP/1.1 200"),
            "a 40 KiB head was served: {}",
            large.chars().take(200).collect::<String>()
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_get_503() {
        let limits = ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        };
        let server = Running::start(limits).await;
        // Two keep-alive connections hold both permits.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(s);
        }
        let start = Instant::now();
        let answer = exchange(server.addr, GET, Duration::from_secs(2)).await;
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answer:?}"
        );
        assert!(answer.contains("connection: close"));
        assert!(start.elapsed() < Duration::from_millis(600));
        // Freeing a permit lets the next one in.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = exchange(server.addr, GET, Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_returns_promptly_with_idle_connections() {
        let server = Running::start(ServerLimits::default()).await;
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let _ = idle.read(&mut buf).await.unwrap();
        let addr = server.addr;
        let took = server.stop().await;
        assert!(took < Duration::from_millis(500), "took {took:?}");
        // The keep-alive connection was closed and the listener is gone.
        let n = idle.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn shutdown_cuts_stuck_connections_after_the_grace() {
        let server = Running::start(ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            ..ServerLimits::default()
        })
        .await;
        let mut stuck = TcpStream::connect(server.addr).await.unwrap();
        stuck.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let took = server.stop().await;
        assert!(
            took < SHUTDOWN_GRACE + Duration::from_millis(500),
            "took {took:?}"
        );
    }

    #[test]
    fn accept_errors_table() {
        let table = [
            (libc::ECONNABORTED, true),
            (libc::EPROTO, true),
            (libc::EINTR, true),
            (libc::EMFILE, false),
            (libc::ENFILE, false),
            (libc::ENOBUFS, false),
            (libc::ENOMEM, false),
        ];
        for (errno, per_connection) in table {
            assert_eq!(
                accept_error_is_per_connection(&io::Error::from_raw_os_error(errno)),
                per_connection,
                "errno {errno}"
            );
        }
    }

    #[test]
    fn reject_response_is_well_formed() {
        let r = reject_response();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
