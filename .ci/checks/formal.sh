#!/usr/bin/env bash
# The formal models (formal/README.md): every Coq proof compiles through formal/coq/_CoqProject
# with nothing admitted and no assumption beyond the section hypotheses, and every TLA+ file
# parses with no ERROR or MISSING node (a deliberately broken module must be refused). The
# stateright model checks (crate flk-formal-model) run with the workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "-- coq"
bash formal/scripts/check_coq.sh formal/coq

echo "-- tla+"
python3 formal/scripts/parse_tla.py --self-test
mapfile -t specs < <(find formal -name '*.tla' | sort)
[ ${#specs[@]} -gt 0 ] || { echo "no TLA+ file under formal/"; exit 1; }
python3 formal/scripts/parse_tla.py "${specs[@]}"
# The parse check really reads the specification: the same file cut short is refused.
broken=$(mktemp --suffix=.tla)
trap 'rm -f "$broken"' EXIT
head -n -3 formal/crr_idempotency.tla >"$broken"
if python3 formal/scripts/parse_tla.py "$broken" >/dev/null; then
  echo "a truncated crr_idempotency.tla parsed without errors"
  exit 1
fi
echo "formal: proofs compiled, assumptions checked, ${#specs[@]} TLA+ file(s) parsed"
