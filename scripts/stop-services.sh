#!/usr/bin/env bash
# Stop the test PostgreSQL, Redis, Prometheus and Kubernetes control plane started by
# start-postgres.sh, start-redis.sh, start-prometheus.sh and start-kube.sh.
# Idempotent: a server that is not running is left alone.
set -euo pipefail

PG_PORT="${ROLLBOT_PG_PORT:-55432}"
PG_DATA="${ROLLBOT_PG_DIR:-/tmp/rollbot-pg}/data"
REDIS_PORT="${ROLLBOT_REDIS_PORT:-56379}"
PG_BIN=/usr/lib/postgresql/15/bin

if [ -x "$PG_BIN/pg_ctl" ] && [ -d "$PG_DATA" ] \
  && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
  (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop)
else
  echo "postgres (data in $PG_DATA) is not running"
fi

if command -v redis-cli >/dev/null \
  && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; then
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave
  echo "redis on 127.0.0.1:$REDIS_PORT stopped"
else
  echo "redis on 127.0.0.1:$REDIS_PORT is not running"
fi

# Only the processes start-prometheus.sh and start-kube.sh recorded in their pid files.
bash "$(dirname "$0")/start-prometheus.sh" --stop
bash "$(dirname "$0")/start-kube.sh" --stop
