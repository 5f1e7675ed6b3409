#!/usr/bin/env bash
# Validate deploy/ offline: render the kustomize base (and each component on top of it) with
# `kubectl kustomize`, then check every object: core kinds with `kubernetes-validate --strict`
# against the Kubernetes 1.33 schemas; the Prometheus Operator CRDs (ServiceMonitor,
# PrometheusRule) have no bundled schema, so a small structural check stands in
# (tests/manifests/check_objects.py; and `promtool check rules` for PrometheusRule when promtool
# is installed). Every rendering's pod templates are checked against the Pod Security level
# their namespace enforces (tests/manifests/check_pod_security.py, rule by rule; its own cases
# run first so each rule is shown to fail), and with checkov's Kubernetes checks when checkov
# is installed (tests/run.sh installs it; skipped checks and why: CHECKOV_SKIP below).
# Renderings: deploy/base; the base with each component; the base with every component but
# `restricted` (which only asserts what raw-sockets undoes) and `prometheus-operator` (which
# kube-prometheus-stack includes); each overlay in deploy/overlays.
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

python3 tests/manifests/check_pod_security.py --self-test tests/manifests/pod_security_cases.yaml

# checkov: tests/run.sh installs a pinned version into this venv when missing.
CHECKOV=${CHECKOV:-$(command -v checkov || echo "${XDG_CACHE_HOME:-$HOME/.cache}/meshprobe/checkov/bin/checkov")}
# Checks skipped in every rendering, each for a reason that holds for this agent:
# CKV_K8S_43 (image by digest) and CKV_K8S_15 (pullPolicy Always): the base pins a release
#   tag; a digest is the deployer's `kustomize edit set image` (docs/kubernetes.md), and
#   Always would make every agent restart depend on the registry.
# CKV_K8S_38 (no service account token): the agent watches the API server with it.
CHECKOV_SKIP=CKV_K8S_43,CKV_K8S_15,CKV_K8S_38
# Renderings with raw sockets add NET_RAW and allow privilege escalation on purpose
# (deploy/components/raw-sockets): CKV_K8S_25 and CKV_K8S_20 are skipped there only.
# Without deploy/components/networkpolicy, CKV2_K8S_6 (no NetworkPolicy) is skipped: the
# policy is an opt-in component; it is checked wherever the component is rendered.

targets=(deploy/base)
all=()
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
  case $(basename "$c") in
    restricted|prometheus-operator) ;; # see "Renderings" above
    *) all+=("$(realpath --relative-to="$out/with-all" "$c")") ;;
  esac
done
if [ ${#all[@]} -gt 0 ]; then
  mkdir -p "$out/with-all"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents: [%s]\n' \
    "$(realpath --relative-to="$out/with-all" deploy/base)" "$(IFS=,; echo "${all[*]}")" > "$out/with-all/kustomization.yaml"
  targets+=("$out/with-all")
fi
for o in deploy/overlays/*/; do
  [ -f "$o/kustomization.yaml" ] && command -v kubectl >/dev/null 2>&1 && targets+=("${o%/}")
done

fail=0
for t in "${targets[@]}"; do
  name=$(basename "$t")
  render "$t" > "$out/$name.yaml" || { echo "error: $t: rendering failed (above)"; fail=1; continue; }
  python3 tests/manifests/check_objects.py "$out/$name.yaml" "$out/$name" || fail=1
  python3 tests/manifests/check_pod_security.py "$out/$name.yaml" || fail=1
  if [ -x "$CHECKOV" ]; then
    skip=$CHECKOV_SKIP
    case $name in with-raw-sockets|with-all) skip+=,CKV_K8S_25,CKV_K8S_20 ;; esac
    grep -q '^kind: NetworkPolicy' "$out/$name.yaml" || skip+=,CKV2_K8S_6
    "$CHECKOV" -f "$out/$name.yaml" --framework kubernetes --compact --quiet --skip-download \
      --skip-check "$skip" > "$out/$name.checkov" 2>&1 \
      && echo "$name: checkov: $(grep -m1 'Passed checks' "$out/$name.checkov")" \
      || { echo "error: $name: checkov (skipped: $skip):"; grep -v '^  File\|^    \|^Traceback\|^urllib3\|^The above\|^$' "$out/$name.checkov"; fail=1; }
  else
    echo "warning: no checkov ($CHECKOV); run tests/run.sh as root to install it" >&2
  fi
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
