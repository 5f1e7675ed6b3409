//! Table-driven tests on synthetic matrices: a 4-node, 2-zone mesh (node-1, node-2 in zone-a;
//! node-3, node-4 in zone-b), node IPs 198.18.z.(10+i), pod IPs 198.19.i.10, pod gateways
//! 198.19.i.1, one target `web-node-i` (198.19.i.11:8080, http) per node. Every agent's
//! document goes through JSON, as the CLI will feed it.

use std::collections::{BTreeSet, HashMap};

use super::input::ErrKind;
use super::input::*;
use super::matrix::Matrix;
use super::report::{Cause, Diagnosis};
use super::{diagnose, Params};
use meshprobe_core::model::Layer;

const N: usize = 4;
const PEER_LAYERS: [&str; 3] = ["icmp_pod", "icmp_node", "http"];
const TARGET_LAYERS: [&str; 2] = ["icmp_pod", "http"];

fn name(i: usize) -> String {
    format!("node-{i}")
}
fn web(i: usize) -> String {
    format!("web-node-{i}")
}

// ---- window figures -------------------------------------------------------------------------

fn ok() -> LayerStats {
    LayerStats {
        reachable: Some(true),
        consecutive_failures: 0,
        probes: 10,
        successes: 10,
        sent: 10,
        received: 10,
        success_ratio: Some(1.0),
        loss_ratio: Some(0.0),
        rtt_seconds: None,
        last_error: None,
        last_error_age_seconds: None,
        last_probe_age_seconds: Some(0.4),
        failing_for_seconds: None,
        errors: Vec::new(),
    }
}

fn err(kind: &str) -> ErrorInfo {
    ErrorInfo {
        kind: kind.into(),
        ..ErrorInfo::default()
    }
}

fn err_from(kind: &str, from: &str) -> ErrorInfo {
    ErrorInfo {
        kind: kind.into(),
        from: Some(from.into()),
        ..ErrorInfo::default()
    }
}

/// A fault that started 3 probes ago: 7/10 succeeded, the last 3 failed.
fn down(e: ErrorInfo) -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 3,
        successes: 7,
        received: 7,
        success_ratio: Some(0.7),
        loss_ratio: Some(0.3),
        last_error: Some(e),
        last_error_age_seconds: Some(0.4),
        ..ok()
    }
}

fn timeout() -> LayerStats {
    down(err("timeout"))
}

/// Partial loss: 3 echoes per probe, `lost` of 30 lost, every probe answered.
fn lossy(lost: u32) -> LayerStats {
    LayerStats {
        sent: 30,
        received: 30 - lost,
        loss_ratio: Some(f64::from(lost) / 30.0),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(1.0),
        ..ok()
    }
}

/// One probe lost, and it was the last one.
fn one_lost() -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 1,
        successes: 9,
        received: 9,
        success_ratio: Some(0.9),
        loss_ratio: Some(0.1),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.4),
        ..ok()
    }
}

/// A destination that just appeared: two probes, both failed.
fn fresh_failing() -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 2,
        probes: 2,
        successes: 0,
        sent: 2,
        received: 0,
        success_ratio: Some(0.0),
        loss_ratio: Some(1.0),
        last_error: Some(err("timeout")),
        ..ok()
    }
}

// ---- the mesh builder -----------------------------------------------------------------------

