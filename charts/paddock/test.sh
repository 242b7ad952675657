#!/usr/bin/env bash
# Checks the Paddock Helm chart.
#
#   charts/paddock/test.sh            offline: helm lint --strict, helm template in several
#                                     configurations, and checks of the rendered YAML
#   charts/paddock/test.sh --cluster  also installs the chart into a real cluster (KUBECONFIG,
#                                     default /var/lib/paddock-cluster/admin.kubeconfig), checks
#                                     the operator's and users' permissions there with
#                                     `kubectl auth can-i` and real server-side applies, then
#                                     uninstalls and deletes what it created
#
# Env: HELM (default /var/cache/paddock/bin/helm-v3.19.0/helm), KUBECTL (default kubectl),
#      CHART_TEST_NS (default paddock-chart-test; must not exist before --cluster).
# Needs python3 with PyYAML for the rendered-YAML checks (without it, only grep checks run).
# Exit 0 when every check passed. The last line is "N passed, N failed".
set -uo pipefail

HELM=${HELM:-/var/cache/paddock/bin/helm-v3.19.0/helm}
KUBECTL=${KUBECTL:-kubectl}
KUBE_VERSION=1.33.0 # helm template's default (v1.20) is below the chart's kubeVersion
CHART=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER=0
[ "${1:-}" = "--cluster" ] && CLUSTER=1

pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "ok   - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
skipped() { skip=$((skip + 1)); echo "skip - $1"; }
# check <description> <command...>: passes when the command exits 0; shows its output if not.
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'; fi
}
# check_fails <description> <expected-output-regex> <command...>: passes when the command fails
# and its output matches.
check_fails() {
  local desc=$1 want=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    bad "$desc (command succeeded)"
  elif grep -Eq -- "$want" <<<"$out"; then
    ok "$desc"
  else
    bad "$desc (output lacks /$want/)"
    printf '%s\n' "$out" | tail -n 10 | sed 's/^/    /'
  fi
}

