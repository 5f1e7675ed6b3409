//! The report: the JSON schema and the text rendering.

use std::collections::BTreeSet;

use super::helpers::*;
use super::scenarios::*;
use crate::report::{Cause, Diagnosis};

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
