//! The per-source checks (`service`, `dns`): the layers above the pod network. Read after the
//! network engine, on every family's findings together (each agent runs its checks once, in
//! its primary family, so their findings name no family).
//!
//! A check that fails from a node whose agent still reaches the other agents by pod IP is the
//! fault of the layer it checks: the node's Service rules (kube-proxy) for `service`, the
//! cluster DNS or the path to it for `dns`. A check that fails where the pod network does not
//! answer, or where a network finding already stands, is that fault's and adds nothing.
//!
//! The API server's checks: through its ClusterIP (`apiserver`, [`apiserver_vip`]) it is one
//! more Service check (a node's kube-proxy rules gone fail it too), at its endpoints
//! (`apiserver_endpoints`, [`apiserver_endpoints`]) it tells whether the node reaches the
//! control plane at all.

use std::collections::{BTreeMap, BTreeSet};

use crate::input::{AgentReport, CheckStats, Inputs};
use crate::report::{Cause, Diagnosis, Finding};
use crate::Params;

/// A source's pod network answers when at least this share of its peer probes (HTTP to the
/// other agents, else ICMP to their pod IPs) succeeded last time. Below it, or with no peers,
/// a failing check is not told apart from the pod network's own trouble.
const POD_NET_OK: f64 = 0.75;

/// While some fault stands or sets in (any finding, or any probe failing now), a check is down
/// only when at most this share of its window succeeded: loss, or a VIP drawing a dead backend
/// now and then, fails single runs.
const DOWN_RATIO_IN_FAULT: f64 = 0.5;

/// The causes that break a node's pod network (a check failing behind them is theirs).
const NETWORK: [Cause; 5] = [
    Cause::NodeDown,
    Cause::Cni,
    Cause::Routing,
    Cause::Vpc,
    Cause::Conntrack,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Down,
    Unknown,
}

/// One check's verdict at one source: down after `min_consecutive_failures` failed runs in a
/// row (and, while another fault stands, a window mostly failed); a stale check is unknown.
fn verdict(c: &CheckStats, a: &AgentReport, in_fault: bool, p: &Params) -> Verdict {
    if let (Some(age), Some(w)) = (c.last_probe_age_seconds, a.window_seconds) {
        if age > 2.0 * w + a.interval_seconds.unwrap_or(0.0) {
            return Verdict::Unknown;
        }
    }
    match c.reachable {
        Some(true) => Verdict::Ok,
        Some(false)
            if c.consecutive_failures >= p.min_consecutive_failures
                && (!in_fault || c.success_ratio.is_none_or(|r| r <= DOWN_RATIO_IN_FAULT)) =>
        {
            Verdict::Down
        }
        _ => Verdict::Unknown,
    }
}

/// The source's peer probes that answered last time, of those known: HTTP to the agents (the
/// `service` check's backends), else ICMP to their pod IPs.
fn pod_net(a: &AgentReport) -> (usize, usize) {
    let (mut ok, mut known) = (0, 0);
    for peer in &a.peers {
        let l = peer
            .layers
            .get("http")
            .or_else(|| peer.layers.get("icmp_pod"));
        if let Some(r) = l.and_then(|l| l.reachable) {
            known += 1;
            ok += usize::from(r);
        }
    }
    (ok, known)
}

/// One source's reading of the checks.
struct Source<'a> {
    node: &'a str,
    zone: Option<&'a str>,
    /// The agent's probe interval (the checks run once per round).
    interval: f64,
    /// Peer probes answered / known.
    pod_net: (usize, usize),
    /// Per peer probe (as `pod_net` counts them), its last error's age, if any.
    peer_error_ages: Vec<Option<f64>>,
    checks: BTreeMap<&'a str, (Verdict, &'a CheckStats)>,
}

