//! The alert rules, their PrometheusRule twin, their runbooks and the Grafana dashboards.
//!
//! Static part (any user): the PrometheusRule holds exactly the rules of
//! deploy/prometheus/meshprobe-rules.yaml; every alert has a severity, a `for:`, templated
//! summary/description and a runbook that exists; `promtool check rules` and `promtool test
//! rules` pass (skipped with a message when promtool is missing).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value as Yaml;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const RULES: &str = "deploy/prometheus/meshprobe-rules.yaml";
const RULE_TESTS: &str = "deploy/prometheus/meshprobe-rules.test.yaml";
const PROMETHEUS_RULE: &str = "deploy/base/prometheusrule.yaml";

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
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
fn every_alert_has_severity_for_templated_text_and_an_existing_runbook() {
    let alerts: Vec<Yaml> = rules()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.get("alert").is_some())
        .collect();
    assert!(alerts.len() >= 8, "{} alerts", alerts.len());
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
        let url = a["annotations"]["runbook_url"].as_str().unwrap();
        assert!(url.starts_with("docs/runbooks/"), "{name}: {url}");
        let page = std::fs::read_to_string(root().join(url))
            .unwrap_or_else(|e| panic!("{name}: runbook {url}: {e}"));
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
    if !have("promtool") {
        eprintln!("skipping: promtool not installed (Debian package prometheus; tests/run.sh installs it as root)");
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
    let committed = std::fs::read_to_string(root().join(RULE_TESTS)).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "{RULE_TESTS} is stale: python3 tests/prometheus/gen_rule_tests.py > {RULE_TESTS}"
    );
}
