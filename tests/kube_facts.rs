//! Kubernetes facts on demand against the fake API server: node conditions, CNI pods, the
//! target's pod and events, NetworkPolicies and their verdict; RBAC refusals reported, a slow
//! API server bounded by the deadline and the cache.

mod support;

use std::time::{Duration, Instant};

use meshprobe::diagnosis::{diagnose, AgentReport, Cause, Inputs, Matrix};
use meshprobe::k8s::fetch::{fetch_facts, query_from_reports};
use meshprobe::k8s::FactsSource;
use serde_json::json;
use support::fakeapi::{fixture, FakeApi};

fn node(name: &str, ready: &str, cordoned: bool) -> serde_json::Value {
    let mut n = fixture("node.json");
    n["metadata"]["name"] = json!(name);
    n["spec"]["unschedulable"] = json!(cordoned);
    n["status"]["conditions"][3]["status"] = json!(ready);
    n
}

/// Three agents; every one finds the target web.shop timing out on TCP 8080 (ICMP fine).
fn reports() -> Vec<AgentReport> {
    let layer = |ok: bool| {
        json!({"reachable": ok, "consecutive_failures": if ok {0} else {10}, "probes": 10,
               "successes": if ok {10} else {0}, "sent": 10, "received": if ok {10} else {0},
               "success_ratio": if ok {1.0} else {0.0}, "loss_ratio": if ok {0.0} else {1.0},
               "last_error": if ok { json!(null) } else { json!({"kind": "timeout"}) }})
    };
    let nodes = ["node-1", "node-2", "node-3"];
    nodes
        .iter()
        .map(|me| {
            let peers: Vec<_> = nodes
                .iter()
                .filter(|n| *n != me)
                .map(|n| json!({"node": n, "layers": {"icmp_pod": layer(true), "icmp_node": layer(true), "http": layer(true)}}))
                .collect();
            let doc = json!({"node": me, "ready": true, "rounds": 20, "peers": peers,
                "targets": [{"name": "web-5f7d9c-abcde.shop", "ip": "198.19.2.11", "port": 8080, "protocol": "tcp",
                             "layers": {"icmp_pod": layer(true), "tcp": layer(false)}}]});
            AgentReport::from_json(&doc.to_string()).unwrap()
        })
        .collect()
}

async fn cluster() -> FakeApi {
    let api = FakeApi::start().await;
    api.put("nodes", node("node-1", "True", false));
    api.put("nodes", node("node-2", "True", true));
    api.put("nodes", node("node-3", "Unknown", false));
    api.put("nodes", node("node-9", "True", false)); // not involved
    api.put("pods", fixture("pod-calico-node.json"));
    let mut coredns = fixture("pod-target.json");
    coredns["metadata"]["name"] = json!("coredns-7db6d8ff4d-abcde");
    coredns["metadata"]["namespace"] = json!("kube-system");
    coredns["status"]["podIP"] = json!("198.19.1.3");
    api.put("pods", coredns);
    for (i, n) in ["node-1", "node-2", "node-3"].iter().enumerate() {
        let mut a = fixture("pod-meshprobe.json");
        a["metadata"]["name"] = json!(format!("meshprobe-{i}"));
        a["spec"]["nodeName"] = json!(n);
        a["status"]["podIP"] = json!(format!("198.19.{}.10", i + 1));
        api.put("pods", a);
    }
    api.put("pods", fixture("pod-target.json"));
    api.put("events", fixture("event-sandbox.json"));
    api.put("networkpolicies", fixture("networkpolicy-deny.json"));
    api
}

