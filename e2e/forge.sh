#!/usr/bin/env bash
# A real forge for the e2e suite (issue 20): Gitea, built from the Go module proxy and run as a
# plain background host process next to the local cluster, serving its REST API, git over HTTP
# and webhooks (no web assets, no SSH). Fixed test credentials: admin user paddock, password
# paddock-e2e-password; the API token (all scopes) is made by `start` and kept in the state dir.
#   bash e2e/forge.sh build             # build the pinned Gitea into the cache (a no-op when there)
#   bash e2e/forge.sh start [HOST_IP]   # (re)start on HOST_IP:13000 (default: the last HOST_IP, else the
#                                       # cluster's host-ip 10.244.0.1); prints the PADDOCK_E2E_FORGE_* exports
#   bash e2e/forge.sh env               # print the exports again (eval "$(bash e2e/forge.sh env)")
#   bash e2e/forge.sh url               # print the URL (http://HOST_IP:13000)
#   bash e2e/forge.sh stop              # stop what this script started; repositories and users stay
#   bash e2e/forge.sh wipe              # stop and delete all state (a clean suite start: wipe, then start)
#   bash e2e/forge.sh selftest [HOST_IP]  # repo via the API, git push over HTTP with the token, a PR
#                                       # opened and listed, webhook deliveries (signed) to a local listener
# Usage from a suite: eval "$(bash e2e/forge.sh start "$HOST_IP")" exports
#   PADDOCK_E2E_FORGE_URL    http://HOST_IP:13000 (ROOT_URL: API at $URL/api/v1, clone URLs $URL/<owner>/<repo>.git)
#   PADDOCK_E2E_FORGE_USER   paddock (site admin)
#   PADDOCK_E2E_FORGE_TOKEN  the admin's API token, scope all (header "Authorization: token <t>";
#                            for git over HTTP, http://paddock:<t>@HOST_IP:13000/<owner>/<repo>.git)
#
# The build: Gitea is not meant to be `go install`ed (its go.mod has replace directives, which only
# count in the main module), so `build` makes a throwaway wrapper module in a temp dir (`go mod init`)
# that requires code.gitea.io/gitea at the pinned version, copies Gitea's replace directives and
# go.sum (so the module graph is exactly upstream's), and builds the main package with the tags
# upstream's Makefile uses for SQLite (sqlite sqlite_unlock_notify: mattn/go-sqlite3, so cgo and a C
# compiler; gcc is installed from Debian if missing; Gitea has no pure-Go SQLite driver). Same Go and
# caches as e2e/cluster/build-binaries.sh (the machine's /usr/local/go, GOTOOLCHAIN=local, GOPATH
# and GOCACHE under $PADDOCK_CACHE, its build lock). Without the bindata tag Gitea reads templates,
# options (locales, licences, gitignores) and public/ from STATIC_ROOT_PATH: these are copied from the
# module next to the binary. The built frontend (public/assets/js, css) is absent; the web pages
# would render unstyled, and the suite uses only the API, git over HTTP and webhooks.
# Cached as $PADDOCK_CACHE/bin/gitea-<version>/{gitea,templates,options,public} (105 MB binary,
# 119 MB in all). Cold (empty GOCACHE) on the 2-core machine while other tests ran: 596 s, of which
# 19 s module downloads; the build is reproducible (-trimpath: the same bytes on a rebuild).
#
# The server (app.ini written by `start`, in the state dir): SQLite (WAL), INSTALL_LOCK, OFFLINE_MODE,
# no mailer, no SSH, no LFS, no Actions, no packages, no cron jobs (the update checker would call
# out), registration off, memory cache and sessions, HTTP_ADDR HOST_IP (the cluster's bridge address:
# reachable from pods, like the git daemon and the scripted model of e2e/services.sh), ROOT_URL
# http://HOST_IP:PORT/. Webhooks may go to loopback and private addresses ([webhook]
# ALLOWED_HOST_LIST, default "loopback,private": 127.0.0.0/8, 10.0.0.0/8 so pod IPs and Service
# ClusterIPs, ...). Gitea delivers from the host, which does not use the cluster's DNS: a receiver in
# the cluster is addressed by IP (its Service's ClusterIP, or a NodePort on HOST_IP).
# Gitea refuses to run as root unless told (I_AM_BEING_UNSAFE_RUNNING_AS_ROOT): it runs as root
# here like the other host services, bound to the bridge address only.
#
# Env: PADDOCK_FORGE_PORT (default 13000), PADDOCK_FORGE_ALLOWED_HOSTS (default loopback,private),
#      PADDOCK_RUN_DIR (default /var/lib/paddock-e2e; state in its forge/: app.ini, data, repos,
#      pid file, log, token, the last HOST_IP), PADDOCK_CACHE (default /var/cache/paddock),
#      PADDOCK_FORGE_GITEA_VERSION (default below; another version the proxy serves, for trying one).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"

