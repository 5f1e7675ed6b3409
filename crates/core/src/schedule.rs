//! Probe planning (pure): which probes an agent runs each round, in what order, and when.
//!
//! * [`tasks`] turns a peer set into probes: for every other agent, ICMP to its pod IP and to
//!   its node IP and HTTP `GET /ping` to the agent; for every target, ICMP and TCP or HTTP.
//! * [`order`] sorts them by a per-agent hash, so agents do not probe the same destination in
//!   lock-step and adding a peer does not reshuffle the others.
//! * [`plan_round`] spreads a round's start times evenly over the interval with random jitter
//!   inside each slot, stretching the round only when the probes-per-second ceiling demands it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::RngExt;

use crate::model::{Check, DestKind, ErrorClass, Family, IpFamilies, Layer, ProbeKey, ProbeResult};
use crate::peers::{PeerSet, Protocol};

/// One probe to run every round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub key: ProbeKey,
    pub check: Check,
}

/// Probe parameters that do not come from the peer set.
#[derive(Debug, Clone, Copy)]
pub struct TaskParams {
    /// The agent HTTP port to assume for peers that do not name one.
    pub default_port: u16,
    pub icmp_count: u16,
    pub icmp_size: u16,
    /// Which of a destination's families are probed (`--ip-family`).
    pub families: IpFamilies,
}

/// The families of a primary address and its list (Kubernetes' `podIP` / `podIPs`), the
/// primary's first, each once.
pub fn families_of(primary: IpAddr, all: &[IpAddr]) -> impl Iterator<Item = Family> {
    let first = Family::of(primary);
    let second = all.iter().map(|ip| Family::of(*ip)).find(|f| *f != first);
    std::iter::once(first).chain(second)
}

/// Every probe this agent (`me`) runs in a round. Our own entry is skipped: an agent does not
/// probe itself. A peer is probed at each family of its pod addresses that `params.families`
/// wants: ICMP to that family's pod and node address and HTTP to its pod address.
pub fn tasks(set: &PeerSet, me: &str, params: TaskParams) -> Vec<Task> {
    let icmp = |ip| Check::Icmp {
        ip,
        count: params.icmp_count,
        size: params.icmp_size,
    };
    let mut out = Vec::with_capacity(set.peers.len() * 3 + set.targets.len() * 2);
    for p in set.peers.iter().filter(|p| p.node != me) {
        let primary = Family::of(p.pod_ip);
        for family in families_of(p.pod_ip, &p.pod_ips).filter(|f| params.families.wants(*f)) {
            let Some(pod_ip) = p.pod_ip_of(family.is_v6()) else {
                continue;
            };
            // A node without an address of its pods' primary family (IPv6 pods on an IPv4
            // node) is still probed at its one address, as before families were kept.
            let node_ip = p
                .node_ip_of(family.is_v6())
                .or((family == primary).then_some(p.node_ip));
            let key = |layer| ProbeKey {
                kind: DestKind::Peer,
                name: p.node.clone(),
                layer,
                family,
            };
            out.push(Task {
                key: key(Layer::IcmpPod),
                check: icmp(pod_ip),
            });
            if let Some(node_ip) = node_ip {
                out.push(Task {
                    key: key(Layer::IcmpNode),
                    check: icmp(node_ip),
                });
            }
            out.push(Task {
                key: key(Layer::Http),
                check: Check::Http {
                    addr: SocketAddr::new(pod_ip, p.port.unwrap_or(params.default_port)),
                    path: "/ping".into(),
                    expect_node: Some(p.node.clone()),
                },
            });
        }
    }
    for t in &set.targets {
        for family in families_of(t.ip, &t.ips).filter(|f| params.families.wants(*f)) {
            let Some(ip) = t.ip_of(family.is_v6()) else {
                continue;
            };
            let key = |layer| ProbeKey {
                kind: DestKind::Target,
                name: t.name.clone(),
                layer,
                family,
            };
            out.push(Task {
                key: key(Layer::IcmpPod),
                check: icmp(ip),
            });
            let addr = SocketAddr::new(ip, t.port);
            out.push(match t.protocol {
                Protocol::Http => Task {
                    key: key(Layer::Http),
                    check: Check::Http {
                        addr,
                        path: t.http_path().to_string(),
                        expect_node: None,
                    },
                },
                Protocol::Tcp => Task {
                    key: key(Layer::Tcp),
                    check: Check::Tcp { addr },
                },
            });
        }
    }
    out
}

