"""Editing history: deleting finished commits and squashing ranges of them.

A commit is a whole snapshot (a root hash), so dropping one never changes another's files: its
children are re-parented to its parent and a branch whose head it was moves to its parent.
What must not happen is provenance that names a dropped commit, so dropping refuses while
other commits derive from it, listing them, unless ``cascade`` drops those too (through the
whole DAG). Tags are immutable, so a tagged commit is never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.errors import Conflict, InvalidArgument
from tusk.events.outbox import OutboxWriter
from tusk.events.types import BranchMoved
from tusk_repo.schemas import CommitRefModel
from tusk_repo.tables import BranchRow, CommitRow, ProvenanceRow, RepoRow, TagRow

_BATCH = 1000


async def _dependents(session: AsyncSession, ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """(dependent commit, its repo, the input commit it names) for commits naming ``ids``."""
    ordered = sorted(set(ids))
    found: list[tuple[str, str, str]] = []
    for start in range(0, len(ordered), _BATCH):
        rows = await session.execute(
            select(ProvenanceRow.commit_id, RepoRow.name, ProvenanceRow.input_commit)
            .join(CommitRow, CommitRow.id == ProvenanceRow.commit_id)
            .join(RepoRow, RepoRow.id == CommitRow.repo_id)
            .where(ProvenanceRow.input_commit.in_(ordered[start : start + _BATCH]))
        )
        found.extend((c, r, i) for c, r, i in rows.all())
    return found


async def plan_drop(
    session: AsyncSession, commits: Iterable[str], *, cascade: bool
) -> list[CommitRow]:
    """The commits to drop: ``commits`` and, with ``cascade``, every commit downstream of them
    by provenance. Refuses (nothing dropped) when something would be left dangling."""
    wanted = set(commits)
    frontier = set(wanted)
    while frontier:
        dependents = [d for d in await _dependents(session, frontier) if d[0] not in wanted]
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
    rows = list(
        (await session.scalars(select(CommitRow).where(CommitRow.id.in_(sorted(wanted))))).all()
    )
    still_open = sorted(r.id for r in rows if r.state != "finished")
    if still_open:
        raise Conflict(
            f"commit(s) {', '.join(still_open[:10])} are still open: finish or abandon them first",
            open_commits=still_open[:100],
        )
    tags = (
        await session.execute(
            select(RepoRow.name, TagRow.name, TagRow.commit_id)
            .join(RepoRow, RepoRow.id == TagRow.repo_id)
            .where(TagRow.commit_id.in_(sorted(wanted)))
        )
    ).all()
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
    repo_names = dict(
        (
            await session.execute(
                select(RepoRow.id, RepoRow.name).where(RepoRow.id.in_({r.repo_id for r in rows}))
            )
        ).all()
    )
    moved: list[str] = []
    # Newest first, so a run of dropped commits hands its oldest parent down step by step.
    for row in sorted(rows, key=lambda r: r.seq, reverse=True):
        await session.execute(
            update(CommitRow).where(CommitRow.parent == row.id).values(parent=row.parent)
        )
        await session.execute(
            update(CommitRow)
            .where(CommitRow.merge_parent == row.id)
            .values(merge_parent=row.parent)
        )
        heads = (
            await session.scalars(
                select(BranchRow).where(BranchRow.repo_id == row.repo_id, BranchRow.head == row.id)
            )
        ).all()
        for branch in heads:
            branch.head = row.parent
            name = repo_names[row.repo_id]
            moved.append(f"{name}@{branch.name}")
            await outbox.add(
                session,
                BranchMoved(repo=name, branch=branch.name, head=row.parent, previous=row.id),
            )
        await session.delete(row)
        await session.flush()
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
        parent = await session.scalar(
            select(CommitRow).where(CommitRow.id == current.parent, CommitRow.repo_id == repo.id)
        )
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
