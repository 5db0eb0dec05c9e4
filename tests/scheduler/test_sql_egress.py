"""SQL egress (Pachyderm's ``egress: {sql_database: …}``) into a database of its own on a real
PostgreSQL and a real MariaDB (``mysql://``), the same tests for both: each top-level directory
of the output commit names a table whose rows are replaced by its files' rows, in one
transaction; what is wrong fails the job saying so; a database that does not answer is waited
for."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from tests.backing import mariadb
from tests.backing.common import free_port
from tests.backing.mariadb import MariaDBServer
from tests.backing.postgres import PostgresServer
from tests.scheduler.conftest import EventLog, Scheduler, scheduler_settings
from tests.scheduler.helpers import commit_files, job_created, unique, wait_until
from tusk.client import RepoClient
from tusk.errors import Unavailable
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC
from tusk.pipelines.models import FileFormat
from tusk_scheduler.app import create_app
from tusk_scheduler.context import build_context
from tusk_scheduler.domain.sql_egress import EgressRefused, Progress, load_commit

SECRET = ("egress-db", "PACHYDERM_SQL_PASSWORD")
# The user code: the input's tree, as it is, becomes the output commit.
COPY_TREE = (
    "import os, shutil; shutil.copytree(os.environ['PFS_IN'], "
    "os.path.join(os.environ['TUSK_PFS_ROOT'], 'out'), dirs_exist_ok=True)"
)
TABLES = """
CREATE TABLE people (id integer PRIMARY KEY, name text NOT NULL, age integer);
CREATE TABLE cities (name text, population bigint);
CREATE TABLE untouched (note text);
INSERT INTO people VALUES (99, 'from an earlier commit', 1);
INSERT INTO untouched VALUES ('no directory names me');
"""


@dataclass(frozen=True)
class Target:
    """A database of its own for the egress, on one server; what its driver reads back."""

    kind: str
    url: str  # as an egress spec names it
    password: str
    port: int  # the server's

    async def rows(self, table: str) -> set[tuple[Any, ...]]:
        return {tuple(r) for r in await self.execute(f"SELECT * FROM {table}")}

    async def execute(self, statements: str) -> list[Any]:
        """Run ``statements`` (``;``-separated), committed; the last one's rows."""
        if self.kind == "postgres":
            connection = await asyncpg.connect(self.url, password=self.password)
            try:
                result: list[Any] = []
                for statement in filter(str.strip, statements.split(";")):
                    result = await connection.fetch(statement)
                return result
            finally:
                await connection.close()
        host_port, _, db = self.url.split("@", 1)[1].partition("/")
        connection = await aiomysql.connect(
            host=host_port.split(":")[0],
            port=self.port,
            user=mariadb.USER,
            password=self.password,
            db=db,
            autocommit=True,
        )
        try:
            async with connection.cursor() as cursor:
                for statement in filter(str.strip, statements.split(";")):
                    await cursor.execute(statement)
                return list(await cursor.fetchall())
        finally:
            connection.close()


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
async def database(request: pytest.FixtureRequest) -> Target:
    """The egress target, with its tables: PostgreSQL, then MariaDB."""
    if request.param == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.new_database().replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(TABLES)
        finally:
            await connection.close()
        assert postgres.port is not None
        return Target("postgres", url, "not-checked-by-trust-auth", postgres.port)
    server: MariaDBServer = request.getfixturevalue("mariadb_server")
    name = await asyncio.to_thread(server.new_database)
    await asyncio.to_thread(server.sql, TABLES, name)
    assert server.port is not None
    return Target("mariadb", server.url(name), mariadb.PASSWORD, server.port)


async def rows(target: Target, table: str) -> set[tuple[Any, ...]]:
    return await target.rows(table)


@pytest.fixture
async def scheduler(
    tmp_path: Path, repo_url: str, monkeypatch: pytest.MonkeyPatch, database: Target
) -> AsyncIterator[Scheduler]:
    """The scheduler in-process; its local runner reads secrets from ``tmp_path/secrets``,
    where the egress password is."""
    secrets = tmp_path / "secrets"
    (secrets / SECRET[0]).mkdir(parents=True)
    (secrets / SECRET[0] / SECRET[1]).write_text(database.password + "\n")
    monkeypatch.setenv("TUSK_WORKER_SECRETS_DIR", str(secrets))
    bus = MemoryBus(partitions=3)
    settings = scheduler_settings(tmp_path / "scheduler", repo_url)
    async with build_context(settings, bus=bus) as context:
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as api:
            yield Scheduler(context, bus, events, api)


