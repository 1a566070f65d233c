#!/usr/bin/env bash
# Every cargo-fuzz target (fuzz/) for a short bounded time: builds them (nightly, libFuzzer,
# AddressSanitizer) and runs each from the checked-in seed corpus for FUZZ_SECONDS (default
# 10). Fails when a target crashes; the input is left in fuzz/artifacts/<target>/. The long
# runs recorded in docs/RELIABILITY.md use the same script with a larger bound.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash .ci/deps/cargo-fuzz.sh
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
