//! Diagnosis per address family: the engine runs once per family over that family's cells,
//! then [`merge`] joins the answers — one finding without a family when both families show
//! the same cause at the same place, else a finding that names its family.
//!
//! Agents that probe one family publish the shape they always did, and the inputs then hold
//! one family: [`diagnose_inputs`] is the plain engine on them. The rules need no family: a
//! route, a policy or a CNI that breaks one family looks, within it, like any other fault.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use meshprobe_core::model::Family;

use crate::engine::{diagnose_with, Params};
use crate::input::{Inputs, NodeMeta, PeerReport, TargetReport};
use crate::matrix::Matrix;
use crate::report::{Diagnosis, Finding};

/// The engine over every family the inputs hold, merged, then the per-source checks.
pub fn diagnose_inputs(inp: &Inputs, p: &Params) -> Diagnosis {
    let fams = families(inp);
    let d = if fams.len() < 2 {
        diagnose_with(&Matrix::build(inp), p)
    } else {
        let per: Vec<(Family, Diagnosis)> = fams
            .into_iter()
            .map(|f| (f, diagnose_with(&Matrix::build(&project(inp, f)), p)))
            .collect();
        merge(&per)
    };
    crate::checks::with_checks(inp, d, p)
}

/// A family word as agents write it; anything else reads as none (lenient, like all input).
fn parse(word: &str) -> Option<Family> {
    Family::ALL.into_iter().find(|f| f.as_str() == word)
}

/// The family of a destination's top-level figures: named, else its address's.
fn primary(named: Option<&str>, ip: Option<IpAddr>) -> Option<Family> {
    named.and_then(parse).or(ip.map(Family::of))
}

/// Every family some agent reports figures for (a destination without an address or family
/// counts for none).
pub fn families(inp: &Inputs) -> BTreeSet<Family> {
    let mut out = BTreeSet::new();
    for a in &inp.agents {
        for p in &a.peers {
            out.extend(primary(p.family.as_deref(), p.pod_ip));
            out.extend(p.families.keys().filter_map(|k| parse(k)));
        }
        for t in &a.targets {
            out.extend(primary(t.family.as_deref(), t.ip));
            out.extend(t.families.keys().filter_map(|k| parse(k)));
        }
    }
    out
}

/// The inputs as one family sees them: each destination's figures of `family` in its
/// top-level place, destinations without any left out, and each node's addresses of `family`
/// as its primary ones (what evidence and next steps quote). A destination whose family
/// cannot be told stays in every family's view (the merge then finds it in both).
pub fn project(inp: &Inputs, family: Family) -> Inputs {
    let mut out = inp.clone();
    out.nodes.iter_mut().for_each(|n| project_node(n, family));
    for a in &mut out.agents {
        a.owners
            .nodes
            .iter_mut()
            .for_each(|n| project_node(n, family));
        a.peers = std::mem::take(&mut a.peers)
            .into_iter()
            .filter_map(|p| project_peer(p, family))
            .collect();
        a.targets = std::mem::take(&mut a.targets)
            .into_iter()
            .filter_map(|t| project_target(t, family))
            .collect();
    }
    out
}

/// A node's facts with its addresses of `family` first: its node and pod address of that
/// family (when it has one), only that family's pod CIDRs (when it has any) and its gateway of
/// that family (none when it states none). The lists keep both families, so the ownership map still knows every address.
fn project_node(n: &mut NodeMeta, family: Family) {
    let pick = |primary: Option<IpAddr>, all: &[IpAddr]| {
        primary
            .into_iter()
            .chain(all.iter().copied())
            .find(|ip| Family::of(*ip) == family)
    };
    if let Some(ip) = pick(n.node_ip, &n.node_ips) {
        n.node_ip = Some(ip);
    }
    if let Some(ip) = pick(n.pod_ip, &n.pod_ips) {
        n.pod_ip = Some(ip);
    }
    n.pod_gateway = pick(n.pod_gateway, &n.pod_gateways);
    // A CIDR's family by its text: only IPv6 has a colon.
    let own: Vec<String> = n
        .pod_cidrs
        .iter()
        .filter(|c| c.contains(':') == family.is_v6())
        .cloned()
        .collect();
    if !own.is_empty() {
        n.pod_cidrs = own;
    }
}

