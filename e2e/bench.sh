#!/usr/bin/env bash
# `make bench`: benchmarks on the local cluster (not part of `make test`; they print numbers,
# they do not pass or fail on them). Sets up what the e2e suite does (cluster, images, host
# services, Paddock installed), then runs each benchmark binary of the e2e crate:
#   bench-start   AgentRun created → agent started, cold vs warm pods (see docs/pools.md)
# Extra arguments go to bench-start (e.g. `make bench ARGS="--runs 9 --warm-replicas 3"`).
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/lib.sh
source e2e/services.sh
trap 'stop_services' EXIT
e2e_up
step "bench: start latency, cold vs warm"
cargo run --release -q -p paddock-e2e --bin bench-start -- "$@"
