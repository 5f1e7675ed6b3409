//! The results store: one sliding [`Window`] per (destination, layer), for the current peer set
//! only. Everything that reports (metrics, `/api/v1/results`, later the diagnosis) reads it;
//! only the agent's probe loop writes it. No I/O here, and no lock is held across an await:
//! callers wrap it in a `std::sync::Mutex` and keep critical sections short.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::window::{Window, WindowStats};
use meshprobe_core::model::{DestKind, Family, Layer, ProbeKey, ProbeResult};
use meshprobe_core::mtu::MtuReport;
use meshprobe_core::owners::OwnerMap;
use meshprobe_core::peers::PeerSet;
use meshprobe_core::schedule::{families_of, Task};

#[derive(Debug)]
pub struct Store {
    span: Duration,
    me: String,
    peers: Arc<PeerSet>,
    /// The ownership map of `peers`, built at first use after each new peer set: a scrape
    /// asks for it, and rebuilding it is O(peers) each time.
    owners: OnceLock<Arc<OwnerMap>>,
    active: HashSet<ProbeKey>,
    /// Peers with at least one task: on a sampled plan, the ones this agent probes.
    active_peers: HashSet<String>,
    /// The same peers with their zones, in peer-set order (what `probed_peers` lists).
    probed: Vec<(String, Option<String>)>,
    /// Boxed: a bucket holds its key and value (264 bytes unboxed: a window is 232) and a
    /// table keeps up to half its buckets empty — 1,000 windows took 2,048 buckets, 542 kB
    /// (heaptrack, bdafd95). Boxed, a bucket is 40 bytes and each window one allocation.
    windows: HashMap<ProbeKey, Box<Window>>,
    /// Path-MTU reports, keyed like the ICMP windows of the same address.
    mtu: HashMap<ProbeKey, MtuReport>,
}

/// One destination's figures, per layer, at the first family probed (its primary, unless
/// `--ip-family` leaves that out); the other family's, on a dual-stack destination, in
/// `families`. So a single-family document has the shape it had before families were kept.
#[derive(Debug, Clone, Serialize)]
pub struct PeerResults {
    pub node: String,
    pub zone: Option<String>,
    /// The family of the figures below; only when `families` is not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    pub node_ip: IpAddr,
    pub pod_ip: IpAddr,
    pub layers: BTreeMap<Layer, WindowStats>,
    /// Path MTU toward the pod IP (`icmp_pod`) and the node IP (`icmp_node`), once known.
    pub mtu: BTreeMap<Layer, MtuReport>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub families: BTreeMap<Family, FamilyResults>,
}

/// A destination's figures at one more family.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyResults {
    /// The peer's node address of this family (absent: the node has none) or the target's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<IpAddr>,
    /// The pod's (or target's) address of this family.
    pub ip: IpAddr,
    pub layers: BTreeMap<Layer, WindowStats>,
    pub mtu: BTreeMap<Layer, MtuReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetResults {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: &'static str,
    pub layers: BTreeMap<Layer, WindowStats>,
    pub mtu: BTreeMap<Layer, MtuReport>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub families: BTreeMap<Family, FamilyResults>,
}

/// One window as [`Store::visit`] shows it.
#[derive(Debug)]
pub struct Visit<'a> {
    pub kind: DestKind,
    pub name: &'a str,
    pub zone: Option<&'a str>,
    pub layer: Layer,
    pub family: Family,
    pub stats: WindowStats,
    pub mtu: Option<&'a MtuReport>,
}

/// Everything the store knows at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub peers: Vec<PeerResults>,
    pub targets: Vec<TargetResults>,
}

impl Store {
    pub fn new(me: impl Into<String>, span: Duration) -> Self {
        Store {
            span,
            me: me.into(),
            peers: Arc::new(PeerSet::default()),
            owners: OnceLock::new(),
            active: HashSet::new(),
            active_peers: HashSet::new(),
            probed: Vec::new(),
            windows: HashMap::new(),
            mtu: HashMap::new(),
        }
    }