#[derive(Clone)]
struct Mesh {
    zone: Vec<&'static str>,
    peer: HashMap<(usize, usize, &'static str), LayerStats>,
    target: HashMap<(usize, usize, &'static str), LayerStats>,
    mtu: HashMap<(usize, usize), (u32, MtuState)>,
    missing: BTreeSet<usize>,
    /// Node pairs (src, dst) the plan does not probe (a sampled plan); targets always are.
    unprobed: BTreeSet<(usize, usize)>,
    not_ready: BTreeSet<usize>,
    rounds: HashMap<usize, u64>,
    kube: Option<KubeFacts>,
    meta: bool,
}

fn zone_num(z: &str) -> u8 {
    match z {
        "zone-a" => 1,
        "zone-b" => 2,
        _ => 3,
    }
}

impl Mesh {
    fn new() -> Mesh {
        Mesh {
            zone: vec!["", "zone-a", "zone-a", "zone-b", "zone-b"],
            peer: HashMap::new(),
            target: HashMap::new(),
            mtu: HashMap::new(),
            missing: BTreeSet::new(),
            unprobed: BTreeSet::new(),
            not_ready: BTreeSet::new(),
            rounds: HashMap::new(),
            kube: None,
            meta: false,
        }
    }

    fn node_ip(&self, i: usize) -> String {
        format!("198.18.{}.{}", zone_num(self.zone[i]), 10 + i)
    }

    /// Set the given peer layers for src → dst.
    fn p(&mut self, s: usize, d: usize, layers: &[&'static str], st: LayerStats) -> &mut Self {
        for l in layers {
            self.peer.insert((s, d, l), st.clone());
        }
        self
    }

    /// Set the given target layers for src → web-node-t.
    fn t(&mut self, s: usize, t: usize, layers: &[&'static str], st: LayerStats) -> &mut Self {
        for l in layers {
            self.target.insert((s, t, l), st.clone());
        }
        self
    }

    /// Everything to and from node `x` on `layers` (peers) and its target (`tlayers`).
    fn around(
        &mut self,
        x: usize,
        layers: &[&'static str],
        tlayers: &[&'static str],
        st: LayerStats,
    ) -> &mut Self {
        for o in 1..=N {
            if o != x {
                self.p(o, x, layers, st.clone());
                self.p(x, o, layers, st.clone());
                self.t(x, o, tlayers, st.clone());
            }
            self.t(o, x, tlayers, st.clone());
        }
        self
    }

    fn docs(&self) -> Vec<String> {
        (1..=N)
            .filter(|i| !self.missing.contains(i))
            .map(|s| {
                let peers: Vec<PeerReport> = (1..=N)
                    .filter(|&d| d != s && !self.unprobed.contains(&(s, d)))
                    .map(|d| {
                        let layers = PEER_LAYERS
                            .iter()
                            .map(|l| {
                                (
                                    l.to_string(),
                                    self.peer.get(&(s, d, *l)).cloned().unwrap_or_else(ok),
                                )
                            })
                            .collect();
                        let (path_mtu, mtu_state) = match self.mtu.get(&(s, d)) {
                            Some((m, st)) => (Some(*m), Some(*st)),
                            None => (None, None),
                        };
                        PeerReport {
                            node: name(d),
                            zone: Some(self.zone[d].to_string()),
                            node_ip: self.node_ip(d).parse().ok(),
                            pod_ip: format!("198.19.{d}.10").parse().ok(),
                            layers,
                            path_mtu,
                            mtu_state,
                            mtu: Default::default(),
                        }
                    })
                    .collect();
                let targets: Vec<TargetReport> = (1..=N)
                    .map(|t| TargetReport {
                        name: web(t),
                        ip: format!("198.19.{t}.11").parse().ok(),
                        port: Some(8080),
                        protocol: Some("http".into()),
                        layers: TARGET_LAYERS
                            .iter()
                            .map(|l| {
                                (
                                    l.to_string(),
                                    self.target.get(&(s, t, *l)).cloned().unwrap_or_else(ok),
                                )
                            })
                            .collect(),
                        ..TargetReport::default()
                    })
                    .collect();
                let r = AgentReport {
                    node: name(s),
                    zone: Some(self.zone[s].to_string()),
                    ready: Some(!self.not_ready.contains(&s)),
                    rounds: Some(self.rounds.get(&s).copied().unwrap_or(120)),
                    interval_seconds: Some(1.0),
                    window_seconds: Some(10.0),
                    peers,
                    targets,
                };
                serde_json::to_string(&r).unwrap()
            })
            .collect()
    }

    fn matrix(&self) -> Matrix {
        let agents = self
            .docs()
            .iter()
            .map(|d| AgentReport::from_json(d).unwrap())
            .collect();
        let nodes = (1..=N)
            .map(|i| NodeMeta {
                name: name(i),
                zone: Some(self.zone[i].to_string()),
                node_ip: self.node_ip(i).parse().ok(),
                pod_ip: format!("198.19.{i}.10").parse().ok(),
                pod_gateway: self.meta.then(|| format!("198.19.{i}.1").parse().unwrap()),
                pod_cidr: self.meta.then(|| format!("198.19.{i}.0/24")),
            })
            .collect();
        Matrix::build(&Inputs {
            agents,
            unreachable_agents: self.missing.iter().map(|&i| name(i)).collect(),
            nodes,
            kube: self.kube.clone(),
        })
    }

    fn diagnose(&self) -> Diagnosis {
        diagnose(&self.matrix())
    }
}

// ---- expectations ---------------------------------------------------------------------------

struct Expect {
    cause: Cause,
    nodes: &'static [&'static str],
    zones: &'static [&'static str],
    targets: &'static [&'static str],
}

const fn ex(cause: Cause, nodes: &'static [&'static str]) -> Expect {
    Expect {
        cause,
        nodes,
        zones: &[],
        targets: &[],
    }
}

fn check(label: &str, d: &Diagnosis, want: &[Expect]) {
    let text = d.to_text();
    assert_eq!(d.healthy, want.is_empty(), "{label}: healthy\n{text}");
    assert_eq!(
        d.findings.len(),
        want.len(),
        "{label}: number of findings\n{text}"
    );
    for w in want {
        let hit = d
            .findings
            .iter()
            .find(|f| f.cause == w.cause && f.nodes == w.nodes);
        let Some(f) = hit else {
            panic!("{label}: no {:?} finding on {:?}\n{text}", w.cause, w.nodes);
        };
        if !w.zones.is_empty() {
            assert_eq!(f.zones, w.zones, "{label}: zones\n{text}");
        }
        for t in w.targets {
            assert!(
                f.targets.iter().any(|x| x == t),
                "{label}: target {t} missing\n{text}"
            );
        }
        assert!((0.0..=1.0).contains(&f.confidence), "{label}: confidence");
        assert!(
            !f.evidence.is_empty() && !f.next_steps.is_empty(),
            "{label}: evidence/steps"
        );
        assert!(!f.summary.is_empty());
    }
}

type Scenario = fn(&mut Mesh);

// Faults, each as it looks on the wire in the lab (machine-facts.md).

fn node3_down(m: &mut Mesh) {
    m.around(
        3,
        &PEER_LAYERS,
        &TARGET_LAYERS,
        down(err("host_unreachable")),
    );
    m.missing.insert(3);
}

fn node3_cni(m: &mut Mesh) {
    // Pod layers to and from node-3 dead; node-3's node IP answers; its agent (on the pod
    // network) reaches no node IP either.
    m.around(3, &["icmp_pod", "http"], &TARGET_LAYERS, timeout());
    for o in [1, 2, 4] {
        m.p(3, o, &["icmp_node"], timeout());
    }
}

fn route_1_to_3(m: &mut Mesh) {
    // Route to 198.19.3.0/24 deleted on node-1.
    let nu = down(err_from("net_unreachable", "198.19.1.1"));
    m.p(1, 3, &["icmp_pod", "http"], nu.clone());
    m.t(1, 3, &TARGET_LAYERS, nu);
    // node-3's agent lives on a pod: node-1's replies to it have no route, node IP included.
    m.p(3, 1, &["icmp_pod", "icmp_node", "http"], timeout());
    m.t(3, 1, &TARGET_LAYERS, timeout());
}

/// The same route fault when node-1's rate-limited "net unreachable" is not in the windows
/// (real data, lab `route node-2 node-4` while `cni node-3`: read as `routing` one way plus a
/// `vpc` the other way for > 16 s).
fn route_1_to_3_silent(m: &mut Mesh) {
    m.p(1, 3, &["icmp_pod", "http"], timeout());
    m.t(1, 3, &TARGET_LAYERS, timeout());
    m.p(3, 1, &["icmp_pod", "icmp_node", "http"], timeout());
    m.t(3, 1, &TARGET_LAYERS, timeout());
}

fn one_way_1_to_3(m: &mut Mesh) {
    m.p(1, 3, &["icmp_pod", "http"], timeout());
    m.t(1, 3, &TARGET_LAYERS, timeout());
}

fn node2_no_routes(m: &mut Mesh) {
    let nu = down(err_from("net_unreachable", "198.19.2.1"));
    for o in [1, 3, 4] {
        m.p(2, o, &["icmp_pod", "http"], nu.clone());
        m.t(2, o, &TARGET_LAYERS, nu.clone());
        m.p(o, 2, &["icmp_pod", "icmp_node", "http"], timeout());
        m.t(o, 2, &TARGET_LAYERS, timeout());
    }
}

fn zone_partition(m: &mut Mesh) {
    for a in [1, 2] {
        for b in [3, 4] {
            m.p(a, b, &PEER_LAYERS, timeout());
            m.p(b, a, &PEER_LAYERS, timeout());
            m.t(a, b, &TARGET_LAYERS, timeout());
            m.t(b, a, &TARGET_LAYERS, timeout());
        }
    }
}

/// node-4 alone in zone-c, cut off from everybody; its agent still reports.
fn lone_zone_partition(m: &mut Mesh) {
    m.zone[4] = "zone-c";
    m.around(4, &PEER_LAYERS, &[], timeout());
    for o in 1..=3 {
        m.t(o, 4, &TARGET_LAYERS, timeout());
        m.t(4, o, &TARGET_LAYERS, timeout());
    }
}

fn lone_zone_node_down(m: &mut Mesh) {
    lone_zone_partition(m);
    m.missing.insert(4);
}

fn mtu_node3_states(m: &mut Mesh) {
    for o in [1, 2, 4] {
        m.mtu.insert((3, o), (1400, MtuState::Mismatch));
        m.mtu.insert((o, 3), (1400, MtuState::Blackhole));
    }
}

fn mtu_node3_errors(m: &mut Mesh) {
    // Large DF probes mixed in: the ones from node-3 get frag-needed from node-3's uplink,
    // then EMSGSIZE; those toward node-3 vanish (a third of the echoes lost).
    let frag = LayerStats {
        last_error: Some(ErrorInfo {
            kind: "frag_needed".into(),
            from: Some("198.18.2.13".into()),
            mtu: Some(1400),
            code: None,
        }),
        ..lossy(10)
    };
    let tl = LayerStats {
        last_error: Some(err("message_too_long")),
        ..lossy(10)
    };
    for o in [1, 2, 4] {
        m.p(3, o, &["icmp_pod"], frag.clone());
        m.p(o, 3, &["icmp_pod"], tl.clone());
    }
}

fn loss_node2(m: &mut Mesh) {
    m.around(2, &["icmp_pod", "icmp_node"], &["icmp_pod"], lossy(9));
}

fn policy_web2(m: &mut Mesh) {
    for s in 1..=N {
        m.t(s, 2, &["http"], timeout());
    }
}

fn app_web2(m: &mut Mesh) {
    for s in 1..=N {
        m.t(
            s,
            2,
            &["http"],
            down(ErrorInfo {
                kind: "http_status".into(),
                code: Some(503),
                ..ErrorInfo::default()
            }),
        );
    }
}

fn refused_web2(m: &mut Mesh) {
    for s in 1..=N {
        m.t(s, 2, &["http"], down(err("refused")));
    }
}

#[test]
fn signatures_and_look_alikes() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        ("clean mesh", |_| {}, vec![]),
        (
            "one lost probe on every pair",
            |m| {
                for s in 1..=N {
                    for d in 1..=N {
                        if s != d {
                            m.p(s, d, &["icmp_pod"], one_lost());
                        }
                    }
                    m.t(s, 1, &["http"], one_lost());
                }
            },
            vec![],
        ),
        (
            "node-4 just joined: few probes to it, its agent on its first rounds",
            |m| {
                for o in 1..=3 {
                    m.p(o, 4, &PEER_LAYERS, fresh_failing());
                    m.p(4, o, &PEER_LAYERS, fresh_failing());
                    m.t(o, 4, &TARGET_LAYERS, fresh_failing());
                }
                m.rounds.insert(4, 1);
            },
            vec![],
        ),
        (
            "restarting agent on node-2: HTTP refused while it starts",
            |m| {
                for o in [1, 3, 4] {
                    m.p(o, 2, &["http"], down(err("refused")));
                    m.p(2, o, &PEER_LAYERS, timeout());
                }
                m.not_ready.insert(2);
            },
            vec![],
        ),
        (
            "node down",
            node3_down,
            vec![Expect {
                targets: &["web-node-3"],
                ..ex(NodeDown, &["node-3"])
            }],
        ),
        (
            "CNI on node-3",
            node3_cni,
            vec![Expect {
                targets: &["web-node-3"],
                ..ex(Cni, &["node-3"])
            }],
        ),
        (
            "CNI on node-3, agent missing",
            |m| {
                node3_cni(m);
                m.missing.insert(3);
            },
            vec![ex(Cni, &["node-3"])],
        ),
        (
            "route to node-3's pods deleted on node-1 (both directions fail)",
            route_1_to_3,
            vec![Expect {
                targets: &["web-node-3", "web-node-1"],
                ..ex(Routing, &["node-1"])
            }],
        ),
        (
            "route to node-3's pods deleted on node-1, no \"net unreachable\" seen",
            route_1_to_3_silent,
            vec![Expect {
                targets: &["web-node-3", "web-node-1"],
                ..ex(Routing, &["node-1"])
            }],
        ),
        (
            "node-2 lost all its pod routes, no \"net unreachable\" seen",
            |m| {
                for o in [1, 3, 4] {
                    m.p(2, o, &["icmp_pod", "http"], timeout());
                    m.t(2, o, &TARGET_LAYERS, timeout());
                    m.p(o, 2, &["icmp_pod", "icmp_node", "http"], timeout());
                    m.t(o, 2, &TARGET_LAYERS, timeout());
                }
            },
            vec![ex(Routing, &["node-2"])],
        ),
        (
            "one-way pod failure node-1 -> node-3",
            one_way_1_to_3,
            vec![ex(Routing, &["node-1", "node-3"])],
        ),
        (
            "node-2 lost all its pod routes",
            node2_no_routes,
            vec![ex(Routing, &["node-2"])],
        ),
        (
            "zone partition",
            zone_partition,
            vec![Expect {
                zones: &["zone-a", "zone-b"],
                ..ex(Vpc, &[])
            }],
        ),
        (
            "one-node zone partitioned, agent reports",
            lone_zone_partition,
            vec![Expect {
                zones: &["zone-a", "zone-b", "zone-c"],
                ..ex(Vpc, &[])
            }],
        ),
        (
            "one-node zone, node down (agent missing)",
            lone_zone_node_down,
            vec![ex(NodeDown, &["node-4"])],
        ),
        (
            "MTU on node-3 (path MTU states)",
            mtu_node3_states,
            vec![ex(Mtu, &["node-3"])],
        ),
        (
            "MTU on node-3 (frag-needed, EMSGSIZE, partial loss)",
            mtu_node3_errors,
            vec![ex(Mtu, &["node-3"])],
        ),
        (
            "packet loss on node-2",
            loss_node2,
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "packet loss on node-2 with an unlucky double timeout",
            |m| {
                loss_node2(m);
                m.p(
                    1,
                    2,
                    &["icmp_pod"],
                    LayerStats {
                        successes: 8,
                        received: 20,
                        sent: 30,
                        success_ratio: Some(0.8),
                        consecutive_failures: 2,
                        ..timeout()
                    },
                );
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "policy drops SYN to web-node-2",
            policy_web2,
            vec![Expect {
                targets: &["web-node-2"],
                ..ex(Policy, &["node-2"])
            }],
        ),
        (
            "application: web-node-2 answers 503",
            app_web2,
            vec![Expect {
                targets: &["web-node-2"],
                ..ex(Application, &["node-2"])
            }],
        ),
        (
            "application: web-node-2 refuses",
            refused_web2,
            vec![ex(Application, &["node-2"])],
        ),
        (
            "meshprobe agent on node-4 refuses HTTP",
            |m| {
                for o in 1..=3 {
                    m.p(o, 4, &["http"], down(err("refused")));
                }
            },
            vec![ex(Application, &["node-4"])],
        ),
        (
            "two faults: node-3 down and policy on web-node-2",
            |m| {
                node3_down(m);
                policy_web2(m);
            },
            vec![ex(NodeDown, &["node-3"]), ex(Policy, &["node-2"])],
        ),
        (
            "two faults: route on node-1 and loss on node-4",
            |m| {
                route_1_to_3(m);
                m.around(4, &["icmp_pod", "icmp_node"], &[], lossy(8));
            },
            vec![ex(Routing, &["node-1"]), ex(PacketLoss, &["node-4"])],
        ),
        (
            "two faults: silent route node-1 -> node-3 and CNI on node-2",
            |m| {
                route_1_to_3_silent(m);
                m.around(2, &["icmp_pod", "http"], &TARGET_LAYERS, timeout());
                for o in [1, 3, 4] {
                    m.p(2, o, &["icmp_node"], timeout());
                }
            },
            vec![ex(Routing, &["node-1"]), ex(Cni, &["node-2"])],
        ),
        (
            "two faults: silent route node-2 -> node-4 and CNI on node-3 (the lab's pair)",
            |m| {
                m.p(2, 4, &["icmp_pod", "http"], timeout());
                m.t(2, 4, &TARGET_LAYERS, timeout());
                m.p(4, 2, &["icmp_pod", "icmp_node", "http"], timeout());
                m.t(4, 2, &TARGET_LAYERS, timeout());
                node3_cni(m);
            },
            vec![ex(Routing, &["node-2"]), ex(Cni, &["node-3"])],
        ),
        (
            "two faults: CNI on node-2 and MTU on node-3",
            |m| {
                m.around(2, &["icmp_pod", "http"], &TARGET_LAYERS, timeout());
                mtu_node3_states(m);
            },
            vec![ex(Cni, &["node-2"]), ex(Mtu, &["node-3"])],
        ),
    ];
    for (label, scenario, want) in &table {
        for meta in [false, true] {
            let mut m = Mesh::new();
            m.meta = meta;
            scenario(&mut m);
            let d = m.diagnose();
            check(&format!("{label} (meta {meta})"), &d, want);
        }
    }
}

#[test]
fn kubernetes_facts_raise_confidence_and_decide_look_alikes() {
    // Policy vs application with the pod's and policies' facts.
    let mut m = Mesh::new();
    policy_web2(&mut m);
    let base = m.diagnose().findings[0].confidence;
    m.kube = Some(KubeFacts {
        network_policies: vec![PolicyFacts {
            namespace: "web".into(),
            name: "deny-all".into(),
            targets: vec!["web-node-2".into()],
            admits_port: Some(false),
        }],
        ..KubeFacts::default()
    });
    let d = m.diagnose();
    check("policy with facts", &d, &[ex(Cause::Policy, &["node-2"])]);
    assert!(d.findings[0].confidence > base, "{}", d.to_text());
    assert!(d.findings[0]
        .evidence
        .iter()
        .any(|e| e.contains("deny-all")));

    // Timeouts, but the pod is not Ready: the runbook says application.
    let mut m = Mesh::new();
    policy_web2(&mut m);
    m.kube = Some(KubeFacts {
        pods: vec![PodFacts {
            namespace: "web".into(),
            name: "web-2-abc".into(),
            node: Some("node-2".into()),
            ip: "198.19.2.11".parse().ok(),
            phase: Some("Running".into()),
            ready: Some(false),
            ..PodFacts::default()
        }],
        ..KubeFacts::default()
    });
    check(
        "hung app, pod not ready",
        &m.diagnose(),
        &[ex(Cause::Application, &["node-2"])],
    );

    // CNI with a crash-looping CNI pod: more sure.
    let mut m = Mesh::new();
    node3_cni(&mut m);
    let base = m.diagnose().findings[0].confidence;
    m.kube = Some(KubeFacts {
        cni_pods: vec![CniPodFacts {
            node: "node-3".into(),
            name: "kube-flannel-ds-x".into(),
            ready: Some(false),
            restarts: Some(7),
            crash_loop: Some(true),
        }],
        ..KubeFacts::default()
    });
    let d = m.diagnose();
    check("cni with facts", &d, &[ex(Cause::Cni, &["node-3"])]);
    assert!(d.findings[0].confidence > base);
    assert!(d.findings[0]
        .evidence
        .iter()
        .any(|e| e.contains("CrashLoopBackOff")));

    // A single target pod whose IP is dead, with sandbox failures: CNI for that pod.
    let mut m = Mesh::new();
    for s in 1..=N {
        m.t(s, 1, &TARGET_LAYERS, timeout());
    }
    m.kube = Some(KubeFacts {
        pods: vec![PodFacts {
            namespace: "web".into(),
            name: "web-1-xyz".into(),
            target: Some("web-node-1".into()),
            events: vec![PodEvent {
                reason: "FailedCreatePodSandbox".into(),
                message: None,
                count: Some(4),
            }],
            ..PodFacts::default()
        }],
        ..KubeFacts::default()
    });
    check(
        "sandbox",
        &m.diagnose(),
        &[Expect {
            targets: &["web-node-1"],
            ..ex(Cause::Cni, &["node-1"])
        }],
    );
}

#[test]
fn evidence_names_numbers_and_directions() {
    let d = Mesh::new().tap(node3_cni).diagnose();
    let f = &d.findings[0];
    assert!(
        f.evidence.iter().any(|e| e == "pod IPs on node-3 unreachable from 3/3 nodes by ICMP; node-3's node IP reachable from 3/3"),
        "{:#?}",
        f.evidence
    );
    let d = Mesh::new().tap(route_1_to_3).diagnose();
    let f = &d.findings[0];
    assert!(f.pairs.contains(&["node-1".into(), "node-3".into()]));
    assert!(f.pairs.contains(&["node-3".into(), "node-1".into()]));
    assert!(f.pairs.contains(&["node-1".into(), "web-node-3".into()]));
    assert!(
        f.evidence
            .iter()
            .any(|e| e.contains("198.19.1.1") && e.contains("node-1's")),
        "{:#?}",
        f.evidence
    );
    assert!(
        f.next_steps
            .iter()
            .any(|s| s.contains("ip route get 198.19.3.10")),
        "{:#?}",
        f.next_steps
    );
    let d = Mesh::new().tap(one_way_1_to_3).diagnose();
    let f = &d.findings[0];
    assert_eq!(
        f.pairs.iter().filter(|p| p[1].starts_with("node")).count(),
        1,
        "{}",
        d.to_text()
    );
    assert!(
        f.evidence.iter().any(|e| e.contains("one-way")),
        "{}",
        d.to_text()
    );
    // Directed pairs of a node down: all inbound ones.
    let d = Mesh::new().tap(node3_down).diagnose();
    let f = &d.findings[0];
    for o in ["node-1", "node-2", "node-4"] {
        assert!(f.pairs.contains(&[o.to_string(), "node-3".to_string()]));
    }
}

trait Tap {
    fn tap(self, f: fn(&mut Mesh)) -> Self;
}
impl Tap for Mesh {
    fn tap(mut self, f: fn(&mut Mesh)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn json_schema_is_stable() {
    let d = Mesh::new().tap(node3_down).diagnose();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["healthy"], false);
    let f = &v["findings"][0];
    let keys: BTreeSet<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "cause",
            "summary",
            "nodes",
            "pairs",
            "zones",
            "targets",
            "confidence",
            "evidence",
            "next_steps"
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(f["cause"], "node_down");
    assert!(f["pairs"][0].as_array().unwrap().len() == 2);
    let back: Diagnosis = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
    for c in Cause::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
    }
    let clean = Mesh::new().diagnose();
    assert_eq!(
        serde_json::to_string(&clean).unwrap(),
        r#"{"healthy":true,"findings":[]}"#
    );
    assert_eq!(clean.to_text(), "healthy: no findings\n");
}

#[test]
fn text_rendering() {
    let d = Mesh::new().tap(zone_partition).diagnose();
    let t = d.to_text();
    assert!(t.starts_with("1 finding:\n"), "{t}");
    assert!(
        t.contains("[vpc]") && t.contains("zones:   zone-a, zone-b") && t.contains("next steps:"),
        "{t}"
    );
    assert!(t.contains("(+"), "long pair lists are cut: {t}");
}

const RESULTS_DOC: &str = r#"{
  "node": "node-1", "zone": "zone-a", "version": "0.1.0", "ready": true, "rounds": 12,
  "interval_seconds": 1.0, "timeout_seconds": 1.0, "window_seconds": 10.0, "icmp_socket": "raw",
  "discovery": {"source": "file", "last_error": null, "future_field": [1, 2]},
  "peers": [
    {"node": "node-2", "zone": "zone-a", "node_ip": "198.18.1.12", "pod_ip": "198.19.2.10",
     "layers": {
       "icmp_pod": {"reachable": true, "consecutive_failures": 0, "probes": 10, "successes": 10,
                    "sent": 30, "received": 30, "success_ratio": 1.0, "loss_ratio": 0.0,
                    "rtt_seconds": {"p50": 0.0001, "p90": 0.0002, "p99": 0.0003, "max": 0.0004},
                    "last_error": null, "last_error_age_seconds": null, "last_probe_age_seconds": 0.3,
                    "last_phases": null},
       "icmp_node": {"reachable": true, "consecutive_failures": 0, "probes": 10, "successes": 10,
                     "sent": 30, "received": 30, "success_ratio": 1.0, "loss_ratio": 0.0,
                     "last_error": null},
       "http": {"reachable": false, "consecutive_failures": 3, "probes": 10, "successes": 7,
                "sent": 10, "received": 10, "success_ratio": 0.7, "loss_ratio": 0.0,
                "last_error": {"kind": "http_status", "code": 503}, "last_error_age_seconds": 0.5,
                "last_phases": {"resolve": 0.0, "connect": 0.0002, "first_byte": 0.001, "total": 0.0012}},
       "icmp_pod_large": {"probes": 5, "last_error": {"kind": "frag_needed", "from": "198.18.1.12", "mtu": 1400}}
     },
     "path_mtu": 1400, "mtu_state": "mismatch", "some_new_field": {"x": 1}},
    {"node": "node-3", "zone": "zone-b", "node_ip": "198.18.2.13", "pod_ip": "198.19.3.10",
     "layers": {
       "icmp_pod": {"reachable": false, "consecutive_failures": 4, "probes": 10, "successes": 6,
                    "sent": 10, "received": 6, "success_ratio": 0.6, "loss_ratio": 0.4,
                    "last_error": {"kind": "net_unreachable", "from": "198.19.1.1"}},
       "icmp_node": {"reachable": null, "consecutive_failures": 0, "probes": 0, "successes": 0,
                     "sent": 0, "received": 0, "success_ratio": null, "loss_ratio": null, "last_error": null}
     },
     "mtu": {"icmp_pod": {"path_mtu": 1500, "state": "something-new", "searching": false},
             "icmp_node": {"path_mtu": 1500, "expected_mtu": 1500, "state": "also-new"}}}
  ],
  "targets": [
    {"name": "web-node-2", "ip": "198.19.2.11", "port": 8080, "protocol": "http",
     "layers": {"icmp_pod": {"reachable": true, "probes": 10, "successes": 10, "sent": 10, "received": 10},
                "http": {"reachable": false, "consecutive_failures": 2, "probes": 10, "successes": 8,
                         "last_error": {"kind": "timeout"}}}},
    {"name": "db", "ip": "198.19.3.12", "port": 5432, "protocol": "tcp",
     "layers": {"tcp": {"reachable": false, "consecutive_failures": 2, "probes": 5, "successes": 3,
                        "last_error": {"kind": "refused"}}}}
  ]
}"#;

