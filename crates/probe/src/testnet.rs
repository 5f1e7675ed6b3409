//! Test fixtures for probers that need real network namespaces (tests only): namespaces that
//! are deleted on drop even when the test fails, `ip` helpers, and running async code on a
//! thread moved into a namespace (sockets keep the namespace they were created in).

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;

/// Namespaces created by a test, named `<prefix>-<pid>-<tag>`, deleted on drop.
pub struct TestNetns {
    prefix: &'static str,
    names: Vec<String>,
}

impl TestNetns {
    pub fn new(prefix: &'static str) -> Self {
        TestNetns {
            prefix,
            names: Vec::new(),
        }
    }

    /// Create a namespace. Registered before creation, so a half-built set is still removed.
    pub fn add(&mut self, tag: &str) -> String {
        let name = format!("{}-{}-{tag}", self.prefix, std::process::id());
        self.names.push(name.clone());
        sh(&["ip", "netns", "add", &name]);
        name
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", name])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Whether the tests run as root: then every privileged test must run, never skip.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Why namespace tests cannot run here (not root, or a tool missing), if they cannot.
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    for tool in tools {
        let ok = std::process::Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!("`{tool}` is missing"));
        }
    }
    None
}

/// Run a command; panic with its stderr if it fails.
pub fn sh(args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip -n NS <args>`, the arguments split on whitespace.
pub fn ipn(ns: &str, args: &str) {
    let mut argv = vec!["ip", "-n", ns];
    argv.extend(args.split_whitespace());
    sh(&argv);
}

/// A command run inside namespace `ns`, the arguments split on whitespace.
pub fn in_ns(ns: &str, args: &str) {
    let mut argv = vec!["ip", "netns", "exec", ns];
    argv.extend(args.split_whitespace());
    sh(&argv);
}

/// A shell script run in namespace `ns` (sysctls under /proc/sys/net are per namespace).
pub fn ns_sh(ns: &str, script: &str) {
    sh(&["ip", "netns", "exec", ns, "sh", "-c", script]);
}

/// Run `f` on a thread moved into namespace `ns`, in a current-thread runtime there: every
/// socket it opens lives in `ns`. `prepare` runs on that thread first (e.g. to drop a
/// capability from it alone).
pub fn in_netns<T, F, Fut>(ns: &str, prepare: impl FnOnce() + Send + 'static, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: a valid namespace fd; only this thread moves.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
        prepare();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("namespace thread panicked")
}

/// Clear CAP_NET_RAW from the calling thread's effective and permitted sets (capabilities
/// are per thread for the raw syscall; glibc is not involved, so other threads keep theirs).
pub fn drop_cap_net_raw() {
    let bit = 1u32 << crate::caps::CAP_NET_RAW;
    crate::caps::update(|effective, permitted| (effective & !bit, permitted & !bit))
        .expect("capset");
}
