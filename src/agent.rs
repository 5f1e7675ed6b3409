//! `meshprobe agent`: wires discovery → schedule → probers → store, and serves the API.
//!
//! The probe loop is the only writer of the [`Store`]; it takes the latest peer set at the start
//! of every round (a new set cuts the current round short), keeps only its assigned peers when
//! the set exceeds `--full-mesh-max` ([`crate::plan`], recomputed every rotation epoch), spreads the round's probes over the interval ([`schedule::plan_round`]),
//! starts each at its time under a bounded number in flight, and records each result. The HTTP
//! server only reads.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep_until, Instant};

use crate::checks::{self, Checks};
use crate::config::{AgentArgs, AgentConfig, Discovery, ProcessEnv};
use crate::discovery::{DiscoveryStatus, FileDiscovery};
use crate::error::{Error, Result};
use crate::metrics::{Identity, Metrics, PlanStatus, StoreCollector};
use crate::model::DestKind;
use crate::peers::PeerSet;
use crate::plan::{Plan, PlanParams};
use crate::pmtud::{MtuDriver, MtuSettings};
use crate::probe::http::HttpProber;
use crate::probe::icmp::IcmpProber;
use crate::probe::pmtu::PmtuProber;
use crate::probe::tcp::TcpProber;
use crate::probe::Probers;
use crate::schedule::{self, Task, TaskParams};
use crate::server::{self, ServerLimits};
use crate::shared::Shared;
use crate::store::Store;

/// `meshprobe agent`: resolve the configuration, bind, run until SIGINT/SIGTERM.
pub async fn run_from_args(args: AgentArgs) -> Result<u8> {
    let config = AgentConfig::resolve(&args, &ProcessEnv)?;
    let listener = bind(config.listen)
        .map_err(|e| Error::Socket(format!("cannot listen on {}: {e}", config.listen)))?;
    let probers = default_probers()?;
    run(config, listener, probers, shutdown_signal()).await?;
    Ok(0)
}

/// Bind the agent's listener. `[::]` takes both families (IPV6_V6ONLY off, whatever the
/// host's `net.ipv6.bindv6only`): peers reach it over IPv4, IPv6 or both. Where the kernel has
/// no IPv6 (`ipv6.disable=1`) `[::]` falls back to `0.0.0.0`, with a warning.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let open = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        if addr.is_ipv6() {
            s.set_only_v6(false)?;
        }
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        TcpListener::from_std(s.into())
    };
    match open(addr) {
        Err(e)
            if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED
                && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
        {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            tracing::warn!(%addr, fallback = %v4, "no IPv6 on this host: listening on IPv4 only");
            open(v4)
        }
        r => r,
    }
}

