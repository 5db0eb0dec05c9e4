"""Editing history: deleting finished commits and squashing ranges of them.

A commit is a whole snapshot (a root hash), so dropping one never changes another's files: its
children are re-parented to its parent and a branch whose head it was moves to its parent.
What must not happen is provenance that names a dropped commit, so dropping refuses while
other commits derive from it, listing them, unless ``cascade`` drops those too (through the
whole DAG). Tags are immutable, so a tagged commit is never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from tusk.errors import Conflict, InvalidArgument
from tusk.events.outbox import OutboxWriter
from tusk.events.types import BranchMoved
from tusk_repo.schemas import CommitRefModel
from tusk_repo.store import history as store
from tusk_repo.tables import CommitRow, RepoRow


async def plan_drop(
    session: AsyncSession, commits: Iterable[str], *, cascade: bool
) -> list[CommitRow]:
    """The commits to drop: ``commits`` and, with ``cascade``, every commit downstream of them
    by provenance. Refuses (nothing dropped) when something would be left dangling."""
    wanted = set(commits)
    frontier = set(wanted)
    while frontier:
        dependents = [d for d in await store.dependents(session, frontier) if d[0] not in wanted]
        if dependents and not cascade:
            listed = sorted({f"{repo}@{commit}" for commit, repo, _ in dependents})
            raise Conflict(
                f"{len(listed)} commit(s) derive from what would be dropped: "
                + ", ".join(listed[:10])
                + (" …" if len(listed) > 10 else "")
                + "; drop them first, or pass cascade to drop them too",
                dependents=listed[:100],
            )
        frontier = {commit for commit, _, _ in dependents}
        wanted |= frontier
    rows = await store.commits_by_id(session, wanted)
    still_open = sorted(r.id for r in rows if r.state != "finished")
    if still_open:
        raise Conflict(
            f"commit(s) {', '.join(still_open[:10])} are still open: finish or abandon them first",
            open_commits=still_open[:100],
        )
    tags = await store.tags_on(session, wanted)
    if tags:
        listed = sorted(f"{repo}@{tag} ({commit})" for repo, tag, commit in tags)
        raise Conflict(
            f"tagged commits are kept: {', '.join(listed[:10])}; tags are immutable",
            tags=listed[:100],
        )
    return rows


async def drop(
    session: AsyncSession, outbox: OutboxWriter, rows: list[CommitRow]
) -> tuple[list[CommitRefModel], list[str]]:
    """Drop planned commits: children re-parented, branch heads moved to the parent. Returns
    the dropped commits and the branches that moved ("repo@branch")."""
    repo_names = await store.repo_names(session, {r.repo_id for r in rows})
    moved: list[str] = []
    # Newest first, so a run of dropped commits hands its oldest parent down step by step.
    for row in sorted(rows, key=lambda r: r.seq, reverse=True):
        await store.reparent_children(session, row.id, row.parent)
        for branch in await store.branches_at(session, row.repo_id, row.id):
            branch.head = row.parent
            name = repo_names[row.repo_id]
            moved.append(f"{name}@{branch.name}")
            await outbox.add(
                session,
                BranchMoved(repo=name, branch=branch.name, head=row.parent, previous=row.id),
            )
        await store.delete_commit(session, row)
    dropped = [CommitRefModel(repo=repo_names[r.repo_id], commit=r.id) for r in rows]
    return dropped, moved


async def squash_range(
    session: AsyncSession, repo: RepoRow, oldest: CommitRow, newest: CommitRow
) -> list[str]:
    """The commits squashed into ``newest``: ``oldest`` up to ``newest``'s parent, following
    first parents; ``newest`` keeps its id and files and takes ``oldest``'s parent."""
    if oldest.id == newest.id:
        raise InvalidArgument("a range to squash needs at least two commits")
    chain: list[str] = []
    current = newest
    while current.parent is not None:
        parent = await store.commit_in(session, repo.id, current.parent)
        if parent is None:
            break
        chain.append(parent.id)
        if parent.id == oldest.id:
            return chain
        current = parent
    raise InvalidArgument(
        f"commit {oldest.id} is not an ancestor of {newest.id} in repo {repo.name!r}: "
        "squash takes OLDEST..NEWEST along one branch's history"
    )
