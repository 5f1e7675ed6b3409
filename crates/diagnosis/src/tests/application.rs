//! Stage 4, targets and agents' HTTP: policy, application and a pod's CNI, with Kubernetes facts.

use super::helpers::*;
use super::scenarios::*;
use crate::input::*;
use crate::report::Cause;

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

/// Fixtures `tests/fixtures/onset/policy-after-loss*.json`: a NetworkPolicy drop right after a
/// cleared loss fault. The loss's lost echoes still in the window are no excuse for
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

/// A node that drops new connections (`conntrack`): every TCP endpoint on it — its agent and
/// its target — drops them while answering ICMP, the other agents accept them. Not a
/// NetworkPolicy (which selects pods, not a node): one `conntrack` finding at the node. Its
/// look-alikes stay what they were: one target dropping (`policy`), the agents of every node
/// dropping (a policy on the agents), one agent alone (no target to tell the node from it).
#[test]
fn a_node_dropping_every_new_connection_is_conntrack() {
    let conntrack = || {
        vec![Expect {
            targets: &["web-node-2"],
            ..ex(Cause::Conntrack, &["node-2"])
        }]
    };
    let agents_everywhere = |m: &mut Mesh| {
        for s in 1..=N {
            for d in 1..=N {
                if s != d {
                    m.p(s, d, &["http"], timeout());
                }
            }
        }
        policy_web2(m);
    };
    let agent_2_only = |m: &mut Mesh| {
        for s in [1, 3, 4] {
            m.p(s, 2, &["http"], timeout());
        }
    };
    let cases: Vec<(&str, Scenario, Vec<Expect>)> = vec![
        (
            "conntrack node-2, its agent silent",
            conntrack_node2,
            conntrack(),
        ),
        (
            "conntrack node-2, its agent reporting",
            conntrack_node2_reporting,
            conntrack(),
        ),
        (
            "policy on web-node-2",
            policy_web2,
            vec![Expect {
                targets: &["web-node-2"],
                ..ex(Cause::Policy, &["node-2"])
            }],
        ),
        (
            "node-2's agent alone",
            agent_2_only,
            vec![ex(Cause::Policy, &["node-2"])],
        ),
    ];
    for (label, scenario, want) in cases {
        let d = Mesh::new().tap(scenario).diagnose();
        check(label, &d, &want);
        if label.starts_with("conntrack") {
            let f = &d.findings[0];
            assert!(
                f.evidence
                    .iter()
                    .any(|e| e.contains("NetworkPolicy selects pods")),
                "{label}: {}",
                d.to_text()
            );
            assert!(
                f.next_steps
                    .iter()
                    .any(|s| s.contains("nf_conntrack_count")),
                "{label}: {}",
                d.to_text()
            );
        }
    }
    let d = Mesh::new().tap(agents_everywhere).diagnose();
    assert!(
        d.findings.iter().all(|f| f.cause != Cause::Conntrack),
        "every agent dropping: {}",
        d.to_text()
    );
}
