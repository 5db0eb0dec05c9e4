"""A pipeline with `datum_batching: true` through `tusk up` (trigger, scheduler, local runner,
sandbox where bubblewrap works): Pachyderm's own shell loop around `pachctl next datum`, one
process per shard for every datum, each datum's output and lineage as without batching."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .conftest import Stack

# Pachyderm's documented pattern, unchanged: the loop calls `pachctl next datum`, then
# transforms the datum staged at /pfs (TUSK_PFS_ROOT, which is /pfs in the sandbox).
LOOP = """
echo "loading the model once: $$"
while true; do
  pachctl next datum
  for f in "$TUSK_PFS_ROOT"/in/*; do
    printf '%s %s' "$(tr a-z A-Z < "$f")" "$$" > "$TUSK_PFS_ROOT/out/$(basename "$f")"
  done
done
"""


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


def test_a_batched_pipeline_runs_every_datum_in_one_process(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "batch-in")
    spec = tmp_path / "batched.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "batched"},
                "input": {"pfs": {"name": "in", "repo": "batch-in", "glob": "/*"}},
                "transform": {"cmd": ["sh", "-c", LOOP], "datum_batching": True},
            }
        )
    )
    created = stack.tusk("pipeline", "create", "-f", spec)
    assert "datum_batching" not in created.stderr.decode()  # no "not implemented" warning
    source = Path(tempfile.mkdtemp(dir=tmp_path))
    for i in range(5):
        (source / f"w{i}.txt").write_text(f"word{i}")
    stack.tusk("put", "batch-in@master:/", "-f", source, "-r")
    commit = as_json(stack.tusk("commit", "inspect", "batch-in@master", "--json"))["id"]

    stack.tusk("job", "wait", "-p", "batched", "-g", commit)

    pids = set()
    for i in range(5):
        text, pid = stack.tusk("get", f"batched@master:/w{i}.txt").stdout.decode().split()
        assert text == f"WORD{i}"
        pids.add(pid)
    assert len(pids) == 1
    job = as_json(stack.tusk("job", "list", "-p", "batched", "--json"))[0]
    assert (job["state"], job["counts"]["processed"]) == ("success", 5)
    datums = as_json(stack.tusk("datum", "list", job["id"], "--json"))
    assert {d["state"] for d in datums} == {"success"}
    logs = stack.tusk("job", "logs", job["id"]).stdout.decode()
    assert logs.count("loading the model once") == 1
