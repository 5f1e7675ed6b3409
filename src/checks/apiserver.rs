//! The `apiserver` and `apiserver_endpoints` checks: TCP connect, TLS handshake and
//! `GET /readyz` to the API server — through its ClusterIP (`kubernetes.default.svc`, what every
//! pod's client dials) and, separately, to each endpoint address directly — success is HTTP 200.
//!
//! Rules:
//! - The certificate is verified against `--apiserver-ca` (in a pod, the service account's
//!   `ca.crt`) with the server name `kubernetes.default.svc` whatever address was dialled: that
//!   is how in-cluster clients verify, so a man in the middle or a wrong backend fails `tls`.
//! - The service account token, when there is one, goes as a Bearer header, re-read each run
//!   (projected tokens rotate) and bounded; `/readyz` answers anonymous clients too on most
//!   clusters, so its absence is no failure.
//! - One `apiserver_endpoints` check asks every endpoint (at most [`MAX_ENDPOINTS`]) at once and
//!   fails naming those that did not answer: the series stay one per source whatever the
//!   control plane's size (docs/metrics.md), and the detail says which endpoint.
//! - Every wait is under the check's `--timeout` (one deadline for connect, handshake, request
//!   and body); nothing read from the network is trusted: the body is read up to
//!   [`MAX_BODY`] bytes, only for the failure's detail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::Outcome;
use crate::model::ErrorClass;

/// The name in-cluster clients verify the API server's certificate against.
pub const SERVER_NAME: &str = "kubernetes.default.svc";

/// The endpoints one `apiserver_endpoints` check asks, at most (a control plane has 1-5).
pub use crate::config::apiserver::MAX_ENDPOINTS;

/// The body read of a failed `/readyz`, at most (for the detail: "etcd failed").
pub const MAX_BODY: usize = 4096;

/// The token file read, at most (a projected token is ~1 KiB).
const MAX_TOKEN: u64 = 16 * 1024;

/// The result labels these checks can report (`meshprobe_check_total{check,result}`): the pair
/// probes' connect errors (`timeout`, `refused`, `reset`, `net_unreachable`, …), and `tls`
/// (handshake or verification), `http_status` (not 200; the code in the detail), `protocol`.
pub const RESULTS: [&str; 9] = [
    "ok",
    "timeout",
    "refused",
    "reset",
    "net_unreachable",
    "host_unreachable",
    "tls",
    "http_status",
    "protocol",
];

/// A configured check: the addresses asked (one for the ClusterIP) and how to verify them.
pub struct ApiserverCheck {
    addrs: Vec<SocketAddr>,
    tls: Arc<rustls::ClientConfig>,
    token: Option<PathBuf>,
}

impl std::fmt::Debug for ApiserverCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiserverCheck")
            .field("addrs", &self.addrs)
            .field("token", &self.token)
            .finish()
    }
}

/// One address's failure.
#[derive(Debug, Clone, PartialEq)]
struct Fail {
    result: &'static str,
    error: ErrorClass,
    detail: String,
}

impl Fail {
    fn timeout(what: &str) -> Self {
        Fail {
            result: "timeout",
            error: ErrorClass::Timeout,
            detail: format!("no answer within the timeout ({what})"),
        }
    }

    fn protocol(detail: String) -> Self {
        Fail {
            result: "protocol",
            error: ErrorClass::Protocol {
                detail: detail.clone(),
            },
            detail,
        }
    }
}

impl ApiserverCheck {
    /// `addrs` at most [`MAX_ENDPOINTS`] (more are dropped); `token` read each run when set.
    pub fn new(
        addrs: Vec<SocketAddr>,
        tls: Arc<rustls::ClientConfig>,
        token: Option<PathBuf>,
    ) -> Self {
        let mut addrs = addrs;
        addrs.truncate(MAX_ENDPOINTS);
        ApiserverCheck { addrs, tls, token }
    }

    /// `IP:PORT[,IP:PORT…]`: the check's target label.
    pub fn target(&self) -> String {
        let list: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        list.join(",")
    }

    /// Ask every address at once, all within `timeout`: `ok` when each answered 200, else the
    /// first failing address's kind, the detail naming each that failed.
    pub async fn run(&self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let deadline = start + timeout;
        let auth = self.token.as_deref().and_then(read_token);
        let asks = self.addrs.iter().map(|&addr| {
            let (tls, auth) = (self.tls.clone(), auth.clone());
            async move {
                let mut at = "connect";
                let r = tokio::time::timeout_at(deadline, ask(addr, tls, auth, &mut at)).await;
                (addr, r.unwrap_or_else(|_| Err(Fail::timeout(at))))
            }
        });
        let results = futures::future::join_all(asks).await;
        let took = start.elapsed();
        let failed: Vec<(SocketAddr, Fail)> = results
            .into_iter()
            .filter_map(|(a, r)| r.err().map(|f| (a, f)))
            .collect();
        let Some((_, first)) = failed.first() else {
            if self.addrs.is_empty() {
                return Outcome::failed("protocol", took, None, "no address to ask");
            }
            return Outcome::ok(took);
        };
        let mut detail = if self.addrs.len() > 1 {
            format!("{} of {} failed: ", failed.len(), self.addrs.len())
        } else {
            String::new()
        };
        let each: Vec<String> = failed
            .iter()
            .map(|(a, f)| format!("{a} {}: {}", f.result, f.detail))
            .collect();
        detail.push_str(&each.join("; "));
        Outcome::failed(first.result, took, Some(first.error.clone()), detail)
    }
}

