#!/usr/bin/env bash
# The one command that runs every test: formatting, lints, unit, integration and (as root)
# the end-to-end lab suite. Installs the system packages it needs on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in ip:iproute2 ping:iputils-ping iptables:iptables nft:nftables promtool:prometheus openssl:openssl chromium:chromium faketime:faketime setcap:libcap2-bin setpriv:util-linux readelf:binutils; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
python3 -c 'import yaml' >/dev/null 2>&1 || need+=(python3-yaml)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]} (run as root on Debian/Ubuntu to install them); the lab tests will skip" >&2
  fi
fi

# Kubernetes manifests, offline: kubectl kustomize + kubernetes-validate (pip).
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "installing: kubernetes-validate (pip)"
  python3 -m pip install -q kubernetes-validate || python3 -m pip install -q --break-system-packages kubernetes-validate || true
fi
# checkov's Kubernetes checks (tests/validate-manifests.sh), pinned (a new release brings new
# checks) and in a venv of its own (its dependencies would clash with Debian's Python packages).
CHECKOV_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/meshprobe/checkov
if ! command -v checkov >/dev/null 2>&1 && [ ! -x "$CHECKOV_VENV/bin/checkov" ] && [ "$(id -u)" -eq 0 ]; then
  echo "installing: checkov 3.3.30 (pip, into $CHECKOV_VENV)"
  { python3 -m venv "$CHECKOV_VENV" && "$CHECKOV_VENV/bin/pip" install -q checkov==3.3.30; } \
    || echo "warning: checkov did not install; manifests get the Pod Security checks only" >&2
fi
if python3 -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
  tests/validate-manifests.sh
else
  echo "warning: kubernetes-validate missing (run as root to install it with pip); manifests not validated" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --all-targets
# The CI-sized scale run (1,000 emulated agents through Prometheus, about 3½ minutes), alone:
# next to the other suites' tests its debug emulator and Prometheus fall behind their deadlines.
cargo test --locked --test fleet_emulator -- --ignored
