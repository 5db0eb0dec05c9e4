"""A throw-away MariaDB server from Debian's `mariadb-server` package: the target of the SQL
egress tests for `mysql://` URLs.

`mariadb-install-db` into a temp dir, then `mariadbd` on a free loopback port with durability
switched off (tests do not need it). A user `tusk` with a password (the egress reads it from a
secret, so the tests check it is sent) may do anything; each test makes a database of its own.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import uuid
from pathlib import Path

from .common import (
    LOOPBACK,
    ManagedProcess,
    ServiceError,
    debian_command,
    free_port,
    make_run_dir,
    remove_dir,
    run_logged,
    wait_until,
)

USER = "tusk"
PASSWORD = "tusk-egress-pw"
NEEDED_FOR = "the SQL egress tests load mysql:// databases into it"


def ensure_installed() -> tuple[str, str, str]:
    """(mariadbd, mariadb-install-db, mariadb), installing Debian's packages if we are root.
    Debian's package does not start its own server here (no init system in a container), and
    would be on the standard port if it did: ours uses a port of its own."""
    # By its path: /usr/sbin may not be on a non-login PATH.
    server = debian_command("/usr/sbin/mariadbd", "mariadb-server", NEEDED_FOR)
    install_db = debian_command("mariadb-install-db", "mariadb-server", NEEDED_FOR)
    client = debian_command("mariadb", "mariadb-server", NEEDED_FOR)
    return server, install_db, client


def _run_as_user() -> str | None:
    """mariadbd will not run as root without being told to: the package's `mysql` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        raise ServiceError("mariadb-server is installed but there is no `mysql` user") from None
    return "mysql"


class MariaDBServer:
    def __init__(self) -> None:
        self.port: int | None = None
        self.run_dir: Path | None = None
        self._client: str | None = None
        self._process: ManagedProcess | None = None

    @property
    def socket(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "mariadb.sock"

    def url(self, database: str) -> str:
        """The egress URL of ``database`` (no password: it comes from the secret)."""
        if self.port is None:
            raise ServiceError("MariaDBServer.url used before start()")
        return f"mysql://{USER}@{LOOPBACK}:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database; its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE `{name}`")
        return name

    def sql(self, statements: str, database: str | None = None) -> None:
        """Run ``statements`` as root over the socket."""
        assert self._client is not None
        argv = [self._client, "--no-defaults", f"--socket={self.socket}", "-uroot"]
        if database:
            argv.append(database)
        result = subprocess.run(
            argv, input=statements.encode(), capture_output=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"mariadb failed: {result.stderr.decode(errors='replace')}")

    def start(self) -> None:
        server, install_db, self._client = ensure_installed()
        user = _run_as_user()
        self.run_dir = run_dir = make_run_dir("mariadb")
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(run_dir, entry.pw_uid, entry.pw_gid)
        data_dir = run_dir / "data"
        run_logged(
            [
                install_db,
                "--no-defaults",
                f"--datadir={data_dir}",
                *([f"--user={user}"] if user else []),
                "--auth-root-authentication-method=normal",  # root: no password, on the socket
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            run_dir / "setup.log",
            "mariadb-install-db",
            cwd=run_dir,
            timeout=300,
        )
        self.port = free_port()
        self._process = process = ManagedProcess(
            "mariadbd",
            [
                server,
                "--no-defaults",
                f"--datadir={data_dir}",
                f"--socket={self.socket}",
                f"--pid-file={run_dir / 'mariadb.pid'}",
                f"--port={self.port}",
                f"--bind-address={LOOPBACK}",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--sync-binlog=0",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=200",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_bin",
            ],
            run_dir,
            user=user,
            stop_timeout=30,
        )
        process.start()
        try:
            wait_until(self._accepting, 120, "mariadbd to accept connections", process)
            self.sql(
                f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';"
                f"GRANT ALL ON *.* TO '{USER}'@'%';"
            )
        except BaseException:
            process.kill()
            raise

    def _accepting(self) -> bool:
        try:
            self.sql("SELECT 1")
        except (ServiceError, subprocess.TimeoutExpired):
            return False
        return True

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        if self._process is not None:
            self._process.stop(timeout=None)
            self._process = None
        if self.run_dir is not None:
            remove_dir(self.run_dir)
            self.run_dir = None

    def __enter__(self) -> MariaDBServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
