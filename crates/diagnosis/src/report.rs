//! The engine's answer and its renderings: the stable JSON schema and plain text.
//!
//! ```json
//! {"healthy": false,
//!  "findings": [{"cause": "cni", "summary": "...", "nodes": ["node-3"], "pairs": [["node-1", "node-3"]],
//!                "zones": [], "targets": [], "confidence": 0.9,
//!                "evidence": ["..."], "next_steps": ["..."]}]}
//! ```
//! `cause` is one of `node_down`, `cni`, `routing`, `vpc`, `mtu`, `policy`, `application`,
//! `packet_loss`; `pairs` are directed `[source node, destination node or target]`;
//! `confidence` is in `0..=1`; `family` (`ipv4`, `ipv6`) is present only on a dual-stack
//! finding that touches one family. Fields are never removed; new ones may be added.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    NodeDown,
    Cni,
    Routing,
    Vpc,
    Mtu,
    Policy,
    Application,
    PacketLoss,
    Service,
    Dns,
    Conntrack,
    /// Nodes that cannot reach the API server at its endpoints while their pod network answers
    /// (or the API server failing at its endpoints from most nodes).
    Apiserver,
}

impl Cause {
    pub const ALL: [Cause; 12] = [
        Cause::NodeDown,
        Cause::Cni,
        Cause::Routing,
        Cause::Vpc,
        Cause::Mtu,
        Cause::Policy,
        Cause::Application,
        Cause::PacketLoss,
        Cause::Service,
        Cause::Dns,
        Cause::Conntrack,
        Cause::Apiserver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::NodeDown => "node_down",
            Cause::Cni => "cni",
            Cause::Routing => "routing",
            Cause::Vpc => "vpc",
            Cause::Mtu => "mtu",
            Cause::Policy => "policy",
            Cause::Application => "application",
            Cause::PacketLoss => "packet_loss",
            Cause::Service => "service",
            Cause::Dns => "dns",
            Cause::Conntrack => "conntrack",
            Cause::Apiserver => "apiserver",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One explained fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub cause: Cause,
    pub summary: String,
    pub nodes: Vec<String>,
    /// Directed `[source, destination]`: node names, or a target name as destination.
    pub pairs: Vec<[String; 2]>,
    pub zones: Vec<String>,
    pub targets: Vec<String>,
    pub confidence: f64,
    pub evidence: Vec<String>,
    pub next_steps: Vec<String>,
    /// The one address family the fault touches (`ipv4`, `ipv6`); absent when it touches
    /// every family probed, or only one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<meshprobe_core::model::Family>,
}

/// The engine's answer: `healthy` exactly when there are no findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub healthy: bool,
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    pub fn new(findings: Vec<Finding>) -> Diagnosis {
        Diagnosis {
            healthy: findings.is_empty(),
            findings,
        }
    }

    /// Plain text for humans (what `meshprobe diagnose` prints by default).
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

const MAX_TEXT_PAIRS: usize = 12;

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            return writeln!(f, "healthy: no findings");
        }
        let n = self.findings.len();
        writeln!(f, "{n} finding{}:", if n == 1 { "" } else { "s" })?;
        for (i, x) in self.findings.iter().enumerate() {
            writeln!(f)?;
            writeln!(
                f,
                "{}. [{}] {} (confidence {:.0}%)",
                i + 1,
                x.cause,
                x.summary,
                x.confidence * 100.0
            )?;
            if !x.nodes.is_empty() {
                writeln!(f, "   nodes:   {}", x.nodes.join(", "))?;
            }
            if !x.zones.is_empty() {
                writeln!(f, "   zones:   {}", x.zones.join(", "))?;
            }
            if !x.targets.is_empty() {
                writeln!(f, "   targets: {}", x.targets.join(", "))?;
            }
            if !x.pairs.is_empty() {
                let shown: Vec<String> = x
                    .pairs
                    .iter()
                    .take(MAX_TEXT_PAIRS)
                    .map(|[a, b]| format!("{a} -> {b}"))
                    .collect();
                let more = x.pairs.len().saturating_sub(MAX_TEXT_PAIRS);
                let tail = if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                };
                writeln!(f, "   pairs:   {}{tail}", shown.join(", "))?;
            }
            if !x.evidence.is_empty() {
                writeln!(f, "   evidence:")?;
                for e in &x.evidence {
                    writeln!(f, "     - {e}")?;
                }
            }
            if !x.next_steps.is_empty() {
                writeln!(f, "   next steps:")?;
                for (k, s) in x.next_steps.iter().enumerate() {
                    writeln!(f, "     {}. {s}", k + 1)?;
                }
            }
        }
        Ok(())
    }
}
