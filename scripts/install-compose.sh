#!/usr/bin/env bash
# Build the Docker Compose v2 CLI from the Go module proxy for the docker_compose provider's
# tests (`docker compose ps` / `up -d` after a rollback). Idempotent.
set -euo pipefail

D=${ROLLBOT_TOOLS_DIR:-/tmp/rollbot-tools}
MODULE=github.com/docker/compose/v5
VERSION=v5.6.0

if [ -x "$D/docker-compose" ]; then
    echo "install-compose: $D/docker-compose is there"
    exit 0
fi
mkdir -p "$D"
# Its go.mod has exclude directives, so it builds as the main module, not with go install.
SRC=$(GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$SRC/." "$WORK/"
chmod -R u+w "$WORK"
(cd "$WORK" && go build -o "$D/docker-compose" ./cmd)
echo "install-compose: built $D/docker-compose"
