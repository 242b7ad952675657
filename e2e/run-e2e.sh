#!/usr/bin/env bash
# The e2e suite on a real local cluster: cluster up (or reuse), images built and loaded, Paddock
# installed with its Helm chart, host services started (scripted model endpoint, git daemon,
# and the S3 object store the operator archives evidence bundles to: e2e/object-store.sh, emptied
# at the start, PADDOCK_E2E_ARCHIVE_URL and PADDOCK_E2E_OBJECT_STORE_URL exported),
# Gitea started empty (e2e/forge.sh, PADDOCK_E2E_FORGE_* exported), Prometheus started
# (e2e/prometheus.sh), then
# `cargo test -p paddock-e2e --test e2e --test approvals --test plugin --test metrics --test leaks --test pools --test kueue --test gateway --test agents --test hostile --test console --test evidence --test verification --test sets --test triggers --test forge --test conversing`. Env:
#   PADDOCK_E2E_DOWN=1      tear the cluster down at the end (CI)
#   PADDOCK_E2E_KEEP=1      keep the test namespaces
#   PADDOCK_E2E_THREADS=N   tests in parallel (default 4)
#   PADDOCK_E2E_KUEUE=0     do not start Kueue (tests/kueue.rs then fails)
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/lib.sh
source e2e/services.sh

cargo build -q -p kubectl-paddock  # debug: tests/plugin.rs and tests/console.rs run target/debug/kubectl-paddock
export PADDOCK_E2E_KUEUE=${PADDOCK_E2E_KUEUE:-1}  # tests/kueue.rs
export PADDOCK_E2E_FORGE=${PADDOCK_E2E_FORGE:-1}  # tests/forge.rs: Gitea (e2e/forge.sh)
# stop_services also stops the object store; its objects stay (for a look after a failure).
trap 'stop_services; bash e2e/prometheus.sh stop; bash e2e/kueue.sh stop; bash e2e/forge.sh stop' EXIT
ensure_browser  # tests/console.rs
e2e_up
PADDOCK_E2E_PROMETHEUS_URL=$(bash e2e/prometheus.sh start)  # scrapes the operator (tests/metrics.rs)
export PADDOCK_E2E_PROMETHEUS_URL
step "e2e tests"
rc=0
E2E_LOG=$(mktemp "${TMPDIR:-/tmp}/paddock-e2e.XXXXXX")
# Sixteen test files (cargo prints one "test result:" line per file); the last line below totals them.
cargo test --no-fail-fast -p paddock-e2e --test e2e --test approvals --test plugin --test metrics --test leaks --test pools --test kueue --test gateway --test agents --test hostile --test console --test evidence --test verification --test sets --test triggers --test forge --test conversing -- --test-threads="${PADDOCK_E2E_THREADS:-4}" 2>&1 |
  tee "$E2E_LOG" || rc=$?
# The suite's closing line, in the plain "N passed, N failed" form.
awk '/^test result:/ { files++; for (i = 1; i < NF; i++) { if ($(i+1) ~ /^(passed|failed);?$/) t[$(i+1)] += $i } }
  END { f = t["failed;"] + 0; if (files < 16) f++; printf "e2e: %d passed, %d failed\n", t["passed;"], f }' "$E2E_LOG"
rm -f "$E2E_LOG"
if [ $rc -ne 0 ]; then
  echo "---- operator log (last 80 lines) ----" >&2
  kubectl -n paddock-system logs deploy/paddock-operator --tail=80 >&2 || true
fi
if [ "${PADDOCK_E2E_DOWN:-}" = 1 ]; then
  step "cluster down"; stop_services; bash e2e/cluster/cluster.sh down
fi
step "e2e done (rc=$rc)"
exit $rc