/// How long the agent waits at start for its first complete Kubernetes list.
const KUBE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The production probers. ICMP needs CAP_NET_RAW or the ping sysctl: the error says which.
pub fn default_probers() -> Result<(Probers, &'static str)> {
    let icmp = IcmpProber::new()?;
    let kind = icmp.socket_kind();
    Ok((
        Probers {
            icmp: Arc::new(icmp),
            tcp: Arc::new(TcpProber),
            http: Arc::new(HttpProber::new()),
        },
        kind,
    ))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Run an agent on `listener` until `shutdown` resolves. Tests call this with a listener on a
/// loopback address and their own shutdown future.
pub async fn run(
    config: AgentConfig,
    listener: TcpListener,
    (probers, icmp_socket): (Probers, &'static str),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let status = Arc::new(Mutex::new(DiscoveryStatus::default()));
    // One seam: every source publishes whole peer sets on the same watch channel.
    let mut kube_facts = None;
    let mut publisher = None;
    let mut kube_client = None;
    let (discovery_task, peers_rx) = match &config.discovery {
        Discovery::File => {
            let (d, tx, rx) = FileDiscovery::start(
                config.peers_file.clone(),
                Duration::from_secs(1),
                status.clone(),
            )?;
            (tokio::spawn(d.run(tx)), rx)
        }
        Discovery::Kubernetes(settings) => {
            let client = crate::k8s::client(settings.api_url.as_deref()).await?;
            if settings.publish_events {
                publisher = Some(client.clone());
            }
            kube_client = Some(client.clone());
            kube_facts = Some(crate::k8s::FactsSource::new(
                client.clone(),
                settings.selector.clone(),
                settings.namespace.clone(),
            ));
            let (d, tx, rx) = crate::k8s::watch::KubeDiscovery::start(
                client,
                settings.clone(),
                status.clone(),
                KUBE_START_TIMEOUT,
            )
            .await?;
            (tokio::spawn(d.run(tx)), rx)
        }
    };

    // Our zone: the flag, else what the peers file says of us.
    let zone = config.zone.clone().or_else(|| {
        peers_rx
            .borrow()
            .peer(&config.node_name)
            .and_then(|p| p.zone.clone())
    });
    let identity = Identity {
        node: config.node_name.clone(),
        zone,
    };
    let store = Arc::new(Mutex::new(Store::new(
        config.node_name.clone(),
        config.window,
    )));
    let ready = Arc::new(AtomicBool::new(false));
    let plan = Arc::new(PlanStatus::default());
    // Path-MTU discovery: raw sockets, else ICMP datagram sockets, else off (said here once).
    let pmtu_prober = match config.mtu_interval.map(|_| PmtuProber::new()) {
        Some(Ok(prober)) => {
            tracing::info!(
                sockets = prober.kind().label(),
                "path-MTU discovery on {} ICMP sockets",
                prober.kind().label()
            );
            Some(prober)
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "path-MTU discovery is off: {e}");
            None
        }
        None => None,
    };
    let pmtu_socket = pmtu_prober.as_ref().map_or("off", |p| p.kind().label());
    let mut checks = Checks::new(
        crate::checks::from_config(
            &config.checks,
            config.ip_family,
            config.timeout,
            probers.http.clone(),
        ),
        config.window,
    );
    // The `service` check's ClusterIP read from the API: its slot waits (skipped, not
    // reported) until the first read finds one.
    // The `apiserver_endpoints` check's addresses read from the API: the same, its own slot.
    let endpoints_lookup = match (&config.checks.apiserver, &kube_client) {
        (Some(api), Some(client)) if api.endpoints_lookup => {
            checks = checks.with_pending(checks::Kind::ApiserverEndpoints);
            Some((api.clone(), client.clone()))
        }
        _ => None,
    };
    let vip_lookup = match (&config.checks.service_lookup, kube_client) {
        (Some(service), Some(client)) => {
            checks = checks.with_pending(checks::Kind::Service);
            let own_pod_ip = peers_rx.borrow().peer(&config.node_name).map(|p| p.pod_ip);
            Some((service.clone(), client, own_pod_ip))
        }
        _ => None,
    };
    let checks = Arc::new(checks);
    for (kind, target) in checks.targets() {
        tracing::info!(check = kind.as_str(), target = %target, "per-source check on");
    }
    let vip_task = vip_lookup.map(|(service, client, own_pod_ip)| {
        tracing::info!(%service, "service check: reading the ClusterIP of Service {service}");
        tokio::spawn(
            crate::k8s::service::VipLookup {
                client,
                service,
                pref: crate::k8s::service::FamilyPref::of(config.ip_family, own_pod_ip),
                http: probers.http.clone(),
                checks: checks.clone(),
                status: status.clone(),
                schedule: Default::default(),
            }
            .run(),
        )
    });
    let endpoints_task = endpoints_lookup.map(|(api, client)| {
        tracing::info!(
            "apiserver_endpoints check: reading the API server's endpoints from the EndpointSlices of default/kubernetes"
        );
        let own_pod_ip = peers_rx.borrow().peer(&config.node_name).map(|p| p.pod_ip);
        tokio::spawn(
            crate::k8s::apiserver::EndpointsLookup {
                client,
                pref: crate::k8s::service::FamilyPref::of(config.ip_family, own_pod_ip),
                tls: api.tls.0.clone(),
                token: api.token.clone(),
                checks: checks.clone(),
                status: status.clone(),
                schedule: Default::default(),
            }
            .run(),
        )
    });
    let mut metrics = Metrics::new(StoreCollector {
        identity: identity.clone(),
        store: store.clone(),
        discovery: status.clone(),
        ready: ready.clone(),
        pair_metrics: config.pair_metrics,
        icmp_socket,
        pmtu_socket,
        plan: plan.clone(),
        interval: config.interval,
        window: config.window,
    });
    metrics.register_checks(
        &checks,
        identity.node.clone(),
        identity.zone.clone().unwrap_or_default(),
    );
    let ondemand = {
        let counter = metrics.ondemand_probes.clone();
        let p = &config.probe;
        crate::ondemand::OnDemand {
            limits: crate::ondemand::limits::Limits::new(
                p.token.clone(),
                p.rate_per_minute,
                p.burst,
                p.max_concurrent,
            ),
            extra_allowed: p.allow_cidrs.clone(),
            runner: crate::ondemand::run::Runner {
                probers: probers.clone(),
                pmtu: PmtuProber::new().ok().map(Arc::new),
                timeout: config.timeout,
                ip_family: config.ip_family,
                on_probe: Arc::new(move |check: &'static str| {
                    counter.get_or_create(&[("check", check)]).inc();
                }),
            },
            requests: metrics.ondemand_requests.clone(),
            // The Kubernetes support sets a resolver for pod/NAMESPACE/NAME targets.
            pods: kube_facts.as_ref().map(|f: &crate::k8s::FactsSource| {
                crate::ondemand::pods::Pods::new(
                    Arc::new(crate::k8s::fetch::KubePodResolver {
                        client: f.client.clone(),
                    }),
                    p.pod_namespaces.clone(),
                )
            }),
            // And for svc/NAMESPACE/NAME targets, in the same namespaces.
            services: kube_facts.as_ref().map(|f: &crate::k8s::FactsSource| {
                crate::ondemand::services::Services::new(
                    Arc::new(crate::k8s::ondemand_svc::KubeServiceResolver {
                        client: f.client.clone(),
                    }),
                    p.pod_namespaces.clone(),
                )
            }),
        }
    };
    let shared = Arc::new(Shared {
        ondemand,
        identity,
        config: config.clone(),
        store,
        discovery: status,
        ready,
        rounds: AtomicU64::new(0),
        metrics,
        icmp_socket,
        plan,
        mesh_cache: tokio::sync::Mutex::new(None),
        kube_facts,
        checks,
    });
    tracing::info!(
        node = %config.node_name,
        zone = shared.identity.zone.as_deref().unwrap_or(""),
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        peers = peers_rx.borrow().peers.len(),
        targets = peers_rx.borrow().targets.len(),
        icmp_socket,
        "agent starting"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let mtu = config.mtu_interval.zip(pmtu_prober).map(|(check, prober)| {
        MtuDriver::start(
            prober,
            shared.store.clone(),
            shared.metrics.mtu_probes.clone(),
            MtuSettings {
                check_interval: check,
                search_interval: config.mtu_search_interval,
                timeout: config.timeout,
            },
        )
    });
    let events_task = publisher.map(|client| {
        tokio::spawn(crate::k8s::events::run(
            shared.clone(),
            client,
            config.timeout * 2,
        ))
    });
    let loop_task = tokio::spawn(probe_loop(shared.clone(), probers, mtu, peers_rx, stop_rx));

    let served = server::serve(
        listener,
        crate::api::router(shared.clone()),
        ServerLimits::default(),
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    discovery_task.abort();
    if let Some(t) = endpoints_task {
        t.abort();
    }
    if let Some(t) = vip_task {
        t.abort();
    }
    if let Some(t) = events_task {
        t.abort();
    }
    let _ = loop_task.await;
    tracing::info!("agent stopped");
    served.map_err(|e| Error::Socket(format!("HTTP server failed: {e}")))
}

async fn probe_loop(
    shared: Arc<Shared>,
    probers: Probers,
    mtu: Option<MtuDriver>,
    mut peers_rx: watch::Receiver<Arc<PeerSet>>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &shared.config;
    let params = TaskParams {
        default_port: cfg.listen.port(),
        icmp_count: cfg.icmp_count,
        icmp_size: cfg.icmp_size,
        families: cfg.ip_family,
    };
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight));
    let mut current: Option<Arc<PeerSet>> = None;
    let mut tasks: Vec<Arc<Task>> = Vec::new();
    let mut warned_stretch = false;
    let plan_params = PlanParams {
        full_mesh_max: cfg.full_mesh_max,
        ..PlanParams::default()
    };
    // Rotating peers stay one window (so their windows fill), and all agents agree on the
    // epoch through their clocks.
    let epoch_len = cfg.window.max(cfg.interval);
    let mut planned_epoch: Option<u64> = None;
    // Nodes in the current peer set (the API server checks' period scales with it).
    let mut current_nodes = 0usize;
    let mut watching = true;

    'round: loop {
        let latest = peers_rx.borrow_and_update().clone();
        let epoch = crate::plan::epoch_at(std::time::SystemTime::now(), epoch_len);
        let new_set = current.as_ref().is_none_or(|c| !Arc::ptr_eq(c, &latest));
        if new_set || planned_epoch.is_some_and(|e| e != epoch) {
            let mut t = schedule::tasks(&latest, &cfg.node_name, params);
            if new_set {
                let single = schedule::single_family_peers(&latest, &cfg.node_name, cfg.ip_family);
                if !single.is_empty() {
                    tracing::warn!(
                        peers = single.len(),
                        first = ?&single[..single.len().min(5)],
                        "--ip-family dual: these peers have a pod address of one family only; probing them at it"
                    );
                }
            }
            let nodes = Plan::nodes_in(&latest, &cfg.node_name);
            current_nodes = nodes;
            // A full mesh is planned without a plan: its every-pair matrix would be the
            // agent's largest allocation (32 MB at 2,000 nodes) and says only "everyone".
            let sampled = nodes > plan_params.full_mesh_max;
            let (peers, plan) = if sampled {
                let plan = Plan::for_peer_set(
                    &latest,
                    &cfg.node_name,
                    shared.identity.zone.as_deref(),
                    &plan_params,
                    epoch,
                );
                let mine: std::collections::HashSet<&str> =
                    plan.peers_of(&cfg.node_name).into_iter().collect();
                t.retain(|t| t.key.kind != DestKind::Peer || mine.contains(t.key.name.as_str()));
                if planned_epoch.is_none() {
                    tracing::info!(
                        nodes,
                        full_mesh_max = cfg.full_mesh_max,
                        peers = mine.len(),
                        "peer set above --full-mesh-max: probing this agent's share of a sampled plan"
                    );
                }
                (mine.len(), Some(Arc::new(plan)))
            } else {
                (nodes - 1, None)
            };
            shared.plan.sampled.store(sampled, Ordering::Relaxed);
            shared.plan.peers.store(peers, Ordering::Relaxed);
            if let Ok(mut current) = shared.plan.current.lock() {
                *current = plan;
            }
            planned_epoch = sampled.then_some(epoch);
            t.retain(|t| cfg.layers.contains(t.key.layer));
            schedule::order(&mut t, seed);
            if let Ok(mut store) = shared.store.lock() {
                store.set_peers(latest.clone(), &t);
            }
            // Not `t.into_iter().map(Arc::new).collect()`: that collects in place, into `t`'s
            // buffer, sized for every layer before the filters above (336 kB at 1,000 peers,
            // for 8 kB of pointers).
            tasks = Vec::with_capacity(t.len());
            tasks.extend(t.into_iter().map(Arc::new));
            if let Some(m) = &mtu {
                m.sync(&tasks);
            }
            current = Some(latest);
        }

        // The per-source checks take slots of the round like the pair probes: --max-rate and
        // --max-in-flight bound them too.
        let api_period =
            checks::apiserver_period(current_nodes, cfg.interval, shared.config.window);
        let active_checks = shared.checks.due(Instant::now(), |k| {
            if k.is_apiserver() {
                api_period
            } else {
                Duration::ZERO
            }
        });
        let n_checks = active_checks.len();
        let plan =
            schedule::plan_round(tasks.len() + n_checks, cfg.interval, cfg.max_rate, &mut rng);
        if plan.stretched {
            shared.metrics.rounds_stretched.inc();
            if !warned_stretch {
                tracing::warn!(
                    probes = tasks.len(),
                    max_rate = cfg.max_rate,
                    round_seconds = plan.round_len.as_secs_f64(),
                    "--max-rate cannot fit a round in --interval; rounds are stretched"
                );
                warned_stretch = true;
            }
        }
        let start = Instant::now();
        let coalesce = schedule::coalesce_window(plan.round_len);
        let mut next_task = tasks.iter();
        for (slot, offset) in plan.offsets.iter().enumerate() {
            let at = start + *offset;
            // Probes due within the coalescing window start with this wake-up instead of
            // their own (`schedule::coalesce_window`: fewer wake-ups, a little early).
            if at > Instant::now() + coalesce {
                loop {
                    tokio::select! {
                        _ = sleep_until(at) => break,
                        // A new peer set starts a new round at once: departed peers' windows
                        // (and series) go within one interval.
                        r = peers_rx.changed(), if watching => match r {
                            Ok(()) => continue 'round,
                            Err(_) => watching = false,
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            let permit = tokio::select! {
                p = in_flight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = stop.changed() => return,
            };
            shared
                .metrics
                .lateness
                .observe(Instant::now().saturating_duration_since(at).as_secs_f64());
            if let Some(j) = checks::slot_of(slot, plan.offsets.len(), n_checks) {
                let (i, shared) = (active_checks[j], shared.clone());
                tokio::spawn(async move {
                    // One attempt: a check's failure is confirmed by the next round's.
                    shared.checks.run(i, shared.config.timeout).await;
                    drop(permit);
                });
                continue;
            }
            let Some(task) = next_task.next() else { break };
            let (task, probers, shared) = (task.clone(), probers.clone(), shared.clone());
            tokio::spawn(async move {
                let timeout = shared.config.timeout;
                let mut result = probers.run(&task.check, timeout).await;
                // A first failure is confirmed at once (one probe per failure streak, under
                // the same in-flight permit), so a fault is two failures old within about one
                // timeout instead of one interval.
                for confirming in [false, true] {
                    if confirming {
                        shared.metrics.confirmations.inc();
                        result = probers.run(&task.check, timeout).await;
                    }
                    shared.metrics.observe(task.key.layer, &result);
                    let failures = shared.store.lock().ok().and_then(|mut store| {
                        store.record(&task.key, Instant::now(), &result);
                        store.consecutive_failures(&task.key)
                    });
                    if confirming || !schedule::confirm_now(&result, failures) {
                        break;
                    }
                }
                drop(permit);
            });
        }
        loop {
            tokio::select! {
                _ = sleep_until(start + plan.round_len) => break,
                r = peers_rx.changed(), if watching => match r {
                    Ok(()) => continue 'round,
                    Err(_) => watching = false,
                },
                _ = stop.changed() => return,
            }
        }
        if !shared.ready.load(Ordering::Relaxed) {
            // Ready once every probe of the first round has reported: wait for the in-flight
            // probes to drain (bounded by the timeout) before saying so.
            let all = u32::try_from(cfg.max_in_flight).unwrap_or(u32::MAX);
            if let Ok(Ok(permits)) = tokio::time::timeout(
                cfg.timeout + Duration::from_millis(500),
                in_flight.acquire_many(all),
            )
            .await
            {
                drop(permits);
            }
            shared.ready.store(true, Ordering::Relaxed);
            tracing::info!(probes = tasks.len(), "first probe round complete: ready");
        }
        shared.rounds.fetch_add(1, Ordering::Relaxed);
        shared.metrics.rounds.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[::]` takes IPv4 and IPv6 clients alike; `0.0.0.0` stays IPv4 only.
    #[tokio::test]
    async fn the_default_listener_takes_both_families() {
        let l = bind("[::]:0".parse().unwrap()).unwrap();
        let port = l.local_addr().unwrap().port();
        for client in ["127.0.0.1", "::1"] {
            let to = SocketAddr::new(client.parse().unwrap(), port);
            let (c, a) = tokio::join!(tokio::net::TcpStream::connect(to), l.accept());
            assert!(c.is_ok() && a.is_ok(), "{to}: {c:?} {a:?}");
        }
        let l = bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = l.local_addr().unwrap().port();
        let to = SocketAddr::new("::1".parse().unwrap(), port);
        assert!(tokio::net::TcpStream::connect(to).await.is_err());
    }
}
