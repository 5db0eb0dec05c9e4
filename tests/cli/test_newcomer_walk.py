"""What a new user runs into, tried with the real `tusk` against `tusk up`: job wait that says
what it waits for and stops when the job cannot come, failure reasons with the command's
stderr, short ids, warnings for globs that match nothing, the event feed, confirmations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import TUSK, Stack

FAILING = (
    "import sys; print('reading the input'); "
    "print('bad row 7: price is not a number', file=sys.stderr); sys.exit(1)"
)
COPYING = (
    "import os, shutil; "
    "shutil.copy(os.environ['PFS_IN'], os.path.join(os.environ['TUSK_PFS_ROOT'], 'out', 'x'))"
)


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


def spec_file(tmp: Path, name: str, repo: str, code: str, glob: str = "/*") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": name},
                "input": {"pfs": {"name": "in", "repo": repo, "glob": glob}},
                "transform": {"cmd": [sys.executable, "-c", code]},
            }
        )
    )
    return path


def put_one(stack: Stack, tmp: Path, repo: str, content: bytes = b"x\n") -> str:
    source = tmp / f"{repo}.txt"
    source.write_bytes(content)
    stack.tusk("put", f"{repo}@master:/a.txt", "-f", source)
    return str(as_json(stack.tusk("commit", "inspect", f"{repo}@master", "--json"))["id"])


def test_version(stack: Stack) -> None:
    result = stack.tusk("--version")
    assert result.stdout.decode().startswith("tusk 0.")


def test_a_failed_datum_says_what_its_command_wrote_to_stderr(
    stack: Stack, tmp_path: Path
) -> None:
    stack.tusk("repo", "create", "orders")
    spec = spec_file(tmp_path, "price", "orders", FAILING)
    created = stack.tusk("pipeline", "create", "-f", spec)
    assert "its command runs in" in created.stderr.decode()
    commit = put_one(stack, tmp_path, "orders")
    waited = stack.tusk("job", "wait", "-p", "price", "-g", commit, check=False)
    err = waited.stderr.decode()
    assert waited.returncode == 1, err
    assert "waiting for the job of price" in err
    assert "bad row 7: price is not a number" in err
    job = as_json(stack.tusk("job", "list", "-p", "price", "--json"))[0]
    assert job["state"] == "failure"
    # tusk up's log says so at warning level, not among the info lines.
    failed_lines = [line for line in stack.log_text().splitlines() if "job failed" in line]
    assert failed_lines
    assert all("warning" in line for line in failed_lines), failed_lines
    assert "bad row 7" in job["reason"]
    # Short ids, as the tables print them.
    assert as_json(stack.tusk("job", "inspect", job["id"][:8], "--json"))["id"] == job["id"]
    datums = as_json(stack.tusk("datum", "list", job["id"][:8], "--json"))
    assert len(datums) == 1
    assert "bad row 7" in (datums[0]["error"] or "")
    short_datum = datums[0]["datum"][:16]
    datum = as_json(stack.tusk("datum", "inspect", job["id"][:8], short_datum, "--json"))
    assert datum["datum"] == datums[0]["datum"]
    inspected = as_json(stack.tusk("commit", "inspect", f"orders@{commit[:8]}", "--json"))
    assert inspected["id"] == commit


def test_job_wait_stops_when_the_job_cannot_come(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "early")
    commit = put_one(stack, tmp_path, "early")
    typo = stack.tusk("job", "wait", "-p", "no-such-pipe", "-g", commit, check=False)
    assert typo.returncode == 1
    assert "pipeline 'no-such-pipe' does not exist" in typo.stderr.decode()
    # Created after the commit: its first job is its own, no job comes for this change.
    stack.tusk("pipeline", "create", "-f", spec_file(tmp_path, "late", "early", COPYING))
    late = stack.tusk("job", "wait", "-p", "late", "-g", commit, check=False)
    assert late.returncode == 1
    assert "before pipeline late was created" in late.stderr.decode()
    # A change in a repo the pipeline does not read.
    stack.tusk("repo", "create", "elsewhere")
    other = put_one(stack, tmp_path, "elsewhere")
    unrelated = stack.tusk("job", "wait", "-p", "late", "-g", other, check=False)
    assert unrelated.returncode == 1
    assert "did not start in a repo that late reads from" in unrelated.stderr.decode()


def test_job_wait_stops_when_an_upstream_job_failed(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "up-src")
    stack.tusk("pipeline", "create", "-f", spec_file(tmp_path, "up-fail", "up-src", FAILING))
    stack.tusk("pipeline", "create", "-f", spec_file(tmp_path, "down", "up-fail", COPYING))
    commit = put_one(stack, tmp_path, "up-src")
    waited = stack.tusk("job", "wait", "-p", "down", "-g", commit, check=False)
    assert waited.returncode == 1
    err = waited.stderr.decode()
    assert "of up-fail ended failure" in err
    assert "no job of down will come" in err


def test_a_glob_that_matches_nothing_warns(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "sparse")
    spec = spec_file(tmp_path, "picky", "sparse", COPYING, glob="/missing/*")
    stack.tusk("pipeline", "create", "-f", spec)
    commit = put_one(stack, tmp_path, "sparse")
    waited = stack.tusk("job", "wait", "-p", "picky", "-g", commit)
    err = waited.stderr.decode()
    assert "warning" in err
    assert "'/missing/*'" in err
    assert "matched nothing" in err
    job = as_json(stack.tusk("job", "list", "-p", "picky", "--json"))[0]
    assert job["state"] == "success"
    assert "matched nothing" in job["reason"]
    assert "job succeeded without datums" in stack.log_text()


def test_events_tail_reads_the_embedded_bus(stack: Stack) -> None:
    tail = subprocess.Popen(
        [str(TUSK), "events", "tail", "--topic", "tusk.repos", "-n", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=stack.env,
    )
    try:
        assert tail.stderr is not None
        ready = tail.stderr.readline().decode()  # said once it reads the feed
        assert "reading tusk.repos from the event feed" in ready, ready
        stack.tusk("repo", "create", "watched")
        out, err = tail.communicate(timeout=120)
    finally:
        tail.kill()
    assert tail.returncode == 0, err.decode()
    event = json.loads(out)["event"]
    assert event["type"] == "io.tusk.repo.created.v1"
    assert event["data"]["repo"] == "watched"


def test_repo_delete_asks_first(stack: Stack) -> None:
    stack.tusk("repo", "create", "doomed")
    refused = stack.tusk("repo", "delete", "doomed", check=False)
    assert refused.returncode == 1
    assert "--yes" in refused.stderr.decode()
    assert as_json(stack.tusk("repo", "inspect", "doomed", "--json"))["name"] == "doomed"
    stack.tusk("repo", "delete", "doomed", "--yes")
    gone = stack.tusk("repo", "inspect", "doomed", check=False)
    assert gone.returncode == 1
