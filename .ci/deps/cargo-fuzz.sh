#!/usr/bin/env bash
# Installs what the fuzz targets need (.ci/checks/fuzz.sh, scripts/fuzz.sh): a nightly
# toolchain (libFuzzer's sanitizer flags are nightly-only) and cargo-fuzz. Idempotent.
set -euo pipefail

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
