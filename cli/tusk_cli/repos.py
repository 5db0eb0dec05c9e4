"""``tusk repo …``: create, list, inspect and delete repos."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from tusk.errors import Conflict, InvalidArgument
from tusk.paths import qualified_name
from tusk_cli.common import (
    JsonOption,
    ProjectOption,
    connect,
    note,
    of_project,
    print_json,
    run,
    show,
    size,
    table,
    when,
)
from tusk_cli.lifecycle import repo_retention

app = typer.Typer(
    help="Create, list, inspect and delete repos (versioned collections of files).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

RepoArg = Annotated[
    str,
    typer.Argument(
        metavar="REPO", help="The repo's name (PROJECT/REPO in a project).", show_default=False
    ),
]


def _repo(name: str) -> str:
    return qualified_name("repo", name)


@app.command("create")
def create(
    name: Annotated[
        str,
        typer.Argument(
            metavar="REPO",
            help="1-63 letters, digits, '_' or '-', starting with a letter or digit; "
            "PROJECT/REPO for a repo of a project (`tusk project create PROJECT` first).",
            show_default=False,
        ),
    ],
    description: Annotated[str, typer.Option("--description", "-d", help="What it holds.")] = "",
) -> None:
    """Create an empty repo. Its first commit creates the master branch.

    Example: `tusk repo create raw -d "daily CSV exports"`, `tusk repo create vision/images`
    """

    async def main() -> None:
        async with connect() as client:
            info = await client.create_repo(_repo(name), description)
        note(f"created repo [bold]{escape(info.name)}[/]")

    run(main())


@app.command("list")
def list_(project: ProjectOption = None, as_json: JsonOption = False) -> None:
    """List the repos (of every project, or of --project) with their size (of master's head)
    and commit count."""

    async def main() -> None:
        async with connect() as client:
            repos = [r for r in await client.list_repos() if of_project(r.name, project)]
        if as_json:
            print_json(repos)
            return
        grid = table("NAME", "CREATED", "SIZE", "COMMITS", "BRANCHES", "DESCRIPTION")
        for repo in repos:
            grid.add_row(
                escape(repo.name),
                when(repo.created_at),
                size(repo.size_bytes),
                str(repo.commit_count),
                escape(", ".join(repo.branches)),
                escape(repo.description),
            )
        show(grid)

    run(main())


@app.command("inspect")
def inspect(repo: RepoArg, as_json: JsonOption = False) -> None:
    """Show a repo's details: branches, size, number of commits."""

    async def main() -> None:
        async with connect() as client:
            info = await client.inspect_repo(_repo(repo))
        if as_json:
            print_json(info)
            return
        grid = table("", "")
        grid.show_header = False
        for key, value in (
            ("Name", info.name),
            ("Description", info.description or "-"),
            ("Created", when(info.created_at)),
            ("Branches", ", ".join(info.branches) or "-"),
            ("Commits", str(info.commit_count)),
            ("Size (master)", size(info.size_bytes)),
        ):
            grid.add_row(f"[bold]{key}[/]", escape(value))
        show(grid)

    run(main())


@app.command("delete")
def delete(
    repo: RepoArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even if commits of other repos name it in their provenance.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts)."),
    ] = False,
) -> None:
    """Delete a repo with all its branches and commits. This cannot be undone: it asks first
    unless given --yes.
    """

    async def main() -> None:
        name = _repo(repo)
        async with connect() as client:
            info = await client.inspect_repo(name)
            if not yes:
                confirm_deletion(info.name, info.commit_count)
            try:
                await client.delete_repo(name, force=force)
            except Conflict as e:
                dependents = e.details.get("dependents")
                if not dependents:
                    raise
                raise Conflict(
                    f"commits in {', '.join(dependents)} were derived from repo {name}; "
                    "delete those first, or delete it anyway with --force"
                ) from None
        note(f"deleted repo [bold]{escape(repo)}[/]")

    run(main())


def confirm_deletion(name: str, commits: int) -> None:
    """Ask at a terminal; refuse elsewhere, since nobody can answer."""
    what = f"repo {name} and its {commits} commit{'' if commits == 1 else 's'}"
    if not sys.stdin.isatty():
        raise InvalidArgument(f"not deleting {what} without confirmation: pass --yes")
    if not typer.confirm(f"Delete {what}? This cannot be undone", default=False):
        raise InvalidArgument("nothing deleted")


# Defined with the other commands of a repo's later life; listed here with the repo commands.

app.command("retention")(repo_retention)
