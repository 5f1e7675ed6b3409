//! The peers file: every probe agent and every selected target, in YAML or JSON.
//!
//! ```yaml
//! peers:                      # every probe agent, this one included (found by node name)
//!   - node: node-2            # node name, unique
//!     node_ip: 198.18.0.12    # the node's own address (host network)
//!     pod_ip: 198.19.2.10     # the probe agent's pod address
//!     zone: zone-b            # optional
//!     port: 9464              # optional: the agent's HTTP port on pod_ip (default: our own)
//!     pod_cidrs: [198.19.2.0/26, 198.19.7.64/26]  # optional: the node's pod CIDRs (facts)
//!     pod_gateway: 169.254.1.1 # optional: the pods' default gateway on this node
//!     node_ips: [198.18.0.12, "2001:db8::12"]  # optional, dual-stack: every family's node
//!     pod_ips: [198.19.2.10, "2001:db8:2::10"] # and pod address, the first = node_ip / pod_ip
//!     pod_gateways: [169.254.1.1, "fe80::1"]   # and gateway, the first = pod_gateway
//! targets:                    # selected target pods every agent probes
//!   - name: web-2
//!     ip: 198.19.2.11
//!     port: 8080
//!     protocol: http          # http | tcp
//!     path: /healthz          # http only (default /)
//!     node: node-2            # optional: the node the target pod runs on
//!     ips: [198.19.2.11, "2001:db8:2::11"]    # optional, dual-stack: the first = ip
//! ```
//!
//! The address lists follow Kubernetes' `podIPs`: at most one address per family, the first
//! the primary (`pod_ip`, `node_ip`, `ip`). Probing is still of the primary addresses only;
//! the other family's addresses are facts for the ownership map (an ICMP error from a node's
//! IPv6 address is that node's) — docs/design/dual-stack.md has the plan.
//!
//! `pod_cidrs` and a target's `node` are facts for the ownership map ([`crate::owners`]):
//! without them an address that is no node's node IP or pod IP has an unknown owner.
//!
//! Parsing is pure ([`parse`]): text in, a validated [`PeerSet`] or an error naming the line or
//! field out. Unknown fields are refused so a typo does not silently drop a setting.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::net::Cidr;
use crate::owners::{self, NodeAddrs, OwnerMap, TargetAddrs};
use crate::parse::validate_name;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub node: String,
    pub node_ip: IpAddr,
    pub pod_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_gateway: Option<IpAddr>,
    /// Every family's node address, `node_ip` first (empty: `node_ip` alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ips: Vec<IpAddr>,
    /// Every family's pod address, `pod_ip` first (empty: `pod_ip` alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<IpAddr>,
    /// Every family's pod gateway, `pod_gateway` first (empty: `pod_gateway` alone). An ICMP
    /// error from a gateway outside every pod CIDR is placed on its node only if stated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_gateways: Vec<IpAddr>,
}

impl Peer {
    /// Its node address of the family of `v6`, if it has one.
    pub fn node_ip_of(&self, v6: bool) -> Option<IpAddr> {
        of_family(self.node_ip, &self.node_ips, v6)
    }

    /// Its pod address of the family of `v6`, if it has one.
    pub fn pod_ip_of(&self, v6: bool) -> Option<IpAddr> {
        of_family(self.pod_ip, &self.pod_ips, v6)
    }
}

/// The address of one family among a primary and its list (Kubernetes' `podIP` / `podIPs`).
fn of_family(primary: IpAddr, all: &[IpAddr], v6: bool) -> Option<IpAddr> {
    std::iter::once(primary)
        .chain(all.iter().copied())
        .map(|ip| ip.to_canonical())
        .find(|ip| ip.is_ipv6() == v6)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Every family's address, `ip` first (empty: `ip` alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

impl Target {
    /// Its address of the family of `v6`, if it has one.
    pub fn ip_of(&self, v6: bool) -> Option<IpAddr> {
        of_family(self.ip, &self.ips, v6)
    }

    /// The HTTP path probed (`/` when none is given).
    pub fn http_path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}

/// A validated set of peers and targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSet {
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub targets: Vec<Target>,
}

