# Host-side services the e2e suite and the demo need, reachable from pods at the cluster
# bridge address: the scripted model endpoint (:18080) and a git daemon (:9418); for the e2e
# suite (e2e_up) also the S3 object store that archives evidence bundles (:19000,
# e2e/object-store.sh). Source it.
PADDOCK_RUN_DIR=${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}
GIT_ROOT=$PADDOCK_RUN_DIR/git
MODEL_PORT=${PADDOCK_MODEL_PORT:-18080}

# start_services HOST_IP: (re)starts both services bound to HOST_IP; sets MODEL_URL, GIT_URL.
start_services() {
  local ip=$1 repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  mkdir -p "$PADDOCK_RUN_DIR" "$GIT_ROOT"
  stop_services
  "${CARGO_TARGET_DIR:-$repo/target}/release/scripted-model" --listen "$ip:$MODEL_PORT" --scripts "$repo/e2e/scripts" \
    >"$PADDOCK_RUN_DIR/scripted-model.log" 2>&1 &
  echo $! >"$PADDOCK_RUN_DIR/scripted-model.pid"
  git daemon --reuseaddr --listen="$ip" --port=9418 --base-path="$GIT_ROOT" --export-all \
    --enable=receive-pack --informative-errors "$GIT_ROOT" >"$PADDOCK_RUN_DIR/git-daemon.log" 2>&1 &
  echo $! >"$PADDOCK_RUN_DIR/git-daemon.pid"
  MODEL_URL="http://$ip:$MODEL_PORT"
  GIT_URL="git://$ip"
  local i pid
  for i in $(seq 1 50); do
    if curl -fsS "$MODEL_URL/healthz" >/dev/null 2>&1 && (exec 3<>"/dev/tcp/$ip/9418") 2>/dev/null; then
      # Answering is not enough: another checkout's services may hold the ports (ours then
      # exited at once, unable to bind).
      for pid in "$PADDOCK_RUN_DIR"/scripted-model.pid "$PADDOCK_RUN_DIR"/git-daemon.pid; do
        if ! kill -0 "$(cat "$pid")" 2>/dev/null; then
          echo "error: $(basename "$pid" .pid) exited: $(tail -n 1 "${pid%.pid}.log")" >&2
          echo "  another checkout's host services may hold ports $MODEL_PORT/9418 on $ip (ss -ltnp 'sport = :9418')" >&2
          return 1
        fi
      done
      return 0
    fi
    sleep 0.2
  done
  echo "host services did not come up; see $PADDOCK_RUN_DIR/*.log" >&2
  return 1
}

# stop_services: stops what start_services started, and the object store (idempotent; the
# store keeps its objects).
stop_services() {
  local f
  PADDOCK_RUN_DIR=$PADDOCK_RUN_DIR bash "$(dirname "${BASH_SOURCE[0]}")/object-store.sh" stop
  for f in "$PADDOCK_RUN_DIR"/scripted-model.pid "$PADDOCK_RUN_DIR"/git-daemon.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  pkill -f "git-daemon .*--base-path=$GIT_ROOT" 2>/dev/null || true
}

# install_paddock [helm args...]: installs or upgrades the chart into paddock-system and waits
# for the operator to be ready.
install_paddock() {
  local repo helm
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  # Built here too (a no-op when cached): `make demo` on a fresh machine must not rely on
  # `make test` having built helm first (issue 16).
  bash "$repo/e2e/cluster/build-binaries.sh" helm
  helm=$(bash "$repo/e2e/cluster/build-binaries.sh" print-env | sed -n 's/^HELM_BIN=//p')/helm
  # Helm installs crds/ once and never upgrades them: apply the current CRDs first.
  kubectl apply --server-side --force-conflicts --field-manager=paddock-install -f "$repo/charts/paddock/crds/crds.yaml" >/dev/null
  "$helm" upgrade --install paddock "$repo/charts/paddock" -n paddock-system --create-namespace \
    --set image.repository=localhost/paddock/operator --set image.tag=dev --set image.pullPolicy=IfNotPresent \
    --set defaultPool.enabled=false "$@" >/dev/null
  # A new operator binary under the same tag: restart so the pod runs it.
  kubectl -n paddock-system rollout restart deploy/paddock-operator >/dev/null
  kubectl -n paddock-system rollout status deploy/paddock-operator --timeout=120s
}

# prebuild [--local-cluster] [--kueue] [--object-store]: the slow builds of a first run, at once
# (run_parallel in lib.sh), each cached so that a warm run takes about a second:
#   compile            helm, and with --local-cluster etcd + Kubernetes + kube-router, with --kueue Kueue
#                      (build-binaries.sh, $PADDOCK_CACHE/bin), then paddock-runner,
#                      paddock-operator, scripted-model (cargo, target/release), then with
#                      --object-store the e2e suite's S3 server s3s-fs (e2e/object-store.sh
#                      install: cargo install, $PADDOCK_CACHE/cargo-tools; cold about 100 s)
#   runner-image-base  with --local-cluster: Debian + the agent CLIs, the runner image's base layer
#                      (runner-image/build.sh --base-only, $PADDOCK_CACHE/runner-image)
# See the README for the measured times.
prebuild() {
  local repo local_cluster=0 go_tools=helm object_store= forge=
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  while [ $# -gt 0 ]; do
    case "$1" in
      --local-cluster) local_cluster=1; go_tools="etcd kubernetes kube-router $go_tools" ;;
      --kueue) go_tools="$go_tools kueue" ;;
      --object-store) object_store=" && bash '$repo/e2e/object-store.sh' install" ;;
      --forge) forge=" && bash '$repo/e2e/forge.sh' build" ;;
    esac
    shift
  done
  # cargo and Go one after the other: each saturates both cores, and side by side they took
  # longer (cold demo 907 s) than in turn (Go 283 s, then the demo's cargo 461 s). The image
  # base (mostly downloads) overlaps them. The object store's cargo install comes last, in turn too.
  # --forge: Gitea (Go, about 600 s cold) after the other Go tools, before cargo.
  local jobs=("compile=bash '$repo/e2e/cluster/build-binaries.sh' $go_tools$forge && cd '$repo' && cargo build --release -p paddock-runner -p paddock-operator -p scripted-model$object_store")
  [ "$local_cluster" = 0 ] || jobs+=("runner-image-base=bash '$repo/runner-image/build.sh' --base-only")
  run_parallel "${jobs[@]}"
}

