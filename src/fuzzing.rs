//! Fuzz target bodies: one function per parser of outside input, each feeding bytes through
//! the same code the agent runs and asserting the parser's contract — no panic, and whatever is
//! accepted satisfies the validation invariants (a violated invariant panics, which is what
//! the fuzzer reports). `fuzz/fuzz_targets/*.rs` (cargo-fuzz, nightly) and
//! `tests/fuzz_corpus.rs` (stable, replays `fuzz/corpus/`) both call [`TARGETS`], so the long
//! runs and the test command run exactly the same code. Not an API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::de::DeserializeOwned;

use crate::cli::{Cli, Command};
use crate::config::{AgentConfig, Discovery};
use crate::diagnosis::{diagnose_inputs, AgentReport, Params};
use crate::error::Error;
use crate::gather::Gathered;
use crate::heatmap::{self, Header, View};
use crate::k8s::{facts, peers as kpeers, policy, targets};
use crate::model::ErrorClass;
use crate::ondemand::request::{self, CheckSpec, Context, OUTCOMES};
use crate::ondemand::{verdict, Line};
use crate::peers::{self, PeerSet};
use crate::probe::icmp::{classify_answer, Answer};
use crate::probe::wire::{checksum, Echo, Reply};
use meshprobe_core::parse::validate_name;

/// A target's body: any bytes in, a panic on a broken contract.
pub type Body = fn(&[u8]);

/// Every target: its name (the directory under `fuzz/corpus/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("config", config),
    ("peers_file", peers_file),
    ("results", results),
    ("k8s_objects", k8s_objects),
    ("ondemand", ondemand),
    ("icmp_reply", icmp_reply),
    ("http_reply", http_reply),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The peer set the context-dependent targets validate against (the lab's shape).
const SET: &str = "peers:\n  - {node: node-1, node_ip: 198.18.1.11, pod_ip: 198.19.1.10, zone: zone-a}\n  - {node: node-2, node_ip: 198.18.2.12, pod_ip: 198.19.2.10, zone: zone-b, port: 9000}\n  - {node: node-3, node_ip: 198.18.1.13, pod_ip: 198.19.3.10, zone: zone-a}\ntargets:\n  - {name: web-1, ip: 198.19.1.11, port: 8080, protocol: http, path: /healthz}\n";

fn set() -> &'static PeerSet {
    static SET_ONCE: OnceLock<PeerSet> = OnceLock::new();
    SET_ONCE.get_or_init(|| peers::parse(SET).expect("the built-in peer set is valid"))
}

/// Flags and environment → `AgentConfig`. Input: one item per line; `MESHPROBE_*=value` lines
/// are environment variables, every other line is one argument after `meshprobe agent`.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut env: HashMap<String, String> = HashMap::new();
    let mut argv = vec!["meshprobe".to_string(), "agent".to_string()];
    for line in text.lines().take(64) {
        match line.split_once('=') {
            Some((k, v)) if k.starts_with("MESHPROBE_") => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => argv.push(line.to_string()),
        }
    }
    // clap reports bad flags, --help and --version as errors (no exit with try_parse_from).
    let Ok(cli) = Cli::try_parse_from(&argv) else {
        return;
    };
    let Command::Agent(args) = cli.command else {
        return;
    };
    match AgentConfig::resolve(&args, &env) {
        Err(Error::Config(msg)) => assert!(!msg.is_empty()),
        Err(other) => panic!("a configuration error must be Error::Config (exit 2): {other}"),
        Ok(c) => {
            validate_name(&c.node_name).expect("node name valid");
            if let Some(z) = &c.zone {
                validate_name(z).expect("zone valid");
            }
            assert!(c.interval >= Duration::from_millis(100), "{c:?}");
            assert!(!c.timeout.is_zero() && c.timeout < c.interval, "{c:?}");
            assert!(c.window >= c.interval, "{c:?}");
            if let Some(m) = c.mtu_interval {
                assert!(m >= Duration::from_secs(1) && m <= c.mtu_search_interval);
            }
            assert!((1..=20).contains(&c.icmp_count));
            assert!((8..=1472).contains(&c.icmp_size));
            assert!((1..=100_000).contains(&c.max_rate));
            assert!((1..=10_000).contains(&c.max_in_flight));
            assert!((1..=64).contains(&c.probe.max_concurrent));
            assert!(c.probe.burst >= 1 && c.probe.burst <= c.probe.rate_per_minute);
            if let Some(t) = &c.probe.token {
                assert!(!t.is_empty() && t.len() <= 256 && t.bytes().all(|b| b.is_ascii_graphic()));
            }
            // The token never shows in the config's debug form (it is logged at start): the
            // form does not depend on the token's value. (Not "the form does not contain it":
            // a token may also be a substring of another field, e.g. the peers-file path.)
            if c.probe.token.is_some() {
                let mut other = c.clone();
                other.probe.token = Some("x".repeat(40));
                assert_eq!(
                    format!("{c:?}"),
                    format!("{other:?}"),
                    "token leaked in Debug"
                );
            }
            match &c.discovery {
                Discovery::File => assert!(!c.peers_file.as_os_str().is_empty()),
                Discovery::Kubernetes(k) => {
                    assert!(c.peers_file.as_os_str().is_empty());
                    assert!(!k.selector.is_empty() && k.selector.len() <= 1024);
                    if let Some(ns) = &k.namespace {
                        validate_name(ns).expect("namespace valid");
                    }
                    if let Some(u) = &k.api_url {
                        assert!(u.starts_with("http://") || u.starts_with("https://"));
                    }
                }
            }
        }
    }
}

