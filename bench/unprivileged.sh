#!/usr/bin/env bash
# Benchmark (not a test): the diagnosis with privileged agents (raw ICMP sockets, deploy/components/raw-sockets) and with
# unprivileged ones (`lab --unprivileged`: no CAP_NET_RAW, ICMP datagram sockets, as under
# deploy/base). For each lab fault kind on a 4-node, 2-zone lab (1 s interval,
# 500 ms timeout, 8 s window, 2 s MTU checks), node-1's /api/v1/diagnosis is polled every
# 0.5 s for 25 s and every change is printed with its time after the `fault` command.
#
#   sudo bench/unprivileged.sh [BIN=target/release/meshprobe]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release/meshprobe}
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
faults=("route node-1 node-3" "node-down node-2" "cni node-2" "policy web-node-2"
        "reject web-node-2" "partition zone-a zone-b" "mtu node-2 1400"
        "pmtu-blackhole node-2 1400" "loss node-2 30")

run() { # PREFIX [--unprivileged]
  local p=$1; shift
  local log; log=$(mktemp)
  timeout 900 "$bin" lab --prefix "$p" up --nodes 4 --zones 2 --port-base 0 --interval 1s \
    --timeout 500ms --window 8s --mtu-interval 2s "$@" >"$log" 2>&1 &
  local up=$!
  trap '"$bin" lab --prefix '"$p"' down >/dev/null 2>&1 || true' RETURN
  for _ in $(seq 150); do grep -q "Ctrl-C here" "$log" && break; sleep 0.2; done
  sleep 10
  local port
  port=$("$bin" lab --prefix "$p" status --json | python3 -c \
    "import json,sys; print([p['listen'] for p in json.load(sys.stdin)['state']['proxies'] if p['node']=='node-1'][0])")
  for f in "${faults[@]}"; do
    # shellcheck disable=SC2086
    "$bin" lab --prefix "$p" fault $f >/dev/null
    local t0 line="" last="" now d
    t0=$(date +%s.%N)
    while (( $(echo "$(date +%s.%N) - $t0 < 25" | bc) )); do
      d=$(curl -s -m 5 --noproxy '*' "http://$port/api/v1/diagnosis" | python3 "$root/bench/unprivileged_summary.py")
      if [ "$d" != "$last" ]; then
        now=$(echo "$(date +%s.%N) - $t0" | bc)
        line="$line | $(printf %.1f "$now")s: $d"; last=$d
      fi
      sleep 0.5
    done
    echo "  $f:$line"
    "$bin" lab --prefix "$p" clear >/dev/null
    sleep 12
  done
  kill "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
}

echo "unprivileged agents (datagram sockets):"
run mbu --unprivileged
echo "privileged agents (raw sockets):"
run mbr
