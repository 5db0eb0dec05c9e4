"""``LocalRunner``: each shard is a ``tusk-worker`` process on this machine.

**Warm workers.** A worker's interpreter and imports take about a quarter of a second, which
would be most of the time from a commit to its first datum. So the runner keeps a few workers
started ahead (``tusk-worker --standby``, see :mod:`tusk.worker.main`) and hands a shard to one
of them as a line of JSON on its stdin. The pool is topped up once no shard has been started for
``REFILL_AFTER`` seconds: a new worker's imports take a core for that quarter of a second, which
the workers just handed their shards need for their first datums (on two cores it delayed the
first datum's command by about 10 ms). With no warm worker at hand, a new one is started and handed
its shard at once.

**Outliving the scheduler.** Workers run in a session of their own (``start_new_session``), so
a scheduler killed mid-job leaves them running. Before handing a shard over, the runner writes
the worker's pid and start time to ``attempt-<a>.pid``; a restarted scheduler finds the
job's running workers by those files (the start time tells a live worker from a reused pid)
and adopts them. A worker's exit status would be lost with its parent, so the worker writes it
to ``attempt-<a>.exit`` itself. The worker runs each datum's command in a session of its own;
cancelling a shard also stops any such command that a dead worker left behind (found by the
``TUSK_JOB`` and ``TUSK_SHARD`` the worker gives it).

Scratch space per shard: ``<workspace>/<job>/shard-<n>/`` holds the staged inputs (``pfs/``,
the worker's ``TUSK_PFS_ROOT``), the worker's own output per attempt (``attempt-<a>.log``), its
pid file and its exit status. What warm workers print before they have a shard goes to
``<workspace>/standby.log``.

**One cap for all jobs.** ``max_workers`` bounds the worker processes of the runner at once,
whatever the number of jobs: running shards (adopted ones included), shards being started and
warm workers together. A start beyond it waits until a worker has ended; one job is also
never split into more shards than the cap, so a job's own shards never wait on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from tusk.concurrency import wait_event
from tusk_scheduler.runners.base import SecretNotFound, ShardHandle, ShardLaunch, ShardStatus

log = structlog.get_logger()

_PID_FILE = re.compile(r"attempt-(\d+)\.pid$")
# Passed on to workers; the other TUSK_* variables are the scheduler's own business.
_PASSED_SETTINGS = ("TUSK_LOG_LEVEL", "TUSK_LOG_JSON", "TUSK_WORKER_")
REFILL_AFTER = 0.2  # seconds without a shard start before the warm pool is topped up
SLOT_POLL = 0.05  # seconds between looks for an ended worker while every slot is taken


def default_worker_command() -> tuple[str, ...]:
    """The ``tusk-worker`` installed next to this Python, else the one on ``PATH``."""
    beside = Path(sys.executable).parent / "tusk-worker"
    return (str(beside),) if beside.is_file() else ("tusk-worker",)


class LocalRunner:
    kind = "local"
    takes_spec = True  # on stdin, with the shard

    def __init__(
        self,
        workspace: Path,
        *,
        repo_url: str,
        worker_command: Sequence[str] | None = None,
        cancel_grace: float = 10.0,
        environ: Mapping[str, str] | None = None,
        code_dir: Path | None = None,
        warm_workers: int = 0,
        max_workers: int | None = None,
    ) -> None:
        self.workspace = workspace.resolve()
        self.max_workers = max_workers
        self.max_shards = max_workers
        # Where user commands run, as a pod runs in its image's WORKDIR: relative paths in a
        # spec's cmd (python3 examples/credit/train.py) resolve here.
        self.code_dir = (code_dir or Path.cwd()).resolve()
        self.worker_command = tuple(worker_command or default_worker_command())
        self.cancel_grace = cancel_grace
        self.warm_workers = warm_workers
        # Workers inherit the scheduler's environment (PATH, HOME, …) but not its settings.
        base = dict(os.environ if environ is None else environ)
        self._environ = {
            k: v
            for k, v in base.items()
            if not k.startswith("TUSK_") or k.startswith(_PASSED_SETTINGS)
        }
        self._environ["TUSK_REPO_URL"] = repo_url
        # transform.secrets, as <name>/<key> files: beside the workspace unless set.
        self._environ.setdefault(
            "TUSK_WORKER_SECRETS_DIR", str(self.workspace.parent / "secrets")
        )
        # Workers this process started: polled, so that they are reaped when they end.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._standby: list[subprocess.Popen[bytes]] = []
        self._standby_lock = threading.Lock()  # starts run in threads, several at once
        # Counted against max_workers with the children and the warm pool (under the lock):
        self._starting = 0  # starts holding a slot whose worker is not among the children yet
        self._filling = 0  # warm workers being spawned
        self._adopted: dict[int, ShardHandle] = {}  # running workers a previous process started
        self._refill: asyncio.Task[None] | None = None
        self._last_start = 0.0  # time.monotonic() of the last hand-over
        self._closed = asyncio.Event()

    @property
    def standing_by(self) -> int:
        """Warm workers waiting for a shard now."""
        with self._standby_lock:
            return len(self._standby)

    # --- paths ------------------------------------------------------------------------------

    def shard_dir(self, job: str, shard: int) -> Path:
        return self.workspace / job / f"shard-{shard}"

    def log_file(self, job: str, shard: int, attempt: int) -> Path:
        return self.shard_dir(job, shard) / f"attempt-{attempt}.log"

    def exit_file(self, job: str, shard: int, attempt: int) -> Path:
        return self.shard_dir(job, shard) / f"attempt-{attempt}.exit"

    def pid_file(self, job: str, shard: int, attempt: int) -> Path:
        return self.shard_dir(job, shard) / f"attempt-{attempt}.pid"

    # --- Runner -----------------------------------------------------------------------------

    def live_workers(self) -> int:
        """Worker processes of this runner now, as counted against ``max_workers``."""
        with self._standby_lock:
            return self._busy() + len(self._standby) + self._filling

    def _busy(self) -> int:
        """Workers running or being handed a shard (the caller holds the lock)."""
        running = sum(1 for child in list(self._children.values()) if child.poll() is None)
        for pid, handle in list(self._adopted.items()):
            if pid in self._children or not self._alive(handle):
                del self._adopted[pid]
        return running + len(self._adopted) + self._starting

    def _reserve(self) -> tuple[bool, subprocess.Popen[bytes] | None]:
        """Take a slot for a shard if one is free, with a warm worker when one is at hand."""
        with self._standby_lock:
            busy = self._busy()
            if self.max_workers is not None and busy >= self.max_workers:
                return False, None
            while self._standby:
                process = self._standby.pop(0)
                if process.poll() is None:
                    self._starting += 1  # a warm worker changes roles: no new process
                    return True, process
            total = busy + self._filling
            if self.max_workers is not None and total >= self.max_workers:
                return False, None
            self._starting += 1
            return True, None

    async def _take_slot(self, launch: ShardLaunch) -> subprocess.Popen[bytes] | None:
        reserved, warm = self._reserve()
        if not reserved:
            log.info(
                "shard waits for a worker to end",
                job=launch.job,
                shard=launch.shard,
                max_workers=self.max_workers,
            )
        while not reserved:
            await asyncio.sleep(SLOT_POLL)
            reserved, warm = self._reserve()
        return warm

    async def start(self, launch: ShardLaunch) -> ShardHandle:
        warm = await self._take_slot(launch)
        try:
            handle = await asyncio.to_thread(self._start, launch, warm)
        except BaseException:
            if warm is not None and warm.pid not in self._children:
                with self._standby_lock:  # not handed over: still warm
                    self._standby.append(warm)
            raise
        finally:
            with self._standby_lock:
                self._starting -= 1
        self._last_start = time.monotonic()
        self._schedule_refill()
        return handle

    def _schedule_refill(self) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._refill_when_quiet())

    async def _refill_when_quiet(self) -> None:
        """Top the pool up once starts have paused for ``REFILL_AFTER`` seconds."""
        while (wait := self._last_start + REFILL_AFTER - time.monotonic()) > 0:
            if await wait_event(self._closed, wait):
                return
        await self.warm_up()

    async def warm_up(self) -> None:
        """Top the pool of warm workers up to ``warm_workers``."""
        await asyncio.to_thread(self._fill_pool)

    def _start(
        self, launch: ShardLaunch, warm_worker: subprocess.Popen[bytes] | None = None
    ) -> ShardHandle:
        job, shard, attempt = launch.job, launch.shard, launch.attempt
        pfs = self.shard_dir(job, shard) / "pfs"
        pfs.mkdir(parents=True, exist_ok=True)
        exit_file = self.exit_file(job, shard, attempt)
        exit_file.unlink(missing_ok=True)
        env = {"TUSK_PFS_ROOT": str(pfs)}
        if launch.token:  # the job's own credential, never the scheduler's token
            env["TUSK_TOKEN"] = launch.token
        assignment = {
            "argv": launch.worker_args(),
            "env": env,
            "log_file": str(self.log_file(job, shard, attempt)),
            "exit_file": str(exit_file),
            "shard_spec": launch.spec,
            "fresh": launch.fresh,
        }
        line = json.dumps(assignment).encode() + b"\n"
        while True:
            process, warm_worker = warm_worker or self._take_standby(), None
            warm = process is not None
            if process is None:  # none at hand: a new one, its output already the shard's
                process = self._spawn(self.log_file(job, shard, attempt))
            self._write_pid_file(self.pid_file(job, shard, attempt), process.pid)
            if self._hand_over(process, line) or not warm:
                break  # (a new worker gone before its shard: its status will say so)
            self.pid_file(job, shard, attempt).unlink(missing_ok=True)
        self._children[process.pid] = process
        log.info(
            "worker started", job=job, shard=shard, attempt=attempt, pid=process.pid, warm=warm
        )
        return ShardHandle(job=job, shard=shard, attempt=attempt, ref=str(process.pid))

    def _spawn(self, output: Path) -> subprocess.Popen[bytes]:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("ab") as out:
            return subprocess.Popen(  # noqa: S603 (argv is ours, not a shell string)
                [*self.worker_command, "--standby"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._environ,
                cwd=self.code_dir,
                start_new_session=True,
            )

    def _fill_pool(self) -> None:
        while True:
            with self._standby_lock:
                warm = len(self._standby) + self._filling
                if warm >= self.warm_workers or (
                    self.max_workers is not None and self._busy() + warm >= self.max_workers
                ):
                    return
                self._filling += 1
            process = None
            try:
                process = self._spawn(self.workspace / "standby.log")
            finally:
                with self._standby_lock:
                    self._filling -= 1
                    if process is not None:
                        self._standby.append(process)

    def _take_standby(self) -> subprocess.Popen[bytes] | None:
        while True:
            with self._standby_lock:
                if not self._standby:
                    return None
                process = self._standby.pop(0)
            if process.poll() is None:
                return process
            log.warning(
                "a warm worker had exited; see standby.log",
                status=process.returncode,
                log=str(self.workspace / "standby.log"),
            )

    @staticmethod
    def _hand_over(process: subprocess.Popen[bytes], line: bytes) -> bool:
        assert process.stdin is not None
        try:
            process.stdin.write(line)
            process.stdin.close()
        except OSError:  # it exited meanwhile (BrokenPipeError)
            process.wait()
            return False
        return True

    @staticmethod
    def _write_pid_file(path: Path, pid: int) -> None:
        stat = _proc_stat(pid)
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(f"{pid} {stat.started if stat else 0}\n")
        partial.replace(path)

    async def status(self, handle: ShardHandle) -> ShardStatus:
        pid = int(handle.ref)
        child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:
                return ShardStatus("running")
            del self._children[pid]
            # Its slot is free: a pool the cap had kept short is topped up again, or the
            # next shard would wait for a cold worker's start-up.
            self._schedule_refill()
            signalled = -child.returncode if child.returncode < 0 else None
        else:
            if self._alive(handle):
                return ShardStatus("running")
            signalled = None
        return self._ended(handle, signalled)

    def _alive(self, handle: ShardHandle) -> bool:
        """Whether the worker the handle names still runs this attempt of the shard: the pid
        file says so, and the process with that pid is the one that was started (pids are
        reused)."""
        recorded = _read_pid_file(self.pid_file(handle.job, handle.shard, handle.attempt))
        if recorded is None or str(recorded[0]) != handle.ref:
            return False
        stat = _proc_stat(recorded[0])
        return stat is not None and stat.running and stat.started == recorded[1]

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
        ours = child is not None or self._alive(handle)
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
        for path in (self.workspace / job).glob("shard-*/attempt-*.pid"):
            match = _PID_FILE.search(path.name)
            recorded = _read_pid_file(path)
            if match is None or recorded is None:
                continue
            try:
                shard = int(path.parent.name.removeprefix("shard-"))
            except ValueError:
                continue
            handle = ShardHandle(job=job, shard=shard, attempt=int(match[1]), ref=str(recorded[0]))
            child = self._children.get(recorded[0])
            running = child.poll() is None if child is not None else self._alive(handle)
            if running and (shard not in found or found[shard].attempt < handle.attempt):
                found[shard] = handle
        with self._standby_lock:  # another process's workers take slots as long as they run
            for handle in found.values():
                if int(handle.ref) not in self._children:
                    self._adopted[int(handle.ref)] = handle
        return sorted(found.values(), key=lambda h: h.shard)

    async def output(self, handle: ShardHandle, max_bytes: int) -> str:
        path = self.log_file(handle.job, handle.shard, handle.attempt)
        return await asyncio.to_thread(_tail, path, max_bytes)

    @property
    def secrets_dir(self) -> Path:
        """Where ``transform.secrets`` are read: one directory per secret, a file per key."""
        return Path(self._environ["TUSK_WORKER_SECRETS_DIR"])

    async def read_secret(self, name: str, key: str) -> str:
        path = self.secrets_dir / name / key
        try:
            text = await asyncio.to_thread(path.read_text)
        except FileNotFoundError:
            raise SecretNotFound(
                f"no file {path}: the local runner reads secrets from "
                f"{self.secrets_dir}/<name>/<key> files (TUSK_WORKER_SECRETS_DIR)"
            ) from None
        return text.rstrip("\n")

    async def cleanup(self, job: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.workspace / job, True)

    async def close(self) -> None:
        """Let the warm workers go (end of input makes them exit); running workers are left
        alone, to be adopted after a restart."""
        self._closed.set()
        if self._refill is not None:
            with contextlib.suppress(Exception):
                await self._refill
        with self._standby_lock:
            standby, self._standby = self._standby, []
        for process in standby:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
        for process in standby:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 5)
        self._children.clear()


def _read_pid_file(path: Path) -> tuple[int, int] | None:
    """(pid, start time) from a worker's pid file, or None."""
    try:
        pid, started = path.read_text().split()
        return int(pid), int(started)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _Stat:
    running: bool  # not a zombie
    pgrp: int
    started: int  # clock ticks after boot: with the pid, names one process for good


def _proc_stat(pid: int | str) -> _Stat | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The fields after the parenthesised command name (which may hold anything): the
        # state is field 3 of proc(5), the process group 5, the start time 22.
        fields = stat[stat.rindex(")") + 2 :].split()
        return _Stat(
            running=fields[0] not in ("Z", "X"), pgrp=int(fields[2]), started=int(fields[19])
        )
    except (OSError, ValueError, IndexError):
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
