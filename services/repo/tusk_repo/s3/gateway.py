"""The S3 operations, on the repo service's own domain (no HTTP hop): bucket = repo,
key = ``REF/PATH`` where REF is a branch or a commit id. A repo of a project, ``p/x``, is
bucket ``x.p`` (Pachyderm's gateway names buckets ``branch.repo.project``; names hold no '.').

Writes to a branch go into the branch's open commit when it has one (so that any number of
writes make one commit, finished with ``tusk commit finish``), else into a commit of their own,
started, staged and finished in one SQL transaction before the write is answered; writes that
arrive while another is being staged share the next transaction, and so that commit. A commit
id names an immutable snapshot once finished: writes to it are refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import blake3
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.errors import Conflict, InvalidArgument, NotFound, TuskError, Unavailable
from tusk.objectstore.chunks import ChunkedFile, hash_bytes
from tusk.paths import normalize_path, parse_ref
from tusk_repo import trees
from tusk_repo.context import Context
from tusk_repo.s3.xml import S3Error
from tusk_repo.tables import RepoRow

PACK_SMALLER_THAN = 1 << 20
"""Objects up to this size are packed with the others staged together."""
READ_AHEAD = 4
"""Chunks fetched from the object store while one is sent (each up to the chunk size)."""

Stage = Callable[[AsyncSession, RepoRow, str], Awaitable[None]]
Batch = list[tuple[str, "ChunkedFile | bytes", "asyncio.Future[str]"]]
"""Puts waiting to be staged together: (path, stored file or small contents, the put's
answer)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    hash: str
    modified: datetime
    commit: str


@dataclass(frozen=True)
class Listing:
    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_marker: str | None


@dataclass
class Upload:
    """A multipart upload in progress (kept in this process's memory: an upload does not
    survive a restart of the gateway, and the client starts it again)."""

    bucket: str
    key: str
    parts: dict[int, ChunkedFile] = field(default_factory=dict)


def repo_bucket(repo: str) -> str:
    """``p/x`` → ``x.p``; a repo of the default project is its own bucket."""
    project, _, name = repo.rpartition("/")
    return f"{name}.{project}" if project else name


def bucket_repo(bucket: str) -> str:
    """``x.p`` → ``p/x`` (checked where the repo is looked up)."""
    name, dot, project = bucket.partition(".")
    return f"{project}/{name}" if dot else name


def split_key(bucket: str, key: str) -> tuple[str, str]:
    """(ref, /path) of ``REF/PATH``."""
    ref, slash, path = key.partition("/")
    if not slash or not path.strip("/"):
        raise S3Error(400, "InvalidArgument",
                      f"key {key!r} must be REF/PATH: a branch or commit id, then the path "
                      "(e.g. master/data/a.csv)", f"/{bucket}/{key}")
    try:
        parse_ref(ref)
        return ref, normalize_path(path, allow_root=False)
    except InvalidArgument as e:
        raise S3Error(400, "InvalidArgument", e.message, f"/{bucket}/{key}") from None


