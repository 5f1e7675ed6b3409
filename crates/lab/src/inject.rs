//! `lab fault KIND ARGS…`: apply one fault and record it in the state.

use meshprobe_core::error::{Error, Result};

use crate::fault::{self, Fault};
use crate::state::{self, State};
use crate::{command_line, run};

pub(crate) async fn inject(prefix: &str, kind: &str, args: &[String]) -> Result<u8> {
    State::require(prefix)?; // before locking: the lock file lives in the state dir
    let _lock = state::lock(prefix)?;
    let mut st = State::require(prefix)?;
    let topo = st.topology.clone();
    let f = Fault::parse(&topo, kind, args).map_err(Error::Config)?;
    for words in &st.faults {
        if let Ok(active) = Fault::parse(&topo, &words[0], &words[1..]) {
            if active.slot() == f.slot() {
                return Err(Error::Config(format!(
                    "{active} is already active; `{} clear {active}` first",
                    command_line(&st.exe, prefix)
                )));
            }
        }
    }
    if let Err(e) = run::run_all(&f.apply_cmds(&topo)).await {
        for c in f.clear_cmds(&topo) {
            let _ = run::run(&c.tolerant()).await;
        }
        return Err(e);
    }
    st.faults.push(f.words());
    st.save()?;
    let what = fault::KINDS
        .iter()
        .find(|k| k.0 == kind)
        .map(|k| k.2)
        .unwrap_or("");
    outln!("fault injected: {f} ({what})");
    outln!("undo it: {} clear", command_line(&st.exe, prefix));
    Ok(0)
}
