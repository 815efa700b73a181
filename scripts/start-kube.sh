#!/usr/bin/env bash
# Start a real Kubernetes control plane on 127.0.0.1 for the tests: etcd, kube-apiserver,
# kube-controller-manager, a fake kubelet, and the Argo CD Application CRD; build the helm
# CLI beside it. `bash scripts/start-kube.sh --stop` stops what an earlier start started.
#
# Build: nothing in Debian or PyPI ships kube-apiserver, so it is built from the Go module
# proxy, once, into $ROLLBOT_KUBE_DIR (default /tmp/rollbot-kube): a throwaway module that
# requires k8s.io/kubernetes and helm.sh/helm/v4 and replaces every k8s.io staging module
# (`=> ./staging/src/...` in Kubernetes' go.mod) by its v0.Y.Z release. One `go build`
# makes kube-apiserver, kube-controller-manager, etcd (go.etcd.io/etcd/server/v3 at the
# version Kubernetes itself requires) and helm, so the packages they share compile once.
# Helm v4.3.2 asks for the same k8s.io v0.37.2 libraries, so it adds little. The binaries
# are reused until a version below changes. Go module and build caches live in the same
# folder. No kube-scheduler: the fake kubelet binds pods itself (pods/binding), which
# saves its build. sigs.k8s.io/kwok is served (v0.8.0) but was not tried: it needs
# kube-scheduler (another build), and the image rules below are simpler in Python.
#
# Start: a self-signed CA and serving certificate (openssl), a service-account key pair, a
# static admin token (test only), RBAC; etcd starts with empty data on every start. The
# kubeconfig is written to $ROLLBOT_KUBE_DIR/kubeconfig. Idempotent: when the API server
# already answers it only restarts the fake kubelet if that died.
#
# Fake kubelet (tests/support/fake_kubelet.py, run by the project's .venv python, or by
# $ROLLBOT_KUBE_PYTHON): registers Node rollbot-fake-node, binds every unscheduled pod to
# it and reports it by its images:
#   - an image containing `unpullable`: phase Pending, container waiting, reason
#     ImagePullBackOff (the Deployment never becomes available);
#   - an image containing `crashloop`: phase Running, not ready, container waiting, reason
#     CrashLoopBackOff, restartCount growing every 10 s;
#   - any other image: Running and Ready at once; a pod that runs to completion (restart
#     policy Never or OnFailure, as a Job's) Succeeds at once, or Fails (exit code 1)
#     with a `crashloop` image and policy Never.
#
# Argo CD: manifests/crds/application-crd.yaml is read from the github.com/argoproj/argo-cd/v3
# module zip (`go mod download`), and created through the API with curl. v3.6.2 (newest)
# declares go 1.27, and `go mod download` fails on it with go 1.26.8; v3.5.8 downloads.
#
# Differences from the shared reference recipe (recipes/kube-control-plane.sh), found by
# running it end to end with v1.37.2:
#   - GOTOOLCHAIN=go1.27.3 is not needed: k8s.io/kubernetes v1.37.2 and helm v4.3.2 declare
#     go 1.26.0, so the machine's go1.26.8 builds them (GOTOOLCHAIN=local, fails loudly).
#   - `go mod tidy` over a build-tagged tools.go replaces `go get` of each command.
#   - etcd is built in the same `go build` as Kubernetes (same module graph) instead of in
#     a second module; Debian's etcd-server (3.4) was not tried with v1.37.
#   - the version variables are set at link time (-X), or /version says v0.0.0-master.
#   - no kube-scheduler and no kwok; no kubectl (the CRD is created with curl).
#   - etcd runs with --unsafe-no-fsync (test data); started with setsid, stopped by pid
#     file after checking the pid is still that program.
# Measured on this 2-core machine (with another test suite running beside it): cold, from
# an empty cache folder, 11 min (653 s; go mod tidy's downloads take under half a minute;
# 1.4 GB of modules, 3.8 GB of build cache, 300 MB of binaries); relinking only, 15 s;
# a warm start 6-10 s (API server ready after ~3.5 s); a second call while it runs,
# 0.05 s. Memory: etcd 50 MB, apiserver 330 MB, controller-manager 140 MB, fake kubelet
# 75 MB RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

