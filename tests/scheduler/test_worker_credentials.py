"""Pipelines do not hold the keys: with authentication on, a job's workers get a credential of
their own (read the inputs, write only the job's commits), the pipeline's command gets none,
and the credential is revoked when the job ends. Links in the output are never followed."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backing.common import free_port
from tests.scheduler.conftest import clean_env, scheduler_settings, start_server, wait_healthy
from tests.scheduler.helpers import EventLog, commit_files, envelope, job_created, unique
from tusk.client import RepoClient
from tusk.errors import Unauthorized
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC
from tusk_scheduler.context import build_context

ROOT = "root-token-for-credential-tests"

# The command records what it can see of credentials, then tries the scheduler's token and
# whatever token it finds; content LINK makes it leave a link to a host file in its output.
PROGRAM = r"""
import json, os, pathlib, urllib.request
src = pathlib.Path(os.environ["PFS_IN"])
out = pathlib.Path(os.environ["TUSK_PFS_ROOT"]) / "out"
if "LINK" in src.read_text():
    os.symlink("/etc/passwd", out / "passwd")
    (out / "hostdir").symlink_to("/etc", target_is_directory=True)
tokens = sorted(v for k, v in os.environ.items() if "TOKEN" in k)
(out / (src.name + ".seen")).write_text(json.dumps(tokens))
"""


def spec(name: str, source: str) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"name": "in", "repo": source, "glob": "/*"}},
        "transform": {"cmd": [sys.executable, "-c", PROGRAM]},
        "parallelism_spec": {"constant": 1},
        "datum_tries": 1,
    }


@pytest.fixture(scope="module")
def secured_repo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("secured-repo")
    port = free_port()
    env = clean_env(TUSK_DATA_DIR=str(data), TUSK_API_TOKENS=ROOT)
    process = start_server("tusk_repo.app:create_app", port, env, data / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, "the repo service")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
async def root(secured_repo_url: str) -> AsyncIterator[RepoClient]:
    async with RepoClient(secured_repo_url, ROOT) as client:
        yield client


async def run_job(
    tmp_path: Path, repo_url: str, files: dict[str, bytes], root: RepoClient
) -> tuple[str, dict[str, Any]]:
    source, pipeline = unique("raw"), unique("seen")
    await root.create_repo(source)
    await root.create_repo(pipeline)
    commit = await commit_files(root, source, files)
    global_id = (await root.inspect_commit(source, commit)).global_id
    created = job_created(spec(pipeline, source), source, commit, global_id)
    bus = MemoryBus(partitions=3)
    settings = scheduler_settings(
        tmp_path / "scheduler", repo_url, TUSK_TOKEN=ROOT, api_tokens=ROOT
    )
    async with build_context(settings, bus=bus):
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        await bus.publish([envelope(created)])
        deadline = time.monotonic() + 300  # generous: the machine may be loaded
        while time.monotonic() < deadline:
            await events.poll()
            if ended := events.of(created.job, "succeeded") + events.of(created.job, "failed"):
                return created.job, ended[0]
    raise AssertionError("the job did not end")


async def test_the_command_gets_no_credential_and_the_workers_lose_theirs(
    tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    job, ended = await run_job(tmp_path, secured_repo_url, {"/a.txt": b"a"}, root)
    assert "reason" not in ended, ended
    pipeline = ended["pipeline"]
    seen = await _read(root, pipeline, ended["output_commit"], "/a.txt.seen")
    assert seen == b"[]"  # neither the scheduler's token nor the job's credential

    worker_tokens = [t for t in await root.list_tokens(revoked=True) if t.job == job]
    assert worker_tokens == []  # not listed among people's tokens
    audit = await root.audit(identity=f"pipeline:{pipeline}")
    assert audit, "the worker's writes are recorded under the pipeline's identity"
    assert all(e.resource == f"repo:{pipeline}" for e in audit)
    assert {e.status for e in audit} == {201}
    # Issued once for the job, revoked at its end.
    issued = await root.audit(identity="admin-token-1", resource=f"pipeline:{pipeline}")
    assert [(e.action, e.target, e.status) for e in issued] == [
        ("POST", "/v1/auth/worker-tokens", 201)
    ]
    revoked = [
        (e.action, e.status)
        for e in await root.audit(identity="admin-token-1", limit=1000)
        if e.target == f"/v1/auth/worker-tokens/{job}"
    ]
    assert revoked == [("DELETE", 204)]


async def test_a_link_in_the_output_fails_the_datum_and_uploads_nothing(
    tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    _, ended = await run_job(tmp_path, secured_repo_url, {"/l.txt": b"LINK"}, root)
    assert "symbolic link" in ended["reason"], ended
    assert "/etc/passwd" in ended["reason"] or "/etc" in ended["reason"]
    files = [f.path async for f in root.walk(ended["pipeline"], ended["output_commit"], "/")]
    assert not any("passwd" in p or "hostdir" in p for p in files), files


async def test_a_revoked_worker_credential_is_refused(
    root: RepoClient, secured_repo_url: str
) -> None:
    repo = unique("out")
    await root.create_repo(repo)
    output = await root.start_commit(repo, "master")
    meta = await root.start_commit(repo, "meta")
    job = "f" * 32
    issued = await root.create_worker_token(
        job=job, pipeline=repo, output_repo=repo, read_repos=[], write_commits=[output.id, meta.id]
    )
    async with RepoClient(secured_repo_url, issued.token) as worker:
        await worker.put_file(repo, output.id, "/x", b"x")
        await root.revoke_worker_tokens(job)
        with pytest.raises(Unauthorized):
            await worker.put_file(repo, output.id, "/y", b"y")


async def _read(client: RepoClient, repo: str, commit: str, path: str) -> bytes:
    chunks = [c async for c in client.get_file(repo, commit, path)]
    return b"".join(chunks)
