//! Command-line surface. Flags are parsed by clap into plain `Option`s; defaults and environment
//! fallbacks are resolved in [`crate::config`], where they can be tested without a process
//! environment.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "meshprobe",
    version,
    about = "Which pods cannot reach which, and why: continuous mesh probing for Kubernetes"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "MESHPROBE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. `info` or `meshprobe=debug`.
    #[arg(long, global = true, default_value = "info", env = "MESHPROBE_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the probe agent: probe every peer and target continuously, serve metrics and results.
    Agent(Box<AgentArgs>),
    /// Serve a small HTTP target (what the lab's target pods run).
    Serve(crate::serve::ServeArgs),
    /// Which pods cannot reach which, and why: diagnose the mesh from the agents' results.
    Diagnose(crate::diagnose::DiagnoseArgs),
    /// Build a multi-node network from namespaces on this machine, run agents in it, inject faults.
    Lab(crate::lab::LabArgs),
    /// Probe planning at scale: `--simulate` a cluster's load, coverage, series and diagnosis.
    Plan(crate::plan::cmd::PlanArgs),
    /// Is this target reachable from every node — and if not, why? Asks one agent to probe it
    /// from every agent now.
    Probe(crate::probecmd::ProbeArgs),
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
    /// Address to serve HTTP on [env: MESHPROBE_LISTEN] [default: 0.0.0.0:9464].
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
    /// Kubernetes: namespace of the agent pods [env: MESHPROBE_NAMESPACE] [default: all namespaces].
    #[arg(long)]
    pub namespace: Option<String>,
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
    /// Per-pair metric series: auto (all on a full mesh, failing on a sampled plan), all,
    /// failing (only pairs with failures in the window) or none
    /// [env: MESHPROBE_PAIR_METRICS] [default: auto].
    #[arg(long)]
    pub pair_metrics: Option<String>,
    /// Full mesh up to this many nodes; beyond it each agent probes its share of a sampled,
    /// zone-aware plan [env: MESHPROBE_FULL_MESH_MAX] [default: 200].
    #[arg(long)]
    pub full_mesh_max: Option<String>,
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
}