[ -x "$HELM" ] || { echo "helm not found at $HELM (set HELM)"; echo "0 passed, 1 failed"; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/paddock-chart-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
HAVE_YAML=0
python3 -c 'import yaml' 2>/dev/null && HAVE_YAML=1

# ---------------------------------------------------------------- the rendered-YAML checker
# check.py <scenario> <manifest> <crds.yaml>: prints "ok   - ..." / "FAIL - ..." lines.
cat >"$TMP/check.py" <<'PY'
import base64, sys, yaml

scenario, manifest, crds_path = sys.argv[1], sys.argv[2], sys.argv[3]
results = []
def check(cond, desc, detail=""):
    results.append((bool(cond), desc, detail))

class UniqueKeyLoader(yaml.SafeLoader):
    """Refuses duplicate mapping keys (the API server's strict decoding refuses them too)."""
def _mapping(loader, node, deep=False):
    seen = set()
    for k, _ in node.value:
        key = loader.construct_object(k, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", k.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)
UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

try:
    docs = [d for d in yaml.load_all(open(manifest), Loader=UniqueKeyLoader) if d]
    check(True, f"{scenario}: rendered YAML parses ({len(docs)} objects, no duplicate keys)")
except Exception as e:  # a parse failure makes every later check meaningless
    check(False, f"{scenario}: rendered YAML parses", str(e))
    docs = []
crds = [d for d in yaml.safe_load_all(open(crds_path)) if d]

def kinds(kind):
    return [d for d in docs if d.get("kind") == kind]
def one(kind, name_suffix=""):
    xs = [d for d in kinds(kind) if d["metadata"]["name"].endswith(name_suffix)]
    return xs[0] if len(xs) == 1 else None

for d in docs:
    check(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"),
          f"{scenario}: {d.get('kind')}/{d.get('metadata', {}).get('name')} has apiVersion, kind, name")

# The operator's rules, exactly (from operator/src; see templates/rbac.yaml).
EXPECTED_OPERATOR = sorted([
    (("paddock.dev",), ("agentruns", "agentrunsets", "agentruntriggers", "approvalgates", "runnerpools"), ("get", "list", "watch")),
    (("paddock.dev",), ("approvalgates",), ("create",)),
    (("paddock.dev",), ("agentruns",), ("create", "patch", "delete")),
    (("paddock.dev",), ("agentruns/status", "agentrunsets/status", "agentruntriggers/status", "approvalgates/status", "runnerpools/status"), ("patch",)),
    (("paddock.dev",), ("agentruns/finalizers", "agentrunsets/finalizers", "agentruntriggers/finalizers", "runnerpools/finalizers"), ("update",)),
    (("paddock.dev",), ("runmessages",), ("get", "list", "watch", "patch")),
    (("paddock.dev",), ("runmessages/status",), ("patch",)),
    (("",), ("pods",), ("get", "list", "watch", "create", "patch", "delete")),
    (("",), ("pods/log",), ("get",)),
    (("apps",), ("deployments",), ("get", "list", "watch", "create", "patch")),
    (("",), ("services",), ("get", "list", "watch", "create", "patch")),
    (("networking.k8s.io",), ("networkpolicies",), ("get", "list", "watch", "create", "patch")),
    (("",), ("configmaps",), ("get", "create", "patch")),
    (("events.k8s.io",), ("events",), ("create", "patch")),
    (("",), ("events",), ("list",)),
    (("",), ("secrets",), ("get",)),
])
EXPECTED_EDIT = sorted([
    (("paddock.dev",), ("agentruns", "agentrunsets", "agentruntriggers", "runmessages"), ("create", "update", "patch", "delete")),
    (("paddock.dev",), ("approvalgates",), ("get", "list", "watch", "patch")),
    (("paddock.dev",), ("runnerpools",), ("get", "list", "watch")),
])
EXPECTED_VIEW = [(("paddock.dev",), ("agentruns", "agentrunsets", "agentruntriggers", "approvalgates", "runmessages", "runnerpools"), ("get", "list", "watch"))]
EXPECTED_LEASES = [(("coordination.k8s.io",), ("leases",), ("get", "create", "update"))]
def norm(rules):
    return sorted((tuple(r.get("apiGroups", [])), tuple(r.get("resources", [])), tuple(r.get("verbs", []))) for r in rules or [])

# Every Role/ClusterRole: no wildcard, no escalation verbs, no non-resource URLs; on Secrets only
# the operator's `get` (a run's forge token, a webhook trigger's secret), never list/watch.
for r in kinds("Role") + kinds("ClusterRole"):
    name = f"{r['kind']}/{r['metadata']['name']}"
    rules = r.get("rules") or []
    check(rules, f"{scenario}: {name} has rules")
    wild = [x for x in rules if any("*" in f for f in x.get("apiGroups", []) + x.get("resources", []) + x.get("verbs", []) + x.get("resourceNames", []))]
    check(not wild, f"{scenario}: {name}: no '*' in any rule", str(wild))
    sec = [x for x in rules if any(res == "secrets" or res.startswith("secrets/") for res in x.get("resources", []))]
    if r["metadata"]["name"].endswith("-operator"):
        check(sec == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
              f"{scenario}: {name}: on secrets only get (no list, watch, resourceNames or subresources)", str(sec))
    else:
        check(not sec, f"{scenario}: {name}: no rule on secrets", str(sec))
    esc = [x for x in rules if set(x.get("verbs", [])) & {"escalate", "bind", "impersonate", "deletecollection"}]
    check(not esc, f"{scenario}: {name}: no escalate/bind/impersonate/deletecollection", str(esc))
    nru = [x for x in rules if "nonResourceURLs" in x]
    check(not nru, f"{scenario}: {name}: no nonResourceURLs", str(nru))

def expect_kinds(want):
    got = {}
    for d in docs:
        got[d["kind"]] = got.get(d["kind"], 0) + 1
    check(got == want, f"{scenario}: rendered kinds are {sorted(want.items())}", f"got {sorted(got.items())}")

# Schema check of paddock.dev objects against the CRDs: known fields and basic types.
crd_schemas = {}
for c in crds:
    for v in c["spec"]["versions"]:
        crd_schemas[(c["spec"]["group"] + "/" + v["name"], c["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
def schema_errors(obj, sch, path):
    errs = []
    if sch.get("x-kubernetes-preserve-unknown-fields") or sch.get("x-kubernetes-int-or-string"):
        return errs
    t = sch.get("type")
    pytypes = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    if t in pytypes and not isinstance(obj, pytypes[t]) or (t == "integer" and isinstance(obj, bool)):
        return [f"{path}: want {t}, got {type(obj).__name__}"]
    if "enum" in sch and obj not in sch["enum"]:
        errs.append(f"{path}: {obj!r} not in {sch['enum']}")
    if isinstance(obj, dict) and path != ".metadata":
        props = sch.get("properties")
        if path == "" and props is not None:  # the API server adds these to every CRD schema
            props = dict(props, apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
        if props is not None:
            for k, v in obj.items():
                if k in props:
                    errs += schema_errors(v, props[k], f"{path}.{k}")
                elif not sch.get("additionalProperties"):
                    errs.append(f"{path}.{k}: unknown field")
            for k in sch.get("required", []):
                if k not in obj:
                    errs.append(f"{path}.{k}: required")
        elif isinstance(sch.get("additionalProperties"), dict):
            for k, v in obj.items():
                errs += schema_errors(v, sch["additionalProperties"], f"{path}.{k}")
    if isinstance(obj, list) and isinstance(sch.get("items"), dict):
        for i, v in enumerate(obj):
            errs += schema_errors(v, sch["items"], f"{path}[{i}]")
    return errs
for d in docs:
    key = (d.get("apiVersion"), d.get("kind"))
    if d.get("apiVersion", "").startswith("paddock.dev/"):
        sch = crd_schemas.get(key)
        check(sch, f"{scenario}: {key} is defined by crds/crds.yaml")
        if sch:
            errs = schema_errors(d, sch, "")
            check(not errs, f"{scenario}: {d['kind']}/{d['metadata']['name']} matches the CRD schema", "; ".join(errs))

dep = one("Deployment")
check(dep, f"{scenario}: exactly one Deployment")
if dep:
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    cs = pod["containers"]
    c = cs[0]
    env = {e["name"]: e for e in c.get("env", [])}
    sel = spec["selector"]["matchLabels"]
    if scenario == "ha":
        check(spec.get("replicas") == 2, f"{scenario}: operator has 2 replicas")
        check(spec.get("strategy") == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
              f"{scenario}: RollingUpdate maxSurge 1, maxUnavailable 0 (leader election)", str(spec.get("strategy")))
        check(env.get("PADDOCK_LEADER_ELECT", {}).get("value") == "true", f"{scenario}: PADDOCK_LEADER_ELECT=true")
    else:
        check(spec.get("replicas") == 1, f"{scenario}: operator has 1 replica")
        check(spec.get("strategy", {}).get("type") == "Recreate", f"{scenario}: Recreate strategy (never two operators)")
        check(env.get("PADDOCK_LEADER_ELECT", {}).get("value") == "false", f"{scenario}: PADDOCK_LEADER_ELECT=false")
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          f"{scenario}: POD_NAMESPACE from fieldRef metadata.namespace (the Lease's namespace)")
    check(all(spec["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items()),
          f"{scenario}: pod labels match the selector")
    check(len(cs) == 1 and c.get("args") == ["run"], f"{scenario}: one container, args [run]")
    check(c.get("image") == "localhost/paddock/operator:dev" and c.get("imagePullPolicy") == "IfNotPresent",
          f"{scenario}: image localhost/paddock/operator:dev IfNotPresent", f"{c.get('image')} {c.get('imagePullPolicy')}")
    check(env.get("PADDOCK_METRICS_ADDR", {}).get("value") == "0.0.0.0:8080", f"{scenario}: PADDOCK_METRICS_ADDR=0.0.0.0:8080")
    check(env.get("PADDOCK_LOG_FORMAT", {}).get("value") in ("text", "json"), f"{scenario}: PADDOCK_LOG_FORMAT set")
    check("RUST_LOG" in env, f"{scenario}: RUST_LOG set")
    limits = ("8", "0") if scenario == "kueue" else ("64", "256")
    got = (env.get("PADDOCK_MAX_CONCURRENT_RECONCILES", {}).get("value"), env.get("PADDOCK_MAX_LOG_FOLLOWERS", {}).get("value"))
    check(got == limits, f"{scenario}: PADDOCK_MAX_CONCURRENT_RECONCILES={limits[0]}, PADDOCK_MAX_LOG_FOLLOWERS={limits[1]}", str(got))
    steps = "true" if scenario == "kueue" else "false"
    check(env.get("PADDOCK_STEP_EVENTS", {}).get("value") == steps, f"{scenario}: PADDOCK_STEP_EVENTS={steps}",
          str(env.get("PADDOCK_STEP_EVENTS")))
    # The warm-claim push source must select exactly the operator's pods (its selector labels).
    want_selector = ",".join(f"{k}={v}" for k, v in sorted(dep["spec"]["selector"]["matchLabels"].items()))
    got_selector = ",".join(sorted(env.get("PADDOCK_OPERATOR_POD_SELECTOR", {}).get("value", "").split(",")))
    check(got_selector == want_selector, f"{scenario}: PADDOCK_OPERATOR_POD_SELECTOR is the Deployment's selector", got_selector)
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          f"{scenario}: POD_NAME from fieldRef metadata.name")
    ports = c.get("ports", [])
    hooks_on = scenario != "webhooks-off"
    hport = 9000 if scenario == "webhooks-nodeport" else 8090
    want_ports = [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    if hooks_on:
        want_ports.append({"name": "webhooks", "containerPort": hport, "protocol": "TCP"})
    check(ports == want_ports, f"{scenario}: ports: 8080 named metrics" + (f", {hport} named webhooks" if hooks_on else " only (no receiver)"), str(ports))
    check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{scenario}: liveness /healthz")
    check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{scenario}: readiness /readyz")
    check(c.get("resources") == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
          f"{scenario}: resources 100m/128Mi .. 1/1Gi", str(c.get("resources")))
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532 and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          f"{scenario}: pod securityContext non-root 65532, seccomp RuntimeDefault", str(psc))
    check(csc.get("runAsNonRoot") is True and csc.get("runAsUser") == 65532 and csc.get("readOnlyRootFilesystem") is True
          and csc.get("allowPrivilegeEscalation") is False and csc.get("capabilities") == {"drop": ["ALL"]}
          and csc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          f"{scenario}: container securityContext restricted (ro root, no escalation, drop ALL)", str(csc))
    check(pod.get("automountServiceAccountToken") is True, f"{scenario}: automountServiceAccountToken true")
    sa = one("ServiceAccount")
    check(sa and pod.get("serviceAccountName") == sa["metadata"]["name"], f"{scenario}: pod uses the chart's ServiceAccount")
    svc = one("Service", "-operator-metrics")
    check(scenario == "no-pool" and svc is None or svc and svc["spec"]["ports"][0]["port"] == 8080 and svc["spec"]["ports"][0]["targetPort"] == "metrics"
          and svc["spec"]["selector"] == sel, f"{scenario}: metrics Service on 8080 selects the operator")
    sm = one("ServiceMonitor")
    if sm:
        ep = sm["spec"]["endpoints"][0]
        check(ep["port"] == "metrics" and ep["path"] == "/metrics" and sm["spec"]["selector"]["matchLabels"] == sel,
              f"{scenario}: ServiceMonitor scrapes /metrics on port metrics of the Service")

    # The forge webhook receiver (templates/webhooks-service.yaml, webhooks-networkpolicy.yaml)
    # and the console URL.
    check(env.get("PADDOCK_WEBHOOK_ADDR", {}).get("value") == (f"0.0.0.0:{hport}" if hooks_on else ""),
          f"{scenario}: PADDOCK_WEBHOOK_ADDR=" + (f"0.0.0.0:{hport}" if hooks_on else '"" (receiver off)'), str(env.get("PADDOCK_WEBHOOK_ADDR")))
    console = "https://paddock.example.com" if scenario == "webhooks-nodeport" else None
    check(env.get("PADDOCK_CONSOLE_URL", {}).get("value") == console,
          f"{scenario}: PADDOCK_CONSOLE_URL " + (f"= {console}" if console else "unset (consoleURL empty)"), str(env.get("PADDOCK_CONSOLE_URL")))
    wsvc, wnp = one("Service", "-webhooks"), one("NetworkPolicy", "-webhooks")
    if not hooks_on:
        check(wsvc is None and not kinds("NetworkPolicy"), f"{scenario}: webhooks.enabled=false: no webhooks Service, no NetworkPolicy")
    else:
        wmeta = (wsvc or {}).get("metadata", {})
        check(wsvc and wmeta["name"] == "paddock-webhooks" and wmeta["namespace"] == "paddock-system" and wsvc["spec"]["selector"] == sel,
              f"{scenario}: Service paddock-webhooks in the release namespace selects the operator pods", str(wsvc and wsvc["spec"].get("selector")))
        sp = (wsvc or {}).get("spec", {})
        if scenario == "webhooks-nodeport":
            check(sp.get("type") == "NodePort" and sp.get("ports") == [{"name": "webhooks", "port": 8443, "targetPort": "webhooks",
                  "protocol": "TCP", "nodePort": 30090}] and wmeta.get("annotations") == {"example.com/lb": "forge"},
                  f"{scenario}: webhooks Service NodePort 30090, port 8443 -> webhooks, annotations from values", str((sp, wmeta.get("annotations"))))
        else:
            check(sp.get("type") == "ClusterIP" and sp.get("ports") == [{"name": "webhooks", "port": 80, "targetPort": "webhooks", "protocol": "TCP"}]
                  and "annotations" not in wmeta,
                  f"{scenario}: webhooks Service ClusterIP, port 80 -> container port webhooks, no nodePort", str(sp))
        ing = (wnp or {}).get("spec", {}).get("ingress") or []
        check(wnp and wnp["apiVersion"] == "networking.k8s.io/v1" and wnp["metadata"]["namespace"] == "paddock-system"
              and wnp["spec"]["podSelector"] == {"matchLabels": sel} and wnp["spec"]["policyTypes"] == ["Ingress"] and len(ing) == 2,
              f"{scenario}: NetworkPolicy paddock-webhooks selects the operator pods, Ingress only, two rules", str(wnp and wnp["spec"]))
        hook_rules = [r for r in ing if r.get("ports") == [{"protocol": "TCP", "port": hport}]]
        want_from = ([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                      {"ipBlock": {"cidr": "140.82.112.0/20"}}] if scenario == "webhooks-nodeport" else None)
        check(len(hook_rules) == 1 and hook_rules[0].get("from") == want_from,
              f"{scenario}: NetworkPolicy admits the receiver port {hport} " + ("from webhooks.networkPolicy.from" if want_from else "from anywhere (no from)"),
              str(hook_rules))
        met_rules = [r for r in ing if r.get("ports") == [{"protocol": "TCP", "port": 8080}]]
        check(len(met_rules) == 1 and "from" not in met_rules[0],
              f"{scenario}: NetworkPolicy admits the metrics/health port 8080 from anywhere (Prometheus, kubelet probes)", str(met_rules))
        # Nothing the pod listens on or is probed on is cut off by the policy.
        open_ports = {p["port"] for r in ing for p in r.get("ports", [])}
        check({p["containerPort"] for p in ports} <= open_ports, f"{scenario}: every container port is admitted by the NetworkPolicy",
              str((ports, open_ports)))
        byname = {p["name"]: p["containerPort"] for p in ports}
        probe_ports = {byname.get(c.get(pr, {}).get("httpGet", {}).get("port"), c.get(pr, {}).get("httpGet", {}).get("port"))
                       for pr in ("livenessProbe", "readinessProbe")}
        anywhere = {p["port"] for r in ing if "from" not in r for p in r.get("ports", [])}
        check(probe_ports and probe_ports <= anywhere, f"{scenario}: the probes' port is admitted from anywhere", str((probe_ports, anywhere)))

    # The evidence signing key (templates/evidence-key.yaml) and the archive's settings.
    c = cs[0]
    env = {e["name"]: e for e in c.get("env", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    ev = mounts.get("evidence-key", {})
    check(ev.get("readOnly") is True and ev.get("mountPath") == "/etc/paddock/evidence-key"
          and env.get("PADDOCK_EVIDENCE_KEY_FILE", {}).get("value") == "/etc/paddock/evidence-key/private.pem",
          f"{scenario}: PADDOCK_EVIDENCE_KEY_FILE is private.pem of the read-only evidence-key mount", str(ev))
    evs = vols.get("evidence-key", {}).get("secret", {})
    check(evs.get("defaultMode") == 0o440 and evs.get("secretName") == ("my-evidence-key" if scenario == "no-pool" else "paddock-evidence-key"),
          f"{scenario}: evidence-key volume: its Secret, mode 0440", str(evs))
    archive_env = {k: v.get("value") for k, v in env.items() if k.startswith("PADDOCK_ARCHIVE_")}
    if scenario == "archive":
        check(archive_env == {"PADDOCK_ARCHIVE_URL": "s3://evidence/team-a", "PADDOCK_ARCHIVE_ENDPOINT": "http://minio.test:9000",
                              "PADDOCK_ARCHIVE_REGION": "eu-west-3", "PADDOCK_ARCHIVE_ALLOW_HTTP": "true"},
              f"{scenario}: PADDOCK_ARCHIVE_URL, _ENDPOINT, _REGION, _ALLOW_HTTP from archive.*", str(archive_env))
        check(c.get("envFrom") == [{"secretRef": {"name": "archive-creds"}}],
              f"{scenario}: archive.credentialsSecret loaded with envFrom", str(c.get("envFrom")))
    elif scenario == "kueue":  # also sets archive.url alone: AWS, https, ambient credentials
        check(archive_env == {"PADDOCK_ARCHIVE_URL": "s3://evidence", "PADDOCK_ARCHIVE_REGION": "us-east-1",
                              "PADDOCK_ARCHIVE_ALLOW_HTTP": "false"},
              f"{scenario}: archive.url alone: URL, default region, no endpoint, ALLOW_HTTP false", str(archive_env))
        check("envFrom" not in c, f"{scenario}: no envFrom without archive.credentialsSecret", str(c.get("envFrom")))
    else:
        check(not archive_env and "envFrom" not in c, f"{scenario}: no archive: no PADDOCK_ARCHIVE_* env, no envFrom",
              str((archive_env, c.get("envFrom"))))

def binding_ok(b, role):
    return (b and role and b["roleRef"]["name"] == role["metadata"]["name"] and b["roleRef"]["kind"] == role["kind"]
            and b["subjects"] == [{"kind": "ServiceAccount", "name": "paddock-operator", "namespace": "paddock-system"}])

pools = kinds("RunnerPool")
if scenario == "default":
    key = one("Secret", "-verdict-key")
    pem = base64.b64decode((key or {}).get("data", {}).get("private.pem", "")).decode()
    check(key and pem.startswith("-----BEGIN PRIVATE KEY-----") and key["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep",
          f"{scenario}: the verdict signing key Secret holds a PEM private key and is kept on uninstall", pem[:40])
    mounts = {m["name"]: m for m in pod["containers"][0].get("volumeMounts") or []}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    check(mounts.get("verdict-key", {}).get("readOnly") and env.get("PADDOCK_VERDICT_KEY_FILE") == mounts["verdict-key"]["mountPath"] + "/private.pem",
          f"{scenario}: the operator reads the key from its read-only mount", str(mounts.get("verdict-key")))
    ekey = one("Secret", "-evidence-key")
    epem = base64.b64decode((ekey or {}).get("data", {}).get("private.pem", "")).decode()
    check(ekey and epem.startswith("-----BEGIN PRIVATE KEY-----") and epem != pem
          and ekey["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep",
          f"{scenario}: the evidence signing key Secret holds its own PEM private key and is kept on uninstall", epem[:40])
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
                  "Deployment": 1, "Service": 2, "NetworkPolicy": 1, "RunnerPool": 1, "ValidatingAdmissionPolicy": 2,
                  "ValidatingAdmissionPolicyBinding": 2})
    op = one("ClusterRole", "-operator")
    check(op and norm(op["rules"]) == EXPECTED_OPERATOR, f"{scenario}: operator ClusterRole has exactly the expected rules",
          str(op and norm(op["rules"])))
    check(binding_ok(one("ClusterRoleBinding"), op), f"{scenario}: ClusterRoleBinding binds it to the ServiceAccount")
    ed, vw = one("ClusterRole", "-edit"), one("ClusterRole", "-view")
    check(ed and norm(ed["rules"]) == EXPECTED_EDIT and ed["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-edit") == "true",
          f"{scenario}: edit ClusterRole aggregates exactly agentruns and runmessages c/u/p/d, approvalgates g/l/w/patch, runnerpools g/l/w")
    check(vw and norm(vw["rules"]) == EXPECTED_VIEW and vw["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-view") == "true",
          f"{scenario}: view ClusterRole aggregates get/list/watch on the six kinds")
    check("PADDOCK_WATCH_NAMESPACE" not in env, f"{scenario}: no PADDOCK_WATCH_NAMESPACE (all namespaces)")
    p = pools[0] if len(pools) == 1 else None
    check(p and p["metadata"]["name"] == "default" and p["metadata"]["namespace"] == "paddock-system",
          f"{scenario}: RunnerPool default in the release namespace")
    check(p and p["spec"] == {"maxConcurrentRuns": 4, "template": {"image": "localhost/paddock/runner:dev", "imagePullPolicy": "IfNotPresent"}},
          f"{scenario}: RunnerPool spec: runner:dev IfNotPresent, maxConcurrentRuns 4, all agents", str(p and p["spec"]))
elif scenario == "watchns-servicemonitor":
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 2, "Role": 3, "RoleBinding": 3, "Deployment": 1, "Service": 2,
                  "NetworkPolicy": 1, "ServiceMonitor": 1, "RunnerPool": 1, "ValidatingAdmissionPolicy": 2, "ValidatingAdmissionPolicyBinding": 2})
    role = one("Role", "-operator")
    check(role and role["metadata"]["namespace"] == "team-a" and norm(role["rules"]) == EXPECTED_OPERATOR,
          f"{scenario}: operator Role in team-a has exactly the expected rules")
    rb = one("RoleBinding", "-operator")
    check(binding_ok(rb, role) and rb["metadata"]["namespace"] == "team-a", f"{scenario}: RoleBinding in team-a binds it to the ServiceAccount")
    check(not any(r["metadata"]["name"].endswith("-operator") for r in kinds("ClusterRole")), f"{scenario}: no operator ClusterRole")
    check(env.get("PADDOCK_WATCH_NAMESPACE", {}).get("value") == "team-a", f"{scenario}: PADDOCK_WATCH_NAMESPACE=team-a")
    pub = one("Role", "-evidence-publisher")
    check(pub and pub["metadata"]["namespace"] == "paddock-system" and pub["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
          "resourceNames": ["paddock-evidence"], "verbs": ["get", "create", "patch"]}],
          f"{scenario}: evidence-publisher Role: the operator may get/create/patch only ConfigMap paddock-evidence in the release namespace",
          str(pub and pub["rules"]))
    check(binding_ok(one("RoleBinding", "-evidence-publisher"), pub), f"{scenario}: evidence-publisher RoleBinding binds it to the ServiceAccount")
    check(len(pools) == 1 and pools[0]["metadata"]["namespace"] == "team-a", f"{scenario}: RunnerPool in the watched namespace")
    for suffix in ("-approval-gates", "-run-messages"):
        vb = one("ValidatingAdmissionPolicyBinding", suffix)
        check(vb and vb["spec"].get("matchResources") == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}},
              f"{scenario}: policy binding {suffix[1:]} bound to the watched namespace only", str(vb and vb["spec"].get("matchResources")))
elif scenario == "pools-leases":
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1, "Role": 2, "RoleBinding": 2,
                  "Deployment": 1, "Service": 2, "NetworkPolicy": 1, "RunnerPool": 2, "ValidatingAdmissionPolicy": 2,
                  "ValidatingAdmissionPolicyBinding": 2})
    le = one("Role", "-leader-election")
    check(le and le["metadata"]["namespace"] == "paddock-system" and norm(le["rules"]) == EXPECTED_LEASES,
          f"{scenario}: leader-election Role: leases get/create/update in the release namespace")
    check(binding_ok(one("RoleBinding", "-leader-election"), le), f"{scenario}: leader-election RoleBinding")
    check(sorted(p["metadata"]["namespace"] for p in pools) == ["team-a", "team-b"], f"{scenario}: one pool per listed namespace")
    t = pools[0]["spec"] if pools else {}
    check("maxConcurrentRuns" not in t, f"{scenario}: maxConcurrentRuns null -> unlimited (field omitted)")
    check(t.get("agents") == ["shell", "claude-code"], f"{scenario}: agents passed through")
    check(t.get("template", {}).get("env") == [{"name": "ANTHROPIC_BASE_URL", "value": "http://model.test:8080"}],
          f"{scenario}: pool env passed through", str(t.get("template", {}).get("env")))
    check(t.get("template", {}).get("image") == "reg.test/runner:v1", f"{scenario}: pool image from values")
    check(t.get("queue") == {"policy": "Priority"} and t.get("warm") == {"replicas": 2}
          and t.get("overrides") == {"image": True, "maxResources": {"cpu": "2"}},
          f"{scenario}: queue, warm and overrides passed through", str((t.get("queue"), t.get("warm"), t.get("overrides"))))
elif scenario == "ha":
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1, "Role": 2, "RoleBinding": 2,
                  "Deployment": 1, "Service": 2, "NetworkPolicy": 1, "RunnerPool": 1, "PodDisruptionBudget": 1,
                  "ValidatingAdmissionPolicy": 2, "ValidatingAdmissionPolicyBinding": 2})
    le = one("Role", "-leader-election")
    check(le and le["metadata"]["namespace"] == "paddock-system" and norm(le["rules"]) == EXPECTED_LEASES,
          f"{scenario}: leaderElection.enabled grants the Lease Role: leases get/create/update in the release namespace")
    check(binding_ok(one("RoleBinding", "-leader-election"), le), f"{scenario}: leader-election RoleBinding")
    op = one("ClusterRole", "-operator")
    check(op and norm(op["rules"]) == EXPECTED_OPERATOR, f"{scenario}: operator ClusterRole unchanged by leader election")
    pdb = one("PodDisruptionBudget")
    check(pdb and pdb["apiVersion"] == "policy/v1" and pdb["metadata"]["namespace"] == "paddock-system"
          and pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": dep["spec"]["selector"]["matchLabels"]}},
          f"{scenario}: PodDisruptionBudget maxUnavailable 1 selects the operator pods", str(pdb and pdb["spec"]))
