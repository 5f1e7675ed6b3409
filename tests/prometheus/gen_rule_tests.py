#!/usr/bin/env python3
"""Generates deploy/prometheus/meshprobe-rules.test.yaml, the promtool unit tests of the rules.

Each scenario describes a 4-node, 2-zone mesh (node-1, node-3 in zone-a; node-2, node-4 in
zone-b, like the lab) as functions of time; the series the agents would export are sampled
from them every 15 s. Expected alerts are written here by hand, per scenario; only the
annotation text is rendered from the rules' templates (a tiny renderer for the few template
forms the rules use), so a wrong label in a template still fails.

Run: python3 tests/prometheus/gen_rule_tests.py > deploy/prometheus/meshprobe-rules.test.yaml
(tests/prometheus_e2e.rs checks the committed file is what this prints).
"""
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(HERE, "..", "..", "deploy", "prometheus", "meshprobe-rules.yaml")
STEP = 15  # seconds between samples (the scrape interval)
NODES = {"node-1": "zone-a", "node-2": "zone-b", "node-3": "zone-a", "node-4": "zone-b"}
LAYERS = ["icmp_pod", "icmp_node", "http"]
ALERTS = [r["alert"] for g in yaml.safe_load(open(RULES))["groups"] for r in g["rules"] if "alert" in r]
RULE_BY_NAME = {r["alert"]: r for g in yaml.safe_load(open(RULES))["groups"] for r in g["rules"] if "alert" in r}


