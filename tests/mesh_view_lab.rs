//! End-to-end on the lab: the mesh view does not wait on an agent the others already report
//! unreachable. With `node-down` or `cni` on node-4, `meshprobe diagnose --agents` run from
//! node-1's probe pod (the agents at their pod IPs, as inside a cluster) and node-1's own
//! `GET /api/v1/diagnosis` answer in at most 1.5 s, and with the right finding once the
//! agents' windows show it — before, the CLI waited out its `--timeout` (5 s) on node-4's agent.
//!
//! Needs root (network namespaces); without it the test prints why and returns.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::lab::Lab;
use support::sys::{root_or_skip, EXE};

/// The target of issue 23. Measured on this machine (bench/README.md, "The mesh view with one
/// agent unreachable": debug build, 2 shared cores, process start and `ip netns exec`
/// included): 6–30 ms per answer once node-4's agent is reported down by the others, 510–540
/// ms while the fault sets in (node-4 dropped by the late rule, `gather::LATE_FLOOR`); 1.5 s
/// leaves about 1 s of margin over the slowest. The old code took the full `--timeout`, 5 s,
/// on the first answer after the fault (this test fails there).
const ANSWER_WITHIN: Duration = Duration::from_millis(1500);
/// From the fault to the right answer: two failed HTTP probes to node-4 (1 s interval, 500 ms
/// timeout) plus one poll. Measured 1.6–2.1 s for both faults (2026-12-06); the old code could not
/// be under 5 s, its first answer after the fault waiting out the 5 s timeout.
const RIGHT_WITHIN: Duration = Duration::from_millis(4500);

/// `diagnose --agents` (JSON) from inside `ns`: (exit code, document, stderr, wall time).
fn diagnose_in(ns: &str, agents: &str) -> (i32, Value, String, Duration) {
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, EXE, "diagnose", "--agents", agents])
        .args(["-o", "json"])
        .output()
        .expect("run meshprobe diagnose");
    let took = t.elapsed();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// Exactly one finding, of `cause` on node-4; node-4 listed as not waited for.
fn right(d: &Value, cause: &str) -> Result<(), String> {
    let findings = d["findings"].as_array().cloned().unwrap_or_default();
    let one = findings.len() == 1
        && findings[0]["cause"] == cause
        && findings[0]["nodes"] == serde_json::json!(["node-4"]);
    let skipped = d["agents_unreachable"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|u| {
            u["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("not waited for"))
                && (u["node"] == "node-4")
        });
    if one && skipped {
        Ok(())
    } else {
        Err(format!(
            "want {cause} on node-4 with node-4 not waited for; got findings {} unreachable {}",
            d["findings"], d["agents_unreachable"]
        ))
    }
}

#[test]
fn the_mesh_view_answers_fast_with_one_agent_unreachable() {
    if !root_or_skip("the mesh view lab test needs root (network namespaces)") {
        return;
    }
    let lab = Lab::up_with(&format!("mpw{}", std::process::id() % 100_000), 4, 2, &[]);
    // The agents at their pod IPs, as the proxies reach them.
    let st = lab.status();
    let agents: Vec<String> = st["state"]["proxies"]
        .as_array()
        .expect("state.proxies")
        .iter()
        .map(|p| p["target"].as_str().expect("proxy target").to_string())
        .collect();
    assert_eq!(agents.len(), 4, "{st}");
    let agents = agents.join(",");
    let from = lab.ns(1, "probe");

    // Clean: every agent answers, nothing found.
    let t0 = Instant::now();
    loop {
        let (code, d, err, _) = diagnose_in(&from, &agents);
        if code == 0
            && d["agents_answered"]
                .as_array()
                .is_some_and(|a| a.len() == 4)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "clean lab: exit {code}: {d}\n{err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    for (fault, cause) in [("node-down", "node_down"), ("cni", "cni")] {
        lab.ok(&["fault", fault, "node-4"]);
        let injected = Instant::now();
        let mut slowest = Duration::ZERO;
        // Until the agents' windows show it (two failed HTTP probes: about 2 intervals).
        loop {
            let (_, d, err, took) = diagnose_in(&from, &agents);
            // Fast from the first moment, before the others' windows show node-4 down.
            assert!(
                took <= ANSWER_WITHIN,
                "{fault}: diagnose --agents took {took:?} {:.1}s after the fault (want ≤ {ANSWER_WITHIN:?})",
                injected.elapsed().as_secs_f64()
            );
            slowest = slowest.max(took);
            if right(&d, cause).is_ok() {
                assert!(
                    injected.elapsed() <= RIGHT_WITHIN,
                    "{fault}: right only after {:?}",
                    injected.elapsed()
                );
                eprintln!(
                    "  slowest answer while the fault set in: {} ms",
                    slowest.as_millis()
                );
                eprintln!(
                    "{fault} node-4: right after {:.1}s ({} ms for that answer)",
                    injected.elapsed().as_secs_f64(),
                    took.as_millis()
                );
                break;
            }
            assert!(
                injected.elapsed() < Duration::from_secs(20),
                "{fault} node-4: {:?}\n{err}",
                right(&d, cause)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // From then on every answer is right and fast.
        for _ in 0..3 {
            let (code, d, err, took) = diagnose_in(&from, &agents);
            eprintln!(
                "  diagnose --agents: exit {code} in {} ms",
                took.as_millis()
            );
            assert_eq!(code, 1, "{d}\n{err}");
            right(&d, cause).unwrap_or_else(|e| panic!("{fault}: {e}\n{err}"));
            assert!(
                took <= ANSWER_WITHIN,
                "{fault}: diagnose --agents took {took:?} (want ≤ {ANSWER_WITHIN:?})"
            );
            let t = Instant::now();
            let v = lab.get_json("node-1", "/api/v1/diagnosis", Duration::from_secs(10));
            let took = t.elapsed();
            eprintln!("  node-1's /api/v1/diagnosis in {} ms", took.as_millis());
            right(&v, cause).unwrap_or_else(|e| panic!("{fault}, node-1's view: {e}"));
            assert!(
                took <= ANSWER_WITHIN,
                "{fault}: node-1's /api/v1/diagnosis took {took:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        lab.ok(&["clear"]);
        let t0 = Instant::now();
        loop {
            let (code, d, err, _) = diagnose_in(&from, &agents);
            if code == 0 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{fault} cleared: still exit {code}: {d}\n{err}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // The outage's marks leave the windows (8 s) before the next fault: until then node-4's
        // node IP is unknown (answering, an outage still in view) and the next fault's onset is
        // held, then read (fixture `cni-after-node-down-clear.json` in the diagnosis crate).
        // This test is about the mesh view's speed, not a fault on a node just back.
        std::thread::sleep(Duration::from_secs(8));
    }
}