#[test]
fn parses_a_results_document() {
    let m = Matrix::from_json_documents(&[RESULTS_DOC]).unwrap();
    assert_eq!(m.nodes.len(), 3);
    let n3 = &m.nodes[m.node_index("node-3").unwrap()];
    assert_eq!(n3.zone.as_deref(), Some("zone-b"));
    assert_eq!(n3.node_ip, "198.18.2.13".parse().ok());
    let c = m.peer_cell("node-1", "node-3", Layer::IcmpPod).unwrap();
    assert_eq!((c.probes, c.successes, c.consecutive_failures), (10, 6, 4));
    assert_eq!(c.reachable, Some(false));
    let e = c.last_error.as_ref().unwrap();
    assert_eq!(e.kind(), ErrKind::NetUnreachable);
    assert_eq!(e.from_ip(), "198.19.1.1".parse().ok());
    // The gateway belongs to node-1 (its pod subnet, assumed /24 from its... peers list has no
    // node-1 entry, so only node-2/node-3 addresses are known).
    assert_eq!(
        m.owner_of("198.19.3.1".parse().unwrap())
            .map(|(i, _)| m.nodes[i].name.as_str()),
        Some("node-3")
    );
    let h = m.peer_cell("node-1", "node-2", Layer::Http).unwrap();
    assert_eq!(h.last_error.as_ref().unwrap().code, Some(503));
    assert_eq!(h.success_ratio, Some(0.7));
    let p2 = m
        .pairs
        .iter()
        .find(|p| m.nodes[p.src].name == "node-1" && p.dst == super::matrix::Dest::Node(1))
        .unwrap();
    assert_eq!(p2.path_mtu, Some(1400));
    assert_eq!(p2.mtu_state, Some(MtuState::Mismatch));
    assert_eq!(p2.other_errors.len(), 1, "unknown layer kept as evidence");
    let p3 = m
        .pairs
        .iter()
        .find(|p| p.dst == super::matrix::Dest::Node(2))
        .unwrap();
    assert_eq!(p3.mtu_state, Some(MtuState::Unknown));
    assert_eq!(p3.path_mtu, Some(1500));
    assert!(m
        .peer_cell("node-1", "node-3", Layer::IcmpNode)
        .unwrap()
        .success_ratio
        .is_none());
    let t = m.target_cell("node-1", "db", Layer::Tcp).unwrap();
    assert_eq!(t.last_error.as_ref().unwrap().kind(), ErrKind::Refused);
    assert_eq!(
        m.targets[m.target_index("db").unwrap()].node,
        m.node_index("node-3")
    );
    // node-2 and node-3 have no reports: missing agents.
    assert_eq!(m.reporting_sources(), 1);
    // The engine runs on it without panicking.
    let _ = diagnose(&m);
    // Garbage is an error naming the document, not a panic.
    assert!(Matrix::from_json_documents(&[RESULTS_DOC, "{"])
        .unwrap_err()
        .starts_with("document 2"));
    assert!(Matrix::from_json_documents(&["{}"]).is_ok());
}

