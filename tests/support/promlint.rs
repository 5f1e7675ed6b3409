//! `promtool check metrics` (Debian's `prometheus`, 2.42 here) over a real scrape, less the one
//! finding an OpenMetrics exposition cannot avoid.
//!
//! promtool lints the classic text format, where a counter's samples carry its family's name.
//! OpenMetrics names the family `X` (`# HELP X`, `# TYPE X counter`) and its samples `X_total`,
//! so promtool reads `X_total` as a family of its own and reports `X_total no help text`. That
//! line, for exactly the counters the scrape declares with help, is tolerated; every other line
//! promtool prints is a finding.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use super::sys::have_or_skip;

/// promtool's findings on `scrape` other than the tolerated ones; `None` (after saying so)
/// when promtool is not installed. Panics if promtool cannot parse the scrape.
pub fn promtool_findings(scrape: &str) -> Option<Vec<String>> {
    if !have_or_skip("promtool", "prometheus") {
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    // promtool reads all of its input before it writes: no pipe can fill up while we write.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .expect("write the scrape to promtool");
    let out = child.wait_with_output().expect("promtool's answer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // 0: nothing to report; 3: lint findings; anything else (1: unparsable input) fails here.
    match out.status.code() {
        Some(0) => assert!(lines.is_empty(), "promtool exit 0 but: {text}"),
        Some(3) => assert!(!lines.is_empty(), "promtool exit 3, silent"),
        other => panic!("promtool check metrics: exit {other:?}: {text}"),
    }
    let counters = counters_with_help(scrape);
    Some(
        lines
            .into_iter()
            .filter(|l| {
                !l.strip_suffix(" no help text")
                    .and_then(|n| n.strip_suffix("_total"))
                    .is_some_and(|family| counters.contains(family))
            })
            .map(str::to_string)
            .collect(),
    )
}

/// The counter families the scrape declares with both `# TYPE X counter` and `# HELP X …`.
fn counters_with_help(scrape: &str) -> BTreeSet<&str> {
    let typed: BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next())
        .filter(|name| typed.contains(name))
        .collect()
}
