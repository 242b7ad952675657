#!/usr/bin/env bash
# `make bench`: benchmarks on the local cluster (not part of `make test`; they print numbers,
# they do not pass or fail on them). Sets up what the e2e suite does (cluster, images, host
# services, Paddock installed), starts the peers we compare against (e2e/peers.sh: kwok, Tekton
# Pipelines, agent-sandbox), then runs the benchmark binaries of the e2e crate, each printing
# markdown tables (docs/performance.md explains them and keeps the last figures):
#   bench-peers    Paddock vs Tekton vs agent-sandbox: start latency on the real node (cold,
#                  warm), apply → pod on kwok (1,000 objects at 50/s), API writes and 409s,
#                  controller memory at 0 / 1k objects (10k with --scale 1000,10000); then
#                  Paddock alone past one node (scenario 6: kwok restarted with 10 nodes,
#                  10,000 runs at 10/s, the operator's CPU and RSS, its memory settled).
#                  Scenarios 1-3 run on one kwok node, as before.
#   bench-start    Paddock alone: created → agent started, one run at a time, cold vs warm
#   bench-gateway  the gateway's added latency per streamed model call, and that it streams
#   bench-cache    the operator's caches alone: heap bytes per object of each kind, whole and
#                  as the operator slims them (no cluster; about 4 min under the heap profiler)
# Variables: BENCH_PEERS_ARGS (e.g. "--objects 200 --scale-runs 1000" for a quick
# run; --scale-nodes K --scale-rate R for scenario 6),
# BENCH_START_ARGS, BENCH_GATEWAY_ARGS, BENCH_CACHE_ARGS (e.g. "--objects 1000");
# PADDOCK_BENCH_KEEP_PEERS=1 leaves the peers running.
# Output also goes to $PADDOCK_RUN_DIR/bench/bench-<time>.md (default /var/lib/paddock-e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/lib.sh
source e2e/services.sh
cleanup() {
  stop_services
  [ "${PADDOCK_BENCH_KEEP_PEERS:-}" = 1 ] || bash e2e/peers.sh stop all >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The default installation: no evidence archive (its finalizer and status.archive write would
# add two API writes per run to the figures; docs/evidence.md).
export PADDOCK_E2E_ARCHIVE=${PADDOCK_E2E_ARCHIVE:-0}
e2e_up
export KUBECTL=${KUBECTL:-$(command -v kubectl.1.33 || echo /usr/lib/google-cloud-sdk/bin/kubectl.1.33)}

# The write counts come from the API server's audit log: a cluster started before the audit
# policy existed gets its API server restarted with it.
# The same for one started with an older policy (without log reads).
pid=$(pgrep -f "kube-apiserver .*--etcd-servers" | head -n 1 || true)
policy=${PADDOCK_CLUSTER_DIR:-/var/lib/paddock-cluster}/config/audit-policy.yaml
if [ -n "$pid" ] && { ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- --audit-policy-file \
  || ! grep -q 'pods/log' "$policy" 2>/dev/null; }; then
  step "restarting kube-apiserver with the audit policy (e2e/cluster/cluster.sh)"
  bash e2e/cluster/cluster.sh restart kube-apiserver
fi

step "peers: building (first time only) and starting kwok"
bash e2e/cluster/build-binaries.sh tekton agent-sandbox kwok >/dev/null
# One fake node for scenarios 1-3; bench-peers' scenario 6 restarts kwok with its own count.
PADDOCK_KWOK_NODES=1 bash e2e/peers.sh start kwok

out_dir=${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}/bench
mkdir -p "$out_dir"
out=$out_dir/bench-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# make bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/^Mem:/{print $2}') GiB"
} | tee "$out"

step "bench-peers: Paddock vs Tekton vs agent-sandbox"
# shellcheck disable=SC2086
cargo run --release -q -p paddock-e2e --bin bench-peers -- ${BENCH_PEERS_ARGS:-} | tee -a "$out"
step "bench-start: Paddock start latency, one run at a time"
# shellcheck disable=SC2086
cargo run --release -q -p paddock-e2e --bin bench-start -- ${BENCH_START_ARGS:-} | tee -a "$out"
step "bench-gateway: gateway overhead"
# shellcheck disable=SC2086
cargo run --release -q -p paddock-e2e --bin bench-gateway -- ${BENCH_GATEWAY_ARGS:-} | tee -a "$out"
step "bench-cache: the operator's caches, heap per object"
# shellcheck disable=SC2086
cargo run --release -q -p paddock-e2e --bin bench-cache -- ${BENCH_CACHE_ARGS:-} | tee -a "$out"
step "tables saved in $out"
