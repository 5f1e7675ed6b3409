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

use super::Plan;
use crate::config::PairMetrics;
use crate::discovery::DiscoveryStatus;
use crate::error::{Error, Result};
use crate::metrics::{Identity, Metrics, PlanStatus, StoreCollector};
use crate::model::IpFamilies;
use crate::model::{ErrorClass, Layer, ProbeResult};
use crate::peers::{Peer, PeerSet};
use crate::schedule::{tasks, Task, TaskParams};
use crate::store::Store;
use meshprobe_core::parse::parse_duration;
use meshprobe_diagnosis::simulate::{node_ip, pod_base, pod_gateway, pod_ip};

/// A fault the emulator switches on and off (`--inject KIND:WHERE[@START[-END]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    pub fault: EmuFault,
    /// Seconds after start when it begins, and ends (none: never).
    pub start: f64,
    pub end: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmuFault {
    /// Nothing reaches the node; its agent is not scraped.
    NodeDown(String),
    /// The node's pod network is cut off: its pod IP and agent fail, its node IP answers.
    Cni(String),
    /// Nothing crosses between the two zones.
    Partition(String, String),
    /// The first node lost its route to the second's pod subnet: net unreachable from its pod
    /// gateway one way, silence the other.
    Route(String, String),
}

impl Injected {
    /// `node-down:NODE`, `cni:NODE`, `partition:ZONE,ZONE` or `route:NODE,NODE`, optionally
    /// `@START` or `@START-END` (durations after start, e.g. `@30s-2m`).
    pub fn parse(spec: &str) -> std::result::Result<Injected, String> {
        let bad = |why: &str| format!("--inject {spec:?}: {why}");
        let (what, when) = spec.split_once('@').unwrap_or((spec, ""));
        let (kind, place) = what
            .split_once(':')
            .ok_or_else(|| bad("expected KIND:WHERE, e.g. cni:node-00017"))?;
        let two = || {
            place
                .split_once(',')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && a != b)
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad("expected two different names, comma-separated"))
        };
        if place.is_empty() {
            return Err(bad("no node or zone given"));
        }
        let fault = match kind {
            "node-down" => EmuFault::NodeDown(place.to_string()),
            "cni" => EmuFault::Cni(place.to_string()),
            "partition" => {
                let (a, b) = two()?;
                EmuFault::Partition(a, b)
            }
            "route" => {
                let (a, b) = two()?;
                EmuFault::Route(a, b)
            }
            _ => {
                return Err(bad(
                    "unknown kind; expected node-down, cni, partition or route",
                ))
            }
        };
        let secs = |s: &str| {
            parse_duration(s)
                .map(|d| d.as_secs_f64())
                .map_err(|e| bad(&format!("{s:?}: {e}")))
        };
        let (start, end) = match when.split_once('-') {
            _ if when.is_empty() => (0.0, None),
            Some((a, b)) => (secs(a)?, Some(secs(b)?)),
            None => (secs(when)?, None),
        };
        if end.is_some_and(|e| e <= start) {
            return Err(bad("the end must come after the start"));
        }
        Ok(Injected { fault, start, end })
    }

    pub fn on_at(&self, secs: f64) -> bool {
        secs >= self.start && self.end.is_none_or(|e| secs < e)
    }
}

/// Names and zones of the cluster, for [`effect`].
pub struct Names<'a> {
    pub names: &'a [String],
    pub zone_of: &'a dyn Fn(usize) -> &'a str,
}

/// What the faults `on` make of the probe from `src` to `dst` on `layer`: `None` when it
/// succeeds. The first fault that touches the cell decides.
pub fn effect(
    on: &[&EmuFault],
    n: &Names,
    src: usize,
    dst: usize,
    layer: Layer,
) -> Option<ErrorClass> {
    let name = |i: usize| n.names[i].as_str();
    let pod_layer = matches!(layer, Layer::IcmpPod | Layer::Http);
    for f in on {
        match f {
            EmuFault::NodeDown(x) if name(dst) == x => return Some(ErrorClass::Timeout),
            EmuFault::Cni(x) if name(dst) == x && pod_layer => return Some(ErrorClass::Timeout),
            EmuFault::Partition(a, b) => {
                let (zs, zd) = ((n.zone_of)(src), (n.zone_of)(dst));
                if (zs == a && zd == b) || (zs == b && zd == a) {
                    return Some(ErrorClass::Timeout);
                }
            }
            EmuFault::Route(a, b) if pod_layer && name(src) == a && name(dst) == b => {
                return Some(ErrorClass::NetUnreachable {
                    from: Some(pod_gateway(src)),
                })
            }
            EmuFault::Route(a, b) if pod_layer && name(src) == b && name(dst) == a => {
                return Some(ErrorClass::Timeout)
            }
            _ => {}
        }
    }
    None
}

