use std::process::ExitCode;

use clap::Parser;
use meshprobe::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = cli.log_format == LogFormat::Json;
    init_logging(cli.log_format, &cli.log_level);
    // CAP_NET_RAW from the binary's file capability ("+p") into the effective set, before any
    // thread exists so every thread has it (see caps.rs); without it: datagram sockets.
    match meshprobe::caps::raise_net_raw() {
        Ok(raw) => tracing::debug!(cap_net_raw = raw, "capabilities"),
        Err(e) => tracing::debug!(error = %e, "capabilities not read"),
    }
    // The agent and the target server are I/O-bound: one thread does the work with no
    // cross-thread wake-ups (measured: markedly less CPU per probe than two workers). The lab
    // supervises many processes and proxies and gets two.
    let builder = match cli.command {
        Command::Lab(_) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match { builder }.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshprobe: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Agent(args) => meshprobe::agent::run_from_args(*args).await,
            Command::Serve(args) => meshprobe::serve::run(args).await,
            Command::Diagnose(args) => meshprobe::diagnose::run(args).await,
            Command::Lab(args) => meshprobe::lab::run(args).await,
            Command::Plan(args) => meshprobe::plan::cmd::run(args).await,
            Command::Probe(args) => meshprobe::probecmd::run(args).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if json_logs {
                tracing::error!(kind = e.metric_label(), "{e}");
            } else {
                // A closed stderr must not turn an error's exit code into a panic's.
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "meshprobe: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    // hickory-server (the lab's DNS pod) logs every query at info: with the agents' dns check
    // that is two lines per agent per interval in `lab up`'s output. Quiet unless asked for.
    let filter = if filter.contains("hickory") {
        filter.to_string()
    } else {
        format!("{filter},hickory_server=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
