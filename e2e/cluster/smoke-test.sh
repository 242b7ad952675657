#!/usr/bin/env bash
# Proves a running local cluster (`cluster.sh up`) is usable for Paddock's e2e tests, from real
# pods using localhost/paddock/busybox:1:
#   1. a pod reaches the API server through the `kubernetes` Service ClusterIP (10.96.0.1:443)
#      with its service-account token, and a host HTTP server on the bridge gateway (host-ip);
#   2. a pod with a native sidecar (init container, restartPolicy: Always) runs to completion;
#   3. a pod under the `restricted` Pod Security profile (enforced on its namespace) starts,
#      runs as uid 1000 with seccomp filtering active and no capabilities;
#   4. a ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) is enforced;
#   5. the bridge's MAC address is pinned (it does not follow the pods' veths);
#   6. NetworkPolicy egress rules are enforced (netpol-test.sh: kube-router).
# Exit 0 only if all pass. Cleans up its namespace and host server.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$("$here/cluster.sh" env)"
export KUBECONFIG
ns=paddock-smoke
port=${PADDOCK_SMOKE_PORT:-}
if [ -z "$port" ]; then # a free port: other tests may run servers on the host-ip too
  for port in $(seq 18090 18190); do [ -z "$(ss -Hltn "sport = :$port")" ] && break; done
fi
marker="paddock-host-marker-$$-$RANDOM"
img=$PADDOCK_BUSYBOX_IMAGE
k() { "$KUBECTL" --request-timeout=20s "$@"; }
log() { printf '[smoke %3ds] %s\n' "$SECONDS" "$*" >&2; }
fail=0

srv_dir=$(mktemp -d)
echo "$marker" >"$srv_dir/marker"
python3 -m http.server --bind "$PADDOCK_HOST_IP" --directory "$srv_dir" "$port" >/dev/null 2>&1 &
srv_pid=$!
for _ in $(seq 1 50); do [ -n "$(ss -Hltn "sport = :$port")" ] && break; sleep 0.1; done
kill -0 "$srv_pid" 2>/dev/null || { log "FAIL: cannot start python3 -m http.server on $PADDOCK_HOST_IP:$port"; exit 1; }
cleanup() {
  kill "$srv_pid" 2>/dev/null || true
  rm -rf "$srv_dir"
  k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null
k label namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
k -n "$ns" wait --for=jsonpath='{.metadata.name}'=default serviceaccount/default --timeout=60s >/dev/null

restricted_sc='
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: ["ALL"]}'
pod_sc='
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    seccompProfile: {type: RuntimeDefault}'

k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: net}
spec:
  restartPolicy: Never
$pod_sc
  containers:
    - name: net
      image: $img
      imagePullPolicy: Never
$restricted_sc
      command: ["/bin/sh", "-c"]
      args:
        - |
          set -e
          echo "KUBERNETES_SERVICE_HOST=\$KUBERNETES_SERVICE_HOST"
          t=\$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)
          timeout 10 wget -q -O - --no-check-certificate --header "Authorization: Bearer \$t" \
            https://10.96.0.1:443/version | grep gitVersion
          timeout 10 wget -q -O - --no-check-certificate --header "Authorization: Bearer \$t" \
            https://10.96.0.1:443/api/v1/namespaces/default/pods 2>&1 | grep -q Forbidden ||
            timeout 10 wget -S -O /dev/null --no-check-certificate --header "Authorization: Bearer \$t" \
            https://10.96.0.1:443/apis 2>&1 | grep -q '200 OK' && echo "authenticated API call ok"
          timeout 10 wget -q -O - http://$PADDOCK_HOST_IP:$port/marker
---
apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
$pod_sc
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
    - name: side
      image: $img
      imagePullPolicy: Never
      restartPolicy: Always
$restricted_sc
      volumeMounts: [{name: shared, mountPath: /shared}]
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo sidecar-was-here > /shared/f; while :; do sleep 1; done"]
      startupProbe:
        exec: {command: ["test", "-f", "/shared/f"]}
        periodSeconds: 1
  containers:
    - name: main
      image: $img
      imagePullPolicy: Never
$restricted_sc
      volumeMounts: [{name: shared, mountPath: /shared}]
      command: ["/bin/sh", "-c", "cat /shared/f"]
---
apiVersion: v1
kind: Pod
metadata: {name: restricted}
spec:
  restartPolicy: Never
$pod_sc
  containers:
    - name: main
      image: $img
      imagePullPolicy: Never
$restricted_sc
      command: ["/bin/sh", "-c", "id; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status"]
