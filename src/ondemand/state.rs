//! An agent's on-demand state: its fences, allowed ranges, runner and counter.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::limits::Limits;
use super::pods::Pods;
use super::run::Runner;
use super::services::Services;
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
    /// Resolves `pod/NAMESPACE/NAME` targets (cached, namespaces fenced); `None` without
    /// Kubernetes discovery (refused with 501).
    pub pods: Option<Pods>,
    /// Resolves `svc/NAMESPACE/NAME` targets (cached, namespaces fenced); `None` without
    /// Kubernetes discovery (refused with 501).
    pub services: Option<Services>,
}