#[test]
fn in_memory_pieces_match_the_json_path() {
    use meshprobe_core::model::ErrorClass;
    let e = ErrorClass::FragNeeded {
        from: "198.18.2.13".parse().ok(),
        mtu: Some(1400),
    };
    let i = ErrorInfo::from(&e);
    assert_eq!(
        (i.kind(), i.mtu, i.from.as_deref()),
        (ErrKind::FragNeeded, Some(1400), Some("198.18.2.13"))
    );
    let i = ErrorInfo::from(&ErrorClass::Icmp {
        from: None,
        icmp_type: 5,
        code: 1,
    });
    assert_eq!(i.kind(), ErrKind::IcmpOther);
    let i = ErrorInfo::from(&ErrorClass::HttpStatus { code: 503 });
    assert_eq!((i.kind(), i.code), (ErrKind::HttpStatus, Some(503)));
}

#[test]
fn no_panics_on_odd_inputs() {
    let odd = [
        r#"{"node": "", "peers": [{"node": ""}]}"#,
        r#"{"node": "a", "peers": [{"node": "a", "layers": {"icmp_pod": {"probes": 5, "successes": 9, "sent": 1, "received": 7, "success_ratio": 7.5}}}]}"#,
        r#"{"node": "a", "ready": false, "peers": [{"node": "b", "layers": {"http": {"probes": 4294967295, "consecutive_failures": 4294967295, "reachable": false}}}]}"#,
        r#"{"node": "a", "peers": [{"node": "b", "layers": {"icmp_pod": {"probes": 10, "reachable": false, "consecutive_failures": 9, "last_error": {"kind": "net_unreachable", "from": "not-an-ip"}}}}], "targets": [{"name": "t", "layers": {"http": {"probes": 10, "reachable": false, "consecutive_failures": 5}}}]}"#,
        r#"{"node": "b", "zone": "z", "peers": [{"node": "a", "zone": "y", "layers": {"icmp_node": {"probes": 10, "reachable": false, "consecutive_failures": 5, "last_error": {"kind": "frag_needed"}}}}]}"#,
    ];
    for doc in odd {
        let m = Matrix::from_json_documents(&[doc]).unwrap();
        let d = diagnose(&m);
        let _ = d.to_text();
        for f in &d.findings {
            assert!((0.0..=1.0).contains(&f.confidence));
        }
    }
    let m = Matrix::from_json_documents(&odd).unwrap();
    let _ = diagnose(&m);
    let _ = diagnose(&Matrix::default());
    assert!(diagnose(&Matrix::default()).healthy);
}

#[test]
fn cleaning_rules() {
    use super::engine::{cell_state, St};
    use super::matrix::Cell;
    let p = Params::default();
    let st = |s: LayerStats| cell_state(&Cell::from(&s), Some(1.0), Some(10.0), &p);
    let table: Vec<(&str, LayerStats, St)> = vec![
        ("clean", ok(), St::Ok),
        ("one lost probe, the last one", one_lost(), St::Ok),
        (
            "two failures in a row",
            LayerStats {
                consecutive_failures: 2,
                ..one_lost()
            },
            St::Down,
        ),
        ("few probes", fresh_failing(), St::Unknown),
        ("30% loss", lossy(9), St::Lossy),
        ("1 of 30 echoes lost", lossy(1), St::Ok),
        (
            "stale",
            LayerStats {
                last_probe_age_seconds: Some(60.0),
                ..timeout()
            },
            St::Unknown,
        ),
        ("prober error", down(err("io")), St::Unknown),
        (
            "mostly failing, last one too",
            LayerStats {
                consecutive_failures: 1,
                successes: 1,
                success_ratio: Some(0.1),
                ..one_lost()
            },
            St::Down,
        ),
        (
            "recovering: an outage's failures, answering for 2.5 intervals",
            LayerStats {
                successes: 3,
                received: 3,
                success_ratio: Some(0.3),
                last_error_age_seconds: Some(2.5),
                ..ok()
            },
            St::Unknown,
        ),
        (
            "recovered: an outage's failures, answering for over 3 intervals: a working path",
            LayerStats {
                successes: 3,
                received: 3,
                success_ratio: Some(0.3),
                last_error_age_seconds: Some(5.0),
                ..ok()
            },
            St::Ok,
        ),
        (
            "a cleared outage: 8 of 10 probes fine, quiet for 4 s (loss spaced 1.1 s)",
            LayerStats {
                last_error_age_seconds: Some(4.0),
                ..lossy(9)
            },
            St::Unknown,
        ),
        (
            "steady loss, quiet for 4 s between sparse losses (spaced 3.3 s)",
            LayerStats {
                last_error_age_seconds: Some(4.0),
                ..lossy(3)
            },
            St::Lossy,
        ),
    ];
    for (label, s, want) in table {
        assert_eq!(st(s), want, "{label}");
    }
}

