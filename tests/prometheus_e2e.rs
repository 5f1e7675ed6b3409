//! The alert rules, their PrometheusRule twin, their runbooks and the Grafana dashboards.
//!
//! Static part (any user): the PrometheusRule holds exactly the rules of
//! deploy/prometheus/meshprobe-rules.yaml; every alert has a severity, a `for:`, templated
//! summary/description and a runbook that exists; `promtool check rules` and `promtool test
//! rules` pass (skipped with a message when promtool is missing); the dashboard is current
//! Grafana JSON with the datasource and `$zone`/`$node`/`$family` as variables, every per-pair
//! selector filtered by `$family`.
//!
//! Live part (root, Debian's `prometheus`): a real Prometheus on a loopback port scrapes a real
//! lab's agents (through the lab's 127.0.0.1 live-view ports) and evaluates the real rules.
//! Every PromQL expression of the rules and dashboard must parse; every selector in them and
//! every dashboard expression must return data (on the healthy lab or under one of the injected
//! faults); under each fault the relevant expressions must name the failing node/pair/zone and
//! the relevant alert must go pending (the CNI one also firing, after its real `for: 1m`).
//! `meshprobe diagnose --prometheus` must agree with `diagnose --agents` (healthy, cni, route),
//! count a stopped agent as unreachable, and exit 2 naming URL and query on errors. In every
//! phase each agent's scrape passes `promtool check metrics` (tests/support/promlint.rs).
//! On a dual-stack lab, a fault of one family must alert in that family only (the CNI ratio at
//! 1 in IPv6, 0 in IPv4) and a node down once per family.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::lab::Lab;
use support::net::{free_port, get_via, ip};
use support::prometheus::Prometheus;
use support::promlint::promtool_findings;
use support::sys::{have_or_skip, root_or_skip, scratch_dir, EXE};

use serde_yaml_ng::Value as Yaml;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const RULES: &str = "deploy/prometheus/meshprobe-rules.yaml";
const RULE_TESTS: &str = "deploy/prometheus/meshprobe-rules.test.yaml";
const PROMETHEUS_RULE: &str = "deploy/components/prometheus-operator/prometheusrule.yaml";
const SERVICE_MONITOR: &str = "deploy/components/prometheus-operator/servicemonitor.yaml";
const SCRAPE_CONFIG: &str = "deploy/prometheus/scrape-config.yaml";
/// Holds the one base URL of the runbook links (`data.base`).
const RUNBOOKS: &str = "deploy/overlays/kube-prometheus-stack/runbooks.yaml";

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every rule of every group, with its group name.
fn rules() -> Vec<(String, Yaml)> {
    let doc = yaml(RULES);
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        let name = g["name"].as_str().unwrap().to_string();
        for r in g["rules"].as_sequence().expect("rules") {
            out.push((name.clone(), r.clone()));
        }
    }
    out
}

fn seconds(d: &str) -> u64 {
    let (n, unit) = d.split_at(d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {d:?}"));
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("duration {d:?}: unit {unit:?}"),
    }
}

#[test]
fn prometheus_rule_holds_exactly_the_plain_rules() {
    let pr = yaml(PROMETHEUS_RULE);
    assert_eq!(pr["apiVersion"], Yaml::from("monitoring.coreos.com/v1"));
    assert_eq!(pr["kind"], Yaml::from("PrometheusRule"));
    assert_eq!(pr["metadata"]["namespace"], Yaml::from("meshprobe"));
    assert_eq!(
        pr["spec"]["groups"],
        yaml(RULES)["groups"],
        "{PROMETHEUS_RULE} spec.groups differs from {RULES}: copy the groups block over"
    );
}

