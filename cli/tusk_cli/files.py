"""``tusk ls``, ``glob``, ``diff``, ``history`` and ``rm``: look at and change a commit's files."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer

from tusk.errors import InvalidArgument
from tusk.paths import parse_address, parse_ref
from tusk_cli.common import (
    ADDRESS_HELP,
    JsonOption,
    connect,
    escape,
    note,
    print_json,
    ref_of,
    run,
    show,
    size,
    table,
    when,
)
from tusk_cli.writing import (
    DEFAULT_WAIT,
    CommitOption,
    WaitOption,
    left_open_hint,
    writable_commit,
)

if TYPE_CHECKING:
    from tusk.client import FileInfo

AddressArg = Annotated[
    str, typer.Argument(metavar="REPO@REF:/PATH", help=ADDRESS_HELP, show_default=False)
]


def print_files(files: Iterable[FileInfo]) -> None:
    grid = table("PATH", "TYPE", "SIZE", "FILES")
    for f in files:
        shown = f.path + ("/" if f.type == "dir" and f.path != "/" else "")
        style = "bold blue" if f.type == "dir" else ""
        grid.add_row(
            f"[{style}]{escape(shown)}[/]" if style else escape(shown),
            f.type,
            size(f.size_bytes),
            str(f.file_count),
        )
    show(grid)


def ls(address: AddressArg, as_json: JsonOption = False) -> None:
    """List a directory of a commit (the root by default), or show one file.

    Examples:

    `tusk ls raw@master`

    `tusk ls raw@master^1:/data --json`
    """

    async def main() -> None:
        parsed = parse_address(address)
        ref, path = ref_of(parsed), parsed.path or "/"
        async with connect() as client:
            entry = await client.stat(parsed.repo, ref, path)
            if entry.type == "dir":
                entries = [e async for e in client.list_dir(parsed.repo, ref, path)]
            else:
                entries = [entry]
        if as_json:
            print_json(entries)
        else:
            print_files(entries)

    run(main())


def glob(
    ref: Annotated[str, typer.Argument(metavar="REPO@REF", help=ADDRESS_HELP, show_default=False)],
    pattern: Annotated[
        str,
        typer.Argument(
            metavar="PATTERN",
            show_default=False,
            help="`*`, `?` and `[abc]` match within a name, `**` any number of directories: "
            "`'/data/*.csv'`, `'/**/*.json'`. Quote it so that the shell leaves it alone.",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """List the files and directories matching a glob pattern."""

    async def main() -> None:
        parsed = parse_address(ref)
        if parsed.path is not None:
            raise InvalidArgument("glob takes REPO@REF and the pattern as two arguments")
        async with connect() as client:
            matches = await client.glob(parsed.repo, ref_of(parsed), pattern)
        if as_json:
            print_json(matches)
        else:
            print_files(matches)

    run(main())


_CHANGE_STYLE = {"added": ("+", "green"), "deleted": ("-", "red"), "modified": ("~", "yellow")}


def diff(
    address: AddressArg,
    from_ref: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="REF",
            show_default=False,
            help="Compare with this ref of the same repo (default: the commit's parent).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the files added, deleted or modified by a commit (below PATH if given).

    Example: `tusk diff raw@master --from master^3`
    """

    async def main() -> None:
        parsed = parse_address(address)
        if from_ref is not None:
            parse_ref(from_ref)
        async with connect() as client:
            result = await client.diff(parsed.repo, ref_of(parsed), from_ref, parsed.path or "/")
        if as_json:
            print_json(result)
            return
        note(f"from {result.from_commit or '(nothing)'} to {result.to_commit}")
        grid = table("", "PATH", "SIZE")
        grid.show_header = False
        for change in result.changes:
            mark, color = _CHANGE_STYLE[change.change]
            sizes = {
                "added": size(change.size_after),
                "deleted": size(change.size_before),
                "modified": f"{size(change.size_before)} -> {size(change.size_after)}",
            }[change.change]
            grid.add_row(f"[{color}]{mark}[/]", f"[{color}]{escape(change.path)}[/]", sizes)
        show(grid)
        if not result.changes:
            note("no changes")

    run(main())


def history(
    address: AddressArg,
    limit: Annotated[int, typer.Option(min=1, help="How many ancestors to look through.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Show the commits in which a file or directory changed, newest first.

    Example: `tusk history raw@master:/data/a.csv`
    """

    async def main() -> None:
        parsed = parse_address(address)
        if not parsed.path or parsed.path == "/":
            raise InvalidArgument("history needs a path: REPO@REF:/PATH")
        async with connect() as client:
            entries = await client.history(parsed.repo, ref_of(parsed), parsed.path, limit)
        if as_json:
            print_json(entries)
            return
        grid = table("COMMIT", "CHANGE", "SIZE", "FINISHED")
        for e in entries:
            _, color = _CHANGE_STYLE[e.change]
            grid.add_row(
                e.commit, f"[{color}]{e.change}[/]", size(e.size_bytes), when(e.finished_at)
            )
        show(grid)

    run(main())


def rm(
    address: Annotated[
        str,
        typer.Argument(
            metavar="REPO@BRANCH:/PATH",
            show_default=False,
            help="The file or directory to delete, on a branch or an open commit's id.",
        ),
    ],
    commit: CommitOption = None,
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Delete a file, or a directory with everything below it.

    Like put, it opens a commit of its own and finishes it, or writes into the open commit
    given with `--commit` and leaves it open.
    """

    async def main() -> None:
        parsed = parse_address(address)
        if not parsed.path or parsed.path == "/":
            raise InvalidArgument("rm needs a path below the root: REPO@BRANCH:/PATH")
        async with connect() as client:
            # A missing path is the user's mistake: say so before any commit is opened.
            await client.stat(parsed.repo, commit or ref_of(parsed), parsed.path)
        async with (
            connect() as client,
            writable_commit(
                client, parsed, f"tusk rm {address}", join=commit, wait=wait
            ) as target,
        ):
            await client.delete_file(target.repo, target.commit, parsed.path)
            note(f"deleted {escape(parsed.path)} in {escape(target.where)}")
            if not target.owned:
                note(left_open_hint(target))

    run(main())
