"""SQL for repos, their branches and their tags."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.db import insert_if_absent
from tusk_repo.tables import BranchRow, CommitRow, ProvenanceRow, RepoRow, TagRow


@dataclass
class RepoSummary:
    """What a repo's listing shows beyond its own row."""

    branches: list[str] = field(default_factory=list)
    size_bytes: int = 0
    commit_count: int = 0


async def insert_repo(
    session: AsyncSession,
    name: str,
    description: str,
    created_at: datetime,
    owner_pipeline: str | None,
) -> bool:
    """False when a repo of that name exists (racing creators learn it without an error)."""
    return await insert_if_absent(
        session,
        RepoRow.__table__,
        {
            "name": name,
            "description": description,
            "created_at": created_at,
            "owner_pipeline": owner_pipeline,
        },
    )


async def repo_named(session: AsyncSession, name: str) -> RepoRow | None:
    return await session.scalar(select(RepoRow).where(RepoRow.name == name))


async def all_repos(session: AsyncSession) -> list[RepoRow]:
    return list((await session.scalars(select(RepoRow).order_by(RepoRow.name))).all())


async def summaries(
    session: AsyncSession, repo_ids: Collection[int] | None = None
) -> dict[int, RepoSummary]:
    """Branch names, master's size and commit count of these repos (every repo with None),
    in three queries whatever their number."""
    out: dict[int, RepoSummary] = {}

    def summary(repo_id: int) -> RepoSummary:
        return out.setdefault(repo_id, RepoSummary())

    branches = select(BranchRow.repo_id, BranchRow.name).order_by(BranchRow.repo_id, BranchRow.name)
    sizes = (
        select(BranchRow.repo_id, CommitRow.size_bytes)
        .join(CommitRow, CommitRow.id == BranchRow.head)
        .where(BranchRow.name == "master")
    )
    counts = select(CommitRow.repo_id, func.count()).group_by(CommitRow.repo_id)
    if repo_ids is not None:
        wanted = sorted(repo_ids)
        branches = branches.where(BranchRow.repo_id.in_(wanted))
        sizes = sizes.where(BranchRow.repo_id.in_(wanted))
        counts = counts.where(CommitRow.repo_id.in_(wanted))
    for repo_id, name in (await session.execute(branches)).all():
        summary(repo_id).branches.append(name)
    for repo_id, size in (await session.execute(sizes)).all():
        summary(repo_id).size_bytes = size or 0
    for repo_id, count in (await session.execute(counts)).all():
        summary(repo_id).commit_count = count
    return out


async def dependent_repos(session: AsyncSession, repo: RepoRow) -> list[str]:
    """Other repos holding commits whose provenance names ``repo``."""
    rows = await session.scalars(
        select(RepoRow.name)
        .join(CommitRow, CommitRow.repo_id == RepoRow.id)
        .join(ProvenanceRow, ProvenanceRow.commit_id == CommitRow.id)
        .where(ProvenanceRow.input_repo == repo.name, RepoRow.id != repo.id)
        .distinct()
    )
    return sorted(rows.all())


async def delete_repo(session: AsyncSession, repo: RepoRow) -> None:
    await session.delete(repo)
    await session.flush()


# --- branches ------------------------------------------------------------------------------


async def branch(session: AsyncSession, repo_id: int, name: str) -> BranchRow | None:
    return await session.get(BranchRow, (repo_id, name))


async def has_branch_named(session: AsyncSession, repo_id: int, name: str) -> bool:
    """Like :func:`branch`, but never a row from the session's identity map: a query."""
    found = await session.scalar(
        select(BranchRow.name).where(BranchRow.repo_id == repo_id, BranchRow.name == name)
    )
    return found is not None


async def branches(session: AsyncSession, repo_id: int) -> list[BranchRow]:
    rows = await session.scalars(
        select(BranchRow).where(BranchRow.repo_id == repo_id).order_by(BranchRow.name)
    )
    return list(rows.all())


async def insert_branch(
    session: AsyncSession, repo_id: int, name: str, head: str | None, created_at: datetime
) -> bool:
    """False when the branch exists (racing creators both succeed in making it exist)."""
    return await insert_if_absent(
        session,
        BranchRow.__table__,
        {"repo_id": repo_id, "name": name, "head": head, "created_at": created_at},
    )


async def delete_branch(session: AsyncSession, row: BranchRow) -> None:
    await session.delete(row)
    await session.flush()


async def branch_head(session: AsyncSession, repo_id: int, name: str) -> str | None:
    return await session.scalar(
        select(BranchRow.head).where(BranchRow.repo_id == repo_id, BranchRow.name == name)
    )


async def set_branch_head(session: AsyncSession, repo_id: int, name: str, head: str) -> None:
    await session.execute(
        update(BranchRow)
        .where(BranchRow.repo_id == repo_id, BranchRow.name == name)
        .values(head=head)
    )


async def lock_branch(session: AsyncSession, row: BranchRow) -> None:
    """Lock the branch's row and reload it: two merges into one branch must not both read the
    same head."""
    await session.refresh(row, with_for_update=True)


async def branches_heading_at(
    session: AsyncSession, repo_id: int, commit_ids: Collection[str]
) -> list[str]:
    """The names of the repo's branches whose head is one of these commits."""
    rows = await session.scalars(
        select(BranchRow.name).where(
            BranchRow.repo_id == repo_id, BranchRow.head.in_(sorted(commit_ids))
        )
    )
    return sorted(rows.all())


# --- tags ----------------------------------------------------------------------------------


async def tag(session: AsyncSession, repo_id: int, name: str) -> TagRow | None:
    return await session.get(TagRow, (repo_id, name))


async def tags(session: AsyncSession, repo_id: int) -> list[TagRow]:
    rows = await session.scalars(
        select(TagRow).where(TagRow.repo_id == repo_id).order_by(TagRow.name)
    )
    return list(rows.all())


async def insert_tag(
    session: AsyncSession, repo_id: int, name: str, commit_id: str, created_at: datetime
) -> bool:
    """False when the repo has a tag of that name (tags are immutable)."""
    return await insert_if_absent(
        session,
        TagRow.__table__,
        {"repo_id": repo_id, "name": name, "commit_id": commit_id, "created_at": created_at},
    )
