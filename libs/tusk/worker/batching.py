"""Datum batching (``transform.datum_batching: true``), the worker's side: the command starts
once and asks for each datum in turn (:mod:`tusk.worker.nextdatum`), as with Pachyderm's
``pachctl next datum``, so a model it loads is loaded once per shard rather than per datum.

Each datum keeps the guarantees of one run per datum: it is staged alone at the pfs root (its
inputs, an empty ``out/``), its outputs are uploaded and its result and log written to the meta
commit before the next one is handed out, datums with a successful result are skipped, and a
failure costs that datum an attempt. A datum fails an attempt when the command says so
(``next-datum --error``), when its outputs cannot be uploaded, when it runs past
``datum_timeout`` (the command is stopped and started again), or when the command exits while
it holds it (started again for the datums left). After its last try ``err_cmd`` runs as for an
unbatched datum. A command that exits without ever asking for a datum fails the shard's
remaining datums with that reason: it was not written for batching.

The command's output goes to the log of the datum it is working on; what it prints before its
first datum (loading a model) goes to that first datum's log.

The worker's part of a datum overlaps the command's: while the command works on one datum, the
next one's inputs are downloaded into ``<root>/.scratch`` (Pachyderm's name for the worker's
space at ``/pfs/.scratch``), and the outputs handed back so far, moved there out of ``out/``,
are uploaded — in one request for all the datums handed back while the previous upload was
under way (at most :data:`UPLOAD_DATUMS`, each path once), so a fast command does not pay a
request per datum. A datum's result is recorded once its upload is done; an upload the repo
refuses is tried again datum by datum, and fails only the datum whose outputs it refused.
Outputs that are links into the inputs, and every datum of a spec with ``err_cmd`` (which must
see the failed datum's files), are uploaded before the next datum is handed out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tusk.worker.live import LiveCopy
from tusk.worker.nextdatum import SOCKET_ENV
from tusk.worker.process import (
    READ_SIZE,
    DatumLog,
    quote_tail,
    start_command,
    stop_command,
)
from tusk.worker.protocol import DatumResult, DatumSpec, OutputFile
from tusk.worker.sandbox import Mount
from tusk.worker.transfer import (
    DatumError,
    LocalFile,
    empty_directory,
    scan_outputs,
    stage_inputs,
    upload_outputs,
)

if TYPE_CHECKING:
    from tusk.worker.runtime import _ResultBatcher, _ShardRunner

UPLOAD_DATUMS = 64
"""Most datums' outputs an upload carries; past it, the command waits for the one under way."""
SCRATCH = ".scratch"
"""The worker's own directory in the pfs root (as Pachyderm's ``/pfs/.scratch``): the next
datum's inputs and the last one's outputs while they move. Not shown in the sandbox."""
CONTROL_IN_SANDBOX = Path("/run/tusk-worker")
"""Where the command sees the worker's socket and the ``pachctl`` shim in the sandbox."""
_PACHCTL = """#!/bin/sh
# Pachyderm's `pachctl next datum`, so code written for its datum batching runs unchanged.
if [ "$1" = next ] && [ "$2" = datum ]; then
  shift 2
  exec {python} -m tusk.worker.nextdatum "$@"
fi
echo "pachctl $*: inside a tusk pipeline only 'pachctl next datum' is available" >&2
exit 2
"""
_State = Literal["success", "failed", "recovered"]
_TUSK_WORKER = """#!/bin/sh
exec {python} -m tusk.worker.entry "$@"
"""


@dataclass
class _Request:
    error: str | None
    answer: asyncio.Future[dict[str, object]]
    accepted: float
    """When its connection was accepted (``time.monotonic()``)."""


@dataclass
class _Prefetch:
    """The next datum's inputs, being downloaded into a directory of the scratch space."""

    datum: DatumSpec
    directory: Path
    task: asyncio.Future[str | None]
    """A failure of the datum's, or None once its inputs are there."""


