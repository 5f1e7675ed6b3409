//! The agent page (`GET /`) and `GET /heatmap.svg`: source × destination matrices per layer
//! (ICMP to pod IPs, ICMP to node IPs, HTTP, path MTU), rendered server-side from the result
//! documents of the mesh view, grouped by zone, coloured by loss, with the figures in each cell's
//! SVG `<title>` (hover). Pure: data in, text out; no I/O, no clock.
//!
//! Three steps, each tested on its own: [`matrix`] (reports → cells with a state), [`layout`]
//! (names → positions; labels never overlap, at 5 nodes or 200), [`svg`] / [`page`] (text).
//! Every cell carries `data-dst` and `data-state` (`ok`, `lossy`, `down`, `unknown`, `nodata`,
//! `self`, `mismatch`, `blackhole`) inside a row `<g data-src=…>`, for tests and scripts; cells of
//! pairs named in a finding have class `finding`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;

use crate::diagnosis::{AgentReport, Finding, LayerStats, MtuState};
use crate::mesh::Unanswered;

/// Which matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    IcmpPod,
    IcmpNode,
    Http,
    Mtu,
}

impl View {
    pub const ALL: [View; 4] = [View::IcmpPod, View::IcmpNode, View::Http, View::Mtu];

    pub fn as_str(self) -> &'static str {
        match self {
            View::IcmpPod => "icmp_pod",
            View::IcmpNode => "icmp_node",
            View::Http => "http",
            View::Mtu => "mtu",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            View::IcmpPod => "ICMP to pod IPs",
            View::IcmpNode => "ICMP to node IPs",
            View::Http => "HTTP (targets: HTTP or TCP)",
            View::Mtu => "Path MTU (pod and node IP)",
        }
    }

    /// The `layer` query parameter.
    pub fn parse(s: &str) -> Result<View, String> {
        View::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "layer: unknown value {:?}; expected one of icmp_pod, icmp_node, http, mtu",
                    s.chars().take(40).collect::<String>()
                )
            })
    }
}

/// What a cell says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Last probe succeeded, no loss in the window.
    Ok,
    /// Last probe succeeded, some loss in the window.
    Lossy,
    /// Last probe failed.
    Down,
    /// Not probed yet (just joined, first round running) or no path-MTU verdict yet.
    Unknown,
    /// The source's agent did not answer the mesh view.
    NoData,
    /// The diagonal.
    SelfPair,
    /// Path MTU below the interface MTU, ICMP said so.
    Mismatch,
    /// Large packets vanish silently.
    Blackhole,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Lossy => "lossy",
            State::Down => "down",
            State::Unknown => "unknown",
            State::NoData => "nodata",
            State::SelfPair => "self",
            State::Mismatch => "mismatch",
            State::Blackhole => "blackhole",
        }
    }
}

/// The colour scale: loss in the window on a green → red scale of five steps; a failed last
/// probe is dark red whatever the loss; grey when nothing is known. Returns (state, fill).
pub fn loss_colour(reachable: Option<bool>, loss: Option<f64>) -> (State, &'static str) {
    match (reachable, loss) {
        (Some(false), _) => (State::Down, "#8b0000"),
        (None, _) | (_, None) => (State::Unknown, "#d9d9d9"),
        (Some(true), Some(l)) if l <= 0.0 => (State::Ok, "#1a9850"),
        (Some(true), Some(l)) if l < 0.02 => (State::Lossy, "#a6d96a"),
        (Some(true), Some(l)) if l < 0.10 => (State::Lossy, "#fee08b"),
        (Some(true), Some(l)) if l < 0.50 => (State::Lossy, "#fc8d59"),
        (Some(true), Some(_)) => (State::Lossy, "#d73027"),
    }
}

/// The legend: (label, fill).
pub const LEGEND: [(&str, &str); 9] = [
    ("no loss", "#1a9850"),
    ("loss < 2%", "#a6d96a"),
    ("< 10%", "#fee08b"),
    ("< 50%", "#fc8d59"),
    ("≥ 50%", "#d73027"),
    ("last probe failed", "#8b0000"),
    ("unknown", "#d9d9d9"),
    ("no data from source", "#ffffff"),
    ("MTU mismatch", "#f46d43"),
];

