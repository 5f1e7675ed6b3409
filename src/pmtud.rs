//! The agent's path-MTU discovery driver: one small task per ICMP destination (pod IP, node IP,
//! target IP) owning its [`MtuSearch`], sending its probes through the [`PmtuProber`] under a
//! shared concurrency bound, and publishing each new report into the store.
//!
//! The search itself is pure ([`crate::mtu`]); this is the thin I/O around it. Tasks follow the
//! peer set: [`MtuDriver::sync`] starts tasks for new destinations, restarts those whose address
//! changed and stops those that left.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rand::RngExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::model::{Check, ProbeKey};
use crate::mtu::{MtuParams, MtuSearch};
use crate::probe::pmtu::{local_mtu, step, PmtuProber};
use crate::schedule::Task;
use crate::store::Store;

/// Path-MTU probes in flight at once, agent-wide.
const MAX_IN_FLIGHT: usize = 16;

/// MTU assumed when the local interface cannot be read.
const FALLBACK_MTU: u32 = 1500;

pub struct MtuDriver {
    prober: Arc<PmtuProber>,
    store: Arc<Mutex<Store>>,
    probes: Counter,
    permits: Arc<Semaphore>,
    check_interval: Duration,
    search_interval: Duration,
    timeout: Duration,
    running: HashMap<ProbeKey, (IpAddr, JoinHandle<()>)>,
}

impl MtuDriver {
    pub fn new(
        prober: PmtuProber,
        store: Arc<Mutex<Store>>,
        probes: Counter,
        check_interval: Duration,
        search_interval: Duration,
        timeout: Duration,
    ) -> Self {
        MtuDriver {
            prober: Arc::new(prober),
            store,
            probes,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            check_interval,
            search_interval,
            timeout,
            running: HashMap::new(),
        }
    }

    /// Follow the current tasks: one search per ICMP destination.
    pub fn sync(&mut self, tasks: &[Arc<Task>]) {
        let wanted: HashMap<&ProbeKey, IpAddr> = tasks
            .iter()
            .filter_map(|t| match t.check {
                Check::Icmp { ip, .. } => Some((&t.key, ip)),
                _ => None,
            })
            .collect();
        self.running.retain(|key, (ip, handle)| {
            let keep = wanted.get(key) == Some(ip);
            if !keep {
                handle.abort();
            }
            keep
        });
        for (key, ip) in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            let handle = tokio::spawn(search_loop(
                key.clone(),
                ip,
                self.prober.clone(),
                self.store.clone(),
                self.probes.clone(),
                self.permits.clone(),
                self.params(ip),
                self.timeout,
            ));
            self.running.insert(key.clone(), (ip, handle));
        }
    }

    fn params(&self, ip: IpAddr) -> MtuParams {
        MtuParams {
            check_interval: self.check_interval,
            search_interval: self.search_interval,
            ..MtuParams::for_ip(ip, FALLBACK_MTU)
        }
    }
}

impl Drop for MtuDriver {
    fn drop(&mut self) {
        for (_, (_, handle)) in self.running.drain() {
            handle.abort();
        }
    }
}

fn expected_mtu(ip: IpAddr) -> u32 {
    local_mtu(ip)
        .ok()
        .and_then(|l| l.expected())
        .unwrap_or(FALLBACK_MTU)
}

#[allow(clippy::too_many_arguments)]
async fn search_loop(
    key: ProbeKey,
    ip: IpAddr,
    prober: Arc<PmtuProber>,
    store: Arc<Mutex<Store>>,
    probes: Counter,
    permits: Arc<Semaphore>,
    params: MtuParams,
    timeout: Duration,
) {
    // Spread the first searches over one check interval: no burst when the agent starts.
    let delay = params.check_interval.mul_f64(rand::rng().random::<f64>());
    tokio::time::sleep(delay).await;
    let mut search = MtuSearch::new(
        MtuParams {
            local_mtu: expected_mtu(ip),
            ..params
        },
        std::time::Instant::now(),
    );
    let mut last = None;
    loop {
        let due = tokio::time::Instant::from_std(search.next_due());
        tokio::time::sleep_until(due).await;
        // The local MTU can change under us (an interface reconfigured); cheap, no packet.
        search.set_local_mtu(expected_mtu(ip));
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        if step(&prober, &mut search, ip, timeout).await.is_some() {
            probes.inc();
        }
        let report = search.report();
        if last.as_ref() != Some(&report) {
            if let Ok(mut s) = store.lock() {
                s.set_mtu(&key, report.clone());
            }
            last = Some(report);
        }
    }
}
