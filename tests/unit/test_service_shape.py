"""The shape of services/README.md, where import-linter cannot see it: endpoints, event
handlers, background loops and the logic they call hold no SQL; the store modules do."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "services"
# Modules that may not hold SQL: each service's api/, events, background and logic.
NO_SQL = [
    *sorted((ROOT / "repo/tusk_repo/api").glob("*.py")),
    *sorted((ROOT / "repo/tusk_repo/s3").glob("*.py")),
    ROOT / "repo/tusk_repo/service.py",
    ROOT / "repo/tusk_repo/lifecycle.py",
    ROOT / "repo/tusk_repo/gc.py",
    ROOT / "repo/tusk_repo/history.py",
    ROOT / "repo/tusk_repo/access.py",
    *sorted((ROOT / "trigger/tusk_trigger/api").glob("*.py")),
    ROOT / "trigger/tusk_trigger/service.py",
    ROOT / "trigger/tusk_trigger/events.py",
    ROOT / "trigger/tusk_trigger/background.py",
    ROOT / "scheduler/tusk_scheduler/events.py",
    *sorted((ROOT / "scheduler/tusk_scheduler/background").glob("*.py")),
    *sorted((ROOT / "scheduler/tusk_scheduler/domain").glob("*.py")),
    *sorted((ROOT / "inference/tusk_inference").rglob("*.py")),
    *sorted((ROOT / "console/tusk_console").rglob("*.py")),
]
# A session is passed through, flushed, and no more.
SQL_CALLS = {"execute", "scalar", "scalars", "get", "delete", "add", "add_all", "refresh", "stream"}
ALLOWED_SQLALCHEMY = {
    ("sqlalchemy.ext.asyncio", "AsyncSession"),
    ("sqlalchemy.ext.asyncio", "AsyncConnection"),  # the leader's lock-holding connection
}


def sql_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [
                f"line {node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if (node.module, a.name) not in ALLOWED_SQLALCHEMY
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {a.name}"
                for a in node.names
                if a.name.startswith("sqlalchemy")
            ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "session"
        ):
            found.append(f"line {node.lineno}: session.{node.func.attr}(…)")
    return found


@pytest.mark.parametrize("path", NO_SQL, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_outside_the_store(path: Path) -> None:
    assert sql_in(path) == [], f"{path.relative_to(ROOT)} holds SQL; move it to the store"


def test_the_check_sees_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sqlalchemy import select\n"
        "from sqlalchemy.ext.asyncio import AsyncSession\n"
        "async def f(session: AsyncSession) -> None:\n"
        "    await session.execute(select(1))\n"
        "    await session.flush()\n"
    )
    assert sql_in(sample) == ["line 1: from sqlalchemy import select", "line 4: session.execute(…)"]
