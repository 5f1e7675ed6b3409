#!/usr/bin/env bash
# A clean lab for MINUTES: does anything ever read as a fault? (not a CI test; root)
#
#   bench/clean.sh [MINUTES=10] [FAMILY=dual] [ADDRESSING=subnet]
#
# Brings up `meshprobe lab --ip-family FAMILY --pod-addressing ADDRESSING` (4 nodes, 2 zones,
# the lab's defaults: 2 s interval, 1 s timeout, its own prefix and ports), waits until every
# agent is ready, then for MINUTES: every 2 s asks node-1 for its mesh view
# (/api/v1/diagnosis) and every 30 s scrapes node-1's /metrics. Prints the polls, the polls
# with a finding or an unreachable agent (each shown, with the time), and per family the
# per-pair reachable series and how many of them were ever 0. Exit 1 when any poll was not
# healthy.
# Env: MESHPROBE_BIN (default target/release/meshprobe, built if missing), CLEAN_PREFIX (cl).
set -euo pipefail
minutes=${1:-10}
family=${2:-dual}
addressing=${3:-subnet}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESHPROBE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/meshprobe}
prefix=${CLEAN_PREFIX:-cl}
[ "$(id -u)" -eq 0 ] || { echo "clean.sh: needs root (network namespaces)" >&2; exit 2; }
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
for c in curl jq; do
  command -v "$c" >/dev/null || { echo "clean.sh: needs $c" >&2; exit 2; }
done
log=$(mktemp -t clean-lab-XXXX.log)
lab=""
cleanup() {
  [ -n "$lab" ] && kill -TERM "$lab" 2>/dev/null || true
  sleep 2
  "$bin" lab --prefix "$prefix" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

setsid "$bin" lab --prefix "$prefix" up --port-base 0 --nodes 4 --zones 2 \
  --ip-family "$family" --pod-addressing "$addressing" </dev/null >"$log" 2>&1 &
lab=$!
for _ in $(seq 1 180); do
  grep -q "Ctrl-C here tears the lab down" "$log" && break
  kill -0 "$lab" 2>/dev/null || { cat "$log"; echo "clean.sh: lab up exited" >&2; exit 1; }
  sleep 0.5
done
grep -q "Ctrl-C here tears the lab down" "$log" || { cat "$log"; echo "clean.sh: lab not up in 90 s" >&2; exit 1; }
status=$("$bin" lab --prefix "$prefix" status --json)
port=$(jq -r '.state.proxies[] | select(.node == "node-1") | .listen' <<<"$status")
url=http://$port
# Ready: every agent's view answered and healthy once (start-up is not what is measured).
for _ in $(seq 1 60); do
  d=$(curl -s -m 5 "$url/api/v1/diagnosis" || true)
  [ "$(jq -r '.healthy and (.agents_unreachable | length == 0)' <<<"$d" 2>/dev/null)" = true ] && break
  sleep 1
done
echo "clean: lab $prefix ($family, $addressing) up, node-1 at $url; $minutes min" >&2

polls=0 bad=0 scrapes=0
declare -A series zero
t0=$(date +%s)
end=$((t0 + minutes * 60))
next_scrape=$t0
while [ "$(date +%s)" -lt "$end" ]; do
  now=$(date +%s)
  d=$(curl -s -m 5 "$url/api/v1/diagnosis" || echo '{}')
  polls=$((polls + 1))
  if [ "$(jq -r '(.healthy == true) and ((.agents_unreachable // [1]) | length == 0)' <<<"$d" 2>/dev/null)" != true ]; then
    bad=$((bad + 1))
    echo "  +$((now - t0))s not healthy: $(jq -c '{findings: [.findings[]? | {cause, nodes, family, summary}], agents_unreachable}' <<<"$d" 2>/dev/null || echo "$d" | head -c 300)"
  fi
  if [ "$now" -ge "$next_scrape" ]; then
    scrapes=$((scrapes + 1))
    m=$(curl -s -m 5 "$url/metrics" || true)
    for f in ipv4 ipv6; do
      n=$(grep -c "^meshprobe_pair_reachable{.*family=\"$f\"" <<<"$m" || true)
      z=$(grep "^meshprobe_pair_reachable{.*family=\"$f\"" <<<"$m" | grep -c ' 0$' || true)
      series[$f]=$n
      zero[$f]=$(( ${zero[$f]:-0} + z ))
    done
    next_scrape=$((now + 30))
  fi
  sleep 2
done
echo "clean: $family $addressing, $minutes min: $polls polls of node-1's mesh view, $bad not healthy"
for f in ipv4 ipv6; do
  echo "  $f: ${series[$f]:-0} meshprobe_pair_reachable series on node-1, $((${zero[$f]:-0})) zero readings in $scrapes scrapes"
done
[ "$bad" -eq 0 ]
