#!/usr/bin/env bash
# Paddock's local single-node Kubernetes cluster (demo and e2e), without systemd or a registry.
#
#   cluster.sh up        start (idempotent; recovers from a cluster killed without `down`);
#                        last stdout line = admin kubeconfig path; exit 0 = usable
#   cluster.sh down      stop everything, remove pods/containers/mounts/links/iptables rules
#   cluster.sh status    component/node health; exit 0 only if healthy
#   cluster.sh restart C stop and start one component (etcd, kube-apiserver, kubelet) in place
#   cluster.sh host-ip   address pods use to reach services on the host (bridge gateway)
#   cluster.sh kubeconfig | env
#
# Runs as root on Debian 12. Components run as background processes with pid files and logs in
# $PADDOCK_CLUSTER_DIR (default /var/lib/paddock-cluster): containerd, etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, and kube-router's network policy
# controller (NetworkPolicy enforcement). See README.md in this directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${PADDOCK_CLUSTER_DIR:-/var/lib/paddock-cluster}
CACHE=${PADDOCK_CACHE:-/var/cache/paddock}
RUN=${PADDOCK_CLUSTER_RUN:-/run/paddock-cluster}
NODE=${PADDOCK_NODE_NAME:-paddock-node}
export PADDOCK_CLUSTER_DIR=$DIR PADDOCK_CACHE=$CACHE PADDOCK_CLUSTER_RUN=$RUN

BRIDGE=cni0
POD_SUBNET=10.244.0.0/24
HOST_IP=10.244.0.1             # bridge gateway = node IP = apiserver advertise address
SERVICE_RANGE=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
CNI_NETWORK=paddock
PAUSE_IMAGE=localhost/paddock/pause:1
BUSYBOX_IMAGE=localhost/paddock/busybox:1
PKI_SCHEME=1                   # bump to force regenerating certificates
UP_TIMEOUT=${PADDOCK_CLUSTER_UP_TIMEOUT:-240}

KUBECONFIG_ADMIN=$DIR/admin.kubeconfig
SOCK=$RUN/containerd/containerd.sock
CTRD_ROOT=$DIR/containerd/root
CTRD_STATE=$RUN/containerd/state
POD_RESOLV_CONF=${PADDOCK_CLUSTER_POD_RESOLV_CONF:-$DIR/config/pod-resolv.conf}
KUBECTL=${KUBECTL:-}
if [ -z "$KUBECTL" ]; then
  for k in /usr/lib/google-cloud-sdk/bin/kubectl.1.33 "$(command -v kubectl.1.33 || true)" "$(command -v kubectl || true)"; do
    [ -n "$k" ] && [ -x "$k" ] && { KUBECTL=$k; break; }
  done
fi

# Control-plane components in start order (containerd is handled separately).
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router)
KUBE_ROUTER_HEALTH_PORT=20244  # kube-router's /healthz (its default; it binds all addresses)
PORTS=(2379 2380 "$API_PORT" 10257 10259 10250 10248 10249 10256 "$KUBE_ROUTER_HEALTH_PORT")

log() { printf '[cluster %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=10s "$@"; }

# ---------------------------------------------------------------- processes

# pid_of <name>: pid of our running component <name> (from its pid file), or nothing.
pid_of() {
  local f=$DIR/pids/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in *"$DIR/"*) echo "$pid" ;; esac
}

# stray_pids <argv0-basename> <marker>: processes of that binary whose command line contains
# <marker> (our state dir or socket): ours, possibly left from a run whose pid files are gone.
stray_pids() {
  ps -eo pid=,args= | awk -v n="$1" -v m="$2" \
    '{ a0 = $2; sub(/.*\//, "", a0); if (a0 == n && index($0, m) > 0) print $1 }'
}

# start_proc <name> <command...>: run detached (own session, no inherited stdio), pid file + log.
start_proc() {
  local name=$1; shift
  [ -f "$DIR/logs/$name.log" ] && mv -f "$DIR/logs/$name.log" "$DIR/logs/$name.log.prev"
  setsid "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 8>&- &
  echo $! >"$DIR/pids/$name.pid"
  log "started $name (pid $!, log $DIR/logs/$name.log)"
}

