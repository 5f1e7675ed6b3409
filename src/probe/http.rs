//! TEMPORARY stub.
use super::{BoxFuture, Prober};
use crate::model::{Check, ErrorClass, ProbeResult};
use std::time::Duration;
#[derive(Default)]
pub struct HttpProber;
impl HttpProber {
    pub fn new() -> Self {
        HttpProber
    }
}
impl Prober for HttpProber {
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
