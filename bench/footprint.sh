#!/usr/bin/env bash
# Benchmark (not a test): where one agent's resident memory is, by mapping.
#
#   sudo bench/footprint.sh BINARY [PEERS=1000] [SECONDS=10]
#
# One agent with compare.sh's flags (ICMP to PEERS loopback addresses, one echo each every
# 2 s, --pair-metrics failing, full mesh forced) in a network namespace of its own: 9 s, a
# scrape of /metrics, SECONDS, a second scrape. Prints VmHWM, VmRSS, RssAnon, RssFile and the
# thread count at each step, then the resident kB per mapping and permission from
# /proc/PID/smaps (binary code, read-only data, [heap], anonymous, each library), largest first.
# Needs root (raw ICMP socket, network namespaces). WRAP="env VAR=…" runs the agent under a
# wrapper (e.g. GLIBC_TUNABLES or LD_PRELOAD).
set -euo pipefail
bin=${1:?usage: footprint.sh BINARY [PEERS] [SECONDS]}; n=${2:-1000}; secs=${3:-10}
[ "$(id -u)" -eq 0 ] || { echo "needs root (raw ICMP sockets, network namespaces)" >&2; exit 2; }
work=$(mktemp -d); ns=mpfoot-$$
ip netns add "$ns"; ip -n "$ns" link set lo mtu 1500 up
a=
cleanup() { [ -n "$a" ] && kill "$a" 2>/dev/null; wait 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
{ echo "peers:"; echo "  - {node: self, node_ip: 127.0.0.1, pod_ip: 127.0.0.1, port: 19999}"
  for i in $(seq 1 "$n"); do ip="127.1.$((i / 250)).$((i % 250 + 1))"; echo "  - {node: $ip, node_ip: 127.0.0.1, pod_ip: $ip, port: 19464}"; done; } > "$work/peers.yaml"
# shellcheck disable=SC2086 # WRAP is words on purpose
MESHPROBE_FULL_MESH_MAX=1000000 ip netns exec "$ns" ${WRAP:-} "$bin" agent --node-name self --listen 127.0.0.1:19999 \
  --peers-file "$work/peers.yaml" --interval 2s --timeout 1s --icmp-count 1 --layers icmp_pod --mtu-interval 0s \
  --pair-metrics failing --max-rate 100000 --max-in-flight 1024 > "$work/agent.log" 2>&1 & a=$!
show() {
  awk -v step="$1" '/^(VmHWM|VmRSS|RssAnon|RssFile|Threads):/ {v[$1] = $2}
    END {printf "%-8s VmHWM %6d kB  VmRSS %6d kB  anon %6d kB  file %6d kB  threads %d\n", step, v["VmHWM:"], v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["Threads:"]}' "/proc/$a/status"
}
scrape() { ip netns exec "$ns" curl -s --max-time 10 -o /dev/null -w '%{size_download}' http://127.0.0.1:19999/metrics; }
sleep 9; show start
echo "scrape: $(scrape) bytes"; show scraped
sleep "$secs"; show later
echo "scrape: $(scrape) bytes"; show scraped
echo "resident kB by mapping (Rss, of it anonymous):"
awk '/^[0-9a-f]+-[0-9a-f]+ / { k = ($6 == "" ? "[anon]" : $6) " " $2 }
     /^Rss:/ { r[k] += $2 } /^Anonymous:/ { an[k] += $2 }
     END { for (k in r) if (r[k] > 0) printf "%8d %8d  %s\n", r[k], an[k], k }' "/proc/$a/smaps" | sort -rn
