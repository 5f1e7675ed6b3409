//! Stage 4, targets and agents' HTTP: failures the network stages do not explain become
//! `policy`, `application` or `cni` (a pod IP itself dead).

use std::collections::{BTreeMap, BTreeSet};

use super::clean::{max_age, net_failing, worst_app, NetUnreachableFrom};
use super::finish::counts_text;
use super::state::*;
use crate::input::ErrKind;
use crate::matrix::Dest;
use crate::report::Cause;

/// The peer pairs toward one node's agent, for its HTTP endpoint.
#[derive(Debug, Default)]
struct AgentHttpPairs {
    /// Failing, explained by nothing else.
    failing: Vec<usize>,
    /// With a known HTTP/TCP verdict.
    known: u32,
    /// Failing, but waiting for a contrast or possibly the loss's.
    pending: Vec<usize>,
    all: Vec<usize>,
}

impl Engine<'_> {
    /// The network finding that explains a failure from `src` to something on node `d`.
    fn network_explains(&self, src: usize, d: Option<usize>, pair: Option<usize>) -> Option<usize> {
        if let Some(&f) = pair.and_then(|p| self.explained.get(&p)) {
            return Some(f);
        }
        if let Some(&f) = self.node_finding.get(&src) {
            return Some(f);
        }
        let d = d?;
        if let Some(&f) = self.node_finding.get(&d) {
            return Some(f);
        }
        if let Some(&pi) = self.pair_of.get(&(src, d)) {
            if let Some(&f) = self.explained.get(&pi) {
                if self.drafts[f].cause != Cause::Mtu {
                    return Some(f);
                }
            }
        }
        if let (Some(za), Some(zb)) = (self.zone_id[src], self.zone_id[d]) {
            if let Some(&f) = self.zone_finding.get(&unordered_key(za, zb)) {
                return Some(f);
            }
        }
        None
    }

    /// Timeouts on a path that loses packets (its pair, or a lossy node at either end) are the
    /// loss's, not a policy's. Why: a lost SYN or SYN-ACK outlasts a probe timeout below the 1 s
    /// SYN retransmission.
    fn loss_explains_app(&self, i: usize, lossy: &BTreeSet<usize>) -> bool {
        let pc = &self.m.pairs[i];
        // A dead pod IP is the network's, unless it is bad luck under heavy loss (at 50%
        // round-trip loss, 3 echoes all vanish one probe in 8).
        if self.states[i][POD] == CellState::Down && !self.weak_failure(i) {
            return false;
        }
        let timeouts_only = [HTTP, TCP].iter().all(|&k| {
            self.states[i][k] != CellState::Down
                || pc.layers[k]
                    .as_ref()
                    .and_then(|c| c.last_error.as_ref())
                    .is_none_or(|e| e.kind() == ErrKind::Timeout)
        });
        let on_lossy_node =
            lossy.contains(&pc.src) || self.dst_node(i).is_some_and(|d| lossy.contains(&d));
        let pair_loss = (self.raw_loss[i] || self.pair_lossy(i))
            && self.loss_since(i, self.onset_in(i, &[HTTP, TCP]));
        timeouts_only && (pair_loss || on_lossy_node)
    }

    /// May pair `i`'s ICMP paths still be losing packets since its connection failures began
    /// `onset` seconds ago? No when an ICMP layer was probed since, answered, and its last lost
    /// echo is older than the failures; without the onset (older agents) or an ICMP probe
    /// since, it may. (A node that is lossy now still explains them: a lucky probe proves
    /// little.) Why: loss that ended before the failures began does not explain them.
    fn loss_since(&self, i: usize, onset: Option<f64>) -> bool {
        let Some(onset) = onset else {
            return true;
        };
        let mut probed_since = false;
        for c in self.m.pairs[i].layers[..=NODE].iter().flatten() {
            if !c.last_probe_age_seconds.is_some_and(|a| a < onset) {
                continue;
            }
            if c.reachable != Some(true) || c.last_error_age_seconds.is_some_and(|a| a <= onset) {
                return true; // lost something since
            }
            probed_since = true;
        }
        !probed_since
    }

    /// A source whose own stack or pod gateway says "net unreachable" to a target's pod is
    /// missing a route, as on peer pairs. On a sampled plan the source may probe the target
    /// (targets are never sampled) but not the agent on the target's node, so the network
    /// stage had no peer pair to see it from; the targets on the source's node, probed from the
    /// target's node, time out (the replies have no route) and go with it.
    fn target_routing(&mut self) {
        let mut by_src: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &self.target_pairs {
            let src = self.m.pairs[i].src;
            if self.explained.contains_key(&i) || self.states[i][POD] != CellState::Down {
                continue;
            }
            let Some(NetUnreachableFrom::Node { node: owner, .. }) = self.net_unreachable_from(i)
            else {
                continue;
            };
            if owner == src && self.network_explains(src, self.dst_node(i), None).is_none() {
                by_src.entry(src).or_default().push(i);
            }
        }
        // Sources with a routing finding from the network stage too: a route lost toward a node
        // with no target is seen on the peer pair alone, and that node's probes of the
        // source's targets time out all the same.
        let sources: BTreeSet<usize> = by_src
            .keys()
            .chain(self.egress_finding.keys())
            .copied()
            .collect();
        for x in sources {
            let mut pairs = by_src.remove(&x).unwrap_or_default();
            let mut far: BTreeSet<usize> = pairs.iter().filter_map(|&i| self.dst_node(i)).collect();
            if let Some(f) = self.egress_finding.get(&x) {
                // The other end of each of its pairs (its replies to them have no route either).
                far.extend(f.pairs.iter().filter_map(|&i| {
                    let pc = &self.m.pairs[i];
                    if pc.src == x {
                        self.dst_node(i)
                    } else {
                        Some(pc.src)
                    }
                }));
                far.remove(&x);
            }
            for &j in &self.target_pairs {
                let pc = &self.m.pairs[j];
                let s = self.states[j];
                if far.contains(&pc.src)
                    && self.dst_node(j) == Some(x)
                    && !self.explained.contains_key(&j)
                    && (s[POD] == CellState::Down || worst_app(&s) == CellState::Down)
                {
                    pairs.push(j);
                }
            }
            if pairs.is_empty() {
                continue;
            }
            if let Some(RoutingFinding {
                draft: idx,
                pairs: mut all,
            }) = self.egress_finding.get(&x).cloned()
            {
                all.extend(pairs);
                let mut d = self.egress_draft(Some(x), None, &all);
                for &i in &all {
                    let pc = &self.m.pairs[i];
                    d.pairs.insert((pc.src, pc.dst));
                    self.explained.entry(i).or_insert(idx);
                }
                d.targets.extend(self.drafts[idx].targets.iter().copied());
                self.drafts[idx] = d;
                self.egress_finding.insert(
                    x,
                    RoutingFinding {
                        draft: idx,
                        pairs: all,
                    },
                );
            } else {
                let d = self.egress_draft(Some(x), None, &pairs);
                self.push_pairs(d, &pairs);
            }
        }
    }

    pub(super) fn app_stage(&mut self) {
        self.target_routing();
        let lossy = self.lossy_nodes();
        // Targets.
        let mut per_target: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &self.target_pairs {
            if let Dest::Target(t) = self.m.pairs[i].dst {
                per_target.entry(t).or_default().push(i);
            }
        }
        for (t, pairs) in per_target {
            let node = self.m.targets.get(t).and_then(|x| x.node);
            let mut fails = Vec::new();
            let mut pending = Vec::new();
            let mut known = 0u32;
            for &i in &pairs {
                let s = self.states[i];
                let app = worst_app(&s);
                if app.known() || s[POD].known() {
                    known += 1;
                }
                if app != CellState::Down && s[POD] != CellState::Down {
                    continue;
                }
                if let Some(&f) = self.explained.get(&i) {
                    self.drafts[f].targets.insert(t);
                    continue;
                }
                if let Some(f) = self.network_explains(self.m.pairs[i].src, node, None) {
                    // A node-level finding lists the targets on that node; the others show
                    // up in its pairs (its own agent cannot reach them).
                    let node_level = matches!(self.drafts[f].cause, Cause::NodeDown | Cause::Cni)
                        && !self.drafts[f].nodes.is_empty();
                    if !node_level || node.is_some_and(|n| self.drafts[f].nodes.contains(&n)) {
                        self.drafts[f].targets.insert(t);
                    }
                    self.drafts[f]
                        .pairs
                        .insert((self.m.pairs[i].src, Dest::Target(t)));
                    continue;
                }
                if self.loss_explains_app(i, &lossy) {
                    // Loss's, or not yet known to be otherwise: no contrast for the others.
                    self.deferred_app_loss.push(i);
                    pending.push(i);
                    continue;
                }
                if self.app_pending(i, node) {
                    pending.push(i);
                    continue;
                }
                fails.push(i);
            }
            if !fails.is_empty() && !self.app_wide_pending(&pairs, &fails, &pending, known) {
                if let Some(d) = self.app_draft(Some(t), node, &fails, known) {
                    self.push_pairs(d, &fails);
                }
            }
        }
        // Agents' own HTTP endpoint, with the pod IP answering.
        let mut per_node: BTreeMap<usize, AgentHttpPairs> = BTreeMap::new();
        for &i in &self.peer_pairs {
            let Dest::Node(d) = self.m.pairs[i].dst else {
                continue;
            };
            let s = self.states[i];
            let e = per_node.entry(d).or_default();
            e.all.push(i);
            if worst_app(&s).known() {
                e.known += 1;
            }
            if worst_app(&s) != CellState::Down
                || net_failing(&s)
                || self.explained.contains_key(&i)
            {
                continue;
            }
            if self
                .network_explains(self.m.pairs[i].src, Some(d), Some(i))
                .is_some()
            {
                continue;
            }
            let e = per_node.entry(d).or_default();
            if self.loss_explains_app(i, &lossy) {
                self.deferred_app_loss.push(i);
                e.pending.push(i);
                continue;
            }
            if self.app_pending(i, Some(d)) {
                e.pending.push(i);
                continue;
            }
            e.failing.push(i);
        }
        for (
            x,
            AgentHttpPairs {
                failing: fails,
                known,
                pending,
                all,
            },
        ) in per_node
        {
            if fails.is_empty()
                || self.restarting[x]
                || self.app_wide_pending(&all, &fails, &pending, known)
            {
                continue;
            }
            if let Some(d) = self.app_draft(None, Some(x), &fails, known) {
                self.push_pairs(d, &fails);
            }
        }
    }

    /// A failing target (or agent HTTP) pair whose contrast predates its failure: HTTP/TCP
    /// fails while the pod IP's last answer is older than that (policy? not yet), or the pod
    /// IP fails while this source's last probe of the node's agent pod succeeded before that
    /// (the network between them may be failing too: cni? not yet), or that peer pair waits.
    fn app_pending(&self, i: usize, node: Option<usize>) -> bool {
        let s = self.states[i];
        let app_onset = self.onset_in(i, &[HTTP, TCP]);
        if worst_app(&s) == CellState::Down && s[POD] != CellState::Down {
            // A refusal, reset or error status is the pod answering: no contrast needed.
            let answered = [HTTP, TCP].iter().any(|&k| {
                s[k] == CellState::Down
                    && self.m.pairs[i].layers[k]
                        .as_ref()
                        .and_then(|c| c.last_error.as_ref())
                        .is_some_and(|e| {
                            matches!(
                                e.kind(),
                                ErrKind::Refused | ErrKind::Reset | ErrKind::HttpStatus
                            )
                        })
            });
            return !answered && self.contrast_predates(i, &[POD], app_onset);
        }
        let Some(peer) = node.and_then(|n| self.pair_of.get(&(self.m.pairs[i].src, n))) else {
            return false;
        };
        if self.pending.contains(peer) {
            return true;
        }
        let ps = self.states[*peer];
        let onset = self.onset_in(i, &[POD, HTTP, TCP]);
        !net_failing(&ps) && self.contrast_predates(*peer, &[POD, NODE, HTTP, TCP], onset)
    }

    /// A minority of failing sources (`fails`, with `pending` pending — waiting for a contrast,
    /// or failing in a way loss may explain) that becomes the majority if the other sources'
    /// successes from before these failures began fail too: the verdict "from some sources
    /// only" waits for them to be probed again. Why: those successes may be failing too by now,
    /// and the fault may be every source's.
    fn app_wide_pending(
        &self,
        all: &[usize],
        fails: &[usize],
        pending: &[usize],
        known: u32,
    ) -> bool {
        let hit = self.p.hit_ratio;
        let bad = fails.len() as u32;
        if f64::from(bad) / f64::from(known.max(bad).max(1)) >= hit {
            return false;
        }
        let onset = fails
            .iter()
            .chain(pending)
            .map(|&i| self.onset_in(i, &[POD, HTTP, TCP]))
            .fold(None, max_age);
        // Others whose connection (or pod IP) has not answered since: a success from before,
        // or an unconfirmed first failure.
        let stale = all
            .iter()
            .filter(|i| !fails.contains(i) && !pending.contains(i))
            .filter(|&&i| {
                self.contrast_predates(i, &[HTTP, TCP], onset)
                    || self.contrast_predates(i, &[POD], onset)
            })
            .count() as u32;
        let known = known.max(bad);
        known > 0 && f64::from(bad + pending.len() as u32 + stale) / f64::from(known) >= hit
    }

    fn app_draft(
        &self,
        target: Option<usize>,
        node: Option<usize>,
        fails: &[usize],
        known: u32,
    ) -> Option<Draft> {
        let tname = match target {
            Some(t) => self
                .m
                .targets
                .get(t)
                .map_or("?".to_string(), |x| x.name.clone()),
            None => format!("meshprobe agent on {}", node.map_or("?", |n| self.name(n))),
        };
        let tinfo = target.and_then(|t| self.m.targets.get(t));
        let port = tinfo.and_then(|t| t.port);
        let ip = tinfo.and_then(|t| t.ip).or_else(|| {
            node.filter(|_| target.is_none())
                .and_then(|n| self.m.nodes[n].pod_ip)
        });
        let addr = match (ip, port) {
            // `[v6]:port`: an IPv6 address with a bare `:port` reads as another address.
            (Some(ip), Some(p)) => std::net::SocketAddr::new(ip, p).to_string(),
            (Some(ip), None) => ip.to_string(),
            _ => "<ip:port>".into(),
        };
        let ratio = f64::from(fails.len() as u32) / f64::from(known.max(fails.len() as u32).max(1));
        let wide = ratio >= self.p.hit_ratio;
        let mut icmp_dead = 0usize;
        let mut icmp_ok = 0usize;
        let (mut timeouts, mut rejects) = (0usize, 0usize);
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for &i in fails {
            let s = self.states[i];
            match s[POD] {
                CellState::Down => icmp_dead += 1,
                CellState::Ok | CellState::Lossy => icmp_ok += 1,
                CellState::Unknown => {}
            }
            for k in [HTTP, TCP] {
                if s[k] != CellState::Down {
                    continue;
                }
                if let Some(e) = self.m.pairs[i].layers[k]
                    .as_ref()
                    .and_then(|c| c.last_error.as_ref())
                {
                    *kinds.entry(e.describe()).or_default() += 1;
                    match e.kind() {
                        ErrKind::Timeout | ErrKind::AdminProhibited => timeouts += 1,
                        ErrKind::Refused
                        | ErrKind::Reset
                        | ErrKind::HttpStatus
                        | ErrKind::Protocol
                        | ErrKind::WrongPeer
                        | ErrKind::PortUnreachable => rejects += 1,
                        _ => {}
                    }
                }
            }
        }
        // Kubernetes facts about the pod and policies.
        let tn = tinfo.map(|t| t.name.as_str());
        let pod = tinfo.and_then(|t| {
            self.m.kube.pods.iter().find(|p| {
                (tn.is_some() && p.target.as_deref() == tn) || (t.ip.is_some() && p.ip == t.ip)
            })
        });
        let pod_not_ready = pod.is_some_and(|p| {
            p.ready == Some(false) || p.phase.as_deref().is_some_and(|ph| ph != "Running")
        });
        let sandbox = pod.is_some_and(|p| {
            p.events
                .iter()
                .any(|e| e.reason == "FailedCreatePodSandbox")
        });
        let policies: Vec<&crate::input::PolicyFacts> = tn.map_or(Vec::new(), |tn| {
            self.m
                .kube
                .network_policies
                .iter()
                .filter(|p| p.targets.iter().any(|x| x == tn))
                .collect()
        });
        let policy_blocks = policies.iter().any(|p| p.admits_port == Some(false));
        let policy_known_none = !self.m.kube.network_policies.is_empty() && policies.is_empty();
        let pod_dead = icmp_dead * 2 > fails.len();
        // A pod IP that other sources reach, and that still answers this minority of sources
        // now and then (only timeouts, ≥ 30% delivered), is no dead pod network: heavy loss
        // fails a few probes in a row now and then. Loss is reported for the node; nothing to
        // add here.
        if pod_dead && !wide && !sandbox && fails.iter().all(|&i| self.loss_explains(i)) {
            return None;
        }

        let (cause, mut conf, summary) = if pod_dead {
            if sandbox {
                (
                    Cause::Cni,
                    0.85,
                    format!("{tname}'s pod has no working network: sandbox creation failed (CNI)"),
                )
            } else if pod_not_ready {
                (
                    Cause::Application,
                    0.75,
                    format!("{tname}'s pod is not running/Ready and its IP does not answer"),
                )
            } else if policy_blocks {
                (Cause::Policy, 0.7, format!("a NetworkPolicy blocks traffic to {tname} (its IP does not answer ICMP either)"))
            } else {
                (Cause::Cni, 0.5, format!("{tname}'s pod IP does not answer while its node's other pods do: the pod's network (CNI) or the pod is gone"))
            }
        } else if !wide && !policy_blocks && timeouts >= rejects && timeouts > 0 {
            // A NetworkPolicy treats every meshprobe agent alike: timeouts from a minority of
            // sources are no policy. Intermittent ones (most probes pass) are noise; persistent
            // ones point at those sources' paths.
            if fails.iter().all(|&i| self.weak_failure(i)) {
                return None;
            }
            (
                Cause::Application,
                0.4,
                format!("connections to {tname} ({addr}) time out from some sources only while it answers ICMP and other sources connect: not a NetworkPolicy (it would drop them all); look at those sources' nodes (host firewall, conntrack)"),
            )
        } else if policy_blocks || (timeouts >= rejects && timeouts > 0 && !pod_not_ready) {
            let mut c = 0.65 + 0.2 * ratio;
            if policy_blocks {
                c += 0.1;
            }
            if policy_known_none {
                c -= 0.2;
            }
            (Cause::Policy, c, format!("connections to {tname} ({addr}) are silently dropped while it answers ICMP: a NetworkPolicy or firewall drops the SYN"))
        } else {
            let mut c = 0.65 + 0.2 * ratio;
            if pod_not_ready {
                c += 0.1;
            }
            (Cause::Application, c, format!("{tname} ({addr}) answers ICMP but its service fails (refused / reset / error status)"))
        };
        if !wide {
            conf *= 0.75;
        }
        let mut d = Draft::new(
            cause,
            if wide {
                summary
            } else {
                format!("{summary} — from {} of {known} sources only", fails.len())
            },
            conf.clamp(0.0, 0.97),
        );
        if let Some(t) = target {
            d.targets.insert(t);
        }
        if let Some(n) = node {
            d.nodes.insert(n);
        }
        let app_layer = tinfo
            .and_then(|t| t.protocol.clone())
            .unwrap_or_else(|| "http".into())
            .to_uppercase();
        d.evidence.push(format!(
            "{app_layer} to {tname} fails from {}/{} sources; its pod IP answers ICMP from {icmp_ok}/{}",
            fails.len(),
            known,
            fails.len()
        ));
        if !kinds.is_empty() {
            d.evidence.push(format!("errors: {}", counts_text(kinds)));
        }
        if let Some(p) = pod {
            d.evidence.push(format!(
                "Kubernetes: pod {}/{} phase {}, Ready {}",
                p.namespace,
                p.name,
                p.phase.as_deref().unwrap_or("?"),
                p.ready.map_or("?".to_string(), |r| r.to_string())
            ));
        }
        for p in &policies {
            d.evidence.push(format!(
                "Kubernetes: NetworkPolicy {}/{} selects {tname}{}",
                p.namespace,
                p.name,
                match p.admits_port {
                    Some(false) => " and does not admit its port",
                    Some(true) => " and admits its port",
                    None => "",
                }
            ));
        }
        if policy_known_none && cause == Cause::Policy {
            d.evidence.push(format!("no NetworkPolicy selects {tname}: look for a host firewall rule or a hung listener"));
        }
        let ns = pod.map_or("<namespace>".to_string(), |p| p.namespace.clone());
        let pod_name = pod.map_or("<pod>".to_string(), |p| p.name.clone());
        d.next_steps = match cause {
            Cause::Policy => vec![
                format!("Runbook diagnosis 4: `kubectl get networkpolicy -n {ns}` and `kubectl describe networkpolicy -n {ns}` — which policy selects {pod_name}, and does an ingress rule admit port {}?", port.map_or("<port>".into(), |p| p.to_string())),
                format!("From another pod: `nc -zv -w2 {}` (a timeout means the SYN is dropped; \"refused\" would mean nobody listens)", addr.replace(':', " ")),
            ],
            Cause::Application => vec![
                format!("Runbook diagnosis 3: `kubectl get pod -n {ns} {pod_name} -o wide` (Ready?) and `kubectl describe pod -n {ns} {pod_name}` (readiness probe, restarts)"),
                format!("`kubectl logs -n {ns} {pod_name}` and `curl -gv http://{addr}/` from another pod"),
            ],
            _ => vec![
                format!("Runbook diagnosis 1: `kubectl describe pod -n {ns} {pod_name}` and `kubectl get events -n {ns} --field-selector involvedObject.name={pod_name}` (FailedCreatePodSandbox?)"),
                "Runbook diagnosis 2: check the CNI pod on that node in kube-system (Ready, restarts, logs)".into(),
            ],
        };
        Some(d)
    }
}
