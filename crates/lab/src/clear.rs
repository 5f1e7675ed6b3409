//! `lab clear [KIND ARGS… [--family F]]`: undo every active fault, or those named, and flush
//! cached path MTUs in every namespace.

use meshprobe_core::error::{Error, Result};

use crate::fault::Scoped;
use crate::run;
use crate::state::{self, State};

pub(crate) async fn clear(
    prefix: &str,
    kind: Option<&str>,
    args: &[String],
    family: Option<&str>,
) -> Result<u8> {
    if kind.is_none() && family.is_some() {
        return Err(Error::Config(
            "--family on `clear` needs the fault it names: `clear KIND ARGS… --family F` \
             (`clear` alone undoes every fault)"
                .into(),
        ));
    }
    State::require(prefix)?;
    let _lock = state::lock(prefix)?;
    let mut st = State::require(prefix)?;
    let topo = st.topology.clone();
    let active: Vec<Scoped> = st
        .faults
        .iter()
        .filter_map(|w| Scoped::from_words(&topo, w).ok())
        .collect();
    let chosen: Vec<Scoped> = match kind {
        None => active.iter().rev().cloned().collect(),
        Some(kind) => {
            let f = Scoped::parse(&topo, kind, args, family).map_err(Error::Config)?;
            let named: Vec<Scoped> = active.iter().filter(|a| f.names(a)).cloned().collect();
            if named.is_empty() {
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
                )));
            }
            named
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
