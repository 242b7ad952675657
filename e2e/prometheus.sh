#!/usr/bin/env bash
# A real Prometheus for the e2e suite, scraping the operator's /metrics every 2 s. Debian's
# `prometheus` package (2.42), run as a plain background process (no systemd). Debian builds it
# without kubernetes_sd_configs (client-go is not packaged), so discovery is file_sd_configs fed
# by a small loop that writes the operator pods' "metrics" ports (paddock-system, label
# app.kubernetes.io/component=operator, phase Running) every 2 s: it follows operator restarts.
#   bash e2e/prometheus.sh start   # start, or reuse a healthy one with the same config; prints the URL
#   bash e2e/prometheus.sh stop    # stop what this script started
#   bash e2e/prometheus.sh url     # print the URL (http://127.0.0.1:19090)
# Env: KUBECONFIG (default /var/lib/paddock-cluster/admin.kubeconfig),
#      PADDOCK_PROMETHEUS_ADDR (default 127.0.0.1:19090), PADDOCK_RUN_DIR (default /var/lib/paddock-e2e).
set -euo pipefail

RUN_DIR=${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}
DIR=$RUN_DIR/prometheus
ADDR=${PADDOCK_PROMETHEUS_ADDR:-127.0.0.1:19090}
URL="http://$ADDR"
KCFG=${KUBECONFIG:-/var/lib/paddock-cluster/admin.kubeconfig}
PIDFILE=$DIR/prometheus.pid
SD_PIDFILE=$DIR/discovery.pid
TARGETS=$DIR/targets.json

config() {
  cat <<YAML
# Written by e2e/prometheus.sh.
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: paddock-operator
    file_sd_configs:
      - files: [$TARGETS]
        refresh_interval: 5s
YAML
}

# targets: the operator pods' metrics endpoints as file_sd JSON, from the cluster.
targets() {
  kubectl --kubeconfig "$KCFG" -n paddock-system get pods -l app.kubernetes.io/component=operator \
    --field-selector=status.phase=Running -o json |
    jq -c '[.items[] | select(.status.podIP != null) | . as $p
            | ($p.spec.containers[].ports // [])[] | select(.name == "metrics")
            | {targets: ["\($p.status.podIP):\(.containerPort)"],
               labels: {pod: $p.metadata.name, kubernetes_namespace: $p.metadata.namespace}}]'
}

# discover: rewrites $TARGETS every 2 s (atomically, so Prometheus never reads half a file).
discover() {
  while true; do
    if targets >"$TARGETS.tmp" 2>/dev/null; then
      cmp -s "$TARGETS.tmp" "$TARGETS" || mv -f "$TARGETS.tmp" "$TARGETS"
    fi
    sleep 2
  done
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null &&
    [ -f "$SD_PIDFILE" ] && kill -0 "$(cat "$SD_PIDFILE")" 2>/dev/null
}

healthy() {
  curl -fsS --max-time 2 "$URL/-/ready" >/dev/null 2>&1
}

ensure_binary() {
  command -v prometheus >/dev/null 2>&1 && return 0
  echo "installing Debian's prometheus package" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

start() {
  mkdir -p "$DIR/data"
  local cfg=$DIR/prometheus.yml new i
  new=$(config)
  if running && healthy && [ -f "$cfg" ] && [ "$(cat "$cfg")" = "$new" ]; then
    echo "$URL"
    return 0
  fi
  stop
  ensure_binary
  printf '%s\n' "$new" >"$cfg"
  [ -f "$TARGETS" ] || echo '[]' >"$TARGETS"
  discover </dev/null >/dev/null 2>&1 &
  echo $! >"$SD_PIDFILE"
  prometheus --config.file="$cfg" --storage.tsdb.path="$DIR/data" --storage.tsdb.retention.time=1d \
    --web.listen-address="$ADDR" </dev/null >"$DIR/prometheus.log" 2>&1 &
  echo $! >"$PIDFILE"
  for i in $(seq 1 150); do
    if healthy; then
      echo "$URL"
      return 0
    fi
    running || break
    sleep 0.2
  done
  echo "prometheus did not become ready; last log lines:" >&2
  tail -n 20 "$DIR/prometheus.log" >&2 || true
  stop
  return 1
}

stop() {
  local f pid i
  for f in "$SD_PIDFILE" "$PIDFILE"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
