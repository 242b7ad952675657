#!/usr/bin/env bash
# Imports an image archive into the local cluster's containerd (namespace k8s.io), where the
# kubelet finds it; pods must then use imagePullPolicy IfNotPresent or Never.
#
#   import-image.sh <archive.tar> [<name:tag>]
#
# <archive.tar>: a docker-archive (`docker save`, `skopeo copy ... docker-archive:`), whose tags
# are kept, or an OCI archive/layout tarball. Without <name:tag> the names recorded in the
# archive are used; with it the image is retagged (through skopeo) to exactly that name.
# Prints the imported image names on stdout. containerd must be running (`cluster.sh up`).
# Env: PADDOCK_CLUSTER_RUN (default /run/paddock-cluster) locates containerd's socket.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 <archive.tar> [<name:tag>]" >&2; exit 2; }
archive=$1 name=${2:-}
RUN=${PADDOCK_CLUSTER_RUN:-/run/paddock-cluster}
sock=$RUN/containerd/containerd.sock
[ -f "$archive" ] || { echo "import-image: no such file: $archive" >&2; exit 1; }
[ -S "$sock" ] || { echo "import-image: containerd socket $sock missing (is the cluster up?)" >&2; exit 1; }
ctr_() { ctr --address "$sock" --namespace k8s.io "$@"; }

tmp=
trap '[ -z "$tmp" ] || rm -rf "$tmp"' EXIT
if [ -n "$name" ]; then
  # Retag: docker-archive if it has a manifest.json, otherwise OCI archive.
  if tar -tf "$archive" manifest.json >/dev/null 2>&1; then src=docker-archive:$archive; else src=oci-archive:$archive; fi
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-import.XXXXXX")
  skopeo copy --quiet "$src" "docker-archive:$tmp/image.tar:$name" >&2
  archive=$tmp/image.tar
fi
before=$(ctr_ images ls -q | sort)
# containerd's unpack can fail once with "parent snapshot ... does not exist" when a layer's
# snapshot is being garbage-collected as the import starts (seen after a cluster restart); the
# second import of the same archive finds a consistent state.
for attempt in 1 2 3; do
  if ctr_ images import --snapshotter overlayfs "$archive" >&2; then
    break
  fi
  [ "$attempt" -lt 3 ] || { echo "import-image: ctr import failed 3 times" >&2; exit 1; }
  echo "import-image: ctr import failed (attempt $attempt); retrying in 2 s" >&2
  sleep 2
done
after=$(ctr_ images ls -q | sort)
# Names in the archive (docker-archive RepoTags) or those that appeared.
if tar -tf "$archive" manifest.json >/dev/null 2>&1; then
  tar -xOf "$archive" manifest.json | grep -o '"RepoTags":\[[^]]*\]' | grep -o '"[^"]*"' | grep -v RepoTags | tr -d '"'
else
  comm -13 <(echo "$before") <(echo "$after") | grep -v "^sha256:" || true
fi