def steps(minutes):
    return int(minutes * 60 // STEP) + 1


def compress(values):
    """[v, v, v, None, ...] -> promtool's expanding notation ('_' = no sample, 'stale' ends a series)."""
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        v = values[i]
        tok = "_" if v is None else ("stale" if v == "stale" else fmt(v))
        n = j - i
        if tok == "stale":
            out.extend(["stale"] * (n + 1))
        elif tok == "_":
            # promtool's `_xN` is N missing samples (`VxN` is N + 1 samples of V).
            out.append("_" if n == 0 else f"_x{n + 1}")
        else:
            out.append(tok if n == 0 else f"{tok}x{n}")
        i = j + 1
    return " ".join(out)


def with_stale(values):
    """A sample of None right after a real one becomes a staleness marker (the series ended)."""
    out = list(values)
    for i in range(1, len(out)):
        if out[i] is None and values[i - 1] is not None:
            out[i] = "stale"
    return out


def fmt(v):
    if isinstance(v, float) and not v.is_integer():
        return repr(v)
    return str(int(v))


def labels(d):
    # Prometheus drops empty labels on ingestion (a target's dst_zone="").
    return "{" + ", ".join(f'{k}="{v}"' for k, v in d.items() if v != "") + "}"


def pair_labels(src, dst, layer, dst_kind="peer", nodes=NODES, family=""):
    # family "": a series from an agent before address families (no label at all).
    return {
        "job": "meshprobe",
        "instance": f"{src}:9464",
        "src_node": src,
        "src_zone": nodes[src],
        "dst_kind": dst_kind,
        "dst": dst,
        "dst_zone": nodes.get(dst, "") if dst_kind == "peer" else "",
        "layer": layer,
        "family": family,
    }


# The agents' per-source checks (meshprobe_check_up) and their targets, as under Kubernetes
# discovery: the agents' Service name, the agents' ClusterIP (`--service`), the `kubernetes`
# Service's ClusterIP and the API server's endpoint addresses (two control-plane nodes).
CHECKS = {"dns": "meshprobe.meshprobe.svc.cluster.local.", "service": "10.96.0.20:9464",
          "apiserver": "10.96.0.1:443", "apiserver_endpoints": "172.16.0.10:6443,172.16.0.11:6443"}


def check_labels(src, check, nodes=NODES):
    return {"job": "meshprobe", "instance": f"{src}:9464", "src_node": src, "src_zone": nodes[src],
            "check": check, "target": CHECKS[check]}


class Scenario:
    """A mesh over `minutes`; `fails(t, src, dst, layer)` gives consecutive failures or None.

    families: None, single-family agents from before the `family` label (no label); else the
    families every pair is probed at (dual-stack agents), and `fails(t, src, dst, layer, family)`.
    """

    def __init__(self, name, minutes, fails=None, agent_up=None, nodes=NODES, extra=None, plan=None,
                 families=None, check_fails=None):
        self.name, self.minutes, self.nodes = name, minutes, nodes
        self.families = families
        # plan: None, a full mesh exporting every pair (--pair-metrics all); else src -> the
        # peers it probes, exporting failing destinations only plus meshprobe_pair_planned (the
        # agents' default `auto` on a sampled plan).
        self.plan = plan
        fails = fails or (lambda t, s, d, l, f="": 0)
        # One signature inside: (t, src, dst, layer, family), family "" without families.
        self.fails = fails if families else (lambda t, s, d, l, f="": fails(t, s, d, l))
        self.agent_up = agent_up or (lambda t, n: True)
        self.extra = extra or []
        # check_fails: None, no per-source check configured (no meshprobe_check_up at all);
        # else (t, node, check) -> True (the last run failed), False (passed), None (not
        # configured on that node); exported while the node's agent is scraped.
        self.check_fails = check_fails
        self.checks = []
        self.exprs = []

    def series(self):
        n = steps(self.minutes)
        out = []
        for src in self.nodes:
            # agent_up: True (scraped), False (target there, scrape failing), None (no target yet).
            up = [self.agent_up(i * STEP, src) for i in range(n)]
            out.append((f'up{labels({"job": "meshprobe", "instance": f"{src}:9464"})}',
                        with_stale([None if u is None else (1 if u else 0) for u in up])))
            out.append((f'meshprobe_agent_info{labels({"job": "meshprobe", "instance": f"{src}:9464", "node": src, "zone": self.nodes[src], "version": "0.1.0", "icmp_socket": "raw"})}',
                        with_stale([1 if u else None for u in up])))
            peers = [d for d in self.nodes if d != src] if self.plan is None else self.plan[src]
            for dst in peers:
                if self.plan is not None:
                    pl = {k: v for k, v in pair_labels(src, dst, "", nodes=self.nodes).items() if k != "layer"}
                    out.append((f"meshprobe_pair_planned{labels(pl)}", with_stale([1 if u else None for u in up])))
                for layer in LAYERS:
                    for fam in self.families or [""]:
                        vals = []
                        for i in range(n):
                            t = i * STEP
                            shown = up[i] and (self.plan is None or self.failing_within(t, src, dst))
                            vals.append(self.fails(t, src, dst, layer, fam) if shown else None)
                        lb = pair_labels(src, dst, layer, nodes=self.nodes, family=fam)
                        out.append((f"meshprobe_pair_consecutive_failures{labels(lb)}", with_stale(vals)))
            for check in CHECKS if self.check_fails else []:
                vals = []
                for i in range(n):
                    f = self.check_fails(i * STEP, src, check) if up[i] else None
                    vals.append(None if f is None else (0 if f else 1))
                out.append((f"meshprobe_check_up{labels(check_labels(src, check, self.nodes))}", with_stale(vals)))
        for name, fn in self.extra:
            vals = with_stale([fn(i * STEP) for i in range(n)])
            out.append((name, vals))
        return [{"series": s, "values": compress(v)} for s, v in out]

    def failing_within(self, t, src, dst, window=60):
        """A failing destination is exported: a failed probe on any layer inside the window, at
        any family (the agent exports every family of a destination failing at one)."""
        return any((self.fails(u, src, dst, l, f) or 0) > 0
                   for u in range(max(0, t - window), t + 1, STEP) for l in LAYERS
                   for f in self.families or [""])

    def expect(self, at, alert, alerts):
        """At `at` (e.g. '3m'), `alert` has exactly `alerts`: a list of (labels, $value)."""
        self.checks.append((at, alert, alerts))
        return self

    def quiet(self, at, except_=()):
        for a in ALERTS:
            if a not in except_:
                self.expect(at, a, [])
        return self

    def test(self):
        rules = []
        for at, alert, alerts in self.checks:
            exp = []
            for lbls, value in alerts:
                rule = RULE_BY_NAME[alert]
                full = {k: v for k, v in lbls.items() if v != ""}
                full.update(rule.get("labels", {}))
                exp.append({
                    "exp_labels": full,
                    "exp_annotations": {k: render(v, lbls, value) for k, v in rule["annotations"].items()},
                })
            rules.append({"eval_time": at, "alertname": alert, "exp_alerts": exp})
        t = {"name": self.name, "interval": f"{STEP}s", "input_series": self.series(),
             "alert_rule_test": rules}
        if self.exprs:
            t["promql_expr_test"] = self.exprs
        return t


def humanize(v):
    # Prometheus's humanize: %.4g with SI prefixes; the rules only feed it values in 0..100.
    return ("%.4g" % v)


def render(text, lbls, value):
    """The template forms the rules use: {{ $labels.x }}, {{ $value }}, with humanizePercentage or
    printf, and {{ if $labels.x }}…{{ end }} (kept when the label is non-empty; not nested)."""
    def cond(m):
        return m.group(2) if lbls.get(m.group(1), "") != "" else ""

    def sub(m):
        e = m.group(1).strip()
        if e.startswith("$labels."):
            return str(lbls.get(e[len("$labels."):], ""))
        if e == "$value":
            return fmt(float(value))
        if e == "$value | humanizePercentage":
            return humanize(float(value) * 100) + "%"
        pm = re.fullmatch(r'\$value \| printf "([^"]+)"', e)
        if pm:
            return pm.group(1) % float(value)
        raise SystemExit(f"template form not understood by the generator: {e}")
    text = re.sub(r"\{\{ if \$labels\.(\w+) \}\}(.*?)\{\{ end \}\}", cond, text, flags=re.S)
    return re.sub(r"\{\{(.*?)\}\}", sub, text)


def pair_alert(src, dst, layer, nodes=NODES, dst_kind="peer", family=""):
    return pair_labels(src, dst, layer, dst_kind=dst_kind, nodes=nodes, family=family)


def zone(n):
    return NODES[n]


scenarios = []

# Healthy mesh: nothing fires.
scenarios.append(Scenario("healthy mesh: no alert", 12).quiet("5m").quiet("11m"))

# A single failed probe, and two in a row for 30 s: neither fires (for: 1m and >= 2 in a row).
def blips(t, s, d, l):
    if (s, d, l) == ("node-1", "node-2", "icmp_pod") and 60 <= t < 75:
        return 1
    if (s, d, l) == ("node-3", "node-4", "http") and 120 <= t < 150:
        return 2 if t < 135 else 3
    return 0
scenarios.append(Scenario("a single failed probe and a 30 s blip do not fire", 8, blips)
                 .quiet("1m15s").quiet("2m15s").quiet("4m"))

# One directed pair down on icmp_pod (a routing fault on one path).
def one_pair(t, s, d, l):
    return (2 + (t - 60) // 5) if (s, d, l) == ("node-1", "node-2", "icmp_pod") and t >= 60 else 0
sc = Scenario("one pair down: MeshprobePodToPodUnreachable for that pair only", 6, one_pair)
sc.quiet("1m30s")
sc.expect("1m30s", "MeshprobePodToPodUnreachable", [])  # pending, not firing yet
sc.quiet("3m", except_=["MeshprobePodToPodUnreachable"])
sc.expect("3m", "MeshprobePodToPodUnreachable",
          [(pair_alert("node-1", "node-2", "icmp_pod"), 2 + (180 - 60) // 5)])
scenarios.append(sc)

# CNI on node-3: its pod IP dead both ways (ICMP pod and HTTP), its node IP fine.
def cni(t, s, d, l):
    if t >= 60 and l in ("icmp_pod", "http") and "node-3" in (s, d):
        return 3
    return 0
sc = Scenario("CNI broken on node-3: MeshprobeNodePodNetworkIsolated, no per-pair noise", 6, cni)
sc.quiet("3m", except_=["MeshprobeNodePodNetworkIsolated"])
sc.expect("3m", "MeshprobeNodePodNetworkIsolated", [(
    {"dst": "node-3", "dst_kind": "peer", "dst_zone": "zone-a", "layer": "icmp_pod"}, 1.0)])
sc.exprs.append({"expr": 'meshprobe:src_down_peers:ratio{layer="icmp_pod"} > 0.5', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:src_down_peers:ratio",
                                                    "layer": "icmp_pod", "src_node": "node-3", "src_zone": "zone-a"}),
                                  "value": 1}]})
scenarios.append(sc)

# node-4 down: every layer to it dead, its agent gone (no series, up 0).
def node4_down(t, s, d, l):
    return 4 if t >= 60 and d == "node-4" else 0
sc = Scenario("node-4 down: MeshprobeNodeDown, then MeshprobeAgentDown/Missing; no partition",
              10, node4_down, agent_up=lambda t, n: not (n == "node-4" and t >= 60))
sc.quiet("2m", except_=["MeshprobeNodeDown"])
sc.expect("2m", "MeshprobeNodeDown", [({"dst": "node-4", "dst_zone": "zone-b"}, 1.0)])
sc.expect("9m", "MeshprobeAgentDown", [({"job": "meshprobe", "instance": "node-4:9464"}, 0)])
sc.expect("9m", "MeshprobeAgentMissing", [({"dst": "node-4", "dst_zone": "zone-b"}, 3)])
sc.expect("9m", "MeshprobeZonePartition", [])
sc.expect("9m", "MeshprobePodToPodUnreachable", [])
scenarios.append(sc)

# node-4 goes NotReady in Kubernetes (held by every agent 30 s after its probes start failing,
# well inside the alerts' for:), then dies: no node, pair or agent-missing alert from the mesh;
# only the scrape alert for its own agent.
def held_series():
    return [(f'meshprobe_discovery_held{labels({"job": "meshprobe", "instance": f"{src}:9464", "dst": "node-4", "reason": "node_not_ready"})}',
             lambda t: 1 if t >= 90 else None)
            for src in NODES if src != "node-4"]
sc = Scenario("node-4 NotReady (held) and down: no mesh alert, only its agent's scrape", 10, node4_down,
              agent_up=lambda t, n: not (n == "node-4" and t >= 60), extra=held_series())
sc.quiet("2m")
for at in ["4m", "9m"]:
    sc.quiet(at, except_=["MeshprobeAgentDown"])
    sc.expect(at, "MeshprobeAgentDown", [({"job": "meshprobe", "instance": "node-4:9464"}, 0)])
scenarios.append(sc)

def expect_ab_partition(sc):
    """At 3m: MeshprobeZonePartition zone-a -> zone-b and back, fully down, and no other alert."""
    sc.quiet("3m", except_=["MeshprobeZonePartition"])
    sc.expect("3m", "MeshprobeZonePartition", [
        ({"layer": "icmp_node", "src_zone": "zone-a", "dst_zone": "zone-b"}, 1.0),
        ({"layer": "icmp_node", "src_zone": "zone-b", "dst_zone": "zone-a"}, 1.0)])


# Zone partition: every cross-zone pair dead on every layer.
def partition(t, s, d, l):
    return 3 if t >= 60 and zone(s) != zone(d) else 0
sc = Scenario("zone-a | zone-b partition: MeshprobeZonePartition both ways, no node alerts", 6, partition)
expect_ab_partition(sc)
# The zone ratios: cross-zone keys only in the cross ratio (4 pairs each way, all down), and
# each zone's 2 same-zone pairs up.
sc.exprs.append({"expr": 'meshprobe:zone_pair_down:ratio{layer="icmp_node"}', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:zone_pair_down:ratio", "layer": "icmp_node",
                                                    "src_zone": a, "dst_zone": b}), "value": 1.0}
                                 for a, b in (("zone-a", "zone-b"), ("zone-b", "zone-a"))]})
