"""SQL for file contents, tree nodes and staged changes, plus the tree-node cache.

Tree nodes are immutable (keyed by their hash), so the cache needs no invalidation: it only
bounds memory by the number of entries it holds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, any_, delete, func, literal, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler

from tusk.db import insert_for
from tusk.errors import NotFound
from tusk.objectstore.chunks import ChunkedFile
from tusk_repo.tables import CommitRow, FileRow, StagedRow, TreeRow
from tusk_repo.trees import (
    EMPTY_NODE,
    EMPTY_TREE,
    Loader,
    ManyLoader,
    Node,
    decode_node,
    node_refs,
)

_INSERT_BATCH = 5000
# Hashes per IN list on SQLite: below the 999 bound parameters of its older builds.
_SQLITE_IN_LIST = 900
# The key of the PostgreSQL advisory lock between garbage collection and writes.
_COLLECTION_LOCK = 0x7475736B_6763  # "tuskgc"


async def hold_off_collection(session: AsyncSession) -> None:
    """Keep garbage collection from deciding what is unreferenced until this transaction ends.

    Writes that add references (staging files, finishing or merging commits) take this shared
    lock; collection takes it exclusively while it marks and deletes rows, so it never sees a
    write half done. On SQLite, write transactions already run one at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _COLLECTION_LOCK}
        )


async def exclude_writes(session: AsyncSession) -> None:
    """Wait for writes in flight and keep new ones waiting until this transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _COLLECTION_LOCK})


class TreeStore:
    def __init__(self, max_cached_entries: int = 2_000_000) -> None:
        self._cache: OrderedDict[str, Node] = OrderedDict()
        self._cached_entries = 0
        self._max_entries = max_cached_entries

    def loader(self, session: AsyncSession, overlay: dict[str, bytes] | None = None) -> Loader:
        """A loader reading ``overlay`` (nodes not saved yet) first, then the cache, then SQL."""

        async def load(digest: str) -> Node:
            if overlay and digest in overlay:
                return decode_node(overlay[digest])
            return await self.load(session, digest)

        return load

    def many_loader(
        self, session: AsyncSession, overlay: dict[str, bytes] | None = None
    ) -> ManyLoader:
        """As ``loader``, for many nodes at once: those not in the overlay or the cache are read
        in one query (a few on SQLite, whose statements take a bounded number of parameters)."""

        async def load_many(digests: Collection[str]) -> Mapping[str, Node]:
            found: dict[str, Node] = {}
            rest = []
            for digest in digests:
                if overlay and digest in overlay:
                    found[digest] = decode_node(overlay[digest])
                else:
                    rest.append(digest)
            found.update(await self.load_many(session, rest))
            return found

        return load_many

    def blob_loader(
        self, session: AsyncSession, overlay: dict[str, bytes] | None = None
    ) -> Callable[[Collection[str]], Awaitable[Mapping[str, bytes]]]:
        """Nodes as stored (encoded), many at once, for comparisons that decode only what
        differs: read in one query per batch like ``many_loader``, and not decoded or cached.
        Read from SQL even when the node cache holds them: re-encoding a cached node of ten
        thousand entries costs several times what reading its stored bytes does."""

        async def load_blobs(digests: Collection[str]) -> Mapping[str, bytes]:
            found: dict[str, bytes] = {}
            missing: list[str] = []
            for digest in digests:
                if overlay and digest in overlay:
                    found[digest] = overlay[digest]
                else:
                    missing.append(digest)
            found.update(await self._read_blobs(session, missing))
            return found

        return load_blobs

    async def _read_blobs(self, session: AsyncSession, digests: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        if not digests:
            return found
        connection = await session.connection()
        for wanted in _hashes_in(connection, digests):
            rows = await connection.execute(select(TreeRow.hash, TreeRow.entries).where(wanted))
            for digest, blob in rows.all():
                found[digest] = blob
        for digest in digests:
            if digest not in found:
                if digest != EMPTY_TREE:
                    raise NotFound(f"tree node {digest} is missing")
                found[digest] = EMPTY_NODE
        return found

    async def load_many(self, session: AsyncSession, digests: Iterable[str]) -> dict[str, Node]:
        found: dict[str, Node] = {}
        missing: list[str] = []
        for digest in digests:
            node = self._cache.get(digest)
            if node is not None:
                self._cache.move_to_end(digest)
                found[digest] = node
            else:
                missing.append(digest)
        # Core, not the ORM, and only the two columns: a level may hold hundreds of nodes of
        # ten thousand entries each.
        for digest, blob in (await self._read_blobs(session, missing)).items():
            node = found[digest] = decode_node(blob)
            self._remember(digest, node)
        return found

    async def load(self, session: AsyncSession, digest: str) -> Node:
        node = self._cache.get(digest)
        if node is not None:
            self._cache.move_to_end(digest)
            return node
        blob = await session.scalar(select(TreeRow.entries).where(TreeRow.hash == digest))
        if blob is None:
            if digest == EMPTY_TREE:
                blob = EMPTY_NODE
            else:
                raise NotFound(f"tree node {digest} is missing")
        node = decode_node(blob)
        self._remember(digest, node)
        return node

    def _remember(self, digest: str, node: Node) -> None:
        self._cache[digest] = node
        self._cached_entries += len(node) + 1
        while self._cached_entries > self._max_entries and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached_entries -= len(old) + 1

    async def stored_refs(
        self, session: AsyncSession, digests: Collection[str]
    ) -> dict[str, tuple[bytes, bytes]]:
        """The packed references (``node_refs``) saved with these nodes, where they were."""
        if not digests:
            return {}
        connection = await session.connection()
        found: dict[str, tuple[bytes, bytes]] = {}
        for wanted in _hashes_in(connection, list(digests)):
            rows = await connection.execute(
                select(TreeRow.hash, TreeRow.subdirs, TreeRow.file_keys).where(
                    wanted, TreeRow.subdirs.is_not(None), TreeRow.file_keys.is_not(None)
                )
            )
            for digest, subdirs, keys in rows.all():
                if subdirs is not None and keys is not None:  # as the query asks: for the types
                    found[digest] = (subdirs, keys)
        return found

    async def save(
        self,
        session: AsyncSession,
        nodes: dict[str, bytes],
        refs: Mapping[str, tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Insert ``nodes`` (hash → encoding) that are not stored yet, each with its packed
        references: from ``refs`` where given (they must be ``node_refs`` of the node), else
        found in the encoding."""
        rows = [
            {"hash": h, "entries": blob, "subdirs": subdirs, "file_keys": keys}
            for h, blob in nodes.items()
            for subdirs, keys in ((refs or {}).get(h) or node_refs(blob),)
        ]
        for start in range(0, len(rows), _INSERT_BATCH):
            stmt = insert_for(session, TreeRow.__table__).on_conflict_do_nothing(
                index_elements=["hash"]
            )
            await session.execute(stmt, rows[start : start + _INSERT_BATCH])


