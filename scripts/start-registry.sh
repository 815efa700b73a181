#!/usr/bin/env bash
# Start a private image registry on 127.0.0.1 that requires a login, for the docker_compose
# provider's pull tests. Built from the Go module proxy (distribution's `registry`); the
# engine pulls from it over plain HTTP, as it allows for 127.0.0.0/8. Idempotent: does
# nothing when it already answers. Test credentials only: user rollbot-test.
set -euo pipefail

D=${ROLLBOT_REGISTRY_DIR:-/tmp/rollbot-registry}
ADDR=${ROLLBOT_REGISTRY_ADDR:-127.0.0.1:55050}
VERSION=v3.0.0
USER_NAME=rollbot-test
PASSWORD=${ROLLBOT_REGISTRY_PASSWORD:-rollbot-test-pw}
LOG="$D/log"

answers() {
    # The registry answers /v2/ with 401 to a client without credentials.
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/v2/")" = "401" ]
}

if answers; then
    echo "start-registry: registry already answers at $ADDR"
    exit 0
fi

mkdir -p "$D/bin" "$D/data"
if [ ! -x "$D/bin/registry" ]; then
    if ! command -v go >/dev/null 2>&1; then
        echo "start-registry: the go toolchain is needed to build the registry" >&2
        exit 1
    fi
    echo "start-registry: building registry $VERSION" >&2
    GOBIN="$D/bin" GOFLAGS=-mod=mod go install "github.com/distribution/distribution/v3/cmd/registry@$VERSION"
fi
if ! command -v htpasswd >/dev/null 2>&1; then
    echo "start-registry: installing apache2-utils (htpasswd)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q apache2-utils
fi

htpasswd -Bbn "$USER_NAME" "$PASSWORD" >"$D/htpasswd"
cat >"$D/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $D/data
  delete:
    enabled: true
http:
  addr: $ADDR
auth:
  htpasswd:
    realm: rollbot-test-registry
    path: $D/htpasswd
YAML

# setsid: the registry must outlive this script and not get the caller's signals.
setsid "$D/bin/registry" serve "$D/config.yml" >"$LOG" 2>&1 </dev/null &
echo $! >"$D/registry.pid"

for _ in $(seq 1 40); do
    if answers; then
        echo "start-registry: registry answers at $ADDR"
        exit 0
    fi
    sleep 0.25
done
echo "start-registry: the registry did not answer at $ADDR; last lines of $LOG:" >&2
tail -n 40 "$LOG" >&2 || true
exit 1
