#!/usr/bin/env bash
# `make test`: everything, in order of cost. Fails on the first failing layer.
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/lib.sh
step "disk space"
# Measured: a cold target/ took 3.5 GiB at peak (3.2 GiB left) with a warm $PADDOCK_CACHE; a cold
# cache (Go, npm and image builds) takes about 15 GiB more. PADDOCK_MIN_FREE_GIB overrides.
need=${PADDOCK_MIN_FREE_GIB:-}
if [ -z "$need" ]; then
  need=2
  [ -d "${CARGO_TARGET_DIR:-target}/debug" ] || need=$((need + 6))
  [ -d "$PADDOCK_CACHE/bin" ] || need=$((need + 20))
fi
ensure_disk_space "$need" "${CARGO_TARGET_DIR:-target}" "$PADDOCK_CACHE" "${PADDOCK_CLUSTER_DIR:-/var/lib/paddock-cluster}"
step "toolchain and host packages"; ensure_host_deps
step "agent CLIs on the host (scripted model endpoint tests)"; ensure_npm_clis
export SCRIPTED_MODEL_REQUIRE_CLIS=1
step "OpenTelemetry Collector (for the OTLP export tests; built from its Go modules, cached)"
bash e2e/cluster/build-binaries.sh otelcol
export PADDOCK_REQUIRE_OTELCOL=1
step "Kueue (for the Kueue integration e2e; built from its Go module, cached)"
bash e2e/cluster/build-binaries.sh kueue
step "unit tests, CRD drift test, lints"; make --no-print-directory unit
step "chart checks (helm lint, rendered manifests, RBAC rule by rule)"
HELM="$(bash e2e/cluster/build-binaries.sh print-env | sed -n 's/^HELM_BIN=//p')/helm"
bash e2e/cluster/build-binaries.sh helm
HELM=$HELM bash charts/paddock/test.sh
step "observability checks (promtool rules and tests, dashboard PromQL, Argo CD Lua health checks)"
HELM=$HELM bash charts/paddock/test-observability.sh | grep -v "^ok "
if [ "${PADDOCK_SKIP_E2E:-}" = 1 ]; then echo "PADDOCK_SKIP_E2E=1: skipping the e2e suite"; exit 0; fi
if [ -f e2e/run-e2e.sh ]; then step "e2e suite on a real cluster"; bash e2e/run-e2e.sh; fi
