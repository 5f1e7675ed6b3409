#!/usr/bin/env bash
# Benchmark (not a test): every lab fault kind under every pod addressing layout
# (`meshprobe lab --pod-addressing subnet|blocks|vpc`, crates/lab/src/plan.rs), in each IP
# family (`--ip-family ipv4|ipv6`). Runs
# tests/lab_e2e.rs's `addressing_matrix`: per layout a 4-node, 2-zone lab (1 s interval, 8 s
# window); per fault node-1's /api/v1/diagnosis polled every 250 ms from the command until it
# is exactly the right cause and place, 6 more polls that must agree, then `clear` and polled
# until healthy. Every poll is checked for findings naming a node the fault does not involve.
# Prints one table row per (layout, fault); the test fails if any row is wrong.
#
#   sudo bench/addressing.sh                       # release build
#   sudo BENCH_PROFILE=debug bench/addressing.sh   # the debug build (what `cargo test` uses)
#   sudo ADDRESSING_FAMILIES=ipv4 bench/addressing.sh   # some families only (ipv4,ipv6,dual: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
cd "$root"
flags=()
[ "${BENCH_PROFILE:-release}" = release ] && flags=(--release)
cargo test "${flags[@]}" --test lab_e2e -- addressing_matrix --ignored --exact --nocapture 2>&1 |
  sed -n '/^ADDRESSING TABLE/,/^$/p; /^test result/p; /panicked/,+3p'
