"""The real `tusk` command against `tusk up` running as a separate process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tusk.client import RepoClient, batches
from tusk.errors import Unavailable
from tusk_cli.main import build_app

from .conftest import TUSK, Stack, clean_env, free_port, start_stack

BIG = 3 * (1 << 20) + 12345  # over the 1 MiB line, so streamed on its own


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


def error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """A user error: exit code 1 and one line on stderr, without a traceback."""
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "top.txt": b"top\n",
        "a/one.csv": b"x,y\n1,2\n",
        "a/b/deep.json": b'{"deep": true}',
        "a/b/c/empty": b"",
        "big/blob.bin": os.urandom(BIG),
        **{f"many/f{i:03}.txt": f"file {i}\n".encode() for i in range(40)},
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return files


def test_round_trip(stack: Stack, tmp_path: Path) -> None:
    tusk = stack.tusk
    tusk("repo", "create", "raw", "-d", "end-to-end")

    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"hello, tusk\n")
    put = tusk("put", "raw@master:/hello.txt", "-f", hello)
    assert "finished commit" in put.stderr.decode()

    tree = tmp_path / "tree"
    files = make_tree(tree)
    tusk("put", "raw@master:/tree", "-r", "-f", tree)

    root = {e["path"]: e for e in as_json(tusk("ls", "raw@master", "--json"))}
    assert set(root) == {"/hello.txt", "/tree"}
    assert root["/tree"]["type"] == "dir"
    assert root["/tree"]["file_count"] == len(files)
    assert root["/tree"]["size_bytes"] == sum(map(len, files.values()))
    listed = as_json(tusk("ls", "raw@master:/tree/a", "--json"))
    assert [(e["path"], e["type"]) for e in listed] == [
        ("/tree/a/b", "dir"), ("/tree/a/one.csv", "file"),
    ]
    assert "/tree/big/" in tusk("ls", "raw@master:/tree").stdout.decode()

    # Files come back byte for byte: to stdout, to a file, and as a tree.
    assert tusk("get", "raw@master:/hello.txt").stdout == hello.read_bytes()
    out = tmp_path / "blob.bin"
    tusk("get", "raw@master:/tree/big/blob.bin", "-o", out)
    assert out.read_bytes() == files["big/blob.bin"]
    copy = tmp_path / "copy"
    tusk("get", "-r", "raw@master:/tree", "-o", copy)
    assert {
        p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()
    } == files

    globbed = as_json(tusk("glob", "raw@master", "/tree/**/*.json", "--json"))
    assert [e["path"] for e in globbed] == ["/tree/a/b/deep.json"]

    # A second commit, opened by hand: puts named to it write into it and leave it open.
    commit_id = tusk("commit", "start", "raw@master", "-d", "second").stdout.decode().strip()
    assert len(commit_id) == 32
    hello.write_bytes(b"hello again\n")
    put = tusk("put", "raw@master:/hello.txt", "-f", hello, "--commit", commit_id[:8])
    assert "still open" in put.stderr.decode()
    tusk("rm", "raw@master:/tree/many", "--commit", commit_id)
    tusk("put", f"raw@{commit_id}:/new.txt", "-f", "-", input=b"from stdin")
    open_commits = as_json(tusk("commit", "list", "raw", "--state", "open", "--json"))
    assert [c["id"] for c in open_commits] == [commit_id]
    tusk("commit", "finish", "raw@master")

    diff = as_json(tusk("diff", "raw@master", "--json"))
    changes = {c["path"]: c["change"] for c in diff["changes"]}
    assert changes["/hello.txt"] == "modified"
    assert changes["/new.txt"] == "added"
    assert changes["/tree/many/f000.txt"] == "deleted"
    assert diff["to_commit"] == commit_id
    assert "/hello.txt" in tusk("diff", "raw@master", "--from", "master^2").stdout.decode()

    log = as_json(tusk("log", "raw@master", "--json"))
    assert log[0]["id"] == commit_id
    assert len(log) == 3
    assert [c["parent"] for c in log] == [log[1]["id"], log[2]["id"], None]
    assert log[0]["description"] == "second"
    assert len(as_json(tusk("log", "raw@master", "--limit", "1", "--json"))) == 1
    listed_commits = as_json(tusk("commit", "list", "raw", "--json"))
    assert [c["id"] for c in listed_commits] == [c["id"] for c in log]
    assert as_json(tusk("commit", "inspect", "raw@master^1", "--json"))["id"] == log[1]["id"]

    history = as_json(tusk("history", "raw@master:/hello.txt", "--json"))
    assert [h["change"] for h in history] == ["modified", "added"]

    tusk("branch", "create", "raw@dev", "--head", "master^1")
    branches = {b["name"]: b["head"] for b in as_json(tusk("branch", "list", "raw", "--json"))}
    assert branches == {"master": commit_id, "dev": log[1]["id"]}
    assert tusk("get", "raw@dev:/hello.txt").stdout == b"hello, tusk\n"

    info = as_json(tusk("repo", "inspect", "raw", "--json"))
    assert info["commit_count"] == 3
    assert sorted(info["branches"]) == ["dev", "master"]
    assert any(r["name"] == "raw" for r in as_json(tusk("repo", "list", "--json")))


def test_user_errors(stack: Stack, tmp_path: Path) -> None:
    tusk = stack.tusk
    unknown = error_line(tusk("repo", "inspect", "nope", check=False))
    assert "repo 'nope' not found" in unknown
    assert "'..'" in error_line(tusk("ls", "nope@master:/a/../b", check=False))
    assert "invalid repo name" in error_line(tusk("ls", "..", check=False))
    assert "repo 'nope' not found" in error_line(
        tusk("put", "nope@master:/x", "-f", __file__, check=False)
    )

    tusk("repo", "create", "errors")
    assert "branch 'master' not found" in error_line(tusk("ls", "errors@master", check=False))
    local = tmp_path / "x.txt"
    local.write_text("x")
    tusk("put", "errors@master:/x.txt", "-f", local)
    assert "is a directory" in error_line(tusk("get", "errors@master:/", check=False))
    assert "use -r" in error_line(tusk("put", "errors@master:/d", "-f", tmp_path, check=False))
    assert "not found" in error_line(tusk("get", "errors@master:/missing", check=False))
    assert "already exists" in error_line(tusk("repo", "create", "errors", check=False))
    assert "No such file" in error_line(
        tusk("put", "errors@master:/y", "-f", tmp_path / "missing", check=False)
    )

    # A failed upload into a commit that put opened itself leaves nothing behind.
    assert as_json(tusk("commit", "list", "errors", "--state", "open", "--json")) == []


def test_unreachable_service(tmp_path: Path, stack: Stack) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = stack.tusk("repo", "list", check=False, env=clean_env(TUSK_REPO_URL=url))
    message = error_line(result)
    assert url in message
    assert "TUSK_REPO_URL" in message


def test_help_explains_addresses(stack: Stack) -> None:
    assert "REPO@REF:/PATH" in stack.tusk("--help").stdout.decode()
    assert "-r" in stack.tusk("put", "--help").stdout.decode()
    assert stack.tusk("version").stdout.decode().startswith("tusk ")


def test_up_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    own = start_stack(tmp_path)
    try:
        # A second stack on the same port, or on the same data directory, says why it cannot.
        clash = subprocess.run(
            [TUSK, "up", "--data-dir", tmp_path / "other"],
            env=own.env, capture_output=True, timeout=60,
        )
        assert clash.returncode == 1
        assert b"cannot listen" in clash.stderr
        locked = subprocess.run(
            [TUSK, "up", "--port", str(free_port())],
            env=own.env, capture_output=True, timeout=60,
        )
        assert locked.returncode == 1
        assert b"another `tusk up`" in locked.stderr
    finally:
        code = own.stop(signal.SIGTERM)
    assert code == 0, own.log_text()
    assert "tusk stopped" in own.log_text()


def test_up_stops_on_ctrl_c(tmp_path: Path) -> None:
    own = start_stack(tmp_path)
    assert own.stop(signal.SIGINT) == 0, own.log_text()


def test_put_batches_small_files_and_streams_large_ones(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process CLI (to count requests) against the running stack."""
    monkeypatch.setattr(batches, "BATCH_FILES", 7)
    requests: list[tuple[str, int]] = []
    put_files, put_file = RepoClient.put_files, RepoClient.put_file

    async def count_batch(self: RepoClient, repo: str, ref: str, files: Any, **kw: Any) -> Any:
        files = list(files)
        requests.append(("batch", len(files)))
        return await put_files(self, repo, ref, files, **kw)

    async def count_single(self: RepoClient, *args: Any, **kw: Any) -> Any:
        requests.append(("single", 1))
        return await put_file(self, *args, **kw)

    monkeypatch.setattr(RepoClient, "put_files", count_batch)
    monkeypatch.setattr(RepoClient, "put_file", count_single)
    tree = tmp_path / "tree"
    expected = {f"s/{i:02}": b"s" * i for i in range(20)}
    expected["edge/just-under"] = b"u" * (batches.SMALL_FILE - 1)
    expected["edge/at-limit"] = b"l" * batches.SMALL_FILE
    for name, content in expected.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(content)

    stack.tusk("repo", "create", "batches")
    result = CliRunner().invoke(
        build_app(),
        ["put", "batches@master:/t", "-r", "-f", str(tree)],
        env={"TUSK_REPO_URL": stack.url},
    )
    assert result.exit_code == 0, result.output
    assert sorted(requests) == [("batch", 7), ("batch", 7), ("batch", 7), ("single", 1)]
    copy = tmp_path / "copy"
    stack.tusk("get", "-r", "batches@master:/t", "-o", copy)
    assert {
        p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()
    } == expected