D=${ROLLBOT_KUBE_DIR:-/tmp/rollbot-kube}
K8S_VERSION=v1.37.2
HELM_VERSION=v4.3.2
ARGOCD_VERSION=v3.5.8
API_PORT=${ROLLBOT_KUBE_API_PORT:-58443}
ETCD_PORT=${ROLLBOT_KUBE_ETCD_PORT:-58379} # and the next port for etcd's peer URL
KCM_PORT=${ROLLBOT_KUBE_KCM_PORT:-58257}
PYTHON=${ROLLBOT_KUBE_PYTHON:-$REPO/.venv/bin/python}
TOKEN=rollbot-test-admin-token
BIN="$D/bin"
RUN="$D/run"
PKI="$D/pki"
STAMP="kubernetes $K8S_VERSION helm $HELM_VERSION"

say() { echo "start-kube: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# Whether the pid in a pid file still runs the program we started (a zombie's or a reused
# pid's command line does not match).
running() { # name, pattern
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# Kill a daemon by its pid file, but only while that pid still runs the program we started.
stop_one() {
  local name=$1 pidfile="$RUN/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if running "$name" "$2"; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    say "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

stop_all() {
  stop_one fake-kubelet fake_kubelet.py
  stop_one kube-controller-manager "$BIN/kube-controller-manager"
  stop_one kube-apiserver "$BIN/kube-apiserver"
  stop_one etcd "$BIN/etcd"
}

if [ "${1:-}" = --stop ]; then
  stop_all
  exit 0
fi

for tool in curl openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "installing $tool"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$tool"
  fi
done

api() { curl -sk --max-time 2 -H "Authorization: Bearer $TOKEN" "$@"; }
answers() { [ "$(api "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null)" = ok ]; }

start_fake_kubelet() {
  [ -x "$PYTHON" ] || die "no python at $PYTHON: run scripts/venv.sh (or set ROLLBOT_KUBE_PYTHON)"
  setsid "$PYTHON" "$REPO/tests/support/fake_kubelet.py" --kubeconfig "$D/kubeconfig" \
    >"$RUN/fake-kubelet.log" 2>&1 </dev/null &
  echo $! >"$RUN/fake-kubelet.pid"
  # It logs this line once its node is registered and reported Ready.
  for _ in $(seq 1 100); do
    grep -q "registered" "$RUN/fake-kubelet.log" && return 0
    running fake-kubelet fake_kubelet.py || break
    sleep 0.2
  done
  tail -n 30 "$RUN/fake-kubelet.log" >&2 || true
  die "the fake kubelet did not register its node; log: $RUN/fake-kubelet.log"
}

if answers; then
  if ! running fake-kubelet fake_kubelet.py; then
    say "the API server answers but the fake kubelet is gone: starting it"
    start_fake_kubelet
  fi
  say "API server already answers at https://127.0.0.1:$API_PORT"
  exit 0
fi

# ---- build (once per version)
export GOMODCACHE="$D/gomod" GOCACHE="$D/gocache" GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local
export CGO_ENABLED=0
mkdir -p "$BIN" "$RUN" "$PKI"
if [ "$(cat "$BIN/STAMP" 2>/dev/null)" != "$STAMP" ]; then
  command -v go >/dev/null 2>&1 || die "the go toolchain is needed to build Kubernetes"
  start=$(date +%s)
  say "building kube-apiserver, kube-controller-manager, etcd ($K8S_VERSION) and helm $HELM_VERSION"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  M="$D/build"
  rm -rf "$M" && mkdir -p "$M"
  {
    echo "module rollbotkube"
    grep -E '^(go|godebug) ' "$gomod"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo "require helm.sh/helm/v4 $HELM_VERSION"
    grep -oE '^\s*k8s\.io/[^ ]+ => \./staging/src/' "$gomod" |
      awk -v v="v0.${K8S_VERSION#v1.}" '{print "replace " $1 " => " $1 " " v}'
  } >"$M/go.mod"
  cat >"$M/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "helm.sh/helm/v4/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
  (cd "$M" && go mod tidy) || die "go mod tidy failed in $M"
  rm -f "$BIN/STAMP"
  # The version variables that Kubernetes' and helm's own builds set: clients read them
  # (/version, helm's .Capabilities.KubeVersion), and unset they say v0.0.0-master.
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  ldflags+=" -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  (cd "$M" && go build -trimpath -ldflags="$ldflags" -o "$BIN/" go.etcd.io/etcd/server/v3 \
    helm.sh/helm/v4/cmd/helm k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager) || die "go build failed in $M"
  mv "$BIN/server" "$BIN/etcd" # go names the binary of .../server/v3 "server"
  echo "$STAMP" >"$BIN/STAMP"
  say "built in $(($(date +%s) - start)) s"
fi

CRD="$D/argocd-$ARGOCD_VERSION-application-crd.yaml"
if [ ! -s "$CRD" ]; then
  zip=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("Zip", ""))') ||
    die "cannot download github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION from the Go module proxy"
  python3 - "$zip" "$CRD" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("/manifests/crds/application-crd.yaml"))
    open(sys.argv[2], "wb").write(z.read(name))
PY
fi

# ---- certificates, keys, token, kubeconfig (made once)
if [ ! -s "$PKI/apiserver.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=rollbot-test-ca \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr" 2>/dev/null
  echo 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc' \
    >"$PKI/san.ext"
  openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -extfile "$PKI/san.ext" -out "$PKI/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
echo "$TOKEN,admin,admin-uid,system:masters" >"$PKI/tokens.csv"
cat >"$D/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: rollbot-test
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: admin
  user: {token: $TOKEN}
contexts:
- name: rollbot-test
  context: {cluster: rollbot-test, user: admin, namespace: default}
current-context: rollbot-test
KC

wait_for() { # URL, what, log
  for _ in $(seq 1 240); do
    [ "$(api "$1" 2>/dev/null)" = ok ] && return 0
    sleep 0.25
  done
  tail -n 40 "$3" >&2 || true
  die "$2 did not answer at $1; log: $3"
}

# ---- start (a half-dead earlier run is stopped first; etcd starts empty)
stop_all
rm -rf "$RUN/etcd-data"
t0=$(date +%s.%N)
# setsid: the daemons must outlive this script and not get the caller's signals.
setsid "$BIN/etcd" --name rollbot-test --data-dir "$RUN/etcd-data" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "rollbot-test=http://127.0.0.1:$((ETCD_PORT + 1))" \
  --listen-metrics-urls "" >"$RUN/etcd.log" 2>&1 </dev/null &
echo $! >"$RUN/etcd.pid"
etcd_health() { curl -s --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
for _ in $(seq 1 100); do etcd_health && break; sleep 0.1; done
etcd_health || { tail -n 30 "$RUN/etcd.log" >&2; die "etcd did not answer on 127.0.0.1:$ETCD_PORT"; }

setsid "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --endpoint-reconciler-type=none --cert-dir="$RUN/apiserver-certs" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" --authorization-mode=RBAC \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.0.0.0/24 \
  --disable-admission-plugins=ServiceAccount --profiling=false \
  >"$RUN/kube-apiserver.log" 2>&1 </dev/null &
echo $! >"$RUN/kube-apiserver.pid"
wait_for "https://127.0.0.1:$API_PORT/readyz" kube-apiserver "$RUN/kube-apiserver.log"
t1=$(date +%s.%N)

setsid "$BIN/kube-controller-manager" --kubeconfig="$D/kubeconfig" \
  --authentication-kubeconfig="$D/kubeconfig" --authorization-kubeconfig="$D/kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" --profiling=false \
  >"$RUN/kube-controller-manager.log" 2>&1 </dev/null &
echo $! >"$RUN/kube-controller-manager.pid"
wait_for "https://127.0.0.1:$KCM_PORT/healthz" kube-controller-manager "$RUN/kube-controller-manager.log"

status=$(api -o "$RUN/crd.out" -w '%{http_code}' -X POST -H 'Content-Type: application/yaml' \
  --data-binary "@$CRD" "https://127.0.0.1:$API_PORT/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
case "$status" in
  201 | 409) ;;
  *) die "creating the Argo CD Application CRD answered $status: $(head -c 600 "$RUN/crd.out")" ;;
esac
established() {
  api "https://127.0.0.1:$API_PORT/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io" |
    python3 -c 'import json, sys
conditions = json.load(sys.stdin)["status"].get("conditions", [])
sys.exit(not any(c["type"] == "Established" and c["status"] == "True" for c in conditions))' 2>/dev/null
}
for _ in $(seq 1 100); do established && break; sleep 0.1; done
established || die "the Argo CD Application CRD was created but is not Established"

start_fake_kubelet
t2=$(date +%s.%N)
say "$(python3 -c "print(f'API server ready after {$t1 - $t0:.1f} s, all ready after {$t2 - $t0:.1f} s')")"
say "kubeconfig: $D/kubeconfig; helm: $BIN/helm"
