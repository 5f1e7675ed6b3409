//! TCP prober: one handshake, then close. Also home of [`connect_timed`], the timed connect
//! the HTTP prober builds its connections on.
//!
//! The socket is built with socket2 (non-blocking, close-on-exec, `TCP_NODELAY`) and handed to
//! tokio as a [`TcpSocket`], so the handshake is the only thing timed as "connect".

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::{classify, BoxFuture, Prober};
use meshprobe_core::model::{Check, ErrorClass, Phases, ProbeResult};

/// Open a TCP connection to `addr`, giving up at `deadline`.
///
/// Returns the connected stream and the time the handshake took (socket creation included,
/// which is negligible). Failures are named by [`classify::io_error`] (`Refused`,
/// `NetUnreachable`, `HostUnreachable`, ...); reaching the deadline is `ErrorClass::Timeout`.
pub async fn connect_timed(
    addr: SocketAddr,
    deadline: Instant,
) -> Result<(TcpStream, Duration), ErrorClass> {
    let start = Instant::now();
    if start >= deadline {
        return Err(ErrorClass::Timeout);
    }
    let socket = new_socket(addr).map_err(|e| classify::io_error(&e))?;
    match tokio::time::timeout_at(deadline, socket.connect(addr)).await {
        Err(_) => Err(ErrorClass::Timeout),
        Ok(Err(e)) => Err(classify::io_error(&e)),
        Ok(Ok(stream)) => Ok((stream, start.elapsed())),
    }
}

/// A non-blocking, close-on-exec TCP socket with Nagle off, ready for tokio.
fn new_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    let std_stream: std::net::TcpStream = socket.into();
    Ok(TcpSocket::from_std_stream(std_stream))
}

/// Probes `Check::Tcp`: a handshake within the timeout, then an orderly close.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpProber;

impl TcpProber {
    async fn probe_addr(addr: SocketAddr, timeout: Duration) -> ProbeResult {
        let start = Instant::now();
        match connect_timed(addr, start + timeout).await {
            Err(error) => ProbeResult::failed(1, error),
            Ok((stream, _)) => {
                let connect = start.elapsed();
                drop(stream);
                let total = start.elapsed();
                ProbeResult::ok(
                    connect,
                    Some(Phases {
                        resolve: Duration::ZERO,
                        connect,
                        first_byte: None,
                        total,
                    }),
                )
            }
        }
    }
}

impl Prober for TcpProber {
    fn probe<'a>(&'a self, check: &'a Check, timeout: Duration) -> BoxFuture<'a, ProbeResult> {
        Box::pin(async move {
            match check {
                Check::Tcp { addr } => Self::probe_addr(*addr, timeout).await,
                other => ProbeResult::failed(
                    1,
                    ErrorClass::LocalError {
                        detail: format!("the TCP prober cannot run {}", check_kind(other)),
                    },
                ),
            }
        })
    }
}

/// A short name for a check, for error details.
pub(crate) fn check_kind(check: &Check) -> &'static str {
    match check {
        Check::Icmp { .. } => "an ICMP check",
        Check::Tcp { .. } => "a TCP check",
        Check::Http { .. } => "an HTTP check",
    }
}

/// A port nothing listens on: bind, note the port, close (tests only).
#[cfg(test)]
pub(crate) fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_ok_sets_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let (stream, took) = connect_timed(addr, deadline).await.unwrap();
        assert!(stream.nodelay().unwrap());
        assert!(took < Duration::from_secs(1));
        assert_eq!(stream.peer_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn connect_to_closed_port_is_refused_quickly() {
        let addr = closed_port();
        let start = Instant::now();
        let err = connect_timed(addr, start + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err, ErrorClass::Refused);
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn connect_past_deadline_is_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let err = connect_timed(addr, Instant::now()).await.unwrap_err();
        assert_eq!(err, ErrorClass::Timeout);
    }

    #[tokio::test]
    async fn tcp_probe_ok_with_ordered_phases() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = TcpProber
            .probe(&Check::Tcp { addr }, Duration::from_secs(1))
            .await;
        assert!(r.success(), "{r:?}");
        assert_eq!((r.sent, r.received), (1, 1));
        let p = r.phases.unwrap();
        assert_eq!(p.resolve, Duration::ZERO);
        assert!(p.connect <= p.total);
        assert_eq!(p.first_byte, None);
        assert_eq!(r.rtts, vec![p.connect]);
    }

    #[tokio::test]
    async fn tcp_probe_refused() {
        let r = TcpProber
            .probe(
                &Check::Tcp {
                    addr: closed_port(),
                },
                Duration::from_secs(1),
            )
            .await;
        assert!(!r.success());
        assert_eq!(r.error, Some(ErrorClass::Refused));
        assert_eq!(r.received, 0);
    }

    #[tokio::test]
    async fn tcp_probe_rejects_other_checks() {
        let checks = [
            Check::Icmp {
                ip: "127.0.0.1".parse().unwrap(),
                count: 1,
                size: 56,
            },
            Check::Http {
                addr: "127.0.0.1:1".parse().unwrap(),
                path: "/".into(),
                expect_node: None,
            },
        ];
        for check in checks {
            let r = TcpProber.probe(&check, Duration::from_secs(1)).await;
            assert_eq!(r.error.as_ref().map(|e| e.label()), Some("local_error"));
        }
    }
}
