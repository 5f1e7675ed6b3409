//! The lab's state directory (`/run/meshprobe-lab/<prefix>/`): `state.json` (topology, processes,
//! proxies, active faults), the agents' peers file and every process's log. It lets `fault`,
//! `clear`, `status` and `down` work from another terminal, and `down` clean up after a crash.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Topology;
use meshprobe_core::error::{Error, Result};

pub const STATE_ROOT: &str = "/run/meshprobe-lab";

pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(prefix)
}

/// A process the lab started, identified by PID and start time (so a recycled PID is never killed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// `agent`, `web` or `lab`.
    pub role: String,
    pub node: String,
    pub ns: String,
    pub pid: u32,
    pub start_time: Option<u64>,
    pub log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    pub node: String,
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub topology: Topology,
    /// `building`, `running` or `stopping`.
    pub phase: String,
    pub exe: PathBuf,
    pub interval: String,
    pub timeout: String,
    pub window: String,
    pub started_unix: u64,
    /// The `lab up` process itself.
    pub lab: Option<Proc>,
    pub processes: Vec<Proc>,
    pub proxies: Vec<Proxy>,
    /// Active faults, as canonical `KIND ARGS…` words, in the order applied.
    pub faults: Vec<Vec<String>>,
}

impl State {
    pub fn path(prefix: &str) -> PathBuf {
        state_dir(prefix).join("state.json")
    }

    pub fn load(prefix: &str) -> Result<Option<State>> {
        let path = Self::path(prefix);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Lab(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Lab(format!("{}: {e}", path.display()))),
        }
    }

    /// Load the state of a lab that must exist.
    pub fn require(prefix: &str) -> Result<State> {
        Self::load(prefix)?.ok_or_else(|| {
            Error::Lab(format!(
                "no lab with prefix {prefix:?} is running (no {}); start one with `meshprobe lab`",
                Self::path(prefix).display()
            ))
        })
    }

    /// Write atomically (temp file + rename), so a reader never sees half a file.
    pub fn save(&self) -> Result<()> {
        let dir = state_dir(&self.topology.prefix);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Lab(format!("serialize state: {e}")))?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, dir.join("state.json"))?;
        Ok(())
    }
}

/// An exclusive lock on the lab's state (`flock` on `<dir>/lock`), held until dropped:
/// serializes concurrent `fault` / `clear` invocations.
pub struct StateLock {
    _file: File,
}

pub fn lock(prefix: &str) -> Result<StateLock> {
    let dir = state_dir(prefix);
    std::fs::create_dir_all(&dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a valid fd; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::Lab(format!(
            "lock {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(StateLock { _file: file })
}

/// The start time of a process (field 22 of `/proc/PID/stat`, in clock ticks since boot).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the recorded process is still alive (same PID and start time, not a zombie).
pub fn is_alive(p: &Proc) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)) else {
        return false;
    };
    let zombie = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        == Some("Z");
    !zombie && (p.start_time.is_none() || process_start_time(p.pid) == p.start_time)
}

pub fn signal(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill(2) with a specific positive PID.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let t = process_start_time(me);
        assert!(t.is_some());
        assert_eq!(t, process_start_time(me));
        let p = Proc {
            role: "lab".into(),
            node: String::new(),
            ns: String::new(),
            pid: me,
            start_time: t,
            log: None,
        };
        assert!(is_alive(&p));
        assert!(!is_alive(&Proc {
            start_time: t.map(|t| t + 1),
            ..p
        }));
    }
}