sc.exprs.append({"expr": 'meshprobe:zone_intra_down:ratio{layer="icmp_node"}', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:zone_intra_down:ratio", "layer": "icmp_node",
                                                    "src_zone": z}), "value": 0.0} for z in ("zone-a", "zone-b")]})
scenarios.append(sc)

# Agent restart: node-2's agent is gone for 45 s (up 0, no series), then back with fresh windows.
sc = Scenario("an agent restart does not fire", 8,
              agent_up=lambda t, n: not (n == "node-2" and 120 <= t < 165))
sc.quiet("2m30s").quiet("3m").quiet("5m").quiet("7m")
scenarios.append(sc)

# A node joining: node-5 appears in the peer sets at 2m; its agent starts 45 s later, so its
# peers fail to reach it for 45 s (consecutive failures 2..4), then it answers.
JOIN = dict(NODES, **{"node-5": "zone-a"})
def joining_fails(t, s, d, l):
    if "node-5" in (s, d) and t < 120:
        return None
    if d == "node-5" and t < 165:
        return 2 + (t - 120) // 15
    return 0
sc = Scenario("a node joining does not fire", 8, joining_fails, nodes=JOIN,
              agent_up=lambda t, n: None if (n == "node-5" and t < 120) else not (n == "node-5" and t < 165))
sc.quiet("2m30s").quiet("3m").quiet("4m").quiet("7m")
scenarios.append(sc)

# Path MTU: node-1 -> node-2 mismatch at 1400, node-3 -> node-4 black hole (1200 found).
def mtu_series():
    out = []
    for src, dst, state, mtu in [("node-1", "node-2", "mismatch", 1400),
                                 ("node-3", "node-4", "blackhole", 1200),
                                 ("node-2", "node-1", "ok", 1500)]:
        lb = pair_labels(src, dst, "icmp_pod")
        out.append((f"meshprobe_pair_path_mtu_bytes{labels(lb)}",
                    lambda t, mtu=mtu: 1500 if t < 60 else mtu))
        out.append((f"meshprobe_pair_expected_mtu_bytes{labels(lb)}", lambda t: 1500))
        for st in ["ok", state]:
            out.append((f"meshprobe_pair_mtu_state{labels(dict(lb, state=st))}",
                        lambda t, st=st, state=state: (1 if (st == "ok") == (t < 60) else None)
                        if state != "ok" else 1))
    return out