impl Source<'_> {
    fn pod_net_ok(&self) -> bool {
        let (ok, known) = self.pod_net;
        known > 0 && ok as f64 >= POD_NET_OK * known as f64
    }

    /// The pod network answered throughout `kind`'s failure streak: at most half of the peer
    /// probes failed since it began. Right after a `cni` fault clears, the peers answer again
    /// while the check's failures from during the fault still stand (it read as `service`).
    fn pod_net_ok_during(&self, kind: &str) -> bool {
        let Some(streak) = streak_age(self, kind) else {
            return self.pod_net_ok();
        };
        let troubled = self
            .peer_error_ages
            .iter()
            .filter(|age| age.is_some_and(|a| a <= streak))
            .count();
        self.pod_net_ok() && 2 * troubled <= self.peer_error_ages.len()
    }

    fn verdict(&self, kind: &str) -> Verdict {
        self.checks.get(kind).map_or(Verdict::Unknown, |(v, _)| *v)
    }
}

/// `d` with the checks' findings added.
pub fn with_checks(inp: &Inputs, d: Diagnosis, p: &Params) -> Diagnosis {
    let mut findings = d.findings;
    let extra = check_findings(inp, &findings, p);
    if extra.is_empty() {
        return Diagnosis::new(findings);
    }
    findings.extend(extra);
    crate::engine::sort_findings(&mut findings);
    Diagnosis::new(findings)
}

/// The `service` and `dns` findings of `inp`'s checks, given the findings already made.
pub fn check_findings(inp: &Inputs, found: &[Finding], p: &Params) -> Vec<Finding> {
    // A fault stands, or may be setting in: a finding, or any probe failing now (at a fault's
    // onset its finding waits while a VIP already draws the broken backend now and then).
    let in_fault = !found.is_empty()
        || inp.agents.iter().any(|a| {
            let peers = a.peers.iter().flat_map(|p| p.layers.values());
            let targets = a.targets.iter().flat_map(|t| t.layers.values());
            peers.chain(targets).any(|l| l.reachable == Some(false))
        });
    let sources: Vec<Source> = inp
        .agents
        .iter()
        .filter(|a| a.ready != Some(false) && a.rounds.is_none_or(|r| r >= p.min_rounds))
        .filter(|a| !a.checks.is_empty())
        .map(|a| Source {
            node: &a.node,
            zone: a.zone.as_deref(),
            interval: a.interval_seconds.unwrap_or(0.0),
            pod_net: pod_net(a),
            peer_error_ages: a
                .peers
                .iter()
                .filter_map(|p| p.layers.get("http").or_else(|| p.layers.get("icmp_pod")))
                .filter(|l| l.reachable.is_some())
                .map(|l| l.last_error_age_seconds)
                .collect(),
            checks: a
                .checks
                .iter()
                .map(|(k, c)| (k.as_str(), (verdict(c, a, in_fault, p), c)))
                .collect(),
        })
        .collect();
    // A source a network finding names: its node, its zone, or either end of a pair.
    let implicated = |s: &Source| {
        found
            .iter()
            .filter(|f| NETWORK.contains(&f.cause))
            .any(|f| {
                f.nodes.iter().any(|n| n == s.node)
                    || s.zone.is_some_and(|z| f.zones.iter().any(|x| x == z))
                    || f.pairs.iter().any(|[a, b]| a == s.node || b == s.node)
            })
    };
    let network_fault = found.iter().any(|f| NETWORK.contains(&f.cause));
    let mut out = Vec::new();
    let mut service_nodes: BTreeSet<&str> = BTreeSet::new();
    // `apiserver` between the two: its ClusterIP is one more Service, and a node whose Service
    // rules it finds broken has its DNS failure folded in as `service`'s is.
    for kind in ["service", "apiserver", "dns"] {
        if kind == "apiserver" {
            service_nodes.extend(apiserver_vip(&sources, &implicated, &mut out));
            continue;
        }
        let (down, known) = down_and_known(&sources, kind);
        if down.is_empty() {
            continue;
        }
        // Most sources fail: the layer itself, unless a network fault could be behind it
        // (where the Service's or the DNS' pods run is not known here).
        if down.len() >= 2 && 2 * down.len() > known.len() {
            let usable: Vec<&Source> = down
                .iter()
                .copied()
                .filter(|s| s.pod_net_ok_during(kind) && !implicated(s))
                .collect();
            if network_fault || 2 * usable.len() <= down.len() {
                continue;
            }
            out.push(cluster_wide(kind, &down, &known));
            if kind == "service" {
                service_nodes.extend(down.iter().map(|s| s.node));
            }
            continue;
        }
        // Some nodes only: only against a source that answered since (else wait a round).
        if !known.iter().any(|s| s.verdict(kind) == Verdict::Ok) {
            continue;
        }
        let mut own: Vec<&Source> = down
            .iter()
            .copied()
            .filter(|s| s.pod_net_ok_during(kind) && !implicated(s))
            .collect();
        // `dns` at a node whose Service rules fail: the DNS is behind a ClusterIP too.
        if kind == "dns" {
            own.retain(|s| !service_nodes.contains(s.node));
        }
        if own.is_empty() {
            continue;
        }
        if kind == "service" {
            service_nodes.extend(own.iter().map(|s| s.node));
        }
        out.push(per_node(kind, &own, &known));
    }
    apiserver_endpoints(&sources, &implicated, network_fault, &mut out);
    out
}

