#!/usr/bin/env bash
# `make e2e`: tusk in real containers. Installs what it needs (Debian packages, Go-built tools,
# base images, all cached under ~/.cache/tusk), starts a container engine, builds every image
# from the project's own Dockerfiles and runs the scenarios of e2e/test_*.py against them.
# The engine (and any cluster) is stopped and the host's network state restored on exit.
#
#   e2e/run.sh [pytest args...]       e.g. e2e/run.sh -k compose
#
# PYTHON: the project's interpreter (make passes .venv/bin/python).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
source "$here/lib.sh"
PYTHON=${PYTHON:-$root/.venv/bin/python}
mkdir -p "$LOGS"
timings="$LOGS/timings-$(date -u +%Y%m%dT%H%M%SZ).txt"
step() {  # name command... : run one step, record how long it took
  local name=$1 t0; shift
  t0=$(date +%s)
  say "── $name"
  "$@"
  echo "$name $(( $(date +%s) - t0 ))s" | tee -a "$timings" >&2
}

cd "$root"
t_start=$(date +%s)
step install bash "$here/install.sh"
compose=$(step compose-cli bash "$here/tools.sh" compose)
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -sf "$compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"

cleanup() { bash "$here/cluster.sh" stop >/dev/null 2>&1 || true; bash "$here/engine.sh" stop || true; }
trap cleanup EXIT
step engine bash "$here/engine.sh" start
# E2E_IMAGES: compose builds tusk's images itself (`up --build`); the cluster needs them built.
read -r -a groups <<<"${E2E_IMAGES:-base standins}"
step images "$PYTHON" "$here/images.py" "${groups[@]/#/--only=}"
if [ -n "${E2E_RUN:-}" ]; then
  # E2E_RUN: a module to run instead of the scenarios (make bench-pods: loadtest.bench_pods).
  step "$E2E_RUN" "$PYTHON" -m "$E2E_RUN" "$@"
else
  # E2E_TESTS: which scenarios (make e2e: compose; make e2e-kube: the Kubernetes cluster).
  read -r -a tests <<<"${E2E_TESTS:-$here/test_compose.py}"
  step scenarios "$PYTHON" -m pytest -p no:cacheprovider -o testpaths=e2e --timeout 3600 -x -v \
    "${tests[@]}" "$@"
fi
echo "total $(( $(date +%s) - t_start ))s" | tee -a "$timings" >&2
say "every scenario passed; timings in $timings"
