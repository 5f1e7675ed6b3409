//! The thin kube-rs layer of discovery: three watchers (agent pods by label selector, target
//! pods by label selector, Nodes) feeding reflector stores; after every change the pure
//! [`peer_set`] runs over the stores and a changed set is published on the same `watch`
//! channel the peers file feeds. Never a LIST loop: a list at start (and after a 410 Gone),
//! then watches resumed from their resourceVersion with bookmarks, and a relist of every
//! watcher once per `--kube-resync` (± 10 %) and after every outage. When the API server goes
//! away the last set is kept, and [`DiscoveryStatus`] says so until a relist after the outage
//! has completed.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::watch;

use super::peers::{node_info, peer_set, KubePeers};
use crate::config::KubeSettings;
use crate::discovery::DiscoveryStatus;
use crate::error::Error;
use crate::peers::PeerSet;

enum Ev {
    Agent(Result<Event<Pod>, watcher::Error>),
    Target(Result<Event<Pod>, watcher::Error>),
    Node(Result<Event<Node>, watcher::Error>),
    Tick,
}

type Events = Pin<Box<dyn Stream<Item = Ev> + Send>>;

/// Kubernetes discovery, synced once, ready to [`run`](Self::run).
pub struct KubeDiscovery {
    events: Events,
    ticks: Events,
    agents: (Store<Pod>, Writer<Pod>),
    targets: (Store<Pod>, Writer<Pod>),
    nodes: (Store<Node>, Writer<Node>),
    synced: [bool; 3],
    status: Arc<Mutex<DiscoveryStatus>>,
    settings: KubeSettings,
    last: Option<KubePeers>,
    /// Per watcher (agents, targets, nodes): the last error, while failing.
    failing: [Option<String>; 3],
    client: Client,
    /// When the API server last answered: a watch event or a liveness check.
    heard: tokio::time::Instant,
    /// When the next periodic relist starts.
    resync_at: tokio::time::Instant,
    /// A relist is under way: every watcher lists again; done when all have (`synced`).
    relisting: bool,
    /// A watcher failed and no relist started after the failures cleared has completed yet:
    /// the stores may miss changes, so discovery is not healthy.
    outage: bool,
}

/// Bound on the check that a failed watcher's resource answers again.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether to check that a quiet API server still answers. An open watch that the API server
/// (or a dead connection) stops feeding looks like a quiet cluster: nothing arrives, no error
/// either, until the read timeout (295 s) cuts it. So after `liveness` without a word from the
/// API server — and only then, and not while a watcher already fails (the recheck runs then) —
/// one one-object list of nodes asks (within 5 s). An agent thus costs the API server at most
/// one tiny list per `liveness` (60 s by default: ≤ 84 a second from 5,000 agents), none in a
/// cluster where watch events flow.
pub fn liveness_due(quiet: Duration, failing: bool, liveness: Duration) -> bool {
    !failing && quiet >= liveness
}

