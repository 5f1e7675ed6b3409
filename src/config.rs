//! Agent configuration: flags first, then environment variables, then defaults, validated.
//!
//! The environment is read through the [`Env`] trait so tests resolve configurations without
//! touching the process environment (after linkerd2-proxy).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{IpFamilies, Layers};
use meshprobe_core::parse::{fmt_duration, parse_duration, validate_name};

pub mod apiserver;
mod checks;
mod probe;
pub use apiserver::ApiserverConfig;
pub use checks::{dns_name, ChecksConfig, ServiceRef, AGENT_SERVICE_NAME, VIP_SERVICE_NAME};
use checks::{dns_server, service_addr, service_name};
pub use probe::{ProbeConfig, MIN_TOKEN_LEN};

/// A source of environment variables.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// Which per-pair series the agent exports (aggregates are always exported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairMetrics {
    /// `All` while the agent probes a full mesh, `Failing` once its plan is sampled.
    Auto,
    All,
    Failing,
    None,
}

/// A resolved, validated agent configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub node_name: String,
    pub zone: Option<String>,
    pub listen: SocketAddr,
    /// Empty with `--discovery kubernetes`.
    pub peers_file: PathBuf,
    pub discovery: Discovery,
    pub interval: Duration,
    pub timeout: Duration,
    pub window: Duration,
    pub icmp_count: u16,
    pub icmp_size: u16,
    pub max_rate: u32,
    pub max_in_flight: usize,
    pub pair_metrics: PairMetrics,
    /// Full mesh up to this many nodes; beyond it the agent probes its share of a sampled
    /// plan ([`crate::plan`]).
    pub full_mesh_max: usize,
    /// The kinds of probe to run (`--layers`).
    pub layers: Layers,
    /// The address families probed (`--ip-family`).
    pub ip_family: IpFamilies,
    /// Path-MTU check interval; `None` when discovery is off.
    pub mtu_interval: Option<Duration>,
    pub mtu_search_interval: Duration,
    /// `POST /api/v1/probe` fences.
    pub probe: ProbeConfig,
    /// Where the mesh view comes from above `--full-mesh-max` (`--prometheus`): `None`, a
    /// bounded zone-aware subset of the agents ([`crate::mesh`]).
    pub prometheus: Option<crate::promclient::PromSource>,
    /// The per-source checks (`--dns-name`, `--dns-server`, `--service`).
    pub checks: ChecksConfig,
}

/// `--dns-name`, `--dns-server`, `--service`. Under Kubernetes discovery the `dns` check is on by
/// default, resolving the agents' own Service in their namespace (`none` turns it off); with
/// the peers file it is off unless named.
fn checks_config(args: &AgentArgs, env: &dyn Env, discovery: &Discovery) -> Result<ChecksConfig> {
    let default_name = match discovery {
        Discovery::Kubernetes(k) => k
            .namespace
            .clone()
            .or_else(|| env.var("POD_NAMESPACE"))
            .map(|ns| format!("{AGENT_SERVICE_NAME}.{ns}.svc.cluster.local.")),
        Discovery::File => None,
    };
    let dns_name = lookup(env, &args.dns_name, "dns-name", default_name, |s| {
        if s.trim() == "none" {
            Ok(None)
        } else {
            dns_name(s.trim()).map(Some)
        }
    })?;
    let dns_server = lookup(env, &args.dns_server, "dns-server", None, |s| {
        dns_server(s).map(Some)
    })?;
    let service = lookup(env, &args.service, "service", None, |s| {
        service_addr(s).map(Some)
    })?;
    // `None`: not given; `Some(None)`: `none`.
    let named = lookup(env, &args.service_name, "service-name", None, |s| {
        match s.trim() {
            "none" => Ok(Some(None)),
            s => service_name(s).map(|n| Some(Some(n))),
        }
    })?;
    const NAME: &str = "--service-name (or MESHPROBE_SERVICE_NAME)";
    let service_lookup = match (discovery, service, named) {
        (_, _, Some(None)) => None,
        (_, Some(_), Some(Some(n))) => {
            return Err(Error::Config(format!(
                "{NAME} {n:?} and --service (or MESHPROBE_SERVICE) exclude each other: the check has one address"
            )))
        }
        (_, Some(_), None) => None,
        (Discovery::File, None, Some(Some(n))) => {
            return Err(Error::Config(format!(
                "{NAME} {n:?} needs --discovery kubernetes (the Service is read from the API); with the peers file give --service IP:PORT"
            )))
        }
        (Discovery::File, None, None) => None,
        (Discovery::Kubernetes(k), None, named) => {
            // The agents' namespace, as the `dns` check's default name.
            let ns = match (&k.namespace, env.var("POD_NAMESPACE")) {
                (Some(ns), _) => Some(ns.clone()),
                (None, Some(ns)) => {
                    validate_name(&ns)
                        .map_err(|e| Error::Config(format!("POD_NAMESPACE {ns:?}: {e}")))?;
                    Some(ns)
                }
                (None, None) => None,
            };
            match (ns, named) {
                (Some(namespace), named) => Some(ServiceRef {
                    namespace,
                    name: named.flatten().unwrap_or_else(|| VIP_SERVICE_NAME.into()),
                }),
                // --all-namespaces outside a pod: no namespace to look in; off unless asked.
                (None, None) => None,
                (None, Some(n)) => {
                    let n = n.unwrap_or_default();
                    return Err(Error::Config(format!(
                        "{NAME} {n:?} needs the agents' namespace to read it in: --namespace or POD_NAMESPACE"
                    )))
                }
            }
        }
    };
    let apiserver = apiserver::config(
        &apiserver_raw(args, env, discovery),
        std::path::Path::new(apiserver::IN_CLUSTER_CA),
        std::path::Path::new(apiserver::IN_CLUSTER_TOKEN),
    )?;
    Ok(ChecksConfig {
        dns_name,
        dns_server,
        service,
        service_lookup,
        apiserver,
    })
}

/// What the API server checks' settings are made from (`config::apiserver`).
pub(crate) fn apiserver_raw(
    args: &AgentArgs,
    env: &dyn Env,
    discovery: &Discovery,
) -> apiserver::Raw {
    apiserver::Raw {
        apiserver: args
            .apiserver
            .clone()
            .or_else(|| env.var("MESHPROBE_APISERVER")),
        endpoints: args
            .apiserver_endpoints
            .clone()
            .or_else(|| env.var("MESHPROBE_APISERVER_ENDPOINTS")),
        ca: args
            .apiserver_ca
            .clone()
            .or_else(|| env.var("MESHPROBE_APISERVER_CA").map(PathBuf::from)),
        service_host: env.var("KUBERNETES_SERVICE_HOST"),
        service_port: env.var("KUBERNETES_SERVICE_PORT"),
        kube: matches!(discovery, Discovery::Kubernetes(_)),
    }
}