@dataclass
class _Outputs:
    """A handed-back datum's outputs, waiting for their upload or on their way."""

    datum: DatumSpec
    files: list[LocalFile]
    outbox: Path | None
    """Where they were moved out of ``out/`` to (None: they are still there)."""


@dataclass
class _Upload:
    """One request's worth of outputs, of one or more datums, going into the output commit."""

    datums: list[_Outputs]
    task: asyncio.Future[list[OutputFile]]


@dataclass
class _Sink:
    """Where the command's output goes: the current datum's log, or (between datums) a buffer
    that the next datum's log starts with."""

    current: DatumLog | None = None
    pending: bytearray = field(default_factory=bytearray)
    stderr_tail: bytearray = field(default_factory=bytearray)

    def write(self, data: bytes, *, stderr: bool = False) -> None:
        if self.current is not None:
            self.current.write(data)
        else:
            self.pending += data
            del self.pending[: max(0, len(self.pending) - (1 << 20))]
        if stderr:
            self.stderr_tail += data
            del self.stderr_tail[: max(0, len(self.stderr_tail) - 4096)]

    def attach(self, log: DatumLog | None) -> None:
        if log is not None and self.pending:
            log.write(bytes(self.pending))
            self.pending.clear()
        self.current = log


@dataclass
class _Running:
    process: asyncio.subprocess.Process
    exited: asyncio.Future[None]
    pumps: asyncio.Future[tuple[None, None]]
    started: float
    """Before the process was started (``time.monotonic()``): a request accepted earlier
    came from a process stopped since."""
    took_a_datum: bool = False


