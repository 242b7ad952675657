#!/usr/bin/env bash
# `make demo`: the main job end to end. Brings up the local cluster (unless a cluster is already
# configured via KUBECONFIG or a current kubectl context), builds and loads the images, installs
# Paddock with Helm, serves Paddock's own repository to the pod from a git daemon on the host,
# runs a sample AgentRun with the real Claude Code CLI and streams its timeline to the end.
# The agent talks to the scripted model endpoint, or to Anthropic when ANTHROPIC_API_KEY is set
# and PADDOCK_DEMO_REAL_MODEL=1 (the network must allow it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
source e2e/lib.sh
source e2e/services.sh
NS=paddock-demo RUN=demo

step "prerequisites (root, toolchains, Debian packages)"
ensure_host_deps

if [ -z "${PADDOCK_LOCAL_CLUSTER:-}" ] && { [ -n "${KUBECONFIG:-}" ] || kubectl config current-context >/dev/null 2>&1; } \
   && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  LOCAL=0
else
  LOCAL=1
fi

if [ "$LOCAL" = 1 ]; then
  step "builds, in parallel (cached after the first run; cold on 2 cores about 15–18 min): release binaries (cargo), Kubernetes + etcd + helm (Go), runner image base (Debian + agent CLIs)"
  prebuild --local-cluster
  step "local cluster (cached binaries; starts in about 30 s)"
  KUBECONFIG=$(bash e2e/cluster/cluster.sh up | tail -n 1); export KUBECONFIG
  HOST_IP=$(bash e2e/cluster/cluster.sh host-ip)
  step "images (runner: the cached base + paddock-runner; operator)"
  bash e2e/build-images.sh
else
  step "using the configured cluster ($(kubectl config current-context 2>/dev/null || echo "$KUBECONFIG"))"
  HOST_IP=${PADDOCK_HOST_IP:?set PADDOCK_HOST_IP to an address of this machine that pods can reach}
  echo "load the images into that cluster yourself first (README: On a machine with Docker)" >&2
  step "builds, in parallel (cached after the first run): release binaries (cargo), helm (Go)"
  prebuild
fi

step "host services on $HOST_IP: git daemon serving Paddock's own repository, scripted model endpoint"
start_services "$HOST_IP"
rm -rf "$GIT_ROOT/paddock.git"
git clone -q --bare "$REPO_DIR" "$GIT_ROOT/paddock.git"
git --git-dir="$GIT_ROOT/paddock.git" config daemon.receivepack true
REVISION=$(git -C "$REPO_DIR" rev-parse HEAD)

step "install Paddock with Helm (namespace paddock-system)"
install_paddock

MODEL_ENV="[{\"name\": \"ANTHROPIC_BASE_URL\", \"value\": \"$MODEL_URL\"}]" MODEL=scripted-demo KEY=sk-demo-scripted-not-a-real-key
if [ "${PADDOCK_DEMO_REAL_MODEL:-}" = 1 ] && [ -n "${ANTHROPIC_API_KEY:-}" ]; then
  MODEL_ENV="[]" MODEL=${PADDOCK_DEMO_MODEL:-claude-sonnet-4-5} KEY=$ANTHROPIC_API_KEY
  echo "the agent talks to Anthropic's API (model $MODEL)" >&2
else
  echo "the agent talks to the scripted model endpoint at $MODEL_URL (script e2e/scripts/demo.json);" \
       "set ANTHROPIC_API_KEY and PADDOCK_DEMO_REAL_MODEL=1 to use the real model" >&2
fi

step "sample AgentRun $NS/$RUN: claude-code edits Paddock's own repository"
kubectl create namespace $NS --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n $NS delete agentrun $RUN --ignore-not-found --wait >/dev/null
kubectl -n $NS create secret generic anthropic --from-literal=api-key="$KEY" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: paddock.dev/v1alpha1
kind: RunnerPool
metadata: {name: default, namespace: $NS}
spec:
  template:
    image: localhost/paddock/runner:dev
    imagePullPolicy: IfNotPresent
    env: $MODEL_ENV
  maxConcurrentRuns: 2
