"""Tags, merges, history edits, protection and retention settings: the repo service's logic
for a repo's life after its first commits. Like ``RepoService``, every method takes the
caller's session and only flushes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.db import Database
from tusk.errors import AlreadyExists, Conflict
from tusk.events.outbox import OutboxWriter
from tusk.events.types import BranchMoved, CommitFinished, CommitRef, CommitStarted
from tusk.paths import validate_branch_name
from tusk_repo import history, merging, protection, store, trees
from tusk_repo.protection import Writer
from tusk_repo.schemas import (
    DroppedCommits,
    MergeConflict,
    MergeInfo,
    MergeRequest,
    RetentionRules,
    TagInfo,
)
from tusk_repo.service import FINISHED, RepoService
from tusk_repo.store import commits as commit_store
from tusk_repo.store import gc as gc_store
from tusk_repo.store import repos as repo_store
from tusk_repo.tables import BranchRow, CommitRow, RepoRow

log = structlog.get_logger()


def _now() -> datetime:
    return datetime.now(UTC)


# Merged nodes to save: hash → (encoding, how it was spliced from ours if it was).
_Made = dict[str, tuple[bytes, merging.Splice | None]]


class _NodeWriter:
    """Saves a merge's nodes as they are made, while the walk goes on: each statement takes
    the nodes made since the one before began (one statement in flight on its session)."""

    def __init__(self, save: Callable[[_Made], Awaitable[None]]) -> None:
        self._save = save
        self._waiting: _Made = {}
        self.saved: set[str] = set()
        self._tasks: list[asyncio.Future[None]] = []

    def add(self, digest: str, blob: bytes, splice: merging.Splice | None) -> None:
        if digest in self.saved or digest in self._waiting:
            return
        self._waiting[digest] = (blob, splice)
        if not self._tasks or self._tasks[-1].done():
            self._tasks.append(asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            self.saved.update(batch)
            await self._save(batch)

    async def finish(self) -> None:
        """Wait for the statements in flight; raises a failed one's error."""
        await asyncio.gather(*self._tasks)

    async def settle(self) -> None:
        """Wait for the statements in flight without raising: when the merge is given up they
        end before its transaction rolls back."""
        if self._tasks:
            await asyncio.wait(self._tasks)