/// The sources down on `kind`, and those that count as its contrast (down, or answering and
/// fresh: see [`fresh_contrast`]).
fn down_and_known<'a, 'b>(
    sources: &'b [Source<'a>],
    kind: &str,
) -> (Vec<&'b Source<'a>>, Vec<&'b Source<'a>>) {
    let down: Vec<&Source> = sources
        .iter()
        .filter(|s| s.verdict(kind) == Verdict::Down)
        .collect();
    let onset = down
        .iter()
        .filter_map(|s| streak_age(s, kind))
        .fold(0.0, f64::max);
    let known = sources
        .iter()
        .filter(|s| match s.verdict(kind) {
            Verdict::Down => true,
            Verdict::Ok => fresh_contrast(s, kind, onset),
            Verdict::Unknown => false,
        })
        .collect();
    (down, known)
}

/// `apiserver_endpoints` down at some nodes whose pod network answers while others reach it:
/// `apiserver` at those nodes — the path between them and the control plane (a firewall, a
/// security group, a route), since the pod network and the other nodes' paths work. Down from
/// most nodes while the pod network answers: `apiserver` without nodes (the API server not
/// ready, or unreachable from the whole pod network), unless a network fault stands.
fn apiserver_endpoints(
    sources: &[Source],
    implicated: &dyn Fn(&Source) -> bool,
    network_fault: bool,
    out: &mut Vec<Finding>,
) {
    let kind = "apiserver_endpoints";
    let (down, known) = down_and_known(sources, kind);
    if down.len() >= 2 && 2 * down.len() > known.len() {
        let usable = down
            .iter()
            .filter(|s| s.pod_net_ok_during(kind) && !implicated(s))
            .count();
        if !network_fault && 2 * usable > down.len() {
            out.push(cluster_wide(kind, &down, &known));
        }
    } else if known.iter().any(|s| s.verdict(kind) == Verdict::Ok) {
        let own: Vec<&Source> = down
            .iter()
            .copied()
            .filter(|s| s.pod_net_ok_during(kind) && !implicated(s))
            .collect();
        if !own.is_empty() {
            out.push(per_node(kind, &own, &known));
        }
    }
}