fn mtu_colour(state: Option<MtuState>) -> (State, &'static str) {
    match state {
        Some(MtuState::Ok) => (State::Ok, "#1a9850"),
        Some(MtuState::Mismatch) => (State::Mismatch, "#f46d43"),
        Some(MtuState::Blackhole) => (State::Blackhole, "#8b0000"),
        Some(MtuState::Unknown) | None => (State::Unknown, "#d9d9d9"),
    }
}

/// A row or column head.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub name: String,
    /// The zone, `targets`, or `(no zone)`.
    pub group: String,
    /// Named in a current finding.
    pub suspect: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub state: State,
    pub fill: &'static str,
    pub loss: Option<f64>,
    /// The hover text.
    pub tip: String,
    /// The pair is named in a current finding.
    pub in_finding: bool,
}

/// One view's matrix: rows are sources (agents), columns destinations (agents, then targets).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub view: View,
    pub rows: Vec<Head>,
    pub cols: Vec<Head>,
    /// `cells[row][col]`.
    pub cells: Vec<Vec<Cell>>,
}

/// What the page is made from: the mesh view's documents and the peer set's nodes.
#[derive(Debug, Clone, Default)]
pub struct Input<'a> {
    /// Every node of the peer set (this one included): name and zone.
    pub nodes: Vec<(String, Option<String>)>,
    /// One results document per agent that answered (this one included).
    pub reports: &'a [AgentReport],
    /// Agents that did not answer, and why.
    pub silent: &'a [Unanswered],
    pub findings: &'a [Finding],
    /// Findings about held peers (Kubernetes: node NotReady or cordoned, agent just Ready):
    /// shown apart, not as alarms.
    pub held: &'a [Finding],
}

const NO_ZONE: &str = "(no zone)";
const TARGETS: &str = "targets";

/// Build one view's matrix. Nodes are grouped by zone (zones and names sorted); a node known
/// only from a report still gets its row and column.
pub fn matrix(input: &Input, view: View) -> Matrix {
    let nodes = node_heads(input);
    matrix_of(input, view, nodes)
}

/// Every node of the mesh (peer set and reports), grouped by zone, sorted.
fn node_heads(input: &Input) -> Vec<Head> {
    let mut zone_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (n, z) in &input.nodes {
        zone_of.insert(n.clone(), z.clone());
    }
    for r in input.reports {
        zone_of
            .entry(r.node.clone())
            .or_insert_with(|| r.zone.clone());
        for p in &r.peers {
            zone_of
                .entry(p.node.clone())
                .or_insert_with(|| p.zone.clone());
        }
    }
    let suspects: HashSet<&str> = input
        .findings
        .iter()
        .flat_map(|f| f.nodes.iter().chain(f.targets.iter()))
        .map(String::as_str)
        .collect();
    let mut nodes: Vec<Head> = zone_of
        .into_iter()
        .map(|(name, zone)| Head {
            suspect: suspects.contains(name.as_str()),
            name,
            group: zone.filter(|z| !z.is_empty()).unwrap_or(NO_ZONE.into()),
        })
        .collect();
    nodes.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    nodes
}

fn matrix_of(input: &Input, view: View, nodes: Vec<Head>) -> Matrix {
    let suspects: HashSet<&str> = input
        .findings
        .iter()
        .flat_map(|f| f.nodes.iter().chain(f.targets.iter()))
        .map(String::as_str)
        .collect();
    let pairs: HashSet<(&str, &str)> = input
        .findings
        .iter()
        .flat_map(|f| f.pairs.iter())
        .map(|[a, b]| (a.as_str(), b.as_str()))
        .collect();
    let rows = nodes.clone();
    let mut cols = nodes;
    if view != View::IcmpNode {
        let targets: BTreeSet<&str> = input
            .reports
            .iter()
            .flat_map(|r| r.targets.iter().map(|t| t.name.as_str()))
            .collect();
        cols.extend(targets.into_iter().map(|t| Head {
            name: t.to_string(),
            group: TARGETS.into(),
            suspect: suspects.contains(t),
        }));
    }
    let by_node: BTreeMap<&str, &AgentReport> =
        input.reports.iter().map(|r| (r.node.as_str(), r)).collect();
    let silent: BTreeMap<&str, &str> = input
        .silent
        .iter()
        .map(|u| (u.node.as_str(), u.error.as_str()))
        .collect();
    let cells = rows
        .iter()
        .map(|src| {
            cols.iter()
                .map(|dst| {
                    let mut c = cell(
                        view,
                        &src.name,
                        dst,
                        by_node.get(src.name.as_str()).copied(),
                        silent.get(src.name.as_str()).copied(),
                    );
                    c.in_finding = pairs.contains(&(src.name.as_str(), dst.name.as_str()));
                    c
                })
                .collect()
        })
        .collect();
    Matrix {
        view,
        rows,
        cols,
        cells,
    }
}

