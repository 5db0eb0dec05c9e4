#!/usr/bin/env bash
# What the end-to-end run needs on the host, installed once (Debian packages) or checked.
# Names the missing piece and exits non-zero when this machine cannot run containers.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

need_root
[ -d /sys/fs/cgroup ] || die "no cgroup filesystem at /sys/fs/cgroup: this machine cannot run containers"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || grep -qw overlay /proc/filesystems \
  || die "the kernel has no overlay filesystem (needed by Docker's overlay2 and containerd)"
grep -q nf_tables /proc/modules 2>/dev/null || [ -d /proc/sys/net/netfilter ] \
  || die "the kernel has no netfilter: container networking (iptables NAT) cannot work"

packages=(docker.io containerd runc containernetworking-plugins iptables debootstrap gcc libc6-dev conntrack)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]} (apt-get)"
  apt-get update -qq >"$LOGS/apt.log" 2>&1 || { tail -20 "$LOGS/apt.log" >&2; die "apt-get update failed"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 \
    || { tail -20 "$LOGS/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $LOGS/apt.log)"; }
fi
for tool in dockerd containerd ctr runc debootstrap iptables gcc mvn go; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH after installing the packages"
done
