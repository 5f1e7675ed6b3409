//! The thin edge that executes [`Cmd`]s: each with a timeout, stderr captured into an error that
//! names the command.

use std::process::Stdio;
use std::time::Duration;

use super::plan::Cmd;
use meshprobe_core::error::{Error, Result};

pub const CMD_TIMEOUT: Duration = Duration::from_secs(15);

/// Run one command; returns its stdout. A failure names the command, its status and stderr,
/// unless the command is marked `tolerate_failure` (then the failure is logged at debug).
pub async fn run(cmd: &Cmd) -> Result<String> {
    tracing::debug!(%cmd, "lab: run");
    let child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Lab(format!("`{cmd}`: cannot start {}: {e}", cmd.program)))?;
    let out = match tokio::time::timeout(CMD_TIMEOUT, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| Error::Lab(format!("`{cmd}`: {e}")))?,
        Err(_) => {
            return Err(Error::Lab(format!(
                "`{cmd}` did not finish within {}s",
                CMD_TIMEOUT.as_secs()
            )))
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if cmd.tolerate_failure {
            tracing::debug!(%cmd, %stderr, "lab: best-effort command failed");
        } else {
            return Err(Error::Lab(format!(
                "`{cmd}` failed ({}): {}",
                out.status,
                if stderr.is_empty() {
                    "no output"
                } else {
                    &stderr
                }
            )));
        }
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run commands one after the other, stopping at the first failure.
pub async fn run_all(cmds: &[Cmd]) -> Result<()> {
    for c in cmds {
        run(c).await?;
    }
    Ok(())
}

/// Names of every network namespace (`ip netns list`).
pub async fn list_namespaces() -> Result<Vec<String>> {
    let out = run(&Cmd::new("ip", &["netns", "list"])).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// PIDs of the processes running in a namespace (`ip netns pids NS`).
pub async fn namespace_pids(ns: &str) -> Vec<u32> {
    match run(&Cmd::new("ip", &["netns", "pids", ns]).tolerant()).await {
        Ok(out) => out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_names_the_command_and_its_stderr() {
        let cmd = Cmd::new("sh", &["-c", "echo out; echo boom >&2; exit 3"]);
        let err = run(&cmd).await.unwrap_err().to_string();
        assert!(
            err.contains("`sh -c 'echo out; echo boom >&2; exit 3'` failed"),
            "{err}"
        );
        assert!(
            err.contains("exit status: 3") && err.contains("boom"),
            "{err}"
        );
        assert_eq!(run(&cmd.tolerant()).await.unwrap(), "out\n");
        let missing = Cmd::new("/nonexistent/meshprobe-lab-tool", &[]);
        assert!(run(&missing)
            .await
            .unwrap_err()
            .to_string()
            .contains("cannot start"));
    }
}
