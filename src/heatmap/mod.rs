//! The agent page (`GET /`) and `GET /heatmap.svg`: source × destination matrices per layer
//! (ICMP to pod IPs, ICMP to node IPs, HTTP, path MTU), rendered server-side from the result
//! documents of the mesh view, grouped by zone, coloured by loss, with the figures in each cell's
//! SVG `<title>` (hover). Pure: data in, text out; no I/O, no clock.
//!
//! Three steps, each tested on its own: [`matrix()`] (reports → cells with a state, in
//! `matrix.rs`), [`layout()`] (names → positions; labels never overlap, at 5 nodes or 200, in
//! `layout.rs`), [`svg()`] / [`page()`] (text, in `svg.rs` and `page.rs`).
//! Every cell carries `data-dst` and `data-state` (`ok`, `lossy`, `down`, `unknown`, `nodata`,
//! `self`, `mismatch`, `blackhole`) inside a row `<g data-src=…>`, for tests and scripts; cells of
//! pairs named in a finding have class `finding`.

mod layout;
mod matrix;
mod page;
mod svg;

pub use layout::{char_w, fit, layout, Label, Layout, Rect, MAX_LABEL_CHARS, ZONE_GAP};
pub use matrix::{describe, loss_colour, matrix, Cell, Head, Input, Matrix, State, View, LEGEND};
pub use page::{page, Header, ALL_LAYERS_UP_TO};
pub use svg::{escape, svg};

#[cfg(test)]
mod tests;
