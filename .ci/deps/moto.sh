#!/usr/bin/env bash
# Installs moto's S3-compatible server (PyPI `moto[server]`) when `moto_server` is missing.
# svc-tiering's tests start their own moto_server processes on free ports (flk-testkit,
# feature `s3`); nothing runs as a system service.
set -euo pipefail

if command -v moto_server >/dev/null; then
  exit 0
fi

python3 -m pip install --quiet 'moto[server]' 2>/dev/null \
  || python3 -m pip install --quiet --break-system-packages 'moto[server]'

# pyenv installs console scripts behind shims that need a rehash
if command -v pyenv >/dev/null; then
  pyenv rehash || true
fi

command -v moto_server >/dev/null
moto_server --version 2>&1 | head -n 1 || true
