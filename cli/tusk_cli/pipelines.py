"""``tusk pipeline …``, ``tusk job …``, ``tusk datum …`` and ``tusk lineage``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tusk.client.models import CommitInfo, CommitRef, JobInfo
from tusk.errors import InvalidArgument, TuskError
from tusk.paths import parse_address
from tusk_cli import jobwait, reruns
from tusk_cli.common import (
    JsonOption,
    ProjectOption,
    connect,
    connect_scheduler,
    connect_trigger,
    note,
    of_project,
    print_json,
    run,
    show,
    stderr,
    stdout,
    table,
    when,
)
from tusk_cli.draw import draw_pipelines
from tusk_cli.egress import job_egress
from tusk_cli.specs import (
    ArgOption,
    Change,
    DryRunOption,
    JsonnetOption,
    SpecFileOption,
    plan_changes,
    read_specs,
)
from tusk_cli.spouts import is_long_running, where_it_runs

pipeline_app = typer.Typer(
    help="Create and manage pipelines: commands that run over datums of their input repos "
    "whenever an input changes (or a cron input ticks), writing to a repo of their own name.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
job_app = typer.Typer(
    help="Jobs: one run of a pipeline version over a set of input commits.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
datum_app = typer.Typer(
    help="Datums: the units a job splits its inputs into, each processed on its own.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

NameArg = Annotated[str, typer.Argument(metavar="PIPELINE", help="The pipeline's name.")]
JobArg = Annotated[str, typer.Argument(metavar="JOB", help="A job id (see `tusk job list`).")]
SpecOption = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        help="The spec, YAML or JSON (Pachyderm's field names).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]


@pipeline_app.command("create")
def create_pipeline(
    spec: SpecFileOption = None,
    jsonnet: JsonnetOption = None,
    args: ArgOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Create pipelines from a spec file (one or several specs, `---` between them) or a
    jsonnet template. Each output repo, named after its pipeline, is created too; if every
    input already has a commit, a first job starts at once. Fields tusk cannot apply are
    named in warnings.

    Examples: `tusk pipeline create -f examples/credit/preprocess.yaml`;
    `tusk pipeline create --jsonnet edges.jsonnet --arg suffix=1 --arg src=images --dry-run`
    """

    async def main() -> None:
        specs = read_specs(spec, jsonnet, args)
        async with connect_trigger() as client, connect() as repos:
            changes = await plan_changes(specs, client, repos, update=False)
            if dry_run:
                _report(changes)
                return
            for change in changes:
                info = await client.create_pipeline(json.dumps(change.spec.to_dict()))
                note(
                    f"created pipeline [bold]{escape(info.name)}[/] (version {info.version}), "
                    + (
                        f"reading {escape(', '.join(info.input_repos))}, writing "
                        if info.input_repos
                        else "a spout writing "  # no input: it commits by itself
                    )
                    + escape(info.output_repo)
                )
                _warn(info.warnings)
                note(await where_commands_run(info.spec))

    run(main())


async def where_commands_run(spec: dict[str, object]) -> str:
    """Where the scheduler runs the pipeline's command, so that relative paths in ``cmd`` are
    understood (they resolve in the local runner's directory, or in the image)."""
    transform = spec.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    try:
        async with connect_scheduler() as scheduler:
            runner = await scheduler.runner()
    except TuskError as e:
        return f"[yellow]could not ask the scheduler where commands run: {escape(e.message)}[/]"
    if runner.get("kind") == "kubernetes":
        return (
            f"its command runs in pods of image {escape(str(image or 'the default worker image'))} "
            f"in namespace {escape(str(runner.get('namespace')))}"
        )
    return (
        f"its command runs in {escape(str(runner.get('code_dir')))} on the scheduler's machine "
        "(relative paths in cmd resolve there; TUSK_SCHEDULER_CODE_DIR changes it)"
    )


