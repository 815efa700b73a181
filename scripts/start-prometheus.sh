#!/usr/bin/env bash
# Start a throwaway Prometheus for tests on 127.0.0.1:59090 that scrapes the test app
# (tests/support/prometheus.py) on 127.0.0.1:59091 every second.
# Idempotent: does nothing when a Prometheus already answers there. The Debian package's
# own service (port 9090) plays no part: this runs its own instance, config and data dir.
# `--stop` stops the instance this script started (by its pid file), if it runs.
set -euo pipefail

PORT="${ROLLBOT_PROMETHEUS_PORT:-59090}"
TARGET="${ROLLBOT_PROMETHEUS_TARGET:-127.0.0.1:59091}"
BASE="${ROLLBOT_PROMETHEUS_DIR:-/tmp/rollbot-prometheus}"
LOG="$BASE/log"
PIDFILE="$BASE/prometheus.pid"

if [ "${1:-}" = "--stop" ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    rm -f "$PIDFILE"
    echo "prometheus on 127.0.0.1:$PORT stopped"
  else
    echo "prometheus on 127.0.0.1:$PORT is not running"
  fi
  exit 0
fi

if [ ! -x /usr/bin/prometheus ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
fi

ready() { curl -fsS --max-time 2 "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; }

if ready; then
  echo "prometheus already answering on 127.0.0.1:$PORT"
  exit 0
fi

mkdir -p "$BASE/data"
cat >"$BASE/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: rollbot-test-app
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ["$TARGET"]
YAML

start() {
  # setsid: the server outlives this script and the shell that ran it.
  setsid /usr/bin/prometheus \
    --config.file="$BASE/prometheus.yml" \
    --storage.tsdb.path="$BASE/data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$PORT" \
    </dev/null >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
}

# A port in Linux's ephemeral range can be held for a moment by an outgoing connection
# (when it is not reserved): wait for it to close and start again, a few times.
for attempt in 1 2 3 4 5; do
  start
  for _ in $(seq 60); do
    if ready; then
      echo "prometheus ready on 127.0.0.1:$PORT (scraping $TARGET)"
      exit 0
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.5
  done
  grep -q "address already in use" "$LOG" || break
  echo "prometheus: 127.0.0.1:$PORT is in use (attempt $attempt); trying again in 2 s" >&2
  sleep 2
done

echo "prometheus did not answer on 127.0.0.1:$PORT; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