#[tokio::test]
async fn facts_for_the_nodes_and_targets_involved() {
    let api = cluster().await;
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let q = query_from_reports(
        &reports(),
        "app.kubernetes.io/name=meshprobe",
        Some("meshprobe"),
    );
    assert_eq!(q.targets.len(), 1);
    let f = fetch_facts(&client, &q).await;
    assert!(f.errors.is_empty(), "{:?}", f.errors);

    let nodes: Vec<(&str, Option<bool>, Option<bool>)> = f
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.ready, n.cordoned))
        .collect();
    assert_eq!(
        nodes,
        [
            ("node-1", Some(true), Some(false)),
            ("node-2", Some(true), Some(true)),
            ("node-3", Some(false), Some(false))
        ]
    );
    assert_eq!(
        f.cni_pods.len(),
        1,
        "coredns is no CNI pod: {:?}",
        f.cni_pods
    );
    let c = &f.cni_pods[0];
    assert_eq!(
        (
            c.node.as_str(),
            c.name.as_str(),
            c.ready,
            c.restarts,
            c.crash_loop
        ),
        (
            "node-2",
            "calico-node-x7k2p",
            Some(false),
            Some(14),
            Some(true)
        )
    );
    assert_eq!(f.pods.len(), 1);
    let p = &f.pods[0];
    assert_eq!(p.target.as_deref(), Some("web-5f7d9c-abcde.shop"));
    assert_eq!(
        (p.namespace.as_str(), p.node.as_deref()),
        ("shop", Some("node-2"))
    );
    assert_eq!(p.events[0].reason, "FailedCreatePodSandbox");
    assert_eq!(p.events[0].count, Some(9));
    assert_eq!(f.network_policies.len(), 1);
    let np = &f.network_policies[0];
    assert_eq!(
        (np.name.as_str(), np.admits_port),
        ("default-deny-ingress", Some(false))
    );

    // The facts reach the engine: the target's timeouts are the policy, named.
    let inputs = Inputs {
        agents: reports(),
        kube: Some(f.clone()),
        ..Inputs::default()
    };
    let d = diagnose(&Matrix::build(&inputs));
    assert_eq!(d.findings.len(), 1, "{d}");
    assert_eq!(d.findings[0].cause, Cause::Policy, "{d}");
    assert!(
        d.findings[0]
            .evidence
            .iter()
            .any(|e| e.contains("default-deny-ingress")),
        "{d}"
    );

    // An allow rule for the agents on 8080 adds up: the policies now admit the probe.
    api.put(
        "networkpolicies",
        fixture("networkpolicy-allow-probes.json"),
    );
    let f = fetch_facts(&client, &q).await;
    assert_eq!(f.network_policies.len(), 2);
    assert!(
        f.network_policies
            .iter()
            .all(|p| p.admits_port == Some(true)),
        "{:?}",
        f.network_policies
    );
}

#[tokio::test]
async fn a_forbidden_list_is_reported_and_the_rest_still_counts() {
    let api = cluster().await;
    api.forbid("networkpolicies");
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let q = query_from_reports(&reports(), "app.kubernetes.io/name=meshprobe", None);
    let f = fetch_facts(&client, &q).await;
    assert_eq!(f.errors.len(), 1, "{:?}", f.errors);
    assert!(
        f.errors[0].contains("forbidden to list networkpolicies in shop"),
        "{}",
        f.errors[0]
    );
    assert!(f.network_policies.is_empty());
    assert_eq!(f.nodes.len(), 3);
    assert_eq!(f.pods.len(), 1);
}

#[tokio::test]
async fn a_slow_api_server_never_blocks_the_view_and_facts_are_cached() {
    let api = cluster().await;
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let src = FactsSource::new(client, "app.kubernetes.io/name=meshprobe".into(), None);
    let r = reports();

    api.slow(Some(Duration::from_secs(5)));
    let t = Instant::now();
    let f = src.facts(&r, Duration::from_millis(300)).await;
    assert!(f.is_none(), "nothing cached yet");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    api.slow(None);
    let f = src.facts(&r, Duration::from_secs(5)).await.expect("facts");
    assert_eq!(f.nodes.len(), 3);
    let asked = api.requests().len();
    // Within the TTL: the cache answers, the API server is not asked again.
    let again = src.facts(&r, Duration::from_secs(5)).await.expect("cached");
    assert_eq!(again.nodes.len(), 3);
    assert_eq!(api.requests().len(), asked);
}