elif scenario == "kueue":
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 4, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1,
                  "Deployment": 1, "Service": 2, "NetworkPolicy": 1, "RunnerPool": 1, "ValidatingAdmissionPolicy": 2, "ValidatingAdmissionPolicyBinding": 2})
    op = one("ClusterRole", "-operator")
    expected = sorted(EXPECTED_OPERATOR + [
        (("kueue.x-k8s.io",), ("workloads",), ("get", "list", "watch", "create", "patch")),
        (("kueue.x-k8s.io",), ("workloads/status",), ("patch",)),
    ])
    check(op and norm(op["rules"]) == expected, f"{scenario}: operator ClusterRole adds Workloads g/l/w/c/p and workloads/status patch",
          str(op and norm(op["rules"])))
    fl = one("ClusterRole", "-kueue-flavors")
    check(fl and norm(fl["rules"]) == [(("kueue.x-k8s.io",), ("resourceflavors",), ("get",))],
          f"{scenario}: ResourceFlavors get only, cluster-wide")
    check(binding_ok(one("ClusterRoleBinding", "-kueue-flavors"), fl), f"{scenario}: kueue-flavors ClusterRoleBinding")
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    check(env.get("PADDOCK_KUEUE") == "true", f"{scenario}: PADDOCK_KUEUE=true on the operator", str(env.get("PADDOCK_KUEUE")))
elif scenario == "no-pool":
    expect_kinds({"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1, "Deployment": 1,
                  "Service": 1, "NetworkPolicy": 1})
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    check(vols.get("verdict-key", {}).get("secret", {}).get("secretName") == "my-verdict-key",
          f"{scenario}: verdictKey.existingSecret is mounted, and no Secret is rendered", str(vols.get("verdict-key")))
    check(vols.get("evidence-key", {}).get("secret", {}).get("secretName") == "my-evidence-key",
          f"{scenario}: evidenceKey.existingSecret is mounted, and no Secret is rendered", str(vols.get("evidence-key")))