def egress_spec(name: str, source: str, url: str, **file_format: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"name": "in", "repo": source, "glob": "/"}},
        "transform": {"cmd": [sys.executable, "-c", COPY_TREE]},
        "egress": {
            "sql_database": {
                "url": url,
                "file_format": file_format or {"type": "CSV"},
                "secret": {"name": SECRET[0], "key": SECRET[1]},
            }
        },
    }


async def run_pipeline(
    scheduler: Scheduler, repos: RepoClient, files: Mapping[str, bytes], url: str, **fmt: Any
) -> tuple[str, str]:
    """A job of a copying pipeline over one commit of ``files``; its id and output repo."""
    source, pipeline = unique("raw"), unique("export")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    commit = await commit_files(repos, source, files)
    global_id = (await repos.inspect_commit(source, commit)).global_id
    created = job_created(egress_spec(pipeline, source, url, **fmt), source, commit, global_id)
    await scheduler.send(created)
    return created.job, pipeline


async def test_each_top_level_directory_replaces_its_tables_rows(
    scheduler: Scheduler, repos: RepoClient, database: Target
) -> None:
    files = {
        "/people/a.csv": b"1,Ann,31\n2,Bob,\n",
        "/people/more/b.csv": b'3,"Smith, Cy",40\n',
        "/cities/all.csv": b"Lyon,522000\n",
    }
    job, _ = await run_pipeline(scheduler, repos, files, database.url)

    await scheduler.events.wait_for(job, "succeeded", within=300)
    # The earlier commit's row is gone; a table no directory names is left alone.
    assert await rows(database, "people") == {
        (1, "Ann", 31),
        (2, "Bob", None),
        (3, "Smith, Cy", 40),
    }
    assert await rows(database, "cities") == {("Lyon", 522000)}
    assert await rows(database, "untouched") == {("no directory names me",)}
    shown = (await scheduler.api.get(f"/v1/jobs/{job}")).json()["egress"]
    assert shown["url"] == database.url
    assert (shown["state"], shown["files"], shown["error"]) == ("success", 3, None)
    assert shown["rows"] == {"people": 3, "cities": 1}


async def test_json_lines_with_columns(
    scheduler: Scheduler, repos: RepoClient, database: Target
) -> None:
    files = {
        "/people/p.json": b'{"name": "Ann", "id": 1, "note": "not a column"}\n'
        b'{"id": 2, "name": "Bob", "age": 52}\n'
    }
    job, _ = await run_pipeline(
        scheduler, repos, files, database.url, type="JSON", columns=["id", "name", "age"]
    )

    await scheduler.events.wait_for(job, "succeeded", within=300)
    assert await rows(database, "people") == {(1, "Ann", None), (2, "Bob", 52)}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"/nosuch/a.csv": b"1\n"}, "no table 'nosuch' in the database"),
        (
            {"/people/a.csv": b"1,Ann\n"},
            "/people/a.csv: line 1: 2 values, but table people has 3 columns (id, name, age)",
        ),
        (
            {"/people/a.csv": b"1,Ann,3\nx,Ann,3\n"},
            {
                "postgres": '/people/a.csv: invalid input syntax for type integer: "x"',
                "mariadb": "/people/a.csv: line 2: Incorrect integer value: 'x' for column",
            },
        ),
        ({"/loose.csv": b"1,Ann,3\n"}, "/loose.csv: a file at the top of the output commit"),
    ],
    ids=["unknown table", "column count", "bad value", "file in the root"],
)
async def test_what_is_wrong_fails_the_job_saying_so(
    scheduler: Scheduler,
    repos: RepoClient,
    database: Target,
    files: dict[str, bytes],
    message: str | dict[str, str],
) -> None:
    if isinstance(message, dict):  # each database says it its own way
        message = message[database.kind]
    # A good table before the bad one: its changes are rolled back with the rest.
    job, _ = await run_pipeline(
        scheduler, repos, {"/cities/c.csv": b"Oslo,700000\n", **files}, database.url
    )

    failed = await scheduler.events.wait_for(job, "failed", within=300)
    assert f"egress to {database.url} failed: " in failed["reason"]
    assert message in failed["reason"]
    shown = (await scheduler.api.get(f"/v1/jobs/{job}")).json()["egress"]
    assert shown["state"] == "failure"
    assert message in shown["error"]
    assert await rows(database, "cities") == set()  # never loaded: nothing committed
    assert await rows(database, "people") == {(99, "from an earlier commit", 1)}