sc = Scenario("path MTU: a mismatch and a black hole, each its own alert", 6, extra=mtu_series())
sc.quiet("2m")
sc.quiet("4m", except_=["MeshprobePathMtuBelowExpected", "MeshprobeMtuBlackHole"])
sc.expect("4m", "MeshprobePathMtuBelowExpected", [(pair_alert("node-1", "node-2", "icmp_pod"), 1400)])
sc.expect("4m", "MeshprobeMtuBlackHole", [(dict(pair_alert("node-3", "node-4", "icmp_pod"), state="blackhole"), 1)])
scenarios.append(sc)

# Packet loss: node-2 -> node-4 at 10% for 10 min fires; 2.8% (one echo in 36) never; a failed
# probe's 8% for the 60 s it stays in the window never.
def loss_series():
    out = []
    for src, dst, f in [("node-2", "node-4", lambda t: 0.1 if t >= 60 else 0.0),
                        ("node-1", "node-3", lambda t: 0.028),
                        ("node-3", "node-1", lambda t: 0.083 if 120 <= t < 180 else 0.0)]:
        out.append((f"meshprobe_pair_loss_ratio{labels(pair_labels(src, dst, 'icmp_pod'))}", f))
    return out
sc = Scenario("packet loss: 10% for 5 min fires, 2.8% and one failed probe do not", 10, extra=loss_series())
sc.quiet("3m").quiet("5m")
sc.quiet("7m", except_=["MeshprobePacketLoss"])
sc.expect("7m", "MeshprobePacketLoss", [(pair_alert("node-2", "node-4", "icmp_pod"), 0.1)])
scenarios.append(sc)

# A selected target unreachable from 2 of the 4 agents over HTTP.
def target_series():
    out = []
    for src in NODES:
        bad = src in ("node-1", "node-2")
        out.append((f"meshprobe_pair_consecutive_failures{labels(pair_labels(src, 'web-1', 'http', dst_kind='target'))}",
                    lambda t, bad=bad: 5 if bad and t >= 60 else 0))
        out.append((f"meshprobe_pair_consecutive_failures{labels(pair_labels(src, 'web-1', 'icmp_pod', dst_kind='target'))}",
                    lambda t: 0))
    return out
sc = Scenario("target unreachable from half the agents", 5, extra=target_series())
sc.quiet("1m30s")
sc.quiet("3m", except_=["MeshprobeTargetUnreachable"])
sc.expect("3m", "MeshprobeTargetUnreachable", [(
    {"dst": "web-1", "dst_kind": "target", "layer": "http"}, 0.5)])
scenarios.append(sc)

# No agent at all: only AgentsAbsent, after 10 minutes.
absent = Scenario("no agent scraped at all: MeshprobeAgentsAbsent after 10 min", 12,
                  nodes={})
absent.extra = [('some_other_metric{job="node"}', lambda t: 1)]
absent.quiet("9m")
absent.quiet("11m", except_=["MeshprobeAgentsAbsent"])
absent.expect("11m", "MeshprobeAgentsAbsent", [({}, 1)])
scenarios.append(absent)

# The sampled plan: 12 nodes in 3 zones (node-i in zone-a/b/c by i mod 3); node-i probes
# node-(i+1), (i+2), (i+3) and (i+6) (mod 12): 4 peers each, 4 probers each, same-zone and
# cross-zone pairs, every zone pair. Healthy pairs export no series, only their planned one:
# without it, one failing source of a destination is every source that exports.
S_NODES = {f"node-{i}": "zone-" + "abc"[i % 3] for i in range(1, 13)}
S_PLAN = {f"node-{i}": [f"node-{(i - 1 + k) % 12 + 1}" for k in (1, 2, 3, 6)] for i in range(1, 13)}
assert all(sum(s in S_PLAN[x] for x in S_PLAN) == 4 for s in S_NODES)


def sampled(name, minutes, fails=None, agent_up=None):
    return Scenario("sampled plan: " + name, minutes, fails, agent_up=agent_up, nodes=S_NODES, plan=S_PLAN)


scenarios.append(sampled("healthy, failing destinations exported only: no alert", 6).quiet("5m"))

# node-1 lost its route to node-2's pod subnet (node-2 is one of node-1's 4 peers): both
# directions fail on the pod layers; node-2's 3 other probers and node-1's 3 other peers are
# fine. The pair alert fires for exactly those pairs; no node or zone alert.
def s_route(t, s, d, l):
    if t >= 60 and l in ("icmp_pod", "http") and (s, d) in (("node-1", "node-2"), ("node-2", "node-1")):
        return 2 + (t - 60) // 15
    return 0
assert "node-2" in S_PLAN["node-1"] and "node-1" not in S_PLAN["node-2"]
sc = sampled("route node-1 -> node-2: MeshprobePodToPodUnreachable for that pair only", 6, s_route)
sc.quiet("3m", except_=["MeshprobePodToPodUnreachable"])
sc.expect("3m", "MeshprobePodToPodUnreachable",
          [(pair_alert("node-1", "node-2", l, nodes=S_NODES), 2 + (180 - 60) // 15) for l in ("icmp_pod", "http")])
sc.exprs.append({"expr": 'meshprobe:dst_down_sources:ratio{dst="node-2", layer="icmp_pod"}', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:dst_down_sources:ratio", "dst": "node-2",
                                                    "dst_kind": "peer", "dst_zone": S_NODES["node-2"], "layer": "icmp_pod"}),
                                  "value": 0.25}]})
# Its zone pair's ratio: the one down pair over every planned pair from its source zone to its
# destination zone (only that zone pair has an exported pair: the others have no series).
S_ZB, S_ZC = S_NODES["node-1"], S_NODES["node-2"]
S_BC = sum(S_NODES[s] == S_ZB and S_NODES[d] == S_ZC for s in S_PLAN for d in S_PLAN[s])
sc.exprs.append({"expr": 'meshprobe:zone_pair_down:ratio{layer="icmp_pod"}', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:zone_pair_down:ratio", "layer": "icmp_pod",
                                                    "src_zone": S_ZB, "dst_zone": S_ZC}), "value": 1 / S_BC}]})