class LifecycleService:
    def __init__(
        self, repos: RepoService, outbox: OutboxWriter, db: Database | None = None
    ) -> None:
        self.repos = repos
        self.outbox = outbox
        self.db = db  # for a second transaction beside a request's, where the database has it

    # --- tags --------------------------------------------------------------------------------

    async def create_tag(
        self, session: AsyncSession, repo: RepoRow, name: str, ref: str
    ) -> TagInfo:
        validate_branch_name(name)
        if await repo_store.branch(session, repo.id, name) is not None:
            raise AlreadyExists(
                f"repo {repo.name!r} has a branch named {name!r}; a tag needs another name"
            )
        commit = await self.repos.resolve_commit(session, repo, ref, finished=True)
        created = _now()
        if not await repo_store.insert_tag(session, repo.id, name, commit.id, created):
            existing = await repo_store.tag(session, repo.id, name)
            target = existing.commit_id if existing else "another commit"
            raise AlreadyExists(
                f"tag {name!r} of repo {repo.name!r} already names {target}; tags are immutable",
                commit=target,
            )
        return TagInfo(repo=repo.name, name=name, commit=commit.id, created_at=created)

    async def list_tags(self, session: AsyncSession, repo: RepoRow) -> list[TagInfo]:
        rows = await repo_store.tags(session, repo.id)
        return [
            TagInfo(repo=repo.name, name=t.name, commit=t.commit_id, created_at=t.created_at)
            for t in rows
        ]

    # --- protection and retention -----------------------------------------------------------

    async def protect_branch(
        self, session: AsyncSession, repo: RepoRow, name: str, protected: bool
    ) -> BranchRow:
        branch = await self.repos.get_branch(session, repo, name)
        branch.protected = protected
        await session.flush()
        return branch

    async def set_retention(
        self, session: AsyncSession, repo: RepoRow, rules: RetentionRules
    ) -> RepoRow:
        repo.keep_days = rules.keep_days
        repo.keep_last = rules.keep_last
        await session.flush()
        return repo

    async def set_owner(self, session: AsyncSession, repo: RepoRow, pipeline: str | None) -> None:
        repo.owner_pipeline = pipeline
        await session.flush()

    # --- merges -----------------------------------------------------------------------------

    async def merge(self, session: AsyncSession, repo: RepoRow, request: MergeRequest) -> MergeInfo:
        # The nodes are written on a second transaction while the walk reads and compares, where
        # the database allows it; committed before ``session``, so they exist before the commit
        # that refers to them, rolled back with a refused merge.
        async with gc_store.side_session(self.db, session) as side:
            return await self._merge(session, side, repo, request)

    async def _merge(
        self,
        session: AsyncSession,
        side: AsyncSession | None,
        repo: RepoRow,
        request: MergeRequest,
    ) -> MergeInfo:
        await store.hold_off_collection(session)
        protection.check_open(repo, None, Writer(admin_override=request.admin_override))
        source = await self.repos.resolve_commit(session, repo, request.source, finished=True)
        branch = await self.repos.get_branch(session, repo, request.into)
        # The row lock keeps two merges into one branch from both reading the same head.
        await repo_store.lock_branch(session, branch)
        if await self.repos._open_commit_on(session, repo, branch.name) is not None:
            raise Conflict(
                f"branch {branch.name!r} of repo {repo.name!r} has an open commit; finish or "
                "abandon it before merging into it"
            )
        if branch.head is None or branch.head == source.id:
            outcome = "up-to-date" if branch.head == source.id else "fast-forward"
            if outcome == "fast-forward":
                await self._fast_forward(session, repo, branch, source)
            return MergeInfo(
                outcome=outcome, commit=source.id, branch=branch.name, source=source.id
            )
        graph = await _commit_graph(session, repo)
        source_ancestors = _ancestors(graph, source.id)
        if branch.head in source_ancestors:
            await self._fast_forward(session, repo, branch, source)
            return MergeInfo(
                outcome="fast-forward", commit=source.id, branch=branch.name, source=source.id
            )
        head_ancestors = _ancestors(graph, branch.head)
        if source.id in head_ancestors:
            return MergeInfo(
                outcome="up-to-date", commit=branch.head, branch=branch.name, source=source.id
            )
        base_id = _merge_base(graph, branch.head, source_ancestors)
        head = await self.repos._commit_by_id(session, repo, branch.head)
        base_root = trees.EMPTY_TREE
        if base_id is not None:
            base_root = (
                await self.repos._commit_by_id(session, repo, base_id)
            ).root_tree or base_root
        assert head.root_tree is not None
        assert source.root_tree is not None
        began = time.perf_counter()
        load_blobs = self.repos.trees.blob_loader(session)
        read_seconds, read_bytes = 0.0, 0

        async def load_timed(digests: Collection[str]) -> Mapping[str, bytes]:
            nonlocal read_seconds, read_bytes
            started = time.perf_counter()
            found = await load_blobs(digests)
            read_seconds += time.perf_counter() - started
            read_bytes += sum(len(blob) for blob in found.values())
            return found

        writing = side
        writer = None if writing is None else _NodeWriter(lambda made: self._save(writing, made))
        try:
            merged = await merging.merge_trees(
                load_timed,
                base_root,
                head.root_tree,
                source.root_tree,
                request.strategy,
                None if writer is None else writer.add,
            )
        except BaseException:
            if writer is not None:
                await writer.settle()
            raise
        compared = time.perf_counter()
        if writer is not None:
            await writer.finish()
        written_meanwhile = 0 if writer is None else len(writer.saved)
        if merged.conflicts:
            listed = [MergeConflict(path=p, reason=r) for p, r in merged.conflicts]
            raise Conflict(
                f"{len(listed)} path(s) changed on both sides, nothing was written: "
                + ", ".join(f"{c.path} ({c.reason})" for c in listed[:10])
                + (" …" if len(listed) > 10 else "")
                + "; resolve them on a branch, or merge with the ours or theirs strategy",
                conflicts=[c.model_dump() for c in listed[:1000]],
                conflict_count=len(listed),
            )
        await self._save(
            session if side is None else side,
            {
                digest: (blob, merged.spliced.get(digest))
                for digest, blob in merged.new_nodes.items()
                if writer is None or digest not in writer.saved
            },
        )
        top = await trees.lookup(
            self.repos.trees.loader(session, merged.new_nodes), merged.root, "/"
        )
        assert top is not None
        saved = time.perf_counter()
        commit = await self._merge_commit(
            session, repo, branch, head, source, merged.root, top, request
        )
        # Where a large merge's time goes, step by step: nodes read and compared (the reads
        # partly beside the comparison, so the walk takes less than their sum), written.
        log.info(
            "merged",
            repo=repo.name,
            commit=commit.id,
            read_seconds=round(read_seconds, 3),
            read_bytes=read_bytes,
            walk_seconds=round(compared - began, 3),
            nodes_written=len(merged.new_nodes),
            nodes_written_while_walking=written_meanwhile,
            write_seconds=round(saved - compared, 3),
            commit_seconds=round(time.perf_counter() - saved, 3),
        )
        return MergeInfo(
            outcome="merged",
            commit=commit.id,
            branch=branch.name,
            source=source.id,
            changed_paths=merged.changed,
            resolved_conflicts=[MergeConflict(path=p, reason=r) for p, r in merged.resolved],
        )

    async def _save(self, session: AsyncSession, made: _Made) -> None:
        """Save merged nodes. Those made by splicing rows into ours get their packed references
        rewritten from ours' instead of found by scanning each whole node again (that scan was
        a third of a large merge's time)."""
        if not made:
            return
        spliced = {digest: splice for digest, (_, splice) in made.items() if splice is not None}
        stored = await self.repos.trees.stored_refs(
            session, {splice.ours for splice in spliced.values()}
        )
        found: dict[str, tuple[bytes, bytes]] = {}
        for digest, splice in spliced.items():
            ours = stored.get(splice.ours)
            refs = None if ours is None else trees.replaced_refs(splice.blob, ours, splice.replaced)
            if refs is not None:
                found[digest] = refs
        await self.repos.trees.save(session, {d: blob for d, (blob, _) in made.items()}, found)

    async def _fast_forward(
        self, session: AsyncSession, repo: RepoRow, branch: BranchRow, source: CommitRow
    ) -> None:
        previous = branch.head
        branch.head = source.id
        await session.flush()
        provenance = await self.repos.provenance(session, source)
        assert source.finished_at is not None
        # Announced as finished on the branch it now heads, so that pipelines reading that
        # branch run on it as on any new commit there (one job per input set, however often).
        await self.outbox.add(
            session,
            BranchMoved(repo=repo.name, branch=branch.name, head=source.id, previous=previous),
            CommitFinished(
                repo=repo.name,
                commit=source.id,
                branch=branch.name,
                parent=source.parent,
                global_id=source.global_id,
                provenance=tuple(CommitRef(repo=p.repo, commit=p.commit) for p in provenance),
                finished_at=source.finished_at,
                size_bytes=source.size_bytes or 0,
                file_count=source.file_count or 0,
                error=source.error,
            ),
        )

    async def _merge_commit(
        self,
        session: AsyncSession,
        repo: RepoRow,
        branch: BranchRow,
        head: CommitRow,
        source: CommitRow,
        root: str,
        top: trees.Entry,
        request: MergeRequest,
    ) -> CommitRow:
        commit_id = uuid.uuid4().hex
        now = _now()
        inputs = {
            (p.repo, p.commit): CommitRef(repo=p.repo, commit=p.commit)
            for parent in (head, source)
            for p in await self.repos.provenance(session, parent)
        }
        commit = CommitRow(
            id=commit_id,
            repo_id=repo.id,
            branch=branch.name,
            parent=head.id,
            merge_parent=source.id,
            state=FINISHED,
            base_tree=head.root_tree,
            root_tree=root,
            global_id=commit_id,
            description=request.description
            or f"merge {request.source} ({source.id}) into {branch.name}",
            size_bytes=top.size,
            file_count=top.count,
            started_at=now,
            finished_at=now,
        )
        await commit_store.add_finished(session, commit, inputs.keys())
        previous = branch.head
        branch.head = commit_id
        await session.flush()
        provenance = tuple(inputs.values())
        await self.outbox.add(
            session,
            CommitStarted(
                repo=repo.name,
                commit=commit_id,
                branch=branch.name,
                parent=head.id,
                global_id=commit_id,
                provenance=provenance,
                started_at=now,
            ),
            CommitFinished(
                repo=repo.name,
                commit=commit_id,
                branch=branch.name,
                parent=head.id,
                global_id=commit_id,
                provenance=provenance,
                finished_at=now,
                size_bytes=top.size,
                file_count=top.count,
                error=None,
            ),
            BranchMoved(repo=repo.name, branch=branch.name, head=commit_id, previous=previous),
        )
        return commit

    # --- history edits ----------------------------------------------------------------------

    async def delete_commit(
        self, session: AsyncSession, repo: RepoRow, ref: str, *, cascade: bool
    ) -> DroppedCommits:
        commit = await self.repos.resolve_commit(session, repo, ref)
        if commit.state != FINISHED:
            raise Conflict(f"commit {commit.id} is open: abandon it instead (tusk commit abandon)")
        rows = await history.plan_drop(session, [commit.id], cascade=cascade)
        dropped, moved = await history.drop(session, self.outbox, rows)
        return DroppedCommits(dropped=dropped, moved_branches=moved)

    async def squash(
        self, session: AsyncSession, repo: RepoRow, oldest: str, newest: str, *, cascade: bool
    ) -> DroppedCommits:
        first = await self.repos.resolve_commit(session, repo, oldest, finished=True)
        last = await self.repos.resolve_commit(session, repo, newest, finished=True)
        chain = await history.squash_range(session, repo, first, last)
        heads = await repo_store.branches_heading_at(session, repo.id, chain)
        if heads:
            # Moving those branches back would drop files from them without anyone asking.
            raise Conflict(
                f"branch(es) {', '.join(sorted(heads))} of repo {repo.name!r} point inside the "
                "range; squash up to their heads, or move or delete them first",
                branches=sorted(heads),
            )
        rows = await history.plan_drop(session, chain, cascade=cascade)
        dropped, moved = await history.drop(session, self.outbox, rows)
        return DroppedCommits(dropped=dropped, moved_branches=moved)


Graph = dict[str, tuple[str | None, str | None]]


async def _commit_graph(session: AsyncSession, repo: RepoRow) -> Graph:
    return await commit_store.graph(session, repo.id, FINISHED)


def _ancestors(graph: Graph, start: str) -> set[str]:
    """``start`` and every commit it descends from, through both parents."""
    seen = {start}
    stack = [start]
    while stack:
        for parent in graph.get(stack.pop(), (None, None)):
            if parent is not None and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _merge_base(graph: Graph, head: str, source_ancestors: set[str]) -> str | None:
    """The nearest ancestor of ``head`` (breadth first) that the source also descends from."""
    queue, seen = [head], {head}
    while queue:
        following = []
        for cid in queue:
            if cid in source_ancestors:
                return cid
            for parent in graph.get(cid, (None, None)):
                if parent is not None and parent not in seen:
                    seen.add(parent)
                    following.append(parent)
        queue = following
    return None
