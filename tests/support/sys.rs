//! The machine: the binary under test, root, tools, commands, network namespaces, scratch
//! directories, memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `meshprobe` binary Cargo built for the tests.
pub const EXE: &str = env!("CARGO_BIN_EXE_meshprobe");

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Root, or print "skipping: WHY" and say no.
pub fn root_or_skip(why: &str) -> bool {
    if !is_root() {
        eprintln!("skipping: {why}");
        return false;
    }
    true
}

/// `cmd` installed, or print that the test skips (Debian package `package`, which
/// tests/run.sh installs as root) and say no.
pub fn have_or_skip(cmd: &str, package: &str) -> bool {
    if !have(cmd) {
        eprintln!(
            "skipping: {cmd} not installed (Debian package {package}; tests/run.sh installs it as root)"
        );
        return false;
    }
    true
}

/// Run `args[0] args[1..]`; panic with its stderr unless it succeeds.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spawn `cmd` with no stdin, its stdout and stderr written to the (new) file `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

/// Network namespaces made by a test, deleted on drop.
pub struct Netns(pub Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// `$TMPDIR/meshprobe-NAME-PID`, made empty.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshprobe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A [`scratch_dir`] holding `peers.yaml` with `text`: (the directory, the file).
pub fn peers_file(name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = scratch_dir(name);
    let peers = dir.join("peers.yaml");
    std::fs::write(&peers, text).unwrap();
    (dir, peers)
}

/// VmRSS of process `pid` (a number, or "self"), KiB; 0 when it cannot be read.
pub fn rss_kib(pid: impl std::fmt::Display) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// VmRSS of this process, KiB.
pub fn self_rss_kib() -> u64 {
    let kib = rss_kib("self");
    assert!(kib > 0, "VmRSS in /proc/self/status");
    kib
}
