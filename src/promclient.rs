//! The Prometheus HTTP API client of `meshprobe diagnose --prometheus` (I/O; the data work is
//! [`crate::promsource`]): instant queries over HTTP or HTTPS, each on a new connection, each
//! within a timeout, answers capped in size. HTTPS is rustls (with ring, the TLS stack kube's
//! client already builds) on our own TCP connection, verifying the server against the system's
//! trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured) or a CA file (`--prometheus-ca`).
//! Optional auth from the environment: `MESHPROBE_PROMETHEUS_TOKEN` (bearer) or
//! `MESHPROBE_PROMETHEUS_USER` + `MESHPROBE_PROMETHEUS_PASSWORD` (basic).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Ceiling on one query's answer.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Where Prometheus listens, and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromUrl {
    /// `https://`: TLS, verified with [`PromUrl::tls`] (the system's trust store when unset).
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix (Prometheus behind `--web.route-prefix`), without a trailing slash.
    pub prefix: String,
    /// The `Authorization` header value.
    pub auth: Option<String>,
    /// The TLS client settings ([`tls_config`]); set once, shared by every query.
    pub tls: Option<Tls>,
}

/// A rustls client configuration (compared by identity: it holds trust anchors, not data).
#[derive(Clone)]
pub struct Tls(pub Arc<rustls::ClientConfig>);

impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Tls {}
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

/// The TLS client settings: trust the certificates of the PEM file `ca` (`--prometheus-ca`),
/// else the system's trust store. Errors name the file, or say that the system has none.
pub fn tls_config(ca: Option<&Path>) -> Result<Tls, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => return ca_file_config(path, "--prometheus-ca"),
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "no certificate in the system's trust store{}; give --prometheus-ca FILE",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", why.join("; "))
                    }
                ));
            }
        }
    }
    client_config(roots)
}

/// The TLS client settings trusting only the CA certificates of the PEM file `path` (at most
/// 1 MiB); errors name `flag` and the file.
pub fn ca_file_config(path: &Path, flag: &str) -> Result<Tls, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use std::io::Read;
    const MAX_CA_BYTES: u64 = 1024 * 1024;
    let what = format!("{flag} {}", path.display());
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_BYTES + 1).read_to_end(&mut pem))
        .map_err(|e| format!("{what}: {e}"))?;
    if pem.len() as u64 > MAX_CA_BYTES {
        return Err(format!("{what}: larger than {MAX_CA_BYTES} bytes"));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{what}: not PEM certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{what}: a certificate rustls rejects: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{what}: no certificate in the file"));
    }
    client_config(roots)
}

fn client_config(roots: rustls::RootCertStore) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls(Arc::new(config)))
}

impl PromUrl {
    /// `http[s]://HOST[:PORT][/PREFIX]`; port 80 (443 with https) when none is given
    /// (Prometheus's own default is 9090: write it). Pure: the TLS settings come from
    /// [`PromUrl::with_ca`].
    pub fn parse(url: &str) -> Result<PromUrl, String> {
        let bad = |why: &str| format!("--prometheus {url:?}: {why}");
        let t = url.trim();
        let (https, rest) = if let Some(r) = t.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = t.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad(
                "expected http://HOST:PORT or https://HOST:PORT (e.g. http://127.0.0.1:9090)",
            ));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return Err(bad(
                "expected http://HOST:PORT or https://HOST:PORT (credentials go in the environment, see --help)",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
            None if https => 443,
            None => 80,
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad("bad host"));
        }
        let prefix = path.trim_end_matches('/');
        if prefix.contains(['?', '#']) {
            return Err(bad("no query or fragment, only a path prefix"));
        }
        Ok(PromUrl {
            https,
            host,
            port,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
            auth: None,
            tls: None,
        })
    }

    /// The TLS settings for an `https://` URL ([`tls_config`]: the CA file `ca`, else the
    /// system's trust store); a CA file with an `http://` URL is an error.
    pub fn with_ca(mut self, ca: Option<&Path>) -> Result<PromUrl, String> {
        if self.https {
            self.tls = Some(tls_config(ca)?);
        } else if let Some(ca) = ca {
            return Err(format!(
                "--prometheus-ca {}: only for an https:// Prometheus URL (got {})",
                ca.display(),
                self.display()
            ));
        }
        Ok(self)
    }

    /// The URL as given back in messages.
    pub fn display(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{host}:{}{}", self.port, self.prefix)
    }
}

