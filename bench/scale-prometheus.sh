#!/usr/bin/env bash
# Benchmark (not a test; root not needed): meshprobe at fleet scale through a real Prometheus.
# For each N, `meshprobe plan --simulate --serve` emulates N agents in 3 zones (agents'
# defaults: 5 s interval, 60 s window, sampled plan, --pair-metrics auto), Debian's prometheus
# scrapes one target per zone every 30 s with deploy/prometheus/meshprobe-rules.yaml loaded,
# node-down, cni, partition, route, policy, loss and mtu are switched on in turn, and `meshprobe diagnose
# --prometheus` runs every 5 s. Prints per fault the time from its start to the right answer and
# to the matching alert firing, then a clean period's findings and alerts, the queries and wall
# time of a diagnose, Prometheus' head series and RSS, the emulator's scrape size.
# bench/scale_prometheus.py does the work; its header lists the variables (SCRAPE, INTERVAL,
# WINDOW, WARM, ON, OFF, CLEAN, POLL, FAULTS, TARGETS, SAVE_WRONG).
#
#   bench/scale-prometheus.sh [BINARY] [N ...]      default: target/release/meshprobe 1000 5000
#   e.g. cargo build --release && bench/scale-prometheus.sh target/release/meshprobe 1000 5000
set -euo pipefail
B=${1:-${CARGO_TARGET_DIR:-target}/release/meshprobe}
shift || true
[ $# -gt 0 ] || set -- 1000 5000
command -v prometheus >/dev/null || { echo "needs prometheus (Debian package prometheus)" >&2; exit 2; }
[ -x "$B" ] || { echo "no binary at $B" >&2; exit 2; }
exec python3 "$(dirname "$0")/scale_prometheus.py" "$B" "$@"