/// The peers file (YAML or JSON) → a validated `PeerSet`.
pub fn peers_file(data: &[u8]) {
    // The discovery loop reads at most MAX_FILE_BYTES and refuses what is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match peers::parse(text) {
        Err(e) => assert!(!e.is_empty()),
        Ok(set) => {
            peers::validate(&set).expect("parse returns only valid sets");
            assert!(set.peers.len() <= peers::MAX_PEERS);
            assert!(set.targets.len() <= peers::MAX_TARGETS);
            for t in &set.targets {
                assert!(t.port != 0);
                assert!(t.http_path().starts_with('/'), "{t:?}");
                // An accepted path is one the HTTP prober can send.
                assert!(
                    meshprobe_core::parse::is_request_path(t.http_path()),
                    "accepted path {:?} is not a valid request target",
                    t.http_path()
                );
            }
            // What is accepted survives the agent's own re-serialisation (the API serves it).
            let json = serde_json::to_string(&set).expect("serialises");
            assert_eq!(peers::parse(&json).as_ref(), Ok(&set), "{json}");
        }
    }
}

/// Peers' `/api/v1/results` documents → the mesh view: the engine's input, the diagnosis, its
/// text, and the agent page that shows them. Input: documents separated by NUL bytes; the
/// first is this agent's own report when it parses, the rest are gathered answers.
pub fn results(data: &[u8]) {
    let docs: Vec<&[u8]> = data.split(|b| *b == 0).take(16).collect();
    let gathered: Vec<Gathered> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Gathered::from_wire(
                format!("node-{}", i + 1),
                std::net::SocketAddr::from(([198, 19, i as u8, 10], 9464)),
                String::from_utf8(d.to_vec()).map_err(|_| ErrorClass::Protocol {
                    detail: "results are not UTF-8".into(),
                }),
            )
        })
        .collect();
    let own = AgentReport {
        node: "node-1".into(),
        ready: Some(true),
        ..AgentReport::default()
    };
    let n = gathered.len();
    let (inputs, answered, unanswered) = crate::mesh::inputs(own, gathered, set());
    assert_eq!(answered.len() + unanswered.len(), n + 1);
    let d = diagnose_inputs(&inputs, &Params::default());
    let _ = d.to_text();
    serde_json::to_string(&d).expect("a diagnosis serialises");
    let nodes = set()
        .peers
        .iter()
        .map(|p| (p.node.clone(), p.zone.clone()))
        .collect();
    let input = heatmap::Input {
        nodes,
        reports: &inputs.agents,
        silent: &unanswered,
        findings: &d.findings,
        held: &[],
    };
    let header = Header {
        node: "node-1",
        zone: Some("zone-a"),
        ready: true,
        rounds: 1,
        interval_seconds: 5.0,
        window_seconds: 60.0,
        icmp_socket: "raw",
        discovery_error: None,
        families: &[],
        family: None,
    };
    let page = heatmap::page(&header, &input, None);
    // Peer-controlled text is escaped: the corpus seeds names carrying this tag.
    assert!(!page.contains("<fuzz"), "unescaped peer text in the page");
    for v in View::ALL {
        let svg = heatmap::svg(&heatmap::matrix(&input, v));
        assert!(!svg.contains("<fuzz"), "unescaped peer text in the SVG");
    }
}

