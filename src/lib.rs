//! meshprobe: which pods cannot reach which, and why.
//!
//! # Layout
//!
//! * [`model`]: the shared vocabulary — layers, checks, probe results, classified errors.
//! * [`config`]: agent configuration from flags, environment ([`config::Env`]) and defaults.
//! * [`peers`]: the peers file schema, parsed and validated (pure).
//! * [`discovery`]: sources of peer-set updates (today: the peers file, polled).
//! * [`schedule`]: probe planning — spreading a round's probes over the interval (pure).
//! * [`plan`]: which peers each agent probes above `--full-mesh-max`, and the scale simulator (pure).
//! * [`window`]: sliding-window statistics per destination and layer (pure).
//! * [`probe`]: one prober per file behind one signature; failure classification (pure).
//! * [`mtu`]: path-MTU discovery per destination, a pure state machine (the Don't-Fragment
//!   prober it drives is [`probe::pmtu`]).
//! * [`pmtud`]: the agent's path-MTU scheduler: one task holding a [`mtu`] search per ICMP destination.
//! * [`store`]: the results store every reader (metrics, API, diagnosis) reads.
//! * [`metrics`]: Prometheus exposition, rendered from the store at scrape time.
//! * [`api`]: the agent's HTTP routes (`/metrics`, `/api/v1/results`, `/ping`, ...).
//! * [`compress`]: gzip for large answers when the client accepts it (pure).
//! * [`server`]: the bounded HTTP serve loop (listener and shutdown passed in).
//! * [`diagnosis`]: the diagnosis engine — probe matrix (+ Kubernetes facts) to causes (pure).
//! * [`agent`]: wires discovery → schedule → probers → store, and the server.
//! * [`caps`]: CAP_NET_RAW from the binary's file capability into the effective set at start-up.
//! * [`gather`]: fetching other agents' results (bounded), for the mesh view.
//! * [`mesh`]: the mesh view — own and gathered results as the diagnosis engine's input.
//! * [`heatmap`]: the agent page's source × destination matrices (SVG, pure).
//! * [`diagnose`]: `meshprobe diagnose`, the mesh diagnosis from the command line.
//! * [`promsource`], [`promclient`]: `diagnose --prometheus` — meshprobe's metrics as the engine's input.
//! * [`ondemand`]: `POST /api/v1/probe` — probe one target from every agent now, with a verdict.
//! * [`probecmd`]: `meshprobe probe`, the on-demand probe from the command line.
//! * [`serve`]: `meshprobe serve`, a small HTTP target.
//! * [`lab`]: `meshprobe lab`, a namespace-built cluster network with fault injection.
//! * `fuzzing` (hidden): the fuzz targets' bodies, shared by `fuzz/` and `tests/fuzz_corpus.rs`.

pub mod agent;
pub mod api;
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
pub use meshprobe_core::{error, model, mtu, net, parse, peers, schedule};
pub use meshprobe_diagnosis as diagnosis;
pub use meshprobe_lab as lab;
pub use meshprobe_probe as probe;
pub use meshprobe_probe::caps;
pub use meshprobe_server::{serve, server};
pub use meshprobe_store::{store, window};
