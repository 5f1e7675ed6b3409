//! A small HTTP/1.1 client for `POST /api/v1/probe`: one request on a new connection, the
//! answer read as NDJSON lines as they arrive. Bounded: a deadline for everything, a cap on
//! each line and on the whole answer. Used by forwarding agents and `meshprobe probe`.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Buf;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// Longest line accepted.
pub const MAX_LINE: usize = 1024 * 1024;
/// Largest whole answer accepted.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Body frames one line may arrive in, at most: an agent sends a line in one frame, and a peer
/// dripping a byte per frame must not cost a wake-up per byte for a whole line.
pub const MAX_FRAMES_PER_LINE: usize = 1024;

/// An answer being read.
pub struct Answer {
    pub status: u16,
    body: Incoming,
    buf: Vec<u8>,
    deadline: Instant,
    read: usize,
    done: bool,
    /// Bytes of `buf` already searched for a newline: each byte is looked at once.
    scanned: usize,
    /// Frames received since the last complete line.
    frames: usize,
}

/// POST `body` (JSON) to `path` at `addr`, everything within `deadline`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    deadline: Instant,
) -> Result<Answer, String> {
    let stream = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "timeout (connect)".to_string())?
        .map_err(|e| crate::probe::classify::io_error(&e).to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = tokio::time::timeout_at(
        deadline,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| "timeout (handshake)".to_string())?
    .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), conn).await;
    });
    let mut req = hyper::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/x-ndjson");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Full::new(hyper::body::Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    let resp = tokio::time::timeout_at(deadline, sender.send_request(req))
        .await
        .map_err(|_| "timeout (waiting for the answer)".to_string())?
        .map_err(|e| format!("HTTP: {e}"))?;
    Ok(Answer {
        status: resp.status().as_u16(),
        body: resp.into_body(),
        buf: Vec::new(),
        deadline,
        read: 0,
        done: false,
        scanned: 0,
        frames: 0,
    })
}

impl Answer {
    /// The next line (without its newline); `None` at the end of the answer. Only bytes not
    /// yet searched are searched, so a line costs time in its length, however it is cut up.
    pub async fn next_line(&mut self) -> Result<Option<String>, String> {
        loop {
            if let Some(off) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let pos = self.scanned + off;
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                self.scanned = 0;
                self.frames = 0;
                let text = String::from_utf8(line[..line.len() - 1].to_vec())
                    .map_err(|_| "answer is not UTF-8".to_string())?;
                if text.trim().is_empty() {
                    continue;
                }
                return Ok(Some(text));
            }
            self.scanned = self.buf.len();
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                self.scanned = 0;
                return String::from_utf8(rest)
                    .map(Some)
                    .map_err(|_| "answer is not UTF-8".to_string());
            }
            if self.buf.len() > MAX_LINE {
                return Err(format!("answer line longer than {MAX_LINE} bytes"));
            }
            if self.frames >= MAX_FRAMES_PER_LINE {
                return Err(format!(
                    "answer line cut into more than {MAX_FRAMES_PER_LINE} pieces (a peer dripping bytes)"
                ));
            }
            let frame = tokio::time::timeout_at(self.deadline, self.body.frame())
                .await
                .map_err(|_| "timeout (reading the answer)".to_string())?;
            match frame {
                None => self.done = true,
                Some(Err(e)) => return Err(format!("HTTP: {e}")),
                Some(Ok(f)) => {
                    self.frames += 1;
                    if let Ok(mut data) = f.into_data() {
                        self.read += data.remaining();
                        if self.read > MAX_ANSWER {
                            return Err(format!("answer larger than {MAX_ANSWER} bytes"));
                        }
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }

    /// The whole answer as text (at most `max` bytes).
    pub async fn text(&mut self, max: usize) -> Result<String, String> {
        let mut out = String::new();
        while let Some(l) = self.next_line().await? {
            if out.len() + l.len() > max {
                return Err(format!("answer larger than {max} bytes"));
            }
            out.push_str(&l);
            out.push('\n');
        }
        Ok(out)
    }
}
