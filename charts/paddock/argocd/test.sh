#!/usr/bin/env bash
# Tests the Argo CD health checks (health-*.lua) with a real Lua interpreter: each sample object
# in samples/<kind>-<case>.<ExpectedStatus>.json is run through lib.lua + health-<kind>.lua
# (run-health.lua emulates Argo CD's call: the object as global `obj`, only
# base/string/table/math available), and the returned status must equal the expected one, with
# a non-empty message that, when the
# object has condition messages, includes one of them. Some states must say more (see
# must_say): an AgentRunSet waiting for a pick names its gate and `kubectl paddock pick <set>`,
# a succeeded one its winner; a healthy AgentRunTrigger its next due time and its active runs; a
# webhook trigger (spec.webhook) its receiver, /hooks/<namespace>/<name>, whatever its health (a
# suspended one also that deliveries are ignored).
# Also checks argocd-cm-snippet.yaml is what gen-snippet.sh generates from the scripts.
#
# Env: LUA (default: lua5.1, which Argo CD's gopher-lua matches, else lua5.4/lua); needs a JSON
# module for it (Debian lua-dkjson or lua-cjson). Last line "N passed, N failed"; exit 0 when
# everything passed.
set -uo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

LUA=${LUA:-}
if [ -z "$LUA" ]; then
  for l in lua5.1 lua5.4 lua5.3 lua; do
    if command -v "$l" >/dev/null; then LUA=$l; break; fi
  done
fi
if [ -z "$LUA" ] || ! "$LUA" -e 'if not pcall(require, "dkjson") then require("cjson") end' >/dev/null 2>&1; then
  echo "no Lua interpreter with a JSON module (apt-get install lua5.1 lua-dkjson)"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "# $("$LUA" -v 2>&1 | head -n 1)"

# jfield <sample> <key>...: the string or number at that path in the sample (e.g. status
# winner), empty when unset.
jfield() {
  F=$1 K="${*:2}" "$LUA" -e '
    local ok, json = pcall(require, "dkjson")
    if not ok then json = require("cjson") end
    local f = assert(io.open(os.getenv("F"), "r"))
    local v = json.decode(f:read("*a"))
    f:close()
    for k in string.gmatch(os.getenv("K"), "%S+") do
      if type(v) ~= "table" then v = nil break end
      v = v[k]
    end
    if type(v) == "string" or type(v) == "number" then io.write(tostring(v)) end'
}
# must_say <kind> <status> <sample>: what the message must contain besides a condition's message,
# one per line.
must_say() {
  case "$1:$2" in
    agentrunset:Suspended)
      echo "kubectl paddock pick"
      echo " $(jfield "$3" metadata name) <candidate>"
      jfield "$3" status gateName
      echo
      ;;
    agentrunset:Healthy)
      jfield "$3" status winner
      echo
      ;;
    agentruntrigger:Healthy)
      jfield "$3" status nextScheduleTime
      echo
      local n
      n=$(jfield "$3" status activeCount)
      if [ "$n" = 1 ]; then echo "1 run active"; else echo "${n:-0} runs active"; fi
      ;;
  esac
  # A webhook trigger: its receiver, in every state.
  if [ "$1" = agentruntrigger ] && [ -n "$(jfield "$3" spec webhook secretRef name)" ]; then
    echo "/hooks/$(jfield "$3" metadata namespace)/$(jfield "$3" metadata name)"
    [ "$2" = Suspended ] && echo "deliveries are ignored"
  fi
  return 0
}

valid="Healthy Progressing Degraded Suspended Missing Unknown"
declare -A seen=()
for sample in "$DIR"/samples/*.json; do
  base=$(basename "$sample" .json)      # agentrun-queued.Progressing
  want=${base##*.}                     # Progressing
  case_name=${base%.*}                 # agentrun-queued
  kind=${case_name%%-*}                # agentrun
  script=$DIR/health-$kind.lua
  seen[$kind:$want]=1
  if [ ! -f "$script" ]; then bad "$case_name: no script health-$kind.lua"; continue; fi
  if ! out=$("$LUA" "$DIR/run-health.lua" "$script" "$sample" 2>&1); then
    bad "$case_name: script error: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
    continue
  fi
  IFS=$'\x1f' read -r got msg cmsgs <<<"$out"
  if [[ " $valid " != *" $got "* ]]; then
    bad "$case_name: status '$got' is not an Argo CD health status"
  elif [ "$got" != "$want" ]; then
    bad "$case_name: status $got, want $want (message: $msg)"
  elif [ -z "${msg// /}" ]; then
    bad "$case_name: $got with an empty message"
  else
    from_cond=1
    if [ -n "$cmsgs" ]; then
      from_cond=0
      IFS='|' read -r -a arr <<<"$cmsgs"
      for m in "${arr[@]}"; do [[ "$msg" == *"$m"* ]] && from_cond=1; done
    fi
    missing=""
    while IFS= read -r m; do
      [ -n "${m// /}" ] && [[ "$msg" != *"$m"* ]] && missing+="${missing:+, }'$m'"
    done < <(must_say "$kind" "$got" "$sample")
    if [ "$from_cond" != 1 ]; then
      bad "$case_name: message '$msg' has none of the condition messages ($cmsgs)"
    elif [ -n "$missing" ]; then
      bad "$case_name: message '$msg' lacks $missing"
    else
      ok "$case_name: $got ($msg)"
    fi
  fi
done

# Every status each script can map to has a sample.
for need in agentrun:Progressing agentrun:Suspended agentrun:Healthy agentrun:Degraded \
  approvalgate:Progressing approvalgate:Suspended approvalgate:Healthy approvalgate:Degraded \
  runnerpool:Progressing runnerpool:Healthy runnerpool:Degraded \
  agentrunset:Progressing agentrunset:Suspended agentrunset:Healthy agentrunset:Degraded \
  agentruntrigger:Progressing agentruntrigger:Suspended agentruntrigger:Healthy agentruntrigger:Degraded; do
  if [ -n "${seen[$need]:-}" ]; then ok "a sample covers $need"; else bad "no sample for $need"; fi
done

# The snippet is generated from the scripts.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$DIR"/lib.lua "$DIR"/health-*.lua "$DIR/gen-snippet.sh" "$tmp/"
if bash "$tmp/gen-snippet.sh" && cmp -s "$tmp/argocd-cm-snippet.yaml" "$DIR/argocd-cm-snippet.yaml"; then
  ok "argocd-cm-snippet.yaml is up to date with lib.lua and health-*.lua (gen-snippet.sh)"
else
  bad "argocd-cm-snippet.yaml is out of date: run charts/paddock/argocd/gen-snippet.sh"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
