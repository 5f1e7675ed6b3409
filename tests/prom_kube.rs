//! `meshprobe diagnose --prometheus URL --kube`: the binary against a Prometheus stand-in that
//! serves answers recorded from a real Prometheus (tests/fixtures/prom/cni-node-3.json) and the
//! fake Kubernetes API (tests/support/fakeapi.rs): the CNI finding on node-3 carries the facts
//! about node-3's CNI pod, fetched from the API.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use support::fakeapi::{fixture, FakeApi};

/// Serves `/api/v1/query?query=METRIC[{…}]` from recorded answers; remembers the queries.
async fn fake_prometheus(answers: Value) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = (Arc::new(answers), seen.clone());
    type St = (Arc<Value>, Arc<Mutex<Vec<String>>>);
    async fn query(
        State((answers, seen)): State<St>,
        Query(q): Query<BTreeMap<String, String>>,
    ) -> axum::Json<Value> {
        let q = q.get("query").cloned().unwrap_or_default();
        seen.lock().unwrap().push(q.clone());
        // The metric: the query's first `meshprobe_` name (ages are `M + (time() -
        // timestamp(M))`, the agents' scrape ages `time() - timestamp(M)`).
        let metric: String = q[q.find("meshprobe_").unwrap_or(q.len())..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        axum::Json(
            answers
                .get(&metric)
                .cloned()
                // As a real Prometheus: a metric it has no series of is an empty vector
                // (the recording predates some metrics).
                .unwrap_or(
                    json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
                ),
        )
    }
    let app = Router::new()
        .route("/api/v1/query", get(query))
        .with_state(state);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn prometheus_and_kubernetes_facts_together() {
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/prom/cni-node-3.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let (prom, seen) = fake_prometheus(recorded["answers"].clone()).await;
    let api = FakeApi::start().await;
    for i in 1..=4 {
        let mut n = fixture("node.json");
        n["metadata"]["name"] = json!(format!("node-{i}"));
        api.put("nodes", n);
    }
    // node-3's CNI pod is not Ready (the fixture's status).
    let mut cni = fixture("pod-calico-node.json");
    cni["metadata"]["name"] = json!("calico-node-n3");
    cni["spec"]["nodeName"] = json!("node-3");
    api.put("pods", cni);

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshprobe"))
        .args(["diagnose", "--prometheus", &prom, "--kube", "--kube-api"])
        .arg(api.url())
        .args(["-o", "json"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(out.status.code(), Some(1), "{doc}\n{stderr}");
    assert_eq!(
        seen.lock().unwrap().len(),
        meshprobe::promsource::QUERIES.len(),
        "one query per metric"
    );
    // Ages are asked for as of the query: the scraped value plus the time since the sample.
    assert!(
        seen.lock().unwrap().iter().any(|q| q
            == "meshprobe_pair_failing_for_seconds + (time() - timestamp(meshprobe_pair_failing_for_seconds))"),
        "{:?}",
        seen.lock().unwrap()
    );
    let f = &doc["findings"];
    assert_eq!(f.as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(f[0]["cause"], "cni", "{doc}");
    assert_eq!(f[0]["nodes"], json!(["node-3"]), "{doc}");
    let evidence: Vec<&str> = f[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        evidence.iter().any(|e| e.contains("calico-node-n3")),
        "the CNI pod's facts are in the evidence: {evidence:#?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("from Prometheus at http://")),
        "{evidence:#?}"
    );
    assert!(
        api.requests()
            .iter()
            .any(|r| r.contains("/api/v1/namespaces/kube-system/pods")),
        "no CNI pods asked for: {:?}",
        api.requests()
    );
}
