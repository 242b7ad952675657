#!/usr/bin/env bash
# `make envtest`: the middle test tier. The operator's controller tests
# (operator/tests/apiserver/, feature `envtest`) against a real etcd and kube-apiserver, with no
# kubelet, scheduler or controller-manager: real admission (the CRDs' schema and CEL rules, the
# chart's ValidatingAdmissionPolicy on ApprovalGate decisions, the chart's RBAC for the operator,
# OwnerReferencesPermissionEnforcement), seconds instead of the e2e suite's minutes.
#
# What it does, on a fresh machine too:
#   1. builds (or finds cached) etcd, kube-apiserver and helm (e2e/cluster/build-binaries.sh);
#   2. starts etcd and kube-apiserver in a temporary directory on free ports (its own PKI);
#   3. installs the CRDs (charts/paddock/crds), and from the chart the operator's ServiceAccount
#      and RBAC and the approval policy; the operator runs with a token of that ServiceAccount;
#   4. builds and runs `cargo test -p paddock-operator --features envtest --test apiserver` (each
#      test starts the operator binary itself, watching only its own namespace);
#   5. always stops every process it started (trap), and prints the wall time.
# Env:
#   PADDOCK_ENVTEST_KEEP=1     keep the temporary directory (logs, PKI, etcd data)
#   PADDOCK_ENVTEST_THREADS=N  tests in parallel (default 4)
#   extra arguments go to the test binary (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/lib.sh
t_start=$(date +%s.%N)
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $t_start" | bc)"; }

for t in cargo kubectl openssl curl python3 bc jq setsid; do
  command -v "$t" >/dev/null || { echo "error: envtest needs '$t' on PATH" >&2; exit 1; }
done

step "etcd, kube-apiserver and helm (build-binaries.sh; cached after the first build)"
bash e2e/cluster/build-binaries.sh etcd kube-apiserver helm
eval "$(bash e2e/cluster/build-binaries.sh print-env | grep -E '^(K8S_BIN|ETCD_BIN|HELM_BIN|K8S_VERSION)=')"

