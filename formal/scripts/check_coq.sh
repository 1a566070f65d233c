#!/usr/bin/env bash
# Compiles every proof of a Coq project through its _CoqProject (coq_makefile + make, in a
# scratch copy so the tree stays clean) and fails when any proof does not compile, when a
# source says Admitted, admit, Axiom, Parameter or Conjecture, or when
# `Print Assumptions signature_soundness` names anything beyond the section's own Variables
# and Hypotheses (inside the section) or anything at all (after it: "Closed under the global
# context").
# Usage: check_coq.sh [PROJECT_DIR]   (default: formal/coq beside this script)
set -euo pipefail
dir="${1:-$(dirname "$0")/../coq}"
dir="$(cd "$dir" && pwd)"

fail() { echo "coq: $*" >&2; exit 1; }

sources=$(grep -E '\.v$' "$dir/_CoqProject" | sed 's/^[[:space:]]*//')
[ -n "$sources" ] || fail "no .v file listed in $dir/_CoqProject"
for v in $sources; do
  [ -f "$dir/$v" ] || fail "$v is listed in _CoqProject but missing"
done
for v in "$dir"/*.v; do
  grep -qxF "$(basename "$v")" <<<"$sources" || fail "$(basename "$v") is not listed in _CoqProject"
done
if grep -nwE 'Admitted|admit|Axiom|Axioms|Parameter|Parameters|Conjecture' "$dir"/*.v; then
  fail "a proof is admitted or an axiom is declared"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$dir"/. "$work"/
(
  cd "$work"
  coq_makefile -f _CoqProject -o Makefile.coq >/dev/null
  make -s -f Makefile.coq
) >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "a proof does not compile"; }
cat "$work/build.log"

# The section hypotheses the proofs may rest on, as declared in the sources.
allowed=$(sed -nE 's/^[[:space:]]*(Variable|Variables|Hypothesis|Hypotheses)[[:space:]]+([A-Za-z0-9_ ]+):.*/\2/p' "$dir"/*.v | tr ' ' '\n' | sed '/^$/d' | sort -u)
python3 - "$work/build.log" "$allowed" <<'PY'
import re
import sys

log = open(sys.argv[1]).read().splitlines()
allowed = set(sys.argv[2].split())
listed, headers, closed = [], [], 0
section = None
for line in log:
    if line.startswith("Closed under the global context"):
        closed += 1
        section = None
    elif re.fullmatch(r"[A-Z][A-Za-z ]*:", line):
        section = line[:-1]
        headers.append(section)
    elif section and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_']*", line):
        listed.append((section, line))
bad = [h for h in headers if h != "Section Variables"]
if bad:
    sys.exit(f"coq: Print Assumptions lists {bad}: only section hypotheses are allowed")
unknown = [name for _, name in listed if name not in allowed]
if unknown:
    sys.exit(f"coq: assumptions beyond the section hypotheses: {unknown}")
if not listed:
    sys.exit("coq: no Print Assumptions output inside the section")
if closed == 0:
    sys.exit("coq: signature_soundness is not closed under the global context")
print(f"coq: signature_soundness rests only on the section hypotheses {sorted(n for _, n in listed)}")
PY
