"""``pfs.s3`` and ``s3_out`` as in Pachyderm: the datum's command reaches its input as the
bucket named after the input and writes the bucket ``out`` through boto3 at ``S3_ENDPOINT``;
what it writes is in the job's output commit, with the datum's outputs."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.scheduler.conftest import Scheduler
from tests.scheduler.helpers import (
    commit_files,
    job_created,
    output_files,
    unique,
    wait_until,
)
from tusk.client import RepoClient

# Written as Pachyderm's S3 examples are: endpoint from S3_ENDPOINT, buckets by input name.
PROGRAM = r"""
import os, io, boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
listed = s3.list_objects_v2(Bucket="in")
for item in listed.get("Contents", []):
    body = s3.get_object(Bucket="in", Key=item["Key"])["Body"].read()
    s3.put_object(Bucket="out", Key="upper/" + item["Key"], Body=body.upper())
top = s3.list_objects_v2(Bucket="in", Delimiter="/")
prefixes = sorted(p["Prefix"] for p in top.get("CommonPrefixes", []))
s3.put_object(Bucket="out", Key="prefixes.txt", Body=",".join(prefixes).encode())
part = s3.get_object(Bucket="in", Key="a.txt", Range="bytes=1-3")["Body"].read()
s3.put_object(Bucket="out", Key="range.txt", Body=part)
try:
    s3.put_object(Bucket="in", Key="sneaky.txt", Body=b"no")
except ClientError as e:
    s3.put_object(Bucket="out", Key="denied.txt", Body=e.response["Error"]["Code"].encode())
# A large object goes in parts, as boto3 sends anything above its threshold.
big = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
boto3.client("s3").upload_fileobj(io.BytesIO(b"z" * (11 * 2**20)), "out", "big.bin", Config=big)
s3.put_object(Bucket="out", Key="root.txt", Body=os.environ["TUSK_PFS_ROOT"].encode())
"""


@pytest.fixture(params=["off", "bwrap"])
def sandbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Set before the scheduler starts its workers. In the sandbox too: it shares the host's
    loopback, where the sidecar listens."""
    monkeypatch.setenv("TUSK_WORKER_SANDBOX", request.param)
    return str(request.param)


async def test_the_command_reads_and_writes_through_s3(
    sandbox: str, scheduler: Scheduler, repos: RepoClient
) -> None:
    source, pipeline = unique("raw"), unique("s3")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    commit = await commit_files(repos, source, {"/a.txt": b"alpha", "/dir/b.txt": b"beta"})
    global_id = (await repos.inspect_commit(source, commit)).global_id
    spec = {
        "pipeline": {"name": pipeline},
        "input": {"pfs": {"name": "in", "repo": source, "glob": "/", "s3": True}},
        "transform": {"cmd": [sys.executable, "-c", PROGRAM]},
        "s3_out": True,
        "datum_tries": 1,
    }
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    done = await _ended(scheduler, created.job)
    files = await output_files(repos, pipeline, done["output_commit"])
    assert files == {
        "/upper/a.txt": b"ALPHA",
        "/upper/dir/b.txt": b"BETA",
        "/prefixes.txt": b"dir/",
        "/range.txt": b"lph",
        "/denied.txt": b"AccessDenied",
        "/big.bin": b"z" * (11 * 2**20),
        "/root.txt": files["/root.txt"],
    }
    assert (files["/root.txt"] == b"/pfs") == (sandbox == "bwrap")
    logs = (await scheduler.api.get(f"/v1/jobs/{created.job}/logs")).json()
    assert "S3 buckets in, out at S3_ENDPOINT=http://127.0.0.1:" in logs[0]["log"]


BATCHED = r"""
import os, boto3
from tusk.worker.nextdatum import batch_all_datums
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])  # one client, many datums

@batch_all_datums
def transform():
    for item in s3.list_objects_v2(Bucket="in").get("Contents", []):
        body = s3.get_object(Bucket="in", Key=item["Key"])["Body"].read()
        s3.put_object(Bucket="out", Key=item["Key"] + ".upper", Body=body.upper())

transform()
"""


async def test_a_batching_command_sees_each_datum_in_its_buckets(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    source, pipeline = unique("raw"), unique("s3b")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    files = {f"/{c}.txt": c.encode() * 3 for c in "abc"}
    commit = await commit_files(repos, source, files)
    global_id = (await repos.inspect_commit(source, commit)).global_id
    spec = {
        "pipeline": {"name": pipeline},
        "input": {"pfs": {"name": "in", "repo": source, "glob": "/*", "s3": True}},
        "transform": {"cmd": [sys.executable, "-c", BATCHED], "datum_batching": True},
        "s3_out": True,
        "datum_tries": 1,
    }
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    done = await _ended(scheduler, created.job)
    assert done["counts"]["processed"] == 3
    assert await output_files(repos, pipeline, done["output_commit"]) == {
        f"{path}.upper": data.upper() for path, data in files.items()
    }


async def _ended(scheduler: Scheduler, job: str) -> dict[str, Any]:
    """The job's succeeded event; a failed one fails the test at once, with its reason."""
    events = scheduler.events

    async def over() -> bool:
        await events.poll()
        return bool(events.of(job, "succeeded") or events.of(job, "failed"))

    await wait_until(over, within=300, what=f"job {job} to end")
    assert not events.of(job, "failed"), events.of(job, "failed")[0]["reason"]
    return events.of(job, "succeeded")[0]
