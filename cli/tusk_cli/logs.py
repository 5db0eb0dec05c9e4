"""``tusk logs -p PIPELINE [-f]``: the datum logs of a pipeline's latest job (or of a given
job), as Pachyderm's ``pachctl logs --pipeline``; ``-f`` prints each datum's log once it ends,
until the job ends."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tusk.client.models import DatumLog
from tusk.client.pipelines import TriggerClient
from tusk.errors import NotFound
from tusk_cli.common import connect_scheduler, connect_trigger, note, run

POLL_SECONDS = 1.0


def logs(
    pipeline: Annotated[
        str, typer.Option("--pipeline", "-p", help="The pipeline whose job's logs to print.")
    ],
    job: Annotated[
        str | None, typer.Option("--job", "-j", help="This job of it (default: the latest).")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing each datum's log as it ends, until the job ends."
        ),
    ] = False,
) -> None:
    """Print the logs of a pipeline's datums: stdout and stderr of every attempt, datum by datum.

    Example: `tusk logs -p edges -f`
    """

    async def main() -> None:
        async with connect_trigger() as trigger, connect_scheduler() as scheduler:
            await trigger.inspect_pipeline(pipeline)  # NotFound names a mistyped pipeline
            chosen = job or await _latest(trigger, pipeline)
            printed: set[tuple[str, str]] = set()
            while True:
                info = await trigger.inspect_job(chosen)
                try:
                    entries = await scheduler.job_logs(chosen)
                except NotFound:
                    entries = []  # not started yet
                for entry in entries:
                    if (entry.datum, entry.state) not in printed:
                        printed.add((entry.datum, entry.state))
                        _print(entry)
                if not follow or info.ended:
                    if follow:
                        note(f"job {chosen} ended: {info.state}")
                    return
                await asyncio.sleep(POLL_SECONDS)  # the scheduler has no log stream to wait on

    run(main())


async def _latest(trigger: TriggerClient, pipeline: str) -> str:
    async for found in trigger.list_jobs(pipeline=pipeline, limit=1):  # newest first
        return found.id
    raise NotFound(f"pipeline {pipeline!r} has no job yet")


def _print(entry: DatumLog) -> None:
    typer.echo(f"--- datum {entry.datum} ({entry.state})")
    typer.echo(entry.log.rstrip("\n"))