/// The token file's content as a header value, or `None` (absent, empty, too long, not one
/// line of printable ASCII: sent as no header rather than as garbage or a cut token).
fn read_token(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_TOKEN + 1)
        .read_to_string(&mut s)
        .ok()?;
    let t = s.trim();
    let ok =
        !t.is_empty() && s.len() as u64 <= MAX_TOKEN && t.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| format!("Bearer {t}"))
}

/// One address: connect, handshake, `GET /readyz`; `at` says which step a timeout cut.
async fn ask(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    auth: Option<String>,
    at: &mut &'static str,
) -> Result<(), Fail> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        let error = crate::probe::classify::io_error(&e);
        Fail {
            result: error.label(),
            detail: error.to_string(),
            error,
        }
    })?;
    *at = "TLS handshake";
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(tls_fail)?;
    *at = "GET /readyz";
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(16 * 1024)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| Fail::protocol(format!("HTTP: {e}")))?;
    // Ends with the connection: when the exchange is done or the deadline drops it.
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .uri("/readyz")
        .header("host", SERVER_NAME)
        .header(
            "user-agent",
            concat!("meshprobe/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(a) = &auth {
        req = req.header("authorization", a);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| Fail::protocol(format!("building the request: {e}")))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Fail::protocol(format!("HTTP: {e}")))?;
        let code = resp.status().as_u16();
        if code == 200 {
            return Ok(());
        }
        *at = "reading the answer";
        // The body only names what is not ready; a larger or broken one is cut, not an error.
        let body = match Limited::new(resp.into_body(), MAX_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        Err(Fail {
            result: "http_status",
            error: ErrorClass::HttpStatus { code },
            detail: status_detail(code, &body),
        })
    }
    .await;
    conn.abort();
    result
}

/// A handshake error: `tls`, unless the connection itself broke (reset, closed).
fn tls_fail(e: std::io::Error) -> Fail {
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls {
        let detail = format!("TLS: {e}");
        return Fail {
            result: "tls",
            error: ErrorClass::Protocol {
                detail: detail.clone(),
            },
            detail,
        };
    }
    let error = crate::probe::classify::io_error(&e);
    Fail {
        result: error.label(),
        detail: format!("TLS handshake: {error}"),
        error,
    }
}

