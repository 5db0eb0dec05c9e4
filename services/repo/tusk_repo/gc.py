"""Garbage collection: reclaim tree nodes, file records and chunks no commit reaches.

Mark and sweep. In one transaction that keeps writes waiting (``store.exclude_writes``):
retention rules drop old commits of non-default branches, every tree node reachable from a
commit (finished or open) is marked with the files it holds and the files staged in open
commits, and unmarked tree nodes and file records are deleted. Then, with writes flowing
again, chunks no remaining file uses are deleted from the object store — but only those
written longer ago than the grace period: an upload in flight writes its chunks before it
records its files, and relies only on chunks that young (see ``ChunkStore.reuse_within``).
A dry run does everything but commit and delete, so it reports exactly what a run would free.

Small files are packed several to a chunk, and a pack is freed only when none of its files is
used any more. So the mark also weighs each pack: one whose used bytes are below
``compact_below`` of its size has its used pieces copied into new packs and their file records
re-pointed (each only if it still points at the old pack), after which the old pack is
unreferenced; it is kept until the next collection (a read that found the old record just
before may still be fetching it) and then swept like any other chunk, grace period included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import structlog
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.db import Database
from tusk.errors import NotFound
from tusk.events.outbox import OutboxWriter
from tusk.objectstore import ObjectStore
from tusk.objectstore.chunks import ChunkedFile, ChunkStore, chunk_key, hash_bytes
from tusk_repo import history, store
from tusk_repo.schemas import CommitRefModel, GcReport
from tusk_repo.store import gc as gc_store
from tusk_repo.store import history as history_store
from tusk_repo.tables import RepoRow
from tusk_repo.trees import EMPTY_TREE, file_keys_of, node_refs

log = structlog.get_logger()

CHUNK_PREFIX = "chunks/"
DEFAULT_BRANCH = "master"
_DELETES_IN_FLIGHT = 32


class _DryRun(Exception):
    """Raised inside the transaction of a dry run so that it rolls back."""


@dataclass(frozen=True, slots=True)
class _Piece:
    """A used file packed in a shared chunk: its record as it is now."""

    file_hash: str
    offset: int
    size: int
    record: bytes


@dataclass
class _Marked:
    retention: list[CommitRefModel] = field(default_factory=list)
    tree_nodes: int = 0
    files: int = 0
    chunks: set[str] = field(default_factory=set)
    walk_seconds: float = 0.0  # reading the trees' references
    staged_leftovers: int = 0  # staged rows of finished commits, left by a crash
    # Seconds per step of the row phase, in order, for whoever tunes the collection.
    steps: dict[str, float] = field(default_factory=dict)
    # Packs mostly unused: pack hash → (its size, the pieces still used).
    sparse_packs: dict[str, tuple[int, list[_Piece]]] = field(default_factory=dict)

    @property
    def sparse_bytes(self) -> int:
        return sum(
            size - sum(p.size for p in pieces) for size, pieces in self.sparse_packs.values()
        )


class _StepClock:
    """Seconds between laps, recorded under each lap's name."""

    def __init__(self, steps: dict[str, float]) -> None:
        self.steps = steps
        self.last = time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.steps[name] = round(now - self.last, 3)
        self.last = now
        return self.steps[name]


