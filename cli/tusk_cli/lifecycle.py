"""``tusk gc``, ``tusk merge``, ``tusk tag …``, ``tusk branch protect``, ``tusk commit delete``
and ``tusk commit squash``, ``tusk repo retention``: a repo's life after its first commits."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from tusk.errors import Conflict, InvalidArgument
from tusk.paths import parse_address, parse_ref
from tusk.wire.repo import DroppedCommits  # (tusk.client.models would load the job models)
from tusk_cli.common import (
    JsonOption,
    connect,
    escape,
    need_branch,
    note,
    print_json,
    run,
    show,
    size,
    table,
    when,
)

tag_app = typer.Typer(
    help="Immutable names for commits, usable wherever a ref is (`train@v1:/model.onnx`).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

CascadeOption = Annotated[
    bool,
    typer.Option(
        "--cascade",
        help="Also delete every commit derived from these (through pipelines' provenance).",
    ),
]


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be freed; delete nothing.")
    ] = False,
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            help="Spare unreferenced chunks younger than this (default: the repo service's "
            "TUSK_REPO_GC_GRACE_SECONDS). Uploads in flight rely on young chunks: use 0 only "
            "when nothing is being uploaded.",
            show_default=False,
        ),
    ] = None,
    compact_below: Annotated[
        float | None,
        typer.Option(
            "--compact-below",
            min=0,
            max=1,
            metavar="FRACTION",
            help="Rewrite packs of small files used less than this fraction into new packs, "
            "freeing the rest (default: the repo service's TUSK_REPO_GC_COMPACT_BELOW, 0.5; "
            "0: no compaction).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Reclaim storage no commit uses any more: after repos, branches or commits were
    deleted or squashed, and commits dropped by retention rules (`tusk repo retention`).

    The repo service also does this by itself every TUSK_REPO_GC_INTERVAL_SECONDS.

    Example: `tusk gc --dry-run`
    """

    async def main() -> None:
        async with connect() as client:
            report = await client.collect_garbage(
                dry_run=dry_run, grace_seconds=grace, compact_below=compact_below
            )
        if as_json:
            print_json(report)
            return
        verb = "would free" if report.dry_run else "freed"
        grid = table("WHAT", "COUNT")
        grid.add_row("commits dropped by retention", str(len(report.retention_commits)))
        grid.add_row("directory nodes", str(report.tree_nodes))
        grid.add_row("file records", str(report.files))
        grid.add_row("chunks", str(report.chunks))
        grid.add_row("young chunks spared", str(report.kept_recent_chunks))
        grid.add_row("packs compacted", str(report.packs_compacted))
        show(grid)
        if report.packs_compacted:
            note(
                f"{'would reclaim' if report.dry_run else 'reclaimed'} "
                f"[bold]{size(report.pack_bytes_reclaimed)}[/] unused in "
                f"{report.packs_compacted} pack(s) of small files, by copying what they still "
                "hold into new packs"
            )
        note(
            f"{verb} [bold]{size(report.bytes)}[/] in {report.chunks} chunk(s); "
            f"{size(report.referenced_bytes)} in {report.referenced_chunks} chunk(s) remain in use "
            f"({report.seconds:.2f} s)"
        )

    run(main())


