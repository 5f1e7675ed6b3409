//! Probers: one file per prober, all behind one signature ([`Prober::probe`]), in the manner of
//! blackbox_exporter. A prober is thin I/O: it performs one [`Check`] within a timeout and
//! names what happened; error naming itself is pure (see [`classify`]).

pub mod caps;
pub mod classify;
pub mod df;
pub mod errqueue;
pub mod http;
pub mod icmp;
pub mod icmp_errq;
pub mod pmtu;
pub mod pmtu6;
pub mod pmtu_dgram;
pub mod route;
pub mod sockopt;
pub mod tcp;
#[cfg(test)]
mod testnet;
pub mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use meshprobe_core::model::{Check, ErrorClass, ProbeResult};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The one signature every prober implements.
///
/// Contract: the returned future completes within `timeout` (plus scheduling noise) whatever
/// the network does, never panics, and returns a [`ProbeResult`] whose `error` names the
/// failure precisely. A prober handed a check it does not handle returns
/// `ErrorClass::LocalError`.
pub trait Prober: Send + Sync + 'static {
    fn probe<'a>(&'a self, check: &'a Check, timeout: Duration) -> BoxFuture<'a, ProbeResult>;
}

/// The set of probers an agent uses, dispatching each [`Check`] to the right one.
#[derive(Clone)]
pub struct Probers {
    pub icmp: Arc<dyn Prober>,
    pub tcp: Arc<dyn Prober>,
    pub http: Arc<dyn Prober>,
}

impl Probers {
    pub async fn run(&self, check: &Check, timeout: Duration) -> ProbeResult {
        let prober = match check {
            Check::Icmp { .. } => &self.icmp,
            Check::Tcp { .. } => &self.tcp,
            Check::Http { .. } => &self.http,
        };
        // Belt and braces: a prober that overruns its own deadline is cut off here.
        let grace = timeout + Duration::from_millis(250);
        match tokio::time::timeout(grace, prober.probe(check, timeout)).await {
            Ok(result) => result,
            Err(_) => ProbeResult::failed(1, ErrorClass::Timeout),
        }
    }
}