/// The `Authorization` header from the environment (`get` reads a variable).
pub fn auth_from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let token = get("MESHPROBE_PROMETHEUS_TOKEN").filter(|t| !t.trim().is_empty());
    let user = get("MESHPROBE_PROMETHEUS_USER").filter(|t| !t.is_empty());
    let password = get("MESHPROBE_PROMETHEUS_PASSWORD");
    match (token, user, password) {
        (Some(_), Some(_), _) => Err(
            "MESHPROBE_PROMETHEUS_TOKEN and MESHPROBE_PROMETHEUS_USER are both set: choose bearer or basic auth".into(),
        ),
        (Some(t), None, _) => Ok(Some(format!("Bearer {}", t.trim()))),
        (None, Some(u), p) => Ok(Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{u}:{}", p.unwrap_or_default()).as_bytes())
        ))),
        (None, None, Some(_)) => {
            Err("MESHPROBE_PROMETHEUS_PASSWORD is set without MESHPROBE_PROMETHEUS_USER".into())
        }
        (None, None, None) => Ok(None),
    }
}

/// Percent-encode a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus to build the mesh view from: `diagnose --prometheus`, and the agent's
/// `--prometheus` above `--full-mesh-max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromSource {
    pub url: PromUrl,
    /// Extra label matchers for every query (`--prometheus-match`).
    pub matchers: Option<String>,
}

/// Every query of [`crate::promsource::QUERIES`], all at once (one connection each), each within
/// `timeout`, each answer capped at [`MAX_ANSWER_BYTES`] and parsed. The first error, in
/// query order, names the URL and the query.
pub async fn answers(
    src: &PromSource,
    timeout: Duration,
) -> Result<crate::promsource::Answers, String> {
    use crate::promsource::{parse_response, query_for, MAX_SERIES, QUERIES};
    let asked = QUERIES.iter().map(|&metric| async move {
        let q = query_for(metric, src.matchers.as_deref());
        let body = query(&src.url, &q, timeout, MAX_ANSWER_BYTES).await?;
        parse_response(&q, &body, MAX_SERIES)
            .map(|samples| (metric, samples))
            .map_err(|e| format!("Prometheus at {}: {e}", src.url.display()))
    });
    futures::future::join_all(asked).await.into_iter().collect()
}

/// `GET /api/v1/query?query=…` within `timeout` (resolving, connecting and reading included),
/// the answer capped at `max` bytes. Prometheus answers a bad query with 400/422 and a JSON
/// error: that body is returned for [`crate::promsource::parse_response`] to name; any other
/// non-2xx status is an error here. Errors name the URL and the query.
pub async fn query(url: &PromUrl, q: &str, timeout: Duration, max: usize) -> Result<Bytes, String> {
    let what = format!("Prometheus at {}, query {q:?}", url.display());
    match tokio::time::timeout(timeout, query_inner(url, q, max)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {timeout:?}")),
    }
}

async fn query_inner(url: &PromUrl, q: &str, max: usize) -> Result<Bytes, String> {
    let addrs: Vec<_> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let stream = stream.ok_or(last)?;
    if !url.https {
        return exchange(stream, url, q, max).await;
    }
    let tls = match &url.tls {
        Some(t) => t.clone(),
        None => tls_config(None)?,
    };
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| format!("{:?} is not a TLS server name: {e}", url.host))?;
    let stream = tokio_rustls::TlsConnector::from(tls.0)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {}: {e}", url.host))?;
    exchange(stream, url, q, max).await
}

