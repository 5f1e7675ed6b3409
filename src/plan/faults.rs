//! The fleet emulator's faults (`plan --simulate --serve --inject KIND:WHERE[@START[-END]]`):
//! parsed from the command line, and what each does to one probe — pure, so a table test pins
//! every cell ([`effect`], [`path_mtu`], [`silent`]).

use meshprobe_core::parse::parse_duration;
use meshprobe_diagnosis::simulate::pod_gateway;

use crate::model::{ErrorClass, Layer};

/// A fault the emulator switches on and off.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    pub fault: EmuFault,
    /// Seconds after start when it begins, and ends (none: never).
    pub start: f64,
    pub end: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EmuFault {
    /// Nothing reaches the node; its agent is not scraped.
    NodeDown(String),
    /// The node's pod network is cut off: its pod IP and agent fail, its node IP answers.
    Cni(String),
    /// Nothing crosses between the two zones.
    Partition(String, String),
    /// The first node lost its route to the second's pod subnet: net unreachable from its pod
    /// gateway one way, silence the other.
    Route(String, String),
    /// Every packet to or from the node is dropped with this probability (0 < p < 1).
    Loss(String, f64),
    /// The node's link carries packets up to this size and drops larger ones silently (no
    /// "fragmentation needed"): a path-MTU black hole on every path through it.
    Mtu(String, u32),
    /// A NetworkPolicy on the target drops new connections; ICMP passes.
    Policy(String),
}

/// The interface MTU every emulated node has.
pub const LINK_MTU: u32 = 1500;

impl EmuFault {
    /// The nodes and targets it names, to check against the emulated cluster.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            EmuFault::NodeDown(x)
            | EmuFault::Cni(x)
            | EmuFault::Loss(x, _)
            | EmuFault::Mtu(x, _) => {
                vec![x]
            }
            EmuFault::Route(a, b) => vec![a, b],
            EmuFault::Partition(..) | EmuFault::Policy(_) => vec![],
        }
    }
}

impl Injected {
    /// `node-down:NODE`, `cni:NODE`, `partition:ZONE,ZONE`, `route:NODE,NODE`,
    /// `loss:NODE,PERCENT`, `mtu:NODE,BYTES` or `policy:TARGET`, optionally `@START` or
    /// `@START-END` (durations after start, e.g. `@30s-2m`).
    pub fn parse(spec: &str) -> std::result::Result<Injected, String> {
        let bad = |why: &str| format!("--inject {spec:?}: {why}");
        let (what, when) = spec.split_once('@').unwrap_or((spec, ""));
        let (kind, place) = what
            .split_once(':')
            .ok_or_else(|| bad("expected KIND:WHERE, e.g. cni:node-00017"))?;
        let two = || {
            place
                .split_once(',')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && a != b)
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad("expected two different names, comma-separated"))
        };
        let node_and = |what: &str| {
            place
                .split_once(',')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(&format!("expected NODE,{what}")))
        };
        if place.is_empty() {
            return Err(bad("no node or zone given"));
        }
        let fault =
            match kind {
                "node-down" => EmuFault::NodeDown(place.to_string()),
                "cni" => EmuFault::Cni(place.to_string()),
                "policy" => EmuFault::Policy(place.to_string()),
                "partition" => {
                    let (a, b) = two()?;
                    EmuFault::Partition(a, b)
                }
                "route" => {
                    let (a, b) = two()?;
                    EmuFault::Route(a, b)
                }
                "loss" => {
                    let (n, pct) = node_and("PERCENT")?;
                    match pct.parse::<f64>() {
                        Ok(p) if p > 0.0 && p < 100.0 => EmuFault::Loss(n, p / 100.0),
                        _ => {
                            return Err(bad(&format!(
                                "{pct:?}: a loss percentage above 0, below 100"
                            )))
                        }
                    }
                }
                "mtu" => {
                    let (n, bytes) = node_and("BYTES")?;
                    match bytes.parse::<u32>() {
                        Ok(b) if (576..LINK_MTU).contains(&b) => EmuFault::Mtu(n, b),
                        _ => {
                            return Err(bad(&format!(
                            "{bytes:?}: an MTU from 576 to {} bytes (below the links' {LINK_MTU})",
                            LINK_MTU - 1
                        )))
                        }
                    }
                }
                _ => return Err(bad(
                    "unknown kind; expected node-down, cni, partition, route, loss, mtu or policy",
                )),
            };
        let secs = |s: &str| {
            parse_duration(s)
                .map(|d| d.as_secs_f64())
                .map_err(|e| bad(&format!("{s:?}: {e}")))
        };
        let (start, end) = match when.split_once('-') {
            _ if when.is_empty() => (0.0, None),
            Some((a, b)) => (secs(a)?, Some(secs(b)?)),
            None => (secs(when)?, None),
        };
        if end.is_some_and(|e| e <= start) {
            return Err(bad("the end must come after the start"));
        }
        Ok(Injected { fault, start, end })
    }

    pub fn on_at(&self, secs: f64) -> bool {
        secs >= self.start && self.end.is_none_or(|e| secs < e)
    }
}