# kill_pids <what> <grace-seconds> <pid...>: SIGTERM, wait up to <grace-seconds>, then SIGKILL.
kill_pids() {
  local what=$1 grace=$2; shift 2
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  local i alive
  for i in $(seq 1 $((grace * 10))); do
    alive=()
    for p in "$@"; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && alive+=("$p"); done
    [ ${#alive[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  log "$what did not stop on SIGTERM within $grace s; sending SIGKILL to ${alive[*]}"
  kill -KILL "${alive[@]}" 2>/dev/null || true
  sleep 0.2
}

stop_component() {
  local name=$1 pids grace=2
  # The kubelet and kube-proxy get time to finish cleanly; the control plane's state is
  # discarded anyway (the apiserver alone would spend ~10 s draining on SIGTERM).
  case "$name" in kubelet | kube-proxy | kube-router) grace=10 ;; esac
  pids=$( { pid_of "$name"; stray_pids "$name" "$DIR/"; } | sort -u)
  if [ -n "$pids" ]; then
    log "stopping $name (pid $(echo $pids))"
    # shellcheck disable=SC2086
    kill_pids "$name" "$grace" $pids
  fi
  rm -f "$DIR/pids/$name.pid"
}

# ---------------------------------------------------------------- prerequisites

ensure_packages() {
  local missing=()
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  command -v containerd-shim-runc-v2 >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] &&
    [ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v ipset >/dev/null || missing+=(ipset)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v umoci >/dev/null || missing+=(umoci)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v gcc >/dev/null || missing+=(gcc)
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/aarch64-linux-gnu/libc.a ] || missing+=(libc6-dev)
  dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing missing packages: ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "run as root: the local cluster runs containerd and the kubelet (and installs ${missing[*]})"
    # A fresh machine's package lists may be missing or stale: update once if the install fails.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$DIR/logs/apt.log" 2>&1 ||
      { apt-get update >>"$DIR/logs/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$DIR/logs/apt.log" 2>&1; } ||
      die "apt-get install ${missing[*]} failed, see $DIR/logs/apt.log"
  fi
  [ -n "$KUBECTL" ] || die "kubectl not found (set KUBECTL=...)"
}

ensure_binaries() {
  log "ensuring Kubernetes/etcd/kube-router binaries (build-binaries.sh; no-op when cached)"
  "$here/build-binaries.sh" etcd kubernetes kube-router
  eval "$("$here/build-binaries.sh" print-env)"
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    [ -x "$K8S_BIN/$b" ] || die "missing $K8S_BIN/$b"
  done
  [ -x "$ETCD_BIN/etcd" ] || die "missing $ETCD_BIN/etcd"
  [ -x "$KUBE_ROUTER_BIN/kube-router" ] || die "missing $KUBE_ROUTER_BIN/kube-router"
}

# ---------------------------------------------------------------- PKI and kubeconfigs

# sign <name> <subject> <extendedKeyUsage> [subjectAltName]: EC P-256 key + cert signed by our CA.
sign() {
  local name=$1 subj=$2 eku=$3 san=${4:-} d=$DIR/pki
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$name.key" \
    -out "$d/$name.csr" -subj "$subj" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  rm -f "$d/$name.csr" "$d/$name.ext"
  chmod 600 "$d/$name.key"
}

# kubeconfig <file> <cert-name>: kubeconfig with embedded credentials for https://127.0.0.1:6443.
kubeconfig() {
  local d=$DIR/pki
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: paddock
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$d/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$d/$2.crt")
    client-key-data: $(base64 -w0 <"$d/$2.key")
contexts:
- name: paddock
  context:
    cluster: paddock
    user: $2
current-context: paddock
EOF
  chmod 600 "$1"
}

ensure_pki() {
  local stamp="scheme=$PKI_SCHEME node=$NODE host=$HOST_IP svc=$API_SERVICE_IP port=$API_PORT dir=$DIR"
  if [ -f "$DIR/pki/stamp" ] && [ "$(cat "$DIR/pki/stamp")" = "$stamp" ] && [ -f "$KUBECONFIG_ADMIN" ]; then
    # A PKI made before kube-router was part of the cluster: add its credentials only.
    [ -f "$DIR/kube-router.kubeconfig" ] || sign_kube_router
    return 0
  fi
  log "generating PKI and kubeconfigs in $DIR/pki"
  rm -rf "$DIR/pki"
  mkdir -p "$DIR/pki"
  chmod 700 "$DIR/pki"
  local d=$DIR/pki
  cat >"$d/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = paddock-cluster-ca
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" \
    -out "$d/ca.crt" -days 3650 -config "$d/ca.cnf" 2>/dev/null
  rm -f "$d/ca.cnf"
  chmod 600 "$d/ca.key"
  sign apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE,IP:$API_SERVICE_IP,IP:127.0.0.1,IP:$HOST_IP"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  sign admin "/O=system:masters/CN=paddock-admin" clientAuth
  sign kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  sign kube-scheduler "/CN=system:kube-scheduler" clientAuth
  sign kube-proxy "/CN=system:kube-proxy" clientAuth
  sign kubelet "/O=system:nodes/CN=system:node:$NODE" clientAuth
  sign kubelet-serving "/O=system:nodes/CN=system:node:$NODE" serverAuth "DNS:$NODE,DNS:localhost,IP:$HOST_IP,IP:127.0.0.1"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/sa.key" 2>/dev/null
  openssl pkey -in "$d/sa.key" -pubout -out "$d/sa.pub"
  chmod 600 "$d/sa.key"
  kubeconfig "$DIR/kube-controller-manager.kubeconfig" kube-controller-manager
  kubeconfig "$DIR/kube-scheduler.kubeconfig" kube-scheduler
  kubeconfig "$DIR/kube-proxy.kubeconfig" kube-proxy
  kubeconfig "$DIR/kubelet.kubeconfig" kubelet
  kubeconfig "$KUBECONFIG_ADMIN" admin
  sign_kube_router
  echo "$stamp" >"$d/stamp"
}