fn plain(state: State, fill: &'static str, tip: String) -> Cell {
    Cell {
        state,
        fill,
        loss: None,
        tip,
        in_finding: false,
    }
}

fn cell(
    view: View,
    src: &str,
    dst: &Head,
    report: Option<&AgentReport>,
    silent: Option<&str>,
) -> Cell {
    let head = format!("{src} → {} · {}", dst.name, view.as_str());
    if dst.group != TARGETS && src == dst.name {
        return plain(State::SelfPair, "#f0f0f0", format!("{src} (itself)"));
    }
    let Some(report) = report else {
        let why = silent.map_or("not in the mesh view".to_string(), |e| {
            format!("did not answer: {e}")
        });
        return plain(
            State::NoData,
            "#ffffff",
            format!("{head}\nno data: {src}'s agent {why}"),
        );
    };
    let (layers, mtu) = if dst.group == TARGETS {
        match report.targets.iter().find(|t| t.name == dst.name) {
            Some(t) => (&t.layers, (&t.mtu, t.path_mtu, t.mtu_state)),
            None => {
                return plain(
                    State::Unknown,
                    "#d9d9d9",
                    format!("{head}\nnot probed by {src}"),
                )
            }
        }
    } else {
        match report.peers.iter().find(|p| p.node == dst.name) {
            Some(p) => (&p.layers, (&p.mtu, p.path_mtu, p.mtu_state)),
            None => {
                return plain(
                    State::Unknown,
                    "#d9d9d9",
                    format!("{head}\nnot probed by {src} (not in its peer set yet)"),
                )
            }
        }
    };
    if view == View::Mtu {
        let (per_layer, path_mtu, mtu_state) = mtu;
        let mut parts: Vec<(String, Option<u32>, Option<MtuState>)> = per_layer
            .iter()
            .map(|(l, m)| (l.clone(), m.path_mtu, m.state))
            .collect();
        if parts.is_empty() && (path_mtu.is_some() || mtu_state.is_some()) {
            parts.push(("icmp_pod".into(), path_mtu, mtu_state));
        }
        let rank = |s: Option<MtuState>| match s {
            Some(MtuState::Blackhole) => 3,
            Some(MtuState::Mismatch) => 2,
            Some(MtuState::Ok) => 1,
            _ => 0,
        };
        let worst = parts.iter().map(|p| p.2).max_by_key(|s| rank(*s)).flatten();
        let (state, fill) = mtu_colour(worst);
        let mut tip = head;
        if parts.is_empty() {
            tip.push_str("\nno path-MTU report (MTU discovery off, or not started)");
        }
        for (l, m, s) in &parts {
            let _ = write!(
                tip,
                "\n{l}: path MTU {} ({})",
                m.map_or("?".to_string(), |v| v.to_string()),
                s.map_or("unknown", |s| match s {
                    MtuState::Ok => "ok",
                    MtuState::Mismatch => "mismatch",
                    MtuState::Blackhole => "blackhole",
                    MtuState::Unknown => "searching or unknown",
                })
            );
        }
        return plain(state, fill, tip);
    }
    let key = match view {
        View::IcmpPod => "icmp_pod",
        View::IcmpNode => "icmp_node",
        _ => "http",
    };
    let stats = layers
        .get(key)
        .or_else(|| (view == View::Http).then(|| layers.get("tcp")).flatten());
    let Some(st) = stats else {
        return plain(
            State::Unknown,
            "#d9d9d9",
            format!("{head}\nthis layer is not probed"),
        );
    };
    let (state, fill) = loss_colour(st.reachable, st.loss_ratio);
    Cell {
        state,
        fill,
        loss: st.loss_ratio,
        tip: format!("{head}\n{}", describe(st)),
        in_finding: false,
    }
}

