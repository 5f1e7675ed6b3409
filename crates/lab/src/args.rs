//! The `meshprobe lab` command line: [`LabArgs`], its subcommands and the `up` options.

use std::path::PathBuf;

use clap::Subcommand;

use crate::plan::AGENT_PORT;

#[derive(Debug, clap::Args)]
#[command(
    about = "Build a multi-node network from namespaces on this machine, run agents in it, inject faults",
    long_about = "Build a Kubernetes-like network out of network namespaces on this machine (nodes in \
zones joined by a router, a probe pod running `meshprobe agent` and a target pod running \
`meshprobe serve` on every node), serve each agent's page on 127.0.0.1, and inject faults. \
Without a subcommand: `lab up`. Needs root."
)]
pub struct LabArgs {
    /// Namespace name prefix: the lab's namespaces are PREFIX-fabric, PREFIX-router, PREFIX-nI,
    /// PREFIX-nI-probe, PREFIX-nI-web; its state lives in /run/meshprobe-lab/PREFIX.
    #[arg(long, global = true, default_value = "mp")]
    pub prefix: String,
    #[command(subcommand)]
    pub command: Option<LabCommand>,
    #[command(flatten)]
    pub up: Box<UpArgs>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab, start agents and targets, serve the live view; Ctrl-C tears it all down.
    Up(Box<UpArgs>),
    /// Inject a fault: KIND ARGS… [--family ipv4|ipv6] (without KIND: list the kinds).
    Fault {
        kind: Option<String>,
        args: Vec<String>,
        /// Confine the fault to one family of a dual-stack lab (without it: both). Taken by
        /// route (that family's routes), cni (its `ip` or `ip6` addresses), pmtu-blackhole
        /// (the MTU, shared, and only that family's ICMP frag-needed or packet-too-big
        /// dropped), policy, reject, partition (`meta nfproto`) and loss (`meta protocol`).
        /// Refused by mtu and node-down: a link's MTU and its being down are both families'.
        /// A single-family lab takes its own family (the whole lab) and refuses the other.
        #[arg(long, value_name = "ipv4|ipv6")]
        family: Option<String>,
        /// `kube-proxy NODE --stale`: the same as `kube-proxy NODE stale` (the node's Service
        /// rules left pointing at agent pods that are gone, instead of removed).
        #[arg(long)]
        stale: bool,
    },
    /// Undo every active fault (or just those named) and flush cached path MTUs.
    Clear {
        kind: Option<String>,
        args: Vec<String>,
        /// With KIND ARGS…: clear only that family's fault (without it: the place's faults of
        /// every family).
        #[arg(long, value_name = "ipv4|ipv6")]
        family: Option<String>,
    },
    /// Topology, processes, active faults and each agent's readiness and reachability.
    Status {
        /// Print JSON (state, namespaces, processes, each agent's /api/v1/results).
        #[arg(long)]
        json: bool,
    },
    /// Remove everything the lab made (also after a crash or kill -9 of `lab up`).
    Down,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4)]
    pub nodes: u16,
    /// Number of zones (nodes are spread round-robin).
    #[arg(long, default_value_t = 2)]
    pub zones: u16,
    /// How pod addresses are laid out: `subnet` (a /24 per node), `blocks` (two /26 blocks per
    /// node, four nodes' blocks per /24, one shared link-local gateway: Calico), `vpc` (pods
    /// from the underlay subnet, routed per pod: VPC-native CNIs).
    #[arg(long, value_enum, default_value_t = crate::plan::Addressing::Subnet)]
    pub pod_addressing: crate::plan::Addressing,
    /// The lab's IP family: `ipv4` (198.18.0.0/15), `ipv6` (ULA: underlay fd00:198:18:Z::/64,
    /// pods fd00:198:19:I::/64), `dual` (both on every link and in the peers file, IPv4
    /// primary: the agents probe it; a fault acts on both families unless `lab fault … --family`
    /// names one).
    #[arg(long, value_enum, default_value_t = crate::plan::IpFamily::Ipv4)]
    pub ip_family: crate::plan::IpFamily,
    /// Agents' probe interval.
    #[arg(long, default_value = "2s")]
    pub interval: String,
    /// Agents' per-probe timeout.
    #[arg(long, default_value = "1s")]
    pub timeout: String,
    /// Agents' statistics window.
    #[arg(long, default_value = "30s")]
    pub window: String,
    /// Agents' ICMP echoes per probe (agent default when unset).
    #[arg(long)]
    pub icmp_count: Option<u16>,
    /// Agents' `--full-mesh-max`: above this many nodes they probe a sampled plan (agent
    /// default when unset), e.g. `--nodes 12 --full-mesh-max 8` to watch the plan at work.
    #[arg(long)]
    pub full_mesh_max: Option<u32>,
    /// Agents' path-MTU check interval (`0s`: off); shorter than the agent's 30 s default so
    /// MTU faults show within seconds.
    #[arg(long, default_value = "10s")]
    pub mtu_interval: String,
    /// Live view: node I's agent is served on 127.0.0.1:(PORT_BASE + I - 1); 0 picks free ports.
    #[arg(long, default_value_t = AGENT_PORT)]
    pub port_base: u16,
    /// The meshprobe binary to run in the pods [default: this executable].
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// Run the agents without CAP_NET_RAW, as the default `deploy/base` does: ICMP datagram
    /// sockets for echoes and path-MTU discovery (routers' errors from the error queue).
    #[arg(long)]
    pub unprivileged: bool,
    /// Do not install missing tools (ip, sysctl, nft) with apt-get; name their packages and
    /// exit 2 instead. Without it, `lab up` as root on Debian/Ubuntu installs them.
    #[arg(long)]
    pub no_install: bool,
}
