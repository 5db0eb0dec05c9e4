"""SQL for commits and their provenance."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import delete, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from tusk import shortid
from tusk.db import insert_for
from tusk_repo.tables import CommitRow, ProvenanceRow, RepoRow

OPEN = "open"
# Ids per IN list: well under SQLite's and asyncpg's limits on bound parameters.
_IN_BATCH = 5000


async def by_id(session: AsyncSession, repo_id: int, commit_id: str) -> CommitRow | None:
    return await session.scalar(
        select(CommitRow).where(CommitRow.id == commit_id, CommitRow.repo_id == repo_id)
    )


async def expand_prefix(session: AsyncSession, repo_id: int, prefix: str) -> str | None:
    """The one commit id of the repo that starts with ``prefix`` (ambiguity is an error)."""
    return await shortid.expand(
        session, CommitRow.id, prefix, CommitRow.repo_id == repo_id, kind="commit"
    )


async def open_on(session: AsyncSession, repo_id: int, branch: str) -> CommitRow | None:
    return await session.scalar(
        select(CommitRow).where(
            CommitRow.repo_id == repo_id, CommitRow.branch == branch, CommitRow.state == OPEN
        )
    )


async def for_write(
    session: AsyncSession,
    repo_id: int,
    *,
    commit_id: str | None = None,
    open_on_branch: str | None = None,
    share_lock: bool = False,
) -> CommitRow | None:
    """The commit by id, or the branch's open commit; with ``share_lock`` share-locked
    (PostgreSQL), so that a finish, which takes the row exclusively, waits for the write."""
    query = select(CommitRow).where(CommitRow.repo_id == repo_id)
    if commit_id is not None:
        query = query.where(CommitRow.id == commit_id)
    else:
        query = query.where(CommitRow.branch == open_on_branch, CommitRow.state == OPEN)
    if share_lock:
        query = query.with_for_update(read=True)
    return await session.scalar(query)


async def lock(session: AsyncSession, commit: CommitRow) -> None:
    """Lock the row exclusively, then reload it: what it holds now is what counts."""
    await session.execute(select(CommitRow.seq).where(CommitRow.id == commit.id).with_for_update())
    await session.refresh(commit)


async def insert_open(
    session: AsyncSession,
    *,
    commit_id: str,
    repo_id: int,
    branch: str,
    parent: str | None,
    base_tree: str,
    global_id: str,
    description: str,
    started_at: datetime,
    opened_by: str | None,
) -> CommitRow | None:
    """None when the branch already has an open commit (its unique index turns the insert
    into no row, so racing starts never fail the transaction)."""
    return (
        await session.scalars(
            insert_for(session, CommitRow)
            .values(
                id=commit_id,
                repo_id=repo_id,
                branch=branch,
                parent=parent,
                state=OPEN,
                base_tree=base_tree,
                global_id=global_id,
                description=description,
                started_at=started_at,
                opened_by=opened_by,
            )
            .on_conflict_do_nothing()
            .returning(CommitRow)
        )
    ).first()


async def add_provenance(
    session: AsyncSession, commit_id: str, inputs: Iterable[tuple[str, str]]
) -> None:
    """``inputs``: (repo, commit) pairs, each recorded once."""
    session.add_all(
        ProvenanceRow(commit_id=commit_id, input_repo=repo, input_commit=commit)
        for repo, commit in dict.fromkeys(inputs)
    )
    await session.flush()


async def add_finished(
    session: AsyncSession, commit: CommitRow, inputs: Iterable[tuple[str, str]]
) -> None:
    """A commit made finished at once (a merge), with its provenance."""
    session.add(commit)
    await session.flush()
    await add_provenance(session, commit.id, inputs)


async def graph(
    session: AsyncSession, repo_id: int, state: str
) -> dict[str, tuple[str | None, str | None]]:
    """Each commit of the repo in that state: its (parent, merge parent)."""
    rows = await session.execute(
        select(CommitRow.id, CommitRow.parent, CommitRow.merge_parent).where(
            CommitRow.repo_id == repo_id, CommitRow.state == state
        )
    )
    return {cid: (parent, merge_parent) for cid, parent, merge_parent in rows.all()}


async def delete_commit(session: AsyncSession, commit_id: str) -> None:
    await session.execute(delete(CommitRow).where(CommitRow.id == commit_id))


async def provenance(
    session: AsyncSession, commit_ids: Collection[str]
) -> dict[str, list[tuple[str, str]]]:
    """Each commit's (input repo, input commit) pairs, sorted: one query per 5,000 commits,
    not one per commit."""
    out: dict[str, list[tuple[str, str]]] = {c: [] for c in commit_ids}
    ordered = sorted(out)
    for start in range(0, len(ordered), _IN_BATCH):
        rows = await session.execute(
            select(ProvenanceRow.commit_id, ProvenanceRow.input_repo, ProvenanceRow.input_commit)
            .where(ProvenanceRow.commit_id.in_(ordered[start : start + _IN_BATCH]))
            .order_by(ProvenanceRow.input_repo, ProvenanceRow.input_commit)
        )
        for commit_id, repo, commit in rows.all():
            out[commit_id].append((repo, commit))
    return out


async def subvenance(session: AsyncSession, commit_id: str) -> list[tuple[str, str]]:
    """(repo, commit) of every commit whose provenance names ``commit_id``."""
    rows = await session.execute(
        select(RepoRow.name, CommitRow.id)
        .join(CommitRow, CommitRow.repo_id == RepoRow.id)
        .join(ProvenanceRow, ProvenanceRow.commit_id == CommitRow.id)
        .where(ProvenanceRow.input_commit == commit_id)
        .order_by(CommitRow.seq)
    )
    return [(repo, commit) for repo, commit in rows.all()]


async def existing(
    session: AsyncSession, pairs: Collection[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of these (repo name, commit id) pairs name a commit of that repo."""
    if not pairs:
        return set()
    rows = await session.execute(
        select(RepoRow.name, CommitRow.id)
        .join(CommitRow, CommitRow.repo_id == RepoRow.id)
        .where(tuple_(RepoRow.name, CommitRow.id).in_(pairs))
    )
    return {(name, cid) for name, cid in rows.all()}


