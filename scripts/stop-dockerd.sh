#!/usr/bin/env bash
# Stop the engine that start-dockerd.sh started, by its pid file (never by name).
set -euo pipefail

D=${ROLLBOT_DOCKER_DIR:-/tmp/rollbot-docker}
PIDFILE="$D/docker.pid"

if [ ! -f "$PIDFILE" ]; then
    echo "stop-dockerd: no pid file at $PIDFILE; nothing to stop"
    exit 0
fi
PID=$(cat "$PIDFILE")
if ! kill -0 "$PID" 2>/dev/null; then
    echo "stop-dockerd: dockerd ($PID) is not running; removing the stale pid file"
    rm -f "$PIDFILE"
    exit 0
fi
kill "$PID"
for _ in $(seq 1 40); do
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "stop-dockerd: dockerd ($PID) stopped"
        exit 0
    fi
    sleep 0.5
done
echo "stop-dockerd: dockerd ($PID) still running after 20 s" >&2
exit 1