#[test]
fn scales_roughly_linearly() {
    // 150 nodes in 3 zones, full mesh (22,350 node pairs), one node down: one finding, quickly.
    let n = 150;
    let mut docs = Vec::new();
    for s in 0..n {
        if s == 7 {
            continue;
        }
        let peers: Vec<PeerReport> = (0..n)
            .filter(|&d| d != s)
            .map(|d| PeerReport {
                node: format!("n{d}"),
                zone: Some(format!("z{}", d % 3)),
                node_ip: format!("10.0.{}.{}", d / 250, d % 250).parse().ok(),
                pod_ip: format!("10.1.{d}.10").parse().ok(),
                layers: PEER_LAYERS
                    .iter()
                    .map(|l| (l.to_string(), if d == 7 { timeout() } else { ok() }))
                    .collect(),
                ..PeerReport::default()
            })
            .collect();
        docs.push(AgentReport {
            node: format!("n{s}"),
            zone: Some(format!("z{}", s % 3)),
            ready: Some(true),
            rounds: Some(100),
            peers,
            ..AgentReport::default()
        });
    }
    let t0 = std::time::Instant::now();
    let m = Matrix::build(&Inputs {
        agents: docs,
        ..Inputs::default()
    });
    let d = diagnose(&m);
    let took = t0.elapsed();
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    assert_eq!(d.findings[0].cause, Cause::NodeDown);
    assert_eq!(d.findings[0].nodes, ["n7"]);
    assert!(took.as_secs_f64() < 10.0, "took {took:?}");
}

/// `cargo test --lib diagnosis::tests::show -- --ignored --nocapture` prints every scenario's text.
#[test]
#[ignore]
fn show() {
    let table: Vec<(&str, Scenario)> = vec![
        ("node down", node3_down),
        ("cni", node3_cni),
        ("route", route_1_to_3),
        ("one way", one_way_1_to_3),
        ("no routes", node2_no_routes),
        ("zone", zone_partition),
        ("lone zone", lone_zone_partition),
        ("lone zone down", lone_zone_node_down),
        ("mtu states", mtu_node3_states),
        ("mtu errors", mtu_node3_errors),
        ("loss", loss_node2),
        ("policy", policy_web2),
        ("app", app_web2),
    ];
    for (label, f) in table {
        let mut m = Mesh::new();
        f(&mut m);
        println!("==== {label}\n{}", m.diagnose());
    }
}

#[test]
fn sampled_plan_at_scale() {
    // 2,000 nodes, each probing 20 peers (a sampled plan): 40,000 pairs; node 77 down.
    let n = 2000usize;
    let agents: Vec<AgentReport> = (0..n)
        .filter(|&s| s != 77)
        .map(|s| AgentReport {
            node: format!("n{s}"),
            zone: Some(format!("z{}", s % 5)),
            ready: Some(true),
            rounds: Some(100),
            peers: (1..=20)
                .map(|k| (s + k * 97) % n)
                .filter(|&d| d != s)
                .map(|d| PeerReport {
                    node: format!("n{d}"),
                    zone: Some(format!("z{}", d % 5)),
                    layers: PEER_LAYERS
                        .iter()
                        .map(|l| (l.to_string(), if d == 77 { timeout() } else { ok() }))
                        .collect(),
                    ..PeerReport::default()
                })
                .collect(),
            ..AgentReport::default()
        })
        .collect();
    let t0 = std::time::Instant::now();
    let d = diagnose(&Matrix::build(&Inputs {
        agents,
        ..Inputs::default()
    }));
    let took = t0.elapsed();
    assert_eq!(d.findings.len(), 1, "{}", d.to_text());
    assert_eq!(
        (d.findings[0].cause, d.findings[0].nodes.as_slice()),
        (Cause::NodeDown, ["n77".to_string()].as_slice())
    );
    assert!(took.as_secs_f64() < 10.0, "took {took:?}");
    println!("2000 nodes, 40k pairs: {took:?}");
}

// ---- real-data problems from the lab (each pinned by a synthetic case) ----------------------

fn timeout_count(n: u32, age: f64) -> ErrorCountInfo {
    ErrorCountInfo {
        kind: "timeout".into(),
        count: n,
        last: Some(err("timeout")),
        last_age_seconds: Some(age),
    }
}

/// `loss node-2 30` as the agents saw it: ~50% of round trips lost on every path touching
/// node-2, so HTTP to node-2's agent and to web-node-2 mostly times out (1/10 succeeded).
fn loss_node2_real(m: &mut Mesh) {
    loss_node2(m);
    let http_dead = LayerStats {
        reachable: Some(false),
        consecutive_failures: 2,
        successes: 1,
        received: 1,
        success_ratio: Some(0.1),
        loss_ratio: Some(0.9),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.9),
        errors: vec![timeout_count(9, 0.9)],
        ..ok()
    };
    let http_flaky = LayerStats {
        successes: 4,
        received: 4,
        success_ratio: Some(0.4),
        loss_ratio: Some(0.6),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(1.5),
        errors: vec![timeout_count(6, 1.5)],
        ..ok()
    };
    m.p(1, 2, &["http"], http_dead.clone());
    m.p(4, 2, &["http"], http_dead.clone());
    m.p(3, 2, &["http"], http_flaky.clone());
    m.t(1, 2, &["http"], http_dead.clone());
    m.t(3, 2, &["http"], http_dead);
    m.t(4, 2, &["http"], http_flaky);
    // Bad luck: all 3 echoes of 2 probes in a row lost, node-2 -> web-node-1.
    m.t(
        2,
        1,
        &["icmp_pod"],
        LayerStats {
            consecutive_failures: 2,
            successes: 8,
            success_ratio: Some(0.8),
            sent: 30,
            received: 14,
            ..down(err("timeout"))
        },
    );
}

#[test]
fn real_data_problems_stay_fixed() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        (
            // Was: packet_loss node-2 plus 5 `policy` findings ("from 1 of 4 sources only").
            "loss: timeouts on the lossy node's paths are the loss, not policy",
            loss_node2_real,
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            // Was: an extra `routing` node-2 -> node-3 (e2e run): two ICMP probes in a row lost
            // on the lossy node's path and its HTTP mostly timing out, ICMP still delivering.
            "loss: a pair of the lossy node with two failed ICMP probes in a row is the loss",
            |m| {
                loss_node2_real(m);
                let icmp_unlucky = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 2,
                    successes: 8,
                    received: 15,
                    sent: 30,
                    success_ratio: Some(0.8),
                    loss_ratio: Some(0.5),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.5),
                    errors: vec![timeout_count(15, 0.5)],
                    ..ok()
                };
                let http_dead = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 4,
                    successes: 1,
                    received: 1,
                    success_ratio: Some(0.1),
                    loss_ratio: Some(0.9),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.7),
                    errors: vec![timeout_count(9, 0.7)],
                    ..ok()
                };
                m.p(2, 3, &["icmp_pod"], icmp_unlucky);
                m.p(2, 3, &["http"], http_dead);
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            // Was: an extra `cni` for web-node-2 "from 1 of 3 sources" (e2e run under load):
            // one source's last three probes to the target's pod IP lost, its HTTP dead.
            "loss: a target on the lossy node unanswered by one source for a while is the loss",
            |m| {
                loss_node2_real(m);
                let icmp_unlucky = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 3,
                    successes: 6,
                    received: 14,
                    sent: 30,
                    success_ratio: Some(0.6),
                    loss_ratio: Some(0.53),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.5),
                    errors: vec![timeout_count(16, 0.5)],
                    ..ok()
                };
                m.t(3, 2, &["icmp_pod"], icmp_unlucky);
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            // Was: an extra `mtu` finding for node-1 -> node-2 (agent's verdict "black hole").
            "loss: a path-MTU black hole verdict on a lossy path is the loss",
            |m| {
                loss_node2_real(m);
                m.mtu.insert((1, 2), (1405, MtuState::Blackhole));
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "a timeout to a target from 1 of 4 sources, intermittent: noise, not policy",
            |m| {
                m.t(
                    1,
                    2,
                    &["http"],
                    LayerStats {
                        consecutive_failures: 2,
                        ..down(err("timeout"))
                    },
                );
            },
            vec![],
        ),
        (
            "a persistent timeout from 1 of 4 sources is no NetworkPolicy",
            |m| {
                m.t(
                    1,
                    2,
                    &["http"],
                    LayerStats {
                        consecutive_failures: 10,
                        successes: 0,
                        success_ratio: Some(0.0),
                        ..down(err("timeout"))
                    },
                );
            },
            vec![ex(Application, &["node-2"])],
        ),
        (
            // Was: two stale pair findings 6 s after `clear` (ICMP partial loss leaves no
            // error of its own; the pair's HTTP had been quiet for seconds).
            "cleared loss: ICMP lossy without errors, the pair quiet for 5 s",
            |m| {
                let icmp = LayerStats {
                    sent: 30,
                    received: 24,
                    loss_ratio: Some(0.2),
                    ..ok()
                };
                let http = LayerStats {
                    successes: 6,
                    received: 6,
                    success_ratio: Some(0.6),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(5.0),
                    errors: vec![timeout_count(4, 5.0)],
                    ..ok()
                };
                for (a, b) in [(2, 3), (3, 2), (2, 4), (4, 2)] {
                    m.p(a, b, &["icmp_pod", "icmp_node"], icmp.clone());
                    m.p(a, b, &["http"], http.clone());
                }
            },
            vec![],
        ),
        (
            // The old rule (window / lost) flipped back to lossy as the count fell.
            "cleared loss: 3 errors left, the newest 8 s old",
            |m| {
                let st = LayerStats {
                    last_error_age_seconds: Some(8.0),
                    errors: vec![timeout_count(3, 8.0)],
                    ..lossy(3)
                };
                m.around(2, &["icmp_pod", "icmp_node"], &["icmp_pod"], st);
            },
            vec![],
        ),
        (
            // Was: "packet_loss node-4 ~7%" right after `node-down node-4` was cleared.
            "a node that came back: whole probes failed, none partially, answering now",
            |m| {
                let st = LayerStats {
                    successes: 7,
                    sent: 30,
                    received: 21,
                    success_ratio: Some(0.7),
                    loss_ratio: Some(0.3),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(1.5),
                    errors: vec![timeout_count(3, 1.5)],
                    ..ok()
                };
                m.around(4, &["icmp_pod", "icmp_node"], &["icmp_pod"], st);
            },
            vec![],
        ),
        (
            "a node going down: its first whole-probe failure is no loss",
            |m| {
                let st = LayerStats {
                    reachable: Some(false),
                    consecutive_failures: 1,
                    successes: 9,
                    sent: 30,
                    received: 27,
                    success_ratio: Some(0.9),
                    loss_ratio: Some(0.1),
                    last_error: Some(err("timeout")),
                    last_error_age_seconds: Some(0.3),
                    ..ok()
                };
                m.around(4, &["icmp_pod", "icmp_node"], &["icmp_pod"], st);
            },
            vec![],
        ),
        (
            // The gateway rate-limits its "net unreachable": the last error is a timeout,
            // the window's per-kind list keeps the one from 198.19.1.1.
            "route: net unreachable only in the window's error list names node-1",
            |m| {
                let st = LayerStats {
                    errors: vec![
                        timeout_count(5, 0.4),
                        ErrorCountInfo {
                            kind: "net_unreachable".into(),
                            count: 1,
                            last: Some(err_from("net_unreachable", "198.19.1.1")),
                            last_age_seconds: Some(4.0),
                        },
                    ],
                    ..timeout()
                };
                m.p(1, 3, &["icmp_pod", "http"], st.clone());
                m.t(1, 3, &TARGET_LAYERS, st);
                m.missing.insert(3);
            },
            vec![ex(Routing, &["node-1"])],
        ),
    ];
    for (label, f, want) in table {
        let mut m = Mesh::new();
        f(&mut m);
        check(label, &m.diagnose(), &want);
    }
}

