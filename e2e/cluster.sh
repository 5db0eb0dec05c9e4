#!/usr/bin/env bash
# A real two-node Kubernetes cluster on this machine, for the end-to-end run:
#
#   cluster.sh start        etcd, kube-apiserver, controller-manager, scheduler, kube-proxy,
#                           CoreDNS, and two kubelets (tusk-node1 on the engine's containerd,
#                           tusk-node2 on a containerd of its own), each with its CNI bridge
#   cluster.sh stop         everything above stopped by PID, pods killed, mounts, cgroups,
#                           bridges, iptables rules and the sysctls the kubelets set restored
#   cluster.sh stop-node N  the node's kubelet and containerd die (a lost node)
#   cluster.sh load IMAGE.. each image from Docker into both nodes' containerd
#   cluster.sh env          the KUBECONFIG export
#
# Binaries: e2e/kube/build.sh and tests/backing/kube/build.sh (Go modules, cached); the engine
# (e2e/engine.sh start) must be up. State lives in /run/tusk-e2e/kube and /var/lib/tusk-e2e.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
source "$here/lib.sh"
K="$RUN/kube"
VAR=/var/lib/tusk-e2e
NODES=(1 2)
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
POD_CIDR=10.244.0.0/16
export KUBECONFIG="$K/admin.kubeconfig"

host_ip() { ip -4 route get 1.1.1.1 | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}'; }
mtu() { cat /sys/class/net/"$(ip route show default | awk '{print $5; exit}')"/mtu 2>/dev/null || echo 1500; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }

bins() {
  local apiserver_bin node_bin
  apiserver_bin=$(bash "$root/tests/backing/kube/build.sh")
  node_bin=$(bash "$here/kube/build.sh")
  [ "$apiserver_bin" = "$node_bin" ] || die "kube binaries in two places: $apiserver_bin, $node_bin"
  echo "$node_bin"
}

certs() {
  local ip=$1 c="$K/pki"
  mkdir -p "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tusk-e2e-ca" \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  cat >"$c/apiserver.ext" <<EXT
subjectAltName=IP:$KUBERNETES_SVC_IP,IP:$ip,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EXT
  sign apiserver "/CN=kube-apiserver" "$c/apiserver.ext"
  printf 'extendedKeyUsage=clientAuth\n' >"$c/client.ext"
  # system:masters: the kubelets' webhook authorization lets it read logs and exec.
  sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$c/client.ext"
  openssl genrsa -out "$c/sa.key" 2048 2>/dev/null
  openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub" 2>/dev/null
}

sign() {  # name subject extfile
  local c="$K/pki"
  openssl req -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$c/$1.key" -out "$c/$1.csr" 2>/dev/null
  openssl x509 -req -in "$c/$1.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial -days 2 \
    -extfile "$3" -out "$c/$1.crt" 2>/dev/null
}

kubeconfig() {  # file token server
  cat >"$1" <<CFG
apiVersion: v1
kind: Config
clusters:
- name: tusk-e2e
  cluster: {certificate-authority: $K/pki/ca.crt, server: "$3"}
users:
- name: u
  user: {token: "$2"}
contexts:
- name: tusk-e2e
  context: {cluster: tusk-e2e, user: u}
current-context: tusk-e2e
CFG
}

token() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

daemon() {  # name command... : start in the background, PID in $K/name.pid
  local name=$1; shift
  "$@" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$K/$name.pid"
}

