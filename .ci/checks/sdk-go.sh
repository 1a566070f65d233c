#!/usr/bin/env bash
# The Go SDK (sdk/go, standard library only): go vet and go test, whose integration tests
# start real `flk up` processes from the flk binary built here ($FLK_BIN).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

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