fn probe_config(args: &AgentArgs, env: &dyn Env) -> Result<ProbeConfig> {
    let d = ProbeConfig::default();
    let allow_cidrs = match args.allow_cidr.clone().or_else(|| env.var("MESHPROBE_ALLOW_CIDR")) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                crate::net::Cidr::parse(s).ok_or_else(|| {
                    Error::Config(format!(
                        "--allow-cidr (or MESHPROBE_ALLOW_CIDR) {s:?}: expected a CIDR like 10.0.0.0/8"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let token = args
        .probe_token
        .clone()
        .or_else(|| env.var("MESHPROBE_PROBE_TOKEN"));
    if let Some(t) = &token {
        // A short token is guessed: at the rate limit (failed tokens count), 16 random
        // characters take longer than any cluster lives.
        if t.len() < MIN_TOKEN_LEN || t.len() > 256 || !t.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "--probe-token (or MESHPROBE_PROBE_TOKEN): {MIN_TOKEN_LEN}-256 printable ASCII characters, no spaces (got {} characters; e.g. `openssl rand -hex 32`)",
                t.chars().count()
            )));
        }
    }
    let max_concurrent = lookup(
        env,
        &args.probe_max_concurrent,
        "probe-max-concurrent",
        d.max_concurrent,
        |s| whole(s, 1..=64),
    )?;
    let rate_per_minute = lookup(
        env,
        &args.probe_rate,
        "probe-rate",
        d.rate_per_minute,
        |s| whole(s, 1..=6000),
    )?;
    let pod_namespaces = match args
        .probe_pod_namespaces
        .clone()
        .or_else(|| env.var("MESHPROBE_PROBE_POD_NAMESPACES"))
    {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|n| {
                    meshprobe_core::parse::validate_name(n)
                        .map(|_| n.to_string())
                        .map_err(|e| {
                            Error::Config(format!(
                                "--probe-pod-namespaces (or MESHPROBE_PROBE_POD_NAMESPACES) {n:?}: {e}"
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(ProbeConfig {
        allow_cidrs,
        token,
        max_concurrent,
        rate_per_minute,
        burst: d.burst.min(rate_per_minute),
        pod_namespaces,
    })
}

pub const DEFAULT_PORT: u16 = 9464;
pub const DEFAULT_SELECTOR: &str = "app.kubernetes.io/name=meshprobe";
pub const DEFAULT_TARGET_SELECTOR: &str = "meshprobe.io/probe";
/// Kubernetes relist period: a stale watch (etcd restored behind the agent) lasts at most
/// this long, for 3 paged lists per agent per period (docs/kubernetes.md has the cost).
pub const DEFAULT_KUBE_RESYNC: Duration = Duration::from_secs(300);

/// Where the peer set comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Discovery {
    File,
    Kubernetes(KubeSettings),
}

/// A label selector as the API accepts it: bounded, no spaces, no control characters (the
/// API server checks the grammar; a refusal names the flag there too).
fn check_selector(flag: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 1024 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Config(format!(
            "{flag} {s:?}: expected a label selector like app.kubernetes.io/name=meshprobe"
        )));
    }
    Ok(())
}

impl AgentConfig {
    /// Resolve flags, falling back to `env`, then to defaults. Every error names the flag and
    /// its environment variable.
    pub fn resolve(args: &AgentArgs, env: &dyn Env) -> Result<AgentConfig> {
        let get = |flag: &Option<String>, var: &str| flag.clone().or_else(|| env.var(var));

        let node_name = get(&args.node_name, "MESHPROBE_NODE_NAME").ok_or_else(|| {
            Error::Config("--node-name (or MESHPROBE_NODE_NAME) is required".into())
        })?;
        validate_name(&node_name)
            .map_err(|e| Error::Config(format!("--node-name {node_name:?}: {e}")))?;
        let zone = get(&args.zone, "MESHPROBE_ZONE");
        if let Some(z) = &zone {
            validate_name(z).map_err(|e| Error::Config(format!("--zone {z:?}: {e}")))?;
        }
        let listen_s =
            get(&args.listen, "MESHPROBE_LISTEN").unwrap_or_else(|| format!("[::]:{DEFAULT_PORT}"));
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            Error::Config(format!(
                "--listen {listen_s:?}: expected IP:PORT, e.g. [::]:{DEFAULT_PORT} or 0.0.0.0:{DEFAULT_PORT}"
            ))
        })?;
        if args.publish_events
            && get(&args.discovery, "MESHPROBE_DISCOVERY").as_deref() != Some("kubernetes")
        {
            return Err(Error::Config(
                "--publish-events needs --discovery kubernetes".into(),
            ));
        }
        let kubernetes = match get(&args.discovery, "MESHPROBE_DISCOVERY").as_deref() {
            None | Some("file") => false,
            Some("kubernetes") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "--discovery (or MESHPROBE_DISCOVERY) {other:?}: expected file or kubernetes"
                )))
            }
        };
        let peers_file = args
            .peers_file
            .clone()
            .or_else(|| env.var("MESHPROBE_PEERS_FILE").map(PathBuf::from));
        let peers_file = match (kubernetes, peers_file) {
            (false, Some(p)) if p.as_os_str().is_empty() => {
                return Err(Error::Config(
                    "--peers-file (or MESHPROBE_PEERS_FILE) is empty: expected the path of the peers file"
                        .into(),
                ))
            }
            (false, Some(p)) => p,
            (false, None) => return Err(Error::Config(
                "--peers-file (or MESHPROBE_PEERS_FILE) is required (or --discovery kubernetes)"
                    .into(),
            )),
            (true, Some(_)) => {
                return Err(Error::Config(
                    "--peers-file and --discovery kubernetes exclude each other".into(),
                ))
            }
            (true, None) => PathBuf::new(),
        };

        let duration = |s: &str| parse_duration(s).map_err(|e| format!("{s:?}: {e}"));
        let interval = lookup(
            env,
            &args.interval,
            "interval",
            Duration::from_secs(5),
            duration,
        )?;
        let timeout = lookup(
            env,
            &args.timeout,
            "timeout",
            Duration::from_secs(1),
            duration,
        )?;
        let window = lookup(
            env,
            &args.window,
            "window",
            Duration::from_secs(60),
            duration,
        )?;
        let icmp_count = lookup(env, &args.icmp_count, "icmp-count", 3, |s| whole(s, 1..=20))?;
        let icmp_size = lookup(env, &args.icmp_size, "icmp-size", 56, |s| {
            whole(s, 8..=1472)
        })?;
        let max_rate = lookup(env, &args.max_rate, "max-rate", 500, |s| {
            whole(s, 1..=100_000)
        })?;
        let max_in_flight = lookup(env, &args.max_in_flight, "max-in-flight", 256, |s| {
            whole(s, 1..=10_000)
        })?;
        let mtu_interval = lookup(
            env,
            &args.mtu_interval,
            "mtu-interval",
            Duration::from_secs(30),
            duration,
        )?;
        let mtu_search_interval = lookup(
            env,
            &args.mtu_search_interval,
            "mtu-search-interval",
            Duration::from_secs(600),
            duration,
        )?;
        let kube_resync = lookup(
            env,
            &args.kube_resync,
            "kube-resync",
            DEFAULT_KUBE_RESYNC,
            duration,
        )?;
        if kube_resync < Duration::from_secs(1) {
            return Err(Error::Config(format!(
                "--kube-resync (or MESHPROBE_KUBE_RESYNC) {}: must be at least 1s",
                fmt_duration(kube_resync)
            )));
        }
        let full_mesh_max = lookup(env, &args.full_mesh_max, "full-mesh-max", 200, |s| {
            whole(s, 0..=1_000_000)
        })?;
        let layers = lookup(env, &args.layers, "layers", Layers::ALL, Layers::parse)?;
        let ip_family = lookup(
            env,
            &args.ip_family,
            "ip-family",
            IpFamilies::Auto,
            IpFamilies::parse,
        )?;
        let pair_metrics = match get(&args.pair_metrics, "MESHPROBE_PAIR_METRICS").as_deref() {
            None | Some("auto") => PairMetrics::Auto,
            Some("all") => PairMetrics::All,
            Some("failing") => PairMetrics::Failing,
            Some("none") => PairMetrics::None,
            Some(other) => {
                return Err(Error::Config(format!(
                    "--pair-metrics (or MESHPROBE_PAIR_METRICS) {other:?}: expected auto, all, failing or none"
                )))
            }
        };

        if interval < Duration::from_millis(100) {
            return Err(Error::Config(format!(
                "--interval {}: must be at least 100ms",
                fmt_duration(interval)
            )));
        }
        if timeout.is_zero() || timeout >= interval {
            return Err(Error::Config(format!(
                "--timeout {} must be above zero and below --interval {}",
                fmt_duration(timeout),
                fmt_duration(interval)
            )));
        }
        let mtu_interval = (!mtu_interval.is_zero()).then_some(mtu_interval);
        if let Some(m) = mtu_interval {
            if m < Duration::from_secs(1) || mtu_search_interval < m {
                return Err(Error::Config(format!(
                    "--mtu-interval {} must be at least 1s (or 0s for off) and at most --mtu-search-interval {}",
                    fmt_duration(m),
                    fmt_duration(mtu_search_interval)
                )));
            }
        }
        if window < interval {
            return Err(Error::Config(format!(
                "--window {} must be at least one --interval ({})",
                fmt_duration(window),
                fmt_duration(interval)
            )));
        }
        let discovery = if kubernetes {
            let selector = get(&args.selector, "MESHPROBE_SELECTOR")
                .unwrap_or_else(|| DEFAULT_SELECTOR.into());
            check_selector("--selector (or MESHPROBE_SELECTOR)", &selector)?;
            let target_selector = match get(&args.target_selector, "MESHPROBE_TARGET_SELECTOR") {
                Some(s) if s == "none" => None,
                Some(s) => Some(s),
                None => Some(DEFAULT_TARGET_SELECTOR.into()),
            };
            if let Some(t) = &target_selector {
                check_selector("--target-selector (or MESHPROBE_TARGET_SELECTOR)", t)?;
            }
            let namespace = agent_namespace(args, env)?;
            let publish_events = args.publish_events
                || match env.var("MESHPROBE_PUBLISH_EVENTS").as_deref() {
                    None | Some("false") | Some("0") => false,
                    Some("true") | Some("1") => true,
                    Some(other) => {
                        return Err(Error::Config(format!(
                            "MESHPROBE_PUBLISH_EVENTS {other:?}: expected true or false"
                        )))
                    }
                };
            let api_url = get(&args.kube_api, "MESHPROBE_KUBE_API");
            if let Some(u) = &api_url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(Error::Config(format!(
                        "--kube-api (or MESHPROBE_KUBE_API) {u:?}: expected an http:// or https:// URL"
                    )));
                }
            }
            Discovery::Kubernetes(KubeSettings {
                api_url,
                selector,
                target_selector,
                namespace,
                // A freshly Ready agent is held for one window: until its cells could fill.
                grace: window,
                publish_events,
                // A silent API server is noticed within a window (30–60 s), not at the
                // watches' read timeout (295 s).
                liveness: window.clamp(Duration::from_secs(30), Duration::from_secs(60)),
                resync: kube_resync,
                resync_scales: args.kube_resync.is_none()
                    && env.var("MESHPROBE_KUBE_RESYNC").is_none(),
            })
        } else {
            Discovery::File
        };
        let probe = probe_config(args, env)?;
        let checks = checks_config(args, env, &discovery)?;
        let prometheus = match get(&args.prometheus, "MESHPROBE_PROMETHEUS") {
            None => None,
            Some(u) if u.trim().is_empty() => None,
            Some(u) => {
                let ca = args
                    .prometheus_ca
                    .clone()
                    .or_else(|| env.var("MESHPROBE_PROMETHEUS_CA").map(PathBuf::from));
                let mut url = crate::promclient::PromUrl::parse(&u)
                    .and_then(|url| url.with_ca(ca.as_deref()))
                    .map_err(|e| {
                        Error::Config(
                            e.replacen(
                                "--prometheus ",
                                "--prometheus (or MESHPROBE_PROMETHEUS) ",
                                1,
                            )
                            .replacen(
                                "--prometheus-ca ",
                                "--prometheus-ca (or MESHPROBE_PROMETHEUS_CA) ",
                                1,
                            ),
                        )
                    })?;
                url.auth =
                    crate::promclient::auth_from_env(|k| env.var(k)).map_err(Error::Config)?;
                Some(crate::promclient::PromSource {
                    url,
                    matchers: get(&args.prometheus_match, "MESHPROBE_PROMETHEUS_MATCH")
                        .filter(|m| !m.trim().is_empty()),
                })
            }
        };
        Ok(AgentConfig {
            probe,
            prometheus,
            checks,
            node_name,
            zone,
            listen,
            peers_file,
            discovery,
            interval,
            timeout,
            window,
            icmp_count,
            icmp_size,
            max_rate,
            max_in_flight,
            pair_metrics,
            full_mesh_max,
            layers,
            ip_family,
            mtu_interval,
            mtu_search_interval,
        })
    }
}

