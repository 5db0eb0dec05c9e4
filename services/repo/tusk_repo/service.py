"""The repo service's logic. Every method takes the session of the caller's transaction and
only flushes; the request (or the test) that opened the session commits it, so a change and the
events that announce it (written to the outbox) are committed together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tusk import shortid
from tusk.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from tusk.events.outbox import OutboxWriter
from tusk.events.types import (
    BranchMoved,
    CommitFinished,
    CommitRef,
    CommitStarted,
    RepoCreated,
    RepoDeleted,
)
from tusk.objectstore.chunks import ChunkedFile
from tusk.paths import (
    DEFAULT_PROJECT,
    Ref,
    normalize_path,
    parse_ref,
    qualified_name,
    split_project,
    validate_branch_name,
    validate_project_name,
)
from tusk_repo import protection, store, trees, treewalk
from tusk_repo.protection import ANYONE, Writer
from tusk_repo.schemas import (
    BranchInfo,
    CommitInfo,
    CommitRefModel,
    DiffEntry,
    FileInfo,
    HistoryEntry,
    ProjectInfo,
    RepoInfo,
)
from tusk_repo.store import TreeStore
from tusk_repo.store import commits as commit_store
from tusk_repo.store import projects as project_store
from tusk_repo.store import repos as repo_store
from tusk_repo.tables import BranchRow, CommitRow, RepoRow

COMMIT_ID_LENGTH = 32

OPEN = "open"
FINISHED = "finished"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TreeView:
    """A commit's tree, readable whether the commit is finished or still open."""

    commit: CommitRow
    root: str
    load: trees.Loader
    load_many: trees.ManyLoader
    load_blobs: treewalk.BlobLoader


