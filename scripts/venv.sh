#!/usr/bin/env bash
# Create the virtualenv ($VENV, default .venv) and install rollbot into it with EXTRAS:
#   venv.sh              the tests' set: test tools, the demo's libraries, tracing (test,otel)
#   venv.sh demo         the runtime and the playground's two libraries, nothing test-only
#   venv.sh runtime      the runtime alone
#   venv.sh --create     only create the virtualenv (apt-get first, if it must)
# Writes $VENV/.installed-EXTRAS with the pyproject.toml it installed from, so callers
# can tell an install that is still current (scripts/demo.sh skips it). On a fresh Debian
# 12 machine, as root, installs python3-venv first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${1:-test,otel}

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ "$EXTRAS" = --create ]; then
  exit 0
fi
if [ "$EXTRAS" = runtime ]; then
  target=.
else
  target=".[$EXTRAS]"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$target"
sha256sum pyproject.toml | cut -d' ' -f1 >"$VENV/.installed-$EXTRAS"
