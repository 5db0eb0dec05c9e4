"""Clients for the trigger service (pipelines, jobs) and the scheduler (datums, logs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tusk.client.http import ServiceClient, params, seg
from tusk.wire.jobs import (
    DatumInfo,
    DatumLog,
    DatumPage,
    JobDetail,
    JobInfo,
    JobPage,
    JobsDeleted,
    LiveDatumLog,
    PipelineInfo,
)
from tusk.wire.specs import PipelineVersionSpec
from tusk.wire.spouts import SpoutPlace


class TriggerClient(ServiceClient):
    service = "trigger"
    url_setting = "TUSK_TRIGGER_URL"

    async def create_pipeline(self, spec: str | bytes) -> PipelineInfo:
        """Create a pipeline from its spec (YAML or JSON text)."""
        response = await self._request(
            "POST", "/v1/pipelines", content=spec, headers={"Content-Type": "application/yaml"}
        )
        return self._parse(PipelineInfo, response)

    async def update_pipeline(
        self, name: str, spec: str | bytes, *, reprocess: bool = False
    ) -> PipelineInfo:
        response = await self._request(
            "PUT",
            f"/v1/pipelines/{seg(name)}",
            content=spec,
            params={"reprocess": str(reprocess).lower()},
            headers={"Content-Type": "application/yaml"},
        )
        return self._parse(PipelineInfo, response)

    async def list_pipelines(self) -> list[PipelineInfo]:
        return self._parse_list(PipelineInfo, await self._request("GET", "/v1/pipelines"))

    async def inspect_pipeline(self, name: str) -> PipelineInfo:
        response = await self._request("GET", f"/v1/pipelines/{seg(name)}")
        return self._parse(PipelineInfo, response)

    async def pipeline_version(self, name: str, version: int) -> PipelineVersionSpec:
        """One version of a pipeline's spec, with the digest its jobs name it by."""
        response = await self._request("GET", f"/v1/pipelines/{seg(name)}/versions/{version}")
        return self._parse(PipelineVersionSpec, response)

    async def delete_pipeline(self, name: str, *, keep_repo: bool = False) -> None:
        await self._request(
            "DELETE", f"/v1/pipelines/{seg(name)}", params={"keep_repo": str(keep_repo).lower()}
        )

    async def stop_pipeline(self, name: str) -> PipelineInfo:
        response = await self._request("POST", f"/v1/pipelines/{seg(name)}/stop")
        return self._parse(PipelineInfo, response)

    async def start_pipeline(self, name: str) -> PipelineInfo:
        response = await self._request("POST", f"/v1/pipelines/{seg(name)}/start")
        return self._parse(PipelineInfo, response)

    async def list_jobs(
        self, *, pipeline: str | None = None, state: str | None = None, limit: int = 100
    ) -> AsyncIterator[JobInfo]:
        """Jobs, newest first, across pages."""
        cursor: str | None = None
        while True:
            response = await self._request(
                "GET",
                "/v1/jobs",
                params=params(pipeline=pipeline, state=state, limit=limit, cursor=cursor),
            )
            page = self._parse(JobPage, response)
            for job in page.items:
                yield job
            cursor = page.next_cursor
            if cursor is None:
                return

    async def inspect_job(self, job: str) -> JobInfo:
        return self._parse(JobInfo, await self._request("GET", f"/v1/jobs/{seg(job)}"))

    async def wait_job(self, job: str, *, seconds: float = 30.0) -> JobInfo:
        """The job once it ended, or as it is after ``seconds`` (the server holds the call)."""
        response = await self._request(
            "GET", f"/v1/jobs/{seg(job)}/wait", params={"timeout": seconds}, timeout=seconds + 30
        )
        return self._parse(JobInfo, response)

    async def stop_job(self, job: str) -> JobInfo:
        return self._parse(JobInfo, await self._request("POST", f"/v1/jobs/{seg(job)}/stop"))

    async def restart_job(self, job: str) -> JobInfo:
        """A new job running the ended job's failed datums again (the rest are skipped)."""
        return self._parse(JobInfo, await self._request("POST", f"/v1/jobs/{seg(job)}/restart"))

    async def delete_job(self, job: str, *, cascade: bool = False) -> JobsDeleted:
        """Delete an ended job with its output commit (``cascade``: and what derives from it)."""
        response = await self._request(
            "DELETE", f"/v1/jobs/{seg(job)}", params={"cascade": "true" if cascade else "false"}
        )
        return self._parse(JobsDeleted, response)


class SchedulerClient(ServiceClient):
    service = "scheduler"
    url_setting = "TUSK_SCHEDULER_URL"

    async def list_datums(self, job: str, *, state: str | None = None) -> AsyncIterator[DatumInfo]:
        cursor: str | None = None
        while True:
            response = await self._request(
                "GET", f"/v1/jobs/{seg(job)}/datums", params=params(state=state, cursor=cursor)
            )
            page = self._parse(DatumPage, response)
            for datum in page.items:
                yield datum
            cursor = page.next_cursor
            if cursor is None:
                return

    async def inspect_datum(self, job: str, datum: str) -> DatumInfo:
        response = await self._request("GET", f"/v1/jobs/{seg(job)}/datums/{seg(datum)}")
        return self._parse(DatumInfo, response)

    async def job_detail(self, job: str) -> JobDetail:
        """The job as the scheduler runs it: shards, meta commit, egress."""
        return self._parse(JobDetail, await self._request("GET", f"/v1/jobs/{seg(job)}"))

    async def job_logs(self, job: str) -> list[DatumLog]:
        return self._parse_list(DatumLog, await self._request("GET", f"/v1/jobs/{seg(job)}/logs"))

    async def live_logs(self, job: str) -> list[LiveDatumLog]:
        """The datums in the job's workers' output now: running ones with their logs so far,
        and those that just ended there (empty unless the job runs)."""
        response = await self._request("GET", f"/v1/jobs/{seg(job)}/live")
        return self._parse_list(LiveDatumLog, response)

    async def runner(self) -> dict[str, Any]:
        """How the scheduler runs commands: ``kind``, and ``code_dir`` or ``namespace``."""
        body: dict[str, Any] = (await self._request("GET", "/v1/runner")).json()
        return body

    async def spout(self, pipeline: str, *, after: str | None = None) -> SpoutPlace:
        """Where a spout's or service pipeline's command runs, and the end of its log (with
        ``after``, a ``log_cursor`` of an earlier answer: only what it logged since)."""
        params = {"after": after} if after is not None else None
        response = await self._request("GET", f"/v1/spouts/{seg(pipeline)}", params=params)
        return self._parse(SpoutPlace, response)

    async def datum_logs(self, job: str, datum: str) -> DatumLog:
        response = await self._request("GET", f"/v1/jobs/{seg(job)}/datums/{seg(datum)}/logs")
        return self._parse(DatumLog, response)
