//! Real agents on loopback addresses with `--discovery kubernetes` against the fake API server:
//! the watchers feed the probe loop through the same seam as the peers file; the results say
//! where peers come from; an annotated pod is probed; a NotReady node's troubles are held, not
//! raised; the API server going away keeps the probing going, and `meshprobe_discovery_healthy`
//! is 0 until a relist after its return; the scrape, Kubernetes-only series included, passes
//! `promtool check metrics`. ICMP needs CAP_NET_RAW or the
//! ping sysctl: without either the test says why and skips.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use meshprobe::config::{AgentConfig, ApiserverConfig, ChecksConfig, Discovery, ServiceRef};
use serde_json::{json, Value};
use support::eventually_async;
use support::fakeapi::{agent_pod, fixture, kube_settings, node_at, FakeApi};
use support::inproc::{self, Running};
use support::net::{free_port, get_json, get_within, ip};
use support::promlint::promtool_findings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn node(name: &str, addr: IpAddr, ready: bool) -> Value {
    let mut n = node_at(name, addr);
    n["status"]["conditions"][3]["status"] = json!(if ready { "True" } else { "Unknown" });
    n
}

/// An agent as deploy/base runs it: Kubernetes discovery, and the `service` check's ClusterIP
/// read from the Service meshprobe-vip in its namespace (`--service-name`'s default).
fn config(i: u8, listen: SocketAddr, api: &FakeApi) -> AgentConfig {
    AgentConfig {
        discovery: Discovery::Kubernetes(kube_settings(
            Some(api.url()),
            Duration::from_secs(2),
            Duration::from_secs(30),
        )),
        icmp_count: 2,
        checks: ChecksConfig {
            service_lookup: Some(ServiceRef {
                namespace: "meshprobe".into(),
                name: "meshprobe-vip".into(),
            }),
            ..ChecksConfig::default()
        },
        ..inproc::config(&format!("node-{i}"), listen, Path::new(""))
    }
}

/// An API server stand-in (the lab's: TLS `/readyz`, a certificate for kubernetes.default.svc
/// from a fresh CA) on `at`, and the `apiserver_endpoints` check's settings reading its
/// addresses from the EndpointSlices (`k8s::apiserver`), verifying against that CA.
fn apiserver_stand_in(at: IpAddr, dir: &Path) -> (u16, ApiserverConfig) {
    let pki = meshprobe::lab::apiserver::make_pki(&[at]).unwrap();
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let l = std::net::TcpListener::bind((at, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    meshprobe::lab::apiserver::serve_on(l, &pki, ready).unwrap();
    let tls = meshprobe::promclient::ca_file_config(&ca, "--apiserver-ca").unwrap();
    let cfg = ApiserverConfig {
        vip: None,
        endpoints: Vec::new(),
        endpoints_lookup: true,
        ca,
        tls,
        token: None,
    };
    (port, cfg)
}

/// The `default/kubernetes` EndpointSlice as the API servers keep it, one endpoint.
fn kubernetes_slice(ip: IpAddr, port: u16) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
    })
}

/// The agents' ClusterIP Service (tests/fixtures/k8s/service-vip.json) at `ip`:`port`.
fn vip(ip: IpAddr, port: u16) -> Value {
    let mut s = fixture("service-vip.json");
    s["spec"]["clusterIP"] = json!(ip.to_string());
    s["spec"]["clusterIPs"] = json!([ip.to_string()]);
    s["spec"]["ports"][0]["port"] = json!(port);
    s
}

