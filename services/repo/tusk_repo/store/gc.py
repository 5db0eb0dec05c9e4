"""SQL for garbage collection: what retention may drop, what is reachable, what is deleted.

The scans over every commit, tree node and file record read through the session's connection
rather than the ORM: they only need a few columns, and there may be millions of rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    any_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tusk.db import Database
from tusk_repo.tables import BranchRow, CommitRow, FileRow, RepoRow, StagedRow, TagRow, TreeRow

# Ids per IN list: well under SQLite's and asyncpg's limits on bound parameters.
_BATCH = 1000
# File records read at a time on PostgreSQL.
_FILE_PAGE = 250_000


def _batches(connection: AsyncConnection, keys: Sequence[str]) -> list[Sequence[str]]:
    """``keys`` in as few statements as the database takes: one on PostgreSQL (a single array
    parameter, planned once), IN lists of ``_BATCH`` on SQLite."""
    if connection.dialect.name == "postgresql":
        return [keys] if keys else []
    return [keys[start : start + _BATCH] for start in range(0, len(keys), _BATCH)]


def _among(
    connection: AsyncConnection,
    column: ColumnElement[str] | InstrumentedAttribute[str],
    keys: Sequence[str],
) -> ColumnElement[bool]:
    if connection.dialect.name == "postgresql":
        return column == any_(literal(list(keys), ARRAY(column.type)))
    return column.in_(keys)


def takes_parallel_writes(session: AsyncSession) -> bool:
    """Whether two write transactions can run at once (PostgreSQL, not SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


async def hold_connection(session: AsyncSession) -> None:
    """Take the session's connection now rather than at its first statement."""
    await session.connection()


@asynccontextmanager
async def side_session(
    db: Database | None, session: AsyncSession
) -> AsyncIterator[AsyncSession | None]:
    """A second write transaction beside ``session`` where the database runs two at once
    (PostgreSQL), else None. Its connection is taken now, so before the collection lock: taken
    under it, it could wait for one held by a write that waits for the lock. It ends (commits,
    or rolls back on an error) before ``session`` does."""
    if db is None or not takes_parallel_writes(session):
        yield None
        return
    async with db.session() as side:
        await hold_connection(side)
        yield side


async def repos_with_retention(session: AsyncSession) -> Sequence[RepoRow]:
    return (
        await session.scalars(
            select(RepoRow).where(
                or_(RepoRow.keep_days.is_not(None), RepoRow.keep_last.is_not(None))
            )
        )
    ).all()


async def commit_links(
    session: AsyncSession, repo_id: int
) -> Sequence[Row[str, str | None, str | None, str, datetime | None]]:
    """(id, parent, branch, state, finished_at) of every commit of the repo."""
    return (
        await session.execute(
            select(
                CommitRow.id,
                CommitRow.parent,
                CommitRow.branch,
                CommitRow.state,
                CommitRow.finished_at,
            ).where(CommitRow.repo_id == repo_id)
        )
    ).all()


async def branches_but(session: AsyncSession, repo_id: int, name: str) -> Sequence[BranchRow]:
    """The repo's branches other than ``name``."""
    return (
        await session.scalars(
            select(BranchRow).where(BranchRow.repo_id == repo_id, BranchRow.name != name)
        )
    ).all()


async def heads_or_tagged(session: AsyncSession, ids: Iterable[str]) -> set[str]:
    """Among ``ids``, the commits that are a branch's head or carry a tag."""
    ordered = sorted(ids)
    found: set[str] = set()
    for start in range(0, len(ordered), _BATCH):
        batch = ordered[start : start + _BATCH]
        found.update(await session.scalars(select(BranchRow.head).where(BranchRow.head.in_(batch))))
        found.update(
            await session.scalars(select(TagRow.commit_id).where(TagRow.commit_id.in_(batch)))
        )
    return found


async def commit_trees(session: AsyncSession) -> Sequence[Row[str | None, str, str]]:
    """(root_tree, base_tree, state) of every commit."""
    connection = await session.connection()
    return (
        await connection.execute(select(CommitRow.root_tree, CommitRow.base_tree, CommitRow.state))
    ).all()


async def tree_refs(
    session: AsyncSession, hashes: Sequence[str]
) -> list[tuple[bytes | None, bytes | None, bytes | None]]:
    """(packed subdirectory hashes, packed file keys, encoded entries) of the tree nodes
    ``hashes``; the entries only of a node whose references are not kept (NULL), so that a
    collection reads the entries of no other node."""
    connection = await session.connection()
    found: list[tuple[bytes | None, bytes | None, bytes | None]] = []
    entries_if_needed = case((TreeRow.subdirs.is_(None), TreeRow.entries), else_=None)
    for batch in _batches(connection, hashes):
        rows = await connection.execute(
            select(TreeRow.subdirs, TreeRow.file_keys, entries_if_needed).where(
                _among(connection, TreeRow.hash, batch)
            )
        )
        found.extend((subdirs, keys, blob) for subdirs, keys, blob in rows.all())
    return found


async def staged_put_hashes(session: AsyncSession) -> set[str]:
    """The file hashes staged (to be put) in open commits."""
    return {
        h
        for h in await session.scalars(
            select(StagedRow.file_hash)
            .join(CommitRow, CommitRow.id == StagedRow.commit_id)
            .where(StagedRow.op == "put", CommitRow.state == "open")
            .distinct()
        )
        if h
    }


async def clear_finished_staged(session: AsyncSession) -> int:
    """Delete staged rows left behind by finished commits (a finish clears them after its own
    transaction, so a crash in between leaves them); how many there were. Nothing reads them:
    staged rows are only read for an open commit, and a commit never opens again."""
    finished = select(CommitRow.id).where(CommitRow.state != "open")
    result = await session.execute(delete(StagedRow).where(StagedRow.commit_id.in_(finished)))
    return int(getattr(result, "rowcount", 0) or 0)


async def tree_hashes(session: AsyncSession) -> Sequence[str]:
    return (await session.scalars(select(TreeRow.hash))).all()


async def file_chunks(session: AsyncSession) -> list[tuple[str, int, bytes]]:
    """(hash, size, encoded chunk list) of every file record."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        rows = await connection.execute(select(FileRow.hash, FileRow.size, FileRow.chunks))
        return [(digest, size, blob) for digest, size, blob in rows.all()]
    # As three arrays a page: the driver builds the values in C, where a result row apiece
    # cost more than reading them. Pages keep each array far below PostgreSQL's 1 GB a value.
    found: list[tuple[str, int, bytes]] = []
    after = ""
    while True:
        page = (
            select(FileRow.hash, FileRow.size, FileRow.chunks)
            .where(FileRow.hash > after)
            .order_by(FileRow.hash)
            .limit(_FILE_PAGE)
            .subquery()
        )
        hashes, sizes, blobs = (
            await connection.execute(
                select(
                    func.array_agg(aggregate_order_by(page.c.hash, page.c.hash)),
                    func.array_agg(aggregate_order_by(page.c.size, page.c.hash)),
                    func.array_agg(aggregate_order_by(page.c.chunks, page.c.hash)),
                )
            )
        ).one()
        if not hashes:
            return found
        found.extend(zip(hashes, sizes, blobs, strict=True))
        if len(hashes) < _FILE_PAGE:
            return found
        after = hashes[-1]


async def repoint_files(session: AsyncSession, changes: Sequence[tuple[str, bytes, bytes]]) -> None:
    """For each (file hash, chunk list it had, chunk list it gets), change the record only if
    it still has the first: a record changed or deleted meanwhile is left alone."""
    statement = (
        update(FileRow)
        .where(FileRow.hash == bindparam("h"), FileRow.chunks == bindparam("old"))
        .values(chunks=bindparam("new"))
    )
    rows = [{"h": h, "old": old, "new": new} for h, old, new in changes]
    connection = await session.connection()
    for start in range(0, len(rows), _BATCH):
        await connection.execute(statement, rows[start : start + _BATCH])


async def file_records(session: AsyncSession, hashes: Sequence[str]) -> dict[str, bytes]:
    """The encoded chunk lists of the file records among ``hashes`` that exist."""
    connection = await session.connection()
    found: dict[str, bytes] = {}
    for start in range(0, len(hashes), _BATCH):
        rows = await connection.execute(
            select(FileRow.hash, FileRow.chunks).where(
                FileRow.hash.in_(hashes[start : start + _BATCH])
            )
        )
        for digest, blob in rows.all():
            found[digest] = blob
    return found


async def delete_trees(session: AsyncSession, hashes: Iterable[str]) -> None:
    await _delete_in(session, TreeRow.__table__, hashes)  # type: ignore[arg-type]


async def delete_files(session: AsyncSession, hashes: Iterable[str]) -> None:
    await _delete_in(session, FileRow.__table__, hashes)  # type: ignore[arg-type]


async def _delete_in(session: AsyncSession, table: Table, keys: Iterable[str]) -> None:
    """Delete the rows whose ``hash`` is among ``keys``."""
    connection = await session.connection()
    for batch in _batches(connection, sorted(keys)):
        await connection.execute(delete(table).where(_among(connection, table.c.hash, batch)))
