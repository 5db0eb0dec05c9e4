"""Which commit a write goes to: the branch's open commit, or one opened for this command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rich.markup import escape

from tusk.cli.common import note, size
from tusk.client import CommitInfo, RepoClient
from tusk.errors import Conflict, InvalidArgument, TuskError
from tusk.paths import Address

_ABANDON_TIMEOUT = 10.0


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


@asynccontextmanager
async def writable_commit(
    client: RepoClient, address: Address, description: str, admin_override: str | None = None
) -> AsyncIterator[Target]:
    """The open commit to write into. With a branch that has no open commit, one is opened and
    finished when the block succeeds, or abandoned when it fails, so that a write is all or
    nothing; a commit that was already open is written into and left open. ``admin_override``:
    why an admin writes to a pipeline's output repo or a protected branch (recorded)."""
    ref = address.ref_or_default
    if ref.ancestry:
        raise InvalidArgument(
            f"cannot write to {address.repo}@{ref}: name a branch or an open commit's id"
        )
    if ref.is_commit_id:
        commit = await client.inspect_commit(address.repo, ref.base)
        if commit.state != "open":
            raise Conflict(f"commit {commit.id} is finished; write to a branch instead")
        yield Target(address.repo, commit.id, commit.branch, owned=False)
        return
    existing = await _open_commit(client, address.repo, ref.base)
    if existing is None:
        try:
            existing = await client.start_commit(
                address.repo, ref.base, description=description, admin_override=admin_override
            )
            owned = True
        except Conflict:
            # Someone opened one between our look and our start: write into theirs.
            existing = await _open_commit(client, address.repo, ref.base)
            if existing is None:
                raise
            owned = False
    else:
        owned = False
    target = Target(address.repo, existing.id, ref.base, owned=owned)
    if not owned:
        yield target
        return
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


async def _open_commit(client: RepoClient, repo: str, branch: str) -> CommitInfo | None:
    page = await client.list_commits_page(repo, branch=branch, state="open", limit=1)
    return page.items[0] if page.items else None


async def _abandon(client: RepoClient, target: Target) -> None:
    try:
        await asyncio.wait_for(client.abandon_commit(target.repo, target.commit), _ABANDON_TIMEOUT)
    except (TuskError, TimeoutError) as e:
        note(f"[yellow]could not abandon commit {target.commit}: {escape(str(e))}[/]")
    else:
        note(f"abandoned commit {target.commit}; nothing was written")


def left_open_hint(target: Target) -> str:
    return (
        f"commit {target.commit} is still open: finish it with "
        f"`tusk commit finish {escape(target.where)}`"
    )
