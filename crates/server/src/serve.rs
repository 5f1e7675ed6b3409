//! `meshprobe serve`: a small HTTP target, what the lab's "target pods" run.
//!
//! Routes:
//! * `GET /`, `GET /healthz`: `200 ok\n`;
//! * `GET /bytes/{n}`: `n` bytes of body, `n` ≤ 1 MiB (large bodies for path-MTU tests);
//! * `GET /status/{code}`: answers with that status, 200..=599 (application failures); 1xx
//!   and anything else outside 100..=599 is a 400 saying why.
//!
//! Every answer carries `x-meshprobe-name: NAME` when `--name` is given.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::server::{self, ServerLimits};
use meshprobe_core::error::{Error, Result};

/// The largest body `GET /bytes/{n}` serves.
pub const MAX_BYTES: usize = 1024 * 1024;
/// The response header naming this target.
pub const NAME_HEADER: &str = "x-meshprobe-name";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:8080",
        env = "MESHPROBE_LISTEN"
    )]
    pub listen: SocketAddr,
    /// Name of this target, echoed in every answer (header `x-meshprobe-name`).
    #[arg(long, value_name = "NAME", env = "MESHPROBE_NAME")]
    pub name: Option<String>,
}

/// Serve until Ctrl-C or SIGTERM; exit status 0 on a clean stop.
pub async fn run(args: ServeArgs) -> Result<u8> {
    let listener = bind(args.listen).await?;
    let local = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(listen = %local, name = args.name.as_deref(), "serving");
    server::serve(
        listener,
        router(args.name),
        ServerLimits::default(),
        stop_signal(),
    )
    .await?;
    tracing::info!("stopped");
    Ok(0)
}

/// Bind the listening socket; a failure names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Socket(format!("cannot listen on {addr}: {e}")))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                tracing::warn!("cannot listen for Ctrl-C: {e}");
                std::future::pending::<()>().await
            }
        }
        () = term => {}
    }
}

/// The target's routes (see the module documentation).
pub fn router(name: Option<String>) -> axum::Router {
    let router = axum::Router::new()
        .route("/", get(ok))
        .route("/healthz", get(ok))
        .route("/bytes/{n}", get(bytes))
        .route("/status/{code}", get(status))
        .route("/ping", get(ping_as_host));
    // A name that is not a valid header value is not echoed rather than refused.
    match name.and_then(|n| HeaderValue::from_str(&n).ok()) {
        None => router,
        Some(value) => router.layer(axum::middleware::map_response(
            move |mut response: Response| {
                let value = value.clone();
                async move {
                    response.headers_mut().insert(NAME_HEADER, value);
                    response
                }
            },
        )),
    }
}

async fn ok() -> &'static str {
    "ok\n"
}

/// `GET /ping` answered as an agent named after the address it was asked at (the Host header
/// without its port): one `meshprobe serve` can stand in for many agents whose node names are
/// their pod IPs — what `bench/agent.sh` does.
async fn ping_as_host(headers: axum::http::HeaderMap) -> Response {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let node = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .trim_matches(['[', ']']);
    axum::Json(meshprobe_core::model::PingBody {
        node: node.to_string(),
        zone: None,
    })
    .into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message + "\n").into_response()
}

async fn bytes(Path(n): Path<String>) -> Response {
    let n: usize = match n.parse() {
        Ok(n) => n,
        Err(_) => return bad_request(format!("/bytes/{{n}}: {n:?} is not a byte count")),
    };
    if n > MAX_BYTES {
        return bad_request(format!(
            "/bytes/{{n}}: {n} is more than the maximum of {MAX_BYTES} bytes (1 MiB)"
        ));
    }
    // A repeating, recognisable pattern: a truncated or corrupted body shows.
    const PATTERN: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n";
    let body: Vec<u8> = PATTERN.iter().copied().cycle().take(n).collect();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        body,
    )
        .into_response()
}

