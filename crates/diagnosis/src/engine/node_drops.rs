//! Stage 4b, a node that drops new connections: every TCP endpoint on one node — its agent and
//! each of its targets — silently drops connections while its pod IPs answer ICMP, and the
//! agents of most other nodes do not. A NetworkPolicy selects pods, not a node; a full
//! conntrack table (or a host firewall dropping new flows) drops every new flow through the
//! node while the ICMP flows it already tracks pass. Folds the application stage's `policy`
//! drafts for that node (and its own agent's failing connections) into one `conntrack` draft.

use std::collections::{BTreeMap, BTreeSet};

use super::state::*;
use crate::matrix::AgentStatus;
use crate::report::Cause;

impl Engine<'_> {
    pub(super) fn node_drops_stage(&mut self) {
        // `policy` drafts of one node: its agent's, and its targets'.
        let mut agent_of: BTreeMap<usize, usize> = BTreeMap::new();
        let mut targets_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (k, d) in self.drafts.iter().enumerate() {
            if d.cause != Cause::Policy || d.nodes.len() != 1 {
                continue;
            }
            let x = *d.nodes.iter().next().expect("one node");
            if d.targets.is_empty() {
                agent_of.insert(x, k);
            } else {
                targets_of.entry(x).or_default().push(k);
            }
        }
        // Most agents dropped alike: a policy on the agents, not a node.
        if agent_of.is_empty() || 2 * agent_of.len() >= self.m.nodes.len() {
            return;
        }
        // Folded draft → the draft it went into.
        let mut dropped: BTreeMap<usize, usize> = BTreeMap::new();
        for (&x, &agent) in &agent_of {
            let Some(ts) = targets_of.get(&x) else {
                continue; // no target on it to tell a node from the agent's own pod
            };
            let on_x: BTreeSet<usize> = (0..self.m.targets.len())
                .filter(|&t| self.m.targets[t].node == Some(x))
                .collect();
            let refused: BTreeSet<usize> = ts
                .iter()
                .flat_map(|&k| self.drafts[k].targets.iter().copied())
                .collect();
            if on_x.is_empty() || !on_x.is_subset(&refused) {
                continue;
            }
            // The node's own outbound connections failing, when its agent still reports.
            let outbound: Vec<usize> = (0..self.drafts.len())
                .filter(|&k| {
                    k != agent
                        && !ts.contains(&k)
                        && matches!(self.drafts[k].cause, Cause::Policy | Cause::Application)
                        && !self.drafts[k].pairs.is_empty()
                        && self.drafts[k].pairs.iter().all(|(s, _)| *s == x)
                })
                .collect();
            let heir = self.drafts.len();
            for k in self.fold_node_drops(x, agent, ts, &outbound) {
                dropped.insert(k, heir);
            }
        }
        self.drop_drafts(&dropped);
    }

    /// Push the `conntrack` draft for node `x`; returns the drafts it absorbed.
    fn fold_node_drops(
        &mut self,
        x: usize,
        agent: usize,
        targets: &[usize],
        outbound: &[usize],
    ) -> Vec<usize> {
        let name = self.name(x).to_string();
        let mut d = Draft::new(
            Cause::Conntrack,
            format!("{name} drops new connections to its pods: every TCP connection to them is silently dropped while they answer ICMP — its conntrack table is full, or a host firewall drops new flows"),
            0.7,
        );
        d.nodes.insert(x);
        let absorbed: Vec<usize> = std::iter::once(agent)
            .chain(targets.iter().copied())
            .chain(outbound.iter().copied())
            .collect();
        for &k in &absorbed {
            let from = &self.drafts[k];
            d.pairs.extend(from.pairs.iter().copied());
            d.targets.extend(from.targets.iter().copied());
            if let Some(e) = from.evidence.first() {
                d.evidence.push(e.clone());
            }
        }
        let others = self
            .m
            .nodes
            .iter()
            .enumerate()
            .filter(|(n, info)| *n != x && info.agent == AgentStatus::Reporting)
            .count();
        d.evidence.push(format!(
            "the agents of the {others} other reporting nodes accept connections: a NetworkPolicy selects pods, not a node"
        ));
        if self.m.nodes[x].agent != AgentStatus::Reporting {
            d.evidence.push(format!(
                "{name}'s agent did not answer HTTP either: its results could not be gathered"
            ));
        } else if !outbound.is_empty() {
            let n = d.pairs.iter().filter(|(s, _)| *s == x).count();
            d.evidence.push(format!(
                "from {name}'s agent, new connections fail too ({n} destinations): both ways, as a full conntrack table drops them"
            ));
        }
        d.next_steps = vec![
            format!("On {name}: `dmesg | grep -i conntrack` (\"nf_conntrack: table full, dropping packet\"), `cat /proc/sys/net/netfilter/nf_conntrack_count /proc/sys/net/netfilter/nf_conntrack_max`, `conntrack -S` (drop, insert_failed)"),
            "Who fills it: `conntrack -L | awk '{print $4, $5}' | sort | uniq -c | sort -rn | head`; raise the limit (`sysctl net.netfilter.nf_conntrack_max`, kube-proxy's `conntrack.maxPerCore`)".into(),
            format!("A host firewall instead: on {name}, `nft list ruleset | grep -B3 'ct state new'` and `iptables -S | grep -iE 'state NEW|ctstate NEW'`"),
        ];
        self.drafts.push(d);
        absorbed
    }

    /// Remove the drafts folded into others (`dropped`: draft → its heir), pointing what
    /// referred to them at their heir.
    fn drop_drafts(&mut self, dropped: &BTreeMap<usize, usize>) {
        if dropped.is_empty() {
            return;
        }
        let heir = |k: usize| *dropped.get(&k).unwrap_or(&k);
        // New indices: the kept drafts in order.
        let mut new_index: Vec<Option<usize>> = vec![None; self.drafts.len()];
        let mut next = 0;
        for (k, slot) in new_index.iter_mut().enumerate() {
            if !dropped.contains_key(&k) {
                *slot = Some(next);
                next += 1;
            }
        }
        let remap = |k: usize| new_index[heir(k)].expect("an heir is kept");
        for v in self.explained.values_mut() {
            *v = remap(*v);
        }
        for v in self.node_finding.values_mut() {
            *v = remap(*v);
        }
        for v in self.zone_finding.values_mut() {
            *v = remap(*v);
        }
        for r in self.egress_finding.values_mut() {
            r.draft = remap(r.draft);
        }
        let drafts = std::mem::take(&mut self.drafts);
        self.drafts = drafts
            .into_iter()
            .enumerate()
            .filter(|(k, _)| !dropped.contains_key(k))
            .map(|(_, d)| d)
            .collect();
    }
}
