#!/usr/bin/env bash
# Validate deploy/ offline: render the kustomize base (and each component on top of it) with
# `kubectl kustomize`, then check every object: core kinds with `kubernetes-validate --strict`
# against the Kubernetes 1.33 schemas; the Prometheus Operator CRDs (ServiceMonitor,
# PrometheusRule) have no bundled schema, so a small structural check stands in (and
# `promtool check rules` for PrometheusRule when promtool is installed).
# Needs: kubectl (or python3 + PyYAML for a resources-only fallback renderer), python3 with
# kubernetes-validate (`pip install kubernetes-validate`).
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=${K8S_VERSION:-1.33.0}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

render() { # DIR → stdout
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$1"
  else
    echo "warning: no kubectl; rendering $1 with the resources-only fallback" >&2
    python3 - "$1" <<'PY'
import os, sys, yaml
def render(d):
    k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    docs = []
    for r in k.get("resources", []):
        p = os.path.join(d, r)
        docs += render(p) if os.path.isdir(p) else [x for x in yaml.safe_load_all(open(p)) if x]
    ns = k.get("namespace")
    for x in docs:
        if ns and x["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"):
            x.setdefault("metadata", {})["namespace"] = ns
    return docs
print(yaml.safe_dump_all(render(sys.argv[1])))
PY
  fi
}

targets=(deploy/base)
for c in deploy/components/*/; do
  [ -f "$c/kustomization.yaml" ] || continue
  if ! command -v kubectl >/dev/null 2>&1; then
    echo "warning: no kubectl: component $c not validated (the fallback renders resources only)" >&2
    continue
  fi
  # A component is validated on top of the base.
  mkdir -p "$out/with-$(basename "$c")"
  cat > "$out/with-$(basename "$c")/kustomization.yaml" <<K
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$out/with-$(basename "$c")" deploy/base)]
components: [$(realpath --relative-to="$out/with-$(basename "$c")" "$c")]
K
  targets+=("$out/with-$(basename "$c")")
done

fail=0
for t in "${targets[@]}"; do
  name=$(basename "$t")
  render "$t" > "$out/$name.yaml"
  python3 - "$out/$name.yaml" "$out/$name" <<'PY' || fail=1
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
PY
  for f in "$out/$name"/[0-9]*.yaml; do
    python3 -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "$f" || { echo "error: $f:"; cat "$f"; fail=1; }
  done
  for f in "$out/$name"/rules-*.yaml; do
    [ -e "$f" ] || continue
    if command -v promtool >/dev/null 2>&1; then promtool check rules "$f" || fail=1
    else echo "warning: no promtool; PrometheusRule checked structurally only" >&2; fi
  done
done
[ "$fail" -eq 0 ] && echo "manifests: valid" || { echo "manifests: INVALID" >&2; exit 1; }
