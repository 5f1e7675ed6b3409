//! The one error type of the crate. Each variant has a bounded `metric_label` (for
//! `meshprobe_errors_total{kind}`) and an exit code: configuration errors exit with status 2.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or environment variable is missing or invalid.
    #[error("configuration: {0}")]
    Config(String),

    /// The peers file could not be read or is invalid; the message names the file and the
    /// line or field.
    #[error("peers file {path}: {message}")]
    PeersFile { path: PathBuf, message: String },

    /// A socket the agent needs could not be opened (ICMP permissions, listen address in use).
    #[error("{0}")]
    Socket(String),

    /// The process lacks a privilege it needs (root for the lab, CAP_NET_RAW or the ping
    /// sysctl for ICMP).
    #[error("{0}")]
    Privilege(String),

    /// A lab operation failed (a command exited non-zero, a namespace is missing).
    #[error("lab: {0}")]
    Lab(String),

    /// A command that asks agents got no usable answer from any of them.
    #[error("{0}")]
    NoAnswer(String),

    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::PeersFile { .. } => "peers_file",
            Error::Socket(_) => "socket",
            Error::Privilege(_) => "privilege",
            Error::Lab(_) => "lab",
            Error::NoAnswer(_) => "no_answer",
            Error::Io(_) => "io",
        }
    }

    /// The process exit status this error maps to: 2 for anything the user must fix in their
    /// invocation or files (bad config, missing privilege) and for "nobody answered" (a
    /// question that could not be asked), 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::PeersFile { .. }
            | Error::Privilege(_)
            | Error::NoAnswer(_) => 2,
            Error::Socket(_) | Error::Lab(_) | Error::Io(_) => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
