"""A throw-away PostgreSQL server from Debian's `postgresql` package.

`initdb` into a temp dir, then `postgres` on a free loopback port with durability switched off
(tests do not need it). Set `TUSK_TEST_DATABASE_URL` to use an existing server instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import (
    LOOPBACK,
    ManagedProcess,
    ServiceError,
    cache_dir,
    free_port,
    install_lock,
    make_run_dir,
    remove_dir,
    run_logged,
    wait_until,
)

DB_NAME = "tusk"
DB_USER = "tusk"  # the superuser initdb creates; trust auth on loopback, no password
RUN_AS = ("postgres", "tusk")  # system users tried, in order, when we are root


def _find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin, else wherever `initdb` is on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        bin_dir = Path(initdb).resolve().parent
        if (bin_dir / "postgres").exists():
            return bin_dir
    return None


def ensure_installed() -> Path:
    """Return the directory holding initdb/postgres, installing Debian's package if we are root."""
    bin_dir = _find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    if os.geteuid() != 0:
        raise ServiceError(
            "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH). "
            "Install it with `sudo apt-get install -y postgresql`, "
            "or set TUSK_TEST_DATABASE_URL to an existing server."
        )
    log = cache_dir() / "logs" / "postgres-install.log"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with install_lock("postgres"):
        if _find_bin_dir() is None:  # not installed by another process while we waited
            run_logged(["apt-get", "update"], log, "apt-get update", env=env)
            run_logged(
                ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
                log,
                "apt-get install postgresql",
                env=env,
            )
    bin_dir = _find_bin_dir()
    if bin_dir is None:
        raise ServiceError(f"apt-get installed postgresql but initdb is still not found; see {log}")
    return bin_dir


def _run_as_user() -> str | None:
    """postgres refuses to run as root: pick (or create) an unprivileged system user."""
    if os.geteuid() != 0:
        return None
    for name in RUN_AS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tusk"],
        check=True,
    )
    return "tusk"


class PostgresServer:
    """A private PostgreSQL cluster with a `tusk` database, or the one in TUSK_TEST_DATABASE_URL."""

    def __init__(self) -> None:
        self.external_url = os.environ.get("TUSK_TEST_DATABASE_URL") or None
        self.port: int | None = None
        self.run_dir: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL, e.g. `postgresql+asyncpg://tusk@127.0.0.1:54321/tusk`."""
        if self.external_url:
            return self.external_url
        if self.port is None:
            raise ServiceError("PostgresServer.url used before start()")
        return f"postgresql+asyncpg://{DB_USER}@{LOOPBACK}:{self.port}/{DB_NAME}"

    def new_database(self) -> str:
        """A new, empty database on this server; its SQLAlchemy URL. Each object store a test
        makes needs its own: the chunk records in one database say which chunks its store holds,
        so two stores sharing a database would skip uploads the other one has."""
        import asyncio

        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            connection = await asyncpg.connect(
                self.url.replace("postgresql+asyncpg://", "postgresql://")
            )
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        # A thread of its own, so that sync fixtures and running event loops can both call it.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, create()).result()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def start(self) -> None:
        if self.external_url:
            return
        bin_dir = ensure_installed()
        user = _run_as_user()
        self.run_dir = run_dir = make_run_dir("postgres")
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(run_dir, entry.pw_uid, entry.pw_gid)  # initdb creates data/ inside it
        data_dir = run_dir / "data"
        setup_log = run_dir / "setup.log"
        run_logged(
            [
                bin_dir / "initdb",
                "-D",
                data_dir,
                "-U",
                DB_USER,
                "--auth=trust",
                "--no-sync",
                "--no-locale",
                "-E",
                "UTF8",
            ],
            setup_log,
            "initdb",
            user=user,
            cwd=run_dir,
            timeout=180,
        )
        self.port = port = free_port()
        self._process = process = self._server_process(bin_dir, data_dir, user)
        process.start()
        try:
            wait_until(
                lambda: self._accepting(bin_dir), 60, "postgres to accept connections", process
            )
            run_logged(
                [bin_dir / "createdb", "-h", LOOPBACK, "-p", str(port), "-U", DB_USER, DB_NAME],
                setup_log,
                "createdb",
                user=user,
                cwd=run_dir,
                timeout=60,
            )
        except BaseException:
            process.kill()
            raise

    def _server_process(self, bin_dir: Path, data_dir: Path, user: str | None) -> ManagedProcess:
        assert self.run_dir is not None
        run_dir = self.run_dir
        return ManagedProcess(
            "postgres",
            [
                bin_dir / "postgres",
                "-D",
                data_dir,
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"unix_socket_directories={run_dir}",  # not /var/run/postgresql
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            run_dir,
            user=user,
            stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
            stop_timeout=20,
        )

    def halt(self) -> None:
        """Stop the server as an outage would, keeping its data: :meth:`resume` brings it
        back on the same port."""
        if self._process is not None:
            self._process.stop()
            self._process = None

    def resume(self) -> None:
        assert self.run_dir is not None
        assert self._process is None
        bin_dir = ensure_installed()
        self._process = process = self._server_process(
            bin_dir, self.run_dir / "data", _run_as_user()
        )
        process.start()
        wait_until(lambda: self._accepting(bin_dir), 60, "postgres to accept connections", process)

    def _accepting(self, bin_dir: Path) -> bool:
        # The port opens before recovery ends; pg_isready only succeeds once logins work.
        result = subprocess.run(
            [bin_dir / "pg_isready", "-q", "-h", LOOPBACK, "-p", str(self.port), "-U", DB_USER],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self.run_dir is not None:
            remove_dir(self.run_dir)
            self.run_dir = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
