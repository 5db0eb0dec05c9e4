"""Where spouts and service pipelines run, for ``tusk pipeline inspect`` and ``tusk logs -p``:
their command runs all the time, outside jobs, so the scheduler is asked."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from rich.markup import escape

from tusk.errors import NotFound, TuskError
from tusk_cli.common import POLL_SECONDS, connect_scheduler, note


def is_long_running(spec: Mapping[str, Any]) -> bool:
    return spec.get("spout") is not None or spec.get("service") is not None


async def where_it_runs(pipeline: str) -> str:
    """Where the spout's or service's command runs, in words (or why the scheduler did not say)."""
    try:
        async with connect_scheduler() as scheduler:
            place = await scheduler.spout(pipeline)
    except TuskError as e:
        return f"could not ask the scheduler: {e.message}"
    return place.where


async def print_spout_log(pipeline: str, *, follow: bool) -> None:
    """A spout's or service's log (its process's on the local runner, its pod's on Kubernetes):
    the end of it, then, following, what it logs next until interrupted."""
    async with connect_scheduler() as scheduler:
        place = await scheduler.spout(pipeline)
        note(f"{place.kind} [bold]{escape(pipeline)}[/] runs as {escape(place.where)}")
        if not follow:
            if place.logs:
                sys.stdout.write(place.logs if place.logs.endswith("\n") else place.logs + "\n")
            return
        _write(place.logs)
        note("following its log (Ctrl-C to stop)")
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                place = await scheduler.spout(pipeline, after=place.log_cursor)
            except NotFound:
                note(f"pipeline [bold]{escape(pipeline)}[/] was deleted")
                return
            _write(place.logs)


def _write(text: str) -> None:
    sys.stdout.write(text)  # as logged: a line still being written is finished by the next read
    sys.stdout.flush()
