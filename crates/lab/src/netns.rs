//! Sockets inside the lab's namespaces, made from a process in the host's namespace: a short-lived
//! thread joins the namespace (`setns` only moves the calling thread), creates the socket and
//! hands it back. A socket keeps the namespace it was created in, so the caller can then use it
//! from any thread, including Tokio's. The host's own network is left untouched.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// The bind-mounted namespace file `ip netns add` makes.
pub fn netns_path(ns: &str) -> String {
    format!("/var/run/netns/{ns}")
}

/// A new TCP socket of `addr`'s family inside namespace `ns`.
pub fn tcp_socket_in(ns: &str, addr: &SocketAddr) -> io::Result<Socket> {
    socket_in(ns, addr, Type::STREAM)
}

/// A new socket of `addr`'s family and type `ty` (TCP for a stream, UDP for datagrams) inside
/// namespace `ns`.
pub fn socket_in(ns: &str, addr: &SocketAddr, ty: Type) -> io::Result<Socket> {
    let domain = Domain::for_address(*addr);
    let proto = if ty == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let file = std::fs::File::open(netns_path(ns))
        .map_err(|e| io::Error::new(e.kind(), format!("namespace {ns}: {e}")))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd; it affects only this thread, which ends here.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("setns {ns}: {e}")));
            }
            Socket::new(domain, ty, Some(proto))
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
    })
}

/// Connect to `addr` from inside namespace `ns` (Tokio).
pub async fn connect_in(
    ns: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<tokio::net::TcpStream> {
    let socket = tcp_socket_in(ns, &addr)?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect {addr} in {ns}: timed out"),
        )),
    }
}

/// Connect to `addr` from inside namespace `ns` (blocking).
pub fn connect_in_blocking(ns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = tcp_socket_in(ns, &addr)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

/// Listen on `addr` inside namespace `ns` (blocking listener; the e2e suite uses it).
pub fn listen_in(ns: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = tcp_socket_in(ns, &addr)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    Ok(socket.into())
}

/// A minimal HTTP/1.0 GET on a connected stream: (status, body).
pub fn http_get_blocking(
    mut stream: TcpStream,
    host: &str,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    stream.take(16 << 20).read_to_end(&mut buf)?;
    parse_response(&buf)
}

/// A minimal HTTP/1.0 GET from inside namespace `ns` (Tokio).
pub async fn http_get_in(
    ns: &str,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut s = connect_in(ns, addr, timeout).await?;
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        (&mut s).take(16 << 20).read_to_end(&mut buf).await?;
        parse_response(&buf)
    };
    match tokio::time::timeout(timeout * 2, work).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP GET timed out",
        )),
    }
}

fn parse_response(buf: &[u8]) -> io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((s, b.as_str()), (200, "ok"));
        let (s, b) = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_str()), (503, "abcde"));
        assert!(parse_response(b"garbage").is_err());
    }
}
