"""Fixtures shared by the whole suite: the real backing services (started once per session,
only when a test asks for them) and the repo service on each pair of adapters.

Backends are named ``embedded`` (SQLite + a local directory) and ``real`` (PostgreSQL + S3 on
versitygw). The same repo-service tests run on both.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.backing.kafka import KafkaBroker
from tests.backing.mariadb import MariaDBServer
from tests.backing.postgres import PostgresServer
from tests.backing.s3 import S3Server
from tests.scheduler.kube_fixtures import kube  # noqa: F401 (one kube-apiserver per session)
from tusk_repo.app import create_app
from tusk_repo.config import RepoSettings
from tusk_repo.context import Context, build_context

TEST_CHUNK_SIZE = 64 * 1024  # small, so multi-chunk files stay cheap in tests


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """MariaDB, the target of the SQL egress tests for mysql:// URLs."""
    server = MariaDBServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(num_partitions=3)
    broker.start()
    yield broker
    broker.close()


async def fresh_postgres_database(server: PostgresServer) -> str:
    """A new, empty database on the session's server; its SQLAlchemy URL."""
    return await asyncio.to_thread(server.new_database)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


def s3_settings(s3: S3Server, bucket: str) -> dict[str, object]:
    return {
        "object_store_url": f"s3://{bucket}/objects",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_access_key_id": s3.access_key,
        "s3_secret_access_key": s3.secret_key,
        "s3_region": s3.region,
    }


def real_settings(
    postgres: PostgresServer, s3: S3Server, tmp: Path, **extra: object
) -> RepoSettings:
    bucket = f"tusk-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    return RepoSettings(  # type: ignore[call-arg]
        data_dir=tmp,
        database_url=postgres.new_database(),  # a bucket of its own needs a database of its own
        **s3_settings(s3, bucket),
        TUSK_REPO_CHUNK_SIZE=TEST_CHUNK_SIZE,
        **extra,
    )


def embedded_settings(tmp: Path, **extra: object) -> RepoSettings:
    return RepoSettings(data_dir=tmp, TUSK_REPO_CHUNK_SIZE=TEST_CHUNK_SIZE, **extra)  # type: ignore[call-arg]


@pytest.fixture(scope="session", params=["embedded", "real"])
async def repo_context(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Context]:
    """One repo-service context per backend for the whole session."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        settings = embedded_settings(tmp)
    else:
        settings = real_settings(
            request.getfixturevalue("postgres"), request.getfixturevalue("s3"), tmp
        )
    async with build_context(settings) as context:
        yield context


@pytest.fixture
async def repo_ctx(repo_context: Context) -> AsyncIterator[Context]:
    """The session's context, emptied after each test."""
    yield repo_context
    async with repo_context.db.session() as session:
        # Children first, so foreign keys hold on both dialects.
        for table in (
            "repo_staged",
            "repo_provenance",
            "repo_commits",
            "repo_branches",
            "repo_repos",
            "repo_projects",
            "repo_outbox",
            "repo_auth_tokens",
            "repo_auth_roles",
            "repo_auth_audit",
        ):
            await session.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def client(repo_ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context=repo_ctx)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://repo") as c:
        yield c