scenarios.append(sc)

# CNI on node-5: its pod IP dead both ways, its node IP fine, its agent still scraped.
def s_cni(t, s, d, l):
    return 3 if t >= 60 and l in ("icmp_pod", "http") and "node-5" in (s, d) else 0
sc = sampled("CNI broken on node-5: MeshprobeNodePodNetworkIsolated only", 6, s_cni)
sc.quiet("3m", except_=["MeshprobeNodePodNetworkIsolated"])
sc.expect("3m", "MeshprobeNodePodNetworkIsolated", [(
    {"dst": "node-5", "dst_kind": "peer", "dst_zone": S_NODES["node-5"], "layer": "icmp_pod"}, 1.0)])
scenarios.append(sc)

# node-7 down: every layer to it dead, its agent gone.
def s_down(t, s, d, l):
    return 4 if t >= 60 and d == "node-7" else 0
sc = sampled("node-7 down: MeshprobeNodeDown, then MeshprobeAgentDown/Missing", 10, s_down,
             agent_up=lambda t, n: not (n == "node-7" and t >= 60))
sc.quiet("2m", except_=["MeshprobeNodeDown"])
sc.expect("2m", "MeshprobeNodeDown", [({"dst": "node-7", "dst_zone": S_NODES["node-7"]}, 1.0)])
sc.quiet("9m", except_=["MeshprobeNodeDown", "MeshprobeAgentDown", "MeshprobeAgentMissing"])
sc.expect("9m", "MeshprobeAgentDown", [({"job": "meshprobe", "instance": "node-7:9464"}, 0)])
sc.expect("9m", "MeshprobeAgentMissing", [({"dst": "node-7", "dst_zone": S_NODES["node-7"]}, 4)])
scenarios.append(sc)

# node-7's agent pod gone (no scrape target at all) while its network is fine: no pair to it
# fails, so only the planned pairs say that 4 agents probe it.
sc = sampled("node-7's agent missing, its network fine: MeshprobeAgentMissing only", 10,
             agent_up=lambda t, n: None if (n == "node-7" and t >= 60) else True)
sc.quiet("9m", except_=["MeshprobeAgentMissing"])
sc.expect("9m", "MeshprobeAgentMissing", [({"dst": "node-7", "dst_zone": S_NODES["node-7"]}, 4)])
scenarios.append(sc)

# zone-a | zone-b partition: every pair between them dead; zone-c reaches both.
def s_partition(t, s, d, l):
    return 3 if t >= 60 and {S_NODES[s], S_NODES[d]} == {"zone-a", "zone-b"} else 0
sc = sampled("zone-a | zone-b partition: MeshprobeZonePartition both ways only", 6, s_partition)
expect_ab_partition(sc)
scenarios.append(sc)

# A partition on a sampled plan where node-4 (zone-b) has most of its probers in zone-a: 3 of
# its 5 sources find it down, and only zone-a's exports pairs to it — zone-b's healthy probers
# export nothing. A node its own zone reaches is not down: no MeshprobeNodeDown (at 5,000
# nodes, 469 such nodes went pending during a zone partition).
P_NODES = {"node-1": "zone-a", "node-2": "zone-a", "node-3": "zone-a",
           "node-4": "zone-b", "node-5": "zone-b", "node-6": "zone-b"}
P_PLAN = {"node-1": ["node-2", "node-4"], "node-2": ["node-3", "node-4"], "node-3": ["node-1", "node-4"],
          "node-4": ["node-5", "node-1"], "node-5": ["node-6", "node-4"], "node-6": ["node-4", "node-2"]}
def p_partition(t, s, d, l):
    return 3 if t >= 60 and P_NODES[s] != P_NODES[d] else 0
sc = Scenario("sampled plan, zone-a | zone-b partition, node-4 probed mostly across it: MeshprobeZonePartition only",
              6, p_partition, nodes=P_NODES, plan=P_PLAN)
expect_ab_partition(sc)
sc.exprs.append({"expr": 'meshprobe:dst_down_sources:ratio{dst="node-4", layer="icmp_node"}', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:dst_down_sources:ratio", "dst": "node-4",
                                                    "dst_kind": "peer", "dst_zone": "zone-b", "layer": "icmp_node"}),
                                  "value": 0.6}]})
scenarios.append(sc)

# Dual-stack: agents probe every pair at both families, each series labelled `family`. A fault
# on one family must read at its full ratio in that family (not half of a mix of both) and alert
# in that family only; a fault on both alerts once per family.
DUAL = ["ipv4", "ipv6"]


def dual(name, minutes, fails=None, agent_up=None, **kw):
    return Scenario("dual-stack: " + name, minutes, fails, agent_up=agent_up, families=DUAL, **kw)


scenarios.append(dual("healthy mesh, both families: no alert", 6).quiet("3m").quiet("5m"))

# CNI on node-3 for IPv6 only: its IPv6 pod address dead both ways, everything else fine.
def d_cni(t, s, d, l, f):
    return 3 if t >= 60 and f == "ipv6" and l in ("icmp_pod", "http") and "node-3" in (s, d) else 0
sc = dual("CNI broken on node-3 for IPv6: MeshprobeNodePodNetworkIsolated for ipv6 only", 6, d_cni)
sc.quiet("3m", except_=["MeshprobeNodePodNetworkIsolated"])
sc.expect("3m", "MeshprobeNodePodNetworkIsolated", [(
    {"dst": "node-3", "dst_kind": "peer", "dst_zone": "zone-a", "layer": "icmp_pod", "family": "ipv6"}, 1.0)])
sc.exprs.append({"expr": 'meshprobe:dst_down_sources:ratio{dst="node-3", layer="icmp_pod"}', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:dst_down_sources:ratio", "dst": "node-3",
                                                    "dst_kind": "peer", "dst_zone": "zone-a", "family": f, "layer": "icmp_pod"}),
                                  "value": v} for f, v in (("ipv4", 0), ("ipv6", 1))]})
scenarios.append(sc)

