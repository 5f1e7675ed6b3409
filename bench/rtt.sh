#!/usr/bin/env bash
# Benchmark (not a test): meshprobe's ICMP RTT against iputils `ping` on the same lab paths at
# the same time. Brings up a lab (prefix mprtt), lets node-1's agent probe for SECONDS while
# `ping` runs from node-1's agent pod to every other agent pod, then prints both medians.
#
#   sudo bench/rtt.sh [SECONDS=60]
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESHPROBE_BIN:-$root/target/release/meshprobe}
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
"$bin" lab --prefix mprtt down >/dev/null 2>&1 || true
setsid "$bin" lab --prefix mprtt up --port-base 0 --window "${secs}s" > "$work/lab.log" 2>&1 & lab=$!
trap 'kill $lab 2>/dev/null; "$bin" lab --prefix mprtt down >/dev/null 2>&1; rm -rf "$work"' EXIT
for _ in $(seq 1 60); do grep -q " is up" "$work/lab.log" && break; sleep 1; done
port=$(grep -o "node-1  .*http://127.0.0.1:[0-9]*" "$work/lab.log" | grep -o "[0-9]*$")
sleep 2
n=$(( secs * 5 ))
for d in 2 3 4; do
  ip netns exec mprtt-n1-probe ping -c "$n" -i 0.2 "198.19.$d.10" > "$work/ping-$d.txt" 2>&1 &
done
sleep "$secs"; wait %2 %3 %4 2>/dev/null || true
curl -s --max-time 5 "http://127.0.0.1:$port/api/v1/results" > "$work/results.json"
echo "node-1 → agent pod   iputils ping p50   meshprobe icmp_pod p50   difference"
for d in 2 3 4; do
  p=$(grep -o "time=[0-9.]*" "$work/ping-$d.txt" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]*1000}')
  m=$(jq -r --arg n "node-$d" '.peers[] | select(.node == $n) | .layers.icmp_pod.rtt_seconds.p50 * 1e6 | floor' "$work/results.json")
  printf "node-%s               %6s µs          %6s µs                 %+d µs (%+.0f%%)\n" "$d" "$p" "$m" $((m - p)) "$(echo "($m - $p) * 100 / $p" | bc -l)"
done
