"""Egress: after a job's output commit is finished, its files are copied to the pipeline's
``egress`` target (``s3://bucket/prefix``), each file to ``prefix/<path>``, as Pachyderm does.

The copy streams each file from the repo service to S3 (one PutObject for a small file, a
multipart upload for a large one: never a whole large file in memory). Copying again writes the
same keys, so a job whose egress was interrupted (a scheduler restart) simply egresses again.
How far it got is recorded on the job (``egress`` in its detail) as it goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tusk.errors import Unavailable
from tusk_scheduler import store
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain.job import JobFailure, JobView, Scope, spec_of

PART_BYTES = 8 * 1024 * 1024  # S3's multipart parts are at least 5 MiB (but the last)
RECORD_EVERY = 100  # files between progress records
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


async def egress(x: Scope, job: JobView, commit: str) -> None:
    """Copy ``commit`` of the job's output repo to the spec's ``s3://`` egress target, if it
    has one; a target that refuses (no such bucket, access denied) fails the job naming it."""
    target = spec_of(job).egress
    s3 = target.s3_target if target is not None else None
    if target is None or s3 is None:
        return
    url = str(target.target_url)
    async with x.deps.db.session(write=False) as session:
        row = await store.get_job(session, job.id)
        if row.egress is not None and row.egress.get("state") == "success":
            return  # done before a restart
    bucket, prefix = s3
    record: dict[str, Any] = {"url": url, "state": "running", "files": 0, "bytes": 0}
    await _record(x, job, record)
    try:
        async with _client(x.deps.settings) as client:
            async for info in x.deps.repos.walk(job.output_repo, commit):
                key = f"{prefix}/{info.path.lstrip('/')}" if prefix else info.path.lstrip("/")
                pieces = x.deps.repos.get_file(job.output_repo, commit, info.path)
                async with contextlib.aclosing(pieces):
                    record["bytes"] += await _upload(client, bucket, key, pieces)
                record["files"] += 1
                if record["files"] % RECORD_EVERY == 0:
                    await _record(x, job, record)
    except ClientError as e:
        reason = f"egress to {url} failed: {_describe(e)}"
        await _record(x, job, {**record, "state": "failure", "error": reason, **_now()})
        raise JobFailure(reason) from None
    except _UNREACHABLE as e:  # the server did not answer: worth trying again
        await _record(x, job, {**record, "error": str(e)})
        raise Unavailable(f"egress to {url}: {e}") from e
    except NoCredentialsError:
        reason = (
            f"egress to {url} failed: the scheduler has no S3 credentials; set "
            "TUSK_EGRESS_S3_ACCESS_KEY_ID and TUSK_EGRESS_S3_SECRET_ACCESS_KEY (or AWS_*)"
        )
        await _record(x, job, {**record, "state": "failure", "error": reason, **_now()})
        raise JobFailure(reason) from None
    except BotoCoreError as e:  # a request that cannot succeed as configured
        reason = f"egress to {url} failed: {e}"
        await _record(x, job, {**record, "state": "failure", "error": reason, **_now()})
        raise JobFailure(reason) from None
    await _record(x, job, {**record, "state": "success", **_now()})
    x.log.info("egress done", url=url, files=record["files"], bytes=record["bytes"])


def _now() -> dict[str, str]:
    return {"finished_at": datetime.now(UTC).isoformat()}


async def _record(x: Scope, job: JobView, record: dict[str, Any]) -> None:
    async with x.deps.db.session() as session:
        await store.update_job(session, job.id, egress=dict(record))


@contextlib.asynccontextmanager
async def _client(settings: SchedulerSettings) -> AsyncIterator[Any]:
    config = AioConfig(
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=settings.egress_s3_endpoint_url,
        region_name=settings.egress_s3_region,
        aws_access_key_id=settings.egress_s3_access_key_id,
        aws_secret_access_key=settings.egress_s3_secret_access_key,
        config=config,
    ) as client:
        yield client


async def _upload(client: Any, bucket: str, key: str, pieces: AsyncIterator[bytes]) -> int:
    """Stream one file to ``bucket/key``; its size."""
    buffer = bytearray()
    upload_id: str | None = None
    parts: list[dict[str, Any]] = []
    size = 0
    try:
        async for piece in pieces:
            buffer += piece
            size += len(piece)
            while len(buffer) >= PART_BYTES:
                if upload_id is None:
                    created = await client.create_multipart_upload(Bucket=bucket, Key=key)
                    upload_id = created["UploadId"]
                part = bytes(buffer[:PART_BYTES])
                del buffer[:PART_BYTES]
                number = len(parts) + 1
                sent = await client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
                )
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        if upload_id is None:
            await client.put_object(Bucket=bucket, Key=key, Body=bytes(buffer))
            return size
        if buffer or not parts:
            number = len(parts) + 1
            sent = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(buffer)
            )
            parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        upload_id = None
        return size
    finally:
        if upload_id is not None:  # an upload left half done would be billed and never seen
            with contextlib.suppress(ClientError, BotoCoreError):
                await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _describe(e: ClientError) -> str:
    error = e.response.get("Error", {})
    code, message = error.get("Code", "error"), error.get("Message", "")
    hints = {
        "NoSuchBucket": "the bucket does not exist; create it",
        "AccessDenied": "access denied; check the scheduler's TUSK_EGRESS_S3_* credentials",
        "InvalidAccessKeyId": "unknown access key; check TUSK_EGRESS_S3_ACCESS_KEY_ID",
        "SignatureDoesNotMatch": "wrong secret key; check TUSK_EGRESS_S3_SECRET_ACCESS_KEY",
    }
    return f"{code}: {hints.get(code, message)}"
