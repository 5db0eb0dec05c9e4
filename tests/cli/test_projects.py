"""Projects end to end, with the real `tusk` against `tusk up`: a pipeline of project vision
reads vision/images and writes vision/edges, the repo images of the default project stays
apart, and a union reads one input name from two projects (Pachyderm's own example)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import Stack

EDGES = (
    "import os, shutil; out = os.path.join(os.environ['TUSK_PFS_ROOT'], 'out'); "
    "shutil.copy(os.environ['images'], os.path.join(out, 'a.txt')); "
    "open(os.path.join(out, 'who'), 'w').write("
    "os.environ['PPS_PROJECT_NAME'] + ' ' + os.environ['PPS_PIPELINE_NAME'])"
)
# Each datum of the union holds one of the two repos, at /pfs/images either way.
MIX = (
    "import os; out = os.path.join(os.environ['TUSK_PFS_ROOT'], 'out'); "
    "data = open(os.environ['images']).read().strip(); "
    "open(os.path.join(out, data), 'w').write(data)"
)


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


def write_spec(tmp: Path, name: str, spec: dict[str, Any]) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def put(stack: Stack, tmp: Path, address: str, content: bytes) -> str:
    source = tmp / "source.txt"
    source.write_bytes(content)
    stack.tusk("put", address, "-f", source)
    repo = address.partition("@")[0]
    return str(as_json(stack.tusk("commit", "inspect", f"{repo}@master", "--json"))["id"])


def test_a_pipeline_of_a_project_reads_and_writes_in_it(stack: Stack, tmp_path: Path) -> None:
    tusk = stack.tusk
    missing = tusk("repo", "create", "vision/images", check=False)
    assert missing.returncode == 1
    assert "tusk project create vision" in missing.stderr.decode()

    tusk("project", "create", "vision", "-d", "image work")
    tusk("repo", "create", "vision/images")
    tusk("repo", "create", "images")
    edges = {
        "pipeline": {"name": "edges", "project": {"name": "vision"}},
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
        "transform": {"cmd": [sys.executable, "-c", EDGES]},
    }
    mix = {
        "pipeline": {"name": "mix"},
        "input": {
            "union": [
                {"pfs": {"repo": "images", "glob": "/*"}},
                {"pfs": {"repo": "images", "project": "vision", "glob": "/*"}},
            ]
        },
        "transform": {"cmd": [sys.executable, "-c", MIX]},
    }
    created = tusk("pipeline", "create", "-f", write_spec(tmp_path, "edges", edges))
    assert "pipeline.project" not in created.stderr.decode()  # applied, not warned about
    tusk("pipeline", "create", "-f", write_spec(tmp_path, "mix", mix))
    shown = as_json(tusk("pipeline", "inspect", "vision/edges", "--json"))
    assert shown["name"] == "vision/edges"

    put(stack, tmp_path, "images@master:/a.txt", b"in default\n")
    change = put(stack, tmp_path, "vision/images@master:/a.txt", b"in vision\n")
    tusk("job", "wait", "-p", "vision/edges", "-g", change)
    tusk("job", "wait", "-p", "mix", "-g", change)

    assert tusk("get", "vision/edges@master:/a.txt").stdout == b"in vision\n"
    assert tusk("get", "vision/edges@master:/who").stdout == b"vision edges"
    assert tusk("get", "images@master:/a.txt").stdout == b"in default\n"
    mixed = {e["path"] for e in as_json(tusk("ls", "mix@master", "--json"))}
    assert mixed == {"/in default", "/in vision"}

    repos = {r["name"]: r for r in as_json(tusk("repo", "list", "--json"))}
    assert {"images", "vision/images", "vision/edges", "mix"} <= set(repos)
    assert repos["vision/edges"]["owner_pipeline"] == "vision/edges"
    assert "vision/images" in tusk("repo", "list").stdout.decode()
    listed = as_json(tusk("repo", "list", "--project", "vision", "--json"))
    assert sorted(r["name"] for r in listed) == ["vision/edges", "vision/images"]
    listed = as_json(tusk("repo", "list", "--project", "default", "--json"))
    assert {"images", "mix"} <= {r["name"] for r in listed}
    assert not [r for r in listed if "/" in r["name"]]
    listed = as_json(tusk("pipeline", "list", "--project", "vision", "--json"))
    assert [p["name"] for p in listed] == ["vision/edges"]
    branches = as_json(tusk("branch", "list", "vision/images", "--json"))
    assert [b["repo"] for b in branches] == ["vision/images"]
    provenance = tusk("lineage", "vision/edges@master", check=False)
    assert provenance.returncode == 0, provenance.stderr.decode()
    assert "vision/images" in provenance.stdout.decode()

    projects = {p["name"]: p["repo_count"] for p in as_json(tusk("project", "list", "--json"))}
    assert projects["vision"] == 2
    refused = tusk("project", "delete", "vision", check=False)
    assert refused.returncode == 1
    assert "vision/edges" in refused.stderr.decode()


def test_project_commands_explain_themselves(stack: Stack) -> None:
    shown = stack.tusk("project", "--help").stdout.decode()
    assert "namespaces of repos and pipelines" in shown
    for command in ("create", "list", "delete"):
        assert command in shown
    stack.tusk("project", "create", "scratch")
    default = stack.tusk("project", "delete", "default", check=False)
    assert default.returncode == 1
    assert "cannot be deleted" in default.stderr.decode()
    stack.tusk("project", "delete", "scratch")
    names = [p["name"] for p in as_json(stack.tusk("project", "list", "--json"))]
    assert "scratch" not in names
    bad = stack.tusk("project", "create", "no/slash", check=False)
    assert bad.returncode == 1
    assert "invalid project name" in bad.stderr.decode()
