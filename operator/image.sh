#!/usr/bin/env bash
# Daemonless build of the operator image: a scratch image holding only
# /usr/local/bin/paddock-operator and the shared libraries it links (found with ldd), run as
# uid 65532. Writes an OCI archive (also a docker-archive) and prints its path; with --import,
# loads it into the local cluster's containerd. The Dockerfile beside this script is the same
# image for machines with Docker.
# Usage: operator/image.sh [--binary PATH] [--out PATH] [--import]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/paddock-operator
REF=${PADDOCK_OPERATOR_IMAGE:-localhost/paddock/operator:dev}
OUT=${PADDOCK_CACHE:-/var/cache/paddock}/images/operator.tar
IMPORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --import) IMPORT=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no operator binary at $BIN (cargo build --release -p paddock-operator)" >&2; exit 1; }
for t in umoci jq; do command -v $t >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $t >/dev/null; done
TAG=${REF##*:}
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/root/usr/local/bin" "$WORK/root/tmp"
install -m 0755 "$BIN" "$WORK/root/usr/local/bin/paddock-operator"
# The dynamic loader and every library ldd resolves, at their real paths.
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
  mkdir -p "$WORK/root$(dirname "$lib")"
  cp -L "$lib" "$WORK/root$lib"
done
chmod 1777 "$WORK/root/tmp"
tar --create --file="$WORK/layer.tar" --directory="$WORK/root" --numeric-owner --owner=0 --group=0 .
umoci init --layout "$WORK/oci"
umoci new --image "$WORK/oci:$TAG"
umoci raw add-layer --image "$WORK/oci:$TAG" --history.created_by "operator/image.sh" "$WORK/layer.tar"
umoci config --image "$WORK/oci:$TAG" --no-history --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/paddock-operator --config.cmd run
desc=$(jq -c --arg t "$TAG" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)' "$WORK/oci/index.json")
manifest="$WORK/oci/blobs/sha256/$(jq -r '.digest | sub("^sha256:"; "")' <<<"$desc")"
jq -n --argjson d "$desc" --arg ref "$REF" --arg t "$TAG" '{schemaVersion: 2,
  mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [$d | .annotations = {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $t}]}' \
  >"$WORK/oci/index.json"
jq --arg ref "$REF" '[{Config: ("blobs/sha256/" + (.config.digest | sub("^sha256:"; ""))), RepoTags: [$ref],
  Layers: [.layers[].digest | "blobs/sha256/" + sub("^sha256:"; "")]}]' "$manifest" >"$WORK/oci/manifest.json"
mkdir -p "$(dirname "$OUT")"
tar --create --file="$OUT.tmp" --directory="$WORK/oci" --numeric-owner --owner=0 --group=0 .
mv "$OUT.tmp" "$OUT"
echo "operator image $REF: $(du -h "$OUT" | cut -f1) in $OUT" >&2
if [ "$IMPORT" = 1 ]; then
  bash "$REPO/e2e/cluster/import-image.sh" "$OUT" >&2
fi
echo "$OUT"
