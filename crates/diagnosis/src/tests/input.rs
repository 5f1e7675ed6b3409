//! Agents' documents to the matrix: parsing, in-memory conversions, odd inputs.

use crate::diagnose;
use crate::input::*;
use crate::matrix::Matrix;
use meshprobe_core::model::Layer;

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
    // No fact names the owner of 198.19.3.1 (the document publishes no pod CIDRs): unknown,
    // not "node-3, whose pod IP is in the same /24".
    assert_eq!(m.owner_of("198.19.3.1".parse().unwrap(), 0), None);
    assert_eq!(
        m.owner_of("198.19.3.10".parse().unwrap(), 0)
            .map(|(i, _)| m.nodes[i].name.as_str()),
        Some("node-3")
    );
    let h = m.peer_cell("node-1", "node-2", Layer::Http).unwrap();
    assert_eq!(h.last_error.as_ref().unwrap().code, Some(503));
    assert_eq!(h.success_ratio, Some(0.7));
    let p2 = m
        .pairs
        .iter()
        .find(|p| m.nodes[p.src].name == "node-1" && p.dst == crate::matrix::Dest::Node(1))
        .unwrap();
    assert_eq!(p2.path_mtu, Some(1400));
    assert_eq!(p2.mtu_state, Some(MtuState::Mismatch));
    assert_eq!(p2.other_errors.len(), 1, "unknown layer kept as evidence");
    let p3 = m
        .pairs
        .iter()
        .find(|p| p.dst == crate::matrix::Dest::Node(2))
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
    // No fact places db (198.19.3.12, next to node-3's pod IP): unknown, located as itself.
    assert_eq!(m.targets[m.target_index("db").unwrap()].node, None);
    // The same document with the facts the agent publishes: node-3's pod CIDR places db and
    // names the gateway; web-node-2's node is stated.
    let mut v: serde_json::Value = serde_json::from_str(RESULTS_DOC).unwrap();
    v["owners"] = serde_json::json!({
        "nodes": [{"name": "node-3", "pod_ip": "198.19.3.10", "pod_cidrs": ["198.19.3.0/26", "bad"]}],
        "targets": [{"name": "web-node-2", "ip": "198.19.2.11", "node": "node-2"}]
    });
    let mf = Matrix::from_json_documents(&[v.to_string()]).unwrap();
    let placed = |m: &Matrix, t: &str| {
        m.targets[m.target_index(t).unwrap()]
            .node
            .map(|n| m.nodes[n].name.clone())
    };
    assert_eq!(placed(&mf, "db").as_deref(), Some("node-3"));
    assert_eq!(placed(&mf, "web-node-2").as_deref(), Some("node-2"));
    assert_eq!(placed(&m, "web-node-2"), None);
    assert_eq!(
        mf.owner_of("198.19.3.1".parse().unwrap(), 0),
        Some((
            mf.node_index("node-3").unwrap(),
            crate::matrix::IpRole::PodCidr
        ))
    );
    assert_eq!(mf.owner_of("198.19.3.64".parse().unwrap(), 0), None);
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
