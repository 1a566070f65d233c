#!/usr/bin/env bash
# Installs Debian's chromium package when no chromium is on PATH: svc-kpi's html_fit test
# renders the KPI report page in headless Chromium at 1280 x 800 and checks that it does not
# scroll sideways. Idempotent.
set -euo pipefail

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium

chromium --version