# node-1 and node-2 lost their IPv6 routes to each other's pods (both directions), IPv4 fine.
def d_route(t, s, d, l, f):
    if t >= 60 and f == "ipv6" and l in ("icmp_pod", "http") and {s, d} == {"node-1", "node-2"}:
        return 2 + (t - 60) // 15
    return 0
sc = dual("IPv6 route node-1 <-> node-2: MeshprobePodToPodUnreachable for ipv6 only", 6, d_route)
sc.quiet("3m", except_=["MeshprobePodToPodUnreachable"])
sc.expect("3m", "MeshprobePodToPodUnreachable",
          [(pair_alert(a, b, l, family="ipv6"), 2 + (180 - 60) // 15)
           for a, b in (("node-1", "node-2"), ("node-2", "node-1")) for l in ("icmp_pod", "http")])
scenarios.append(sc)

# node-4 down: both families dead, its agent gone. One MeshprobeNodeDown per family;
# MeshprobeAgentMissing counts the 3 agents probing it, not their 6 families' series.
def d_node4_down(t, s, d, l, f):
    return 4 if t >= 60 and d == "node-4" else 0
sc = dual("node-4 down: MeshprobeNodeDown once per family, MeshprobeAgentMissing once", 10, d_node4_down,
          agent_up=lambda t, n: not (n == "node-4" and t >= 60))
sc.quiet("2m", except_=["MeshprobeNodeDown"])
sc.expect("2m", "MeshprobeNodeDown", [({"dst": "node-4", "dst_zone": "zone-b", "family": f}, 1.0) for f in DUAL])
sc.quiet("9m", except_=["MeshprobeNodeDown", "MeshprobeAgentDown", "MeshprobeAgentMissing"])
sc.expect("9m", "MeshprobeAgentDown", [({"job": "meshprobe", "instance": "node-4:9464"}, 0)])
sc.expect("9m", "MeshprobeAgentMissing", [({"dst": "node-4", "dst_zone": "zone-b"}, 3)])
scenarios.append(sc)

# zone-a | zone-b partition for IPv6 only (a filter on IPv6 transit): the partition in ipv6.
def d_partition(t, s, d, l, f):
    return 3 if t >= 60 and f == "ipv6" and zone(s) != zone(d) else 0
sc = dual("zone-a | zone-b partition for IPv6: MeshprobeZonePartition both ways for ipv6 only", 6, d_partition)
sc.quiet("3m", except_=["MeshprobeZonePartition"])
sc.expect("3m", "MeshprobeZonePartition", [
    ({"layer": "icmp_node", "src_zone": a, "dst_zone": b, "family": "ipv6"}, 1.0)
    for a, b in (("zone-a", "zone-b"), ("zone-b", "zone-a"))])
scenarios.append(sc)

# Path MTU per family, as `lab fault pmtu-blackhole node-4 --family ipv6` gives: the path to
# node-4 carries 1400; IPv4 says so (frag-needed: a mismatch), IPv6's packet-too-big is
# filtered (a black hole). One pair, an alert per family: the IPv6 black hole does not hide
# the IPv4 mismatch (the join keeps the family).
def d_mtu_series():
    out = []
    for fam, state, mtu in [("ipv4", "mismatch", 1400), ("ipv6", "blackhole", 1280)]:
        lb = pair_labels("node-3", "node-4", "icmp_pod", family=fam)
        out.append((f"meshprobe_pair_path_mtu_bytes{labels(lb)}", lambda t, mtu=mtu: mtu if t >= 60 else 1500))
        out.append((f"meshprobe_pair_expected_mtu_bytes{labels(lb)}", lambda t: 1500))
        out.append((f"meshprobe_pair_mtu_state{labels(dict(lb, state='ok'))}", lambda t: None if t >= 60 else 1))
        out.append((f"meshprobe_pair_mtu_state{labels(dict(lb, state=state))}", lambda t: 1 if t >= 60 else None))
    return out
sc = dual("path MTU: IPv6 black hole and IPv4 mismatch on one pair, each alert in its family", 6,
          extra=d_mtu_series())
sc.quiet("2m")
sc.quiet("4m", except_=["MeshprobePathMtuBelowExpected", "MeshprobeMtuBlackHole"])
sc.expect("4m", "MeshprobePathMtuBelowExpected", [(pair_alert("node-3", "node-4", "icmp_pod", family="ipv4"), 1400)])
sc.expect("4m", "MeshprobeMtuBlackHole",
          [(dict(pair_alert("node-3", "node-4", "icmp_pod", family="ipv6"), state="blackhole"), 1)])
scenarios.append(sc)

# The sampled plan, dual-stack: the planned pairs have no family, so each family's exported
# pairs join them many-to-one; failing destinations are exported at both families.
def dual_sampled(name, minutes, fails=None, agent_up=None):
    return dual("sampled plan: " + name, minutes, fails, agent_up=agent_up, nodes=S_NODES, plan=S_PLAN)


scenarios.append(dual_sampled("healthy: no alert", 6).quiet("5m"))

def ds_route(t, s, d, l, f):
    return s_route(t, s, d, l) if f == "ipv6" else 0
sc = dual_sampled("IPv6 route node-1 -> node-2: MeshprobePodToPodUnreachable for ipv6 only", 6, ds_route)
sc.quiet("3m", except_=["MeshprobePodToPodUnreachable"])
sc.expect("3m", "MeshprobePodToPodUnreachable",
          [(pair_alert("node-1", "node-2", l, nodes=S_NODES, family="ipv6"), 2 + (180 - 60) // 15)
           for l in ("icmp_pod", "http")])
# One of node-2's 4 planned probers, in IPv6; none in IPv4 (exported, healthy).
sc.exprs.append({"expr": 'meshprobe:dst_down_sources:ratio{dst="node-2", layer="icmp_pod"}', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"__name__": "meshprobe:dst_down_sources:ratio", "dst": "node-2",
                                                    "dst_kind": "peer", "dst_zone": S_NODES["node-2"], "family": f,
                                                    "layer": "icmp_pod"}),
                                  "value": v} for f, v in (("ipv4", 0), ("ipv6", 0.25))]})