impl PeerSet {
    pub fn peer(&self, node: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.node == node)
    }

    /// The set's facts about addresses, for [`OwnerMap::new`] and [`owners::validate`].
    pub fn addrs(&self) -> (Vec<NodeAddrs>, Vec<TargetAddrs>) {
        let nodes = self
            .peers
            .iter()
            .map(|p| NodeAddrs {
                name: p.node.clone(),
                node_ip: Some(p.node_ip),
                pod_ip: Some(p.pod_ip),
                node_ips: p.node_ips.clone(),
                pod_ips: p.pod_ips.clone(),
                pod_gateway: p.pod_gateway,
                pod_gateways: p.pod_gateways.clone(),
                pod_cidrs: p.pod_cidrs.clone(),
            })
            .collect();
        let targets = self
            .targets
            .iter()
            .map(|t| TargetAddrs {
                name: t.name.clone(),
                ip: Some(t.ip),
                ips: t.ips.clone(),
                node: t.node.clone(),
            })
            .collect();
        (nodes, targets)
    }

    /// The ownership map of this set's facts.
    pub fn owners(&self) -> OwnerMap {
        let (nodes, targets) = self.addrs();
        OwnerMap::new(&nodes, &targets)
    }
}

/// Upper bounds that keep a runaway file from exhausting the agent.
pub const MAX_PEERS: usize = 10_000;
pub const MAX_TARGETS: usize = 1_000;
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
const MAX_PATH_LEN: usize = 1024;
/// Calico gives a busy node a handful of blocks; 64 is far above any real layout.
pub const MAX_POD_CIDRS: usize = 64;

/// Parse and validate a peers file's text. The error message names the line/column (syntax)
/// or the entry and field (validation); the caller prefixes the file's path.
pub fn parse(text: &str) -> Result<PeerSet, String> {
    if text.trim().is_empty() {
        return Err("empty file (expected `peers:` and optionally `targets:`)".into());
    }
    // YAML is a superset of JSON: one parser reads both, with line and column in its errors.
    let set: PeerSet = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    validate(&set)?;
    Ok(set)
}

