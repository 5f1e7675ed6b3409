//! `lab fault KIND ARGS… [--family F]`: apply one fault and record it in the state.

use meshprobe_core::error::{Error, Result};

use crate::fault::{self, Scoped};
use crate::plan::IpFamily;
use crate::state::{self, State};
use crate::{command_line, run};

pub(crate) async fn inject(
    prefix: &str,
    kind: &str,
    args: &[String],
    family: Option<&str>,
) -> Result<u8> {
    State::require(prefix)?; // before locking: the lock file lives in the state dir
    let _lock = state::lock(prefix)?;
    let mut st = State::require(prefix)?;
    let topo = st.topology.clone();
    let f = Scoped::parse(&topo, kind, args, family).map_err(Error::Config)?;
    for words in &st.faults {
        if let Ok(active) = Scoped::from_words(&topo, words) {
            if active.overlaps(&f) {
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
    // A dual lab says which families the fault acts on; a single-family lab's line is as before.
    let families = match (topo.family, f.family) {
        (_, Some(one)) => format!("; {} only", one.as_str()),
        (IpFamily::Dual, None) => "; ipv4 and ipv6".to_string(),
        _ => String::new(),
    };
    outln!("fault injected: {f} ({what}{families})");
    outln!("undo it: {} clear", command_line(&st.exe, prefix));
    Ok(0)
}
