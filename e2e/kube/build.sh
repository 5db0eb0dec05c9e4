#!/usr/bin/env bash
# Build the node and controller binaries of a real cluster from the Go module proxy:
#
#   ${TUSK_CACHE_DIR:-$HOME/.cache/tusk}/kube/<k8s version>/bin/
#       {kubelet,kube-scheduler,kube-controller-manager,kube-proxy,kubectl}
#
# next to the kube-apiserver and etcd that tests/backing/kube/build.sh puts there. The version
# comes from this directory's go.mod (gen-gomod.sh). A binary already cached is not rebuilt.
# Cold, on 2 busy cores: kubelet and controller-manager about 12 min each, the rest 1-3 min.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(awk '{for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes" && $(i + 1) ~ /^v/) {print $(i + 1); exit}}' "$here/go.mod")
[ -n "$K8S_VERSION" ] || { echo "e2e/kube/build.sh: cannot read the version from go.mod" >&2; exit 1; }
root="${TUSK_CACHE_DIR:-$HOME/.cache/tusk}/kube/${K8S_VERSION}"
bin="$root/bin"
tools=(kube-scheduler kube-proxy kubectl kubelet kube-controller-manager)

cached() { for t in "${tools[@]}"; do [ -x "$bin/$t" ] || return 1; done; }
if cached; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "e2e/kube/build.sh: building the kube binaries needs Go on PATH" >&2; exit 1; }
mkdir -p "$bin"
exec 9>"$root/.node-build.lock"
flock 9

log="$root/node-build.log"
say() { echo "e2e/kube/build.sh: $*" | tee -a "$log" >&2; }
export GOTOOLCHAIN=local GOFLAGS="-p=${TUSK_GO_JOBS:-2} -mod=readonly -trimpath -buildvcs=false"
export CGO_ENABLED=0
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done
cd "$here"
nice -n 10 go mod download 2>&1 | tee -a "$log" >&2
for t in "${tools[@]}"; do
  [ -x "$bin/$t" ] && continue
  t0=$(date +%s)
  nice -n 10 go build -ldflags "$ldflags" -o "$bin/.$t.tmp" "k8s.io/kubernetes/cmd/$t" 2>&1 | tee -a "$log" >&2
  mv -f "$bin/.$t.tmp" "$bin/$t"
  say "$(date -u +%FT%TZ) $t ${K8S_VERSION} built in $(( $(date +%s) - t0 ))s"
done
echo "$bin"
