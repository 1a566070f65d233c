#!/usr/bin/env bash
# Adds the wasm32-unknown-unknown target when missing: sdk/wasm compiles flk-sdk's no_std
# signing core to WebAssembly, and .ci/checks/sdk-wasm.sh tests it in Node and Chromium.
# Idempotent.
set -euo pipefail

if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  exit 0
fi
rustup target add wasm32-unknown-unknown