/// The watchers' node lists so far (kube-rs pages by 500; the facts fetch asks 5000 at a
/// time, the liveness and recheck lists 1).
fn node_lists(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| {
            r.starts_with("GET /api/v1/nodes?")
                && !r.contains("watch=true")
                && r.split(['?', '&']).any(|p| p == "limit=500")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_discover_each_other_through_the_kubernetes_api() {
    let port = free_port(ip(61));
    let api = FakeApi::start().await;
    for i in 1..=3u8 {
        api.put("nodes", node(&format!("node-{i}"), ip(60 + i), true));
        api.put("pods", agent_pod(i, ip(60 + i)));
    }
    // A target: a plain HTTP server on 127.0.0.64, annotated for probing.
    let web = TcpListener::bind((ip(64), 0)).await.unwrap();
    let web_port = web.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = web.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    )
                    .await;
            });
        }
    });
    let mut target = fixture("pod-target.json");
    target["status"]["podIP"] = json!(ip(64).to_string());
    target["metadata"]["annotations"]["meshprobe.io/probe"] =
        json!(format!("http:{web_port}/healthz"));
    api.put("pods", target);
    // The agents' ClusterIP "Service": node-1's agent stands in for the VIP on loopback.
    api.put("services", vip(ip(61), port));
    // The API server's endpoints, read from its EndpointSlice: a TLS stand-in on 127.0.0.65.
    let tmp = std::env::temp_dir().join(format!("mp-kube-agent-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (api_port, api_check) = apiserver_stand_in(ip(65), &tmp);
    api.put("endpointslices", kubernetes_slice(ip(65), api_port));

    let mut agents: Vec<Running> = Vec::new();
    for i in 1..=3u8 {
        let listen = SocketAddr::new(ip(60 + i), port);
        let mut c = config(i, listen, &api);
        c.checks.apiserver = Some(api_check.clone());
        let Some(agent) = inproc::start(c).await else {
            return;
        };
        agents.push(agent);
    }
    let a1 = SocketAddr::new(ip(61), port);

    // Peers and the target, from the API, probed over HTTP.
    eventually_async(
        Duration::from_secs(20),
        "node-1 reaches node-2, node-3 and the target",
        async || {
            let Some(r) = get_json(a1, "/api/v1/results").await else {
                return false;
            };
            let up = |list: &str, key: &str, name: &str| {
                r[list]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d[key] == name && d["layers"]["http"]["reachable"] == true)
            };
            up("peers", "node", "node-2")
                && up("peers", "node", "node-3")
                && up("targets", "name", "web-5f7d9c-abcde.shop")
        },
    )
    .await;
    // Every agent's `service` check targets the Service's ClusterIP:port, read from the API,
    // and it answers; discovery says where the target came from.
    let want = format!("{}:{port}", ip(61));
    for i in 1..=3u8 {
        let a = SocketAddr::new(ip(60 + i), port);
        eventually_async(
            Duration::from_secs(20),
            &format!("node-{i}'s service check up at {want}"),
            async || {
                get_json(a, "/api/v1/results").await.is_some_and(|r| {
                    r["checks"]["service"]["target"] == want.as_str()
                        && r["checks"]["service"]["reachable"] == true
                        && r["discovery"]["service"]
                            == json!({"service": "meshprobe/meshprobe-vip", "target": want, "reason": null})
                })
            },
        )
        .await;
    }
    // And the `apiserver_endpoints` check, at the slice's endpoint, verified and answered.
    let want_api = format!("{}:{api_port}", ip(65));
    for i in 1..=3u8 {
        let a = SocketAddr::new(ip(60 + i), port);
        eventually_async(
            Duration::from_secs(20),
            &format!("node-{i}'s apiserver_endpoints check up at {want_api}"),
            async || {
                get_json(a, "/api/v1/results").await.is_some_and(|r| {
                    let c = &r["checks"]["apiserver_endpoints"];
                    assert!(c["last_error"].is_null(), "{c}");
                    c["target"] == want_api.as_str()
                        && c["reachable"] == true
                        && r["discovery"]["apiserver_endpoints"]["target"] == want_api.as_str()
                })
            },
        )
        .await;
    }
    std::fs::remove_dir_all(&tmp).unwrap();
    let m = get_within(a1, "/metrics", Duration::from_secs(5))
        .await
        .map(|(_, body)| body)
        .unwrap_or_default();
    let up = format!("check=\"service\",target=\"{want}\"}} ");
    assert!(
        m.lines()
            .any(|l| l.starts_with("meshprobe_check_up{src_node=\"node-1\",")
                && l.split_once(&up)
                    .is_some_and(|(_, v)| v.parse::<f64>() == Ok(1.0))),
        "{up} not in {}",
        m.lines()
            .filter(|l| l.starts_with("meshprobe_check_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let r = get_json(a1, "/api/v1/results").await.unwrap();
    // The address facts published with the results: the target's node from spec.nodeName.
    let places = r["owners"]["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        places
            .iter()
            .any(|t| t["name"] == "web-5f7d9c-abcde.shop" && t["node"] == "node-2"),
        "{}",
        r["owners"]
    );
    assert_eq!(
        r["owners"]["nodes"].as_array().map(Vec::len),
        Some(3),
        "{r}"
    );
    assert!(
        r["discovery"]["source"]
            .as_str()
            .unwrap()
            .starts_with("kubernetes:"),
        "{r}"
    );

    // node-3 goes NotReady and its agent stops: its troubles are held, not raised.
    api.put("nodes", node("node-3", ip(63), false));
    agents.last_mut().unwrap().signal_stop();
    eventually_async(Duration::from_secs(20), "node-3 held", async || {
        get_json(a1, "/api/v1/results").await.is_some_and(|r| {
            r["discovery"]["held"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["node"] == "node-3" && h["reason"] == "node_not_ready")
        })
    })
    .await;
    // The alert rules exclude held peers through this series (prometheus_e2e's lab has no
    // Kubernetes, so it is checked here).
    let m = get_within(a1, "/metrics", Duration::from_secs(5))
        .await
        .map(|(_, body)| body)
        .unwrap_or_default();
    let held = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("meshprobe_discovery_held{dst=\"node-3\",reason=\"node_not_ready\"} ")
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        held == Some(1.0),
        "{}",
        m.lines()
            .filter(|l| l.contains("discovery"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The Kubernetes-only series lint clean too (tests/support/promlint.rs).
    if let Some(findings) = promtool_findings(&m) {
        assert!(findings.is_empty(), "promtool check metrics: {findings:#?}");
    }
    eventually_async(
        Duration::from_secs(30),
        "a finding about node-3, set apart",
        async || {
            let Some(d) = get_json(a1, "/api/v1/diagnosis").await else {
                return false;
            };
            let about_3 = |f: &Value| {
                f["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|x| x == "node-3"))
            };
            let raised = d["findings"].as_array().into_iter().flatten().any(about_3);
            assert!(!raised, "a held node raised an alarm: {d}");
            let ok =
                d["held"].as_array().into_iter().flatten().any(about_3) && d["healthy"] == true;
            if ok {
                eprintln!("held: {}", d["held"]);
            }
            ok
        },
    )
    .await;
    // The mesh view asked the API server for facts.
    assert!(
        api.requests()
            .iter()
            .any(|r| r.contains("/api/v1/namespaces/kube-system/pods")),
        "no facts fetched"
    );

    // Every call the agents made is one deploy/base/rbac.yaml grants (the agents publish no
    // events here, so the publish-events component's create is not counted), the Service's
    // GET (the Role's one name in the agents' namespace) and the EndpointSlices' list among them.
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r
            .starts_with("GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?")
            && r.contains("labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes")),
        "the EndpointSlices were not listed: {:?}",
        requests
            .iter()
            .filter(|r| r.contains("endpointslices"))
            .collect::<Vec<_>>()
    );
    assert!(
        requests
            .iter()
            .any(|r| r == "GET /api/v1/namespaces/meshprobe/services/meshprobe-vip"),
        "the Service was not read"
    );
    rbac_grants_every_request(&requests);

    // `meshprobe diagnose --agents … --kube` from "a workstation": gathers here, adds facts.
    let before = api.requests().len();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshprobe"))
        .args([
            "diagnose",
            "--agents",
            &format!("{},{}", a1, SocketAddr::new(ip(62), port)),
            "--kube",
            "--kube-api",
            &api.url(),
            "-o",
            "json",
        ])
        .output()
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        doc["agents_answered"].as_array().map(Vec::len),
        Some(2),
        "{doc}"
    );
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let asked: Vec<String> = api.requests()[before..].to_vec();
    assert!(
        asked.iter().any(|r| r.starts_with("GET /api/v1/nodes?")),
        "{asked:#?}"
    );

    // The API server goes away: probing goes on with the last set, and the results say so.
    api.down();
    eventually_async(
        Duration::from_secs(30),
        "discovery reports the outage",
        async || {
            get_json(a1, "/api/v1/results").await.is_some_and(|r| {
                r["discovery"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("keeping the last known peer set"))
                    && r["peers"].as_array().is_some_and(|p| p.len() == 2)
            })
        },
    )
    .await;
    let healthy = async || {
        get_within(a1, "/metrics", Duration::from_secs(5))
            .await
            .and_then(|(_, m)| {
                m.lines()
                    .find_map(|l| l.strip_prefix("meshprobe_discovery_healthy "))
                    .and_then(|v| v.parse::<f64>().ok())
            })
    };
    assert_eq!(healthy().await, Some(0.0));
    // Back: healthy again once the relist after the outage has completed.
    let lists_before = node_lists(&api);
    api.up().await;
    eventually_async(
        Duration::from_secs(30),
        "meshprobe_discovery_healthy 1 after the outage",
        async || healthy().await == Some(1.0),
    )
    .await;
    let relisted = node_lists(&api) - lists_before;
    assert!(
        relisted >= 1,
        "healthy again without relisting the nodes ({relisted} node lists since the return)"
    );

    for a in &mut agents {
        a.signal_stop();
    }
    for a in agents {
        a.stop().await;
    }
}

/// One API call as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    group: String,
    resource: String,
    verb: String,
    /// The namespace of a namespaced path.
    namespace: Option<String>,
    /// The object of a get.
    name: Option<String>,
}

/// The call `METHOD /api/v1/…` or `METHOD /apis/GROUP/VERSION/…` is, as the fake API server
/// logs it: a GET of a named object is get, of a collection list, or watch with
/// `watch=true`/`watch=1`.
fn rbac_call(request: &str) -> Call {
    let (method, uri) = request.split_once(' ').expect("METHOD URI");
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match seg.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => panic!("not an API path: {request}"),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some(ns.to_string()), r),
        r => (None, r),
    };
    let (resource, name) = match rest {
        [r] => (*r, None),
        [r, name] => (*r, Some(name.to_string())),
        _ => panic!("unexpected API path: {request}"),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some(), watch) {
        ("GET", true, _) => "get",
        ("GET", false, true) => "watch",
        ("GET", false, false) => "list",
        ("POST", _, _) => "create",
        (m, _, _) => panic!("unexpected method {m}: {request}"),
    };
    Call {
        group: group.into(),
        resource: resource.into(),
        verb: verb.into(),
        namespace,
        name,
    }
}