/// "HTTP 503: [-]etcd failed: reason withheld": the code and the body's first lines, printable
/// characters only, short.
fn status_detail(code: u16, body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    if text.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA: its PEM and what signs with it.
    pub(crate) fn new_ca() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), rcgen::Issuer::new(params, key))
    }

    /// A server certificate for `names` signed by `issuer`: (cert PEM, key PEM).
    pub(crate) fn leaf(
        issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
        names: &[&str],
    ) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
        let dir = std::env::temp_dir().join(format!(
            "mp-api-ca-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ca.crt");
        std::fs::write(&f, ca_pem).unwrap();
        let tls = crate::promclient::ca_file_config(&f, "--apiserver-ca").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        tls.0
    }

    #[derive(Clone, Copy)]
    enum Answer {
        Status(u16, &'static str),
        /// Handshake, then never answer.
        Silent,
    }

    /// A TLS server on loopback answering every request with `answer`; the request heads it
    /// read go to the returned list.
    async fn server(
        cert: &str,
        key: &str,
        answer: Answer,
    ) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        use rustls::pki_types::pem::PemObject;
        let certs =
            vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match tls.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    match answer {
                        Answer::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
                        Answer::Status(code, body) => {
                            let resp = format!(
                                "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = tls.write_all(resp.as_bytes()).await;
                            let _ = tls.shutdown().await;
                        }
                    }
                });
            }
        });
        (addr, heads)
    }

    /// The real check against TLS servers on loopback: 200 is `ok` with the token sent and the
    /// name verified; a non-200, a certificate for another name or from another CA, a closed
    /// port and silence each fail with their kind, within the timeout.
    #[tokio::test]
    async fn readyz_over_verified_tls_with_bounded_error_kinds() {
        let (ca, issuer) = new_ca();
        let (cert, key) = leaf(&issuer, &[SERVER_NAME]);
        let tls = client(&ca);
        let dir = std::env::temp_dir().join(format!("mp-api-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "sa-token-1\n").unwrap();
        let t = Duration::from_millis(500);

        let (ok_addr, heads) = server(&cert, &key, Answer::Status(200, "ok")).await;
        let c = ApiserverCheck::new(vec![ok_addr], tls.clone(), Some(token.clone()));
        let o = c.run(t).await;
        assert_eq!((o.result, o.detail.as_str()), ("ok", ""), "{o:?}");
        let head = heads.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.starts_with("get /readyz http/1.1"), "{head}");
        assert!(
            head.contains("authorization: bearer sa-token-1\r\n"),
            "{head}"
        );
        assert!(head.contains("host: kubernetes.default.svc\r\n"), "{head}");
        // The token is re-read each run (projected tokens rotate).
        std::fs::write(&token, "sa-token-2").unwrap();
        assert!(c.run(t).await.success());
        assert!(heads.lock().unwrap()[1].contains("Bearer sa-token-2"));

        let (bad, _) = server(
            &cert,
            &key,
            Answer::Status(
                503,
                "[-]etcd failed: reason withheld\nreadyz check failed\n",
            ),
        )
        .await;
        let o = ApiserverCheck::new(vec![bad], tls.clone(), None)
            .run(t)
            .await;
        assert_eq!(o.result, "http_status");
        assert_eq!(o.error, Some(ErrorClass::HttpStatus { code: 503 }));
        assert_eq!(
            o.detail,
            format!(
                "{bad} http_status: HTTP 503: [-]etcd failed: reason withheld; readyz check failed"
            )
        );

        // A certificate for another name (the address dialled, say) from the trusted CA, and
        // one for the right name from another CA: tls.
        let (cert2, key2) = leaf(&issuer, &["127.0.0.1", "kubernetes.example"]);
        let (wrong_name, heard_a) = server(&cert2, &key2, Answer::Status(200, "ok")).await;
        let (_, other) = new_ca();
        let (cert3, key3) = leaf(&other, &[SERVER_NAME]);
        let (wrong_ca, heard_b) = server(&cert3, &key3, Answer::Status(200, "ok")).await;
        for addr in [wrong_ca, wrong_name] {
            let o = ApiserverCheck::new(vec![addr], tls.clone(), Some(token.clone()))
                .run(t)
                .await;
            assert_eq!(o.result, "tls", "{o:?}");
            assert!(o.detail.contains("TLS"), "{}", o.detail);
        }
        // Neither heard a request: the token goes only after a verified handshake.
        assert!(heard_a.lock().unwrap().is_empty() && heard_b.lock().unwrap().is_empty());

        // A closed port: refused; silence after the handshake: a timeout, within the timeout.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let o = ApiserverCheck::new(vec![closed], tls.clone(), None)
            .run(t)
            .await;
        assert_eq!(o.result, "refused", "{o:?}");
        let (silent, _) = server(&cert, &key, Answer::Silent).await;
        let start = Instant::now();
        let o = ApiserverCheck::new(vec![silent], tls.clone(), None)
            .run(t)
            .await;
        assert_eq!(o.result, "timeout", "{o:?}");
        assert!(o.detail.contains("GET /readyz"), "{}", o.detail);
        assert!(
            start.elapsed() < t + Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );

        // Endpoints: one check asks each; it fails naming those that did not answer.
        let all = ApiserverCheck::new(vec![ok_addr, closed, silent], tls.clone(), None);
        assert_eq!(all.target(), format!("{ok_addr},{closed},{silent}"));
        let o = all.run(t).await;
        assert!(!o.success());
        assert!(o.detail.starts_with("2 of 3 failed: "), "{}", o.detail);
        assert!(
            o.detail.contains(&format!("{closed} refused")),
            "{}",
            o.detail
        );
        assert!(
            o.detail.contains(&format!("{silent} timeout")),
            "{}",
            o.detail
        );
        assert!(!o.detail.contains(&ok_addr.to_string()), "{}", o.detail);
        let two = ApiserverCheck::new(vec![ok_addr, ok_addr], tls.clone(), None);
        assert!(two.run(t).await.success());
        let many: Vec<SocketAddr> = (0..20).map(|_| ok_addr).collect();
        assert_eq!(
            ApiserverCheck::new(many, tls, None).addrs.len(),
            MAX_ENDPOINTS
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_answers_are_named_by_code_and_short_printable_text() {
        assert_eq!(status_detail(503, b""), "HTTP 503");
        assert_eq!(
            status_detail(
                500,
                b"[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\nmore\n"
            ),
            "HTTP 500: [+]ping ok; [-]etcd failed: reason withheld; readyz check failed"
        );
        let hostile = [b'\x1b'; 5000];
        assert_eq!(status_detail(401, &hostile), "HTTP 401");
        assert!(status_detail(418, &[b'x'; 5000]).len() <= 130);
    }

    #[test]
    fn the_token_is_one_printable_line_or_no_header() {
        let dir = std::env::temp_dir().join(format!("mp-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "abc.def-ghi\n").unwrap();
        assert_eq!(read_token(&f).as_deref(), Some("Bearer abc.def-ghi"));
        for bad in ["", "\n", "a b", "a\r\nX-Evil: 1"] {
            std::fs::write(&f, bad).unwrap();
            assert_eq!(read_token(&f), None, "{bad:?}");
        }
        std::fs::write(&f, "a".repeat(MAX_TOKEN as usize)).unwrap();
        assert!(read_token(&f).is_some(), "at the cap");
        std::fs::write(&f, "a".repeat(MAX_TOKEN as usize + 1)).unwrap();
        assert_eq!(read_token(&f), None, "past the cap: no header");
        assert_eq!(read_token(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