async fn status(Path(code): Path<String>) -> Response {
    let parsed = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok());
    let Some(status) = parsed else {
        return bad_request(format!(
            "/status/{{code}}: {code:?} is not an HTTP status between 100 and 599"
        ));
    };
    // An informational (1xx) status cannot be a final answer: hyper would send a 500 instead,
    // which would mislead whoever asked. Say so.
    if status.is_informational() {
        return bad_request(format!(
            "/status/{{code}}: {code} is informational (1xx) and cannot be a final answer; use 200..=599"
        ));
    }
    // 204 and 304 carry no body.
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return status.into_response();
    }
    (status, format!("status {}\n", status.as_u16())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(app: &axum::Router, path: &str) -> (StatusCode, Vec<u8>, Option<String>) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let name = response
            .headers()
            .get(NAME_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 2 * MAX_BYTES)
            .await
            .unwrap();
        (status, body.to_vec(), name)
    }

    #[tokio::test]
    async fn ping_answers_as_the_host_it_was_asked_at() {
        let app = router(None);
        for (host, node) in [
            ("127.1.0.2:19464", "127.1.0.2"),
            ("[::1]:9464", "::1"),
            ("web", "web"),
        ] {
            let response = app
                .clone()
                .oneshot(
                    Request::get("/ping")
                        .header(header::HOST, host)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            let ping: meshprobe_core::model::PingBody = serde_json::from_slice(&body).unwrap();
            assert_eq!(ping.node, node, "{host}");
        }
    }

    #[tokio::test]
    async fn routes_table() {
        let app = router(None);
        let table: &[(&str, u16, Option<&[u8]>)] = &[
            ("/", 200, Some(b"ok\n")),
            ("/healthz", 200, Some(b"ok\n")),
            ("/bytes/0", 200, Some(b"")),
            ("/bytes/5", 200, Some(b"01234")),
            ("/bytes/1048577", 400, None),
            ("/bytes/-1", 400, None),
            ("/bytes/abc", 400, None),
            ("/status/200", 200, Some(b"status 200\n")),
            ("/status/500", 500, Some(b"status 500\n")),
            ("/status/503", 503, None),
            ("/status/404", 404, None),
            ("/status/204", 204, Some(b"")),
            ("/status/304", 304, Some(b"")),
            ("/status/100", 400, None),
            ("/status/101", 400, None),
            ("/status/599", 599, None),
            ("/status/99", 400, None),
            ("/status/600", 400, None),
            ("/status/x", 400, None),
            ("/nope", 404, None),
        ];
        for (path, want_status, want_body) in table {
            let (status, body, name) = get_path(&app, path).await;
            assert_eq!(status.as_u16(), *want_status, "{path}");
            if let Some(want) = want_body {
                assert_eq!(&body[..], *want, "{path}");
            }
            assert_eq!(name, None);
        }
    }

    #[tokio::test]
    async fn bytes_serves_exactly_n_up_to_one_mib() {
        let app = router(None);
        for n in [1, 64, 1500, 65_537, MAX_BYTES] {
            let (status, body, _) = get_path(&app, &format!("/bytes/{n}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body.len(), n);
        }
        let (_, body, _) = get_path(&app, "/bytes/2000000").await;
        let message = String::from_utf8(body).unwrap();
        assert!(message.contains("1048576"), "{message}");
    }

    #[tokio::test]
    async fn name_is_echoed_on_every_answer() {
        let app = router(Some("target-a".into()));
        for path in [
            "/",
            "/healthz",
            "/bytes/3",
            "/status/500",
            "/status/9",
            "/nope",
        ] {
            let (_, _, name) = get_path(&app, path).await;
            assert_eq!(name.as_deref(), Some("target-a"), "{path}");
        }
    }

    #[tokio::test]
    async fn bind_failure_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).await.unwrap_err();
        assert!(matches!(err, Error::Socket(_)));
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn args_default_and_parse() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct T {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let t = T::try_parse_from(["t", "--listen", "127.0.0.1:9999", "--name", "a"]).unwrap();
        assert_eq!(t.serve.listen, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(t.serve.name.as_deref(), Some("a"));
        assert!(T::try_parse_from(["t", "--listen", "nonsense"]).is_err());
    }
}