/// One rule of a role bound to the agents' ServiceAccount.
#[derive(Debug)]
struct Grant {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    /// Empty: any object.
    names: Vec<String>,
    /// A Role's namespace; `None`: a ClusterRole's, every namespace.
    namespace: Option<String>,
}

impl Grant {
    fn allows(&self, c: &Call) -> bool {
        self.groups.contains(&c.group)
            && self.resources.contains(&c.resource)
            && self.verbs.contains(&c.verb)
            && (self.names.is_empty() || c.name.as_ref().is_some_and(|n| self.names.contains(n)))
            && (self.namespace.is_none() || self.namespace == c.namespace)
    }
}

/// The rules deploy/base/rbac.yaml grants the ServiceAccount meshprobe/meshprobe: those of
/// the ClusterRoles and Roles a binding there gives it.
fn granted() -> Vec<Grant> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let ns = |v: &Value| v["metadata"]["namespace"].as_str().map(str::to_string);
    let bound = |kind: &str, name: &str, role_ns: Option<String>| {
        docs.iter().any(|b| {
            let binding = match kind {
                "ClusterRole" => b["kind"] == "ClusterRoleBinding",
                _ => b["kind"] == "RoleBinding" && ns(b) == role_ns,
            };
            binding
                && b["roleRef"]["kind"] == kind
                && b["roleRef"]["name"] == name
                && b["subjects"].as_array().into_iter().flatten().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == "meshprobe"
                        && s["namespace"] == "meshprobe"
                })
        })
    };
    let mut out = Vec::new();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "ClusterRole" | "Role") {
            continue;
        }
        let namespace = (kind == "Role").then(|| ns(d).expect("a Role's namespace"));
        if !bound(
            kind,
            d["metadata"]["name"].as_str().unwrap(),
            namespace.clone(),
        ) {
            continue;
        }
        for rule in d["rules"].as_array().unwrap() {
            out.push(Grant {
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                names: strings(&rule["resourceNames"]),
                namespace: namespace.clone(),
            });
        }
    }
    out
}

