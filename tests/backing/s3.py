"""A throw-away S3 server: versitygw (a real S3 gateway over a local directory), built with Go.

Set `TUSK_TEST_S3_ENDPOINT` (+ `TUSK_TEST_S3_ACCESS_KEY`, `TUSK_TEST_S3_SECRET_KEY`, optional
`TUSK_TEST_S3_REGION`) to use an existing S3 server instead.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .common import (
    LOOPBACK,
    ManagedProcess,
    ServiceError,
    cache_dir,
    free_port,
    install_lock,
    make_run_dir,
    port_open,
    remove_dir,
    run_logged,
    wait_until,
)

MODULE = "github.com/versity/versitygw"
VERSION = "v1.7.0"
FALLBACK_TRIES = 3  # newer releases tried if VERSION ever fails to build


def _go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise ServiceError(
            "Go is not installed (no `go` on PATH or in /usr/local/go/bin); "
            "it is needed to build versitygw, or set TUSK_TEST_S3_ENDPOINT"
        )
    return go


def _go_install(version: str, log: Path) -> Path:
    """`go install` into a scratch GOBIN, then move it into place (never cache half a binary)."""
    scratch = cache_dir() / "go-install-tmp"
    remove_dir(scratch)
    run_logged(
        [_go(), "install", f"{MODULE}/cmd/versitygw@{version}"],
        log,
        f"go install versitygw@{version}",
        env={"GOBIN": str(scratch)},
        timeout=1800,
    )
    target = cache_dir() / "bin" / "versitygw"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch / "versitygw", target)
    remove_dir(scratch)
    return target


def _newer_versions(log: Path) -> list[str]:
    """Stable releases of versitygw on the module proxy, newest first."""
    out = subprocess.run(
        [_go(), "list", "-m", "-versions", MODULE],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cache_dir(),
    )
    with log.open("a") as f:
        f.write(f"\n$ go list -m -versions {MODULE}\n{out.stdout}{out.stderr}")
    versions = [
        v for v in out.stdout.split()[1:] if "-" not in v
    ]  # drop the module path, pre-releases

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) if p.isdigit() else 0 for p in v.lstrip("v").split("."))

    return sorted(versions, key=key, reverse=True)


def ensure_installed() -> Path:
    """Return the cached versitygw binary, building it with `go install` if needed."""
    binary = cache_dir() / "bin" / "versitygw"
    if binary.exists():
        return binary
    with install_lock("versitygw"):
        if binary.exists():  # another process built it while we waited
            return binary
        log = cache_dir() / "logs" / "versitygw-install.log"
        try:
            return _go_install(VERSION, log)
        except ServiceError as first_error:
            for version in [v for v in _newer_versions(log) if v != VERSION][:FALLBACK_TRIES]:
                try:
                    return _go_install(version, log)
                except ServiceError:
                    continue
            raise first_error


class S3Server:
    """A private versitygw on a free loopback port, or the server in TUSK_TEST_S3_ENDPOINT."""

    def __init__(
        self, access_key: str = "tusk-test-access-key", secret_key: str = "tusk-test-secret-key"
    ) -> None:
        self.external_endpoint = os.environ.get("TUSK_TEST_S3_ENDPOINT") or None
        if self.external_endpoint:
            access_key = os.environ.get("TUSK_TEST_S3_ACCESS_KEY", "")
            secret_key = os.environ.get("TUSK_TEST_S3_SECRET_KEY", "")
            if not access_key or not secret_key:
                raise ServiceError(
                    "TUSK_TEST_S3_ENDPOINT is set: also set TUSK_TEST_S3_ACCESS_KEY "
                    "and TUSK_TEST_S3_SECRET_KEY"
                )
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = (
            os.environ.get("TUSK_TEST_S3_REGION", "us-east-1")
            if self.external_endpoint
            else "us-east-1"
        )
        self.port: int | None = None
        self.run_dir: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def endpoint_url(self) -> str:
        if self.external_endpoint:
            return self.external_endpoint
        if self.port is None:
            raise ServiceError("S3Server.endpoint_url used before start()")
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        if self.external_endpoint:
            return
        binary = ensure_installed()
        self.run_dir = run_dir = make_run_dir("s3")
        (run_dir / "data").mkdir()
        (run_dir / "meta").mkdir()  # sidecar metadata: no need for xattr support in the temp fs
        self.port = port = free_port()
        self._process = process = ManagedProcess(
            "versitygw",
            [
                binary,
                "--port",
                f"{LOOPBACK}:{port}",
                "--region",
                self.region,
                "--quiet",
                # Off by default in versitygw: every response would close its connection, and a
                # client reading many chunks would open one per chunk (S3 itself keeps them).
                "--keep-alive",
                "posix",
                "--sidecar",
                run_dir / "meta",
                run_dir / "data",
            ],
            run_dir,
            env={"ROOT_ACCESS_KEY": self.access_key, "ROOT_SECRET_KEY": self.secret_key},
        )
        process.start()
        try:
            wait_until(self._answers_http, 30, "versitygw to answer HTTP", process)
        except BaseException:
            process.kill()
            raise

    def _answers_http(self) -> bool:
        # Any HTTP reply (an unsigned request gets 403) shows the S3 API is being served.
        if self.port is None or not port_open(LOOPBACK, self.port):
            return False
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status > 0
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server and delete its data."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self.run_dir is not None:
            remove_dir(self.run_dir)
            self.run_dir = None

    def client(self) -> Any:
        """A botocore S3 client for this server (path-style: loopback has no bucket DNS names)."""
        # botocore comes with aiobotocore; imported here so this module stays importable without it.
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def create_bucket(self, name: str) -> None:
        """Create a bucket (plain CreateBucket); an existing bucket of ours is fine."""
        client = self.client()
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(**kwargs)

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