dir=$(mktemp -d "${TMPDIR:-/tmp}/paddock-envtest.XXXXXX")
mkdir -p "$dir/pki" "$dir/logs"
pids=()
cleanup() {
  local rc=$? p
  # Each process was started in a session of its own (setsid): its process group is its pid,
  # so the operators a test binary started go with it.
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
  done
  if [ "${PADDOCK_ENVTEST_KEEP:-}" = 1 ] || [ "$rc" != 0 ]; then
    echo "envtest: logs and state kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
  echo "envtest: wall time $(elapsed) s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in a session of its own, its output in logs/NAME.log.
start() {
  local name=$1; shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 &
  pids+=($!)
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

step "PKI in $dir/pki"
p=$dir/pki
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" \
  -days 2 -subj "/CN=paddock-envtest-ca" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
# sign NAME SUBJECT EKU [SAN]: a P-256 key and a certificate signed by the CA.
sign() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$p/$1.key" -out "$p/$1.csr" -subj "$2" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s' \
    "$3" "${4:+subjectAltName=$4}" >"$p/$1.ext"
  openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 2 -extfile "$p/$1.ext" -out "$p/$1.crt" 2>/dev/null
}
sign apiserver "/CN=kube-apiserver" serverAuth "DNS:localhost,IP:127.0.0.1"
sign admin "/O=system:masters/CN=paddock-envtest-admin" clientAuth
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$p/sa.key" 2>/dev/null
openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub"

step "etcd on 127.0.0.1:$etcd_port, kube-apiserver on 127.0.0.1:$api_port (no kubelet, scheduler or controller-manager)"
start etcd "$ETCD_BIN/etcd" --name envtest --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "envtest=http://127.0.0.1:$peer_port" --initial-cluster-state new \
  --listen-metrics-urls "" --unsafe-no-fsync --log-level warn
# OwnerReferencesPermissionEnforcement (off in the e2e cluster): an owner reference with
# blockOwnerDeletion needs update on the owner's finalizers, which the chart's RBAC grants.
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --etcd-servers "http://127.0.0.1:$etcd_port" --service-cluster-ip-range 10.250.0.0/16 \
  --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
  --authorization-mode RBAC --enable-admission-plugins OwnerReferencesPermissionEnforcement \
  --endpoint-reconciler-type none --profiling=false --v 1

t_api=$(date +%s.%N)
# The test binary builds meanwhile (the API server takes a few seconds to become ready).
step "building the envtest binary (cargo test --no-run; cached after the first build)"
t_build=$(date +%s.%N)
# The test binary's path (run directly below: a second cargo call would only wait for the lock).
exe=$(cargo test -q -p paddock-operator --features envtest --test apiserver --no-run --message-format json |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "apiserver" and .executable != null) | .executable')
[ -x "$exe" ] || { echo "error: no envtest test binary from cargo" >&2; exit 1; }
build_s=$(echo "$(date +%s.%N) - $t_build" | bc)

for i in $(seq 600); do
  curl -fsS --cacert "$p/ca.crt" "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1 && break
  for q in "${pids[@]}"; do
    kill -0 "$q" 2>/dev/null || { tail -n 30 "$dir"/logs/*.log >&2; echo "error: etcd or kube-apiserver exited" >&2; exit 1; }
  done
  [ "$i" = 600 ] && { tail -n 30 "$dir"/logs/*.log >&2; echo "error: kube-apiserver not ready after 60 s" >&2; exit 1; }
  sleep 0.1
done
printf 'kube-apiserver ready %.1f s after its start (the test build took %.1f s of that)\n' \
  "$(echo "$(date +%s.%N) - $t_api" | bc)" "$build_s" >&2

# kubeconfig FILE USER-LINES: a kubeconfig for this API server.
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 <"$p/ca.crt")
users:
- name: envtest
  user:
$2
contexts:
- name: envtest
  context: {cluster: envtest, user: envtest}
current-context: envtest
EOF
  chmod 600 "$1"
}
kubeconfig "$dir/admin.kubeconfig" "    client-certificate-data: $(base64 -w0 <"$p/admin.crt")
    client-key-data: $(base64 -w0 <"$p/admin.key")"
export KUBECONFIG=$dir/admin.kubeconfig

step "installing the CRDs, and from the chart the operator's ServiceAccount, RBAC and approval policy"
kubectl apply --server-side -f charts/paddock/crds/crds.yaml >/dev/null
kubectl create namespace paddock-system >/dev/null
"$HELM_BIN/helm" template paddock charts/paddock --namespace paddock-system --kube-version "$K8S_VERSION" \
  --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml \
  --show-only templates/approval-policy.yaml | kubectl apply --server-side -f - >/dev/null
kubectl wait --for condition=established --timeout 60s -f charts/paddock/crds/crds.yaml >/dev/null
sa=$(kubectl -n paddock-system get serviceaccount -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}')
# The operator acts as its ServiceAccount (a TokenRequest: served by the API server alone), so
# every request it makes passes the chart's RBAC.
kubeconfig "$dir/operator.kubeconfig" "    token: $(kubectl -n paddock-system create token "$sa" --duration 2h)"

step "envtest tests (operator/tests/apiserver)"
export PADDOCK_ENVTEST_KUBECONFIG=$dir/admin.kubeconfig
export PADDOCK_ENVTEST_OPERATOR_KUBECONFIG=$dir/operator.kubeconfig
export PADDOCK_ENVTEST_LOGS=$dir/logs
t_tests=$(date +%s.%N)
start tests "$exe" -q --test-threads "${PADDOCK_ENVTEST_THREADS:-4}" "$@"
rc=0
wait "${pids[-1]}" || rc=$?
cat "$dir/logs/tests.log"
# A run that printed no result did not run the tests (a test binary that is not ours, say).
[ "$rc" != 0 ] || grep -q '^test result: ok' "$dir/logs/tests.log" ||
  { echo "error: the test binary exited 0 without a test result" >&2; rc=1; }
[ "$rc" = 0 ] || echo "error: envtest tests failed (operator logs: $dir/logs/operator-*.log)" >&2
printf 'envtest: tests took %.1f s\n' "$(echo "$(date +%s.%N) - $t_tests" | bc)" >&2
exit "$rc"
