//! meshprobe: which pods cannot reach which, and why. The binary's library: wiring, the HTTP
//! API, metrics, the on-demand probe, Kubernetes, the subcommands. The pure core, the store, the
//! diagnosis engine, the probers, the HTTP server and the lab are crates of their own (see
//! ARCHITECTURE.md), re-exported here under their module names.
//!
//! # Layout
//!
//! * [`agent`]: wires config → discovery → probe loop → store, and the server.
//! * [`shared`]: the agent's shared state; its results document and the mesh view.
//! * [`api`]: the agent's HTTP routes (`/metrics`, `/api/v1/results`, `/ping`, ...).
//! * [`config`]: agent flags ([`config::AgentArgs`]), environment ([`config::Env`]) and defaults.
//! * [`discovery`]: the peers file, polled; [`k8s`]: Kubernetes discovery, facts and events.
//! * [`pmtud`]: the agent's path-MTU scheduler: one task holding a [`mtu`] search per destination.
//! * [`metrics`]: Prometheus exposition, rendered from the store at scrape time.
//! * [`gather`], [`mesh`]: other agents' results, and the mesh view as the engine's input.
//! * [`heatmap`], [`compress`]: the agent page and its SVG matrices; gzip when accepted.
//! * [`ondemand`]: `POST /api/v1/probe` — probe one target from every agent now, with a verdict.
//! * [`diagnose`], [`probecmd`], [`plan`]: `meshprobe diagnose`, `probe`, `plan`.
//! * [`promsource`], [`promclient`]: `diagnose --prometheus`.
//! * [`cli`]: the command line; each subcommand's arguments live with the subcommand.
//! * `fuzzing` (hidden): the fuzz targets' bodies, shared by `fuzz/` and `tests/fuzz_corpus.rs`.

pub mod agent;
pub mod api;
pub mod checks;
pub mod cli;
pub mod compress;
pub mod config;
pub mod diagnose;
pub mod discovery;
#[doc(hidden)]
pub mod fuzzing;
pub mod gather;
pub mod heatmap;
pub mod k8s;
pub mod mesh;
pub mod metrics;
pub mod ondemand;
pub mod plan;
pub mod pmtud;
pub mod probecmd;
pub mod promclient;
pub mod promsource;
pub mod shared;

// The library crates, under the names the binary's modules use.
pub use meshprobe_core::{error, model, mtu, net, owners, parse, peers, schedule};
pub use meshprobe_diagnosis as diagnosis;
pub use meshprobe_lab as lab;
pub use meshprobe_probe as probe;
pub use meshprobe_probe::caps;
pub use meshprobe_server::{serve, server};
pub use meshprobe_store::{store, window};
