# Shared helpers for Paddock's scripts. Source it; it defines functions only.
PADDOCK_CACHE=${PADDOCK_CACHE:-/var/cache/paddock}
_paddock_t0=${_paddock_t0:-$(date +%s)}
export _paddock_t0 PADDOCK_CACHE

# step MSG: a progress line with the elapsed time since the script started.
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - _paddock_t0 ))" "$*" >&2; }

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
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error $pkgs >/dev/null
  echo "$pkgs" >"$dir/.installed"
}