async def save_files(session: AsyncSession, files: Iterable[ChunkedFile]) -> None:
    rows = list(
        {
            f.hash: {"hash": f.hash, "size": f.size, "chunks": f.encode_chunks()} for f in files
        }.values()
    )
    for start in range(0, len(rows), _INSERT_BATCH):
        stmt = insert_for(session, FileRow.__table__).on_conflict_do_nothing(
            index_elements=["hash"]
        )
        await session.execute(stmt, rows[start : start + _INSERT_BATCH])


async def load_file(session: AsyncSession, digest: str) -> ChunkedFile:
    row = (
        await session.execute(select(FileRow).where(FileRow.hash == digest))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"file contents {digest} are missing")
    return ChunkedFile.decode(row.hash, row.size, row.chunks)


async def load_files(session: AsyncSession, digests: set[str]) -> dict[str, ChunkedFile]:
    found: dict[str, ChunkedFile] = {}
    ordered = sorted(digests)
    for start in range(0, len(ordered), _INSERT_BATCH):
        rows = await session.execute(
            select(FileRow).where(FileRow.hash.in_(ordered[start : start + _INSERT_BATCH]))
        )
        for row in rows.scalars():
            found[row.hash] = ChunkedFile.decode(row.hash, row.size, row.chunks)
    return found


def _under(path: str) -> object:
    """Rows at ``path`` or beneath it; a range on the key instead of LIKE, so no escaping."""
    if path == "/":
        return StagedRow.path.is_not(None)
    return or_(
        StagedRow.path == path,
        and_(StagedRow.path >= path + "/", StagedRow.path < path + "0"),  # '0' follows '/'
    )


async def stage_puts(
    session: AsyncSession, commit_id: str, puts: Sequence[tuple[str, ChunkedFile]]
) -> None:
    await save_files(session, (f for _, f in puts))
    latest = dict(puts)  # a path put twice in one batch keeps the last
    rows = [
        {"commit_id": commit_id, "path": p, "op": "put", "file_hash": f.hash, "size": f.size}
        for p, f in latest.items()
    ]
    for start in range(0, len(rows), _INSERT_BATCH):
        stmt = insert_for(session, StagedRow.__table__)
        stmt = stmt.on_conflict_do_update(
            index_elements=["commit_id", "path", "op"],
            set_={"file_hash": stmt.excluded.file_hash, "size": stmt.excluded.size},
        )
        await session.execute(stmt, rows[start : start + _INSERT_BATCH])


