#!/usr/bin/env bash
# Benchmark (not a test): meshprobe side by side with fping and prometheus-blackbox-exporter,
# doing the same work to the same N loopback addresses at the same rate.
#
#   sudo bench/compare.sh [ADDRESSES=1000] [SECONDS=60] [INTERVAL_S=2]
#
# ICMP: every address gets one echo request every INTERVAL_S seconds from
#   - meshprobe agent --layers icmp_pod --icmp-count 1 --mtu-interval 0s
#   - fping -l -p INTERVAL_MS (loop mode, one echo per address per period)
#   - blackbox_exporter module icmp, driven by a paced client calling /probe?target=ADDR
# HTTP: every address gets one GET /ping on a new TCP connection every INTERVAL_S seconds from
#   - meshprobe agent --layers http
#   - blackbox_exporter module http_2xx (same pacing client)
# answered by one `meshprobe serve` bound to 0.0.0.0. Only the prober's own CPU is counted (the
# pacing client and the HTTP server are separate processes). Everything runs in a network
# namespace of its own (loopback only); the host's network is not touched. Background processes
# are started with `ip netns exec` directly (not through a shell function) so $! is the prober.
# Prints, per tool: probes done, CPU-seconds per 1,000 probes, peak RSS; then the ratios.
# Installs fping and prometheus-blackbox-exporter with apt-get when missing (root).
# COMPARE_QUICK=1: only meshprobe and fping over ICMP (no blackbox_exporter, no HTTP).
set -euo pipefail
n=${1:-1000}; secs=${2:-60}; iv=${3:-2}
quick=${COMPARE_QUICK:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MESHPROBE_BIN:-$root/target/release/meshprobe}
[ "$(id -u)" -eq 0 ] || { echo "needs root (raw ICMP sockets, network namespaces)" >&2; exit 2; }
need=()
command -v fping >/dev/null || need+=(fping)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d); ns=mpcmp-$$
ip netns add "$ns"; ip -n "$ns" link set lo mtu 1500 up
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
inns() { ip netns exec "$ns" "$@"; }
hz=$(getconf CLK_TCK)
port=19464
addrs() { for i in $(seq 1 "$n"); do echo "127.1.$((i / 250)).$((i % 250 + 1))"; done; }
addrs > "$work/addrs"
{ echo "peers:"; echo "  - {node: self, node_ip: 127.0.0.1, pod_ip: 127.0.0.1, port: 19999}"
  while read -r a; do echo "  - {node: $a, node_ip: 127.0.0.1, pod_ip: $a, port: $port}"; done < "$work/addrs"; } > "$work/peers.yaml"
cat > "$work/blackbox.yml" <<YML
modules:
  icmp:
    prober: icmp
    timeout: 1s
    icmp:
      preferred_ip_protocol: ip4
  http_2xx:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
YML
# The pacing client (bench/compare_pace.py): 16 workers share the addresses; each address is
# requested once per interval, spread evenly; keep-alive connections to the exporter.
pace=$root/bench/compare_pace.py
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
meshprobe_probes() {
  inns curl -s --max-time 10 http://127.0.0.1:19999/metrics | awk -v l="$1" '$1 ~ "^meshprobe_probes_total" && $1 ~ "layer=\""l"\"" && $1 ~ "result=\"ok\"" {s += $2} END {printf "%d\n", s}'
}
results=()
record() { # name probes cpu_ticks hwm_kib
  results+=("$1|$2|$3|$4")
  awk -v n="$1" -v p="$2" -v c="$3" -v h="$4" -v hz="$hz" 'BEGIN {
    printf "%-28s %8d probes  %.4f CPU-s/1000 probes  peak RSS %.2f MiB (%d kB)\n", n, p, (p > 0 ? c / hz / p * 1000 : 0), h / 1024, h }'
}
warm=$(( iv * 3 + 3 ))

run_meshprobe() { # layer
  MESHPROBE_FULL_MESH_MAX=1000000 ip netns exec "$ns" "$bin" agent --node-name self --listen 127.0.0.1:19999 --peers-file "$work/peers.yaml" \
    --interval "${iv}s" --timeout 1s --icmp-count 1 --layers "$1" --mtu-interval 0s \
    --pair-metrics failing --max-rate 100000 --max-in-flight 1024 > "$work/agent-$1.log" 2>&1 & local a=$!; pids+=("$a")
  sleep "$warm"
  local c0 p0 c1 p1; c0=$(cpu "$a"); p0=$(meshprobe_probes "$1")
  sleep "$secs"
  c1=$(cpu "$a"); p1=$(meshprobe_probes "$1")
  record "meshprobe ($1)" $((p1 - p0)) $((c1 - c0)) "$(hwm "$a")"
  kill "$a"; wait "$a" 2>/dev/null || true
}
run_blackbox() { # module url_fmt
  ip netns exec "$ns" prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address=127.0.0.1:9115 > "$work/bb.log" 2>&1 & local b=$!; pids+=("$b")
  sleep 2
  inns python3 "$pace" "$work/addrs" "$1" "$2" "$iv" "$warm" > /dev/null
  local c0 c1 ok; c0=$(cpu "$b")
  ok=$(inns python3 "$pace" "$work/addrs" "$1" "$2" "$iv" "$secs")
  c1=$(cpu "$b")
  record "blackbox_exporter ($1)" "$ok" $((c1 - c0)) "$(hwm "$b")"
  kill "$b"; wait "$b" 2>/dev/null || true
}

echo "# $n loopback addresses, one probe each every ${iv}s, measured over ${secs}s after ${warm}s warm-up"
ip netns exec "$ns" "$bin" serve --listen "0.0.0.0:$port" > "$work/serve.log" 2>&1 & pids+=($!)

# ICMP
run_meshprobe icmp_pod
ip netns exec "$ns" fping -l -q -p $((iv * 1000)) -i 1 -t 1000 -f "$work/addrs" > "$work/fping.log" 2>&1 & f=$!; pids+=("$f")
sleep "$warm"; c0=$(cpu "$f"); sleep "$secs"; c1=$(cpu "$f")
# fping does not report counts in -q loop mode until it exits: the rate is fixed by -p.
record "fping" $(( n * secs / iv )) $((c1 - c0)) "$(hwm "$f")"
kill "$f"; wait "$f" 2>/dev/null || true
if [ "$quick" != 1 ]; then
  run_blackbox icmp "{}"
  # HTTP
  run_meshprobe http
  run_blackbox http_2xx "http://{}:$port/ping"
fi

echo "# ratios (meshprobe ÷ other, CPU per probe and peak RSS)"
printf '%s\n' "${results[@]}" | awk -F'|' -v hz="$hz" '
  { name = $1; probes[name] = $2; cpu[name] = $3 / hz; rss[name] = $4 / 1024 }
  END {
    split("meshprobe (icmp_pod)|fping;meshprobe (icmp_pod)|blackbox_exporter (icmp);meshprobe (http)|blackbox_exporter (http_2xx)", pairs, ";")
    for (i in pairs) {
      split(pairs[i], ab, "|"); a = ab[1]; b = ab[2]
      if (probes[a] > 0 && probes[b] > 0 && cpu[b] > 0)
        printf "%-22s vs %-28s CPU/probe %.2fx  peak RSS %.2fx\n", a, b, (cpu[a] / probes[a]) / (cpu[b] / probes[b]), rss[a] / rss[b]
    }
  }'
