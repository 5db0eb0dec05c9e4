"""Which commit a write goes to: one opened for this command, or an open commit it was told to
join.

A ``tusk put`` or ``tusk rm`` on a branch owns its commit: it opens one, and finishes it when
everything is written or abandons it on failure, so a write is all or nothing and an
acknowledged write is never dropped by somebody else's failure. A branch holds at most one open
commit, so a write that finds another command's commit open waits for that command to finish it
(writes to one branch land one after the other, each in its own commit). A commit opened by
hand (``tusk commit start``) or by a pipeline is joined only when the user names it
(``--commit ID`` or ``REPO@ID``); such a commit is left open for whoever opened it to finish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from tusk.errors import Conflict, InvalidArgument, NotFound, TuskError
from tusk.paths import Address, Ref
from tusk_cli.common import escape, note, size

if TYPE_CHECKING:
    from tusk.client import CommitInfo, RepoClient

_ABANDON_TIMEOUT = 10.0
OWNED_PREFIXES = ("tusk put ", "tusk rm ")
"""Descriptions of the commits the CLI opens for one write (and finishes by itself)."""
DEFAULT_WAIT = 600.0
_POLL_FIRST, _POLL_MAX = 0.1, 2.0


CommitOption = Annotated[
    str | None,
    typer.Option(
        "--commit",
        "-c",
        metavar="ID",
        show_default=False,
        help="Write into this open commit (its id or a unique prefix of 8 or more characters, "
        "e.g. from `tusk commit start`) and leave it open, instead of a commit of its own.",
    ),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        min=0,
        help="While another put or rm has the branch's commit open, wait this long for it "
        "to be finished.",
    ),
]


@dataclass(frozen=True)
class Target:
    repo: str
    commit: str
    branch: str | None
    owned: bool
    """True when this command opened the commit (and so finishes or abandons it)."""

    @property
    def where(self) -> str:
        return f"{self.repo}@{self.branch or self.commit}"


def opened_by_a_write(commit: CommitInfo) -> bool:
    return commit.description.startswith(OWNED_PREFIXES)


@asynccontextmanager
async def writable_commit(
    client: RepoClient,
    address: Address,
    description: str,
    *,
    join: str | None = None,
    wait: float = DEFAULT_WAIT,
    admin_override: str | None = None,
) -> AsyncIterator[Target]:
    """The commit to write into: ``join`` (an open commit's id or unique prefix) or a commit id
    in the address, left open; otherwise a commit of this command's own on the address's branch,
    finished when the block succeeds and abandoned when it fails. ``admin_override``: why an
    admin writes to a pipeline's output repo or a protected branch (recorded)."""
    ref = address.ref_or_default
    if ref.ancestry:
        raise InvalidArgument(
            f"cannot write to {address.repo}@{ref}: name a branch or an open commit's id"
        )
    if join is not None or ref.is_commit_id:
        yield await _joined(client, address, ref, join)
        return
    target = await _own_commit(
        client, address.repo, ref.base, description, wait, admin_override
    )
    try:
        yield target
    except BaseException:
        await _abandon(client, target)
        raise
    finished = await client.finish_commit(target.repo, target.commit)
    note(
        f"finished commit {finished.id} on {escape(target.where)} "
        f"({finished.file_count} file{'' if finished.file_count == 1 else 's'}, "
        f"{size(finished.size_bytes)} in all)"
    )


async def _joined(client: RepoClient, address: Address, ref: Ref, join: str | None) -> Target:
    commit = await client.inspect_commit(address.repo, join or ref.base)
    if commit.state != "open":
        raise Conflict(
            f"commit {commit.id} of {address.repo} is finished; write to a branch instead "
            "(a new commit is opened for you)"
        )
    if join is not None and not ref.is_commit_id and address.ref and commit.branch != ref.base:
        raise InvalidArgument(
            f"commit {commit.id} is on branch {commit.branch}, not {ref.base}: "
            f"write to {address.repo}@{commit.branch} or leave the branch out"
        )
    return Target(address.repo, commit.id, commit.branch, owned=False)


async def _own_commit(
    client: RepoClient,
    repo: str,
    branch: str,
    description: str,
    wait: float,
    admin_override: str | None = None,
) -> Target:
    """Open a commit on ``branch``; while another write's commit is open there, wait for it."""
    deadline = time.monotonic() + wait
    delay = _POLL_FIRST
    waited_for: str | None = None
    while True:
        try:
            commit = await client.start_commit(
                repo, branch, description=description, admin_override=admin_override
            )
        except Conflict as conflict:
            existing = await _open_commit(client, repo, branch)
            if existing is None:
                # Finished between our start and our look: try again, but not forever if the
                # conflict is of another kind.
                if time.monotonic() >= deadline:
                    raise conflict
                await asyncio.sleep(_POLL_FIRST)
                continue
        else:
            return Target(repo, commit.id, branch, owned=True)
        if not opened_by_a_write(existing):
            raise Conflict(
                f"{repo}@{branch} has an open commit {existing.id} "
                f"({_describe(existing)}): write into it with --commit {existing.id[:8]}, "
                f"or finish it (`tusk commit finish {repo}@{branch}`) and try again"
            )
        if waited_for != existing.id:
            waited_for = existing.id
            note(
                f"waiting for commit {existing.id} on {escape(repo)}@{escape(branch)} "
                f"({escape(_describe(existing))}) to be finished before opening this one"
            )
        if time.monotonic() >= deadline:
            raise Conflict(
                f"commit {existing.id} on {repo}@{branch} ({_describe(existing)}) was still open "
                f"after {wait:g} s; if that command is gone, abandon it with "
                f"`tusk commit abandon {repo}@{existing.id}`"
            )
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, _POLL_MAX)


def _describe(commit: CommitInfo) -> str:
    return f"'{commit.description}'" if commit.description else "opened without a description"


async def _open_commit(client: RepoClient, repo: str, branch: str) -> CommitInfo | None:
    page = await client.list_commits_page(repo, branch=branch, state="open", limit=1)
    return page.items[0] if page.items else None


async def _abandon(client: RepoClient, target: Target) -> None:
    try:
        await asyncio.wait_for(client.abandon_commit(target.repo, target.commit), _ABANDON_TIMEOUT)
    except NotFound:
        pass  # nothing to drop
    except (TuskError, TimeoutError) as e:
        note(f"[yellow]could not abandon commit {target.commit}: {escape(str(e))}[/]")
    else:
        note(f"abandoned commit {target.commit}; nothing was written")


def left_open_hint(target: Target) -> str:
    return (
        f"commit {target.commit} is still open: finish it with "
        f"`tusk commit finish {escape(target.repo)}@{target.commit}`"
    )