def test_failed_upload_abandons_the_commit_it_opened(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_file = RepoClient.put_file
    calls = 0

    async def fail_second(self: RepoClient, *args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Unavailable("the network went away")
        return await put_file(self, *args, **kw)

    monkeypatch.setattr(RepoClient, "put_file", fail_second)
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a", "b", "c"):
        (tree / name).write_bytes(b"x" * batches.SMALL_FILE)
    stack.tusk("repo", "create", "abandoned")
    result = CliRunner().invoke(
        build_app(), ["put", "abandoned@master", "-r", "-p", "1", "-f", str(tree)],
        env={"TUSK_REPO_URL": stack.url},
    )
    assert result.exit_code == 1
    assert "the network went away" in result.output
    assert "abandoned commit" in result.output
    assert as_json(stack.tusk("commit", "list", "abandoned", "--json")) == []


def test_local_names_the_server_would_refuse_fail_before_any_commit(
    stack: Stack, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "back\\slash.txt").write_text("refused")
    stack.tusk("repo", "create", "refused")
    assert "backslash" in error_line(
        stack.tusk("put", "refused@master", "-r", "-f", tree, check=False)
    )
    assert as_json(stack.tusk("commit", "list", "refused", "--json")) == []


def test_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    def tusk(*args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [TUSK, *args], env=clean_env(TUSK_DATA_DIR=str(tmp_path), **env),
            capture_output=True, timeout=60,
        )

    assert "TUSK_REPO_PORT" in error_line(tusk("up", TUSK_REPO_PORT="eighty"))
    assert "TUSK_REPO_URL" in error_line(tusk("repo", "list", TUSK_REPO_URL="ftp://x"))
    assert "TUSK_DATABASE_URL" in error_line(tusk("migrate", TUSK_DATABASE_URL="mysql://x"))


def test_migrate_creates_the_embedded_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [TUSK, "migrate", "--data-dir", tmp_path / "fresh"], env=clean_env(),
        capture_output=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "up to date" in result.stderr.decode()
    assert (tmp_path / "fresh" / "tusk.db").is_file()
