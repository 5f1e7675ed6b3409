#!/usr/bin/env bash
# Benchmark (not a test): meshprobe's ICMP echo RTT over IPv4 and IPv6 side by side, each
# against iputils `ping` / `ping -6` on the same path at the same time. Two network namespaces
# joined by a veth pair (198.18.250.0/24 and the ULA fd00:250::/64, nothing outside them);
# one agent in the first probes the second's IPv4 and IPv6 address (two peers of one peers
# file, ICMP only, one echo per probe every INTERVAL) while `ping` and `ping -6` run to the
# same addresses every 0.2 s. Prints each family's medians and the difference.
#
#   sudo bench/rtt-family.sh [SECONDS=60]
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESHPROBE_BIN:-$root/target/release/meshprobe}
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, raw ICMP sockets)" >&2; exit 2; }
command -v jq >/dev/null || { echo "needs jq" >&2; exit 2; }
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
a=mprtf-a-$$; b=mprtf-b-$$; work=$(mktemp -d); pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$a"; ip netns add "$b"
ip -n "$a" link add va type veth peer name vb netns "$b"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" addr add 198.18.250.1/24 dev va; ip -n "$b" addr add 198.18.250.2/24 dev vb
ip -n "$a" addr add fd00:250::1/64 dev va nodad; ip -n "$b" addr add fd00:250::2/64 dev vb nodad
ip -n "$a" link set va up; ip -n "$b" link set vb up
# A new IPv6 link answers its first echoes about a second late (ping -6's first replies took
# 1003, 800, 596 ms here): settle before measuring, so both families start alike.
ip netns exec "$a" ping -6 -c 1 -w 5 fd00:250::2 >/dev/null
ip netns exec "$a" ping -c 1 -w 5 198.18.250.2 >/dev/null
cat > "$work/peers.yaml" <<PEERS
peers:
  - {node: a, node_ip: 198.18.250.1, pod_ip: 198.18.250.1}
  - {node: b-ipv4, node_ip: 198.18.250.2, pod_ip: 198.18.250.2}
  - {node: b-ipv6, node_ip: "fd00:250::2", pod_ip: "fd00:250::2"}
PEERS
ip netns exec "$a" "$bin" agent --node-name a --peers-file "$work/peers.yaml" \
  --listen 127.0.0.1:19470 --layers icmp_pod --icmp-count 1 --interval 200ms --timeout 150ms \
  --window "${secs}s" --mtu-interval 0s > "$work/agent.log" 2>&1 & pids+=($!)
n=$(( secs * 5 ))
ip netns exec "$a" ping -c "$n" -i 0.2 198.18.250.2 > "$work/ping-4.txt" 2>&1 & pids+=($!)
ip netns exec "$a" ping -6 -c "$n" -i 0.2 fd00:250::2 > "$work/ping-6.txt" 2>&1 & pids+=($!)
sleep "$secs"
ip netns exec "$a" curl -sf --max-time 5 http://127.0.0.1:19470/api/v1/results > "$work/results.json" || { echo "the agent did not answer; its log:" >&2; cat "$work/agent.log" >&2; exit 1; }
median() { grep -o "time=[0-9.]*" "$1" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]*1000}'; }
echo "family   iputils ping p50   meshprobe icmp_pod p50   difference   meshprobe probes"
for f in 4 6; do
  p=$(median "$work/ping-$f.txt")
  m=$(jq -r --arg n "b-ipv$f" '.peers[] | select(.node == $n) | .layers.icmp_pod.rtt_seconds.p50 * 1e6 | floor' "$work/results.json")
  k=$(jq -r --arg n "b-ipv$f" '.peers[] | select(.node == $n) | "\(.layers.icmp_pod.successes)/\(.layers.icmp_pod.probes)"' "$work/results.json")
  e=$(jq -c --arg n "b-ipv$f" '[.peers[] | select(.node == $n) | .layers.icmp_pod.errors[]? | {kind, count, last_age_seconds}]' "$work/results.json")
  printf "IPv%s     %6s µs          %6s µs                 %+d µs   %s %s\n" "$f" "$p" "$m" $((m - p)) "$k" "$e"
done
for f in 4 6; do echo "ping IPv$f first replies: $(grep -o "time=[0-9.]* ms" "$work/ping-$f.txt" | head -3 | tr "\n" " ")"; done
for f in 4 6; do echo "ping IPv$f: $(grep -c "time=" "$work/ping-$f.txt") replies"; done
