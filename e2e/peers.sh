#!/usr/bin/env bash
# The peer controllers of the benchmarks (issue 8) on the local test cluster (e2e/cluster), each
# run like e2e/kueue.sh runs Kueue: a plain background host process (its own session, setsid),
# so no image, no Deployment, no webhook. Tekton and agent-sandbox run as a ServiceAccount bound
# to cluster-admin, like Paddock's operator subject to API Priority and Fairness (see
# peer_kubeconfig); kwok runs with the admin kubeconfig. Binaries come from
# e2e/cluster/build-binaries.sh (built on demand: `build-binaries.sh tekton agent-sandbox kwok`);
# CRDs and config YAML from the pinned modules in the Go module cache (e2e/cluster/tools/<name>).
#   PADDOCK_KWOK_NODES=N bash e2e/peers.sh start kwok   # N fake nodes (default 1)
#   bash e2e/peers.sh start tekton [--qps Q] [--burst B] [--threads T] [-- <more controller flags>]
#   bash e2e/peers.sh start agent-sandbox [--qps Q] [--burst B] [-- <more controller flags>]
#   bash e2e/peers.sh stop kwok|tekton|agent-sandbox|all
#   bash e2e/peers.sh status [<name>]   # exit 0 only if every named peer runs and is ready
#   bash e2e/peers.sh pid <name>        # the controller's PID (for /proc/<pid>/status VmRSS)
#   bash e2e/peers.sh log <name>        # the path of its log
# Every `start` is idempotent: if the peer already runs, is ready and was started with the same
# flags (and, for kwok, the same config), it is left alone; otherwise it is stopped and started
# again with the flags given, so `start tekton` without flags brings back the defaults. State per
# peer in $PADDOCK_RUN_DIR/peers/<name>: <name>.pid, <name>.args (the flags it runs with),
# <name>.log (the previous run's log is kept as <name>.log.prev).
# `start` and `stop` hold the lock $PADDOCK_RUN_DIR/peers/.lock (flock), so concurrent calls queue.
# Readiness is awaited for up to $PADDOCK_PEERS_READY_TIMEOUT s (default 120); on failure the last
# log lines are printed, the process is stopped and `start` exits 1.
#
# kwok (sigs.k8s.io/kwok v0.8.0): fakes the nodes paddock-kwok-0 .. paddock-kwok-<N-1>
# (N = $PADDOCK_KWOK_NODES, default 1) and the pods bound to them, all in one kwok process.
#  * Applies e2e/peers/kwok-node.yaml once per node, its name and kubernetes.io/hostname label
#    changed to paddock-kwok-<i> (label type=kwok, taint kwok.x-k8s.io/node=fake:NoSchedule,
#    annotation kwok.x-k8s.io/node=fake, capacity 1000 CPU / 4Ti / 50000 pods each); removes,
#    with their pods, the paddock-kwok-<i> nodes of an earlier start beyond N; then runs
#    `kwok --config $PADDOCK_RUN_DIR/peers/kwok/kwok.yaml --server-address 127.0.0.1:$PADDOCK_PEERS_KWOK_PORT`
#    with TLS (kwok_config: the config is e2e/peers/kwok.yaml with its port and logs directory
#    filled in; the serving cert is signed by the cluster's CA for 127.0.0.1, so the API server
#    reaches kwok as the node's kubelet and `kubectl logs` of kwok pods is served from the files
#    in $PADDOCK_RUN_DIR/peers/kwok/logs). Every node gets the same kubelet endpoint: kwok's
#    node-initialize stage sets each node's InternalIP to 127.0.0.1 and its daemonEndpoints port
#    to that server's (options nodeIP/nodePort), the API server prefers InternalIP, and the
#    ClusterLogs select no node, so logs are served for the pods of every node.
#    kwok manages only nodes with that annotation. The node count is part of kwok's flags: a
#    start with another N restarts kwok. Pods there become Running/Ready at once; those
#    owned by a TaskRun, Job or paddock.dev AgentRun succeed 1 s later; others stay Running (see
#    the header of e2e/peers/kwok.yaml). kwok's own client has no rate limit.
#  * Ready when https://127.0.0.1:$PADDOCK_PEERS_KWOK_PORT/healthz answers and every node's Ready
#    condition is True. Metrics: https://127.0.0.1:$PADDOCK_PEERS_KWOK_PORT/metrics.
#  * `stop kwok` force-deletes the pods bound to every paddock-kwok-<i> node (whatever N it was
#    started with), deletes those nodes, then stops kwok.
#
# tekton (github.com/tektoncd/pipeline v1.15.1, cmd/controller: TaskRun, PipelineRun and
# ResolutionRequest reconcilers).
#  * Installs: namespace tekton-pipelines (config/100-namespace), the ConfigMaps
#    config/config-*.yaml as they are, the CRDs config/300-crds server-side applied (three are over
#    256 KiB, too big for client-side apply's annotation) with spec.conversion set to
#    {strategy: None}: there is no webhook (config/500-webhooks.yaml and the webhook binary are
#    left out), so use tekton.dev/v1 only (v1beta1 is served but not converted) and expect no
#    defaulting/validation at admission (the reconciler applies defaults itself).
#  * Runs the controller with -disable-ha (no leader election), -kubeconfig, the six image flags
#    that must be non-empty (tekton.invalid/...: never pulled on kwok; a step must have `command`
#    or `script`, otherwise the controller looks the image's entrypoint up in its registry) and env
#    SYSTEM_NAMESPACE=tekton-pipelines, KUBERNETES_MIN_VERSION=v1.28.0 (as config/controller.yaml;
#    knative's default minimum is newer than the cluster), CONFIG_*_NAME and METRICS_DOMAIN as in
#    config/controller.yaml, METRICS_PROMETHEUS_HOST=127.0.0.1 METRICS_PROMETHEUS_PORT,
#    PROFILING_PORT and PROBES_PORT (these two bind all interfaces; upstream has no host setting).
#    It also binds *:8080: knative.dev/pkg sharedmain's own health probes use the constant
#    injection.HealthCheckDefaultPort, which Tekton's main does not let one change or disable, and
#    the controller exits if that port is taken. `start tekton` fails early if 8080 is in use.
#  * --qps Q / --burst B / --threads T become -kube-api-qps Q / -kube-api-burst B /
#    -threads-per-controller T, passed as they are. NOTE cmd/controller/main.go doubles both
#    limits after parsing ("multiply by 2, no of controllers being created"): the client runs with
#    2*Q and 2*B. Unset, they are 0 -> 10 QPS / 10 burst (2*rest.DefaultQPS, rest.DefaultBurst),
#    doubled to 20 / 20; threads default 2 (knative.dev/pkg controller.DefaultThreadsPerController),
#    per reconciler. Unthrottled ("tuned", to compare with Paddock, whose kube-rs client has no
#    client-side rate limit): `start tekton --qps 2500 --burst 5000 --threads 100` (client
#    5000 QPS / 10000 burst, kwok's own "unlimited" values; 100 workers like agent-sandbox's
#    Sandbox controller).
#  * Ready when /readiness answers on the probes port and on :8080 (the latter only after the
#    informers synced), the metrics endpoint answers and the log shows "Started workers" for the
#    three reconcilers.
#    Metrics: http://127.0.0.1:$PADDOCK_PEERS_TEKTON_METRICS_PORT/metrics.
#
# agent-sandbox (sigs.k8s.io/agent-sandbox v0.5.6, cmd/agent-sandbox-controller).
#  * Installs the CRDs k8s/crds (Sandbox agents.x-k8s.io; SandboxClaim, SandboxTemplate,
#    SandboxWarmPool extensions.agents.x-k8s.io) server-side with conversion {strategy: None}: use
#    v1beta1 only (the storage version; v1alpha1 is served but not converted).
#  * Runs it with --enable-webhook=false --extensions --leader-elect=false
#    --metrics-bind-address 127.0.0.1:$PADDOCK_PEERS_SANDBOX_METRICS_PORT (plain http)
#    --health-probe-bind-address 127.0.0.1:$PADDOCK_PEERS_SANDBOX_HEALTH_PORT --kubeconfig.
#  * --qps Q / --burst B become --kube-api-qps Q / --kube-api-burst B. Upstream defaults: qps -1
#    (no client-side rate limit at all) and burst 10 (unused while qps <= 0); workers: Sandbox 100,
#    SandboxClaim 50, SandboxWarmPool 1, SandboxTemplate 1 (--sandbox-*-concurrent-workers).
#    So the defaults are already unthrottled; --qps Q turns a client-side limit on.
#  * Ready when /readyz answers and the log shows "Starting workers" for its four controllers.
#    Metrics: http://127.0.0.1:$PADDOCK_PEERS_SANDBOX_METRICS_PORT/metrics.
#
# `stop` leaves the CRDs, the tekton-pipelines namespace and its ConfigMaps, and any objects of the
# peers' kinds installed; with the process gone nothing reconciles them, and no webhook or API
# service points at it, so the cluster stays usable.
#
# Env: KUBECONFIG (default /var/lib/paddock-cluster/admin.kubeconfig), KUBECTL,
#      PADDOCK_KWOK_NODES (kwok's fake nodes, 1),
#      PADDOCK_RUN_DIR (default /var/lib/paddock-e2e), PADDOCK_CACHE (default /var/cache/paddock),
#      PADDOCK_PEERS_READY_TIMEOUT (seconds, 120),
#      PADDOCK_PEERS_KWOK_PORT (19550), PADDOCK_PEERS_TEKTON_METRICS_PORT (19551),
#      PADDOCK_PEERS_TEKTON_PROFILING_PORT (19552), PADDOCK_PEERS_TEKTON_PROBES_PORT (19553),
#      PADDOCK_PEERS_SANDBOX_METRICS_PORT (19554), PADDOCK_PEERS_SANDBOX_HEALTH_PORT (19555).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}
BASE=$RUN_DIR/peers
KCFG=${KUBECONFIG:-/var/lib/paddock-cluster/admin.kubeconfig}
export KUBECONFIG=$KCFG
KUBECTL=${KUBECTL:-$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)}
[ -x "$KUBECTL" ] || KUBECTL=kubectl
READY_TIMEOUT=${PADDOCK_PEERS_READY_TIMEOUT:-120}
KWOK_PORT=${PADDOCK_PEERS_KWOK_PORT:-19550}
TEKTON_METRICS_PORT=${PADDOCK_PEERS_TEKTON_METRICS_PORT:-19551}
TEKTON_PROFILING_PORT=${PADDOCK_PEERS_TEKTON_PROFILING_PORT:-19552}
TEKTON_PROBES_PORT=${PADDOCK_PEERS_TEKTON_PROBES_PORT:-19553}
TEKTON_KNATIVE_PROBES_PORT=8080 # fixed: knative.dev/pkg injection.HealthCheckDefaultPort
SANDBOX_METRICS_PORT=${PADDOCK_PEERS_SANDBOX_METRICS_PORT:-19554}
SANDBOX_HEALTH_PORT=${PADDOCK_PEERS_SANDBOX_HEALTH_PORT:-19555}
KWOK_NODES=${PADDOCK_KWOK_NODES:-1}
KWOK_PREFIX=paddock-kwok-
KWOK_NODE=${KWOK_PREFIX}0 # the first node: the name in kwok-node.yaml and the serving cert's CN
TEKTON_NS=tekton-pipelines
FIELD_MANAGER=paddock-e2e-peers
PEERS=(kwok tekton agent-sandbox)

