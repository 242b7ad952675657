#!/usr/bin/env bash
# Kueue's controller manager for the Kueue integration tests, run against the local test cluster
# (e2e/cluster) as a plain background host process with the admin kubeconfig (so no RBAC, no
# Deployment, no image). Paddock's AgentRun is registered as an external framework:
# `integrations.externalFrameworks: [AgentRun.v1alpha1.paddock.dev]`.
#   bash e2e/kueue.sh start    # build if needed, install CRDs + webhooks, start (idempotent)
#   bash e2e/kueue.sh stop     # stop what this script started; removes its webhook configurations
#   bash e2e/kueue.sh status   # exit 0 only if the manager runs, /readyz is ok, webhooks registered
#   bash e2e/kueue.sh crd-dir  # print the module's CRD directory
# What `start` does:
#  * Kueue's CRDs (config/components/crd/bases of the pinned module, from the Go module cache)
#    are server-side applied as they are: conversion strategy None, storage and preferred
#    version v1beta2. Use kueue.x-k8s.io/v1beta2 only (v1beta1 is still served but would not be
#    converted). The CRDs stay installed after `stop`.
#  * TLS: a self-signed CA + a serving cert for IP 127.0.0.1 (openssl), kept in $DIR/certs. The
#    same pair serves the webhooks (127.0.0.1:$WEBHOOK_PORT) and the metrics endpoint
#    (127.0.0.1:$METRICS_PORT, https, authn/authz by TokenReview/SubjectAccessReview). Kueue
#    reads the metrics cert from the fixed path /etc/kueue/metrics/certs/tls.{crt,key} when
#    internalCertManagement is off, so `start` links those two files there and `stop` removes them.
#  * Webhooks: only Kueue's own ones (those whose rules name the kueue.x-k8s.io group, taken
#    from the module's config/components/webhook/manifests.yaml: workloads, workloads/status,
#    clusterqueues, resourceflavors, cohorts), registered as paddock-kueue-{mutating,validating}
#    with clientConfig.url https://127.0.0.1:$WEBHOOK_PORT/<path>. The job/pod/deployment
#    webhooks are left out on purpose: they would put every Pod/Job in the shared cluster behind
#    this process (failurePolicy Fail). `stop` deletes both configurations, so nothing in the
#    cluster depends on the stopped process.
#  * Manager: leader election off, health probes on 127.0.0.1:$HEALTH_PORT (plain http),
#    VisibilityOnDemand off (it would start an aggregated API server on :8082), frameworks:
#    batch/job only (an empty list means the default, which is batch/job as well).
# Env: KUBECONFIG (default /var/lib/paddock-cluster/admin.kubeconfig), KUBECTL,
#      PADDOCK_RUN_DIR (default /var/lib/paddock-e2e; state in $PADDOCK_RUN_DIR/kueue),
#      PADDOCK_KUEUE_WEBHOOK_PORT (19543), PADDOCK_KUEUE_METRICS_PORT (19544),
#      PADDOCK_KUEUE_HEALTH_PORT (19545), PADDOCK_KUEUE_LOG_LEVEL (zap level, default info),
#      PADDOCK_KUEUE_EXTERNAL_FRAMEWORKS (default AgentRun.v1alpha1.paddock.dev; comma-separated).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}
DIR=$RUN_DIR/kueue
KCFG=${KUBECONFIG:-/var/lib/paddock-cluster/admin.kubeconfig}
export KUBECONFIG=$KCFG
KUBECTL=${KUBECTL:-$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)}
[ -x "$KUBECTL" ] || KUBECTL=kubectl
WEBHOOK_PORT=${PADDOCK_KUEUE_WEBHOOK_PORT:-19543}
METRICS_PORT=${PADDOCK_KUEUE_METRICS_PORT:-19544}
HEALTH_PORT=${PADDOCK_KUEUE_HEALTH_PORT:-19545}
LOG_LEVEL=${PADDOCK_KUEUE_LOG_LEVEL:-info}
EXTERNAL=${PADDOCK_KUEUE_EXTERNAL_FRAMEWORKS:-AgentRun.v1alpha1.paddock.dev}
PIDFILE=$DIR/kueue.pid
LOG=$DIR/kueue.log
CERTS=$DIR/certs
METRICS_CERT_DIR=/etc/kueue/metrics/certs # fixed in cmd/kueue/main.go
WEBHOOK_CFG_NAME=paddock-kueue