/// `apiserver` (through the ClusterIP) down at nodes whose pod network answers and where the
/// API server is not down at its endpoints (then the path to it is at fault, not the rules:
/// [`apiserver_endpoints`]), while other nodes reach it: those nodes' Service rules. A
/// `service` finding at the node already says so (the API server's failure joins its evidence:
/// one fault); else a `service` finding of its own. Returns the nodes it names.
fn apiserver_vip<'a>(
    sources: &[Source<'a>],
    implicated: &dyn Fn(&Source) -> bool,
    out: &mut Vec<Finding>,
) -> Vec<&'a str> {
    let kind = "apiserver";
    let (down, known) = down_and_known(sources, kind);
    // Most nodes failing: the `kubernetes` Service everywhere, or the API server itself (the
    // endpoints' finding) — not a node's rules.
    if (down.len() >= 2 && 2 * down.len() > known.len())
        || !known.iter().any(|s| s.verdict(kind) == Verdict::Ok)
    {
        return Vec::new();
    }
    let mut own = Vec::new();
    let mut named = Vec::new();
    for s in down {
        if !s.pod_net_ok_during(kind)
            || implicated(s)
            || s.verdict("apiserver_endpoints") == Verdict::Down
        {
            continue;
        }
        named.push(s.node);
        let at_node = |f: &Finding| {
            f.cause == Cause::Service
                && (f.nodes.iter().any(|n| n == s.node)
                    || s.zone.is_some_and(|z| f.zones.iter().any(|x| x == z)))
        };
        match out.iter_mut().find(|f| at_node(f)) {
            Some(f) => {
                f.evidence.push(format!(
                    "the `apiserver` check ({}) {} too",
                    describe(kind, &target_of(&[s], kind)),
                    failure_text(s, kind)
                ));
                f.evidence.extend(endpoints_answer(s));
            }
            None => own.push(s),
        }
    }
    if !own.is_empty() {
        out.push(per_node(kind, &own, &known));
    }
    named
}

/// "resolving NAME fails from node-3 too", when its `dns` check is down: the DNS server is a
/// ClusterIP as well, so it fails with the node's Service rules.
fn dns_too(s: &Source) -> Option<String> {
    (s.verdict("dns") == Verdict::Down).then(|| {
        let name = check_of(s, "dns").map_or("?", |c| c.target.as_str());
        format!(
            "resolving {name} fails from {} too: the cluster DNS is reached through a ClusterIP as well",
            s.node
        )
    })
}

/// "the API server answers at its endpoints (…) from node-3", when its check says so.
fn endpoints_answer(s: &Source) -> Option<String> {
    let c = check_of(s, "apiserver_endpoints")?;
    (s.verdict("apiserver_endpoints") == Verdict::Ok).then(|| {
        format!(
            "the API server answers at its endpoints ({}) from {}: the node reaches it, its ClusterIP's rules do not",
            c.target, s.node
        )
    })
}

/// How long ago the source's failure streak began: its first failed run, `consecutive_failures
/// - 1` rounds before the last.
fn streak_age(s: &Source, kind: &str) -> Option<f64> {
    let c = check_of(s, kind)?;
    let last = c.last_probe_age_seconds?;
    Some(last + f64::from(c.consecutive_failures.saturating_sub(1)) * s.interval)
}

/// An answering source contrasts failures that began `onset` s ago only if it ran since and
/// has not failed since: at a fault's onset the others have not run yet, and right after it
/// clears the first to recover are no contrast for those not re-run (they read as "fails from
/// node-1 and node-4 only" for a round).
fn fresh_contrast(s: &Source, kind: &str, onset: f64) -> bool {
    let Some(c) = check_of(s, kind) else {
        return false;
    };
    let ran_since = c.last_probe_age_seconds.is_none_or(|age| age < onset);
    let failed_since = c
        .last_error
        .as_ref()
        .and_then(|e| e.age_seconds)
        .is_some_and(|age| age <= onset);
    ran_since && !failed_since
}

fn check_of<'a>(s: &Source<'a>, kind: &str) -> Option<&'a CheckStats> {
    s.checks.get(kind).map(|(_, c)| *c)
}

