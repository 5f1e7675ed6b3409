#!/usr/bin/env bash
# Benchmark (not a test): the diagnosis on the real lab. Runs tests/lab_e2e.rs's fault suite
# with a long clean run first: node-1's /api/v1/diagnosis is polled every 0.5 s for
# CLEAN_SECONDS on a healthy lab (any finding fails), then every lab fault kind (and two at
# once) is injected and the time from the command to the right cause and location, and back
# to healthy after `clear`, is printed per fault (1 s probe interval, 8 s window).
#
#   sudo bench/diagnosis.sh [CLEAN_SECONDS=600]
set -euo pipefail
secs=${1:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
cd "$root"
MESHPROBE_E2E_CLEAN_SECS="$secs" cargo test --release --test lab_e2e -- \
  every_fault_is_seen_by_packets_and_agents_then_clears --nocapture 2>&1 |
  grep -E "clean run|diagnosis right|^diagnosis|agents agree .* right finding|^suite|test result"
