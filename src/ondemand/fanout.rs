//! The `POST /api/v1/probe` handler: fence, validate, fan out, stream.
//!
//! Order matters for "a refused request sends no packet": rate (before the token, so wrong
//! tokens are limited too), token, body, validation, the slot, the agent's budget and — last,
//! for a `pod/NS/NAME` target — the pod lookup are all done before the first check or forward
//! starts. A forwarded request
//! (marked with [`FORWARDED_HEADER`]) runs here only and answers one `source` line; the original
//! answers NDJSON: `accepted`, one `source` per node as it arrives, `verdict`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client;
use super::limits::{check_token, client_key, Pool};
use super::request::{self, parse_body, validate, Context, Plan, Refusal, MAX_BODY_BYTES};
use super::request::{RawCheck, TargetSpec};
use super::request::{ResolvedPod, ResolvedService};
use super::run::{local_deadline, run_local};
use super::wire::{Accepted, Line, SourceLine, ALSO_HEADER, CLIENT_HEADER, FORWARDED_HEADER};
use crate::peers::PeerSet;
use crate::shared::Shared;

/// Time allowed to read a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time a forwarding agent waits for a peer beyond the peer's own deadline.
const FORWARD_SLACK: Duration = Duration::from_secs(2);
/// Largest forwarded answer (one source line).
const MAX_FORWARD_ANSWER: usize = 256 * 1024;

/// Longest wait for the pod resolver.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Peer agents asked at once.
pub const FANOUT_CONCURRENCY: usize = 32;
/// Longest any answer may take, however many waves of peers.
const MAX_ANSWER_TIME: Duration = Duration::from_secs(60);

fn refuse(s: &Shared, r: Refusal) -> Response {
    s.ondemand
        .requests
        .get_or_create(&[("outcome", r.code)])
        .inc();
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (status, axum::Json(&r)).into_response();
    if r.status == 429 {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// The one refusal an open agent (no token) gives for a pod it cannot probe, found or not.
fn pod_hidden(target: &str) -> Refusal {
    Refusal::new(
        403,
        "target_not_allowed",
        format!(
            "target {target}: not found, or not at an address this agent probes (an agent with --probe-token says which)"
        ),
    )
}

fn ndjson(line: &Line) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    Bytes::from(v)
}

/// `POST /api/v1/probe`.
/// A pod or Service lookup within [`RESOLVE_TIMEOUT`]; its failure is the refusal (on an
/// open agent a hidden "not found": without a token, which names exist is not told).
async fn looked_up<T>(
    lookup: impl std::future::Future<Output = Result<T, String>>,
    target: &str,
    open: bool,
) -> Result<T, Refusal> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(_)) if open => Err(pod_hidden(target)),
        Ok(Err(e)) => Err(Refusal::new(
            502,
            "kubernetes_error",
            format!("target {target}: {e}"),
        )),
        Err(_) => Err(Refusal::new(
            504,
            "kubernetes_error",
            format!(
                "target {target}: the Kubernetes API did not answer within {}s",
                RESOLVE_TIMEOUT.as_secs()
            ),
        )),
    }
}