/// The wait before the next periodic relist: `period` ± 10 %, `unit` uniform in [0, 1). The
/// jitter spreads the relists of agents started together (a rollout) over a fifth of a period
/// instead of hitting the API server at once.
pub fn resync_delay(period: Duration, unit: f64) -> Duration {
    period.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// The relist period for a cluster of `nodes` nodes. A period the user set is kept; the default
/// (`scales`) is `base` per 1,000 nodes and never less, because every agent lists every node
/// and agent pod: with a fixed period the cluster-wide list load grows with the square of the
/// node count, with this one linearly.
pub fn resync_period(base: Duration, scales: bool, nodes: usize) -> Duration {
    if scales {
        base.mul_f64((nodes as f64 / 1000.0).max(1.0))
    } else {
        base
    }
}

fn next_resync(period: Duration) -> tokio::time::Instant {
    use rand::RngExt;
    tokio::time::Instant::now() + resync_delay(period, rand::rng().random::<f64>())
}

/// The watchers (agent pods, nodes, and target pods when a target selector is set) as one
/// stream, and which of the three are synced from the start (none exists). Each watcher
/// begins with a list: building them anew is how discovery relists.
fn watch_streams(client: &Client, settings: &KubeSettings) -> (Events, [bool; 3]) {
    let pods: Api<Pod> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let agent_cfg = watcher::Config::default().labels(&settings.selector);
    let mut streams: Vec<Events> = vec![
        watcher::watcher(pods, agent_cfg)
            .modify(super::peers::slim_pod)
            .default_backoff()
            .map(Ev::Agent)
            .boxed(),
        watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .modify(super::peers::slim_node)
            .default_backoff()
            .map(Ev::Node)
            .boxed(),
    ];
    let mut synced = [false, true, false];
    if let Some(sel) = &settings.target_selector {
        synced[1] = false;
        streams.push(
            watcher::watcher(
                Api::<Pod>::all(client.clone()),
                watcher::Config::default().labels(sel),
            )
            .modify(super::peers::slim_pod)
            .default_backoff()
            .map(Ev::Target)
            .boxed(),
        );
    }
    (futures::stream::select_all(streams).boxed(), synced)
}

/// Held peers leave their grace with time, not with an event: re-evaluate now and then (and
/// check a failing or quiet API server). Apart from the watchers, so a relist, however often,
/// does not restart it.
fn ticks(settings: &KubeSettings) -> Events {
    let tick = settings
        .grace
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(tick).await;
        Some((Ev::Tick, ()))
    })
    .boxed()
}

pub type Started = (
    KubeDiscovery,
    watch::Sender<Arc<PeerSet>>,
    watch::Receiver<Arc<PeerSet>>,
);

/// A readable error for a watcher failure; RBAC refusals say which permission is missing.
pub fn explain(what: &str, e: &watcher::Error) -> String {
    let inner = match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => k,
        watcher::Error::WatchError(s) => {
            return format!("kubernetes API, watching {what}: {} {}", s.code, s.message)
        }
        watcher::Error::NoResourceVersion => {
            return format!("kubernetes API, watching {what}: {e}")
        }
    };
    super::explain_client_error(&format!("list/watch {what}"), inner)
}

fn is_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 401 || s.code == 403,
        watcher::Error::WatchError(s) => s.code == 401 || s.code == 403,
        _ => false,
    }
}

/// Whether the stores may have changed: not during a (re)list, whose objects the reflector
/// buffers until `InitDone`, and not on an error. Time passing (held peers) counts.
fn settles(ev: &Ev) -> bool {
    fn ok<K>(r: &Result<Event<K>, watcher::Error>) -> bool {
        matches!(r, Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone))
    }
    match ev {
        Ev::Agent(r) | Ev::Target(r) => ok(r),
        Ev::Node(r) => ok(r),
        Ev::Tick => true,
    }
}

fn is_gone(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchError(s) if s.code == 410)
}

