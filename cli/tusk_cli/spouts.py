"""Where spouts and service pipelines run, for ``tusk pipeline inspect`` and ``tusk logs -p``:
their command runs all the time, outside jobs, so the scheduler is asked."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from rich.markup import escape

from tusk.errors import TuskError
from tusk_cli.common import connect_scheduler, note


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
    """A spout's or service's log: the end of its log file on the local runner; on Kubernetes,
    where to read it (its pod's log belongs to the cluster)."""
    async with connect_scheduler() as scheduler:
        place = await scheduler.spout(pipeline)
    note(f"{place.kind} [bold]{escape(pipeline)}[/] runs as {escape(place.where)}")
    if place.logs:
        sys.stdout.write(place.logs if place.logs.endswith("\n") else place.logs + "\n")
    if follow:
        how = (
            f"tail -f {place.log_path}"
            if place.runner == "local"
            else f"kubectl logs -f -n {place.namespace} deployment/{place.deployment}"
        )
        note(f"a {place.kind} has no jobs to follow: follow its log with `{escape(how)}`")