def merge(
    source: Annotated[
        str,
        typer.Argument(
            metavar="REPO@SRC",
            help="What to merge: a branch, tag or commit of the repo.",
            show_default=False,
        ),
    ],
    into: Annotated[
        str,
        typer.Option(
            "--into", metavar="DEST", help="The branch to merge into.", show_default=False
        ),
    ],
    ours: Annotated[
        bool, typer.Option("--ours", help="Settle paths changed on both sides with DEST's.")
    ] = False,
    theirs: Annotated[
        bool, typer.Option("--theirs", help="Settle paths changed on both sides with SRC's.")
    ] = False,
    message: Annotated[
        str, typer.Option("--message", "-m", help="The merge commit's description.")
    ] = "",
    admin_override: Annotated[
        str | None,
        typer.Option(
            "--admin-override",
            metavar="REASON",
            help="Merge into a pipeline's output repo by hand; the reason is recorded.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Merge a branch (or tag, or commit) into another branch of the same repo.

    Fast-forwards when DEST's head is an ancestor of SRC; otherwise merges the trees three
    ways by content hash into a commit with two parents and the provenance of both. Paths
    changed differently on both sides are listed and nothing is written, unless --ours or
    --theirs settles them. Pipelines reading DEST run as for any new commit.

    Example: `tusk merge raw@experiment --into master`
    """

    async def main() -> None:
        if ours and theirs:
            raise InvalidArgument("choose one of --ours and --theirs")
        strategy: Literal["ours", "theirs"] | None = (
            "ours" if ours else "theirs" if theirs else None
        )
        address = parse_address(source)
        if address.ref is None:
            raise InvalidArgument(f"say what to merge: {address.repo}@BRANCH --into DEST")
        parse_ref(into)
        async with connect() as client:
            try:
                result = await client.merge(
                    address.repo,
                    str(address.ref),
                    into,
                    strategy=strategy,
                    description=message,
                    admin_override=admin_override,
                )
            except Conflict as e:
                conflicts = e.details.get("conflicts")
                if isinstance(conflicts, list) and conflicts:
                    grid = table("PATH", "CONFLICT")
                    for item in conflicts:
                        grid.add_row(escape(str(item["path"])), escape(str(item["reason"])))
                    show(grid)
                    raise Conflict(
                        f"{e.details.get('conflict_count', len(conflicts))} conflict(s), nothing "
                        "was written: resolve them on a branch, or merge with --ours or --theirs"
                    ) from None
                raise
        if as_json:
            print_json(result)
            return
        if result.outcome == "up-to-date":
            note(f"{escape(into)} already contains {result.source}; nothing to do")
        elif result.outcome == "fast-forward":
            note(f"fast-forwarded {escape(address.repo)}@{escape(into)} to {result.commit}")
        else:
            note(
                f"merged into {escape(address.repo)}@{escape(into)}: commit {result.commit} "
                f"({result.changed_paths} path(s) from {escape(str(address.ref))}"
                + (
                    f", {len(result.resolved_conflicts)} conflict(s) settled by --"
                    + ("ours" if ours else "theirs")
                    if result.resolved_conflicts
                    else ""
                )
                + ")"
            )

    run(main())


@tag_app.command("create")
def tag_create(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REPO@REF", help="The commit to name, e.g. train@master.", show_default=False
        ),
    ],
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The tag, e.g. v1.", show_default=False)
    ],
) -> None:
    """Name a finished commit for good. A tag never moves; use it as a ref anywhere
    (`tusk get train@v1:/model.onnx`, a model source `train@v1:/model.onnx`).

    Example: `tusk tag create train@master v1`
    """

    async def main() -> None:
        address = parse_address(ref)
        async with connect() as client:
            info = await client.create_tag(
                address.repo, name, str(address.ref) if address.ref else "master"
            )
        note(f"tagged {info.commit} as [bold]{escape(info.repo)}@{escape(info.name)}[/]")

    run(main())


@tag_app.command("list")
def tag_list(
    repo: Annotated[str, typer.Argument(metavar="REPO", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """The repo's tags and the commits they name."""

    async def main() -> None:
        async with connect() as client:
            tags = await client.list_tags(parse_address(repo).repo)
        if as_json:
            print_json(tags)
            return
        grid = table("TAG", "COMMIT", "CREATED")
        for tag in tags:
            grid.add_row(escape(tag.name), tag.commit, when(tag.created_at))
        show(grid)

    run(main())


def branch_protect(
    branch: Annotated[
        str, typer.Argument(metavar="REPO@BRANCH", help="e.g. raw@master.", show_default=False)
    ],
    off: Annotated[bool, typer.Option("--off", help="Lift the protection.")] = False,
) -> None:
    """Protect a branch: it then changes only by merges (`tusk merge … --into BRANCH`); puts,
    commits and moves are refused.

    Example: `tusk branch protect raw@master`
    """

    async def main() -> None:
        address = parse_address(branch)
        name = need_branch(address, "branch protect")
        async with connect() as client:
            await client.protect_branch(address.repo, name, not off)
        state = "no longer protected" if off else "protected: it changes only by merges"
        note(f"{escape(address.repo)}@{escape(name)} is {state}")

    run(main())


def _dropped(result: DroppedCommits, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    grid = table("REPO", "COMMIT")
    for ref in result.dropped:
        grid.add_row(escape(ref.repo), ref.commit)
    show(grid)
    for moved in result.moved_branches:
        note(f"{escape(moved)} moved back to its parent commit")
    note(f"deleted {len(result.dropped)} commit(s); `tusk gc` reclaims their storage")


def commit_delete(
    commit: Annotated[
        str,
        typer.Argument(
            metavar="REPO@REF", help="The finished commit to delete.", show_default=False
        ),
    ],
    cascade: CascadeOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a finished commit. A branch it heads moves back to its parent; its children take
    its parent. Refused, listing them, while other commits derive from it (their provenance
    would dangle) unless --cascade deletes those too.

    Example: `tusk commit delete raw@master --cascade`
    """

    async def main() -> None:
        address = parse_address(commit)
        if address.ref is None:
            raise InvalidArgument(f"say which commit: {address.repo}@REF")
        async with connect() as client:
            result = await client.delete_commit(address.repo, str(address.ref), cascade=cascade)
        _dropped(result, as_json)

    run(main())


def commit_squash(
    oldest: Annotated[
        str,
        typer.Argument(
            metavar="REPO@OLDEST", help="The first commit of the range.", show_default=False
        ),
    ],
    newest: Annotated[
        str,
        typer.Argument(
            metavar="NEWEST", help="The last commit of the range (a ref).", show_default=False
        ),
    ],
    cascade: CascadeOption = False,
    as_json: JsonOption = False,
) -> None:
    """Squash OLDEST..NEWEST of one branch's history into NEWEST, which keeps its id and files
    and takes OLDEST's parent. Refused while other commits derive from the ones removed,
    unless --cascade.

    Example: `tusk commit squash raw@master~5 master`
    """

    async def main() -> None:
        address = parse_address(oldest)
        if address.ref is None:
            raise InvalidArgument(f"say where the range starts: {address.repo}@REF")
        parse_ref(newest)
        async with connect() as client:
            result = await client.squash(address.repo, str(address.ref), newest, cascade=cascade)
        _dropped(result, as_json)

    run(main())


def repo_retention(
    repo: Annotated[str, typer.Argument(metavar="REPO", show_default=False)],
    keep_days: Annotated[
        int | None,
        typer.Option("--keep-days", min=0, help="Keep commits this many days.", show_default=False),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option(
            "--keep-last", min=1, help="Keep at least this many per branch.", show_default=False
        ),
    ] = None,
) -> None:
    """Retention for commits on the repo's branches other than master, applied by garbage
    collection: a commit older than --keep-days and not among its branch's --keep-last newest
    is dropped. Branch heads, tagged commits and inputs of other commits are always kept.
    With neither option, retention is switched off.

    Example: `tusk repo retention raw --keep-days 30 --keep-last 5`
    """

    async def main() -> None:
        name = parse_address(repo).repo
        async with connect() as client:
            await client.set_retention(name, keep_days=keep_days, keep_last=keep_last)
        if keep_days is None and keep_last is None:
            note(f"{escape(name)} keeps every commit")
        else:
            note(
                f"{escape(name)}: commits of branches other than master are dropped by gc when "
                + " and ".join(
                    part
                    for part in (
                        f"older than {keep_days} day(s)" if keep_days is not None else "",
                        f"not among a branch's {keep_last} newest" if keep_last is not None else "",
                    )
                    if part
                )
            )

    run(main())
