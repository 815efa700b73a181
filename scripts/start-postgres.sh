#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 for tests on 127.0.0.1:55432 (trust auth, user postgres).
# Idempotent: does nothing when a server already answers there.
set -euo pipefail

PORT="${ROLLBOT_PG_PORT:-55432}"
BASE="${ROLLBOT_PG_DIR:-/tmp/rollbot-pg}"
DATA="$BASE/data"
LOG="$BASE/log"
PG_BIN=/usr/lib/postgresql/15/bin

if [ ! -x "$PG_BIN/pg_ctl" ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
fi
export PATH="$PG_BIN:$PATH"

ready() { pg_isready -q -h 127.0.0.1 -p "$PORT"; }

if ready; then
  echo "postgres already answering on 127.0.0.1:$PORT"
  exit 0
fi

# PostgreSQL refuses to run as root, so the whole tree belongs to the postgres user.
mkdir -p "$BASE"
chown postgres: "$BASE"
if [ ! -s "$DATA/PG_VERSION" ]; then
  # A data dir without PG_VERSION is a failed initdb; initdb refuses a non-empty dir.
  rm -rf "$DATA"
  if ! (cd "$BASE" && runuser -u postgres -- "$PG_BIN/initdb" -D "$DATA" -A trust -U postgres \
    >"$BASE/initdb.log" 2>&1); then
    echo "initdb failed; $BASE/initdb.log says:" >&2
    tail -n 30 "$BASE/initdb.log" >&2
    exit 1
  fi
fi

# A server killed without a clean stop leaves its pid file behind, and postgres will not
# start while that pid belongs to any live process: drop it unless it is a postgres.
PIDFILE="$DATA/postmaster.pid"
if [ -f "$PIDFILE" ]; then
  OLD_PID=$(head -n 1 "$PIDFILE")
  if [ "$(cat "/proc/$OLD_PID/comm" 2>/dev/null || true)" != "postgres" ]; then
    rm -f "$PIDFILE"
  fi
fi

# The socket lives in the data dir so no system directory is needed; fsync is off
# because the data is thrown away.
(cd "$BASE" && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -W \
  -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off" start)

for _ in $(seq 60); do
  if ready; then
    echo "postgres ready on 127.0.0.1:$PORT (data in $DATA)"
    exit 0
  fi
  sleep 0.5
done

echo "postgres did not answer on 127.0.0.1:$PORT within 30 s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
