#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy into the tusk cache:
#
#   ${TUSK_CACHE_DIR:-$HOME/.cache/tusk}/kube/<k8s version>/bin/{kube-apiserver,etcd}
#
# Versions come from this directory's go.mod (see gen-gomod.sh). Nothing is rebuilt when both
# binaries are already cached. Prints the bin directory on stdout; progress goes to stderr and
# to build.log next to bin/. A cold build takes several minutes on 2 cores (see README.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# Handles both `require m v` and the block form.
modversion() { awk -v m="$1" '{for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$here/go.mod"; }
K8S_VERSION=$(modversion k8s.io/kubernetes)
ETCD_VERSION=$(modversion go.etcd.io/etcd/server/v3)
[ -n "$K8S_VERSION" ] && [ -n "$ETCD_VERSION" ] || { echo "build.sh: cannot read versions from go.mod" >&2; exit 1; }

root="${TUSK_CACHE_DIR:-$HOME/.cache/tusk}/kube/${K8S_VERSION}"
bin="$root/bin"

cached() { [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ]; }
if cached; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }
mkdir -p "$bin"
# One build at a time (parallel test workers may all call ensure_installed()).
exec 9>"$root/.build.lock"
flock 9
if cached; then echo "$bin"; exit 0; fi

log="$root/build.log"
say() { echo "build.sh: $*" | tee -a "$log" >&2; }

# Keep the shared machine usable: low priority, two compile jobs, no toolchain download,
# no edits to go.mod/go.sum. GOFLAGS from the environment is replaced on purpose.
export GOTOOLCHAIN=local GOFLAGS="-p=${TUSK_GO_JOBS:-2} -mod=readonly -trimpath -buildvcs=false"
export CGO_ENABLED=0

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

say "$(date -u +%FT%TZ) building kube-apiserver ${K8S_VERSION} + etcd ${ETCD_VERSION} with $(go version)"
start=$(date +%s)
cd "$here"
# Fetch first so a network failure is reported as such, not as a compile error.
nice -n 10 go mod download 2>&1 | tee -a "$log" >&2

t0=$(date +%s)
nice -n 10 go build -ldflags "$ldflags" -o "$bin/.kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver 2>&1 | tee -a "$log" >&2
t1=$(date +%s)
say "kube-apiserver built in $((t1 - t0))s"
nice -n 10 go build -ldflags "-s -w" -o "$bin/.etcd.tmp" ./cmd/etcd 2>&1 | tee -a "$log" >&2
t2=$(date +%s)
say "etcd built in $((t2 - t1))s"

mv -f "$bin/.kube-apiserver.tmp" "$bin/kube-apiserver"
mv -f "$bin/.etcd.tmp" "$bin/etcd"
say "done in $((t2 - start))s total -> $bin"
echo "$bin"
