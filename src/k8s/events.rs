//! `--publish-events`: the mesh view's findings as Kubernetes Events on the Node (or the
//! target's Pod) concerned, so `kubectl describe node` shows them. Pure planning — which
//! findings become which events, deduplicated and rate-bounded, and which one agent publishes —
//! and a thin loop that posts them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::diagnosis::{Cause, Finding};

/// The same finding on the same object is published again at most this often.
pub const REPEAT_SECS: i64 = 600;
/// At most this many events per minute from one agent.
pub const MAX_PER_MINUTE: u32 = 10;
/// Dedup memory bound.
const MAX_KEYS: usize = 1024;
const MAX_MESSAGE: usize = 1000;
/// How often the publisher looks at the mesh view. A finding is posted once two consecutive
/// looks show it ([`Settle`]): 20–40 s after it appears.
pub const PERIOD: Duration = Duration::from_secs(20);

/// One event to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Namespace the Event lives in (`default` for a Node, the pod's for a Pod).
    pub namespace: String,
    pub kind: &'static str,
    pub name: String,
    pub object_namespace: Option<String>,
    pub reason: String,
    pub message: String,
}

impl Draft {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.kind, self.namespace, self.name, self.reason
        )
    }
}

fn reason(c: Cause) -> String {
    let camel: String = c
        .as_str()
        .split('_')
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("Meshprobe{camel}")
}

