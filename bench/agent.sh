#!/usr/bin/env bash
# Benchmark: one meshprobe agent against N loopback peers for a fixed time.
#
#   bench/agent.sh [PEERS=1000] [SECONDS=60] [INTERVAL=5s] [ICMP_COUNT=3]
#
# The agent probes every peer (MESHPROBE_FULL_MESH_MAX=1000000: no sampled plan) with
# MESHPROBE_PAIR_METRICS=all; BENCH_AGENT_ARGS adds flags (a flag wins over its variable), e.g.
# BENCH_AGENT_ARGS="--pair-metrics failing" for the setting recommended on large meshes.
# BENCH_RSS_TRACE=FILE records the agent's RSS every 0.2 s during the measurement.
# BENCH_PERF=FILE records a CPU profile (perf record -g) of the agent during the measurement.
#
# Every peer is a 127.x.y.z address (the loopback answers ICMP for all of 127/8) named after that
# address; its agent HTTP port is served by ONE `meshprobe serve` bound to 0.0.0.0, whose /ping
# answers as the address it was asked at — so every HTTP probe is a real new TCP connection and a
# successful exchange. Node IPs are 127.0.0.1. Needs root (raw ICMP socket).
# Everything runs in a network namespace of its own whose loopback has a 1500-byte MTU, as a pod
# interface would (the host's lo has 65536, which would make every path-MTU probe 64 KiB); the
# host's network is not touched.
# Prints CPU-seconds per 1,000 probes, CPU as % of one core, and peak RSS (VmHWM) of the agent.
# Steady state: the measurement starts after the first path-MTU check interval (30 s), when the
# initial MTU searches are done; the start-up figures are printed too.
set -euo pipefail
peers=${1:-1000}; secs=${2:-60}; interval=${3:-5s}; count=${4:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESHPROBE_BIN:-$root/target/release/meshprobe}
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
ns=mpbench-$$
ip netns add "$ns"
ip -n "$ns" link set lo mtu 1500 up
trap 'kill $agent $server 2>/dev/null || true; ip netns del "$ns" 2>/dev/null; rm -rf "$work"' EXIT
inns() { ip netns exec "$ns" "$@"; }
port=19464

{
  echo "peers:"
  echo "  - {node: bench-self, node_ip: 127.0.0.1, pod_ip: 127.0.0.1, port: 19999}"
  for i in $(seq 1 "$peers"); do
    ip="127.1.$((i / 250)).$((i % 250 + 1))"
    echo "  - {node: $ip, node_ip: 127.0.0.1, pod_ip: $ip, port: $port}"
  done
} > "$work/peers.yaml"

ip netns exec "$ns" "$bin" serve --listen "0.0.0.0:$port" > "$work/serve.log" 2>&1 & server=$!
MESHPROBE_FULL_MESH_MAX=1000000 MESHPROBE_PAIR_METRICS=all \
  ip netns exec "$ns" "$bin" agent --node-name bench-self --listen 127.0.0.1:19999 --peers-file "$work/peers.yaml" \
  --interval "$interval" --timeout 1s --icmp-count "$count" --max-rate 100000 --max-in-flight 1024 \
  ${BENCH_AGENT_ARGS:-} > "$work/agent.log" 2>&1 & agent=$!

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
probes() {
  inns curl -s --max-time 10 http://127.0.0.1:19999/metrics \
    | awk '/^meshprobe_probes_total/ {s += $2} END {printf "%d\n", s}'
}
# Warm up past the first rounds and the initial path-MTU searches (spread over 30 s).
warm=$(( ${interval%s} * 2 + 2 )); [ "$warm" -lt 35 ] && warm=35
sleep "$warm"
cs=$(cpu); hs=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
c0=$(cpu); p0=$(probes); t0=$(date +%s.%N)
if [ -n "${BENCH_PERF:-}" ]; then
  perf record -q -g -o "$BENCH_PERF" -p "$agent" -- sleep "$secs" >/dev/null 2>&1 & perfpid=$!
fi
if [ -n "${BENCH_RSS_TRACE:-}" ]; then
  # One line per 0.2 s: seconds since the measurement began, RSS in KiB.
  end=$(( $(date +%s) + secs )); : > "$BENCH_RSS_TRACE"
  while [ "$(date +%s)" -lt "$end" ]; do
    echo "$(date +%s.%N | awk -v t0="$t0" '{printf "%.1f", $1 - t0}') $(awk '/VmRSS/ {print $2}' "/proc/$agent/status")" >> "$BENCH_RSS_TRACE"
    sleep 0.2
  done
else
  sleep "$secs"
fi
c1=$(cpu); p1=$(probes); t1=$(date +%s.%N)
[ -n "${BENCH_PERF:-}" ] && wait "$perfpid"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
inns curl -s --max-time 10 http://127.0.0.1:19999/metrics > "$work/metrics.txt"
scrape_bytes=$(wc -c < "$work/metrics.txt")
echo "last probe per destination and layer (sanity: the probes succeed):"
grep '^meshprobe_destinations{' "$work/metrics.txt" | grep -Ev ' 0(\.0)?$' | sed 's/^/  /'
grep '^meshprobe_mtu_destinations{' "$work/metrics.txt" | grep -Ev ' 0(\.0)?$' | sed 's/^/  /'
{ grep -c '^meshprobe_pair_' "$work/metrics.txt" || true; } | sed 's/^/  per-pair series: /'
awk -v c0="$c0" -v c1="$c1" -v p0="$p0" -v p1="$p1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" \
    -v hwm="$hwm" -v rss="$rss" -v peers="$peers" -v iv="$interval" -v n="$count" -v sb="$scrape_bytes" -v cs="$cs" -v hs="$hs" -v warm="$warm" 'BEGIN {
  cpu = (c1 - c0) / hz; wall = t1 - t0; probes = p1 - p0
  printf "peers=%d interval=%s icmp_count=%d wall=%.1fs\n", peers, iv, n, wall
  printf "probes=%d (%.1f/s)  cpu=%.2fs  => %.4f CPU-s per 1000 probes, %.2f%% of one core\n", probes, probes / wall, cpu, cpu / probes * 1000, cpu / wall * 100
  printf "peak RSS (VmHWM) %.1f MiB, RSS now %.1f MiB, /metrics %d bytes\n", hwm / 1024, rss / 1024, sb
  printf "start-up (first %ds): %.2f CPU-s, peak RSS %.1f MiB\n", warm, cs / hz, hs / 1024
}'
# What the agent's pages cost on the wire, plain and gzip (sent when the client accepts it).
echo "transfer sizes, plain / gzip (bytes) and gzip encode+transfer time:"
for path in /metrics / "/heatmap.svg?layer=icmp_pod"; do
  plain=$(inns curl -s --max-time 30 -o /dev/null -w '%{size_download}' "http://127.0.0.1:19999$path")
  gz=$(inns curl -s --max-time 30 -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download} %{time_total}' "http://127.0.0.1:19999$path")
  printf "  %-28s %10s / %-10s %6.3fs\n" "$path" "$plain" "${gz% *}" "${gz#* }"
done
