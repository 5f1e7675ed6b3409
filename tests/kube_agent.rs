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

use meshprobe::config::{AgentConfig, Discovery};
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

fn config(i: u8, listen: SocketAddr, api: &FakeApi) -> AgentConfig {
    AgentConfig {
        discovery: Discovery::Kubernetes(kube_settings(
            Some(api.url()),
            Duration::from_secs(2),
            Duration::from_secs(30),
        )),
        icmp_count: 2,
        ..inproc::config(&format!("node-{i}"), listen, Path::new(""))
    }
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

    let mut agents: Vec<Running> = Vec::new();
    for i in 1..=3u8 {
        let listen = SocketAddr::new(ip(60 + i), port);
        let Some(agent) = inproc::start(config(i, listen, &api)).await else {
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
    // events here, so the publish-events component's create is not counted).
    rbac_grants_every_request(&api.requests());

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

/// (apiGroup, resource, verb) for `METHOD /api/v1/…` or `METHOD /apis/GROUP/VERSION/…` as the
/// fake API server logs it: a GET of a named object is get, of a collection list, or watch
/// with `watch=true`/`watch=1`.
fn rbac_triple(request: &str) -> (String, String, String) {
    let (method, uri) = request.split_once(' ').expect("METHOD URI");
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match seg.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => panic!("not an API path: {request}"),
    };
    let rest = match rest {
        ["namespaces", _ns, r @ ..] if !r.is_empty() => r,
        r => r,
    };
    let (resource, named) = match rest {
        [r] => (*r, false),
        [r, _name] => (*r, true),
        _ => panic!("unexpected API path: {request}"),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, named, watch) {
        ("GET", true, _) => "get",
        ("GET", false, true) => "watch",
        ("GET", false, false) => "list",
        ("POST", _, _) => "create",
        (m, _, _) => panic!("unexpected method {m}: {request}"),
    };
    (group.into(), resource.into(), verb.into())
}

fn rbac_grants_every_request(requests: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut granted = std::collections::BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != "ClusterRole" {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        granted.insert((
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    assert!(!requests.is_empty(), "the agents made no API request");
    let used: std::collections::BTreeSet<_> = requests.iter().map(|r| rbac_triple(r)).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "{}: the agents called {missing:?}, which it does not grant (granted: {granted:?})",
        path.display()
    );
    eprintln!("API calls the agents made (all granted): {used:?}");
}
