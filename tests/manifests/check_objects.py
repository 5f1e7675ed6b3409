#!/usr/bin/env python3
"""Checks the objects of one rendered manifest (tests/validate-manifests.sh) and splits them.

ServiceMonitor and PrometheusRule (no bundled schema) get a structural check; each
PrometheusRule's spec is written to OUT_DIR/rules-N.yaml (for `promtool check rules`) and
every other object to OUT_DIR/NN-Kind.yaml (for kubernetes-validate). A NetworkPolicy must
select the DaemonSet's pods, admit the agents themselves on every port and admit the agent's
container port. Prints the object list, then one `error: ...` line per problem; exits 1 if
there is any, else 0.

    python3 tests/manifests/check_objects.py RENDERED_YAML OUT_DIR

Needs PyYAML.
"""
import json, os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
os.makedirs(sys.argv[2], exist_ok=True)
errors = []
def need(d, path, cond, what):
    if not cond:
        errors.append(f"{d['kind']}/{d['metadata'].get('name')}: {path}: {what}")
for i, d in enumerate(docs):
    kind = d.get("kind")
    if kind == "ServiceMonitor":
        need(d, "apiVersion", d.get("apiVersion") == "monitoring.coreos.com/v1", "must be monitoring.coreos.com/v1")
        s = d.get("spec", {})
        need(d, "spec", set(s) <= {"selector", "namespaceSelector", "endpoints", "jobLabel", "podTargetLabels", "targetLabels", "sampleLimit"}, f"unknown fields {set(s)}")
        need(d, "spec.selector", isinstance(s.get("selector"), dict), "required")
        eps = s.get("endpoints") or []
        need(d, "spec.endpoints", len(eps) > 0, "at least one")
        for e in eps:
            need(d, "spec.endpoints[].port", isinstance(e.get("port"), str), "a named port")
            need(d, "spec.endpoints[]", set(e) <= {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme", "honorLabels"}, f"unknown fields {set(e)}")
    elif kind == "PrometheusRule":
        need(d, "apiVersion", d.get("apiVersion") == "monitoring.coreos.com/v1", "must be monitoring.coreos.com/v1")
        groups = d.get("spec", {}).get("groups") or []
        need(d, "spec.groups", len(groups) > 0, "at least one")
        for g in groups:
            for r in g.get("rules") or []:
                need(d, "rules[]", ("alert" in r) != ("record" in r) and "expr" in r, "alert or record, and expr")
        open(os.path.join(sys.argv[2], f"rules-{i}.yaml"), "w").write(yaml.safe_dump(d["spec"]))
    else:
        open(os.path.join(sys.argv[2], f"{i:02d}-{kind}.yaml"), "w").write(yaml.safe_dump(d))
# A NetworkPolicy for the agents must select the DaemonSet's pods, admit the agents
# themselves on every port (ICMP included) and admit its container port to someone else.
ds = [d for d in docs if d.get("kind") == "DaemonSet"]
for d in docs:
    if d.get("kind") != "NetworkPolicy" or not ds:
        continue
    pod_labels = ds[0]["spec"]["template"]["metadata"]["labels"]
    ports = {p["containerPort"] for c in ds[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    s = d.get("spec", {})
    sel = s.get("podSelector", {}).get("matchLabels", {})
    need(d, "spec.podSelector", sel and sel.items() <= pod_labels.items(), f"{sel} does not select the DaemonSet's pods {pod_labels}")
    rules = s.get("ingress") or []
    need(d, "spec.ingress", any("ports" not in r and any(f.get("podSelector", {}).get("matchLabels") == sel and "namespaceSelector" not in f for f in r.get("from", [])) for r in rules), "no rule admitting the agents themselves on every port")
    need(d, "spec.ingress[].ports", any(p.get("port") in ports for r in rules for p in r.get("ports", [])), f"no rule for the agent port {ports}")
# A ServiceMonitor selects exactly one Service of its namespaces: two with the same endpoints
# (the headless one and the ClusterIP one, deploy/base/service-vip.yaml) would scrape every
# agent twice and double every series.
def selects(sel, labels):
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        ok = {"In": k in labels and labels[k] in vals, "NotIn": labels.get(k) not in vals,
              "Exists": k in labels, "DoesNotExist": k not in labels}.get(op)
        if not ok:
            return False
    return True
for d in docs:
    if d.get("kind") != "ServiceMonitor":
        continue
    s = d.get("spec", {})
    names = (s.get("namespaceSelector") or {}).get("matchNames") or [d["metadata"].get("namespace")]
    hit = [o["metadata"]["name"] for o in docs if o.get("kind") == "Service"
           and o["metadata"].get("namespace") in names
           and selects(s.get("selector") or {}, o["metadata"].get("labels") or {})]
    need(d, "spec.selector", len(hit) == 1, f"selects {len(hit)} Services {hit}, not one: agents scraped {len(hit)} times")
# The Grafana dashboard shipped as a ConfigMap (components/kube-prometheus-stack) is
# dashboards/meshprobe.json exactly (kustomize can only read a copy inside the component), and
# it comes with the `release` label kube-prometheus-stack selects on the Prometheus objects.
repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
for d in docs:
    if d.get("kind") != "ConfigMap" or (d["metadata"].get("labels") or {}).get("grafana_dashboard") != "1":
        continue
    want = json.load(open(os.path.join(repo, "dashboards", "meshprobe.json")))
    for k, v in (d.get("data") or {}).items():
        need(d, f"data[{k}]", json.loads(v) == want,
             "differs from dashboards/meshprobe.json: cp dashboards/meshprobe.json deploy/components/kube-prometheus-stack/meshprobe-dashboard.json")
    for o in docs:
        if o.get("kind") in ("ServiceMonitor", "PrometheusRule"):
            need(o, "metadata.labels.release", (o["metadata"].get("labels") or {}).get("release"),
                 "kube-prometheus-stack selects only objects with its release label")
# The recommended app.kubernetes.io labels on every object (component on all but the
# Namespace), and version equal to the agent image's tag, so `kubectl get -l` and cost or
# ownership reports find everything meshprobe installs.
RECOMMENDED = ["name", "instance", "part-of", "version", "managed-by"]
tags = {c["image"].rsplit(":", 1)[-1] for d in ds for c in d["spec"]["template"]["spec"]["containers"]}
for d in docs:
    labels = d["metadata"].get("labels") or {}
    for k in RECOMMENDED + ([] if d.get("kind") == "Namespace" else ["component"]):
        need(d, f"metadata.labels[app.kubernetes.io/{k}]", labels.get(f"app.kubernetes.io/{k}"), "missing (recommended label)")
    v = labels.get("app.kubernetes.io/version")
    need(d, "metadata.labels[app.kubernetes.io/version]", not tags or v in tags, f"{v!r} is not the image tag {sorted(tags)}")
# Runbook links are absolute: an alert receiver has no repository to resolve a path in.
for d in docs:
    if d.get("kind") == "PrometheusRule":
        for g in d["spec"].get("groups") or []:
            for r in g.get("rules") or []:
                u = (r.get("annotations") or {}).get("runbook_url")
                if "alert" in r:
                    need(d, f"{r['alert']}.annotations.runbook_url", u and u.startswith(("https://", "http://")), f"{u!r} is not an absolute URL")
print(f"{sys.argv[1]}: {len(docs)} objects: " + ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)))
for e in errors:
    print("error:", e)
sys.exit(1 if errors else 0)
