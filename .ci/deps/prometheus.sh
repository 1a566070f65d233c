#!/usr/bin/env bash
# Installs Debian's prometheus package (prometheus + promtool) when either binary is missing.
# The tests start their own prometheus processes on free ports with private storage; the
# package's system service is never needed, so it is stopped and disabled when the package
# started it (it would otherwise sit on 9090 and keep a TSDB under /var/lib/prometheus).
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq prometheus

if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif command -v service >/dev/null; then
  service prometheus stop >/dev/null 2>&1 || true
fi
# Without an init system the package's postinst cannot start anything; when some init
# started the daemon anyway, stop that one process (the package's own, by its pidfile).
if [ -r /run/prometheus/prometheus.pid ]; then
  kill "$(cat /run/prometheus/prometheus.pid)" 2>/dev/null || true
fi

command -v prometheus >/dev/null && command -v promtool >/dev/null
prometheus --version 2>&1 | head -n 1
