#!/usr/bin/env bash
# The Go SDK (sdk/go, standard library only): go vet and go test, whose integration tests
# start real `flk up` processes from the flk binary built here ($FLK_BIN).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

# The SDKs' vector copies (a clone has no ../shared) must be the shared golden files.
if [ -d ../shared/golden ]; then
  for f in signing_vectors.json verify_vectors.json; do
    cmp -s "../shared/golden/$f" "sdk/testdata/$f" \
      || { echo "sdk/testdata/$f differs from ../shared/golden/$f"; exit 1; }
  done
fi

command -v go >/dev/null || bash .ci/deps/golang.sh

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac
cargo build -q --locked -p flk
export FLK_BIN=$target/debug/flk
export FLK_SDK_TESTDATA=$root/sdk/testdata
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly

cd sdk/go
test -z "$(gofmt -l .)" || { echo "gofmt: these files need formatting:"; gofmt -l .; exit 1; }
go vet ./...
go test -count=1 ./...