async def stage_delete(session: AsyncSession, commit_id: str, path: str) -> None:
    # Earlier staged changes at or under the path are superseded by the delete.
    await session.execute(
        delete(StagedRow).where(StagedRow.commit_id == commit_id, _under(path))  # type: ignore[arg-type]
    )
    session.add(StagedRow(commit_id=commit_id, path=path, op="del", file_hash=None, size=0))
    await session.flush()


async def has_staged_put_under(session: AsyncSession, commit_id: str, path: str) -> bool:
    found = await session.scalar(
        select(StagedRow.path)
        .where(StagedRow.commit_id == commit_id, StagedRow.op == "put", _under(path))  # type: ignore[arg-type]
        .limit(1)
    )
    return found is not None


async def staged_changes(
    session: AsyncSession, commit_id: str, *, reaching: str = "/"
) -> tuple[Sequence[str], Sequence[tuple[str, str, int]]]:
    """The commit's staged deletes and puts; with ``reaching``, only those that can change
    what is at that path or below it: on the path, beneath it, or on one of its ancestors."""
    # Rows come by the hundred thousand: read through the driver (see ``_driver_rows``), and
    # deletes apart from puts, so that the puts are handed on as the driver's rows with no
    # Python loop over them.
    scope = [StagedRow.commit_id == commit_id]
    if reaching != "/":
        parts = reaching.split("/")[1:]
        ancestors = ["/"] + ["/" + "/".join(parts[:n]) for n in range(1, len(parts))]
        scope.append(
            or_(
                StagedRow.path == reaching,
                StagedRow.path.startswith(reaching + "/", autoescape=True),
                StagedRow.path.in_(ancestors),
            )
        )
    deletes = [
        path
        for (path,) in await _driver_rows(
            session, select(StagedRow.path).where(*scope, StagedRow.op == "del")
        )
    ]
    puts: list[tuple[str, str, int]] = await _driver_rows(
        session,
        select(StagedRow.path, func.coalesce(StagedRow.file_hash, ""), StagedRow.size).where(
            *scope, StagedRow.op == "put"
        ),
    )
    return deletes, puts


async def _driver_rows(session: AsyncSession, query: ClauseElement) -> list[Any]:
    """The rows of ``query``, in the session's transaction, as the driver gives them (tuples
    from sqlite3, records from asyncpg), without SQLAlchemy's result handling: for 100,000
    staged rows that handling cost as much again as the query (0.13 s of CPU on SQLite), and
    the garbage collections its objects set off slowed what came after."""
    connection = await session.connection()
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    assert isinstance(compiled, SQLCompiler)
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    if connection.dialect.name == "postgresql":
        return list(await driver.fetch(str(compiled), *params))
    return list(await driver.execute_fetchall(str(compiled), params))


async def finished_with_staged(session: AsyncSession) -> list[str]:
    """The finished commits that still have staged rows (see ``tusk_repo.staging``)."""
    with_rows = select(StagedRow.commit_id).distinct().scalar_subquery()
    return list(
        await session.scalars(
            select(CommitRow.id).where(CommitRow.state != "open", CommitRow.id.in_(with_rows))
        )
    )


async def clear_staged(session: AsyncSession, commit_id: str, *, limit: int | None = None) -> int:
    """Delete the commit's staged rows, or about its first ``limit`` in key order (a range of
    the key, found by one index lookup, so that each batch costs what its rows do); how many
    were deleted: fewer than ``limit`` only when none are left."""
    scope = StagedRow.commit_id == commit_id
    if limit is not None:
        last = await session.scalar(
            select(StagedRow.path).where(scope).order_by(StagedRow.path).offset(limit - 1).limit(1)
        )
        if last is not None:
            scope = and_(scope, StagedRow.path <= last)
    result = await session.execute(delete(StagedRow).where(scope))
    return int(getattr(result, "rowcount", 0) or 0)


def _hashes_in(connection: AsyncConnection, digests: list[str]) -> Iterator[ColumnElement[bool]]:
    """``TreeRow.hash`` among ``digests``, as one condition per query: all of them at once on
    PostgreSQL (one array parameter), a bounded ``IN`` list at a time on SQLite."""
    if connection.dialect.name == "postgresql":
        yield TreeRow.hash == any_(literal(digests, ARRAY(TreeRow.hash.type)))
        return
    for start in range(0, len(digests), _SQLITE_IN_LIST):
        yield TreeRow.hash.in_(digests[start : start + _SQLITE_IN_LIST])
