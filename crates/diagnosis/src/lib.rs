//! Diagnosis: from the probe matrix (plus optional Kubernetes facts) to the cause — what is
//! broken, where, how sure, the evidence and the command that confirms it. Pure: no I/O, no
//! clock reads; ages come in the data.
//!
//! ```no_run
//! use meshprobe_diagnosis::{diagnose, Matrix};
//! let docs: Vec<String> = vec![/* each agent's GET /api/v1/results body */];
//! let matrix = Matrix::from_json_documents(&docs).expect("valid documents");
//! let d = diagnose(&matrix);
//! println!("{d}");                                   // plain text
//! println!("{}", serde_json::to_string(&d).unwrap()); // the stable JSON schema
//! ```
//!
//! * [`input`]: lenient `Deserialize` structs for agents' documents, node metadata, Kubernetes facts.
//! * [`matrix`]: the indexed matrix of (source, destination, layer) cells.
//! * [`family`]: the engine per address family and the merge of the answers
//!   ([`diagnose_inputs`], the entry point for documents that may hold two families).
//! * [`checks`]: the per-source checks (`service`, `dns`) read after the network engine, on
//!   every family's findings.
//! * [`engine`]: the entry points ([`diagnose`], [`diagnose_with`], [`Params`]) and one module
//!   per stage: `clean` (cell states, onset rules), `mtu`, `network` (greedy network
//!   localisation) and `network_drafts` (its findings), `application` (policy/application),
//!   `loss`, `finish` (the report).
//! * [`report`]: [`Diagnosis`] / [`Finding`] / [`Cause`] and the text rendering.
//! * [`simulate`]: the scale simulator — a synthetic fleet planned by `meshprobe_core::plan`,
//!   with faults, diagnosed by this engine.
//! * `tests` (test builds only): table tests, one module per stage, with shared fixture
//!   builders; recorded onsets in `tests/fixtures/onset/`. Why each rule exists:
//!   `docs/design/diagnosis.md`.
//!
//! Depends only on `meshprobe-core` and serde: it reads result documents, never an agent's
//! internals, so it runs the same in an agent, in the CLI and on Prometheus data.

#![forbid(unsafe_code)]

pub mod checks;
pub mod engine;
pub mod family;
pub mod input;
pub mod matrix;
pub mod report;
pub mod simulate;

#[cfg(test)]
mod tests;

pub use engine::{cell_state, diagnose, diagnose_with, CellState, Params};
pub use family::diagnose_inputs;
pub use input::{
    AddressFacts, AgentReport, CheckErrorInfo, CheckStats, CniPodFacts, ErrorCountInfo, ErrorInfo,
    FamilyReport, Inputs, KubeFacts, LayerStats, MtuState, NodeFacts, NodeMeta, PeerReport,
    PodEvent, PodFacts, PolicyFacts, TargetPlace, TargetReport,
};
pub use matrix::{Cell, Matrix};
pub use report::{Cause, Diagnosis, Finding};
