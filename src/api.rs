//! The agent's HTTP routes. Handlers only read [`Shared`]: the probe loop is the only writer.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus/OpenMetrics text |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once a first full probe round is done (the body says when discovery is failing), else 503 |
//! | `GET /api/v1/results` | JSON: identity, discovery state, window figures per destination and layer, the per-source checks |
//! | `GET /api/v1/diagnosis` | JSON [`MeshDiagnosis`]: this agent's and its peers' results, diagnosed (cached one interval); `?include=inputs` adds what it rests on |
//! | `POST /api/v1/probe` | NDJSON: probe one target from every agent now, then the verdict ([`crate::ondemand`]) |
//! | `GET /ping` | JSON [`PingBody`]: the endpoint peers probe over HTTP |
//! | `GET /` | the live page: source × destination matrices per layer and the findings ([`heatmap`]); `?layer=` one layer |
//! | `GET /heatmap.svg` | one matrix as SVG, `?layer=icmp_pod` (default), `icmp_node`, `http`, `mtu`; `&family=ipv4\|ipv6` on a dual-stack mesh |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::compress;
use crate::config::PairMetrics;
use crate::diagnosis::AgentReport;
use crate::heatmap;
use crate::mesh::MeshDiagnosis;
use crate::model::{Family, PingBody};
use crate::shared::{mesh_diagnosis, results_of, Results, Shared};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/heatmap.svg", get(heatmap_svg))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/ping", get(ping))
        .route("/api/v1/results", get(results))
        .route("/api/v1/diagnosis", get(diagnosis))
        .route(
            "/api/v1/probe",
            axum::routing::post(crate::ondemand::fanout::handle),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "no such route; try /, /heatmap.svg, /metrics, /api/v1/results, /api/v1/diagnosis, /healthz, /readyz, /ping"})),
            )
        })
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let gzip = accepts_gzip(&headers);
    let every_pair = match s.config.pair_metrics {
        PairMetrics::All => true,
        PairMetrics::Auto => !s.plan.sampled.load(Ordering::Relaxed),
        PairMetrics::Failing | PairMetrics::None => false,
    };
    let inline = s.metrics.encode_inline(every_pair);
    let encode = move || {
        s.metrics
            .encode()
            .map(|text| compressed(text.into_bytes(), gzip))
    };
    // A small scrape is encoded here; a large one (or one of a burst) off the async workers.
    let body = if inline {
        Ok(encode())
    } else {
        render(encode).await
    };
    match body {
        Ok(Ok(body)) => body.into_response(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            &[],
        ),
        Ok(Err(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
        Err(r) => r,
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    compress::accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A body, gzip-compressed when the client accepts it and it is worth it.
struct Body {
    bytes: Vec<u8>,
    gzip: bool,
}

fn compressed(bytes: Vec<u8>, accepts_gzip: bool) -> Body {
    if accepts_gzip && bytes.len() >= compress::MIN_BYTES {
        Body {
            bytes: compress::gzip(&bytes),
            gzip: true,
        }
    } else {
        Body { bytes, gzip: false }
    }
}

impl Body {
    fn into_response(
        self,
        content_type: &'static str,
        extra: &[(header::HeaderName, &'static str)],
    ) -> Response {
        let mut r = self.bytes.into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Caches must not hand a gzip body to a client that did not ask for one.
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if self.gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (k, v) in extra {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        r
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        // Still ready while discovery fails (probing goes on with the last good set: marking
        // every agent unready during an API outage would take the whole mesh out), but said.
        let degraded = s.discovery.lock().ok().and_then(|d| d.last_error.clone());
        match degraded {
            Some(e) => (
                StatusCode::OK,
                format!("ready, degraded: discovery failing: {e}\n"),
            )
                .into_response(),
            None => (StatusCode::OK, "ready\n").into_response(),
        }
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first probe round is still running\n",
        )
            .into_response()
    }
}

async fn ping(State(s): State<Arc<Shared>>) -> Json<PingBody> {
    Json(PingBody {
        node: s.identity.node.clone(),
        zone: s.identity.zone.clone(),
    })
}

async fn results(State(s): State<Arc<Shared>>) -> Json<Results> {
    Json(results_of(&s))
}

#[derive(Debug, serde::Deserialize)]
struct DiagnosisQuery {
    include: Option<String>,
}

/// `?include=inputs` adds what the view rests on (`inputs`: every answering agent's results,
/// the agents that did not answer, the address and Kubernetes facts): a document that
/// `meshprobe diagnose --results FILE` replays exactly, for a bug report or a post-mortem.
async fn diagnosis(State(s): State<Arc<Shared>>, Query(q): Query<DiagnosisQuery>) -> Response {
    let with_inputs = match q.include.as_deref() {
        None | Some("") => false,
        Some("inputs") => true,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("include={other}: unknown; the one choice is include=inputs\n"),
            )
                .into_response()
        }
    };
    let mesh = mesh_diagnosis(&s).await;
    if !with_inputs {
        return Json(mesh.as_ref().clone()).into_response();
    }
    Json(crate::mesh::WithInputs::of(mesh.as_ref())).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct LayerQuery {
    layer: Option<String>,
    /// `ipv4` or `ipv6`: the matrices of that family (dual-stack); default each destination's first.
    family: Option<String>,
}

fn parse_family(q: &LayerQuery) -> Result<Option<Family>, (StatusCode, String)> {
    let Some(f) = q.family.as_deref().filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    Family::ALL
        .into_iter()
        .find(|x| x.as_str() == f)
        .map(Some)
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("family: {f:?}: expected ipv4 or ipv6\n"),
            )
        })
}

/// The documents the matrices show: every destination's figures of `family`, or as gathered.
fn reports_of(mesh: &MeshDiagnosis, family: Option<Family>) -> std::borrow::Cow<'_, [AgentReport]> {
    match family {
        Some(f) => {
            std::borrow::Cow::Owned(crate::diagnosis::family::project(&mesh.inputs, f).agents)
        }
        None => std::borrow::Cow::Borrowed(&mesh.inputs.agents),
    }
}

