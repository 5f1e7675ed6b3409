//! A local HTTP server speaking enough of the Kubernetes API for kube-rs: list (with
//! resourceVersion), watch from a resourceVersion (newline-delimited events, bookmarks, a 410
//! Gone `ERROR` event when the version was compacted; a watch from a version the server has
//! not reached waits for it, as etcd does), label and field selectors, 403 for resources the
//! "service account" may not read, going down / coming back on one port, and coming back
//! from a backup with resourceVersions behind what clients saw (an etcd restore).
//! It serves real JSON objects (tests/fixtures/k8s/); a few builders make nodes, agent pods and
//! discovery settings from them.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use meshprobe::config::KubeSettings;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Kinds, by their URL plural: `pods`, `nodes`, `events`, `networkpolicies`.
#[derive(Default)]
struct State {
    rv: u64,
    /// (plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    /// (rv, plural, type, object) of every change.
    log: Vec<(u64, String, &'static str, Value)>,
    /// Watches from a version below this get 410 Gone.
    compacted: u64,
    /// Bumped to end every open watch stream.
    generation: u64,
    forbidden: HashSet<String>,
    down: bool,
    /// Answer lists this late (a slow API server).
    slow: Option<Duration>,
    /// Answer every request with this status (an API server failing, e.g. 500).
    fail: Option<u16>,
    /// Request lines seen: "GET /api/v1/pods?watch=1&…".
    requests: Vec<String>,
    /// Bodies of POSTs.
    posted: Vec<(String, Value)>,
}

/// The objects and their history at one resourceVersion: an etcd backup.
#[derive(Clone)]
pub struct Backup {
    rv: u64,
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<(u64, String, &'static str, Value)>,
    compacted: u64,
}

#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    pub addr: SocketAddr,
    server: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// tests/fixtures/k8s/NAME.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/k8s/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The node fixture as node `name` with internal address `addr`.
pub fn node_at(name: &str, addr: IpAddr) -> Value {
    let mut n = fixture("node.json");
    n["metadata"]["name"] = json!(name);
    n["status"]["addresses"][0]["address"] = json!(addr.to_string());
    n
}

/// The meshprobe pod fixture as `meshprobe-I` on `node-I`, pod and host IP `addr`.
pub fn agent_pod(i: u8, addr: IpAddr) -> Value {
    let mut a = fixture("pod-meshprobe.json");
    a["metadata"]["name"] = json!(format!("meshprobe-{i}"));
    a["spec"]["nodeName"] = json!(format!("node-{i}"));
    a["status"]["podIP"] = json!(addr.to_string());
    a["status"]["hostIP"] = json!(addr.to_string());
    a
}

/// Kubernetes discovery as the manifests set it up (agents `app.kubernetes.io/name=meshprobe`
/// in namespace meshprobe, targets annotated `meshprobe.io/probe`, no events), against
/// `api_url` (None: the kubeconfig's).
pub fn kube_settings(api_url: Option<String>, grace: Duration, liveness: Duration) -> KubeSettings {
    KubeSettings {
        api_url,
        selector: "app.kubernetes.io/name=meshprobe".into(),
        target_selector: Some("meshprobe.io/probe".into()),
        namespace: Some("meshprobe".into()),
        grace,
        publish_events: false,
        liveness,
        resync: meshprobe::config::DEFAULT_KUBE_RESYNC,
        resync_scales: true,
    }
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = FakeApi {
            state: Arc::new(Mutex::new(State {
                rv: 100,
                ..State::default()
            })),
            changed: Arc::new(Notify::new()),
            addr,
            server: Arc::new(Mutex::new(None)),
        };
        api.serve(listener);
        api
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let me = self.clone();
        let app = Router::new().fallback(
            move |method: axum::http::Method, uri: Uri, body: axum::body::Bytes| {
                let me = me.clone();
                async move { me.handle(method, uri, body).await }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// The API server goes away: the port refuses connections, open watches end.
    pub fn down(&self) {
        {
            let mut s = self.state.lock().unwrap();
            s.down = true;
            s.generation += 1;
        }
        self.changed.notify_waiters();
        if let Some(t) = self.server.lock().unwrap().take() {
            t.abort();
        }
    }

    /// ... and comes back on the same port.
    pub async fn up(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.state.lock().unwrap().down = false;
        self.serve(listener);
    }

    /// Requests are answered after `delay` (or when `slow(None)` comes first).
    pub fn slow(&self, delay: Option<Duration>) {
        self.state.lock().unwrap().slow = delay;
    }

    /// Every request gets `code` (e.g. 500) until `fail(None)`; open watches end at once.
    pub fn fail(&self, code: Option<u16>) {
        {
            let mut s = self.state.lock().unwrap();
            s.fail = code;
            s.generation += 1;
        }
        self.changed.notify_waiters();
    }

    pub fn forbid(&self, plural: &str) {
        self.state.lock().unwrap().forbidden.insert(plural.into());
    }

    /// Add or replace an object (by its metadata), as a watch event.
    pub fn put(&self, plural: &str, mut obj: Value) {
        {
            let mut s = self.state.lock().unwrap();
            s.rv += 1;
            let rv = s.rv;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            let key = key_of(plural, &obj);
            let kind = if s.objects.contains_key(&key) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.objects.insert(key, obj.clone());
            s.log.push((rv, plural.into(), kind, obj));
        }
        self.changed.notify_waiters();
    }

    pub fn delete(&self, plural: &str, ns: &str, name: &str) {
        {
            let mut s = self.state.lock().unwrap();
            s.rv += 1;
            let rv = s.rv;
            if let Some(mut obj) = s.objects.remove(&(plural.into(), ns.into(), name.into())) {
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                s.log.push((rv, plural.into(), "DELETED", obj));
            }
        }
        self.changed.notify_waiters();
    }

    /// Forget history (etcd compaction) and end open watches: clients resuming from their
    /// resourceVersion get 410 Gone and must list again.
    pub fn compact_and_drop_watches(&self) {
        {
            let mut s = self.state.lock().unwrap();
            s.compacted = s.rv + 1;
            s.generation += 1;
        }
        self.changed.notify_waiters();
    }

    /// A backup of the objects as they are now.
    pub fn backup(&self) -> Backup {
        let s = self.state.lock().unwrap();
        Backup {
            rv: s.rv,
            objects: s.objects.clone(),
            log: s.log.clone(),
            compacted: s.compacted,
        }
    }

    /// etcd restored from `b` without a revision bump: objects, history and resourceVersion
    /// go back to the backup's, behind what clients saw; no 410 comes for their newer versions
    /// (a watch from one waits until the server reaches it). Open watches end.
    pub fn restore(&self, b: &Backup) {
        {
            let mut s = self.state.lock().unwrap();
            s.rv = b.rv;
            s.objects = b.objects.clone();
            s.log = b.log.clone();
            s.compacted = b.compacted;
            s.generation += 1;
        }
        self.changed.notify_waiters();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn posted(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().posted.clone()
    }

    async fn handle(
        &self,
        method: axum::http::Method,
        uri: Uri,
        body: axum::body::Bytes,
    ) -> Response {
        let q: BTreeMap<String, String> = uri.query().map(url_pairs).unwrap_or_default();
        let (plural, ns, one) = match parse_path(uri.path()) {
            Some(x) => x,
            None => return status(404, "NotFound", &format!("no route {}", uri.path())),
        };
        {
            let mut s = self.state.lock().unwrap();
            s.requests.push(format!("{method} {uri}"));
            if s.down {
                return status(503, "ServiceUnavailable", "apiserver is shutting down");
            }
            if let Some(code) = s.fail {
                return status(code, "InternalError", "etcdserver: request timed out");
            }
            if s.forbidden.contains(&plural) {
                return status(
                    403,
                    "Forbidden",
                    &format!("{plural} is forbidden: User \"system:serviceaccount:meshprobe:meshprobe\" cannot list resource \"{plural}\" in API group \"\" at the cluster scope"),
                );
            }
            if method == axum::http::Method::POST {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                s.posted.push((uri.path().to_string(), v.clone()));
                drop(s);
                let mut v = v;
                self.put(&plural, {
                    v["metadata"]["namespace"] = json!(ns.clone().unwrap_or_default());
                    v.clone()
                });
                return (StatusCode::CREATED, axum::Json(v)).into_response();
            }
        }
        let delay = self.state.lock().unwrap().slow;
        if let Some(d) = delay {
            // Answered after `d`, or as soon as the server is no longer slow.
            let until = tokio::time::Instant::now() + d;
            while tokio::time::Instant::now() < until && self.state.lock().unwrap().slow.is_some() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let Some(name) = one {
            let s = self.state.lock().unwrap();
            let key = (plural.clone(), ns.clone().unwrap_or_default(), name.clone());
            return match s.objects.get(&key) {
                Some(o) => axum::Json(o.clone()).into_response(),
                None => status(404, "NotFound", &format!("{plural} \"{name}\" not found")),
            };
        }
        let labels = q.get("labelSelector").cloned().unwrap_or_default();
        let fields = q.get("fieldSelector").cloned().unwrap_or_default();
        let matches = {
            let ns = ns.clone();
            move |obj: &Value| {
                (ns.is_none() || obj["metadata"]["namespace"].as_str() == ns.as_deref())
                    && label_match(&labels, &obj["metadata"]["labels"])
                    && field_match(&fields, obj)
            }
        };
        if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
            return self.watch(plural, q, matches).await;
        }
        let s = self.state.lock().unwrap();
        let items: Vec<&Value> = s
            .objects
            .iter()
            .filter(|((p, _, _), o)| *p == plural && matches(o))
            .map(|(_, o)| o)
            .collect();
        axum::Json(json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": s.rv.to_string()},
            "items": items,
        }))
        .into_response()
    }

    async fn watch(
        &self,
        plural: String,
        q: BTreeMap<String, String>,
        matches: impl Fn(&Value) -> bool + Send + 'static,
    ) -> Response {
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        let secs: u64 = q
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10)
            .min(10);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
        let me = self.clone();
        tokio::spawn(async move {
            let gen = me.state.lock().unwrap().generation;
            if from < me.state.lock().unwrap().compacted {
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "Expired", "code": 410,
                    "message": format!("too old resource version: {from}")}});
                let _ = tx.send(format!("{gone}\n")).await;
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            let mut at = from;
            loop {
                let notified = me.changed.notified();
                let out: Vec<String> = {
                    let s = me.state.lock().unwrap();
                    if s.generation != gen || s.down {
                        return;
                    }
                    let evs: Vec<String> = s
                        .log
                        .iter()
                        .filter(|(rv, p, _, o)| *rv > at && *p == plural && matches(o))
                        .map(|(_, _, t, o)| json!({"type": t, "object": o}).to_string() + "\n")
                        .collect();
                    // Never back: a watch from a version the server has not reached waits for it.
                    at = at.max(s.rv);
                    evs
                };
                for line in out {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if bookmarks {
                            let bm = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                "metadata": {"resourceVersion": at.to_string()}}});
                            if tx.send(format!("{bm}\n")).await.is_err() { return; }
                        }
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|o| o.map(|s| Ok::<_, std::io::Error>(axum::body::Bytes::from(s))))
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}),
        ),
    )
        .into_response()
}

