#!/usr/bin/env bash
# `make fresh-check`: the README's commands as a new user runs them, on caches that are empty, so
# a tool that only another target builds cannot hide behind a warm cache (issue 16). Not part of
# `make test` (a cold run takes most of an hour on 2 cores); run it before closing any change
# that touches setup, and put its figures in the README.
#
# In $PADDOCK_FRESH_DIR (default /var/tmp/paddock-fresh-check, wiped first) it makes:
#   clone/     a fresh `git clone` of this repository's HEAD (committed work only), whose empty
#              target/ is CARGO_TARGET_DIR
#   cache/     PADDOCK_CACHE (Go tools, runner image base, agent CLIs), empty
#   cluster/   PADDOCK_CLUSTER_DIR (its own local cluster; PADDOCK_CLUSTER_RUN is
#              /run/paddock-fresh-check), run/ PADDOCK_RUN_DIR (host services, logs)
#   go/, npm/, pip/, cargo-home/   empty GOPATH/GOMODCACHE/GOCACHE, npm_config_cache,
#              PIP_CACHE_DIR and CARGO_HOME (crates are downloaded again; the toolchain stays)
#   logs/      one log per command
# then runs `make <command>` for each of $PADDOCK_FRESH_COMMANDS (default "demo test") in the
# clone, one after another in that environment, and prints the wall time of each command and of
# each of its steps (the scripts' "==> [ Ns]" lines). At the end it takes its cluster down and
# removes the directory (PADDOCK_FRESH_KEEP=1 keeps it, e.g. to look at a failure or to reuse
# cache/). The user's own caches and cluster are left alone: it refuses to start while a local
# cluster runs, since its own cluster needs the same ports and bridge.
#
# Examples:
#   make fresh-check                                            # cold demo, then test
#   PADDOCK_FRESH_COMMANDS="cluster-up demo" make fresh-check   # demo on a cache holding only
#                                                               # what cluster-up builds (no helm)
#   PADDOCK_FRESH_COMMANDS="test" make fresh-check              # cold test alone
# Exit status: 0 when every command passed; otherwise that of the first failing command.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
source e2e/lib.sh

ROOT=${PADDOCK_FRESH_DIR:-/var/tmp/paddock-fresh-check}
COMMANDS=${PADDOCK_FRESH_COMMANDS:-demo test}
FRESH_RUN=/run/paddock-fresh-check

[ "$(id -u)" = 0 ] || { echo "error: run as root (the local cluster and the image build need it)" >&2; exit 1; }
if ss -Hltn 'sport = :6443' | grep -q .; then
  echo "error: something listens on :6443 (a local cluster?). The fresh check brings up its own cluster on" \
       "the same ports and bridge: stop yours first (make cluster-down)." >&2
  exit 1
fi

# Everything under $ROOT; a previous check's cluster (killed without `down`) first.
if [ -d "$ROOT/cluster" ]; then
  PADDOCK_CLUSTER_DIR=$ROOT/cluster PADDOCK_CLUSTER_RUN=$FRESH_RUN PADDOCK_CACHE=$ROOT/cache \
    bash e2e/cluster/cluster.sh down >/dev/null 2>&1 || true
fi
rm -rf --one-file-system "$ROOT"
mkdir -p "$ROOT"/{cache,cluster,run,go,gocache,npm,pip,cargo-home,logs}
git clone -q --no-local "$SRC" "$ROOT/clone"
commit=$(git -C "$ROOT/clone" rev-parse --short HEAD)

# The environment of a new user on this machine: empty caches, no kubeconfig, no leftovers.
fresh_env=(
  env -u KUBECONFIG -u CARGO_TARGET_DIR -u _paddock_t0 -u PADDOCK_NPM_CLIS -u PADDOCK_PIP_CLIS
  -u PADDOCK_IMAGE_CACHE -u GOFLAGS -u MAKEFLAGS -u MAKELEVEL
  PADDOCK_LOCAL_CLUSTER=1
  CARGO_TARGET_DIR="$ROOT/clone/target"
  CARGO_HOME="$ROOT/cargo-home" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
  PATH="$ROOT/cargo-home/bin:$PATH"
  PADDOCK_CACHE="$ROOT/cache"
  PADDOCK_CLUSTER_DIR="$ROOT/cluster" PADDOCK_CLUSTER_RUN="$FRESH_RUN"
  PADDOCK_RUN_DIR="$ROOT/run"
  GOPATH="$ROOT/go" GOMODCACHE="$ROOT/go/pkg/mod" GOCACHE="$ROOT/gocache"
  npm_config_cache="$ROOT/npm" PIP_CACHE_DIR="$ROOT/pip"
)

teardown() {
  step "fresh check: tearing down its host services and cluster"
  # `make demo` leaves its host services (git daemon, scripted model) running for the user.
  (cd "$ROOT/clone" && "${fresh_env[@]}" bash -c 'source e2e/lib.sh; source e2e/services.sh; stop_services') || true
  (cd "$ROOT/clone" && "${fresh_env[@]}" bash e2e/cluster/cluster.sh down >"$ROOT/logs/cluster-down.log" 2>&1) ||
    echo "cluster down failed: $ROOT/logs/cluster-down.log" >&2
  if [ "${PADDOCK_FRESH_KEEP:-}" = 1 ]; then
    echo "kept $ROOT (PADDOCK_FRESH_KEEP=1)" >&2
  else
    rm -rf --one-file-system "$ROOT"
  fi
}
trap teardown EXIT

# steps LOG END: one line per "==> [ Ns] title" step of the log, with the seconds it took.
steps() {
  sed -n 's/^==> \[ *\([0-9]*\)s\] \(.*\)$/\1\t\2/p' "$1" |
    awk -F'\t' -v end="$2" '
      NR > 1 { printf "      %5ds  %s\n", $1 - t, title }
      { t = $1; title = substr($2, 1, 110) }
      END { if (NR) printf "      %5ds  %s\n", end - t, title }'
}

summary=()
rc=0
for c in $COMMANDS; do
  step "fresh check: make $c (log $ROOT/logs/$c.log)"
  t0=$SECONDS
  set +e
  (cd "$ROOT/clone" && "${fresh_env[@]}" make --no-print-directory "$c") 2>&1 | tee "$ROOT/logs/$c.log"
  crc=${PIPESTATUS[0]}
  set -e
  secs=$((SECONDS - t0))
  result=ok; [ "$crc" = 0 ] || result="FAILED (exit $crc)"
  summary+=("$(printf '  make %-12s %5ds (%dm%02ds)  %s' "$c" "$secs" $((secs / 60)) $((secs % 60)) "$result")")
  summary+=("$(steps "$ROOT/logs/$c.log" "$secs")")
  if [ "$crc" != 0 ]; then rc=$crc; break; fi
done

echo
echo "fresh check of commit $commit on $(nproc) CPUs, $(free -g | awk '/^Mem:/{print $2}') GiB, empty caches in $ROOT:"
printf '%s\n' "${summary[@]}"
exit $rc
