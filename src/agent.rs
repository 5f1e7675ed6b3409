//! The agent (being built).
use crate::cli::AgentArgs;
use crate::error::Result;

pub async fn run_from_args(args: AgentArgs) -> Result<u8> {
    let config = crate::config::AgentConfig::resolve(&args, &crate::config::ProcessEnv)?;
    tracing::info!(?config, "agent not built yet");
    Ok(0)
}
