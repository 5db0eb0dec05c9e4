"""Running a shard: its datums one after another, each staged in a clean pfs root, run, its
outputs uploaded to the output commit and its result and log written to the meta commit.

A datum's result is queued only after its outputs are uploaded, and a queued result reaches the
meta commit in one request with its log (see :class:`_ResultBatcher`), so a result in the meta
commit means the datum's outputs are in the output commit. A restarted shard therefore skips
the datums that have a successful result and runs the others again; a datum that was
interrupted, or whose queued result was never written, leaves no result (its outputs may be
partly uploaded: only the results say which files count).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog
from pydantic import ValidationError

from tusk.client import RepoClient
from tusk.errors import InvalidArgument, NotFound
from tusk.paths import split_project
from tusk.worker.batching import SCRATCH, BatchedShard
from tusk.worker.live import LiveCopy
from tusk.worker.process import STDERR_QUOTE, CommandResult, DatumLog, run_command
from tusk.worker.protocol import (
    DatumInputSpec,
    DatumResult,
    DatumSpec,
    OutputFile,
    SecretSpec,
    ShardSpec,
    log_path,
    parse_results_batch,
    results_batch_path,
    results_dir,
    shard_path,
)
from tusk.worker.sandbox import PFS, Mount, Sandbox
from tusk.worker.transfer import (
    DatumError,
    RetryPolicy,
    check_input_name,
    empty_directory,
    scan_outputs,
    stage_inputs,
    upload_outputs,
)

KILL_GRACE = 5.0
BATCH_RESULTS = 64
"""Queued results that are written at once, without waiting for BATCH_MAX_WAIT."""
BATCH_MAX_WAIT = 0.2
"""Seconds the oldest queued result waits at most before its batch is written."""
STOP_FLUSH_TIMEOUT = 5.0
"""Seconds a stopped worker spends at most writing the results it has queued."""
_PARALLEL_READS = 8
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9_]")

logger = structlog.get_logger("tusk.worker")


@dataclass
class ShardOutcome:
    results: list[DatumResult] = field(default_factory=list)
    """The datums this run processed, in order."""
    already_done: list[str] = field(default_factory=list)
    """Datums skipped because an earlier run of the shard recorded them as successful."""

    @property
    def succeeded(self) -> list[str]:
        return [r.datum for r in self.results if r.state == "success"]

    @property
    def failed(self) -> list[str]:
        return [r.datum for r in self.results if r.state == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


async def load_shard_spec(
    client: RepoClient,
    output_repo: str,
    meta_commit: str,
    job: str,
    shard: int,
    *,
    retry: RetryPolicy | None = None,
) -> ShardSpec:
    """The shard's spec from the meta commit, checked against the address it was read from."""
    retry = retry or RetryPolicy()
    path = shard_path(job, shard)
    where = f"{output_repo}@{meta_commit}:{path}"
    try:
        data = await retry.call(lambda: _read(client, output_repo, meta_commit, path), where)
    except NotFound as e:
        raise NotFound(f"no shard spec at {where}: {e.message}") from e
    return parse_shard_spec(data, output_repo, meta_commit, job, shard)


def parse_shard_spec(
    data: bytes | str, output_repo: str, meta_commit: str, job: str, shard: int
) -> ShardSpec:
    """A shard spec (as the scheduler wrote it to the meta commit), checked against the
    address it belongs at."""
    where = f"{output_repo}@{meta_commit}:{shard_path(job, shard)}"
    try:
        spec = ShardSpec.model_validate_json(data)
    except ValidationError as e:
        raise InvalidArgument(f"the shard spec at {where} is not valid: {e}") from e
    expected = {
        "job": job,
        "shard": shard,
        "output_repo": output_repo,
        "meta_commit": meta_commit,
    }
    for name, value in expected.items():
        if getattr(spec, name) != value:
            raise InvalidArgument(
                f"the shard spec at {where} is for {name} {getattr(spec, name)!r}, not {value!r}"
            )
    return spec