# v1.26.0, the newest usable: the proxy also lists v1.27.3 (and v1.28.0-dev), but from 1.27 the
# module is named gitea.dev (its go.mod says `module gitea.dev`), so code.gitea.io/gitea@v1.27.3
# cannot be required, and the proxy refuses gitea.dev itself (403, 2026-12-07).
GITEA_VERSION=${PADDOCK_FORGE_GITEA_VERSION:-v1.26.0}
GITEA_MODULE=code.gitea.io/gitea
GITEA_TAGS="sqlite sqlite_unlock_notify"
BIN_DIR=$PADDOCK_CACHE/bin/gitea-$GITEA_VERSION
BIN=$BIN_DIR/gitea
RUN_DIR=${PADDOCK_RUN_DIR:-/var/lib/paddock-e2e}
DIR=$RUN_DIR/forge
PORT=${PADDOCK_FORGE_PORT:-13000}
ALLOWED_HOSTS=${PADDOCK_FORGE_ALLOWED_HOSTS:-loopback,private}
CONF=$DIR/app.ini
PIDFILE=$DIR/gitea.pid
HOSTFILE=$DIR/host # HOST_IP of the last start
TOKENFILE=$DIR/token
LOG=$DIR/gitea.log
ADMIN_USER=paddock
ADMIN_PASSWORD=paddock-e2e-password
ADMIN_EMAIL=paddock@paddock.invalid
GO=${GO:-/usr/local/go/bin/go}
[ -x "$GO" ] || GO=go

