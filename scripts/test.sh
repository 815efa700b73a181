#!/usr/bin/env bash
# The test command. On a fresh Debian 12 machine, as root: installs what the tests need,
# starts a Docker engine, PostgreSQL, Redis, Prometheus and a Kubernetes control plane on
# loopback, then runs lint, type checks and the whole suite. Every service the tests use must
# start, or this fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/venv.sh

# The browser test drives Debian's Chromium (test tools' browser downloads fail here); the
# emoji font lets its screenshots show what Slack shows. Screenshots go to artifacts/, or to
# $ROLLBOT_TEST_ARTIFACTS.
if [ ! -x /usr/bin/chromium ] || [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-noto-color-emoji
fi

# PgBouncer (transaction mode) stands in front of PostgreSQL in the store's pooler test.
if [ ! -x /usr/sbin/pgbouncer ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer
fi

# The services below listen on fixed loopback ports inside Linux's ephemeral range
# (32768-60999). Reserve them first, so no outgoing connection (the API server alone opens
# hundreds to etcd) holds one of them when its service binds it.
PORTS=47001-47003,55050,55432,56379,57001-57003,58257,58379-58380,58443,59090-59091
OLD=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true)
sysctl -qw net.ipv4.ip_local_reserved_ports="${OLD:+$OLD,}$PORTS" ||
  echo "test.sh: could not reserve the service ports; a start may race an outgoing connection" >&2

bash scripts/start-dockerd.sh
bash scripts/start-postgres.sh
bash scripts/start-redis.sh
bash scripts/start-redis-cluster.sh
# A private registry and the Compose v2 CLI for the docker_compose provider's tests.
bash scripts/start-registry.sh
bash scripts/install-compose.sh
# A real Kubernetes control plane with a fake kubelet, and the helm CLI: built once from
# the Go module proxy and cached in $ROLLBOT_KUBE_DIR (default /tmp/rollbot-kube).
bash scripts/start-kube.sh
# Prometheus on 127.0.0.1:59090, scraping the test app the prometheus check's tests serve.
bash scripts/start-prometheus.sh

export DOCKER_HOST=unix:///tmp/rollbot-docker/docker.sock
export ROLLBOT_TEST_PG_DSN=postgresql://postgres@127.0.0.1:55432/postgres
export ROLLBOT_TEST_REDIS_URL=redis://127.0.0.1:56379/0
export ROLLBOT_TEST_REDIS_CLUSTER_URL=redis://127.0.0.1:57001/0
export ROLLBOT_TEST_PROMETHEUS_URL=http://127.0.0.1:59090
KUBE_DIR=${ROLLBOT_KUBE_DIR:-/tmp/rollbot-kube}
export ROLLBOT_TEST_KUBECONFIG=$KUBE_DIR/kubeconfig
export ROLLBOT_TEST_HELM=$KUBE_DIR/bin/helm

echo "== ruff"
.venv/bin/ruff check bot handlers playground providers tests bench
.venv/bin/ruff format --check bot handlers playground providers tests bench
echo "== mypy"
.venv/bin/mypy bot handlers playground providers
echo "== pytest"
# A leaked aiosqlite thread could keep a failed run alive after its summary: bound it.
timeout --signal=INT --kill-after=60 1800 .venv/bin/pytest "$@"
