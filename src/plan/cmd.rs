//! `meshprobe plan --simulate`: run the [`simulate`](super::simulate) model and print it. The
//! series count runs the agent's real metrics encoder over an in-memory store holding the
//! busiest agent's assigned peers (no network).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::simulate::{simulate, FaultKind, SimParams, SimReport, MAX_NODES};

/// `--targets` at most: every emulated agent probes every target.
const MAX_TARGETS: usize = 100;
use super::PlanParams;
use crate::config::PairMetrics;
use crate::diagnose::Output;
use crate::discovery::DiscoveryStatus;
use crate::error::{Error, Result};
use crate::metrics::{Identity, Metrics, PlanStatus, StoreCollector};
use crate::model::IpFamilies;
use crate::model::{ErrorClass, ProbeResult};
use crate::mtu::{MtuReport, MtuState};
use crate::peers::{Peer, PeerSet};
use crate::schedule::{tasks, TaskParams};
use crate::store::Store;
use meshprobe_core::parse::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Simulate a cluster (pure: nothing is sent): load, coverage, series, and faults diagnosed.
    #[arg(long)]
    pub simulate: bool,
    /// Nodes in the simulated cluster.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Zones in the simulated cluster.
    #[arg(long, default_value_t = 3)]
    pub zones: usize,
    /// Seed for zone placement and the fault set.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probe interval of the agents.
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Length of a rotation epoch (the rotating peers change once per epoch).
    #[arg(long, default_value = "60s")]
    pub epoch: String,
    /// Full mesh up to this many nodes (the agent's --full-mesh-max).
    #[arg(long, default_value_t = 200)]
    pub full_mesh_max: usize,
    /// Rotating peers per agent per epoch.
    #[arg(long, default_value_t = 8)]
    pub rotate: usize,
    /// Faults injected per kind.
    #[arg(long, default_value_t = 4)]
    pub faults: usize,
    /// The cluster's address families: ipv4 or ipv6 (one family per peer) or dual (every
    /// peer probed at both, as agents do with --ip-family auto on a dual-stack cluster).
    #[arg(long, default_value = "ipv4")]
    pub ip_family: String,
    /// Output: text for people, json for machines.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Instead of the report: emulate the fleet's agents and serve their metrics on this
    /// address (`GET /metrics/ZONE`, every sample labelled `instance`; scrape with
    /// honor_labels), one round of probes every --interval, until Ctrl-C.
    #[arg(long, value_name = "ADDR", requires = "simulate")]
    pub serve: Option<String>,
    /// With --serve: a fault to switch on, `KIND:WHERE[@START[-END]]` — node-down:NODE,
    /// cni:NODE, partition:ZONE,ZONE, route:NODE,NODE, loss:NODE,PERCENT, mtu:NODE,BYTES or
    /// policy:TARGET, from START to END after start (e.g. cni:node-00017@30s-2m); repeatable.
    #[arg(long, value_name = "SPEC", requires = "serve")]
    pub inject: Vec<String>,
    /// With --serve: target pods every agent probes (ICMP and HTTP), `web-00001` … spread
    /// evenly over the nodes.
    #[arg(long, default_value_t = 0, requires = "serve")]
    pub targets: usize,
    /// With --serve: the agents' --window.
    #[arg(long, default_value = "60s", requires = "serve")]
    pub window: String,
}

