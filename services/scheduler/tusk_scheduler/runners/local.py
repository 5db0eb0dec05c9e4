"""``LocalRunner``: each shard is a ``tusk-worker`` subprocess on this machine.

Workers run in a session of their own (``start_new_session``), so they survive the scheduler:
a scheduler killed mid-job finds them again after its restart, by their command line (which
names the job and the shard), and adopts them. A worker's exit status would be lost with its
parent, so each worker runs under a tiny ``sh`` wrapper that writes the status to a file; the
wrapper is the process group leader the runner watches and signals. The worker runs each
datum's command in a session of its own; cancelling a shard also stops any such command that a
dead worker left behind (found by the ``TUSK_JOB`` and ``TUSK_SHARD`` the worker gives it).

Scratch space per shard: ``<workspace>/<job>/shard-<n>/`` holds the staged inputs (``pfs/``,
the worker's ``TUSK_PFS_ROOT``), the worker's own output per attempt (``attempt-<a>.log``) and
its exit status (``attempt-<a>.exit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from tusk_scheduler.runners.base import ShardHandle, ShardLaunch, ShardStatus

log = structlog.get_logger()

# "$1" is the exit-status file, the rest the worker's argv. Written via a temporary file so a
# reader never sees half a number.
_WRAPPER = 'f="$1"; shift; "$@"; echo $? > "$f.tmp"; mv "$f.tmp" "$f"'
_MARKER = "tusk-shard"  # the wrapper's $0: what tells our wrappers from other processes
_ATTEMPT = re.compile(r"attempt-(\d+)\.exit$")
# Passed on to workers; the other TUSK_* variables are the scheduler's own business.
_PASSED_SETTINGS = ("TUSK_LOG_LEVEL", "TUSK_LOG_JSON", "TUSK_WORKER_")


def default_worker_command() -> tuple[str, ...]:
    """The ``tusk-worker`` installed next to this Python, else the one on ``PATH``."""
    beside = Path(sys.executable).parent / "tusk-worker"
    return (str(beside),) if beside.is_file() else ("tusk-worker",)


class LocalRunner:
    kind = "local"

    def __init__(
        self,
        workspace: Path,
        *,
        repo_url: str,
        token: str | None = None,
        worker_command: Sequence[str] | None = None,
        cancel_grace: float = 10.0,
        environ: Mapping[str, str] | None = None,
        code_dir: Path | None = None,
    ) -> None:
        self.workspace = workspace.resolve()
        # Where user commands run, as a pod runs in its image's WORKDIR: relative paths in a
        # spec's cmd (python3 examples/credit/train.py) resolve here.
        self.code_dir = (code_dir or Path.cwd()).resolve()
        self.repo_url = repo_url
        self.token = token
        self.worker_command = tuple(worker_command or default_worker_command())
        self.cancel_grace = cancel_grace
        # Workers inherit the scheduler's environment (PATH, HOME, …) but not its settings.
        base = dict(os.environ if environ is None else environ)
        self._environ = {
            k: v
            for k, v in base.items()
            if not k.startswith("TUSK_") or k.startswith(_PASSED_SETTINGS)
        }
        # Workers this process started: polled, so that they are reaped when they end.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- paths ------------------------------------------------------------------------------

    def shard_dir(self, job: str, shard: int) -> Path:
        return self.workspace / job / f"shard-{shard}"

    def log_file(self, job: str, shard: int, attempt: int) -> Path:
        return self.shard_dir(job, shard) / f"attempt-{attempt}.log"

    def exit_file(self, job: str, shard: int, attempt: int) -> Path:
        return self.shard_dir(job, shard) / f"attempt-{attempt}.exit"

    # --- Runner -----------------------------------------------------------------------------

    async def start(self, launch: ShardLaunch) -> ShardHandle:
        return await asyncio.to_thread(self._start, launch)

    def _start(self, launch: ShardLaunch) -> ShardHandle:
        job, shard, attempt = launch.job, launch.shard, launch.attempt
        pfs = self.shard_dir(job, shard) / "pfs"
        pfs.mkdir(parents=True, exist_ok=True)
        exit_file = self.exit_file(job, shard, attempt)
        exit_file.unlink(missing_ok=True)
        env = {**self._environ, "TUSK_REPO_URL": self.repo_url, "TUSK_PFS_ROOT": str(pfs)}
        if self.token:
            env["TUSK_TOKEN"] = self.token
        argv = [
            "/bin/sh",
            "-c",
            _WRAPPER,
            _MARKER,
            str(exit_file),
            *self.worker_command,
            "--output-repo",
            launch.output_repo,
            "--meta-commit",
            launch.meta_commit,
            "--job",
            job,
            "--shard",
            str(shard),
        ]
        with self.log_file(job, shard, attempt).open("ab") as output:
            process = subprocess.Popen(  # noqa: S603 (argv is ours, not a shell string)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.code_dir,
                start_new_session=True,
            )
        self._children[process.pid] = process
        log.info("worker started", job=job, shard=shard, attempt=attempt, pid=process.pid)
        return ShardHandle(job=job, shard=shard, attempt=attempt, ref=str(process.pid))

    async def status(self, handle: ShardHandle) -> ShardStatus:
        pid = int(handle.ref)
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return ShardStatus("running")
            del self._children[pid]
            signalled = -child.returncode if child.returncode < 0 else None
        else:
            if _our_wrapper(pid, handle.job, handle.shard, self.workspace) is not None:
                return ShardStatus("running")
            signalled = None
        return self._ended(handle, signalled)

    def _ended(self, handle: ShardHandle, signalled: int | None) -> ShardStatus:
        exit_file = self.exit_file(handle.job, handle.shard, handle.attempt)
        try:
            code = int(exit_file.read_text().strip())
        except (OSError, ValueError):
            how = f" (signal {signal.Signals(signalled).name})" if signalled else ""
            return ShardStatus("lost", detail=f"the worker ended without an exit status{how}")
        if code > 128:
            with contextlib.suppress(ValueError):
                return ShardStatus(
                    "lost", code, f"the worker was killed by {signal.Signals(code - 128).name}"
                )
        return ShardStatus("exited", code)

    async def cancel(self, handle: ShardHandle) -> None:
        pid = int(handle.ref)
        child = self._children.get(pid)
        ours = child is not None or _our_wrapper(pid, handle.job, handle.shard, self.workspace)
        # (Not ours: gone already, or the pid now belongs to someone else.)
        if ours and _signal_group(pid, signal.SIGTERM):
            await self._stop_group(pid, child, handle)
        # The worker runs each datum's command in a session of its own, which it stops
        # itself; a worker that died (or was killed) first leaves the command running.
        strays = await asyncio.to_thread(_datum_groups, handle.job, handle.shard)
        for pgid in strays:
            log.info(
                "stopping a command its worker left behind",
                job=handle.job,
                shard=handle.shard,
                pgid=pgid,
            )
            _signal_group(pgid, signal.SIGKILL)

    async def _stop_group(
        self, pid: int, child: subprocess.Popen[bytes] | None, handle: ShardHandle
    ) -> None:
        deadline = time.monotonic() + self.cancel_grace
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()  # reap the leader, or it lingers as a zombie in its group
            if not _group_alive(pid):
                break
            await asyncio.sleep(0.05)
        else:
            log.warning(
                "worker did not stop in time; killing it",
                job=handle.job,
                shard=handle.shard,
                pid=pid,
            )
            _signal_group(pid, signal.SIGKILL)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(child.wait, 5)
            self._children.pop(pid, None)

    async def find_running(self, job: str) -> list[ShardHandle]:
        return await asyncio.to_thread(self._find_running, job)

    def _find_running(self, job: str) -> list[ShardHandle]:
        found: dict[int, ShardHandle] = {}
        for pid, child in list(self._children.items()):
            if child.poll() is None:
                handle = _handle_from_argv(pid, _as_str_argv(child.args), self.workspace)
                if handle is not None and handle.job == job:
                    found[pid] = handle
        proc = Path("/proc")
        if proc.is_dir():
            for entry in proc.iterdir():
                if not entry.name.isdigit() or int(entry.name) in found:
                    continue
                pid = int(entry.name)
                argv = _live_argv(pid)
                handle = _handle_from_argv(pid, argv, self.workspace) if argv else None
                if handle is not None and handle.job == job:
                    found[pid] = handle
        return sorted(found.values(), key=lambda h: (h.shard, h.attempt))

    async def output(self, handle: ShardHandle, max_bytes: int) -> str:
        path = self.log_file(handle.job, handle.shard, handle.attempt)
        return await asyncio.to_thread(_tail, path, max_bytes)

    async def cleanup(self, job: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.workspace / job, True)

    async def close(self) -> None:
        self._children.clear()  # running workers are left alone (adopted after a restart)


def _as_str_argv(args: object) -> list[str]:
    return [str(a) for a in args] if isinstance(args, list | tuple) else []


def _handle_from_argv(pid: int, argv: Sequence[str], workspace: Path) -> ShardHandle | None:
    """The shard a wrapper's command line names, if it is one of ours (in this workspace)."""
    if len(argv) < 5 or argv[3] != _MARKER:
        return None
    exit_file = Path(argv[4])
    match = _ATTEMPT.search(argv[4])
    if match is None or workspace not in exit_file.parents:
        return None
    try:
        job = argv[argv.index("--job") + 1]
        shard = int(argv[argv.index("--shard") + 1])
    except (ValueError, IndexError):
        return None
    return ShardHandle(job=job, shard=shard, attempt=int(match[1]), ref=str(pid))


