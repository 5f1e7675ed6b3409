//! `lab clear [KIND ARGS…]`: undo every active fault, or the one named, and flush cached path
//! MTUs in every namespace.

use meshprobe_core::error::{Error, Result};

use crate::fault::Fault;
use crate::run;
use crate::state::{self, State};

pub(crate) async fn clear(prefix: &str, kind: Option<&str>, args: &[String]) -> Result<u8> {
    State::require(prefix)?;
    let _lock = state::lock(prefix)?;
    let mut st = State::require(prefix)?;
    let topo = st.topology.clone();
    let active: Vec<Fault> = st
        .faults
        .iter()
        .filter_map(|w| Fault::parse(&topo, &w[0], &w[1..]).ok())
        .collect();
    let chosen: Vec<Fault> = match kind {
        None => active.iter().rev().cloned().collect(),
        Some(kind) => {
            let f = Fault::parse(&topo, kind, args).map_err(Error::Config)?;
            match active.iter().find(|a| a.slot() == f.slot()) {
                Some(a) => vec![a.clone()],
                None => {
                    return Err(Error::Config(format!(
                        "{f} is not active (active: {})",
                        if active.is_empty() {
                            "none".to_string()
                        } else {
                            active
                                .iter()
                                .map(|a| a.to_string())
                                .collect::<Vec<_>>()
                                .join("; ")
                        }
                    )))
                }
            }
        }
    };
    let mut errors = Vec::new();
    for f in &chosen {
        match run::run_all(&f.clear_cmds(&topo)).await {
            Ok(()) => {
                outln!("cleared: {f}");
                st.faults.retain(|w| *w != f.words());
            }
            Err(e) => errors.push(format!("{f}: {e}")),
        }
    }
    for c in topo.flush_cache_cmds() {
        run::run(&c).await?;
    }
    st.save()?;
    if chosen.is_empty() {
        outln!("no active faults; flushed cached path MTUs");
    } else {
        outln!("flushed cached path MTUs in every namespace");
    }
    if errors.is_empty() {
        Ok(0)
    } else {
        Err(Error::Lab(format!(
            "could not clear: {}",
            errors.join("; ")
        )))
    }
}
