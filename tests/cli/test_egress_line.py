"""The line ``tusk job inspect`` shows for a job's egress: an SQL egress adds its rows per
table."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from tusk.wire.jobs import EgressInfo
from tusk_cli import egress


def scheduler_showing(info: EgressInfo | None) -> object:
    class Scheduler:
        async def job_detail(self, job: str) -> SimpleNamespace:
            return SimpleNamespace(egress=info)

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Scheduler]:
        yield Scheduler()

    return connect


async def test_sql_egress_names_its_rows_per_table(monkeypatch: pytest.MonkeyPatch) -> None:
    info = EgressInfo(
        url="postgresql://egress@db/warehouse",
        state="success",
        files=3,
        bytes=51,
        rows={"people": 3, "cities": 1},
    )
    monkeypatch.setattr(egress, "connect_scheduler", scheduler_showing(info))
    assert await egress.job_egress("j1") == (
        "postgresql://egress@db/warehouse: success, 3 files, 51 bytes, rows cities=1, people=3"
    )


async def test_s3_egress_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    info = EgressInfo(url="s3://b/p", state="failure", files=0, bytes=0, error="NoSuchBucket")
    monkeypatch.setattr(egress, "connect_scheduler", scheduler_showing(info))
    assert await egress.job_egress("j1") == "s3://b/p: failure, 0 files, 0 bytes (NoSuchBucket)"
