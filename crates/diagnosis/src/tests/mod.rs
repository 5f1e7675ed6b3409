//! Table-driven tests on synthetic matrices: a 4-node, 2-zone mesh (node-1, node-2 in zone-a;
//! node-3, node-4 in zone-b), node IPs 198.18.z.(10+i), pod IPs 198.19.i.10, pod gateways
//! 198.19.i.1, one target `web-node-i` (198.19.i.11:8080, http) per node. Every agent's
//! document goes through JSON, as the CLI will feed it.
//!
//! Fixture builders live in [`helpers`], the faults as the lab shows them in [`scenarios`];
//! the tests are grouped by the engine stage they pin.

mod helpers;
mod scenarios;

mod application;
mod checks;
mod clean;
mod family;
mod finish;
mod input;
mod loss;
mod network;
mod onset;
mod scale;
mod signatures;