elif scenario == "archive":
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
                  "Deployment": 1, "Service": 2, "NetworkPolicy": 1, "RunnerPool": 1, "ValidatingAdmissionPolicy": 2,
                  "ValidatingAdmissionPolicyBinding": 2})
    op = one("ClusterRole", "-operator")
    check(op and norm(op["rules"]) == EXPECTED_OPERATOR, f"{scenario}: operator ClusterRole unchanged by the archive")
elif scenario == "webhooks-nodeport":
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
                  "Deployment": 1, "Service": 2, "NetworkPolicy": 1, "RunnerPool": 1, "ValidatingAdmissionPolicy": 2,
                  "ValidatingAdmissionPolicyBinding": 2})
    op = one("ClusterRole", "-operator")
    check(op and norm(op["rules"]) == EXPECTED_OPERATOR, f"{scenario}: operator ClusterRole unchanged by the webhook settings")
elif scenario == "webhooks-off":
    expect_kinds({"Secret": 2, "ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
                  "Deployment": 1, "Service": 1, "RunnerPool": 1, "ValidatingAdmissionPolicy": 2, "ValidatingAdmissionPolicyBinding": 2})
    check(one("Service", "-operator-metrics"), f"{scenario}: the metrics Service stays")
    op = one("ClusterRole", "-operator")
    check(op and norm(op["rules"]) == EXPECTED_OPERATOR,
          f"{scenario}: operator ClusterRole keeps secrets get (a run's forge token for its pull request needs no receiver)")
elif scenario == "crds":
    names = sorted(d["metadata"]["name"] for d in kinds("CustomResourceDefinition"))
    check(names == ["agentruns.paddock.dev", "agentrunsets.paddock.dev", "agentruntriggers.paddock.dev", "approvalgates.paddock.dev",
                    "runmessages.paddock.dev", "runnerpools.paddock.dev"],
          f"{scenario}: --include-crds renders the six CRDs", str(names))