#[test]
fn every_rule_reads_only_what_its_own_group_recorded_before_it() {
    // Groups are evaluated concurrently at unrelated offsets: a rule reading another group's
    // record, or one recorded after it, reads last evaluation's value. The one exception: the
    // records of a group that reads no record itself (aggregates of the agents' slow-changing
    // plan, `meshprobe-plan`): one evaluation late at most, which every `for` absorbs, and
    // never a ratio racing the alert on it.
    let recorded = |r: &Yaml| -> Vec<String> {
        selectors(r["expr"].as_str().unwrap())
            .into_iter()
            .map(|s| s.split('{').next().unwrap_or(&s).to_string())
            .filter(|n| n.starts_with("meshprobe:"))
            .collect()
    };
    let all = rules();
    let groups: BTreeSet<&String> = all.iter().map(|(g, _)| g).collect();
    let leaves: Vec<&String> = groups
        .into_iter()
        .filter(|g| {
            all.iter()
                .filter(|(x, _)| x == *g)
                .all(|(_, r)| recorded(r).is_empty())
        })
        .collect();
    let leaf_records: Vec<&str> = all
        .iter()
        .filter(|(g, _)| leaves.contains(&g))
        .filter_map(|(_, r)| r.get("record")?.as_str())
        .collect();
    // …and those records aggregate the plan only (what changes with membership, not probes).
    for (g, r) in all
        .iter()
        .filter(|(g, r)| leaves.contains(&g) && r.get("record").is_some())
    {
        for sel in selectors(r["expr"].as_str().unwrap()) {
            let metric = sel.split('{').next().unwrap_or(&sel);
            assert!(
                ["meshprobe_pair_planned", "meshprobe_discovery_held"].contains(&metric),
                "{RULES}: {g}/{} reads {metric}: another group reads its records an evaluation late, so it may aggregate the plan only",
                r["record"].as_str().unwrap()
            );
        }
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut leaf_reads = 0;
    for (group, r) in &all {
        let name = r
            .get("alert")
            .or(r.get("record"))
            .and_then(|n| n.as_str())
            .unwrap();
        for read in recorded(r) {
            let own = seen.iter().any(|(g, n)| g == group && *n == read);
            let leaf = !own && leaf_records.contains(&read.as_str());
            leaf_reads += usize::from(leaf);
            assert!(
                own || leaf,
                "{RULES}: rule {group}/{name} reads {read}, which its group `{group}` does not record before it"
            );
        }
        if let Some(rec) = r.get("record").and_then(|n| n.as_str()) {
            seen.push((group.clone(), rec.to_string()));
        }
    }
    assert!(
        seen.len() >= 20,
        "{} recording rules found: is the parser right?",
        seen.len()
    );
    assert!(
        leaf_reads > 0,
        "no rule reads a leaf group's record: {leaves:?}"
    );
}

#[test]
fn every_alert_has_severity_for_templated_text_and_an_existing_runbook() {
    let alerts: Vec<Yaml> = rules()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.get("alert").is_some())
        .collect();
    assert!(alerts.len() >= 8, "{} alerts", alerts.len());
    let base = yaml(RUNBOOKS)["data"]["base"]
        .as_str()
        .unwrap_or_else(|| panic!("{RUNBOOKS}: no data.base"))
        .to_string();
    assert!(base.starts_with("https://"), "{RUNBOOKS}: base {base}");
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        let sev = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        let f = a["for"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no for:"));
        // Rides out at least one lost probe at the default 5 s interval and one failed scrape.
        assert!(seconds(f) >= 60, "{name}: for {f}");
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                a["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: annotation {key}"
            );
        }
        // Absolute (alert receivers have no repository to resolve a relative path in), and
        // BASE/Meshprobe….md: the overlay's replacement swaps BASE at the first "/Meshprobe".
        let url = a["annotations"]["runbook_url"].as_str().unwrap();
        let page = url
            .strip_prefix(&format!("{base}/"))
            .filter(|p| p.starts_with("Meshprobe") && url.matches("/Meshprobe").count() == 1)
            .unwrap_or_else(|| {
                panic!("{name}: runbook_url {url} is not {base}/Meshprobe….md ({RUNBOOKS})")
            });
        let file = format!("docs/runbooks/{page}");
        let page = std::fs::read_to_string(root().join(&file))
            .unwrap_or_else(|e| panic!("{name}: runbook {url}: {file}: {e}"));
        assert!(page.contains(name), "{url} does not mention {name}");
        for section in ["## Meaning", "## Impact", "## Playbook", "## Diagnosis"] {
            assert!(page.contains(section), "{url}: no {section}");
        }
        let text = a["annotations"]["summary"].as_str().unwrap();
        assert!(
            text.contains("{{ $labels.") || name == "MeshprobeAgentsAbsent",
            "{name}: summary not templated with the nodes/pair/zone: {text}"
        );
    }
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    if !have_or_skip("promtool", "prometheus") {
        return;
    }
    let check = Command::new("promtool")
        .args(["check", "rules", RULES])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args([
            "test",
            "rules",
            Path::new(RULE_TESTS).file_name().unwrap().to_str().unwrap(),
        ])
        .current_dir(root().join("deploy/prometheus"))
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// `diagnose --prometheus` reads an age as of the query's evaluation time: the scraped value
/// plus the time since that sample (`promsource::query_for`), checked by promtool on series
/// scraped every 15 s and last scraped 10 s before the evaluation.
#[test]
fn promsource_ages_are_read_as_of_the_query() {
    if !have_or_skip("promtool", "prometheus") {
        return;
    }
    use meshprobe::promsource::{query_for, AGES, REACHABLE};
    let pair = r#"job="meshprobe",src_node="node-1",dst_kind="peer",dst="node-4",layer="http""#;
    let mut series = String::new();
    let mut exprs = String::new();
    for (i, m) in AGES.iter().enumerate() {
        // Scraped at 0, 15 and 30 s with ages 2, 17, 32 (+ i); evaluated at 40 s: 42 (+ i).
        series.push_str(&format!(
            "      - series: '{m}{{{pair}}}'\n        values: '{} {} {} _ _'\n",
            2 + i,
            17 + i,
            32 + i
        ));
        exprs.push_str(&format!(
            "      - expr: '{}'\n        eval_time: 40s\n        exp_samples:\n          - labels: '{{{pair}}}'\n            value: {}\n",
            query_for(m, Some(r#"job="meshprobe""#)),
            42 + i
        ));
    }
    // Not an age: the value as scraped.
    series.push_str(&format!(
        "      - series: '{REACHABLE}{{{pair}}}'\n        values: '1 1 0 _ _'\n"
    ));
    exprs.push_str(&format!(
        "      - expr: '{}'\n        eval_time: 40s\n        exp_samples:\n          - labels: '{REACHABLE}{{{pair}}}'\n            value: 0\n",
        query_for(REACHABLE, Some(r#"job="meshprobe""#)),
    ));
    let doc = format!(
        "rule_files: []\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n{series}    promql_expr_test:\n{exprs}"
    );
    let dir = std::env::temp_dir().join(format!("mp-ages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ages.test.yaml");
    std::fs::write(&file, &doc).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool test rules:\n{doc}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rule_unit_tests_are_what_the_generator_prints() {
    let ok = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: python3 with PyYAML not installed (Debian package python3-yaml)");
        return;
    }
    let out = Command::new("python3")
        .arg("tests/prometheus/gen_rule_tests.py")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Compared as data, so another PyYAML version's formatting does not matter.
    let committed = yaml(RULE_TESTS);
    let fresh: Yaml = serde_yaml_ng::from_slice(&out.stdout).expect("generator output is YAML");
    assert!(
        fresh == committed,
        "{RULE_TESTS} is stale: python3 tests/prometheus/gen_rule_tests.py > {RULE_TESTS}"
    );
}

#[test]
fn dashboard_json_is_current_schema_with_variables_and_what_the_generator_writes() {
    let text = std::fs::read_to_string(root().join(DASHBOARD)).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 39);
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "zone", "node", "family"]);
    assert_eq!(d["templating"]["list"][0]["type"], "datasource");
    // Every per-pair series (they carry `family`) follows the family variable: a panel that
    // ignored it would mix IPv4 and IPv6 under one selected family.
    let mut per_pair = 0;
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for s in selectors(expr) {
                if s.starts_with("meshprobe_pair_") || s.starts_with("meshprobe:pair_") {
                    per_pair += 1;
                    assert!(
                        s.contains(r#"family=~"$family""#),
                        "{}: {s} does not select family=~\"$family\"",
                        p["title"]
                    );
                }
            }
        }
    }
    assert!(per_pair >= 10, "{per_pair} per-pair selectors");
    let mut ids = std::collections::BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{}: datasource is not the variable",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}");
            }
        }
    }
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Reachability: ICMP to pod IPs",
        "Reachability: ICMP to node IPs",
        "Reachability: HTTP to agents",
        "Path MTU (pod IPs), bytes",
        "Worst pairs by loss",
        "RTT percentiles (all destinations)",
        "Probes per second by layer and result",
        "Alerts firing or pending",
        "Scrape up",
        "Check up per node",
        "Check duration p50 / p99",
        "Checks per second by result",
    ] {
        assert!(titles.contains(&want), "no panel {want:?}");
    }
    let ok = Command::new("python3")
        .args(["-c", "import json"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping the generator check: no python3");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("mp-dash-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(
        root().join("dashboards/generate.py"),
        tmp.join("generate.py"),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(tmp.join("generate.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = std::fs::read_to_string(tmp.join("meshprobe.json")).unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    let fresh: serde_json::Value = serde_json::from_str(&fresh).unwrap();
    assert!(
        fresh == d,
        "{DASHBOARD} is stale: run python3 dashboards/generate.py"
    );
}

// ---- PromQL: extraction ---------------------------------------------------------------------

const DASHBOARD: &str = "dashboards/meshprobe.json";

/// Grafana's variables, as "All" and a 30 s rate window (scrapes every 2 s here).
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__interval", "2s")
        .replace("$zone", ".*")
        .replace("$node", ".*")
        .replace("$family", ".*")
}

/// Every PromQL expression of the rules and the dashboard: (where, expression).
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (group, r) in rules() {
        let name = r
            .get("alert")
            .or_else(|| r.get("record"))
            .and_then(Yaml::as_str)
            .unwrap()
            .to_string();
        out.push((
            format!("rule {group}/{name}"),
            r["expr"].as_str().unwrap().to_string(),
        ));
    }
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(DASHBOARD)).unwrap()).unwrap();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {:?} {}", p["title"].as_str().unwrap(), t["refId"]),
                substitute(t["expr"].as_str().unwrap()),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        // label_values(SELECTOR, LABEL) is Grafana's; its PromQL is `group by (LABEL) (SELECTOR)`.
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .expect("label_values(...)");
        let (sel, label) = inner.rsplit_once(',').unwrap();
        out.push((
            format!("variable {}", v["name"].as_str().unwrap()),
            substitute(&format!("group by ({}) ({sel})", label.trim())),
        ));
    }
    out
}