pub async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    // Canonical: with `--listen [::]:PORT` an IPv4 peer arrives as `::ffff:a.b.c.d`.
    let client_ip: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    let headers = req.headers().clone();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    let peers: Arc<PeerSet> = match s.store.lock() {
        Ok(st) => st.peers().clone(),
        Err(p) => p.into_inner().peers().clone(),
    };
    let from_peer =
        client_ip.is_some_and(|ip| peers.peers.iter().any(|p| p.pod_ip.to_canonical() == ip));
    // Work is charged to the client that asked: for a request a peer agent forwards, the
    // client it names (trusted from a peer's address only); such requests take slots from
    // their own pool. A peer naming no client (an older agent) was charged where it came in.
    let (pool, origin) = if forwarded && from_peer {
        let named = headers
            .get(CLIENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<IpAddr>().ok())
            .map(client_key);
        (Pool::Forwarded, named)
    } else {
        let key = client_key(client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        (Pool::Direct, Some(key))
    };
    // The rate is charged before the token is checked: a wrong token costs a request too, so
    // tokens cannot be guessed faster than the rate.
    if let Some(key) = origin {
        if let Err(r) = s.ondemand.limits.rate(key) {
            return refuse(&s, r);
        }
    }
    let origin = origin.or(client_ip).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Err(r) = check_token(s.ondemand.limits.token.as_deref(), auth.as_deref()) {
        return refuse(&s, r);
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES);
    let body = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => return refuse(&s, Refusal::bad("request body not received within 5s")),
        Ok(Err(e)) => {
            let r = if e.is::<http_body_util::LengthLimitError>() {
                Refusal::new(
                    413,
                    "too_large",
                    format!("request body larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Refusal::bad(format!("request body: {e}"))
            };
            return refuse(&s, r);
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    let parsed = match parse_body(&body) {
        Ok(p) => p,
        Err(r) => return refuse(&s, r),
    };
    let mut cx = Context {
        me: &s.identity.node,
        peers: &peers,
        extra_allowed: &s.ondemand.extra_allowed,
        default_port: s.config.listen.port(),
        pod: None,
        service: None,
        // A forwarding agent's dual-stack pod: its other family's address (fenced in validate).
        also: headers
            .get(ALSO_HEADER)
            .filter(|_| forwarded)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok()),
    };
    // A pod is looked up last: after everything else about the request is valid and a slot is
    // held, so a refused or surplus request costs the Kubernetes API nothing.
    let pod_target = match (&parsed.target, &s.ondemand.pods) {
        (TargetSpec::Pod { namespace, name }, Some(pods)) => {
            let checked = pods
                .admit(namespace, &parsed.target_text)
                .and_then(|()| request::precheck(&parsed, &cx));
            if let Err(r) = checked {
                return refuse(&s, r);
            }
            Some((pods, namespace.clone(), name.clone()))
        }
        _ => None,
    };
    // A Service likewise: its namespace and checks first, the lookup after the slot.
    let svc_target = match (&parsed.target, &s.ondemand.services) {
        (TargetSpec::Service { namespace, name }, Some(svcs)) => {
            let checked = svcs
                .admit(namespace, &parsed.target_text)
                .and_then(|()| request::precheck(&parsed, &cx));
            if let Err(r) = checked {
                return refuse(&s, r);
            }
            Some((svcs, namespace.clone(), name.clone()))
        }
        _ => None,
    };
    // The families a target is probed at, when known before a lookup (a pod's: after it).
    let mut families = 1;
    if pod_target.is_none() && svc_target.is_none() {
        // Refused here without a slot (a pod or Service target without Kubernetes: 501).
        match validate(&parsed, &cx) {
            Ok(p) => families = p.target.addrs().len() as u32,
            Err(r) => return refuse(&s, r),
        }
    }
    let slot = match s.ondemand.limits.slot(pool, origin) {
        Ok(p) => p,
        Err(r) => return refuse(&s, r),
    };
    let mtu = parsed
        .checks
        .as_ref()
        .is_some_and(|l| l.iter().any(|c| matches!(c, RawCheck::Mtu)));
    if let Err(r) = s.ondemand.limits.agent_rate(families, mtu) {
        return refuse(&s, r);
    }
    // Without a token anyone may ask: whether a pod exists, and where, is not told.
    let open = s.ondemand.limits.token.is_none();
    let target = &parsed.target_text;
    let pod: Option<ResolvedPod> = match pod_target {
        Some((pods, namespace, name)) => {
            let mut allowed = request::derived_cidrs(&peers);
            allowed.extend_from_slice(&s.ondemand.extra_allowed);
            let admit = move |ip: IpAddr| crate::net::fence(ip, &allowed).is_ok();
            match looked_up(pods.resolve(&namespace, &name, &admit), target, open).await {
                Ok(p) => Some(p),
                Err(r) => return refuse(&s, r),
            }
        }
        None => None,
    };
    let service: Option<ResolvedService> = match svc_target {
        Some((svcs, namespace, name)) => {
            match looked_up(svcs.resolve(&namespace, &name), target, open).await {
                Ok(x) => Some(x),
                Err(r) => return refuse(&s, r),
            }
        }
        None => None,
    };
    cx.pod = pod.as_ref();
    cx.service = service.as_ref();
    let plan = match validate(&parsed, &cx) {
        Ok(p) => p,
        Err(_) if (pod.is_some() || service.is_some()) && open => {
            return refuse(&s, pod_hidden(&parsed.target_text))
        }
        Err(r) => return refuse(&s, r),
    };
    // A dual-stack pod costs its second family now that it is known.
    let more = (plan.target.addrs().len() as u32).saturating_sub(families);
    if more > 0 {
        if let Err(r) = s.ondemand.limits.agent_rate(more, mtu) {
            return refuse(&s, r);
        }
    }
    s.ondemand
        .requests
        .get_or_create(&[("outcome", "accepted")])
        .inc();
    let ndjson_type = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if forwarded {
        let line = run_local(
            &plan,
            &s.ondemand.runner,
            &s.identity.node,
            s.identity.zone.clone(),
        )
        .await;
        drop(slot);
        return (ndjson_type, ndjson(&Line::Source(line))).into_response();
    }
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(8);
    let shared = s.clone();
    // Peers get what they can resolve themselves: a pod as its (canonical) address; a Service
    // as written — each agent looks it up and fences it itself (a ClusterIP is in no range a
    // peer admits, and a forwarder's word for an address is not trusted).
    let target_text = match &pod {
        Some(_) => match plan.target.port {
            Some(port) => SocketAddr::new(plan.target.ip, port).to_string(),
            None => plan.target.ip.to_string(),
        },
        None => parsed.target_text.clone(),
    };
    // A dual-stack pod's other family travels in a header (see ALSO_HEADER).
    let also = pod
        .as_ref()
        .and_then(|_| plan.target.addrs().get(1).copied());
    let kube = pod.map(|p| p.facts);
    // What every forwarded request carries besides the mark: the token, and who asked.
    let mut pass_on = vec![(CLIENT_HEADER, origin.to_string())];
    if let Some(a) = auth {
        pass_on.push(("authorization", a));
    }
    if let Some(ip) = also {
        pass_on.push((ALSO_HEADER, ip.to_string()));
    }
    // A node target is resolved by each peer: the narrowing goes with it. Other targets are
    // sent as the addresses already narrowed (an older agent refuses the field).
    let family = match &parsed.target {
        TargetSpec::Node(_) => parsed.family,
        _ => None,
    };
    tokio::spawn(async move {
        let _slot = slot;
        let fwd = Forward {
            target_text,
            family,
            pass_on,
        };
        stream(shared, plan, peers, fwd, kube, &mut tx).await;
    });
    (ndjson_type, Body::new(body)).into_response()
}

/// What a forwarded request carries: the target as peers resolve it, the family narrowing
/// (node targets), and the headers besides the mark (token, client, a pod's other address).
struct Forward {
    target_text: String,
    family: Option<crate::model::IpFamilies>,
    pass_on: Vec<(&'static str, String)>,
}

/// Fan out, send each source's line as it arrives, then the verdict.
async fn stream(
    s: Arc<Shared>,
    plan: Plan,
    peers: Arc<PeerSet>,
    fwd: Forward,
    kube: Option<crate::diagnosis::KubeFacts>,
    tx: &mut http_body_util::channel::Sender<Bytes, Infallible>,
) {
    let started = Instant::now();
    let local = local_deadline(&plan, s.config.timeout);
    let per_source = local + FORWARD_SLACK;
    // Peers are asked FANOUT_CONCURRENCY at once: one wave's time per wave, capped.
    let waves = plan.sources.len().div_ceil(FANOUT_CONCURRENCY).max(1) as u32;
    let overall = (per_source * waves).min(MAX_ANSWER_TIME.max(per_source));
    let deadline = started + overall;
    let hard_stop = deadline + Duration::from_secs(1);
    let accepted = Accepted {
        target: plan.target.clone(),
        checks: plan.checks.clone(),
        sources: plan.sources.iter().map(|x| x.node.clone()).collect(),
        deadline_seconds: overall.as_secs_f64(),
    };
    if !send(tx, &Line::Accepted(accepted), hard_stop).await {
        return;
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(FANOUT_CONCURRENCY));
    let plan = Arc::new(plan);
    let mut set: JoinSet<SourceLine> = JoinSet::new();
    for src in plan.sources.clone() {
        let (s, plan) = (s.clone(), plan.clone());
        if src.me {
            set.spawn(async move {
                run_local(
                    &plan,
                    &s.ondemand.runner,
                    &s.identity.node,
                    s.identity.zone.clone(),
                )
                .await
            });
            continue;
        }
        let body = request::body(
            &fwd.target_text,
            &plan.checks,
            Some(std::slice::from_ref(&src.node)),
            fwd.family,
        );
        let mut headers = vec![(FORWARDED_HEADER, s.identity.node.clone())];
        headers.extend(fwd.pass_on.iter().cloned());
        let permits = permits.clone();
        set.spawn(async move {
            let t0 = Instant::now();
            let silent = |e: String| {
                SourceLine::silent(&src.node, src.zone.clone(), e, t0.elapsed().as_secs_f64())
            };
            let Ok(_permit) = permits.acquire_owned().await else {
                return silent("not asked".into());
            };
            let my_deadline = deadline.min(Instant::now() + per_source);
            forward(&src, &headers, body, my_deadline)
                .await
                .unwrap_or_else(silent)
        });
    }
    let mut lines: Vec<SourceLine> = Vec::new();
    loop {
        match tokio::time::timeout_at(hard_stop, set.join_next()).await {
            Ok(Some(Ok(line))) => {
                if !send(tx, &Line::Source(line.clone()), hard_stop).await {
                    set.abort_all();
                    return;
                }
                lines.push(line);
            }
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                set.abort_all();
                break;
            }
        }
    }
    // Sources with no line (a task that failed or overran): evidence too.
    for src in &plan.sources {
        if !lines.iter().any(|l| l.node == src.node) {
            let l = SourceLine::silent(
                &src.node,
                src.zone.clone(),
                "no answer within the deadline".into(),
                started.elapsed().as_secs_f64(),
            );
            if !send(tx, &Line::Source(l.clone()), hard_stop).await {
                return;
            }
            lines.push(l);
        }
    }
    let order: Vec<&str> = plan.sources.iter().map(|x| x.node.as_str()).collect();
    lines.sort_by_key(|l| order.iter().position(|n| *n == l.node));
    let v = super::verdict::verdict(&plan.target, &lines, &peers, kube, &s.identity.node);
    let _ = send(tx, &Line::Verdict(v), hard_stop + Duration::from_secs(1)).await;
}

/// Ask one peer agent to run the checks; its one `source` line, or why there is none.
async fn forward(
    src: &request::Source,
    headers: &[(&str, String)],
    body: serde_json::Value,
    deadline: Instant,
) -> Result<SourceLine, String> {
    let mut answer = client::post(
        src.addr,
        "/api/v1/probe",
        headers,
        body.to_string().into_bytes(),
        deadline,
    )
    .await
    .map_err(|e| format!("agent at {} did not answer: {e}", src.addr))?;
    let text = answer
        .text(MAX_FORWARD_ANSWER)
        .await
        .map_err(|e| format!("agent at {}: {e}", src.addr))?;
    if answer.status != 200 {
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        return Err(format!(
            "agent at {} refused ({}): {why}",
            src.addr, answer.status
        ));
    }
    match serde_json::from_str::<Line>(text.trim()) {
        Ok(Line::Source(mut l)) if l.node == src.node => {
            l.zone = l.zone.or(src.zone.clone());
            Ok(l)
        }
        Ok(Line::Source(l)) => Err(format!(
            "agent at {} answered as node {:?}, expected {:?}",
            src.addr, l.node, src.node
        )),
        _ => Err(format!("agent at {}: not a source line", src.addr)),
    }
}

/// Send one line, unless the client is gone or does not read before `by`.
async fn send(
    tx: &mut http_body_util::channel::Sender<Bytes, Infallible>,
    line: &Line,
    by: Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(by, tx.send(Frame::data(ndjson(line)))).await,
        Ok(Ok(()))
    )
}