/// The peers (not `me`) that `families` would probe at one family only though it asks for
/// both (`dual`): a node or pod missing an address on a dual-stack cluster.
pub fn single_family_peers<'a>(set: &'a PeerSet, me: &str, families: IpFamilies) -> Vec<&'a str> {
    if families != IpFamilies::Dual {
        return Vec::new();
    }
    set.peers
        .iter()
        .filter(|p| p.node != me && families_of(p.pod_ip, &p.pod_ips).count() < 2)
        .map(|p| p.node.as_str())
        .collect()
}

/// Sort tasks by a hash of (agent seed, key): a stable order per agent, different between
/// agents, in which a new task takes its place without moving the others relative to each other.
pub fn order(tasks: &mut [Task], seed: u64) {
    tasks.sort_by_cached_key(|t| {
        let mut h = DefaultHasher::new();
        seed.hash(&mut h);
        t.key.hash(&mut h);
        (h.finish(), t.key.clone())
    });
}

/// When each of a round's probes starts, relative to the round's start.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundPlan {
    /// The round's length: the interval, or longer when the rate ceiling stretches it.
    pub round_len: Duration,
    /// Start offset of task `i`, non-decreasing, each inside its own slot.
    pub offsets: Vec<Duration>,
    /// Whether the rate ceiling stretched the round beyond the interval.
    pub stretched: bool,
}

/// Spread `n` probes over `interval`: probe `i` starts at a random point of slot `i` (slots of
/// `round_len / n`). At most `max_rate` probes start per second: beyond it the round grows.
pub fn plan_round(
    n: usize,
    interval: Duration,
    max_rate: u32,
    rng: &mut impl rand::Rng,
) -> RoundPlan {
    let min_len = Duration::from_secs_f64(n as f64 / f64::from(max_rate.max(1)));
    let stretched = min_len > interval;
    let round_len = interval.max(min_len);
    if n == 0 {
        return RoundPlan {
            round_len,
            offsets: Vec::new(),
            stretched,
        };
    }
    let slot = round_len.as_secs_f64() / n as f64;
    let offsets = (0..n)
        .map(|i| {
            let jitter: f64 = rng.random::<f64>();
            Duration::from_secs_f64(slot * (i as f64 + jitter))
        })
        .collect();
    RoundPlan {
        round_len,
        offsets,
        stretched,
    }
}

