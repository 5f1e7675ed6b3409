//! `meshprobe plan --simulate --serve ADDR`: a fleet emulator. Every agent of the simulated
//! cluster gets the agent's own store and metric encoder, holding the peers the sampled plan
//! gives it (the plan of the epoch at start: no rotation), fed one result per probe every
//! interval — healthy, or failing as the faults switched on at that moment make it — so its
//! windows, ages and error kinds are the ones a real agent computes. `GET /metrics/ZONE`
//! serves the zone's agents, each sample labelled `instance="NODE"` (scrape with
//! `honor_labels: true`), as Prometheus would scrape a fleet. Agents cut off by a fault (node
//! down, CNI) are not served, as Prometheus could not scrape them. `GET /peers/NODE` lists the
//! peers the plan gives NODE (to pick a probed pair for a route fault). No packet is sent.
//!
//! What a fault does to a cell is pure ([`effect`]); so is the label rewrite ([`relabel`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::faults::{effect, path_mtu, silent, Dst, Effect, EmuFault, Injected, Names, LINK_MTU};
use super::Plan;
use crate::config::PairMetrics;
use crate::discovery::DiscoveryStatus;
use crate::error::{Error, Result};
use crate::metrics::{Identity, Metrics, PlanStatus, StoreCollector};
use crate::model::{DestKind, ErrorClass, IpFamilies, Layer, ProbeResult};
use crate::mtu::{MtuReport, MtuState};
use crate::peers::{Peer, PeerSet, Protocol, Target};
use crate::schedule::{tasks, Task, TaskParams};
use crate::store::Store;
use meshprobe_diagnosis::simulate::{node_ip, pod_base, pod_gateway, pod_ip};

/// The agent's exposition text as one target of a fleet: `# ` lines dropped (the families of
/// many agents share one answer), `instance="NODE"` added to every sample.
pub fn relabel(text: &str, node: &str, out: &mut String) {
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cut = line.find(['{', ' ']).unwrap_or(line.len());
        let (name, rest) = line.split_at(cut);
        out.push_str(name);
        if let Some(labels) = rest.strip_prefix('{') {
            out.push_str(&format!("{{instance=\"{node}\","));
            out.push_str(labels);
        } else {
            out.push_str(&format!("{{instance=\"{node}\"}}"));
            out.push_str(rest);
        }
        out.push('\n');
    }
}

struct Agent {
    index: usize,
    store: Arc<Mutex<Store>>,
    metrics: Metrics,
    tasks: Vec<Task>,
}

struct Fleet {
    plan: Plan,
    agents: Vec<Agent>,
    /// The emulated target pods: name, node index.
    targets: Vec<(String, usize)>,
    injected: Vec<Injected>,
    started: std::time::Instant,
}

/// The emulated agents' ICMP echoes per probe (the agent's `--icmp-count` default).
const ICMP_COUNT: u16 = 3;

/// One probe's result under `effect`; `draw` gives uniform samples in [0, 1) for loss.
fn outcome(effect: Option<Effect>, layer: Layer, mut draw: impl FnMut() -> f64) -> ProbeResult {
    let rtt = Duration::from_micros(300);
    let icmp = matches!(layer, Layer::IcmpPod | Layer::IcmpNode);
    match effect {
        // An answered echo probe sends and gets back all its echoes, as the agent's does: the
        // diagnosis reads lost packets per probe only when every probe sent the same number.
        None if icmp => ProbeResult {
            sent: ICMP_COUNT,
            received: ICMP_COUNT,
            rtts: vec![rtt; usize::from(ICMP_COUNT)],
            phases: None,
            error: None,
        },
        None => ProbeResult::ok(rtt, None),
        Some(Effect::Fail(e)) => ProbeResult::failed(if icmp { ICMP_COUNT } else { 1 }, e),
        // An exchange (TCP, HTTP) fails when its one attempt is lost: the agents' timeout is
        // below TCP's first retransmission.
        Some(Effect::Lossy(p)) if !icmp => {
            if draw() < p {
                ProbeResult::failed(1, ErrorClass::Timeout)
            } else {
                ProbeResult::ok(rtt, None)
            }
        }
        Some(Effect::Lossy(p)) => {
            let received = (0..ICMP_COUNT).filter(|_| draw() >= p).count() as u16;
            ProbeResult {
                sent: ICMP_COUNT,
                received,
                rtts: vec![rtt; usize::from(received)],
                phases: None,
                error: (received < ICMP_COUNT).then_some(ErrorClass::Timeout),
            }
        }
    }
}

