#!/usr/bin/env bash
# Installs Debian's golang-go when no `go` is on PATH: the Go SDK (sdk/go, standard library
# only) is vetted and tested with it by .ci/checks/sdk-go.sh. Idempotent.
set -euo pipefail

if command -v go >/dev/null; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq golang-go

go version
