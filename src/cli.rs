//! Command-line surface. Flags are parsed by clap into plain `Option`s; defaults and environment
//! fallbacks are resolved in [`crate::config`], where they can be tested without a process
//! environment.

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
    Agent(Box<crate::config::AgentArgs>),
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
