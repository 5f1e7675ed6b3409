//! `meshprobe lab`: a multi-node cluster network built from network namespaces (issue 3).

use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct LabArgs {}

pub async fn run(_args: LabArgs) -> Result<u8> {
    Err(Error::Lab("not built yet".into()))
}
