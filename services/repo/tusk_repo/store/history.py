"""SQL for editing history: what derives from commits, what pins them, and re-linking the
commits and branches around one being dropped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tusk_repo.tables import BranchRow, CommitRow, ProvenanceRow, RepoRow, TagRow

# Ids per IN list: well under SQLite's and asyncpg's limits on bound parameters.
_BATCH = 1000


async def dependents(session: AsyncSession, ids: Iterable[str]) -> list[tuple[str, str, str]]:
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


async def commits_by_id(session: AsyncSession, ids: Iterable[str]) -> list[CommitRow]:
    return list(
        (await session.scalars(select(CommitRow).where(CommitRow.id.in_(sorted(ids))))).all()
    )


async def tags_on(session: AsyncSession, ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """(repo, tag, commit) for the tags naming ``ids``."""
    rows = await session.execute(
        select(RepoRow.name, TagRow.name, TagRow.commit_id)
        .join(RepoRow, RepoRow.id == TagRow.repo_id)
        .where(TagRow.commit_id.in_(sorted(ids)))
    )
    return [(repo, tag, commit) for repo, tag, commit in rows.all()]


async def repo_names(session: AsyncSession, repo_ids: Iterable[int]) -> dict[int, str]:
    rows = await session.execute(
        select(RepoRow.id, RepoRow.name).where(RepoRow.id.in_(set(repo_ids)))
    )
    return dict(rows.all())


async def reparent_children(session: AsyncSession, commit: str, parent: str | None) -> None:
    """Children (first-parent and merge-parent) of ``commit`` take ``parent`` instead."""
    await session.execute(update(CommitRow).where(CommitRow.parent == commit).values(parent=parent))
    await session.execute(
        update(CommitRow).where(CommitRow.merge_parent == commit).values(merge_parent=parent)
    )


async def branches_at(session: AsyncSession, repo_id: int, commit: str) -> Sequence[BranchRow]:
    return (
        await session.scalars(
            select(BranchRow).where(BranchRow.repo_id == repo_id, BranchRow.head == commit)
        )
    ).all()


async def delete_commit(session: AsyncSession, row: CommitRow) -> None:
    await session.delete(row)
    await session.flush()


async def commit_in(session: AsyncSession, repo_id: int, commit: str) -> CommitRow | None:
    return await session.scalar(
        select(CommitRow).where(CommitRow.id == commit, CommitRow.repo_id == repo_id)
    )