async def successful_datums(
    client: RepoClient, repo: str, meta_commit: str, job: str, *, retry: RetryPolicy | None = None
) -> set[str]:
    """The job's datums with a successful result in any batch file of the meta commit."""
    retry = retry or RetryPolicy()

    async def listing() -> list[str]:
        entries = client.list_dir(repo, meta_commit, results_dir(job))
        return [e.path async for e in entries if e.type == "file"]

    try:
        paths = await retry.call(listing, "list datum results")
    except NotFound:  # no datum of the job has a result yet
        return set()
    slots = asyncio.Semaphore(_PARALLEL_READS)

    async def read(path: str) -> bytes:
        async with slots:
            return await retry.call(
                functools.partial(_read, client, repo, meta_commit, path),
                path,
            )

    done: set[str] = set()
    for path, data in zip(paths, await asyncio.gather(*map(read, paths)), strict=True):
        results, problems = parse_results_batch(data)
        for problem in problems:
            logger.warning(
                "unreadable line in a results batch, ignored", path=path, problem=problem
            )
        done.update(r.datum for r in results if r.job == job and r.state == "success")
    return done


async def run_shard(
    client: RepoClient,
    spec: ShardSpec,
    *,
    pfs_root: Path | None = None,
    scratch: Path | None = None,
    retry: RetryPolicy | None = None,
    kill_grace: float = KILL_GRACE,
    base_env: Mapping[str, str] | None = None,
    already_done: set[str] | None = None,
    sandbox: Sandbox | None = None,
    secrets_dir: Path | None = None,
) -> ShardOutcome:
    """Run every datum of the shard that has no successful result yet.

    ``pfs_root`` set: every datum is staged there (the directory is emptied between datums);
    unset: each datum gets a fresh directory under ``scratch`` (default: the system temporary
    directory). ``base_env`` is the environment the command starts from (default: this
    process's). ``already_done``: what :func:`successful_datums` says, if the caller asked
    already (the worker asks while it reads the spec); otherwise it is asked here. Raises
    :mod:`tusk.errors` exceptions for worker-level failures (the repo service unreachable
    after retries, a commit gone or finished); a datum that fails is not an exception but a
    failed result.

    ``sandbox``: how each command is wrapped (default: not at all); an active sandbox shows
    the datum at ``/pfs``. ``secrets_dir``: where ``transform.secrets`` are read, one directory
    per secret holding a file per key (as Kubernetes mounts them); None: the platform provides
    them (the Kubernetes runner does), so a shard that names secrets must not run here
    otherwise.
    """
    runner = _ShardRunner(
        client=client,
        spec=spec,
        already_done=already_done,
        pfs_root=pfs_root,
        scratch=scratch,
        retry=retry or RetryPolicy(),
        kill_grace=kill_grace,
        base_env=dict(os.environ if base_env is None else base_env),
        log=logger.bind(job=spec.job, shard=spec.shard),
        sandbox=sandbox or Sandbox(None),
        secrets_dir=secrets_dir,
    )
    return await runner.run()


