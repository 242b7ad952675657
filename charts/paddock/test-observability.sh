#!/usr/bin/env bash
# Checks the chart's observability pieces offline:
#   - alerts/paddock-alerts.yaml: `promtool check rules`, `promtool test rules` with
#     alerts/paddock-alerts.test.yaml (each alert has a firing and a non-firing case), labels,
#     annotations, runbook anchors that exist in docs/observability.md
#   - dashboards/paddock.json: parses, Grafana conventions (schemaVersion, ${datasource}, pool and
#     agent variables), every target uses only metrics of the operator's contract and parses as
#     PromQL (promtool), e2e/dashboard-exprs.sh prints every target
#   - argocd/: the Lua health checks against sample objects (argocd/test.sh, real Lua 5.1)
#   - `helm template` with metrics.prometheusRule, metrics.grafanaDashboard, metrics.podMonitor
#     and argocd.healthChecks enabled: the PrometheusRule embeds the rules file verbatim, the
#     ConfigMaps embed the dashboard and the Lua scripts verbatim, the PodMonitor selects the
#     operator pod's metrics port; none of them is rendered by default
# Installs what it needs from Debian when a command is missing (promtool: prometheus; lua5.1 and
# lua-dkjson; jq; python3-yaml), quietly.
# Env: HELM (default /var/cache/paddock/bin/helm-v3.19.0/helm). Last line
# "observability: N passed, N failed"; exit 0 when everything passed.
# shellcheck disable=SC2016 # jq programs and PromQL in single quotes use $ literally
set -uo pipefail

HELM=${HELM:-/var/cache/paddock/bin/helm-v3.19.0/helm}
KUBE_VERSION=1.33.0
CHART=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CHART/../.." && pwd)
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; printf '%s\n' "$out" | tail -n 25 | sed 's/^/    /'; fi
}
finish() {
  echo "observability: $pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit
}

# ---------------------------------------------------------------- tools
apt_install() { # apt_install <package...>: quietly, as root (or with sudo)
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; }
}
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v lua5.1 >/dev/null || need+=(lua5.1)
lua5.1 -e 'require "dkjson"' >/dev/null 2>&1 || need+=(lua-dkjson)
command -v jq >/dev/null || need+=(jq)
PY=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  PY=/usr/bin/python3
  /usr/bin/python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "# installing from Debian: ${need[*]}"
  # The prometheus package's postinst may try to start the service; without systemd it cannot.
  apt_install "${need[@]}" || echo "# apt-get install ${need[*]} failed"
fi
for c in promtool lua5.1 jq; do
  command -v "$c" >/dev/null || { bad "$c is available"; finish; }
done
$PY -c 'import yaml' 2>/dev/null || { bad "python3 with PyYAML is available"; finish; }
[ -x "$HELM" ] || { bad "helm at $HELM (set HELM)"; finish; }
echo "# $(promtool --version 2>&1 | head -n 1); $(lua5.1 -v 2>&1); $(jq --version); helm $("$HELM" version --short)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/paddock-obs-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
RULES=$CHART/alerts/paddock-alerts.yaml
DASH=$CHART/dashboards/paddock.json

# The operator's metrics (docs/observability.md and the metrics contract); histograms expose
# _bucket/_count/_sum, counters end in _total.
CONTRACT="paddock_runs paddock_runs_completed_total paddock_run_duration_seconds paddock_run_start_seconds
paddock_queue_depth paddock_queue_wait_seconds paddock_approval_gates_pending paddock_approval_wait_seconds
paddock_model_tokens_total paddock_model_cost_usd_total paddock_reconciliations_total
paddock_reconcile_errors_total paddock_reconcile_duration_seconds paddock_reconciles_in_flight
paddock_kube_api_request_duration_seconds paddock_leader paddock_build_info
paddock_archive_backlog paddock_archive_uploads_total paddock_webhook_deliveries_total"
HISTOGRAMS="paddock_run_duration_seconds paddock_run_start_seconds paddock_queue_wait_seconds
paddock_approval_wait_seconds paddock_reconcile_duration_seconds paddock_kube_api_request_duration_seconds"

# ---------------------------------------------------------------- alert rules
check "promtool check rules alerts/paddock-alerts.yaml" promtool check rules "$RULES"
check "promtool test rules alerts/paddock-alerts.test.yaml" bash -c "cd '$CHART/alerts' && promtool test rules paddock-alerts.test.yaml"

