#!/usr/bin/env python3
"""Writes dashboards/meshprobe.json, the Grafana dashboard (schemaVersion 39), and its copy in
deploy/components/kube-prometheus-stack/.

Run: python3 dashboards/generate.py  (tests/prometheus_e2e.rs checks the committed JSON is what
this writes, that every expression parses, and that each returns data against the lab.)
"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
AGENT = 'meshprobe_agent_info{zone=~"$zone", node=~"$node"}'
# Per-pair series: the selected source zones/nodes and address families (`family`; series
# from agents before it have none, and "All" is `.*`, which matches the missing label too).
PAIR = 'src_zone=~"$zone", src_node=~"$node", family=~"$family"'
# Per-agent series carry no node label: join it from meshprobe_agent_info on the scrape target.
JOIN = f"* on (instance, job) group_left (node, zone) {AGENT}"

panels = []
_id = [0]
y = [0]


def nid():
    _id[0] += 1
    return _id[0]


def row(title):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1


def target(expr, legend="", instant=False, ref="A"):
    t = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant, "editorMode": "code"}
    if instant:
        t["format"] = "table"
    return t


def add(panel, w, h, x):
    panel["id"] = nid()
    panel["datasource"] = DS
    panel["gridPos"] = {"h": h, "w": w, "x": x, "y": y[0]}
    panels.append(panel)


def thresholds(steps):
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def matrix(title, expr, unit, steps, desc, decimals=None):
    """A source × destination table: instant query, grouped to a matrix, cells coloured."""
    defaults = {"unit": unit, "thresholds": thresholds(steps), "color": {"mode": "thresholds"},
                "custom": {"align": "center", "cellOptions": {"type": "color-background"}, "inspect": False}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "table", "title": title, "description": desc,
        "targets": [target(expr, instant=True)],
        "transformations": [{"id": "groupingToMatrix", "options": {
            "columnField": "dst", "rowField": "src_node", "valueField": "Value", "emptyValue": "null"}}],
        "fieldConfig": {"defaults": defaults, "overrides": [
            {"matcher": {"id": "byName", "options": "src_node\\dst"},
             "properties": [{"id": "custom.cellOptions", "value": {"type": "auto"}},
                            {"id": "displayName", "value": "source \\ destination"}]}]},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    }


def timeseries(title, targets, unit, desc, stack=False):
    return {"type": "timeseries", "title": title, "description": desc, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "custom": {
                "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
                "stacking": {"mode": "normal" if stack else "none"}, "showPoints": "never"}},
                "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, expr, desc, steps, unit="none"):
    return {"type": "stat", "title": title, "description": desc, "targets": [target(expr, instant=True)],
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds(steps),
                                         "color": {"mode": "thresholds"}}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "none", "textMode": "auto"}}


OK_RED = [("red", None), ("orange", 0.5), ("yellow", 0.9), ("green", 0.999)]

row("Now")
add(stat("Agents reporting", f"count({AGENT})",
         "Agents scraped in the selected zones/nodes (meshprobe_agent_info).", [("red", None), ("green", 1)]), 4, 4, 0)
add(stat("Agent scrapes failing", 'count(up{job=~".*meshprobe.*"} == 0) or vector(0)',
         "Scrape targets of the meshprobe job that are down.", [("green", None), ("red", 1)]), 4, 4, 4)
add(stat("Pairs down", f'count(meshprobe:pair_down:bool{{{PAIR}}} == 1) or vector(0)',
         "Directed (source, destination, layer) pairs whose last two or more probes failed.",
         [("green", None), ("red", 1)]), 4, 4, 8)
add(stat("Alerts firing", 'count(ALERTS{alertname=~"Meshprobe.*", alertstate="firing"}) or vector(0)',
         "meshprobe alerts firing now (see Findings).", [("green", None), ("red", 1)]), 4, 4, 12)
add(stat("Paths with MTU below the interface", f'count(meshprobe_pair_mtu_state{{state=~"mismatch|blackhole", {PAIR}}}) or vector(0)',
         "Pairs whose path MTU is below the local interface MTU (mismatch) or black-holed.",
         [("green", None), ("orange", 1)]), 8, 4, 16)
y[0] += 4

row("Node-pair reachability (source × destination, success ratio over the agents' window)")
for i, (layer, what) in enumerate([("icmp_pod", "ICMP to pod IPs"), ("icmp_node", "ICMP to node IPs"), ("http", "HTTP to agents")]):
    add(matrix(f"Reachability: {what}",
               f'min by (src_node, dst) (meshprobe_pair_success_ratio{{layer="{layer}", dst_kind="peer", {PAIR}}})',
               "percentunit", OK_RED,
               f"Rows: source node; columns: destination node. Share of successful {layer} probes in the window "
               "(1 = all ok). A red column is a destination unreachable from everyone (node down or CNI); "
               "red blocks off the diagonal are a zone partition.", decimals=0), 8, 10, 8 * i)
y[0] += 10
add(matrix("Path MTU (pod IPs), bytes",
           f'min by (src_node, dst) (meshprobe_pair_path_mtu_bytes{{layer="icmp_pod", dst_kind="peer", {PAIR}}})',
           "bytes", [("red", None), ("orange", 1280), ("green", 1500)],
           "Largest Don't-Fragment packet that crosses each path (measured). Below the interface MTU: see MeshprobePathMtuBelowExpected."),
    8, 10, 0)
add(matrix("Path MTU state (2 = black hole, 1 = mismatch, 0 = ok)",
           f'max by (src_node, dst) ((meshprobe_pair_mtu_state{{state="blackhole", {PAIR}}} * 2) or (meshprobe_pair_mtu_state{{state="mismatch", {PAIR}}} * 1) or (meshprobe_pair_mtu_state{{state="ok", {PAIR}}} * 0))',
           "none", [("green", None), ("orange", 1), ("red", 2)],
           "Per pair, the worst path-MTU state of its ICMP layers."), 8, 10, 8)
add(matrix("Loss (pod IPs)",
           f'max by (src_node, dst) (meshprobe_pair_loss_ratio{{layer="icmp_pod", dst_kind="peer", {PAIR}}})',
           "percentunit", [("green", None), ("yellow", 0.001), ("orange", 0.05), ("red", 0.5)],
           "Share of ICMP echoes lost in the window, per pair."), 8, 10, 16)
y[0] += 10

row("Loss and latency")
add(timeseries("Worst pairs by loss", [target(
    f'topk(10, max by (src_node, dst, layer, family) (meshprobe_pair_loss_ratio{{layer=~"icmp_pod|icmp_node", {PAIR}}}))',
    "{{src_node}} → {{dst}} {{layer}} {{family}}")], "percentunit", "The ten pairs with the highest loss in the window."), 12, 8, 0)
add(timeseries("RTT percentiles (all destinations)", [
    target(f'histogram_quantile({q}, sum by (le, layer) (rate(meshprobe_rtt_seconds_bucket[$__rate_interval]) {JOIN}))',
           f"p{int(float(q) * 100)} {{{{layer}}}}", ref=r)
    for q, r in [("0.5", "A"), ("0.9", "B"), ("0.99", "C")]],
    "s", "RTT of successful probes across the selected agents, from the agents' histograms."), 12, 8, 12)
y[0] += 8
add(timeseries("Worst pairs by RTT p99 (window)", [target(
    f'topk(10, max by (src_node, dst, layer, family) (meshprobe_pair_rtt_seconds{{q="0.99", {PAIR}}}))',
    "{{src_node}} → {{dst}} {{layer}} {{family}}")], "s", "The ten pairs with the highest p99 RTT over the agents' windows."), 12, 8, 0)
add(timeseries("Loss by destination zone", [target(
    f'avg by (src_zone, dst_zone) (meshprobe_pair_loss_ratio{{layer="icmp_node", dst_kind="peer", {PAIR}}})',
    "{{src_zone}} → {{dst_zone}}")], "percentunit", "Average node-IP loss per (source zone, destination zone)."), 12, 8, 12)
y[0] += 8

row("Probe volume")
add(timeseries("Probes per second by layer and result", [target(
    f'sum by (layer, result) (rate(meshprobe_probes_total[$__rate_interval]) {JOIN})',
    "{{layer}} {{result}}")], "ops", "Probes completed per second (ok, or the classified error).", stack=True), 12, 8, 0)
add(timeseries("Packets sent and received per second", [
    target(f'sum by (layer) (rate(meshprobe_packets_sent_total[$__rate_interval]) {JOIN})', "sent {{layer}}", ref="A"),
    target(f'sum by (layer) (rate(meshprobe_packets_received_total[$__rate_interval]) {JOIN})', "received {{layer}}", ref="B"),
    target(f'sum(rate(meshprobe_mtu_probes_total[$__rate_interval]) {JOIN})', "path-MTU probes", ref="C")],
    "pps", "Echoes/exchanges sent and answered, and Don't-Fragment path-MTU probes."), 12, 8, 12)
y[0] += 8

# The agents' per-source checks (`dns`, `service`; docs/metrics.md "Per-source checks"): no
# pair, no family; meshprobe_check_up carries the source's labels, the others join them.
CHECK = 'src_zone=~"$zone", src_node=~"$node"'
row("Per-source checks: Service, DNS, API server")
add({"type": "state-timeline", "title": "Check up per node",
     "description": "Per node and check, whether its last run passed (meshprobe_check_up): dns resolves the agents' "
                    "Service name through cluster DNS, service connects to a ClusterIP through the node's Service rules. "
                    "One node red: its kube-proxy or its path to DNS; every node red: the Service or DNS itself. "
                    "Empty when no check is configured.",
     "targets": [target(f'meshprobe_check_up{{{CHECK}}}', "{{src_node}} {{check}}")],
     "fieldConfig": {"defaults": {
         "color": {"mode": "thresholds"}, "thresholds": thresholds([("red", None), ("green", 1)]),
         "mappings": [{"type": "value", "options": {"0": {"text": "failing", "color": "red", "index": 0},
                                                    "1": {"text": "ok", "color": "green", "index": 1}}}],
         "custom": {"fillOpacity": 80, "lineWidth": 0}}, "overrides": []},
     "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.9, "alignValue": "left",
                 "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
                 "tooltip": {"mode": "single", "sort": "none"}}}, 12, 8, 0)
add(timeseries("Check duration p50 / p99", [
    target(f'histogram_quantile({q}, sum by (le, check) (rate(meshprobe_check_duration_seconds_bucket[$__rate_interval]) {JOIN}))',
           f"p{int(float(q) * 100)} {{{{check}}}}", ref=r)
    for q, r in [("0.5", "A"), ("0.99", "B")]],
    "s", "Time each check run took, answered or not (a timeout shows as the agents' --timeout), across the selected agents."), 6, 8, 12)
add(timeseries("Checks per second by result", [target(
    f'sum by (check, result) (rate(meshprobe_check_total[$__rate_interval]) {JOIN})',
    "{{check}} {{result}}")], "ops",
    "Check runs per second: ok, or the error kind (dns: nxdomain, servfail, timeout, …; service: refused, timeout, net_unreachable, …).",
    stack=True), 6, 8, 18)
y[0] += 8

row("Findings")
add({"type": "table", "title": "Alerts firing or pending",
     "description": "meshprobe's alerts; the agents' own diagnosis with evidence is at /api/v1/diagnosis and on each agent's page.",
     "targets": [target('ALERTS{alertname=~"Meshprobe.*"}', instant=True)],
     "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}],
     "fieldConfig": {"defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}}, "overrides": []},
     "options": {"showHeader": True, "footer": {"show": False}}}, 12, 8, 0)
add(timeseries("Destinations unreachable (last probe), by layer", [target(
    f'sum by (layer, dst_kind) (meshprobe_destinations{{state="unreachable"}} {JOIN})',
    "{{dst_kind}} {{layer}}")], "none", "Per layer, destinations whose last probe failed, summed over the agents."), 6, 8, 12)
add(timeseries("Path-MTU states", [target(
    f'sum by (layer, state) (meshprobe_mtu_destinations {JOIN})', "{{layer}} {{state}}")],
    "none", "Destinations per path-MTU state (ok, mismatch, blackhole, searching, unknown)."), 6, 8, 18)
y[0] += 8

row("Agent health")
add(timeseries("Scrape up", [target('up{job=~".*meshprobe.*"}', "{{instance}}")], "none",
               "1 when Prometheus scrapes the agent."), 6, 8, 0)
add(timeseries("Ready and discovery healthy", [
    target(f'meshprobe_agent_ready {JOIN}', "ready {{node}}", ref="A"),
    target(f'meshprobe_discovery_healthy {JOIN}', "discovery {{node}}", ref="B")],
    "none", "1 once the first round is done; 0 while the peers file is failing to load."), 6, 8, 6)
add(timeseries("Schedule lateness p99", [target(
    f'histogram_quantile(0.99, sum by (le, node) (rate(meshprobe_schedule_lateness_seconds_bucket[$__rate_interval]) {JOIN}))',
    "{{node}}")], "s", "How late probes start compared with the plan: a saturated agent or node."), 6, 8, 12)
add(timeseries("Rounds and stretched rounds per second", [
    target(f'sum by (node) (rate(meshprobe_rounds_total[$__rate_interval]) {JOIN})', "rounds {{node}}", ref="A"),
    target(f'sum by (node) (rate(meshprobe_rounds_stretched_total[$__rate_interval]) {JOIN})', "stretched {{node}}", ref="B"),
    target(f'sum by (node) (meshprobe_discovered{{dst_kind="peer"}} {JOIN})', "peers {{node}}", ref="C")],
    "none", "Probe rounds completed; rounds stretched by --max-rate; peers in the set."), 6, 8, 18)
y[0] += 8


def var_query(name, label, query, multi=True):
    return {"type": "query", "name": name, "label": label, "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "multi": multi, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1}


dashboard = {
    "uid": "meshprobe-mesh",
    "title": "meshprobe: pod network mesh",
    "description": "Which pods cannot reach which, and why: node-pair matrices per layer, loss, latency, path MTU, probe volume, Service, DNS and API server checks, findings and agent health.",
    "tags": ["meshprobe", "network", "kubernetes"],
    "timezone": "browser",
    "editable": True,
    "graphTooltip": 1,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "annotations": {"list": []},
    "links": [],
    "templating": {"list": [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": ""},
        var_query("zone", "Zone", 'label_values(meshprobe_agent_info, zone)'),
        var_query("node", "Node", 'label_values(meshprobe_agent_info{zone=~"$zone"}, node)'),
        var_query("family", "Family", 'label_values(meshprobe_pair_reachable, family)'),
    ]},
    "panels": panels,
}

here = os.path.dirname(os.path.abspath(__file__))
# The kustomize component's copy: kustomize reads only files inside the component, and
# tests/validate-manifests.sh fails when the two differ. Written only in a checkout (a copy of
# this script run elsewhere, as the tests do, writes meshprobe.json alone).
component = os.path.join(here, "..", "deploy", "components", "kube-prometheus-stack")
outs = [os.path.join(here, "meshprobe.json")]
if os.path.isdir(component):
    outs.append(os.path.join(component, "meshprobe-dashboard.json"))
for out in outs:
    with open(out, "w") as f:
        json.dump(dashboard, f, indent=2, ensure_ascii=False)
        f.write("\n")
