#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (libFuzzer, AddressSanitizer) for SECONDS each and
# prints a table: target, executions, seconds, crashes. Exits non-zero if any target crashed
# (the input is then in fuzz/artifacts/<target>/; docs/RELIABILITY.md, "Fuzzing", says how to
# turn it into a regression test).
#
# scripts/fuzz.sh SECONDS [TARGET...]
#
# The checked-in seed corpus (fuzz/corpus/<target>/) is only read; what a run discovers goes
# to a scratch corpus next to the build ($FUZZ_TARGET_DIR/corpus/<target>), which later runs
# start from. Builds go to $FUZZ_TARGET_DIR: default $CARGO_TARGET_DIR/fuzz, else a directory
# outside the clone (~/.cache/flk/fuzz-target) so that CI runs on one machine share the
# instrumented build of the dependencies. Needs nightly Rust and cargo-fuzz, installed here
# when missing. FUZZ_LOG=FILE appends one line per target run (date, target, runs, seconds,
# crashes) for the totals in docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

secs=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "SECONDS must be a positive integer" >&2; exit 2; }

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  target_dir=$FUZZ_TARGET_DIR
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir=$CARGO_TARGET_DIR/fuzz
else
  target_dir=${XDG_CACHE_HOME:-$HOME/.cache}/flk/fuzz-target
fi
case $target_dir in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export CARGO_TARGET_DIR=$target_dir

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "building ${#targets[@]} fuzz targets into $target_dir"
build_start=$SECONDS
cargo +nightly fuzz build
echo "built in $((SECONDS - build_start)) s"

rows=()
failed=0
for t in "${targets[@]}"; do
  scratch="$target_dir/corpus/$t"
  mkdir -p "$scratch" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="$target_dir/$t.log"
  start=$SECONDS
  # -timeout: one input taking 10 s is a hang, reported like a crash.
  status=0
  cargo +nightly fuzz run "$t" "$scratch" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  took=$((SECONDS - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed=1
    echo "== $t: crashed (exit $status); the end of its log ($log):"
    tail -n 40 "$log"
  fi
  rows+=("$(printf '%-16s %12s %8s %8s' "$t" "${runs:-?}" "$took" "$crashes")")
  if [ -n "${FUZZ_LOG:-}" ]; then
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "${runs:-0}" "$took" "$crashes" >>"$FUZZ_LOG"
  fi
done

echo
printf '%-16s %12s %8s %8s\n' target runs seconds crashes
printf '%s\n' "${rows[@]}"
if [ "$failed" -ne 0 ]; then
  echo "a fuzz target crashed: see fuzz/artifacts/<target>/"
  exit 1
fi
