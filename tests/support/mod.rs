//! What the test suites share, included by each as `mod support;`:
//!
//! * [`sys`]: the binary's path, root and tool checks (with the skip message), `sh`, network
//!   namespaces deleted on drop, a scratch directory, RSS;
//! * [`net`]: loopback addresses and free ports, small HTTP/1.1 clients (blocking and async),
//!   chunked bodies, reading a metric from an exposition;
//! * [`inproc`]: an agent in the test's own process: the config builder, real or fake probers,
//!   start and stop;
//! * [`agent`]: a real `meshprobe agent` process;
//! * [`fakeapi`]: the fake Kubernetes API server, its fixtures and the objects built from them;
//! * [`lab`]: the lab driver (`meshprobe lab up` … `down`);
//! * [`promlint`]: `promtool check metrics` over a scrape, less the tolerated OpenMetrics line;
//! * [`prometheus`]: Debian's Prometheus started with a given config, killed on drop.
//! * [`dns`]: a DNS responder on a loopback address (records, an rcode or silence).
//!
//! Each suite uses part of it, so unused items are not warned about here.
#![allow(dead_code)]

pub mod agent;
pub mod dns;
pub mod fakeapi;
pub mod inproc;
pub mod lab;
pub mod net;
pub mod prometheus;
pub mod promlint;
pub mod sys;

use std::time::{Duration, Instant};

/// Poll `check` every 100 ms until it holds; panic naming `what` after `within`.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "not true within {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`eventually`] on the tokio clock, for async checks.
pub async fn eventually_async(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not true within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
