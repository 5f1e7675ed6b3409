//! A short reachability summary of an agent's `/api/v1/results` JSON (pure).

use serde_json::Value;

/// Describe a `last_error` object: `net_unreachable from 198.19.1.1`, `http_status 503`, ….
pub fn describe_error(e: &Value) -> String {
    let kind = e["kind"].as_str().unwrap_or("error");
    let mut s = kind.to_string();
    if let Some(from) = e["from"].as_str() {
        s.push_str(&format!(" from {from}"));
    }
    if let Some(mtu) = e["mtu"].as_u64() {
        s.push_str(&format!(" mtu {mtu}"));
    }
    if let Some(code) = e["code"].as_u64() {
        s.push_str(&format!(" {code}"));
    }
    if let Some(detail) = e["detail"].as_str() {
        s.push_str(&format!(" ({detail})"));
    }
    s
}

/// A destination's layers with the family they belong to: its top-level figures (family named
/// only on a destination probed at two) and each other family's (`families`).
fn layer_sets(d: &Value) -> Vec<(Option<&str>, &serde_json::Map<String, Value>)> {
    let mut out: Vec<_> = d["layers"]
        .as_object()
        .map(|l| (d["family"].as_str(), l))
        .into_iter()
        .collect();
    for (f, v) in d["families"].as_object().into_iter().flatten() {
        out.extend(v["layers"].as_object().map(|l| (Some(f.as_str()), l)));
    }
    out
}

/// Every (destination, layer) whose last probe failed: `→ node-3 icmp_pod: net_unreachable from …`
/// (`→ node-3 icmp_pod ipv6: …` on a destination probed at two families).
pub fn failing(results: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (list, key) in [("peers", "node"), ("targets", "name")] {
        for d in results[list].as_array().into_iter().flatten() {
            let name = d[key].as_str().unwrap_or("?");
            for (family, layers) in layer_sets(d) {
                for (layer, l) in layers {
                    if l["reachable"] != Value::Bool(false) {
                        continue;
                    }
                    let layer = match family {
                        Some(f) => format!("{layer} {f}"),
                        None => layer.clone(),
                    };
                    let err = if l["last_error"].is_null() {
                        "failed".to_string()
                    } else {
                        describe_error(&l["last_error"])
                    };
                    out.push(format!("→ {name} {layer}: {err}"));
                }
            }
        }
    }
    // The agent's own checks (`dns`, `service`) through the lab's Services.
    for (kind, c) in results["checks"].as_object().into_iter().flatten() {
        if c["reachable"] == Value::Bool(false) {
            let target = c["target"].as_str().unwrap_or("?");
            let err = if c["last_error"].is_null() {
                "failed".to_string()
            } else {
                describe_error(&c["last_error"])
            };
            out.push(format!("✗ {kind} check {target}: {err}"));
        }
    }
    out
}

/// `ready, 12 rounds: 16/18 checks ok` or the error.
pub fn one_line(results: &Value) -> String {
    if let Some(e) = results["error"].as_str() {
        return format!("not answering: {e}");
    }
    let mut total = 0;
    let mut ok = 0;
    for list in ["peers", "targets"] {
        for d in results[list].as_array().into_iter().flatten() {
            for (_, layers) in layer_sets(d) {
                for l in layers.values() {
                    total += 1;
                    if l["reachable"] == Value::Bool(true) {
                        ok += 1;
                    }
                }
            }
        }
    }
    format!(
        "{}, {} rounds: {ok}/{total} checks ok",
        if results["ready"] == Value::Bool(true) {
            "ready"
        } else {
            "not ready"
        },
        results["rounds"].as_u64().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_results() {
        let v = serde_json::json!({
            "node": "node-1", "ready": true, "rounds": 7,
            "peers": [{"node": "node-3", "layers": {
                "icmp_pod": {"reachable": false, "last_error": {"kind": "net_unreachable", "from": "198.19.1.1"}},
                "icmp_node": {"reachable": true, "last_error": null},
                "http": {"reachable": false, "last_error": {"kind": "timeout"}}}}],
            "targets": [{"name": "web-node-2", "layers": {
                "http": {"reachable": false, "last_error": {"kind": "http_status", "code": 503}},
                "icmp_pod": {"reachable": null, "last_error": null}}}]
        });
        assert_eq!(one_line(&v), "ready, 7 rounds: 1/5 checks ok");
        assert_eq!(
            failing(&v),
            [
                "→ node-3 http: timeout",
                "→ node-3 icmp_pod: net_unreachable from 198.19.1.1",
                "→ web-node-2 http: http_status 503",
            ]
        );
        assert!(one_line(&serde_json::json!({"error": "refused"})).contains("refused"));
    }

    #[test]
    fn a_failing_check_is_named_after_the_pairs() {
        let v = serde_json::json!({
            "node": "node-2", "ready": true, "rounds": 3,
            "peers": [{"node": "node-3", "layers": {"http": {"reachable": true}}}],
            "checks": {
                "dns": {"target": "meshprobe.meshprobe.svc.cluster.local.", "reachable": false,
                        "last_error": {"kind": "timeout", "detail": "request timed out", "age_seconds": 0.1}},
                "service": {"target": "198.18.96.20:9464", "reachable": true, "last_error": null}}
        });
        assert_eq!(
            failing(&v),
            ["✗ dns check meshprobe.meshprobe.svc.cluster.local.: timeout (request timed out)"]
        );
        assert_eq!(one_line(&v), "ready, 3 rounds: 1/1 checks ok");
    }

    #[test]
    fn a_dual_stack_destination_counts_and_names_each_family() {
        let v = serde_json::json!({
            "node": "node-1", "ready": true, "rounds": 3,
            "peers": [{"node": "node-3", "family": "ipv4", "layers": {
                "icmp_pod": {"reachable": true}, "http": {"reachable": true}},
              "families": {"ipv6": {"ip": "fd00::3", "layers": {
                "icmp_pod": {"reachable": false, "last_error": {"kind": "net_unreachable", "from": "fd00:198:19:1::1"}},
                "http": {"reachable": true}}}}}]
        });
        assert_eq!(one_line(&v), "ready, 3 rounds: 3/4 checks ok");
        assert_eq!(
            failing(&v),
            ["→ node-3 icmp_pod ipv6: net_unreachable from fd00:198:19:1::1"]
        );
    }
}