async def ancestry(session: AsyncSession, repo_id: int, start: str, limit: int) -> list[CommitRow]:
    """``start`` and its (first-parent) ancestors, newest first, at most ``limit`` of them, in
    one recursive query rather than one per generation."""
    chain = (
        select(CommitRow.id, CommitRow.parent, literal(0).label("depth"))
        .where(CommitRow.id == start, CommitRow.repo_id == repo_id)
        .cte("chain", recursive=True)
    )
    older = aliased(CommitRow)
    chain = chain.union_all(
        select(older.id, older.parent, chain.c.depth + 1)
        .join(chain, older.id == chain.c.parent)
        .where(older.repo_id == repo_id, chain.c.depth < limit - 1)
    )
    rows = await session.scalars(
        select(CommitRow).join(chain, CommitRow.id == chain.c.id).order_by(chain.c.depth)
    )
    return list(rows.all())


async def page(
    session: AsyncSession,
    repo_id: int,
    *,
    branch: str | None,
    state: str | None,
    limit: int,
    before_seq: int | None,
) -> list[CommitRow]:
    """Up to ``limit`` commits newest first, older than ``before_seq`` when given."""
    query = select(CommitRow).where(CommitRow.repo_id == repo_id)
    if branch is not None:
        query = query.where(CommitRow.branch == branch)
    if state is not None:
        query = query.where(CommitRow.state == state)
    if before_seq is not None:
        query = query.where(CommitRow.seq < before_seq)
    return list((await session.scalars(query.order_by(CommitRow.seq.desc()).limit(limit))).all())