/// Whether the faults `on` cut `node`'s agent off from Prometheus.
pub fn silent(on: &[&EmuFault], node: &str) -> bool {
    on.iter()
        .any(|f| matches!(f, EmuFault::NodeDown(x) | EmuFault::Cni(x) if x == node))
}

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
    injected: Vec<Injected>,
    started: std::time::Instant,
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
        let on = self.on();
        let zone_of = |i: usize| self.zone(i);
        let names = Names {
            names: &self.plan.names,
            zone_of: &zone_of,
        };
        let now = Instant::now();
        let index: BTreeMap<&str, usize> = self
            .plan
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        for a in &self.agents {
            let Ok(mut store) = a.store.lock() else {
                continue;
            };
            for t in &a.tasks {
                let Some(&dst) = index.get(t.key.name.as_str()) else {
                    continue;
                };
                let r = match effect(&on, &names, a.index, dst, t.key.layer) {
                    Some(e) => ProbeResult::failed(1, e),
                    None => ProbeResult::ok(Duration::from_micros(300), None),
                };
                store.record(&t.key, now, &r);
                a.metrics.observe(t.key.layer, &r);
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

/// Build the fleet of `plan` and serve it on `addr` until Ctrl-C, one round every `interval`.
pub async fn serve(
    plan: Plan,
    addr: SocketAddr,
    interval: Duration,
    window: Duration,
    injected: Vec<Injected>,
) -> Result<u8> {
    for i in &injected {
        let names: Vec<&str> = match &i.fault {
            EmuFault::NodeDown(x) | EmuFault::Cni(x) => vec![x],
            EmuFault::Route(a, b) => vec![a, b],
            EmuFault::Partition(..) => vec![],
        };
        for n in names {
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
        targets: Vec::new(),
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
    let agents = (0..plan.names.len())
        .map(|s| {
            let me = &plan.names[s];
            let mine: Vec<Task> = plan
                .peers_of(me)
                .into_iter()
                .flat_map(|d| by_dst.get(d).into_iter().flatten())
                .map(|t| (*t).clone())
                .collect();
            let mut store = Store::new(me.clone(), window);
            store.set_peers(set.clone(), &mine);
            let store = Arc::new(Mutex::new(store));
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
                pmtu_socket: "off",
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
    fn faults_parse_with_schedules_and_bad_ones_are_named() {
        let f = Injected::parse("cni:node-00017@30s-2m").unwrap();
        assert_eq!(f.fault, EmuFault::Cni("node-00017".into()));
        assert_eq!((f.start, f.end), (30.0, Some(120.0)));
        assert!(!f.on_at(29.9) && f.on_at(30.0) && f.on_at(119.0) && !f.on_at(120.0));
        let f = Injected::parse("partition:zone-a,zone-c").unwrap();
        assert_eq!(
            f.fault,
            EmuFault::Partition("zone-a".into(), "zone-c".into())
        );
        assert!(f.on_at(0.0) && f.on_at(1e9));
        for (bad, why) in [
            ("cni", "expected KIND:WHERE"),
            ("cni:", "no node or zone"),
            ("loss:node-1", "unknown kind"),
            ("route:node-1", "two different names"),
            ("route:node-1,node-1", "two different names"),
            ("cni:n@soon", "\"soon\""),
            ("cni:n@2m-1m", "end must come after"),
        ] {
            let e = Injected::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn each_fault_fails_exactly_its_cells() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let zones = ["z1", "z1", "z2", "z2"];
        let zone_of = |i: usize| zones[i];
        let n = Names {
            names: &names,
            zone_of: &zone_of,
        };
        let cell = |f: &EmuFault, s, d, l| effect(&[f], &n, s, d, l);
        let down = EmuFault::NodeDown("c".into());
        assert_eq!(
            cell(&down, 0, 2, Layer::IcmpNode),
            Some(ErrorClass::Timeout)
        );
        assert_eq!(cell(&down, 2, 0, Layer::IcmpNode), None);
        assert!(silent(&[&down], "c") && !silent(&[&down], "a"));
        let cni = EmuFault::Cni("c".into());
        assert_eq!(cell(&cni, 0, 2, Layer::IcmpPod), Some(ErrorClass::Timeout));
        assert_eq!(cell(&cni, 0, 2, Layer::Http), Some(ErrorClass::Timeout));
        assert_eq!(cell(&cni, 0, 2, Layer::IcmpNode), None);
        assert!(silent(&[&cni], "c"));
        let part = EmuFault::Partition("z1".into(), "z2".into());
        assert_eq!(
            cell(&part, 0, 3, Layer::IcmpNode),
            Some(ErrorClass::Timeout)
        );
        assert_eq!(cell(&part, 3, 1, Layer::Http), Some(ErrorClass::Timeout));
        assert_eq!(cell(&part, 0, 1, Layer::IcmpNode), None);
        assert!(!silent(&[&part], "a"));
        let route = EmuFault::Route("a".into(), "b".into());
        assert_eq!(
            cell(&route, 0, 1, Layer::IcmpPod),
            Some(ErrorClass::NetUnreachable {
                from: Some(pod_gateway(0))
            })
        );
        assert_eq!(cell(&route, 1, 0, Layer::Http), Some(ErrorClass::Timeout));
        assert_eq!(cell(&route, 0, 1, Layer::IcmpNode), None);
        assert_eq!(cell(&route, 0, 2, Layer::IcmpPod), None);
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