pub async fn run(args: PlanArgs) -> Result<u8> {
    if !args.simulate {
        return Err(Error::Config(
            "meshprobe plan: only --simulate is supported (agents compute their own plan from the peers file)".into(),
        ));
    }
    let dur = |flag: &str, v: &str| {
        parse_duration(v).map_err(|e| Error::Config(format!("--{flag} {v:?}: {e}")))
    };
    let interval = dur("interval", &args.interval)?;
    let epoch = dur("epoch", &args.epoch)?;
    if interval.is_zero() || epoch < interval {
        return Err(Error::Config(format!(
            "--interval {:?} must be above zero and --epoch {:?} at least one interval",
            args.interval, args.epoch
        )));
    }
    if args.nodes == 0 || args.nodes > MAX_NODES {
        return Err(Error::Config(format!(
            "--nodes {}: must be between 1 and {MAX_NODES}",
            args.nodes
        )));
    }
    if args.zones > args.nodes.max(1) {
        return Err(Error::Config(format!(
            "--zones {}: more zones than --nodes {}",
            args.zones, args.nodes
        )));
    }
    let params = SimParams {
        nodes: args.nodes,
        zones: args.zones,
        seed: args.seed,
        interval,
        epoch,
        plan: PlanParams {
            full_mesh_max: args.full_mesh_max,
            rotate: args.rotate,
            ..PlanParams::default()
        },
        faults: args.faults,
        families: match args.ip_family.as_str() {
            "ipv4" | "ipv6" => 1,
            "dual" => 2,
            other => {
                return Err(Error::Config(format!(
                    "--ip-family {other:?}: expected ipv4, ipv6 or dual"
                )))
            }
        },
        ..SimParams::default()
    };
    if let Some(addr) = &args.serve {
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| Error::Config(format!("--serve {addr:?}: expected IP:PORT")))?;
        let window = dur("window", &args.window)?;
        if window < interval {
            return Err(Error::Config(format!(
                "--window {:?} must be at least one --interval",
                args.window
            )));
        }
        if args.zones == 0 {
            return Err(Error::Config(
                "--serve needs --zones 1 or more (one scrape target per zone)".into(),
            ));
        }
        let injected = args
            .inject
            .iter()
            .map(|s| super::faults::Injected::parse(s).map_err(Error::Config))
            .collect::<Result<Vec<_>>>()?;
        let nodes = super::simulate::cluster(params.nodes, params.zones, params.seed);
        let plan = super::Plan::build(&nodes, &params.plan, 0);
        if args.targets > MAX_TARGETS {
            return Err(Error::Config(format!(
                "--targets {}: at most {MAX_TARGETS} (every agent probes every target)",
                args.targets
            )));
        }
        return super::emulate::serve(plan, addr, interval, window, args.targets, injected).await;
    }
    let started = std::time::Instant::now();
    let mut report = simulate(&params);
    let busiest = report.peers_per_agent.max as usize;
    report.series_per_agent_steady = Some(count_series(busiest, report.sampled, false));
    report.series_per_agent_one_failing_peer = Some(count_series(busiest, report.sampled, true));
    let took = started.elapsed();
    // What an agent pays to compute the plan (once per epoch and per peer-set change).
    let nodes = super::simulate::cluster(params.nodes, params.zones, params.seed);
    let t = std::time::Instant::now();
    let _ = super::Plan::build(&nodes, &params.plan, 0);
    report.plan_build_seconds = Some(t.elapsed().as_secs_f64());
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into())
        ),
        Output::Text => print!("{}", render(&report, took)),
    }
    Ok(0)
}

/// The series an agent with `peers` assigned peers exports (the real encoder, all healthy, or
/// one peer failing on every layer), with `--pair-metrics` as the agent picks it by default:
/// every pair on a full mesh, failing pairs only on a sampled plan.
pub fn count_series(peers: usize, sampled: bool, one_failing: bool) -> usize {
    let ip = |a: u8, i: usize| -> std::net::IpAddr {
        std::net::Ipv4Addr::new(a, (i >> 16) as u8, (i >> 8) as u8, i as u8).into()
    };
    let set = Arc::new(PeerSet {
        peers: (0..=peers)
            .map(|i| Peer {
                node: format!("n{i}"),
                node_ip: ip(172, i + 1),
                pod_ip: ip(10, i + 1),
                zone: Some(format!("zone-{}", i % 3)),
                port: None,
                pod_cidrs: Vec::new(),
                pod_gateway: None,
                pod_gateways: Vec::new(),
                node_ips: Vec::new(),
                pod_ips: Vec::new(),
            })
            .collect(),
        targets: Vec::new(),
    });
    let params = TaskParams {
        default_port: 9464,
        icmp_count: 3,
        icmp_size: 56,
        families: IpFamilies::Auto,
    };
    let t = tasks(&set, "n0", params);
    let mut store = Store::new("n0", Duration::from_secs(60));
    store.set_peers(set, &t);
    let m = |store: Store| {
        Metrics::new(StoreCollector {
            identity: Identity {
                node: "n0".into(),
                zone: Some("zone-0".into()),
            },
            store: Arc::new(Mutex::new(store)),
            discovery: Arc::new(Mutex::new(DiscoveryStatus::default())),
            ready: Arc::new(AtomicBool::new(true)),
            pair_metrics: PairMetrics::Auto,
            icmp_socket: "raw",
            pmtu_socket: "raw",
            interval: Duration::from_secs(5),
            window: Duration::from_secs(60),
            plan: Arc::new(PlanStatus {
                sampled: AtomicBool::new(sampled),
                peers: std::sync::atomic::AtomicUsize::new(peers),
                current: Default::default(),
            }),
        })
    };
    let now = Instant::now();
    let mut results = Vec::new();
    for task in &t {
        let r = if one_failing && task.key.name == "n1" {
            ProbeResult::failed(1, ErrorClass::Timeout)
        } else {
            ProbeResult::ok(Duration::from_micros(300), None)
        };
        store.record(&task.key, now, &r);
        if task.key.layer != crate::model::Layer::Http {
            store.set_mtu(
                &task.key,
                MtuReport {
                    path_mtu: Some(1500),
                    expected_mtu: 1500,
                    state: MtuState::Ok,
                    searching: false,
                    reported_by: None,
                    probes_sent: 10,
                    searches: 1,
                },
            );
        }
        results.push((task.key.layer, r));
    }
    let metrics = m(store);
    for (layer, r) in &results {
        metrics.observe(*layer, r);
    }
    metrics.lateness.observe(0.001);
    metrics.rounds.inc();
    metrics
        .encode()
        .map(|text| {
            text.lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count()
        })
        .unwrap_or(0)
}

fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        "never".into()
    } else if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The text table.
pub fn render(r: &SimReport, took: Duration) -> String {
    let mut o = String::new();
    let line = |o: &mut String, what: &str, value: String, target: &str| {
        o.push_str(&format!("  {what:<48} {value:<24} {target}\n"));
    };
    o.push_str(&format!(
        "meshprobe plan --simulate: {} nodes, {} zones, seed {}, interval {}s, epoch {}s — {}\n\n",
        r.nodes,
        r.zones,
        r.seed,
        r.interval_seconds,
        r.epoch_seconds,
        if r.sampled {
            format!("sampled plan (full mesh up to {} nodes)", r.full_mesh_max)
        } else {
            "full mesh".into()
        }
    ));
    line(&mut o, "what", "value".into(), "target at 5,000 nodes");
    let p = &r.peers_per_agent;
    line(
        &mut o,
        "peers per agent (min / mean / max)",
        format!("{:.0} / {:.1} / {:.0}", p.min, p.mean, p.max),
        "",
    );
    if let Some(b) = r.peers_per_agent_bound {
        line(
            &mut o,
            "  bound by construction (peers / probes/s)",
            format!(
                "{b} / {:.1}",
                b as f64 * 3.0 * r.families as f64 / r.interval_seconds
            ),
            "",
        );
    }
    let q = &r.probes_per_second_per_agent;
    line(
        &mut o,
        "probes/s per agent (mean / max)",
        format!("{:.1} / {:.1}", q.mean, q.max),
        "<= 20",
    );
    line(
        &mut o,
        "probes/s cluster-wide",
        thousands(r.probes_per_second_cluster),
        &format!(
            "<= 100,000 (full mesh: {})",
            thousands(r.full_mesh_probes_per_second_cluster)
        ),
    );
    line(
        &mut o,
        "echoes + HTTP exchanges/s (agent max / cluster)",
        format!(
            "{:.1} / {}",
            r.packets_per_second_per_agent_max,
            thousands(r.packets_per_second_cluster)
        ),
        "",
    );
    line(
        &mut o,
        "path-MTU checks/s per agent (max)",
        format!("{:.2}", r.mtu_checks_per_second_per_agent_max),
        "",
    );
    let i = &r.probers_per_node;
    line(
        &mut o,
        "probers per node every interval (min / mean)",
        format!("{:.0} / {:.1}", i.min, i.mean),
        ">= 3",
    );
    line(
        &mut o,
        "zone pairs probed every interval",
        format!("{} / {}", r.zone_pairs_probed, r.zone_pairs),
        "all",
    );
    line(
        &mut o,
        "time until every node pair is covered",
        match (r.coverage_epochs, r.coverage_seconds) {
            (Some(e), Some(s)) if r.sampled => format!("{} ({e} epochs)", fmt_secs(s)),
            (_, Some(s)) => format!("{} (every interval)", fmt_secs(s)),
            _ => "never (rotation off)".into(),
        },
        "",
    );
    if let (Some(a), Some(b)) = (
        r.series_per_agent_steady,
        r.series_per_agent_one_failing_peer,
    ) {
        line(
            &mut o,
            "series per agent (steady / one peer failing)",
            format!("{a} / {b}"),
            "<= 200 steady",
        );
    }
    o.push_str(&format!(
        "\nfaults (seeded, each alone, through the diagnosis engine): {} / {} localised\n",
        r.localised(),
        r.faults.len()
    ));
    o.push_str(&format!(
        "  {:<16} {:<11} {:<26} {}\n",
        "kind", "localised", "location", "engine said"
    ));
    for kind in FaultKind::ALL {
        for f in r.faults.iter().filter(|f| f.kind == kind) {
            let verdict = if f.localised {
                "yes"
            } else if f.found_among_others {
                "with others"
            } else {
                "no"
            };
            let mut said = if f.findings.is_empty() {
                "healthy".to_string()
            } else {
                f.findings.join("; ")
            };
            if f.epoch > 0 {
                said.push_str(&format!(
                    " (pair first probed in epoch {}, after {})",
                    f.epoch,
                    fmt_secs(f.detect_after_seconds)
                ));
            }
            o.push_str(&format!(
                "  {:<16} {:<11} {:<26} {}\n",
                kind.as_str(),
                verdict,
                f.location.join(" -> "),
                said
            ));
        }
    }
    if let Some(b) = r.plan_build_seconds {
        o.push_str(&format!(
            "\nplan computed in {:.1} ms (what each agent spends once per epoch and per peer-set change)",
            b * 1000.0
        ));
    }
    o.push_str(&format!("\nsimulated in {:.2} s\n", took.as_secs_f64()));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_agent_stays_within_200_series_and_failing_peers_add_their_own() {
        let bound = PlanParams::default().max_peers(3);
        let steady = count_series(bound, true, false);
        assert!(steady <= 200, "{steady} series at {bound} peers");
        // Healthy, one series per probed peer (`meshprobe_pair_planned`, the denominators),
        // the rest independent of the number of peers.
        assert_eq!(count_series(5, true, false) + (bound - 5), steady);
        let failing = count_series(bound, true, true);
        // One peer timing out on 3 layers: 13 series per layer (8 window gauges, probes and
        // packets sent, errors and error age of its one kind, last-probe and failure-streak
        // ages).
        assert!(
            failing > steady && failing <= steady + 41,
            "{steady} -> {failing}"
        );
        // The same agent on a full mesh exports every pair.
        assert!(count_series(bound, false, false) > bound * 3 * 8);
    }

    #[test]
    fn plan_without_simulate_is_a_configuration_error() {
        let args = PlanArgs {
            simulate: false,
            nodes: 10,
            zones: 1,
            seed: 1,
            interval: "5s".into(),
            epoch: "60s".into(),
            full_mesh_max: 200,
            rotate: 8,
            faults: 1,
            ip_family: "ipv4".into(),
            output: Output::Text,
            serve: None,
            inject: Vec::new(),
            targets: 0,
            window: "60s".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for a in [
            args.clone(),
            PlanArgs {
                simulate: true,
                nodes: 0,
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                interval: "5".into(),
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                zones: 11,
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                ip_family: "both".into(),
                ..args.clone()
            },
            // The emulator's own checks: address, window, zones, faults and their places.
            PlanArgs {
                simulate: true,
                serve: Some("localhost".into()),
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                serve: Some("127.0.0.1:0".into()),
                window: "1s".into(),
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                serve: Some("127.0.0.1:0".into()),
                zones: 0,
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                serve: Some("127.0.0.1:0".into()),
                inject: vec!["cni".into()],
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                serve: Some("127.0.0.1:0".into()),
                inject: vec!["cni:node-99999".into()],
                ..args.clone()
            },
            PlanArgs {
                simulate: true,
                serve: Some("127.0.0.1:0".into()),
                inject: vec!["partition:zone-a,zone-q".into()],
                ..args
            },
        ] {
            let e = rt.block_on(run(a)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }
}