fn project_peer(mut p: PeerReport, family: Family) -> Option<PeerReport> {
    let top = primary(p.family.as_deref(), p.pod_ip);
    if top.is_none_or(|f| f == family) {
        p.family = None;
        p.families.clear();
        return Some(p);
    }
    let f = p.families.remove(family.as_str())?;
    Some(PeerReport {
        node: p.node,
        zone: p.zone,
        // The node's address of this family; a node without one is probed at its primary.
        node_ip: f.node_ip.or(p.node_ip),
        pod_ip: f.ip,
        layers: f.layers,
        path_mtu: None,
        mtu_state: None,
        mtu: f.mtu,
        family: None,
        families: BTreeMap::new(),
    })
}

fn project_target(mut t: TargetReport, family: Family) -> Option<TargetReport> {
    let top = primary(t.family.as_deref(), t.ip);
    if top.is_none_or(|f| f == family) {
        t.family = None;
        t.families.clear();
        return Some(t);
    }
    let f = t.families.remove(family.as_str())?;
    Some(TargetReport {
        name: t.name,
        ip: f.ip,
        port: t.port,
        protocol: t.protocol,
        layers: f.layers,
        path_mtu: None,
        mtu_state: None,
        mtu: f.mtu,
        family: None,
        families: BTreeMap::new(),
    })
}

/// Whether two families' findings tell of one fault: the same cause at a shared node (or,
/// without nodes, a shared target or the same zones). Not the same node lists: each family
/// sees the fault through its own evidence (IPv4 rate-limits its ICMP errors, IPv6's come
/// through), so one may place a lost route on the node and the other on both ends of the pair.
fn same_fault(a: &Finding, b: &Finding) -> bool {
    let shared = |x: &[String], y: &[String]| x.iter().any(|v| y.contains(v));
    a.cause == b.cause
        && if a.nodes.is_empty() && b.nodes.is_empty() {
            shared(&a.targets, &b.targets) || (!a.zones.is_empty() && a.zones == b.zones)
        } else {
            shared(&a.nodes, &b.nodes)
        }
}

/// Join per-family answers: a fault that every family shows ([`same_fault`]) is one finding,
/// without a family: the surest family's finding, with every family's pairs; every other
/// finding keeps its family, named in the summary too ("IPv6: …").
pub fn merge(per: &[(Family, Diagnosis)]) -> Diagnosis {
    let mut used: Vec<Vec<bool>> = per
        .iter()
        .map(|(_, d)| vec![false; d.findings.len()])
        .collect();
    let mut out = Vec::new();
    for (i, (fam, d)) in per.iter().enumerate() {
        for (j, f) in d.findings.iter().enumerate() {
            if used[i][j] {
                continue;
            }
            used[i][j] = true;
            // The same fault in every other family, each finding matched once.
            let mut twins = Vec::new();
            for (k, (_, other)) in per.iter().enumerate().skip(i + 1) {
                if let Some(m) = (0..other.findings.len())
                    .find(|&n| !used[k][n] && same_fault(f, &other.findings[n]))
                {
                    twins.push((k, m));
                }
            }
            if twins.len() + 1 < per.len() {
                let mut own = f.clone();
                own.summary = format!("{}: {}", label(*fam), own.summary);
                own.family = Some(*fam);
                out.push(own);
                continue;
            }
            let all: Vec<&Finding> = std::iter::once(f)
                .chain(twins.iter().map(|&(k, m)| &per[k].1.findings[m]))
                .collect();
            // The surest reading speaks for all (the first family's on a tie).
            let best = all
                .iter()
                .copied()
                .reduce(|a, b| if b.confidence > a.confidence { b } else { a })
                .unwrap_or(f);
            let mut merged = best.clone();
            for g in &all {
                for pair in &g.pairs {
                    if !merged.pairs.contains(pair) {
                        merged.pairs.push(pair.clone());
                    }
                }
            }
            for (k, m) in twins {
                used[k][m] = true;
            }
            merged.family = None;
            out.push(merged);
        }
    }
    crate::engine::sort_findings(&mut out);
    Diagnosis::new(out)
}

/// How a summary names a family.
fn label(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}
