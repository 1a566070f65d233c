#!/usr/bin/env bash
# Installs cargo-deny for .ci/checks/deny.sh (licenses, bans, sources, advisories from the
# vendored database in .ci/advisory-db). Idempotent.
set -euo pipefail

if command -v cargo-deny >/dev/null; then
  exit 0
fi
cargo install cargo-deny --locked