/// The peer set's nodes (this one included), for the page's rows and columns.
fn heatmap_nodes(s: &Shared) -> Vec<(String, Option<String>)> {
    let set = s
        .store
        .lock()
        .map(|st| st.peers().clone())
        .unwrap_or_default();
    let mut nodes: Vec<(String, Option<String>)> = set
        .peers
        .iter()
        .map(|p| (p.node.clone(), p.zone.clone()))
        .collect();
    if !nodes.iter().any(|(n, _)| *n == s.identity.node) {
        nodes.push((s.identity.node.clone(), s.identity.zone.clone()));
    }
    nodes
}

/// The page's input from the mesh view: nodes, the documents shown, findings.
fn heatmap_input<'a>(
    nodes: Vec<(String, Option<String>)>,
    mesh: &'a MeshDiagnosis,
    reports: &'a [AgentReport],
) -> heatmap::Input<'a> {
    heatmap::Input {
        nodes,
        reports,
        silent: &mesh.agents_unreachable,
        findings: &mesh.diagnosis.findings,
        held: &mesh.held,
    }
}

/// Render off the async workers: a 200-node matrix takes long enough to delay probes that
/// share the runtime (and so distort their RTTs).
async fn render<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the page failed\n",
        )
            .into_response()
    })
}

fn parse_layer(q: &LayerQuery) -> Result<Option<heatmap::View>, (StatusCode, String)> {
    q.layer
        .as_deref()
        .filter(|l| !l.is_empty() && *l != "all")
        .map(heatmap::View::parse)
        .transpose()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))
}

/// The live page: source × destination matrices per layer from the mesh view, and the findings.
/// Server-rendered (reads without JavaScript); a small script refreshes it every interval.
async fn index(
    State(s): State<Arc<Shared>>,
    Query(q): Query<LayerQuery>,
    headers: HeaderMap,
) -> Response {
    let gzip = accepts_gzip(&headers);
    let only = match parse_layer(&q) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let family = match parse_family(&q) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let r = results_of(&s);
    let mesh = mesh_diagnosis(&s).await;
    let nodes = heatmap_nodes(&s);
    let html = render(move || {
        let families: Vec<Family> = crate::diagnosis::family::families(&mesh.inputs)
            .into_iter()
            .collect();
        let header = heatmap::Header {
            node: &r.node,
            zone: r.zone.as_deref(),
            ready: r.ready,
            rounds: r.rounds,
            interval_seconds: r.interval_seconds,
            window_seconds: r.window_seconds,
            icmp_socket: r.icmp_socket,
            discovery_error: r.discovery.last_error.as_deref(),
            families: &families,
            family,
        };
        let reports = reports_of(&mesh, family);
        let page = heatmap::page(&header, &heatmap_input(nodes, &mesh, &reports), only);
        compressed(page.into_bytes(), gzip)
    })
    .await;
    match html {
        Ok(h) => h.into_response("text/html; charset=utf-8", &[]),
        Err(r) => r,
    }
}

/// `GET /heatmap.svg?layer=icmp_pod|icmp_node|http|mtu` (default icmp_pod): one matrix.
async fn heatmap_svg(
    State(s): State<Arc<Shared>>,
    Query(q): Query<LayerQuery>,
    headers: HeaderMap,
) -> Response {
    let gzip = accepts_gzip(&headers);
    let view = match parse_layer(&q) {
        Ok(v) => v.unwrap_or(heatmap::View::IcmpPod),
        Err(r) => return r.into_response(),
    };
    let family = match parse_family(&q) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let mesh = mesh_diagnosis(&s).await;
    let nodes = heatmap_nodes(&s);
    let svg = render(move || {
        let reports = reports_of(&mesh, family);
        let svg = heatmap::svg(&heatmap::matrix(
            &heatmap_input(nodes, &mesh, &reports),
            view,
        ));
        compressed(svg.into_bytes(), gzip)
    })
    .await;
    match svg {
        Ok(svg) => svg.into_response(
            "image/svg+xml; charset=utf-8",
            &[(header::CACHE_CONTROL, "no-store")],
        ),
        Err(r) => r,
    }
}
