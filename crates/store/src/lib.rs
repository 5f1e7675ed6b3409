//! The agent's probe results over time. Pure state: no I/O, no tasks; every method takes the
//! time it runs at (a `tokio::time::Instant`, so tests and the agent can pause the clock).
//!
//! * [`window`]: sliding-window statistics per (destination, layer).
//! * [`store`]: the windows and path-MTU reports of the current peer set; snapshots for readers.
//!   The probe loop is its only writer.

#![forbid(unsafe_code)]

pub mod store;
pub mod window;