class RepoService:
    def __init__(self, tree_store: TreeStore, outbox: OutboxWriter) -> None:
        self.trees = tree_store
        self.outbox = outbox

    # --- projects ----------------------------------------------------------------------------

    async def create_project(
        self, session: AsyncSession, name: str, description: str
    ) -> ProjectInfo:
        validate_project_name(name)
        if name == DEFAULT_PROJECT or not await project_store.insert_project(
            session, name, description, _now()
        ):
            raise AlreadyExists(f"project {name!r} already exists")
        return await self.get_project(session, name)

    async def get_project(self, session: AsyncSession, name: str) -> ProjectInfo:
        validate_project_name(name)
        for project in await self.list_projects(session, only=name):
            return project
        raise NotFound(f"project {name!r} not found")

    async def list_projects(
        self, session: AsyncSession, *, only: str | None = None
    ) -> list[ProjectInfo]:
        """``default`` first (it has no row: it always exists), then the others by name."""
        counts = await project_store.repo_counts(session)
        default = ProjectInfo(
            name=DEFAULT_PROJECT,
            description="Repos and pipelines named without a project",
            created_at=None,
            repo_count=counts.get(DEFAULT_PROJECT, 0),
        )
        rows = await project_store.all_projects(session)
        projects = [default] + [
            ProjectInfo(
                name=r.name,
                description=r.description,
                created_at=r.created_at,
                repo_count=counts.get(r.name, 0),
            )
            for r in rows
        ]
        return [p for p in projects if only is None or p.name == only]

    async def delete_project(self, session: AsyncSession, name: str) -> None:
        validate_project_name(name)
        if name == DEFAULT_PROJECT:
            raise InvalidArgument("the default project cannot be deleted")
        if await project_store.project_named(session, name, lock=True) is None:
            raise NotFound(f"project {name!r} not found")
        if repos := await project_store.repos_in(session, name):
            raise Conflict(
                f"project {name!r} still holds repos ({', '.join(repos)}); delete its "
                "pipelines and repos first (`tusk pipeline delete`, `tusk repo delete`)",
                repos=repos,
            )
        await project_store.delete_project(session, name)

    async def _require_project(self, session: AsyncSession, project: str) -> None:
        """A repo is created only in a project that exists, held until the transaction ends
        so that a concurrent delete of the project waits for it."""
        if project == DEFAULT_PROJECT:
            return
        if await project_store.project_named(session, project, share=True) is None:
            raise NotFound(
                f"project {project!r} not found: create it first (`tusk project create {project}`)"
            )

    # --- repos -------------------------------------------------------------------------------

    async def create_repo(
        self, session: AsyncSession, name: str, description: str, *, pipeline: str | None = None
    ) -> RepoRow:
        """``pipeline``: the pipeline whose output repo this is (only its jobs write to it).
        ``name`` may be qualified (``p/raw``); project ``p`` must exist."""
        qualified = split_project("repo", name)
        name = str(qualified)
        if pipeline is not None:
            pipeline = qualified_name("pipeline", pipeline)
        await self._require_project(session, qualified.project)
        if not await repo_store.insert_repo(session, name, description, _now(), pipeline):
            raise AlreadyExists(f"repo {name!r} already exists")
        repo = await self.get_repo(session, name)
        await self.outbox.add(session, RepoCreated(repo=name, created_at=repo.created_at))
        return repo

    async def get_repo(self, session: AsyncSession, name: str) -> RepoRow:
        name = qualified_name("repo", name)
        repo = await repo_store.repo_named(session, name)
        if repo is None:
            raise NotFound(f"repo {name!r} not found")
        return repo

    async def list_repos(self, session: AsyncSession) -> list[RepoInfo]:
        """Every repo, in a fixed number of queries whatever their number."""
        repos = await repo_store.all_repos(session)
        summaries = await repo_store.summaries(session)
        return [_repo_info(r, summaries.get(r.id)) for r in repos]

    async def repo_info(self, session: AsyncSession, repo: RepoRow) -> RepoInfo:
        summaries = await repo_store.summaries(session, [repo.id])
        return _repo_info(repo, summaries.get(repo.id))

    async def delete_repo(self, session: AsyncSession, name: str, *, force: bool) -> None:
        repo = await self.get_repo(session, name)
        dependents = await repo_store.dependent_repos(session, repo)
        if dependents and not force:
            raise Conflict(
                f"repo {name!r} is in the provenance of commits in {', '.join(dependents)};"
                " delete those first, or force it (`tusk repo delete --force`, `?force=true`)",
                dependents=dependents,
            )
        await repo_store.delete_repo(session, repo)
        await self.outbox.add(session, RepoDeleted(repo=repo.name))

    # --- branches ----------------------------------------------------------------------------

    async def _branch(self, session: AsyncSession, repo: RepoRow, name: str) -> BranchRow | None:
        return await repo_store.branch(session, repo.id, name)

    async def get_branch(self, session: AsyncSession, repo: RepoRow, name: str) -> BranchRow:
        validate_branch_name(name)
        branch = await self._branch(session, repo, name)
        if branch is None:
            raise NotFound(f"branch {name!r} not found in repo {repo.name!r}")
        return branch

    async def list_branches(self, session: AsyncSession, repo: RepoRow) -> list[BranchInfo]:
        return [self.branch_info(repo, b) for b in await repo_store.branches(session, repo.id)]

    @staticmethod
    def branch_info(repo: RepoRow, branch: BranchRow) -> BranchInfo:
        return BranchInfo(
            repo=repo.name,
            name=branch.name,
            head=branch.head,
            created_at=branch.created_at,
            protected=branch.protected,
        )

    async def create_branch(
        self, session: AsyncSession, repo: RepoRow, name: str, head: str | None
    ) -> BranchRow:
        validate_branch_name(name)
        if await self._branch(session, repo, name) is not None:
            raise AlreadyExists(f"branch {name!r} already exists in repo {repo.name!r}")
        if await repo_store.tag(session, repo.id, name) is not None:
            raise AlreadyExists(
                f"repo {repo.name!r} has a tag named {name!r}; a branch needs another name"
            )
        head_id = None
        if head is not None:
            head_id = (await self.resolve_commit(session, repo, head, finished=True)).id
        if not await repo_store.insert_branch(session, repo.id, name, head_id, _now()):
            raise AlreadyExists(f"branch {name!r} already exists in repo {repo.name!r}")
        branch = await self.get_branch(session, repo, name)
        if head_id is not None:
            await self.outbox.add(
                session, BranchMoved(repo=repo.name, branch=name, head=head_id, previous=None)
            )
        return branch

    async def move_branch(
        self, session: AsyncSession, repo: RepoRow, name: str, head: str
    ) -> BranchRow:
        branch = await self.get_branch(session, repo, name)
        protection.check_move(repo, branch)
        target = await self.resolve_commit(session, repo, head, finished=True)
        previous = branch.head
        branch.head = target.id
        await session.flush()
        await self.outbox.add(
            session, BranchMoved(repo=repo.name, branch=name, head=target.id, previous=previous)
        )
        return branch

    async def delete_branch(self, session: AsyncSession, repo: RepoRow, name: str) -> None:
        branch = await self.get_branch(session, repo, name)
        open_commit = await self._open_commit_on(session, repo, name)
        if open_commit is not None:
            raise Conflict(
                f"branch {name!r} has open commit {open_commit.id}; finish or abandon it first"
            )
        await repo_store.delete_branch(session, branch)

    # --- commits -----------------------------------------------------------------------------

    async def _commit_by_id(self, session: AsyncSession, repo: RepoRow, cid: str) -> CommitRow:
        commit = await commit_store.by_id(session, repo.id, cid)
        if commit is None:
            raise NotFound(f"commit {cid} not found in repo {repo.name!r}")
        return commit

    async def _commit_by_prefix(
        self, session: AsyncSession, repo: RepoRow, ref: str
    ) -> CommitRow | None:
        """The commit a short id names, when ``ref`` is a hex prefix and no branch is called so
        (a branch of that name wins, as git's do)."""
        if not shortid.is_prefix(ref, COMMIT_ID_LENGTH):
            return None
        if await repo_store.has_branch_named(session, repo.id, ref):
            return None
        found = await commit_store.expand_prefix(session, repo.id, ref)
        return None if found is None else await self._commit_by_id(session, repo, found)

    async def _open_commit_on(
        self, session: AsyncSession, repo: RepoRow, branch: str
    ) -> CommitRow | None:
        return await commit_store.open_on(session, repo.id, branch)

    async def resolve_commit(
        self, session: AsyncSession, repo: RepoRow, ref_text: str | Ref, *, finished: bool = False
    ) -> CommitRow:
        """The commit a ref names: a commit id, or a branch's head (its last finished commit),
        then ``ancestry`` generations back."""
        ref = parse_ref(ref_text) if isinstance(ref_text, str) else ref_text
        short = await self._commit_by_prefix(session, repo, ref.base)
        if short is not None:
            commit = short
        elif ref.is_commit_id:
            commit = await self._commit_by_id(session, repo, ref.base)
        elif (branch := await self._branch(session, repo, ref.base)) is None and (
            tag := await repo_store.tag(session, repo.id, ref.base)
        ) is not None:
            # A branch of the name comes first; a tag only where there is none.
            commit = await self._commit_by_id(session, repo, tag.commit_id)
        else:
            if branch is None:  # neither: get_branch says why (no such branch, a bad name)
                branch = await self.get_branch(session, repo, ref.base)
            if branch.head is None:
                pending = await self._open_commit_on(session, repo, branch.name)
                hint = f" (commit {pending.id} is open)" if pending else ""
                raise NotFound(
                    f"branch {branch.name!r} of repo {repo.name!r} has no finished commit yet{hint}"
                )
            commit = await self._commit_by_id(session, repo, branch.head)
        for generation in range(ref.ancestry):
            if commit.parent is None:
                raise NotFound(
                    f"{repo.name}@{ref.base} has only {generation} ancestor(s), not {ref.ancestry}"
                )
            commit = await self._commit_by_id(session, repo, commit.parent)
        if finished and commit.state != FINISHED:
            raise Conflict(f"commit {commit.id} is still open")
        return commit

    async def resolve_open_commit(
        self, session: AsyncSession, repo: RepoRow, ref_text: str, *, lock: bool = False
    ) -> CommitRow:
        """The open commit a write goes to: an open commit's id, or a branch's open commit.

        With ``lock``, the row is share-locked (PostgreSQL) so that a finish, which takes the row
        exclusively, waits for writes in flight and writes after it see the commit finished.
        """
        ref = parse_ref(ref_text)
        if ref.ancestry:
            raise InvalidArgument(f"cannot write to {ref_text!r}: an ancestor is always finished")
        short = await self._commit_by_prefix(session, repo, ref.base)
        if short is not None:
            commit = await commit_store.for_write(
                session, repo.id, commit_id=short.id, share_lock=lock
            )
        elif ref.is_commit_id:
            commit = await commit_store.for_write(
                session, repo.id, commit_id=ref.base, share_lock=lock
            )
        else:
            await self.get_branch(session, repo, ref.base)
            commit = await commit_store.for_write(
                session, repo.id, open_on_branch=ref.base, share_lock=lock
            )
        if commit is None:
            if ref.is_commit_id:
                raise NotFound(f"commit {ref.base} not found in repo {repo.name!r}")
            raise Conflict(
                f"branch {ref.base!r} of repo {repo.name!r} has no open commit: start one first "
                f"(tusk commit start {repo.name}@{ref.base})"
            )
        if commit.state != OPEN:
            raise Conflict(f"commit {commit.id} is finished; start a new commit to change files")
        protection.check_write_into(repo, commit, by_id=ref.is_commit_id)
        return commit

    async def start_commit(
        self,
        session: AsyncSession,
        repo: RepoRow,
        branch_name: str,
        *,
        description: str = "",
        provenance: Sequence[CommitRefModel] = (),
        global_id: str | None = None,
        empty: bool = False,
        writer: Writer = ANYONE,
    ) -> CommitRow:
        validate_branch_name(branch_name)
        branch = await self._branch(session, repo, branch_name)
        protection.check_open(repo, branch, writer)
        if writer.admin_override:
            # Visible wherever commits are listed, not only in their details.
            description = f"{description} [admin override: {writer.admin_override}]".strip()
        if branch is None:
            # Racing starts on a new branch may both create it; either way it exists afterwards.
            await repo_store.insert_branch(session, repo.id, branch_name, None, _now())
            branch = await self.get_branch(session, repo, branch_name)
        inputs = await self._resolve_inputs(session, provenance)
        base_tree = trees.EMPTY_TREE
        if branch.head and not empty:
            base_tree = (
                await self._commit_by_id(session, repo, branch.head)
            ).root_tree or base_tree
        commit_id = uuid.uuid4().hex
        # The unique index on a branch's open commit turns a second start into no row.
        commit = await commit_store.insert_open(
            session,
            commit_id=commit_id,
            repo_id=repo.id,
            branch=branch_name,
            parent=branch.head,
            base_tree=base_tree,
            global_id=global_id or commit_id,
            description=description,
            started_at=_now(),
            opened_by=writer.label(),
        )
        if commit is None:
            existing = await self._open_commit_on(session, repo, branch_name)
            raise Conflict(
                f"branch {branch_name!r} of repo {repo.name!r} already has "
                + (f"open commit {existing.id}" if existing else "an open commit")
                + "; finish or abandon it first",
                **({"open_commit": existing.id} if existing else {}),
            )
        await commit_store.add_provenance(session, commit_id, ((i.repo, i.commit) for i in inputs))
        await self.outbox.add(
            session,
            CommitStarted(
                repo=repo.name,
                commit=commit_id,
                branch=branch_name,
                parent=commit.parent,
                global_id=commit.global_id,
                provenance=tuple(inputs),
                started_at=commit.started_at,
            ),
        )
        return commit

    async def _resolve_inputs(
        self, session: AsyncSession, refs: Sequence[CommitRefModel]
    ) -> list[CommitRef]:
        """Provenance as given: commit ids (found in one query) or branch refs."""
        by_id = {(r.repo, r.commit) for r in refs if parse_ref(r.commit).is_commit_id}
        found = await commit_store.existing(session, by_id)
        resolved = []
        for ref in refs:
            if (ref.repo, ref.commit) in found:
                resolved.append(CommitRef(repo=ref.repo, commit=ref.commit))
                continue
            # A branch ref, or not found: the errors name what is missing.
            repo = await self.get_repo(session, ref.repo)
            commit = await self.resolve_commit(session, repo, ref.commit)
            resolved.append(CommitRef(repo=repo.name, commit=commit.id))
        return resolved

    async def finish_commit(
        self,
        session: AsyncSession,
        repo: RepoRow,
        ref: str,
        *,
        error: str | None = None,
        clear_staged: bool = True,
    ) -> CommitRow:
        """``clear_staged=False``: the commit's staged rows are left for the caller to delete
        after this transaction (``tusk_repo.staging``), which keeps it short; nothing reads
        them once the commit is finished."""
        await store.hold_off_collection(session)
        commit = await self.resolve_open_commit(session, repo, ref)
        # Exclusive lock: waits for puts holding the share lock, and later puts see "finished".
        await commit_store.lock(session, commit)
        if commit.state != OPEN:
            raise Conflict(f"commit {commit.id} is already finished")
        deletes, puts = await store.staged_changes(session, commit.id)
        merged = await trees.merge(self.trees.loader(session), commit.base_tree, deletes, puts)
        await self.trees.save(session, merged.new_nodes)
        if clear_staged:
            await store.clear_staged(session, commit.id)
        commit.state = FINISHED
        commit.root_tree = merged.root
        commit.size_bytes = merged.size
        commit.file_count = merged.count
        commit.finished_at = _now()
        commit.error = error
        await session.flush()
        provenance = await self.provenance(session, commit)
        events: list[CommitFinished | BranchMoved] = [
            CommitFinished(
                repo=repo.name,
                commit=commit.id,
                branch=commit.branch,
                parent=commit.parent,
                global_id=commit.global_id,
                provenance=tuple(CommitRef(repo=p.repo, commit=p.commit) for p in provenance),
                finished_at=commit.finished_at,
                size_bytes=merged.size,
                file_count=merged.count,
                error=error,
            )
        ]
        if commit.branch is not None:
            previous = await repo_store.branch_head(session, repo.id, commit.branch)
            await repo_store.set_branch_head(session, repo.id, commit.branch, commit.id)
            events.append(
                BranchMoved(repo=repo.name, branch=commit.branch, head=commit.id, previous=previous)
            )
        await self.outbox.add(session, *events)
        return commit

    async def abandon_commit(self, session: AsyncSession, repo: RepoRow, ref: str) -> None:
        commit = await self.resolve_open_commit(session, repo, ref)
        await commit_store.lock(session, commit)
        await commit_store.delete_commit(session, commit.id)

    async def provenance(self, session: AsyncSession, commit: CommitRow) -> list[CommitRefModel]:
        found = await commit_store.provenance(session, [commit.id])
        return [CommitRefModel(repo=r, commit=c) for r, c in found[commit.id]]

    async def subvenance(self, session: AsyncSession, commit: CommitRow) -> list[CommitRefModel]:
        """The commits, in any repo, that name ``commit`` in their provenance (lineage down)."""
        found = await commit_store.subvenance(session, commit.id)
        return [CommitRefModel(repo=r, commit=c) for r, c in found]

    async def commit_info(
        self, session: AsyncSession, repo: RepoRow, commit: CommitRow
    ) -> CommitInfo:
        return (await self.commit_infos(session, repo, [commit]))[0]

    async def commit_infos(
        self, session: AsyncSession, repo: RepoRow, commits: Sequence[CommitRow]
    ) -> list[CommitInfo]:
        """Several commits' details, their provenance read in one query rather than one each."""
        provenance = await commit_store.provenance(session, [c.id for c in commits])
        return [_commit_info(repo, c, provenance[c.id]) for c in commits]

    async def list_commits(
        self,
        session: AsyncSession,
        repo: RepoRow,
        *,
        branch: str | None = None,
        state: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> tuple[list[CommitRow], int | None]:
        """Commits newest first; ``cursor`` is the last page's smallest sequence number."""
        rows = await commit_store.page(
            session, repo.id, branch=branch, state=state, limit=limit + 1, before_seq=cursor
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].seq if more and rows else None)

    async def log(
        self,
        session: AsyncSession,
        repo: RepoRow,
        ref: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[CommitRow], str | None]:
        """A ref's ancestry, newest first; ``cursor`` is the commit to continue from."""
        start = (
            await self._commit_by_id(session, repo, cursor)
            if cursor
            else await self.resolve_commit(session, repo, ref)
        )
        rows = await commit_store.ancestry(session, repo.id, start.id, limit + 1)
        return rows[:limit], (rows[limit].id if len(rows) > limit else None)

    # --- files -------------------------------------------------------------------------------

    async def put_files(
        self,
        session: AsyncSession,
        repo: RepoRow,
        ref: str,
        files: Sequence[tuple[str, ChunkedFile]],
        *,
        written: set[str] | None = None,
    ) -> CommitRow:
        """Stage files whose contents are stored. ``written``: the content hashes this request
        stored itself; the others it found stored before, and must still be (garbage
        collection may have reclaimed them since), else nothing is staged and the caller
        retries."""
        await store.hold_off_collection(session)
        commit = await self.resolve_open_commit(session, repo, ref, lock=True)
        if written is not None:
            relied_on = {f.hash for _, f in files} - written
            reclaimed = relied_on - (await store.load_files(session, relied_on)).keys()
            if reclaimed:
                raise Conflict(
                    f"{len(reclaimed)} file content(s) were reclaimed by garbage collection "
                    "while this upload ran; nothing was written, send it again",
                    reclaimed=sorted(reclaimed)[:20],
                )
        await store.stage_puts(session, commit.id, files)
        return commit

    async def stored_files(
        self, session: AsyncSession, digests: set[str]
    ) -> dict[str, ChunkedFile]:
        """The files among these content hashes whose contents are stored already."""
        return await store.load_files(session, digests)

    async def link_files(
        self, session: AsyncSession, repo: RepoRow, ref: str, files: Sequence[tuple[str, str]]
    ) -> tuple[CommitRow, list[tuple[str, ChunkedFile]]]:
        """Put files whose contents are already stored, by content hash: a copy that moves no
        bytes (pipelines carry unchanged datums' outputs forward this way)."""
        paths = [(normalize_path(p, allow_root=False), h) for p, h in files]
        await store.hold_off_collection(session)
        known = await store.load_files(session, {h for _, h in paths})
        missing = sorted({h for _, h in paths} - known.keys())
        if missing:
            raise NotFound(
                f"{len(missing)} content hash(es) are not stored, e.g. {missing[0]}",
                missing=missing[:20],
            )
        linked = [(p, known[h]) for p, h in paths]
        return await self.put_files(session, repo, ref, linked), linked

    async def delete_path(
        self, session: AsyncSession, repo: RepoRow, ref: str, path: str
    ) -> CommitRow:
        path = normalize_path(path)
        commit = await self.resolve_open_commit(session, repo, ref, lock=True)
        # Base tree and staged rows, not the merged view: a delete must work even while staged
        # changes conflict, since deleting is how such a commit is mended.
        in_base = await trees.lookup(self.trees.loader(session), commit.base_tree, path)
        if in_base is None and not await store.has_staged_put_under(session, commit.id, path):
            raise NotFound(f"path {path} not found in commit {commit.id}")
        await store.stage_delete(session, commit.id, path)
        return commit

    async def view(
        self, session: AsyncSession, repo: RepoRow, ref: str, path: str = "/"
    ) -> TreeView:
        """The tree of a finished commit (by ref), or of an open commit (by its id); for an open
        commit, as it is at ``path`` and below (elsewhere it may lack staged changes)."""
        commit = await self.resolve_commit(session, repo, ref)
        if commit.state == OPEN:
            return await self.open_view(session, commit, path)
        assert commit.root_tree is not None
        return TreeView(
            commit,
            commit.root_tree,
            self.trees.loader(session),
            self.trees.many_loader(session),
            self.trees.blob_loader(session),
        )

    async def open_view(
        self, session: AsyncSession, commit: CommitRow, path: str = "/"
    ) -> TreeView:
        """An open commit's tree as it would be if finished now (nothing is saved), at ``path``
        and below: only the staged changes that reach there are applied, so reading one file of
        a commit with a hundred thousand staged ones does not merge them all."""
        deletes, puts = await store.staged_changes(
            session, commit.id, reaching=normalize_path(path)
        )
        base_loader = self.trees.loader(session)
        if not deletes and not puts:
            return TreeView(
                commit,
                commit.base_tree,
                base_loader,
                self.trees.many_loader(session),
                self.trees.blob_loader(session),
            )
        merged = await trees.merge(base_loader, commit.base_tree, deletes, puts)
        return TreeView(
            commit,
            merged.root,
            self.trees.loader(session, merged.new_nodes),
            self.trees.many_loader(session, merged.new_nodes),
            self.trees.blob_loader(session, merged.new_nodes),
        )

    async def stat(self, session: AsyncSession, view: TreeView, path: str) -> FileInfo:
        path = normalize_path(path)
        entry = await trees.lookup(view.load, view.root, path)
        if entry is None:
            raise NotFound(f"path {path} not found in commit {view.commit.id}")
        return file_info(path, entry)

    async def open_file(
        self, session: AsyncSession, view: TreeView, path: str
    ) -> tuple[FileInfo, ChunkedFile]:
        info = await self.stat(session, view, path)
        if info.type == "dir":
            raise InvalidArgument(f"{info.path} is a directory; list it instead")
        return info, await store.load_file(session, info.hash)

    async def history(
        self, session: AsyncSession, repo: RepoRow, ref: str, path: str, *, limit: int = 100
    ) -> list[HistoryEntry]:
        """The commits among ``ref``'s last ``limit`` ancestors where ``path`` changed."""
        path = normalize_path(path, allow_root=False)
        start = await self.resolve_commit(session, repo, ref)
        # One more than asked: the last one's parent, read with the rest.
        chain = await commit_store.ancestry(session, repo.id, start.id, limit + 1)
        commits = chain[:limit]
        load = self.trees.loader(session)

        async def entry_in(commit: CommitRow | None) -> trees.Entry | None:
            if commit is None or commit.root_tree is None:
                return None
            return await trees.lookup(load, commit.root_tree, path)

        out: list[HistoryEntry] = []
        for n, commit in enumerate(commits):
            parent = chain[n + 1] if n + 1 < len(chain) else None
            entry, before = await entry_in(commit), await entry_in(parent)
            if entry == before:
                continue
            change = "deleted" if entry is None else ("added" if before is None else "modified")
            out.append(
                HistoryEntry(
                    commit=commit.id,
                    change=change,
                    size_bytes=entry.size if entry else None,
                    hash=entry.hash if entry else None,
                    finished_at=commit.finished_at,
                )
            )
        return out

    async def diff(
        self, session: AsyncSession, repo: RepoRow, to_ref: str, from_ref: str | None, path: str
    ) -> tuple[CommitRow | None, CommitRow, list[DiffEntry]]:
        path = normalize_path(path)
        new = await self.view(session, repo, to_ref)
        old_commit: CommitRow | None
        if from_ref is not None:
            old_commit = await self.resolve_commit(session, repo, from_ref, finished=True)
        elif new.commit.parent is not None:
            old_commit = await self._commit_by_id(session, repo, new.commit.parent)
        else:
            old_commit = None
        old_root = old_commit.root_tree if old_commit and old_commit.root_tree else trees.EMPTY_TREE
        changes = await treewalk.diff(new.load_many, new.load_blobs, old_root, new.root, path)
        return (
            old_commit,
            new.commit,
            [
                DiffEntry(
                    path=c.path,
                    change=c.change,
                    size_before=c.old.size if c.old else None,
                    size_after=c.new.size if c.new else None,
                )
                for c in changes
            ],
        )