/// Names and zones of the cluster, and its targets (name, node index), for [`effect`].
pub struct Names<'a> {
    pub names: &'a [String],
    pub zone_of: &'a dyn Fn(usize) -> &'a str,
    pub targets: &'a [(String, usize)],
}

/// A probe's destination: an agent (node index) or a target (index in [`Names::targets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dst {
    Node(usize),
    Target(usize),
}

/// What the faults make of one probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Fail(ErrorClass),
    /// Each packet lost with this probability (the caller draws).
    Lossy(f64),
}

impl Names<'_> {
    /// The node a destination runs on.
    fn node_of(&self, d: Dst) -> usize {
        match d {
            Dst::Node(i) => i,
            Dst::Target(t) => self.targets[t].1,
        }
    }
}

/// What the faults `on` make of the probe from `src` to `dst` on `layer`: `None` when it
/// succeeds. The first fault that touches the cell decides.
pub fn effect(on: &[&EmuFault], n: &Names, src: usize, dst: Dst, layer: Layer) -> Option<Effect> {
    let name = |i: usize| n.names[i].as_str();
    let d = n.node_of(dst);
    // Targets are pods: every layer of theirs but the node IP is the pod network's.
    let pod_layer = matches!(layer, Layer::IcmpPod | Layer::Http | Layer::Tcp);
    let timeout = Some(Effect::Fail(ErrorClass::Timeout));
    for f in on {
        match f {
            EmuFault::NodeDown(x) if name(d) == x => return timeout,
            EmuFault::Cni(x) if name(d) == x && pod_layer => return timeout,
            EmuFault::Partition(a, b) => {
                let (zs, zd) = ((n.zone_of)(src), (n.zone_of)(d));
                if (zs == a && zd == b) || (zs == b && zd == a) {
                    return timeout;
                }
            }
            EmuFault::Route(a, b) if pod_layer && name(src) == a && name(d) == b => {
                return Some(Effect::Fail(ErrorClass::NetUnreachable {
                    from: Some(pod_gateway(src)),
                }))
            }
            EmuFault::Route(a, b) if pod_layer && name(src) == b && name(d) == a => return timeout,
            EmuFault::Loss(x, p) if name(src) == x || name(d) == x => {
                return Some(Effect::Lossy(*p))
            }
            EmuFault::Policy(t)
                if matches!(layer, Layer::Http | Layer::Tcp)
                    && matches!(dst, Dst::Target(i) if n.targets[i].0 == *t) =>
            {
                return timeout
            }
            _ => {}
        }
    }
    None
}

/// The path MTU from `src` to `dst` under the faults `on`: the smallest link MTU on the way.
pub fn path_mtu(on: &[&EmuFault], n: &Names, src: usize, dst: Dst) -> u32 {
    let d = n.node_of(dst);
    on.iter()
        .filter_map(|f| match f {
            EmuFault::Mtu(x, b) if n.names[src] == *x || n.names[d] == *x => Some(*b),
            _ => None,
        })
        .fold(LINK_MTU, u32::min)
}