cache=${PADDOCK_CACHE:-/var/cache/paddock}
eval "$(bash "$here/cluster/build-binaries.sh" print-env | grep -E '^(TEKTON|AGENT_SANDBOX|KWOK)_(BIN|VERSION)=')"

k() { "$KUBECTL" --kubeconfig "$KCFG" "$@"; }
log() { printf '[peers] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

dir_of() { echo "$BASE/$1"; }
pidfile() { echo "$BASE/$1/$1.pid"; }
logfile() { echo "$BASE/$1/$1.log"; }
argsfile() { echo "$BASE/$1/$1.args"; }

check_name() {
  case "$1" in
    kwok | tekton | agent-sandbox) ;;
    *) echo "unknown peer '$1' (kwok, tekton, agent-sandbox)" >&2; exit 2 ;;
  esac
}

binary_of() {
  case "$1" in
    kwok) echo "$KWOK_BIN/kwok" ;;
    tekton) echo "$TEKTON_BIN/tekton-controller" ;;
    agent-sandbox) echo "$AGENT_SANDBOX_BIN/agent-sandbox-controller" ;;
  esac
}

metrics_url() {
  case "$1" in
    kwok) echo "https://127.0.0.1:$KWOK_PORT/metrics" ;;
    tekton) echo "http://127.0.0.1:$TEKTON_METRICS_PORT/metrics" ;;
    agent-sandbox) echo "http://127.0.0.1:$SANDBOX_METRICS_PORT/metrics" ;;
  esac
}

