//! A size cap on what the Kubernetes API server sends back. kube-rs reads a list response
//! whole and a watch stream line by line (`LinesCodec::new()`: no length limit), so an API
//! server (or anything in its place) sending an endless body or an endless line would grow the
//! agent's memory without bound. [`CapLayer`] wraps every response body in the client's tower
//! stack: a watch (`watch=true|1` in the query) may send any number of lines, each at most
//! `max` bytes; any other response at most `max` bytes in all. Past the cap the body ends in
//! an error ([`TooLarge`]), which kube-rs reports as a failed request or a failed watch (the
//! watcher then relists with its backoff) — memory stays bounded either way.
//!
//! Sizing ([`MAX_RESPONSE_BYTES`]): every list meshprobe makes is paginated or limited (the
//! watchers' pages of 500 objects, the facts' `limit`), so 32 MiB is ~2,000 full Node objects
//! — far above a real page, far below the pod's memory limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::{Request, Response};
use tower::{BoxError, Layer, Service};

/// Largest list response, and largest watch line, read from the API server.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The body went past its cap.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes API response: {what} longer than {max} bytes (a broken or hostile API server; meshprobe reads at most {max})")]
pub struct TooLarge {
    what: &'static str,
    max: usize,
}

/// How the cap counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// All bytes of the response (a list, a get).
    Total,
    /// Bytes since the last newline (a watch: one JSON event per line).
    PerLine,
}

/// Whether a request is a watch (kube-rs: `?watch=true`; `1` accepted too).
pub fn is_watch(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
}

/// The running count after `chunk`, and the largest count reached inside it: pure, so the
/// rule is tested without a body. `Total` adds everything; `PerLine` restarts after each `\n`.
pub fn advance(mode: Mode, count: usize, chunk: &[u8]) -> (usize, usize) {
    match mode {
        Mode::Total => {
            let c = count.saturating_add(chunk.len());
            (c, c)
        }
        Mode::PerLine => {
            let mut run = count;
            let mut peak = count;
            for seg in chunk.split_inclusive(|b| *b == b'\n') {
                let ends = seg.last() == Some(&b'\n');
                // The newline itself is not counted in its line.
                run = run.saturating_add(seg.len() - usize::from(ends));
                peak = peak.max(run);
                if ends {
                    run = 0;
                }
            }
            (run, peak)
        }
    }
}

/// A response body that fails once it passes its cap.
pub struct Capped<B> {
    inner: B,
    mode: Mode,
    max: usize,
    count: usize,
    failed: bool,
}

