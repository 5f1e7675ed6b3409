//! Kubernetes discovery against a local fake API server (tests/support/fakeapi.rs): the
//! real kube-rs watchers list, watch from resourceVersion, take bookmarks, relist after 410,
//! periodically and after an outage, survive the API server going away, and catch up with one
//! restored from a backup (resourceVersions behind the agent's).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshprobe::config::KubeSettings;
use meshprobe::discovery::DiscoveryStatus;
use meshprobe::k8s::watch::KubeDiscovery;
use meshprobe::peers::PeerSet;
use serde_json::{json, Value};
use support::fakeapi::{fixture, kube_settings, Backup, FakeApi};
use support::sys::self_rss_kib;
use tokio::sync::watch;

fn node(name: &str, ip: &str, zone: &str) -> Value {
    let mut n = fixture("node.json");
    n["metadata"]["name"] = json!(name);
    n["metadata"]["labels"]["kubernetes.io/hostname"] = json!(name);
    n["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(zone);
    n["status"]["addresses"][0]["address"] = json!(ip);
    n
}

fn agent(name: &str, node: &str, ip: &str, ready: bool) -> Value {
    let mut p = fixture("pod-meshprobe.json");
    p["metadata"]["name"] = json!(name);
    p["spec"]["nodeName"] = json!(node);
    p["status"]["podIP"] = json!(ip);
    p["status"]["conditions"][2]["status"] = json!(if ready { "True" } else { "False" });
    p
}

fn settings() -> KubeSettings {
    kube_settings(None, Duration::from_secs(1), Duration::from_secs(2))
}

type Discovering = (
    watch::Receiver<Arc<PeerSet>>,
    Arc<Mutex<DiscoveryStatus>>,
    tokio::task::JoinHandle<()>,
);

async fn start(api: &FakeApi) -> Discovering {
    start_with(api, settings()).await
}

async fn start_with(api: &FakeApi, settings: KubeSettings) -> Discovering {
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
    let (d, tx, rx) =
        KubeDiscovery::start(client, settings, status.clone(), Duration::from_secs(10))
            .await
            .unwrap();
    (rx, status, tokio::spawn(d.run(tx)))
}

async fn wait_for(
    rx: &mut watch::Receiver<Arc<PeerSet>>,
    what: &str,
    pred: impl Fn(&PeerSet) -> bool,
) -> Arc<PeerSet> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cur = rx.borrow_and_update().clone();
        if pred(&cur) {
            return cur;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("timed out waiting for: {what}; last set {cur:?}"),
        }
    }
}

fn nodes_of(s: &PeerSet) -> Vec<String> {
    s.peers.iter().map(|p| p.node.clone()).collect()
}

async fn cluster() -> FakeApi {
    let api = FakeApi::start().await;
    api.put("nodes", node("node-1", "198.18.1.11", "zone-a"));
    api.put("nodes", node("node-2", "198.18.2.12", "zone-b"));
    api.put("nodes", node("node-3", "198.18.1.13", "zone-a"));
    api.put("pods", agent("meshprobe-a", "node-1", "198.19.1.10", true));
    api.put("pods", agent("meshprobe-b", "node-2", "198.19.2.10", true));
    api
}

