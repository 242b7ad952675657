#!/usr/bin/env bash
# Builds the runner and operator images without a Docker daemon and loads them into the local
# cluster's containerd (names: localhost/paddock/runner:dev, localhost/paddock/operator:dev).
# Expects release binaries in $CARGO_TARGET_DIR/release, default target/release (run-e2e.sh and
# demo.sh build them).
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/lib.sh
step "runner image (a cold build makes the Debian + agent CLI base layer once; later builds reuse it)"
bash runner-image/build.sh --runner "${CARGO_TARGET_DIR:-target}/release/paddock-runner" --import >/dev/null
step "operator image"
bash operator/image.sh --import >/dev/null