cat >"$TMP/rules.py" <<'PY'
import re, sys, yaml
rules_path, tests_path, doc_path, contract, histos = sys.argv[1:6]
contract, histos = set(contract.split()), set(histos.split())
allowed = set(contract) | {h + s for h in histos for s in ("_bucket", "_count", "_sum")} | {"up"}
out = []
def check(cond, desc, detail=""):
    out.append(("ok   - " if cond else "FAIL - ") + desc + ("" if cond or not detail else "\n    " + str(detail)[:500]))
doc = open(doc_path).read() if doc_path != "-" else ""
def slug(h):  # GitHub's heading anchors
    h = h.strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")
anchors = {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", doc, re.M)}
rules = [r for g in yaml.safe_load(open(rules_path))["groups"] for r in g["rules"]]
alerts = {r["alert"]: r for r in rules if "alert" in r}
want = {"PaddockRunFailureRateHigh", "PaddockApprovalWaitingTooLong", "PaddockQueueStuck", "PaddockOperatorDown", "PaddockReconcileErrors",
        "PaddockArchiveBacklog", "PaddockArchiveUploadsFailing", "PaddockWebhookDeliveriesRefused"}
check(set(alerts) == want, f"the rules file has exactly the alerts {sorted(want)}", sorted(alerts))
KEYWORDS = {"sum", "by", "on", "and", "or", "unless", "rate", "increase", "absent", "ignoring", "without", "bool",
            "histogram_quantile", "count", "max", "min", "avg", "vector", "offset", "group_left", "group_right"}
def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    e = re.sub(r"\{[^}]*\}", "", e)                         # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)  # label lists
    e = re.sub(r"\[[^\]]*\]", "", e)                        # range selectors
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e))
    return {n for n in names if n not in KEYWORDS}
for name, r in sorted(alerts.items()):
    ann, lab = r.get("annotations", {}), r.get("labels", {})
    check(lab.get("severity") in ("warning", "critical"), f"{name}: severity label warning/critical", lab)
    check(ann.get("summary") and ann.get("description"), f"{name}: summary and description annotations")
    url = ann.get("runbook_url", "")
    m = re.match(r"^https://github\.com/paddock-dev/paddock/blob/main/docs/observability\.md#(.+)$", url)
    check(m, f"{name}: runbook_url points at docs/observability.md#<anchor>", url)
    if doc_path != "-":
        check(m and m.group(1) in anchors, f"{name}: runbook anchor #{m.group(1) if m else '?'} is a heading of docs/observability.md")
    check(r.get("for"), f"{name}: has a `for` duration")
    bad = metric_names(r["expr"]) - allowed
    check(not bad, f"{name}: expression uses only contract metrics (and up)", sorted(bad))
tests = yaml.safe_load(open(tests_path))
fires, quiet = set(), set()
for t in tests["tests"]:
    for a in t.get("alert_rule_test", []):
        (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
for name in sorted(want):
    check(name in fires, f"{name}: a unit test where it fires")
    check(name in quiet, f"{name}: a unit test where it does not fire")
print("\n".join(out))
PY
# count_lines: turns "ok   - "/"FAIL - " lines on stdin into checks.
count_lines() {
  local line
  while IFS= read -r line; do
    case $line in
      "ok   - "*) ok "${line#ok   - }" ;;
      "FAIL - "*) bad "${line#FAIL - }" ;;
      *) echo "$line" ;;
    esac
  done
}
if [ -f "$REPO/docs/observability.md" ]; then DOC=$REPO/docs/observability.md; else DOC=-; bad "docs/observability.md exists"; fi
count_lines < <($PY "$TMP/rules.py" "$RULES" "$CHART/alerts/paddock-alerts.test.yaml" "$DOC" "$CONTRACT" "$HISTOGRAMS" 2>&1 || echo "FAIL - rules.py crashed")

# ---------------------------------------------------------------- dashboard
check "dashboards/paddock.json parses (jq)" jq -e . "$DASH"
check "dashboard: schemaVersion 39, uid, title, no fixed id" jq -e '.schemaVersion == 39 and (.uid | length > 0) and .title == "Paddock" and .id == null' "$DASH"
check "dashboard: \${datasource} variable of type datasource, query prometheus" \
  jq -e '[.templating.list[] | select(.name == "datasource" and .type == "datasource" and .query == "prometheus")] | length == 1' "$DASH"