/// The namespace of the agent pods (peers): `--namespace`, else the pod's own namespace
/// (`POD_NAMESPACE`, from the downward API), and all namespaces (`None`) only with
/// `--all-namespaces`: a pod elsewhere carrying the agents' label must not join the mesh and
/// receive forwarded tokens unless asked for. Neither given: an error naming all three.
fn agent_namespace(args: &AgentArgs, env: &dyn Env) -> Result<Option<String>> {
    let all = args.all_namespaces
        || match env.var("MESHPROBE_ALL_NAMESPACES").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "MESHPROBE_ALL_NAMESPACES {other:?}: expected true or false"
                )))
            }
        };
    let named = args
        .namespace
        .clone()
        .or_else(|| env.var("MESHPROBE_NAMESPACE"));
    let (ns, source) = match (named, all) {
        (Some(ns), true) => {
            return Err(Error::Config(format!(
                "--namespace (or MESHPROBE_NAMESPACE) {ns:?} and --all-namespaces (or MESHPROBE_ALL_NAMESPACES) exclude each other"
            )))
        }
        (None, true) => return Ok(None),
        (Some(ns), false) => (ns, "--namespace (or MESHPROBE_NAMESPACE)"),
        (None, false) => match env.var("POD_NAMESPACE") {
            Some(ns) => (ns, "POD_NAMESPACE"),
            None => {
                return Err(Error::Config(
                    "--discovery kubernetes needs the agent pods' namespace: --namespace NAME (or MESHPROBE_NAMESPACE), \
                     POD_NAMESPACE from the downward API (metadata.namespace, as deploy/base sets it), \
                     or --all-namespaces (or MESHPROBE_ALL_NAMESPACES=true)"
                        .into(),
                ))
            }
        },
    };
    validate_name(&ns).map_err(|e| Error::Config(format!("{source} {ns:?}: {e}")))?;
    Ok(Some(ns))
}

