"""Crashes: the scheduler killed mid-job and restarted finishes the job with every datum
processed once; a worker lost mid-shard is replaced for the datums it had not finished."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.backing.common import free_port
from tests.scheduler.conftest import Scheduler, clean_env, start_server, wait_healthy
from tests.scheduler.helpers import (
    commit_files,
    executions,
    job_created,
    output_files,
    pid_alive,
    pipeline_spec,
    unique,
    wait_until,
)
from tusk.client import RepoClient
from tusk.db import Database, migrate
from tusk.errors import Unavailable
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain import ending, running, starting
from tusk_scheduler.events import record_job
from tusk_scheduler.tables import ShardRow, outbox

DATUMS = 8


def _start_scheduler(data: Path, repo_url: str, port: int) -> subprocess.Popen[bytes]:
    env = clean_env(
        TUSK_DATA_DIR=str(data),
        TUSK_REPO_URL=repo_url,
        TUSK_SCHEDULER_POLL_INTERVAL="0.05",
        TUSK_WORKER_SANDBOX="off",  # the pipeline counts its runs in files on the host
    )
    return start_server("tusk_scheduler.app:create_app", port, env, data / "scheduler.log")


def _job(url: str, job: str) -> dict:  # type: ignore[type-arg]
    response = httpx.get(f"{url}/v1/jobs/{job}", timeout=5)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("restart", ["workers running", "workers finished"])
async def test_a_scheduler_killed_mid_job_resumes_it_and_runs_every_datum_once(
    repos: RepoClient, repo_url: str, tmp_path: Path, markers: Path, restart: str
) -> None:
    """Restarted while its workers still run, it adopts them; restarted after they ended, it
    reads their results (and exit status) and has nothing left to run."""
    source, pipeline = unique("raw"), unique("slow")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    # Two datums run at once; the others wait for the gate, so the workers are surely busy
    # when the scheduler is killed, and the test decides when they may finish.
    gate = tmp_path / "gate"
    files = {
        f"/f{i}.txt": (f"file {i}" if i < 2 else f"WAITFOR={gate} file {i}").encode()
        for i in range(DATUMS)
    }
    commit = await commit_files(repos, source, files)
    global_id = (await repos.inspect_commit(source, commit)).global_id
    created = job_created(
        pipeline_spec(pipeline, source, parallelism=2, markers=markers), source, commit, global_id
    )

    # The job as the consumer records it from job.created (the same code), written before the
    # scheduler process starts: a separate process's MemoryBus cannot be published to.
    data = tmp_path / "scheduler"
    data.mkdir()
    url_db = SchedulerSettings(data_dir=data).resolved_database_url
    await migrate(url_db)
    db = Database.from_url(url_db)
    try:
        async with db.session() as session:
            assert await record_job(session, created, created.spec)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        first = _start_scheduler(data, repo_url, port)
        try:
            wait_healthy(url, first, "the scheduler")

            async def some_done() -> bool:
                return _job(url, created.job)["counts"]["processed"] >= 2

            await wait_until(some_done, 300, "two datums to finish")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        workers = [int(s["handle"]) for s in await _shards(db, created.job)]
        assert workers
        assert all(pid_alive(pid) for pid in workers), "the workers must outlive the scheduler"
        assert sum(executions(markers).values()) < DATUMS
        if restart == "workers finished":
            gate.touch()

            async def workers_gone() -> bool:
                return not any(pid_alive(pid) for pid in workers)

            await wait_until(workers_gone, 300, "the orphaned workers to finish")
            assert sum(executions(markers).values()) == DATUMS

        second = _start_scheduler(data, repo_url, port)
        try:
            wait_healthy(url, second, "the restarted scheduler")
            if restart == "workers running":

                async def adopted() -> bool:
                    metrics = httpx.get(f"{url}/metrics", timeout=5).text
                    return "tusk_scheduler_shards_adopted_total 2.0" in metrics

                await wait_until(adopted, 300, "the restarted scheduler to adopt both workers")
                gate.touch()

            async def finished() -> bool:
                return _job(url, created.job)["state"] in ("success", "failure", "killed")

            await wait_until(finished, 90, "the job to finish after the restart")
            job = _job(url, created.job)
            metrics = httpx.get(f"{url}/metrics", timeout=5).text
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        await db.dispose()

    log = (data / "scheduler.log").read_text(errors="replace")[-4000:]
    assert job["state"] == "success", f"{job}\n{log}"
    assert job["counts"]["processed"] == DATUMS
    assert executions(markers) == {f"f{i}.txt": 1 for i in range(DATUMS)}, "each datum once"
    adopted = 2 if restart == "workers running" else 0
    assert f"tusk_scheduler_shards_adopted_total {adopted}.0" in metrics, log
    assert "tusk_scheduler_shard_starts_total{" not in metrics, "nothing was started again"
    assert [s["exit_code"] for s in job["shards"]] == [0, 0]
    assert await output_files(repos, pipeline, job["output_commit"]) == {
        f"{p}.out": d.upper() for p, d in files.items()
    }
    info = await repos.inspect_commit(pipeline, job["output_commit"])
    assert info.state == "finished"
    assert info.error is None
    assert info.global_id == global_id

    db = Database.from_url(url_db)
    try:
        async with db.session(write=False) as session:
            rows = (await session.execute(select(outbox.c.envelope))).scalars().all()
    finally:
        await db.dispose()
    kinds = [r["type"] for r in rows if r["data"]["job"] == created.job]
    assert kinds.count("io.tusk.job.started.v1") == 1
    assert kinds.count("io.tusk.job.succeeded.v1") == 1
    assert "io.tusk.job.failed.v1" not in kinds


async def _shards(db: Database, job: str) -> list[dict]:  # type: ignore[type-arg]
    async with db.session(write=False) as session:
        rows = (await session.scalars(select(ShardRow).where(ShardRow.job == job))).all()
    return [{"shard": r.shard, "handle": r.handle, "attempt": r.attempt} for r in rows]


async def test_a_lost_worker_is_replaced_for_its_unfinished_datums(
    scheduler: Scheduler, repos: RepoClient, markers: Path
) -> None:
    source, pipeline = unique("raw"), unique("lossy")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    files = {f"/g{i}.txt": f"SLEEP=0.5 g{i}".encode() for i in range(4)}
    files["/g1.txt"] = b"SLEEPONCE=120 g1"
    commit = await commit_files(repos, source, files)
    global_id = (await repos.inspect_commit(source, commit)).global_id
    created = job_created(
        pipeline_spec(pipeline, source, parallelism=1, markers=markers), source, commit, global_id
    )
    await scheduler.send(created)

    async def second_running() -> bool:
        return (markers / "g1.txt.pid").exists()

    async def first_recorded() -> bool:
        datums = (await scheduler.api.get(f"/v1/jobs/{created.job}/datums")).json()["items"]
        return any(d["inputs"][0]["path"] == "/g0.txt" and d["state"] == "success" for d in datums)

    await wait_until(second_running, 300, "the second datum to start")
    # Results are written in batches: until then a finished datum counts as unfinished.
    await wait_until(first_recorded, 300, "the first datum's result")
    # The worker dies; the command it was running (in a session of its own) is left behind,
    # and must be stopped before the shard runs again.
    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    worker = int(job["shards"][0]["handle"])
    orphan = int((markers / "g1.txt.pid").read_text())
    os.killpg(worker, signal.SIGKILL)

    done = await scheduler.events.wait_for(created.job, "succeeded")
    assert done["counts"]["processed"] == 4
    progress = [e["counts"]["processed"] for e in scheduler.events.of(created.job, "progress")]
    assert progress, "job.progress while the datums ran"
    assert progress == sorted(progress)
    assert all(0 < n <= 4 for n in progress)
    assert executions(markers) == {"g0.txt": 1, "g1.txt": 2, "g2.txt": 1, "g3.txt": 1}
    assert not pid_alive(orphan)
    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    assert job["shards"][0]["attempt"] == 1
    assert await output_files(repos, pipeline, done["output_commit"]) == {
        f"{p}.out": d.upper() for p, d in files.items()
    }
    started = time.monotonic()
    while pid_alive(worker) and time.monotonic() - started < 5:
        time.sleep(0.05)
    assert not pid_alive(worker)


async def test_carrying_forward_interrupted_after_the_start_is_repaired(
    scheduler: Scheduler, repos: RepoClient, markers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skipped datums' rows and links come after the workers start; when that fails (as
    after a crash right then), the resumed run records them again and finishing links the
    outputs that are missing."""
    source, pipeline = unique("raw"), unique("carry")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    first = await commit_files(repos, source, {f"/k{i}.txt": b"k" for i in range(3)})
    spec = pipeline_spec(pipeline, source, markers=markers)
    job1 = job_created(spec, source, first, (await repos.inspect_commit(source, first)).global_id)
    await scheduler.send(job1)
    await scheduler.events.wait_for(job1.job, "succeeded")

    calls = {"record": 0, "link": 0}
    record, link = starting.record_carried, starting.link

    async def failing_record(*args: Any) -> None:
        calls["record"] += 1
        if calls["record"] == 1:
            raise Unavailable("lost the database for a moment")
        await record(*args)

    async def failing_link(*args: Any) -> None:
        calls["link"] += 1
        if calls["link"] == 1:
            raise Unavailable("lost the repo service for a moment")
        await link(*args)

    # Where running (carrying forward after the start) and ending (linking what is missing)
    # call them.
    monkeypatch.setattr(running, "record_carried", failing_record)
    monkeypatch.setattr(running, "link", failing_link)
    monkeypatch.setattr(ending, "link", failing_link)
    second = await commit_files(repos, source, {"/new.txt": b"new"})
    job2 = job_created(spec, source, second, (await repos.inspect_commit(source, second)).global_id)
    await scheduler.send(job2)
    done = await scheduler.events.wait_for(job2.job, "succeeded")

    assert calls == {"record": 2, "link": 2}
    assert done["counts"]["skipped"] == 3
    assert done["counts"]["processed"] == 1
    assert await output_files(repos, pipeline, done["output_commit"]) == {
        "/k0.txt.out": b"K",
        "/k1.txt.out": b"K",
        "/k2.txt.out": b"K",
        "/new.txt.out": b"NEW",
    }
    assert executions(markers) == {"k0.txt": 1, "k1.txt": 1, "k2.txt": 1, "new.txt": 1}
