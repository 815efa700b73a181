#!/usr/bin/env bash
# Create .venv and install rollbot into it with its test tools (the demo's fakes need
# them too) and the optional tracing extra its tests exercise. On a fresh Debian 12
# machine, as root, installs python3-venv first.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test,otel]'