# module_dir <tools-dir> <module>@<version>: the module's source in the Go module cache
# (downloaded if needed), as e2e/kueue.sh does.
module_dir() {
  (cd "$here/cluster/tools/$1" &&
    GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPATH=${GOPATH:-$cache/go} GOCACHE=${GOCACHE:-$cache/go-build} \
      /usr/local/go/bin/go mod download -json "$2") | jq -er .Dir
}

ensure_binary() {
  local bin
  bin=$(binary_of "$1")
  [ -x "$bin" ] || bash "$here/cluster/build-binaries.sh" "$1"
  [ -x "$bin" ] || die "$bin is missing after build-binaries.sh $1"
}

# pid_of <name>: the PID in the pidfile if that process is alive and runs the peer's binary.
pid_of() {
  local f pid exe
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [ "${exe% (deleted)}" = "$(binary_of "$1")" ] || return 1
  echo "$pid"
}
running() { pid_of "$1" >/dev/null; }

port_free() { ! ss -ltnH "( sport = :$1 )" | grep -q .; }
http_ok() { curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null; }

# log_count <name> <text>: lines of the current log containing <text>.
log_count() {
  local c
  c=$(grep -cF -- "$2" "$(logfile "$1")" 2>/dev/null) || true
  echo "${c:-0}"
}