impl KubeDiscovery {
    /// Start the watchers and wait (at most `timeout`) until every one has listed once, so
    /// the agent starts with the real peer set. RBAC refusals are configuration errors (exit 2)
    /// naming the permission; an unreachable API server at start is a runtime error.
    pub async fn start(
        client: Client,
        settings: KubeSettings,
        status: Arc<Mutex<DiscoveryStatus>>,
        timeout: Duration,
    ) -> Result<Started, Error> {
        let (events, synced) = watch_streams(&client, &settings);
        if let Ok(mut s) = status.lock() {
            s.source = format!(
                "kubernetes:pods {}{}",
                settings.selector,
                settings
                    .namespace
                    .as_deref()
                    .map(|n| format!(" in {n}"))
                    .unwrap_or_default()
            );
        }
        let (ar, aw) = reflector::store();
        let (tr, tw) = reflector::store();
        let (nr, nw) = reflector::store();
        let mut d = KubeDiscovery {
            events,
            ticks: ticks(&settings),
            agents: (ar, aw),
            targets: (tr, tw),
            nodes: (nr, nw),
            synced,
            status,
            last: None,
            failing: Default::default(),
            resync_at: next_resync(settings.resync),
            settings,
            client,
            heard: tokio::time::Instant::now(),
            relisting: false,
            outage: false,
        };
        let sync = async {
            while !d.synced.iter().all(|s| *s) {
                match d.events.next().await {
                    None => return Err(Error::Socket("kubernetes watch ended".into())),
                    Some(Ev::Tick) => {}
                    Some(ev) => {
                        if let Err((what, e)) = d.apply(ev) {
                            if is_forbidden(&e) {
                                return Err(Error::Config(explain(what, &e)));
                            }
                            tracing::warn!(error = %explain(what, &e), "waiting for the Kubernetes API");
                        }
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, sync).await {
            Err(_) => {
                let why = d
                    .status
                    .lock()
                    .ok()
                    .and_then(|s| s.last_error.clone())
                    .unwrap_or_else(|| "no answer".into());
                return Err(Error::Socket(format!(
                    "kubernetes discovery: no complete list within {}s: {why}",
                    timeout.as_secs()
                )));
            }
            Ok(r) => r?,
        }
        // Now that the nodes are known, the first periodic relist follows the cluster's size.
        d.resync_at = next_resync(d.resync_period());
        let first = d.compute();
        d.report(&first);
        let (tx, rx) = watch::channel(Arc::new(first.set.clone()));
        d.last = Some(first);
        // Every watcher has just listed: the start-up list is the relist any failure needs.
        d.failing = Default::default();
        d.outage = false;
        d.publish_failure();
        Ok((d, tx, rx))
    }

    /// Apply one event to the stores; a watcher error comes back with what was watched.
    fn apply(&mut self, ev: Ev) -> Result<(), (&'static str, watcher::Error)> {
        // `Init` comes before the list request is even made: only a real answer clears a failure.
        let answered = settles(&ev);
        let (i, r) = match ev {
            Ev::Agent(r) => (0, self.apply_to(0, r, "agent pods")),
            Ev::Target(r) => (1, self.apply_to(1, r, "target pods")),
            Ev::Node(r) => (
                2,
                match r {
                    Ok(e) => {
                        if matches!(e, Event::InitDone) {
                            self.synced[2] = true;
                        }
                        self.nodes.1.apply_watcher_event(&e);
                        Ok(())
                    }
                    Err(e) => Err(("nodes", e)),
                },
            ),
            Ev::Tick => return Ok(()),
        };
        match &r {
            Err((what, e)) if is_gone(e) => {
                // The watcher relists by itself: expected, not a failure.
                tracing::debug!(what, "watch expired (410 Gone): relisting");
                return Ok(());
            }
            Err((what, e)) => self.failing[i] = Some(explain(what, e)),
            Ok(()) if answered => {
                self.failing[i] = None;
                self.heard = tokio::time::Instant::now();
            }
            Ok(()) => {}
        }
        self.publish_failure();
        r
    }

    /// The API server said nothing for a while: ask it for one node. No answer within the
    /// bound (or an error) marks the nodes watcher failing, which the tick's recheck clears
    /// when the API server answers again.
    async fn liveness(&mut self) {
        let lp = kube::api::ListParams::default().limit(1);
        let api = Api::<Node>::all(self.client.clone());
        match tokio::time::timeout(RECHECK_TIMEOUT, api.list_metadata(&lp)).await {
            Ok(Ok(_)) => self.heard = tokio::time::Instant::now(),
            Ok(Err(e)) => {
                self.failing[2] = Some(super::explain_client_error(
                    "list nodes (liveness check)",
                    &e,
                ));
            }
            Err(_) => {
                self.failing[2] = Some(format!(
                    "kubernetes API: no answer within {}s to a one-node list (the watches went quiet {}s ago)",
                    RECHECK_TIMEOUT.as_secs(),
                    self.heard.elapsed().as_secs()
                ));
            }
        }
        self.publish_failure();
    }

    fn apply_to(
        &mut self,
        i: usize,
        r: Result<Event<Pod>, watcher::Error>,
        what: &'static str,
    ) -> Result<(), (&'static str, watcher::Error)> {
        let e = r.map_err(|e| (what, e))?;
        if matches!(e, Event::InitDone) {
            self.synced[i] = true;
        }
        let w = if i == 0 {
            &mut self.agents.1
        } else {
            &mut self.targets.1
        };
        w.apply_watcher_event(&e);
        Ok(())
    }

    /// A watcher that reconnected in a quiet cluster sends no event: while one is failing,
    /// each tick asks its resource for one object (same selector, same permission) and clears
    /// the failure when that answers. Only while failing; the checks run at once, so a
    /// recovery is seen within one bound (5 s), not one per failing watcher.
    async fn recheck(&mut self) {
        let one = |sel: Option<&str>| {
            let lp = kube::api::ListParams::default().limit(1);
            match sel {
                Some(s) => lp.labels(s),
                None => lp,
            }
        };
        let answers = |i: usize| {
            let c = self.client.clone();
            let failing = self.failing[i].is_some();
            let (ns, selector, targets) = (
                self.settings.namespace.clone(),
                self.settings.selector.clone(),
                self.settings.target_selector.clone(),
            );
            async move {
                if !failing {
                    return false;
                }
                let asked = async {
                    match i {
                        0 => {
                            let api: Api<Pod> = match &ns {
                                Some(ns) => Api::namespaced(c, ns),
                                None => Api::all(c),
                            };
                            api.list_metadata(&one(Some(&selector))).await.is_ok()
                        }
                        1 => Api::<Pod>::all(c)
                            .list_metadata(&one(targets.as_deref()))
                            .await
                            .is_ok(),
                        _ => Api::<Node>::all(c).list_metadata(&one(None)).await.is_ok(),
                    }
                };
                tokio::time::timeout(RECHECK_TIMEOUT, asked)
                    .await
                    .unwrap_or(false)
            }
        };
        let ok = futures::join!(answers(0), answers(1), answers(2));
        for (i, ok) in [ok.0, ok.1, ok.2].into_iter().enumerate() {
            if ok {
                self.failing[i] = None;
                self.heard = tokio::time::Instant::now();
            }
        }
        self.publish_failure();
    }

    /// Reflect the watchers' failures in the status: the first failing one's error, counted
    /// once per outage. The outage lasts until a relist started after the failures cleared
    /// has completed: a watch resumed from its resourceVersion may wait for a version the API
    /// server never reaches (etcd restored behind it), sending nothing and no 410.
    fn publish_failure(&mut self) {
        let kept = self.last.as_ref().map_or(0, |l| l.set.peers.len());
        let failing = self.failing.iter().flatten().next().cloned();
        if failing.is_some() {
            // A relist under way may have missed changes too: a new one follows recovery.
            self.outage = true;
            self.relisting = false;
        }
        let now = failing.or_else(|| {
            self.outage.then(|| {
                "kubernetes API answering again; relisting before the peer set counts as current"
                    .to_string()
            })
        });
        let Ok(mut s) = self.status.lock() else {
            return;
        };
        match (&s.last_error, now) {
            (None, Some(m)) => {
                s.reloads_failed += 1;
                tracing::warn!(error = %m, peers = kept, "Kubernetes API failing; keeping the last known peer set");
                s.last_error = Some(format!(
                    "{m} (keeping the last known peer set: {kept} peers)"
                ));
            }
            (Some(_), Some(m)) => {
                s.last_error = Some(format!(
                    "{m} (keeping the last known peer set: {kept} peers)"
                ));
            }
            (Some(_), None) => {
                tracing::info!("Kubernetes API answering again");
                s.last_error = None;
            }
            (None, None) => {}
        }
    }

    fn compute(&self) -> KubePeers {
        let nodes: BTreeMap<String, _> = self
            .nodes
            .0
            .state()
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, node_info(n))))
            .collect();
        let agents = self.agents.0.state();
        let targets = self.targets.0.state();
        let a: Vec<&Pod> = agents.iter().map(|p| p.as_ref()).collect();
        let t: Vec<&Pod> = targets.iter().map(|p| p.as_ref()).collect();
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        peer_set(&a, &t, &nodes, now, self.settings.grace.as_secs() as i64)
    }