/// "failed on node-3's last 3 runs (timeout, 0.4 s ago)".
fn failure_text(s: &Source, kind: &str) -> String {
    let Some(c) = check_of(s, kind) else {
        return format!("failed on {}", s.node);
    };
    let err = c.last_error.as_ref().map_or(String::new(), |e| {
        let age = e
            .age_seconds
            .map_or(String::new(), |a| format!(", {a:.1} s ago"));
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", e.detail)
        };
        format!(" ({}{detail}{age})", e.kind)
    });
    format!(
        "failed on {}'s last {} runs{err}",
        s.node, c.consecutive_failures
    )
}

fn target_of(sources: &[&Source], kind: &str) -> String {
    sources
        .iter()
        .find_map(|s| check_of(s, kind).map(|c| c.target.clone()))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The zone every one of `nodes` is in, when they are all of its reporting sources and some
/// other zone's sources succeed.
fn whole_zone<'a>(nodes: &[&Source<'a>], known: &[&Source<'a>], kind: &str) -> Option<&'a str> {
    let z = nodes.first()?.zone?;
    let all_of_zone = known
        .iter()
        .filter(|s| s.zone == Some(z))
        .all(|s| nodes.iter().any(|n| n.node == s.node));
    let others_ok = known
        .iter()
        .any(|s| s.zone != Some(z) && s.verdict(kind) == Verdict::Ok);
    (nodes.len() >= 2 && nodes.iter().all(|s| s.zone == Some(z)) && all_of_zone && others_ok)
        .then_some(z)
}

fn per_node(kind: &str, own: &[&Source], known: &[&Source]) -> Finding {
    let names: Vec<String> = own.iter().map(|s| s.node.to_string()).collect();
    let list = names.join(", ");
    let target = target_of(own, kind);
    let ok_from = known
        .iter()
        .filter(|s| s.verdict(kind) == Verdict::Ok)
        .count();
    let zone = whole_zone(own, known, kind);
    let (whose, from) = match (zone, own) {
        (Some(z), _) => (format!("{z}'s nodes ({list})"), format!("{z} ({list})")),
        (None, [one]) => (format!("{}'s", one.node), one.node.to_string()),
        (None, _) => (format!("{list}'s"), list.clone()),
    };
    let mut evidence: Vec<String> = own
        .iter()
        .map(|s| {
            let (ok, n) = s.pod_net;
            format!(
                "the `{kind}` check ({}) {}; {}'s agent reaches {ok}/{n} agents by pod IP",
                describe(kind, &target),
                failure_text(s, kind),
                s.node
            )
        })
        .collect();
    evidence.push(format!(
        "it succeeds from {ok_from} other node{}",
        if ok_from == 1 { "" } else { "s" }
    ));
    let mut f = match kind {
        "service" => {
            // The same node's DNS, behind a ClusterIP too, fails with it: one fault.
            evidence.extend(own.iter().filter_map(|s| dns_too(s)));
            Finding {
                cause: Cause::Service,
                summary: format!(
                    "{whose} Service rules (kube-proxy) are broken: ClusterIP {target} fails from {from} while the agents behind it answer by pod IP"
                ),
                confidence: 0.8,
                next_steps: service_steps(&names, &target),
                ..empty()
            }
        }
        "apiserver" => {
            evidence.extend(own.iter().filter_map(|s| endpoints_answer(s)));
            evidence.extend(own.iter().filter_map(|s| dns_too(s)));
            Finding {
                cause: Cause::Service,
                summary: format!(
                    "{whose} Service rules (kube-proxy) are broken: the API server's ClusterIP {target} (kubernetes.default.svc) fails from {from} while the API server answers at its endpoints from there"
                ),
                confidence: 0.8,
                next_steps: service_steps(&names, &target),
                ..empty()
            }
        }
        "apiserver_endpoints" => {
            for s in own {
                if s.verdict("apiserver") == Verdict::Down {
                    evidence.push(format!(
                        "the API server's ClusterIP fails from {} too: it leads to the same endpoints",
                        s.node
                    ));
                }
            }
            Finding {
                cause: Cause::Apiserver,
                summary: format!(
                    "{from} cannot reach the API server at its endpoints ({target}) while {whose} pod network answers and other nodes reach it: a firewall, security group or route between {from} and the control plane"
                ),
                confidence: 0.7,
                next_steps: apiserver_steps(&names, &target),
                ..empty()
            }
        }
        _ => Finding {
            cause: Cause::Dns,
            summary: format!(
                "cluster DNS fails from {from}: resolving {target} fails there while it works from other nodes and {whose} pod network answers"
            ),
            confidence: 0.75,
            next_steps: dns_steps(&names, &target),
            ..empty()
        },
    };
    f.evidence = evidence;
    match zone {
        Some(z) => f.zones = vec![z.to_string()],
        None => f.nodes = names,
    }
    f
}

fn cluster_wide(kind: &str, down: &[&Source], known: &[&Source]) -> Finding {
    let target = target_of(down, kind);
    let failing: Vec<&str> = down.iter().map(|s| s.node).collect();
    let answering: Vec<&str> = known
        .iter()
        .filter(|s| s.verdict(kind) == Verdict::Ok)
        .map(|s| s.node)
        .collect();
    let mut evidence = vec![format!(
        "the `{kind}` check ({}) fails from {} of {} nodes ({}){}",
        describe(kind, &target),
        down.len(),
        known.len(),
        failing.join(", "),
        if answering.is_empty() {
            String::new()
        } else {
            format!("; it succeeds from {}", answering.join(", "))
        }
    )];
    evidence.extend(down.iter().take(3).map(|s| {
        let (ok, n) = s.pod_net;
        format!(
            "{}; its agent reaches {ok}/{n} agents by pod IP",
            failure_text(s, kind)
        )
    }));
    let (cause, summary, steps) = match kind {
        "service" => (
            Cause::Service,
            format!(
                "the Service at ClusterIP {target} fails from {} of {} nodes while the agents behind it answer by pod IP: the Service itself (selector, endpoints, port) or kube-proxy on every node",
                down.len(),
                known.len()
            ),
            service_steps(&[], &target),
        ),
        "apiserver_endpoints" => (
            Cause::Apiserver,
            format!(
                "the API server fails at its endpoints ({target}) from {} of {} nodes while the pod network answers: the API server not ready (its /readyz), or its endpoints unreachable from the nodes",
                down.len(),
                known.len()
            ),
            apiserver_steps(&[], &target),
        ),
        _ => (
            Cause::Dns,
            format!(
                "cluster DNS fails from {} of {} nodes: resolving {target} fails while the pod network answers — CoreDNS down or unreachable, or its Service without endpoints",
                down.len(),
                known.len()
            ),
            dns_steps(&[], &target),
        ),
    };
    Finding {
        cause,
        summary,
        confidence: 0.75,
        evidence,
        next_steps: steps,
        ..empty()
    }
}

fn describe(kind: &str, target: &str) -> String {
    match kind {
        "service" => format!("TCP + GET /ping to ClusterIP {target}"),
        "apiserver" => format!("TCP + TLS + GET /readyz to the API server's ClusterIP {target}"),
        "apiserver_endpoints" => {
            format!("TCP + TLS + GET /readyz to each API server endpoint, {target}")
        }
        _ => format!("resolve {target}"),
    }
}

fn empty() -> Finding {
    Finding {
        cause: Cause::Service,
        summary: String::new(),
        nodes: Vec::new(),
        pairs: Vec::new(),
        zones: Vec::new(),
        targets: Vec::new(),
        confidence: 0.0,
        evidence: Vec::new(),
        next_steps: Vec::new(),
        family: None,
    }
}

fn service_steps(nodes: &[String], target: &str) -> Vec<String> {
    let vip = target.rsplit_once(':').map_or(target, |(ip, _)| ip);
    let on = if nodes.is_empty() {
        "on any node".to_string()
    } else {
        format!("on {}", nodes.join(", "))
    };
    let mut steps = vec![format!(
        "{on}: is {target} programmed? `nft list table ip kube-proxy | grep {vip}` (nftables mode) or `iptables-save -t nat | grep {vip}` (iptables mode); with IPVS `ipvsadm -Ln -t {target}`"
    )];
    if nodes.is_empty() {
        steps.push(format!(
            "`kubectl get svc -A -o wide | grep {vip}` and `kubectl get endpointslices -A -l kubernetes.io/service-name=<name>`: does the selector match the pods, the port their port?"
        ));
        steps.push(
            "`kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide` and their logs: sync errors on every node?"
                .into(),
        );
    } else {
        steps.push(format!(
            "`kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide --field-selector spec.nodeName={}` and its logs (`sync`, `Failed to execute`); deleting that pod makes kube-proxy reprogram the node",
            nodes[0]
        ));
        steps.push(format!(
            "stale endpoints: compare the rule's backends with `kubectl get endpointslices -A -l kubernetes.io/service-name=<name>`; `conntrack -L -d {vip}` on the node for old entries"
        ));
    }
    steps
}

fn apiserver_steps(nodes: &[String], targets: &str) -> Vec<String> {
    let first = targets.split(',').next().unwrap_or(targets);
    let mut steps = vec![format!(
        "`kubectl get --raw='/readyz?verbose'` and `kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes`: is every API server ready, are these its addresses ({targets})?"
    )];
    match nodes.first() {
        Some(n) => {
            steps.push(format!(
                "from {n} (a pod there, or the node): `curl -k https://{first}/readyz` — a timeout or refusal here and not from other nodes is the path: security groups / firewall rules between {n}'s network and the control plane, its routes (`ip route get {}`)",
                first.rsplit_once(':').map_or(first, |(ip, _)| ip.trim_matches(['[', ']']))
            ));
            steps.push(format!(
                "managed control plane: is {n}'s subnet among the API server's allowed networks (authorized networks, endpoint access rules)?"
            ));
        }
        None => steps.push(
            "`kubectl -n kube-system get pods -l component=kube-apiserver -o wide` and their logs (etcd, certificates); the API server's own /readyz from a control-plane node"
                .into(),
        ),
    }
    steps
}

fn dns_steps(nodes: &[String], name: &str) -> Vec<String> {
    let mut steps = Vec::new();
    if nodes.is_empty() {
        steps.push(
            "`kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide` (Ready? restarting?) and `kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50`".into(),
        );
        steps.push(
            "`kubectl -n kube-system get endpointslices -l kubernetes.io/service-name=kube-dns`: any ready endpoints?".into(),
        );
        steps.push(format!(
            "from any pod: `dig {name}` through the kube-dns ClusterIP, then `dig @<coredns-pod-ip> {name}` — the pod IP answering and the ClusterIP not points at the Service"
        ));
    } else {
        steps.push(format!(
            "from a pod on {}: `dig {name}` (the kube-dns ClusterIP) and `dig @<coredns-pod-ip> {name}` — both failing: DNS traffic from the node is dropped; only the ClusterIP: its Service rules",
            nodes[0]
        ));
        steps.push(
            "`kubectl get networkpolicy -A`: an egress policy on these pods that misses UDP and TCP 53 to kube-system; on the node, `nft list ruleset | grep -w 53` for a host firewall".into(),
        );
        steps.push(format!(
            "a node-local DNS cache? `kubectl -n kube-system get pods -l k8s-app=node-local-dns -o wide --field-selector spec.nodeName={}`",
            nodes[0]
        ));
    }
    steps
}