/// Whether the faults `on` cut `node`'s agent off from Prometheus.
pub fn silent(on: &[&EmuFault], node: &str) -> bool {
    on.iter()
        .any(|f| matches!(f, EmuFault::NodeDown(x) | EmuFault::Cni(x) if x == node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_with_schedules_and_bad_ones_are_named() {
        let f = Injected::parse("cni:node-00017@30s-2m").unwrap();
        assert_eq!(f.fault, EmuFault::Cni("node-00017".into()));
        assert_eq!((f.start, f.end), (30.0, Some(120.0)));
        assert!(!f.on_at(29.9) && f.on_at(30.0) && f.on_at(119.0) && !f.on_at(120.0));
        let f = Injected::parse("partition:zone-a,zone-c").unwrap();
        assert_eq!(
            f.fault,
            EmuFault::Partition("zone-a".into(), "zone-c".into())
        );
        assert!(f.on_at(0.0) && f.on_at(1e9));
        assert_eq!(
            Injected::parse("loss:node-00002,30").unwrap().fault,
            EmuFault::Loss("node-00002".into(), 0.3)
        );
        assert_eq!(
            Injected::parse("mtu:node-00002,1400").unwrap().fault,
            EmuFault::Mtu("node-00002".into(), 1400)
        );
        assert_eq!(
            Injected::parse("policy:web-00001@1m").unwrap().fault,
            EmuFault::Policy("web-00001".into())
        );
        for (bad, why) in [
            ("cni", "expected KIND:WHERE"),
            ("cni:", "no node or zone"),
            ("jitter:node-1", "unknown kind"),
            ("route:node-1", "two different names"),
            ("route:node-1,node-1", "two different names"),
            ("loss:node-1", "expected NODE,PERCENT"),
            ("loss:node-1,100", "above 0, below 100"),
            ("loss:node-1,x", "above 0, below 100"),
            ("mtu:node-1,1500", "from 576 to 1499"),
            ("mtu:node-1,", "expected NODE,BYTES"),
            ("cni:n@soon", "\"soon\""),
            ("cni:n@2m-1m", "end must come after"),
        ] {
            let e = Injected::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn each_fault_fails_exactly_its_cells() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let zones = ["z1", "z1", "z2", "z2"];
        let zone_of = |i: usize| zones[i];
        let targets = vec![("web-c".to_string(), 2), ("web-d".to_string(), 3)];
        let n = Names {
            names: &names,
            zone_of: &zone_of,
            targets: &targets,
        };
        let cell = |f: &EmuFault, s, d, l| effect(&[f], &n, s, Dst::Node(d), l);
        let to_target = |f: &EmuFault, s, t, l| effect(&[f], &n, s, Dst::Target(t), l);
        let timeout = Some(Effect::Fail(ErrorClass::Timeout));
        let down = EmuFault::NodeDown("c".into());
        assert_eq!(cell(&down, 0, 2, Layer::IcmpNode), timeout);
        assert_eq!(to_target(&down, 0, 0, Layer::IcmpPod), timeout);
        assert_eq!(cell(&down, 2, 0, Layer::IcmpNode), None);
        assert!(silent(&[&down], "c") && !silent(&[&down], "a"));
        let cni = EmuFault::Cni("c".into());
        assert_eq!(cell(&cni, 0, 2, Layer::IcmpPod), timeout);
        assert_eq!(cell(&cni, 0, 2, Layer::Http), timeout);
        assert_eq!(to_target(&cni, 0, 0, Layer::Http), timeout);
        assert_eq!(to_target(&cni, 0, 1, Layer::Http), None);
        assert_eq!(cell(&cni, 0, 2, Layer::IcmpNode), None);
        assert!(silent(&[&cni], "c"));
        let part = EmuFault::Partition("z1".into(), "z2".into());
        assert_eq!(cell(&part, 0, 3, Layer::IcmpNode), timeout);
        assert_eq!(cell(&part, 3, 1, Layer::Http), timeout);
        assert_eq!(to_target(&part, 0, 1, Layer::IcmpPod), timeout);
        assert_eq!(cell(&part, 0, 1, Layer::IcmpNode), None);
        assert!(!silent(&[&part], "a"));
        let route = EmuFault::Route("a".into(), "c".into());
        let unreachable = Some(Effect::Fail(ErrorClass::NetUnreachable {
            from: Some(pod_gateway(0)),
        }));
        assert_eq!(cell(&route, 0, 2, Layer::IcmpPod), unreachable);
        assert_eq!(to_target(&route, 0, 0, Layer::Http), unreachable);
        assert_eq!(cell(&route, 2, 0, Layer::Http), timeout);
        assert_eq!(cell(&route, 0, 2, Layer::IcmpNode), None);
        assert_eq!(cell(&route, 0, 1, Layer::IcmpPod), None);
        let loss = EmuFault::Loss("b".into(), 0.3);
        assert_eq!(cell(&loss, 1, 2, Layer::IcmpNode), Some(Effect::Lossy(0.3)));
        assert_eq!(cell(&loss, 0, 1, Layer::IcmpPod), Some(Effect::Lossy(0.3)));
        assert_eq!(cell(&loss, 0, 2, Layer::IcmpPod), None);
        let policy = EmuFault::Policy("web-d".into());
        assert_eq!(to_target(&policy, 0, 1, Layer::Http), timeout);
        assert_eq!(to_target(&policy, 0, 1, Layer::IcmpPod), None);
        assert_eq!(to_target(&policy, 0, 0, Layer::Http), None);
        assert_eq!(cell(&policy, 0, 3, Layer::Http), None);
        let mtu = EmuFault::Mtu("b".into(), 1400);
        assert_eq!(cell(&mtu, 0, 1, Layer::IcmpPod), None, "small echoes pass");
        assert_eq!(path_mtu(&[&mtu], &n, 0, Dst::Node(1)), 1400);
        assert_eq!(path_mtu(&[&mtu], &n, 1, Dst::Target(0)), 1400);
        assert_eq!(path_mtu(&[&mtu], &n, 0, Dst::Node(2)), LINK_MTU);
        assert_eq!(path_mtu(&[], &n, 0, Dst::Node(1)), LINK_MTU);
    }
}