cni_config() {  # node
  local n=$1
  cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "tusk-e2e-node$n",
  "plugins": [
    {"type": "bridge", "bridge": "tusk-cni$n", "isGateway": true, "ipMasq": true, "mtu": $(mtu),
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.$n.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$VAR/node$n/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

kubelet_config() {  # node ip port healthz_port
  local n=$1
  cat <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This VM has cgroup v1 and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /tusk-node$n
failSwapOn: false
address: $2
port: $3
healthzBindAddress: 127.0.0.1
healthzPort: $4
readOnlyPort: 0
containerRuntimeEndpoint: unix://$RUN/containerd$n.sock
# Two kubelets on one host: each deletes log files of pods it does not know in a shared dir.
podLogsDir: $VAR/node$n/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $K/pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$2]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# The disk is shared with other work: never evict or collect images for lack of it.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
nodeStatusUpdateFrequency: 4s
YAML
}

start() {
  need_root
  alive "$RUN/containerd1.pid" || die "the engine is not running (e2e/engine.sh start)"
  if alive "$K/kube-apiserver.pid"; then echo "cluster.sh: already running" >&2; return 0; fi
  local n
  for n in "${NODES[@]}"; do [ "$n" = 1 ] || bash "$here/engine.sh" containerd "$n"; done
  prune_superseded "${NODES[@]}"
  # Below a few GiB free the kubelets reclaim disk by deleting "unused" images, the pause
  # image and the backing services' among them, and pods then wait for images nothing can pull.
  local free_gib
  free_gib=$(( $(df -Pk "$CACHE" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
  (( free_gib >= 20 )) || die "only $free_gib GiB free under $CACHE; the cluster needs 20 GiB"
  local bin ip port etcd_port peer_port
  bin=$(bins)
  ip=$(host_ip)
  mkdir -p "$K" "$LOGS" "$VAR"
  for s in kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward; do
    [ -f "$K/sysctl.orig" ] && grep -q "^$s=" "$K/sysctl.orig" || echo "$s=$(sysctl -n "$s")" >>"$K/sysctl.orig"
  done
  certs "$ip"
  port=$(free_port); etcd_port=$(free_port); peer_port=$(free_port)
  local admin node1 node2 kcm sched proxy
  admin=$(token); node1=$(token); node2=$(token); kcm=$(token); sched=$(token); proxy=$(token)
  cat >"$K/tokens.csv" <<CSV
$admin,tusk-e2e-admin,admin,"system:masters"
$node1,system:node:tusk-node1,node1,"system:nodes"
$node2,system:node:tusk-node2,node2,"system:nodes"
$kcm,system:kube-controller-manager,kcm,"system:masters"
$sched,system:kube-scheduler,sched,""
$proxy,system:kube-proxy,proxy,""
CSV
  local server="https://$ip:$port"
  kubeconfig "$K/admin.kubeconfig" "$admin" "$server"
  kubeconfig "$K/node1.kubeconfig" "$node1" "$server"
  kubeconfig "$K/node2.kubeconfig" "$node2" "$server"
  kubeconfig "$K/kcm.kubeconfig" "$kcm" "$server"
  kubeconfig "$K/sched.kubeconfig" "$sched" "$server"
  kubeconfig "$K/proxy.kubeconfig" "$proxy" "$server"

  say "cluster: etcd and kube-apiserver on $server"
  daemon etcd "$bin/etcd" --name=tusk-e2e --data-dir="$VAR/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="tusk-e2e=http://127.0.0.1:$peer_port" --unsafe-no-fsync=true --log-level=warn
  daemon kube-apiserver "$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=0.0.0.0 --advertise-address="$ip" --secure-port="$port" \
    --tls-cert-file="$K/pki/apiserver.crt" --tls-private-key-file="$K/pki/apiserver.key" \
    --client-ca-file="$K/pki/ca.crt" --token-auth-file="$K/tokens.csv" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$K/pki/sa.pub" --service-account-signing-key-file="$K/pki/sa.key" \
    --authorization-mode=Node,RBAC --allow-privileged=true --profiling=false \
    --kubelet-client-certificate="$K/pki/kubelet-client.crt" --kubelet-client-key="$K/pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP
  wait_for kube-apiserver 180 "$bin/kubectl" get --raw /readyz
  daemon kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$K/kcm.kubeconfig" \
    --authentication-kubeconfig="$K/kcm.kubeconfig" --authorization-kubeconfig="$K/kcm.kubeconfig" \
    --service-account-private-key-file="$K/pki/sa.key" --root-ca-file="$K/pki/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false --secure-port=0 \
    --service-cluster-ip-range="$SERVICE_CIDR" --node-monitor-grace-period=20s
  daemon kube-scheduler "$bin/kube-scheduler" --kubeconfig="$K/sched.kubeconfig" \
    --authentication-kubeconfig="$K/sched.kubeconfig" --authorization-kubeconfig="$K/sched.kubeconfig" \
    --leader-elect=false --secure-port=0
  # Pods and Services must reach each other across dockerd's FORWARD policy (DROP).
  iptables -I FORWARD -s "$POD_CIDR" -j ACCEPT
  iptables -I FORWARD -d "$POD_CIDR" -j ACCEPT
  daemon kube-proxy "$bin/kube-proxy" --kubeconfig="$K/proxy.kubeconfig" --hostname-override=tusk-node1 \
    --cluster-cidr="$POD_CIDR" --proxy-mode=iptables --masquerade-all \
    --healthz-bind-address="127.0.0.1:$(free_port)" --metrics-bind-address="127.0.0.1:$(free_port)"
  # Cluster DNS on the host's address (every pod reaches it through its bridge's gateway).
  local coredns
  coredns=$(bash "$here/tools.sh" coredns)
  cat >"$K/Corefile" <<CORE
.:53 {
    bind $ip
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $K/admin.kubeconfig tusk-e2e
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 10
}
CORE
  daemon coredns "$coredns" -conf "$K/Corefile"

  for n in "${NODES[@]}"; do start_node "$n" "$ip"; done
  for n in "${NODES[@]}"; do
    wait_for "kubelet$n" 180 "$bin/kubectl" wait --for=condition=Ready "node/tusk-node$n" --timeout=5s
  done
  wait_for "default-serviceaccount" 120 "$bin/kubectl" get serviceaccount default
  load "$PAUSE_IMAGE"  # every pod's sandbox; nothing can pull it
  say "cluster: tusk-node1 and tusk-node2 Ready (KUBECONFIG=$KUBECONFIG)"
}

start_node() {  # node ip
  local n=$1 ip=$2 bin
  bin=$(bins)
  mkdir -p "$VAR/node$n/pod-logs" "$VAR/node$n/cni-ipam" "$RUN/cni$n"
  [ "$n" = 1 ] || bash "$here/engine.sh" containerd "$n"
  cni_config "$n" >"$RUN/cni$n/10-tusk.conflist"
  # The kubelet refuses a cgroupRoot that does not exist (cgroup v1: one per hierarchy).
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] && [ ! -L "${h%/}" ] || continue
    mkdir -p "$h/tusk-node$n" 2>/dev/null || continue
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$h/tusk-node$n/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h/tusk-node$n/cpuset.mems"
    fi
  done
  kubelet_config "$n" "$ip" "$(free_port)" "$(free_port)" >"$K/kubelet$n.yaml"
  daemon "kubelet$n" "$bin/kubelet" --config="$K/kubelet$n.yaml" --kubeconfig="$K/node$n.kubeconfig" \
    --hostname-override="tusk-node$n" --node-ip="$ip" --root-dir="$VAR/node$n/kubelet" \
    --cert-dir="$VAR/node$n/pki"
}

reference() {  # image: the full name containerd lists for it (postgres:15 -> docker.io/library/postgres:15)
  local first=${1%%/*}
  if [[ $1 != */* ]]; then echo "docker.io/library/$1"
  elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then echo "$1"
  else echo "docker.io/$1"; fi
}

# One image at a time (ctr kept only some images of a multi-image archive), streamed from
# `docker save` into every node's containerd at once. An image already imported with the same
# Docker image id (the label below) is left as it is: warm runs import only what changed. The
# same image under another name (skaffold's tags of what images.py built) is only tagged.
ID_LABEL=tusk.e2e/docker-image-id
load() {  # images...
  local image id ref n fifo pids failed same
  local dir
  dir=$(mktemp -d "$RUN/load.XXXXXX")
  for image in "$@"; do
    id=$(docker image inspect -f '{{.Id}}' "$image") || { rm -rf "$dir"; die "$image is not in Docker: build it first"; }
    ref=$(reference "$image")
    local targets=()
    for n in "${NODES[@]}"; do
      alive "$RUN/containerd$n.pid" || continue
      local c=(ctr --address "$RUN/containerd$n.sock" -n k8s.io)
      # Not grep -q: it would end the listing early and fail the pipeline (pipefail).
      if "${c[@]}" images ls "name==$ref" | grep -F "$ID_LABEL=$id" >/dev/null; then continue; fi
      same=$("${c[@]}" images ls | awk -v label="$ID_LABEL=$id" 'index($0, label) && !found { print $1; found = 1 }')
      if [ -n "$same" ] && "${c[@]}" images tag --force "$same" "$ref" >/dev/null \
        && "${c[@]}" images label "$ref" "$ID_LABEL=$id" >/dev/null; then
        say "cluster: $image tagged in tusk-node$n (the same image as $same)"
        continue
      fi
      targets+=("$n")
    done
    [ ${#targets[@]} -gt 0 ] || continue
    pids=()
    for n in "${targets[@]}"; do
      fifo="$dir/node$n"
      mkfifo "$fifo"
      ctr --address "$RUN/containerd$n.sock" -n k8s.io images import --no-unpack=false - <"$fifo" >/dev/null &
      pids+=($!)
    done
    failed=0
    docker save "$image" | tee "${targets[@]/#/$dir/node}" >/dev/null || failed=1
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    rm -f "$dir"/node*
    (( failed == 0 )) || { rm -rf "$dir"; die "importing $image into tusk-node${targets[*]} failed"; }
    for n in "${targets[@]}"; do
      ctr --address "$RUN/containerd$n.sock" -n k8s.io images label "$ref" "$ID_LABEL=$id" >/dev/null \
        || { rm -rf "$dir"; die "$image is not in tusk-node$n's containerd after its import"; }
    done
    say "cluster: $image loaded into tusk-node${targets[*]}"
  done
  rm -rf "$dir"
}

# Each run builds new images under the same names; what an earlier run imported then stays in
# the nodes' containerd under its image id (and skaffold's old tags), a few GiB per run. Before
# the kubelets start (nothing runs), every image whose Docker image id is no longer in Docker
# (or only untagged there) is removed, and containerd's garbage collection frees its layers.
prune_superseded() {  # nodes...
  local current n ref labels id
  current=$(docker images -q --no-trunc --filter dangling=false | sort -u)
  [ -n "$current" ] || return 0  # no images at all: nothing to compare with, so keep everything
  for n in "$@"; do
    alive "$RUN/containerd$n.pid" || continue
    local c=(ctr --address "$RUN/containerd$n.sock" -n k8s.io)
    while read -r ref labels; do
      case $ref in
        sha256:*) id=$ref ;;  # the CRI's reference by image id (the Docker image id)
        *) id=$(grep -o "$ID_LABEL=sha256:[0-9a-f]*" <<<"$labels" | cut -d= -f2 || true) ;;
      esac
      [ -n "$id" ] || continue  # not imported by load (nothing of ours)
      grep -qxF "$id" <<<"$current" && continue
      "${c[@]}" images rm --sync "$ref" >/dev/null && say "cluster: $ref removed from tusk-node$n (superseded)"
    done < <("${c[@]}" images ls | awk 'NR > 1 { print $1, $NF }')
  done
}

kill_node_pods() {  # node: every task of the node's containerd, then the containers
  local n=$1 sock="$RUN/containerd$n.sock"
  [ -S "$sock" ] || return 0
  local c=(ctr --address "$sock" -n k8s.io)
  for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s SIGKILL "$t" 2>/dev/null || true; done
  for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for t in $("${c[@]}" containers ls -q 2>/dev/null); do "${c[@]}" containers delete "$t" >/dev/null 2>&1 || true; done
}

stop_node() {  # node: a lost node, as far as the rest of the cluster can tell
  local n=$1
  stop_pid "$K/kubelet$n.pid" "kubelet$n"
  kill_node_pods "$n"
  [ "$n" = 1 ] || stop_pid "$RUN/containerd$n.pid" "containerd$n"
}

stop() {
  need_root
  for n in "${NODES[@]}"; do stop_pid "$K/kubelet$n.pid" "kubelet$n"; done
  for n in "${NODES[@]}"; do kill_node_pods "$n"; done
  for d in coredns kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_pid "$K/$d.pid" "$d"
  done
  for n in "${NODES[@]}"; do [ "$n" = 1 ] || stop_pid "$RUN/containerd$n.pid" "containerd$n"; done
  # Volumes the kubelets mounted, then their state.
  grep -o " $VAR/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done || true
  for n in "${NODES[@]}"; do
    ip link delete "tusk-cni$n" 2>/dev/null || true
    find /sys/fs/cgroup/*/"tusk-node$n" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  rm -rf "$VAR"
  if [ -f "$K/sysctl.orig" ]; then
    while IFS='=' read -r key value; do sysctl -qw "$key=$value" || true; done <"$K/sysctl.orig"
  fi
  # The FORWARD rules and kube-proxy's chains go with the engine's iptables snapshot.
  iptables -D FORWARD -s "$POD_CIDR" -j ACCEPT 2>/dev/null || true
  iptables -D FORWARD -d "$POD_CIDR" -j ACCEPT 2>/dev/null || true
  rm -rf "$K"
  echo "cluster.sh: cluster stopped" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  stop-node) stop_node "${2:?node number}" ;;
  start-node) start_node "${2:?node number}" "$(host_ip)" ;;
  load) shift; load "$@" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG" ;;
  *) echo "usage: cluster.sh start|stop|stop-node N|start-node N|load IMAGE...|env" >&2; exit 2 ;;
esac