/// Objects as the API serves them, one JSON bundle:
/// `{"agents": [Pod], "targets": [Pod], "nodes": [Node], "system_pods": [Pod],
///   "policies": [NetworkPolicy], "events": [Event], "now": 1700000000, "grace": 60}`;
/// each object deserialised on its own (one the API could not send is skipped, as a watch
/// would refuse it). Also: the whole input as a `meshprobe.io/probe` annotation.
pub fn k8s_objects(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        annotation(text);
    }
    let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    fn list<T: DeserializeOwned>(b: &serde_json::Value, key: &str) -> Vec<T> {
        b.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .take(64)
                    .filter_map(|o| serde_json::from_value(o.clone()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
    let agents: Vec<Pod> = list(&bundle, "agents");
    let target_pods: Vec<Pod> = list(&bundle, "targets");
    let nodes: Vec<Node> = list(&bundle, "nodes");
    let system_pods: Vec<Pod> = list(&bundle, "system_pods");
    let policies: Vec<NetworkPolicy> = list(&bundle, "policies");
    let events: Vec<Event> = list(&bundle, "events");
    // The callers pass the wall clock and the window: plausible values only.
    let now = bundle
        .get("now")
        .and_then(|v| v.as_i64())
        .unwrap_or(1_700_000_000)
        .clamp(0, 4_102_444_800);
    let grace = bundle
        .get("grace")
        .and_then(|v| v.as_i64())
        .unwrap_or(60)
        .clamp(0, 7 * 86_400);

    let infos: BTreeMap<String, kpeers::NodeInfo> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, kpeers::node_info(n))))
        .collect();
    let a: Vec<&Pod> = agents.iter().collect();
    let t: Vec<&Pod> = target_pods.iter().collect();
    let got = kpeers::peer_set(&a, &t, &infos, now, grace);
    // What discovery publishes passes the same validation as a peers file.
    if let Err(e) = peers::validate(&got.set) {
        panic!("k8s peer set fails validation: {e}\n{:?}", got.set);
    }
    for h in &got.held {
        assert!(got.set.peer(&h.node).is_some(), "held {h:?} is not a peer");
    }
    // The watch stores slimmed objects: slimming must not change the answer.
    let slim = |pods: &[Pod]| -> Vec<Pod> {
        pods.iter()
            .cloned()
            .map(|mut p| {
                kpeers::slim_pod(&mut p);
                p
            })
            .collect()
    };
    let (sa, st) = (slim(&agents), slim(&target_pods));
    let slim_infos: BTreeMap<String, kpeers::NodeInfo> = nodes
        .iter()
        .cloned()
        .filter_map(|mut n| {
            kpeers::slim_node(&mut n);
            Some((n.metadata.name.clone()?, kpeers::node_info(&n)))
        })
        .collect();
    assert_eq!(slim_infos, infos, "slim_node changes node_info");
    let slim_got = kpeers::peer_set(
        &sa.iter().collect::<Vec<_>>(),
        &st.iter().collect::<Vec<_>>(),
        &slim_infos,
        now,
        grace,
    );
    assert_eq!(slim_got, got, "slim_pod changes the peer set");

    // Facts for a diagnosis.
    let involved: BTreeSet<String> = got.set.peers.iter().map(|p| p.node.clone()).collect();
    let (nf, cf) = facts::node_and_cni_facts(&nodes, &system_pods, &involved);
    assert!(nf.len() <= nodes.len() && cf.len() <= system_pods.len());
    let sources = facts::sources(&agents);
    for p in &target_pods {
        let pf = facts::pod_facts(p, Some("t"), &events);
        assert!(pf.events.len() <= facts::MAX_EVENTS);
        for e in &pf.events {
            assert!(e.message.as_ref().is_none_or(|m| m.chars().count() <= 300));
        }
        let spec = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(targets::PROBE_ANNOTATION));
        let ports: Vec<u16> = match spec.map(|s| targets::parse_annotation(s)) {
            Some(Ok(specs)) => specs.iter().map(|s| s.port).collect(),
            _ => vec![80],
        };
        for port in ports {
            let f = facts::policy_facts(&policies, p, "t", port, &sources);
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            for x in &f {
                assert_eq!(x.namespace, ns);
            }
            for pol in &policies {
                for s in &sources {
                    let _ = policy::policy_admits(pol, port, "TCP", s);
                }
            }
        }
    }
}

