#!/usr/bin/env bash
# sdk/wasm: flk-sdk's no_std core builds for wasm32-unknown-unknown on its own; the package
# builds (npm ci, npm run build), its tests pass in Node and in headless Chromium against a
# real `flk up`, and its conformance runner prints exactly what the Rust runner prints.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

bash .ci/deps/wasm.sh
command -v chromium >/dev/null || bash .ci/deps/chromium.sh

echo "flk-sdk core: cargo build --no-default-features --target wasm32-unknown-unknown"
cargo build -q -p flk-sdk --no-default-features --target wasm32-unknown-unknown --locked

# The tests start the workspace's flk binary (built by the test run before this; a no-op then),
# or $FLK_BIN when given.
if [ -z "${FLK_BIN:-}" ]; then
  cargo build -q -p flk --locked
  export FLK_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/flk"
fi

cd sdk/wasm
npm ci --no-audit --no-fund
npm run build
npm test

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
vectors="$root/sdk/rust/tests/data/signing_vectors.json"
(cd "$root" && cargo run -q -p flk-sdk --example conformance --locked) < "$vectors" > "$tmp/rust.jsonl"
node conformance.mjs < "$vectors" > "$tmp/wasm.jsonl"
if ! cmp -s "$tmp/rust.jsonl" "$tmp/wasm.jsonl"; then
  echo "sdk/wasm conformance output differs from the Rust runner's:"
  diff "$tmp/rust.jsonl" "$tmp/wasm.jsonl" | head -20
  exit 1
fi
echo "sdk/wasm: conformance output identical to the Rust runner's ($(wc -l < "$tmp/wasm.jsonl") vectors)"
