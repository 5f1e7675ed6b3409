//! The programs the lab runs, checked before anything is built: `lab up` finds each on PATH
//! and, as root on a Debian/Ubuntu machine, installs the missing packages with apt-get; a fault
//! command therefore never fails for a missing tool once `up` has succeeded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use meshprobe_core::error::{Error, Result};

/// Every program a lab command execs (directly or through `ip netns exec`), with the Debian
/// package that ships it. `plan` and `fault` tests check that no command uses anything else.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("sysctl", "procps"),
    ("nft", "nftables"),
];

/// An apt-get install gets this long (a cold package index on a slow mirror takes a minute).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The program a lab command finally runs: `ip netns exec NS PROG …` runs PROG.
pub fn program_of<'a>(program: &'a str, args: &'a [String]) -> &'a str {
    match (program, args) {
        ("ip", [netns, exec, _ns, prog, ..]) if netns == "netns" && exec == "exec" => prog,
        _ => program,
    }
}

/// The packages for the tools not found in `path` (a PATH value), in [`TOOLS`] order.
pub fn missing_packages(path: &str) -> Vec<&'static str> {
    TOOLS
        .iter()
        .filter(|(tool, _)| find(tool, path).is_none())
        .map(|&(_, pkg)| pkg)
        .collect()
}

/// `tool`'s executable file in the first PATH entry that has one.
pub fn find(tool: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Make sure every tool is on PATH: install what is missing when `install` allows it and
/// apt-get exists; otherwise a configuration error naming the packages (exit 2).
pub async fn ensure(install: bool) -> Result<()> {
    let path = std::env::var("PATH").unwrap_or_default();
    let missing = missing_packages(&path);
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    let apt = find("apt-get", &path);
    let Some(apt) = apt.filter(|_| install) else {
        return Err(Error::Config(format!(
            "the lab needs {list} (not found on PATH); install with `apt-get install {list}` \
             (or drop --no-install to let `lab up` do it on Debian/Ubuntu)"
        )));
    };
    errln!(
        "meshprobe lab: installing {list} (needed by the lab and its fault commands) with {}…",
        apt.display()
    );
    apt_get(&apt, &["update", "-qq"]).await?;
    let mut install_args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install_args.extend(missing.iter().copied());
    apt_get(&apt, &install_args).await?;
    let still = missing_packages(&path);
    if !still.is_empty() {
        return Err(Error::Config(format!(
            "installed {list} but {} still not found on PATH {path:?}",
            still.join(" ")
        )));
    }
    Ok(())
}

async fn apt_get(apt: &Path, args: &[&str]) -> Result<()> {
    let shown = format!("{} {}", apt.display(), args.join(" "));
    let child = tokio::process::Command::new(apt)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Lab(format!("`{shown}`: cannot start: {e}")))?;
    let out = tokio::time::timeout(INSTALL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            Error::Lab(format!(
                "`{shown}` did not finish within {}s",
                INSTALL_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Error::Lab(format!("`{shown}`: {e}")))?;
    if !out.status.success() {
        return Err(Error::Lab(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_of_sees_through_ip_netns_exec() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let exec = s(&["netns", "exec", "mp-n1", "nft", "list", "ruleset"]);
        assert_eq!(program_of("ip", &exec), "nft");
        assert_eq!(program_of("ip", &s(&["netns", "add", "mp-n1"])), "ip");
        assert_eq!(program_of("ip", &s(&["netns", "exec", "mp-n1"])), "ip");
        assert_eq!(program_of("sh", &s(&["-c", "true"])), "sh");
    }

    #[test]
    fn missing_packages_follow_path() {
        let dir = std::env::temp_dir().join(format!("mp-tools-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.display().to_string();
        assert_eq!(
            missing_packages(&path),
            vec!["iproute2", "procps", "nftables"]
        );
        use std::os::unix::fs::PermissionsExt;
        for tool in ["ip", "nft"] {
            let p = dir.join(tool);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Not executable: not found.
        std::fs::write(dir.join("sysctl"), "").unwrap();
        assert_eq!(missing_packages(&path), vec!["procps"]);
        assert_eq!(find("nft", &path), Some(dir.join("nft")));
        assert_eq!(find("nft", ""), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_lab_command_runs_a_listed_tool() {
        use crate::fault::{Fault, KINDS};
        use crate::plan::{cmds::down_cmds, Topology};
        let topo = Topology::new("mp", 4, 2).unwrap();
        let mut cmds = topo.up_cmds();
        cmds.extend(topo.flush_cache_cmds());
        cmds.extend(down_cmds(
            "mp",
            &["mp-n1".to_string(), "mp-router".to_string()],
        ));
        let samples = [
            "route node-1 node-3",
            "mtu node-2",
            "pmtu-blackhole node-2 1400",
            "policy node-2",
            "reject web-node-2",
            "loss node-1 30",
            "node-down node-4",
            "cni node-3",
            "partition zone-a zone-b",
            "kube-proxy node-2 stale",
            "dns-down",
            "dns-from node-1",
            "conntrack node-3",
            "apiserver-from node-2",
        ];
        for (kind, _, _) in KINDS {
            let line = samples
                .iter()
                .find(|l| l.split(' ').next() == Some(kind))
                .unwrap_or_else(|| panic!("no sample for fault kind {kind}"));
            let words: Vec<String> = line.split(' ').map(str::to_string).collect();
            let f = Fault::parse(&topo, &words[0], &words[1..]).unwrap();
            cmds.extend(f.apply_cmds(&topo));
            cmds.extend(f.clear_cmds(&topo));
        }
        for c in &cmds {
            let prog = program_of(&c.program, &c.args);
            assert!(
                TOOLS.iter().any(|(t, _)| *t == prog),
                "`{c}` runs {prog}, which TOOLS does not list"
            );
        }
        // And every listed tool is used (a stale entry would install a package for nothing).
        for (t, _) in TOOLS {
            assert!(
                cmds.iter().any(|c| program_of(&c.program, &c.args) == *t),
                "{t} is listed but no command runs it"
            );
        }
    }
}
