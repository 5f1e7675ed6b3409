//! TEMPORARY stub.
use super::{BoxFuture, Prober};
use crate::model::{Check, ErrorClass, ProbeResult};
use std::time::Duration;
pub struct IcmpProber;
impl IcmpProber {
    pub fn new() -> crate::error::Result<Self> {
        Ok(IcmpProber)
    }
    pub fn socket_kind(&self) -> &'static str {
        "stub"
    }
}
impl Prober for IcmpProber {
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