log() { printf '[forge %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# build

built() { [ -x "$BIN" ] && [ -d "$BIN_DIR/templates" ] && [ -d "$BIN_DIR/options" ]; }

build() {
  if built; then log "gitea $GITEA_VERSION cached in $BIN_DIR"; return 0; fi
  command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev
  export GOFLAGS="-mod=mod -p=2" GOTOOLCHAIN=local CGO_ENABLED=1
  export GOPATH=${GOPATH:-$PADDOCK_CACHE/go} GOCACHE=${GOCACHE:-$PADDOCK_CACHE/go-build}
  # Upstream's Makefile adds this for SQLite builds.
  export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -DSQLITE_MAX_VARIABLE_NUMBER=32766"
  mkdir -p "$PADDOCK_CACHE/bin"
  ensure_disk_space 4 "$PADDOCK_CACHE" "${TMPDIR:-/tmp}"
  # One build at a time, shared with build-binaries.sh (each saturates both cores).
  exec 9>"$PADDOCK_CACHE/.build.lock"
  if ! flock -n 9; then
    log "another build holds $PADDOCK_CACHE/.build.lock; waiting"
    flock 9
  fi
  if built; then log "gitea $GITEA_VERSION cached in $BIN_DIR"; exec 9>&-; return 0; fi
  local t0=$SECONDS tmp src out=$BIN_DIR.tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-forge-build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  log "building gitea $GITEA_VERSION ($GITEA_MODULE, tags: $GITEA_TAGS) with $("$GO" version | cut -d' ' -f3); a cold build takes about 10 min on 2 cores"
  src=$(cd "$tmp" && "$GO" mod download -json "$GITEA_MODULE@$GITEA_VERSION" | jq -er .Dir)
  local mod_path
  mod_path=$("$GO" mod edit -json "$src/go.mod" | jq -r .Module.Path)
  if [ "$mod_path" != "$GITEA_MODULE" ]; then
    log "error: $GITEA_MODULE@$GITEA_VERSION names itself $mod_path in its go.mod; it cannot be required as $GITEA_MODULE"
    return 1
  fi
  local edits=()
  mapfile -t edits < <("$GO" mod edit -json "$src/go.mod" | jq -r '
    (.Replace // [])[] | "-replace=\(.Old.Path)\(if .Old.Version then "@" + .Old.Version else "" end)=\(.New.Path)\(if .New.Version then "@" + .New.Version else "" end)"')
  mapfile -t -O "${#edits[@]}" edits < <("$GO" mod edit -json "$src/go.mod" | jq -r '(.Godebug // [])[] | "-godebug=\(.Key)=\(.Value)"')
  (
    cd "$tmp"
    "$GO" mod init paddock.dev/e2e/forge/gitea >/dev/null 2>&1
    install -m 644 "$src/go.sum" go.sum
    "$GO" mod edit -require="$GITEA_MODULE@$GITEA_VERSION" "${edits[@]}"
    log "wrapper module: $(grep -c '^replace' go.mod) replace directives copied from Gitea's go.mod; downloading the modules it needs"
    "$GO" list -deps -tags "$GITEA_TAGS" "$GITEA_MODULE" >/dev/null
    log "modules downloaded ($((SECONDS - t0)) s); compiling"
    rm -rf "$out"
    mkdir -p "$out"
    "$GO" build -trimpath -tags "$GITEA_TAGS" \
      -ldflags "-s -w -X main.Version=${GITEA_VERSION#v} -X 'main.Tags=$GITEA_TAGS'" \
      -o "$out/gitea" "$GITEA_MODULE"
  )
  cp -r "$src/templates" "$src/options" "$src/public" "$out/"
  chmod -R u+w "$out"
  rm -rf "$BIN_DIR"
  mv "$out" "$BIN_DIR"
  rm -rf "$tmp"
  trap - EXIT
  exec 9>&- # release the build lock (the server started next must not hold it)
  log "gitea $GITEA_VERSION built into $BIN_DIR in $((SECONDS - t0)) s ($(du -h "$BIN" | cut -f1) binary)"
}

# ---------------------------------------------------------------------------------------------
# the server

# g ARGS...: the gitea CLI on this state (admin commands work on the database directly).
g() { GITEA_WORK_DIR=$DIR "$BIN" --config "$CONF" --work-path "$DIR" "$@"; }

host() {
  [ -s "$HOSTFILE" ] || { echo "error: no HOST_IP yet: run '$0 start HOST_IP' first" >&2; return 1; }
  cat "$HOSTFILE"
}

url() {
  local h
  h=$(host) || return 1
  echo "http://$h:$PORT"
}

# pid_of: the PID in the pid file if that process is alive and runs our binary (not a reused PID).
pid_of() {
  local pid exe
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [ "${exe% (deleted)}" = "$BIN" ] || return 1
  echo "$pid"
}
running() { pid_of >/dev/null; }

healthy() { curl -fsS --max-time 3 "$(url)/api/healthz" 2>/dev/null | grep -q '"status": *"pass"'; }

# api METHOD PATH [curl args...]: a REST call with the admin's token; prints the body.
api() {
  local method=$1 path=$2
  shift 2
  curl -sS --max-time 20 -X "$method" -H "Authorization: token $(cat "$TOKENFILE")" \
    -H 'Content-Type: application/json' -H 'Accept: application/json' "$@" "$(url)/api/v1$path"
}

token_ok() {
  [ -s "$TOKENFILE" ] &&
    [ "$(api GET /user -o /dev/null -w '%{http_code}' 2>/dev/null)" = 200 ]
}

# ensure_secrets: SECRET_KEY, INTERNAL_TOKEN and [oauth2] JWT_SECRET (written by Gitea even with
# oauth2 off), made once per state dir (Gitea would otherwise write them into app.ini itself, and the config check of `start` would see a change every time).
ensure_secrets() {
  grep -q '^JWT_SECRET=' "$DIR/secrets" 2>/dev/null && return 0
  (
    umask 077
    printf 'SECRET_KEY=%s\nINTERNAL_TOKEN=%s\nJWT_SECRET=%s\n' "$("$BIN" generate secret SECRET_KEY)" \
      "$("$BIN" generate secret INTERNAL_TOKEN)" "$("$BIN" generate secret JWT_SECRET)" >"$DIR/secrets.tmp"
  )
  mv "$DIR/secrets.tmp" "$DIR/secrets"
}

config() {
  local ip=$1 secret_key internal_token jwt_secret
  secret_key=$(sed -n 's/^SECRET_KEY=//p' "$DIR/secrets")
  internal_token=$(sed -n 's/^INTERNAL_TOKEN=//p' "$DIR/secrets")
  jwt_secret=$(sed -n 's/^JWT_SECRET=//p' "$DIR/secrets")
  cat <<INI
; Written by e2e/forge.sh; rewritten by every start.
APP_NAME = Paddock e2e forge
RUN_MODE = prod
WORK_PATH = $DIR
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = $ip
HTTP_PORT = $PORT
DOMAIN = $ip
ROOT_URL = http://$ip:$PORT/
LOCAL_ROOT_URL = http://$ip:$PORT/
APP_DATA_PATH = $DIR/data
STATIC_ROOT_PATH = $BIN_DIR
OFFLINE_MODE = true
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
LANDING_PAGE = explore

[database]
DB_TYPE = sqlite3
PATH = $DIR/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = $DIR/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = $secret_key
INTERNAL_TOKEN = $internal_token
PASSWORD_HASH_ALGO = pbkdf2_hi

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false
ENABLE_NOTIFY_MAIL = false
DEFAULT_KEEP_EMAIL_PRIVATE = true

[mailer]
ENABLED = false

[webhook]
ALLOWED_HOST_LIST = $ALLOWED_HOSTS
DELIVER_TIMEOUT = 10

[oauth2]
ENABLED = false
JWT_SECRET = $jwt_secret

[actions]
ENABLED = false

[packages]
ENABLED = false

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[cache]
ADAPTER = memory

[session]
PROVIDER = memory

[picture]
DISABLE_GRAVATAR = true
ENABLE_FEDERATED_AVATAR = false

[api]
ENABLE_SWAGGER = false

[log]
MODE = console
LEVEL = Info
ROOT_PATH = $DIR/log
INI
}

print_env() {
  local u
  u=$(url) || return 1
  [ -s "$TOKENFILE" ] || { echo "error: no API token yet: run '$0 start' first" >&2; return 1; }
  echo "export PADDOCK_E2E_FORGE_URL=$u"
  echo "export PADDOCK_E2E_FORGE_USER=$ADMIN_USER"
  echo "export PADDOCK_E2E_FORGE_TOKEN=$(cat "$TOKENFILE")"
}

port_free() { ! ss -ltnH "( sport = :$PORT )" | grep -q .; }

# new_token: a fresh API token for the admin (scope all), kept in $TOKENFILE (Gitea keeps only a hash).
new_token() {
  local t
  t=$(g admin user generate-access-token --username "$ADMIN_USER" \
    --token-name "paddock-e2e-$(date +%s%N)" --scopes all --raw 2>>"$LOG" | tail -n 1)
  [ -n "$t" ] || { log "error: could not make an API token (see $LOG)"; return 1; }
  (umask 077 && printf '%s\n' "$t" >"$TOKENFILE")
}

start() {
  local ip=${1:-} new i
  [ -n "$ip" ] || ip=$(cat "$HOSTFILE" 2>/dev/null || true)
  [ -n "$ip" ] || ip=$(bash "$here/cluster/cluster.sh" host-ip)
  build
  mkdir -p "$DIR/data" "$DIR/repos" "$DIR/log"
  ensure_secrets
  new=$(config "$ip")
  if running && [ "$(cat "$HOSTFILE" 2>/dev/null)" = "$ip" ] && [ "$(cat "$CONF" 2>/dev/null)" = "$new" ] &&
    healthy && token_ok; then
    print_env
    return 0
  fi
  stop
  if ! port_free; then
    log "error: port $PORT is in use (ss -ltnp 'sport = :$PORT'); another checkout's forge? Set PADDOCK_FORGE_PORT."
    return 1
  fi
  printf '%s\n' "$new" >"$CONF"
  echo "$ip" >"$HOSTFILE"
  # Database schema (created or migrated), admin user and token, before the server runs: the CLI
  # works on the SQLite file directly.
  g migrate >>"$LOG" 2>&1 || { log "error: gitea migrate failed; last log lines:"; tail -n 20 "$LOG" >&2; return 1; }
  if ! g admin user list --admin 2>>"$LOG" | awk 'NR > 1 {print $2}' | grep -qx "$ADMIN_USER"; then
    g admin user create --admin --username "$ADMIN_USER" --password "$ADMIN_PASSWORD" \
      --email "$ADMIN_EMAIL" --must-change-password=false >>"$LOG" 2>&1 ||
      { log "error: could not create the admin user; last log lines:"; tail -n 20 "$LOG" >&2; return 1; }
    rm -f "$TOKENFILE"
  fi
  # Repositories' git hooks call this binary by path: after a version change, point them at it.
  if [ "$(cat "$DIR/binary" 2>/dev/null)" != "$BIN" ]; then
    [ ! -s "$DIR/binary" ] || g admin regenerate hooks >>"$LOG" 2>&1 || true
    echo "$BIN" >"$DIR/binary"
  fi
  [ -s "$TOKENFILE" ] || new_token
  # setsid: its own session, so the caller's Ctrl-C or job control does not reach it.
  setsid "$BIN" web --config "$CONF" --work-path "$DIR" </dev/null >>"$LOG" 2>&1 9>&- &
  echo $! >"$PIDFILE"
  for i in $(seq 1 300); do
    if [ ! -d "/proc/$(cat "$PIDFILE")" ]; then
      log "error: gitea exited on $ip:$PORT; last log lines:"
      tail -n 20 "$LOG" >&2 || true
      echo "  is $ip an address of this machine, and port $PORT free? (ss -ltnp 'sport = :$PORT')" >&2
      rm -f "$PIDFILE"
      return 1
    fi
    if healthy && running; then
      token_ok || { new_token && token_ok; } || { log "error: the API refuses the token"; stop; return 1; }
      log "gitea $GITEA_VERSION ready at $(url) (pid $(cat "$PIDFILE"), log $LOG)"
      print_env
      return 0
    fi
    sleep 0.2
  done
  log "error: gitea did not become healthy on $ip:$PORT within 60 s; last log lines:"
  tail -n 30 "$LOG" >&2 || true
  stop
  return 1
}

stop() {
  local pid i
  [ -f "$PIDFILE" ] || return 0
  if pid=$(pid_of); then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

wipe() {
  stop
  rm -rf "$DIR"
}

# ---------------------------------------------------------------------------------------------
# selftest [HOST_IP]: what issue 20's tests will do, against the running forge (started if it is
# not): a repository through the API, a webhook to a local listener, a branch pushed with git over
# HTTP with the token, a pull request opened, listed and found by base/head, an issue labelled and
# commented on, and every expected delivery received with a valid HMAC signature. Loud on failure.
selftest() {
  local tmp repo owner=$ADMIN_USER secret=selftest-hook-secret rc=0 code hook_port ip listener_pid sha pr i
  eval "$(start "$@")"
  ip=$(host)
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-forge-selftest.XXXXXX")
  repo=selftest-$(date +%s)-$$
  trap "rm -rf '$tmp'" EXIT # shellcheck disable=SC2064
  expect() { # expect DESC COND...
    local desc=$1
    shift
    if "$@"; then echo "ok   - $desc"; else echo "FAIL - $desc"; rc=1; fi
  }
  jqf() { jq -e "$@" >/dev/null 2>&1; } # jqf FILTER FILE: the filter holds on the file

  # The listener: records each POST (headers, body) as a JSON line; port 0 (the kernel picks one).
  python3 - "$ip" "$tmp/deliveries" "$tmp/listener-port" <<'PY' >/dev/null 2>"$tmp/listener.log" &
import http.server, json, sys, time
ip, out, portfile = sys.argv[1:]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "a") as f:
            f.write(json.dumps({"t": time.time(), "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body.decode()}) + "\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer((ip, 0), H)
open(portfile + ".tmp", "w").write(str(s.server_port))
import os; os.rename(portfile + ".tmp", portfile)
s.serve_forever()
PY
  listener_pid=$!
  # shellcheck disable=SC2064 # expanded now: the locals are gone when the trap runs
  trap "kill $listener_pid 2>/dev/null || true; rm -rf '$tmp'" EXIT
  for i in $(seq 1 50); do [ -s "$tmp/listener-port" ] && break; sleep 0.1; done
  hook_port=$(cat "$tmp/listener-port" 2>/dev/null || true)
  expect "webhook listener on $ip:${hook_port:-?}" [ -n "$hook_port" ]

  api GET /version -o "$tmp/version" >/dev/null 2>&1 || true
  expect "GET /api/v1/version: $(jq -r .version "$tmp/version" 2>/dev/null)" jqf '.version | length > 0' "$tmp/version"
  api GET /user -o "$tmp/user" >/dev/null 2>&1 || true
  expect "the token authenticates as $owner (site admin)" jqf ".login == \"$owner\" and .is_admin" "$tmp/user"
  code=$(curl -sS --max-time 10 -H "Authorization: token not-a-token" -o /dev/null -w '%{http_code}' "$(url)/api/v1/user" || true)
  expect "a wrong token is refused (401)" [ "$code" = 401 ]

  code=$(api POST /user/repos -o "$tmp/repo" -w '%{http_code}' \
    -d "{\"name\":\"$repo\",\"auto_init\":true,\"default_branch\":\"main\",\"readme\":\"Default\",\"private\":false}" || true)
  expect "POST /user/repos $repo (auto_init, main): 201" [ "$code" = 201 ]
  expect "its clone URL is under ROOT_URL ($(jq -r .clone_url "$tmp/repo" 2>/dev/null))" \
    jqf ".clone_url == \"$(url)/$owner/$repo.git\"" "$tmp/repo"

  code=$(api POST "/repos/$owner/$repo/hooks" -o "$tmp/hook" -w '%{http_code}' -d "{
      \"type\": \"gitea\", \"active\": true,
      \"events\": [\"push\", \"pull_request\", \"issues\", \"issue_comment\"],
      \"config\": {\"url\": \"http://$ip:$hook_port/hook\", \"content_type\": \"json\", \"secret\": \"$secret\"}}" || true)
  expect "POST /repos/$owner/$repo/hooks (gitea, json, secret; push, pull_request, issues, issue_comment): 201" [ "$code" = 201 ]

  # git over HTTP with the token as the password, as Paddock's trusted push will.
  if git -c init.defaultBranch=main clone -q "http://$owner:$(cat "$TOKENFILE")@$ip:$PORT/$owner/$repo.git" "$tmp/clone" 2>"$tmp/git.log" &&
    (cd "$tmp/clone" && git checkout -q -b selftest && echo "selftest $(date -u +%FT%TZ)" >selftest.txt &&
      git add selftest.txt && git -c user.name=paddock -c user.email="$ADMIN_EMAIL" commit -q -m "selftest commit" &&
      git push -q origin selftest) >>"$tmp/git.log" 2>&1; then
    sha=$(git -C "$tmp/clone" rev-parse HEAD)
    expect "git clone + push of branch selftest over HTTP with the token" true
  else
    sha=none
    expect "git clone + push of branch selftest over HTTP with the token ($(tail -n 1 "$tmp/git.log"))" false
  fi
  api GET "/repos/$owner/$repo/branches/selftest" -o "$tmp/branch" >/dev/null 2>&1 || true
  expect "the API shows branch selftest at the pushed commit ${sha:0:12}" jqf ".commit.id == \"$sha\"" "$tmp/branch"

  code=$(api POST "/repos/$owner/$repo/pulls" -o "$tmp/pr" -w '%{http_code}' \
    -d '{"head":"selftest","base":"main","title":"selftest PR","body":"opened by e2e/forge.sh selftest"}' || true)
  pr=$(jq -r .number "$tmp/pr" 2>/dev/null || echo none)
  expect "POST /repos/$owner/$repo/pulls (selftest -> main): 201, #$pr $(jq -r .html_url "$tmp/pr" 2>/dev/null)" [ "$code" = 201 ]
  api GET "/repos/$owner/$repo/pulls?state=open" -o "$tmp/pulls" >/dev/null 2>&1 || true
  expect "GET /repos/$owner/$repo/pulls?state=open lists #$pr with head selftest" \
    jqf "[.[] | select(.number == $pr and .head.ref == \"selftest\" and .base.ref == \"main\")] | length == 1" "$tmp/pulls"
  api GET "/repos/$owner/$repo/pulls/main/selftest" -o "$tmp/pr-by-head" >/dev/null 2>&1 || true
  expect "GET /repos/$owner/$repo/pulls/main/selftest finds #$pr (the PR of a branch, for idempotent opening)" \
    jqf ".number == $pr" "$tmp/pr-by-head"
  code=$(api POST "/repos/$owner/$repo/pulls" -o "$tmp/pr2" -w '%{http_code}' \
    -d '{"head":"selftest","base":"main","title":"again"}' || true)
  expect "a second PR for the same head is refused (409)" [ "$code" = 409 ]

  code=$(api POST "/repos/$owner/$repo/labels" -o "$tmp/label" -w '%{http_code}' -d '{"name":"paddock","color":"#00aabb"}' || true)
  expect "POST /repos/$owner/$repo/labels paddock: 201" [ "$code" = 201 ]
  code=$(api POST "/repos/$owner/$repo/issues" -o "$tmp/issue" -w '%{http_code}' -d '{"title":"selftest issue","body":"fix the thing"}' || true)
  expect "POST /repos/$owner/$repo/issues: 201, #$(jq -r .number "$tmp/issue" 2>/dev/null)" [ "$code" = 201 ]
  code=$(api POST "/repos/$owner/$repo/issues/$(jq -r .number "$tmp/issue" 2>/dev/null)/labels" -o /dev/null -w '%{http_code}' \
    -d "{\"labels\":[$(jq -r .id "$tmp/label" 2>/dev/null || echo 0)]}" || true)
  expect "the issue labelled paddock: 200" [ "$code" = 200 ]
  code=$(api POST "/repos/$owner/$repo/issues/$(jq -r .number "$tmp/issue" 2>/dev/null)/comments" -o /dev/null -w '%{http_code}' \
    -d '{"body":"/paddock please fix it"}' || true)
  expect "a comment on the issue: 201" [ "$code" = 201 ]

  # Deliveries are queued and sent asynchronously: wait (up to 30 s) until each expected one came.
  local t_sent checks=() descs=() c n all
  t_sent=$(date +%s.%N)
  descs+=("push of refs/heads/selftest")
  checks+=('select(.event == "push" and .body.ref == "refs/heads/selftest")')
  descs+=("pull_request opened #$pr, head selftest")
  checks+=("select(.event == \"pull_request\" and .body.action == \"opened\" and .body.number == $pr and .body.pull_request.head.ref == \"selftest\")")
  descs+=("issues opened")
  checks+=('select(.event == "issues" and .body.action == "opened")')
  descs+=("issues label_updated, labels [paddock]")
  checks+=('select(.event == "issues" and .body.action == "label_updated" and ([.body.issue.labels[]?.name] | index("paddock")))')
  descs+=("issue_comment created, body '/paddock please fix it'")
  checks+=('select(.event == "issue_comment" and .body.action == "created" and .body.comment.body == "/paddock please fix it")')
  # deliveries FILTER: FILTER holds on [each delivery as {event, body (parsed)}].
  deliveries() {
    jq -se "[.[] | {event: .headers[\"x-gitea-event\"], body: (.body | fromjson)}] | $1" "$tmp/deliveries" >/dev/null 2>&1
  }
  all='true'
  for c in "${checks[@]}"; do all+=" and ([.[] | $c] | length >= 1)"; done
  for i in $(seq 1 300); do
    [ -s "$tmp/deliveries" ] && deliveries "$all" && break
    sleep 0.1
  done
  [ -s "$tmp/deliveries" ] || : >"$tmp/deliveries"
  echo "#    $(jq -s length "$tmp/deliveries") deliveries; the last one $(jq -s --argjson t0 "$t_sent" '(map(.t) | max // $t0) - $t0 | . * 10 | round / 10' "$tmp/deliveries") s after the last API call"
  for n in "${!checks[@]}"; do
    expect "webhook: ${descs[$n]} delivered" deliveries "[.[] | ${checks[$n]}] | length == 1"
  done
  expect "every delivery has a delivery id and a valid HMAC-SHA256 signature ($(jq -s length "$tmp/deliveries") deliveries)" \
    python3 - "$tmp/deliveries" "$secret" <<'PY'
import hashlib, hmac, json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ok = bool(recs)
for r in recs:
    want = hmac.new(sys.argv[2].encode(), r["body"].encode(), hashlib.sha256).hexdigest()
    h = r["headers"]
    if not (h.get("x-gitea-delivery") and hmac.compare_digest(h.get("x-gitea-signature", ""), want)
            and h.get("x-hub-signature-256") == "sha256=" + want):
        ok = False
        print("bad delivery:", h.get("x-gitea-event"), h.get("x-gitea-delivery"), file=sys.stderr)
sys.exit(0 if ok else 1)
PY

  code=$(api DELETE "/repos/$owner/$repo" -o /dev/null -w '%{http_code}' || true)
  expect "DELETE /repos/$owner/$repo: 204" [ "$code" = 204 ]
  if [ $rc != 0 ]; then
    echo "--- deliveries received:" >&2
    jq -c '{event: .headers["x-gitea-event"], action: (.body | fromjson | .action)}' "$tmp/deliveries" >&2 || true
    echo "--- git log:" >&2
    cat "$tmp/git.log" >&2 || true
    echo "--- last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2 || true
  fi
  echo "forge $(url) (gitea $GITEA_VERSION): $([ $rc = 0 ] && echo passed || echo FAILED)"
  return $rc
}

case "${1:-}" in
  build) build ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  env) print_env ;;
  url) url ;;
  wipe) wipe ;;
  selftest) shift; selftest "$@" ;;
  *) echo "usage: $0 build|start [HOST_IP]|stop|env|url|wipe|selftest [HOST_IP]" >&2; exit 2 ;;
esac