fn rbac_grants_every_request(requests: &[String]) {
    let granted = granted();
    assert!(!requests.is_empty(), "the agents made no API request");
    let used: std::collections::BTreeSet<Call> = requests.iter().map(|r| rbac_call(r)).collect();
    let missing: Vec<&Call> = used
        .iter()
        .filter(|c| !granted.iter().any(|g| g.allows(c)))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/base/rbac.yaml: the agents called {missing:#?}, which it does not grant (granted: {granted:#?})"
    );
    eprintln!("API calls the agents made (all granted): {used:?}");
}

/// The RBAC check itself: a Role grants in its namespace only, `resourceNames` only those
/// objects, and the shipped rules grant the agents' calls and nothing near them.
#[test]
fn the_rbac_check_reads_roles_names_and_namespaces() {
    let allowed = |r: &str| granted().iter().any(|g| g.allows(&rbac_call(r)));
    for ok in [
        "GET /api/v1/namespaces/meshprobe/services/meshprobe-vip",
        "GET /api/v1/pods?labelSelector=x&watch=true",
        "GET /api/v1/nodes/node-1",
        "GET /apis/networking.k8s.io/v1/namespaces/shop/networkpolicies",
        "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=x",
    ] {
        assert!(allowed(ok), "{ok} should be granted");
    }
    for refused in [
        "GET /api/v1/namespaces/meshprobe/services/other",
        "GET /api/v1/namespaces/default/services/meshprobe-vip",
        "GET /api/v1/namespaces/meshprobe/services",
        "GET /api/v1/services?watch=true",
        "GET /api/v1/namespaces/meshprobe/secrets/meshprobe-vip",
        "POST /api/v1/namespaces/meshprobe/events",
        "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=true",
        "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
        "GET /api/v1/namespaces/default/endpoints",
    ] {
        assert!(!allowed(refused), "{refused} should not be granted");
    }
}

