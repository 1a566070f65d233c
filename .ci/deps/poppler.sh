#!/usr/bin/env bash
# Installs Debian's poppler-utils (pdftotext) when it is missing: flk-compliance's PDF test
# extracts the report's text with it and compares every control's verdict with the JSON.
set -euo pipefail

if command -v pdftotext >/dev/null; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq poppler-utils
