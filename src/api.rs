//! The agent's HTTP routes. Handlers only read [`Shared`]: the probe loop is the only writer.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus/OpenMetrics text |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once a first full probe round is done, else 503 |
//! | `GET /api/v1/results` | JSON: identity, discovery state, window figures per destination and layer |
//! | `GET /api/v1/diagnosis` | JSON [`MeshDiagnosis`]: this agent's and its peers' results, diagnosed (cached one interval) |
//! | `GET /ping` | JSON [`PingBody`]: the endpoint peers probe over HTTP |
//! | `GET /` | a small HTML overview |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::time::Instant;

use crate::agent::Shared;
use crate::diagnosis::{diagnose, AgentReport, Matrix};
use crate::discovery::DiscoveryStatus;
use crate::mesh::{self, MeshDiagnosis};
use crate::model::{Layer, PingBody};
use crate::store::{PeerResults, TargetResults};
use crate::window::WindowStats;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/ping", get(ping))
        .route("/api/v1/results", get(results))
        .route("/api/v1/diagnosis", get(diagnosis))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "no such route; try /, /metrics, /api/v1/results, /healthz, /readyz, /ping"})),
            )
        })
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match s.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
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

/// The `/api/v1/results` document.
#[derive(Debug, Serialize)]
pub struct Results {
    pub node: String,
    pub zone: Option<String>,
    pub version: &'static str,
    pub ready: bool,
    pub rounds: u64,
    pub interval_seconds: f64,
    pub timeout_seconds: f64,
    pub window_seconds: f64,
    pub icmp_socket: &'static str,
    pub discovery: DiscoveryStatus,
    pub peers: Vec<PeerResults>,
    pub targets: Vec<TargetResults>,
}

pub fn results_of(s: &Shared) -> Results {
    let snap = s
        .store
        .lock()
        .map(|st| st.snapshot(Instant::now()))
        .unwrap_or_else(|p| p.into_inner().snapshot(Instant::now()));
    Results {
        node: s.identity.node.clone(),
        zone: s.identity.zone.clone(),
        version: env!("CARGO_PKG_VERSION"),
        ready: s.ready.load(Ordering::Relaxed),
        rounds: s.rounds.load(Ordering::Relaxed),
        interval_seconds: s.config.interval.as_secs_f64(),
        timeout_seconds: s.config.timeout.as_secs_f64(),
        window_seconds: s.config.window.as_secs_f64(),
        icmp_socket: s.icmp_socket,
        discovery: s.discovery.lock().map(|d| d.clone()).unwrap_or_default(),
        peers: snap.peers,
        targets: snap.targets,
    }
}

async fn results(State(s): State<Arc<Shared>>) -> Json<Results> {
    Json(results_of(&s))
}

/// How long the mesh view waits for a peer's results: twice the probe timeout (2 s by default).
/// A peer agent that does not answer within that is evidence; waiting longer only delays the
/// answer for everyone else.
fn gather_timeout(s: &Shared) -> std::time::Duration {
    s.config.timeout * 2
}
/// Peers asked at once when gathering.
const GATHER_CONCURRENCY: usize = 16;

