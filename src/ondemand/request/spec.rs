//! What both halves of a request share: the checks a plan runs (and a body carries), and the
//! refusals either half can answer with.

use serde::{Deserialize, Serialize};

/// One check to run against the target from every source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckSpec {
    Icmp {
        count: u16,
        size: u16,
    },
    Tcp {
        port: u16,
    },
    Http {
        port: u16,
        path: String,
    },
    /// A Don't-Fragment path-MTU search toward the target.
    Mtu,
    /// One DNS query for a `dns/NAME` target's name, through `server` or, when `None`, the
    /// source agent's own resolver. The name travels in the target, not in the check.
    Dns {
        #[serde(skip)]
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<std::net::SocketAddr>,
    },
}

impl CheckSpec {
    pub fn name(&self) -> &'static str {
        match self {
            CheckSpec::Icmp { .. } => "icmp",
            CheckSpec::Tcp { .. } => "tcp",
            CheckSpec::Http { .. } => "http",
            CheckSpec::Mtu => "mtu",
            CheckSpec::Dns { .. } => "dns",
        }
    }
}

/// A request refused before anything was sent: HTTP status, a bounded code (also the
/// `outcome` label of `meshprobe_ondemand_requests_total`) and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    #[serde(skip)]
    pub status: u16,
    pub code: &'static str,
    pub error: String,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, error: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            error: error.into(),
        }
    }
    pub fn bad(error: impl Into<String>) -> Refusal {
        Refusal::new(400, "bad_request", error)
    }
}

/// Every `code` a refusal can carry (metric label values), plus `accepted`.
pub const OUTCOMES: &[&str] = &[
    "accepted",
    "bad_request",
    "too_large",
    "target_not_allowed",
    "unknown_node",
    "kubernetes_unavailable",
    "kubernetes_error",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "busy",
];
