#!/usr/bin/env bash
# Installs the Python tree-sitter bindings and the tree-sitter-tlaplus grammar (PyPI) when
# missing: formal/scripts/parse_tla.py parses every TLA+ file with them (SANY and TLC are not
# available on these machines).
set -euo pipefail

if python3 -c 'import tree_sitter, tree_sitter_tlaplus' 2>/dev/null; then
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-pip
fi
packages=(tree-sitter==0.26.1 tree-sitter-tlaplus==1.5.0)
# Debian's own python3 refuses pip installs into the system site-packages unless told.
python3 -m pip install --quiet --root-user-action=ignore "${packages[@]}" 2>/dev/null \
  || python3 -m pip install --quiet --root-user-action=ignore --break-system-packages "${packages[@]}"

python3 -c 'import tree_sitter, tree_sitter_tlaplus'