# The evidence reader (templates/evidence-rbac.yaml): any authenticated user may get the one
# ConfigMap paddock-evidence in the release namespace (rendered with rbac.create).
if scenario != "crds":
    rd, rdb = one("Role", "-evidence-reader"), one("RoleBinding", "-evidence-reader")
    check(rd and rd["metadata"]["namespace"] == "paddock-system" and rd["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
          "resourceNames": ["paddock-evidence"], "verbs": ["get"]}],
          f"{scenario}: evidence-reader Role: get on ConfigMap paddock-evidence only, in the release namespace", str(rd and rd["rules"]))
    check(rdb and rdb["metadata"]["namespace"] == "paddock-system" and rdb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
          "kind": "Role", "name": rd and rd["metadata"]["name"]}
          and rdb["subjects"] == [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"}],
          f"{scenario}: evidence-reader RoleBinding grants it to Group system:authenticated", str(rdb and rdb.get("subjects")))

# The approval policy (templates/approval-policy.yaml): shape only; its CEL is proven on a real
# cluster by e2e/tests/approvals.rs.
vap, vapb = one("ValidatingAdmissionPolicy", "-approval-gates"), one("ValidatingAdmissionPolicyBinding", "-approval-gates")
if vap:
    ps = vap["spec"]
    check(vap["apiVersion"] == "admissionregistration.k8s.io/v1" and ps.get("failurePolicy") == "Fail",
          f"{scenario}: approval policy is admissionregistration.k8s.io/v1 with failurePolicy Fail")
    check(ps.get("matchConstraints", {}).get("resourceRules") == [{"apiGroups": ["paddock.dev"], "apiVersions": ["*"],
          "operations": ["UPDATE"], "resources": ["approvalgates"]}],
          f"{scenario}: approval policy matches exactly UPDATE of approvalgates (not /status)", str(ps.get("matchConstraints")))
    mcs = ps.get("matchConditions") or []
    check(len(mcs) == 1 and "object.spec.decisions" in mcs[0]["expression"] and "oldObject.spec.decisions" in mcs[0]["expression"],
          f"{scenario}: approval policy only evaluates updates that change spec.decisions", str(mcs))
    vs = ps.get("validations") or []
    check(len(vs) == 4 and all(v.get("message") and v.get("messageExpression") and v.get("reason") == "Forbidden" for v in vs),
          f"{scenario}: approval policy has 4 validations, each with a message, messageExpression, reason Forbidden", str(vs)[:300])
    allcel = " ".join(v["expression"] for v in vs) + " ".join(x["expression"] for x in ps.get("variables", []))
    for needle in ("request.userInfo.username", "request.userInfo.groups", "system:serviceaccount:", "oldObject.status.state",
                   "oldObject.spec.approvers.users", "oldObject.spec.approvers.groups"):
        check(needle in allcel, f"{scenario}: approval policy CEL uses {needle}")
    # Every final state, ChangesRequested (a Plan gate sent back) included, takes no more decisions.
    decided = next((x["expression"] for x in ps.get("variables", []) if x["name"] == "decided"), "")
    check(all(f'"{st}"' in decided for st in ("Approved", "Rejected", "ChangesRequested", "Expired", "Withdrawn")),
          f"{scenario}: approval policy treats every final gate state (ChangesRequested too) as decided", decided)
    check(vapb and vapb["apiVersion"] == "admissionregistration.k8s.io/v1" and vapb["spec"].get("policyName") == vap["metadata"]["name"]
          and vapb["spec"].get("validationActions") == ["Deny"],
          f"{scenario}: approval policy binding names the policy, validationActions [Deny]", str(vapb and vapb["spec"]))
    check(vapb and (scenario == "watchns-servicemonitor" or "matchResources" not in vapb["spec"]),
          f"{scenario}: approval policy binding covers all namespaces unless watchNamespace is set")
elif scenario != "crds":
    check(scenario == "no-pool" and vapb is None, f"{scenario}: approval policy rendered (or no-pool: neither policy nor binding)")

# The message policy (templates/message-policy.yaml): a RunMessage's spec.sender is the requesting
# user. Shape only; its CEL is proven on a real cluster by e2e/tests/conversing.rs.
mp, mpb = one("ValidatingAdmissionPolicy", "-run-messages"), one("ValidatingAdmissionPolicyBinding", "-run-messages")
if mp:
    ps = mp["spec"]
    check(mp["apiVersion"] == "admissionregistration.k8s.io/v1" and ps.get("failurePolicy") == "Fail",
          f"{scenario}: message policy is admissionregistration.k8s.io/v1 with failurePolicy Fail")
    check(ps.get("matchConstraints", {}).get("resourceRules") == [{"apiGroups": ["paddock.dev"], "apiVersions": ["*"],
          "operations": ["CREATE"], "resources": ["runmessages"]}],
          f"{scenario}: message policy matches exactly CREATE of runmessages (the spec is immutable after)", str(ps.get("matchConstraints")))
    vs = ps.get("validations") or []
    allcel = " ".join(v["expression"] for v in vs) + " " + " ".join(x["expression"] for x in ps.get("variables", []))
    check(len(vs) == 1 and vs[0].get("reason") == "Forbidden" and vs[0].get("message") and vs[0].get("messageExpression")
          and "object.spec.sender" in allcel and "request.userInfo.username" in allcel,
          f"{scenario}: message policy refuses (Forbidden, with a message) a sender that is not request.userInfo.username", str(vs)[:300])
    check(mpb and mpb["spec"].get("policyName") == mp["metadata"]["name"] and mpb["spec"].get("validationActions") == ["Deny"]
          and (scenario == "watchns-servicemonitor" or "matchResources" not in mpb["spec"]),
          f"{scenario}: message policy binding names the policy, validationActions [Deny], all namespaces unless watchNamespace",
          str(mpb and mpb["spec"]))
elif scenario != "crds":
    check(scenario == "no-pool" and mpb is None, f"{scenario}: message policy rendered (or no-pool, approvalPolicy.enabled=false: neither)")

for good, desc, detail in results:
    print(("ok   - " if good else "FAIL - ") + desc + ("" if good or not detail else "\n    " + detail[:600]))
PY

# render <name> <helm template args...>: renders into $TMP/<name>.yaml, one check.
render() {
  local name=$1
  shift
  check "helm template ($name) exits 0" \
    "$HELM" template paddock "$CHART" -n paddock-system --kube-version "$KUBE_VERSION" "$@" --output-dir "$TMP/out-$name"
  # Concatenate in a stable order (--output-dir keeps each file's documents together).
  "$HELM" template paddock "$CHART" -n paddock-system --kube-version "$KUBE_VERSION" "$@" >"$TMP/$name.yaml" 2>/dev/null
}
# checkyaml <scenario>: runs check.py and counts its lines.
checkyaml() {
  local line
  if [ "$HAVE_YAML" = 1 ]; then
    while IFS= read -r line; do
      case $line in
        "ok   - "*) ok "${line#ok   - }" ;;
        "FAIL - "*) bad "${line#FAIL - }" ;;
        *) echo "$line" ;;
      esac
    done < <(python3 "$TMP/check.py" "$1" "$TMP/$1.yaml" "$CHART/crds/crds.yaml" 2>&1 || echo "FAIL - $1: check.py crashed")
  else
    skipped "$1: PyYAML missing, structural checks not run"
    # Minimal fallback: no wildcard and no secrets in any rendered rule.
    check "$1: no '*' in the rendered manifest" bash -c "! grep -nE '\"\\*\"|- \\*\$' '$TMP/$1.yaml'"
    check "$1: secrets only in the operator's get rule" bash -c \
      "! grep -nw 'secrets' '$TMP/$1.yaml' | grep -v 'resources: \\[\"secrets\"\\]\$' &&
       ! grep -A1 -w 'resources: \\[\"secrets\"\\]' '$TMP/$1.yaml' | grep 'verbs:' | grep -v 'verbs: \\[\"get\"\\]\$'"
  fi
}

echo "# chart: $CHART (helm $("$HELM" version --short 2>/dev/null))"

# ---------------------------------------------------------------- lint
check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"
check "helm lint --strict (watchNamespace, serviceMonitor, leases, pool list)" \
  "$HELM" lint --strict "$CHART" --set watchNamespace=team-a --set metrics.serviceMonitor.enabled=true \
  --set rbac.leaderElection=true --set 'defaultPool.namespaces={team-a}'
check "helm lint --strict (HA: leaderElection, 2 replicas, PodDisruptionBudget)" \
  "$HELM" lint --strict "$CHART" --set leaderElection.enabled=true --set replicaCount=2 --set podDisruptionBudget.enabled=true
check "helm lint --strict (webhooks: LoadBalancer, nodePort, networkPolicy.from, consoleURL)" \
  "$HELM" lint --strict "$CHART" --set webhooks.service.type=LoadBalancer --set webhooks.service.nodePort=30091 \
  --set 'webhooks.networkPolicy.from[0].ipBlock.cidr=10.0.0.0/8' --set consoleURL=https://paddock.example.com
