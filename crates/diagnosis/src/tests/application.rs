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
