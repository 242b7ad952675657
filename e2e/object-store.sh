#!/usr/bin/env bash
# A real S3-compatible object store for the e2e suite, the archive of run evidence bundles:
# s3s-fs (crates.io, Apache-2.0; docs/evidence.md, "The object store in the tests"), a plain
# background process serving path-style S3 over http with SigV4, each bucket a directory under
# its root. Fixed test credentials: access key paddock-e2e, secret key paddock-e2e-secret
# (region us-east-1); bucket paddock-evidence.
#   bash e2e/object-store.sh install            # cargo install the pinned s3s-fs (cached; a no-op when there)
#   bash e2e/object-store.sh start [HOST_IP]    # (re)start on HOST_IP:19000 (default: the last HOST_IP); prints the URL
#   bash e2e/object-store.sh stop               # stop what this script started; the objects stay
#   bash e2e/object-store.sh url                # print the URL (http://HOST_IP:19000)
#   bash e2e/object-store.sh wipe               # stop and delete every object (a clean suite start)
#   bash e2e/object-store.sh selftest [HOST_IP] # PUT, GET, LIST, a wrong key refused, DELETE (curl --aws-sigv4)
# Env: PADDOCK_OBJECT_STORE_PORT (default 19000), PADDOCK_RUN_DIR (default /var/lib/paddock-e2e;
#      data, pid file, log and the last HOST_IP in its object-store/), PADDOCK_CACHE (default
#      /var/cache/paddock; the binary in cargo-tools/bin, like cargo-fuzz).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

S3S_FS_VERSION=0.14.1 # 0.15 and later need rustc 1.96
TOOLS=$PADDOCK_CACHE/cargo-tools
BIN=$TOOLS/bin/s3s-fs
RUN_DIR=${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}
DIR=$RUN_DIR/object-store
DATA=$DIR/data # the server's root: one directory per bucket
PORT=${PADDOCK_OBJECT_STORE_PORT:-19000}
PIDFILE=$DIR/s3s-fs.pid
HOSTFILE=$DIR/host # HOST_IP of the last start
LOG=$DIR/s3s-fs.log
BUCKET=paddock-evidence
ACCESS_KEY=paddock-e2e
SECRET_KEY=paddock-e2e-secret
REGION=us-east-1

ensure_installed() {
  if [ "$("$BIN" --version 2>/dev/null)" = "s3s-fs $S3S_FS_VERSION" ]; then return 0; fi
  echo "cargo install s3s-fs $S3S_FS_VERSION into $TOOLS" >&2
  CARGO_INSTALL_ROOT=$TOOLS cargo install s3s-fs --version "=$S3S_FS_VERSION" --locked --features binary
}

host() {
  [ -s "$HOSTFILE" ] || { echo "error: no HOST_IP yet: run '$0 start HOST_IP' first" >&2; return 1; }
  cat "$HOSTFILE"
}

url() {
  local h
  h=$(host) || return 1
  echo "http://$h:$PORT"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

# s3 METHOD PATH [curl args...]: a SigV4-signed request with the test credentials (S3 wants
# x-amz-content-sha256, which curl 7.88 does not add by itself; curl signs it).
s3() {
  local method=$1 path=$2
  shift 2
  curl -sS --max-time 10 --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X "$method" "$@" "$(url)$path"
}

# healthy: the bucket answers a signed HEAD (so the server runs, reads its root and checks keys).
healthy() {
  [ "$(s3 HEAD "/$BUCKET" -o /dev/null -w '%{http_code}' -I 2>/dev/null)" = 200 ]
}

start() {
  local ip=${1:-} i
  [ -n "$ip" ] || ip=$(host)
  mkdir -p "$DATA/$BUCKET"
  if running && [ "$(cat "$HOSTFILE" 2>/dev/null)" = "$ip" ] && healthy; then
    url
    return 0
  fi
  stop
  ensure_installed
  echo "$ip" >"$HOSTFILE"
  "$BIN" --host "$ip" --port "$PORT" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$DATA" \
    </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for i in $(seq 1 100); do
    if ! running; then
      # Exited at once: typically the address is taken (another checkout's store) or not ours.
      echo "error: s3s-fs exited on $ip:$PORT; last log lines:" >&2
      tail -n 5 "$LOG" >&2 || true
      echo "  is $ip an address of this machine, and port $PORT free? (ss -ltnp 'sport = :$PORT')" >&2
      rm -f "$PIDFILE"
      return 1
    fi
    # Answering is not enough: another checkout's store may hold the port (ours then exits).
    if healthy && sleep 0.3 && running; then
      url
      return 0
    fi
    sleep 0.1
  done
  echo "error: s3s-fs did not answer on $ip:$PORT within 10 s; last log lines:" >&2
  tail -n 20 "$LOG" >&2 || true
  stop
  return 1
}

stop() {
  local pid i
  [ -f "$PIDFILE" ] || return 0
  pid=$(cat "$PIDFILE")
  if kill "$pid" 2>/dev/null; then
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

wipe() {
  stop
  rm -rf "$DATA" "$LOG"
}

# selftest [HOST_IP]: real S3 calls against the running store (started if it is not).
selftest() {
  local tmp key code rc=0
  start "$@" >/dev/null
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-object-store.XXXXXX")
  key=selftest/$(date +%s)-$$.txt
  head -c 100000 /dev/urandom | base64 >"$tmp/put"
  expect() { # expect DESC COND...
    local desc=$1
    shift
    if "$@"; then echo "ok   - $desc"; else echo "FAIL - $desc"; rc=1; fi
  }
  code=$(s3 PUT "/$BUCKET/$key" -T "$tmp/put" -o "$tmp/put.out" -w '%{http_code}' || true)
  expect "PUT /$BUCKET/$key: 200" [ "$code" = 200 ]
  code=$(s3 GET "/$BUCKET/$key" -o "$tmp/get" -w '%{http_code}' || true)
  expect "GET returns the same $(wc -c <"$tmp/put") bytes" bash -c "[ '$code' = 200 ] && cmp -s '$tmp/put' '$tmp/get'"
  code=$(s3 GET "/$BUCKET?list-type=2&prefix=selftest%2F" -o "$tmp/list" -w '%{http_code}' || true)
  expect "LIST (list-type=2) names the key" bash -c "[ '$code' = 200 ] && grep -q '<Key>$key</Key>' '$tmp/list'"
  code=$(curl -sS --max-time 10 --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:wrong-secret" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null -w '%{http_code}' "$(url)/$BUCKET/$key" || true)
  expect "a wrong secret key is refused (403)" [ "$code" = 403 ]
  code=$(s3 DELETE "/$BUCKET/$key" -o /dev/null -w '%{http_code}' || true)
  expect "DELETE: 204" [ "$code" = 204 ]
  code=$(s3 GET "/$BUCKET/$key" -o /dev/null -w '%{http_code}' || true)
  expect "GET after DELETE: 404" [ "$code" = 404 ]
  rm -rf "$tmp"
  echo "object store $(url): $([ $rc = 0 ] && echo passed || echo FAILED)"
  return $rc
}

case "${1:-}" in
  install) ensure_installed ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  url) url ;;
  wipe) wipe ;;
  selftest) shift; selftest "$@" ;;
  *) echo "usage: $0 install|start [HOST_IP]|stop|url|wipe|selftest [HOST_IP]" >&2; exit 2 ;;
esac