impl<B> Capped<B> {
    pub fn new(inner: B, mode: Mode, max: usize) -> Self {
        Capped {
            inner,
            mode,
            max,
            count: 0,
            failed: false,
        }
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let (count, peak) = advance(this.mode, this.count, data);
                    this.count = count;
                    if peak > this.max {
                        this.failed = true;
                        let what = match this.mode {
                            Mode::Total => "body",
                            Mode::PerLine => "watch event line",
                        };
                        return Poll::Ready(Some(Err(Box::new(TooLarge {
                            what,
                            max: this.max,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// Caps every response body of the service it wraps (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct CapLayer {
    pub max: usize,
}

impl<S> Layer<S> for CapLayer {
    type Service = Cap<S>;
    fn layer(&self, inner: S) -> Cap<S> {
        Cap {
            inner,
            max: self.max,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Cap<S> {
    inner: S,
    max: usize,
}

impl<S, ReqB, B> Service<Request<ReqB>> for Cap<S>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<Capped<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let mode = if is_watch(req.uri().query()) {
            Mode::PerLine
        } else {
            Mode::Total
        };
        let max = self.max;
        let fut = self.inner.call(req);
        Box::pin(async move { Ok(fut.await?.map(|b| Capped::new(b, mode, max))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_table() {
        use Mode::*;
        // (mode, count before, chunk, count after, peak)
        let table: &[(Mode, usize, &[u8], usize, usize)] = &[
            (Total, 0, b"", 0, 0),
            (Total, 5, b"ab\ncd", 10, 10),
            (PerLine, 0, b"", 0, 0),
            (PerLine, 0, b"abc", 3, 3),
            (PerLine, 3, b"de", 5, 5),
            (PerLine, 3, b"d\n", 0, 4),
            (PerLine, 0, b"\n\n\n", 0, 0),
            (PerLine, 0, b"ab\ncdefg\nh", 1, 5),
            // A long line inside one chunk, ended in the same chunk, is still seen.
            (PerLine, 2, b"xxxxxxxx\ny", 1, 10),
            (PerLine, usize::MAX, b"a", usize::MAX, usize::MAX),
        ];
        for (mode, before, chunk, after, peak) in table {
            assert_eq!(
                advance(*mode, *before, chunk),
                (*after, *peak),
                "{mode:?} {before} {:?}",
                String::from_utf8_lossy(chunk)
            );
        }
    }

    #[test]
    fn watch_requests_are_told_apart() {
        let table = [
            (None, false),
            (Some(""), false),
            (Some("limit=500"), false),
            (Some("watch=true&resourceVersion=1"), true),
            (Some("resourceVersion=1&watch=1"), true),
            (Some("watch=false"), false),
            (Some("nowatch=true"), false),
        ];
        for (q, want) in table {
            assert_eq!(is_watch(q), want, "{q:?}");
        }
    }

    /// An HTTP/1.1 server that answers any request with `chunk` over and over (each one
    /// chunked-encoding chunk) until `total` bytes are sent: 4 caps, so that without the cap
    /// the read ends (in a parse error, not the cap's) instead of filling memory.
    async fn serve(chunk: Vec<u8>, total: usize) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if s.write_all(head).await.is_err() {
                    continue;
                }
                let mut sent = 0;
                while sent < total {
                    sent += chunk.len();
                    let frame = [
                        format!("{:x}\r\n", chunk.len()).into_bytes(),
                        chunk.clone(),
                        b"\r\n".to_vec(),
                    ]
                    .concat();
                    if s.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
        });
        (url, h)
    }

    /// An API server sending a list of 4 caps: the real kube client fails the request at
    /// the cap instead of reading on (memory stays bounded), naming the cap.
    #[tokio::test]
    async fn an_endless_list_fails_at_the_cap() {
        use k8s_openapi::api::core::v1::Node;
        let (url, server) = serve(vec![b' '; 64 * 1024], 4 * MAX_RESPONSE_BYTES).await;
        let client = crate::k8s::client(Some(&url)).await.unwrap();
        let api = kube::Api::<Node>::all(client);
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            api.list(&Default::default()),
        )
        .await
        .expect("the cap ends the read");
        let err = got.expect_err("an endless list is an error").to_string();
        assert!(err.contains("longer than"), "{err}");
        server.abort();
    }

    /// A watch whose one event never ends its line fails at the cap; a watch sending many
    /// short lines (more bytes in all than the cap) is read on.
    #[tokio::test]
    async fn a_watch_is_capped_per_line_not_in_total() {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::Node;
        let params = kube::api::WatchParams::default();

        let (url, server) = serve(vec![b'x'; 64 * 1024], 4 * MAX_RESPONSE_BYTES).await;
        let api = kube::Api::<Node>::all(crate::k8s::client(Some(&url)).await.unwrap());
        let mut events = api.watch(&params, "0").await.unwrap().boxed();
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), events.next())
            .await
            .expect("the cap ends the read");
        let err = first.expect("an item").expect_err("an error").to_string();
        assert!(err.contains("longer than"), "{err}");
        server.abort();

        // 64 KiB of bookmark lines per chunk, past MAX_RESPONSE_BYTES in all.
        let line = br#"{"type":"BOOKMARK","object":{"kind":"Node","apiVersion":"v1","metadata":{"resourceVersion":"7"}}}"#;
        let mut chunk = Vec::new();
        while chunk.len() < 64 * 1024 {
            chunk.extend_from_slice(line);
            chunk.push(b'\n');
        }
        let per_chunk = chunk.len() / (line.len() + 1);
        let (url, server) = serve(chunk, MAX_RESPONSE_BYTES + 4 * 64 * 1024).await;
        let api = kube::Api::<Node>::all(crate::k8s::client(Some(&url)).await.unwrap());
        let mut events = api.watch(&params, "0").await.unwrap().boxed();
        let want = MAX_RESPONSE_BYTES / (line.len() + 1) + 2 * per_chunk;
        let mut n = 0;
        while n < want {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(30), events.next())
                .await
                .expect("events flow")
                .expect("the watch goes on");
            assert!(ev.is_ok(), "{ev:?}");
            n += 1;
        }
        server.abort();
    }
}