for v in pool agent; do
  check "dashboard: \$$v variable from label_values(..., $v), multi, All = .*" jq -e --arg v "$v" \
    '[.templating.list[] | select(.name == $v and .type == "query" and .datasource.uid == "${datasource}"
      and (.definition | test("^label_values\\(paddock_[a-z_]+, *" + $v + "\\)$")) and .includeAll and .multi and .allValue == ".*")] | length == 1' "$DASH"
done
check "dashboard: every panel and target uses the \${datasource} variable" jq -e \
  '[.panels[] | ., (.panels[]?) | select(.type != "row") | (.datasource.uid, (.targets[] | .datasource.uid))] | all(. == "${datasource}")' "$DASH"
check "dashboard: every non-row panel has targets, a title and a description" jq -e \
  '[.panels[] | ., (.panels[]?) | select(.type != "row")] | all((.targets | length > 0) and (.title | length > 0) and (.description | length > 0))' "$DASH"
check "dashboard: panel ids unique" jq -e '[.panels[] | ., (.panels[]?) | .id] | length == (unique | length)' "$DASH"
for metric in paddock_runs paddock_runs_completed_total paddock_run_duration_seconds_bucket paddock_run_start_seconds_bucket \
  paddock_queue_depth paddock_queue_wait_seconds_bucket paddock_approval_gates_pending paddock_approval_wait_seconds_bucket \
  paddock_model_tokens_total paddock_model_cost_usd_total paddock_reconciliations_total paddock_reconcile_errors_total \
  paddock_reconcile_duration_seconds_bucket paddock_kube_api_request_duration_seconds_bucket paddock_webhook_deliveries_total; do
  check "dashboard: a panel shows $metric" jq -e --arg m "$metric" \
    '[.panels[] | ., (.panels[]?) | .targets[]?.expr] | any(test("\\b" + $m + "\\{|\\b" + $m + "\\[|\\b" + $m + "\\)"))' "$DASH"
done
check "dashboard: start latency split by start (cold/warm), p50 and p99" jq -e \
  '[.panels[].targets[]?.expr | select(test("paddock_run_start_seconds_bucket"))] | (any(test("histogram_quantile\\(0.5,.*by \\(le, start\\)")) and any(test("histogram_quantile\\(0.99,.*by \\(le, start\\)")))' "$DASH"
check "dashboard: webhook deliveries by result" jq -e \
  '[.panels[] | ., (.panels[]?) | .targets[]?.expr | select(test("paddock_webhook_deliveries_total"))] | any(test("sum by \\(result\\)"))' "$DASH"
check "dashboard: run duration p50 and p95" jq -e \
  '[.panels[].targets[]?.expr | select(test("paddock_run_duration_seconds_bucket"))] | (any(test("^histogram_quantile\\(0.5,")) and any(test("^histogram_quantile\\(0.95,")))' "$DASH"

# Metrics used by the dashboard are the contract's; every expression parses as PromQL.
if exprs=$("$REPO/e2e/dashboard-exprs.sh" "$DASH" 2>"$TMP/exprs.err"); then
  ntargets=$(jq '[.panels[] | ., (.panels[]?) | .targets[]?.expr] | length' "$DASH")
  nlines=$(grep -c . <<<"$exprs")
  if [ "$nlines" = "$ntargets" ]; then ok "e2e/dashboard-exprs.sh prints one line per target ($nlines)"; else bad "e2e/dashboard-exprs.sh printed $nlines lines for $ntargets targets"; fi
  if grep -q '\$' <<<"$exprs"; then bad "dashboard-exprs.sh output has no \$ left"; else ok "dashboard-exprs.sh output has no \$ left"; fi
  printf '%s\n' "$exprs" | $PY -c '
