"""``tusk branch …``: create, list, inspect, move and delete branches."""

from __future__ import annotations

from typing import Annotated

import typer

from tusk.client import BranchInfo
from tusk.paths import parse_address, parse_ref, qualified_name
from tusk_cli.common import (
    JsonOption,
    connect,
    escape,
    need_branch,
    note,
    print_json,
    run,
    show,
    table,
    when,
)
from tusk_cli.lifecycle import branch_protect

app = typer.Typer(
    help="Create, list, move and delete branches. A branch's head is its last finished commit.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

BranchArg = Annotated[
    str,
    typer.Argument(
        metavar="REPO@BRANCH",
        help="The branch, e.g. raw@master.",
        show_default=False,
    ),
]


def _branch(text: str, what: str) -> tuple[str, str]:
    address = parse_address(text)
    return address.repo, need_branch(address, what)


def _show(branch: BranchInfo) -> None:
    grid = table("BRANCH", "HEAD", "CREATED")
    grid.add_row(escape(branch.name), branch.head or "-", when(branch.created_at))
    show(grid)


@app.command("create")
def create(
    branch: BranchArg,
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="Start at this ref (a branch or commit id, with ^N for ancestors, "
            "e.g. master^1); default: empty.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a branch, empty or starting at a commit.

    Example: `tusk branch create raw@staging --head master^1`
    """

    async def main() -> None:
        repo, name = _branch(branch, "branch create")
        if head is not None:
            parse_ref(head)
        async with connect() as client:
            info = await client.create_branch(repo, name, head)
        note(f"created branch [bold]{escape(repo)}@{escape(name)}[/] at {info.head or 'no commit'}")

    run(main())


@app.command("list")
def list_(
    repo: Annotated[str, typer.Argument(metavar="REPO", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """List a repo's branches and their heads."""

    async def main() -> None:
        async with connect() as client:
            branches = await client.list_branches(qualified_name("repo", repo))
        if as_json:
            print_json(branches)
            return
        grid = table("BRANCH", "HEAD", "CREATED")
        for b in branches:
            grid.add_row(escape(b.name), b.head or "-", when(b.created_at))
        show(grid)

    run(main())


@app.command("inspect")
def inspect(branch: BranchArg, as_json: JsonOption = False) -> None:
    """Show a branch's head commit."""

    async def main() -> None:
        repo, name = _branch(branch, "branch inspect")
        async with connect() as client:
            info = await client.inspect_branch(repo, name)
        if as_json:
            print_json(info)
        else:
            _show(info)

    run(main())


@app.command("move")
def move(
    branch: BranchArg,
    head: Annotated[
        str,
        typer.Option(
            "--head",
            help="The ref to point the branch at, e.g. master^1 or a commit id.",
            show_default=False,
        ),
    ],
) -> None:
    """Point a branch at another finished commit (to roll back, or to promote a commit).

    Example: `tusk branch move raw@master --head master^1`
    """

    async def main() -> None:
        repo, name = _branch(branch, "branch move")
        parse_ref(head)
        async with connect() as client:
            info = await client.move_branch(repo, name, head)
        note(f"moved branch [bold]{escape(repo)}@{escape(name)}[/] to {info.head}")

    run(main())


@app.command("delete")
def delete(branch: BranchArg) -> None:
    """Delete a branch. Its commits stay, reachable by id."""

    async def main() -> None:
        repo, name = _branch(branch, "branch delete")
        async with connect() as client:
            await client.delete_branch(repo, name)
        note(f"deleted branch [bold]{escape(repo)}@{escape(name)}[/]")

    run(main())


# Defined with the other commands of a repo's later life; listed here with the branch commands.

app.command("protect")(branch_protect)
