#!/usr/bin/env bash
# The walkthrough behind `make demo`: the credit-limit example from raw data to a trained
# model and batch scores, on tusk's embedded defaults (SQLite + a local directory + the
# in-process event bus, every service in one process), driven through the CLI as a user would.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
head_of() { tusk commit inspect "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
generate() { python3 examples/credit/generate.py --day "$1" --rows "$2" --out "$3" 2>/dev/null; }

workdir=$(mktemp -d "${TMPDIR:-/tmp}/tusk-demo.XXXXXX")
TUSK_REPO_PORT=$(free_port) TUSK_TRIGGER_PORT=$(free_port) TUSK_SCHEDULER_PORT=$(free_port)
TUSK_INFERENCE_PORT=$(free_port) TUSK_CONSOLE_PORT=$(free_port)
export TUSK_REPO_PORT TUSK_TRIGGER_PORT TUSK_SCHEDULER_PORT TUSK_INFERENCE_PORT TUSK_CONSOLE_PORT
export TUSK_REPO_URL="http://127.0.0.1:$TUSK_REPO_PORT"
export TUSK_TRIGGER_URL="http://127.0.0.1:$TUSK_TRIGGER_PORT"
export TUSK_SCHEDULER_URL="http://127.0.0.1:$TUSK_SCHEDULER_PORT"
export TUSK_INFERENCE_URL="http://127.0.0.1:$TUSK_INFERENCE_PORT"

say "Starting tusk (embedded: everything under $workdir/data), serving the model train writes"
printf '$ tusk up --model credit=train@master:/model.onnx\n'
tusk up --data-dir "$workdir/data" --model credit=train@master:/model.onnx >"$workdir/tusk.log" 2>&1 &
tusk_pid=$!
cleanup() {
  kill "$tusk_pid" 2>/dev/null && wait "$tusk_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'echo; echo "demo failed; the end of the service log:"; tail -30 "$workdir/tusk.log"' ERR
for _ in $(seq 1 150); do
  curl -fsS "$TUSK_SCHEDULER_URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$tusk_pid" 2>/dev/null || { cat "$workdir/tusk.log"; exit 1; }
  sleep 0.2
done

say "Versioned data: a repo for the raw exports, and two pipelines that read it"
run tusk repo create raw -d "daily customer exports"
run tusk pipeline create -f examples/credit/preprocess.yaml
run tusk pipeline create -f examples/credit/train.yaml
run tusk pipeline list

say "Day 1 lands: the commit triggers preprocess, whose output commit triggers train"
generate 1 2000 "$workdir/day1"
run tusk put raw@master:/ -f "$workdir/day1" -r
day1=$(head_of raw@master)
run tusk job wait -p preprocess -g "$day1"
run tusk job wait -p train -g "$day1"
run tusk ls train@master:/
run tusk get train@master:/metrics.json -o "$workdir/metrics.json"
tusk get train@master:/features.json -o "$workdir/features.json" 2>/dev/null
python3 - "$workdir/metrics.json" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
print("winner:", metrics["winner"], "| validation RMSE:",
      {name: round(c["rmse"]) for name, c in metrics["candidates"].items()})
PY
run tusk lineage train@master

say "Real-time scoring: the inference service loaded the model as soon as train committed it"
python3 examples/credit/encode.py --features "$workdir/features.json" --customers "$workdir/day1/day-001.csv" --rows 3 --out "$workdir/encoded.csv"
run tusk model list
run tusk predict credit --csv "$workdir/encoded.csv"
model1=$(head_of train@master)

say "Batch scoring: one datum per file of new customers"
run tusk repo create customers
run tusk pipeline create -f examples/credit/score.yaml
generate 40 300 "$workdir/c1" && mv "$workdir/c1/day-040.csv" "$workdir/batch-1.csv"
run tusk put customers@master:/batch-1.csv -f "$workdir/batch-1.csv"
run tusk job wait -p score -g "$(head_of customers@master)"
generate 41 300 "$workdir/c2" && mv "$workdir/c2/day-041.csv" "$workdir/batch-2.csv"
run tusk put customers@master:/batch-2.csv -f "$workdir/batch-2.csv"
say "Only the new file is processed; batch-1's scores are carried forward (1 skipped):"
run tusk job wait -p score -g "$(head_of customers@master)"
run tusk ls score@master:/
run tusk get score@master:/batch-2.csv -o "$workdir/scores.csv"
head -4 "$workdir/scores.csv"

say "Day 2 lands: preprocess, train and score all re-run on their own"
generate 2 2000 "$workdir/day2"
run tusk put raw@master:/day-002.csv -f "$workdir/day2/day-002.csv"
day2=$(head_of raw@master)
run tusk job wait -p train -g "$day2"
run tusk job wait -p score -g "$day2"
run tusk diff train@master
say "The served model changed without a restart ($model1 -> $(head_of train@master)):"
for _ in $(seq 1 100); do
  tusk model inspect credit --json | grep -q "$(head_of train@master)" && break
  sleep 0.1
done
run tusk predict credit --csv "$workdir/encoded.csv"
say "Every commit of this change shares its global id, from the raw data down to the scores:"
run tusk lineage raw@master --down
run tusk job list

say "Done."
