#!/usr/bin/env bash
# Installs ganache (npm), the local Ethereum development chain flk-anchor's EVM tests start, into
# a cache directory outside the repository. Idempotent. The tests find it at
# $FLK_GANACHE_DIR/node_modules/.bin/ganache (default: $HOME/.cache/flk/ganache).
set -euo pipefail
VERSION=7.9.2
DIR="${FLK_GANACHE_DIR:-$HOME/.cache/flk/ganache}"
BIN="$DIR/node_modules/.bin/ganache"
if [ -x "$BIN" ] && [ "$(cat "$DIR/.version" 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is required to install ganache" >&2; exit 1; }
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "ganache@$VERSION"
"$BIN" --version >/dev/null
echo "$VERSION" > "$DIR/.version"