/// A log writer into a shared buffer, for the tests that read what the agent logged.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process's log, captured from the first call on (one subscriber for the test binary).
fn logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let w = logs.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || w.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        logs
    })
    .clone()
}

/// Without a usable ClusterIP Service the agent runs on without the `service` check, says why
/// in its results (`discovery.service.reason`) and logs it once: the Service missing, headless,
/// or with a clusterIP that is no address. One agent per case, each with its own API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usable_clusterip_service_no_service_check() {
    let logs = logs();
    let port = free_port(ip(71));
    let mut headless = vip(ip(71), port);
    headless["spec"]["clusterIP"] = json!("None");
    headless["spec"]["clusterIPs"] = json!(["None"]);
    let mut garbage = vip(ip(71), port);
    garbage["spec"]["clusterIP"] = json!("10.96.0.999");
    garbage["spec"]["clusterIPs"] = json!(["10.96.0.999"]);
    let cases: [(Option<Value>, &str); 3] = [
        (None, "Service meshprobe/meshprobe-vip not found"),
        (
            Some(headless),
            "Service meshprobe/meshprobe-vip: headless (spec.clusterIP: None): no ClusterIP",
        ),
        (
            Some(garbage),
            "Service meshprobe/meshprobe-vip: spec.clusterIP \"10.96.0.999\" is not a usable IP address",
        ),
    ];
    for (n, (service, want)) in cases.into_iter().enumerate() {
        let i = 1 + n as u8;
        let api = FakeApi::start().await;
        api.put("nodes", node(&format!("node-{i}"), ip(70 + i), true));
        api.put("pods", agent_pod(i, ip(70 + i)));
        if let Some(s) = service {
            api.put("services", s);
        }
        let a = SocketAddr::new(ip(70 + i), port);
        let Some(agent) = inproc::start(config(i, a, &api)).await else {
            return;
        };
        eventually_async(
            Duration::from_secs(20),
            &format!("case {n}: the reason in the results"),
            async || {
                get_json(a, "/api/v1/results").await.is_some_and(|r| {
                    r["discovery"]["service"]["reason"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(want))
                        && r["discovery"]["service"]["target"].is_null()
                        && r["rounds"].as_u64() >= Some(1)
                })
            },
        )
        .await;
        let r = get_json(a, "/api/v1/results").await.unwrap();
        assert_eq!(r["checks"], json!({}), "case {n}: no check: {r}");
        let m = get_within(a, "/metrics", Duration::from_secs(5))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        assert!(
            !m.contains("check=\"service\""),
            "case {n}: a service series without a service check"
        );
        let said = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        let lines: Vec<&str> = said
            .lines()
            .filter(|l| l.contains(&format!("no service check: {want}")))
            .collect();
        assert_eq!(lines.len(), 1, "case {n}: logged once: {lines:#?}");
        let level = if n == 0 { "INFO" } else { "WARN" };
        assert!(lines[0].contains(level), "case {n}: {}", lines[0]);
        agent.stop().await;
    }
}