/// How early a probe may start to share the wake-up of the probe before it: 1/40 of the
/// round (a probe's start moves by at most 2.5 % of its period), between 5 ms and 250 ms.
/// Why: each wake-up costs an `epoll_wait`, a timer and a context switch, the fixed cost that
/// made a probe dearer than fping's at low rates; probes started together also have their
/// replies read in one wake-up.
pub fn coalesce_window(round_len: Duration) -> Duration {
    (round_len / 40).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// Whether a probe's result calls for one more probe at once: the first failure after a
/// success (or on a fresh destination) is confirmed right away, so a real fault is two failures
/// old — what the diagnosis and the alerts ask for — about one timeout after it shows, not one
/// interval. The second failure in a row, and the prober's own trouble (a local error), wait
/// for the next round. Cost: one probe per failure streak.
pub fn confirm_now(result: &ProbeResult, consecutive_failures: Option<u32>) -> bool {
    !result.success()
        && consecutive_failures == Some(1)
        && !matches!(
            result.error,
            Some(ErrorClass::LocalError { .. } | ErrorClass::Io { .. })
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::parse;
    use rand::SeedableRng;

    const SET: &str = r#"
peers:
  - {node: n1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, zone: a}
  - {node: n2, node_ip: 198.18.1.12, pod_ip: 198.19.2.10, zone: a, port: 9000}
  - {node: n3, node_ip: 198.18.2.13, pod_ip: 198.19.3.10, zone: b}
targets:
  - {name: web, ip: 198.19.3.11, port: 8080, protocol: http, path: /healthz}
  - {name: db, ip: 198.19.2.12, port: 5432, protocol: tcp}
"#;

    fn params() -> TaskParams {
        TaskParams {
            default_port: 9464,
            icmp_count: 3,
            icmp_size: 56,
            families: IpFamilies::Auto,
        }
    }

    const DUAL: &str = r#"
peers:
  - {node: n1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, node_ips: [198.18.1.11, "fd00::11"], pod_ips: [198.19.1.10, "fd01::10"]}
  - {node: n2, node_ip: 198.18.1.12, pod_ip: 198.19.2.10, node_ips: [198.18.1.12, "fd00::12"], pod_ips: [198.19.2.10, "fd01::2:10"]}
  - {node: v6, node_ip: 198.18.1.13, pod_ip: "fd01::3:10"}
  - {node: v4, node_ip: 198.18.1.14, pod_ip: 198.19.4.10}
  - {node: v6first, node_ip: "fd00::15", pod_ip: "fd01::5:10", node_ips: ["fd00::15", 198.18.1.15], pod_ips: ["fd01::5:10", 198.19.5.10]}
targets:
  - {name: web, ip: "fd01::3:11", port: 8080, protocol: tcp, ips: ["fd01::3:11", 198.19.3.11]}
"#;

    #[test]
    fn each_wanted_family_of_a_destination_gets_its_probes_at_its_addresses() {
        let set = parse(DUAL).unwrap();
        // (--ip-family, want: key family/layer → probed address, per destination in file order)
        let table: &[(IpFamilies, &[&str])] = &[
            (
                IpFamilies::Auto,
                &[
                    "n2 ipv4 icmp_pod 198.19.2.10",
                    "n2 ipv4 icmp_node 198.18.1.12",
                    "n2 ipv4 http 198.19.2.10",
                    "n2 ipv6 icmp_pod fd01::2:10",
                    "n2 ipv6 icmp_node fd00::12",
                    "n2 ipv6 http fd01::2:10",
                    // IPv6 pods on an IPv4-only node: the node is probed at its one address.
                    "v6 ipv6 icmp_pod fd01::3:10",
                    "v6 ipv6 icmp_node 198.18.1.13",
                    "v6 ipv6 http fd01::3:10",
                    "v4 ipv4 icmp_pod 198.19.4.10",
                    "v4 ipv4 icmp_node 198.18.1.14",
                    "v4 ipv4 http 198.19.4.10",
                    // The primary family first, as Kubernetes lists it.
                    "v6first ipv6 icmp_pod fd01::5:10",
                    "v6first ipv6 icmp_node fd00::15",
                    "v6first ipv6 http fd01::5:10",
                    "v6first ipv4 icmp_pod 198.19.5.10",
                    "v6first ipv4 icmp_node 198.18.1.15",
                    "v6first ipv4 http 198.19.5.10",
                    "web ipv6 icmp_pod fd01::3:11",
                    "web ipv6 tcp fd01::3:11",
                    "web ipv4 icmp_pod 198.19.3.11",
                    "web ipv4 tcp 198.19.3.11",
                ],
            ),
            (
                IpFamilies::Ipv4,
                &[
                    "n2 ipv4 icmp_pod 198.19.2.10",
                    "n2 ipv4 icmp_node 198.18.1.12",
                    "n2 ipv4 http 198.19.2.10",
                    "v4 ipv4 icmp_pod 198.19.4.10",
                    "v4 ipv4 icmp_node 198.18.1.14",
                    "v4 ipv4 http 198.19.4.10",
                    "v6first ipv4 icmp_pod 198.19.5.10",
                    "v6first ipv4 icmp_node 198.18.1.15",
                    "v6first ipv4 http 198.19.5.10",
                    "web ipv4 icmp_pod 198.19.3.11",
                    "web ipv4 tcp 198.19.3.11",
                ],
            ),
            (
                IpFamilies::Ipv6,
                &[
                    "n2 ipv6 icmp_pod fd01::2:10",
                    "n2 ipv6 icmp_node fd00::12",
                    "n2 ipv6 http fd01::2:10",
                    "v6 ipv6 icmp_pod fd01::3:10",
                    "v6 ipv6 icmp_node 198.18.1.13",
                    "v6 ipv6 http fd01::3:10",
                    "v6first ipv6 icmp_pod fd01::5:10",
                    "v6first ipv6 icmp_node fd00::15",
                    "v6first ipv6 http fd01::5:10",
                    "web ipv6 icmp_pod fd01::3:11",
                    "web ipv6 tcp fd01::3:11",
                ],
            ),
        ];
        for (families, want) in table {
            let p = TaskParams {
                families: *families,
                ..params()
            };
            let got: Vec<String> = tasks(&set, "n1", p)
                .iter()
                .map(|t| {
                    format!(
                        "{} {} {} {}",
                        t.key.name,
                        t.key.family,
                        t.key.layer,
                        t.check.destination_ip()
                    )
                })
                .collect();
            assert_eq!(got, *want, "--ip-family {}", families.as_str());
        }
        assert_eq!(
            tasks(
                &set,
                "n1",
                TaskParams {
                    families: IpFamilies::Dual,
                    ..params()
                }
            ),
            tasks(&set, "n1", params())
        );
        // `dual` names the peers that have one family only; the others ask for nothing.
        assert_eq!(
            single_family_peers(&set, "n1", IpFamilies::Dual),
            ["v6", "v4"]
        );
        assert!(single_family_peers(&set, "n1", IpFamilies::Auto).is_empty());
    }

    #[test]
    fn ip_family_words_parse_and_bad_ones_are_named() {
        for f in [
            IpFamilies::Ipv4,
            IpFamilies::Ipv6,
            IpFamilies::Dual,
            IpFamilies::Auto,
        ] {
            assert_eq!(IpFamilies::parse(f.as_str()), Ok(f));
        }
        let e = IpFamilies::parse("ipv5").unwrap_err();
        assert!(e.contains("\"ipv5\"") && e.contains("dual"), "{e}");
    }

    #[test]
    fn tasks_cover_every_other_peer_and_every_target() {
        let set = parse(SET).unwrap();
        let t = tasks(&set, "n1", params());
        let keys: Vec<String> = t
            .iter()
            .map(|t| format!("{}/{}/{}", t.key.kind.as_str(), t.key.name, t.key.layer))
            .collect();
        assert_eq!(
            keys,
            [
                "peer/n2/icmp_pod",
                "peer/n2/icmp_node",
                "peer/n2/http",
                "peer/n3/icmp_pod",
                "peer/n3/icmp_node",
                "peer/n3/http",
                "target/web/icmp_pod",
                "target/web/http",
                "target/db/icmp_pod",
                "target/db/tcp",
            ]
        );
        // The peer's own port wins over ours; the HTTP probe expects the peer's name back.
        assert_eq!(
            t[2].check,
            Check::Http {
                addr: "198.19.2.10:9000".parse().unwrap(),
                path: "/ping".into(),
                expect_node: Some("n2".into())
            }
        );
        assert_eq!(
            t[5].check,
            Check::Http {
                addr: "198.19.3.10:9464".parse().unwrap(),
                path: "/ping".into(),
                expect_node: Some("n3".into())
            }
        );
        assert_eq!(
            t[1].check,
            Check::Icmp {
                ip: "198.18.1.12".parse().unwrap(),
                count: 3,
                size: 56
            }
        );
        assert_eq!(
            t[9].check,
            Check::Tcp {
                addr: "198.19.2.12:5432".parse().unwrap()
            }
        );
    }

    #[test]
    fn an_agent_not_in_the_file_probes_everyone() {
        let set = parse(SET).unwrap();
        assert_eq!(tasks(&set, "elsewhere", params()).len(), 3 * 3 + 4);
    }

    #[test]
    fn order_is_stable_per_agent_differs_between_agents_and_survives_additions() {
        let set = parse(SET).unwrap();
        let mut a = tasks(&set, "n1", params());
        let mut b = a.clone();
        order(&mut a, 1);
        order(&mut b, 1);
        assert_eq!(a, b);
        let mut c = a.clone();
        order(&mut c, 2);
        assert_ne!(
            a.iter().map(|t| &t.key).collect::<Vec<_>>(),
            c.iter().map(|t| &t.key).collect::<Vec<_>>()
        );
        // Adding a peer keeps the relative order of everything that was there.
        let mut bigger = set.clone();
        bigger.peers.push(crate::peers::Peer {
            node: "n4".into(),
            node_ip: "198.18.2.14".parse().unwrap(),
            pod_ip: "198.19.4.10".parse().unwrap(),
            zone: None,
            port: None,
            pod_cidrs: Vec::new(),
            pod_gateway: None,
            pod_gateways: Vec::new(),
            node_ips: Vec::new(),
            pod_ips: Vec::new(),
        });
        let mut d = tasks(&bigger, "n1", params());
        order(&mut d, 1);
        let old: Vec<_> = d
            .iter()
            .filter(|t| t.key.name != "n4")
            .map(|t| &t.key)
            .collect();
        assert_eq!(old, a.iter().map(|t| &t.key).collect::<Vec<_>>());
    }

    #[test]
    fn probes_are_spread_over_the_interval_one_per_slot() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let interval = Duration::from_secs(5);
        for n in [1usize, 2, 7, 100, 3000] {
            let plan = plan_round(n, interval, 1000, &mut rng);
            assert_eq!(plan.round_len, interval);
            assert!(!plan.stretched);
            assert_eq!(plan.offsets.len(), n);
            let slot = interval.as_secs_f64() / n as f64;
            for (i, off) in plan.offsets.iter().enumerate() {
                let o = off.as_secs_f64();
                assert!(
                    o >= slot * i as f64 - 1e-9 && o <= slot * (i + 1) as f64 + 1e-9,
                    "n={n} i={i} offset {o} outside its slot"
                );
            }
            assert!(plan.offsets.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn probes_coalesce_within_a_fortieth_of_the_round_between_5_and_250_ms() {
        let ms = Duration::from_millis;
        for (round, want) in [
            (ms(100), ms(5)),
            (ms(200), ms(5)),
            (ms(1000), ms(25)),
            (ms(2000), ms(50)),
            (ms(5000), ms(125)),
            (ms(10_000), ms(250)),
            (ms(60_000), ms(250)),
        ] {
            assert_eq!(coalesce_window(round), want, "{round:?}");
        }
    }

    #[test]
    fn jitter_differs_between_rounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = plan_round(10, Duration::from_secs(5), 1000, &mut rng);
        let b = plan_round(10, Duration::from_secs(5), 1000, &mut rng);
        assert_ne!(a.offsets, b.offsets);
    }

    #[test]
    fn the_rate_ceiling_stretches_the_round() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // 3000 probes at most 500/s: the round lasts 6 s, not 5.
        let plan = plan_round(3000, Duration::from_secs(5), 500, &mut rng);
        assert!(plan.stretched);
        assert_eq!(plan.round_len, Duration::from_secs(6));
        // No second holds more than the ceiling (plus one for slot edges).
        let mut per_second = std::collections::HashMap::new();
        for o in &plan.offsets {
            *per_second.entry(o.as_secs()).or_insert(0) += 1;
        }
        assert!(per_second.values().all(|c| *c <= 501), "{per_second:?}");
        let empty = plan_round(0, Duration::from_secs(5), 500, &mut rng);
        assert!(empty.offsets.is_empty());
    }

    #[test]
    fn a_first_failure_is_confirmed_at_once_and_only_the_first() {
        use crate::model::ErrorClass as E;
        let ok = ProbeResult::ok(Duration::from_millis(1), None);
        let timeout = ProbeResult::failed(1, E::Timeout);
        let refused = ProbeResult::failed(1, E::Refused);
        let local = ProbeResult::failed(
            1,
            E::LocalError {
                detail: "no socket".into(),
            },
        );
        let table: [(&ProbeResult, Option<u32>, bool); 7] = [
            (&timeout, Some(1), true),
            (&refused, Some(1), true),
            (&timeout, Some(2), false),
            (&timeout, Some(7), false),
            (&timeout, None, false),
            (&ok, Some(0), false),
            (&local, Some(1), false),
        ];
        for (r, n, want) in table {
            assert_eq!(confirm_now(r, n), want, "{:?} after {n:?}", r.error);
        }
    }
}
