//! On-demand probes: "is this target reachable from every node — and if not, why?"
//!
//! `POST /api/v1/probe` on any agent: the request is validated ([`request`], pure; addresses
//! through core's `net::fence`) and fenced ([`limits`]: per-client rate and one request in
//! flight, token, per-agent budgets, slots; [`pods`], [`services`]: pod and Service lookups,
//! their allow-list and cache in [`lookups`]);
//! the agent fans it out to the
//! chosen source agents, itself included ([`fanout`]), each runs the checks now with the agent's
//! own probers ([`run`]), and the answer streams back as NDJSON — an `accepted` line, one
//! `source` line per node as it arrives, then a `verdict` line: the diagnosis engine fed with
//! these results ([`verdict`], pure). A refused request sends no packet.
//!
//! Wire format: [`Line`]. Forwarded requests carry [`FORWARDED_HEADER`] and run on the receiving
//! agent only (no recursion); their answer is one `source` line.

pub mod client;
pub mod fanout;
pub mod limits;
pub mod lookups;
pub mod pods;
pub mod request;
pub mod run;
pub mod services;
pub mod state;
pub mod verdict;
pub mod wire;

pub use request::{CheckSpec, Plan, Refusal, Resolved, ResolvedPod, ResolvedService};
pub use state::{OnDemand, OutcomeCounter};
pub use wire::*;
