"""Pachyderm's `pfs.trigger` through `tusk up`: commits land on a staging branch, and the
trigger service moves the branch the pipeline reads once enough has arrived (`commits`,
`size`), so the pipeline runs on batches rather than on every commit."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .conftest import Stack

COPY = """
import os, shutil
root = os.environ["TUSK_PFS_ROOT"]
for name in os.listdir(root + "/in"):
    shutil.copy(f"{root}/in/{name}", f"{root}/out/{name}")
"""


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


def put(stack: Stack, tmp: Path, address: str, files: dict[str, str]) -> str:
    source = Path(tempfile.mkdtemp(dir=tmp))
    for name, text in files.items():
        (source / name).write_text(text)
    stack.tusk("put", address, "-f", source, "-r")
    repo_branch = address.split(":", 1)[0]
    return str(as_json(stack.tusk("commit", "inspect", repo_branch, "--json"))["id"])


def pipeline(tmp: Path, name: str, repo: str, trigger: dict[str, Any]) -> Path:
    path = tmp / f"{name}.yaml"
    document = {
        "pipeline": {"name": name},
        "input": {"pfs": {"name": "in", "repo": repo, "glob": "/*", "trigger": trigger}},
        "transform": {"cmd": [sys.executable, "-c", COPY]},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_input_branch_moves_every_n_commits(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "trig-in")
    created = stack.tusk(
        "pipeline", "create", "-f",
        pipeline(tmp_path, "trig", "trig-in", {"branch": "staging", "commits": 2}),
    )  # fmt: skip
    assert "trigger" not in created.stderr.decode()  # applied, so no warning
    first = put(stack, tmp_path, "trig-in@staging:/", {"a.txt": "A"})
    second = put(stack, tmp_path, "trig-in@staging:/", {"b.txt": "B"})

    stack.tusk("job", "wait", "-p", "trig", "-g", second)

    branches = {
        b["name"]: b["head"] for b in as_json(stack.tusk("branch", "list", "trig-in", "--json"))
    }
    assert branches["master"] == second
    jobs = as_json(stack.tusk("job", "list", "-p", "trig", "--json"))
    assert len(jobs) == 1  # not one per commit
    assert {i["commit"] for i in jobs[0]["inputs"]} == {second}
    assert first != second
    assert stack.tusk("get", "trig@master:/a.txt").stdout == b"A"
    assert stack.tusk("get", "trig@master:/b.txt").stdout == b"B"

    # One more commit is not enough for the next run; a second one is.
    put(stack, tmp_path, "trig-in@staging:/", {"c.txt": "C"})
    fourth = put(stack, tmp_path, "trig-in@staging:/", {"d.txt": "D"})
    stack.tusk("job", "wait", "-p", "trig", "-g", fourth)
    assert len(as_json(stack.tusk("job", "list", "-p", "trig", "--json"))) == 2


def test_a_trigger_on_the_branch_it_reads_is_warned_about(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "trig-same")
    created = stack.tusk(
        "pipeline", "create", "-f", pipeline(tmp_path, "trig-same-p", "trig-same", {"size": "1MB"})
    )
    assert "trigger.branch" in created.stderr.decode()
