#!/usr/bin/env bash
# Soak: the lab under churn for MINUTES, sampling every agent's resources (not a CI test; root).
#
#   bench/soak.sh [MINUTES=30] [OUT_CSV=soak-YYYYmmdd-HHMMSS.csv]
#
# Brings up `meshprobe lab` (4 nodes, 2 zones, 1 s interval, --port-base 0, its own prefix) and,
# until MINUTES have passed, every 10 s: samples each agent's RSS, open fds, threads (from /proc)
# and live Tokio tasks (`meshprobe_runtime_tasks` from its /metrics) into the CSV; asks node-1
# for /api/v1/diagnosis and POSTs an on-demand probe to /api/v1/probe. Churn, one step every
# 10 s in turn: kill (SIGKILL) an agent on node-2..4 and restart it with the same command line,
# inject a fault (`lab fault …`) / clear it, drop node-4 from the peers file / restore it.
# node-1's agent is never restarted: its figures over the whole run are the leak test.
# Prints per agent first/last/max of each figure and the least-squares slope per hour over the
# second half of the run (the first minutes include start-up growth: allocator arenas, windows
# filling; bench/soak_report.py). A restarted agent's figures restart with it; its row covers
# its last process.
# The agents' logs are copied to OUT_CSV.logs/ (the lab's state dir goes with `lab down`).
# Env: MESHPROBE_BIN (default target/release/meshprobe, built if missing), SOAK_PREFIX (sk).
set -euo pipefail
minutes=${1:-30}
out=${2:-soak-$(date -u +%Y%m%d-%H%M%S).csv}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESHPROBE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/meshprobe}
prefix=${SOAK_PREFIX:-sk}
[ "$(id -u)" -eq 0 ] || { echo "soak.sh: needs root (network namespaces)" >&2; exit 2; }
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
for c in curl jq python3 setsid; do
  command -v "$c" >/dev/null || { echo "soak.sh: needs $c" >&2; exit 2; }
done
state=/run/meshprobe-lab/$prefix
log=$(mktemp -t soak-lab-XXXX.log)
restarted=() # PIDs of agents this script started (the lab does not know them)
lab=""
cleanup() {
  [ -d "$out.logs" ] || cp -r "$state/logs" "$out.logs" 2>/dev/null || true
  for p in "${restarted[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "$lab" ] && kill -TERM "$lab" 2>/dev/null || true
  sleep 2
  "$bin" lab --prefix "$prefix" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

setsid "$bin" lab --prefix "$prefix" up --port-base 0 --nodes 4 --zones 2 \
  --interval 1s --timeout 500ms --window 10s --mtu-interval 5s </dev/null >"$log" 2>&1 &
lab=$!
for _ in $(seq 1 180); do
  grep -q "Ctrl-C here tears the lab down" "$log" && break
  kill -0 "$lab" 2>/dev/null || { cat "$log"; echo "soak.sh: lab up exited" >&2; exit 1; }
  sleep 0.5
done
grep -q "Ctrl-C here tears the lab down" "$log" || { cat "$log"; echo "soak.sh: lab not up in 90 s" >&2; exit 1; }
status=$("$bin" lab --prefix "$prefix" status --json)
declare -A port pid
for n in node-1 node-2 node-3 node-4; do
  port[$n]=$(jq -r --arg n "$n" '.state.proxies[] | select(.node == $n) | .listen' <<<"$status")
  pid[$n]=$(jq -r --arg n "$n" '.state.processes[] | select(.node == $n and .role == "agent") | .pid' <<<"$status")
done
echo "soak: lab $prefix up; agents ${pid[*]}; live view ${port[*]}; $minutes min; CSV $out" >&2

restart() { # NODE: SIGKILL its agent, start the same command line in the same namespace
  local n=$1 p=${pid[$1]} ns args
  ns=$(ip netns identify "$p")
  mapfile -d '' -t args <"/proc/$p/cmdline"
  kill -9 "$p"
  while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
  ip netns exec "$ns" "${args[@]}" </dev/null >>"$state/logs/$n-agent.log" 2>&1 &
  pid[$n]=$!
  restarted+=("$!")
  disown "$!" # no "Killed" job notice when the next round kills it
}
faults=("loss node-3 30" "cni node-4" "route node-2 node-3" "policy node-2" "reject node-3"
  "partition zone-a zone-b" "mtu node-4 1400" "pmtu-blackhole node-2 1400" "node-down node-3")
peers=$state/peers.json
cp "$peers" "$state/peers.full.json"

echo "t_s,node,pid,rss_kib,fds,threads,tasks,diag_ms,probe_status" >"$out"
t0=$(date +%s)
end=$((t0 + minutes * 60))
step=0
while [ "$(date +%s)" -lt "$end" ]; do
  tick=$(date +%s)
  # Churn: one step per tick.
  case $((step % 6)) in
    0) restart "node-$((2 + (step / 6) % 3))" ;;
    1 | 3) f=${faults[$(((step / 2) % ${#faults[@]}))]}
           # shellcheck disable=SC2086
           "$bin" lab --prefix "$prefix" fault $f >/dev/null 2>&1 || echo "soak: fault $f failed" >&2 ;;
    2 | 4) "$bin" lab --prefix "$prefix" clear >/dev/null 2>&1 || echo "soak: clear failed" >&2 ;;
    5) if [ $(((step / 6) % 2)) -eq 0 ]; then
         jq '.peers |= map(select(.node != "node-4"))' "$state/peers.full.json" >"$peers.tmp" && mv "$peers.tmp" "$peers"
       else cp "$state/peers.full.json" "$peers"; fi ;;
  esac
  step=$((step + 1))
  # Load: the mesh view and an on-demand probe on node-1.
  d0=$(date +%s%N)
  curl -s -m 10 -o /dev/null "http://${port[node-1]}/api/v1/diagnosis" || true
  diag_ms=$((($(date +%s%N) - d0) / 1000000))
  probe=$(curl -s -m 15 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d '{"target":"node-3"}' "http://${port[node-1]}/api/v1/probe" || echo 000)
  for n in node-1 node-2 node-3 node-4; do
    p=${pid[$n]}
    [ -d "/proc/$p" ] || { echo "soak: agent $n (pid $p) is gone" >&2; continue; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$p/status")
    fds=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l)
    tasks=$(curl -s -m 5 "http://${port[$n]}/metrics" | awk '/^meshprobe_runtime_tasks / {print $2}')
    echo "$((tick - t0)),$n,$p,$rss,$fds,$thr,${tasks:-},$diag_ms,$probe" >>"$out"
  done
  sleep $((10 - ($(date +%s) - tick) > 0 ? 10 - ($(date +%s) - tick) : 0))
done
"$bin" lab --prefix "$prefix" clear >/dev/null 2>&1 || true
cp "$state/peers.full.json" "$peers"

cp -r "$state/logs" "$out.logs"
echo "soak: agent logs in $out.logs; panics: $(grep -l -i 'panicked' "$out.logs"/*agent.log 2>/dev/null | wc -l) files" >&2
python3 "$root/bench/soak_report.py" "$out"