# e2e_up: what every suite on the local cluster starts from — release binaries, the cluster
# (brought up or reused), images loaded, host services started, the object store started empty
# (e2e/object-store.sh), Paddock installed archiving evidence bundles to it — and the
# PADDOCK_E2E_* variables the test and bench binaries read exported. Sets KUBECONFIG, HOST_IP.
# With PADDOCK_E2E_KUEUE=1 it also starts Kueue (e2e/kueue.sh) and enables the integration.
e2e_up() {
  ensure_host_deps
  local kueue_build=()
  [ "${PADDOCK_E2E_KUEUE:-}" != 1 ] || kueue_build=(--kueue)
  [ "${PADDOCK_E2E_FORGE:-}" != 1 ] || kueue_build+=(--forge)
  step "builds, in parallel (first run only; each is cached): release binaries, Go tools, object store, runner image base"
  prebuild --local-cluster --object-store "${kueue_build[@]}"
  step "local cluster"
  KUBECONFIG=$(bash e2e/cluster/cluster.sh up | tail -n 1)
  export KUBECONFIG
  HOST_IP=$(bash e2e/cluster/cluster.sh host-ip)
  step "images"
  bash e2e/build-images.sh
  step "host services (scripted model, git daemon) on $HOST_IP"
  start_services "$HOST_IP"
  # PADDOCK_E2E_ARCHIVE=0 (the benchmark): Paddock as installed by default, without an archive
  # (an archive adds the evidence finalizer and the status.archive write to each run).
  local archive_args=(--set archive.url=)
  if [ "${PADDOCK_E2E_ARCHIVE:-1}" != 0 ]; then
    step "object store (s3s-fs, emptied) on $HOST_IP:${PADDOCK_OBJECT_STORE_PORT:-19000}: the evidence archive"
    local store_url
    PADDOCK_RUN_DIR=$PADDOCK_RUN_DIR bash e2e/object-store.sh wipe
    store_url=$(PADDOCK_RUN_DIR=$PADDOCK_RUN_DIR bash e2e/object-store.sh start "$HOST_IP")
    # The archive's credentials, the fixed test keys of e2e/object-store.sh (chart value
    # archive.credentialsSecret: loaded into the operator's environment).
    kubectl create namespace paddock-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl -n paddock-system create secret generic paddock-archive-credentials \
      --from-literal=AWS_ACCESS_KEY_ID=paddock-e2e --from-literal=AWS_SECRET_ACCESS_KEY=paddock-e2e-secret \
      --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    archive_args=(--set archive.url=s3://paddock-evidence/e2e --set archive.endpoint="$store_url"
      --set archive.allowHttp=true --set archive.credentialsSecret=paddock-archive-credentials)
    export PADDOCK_E2E_ARCHIVE_URL=s3://paddock-evidence/e2e PADDOCK_E2E_OBJECT_STORE_URL=$store_url
    export PADDOCK_E2E_S3_ACCESS_KEY=paddock-e2e PADDOCK_E2E_S3_SECRET_KEY=paddock-e2e-secret
  fi
  if [ "${PADDOCK_E2E_FORGE:-}" = 1 ]; then
    step "forge (Gitea, emptied) on $HOST_IP:${PADDOCK_FORGE_PORT:-13000}: tests/forge.rs"
    PADDOCK_RUN_DIR=$PADDOCK_RUN_DIR bash e2e/forge.sh wipe
    eval "$(PADDOCK_RUN_DIR=$PADDOCK_RUN_DIR bash e2e/forge.sh start "$HOST_IP")"
    export PADDOCK_E2E_FORGE_URL PADDOCK_E2E_FORGE_USER PADDOCK_E2E_FORGE_TOKEN
  fi
  local kueue=false
  if [ "${PADDOCK_E2E_KUEUE:-}" = 1 ]; then
    step "Kueue controller (host process; e2e/kueue.sh)"
    bash e2e/kueue.sh start
    kueue=true
  fi
  step "install Paddock (helm)"
  install_paddock --set kueue.enabled=$kueue "${archive_args[@]}"
  export PADDOCK_E2E_RUNNER_IMAGE=localhost/paddock/runner:dev
  export PADDOCK_E2E_MODEL_URL=$MODEL_URL PADDOCK_E2E_GIT_ROOT=$GIT_ROOT PADDOCK_E2E_GIT_URL=$GIT_URL
}