YAML
T_APPLY=$(date +%s.%N)
kubectl apply -f - <<YAML
apiVersion: paddock.dev/v1alpha1
kind: AgentRun
metadata: {name: $RUN, namespace: $NS}
spec:
  repo:
    url: $GIT_URL/paddock.git
    revision: "$REVISION"
  agent:
    name: claude-code
    model: $MODEL
    env:
      - name: ANTHROPIC_API_KEY
        valueFrom: {secretKeyRef: {name: anthropic, key: api-key}}
  prompt: Add a short AGENT_NOTES.md explaining how this change was made.
  budget: {timeout: 10m}
  output: {push: true}
YAML

step "timeline (phase changes and Events as they happen)"
seen=0 last_phase= t_running= 
while :; do
  phase=$(kubectl -n $NS get ar $RUN -o jsonpath='{.status.phase}' 2>/dev/null || true)
  if [ "$phase" != "$last_phase" ] && [ -n "$phase" ]; then
    printf '  %6.1fs  phase %s\n' "$(echo "$(date +%s.%N) - $T_APPLY" | bc)" "$phase"
    last_phase=$phase
  fi
  if [ -z "$t_running" ] && [ "$(kubectl -n $NS get pod $RUN-1 -o jsonpath='{.status.phase}' 2>/dev/null)" = Running ]; then
    t_running=$(echo "$(date +%s.%N) - $T_APPLY" | bc)
    printf '  %6.1fs  pod %s-1 Running\n' "$t_running" "$RUN"
  fi
  mapfile -t evs < <(kubectl -n $NS get events --field-selector involvedObject.name=$RUN --sort-by=.metadata.creationTimestamp \
    -o jsonpath='{range .items[*]}{.reason}{"\t"}{.note}{.message}{"\n"}{end}' 2>/dev/null || true)
  for ((i = seen; i < ${#evs[@]}; i++)); do printf '           event %s\n' "${evs[$i]}"; done
  seen=${#evs[@]}
  case "$phase" in Succeeded|Failed|Cancelled|TimedOut|Rejected) break ;; esac
  if (( $(date +%s) - ${T_APPLY%.*} > 900 )); then echo "the run did not end within 15 minutes" >&2; break; fi
  sleep 0.5
done
T_END=$(echo "$(date +%s.%N) - $T_APPLY" | bc)

step "result"
kubectl -n $NS get ar $RUN -o wide
echo; echo "Conditions:"
kubectl -n $NS get ar $RUN -o jsonpath='{range .status.conditions[*]}  {.type}={.status} ({.reason}): {.message}{"\n"}{end}'
echo; echo "Events:"
kubectl -n $NS get events --field-selector involvedObject.name=$RUN --sort-by=.metadata.creationTimestamp \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message --no-headers | sed 's/^/  /'
echo; echo "Diffstat: $(kubectl -n $NS get ar $RUN -o jsonpath='{.status.result.diffstat} in {.status.result.filesChanged} file(s), commit {.status.result.commit}')"
echo; echo "Branch paddock/$RUN in $GIT_ROOT/paddock.git (pushed by the gateway sidecar):"
git --git-dir="$GIT_ROOT/paddock.git" log -1 --stat "paddock/$RUN" 2>/dev/null | sed 's/^/  /' || echo "  (branch not found)"
echo
printf 'Timing: apply -> pod Running %ss, apply -> %s %ss\n' "${t_running:-?}" "$phase" "$T_END"
cat <<EOT
Try:
  kubectl -n $NS get ar -w
  kubectl -n $NS describe ar $RUN
  kubectl -n $NS get cm $RUN-log -o jsonpath='{.data.events\.jsonl}'
  kubectl -n $NS get ar $RUN -o jsonpath='{.status.usage}'   # tokens and USD metered by the pod's gateway
  target/debug/kubectl-paddock -n $NS transcript $RUN        # the model calls (cargo build -p kubectl-paddock)
EOT
[ "$phase" = Succeeded ]