def _commit_info(
    repo: RepoRow, commit: CommitRow, provenance: Sequence[tuple[str, str]]
) -> CommitInfo:
    return CommitInfo(
        id=commit.id,
        repo=repo.name,
        branch=commit.branch,
        parent=commit.parent,
        merge_parent=commit.merge_parent,
        opened_by=commit.opened_by,
        state=OPEN if commit.state == OPEN else FINISHED,
        error=commit.error,
        global_id=commit.global_id,
        provenance=[CommitRefModel(repo=r, commit=c) for r, c in provenance],
        description=commit.description,
        size_bytes=commit.size_bytes,
        file_count=commit.file_count,
        started_at=commit.started_at,
        finished_at=commit.finished_at,
    )


def _repo_info(repo: RepoRow, summary: repo_store.RepoSummary | None) -> RepoInfo:
    summary = summary or repo_store.RepoSummary()
    return RepoInfo(
        name=repo.name,
        description=repo.description,
        created_at=repo.created_at,
        branches=summary.branches,
        size_bytes=summary.size_bytes,
        commit_count=summary.commit_count,
        owner_pipeline=repo.owner_pipeline,
        keep_days=repo.keep_days,
        keep_last=repo.keep_last,
    )


def file_info(path: str, entry: trees.Entry) -> FileInfo:
    return FileInfo.model_validate(file_info_fields(path, entry))


def file_info_fields(path: str, entry: trees.Entry) -> dict[str, object]:
    """A FileInfo's fields, for validating many in one go (much faster than one by one)."""
    return {
        "path": path,
        "type": "dir" if entry.kind == trees.DIR else "file",
        "size_bytes": entry.size,
        "hash": entry.hash,
        "file_count": entry.count,
    }
