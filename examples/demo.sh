#!/usr/bin/env bash
# The walkthrough behind `make demo`: tusk on its embedded defaults (SQLite + a local
# directory, everything in one process), driven through the CLI as a user would.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

workdir=$(mktemp -d "${TMPDIR:-/tmp}/tusk-demo.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TUSK_REPO_URL="http://127.0.0.1:$port" TUSK_REPO_PORT="$port"

say "Starting tusk (embedded: SQLite + local files under $workdir/data)"
tusk up --data-dir "$workdir/data" >"$workdir/tusk.log" 2>&1 &
tusk_pid=$!
cleanup() {
  kill "$tusk_pid" 2>/dev/null && wait "$tusk_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "$TUSK_REPO_URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$tusk_pid" 2>/dev/null || { cat "$workdir/tusk.log"; exit 1; }
  sleep 0.2
done

say "A day of raw credit data"
python3 examples/credit/generate.py --day 1 --rows 2000 --out "$workdir/raw"
run tusk repo create raw
run tusk put raw@master:/ -f "$workdir/raw" -r
run tusk ls raw@master:/
run tusk repo inspect raw

say "The next day's data is a new commit; the first stays as it was"
python3 examples/credit/generate.py --day 2 --rows 2000 --out "$workdir/raw2"
run tusk put raw@master:/day-002.csv -f "$workdir/raw2/day-002.csv"
run tusk diff raw@master
run tusk log raw@master
run tusk ls raw@master^1:/
run tusk glob raw@master '/*.csv'
run tusk get raw@master:/day-002.csv -o "$workdir/day-002.csv"
head -3 "$workdir/day-002.csv"

say "Done. The service log was:"
tail -5 "$workdir/tusk.log"