check "helm lint --strict (webhooks.enabled=false)" "$HELM" lint --strict "$CHART" --set webhooks.enabled=false
check "helm lint --strict (archive: url, https endpoint, credentialsSecret)" \
  "$HELM" lint --strict "$CHART" --set archive.url=s3://evidence/prefix --set archive.endpoint=https://minio.test:9000 \
  --set archive.credentialsSecret=archive-creds

# ---------------------------------------------------------------- renders
render default
checkyaml default
render watchns-servicemonitor --set watchNamespace=team-a --set metrics.serviceMonitor.enabled=true
checkyaml watchns-servicemonitor
render pools-leases --set rbac.leaderElection=true --set 'defaultPool.namespaces={team-a,team-b}' \
  --set defaultPool.maxConcurrentRuns=null --set 'defaultPool.agents={shell,claude-code}' \
  --set defaultPool.image.repository=reg.test/runner --set defaultPool.image.tag=v1 \
  --set 'defaultPool.env[0].name=ANTHROPIC_BASE_URL' --set 'defaultPool.env[0].value=http://model.test:8080' \
  --set defaultPool.queue.policy=Priority --set defaultPool.warm.replicas=2 \
  --set defaultPool.overrides.image=true --set-string defaultPool.overrides.maxResources.cpu=2
checkyaml pools-leases
render no-pool --set defaultPool.enabled=false --set rbac.aggregateToDefaultRoles=false --set metrics.service.enabled=false \
  --set approvalPolicy.enabled=false --set verdictKey.existingSecret=my-verdict-key --set evidenceKey.existingSecret=my-evidence-key
checkyaml no-pool
render ha --set leaderElection.enabled=true --set replicaCount=2 --set podDisruptionBudget.enabled=true
checkyaml ha
render kueue --set kueue.enabled=true --set maxConcurrentReconciles=8 --set maxLogFollowers=0 --set events.steps=true --set archive.url=s3://evidence
checkyaml kueue
render archive --set archive.url=s3://evidence/team-a --set archive.endpoint=http://minio.test:9000 --set archive.region=eu-west-3 \
  --set archive.allowHttp=true --set archive.credentialsSecret=archive-creds
checkyaml archive
cat >"$TMP/webhooks-values.yaml" <<'VALUES'
consoleURL: https://paddock.example.com
webhooks:
  port: 9000
  service:
    type: NodePort
    port: 8443
    nodePort: 30090
    annotations: {example.com/lb: forge}
  networkPolicy:
    from:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
      - ipBlock: {cidr: 140.82.112.0/20}
VALUES
render webhooks-nodeport -f "$TMP/webhooks-values.yaml"
checkyaml webhooks-nodeport
render webhooks-off --set webhooks.enabled=false
checkyaml webhooks-off
render crds --include-crds
checkyaml crds

# ---------------------------------------------------------------- refusals
check_fails "pool namespace outside watchNamespace is refused" "only watches watchNamespace" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set watchNamespace=a --set 'defaultPool.namespaces={b}'
check_fails "serviceMonitor without the Service is refused" "needs metrics.service.enabled" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false
check_fails "Kubernetes older than 1.33 is refused (kubeVersion)" "kubeVersion" \
  "$HELM" template paddock "$CHART" -n x --kube-version 1.32.5
check_fails "replicaCount > 1 without leaderElection.enabled is refused" "needs leaderElection.enabled=true" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set replicaCount=2
check_fails "replicaCount 0 is refused" "replicaCount must be at least 1" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set replicaCount=0
check_fails "podDisruptionBudget with one replica is refused" "needs replicaCount >= 2" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set leaderElection.enabled=true --set podDisruptionBudget.enabled=true
check_fails "maxConcurrentReconciles above 65535 is refused" "maxConcurrentReconciles must be a whole number from 0 to 65535, got 70000" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set maxConcurrentReconciles=70000
check_fails "negative maxLogFollowers is refused" "maxLogFollowers must be a whole number from 0 to 65535" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set maxLogFollowers=-1
check_fails "fractional maxLogFollowers is refused" "maxLogFollowers must be a whole number from 0 to 65535, got 1.5" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set maxLogFollowers=1.5
check_fails "a string maxLogFollowers is refused" "maxLogFollowers must be a whole number from 0 to 65535, got 12" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set-string maxLogFollowers=12
check_fails "serviceAccount.create=false without a name is refused" "serviceAccount.name is required" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set serviceAccount.create=false
check_fails "an archive.url that is not s3:// is refused" 'archive.url must be s3://BUCKET or s3://BUCKET/PREFIX, got "https://evidence.test/x"' \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set archive.url=https://evidence.test/x
check_fails "an archive.url without a bucket is refused" 'archive.url must be s3://BUCKET' \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set archive.url=s3:///x
check_fails "an archive.endpoint without a scheme is refused" "archive.endpoint must be an http:// or https:// URL" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set archive.url=s3://b --set archive.endpoint=minio.test:9000
check_fails "a plain-http archive.endpoint without archive.allowHttp is refused" "is plain http: set archive.allowHttp=true" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set archive.url=s3://b --set archive.endpoint=http://minio.test:9000
check_fails "webhooks.service.nodePort with type ClusterIP is refused" "webhooks.service.nodePort needs webhooks.service.type NodePort or LoadBalancer" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set webhooks.service.nodePort=30090
check_fails "a webhooks.service.type other than ClusterIP/NodePort/LoadBalancer is refused" 'webhooks.service.type must be ClusterIP, NodePort or LoadBalancer, got "ExternalName"' \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set webhooks.service.type=ExternalName
check_fails "webhooks.port equal to metrics.port is refused" "webhooks.port must differ from metrics.port" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set webhooks.port=8080
check_fails "a consoleURL that is not http(s) is refused" 'consoleURL must be an http:// or https:// URL, got "paddock.example.com"' \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set consoleURL=paddock.example.com
check_fails "webhooks.networkPolicy.enabled=false renders no NetworkPolicy" "could not find template" \
  "$HELM" template paddock "$CHART" -n x --kube-version "$KUBE_VERSION" --set webhooks.networkPolicy.enabled=false \
  --show-only templates/webhooks-networkpolicy.yaml
check "webhooks.networkPolicy.enabled=false keeps the webhooks Service" bash -c \
  "'$HELM' template paddock '$CHART' -n x --kube-version '$KUBE_VERSION' --set webhooks.networkPolicy.enabled=false \
    --show-only templates/webhooks-service.yaml | grep -q '^  name: paddock-webhooks\$'"

# ---------------------------------------------------------------- alerts
# The PrometheusRule embeds alerts/paddock-alerts.yaml (test-observability.sh checks it byte for
# byte and unit-tests the rules); here: the archive's alerts are in it, with or without archive.url.
check "PrometheusRule has PaddockArchiveBacklog and PaddockArchiveUploadsFailing (always; absent metrics never fire)" bash -c "
  out=\$('$HELM' template paddock '$CHART' -n paddock-system --kube-version '$KUBE_VERSION' \
    --set metrics.prometheusRule.enabled=true --show-only templates/prometheusrule.yaml) &&
  grep -q 'alert: PaddockArchiveBacklog\$' <<<\"\$out\" && grep -q 'alert: PaddockArchiveUploadsFailing\$' <<<\"\$out\" &&
  grep -q 'expr: max(paddock_archive_backlog) > 0\$' <<<\"\$out\" &&
  grep -q 'expr: sum(rate(paddock_archive_uploads_total{result=\"error\"}\[10m\])) > 0\$' <<<\"\$out\""

# ---------------------------------------------------------------- files
check "crds/crds.yaml is the generated file" grep -q "^# Generated by .cargo run -p paddock-crds" "$CHART/crds/crds.yaml"
check "Chart.yaml: v2, paddock 0.1.0, appVersion 0.1.0, kubeVersion >=1.33.0-0" bash -c "
  grep -qx 'apiVersion: v2' '$CHART/Chart.yaml' && grep -qx 'name: paddock' '$CHART/Chart.yaml' &&
  grep -qx 'version: 0.1.0' '$CHART/Chart.yaml' && grep -qx 'appVersion: \"0.1.0\"' '$CHART/Chart.yaml' &&
  grep -qx 'kubeVersion: \">=1.33.0-0\"' '$CHART/Chart.yaml'"
# Every values.yaml key is documented in README.md's table.
if [ "$HAVE_YAML" = 1 ]; then
  check "every values.yaml leaf key is in README.md's table" python3 - "$CHART/values.yaml" "$CHART/README.md" <<'PY'
import sys, yaml
vals = yaml.safe_load(open(sys.argv[1]))
readme = open(sys.argv[2]).read()
def leaves(d, p=""):
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("resources",):
            yield from leaves(v, f"{p}{k}.")
        else:
            yield p + k
missing = [k for k in leaves(vals) if f"`{k}`" not in readme]
if missing:
    sys.exit("not in README.md: " + ", ".join(missing))