class BatchedShard:
    """Serves the shard's datums to one long-lived command at a time."""

    def __init__(
        self, runner: _ShardRunner, datums: list[DatumSpec], batcher: _ResultBatcher, root: Path
    ) -> None:
        self.runner = runner
        self.spec = runner.spec
        self.batcher = batcher
        self.root = root
        self.queue = collections.deque(datums)
        self.inputs = sorted({part.name for d in datums for part in d.inputs})
        self.attempts: dict[str, int] = {}
        self.logs: dict[str, DatumLog] = {}
        self.started_at: dict[str, datetime] = {}
        self.results: list[DatumResult] = []
        self.requests: asyncio.Queue[_Request] = asyncio.Queue()
        self.sink = _Sink()
        self.current: DatumSpec | None = None
        self.log = runner.log
        self.sidecar = contextlib.AsyncExitStack()
        self.s3_env: dict[str, str] = {}
        self.prefetch: _Prefetch | None = None
        self.upload: _Upload | None = None
        self.outgoing: list[_Outputs] = []
        """Handed back since the upload under way began: the next upload's."""
        self.scratch = root / SCRATCH
        self.moves = 0

    async def run(self) -> list[DatumResult]:
        control = Path(tempfile.mkdtemp(prefix="tusk-batch-"))  # short: a socket path is <108
        try:
            server = await asyncio.start_unix_server(self._serve, path=str(control / "next.sock"))
        except OSError:
            shutil.rmtree(control, ignore_errors=True)
            raise
        running: _Running | None = None
        try:
            # The S3 sidecar (pfs.s3, s3_out) serves the staged datum, whichever it is.
            self.s3_env = await self.sidecar.enter_async_context(
                self.runner._s3_sidecar(self.root, None)
            )
            self._write_shims(control)
            shutil.rmtree(self.scratch, ignore_errors=True)  # a stopped worker's, in a pod
            for name in [*self.inputs, "out"]:
                (self.root / name).mkdir(exist_ok=True)
            while self.queue or self.current is not None or self.upload or self.outgoing:
                if running is None:
                    await self._drain()  # a failed upload puts its datum back in the queue
                    if not self.queue:
                        break
                    running = await self._start(control)
                    if running is None:
                        break  # the command cannot start: every datum left has failed
                running = await self._step(running)
        finally:
            if running is not None:
                await self._stop(running)
            await self._discard()
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
            shutil.rmtree(control, ignore_errors=True)
            await self.sidecar.aclose()
        return self.results

    # --- the command ---------------------------------------------------------------------------

    async def _start(self, control: Path) -> _Running | None:
        sandbox = self.runner.sandbox
        view = CONTROL_IN_SANDBOX if sandbox.active else control
        try:
            env, mounts = self.runner._secrets(self._command_env(view))
        except DatumError as e:
            await self._fail_all(str(e))
            return None
        if sandbox.active:
            mounts = [*mounts, Mount(control, CONTROL_IN_SANDBOX, writable=True)]
        argv = sandbox.wrap(
            self.spec.transform.cmd, root=self.root, inputs=self.inputs, cwd=Path.cwd(),
            extra=mounts,
        )  # fmt: skip
        started = time.monotonic()
        try:
            process, exited = await start_command(
                argv, stdin_lines=self.spec.transform.stdin, env=env
            )
        except OSError as e:
            await self._fail_all(f"cannot start {self.spec.transform.cmd[0]!r}: {e.strerror or e}")
            return None
        self.sink.stderr_tail.clear()
        assert process.stdout is not None
        assert process.stderr is not None
        pumps = asyncio.gather(
            _pump(process.stdout, self.sink), _pump(process.stderr, self.sink, stderr=True)
        )
        self.log.info("batching command started", pid=process.pid, datums_left=len(self.queue))
        return _Running(process, exited, pumps, started)

    def _command_env(self, control: Path) -> dict[str, str]:
        """The command's environment: the pipeline's, without any one datum's variables (each
        datum's come with ``next-datum``), and how to reach the worker."""
        first = self.queue[0] if self.queue else self.current
        assert first is not None
        env = self.runner._env(first, self.root)
        for name in _datum_variables(first, env):
            env.pop(name, None)
        env.update(self.s3_env)
        env[SOCKET_ENV] = str(control / "next.sock")
        env["PATH"] = f"{control / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def _write_shims(self, control: Path) -> None:
        """``pachctl next datum`` and ``tusk-worker next-datum`` wherever the worker's Python is
        (a sandboxed command sees this interpreter, read-only, but not necessarily its PATH)."""
        bin_dir = control / "bin"
        bin_dir.mkdir()
        python = shlex.quote(sys.executable)
        for name, text in (("pachctl", _PACHCTL), ("tusk-worker", _TUSK_WORKER)):
            shim = bin_dir / name
            shim.write_text(text.format(python=python))
            shim.chmod(0o755)

    async def _stop(self, running: _Running) -> None:
        await stop_command(running.process, running.exited, self.runner.kill_grace)
        try:
            await asyncio.wait_for(asyncio.shield(running.pumps), 2.0)
        except TimeoutError:  # a process that left the group holds the pipes open
            running.pumps.cancel()

    # --- one event: a request, the command's exit, or the datum's timeout ----------------------

    async def _step(self, running: _Running) -> _Running | None:
        """Handle what happens next; the running command, or None once it is gone."""
        request: asyncio.Future[_Request] = asyncio.ensure_future(self.requests.get())
        events: set[asyncio.Future[Any]] = {request, running.exited}
        timeout = self.spec.datum_timeout_seconds if self.current is not None else None
        try:
            done, _ = await asyncio.wait(
                events, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not request.done():
                request.cancel()
        if request in done:
            asked = request.result()
            if asked.accepted < running.started:
                # From a command stopped since (its datum has been dealt with): not ours.
                _answer(asked, {"done": True})
                return running
            running.took_a_datum = True
            if not await self._answer(asked):
                await self._stop(running)
                return None
            return running
        if running.exited in done:
            await self._stop(running)  # the rest of its group, and the last of its output
            await self._exited(running)
            return None
        await self._stop(running)
        datum, self.current = self.current, None
        assert datum is not None
        await self._attempt_failed(datum, f"timed out after {timeout:g} s")
        return None

    async def _answer(self, request: _Request) -> bool:
        """Finish the current datum as the request says and hand out the next; False when
        there is none left (the command has been told)."""
        if self.upload is not None and self.upload.task.done():
            await self._settle()  # made while the command worked
        if self.current is not None:
            datum, self.current = self.current, None
            if request.error is not None:
                await self._attempt_failed(datum, f"the command reported: {request.error}")
            else:
                await self._collect(datum)
        if self.upload is None:
            self._send()  # while the command works on the next datum
        while True:
            if not self.queue:
                await self._drain()  # the last uploads: a failure puts its datum back
                if not self.queue:
                    break
            datum = self.queue.popleft()
            failure = await self._stage(datum)
            if failure is None:
                self.current = datum
                self._prefetch_next()
                env = self.runner._env(datum, self.root)  # shown at /pfs in the sandbox
                _answer(request, {"datum": datum.id, "env": _datum_env(datum, env)})
                return True
            await self._attempt_failed(datum, failure)
        _answer(request, {"done": True})
        return False

    async def _exited(self, running: _Running) -> None:
        code = running.process.returncode
        how = (
            f"killed by signal {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exit code {code}"
        )
        why = f"the command exited ({how})" + quote_tail(bytes(self.sink.stderr_tail))
        if self.current is not None:
            datum, self.current = self.current, None
            await self._attempt_failed(datum, f"{why} while working on the datum")
        elif not running.took_a_datum:
            await self._fail_all(
                f"{why} without asking for a datum: with transform.datum_batching the command "
                "must call `tusk-worker next-datum` (or `pachctl next datum`) for each datum"
            )

    # --- datums ---------------------------------------------------------------------------------

    def _log(self, datum: str) -> DatumLog:
        """The datum's log, made (and its live copy begun) on first use."""
        log = self.logs.get(datum)
        if log is None:
            log = self.logs[datum] = DatumLog(live=LiveCopy(datum))
        return log

    async def _stage(self, datum: DatumSpec) -> str | None:
        attempt = self.attempts.get(datum.id, 0) + 1
        self.attempts[datum.id] = attempt
        self.started_at.setdefault(datum.id, datetime.now(UTC))
        log = self._log(datum.id)
        log.line(
            f"=== tusk: datum {datum.id}, attempt {attempt} of {self.spec.datum_tries} "
            f"(batched), started {datetime.now(UTC).isoformat(timespec='milliseconds')} ==="
        )
        self.sink.attach(log)
        prefetch, self.prefetch = self.prefetch, None
        if prefetch is not None and prefetch.datum is not datum:  # a failed datum went first
            await self._drop(prefetch)
            prefetch = None
        try:
            self._empty()  # a datum's few files: a thread hop would cost more
            if prefetch is None:
                return await self._fetch(datum, self.root)
            failure = await prefetch.task
            if failure is None:
                for name in os.listdir(prefetch.directory):  # each input's directory
                    _move_entries(prefetch.directory / name, self.root / name)
            return failure
        except OSError as e:
            return f"cannot stage the inputs: {e}"
        finally:
            if prefetch is not None:
                shutil.rmtree(prefetch.directory, ignore_errors=True)

    async def _fetch(self, datum: DatumSpec, root: Path) -> str | None:
        """Download the datum's inputs below ``root``; the datum's failure, if any."""
        try:
            await stage_inputs(self.runner.client, datum.inputs, root, self.runner.retry)
        except DatumError as e:
            return str(e)
        except OSError as e:
            return f"cannot stage the inputs: {e}"
        return None

    def _prefetch_next(self) -> None:
        """Begin downloading the next datum's inputs while the command works on this one."""
        if not self.queue:
            return
        directory = self._scratch_directory("next")
        datum = self.queue[0]
        self.prefetch = _Prefetch(
            datum, directory, asyncio.ensure_future(self._fetch(datum, directory))
        )

    def _scratch_directory(self, kind: str) -> Path:
        self.moves += 1
        directory = self.scratch / f"{kind}-{self.moves}"
        directory.mkdir(parents=True)
        return directory

    async def _drop(self, prefetch: _Prefetch) -> None:
        prefetch.task.cancel()
        with contextlib.suppress(BaseException):
            await prefetch.task
        shutil.rmtree(prefetch.directory, ignore_errors=True)

    async def _discard(self) -> None:
        """Stop what is still moving when the shard ends early (an error, a cancellation)."""
        prefetch, self.prefetch = self.prefetch, None
        if prefetch is not None:
            await self._drop(prefetch)
        upload, self.upload, self.outgoing = self.upload, None, []
        if upload is not None:
            upload.task.cancel()
            with contextlib.suppress(BaseException):
                await upload.task
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _empty(self) -> None:
        # The directories stay: in the sandbox each is a mount point of the running command.
        for name in [*self.inputs, "out"]:
            directory = self.root / name
            directory.mkdir(exist_ok=True)
            empty_directory(directory)

    async def _collect(self, datum: DatumSpec) -> None:
        """Queue the datum's outputs for upload, moved out of ``out/`` so that it is free for the
        next datum; or, when they must stay (links into the inputs, ``err_cmd``), upload them
        now."""
        out = self.root / "out"
        try:
            files, notes = await asyncio.to_thread(scan_outputs, out)
        except DatumError as e:
            await self._attempt_failed(datum, str(e))
            return
        except OSError as e:
            await self._attempt_failed(datum, f"cannot read the outputs: {e}")
            return
        log = self.logs[datum.id]
        for note in notes:
            log.line(f"tusk: {note}")
        if self.spec.transform.err_cmd or not all(f.path.is_relative_to(out) for f in files):
            await self._drain()
            self.outgoing = [_Outputs(datum, files, None)]
            await self._drain()
            return
        paths = {f.remote for f in files}
        if len(self.outgoing) >= UPLOAD_DATUMS or any(
            paths.intersection(f.remote for f in o.files) for o in self.outgoing
        ):  # one request holds each path once
            await self._settle()
            self._send()
        outbox = self._scratch_directory("out")
        _move_entries(out, outbox)
        self.outgoing.append(_Outputs(datum, [_moved(f, out, outbox) for f in files], outbox))

    def _send(self, outputs: list[_Outputs] | None = None) -> None:
        """Begin uploading ``outputs`` (by default all handed back so far) together."""
        if outputs is None:
            outputs, self.outgoing = self.outgoing, []
        if not outputs:
            return
        upload = upload_outputs(
            self.runner.client,
            self.spec.output_repo,
            self.spec.output_commit,
            [f for o in outputs for f in o.files],
            self.runner.retry,
        )
        self.upload = _Upload(outputs, asyncio.ensure_future(upload))

    async def _drain(self) -> None:
        """Upload everything handed back and record how it went."""
        while self.upload is not None or self.outgoing:
            await self._settle()
            self._send()

    async def _settle(self) -> None:
        """Wait for the upload under way and record each of its datums' results."""
        upload, self.upload = self.upload, None
        if upload is None:
            return
        try:
            uploaded = await upload.task
        except (DatumError, OSError) as e:
            if len(upload.datums) > 1:  # whose outputs were refused? Each alone says
                for outputs in upload.datums:
                    self._send([outputs])
                    await self._settle()
                return
            failure = str(e) if isinstance(e, DatumError) else f"cannot read the outputs: {e}"
            await self._uploaded(upload.datums[0], failure, [])
            return
        by_path = {f.path: f for f in uploaded}
        for outputs in upload.datums:
            mine = sorted((by_path[f.remote] for f in outputs.files), key=lambda f: f.path)
            await self._uploaded(outputs, None, mine)

    async def _uploaded(
        self, outputs: _Outputs, failure: str | None, uploaded: list[OutputFile]
    ) -> None:
        if outputs.outbox is not None:
            shutil.rmtree(outputs.outbox, ignore_errors=True)
        if failure is None:
            await self._finished(outputs.datum, "success", None, uploaded)
        else:
            await self._attempt_failed(outputs.datum, failure)

    async def _attempt_failed(self, datum: DatumSpec, failure: str) -> None:
        log = self._log(datum.id)
        self.sink.attach(None)
        attempt = self.attempts.get(datum.id, 1)
        log.line(f"=== tusk: attempt {attempt} failed: {failure.split('; stderr ends:')[0]} ===")
        if attempt < self.spec.datum_tries:
            self.queue.appendleft(datum)  # the same datum next, as a fresh attempt
            return
        recovered = await self.runner._recover(datum, self.root, log, failure)
        await self._finished(datum, "recovered" if recovered else "failed", failure, [])

    async def _finished(
        self, datum: DatumSpec, state: _State, failure: str | None, outputs: list[OutputFile]
    ) -> None:
        log = self._log(datum.id)
        del self.logs[datum.id]
        self.sink.attach(None)
        if state == "success":
            log.line(f"=== tusk: datum succeeded ({len(outputs)} outputs) ===")
        log_bytes = log.getvalue()
        started_at = self.started_at.pop(datum.id, datetime.now(UTC))
        result = DatumResult(
            datum=datum.id,
            job=self.spec.job,
            shard=self.spec.shard,
            state=state,
            attempts=self.attempts.get(datum.id, 1),
            outputs=tuple(outputs),
            error=failure,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            log_tail=log_bytes[-self.spec.log_tail_bytes :].decode(errors="replace")
            if self.spec.log_tail_bytes > 0
            else "",
        )
        log.end(state)
        self.results.append(result)
        await self.batcher.add(result, log_bytes)
        self.log.info("datum", datum=datum.id, state=state, attempts=result.attempts, batched=True)

    async def _fail_all(self, failure: str) -> None:
        datums = ([self.current] if self.current is not None else []) + list(self.queue)
        self.current = None
        self.queue.clear()
        for datum in datums:
            self.attempts.setdefault(datum.id, 1)
            self._log(datum.id).line(f"=== tusk: {failure} ===")
            await self._finished(datum, "failed", failure, [])

    # --- the socket -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = time.monotonic()
        try:
            line = await reader.readline()
            try:
                error = json.loads(line).get("error") if line.strip() else None
            except (ValueError, AttributeError):
                writer.write(b'{"problem": "not a next-datum request"}\n')
                return
            request = _Request(
                str(error) if error is not None else None,
                asyncio.get_running_loop().create_future(),
                accepted,
            )
            await self.requests.put(request)
            answer = await request.answer
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _move_entries(source: Path, target: Path) -> None:
    """Move what is in ``source`` into ``target`` (which may be a mount point, so it stays):
    renames, as both lie in the pfs root (a copy where they do not)."""
    target.mkdir(exist_ok=True)
    for entry in os.listdir(source):
        shutil.move(source / entry, target / entry)


def _moved(file: LocalFile, out: Path, outbox: Path) -> LocalFile:
    return dataclasses.replace(file, path=outbox / file.path.relative_to(out))


def _answer(request: _Request, answer: dict[str, object]) -> None:
    if not request.answer.done():
        request.answer.set_result(answer)


def _datum_variables(datum: DatumSpec, env: dict[str, str]) -> list[str]:
    """The names of the variables that differ from one datum to the next."""
    return list(_datum_env(datum, env))


def _datum_env(datum: DatumSpec, env: dict[str, str]) -> dict[str, str]:
    names = {part.name for part in datum.inputs}
    keys = {"PACH_DATUM_ID", "TUSK_DATUM"}
    for name in names:
        keys |= {name, f"{name}_COMMIT", f"PACH_DATUM_{name}_JOIN_ON"}
        keys |= {f"PACH_DATUM_{name}_GROUP_BY"}
    keys |= {k for k in env if k.startswith("PFS_")}
    return {k: env[k] for k in sorted(keys) if k in env}


async def _pump(stream: asyncio.StreamReader, sink: _Sink, *, stderr: bool = False) -> None:
    while piece := await stream.read(READ_SIZE):
        sink.write(piece, stderr=stderr)
