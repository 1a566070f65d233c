#!/usr/bin/env bash
# sdk/typescript: the package builds (npm ci, npm run build), its tests pass in Node (vectors,
# retries, every signing mode against a real `flk up`, the outbox across SIGKILL) and in
# headless Chromium, and its conformance runner prints exactly what the Rust runner prints.
# The wasm package is built first: it is the Ed25519 fallback the tests exercise.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

bash .ci/deps/wasm.sh
command -v chromium >/dev/null || bash .ci/deps/chromium.sh

# The tests start the workspace's flk binary (built by the test run before this; a no-op then),
# or $FLK_BIN when given.
if [ -z "${FLK_BIN:-}" ]; then
  cargo build -q -p flk --locked
  export FLK_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/flk"
fi

(cd sdk/wasm && npm ci --no-audit --no-fund && npm run build)

cd sdk/typescript
npm ci --no-audit --no-fund
npm run build
npm test

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
vectors="$root/sdk/rust/tests/data/signing_vectors.json"
(cd "$root" && cargo run -q -p flk-sdk --example conformance --locked) < "$vectors" > "$tmp/rust.jsonl"
node dist/conformance.js < "$vectors" > "$tmp/ts.jsonl"
if ! cmp -s "$tmp/rust.jsonl" "$tmp/ts.jsonl"; then
  echo "sdk/typescript conformance output differs from the Rust runner's:"
  diff "$tmp/rust.jsonl" "$tmp/ts.jsonl" | head -20
  exit 1
fi
echo "sdk/typescript: conformance output identical to the Rust runner's ($(wc -l < "$tmp/ts.jsonl") vectors)"
