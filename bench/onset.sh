#!/usr/bin/env bash
# Onset benchmark (not a test, outside CI; root, Linux): how the diagnosis behaves during the
# first seconds of a fault. It builds a 4-node, 2-zone lab (1 s interval, 500 ms timeout, 8 s
# window), then for each fault kind, RUNS times: waits until node-1's diagnosis is healthy,
# injects the fault, polls node-1's GET /api/v1/diagnosis every 100 ms for SECS seconds, records
# every distinct findings set with the time it was first seen, clears the fault. Per fault kind
# it reports:
#   wrong   — onsets (of RUNS) during which any findings set other than "healthy", exactly
#             the right finding, or a partial one was served, and the number of such distinct
#             wrong sets; partial — the one right cause and place, some of its pairs not yet
#             (e.g. `routing` node-1 with node-1 → web-node-3 before node-1 → node-3 joins);
#   right   — time from the fault command to the first poll showing exactly the right finding
#             (median, max; "-" when never within SECS);
#   flips   — polls after the first right answer that were not right (stability, e.g. loss).
# The right finding is the one tests/lab_e2e.rs asserts (cause and location).
#
#   sudo bench/onset.sh [BINARY] [RUNS] [SECS] [OUT]
#   e.g. CARGO_TARGET_DIR=/tmp/target-onset cargo build && \
#        sudo bench/onset.sh /tmp/target-onset/debug/meshprobe 5 8 /tmp/onset.json
#
# Uses lab prefix ONSET_PREFIX (default mpo) and port base ONSET_PORT (default 19300); the lab
# is torn down at the end (also on Ctrl-C). Every onset's sequence is written to OUT as JSON.
# The polling and the figures are bench/onset_poll.py's.
set -euo pipefail

B=${1:-${CARGO_TARGET_DIR:-target}/debug/meshprobe}
RUNS=${2:-5}
SECS=${3:-8}
OUT=${4:-/tmp/onset-$(date +%s).json}
PREFIX=${ONSET_PREFIX:-mpo}
PORT=${ONSET_PORT:-19300}
FAULTS=${ONSET_FAULTS:-partition,node-down,cni,route,loss,policy}
# The agents' timing (the lab's fast defaults; ONSET_INTERVAL=5s ONSET_TIMEOUT=1s ONSET_WINDOW=60s
# are the agent's own defaults: give SECS ≥ 20 then).
INTERVAL=${ONSET_INTERVAL:-1s}
TIMEOUT=${ONSET_TIMEOUT:-500ms}
WINDOW=${ONSET_WINDOW:-8s}

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
[ -x "$B" ] || { echo "no binary at $B" >&2; exit 2; }

LOG=/tmp/$PREFIX-onset-lab.log
"$B" lab --prefix "$PREFIX" down >/dev/null 2>&1 || true
"$B" lab --prefix "$PREFIX" up --port-base "$PORT" --nodes 4 --zones 2 --interval "$INTERVAL" \
    --timeout "$TIMEOUT" --window "$WINDOW" --mtu-interval 2s >"$LOG" 2>&1 &
LAB=$!
cleanup() {
    kill -INT "$LAB" 2>/dev/null || true
    wait "$LAB" 2>/dev/null || true
    "$B" lab --prefix "$PREFIX" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 120); do
    grep -q "Ctrl-C here tears the lab down" "$LOG" && break
    kill -0 "$LAB" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.5
done
grep -q "Ctrl-C here tears the lab down" "$LOG" || { echo "lab not up" >&2; exit 1; }

python3 "$(dirname "$0")/onset_poll.py" "$B" "$PREFIX" "$PORT" "$RUNS" "$SECS" "$OUT" "$FAULTS" "$INTERVAL" "$WINDOW" "$TIMEOUT"
