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
import os, sys, yaml
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
print(f"{sys.argv[1]}: {len(docs)} objects: " + ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)))
for e in errors:
    print("error:", e)
sys.exit(1 if errors else 0)
