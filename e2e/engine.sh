#!/usr/bin/env bash
# A container engine for the end-to-end run, started and stopped by this script alone:
#
#   engine.sh start   containerd + dockerd (no systemd here), wait until both answer
#   engine.sh stop    stop them by PID, delete the bridges and iptables rules they added,
#                     restore net.ipv4.ip_forward: the machine is left as it was found
#   engine.sh containerd N   one more containerd (a second Kubernetes node's)
#   engine.sh env     print the exports that point docker/ctr at this engine
#
# Docker's data root and containerd's root live in the tusk cache (outside the checkout), so
# images and build layers survive from one run to the next. The first kubelet shares this
# containerd (namespace k8s.io; Docker uses moby). Needs root and the Debian packages that
# e2e/install.sh installs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

containerd_config() {  # $1 = node number
  local n=$1
  cat <<CONF
version = 2
root = "$CACHE/e2e/containerd$n"
state = "$RUN/containerd$n"
[grpc]
  address = "$RUN/containerd$n.sock"
[ttrpc]
  address = "$RUN/containerd$n.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM lacks CAP_SYS_RESOURCE: runc cannot give the pause container a negative score.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni$n"
CONF
}

start_containerd() {  # $1 = node number
  local n=$1
  if alive "$RUN/containerd$n.pid"; then return 0; fi
  mkdir -p "$RUN/cni$n" "$CACHE/e2e/containerd$n"
  containerd_config "$n" >"$RUN/containerd$n.toml"
  containerd --config "$RUN/containerd$n.toml" >>"$LOGS/containerd$n.log" 2>&1 &
  echo $! >"$RUN/containerd$n.pid"
  wait_for "containerd$n" 60 ctr --address "$RUN/containerd$n.sock" version
}

start() {
  need_root
  mkdir -p "$RUN" "$LOGS" "$CACHE/docker"
  # What the engine will change, so that stop can put it back.
  [ -f "$RUN/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$RUN/ip_forward.orig"
  [ -f "$RUN/iptables.orig" ] || iptables-save >"$RUN/iptables.orig"
  if command -v nft >/dev/null && [ ! -f "$RUN/nft-tables.orig" ]; then nft list tables >"$RUN/nft-tables.orig"; fi
  [ -f "$RUN/cgroups.orig" ] || ls -d /sys/fs/cgroup/*/docker >"$RUN/cgroups.orig" 2>/dev/null || true
  [ -f "$RUN/links.orig" ] || ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 >"$RUN/links.orig"
  start_containerd 1
  if ! alive "$RUN/dockerd.pid"; then
    cat >"$RUN/daemon.json" <<JSON
{
  "data-root": "$CACHE/docker/data",
  "exec-root": "$RUN/docker-exec",
  "pidfile": "$RUN/dockerd.pid",
  "hosts": ["unix://$DOCKER_SOCK"],
  "containerd": "$RUN/containerd1.sock",
  "storage-driver": "overlay2",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "mtu": $(cat /sys/class/net/"$(ip route show default | awk '{print $5; exit}')"/mtu 2>/dev/null || echo 1500),
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}
JSON
    dockerd --config-file "$RUN/daemon.json" >>"$LOGS/dockerd.log" 2>&1 &
    wait_for dockerd 90 docker version
  fi
  echo "engine.sh: containerd and dockerd are up (DOCKER_HOST=unix://$DOCKER_SOCK)" >&2
}

stop() {
  need_root
  stop_pid "$RUN/dockerd.pid" dockerd
  stop_pid "$RUN/containerd1.pid" containerd1
  # Shims outlive containerd by design; the containers are gone with dockerd, so are they.
  for pidf in "$RUN"/containerd*.pid; do [ -e "$pidf" ] || continue; stop_pid "$pidf" "$(basename "$pidf" .pid)"; done
  if [ -f "$RUN/links.orig" ]; then
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
      grep -qx "$link" "$RUN/links.orig" || ip link delete "$link" 2>/dev/null || true
    done
    rm -f "$RUN/links.orig"
  fi
  if [ -f "$RUN/iptables.orig" ]; then
    # iptables-restore only rewrites the tables the snapshot names: the tables created since
    # go (nftables backend), or are emptied (legacy backend).
    if [ -f "$RUN/nft-tables.orig" ] && command -v nft >/dev/null; then
      nft list tables | while read -r _ family name; do
        grep -qx "table $family $name" "$RUN/nft-tables.orig" || nft delete table "$family" "$name" 2>/dev/null || true
      done
      rm -f "$RUN/nft-tables.orig"
    fi
    for table in filter nat mangle raw; do
      grep -q "^\*$table" "$RUN/iptables.orig" && continue
      command -v nft >/dev/null && continue  # gone with its nftables table above
      iptables -t "$table" -S >/dev/null 2>&1 || continue
      iptables -t "$table" -F && iptables -t "$table" -X
      for chain in $(iptables -t "$table" -S | awk '$1 == "-P" {print $2}'); do
        iptables -t "$table" -P "$chain" ACCEPT
      done
    done
    if [ -s "$RUN/iptables.orig" ]; then iptables-restore <"$RUN/iptables.orig"; fi
    rm -f "$RUN/iptables.orig"
  fi
  if [ -f "$RUN/ip_forward.orig" ]; then
    cat "$RUN/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward && rm -f "$RUN/ip_forward.orig"
  fi
  # Mounts left by containers that died with their engine.
  grep -o " $RUN/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done || true
  # The cgroups dockerd made for its containers (empty now), unless they were there before.
  if [ -f "$RUN/cgroups.orig" ]; then
    for d in /sys/fs/cgroup/*/docker; do
      [ -d "$d" ] && ! grep -qx "$d" "$RUN/cgroups.orig" && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done || true
  fi
  rm -rf "$RUN"
  echo "engine.sh: engine stopped, bridges and iptables rules removed" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  containerd) need_root; mkdir -p "$RUN" "$LOGS"; start_containerd "${2:?node number}" ;;
  env) echo "export DOCKER_HOST=unix://$DOCKER_SOCK DOCKER_CONFIG=$DOCKER_CONFIG" ;;
  *) echo "usage: engine.sh start|stop|env" >&2; exit 2 ;;
esac
