//! `meshprobe serve`: a small HTTP target (being built).

use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub async fn run(_args: ServeArgs) -> Result<u8> {
    Err(Error::Config("not built yet".into()))
}