#[tokio::test]
async fn pods_appear_become_ready_are_cordoned_and_deleted() {
    let api = cluster().await;
    let (mut rx, status, task) = start(&api).await;
    let first = rx.borrow().clone();
    assert_eq!(nodes_of(&first), ["node-1", "node-2"]);
    let p = &first.peers[1];
    assert_eq!(p.node_ip.to_string(), "198.18.2.12");
    assert_eq!(p.pod_ip.to_string(), "198.19.2.10");
    assert_eq!(p.zone.as_deref(), Some("zone-b"));
    assert!(status.lock().unwrap().source.starts_with("kubernetes:"));

    // A new agent, not Ready yet: not probed.
    api.put("pods", agent("meshprobe-c", "node-3", "198.19.3.10", false));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(nodes_of(&rx.borrow()), ["node-1", "node-2"]);
    // Ready: probed, and held for its grace.
    let mut c = agent("meshprobe-c", "node-3", "198.19.3.10", true);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    c["status"]["conditions"][2]["lastTransitionTime"] = json!(now);
    api.put("pods", c);
    wait_for(&mut rx, "node-3 probed", |s| s.peer("node-3").is_some()).await;
    // Held while fresh (grace 1 s), then not.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let held = status.lock().unwrap().held.clone();
        if !held.iter().any(|h| h.node == "node-3") {
            break;
        }
        assert_eq!(held[0].reason, "just_ready");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still held: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Cordon node-2: still probed, held without alarm.
    let mut n2 = node("node-2", "198.18.2.12", "zone-b");
    n2["spec"]["unschedulable"] = json!(true);
    api.put("nodes", n2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !status
        .lock()
        .unwrap()
        .held
        .iter()
        .any(|h| h.node == "node-2" && h.reason == "node_cordoned")
    {
        assert!(tokio::time::Instant::now() < deadline, "node-2 never held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rx.borrow().peer("node-2").is_some());

    // An annotated target pod (in another namespace) and a badly annotated one.
    api.put("pods", fixture("pod-target.json"));
    let mut bad = fixture("pod-target.json");
    bad["metadata"]["name"] = json!("web-bad");
    bad["metadata"]["annotations"]["meshprobe.io/probe"] = json!("udp:53");
    api.put("pods", bad);
    let s = wait_for(&mut rx, "target", |s| !s.targets.is_empty()).await;
    assert_eq!(s.targets.len(), 1);
    let t = &s.targets[0];
    assert_eq!(
        (t.name.as_str(), t.ip.to_string(), t.port, t.http_path()),
        (
            "web-5f7d9c-abcde.shop",
            "198.19.2.11".into(),
            8080,
            "/healthz"
        )
    );
    let bad = status.lock().unwrap().bad_targets.clone();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].pod, "shop/web-bad");

    // Terminating, then deleted.
    let mut gone = agent("meshprobe-a", "node-1", "198.19.1.10", true);
    gone["metadata"]["deletionTimestamp"] = json!("2026-11-28T00:00:00Z");
    api.put("pods", gone);
    wait_for(&mut rx, "node-1 dropped while terminating", |s| {
        s.peer("node-1").is_none()
    })
    .await;
    api.delete("pods", "meshprobe", "meshprobe-a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(nodes_of(&rx.borrow()), ["node-2", "node-3"]);

    // Never a LIST loop: one list per watcher at start, the rest are watches.
    let reqs = api.requests();
    let lists = reqs.iter().filter(|r| !r.contains("watch=true")).count();
    assert_eq!(lists, 3, "{reqs:#?}");
    assert!(
        reqs.iter().any(|r| r.contains("allowWatchBookmarks=true")),
        "{reqs:#?}"
    );
    task.abort();
}

#[tokio::test]
async fn pod_cidrs_pod_ips_and_target_nodes_come_from_the_objects() {
    let api = FakeApi::start().await;
    let with_cidrs = |mut n: Value, cidrs: &[&str]| {
        n["spec"]["podCIDR"] = json!(cidrs[0]);
        n["spec"]["podCIDRs"] = json!(cidrs);
        n
    };
    // node-1: dual-stack ranges its agent pod is in; node-2: a range its CNI does not use
    // (the agent pod is elsewhere, as with Calico's own IPAM); node-3: none.
    api.put(
        "nodes",
        with_cidrs(
            node("node-1", "198.18.1.11", "zone-a"),
            &["198.19.1.0/26", "fd00:19:1::/64"],
        ),
    );
    api.put(
        "nodes",
        with_cidrs(node("node-2", "198.18.2.12", "zone-b"), &["10.244.2.0/24"]),
    );
    api.put("nodes", node("node-3", "198.18.1.13", "zone-a"));
    let mut a = agent("meshprobe-a", "node-1", "198.19.1.10", true);
    a["status"]["podIPs"] = json!([{"ip": "198.19.1.10"}, {"ip": "fd00:19:1::10"}]);
    api.put("pods", a);
    api.put("pods", agent("meshprobe-b", "node-2", "198.19.2.10", true));
    // Only podIPs, IPv6 first: the pod IP is the first listed.
    let mut c = agent("meshprobe-c", "node-3", "198.19.3.10", true);
    c["status"]["podIP"] = Value::Null;
    c["status"]["podIPs"] = json!([{"ip": "fd00:19:3::10"}, {"ip": "198.19.3.10"}]);
    api.put("pods", c);
    // The target fixture runs on node-2 (spec.nodeName), outside every known CIDR.
    api.put("pods", fixture("pod-target.json"));
    let (mut rx, _status, task) = start(&api).await;
    let s = wait_for(&mut rx, "three peers and the target", |s| {
        s.peers.len() == 3 && !s.targets.is_empty()
    })
    .await;
    let cidrs: Vec<(String, String, Vec<String>)> = s
        .peers
        .iter()
        .map(|p| {
            let c = p.pod_cidrs.iter().map(ToString::to_string).collect();
            (p.node.clone(), p.pod_ip.to_string(), c)
        })
        .collect();
    assert_eq!(
        cidrs,
        [
            (
                "node-1".to_string(),
                "198.19.1.10".to_string(),
                vec!["198.19.1.0/26".to_string(), "fd00:19:1::/64".to_string()]
            ),
            ("node-2".to_string(), "198.19.2.10".to_string(), vec![]),
            ("node-3".to_string(), "fd00:19:3::10".to_string(), vec![]),
        ]
    );
    assert_eq!(s.targets[0].node.as_deref(), Some("node-2"));
    meshprobe::peers::validate(&s).unwrap();
    // The ownership map: the target by its node fact, node-1's block by CIDR, a neighbour of
    // node-2's pod unknown (no /24 guess).
    let owners = s.owners();
    assert_eq!(owners.target_node("web-5f7d9c-abcde.shop"), Some(1));
    let who = |a: &str| match owners.lookup(a.parse().unwrap()) {
        meshprobe::owners::Owner::Node { node, .. } => owners.names()[node].clone(),
        other => format!("{other:?}"),
    };
    assert_eq!(who("198.19.1.40"), "node-1");
    assert_eq!(who("fd00:19:1::99"), "node-1");
    assert_eq!(who("198.19.2.11"), "node-2", "the target's own address");
    assert_eq!(who("198.19.2.99"), "Unknown");
    assert_eq!(who("10.244.2.5"), "Unknown");
    task.abort();
}

#[tokio::test]
async fn api_server_down_keeps_the_last_set_and_says_so() {
    let api = cluster().await;
    let (mut rx, status, task) = start(&api).await;
    assert_eq!(nodes_of(&rx.borrow()), ["node-1", "node-2"]);
    api.down();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status.lock().unwrap().last_error.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outage never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = status.lock().unwrap().last_error.clone().unwrap();
    assert!(
        err.contains("keeping the last known peer set: 2 peers"),
        "{err}"
    );
    // The outage stays reported through retries and ticks, and counts once.
    assert_outage_holds(&status, 40).await;
    assert_eq!(
        nodes_of(&rx.borrow()),
        ["node-1", "node-2"],
        "last set kept"
    );

    // Back, with a change made while we were away.
    api.put("pods", agent("meshprobe-c", "node-3", "198.19.3.10", true));
    api.up().await;
    wait_for(&mut rx, "node-3 after recovery", |s| {
        s.peer("node-3").is_some()
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status.lock().unwrap().last_error.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "error never cleared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status.lock().unwrap().reloads_failed, 1);
    task.abort();
}

/// For `ticks` × 100 ms the outage stays reported, counted once.
async fn assert_outage_holds(status: &Mutex<DiscoveryStatus>, ticks: u32) {
    for _ in 0..ticks {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = status.lock().unwrap();
        assert!(s.last_error.is_some(), "the outage flapped away");
        assert_eq!(s.reloads_failed, 1);
    }
}

/// Wait until the status's error satisfies `pred`.
async fn wait_status(
    status: &Mutex<DiscoveryStatus>,
    what: &str,
    pred: impl Fn(Option<&str>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let err = status.lock().unwrap().last_error.clone();
        if pred(err.as_deref()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}; last error {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_api_server_that_goes_silent_is_noticed_by_the_liveness_check() {
    let api = cluster().await;
    let (rx, status, task) = start(&api).await;
    // Quiet but answering: the liveness checks (every 2 s here) find it alive.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = status.lock().unwrap();
        assert_eq!(
            s.last_error, None,
            "a quiet, answering API server reported failing"
        );
    }
    // It stops answering: open watches stay open and silent, new requests hang. The watches'
    // read timeout is 295 s; the liveness check notices within 2 s + a tick + its 5 s bound.
    api.slow(Some(Duration::from_secs(3600)));
    let silent = tokio::time::Instant::now();
    wait_status(&status, "the silent API server reported", |e| e.is_some()).await;
    let took = silent.elapsed();
    let err = status.lock().unwrap().last_error.clone().unwrap();
    assert!(
        err.contains("no answer within 5s to a one-node list")
            && err.contains("keeping the last known peer set: 2 peers"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "noticed after {took:?}");
    eprintln!("silent API server noticed after {:.1}s", took.as_secs_f64());
    // Reported until it answers, counted once; then cleared.
    assert_outage_holds(&status, 30).await;
    assert_eq!(
        nodes_of(&rx.borrow()),
        ["node-1", "node-2"],
        "last set kept"
    );
    api.slow(None);
    wait_status(&status, "recovery", |e| e.is_none()).await;
    assert_eq!(status.lock().unwrap().reloads_failed, 1);
    task.abort();
}

#[test]
fn the_liveness_check_runs_only_when_quiet_and_not_already_failing() {
    let s = Duration::from_secs;
    for (quiet, failing, due) in [
        (s(0), false, false),
        (s(59), false, false),
        (s(60), false, true),
        (s(300), false, true),
        (s(300), true, false), // the recheck runs instead
    ] {
        assert_eq!(
            meshprobe::k8s::watch::liveness_due(quiet, failing, s(60)),
            due,
            "quiet {quiet:?} failing {failing}"
        );
    }
}

#[tokio::test]
async fn a_410_gone_forces_a_relist() {
    let api = cluster().await;
    let (mut rx, status, task) = start(&api).await;
    let before = api.requests().len();
    api.compact_and_drop_watches();
    api.put("pods", agent("meshprobe-c", "node-3", "198.19.3.10", true));
    wait_for(&mut rx, "node-3 after relist", |s| {
        s.peer("node-3").is_some()
    })
    .await;
    let after: Vec<String> = api.requests()[before..].to_vec();
    assert!(
        after
            .iter()
            .any(|r| r.contains("/pods?") && !r.contains("watch=true")),
        "no relist after 410: {after:#?}"
    );
    api.delete("pods", "meshprobe", "meshprobe-b");
    wait_for(&mut rx, "node-2 gone", |s| s.peer("node-2").is_none()).await;
    assert_eq!(
        status.lock().unwrap().last_error,
        None,
        "a 410 is no failure"
    );
    task.abort();
}

/// The relist period of the restore tests: short, so a test waits seconds, not minutes.
const RESYNC: Duration = Duration::from_secs(4);

/// The cluster (agents on node-1 and node-2), backed up at that point; then node-3's agent
/// arrives and node-1 is updated ten times, so the agent's resourceVersions run 11 past the
/// backup's.
async fn cluster_backed_up_then_moved_on() -> (FakeApi, Backup) {
    let api = cluster().await;
    let backup = api.backup();
    api.put("pods", agent("meshprobe-c", "node-3", "198.19.3.10", true));
    for _ in 0..10 {
        api.put("nodes", node("node-1", "198.18.1.11", "zone-a"));
    }
    (api, backup)
}

/// What the restored cluster does next, at versions the agent has already seen: node-4 joins
/// with its agent (node-3's agent postdates the backup, so it is gone).
fn restored_cluster_moves_on(api: &FakeApi, backup_rv: u64) {
    api.put("nodes", node("node-4", "198.18.2.14", "zone-b"));
    api.put("pods", agent("meshprobe-d", "node-4", "198.19.4.10", true));
    assert_eq!(api.resource_version(), backup_rv + 2);
}

/// The watchers' lists so far (kube-rs pages by 500; the liveness and recheck lists ask 1).
fn full_lists(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| !r.contains("watch=true") && r.split(['?', '&']).any(|p| p == "limit=500"))
        .count()
}

const RESTORED: [&str; 3] = ["node-1", "node-2", "node-4"];

/// An etcd restore without a revision bump, behind an outage: the API server comes back with
/// resourceVersions behind the agent's, and the watches, resumed from the agent's versions,
/// wait for versions the server has not reached (no event, no 410). Discovery stays unhealthy
/// until a relist after the outage has completed, and only then is it healthy — with the
/// restored cluster's peers, within one resync period of the API server's return.
#[tokio::test]
async fn restored_behind_after_an_outage_is_healthy_only_after_a_relist() {
    let (api, backup) = cluster_backed_up_then_moved_on().await;
    let backup_rv = api.resource_version() - 11;
    let settings = KubeSettings {
        resync: RESYNC,
        resync_scales: false,
        ..settings()
    };
    let (mut rx, status, task) = start_with(&api, settings).await;
    wait_for(&mut rx, "node-3", |s| s.peer("node-3").is_some()).await;
    api.down();
    wait_status(&status, "the outage reported", |e| e.is_some()).await;
    api.restore(&backup);
    restored_cluster_moves_on(&api, backup_rv);
    // Every request is answered 0.5 s late: the relist takes visible time.
    api.slow(Some(Duration::from_millis(500)));
    let lists_before = full_lists(&api);
    api.up().await;
    let up = tokio::time::Instant::now();
    // Healthy only with the restored cluster's peers (the status is read first: the agent
    // publishes the set before it clears the error).
    let bound = RESYNC.mul_f64(1.1);
    loop {
        let err = status.lock().unwrap().last_error.clone();
        let set = nodes_of(&rx.borrow());
        if err.is_none() {
            assert_eq!(set, RESTORED, "healthy with a stale peer set");
            break;
        }
        assert!(
            up.elapsed() < bound,
            "not healthy and in sync within one resync period ({bound:?}): {set:?}, {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = up.elapsed();
    let relisted = full_lists(&api) - lists_before;
    eprintln!(
        "restored behind, after an outage: healthy and in sync {:.1}s after the API server came back ({relisted} full lists)",
        took.as_secs_f64()
    );
    assert!(relisted >= 3, "healthy without a relist ({relisted} lists)");
    assert_eq!(status.lock().unwrap().reloads_failed, 1, "one outage");
    task.abort();
}

/// The same restore with no outage the agent can see (its watches just end and resume, as
/// when a load balancer moves them to a restored API server): nothing fails, so only the
/// periodic relist can notice. The peer set stays stale until it — measured from the
/// previous periodic relist, the set is stale half a period later and current within one
/// period (+ 10 % jitter) plus a second for the lists.
#[tokio::test]
async fn restored_behind_without_an_outage_is_caught_by_the_periodic_relist() {
    let (api, backup) = cluster_backed_up_then_moved_on().await;
    let backup_rv = api.resource_version() - 11;
    let settings = KubeSettings {
        resync: RESYNC,
        resync_scales: false,
        ..settings()
    };
    let (mut rx, status, task) = start_with(&api, settings).await;
    wait_for(&mut rx, "node-3", |s| s.peer("node-3").is_some()).await;
    // Wait for a periodic relist (3 full lists beyond the first 3), then restore at once.
    let deadline = tokio::time::Instant::now() + RESYNC * 2;
    while full_lists(&api) < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no periodic relist within {:?}: {} full lists",
            RESYNC * 2,
            full_lists(&api)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relisted = tokio::time::Instant::now();
    api.restore(&backup);
    restored_cluster_moves_on(&api, backup_rv);
    tokio::time::sleep(RESYNC / 2).await;
    assert_eq!(
        nodes_of(&rx.borrow()),
        ["node-1", "node-2", "node-3"],
        "the watches alone saw the restore: the fake API server does not model the stale watch"
    );
    let bound = RESYNC.mul_f64(1.1) + Duration::from_secs(1);
    let mut current = false;
    while relisted.elapsed() < bound {
        if nodes_of(&rx.borrow()) == RESTORED {
            current = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        current,
        "stale {bound:?} after the last relist: {:?}",
        nodes_of(&rx.borrow())
    );
    eprintln!(
        "restored behind, no outage: in sync {:.1}s after the previous relist (period {RESYNC:?} ± 10 %)",
        relisted.elapsed().as_secs_f64()
    );
    assert_eq!(status.lock().unwrap().last_error, None, "no outage here");
    task.abort();
}

#[test]
fn the_default_resync_period_grows_with_the_cluster() {
    use meshprobe::k8s::watch::resync_period;
    let base = Duration::from_secs(300);
    for (nodes, scales, want) in [
        (0, true, 300),
        (200, true, 300),
        (1_000, true, 300),
        (2_000, true, 600),
        (5_000, true, 1_500),
        (5_000, false, 300),
    ] {
        assert_eq!(
            resync_period(base, scales, nodes),
            Duration::from_secs(want),
            "{nodes} nodes, scales {scales}"
        );
    }
}

#[test]
fn the_resync_period_is_jittered_by_ten_percent() {
    use meshprobe::k8s::watch::resync_delay;
    let p = Duration::from_secs(300);
    assert_eq!(resync_delay(p, 0.0), Duration::from_secs(270));
    assert_eq!(resync_delay(p, 0.5), Duration::from_secs(300));
    assert!(resync_delay(p, 0.999_999) <= Duration::from_secs(330));
    assert!(resync_delay(p, 0.999_999) > Duration::from_secs(329));
    // Out-of-range input stays within the band.
    assert_eq!(resync_delay(p, 7.0), Duration::from_secs(330));
    assert_eq!(resync_delay(p, -1.0), Duration::from_secs(270));
}

#[tokio::test]
async fn rbac_forbidden_is_a_clear_configuration_error() {
    let api = cluster().await;
    api.forbid("nodes");
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
    let err = match KubeDiscovery::start(client, settings(), status, Duration::from_secs(10)).await
    {
        Ok(_) => panic!("started without permission to list nodes"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(msg.contains("forbidden to list/watch nodes"), "{msg}");
    assert!(msg.contains("deploy/base/rbac.yaml"), "{msg}");
}

#[tokio::test]
async fn an_unreachable_api_server_at_start_times_out_with_the_reason() {
    let api = cluster().await;
    api.down();
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
    let err = match KubeDiscovery::start(client, settings(), status, Duration::from_secs(3)).await {
        Ok(_) => panic!("started without an API server"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.contains("no complete list within 3s"), "{msg}");
}

/// 1,000 nodes and agent pods: the first complete list, one change, and the memory they cost,
/// with bounds loose enough for a loaded CI machine (the debug-build figures measured on the
/// 2-core VM on 2026-12-06 are in the comments). For the documented release-build figures:
/// `cargo test --release --test kube_discovery scale_1000_nodes -- --nocapture`.
#[tokio::test]
async fn scale_1000_nodes() {
    let api = FakeApi::start().await;
    for i in 0..1000u32 {
        let (a, b) = (i / 250, i % 250);
        api.put(
            "nodes",
            node(&format!("node-{i}"), &format!("198.18.{a}.{b}"), "zone-a"),
        );
        api.put(
            "pods",
            agent(
                &format!("meshprobe-{i}"),
                &format!("node-{i}"),
                &format!("198.19.{a}.{b}"),
                true,
            ),
        );
    }
    let before = self_rss_kib();
    let t = std::time::Instant::now();
    let (mut rx, _status, task) = start(&api).await;
    let synced = t.elapsed();
    assert_eq!(rx.borrow().peers.len(), 1000);
    let grown = self_rss_kib().saturating_sub(before);
    // One change: how long until the new set is published.
    let t = std::time::Instant::now();
    api.delete("pods", "meshprobe", "meshprobe-7");
    wait_for(&mut rx, "999 peers", |s| s.peers.len() == 999).await;
    let change = t.elapsed();
    println!(
        "1000 nodes + 1000 agent pods: first complete list in {:.0} ms, RSS of the test process +{} KiB (watch stores, and the fake server's response buffers in the same process), one deletion published after {:.1} ms",
        synced.as_secs_f64() * 1e3,
        grown,
        change.as_secs_f64() * 1e3
    );
    // Measured 710 ms: 7x that.
    assert!(
        synced.as_secs_f64() < 5.0,
        "first complete list took {synced:?}"
    );
    // Measured 10.7 ms; a relist of the 2,000 objects (~700 ms) would fail this.
    assert!(
        change.as_secs_f64() < 0.3,
        "one deletion published after {change:?}"
    );
    // Measured +32,696 KiB: 4x that.
    assert!(grown < 128 * 1024, "RSS grew {grown} KiB");
    task.abort();
}

/// The ClusterIP Service of the agents (tests/fixtures/k8s/service-vip.json) at `ip`, port 9464.
fn vip(ip: &str) -> Value {
    let mut s = fixture("service-vip.json");
    s["spec"]["clusterIP"] = json!(ip);
    s["spec"]["clusterIPs"] = json!([ip]);
    s
}

/// GETs of the agents' Service so far.
fn vip_reads(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| *r == "GET /api/v1/namespaces/meshprobe/services/meshprobe-vip")
        .count()
}

/// The `service` check's ClusterIP read from the API (src/k8s/service.rs), on a schedule
/// shortened for the test: the target follows the Service; it is re-read on the period and,
/// sooner, while the check fails in a row, not otherwise; a deleted Service turns the check
/// off; an API server gone or refusing keeps the last target and says why.
#[tokio::test]
async fn the_service_check_follows_the_agents_clusterip_service() {
    use meshprobe::checks::{Checks, Kind, Outcome};
    use meshprobe::config::ServiceRef;
    use meshprobe::k8s::service::{FamilyPref, Schedule, VipLookup};

    let api = FakeApi::start().await;
    api.put("services", vip("10.96.0.20"));
    let client = meshprobe::k8s::client(Some(&api.url())).await.unwrap();
    let checks = Arc::new(Checks::new(vec![], Duration::from_secs(10)).with_pending(Kind::Service));
    let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
    let schedule = Schedule {
        period: Duration::from_secs(3600),
        after_failures: 2,
        min_gap: Duration::from_millis(300),
        retry: Duration::from_millis(200),
        tick: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
    };
    let lookup = VipLookup {
        client,
        service: ServiceRef {
            namespace: "meshprobe".into(),
            name: "meshprobe-vip".into(),
        },
        pref: FamilyPref::Primary,
        http: Arc::new(meshprobe::probe::http::HttpProber::new()),
        checks: checks.clone(),
        status: status.clone(),
        schedule,
    };
    let task = tokio::spawn(lookup.run());
    let target = || checks.targets().first().map(|(_, t)| t.clone());
    let vip_status = || {
        status
            .lock()
            .unwrap()
            .service
            .clone()
            .unwrap_or_else(|| panic!("no discovery.service status"))
    };
    let until = async |what: &str, f: &dyn Fn() -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}; status {:?}, targets {:?}",
                status.lock().unwrap().service,
                checks.targets()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    until("the first read", &|| target().is_some()).await;
    assert_eq!(target().as_deref(), Some("10.96.0.20:9464"));
    let s = vip_status();
    assert_eq!(
        (s.service.as_str(), s.target.as_deref(), s.reason),
        ("meshprobe/meshprobe-vip", Some("10.96.0.20:9464"), None)
    );

    // Recreated with a new ClusterIP: while the check succeeds, nothing is read before the
    // period (an hour here).
    api.put("services", vip("10.96.0.21"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(vip_reads(&api), 1, "re-read without a reason");
    assert_eq!(target().as_deref(), Some("10.96.0.20:9464"));
    // One failure is not enough; a second in a row re-reads (min_gap past), and the check
    // moves to the new address with a fresh window.
    let i = checks.active()[0];
    let failed = || Outcome::failed("timeout", Duration::from_millis(1), None, "");
    checks.record(i, tokio::time::Instant::now(), failed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(vip_reads(&api), 1, "re-read after one failure");
    checks.record(i, tokio::time::Instant::now(), failed());
    until("the new ClusterIP", &|| {
        target().as_deref() == Some("10.96.0.21:9464")
    })
    .await;
    assert_eq!(vip_reads(&api), 2);
    assert_eq!(checks.failures_in_row(Kind::Service), 0, "a new window");

    // Headless now: no check, and the status says why.
    let mut headless = vip("None");
    headless["spec"]["clusterIPs"] = json!(["None"]);
    api.put("services", headless);
    let i = checks.active()[0];
    checks.record(i, tokio::time::Instant::now(), failed());
    checks.record(i, tokio::time::Instant::now(), failed());
    until("headless: no check", &|| target().is_none()).await;
    let why = vip_status().reason.unwrap();
    assert!(why.contains("headless"), "{why}");
    assert!(checks.reports(tokio::time::Instant::now()).is_empty());

    task.abort();
    // A deleted Service, then an API server refusing or gone: each read once at start.
    let start = async |api: &FakeApi| {
        let checks =
            Arc::new(Checks::new(vec![], Duration::from_secs(10)).with_pending(Kind::Service));
        let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
        let lookup = VipLookup {
            client: meshprobe::k8s::client(Some(&api.url())).await.unwrap(),
            service: ServiceRef {
                namespace: "meshprobe".into(),
                name: "meshprobe-vip".into(),
            },
            pref: FamilyPref::Primary,
            http: Arc::new(meshprobe::probe::http::HttpProber::new()),
            checks: checks.clone(),
            status: status.clone(),
            schedule,
        };
        let read = lookup.read().await;
        lookup.apply(&read);
        (lookup, checks, status)
    };
    api.delete("services", "meshprobe", "meshprobe-vip");
    let (_, c, s) = start(&api).await;
    assert!(c.targets().is_empty());
    let why = s.lock().unwrap().service.clone().unwrap().reason.unwrap();
    assert!(
        why.contains("Service meshprobe/meshprobe-vip not found"),
        "{why}"
    );

    api.put("services", vip("10.96.0.20"));
    let (lookup, c, s) = start(&api).await;
    assert_eq!(c.targets().len(), 1);
    api.forbid("services");
    let read = lookup.read().await;
    lookup.apply(&read);
    let st = s.lock().unwrap().service.clone().unwrap();
    assert_eq!(st.target.as_deref(), Some("10.96.0.20:9464"), "kept");
    let why = st.reason.unwrap();
    assert!(
        why.contains("forbidden to get services meshprobe/meshprobe-vip")
            && why.contains("deploy/base/rbac.yaml")
            && why.contains("keeping the last target 10.96.0.20:9464"),
        "{why}"
    );
    assert_eq!(c.targets().len(), 1, "the check goes on at the last target");
    api.down();
    let read = lookup.read().await;
    lookup.apply(&read);
    assert_eq!(c.targets().len(), 1, "the check goes on at the last target");
    let why = s.lock().unwrap().service.clone().unwrap().reason.unwrap();
    assert!(why.contains("keeping the last target"), "{why}");

    // The periodic re-read: a new ClusterIP is followed without any failure, on the period.
    let api = FakeApi::start().await;
    api.put("services", vip("10.96.0.20"));
    let (lookup, c, _) = start(&api).await;
    let lookup = VipLookup {
        schedule: Schedule {
            period: Duration::from_millis(400),
            ..schedule
        },
        ..lookup
    };
    let task = tokio::spawn(lookup.run());
    // After the task's first read (the second in all), so only the period brings the change.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while vip_reads(&api) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no first read");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    api.put("services", vip("10.96.0.22"));
    while c.targets().first().map(|(_, t)| t.as_str()) != Some("10.96.0.22:9464") {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", c.targets());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.failures_in_row(Kind::Service), 0);
    assert!(vip_reads(&api) >= 3, "{}", vip_reads(&api));
    task.abort();
}
