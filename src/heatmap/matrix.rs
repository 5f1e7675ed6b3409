//! The matrices: the mesh view's reports → one cell per source and destination, with a state,
//! a colour and the hover text.

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
pub(super) fn node_heads(input: &Input) -> Vec<Head> {
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
