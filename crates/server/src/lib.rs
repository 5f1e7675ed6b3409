//! HTTP serving shared by the agent and `meshprobe serve`.
//!
//! * [`server`]: the bounded serve loop (connection limit, timeouts); it takes its listener and
//!   its shutdown future as arguments.
//! * [`serve`]: `meshprobe serve`, the lab's HTTP target (`/healthz`, `/bytes/{n}`, `/status/{code}`).

#![forbid(unsafe_code)]

pub mod serve;
pub mod server;
