"""Running the user's command for one attempt at a datum, and collecting what it prints.

The command runs in its own process group (a new session), so that a timeout or a worker
shutdown can stop it together with everything it started; whatever is left of the group when
the command exits is killed too, so nothing of one datum outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tusk.worker.live import LiveCopy
from tusk.worker.oom import memory_limit, oom_kills

LOG_LIMIT = 1 << 20
"""How much of a datum's output is kept: the last MiB."""
READ_SIZE = 64 * 1024
STDERR_TAIL_LINES = 5
STDERR_TAIL_CHARS = 800
"""How much of the end of a failed command's stderr its failure reason quotes."""
STDERR_QUOTE = "; stderr ends:\n"
DRAIN_TIMEOUT = 2.0
"""How long to wait for the output pipe to close once the command's process group is gone
(a process that left the group may hold it open)."""


class DatumLog:
    """A datum's log, all attempts: the user's stdout and stderr, interleaved as they were
    written, with the worker's own lines between attempts. Only the last ``limit`` bytes are
    kept."""

    def __init__(self, limit: int = LOG_LIMIT, *, live: LiveCopy | None = None) -> None:
        self.limit = limit
        self.live = live  # a copy to follow the datum while it runs (tusk.worker.live)
        self._buffer = bytearray()
        self._dropped = 0

    def write(self, data: bytes) -> None:
        if self.live is not None:
            self.live.add(data)
        self._buffer += data
        if len(self._buffer) > 2 * self.limit:  # trim now and then, not on every write
            self._trim()

    def line(self, text: str) -> None:
        """A line of the worker's own, on a line of its own."""
        if self._buffer and not self._buffer.endswith(b"\n"):
            self.write(b"\n")
        self.write(f"{text}\n".encode())

    def end(self, state: str) -> None:
        """The datum has ended (``success``, ``failed``, …): the end of its live copy."""
        if self.live is not None:
            self.live.end(state)
            self.live = None

    def _trim(self) -> None:
        excess = len(self._buffer) - self.limit
        if excess > 0:
            del self._buffer[:excess]
            self._dropped += excess

    def getvalue(self) -> bytes:
        self._trim()
        if not self._dropped:
            return bytes(self._buffer)
        notice = f"[tusk: log truncated, the first {self._dropped} bytes were dropped]\n"
        return notice.encode() + bytes(self._buffer)


@dataclass(frozen=True)
class CommandResult:
    failure: str | None
    """Why the attempt failed (``exit code 3``, ``timed out after 5 s``, …); None on success."""
    duration: float
    exit_code: int | None = None
    """The command's exit status, when it exited by itself."""


async def run_command(
    cmd: Sequence[str],
    *,
    stdin_lines: Sequence[str],
    env: Mapping[str, str],
    log: DatumLog,
    time_limit: float | None,
    kill_grace: float,
) -> CommandResult:
    """Run ``cmd`` to its end, or until ``time_limit`` seconds have passed. If the calling task
    is cancelled (the worker is shutting down), the command's process group is stopped first."""
    started = time.monotonic()
    kills_before = oom_kills()
    try:
        process, exited = await _start(cmd, bool(stdin_lines), env)
    except OSError as e:
        return CommandResult(f"cannot start {cmd[0]!r}: {e.strerror or e}", 0.0)
    assert process.stdout is not None
    assert process.stderr is not None
    stderr_tail = bytearray()
    reader = asyncio.create_task(_pump_both(process.stdout, process.stderr, log, stderr_tail))
    feeder = None
    if process.stdin is not None:
        # Pachyderm's convention: the lines, newline-terminated (often a script for a shell).
        feeder = asyncio.create_task(_feed(process.stdin, "".join(f"{s}\n" for s in stdin_lines)))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(exited), time_limit)
        except TimeoutError:
            timed_out = True
            await _stop(process, exited, kill_grace)
    finally:
        if not exited.done():  # cancelled: the worker is being shut down
            await _stop(process, exited, kill_grace)
        _signal_group(process.pid, signal.SIGKILL)  # whatever the command left behind
        await _finish(reader, feeder)
    duration = time.monotonic() - started
    if timed_out:
        return CommandResult(f"timed out after {time_limit:g} s", duration)
    code = process.returncode
    if code == 0:
        return CommandResult(None, duration)
    if code is not None and code < 0:
        reason, exit_code = f"killed by signal {signal.Signals(-code).name}", None
        if -code == signal.SIGKILL and _oom_killed(kills_before):
            limit = memory_limit()
            reason += ": out of memory" + (f" (the memory limit is {limit})" if limit else "")
    else:
        reason, exit_code = f"exit code {code}", code
    return CommandResult(reason + quote_tail(bytes(stderr_tail)), duration, exit_code=exit_code)