/// One request and its answer on an open connection (plain TCP or TLS).
async fn exchange<S>(stream: S, url: &PromUrl, q: &str, max: usize) -> Result<Bytes, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut req = Request::builder()
        .uri(format!(
            "{}/api/v1/query?query={}",
            url.prefix,
            urlencode(q)
        ))
        .header("host", host)
        .header("accept", "application/json")
        .header(
            "user-agent",
            concat!("meshprobe/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(a) = &url.auth {
        req = req.header("authorization", a);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status();
        let body = match Limited::new(resp.into_body(), max).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(format!("answer larger than {max} bytes"))
            }
            Err(e) => return Err(format!("reading the answer: {e}")),
        };
        // 400 (bad_data) and 422 (execution) carry Prometheus's JSON error; 503 may too.
        let json_error = matches!(status.as_u16(), 400 | 422 | 503) && body.starts_with(b"{");
        if !status.is_success() && !json_error {
            let head = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
            return Err(format!("HTTP {status}: {head:?}"));
        }
        Ok(body)
    }
    .await;
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = PromUrl::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 9090, "")
        );
        let u = PromUrl::parse("http://prometheus.monitoring:9090/prom/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("prometheus.monitoring", 9090, "/prom")
        );
        assert_eq!(u.display(), "http://prometheus.monitoring:9090/prom");
        let u = PromUrl::parse("http://[::1]:9090").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9090));
        assert_eq!(u.display(), "http://[::1]:9090");
        assert_eq!(PromUrl::parse("http://prom").unwrap().port, 80);
        let u = PromUrl::parse("https://prom.example/x").unwrap();
        assert!(u.https && u.port == 443 && u.tls.is_none(), "{u:?}");
        assert_eq!(u.display(), "https://prom.example:443/x");
        assert!(!PromUrl::parse("http://prom").unwrap().https);
        for (bad, why) in [
            ("ftp://p:9090", "expected http://HOST:PORT or https://"),
            ("p:9090", "expected http://"),
            ("http://:9090", "bad host"),
            ("http://p:x", "port is not a number"),
            ("http://u:pw@p:9090", "credentials go in the environment"),
            ("http://p:9090/x?y=1", "no query"),
        ] {
            let e = PromUrl::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    fn env_owned(vars: Vec<(&'static str, &'static str)>) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_ca_file_is_checked_and_only_for_https() {
        let dir = std::env::temp_dir().join(format!("meshprobe-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let bad_pem = dir.join("bad.pem");
        std::fs::write(
            &bad_pem,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.join("missing.pem");
        for (path, why) in [
            (&missing, "No such file"),
            (&junk, "no certificate in the file"),
            (&bad_pem, "not PEM certificates"),
        ] {
            let e = tls_config(Some(path)).unwrap_err();
            assert!(
                e.starts_with(&format!("--prometheus-ca {}", path.display())) && e.contains(why),
                "{e}"
            );
        }
        let e = PromUrl::parse("http://p:9090")
            .unwrap()
            .with_ca(Some(&junk))
            .unwrap_err();
        assert!(e.contains("only for an https://"), "{e}");
        assert!(PromUrl::parse("http://p:9090")
            .unwrap()
            .with_ca(None)
            .unwrap()
            .tls
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn auth_from_the_environment() {
        let env = |vars: &'static [(&str, &str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(auth_from_env(env(&[])), Ok(None));
        assert_eq!(
            auth_from_env(env(&[("MESHPROBE_PROMETHEUS_TOKEN", "abc\n")])),
            Ok(Some("Bearer abc".into()))
        );
        // RFC 7617's example.
        assert_eq!(
            auth_from_env(env(&[
                ("MESHPROBE_PROMETHEUS_USER", "Aladdin"),
                ("MESHPROBE_PROMETHEUS_PASSWORD", "open sesame")
            ])),
            Ok(Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()))
        );
        assert!(auth_from_env(env(&[
            ("MESHPROBE_PROMETHEUS_TOKEN", "t"),
            ("MESHPROBE_PROMETHEUS_USER", "u")
        ]))
        .is_err());
        assert!(auth_from_env(env(&[("MESHPROBE_PROMETHEUS_PASSWORD", "p")])).is_err());
        // Padding, and bytes beyond ASCII.
        for (user, want) in [
            ("a", "Basic YTo="),
            ("ab", "Basic YWI6"),
            ("é", "Basic w6k6"),
        ] {
            assert_eq!(
                auth_from_env(env_owned(vec![("MESHPROBE_PROMETHEUS_USER", user)])),
                Ok(Some(want.into())),
                "{user}"
            );
        }
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `answer` (raw bytes) to any request, or
    /// nothing at all; returns its URL and the request head it saw.
    async fn server(answer: Option<Vec<u8>>) -> (PromUrl, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            match answer {
                Some(a) => {
                    let _ = s.write_all(&a).await;
                }
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
            head
        });
        let mut u = PromUrl::parse(&format!("http://127.0.0.1:{port}/p")).unwrap();
        u.auth = Some("Bearer t0k".into());
        (u, h)
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn queries_send_auth_and_encode_and_bound_everything() {
        let t = Duration::from_secs(2);
        let (u, h) = server(Some(http("200 OK", r#"{"status":"success"}"#))).await;
        let body = query(&u, r#"m{a="b"}"#, t, 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"status":"success"}"#);
        let head = h.await.unwrap();
        assert!(
            head.starts_with("GET /p/api/v1/query?query=m%7Ba%3D%22b%22%7D HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_lowercase().contains("authorization: bearer t0k"),
            "{head}"
        );

        // A bad query's JSON error comes back for the parser to name.
        let (u, _) = server(Some(http("400 Bad Request", r#"{"status":"error"}"#))).await;
        assert!(query(&u, "m{", t, 1024).await.is_ok());
        // Anything else non-2xx is an error naming URL and query.
        let (u, _) = server(Some(http("401 Unauthorized", "no"))).await;
        let e = query(&u, "up", t, 1024).await.unwrap_err();
        assert!(
            e.contains("http://127.0.0.1:") && e.contains("\"up\"") && e.contains("401"),
            "{e}"
        );
        // Too large.
        let (u, _) = server(Some(http("200 OK", &"x".repeat(2000)))).await;
        let e = query(&u, "up", t, 1024).await.unwrap_err();
        assert!(e.contains("larger than 1024 bytes"), "{e}");
        // Silent.
        let (u, _) = server(None).await;
        let e = query(&u, "up", Duration::from_millis(300), 1024)
            .await
            .unwrap_err();
        assert!(e.contains("no answer within 300ms"), "{e}");
        // Nobody listening.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let u = PromUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = query(&u, "up", t, 1024).await.unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