async def test_a_missing_secret_fails_the_job_naming_it(
    scheduler: Scheduler, repos: RepoClient, database: Target, tmp_path: Path
) -> None:
    (tmp_path / "secrets" / SECRET[0] / SECRET[1]).unlink()
    job, _ = await run_pipeline(scheduler, repos, {"/people/a.csv": b"1,Ann,3\n"}, database.url)

    failed = await scheduler.events.wait_for(job, "failed", within=300)
    assert "the password's secret (egress.sql_database.secret) is missing" in failed["reason"]
    assert f"{tmp_path / 'secrets'}/<name>/<key>" in failed["reason"]


@contextlib.asynccontextmanager
async def forwarder(port: int, target_port: int) -> AsyncIterator[None]:
    """A TCP forwarder from ``port`` to the database server: the database "comes back"."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_an_unreachable_database_is_waited_for_then_loaded(
    scheduler: Scheduler, repos: RepoClient, database: Target
) -> None:
    port = free_port()  # nothing listens there yet
    url = database.url.replace(f":{database.port}/", f":{port}/")
    job, _ = await run_pipeline(scheduler, repos, {"/people/a.csv": b"1,Ann,31\n"}, url)

    async def egress_failed() -> bool:
        detail = (await scheduler.api.get(f"/v1/jobs/{job}")).json()
        return bool((detail.get("egress") or {}).get("error"))

    await wait_until(egress_failed, what="the egress to meet a closed port")
    detail = (await scheduler.api.get(f"/v1/jobs/{job}")).json()
    assert detail["state"] == "finishing"
    assert detail["egress"]["state"] == "running"
    assert "cannot connect" in detail["egress"]["error"]
    async with forwarder(port, database.port):
        await scheduler.events.wait_for(job, "succeeded", within=300)
    assert await rows(database, "people") == {(1, "Ann", 31)}
    assert (await scheduler.api.get(f"/v1/jobs/{job}")).json()["egress"]["state"] == "success"


def files_of(tree: Mapping[str, bytes], piece: int = 4) -> Callable[[], AsyncIterator[Any]]:
    """Small pieces by default: records span them."""

    async def files() -> AsyncIterator[Any]:
        for path, data in tree.items():

            async def pieces(data: bytes = data) -> AsyncIterator[bytes]:
                for start in range(0, len(data), piece):
                    yield data[start : start + piece]

            yield path, pieces

    return files


async def test_loading_a_commit_again_leaves_the_same_rows(database: Target) -> None:
    tree = {
        "/people/a.csv": b'id,name\n1,"Ann\nMarie"\n2,Bob\n3,"O\'Brien \\ ""q"""\n',
        "/cities/c.csv": b"x,1\n",
    }
    fmt = FileFormat(type="CSV", columns=("id", "name"))
    # One format for every table: columns that one table lacks fail the whole commit.
    with pytest.raises(
        EgressRefused,
        match="/cities/c.csv: .* names 'id', not a column of "
        r"table cities \(it has name, population\)",
    ):
        await load_commit(database.url, database.password, fmt, files_of(tree)(), Progress())
    assert await rows(database, "people") == {(99, "from an earlier commit", 1)}
    del tree["/cities/c.csv"]
    for _ in range(2):
        progress = Progress()
        await load_commit(database.url, database.password, fmt, files_of(tree)(), progress)
        assert await rows(database, "people") == {
            (1, "Ann\nMarie", None),
            (2, "Bob", None),
            (3, 'O\'Brien \\ "q"', None),
        }
        assert (progress.files, progress.rows) == (1, {"people": 3})


async def test_a_closed_port_is_worth_retrying(database: Target) -> None:
    url = database.url.rsplit("@", 1)[0] + f"@127.0.0.1:{free_port()}/db"
    with pytest.raises(Unavailable, match="cannot connect"):
        await load_commit(url, "pw", FileFormat(), files_of({})(), Progress())