#[test]
fn route_without_its_icmp_error_points_at_the_source_table() {
    // node-3's agent unreachable from node-1, net unreachable aged out: the one-way pair.
    let mut m = Mesh::new();
    one_way_1_to_3(&mut m);
    m.missing.insert(3);
    let d = m.diagnose();
    check(
        "one way, node-3 silent",
        &d,
        &[ex(Cause::Routing, &["node-1", "node-3"])],
    );
    let f = &d.findings[0];
    assert!(f
        .pairs
        .contains(&["node-1".to_string(), "node-3".to_string()]));
    assert!(
        f.next_steps[0].starts_with("Runbook diagnosis 5: on node-1, `ip route get 198.19.3.10`"),
        "{}",
        f.next_steps[0]
    );
}

/// A sampled plan (issue 9): node pairs nobody probes, in both directions; targets are always
/// probed. Node-level faults and partitions are localised from the pairs that remain; a lost
/// route whose peer pairs are unprobed is still pinned on its node through the targets.
#[test]
fn on_a_sampled_plan_faults_are_still_localised() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        ("healthy", |_| {}, vec![]),
        (
            "route to node-3's pods deleted on node-1, seen through the targets only",
            route_1_to_3,
            vec![Expect {
                targets: &["web-node-3", "web-node-1"],
                ..ex(Routing, &["node-1"])
            }],
        ),
        ("node down", node3_down, vec![ex(NodeDown, &["node-3"])]),
        ("CNI on node-3", node3_cni, vec![ex(Cni, &["node-3"])]),
        (
            "node-2 lost all its pod routes",
            node2_no_routes,
            vec![ex(Routing, &["node-2"])],
        ),
        (
            "zone partition",
            zone_partition,
            vec![Expect {
                zones: &["zone-a", "zone-b"],
                ..ex(Vpc, &[])
            }],
        ),
    ];
    for (label, scenario, want) in table {
        let mut m = Mesh::new();
        m.unprobed.extend([(1, 3), (3, 1), (2, 4), (4, 2)]);
        scenario(&mut m);
        check(label, &m.diagnose(), &want);
    }
    // Without the target probes a route lost on an unprobed pair is invisible: nothing to say.
    let mut m = Mesh::new();
    m.unprobed.extend([(1, 3), (3, 1)]);
    let nu = down(err_from("net_unreachable", "198.19.1.1"));
    m.p(1, 3, &["icmp_pod", "http"], nu);
    check(
        "route on an unprobed pair, targets fine",
        &m.diagnose(),
        &[],
    );
}

// ---- onset: the first second of a fault -----------------------------------------------------
//
// During the first second of a fault some (pair, layer) cells have been probed since it began
// and fail, others still show their last success from before. Failing cells here began to fail
// 0.6 s ago (`failing_for_seconds`); every other cell was last probed `ok_age` s ago: 0.9
// (before the failures began: stale) or 0.2 (after: fresh). Stale successes must not be read
// as contrasts (pod IP fails, node IP "answers" → cni; one source fails, the others
// "succeed" → routing): no finding yet, or the right one. Fresh ones are contrasts, as before.

/// Failing since 0.6 s: the first failure and its confirmation.
fn onset_down(e: ErrorInfo) -> LayerStats {
    LayerStats {
        reachable: Some(false),
        consecutive_failures: 2,
        successes: 8,
        received: 8,
        success_ratio: Some(0.8),
        loss_ratio: Some(0.2),
        last_error: Some(e),
        last_error_age_seconds: Some(0.05),
        last_probe_age_seconds: Some(0.05),
        failing_for_seconds: Some(0.6),
        ..ok()
    }
}

fn onset_timeout() -> LayerStats {
    onset_down(err("timeout"))
}

/// Every peer and target cell answering, last probed `age` s ago.
fn all_ok_at(m: &mut Mesh, age: f64) {
    let st = LayerStats {
        last_probe_age_seconds: Some(age),
        ..ok()
    };
    for s in 1..=N {
        for d in 1..=N {
            if s != d {
                m.p(s, d, &PEER_LAYERS, st.clone());
            }
            m.t(s, d, &TARGET_LAYERS, st.clone());
        }
    }
}

/// zone-a | zone-b cut, 0.6 s in: node-1 → node-3 and node-4 → node-1 fail on every layer;
/// node-1 → node-4, node-2 → node-4 and node-2 → node-3 have seen their pod IPs fail but not
/// yet probed the node IPs again; the other cross-zone pairs not probed yet.
fn partition_onset(m: &mut Mesh) {
    m.p(1, 3, &PEER_LAYERS, onset_timeout());
    m.p(4, 1, &PEER_LAYERS, onset_timeout());
    for (s, d) in [(1, 4), (2, 4), (2, 3)] {
        m.p(s, d, &["icmp_pod", "http"], onset_timeout());
    }
    m.t(2, 3, &TARGET_LAYERS, onset_timeout());
    m.t(1, 4, &["icmp_pod"], onset_timeout());
}

/// The same cut as the diagnosing agent in zone-a sees it: zone-b's agents no longer answer,
/// node-3 fails from both zone-a sources, node-4 has not been probed since (real data: read as
/// `node_down` node-2 — the lab's zone-b — for half a second).
fn partition_onset_cut_off(m: &mut Mesh) {
    for s in [1, 2] {
        m.p(s, 3, &PEER_LAYERS, onset_timeout());
        m.t(s, 3, &TARGET_LAYERS, onset_timeout());
    }
    m.missing.insert(3);
    m.missing.insert(4);
}

/// The same while node-4's agent still answers with its last document (all its probes
/// succeeded before the cut), and node-2's window still holds an earlier outage's residue on
/// the node IP (unknown, last probe a success from before).
fn node_down_onset_reporting(m: &mut Mesh) {
    let age = m.peer[&(2, 4, "icmp_node")].last_probe_age_seconds;
    m.p(1, 4, &PEER_LAYERS, onset_timeout());
    m.p(2, 4, &["icmp_pod", "http"], onset_timeout());
    m.p(
        2,
        4,
        &["icmp_node"],
        LayerStats {
            successes: 7,
            sent: 30,
            received: 21,
            success_ratio: Some(0.7),
            loss_ratio: Some(0.3),
            last_error: Some(err("timeout")),
            last_error_age_seconds: Some(5.0),
            last_probe_age_seconds: age,
            ..ok()
        },
    );
    m.t(1, 4, &TARGET_LAYERS, onset_timeout());
    m.t(2, 4, &TARGET_LAYERS, onset_timeout());
}

/// node-4 down, 0.6 s in (its agent no longer answers): node-1 sees it all dead, node-2 its
/// pod IP and target, node-3 nothing yet.
fn node_down_onset(m: &mut Mesh) {
    m.p(1, 4, &PEER_LAYERS, onset_timeout());
    m.p(2, 4, &["icmp_pod", "http"], onset_timeout());
    m.t(1, 4, &TARGET_LAYERS, onset_timeout());
    m.t(2, 4, &TARGET_LAYERS, onset_timeout());
    m.missing.insert(4);
}

