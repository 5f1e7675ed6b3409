//! An agent's on-demand state: its fences, allowed ranges, runner and counter.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::limits::Limits;
use super::run::Runner;
use super::wire::PodResolver;
use crate::net::Cidr;

/// `meshprobe_ondemand_requests_total{outcome}`.
pub type OutcomeCounter = Family<[(&'static str, &'static str); 1], Counter>;

/// The on-demand state of an agent.
pub struct OnDemand {
    pub limits: Limits,
    /// `--allow-cidr`: allowed besides the peer set's subnets.
    pub extra_allowed: Vec<Cidr>,
    pub runner: Runner,
    /// `meshprobe_ondemand_requests_total{outcome}`.
    pub requests: OutcomeCounter,
    /// Resolves `pod/NAMESPACE/NAME` targets; `None` in this build (refused with 501).
    pub pods: Option<Arc<dyn PodResolver>>,
}
