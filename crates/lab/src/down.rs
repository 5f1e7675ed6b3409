//! `lab down`: stop a running `lab up` and remove everything the lab made; `up` uses the same
//! removal when it stops or its build fails.

use std::time::{Duration, Instant};

use meshprobe_core::error::{Error, Result};

use crate::plan::{self, Topology};
use crate::run;
use crate::state::{self, State};

pub(crate) async fn down(prefix: &str) -> Result<u8> {
    let st = State::load(prefix)?;
    let me = std::process::id();
    let before = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .count();
    // A running `lab up` tears down on SIGTERM; give it a moment, then make sure.
    if let Some(lab) = st.as_ref().and_then(|s| s.lab.clone()) {
        if lab.pid != me && state::is_alive(&lab) {
            state::signal(lab.pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while state::is_alive(&lab) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if state::is_alive(&lab) {
                state::signal(lab.pid, libc::SIGKILL);
            }
        }
    }
    let removed = remove_everything(prefix, st.as_ref(), Some(me)).await?;
    if before == 0 && removed.processes == 0 && st.is_none() {
        outln!("nothing to remove for prefix {prefix:?}");
    } else {
        outln!(
            "lab {prefix:?} removed: {before} namespaces, {} stray processes, state {}",
            removed.processes,
            state::state_dir(prefix).display()
        );
    }
    Ok(0)
}

/// What `remove_everything` removed beyond the namespaces and the state directory.
pub(crate) struct Removed {
    pub(crate) processes: usize,
}

/// Kill every process the lab started (recorded PIDs still alive, and whatever runs in its
/// namespaces), delete its namespaces (with every link, route and nftables table in them) and
/// its state directory. Works from the state, and without it from the namespace prefix.
pub(crate) async fn remove_everything(
    prefix: &str,
    st: Option<&State>,
    skip: Option<u32>,
) -> Result<Removed> {
    if let Some(st) = st {
        let mut s = st.clone();
        s.phase = "stopping".into();
        let _ = s.save();
    }
    let namespaces: Vec<String> = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .collect();
    let mut pids: Vec<u32> = st
        .map(|s| {
            s.processes
                .iter()
                .filter(|p| state::is_alive(p))
                .map(|p| p.pid)
                .collect()
        })
        .unwrap_or_default();
    for ns in &namespaces {
        pids.extend(run::namespace_pids(ns).await);
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|p| Some(*p) != skip && *p > 1);
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    for &p in &pids {
        state::signal(p, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        state::signal(p, libc::SIGKILL);
    }
    run::run_all(&plan::cmds::down_cmds(prefix, &namespaces)).await?;
    let left: Vec<String> = run::list_namespaces()
        .await?
        .into_iter()
        .filter(|ns| Topology::owns_namespace(prefix, ns))
        .collect();
    let dir = state::state_dir(prefix);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    if !left.is_empty() {
        return Err(Error::Lab(format!(
            "namespaces still present after `ip netns del`: {}",
            left.join(", ")
        )));
    }
    Ok(Removed {
        processes: pids.len(),
    })
}