cache=${PADDOCK_CACHE:-/var/cache/paddock}
eval "$(bash "$here/cluster/build-binaries.sh" print-env | grep -E '^KUEUE_(BIN|VERSION)=')"
KUEUE=$KUEUE_BIN/kueue

k() { "$KUBECTL" --kubeconfig "$KCFG" "$@"; }
log() { printf '[kueue] %s\n' "$*" >&2; }

# module_dir: the pinned Kueue module's source in the Go module cache (downloads it if needed).
module_dir() {
  (cd "$here/cluster/tools/kueue" &&
    GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPATH=${GOPATH:-$cache/go} GOCACHE=${GOCACHE:-$cache/go-build} \
      /usr/local/go/bin/go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION") | jq -er .Dir
}

ensure_binary() {
  [ -x "$KUEUE" ] || bash "$here/cluster/build-binaries.sh" kueue
}

# ensure_certs: CA + serving cert (SAN IP 127.0.0.1, DNS localhost), valid 10 years.
ensure_certs() {
  mkdir -p "$CERTS"
  if [ -s "$CERTS/ca.crt" ] && [ -s "$CERTS/tls.crt" ] && [ -s "$CERTS/tls.key" ] &&
    openssl x509 -in "$CERTS/tls.crt" -noout -checkend 86400 >/dev/null 2>&1; then
    return 0
  fi
  log "making a self-signed CA and serving cert in $CERTS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=paddock-kueue-ca" \
    -keyout "$CERTS/ca.key" -out "$CERTS/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$CERTS/tls.key" -out "$CERTS/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$CERTS/ext.cnf"
  openssl x509 -req -in "$CERTS/tls.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
    -CAcreateserial -days 3650 -extfile "$CERTS/ext.cnf" -out "$CERTS/tls.crt" 2>/dev/null
  rm -f "$CERTS/tls.csr" "$CERTS/ext.cnf"
  chmod 600 "$CERTS"/*.key
}

config() {
  local fw
  cat <<YAML
# Written by e2e/kueue.sh.
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health:
  healthProbeBindAddress: 127.0.0.1:$HEALTH_PORT
metrics:
  bindAddress: 127.0.0.1:$METRICS_PORT
webhook:
  host: 127.0.0.1
  port: $WEBHOOK_PORT
  certDir: $CERTS
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
clientConnection:
  qps: 50
  burst: 100
featureGates:
  VisibilityOnDemand: false
integrations:
  frameworks:
  - batch/job
  externalFrameworks:
YAML
  for fw in ${EXTERNAL//,/ }; do echo "  - $fw"; done
}

# webhooks <module-dir>: Kueue's kueue.x-k8s.io webhook configurations, pointed at our URL.
webhooks() {
  local ca
  ca=$(base64 -w0 <"$CERTS/ca.crt")
  python3 - "$1/config/components/webhook/manifests.yaml" "https://127.0.0.1:$WEBHOOK_PORT" "$ca" "$WEBHOOK_CFG_NAME" <<'PY'
import json, sys, yaml
src, base, ca, name = sys.argv[1:]
docs = []
for d in yaml.safe_load_all(open(src)):
    if not d:
        continue
    hooks = []
    for w in d["webhooks"]:
        if not any("kueue.x-k8s.io" in r.get("apiGroups", []) for r in w["rules"]):
            continue
        path = w["clientConfig"]["service"]["path"]
        w["clientConfig"] = {"url": base + path, "caBundle": ca}
        w["timeoutSeconds"] = 5
        hooks.append(w)
    suffix = "mutating" if d["kind"] == "MutatingWebhookConfiguration" else "validating"
    docs.append({"apiVersion": d["apiVersion"], "kind": d["kind"],
                 "metadata": {"name": f"{name}-{suffix}",
                              "labels": {"app.kubernetes.io/managed-by": "paddock-e2e-kueue"}},
                 "webhooks": hooks})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
PY
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
ready() { curl -fsS --max-time 2 "http://127.0.0.1:$HEALTH_PORT/readyz" >/dev/null 2>&1; }
webhooks_registered() {
  k get mutatingwebhookconfiguration "$WEBHOOK_CFG_NAME-mutating" >/dev/null 2>&1 &&
    k get validatingwebhookconfiguration "$WEBHOOK_CFG_NAME-validating" >/dev/null 2>&1
}

port_free() { ! ss -ltnH "( sport = :$1 )" | grep -q .; }

install_crds() {
  local dir=$1
  log "applying Kueue $KUEUE_VERSION CRDs from $dir/config/components/crd/bases"
  k apply --server-side --force-conflicts --field-manager=paddock-e2e-kueue \
    -f "$dir/config/components/crd/bases" >/dev/null
  k wait --for=condition=Established --timeout=60s \
    -f "$dir/config/components/crd/bases" >/dev/null
}

start() {
  mkdir -p "$DIR"
  local cfg=$DIR/config.yaml new dir p i
  ensure_certs
  new=$(config)
  if running && ready && [ -f "$cfg" ] && [ "$(cat "$cfg")" = "$new" ] && webhooks_registered; then
    log "already running (pid $(cat "$PIDFILE"))"
    return 0
  fi
  stop
  ensure_binary
  dir=$(module_dir)
  install_crds "$dir"
  for p in "$WEBHOOK_PORT" "$METRICS_PORT" "$HEALTH_PORT"; do
    port_free "$p" || { log "port 127.0.0.1:$p is in use"; return 1; }
  done
  printf '%s\n' "$new" >"$cfg"
  mkdir -p "$METRICS_CERT_DIR"
  ln -sfn "$CERTS/tls.crt" "$METRICS_CERT_DIR/tls.crt"
  ln -sfn "$CERTS/tls.key" "$METRICS_CERT_DIR/tls.key"
  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.prev"
  log "starting $KUEUE (log $LOG)"
  "$KUEUE" --config="$cfg" --zap-log-level="$LOG_LEVEL" --zap-encoder=console \
    </dev/null >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for i in $(seq 1 300); do
    ready && break
    running || break
    sleep 0.2
  done
  if ! ready; then
    log "kueue did not become ready; last log lines:"
    tail -n 30 "$LOG" >&2 || true
    stop
    return 1
  fi
  webhooks "$dir" | k apply --server-side --force-conflicts --field-manager=paddock-e2e-kueue -f - >/dev/null
  log "ready (pid $(cat "$PIDFILE"); webhooks https://127.0.0.1:$WEBHOOK_PORT, metrics https://127.0.0.1:$METRICS_PORT/metrics, health http://127.0.0.1:$HEALTH_PORT)"
}

stop() {
  local pid i
  # Webhooks first: with failurePolicy Fail they would refuse Kueue objects once the process is gone.
  k delete mutatingwebhookconfiguration "$WEBHOOK_CFG_NAME-mutating" --ignore-not-found >/dev/null 2>&1 || true
  k delete validatingwebhookconfiguration "$WEBHOOK_CFG_NAME-validating" --ignore-not-found >/dev/null 2>&1 || true
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if kill "$pid" 2>/dev/null; then
      for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
  for i in tls.crt tls.key; do
    [ -L "$METRICS_CERT_DIR/$i" ] && rm -f "$METRICS_CERT_DIR/$i"
  done
  rmdir "$METRICS_CERT_DIR" /etc/kueue/metrics /etc/kueue 2>/dev/null || true
}

status() {
  local ok=0
  if running; then echo "kueue      running (pid $(cat "$PIDFILE"))"; else echo "kueue      not running"; ok=1; fi
  if ready; then echo "readyz     ok"; else echo "readyz     not ready"; ok=1; fi
  if webhooks_registered; then echo "webhooks   registered"; else echo "webhooks   missing"; ok=1; fi
  return $ok
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  crd-dir) echo "$(module_dir)/config/components/crd/bases" ;;
  *) echo "usage: $0 start|stop|status|crd-dir" >&2; exit 2 ;;
esac