class GarbageCollector:
    def __init__(
        self,
        db: Database,
        objects: ObjectStore,
        outbox: OutboxWriter,
        grace: timedelta,
        *,
        chunks: ChunkStore | None = None,
        compact_below: float = 0.5,
    ) -> None:
        self.db = db
        self.objects = objects
        self.outbox = outbox
        self.grace = grace
        self.chunks = chunks if chunks is not None else ChunkStore(objects)
        self.compact_below = compact_below
        self._running = asyncio.Lock()

    async def run(
        self,
        *,
        dry_run: bool = False,
        grace: timedelta | None = None,
        compact_below: float | None = None,
    ) -> GcReport:
        grace = self.grace if grace is None else grace
        compact_below = self.compact_below if compact_below is None else compact_below
        async with self._running:  # one run at a time per process; other processes wait on SQL
            began = time.perf_counter()
            started = datetime.now(UTC)
            marked = _Marked()
            try:
                async with (
                    self.db.session() as session,
                    gc_store.side_session(self.db, session) as side,
                ):
                    await store.exclude_writes(session)
                    marked.steps["lock"] = round(time.perf_counter() - began, 3)
                    marked.retention = await self._apply_retention(session, started)
                    await self._mark_and_sweep_rows(session, side, marked, compact_below)
                    if dry_run:
                        raise _DryRun  # through both sessions: each rolls back
            except _DryRun:
                pass
            rows_done = time.perf_counter()
            packs, pack_bytes = len(marked.sparse_packs), marked.sparse_bytes
            if not dry_run and marked.sparse_packs:
                packs, pack_bytes = await self._compact(marked)
            compacted = time.perf_counter()
            freed, freed_bytes, recent, referenced_bytes = await self._sweep_chunks(
                marked.chunks, started - grace, dry_run=dry_run
            )
            # Where the time went, for whoever tunes the collection or the grace period.
            phases = {
                "rows_seconds": round(rows_done - began, 3),
                "walk_seconds": round(marked.walk_seconds, 3),
                "compaction_seconds": round(compacted - rows_done, 3),
                "chunks_seconds": round(time.perf_counter() - compacted, 3),
                "row_steps": marked.steps,
                "staged_leftovers": marked.staged_leftovers,
            }
            report = GcReport(
                dry_run=dry_run,
                retention_commits=marked.retention,
                tree_nodes=marked.tree_nodes,
                files=marked.files,
                chunks=freed,
                bytes=freed_bytes,
                kept_recent_chunks=recent,
                referenced_chunks=len(marked.chunks),
                referenced_bytes=referenced_bytes,
                packs_compacted=packs,
                pack_bytes_reclaimed=pack_bytes,
                seconds=round(time.perf_counter() - began, 3),
            )
            log.info(
                "garbage counted (dry run)" if dry_run else "garbage collected",
                **report.model_dump(exclude={"retention_commits"}),
                retention_commits=len(report.retention_commits),
                **phases,
            )
            return report

    # --- retention -------------------------------------------------------------------------

    async def _apply_retention(self, session: AsyncSession, now: datetime) -> list[CommitRefModel]:
        dropped: list[CommitRefModel] = []
        for repo in await gc_store.repos_with_retention(session):
            candidates = await self._expired(session, repo, now)
            if not candidates:
                continue
            kept = await self._pinned(session, candidates)
            planned = await history.plan_drop(session, candidates - kept, cascade=False)
            if planned:
                done, _ = await history.drop(session, self.outbox, planned)
                dropped.extend(done)
        return dropped

    async def _expired(self, session: AsyncSession, repo: RepoRow, now: datetime) -> set[str]:
        """Commits of the repo's non-default branches that its retention rules let go."""
        commits = {row.id: row for row in await gc_store.commit_links(session, repo.id)}
        branches = await gc_store.branches_but(session, repo.id, DEFAULT_BRANCH)
        cutoff = now - timedelta(days=repo.keep_days) if repo.keep_days is not None else None
        expired: set[str] = set()
        for branch in branches:
            position, current = 0, branch.head
            while current is not None and current in commits:
                row = commits[current]
                if row.branch != branch.name:
                    break  # where the branch forked: older commits are another branch's
                beyond_last = repo.keep_last is None or position >= repo.keep_last
                too_old = cutoff is None or (
                    row.finished_at is not None and row.finished_at < cutoff
                )
                if position > 0 and row.state == "finished" and beyond_last and too_old:
                    expired.add(row.id)
                position += 1
                current = row.parent
        return expired

    async def _pinned(self, session: AsyncSession, ids: set[str]) -> set[str]:
        """Among ``ids``, commits retention leaves alone: branch heads, tagged commits and
        inputs of other commits (provenance must not dangle)."""
        pinned = await gc_store.heads_or_tagged(session, ids)
        pinned.update(commit for _, _, commit in await history_store.dependents(session, ids))
        return pinned

    # --- rows ------------------------------------------------------------------------------

    async def _mark_and_sweep_rows(
        self,
        session: AsyncSession,
        side: AsyncSession | None,
        marked: _Marked,
        compact_below: float,
    ) -> None:
        clock = _StepClock(marked.steps)
        marked.staged_leftovers = await gc_store.clear_finished_staged(session)
        clock.lap("staged_leftovers")
        roots: set[str] = set()
        # An open commit needs the tree it started from; a finished one only its own.
        for root, base, state in await gc_store.commit_trees(session):
            tree = root if state == "finished" else base
            if tree:
                roots.add(tree)
        clock.lap("commits")
        reachable_trees, reachable_keys = await _walk_trees(session, roots - {EMPTY_TREE})
        marked.walk_seconds = clock.lap("walk")
        staged = await gc_store.staged_put_hashes(session)
        reachable_trees.add(EMPTY_TREE)
        tree_garbage = [h for h in await gc_store.tree_hashes(session) if h not in reachable_trees]
        clock.lap("tree_hashes")
        marked.tree_nodes = len(tree_garbage)
        # Deleting a node deletes the tens of out-of-line rows that hold its entries: the
        # database's longest step. Where there is a side transaction, it does that while this
        # one weighs and deletes the file records. It commits before this one ends, so still
        # under the lock: no write can meanwhile have come to rely on a node being deleted,
        # and a node deleted is garbage whatever happens next.
        aside = (
            asyncio.create_task(gc_store.delete_trees(side, tree_garbage))
            if side is not None and tree_garbage
            else None
        )
        try:
            if aside is None:
                await gc_store.delete_trees(session, tree_garbage)
                clock.lap("delete_trees")
            file_rows = await gc_store.file_chunks(session)
            clock.lap("file_rows")
            in_trees = _referenced(reachable_keys, [digest for digest, _, _ in file_rows])
            file_garbage = _weigh_files(file_rows, in_trees, staged, marked, compact_below)
            marked.files = len(file_garbage)
            clock.lap("file_check")
            await gc_store.delete_files(session, file_garbage)
            clock.lap("delete_files")
        finally:
            if aside is not None:
                await aside  # its failure fails the run, after which this transaction rolls back
                clock.lap("delete_trees_wait")

    # --- compaction ------------------------------------------------------------------------

    async def _compact(self, marked: _Marked) -> tuple[int, int]:
        """Copy the used pieces of the sparse packs into new packs and re-point their files;
        (packs no file points at any more, the unused bytes they held). Runs with writes
        flowing: new packs are young, so no collection deletes them before they are used, and
        a file is re-pointed only if it still points at the old pack."""
        moved: dict[str, ChunkedFile] = {}
        gathered: dict[str, bytes] = {}
        gathered_bytes = 0
        for pack, (_, pieces) in marked.sparse_packs.items():
            try:
                data = await self.objects.get(chunk_key(pack))
            except NotFound:
                log.warning("a pack to compact is missing from the object store", chunk=pack)
                continue
            for piece in pieces:
                content = data[piece.offset : piece.offset + piece.size]
                if hash_bytes(content) != piece.file_hash:
                    log.error("a packed file does not match its hash", file=piece.file_hash)
                    continue
                gathered[piece.file_hash] = content
                gathered_bytes += piece.size
            if gathered_bytes >= self.chunks.chunk_size:  # memory stays about one pack's worth
                moved.update(await self.chunks.write_many(gathered))
                gathered, gathered_bytes = {}, 0
        if gathered:
            moved.update(await self.chunks.write_many(gathered))
        changes = [
            (piece.file_hash, piece.record, moved[piece.file_hash].encode_chunks())
            for _, pieces in marked.sparse_packs.values()
            for piece in pieces
            if piece.file_hash in moved
        ]
        async with self.db.session() as session:
            await gc_store.repoint_files(session, changes)
            now = await gc_store.file_records(session, [h for h, _, _ in changes])
        still_used: set[str] = set()
        for blob in now.values():
            hashes = [h for h, _ in ChunkedFile.decode_chunks(blob)]
            still_used.update(hashes)
            marked.chunks.update(hashes)  # the new packs, where the files went
        # The packs emptied stay in this run's marked set: a reader that loaded a file record
        # just before it was re-pointed may still fetch the old pack. The next collection finds
        # them unreferenced and deletes them.
        freed = [pack for pack in marked.sparse_packs if pack not in still_used]
        reclaimed = sum(
            size - sum(p.size for p in pieces)
            for pack, (size, pieces) in marked.sparse_packs.items()
            if pack in freed
        )
        log.info("packs compacted", packs=len(freed), files=len(changes), bytes=reclaimed)
        return len(freed), reclaimed

    # --- chunks ----------------------------------------------------------------------------

    async def _sweep_chunks(
        self, referenced: set[str], written_before: datetime, *, dry_run: bool
    ) -> tuple[int, int, int, int]:
        """(chunks deleted, their bytes, unreferenced chunks spared as too young, bytes of
        referenced chunks)."""
        doomed: list[tuple[str, int]] = []
        recent = referenced_bytes = 0
        async for info in self.objects.list_objects(CHUNK_PREFIX):
            digest = info.key.rpartition("/")[2]
            if digest in referenced:
                referenced_bytes += info.size
            elif info.modified >= written_before:
                recent += 1
            else:
                doomed.append((info.key, info.size))
        if not dry_run:
            slots = asyncio.Semaphore(_DELETES_IN_FLIGHT)

            async def remove(key: str) -> None:
                async with slots:
                    await self.objects.delete(key)

            async with asyncio.TaskGroup() as deletes:
                for key, _ in doomed:
                    deletes.create_task(remove(key))
        return len(doomed), sum(size for _, size in doomed), recent, referenced_bytes

    async def run_periodically(self, interval: float) -> None:
        """Collect every ``interval`` seconds until cancelled; a failed run is logged and the
        next one tried as usual."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run()
            except Exception:
                log.exception("garbage collection failed; trying again at the next interval")


async def _walk_trees(
    session: AsyncSession, roots: set[str]
) -> tuple[set[str], NDArray[np.uint64]]:
    """Every tree node reachable from ``roots``, and the keys (``trees.FILE_KEY_BYTES``) of
    the files they hold, sorted. Each node is read once, in batches, however many
    commits share it, and only its packed references are read: a node of a directory that
    changes often is a near copy of its previous versions, so the same files are met again
    and again, and decoding them each time was the bulk of a collection."""
    seen: set[str] = set(roots)
    keys: list[bytes] = []
    frontier = sorted(roots)
    while frontier:
        following: list[str] = []
        for subdirs, file_keys, blob in await gc_store.tree_refs(session, frontier):
            if subdirs is None or file_keys is None:  # saved before references were kept
                assert blob is not None
                subdirs, file_keys = node_refs(blob)
            keys.append(file_keys)
            for start in range(0, len(subdirs), 32):
                digest = subdirs[start : start + 32].hex()
                if digest not in seen:
                    seen.add(digest)
                    following.append(digest)
        frontier = following
    # Sorted, not made distinct: np.sort is a radix sort here, several times faster than
    # np.unique's, and a binary search finds a key among repeats as well.
    return seen, np.sort(np.frombuffer(b"".join(keys), dtype=np.uint64))


def _weigh_files(
    file_rows: Sequence[tuple[str, int, bytes]],
    in_trees: NDArray[np.bool_],
    staged: set[str],
    marked: _Marked,
    compact_below: float,
) -> list[str]:
    """The hashes of the file records nothing uses; the chunks of the others go into
    ``marked.chunks`` and the packs they use sparsely into ``marked.sparse_packs``.

    Files that share a chunk list share its encoding (all but a packed file's leading offset),
    so each distinct list is decoded once rather than once per file: a pack holds thousands of
    small files."""
    garbage: list[str] = []
    users: dict[bytes, list[int]] = {}  # encoded chunk list → the rows of the files using it
    rows_in_trees = zip(file_rows, in_trees.tolist(), strict=True)
    for index, ((digest, _, blob), in_tree) in enumerate(rows_in_trees):
        if not in_tree and digest not in staged:
            garbage.append(digest)
        else:
            users.setdefault(ChunkedFile.chunk_records(blob), []).append(index)
    single: list[tuple[str, int, list[int]]] = []  # (chunk, its size, rows) of one-chunk lists
    whole: set[str] = set()  # chunks some file uses entirely: never compacted
    for records, rows in users.items():
        chunks = ChunkedFile.decode_chunks(records)
        marked.chunks.update(h for h, _ in chunks)
        if len(chunks) == 1:
            single.append((chunks[0][0], chunks[0][1], rows))
        else:
            whole.update(h for h, _ in chunks)
    for pack, pack_size, rows in single:
        # A file smaller than its one chunk is a piece of a pack; one as large uses it whole.
        if pack in whole or any(file_rows[row][1] >= pack_size for row in rows):
            continue
        if sum(file_rows[row][1] for row in rows) >= compact_below * pack_size:
            continue
        pieces = []
        for row in rows:
            digest, size, blob = file_rows[row]
            stored = ChunkedFile.decode(digest, size, blob)
            pieces.append(_Piece(digest, stored.offset, size, blob))
        marked.sparse_packs[pack] = (pack_size, pieces)
    return garbage


def _referenced(keys: NDArray[np.uint64], digests: Sequence[str]) -> NDArray[np.bool_]:
    """For each file hash, whether its key is among ``keys``. Conservative: a file whose key
    a reachable file shares is kept (one chance in 2**64 per pair)."""
    wanted = np.frombuffer(file_keys_of(digests), dtype=np.uint64)
    if not len(keys):
        return np.zeros(len(wanted), dtype=np.bool_)
    # ``keys`` is sorted: a binary search per file, rather than np.isin sorting both again.
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    found: NDArray[np.bool_] = keys[at] == wanted
    return found
