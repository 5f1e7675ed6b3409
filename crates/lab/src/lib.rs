//! `meshprobe lab`: a multi-node cluster network built from network namespaces.
//!
//! * [`plan`]: the topology, address plan and the commands that build and remove it (pure).
//! * [`fault`]: fault parsing and the commands that apply and undo each fault (pure).
//! * [`mod@run`]: the thin runner executing commands (timeouts, errors naming the command).
//! * [`state`]: the state directory shared by `up`, `fault`, `clear`, `status` and `down`.
//! * [`netns`]: sockets inside the lab's namespaces, for the live view's proxies and `status`.
//! * [`summary`]: a short reachability summary of an agent's `/api/v1/results` (pure).
//! * [`dns`]: the cluster DNS pod's server (hickory-server, in the `lab up` process) and a
//!   one-query client.
//!
//! The subcommands, one module each: `up` (with `start`: the network and the pods' processes;
//! `proxy`: the live view), `inject` (`lab fault`), `clear`, `status` and `down`. `args` holds
//! the command line; [`run()`] dispatches it.

/// `println!` that survives a closed stdout: the lab must still tear down when its output
/// went to a pipe whose reader is gone (`lab | tee log`, then Ctrl-C).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that survives a closed stderr (see [`outln!`]).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod apiserver;
pub mod dns;
pub mod fault;
pub mod netns;
pub mod plan;
pub mod run;
pub mod state;
pub mod summary;
pub mod tools;

mod args;
mod clear;
mod down;
mod inject;
mod proxy;
mod start;
mod status;
mod up;

use meshprobe_core::error::{Error, Result};

pub use args::{LabArgs, LabCommand, UpArgs};

/// `meshprobe lab`: check the prefix and root, then run the subcommand (none: `up`).
pub async fn run(args: LabArgs) -> Result<u8> {
    plan::validate_prefix(&args.prefix).map_err(Error::Config)?;
    if !state::is_root() {
        return Err(Error::Privilege(
            "meshprobe lab needs root (it creates network namespaces, links and nftables rules); \
             run it with sudo"
                .into(),
        ));
    }
    let prefix = args.prefix.clone();
    match args.command {
        None => up::up(&prefix, *args.up).await,
        Some(LabCommand::Up(up_args)) => up::up(&prefix, *up_args).await,
        Some(LabCommand::Fault { kind: None, .. }) => {
            outln!("Fault kinds (meshprobe lab fault KIND ARGS…):");
            for (k, a, what) in fault::KINDS {
                outln!("  {:<34} {what}", format!("{k} {a}"));
            }
            outln!(
                "In a dual-stack lab, `--family ipv4|ipv6` confines a fault to one family: {}.",
                fault::FAMILY_KINDS
            );
            Ok(0)
        }
        Some(LabCommand::Fault {
            kind: Some(kind),
            mut args,
            family,
            stale,
        }) => {
            if stale {
                if kind != "kube-proxy" {
                    return Err(Error::Config(format!(
                        "--stale on `fault {kind}`: only `kube-proxy NODE --stale` takes it"
                    )));
                }
                args.push("stale".into());
            }
            inject::inject(&prefix, &kind, &args, family.as_deref()).await
        }
        Some(LabCommand::Clear { kind, args, family }) => {
            clear::clear(&prefix, kind.as_deref(), &args, family.as_deref()).await
        }
        Some(LabCommand::Status { json }) => status::status(&prefix, json).await,
        Some(LabCommand::Down) => down::down(&prefix).await,
    }
}

/// `meshprobe` as the user should type it for this lab (exe path plus `--prefix` if not default).
fn command_line(exe: &std::path::Path, prefix: &str) -> String {
    let p = if prefix == "mp" {
        String::new()
    } else {
        format!(" --prefix {prefix}")
    };
    format!("{} lab{p}", exe.display())
}
