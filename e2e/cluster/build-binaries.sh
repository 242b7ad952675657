#!/usr/bin/env bash
# Builds the local cluster's third-party binaries from the pinned Go modules under
# e2e/cluster/tools/ and caches them outside the repository, keyed by version:
#   $PADDOCK_CACHE/bin/kubernetes-<ver>/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy}
#     (`build-binaries.sh kube-apiserver`: that one only, into the same directory, for e2e/envtest.sh)
#   $PADDOCK_CACHE/bin/etcd-<ver>/etcd
#   $PADDOCK_CACHE/bin/helm-<ver>/helm
#   $PADDOCK_CACHE/bin/kube-router-<ver>/kube-router (NetworkPolicy enforcement, run by cluster.sh)
#   $PADDOCK_CACHE/bin/otelcol-<ver>/otelcol (only when asked: `build-binaries.sh otelcol`)
#   $PADDOCK_CACHE/bin/kueue-<ver>/kueue (only when asked: `build-binaries.sh kueue`)
#   $PADDOCK_CACHE/bin/tekton-<ver>/{tekton-controller,tekton-entrypoint},
#   $PADDOCK_CACHE/bin/agent-sandbox-<ver>/agent-sandbox-controller,
#   $PADDOCK_CACHE/bin/kwok-<ver>/kwok (peer benchmarks, only when asked: `build-binaries.sh tekton agent-sandbox kwok`)
# A warm cache makes this a no-op.
# Usage: build-binaries.sh [kubernetes|kube-apiserver|etcd|helm|kube-router|otelcol|kueue|tekton|agent-sandbox|kwok ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PADDOCK_CACHE:-/var/cache/paddock}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
export GOPATH=${GOPATH:-$cache/go} GOCACHE=${GOCACHE:-$cache/go-build}

# version <tools-dir> <module>: the pinned version of <module> in that go.mod.
version() { awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit}' "$here/tools/$1/go.mod"; }

