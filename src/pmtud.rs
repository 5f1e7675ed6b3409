//! The agent's path-MTU discovery driver: one task holding a [`MtuSearch`] per ICMP destination
//! (pod IP, node IP, target IP), launching each due probe through the [`PmtuProber`] (at most
//! [`MAX_IN_FLIGHT`] at once, one per destination), feeding results back and publishing each
//! new report into the store.
//!
//! The search itself is pure ([`crate::mtu`]); this is the thin I/O around it. One task rather
//! than one per destination: at 1,000 peers (2,000 destinations) per-destination tasks cost
//! about 3 KiB each (measured: 6 MiB of RSS), a map entry a tenth of that.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rand::RngExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::model::{Check, ProbeKey};
use crate::mtu::{MtuOutcome, MtuParams, MtuReport, MtuSearch};
use crate::probe::pmtu::{local_mtu, PmtuProber};
use crate::schedule::Task;
use crate::store::Store;

/// Path-MTU probes in flight at once, agent-wide.
pub const MAX_IN_FLIGHT: usize = 16;

/// MTU assumed when the local interface cannot be read.
const FALLBACK_MTU: u32 = 1500;

/// The longest the scheduler sleeps without looking again.
const MAX_NAP: Duration = Duration::from_secs(1);

type Wanted = Arc<Vec<(ProbeKey, IpAddr)>>;

/// Handle on the scheduler task; dropping it stops the task.
pub struct MtuDriver {
    wanted: watch::Sender<Wanted>,
    task: JoinHandle<()>,
}

/// What the scheduler needs besides the destinations.
pub struct MtuSettings {
    pub check_interval: Duration,
    pub search_interval: Duration,
    pub timeout: Duration,
}

impl MtuDriver {
    pub fn start(
        prober: PmtuProber,
        store: Arc<Mutex<Store>>,
        probes: Counter,
        settings: MtuSettings,
    ) -> Self {
        let (wanted, rx) = watch::channel(Wanted::default());
        let task = tokio::spawn(schedule(Arc::new(prober), store, probes, settings, rx));
        MtuDriver { wanted, task }
    }

    /// Follow the current tasks: one search per ICMP destination.
    pub fn sync(&self, tasks: &[Arc<Task>]) {
        let wanted = tasks
            .iter()
            .filter_map(|t| match t.check {
                Check::Icmp { ip, .. } => Some((t.key.clone(), ip)),
                _ => None,
            })
            .collect();
        self.wanted.send_replace(Arc::new(wanted));
    }
}

impl Drop for MtuDriver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Dest {
    ip: IpAddr,
    search: MtuSearch,
    /// No probe before this: first searches are spread over one check interval.
    start_at: Instant,
    busy: bool,
    local_checked_at: Instant,
    published: Option<MtuReport>,
}

fn expected_mtu(ip: IpAddr) -> u32 {
    local_mtu(ip)
        .ok()
        .and_then(|l| l.expected())
        .unwrap_or(FALLBACK_MTU)
}

async fn schedule(
    prober: Arc<PmtuProber>,
    store: Arc<Mutex<Store>>,
    probes: Counter,
    settings: MtuSettings,
    mut wanted: watch::Receiver<Wanted>,
) {
    let (results_tx, mut results) =
        mpsc::channel::<(ProbeKey, IpAddr, u32, MtuOutcome)>(MAX_IN_FLIGHT);
    let mut dests: HashMap<ProbeKey, Dest> = HashMap::new();
    let mut in_flight = 0usize;
    let params = |ip: IpAddr, local| MtuParams {
        check_interval: settings.check_interval,
        search_interval: settings.search_interval,
        ..MtuParams::for_ip(ip, local)
    };
    loop {
        // Launch what is due, and find when the next one will be.
        let now = Instant::now();
        let mut wake = now + MAX_NAP;
        for (key, d) in dests.iter_mut() {
            if d.busy {
                continue;
            }
            if now < d.start_at {
                wake = wake.min(d.start_at);
                continue;
            }
            let due = d.search.next_due();
            if due > now {
                wake = wake.min(due);
                continue;
            }
            if in_flight >= MAX_IN_FLIGHT {
                continue; // a result coming back wakes the loop
            }
            if now.duration_since(d.local_checked_at) >= settings.check_interval {
                // The interface may have changed under us; cheap, sends nothing.
                d.search.set_local_mtu(expected_mtu(d.ip));
                d.local_checked_at = now;
            }
            let Some(p) = d.search.next_probe(now) else {
                wake = wake.min(now + Duration::from_millis(50));
                continue;
            };
            d.busy = true;
            in_flight += 1;
            probes.inc();
            let (prober, tx, key, ip) = (prober.clone(), results_tx.clone(), key.clone(), d.ip);
            let timeout = settings.timeout;
            tokio::spawn(async move {
                let r = prober.probe(ip, p.size, timeout).await;
                let _ = tx.send((key, ip, p.size, r.outcome)).await;
            });
        }
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            Some((key, ip, size, outcome)) = results.recv() => {
                in_flight = in_flight.saturating_sub(1);
                if let Some(d) = dests.get_mut(&key).filter(|d| d.ip == ip) {
                    d.busy = false;
                    d.search.on_result(size, outcome, Instant::now());
                    let report = d.search.report();
                    if d.published.as_ref() != Some(&report) {
                        if let Ok(mut s) = store.lock() {
                            s.set_mtu(&key, report.clone());
                        }
                        d.published = Some(report);
                    }
                }
            }
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = Instant::now();
                let list = wanted.borrow_and_update().clone();
                let keep: HashMap<&ProbeKey, IpAddr> = list.iter().map(|(k, ip)| (k, *ip)).collect();
                dests.retain(|k, d| keep.get(k) == Some(&d.ip));
                for (key, ip) in list.iter() {
                    if dests.contains_key(key) {
                        continue;
                    }
                    let spread = settings.check_interval.mul_f64(rand::rng().random::<f64>());
                    dests.insert(key.clone(), Dest {
                        ip: *ip,
                        search: MtuSearch::new(params(*ip, expected_mtu(*ip)), now),
                        start_at: now + spread,
                        busy: false,
                        local_checked_at: now,
                        published: None,
                    });
                }
            }
        }
    }
}