# launch <name> <env/command...>: start the command in its own session, log to the peer's log.
launch() {
  local name=$1 log pid
  shift
  log=$(logfile "$name")
  [ -f "$log" ] && mv -f "$log" "$log.prev"
  # 9>&-: the controller must not inherit (and so hold) the lock of main().
  setsid "$@" </dev/null >"$log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$(pidfile "$name")"
  log "started $name (pid $pid, log $log)"
}

# await <name> <ready-function>: wait up to READY_TIMEOUT s for the function to succeed.
await() {
  local name=$1 fn=$2 t0 now
  t0=$(date +%s)
  while :; do
    if "$fn"; then
      now=$(date +%s)
      log "$name ready after $((now - t0))s (pid $(pid_of "$name"), metrics $(metrics_url "$name"))"
      return 0
    fi
    if ! running "$name"; then
      log "$name exited; last log lines:"
      tail -n 30 "$(logfile "$name")" >&2 || true
      rm -f "$(pidfile "$name")"
      return 1
    fi
    now=$(date +%s)
    if [ $((now - t0)) -ge "$READY_TIMEOUT" ]; then
      log "$name not ready after ${READY_TIMEOUT}s; last log lines:"
      tail -n 30 "$(logfile "$name")" >&2 || true
      stop_process "$name"
      return 1
    fi
    sleep 0.5
  done
}