/// The vector selectors of an expression (metric name and matchers), by a small scanner:
/// skips strings, numbers and durations, function and aggregation names, keywords and the
/// label lists after by/without/on/ignoring/group_left/group_right.
fn selectors(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let c: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < c.len() && c[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let close = |open: usize, o: char, e: char| {
        let (mut depth, mut j, mut in_str) = (0, open, false);
        while j < c.len() {
            match c[j] {
                '"' if j == 0 || c[j - 1] != '\\' => in_str = !in_str,
                x if x == o && !in_str => depth += 1,
                x if x == e && !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        return j;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        panic!("unbalanced {o} in {expr}");
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' {
            i += 1;
            while i < c.len() && !(c[i] == '"' && c[i - 1] != '\\') {
                i += 1;
            }
            i += 1;
        } else if ch == '[' {
            i = close(i, '[', ']') + 1;
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let ident: String = c[start..i].iter().collect();
            let next = skip_ws(i);
            if LABEL_LISTS.contains(&ident.as_str()) {
                if next < c.len() && c[next] == '(' {
                    i = close(next, '(', ')') + 1;
                }
            } else if KEYWORDS.contains(&ident.as_str())
                || (next < c.len() && c[next] == '(')
                || c[next..].starts_with(&['b', 'y', ' '])
                || c[next..].starts_with(&['b', 'y', '('])
                || c[next..].starts_with(&['w', 'i', 't', 'h', 'o', 'u', 't'])
            {
                // a keyword, or a function / aggregation name (`sum by (…) (…)`)
            } else if next < c.len() && c[next] == '{' {
                let end = close(next, '{', '}');
                out.push(format!(
                    "{ident}{}",
                    c[next..=end].iter().collect::<String>()
                ));
                i = end + 1;
            } else {
                out.push(ident);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn selector_scanner_finds_metrics_not_labels_or_functions() {
    assert_eq!(
        selectors(
            r#"sum by (le, layer) (rate(a_bucket{x=~"y|z"}[30s]) * on (instance, job) group_left (node) b{q="}"}) > bool 2 unless c"#
        ),
        [r#"a_bucket{x=~"y|z"}"#, r#"b{q="}"}"#, "c"]
    );
    assert_eq!(
        selectors(
            r#"label_replace(meshprobe:x{dst_kind="peer"}, "dst", "$1", "node", "(.*)") or vector(0)"#
        ),
        [r#"meshprobe:x{dst_kind="peer"}"#]
    );
    assert_eq!(selectors("histogram_quantile(0.99, x)"), ["x"]);
    // Every expression we ship has at least one selector (nothing is a constant).
    for (what, e) in expressions() {
        assert!(!selectors(&e).is_empty(), "{what}: {e}");
    }
}

// ---- PromQL: against a real Prometheus scraping the lab -------------------------------------

/// A Prometheus started by the test on 127.0.0.1, killed on drop.
struct Prom {
    p: Prometheus,
    addr: SocketAddr,
}

impl Prom {
    /// Scrapes `targets` (node → agent address) with the ServiceMonitor's relabelings, each
    /// target carrying its node as `__meta_kubernetes_pod_node_name` as Kubernetes discovery would.
    fn start(targets: &BTreeMap<String, SocketAddr>) -> Prom {
        // One directory per Prometheus: the tests of this binary share its pid, and two
        // Prometheus on one directory wipe each other's config and data (one then exits).
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = scratch_dir(&format!("prom{n}"));
        let port = free_port(ip(1));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let statics: String = targets
            .iter()
            .map(|(node, t)| {
                format!(
                    "      - targets: [\"{t}\"]\n        labels: {{__meta_kubernetes_pod_node_name: \"{node}\"}}\n"
                )
            })
            .collect();
        let config = format!(
            "global: {{scrape_interval: 2s, scrape_timeout: 1500ms, evaluation_interval: 2s}}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: meshprobe\n    relabel_configs: {}\n    static_configs:\n{statics}",
            root().join(RULES).display(),
            serde_json::to_string(&service_monitor_relabel_configs()).unwrap(),
        );
        let mut p = Prom {
            p: Prometheus::start(&dir, addr, &config, None),
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.get("/-/ready").map(|(c, _)| c) != Some(200) {
            p.p.assert_running();
            assert!(Instant::now() < deadline, "prometheus not ready in 30s");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        get_via(self.addr, "prometheus", path, Duration::from_secs(10))
    }

    /// An instant query: the result vector, or Prometheus's error (a parse error names the spot).
    fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let (code, body) = self
            .get(&format!("/api/v1/query?query={}", urlencode(q)))
            .ok_or("no answer from prometheus")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{code}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{code}: {} {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn must(&self, q: &str) -> Vec<Value> {
        self.query(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    /// Poll `q` until `ok(result)` or panic after `limit` with the last result.
    fn wait(
        &self,
        what: &str,
        q: &str,
        limit: Duration,
        ok: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let r = self.must(q);
            if ok(&r) {
                eprintln!("  {what}: after {:.1}s", t0.elapsed().as_secs_f64());
                return r;
            }
            assert!(
                t0.elapsed() < limit,
                "{what}: not after {limit:?}; {q} = {}",
                serde_json::to_string(&r).unwrap()
            );
            std::thread::sleep(Duration::from_millis(1000));
        }
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        self.p.stop();
        let _ = std::fs::remove_dir_all(&self.p.dir);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The ServiceMonitor's endpoint relabelings as Prometheus relabel_configs (the operator's
/// translation: camelCase fields to snake_case), so the lab is scraped as the operator would.
fn service_monitor_relabel_configs() -> Vec<Value> {
    let sm = yaml(SERVICE_MONITOR);
    let rl = sm["spec"]["endpoints"][0]["relabelings"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{SERVICE_MONITOR}: spec.endpoints[0].relabelings"));
    rl.iter()
        .map(|r| {
            let mut out = serde_json::Map::new();
            for (k, v) in r.as_mapping().unwrap() {
                let k = k.as_str().unwrap();
                let key = match k {
                    "sourceLabels" => "source_labels",
                    "targetLabel" => "target_label",
                    "regex" | "replacement" | "separator" | "action" | "modulus" => k,
                    _ => panic!("{SERVICE_MONITOR}: relabeling field {k} not mirrored in the e2e"),
                };
                out.insert(key.into(), serde_json::to_value(v).unwrap());
            }
            Value::Object(out)
        })
        .collect()
}

/// The plain-Prometheus scrape job relabels as the ServiceMonitor does: job `meshprobe` (the
/// alerts select jobs named like meshprobe), every relabeling of the ServiceMonitor present.
#[test]
fn plain_scrape_config_relabels_as_the_service_monitor() {
    let sc = yaml(SCRAPE_CONFIG);
    let job = &sc[0];
    assert_eq!(job["job_name"], Yaml::from("meshprobe"), "{SCRAPE_CONFIG}");
    let plain: Vec<Value> = job["relabel_configs"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{SCRAPE_CONFIG}: relabel_configs"))
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    for want in service_monitor_relabel_configs() {
        assert!(
            plain.contains(&want),
            "{SCRAPE_CONFIG} lacks the ServiceMonitor's relabeling {want} (has {plain:?})"
        );
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn label<'a>(s: &'a Value, l: &str) -> &'a str {
    s["metric"][l].as_str().unwrap_or("")
}

fn value(s: &Value) -> f64 {
    s["value"][1].as_str().unwrap().parse().unwrap()
}

/// (src_node, dst) → value, from a source × destination matrix query.
fn cells(r: &[Value]) -> BTreeMap<(String, String), f64> {
    r.iter()
        .map(|s| {
            (
                (
                    label(s, "src_node").to_string(),
                    label(s, "dst").to_string(),
                ),
                value(s),
            )
        })
        .collect()
}

/// Whether a series' pair involves `node`: as source, as destination, or through its target pod
/// (`web-node-N` runs on node-N).
fn touches(s: &Value, node: &str) -> bool {
    label(s, "src_node") == node
        || label(s, "dst") == node
        || label(s, "dst") == format!("web-{node}")
}

/// Three rule evaluations (2 s each): a pair alert may go pending for an evaluation or two as
/// a node's pairs go down one by one (its share of down peers still ≤ 0.5 at that evaluation),
/// and is gone once the share is in; the
/// "must not fire" checks of the dual-stack test (made right after the right alert went
/// pending) wait that out. CI (2026-12-07): `cni node-3 --family ipv6` showed node-3's pair
/// alerts pending at that moment.
fn settle_onset() {
    std::thread::sleep(Duration::from_secs(6));
}

fn alerts(p: &Prom, name: &str) -> Vec<Value> {
    p.must(&format!("ALERTS{{alertname=\"{name}\"}}"))
}

/// `meshprobe_pair_planned` and the recording rules over it: agents export only when healthy pairs
/// have no series (`failing`, or `auto` on a sampled plan); the lab's full mesh exports every
/// pair, so they return nothing here; `tests/fleet_emulator.rs` checks them on a sampled plan.
const SAMPLED_ONLY: &[&str] = &[
    "meshprobe_pair_planned",
    "meshprobe:dst_planned_by_src_zone:count",
    "meshprobe:src_planned:count",
    "meshprobe:zone_planned:count",
];

/// What each expression and selector returned so far: expression → returned data once.
#[derive(Default)]
struct Seen {
    exprs: BTreeMap<String, (String, bool)>,
    selectors: BTreeMap<String, bool>,
}

impl Seen {
    /// Evaluates every expression and selector, and lints every answering agent's scrape.
    fn evaluate(&mut self, p: &Prom, lab: &Lab, phase: &str) {
        lint_scrapes(lab, phase);
        let mut empty = 0;
        for (what, e) in expressions() {
            let r = p
                .query(&e)
                .unwrap_or_else(|err| panic!("{phase}: {what} does not evaluate: {err}\n{e}"));
            empty += usize::from(r.is_empty());
            let entry = self.exprs.entry(e.clone()).or_insert((what, false));
            entry.1 |= !r.is_empty();
            for s in selectors(&e) {
                let has = !p.must(&s).is_empty();
                *self.selectors.entry(s).or_insert(false) |= has;
            }
        }
        eprintln!(
            "  {phase}: {} expressions evaluated, {empty} empty",
            self.exprs.len()
        );
    }
}

/// `promtool check metrics` over each answering agent's `/metrics` (a stopped one is skipped):
/// no finding but the OpenMetrics counter line (`support::promlint`), whatever the fault shows.
fn lint_scrapes(lab: &Lab, phase: &str) {
    let mut linted = 0;
    for node in lab.proxies.keys() {
        let Some((200, scrape)) = lab.get(node, "/metrics", Duration::from_secs(5)) else {
            continue;
        };
        let Some(findings) = promtool_findings(&scrape) else {
            return;
        };
        assert!(
            findings.is_empty(),
            "{phase}: {node}'s scrape: promtool check metrics: {findings:#?}"
        );
        linted += 1;
    }
    assert!(linted >= 3, "{phase}: only {linted} scrapes to lint");
}

fn agent_pid(lab: &Lab, node: &str) -> u32 {
    let st: Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "agent" && p["node"] == node)
        .and_then(|p| p["pid"].as_u64())
        .unwrap_or_else(|| panic!("no agent process for {node}: {st}")) as u32
}

/// `meshprobe diagnose ARGS -o json`: exit status, the document (Null when none), stderr.
fn diagnose(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(EXE)
        .arg("diagnose")
        .args(args)
        .args(["-o", "json", "--timeout", "5s"])
        .output()
        .expect("run meshprobe diagnose");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each finding's cause and nodes, and whether it names the directed pair `pair`.
fn verdict(d: &Value, pair: Option<[&str; 2]>) -> Vec<(String, Vec<String>, bool)> {
    d["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let nodes = f["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            let has_pair = pair.is_none_or(|[a, b]| {
                f["pairs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p[0] == a && p[1] == b)
            });
            (
                f["cause"].as_str().unwrap_or("?").to_string(),
                nodes,
                has_pair,
            )
        })
        .collect()
}

/// Poll `diagnose --prometheus` and `diagnose --agents` until both give the same findings
/// (cause, nodes, whether they name `pair`) and these include one of `cause` naming `node` (and
/// `pair`) — when `only`, exactly that one finding, naming `node` alone; or no finding and exit
/// 0 when `cause` is empty. Panics
/// after `limit` with both answers.
fn same_diagnosis(
    prom: &Prom,
    lab: &Lab,
    cause: &str,
    node: &str,
    pair: Option<[&str; 2]>,
    only: bool,
    limit: Duration,
) -> Value {
    let url = format!("http://{}", prom.addr);
    let agents: Vec<String> = lab.proxies.values().map(|a| a.to_string()).collect();
    let agents = agents.join(",");
    let t0 = Instant::now();
    loop {
        let t = Instant::now();
        let (pc, pd, perr) = diagnose(&["--prometheus", &url]);
        let took_prom = t.elapsed();
        let t = Instant::now();
        let (ac, ad, aerr) = diagnose(&["--agents", &agents]);
        let took_agents = t.elapsed();
        let (pv, av) = (verdict(&pd, pair), verdict(&ad, pair));
        let good = |code: i32, v: &[(String, Vec<String>, bool)]| {
            if cause.is_empty() {
                code == 0 && v.is_empty()
            } else if only {
                code == 1 && v.len() == 1 && v[0].0 == cause && v[0].1 == [node] && v[0].2
            } else {
                code == 1
                    && v.iter()
                        .any(|f| f.0 == cause && f.1.iter().any(|n| n == node) && f.2)
            }
        };
        if good(pc, &pv) && good(ac, &av) && pv == av {
            eprintln!(
                "  diagnose --prometheus = --agents = {pv:?}: after {:.1}s (one run: --prometheus {:.0} ms, --agents {:.0} ms)",
                t0.elapsed().as_secs_f64(),
                took_prom.as_secs_f64() * 1000.0,
                took_agents.as_secs_f64() * 1000.0
            );
            return pd;
        }
        assert!(
            t0.elapsed() < limit,
            "want {cause:?} on {node} from both within {limit:?}\n--prometheus (exit {pc}): {pv:?}\n{perr}{}\n--agents (exit {ac}): {av:?}\n{aerr}",
            serde_json::to_string_pretty(&pd).unwrap()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

const PHASE: Duration = Duration::from_secs(45);

#[test]
fn every_expression_works_against_a_real_prometheus_and_faults_show_and_alert() {
    if !root_or_skip("the live Prometheus test needs root (it builds a lab)")
        || !have_or_skip("prometheus", "prometheus")
    {
        return;
    }
    let suite = Instant::now();
    let lab = Lab::up(&format!("mpq{}", std::process::id() % 100_000));
    let prom = Prom::start(&lab.proxies);
    let mut seen = Seen::default();

    // Healthy: all four agents scraped, 36 pair series, rates over 30 s.
    prom.wait("4 agents up", "sum(up)", PHASE, |r| {
        r.len() == 1 && value(&r[0]) == 4.0
    });
    // The ServiceMonitor's relabelling: every agent's series carry agent_node, equal to the
    // node meshprobe_agent_info names, and no label was pushed aside (`exported_*`).
    let info = prom.must("meshprobe_agent_info");
    let pairs: BTreeSet<(String, String)> = info
        .iter()
        .map(|s| {
            (
                label(s, "node").to_string(),
                label(s, "agent_node").to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> =
        lab.proxies.keys().map(|n| (n.clone(), n.clone())).collect();
    assert_eq!(
        pairs, want,
        "meshprobe_agent_info (node, agent_node): {info:?}"
    );
    let up_nodes: BTreeSet<String> = prom
        .must("up")
        .iter()
        .map(|s| label(s, "agent_node").to_string())
        .collect();
    assert_eq!(
        up_nodes,
        lab.proxies.keys().cloned().collect(),
        "up{{agent_node}}"
    );
    let pushed = prom.must(r#"count by (__name__) ({__name__=~"meshprobe_.*|up", exported_node!=""} or {__name__=~"meshprobe_.*|up", exported_instance!=""} or {__name__=~"meshprobe_.*|up", exported_job!=""})"#);
    assert!(
        pushed.is_empty(),
        "series with a label pushed aside by a target label: {pushed:?}"
    );
    prom.wait(
        "36 peer pairs with a success ratio",
        r#"count(meshprobe_pair_success_ratio{dst_kind="peer"})"#,
        PHASE,
        |r| r.len() == 1 && value(&r[0]) == 36.0,
    );
    std::thread::sleep(Duration::from_secs(20));
    let m = cells(&prom.must(r#"min by (src_node, dst) (meshprobe_pair_success_ratio{layer="icmp_pod", dst_kind="peer"})"#));
    assert_eq!(m.len(), 12, "{m:?}");
    assert!(m.values().all(|v| *v >= 0.75), "healthy lab: {m:?}");
    seen.evaluate(&prom, &lab, "healthy");
    same_diagnosis(&prom, &lab, "", "", None, true, PHASE);
    let noisy = prom.must(r#"ALERTS{alertname=~"Meshprobe.*"}"#);
    assert!(
        noisy.is_empty(),
        "alerts on the healthy lab: {}",
        serde_json::to_string(&noisy).unwrap()
    );

    // CNI on node-3: its pod IP dead for everyone, its node IP fine.
    lab.ok(&["fault", "cni", "node-3"]);
    prom.wait(
        "cni node-3: pod-IP down ratio names node-3 only",
        r#"meshprobe:dst_down_sources:ratio{dst_kind="peer", layer="icmp_pod"} > 0.5"#,
        PHASE,
        |r| r.len() == 1 && label(&r[0], "dst") == "node-3",
    );
    prom.wait(
        "cni node-3: the pod-IP matrix is red exactly in node-3's row and column",
        r#"min by (src_node, dst) (meshprobe_pair_success_ratio{layer="icmp_pod", dst_kind="peer", src_zone=~".*", src_node=~".*"})"#,
        PHASE,
        |r| {
            let m = cells(r);
            m.len() == 12
                && m.iter().all(|((s, d), v)| {
                    if s == "node-3" || d == "node-3" {
                        *v < 0.5
                    } else {
                        *v >= 0.75
                    }
                })
        },
    );
    // Node-3's node IP still answers everyone (node-3's own agent sits in a pod, so its row fails).
    let node_ip = cells(&prom.must(r#"min by (src_node, dst) (meshprobe_pair_success_ratio{layer="icmp_node", dst_kind="peer"})"#));
    assert!(
        node_ip
            .iter()
            .all(|((s, _), v)| s == "node-3" || *v >= 0.75),
        "cni: node IPs must stay up: {node_ip:?}"
    );
    prom.wait(
        "cni node-3: MeshprobeNodePodNetworkIsolated pending",
        r#"ALERTS{alertname="MeshprobeNodePodNetworkIsolated"}"#,
        PHASE,
        |r| r.len() == 1 && label(&r[0], "dst") == "node-3",
    );
    prom.wait(
        "cni node-3: MeshprobeNodePodNetworkIsolated firing (for: 1m)",
        r#"ALERTS{alertname="MeshprobeNodePodNetworkIsolated", alertstate="firing"}"#,
        Duration::from_secs(90),
        |r| r.len() == 1 && label(&r[0], "dst") == "node-3",
    );
    seen.evaluate(&prom, &lab, "cni node-3");
    let d = same_diagnosis(&prom, &lab, "cni", "node-3", None, true, PHASE);
    assert!(
        d["findings"][0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e
                .as_str()
                .unwrap()
                .starts_with("from Prometheus at http://")),
        "{d}"
    );
    for quiet in [
        "MeshprobeNodeDown",
        "MeshprobeZonePartition",
        "MeshprobePodToPodUnreachable",
    ] {
        assert!(
            alerts(&prom, quiet).is_empty(),
            "cni: {quiet} must not fire: {:?}",
            alerts(&prom, quiet)
        );
    }
    lab.ok(&["clear"]);
    prom.wait(
        "cleared: no pair down",
        "sum(meshprobe:pair_down:bool) == 0",
        PHASE,
        |r| r.len() == 1,
    );

    // One layer up (issue 25): node-3's DNS traffic dropped names node-3's DNS; node-2's
    // Service rules gone name node-2's Service, not also its DNS (a ClusterIP too).
    lab.ok(&["fault", "dns-from", "node-3"]);
    prom.wait(
        "dns-from node-3: MeshprobeDnsFailingFromNode pending for node-3 only",
        r#"ALERTS{alertname="MeshprobeDnsFailingFromNode"}"#,
        PHASE,
        |r| r.len() == 1 && label(&r[0], "src_node") == "node-3",
    );
    lab.ok(&["clear"]);
    prom.wait(
        "dns-from cleared: no check failing",
        "sum(meshprobe:check_failing:bool) == 0",
        PHASE,
        |r| r.len() == 1,
    );
    lab.ok(&["fault", "kube-proxy", "node-2"]);
    prom.wait(
        "kube-proxy node-2: MeshprobeServiceUnreachableFromNode pending for node-2 only",
        r#"ALERTS{alertname="MeshprobeServiceUnreachableFromNode"}"#,
        PHASE,
        |r| r.len() == 1 && label(&r[0], "src_node") == "node-2",
    );
    prom.wait(
        "kube-proxy node-2: its DNS fails too (through the DNS ClusterIP)",
        r#"meshprobe:check_failing:bool{check="dns", src_node="node-2"} == 1"#,
        PHASE,
        |r| r.len() == 1,
    );
    let dns = alerts(&prom, "MeshprobeDnsFailingFromNode");
    assert!(
        dns.is_empty(),
        "kube-proxy node-2: the DNS alert is the Service one's: {dns:?}"
    );
    lab.ok(&["clear"]);
    prom.wait(
        "kube-proxy cleared: no check failing",
        "sum(meshprobe:check_failing:bool) == 0",
        PHASE,
        |r| r.len() == 1,
    );

    // Zone partition: cross-zone blocks dead on every layer, inside each zone fine.
    lab.ok(&["fault", "partition", "zone-a", "zone-b"]);
    prom.wait(
        "partition: both zone pairs down",
        r#"meshprobe:zone_pair_down:ratio{layer="icmp_node"} > 0.8"#,
        PHASE,
        |r| {
            let z: BTreeSet<(&str, &str)> = r
                .iter()
                .map(|s| (label(s, "src_zone"), label(s, "dst_zone")))
                .collect();
            z == BTreeSet::from([("zone-a", "zone-b"), ("zone-b", "zone-a")])
        },
    );
    prom.wait(
        "partition: the node-IP matrix is red off the zone diagonal only",
        r#"min by (src_node, dst) (meshprobe_pair_success_ratio{layer="icmp_node", dst_kind="peer", src_zone=~".*", src_node=~".*"})"#,
        PHASE,
        |r| {
            let zone = |n: &str| n.strip_prefix("node-").and_then(|i| i.parse::<u8>().ok()).map(|i| i % 2);
            let m = cells(r);
            m.len() == 12 && m.iter().all(|((s, d), v)| if zone(s) != zone(d) { *v < 0.5 } else { *v >= 0.75 })
        },
    );
    prom.wait(
        "partition: MeshprobeZonePartition pending both ways",
        r#"ALERTS{alertname="MeshprobeZonePartition"}"#,
        PHASE,
        |r| r.len() == 2,
    );
    seen.evaluate(&prom, &lab, "partition zone-a zone-b");
    for quiet in ["MeshprobeNodeDown", "MeshprobeNodePodNetworkIsolated"] {
        assert!(
            alerts(&prom, quiet).is_empty(),
            "partition: {quiet} must not fire: {:?}",
            alerts(&prom, quiet)
        );
    }
    lab.ok(&["clear"]);
    prom.wait(
        "cleared: no pair down",
        "sum(meshprobe:pair_down:bool) == 0",
        PHASE,
        |r| r.len() == 1,
    );

    // One routed pair: node-1 has no route to node-2's pods.
    lab.ok(&["fault", "route", "node-1", "node-2"]);
    prom.wait(
        "route node-1 node-2: MeshprobePodToPodUnreachable pending for that pair",
        r#"ALERTS{alertname="MeshprobePodToPodUnreachable", layer="icmp_pod"}"#,
        PHASE,
        |r| {
            !r.is_empty()
                && r.iter().all(|s| {
                    let pair = (label(s, "src_node"), label(s, "dst"));
                    pair == ("node-1", "node-2") || pair == ("node-2", "node-1")
                })
        },
    );
    seen.evaluate(&prom, &lab, "route node-1 node-2");
    // Exactly one finding, routing on node-1 alone, naming the pair (both sources agree).
    same_diagnosis(
        &prom,
        &lab,
        "routing",
        "node-1",
        Some(["node-1", "node-2"]),
        true,
        PHASE,
    );
    lab.ok(&["clear"]);

    // A target refusing connections: web-node-2 unreachable over HTTP from every agent.
    lab.ok(&["fault", "reject", "web-node-2"]);
    prom.wait(
        "reject web-node-2: MeshprobeTargetUnreachable pending",
        r#"ALERTS{alertname="MeshprobeTargetUnreachable"}"#,
        PHASE,
        |r| r.len() == 1 && label(&r[0], "dst") == "web-node-2",
    );
    seen.evaluate(&prom, &lab, "reject web-node-2");
    lab.ok(&["clear"]);

    // Loss: 30% of node-2's underlay packets.
    lab.ok(&["fault", "loss", "node-2", "30"]);
    prom.wait(
        "loss node-2 30: the worst-pairs-by-loss panel shows node-2's pairs",
        r#"topk(10, max by (src_node, dst, layer) (meshprobe_pair_loss_ratio{layer=~"icmp_pod|icmp_node", src_zone=~".*", src_node=~".*"})) > 0.1"#,
        PHASE,
        |r| r.len() >= 3 && r.iter().all(|s| touches(s, "node-2")),
    );
    prom.wait(
        "loss node-2 30: MeshprobePacketLoss pending on node-2's pairs",
        r#"ALERTS{alertname="MeshprobePacketLoss"}"#,
        PHASE,
        |r| !r.is_empty() && r.iter().all(|s| touches(s, "node-2")),
    );
    seen.evaluate(&prom, &lab, "loss node-2 30");
    lab.ok(&["clear"]);

    // MTU: node-2's underlay at 1400 — a mismatch out of node-2, a black hole into it.
    lab.ok(&["fault", "mtu", "node-2", "1400"]);
    prom.wait(
        "mtu node-2 1400: the path-MTU matrix is below 1500 exactly on node-2's pairs",
        r#"min by (src_node, dst) (meshprobe_pair_path_mtu_bytes{layer="icmp_pod", dst_kind="peer", src_zone=~".*", src_node=~".*"})"#,
        Duration::from_secs(90),
        |r| {
            let m = cells(r);
            m.len() == 12
                && m.iter().all(|((s, d), v)| if s == "node-2" || d == "node-2" { *v < 1500.0 && *v >= 1372.0 } else { *v == 1500.0 })
        },
    );
    prom.wait(
        "mtu node-2 1400: MeshprobePathMtuBelowExpected and MeshprobeMtuBlackHole pending",
        r#"count by (alertname) (ALERTS{alertname=~"MeshprobePathMtuBelowExpected|MeshprobeMtuBlackHole"})"#,
        PHASE,
        |r| r.len() == 2,
    );
    let mtu_alerts =
        prom.must(r#"ALERTS{alertname=~"MeshprobePathMtuBelowExpected|MeshprobeMtuBlackHole"}"#);
    assert!(
        mtu_alerts.iter().all(|s| touches(s, "node-2")),
        "{}",
        serde_json::to_string(&mtu_alerts).unwrap()
    );
    seen.evaluate(&prom, &lab, "mtu node-2 1400");
    lab.ok(&["clear"]);

    // node-4 down: cut off the underlay, everything to it dead from both zones.
    lab.ok(&["fault", "node-down", "node-4"]);
    prom.wait(
        "node-down node-4: MeshprobeNodeDown pending for node-4",
        r#"ALERTS{alertname="MeshprobeNodeDown"}"#,
        PHASE,
        |r| r.len() == 1 && label(&r[0], "dst") == "node-4",
    );
    seen.evaluate(&prom, &lab, "node-down node-4");
    // The failure streaks' ages, as `diagnose --prometheus` asks for them: only pairs whose
    // last probe failed, all of them node-4's.
    let failing_for = meshprobe::promsource::query_for(meshprobe::promsource::FAILING_FOR, None);
    prom.wait(
        "node-down node-4: failure-streak ages exactly on node-4's pairs",
        &failing_for,
        PHASE,
        |r| !r.is_empty() && r.iter().all(|s| touches(s, "node-4") && value(s) >= 0.0),
    );
    for quiet in ["MeshprobeZonePartition", "MeshprobeNodePodNetworkIsolated"] {
        assert!(
            alerts(&prom, quiet).is_empty(),
            "node-down: {quiet} must not fire: {:?}",
            alerts(&prom, quiet)
        );
    }
    lab.ok(&["clear"]);
    prom.wait(
        "cleared: no pair down",
        "sum(meshprobe:pair_down:bool) == 0",
        PHASE,
        |r| r.len() == 1,
    );
    prom.wait(
        "cleared: no failure-streak age left (absent, not stale)",
        &failing_for,
        PHASE,
        |r| r.is_empty(),
    );

    // An agent gone: node-4's agent process stopped (by its PID, from lab status).
    let pid = agent_pid(&lab, "node-4");
    // SAFETY: kill(2) on a PID the lab started and reports; no memory is involved.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    prom.wait(
        "agent node-4 stopped: its scrape is down",
        r#"up{job=~".*meshprobe.*"} == 0"#,
        PHASE,
        |r| r.len() == 1,
    );
    // Its series are stale: for --prometheus an unreachable agent (evidence), not an error.
    let url = format!("http://{}", prom.addr);
    let (code, d, err) = diagnose(&["--prometheus", &url]);
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    assert_eq!(d["agents_unreachable"][0]["node"], "node-4", "{d}");
    assert_eq!(
        strs(&d["agents_answered"]),
        ["node-1", "node-2", "node-3"],
        "{d}"
    );
    // Errors that are the user's to fix: exit 2, naming the URL and the query.
    let (code, _, err) = diagnose(&["--prometheus", &url, "--prometheus-match", "job=~"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&url)
            && err.contains("meshprobe_agent_info{job=~}")
            && err.contains("bad_data"),
        "{err}"
    );
    let (code, _, err) = diagnose(&[
        "--prometheus",
        &url,
        "--prometheus-match",
        r#"job="nothing""#,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&url)
            && err.contains("no meshprobe series")
            && err.contains(r#"meshprobe_agent_info{job="nothing"}"#),
        "{err}"
    );
    prom.wait(
        "agent node-4 stopped: MeshprobeAgentDown pending",
        r#"ALERTS{alertname="MeshprobeAgentDown"}"#,
        PHASE,
        |r| r.len() == 1,
    );
    prom.wait(
        "agent node-4 stopped: its peers still probe it, no agent_info (the AgentMissing expression)",
        r#"count by (dst, dst_zone) (meshprobe_pair_consecutive_failures{dst_kind="peer", layer="icmp_node"}) unless on (dst) label_replace(meshprobe_agent_info, "dst", "$1", "node", "(.*)")"#,
        Duration::from_secs(400),
        |r| r.len() == 1 && label(&r[0], "dst") == "node-4",
    );
    seen.evaluate(&prom, &lab, "agent node-4 stopped");

    // Every dashboard expression returned data at some point; every selector too.
    let never: Vec<String> = seen
        .exprs
        .iter()
        .filter(|(_, (what, had))| {
            !had && ["panel", "variable", "rule meshprobe.rules"]
                .iter()
                .any(|p| what.starts_with(p))
                && !what
                    .rsplit_once('/')
                    .is_some_and(|(_, r)| SAMPLED_ONLY.contains(&r))
        })
        .map(|(e, (what, _))| format!("{what}: {e}"))
        .collect();
    assert!(
        never.is_empty(),
        "expressions that never returned data:\n{}",
        never.join("\n")
    );
    let alert_exprs_empty: Vec<&String> = seen
        .exprs
        .values()
        .filter(|(what, had)| !had && what.starts_with("rule meshprobe.alerts"))
        .map(|(what, _)| what)
        .collect();
    eprintln!("  alert expressions never true in these phases: {alert_exprs_empty:?}");
    // Series only Kubernetes discovery exports (the lab reads a peers file); tests/kube_agent.rs
    // checks the agent exports them.
    const KUBE_ONLY: &[&str] = &["meshprobe_discovery_held"];
    let dead: Vec<&String> = seen
        .selectors
        .iter()
        .filter(|(s, had)| {
            // A selector's metric name (its matchers aside) decides.
            let name = s.split('{').next().unwrap_or(s);
            !**had && !KUBE_ONLY.contains(&name) && !SAMPLED_ONLY.contains(&name)
        })
        .map(|(s, _)| s)
        .collect();
    assert!(
        dead.is_empty(),
        "selectors that never returned data: {dead:?}"
    );
    eprintln!(
        "  {} expressions, {} selectors checked in {:.0}s",
        seen.exprs.len(),
        seen.selectors.len(),
        suite.elapsed().as_secs_f64()
    );
}

/// The rules on a dual-stack lab (`lab up --ip-family dual`: every pair probed at both
/// families, series labelled `family`): a fault of one family alerts in that family only, at
/// its full ratio; a node down alerts once per family. The alerts are checked pending (their
/// `for:` is the single-family test's to wait for).
#[test]
fn a_dual_stack_lab_alerts_per_family() {
    if !root_or_skip("the live Prometheus test needs root (it builds a lab)")
        || !have_or_skip("prometheus", "prometheus")
    {
        return;
    }
    let suite = Instant::now();
    let lab = Lab::up_with(
        &format!("mpqd{}", std::process::id() % 10_000),
        4,
        2,
        &["--ip-family", "dual", "--mtu-interval", "2s"],
    );
    let prom = Prom::start(&lab.proxies);
    let families = |r: &[Value]| -> BTreeSet<String> {
        r.iter().map(|s| label(s, "family").to_string()).collect()
    };
    let both = BTreeSet::from(["ipv4".to_string(), "ipv6".to_string()]);
    prom.wait(
        "dual: 36 peer pairs per family",
        r#"count by (family) (meshprobe_pair_success_ratio{dst_kind="peer"})"#,
        PHASE,
        |r| families(r) == both && r.iter().all(|s| value(s) == 36.0),
    );
    std::thread::sleep(Duration::from_secs(20));
    let noisy = prom.must(r#"ALERTS{alertname=~"Meshprobe.*"}"#);
    assert!(
        noisy.is_empty(),
        "alerts on the healthy dual-stack lab: {}",
        serde_json::to_string(&noisy).unwrap()
    );
    // No alert of the family a fault leaves alone, whatever the alert.
    let quiet_in = |family: &str, phase: &str| {
        let r = prom.must(&format!(
            r#"ALERTS{{alertname=~"Meshprobe.*", family!="{family}"}}"#
        ));
        assert!(
            r.is_empty(),
            "{phase}: alerts outside {family}: {}",
            serde_json::to_string(&r).unwrap()
        );
    };

    // CNI on node-3, IPv6 only: its IPv6 pod address down from every source (ratio 1, not the
    // 0.5 of both families summed), its IPv4 one up.
    lab.ok(&["fault", "cni", "node-3", "--family", "ipv6"]);
    let r = prom.wait(
        "dual cni node-3 ipv6: pod-IP down ratio 1 in ipv6, 0 in ipv4",
        r#"meshprobe:dst_down_sources:ratio{dst="node-3", layer="icmp_pod"}"#,
        PHASE,
        |r| {
            r.len() == 2
                && r.iter().all(|s| {
                    value(s)
                        == if label(s, "family") == "ipv6" {
                            1.0
                        } else {
                            0.0
                        }
                })
        },
    );
    assert_eq!(families(&r), both);
    prom.wait(
        "dual cni node-3 ipv6: MeshprobeNodePodNetworkIsolated pending in ipv6",
        r#"ALERTS{alertname="MeshprobeNodePodNetworkIsolated"}"#,
        PHASE,
        |r| r.len() == 1 && label(&r[0], "dst") == "node-3" && label(&r[0], "family") == "ipv6",
    );
    quiet_in("ipv6", "dual cni node-3 ipv6");
    settle_onset();
    for quiet in ["MeshprobePodToPodUnreachable", "MeshprobeNodeDown"] {
        assert!(
            alerts(&prom, quiet).is_empty(),
            "dual cni: {quiet} must not fire: {:?}",
            alerts(&prom, quiet)
        );
    }
    lab.ok(&["clear"]);
    prom.wait(
        "dual cleared: no pair down",
        "sum(meshprobe:pair_down:bool) == 0",
        PHASE,
        |r| r.len() == 1,
    );

    // node-1 loses its IPv6 route to node-3's pods: the pair alert for those pairs, in ipv6.
    lab.ok(&["fault", "route", "node-1", "node-3", "--family", "ipv6"]);
    prom.wait(
        "dual route node-1 node-3 ipv6: MeshprobePodToPodUnreachable pending in ipv6 for that pair",
        r#"ALERTS{alertname="MeshprobePodToPodUnreachable", layer="icmp_pod"}"#,
        PHASE,
        |r| {
            !r.is_empty()
                && r.iter().all(|s| {
                    let pair = (label(s, "src_node"), label(s, "dst"));
                    (pair == ("node-1", "node-3") || pair == ("node-3", "node-1"))
                        && label(s, "family") == "ipv6"
                })
        },
    );
    quiet_in("ipv6", "dual route node-1 node-3 ipv6");
    lab.ok(&["clear"]);
    prom.wait(
        "dual cleared: no pair down",
        "sum(meshprobe:pair_down:bool) == 0",
        PHASE,
        |r| r.len() == 1,
    );

    // node-4 down (a link down is both families'): MeshprobeNodeDown once per family.
    lab.ok(&["fault", "node-down", "node-4"]);
    prom.wait(
        "dual node-down node-4: MeshprobeNodeDown pending once per family",
        r#"ALERTS{alertname="MeshprobeNodeDown"}"#,
        PHASE,
        |r| r.len() == 2 && families(r) == both && r.iter().all(|s| label(s, "dst") == "node-4"),
    );
    settle_onset();
    for quiet in ["MeshprobeZonePartition", "MeshprobeNodePodNetworkIsolated"] {
        assert!(
            alerts(&prom, quiet).is_empty(),
            "dual node-down: {quiet} must not fire: {:?}",
            alerts(&prom, quiet)
        );
    }
    lab.ok(&["clear"]);
    eprintln!(
        "  dual-stack lab: per-family alerts checked in {:.0}s",
        suite.elapsed().as_secs_f64()
    );
}

/// `diagnose --prometheus` errors without a lab: nobody listening, a server that is no
/// Prometheus. Exit 2, the message naming the URL and the query.
#[test]
fn diagnose_prometheus_errors_exit_2_naming_url_and_query() {
    let port = free_port(ip(1));
    let url = format!("http://127.0.0.1:{port}");
    let (code, _, err) = diagnose(&["--prometheus", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&url)
            && err.contains("\"time() - timestamp(meshprobe_agent_info)\"")
            && err.contains("cannot connect"),
        "{err}"
    );

    // An HTTP server answering HTML.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let body = "<html>login</html>";
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let (code, _, err) = diagnose(&["--prometheus", &url]);
    server.join().unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&url)
            && err.contains("meshprobe_agent_info")
            && err.contains("not a Prometheus API answer"),
        "{err}"
    );

    let (code, _, err) = diagnose(&["--prometheus", "ftp://127.0.0.1:9090"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("expected http://HOST:PORT or https://HOST:PORT"),
        "{err}"
    );
    // A CA file is for HTTPS (tests/prometheus_tls.rs speaks it).
    let (code, _, err) = diagnose(&[
        "--prometheus",
        "http://127.0.0.1:9090",
        "--prometheus-ca",
        "/etc/hostname",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("only for an https://"), "{err}");
}
