# Shared by the e2e scripts (sourced, not run).
# shellcheck shell=bash
CACHE="${TUSK_CACHE_DIR:-$HOME/.cache/tusk}"
RUN="${TUSK_E2E_RUN_DIR:-/run/tusk-e2e}"    # sockets, PIDs, per-run state
LOGS="$CACHE/logs/e2e"
DOCKER_SOCK="$RUN/docker.sock"
export DOCKER_HOST="unix://$DOCKER_SOCK"
# Compose v2 is a CLI plugin found through DOCKER_CONFIG/cli-plugins (see tools.sh).
export DOCKER_CONFIG="$CACHE/e2e/docker-config"
# The legacy builder: BuildKit would try to pull the docker/dockerfile frontend that the
# Dockerfiles' `# syntax=` line names, and no registry can be reached.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
PAUSE_IMAGE="tusk.local/pause:3.10"
PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"   # Debian's docker, not another on PATH
export PATH

say() { echo "e2e: $(date -u +%T) $*" >&2; }
die() { echo "e2e: ERROR: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "the end-to-end run starts container engines and needs root"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # name timeout_s command... : retry until the command succeeds
  local name=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$name did not come up within ${timeout}s (log: $LOGS/$name.log)"
    sleep 0.5
  done
}

stop_pid() {  # pidfile name : SIGTERM, wait, then SIGKILL
  local pidf=$1 name=$2 pid
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "e2e: $name ($pid) ignored SIGTERM, killing" >&2; kill -9 "$pid" 2>/dev/null || true; }
  fi
  rm -f "$pidf"
}