/// The hover text of one window.
pub fn describe(st: &LayerStats) -> String {
    let mut s = match st.reachable {
        None => "no probe yet".to_string(),
        Some(true) => "last probe ok".to_string(),
        Some(false) => format!(
            "last probe FAILED ({} in a row)",
            st.consecutive_failures.max(1)
        ),
    };
    if let Some(l) = st.loss_ratio {
        let _ = write!(
            s,
            "\nloss {:.1}% ({}/{} lost)",
            l * 100.0,
            st.sent.saturating_sub(st.received),
            st.sent
        );
    }
    if let Some(r) = st.success_ratio {
        let _ = write!(
            s,
            " · probes ok {}/{} ({:.0}%)",
            st.successes,
            st.probes,
            r * 100.0
        );
    }
    if let Some(q) = st.rtt_seconds {
        let _ = write!(
            s,
            "\nRTT p50 {} p90 {} p99 {} max {}",
            ms(q.p50),
            ms(q.p90),
            ms(q.p99),
            ms(q.max)
        );
    }
    if let Some(e) = &st.last_error {
        let _ = write!(s, "\nlast error: {}", e.describe());
        if let Some(age) = st.last_error_age_seconds {
            let _ = write!(s, " ({age:.0} s ago)");
        }
    }
    s
}

fn ms(secs: f64) -> String {
    format!("{:.2}ms", secs * 1000.0)
}

// ---- layout ---------------------------------------------------------------------------------

/// Longest label shown; longer names are cut with `…` (the full name is in the label's title).
pub const MAX_LABEL_CHARS: usize = 24;
const PAD: f64 = 4.0;
/// Space between two zone groups.
pub const ZONE_GAP: f64 = 6.0;

/// An axis-aligned box (a label's extent), for overlap checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// A label: its text (possibly cut), its full text, its box and how it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub text: String,
    pub full: String,
    pub bbox: Rect,
    pub vertical: bool,
}

/// Where everything goes. Monospace text, so a label's width is its length × 0.6 em.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub cell: f64,
    pub font: f64,
    pub col_x: Vec<f64>,
    pub row_y: Vec<f64>,
    pub row_labels: Vec<Label>,
    pub col_labels: Vec<Label>,
    /// Zone names along the top (over columns) and the left (beside rows).
    pub zone_labels: Vec<Label>,
    /// Zone bands: (group, x or y start, length), for columns then rows.
    pub col_bands: Vec<(String, f64, f64)>,
    pub row_bands: Vec<(String, f64, f64)>,
    pub grid: Rect,
    pub width: f64,
    pub height: f64,
}

/// Advance width of one monospace character at `font` px.
pub fn char_w(font: f64) -> f64 {
    0.6 * font
}

/// Cut `s` to at most `max` characters, marking the cut with `…`.
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else if max == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Offsets of items along one axis: `cell` each, `ZONE_GAP` between groups.
fn offsets(heads: &[Head], start: f64, cell: f64) -> (Vec<f64>, Vec<(String, f64, f64)>, f64) {
    let mut pos = Vec::with_capacity(heads.len());
    let mut bands: Vec<(String, f64, f64)> = Vec::new();
    let mut at = start;
    for (i, h) in heads.iter().enumerate() {
        if i > 0 && heads[i - 1].group != h.group {
            at += ZONE_GAP;
        }
        match bands.last_mut() {
            Some(b) if b.0 == h.group => b.2 += cell,
            _ => bands.push((h.group.clone(), at, cell)),
        }
        pos.push(at);
        at += cell;
    }
    (pos, bands, at - start)
}