EOF
log "created pods net, sidecar, restricted in namespace $ns"

deadline=$((SECONDS + 90))
while [ $SECONDS -lt $deadline ]; do
  phases=$(k -n "$ns" get pods net sidecar restricted -o jsonpath='{.items[*].status.phase}' 2>/dev/null || true)
  echo "$phases" | grep -qE 'Pending|Running' || break
  sleep 1
done
for p in net sidecar restricted; do
  if [ "$(k -n "$ns" get pod "$p" -o jsonpath='{.status.phase}')" = Succeeded ]; then
    log "pod $p Succeeded"
  else
    log "FAIL: pod $p did not succeed: $(k -n "$ns" get pod "$p" -o jsonpath='{.status.phase} {.status.containerStatuses[*].state}' 2>&1)"
    fail=1
  fi
done

out=$(k -n "$ns" logs net 2>&1 || true); echo "$out" | sed 's/^/  net: /' >&2
echo "$out" | grep -q 'authenticated API call ok' && echo "$out" | grep -q gitVersion ||
  { log "FAIL: API server not reachable through 10.96.0.1"; fail=1; }
echo "$out" | grep -qF "$marker" || { log "FAIL: host server on $PADDOCK_HOST_IP:$port not reachable"; fail=1; }

out=$(k -n "$ns" logs sidecar -c main 2>&1 || true); echo "$out" | sed 's/^/  sidecar: /' >&2
echo "$out" | grep -q sidecar-was-here || { log "FAIL: native sidecar did not run before main"; fail=1; }

out=$(k -n "$ns" logs restricted 2>&1 || true); echo "$out" | sed 's/^/  restricted: /' >&2
echo "$out" | grep -q 'uid=1000' && echo "$out" | grep -qE '^Seccomp:[[:space:]]+2' &&
  echo "$out" | grep -qE '^NoNewPrivs:[[:space:]]+1' && echo "$out" | grep -qE '^CapEff:[[:space:]]+0+$' ||
  { log "FAIL: restricted pod not confined as expected"; fail=1; }

# The restricted profile is really enforced: a privileged pod is rejected.
if k -n "$ns" run priv --image "$img" --image-pull-policy Never --restart Never \
  --overrides '{"spec":{"containers":[{"name":"priv","image":"'"$img"'","securityContext":{"privileged":true}}]}}' \
  >/dev/null 2>&1; then
  log "FAIL: privileged pod was admitted into a restricted namespace"; fail=1
else
  log "privileged pod rejected by Pod Security admission (as expected)"
fi

# ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) is served and enforced.
k apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: paddock-smoke-deny}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}
  validations:
    - expression: "!has(object.metadata.labels) || !('paddock-smoke-deny' in object.metadata.labels)"
      message: denied by paddock-smoke-deny
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: paddock-smoke-deny}
spec:
  policyName: paddock-smoke-deny
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: $ns}
EOF
denied_cm() {
  k -n "$ns" create --dry-run=server -f - 2>&1 <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: denied, labels: {paddock-smoke-deny: "x"}}
EOF
}
vap=fail
for _ in $(seq 1 30); do # the policy takes a moment to be loaded
  if denied_cm | grep -q 'denied by paddock-smoke-deny' || [ "${PIPESTATUS[1]}" = 0 ]; then vap=ok; break; fi
  sleep 1
done
k -n "$ns" create configmap allowed --from-literal=a=b >/dev/null 2>&1 || vap=fail
k delete validatingadmissionpolicybinding,validatingadmissionpolicy paddock-smoke-deny >/dev/null 2>&1 || true
if [ "$vap" = ok ]; then log "ValidatingAdmissionPolicy (v1) enforced"; else log "FAIL: ValidatingAdmissionPolicy not enforced"; fail=1; fi

# The bridge's MAC is pinned (address type 3, NET_ADDR_SET): otherwise it follows the lowest MAC
# of its ports and pods that go take it along (see pin_bridge_mac in cluster.sh).
if [ "$(cat "/sys/class/net/$PADDOCK_BRIDGE/addr_assign_type" 2>/dev/null)" = 3 ]; then
  log "bridge MAC pinned"
else
  log "FAIL: the bridge's MAC is not pinned; it changes as pods come and go"; fail=1
fi

# NetworkPolicy egress enforcement (kube-router), in its own namespace.
if bash "$here/netpol-test.sh"; then log "NetworkPolicy enforced"; else log "FAIL: NetworkPolicy not enforced"; fail=1; fi

[ "$fail" = 0 ] && log "all smoke checks passed" || log "smoke checks FAILED"
exit "$fail"