def _our_wrapper(pid: int, job: str, shard: int, workspace: Path) -> ShardHandle | None:
    """The live wrapper with this pid if it still runs ``job``'s ``shard`` (pids are reused)."""
    argv = _live_argv(pid)
    handle = _handle_from_argv(pid, argv, workspace) if argv else None
    if handle is None or handle.job != job or handle.shard != shard:
        return None
    return handle


def _live_argv(pid: int) -> list[str] | None:
    """The command line of a running (not zombie) process group leader, or None.

    Only group leaders: a child the wrapper has forked but not yet exec'd shows the wrapper's
    command line too, in the wrapper's group.
    """
    stat = _proc_stat(pid)
    if stat is None or not stat.running or stat.pgrp != pid:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]] or None


@dataclass(frozen=True)
class _Stat:
    running: bool  # not a zombie
    pgrp: int


def _proc_stat(pid: int | str) -> _Stat | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The fields after the parenthesised command name (which may hold anything).
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        return _Stat(running=state not in ("Z", "X"), pgrp=int(pgrp))
    except (OSError, ValueError):
        return None


def _datum_groups(job: str, shard: int) -> set[int]:
    """Process groups of the datum commands of a shard (the worker gives them TUSK_JOB and
    TUSK_SHARD), found through /proc."""
    wanted = (f"TUSK_JOB={job}".encode(), f"TUSK_SHARD={shard}".encode())
    proc = Path("/proc")
    groups: set[int] = set()
    if not proc.is_dir():
        return groups
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            variables = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if all(w in variables for w in wanted):
            stat = _proc_stat(entry.name)
            if stat is not None and stat.running:
                groups.add(stat.pgrp)
    return groups


def _signal_group(pgid: int, number: signal.Signals) -> bool:
    try:
        os.killpg(pgid, number)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal the worker", pgid=pgid)
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: a worker's children
    are reparented when it dies, and whoever reaps them may take its time."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(entry.name)
            if stat is not None and stat.running and stat.pgrp == pgid:
                return True
    return False


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - max_bytes))
            return file.read().decode(errors="replace")
    except OSError:
        return ""
