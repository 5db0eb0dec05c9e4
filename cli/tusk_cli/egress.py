"""A job's egress (its output commit copied to the pipeline's ``egress`` target), as the
scheduler reports it."""

from __future__ import annotations

from tusk.errors import TuskError
from tusk_cli.common import connect_scheduler


async def job_egress(job: str) -> str | None:
    """One line on the job's egress; None without egress or when the scheduler does not say
    (``tusk job inspect`` shows the rest anyway)."""
    try:
        async with connect_scheduler() as scheduler:
            detail = await scheduler.job_detail(job)
    except TuskError:
        return None
    egress = detail.egress
    if egress is None:
        return None
    text = f"{egress.url}: {egress.state}, {egress.files} files, {egress.bytes} bytes"
    if egress.rows:
        text += ", rows " + ", ".join(f"{t}={n}" for t, n in sorted(egress.rows.items()))
    return f"{text} ({egress.error})" if egress.error else text