#[tokio::test]
async fn findings_are_posted_as_events_and_a_refusal_names_the_permission() {
    use meshprobe::diagnosis::Finding;
    use meshprobe::k8s::events::{drafts, post};
    let api = cluster().await;
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let f = Finding {
        cause: Cause::Cni,
        summary: "pod IPs on node-2 unreachable from 2/2 nodes".into(),
        nodes: vec!["node-2".into()],
        pairs: vec![],
        zones: vec![],
        targets: vec![],
        confidence: 0.9,
        evidence: vec![],
        next_steps: vec![],
        family: None,
    };
    let d = &drafts(&[f])[0];
    post(&client, d, "node-1", Duration::from_secs(5))
        .await
        .unwrap();
    let posted = api.posted();
    assert_eq!(posted.len(), 1);
    let (path, ev) = &posted[0];
    assert_eq!(path, "/api/v1/namespaces/default/events");
    assert_eq!(ev["involvedObject"]["kind"], "Node");
    assert_eq!(ev["involvedObject"]["name"], "node-2");
    assert_eq!(ev["reason"], "MeshprobeCni");
    assert_eq!(
        ev["message"],
        "pod IPs on node-2 unreachable from 2/2 nodes"
    );
    assert_eq!(ev["type"], "Warning");

    api.forbid("events");
    let e = post(&client, d, "node-1", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(e.contains("forbidden to create events in default"), "{e}");
}

#[tokio::test]
async fn pod_targets_of_on_demand_probes_are_resolved_with_their_facts() {
    use meshprobe::k8s::fetch::KubePodResolver;
    use meshprobe::ondemand::PodResolver;
    let api = cluster().await;
    let r = KubePodResolver {
        client: meshprobe::k8s::client(Some(&api.url())).await.unwrap(),
    };
    let p = r
        .resolve("shop", "web-5f7d9c-abcde", &|_| true)
        .await
        .unwrap();
    assert_eq!(p.ip.to_string(), "198.19.2.11");
    assert_eq!(p.node.as_deref(), Some("node-2"));
    assert_eq!(
        p.facts.pods[0].target.as_deref(),
        Some("pod/shop/web-5f7d9c-abcde")
    );
    assert_eq!(p.facts.pods[0].events[0].reason, "FailedCreatePodSandbox");
    assert_eq!(p.facts.network_policies[0].name, "default-deny-ingress");
    assert_eq!(p.facts.network_policies[0].admits_port, None);
    assert_eq!(p.facts.nodes.len(), 1);
    assert_eq!(p.facts.nodes[0].cordoned, Some(true));
    assert_eq!(p.facts.cni_pods.len(), 1);
    assert_eq!(p.facts.cni_pods[0].crash_loop, Some(true));
    assert!(p.facts.errors.is_empty(), "{:?}", p.facts.errors);
    let e = r.resolve("shop", "nope", &|_| true).await.unwrap_err();
    // An address the agent would not probe: located, and nothing more asked.
    let before = api.requests().len();
    let p = r
        .resolve("shop", "web-5f7d9c-abcde", &|_| false)
        .await
        .unwrap();
    assert_eq!(p.ip.to_string(), "198.19.2.11");
    assert_eq!(p.facts, Default::default());
    assert_eq!(api.requests().len(), before + 1, "{:?}", api.requests());
    assert!(e.contains("get pod shop/nope") && e.contains("404"), "{e}");
}

/// Answers every probe at once, sending nothing.
struct Instant0;

impl meshprobe::probe::Prober for Instant0 {
    fn probe<'a>(
        &'a self,
        _check: &'a meshprobe::model::Check,
        _timeout: Duration,
    ) -> meshprobe::probe::BoxFuture<'a, meshprobe::model::ProbeResult> {
        Box::pin(async { meshprobe::model::ProbeResult::ok(Duration::from_micros(300), None) })
    }
}