/// What an agent's path-MTU search concludes toward a destination whose path carries `mtu`.
fn mtu_report(mtu: u32) -> MtuReport {
    let (path_mtu, state) = if mtu < LINK_MTU {
        (mtu, MtuState::Blackhole)
    } else {
        (LINK_MTU, MtuState::Ok)
    };
    MtuReport {
        path_mtu: Some(path_mtu),
        expected_mtu: LINK_MTU,
        state,
        searching: false,
        reported_by: None,
        probes_sent: 0,
        searches: 1,
    }
}

impl Fleet {
    fn on(&self) -> Vec<&EmuFault> {
        let t = self.started.elapsed().as_secs_f64();
        self.injected
            .iter()
            .filter(|i| i.on_at(t))
            .map(|i| &i.fault)
            .collect()
    }

    fn zone(&self, i: usize) -> &str {
        &self.plan.zones[self.plan.zone_of[i]]
    }

    /// One interval's probes of every agent.
    fn round(&self) {
        use rand::RngExt;
        let on = self.on();
        let zone_of = |i: usize| self.zone(i);
        let names = Names {
            names: &self.plan.names,
            zone_of: &zone_of,
            targets: &self.targets,
        };
        let now = Instant::now();
        let index: BTreeMap<(DestKind, &str), Dst> = self
            .plan
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| ((DestKind::Peer, n.as_str()), Dst::Node(i)))
            .chain(
                self.targets
                    .iter()
                    .enumerate()
                    .map(|(t, (n, _))| ((DestKind::Target, n.as_str()), Dst::Target(t))),
            )
            .collect();
        let mut rng = rand::rng();
        for a in &self.agents {
            let Ok(mut store) = a.store.lock() else {
                continue;
            };
            for t in &a.tasks {
                let Some(&dst) = index.get(&(t.key.kind, t.key.name.as_str())) else {
                    continue;
                };
                let e = effect(&on, &names, a.index, dst, t.key.layer);
                let r = outcome(e, t.key.layer, || rng.random::<f64>());
                store.record(&t.key, now, &r);
                a.metrics.observe(t.key.layer, &r);
                // The agents search the path MTU of every pod-IP echo destination.
                if t.key.layer == Layer::IcmpPod {
                    store.set_mtu(&t.key, mtu_report(path_mtu(&on, &names, a.index, dst)));
                }
            }
            drop(store);
            a.metrics.rounds.inc();
        }
    }

    /// The zone's scrape: every agent of `zone` not cut off.
    fn scrape(&self, zone: &str) -> Option<String> {
        if !self.plan.zones.iter().any(|z| z == zone) {
            return None;
        }
        let on = self.on();
        let mut out = String::new();
        for a in self.agents.iter().filter(|a| self.zone(a.index) == zone) {
            let node = &self.plan.names[a.index];
            if silent(&on, node) {
                continue;
            }
            if let Ok(text) = a.metrics.encode() {
                relabel(&text, node, &mut out);
            }
        }
        Some(out)
    }
}

/// The emulated target pods: `web-00001` … spread evenly over the nodes, each at its node's
/// pod base + 11, answering HTTP on 8080 (as the lab's `web-node-N`).
pub fn targets(plan: &Plan, count: usize) -> Vec<(String, usize)> {
    let n = plan.names.len();
    (0..count.min(n))
        .map(|t| (format!("web-{:05}", t + 1), t * n / count.min(n).max(1)))
        .collect()
}