/// The mesh view, computed at most once per probe interval: concurrent callers wait for the one
/// fan-out in progress instead of starting their own.
pub async fn mesh_diagnosis(s: &Shared) -> Arc<MeshDiagnosis> {
    let mut cache = s.mesh_cache.lock().await;
    if let Some((at, d)) = cache.as_ref() {
        if at.elapsed() < s.config.interval {
            return d.clone();
        }
    }
    let set = s
        .store
        .lock()
        .map(|st| st.peers().clone())
        .unwrap_or_default();
    let results = results_of(s);
    // Peers whose agent our own HTTP probes find down (two failures in a row) are not asked:
    // waiting out the timeout for them would only delay the answer. Their silence is evidence.
    let down: std::collections::HashSet<&str> = results
        .peers
        .iter()
        .filter(|p| {
            p.layers
                .get(&Layer::Http)
                .is_some_and(|w| w.reachable == Some(false) && w.consecutive_failures >= 2)
        })
        .map(|p| p.node.as_str())
        .collect();
    let (skipped, ask): (Vec<_>, Vec<_>) =
        mesh::peer_agents(&set, &s.identity.node, s.config.listen.port())
            .into_iter()
            .partition(|(node, _)| down.contains(node.as_str()));
    let own = AgentReport::from_results(&results);
    // Kubernetes facts (when discovery is kubernetes) are fetched alongside the gathering,
    // within the same deadline, so a slow API server never delays the view.
    let facts = async {
        match &s.kube_facts {
            Some(k) => k.facts(std::slice::from_ref(&own), gather_timeout(s)).await,
            None => None,
        }
    };
    let (mut gathered, facts) = tokio::join!(
        crate::gather::gather(ask, gather_timeout(s), GATHER_CONCURRENCY),
        facts
    );
    gathered.extend(
        skipped
            .into_iter()
            .map(|(source, addr)| crate::gather::Gathered {
                source,
                addr,
                result: Err(crate::model::ErrorClass::LocalError {
                    detail: "not asked: this agent's own HTTP probes to it fail".into(),
                }),
            }),
    );
    let (mut inputs, agents_answered, agents_unreachable) = mesh::inputs(own, &gathered, &set);
    inputs.kube = facts.map(|f| f.as_ref().clone());
    let (diagnosis, held) =
        crate::k8s::hold_findings(diagnose(&Matrix::build(&inputs)), &results.discovery.held);
    let d = Arc::new(MeshDiagnosis {
        node: s.identity.node.clone(),
        agents_answered,
        agents_unreachable,
        diagnosis,
        held,
    });
    *cache = Some((Instant::now(), d.clone()));
    d
}

async fn diagnosis(State(s): State<Arc<Shared>>) -> Json<MeshDiagnosis> {
    Json(mesh_diagnosis(&s).await.as_ref().clone())
}

fn cell(stats: Option<&WindowStats>) -> String {
    let Some(st) = stats else {
        return r#"<td class="none">–</td>"#.to_string();
    };
    let (class, text) = match (st.reachable, st.loss_ratio) {
        (None, _) => ("none", "…".to_string()),
        (Some(false), _) => (
            "down",
            st.last_error
                .as_ref()
                .map_or("failed".to_string(), |e| e.label().to_string()),
        ),
        (Some(true), Some(loss)) if loss > 0.0 => ("lossy", format!("{:.0}% loss", loss * 100.0)),
        (Some(true), _) => (
            "up",
            st.rtt_seconds
                .map_or("ok".to_string(), |q| format!("{:.2} ms", q.p50 * 1000.0)),
        ),
    };
    let title = st
        .last_error
        .as_ref()
        .map(|e| escape(&e.to_string()))
        .unwrap_or_default();
    format!(
        r#"<td class="{class}" title="{title}">{}</td>"#,
        escape(&text)
    )
}