K8S_VERSION=$(version kubernetes k8s.io/kubernetes)
ETCD_VERSION=$(version etcd go.etcd.io/etcd/server/v3)
HELM_VERSION=$(version helm helm.sh/helm/v3)
KUBE_ROUTER_VERSION=$(version kube-router github.com/cloudnativelabs/kube-router/v2)
OTELCOL_VERSION=$(version otelcol go.opentelemetry.io/collector/otelcol)
KUEUE_VERSION=$(version kueue sigs.k8s.io/kueue)
TEKTON_VERSION=$(version tekton github.com/tektoncd/pipeline)
AGENT_SANDBOX_VERSION=$(version agent-sandbox sigs.k8s.io/agent-sandbox)
KWOK_VERSION=$(version kwok sigs.k8s.io/kwok)

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The version stamps of the Kubernetes binaries (what `kube-apiserver --version` and /version say).
kubernetes_ldflags() {
  local minor=${K8S_VERSION#v1.} ld="-s -w" p; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$ld"
}

build_kubernetes() {
  local out=$cache/bin/kubernetes-$K8S_VERSION
  [ -x "$out/kube-proxy" ] && { log "kubernetes $K8S_VERSION cached in $out"; return; }
  local ld; ld=$(kubernetes_ldflags)
  log "building kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy); a cold build takes 20-40 min on 2 cores"
  mkdir -p "$out.tmp"
  (cd "$here/tools/kubernetes" && go build -trimpath -ldflags "$ld" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "kubernetes $K8S_VERSION built into $out"
}

# kube-apiserver alone (the envtest tier, e2e/envtest.sh, runs no kubelet): a few minutes
# instead of the full build. It lands in the same directory; a later `kubernetes` build still
# builds all five (its stamp is kube-proxy) and replaces the directory.
build_kube_apiserver() {
  local out=$cache/bin/kubernetes-$K8S_VERSION
  [ -x "$out/kube-apiserver" ] && { log "kube-apiserver $K8S_VERSION cached in $out"; return; }
  log "building kube-apiserver $K8S_VERSION only"
  mkdir -p "$out.apiserver.tmp" "$out"
  (cd "$here/tools/kubernetes" && go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out.apiserver.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$out.apiserver.tmp/kube-apiserver" "$out/kube-apiserver"; rm -rf "$out.apiserver.tmp"
  log "kube-apiserver $K8S_VERSION built into $out"
}

build_etcd() {
  local out=$cache/bin/etcd-$ETCD_VERSION
  [ -x "$out/etcd" ] && { log "etcd $ETCD_VERSION cached in $out"; return; }
  log "building etcd $ETCD_VERSION"
  mkdir -p "$out.tmp"
  (cd "$here/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "etcd $ETCD_VERSION built into $out"
}

build_helm() {
  local out=$cache/bin/helm-$HELM_VERSION
  [ -x "$out/helm" ] && { log "helm $HELM_VERSION cached in $out"; return; }
  log "building helm $HELM_VERSION"
  mkdir -p "$out.tmp"
  (cd "$here/tools/helm" && go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "helm $HELM_VERSION built into $out"
}

# kube-router's network policy controller (cmd/kube-router, run firewall-only by cluster.sh): the
# local cluster's NetworkPolicy enforcement. A test-time tool only (see tools/kube-router/go.mod).
# Static like upstream's release build (CGO_ENABLED=0).
build_kube_router() {
  local out=$cache/bin/kube-router-$KUBE_ROUTER_VERSION
  [ -x "$out/kube-router" ] && { log "kube-router $KUBE_ROUTER_VERSION cached in $out"; return; }
  log "building kube-router $KUBE_ROUTER_VERSION"
  mkdir -p "$out.tmp"
  (cd "$here/tools/kube-router" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION -X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=1970-01-01T00:00:00Z" \
    -o "$out.tmp/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "kube-router $KUBE_ROUTER_VERSION built into $out"
}

# A minimal OpenTelemetry Collector (OTLP receiver + debug exporter, tools/otelcol/main.go) for
# the telemetry tests. The core distribution's own module (cmd/otelcorecol) is not published,
# hence our main.go with the same components.
build_otelcol() {
  local out=$cache/bin/otelcol-$OTELCOL_VERSION
  [ -x "$out/otelcol" ] && { log "otelcol $OTELCOL_VERSION cached in $out"; return; }
  log "building otelcol $OTELCOL_VERSION"
  mkdir -p "$out.tmp"
  (cd "$here/tools/otelcol" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/otelcol" .)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "otelcol $OTELCOL_VERSION built into $out"
}

# Kueue's controller manager (sigs.k8s.io/kueue/cmd/kueue) for the Kueue integration tests
# (e2e/kueue.sh). Its CRDs come from the same module: `go mod download -json sigs.k8s.io/kueue@<ver>`.
build_kueue() {
  local out=$cache/bin/kueue-$KUEUE_VERSION
  [ -x "$out/kueue" ] && { log "kueue $KUEUE_VERSION cached in $out"; return; }
  log "building kueue $KUEUE_VERSION"
  mkdir -p "$out.tmp"
  (cd "$here/tools/kueue" && go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION -X sigs.k8s.io/kueue/pkg/version.BuildDate=1970-01-01T00:00:00Z" \
    -o "$out.tmp/kueue" sigs.k8s.io/kueue/cmd/kueue)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "kueue $KUEUE_VERSION built into $out"
}

# Peer controllers for the benchmarks (issue 8). Their CRDs and manifests come from the same
# modules: `go mod download -json <module>@<ver>` prints the directory (Tekton: config/300-crds,
# agent-sandbox: k8s/crds, kwok: kustomize/stage).
# Tekton's entrypoint is built static: a TaskRun pod's init container copies it from an image
# (at /ko-app/entrypoint) into every step container. Pods on kwok nodes (which never run) need none.
build_tekton() {
  local out=$cache/bin/tekton-$TEKTON_VERSION
  [ -x "$out/tekton-entrypoint" ] && { log "tekton $TEKTON_VERSION cached in $out"; return; }
  log "building tekton $TEKTON_VERSION (pipelines controller, entrypoint)"
  mkdir -p "$out.tmp"
  (cd "$here/tools/tekton" && go build -trimpath -ldflags "-s -w" \
    -o "$out.tmp/tekton-controller" github.com/tektoncd/pipeline/cmd/controller &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$out.tmp/tekton-entrypoint" github.com/tektoncd/pipeline/cmd/entrypoint)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "tekton $TEKTON_VERSION built into $out"
}

build_agent_sandbox() {
  local out=$cache/bin/agent-sandbox-$AGENT_SANDBOX_VERSION
  [ -x "$out/agent-sandbox-controller" ] && { log "agent-sandbox $AGENT_SANDBOX_VERSION cached in $out"; return; }
  log "building agent-sandbox $AGENT_SANDBOX_VERSION (controller)"
  mkdir -p "$out.tmp"
  (cd "$here/tools/agent-sandbox" && go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/agent-sandbox/internal/version.gitVersion=$AGENT_SANDBOX_VERSION" \
    -o "$out.tmp/agent-sandbox-controller" sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "agent-sandbox $AGENT_SANDBOX_VERSION built into $out"
}

build_kwok() {
  local out=$cache/bin/kwok-$KWOK_VERSION
  [ -x "$out/kwok" ] && { log "kwok $KWOK_VERSION cached in $out"; return; }
  log "building kwok $KWOK_VERSION"
  mkdir -p "$out.tmp"
  (cd "$here/tools/kwok" && go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
    -o "$out.tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "kwok $KWOK_VERSION built into $out"
}

# print-env: the binary directories, for callers that put them on PATH.
if [ "${1:-}" = print-env ]; then
  echo "K8S_BIN=$cache/bin/kubernetes-$K8S_VERSION"
  echo "ETCD_BIN=$cache/bin/etcd-$ETCD_VERSION"
  echo "HELM_BIN=$cache/bin/helm-$HELM_VERSION"
  echo "KUBE_ROUTER_BIN=$cache/bin/kube-router-$KUBE_ROUTER_VERSION"
  echo "OTELCOL_BIN=$cache/bin/otelcol-$OTELCOL_VERSION"
  echo "KUEUE_BIN=$cache/bin/kueue-$KUEUE_VERSION"
  echo "KUEUE_VERSION=$KUEUE_VERSION"
  echo "TEKTON_BIN=$cache/bin/tekton-$TEKTON_VERSION"
  echo "TEKTON_VERSION=$TEKTON_VERSION"
  echo "AGENT_SANDBOX_BIN=$cache/bin/agent-sandbox-$AGENT_SANDBOX_VERSION"
  echo "AGENT_SANDBOX_VERSION=$AGENT_SANDBOX_VERSION"
  echo "KWOK_BIN=$cache/bin/kwok-$KWOK_VERSION"
  echo "KWOK_VERSION=$KWOK_VERSION"
  echo "K8S_VERSION=$K8S_VERSION"
  exit 0
fi

# One build at a time (concurrent `cluster.sh up` calls wait here instead of building twice).
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
if ! flock -n 9; then
  log "another build holds $cache/.build.lock; waiting"
  flock 9
fi

for what in "${@:-etcd helm kubernetes kube-router}"; do
  for w in $what; do "build_${w//-/_}"; done
done
