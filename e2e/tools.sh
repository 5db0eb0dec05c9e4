#!/usr/bin/env bash
# Build the Go tools the end-to-end run needs into the tusk cache, once:
#
#   tools.sh compose   -> ${CACHE}/tools/compose-<v>/docker-compose   (Compose v2 CLI plugin)
#   tools.sh coredns   -> ${CACHE}/tools/coredns-<v>/coredns          (cluster DNS)
#   tools.sh skaffold  -> ${CACHE}/tools/skaffold-<v>/skaffold
#
# Debian's docker-compose is 1.29, which rejects the compose file's top-level `name:`, and no
# release binary can be downloaded here, so each tool is built from its Go module. Prints the
# binary's path on stdout; the build log goes to ${CACHE}/logs/<tool>-build.log.
set -euo pipefail
CACHE="${TUSK_CACHE_DIR:-$HOME/.cache/tusk}"
COMPOSE_VERSION=v2.28.1
COREDNS_VERSION=v1.12.4
SKAFFOLD_VERSION=v2.16.1

tool=${1:?usage: tools.sh compose|coredns|skaffold}
case "$tool" in
  compose) version=$COMPOSE_VERSION; pkg=github.com/docker/compose/v2/cmd; built=cmd; name=docker-compose ;;
  coredns) version=$COREDNS_VERSION; pkg=github.com/coredns/coredns; built=coredns; name=coredns ;;
  # skaffold's go.mod has replace directives, which `go install pkg@version` refuses: it is
  # built as the main module, in its own directory of the module cache.
  skaffold) version=$SKAFFOLD_VERSION; module=github.com/GoogleContainerTools/skaffold/v2; pkg=./cmd/skaffold; built=skaffold; name=skaffold ;;
  *) echo "tools.sh: unknown tool $tool" >&2; exit 2 ;;
esac
dir="$CACHE/tools/$tool-$version"
if [ -x "$dir/$name" ]; then echo "$dir/$name"; exit 0; fi
command -v go >/dev/null || { echo "tools.sh: building $tool needs Go on PATH" >&2; exit 1; }
mkdir -p "$dir" "$CACHE/logs" "$CACHE/locks"
exec 9>"$CACHE/locks/$tool-build.lock"
flock 9
if [ -x "$dir/$name" ]; then echo "$dir/$name"; exit 0; fi
log="$CACHE/logs/$tool-build.log"
t0=$(date +%s)
echo "tools.sh: $(date -u +%FT%TZ) building $tool $version (log: $log)" >&2
gobin=$(mktemp -d "$dir/.gobin.XXXXXX")
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-p=${TUSK_GO_JOBS:-2} -trimpath"
build() {
  if [ -n "${module:-}" ]; then
    local src
    src=$(go mod download -json "$module@$version" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    (cd "$src" && nice -n 10 go build -ldflags "-s -w" -o "$gobin/$built" "$pkg")
  else
    GOBIN="$gobin" nice -n 10 go install -ldflags "-s -w" "$pkg@$version"
  fi
}
if ! build >"$log" 2>&1; then
  tail -30 "$log" >&2
  echo "tools.sh: building $tool $version failed; full log in $log" >&2
  exit 1
fi
mv -f "$gobin/$built" "$dir/$name"
rm -rf "$gobin"
echo "tools.sh: $tool $version built in $(( $(date +%s) - t0 ))s" | tee -a "$log" >&2
echo "$dir/$name"
