"""Pachyderm's retail examples (inner join, outer join, group) through `tusk up` and the CLI as
a user moving from Pachyderm runs them: their specs unchanged from Pachyderm's files, their
commands in the sandbox reading /pfs and Pachyderm's variables; then a spec update that changes
only parallelism, which reprocesses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.backing.bubblewrap import ensure_installed
from tests.backing.common import free_port
from tusk.client.models import JobInfo
from tusk.client.pipelines import TriggerClient
from tusk.client.repo import RepoClient

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "examples" / "pachyderm" / "retail"
CORPUS = ROOT / "tests" / "pipelines" / "pachyderm_corpus"
TUSK = Path(sys.executable).parent / "tusk"

STORES = {
    "1": {"storeid": "1", "name": "Main St", "address": {"zipcode": "10001"}},
    "2": {"storeid": "2", "name": "Harbour", "address": {"zipcode": "20002"}},
    "3": {"storeid": "3", "name": "Airport", "address": {"zipcode": "30003"}},
}


@dataclass
class Stack:
    repos: RepoClient
    trigger: TriggerClient
    env: dict[str, str]
    log: Path

    def tusk(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(TUSK), *map(str, args)], env=self.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    ensure_installed()  # bubblewrap: the commands run sandboxed, as in a container
    ports = {
        name: free_port() for name in ("REPO", "TRIGGER", "SCHEDULER", "INFERENCE", "CONSOLE")
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update({f"TUSK_{n}_PORT": str(p) for n, p in ports.items()})
    env.update({f"TUSK_{n}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items()})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TUSK_SCHEDULER_CODE_DIR"] = str(CODE)
    env["TUSK_WORKER_SANDBOX"] = "bwrap"
    env["TUSK_S3_GATEWAY_PORT"] = "0"  # not needed here; its default port may be taken
    log = tmp_path / "tusk.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(TUSK), "up", "--data-dir", str(tmp_path / "data")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(3000):  # up to 300 s: a loaded machine starts slowly
                try:
                    url = env["TUSK_SCHEDULER_URL"]
                    if (await probe.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, log.read_text()[-5000:]
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"tusk up did not start:\n{log.read_text()[-5000:]}")
        async with (
            RepoClient(env["TUSK_REPO_URL"]) as repos,
            TriggerClient(env["TUSK_TRIGGER_URL"]) as trigger,
        ):
            yield Stack(repos, trigger, env, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("tusk up did not stop within 60 s of SIGTERM")


async def _put(stack: Stack, repo: str, files: dict[str, object]) -> None:
    commit = await stack.repos.start_commit(repo, "master")
    for path, data in files.items():
        await stack.repos.put_file(repo, commit.id, path, json.dumps(data).encode())
    await stack.repos.finish_commit(repo, commit.id)


async def _settled(stack: Stack, pipeline: str, expected: dict[str, str]) -> None:
    """Wait until the pipeline's output is ``expected`` (its first job runs on the inputs'
    heads when it is created), failing at once if one of its jobs fails."""
    async with asyncio.timeout(300):
        while True:
            jobs = [j async for j in stack.trigger.list_jobs(pipeline=pipeline)]
            failed = [j for j in jobs if j.ended and j.state != "success"]
            assert not failed, (failed, stack.log.read_text()[-5000:])
            if jobs and all(j.ended for j in jobs) and await _outputs(stack, pipeline) == expected:
                return
            await asyncio.sleep(0.2)


async def _job(stack: Stack, pipeline: str, version: int) -> JobInfo:
    async with asyncio.timeout(300):
        while True:
            jobs = [j async for j in stack.trigger.list_jobs(pipeline=pipeline)]
            job = next((j for j in jobs if j.version == version and j.ended), None)
            if job is not None:
                assert job.state == "success", (job, stack.log.read_text()[-5000:])
                return job
            await asyncio.sleep(0.2)


async def _outputs(stack: Stack, repo: str) -> dict[str, str] | None:
    found: dict[str, str] = {}
    if (await stack.repos.inspect_repo(repo)).commit_count == 0:
        return None
    async with aclosing(stack.repos.list_dir(repo, "master", "/")) as entries:
        paths = [e.path async for e in entries if e.type == "file"]
    for path in paths:
        async with aclosing(stack.repos.get_file(repo, "master", path)) as pieces:
            found[path] = b"".join([p async for p in pieces]).decode()
    return found


async def test_retail_joins_and_group_from_pachyderms_specs(stack: Stack, tmp_path: Path) -> None:
    for repo in ("stores", "purchases", "returns"):
        await stack.repos.create_repo(repo)
    await _put(stack, "stores", {f"/STOREID{n}.txt": s for n, s in STORES.items()})
    await _put(
        stack,
        "purchases",
        {"/P1_STOREID1.txt": {"amount": 12.5}, "/P2_STOREID2.txt": {"amount": 7.25}},
    )
    await _put(
        stack, "returns", {"/R1_STOREID1.txt": {"amount": 2.5}, "/R2_STOREID9.txt": {"amount": 1}}
    )

    planned = stack.tusk("pipeline", "create", "-f", CORPUS / "s020.json", "--dry-run").stdout
    assert "would create pipeline inner_join (version 1): reads purchases, stores" in planned
    assert "DAG: + purchases -> inner_join" in planned
    assert [p.name for p in await stack.trigger.list_pipelines()] == []
    for spec in ("s020.json", "s023.json", "s019.json"):
        stack.tusk("pipeline", "create", "-f", CORPUS / spec)

    await _settled(
        stack,
        "inner_join",
        {
            "/10001.txt": "Purchase at store: 1 - Main St\n12.50\n",
            "/20002.txt": "Purchase at store: 2 - Harbour\n7.25\n",
        },
    )
    await _settled(
        stack,
        "outer_join",
        {
            "/10001.txt": "Return at store: 1\n2.50\n",
            "/20002.txt": "no return\n",
            "/30003.txt": "no return\n",
            "/unknown-9.txt": "Return at store: 9\n1.00\n",
        },
    )
    await _settled(
        stack,
        "group_store_revenue",
        {
            "/STOREID1.txt": "10.00\n",
            "/STOREID2.txt": "7.25\n",
            "/STOREID3.txt": "0.00\n",
            "/STOREID9.txt": "-1.00\n",
        },
    )

    logged = stack.tusk("logs", "-p", "inner_join").stdout
    assert "store 1 (10001): purchase of 12.50" in logged
    drawn = stack.tusk("pipeline", "draw").stdout.splitlines()
    assert drawn == [
        "purchases",
        "returns",
        "stores",
        "group_store_revenue ◀── purchases, returns, stores",
        "inner_join          ◀── purchases, stores",
        "outer_join          ◀── returns, stores",
    ]
    template = CORPUS / "s022.jsonnet"  # two specs, the second reading the first's output
    args = ("--arg", "suffix=1", "--arg", "tag=2.1.0")
    planned = stack.tusk("pipeline", "create", "--jsonnet", template, *args, "--dry-run").stdout
    assert "would create pipeline outer_join_1 (version 1): reads returns, stores" in planned
    assert "DAG: + outer_join_1 -> " in planned

    # A new version that changes only parallelism: the next job processes only the new datum.
    spec = json.loads((CORPUS / "s020.json").read_text())
    spec["parallelismSpec"] = {"constant": 3}
    updated = tmp_path / "inner_join.json"
    updated.write_text(json.dumps(spec))
    planned = stack.tusk("pipeline", "update", "-f", updated, "--dry-run").stdout
    assert "processed datums are kept" in planned
    stack.tusk("pipeline", "update", "-f", updated)
    await _put(stack, "purchases", {"/P3_STOREID3.txt": {"amount": 3}})
    job = await _job(stack, "inner_join", version=2)
    assert (job.version, job.counts.processed, job.counts.skipped) == (2, 1, 2)