/// `--NAME`, else `MESHPROBE_NAME` (dashes as underscores), else `default`; `parse` returns
/// the tail of an error message that this prefixes with the flag and variable.
fn lookup<T>(
    env: &dyn Env,
    flag: &Option<String>,
    name: &str,
    default: T,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<T> {
    let var = format!("MESHPROBE_{}", name.to_uppercase().replace('-', "_"));
    match flag.clone().or_else(|| env.var(&var)) {
        None => Ok(default),
        Some(s) => parse(&s).map_err(|tail| Error::Config(format!("--{name} (or {var}) {tail}"))),
    }
}

/// A whole number within `range`; the error is the tail of a message naming the flag.
fn whole<T>(s: &str, range: std::ops::RangeInclusive<T>) -> std::result::Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not a whole number"))?;
    if !range.contains(&v) {
        return Err(format!(
            "{v}: must be between {} and {}",
            range.start(),
            range.end()
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Layer;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn args() -> AgentArgs {
        AgentArgs {
            node_name: Some("node-1".into()),
            peers_file: Some("/etc/meshprobe/peers.yaml".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let c = AgentConfig::resolve(&args(), &env(&[])).unwrap();
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.window, Duration::from_secs(60));
        assert_eq!(c.listen, "[::]:9464".parse().unwrap());
        assert_eq!(c.pair_metrics, PairMetrics::Auto);
        assert_eq!(c.full_mesh_max, 200);
        assert_eq!(c.icmp_count, 3);
        assert_eq!(c.mtu_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.mtu_search_interval, Duration::from_secs(600));
        assert_eq!(c.probe, ProbeConfig::default());
        assert_eq!(c.prometheus, None);
        let e = env(&[
            ("MESHPROBE_PROBE_TOKEN", "s3cret-s3cret-s3cret"),
            ("MESHPROBE_ALLOW_CIDR", "10.0.0.0/8, 192.0.2.0/24"),
        ]);
        let mut a = args();
        a.probe_rate = Some("6".into());
        let c = AgentConfig::resolve(&a, &e).unwrap();
        assert_eq!(c.probe.token.as_deref(), Some("s3cret-s3cret-s3cret"));
        assert_eq!(c.probe.allow_cidrs.len(), 2);
        assert_eq!((c.probe.rate_per_minute, c.probe.burst), (6, 6));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the token never shows in Debug"
        );
        let mut icmp_only = args();
        icmp_only.layers = Some("icmp_node, icmp_pod".into());
        let l = AgentConfig::resolve(&icmp_only, &env(&[])).unwrap().layers;
        assert!(l.contains(Layer::IcmpPod) && l.contains(Layer::IcmpNode));
        assert!(!l.contains(Layer::Http) && !l.contains(Layer::Tcp));
        let l = AgentConfig::resolve(&args(), &env(&[("MESHPROBE_LAYERS", "tcp")]))
            .unwrap()
            .layers;
        assert!(l.contains(Layer::Tcp) && !l.contains(Layer::IcmpPod));
        assert_eq!(
            AgentConfig::resolve(&args(), &env(&[])).unwrap().ip_family,
            IpFamilies::Auto
        );
        let f = AgentConfig::resolve(&args(), &env(&[("MESHPROBE_IP_FAMILY", "ipv6")]));
        assert_eq!(f.unwrap().ip_family, IpFamilies::Ipv6);
        let mut off = args();
        off.mtu_interval = Some("0s".into());
        assert_eq!(
            AgentConfig::resolve(&off, &env(&[])).unwrap().mtu_interval,
            None
        );
    }

    #[test]
    fn environment_fills_missing_flags_and_flags_win() {
        let e = env(&[
            ("MESHPROBE_NODE_NAME", "from-env"),
            ("MESHPROBE_ZONE", "zone-a"),
            ("MESHPROBE_PEERS_FILE", "/p.json"),
            ("MESHPROBE_INTERVAL", "2s"),
            ("MESHPROBE_LISTEN", "127.0.0.1:1234"),
        ]);
        let c = AgentConfig::resolve(&AgentArgs::default(), &e).unwrap();
        assert_eq!(c.node_name, "from-env");
        assert_eq!(c.zone.as_deref(), Some("zone-a"));
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.listen, "127.0.0.1:1234".parse().unwrap());
        let mut a = args();
        a.interval = Some("10s".into());
        let c = AgentConfig::resolve(&a, &e).unwrap();
        assert_eq!(c.node_name, "node-1");
        assert_eq!(c.interval, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_the_flag_and_variable() {
        type Case = (fn(&mut AgentArgs), &'static str);
        let table: &[Case] = &[
            (
                |a| a.node_name = None,
                "--node-name (or MESHPROBE_NODE_NAME) is required",
            ),
            (|a| a.peers_file = None, "--peers-file"),
            (
                |a| a.peers_file = Some("".into()),
                "--peers-file (or MESHPROBE_PEERS_FILE) is empty",
            ),
            (
                |a| a.interval = Some("5".into()),
                "--interval (or MESHPROBE_INTERVAL) \"5\": missing unit",
            ),
            (
                |a| a.timeout = Some("5s".into()),
                "--timeout 5s must be above zero and below --interval 5s",
            ),
            (
                |a| a.listen = Some("localhost".into()),
                "--listen \"localhost\"",
            ),
            (
                |a| a.icmp_count = Some("0".into()),
                "--icmp-count (or MESHPROBE_ICMP_COUNT) 0: must be between 1 and 20",
            ),
            (
                |a| a.max_rate = Some("lots".into()),
                "--max-rate (or MESHPROBE_MAX_RATE) \"lots\": not a whole number",
            ),
            (
                |a| a.pair_metrics = Some("some".into()),
                "expected auto, all, failing or none",
            ),
            (
                |a| a.full_mesh_max = Some("many".into()),
                "--full-mesh-max (or MESHPROBE_FULL_MESH_MAX) \"many\": not a whole number",
            ),
            (
                |a| a.prometheus = Some("ftp://prom:9090".into()),
                "--prometheus (or MESHPROBE_PROMETHEUS) \"ftp://prom:9090\": expected http://HOST:PORT",
            ),
            (
                |a| {
                    a.prometheus = Some("http://prom:9090".into());
                    a.prometheus_ca = Some("/no/such/ca.pem".into());
                },
                "--prometheus-ca (or MESHPROBE_PROMETHEUS_CA) /no/such/ca.pem: only for an https://",
            ),
            (
                |a| {
                    a.prometheus = Some("https://prom:9090".into());
                    a.prometheus_ca = Some("/no/such/ca.pem".into());
                },
                "--prometheus-ca (or MESHPROBE_PROMETHEUS_CA) /no/such/ca.pem: No such file",
            ),
            (
                |a| a.window = Some("1s".into()),
                "--window 1s must be at least one --interval",
            ),
            (
                |a| a.layers = Some("icmp,http".into()),
                "--layers (or MESHPROBE_LAYERS) \"icmp,http\": unknown layer \"icmp\", expected",
            ),
            (|a| a.layers = Some(",".into()), "--layers (or MESHPROBE_LAYERS) \",\": no layer given"),
            (
                |a| a.ip_family = Some("both".into()),
                "--ip-family (or MESHPROBE_IP_FAMILY) \"both\": unknown IP family, expected ipv4, ipv6, dual or auto",
            ),
            (
                |a| a.node_name = Some("node 1".into()),
                "--node-name \"node 1\"",
            ),
            (
                |a| a.mtu_interval = Some("500ms".into()),
                "--mtu-interval 500ms must be at least 1s",
            ),
            (
                |a| a.mtu_interval = Some("20m".into()),
                "at most --mtu-search-interval 600s",
            ),
            (
                |a| a.allow_cidr = Some("10.0.0.0/8,10.1.2.3".into()),
                "--allow-cidr (or MESHPROBE_ALLOW_CIDR) \"10.1.2.3\": expected a CIDR",
            ),
            (
                |a| a.probe_token = Some("two words and then some".into()),
                "--probe-token (or MESHPROBE_PROBE_TOKEN): 16-256 printable",
            ),
            (
                |a| a.probe_token = Some("x".into()),
                "--probe-token (or MESHPROBE_PROBE_TOKEN): 16-256 printable ASCII characters, no spaces (got 1 characters",
            ),
            (
                |a| a.probe_token = Some("0123456789abcde".into()),
                "(got 15 characters",
            ),
            (
                |a| a.probe_max_concurrent = Some("0".into()),
                "--probe-max-concurrent (or MESHPROBE_PROBE_MAX_CONCURRENT) 0: must be between 1 and 64",
            ),
            (
                |a| a.probe_rate = Some("fast".into()),
                "--probe-rate (or MESHPROBE_PROBE_RATE) \"fast\": not a whole number",
            ),
        ];
        for (mutate, want) in table {
            let mut a = args();
            mutate(&mut a);
            let err = AgentConfig::resolve(&a, &env(&[])).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn kubernetes_discovery_flags() {
        let mut a = AgentArgs {
            node_name: Some("node-1".into()),
            discovery: Some("kubernetes".into()),
            ..Default::default()
        };
        let in_pod = env(&[("POD_NAMESPACE", "meshprobe")]);
        let c = AgentConfig::resolve(&a, &in_pod).unwrap();
        let Discovery::Kubernetes(k) = &c.discovery else {
            panic!("{c:?}")
        };
        assert_eq!(k.selector, DEFAULT_SELECTOR);
        assert_eq!(k.target_selector.as_deref(), Some(DEFAULT_TARGET_SELECTOR));
        // The agent pods' namespace defaults to the pod's own.
        assert_eq!(k.namespace.as_deref(), Some("meshprobe"));
        assert_eq!(k.grace, Duration::from_secs(60));
        assert_eq!(k.liveness, Duration::from_secs(60));
        assert_eq!(k.resync, Duration::from_secs(300));
        assert!(k.resync_scales, "the default scales with the cluster");
        let r = AgentConfig::resolve(
            &a,
            &env(&[
                ("POD_NAMESPACE", "meshprobe"),
                ("MESHPROBE_KUBE_RESYNC", "30s"),
            ]),
        )
        .unwrap();
        assert!(
            matches!(r.discovery, Discovery::Kubernetes(ref k) if k.resync == Duration::from_secs(30) && !k.resync_scales)
        );
        let mut set = a.clone();
        set.kube_resync = Some("5m".into());
        let r = AgentConfig::resolve(&set, &in_pod).unwrap();
        assert!(
            matches!(r.discovery, Discovery::Kubernetes(ref k) if !k.resync_scales),
            "a period the user set, even the default's value, is kept"
        );
        assert!(!k.publish_events);
        let on = AgentConfig::resolve(
            &a,
            &env(&[("MESHPROBE_PUBLISH_EVENTS", "true"), ("POD_NAMESPACE", "x")]),
        )
        .unwrap();
        assert!(matches!(on.discovery, Discovery::Kubernetes(ref k) if k.publish_events));
        let e = env(&[
            ("MESHPROBE_SELECTOR", "app=mp"),
            ("MESHPROBE_TARGET_SELECTOR", "none"),
            ("MESHPROBE_NAMESPACE", "meshprobe"),
        ]);
        let c = AgentConfig::resolve(&a, &e).unwrap();
        let Discovery::Kubernetes(k) = &c.discovery else {
            panic!("{c:?}")
        };
        assert_eq!(
            (
                k.selector.as_str(),
                k.target_selector.clone(),
                k.namespace.as_deref()
            ),
            ("app=mp", None, Some("meshprobe"))
        );
        type Case = (fn(&mut AgentArgs), &'static str);
        let bad: &[Case] = &[
            (
                |a| a.discovery = Some("dns".into()),
                "--discovery (or MESHPROBE_DISCOVERY) \"dns\": expected file or kubernetes",
            ),
            (
                |a| a.peers_file = Some("/p.yaml".into()),
                "exclude each other",
            ),
            (
                |a| a.selector = Some("app = x".into()),
                "--selector (or MESHPROBE_SELECTOR) \"app = x\"",
            ),
            (
                |a| a.target_selector = Some(String::new()),
                "--target-selector",
            ),
            (
                |a| a.namespace = Some("a/b".into()),
                "--namespace (or MESHPROBE_NAMESPACE) \"a/b\"",
            ),
            (
                |a| a.kube_resync = Some("500ms".into()),
                "--kube-resync (or MESHPROBE_KUBE_RESYNC) 500ms: must be at least 1s",
            ),
            (
                |a| {
                    a.discovery = None;
                    a.publish_events = true;
                },
                "--publish-events needs --discovery kubernetes",
            ),
        ];
        for (mutate, want) in bad {
            let mut b = a.clone();
            mutate(&mut b);
            let err = AgentConfig::resolve(&b, &in_pod).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
        a.discovery = Some("file".into());
        assert!(AgentConfig::resolve(&a, &env(&[]))
            .unwrap_err()
            .to_string()
            .contains("--peers-file (or MESHPROBE_PEERS_FILE) is required"));
    }

    /// The agent pods' namespace: the flag, else its variable, else the pod's own
    /// (POD_NAMESPACE); all namespaces only when asked; nothing at all is an error (exit 2)
    /// naming every way to set it.
    #[test]
    fn agent_namespace_defaults_to_the_pods_own_and_all_only_when_asked() {
        let kube = AgentArgs {
            node_name: Some("node-1".into()),
            discovery: Some("kubernetes".into()),
            ..Default::default()
        };
        let ns = |a: &AgentArgs, vars: &[(&str, &str)]| match AgentConfig::resolve(a, &env(vars))
            .map(|c| c.discovery)
        {
            Ok(Discovery::Kubernetes(k)) => Ok(k.namespace),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{e}");
                Err(e.to_string())
            }
        };
        let all = AgentArgs {
            all_namespaces: true,
            ..kube.clone()
        };
        let named = AgentArgs {
            namespace: Some("probes".into()),
            ..kube.clone()
        };
        assert_eq!(ns(&kube, &[("POD_NAMESPACE", "mp")]), Ok(Some("mp".into())));
        assert_eq!(
            ns(
                &kube,
                &[("POD_NAMESPACE", "mp"), ("MESHPROBE_NAMESPACE", "other")]
            ),
            Ok(Some("other".into()))
        );
        assert_eq!(
            ns(
                &named,
                &[("POD_NAMESPACE", "mp"), ("MESHPROBE_NAMESPACE", "other")]
            ),
            Ok(Some("probes".into()))
        );
        assert_eq!(ns(&all, &[("POD_NAMESPACE", "mp")]), Ok(None));
        assert_eq!(
            ns(
                &kube,
                &[
                    ("MESHPROBE_ALL_NAMESPACES", "true"),
                    ("POD_NAMESPACE", "mp")
                ]
            ),
            Ok(None)
        );
        let none = ns(&kube, &[]).unwrap_err();
        for want in ["--namespace", "POD_NAMESPACE", "--all-namespaces"] {
            assert!(none.contains(want), "{none} should name {want}");
        }
        let both = ns(
            &AgentArgs {
                all_namespaces: true,
                ..named.clone()
            },
            &[],
        )
        .unwrap_err();
        assert!(both.contains("exclude each other"), "{both}");
        let bad = ns(&kube, &[("POD_NAMESPACE", "a/b")]).unwrap_err();
        assert!(bad.contains("POD_NAMESPACE \"a/b\""), "{bad}");
        let bad = ns(
            &kube,
            &[("MESHPROBE_ALL_NAMESPACES", "yes"), ("POD_NAMESPACE", "mp")],
        )
        .unwrap_err();
        assert!(bad.contains("MESHPROBE_ALL_NAMESPACES \"yes\""), "{bad}");
        // File discovery needs none of it.
        let file = AgentArgs {
            discovery: Some("file".into()),
            peers_file: Some("/p.yaml".into()),
            ..kube.clone()
        };
        assert!(AgentConfig::resolve(&file, &env(&[])).is_ok());
    }

    /// `--dns-name`, `--dns-server`, `--service`: off by default with the peers file, the
    /// agents' Service under Kubernetes (`none` turns it off), bad values refused with the flag
    /// named (exit 2).
    #[test]
    fn per_source_checks() {
        let c = AgentConfig::resolve(&args(), &env(&[])).unwrap();
        assert_eq!(c.checks, ChecksConfig::default(), "off with the peers file");
        let kube = AgentArgs {
            node_name: Some("node-1".into()),
            discovery: Some("kubernetes".into()),
            ..Default::default()
        };
        let k = AgentConfig::resolve(&kube, &env(&[("POD_NAMESPACE", "mp")])).unwrap();
        assert_eq!(
            k.checks.dns_name.as_deref(),
            Some("meshprobe.mp.svc.cluster.local.")
        );
        let named = AgentArgs {
            namespace: Some("probes".into()),
            ..kube.clone()
        };
        let k = AgentConfig::resolve(&named, &env(&[("POD_NAMESPACE", "mp")])).unwrap();
        assert_eq!(
            k.checks.dns_name.as_deref(),
            Some("meshprobe.probes.svc.cluster.local."),
            "the agents' namespace, not the pod's own"
        );
        let off = AgentConfig::resolve(
            &kube,
            &env(&[("POD_NAMESPACE", "mp"), ("MESHPROBE_DNS_NAME", "none")]),
        )
        .unwrap();
        assert_eq!(off.checks.dns_name, None);
        // The `service` check's ClusterIP: the agents' meshprobe-vip under Kubernetes, read
        // from the API; another name; `none`; a fixed --service instead.
        let vip = |ns: &str, name: &str| {
            Some(ServiceRef {
                namespace: ns.into(),
                name: name.into(),
            })
        };
        let k = AgentConfig::resolve(&kube, &env(&[("POD_NAMESPACE", "mp")])).unwrap();
        assert_eq!(k.checks.service_lookup, vip("mp", "meshprobe-vip"));
        assert_eq!(k.checks.service, None);
        let k = AgentConfig::resolve(&named, &env(&[("POD_NAMESPACE", "mp")])).unwrap();
        assert_eq!(
            k.checks.service_lookup,
            vip("probes", "meshprobe-vip"),
            "the agents' namespace, not the pod's own"
        );
        let k = AgentConfig::resolve(
            &kube,
            &env(&[("POD_NAMESPACE", "mp"), ("MESHPROBE_SERVICE_NAME", "vip-2")]),
        )
        .unwrap();
        assert_eq!(k.checks.service_lookup, vip("mp", "vip-2"));
        for (var, value) in [
            ("MESHPROBE_SERVICE_NAME", "none"),
            ("MESHPROBE_SERVICE", "10.96.0.20:9464"),
        ] {
            let k = AgentConfig::resolve(&kube, &env(&[("POD_NAMESPACE", "mp"), (var, value)]))
                .unwrap();
            assert_eq!(k.checks.service_lookup, None, "{var}={value}");
        }
        let all = AgentArgs {
            all_namespaces: true,
            ..kube.clone()
        };
        let k = AgentConfig::resolve(&all, &env(&[("POD_NAMESPACE", "mp")])).unwrap();
        assert_eq!(k.checks.service_lookup, vip("mp", "meshprobe-vip"));
        let k = AgentConfig::resolve(&all, &env(&[])).unwrap();
        assert_eq!(
            k.checks.service_lookup, None,
            "no namespace: off by default"
        );
        // Refused, naming the flags: with the peers file, beside --service, without a
        // namespace, a name the API server would refuse.
        type Refused<'a> = (AgentArgs, &'a [(&'a str, &'a str)], &'a str);
        let refused: &[Refused] = &[
            (
                AgentArgs {
                    service_name: Some("vip".into()),
                    ..args()
                },
                &[],
                "--service-name (or MESHPROBE_SERVICE_NAME) \"vip\" needs --discovery kubernetes",
            ),
            (
                AgentArgs {
                    service_name: Some("vip".into()),
                    service: Some("10.96.0.20:9464".into()),
                    ..kube.clone()
                },
                &[("POD_NAMESPACE", "mp")],
                "and --service (or MESHPROBE_SERVICE) exclude each other",
            ),
            (
                AgentArgs {
                    service_name: Some("vip".into()),
                    ..all.clone()
                },
                &[],
                "--service-name (or MESHPROBE_SERVICE_NAME) \"vip\" needs the agents' namespace",
            ),
            (
                kube.clone(),
                &[("POD_NAMESPACE", "mp"), ("MESHPROBE_SERVICE_NAME", "Meshprobe_VIP")],
                "--service-name (or MESHPROBE_SERVICE_NAME) \"Meshprobe_VIP\": expected a Service name",
            ),
            (
                all.clone(),
                &[("POD_NAMESPACE", "a/b")],
                "POD_NAMESPACE \"a/b\"",
            ),
        ];
        for (a, vars, want) in refused {
            let err = AgentConfig::resolve(a, &env(vars)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
        for bad in ["", "-vip", "vip-", "1vip", "vip.x", &"v".repeat(64)] {
            assert!(service_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(service_name(&"v".repeat(63)).map(|n| n.len()), Ok(63));
        let mut a = args();
        a.dns_name = Some("Kube-DNS.kube-system.svc.cluster.local".into());
        a.dns_server = Some("198.18.96.10".into());
        a.service = Some("[fd00::14]:9464".into());
        let c = AgentConfig::resolve(&a, &env(&[])).unwrap().checks;
        assert_eq!(
            c,
            ChecksConfig {
                dns_name: Some("kube-dns.kube-system.svc.cluster.local.".into()),
                dns_server: Some("198.18.96.10:53".parse().unwrap()),
                service: Some("[fd00::14]:9464".parse().unwrap()),
                service_lookup: None,
                apiserver: None,
            }
        );
        let c = AgentConfig::resolve(&args(), &env(&[("MESHPROBE_DNS_SERVER", "127.0.0.1:5353")]))
            .unwrap()
            .checks;
        assert_eq!(c.dns_server, Some("127.0.0.1:5353".parse().unwrap()));

        type Case = (fn(&mut AgentArgs), &'static str);
        let bad: &[Case] = &[
            (
                |a| a.dns_name = Some("a..b".into()),
                "--dns-name (or MESHPROBE_DNS_NAME) \"a..b\"",
            ),
            (
                |a| a.dns_name = Some("".into()),
                "--dns-name (or MESHPROBE_DNS_NAME) \"\"",
            ),
            (|a| a.dns_name = Some("bad name.local".into()), "--dns-name"),
            (|a| a.dns_name = Some("-x.local".into()), "--dns-name"),
            (
                |a| a.dns_name = Some(format!("{}.local", "a".repeat(64))),
                "--dns-name",
            ),
            (|a| a.dns_name = Some(["abc"; 70].join(".")), "--dns-name"),
            (|a| a.dns_name = Some("ä.local".into()), "--dns-name"),
            (
                |a| a.dns_server = Some("kube-dns".into()),
                "--dns-server (or MESHPROBE_DNS_SERVER) \"kube-dns\"",
            ),
            (|a| a.dns_server = Some("10.0.0.1:0".into()), "--dns-server"),
            (
                |a| a.dns_server = Some("10.0.0.1:99999".into()),
                "--dns-server",
            ),
            (
                |a| a.service = Some("10.96.0.20".into()),
                "--service (or MESHPROBE_SERVICE) \"10.96.0.20\": expected IP:PORT",
            ),
            (
                |a| a.service = Some("meshprobe-vip:9464".into()),
                "--service",
            ),
            (|a| a.service = Some("0.0.0.0:9464".into()), "--service"),
            (|a| a.service = Some("10.96.0.20:0".into()), "--service"),
        ];
        for (mutate, want) in bad {
            let mut b = args();
            mutate(&mut b);
            let err = AgentConfig::resolve(&b, &env(&[])).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        }
    }

    #[test]
    fn durations() {
        let ok = [
            ("500ms", 500),
            ("5s", 5000),
            ("1.5s", 1500),
            ("2m", 120_000),
            ("1h", 3_600_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
        for bad in ["", "5", "s", "5x", "-1s", "1e99h", "..s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_duration(Duration::from_secs(5)), "5s");
    }
}

/// `meshprobe agent` flags. Every flag may also come from the environment variable named in
/// its help (the downward API sets them in Kubernetes); a flag wins over its variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct AgentArgs {
    /// This node's name [env: MESHPROBE_NODE_NAME] (required).
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's zone [env: MESHPROBE_ZONE].
    #[arg(long)]
    pub zone: Option<String>,
    /// Address to serve HTTP on [env: MESHPROBE_LISTEN] [default: [::]:9464, both families;
    /// 0.0.0.0:9464 where the kernel has no IPv6].
    #[arg(long)]
    pub listen: Option<String>,
    /// Peers file (YAML or JSON), re-read when it changes [env: MESHPROBE_PEERS_FILE] (required
    /// with `--discovery file`).
    #[arg(long)]
    pub peers_file: Option<PathBuf>,
    /// Where peers come from: `file` (--peers-file) or `kubernetes` (watch the agent pods and
    /// nodes, and annotated target pods) [env: MESHPROBE_DISCOVERY] [default: file].
    #[arg(long)]
    pub discovery: Option<String>,
    /// Kubernetes: label selector of the agent pods [env: MESHPROBE_SELECTOR]
    /// [default: app.kubernetes.io/name=meshprobe].
    #[arg(long)]
    pub selector: Option<String>,
    /// Kubernetes: namespace of the agent pods [env: MESHPROBE_NAMESPACE] [default: the pod's
    /// own, from POD_NAMESPACE (downward API)].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Kubernetes: agent pods in every namespace instead of one (any pod with the selector's
    /// labels anywhere joins the mesh) [env: MESHPROBE_ALL_NAMESPACES=true].
    #[arg(long)]
    pub all_namespaces: bool,
    /// Kubernetes: label selector of pods whose `meshprobe.io/probe` annotation names a target;
    /// `none` for no targets [env: MESHPROBE_TARGET_SELECTOR] [default: meshprobe.io/probe].
    #[arg(long)]
    pub target_selector: Option<String>,
    /// Kubernetes: API server URL, instead of the in-cluster service account or kubeconfig
    /// (e.g. `http://127.0.0.1:8001` behind `kubectl proxy`) [env: MESHPROBE_KUBE_API].
    #[arg(long)]
    pub kube_api: Option<String>,
    /// Kubernetes: post the mesh view's findings as Events on the Node or Pod concerned
    /// (one agent publishes; deduplicated, at most 10 a minute); needs create on events
    /// (deploy/components/publish-events) [env: MESHPROBE_PUBLISH_EVENTS=true].
    #[arg(long)]
    pub publish_events: bool,
    /// Kubernetes: relist every watched resource this often (± 10 % jitter), so no watch stays
    /// stale longer (e.g. after an etcd restore) [env: MESHPROBE_KUBE_RESYNC] [default: 5m per
    /// 1,000 nodes, at least 5m].
    #[arg(long)]
    pub kube_resync: Option<String>,
    /// Time between two probes of the same destination and layer [env: MESHPROBE_INTERVAL] [default: 5s].
    #[arg(long)]
    pub interval: Option<String>,
    /// Per-probe timeout, below the interval [env: MESHPROBE_TIMEOUT] [default: 1s].
    #[arg(long)]
    pub timeout: Option<String>,
    /// Span of the sliding window statistics are computed over [env: MESHPROBE_WINDOW] [default: 60s].
    #[arg(long)]
    pub window: Option<String>,
    /// ICMP echoes per ICMP probe (packet-level loss needs more than one) [env: MESHPROBE_ICMP_COUNT] [default: 3].
    #[arg(long)]
    pub icmp_count: Option<String>,
    /// ICMP echo payload bytes [env: MESHPROBE_ICMP_SIZE] [default: 56].
    #[arg(long)]
    pub icmp_size: Option<String>,
    /// Ceiling on probes started per second by this agent [env: MESHPROBE_MAX_RATE] [default: 500].
    #[arg(long)]
    pub max_rate: Option<String>,
    /// Ceiling on probes in flight at once [env: MESHPROBE_MAX_IN_FLIGHT] [default: 256].
    #[arg(long)]
    pub max_in_flight: Option<String>,
    /// Time between two cheap full-size Don't-Fragment checks of each destination's path MTU;
    /// `0s` turns path-MTU discovery off [env: MESHPROBE_MTU_INTERVAL] [default: 30s].
    #[arg(long)]
    pub mtu_interval: Option<String>,
    /// Time between two full path-MTU searches of a destination [env: MESHPROBE_MTU_SEARCH_INTERVAL] [default: 10m].
    #[arg(long)]
    pub mtu_search_interval: Option<String>,
    /// Which probes to run, comma-separated: icmp_pod, icmp_node, http (peers' agents and http
    /// targets), tcp (tcp targets), or all [env: MESHPROBE_LAYERS] [default: all].
    #[arg(long)]
    pub layers: Option<String>,
    /// Address families probed: ipv4, ipv6, dual (both; a peer missing one is logged) or auto
    /// (every family each destination has) [env: MESHPROBE_IP_FAMILY] [default: auto].
    #[arg(long)]
    pub ip_family: Option<String>,
    /// Per-pair metric series: auto (all on a full mesh, failing on a sampled plan), all,
    /// failing (only destinations with failures in the window, every layer of them) or none
    /// [env: MESHPROBE_PAIR_METRICS] [default: auto].
    #[arg(long)]
    pub pair_metrics: Option<String>,
    /// Full mesh up to this many nodes; beyond it each agent probes its share of a sampled,
    /// zone-aware plan [env: MESHPROBE_FULL_MESH_MAX] [default: 200].
    #[arg(long)]
    pub full_mesh_max: Option<String>,
    /// Above --full-mesh-max, build the mesh view (`/api/v1/diagnosis`) from meshprobe's metrics
    /// in this Prometheus (http[s]://HOST:PORT[/PREFIX]) instead of a bounded subset of the agents.
    /// Auth from MESHPROBE_PROMETHEUS_TOKEN, or MESHPROBE_PROMETHEUS_USER and
    /// MESHPROBE_PROMETHEUS_PASSWORD [env: MESHPROBE_PROMETHEUS] [default: none].
    #[arg(long)]
    pub prometheus: Option<String>,
    /// With --prometheus: extra label matchers for every query, e.g. 'cluster="prod"'
    /// [env: MESHPROBE_PROMETHEUS_MATCH].
    #[arg(long)]
    pub prometheus_match: Option<String>,
    /// With an https:// --prometheus: trust the CA certificates of this PEM file instead of
    /// the system's trust store [env: MESHPROBE_PROMETHEUS_CA].
    #[arg(long, value_name = "FILE")]
    pub prometheus_ca: Option<PathBuf>,
    /// Extra CIDRs on-demand probe targets may fall in, comma-separated, besides the pod and
    /// node subnets of the peer set [env: MESHPROBE_ALLOW_CIDR].
    #[arg(long)]
    pub allow_cidr: Option<String>,
    /// Bearer token `POST /api/v1/probe` requires (prefer the variable: flags show in `ps`)
    /// [env: MESHPROBE_PROBE_TOKEN] [default: none, open].
    #[arg(long)]
    pub probe_token: Option<String>,
    /// On-demand probe requests running at once on this agent [env: MESHPROBE_PROBE_MAX_CONCURRENT] [default: 4].
    #[arg(long)]
    pub probe_max_concurrent: Option<String>,
    /// On-demand probe requests per client per minute (bursts of up to 10) [env: MESHPROBE_PROBE_RATE] [default: 30].
    #[arg(long)]
    pub probe_rate: Option<String>,
    /// Namespaces `pod/NAMESPACE/NAME` targets may name, comma-separated
    /// [env: MESHPROBE_PROBE_POD_NAMESPACES] [default: any].
    #[arg(long)]
    pub probe_pod_namespaces: Option<String>,
    /// The `dns` check: resolve this name (A; AAAA with `--ip-family ipv6`) every interval,
    /// one query, no cache; `none` for no check [env: MESHPROBE_DNS_NAME] [default: with
    /// `--discovery kubernetes` the agents' Service, meshprobe.NAMESPACE.svc.cluster.local.;
    /// else none].
    #[arg(long)]
    pub dns_name: Option<String>,
    /// The DNS server the `dns` check asks, IP or IP:PORT [env: MESHPROBE_DNS_SERVER]
    /// [default: the name servers of /etc/resolv.conf].
    #[arg(long)]
    pub dns_server: Option<String>,
    /// The `service` check: TCP connect and `GET /ping` to this Service ClusterIP:PORT every
    /// interval; any agent answering is a success [env: MESHPROBE_SERVICE] [default: with
    /// `--discovery kubernetes` the ClusterIP of `--service-name`; else none].
    #[arg(long)]
    pub service: Option<String>,
    /// With `--discovery kubernetes` and no `--service`: the Service in the agents' namespace
    /// whose ClusterIP the `service` check connects to (read from the API every 5 minutes);
    /// `none` for no check [env: MESHPROBE_SERVICE_NAME] [default: meshprobe-vip].
    #[arg(long)]
    pub service_name: Option<String>,
    /// The `apiserver` check: TCP, TLS and `GET /readyz` to the API server through this
    /// ClusterIP:PORT every interval (HTTP 200 is a success); `none` for no check
    /// [env: MESHPROBE_APISERVER] [default: with `--discovery kubernetes` the pod's
    /// KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT; else none].
    #[arg(long)]
    pub apiserver: Option<String>,
    /// The `apiserver_endpoints` check: the same to each of these IP:PORT (at most 8,
    /// comma-separated) directly; `none` for no check [env: MESHPROBE_APISERVER_ENDPOINTS]
    /// [default: with `--discovery kubernetes` the `default/kubernetes` EndpointSlices' addresses,
    /// read every 5 minutes; else none].
    #[arg(long)]
    pub apiserver_endpoints: Option<String>,
    /// The CA certificates (PEM) the API server's certificate is verified against, for the name
    /// kubernetes.default.svc [env: MESHPROBE_APISERVER_CA] [default:
    /// /var/run/secrets/kubernetes.io/serviceaccount/ca.crt when it exists; without a CA the
    /// checks are off].
    #[arg(long, value_name = "FILE")]
    pub apiserver_ca: Option<PathBuf>,
}

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSettings {
    /// API server URL; `None`: in-cluster service account, else kubeconfig.
    pub api_url: Option<String>,
    /// Label selector of the meshprobe agent pods.
    pub selector: String,
    /// Label selector of pods that may carry a `meshprobe.io/probe` annotation; `None`: no targets.
    pub target_selector: Option<String>,
    /// Namespace of the agent pods; `None`: all namespaces.
    pub namespace: Option<String>,
    /// A freshly Ready agent is held (probed, no alarm) this long.
    pub grace: Duration,
    /// Post findings as Kubernetes Events (`--publish-events`).
    pub publish_events: bool,
    /// Watches quiet this long get a one-object list to tell a quiet cluster from an API
    /// server that stopped answering (see [`crate::k8s::watch::liveness_due`]).
    pub liveness: Duration,
    /// Every watch is relisted about this often (± 10 %, see
    /// [`crate::k8s::watch::resync_delay`]): a watch waiting for a resourceVersion the API
    /// server never reaches (etcd restored from a backup) is stale at most this long.
    pub resync: Duration,
    /// `resync` is the default, scaled with the node count
    /// ([`crate::k8s::watch::resync_period`]); false when the user set it.
    pub resync_scales: bool,
}
