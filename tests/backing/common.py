"""Shared helpers for the real backing services the tests start (stdlib only).

Every service is installed into a cache outside the checkout, started on a free loopback port
from a throw-away run directory, and stopped afterwards. Anything that goes wrong raises
`ServiceError` with the tail of the relevant log: a test must never be skipped silently because
a service did not come up.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A backing service could not be installed, started or reached."""


def cache_dir() -> Path:
    """Where installed services live: `$TUSK_CACHE_DIR`, else `~/.cache/tusk/`."""
    override = os.environ.get("TUSK_CACHE_DIR")
    path = Path(override) if override else Path.home() / ".cache" / "tusk"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def install_lock(name: str) -> Iterator[None]:
    """Serialise installs of one service across processes (e.g. parallel test workers)."""
    lock_path = cache_dir() / "locks" / f"{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def make_run_dir(service: str) -> Path:
    """A fresh private directory for one running instance (data, config and logs)."""
    return Path(tempfile.mkdtemp(prefix=f"tusk-{service}-"))


def free_port() -> int:
    """A loopback port that is free right now (the OS picks it; a tiny race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout: float, process: ManagedProcess | None = None
) -> None:
    """Wait until something accepts TCP connections on host:port; fail fast if `process` dies."""
    wait_until(
        lambda: port_open(host, port), timeout, f"{host}:{port} to accept connections", process
    )


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
    interval: float = 0.2,
) -> None:
    """Poll `ready()` until it is true. Raises with the process's log tail on exit or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.check_alive()
        if ready():
            return
        if time.monotonic() > deadline:
            detail = f"\n{process.describe()}" if process is not None else ""
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def read_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))  # the tail is all we want; logs can be big
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _user_ids(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """Popen's (user, group, extra_groups) to drop root to `user`; all None = stay as we are."""
    if user is None:
        return None, None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid, []


def run_logged(
    argv: Sequence[str | os.PathLike[str]],
    log_path: Path,
    what: str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    timeout: float = 600,
) -> None:
    """Run a one-off command, output appended to `log_path`; raise with the log tail on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [os.fspath(a) for a in argv]
    uid, gid, groups = _user_ids(user)
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
                timeout=timeout,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        except subprocess.TimeoutExpired:
            raise ServiceError(
                f"{what} timed out after {timeout:.0f}s: {' '.join(cmd)}\n"
                f"--- {log_path} ---\n{read_tail(log_path)}"
            ) from None
        except OSError as exc:
            raise ServiceError(f"{what} could not run {cmd[0]!r}: {exc}") from exc
    if result.returncode != 0:
        raise ServiceError(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n"
            f"--- {log_path} ---\n{read_tail(log_path)}"
        )


# Processes still running when the interpreter exits are killed, so a crashed or interrupted
# test run does not leave servers behind holding ports and temp dirs.
_live: set[ManagedProcess] = set()

# atexit does not run when the test process gets SIGTERM/SIGKILL or calls os._exit (e.g.
# pytest-timeout), so servers also ask Linux to SIGKILL them when their parent dies. The kernel
# ties this to the *thread* that started them, so it is only used from the main thread (a server
# started from a worker thread would die with that thread).
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        proc.kill()


class ManagedProcess:
    """One long-running server process with its output going to `<run_dir>/<name>.log`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        run_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(a) for a in argv]
        self.run_dir = run_dir
        self.log_path = run_dir / f"{name}.log"
        self.env = env
        self.cwd = cwd or run_dir
        self.user = user
        self.stop_signal = stop_signal  # e.g. SIGINT for postgres: SIGTERM waits for clients
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        uid, gid, groups = _user_ids(self.user)
        on_main_thread = threading.current_thread() is threading.main_thread()
        # Append, so the log of a restarted process still shows what happened before.
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=None if self.env is None else {**os.environ, **self.env},
                    user=uid,
                    group=gid,
                    extra_groups=groups,
                    # After the user switch above, which would clear the setting.
                    preexec_fn=_die_with_parent if on_main_thread else None,
                )
            except OSError as exc:
                raise ServiceError(f"could not start {self.name} ({self.argv[0]}): {exc}") from exc
        _live.add(self)

    def stop(self, timeout: float | None = None) -> None:
        """Send stop_signal; SIGKILL if the process has not exited after the grace period."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            _live.discard(self)
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL: simulates a crash (no clean shutdown)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        _live.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        return read_tail(self.log_path, lines)

    def describe(self) -> str:
        state = (
            "running"
            if self.running
            else f"exited with {self._proc.returncode if self._proc else None}"
        )
        return f"{self.name} ({state}); last lines of {self.log_path}:\n{self.log_tail()}"

    def check_alive(self) -> None:
        """Raise with the log tail if the process has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            _live.discard(self)
            raise ServiceError(f"{self.name} exited unexpectedly: {self.describe()}")


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def debian_command(command: str, package: str, needed_for: str) -> str:
    """The path of ``command``, installing Debian's ``package`` first if we are root;
    ``needed_for`` says in the error why the suite needs it."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        raise ServiceError(
            f"{package} is not installed: `sudo apt-get install -y {package}` ({needed_for})"
        )
    log = cache_dir() / "logs" / f"{package}-install.log"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with install_lock("apt"):
        if shutil.which(command) is None:
            run_logged(["apt-get", "update"], log, "apt-get update", env=env)
            run_logged(
                ["apt-get", "install", "-y", "--no-install-recommends", package],
                log,
                f"apt-get install {package}",
                env=env,
            )
    found = shutil.which(command)
    if found is None:
        raise ServiceError(
            f"apt-get installed {package} but {command} is still not found; see {log}"
        )
    return found
