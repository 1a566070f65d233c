#!/usr/bin/env bash
# SIEM streaming inside `flk up`, measured with `flk bench` (docs/BENCHMARKS.md, "SIEM"):
#
#   lag    end-to-end lag at a steady rate: a Splunk HEC stand-in (flk-testkit's siem_receiver)
#          takes the stack's events and measures arrival minus each event's time;
#   outage the submit path flat out with no sink, with a sink that is up, and with a sink that
#          is down (nothing listens on its port), in interleaved rounds; then the down sink's
#          receiver starts and the backlog's drain is timed.
#
# scripts/bench-siem.sh lag|outage [ROUNDS]   (RATE, DURATION, FLAT_DURATION in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-lag}
rounds=${2:-3}
rate=${RATE:-5000}
duration=${DURATION:-30s}
flat=${FLAT_DURATION:-20s}
target=${CARGO_TARGET_DIR:-target}

cargo build -q --release -p flk
cargo build -q --release -p flk-testkit --features siem --example siem_receiver
flk="$target/release/flk"
receiver_bin="$target/release/examples/siem_receiver"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_receiver PORT LOG: a Splunk HEC stand-in on PORT, its JSON lines in LOG.
start_receiver() {
  "$receiver_bin" splunk "127.0.0.1:$1" bench-hec-token >"$2" 2>/dev/null &
  pids+=($!)
  until grep -q '"events"' "$2" 2>/dev/null; do sleep 0.2; done
}

# up NAME PORT|none: flk up over $work/NAME with a sink to PORT (or none); sets $url.
up() {
  local name=$1 port=$2 cfg="$work/$1.toml"
  echo "bench-hec-token" >"$work/hec.token"
  : >"$cfg"
  if [ "$port" != none ]; then
    cat >"$cfg" <<TOML
[audit.siem]
spool_max_bytes = 268435456
[[audit.siem.sinks]]
name = "hec"
kind = "splunk_hec"
url = "http://127.0.0.1:$port"
token_file = "$work/hec.token"
TOML
  fi
  "$flk" up --listen 127.0.0.1:0 --data-dir "$work/$name" --config "$cfg" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  up_pid=$!
  until grep -q '^gateway listening on ' "$work/$name.out" 2>/dev/null; do sleep 0.2; done
  url=$(sed -n 's/^gateway listening on //p' "$work/$name.out")
}

bench() { "$flk" bench --url "$url" --data-dir "$work/$1" --quiet --json "${@:2}"; }
summary() { python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_ms"]; print("%.0f/s p50 %.2f ms p99 %.2f ms mismatches %d" % (r["throughput_per_sec"], l["p50"], l["p99"], r["mismatches"]))'; }

case "$mode" in
lag)
  for i in $(seq "$rounds"); do
    port=$(free_port)
    start_receiver "$port" "$work/recv-$i.log"
    up "lag-$i" "$port"
    bench "lag-$i" --rate "$rate" --duration "$duration" --mix accepted=0.9,escalated=0.06,rejected=0.04 >"$work/lag-$i.json"
    sleep 3   # the last events reach the receiver; its next line covers them
    echo "round $i: submit $(summary <"$work/lag-$i.json"); SIEM $(tail -n 1 "$work/recv-$i.log")"
    kill "$up_pid"; wait "$up_pid" 2>/dev/null || true
  done
  ;;
outage)
  for i in $(seq "$rounds"); do
    up "none-$i" none
    echo "round $i  no sink:        $(bench "none-$i" --duration "$flat" | summary)"
    kill "$up_pid"; wait "$up_pid" 2>/dev/null || true

    port=$(free_port)
    start_receiver "$port" "$work/up-$i.log"
    up "up-$i" "$port"
    echo "round $i  sink up:        $(bench "up-$i" --duration "$flat" | summary)"
    kill "$up_pid"; wait "$up_pid" 2>/dev/null || true

    port=$(free_port)
    up "down-$i" "$port"
    echo "round $i  sink down:      $(bench "down-$i" --duration "$flat" | summary)"
    spool=$(du -sb "$work/down-$i/audit/siem/hec/spool" | cut -f1)
    decided=$(curl -s -H "authorization: Bearer $(cat "$work/down-$i/admin.token")" "$url/metrics" | awk '/^flk_audit_tree_size /{print $2}')
    start=$(date +%s.%N)
    start_receiver "$port" "$work/down-$i.log"
    until python3 -c "import json,sys; l=open('$work/down-$i.log').read().split(chr(10)); l=[x for x in l if x]; sys.exit(0 if json.loads(l[-1])['events']>=float('${decided:-0}') else 1)" 2>/dev/null; do sleep 0.5; done
    end=$(date +%s.%N)
    echo "round $i  recovery: spool $spool bytes, $decided log entries delivered $(python3 -c "print(f'{$end-$start:.1f}')") s after the receiver came up"
    kill "$up_pid"; wait "$up_pid" 2>/dev/null || true
  done
  ;;
*) echo "usage: $0 lag|outage [ROUNDS]" >&2; exit 2 ;;
esac
