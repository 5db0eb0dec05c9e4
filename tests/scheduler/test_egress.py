"""Egress (Pachyderm's ``egress: {URL: s3://…}``): a job's finished output commit is copied to
an S3 bucket — here the real S3 server of tests.backing (versitygw) — and the job's detail says
how it went; a target that refuses fails the job, naming it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backing.s3 import S3Server
from tests.scheduler.conftest import EventLog, Scheduler, scheduler_settings
from tests.scheduler.helpers import commit_files, job_created, pipeline_spec, unique
from tusk.client import RepoClient
from tusk.events.envelope import Envelope
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC
from tusk_scheduler.app import create_app
from tusk_scheduler.context import build_context
from tusk_scheduler.domain import egress


@pytest.fixture
async def scheduler(
    tmp_path: Path, repo_url: str, scheduler_database: str | None, s3: S3Server
) -> AsyncIterator[Scheduler]:
    """The scheduler in-process, with egress credentials for the test S3 server."""
    bus = MemoryBus(partitions=3)
    extra: dict[str, object] = {"database_url": scheduler_database} if scheduler_database else {}
    settings = scheduler_settings(
        tmp_path / "scheduler",
        repo_url,
        TUSK_EGRESS_S3_ENDPOINT_URL=s3.endpoint_url,
        TUSK_EGRESS_S3_ACCESS_KEY_ID=s3.access_key,
        TUSK_EGRESS_S3_SECRET_ACCESS_KEY=s3.secret_key,
        TUSK_EGRESS_S3_REGION=s3.region,
        **extra,
    )
    async with build_context(settings, bus=bus) as context:
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as api:
            yield Scheduler(context, bus, events, api)


def _objects(s3: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    client: Any = s3.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


async def test_the_output_commit_is_copied_to_the_bucket(
    scheduler: Scheduler,
    repos: RepoClient,
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(egress, "PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    bucket = f"egress-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    source, pipeline = unique("raw"), unique("upper")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    large = b"x" * (11 * 1024 * 1024 + 7)  # three parts: 5 MiB, 5 MiB and the rest
    files = {"/a.txt": b"alpha", "/b.txt": b"beta", "/large.txt": large}
    commit = await commit_files(repos, source, files)
    global_id = (await repos.inspect_commit(source, commit)).global_id
    spec = pipeline_spec(pipeline, source, egress={"URL": f"s3://{bucket}/exports/v1"})
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    await scheduler.events.wait_for(created.job, "succeeded", within=300)
    assert _objects(s3, bucket, "") == {
        "exports/v1/a.txt.out": b"ALPHA",
        "exports/v1/b.txt.out": b"BETA",
        "exports/v1/large.txt.out": large.upper(),
    }
    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    assert job["state"] == "success"
    shown = job["egress"]
    assert shown["url"] == f"s3://{bucket}/exports/v1"
    assert (shown["state"], shown["files"], shown["error"]) == ("success", 3, None)
    assert shown["bytes"] == len(large) + len("ALPHA") + len("BETA")
    assert shown["finished_at"]
    # No multipart upload is left behind.
    assert not s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


async def test_a_missing_bucket_fails_the_job_naming_it(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    source, pipeline = unique("raw"), unique("upper")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    commit = await commit_files(repos, source, {"/a.txt": b"alpha"})
    global_id = (await repos.inspect_commit(source, commit)).global_id
    missing = f"no-such-{uuid.uuid4().hex[:12]}"
    spec = pipeline_spec(
        pipeline, source, egress={"object_storage": {"url": f"s3://{missing}/dir"}}
    )
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    failed = await scheduler.events.wait_for(created.job, "failed", within=300)
    assert f"egress to s3://{missing}/dir failed: NoSuchBucket" in failed["reason"]
    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    assert job["state"] == "failure"
    assert job["egress"]["state"] == "failure"
    assert "the bucket does not exist" in job["egress"]["error"]


async def test_without_credentials_the_job_fails_naming_the_settings(
    tmp_path: Path,
    repo_url: str,
    repos: RepoClient,
    s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bus = MemoryBus(partitions=3)
    settings = scheduler_settings(
        tmp_path / "scheduler", repo_url, TUSK_EGRESS_S3_ENDPOINT_URL=s3.endpoint_url
    )
    source, pipeline = unique("raw"), unique("upper")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    commit = await commit_files(repos, source, {"/a.txt": b"alpha"})
    global_id = (await repos.inspect_commit(source, commit)).global_id
    spec = pipeline_spec(pipeline, source, egress={"URL": "s3://anywhere/dir"})
    created = job_created(spec, source, commit, global_id)
    async with build_context(settings, bus=bus) as context:
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        await bus.publish([Envelope.wrap(created, source="tests")])
        failed = await events.wait_for(created.job, "failed", within=300)
        assert "the scheduler has no S3 credentials" in failed["reason"]
        assert "TUSK_EGRESS_S3_ACCESS_KEY_ID" in failed["reason"]
        assert context.settings.egress_s3_access_key_id is None
