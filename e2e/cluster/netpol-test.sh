#!/usr/bin/env bash
# Proves the local cluster enforces NetworkPolicy egress rules (kube-router's policy controller,
# started by cluster.sh), from real pods using localhost/paddock/busybox:1. Pod A probes, pod B
# serves TCP 8080 (busybox httpd); the host serves TCP on 10.244.0.1 (python3 http.server) and
# DNS on 10.244.0.1:53/udp (a stub answering every A query with 192.0.2.53: the cluster has no
# DNS of its own, and the pods' resolv.conf names 127.0.0.1, which no policy can block):
#   (a) no policy: A connects to B, to the host, to the `kubernetes` Service 10.96.0.1:443, and
#       resolves a name through 10.244.0.1:53;
#   (b) a NetworkPolicy selecting A with policyTypes [Egress] and no egress rules: all four fail;
#   (c) plus a policy allowing A egress to pods labelled role=b: A reaches B again, and still
#       not the host, the Service or DNS.
# Probes run in A through `kubectl exec` (apiserver -> kubelet on the host, not A's network).
# Called by smoke-test.sh; runs alone too. Exit 0 only if all pass; removes its namespace and
# host servers.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$("$here/cluster.sh" env)"
export KUBECONFIG
ns=paddock-netpol
img=$PADDOCK_BUSYBOX_IMAGE
host=$PADDOCK_HOST_IP
k() { "$KUBECTL" --request-timeout=20s "$@"; }
log() { printf '[netpol %3ds] %s\n' "$SECONDS" "$*" >&2; }
fail=0

# free_port <from> <to>: the first port in that range nothing listens on (TCP).
free_port() {
  local p
  for p in $(seq "$1" "$2"); do [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }; done
  return 1
}
port=$(free_port 18191 18290)     # host TCP port outside the node-port range
np_port=$(free_port 31990 32089)  # host TCP port inside it (30000-32767): see the note below

pids=()
srv_dir=$(mktemp -d)
cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  rm -rf "$srv_dir"
  k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
echo ok >"$srv_dir/ok"
for p in "$port" "$np_port"; do
  python3 -m http.server --bind "$host" --directory "$srv_dir" "$p" >/dev/null 2>&1 &
  pids+=($!)
done
# A DNS stub: answers every A query with 192.0.2.53 (TEST-NET-1), other types with no answer.
python3 - "$host" >/dev/null 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 17:
        continue
    i = 12
    while i < len(q) and q[i] != 0:
        i += q[i] + 1
    qtype, end = q[i + 1:i + 3], i + 5
    a = qtype == b"\x00\x01"
    hdr = q[:2] + b"\x81\x80" + q[4:6] + (b"\x00\x01" if a else b"\x00\x00") + b"\x00\x00\x00\x00"
    ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton("192.0.2.53") if a else b""
    s.sendto(hdr + q[12:end] + ans, peer)
PY
pids+=($!)
for _ in $(seq 1 50); do
  [ -n "$(ss -Hltn "sport = :$port")" ] && [ -n "$(ss -Hltn "sport = :$np_port")" ] &&
    [ -n "$(ss -Hlun "sport = :53")" ] && break
  sleep 0.1
done
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { log "FAIL: cannot start the host servers on $host ($port, $np_port, 53/udp; is :53 taken?)"; exit 1; }
done

k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null
k label namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
k -n "$ns" wait --for=jsonpath='{.metadata.name}'=default serviceaccount/default --timeout=60s >/dev/null

pod() { # pod <name> <role> <command>
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, labels: {role: $2}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: main
      image: $img
      imagePullPolicy: Never
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: ["ALL"]}
      command: ["/bin/sh", "-c", "$3"]
---
EOF
}
{
  pod a a "trap 'exit 0' TERM; while :; do sleep 1; done"
  pod b b "mkdir -p /tmp/www && echo ok > /tmp/www/ok && exec httpd -f -p 8080 -h /tmp/www"
} | k -n "$ns" apply -f - >/dev/null
k -n "$ns" wait --for=condition=Ready pod/a pod/b --timeout=90s >/dev/null ||
  { log "FAIL: pods a, b not Ready"; k -n "$ns" get pods >&2; exit 1; }
b_ip=$(k -n "$ns" get pod b -o jsonpath='{.status.podIP}')
log "pods a ($(k -n "$ns" get pod a -o jsonpath='{.status.podIP}')) and b ($b_ip) Ready in namespace $ns"

# probe <name>: exit 0 if pod A reaches <name> (b, host, api, dns, nodeport).
probe() {
  local c
  case "$1" in
    b) c="nc -w 3 $b_ip 8080 </dev/null" ;;
    host) c="nc -w 3 $host $port </dev/null" ;;
    nodeport) c="nc -w 3 $host $np_port </dev/null" ;;
    api) c="nc -w 3 10.96.0.1 443 </dev/null" ;;
    dns) c="timeout 3 nslookup -type=a paddock-netpol.test $host 2>&1 | grep -q 192.0.2.53" ;;
  esac
  k -n "$ns" exec a -- /bin/sh -c "$c" >/dev/null 2>&1
}
what() {
  case "$1" in
    b) echo "pod B $b_ip:8080" ;; host) echo "host $host:$port" ;; nodeport) echo "host $host:$np_port" ;;
    api) echo "Service 10.96.0.1:443" ;; dns) echo "DNS $host:53/udp" ;;
  esac
}
# expect <reach|blocked> <target...>
expect() {
  local want=$1 t got; shift
  for t in "$@"; do
    if probe "$t"; then got=reach; else got=blocked; fi
    if [ "$got" = "$want" ]; then
      log "  A -> $(what "$t"): $got"
    else
      log "FAIL: A -> $(what "$t"): $got, expected $want"; fail=1
    fi
  done
}
# await <reach|blocked> <target>: until kube-router applied the policy (it syncs on events).
await() {
  local t0=$SECONDS want=$1 t=$2 got
  while [ $((SECONDS - t0)) -lt 30 ]; do
    if probe "$t"; then got=reach; else got=blocked; fi
    [ "$got" = "$want" ] && { log "  A -> $(what "$t"): $want after $((SECONDS - t0))s"; return 0; }
    sleep 0.5
  done
  log "FAIL: A -> $(what "$t") still not $want after 30 s"; fail=1
}

log "(a) no NetworkPolicy"
expect reach b host api dns

log "(b) NetworkPolicy deny-egress: podSelector role=a, policyTypes [Egress], no egress rules"
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress}
spec:
  podSelector: {matchLabels: {role: a}}
  policyTypes: [Egress]
EOF
await blocked b
expect blocked host api dns
# Not NetworkPolicy semantics, but kube-router's: its KUBE-ROUTER-INPUT chain lets traffic to the
# node's own addresses on the node-port range (30000-32767) pass before any pod's policy.
if probe nodeport; then
  log "  note: A -> $(what nodeport) still reaches (kube-router exempts node ports on the node's addresses)"
fi

log "(c) plus NetworkPolicy allow-b: podSelector role=a, egress to podSelector role=b"
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b}
spec:
  podSelector: {matchLabels: {role: a}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {role: b}}}]
EOF
await reach b
expect blocked host api dns

[ "$fail" = 0 ] && log "NetworkPolicy egress enforced" || log "NetworkPolicy checks FAILED"
exit "$fail"
