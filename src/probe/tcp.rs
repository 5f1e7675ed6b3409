//! TEMPORARY stub.
use super::{BoxFuture, Prober};
use crate::model::{Check, ErrorClass, ProbeResult};
use std::time::Duration;
pub struct TcpProber;
impl Prober for TcpProber {
    fn probe<'a>(&'a self, _c: &'a Check, _t: Duration) -> BoxFuture<'a, ProbeResult> {
        Box::pin(async {
            ProbeResult::failed(
                1,
                ErrorClass::LocalError {
                    detail: "stub".into(),
                },
            )
        })
    }
}
