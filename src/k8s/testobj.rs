//! Typed Kubernetes objects for the unit tables, built from the JSON the API serves.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

pub fn node(name: &str, ip: &str, zone: Option<&str>, ready: bool, cordoned: bool) -> Node {
    let mut labels = json!({"kubernetes.io/hostname": name});
    if let Some(z) = zone {
        labels[super::peers::ZONE_LABEL] = json!(z);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": cordoned},
        "status": {
            "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}],
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"Unknown"}}]
        }
    }))
    .unwrap()
}

pub fn pod(name: &str, node: &str, ip: Option<&str>, phase: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app.kubernetes.io/name": "meshprobe"}},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]
        }
    }))
    .unwrap()
}

pub fn ready_since(p: &mut Pod, unix: i64) {
    for c in p
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .iter_mut()
    {
        c.last_transition_time = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(unix).unwrap(),
        ));
    }
}

pub fn annotate(p: &mut Pod, spec: &str) {
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(super::targets::PROBE_ANNOTATION.into(), spec.into());
}