    fn report(&self, p: &KubePeers) {
        if let Ok(mut s) = self.status.lock() {
            s.held = p.held.clone();
            s.bad_targets = p.bad_annotations.clone();
        }
    }

    /// Follow the watches until the receiver side is gone (the agent stopped); relist
    /// periodically and after an outage.
    pub async fn run(mut self, tx: watch::Sender<Arc<PeerSet>>) {
        loop {
            let ev = tokio::select! {
                ev = self.events.next() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
                Some(tick) = self.ticks.next() => tick,
                () = tokio::time::sleep_until(self.resync_at) => {
                    if self.relisting || self.failing.iter().any(Option::is_some) {
                        // One relist at a time (a slow API server must not be asked again),
                        // and none into an outage: recovery brings its own.
                        self.resync_at = next_resync(self.resync_period());
                    } else {
                        self.relist("periodic resync");
                    }
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let settles = settles(&ev);
            let tick = matches!(ev, Ev::Tick);
            let _ = self.apply(ev);
            let failing = self.failing.iter().any(Option::is_some);
            if tick && failing {
                self.recheck().await;
            } else if tick && liveness_due(self.heard.elapsed(), failing, self.settings.liveness) {
                self.liveness().await;
            }
            let synced = self.synced.iter().all(|s| *s);
            if settles && synced {
                self.settle(&tx);
            }
            if self.failing.iter().any(Option::is_some) {
                continue;
            }
            if self.relisting && synced {
                // Published above before the status turns healthy: healthy means current.
                self.relisting = false;
                if self.outage {
                    self.outage = false;
                    self.publish_failure();
                }
            } else if self.outage && !self.relisting {
                self.relist("after an outage");
                self.publish_failure();
            }
        }
    }

    /// Every watcher lists again (new watchers; the reflectors keep the old content until
    /// each list is complete), and the next periodic relist is scheduled.
    fn relist(&mut self, why: &'static str) {
        tracing::debug!(why, "relisting the watched resources");
        let (events, synced) = watch_streams(&self.client, &self.settings);
        self.events = events;
        self.synced = synced;
        self.relisting = true;
        self.resync_at = next_resync(self.resync_period());
    }

    /// This cluster's relist period ([`resync_period`] over the nodes listed).
    fn resync_period(&self) -> Duration {
        resync_period(
            self.settings.resync,
            self.settings.resync_scales,
            self.nodes.0.state().len(),
        )
    }

    /// The stores are complete: recompute the peer set and publish it if it changed.
    fn settle(&mut self, tx: &watch::Sender<Arc<PeerSet>>) {
        let next = self.compute();
        if self.last.as_ref() == Some(&next) {
            return;
        }
        let prev = self.last.take().unwrap_or_default();
        for b in &next.bad_annotations {
            if !prev.bad_annotations.contains(b) {
                tracing::warn!(pod = %b.pod, error = %b.error, "ignoring a bad probe annotation");
            }
        }
        self.report(&next);
        if next.set != prev.set {
            if let Ok(mut s) = self.status.lock() {
                s.reloads_ok += 1;
            }
            tracing::info!(
                peers = next.set.peers.len(),
                targets = next.set.targets.len(),
                held = next.held.len(),
                "peer set changed (kubernetes)"
            );
            tx.send_replace(Arc::new(next.set.clone()));
        }
        self.last = Some(next);
    }
}
