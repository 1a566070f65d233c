#!/usr/bin/env bash
# The Python SDK (sdk/python): installs it with its test extras into a throwaway virtualenv,
# type-checks it (mypy --strict) and runs its tests, which start real `flk up` processes from
# the flk binary built here ($FLK_BIN).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

# The SDKs' vector copies (a clone has no ../shared) must be the shared golden files.
if [ -d ../shared/golden ]; then
  for f in signing_vectors.json construction_vectors.json verify_vectors.json; do
    cmp -s "../shared/golden/$f" "sdk/testdata/$f" \
      || { echo "sdk/testdata/$f differs from ../shared/golden/$f"; exit 1; }
  done
fi

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac
cargo build -q --locked -p flk
export FLK_BIN=$target/debug/flk
export FLK_SDK_TESTDATA=$root/sdk/testdata

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! python3 -m venv "$tmp/venv" 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-venv
  python3 -m venv "$tmp/venv"
fi
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$root/sdk/python[test]"
"$tmp/venv/bin/python" -m mypy --strict --cache-dir "$tmp/mypy" "$root/sdk/python/src/flk_sdk"
cd "$tmp"  # the installed package is what is tested, not the source tree
"$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$root/sdk/python" "$root/sdk/python/tests"