@pipeline_app.command("update")
def update_pipeline(
    spec: SpecFileOption = None,
    jsonnet: JsonnetOption = None,
    args: ArgOption = None,
    reprocess: Annotated[
        bool,
        typer.Option(
            "--reprocess",
            help="Process every datum again, also those an earlier version processed, and run "
            "the new version now on the latest input commits.",
        ),
    ] = False,
    dry_run: DryRunOption = False,
) -> None:
    """Store a new version of each pipeline the specs name. Datums an earlier version
    processed are kept unless the transform, image or inputs change (or --reprocess)."""

    async def main() -> None:
        specs = read_specs(spec, jsonnet, args)
        async with connect_trigger() as client, connect() as repos:
            changes = await plan_changes(specs, client, repos, update=True, reprocess=reprocess)
            if dry_run:
                _report(changes)
                return
            for change in changes:
                body = json.dumps(change.spec.to_dict())
                info = await client.update_pipeline(change.spec.name, body, reprocess=reprocess)
                note(f"pipeline [bold]{escape(info.name)}[/] is now at version {info.version}")
                _warn(info.warnings)

    run(main())


def _report(changes: list[Change]) -> None:
    for change in changes:
        for line in change.describe():
            stdout.print(escape(line))
    note("dry run: nothing was changed")


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")


@pipeline_app.command("list")
def list_pipelines(project: ProjectOption = None, as_json: JsonOption = False) -> None:
    """List the pipelines (of every project, or of --project) with their state and last job."""

    async def main() -> None:
        async with connect_trigger() as client:
            pipelines = [p for p in await client.list_pipelines() if of_project(p.name, project)]
        if as_json:
            print_json(pipelines)
            return
        grid = table("NAME", "VERSION", "STATE", "INPUTS", "LAST JOB", "JOB STATE", "UPDATED")
        for p in pipelines:
            grid.add_row(
                escape(p.name),
                str(p.version),
                p.state,
                escape(", ".join(p.input_repos)),
                p.last_job or "-",
                p.last_job_state or "-",
                when(p.updated_at),
            )
        show(grid)

    run(main())


@pipeline_app.command("inspect")
def inspect_pipeline(name: NameArg, as_json: JsonOption = False) -> None:
    """Show a pipeline: version, state, inputs, output and its spec."""

    async def main() -> None:
        async with connect_trigger() as client:
            info = await client.inspect_pipeline(name)
        if as_json:
            print_json(info)
            return
        grid = table("", "")
        for key, value in (
            ("Name", info.name),
            ("Version", str(info.version)),
            ("State", info.state),
            ("Inputs", ", ".join(info.input_repos)),
            ("Output", f"{info.output_repo}@{info.output_branch}"),
            ("Last job", f"{info.last_job or '-'} ({info.last_job_state or '-'})"),
            ("Updated", when(info.updated_at)),
            ("Description", info.description or "-"),
        ):
            grid.add_row(key, escape(value))
        if is_long_running(info.spec):  # no jobs: its command runs all the time, somewhere
            grid.add_row("Runs", escape(await where_it_runs(info.name)))
        show(grid)

    run(main())


@pipeline_app.command("delete")
def delete_pipeline(
    name: NameArg,
    keep_repo: Annotated[
        bool, typer.Option("--keep-repo", help="Keep the output repo and its commits.")
    ] = False,
) -> None:
    """Delete a pipeline; its running jobs stop and its output repo goes unless --keep-repo."""

    async def main() -> None:
        async with connect_trigger() as client:
            await client.delete_pipeline(name, keep_repo=keep_repo)
        note(f"deleted pipeline [bold]{escape(name)}[/]")

    run(main())


@pipeline_app.command("stop")
def stop_pipeline(name: NameArg) -> None:
    """Stop a pipeline: no new jobs, running ones are killed."""

    async def main() -> None:
        async with connect_trigger() as client:
            await client.stop_pipeline(name)
        note(f"stopped pipeline [bold]{escape(name)}[/]")

    run(main())


@pipeline_app.command("start")
def start_pipeline(name: NameArg) -> None:
    """Start a stopped pipeline; it catches up on input changes made meanwhile."""

    async def main() -> None:
        async with connect_trigger() as client:
            await client.start_pipeline(name)
        note(f"started pipeline [bold]{escape(name)}[/]")

    run(main())


