#!/usr/bin/env bash
# `make demo`: install what the playground needs (never the test tools) while a Docker
# engine starts, then serve the playground. Usage: demo.sh [--install-only] [ARGS...];
# ARGS go to `python -m playground.demo`. A second run finds both ready and starts in
# about 2 s. The backend is a real container when an engine answers (DOCKER_HOST, the
# default socket, or the private one start-dockerd.sh starts); else it is simulated.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
export VENV
INSTALL_ONLY=""
if [ "${1:-}" = --install-only ]; then
  INSTALL_ONLY=1
  shift
fi
say() { echo "make demo: $*"; }
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
started=$SECONDS

# Current when an install of the demo's extras, or of the tests' (which include them),
# was made from this pyproject.toml.
installed() {
  local sha stamp
  sha=$(sha256sum pyproject.toml | cut -d' ' -f1)
  [ -x "$VENV/bin/python" ] || return 1
  for stamp in "$VENV/.installed-demo" "$VENV/.installed-test,otel"; do
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sha" ]; then
      return 0
    fi
  done
  return 1
}

engine_answers() {
  [ -n "${DOCKER_HOST:-}" ] || docker version >/dev/null 2>&1 \
    || docker -H unix:///tmp/rollbot-docker/docker.sock version >/dev/null 2>&1
}

pip_pid="" docker_pid=""
if ! installed; then
  # Before the engine starts beside it: both may need apt-get, which runs one at a time.
  bash scripts/venv.sh --create
  say "installing rollbot and the playground's libraries into $VENV (about 40 s the first time)"
  bash scripts/venv.sh demo >"$LOGS/install" 2>&1 &
  pip_pid=$!
fi
if [ -z "$INSTALL_ONLY" ] && ! engine_answers; then
  say "starting a Docker engine for the backend's real container (about 10 s, more if it installs docker.io)"
  bash scripts/start-dockerd.sh >"$LOGS/docker" 2>&1 &
  docker_pid=$!
fi
if [ -n "$pip_pid" ]; then
  if ! wait "$pip_pid"; then
    say "the install failed:"
    cat "$LOGS/install" >&2
    exit 1
  fi
  say "installed in $((SECONDS - started)) s"
fi
if [ -n "$docker_pid" ]; then
  if wait "$docker_pid"; then
    say "Docker engine ready after $((SECONDS - started)) s"
  else
    say "no Docker engine could be started; the backend will be simulated:"
    tail -n 5 "$LOGS/docker" >&2
  fi
fi
if [ -n "$INSTALL_ONLY" ]; then
  exit 0
fi
say "starting the playground"
rm -rf "$LOGS"
trap - EXIT
exec "$VENV/bin/python" -m playground.demo "$@"