/// node-3's pod network broken, 0.6 s in: node-1 saw its pod IP fail (node IP not probed
/// since), node-3's agent failed to reach node-1 on every layer; the rest not probed yet.
fn cni_onset(m: &mut Mesh) {
    m.p(1, 3, &["icmp_pod", "http"], onset_timeout());
    m.p(3, 1, &PEER_LAYERS, onset_timeout());
}

/// node-1's route to node-3's pod subnet gone, 0.6 s in: node-3's probes to node-1 time out
/// (the replies have no route), node-1 has not probed node-3's pod IP since.
fn route_onset(m: &mut Mesh) {
    m.p(3, 1, &PEER_LAYERS, onset_timeout());
    m.t(3, 1, &TARGET_LAYERS, onset_timeout());
}

/// The same, once node-1 probed node-3's pod IP and got its "net unreachable": the right
/// finding at once, whatever the other pairs show.
fn route_onset_answered(m: &mut Mesh) {
    route_onset(m);
    let nu = onset_down(err_from("net_unreachable", "198.19.1.1"));
    m.p(1, 3, &["icmp_pod", "http"], nu.clone());
    m.t(1, 3, &TARGET_LAYERS, nu);
}

/// web-node-2's port dropped, 0.85 s in: connections from node-1 and node-3 have timed out
/// three times (first failure, its confirmation, the next round); node-2 and node-4 have not
/// tried since.
fn policy_onset(m: &mut Mesh) {
    let st = LayerStats {
        consecutive_failures: 3,
        successes: 7,
        received: 7,
        success_ratio: Some(0.7),
        loss_ratio: Some(0.3),
        failing_for_seconds: Some(0.85),
        ..onset_timeout()
    };
    for s in [1, 3] {
        m.t(s, 2, &["http"], st.clone());
    }
}

/// The mesh with every `failing_for_seconds` removed: what an older agent gives the engine
/// (directly or through Prometheus).
fn without_onsets(m: &Mesh) -> Mesh {
    let mut m = m.clone();
    for st in m.peer.values_mut().chain(m.target.values_mut()) {
        st.failing_for_seconds = None;
    }
    m
}

fn summary(d: &Diagnosis) -> Vec<(Cause, Vec<String>, Vec<String>, usize)> {
    let mut v: Vec<_> = d
        .findings
        .iter()
        .map(|f| (f.cause, f.nodes.clone(), f.zones.clone(), f.pairs.len()))
        .collect();
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    v
}

/// One onset case: with stale contrasts no wrong finding (none yet, or exactly `right`); the
/// same data without the onset ages reads as before, wrongly (so the case tests something);
/// with fresh contrasts the usual findings.
fn onset_case(name: &str, build: Scenario, right: &Expect) {
    let mut stale = Mesh::new();
    all_ok_at(&mut stale, 0.9);
    build(&mut stale);
    let d = stale.diagnose();
    if !d.findings.is_empty() {
        check(
            &format!("{name} onset, stale contrasts"),
            &d,
            &[Expect { ..*right }],
        );
    }
    let legacy = without_onsets(&stale).diagnose();
    let right_alone = legacy.findings.len() == 1
        && legacy.findings[0].cause == right.cause
        && legacy.findings[0].nodes == right.nodes;
    assert!(
        !legacy.findings.is_empty() && !right_alone,
        "{name}: the reading without onset ages should be the wrong one\n{}",
        legacy.to_text()
    );
    let mut fresh = Mesh::new();
    all_ok_at(&mut fresh, 0.2);
    build(&mut fresh);
    let d = fresh.diagnose();
    let usual = without_onsets(&fresh).diagnose();
    assert!(!d.findings.is_empty(), "{name}: fresh contrasts");
    assert_eq!(
        summary(&d),
        summary(&usual),
        "{name}: fresh contrasts\n{}\nusual:\n{}",
        d.to_text(),
        usual.to_text()
    );
}

#[test]
fn onset_partition() {
    let right = Expect {
        zones: &["zone-a", "zone-b"],
        ..ex(Cause::Vpc, &[])
    };
    onset_case("partition", partition_onset, &right);
}

#[test]
fn onset_partition_seen_from_one_side() {
    let right = Expect {
        zones: &["zone-a", "zone-b"],
        ..ex(Cause::Vpc, &[])
    };
    onset_case("partition, one side", partition_onset_cut_off, &right);
}

#[test]
fn onset_policy() {
    let right = Expect {
        targets: &["web-node-2"],
        ..ex(Cause::Policy, &["node-2"])
    };
    onset_case("policy", policy_onset, &right);
}

#[test]
fn onset_node_down() {
    onset_case(
        "node-down",
        node_down_onset,
        &ex(Cause::NodeDown, &["node-4"]),
    );
}

#[test]
fn onset_node_down_agent_still_answering() {
    onset_case(
        "node-down, agent answering",
        node_down_onset_reporting,
        &ex(Cause::NodeDown, &["node-4"]),
    );
}

#[test]
fn onset_cni() {
    onset_case("cni", cni_onset, &ex(Cause::Cni, &["node-3"]));
}

#[test]
fn onset_route() {
    onset_case("route", route_onset, &ex(Cause::Routing, &["node-1"]));
}

#[test]
fn onset_positive_evidence_is_not_held_back() {
    // A "net unreachable" from node-1's own gateway names the fault whatever else is stale.
    for age in [0.9, 0.2] {
        let mut m = Mesh::new();
        all_ok_at(&mut m, age);
        route_onset_answered(&mut m);
        let d = m.diagnose();
        assert_eq!(d.findings.len(), 1, "ok age {age}\n{}", d.to_text());
        assert_eq!(d.findings[0].cause, Cause::Routing, "{}", d.to_text());
        assert!(d.findings[0].nodes.contains(&"node-1".to_string()));
    }
}

#[test]
fn onset_settled_faults_read_as_before() {
    // Faults whose failures are older than every success (steady state): the onset ages
    // change nothing.
    let faults: [(&str, Scenario); 4] = [
        ("node-down", node3_down),
        ("cni", node3_cni),
        ("route", route_1_to_3),
        ("partition", zone_partition),
    ];
    for (name, build) in faults {
        let mut m = Mesh::new();
        build(&mut m);
        let legacy = m.diagnose();
        for st in m.peer.values_mut().chain(m.target.values_mut()) {
            if st.reachable == Some(false) {
                st.failing_for_seconds = Some(3.0);
            }
        }
        assert_eq!(
            summary(&m.diagnose()),
            summary(&legacy),
            "{name}\n{}",
            m.diagnose().to_text()
        );
    }
}

#[test]
fn onset_unconfirmed_contrast_is_no_contrast() {
    // node-1 → node-3 (across the zones): the pod IP failed twice since 0.6 s, the node IP's
    // first failure is 0.1 s old and not confirmed yet (unknown): "pod IP fails, node IP does
    // not" is no routing fault yet (real data: `partition` read as `routing` node-1 → node-2).
    let first_failure = LayerStats {
        reachable: Some(false),
        consecutive_failures: 1,
        successes: 9,
        sent: 30,
        received: 27,
        success_ratio: Some(0.9),
        loss_ratio: Some(0.1),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.1),
        last_probe_age_seconds: Some(0.1),
        failing_for_seconds: Some(0.1),
        ..ok()
    };
    for age in [0.9, 0.2] {
        let mut m = Mesh::new();
        all_ok_at(&mut m, age);
        m.p(1, 3, &["icmp_pod", "http"], onset_timeout());
        m.p(1, 3, &["icmp_node"], first_failure.clone());
        check(&format!("ok age {age}"), &m.diagnose(), &[]);
        let legacy = without_onsets(&m).diagnose();
        assert_eq!(legacy.findings.len(), 1, "{}", legacy.to_text());
        assert_eq!(legacy.findings[0].cause, Cause::Routing);
    }
}

/// The diagnosis of a recorded onset: `tests/fixtures/onset/NAME`, every agent's
/// `/api/v1/results` document as served during a lab fault's first seconds.
fn onset_fixture(name: &str) -> Diagnosis {
    let docs: Vec<String> = onset_results(name).iter().map(|d| d.to_string()).collect();
    diagnose(&Matrix::from_json_documents(&docs).unwrap())
}

/// The documents of a recorded onset (see [`onset_fixture`]), to edit before diagnosing.
fn onset_results(name: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/tests/fixtures/onset/{name}", env!("CARGO_MANIFEST_DIR"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["results"].as_array().unwrap().clone()
}

#[test]
fn onset_real_node_down() {
    // Real data (lab `node-down node-4`, 2.4 s after the command): node-2's node IP to node-4
    // is "lossy" with its last probe failed 0.4 s ago — no success since node-4 began to fail.
    // Its lost packets are that failed probe's 3 plus 1 echo earlier: no loss (`answered_loss`)
    // but unknown, so node-3's dead node IP and every dead pod IP already say node_down; nothing
    // (pending) would do too, any other reading is wrong.
    let d = onset_fixture("node-down-node-4.json");
    assert!(
        d.findings.is_empty()
            || summary(&d)
                == vec![(
                    Cause::NodeDown,
                    vec![name(4)],
                    vec!["zone-b".to_string()],
                    5
                )],
        "{}",
        d.to_text()
    );
    // The same moment with one more echo lost earlier on node-2's node IP to node-4 (2 lost
    // in 2 answered probes: a lossy cell, a contrast that predates the failure). The onset rule
    // alone keeps it right; without the onset ages, the wrong reading of that moment.
    let lossier: Vec<String> = onset_results("node-down-node-4.json")
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if d["node"] == "node-2" {
                for p in d["peers"].as_array_mut().unwrap() {
                    if p["node"] == "node-4" {
                        let c = &mut p["layers"]["icmp_node"];
                        c["received"] = 19.into();
                        c["errors"][0]["count"] = 3.into();
                    }
                }
            }
            d.to_string()
        })
        .collect();
    let d = diagnose(&Matrix::from_json_documents(&lossier).unwrap());
    assert!(d.findings.is_empty(), "{}", d.to_text());
    let stripped: Vec<String> = lossier
        .iter()
        .map(|d| d.replace("\"failing_for_seconds\"", "\"x_failing_for_seconds\""))
        .collect();
    let legacy = diagnose(&Matrix::from_json_documents(&stripped).unwrap());
    let causes: BTreeSet<Cause> = legacy.findings.iter().map(|f| f.cause).collect();
    assert_eq!(
        causes,
        BTreeSet::from([Cause::Routing, Cause::Vpc]),
        "{}",
        legacy.to_text()
    );
}