fn key_of(plural: &str, obj: &Value) -> (String, String, String) {
    (
        plural.into(),
        obj["metadata"]["namespace"].as_str().unwrap_or("").into(),
        obj["metadata"]["name"].as_str().unwrap_or("").into(),
    )
}

/// `/api/v1/pods`, `/api/v1/namespaces/NS/pods`, `/apis/networking.k8s.io/v1/namespaces/NS/networkpolicies`, ...
fn parse_path(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match *parts.first()? {
        "api" => parts.get(2..)?,
        "apis" => parts.get(3..)?,
        _ => return None,
    };
    match rest {
        [plural] => Some((plural.to_string(), None, None)),
        ["namespaces", ns, plural] => Some((plural.to_string(), Some(ns.to_string()), None)),
        ["namespaces", ns, plural, name] => Some((
            plural.to_string(),
            Some(ns.to_string()),
            Some(name.to_string()),
        )),
        [plural, name] => Some((plural.to_string(), None, Some(name.to_string()))),
        _ => None,
    }
}

fn url_pairs(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(c) => {
                        out.push(c);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated.
fn label_match(sel: &str, labels: &Value) -> bool {
    sel.split(',').filter(|t| !t.is_empty()).all(|t| {
        if let Some((k, v)) = t.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            labels[k].as_str() == Some(v)
        } else if let Some(k) = t.strip_prefix('!') {
            labels.get(k).is_none()
        } else {
            labels.get(t).is_some()
        }
    })
}

/// `spec.nodeName=x`, `involvedObject.name=y`, ..., comma-separated equalities.
fn field_match(sel: &str, obj: &Value) -> bool {
    sel.split(',').filter(|t| !t.is_empty()).all(|t| {
        let Some((path, want)) = t.split_once('=') else {
            return false;
        };
        let mut v = obj;
        for part in path.split('.') {
            v = &v[part];
        }
        v.as_str() == Some(want.trim_start_matches('='))
    })
}
