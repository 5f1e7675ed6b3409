use super::*;
use crate::diagnosis::{diagnose, Cause, Diagnosis, Matrix, Params};

/// One probed cell of a synthetic mesh: `None` healthy, `Some((kind, reporter))` down.
type Fault = Option<(&'static str, &'static str)>;

const NODES: [(&str, &str); 4] = [
    ("node-1", "zone-a"),
    ("node-2", "zone-b"),
    ("node-3", "zone-a"),
    ("node-4", "zone-b"),
];
const LAYERS: [&str; 3] = ["icmp_pod", "icmp_node", "http"];

fn series(metric: &str, labels: &[(&str, &str)], value: &str) -> String {
    let mut l = vec![format!(r#""__name__":"{metric}""#)];
    l.extend(labels.iter().map(|(k, v)| format!(r#""{k}":"{v}""#)));
    format!(
        r#"{{"metric":{{{}}},"value":[1764300000.123,"{value}"]}}"#,
        l.join(",")
    )
}

fn vector(series: &[String]) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

/// Prometheus answers for a 4-node mesh whose agents run (but those in `silent`), with the
/// cells `fault(src, dst, layer)` says are down.
fn mesh_answers(silent: &[&str], fault: impl Fn(&str, &str, &str) -> Fault) -> Answers {
    let mut bodies: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (i, (node, zone)) in NODES.iter().enumerate() {
        if silent.contains(node) {
            continue;
        }
        let instance = format!("127.0.0.1:{}", 9464 + i);
        let target = [("instance", instance.as_str()), ("job", "meshprobe")];
        let mut info = target.to_vec();
        info.extend([
            ("node", *node),
            ("zone", *zone),
            ("version", "0.1.0"),
            ("icmp_socket", "raw"),
            ("pmtu_socket", "raw"),
        ]);
        bodies
            .entry(AGENT_INFO)
            .or_default()
            .push(series(AGENT_INFO, &info, "1"));
        bodies
            .entry(AGENT_READY)
            .or_default()
            .push(series(AGENT_READY, &target, "1"));
        bodies
            .entry(ROUNDS)
            .or_default()
            .push(series(ROUNDS, &target, "42"));
        bodies
            .entry(INTERVAL)
            .or_default()
            .push(series(INTERVAL, &target, "5"));
        bodies
            .entry(WINDOW)
            .or_default()
            .push(series(WINDOW, &target, "60"));
        for (dst, dst_zone) in NODES {
            if dst == *node {
                continue;
            }
            for layer in LAYERS {
                let mut l = target.to_vec();
                l.extend([
                    ("src_node", *node),
                    ("src_zone", *zone),
                    ("dst_kind", "peer"),
                    ("dst", dst),
                    ("dst_zone", dst_zone),
                    ("layer", layer),
                ]);
                let f = fault(node, dst, layer);
                let down = f.is_some();
                let sent = if layer == "http" { "15" } else { "45" };
                for (m, v) in [
                    (REACHABLE, if down { "0" } else { "1" }),
                    (SUCCESS_RATIO, if down { "0" } else { "1" }),
                    (LOSS_RATIO, if down { "1" } else { "0" }),
                    (CONSECUTIVE, if down { "15" } else { "0" }),
                    (PROBES, "15"),
                    (SENT, sent),
                ] {
                    bodies.entry(m).or_default().push(series(m, &l, v));
                }
                if let Some((kind, reporter)) = f {
                    l.extend([("kind", kind), ("reporter", reporter)]);
                    bodies
                        .entry(ERRORS)
                        .or_default()
                        .push(series(ERRORS, &l, "15"));
                    bodies
                        .entry(ERROR_AGE)
                        .or_default()
                        .push(series(ERROR_AGE, &l, "0.7"));
                }
            }
        }
        for (dst_node, dst_zone) in NODES {
            let dst = format!("web-{dst_node}");
            let mut info = target.to_vec();
            info.extend([("dst", dst.as_str()), ("dst_node", dst_node)]);
            bodies
                .entry(TARGET_INFO)
                .or_default()
                .push(series(TARGET_INFO, &info, "1"));
            let mut l = target.to_vec();
            l.extend([
                ("src_node", *node),
                ("src_zone", *zone),
                ("dst_kind", "target"),
                ("dst", dst.as_str()),
                ("dst_zone", dst_zone),
                ("layer", "http"),
            ]);
            let f = fault(node, &dst, "http");
            let down = f.is_some();
            for (m, v) in [
                (REACHABLE, if down { "0" } else { "1" }),
                (SUCCESS_RATIO, if down { "0" } else { "1" }),
                (LOSS_RATIO, if down { "1" } else { "0" }),
                (CONSECUTIVE, if down { "15" } else { "0" }),
                (PROBES, "15"),
                (SENT, "15"),
            ] {
                bodies.entry(m).or_default().push(series(m, &l, v));
            }
            if let Some((kind, reporter)) = f {
                l.extend([("kind", kind), ("reporter", reporter)]);
                bodies
                    .entry(ERRORS)
                    .or_default()
                    .push(series(ERRORS, &l, "15"));
                bodies
                    .entry(ERROR_AGE)
                    .or_default()
                    .push(series(ERROR_AGE, &l, "0.7"));
            }
        }
    }
    QUERIES
        .iter()
        .map(|&q| {
            let body = vector(bodies.get(q).map_or(&[][..], Vec::as_slice));
            (q, parse_response(q, body.as_bytes(), MAX_SERIES).unwrap())
        })
        .collect()
}

/// The same mesh as `/api/v1/results` documents: what `--agents` would diagnose.
fn mesh_documents(silent: &[&str], fault: impl Fn(&str, &str, &str) -> Fault) -> Inputs {
    let mut agents = Vec::new();
    for (node, zone) in NODES {
        if silent.contains(&node) {
            continue;
        }
        let mut peers = Vec::new();
        for (dst, dst_zone) in NODES {
            if dst == node {
                continue;
            }
            let layers: Vec<String> = LAYERS
                .iter()
                .map(|layer| {
                    let f = fault(node, dst, layer);
                    let sent = if *layer == "http" { 15 } else { 45 };
                    let (ok, err) = match f {
                        None => (true, "null".to_string()),
                        Some((kind, "source")) if kind == "net_unreachable" => {
                            // The source's pod gateway (the /24 of its pod IP).
                            let i = &node[5..];
                            (false, format!(r#"{{"kind":"{kind}","from":"198.19.{i}.1"}}"#))
                        }
                        Some((kind, _)) => (false, format!(r#"{{"kind":"{kind}"}}"#)),
                    };
                    format!(
                        r#""{layer}":{{"reachable":{ok},"consecutive_failures":{cf},"probes":15,"successes":{s},"sent":{sent},"received":{r},"success_ratio":{sr},"loss_ratio":{lr},"last_error":{err},"last_error_age_seconds":{age}}}"#,
                        cf = if ok { 0 } else { 15 },
                        s = if ok { 15 } else { 0 },
                        r = if ok { sent } else { 0 },
                        sr = if ok { 1.0 } else { 0.0 },
                        lr = if ok { 0.0 } else { 1.0 },
                        age = if ok { "null" } else { "0.7" },
                    )
                })
                .collect();
            let i = &dst[5..];
            peers.push(format!(
                r#"{{"node":"{dst}","zone":"{dst_zone}","node_ip":"198.18.0.{i}","pod_ip":"198.19.{i}.10","layers":{{{}}}}}"#,
                layers.join(",")
            ));
        }
        let targets: Vec<String> = NODES
            .iter()
            .map(|(dst_node, _)| {
                let i = &dst_node[5..];
                let name = format!("web-{dst_node}");
                let (ok, err) = match fault(node, &name, "http") {
                    None => (true, "null".to_string()),
                    Some((kind, _)) => (false, format!(r#"{{"kind":"{kind}"}}"#)),
                };
                format!(
                    r#"{{"name":"{name}","ip":"198.19.{i}.11","port":8080,"protocol":"http","layers":{{"http":{{"reachable":{ok},"consecutive_failures":{cf},"probes":15,"successes":{s},"sent":15,"received":{s},"success_ratio":{sr},"loss_ratio":{lr},"last_error":{err},"last_error_age_seconds":{age}}}}}}}"#,
                    cf = if ok { 0 } else { 15 },
                    s = if ok { 15 } else { 0 },
                    sr = if ok { 1.0 } else { 0.0 },
                    lr = if ok { 0.0 } else { 1.0 },
                    age = if ok { "null" } else { "0.7" },
                )
            })
            .collect();
        // What an agent whose peers file states each node's pod CIDR (one /24 each, the lab's
        // `subnet` layout) publishes: the facts the ownership map is built from.
        let facts: Vec<String> = NODES
            .iter()
            .map(|(n, _)| {
                let i = &n[5..];
                format!(
                    r#"{{"name":"{n}","node_ip":"198.18.0.{i}","pod_ip":"198.19.{i}.10","pod_cidrs":["198.19.{i}.0/24"]}}"#
                )
            })
            .collect();
        let doc = format!(
            r#"{{"node":"{node}","zone":"{zone}","ready":true,"rounds":42,"peers":[{}],"targets":[{}],"owners":{{"nodes":[{}]}}}}"#,
            peers.join(","),
            targets.join(","),
            facts.join(",")
        );
        agents.push(AgentReport::from_json(&doc).unwrap());
    }
    Inputs {
        agents,
        unreachable_agents: silent.iter().map(|s| s.to_string()).collect(),
        ..Inputs::default()
    }
}

fn summary(d: &Diagnosis) -> Vec<(String, Vec<String>, Vec<[String; 2]>)> {
    d.findings
        .iter()
        .map(|f| (f.cause.to_string(), f.nodes.clone(), f.pairs.clone()))
        .collect()
}

fn from_prom(answers: &Answers) -> Diagnosis {
    let built = build(answers, None).unwrap();
    let mut d = diagnose(&Matrix::build(&built.inputs));
    finish(&mut d, "http://prom:9090");
    d
}

/// The node a destination (node or `web-NODE` target) lives on.
fn on(d: &str) -> &str {
    d.strip_prefix("web-").unwrap_or(d)
}

#[test]
fn the_same_cause_and_location_as_from_the_agents() {
    type Case = (
        &'static str,
        &'static [&'static str],
        fn(&str, &str, &str) -> Fault,
        &'static str,
        &'static [&'static str],
    );
    let cases: [Case; 6] = [
        ("healthy", &[], |_, _, _| None, "", &[]),
        (
            "cni node-3: pod layers to and from node-3 dead, node IPs answer",
            &[],
            |s, d, l| {
                let pod = l != "icmp_node";
                ((on(d) == "node-3" && pod) || s == "node-3").then_some(("timeout", "none"))
            },
            "cni",
            &["node-3"],
        ),
        (
            "route node-1 node-3: node-1's gateway answers net unreachable, replies lost",
            &[],
            |s, d, l| match (s, d, l) {
                ("node-1", "node-3", "icmp_pod" | "http") => Some(("net_unreachable", "source")),
                ("node-3", "node-1", _) => Some(("timeout", "none")),
                _ => None,
            },
            "routing",
            &["node-1"],
        ),
        (
            "node-4 down and its agent gone: no series of its own",
            &["node-4"],
            |_, d, _| (on(d) == "node-4").then_some(("timeout", "none")),
            "node_down",
            &["node-4"],
        ),
        (
            "reject web-node-2: HTTP refused from every source",
            &[],
            |_, d, _| (d == "web-node-2").then_some(("refused", "none")),
            "application",
            &["node-2"],
        ),
        (
            "policy web-node-2: HTTP times out from every source, ICMP fine",
            &[],
            |_, d, _| (d == "web-node-2").then_some(("timeout", "none")),
            "policy",
            &["node-2"],
        ),
    ];
    for (what, silent, fault, cause, nodes) in cases {
        let prom = from_prom(&mesh_answers(silent, fault));
        let agents = diagnose(&Matrix::build(&mesh_documents(silent, fault)));
        let (p, a) = (summary(&prom), summary(&agents));
        assert_eq!(p, a, "{what}: prometheus\n{prom}\nagents\n{agents}");
        if cause.is_empty() {
            assert!(prom.healthy, "{what}: {prom}");
        } else {
            assert_eq!(p.len(), 1, "{what}: {prom}");
            assert_eq!(p[0].0, cause, "{what}: {prom}");
            assert_eq!(p[0].1, *nodes, "{what}: {prom}");
            // Placement is an address fact, no pod fact: no "Kubernetes:" line; the source is named.
            let ev = &prom.findings[0].evidence;
            assert!(
                !ev.iter().any(|e| e.starts_with("Kubernetes:")),
                "{what}: {ev:?}"
            );
            assert!(
                ev.last()
                    .unwrap()
                    .starts_with("from Prometheus at http://prom:9090"),
                "{ev:?}"
            );
        }
    }
}

/// What Prometheus holds when the agents export failing destinations only (`--pair-metrics
/// failing`, or `auto` on a sampled plan): the pair series of destinations with a failing cell
/// (every layer of them), each agent's `meshprobe_pair_planned` for every peer it probes and
/// its `meshprobe_destinations` per kind and layer. `planned: false` leaves those two out (an
/// export without the denominators).
fn failing_export(full: &Answers, planned: bool) -> Answers {
    let mut out = full.clone();
    let key = |s: &Sample| {
        (
            s.label("src_node").to_string(),
            s.label("dst_kind").to_string(),
            s.label("dst").to_string(),
        )
    };
    let failing: BTreeSet<_> = full[REACHABLE]
        .iter()
        .filter(|s| s.value < 0.5)
        .map(key)
        .collect();
    for (m, samples) in out.iter_mut() {
        if *m != TARGET_INFO && samples.iter().any(|s| !s.label("src_node").is_empty()) {
            samples.retain(|s| failing.contains(&key(s)));
        }
    }
    if !planned {
        return out;
    }
    let target_of = |s: &Sample| -> BTreeMap<String, String> {
        ["instance", "job"]
            .iter()
            .map(|k| (k.to_string(), s.label(k).to_string()))
            .collect()
    };
    let mut plan = Vec::new();
    let mut dests = BTreeSet::new();
    for s in &full[REACHABLE] {
        let mut l = target_of(s);
        dests.insert((
            l.clone(),
            s.label("dst_kind").to_string(),
            s.label("layer").to_string(),
        ));
        if s.label("dst_kind") == "peer" && s.label("layer") == "icmp_pod" {
            for k in ["src_node", "src_zone", "dst_kind", "dst", "dst_zone"] {
                l.insert(k.to_string(), s.label(k).to_string());
            }
            plan.push(Sample {
                labels: l,
                value: 1.0,
            });
        }
    }
    out.insert(PLANNED, plan);
    out.insert(
        DESTINATIONS,
        dests
            .into_iter()
            .map(|(mut l, kind, layer)| {
                l.extend([
                    ("dst_kind".to_string(), kind),
                    ("layer".to_string(), layer),
                    ("state".to_string(), "reachable".to_string()),
                ]);
                Sample {
                    labels: l,
                    value: 3.0,
                }
            })
            .collect(),
    );
    out
}

/// With failing destinations only, the planned pairs and the targets stand for the healthy
/// cells: the same answer as from the agents' full documents, for every fault kind. Without
/// them a lost route from one node has only its one failing source for each end, and reads
/// otherwise (the control: the test can fail).
#[test]
fn failing_pairs_plus_the_planned_ones_give_the_agents_answer() {
    type Case = (
        &'static str,
        &'static [&'static str],
        fn(&str, &str, &str) -> Fault,
    );
    let cases: [Case; 5] = [
        ("healthy", &[], |_, _, _| None),
        ("cni node-3", &[], |s, d, l| {
            ((on(d) == "node-3" && l != "icmp_node") || s == "node-3")
                .then_some(("timeout", "none"))
        }),
        ("route node-1 node-3", &[], |s, d, l| match (s, d, l) {
            ("node-1", "node-3", "icmp_pod" | "http") => Some(("net_unreachable", "source")),
            ("node-3", "node-1", _) => Some(("timeout", "none")),
            _ => None,
        }),
        ("node-4 down", &["node-4"], |_, d, _| {
            (on(d) == "node-4").then_some(("timeout", "none"))
        }),
        ("policy web-node-2", &[], |_, d, _| {
            (d == "web-node-2").then_some(("timeout", "none"))
        }),
    ];
    let mut differs_without = Vec::new();
    for (what, silent, fault) in cases {
        let full = mesh_answers(silent, fault);
        let agents = summary(&diagnose(&Matrix::build(&mesh_documents(silent, fault))));
        let with = from_prom(&failing_export(&full, true));
        assert_eq!(summary(&with), agents, "{what}: {with}");
        let built = build(&failing_export(&full, true), None).unwrap();
        assert!(built.notes.is_empty(), "{what}: {:?}", built.notes);
        let without = from_prom(&failing_export(&full, false));
        if summary(&without) != agents {
            eprintln!("{what}, without the planned pairs: {:?}", summary(&without));
            differs_without.push(what);
        }
    }
    assert!(
        differs_without.contains(&"route node-1 node-3"),
        "{differs_without:?}"
    );
}

/// A fault seen by the zone scraped since it began, not yet by the zone scraped before: that
/// zone's unexported healthy cells were last probed before it (their agent's scrape age plus
/// an interval), so they do not contradict it. Without those ages, a policy on a target of a
/// 5,000-node emulated fleet read as `application` ("from some sources only") while one zone of
/// three had been scraped since it began (bench/README.md, scale-prometheus.sh, session 18).
#[test]
fn zones_scraped_before_a_fault_do_not_contradict_it() {
    // web-node-2's HTTP fails from zone-a (node-1, node-3): three probes in a row, the first
    // 14 s ago, scraped 1 s ago; zone-b's agents were scraped `b_age` s ago.
    let answers = |b_age: f64| {
        let fault = |s: &str, d: &str, l: &str| {
            (d == "web-node-2" && l == "http" && matches!(s, "node-1" | "node-3"))
                .then_some(("timeout", "none"))
        };
        let mut a = failing_export(&mesh_answers(&[], fault), true);
        let failing: Vec<Sample> = a[REACHABLE]
            .iter()
            .filter(|s| s.value < 0.5)
            .cloned()
            .collect();
        assert_eq!(failing.len(), 2);
        for (m, v) in [(CONSECUTIVE, 3.0), (SUCCESS_RATIO, 12.0 / 15.0)] {
            for s in a.get_mut(m).unwrap() {
                if s.label("layer") == "http" && s.label("dst") == "web-node-2" {
                    s.value = v;
                }
            }
        }
        for s in a.get_mut(ERRORS).unwrap() {
            s.value = 3.0;
        }
        for (m, age) in [(FAILING_FOR, 14.0), (LAST_PROBE_AGE, 4.0)] {
            a.insert(
                m,
                failing
                    .iter()
                    .map(|s| {
                        let mut s = s.clone();
                        s.labels.remove("__name__");
                        s.value = age;
                        s
                    })
                    .collect(),
            );
        }
        for s in a.get_mut(AGENT_INFO).unwrap() {
            s.value = if s.label("zone") == "zone-b" {
                b_age
            } else {
                1.0
            };
        }
        a
    };
    let causes = |b_age: f64| {
        let d = from_prom(&answers(b_age));
        d.findings
            .iter()
            .map(|f| format!("{}:{}", f.cause.as_str(), f.targets.join(",")))
            .collect::<Vec<_>>()
    };
    // Scraped 25 s ago: last probed 25–30 s ago, before the failures began: no contrast, and
    // half the sources unknown: no answer yet (zone-b's next scrape settles it).
    assert_eq!(causes(25.0), Vec::<String>::new());
    // Scraped 1 s ago, healthy: probed since, a real contrast (the test can fail).
    assert_eq!(causes(1.0), ["application:web-node-2"]);
}

#[test]
fn a_stale_agent_is_evidence_not_an_error() {
    let answers = mesh_answers(&["node-4"], |_, d, _| {
        (on(d) == "node-4").then_some(("timeout", "none"))
    });
    let built = build(&answers, None).unwrap();
    assert_eq!(built.answered, ["node-1", "node-2", "node-3"]);
    assert_eq!(built.unanswered.len(), 1);
    assert_eq!(built.unanswered[0].node, "node-4");
    assert!(built.unanswered[0].error.contains("meshprobe_agent_info"));
    assert_eq!(built.inputs.unreachable_agents, ["node-4"]);
}

#[test]
fn no_meshprobe_series_is_an_error_naming_the_query() {
    let answers: Answers = QUERIES.iter().map(|&q| (q, Vec::new())).collect();
    let e = build(&answers, Some(r#"cluster="prod""#)).unwrap_err();
    assert!(e.contains(r#"meshprobe_agent_info{cluster="prod"}"#), "{e}");
    assert!(e.contains("no meshprobe series"), "{e}");
}

#[test]
fn responses_parse_or_fail_naming_the_query() {
    let ok = vector(&[
        series("m", &[("a", "1")], "NaN"),
        series("m", &[("a", "2")], "+Inf"),
        series("m", &[("a", "3")], "-Inf"),
        series("m", &[("a", "4")], "0.25"),
    ]);
    let s = parse_response("m", ok.as_bytes(), 10).unwrap();
    assert!(s[0].value.is_nan());
    assert_eq!(s[1].value, f64::INFINITY);
    assert_eq!(s[2].value, f64::NEG_INFINITY);
    assert_eq!(s[3].value, 0.25);
    assert_eq!(s[3].labels["a"], "4");

    let cases: [(&str, String, &str); 7] = [
        (
            "Prometheus's error",
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#
                .into(),
            "bad_data: 1:5: parse error",
        ),
        (
            "garbage",
            "<html><body>502 Bad Gateway</body></html>".into(),
            "not a Prometheus API answer",
        ),
        ("empty body", String::new(), "not a Prometheus API answer"),
        (
            "a range result",
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into(),
            "a matrix result, not an instant vector",
        ),
        (
            "a vector that is not one",
            r#"{"status":"success","data":{"resultType":"vector","result":{"x":1}}}"#.into(),
            "malformed vector result",
        ),
        (
            "too many series",
            vector(&vec![series("m", &[], "1"); 11]),
            "11 series, more than the 10 allowed",
        ),
        (
            "a value that is no number",
            vector(&[series("m", &[], "lots")]),
            "\"lots\" is not a number",
        ),
    ];
    for (what, body, want) in cases {
        let e = parse_response("meshprobe_pair_reachable", body.as_bytes(), 10).unwrap_err();
        assert!(
            e.starts_with("query \"meshprobe_pair_reachable\": "),
            "{what}: {e}"
        );
        assert!(e.contains(want), "{what}: {e}");
    }
}

#[test]
fn nan_inf_and_unlabelled_series_are_skipped_with_a_note() {
    let mut answers = mesh_answers(&[], |_, _, _| None);
    let pairs = answers.get_mut(SUCCESS_RATIO).unwrap();
    pairs[0].value = f64::NAN;
    pairs[1].value = f64::INFINITY;
    pairs[2].value = -0.5;
    pairs[3].labels.remove("src_node");
    let built = build(&answers, None).unwrap();
    assert!(
        built
            .notes
            .iter()
            .any(|n| n.starts_with(&format!("{SUCCESS_RATIO}: 4 series skipped"))),
        "{:?}",
        built.notes
    );
    // The cells themselves stay (their other figures say they are fine): still healthy.
    assert!(diagnose(&Matrix::build(&built.inputs)).healthy);
}

#[test]
fn partial_data_missing_window_probes_leaves_cells_unknown_and_says_so() {
    let mut answers = mesh_answers(&[], |s, d, l| {
        (on(d) == "node-3" && l != "icmp_node" || s == "node-3").then_some(("timeout", "none"))
    });
    answers.insert(PROBES, Vec::new());
    let built = build(&answers, None).unwrap();
    assert!(
        built.notes.iter().any(|n| n.contains(
            "52 (source, destination, layer) cells have no meshprobe_pair_window_probes"
        )),
        "{:?}",
        built.notes
    );
    // Without probe counts nothing is known: no finding rather than a guess.
    assert!(diagnose(&Matrix::build(&built.inputs)).healthy);
}

#[test]
fn window_figures_are_rebuilt_exactly() {
    let answers = mesh_answers(&[], |s, d, l| {
        (s == "node-1" && d == "node-2" && l == "http").then_some(("refused", "none"))
    });
    let built = build(&answers, None).unwrap();
    let a = built
        .inputs
        .agents
        .iter()
        .find(|a| a.node == "node-1")
        .unwrap();
    assert_eq!(a.zone.as_deref(), Some("zone-a"));
    assert_eq!(a.ready, Some(true));
    assert_eq!(a.rounds, Some(42));
    assert_eq!(
        (a.interval_seconds, a.window_seconds),
        (Some(5.0), Some(60.0))
    );
    let p = a.peers.iter().find(|p| p.node == "node-2").unwrap();
    assert_eq!(p.zone.as_deref(), Some("zone-b"));
    let http = &p.layers["http"];
    assert_eq!(
        (http.probes, http.successes, http.sent, http.received),
        (15, 0, 15, 0)
    );
    assert_eq!(http.reachable, Some(false));
    assert_eq!(http.consecutive_failures, 15);
    assert_eq!(http.last_error.as_ref().unwrap().kind, "refused");
    assert_eq!(http.last_error_age_seconds, Some(0.7));
    assert_eq!(http.errors[0].count, 15);
    let pod = &p.layers["icmp_pod"];
    assert_eq!(
        (pod.probes, pod.successes, pod.sent, pod.received),
        (15, 15, 45, 45)
    );
    assert!(pod.last_error.is_none());
}

#[test]
fn the_last_error_is_the_youngest_kind_and_reporters_become_text() {
    let c = CellAcc {
        probes: Some(10),
        sent: Some(30),
        success_ratio: Some(0.5),
        loss_ratio: Some(0.5),
        errors: BTreeMap::from([
            ("timeout".to_string(), (4, Some(1.5), "none".to_string())),
            (
                "net_unreachable".to_string(),
                (1, Some(9.0), "other".to_string()),
            ),
        ]),
        ..CellAcc::default()
    };
    let s = c.stats("node-2");
    assert_eq!((s.successes, s.received), (5, 15));
    assert_eq!(s.last_error.as_ref().unwrap().kind, "timeout");
    let nu = s
        .errors
        .iter()
        .find(|e| e.kind == "net_unreachable")
        .unwrap();
    assert_eq!(
        nu.last.as_ref().unwrap().from.as_deref(),
        Some("a router outside the peer set (from metrics)")
    );
    assert_eq!(reporter_text("source", "node-2"), None);
    assert_eq!(
        reporter_text("destination", "node-2").as_deref(),
        Some("an address of node-2 (from metrics)")
    );
}

#[test]
fn recorded_answers_from_a_real_prometheus() {
    // tests/fixtures/prom/*.json: {"expect": {…}, "answers": {metric: body}} recorded from a
    // real Prometheus scraping the lab (tests/prometheus_e2e.rs, MESHPROBE_RECORD_PROM=DIR).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prom");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut answers = Answers::new();
        for &q in &QUERIES {
            // Metrics added after the recording are absent, as from older agents.
            if doc["answers"][q].is_null() {
                answers.insert(q, Vec::new());
                continue;
            }
            let body = doc["answers"][q].to_string();
            answers.insert(q, parse_response(q, body.as_bytes(), MAX_SERIES).unwrap());
        }
        let d = from_prom(&answers);
        let name = path.display();
        // expect: {"findings": [{"cause", "nodes"|"nodes_include"}], "only": bool}: each listed finding is
        // there; with `only`, nothing else.
        let want = doc["expect"]["findings"].as_array().unwrap();
        if doc["expect"]["only"] == true {
            assert_eq!(d.findings.len(), want.len(), "{name}: {d}");
        }
        // "nodes": exactly these; "nodes_include": at least these.
        for w in want {
            let list =
                |k: &str| -> Option<Vec<String>> { serde_json::from_value(w[k].clone()).ok() };
            let (exact, include) = (list("nodes"), list("nodes_include"));
            assert!(exact.is_some() || include.is_some(), "{name}: {w}");
            assert!(
                d.findings.iter().any(|f| f.cause.as_str() == w["cause"]
                    && exact.as_ref().is_none_or(|n| &f.nodes == n)
                    && include
                        .as_ref()
                        .is_none_or(|n| n.iter().all(|x| f.nodes.contains(x)))),
                "{name}: want {w}: {d}"
            );
        }
        n += 1;
    }
    assert!(n >= 1, "no recorded fixtures in {}", dir.display());
}

/// Interval and window come from the agents' gauges; without them (agents older than those
/// gauges) they stay unknown, and out-of-range values are not believed.
#[test]
fn interval_and_window_per_agent_from_their_gauges() {
    let healthy = |_: &str, _: &str, _: &str| None;
    let mut answers = mesh_answers(&[], healthy);
    let node1 = |answers: &Answers| {
        let built = build(answers, None).unwrap();
        let a = built
            .inputs
            .agents
            .iter()
            .find(|a| a.node == "node-1")
            .cloned()
            .unwrap();
        (a.interval_seconds, a.window_seconds)
    };
    assert_eq!(node1(&answers), (Some(5.0), Some(60.0)));
    for (interval, window, want) in [
        ("NaN", "60", (None, Some(60.0))),
        ("0", "-1", (None, None)),
        ("1e12", "+Inf", (None, None)),
        ("0.5", "8", (Some(0.5), Some(8.0))),
    ] {
        for (q, v) in [(INTERVAL, interval), (WINDOW, window)] {
            let target = [("instance", "127.0.0.1:9464"), ("job", "meshprobe")];
            let body = vector(&[series(q, &target, v)]);
            answers.insert(q, parse_response(q, body.as_bytes(), MAX_SERIES).unwrap());
        }
        assert_eq!(node1(&answers), want, "interval {interval} window {window}");
    }
    answers.insert(INTERVAL, Vec::new());
    answers.insert(WINDOW, Vec::new());
    assert_eq!(node1(&answers), (None, None));
}

#[test]
fn ages_are_asked_for_as_of_the_query_and_destinations_non_zero() {
    for &q in &QUERIES {
        let plain = query_for(q, None);
        let scoped = query_for(q, Some(r#" cluster="prod" "#));
        if q == AGENT_INFO {
            assert_eq!(plain, format!("time() - timestamp({q})"));
            assert_eq!(
                scoped,
                format!(r#"time() - timestamp({q}{{cluster="prod"}})"#)
            );
        } else if AGES.contains(&q) {
            assert_eq!(plain, format!("{q} + (time() - timestamp({q}))"));
            assert_eq!(
                scoped,
                format!(r#"{q}{{cluster="prod"}} + (time() - timestamp({q}{{cluster="prod"}}))"#)
            );
        } else if q == DESTINATIONS {
            assert_eq!(
                (plain, scoped),
                (format!("{q} > 0"), format!(r#"{q}{{cluster="prod"}} > 0"#))
            );
        } else {
            assert_eq!(
                (plain.as_str(), scoped),
                (q, format!(r#"{q}{{cluster="prod"}}"#))
            );
        }
    }
    for q in [ERROR_AGE, LAST_PROBE_AGE, FAILING_FOR] {
        assert!(AGES.contains(&q) && QUERIES.contains(&q), "{q}");
    }
}

/// One sample of a per-pair metric, as the answers carry it: labels but `__name__` (an age's
/// expression drops it).
fn pair_sample(pair: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        labels: pair
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

#[test]
fn failure_streak_and_last_probe_ages_are_carried() {
    // node-1 → node-2's HTTP refused: its streak began 4 s ago; every cell was probed 0.5 s ago.
    let refused = |s: &str, d: &str, l: &str| {
        (s == "node-1" && d == "node-2" && l == "http").then_some(("refused", "none"))
    };
    let base = mesh_answers(&[], refused);
    let with = |ages: &[(&str, &str, &str, &'static str, f64)]| {
        let mut answers = base.clone();
        for &(s, d, l, metric, v) in ages {
            let pair = [
                ("instance", "127.0.0.1:9464"),
                ("job", "meshprobe"),
                ("src_node", s),
                ("src_zone", ""),
                ("dst_kind", "peer"),
                ("dst", d),
                ("dst_zone", ""),
                ("layer", l),
            ];
            answers
                .entry(metric)
                .or_default()
                .push(pair_sample(&pair, v));
        }
        build(&answers, None).unwrap()
    };
    let cell = |b: &Built, s: &str, d: &str, l: &str| -> LayerStats {
        let a = b.inputs.agents.iter().find(|a| a.node == s).unwrap();
        a.peers.iter().find(|p| p.node == d).unwrap().layers[l].clone()
    };
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str, &'static str, &'static str, f64)],
        Option<f64>,
        Option<f64>,
        &'static str,
    );
    let cases: [Case; 5] = [
        ("older agents: neither", &[], None, None, ""),
        (
            "both",
            &[
                ("node-1", "node-2", "http", FAILING_FOR, 4.0),
                ("node-1", "node-2", "http", LAST_PROBE_AGE, 0.5),
            ],
            Some(4.0),
            Some(0.5),
            "",
        ),
        (
            "a failing-for on a cell whose last probe succeeded is not believed",
            &[("node-1", "node-2", "icmp_pod", FAILING_FOR, 4.0)],
            None,
            None,
            "",
        ),
        (
            "NaN: skipped and noted",
            &[("node-1", "node-2", "http", FAILING_FOR, f64::NAN)],
            None,
            None,
            "meshprobe_pair_failing_for_seconds: 1 series skipped",
        ),
        (
            "scraped twice: the first",
            &[
                ("node-1", "node-2", "http", FAILING_FOR, 4.0),
                ("node-1", "node-2", "http", FAILING_FOR, 9.0),
            ],
            Some(4.0),
            None,
            "meshprobe_pair_failing_for_seconds: the same pair came more than once",
        ),
    ];
    for (what, ages, failing_for, last_probe, note) in cases {
        let b = with(ages);
        let http = cell(&b, "node-1", "node-2", "http");
        assert_eq!(http.failing_for_seconds, failing_for, "{what}");
        assert_eq!(http.last_probe_age_seconds, last_probe, "{what}");
        assert_eq!(http.reachable, Some(false), "{what}");
        let pod = cell(&b, "node-1", "node-2", "icmp_pod");
        assert_eq!(pod.failing_for_seconds, None, "{what}");
        if note.is_empty() {
            assert!(b.notes.is_empty(), "{what}: {:?}", b.notes);
        } else {
            assert!(
                b.notes.iter().any(|n| n.starts_with(note)),
                "{what}: {:?}",
                b.notes
            );
        }
    }
}

/// What agents serving `reports` would have exported (the encoder of `crate::metrics`, with
/// `--pair-metrics all`), as Prometheus answers; `onset`: the streak and last-probe ages too
/// (else: agents older than those gauges). The reporter of an error with a sender is `other`
/// (no addresses in metrics); the onset recordings have none.
fn answers_from_reports(reports: &[AgentReport], onset: bool) -> Answers {
    let mut answers: Answers = QUERIES.iter().map(|&q| (q, Vec::new())).collect();
    let mut push = |metric: &'static str, labels: Vec<(&str, String)>, v: f64| {
        let mut l: BTreeMap<String, String> = labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if !AGES.contains(&metric) {
            l.insert("__name__".into(), metric.to_string());
        }
        answers.get_mut(metric).unwrap().push(Sample {
            labels: l,
            value: v,
        });
    };
    for (i, a) in reports.iter().enumerate() {
        let target = vec![
            ("instance", format!("10.0.0.{}:9464", i + 1)),
            ("job", "meshprobe".to_string()),
        ];
        let zone = a.zone.clone().unwrap_or_default();
        let mut info = target.clone();
        info.extend([
            ("node", a.node.clone()),
            ("zone", zone.clone()),
            ("version", "0.1.0".into()),
            ("icmp_socket", "raw".into()),
        ]);
        push(AGENT_INFO, info, 1.0);
        push(
            AGENT_READY,
            target.clone(),
            if a.ready == Some(false) { 0.0 } else { 1.0 },
        );
        push(ROUNDS, target.clone(), a.rounds.unwrap_or(0) as f64);
        push(INTERVAL, target.clone(), a.interval_seconds.unwrap());
        push(WINDOW, target.clone(), a.window_seconds.unwrap());
        let peers = a
            .peers
            .iter()
            .map(|p| ("peer", &p.node, p.zone.clone(), &p.layers, &p.mtu));
        let targets = a
            .targets
            .iter()
            .map(|t| ("target", &t.name, None, &t.layers, &t.mtu));
        for (kind, dst, dst_zone, layers, mtu) in peers.chain(targets) {
            for (layer, st) in layers {
                let mut l = target.clone();
                l.extend([
                    ("src_node", a.node.clone()),
                    ("src_zone", zone.clone()),
                    ("dst_kind", kind.to_string()),
                    ("dst", dst.clone()),
                    ("dst_zone", dst_zone.clone().unwrap_or_default()),
                    ("layer", layer.clone()),
                ]);
                if let Some(ok) = st.reachable {
                    push(REACHABLE, l.clone(), f64::from(u8::from(ok)));
                }
                if let Some(r) = st.success_ratio {
                    push(SUCCESS_RATIO, l.clone(), r);
                }
                if let Some(r) = st.loss_ratio {
                    push(LOSS_RATIO, l.clone(), r);
                }
                push(CONSECUTIVE, l.clone(), f64::from(st.consecutive_failures));
                push(PROBES, l.clone(), f64::from(st.probes));
                push(SENT, l.clone(), f64::from(st.sent));
                for e in &st.errors {
                    let from = e.last.as_ref().and_then(|x| x.from.as_ref());
                    let mut el = l.clone();
                    el.extend([
                        ("kind", e.kind.clone()),
                        (
                            "reporter",
                            if from.is_some() { "other" } else { "none" }.into(),
                        ),
                    ]);
                    push(ERRORS, el.clone(), f64::from(e.count));
                    push(ERROR_AGE, el, e.last_age_seconds.unwrap());
                }
                if onset {
                    if let Some(age) = st.last_probe_age_seconds {
                        push(LAST_PROBE_AGE, l.clone(), age);
                    }
                    if let Some(age) = st.failing_for_seconds {
                        push(FAILING_FOR, l.clone(), age);
                    }
                }
                if let Some(m) = mtu.get(layer) {
                    let state = serde_json::to_value(m.state.unwrap()).unwrap();
                    let mut sl = l.clone();
                    sl.push(("state", state.as_str().unwrap().to_string()));
                    push(MTU_STATE, sl, 1.0);
                    if let Some(v) = m.path_mtu {
                        push(PATH_MTU, l.clone(), f64::from(v));
                    }
                }
            }
        }
        // The agent's ownership map, of the facts it publishes (as `metrics::rows` does).
        let owners = a.owners.owner_map();
        for t in &a.targets {
            let node = owners
                .target_node(&t.name)
                .map_or(String::new(), |i| owners.names()[i].clone());
            let mut l = target.clone();
            l.extend([("dst", t.name.clone()), ("dst_node", node)]);
            push(TARGET_INFO, l, 1.0);
        }
    }
    answers
}

/// The recorded onset (lab `node-down node-4`, 2.4 s in; node-4's agent no longer answers):
/// the agents' documents, and node-4 unreachable as `--agents` sees it.
fn onset_recording() -> (Vec<AgentReport>, Inputs) {
    let v: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/diagnosis/tests/fixtures/onset/node-down-node-4.json"
    )))
    .unwrap();
    let reports: Vec<AgentReport> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| AgentReport::from_json(&d.to_string()).unwrap())
        .map(with_lab_facts)
        .collect();
    let inputs = Inputs {
        agents: reports.clone(),
        unreachable_agents: vec!["node-4".into()],
        ..Inputs::default()
    };
    (reports, inputs)
}

/// The recording predates the published address facts: add what its agents knew — the lab's
/// `subnet` layout, node i's pod CIDR 198.19.i.0/24 — and its targets.
fn with_lab_facts(mut a: AgentReport) -> AgentReport {
    use crate::diagnosis::{NodeMeta, TargetPlace};
    a.owners.nodes = a
        .peers
        .iter()
        .map(|p| NodeMeta {
            name: p.node.clone(),
            node_ip: p.node_ip,
            pod_ip: p.pod_ip,
            pod_cidrs: p
                .pod_ip
                .map(|ip| format!("{}/24", crate::net::mask(ip, 24)))
                .into_iter()
                .collect(),
            ..NodeMeta::default()
        })
        .collect();
    a.owners.targets = a
        .targets
        .iter()
        .map(|t| TargetPlace {
            ips: Vec::new(),
            name: t.name.clone(),
            ip: t.ip,
            node: None,
        })
        .collect();
    a
}

fn causes(d: &Diagnosis) -> BTreeSet<String> {
    d.findings.iter().map(|f| f.cause.to_string()).collect()
}

#[test]
fn onset_prometheus_and_agents_say_the_same() {
    let (reports, agents_input) = onset_recording();
    let agents = diagnose(&Matrix::build(&agents_input));
    let answers = answers_from_reports(&reports, true);
    let built = build(&answers, None).unwrap();
    assert!(built.notes.is_empty(), "{:?}", built.notes);
    assert_eq!(built.inputs.unreachable_agents, ["node-4"]);
    // Every cell's figures come back, the ages included.
    for a in &reports {
        let b = built
            .inputs
            .agents
            .iter()
            .find(|b| b.node == a.node)
            .unwrap();
        for p in &a.peers {
            let q = b.peers.iter().find(|q| q.node == p.node).unwrap();
            for (layer, st) in &p.layers {
                let got = &q.layers[layer];
                assert_eq!(
                    (got.failing_for_seconds, got.last_probe_age_seconds),
                    (st.failing_for_seconds, st.last_probe_age_seconds),
                    "{} → {} {layer}",
                    a.node,
                    p.node
                );
            }
        }
    }
    let prom = from_prom(&answers);
    // The onset rule holds back the stale contrasts; the paths recovered from the previous
    // fault are contrasts again: node-4 is down, named at once (2.4 s after the command).
    assert_eq!(
        agents
            .findings
            .iter()
            .map(|f| (f.cause, f.nodes.clone()))
            .collect::<Vec<_>>(),
        [(Cause::NodeDown, vec!["node-4".to_string()])],
        "agents:\n{agents}"
    );
    assert_eq!(summary(&prom), summary(&agents), "prometheus:\n{prom}");

    // Older agents (no ages in the metrics) and documents without failing_for_seconds: the
    // same reading from both. (It is the right one too: the paths recovered from the previous
    // fault are contrasts since `outage_over`; `onset_needs_the_last_probe_ages_too` below is
    // the case the ages decide.)
    let mut legacy_input = agents_input.clone();
    for a in &mut legacy_input.agents {
        for l in a.peers.iter_mut().flat_map(|p| p.layers.values_mut()) {
            l.failing_for_seconds = None;
        }
        for l in a.targets.iter_mut().flat_map(|t| t.layers.values_mut()) {
            l.failing_for_seconds = None;
        }
    }
    let legacy_agents = diagnose(&Matrix::build(&legacy_input));
    let legacy_prom = from_prom(&answers_from_reports(&reports, false));
    assert_eq!(
        summary(&legacy_prom),
        summary(&legacy_agents),
        "{legacy_prom}"
    );
}

/// A fabricated onset (node-3's pod network broken 0.6 s ago, as `cni_onset` in the engine's
/// tests): node-1 saw node-3's pod IP fail, node-3 failed to reach node-1 on every layer; every
/// other cell's last success is from 0.9 s ago, before the failures began. The onset rule holds
/// both paths back; it needs the successes' last-probe ages as much as the streaks' ages.
#[test]
fn onset_needs_the_last_probe_ages_too() {
    let fault = |s: &str, d: &str, l: &str| {
        let pod = l != "icmp_node";
        ((s == "node-1" && d == "node-3" && pod) || (s == "node-3" && d == "node-1"))
            .then_some(("timeout", "none"))
    };
    let mut agents_input = mesh_documents(&[], fault);
    for a in &mut agents_input.agents {
        a.interval_seconds = Some(1.0);
        a.window_seconds = Some(8.0);
        let layers = a
            .peers
            .iter_mut()
            .flat_map(|p| p.layers.values_mut())
            .chain(a.targets.iter_mut().flat_map(|t| t.layers.values_mut()));
        for l in layers {
            if l.reachable == Some(false) {
                l.last_probe_age_seconds = Some(0.05);
                l.failing_for_seconds = Some(0.6);
                l.last_error_age_seconds = Some(0.05);
                for e in &mut l.errors {
                    e.last_age_seconds = Some(0.05);
                }
            } else {
                l.last_probe_age_seconds = Some(0.9);
            }
        }
    }
    let agents = diagnose(&Matrix::build(&agents_input));
    let answers = answers_from_reports(&agents_input.agents, true);
    let prom = from_prom(&answers);
    assert!(agents.findings.is_empty(), "agents:\n{agents}");
    assert_eq!(summary(&prom), summary(&agents), "prometheus:\n{prom}");

    // Without the last-probe ages every success counts as a contrast: the wrong reading, as
    // from agents whose documents lack them.
    let mut no_probe_age = answers.clone();
    no_probe_age.insert(LAST_PROBE_AGE, Vec::new());
    let prom = from_prom(&no_probe_age);
    for a in &mut agents_input.agents {
        for p in &mut a.peers {
            for l in p.layers.values_mut() {
                l.last_probe_age_seconds = None;
            }
        }
        for t in &mut a.targets {
            for l in t.layers.values_mut() {
                l.last_probe_age_seconds = None;
            }
        }
    }
    let agents = diagnose(&Matrix::build(&agents_input));
    assert_eq!(
        causes(&agents),
        BTreeSet::from(["routing".to_string()]),
        "{agents}"
    );
    assert_eq!(summary(&prom), summary(&agents), "prometheus:\n{prom}");
}

/// Two families' answers as one Prometheus holds them: every pair series of `v4` with
/// `family="ipv4"`, of `v6` with `family="ipv6"`; the rest (identity, plan) once.
fn dual_answers(v4: &Answers, v6: &Answers) -> Answers {
    let mut out = v4.clone();
    for (q, samples) in out.iter_mut() {
        if !q.starts_with("meshprobe_pair_") || *q == PLANNED {
            continue;
        }
        let tag = |s: &mut Sample, f: &str| {
            s.labels.insert("family".into(), f.into());
        };
        samples.iter_mut().for_each(|s| tag(s, "ipv4"));
        let mut more = v6.get(q).cloned().unwrap_or_default();
        more.iter_mut().for_each(|s| tag(s, "ipv6"));
        samples.extend(more);
    }
    out
}

#[test]
fn a_dual_stack_fleet_is_diagnosed_per_family_from_prometheus() {
    use crate::diagnosis::{diagnose_inputs, Params};
    use crate::model::Family;
    type F = fn(&str, &str, &str) -> Fault;
    let healthy: F = |_, _, _| None;
    let cni3: F = |s, d, l| {
        let pod = l != "icmp_node";
        ((on(d) == "node-3" && pod) || s == "node-3").then_some(("timeout", "none"))
    };
    let route13: F = |s, d, l| match (s, d, l) {
        ("node-1", "node-3", "icmp_pod" | "http") => Some(("net_unreachable", "source")),
        ("node-3", "node-1", _) => Some(("timeout", "none")),
        _ => None,
    };
    type Want = &'static [(&'static str, &'static str, Option<Family>)];
    let cases: [(&str, F, F, Want); 5] = [
        ("healthy", healthy, healthy, &[]),
        (
            "cni node-3 on IPv6",
            healthy,
            cni3,
            &[("cni", "node-3", Some(Family::Ipv6))],
        ),
        (
            "cni node-3 on IPv4",
            cni3,
            healthy,
            &[("cni", "node-3", Some(Family::Ipv4))],
        ),
        ("cni node-3 on both", cni3, cni3, &[("cni", "node-3", None)]),
        (
            "cni on IPv4, a route on IPv6",
            cni3,
            route13,
            &[
                ("cni", "node-3", Some(Family::Ipv4)),
                ("routing", "node-1", Some(Family::Ipv6)),
            ],
        ),
    ];
    for (what, v4, v6, want) in cases {
        let answers = dual_answers(&mesh_answers(&[], v4), &mesh_answers(&[], v6));
        let built = build(&answers, None).unwrap();
        assert!(
            !built.notes.iter().any(|n| n.contains("more than once")),
            "{what}: two families are not duplicates: {:?}",
            built.notes
        );
        let d = diagnose_inputs(&built.inputs, &Params::default());
        let mut got: Vec<(String, String, Option<Family>)> = d
            .findings
            .iter()
            .map(|f| (f.cause.to_string(), f.nodes.join(","), f.family))
            .collect();
        got.sort();
        let mut want: Vec<(String, String, Option<Family>)> = want
            .iter()
            .map(|(c, n, f)| (c.to_string(), n.to_string(), *f))
            .collect();
        want.sort();
        assert_eq!(got, want, "{what}\n{d}");
    }
}

/// The per-source checks through Prometheus: `meshprobe_check_up`,
/// `meshprobe_check_consecutive_failures` and `meshprobe_check_success_ratio` per agent become
/// each report's `checks`, and the diagnosis reads them as from the agents: node-3's DNS
/// failing 3 runs in a row is `dns` at node-3; one failed run, or a kind the agent does not
/// run, says nothing; the API server's checks are read.
#[test]
fn the_checks_series_give_the_agents_dns_and_service_findings() {
    let with_checks = |dns3: (&str, &str, &str), extra_kind: bool| -> Answers {
        let mut a = mesh_answers(&[], |_, _, _| None);
        let mut up = Vec::new();
        let mut cf = Vec::new();
        let mut ratio = Vec::new();
        for (node, zone) in NODES {
            for (check, target) in [
                ("dns", "meshprobe.mp.svc.cluster.local."),
                ("service", "198.18.96.20:9464"),
            ] {
                let (u, c, r) = if node == "node-3" && check == "dns" {
                    dns3
                } else {
                    ("1", "0", "1")
                };
                let l = [
                    ("src_node", node),
                    ("src_zone", zone),
                    ("check", check),
                    ("target", target),
                ];
                up.push(series(CHECK_UP, &l, u));
                cf.push(series(CHECK_CONSECUTIVE, &l, c));
                ratio.push(series(CHECK_SUCCESS_RATIO, &l, r));
            }
        }
        if extra_kind {
            let l = [
                ("src_node", "node-2"),
                ("src_zone", "zone-a"),
                ("check", "kubelet"),
                ("target", "x"),
            ];
            up.push(series(CHECK_UP, &l, "0"));
            // The API server's checks are read like the others.
            let l = [
                ("src_node", "node-2"),
                ("src_zone", "zone-a"),
                ("check", "apiserver_endpoints"),
                ("target", "10.0.0.1:6443,10.0.0.2:6443"),
            ];
            up.push(series(CHECK_UP, &l, "1"));
        }
        for (q, v) in [
            (CHECK_UP, up),
            (CHECK_CONSECUTIVE, cf),
            (CHECK_SUCCESS_RATIO, ratio),
        ] {
            a.insert(
                q,
                parse_response(q, vector(&v).as_bytes(), MAX_SERIES).unwrap(),
            );
        }
        a
    };
    let diagnose_prom = |a: &Answers| {
        let built = build(a, None).unwrap();
        (
            crate::diagnosis::diagnose_inputs(&built.inputs, &Params::default()),
            built,
        )
    };
    let (d, built) = diagnose_prom(&with_checks(("0", "3", "0.7"), true));
    let node3 = built
        .inputs
        .agents
        .iter()
        .find(|a| a.node == "node-3")
        .unwrap();
    assert_eq!(node3.checks["dns"].consecutive_failures, 3);
    assert_eq!(node3.checks["dns"].reachable, Some(false));
    assert_eq!(node3.checks["service"].target, "198.18.96.20:9464");
    let node2 = built
        .inputs
        .agents
        .iter()
        .find(|a| a.node == "node-2")
        .unwrap();
    assert_eq!(
        (
            node2.checks["apiserver_endpoints"].target.as_str(),
            node2.checks["apiserver_endpoints"].reachable
        ),
        ("10.0.0.1:6443,10.0.0.2:6443", Some(true))
    );
    assert!(!node2.checks.contains_key("kubelet"));
    assert!(
        built
            .notes
            .iter()
            .any(|n| n.contains("other than dns, service, apiserver or apiserver_endpoints")),
        "{:?}",
        built.notes
    );
    assert_eq!(
        d.findings
            .iter()
            .map(|f| (f.cause, f.nodes.clone()))
            .collect::<Vec<_>>(),
        [(Cause::Dns, vec!["node-3".to_string()])],
        "{d}"
    );
    let (d, _) = diagnose_prom(&with_checks(("0", "1", "0.9"), false));
    assert!(d.healthy, "one failed run: {d}");
    let (d, _) = diagnose_prom(&with_checks(("1", "0", "1"), false));
    assert!(d.healthy, "{d}");
}