fn annotation(text: &str) {
    match targets::parse_annotation(text) {
        Err(e) => assert!(e.starts_with(targets::PROBE_ANNOTATION), "{e}"),
        Ok(specs) => {
            assert!(!specs.is_empty() && specs.len() <= targets::MAX_SPECS);
            let mut ports = BTreeSet::new();
            for s in &specs {
                assert!(s.port != 0 && ports.insert(s.port), "{specs:?}");
                if let Some(p) = &s.path {
                    assert_eq!(s.protocol, peers::Protocol::Http);
                    assert!(p.starts_with('/'));
                    assert!(
                        meshprobe_core::parse::is_request_path(p),
                        "accepted path {p:?} is not a valid request target"
                    );
                }
            }
        }
    }
}

/// `POST /api/v1/probe` bodies → parse + validate against the built-in peer set; and the same
/// bytes as a peer agent's forwarded answer line → the verdict.
pub fn ondemand(data: &[u8]) {
    let extra = [crate::net::Cidr::parse("203.0.113.0/24").expect("cidr")];
    match request::parse_body(data) {
        Err(r) => {
            assert!(OUTCOMES.contains(&r.code), "{r:?}");
            assert!((400..600).contains(&r.status), "{r:?}");
            assert!(data.len() <= request::MAX_BODY_BYTES || r.code == "too_large");
        }
        Ok(req) => {
            let cx = Context {
                me: "node-1",
                peers: set(),
                extra_allowed: &extra,
                default_port: 9464,
                pod: None,
                service: None,
                also: None,
            };
            match request::validate(&req, &cx) {
                Err(r) => {
                    assert!(OUTCOMES.contains(&r.code), "{r:?}");
                    assert!((400..600).contains(&r.status), "{r:?}");
                }
                Ok(plan) => {
                    let ip = plan.target.ip;
                    // A name resolved through each source's own resolver has no address.
                    let dns_own =
                        plan.target.label.starts_with(request::DNS_PREFIX) && ip.is_unspecified();
                    if !dns_own {
                        let allowed = request::derived_cidrs(set())
                            .iter()
                            .chain(&extra)
                            .any(|c| c.contains(ip));
                        assert!(allowed, "accepted {ip} outside the allowed CIDRs");
                        assert!(!ip.is_unspecified() && !ip.is_multicast() && !ip.is_loopback());
                        assert_ne!(ip, IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)));
                    }
                    assert!(!plan.checks.is_empty() && plan.checks.len() <= request::MAX_CHECKS);
                    assert!(!plan.sources.is_empty());
                    for c in &plan.checks {
                        match c {
                            CheckSpec::Icmp { count, size } => {
                                assert!((1..=request::MAX_ICMP_COUNT).contains(count));
                                assert!((8..=request::MAX_ICMP_SIZE).contains(size));
                            }
                            CheckSpec::Tcp { port } => assert!(*port != 0),
                            CheckSpec::Http { port, path } => {
                                assert!(*port != 0);
                                assert!(
                                    path.starts_with('/') && path.len() <= request::MAX_PATH_LEN
                                );
                                assert!(path.bytes().all(|b| b.is_ascii_graphic()));
                                assert!(path.parse::<hyper::Uri>().is_ok(), "{path:?}");
                            }
                            CheckSpec::Mtu => {}
                            CheckSpec::Dns { name, server } => {
                                assert!(name.ends_with('.') && name.len() <= 254, "{name:?}");
                                assert!(name
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
                                assert_eq!(server.map(|a| a.ip()).unwrap_or(ip), ip);
                            }
                        }
                    }
                    // What a forwarding agent sends on parses back to the same checks.
                    let body =
                        request::body(&plan.target.label, &plan.checks, None, None).to_string();
                    let again = request::parse_body(body.as_bytes()).expect("own body parses");
                    let again = request::validate(&again, &cx).expect("own body validates");
                    assert_eq!(again.checks, plan.checks);
                }
            }
        }
    }
    // A peer agent's answer to a forwarded request: one `source` line.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Line::Source(line)) = serde_json::from_str::<Line>(text.trim()) {
        let target = request::Resolved {
            label: "198.19.1.11:8080".into(),
            ip: IpAddr::V4(Ipv4Addr::new(198, 19, 1, 11)),
            ips: Vec::new(),
            port: Some(8080),
            node: Some("node-1".into()),
        };
        let me = crate::ondemand::SourceLine::silent("node-1", None, "x".into(), 0.0);
        let v = verdict::verdict(&target, &[me, line], set(), None, "node-1");
        serde_json::to_string(&v).expect("a verdict serialises");
    }
}

