"""``job.created`` (v2) names its spec by pipeline, version and digest; the scheduler reads it
from a real trigger service (a uvicorn process on the shared repo service) the first time, and
from the jobs it already stores after that. A spec that is gone fails the job, named."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.backing.common import free_port
from tests.scheduler.conftest import clean_env, scheduler_settings, start_server, wait_healthy
from tests.scheduler.helpers import (
    EventLog,
    commit_files,
    envelope,
    executions,
    pipeline_spec,
    unique,
)
from tusk.client import RepoClient
from tusk.client.pipelines import TriggerClient
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC, InputCommit, JobCreated
from tusk.wire.specs import PipelineVersionSpec
from tusk_scheduler import store
from tusk_scheduler.context import build_context


@pytest.fixture(scope="module")
def trigger_url(repo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("trigger-service")
    port = free_port()
    env = clean_env(TUSK_DATA_DIR=str(data), TUSK_REPO_URL=repo_url)
    process = start_server("tusk_trigger.app:create_app", port, env, data / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, "the trigger service")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def created(version: PipelineVersionSpec, source: str, commit: str, digest: str = "") -> JobCreated:
    return JobCreated(
        job=uuid.uuid4().hex,
        pipeline=version.pipeline,
        version=version.version,
        spec_digest=digest or version.digest,
        inputs=(InputCommit(name="in", repo=source, branch="master", commit=commit),),
        global_id=uuid.uuid4().hex,
        output_repo=version.pipeline,
        output_branch="master",
        created_at=datetime.now(UTC),
    )


async def test_the_spec_is_read_from_the_trigger_once_per_version(
    tmp_path: Path,
    repo_url: str,
    trigger_url: str,
    markers: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, pipeline = unique("raw"), unique("byid")
    async with RepoClient(repo_url) as repos, TriggerClient(trigger_url) as triggers:
        await repos.create_repo(source)
        spec = pipeline_spec(pipeline, source, parallelism=1, markers=markers)
        await triggers.create_pipeline(json.dumps({**spec, "description": "é" * 100_000}))
        version = await triggers.pipeline_version(pipeline, 1)
        first = await commit_files(repos, source, {"/a.txt": b"a"})
        second = await commit_files(repos, source, {"/a.txt": None, "/b.txt": b"b"})

    bus = MemoryBus(partitions=3)
    settings = scheduler_settings(tmp_path / "scheduler", repo_url, TUSK_TRIGGER_URL=trigger_url)
    async with build_context(settings, bus=bus) as context:
        reads: list[tuple[str, int]] = []
        read = context.triggers.pipeline_version

        async def counted(name: str, number: int) -> PipelineVersionSpec:
            reads.append((name, number))
            return await read(name, number)

        monkeypatch.setattr(context.triggers, "pipeline_version", counted)
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        job1 = created(version, source, first)
        await bus.publish([envelope(job1)])
        done = await events.wait_for(job1.job, "succeeded")
        assert done["counts"]["processed"] == 1
        assert reads == [(pipeline, 1)]
        job2 = created(version, source, second)
        await bus.publish([envelope(job2)])
        await events.wait_for(job2.job, "succeeded")
        assert reads == [(pipeline, 1)]  # the second job's spec was at hand: no request
    assert executions(markers) == {"a.txt": 1, "b.txt": 1}


@pytest.mark.parametrize("what", ["another digest", "no such pipeline"])
async def test_a_job_whose_spec_is_gone_fails_naming_it(
    tmp_path: Path, repo_url: str, trigger_url: str, markers: Path, what: str
) -> None:
    source, pipeline = unique("raw"), unique("gone")
    async with RepoClient(repo_url) as repos, TriggerClient(trigger_url) as triggers:
        await repos.create_repo(source)
        commit = await commit_files(repos, source, {"/a.txt": b"a"})
        if what == "another digest":  # as when a pipeline is deleted and made again
            spec = pipeline_spec(pipeline, source, markers=markers)
            await triggers.create_pipeline(json.dumps(spec))
            version = await triggers.pipeline_version(pipeline, 1)
            job = created(version, source, commit, digest="0" * 64)
        else:
            now = datetime.now(UTC)
            version = PipelineVersionSpec(
                pipeline=pipeline, version=1, digest="0" * 64, spec={}, created_at=now
            )
            job = created(version, source, commit)

    bus = MemoryBus(partitions=3)
    settings = scheduler_settings(tmp_path / "scheduler", repo_url, TUSK_TRIGGER_URL=trigger_url)
    async with build_context(settings, bus=bus) as context:
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        await bus.publish([envelope(job)])
        failed = await events.wait_for(job.job, "failed")
        assert f"version 1 of pipeline {pipeline!r} is gone" in failed["reason"]
        assert context.consumer.dead_lettered == 0
        async with context.db.session(write=False) as session:
            assert not await store.job_known(session, job.job)  # nothing else was run
    assert executions(markers) == {}
