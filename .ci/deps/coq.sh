#!/usr/bin/env bash
# Installs Debian's coq package (coqc, coq_makefile) when missing: .ci/checks/formal.sh
# compiles the proofs in formal/coq with it.
set -euo pipefail

if command -v coqc >/dev/null && command -v coq_makefile >/dev/null; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq coq

command -v coqc >/dev/null && command -v coq_makefile >/dev/null
coqc --version | head -n 1
