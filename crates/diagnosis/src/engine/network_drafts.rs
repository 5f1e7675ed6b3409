//! The network stage's findings: summary, evidence and next steps for a zone partition, a node
//! down, a node's CNI, a routing table, a partial node fault and a node pair.

use std::collections::{BTreeMap, BTreeSet};

use super::clean::{net_failing, pod_state, NetUnreachableFrom};
use super::state::*;
use crate::input::{ErrKind, ErrorInfo};
use crate::matrix::{AgentStatus, Dest};
use crate::report::Cause;

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

impl Engine<'_> {
    pub(super) fn zone_draft(&self, zp: &[(usize, usize)], pairs: &[usize]) -> Draft {
        let keys: BTreeSet<(usize, usize)> = zp.iter().map(|&(a, b)| unordered_key(a, b)).collect();
        let involved: BTreeSet<usize> = zp.iter().flat_map(|&(a, b)| [a, b]).collect();
        let mut node_l = Tally::default();
        let mut pod_l = Tally::default();
        let mut http_l = Tally::default();
        for &i in &self.peer_pairs {
            let pc = &self.m.pairs[i];
            let Dest::Node(d) = pc.dst else { continue };
            let (Some(za), Some(zb)) = (self.zone_id[pc.src], self.zone_id[d]) else {
                continue;
            };
            if za == zb || !keys.contains(&unordered_key(za, zb)) {
                continue;
            }
            let s = self.states[i];
            node_l.add(s[NODE].known(), s[NODE] == CellState::Down);
            pod_l.add(s[POD].known(), s[POD] == CellState::Down);
            http_l.add(s[HTTP].known(), s[HTTP] == CellState::Down);
        }
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for x in 0..self.m.nodes.len() {
            if let Some(z) = self.zone_id[x].filter(|z| involved.contains(z)) {
                members.entry(z).or_default().push(x);
            }
        }
        let missing: Vec<&str> = members
            .values()
            .flatten()
            .filter(|&&x| self.m.nodes[x].agent != AgentStatus::Reporting)
            .map(|&x| self.name(x))
            .collect();
        // The zone common to every pair, when there are several.
        let hub = involved
            .iter()
            .copied()
            .find(|z| zp.iter().all(|&(a, b)| a == *z || b == *z));
        let zname = |z: usize| self.zones.get(z).map_or("?", String::as_str);
        let (first, _) = zp[0];
        let (head, others): (String, Vec<&str>) = match (zp.len(), hub) {
            (1, _) | (_, None) => (
                zname(first).to_string(),
                zp.iter()
                    .flat_map(|&(a, b)| [a, b])
                    .filter(|&z| z != first)
                    .map(zname)
                    .collect(),
            ),
            (_, Some(h)) => (
                zname(h).to_string(),
                involved
                    .iter()
                    .copied()
                    .filter(|&z| z != h)
                    .map(zname)
                    .collect(),
            ),
        };
        let others_s = others.join(", ");
        let hit = node_l.ratio().max(pod_l.ratio());
        let mut d = Draft::new(
            Cause::Vpc,
            if zp.len() == 1 {
                format!("{head} and {others_s} cannot reach each other (cloud network / VPC partition between zones); traffic inside each zone works")
            } else {
                format!("{head} is cut off from {others_s} (cloud network / VPC partition); traffic inside each zone works")
            },
            (0.55 + 0.35 * hit).min(0.95),
        );
        for z in &involved {
            d.zones.insert(zname(*z).to_string());
        }
        d.evidence.push(format!(
            "between {head} and {others_s}: node IPs unreachable by ICMP on {} directed pairs, pod IPs by ICMP on {}{}",
            node_l.frac(),
            pod_l.frac(),
            if http_l.known > 0 { format!(", HTTP on {}", http_l.frac()) } else { String::new() }
        ));
        d.evidence.push(format!(
            "inside each zone the same probes succeed ({} directed pairs failing across zones)",
            pairs.len()
        ));
        for (z, xs) in &members {
            let cut_off = match hub {
                Some(h) if zp.len() > 1 => h == *z,
                _ => true,
            };
            if let [x] = xs.as_slice() {
                if !cut_off {
                    continue;
                }
                if self.m.nodes[*x].agent == AgentStatus::Reporting {
                    d.evidence.push(format!(
                        "{} holds only {}, whose agent still reports (it reaches nobody outside its zone): a partition, not a dead node",
                        zname(*z),
                        self.name(*x)
                    ));
                }
            }
        }
        if !missing.is_empty() {
            d.evidence.push(format!(
                "agents that did not report: {}",
                missing.join(", ")
            ));
        }
        d.evidence.push(self.error_summary(pairs));
        let far = others.first().copied().unwrap_or("the other zone");
        d.next_steps = vec![
            format!("Runbook, last section (cloud provider networking): from a node in {head}, `ping -c3 <node IP in {far}>` and `traceroute -n <node IP in {far}>` to see where packets stop"),
            format!("Check the cloud network between {head} and {others_s}: VPC/subnet route tables, security groups / NACLs / firewall rules, peering or transit attachments (e.g. `aws ec2 describe-route-tables`, `gcloud compute firewall-rules list`)"),
            "`kubectl get nodes -L topology.kubernetes.io/zone` to confirm which nodes sit in each zone".into(),
        ];
        d
    }

    fn node_facts(&self, x: usize) -> Vec<String> {
        let name = self.name(x);
        let mut out = Vec::new();
        for f in self.m.kube.nodes.iter().filter(|f| f.name == name) {
            match f.ready {
                Some(false) => out.push(format!("Kubernetes: node {name} is NotReady")),
                Some(true) => out.push(format!("Kubernetes: node {name} is Ready")),
                None => {}
            }
            if f.cordoned == Some(true) {
                out.push(format!(
                    "Kubernetes: node {name} is cordoned (being drained or removed?)"
                ));
            }
        }
        out
    }

    pub(super) fn node_down_draft(&self, x: usize, pairs: &[usize]) -> Draft {
        let a = self.node_tally[x];
        let name = self.name(x).to_string();
        let node = &self.m.nodes[x];
        let agent_missing = node.agent != AgentStatus::Reporting;
        let not_ready_fact = self
            .m
            .kube
            .nodes
            .iter()
            .any(|f| f.name == name && f.ready == Some(false));
        let mut conf = 0.55 + 0.3 * a.in_node.ratio();
        if agent_missing {
            conf += 0.1;
        }
        if not_ready_fact {
            conf += 0.05;
        }
        let mut d = Draft::new(
            Cause::NodeDown,
            if agent_missing {
                format!("{name} is down or cut off: neither its node IP nor its pods answer, and its agent does not report")
            } else {
                format!(
                    "{name} is cut off from the network: nobody reaches it and it reaches nobody"
                )
            },
            conf.min(0.97),
        );
        d.nodes.insert(x);
        if let Some(z) = &node.zone {
            d.zones.insert(z.clone());
        }
        d.evidence.push(format!(
            "{name}'s node IP unreachable from {} nodes by ICMP; pod IPs on {name} unreachable from {}",
            a.in_node.frac(),
            a.in_pod.frac()
        ));
        if a.in_http.known > 0 {
            d.evidence.push(format!(
                "HTTP to {name}'s agent fails from {}",
                a.in_http.frac()
            ));
        }
        if agent_missing {
            d.evidence.push(if node.agent_unreachable {
                format!("{name}'s agent did not answer the results request")
            } else if node.agent == AgentStatus::NotReady {
                format!("{name}'s agent reports not ready")
            } else {
                format!("no results from {name}'s agent")
            });
        } else {
            d.evidence.push(format!(
                "{name}'s own agent reaches {} of {} nodes' node IPs",
                a.out_node.good(),
                a.out_node.known
            ));
        }
        d.evidence.extend(self.node_facts(x));
        d.evidence.push(self.error_summary(pairs));
        d.next_steps = vec![
            format!("Runbook: check the node before the pods: `kubectl get node {name} -o wide` (Ready? last heartbeat) and `kubectl describe node {name}` (conditions, events)"),
            format!("From a healthy node: `ping -c3 {}`; on the cloud console, check the instance state and its network interface", node.node_ip.map_or("<node IP>".to_string(), |ip| ip.to_string())),
            format!("If it is up, on {name}: `ip link`, `ip addr`, `ip route` (uplink down? routes gone?)"),
        ];
        d
    }

    fn cni_facts(&self, x: usize) -> (Vec<String>, Option<bool>) {
        let name = self.name(x);
        let mut out = Vec::new();
        let mut unhealthy: Option<bool> = None;
        for c in self.m.kube.cni_pods.iter().filter(|c| c.node == name) {
            let bad =
                c.ready == Some(false) || c.crash_loop == Some(true) || c.restarts.unwrap_or(0) > 3;
            unhealthy = Some(unhealthy.unwrap_or(false) || bad);
            let mut words = Vec::new();
            match c.ready {
                Some(false) => words.push("not Ready".to_string()),
                Some(true) => words.push("Ready".to_string()),
                None => {}
            }
            if c.crash_loop == Some(true) {
                words.push("CrashLoopBackOff".into());
            }
            if let Some(r) = c.restarts {
                words.push(format!("{r} restarts"));
            }
            out.push(format!(
                "Kubernetes: CNI pod kube-system/{} on {name}: {}",
                c.name,
                words.join(", ")
            ));
        }
        let mut sandbox = 0u32;
        for p in self
            .m
            .kube
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(name))
        {
            for e in p
                .events
                .iter()
                .filter(|e| e.reason == "FailedCreatePodSandbox")
            {
                sandbox += e.count.unwrap_or(1).max(1);
            }
        }
        if sandbox > 0 {
            unhealthy = Some(true);
            out.push(format!(
                "Kubernetes: {sandbox} FailedCreatePodSandbox events for pods on {name}"
            ));
        }
        (out, unhealthy)
    }

    pub(super) fn cni_draft(&self, x: usize, pairs: &[usize]) -> Draft {
        let a = self.node_tally[x];
        let name = self.name(x).to_string();
        let routing = a.out_own_net_unreachable > 0
            && a.out_pod.known > 0
            && f64::from(a.out_own_net_unreachable) >= 0.5 * f64::from(a.out_pod.bad.max(1));
        if routing {
            return self.egress_draft(Some(x), None, pairs);
        }
        let (facts, unhealthy) = self.cni_facts(x);
        let mut conf = 0.5 + 0.3 * a.in_pod.ratio() + if a.in_node.known > 0 { 0.1 } else { 0.0 };
        match unhealthy {
            Some(true) => conf += 0.1,
            Some(false) => conf -= 0.1,
            None => {}
        }
        let mut d = Draft::new(
            Cause::Cni,
            format!("pod network on {name} is broken (CNI): its node IP answers, its pods do not"),
            conf.clamp(0.0, 0.97),
        );
        d.nodes.insert(x);
        if let Some(z) = &self.m.nodes[x].zone {
            d.zones.insert(z.clone());
        }
        d.evidence.push(format!(
            "pod IPs on {name} unreachable from {} nodes by ICMP; {name}'s node IP reachable from {}/{}",
            a.in_pod.frac(),
            a.in_node.good(),
            a.in_node.known
        ));
        if a.out_pod.known > 0 {
            d.evidence.push(format!(
                "from {name}'s agent, pod IPs of {} nodes unreachable",
                a.out_pod.frac()
            ));
        } else if self.m.nodes[x].agent != AgentStatus::Reporting {
            d.evidence.push(format!(
                "{name}'s agent did not report (it runs on the pod network)"
            ));
        }
        d.evidence.extend(facts);
        d.evidence.push(self.error_summary(pairs));
        d.next_steps = vec![
            format!("Runbook diagnosis 1–2: `kubectl get pods -n kube-system -o wide --field-selector spec.nodeName={name}` — is the CNI pod (calico-node / kube-flannel / cilium) Ready, restarting, in CrashLoopBackOff?"),
            format!("`kubectl get events -A --field-selector reason=FailedCreatePodSandbox` and `kubectl logs -n kube-system <cni-pod-on-{name}> --previous`"),
            format!("On {name}: `ip link show cni0` (or the CNI's bridge/interface), `ip addr`, `ip route` — bridge down, veths missing, pod subnet route gone?"),
        ];
        d
    }

    /// Routing: `node`'s table lacks routes (net unreachable from its addresses), or a router
    /// that is no node answered.
    pub(super) fn egress_draft(
        &self,
        node: Option<usize>,
        router: Option<&str>,
        pairs: &[usize],
    ) -> Draft {
        let mut dsts = BTreeSet::new();
        let mut examples = Vec::new();
        let mut signalled = 0usize;
        for &i in pairs {
            let pc = &self.m.pairs[i];
            if Some(pc.src) == node {
                if let Some(dn) = self.dst_node(i) {
                    dsts.insert(dn);
                }
            }
            if let Some(NetUnreachableFrom::Node { node: owner, role }) =
                self.net_unreachable_from(i)
            {
                if Some(owner) == node {
                    if let Some(dn) = self.dst_node(i) {
                        dsts.insert(dn);
                    }
                    signalled += 1;
                    if examples.len() < 3 {
                        let e = pc
                            .layers
                            .iter()
                            .flatten()
                            .find_map(|c| c.error_of(ErrKind::NetUnreachable));
                        examples.push(format!(
                            "{}: {}{}",
                            self.pair_label(i),
                            e.map_or("net_unreachable".into(), ErrorInfo::describe),
                            role.map_or(" (the source's own stack)".to_string(), |r| format!(
                                " ({}'s {})",
                                self.name(owner),
                                r.describe()
                            ))
                        ));
                    }
                }
            }
        }
        let mut d;
        match node {
            Some(x) => {
                let name = self.name(x).to_string();
                let dst_names: Vec<String> =
                    dsts.iter().map(|&n| self.name(n).to_string()).collect();
                let subnets: Vec<String> = dsts
                    .iter()
                    .map(|&n| {
                        let ni = &self.m.nodes[n];
                        if ni.pod_cidrs.is_empty() {
                            format!("{}'s pod subnet", ni.name)
                        } else {
                            let c: Vec<String> =
                                ni.pod_cidrs.iter().map(ToString::to_string).collect();
                            c.join(", ")
                        }
                    })
                    .collect();
                let all = dsts.len() + 1 >= self.m.nodes.len() && dsts.len() > 1;
                d = Draft::new(
                    Cause::Routing,
                    if dst_names.is_empty() {
                        format!("{name}'s routing table is missing pod routes")
                    } else if all {
                        format!(
                            "{name}'s routing table has no routes to the other nodes' pod subnets"
                        )
                    } else {
                        format!(
                            "{name}'s routing table has no route to the pod subnet of {}",
                            dst_names.join(", ")
                        )
                    },
                    if signalled > 0 { 0.9 } else { 0.75 },
                );
                d.nodes.insert(x);
                let fwd = pairs.iter().filter(|&&i| self.m.pairs[i].src == x).count();
                let back = pairs.len() - fwd;
                if signalled > 0 {
                    d.evidence.push(format!(
                        "pod probes from {name} answered \"net unreachable\" by {name} itself on {signalled} of {fwd} {}; {back} {} toward {name} time out (its replies have no route); node IPs answer", plural(fwd, "pair"), plural(back, "pair")
                    ));
                } else {
                    d.evidence.push(format!(
                        "pod IPs fail from {name} on {fwd} {} while those nodes' node IPs answer {name}; from their pods, {name}'s node IP and pod IPs fail alike ({back} {}) — {name}'s replies to their pod subnets have no route. No \"net unreachable\" in the windows (rate-limited or aged out); an ingress filter on {name} dropping their pod subnets looks the same",
                        plural(fwd, "pair"),
                        plural(back, "pair")
                    ));
                }
                d.evidence.extend(examples);
                d.evidence.push(self.error_summary(pairs));
                let probe_ip = dsts
                    .iter()
                    .next()
                    .and_then(|&n| self.m.nodes[n].pod_ip)
                    .map_or("<pod IP>".to_string(), |ip| ip.to_string());
                d.next_steps = vec![
                    format!("Runbook playbook 6 / diagnosis 5: on {name}, `ip route get {probe_ip}` and `ip route show` — expect a route to {} via that node's IP", subnets.first().cloned().unwrap_or_else(|| "each pod subnet".into())),
                    format!("Runbook diagnosis 6: CNI logs on {name} for route programming errors: `kubectl logs -n kube-system <cni-pod-on-{name}> | grep -i route`; restarting the CNI pod usually reprograms the routes"),
                ];
                if signalled == 0 {
                    d.next_steps.push(format!("If the routes are there: filters on {name} dropping those pod subnets, `nft list ruleset`, `iptables -S INPUT`, `iptables -S FORWARD`"));
                }
            }
            None => {
                let r = router.unwrap_or("?");
                d = Draft::new(
                    Cause::Routing,
                    format!("router {r} has no route for some pod subnets"),
                    0.75,
                );
                d.evidence.push(format!(
                    "{} failing pod paths were answered \"net unreachable\" by {r}, which is no node's address",
                    pairs.len()
                ));
                d.evidence.push(self.error_summary(pairs));
                d.next_steps = vec![
                    format!("Find {r}: `ip route get <pod IP>` on a source node; check that router's (or the VPC's) route table for the pod CIDRs"),
                ];
            }
        }
        d
    }

    pub(super) fn partial_node_draft(
        &self,
        cause: Cause,
        x: usize,
        others: &BTreeSet<usize>,
        pairs: &[usize],
    ) -> Draft {
        let name = self.name(x).to_string();
        let out = pairs.iter().filter(|&&i| self.m.pairs[i].src == x).count();
        let inn = pairs.len() - out;
        let names: Vec<&str> = others.iter().map(|&n| self.name(n)).collect();
        let what = if cause == Cause::Vpc {
            "node IPs and pod IPs"
        } else {
            "pod IPs (node IPs answer)"
        };
        let mut d = Draft::new(
            cause,
            format!(
                "{name} cannot exchange traffic with {} ({what})",
                names.join(", ")
            ),
            0.6,
        );
        d.nodes.insert(x);
        d.evidence.push(format!(
            "{out} pairs from {name} and {inn} pairs toward {name} fail on {what}; {name}'s other pairs work"
        ));
        d.evidence.push(self.error_summary(pairs));
        d.next_steps = if cause == Cause::Vpc {
            vec![
                format!("From {name}: `ping -c3 <node IP>` and `traceroute -n <node IP>` to each of {}", names.join(", ")),
                "Check security groups / NACLs / host firewalls (`nft list ruleset`, `iptables -S`) between these nodes".into(),
            ]
        } else {
            vec![
                format!("Runbook diagnosis 5: on {name}, `ip route show` and `ip route get <pod IP of each peer>`; on the peers, `ip route get <pod IP on {name}>`"),
                format!("Check filters on {name}: `nft list ruleset`, `iptables -S FORWARD`; and CNI logs on {name}"),
            ]
        };
        d
    }

    pub(super) fn pair_draft(&self, cause: Cause, a: usize, b: usize, pairs: &[usize]) -> Draft {
        let (na, nb) = (self.name(a).to_string(), self.name(b).to_string());
        let both = pairs.len() >= 2;
        // The direction that fails, and whether the other one was seen working.
        let (s, t) = {
            let pc = &self.m.pairs[pairs[0]];
            (pc.src, self.dst_node(pairs[0]).unwrap_or(b))
        };
        let reverse_ok = !both
            && self.pair_of.get(&(t, s)).is_some_and(|&r| {
                !net_failing(&self.states[r]) && pod_state(&self.states[r]) == CellState::Ok
            });
        let what = if cause == Cause::Vpc {
            "node IPs and pod IPs"
        } else {
            "pod IPs"
        };
        let summary = if both {
            format!("{na} and {nb} cannot reach each other's {what} (both directions)")
        } else {
            format!(
                "{} cannot reach {}'s {what} (one direction)",
                self.name(s),
                self.name(t)
            )
        };
        let mut d = Draft::new(cause, summary, if both { 0.6 } else { 0.5 });
        d.nodes.insert(a);
        d.nodes.insert(b);
        for &i in pairs {
            let pc = &self.m.pairs[i];
            let cells: Vec<String> = [POD, NODE, HTTP]
                .iter()
                .filter(|&&k| self.states[i][k] == CellState::Down)
                .map(|&k| {
                    let err = pc.layers[k]
                        .as_ref()
                        .and_then(|c| c.last_error.as_ref())
                        .map_or(String::new(), |e| format!(" ({})", e.describe()));
                    format!("{}{err}", crate::matrix::LAYERS[k].as_str())
                })
                .collect();
            d.evidence.push(format!(
                "{}: failing on {}",
                self.pair_label(i),
                cells.join(", ")
            ));
        }
        if reverse_ok {
            d.evidence.push(format!(
                "{} -> {} works: the fault is one-way (a filter, or an asymmetric route on {}'s egress or {}'s ingress)",
                self.name(t),
                self.name(s),
                self.name(s),
                self.name(t)
            ));
        }
        d.evidence.push("both nodes reach their other peers".into());
        d.next_steps = if cause == Cause::Vpc {
            vec![
                format!("From {na}: `ping -c3 <{nb} node IP>`, `traceroute -n <{nb} node IP>`; check security groups / NACLs / host firewalls between them"),
            ]
        } else {
            vec![
                {
                    // The failing source first: its table is the usual culprit (a deleted
                    // host-gw route); the destination's return route second.
                    let pod = |n: usize| {
                        self.m.nodes[n]
                            .pod_ip
                            .map_or(format!("<pod IP on {}>", self.name(n)), |ip| ip.to_string())
                    };
                    let via = self.m.nodes[t]
                        .node_ip
                        .map_or(String::new(), |ip| format!(" via {ip}"));
                    format!(
                        "Runbook diagnosis 5: on {}, `ip route get {}` and `ip route show` — expect a route to {}'s pod subnet{via}; then on {}, `ip route get {}` (the return path)",
                        self.name(s),
                        pod(t),
                        self.name(t),
                        self.name(t),
                        pod(s)
                    )
                },
                format!("Check filters on both nodes: `nft list ruleset`, `iptables -S FORWARD`"),
            ]
        };
        d
    }
}