stop_process() {
  local name=$1 f pid
  f=$(pidfile "$name")
  if pid=$(pid_of "$name"); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop in 10s; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# already <name> <args-text> <ready-function>: true if it runs ready with the same args.
already() {
  local name=$1 args=$2 fn=$3 f
  f=$(argsfile "$name")
  if running "$name" && [ -f "$f" ] && [ "$(cat "$f")" = "$args" ] && "$fn"; then
    log "$name already running (pid $(pid_of "$name")) with the same flags"
    return 0
  fi
  return 1
}

need_ports() {
  local p
  for p in "$@"; do
    port_free "$p" || die "port $p is in use (see ss -ltnp)"
  done
}

# crds_conversion_none <files/dirs...>: the CRDs as a JSON List with spec.conversion
# {strategy: None}, for `kubectl apply --server-side -f -`.
crds_conversion_none() {
  python3 - "$@" <<'PY'
import glob, json, os, sys, yaml
items = []
for arg in sys.argv[1:]:
    files = sorted(glob.glob(os.path.join(arg, "*.yaml"))) if os.path.isdir(arg) else [arg]
    for f in files:
        for d in yaml.safe_load_all(open(f)):
            if d and d.get("kind") == "CustomResourceDefinition":
                d["spec"]["conversion"] = {"strategy": "None"}
                items.append(d)
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
}

install_crds() {
  local what=$1 crds
  shift
  log "applying $what CRDs (conversion strategy None) from $*"
  crds_conversion_none "$@" >"$BASE/crds.json"
  k apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f "$BASE/crds.json" >/dev/null
  mapfile -t crds < <(jq -r '.items[].metadata.name | "crd/" + .' "$BASE/crds.json")
  k wait --for=condition=Established --timeout=60s "${crds[@]}" >/dev/null
  rm -f "$BASE/crds.json"
}

# ---------------------------------------------------------------------------------------------
# The controllers' identity

PEER_KCFG=$BASE/peer.kubeconfig

# peer_kubeconfig: a kubeconfig for the peer controllers as the ServiceAccount
# paddock-peers/controller (bound to cluster-admin), in $PEER_KCFG, token valid 48 h (renewed when
# older than 24 h). Not the admin kubeconfig: its user is in system:masters, which API Priority
# and Fairness exempts from all queueing, while Paddock's operator is a ServiceAccount (flow
# schema service-accounts, priority level workload-low). With this, all three controllers share
# the API server on the same terms. kwok keeps the admin identity: it plays the kubelets, whose
# requests a real cluster serves at the system priority level. A kept kubeconfig is used only if
# its token still works: a cluster brought down and up again has a new ServiceAccount, and the old
# token fails (Tekton then exits with "Error reading/parsing logging configuration").
peer_kubeconfig() {
  if [ -s "$PEER_KCFG" ] && [ -n "$(find "$PEER_KCFG" -mmin -1440 2>/dev/null)" ] &&
    "$KUBECTL" --kubeconfig "$PEER_KCFG" --request-timeout=10s get namespace paddock-peers -o name >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$BASE"
  k create namespace paddock-peers --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n paddock-peers create serviceaccount controller --dry-run=client -o yaml | k apply -f - >/dev/null
  k create clusterrolebinding paddock-peers-controller --clusterrole=cluster-admin \
    --serviceaccount=paddock-peers:controller --dry-run=client -o yaml | k apply -f - >/dev/null
  local token server ca
  token=$(k -n paddock-peers create token controller --duration=48h)
  server=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  (
    umask 077
    cat >"$PEER_KCFG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: paddock
  cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
- name: peers
  user: {token: "$token"}
contexts:
- name: peers
  context: {cluster: paddock, user: peers}
current-context: peers
EOF
  )
}

# ---------------------------------------------------------------------------------------------
# kwok

# kwok_config: e2e/peers/kwok.yaml with its port, logs directory and pod-stage workers (4 per
# node) filled in, in
# $BASE/kwok/kwok.yaml; the (empty) log files it serves in $BASE/kwok/logs; a serving cert for
# 127.0.0.1 signed by the cluster's CA (the API server verifies kubelets with it) in
# $BASE/kwok/tls.{crt,key}.
kwok_config() {
  local d=$BASE/kwok pki=${PADDOCK_CLUSTER_DIR:-/var/lib/paddock-cluster}/pki f
  mkdir -p "$d/logs"
  for f in clone agent gateway; do [ -e "$d/logs/$f.log" ] || : >"$d/logs/$f.log"; done
  sed -e "s#@KWOK_PORT@#$KWOK_PORT#g" -e "s#@LOGS@#$d/logs#g" \
    -e "s#@POD_PARALLELISM@#$((4 * KWOK_NODES))#g" "$here/peers/kwok.yaml" >"$d/kwok.yaml"
  if ! openssl x509 -in "$d/tls.crt" -noout -checkend 86400 >/dev/null 2>&1 ||
    ! openssl verify -CAfile "$pki/ca.crt" "$d/tls.crt" >/dev/null 2>&1; then
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/tls.key" \
      -out "$d/tls.csr" -subj "/CN=$KWOK_NODE" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:$KWOK_NODE" >"$d/tls.ext"
    openssl x509 -req -in "$d/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days 30 -extfile "$d/tls.ext" -out "$d/tls.crt" 2>/dev/null
    rm -f "$d/tls.csr" "$d/tls.ext"
    chmod 600 "$d/tls.key"
  fi
}

kwok_args() {
  printf '%s\n' "--kubeconfig=$KCFG" "--config=$BASE/kwok/kwok.yaml" \
    "--server-address=127.0.0.1:$KWOK_PORT" "--tls-cert-file=$BASE/kwok/tls.crt" \
    "--tls-private-key-file=$BASE/kwok/tls.key"
}

# kwok_node_names: the nodes this start wants, paddock-kwok-0 .. paddock-kwok-<N-1>.
kwok_node_names() {
  local i
  for ((i = 0; i < KWOK_NODES; i++)); do echo "$KWOK_PREFIX$i"; done
}

# kwok_nodes_present: the paddock-kwok-<i> nodes in the cluster, whatever N made them.
kwok_nodes_present() {
  k get nodes -l type=kwok -o name 2>/dev/null | sed -n "s#^node/\($KWOK_PREFIX[0-9][0-9]*\)\$#\1#p"
}

# kwok_nodes_yaml: kwok-node.yaml once per node, as one YAML stream.
kwok_nodes_yaml() {
  local n
  while read -r n; do
    echo ---
    sed "s#\b$KWOK_NODE\b#$n#g" "$here/peers/kwok-node.yaml"
  done < <(kwok_node_names)
}

# remove_kwok_nodes <node...>: force-delete the pods bound to the nodes, then the nodes.
remove_kwok_nodes() {
  local n pods
  [ $# -gt 0 ] || return 0
  for n in "$@"; do
    pods=$(k get pods -A --field-selector "spec.nodeName=$n" -o name 2>/dev/null | wc -l)
    if [ "$pods" -gt 0 ]; then
      log "force-deleting $pods pod(s) bound to $n"
      k delete pods -A --field-selector "spec.nodeName=$n" --force --grace-period=0 \
        --wait=false >/dev/null 2>&1 || true
    fi
  done
  log "deleting node(s) $*"
  k delete node "$@" --ignore-not-found --wait=true --timeout=60s >/dev/null || true
}

kwok_ready() {
  local ready
  curl -fsSk --max-time 2 -o /dev/null "https://127.0.0.1:$KWOK_PORT/healthz" 2>/dev/null || return 1
  # A label selector always lists (`get node <one name>` gives an object, with no .items).
  ready=$(k get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null |
    grep -cxF -f <(kwok_node_names | sed 's/$/=True/')) || true
  [ "${ready:-0}" -eq "$KWOK_NODES" ]
}

start_kwok() {
  local args sig extra=()
  [ $# -eq 0 ] || die "start kwok takes no flags (the node count is PADDOCK_KWOK_NODES)"
  [[ "$KWOK_NODES" =~ ^[1-9][0-9]*$ ]] || die "PADDOCK_KWOK_NODES must be a count >= 1, got '$KWOK_NODES'"
  kwok_config
  args=$(kwok_args)
  # The config files and the node count are part of the identity: a changed stage or another
  # count restarts kwok.
  sig=$(printf '%s\n' "$args" "nodes=$KWOK_NODES"; sha256sum "$here/peers/kwok.yaml" "$here/peers/kwok-node.yaml" | cut -d' ' -f1)
  already kwok "$sig" kwok_ready && return 0
  stop_process kwok
  ensure_binary kwok
  need_ports "$KWOK_PORT"
  mapfile -t extra < <(kwok_nodes_present | sort -u | comm -23 - <(kwok_node_names | sort -u))
  remove_kwok_nodes "${extra[@]}"
  log "applying $KWOK_NODES node(s) ${KWOK_PREFIX}0..$((KWOK_NODES - 1)) (e2e/peers/kwok-node.yaml)"
  kwok_nodes_yaml | k apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f - >/dev/null
  printf '%s\n' "$sig" >"$(argsfile kwok)"
  mapfile -t argv <<<"$args"
  launch kwok "$(binary_of kwok)" "${argv[@]}"
  await kwok kwok_ready
}

stop_kwok() {
  local nodes=()
  mapfile -t nodes < <(kwok_nodes_present)
  remove_kwok_nodes "${nodes[@]}"
  stop_process kwok
}

# ---------------------------------------------------------------------------------------------
# tekton

tekton_install() {
  local dir
  dir=$(module_dir tekton "github.com/tektoncd/pipeline@$TEKTON_VERSION")
  k apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" \
    -f "$dir/config/100-namespace" >/dev/null
  log "applying Tekton $TEKTON_VERSION ConfigMaps (config/config-*.yaml) in $TEKTON_NS"
  local f files=()
  for f in "$dir"/config/config-*.yaml; do files+=(-f "$f"); done
  k apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" "${files[@]}" >/dev/null
  install_crds "Tekton $TEKTON_VERSION" "$dir/config/300-crds"
}

tekton_ready() {
  http_ok "http://127.0.0.1:$TEKTON_PROBES_PORT/readiness" &&
    http_ok "http://127.0.0.1:$TEKTON_KNATIVE_PROBES_PORT/readiness" &&
    http_ok "http://127.0.0.1:$TEKTON_METRICS_PORT/metrics" &&
    [ "$(log_count tekton 'Started workers')" -ge 3 ]
}

start_tekton() {
  local qps="" burst="" threads="" extra=() args img
  while [ $# -gt 0 ]; do
    case "$1" in
      --qps) qps=${2:?--qps needs a value}; shift 2 ;;
      --burst) burst=${2:?--burst needs a value}; shift 2 ;;
      --threads) threads=${2:?--threads needs a value}; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) die "start tekton: unknown flag $1 (--qps Q --burst B --threads T [-- flags])" ;;
    esac
  done
  img=tekton.invalid/tektoncd/pipeline
  peer_kubeconfig
  args=$(
    printf '%s\n' "-kubeconfig=$PEER_KCFG" -disable-ha \
      "-entrypoint-image=$img/entrypoint:$TEKTON_VERSION" "-nop-image=$img/nop:$TEKTON_VERSION" \
      "-sidecarlogresults-image=$img/sidecarlogresults:$TEKTON_VERSION" \
      "-workingdirinit-image=$img/workingdirinit:$TEKTON_VERSION" \
      "-shell-image=tekton.invalid/busybox:latest" "-shell-image-win=tekton.invalid/powershell:nanoserver"
    [ -z "$qps" ] || echo "-kube-api-qps=$qps"
    [ -z "$burst" ] || echo "-kube-api-burst=$burst"
    [ -z "$threads" ] || echo "-threads-per-controller=$threads"
    [ ${#extra[@]} -eq 0 ] || printf '%s\n' "${extra[@]}"
  )
  already tekton "$args" tekton_ready && return 0
  stop_process tekton
  ensure_binary tekton
  need_ports "$TEKTON_METRICS_PORT" "$TEKTON_PROFILING_PORT" "$TEKTON_PROBES_PORT" \
    "$TEKTON_KNATIVE_PROBES_PORT"
  tekton_install
  printf '%s\n' "$args" >"$(argsfile tekton)"
  mapfile -t argv <<<"$args"
  launch tekton env \
    SYSTEM_NAMESPACE="$TEKTON_NS" KUBERNETES_MIN_VERSION=v1.28.0 \
    CONFIG_DEFAULTS_NAME=config-defaults CONFIG_LOGGING_NAME=config-logging \
    CONFIG_OBSERVABILITY_NAME=config-observability CONFIG_FEATURE_FLAGS_NAME=feature-flags \
    CONFIG_LEADERELECTION_NAME=config-leader-election-controller CONFIG_SPIRE=config-spire \
    METRICS_DOMAIN=tekton.dev/pipeline \
    METRICS_PROMETHEUS_HOST=127.0.0.1 METRICS_PROMETHEUS_PORT="$TEKTON_METRICS_PORT" \
    PROFILING_PORT="$TEKTON_PROFILING_PORT" PROBES_PORT="$TEKTON_PROBES_PORT" \
    "$(binary_of tekton)" "${argv[@]}"
  await tekton tekton_ready
}

# ---------------------------------------------------------------------------------------------
# agent-sandbox

sandbox_ready() {
  http_ok "http://127.0.0.1:$SANDBOX_HEALTH_PORT/readyz" &&
    [ "$(log_count agent-sandbox 'Starting workers')" -ge 4 ]
}

start_agent_sandbox() {
  local qps="" burst="" extra=() args dir
  while [ $# -gt 0 ]; do
    case "$1" in
      --qps) qps=${2:?--qps needs a value}; shift 2 ;;
      --burst) burst=${2:?--burst needs a value}; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) die "start agent-sandbox: unknown flag $1 (--qps Q --burst B [-- flags])" ;;
    esac
  done
  peer_kubeconfig
  args=$(
    printf '%s\n' "--kubeconfig=$PEER_KCFG" --enable-webhook=false --extensions --leader-elect=false \
      "--metrics-bind-address=127.0.0.1:$SANDBOX_METRICS_PORT" \
      "--health-probe-bind-address=127.0.0.1:$SANDBOX_HEALTH_PORT"
    [ -z "$qps" ] || echo "--kube-api-qps=$qps"
    [ -z "$burst" ] || echo "--kube-api-burst=$burst"
    [ ${#extra[@]} -eq 0 ] || printf '%s\n' "${extra[@]}"
  )
  already agent-sandbox "$args" sandbox_ready && return 0
  stop_process agent-sandbox
  ensure_binary agent-sandbox
  need_ports "$SANDBOX_METRICS_PORT" "$SANDBOX_HEALTH_PORT"
  dir=$(module_dir agent-sandbox "sigs.k8s.io/agent-sandbox@$AGENT_SANDBOX_VERSION")
  install_crds "agent-sandbox $AGENT_SANDBOX_VERSION" "$dir/k8s/crds"
  printf '%s\n' "$args" >"$(argsfile agent-sandbox)"
  mapfile -t argv <<<"$args"
  launch agent-sandbox "$(binary_of agent-sandbox)" "${argv[@]}"
  await agent-sandbox sandbox_ready
}

# ---------------------------------------------------------------------------------------------

status_one() {
  local name=$1 pid ok=0 fn rss
  case "$name" in
    kwok) fn=kwok_ready ;;
    tekton) fn=tekton_ready ;;
    agent-sandbox) fn=sandbox_ready ;;
  esac
  if pid=$(pid_of "$name"); then
    rss=$(awk '/^VmRSS:/ {print $2 " " $3}' "/proc/$pid/status" 2>/dev/null || true)
    if "$fn"; then
      printf '%-14s running (pid %s, VmRSS %s), ready, metrics %s\n' "$name" "$pid" "$rss" "$(metrics_url "$name")"
    else
      printf '%-14s running (pid %s, VmRSS %s), NOT ready (log %s)\n' "$name" "$pid" "$rss" "$(logfile "$name")"
      ok=1
    fi
    [ "$name" = kwok ] || printf '%-14s flags: %s\n' "" "$(tr '\n' ' ' <"$(argsfile "$name")")"
  else
    printf '%-14s not running\n' "$name"
    ok=1
  fi
  return $ok
}

