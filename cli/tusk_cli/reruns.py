"""``tusk datum restart`` and ``tusk job delete``: running a job's failed datums again, and
taking a job back with its output commit (registered on the job and datum groups in
:mod:`tusk_cli.pipelines`)."""

from __future__ import annotations

from typing import Annotated

import typer

from tusk_cli.common import JsonOption, connect_trigger, note, print_json, run, stdout

JobArg = Annotated[str, typer.Argument(metavar="JOB", help="A job id (see `tusk job list`).")]


def restart_datums(job: JobArg, as_json: JsonOption = False) -> None:
    """Run an ended job's **failed datums** again (Pachyderm's `pachctl restart datum`).

    A new job of the pipeline runs on the same input commits, with the same global id: every
    datum the job processed is skipped and its outputs carried forward, so only the failed
    ones run. Fix what made them fail first (the code, an input, a secret), e.g. with
    `tusk pipeline update`. Refused while the job runs, when none of its datums failed, and
    when a newer job of the pipeline exists. Prints the new job's id; follow it with
    `tusk job wait JOB`. Asking twice gives the same new job.
    """

    async def main() -> None:
        async with connect_trigger() as client:
            info = await client.restart_job(job)
        if as_json:
            print_json(info)
            return
        stdout.print(info.id, markup=False, highlight=False)
        note(f"job {info.id} runs the failed datums of job {job} again (tusk job wait {info.id})")

    run(main())


def delete_job(
    job: JobArg,
    cascade: Annotated[
        bool,
        typer.Option(
            "--cascade",
            help="Also delete the commits derived from the job's output (downstream pipelines' "
            "outputs) and their jobs.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete an ended job **with its output commit** (Pachyderm's `pachctl delete job`).

    The output commit is deleted as `tusk commit delete` deletes one: the branch it heads
    moves to its parent, and while other commits derive from it (downstream pipelines ran on
    it) the delete is refused, naming them, unless `--cascade` deletes those too, with their
    jobs. The datums the job processed count as unprocessed again: the pipeline's next job
    runs them. A job that runs must be stopped first (`tusk job stop`).
    """

    async def main() -> None:
        async with connect_trigger() as client:
            result = await client.delete_job(job, cascade=cascade)
        if as_json:
            print_json(result)
            return
        note(f"deleted job(s) {', '.join(result.jobs)}")
        for commit in result.dropped_commits:
            note(f"  deleted commit {commit}")
        for branch in result.moved_branches:
            note(f"  {branch} moved to its parent")

    run(main())
