#!/usr/bin/env bash
# Start a private Docker engine for the docker_compose provider's tests (see RECIPES.md).
# Idempotent: does nothing when the socket already answers. Stop it with stop-dockerd.sh.
set -euo pipefail

D=${ROLLBOT_DOCKER_DIR:-/tmp/rollbot-docker}
SOCK="unix://$D/docker.sock"
LOG="$D/log"

answers() {
    docker -H "$SOCK" version >/dev/null 2>&1
}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1 \
    || [ ! -x /usr/bin/busybox ]; then
    echo "start-dockerd: installing docker.io busybox-static" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q docker.io busybox-static
fi

if answers; then
    echo "start-dockerd: engine already answers at $SOCK"
    exit 0
fi

mkdir -p "$D"
# A stale pid file or socket from a killed engine would make dockerd refuse to start.
if [ -f "$D/docker.pid" ] && ! kill -0 "$(cat "$D/docker.pid")" 2>/dev/null; then
    rm -f "$D/docker.pid"
fi
STARTED=""
if [ ! -f "$D/docker.pid" ]; then
    rm -f "$D/docker.sock"
    # setsid: the engine must outlive this script and not get the caller's signals.
    setsid dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
        --data-root "$D/data" --exec-root "$D/exec" -H "$SOCK" \
        --pidfile "$D/docker.pid" >"$LOG" 2>&1 </dev/null &
    STARTED=$!
fi

fail() {
    echo "start-dockerd: $1; last lines of $LOG:" >&2
    tail -n 40 "$LOG" >&2 || true
    exit 1
}

for _ in $(seq 1 60); do
    if answers; then
        echo "start-dockerd: engine answers at $SOCK"
        exit 0
    fi
    if [ -n "$STARTED" ] && ! kill -0 "$STARTED" 2>/dev/null; then
        fail "dockerd exited before answering"
    fi
    sleep 0.5
done
fail "dockerd did not answer at $SOCK within 30 s"
