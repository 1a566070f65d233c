#!/usr/bin/env bash
# Installs python-opentimestamps (PyPI `opentimestamps`), the independent implementation that
# flk-anchor's OpenTimestamps tests check the `.ots` format against. Idempotent.
set -euo pipefail
VERSION=0.4.5
if python3 -c 'import opentimestamps, sys; sys.exit(0 if opentimestamps.__version__ == "'"$VERSION"'" else 1)' 2>/dev/null; then
  exit 0
fi
python3 -m pip install --quiet "opentimestamps==$VERSION"
python3 -c 'import opentimestamps'