import sys, json
print("groups:\n- name: dashboard\n  rules:")
for i, l in enumerate(sys.stdin.read().splitlines()):
    print("  - record: dashboard:expr_%d\n    expr: %s" % (i, json.dumps(l)))' >"$TMP/dash-rules.yaml"
  check "every dashboard expression parses as PromQL (promtool check rules)" promtool check rules "$TMP/dash-rules.yaml"
  count_lines < <(printf '%s\n' "$exprs" | $PY -c '
import re, sys
contract, histos = set(sys.argv[1].split()), set(sys.argv[2].split())
allowed = contract | {h + s for h in histos for s in ("_bucket", "_count", "_sum")}
KW = {"sum","by","on","and","or","unless","rate","increase","absent","ignoring","without","bool","histogram_quantile",
      "count","max","min","avg","vector","offset","group_left","group_right","topk","label_replace","clamp_min"}
used = set()
for e in sys.stdin.read().splitlines():
    e = re.sub(r"\"(?:[^\"\\\\]|\\\\.)*\"", "\"\"", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    used |= {n for n in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e) if n not in KW and not re.fullmatch(r"[0-9.e]+", n)}
bad = sorted(used - allowed)
print(("ok   - " if not bad else "FAIL - ") + "dashboard expressions use only contract metrics (%d names)" % len(used) + ("" if not bad else ": not in the contract: " + ", ".join(bad)))
' "$CONTRACT" "$HISTOGRAMS" 2>&1 || echo "FAIL - metric-name check crashed")
else
  bad "e2e/dashboard-exprs.sh exits 0"; sed 's/^/    /' "$TMP/exprs.err" | tail -n 10
fi

# ---------------------------------------------------------------- Argo CD health checks
argo_out=$(bash "$CHART/argocd/test.sh" 2>&1)
argo_rc=$?
argo_last=$(tail -n 1 <<<"$argo_out")
if [[ "$argo_last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  pass=$((pass + BASH_REMATCH[1])); fail=$((fail + BASH_REMATCH[2]))
  echo "# argocd/test.sh: $argo_last"
  grep '^FAIL' <<<"$argo_out" | sed 's/^/    /'
  [ "$argo_rc" = 0 ] || [ "${BASH_REMATCH[2]}" != 0 ] || bad "argocd/test.sh exit status $argo_rc with no failure counted"
else
  bad "argocd/test.sh ran"; tail -n 10 <<<"$argo_out" | sed 's/^/    /'
fi

# ---------------------------------------------------------------- helm template
render() { # render <name> <args...>: helm template into $TMP/<name>.yaml
  local name=$1
  shift
  check "helm template ($name)" bash -c "'$HELM' template paddock '$CHART' -n paddock-system --kube-version $KUBE_VERSION $* >'$TMP/$name.yaml'"
}
ALL=(--set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true --set metrics.podMonitor.enabled=true --set argocd.healthChecks.enabled=true)
check "helm lint --strict (all observability flags on)" "$HELM" lint --strict "$CHART" "${ALL[@]}"
render default
render all "${ALL[@]}"
cat >"$TMP/custom-values.yaml" <<'VALUES'
metrics:
  prometheusRule:
    labels: {release: kps}
    upSelector: 'job="paddock-operator-metrics",namespace="paddock-system"'
VALUES
render custom "${ALL[@]}" -f "$TMP/custom-values.yaml" \
  --set metrics.grafanaDashboard.namespace=monitoring --set metrics.grafanaDashboard.label=my_dashboards --set-string metrics.grafanaDashboard.labelValue=yes \
  --set metrics.grafanaDashboard.annotations.grafana_folder=Paddock --set metrics.podMonitor.labels.release=kps --set metrics.podMonitor.interval=15s \
  --set argocd.healthChecks.namespace=argocd --set metrics.service.enabled=false

cat >"$TMP/rendered.py" <<'PY'
import json, sys, yaml
tmp, chart = sys.argv[1], sys.argv[2]
out = []
def check(cond, desc, detail=""):
    out.append(("ok   - " if cond else "FAIL - ") + desc + ("" if cond or not detail else "\n    " + str(detail)[:600]))
def load(name):
    try:
        return [d for d in yaml.safe_load_all(open(f"{tmp}/{name}.yaml")) if d]
    except Exception as e:
        check(False, f"{name}: rendered YAML parses", e)
        return []
def of(docs, kind):
    return [d for d in docs if d.get("kind") == kind]
rules_text = open(f"{chart}/alerts/paddock-alerts.yaml").read()
rules = yaml.safe_load(rules_text)
dash_text = open(f"{chart}/dashboards/paddock.json").read()
lua_lib = open(f"{chart}/argocd/lib.lua").read()
lua = {k: lua_lib + open(f"{chart}/argocd/health-{k.lower()}.lua").read() for k in ("AgentRun", "ApprovalGate", "RunnerPool", "AgentRunSet", "AgentRunTrigger")}
snippet = yaml.safe_load(open(f"{chart}/argocd/argocd-cm-snippet.yaml"))

default = load("default")
for kind in ("PrometheusRule", "PodMonitor"):
    check(not of(default, kind), f"default: no {kind}")
check(not [d for d in of(default, "ConfigMap")], "default: no dashboard or Argo CD ConfigMap")

for scen in ("all", "custom"):
    docs = load(scen)
    dep = (of(docs, "Deployment") or [None])[0]
    sel = dep["spec"]["selector"]["matchLabels"] if dep else {}
    pr = of(docs, "PrometheusRule")
    check(len(pr) == 1, f"{scen}: one PrometheusRule")
    if pr:
        pr = pr[0]
        check(pr["apiVersion"] == "monitoring.coreos.com/v1" and pr["metadata"]["namespace"] == "paddock-system",
              f"{scen}: PrometheusRule is monitoring.coreos.com/v1 in the release namespace")
        if scen == "all":
            check(pr["spec"] == rules, f"{scen}: PrometheusRule spec equals alerts/paddock-alerts.yaml")
            open(f"{tmp}/rendered-rules.yaml", "w").write(yaml.safe_dump(pr["spec"]))
        else:
            check(pr["metadata"]["labels"].get("release") == "kps", f"{scen}: PrometheusRule has the labels value")
            want = json.loads(json.dumps(rules))
            for g in want["groups"]:
                for r in g["rules"]:
                    if r.get("alert") == "PaddockOperatorDown":
                        r["expr"] = r["expr"].replace('up{job=~".*paddock.*"}', 'up{job="paddock-operator-metrics",namespace="paddock-system"}')
            check(pr["spec"] == want, f"{scen}: upSelector replaces only PaddockOperatorDown's up{{...}} selector")
            open(f"{tmp}/rendered-rules-custom.yaml", "w").write(yaml.safe_dump(pr["spec"]))
    cms = {d["metadata"]["name"]: d for d in of(docs, "ConfigMap")}
    dcm = [d for n, d in cms.items() if n.endswith("-dashboard")]
    check(len(dcm) == 1, f"{scen}: one dashboard ConfigMap")
    if dcm:
        d = dcm[0]
        body = d.get("data", {}).get("paddock.json")
        check(body == dash_text, f"{scen}: dashboard ConfigMap holds dashboards/paddock.json verbatim")
        try:
            json.loads(body or ""); parsed = True
        except Exception:
            parsed = False
        check(parsed, f"{scen}: dashboard ConfigMap's paddock.json parses as JSON")
        if scen == "all":
            check(d["metadata"]["labels"].get("grafana_dashboard") == "1" and d["metadata"]["namespace"] == "paddock-system",
                  f"{scen}: dashboard ConfigMap labelled grafana_dashboard: \"1\" in the release namespace", d["metadata"])
        else:
            check(d["metadata"]["labels"].get("my_dashboards") == "yes" and "grafana_dashboard" not in d["metadata"]["labels"]
                  and d["metadata"]["namespace"] == "monitoring" and d["metadata"].get("annotations", {}).get("grafana_folder") == "Paddock",
                  f"{scen}: dashboard label key/value, namespace and annotations from values", d["metadata"])
    acm = [d for n, d in cms.items() if n.endswith("-argocd-health")]
    check(len(acm) == 1, f"{scen}: one Argo CD health ConfigMap")
    if acm:
        data = acm[0].get("data", {})
        want = {f"resource.customizations.health.paddock.dev_{k}": v for k, v in lua.items()}
        check(data == want, f"{scen}: Argo CD ConfigMap holds lib.lua + each of the five health-*.lua scripts verbatim", sorted(data))
        check(snippet.get("data") == want, f"{scen}: argocd-cm-snippet.yaml holds the same keys and scripts")
        check(acm[0]["metadata"]["namespace"] == ("paddock-system" if scen == "all" else "argocd"), f"{scen}: Argo CD ConfigMap namespace")
    pm = of(docs, "PodMonitor")
    check(len(pm) == 1, f"{scen}: one PodMonitor")
    if pm:
        pm = pm[0]
        ep = pm["spec"]["podMetricsEndpoints"]
        ports = [p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])] if dep else []
        check(pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["spec"]["selector"]["matchLabels"] == sel
              and pm["spec"]["namespaceSelector"] == {"matchNames": ["paddock-system"]},
              f"{scen}: PodMonitor selects the operator pod in the release namespace")
        check(len(ep) == 1 and ep[0]["port"] == "metrics" and "metrics" in ports and ep[0]["path"] == "/metrics",
              f"{scen}: PodMonitor scrapes /metrics on the pod's metrics port", ep)
        check(ep and ep[0].get("interval") == ("30s" if scen == "all" else "15s"), f"{scen}: PodMonitor interval from values")
        if scen == "custom":
            check(pm["metadata"]["labels"].get("release") == "kps", f"{scen}: PodMonitor has the labels value")
            check(not [s for s in of(docs, "Service") if s["metadata"]["name"].endswith("-operator-metrics")],
                  f"{scen}: PodMonitor works without the metrics Service")
        # The webhook receiver's NetworkPolicy isolates the operator pods for ingress: it must
        # still admit the port the PodMonitor scrapes, from anywhere.
        mport = {p["name"]: p["containerPort"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}.get("metrics") if dep else None
        nps = [n for n in of(docs, "NetworkPolicy") if n["spec"]["podSelector"].get("matchLabels") == sel]
        check(nps and all(any("from" not in r and {"protocol": "TCP", "port": mport} in r.get("ports", [])
                                for r in n["spec"].get("ingress") or []) for n in nps),
              f"{scen}: the NetworkPolicy on the operator pods admits the scraped metrics port {mport} from anywhere",
              [n["spec"] for n in nps])
print("\n".join(out))
PY
count_lines < <($PY "$TMP/rendered.py" "$TMP" "$CHART" 2>&1 || echo "FAIL - rendered.py crashed")
# The rules file, as embedded: text identical (not only the same YAML), and valid for Prometheus.
check "PrometheusRule embeds alerts/paddock-alerts.yaml byte for byte (after spec:, indented 2)" bash -c "
  '$HELM' template paddock '$CHART' -n paddock-system --kube-version $KUBE_VERSION --set metrics.prometheusRule.enabled=true \
    --show-only templates/prometheusrule.yaml | sed -n '/^spec:\$/,\$p' | tail -n +2 | sed 's/^  //' >'$TMP/embedded.txt' &&
  diff <(sed 's/[[:space:]]*\$//' '$RULES') <(sed 's/[[:space:]]*\$//' '$TMP/embedded.txt')"
[ -f "$TMP/rendered-rules.yaml" ] && check "the rendered PrometheusRule's groups pass promtool check rules" promtool check rules "$TMP/rendered-rules.yaml"
[ -f "$TMP/rendered-rules-custom.yaml" ] && check "the rendered PrometheusRule with a custom upSelector passes promtool check rules" promtool check rules "$TMP/rendered-rules-custom.yaml"
check "dashboard ConfigMap's JSON parses with jq" bash -c "
  '$HELM' template paddock '$CHART' -n x --kube-version $KUBE_VERSION --set metrics.grafanaDashboard.enabled=true \
    --show-only templates/dashboard-configmap.yaml | $PY -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)[\"data\"][\"paddock.json\"])' | jq -e '.schemaVersion == 39' >/dev/null"

# Refusals.
if out=$("$HELM" template paddock "$CHART" -n x --kube-version $KUBE_VERSION --set metrics.podMonitor.enabled=true --set metrics.serviceMonitor.enabled=true 2>&1); then
  bad "podMonitor together with serviceMonitor is refused (render succeeded)"
elif grep -q "enable only one of metrics.podMonitor and metrics.serviceMonitor" <<<"$out"; then
  ok "podMonitor together with serviceMonitor is refused"
else
  bad "podMonitor together with serviceMonitor is refused (wrong message)"; tail -n 3 <<<"$out" | sed 's/^/    /'
fi
if out=$("$HELM" template paddock "$CHART" -n x --kube-version $KUBE_VERSION --set metrics.prometheusRule.enabled=true --set-string metrics.prometheusRule.upSelector= 2>&1); then
  bad "an empty upSelector is refused (render succeeded)"
else
  ok "an empty upSelector is refused"
fi

# values.yaml: the new keys, off by default.
check "values.yaml: new observability keys exist with their defaults" $PY -c "
import yaml, sys
v = yaml.safe_load(open('$CHART/values.yaml'))
m, a = v['metrics'], v['argocd']
assert m['namespaceLabel'] is False, 'metrics.namespaceLabel'
assert m['prometheusRule'] == {'enabled': False, 'labels': {}, 'upSelector': 'job=~\".*paddock.*\"'}, m['prometheusRule']
assert m['podMonitor'] == {'enabled': False, 'interval': '30s', 'scrapeTimeout': '', 'labels': {}}, m['podMonitor']
assert m['grafanaDashboard'] == {'enabled': False, 'namespace': '', 'label': 'grafana_dashboard', 'labelValue': '1', 'annotations': {}}, m['grafanaDashboard']
assert a == {'healthChecks': {'enabled': False, 'namespace': ''}}, a
"

finish