    /// Adopt a new peer set and the tasks derived from it: windows of destinations or layers
    /// that are gone are dropped at once (their metric series go with them).
    pub fn set_peers(&mut self, peers: Arc<PeerSet>, tasks: &[Task]) {
        self.active = tasks.iter().map(|t| t.key.clone()).collect();
        self.active_peers = tasks
            .iter()
            .filter(|t| t.key.kind == DestKind::Peer)
            .map(|t| t.key.name.clone())
            .collect();
        self.windows.retain(|k, _| self.active.contains(k));
        self.mtu.retain(|k, _| self.active.contains(k));
        self.probed = peers
            .peers
            .iter()
            .filter(|p| p.node != self.me && self.active_peers.contains(&p.node))
            .map(|p| (p.node.clone(), p.zone.clone()))
            .collect();
        if !Arc::ptr_eq(&self.peers, &peers) {
            self.owners = OnceLock::new();
        }
        self.peers = peers;
    }

    /// The ownership map of the current peer set (built once per peer set).
    pub fn owners(&self) -> &OwnerMap {
        self.owners_shared()
    }

    fn owners_shared(&self) -> &Arc<OwnerMap> {
        self.owners.get_or_init(|| Arc::new(self.peers.owners()))
    }

    /// Takes `other`'s ownership map when both hold the same peer set (the same `Arc`), so
    /// stores of one set share one map; else nothing changes.
    pub fn share_owners(&mut self, other: &Store) {
        if Arc::ptr_eq(&self.peers, &other.peers) {
            self.owners = OnceLock::from(other.owners_shared().clone());
        }
    }

    /// The peers this agent probes (at least one task each: on a sampled plan, its share of
    /// the plan this epoch), with their zones, in peer-set order. Computed when the peer set
    /// or the tasks change, so a scrape pays for the probed peers only.
    pub fn probed_peers(&self) -> &[(String, Option<String>)] {
        &self.probed
    }

    pub fn peers(&self) -> &Arc<PeerSet> {
        &self.peers
    }

    /// Record a probe's result. Results for keys no longer active (a probe that was in flight
    /// when its peer left) are dropped, so departed peers do not come back.
    pub fn record(&mut self, key: &ProbeKey, at: Instant, result: &ProbeResult) -> bool {
        if !self.active.contains(key) {
            return false;
        }
        // Look up before inserting: the probe loop's hot path clones the key only once per
        // destination, not once per probe.
        match self.windows.get_mut(key) {
            Some(w) => w.record(at, result),
            None => {
                let mut w = Box::new(Window::new(self.span));
                w.record(at, result);
                self.windows.insert(key.clone(), w);
            }
        }
        true
    }

    /// Failed probes in a row for `key` (None: not an active destination, or no probe yet).
    pub fn consecutive_failures(&self, key: &ProbeKey) -> Option<u32> {
        self.windows.get(key).map(|w| w.consecutive_failures())
    }

    /// Record a destination's path-MTU report (dropped, like results, once the key is gone).
    pub fn set_mtu(&mut self, key: &ProbeKey, report: MtuReport) -> bool {
        if !self.active.contains(key) {
            return false;
        }
        self.mtu.insert(key.clone(), report);
        true
    }

    fn mtu_of(&self, kind: DestKind, name: &str, family: Family) -> BTreeMap<Layer, MtuReport> {
        [Layer::IcmpPod, Layer::IcmpNode]
            .into_iter()
            .filter_map(|layer| {
                let key = ProbeKey {
                    kind,
                    name: name.to_string(),
                    layer,
                    family,
                };
                self.mtu.get(&key).map(|r| (layer, r.clone()))
            })
            .collect()
    }

    pub fn stats(&self, key: &ProbeKey, now: Instant) -> Option<WindowStats> {
        self.windows.get(key).map(|w| w.stats(now))
    }

    fn layers(
        &self,
        kind: DestKind,
        name: &str,
        family: Family,
        now: Instant,
    ) -> BTreeMap<Layer, WindowStats> {
        Layer::ALL
            .iter()
            .filter_map(|layer| {
                let key = ProbeKey {
                    kind,
                    name: name.to_string(),
                    layer: *layer,
                    family,
                };
                self.stats(&key, now).map(|s| (*layer, s))
            })
            .collect()
    }