scenarios.append(sc)

def ds_cni(t, s, d, l, f):
    return s_cni(t, s, d, l) if f == "ipv6" else 0
sc = dual_sampled("CNI broken on node-5 for IPv6: MeshprobeNodePodNetworkIsolated for ipv6 only", 6, ds_cni)
sc.quiet("3m", except_=["MeshprobeNodePodNetworkIsolated"])
sc.expect("3m", "MeshprobeNodePodNetworkIsolated", [(
    {"dst": "node-5", "dst_kind": "peer", "dst_zone": S_NODES["node-5"], "layer": "icmp_pod", "family": "ipv6"}, 1.0)])
scenarios.append(sc)

sc = dual_sampled("node-7 down: MeshprobeNodeDown once per family, MeshprobeAgentMissing once", 10,
                  lambda t, s, d, l, f: s_down(t, s, d, l), agent_up=lambda t, n: not (n == "node-7" and t >= 60))
sc.quiet("2m", except_=["MeshprobeNodeDown"])
sc.expect("2m", "MeshprobeNodeDown", [({"dst": "node-7", "dst_zone": S_NODES["node-7"], "family": f}, 1.0) for f in DUAL])
sc.quiet("9m", except_=["MeshprobeNodeDown", "MeshprobeAgentDown", "MeshprobeAgentMissing"])
sc.expect("9m", "MeshprobeAgentDown", [({"job": "meshprobe", "instance": "node-7:9464"}, 0)])
sc.expect("9m", "MeshprobeAgentMissing", [({"dst": "node-7", "dst_zone": S_NODES["node-7"]}, 4)])
scenarios.append(sc)

# Per-source checks (`dns`, `service`; meshprobe_check_up). Every scenario above exports none
# (checks not configured): their quiet() covers the check alerts too, so those never fire on a
# cluster without checks, CNI and node-down faults included.
def checks(name, minutes, check_fails, fails=None, agent_up=None):
    return Scenario("checks: " + name, minutes, fails, agent_up=agent_up, check_fails=check_fails)


scenarios.append(checks("healthy, both checks configured: no alert", 6, lambda t, n, c: False)
                 .quiet("3m").quiet("5m"))

# One failed run (one scrape at 0) and a 45 s outage: neither fires (for: 1m).
sc = checks("one failed run and a 45 s outage do not fire", 8,
            lambda t, n, c: (n, c) == ("node-1", "dns") and t == 60 or (n, c) == ("node-2", "service") and 120 <= t < 165)
sc.quiet("1m15s").quiet("2m30s").quiet("4m")
scenarios.append(sc)

# `lab fault kube-proxy 2`: node-2's Service rules gone. Its Service check fails, and its DNS
# and API-server-through-the-ClusterIP checks too (ClusterIPs both); the API server's endpoints
# and the pod-IP mesh are untouched. One alert: the Service one for node-2.
sc = checks("kube-proxy broken on node-2: MeshprobeServiceUnreachableFromNode for node-2 only", 6,
            lambda t, n, c: t >= 60 and n == "node-2" and c != "apiserver_endpoints")
sc.quiet("1m45s")  # pending, not firing yet
sc.quiet("3m", except_=["MeshprobeServiceUnreachableFromNode"])
sc.expect("3m", "MeshprobeServiceUnreachableFromNode", [(check_labels("node-2", "service"), 1)])
scenarios.append(sc)

# `lab fault dns-from 3`: node-3's DNS traffic dropped, its Service check fine.
sc = checks("DNS dropped from node-3: MeshprobeDnsFailingFromNode for node-3 only", 6,
            lambda t, n, c: t >= 60 and (n, c) == ("node-3", "dns"))
sc.quiet("1m45s")
sc.quiet("3m", except_=["MeshprobeDnsFailingFromNode"])
sc.expect("3m", "MeshprobeDnsFailingFromNode", [(check_labels("node-3", "dns"), 1)])
scenarios.append(sc)

# CNI on node-3 (its pod IP dead both ways): its checks fail too, from its broken pod network;
# only the CNI alert fires.
sc = checks("CNI broken on node-3, its checks failing: MeshprobeNodePodNetworkIsolated only", 6,
            lambda t, n, c: t >= 60 and n == "node-3", fails=cni)
sc.quiet("3m", except_=["MeshprobeNodePodNetworkIsolated"])
sc.expect("3m", "MeshprobeNodePodNetworkIsolated", [(
    {"dst": "node-3", "dst_kind": "peer", "dst_zone": "zone-a", "layer": "icmp_pod"}, 1.0)])
scenarios.append(sc)

# Traffic into node-3's pods dropped (its own probes out pass: the peers' to it fail): its
# checks fail (their answers come back in); left to the CNI alert through node-3's pod IP
# down from its peers, the second pod-network test of meshprobe:check_failing:bool.
def cni_in(t, s, d, l):
    return 3 if t >= 60 and l in ("icmp_pod", "http") and d == "node-3" else 0
sc = checks("traffic into node-3's pods dropped, its checks failing: MeshprobeNodePodNetworkIsolated only", 6,
            lambda t, n, c: t >= 60 and n == "node-3", fails=cni_in)
sc.quiet("3m", except_=["MeshprobeNodePodNetworkIsolated"])
sc.expect("3m", "MeshprobeNodePodNetworkIsolated", [(
    {"dst": "node-3", "dst_kind": "peer", "dst_zone": "zone-a", "layer": "icmp_pod"}, 1.0)])
scenarios.append(sc)

# New connections out of node-3's pods dropped (an egress policy: the peers' probes to it are
# answered, its own fail): its pod IP answers, so no pod-network alert fires, and its checks
# are not left out — the Service one names node-3 (its DNS and API server alerts are left to it).
def egress(t, s, d, l):
    return 3 if t >= 60 and l in ("icmp_pod", "http") and s == "node-3" else 0
sc = checks("node-3's pods cannot connect out: MeshprobeServiceUnreachableFromNode for node-3", 6,
            lambda t, n, c: t >= 60 and n == "node-3", fails=egress)