main() {
  local cmd=${1:-} name=${2:-} rc=0 n
  if [ "$cmd" = start ] || [ "$cmd" = stop ]; then
    # One start/stop at a time (a benchmark and a person may both call this script).
    mkdir -p "$BASE"
    exec 9>"$BASE/.lock"
    flock 9
  fi
  case "$cmd" in
    start)
      [ -n "$name" ] || { echo "usage: $0 start kwok|tekton|agent-sandbox [flags]" >&2; exit 2; }
      check_name "$name"
      shift 2
      mkdir -p "$(dir_of "$name")"
      case "$name" in
        kwok) start_kwok "$@" ;;
        tekton) start_tekton "$@" ;;
        agent-sandbox) start_agent_sandbox "$@" ;;
      esac
      ;;
    stop)
      [ -n "$name" ] || { echo "usage: $0 stop kwok|tekton|agent-sandbox|all" >&2; exit 2; }
      if [ "$name" = all ]; then
        # The controllers first, so none of them reacts to kwok's pods going away.
        stop_process agent-sandbox
        stop_process tekton
        stop_kwok
      else
        check_name "$name"
        if [ "$name" = kwok ]; then stop_kwok; else stop_process "$name"; fi
      fi
      ;;
    status)
      if [ -n "$name" ]; then
        check_name "$name"
        status_one "$name"
      else
        for n in "${PEERS[@]}"; do status_one "$n" || rc=1; done
        return $rc
      fi
      ;;
    pid)
      check_name "$name"
      pid_of "$name" || { echo "$name is not running" >&2; exit 1; }
      ;;
    log)
      check_name "$name"
      logfile "$name"
      ;;
    *)
      echo "usage: $0 start <name> [flags] | stop <name>|all | status [<name>] | pid <name> | log <name>" >&2
      echo "       names: kwok tekton agent-sandbox" >&2
      exit 2
      ;;
  esac
}

main "$@"