/// Raw ICMPv4 packets (IPv4 header included) as the Don't-Fragment prober's raw socket reads
/// them → [`Echo::parse`]; the ICMP type/code/source triple the echo prober reads; and the
/// datagram prober's error-queue readers (control messages, `sock_extended_err`, the quote).
/// Input: 2 bytes identifier, 2 sequence, 8 cookie, 4 destination, then the packet.
pub fn icmp_reply(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let echo = Echo {
        ident: u16::from_be_bytes([data[0], data[1]]),
        seq: u16::from_be_bytes([data[2], data[3]]),
        cookie: data[4..12].try_into().expect("8 bytes"),
    };
    let dest = Ipv4Addr::new(data[12], data[13], data[14], data[15]);
    let packet = &data[16..];
    match echo.parse(packet, dest) {
        None => {}
        Some(Reply::Echo) => {
            // Only the destination's echo reply carrying our identity is ours.
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            assert_eq!(packet[12..16], dest.octets());
            let icmp = &packet[ihl..];
            assert_eq!(icmp[0], 0);
            assert_eq!(icmp[4..6], echo.ident.to_be_bytes());
            assert_eq!(icmp[6..8], echo.seq.to_be_bytes());
            assert_eq!(icmp[8..16], echo.cookie);
        }
        Some(Reply::TooBig { from, mtu }) => {
            assert_eq!(packet[12..16], from.octets());
            assert!(mtu.is_none_or(|m| (1..=65535).contains(&m)));
        }
        Some(Reply::Error(e)) => {
            assert!(e.to_string().len() < 300, "{e}");
        }
    }
    // The packet we build for a size is the size asked for, checksummed.
    let size = 68 + u32::from(u16::from_be_bytes([data[0], data[1]])) % 1500;
    if let Some(msg) = echo.build(size) {
        assert_eq!(msg.len() + 20, size as usize);
        assert_eq!(checksum(&msg), 0);
    }
    // The echo prober's reading of what surge-ping hands over.
    if packet.len() >= 2 {
        let (t, c) = (packet[0], packet[1]);
        let expected = IpAddr::V4(dest);
        for source in [expected, IpAddr::V4(Ipv4Addr::new(198, 19, 1, 1))] {
            match classify_answer(t, c, source, expected, None) {
                Answer::Echo => assert!(t == 0 && source == expected),
                Answer::Error(e) => assert!(!e.to_string().is_empty()),
                Answer::Stray => {}
            }
        }
    }
    // The datagram prober's error queue: the packet's bytes as a control buffer, as a
    // sock_extended_err, and as the quoted request.
    use crate::probe::errqueue::{parse_cmsgs, ExtendedErr};
    use crate::probe::pmtu_dgram::DgramEcho;
    for (_, _, d) in parse_cmsgs(packet) {
        assert!(d.len() <= packet.len());
    }
    if let Some(err) = ExtendedErr::parse(packet) {
        for v6 in [false, true] {
            let e = DgramEcho {
                v6,
                seq: echo.seq,
                cookie: echo.cookie,
            };
            let quoted = packet.get(16..).unwrap_or(&[]);
            if let Some(crate::mtu::MtuOutcome::TooBig { mtu, from }) = e.error(&err, quoted) {
                // A report names its router and never a zero MTU.
                assert_ne!(mtu, Some(0));
                assert!(from.is_some() && from == err.offender);
            }
            // The echo prober's reading of the same report: only a router's, about a request.
            if let Some((seq, class)) = crate::probe::errqueue::echo_error(&err, quoted, v6) {
                assert!(err.offender.is_some() && quoted.len() >= 8);
                assert_eq!(seq, u16::from_be_bytes([quoted[6], quoted[7]]));
                assert!(!class.to_string().is_empty());
            }
        }
    }
}

/// Bytes a peer sends back on an HTTP probe's connection → hyper's client and our reading of
/// the answer (status, bounded body, the `/ping` JSON naming the peer). Must finish in bounded
/// time: an answer that never ends is a timeout, never a hang.
pub fn http_reply(data: &[u8]) {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    let outcome = rt.block_on(crate::probe::http::judge_reply(
        data,
        Some("node-2"),
        Duration::from_secs(2),
    ));
    match outcome {
        Ok(()) => {
            // Accepted only as an HTTP/1 answer (httparse skips leading empty lines).
            let start = data
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(0);
            assert!(
                data[start..].starts_with(b"HTTP/1."),
                "accepted a non-HTTP answer"
            );
        }
        Err(ErrorClass::Timeout) => {
            panic!("a complete, closed answer must not time out")
        }
        Err(e) => {
            let s = e.to_string();
            assert!(s.len() < 600, "unbounded error text: {} bytes", s.len());
        }
    }
}
