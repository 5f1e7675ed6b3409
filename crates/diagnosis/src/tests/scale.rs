//! Large fleets: the engine stays roughly linear.

use super::helpers::*;
use crate::diagnose;
use crate::input::*;
use crate::matrix::Matrix;
use crate::report::{Cause, Diagnosis};

/// `n` nodes in 3 zones, full mesh, node 7 down: the engine's answer and the time it took
/// (matrix and diagnosis, the fastest of 3 runs).
fn one_node_down(n: usize) -> (Diagnosis, std::time::Duration) {
    let mut best = std::time::Duration::MAX;
    let mut last = None;
    for _ in 0..3 {
        let mut docs = Vec::new();
        for s in 0..n {
            if s == 7 {
                continue;
            }
            let peers: Vec<PeerReport> = (0..n)
                .filter(|&d| d != s)
                .map(|d| PeerReport {
                    node: format!("n{d}"),
                    zone: Some(format!("z{}", d % 3)),
                    node_ip: format!("10.0.{}.{}", d / 250, d % 250).parse().ok(),
                    pod_ip: format!("10.1.{d}.10").parse().ok(),
                    layers: PEER_LAYERS
                        .iter()
                        .map(|l| (l.to_string(), if d == 7 { timeout() } else { ok() }))
                        .collect(),
                    ..PeerReport::default()
                })
                .collect();
            docs.push(AgentReport {
                node: format!("n{s}"),
                zone: Some(format!("z{}", s % 3)),
                ready: Some(true),
                rounds: Some(100),
                peers,
                ..AgentReport::default()
            });
        }
        let t0 = std::time::Instant::now();
        let m = Matrix::build(&Inputs {
            agents: docs,
            ..Inputs::default()
        });
        let d = diagnose(&m);
        best = best.min(t0.elapsed());
        last = Some(d);
    }
    (last.expect("three runs"), best)
}

#[test]
fn scales_roughly_linearly() {
    // 150 nodes in 3 zones, full mesh (22,350 node pairs), one node down: one finding. The
    // times are printed, not asserted (a loaded CI machine is no stopwatch: the 50→150 ratio
    // once failed under load); linear means ~9× for 9.1× the pairs, quadratic ~80×. Measure:
    // `cargo test --release -p meshprobe-diagnosis scales_roughly -- --nocapture`.
    let (d, took) = one_node_down(150);
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    assert_eq!(d.findings[0].cause, Cause::NodeDown);
    assert_eq!(d.findings[0].nodes, ["n7"]);
    let (_, small) = one_node_down(50);
    let ratio = took.as_secs_f64() / small.as_secs_f64().max(1e-6);
    eprintln!("50 nodes {small:?}, 150 nodes {took:?}: {ratio:.1}x");
}

#[test]
fn sampled_plan_at_scale() {
    // 2,000 nodes, each probing 20 peers (a sampled plan): 40,000 pairs; node 77 down.
    let n = 2000usize;
    let agents: Vec<AgentReport> = (0..n)
        .filter(|&s| s != 77)
        .map(|s| AgentReport {
            node: format!("n{s}"),
            zone: Some(format!("z{}", s % 5)),
            ready: Some(true),
            rounds: Some(100),
            peers: (1..=20)
                .map(|k| (s + k * 97) % n)
                .filter(|&d| d != s)
                .map(|d| PeerReport {
                    node: format!("n{d}"),
                    zone: Some(format!("z{}", d % 5)),
                    layers: PEER_LAYERS
                        .iter()
                        .map(|l| (l.to_string(), if d == 77 { timeout() } else { ok() }))
                        .collect(),
                    ..PeerReport::default()
                })
                .collect(),
            ..AgentReport::default()
        })
        .collect();
    let t0 = std::time::Instant::now();
    let d = diagnose(&Matrix::build(&Inputs {
        agents,
        ..Inputs::default()
    }));
    let took = t0.elapsed();
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    assert_eq!(
        (d.findings[0].cause, d.findings[0].nodes.as_slice()),
        (Cause::NodeDown, ["n77".to_string()].as_slice())
    );
    println!("2000 nodes, 40k pairs: {took:?}");
}