async def test_a_directory_may_name_a_table_of_another_schema(database: Target) -> None:
    # A database, in MySQL's words (CREATE SCHEMA is its synonym for CREATE DATABASE).
    schema = f"s_{uuid.uuid4().hex[:8]}"
    await database.execute(
        f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.scores (who text, score integer);"
        f"INSERT INTO {schema}.scores VALUES ('old', 1)"
    )
    tree = {f"/{schema}.scores/a.csv": b"Ann,7\n", "/people/p.csv": b"5,Eve,\n"}
    progress = Progress()
    await load_commit(database.url, database.password, FileFormat(), files_of(tree)(), progress)
    assert await rows(database, f"{schema}.scores") == {("Ann", 7)}
    assert await rows(database, "people") == {(5, "Eve", None)}
    assert progress.rows == {f"{schema}.scores": 1, "people": 1}


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("JSON", b'{"name": "a", "flag": true}\n{"name": "b", "flag": false}\n{"name": "c"}\n'),
        ("CSV", b"a,true\nb,f\nc,\n"),
    ],
)
async def test_booleans_are_read_as_postgresql_reads_them(
    database: Target, kind: str, data: bytes
) -> None:
    # MySQL's BOOLEAN is tinyint(1), which refuses the words by itself.
    await database.execute("CREATE TABLE flags (name text, flag boolean)")
    tree = {"/flags/f": data}
    await load_commit(
        database.url, database.password, FileFormat(type=kind), files_of(tree)(), Progress()
    )
    loaded = {(n, None if f is None else bool(f)) for n, f in await rows(database, "flags")}
    assert loaded == {("a", True), ("b", False), ("c", None)}


async def test_a_large_file_fails_at_its_line_and_leaves_the_table_as_it_was(
    database: Target,
) -> None:
    """Over a megabyte: the rows go in several statements (MySQL) or COPY buffers, and the
    error still names its line, wherever it is; nothing of the file stays."""
    good = b"".join(b"%d,person %d with a longer name,%d\n" % (i, i, i % 90) for i in range(40_000))
    assert len(good) > 1 << 20
    bad_late = {"/people/a.csv": good + b"40000,Ann\n"}
    with pytest.raises(EgressRefused, match=r"/people/a\.csv: line 40001: 2 values, but table"):
        await load_commit(
            database.url, database.password, FileFormat(), files_of(bad_late, 65536)(), Progress()
        )
    assert await rows(database, "people") == {(99, "from an earlier commit", 1)}
    bad_early = {
        "/people/a.csv": b"1,Ann,1\nx,Bob,2\n" + good[len(b"0,person 0 with a longer name,0\n") :]
    }
    message = {
        "postgres": '/people/a.csv: invalid input syntax for type integer: "x"',
        "mariadb": "/people/a.csv: line 2: Incorrect integer value: 'x' for column",
    }[database.kind]
    with pytest.raises(EgressRefused, match=re.escape(message)):
        await load_commit(
            database.url, database.password, FileFormat(), files_of(bad_early, 65536)(), Progress()
        )
    assert await rows(database, "people") == {(99, "from an earlier commit", 1)}
    progress = Progress()
    await load_commit(
        database.url,
        database.password,
        FileFormat(),
        files_of({"/people/a.csv": good}, 65536)(),
        progress,
    )
    assert progress.rows == {"people": 40_000}
    assert len(await rows(database, "people")) == 40_000


@pytest.fixture
async def mariadb_database(mariadb_server: MariaDBServer) -> str:
    """A database of its own on MariaDB, with the tables above; its egress URL."""
    name = await asyncio.to_thread(mariadb_server.new_database)
    await asyncio.to_thread(mariadb_server.sql, TABLES, name)
    return mariadb_server.url(name)


@pytest.mark.mariadb
async def test_mysql_refuses_a_table_that_cannot_roll_back(
    mariadb_server: MariaDBServer, mariadb_database: str
) -> None:
    name = mariadb_database.rsplit("/", 1)[1]
    await asyncio.to_thread(mariadb_server.sql, "CREATE TABLE log (m text) ENGINE=MyISAM", name)
    tree = {"/people/a.csv": b"1,Ann,31\n", "/log/a.csv": b"hello\n"}
    with pytest.raises(EgressRefused, match="table 'log' uses the MyISAM engine, which cannot"):
        await load_commit(
            mariadb_database, mariadb.PASSWORD, FileFormat(), files_of(tree)(), Progress()
        )
    target = Target("mariadb", mariadb_database, mariadb.PASSWORD, mariadb_server.port or 0)
    assert await rows(target, "people") == {(99, "from an earlier commit", 1)}


@pytest.mark.mariadb
async def test_mysql_sends_the_secrets_password(mariadb_database: str) -> None:
    with pytest.raises(EgressRefused, match="refused the password: Access denied for user"):
        await load_commit(mariadb_database, "wrong", FileFormat(), files_of({})(), Progress())