/// Lay out a matrix: cells of 22 px (12 px text) up to 30 rows, 13 px (10 px text) above.
pub fn layout(rows: &[Head], cols: &[Head]) -> Layout {
    let big = rows.len().max(cols.len()) > 30;
    let (cell, font) = if big { (13.0, 10.0) } else { (22.0, 12.0) };
    let cw = char_w(font);
    let longest = |hs: &[Head]| {
        hs.iter()
            .map(|h| fit(&h.name, MAX_LABEL_CHARS).chars().count())
            .max()
            .unwrap_or(1) as f64
            * cw
    };
    let row_label_w = longest(rows).max(cw);
    let col_label_h = longest(cols).max(cw);
    // Left: zone column (vertical text, one line), then row labels (right-aligned), then grid.
    let zone_col_x = PAD;
    let x0 = (zone_col_x + font + PAD + row_label_w + PAD).ceil();
    let zone_row_y = PAD;
    let y0 = (zone_row_y + font + PAD + col_label_h + PAD).ceil();
    let (col_x, col_bands, grid_w) = offsets(cols, x0, cell);
    let (row_y, row_bands, grid_h) = offsets(rows, y0, cell);
    let inset = (cell - font) / 2.0;
    let row_labels = rows
        .iter()
        .zip(&row_y)
        .map(|(h, &y)| {
            let text = fit(&h.name, MAX_LABEL_CHARS);
            let w = text.chars().count() as f64 * cw;
            Label {
                bbox: Rect {
                    x: x0 - PAD - w,
                    y: y + inset,
                    w,
                    h: font,
                },
                text,
                full: h.name.clone(),
                vertical: false,
            }
        })
        .collect();
    let col_labels = cols
        .iter()
        .zip(&col_x)
        .map(|(h, &x)| {
            let text = fit(&h.name, MAX_LABEL_CHARS);
            let len = text.chars().count() as f64 * cw;
            Label {
                bbox: Rect {
                    x: x + inset,
                    y: y0 - PAD - len,
                    w: font,
                    h: len,
                },
                text,
                full: h.name.clone(),
                vertical: true,
            }
        })
        .collect();
    let mut zone_labels = Vec::new();
    for (g, x, len) in &col_bands {
        let n = ((len / cw).floor() as usize).min(MAX_LABEL_CHARS);
        let text = fit(g, n);
        if text.is_empty() {
            continue;
        }
        zone_labels.push(Label {
            bbox: Rect {
                x: *x,
                y: zone_row_y,
                w: text.chars().count() as f64 * cw,
                h: font,
            },
            text,
            full: g.clone(),
            vertical: false,
        });
    }
    for (g, y, len) in &row_bands {
        let n = ((len / cw).floor() as usize).min(MAX_LABEL_CHARS);
        let text = fit(g, n);
        if text.is_empty() {
            continue;
        }
        let l = text.chars().count() as f64 * cw;
        zone_labels.push(Label {
            // Vertical, reading bottom-up, ending at the band's top.
            bbox: Rect {
                x: zone_col_x,
                y: *y,
                w: font,
                h: l,
            },
            text,
            full: g.clone(),
            vertical: true,
        });
    }
    let grid = Rect {
        x: x0,
        y: y0,
        w: grid_w,
        h: grid_h,
    };
    Layout {
        cell,
        font,
        col_x,
        row_y,
        row_labels,
        col_labels,
        zone_labels,
        col_bands,
        row_bands,
        width: x0 + grid_w + PAD,
        height: y0 + grid_h + PAD + LEGEND_H,
        grid,
    }
}

const LEGEND_H: f64 = 44.0;
const NOTE: &str = "rows: source agent · columns: destination · outlined: named in a finding · hover a cell for figures";

/// The legend of a view: (label, fill).
fn legend(view: View) -> Vec<(&'static str, &'static str)> {
    if view == View::Mtu {
        return vec![
            ("path MTU ok", "#1a9850"),
            ("MTU mismatch", "#f46d43"),
            ("MTU black hole", "#8b0000"),
            ("unknown", "#d9d9d9"),
            ("no data from source", "#ffffff"),
        ];
    }
    LEGEND
        .into_iter()
        .filter(|(_, fill)| *fill != "#f46d43")
        .collect()
}

/// Width the legend and the note below it need.
fn legend_width(view: View) -> f64 {
    let items: f64 = legend(view)
        .iter()
        .map(|(l, _)| 13.0 + l.chars().count() as f64 * char_w(10.0) + 10.0)
        .sum();
    items.max(NOTE.chars().count() as f64 * char_w(10.0)) + PAD
}