/// Findings → events (pure): one per node a finding names; a target finding naming no node
/// goes on the target's pod when the target is a discovered pod (`name.namespace`).
pub fn drafts(findings: &[Finding]) -> Vec<Draft> {
    let mut out = Vec::new();
    for f in findings {
        let message: String = f.summary.chars().take(MAX_MESSAGE).collect();
        for n in &f.nodes {
            out.push(Draft {
                namespace: "default".into(),
                kind: "Node",
                name: n.clone(),
                object_namespace: None,
                reason: reason(f.cause),
                message: message.clone(),
            });
        }
        if f.nodes.is_empty() {
            for t in &f.targets {
                if let Some((pod, ns)) = t.rsplit_once('.') {
                    out.push(Draft {
                        namespace: ns.into(),
                        kind: "Pod",
                        name: pod.into(),
                        object_namespace: Some(ns.into()),
                        reason: reason(f.cause),
                        message: message.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Only what two consecutive looks agree on becomes an event (pure). At a fault's onset the
/// mesh view can read a wrong cause for a second or two (seen in the lab: `vpc node-2,node-3`
/// for 1.5 s before `packet_loss node-2`, 1 of 7 loss onsets); a look that lands on it must
/// not put it on `kubectl describe node` for the next 10 minutes.
#[derive(Debug, Default)]
pub struct Settle {
    previous: HashSet<String>,
}

impl Settle {
    /// The drafts whose object and reason the previous look also had; remembers this look.
    pub fn settled(&mut self, drafts: Vec<Draft>) -> Vec<Draft> {
        let seen: HashSet<String> = drafts.iter().map(Draft::key).take(MAX_KEYS).collect();
        let out = drafts
            .into_iter()
            .filter(|d| self.previous.contains(&d.key()))
            .collect();
        self.previous = seen;
        out
    }
}

/// Dedup and rate bound (pure: the clock comes in).
#[derive(Debug, Default)]
pub struct Limiter {
    last: HashMap<String, i64>,
    minute: i64,
    sent: u32,
}

impl Limiter {
    pub fn admit(&mut self, drafts: Vec<Draft>, now: i64) -> Vec<Draft> {
        if now / 60 != self.minute {
            self.minute = now / 60;
            self.sent = 0;
        }
        // An entry from the "future" (the clock went back) has expired too: else a step back
        // would mute a finding for as long as the step.
        self.last
            .retain(|_, t| (0..REPEAT_SECS).contains(&(now - *t)));
        let mut out = Vec::new();
        for d in drafts {
            let k = d.key();
            if self.last.contains_key(&k)
                || self.sent >= MAX_PER_MINUTE
                || self.last.len() >= MAX_KEYS
            {
                continue;
            }
            self.last.insert(k, now);
            self.sent += 1;
            out.push(d);
        }
        out
    }
}

/// Only one agent publishes, so a finding is not posted once per node: the one with the
/// smallest node name among the peers that are not held and whose agent answers our HTTP
/// probes (pure; every agent reaches the same answer from its own view).
pub fn is_publisher(me: &str, candidates: &[String]) -> bool {
    candidates
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(me))
        .min()
        == Some(me)
}

pub fn to_event(d: &Draft, host: &str, now: k8s_openapi::jiff::Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.meshprobe-", d.name)),
            namespace: Some(d.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some(d.kind.into()),
            name: Some(d.name.clone()),
            namespace: d.object_namespace.clone(),
            ..ObjectReference::default()
        },
        reason: Some(d.reason.clone()),
        message: Some(d.message.clone()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some("meshprobe".into()),
            host: Some(host.into()),
        }),
        reporting_component: Some("meshprobe".into()),
        reporting_instance: Some(host.into()),
        ..Event::default()
    }
}

/// The agent's publishing loop: every [`PERIOD`], if this agent is the publisher, post the
/// mesh view's new findings that the previous look had too (held ones never). Each post is bounded by the client's timeouts
/// and by `timeout` here; failures are logged, never fatal.
pub async fn run(shared: Arc<crate::shared::Shared>, client: Client, timeout: Duration) {
    let mut limiter = Limiter::default();
    let mut settle = Settle::default();
    // The limiter counts monotonic seconds: a wall-clock step changes nothing.
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let results = crate::shared::results_of(&shared);
        let candidates: Vec<String> = results
            .peers
            .iter()
            .filter(|p| !results.discovery.held.iter().any(|h| h.node == p.node))
            .filter(|p| {
                p.layers
                    .get(&crate::model::Layer::Http)
                    .is_some_and(|w| w.reachable == Some(true))
            })
            .map(|p| p.node.clone())
            .collect();
        if !results.ready || !is_publisher(&shared.identity.node, &candidates) {
            // Looks must be consecutive: start again when publishing resumes.
            settle = Settle::default();
            continue;
        }
        let view = crate::shared::mesh_diagnosis(&shared).await;
        let now = started.elapsed().as_secs() as i64;
        let settled = settle.settled(drafts(&view.diagnosis.findings));
        for d in limiter.admit(settled, now) {
            match post(&client, &d, &shared.identity.node, timeout).await {
                Ok(()) => {
                    tracing::info!(object = %d.name, reason = %d.reason, "published a Kubernetes event")
                }
                Err(e) => tracing::warn!(error = %e, "event not published"),
            }
        }
    }
}

/// Post one event, bounded by `timeout`; the error says why (RBAC names the permission).
pub async fn post(client: &Client, d: &Draft, host: &str, timeout: Duration) -> Result<(), String> {
    let api: Api<Event> = Api::namespaced(client.clone(), &d.namespace);
    let ev = to_event(d, host, k8s_openapi::jiff::Timestamp::now());
    match tokio::time::timeout(timeout, api.create(&PostParams::default(), &ev)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(super::explain_client_error(
            &format!("create events in {}", d.namespace),
            &e,
        )),
        Err(_) => Err("the API server did not answer in time".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(cause: Cause, nodes: &[&str], targets: &[&str]) -> Finding {
        Finding {
            cause,
            summary: "s".into(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            pairs: vec![],
            zones: vec![],
            targets: targets.iter().map(|s| s.to_string()).collect(),
            confidence: 0.9,
            evidence: vec![],
            next_steps: vec![],
            family: None,
        }
    }

    #[test]
    fn findings_become_events_on_nodes_or_target_pods() {
        let d = drafts(&[
            finding(Cause::Cni, &["n3"], &[]),
            finding(Cause::Vpc, &["n1", "n2"], &[]),
            finding(Cause::Policy, &[], &["web-1.shop"]),
            finding(Cause::Application, &[], &["from-a-peers-file"]),
        ]);
        let got: Vec<(&str, &str, &str, &str)> = d
            .iter()
            .map(|d| {
                (
                    d.kind,
                    d.namespace.as_str(),
                    d.name.as_str(),
                    d.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Node", "default", "n3", "MeshprobeCni"),
                ("Node", "default", "n1", "MeshprobeVpc"),
                ("Node", "default", "n2", "MeshprobeVpc"),
                ("Pod", "shop", "web-1", "MeshprobePolicy"),
            ]
        );
        assert_eq!(reason(Cause::PacketLoss), "MeshprobePacketLoss");
        assert_eq!(reason(Cause::NodeDown), "MeshprobeNodeDown");
    }

    #[test]
    fn deduplicated_and_rate_bounded() {
        let mut l = Limiter::default();
        let one = drafts(&[finding(Cause::Cni, &["n3"], &[])]);
        assert_eq!(l.admit(one.clone(), 1000).len(), 1);
        assert_eq!(
            l.admit(one.clone(), 1060).len(),
            0,
            "same finding, too soon"
        );
        assert_eq!(
            l.admit(one.clone(), 1000 + REPEAT_SECS).len(),
            1,
            "repeated after the period"
        );
        let many: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let burst = drafts(&[finding(Cause::NodeDown, &refs, &[])]);
        assert_eq!(l.admit(burst.clone(), 5000).len(), MAX_PER_MINUTE as usize);
        assert_eq!(l.admit(burst.clone(), 5030).len(), 0, "same minute");
        assert_eq!(
            l.admit(burst, 5060).len(),
            MAX_PER_MINUTE as usize,
            "next minute, the rest"
        );
    }

    #[test]
    fn a_stepped_clock_neither_mutes_nor_floods() {
        let one = || drafts(&[finding(Cause::Cni, &["n3"], &[])]);
        // (step after the first post, posted again at once?)
        for (step, again) in [
            (0, false),
            (60, false),
            (3_600, true),
            (-3_600, true),
            (-60, true),
        ] {
            let mut l = Limiter::default();
            assert_eq!(l.admit(one(), 100_000).len(), 1);
            assert_eq!(
                l.admit(one(), 100_000 + step).len(),
                usize::from(again),
                "step {step}"
            );
            // Then the usual period applies from the new clock: not again within REPEAT_SECS.
            assert_eq!(l.admit(one(), 100_000 + step + 1).len(), 0, "step {step}");
        }
        let many: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let burst = drafts(&[finding(Cause::NodeDown, &refs, &[])]);
        let mut l = Limiter::default();
        assert_eq!(
            l.admit(burst.clone(), 100_000).len(),
            MAX_PER_MINUTE as usize
        );
        // Stepping back starts a new minute: one more budget, not unbounded.
        assert_eq!(
            l.admit(burst.clone(), 96_400).len(),
            MAX_PER_MINUTE as usize
        );
        assert_eq!(l.admit(burst, 96_401).len(), 0);
    }

    #[test]
    fn one_publisher() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_publisher("a", &c(&["b", "c"])));
        assert!(!is_publisher("b", &c(&["a", "c"])));
        assert!(
            is_publisher("b", &c(&["c"])),
            "a is down or held: b publishes"
        );
        assert!(is_publisher("a", &[]));
    }

    #[test]
    fn event_object() {
        let d = &drafts(&[finding(Cause::Cni, &["n3"], &[])])[0];
        let e = to_event(
            d,
            "n1",
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["involvedObject"]["kind"], "Node");
        assert_eq!(v["involvedObject"]["name"], "n3");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["source"]["host"], "n1");
        assert_eq!(v["reportingComponent"], "meshprobe");
    }
    #[test]
    fn only_what_two_consecutive_looks_agree_on_is_posted() {
        let cni2 = finding(Cause::Cni, &["node-2"], &[]);
        let vpc23 = finding(Cause::Vpc, &["node-2", "node-3"], &[]);
        let loss2 = finding(Cause::PacketLoss, &["node-2"], &[]);
        let names = |ds: &[Draft]| -> Vec<String> {
            ds.iter()
                .map(|d| format!("{} {}", d.name, d.reason))
                .collect()
        };
        let mut s = Settle::default();
        // (this look's findings, what is posted)
        let table: Vec<(Vec<Finding>, Vec<&str>)> = vec![
            (vec![vpc23.clone()], vec![]),
            // The onset's transient is gone; the real finding is seen once.
            (vec![loss2.clone()], vec![]),
            (vec![loss2.clone()], vec!["node-2 MeshprobePacketLoss"]),
            // A second finding joins: posted from its second look on; the first stays.
            (
                vec![loss2.clone(), cni2.clone()],
                vec!["node-2 MeshprobePacketLoss"],
            ),
            (
                vec![loss2.clone(), cni2.clone()],
                vec!["node-2 MeshprobePacketLoss", "node-2 MeshprobeCni"],
            ),
            // A gap of one look: the finding starts over.
            (vec![], vec![]),
            (vec![cni2.clone()], vec![]),
            (vec![cni2], vec!["node-2 MeshprobeCni"]),
        ];
        for (i, (findings, want)) in table.into_iter().enumerate() {
            assert_eq!(names(&s.settled(drafts(&findings))), want, "look {i}");
        }
    }
}