/// Check what serde cannot: unique names, sane values, bounded sizes.
pub fn validate(set: &PeerSet) -> Result<(), String> {
    if set.peers.len() > MAX_PEERS {
        return Err(format!(
            "peers: {} entries, at most {MAX_PEERS} allowed",
            set.peers.len()
        ));
    }
    if set.targets.len() > MAX_TARGETS {
        return Err(format!(
            "targets: {} entries, at most {MAX_TARGETS} allowed",
            set.targets.len()
        ));
    }
    let mut nodes = HashSet::new();
    for (i, p) in set.peers.iter().enumerate() {
        let at = format!("peers[{i}]");
        validate_name(&p.node).map_err(|e| format!("{at}.node {:?}: {e}", p.node))?;
        if !nodes.insert(p.node.as_str()) {
            return Err(format!("{at}.node {:?}: duplicate node name", p.node));
        }
        if let Some(z) = &p.zone {
            validate_name(z).map_err(|e| format!("{at}.zone {z:?}: {e}"))?;
        }
        if p.port == Some(0) {
            return Err(format!("{at}.port: must be between 1 and 65535"));
        }
        for (field, ip) in [("node_ip", p.node_ip), ("pod_ip", p.pod_ip)]
            .into_iter()
            .chain(p.pod_gateway.map(|g| ("pod_gateway", g)))
        {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(format!("{at}.{field} {ip}: not a unicast address"));
            }
        }
        check_family_list(&at, "node_ips", p.node_ip, &p.node_ips)?;
        check_family_list(&at, "pod_ips", p.pod_ip, &p.pod_ips)?;
        if !p.pod_gateways.is_empty() {
            let Some(gw) = p.pod_gateway else {
                return Err(format!(
                    "{at}.pod_gateways: needs pod_gateway (the primary family's, listed first)"
                ));
            };
            check_family_list(&at, "pod_gateways", gw, &p.pod_gateways)?;
        }
        if p.pod_cidrs.len() > MAX_POD_CIDRS {
            return Err(format!(
                "{at}.pod_cidrs: {} entries, at most {MAX_POD_CIDRS} allowed",
                p.pod_cidrs.len()
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, t) in set.targets.iter().enumerate() {
        let at = format!("targets[{i}]");
        validate_name(&t.name).map_err(|e| format!("{at}.name {:?}: {e}", t.name))?;
        if !names.insert(t.name.as_str()) {
            return Err(format!("{at}.name {:?}: duplicate target name", t.name));
        }
        if t.port == 0 {
            return Err(format!("{at}.port: must be between 1 and 65535"));
        }
        if t.ip.is_unspecified() || t.ip.is_multicast() {
            return Err(format!("{at}.ip {}: not a unicast address", t.ip));
        }
        if let Some(n) = &t.node {
            validate_name(n).map_err(|e| format!("{at}.node {n:?}: {e}"))?;
        }
        check_family_list(&at, "ips", t.ip, &t.ips)?;
        match (t.protocol, &t.path) {
            (Protocol::Tcp, Some(_)) => {
                return Err(format!("{at}.path: only http targets take a path"));
            }
            (Protocol::Http, Some(path))
                if path.len() > MAX_PATH_LEN || !crate::parse::is_request_path(path) =>
            {
                return Err(format!(
                    "{at}.path {path:?}: must start with '/', be printable ASCII without spaces (percent-encode the rest, and ` \" < > {{ }}), at most {MAX_PATH_LEN} bytes"
                ));
            }
            _ => {}
        }
    }
    let (nodes, targets) = set.addrs();
    owners::validate(&nodes, &targets)
}

/// A dual-stack address list as Kubernetes' `podIPs`: the primary first, at most one address
/// per family, every one unicast. Empty is the primary alone.
fn check_family_list(at: &str, field: &str, primary: IpAddr, all: &[IpAddr]) -> Result<(), String> {
    let Some(first) = all.first() else {
        return Ok(());
    };
    if first.to_canonical() != primary.to_canonical() {
        return Err(format!(
            "{at}.{field}: the first entry must be the primary address {primary} (got {first})"
        ));
    }
    if all.len() > 2 {
        return Err(format!(
            "{at}.{field}: {} entries, at most one per family (2) allowed",
            all.len()
        ));
    }
    for ip in all {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("{at}.{field} {ip}: not a unicast address"));
        }
    }
    if let [a, b] = all {
        if a.to_canonical().is_ipv6() == b.to_canonical().is_ipv6() {
            return Err(format!(
                "{at}.{field}: {a} and {b} are of one family; at most one address per family"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
peers:
  - node: node-1
    node_ip: 198.18.1.11
    pod_ip: 198.19.1.10
    zone: zone-a
  - node: node-2
    node_ip: 198.18.2.12
    pod_ip: 198.19.2.10
    zone: zone-b
    port: 9000
targets:
  - name: web-2
    ip: 198.19.2.11
    port: 8080
    protocol: http
    path: /healthz
  - name: db
    ip: 198.19.1.12
    port: 5432
    protocol: tcp
"#;

    #[test]
    fn parses_the_documented_schema() {
        let set = parse(GOOD).unwrap();
        assert_eq!(set.peers.len(), 2);
        assert_eq!(set.peer("node-2").unwrap().port, Some(9000));
        assert_eq!(set.targets[0].http_path(), "/healthz");
        assert_eq!(set.targets[1].protocol, Protocol::Tcp);
    }

    #[test]
    fn pod_cidrs_and_target_nodes_are_facts_for_the_owner_map() {
        let text = r#"
peers:
  - {node: a, node_ip: 198.18.0.11, pod_ip: 198.19.0.10, pod_cidrs: [198.19.0.0/26, 198.19.0.128/26]}
  - {node: b, node_ip: 198.18.0.12, pod_ip: 198.19.0.70, pod_cidrs: ["198.19.0.64/26"], pod_gateway: 169.254.1.1}
targets:
  - {name: web-b, ip: 198.19.0.71, port: 80, protocol: http, node: b}
  - {name: db, ip: 198.19.0.140, port: 5432, protocol: tcp}
"#;
        let set = parse(text).unwrap();
        assert_eq!(set.peers[0].pod_cidrs.len(), 2);
        assert_eq!(set.peers[0].pod_cidrs[1].to_string(), "198.19.0.128/26");
        let m = set.owners();
        assert_eq!(m.target_node("web-b"), Some(1));
        assert_eq!(m.target_node("db"), Some(0));
        // The agent's JSON form carries the facts, and reads back the same.
        let json = serde_json::to_string(&set).unwrap();
        assert!(json.contains(r#""pod_cidrs":["198.19.0.64/26"]"#), "{json}");
        assert_eq!(parse(&json).unwrap(), set);
        // Without the facts nothing is inferred: both targets are unknown.
        let bare = parse(
            "peers:\n  - {node: a, node_ip: 198.18.0.11, pod_ip: 198.19.0.10}\ntargets:\n  - {name: db, ip: 198.19.0.140, port: 5432, protocol: tcp}\n",
        )
        .unwrap();
        assert_eq!(bare.owners().target_node("db"), None);
    }

    /// Dual-stack lists (Kubernetes' `podIPs` shape): each family's address is found, and every
    /// one is a fact of the ownership map.
    #[test]
    fn dual_stack_addresses_are_read_per_family_and_owned() {
        let set = parse(
            r#"
peers:
  - node: a
    node_ip: 10.0.0.1
    pod_ip: 10.1.0.1
    node_ips: [10.0.0.1, "fd00::1"]
    pod_ips: [10.1.0.1, "fd00:1::1"]
    pod_cidrs: [10.1.0.0/24, "fd00:1::/64"]
  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.1.1}
targets:
  - {name: w, ip: "fd00:1::9", port: 80, protocol: tcp, ips: ["fd00:1::9", 10.1.0.9], node: a}
"#,
        )
        .unwrap();
        let a = &set.peers[0];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(a.pod_ip_of(true), ip("fd00:1::1"));
        assert_eq!(a.pod_ip_of(false), ip("10.1.0.1"));
        assert_eq!(a.node_ip_of(true), ip("fd00::1"));
        assert_eq!(set.peers[1].pod_ip_of(true), None);
        assert_eq!(set.peers[1].node_ip_of(false), ip("10.0.0.2"));
        assert_eq!(set.targets[0].ip_of(false), ip("10.1.0.9"));
        let owners = set.owners();
        for (addr, want) in [
            ("fd00::1", "a node IP"),
            ("fd00:1::1", "a pod IP"),
            ("::ffff:10.1.0.9", "a target pod IP"),
            ("fd00:1::77", "a pod CIDR"),
            ("fd00:2::1", "unknown"),
        ] {
            let got = match owners.lookup(addr.parse().unwrap()) {
                owners::Owner::Node { node, role } => {
                    format!("{} {}", owners.names()[node], role.describe())
                }
                other => format!("{other:?}").to_lowercase(),
            };
            assert_eq!(got, want, "{addr}");
        }
        // The lists survive a round trip (what agents publish) and stay absent when empty.
        let json = serde_json::to_string(&set).unwrap();
        assert!(
            json.contains(r#""pod_ips":["10.1.0.1","fd00:1::1"]"#),
            "{json}"
        );
        assert_eq!(json.matches("pod_ips").count(), 1, "{json}");
    }

    #[test]
    fn json_is_accepted() {
        let json = r#"{"peers":[{"node":"a","node_ip":"10.0.0.1","pod_ip":"10.1.0.1"}]}"#;
        let set = parse(json).unwrap();
        assert_eq!(set.peers[0].node, "a");
        assert!(set.targets.is_empty());
    }

    #[test]
    fn bad_files_are_refused_with_the_place_named() {
        let table: &[(&str, &str)] = &[
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_ips: [\"fd00::1\", 10.1.0.1]}\n",
                "peers[0].pod_ips: the first entry must be the primary address 10.1.0.1 (got fd00::1)",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_ips: [10.1.0.1, 10.1.0.2]}\n",
                "peers[0].pod_ips: 10.1.0.1 and 10.1.0.2 are of one family",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, node_ips: [10.0.0.1, \"fd00::1\", \"fd00::2\"]}\n",
                "peers[0].node_ips: 3 entries, at most one per family (2) allowed",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, node_ips: [10.0.0.1, \"ff02::1\"]}\n",
                "peers[0].node_ips ff02::1: not a unicast address",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_cidrs: [\"fd00:1::/64\"], pod_ips: [10.1.0.1, \"fd00:2::1\"]}\n",
                "peers[0].pod_cidrs: none holds the node's pod_ip fd00:2::1",
            ),
            (
                "peers: []\ntargets:\n  - {name: w, ip: 10.1.0.9, port: 80, protocol: tcp, ips: [10.1.0.9, 10.1.0.8]}\n",
                "targets[0].ips: 10.1.0.9 and 10.1.0.8 are of one family",
            ),
            ("", "empty file"),
            ("peers: [", "line"),
            (
                "peers:\n  - node: a\n    node_ip: 10.0.0.300\n    pod_ip: 10.1.0.1\n",
                "peers[0].node_ip: invalid IP address syntax at line 3",
            ),
            ("peers:\n  - node: a\n    node_ip: 10.0.0.1\n", "missing field `pod_ip`"),
            (
                "peers:\n  - node: a\n    node_ip: 10.0.0.1\n    pod_ip: 10.1.0.1\n    podip: 1\n",
                "unknown field `podip`",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n  - {node: a, node_ip: 10.0.0.2, pod_ip: 10.1.0.2}\n",
                "peers[1].node \"a\": duplicate",
            ),
            (
                "peers:\n  - {node: 'a b', node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\n",
                "peers[0].node \"a b\"",
            ),
            (
                "peers:\n  - {node: a, node_ip: 0.0.0.0, pod_ip: 10.1.0.1}\n",
                "peers[0].node_ip 0.0.0.0",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, port: 0}\n",
                "peers[0].port",
            ),
            (
                "targets:\n  - {name: t, ip: 10.0.0.1, port: 80, protocol: udp}\n",
                "unknown variant `udp`",
            ),
            (
                "targets:\n  - {name: t, ip: 10.0.0.1, port: 80, protocol: tcp, path: /x}\n",
                "targets[0].path: only http",
            ),
            (
                "targets:\n  - {name: t, ip: 10.0.0.1, port: 80, protocol: http, path: x}\n",
                "targets[0].path \"x\"",
            ),
            (
                "targets:\n  - {name: t, ip: 10.0.0.1, port: 80, protocol: http, path: /he`-lthz}\n",
                "targets[0].path \"/he`-lthz\": must start with '/', be printable ASCII",
            ),
            (
                // YAML's `\uFFFF` escape: accepted once, it did not survive the agent's own
                // JSON form (a raw U+FFFF is not YAML) — found by fuzzing.
                "targets:\n  - {name: t, ip: 10.0.0.1, port: 80, protocol: http, path: \"/a\\uFFFF\"}\n",
                "percent-encode the rest",
            ),
            (
                "targets:\n  - {name: t, ip: 10.0.0.1, port: 80, protocol: http, path: /caf\u{e9}}\n",
                "percent-encode the rest",
            ),
            (
                "targets:\n  - {name: t, ip: 10.0.0.1, port: 80, protocol: http}\n  - {name: t, ip: 10.0.0.2, port: 80, protocol: http}\n",
                "targets[1].name \"t\": duplicate",
            ),
            ("peer: []\n", "unknown field `peer`"),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_gateways: [10.1.0.1]}\n",
                "peers[0].pod_gateways: needs pod_gateway",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_gateway: 10.1.0.254, pod_gateways: ['fd00::1', 10.1.0.254]}\n",
                "peers[0].pod_gateways: the first entry must be the primary address 10.1.0.254",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_gateway: 10.1.0.254, pod_gateways: [10.1.0.254, 10.1.0.253]}\n",
                "peers[0].pod_gateways: 10.1.0.254 and 10.1.0.253 are of one family",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_cidrs: [10.1.0.0/33]}\n",
                "peers[0].pod_cidrs: \"10.1.0.0/33\" is not a CIDR (ADDRESS/LENGTH",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_cidrs: [10.2.0.0/24]}\n",
                "peers[0].pod_cidrs: none holds the node's pod_ip 10.1.0.1",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_cidrs: [10.1.0.0/24]}\n  - {node: b, node_ip: 10.0.0.2, pod_ip: 10.1.0.129, pod_cidrs: [10.1.0.128/25]}\n",
                "peers[1].pod_cidrs[0] 10.1.0.128/25: overlaps peers[0].pod_cidrs[0] 10.1.0.0/24 of node \"a\"",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1, pod_gateway: 224.0.0.1}\n",
                "peers[0].pod_gateway 224.0.0.1",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\ntargets:\n  - {name: t, ip: 10.1.0.2, port: 80, protocol: tcp, node: b}\n",
                "targets[0].node \"b\": no peer has this node name",
            ),
            (
                "peers:\n  - {node: a, node_ip: 10.0.0.1, pod_ip: 10.1.0.1}\ntargets:\n  - {name: t, ip: 10.1.0.2, port: 80, protocol: tcp, node: 'a b'}\n",
                "targets[0].node \"a b\"",
            ),
        ];
        for (text, want) in table {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains(want),
                "{text:?}: {err:?} should contain {want:?}"
            );
        }
    }
}
