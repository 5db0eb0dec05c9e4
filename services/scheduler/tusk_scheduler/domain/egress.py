"""Egress: after a job's output commit is finished, its files are copied to the pipeline's
``egress`` target (``s3://bucket/prefix``), each file to ``prefix/<path>``, as Pachyderm does;
or, for ``sql_database`` egress, loaded into the tables they name (:mod:`.sql_egress`).

The copy streams each file from the repo service to S3 (one PutObject for a small file, a
multipart upload for a large one: never a whole large file in memory). Copying again writes the
same keys, so a job whose egress was interrupted (a scheduler restart) simply egresses again.
How far it got is recorded on the job (``egress`` in its detail) as it goes.
"""

from __future__ import annotations

import contextlib
import functools
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

from tusk.errors import TuskError, Unavailable
from tusk.pipelines.models import SqlEgress
from tusk_scheduler import store
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain.job import JobFailure, JobView, Scope, spec_of
from tusk_scheduler.domain.sql_egress import EgressRefused, FileSource, Progress, load_commit
from tusk_scheduler.runners.base import SecretNotFound

PART_BYTES = 8 * 1024 * 1024  # S3's multipart parts are at least 5 MiB (but the last)
RECORD_EVERY = 100  # files between progress records
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


async def egress(x: Scope, job: JobView, commit: str) -> None:
    """Copy ``commit`` of the job's output repo to the spec's egress target, if it has one
    that tusk writes to (``s3://``, or an SQL database at ``postgresql://`` or ``mysql://``); a
    target that refuses (no such bucket, no such table, access denied) fails the job naming it."""
    target = spec_of(job).egress
    if target is None:
        return
    sql = target.sql_database
    s3 = target.s3_target
    if (sql is None or not sql.is_loaded) and s3 is None:
        return
    async with x.deps.db.session(write=False) as session:
        row = await store.get_job(session, job.id)
        if row.egress is not None and row.egress.get("state") == "success":
            return  # done before a restart
    if sql is not None:
        await _egress_sql(x, job, commit, sql)
        return
    assert s3 is not None
    url = str(target.target_url)
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


async def _egress_sql(x: Scope, job: JobView, commit: str, sql: SqlEgress) -> None:
    """Load ``commit`` into the tables its top-level directories name (:mod:`.sql_egress`)."""
    url = sql.url
    progress = Progress()

    def record(**more: Any) -> dict[str, Any]:
        return {
            "url": url,
            "state": "running",
            "files": progress.files,
            "bytes": progress.bytes,
            "rows": dict(progress.rows),
            **more,
        }

    async def on_file() -> None:
        if progress.files % RECORD_EVERY == 0:
            await _record(x, job, record())

    await _record(x, job, record())
    try:
        assert sql.secret is not None  # the spec requires it
        try:
            password = await x.deps.runner.read_secret(sql.secret.name, sql.secret.key)
        except SecretNotFound as e:
            raise EgressRefused(
                f"the password's secret (egress.sql_database.secret) is missing: {e}"
            ) from None
        await load_commit(url, password, sql.file_format, _files(x, job, commit), progress, on_file)
    except EgressRefused as e:
        reason = f"egress to {url} failed: {e}"
        await _record(x, job, record(state="failure", error=reason, **_now()))
        raise JobFailure(reason) from None
    except Unavailable as e:  # the database did not answer: worth trying again
        await _record(x, job, record(error=str(e)))
        raise Unavailable(f"egress to {url}: {e}") from e
    except TuskError as e:  # the secret could not be read (Kubernetes refused, say)
        reason = f"egress to {url} failed: {e.message}"
        await _record(x, job, record(state="failure", error=reason, **_now()))
        raise JobFailure(reason) from None
    await _record(x, job, record(state="success", **_now()))
    x.log.info("egress done", url=url, files=progress.files, rows=progress.rows)


async def _files(x: Scope, job: JobView, commit: str) -> FileSource:
    """The output commit's files, each with an opener of its contents."""
    async for info in x.deps.repos.walk(job.output_repo, commit):
        path = info.path
        yield path, functools.partial(x.deps.repos.get_file, job.output_repo, commit, path)


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
