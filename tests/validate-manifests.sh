#!/usr/bin/env bash
# Validate deploy/ offline: render the kustomize base (and each component on top of it) with
# `kubectl kustomize`, then check every object: core kinds with `kubernetes-validate --strict`
# against the Kubernetes 1.33 schemas; the Prometheus Operator CRDs (ServiceMonitor,
# PrometheusRule) have no bundled schema, so a small structural check stands in
# (tests/manifests/check_objects.py; and `promtool check rules` for PrometheusRule when promtool
# is installed).
# Needs: kubectl (or python3 + PyYAML for a resources-only fallback renderer,
# tests/manifests/render_fallback.py), python3 with
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
    python3 tests/manifests/render_fallback.py "$1"
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
  python3 tests/manifests/check_objects.py "$out/$name.yaml" "$out/$name" || fail=1
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