    /// Visit every (destination, layer) window of the current peer set (ourselves excluded), in
    /// file order, with its figures and path-MTU report: what [`Store::snapshot`] holds, one
    /// window at a time, so a scrape need not copy the whole store.
    pub fn visit(&self, now: Instant, mut f: impl FnMut(Visit<'_>)) {
        // Only probed peers can have windows (`set_peers` keeps the active keys' only, `record`
        // refuses the others): on a sampled plan a scrape then pays for its ~17 peers, not for
        // the whole peer set.
        let dests = self
            .probed
            .iter()
            .map(|(node, zone)| (DestKind::Peer, node.as_str(), zone.as_deref()))
            .chain(
                self.peers
                    .targets
                    .iter()
                    .map(|t| (DestKind::Target, t.name.as_str(), None)),
            );
        for (kind, name, zone) in dests {
            let mut key = ProbeKey {
                kind,
                name: name.to_string(),
                layer: Layer::IcmpPod,
                family: Family::Ipv4,
            };
            for family in Family::ALL {
                key.family = family;
                for layer in Layer::ALL {
                    key.layer = layer;
                    if let Some(w) = self.windows.get(&key) {
                        f(Visit {
                            kind,
                            name,
                            zone,
                            layer,
                            family,
                            stats: w.stats(now),
                            mtu: self.mtu.get(&key),
                        });
                    }
                }
            }
        }
    }

    /// Whether any probe of this destination at `family` is planned.
    fn probes(&self, kind: DestKind, name: &str, family: Family) -> bool {
        Layer::ALL.into_iter().any(|layer| {
            self.active.contains(&ProbeKey {
                kind,
                name: name.to_string(),
                layer,
                family,
            })
        })
    }

    /// The families this destination is probed at, its primary's first.
    fn probed_families(
        &self,
        kind: DestKind,
        name: &str,
        primary: IpAddr,
        all: &[IpAddr],
    ) -> Vec<Family> {
        families_of(primary, all)
            .filter(|f| self.probes(kind, name, *f))
            .collect()
    }

    /// A destination's families in the order it lists them: the first (on top of its
    /// document) and the others' figures. `addr(f)` is its (address, node address) of `f`.
    fn by_family(
        &self,
        kind: DestKind,
        name: &str,
        primary: IpAddr,
        all: &[IpAddr],
        addr: impl Fn(Family) -> Option<(IpAddr, Option<IpAddr>)>,
        now: Instant,
    ) -> (Family, BTreeMap<Family, FamilyResults>) {
        let fams = self.probed_families(kind, name, primary, all);
        let first = fams.first().copied().unwrap_or(Family::of(primary));
        let others = fams
            .iter()
            .skip(1)
            .filter_map(|&f| {
                let (ip, node_ip) = addr(f)?;
                Some((
                    f,
                    FamilyResults {
                        node_ip,
                        ip,
                        layers: self.layers(kind, name, f, now),
                        mtu: self.mtu_of(kind, name, f),
                    },
                ))
            })
            .collect();
        (first, others)
    }

    /// Every destination of the current peer set (ourselves excluded), in file order.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let peers = self
            .peers
            .peers
            .iter()
            // Only peers this agent probes: on a sampled plan the others would be thousands
            // of empty entries in every results document.
            .filter(|p| p.node != self.me && self.active_peers.contains(&p.node))
            .map(|p| {
                let kind = DestKind::Peer;
                let addr = |f: Family| Some((p.pod_ip_of(f.is_v6())?, p.node_ip_of(f.is_v6())));
                let (first, families) =
                    self.by_family(kind, &p.node, p.pod_ip, &p.pod_ips, addr, now);
                let (pod_ip, node_ip) = addr(first).unwrap_or((p.pod_ip, None));
                PeerResults {
                    node: p.node.clone(),
                    zone: p.zone.clone(),
                    family: (!families.is_empty()).then_some(first),
                    node_ip: node_ip.unwrap_or(p.node_ip),
                    pod_ip,
                    layers: self.layers(kind, &p.node, first, now),
                    mtu: self.mtu_of(kind, &p.node, first),
                    families,
                }
            })
            .collect();
        let targets = self
            .peers
            .targets
            .iter()
            .map(|t| {
                let kind = DestKind::Target;
                let addr = |f: Family| Some((t.ip_of(f.is_v6())?, None));
                let (first, families) = self.by_family(kind, &t.name, t.ip, &t.ips, addr, now);
                TargetResults {
                    name: t.name.clone(),
                    family: (!families.is_empty()).then_some(first),
                    ip: addr(first).map_or(t.ip, |(ip, _)| ip),
                    port: t.port,
                    protocol: t.protocol.as_str(),
                    layers: self.layers(kind, &t.name, first, now),
                    mtu: self.mtu_of(kind, &t.name, first),
                    families,
                }
            })
            .collect();
        Snapshot { peers, targets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshprobe_core::model::ErrorClass;
    use meshprobe_core::peers::parse;
    use meshprobe_core::schedule::{tasks, TaskParams};

    const PARAMS: TaskParams = TaskParams {
        default_port: 9464,
        icmp_count: 1,
        icmp_size: 56,
        families: meshprobe_core::model::IpFamilies::Auto,
    };

    fn setup(text: &str) -> (Store, Vec<Task>) {
        let set = Arc::new(parse(text).unwrap());
        let t = tasks(&set, "a", PARAMS);
        let mut s = Store::new("a", Duration::from_secs(60));
        s.set_peers(set, &t);
        (s, t)
    }

    const ABC: &str = "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2, zone: z}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.0.3}\n";

    #[test]
    fn snapshot_lists_only_the_peers_this_agent_probes() {
        // A sampled plan: tasks for c only. b is in the peer set but not probed.
        let set = Arc::new(parse(ABC).unwrap());
        let mut t = tasks(&set, "a", PARAMS);
        t.retain(|t| t.key.name != "b");
        let mut s = Store::new("a", Duration::from_secs(60));
        s.set_peers(set.clone(), &t);
        let names: Vec<_> = s
            .snapshot(Instant::now())
            .peers
            .into_iter()
            .map(|p| p.node)
            .collect();
        assert_eq!(names, ["c"]);
        assert_eq!(s.probed_peers(), [("c".to_string(), None)]);
        // The next epoch assigns b instead: c leaves the documents at once.
        let t2: Vec<Task> = tasks(&set, "a", PARAMS)
            .into_iter()
            .filter(|t| t.key.name != "c")
            .collect();
        s.set_peers(set, &t2);
        let names: Vec<_> = s
            .snapshot(Instant::now())
            .peers
            .into_iter()
            .map(|p| p.node)
            .collect();
        assert_eq!(names, ["b"]);
        assert_eq!(s.probed_peers(), [("b".to_string(), Some("z".to_string()))]);
    }

    #[test]
    fn the_ownership_map_is_built_once_per_peer_set_and_shared_by_stores_of_one_set() {
        use meshprobe_core::owners::Owner;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (mut s, t) = setup(ABC);
        let first: *const OwnerMap = s.owners();
        assert!(matches!(
            s.owners().lookup(ip("10.1.0.2")),
            Owner::Node { .. }
        ));
        // The same set again (a new epoch's tasks): the same map.
        s.set_peers(s.peers().clone(), &t);
        assert!(std::ptr::eq(first, s.owners()));
        // A new set: b's pod moved; the old address is no longer b's.
        let moved = ABC.replace("10.1.0.2", "10.1.0.9");
        let set = Arc::new(parse(&moved).unwrap());
        s.set_peers(set.clone(), &tasks(&set, "a", PARAMS));
        assert!(matches!(
            s.owners().lookup(ip("10.1.0.9")),
            Owner::Node { .. }
        ));
        assert!(matches!(s.owners().lookup(ip("10.1.0.2")), Owner::Unknown));
        // Another store of the same set shares its map; one of another set does not.
        let mut other = Store::new("b", Duration::from_secs(60));
        other.set_peers(set.clone(), &tasks(&set, "b", PARAMS));
        other.share_owners(&s);
        assert!(std::ptr::eq(other.owners(), s.owners()));
        let (mut third, _) = setup(ABC);
        third.share_owners(&s);
        assert!(!std::ptr::eq(third.owners(), s.owners()));
        assert!(matches!(
            third.owners().lookup(ip("10.1.0.2")),
            Owner::Node { .. }
        ));
    }

    #[test]
    fn snapshot_lists_every_other_peer_with_its_layers() {
        let (mut s, t) = setup(ABC);
        let now = Instant::now();
        for task in &t {
            s.record(
                &task.key,
                now,
                &ProbeResult::ok(Duration::from_millis(1), None),
            );
        }
        let snap = s.snapshot(now);
        let names: Vec<_> = snap.peers.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(snap.peers[0].zone.as_deref(), Some("z"));
        let layers: Vec<_> = snap.peers[0].layers.keys().copied().collect();
        assert_eq!(layers, [Layer::IcmpPod, Layer::IcmpNode, Layer::Http]);
        assert_eq!(snap.peers[1].layers[&Layer::Http].reachable, Some(true));
    }

    #[test]
    fn a_departed_peer_takes_its_windows_and_late_results_are_dropped() {
        let (mut s, t) = setup(ABC);
        let now = Instant::now();
        for task in &t {
            s.record(&task.key, now, &ProbeResult::failed(1, ErrorClass::Timeout));
        }
        let c_key = t.iter().find(|t| t.key.name == "c").unwrap().key.clone();
        let fewer = Arc::new(parse("peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2}\n").unwrap());
        let t2 = tasks(&fewer, "a", PARAMS);
        s.set_peers(fewer, &t2);
        assert!(s.stats(&c_key, now).is_none());
        // A probe that was in flight when c left reports late: it must not resurrect c.
        assert!(!s.record(
            &c_key,
            now,
            &ProbeResult::ok(Duration::from_millis(1), None)
        ));
        assert!(s.stats(&c_key, now).is_none());
        let snap = s.snapshot(now);
        assert_eq!(snap.peers.len(), 1);
        assert_eq!(snap.peers[0].layers.len(), 3);
    }

    #[test]
    fn peers_not_yet_probed_have_no_layers() {
        let (s, _) = setup(ABC);
        let snap = s.snapshot(Instant::now());
        assert_eq!(snap.peers.len(), 2);
        assert!(snap.peers.iter().all(|p| p.layers.is_empty()));
    }

    #[test]
    fn a_dual_stack_destination_keeps_each_family_apart_the_primary_on_top() {
        let dual = "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.2, node_ips: [10.0.0.2, 'fd00::2'], pod_ips: [10.1.0.2, 'fd01::2']}\n  - {node: c, node_ip: 10.0.0.3, pod_ip: 10.1.0.3}\ntargets:\n  - {name: web, ip: 'fd01::9', ips: ['fd01::9', 10.1.0.9], port: 80, protocol: tcp}\n";
        let (mut s, t) = setup(dual);
        let now = Instant::now();
        for task in &t {
            // IPv6 fails everywhere, IPv4 answers: the families must not mix.
            let r = if task.key.family == Family::Ipv6 {
                ProbeResult::failed(1, meshprobe_core::model::ErrorClass::Timeout)
            } else {
                ProbeResult::ok(Duration::from_millis(1), None)
            };
            s.record(&task.key, now, &r);
        }
        let doc = serde_json::to_value(s.snapshot(now)).unwrap();
        let b = &doc["peers"][0];
        assert_eq!(b["family"], "ipv4");
        assert_eq!(
            (b["node_ip"].as_str(), b["pod_ip"].as_str()),
            (Some("10.0.0.2"), Some("10.1.0.2"))
        );
        assert_eq!(b["layers"]["http"]["reachable"], true);
        let v6 = &b["families"]["ipv6"];
        assert_eq!(
            (v6["node_ip"].as_str(), v6["ip"].as_str()),
            (Some("fd00::2"), Some("fd01::2"))
        );
        for layer in ["icmp_pod", "icmp_node", "http"] {
            assert_eq!(v6["layers"][layer]["reachable"], false, "{layer}");
        }
        // A single-family peer keeps the shape it had before families were kept.
        let c = doc["peers"][1].as_object().unwrap();
        assert!(
            !c.contains_key("family") && !c.contains_key("families"),
            "{c:?}"
        );
        // A target whose primary is IPv6: its figures on top, IPv4's beside.
        let web = &doc["targets"][0];
        assert_eq!(
            (web["family"].as_str(), web["ip"].as_str()),
            (Some("ipv6"), Some("fd01::9"))
        );
        assert_eq!(web["layers"]["tcp"]["reachable"], false);
        assert_eq!(web["families"]["ipv4"]["ip"], "10.1.0.9");
        assert_eq!(web["families"]["ipv4"]["layers"]["tcp"]["reachable"], true);
        // visit() sees every (family, layer) window once.
        let mut seen = Vec::new();
        s.visit(now, |v| {
            seen.push(format!("{} {} {}", v.name, v.family, v.layer))
        });
        assert_eq!(seen.len(), 3 * 2 + 3 + 2 * 2, "{seen:?}");
        // An IPv4-only agent on the same cluster: b on top at IPv4, nothing beside.
        let set = Arc::new(parse(dual).unwrap());
        let v4 = TaskParams {
            families: meshprobe_core::model::IpFamilies::Ipv4,
            ..PARAMS
        };
        let t4 = tasks(&set, "a", v4);
        let mut s4 = Store::new("a", Duration::from_secs(60));
        s4.set_peers(set, &t4);
        let doc = serde_json::to_value(s4.snapshot(now)).unwrap();
        assert!(doc["peers"][0].get("families").is_none());
        assert_eq!(
            doc["targets"][0]["ip"], "10.1.0.9",
            "the target at its IPv4 address"
        );
        assert!(doc["targets"][0].get("family").is_none());
    }
}
