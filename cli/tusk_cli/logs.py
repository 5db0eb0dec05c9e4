"""``tusk logs -p PIPELINE [-f]``: the datum logs of a pipeline's latest job (or of a given
job), as Pachyderm's ``pachctl logs --pipeline``; ``-f`` follows the datums as they run (their
lines as the workers print them), until the job ends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from tusk.client.models import DatumLog, LiveDatumLog
from tusk.client.pipelines import TriggerClient
from tusk.errors import NotFound
from tusk_cli.common import POLL_SECONDS, connect_scheduler, connect_trigger, note, run
from tusk_cli.spouts import is_long_running, print_spout_log

RECENT_LINES = 20
SHORT_ID = 16  # as tables show datum ids; any unique prefix of 8 or more is accepted


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
            "--follow",
            "-f",
            help="Follow the job until it ends: the lines of each running datum as its command "
            "prints them, then each datum's state as it ends.",
        ),
    ] = False,
) -> None:
    """Print the logs of a pipeline's datums: stdout and stderr of every attempt, datum by datum.

    Example: `tusk logs -p edges -f`
    """

    async def main() -> None:
        async with connect_trigger() as trigger, connect_scheduler() as scheduler:
            found = await trigger.inspect_pipeline(pipeline)  # NotFound: a mistyped name
            if job is None and is_long_running(found.spec):
                await print_spout_log(pipeline, follow=follow)
                return
            chosen = job or await _latest(trigger, pipeline)
            printed: set[tuple[str, str]] = set()
            live = _Live()
            while True:
                info = await trigger.inspect_job(chosen)
                if follow and not info.ended:
                    with contextlib.suppress(NotFound):  # not started yet
                        for entry in await scheduler.live_logs(chosen):
                            live.show(entry)
                try:
                    entries = await scheduler.job_logs(chosen)
                except NotFound:
                    entries = []  # not started yet
                for ended in entries:
                    if (ended.datum, ended.state) not in printed:
                        printed.add((ended.datum, ended.state))
                        live.ended(ended)
                if not follow or info.ended:
                    if follow:
                        note(f"job {chosen} ended: {info.state}")
                    return
                await asyncio.sleep(POLL_SECONDS)

    run(main())


class _Live:
    """What was printed of the datums followed while they ran, so that every line prints once
    (the workers number them); a header names the datum whenever the lines printed switch to
    another one, and a datum's end prints its state."""

    def __init__(self) -> None:
        self.next_line: dict[str, int] = {}  # the number of the datum's next line to print
        self.from_start: set[str] = set()  # datums followed from their log's first line
        self.recent: dict[str, list[str]] = {}  # the last lines printed of each
        self.done: set[str] = set()
        self.last: str | None = None

    def show(self, entry: LiveDatumLog) -> None:
        """A datum as its worker's output shows it: its new lines, and its end."""
        if entry.datum in self.done:
            return
        if entry.datum not in self.next_line:
            self.next_line[entry.datum] = entry.first_line
            if entry.first_line == 0:
                self.from_start.add(entry.datum)
        skip = self.next_line[entry.datum] - entry.first_line
        self._print(entry.datum, entry.lines[max(skip, 0) :], "running")
        self.next_line[entry.datum] = max(
            self.next_line[entry.datum], entry.first_line + len(entry.lines)
        )
        if entry.state != "running":
            self._end(entry.datum, entry.state)

    def ended(self, entry: DatumLog) -> None:
        """A datum's log from the meta commit, once it ended: all of it, or what its live view
        had not printed yet."""
        if entry.datum in self.done:
            return
        if entry.datum not in self.next_line:
            _print(entry)
            return
        lines = entry.log.splitlines()
        if entry.truncated or entry.datum not in self.from_start:
            rest = _after(self.recent.get(entry.datum, []), lines)
        else:
            rest = lines[self.next_line[entry.datum] :]
        self._print(entry.datum, rest, entry.state)
        self._end(entry.datum, entry.state)

    def _print(self, datum: str, lines: list[str], state: str) -> None:
        if not lines:
            return
        if self.last != datum:
            typer.echo(f"--- datum {datum[:SHORT_ID]} ({state})")
            self.last = datum
        typer.echo("\n".join(lines))
        self.recent[datum] = (self.recent.get(datum, []) + lines)[-RECENT_LINES:]

    def _end(self, datum: str, state: str) -> None:
        typer.echo(f"--- datum {datum[:SHORT_ID]} ended: {state}")
        self.done.add(datum)
        self.last = None


def _after(recent: list[str], lines: list[str]) -> list[str]:
    """The lines after the last place where the ``recent`` lines printed end (the log's tail
    lost its beginning, so numbers cannot say)."""
    if not recent:
        return lines
    for end in range(len(lines), 0, -1):
        overlap = min(end, len(recent))
        if lines[end - overlap : end] == recent[-overlap:]:
            return lines[end:]
    return lines


async def _latest(trigger: TriggerClient, pipeline: str) -> str:
    async for found in trigger.list_jobs(pipeline=pipeline, limit=1):  # newest first
        return found.id
    raise NotFound(f"pipeline {pipeline!r} has no job yet")


def _print(entry: DatumLog) -> None:
    typer.echo(f"--- datum {entry.datum} ({entry.state})")
    if entry.log.strip("\n"):
        typer.echo(entry.log.rstrip("\n"))
