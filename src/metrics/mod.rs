//! Prometheus exposition. Hot-path counters are registered metrics with bounded labels
//! (`registry`); every per-destination figure is rendered at scrape time from the
//! [`Store`](crate::store::Store) by [`StoreCollector`] (`collector`, from what `rows` copies
//! out), so a departed peer's series vanish with its windows and nothing stale lingers.
//!
//! Metric names, types and labels are documented in docs/metrics.md; keep them in step.

mod collector;
mod registry;
mod rows;

pub use collector::{Identity, PlanStatus, StoreCollector};
pub use registry::Metrics;
pub use rows::{reporter, target_node};
