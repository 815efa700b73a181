#!/usr/bin/env bash
# Start a throwaway Redis for tests on 127.0.0.1:56379, without persistence.
# Idempotent: does nothing when a server already answers there.
set -euo pipefail

PORT="${ROLLBOT_REDIS_PORT:-56379}"
BASE="${ROLLBOT_REDIS_DIR:-/tmp/rollbot-redis}"
LOG="$BASE/log"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi

ready() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = "PONG" ]; }

if ready; then
  echo "redis already answering on 127.0.0.1:$PORT"
  exit 0
fi

mkdir -p "$BASE"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$BASE" --logfile "$LOG" --pidfile "$BASE/redis.pid"

for _ in $(seq 60); do
  if ready; then
    echo "redis ready on 127.0.0.1:$PORT"
    exit 0
  fi
  sleep 0.5
done

echo "redis did not answer on 127.0.0.1:$PORT within 30 s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