class Gateway:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._branch_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._pending: dict[tuple[str, str], Batch] = {}
        self._stagers: dict[tuple[str, str], asyncio.Task[None]] = {}
        # The last batch of each ref still to be written to SQL (the next one follows it).
        self._staging: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.uploads: dict[str, Upload] = {}

    # --- buckets -----------------------------------------------------------------------------

    async def list_buckets(self) -> list[tuple[str, datetime]]:
        async with self.ctx.db.session(write=False) as session:
            repos = await self.ctx.service.list_repos(session)
        return [(repo_bucket(r.name), r.created_at) for r in repos]

    async def _repo(self, session: AsyncSession, bucket: str) -> RepoRow:
        try:
            return await self.ctx.service.get_repo(session, bucket_repo(bucket))
        except (NotFound, InvalidArgument):
            raise S3Error(404, "NoSuchBucket", f"no repo {bucket!r}", f"/{bucket}") from None

    async def head_bucket(self, bucket: str) -> None:
        async with self.ctx.db.session(write=False) as session:
            await self._repo(session, bucket)

    async def create_bucket(self, bucket: str) -> None:
        async with self.ctx.db.session() as session:
            try:
                await self.ctx.service.create_repo(session, bucket_repo(bucket), "")
            except TuskError as e:
                if e.code == "already_exists":
                    raise S3Error(409, "BucketAlreadyOwnedByYou", e.message, f"/{bucket}") from e
                raise

    # --- reading -----------------------------------------------------------------------------

    async def head_object(self, bucket: str, key: str) -> tuple[ObjectInfo, ChunkedFile]:
        ref, path = split_key(bucket, key)
        async with self.ctx.db.session(write=False) as session:
            row = await self._repo(session, bucket)
            try:
                view = await self.ctx.service.view(session, row, ref, path)
                info, stored = await self.ctx.service.open_file(session, view, path)
            except (NotFound, InvalidArgument):
                raise S3Error(404, "NoSuchKey", f"no object {key!r} in bucket {bucket!r}",
                              f"/{bucket}/{key}") from None
            modified = view.commit.finished_at or view.commit.started_at
        return ObjectInfo(key, info.size_bytes, info.hash, _utc(modified), view.commit.id), stored

    def read(self, stored: ChunkedFile, start: int, end: int) -> AsyncIterator[bytes]:
        # S3 clients read large objects in one GET: keep the store's latency out of the way.
        return self.ctx.chunks.read_file(stored, start, end, ahead=READ_AHEAD)

    async def list_objects(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> Listing:
        async with self.ctx.db.session(write=False) as session:
            row = await self._repo(session, bucket)
            ref, _, path_prefix = prefix.partition("/")
            if "/" not in prefix:
                # Still choosing the ref: branches (commit ids are reached by naming them).
                branches = await self.ctx.service.list_branches(session, row)
                names = [b.name for b in branches if b.name.startswith(prefix) and b.head]
                if delimiter == "/":
                    items: list[tuple[str, ObjectInfo | None]] = [(f"{n}/", None) for n in names]
                    return _page(items, after, max_keys)
                keys: list[ObjectInfo] = []
                for name in names:
                    keys += await self._keys(session, row, name, "")
            else:
                keys = await self._keys(session, row, ref, path_prefix)
        keys = [k for k in keys if k.key.startswith(prefix)]
        return _page(_grouped(keys, prefix, delimiter), after, max_keys)

    async def _keys(
        self, session: AsyncSession, row: RepoRow, ref: str, path_prefix: str
    ) -> list[ObjectInfo]:
        try:
            view = await self.ctx.service.view(session, row, ref)
        except (NotFound, InvalidArgument):
            return []
        base = "/" + path_prefix.rpartition("/")[0]
        modified = _utc(view.commit.finished_at or view.commit.started_at)
        found = []
        try:
            async for path, entry in trees.walk_files(view.load, view.root, base):
                found.append(ObjectInfo(f"{ref}{path}", entry.size, entry.hash, modified,
                                        view.commit.id))
        except InvalidArgument:
            return []
        return found

    # --- writing -----------------------------------------------------------------------------

    async def _write(self, bucket: str, ref_text: str, stage: Stage) -> str:
        """Run ``stage`` against the open commit ``ref_text`` names, or a commit of its own
        (started and finished in the same transaction); the commit's id."""
        ref = parse_ref(ref_text)
        resource = f"/{bucket}/{ref_text}"
        if ref.ancestry:
            raise S3Error(403, "AccessDenied", f"{ref_text} names an ancestor: it is immutable",
                          resource)
        if ref.is_commit_id:
            async with self.ctx.db.session() as session:
                row = await self._repo(session, bucket)
                try:
                    commit = await self.ctx.service.resolve_open_commit(
                        session, row, ref.base, lock=True
                    )
                except Conflict:
                    raise S3Error(403, "AccessDenied",
                                  f"commit {ref.base} is finished and immutable; write to a "
                                  "branch instead", resource) from None
                await stage(session, row, commit.id)
                return commit.id
        lock = self._branch_locks.setdefault((bucket, ref.base), asyncio.Lock())
        # One writer per branch in this process: two requests must not both start a commit.
        async with lock:
            for attempt in range(3):
                try:
                    return await self._write_branch(bucket, ref.base, stage)
                except Conflict:
                    # Another process opened or finished a commit on the branch meanwhile.
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _write_branch(self, bucket: str, branch: str, stage: Stage) -> str:
        service = self.ctx.service
        async with self.ctx.db.session() as session:
            row = await self._repo(session, bucket)
            try:
                commit = await service.resolve_open_commit(session, row, branch, lock=True)
            except (Conflict, NotFound):
                pass  # no open commit (or no branch yet): this write gets a commit of its own
            else:
                await stage(session, row, commit.id)
                return commit.id
            started = await service.start_commit(session, row, branch,
                                                 description="written through the S3 gateway")
            await stage(session, row, started.id)
            finished = await service.finish_commit(session, row, started.id)
            return finished.id

    async def put_object(
        self, bucket: str, key: str, body: AsyncIterable[bytes], *, length: int | None = None
    ) -> tuple[str, str]:
        """Store and stage one object; its content hash and the commit it went into.

        A small object is held until it is staged: the objects staged together are written
        packed into shared chunks (as a batch put is), so ten thousand small PUTs cost a few
        object-store writes, not ten thousand. ``length``: the size the request announced."""
        ref, path = split_key(bucket, key)
        if length is None or length > PACK_SMALLER_THAN:
            # Before reading a possibly large body. A small one is read first: its batch
            # looks the repo up once for all its puts, where a look-up per put cost more than
            # the rest of the put.
            async with self.ctx.db.session(write=False) as session:
                await self._repo(session, bucket)
        stream = aiter(body)
        head = bytearray()
        async for piece in stream:
            head += piece
            if len(head) > PACK_SMALLER_THAN:
                break
        else:
            data = bytes(head)
            return hash_bytes(data), await self._stage(bucket, ref, path, data)

        async def rest() -> AsyncIterator[bytes]:
            yield bytes(head)
            async for piece in stream:
                yield piece

        stored = await self.ctx.chunks.write_stream(rest())
        return stored.hash, await self._stage(bucket, ref, path, stored)

    async def _put_stored(self, bucket: str, ref: str, path: str, stored: ChunkedFile) -> str:
        return await self._stage(bucket, ref, path, stored)

    async def _stage(self, bucket: str, ref: str, path: str, content: ChunkedFile | bytes
                     ) -> str:
        """Stage one file (stored, or small contents to store); the commit it went into. Puts
        to the same ref that arrive while one is being staged are staged together, in the
        next transaction (a group commit): one SQL transaction per request would cap a branch
        at what one transaction costs, a few hundred a second at best."""
        waiting: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.setdefault((bucket, ref), []).append((path, content, waiting))
        if (bucket, ref) not in self._stagers:
            task = asyncio.create_task(self._stage_pending(bucket, ref))
            self._stagers[(bucket, ref)] = task
        return await waiting

    async def _store_small(self, bucket: str, batch: Batch
                           ) -> tuple[list[tuple[str, ChunkedFile]], set[str]]:
        """The batch's files, stored, and the content hashes this batch wrote itself (the
        others were found stored, and garbage collection may reclaim them meanwhile)."""
        small = {hash_bytes(c): c for _, c, _ in batch if isinstance(c, bytes)}
        known: dict[str, ChunkedFile] = {}
        written = {c.hash for _, c, _ in batch if isinstance(c, ChunkedFile)}
        if small:
            async with self.ctx.db.session(write=False) as session:
                # Small puts come here unchecked (their own look-up cost more than the rest):
                # a batch for a missing repo stores nothing.
                await self._repo(session, bucket)
                known = await self.ctx.service.stored_files(session, set(small))
            new = {h: data for h, data in small.items() if h not in known}
            known |= await self.ctx.chunks.write_many(new)
            written |= set(new)
        files: dict[str, ChunkedFile] = {}
        for path, content, _ in batch:
            # The last put of a path wins, as it would have one request after another.
            files[path] = known[hash_bytes(content)] if isinstance(content, bytes) else content
        return list(files.items()), written

    async def _stage_pending(self, bucket: str, ref: str) -> None:
        """Take the ref's waiting puts batch by batch. A batch's contents are stored while
        the one before it is written to SQL: each step waits on the event loop between its
        statements, and with many requests in flight a wait is a turn of the loop: the two
        steps one after the other (44 ms for a batch of 28 in the benchmark) held every put
        for their sum."""
        key = (bucket, ref)
        try:
            while batch := self._pending.pop(key, None):
                writing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                before = self._staging.get(key)
                task = asyncio.create_task(
                    self._stage_batch(bucket, ref, batch, writing, before)
                )
                self._staging[key] = task
                task.add_done_callback(
                    lambda done: self._staging.pop(key) if self._staging.get(key) is done
                    else None
                )
                # The next batch is taken when this one goes to SQL: it grows meanwhile, and
                # a batch costs the same few statements whatever its size.
                await writing
        finally:
            del self._stagers[key]
            # Stopped early (the service is shutting down): nobody would stage these.
            for *_, waiting in self._pending.pop(key, []):
                if not waiting.done():
                    waiting.set_exception(Unavailable("the S3 gateway is stopping; retry"))

    async def _stage_batch(self, bucket: str, ref: str, batch: Batch,
                           writing: asyncio.Future[None],
                           before: asyncio.Task[None] | None) -> None:
        """Store one batch, then (after the batch before it, so that the last put of a path
        still wins) stage it in one transaction: its puts are all in the commit or none."""
        outcome: str | BaseException = Unavailable("the S3 gateway is stopping; retry")
        try:
            try:
                files, written = await self._store_small(bucket, batch)
                if before is not None:
                    await asyncio.wait([before])
            finally:
                if not writing.done():
                    writing.set_result(None)

            async def stage(session: AsyncSession, row: RepoRow, commit: str) -> None:
                await self.ctx.service.put_files(session, row, commit, files, written=written)

            outcome = await self._write(bucket, ref, stage)
        except Exception as e:
            outcome = e
        finally:
            # Also when cancelled (the service is stopping): no put is left waiting.
            for *_, waiting in batch:
                if waiting.done():
                    continue
                if isinstance(outcome, BaseException):
                    waiting.set_exception(outcome)
                else:
                    waiting.set_result(outcome)

    async def delete_object(self, bucket: str, key: str) -> None:
        """Deleting a key that is not there succeeds, as in S3, and changes nothing (no empty
        commit)."""
        ref, path = split_key(bucket, key)

        async def stage(session: AsyncSession, row: RepoRow, commit: str) -> None:
            try:
                await self.ctx.service.delete_path(session, row, commit, path)
            except NotFound:
                raise _NothingToDelete from None  # rolls back a commit opened for this

        try:
            await self._write(bucket, ref, stage)
        except _NothingToDelete:
            return

    async def copy_object(self, bucket: str, key: str, source_bucket: str, source_key: str
                          ) -> tuple[ObjectInfo, str]:
        """A server-side copy: the new key points at the stored content, no bytes move."""
        info, stored = await self.head_object(source_bucket, source_key)
        ref, path = split_key(bucket, key)
        commit = await self._put_stored(bucket, ref, path, stored)
        return info, commit

    # --- multipart ---------------------------------------------------------------------------

    async def create_upload(self, bucket: str, key: str) -> str:
        split_key(bucket, key)
        async with self.ctx.db.session(write=False) as session:
            await self._repo(session, bucket)
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = Upload(bucket, key)
        return upload_id

    def upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or (upload.bucket, upload.key) != (bucket, key):
            raise S3Error(404, "NoSuchUpload", f"no multipart upload {upload_id} for {key!r}",
                          f"/{bucket}/{key}")
        return upload

    async def upload_part(self, upload: Upload, number: int, body: AsyncIterable[bytes]
                          ) -> ChunkedFile:
        if not 1 <= number <= 10_000:
            raise S3Error(400, "InvalidArgument", "partNumber must be 1 to 10000")
        part = await self.ctx.chunks.write_stream(body)
        upload.parts[number] = part
        return part

    async def complete_upload(self, upload_id: str, upload: Upload, numbers: list[int]
                              ) -> tuple[ChunkedFile, str]:
        missing = [n for n in numbers if n not in upload.parts]
        if missing or not numbers or numbers != sorted(set(numbers)):
            raise S3Error(400, "InvalidPart" if missing else "InvalidPartOrder",
                          f"parts {missing or numbers} are not uploaded or not in order")
        parts = [upload.parts[n] for n in numbers]
        chunks = tuple(c for p in parts for c in p.chunks)
        size = sum(p.size for p in parts)
        # A file's hash is that of its whole content: read the parts back once to get it.
        hasher = blake3.blake3()
        async for piece in self.ctx.chunks.read(chunks):
            hasher.update(piece)
        stored = ChunkedFile(hasher.hexdigest(), size, chunks)
        ref, path = split_key(upload.bucket, upload.key)
        commit = await self._put_stored(upload.bucket, ref, path, stored)
        self.uploads.pop(upload_id, None)
        return stored, commit

    def abort_upload(self, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)


class _NothingToDelete(Exception):
    pass


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _grouped(keys: list[ObjectInfo], prefix: str, delimiter: str
             ) -> list[tuple[str, ObjectInfo | None]]:
    """Keys and common prefixes, in S3's order (bytewise by key)."""
    items: dict[str, ObjectInfo | None] = {}
    for info in keys:
        rest = info.key[len(prefix):]
        cut = rest.find(delimiter) if delimiter else -1
        if cut >= 0:
            items.setdefault(prefix + rest[: cut + len(delimiter)], None)
        else:
            items[info.key] = info
    return sorted(items.items(), key=lambda item: item[0].encode())


def _page(items: list[tuple[str, ObjectInfo | None]], after: str, max_keys: int) -> Listing:
    if after:
        items = [(k, v) for k, v in items if k.encode() > after.encode()
                 and not (after.endswith("/") and k.startswith(after))]
    page = items[:max_keys]
    truncated = len(items) > max_keys
    return Listing(
        objects=[v for _, v in page if v is not None],
        prefixes=[k for k, v in page if v is None],
        truncated=truncated,
        next_marker=page[-1][0] if truncated and page else None,
    )