fn mtu_cell(m: Option<&crate::mtu::MtuReport>) -> String {
    use crate::mtu::MtuState;
    let Some(m) = m else {
        return r#"<td class="none">–</td>"#.to_string();
    };
    let class = match m.state {
        MtuState::Ok => "up",
        MtuState::Mismatch | MtuState::Blackhole => "down",
        MtuState::Searching | MtuState::Unknown => "none",
    };
    let size = m.path_mtu.map_or("?".to_string(), |v| v.to_string());
    format!(
        r#"<td class="{class}" title="expected {}">{size} {}</td>"#,
        m.expected_mtu,
        m.state.as_str()
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A server-rendered overview, readable without JavaScript; refreshes itself every interval.
async fn index(State(s): State<Arc<Shared>>) -> Html<String> {
    let r = results_of(&s);
    let refresh = r.interval_seconds.ceil().max(1.0) as u64;
    let mut html = format!(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content={refresh}>\
<title>meshprobe {node}</title><style>body{{font:14px sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:center}}.up{{background:#c8f0c8}}.lossy{{background:#f7e59b}}\
.down{{background:#f4a6a6}}.none{{color:#888}}</style></head><body><h1>meshprobe agent on {node}</h1>\
<p>zone {zone} · {ready} · {rounds} rounds · interval {iv}s · window {win}s · ICMP socket {sock} · \
<a href=/metrics>metrics</a> · <a href=/api/v1/results>results JSON</a></p>",
        node = escape(&r.node),
        zone = escape(r.zone.as_deref().unwrap_or("-")),
        ready = if r.ready { "ready" } else { "first round running" },
        rounds = r.rounds,
        iv = r.interval_seconds,
        win = r.window_seconds,
        sock = r.icmp_socket,
    );
    if let Some(e) = &r.discovery.last_error {
        html.push_str(&format!(
            "<p class=down>discovery failing, last good peer set kept: {}</p>",
            escape(e)
        ));
    }
    html.push_str("<h2>Peers</h2><table><tr><th>node</th><th>zone</th><th>ICMP pod IP</th><th>ICMP node IP</th><th>HTTP</th><th>path MTU (pod)</th></tr>");
    for p in &r.peers {
        html.push_str(&format!(
            "<tr><th>{}</th><td>{}</td>{}{}{}{}</tr>",
            escape(&p.node),
            escape(p.zone.as_deref().unwrap_or("-")),
            cell(p.layers.get(&Layer::IcmpPod)),
            cell(p.layers.get(&Layer::IcmpNode)),
            cell(p.layers.get(&Layer::Http)),
            mtu_cell(p.mtu.get(&Layer::IcmpPod)),
        ));
    }
    html.push_str("</table><h2>Targets</h2><table><tr><th>target</th><th>address</th><th>ICMP</th><th>TCP / HTTP</th></tr>");
    for t in &r.targets {
        let app = t.layers.get(&Layer::Http).or(t.layers.get(&Layer::Tcp));
        html.push_str(&format!(
            "<tr><th>{}</th><td>{}:{} ({})</td>{}{}</tr>",
            escape(&t.name),
            t.ip,
            t.port,
            t.protocol,
            cell(t.layers.get(&Layer::IcmpPod)),
            cell(app),
        ));
    }
    html.push_str("</table>");
    let mesh = mesh_diagnosis(&s).await;
    html.push_str(&format!(
        "<h2>Diagnosis</h2><p>mesh view from {} agent(s){}</p>",
        mesh.agents_answered.len(),
        if mesh.agents_unreachable.is_empty() {
            String::new()
        } else {
            let silent: Vec<String> = mesh
                .agents_unreachable
                .iter()
                .map(|u| escape(&format!("{} ({})", u.node, u.error)))
                .collect();
            format!("; no answer from {}", silent.join(", "))
        }
    ));
    if mesh.diagnosis.findings.is_empty() {
        html.push_str("<p class=up>healthy: no findings</p>");
    }
    for f in &mesh.held {
        html.push_str(&format!(
            "<p class=none>held, no alarm (the peer has not had its chance yet: node NotReady, cordoned or just joined): {}</p>",
            escape(&f.summary)
        ));
    }
    for f in &mesh.diagnosis.findings {
        let cause = serde_json::to_value(f.cause)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        html.push_str(&format!(
            "<div class=down style=padding:4px;margin:6px0><b>[{}]</b> {} ({:.0}%)<ul>",
            escape(&cause),
            escape(&f.summary),
            f.confidence * 100.0
        ));
        for e in f.evidence.iter().chain(f.next_steps.iter()) {
            html.push_str(&format!("<li>{}</li>", escape(e)));
        }
        html.push_str("</ul></div>");
    }
    html.push_str("</body></html>");
    Html(html)
}
