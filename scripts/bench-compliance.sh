#!/usr/bin/env bash
# Compliance report time over a log of N decisions (docs/BENCHMARKS.md, "Compliance report
# time (issue 17)"). The stores are built by the real pipeline: `flk up` decides N signed PCS
# sent by `flk bench` (gRPC SubmitStream on the gateway; 80 % accepted, 10 % escalated, 10 %
# rejected, no duplicates or tampered items, so N decisions), svc-audit integrates them, the
# stack is stopped; then `flk report compliance --format json` and, as the baseline,
# `flk audit verify --data-dir` over the same data directory, ROUNDS runs each, interleaved.
#
# scripts/bench-compliance.sh [N] [ROUNDS]        (KEEP=DIR keeps/reuses the data directory)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
rounds=${2:-5}
target=${CARGO_TARGET_DIR:-target}

cargo build -q --release -p flk
flk="$target/release/flk"
work=${KEEP:-$(mktemp -d)}
mkdir -p "$work"
data="$work/data"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; [ -z "${KEEP:-}" ] && rm -rf "$work"; }
trap cleanup EXIT

size() { sed -n 2p "$data/audit/tlog/checkpoint" 2>/dev/null || echo 0; }

if [ "$(size)" != "$n" ]; then
  rm -rf "$data"
  "$flk" up --listen 127.0.0.1:0 --hmac-key bench-secret --data-dir "$data" >"$work/up.out" 2>"$work/up.err" &
  pid=$!
  until grep -q '^gateway listening on ' "$work/up.out" 2>/dev/null; do sleep 0.2; done
  url=$(sed -n 's/^gateway listening on //p' "$work/up.out")
  start=$(date +%s)
  "$flk" bench --url "$url" --protocol grpc --grpc-mode stream --hmac-key bench-secret \
    --count "$n" --mix "escalated=0.1,rejected=0.1" --quiet >"$work/bench.txt"
  grep -E 'throughput|completed' "$work/bench.txt" || true
  until [ "$(size)" = "$n" ]; do sleep 1; done
  echo "built: $n decisions decided and integrated in $(( $(date +%s) - start )) s"
  kill -TERM "$pid"; wait "$pid" || true; pid=""
fi
du -sh "$data/verify/outcome-log" "$data/audit/tlog"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
: >"$work/report.t"; : >"$work/verify.t"
for r in $(seq "$rounds"); do
  secs "$flk" report compliance --framework soc2 --from 2000-01-01 --to 2100-01-01 \
    --data-dir "$data" --format json -o "$work/report.json" >>"$work/report.t"
  secs "$flk" audit verify --data-dir "$data" >>"$work/verify.t"
done
echo "flk report compliance --format json: runs $(tr '\n' ' ' <"$work/report.t")s, median $(median <"$work/report.t") s"
echo "flk audit verify --data-dir (baseline): runs $(tr '\n' ' ' <"$work/verify.t")s, median $(median <"$work/verify.t") s"
python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
seen = {}
for c in r["controls"]:
    for e in c["evidence"]:
        seen[e["kind"]] = e
for kind in ("audit_log_integrity", "decision_coverage"):
    e = seen.get(kind)
    if e:
        print(kind, e["status"], {k: e["figures"][k] for k in ("decisions", "in_audit_log", "entries_checked") if k in e["figures"]})
PY