PY
fi
# NOTES.txt renders (through tpl, since `helm template` skips NOTES) and says how to watch a run.
mkdir -p "$TMP/notes" && cp -r "$CHART" "$TMP/notes/" &&
  printf '%s\n' 'notes: {{ tpl .Values.notesSrc . | toJson }}' >"$TMP/notes/paddock/templates/zz-notes.yaml"
if "$HELM" template paddock "$TMP/notes/paddock" -n paddock-system --kube-version "$KUBE_VERSION" \
  --set-file notesSrc="$CHART/templates/NOTES.txt" --show-only templates/zz-notes.yaml >"$TMP/notes.out" 2>&1; then
  check "NOTES.txt renders and shows 'kubectl get ar -w' and 'kubectl wait --for=condition=Succeeded'" bash -c \
    "grep -q 'get ar -w' '$TMP/notes.out' && grep -q 'wait --for=condition=Succeeded ar/hello' '$TMP/notes.out'"
else
  bad "NOTES.txt renders"; sed 's/^/    /' "$TMP/notes.out" | tail -n 5
fi

# wait_for <seconds> <command...>: retries the command once a second until it succeeds.
wait_for() {
  local n=$1
  shift
  for _ in $(seq "$n"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

# live_operator_checks: runs $BIN as the chart's ServiceAccount against namespace $NS, then
# drives two AgentRuns through the paths that use every permission (pod SSA, status, events,
# gate create, cancel: pod log, artifact ConfigMaps, pod delete). Uses k, NS, REL, TMP, BIN.
live_operator_checks() {
  local token server port=18473 opid fails_before=$fail
  token=$(k -n "$NS" create token "$REL-operator" --duration=1h) || { bad "token for the ServiceAccount"; return; }
  server=$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  k config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$TMP/ca.crt"
  cat >"$TMP/sa.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority: "$TMP/ca.crt"}}]
users: [{name: sa, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: sa, namespace: "$NS"}}]
current-context: c
KC
  KUBECONFIG=$TMP/sa.kubeconfig PADDOCK_WATCH_NAMESPACE=$NS PADDOCK_METRICS_ADDR=127.0.0.1:$port \
    POD_NAME=chart-test RUST_LOG=info,kube=warn "$BIN" run >"$TMP/operator.log" 2>&1 &
  opid=$!
  check "operator (as the ServiceAccount) becomes ready: its list/watches are permitted" \
    wait_for 60 curl -fsS "http://127.0.0.1:$port/readyz"
  # chart-test-run uses a pool whose image cannot be pulled, so it stays Running until cancelled.
  k -n "$NS" create -f - >/dev/null <<AR
apiVersion: paddock.dev/v1alpha1
kind: RunnerPool
metadata: {name: chart-test-stuck}
spec:
  template: {image: "localhost/paddock/chart-test-absent:0", imagePullPolicy: IfNotPresent}
---
apiVersion: paddock.dev/v1alpha1
kind: AgentRun
metadata: {name: chart-test-run}
spec:
  repo: {url: "https://example.invalid/repo.git"}
  agent: {name: shell}
  prompt: "true"
  runnerPoolRef: {name: chart-test-stuck}
---
apiVersion: paddock.dev/v1alpha1
kind: AgentRun
metadata: {name: chart-test-gated}
spec:
  repo: {url: "https://example.invalid/repo.git"}
  agent: {name: shell}
  prompt: "true"
  approvals: {beforeStart: {approvers: {users: [chart-test-alice]}}}
AR
  local kc="\"$KUBECTL\" -n '$NS'"
  check "operator SSA-created the runner pod (pods create+patch)" \
    wait_for 60 bash -c "$kc get pods -l paddock.dev/run=chart-test-run --no-headers | grep -q ."
  check "operator wrote AgentRun status (agentruns/status patch)" \
    wait_for 30 bash -c "[ -n \"\$($kc get ar chart-test-run -o jsonpath='{.status.phase}')\" ]"
  check "operator created the ApprovalGate; the run awaits approval (approvalgates create)" \
    wait_for 30 bash -c "$kc get gate --no-headers | grep -q . &&
      [ \"\$($kc get ar chart-test-gated -o jsonpath='{.status.phase}')\" = AwaitingApproval ]"
  check "operator wrote ApprovalGate status (approvalgates/status patch)" \
    wait_for 30 bash -c "[ -n \"\$($kc get gate -o jsonpath='{.items[0].status.state}')\" ]"
  check "operator wrote RunnerPool status (runnerpools/status patch)" \
    wait_for 30 bash -c "[ -n \"\$($kc get pool default -o jsonpath='{.status.conditions[0].type}')\" ]"
  check "operator published Events (events.k8s.io create)" \
    wait_for 30 bash -c "$kc get events.events.k8s.io -o jsonpath='{.items[*].reportingController}' | grep -q paddock-operator"
  check "the run is Running before the cancel" \
    wait_for 30 bash -c "[ \"\$($kc get ar chart-test-run -o jsonpath='{.status.phase}')\" = Running ]"
  k -n "$NS" patch ar chart-test-run --type=merge -p '{"spec":{"cancel":true}}' >/dev/null
  check "cancel: the run ends Cancelled (pods/log get, then status)" \
    wait_for 60 bash -c "[ \"\$($kc get ar chart-test-run -o jsonpath='{.status.phase}')\" = Cancelled ]"
  # Deleted: gone, or terminating (deletionTimestamp set) while the kubelet stops it.
  check "cancel: the runner pod is deleted (pods delete)" \
    wait_for 60 bash -c "! $kc get pods -l paddock.dev/run=chart-test-run \
      -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.deletionTimestamp}{\"\\n\"}{end}' | grep -q '=\$'"
  check "cancel: the run's log ConfigMap exists (configmaps create+patch by SSA)" \
    bash -c "$kc get configmaps -l paddock.dev/run=chart-test-run,paddock.dev/artifact=log --no-headers | grep -q ."
  check "operator log has no Forbidden error" bash -c "! grep -i forbidden '$TMP/operator.log'"
  kill "$opid" 2>/dev/null
  wait "$opid" 2>/dev/null
  if [ "$fail" != "$fails_before" ]; then
    echo "    operator log (first 12 and last 5 lines):"
    { head -n 12 "$TMP/operator.log"; echo ...; tail -n 5 "$TMP/operator.log"; } | cut -c1-300 | sed 's/^/    /'
  fi
}

# ---------------------------------------------------------------- real cluster (opt-in)
if [ "$CLUSTER" = 1 ]; then
  export KUBECONFIG=${KUBECONFIG:-/var/lib/paddock-cluster/admin.kubeconfig}
  NS=${CHART_TEST_NS:-paddock-chart-test}
  REL=$NS # contains "paddock": resource prefix = release name
  SA=system:serviceaccount:$NS:$REL-operator
  k() { "$KUBECTL" --request-timeout=20s "$@"; }
  echo "# cluster: KUBECONFIG=$KUBECONFIG namespace=$NS"
  installed=0 crds_before=
  if ! k get --raw /readyz >/dev/null 2>&1; then
    bad "cluster reachable (KUBECONFIG=$KUBECONFIG)"
  elif k get ns "$NS" >/dev/null 2>&1; then
    bad "namespace $NS does not exist yet (refusing to touch it)"
  else
    crds_before=$(k get crd agentruns.paddock.dev approvalgates.paddock.dev runnerpools.paddock.dev --no-headers 2>/dev/null | wc -l)
    # watchNamespace = the test namespace, so a running operator never touches anyone else's runs.
    installed=0
    if out=$("$HELM" install "$REL" "$CHART" -n "$NS" --create-namespace --set watchNamespace="$NS" --timeout 2m 2>&1); then
      ok "helm install (watchNamespace=$NS, --create-namespace)"
      installed=1
    else
      bad "helm install (watchNamespace=$NS, --create-namespace); later cluster checks not run"
      printf '%s\n' "$out" | tail -n 20 | cut -c1-600 | sed 's/^/    /'
    fi
  fi
  if [ "$installed" = 1 ]; then
    check "CRDs established" k wait --for=condition=Established --timeout=60s \
      crd/agentruns.paddock.dev crd/approvalgates.paddock.dev crd/runnerpools.paddock.dev
    check "RunnerPool default exists in $NS" k -n "$NS" get runnerpool default
    check "approval policy and its binding exist (policy CEL proven by e2e/tests/approvals.rs)" \
      k get validatingadmissionpolicy,validatingadmissionpolicybinding "$REL-approval-gates"
    check "message policy and its binding exist (policy CEL proven by e2e/tests/conversing.rs)" \
      k get validatingadmissionpolicy,validatingadmissionpolicybinding "$REL-run-messages"
    # The operator's permissions, as the API server's authorizer sees them.
    for spec in \
      "get agentruns.paddock.dev" "list agentruns.paddock.dev" "watch agentruns.paddock.dev" \
      "list approvalgates.paddock.dev" "watch runnerpools.paddock.dev" "create approvalgates.paddock.dev" \
      "patch agentruns.paddock.dev --subresource=status" "patch approvalgates.paddock.dev --subresource=status" \
      "patch runnerpools.paddock.dev --subresource=status" "update agentruns.paddock.dev --subresource=finalizers" \
      "update runnerpools.paddock.dev --subresource=finalizers" \
      "get pods" "list pods" "watch pods" "create pods" "patch pods" "delete pods" "get pods --subresource=log" \
      "get configmaps" "create configmaps" "patch configmaps" "create events.events.k8s.io" "patch events.events.k8s.io" \
      "patch agentruns.paddock.dev" "delete agentruns.paddock.dev" "list events" "get secrets" \
      "watch runmessages.paddock.dev" "patch runmessages.paddock.dev" "patch runmessages.paddock.dev --subresource=status"; do
      # shellcheck disable=SC2086
      check "operator can: $spec" bash -c "[ \"\$(\"$KUBECTL\" auth can-i $spec -n '$NS' --as '$SA' 2>/dev/null)\" = yes ]"
    done
    for spec in "list secrets" "watch secrets" "update pods" "create agentruns.paddock.dev" "update agentruns.paddock.dev" \
      "delete configmaps" "list configmaps" "create runnerpools.paddock.dev" "patch approvalgates.paddock.dev" \
      "create pods --subresource=exec" "list nodes" "create events" "create runmessages.paddock.dev"; do
      # shellcheck disable=SC2086
      check "operator cannot: $spec" bash -c "[ \"\$(\"$KUBECTL\" auth can-i $spec -n '$NS' --as '$SA' 2>/dev/null)\" = no ]"
    done
    check "operator cannot: get pods in kube-system (watchNamespace only)" bash -c \
      "[ \"\$(\"$KUBECTL\" auth can-i get pods -n kube-system --as '$SA' 2>/dev/null)\" = no ]"
    # Real writes as the operator: a server-side apply that creates (needs create+patch), an
    # Event create. The run-pod SSA is checked with dry-run (the image may not exist).
    check "operator SSA-creates a ConfigMap" k -n "$NS" apply --server-side --field-manager=paddock.dev/agentrun --as "$SA" -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: chart-test-artifact}
data: {events.jsonl: ""}
EOF
    check "operator SSA-creates a Pod (server dry-run)" k -n "$NS" apply --server-side --dry-run=server --field-manager=paddock.dev/agentrun --as "$SA" -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: chart-test-pod}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: localhost/paddock/pause:1
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
    check "operator creates an events.k8s.io Event" k -n "$NS" create --as "$SA" -f - <<EOF
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: chart-test.1}
eventTime: "2026-01-01T00:00:00.000000Z"
reportingController: paddock-operator
reportingInstance: chart-test
action: Test
reason: Test
type: Normal
regarding: {kind: ConfigMap, name: chart-test-artifact, namespace: $NS, apiVersion: v1}
EOF
    check_fails "operator cannot list Secrets (real request)" "[Ff]orbidden" k -n "$NS" get secrets --as "$SA"
    check "operator gets a Secret by name (real request: the chart's verdict key)" \
      k -n "$NS" get secret "$REL-verdict-key" --as "$SA" -o name
    # The evidence ConfigMap: any authenticated user may get it, and nothing else (a user with
    # no binding of its own; impersonation adds the group system:authenticated).
    check "any authenticated user can: get configmap/paddock-evidence" bash -c \
      "[ \"\$(\"$KUBECTL\" auth can-i get configmap/paddock-evidence -n '$NS' --as chart-test-carol 2>/dev/null)\" = yes ]"
    for spec in "get configmap/other" "list configmaps" "patch configmap/paddock-evidence"; do
      # shellcheck disable=SC2086
      check "any authenticated user cannot: $spec" bash -c "[ \"\$(\"$KUBECTL\" auth can-i $spec -n '$NS' --as chart-test-carol 2>/dev/null)\" = no ]"
    done
    # Namespace users through the aggregated built-in roles.
    k -n "$NS" create rolebinding chart-test-edit --clusterrole=edit --user=chart-test-alice >/dev/null
    k -n "$NS" create rolebinding chart-test-view --clusterrole=view --user=chart-test-bob >/dev/null
    can() { # can <user> <verb> <resource>: waits up to 20 s for the aggregation controller
      for _ in $(seq 20); do
        [ "$("$KUBECTL" auth can-i "$2" "$3" -n "$NS" --as "$1" 2>/dev/null)" = yes ] && return 0
        sleep 1
      done
      return 1
    }
    for spec in "create agentruns.paddock.dev" "delete agentruns.paddock.dev" "patch approvalgates.paddock.dev" "list runnerpools.paddock.dev" \
      "get agentruns.paddock.dev" "create runmessages.paddock.dev" "list runmessages.paddock.dev"; do
      # shellcheck disable=SC2086
      check "edit user can: $spec" can chart-test-alice $spec
    done
    for spec in "create runnerpools.paddock.dev" "patch runnerpools.paddock.dev"; do
      # shellcheck disable=SC2086
      check "edit user cannot: $spec" bash -c "[ \"\$(\"$KUBECTL\" auth can-i $spec -n '$NS' --as chart-test-alice 2>/dev/null)\" = no ]"
    done
    check "view user can: list agentruns" can chart-test-bob list agentruns.paddock.dev
    check "view user can: get approvalgates" can chart-test-bob get approvalgates.paddock.dev
    check "view user cannot: create agentruns" bash -c "[ \"\$(\"$KUBECTL\" auth can-i create agentruns.paddock.dev -n '$NS' --as chart-test-bob 2>/dev/null)\" = no ]"
    check "view user can: list runmessages" can chart-test-bob list runmessages.paddock.dev
    check "view user cannot: create runmessages" bash -c "[ \"\$(\"$KUBECTL\" auth can-i create runmessages.paddock.dev -n '$NS' --as chart-test-bob 2>/dev/null)\" = no ]"
    # The operator binary itself, run on this machine with the ServiceAccount's token: proves
    # the rules suffice for its real watches and writes (PADDOCK_OPERATOR_BIN, e.g.
    # target/debug/paddock-operator; skipped without it).
    BIN=${PADDOCK_OPERATOR_BIN:-}
    if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
      skipped "operator binary run as the ServiceAccount (set PADDOCK_OPERATOR_BIN)"
    else
      live_operator_checks
    fi
    # The operator pod: ready when the image exists locally; otherwise only reported.
    if k -n "$NS" rollout status "deployment/$REL-operator" --timeout=90s >/dev/null 2>&1; then
      ok "operator Deployment rolled out (pod Ready: /readyz ok, so its watches are permitted)"
      check "operator pod log has no Forbidden error" bash -c \
        "! \"$KUBECTL\" -n '$NS' logs deployment/$REL-operator | grep -i forbidden"
    else
      why=$(k -n "$NS" get pods -l app.kubernetes.io/component=operator \
        -o jsonpath='{range .items[*]}{.status.containerStatuses[0].state.waiting.reason}{end}' 2>/dev/null)
      case $why in
        ErrImagePull | ImagePullBackOff | ErrImageNeverPull) skipped "operator pod not started: image absent ($why)" ;;
        *) bad "operator Deployment rolled out (waiting reason: ${why:-none})"
          k -n "$NS" logs "deployment/$REL-operator" --tail=20 2>&1 | sed 's/^/    /' ;;
      esac
    fi
  fi
  # Clean up whatever this run created: release, namespace, and the CRDs only if this run
  # installed them and no Paddock objects remain anywhere.
  if [ -n "${crds_before:-}" ]; then
    if [ "$installed" = 1 ]; then
      check "helm uninstall" "$HELM" uninstall "$REL" -n "$NS" --wait --timeout 2m
    else
      "$HELM" uninstall "$REL" -n "$NS" >/dev/null 2>&1 || true
    fi
    if k get ns "$NS" >/dev/null 2>&1; then
      check "namespace $NS deleted" k delete ns "$NS" --wait=true --timeout=120s
    fi
    if [ "$crds_before" = 0 ]; then
      left=$(k get agentruns,approvalgates,runnerpools -A --no-headers 2>/dev/null | wc -l)
      if [ "$left" = 0 ]; then
        k delete crd agentruns.paddock.dev approvalgates.paddock.dev runnerpools.paddock.dev \
          --ignore-not-found >/dev/null 2>&1
        check "CRDs this run installed are gone" bash -c \
          "! \"$KUBECTL\" get crd agentruns.paddock.dev approvalgates.paddock.dev runnerpools.paddock.dev --no-headers 2>/dev/null | grep -q ."
      else
        skipped "CRDs kept: $left Paddock objects exist in other namespaces"
      fi
    fi
  fi
fi

[ "$skip" = 0 ] || echo "($skip skipped)"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