// ---- rendering ------------------------------------------------------------------------------

/// Escape text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn text_el(out: &mut String, l: &Label, font: f64, class: &str) {
    let title = if l.text != l.full {
        format!("<title>{}</title>", escape(&l.full))
    } else {
        String::new()
    };
    if l.vertical {
        // Rotated -90°: drawn upward from the box's bottom edge, centred on its x extent.
        let _ = write!(
            out,
            r#"<text class="{class}" font-size="{f}" transform="translate({x},{y}) rotate(-90)" dominant-baseline="central">{t}{title}</text>"#,
            f = num(font),
            x = num(l.bbox.x + l.bbox.w / 2.0),
            y = num(l.bbox.y + l.bbox.h),
            t = escape(&l.text),
        );
    } else {
        let _ = write!(
            out,
            r#"<text class="{class}" font-size="{f}" x="{x}" y="{y}" dominant-baseline="central">{t}{title}</text>"#,
            f = num(font),
            x = num(l.bbox.x),
            y = num(l.bbox.y + l.bbox.h / 2.0),
            t = escape(&l.text),
        );
    }
}

/// One matrix as a standalone SVG document (also embedded inline in the page).
pub fn svg(m: &Matrix) -> String {
    let lay = layout(&m.rows, &m.cols);
    let width = lay.width.max(legend_width(m.view) + PAD);
    let mut o = String::with_capacity(256 + m.rows.len() * m.cols.len() * 160);
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" data-view="{v}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans Mono, monospace"><title>meshprobe {v}: source (rows) × destination (columns)</title>"#,
        v = m.view.as_str(),
        w = num(width),
        h = num(lay.height),
    );
    // Zone bands behind the grid, alternating shades.
    for (i, (g, x, len)) in lay.col_bands.iter().enumerate() {
        let _ = write!(
            o,
            r##"<rect class="band" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>"##,
            num(*x),
            num(PAD),
            num(*len),
            num(lay.grid.y - PAD),
            if i % 2 == 0 { "#eef3fb" } else { "#f8f1e7" },
            escape(g)
        );
    }
    for (i, (g, y, len)) in lay.row_bands.iter().enumerate() {
        let _ = write!(
            o,
            r##"<rect class="band" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>"##,
            num(PAD),
            num(*y),
            num(lay.grid.x - PAD),
            num(*len),
            if i % 2 == 0 { "#eef3fb" } else { "#f8f1e7" },
            escape(g)
        );
    }
    for l in &lay.zone_labels {
        text_el(&mut o, l, lay.font, "zone");
    }
    for (l, h) in lay.col_labels.iter().zip(&m.cols) {
        text_el(
            &mut o,
            l,
            lay.font,
            if h.suspect { "col suspect" } else { "col" },
        );
    }
    for (l, h) in lay.row_labels.iter().zip(&m.rows) {
        text_el(
            &mut o,
            l,
            lay.font,
            if h.suspect { "row suspect" } else { "row" },
        );
    }
    let size = num(lay.cell - 1.0);
    for ((row, y), cells) in m.rows.iter().zip(&lay.row_y).zip(&m.cells) {
        let _ = write!(o, r#"<g class="r" data-src="{}">"#, escape(&row.name));
        for ((col, x), c) in m.cols.iter().zip(&lay.col_x).zip(cells) {
            let _ = write!(
                o,
                r#"<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="{fill}"{f} data-dst="{dst}" data-state="{state}"{loss}><title>{tip}</title></rect>"#,
                x = num(*x),
                y = num(*y),
                fill = c.fill,
                state = c.state.as_str(),
                f = if c.in_finding {
                    r#" class="finding""#
                } else {
                    ""
                },
                dst = escape(&col.name),
                loss = c
                    .loss
                    .map(|l| format!(r#" data-loss="{l:.3}""#))
                    .unwrap_or_default(),
                tip = escape(&c.tip),
            );
        }
        o.push_str("</g>");
    }
    // Legend.
    let ly = lay.grid.y + lay.grid.h + PAD + 8.0;
    let mut lx = PAD;
    for (label, fill) in legend(m.view) {
        let _ = write!(
            o,
            r##"<rect x="{}" y="{}" width="10" height="10" fill="{fill}" stroke="#999"/><text font-size="10" x="{}" y="{}" dominant-baseline="central">{}</text>"##,
            num(lx),
            num(ly),
            num(lx + 13.0),
            num(ly + 5.0),
            escape(label)
        );
        lx += 13.0 + label.chars().count() as f64 * char_w(10.0) + 10.0;
    }
    let _ = write!(
        o,
        r##"<text font-size="10" x="{}" y="{}" dominant-baseline="central" fill="#555">{NOTE}</text>"##,
        num(PAD),
        num(ly + 24.0)
    );
    o.push_str(r#"<style>.finding{stroke:#000;stroke-width:2}[data-state=nodata]{stroke:#aaa;stroke-dasharray:2 2}.suspect{fill:#b2182b;font-weight:bold}.zone{font-weight:bold;fill:#345}</style>"#);
    o.push_str("</svg>");
    o
}

/// The agent's identity and settings, for the page header.
#[derive(Debug, Clone, Default)]
pub struct Header<'a> {
    pub node: &'a str,
    pub zone: Option<&'a str>,
    pub ready: bool,
    pub rounds: u64,
    pub interval_seconds: f64,
    pub window_seconds: f64,
    pub icmp_socket: &'a str,
    pub discovery_error: Option<&'a str>,
}

/// Above this many nodes the page shows one layer at a time (a 200-node matrix is 40,000 cells).
pub const ALL_LAYERS_UP_TO: usize = 50;

/// The whole page: header, layer links, the selected matrices (all four for small meshes, else
/// `only` or ICMP to pod IPs), and the current findings with evidence. Reads without JavaScript
/// (`<noscript>` refresh); a small script refreshes the live part in place, keeping scroll positions.
pub fn page(h: &Header, input: &Input, only: Option<View>) -> String {
    let refresh = h.interval_seconds.ceil().max(1.0) as u64;
    let node_count = node_heads(input).len();
    let views: Vec<View> = match only {
        Some(v) => vec![v],
        None if node_count <= ALL_LAYERS_UP_TO => View::ALL.to_vec(),
        None => vec![View::IcmpPod],
    };
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
<title>meshprobe {node}</title><noscript><meta http-equiv=refresh content={refresh}></noscript><style>{CSS}</style></head><body>\
<h1>meshprobe agent on {node}</h1><p class=meta>zone {zone} · {ready} · {rounds} rounds · interval {iv} s · window {win} s · \
ICMP socket {sock} · <a href=/metrics>metrics</a> · <a href=/api/v1/results>results</a> · <a href=/api/v1/diagnosis>diagnosis</a> · \
<a href=/heatmap.svg>heatmap.svg</a></p>",
        node = escape(h.node),
        zone = escape(h.zone.unwrap_or("-")),
        ready = if h.ready {
            "ready"
        } else {
            "first round running"
        },
        rounds = h.rounds,
        iv = h.interval_seconds,
        win = h.window_seconds,
        sock = escape(h.icmp_socket),
    );
    o.push_str("<div id=live>");
    if let Some(e) = h.discovery_error {
        let _ = write!(
            o,
            "<p class=bad>discovery failing, last good peer set kept: {}</p>",
            escape(e)
        );
    }
    o.push_str("<nav>layers: <a href=\"/\">all</a>");
    for v in View::ALL {
        let _ = write!(
            o,
            " · <a href=\"/?layer={0}\"{1}>{0}</a>",
            v.as_str(),
            if only == Some(v) { " class=sel" } else { "" }
        );
    }
    o.push_str("</nav>");
    let _ = write!(
        o,
        "<p>mesh view: results from {} of {} agent(s)",
        input.reports.len(),
        node_count
    );
    if !input.silent.is_empty() {
        let silent: Vec<String> = input
            .silent
            .iter()
            .map(|u| escape(&format!("{} ({})", u.node, u.error)))
            .collect();
        let _ = write!(
            o,
            "; <span class=bad>no answer from {}</span>",
            silent.join(", ")
        );
    }
    o.push_str("</p>");
    findings(&mut o, input.findings);
    held(&mut o, input.held);
    for v in views {
        let m = matrix(input, v);
        let failing = m
            .cells
            .iter()
            .flatten()
            .filter(|c| {
                matches!(
                    c.state,
                    State::Down | State::Lossy | State::Mismatch | State::Blackhole
                )
            })
            .count();
        let _ = write!(
            o,
            "<section class=layer id=\"layer-{id}\"><h2>{t} <small>{failing} failing or lossy pair(s)</small></h2><div class=scroll>{svg}</div></section>",
            id = v.as_str(),
            t = v.title(),
            svg = svg(&m),
        );
    }
    o.push_str("</div>");
    let _ = write!(o, "<script>{}</script></body></html>", script(refresh));
    o
}

fn findings(o: &mut String, fs: &[Finding]) {
    o.push_str("<section id=findings><h2>Findings</h2>");
    if fs.is_empty() {
        o.push_str("<p class=good>healthy: no findings</p>");
    }
    finding_list(o, fs, "finding");
    o.push_str("</section>");
}

/// Findings about held peers, when there are any: what is wrong, but not an alarm yet.
fn held(o: &mut String, fs: &[Finding]) {
    if fs.is_empty() {
        return;
    }
    o.push_str("<section id=held><h2>Held <small>peers on NotReady or cordoned nodes, or just Ready: not alarms</small></h2>");
    finding_list(o, fs, "held");
    o.push_str("</section>");
}

fn finding_list(o: &mut String, fs: &[Finding], class: &str) {
    for f in fs {
        let _ = write!(
            o,
            "<div class={class} data-cause=\"{c}\"><b>[{c}]</b> {s} <small>({conf:.0}% confidence)</small>",
            c = escape(f.cause.as_str()),
            s = escape(&f.summary),
            conf = f.confidence * 100.0
        );
        if !f.evidence.is_empty() {
            o.push_str("<div>evidence:<ul>");
            for e in &f.evidence {
                let _ = write!(o, "<li>{}</li>", escape(e));
            }
            o.push_str("</ul></div>");
        }
        if !f.next_steps.is_empty() {
            o.push_str("<div>next steps:<ul>");
            for e in &f.next_steps {
                let _ = write!(o, "<li>{}</li>", escape(e));
            }
            o.push_str("</ul></div>");
        }
        o.push_str("</div>");
    }
}

const CSS: &str = "body{font:14px sans-serif;margin:1em 1.5em;color:#222}h2{font-size:16px;margin:1em 0 .3em}\
h2 small{font-weight:normal;color:#666}.meta{color:#444}.scroll{overflow:auto;max-width:100%;max-height:85vh;border:1px solid #ddd}\
.bad{color:#8b0000}.good{color:#1a6b35}.finding{background:#fdecea;border-left:4px solid #b2182b;padding:4px 8px;margin:6px 0}\
.finding ul,.held ul{margin:2px 0}.held{background:#f3f3f3;border-left:4px solid #999;padding:4px 8px;margin:6px 0}nav a.sel{font-weight:bold}";

fn script(refresh: u64) -> String {
    // Fetch the page again and swap the live part; keep the matrices' scroll positions; count
    // the swaps in <body data-refreshed> (the browser test reads it).
    format!(
        "(function(){{var ms={ms};function tick(){{var sc=[].map.call(document.querySelectorAll('.scroll'),function(e){{return[e.scrollLeft,e.scrollTop]}});\
fetch(location.href,{{cache:'no-store'}}).then(function(r){{return r.text()}}).then(function(t){{var d=new DOMParser().parseFromString(t,'text/html');\
var n=d.getElementById('live');if(n){{document.getElementById('live').replaceWith(n);var b=document.body;b.setAttribute('data-refreshed',(+b.getAttribute('data-refreshed')||0)+1);[].forEach.call(document.querySelectorAll('.scroll'),function(e,i){{if(sc[i]){{e.scrollLeft=sc[i][0];e.scrollTop=sc[i][1]}}}})}}}})\
.catch(function(){{}}).then(function(){{setTimeout(tick,ms)}})}}setTimeout(tick,ms)}})();",
        ms = refresh * 1000
    )
}

#[cfg(test)]
mod tests;
