#!/usr/bin/env bash
# cargo deny over the workspace (deny.toml): licenses, bans (duplicate versions are
# warnings), sources (crates.io only) and advisories. The RustSec database cannot be fetched
# from here, so advisories come from the snapshot vendored in .ci/advisory-db (its README says
# what it holds), laid out where cargo-deny looks for a fetched copy, and cargo-deny runs with
# fetching disabled.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash .ci/deps/cargo-deny.sh

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# cargo-deny names a database directory after its URL (deny.toml's db-urls) and reads the
# time of the last fetch from .git/FETCH_HEAD: the snapshot is copied there and stamped now
# (its real date is in .ci/advisory-db/README.md).
db="$root/advisory-db-3157b0e258782691"
mkdir -p "$db/.git"
cp -R .ci/advisory-db/crates "$db/"
touch "$db/.git/FETCH_HEAD"
export FLK_ADVISORY_DB_ROOT=$root

# `--offline` also keeps cargo-deny's `cargo metadata` from downloading: every crate of the
# lock file, for every platform (windows-sys and the like, which no Linux build fetches), must
# be in the local registry first.
cargo fetch --locked
cargo deny --offline check advisories bans licenses sources