#[test]
fn onset_refusals_need_no_contrast() {
    // web-node-2 refuses connections from every source since 0.6 s; the pod IP was last
    // probed before that: the refusal is the pod answering — `application` at once.
    let mut m = Mesh::new();
    all_ok_at(&mut m, 0.9);
    for s in 1..=N {
        m.t(s, 2, &["http"], onset_down(err("refused")));
    }
    check(
        "refused at onset",
        &m.diagnose(),
        &[Expect {
            targets: &["web-node-2"],
            ..ex(Cause::Application, &["node-2"])
        }],
    );
}

// ---- loss vs an outage's cut round ------------------------------------------------------------

/// Lab-like figures (8 probes of 3 echoes in the window): `failed` probes failed whole,
/// `partial` answered probes lost `partial_lost` echoes between them; the last probe failed
/// when `last_failed`.
fn echo_cell(failed: u32, partial: u32, partial_lost: u32, last_failed: bool) -> LayerStats {
    let lost = 3 * failed + partial_lost;
    LayerStats {
        reachable: Some(!last_failed),
        consecutive_failures: u32::from(last_failed),
        probes: 8,
        successes: 8 - failed,
        sent: 24,
        received: 24 - lost,
        success_ratio: Some(f64::from(8 - failed) / 8.0),
        loss_ratio: Some(f64::from(lost) / 24.0),
        last_error: Some(err("timeout")),
        last_error_age_seconds: Some(0.1),
        last_probe_age_seconds: Some(0.1),
        failing_for_seconds: last_failed.then_some(0.1),
        errors: vec![timeout_count(failed + partial, 0.1)],
        ..ok()
    }
}

/// A probe failed whole in an earlier outage (still in the window), then this outage's cut
/// round: 1 of 3 echoes answered just now. 5/24 lost.
fn cut_after_residue() -> LayerStats {
    echo_cell(1, 1, 2, false)
}

/// The cut round, then the first probe that failed whole. 5/24 lost.
fn cut_then_failed() -> LayerStats {
    echo_cell(1, 1, 2, true)
}

/// Steady loss on one path: 6 echoes lost in 4 answered probes (25%).
fn steady_pair_loss() -> LayerStats {
    echo_cell(0, 4, 6, false)
}

#[test]
fn loss_is_what_answered_probes_lost() {
    use super::engine::{cell_state, St};
    use super::matrix::Cell;
    let p = Params::default();
    let st = |s: LayerStats| cell_state(&Cell::from(&s), Some(1.0), Some(8.0), &p);
    let table: Vec<(&str, LayerStats, St)> = vec![
        (
            "an earlier outage's failed probe + a cut round",
            cut_after_residue(),
            St::Lossy, // 2/24: below the per-pair threshold (3 packets, 20%)
        ),
        (
            "a cut round, then a whole failure",
            cut_then_failed(),
            St::Unknown,
        ),
        (
            "a whole failure + 1 echo lost before",
            echo_cell(1, 1, 1, true),
            St::Unknown,
        ),
        (
            "two whole failures: down",
            echo_cell(2, 1, 2, true).with_cf(2),
            St::Down,
        ),
        ("steady loss", steady_pair_loss(), St::Lossy),
        (
            "steady loss with a whole failure too",
            echo_cell(1, 3, 4, false),
            St::Lossy,
        ),
        (
            "loss onset: 1 echo lost in each of 2 probes",
            echo_cell(0, 2, 2, false),
            St::Lossy,
        ),
        (
            "2 echoes lost in a single probe, answered",
            echo_cell(0, 1, 2, false),
            St::Lossy,
        ),
        (
            "... then an answer after a whole failure",
            echo_cell(1, 2, 3, false),
            St::Lossy,
        ),
        (
            "no error counts (older agents): the packets alone",
            LayerStats {
                errors: Vec::new(),
                ..echo_cell(1, 1, 2, true)
            },
            St::Lossy,
        ),
    ];
    for (label, s, want) in table {
        assert_eq!(st(s), want, "{label}");
    }
}

impl LayerStats {
    fn with_cf(mut self, n: u32) -> LayerStats {
        self.consecutive_failures = n;
        self
    }
}

#[test]
fn cut_rounds_are_no_packet_loss() {
    use Cause::*;
    let table: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        (
            // Was: packet_loss node-3 <-> node-2, one pair, for up to a second (lab partition).
            "a cut round after an earlier outage's failed probe, one pair",
            |m| {
                m.p(3, 2, &["icmp_node"], cut_after_residue());
            },
            vec![],
        ),
        (
            "a cut round then a whole failure, one pair",
            |m| {
                m.p(1, 4, &["icmp_pod"], cut_then_failed());
            },
            vec![],
        ),
        (
            // Was (answered packets without the probe count): packet_loss node-3.
            "cut rounds on two of a node's outbound pairs",
            |m| {
                m.p(3, 2, &["icmp_node"], cut_after_residue());
                m.p(3, 4, &["icmp_node"], cut_then_failed());
            },
            vec![],
        ),
        (
            "steady loss on one pair, one direction, one layer",
            |m| {
                m.p(1, 2, &["icmp_pod"], steady_pair_loss());
            },
            vec![ex(PacketLoss, &["node-1", "node-2"])],
        ),
        (
            "steady loss on one pair, both layers",
            |m| {
                m.p(1, 2, &["icmp_pod", "icmp_node"], steady_pair_loss());
            },
            vec![ex(PacketLoss, &["node-1", "node-2"])],
        ),
        (
            "steady loss with a whole failure just now, one pair",
            |m| {
                m.p(1, 2, &["icmp_pod", "icmp_node"], echo_cell(1, 4, 6, true));
            },
            vec![ex(PacketLoss, &["node-1", "node-2"])],
        ),
        (
            "steady loss around node-2, with error counts",
            |m| {
                m.around(
                    2,
                    &["icmp_pod", "icmp_node"],
                    &["icmp_pod"],
                    steady_pair_loss(),
                );
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
        (
            "loss onset around node-2: one echo lost in each of two probes",
            |m| {
                m.around(
                    2,
                    &["icmp_pod", "icmp_node"],
                    &[],
                    echo_cell(0, 2, 2, false),
                );
            },
            vec![ex(PacketLoss, &["node-2"])],
        ),
    ];
    for (label, build, want) in table {
        let mut m = Mesh::new();
        build(&mut m);
        let d = m.diagnose();
        check(label, &d, &want);
        if let Some(f) = d.findings.iter().find(|f| f.nodes.len() == 2) {
            assert_eq!(f.pairs.len(), 1, "{label}: {}", d.to_text());
        }
    }
    // Counting answered losses alone, not in how many probes: the two cut rounds of node-3
    // read as loss on node-3.
    let mut m = Mesh::new();
    m.p(3, 2, &["icmp_node"], cut_after_residue());
    m.p(3, 4, &["icmp_node"], cut_then_failed());
    let p = Params {
        lossy_min_probes: 1,
        ..Params::default()
    };
    let d = super::diagnose_with(&m.matrix(), &p);
    check("one probe enough", &d, &[ex(PacketLoss, &["node-3"])]);
}

/// Real data: `lab partition zone-a zone-b` onsets that read as packet_loss before the right
/// `vpc` (see each fixture's `what`).
#[test]
fn onset_real_cut_rounds() {
    for f in [
        "partition-cut-round.json",
        "partition-cut-rounds-node3.json",
    ] {
        let d = onset_fixture(f);
        assert!(
            d.findings.iter().all(|x| x.cause == Cause::Vpc),
            "{f}: {}",
            d.to_text()
        );
    }
}

/// Real data (`tests/fixtures/onset/policy-after-loss*.json`): a NetworkPolicy drop right
/// after a cleared loss fault. The loss's lost echoes still in the window are no excuse for
/// HTTP timeouts that began after the path last lost anything and while it answered ICMP
/// since: every source fails, so it is `policy`, not `application` "from 1 of 4 sources only";
/// and while some sources' pod IPs have not answered since, their timeouts may be the loss's:
/// they wait (pending), they are no contrast for the others.
#[test]
fn policy_right_after_a_cleared_loss_is_policy() {
    for (f, may_wait) in [
        ("policy-after-loss.json", false),
        ("policy-after-loss-pending.json", true),
    ] {
        let d = onset_fixture(f);
        if may_wait && d.findings.is_empty() {
            continue;
        }
        assert_eq!(d.findings.len(), 1, "{f}: {}", d.to_text());
        let x = &d.findings[0];
        assert_eq!(x.cause, Cause::Policy, "{f}: {}", d.to_text());
        assert_eq!(
            x.targets,
            vec!["web-node-2".to_string()],
            "{f}: {}",
            d.to_text()
        );
        assert_eq!(x.pairs.len(), 4, "{f}: {}", d.to_text());
    }
}
