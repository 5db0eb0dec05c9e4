"""``tusk commit …`` and ``tusk log``: open, finish, abandon and look at commits."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import aclosing
from enum import StrEnum
from typing import Annotated

import typer

from tusk.client import CommitInfo, CommitRef
from tusk.errors import InvalidArgument
from tusk.paths import parse_address
from tusk_cli.common import (
    ADDRESS_HELP,
    JsonOption,
    connect,
    escape,
    need_branch,
    note,
    print_json,
    ref_of,
    run,
    show,
    size,
    table,
    when,
)
from tusk_cli.lifecycle import commit_delete, commit_squash

app = typer.Typer(
    help="Open, finish, abandon, list and inspect commits. A commit is a snapshot of a repo's "
    "files; it is open (writable) until finished.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

CommitArg = Annotated[
    str,
    typer.Argument(
        metavar="REPO@REF",
        show_default=False,
        help="A commit: REPO@BRANCH (its head, or for finish/abandon its open commit), "
        "REPO@COMMIT_ID, or either with ^N for ancestors (raw@master^1).",
    ),
]


class State(StrEnum):
    open = "open"
    finished = "finished"


def state_of(commit: CommitInfo) -> str:
    if commit.state == "open":
        return "[yellow]open[/]"
    return "[red]failed[/]" if commit.error is not None else "[green]finished[/]"


def print_commits(commits: Iterable[CommitInfo]) -> None:
    grid = table("ID", "BRANCH", "STATE", "STARTED", "FINISHED", "SIZE", "FILES", "DESCRIPTION")
    for c in commits:
        grid.add_row(
            c.id,
            escape(c.branch or "-"),
            state_of(c),
            when(c.started_at),
            when(c.finished_at),
            size(c.size_bytes),
            "-" if c.file_count is None else str(c.file_count),
            escape(c.description.splitlines()[0] if c.description else ""),
        )
    show(grid)


@app.command("start")
def start(
    branch: Annotated[
        str,
        typer.Argument(
            metavar="REPO@BRANCH",
            show_default=False,
            help="The branch to commit to; created if it does not exist.",
        ),
    ],
    description: Annotated[str, typer.Option("--description", "-d", help="What changes.")] = "",
    provenance: Annotated[
        list[str] | None,
        typer.Option(
            "--provenance",
            "-p",
            metavar="REPO@REF",
            show_default=False,
            help="An input commit this one derives from (repeatable).",
        ),
    ] = None,
) -> None:
    """Open a commit on a branch and print its id. Then put files into it and finish it.

    Example: `tusk commit start raw@master -d "March export"`
    """

    async def main() -> None:
        address = parse_address(branch)
        name = need_branch(address, "commit start")
        inputs = []
        for text in provenance or ():
            source = parse_address(text)
            inputs.append(CommitRef(repo=source.repo, commit=ref_of(source)))
        async with connect() as client:
            commit = await client.start_commit(
                address.repo, name, description=description, provenance=inputs
            )
        typer.echo(commit.id)
        where = f"{address.repo}@{name}"
        note(
            f"started commit {commit.id} on [bold]{escape(where)}[/]: put files with "
            f"`tusk put {escape(where)}:/PATH -f FILE`, then `tusk commit finish {escape(where)}`"
        )

    run(main())


@app.command("finish")
def finish(
    commit: CommitArg,
    error: Annotated[
        str | None,
        typer.Option(
            "--error",
            metavar="MESSAGE",
            show_default=False,
            help="Finish the commit marked failed, with this message.",
        ),
    ] = None,
) -> None:
    """Finish an open commit: its files become the branch's new head."""

    async def main() -> None:
        address = parse_address(commit)
        async with connect() as client:
            info = await client.finish_commit(address.repo, ref_of(address), error=error)
        outcome = "[red]marked failed[/]" if info.error is not None else "finished"
        note(
            f"{outcome} commit {info.id} on {escape(address.repo)}@{escape(info.branch or '-')}: "
            f"{info.file_count} file{'' if info.file_count == 1 else 's'}, {size(info.size_bytes)}"
        )

    run(main())


@app.command("abandon")
def abandon(commit: CommitArg) -> None:
    """Drop an open commit and everything put into it."""

    async def main() -> None:
        address = parse_address(commit)
        async with connect() as client:
            await client.abandon_commit(address.repo, ref_of(address))
        note(f"abandoned the open commit of {escape(str(address))}")

    run(main())


@app.command("inspect")
def inspect(commit: CommitArg, as_json: JsonOption = False) -> None:
    """Show a commit: state, parent, size, provenance."""

    async def main() -> None:
        address = parse_address(commit)
        async with connect() as client:
            info = await client.inspect_commit(address.repo, ref_of(address))
        if as_json:
            print_json(info)
            return
        grid = table("", "")
        grid.show_header = False
        rows = [
            ("Commit", info.id),
            ("Repo", escape(info.repo)),
            ("Branch", escape(info.branch or "-")),
            ("State", state_of(info)),
            ("Parent", info.parent or "-"),
            ("Global id", info.global_id),
            ("Started", when(info.started_at)),
            ("Finished", when(info.finished_at)),
            ("Size", size(info.size_bytes)),
            ("Files", "-" if info.file_count is None else str(info.file_count)),
            ("Description", escape(info.description or "-")),
            (
                "Provenance",
                escape(", ".join(f"{p.repo}@{p.commit}" for p in info.provenance)) or "-",
            ),
        ]
        if info.error is not None:
            rows.append(("Error", f"[red]{escape(info.error)}[/]"))
        for key, value in rows:
            grid.add_row(f"[bold]{key}[/]", value)
        show(grid)

    run(main())


@app.command("list")
def list_(
    repo: Annotated[
        str,
        typer.Argument(
            metavar="REPO[@BRANCH]",
            show_default=False,
            help="A repo, or REPO@BRANCH for the commits started on that branch.",
        ),
    ],
    state: Annotated[State | None, typer.Option(help="Only open or only finished commits.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Show at most this many (0: all).")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List a repo's commits, newest first."""

    async def main() -> None:
        address = parse_address(repo)
        if address.path is not None:
            raise InvalidArgument("commit list takes REPO or REPO@BRANCH, without a path")
        branch = need_branch(address, "commit list") if address.ref else None
        commits: list[CommitInfo] = []
        async with connect() as client:
            page_size = min(limit, 1000) if limit else 1000
            listing = client.list_commits(
                address.repo,
                branch=branch,
                state=state.value if state else None,
                page_size=page_size,
            )
            async with aclosing(listing):
                async for commit in listing:
                    commits.append(commit)
                    if len(commits) == limit:
                        break
        if as_json:
            print_json(commits)
        else:
            print_commits(commits)

    run(main())


def log(
    ref: Annotated[str, typer.Argument(metavar="REPO@REF", help=ADDRESS_HELP, show_default=False)],
    limit: Annotated[int, typer.Option(min=0, help="Show at most this many (0: all).")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show a commit and its ancestors, newest first.

    Example: `tusk log raw@master --limit 5`
    """

    async def main() -> None:
        address = parse_address(ref)
        commits: list[CommitInfo] = []
        async with connect() as client:
            page_size = min(limit, 1000) if limit else 1000
            ancestry = client.log(address.repo, ref_of(address), page_size=page_size)
            async with aclosing(ancestry):
                async for commit in ancestry:
                    commits.append(commit)
                    if len(commits) == limit:
                        break
        if as_json:
            print_json(commits)
        else:
            print_commits(commits)

    run(main())


# Defined with the other commands of a repo's later life; listed here with the commit commands.

app.command("delete")(commit_delete)
app.command("squash")(commit_squash)
