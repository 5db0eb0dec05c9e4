from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tusk.client.models import DatumInfo, JobInfo, Page
from tusk_console.api.deps import BackendsDep, ContextDep
from tusk_console.api.render import page
from tusk_console.domain.charts import bar_chart, job_points

router = APIRouter()

JobId = str
DATUM_STATES = ("pending", "running", "success", "skipped", "failed", "recovered")


@router.get("/pipelines/{name:qualified}", response_class=HTMLResponse)
async def pipeline_page(
    request: Request,
    name: str,
    backends: BackendsDep,
    ctx: ContextDep,
    cursor: str | None = Query(None, max_length=100),
) -> HTMLResponse:
    """The spec, its versions, the jobs with durations and charts over time."""
    pipeline = await backends.trigger.inspect_pipeline(name)
    jobs = await backends.trigger.jobs_page(
        pipeline=name, limit=ctx.settings.page_size, cursor=cursor
    )
    versions: dict[int, JobInfo] = {}
    for job in jobs.items:  # newest first: keep each version's oldest job on this page
        versions[job.version] = job
    failed: Page[DatumInfo] | None = None
    last = jobs.items[0] if jobs.items and cursor is None else None
    if last is not None and last.counts.failed:
        failed = await backends.scheduler.datums_page(last.id, state="failed", limit=20)
    points = job_points(jobs.items)
    charts = [
        bar_chart(points, "duration_s", "Job duration", "s"),
        bar_chart(points, "datums_per_s", "Datums processed per second", "datums/s"),
    ]
    spec_yaml = yaml.safe_dump(pipeline.spec, sort_keys=False, allow_unicode=True)
    return page(
        request, "pipeline.html", pipeline=pipeline, jobs=jobs, last=last, failed=failed,
        versions=sorted(versions.items(), reverse=True), charts=charts, spec_yaml=spec_yaml,
    )


@router.get("/jobs/{job}", response_class=HTMLResponse)
async def job_page(
    request: Request,
    job: JobId,
    backends: BackendsDep,
    ctx: ContextDep,
    state: str | None = Query(None, pattern="^(" + "|".join(DATUM_STATES) + ")$"),
    cursor: str | None = Query(None, max_length=100),
) -> HTMLResponse:
    """Progress and every datum with its state, inputs, duration and log; live while it runs."""
    info, datums = await asyncio.gather(
        backends.trigger.inspect_job(job),
        backends.scheduler.datums_page(
            job, state=state, limit=ctx.settings.page_size, cursor=cursor
        ),
    )
    return page(request, "job.html", job=info, datums=datums, state=state, states=DATUM_STATES)


@router.get("/jobs/{job}/datums/{datum}", response_class=HTMLResponse)
async def datum_page(
    request: Request, job: JobId, datum: str, backends: BackendsDep
) -> HTMLResponse:
    info, detail, logs = await asyncio.gather(
        backends.trigger.inspect_job(job),
        backends.scheduler.inspect_datum(job, datum),
        backends.scheduler.datum_logs(job, datum),
    )
    return page(request, "datum.html", job=info, datum=detail, logs=logs)


@router.post("/jobs/{job}/restart")
async def restart_job(job: JobId, backends: BackendsDep) -> RedirectResponse:
    """Run the job's pipeline again on its inputs' latest commits: its current spec is stored
    as a new version with reprocess, so no datum is skipped as already done."""
    info = await backends.trigger.inspect_job(job)
    pipeline = await backends.trigger.inspect_pipeline(info.pipeline)
    await backends.trigger.update_pipeline(
        pipeline.name, json.dumps(pipeline.spec), reprocess=True
    )
    return RedirectResponse(
        f"/pipelines/{quote(pipeline.name, safe='')}?restarted={job}", status_code=303
    )


@router.post("/jobs/{job}/stop")
async def stop_job(job: JobId, backends: BackendsDep) -> RedirectResponse:
    await backends.trigger.stop_job(job)
    return RedirectResponse(f"/jobs/{job}", status_code=303)
