#!/usr/bin/env bash
# Start a throwaway three-primary Redis Cluster for tests on 127.0.0.1:57001-57003, without
# persistence. Idempotent: does nothing when the cluster already reports cluster_state:ok.
set -euo pipefail

FIRST_PORT="${ROLLBOT_REDIS_CLUSTER_PORT:-57001}"
BASE="${ROLLBOT_REDIS_CLUSTER_DIR:-/tmp/rollbot-redis-cluster}"
# Cluster bus ports: 47001-47003 for the default ports.
BUS_OFFSET=10000
PORTS=("$FIRST_PORT" "$((FIRST_PORT + 1))" "$((FIRST_PORT + 2))")

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi

answers() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]; }
cluster_ok() {
  for port in "${PORTS[@]}"; do
    redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' \
      || return 1
  done
}
fail() {
  echo "$1; last lines of the logs under $BASE:" >&2
  for port in "${PORTS[@]}"; do tail -n 15 "$BASE/$port/log" >&2 || true; done
  exit 1
}

if cluster_ok; then
  echo "redis cluster already ok on 127.0.0.1:${PORTS[0]}-${PORTS[2]}"
  exit 0
fi

for port in "${PORTS[@]}"; do
  if answers "$port"; then
    continue
  fi
  # A node that is not running starts empty: a nodes.conf left from an earlier cluster
  # would make it wait for peers that no longer know it.
  rm -rf "${BASE:?}/$port"
  mkdir -p "$BASE/$port"
  # The bus port is set: the default (port + 10000) is above 65535 for these ports.
  redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-port "$((port - BUS_OFFSET))" \
    --cluster-config-file "$BASE/$port/nodes.conf" --cluster-node-timeout 5000 \
    --save "" --appendonly no --daemonize yes --dir "$BASE/$port" \
    --logfile "$BASE/$port/log" --pidfile "$BASE/$port/redis.pid"
done

for _ in $(seq 60); do
  up=0
  for port in "${PORTS[@]}"; do answers "$port" && up=$((up + 1)); done
  [ "$up" -eq 3 ] && break
  sleep 0.5
done
[ "$up" -eq 3 ] || fail "not every redis-server answered on ${PORTS[*]} within 30 s"

# Create the cluster unless the nodes already know each other (started, still converging).
known=$(redis-cli -h 127.0.0.1 -p "${PORTS[0]}" cluster info | tr -d '\r' \
  | sed -n 's/^cluster_known_nodes://p')
if [ "$known" != "3" ]; then
  for port in "${PORTS[@]}"; do
    # Only empty nodes can join a new cluster.
    keys=$(redis-cli -h 127.0.0.1 -p "$port" dbsize)
    [ "$keys" = "0" ] || fail "node 127.0.0.1:$port holds $keys keys but is not in a cluster"
  done
  redis-cli --cluster create "127.0.0.1:${PORTS[0]}" "127.0.0.1:${PORTS[1]}" \
    "127.0.0.1:${PORTS[2]}" --cluster-replicas 0 --cluster-yes \
    || fail "redis-cli --cluster create failed"
fi

for _ in $(seq 60); do
  if cluster_ok; then
    echo "redis cluster ready on 127.0.0.1:${PORTS[0]}-${PORTS[2]}"
    exit 0
  fi
  sleep 0.5
done
fail "the cluster on ${PORTS[*]} did not reach cluster_state:ok within 30 s"
