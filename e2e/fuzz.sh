#!/usr/bin/env bash
# Fuzzes the runner's stream parsers with cargo-fuzz (libFuzzer, coverage-guided): every agent
# adapter's event-stream mapper plus the event sanitizer (`agent_streams`), the gateway's usage
# meter (`gateway_meter`) and the event-line reader (`event_lines`); targets in
# runner-image/fuzz/fuzz_targets. Part of `make drills`; needs no cluster.
#
# Each target runs for PADDOCK_FUZZ_SECS seconds (default 60) on a temporary copy of its seed
# corpus (runner-image/fuzz/corpus/<target>, checked in; what a run adds is thrown away), with
# AddressSanitizer and debug assertions (overflow checks), at most 1 GiB RSS
# (-rss_limit_mb=1024, which also caps one allocation). Prints one line per target (executions,
# execs/s, seconds, peak RSS) and exits 1 if any target found a crash, a leak, a timeout or an
# out-of-memory input; the input is kept under $PADDOCK_CACHE/fuzz-artifacts/<target>/ and its
# path printed. Replay from runner-image/fuzz with the same environment: `cargo fuzz run
# --sanitizer address --debug-assertions <target> <path>` (running the binary directly needs
# ASAN_OPTIONS=detect_odr_violation=0, which cargo-fuzz sets: vendored libgit2 trips ASan's
# one-definition-rule check).
#
# Stable Rust only: nightly cannot be installed on our machines, and cargo-fuzz passes nightly
# `-Z` flags (-Zsanitizer=address, instrumentation options) to rustc and cargo.
# RUSTC_BOOTSTRAP=1 makes the stable toolchain accept them; the sanitizer runtimes ship with
# stable's rust-std. Set PADDOCK_FUZZ_SANITIZER=none to fuzz without ASan (faster, finds
# panics only).
#
# Cached outside the repository under $PADDOCK_CACHE (default /var/cache/paddock): cargo-fuzz
# (pinned, cargo-tools/bin), the build (fuzz-target), each target's last log (fuzz-logs). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/lib.sh

SECS=${PADDOCK_FUZZ_SECS:-60}
SANITIZER=${PADDOCK_FUZZ_SANITIZER:-address}
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(agent_streams gateway_meter event_lines)
TOOLS=$PADDOCK_CACHE/cargo-tools
ARTIFACTS=$PADDOCK_CACHE/fuzz-artifacts
LOGS=$PADDOCK_CACHE/fuzz-logs
export CARGO_TARGET_DIR=$PADDOCK_CACHE/fuzz-target RUSTC_BOOTSTRAP=1
export PATH=$TOOLS/bin:$PATH

if [ "$("$TOOLS/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  step "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  CARGO_INSTALL_ROOT=$TOOLS cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked
fi

# The repository's lock file, so the fuzzed code builds with the shipped dependency versions
# (cargo adds libfuzzer-sys and its dependencies to the copy; copied again only when the
# repository's is newer).
cp -u Cargo.lock runner-image/fuzz/Cargo.lock
cd runner-image/fuzz
flags=(--sanitizer "$SANITIZER" --debug-assertions)
step "cargo fuzz build ${flags[*]}"
cargo fuzz build "${flags[@]}"

# Longest input per target: an agent's input is fed to every adapter three ways (each line, then
# the whole), so shorter inputs keep it fast; the meter repeats its input up to 512 times.
max_len() { case $1 in agent_streams) echo 16384 ;; *) echo 65536 ;; esac; }

# A libFuzzer final statistic (`stat::NAME: VALUE`) from target $t's log.
final_stat() { sed -n "s/^stat::$1: *//p" "$LOGS/$t.log" | tail -n 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
step "fuzz ${TARGETS[*]} for ${SECS}s each"
for t in "${TARGETS[@]}"; do
  cp -r "corpus/$t" "$work/corpus-$t"
  mkdir -p "$ARTIFACTS/$t" "$LOGS"
  t0=$(date +%s)
  rc=0
  cargo fuzz run "${flags[@]}" "$t" "$work/corpus-$t" -- \
    -max_total_time="$SECS" -rss_limit_mb=1024 -max_len="$(max_len "$t")" -timeout=30 \
    -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t/" >"$LOGS/$t.log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - t0 ))
  printf 'fuzz %-14s execs=%s execs/s=%s secs=%s slowest_unit_s=%s peak_rss_mb=%s corpus=%s->%s\n' "$t" \
    "$(final_stat number_of_executed_units)" "$(final_stat average_exec_per_sec)" "$secs" \
    "$(final_stat slowest_unit_time_sec)" "$(final_stat peak_rss_mb)" \
    "$(find "corpus/$t" -type f | wc -l)" "$(find "$work/corpus-$t" -type f | wc -l)"
  if [ "$rc" != 0 ]; then
    failed+=("$t")
    echo "fuzz $t FAILED (exit $rc):" >&2
    grep -E "panicked|ERROR: |SUMMARY|assert|Test unit written" "$LOGS/$t.log" | head -n 20 >&2 || true
    echo "(whole log: $LOGS/$t.log)" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}; inputs under $ARTIFACTS/<target>/" >&2
  exit 1
fi