# kube-router's client certificate: user system:paddock:kube-router, no group; its rights come
# from the ClusterRole that apply_kube_router_rbac binds to that user.
sign_kube_router() {
  sign kube-router "/CN=system:paddock:kube-router" clientAuth
  kubeconfig "$DIR/kube-router.kubeconfig" kube-router
}

# ---------------------------------------------------------------- configuration files

write_configs() {
  local c=$DIR/config
  # Can this process lower an oom_score_adj (CAP_SYS_RESOURCE)? Not inside some VMs/containers.
  if (echo -999 >/proc/self/oom_score_adj) 2>/dev/null; then
    RESTRICT_OOM=false OOM_SCORE_ADJ=-999
  else
    RESTRICT_OOM=true OOM_SCORE_ADJ=0
  fi
  mkdir -p "$c" "$DIR/cni/net.d" "$DIR/cni/ipam" "$DIR/containerd/opt" "$CTRD_ROOT"
  # Pods get no reachable DNS server by default (no CoreDNS; nothing should leave the machine).
  [ -f "$c/pod-resolv.conf" ] || printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$c/pod-resolv.conf"

  cat >"$DIR/cni/net.d/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$HOST_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
EOF

  cat >"$c/containerd.toml" <<EOF
# Generated by e2e/cluster/cluster.sh; containerd $(containerd --version | awk '{print $3}')
version = 2
root = "$CTRD_ROOT"
state = "$CTRD_STATE"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$SOCK"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This VM withholds CAP_SYS_RESOURCE even from root, so no process may lower its
  # oom_score_adj below 0; clamp what the kubelet asks for (-998 for sandboxes) instead of
  # failing every sandbox with "failed to update /proc/self/oom_score_adj: Permission denied".
  restrict_oom_score_adj = $RESTRICT_OOM
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
    max_conf_num = 1
EOF

  cat >"$c/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $HOST_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $DIR/pki/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 30s
  x509:
    clientCAFile: $DIR/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 30s
    cacheUnauthorizedTTL: 10s
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
oomScoreAdj: $OOM_SCORE_ADJ
clusterDomain: cluster.local
resolvConf: $POD_RESOLV_CONF
volumePluginDir: $DIR/kubelet-plugins/volume/exec
podLogsDirectory: $DIR/pod-logs
# No image GC (images are imported, not pulled; there is no registry to get them back from).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
# A busy shared disk must not evict test pods.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 30s
maxPods: 110
podPidsLimit: -1
serializeImagePulls: false
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
nodeStatusUpdateFrequency: 10s
syncFrequency: 30s
runtimeRequestTimeout: 2m
containerLogMaxSize: 10Mi
containerLogMaxFiles: 2
EOF

  cat >"$c/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_SUBNET
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["primary"]
iptables:
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 1s
# Leave the host's conntrack sysctls alone.
oomScoreAdj: $OOM_SCORE_ADJ
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# ---------------------------------------------------------------- images

# build_image <out.tar> <name> <rootfs-populate-function> <umoci config args...>
build_image() {
  local out=$1 name=$2 populate=$3; shift 3
  local t
  t=$(mktemp -d "${TMPDIR:-/tmp}/paddock-image.XXXXXX")
  (
    set -e
    cd "$t"
    umoci init --layout oci
    umoci new --image oci:img
    umoci unpack --image oci:img bundle >/dev/null
    "$populate" "$t/bundle/rootfs"
    umoci repack --image oci:img bundle
    umoci config --image oci:img --os linux --architecture "$(dpkg --print-architecture)" --no-history "$@"
    rm -f "$out.tmp"
    skopeo copy --quiet "oci:oci:img" "docker-archive:$out.tmp:$name"
  ) >"$t.log" 2>&1 || { cat "$t.log" >&2; rm -rf "$t" "$t.log"; die "building image $name failed"; }
  mv -f "$out.tmp" "$out"
  rm -rf "$t" "$t.log"
}

populate_pause() {
  gcc -static -Os -Wall -Wextra -o "$1/pause" "$here/pause.c"
  strip "$1/pause"
}

populate_busybox() {
  local r=$1 a
  mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root" "$r/home/paddock"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
  done
  chmod 1777 "$r/tmp"
  chown 1000:1000 "$r/home/paddock"
  printf 'root:x:0:0:root:/root:/bin/sh\npaddock:x:1000:1000:paddock:/home/paddock:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\npaddock:x:1000:\nnogroup:x:65534:\n' >"$r/etc/group"
}

# ensure_image <name> <cache-key> <populate-fn> <umoci config args...>: build (cached in
# $CACHE/images) and import into containerd's k8s.io namespace unless already there.
ensure_image() {
  local name=$1 key=$2 populate=$3; shift 3
  local base=${name##*/}; base=${base%%:*}
  local tar=$CACHE/images/$base-$key.tar
  mkdir -p "$CACHE/images"
  if [ ! -s "$tar" ]; then
    log "building image $name ($tar)"
    build_image "$tar" "$name" "$populate" "$@"
  fi
  local have
  have=$(ctr_ images ls "name==$name" 2>/dev/null || true)
  if [[ "$have" != *"paddock.cache-key=$key"* ]]; then
    log "importing $name into containerd"
    "$here/import-image.sh" "$tar" >&2
    ctr_ images label "$name" "paddock.cache-key=$key" >/dev/null
  fi
}

ensure_images() {
  local pkey bkey
  pkey=$(sha256sum <"$here/pause.c" | cut -c1-12)
  bkey=$(dpkg-query -W -f '${Version}' busybox-static | sha256sum | cut -c1-12)
  ensure_image "$PAUSE_IMAGE" "$pkey" populate_pause --config.entrypoint /pause --config.user 65535:65535
  ensure_image "$BUSYBOX_IMAGE" "$bkey" populate_busybox --config.cmd /bin/sh \
    --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin
}

# ---------------------------------------------------------------- teardown

containerd_pid() { { pid_of containerd; stray_pids containerd "$DIR/"; } | sort -u | head -1; }

start_containerd() {
  mkdir -p "$RUN/containerd"
  start_proc containerd containerd --config "$DIR/config/containerd.toml"
  local i
  for i in $(seq 1 100); do
    ctr --address "$SOCK" version >/dev/null 2>&1 && return 0
    [ -n "$(pid_of containerd)" ] || break
    sleep 0.2
  done
  return 1
}

stop_containerd() {
  local pids
  pids=$( { pid_of containerd; stray_pids containerd "$DIR/"; } | sort -u)
  if [ -n "$pids" ]; then
    log "stopping containerd (pid $(echo $pids))"
    # shellcheck disable=SC2086
    kill_pids containerd 10 $pids
  fi
  rm -f "$DIR/pids/containerd.pid"
}

# Remove every container and pod sandbox of the k8s.io namespace through containerd.
purge_containers() {
  [ -f "$DIR/config/containerd.toml" ] && [ -d "$CTRD_ROOT" ] || return 0
  # After a clean `down` nothing can be left in containerd.
  [ -f "$DIR/clean-down" ] && [ -z "$(containerd_pid)" ] && return 0
  if [ -z "$(containerd_pid)" ]; then
    log "starting containerd to remove leftover containers"
    if ! start_containerd; then
      log "containerd does not start; discarding its state (images are re-imported from $CACHE/images)"
      stop_containerd
      NUKE_CONTAINERD=1
      return 0
    fi
  fi
  local ids id
  ids=$(ctr_ containers ls -q 2>/dev/null || true)
  [ -n "$ids" ] || return 0
  log "removing $(echo "$ids" | wc -l) containers/sandboxes"
  for id in $ids; do
    ctr_ containers info "$id" 2>/dev/null | grep -o '"/var/run/netns/cni-[0-9a-f-]*"\|"/run/netns/cni-[0-9a-f-]*"' |
      tr -d '"' >>"$DIR/stale-netns" || true
    ctr_ tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true
  done
  sleep 0.3
  for id in $ids; do
    ctr_ tasks delete --force "$id" >/dev/null 2>&1 || true
    ctr_ containers delete "$id" >/dev/null 2>&1 || true
  done
}

# Mount points strictly below <dir> (deepest first).
mounts_under() {
  awk -v d="$1" '{ m=$5; gsub(/\\040/, " ", m); if (index(m, d "/") == 1) print m }' /proc/self/mountinfo |
    awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

unmount_all() {
  local m n=0 dir
  for dir in "$@"; do
    while IFS= read -r m; do
      [ -n "$m" ] || continue
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
      n=$((n + 1))
    done < <(mounts_under "$dir")
  done
  [ "$n" -eq 0 ] || log "unmounted $n mount points"
}

# Remove every KUBE-* / CNI-* chain and every rule jumping to one, in all tables of the
# iptables and ip6tables (whichever backend `iptables` is); other rules are left alone.
# (Saves are captured in variables: `iptables-save | grep -q` under pipefail fails with
# SIGPIPE on big tables.)
clean_iptables() {
  local ipt t n=0 line c chains saved
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    for t in nat filter mangle raw; do
      saved=$("$ipt-save" -t "$t" 2>/dev/null || true)
      grep -qE -- '(KUBE-|CNI-)' <<<"$saved" || continue
      n=$((n + 1))
      # Fast path: restore the table without our chains and rules (one transaction).
      grep -vE -- '(KUBE-|CNI-)' <<<"$saved" | "$ipt-restore" -w 5 -T "$t" 2>/dev/null || true
      saved=$("$ipt-save" -t "$t" 2>/dev/null || true)
      grep -qE -- '(KUBE-|CNI-)' <<<"$saved" || continue
      # Slow path: delete rule by rule.
      # Jumps from other chains (builtin ones) into ours.
      while IFS= read -r line; do
        eval "\"\$ipt\" -w 5 -t \"\$t\" -D ${line#-A }" 2>/dev/null || true
      done < <(grep -E -- '^-A ' <<<"$saved" | grep -vE -- '^-A (KUBE-|CNI-)' |
        grep -E -- '-[jg] (KUBE-|CNI-)' || true)
      chains=$(grep -oE -- '^:(KUBE-|CNI-)[^ ]+' <<<"$saved" | cut -c2- || true)
      for c in $chains; do "$ipt" -w 5 -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$ipt" -w 5 -t "$t" -X "$c" 2>/dev/null || true; done
      saved=$("$ipt-save" -t "$t" 2>/dev/null || true)
      if grep -qE -- '(KUBE-|CNI-)' <<<"$saved"; then
        log "WARNING: $ipt table $t still has KUBE-/CNI- rules:"
        grep -E -- '(KUBE-|CNI-)' <<<"$saved" | head -5 >&2
      fi
    done
  done
  [ "$n" -eq 0 ] || log "removed KUBE-*/CNI-* iptables chains and rules from $n tables"
}

# kube-router's ipsets (KUBE-SRC-*, KUBE-DST-* of its policies; inet6: ones if IPv6 were on), once
# clean_iptables removed the rules that reference them (a set in use cannot be destroyed). Its
# process is stopped first: it would recreate them.
clean_ipsets() {
  command -v ipset >/dev/null || return 0
  local sets s n=0
  sets=$(ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-|kube-router-)' || true)
  for s in $sets; do
    ipset destroy "$s" 2>/dev/null && n=$((n + 1)) || log "WARNING: cannot destroy ipset $s"
  done
  [ "$n" -eq 0 ] || log "destroyed $n kube-router ipsets"
}

clean_network() {
  local ns l busy=()
  # Network namespaces of pod sandboxes (recorded from containerd, plus unused CRI ones).
  for ns in $({ cat "$DIR/stale-netns" 2>/dev/null; ls -d /run/netns/cni-* 2>/dev/null; } | sort -u); do
    [ -e "$ns" ] || continue
    if [ -z "$(ip netns pids "${ns##*/}" 2>/dev/null)" ]; then
      umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
      rm -f "$ns" 2>/dev/null || busy+=("$ns")
    fi
  done
  # A pod's namespace mounted before `ip netns add` bind-mounted /run/netns onto itself lies
  # under that bind mount: its path is no mount point in the view umount sees, and rm says
  # EBUSY. Lifting the bind mount (`ip netns` makes it again when it needs it) uncovers it.
  if [ ${#busy[@]} -gt 0 ] && mountpoint -q /run/netns; then
    log "${#busy[@]} pod network namespace(s) hidden under the /run/netns bind mount: lifting it"
    umount -l /run/netns 2>/dev/null || true
    for ns in "${busy[@]}"; do
      umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
      rm -f "$ns" 2>/dev/null || log "cannot remove $ns (left in place; new pods get new names)"
    done
  fi
  rm -f "$DIR/stale-netns"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    for l in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$l" 2>/dev/null || true
    done
    ip link del "$BRIDGE"
    log "removed bridge $BRIDGE"
  fi
  clean_iptables
  clean_ipsets
  rm -rf "$DIR/cni/ipam"
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
}

# Processes left in pod cgroups (e.g. a container whose shim was killed) and our shims.
kill_pod_leftovers() {
  local p pids=()
  for p in $(grep -l '/kubepods' /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3); do
    [ "$p" = "$$" ] || pids+=("$p")
  done
  for p in $(stray_pids containerd-shim-runc-v2 "$SOCK"); do pids+=("$p"); done
  if [ ${#pids[@]} -gt 0 ]; then
    log "killing ${#pids[@]} leftover pod/shim processes"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  fi
  # Empty pod cgroups (the kubelet recreates them).
  local sub
  for sub in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$sub" ] && find "$sub" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# teardown: everything `down` does. Keeps $DIR/pki, kubeconfigs, logs and containerd's images.
teardown() {
  NUKE_CONTAINERD=0
  local c
  for c in kube-router kubelet kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_component "$c"
  done
  purge_containers
  stop_containerd
  kill_pod_leftovers
  unmount_all "$DIR" "$RUN" "$CTRD_ROOT"
  clean_network
  local left
  left=$( { mounts_under "$DIR"; mounts_under "$RUN"; } | head -3)
  [ -z "$left" ] || die "mounts remain, not deleting state: $left"
  local l
  for l in /var/log/containers/*.log; do
    case "$(readlink "$l" 2>/dev/null)" in "$DIR"/*) rm -f "$l" ;; esac
  done
  rm -rf --one-file-system "$DIR/etcd" "$DIR/kubelet" "$DIR/kubelet-plugins" "$DIR/pod-logs" "$RUN" \
    "$CTRD_ROOT/io.containerd.grpc.v1.cri/sandboxes" "$CTRD_ROOT/io.containerd.grpc.v1.cri/containers" \
    "$CTRD_ROOT/io.containerd.runtime.v2.task"
  if [ "$NUKE_CONTAINERD" = 1 ]; then rm -rf --one-file-system "$CTRD_ROOT"; fi
  rm -f "$DIR"/pids/*.pid
  touch "$DIR/clean-down"
}

# ---------------------------------------------------------------- start

preflight_ports() {
  local p busy
  for p in "${PORTS[@]}"; do
    busy=$(ss -Hltnp "sport = :$p" 2>/dev/null | head -1)
    [ -z "$busy" ] || die "port $p is in use by another process: $busy"
  done
}

host_setup() {
  modprobe br_netfilter 2>/dev/null || true
  modprobe overlay 2>/dev/null || true
  echo 1 >/proc/sys/net/ipv4/ip_forward
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || die "br_netfilter is not available"
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables
  # The bridge exists before any pod so that its gateway address (= node IP, apiserver
  # advertise address, host-ip) is always there; the CNI bridge plugin adopts it.
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$HOST_IP/${POD_SUBNET#*/}" dev "$BRIDGE"
  pin_bridge_mac
  ip link set "$BRIDGE" up
}

# pin_bridge_mac: gives the bridge a MAC address set by hand, so that it keeps it. A Linux bridge
# whose address was not set takes the lowest MAC of its ports (br_stp_recalculate_bridge_id in
# net/bridge/br_stp_if.c), so it changes whenever the pod whose host-side veth had that MAC goes.
# Pods keep the old MAC in their ARP cache, so their connections to the host (model endpoint,
# git daemon) stall until that entry fails: 68 s for a connect in a reproduction with two
# network namespaces; in CI, runs' model calls got 502 from their gateway after about 30 s. That
# failed e2e tests at random when namespaces were being deleted.
# The CNI bridge plugin of Debian's containernetworking-plugins 1.1.1 does not set it either.
# Address type 3 is NET_ADDR_SET (include/uapi/linux/netdevice.h): already pinned.
pin_bridge_mac() {
  [ "$(cat "/sys/class/net/$BRIDGE/addr_assign_type" 2>/dev/null)" != 3 ] || return 0
  # Setting the address it has now pins it without changing it for pods already running.
  local mac
  mac=$(cat "/sys/class/net/$BRIDGE/address")
  ip link set "$BRIDGE" address "$mac"
  log "bridge $BRIDGE: MAC pinned to $mac"
}

start_etcd() {
  start_proc etcd "$ETCD_BIN/etcd" --name paddock --data-dir "$DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster paddock=http://127.0.0.1:2380 --initial-cluster-state new \
    --unsafe-no-fsync --snapshot-count 10000 --quota-backend-bytes 2147483648 --log-level warn
  wait_for "etcd" 60 curl -fsS http://127.0.0.1:2379/health
}

# write_audit_policy: the API server's audit policy: every write (create, update, patch, delete,
# deletecollection) at level Metadata (who, which user agent, verb, object, response code, and
# microsecond timestamps; no bodies) and container log reads (`pods/log`), nothing else. Leases
# are left out (heartbeats, not a controller's work on objects). Read by `make bench` to count
# each client's writes (Events apart), 409 conflicts and log reads; the log is $DIR/logs/audit.log (JSON lines, rotated at 500 MB, 3 kept).
write_audit_policy() {
  mkdir -p "$DIR/config"
  cat >"$DIR/config/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources:
      - group: coordination.k8s.io
        resources: [leases]
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: Metadata
    verbs: [get]
    resources:
      - group: ""
        resources: [pods/log]
  - level: None
POLICY
}

start_apiserver() {
  local p=$DIR/pki
  write_audit_policy
  start_proc kube-apiserver "$K8S_BIN/kube-apiserver" \
    --advertise-address "$HOST_IP" --bind-address 0.0.0.0 --secure-port "$API_PORT" \
    --etcd-servers http://127.0.0.1:2379 \
    --service-cluster-ip-range "$SERVICE_RANGE" \
    --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --enable-priority-and-fairness=true \
    --max-requests-inflight 200 --max-mutating-requests-inflight 100 --event-ttl 30m \
    --endpoint-reconciler-type lease \
    --audit-policy-file "$DIR/config/audit-policy.yaml" --audit-log-path "$DIR/logs/audit.log" \
    --audit-log-format json --audit-log-maxsize 500 --audit-log-maxbackup 3 \
    --v 1
}

start_controllers() {
  local p=$DIR/pki
  start_proc kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --service-cluster-ip-range "$SERVICE_RANGE" --allocate-node-cidrs=false \
    --profiling=false --v 1
  start_proc kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v 1
}

start_node() {
  mkdir -p "$DIR/kubelet"
  start_proc kubelet "$K8S_BIN/kubelet" --config "$DIR/config/kubelet.yaml" \
    --kubeconfig "$DIR/kubelet.kubeconfig" --root-dir "$DIR/kubelet" \
    --hostname-override "$NODE" --node-ip "$HOST_IP" --v 1
  start_proc kube-proxy "$K8S_BIN/kube-proxy" --config "$DIR/config/kube-proxy.yaml" --v 1
}

# kube-router's RBAC: its informers list and watch pods, namespaces, network policies, nodes, and
# (created at start even with the service proxy and router off) services, endpoints and
# endpoint slices. Read-only; applied on every `up` (etcd starts empty).
apply_kube_router_rbac() {
  kc apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: paddock:kube-router}
rules:
  - apiGroups: [""]
    resources: [pods, namespaces, nodes, services, endpoints]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: paddock:kube-router}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: paddock:kube-router}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:paddock:kube-router}
EOF
}

# start_kube_router: kube-router v2 with only its network policy controller, as a host process
# (like kube-proxy): NetworkPolicy enforcement with iptables (filter table: KUBE-ROUTER-INPUT,
# -FORWARD, -OUTPUT, jumped to first from INPUT/FORWARD/OUTPUT; per-pod KUBE-POD-FW-* and
# per-policy KUBE-NWPLCY-* chains) and ipset (KUBE-SRC-*, KUBE-DST-*). No routing (the bridge
# does that), no service proxy (kube-proxy does), no CNI config. It finds the node by
# --hostname-override (the node must be registered: it exits otherwise) and takes its
# InternalIP (10.244.0.1) as the node address; local pods are those whose hostIP is that.
# --service-cluster-ip-range: its INPUT chain lets traffic to that range pass (its default,
# 10.96.0.0/12, is wider than ours). It needs no pod CIDR (that is for its router).
start_kube_router() {
  start_proc kube-router "$KUBE_ROUTER_BIN/kube-router" \
    --kubeconfig "$DIR/kube-router.kubeconfig" --hostname-override "$NODE" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --enable-ipv4=true --enable-ipv6=false \
    --service-cluster-ip-range "$SERVICE_RANGE" \
    --health-port "$KUBE_ROUTER_HEALTH_PORT" --metrics-port 0 --v 0
}

# kube_router_synced: /healthz answers and its first full policy sync wrote the explicit-ACCEPT
# rule at the end of KUBE-ROUTER-FORWARD (written only by a full sync).
kube_router_synced() {
  curl -fsS --max-time 2 "http://127.0.0.1:$KUBE_ROUTER_HEALTH_PORT/healthz" >/dev/null 2>&1 || return 1
  local saved
  saved=$(iptables-save -t filter 2>/dev/null || true)
  grep -qE -- '^-A FORWARD .*-j KUBE-ROUTER-FORWARD' <<<"$saved" &&
    grep -qE -- '^-A KUBE-ROUTER-FORWARD .*explicitly ACCEPT traffic that comply to network policies' <<<"$saved"
}

# wait_for <what> <timeout-s> <command...>
wait_for() {
  local what=$1 timeout=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  log "$what: ready after $((SECONDS - start))s"
}

node_ready() {
  [ "$(kc get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# Pods can be created: the default service account and the root CA config map (which every
# projected service-account token volume needs) exist.
default_sa() {
  kc -n default get serviceaccount default >/dev/null 2>&1 &&
    kc -n default get configmap kube-root-ca.crt >/dev/null 2>&1
}

dump_logs() {
  local c
  for c in containerd "${COMPONENTS[@]}"; do
    [ -f "$DIR/logs/$c.log" ] || continue
    echo "----- last lines of $DIR/logs/$c.log" >&2
    grep -E '^E|level=error|"level":"(error|fatal)"|[Ff]ailed' "$DIR/logs/$c.log" | tail -8 >&2 || true
    tail -3 "$DIR/logs/$c.log" >&2
  done
}

healthy() {
  local c
  for c in containerd "${COMPONENTS[@]}"; do [ -n "$(pid_of "$c")" ] || return 1; done
  curl -fsSk --max-time 5 "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 || return 1
  node_ready
}

# One `up`/`down` at a time (fd 8; closed for the daemons we start).
lock() {
  exec 8>"$DIR/lock"
  if ! flock -n 8; then
    log "another cluster.sh up/down is running; waiting for it"
    flock 8
  fi
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/config"
  lock
  ensure_packages
  if healthy; then
    pin_bridge_mac  # a cluster brought up before the pin existed
    log "cluster already running and healthy"
    echo "$KUBECONFIG_ADMIN"
    return 0
  fi
  ensure_binaries
  log "cleaning up any previous cluster state"
  teardown
  preflight_ports
  ensure_pki
  write_configs
  host_setup
  mkdir -p "$DIR/logs" "$DIR/pids"
  rm -f "$DIR/clean-down"
  start_containerd || { dump_logs; die "containerd did not start"; }
  log "containerd is up"
  ensure_images
  start_etcd || { dump_logs; die "etcd did not become healthy"; }
  start_apiserver
  # The kubelet and kube-proxy retry until the apiserver answers: starting them now saves
  # seconds. The controller-manager and scheduler exit if RBAC is not bootstrapped yet.
  start_node
  wait_for "kube-apiserver /readyz" 120 curl -fsSk "https://127.0.0.1:$API_PORT/readyz" ||
    { dump_logs; die "kube-apiserver did not become ready"; }
  start_controllers
  wait_for "node $NODE Ready" "$UP_TIMEOUT" node_ready || { dump_logs; die "node did not become Ready"; }
  # kube-router looks its node up once at start (and exits if it is not registered yet); its
  # first sync overlaps the wait for the default service account.
  apply_kube_router_rbac || { dump_logs; die "cannot apply kube-router's RBAC"; }
  start_kube_router
  wait_for "default service account + kube-root-ca.crt" 60 default_sa || { dump_logs; die "no default service account"; }
  wait_for "kube-router network policy controller synced" 60 kube_router_synced ||
    { dump_logs; die "kube-router did not start enforcing NetworkPolicy"; }
  log "cluster is up (kubeconfig $KUBECONFIG_ADMIN, host-ip $HOST_IP, images $PAUSE_IMAGE $BUSYBOX_IMAGE)"
  echo "$KUBECONFIG_ADMIN"
}

# cmd_restart <component>: stop one running component (SIGTERM, then SIGKILL after its grace) and
# start it again with the same flags, for the reliability drills; prints the seconds it took
# until the component answered again.
cmd_restart() {
  local c=${1:-} t0=$SECONDS
  [ "$(id -u)" = 0 ] || die "must run as root"
  lock
  # The binaries of the running cluster (no build: the drills time this).
  eval "$("$here/build-binaries.sh" print-env)"
  case "$c" in
    etcd) stop_component etcd; start_etcd ;;
    kube-apiserver)
      stop_component kube-apiserver; start_apiserver
      wait_for "kube-apiserver /readyz" 120 curl -fsSk "https://127.0.0.1:$API_PORT/readyz" ;;
    kubelet)
      stop_component kubelet
      start_proc kubelet "$K8S_BIN/kubelet" --config "$DIR/config/kubelet.yaml" \
        --kubeconfig "$DIR/kubelet.kubeconfig" --root-dir "$DIR/kubelet" \
        --hostname-override "$NODE" --node-ip "$HOST_IP" --v 1
      wait_for "kubelet /healthz" 60 curl -fsS http://127.0.0.1:10248/healthz ;;
    *) die "restart: expected etcd, kube-apiserver or kubelet, got '$c'" ;;
  esac
  echo "$((SECONDS - t0))"
}

cmd_down() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  mkdir -p "$DIR/pids"
  lock
  teardown
  log "cluster is down (kept: $DIR/pki, kubeconfigs, logs, containerd images in $CTRD_ROOT)"
}

cmd_status() {
  local ok=0 c pid
  for c in containerd "${COMPONENTS[@]}"; do
    pid=$(pid_of "$c")
    if [ -n "$pid" ]; then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s NOT running\n' "$c"; ok=1
    fi
  done
  if curl -fsSk --max-time 5 "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
    printf '%-24s ready\n' "apiserver /readyz"
  else
    printf '%-24s NOT ready\n' "apiserver /readyz"; ok=1
  fi
  if [ -f "$KUBECONFIG_ADMIN" ] && node_ready; then
    printf '%-24s Ready\n' "node $NODE"
  else
    printf '%-24s NOT Ready\n' "node $NODE"; ok=1
  fi
  printf '%-24s %s\n' kubeconfig "$KUBECONFIG_ADMIN" host-ip "$HOST_IP"
  [ "$ok" = 0 ] && echo healthy || echo unhealthy
  return "$ok"
}

cmd_env() {
  cat <<EOF
KUBECONFIG=$KUBECONFIG_ADMIN
PADDOCK_HOST_IP=$HOST_IP
PADDOCK_BRIDGE=$BRIDGE
PADDOCK_NODE_NAME=$NODE
PADDOCK_CONTAINERD_ADDRESS=$SOCK
PADDOCK_PAUSE_IMAGE=$PAUSE_IMAGE
PADDOCK_BUSYBOX_IMAGE=$BUSYBOX_IMAGE
KUBECTL=$KUBECTL
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  restart) cmd_restart "${2:-}" ;;
  status) cmd_status ;;
  host-ip) echo "$HOST_IP" ;;
  kubeconfig) echo "$KUBECONFIG_ADMIN" ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|restart <component>|host-ip|kubeconfig|env" >&2; exit 2 ;;
esac