/// Build the fleet of `plan` with `targets` target pods and serve it on `addr` until Ctrl-C,
/// one round every `interval`.
pub async fn serve(
    plan: Plan,
    addr: SocketAddr,
    interval: Duration,
    window: Duration,
    targets: usize,
    injected: Vec<Injected>,
) -> Result<u8> {
    let target_list = self::targets(&plan, targets);
    for i in &injected {
        for n in i.fault.nodes() {
            if plan.index(n).is_none() {
                return Err(Error::Config(format!(
                    "--inject: no node {n:?} in the simulated cluster (names run node-{:05} …)",
                    1
                )));
            }
        }
        if let EmuFault::Partition(a, b) = &i.fault {
            for z in [a, b] {
                if !plan.zones.contains(z) {
                    return Err(Error::Config(format!(
                        "--inject: no zone {z:?} (zones: {})",
                        plan.zones.join(", ")
                    )));
                }
            }
        }
        if let EmuFault::Policy(t) = &i.fault {
            if !target_list.iter().any(|(n, _)| n == t) {
                return Err(Error::Config(format!(
                    "--inject: no target {t:?} (--targets {targets}: {})",
                    if targets == 0 {
                        "none; give --targets N".to_string()
                    } else {
                        format!("web-00001 … web-{targets:05}")
                    }
                )));
            }
        }
    }
    let zone = |i: usize| {
        let z = &plan.zones[plan.zone_of[i]];
        (!z.is_empty()).then(|| z.clone())
    };
    let set = Arc::new(PeerSet {
        peers: (0..plan.names.len())
            .map(|i| Peer {
                node: plan.names[i].clone(),
                node_ip: node_ip(i),
                pod_ip: pod_ip(i),
                zone: zone(i),
                port: None,
                // The emulated layout's facts: a /24 per node, its .1 the pod gateway.
                pod_cidrs: vec![meshprobe_core::net::Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(pod_base(i))),
                    len: 24,
                }],
                pod_gateway: Some(pod_gateway(i)),
                pod_gateways: Vec::new(),
                node_ips: Vec::new(),
                pod_ips: Vec::new(),
            })
            .collect(),
        targets: target_list
            .iter()
            .map(|(name, node)| Target {
                name: name.clone(),
                ip: IpAddr::V4(Ipv4Addr::from(pod_base(*node) + 11)),
                port: 8080,
                protocol: Protocol::Http,
                path: None,
                node: Some(plan.names[*node].clone()),
                ips: Vec::new(),
            })
            .collect(),
    });
    let params = TaskParams {
        default_port: crate::config::DEFAULT_PORT,
        icmp_count: 3,
        icmp_size: 56,
        families: IpFamilies::Auto,
    };
    // Every probe of every destination, by destination; each agent takes its peers'.
    let all = tasks(&set, "", params);
    let mut by_dst: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in &all {
        by_dst.entry(t.key.name.as_str()).or_default().push(t);
    }
    // Every agent's collector reads the shared plan (its stable peers get planned series).
    let shared_plan = Arc::new(plan.clone());
    // One ownership map for the fleet (they share one peer set): one per emulated agent
    // would be N² entries.
    let mut first: Option<Arc<Mutex<Store>>> = None;
    let agents = (0..plan.names.len())
        .map(|s| {
            let me = &plan.names[s];
            // Its planned peers, and every target (targets are never sampled).
            let mine: Vec<Task> = plan
                .peers_of(me)
                .into_iter()
                .chain(target_list.iter().map(|(n, _)| n.as_str()))
                .flat_map(|d| by_dst.get(d).into_iter().flatten())
                .map(|t| (*t).clone())
                .collect();
            let mut store = Store::new(me.clone(), window);
            store.set_peers(set.clone(), &mine);
            if let Some(f) = &first {
                store.share_owners(&f.lock().unwrap());
            }
            let store = Arc::new(Mutex::new(store));
            first.get_or_insert_with(|| store.clone());
            let metrics = Metrics::new(StoreCollector {
                identity: Identity {
                    node: me.clone(),
                    zone: zone(s),
                },
                store: store.clone(),
                discovery: Arc::new(Mutex::new(DiscoveryStatus::default())),
                ready: Arc::new(AtomicBool::new(true)),
                pair_metrics: PairMetrics::Auto,
                icmp_socket: "raw",
                pmtu_socket: "raw",
                interval,
                window,
                plan: Arc::new(PlanStatus {
                    sampled: AtomicBool::new(plan.sampled),
                    peers: AtomicUsize::new(plan.out[s].len()),
                    current: Mutex::new(plan.sampled.then(|| shared_plan.clone())),
                }),
            });
            Agent {
                index: s,
                store,
                metrics,
                tasks: mine,
            }
        })
        .collect();
    let fleet = Arc::new(Fleet {
        plan,
        agents,
        targets: target_list,
        injected,
        started: std::time::Instant::now(),
    });
    let ticker = fleet.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let f = ticker.clone();
            let _ = tokio::task::spawn_blocking(move || f.round()).await;
        }
    });
    let zones = fleet.plan.zones.clone();
    let served = fleet.clone();
    let planned = fleet.clone();
    let app = axum::Router::new()
        .route(
            "/metrics/{zone}",
            axum::routing::get(
                move |axum::extract::Path(zone): axum::extract::Path<String>| {
                    let f = served.clone();
                    async move {
                        match tokio::task::spawn_blocking(move || f.scrape(&zone)).await {
                            Ok(Some(text)) => (
                                axum::http::StatusCode::OK,
                                [("content-type", "text/plain; version=0.0.4")],
                                text,
                            ),
                            _ => (
                                axum::http::StatusCode::NOT_FOUND,
                                [("content-type", "text/plain")],
                                "no such zone\n".to_string(),
                            ),
                        }
                    }
                },
            ),
        )
        .route(
            "/peers/{node}",
            axum::routing::get(
                move |axum::extract::Path(node): axum::extract::Path<String>| {
                    let f = planned.clone();
                    async move {
                        match f.plan.index(&node) {
                            Some(_) => Ok(axum::Json(
                                f.plan
                                    .peers_of(&node)
                                    .into_iter()
                                    .map(str::to_string)
                                    .collect::<Vec<_>>(),
                            )),
                            None => Err(axum::http::StatusCode::NOT_FOUND),
                        }
                    }
                },
            ),
        )
        .route(
            "/",
            axum::routing::get(move || {
                let z = zones.clone();
                async move {
                    axum::Json(
                        z.iter()
                            .map(|z| format!("/metrics/{z}"))
                            .collect::<Vec<_>>(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("--serve {addr}: {e}")))?;
    eprintln!(
        "meshprobe plan: emulating {} agents ({} zones) on http://{addr}/metrics/ZONE",
        fleet.agents.len(),
        fleet.plan.zones.len()
    );
    tokio::select! {
        r = axum::serve(listener, app) => r.map_err(|e| Error::Socket(format!("--serve: {e}")))?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lossy_probe_loses_each_packet_by_its_own_draw() {
        // Draws below p are losses.
        let mut draws = [0.1, 0.9, 0.2].into_iter();
        let r = outcome(Some(Effect::Lossy(0.3)), Layer::IcmpPod, || {
            draws.next().unwrap()
        });
        assert_eq!((r.sent, r.received, r.rtts.len()), (3, 1, 1));
        assert!(r.success() && r.error == Some(ErrorClass::Timeout), "{r:?}");
        let r = outcome(Some(Effect::Lossy(0.3)), Layer::IcmpNode, || 0.0);
        assert!(!r.success() && r.received == 0, "{r:?}");
        let r = outcome(Some(Effect::Lossy(0.3)), Layer::IcmpNode, || 0.5);
        assert_eq!((r.received, &r.error), (3, &None));
        let r = outcome(Some(Effect::Lossy(0.3)), Layer::Http, || 0.2);
        assert!(!r.success());
        assert!(outcome(Some(Effect::Lossy(0.3)), Layer::Http, || 0.4).success());
        assert!(outcome(None, Layer::Http, || unreachable!()).success());
        // Healthy, failed and lossy echo probes all send the agent's echo count.
        for layer in [Layer::IcmpPod, Layer::IcmpNode] {
            let r = outcome(None, layer, || unreachable!());
            assert_eq!((r.sent, r.received, r.rtts.len()), (3, 3, 3), "{r:?}");
            assert!(r.success() && r.error.is_none());
        }
        assert_eq!(outcome(None, Layer::Http, || unreachable!()).sent, 1);
        let r = outcome(
            Some(Effect::Fail(ErrorClass::Timeout)),
            Layer::IcmpPod,
            || unreachable!(),
        );
        assert_eq!((r.sent, r.received), (ICMP_COUNT, 0));
        assert_eq!(mtu_report(1400).state, MtuState::Blackhole);
        assert_eq!(mtu_report(1400).path_mtu, Some(1400));
        assert_eq!(mtu_report(LINK_MTU).state, MtuState::Ok);
    }

    #[test]
    fn targets_spread_over_the_fleet() {
        let plan = crate::plan::Plan::build(
            &crate::plan::simulate::cluster(60, 3, 1),
            &crate::plan::PlanParams::default(),
            0,
        );
        let t = targets(&plan, 3);
        let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["web-00001", "web-00002", "web-00003"]);
        assert_eq!(t.iter().map(|x| x.1).collect::<Vec<_>>(), [0, 20, 40]);
        assert!(targets(&plan, 0).is_empty());
        assert_eq!(targets(&plan, 500).len(), 60, "at most one per node");
    }

    #[test]
    fn every_sample_gets_its_instance_and_metadata_goes() {
        let text =
            "# HELP m help\n# TYPE m gauge\nm 1\nn_total{layer=\"http\",result=\"ok\"} 3\n# EOF\n";
        let mut out = String::new();
        relabel(text, "node-7", &mut out);
        assert_eq!(
            out,
            "m{instance=\"node-7\"} 1\nn_total{instance=\"node-7\",layer=\"http\",result=\"ok\"} 3\n"
        );
    }
}