@dataclass
class _ShardRunner:
    client: RepoClient
    spec: ShardSpec
    already_done: set[str] | None
    pfs_root: Path | None
    scratch: Path | None
    retry: RetryPolicy
    kill_grace: float
    base_env: dict[str, str]
    log: structlog.typing.FilteringBoundLogger
    sandbox: Sandbox = field(default_factory=lambda: Sandbox(None))
    secrets_dir: Path | None = None

    async def run(self) -> ShardOutcome:
        _check_spec(self.spec)
        if self.scratch is not None:
            self.scratch.mkdir(parents=True, exist_ok=True)
        if self.pfs_root is not None:
            _check_pfs_root(self.pfs_root, self.spec)
        outcome = ShardOutcome()
        spec = self.spec
        done = self.already_done
        if done is None:
            done = await successful_datums(
                self.client, spec.output_repo, spec.meta_commit, spec.job, retry=self.retry
            )
        done &= {d.id for d in spec.datums}
        self.log.info(
            "shard started",
            datums=len(self.spec.datums),
            already_done=len(done),
            pfs_root=str(self.pfs_root or "per datum"),
        )
        started = time.monotonic()
        async with _ResultBatcher(self.client, self.spec, self.retry, self.log) as batcher:
            todo: list[DatumSpec] = []
            for datum in self.spec.datums:
                if datum.id in done:
                    outcome.already_done.append(datum.id)
                    self.log.info("datum already done", datum=datum.id)
                elif not spec.transform.datum_batching:
                    outcome.results.append(await self._run_datum(datum, batcher))
                else:
                    todo.append(datum)
            if todo:
                async with self._datum_root() as root:
                    shard = BatchedShard(self, todo, batcher, root)
                    outcome.results.extend(await shard.run())
        self.log.info(
            "shard finished",
            succeeded=len(outcome.succeeded),
            failed=len(outcome.failed),
            already_done=len(outcome.already_done),
            duration_s=round(time.monotonic() - started, 3),
        )
        return outcome

    # --- one datum ---------------------------------------------------------------------------

    async def _run_datum(self, datum: DatumSpec, batcher: _ResultBatcher) -> DatumResult:
        spec = self.spec
        started_at = datetime.now(UTC)
        started = time.monotonic()
        log = DatumLog(live=LiveCopy(datum.id))
        failure: str | None = None
        outputs: list[OutputFile] = []
        attempt = 0
        async with self._datum_root() as root:
            for attempt in range(1, spec.datum_tries + 1):
                log.line(
                    f"=== tusk: datum {datum.id}, attempt {attempt} of {spec.datum_tries}, "
                    f"started {datetime.now(UTC).isoformat(timespec='milliseconds')} ==="
                )
                attempt_started = time.monotonic()
                failure, outputs = await self._attempt(datum, root, log)
                took = f"{time.monotonic() - attempt_started:.3f} s"
                if failure is None:
                    log.line(
                        f"=== tusk: attempt {attempt} succeeded ({took}, {len(outputs)} "
                        "outputs) ==="
                    )
                    break
                # The stderr a failure quotes is just above in the log: not twice.
                why = failure.partition(STDERR_QUOTE)[0]
                log.line(f"=== tusk: attempt {attempt} failed: {why} ({took}) ===")
            recovered = failure is not None and await self._recover(datum, root, log, failure)
        log_bytes = log.getvalue()
        state = "success" if failure is None else "recovered" if recovered else "failed"
        result = DatumResult(
            datum=datum.id,
            job=spec.job,
            shard=spec.shard,
            state=state,
            attempts=attempt,
            outputs=tuple(outputs) if failure is None else (),
            error=failure,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            log_tail=_tail(log_bytes, spec.log_tail_bytes),
        )
        log.end(state)
        await batcher.add(result, log_bytes)
        fields: dict[str, object] = {"error": failure} if failure else {"outputs": len(outputs)}
        self.log.info(
            "datum",
            datum=datum.id,
            state=result.state,
            attempts=attempt,
            duration_s=round(time.monotonic() - started, 3),
            **fields,
        )
        return result

    async def _attempt(
        self, datum: DatumSpec, root: Path, log: DatumLog
    ) -> tuple[str | None, list[OutputFile]]:
        """One attempt at a datum: why it failed (None if it did not), and its outputs."""
        spec = self.spec
        await _prepare_root(root)
        try:
            await stage_inputs(self.client, datum.inputs, root, self.retry)
        except DatumError as e:
            return str(e), []
        except OSError as e:
            return f"cannot stage the inputs: {e}", []
        try:
            env, mounts = self._secrets(self._env(datum, root))
        except DatumError as e:
            return str(e), []
        async with self._s3_sidecar(root, log) as s3_env:
            command = await self._run(
                spec.transform.cmd, spec.transform.stdin, datum, root, env | s3_env, mounts, log
            )
        failure = command.failure
        if command.exit_code in spec.transform.accept_return_code:
            log.line(f"tusk: exit code {command.exit_code} is accepted (accept_return_code)")
            failure = None
        if failure is not None:
            return failure, []
        try:
            files, notes = await asyncio.to_thread(scan_outputs, root / "out")
            for note in notes:
                log.line(f"tusk: {note}")
            uploaded = await upload_outputs(
                self.client, spec.output_repo, spec.output_commit, files, self.retry
            )
        except DatumError as e:
            return str(e), []
        except OSError as e:
            return f"cannot read the outputs: {e}", []
        return None, uploaded

    @contextlib.asynccontextmanager
    async def _s3_sidecar(
        self, root: Path, log: DatumLog | None
    ) -> AsyncIterator[dict[str, str]]:
        """Pachyderm's S3 sidecar while the command runs, if the pipeline asks for one
        (``pfs.s3`` inputs, ``s3_out``): the environment that points the command at it."""
        spec = self.spec
        if not spec.s3_inputs and not spec.s3_out:
            yield {}
            return
        # Imported here: aiohttp's server costs every worker ~0.1 s of start-up otherwise.
        from tusk.worker.s3sidecar import serve_sidecar

        async with serve_sidecar(root, spec.s3_inputs, writable=spec.s3_out) as access:
            buckets = [*spec.s3_inputs, *(["out"] if spec.s3_out else [])]
            where = f"S3 buckets {', '.join(buckets)} at S3_ENDPOINT={access.endpoint}"
            if log is not None:
                log.line(f"tusk: {where}")
            self.log.info("s3 sidecar", endpoint=access.endpoint, buckets=buckets)
            yield access.env()

    async def _run(
        self,
        cmd: tuple[str, ...],
        stdin: tuple[str, ...],
        datum: DatumSpec,
        root: Path,
        env: dict[str, str],
        mounts: list[Mount],
        log: DatumLog,
    ) -> CommandResult:
        argv = self.sandbox.wrap(
            cmd, root=root, inputs={p.name for p in datum.inputs}, cwd=Path.cwd(), extra=mounts
        )
        return await run_command(
            argv,
            stdin_lines=stdin,
            env=env,
            log=log,
            time_limit=self.spec.datum_timeout_seconds,
            kill_grace=self.kill_grace,
        )

    async def _recover(self, datum: DatumSpec, root: Path, log: DatumLog, failure: str) -> bool:
        """Pachyderm's ``err_cmd``: run once a datum has failed every try; if it succeeds the
        datum is ``recovered`` (it does not fail the job, and writes no output)."""
        transform = self.spec.transform
        if not transform.err_cmd:
            return False
        log.line("=== tusk: running err_cmd ===")
        try:
            env, mounts = self._secrets(self._env(datum, root))
        except DatumError as e:
            log.line(f"=== tusk: err_cmd cannot run: {e} ===")
            return False
        command = await self._run(
            transform.err_cmd, transform.err_stdin, datum, root, env, mounts, log
        )
        if command.failure is None:
            log.line(
                f"=== tusk: err_cmd succeeded; the datum is recovered (it failed: {failure}) ==="
            )
            return True
        log.line(f"=== tusk: err_cmd failed: {command.failure} ===")
        return False

    def _secrets(self, env: dict[str, str]) -> tuple[dict[str, str], list[Mount]]:
        """``transform.secrets`` read from the secrets directory: keys into the environment,
        whole secrets mounted (in the sandbox only: outside it there is nowhere to mount)."""
        secrets = self.spec.transform.secrets
        if not secrets:
            return env, []
        if self.secrets_dir is None:
            # The platform provides them (a Kubernetes pod): check, never assume.
            for i, secret in enumerate(secrets):
                missing = (secret.env_var is not None and secret.env_var not in env) or (
                    secret.mount_path is not None and not Path(secret.mount_path).is_dir()
                )
                if missing:
                    raise DatumError(
                        f"transform.secrets[{i}]: secret {secret.name!r} was not provided; set "
                        "TUSK_WORKER_SECRETS_DIR to a directory of <name>/<key> files"
                    )
            return env, []
        mounts: list[Mount] = []
        for i, secret in enumerate(secrets):
            where = self.secrets_dir / secret.name
            if not where.is_dir():
                raise DatumError(
                    f"transform.secrets[{i}]: secret {secret.name!r} not found: the local runner "
                    f"reads secrets from {self.secrets_dir}/<name>/<key> files "
                    "(TUSK_WORKER_SECRETS_DIR)"
                )
            if secret.env_var is not None and secret.key is not None:
                env[secret.env_var] = _read_secret_key(where, secret, i)
            if secret.mount_path is not None:
                if not self.sandbox.active:
                    raise DatumError(
                        f"transform.secrets[{i}].mount_path: the secret cannot be mounted at "
                        f"{secret.mount_path} without the sandbox (install bubblewrap)"
                    )
                mounts.append(Mount(where, Path(secret.mount_path)))
        return env, mounts

    def _env(self, datum: DatumSpec, root: Path) -> dict[str, str]:
        spec = self.spec
        env = {**self.base_env, **spec.transform.env}
        # Inside the sandbox the command sees the datum at /pfs, as in Pachyderm's containers.
        view = PFS if self.sandbox.active else root
        by_name: dict[str, list[DatumInputSpec]] = {}
        for part in datum.inputs:
            by_name.setdefault(part.name, []).append(part)
        for name, parts in by_name.items():
            # Pachyderm's convention: the variable names the datum's file or directory; an
            # input with several parts (group, join) names its directory instead.
            staged = view / name
            if len(parts) == 1:
                staged = staged.joinpath(*Path(parts[0].path).parts[1:])
            env[f"PFS_{_ENV_UNSAFE.sub('_', name).upper()}"] = str(staged)
            # Pachyderm's own: <input>=<path of the part> (the last, as its worker appends
            # them in order), <input>_COMMIT, and the datum's join and group keys.
            last = parts[-1]
            env[name] = str(view.joinpath(name, *Path(last.path).parts[1:]))
            env[f"{name}_COMMIT"] = last.commit
            for part in parts:
                if part.join_on is not None:
                    env[f"PACH_DATUM_{name}_JOIN_ON"] = part.join_on
                if part.group_by is not None:
                    env[f"PACH_DATUM_{name}_GROUP_BY"] = part.group_by
        env.update(
            PACH_JOB_ID=spec.job,
            PACH_DATUM_ID=datum.id,
            PACH_OUTPUT_COMMIT_ID=spec.output_commit,
            # Pachyderm's: the name within its project, and the project.
            PPS_PIPELINE_NAME=split_project("pipeline", spec.pipeline).name,
            PPS_PROJECT_NAME=split_project("pipeline", spec.pipeline).project,
        )
        if self.sandbox.active:
            env["HOME"] = "/tmp"  # noqa: S108 - the sandbox's private /tmp: the host's home is not there
        env.update(
            TUSK_PFS_ROOT=str(view),
            TUSK_JOB=spec.job,
            TUSK_PIPELINE=spec.pipeline,
            TUSK_SHARD=str(spec.shard),
            TUSK_DATUM=datum.id,
            TUSK_OUTPUT_REPO=spec.output_repo,
            TUSK_OUTPUT_COMMIT=spec.output_commit,
        )
        return env

    @contextlib.asynccontextmanager
    async def _datum_root(self) -> AsyncIterator[Path]:
        if self.pfs_root is not None:
            try:
                yield self.pfs_root
            finally:
                await asyncio.to_thread(_clean_root, self.pfs_root)
            return
        root = Path(await asyncio.to_thread(tempfile.mkdtemp, "", "tusk-datum-", self.scratch))
        try:
            yield root
        finally:
            try:
                await asyncio.to_thread(_remove_tree, root)
            except OSError as e:
                self.log.warning("cannot remove a datum directory", path=str(root), error=str(e))


