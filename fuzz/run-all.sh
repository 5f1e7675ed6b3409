#!/usr/bin/env bash
# Long fuzzing runs, one target after another (the machine is shared: each at nice 19).
#
#   fuzz/run-all.sh MINUTES [TARGET...]        (default: every target in fuzz/fuzz_targets)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). New inputs
# go to a work corpus under $FUZZ_OUT (default /tmp/meshprobe-fuzz), seeded from the checked-in
# fuzz/corpus/<target>; logs in $FUZZ_OUT/<target>.log, crashes in fuzz/artifacts/<target>/.
# Afterwards `fuzz/run-all.sh merge [TARGET...]` minimises work + checked-in corpus back into
# fuzz/corpus/<target>: a greedy edge cover (edgecover.py), at most $CAP (195) files a target.
# Sanitizer: $SANITIZER (default none: safe Rust; the point is panics, overflows, hangs and
# allocation blow-ups); target dir: $FUZZ_TARGET_DIR.
set -u
cd "$(dirname "$0")"
out=${FUZZ_OUT:-/tmp/meshprobe-fuzz}
san=${SANITIZER:-none}
tdir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}
mkdir -p "$out"
flags=(-s "$san" --target-dir "$tdir")

targets() { if [ $# -gt 0 ]; then echo "$@"; else ls fuzz_targets | sed 's/\.rs$//'; fi; }

if [ "${1:-}" = merge ]; then
  shift
  nice -n 19 cargo +nightly fuzz build "${flags[@]}" >"$out/build.log" 2>&1 || {
    echo "build failed: $out/build.log"; exit 1; }
  bin="$tdir/$(rustc -vV | sed -n 's/^host: //p')/release"
  for t in $(targets "$@"); do
    m="$out/merge/$t"; rm -rf "$m"; mkdir -p "$m/out" "$m/new"
    before=$(ls "corpus/$t" | wc -l)
    # One pass over seeds + found inputs records each input's new edges; keep a greedy edge
    # cover of at most $CAP files (named seeds and regress-* inputs always stay).
    nice -n 19 "$bin/$t" -merge=1 -merge_control_file="$m/control" -rss_limit_mb=2048 -timeout=10 \
      "$m/out" "corpus/$t" "$out/corpus/$t" >"$m/merge.log" 2>&1
    python3 edgecover.py "$m/control" "${CAP:-195}" >"$m/chosen" 2>"$m/cover"
    while read -r f; do cp "$f" "$m/new/$(sha1sum "$f" | cut -c1-40)"; done <"$m/chosen"
    for f in "corpus/$t"/*; do
      n=$(basename "$f"); [[ $n =~ ^[0-9a-f]{40}$ ]] || cp "$f" "$m/new/"
    done
    rm -rf "corpus/$t" && cp -r "$m/new" "corpus/$t"
    echo "$t: $before -> $(ls "corpus/$t" | wc -l) files; $(cat "$m/cover")"
  done
  exit 0
fi

minutes=${1:?usage: run-all.sh MINUTES [TARGET...] | merge [TARGET...]}
shift
nice -n 19 cargo +nightly fuzz build "${flags[@]}" >"$out/build.log" 2>&1 || {
  echo "build failed: $out/build.log"; exit 1; }
for t in $(targets "$@"); do
  mkdir -p "$out/corpus/$t"
  echo "$(date -u +%H:%M:%S) $t: ${minutes} min, log $out/$t.log"
  nice -n 19 cargo +nightly fuzz run "${flags[@]}" "$t" "$out/corpus/$t" "corpus/$t" -- \
    -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -max_len=65536 -print_final_stats=1 >"$out/$t.log" 2>&1
  rc=$?
  stats=$(grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$out/$t.log" | tr '\n' ' ')
  cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$out/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+')
  echo "$(date -u +%H:%M:%S) $t: exit $rc; $cov; $stats"
done
