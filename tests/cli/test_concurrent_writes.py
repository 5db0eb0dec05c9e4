"""Writes to one branch from several `tusk put`/`tusk rm` at once: each owns its commit, every
acknowledged write lands, and an open commit is joined only when the user names it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tusk.client import RepoClient
from tusk.errors import Unavailable
from tusk_cli.main import build_app

from .conftest import TUSK, Stack

WRITERS = 8


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


def test_concurrent_puts_to_one_branch_all_land(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "racing")
    sources = []
    for i in range(WRITERS):
        source = tmp_path / f"f{i}.txt"
        source.write_text(f"writer {i}\n")
        sources.append(source)
    writers = [
        subprocess.Popen(
            [str(TUSK), "put", f"racing@master:/f{i}.txt", "-f", str(source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=stack.env,
        )
        for i, source in enumerate(sources)
    ]
    outcomes = [(w.wait(timeout=300), w.stderr.read().decode()) for w in writers if w.stderr]
    assert [code for code, _ in outcomes] == [0] * WRITERS, outcomes
    assert not any("is finished" in err for _, err in outcomes)
    listed = as_json(stack.tusk("ls", "racing@master", "--json"))
    assert sorted(e["path"] for e in listed) == sorted(f"/f{i}.txt" for i in range(WRITERS))
    for i in range(WRITERS):
        assert stack.tusk("get", f"racing@master:/f{i}.txt").stdout == f"writer {i}\n".encode()
    commits = as_json(stack.tusk("commit", "list", "racing", "--json"))
    assert len(commits) == WRITERS
    assert all(c["state"] == "finished" for c in commits)


def test_a_failing_put_never_drops_another_puts_file(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A opens its commit and fails part-way while B puts to the same branch: B's file lands
    (before, B joined A's commit and A's abandon dropped it)."""
    stack.tusk("repo", "create", "survivor")
    b_source = tmp_path / "b.txt"
    b_source.write_text("from B\n")
    started: dict[str, Any] = {}

    async def put_b_then_fail(self: RepoClient, *args: Any, **kw: Any) -> Any:
        # A's commit is open now: B starts, says it waits for A's commit, then A fails.
        b = subprocess.Popen(
            [str(TUSK), "put", "survivor@master:/b.txt", "-f", str(b_source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=stack.env,
        )
        assert b.stderr is not None
        started["b"] = b
        started["first_line"] = (await asyncio.to_thread(b.stderr.readline)).decode()
        raise Unavailable("the network went away")

    monkeypatch.setattr(RepoClient, "put_files", put_b_then_fail)
    a_source = tmp_path / "a.txt"
    a_source.write_text("from A\n")
    result = CliRunner().invoke(
        build_app(), ["put", "survivor@master:/a.txt", "-f", str(a_source)],
        env={"TUSK_REPO_URL": stack.url},
    )
    assert result.exit_code == 1
    assert "abandoned commit" in result.output
    assert "waiting for commit" in started["first_line"]
    b = started["b"]
    _, err = b.communicate(timeout=120)
    assert b.returncode == 0, err.decode()
    assert stack.tusk("get", "survivor@master:/b.txt").stdout == b"from B\n"
    listed = as_json(stack.tusk("ls", "survivor@master", "--json"))
    assert [e["path"] for e in listed] == ["/b.txt"]


def test_an_open_commit_is_joined_only_when_named(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "grouped")
    source = tmp_path / "x.txt"
    source.write_text("x\n")
    commit = stack.tusk("commit", "start", "grouped@master").stdout.decode().strip()
    refused = stack.tusk("put", "grouped@master:/x.txt", "-f", source, check=False)
    message = refused.stderr.decode()
    assert refused.returncode == 1
    assert commit in message
    assert "--commit" in message
    joined = stack.tusk("put", "grouped@master:/x.txt", "-f", source, "--commit", commit)
    assert "still open" in joined.stderr.decode()
    stack.tusk("rm", "grouped@master:/x.txt", "--commit", commit)
    stack.tusk("put", "grouped@master:/y.txt", "-f", source, "--commit", commit)
    stack.tusk("commit", "finish", f"grouped@{commit}")
    listed = as_json(stack.tusk("ls", "grouped@master", "--json"))
    assert [e["path"] for e in listed] == ["/y.txt"]
    assert len(as_json(stack.tusk("commit", "list", "grouped", "--json"))) == 1


def test_rm_of_a_missing_path_opens_no_commit(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "nothing-to-rm")
    source = tmp_path / "x.txt"
    source.write_text("x\n")
    stack.tusk("put", "nothing-to-rm@master:/x.txt", "-f", source)
    result = stack.tusk("rm", "nothing-to-rm@master:/missing.txt", check=False)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "missing.txt" in err
    assert "abandoned" not in err
    assert len(as_json(stack.tusk("commit", "list", "nothing-to-rm", "--json"))) == 1