sc.quiet("3m", except_=["MeshprobeServiceUnreachableFromNode"])
sc.expect("3m", "MeshprobeServiceUnreachableFromNode", [(check_labels("node-3", "service"), 1)])
scenarios.append(sc)

# node-4 down with checks configured: its check series end with its agent; the others pass.
sc = checks("node-4 down: no check alert (its checks end with its agent)", 6,
            lambda t, n, c: False, fails=node4_down, agent_up=lambda t, n: not (n == "node-4" and t >= 60))
sc.quiet("1m45s", except_=["MeshprobeNodeDown"])
sc.quiet("5m", except_=["MeshprobeNodeDown", "MeshprobeAgentDown", "MeshprobeAgentMissing"])
scenarios.append(sc)

# `lab fault dns-down`: the DNS pod gone, every node's DNS check fails: one cluster-wide alert.
sc = checks("DNS down everywhere: MeshprobeDnsFailing once, no per-node or zone alert", 6,
            lambda t, n, c: t >= 60 and c == "dns")
sc.quiet("1m45s")
sc.quiet("3m", except_=["MeshprobeDnsFailing"])
sc.expect("3m", "MeshprobeDnsFailing", [({"check": "dns"}, 1.0)])
scenarios.append(sc)

# DNS failing from both nodes of zone-a (half the cluster, one zone): the zone's alert.
sc = checks("DNS failing from zone-a: MeshprobeDnsFailingFromZone for zone-a only", 6,
            lambda t, n, c: t >= 60 and c == "dns" and zone(n) == "zone-a")
sc.quiet("3m", except_=["MeshprobeDnsFailingFromZone"])
sc.expect("3m", "MeshprobeDnsFailingFromZone", [({"check": "dns", "src_zone": "zone-a"}, 2)])
scenarios.append(sc)

# The Service check failing from node-1 and node-2 (half the nodes, both zones): cluster-wide.
sc = checks("Service failing from half the nodes in both zones: MeshprobeServiceUnreachable once", 6,
            lambda t, n, c: t >= 60 and c == "service" and n in ("node-1", "node-2"))
sc.quiet("3m", except_=["MeshprobeServiceUnreachable", "MeshprobeDnsFailingFromNode"])
sc.expect("3m", "MeshprobeServiceUnreachable", [({"check": "service"}, 0.5)])
sc.expect("3m", "MeshprobeDnsFailingFromNode", [])
scenarios.append(sc)

# The Service check failing from both nodes of zone-b: the zone's alert.
sc = checks("Service failing from zone-b: MeshprobeServiceUnreachableFromZone for zone-b only", 6,
            lambda t, n, c: t >= 60 and c == "service" and zone(n) == "zone-b")
sc.quiet("3m", except_=["MeshprobeServiceUnreachableFromZone"])
sc.expect("3m", "MeshprobeServiceUnreachableFromZone", [({"check": "service", "src_zone": "zone-b"}, 2)])
scenarios.append(sc)

# Checks configured on some agents only (node-2's has none): the share counts reporting nodes;
# node-4's DNS failing is 1 of 3, its own alert.
sc = checks("checks on three agents, DNS failing on node-4: MeshprobeDnsFailingFromNode for node-4", 6,
            lambda t, n, c: None if n == "node-2" else (t >= 60 and (n, c) == ("node-4", "dns")))
sc.quiet("3m", except_=["MeshprobeDnsFailingFromNode"])
sc.expect("3m", "MeshprobeDnsFailingFromNode", [(check_labels("node-4", "dns"), 1)])
sc.exprs.append({"expr": 'count by (check) (meshprobe:check_failing:bool)', "eval_time": "3m",
                 "exp_samples": [{"labels": labels({"check": c}), "value": 3} for c in sorted(CHECKS)]})
scenarios.append(sc)

# `lab fault apiserver-from 3`: node-3's pods' traffic to the API server's port dropped (after
# the Service DNAT): both API server checks fail there, nothing else. One alert, for node-3.
sc = checks("API server unreachable from node-3: MeshprobeApiServerUnreachableFromNode for node-3 only", 6,
            lambda t, n, c: t >= 60 and n == "node-3" and c.startswith("apiserver"))
sc.quiet("1m45s")
sc.quiet("3m", except_=["MeshprobeApiServerUnreachableFromNode"])
sc.expect("3m", "MeshprobeApiServerUnreachableFromNode", [(check_labels("node-3", "apiserver_endpoints"), 1)])
scenarios.append(sc)

# The API server down: every node's API server checks fail. One cluster-wide alert.
sc = checks("API server down: MeshprobeApiServerUnreachable once, no per-node or zone alert", 6,
            lambda t, n, c: t >= 60 and c.startswith("apiserver"))
sc.quiet("1m45s")
sc.quiet("3m", except_=["MeshprobeApiServerUnreachable"])
sc.expect("3m", "MeshprobeApiServerUnreachable", [({"check": "apiserver_endpoints"}, 1.0)])
scenarios.append(sc)

# zone-b's route to the control plane lost: its nodes fail the endpoints check (and the
# ClusterIP one, which leads to the same endpoints). The zone's alert.
sc = checks("API server unreachable from zone-b: MeshprobeApiServerUnreachableFromZone for zone-b only", 6,
            lambda t, n, c: t >= 60 and c.startswith("apiserver") and zone(n) == "zone-b")
sc.quiet("3m", except_=["MeshprobeApiServerUnreachableFromZone"])
sc.expect("3m", "MeshprobeApiServerUnreachableFromZone", [({"check": "apiserver_endpoints", "src_zone": "zone-b"}, 2)])
scenarios.append(sc)

doc = {
    "rule_files": ["meshprobe-rules.yaml"],
    "evaluation_interval": f"{STEP}s",
    # The rules file's groups, each evaluated in order: every alert on a ratio is in the ratios'
    # group and reads the ratios recorded at the same step, as in Prometheus.
    "tests": [s.test() for s in scenarios],
}
sys.stdout.write("# GENERATED by tests/prometheus/gen_rule_tests.py — edit that, not this.\n")
sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, width=200, allow_unicode=True))