class _ResultBatcher:
    """Queues finished datums' results and logs and writes them to the meta commit in batches,
    so tiny datums do not cost a request each.

    A batch is one ``put_files`` request: the queued datums' logs and one new batch file of
    their results, all or none, so a result is never there without its log. It is written when
    BATCH_RESULTS results are queued, when the oldest has waited BATCH_MAX_WAIT (a background
    task, so a long datum does not hold back the results before it), when the shard ends, and,
    within STOP_FLUSH_TIMEOUT, when the shard stops on an error or a cancellation, so finished
    datums are not run again. A batch that cannot be written (after the retry policy) is a
    worker error.
    """

    def __init__(
        self,
        client: RepoClient,
        spec: ShardSpec,
        retry: RetryPolicy,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._client = client
        self._spec = spec
        self._retry = retry
        self._log = log
        self._run = secrets.token_hex(4)  # batch file names of this run never meet another's
        self._seq = 0
        self._queue: list[_Queued] = []
        self._queued = asyncio.Event()  # set while the queue is not empty
        self._writing = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._timer = asyncio.create_task(self._flush_when_due())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._timer is not None
        self._timer.cancel()
        await asyncio.wait([self._timer])
        if error is None:
            self._raise_timer_failure()
            await self.flush()
            return
        try:
            async with asyncio.timeout(STOP_FLUSH_TIMEOUT):
                await self.flush()
        except Exception as e:  # the shard's own error is the one that counts
            self._log.warning(
                "cannot record the results of finished datums; they will run again",
                datums=len(self._queue),
                error=repr(e),
            )

    async def add(self, result: DatumResult, log: bytes) -> None:
        """Queue a datum's result and log; write the batch if it is full."""
        self._raise_timer_failure()
        self._queue.append(_Queued(result, log, time.monotonic()))
        self._queued.set()
        if len(self._queue) >= BATCH_RESULTS:
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued (what is queued meanwhile may wait for the next batch)."""
        async with self._writing:
            batch = list(self._queue)
            if batch:
                await self._write(batch)
                del self._queue[: len(batch)]  # only now: an interrupted write is done again
            if not self._queue:
                self._queued.clear()

    async def _write(self, batch: list[_Queued]) -> None:
        spec = self._spec
        # A new name for every write, also the write of an interrupted batch again: a batch
        # file is never rewritten (a datum may then have two lines, which readers allow).
        path = results_batch_path(spec.job, spec.shard, self._run, self._seq)
        self._seq += 1
        lines = b"".join(q.result.model_dump_json().encode() + b"\n" for q in batch)
        files = [(log_path(spec.job, q.result.datum), q.log) for q in batch] + [(path, lines)]
        await self._retry.call(
            lambda: self._client.put_files(spec.output_repo, spec.meta_commit, files),
            f"record {len(batch)} datum results",
        )
        self._log.debug("datum results recorded", batch=path, datums=len(batch))

    async def _flush_when_due(self) -> None:
        while True:
            await self._queued.wait()
            wait = self._queue[0].since + BATCH_MAX_WAIT - time.monotonic() if self._queue else 0
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                await self.flush()

    def _raise_timer_failure(self) -> None:
        timer = self._timer
        if timer is not None and timer.done() and not timer.cancelled():
            failure = timer.exception()
            if failure is not None:
                raise failure


@dataclass(frozen=True)
class _Queued:
    result: DatumResult
    log: bytes
    since: float  # time.monotonic() when it was queued


def _read_secret_key(where: Path, secret: SecretSpec, index: int) -> str:
    assert secret.key is not None
    path = where / secret.key
    try:
        return path.read_text().rstrip("\n")
    except FileNotFoundError:
        raise DatumError(
            f"transform.secrets[{index}].key: secret {secret.name!r} has no key {secret.key!r} "
            f"(no file {path})"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatumError(f"transform.secrets[{index}]: cannot read {path}: {e}") from None


def _tail(log: bytes, size: int) -> str:
    return log[-size:].decode(errors="replace") if size > 0 else ""


async def _read(client: RepoClient, repo: str, commit: str, path: str) -> bytes:
    async with aclosing(client.get_file(repo, commit, path)) as pieces:
        return b"".join([piece async for piece in pieces])


def _check_spec(spec: ShardSpec) -> None:
    where = f"shard {spec.shard} of job {spec.job}"
    if not spec.transform.cmd:
        raise InvalidArgument(f"{where}: transform.cmd is empty")
    if spec.datum_tries < 1:
        raise InvalidArgument(f"{where}: datum_tries is {spec.datum_tries}; it must be 1 or more")
    if spec.datum_timeout_seconds is not None and spec.datum_timeout_seconds <= 0:
        raise InvalidArgument(f"{where}: datum_timeout_seconds must be positive")
    seen: set[str] = set()
    for datum in spec.datums:
        if not datum.id or "/" in datum.id or datum.id in (".", "..") or datum.id in seen:
            raise InvalidArgument(
                f"{where}: datum id {datum.id!r} is empty, repeated or not a single path segment"
            )
        seen.add(datum.id)
        for part in datum.inputs:
            check_input_name(part.name)


def _check_pfs_root(root: Path, spec: ShardSpec) -> None:
    """Refuse to empty a directory that holds anything a worker would not have put there: a
    mistyped TUSK_PFS_ROOT must not wipe someone's files."""
    root.mkdir(parents=True, exist_ok=True)
    ours = {"out", SCRATCH} | {part.name for datum in spec.datums for part in datum.inputs}
    foreign = sorted(name for name in os.listdir(root) if name not in ours)
    if foreign:
        raise InvalidArgument(
            f"TUSK_PFS_ROOT {root} holds {', '.join(foreign[:5])}, which no worker put there; "
            "the worker empties that directory between datums, so point TUSK_PFS_ROOT at an "
            "empty directory (or leave it unset to stage each datum in a temporary directory)"
        )


async def _prepare_root(root: Path) -> None:
    """Empty the datum's root (in a thread: a failed attempt may have left a large tree; it is
    usually empty already) and make its ``out/``."""
    with os.scandir(root) as entries:
        leftovers = next(entries, None) is not None
    if leftovers:
        await asyncio.to_thread(_clean_root, root)
    (root / "out").mkdir()


def _clean_root(root: Path) -> None:
    try:
        empty_directory(root)
    except OSError:
        _make_writable(root)  # the command may have left read-only directories
        empty_directory(root)


def _remove_tree(root: Path) -> None:
    try:
        shutil.rmtree(root)
    except OSError:
        _make_writable(root)
        shutil.rmtree(root)


def _make_writable(root: Path) -> None:
    with contextlib.suppress(OSError):
        root.chmod(0o700)
    for directory, subdirs, _ in os.walk(root):
        for name in subdirs:
            path = Path(directory) / name
            if not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.chmod(0o700)