def _job_rows(jobs: list[JobInfo]) -> None:
    grid = table(
        "ID", "PIPELINE", "VERSION", "STATE", "DATUMS", "SKIPPED", "FAILED", "CREATED", "REASON"
    )
    for job in jobs:
        grid.add_row(
            job.id,
            escape(job.pipeline),
            str(job.version),
            job.state,
            f"{job.counts.done}/{job.counts.total}",
            str(job.counts.skipped),
            str(job.counts.failed),
            when(job.created_at),
            escape(job.reason or ""),
        )
    show(grid)


@job_app.command("list")
def list_jobs(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this one's.")
    ] = None,
    state: Annotated[str | None, typer.Option("--state", help="e.g. running, failure.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many at most.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""

    async def main() -> None:
        jobs: list[JobInfo] = []
        async with connect_trigger() as client:
            async for job in client.list_jobs(pipeline=pipeline, state=state):
                jobs.append(job)
                if len(jobs) >= limit:
                    break
        if as_json:
            print_json(jobs)
        else:
            _job_rows(jobs)

    run(main())


@job_app.command("inspect")
def inspect_job(job: JobArg, as_json: JsonOption = False) -> None:
    """Show a job: state, input commits, output commit, datum counts."""

    async def main() -> None:
        async with connect_trigger() as client:
            info = await client.inspect_job(job)
        if as_json:
            print_json(info)
            return
        egress = await job_egress(info.id)
        grid = table("", "")
        grid.add_row("Job", info.id)
        grid.add_row("Pipeline", f"{escape(info.pipeline)} (version {info.version})")
        grid.add_row("State", info.state + (f": {escape(info.reason)}" if info.reason else ""))
        for i in info.inputs:
            grid.add_row(f"Input {escape(i.name)}", f"{escape(i.repo)}@{i.commit} ({i.branch})")
        grid.add_row("Output", f"{escape(info.output_repo)}@{info.output_commit or '-'}")
        grid.add_row("Global id", info.global_id)
        c = info.counts
        grid.add_row(
            "Datums",
            f"{c.total} total: {c.processed} processed, {c.skipped} skipped, {c.failed} failed",
        )
        grid.add_row("Created", when(info.created_at))
        grid.add_row("Finished", when(info.finished_at))
        if egress is not None:
            grid.add_row("Egress", escape(egress))
        show(grid)

    run(main())


@job_app.command("wait")
def wait_job(
    job: Annotated[
        str | None,
        typer.Argument(
            metavar="[JOB]", help="A job id; or find it with --pipeline and --global-id."
        ),
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option(
            "--pipeline", "-p", help="With --global-id: the pipeline whose job to wait for."
        ),
    ] = None,
    global_id: Annotated[
        str | None,
        typer.Option(
            "--global-id",
            "-g",
            help="The change (e.g. the id of the commit you made) whose job "
            "to wait for; waits for the job to be created too.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Give up after this many seconds.")
    ] = 3600,
) -> None:
    """Wait for a job to end, showing datums done / total; exit 1 unless it succeeded.

    With --pipeline and --global-id it first waits for the job that change makes, and stops
    at once (exit 1, saying why) when that job cannot come: the pipeline does not exist, the
    change is not upstream of it, the pipeline was created after it, or an upstream job failed.

    Example: `tusk job wait -p train -g $(tusk commit inspect raw@master --json | jq -r .id)`
    """
    if (job is None) == (pipeline is None or global_id is None):
        raise typer.BadParameter("give a JOB, or both --pipeline and --global-id")
    info = run(jobwait.wait(job, pipeline, global_id, timeout))
    if info.state != "success":
        raise typer.Exit(1)


@job_app.command("logs")
def job_logs(
    job: JobArg,
    datum: Annotated[str | None, typer.Option("--datum", "-d", help="Only this datum's.")] = None,
) -> None:
    """Print the logs of a job's datums (stdout and stderr of every attempt)."""

    async def main() -> None:
        async with connect_scheduler() as client:
            logs = [await client.datum_logs(job, datum)] if datum else await client.job_logs(job)
        for entry in logs:
            typer.echo(
                f"--- datum {entry.datum} ({entry.state})"
                + (
                    " [truncated; full log at " + (entry.full_log or "?") + "]"
                    if entry.truncated
                    else ""
                )
            )
            typer.echo(entry.log.rstrip("\n"))

    run(main())


@job_app.command("stop")
def stop_job(job: JobArg) -> None:
    """Kill a job's workers; it ends `killed`."""

    async def main() -> None:
        async with connect_trigger() as client:
            await client.stop_job(job)
        note(f"asked job {job} to stop")

    run(main())


@datum_app.command("list")
def list_datums(
    job: JobArg,
    state: Annotated[str | None, typer.Option("--state", help="e.g. failed, skipped.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List a job's datums with their state, attempts and inputs."""

    async def main() -> None:
        async with connect_scheduler() as client:
            datums = [d async for d in client.list_datums(job, state=state)]
        if as_json:
            print_json(datums)
            return
        grid = table("DATUM", "STATE", "ATTEMPTS", "INPUTS", "OUTPUTS", "ERROR")
        for d in datums:
            inputs = ", ".join(f"{i.get('name')}:{i.get('path')}" for i in d.inputs)
            grid.add_row(
                d.datum[:16],
                d.state,
                str(d.attempts),
                escape(inputs),
                str(len(d.outputs)),
                escape((d.error or "")[:80]),
            )
        show(grid)

    run(main())


@datum_app.command("inspect")
def inspect_datum(
    job: JobArg,
    datum: Annotated[str, typer.Argument(metavar="DATUM", help="A datum id.")],
    as_json: JsonOption = False,
) -> None:
    """Show one datum: inputs, outputs, attempts, error."""

    async def main() -> None:
        async with connect_scheduler() as client:
            info = await client.inspect_datum(job, datum)
        if as_json:
            print_json(info)
            return
        grid = table("", "")
        grid.add_row("Datum", info.datum)
        grid.add_row("State", f"{info.state} after {info.attempts} attempt(s)")
        for i in info.inputs:
            grid.add_row(
                f"Input {escape(str(i.get('name')))}",
                escape(f"{i.get('repo')}@{i.get('commit')}:{i.get('path')}"),
            )
        for o in info.outputs:
            grid.add_row("Output", escape(o.path))
        if info.error:
            grid.add_row("Error", escape(info.error))
        show(grid)

    run(main())


def lineage(
    address: Annotated[
        str,
        typer.Argument(metavar="REPO@COMMIT", help="A commit: REPO@BRANCH or REPO@<commit id>."),
    ],
    down: Annotated[
        bool,
        typer.Option(
            "--down", help="Show what was derived from the commit instead of what it came from."
        ),
    ] = False,
    up: Annotated[
        bool, typer.Option("--up", help="What the commit came from (the default).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Walk provenance from a commit: `--up` to the data it came from (default), `--down` to
    everything derived from it. Every commit of one change shares its global id."""
    if up and down:
        raise typer.BadParameter("--up and --down exclude each other")

    async def main() -> None:
        parsed = parse_address(address)
        if parsed.path is not None:
            raise InvalidArgument("lineage takes a commit, not a path: REPO@REF")
        rows: list[tuple[int, CommitInfo]] = []
        async with connect() as client:
            start = await client.inspect_commit(parsed.repo, str(parsed.ref_or_default))
            queue: list[tuple[int, CommitRef]] = [(0, CommitRef(repo=parsed.repo, commit=start.id))]
            seen: set[str] = set()
            while queue:
                depth, ref = queue.pop(0)
                if ref.commit in seen:
                    continue
                seen.add(ref.commit)
                info = await client.inspect_commit(ref.repo, ref.commit)
                rows.append((depth, info))
                nxt = await client.subvenance(ref.repo, info.id) if down else info.provenance
                queue.extend((depth + 1, n) for n in nxt)
        if as_json:
            print_json([info for _, info in rows])
            return
        grid = table("", "REPO", "COMMIT", "BRANCH", "GLOBAL ID", "FINISHED")
        for depth, info in rows:
            arrow = "  " * depth + ("↓" if down else "↑") if depth else "•"
            grid.add_row(
                arrow,
                escape(info.repo),
                info.id,
                escape(info.branch or "-"),
                info.global_id,
                when(info.finished_at) + (" (failed)" if info.error else ""),
            )
        show(grid)

    run(main())


pipeline_app.command("draw")(draw_pipelines)


job_app.command("delete")(reruns.delete_job)
datum_app.command("restart")(reruns.restart_datums)