/// `POST /api/v1/probe` with `pod/NS/NAME` on an agent with Kubernetes discovery and no
/// token: the pod is looked up only for a request otherwise valid and in an allowed namespace,
/// once per 30 s; a pod that does not exist and one at an address the agent does not probe get
/// the same refusal, which names no address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_targets_are_looked_up_last_cached_and_refused_alike() {
    use meshprobe::config::{AgentConfig, Discovery, ProbeConfig};
    use support::inproc;
    let api = cluster().await;
    let mut db = fixture("pod-target.json");
    db["metadata"]["name"] = json!("db-0");
    db["status"]["podIP"] = json!("169.254.3.3");
    api.put("pods", db);
    let listen = std::net::SocketAddr::new(
        support::net::ip(71),
        support::net::free_port(support::net::ip(71)),
    );
    let cfg = AgentConfig {
        discovery: Discovery::Kubernetes(support::fakeapi::kube_settings(
            Some(api.url()),
            Duration::from_secs(2),
            Duration::from_secs(30),
        )),
        probe: ProbeConfig {
            pod_namespaces: Some(vec!["shop".into()]),
            ..ProbeConfig::default()
        },
        ..inproc::config("node-1", listen, std::path::Path::new(""))
    };
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let agent = inproc::spawn(
        cfg,
        listener,
        inproc::fake_probers(std::sync::Arc::new(Instant0)),
    );
    let post = |body: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut a = meshprobe::ondemand::client::post(
            listen,
            "/api/v1/probe",
            &[],
            body.as_bytes().to_vec(),
            deadline,
        )
        .await
        .expect("the agent answers");
        let text = a.text(1 << 20).await.unwrap();
        (a.status, text)
    };
    let lookups = |name: &str| {
        api.requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && r.contains(&format!("/pods/{name}")))
            .count()
    };
    support::eventually_async(Duration::from_secs(10), "agent answers", async || {
        support::net::get(listen, "/readyz").await.is_some()
    })
    .await;
    let web = "web-5f7d9c-abcde";
    // Invalid otherwise (tcp without a port), or in a namespace not allowed: no lookup.
    let (s, t) = post(
        r#"{"target":"pod/shop/web-5f7d9c-abcde","checks":[{"kind":"tcp"}],"from":["node-1"]}"#,
    )
    .await;
    assert_eq!(s, 400, "{t}");
    let (s, t) = post(r#"{"target":"pod/kube-system/coredns-7db6d8ff4d-abcde","checks":[{"kind":"tcp","port":53}],"from":["node-1"]}"#).await;
    assert_eq!(s, 403, "{t}");
    assert!(t.contains("--probe-pod-namespaces"), "{t}");
    assert_eq!(lookups(web) + lookups("coredns-7db6d8ff4d-abcde"), 0);
    // Valid: looked up once, then from the cache.
    let ok = r#"{"target":"pod/shop/web-5f7d9c-abcde","checks":[{"kind":"tcp","port":8080}],"from":["node-1"]}"#;
    for i in 0..3 {
        let (s, t) = post(ok).await;
        assert_eq!(s, 200, "request {i}: {t}");
        assert!(t.contains("198.19.2.11"), "{t}");
    }
    assert_eq!(lookups(web), 1, "{:?}", api.requests());
    // Missing and fenced read the same, and name no address.
    let (s1, missing) =
        post(r#"{"target":"pod/shop/nope","checks":[{"kind":"tcp","port":80}],"from":["node-1"]}"#)
            .await;
    let policies = || {
        api.requests()
            .iter()
            .filter(|r| r.contains("networkpolicies"))
            .count()
    };
    let policies_before = policies();
    let (s2, fenced) =
        post(r#"{"target":"pod/shop/db-0","checks":[{"kind":"tcp","port":80}],"from":["node-1"]}"#)
            .await;
    assert_eq!((s1, s2), (403, 403), "{missing} {fenced}");
    assert_eq!(
        missing.replace("pod/shop/nope", "X"),
        fenced.replace("pod/shop/db-0", "X")
    );
    assert!(!fenced.contains("169.254"), "{fenced}");
    assert_eq!(lookups("db-0"), 1);
    // The fenced pod cost one call: no events, policies, node or CNI pods were asked for.
    let about_db = api.requests().iter().filter(|r| r.contains("db-0")).count();
    assert_eq!(about_db, 1, "{:?}", api.requests());
    assert_eq!(policies(), policies_before, "{:?}", api.requests());
    agent.stop().await;
}