def _oom_killed(kills_before: int | None) -> bool:
    """Whether the kernel's OOM killer struck in this cgroup since the command started."""
    kills_after = oom_kills()
    return kills_before is not None and kills_after is not None and kills_after > kills_before


def quote_tail(stderr: bytes) -> str:
    """``; stderr ends: …`` with the last lines the command wrote to stderr, or nothing."""
    lines = stderr.decode(errors="replace").rstrip().splitlines()[-STDERR_TAIL_LINES:]
    text = "\n".join(line.rstrip() for line in lines).strip()
    if not text:
        return ""
    if len(text) > STDERR_TAIL_CHARS:
        text = "…" + text[-STDERR_TAIL_CHARS:]
    return f"{STDERR_QUOTE}{text}"


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process exits. ``Process.wait()`` waits for its pipes to close as well,
    which never happens while a process the command started in the background holds them."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _start(
    cmd: Sequence[str], with_stdin: bool, env: Mapping[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    loop = asyncio.get_running_loop()
    protocol = _Protocol(limit=READ_SIZE, loop=loop)
    transport, _ = await loop.subprocess_exec(
        lambda: protocol,
        *cmd,
        stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


async def _pump(stream: asyncio.StreamReader, log: DatumLog, tail: bytearray | None = None) -> None:
    while piece := await stream.read(READ_SIZE):
        log.write(piece)
        if tail is not None:
            tail += piece
            del tail[: max(0, len(tail) - 2 * STDERR_TAIL_CHARS)]


async def _pump_both(
    stdout: asyncio.StreamReader, stderr: asyncio.StreamReader, log: DatumLog, tail: bytearray
) -> None:
    """Both streams into the one log, in the order they are read (stderr is also kept apart,
    for the failure reason)."""
    await asyncio.gather(_pump(stdout, log), _pump(stderr, log, tail))


async def _feed(stream: asyncio.StreamWriter, text: str) -> None:
    # A command that exits without reading its stdin is not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(text.encode())
        await stream.drain()
        stream.close()
        await stream.wait_closed()


async def _finish(reader: asyncio.Task[None], feeder: asyncio.Task[None] | None) -> None:
    if feeder is not None and not feeder.done():
        feeder.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(reader), DRAIN_TIMEOUT)
    except TimeoutError:
        reader.cancel()
    if feeder is not None:
        with contextlib.suppress(asyncio.CancelledError, BrokenPipeError, ConnectionResetError):
            await feeder


async def _stop(
    process: asyncio.subprocess.Process, exited: asyncio.Future[None], grace: float
) -> None:
    """SIGTERM to the whole process group, then SIGKILL after ``grace`` seconds."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(exited), grace)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        _signal_group(process.pid, signal.SIGKILL)
        raise
    _signal_group(process.pid, signal.SIGKILL)
    await exited


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The command leads its own session, so its process group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --- a command that outlives one datum (datum batching) -------------------------------------


async def start_command(
    cmd: Sequence[str], *, stdin_lines: Sequence[str], env: Mapping[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    """Start ``cmd`` in a process group of its own, its stdin fed ``stdin_lines`` (then closed);
    the process and a future done when it exits. Its stdout and stderr are the caller's to
    read."""
    process, exited = await _start(cmd, bool(stdin_lines), env)
    if process.stdin is not None:
        await _feed(process.stdin, "".join(f"{s}\n" for s in stdin_lines))
    return process, exited


async def stop_command(
    process: asyncio.subprocess.Process, exited: asyncio.Future[None], grace: float
) -> None:
    """SIGTERM to the command's process group, SIGKILL after ``grace`` seconds, and whatever
    is left of the group killed once the command is gone."""
    if not exited.done():
        await _stop(process, exited, grace)
    _signal_group(process.pid, signal.SIGKILL)
