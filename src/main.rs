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

/// `pow` and `exp` for the whole process, from the `libm` crate (a port of musl's, < 1 ulp):
/// they are the only libm functions the binary calls (prometheus-client's buckets, Tokio's
/// scheduler, the store's loss figures), and defining them here lets the linker drop libm.so,
/// whose mapping cost the agent ~0.5 MiB resident (bench/README.md, "Footprint").
/// `tests/architecture.rs` checks that the binary needs no libm.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// See [`pow`].
#[no_mangle]
pub extern "C" fn exp(x: f64) -> f64 {
    libm::exp(x)
}

#[cfg(test)]
mod tests {
    /// The process-wide `pow` and `exp` agree with the exact (or correctly rounded) values to
    /// within 2 ulp.
    #[test]
    fn pow_and_exp_are_libm_accurate() {
        let close = |a: f64, b: f64| a == b || ((a - b) / b).abs() <= 2.0 * f64::EPSILON;
        for (x, y, want) in [
            (2.0, 10.0, 1024.0),
            (10.0, -3.0, 0.001),
            (0.5, 9.0, 0.001_953_125),
            (1.5, 0.5, 1.5_f64.sqrt()),
            (0.0, 0.0, 1.0),
        ] {
            assert!(
                close(super::pow(x, y), want),
                "pow({x}, {y}) = {}",
                super::pow(x, y)
            );
            assert!(close(f64::powf(x, y), want), "powf({x}, {y})");
        }
        for (x, want) in [
            (0.0, 1.0),
            (1.0, std::f64::consts::E),
            (-1.0, 1.0 / std::f64::consts::E),
            (std::f64::consts::LN_2 * 10.0, 1024.0),
        ] {
            assert!(close(super::exp(x), want), "exp({x}) = {}", super::exp(x));
        }
        assert!(super::pow(-1.0, 0.5).is_nan() && super::exp(f64::NEG_INFINITY) == 0.0);
    }
}
