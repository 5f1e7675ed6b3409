//! meshprobe's pure core: the vocabulary and the data structures every other crate shares.
//! No sockets, no HTTP, no Kubernetes client, no async runtime, no clock reads: time comes in
//! as arguments.
//!
//! * [`model`]: layers, checks, probe results, classified errors.
//! * [`net`]: IP prefixes.
//! * [`owners`]: which node an address belongs to, from facts only.
//! * [`parse`]: names, durations and request paths as users write them.
//! * [`peers`]: the peers file schema, parsed and validated.
//! * [`schedule`]: tasks from a peer set; spreading a round's probes over the interval.
//! * [`plan`]: which peers each agent probes above `--full-mesh-max`.
//! * [`mtu`]: the path-MTU search per destination, and the on-demand search, as state machines.
//! * [`error`]: the one error type, with a metric label and an exit code.

#![forbid(unsafe_code)]

pub mod error;
pub mod model;
pub mod mtu;
pub mod net;
pub mod owners;
pub mod parse;
pub mod peers;
pub mod plan;
pub mod schedule;
