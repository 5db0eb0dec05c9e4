"""SQL for projects: the namespaces of repos (a repo of project ``p`` is named ``p/…``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.db import insert_if_absent
from tusk_repo.tables import ProjectRow, RepoRow


async def insert_project(
    session: AsyncSession, name: str, description: str, created_at: datetime
) -> bool:
    """False when a project of that name exists."""
    return await insert_if_absent(
        session,
        ProjectRow.__table__,
        {"name": name, "description": description, "created_at": created_at},
    )


async def project_named(
    session: AsyncSession, name: str, *, lock: bool = False, share: bool = False
) -> ProjectRow | None:
    """``share``: hold it against deletion until the transaction ends (creating a repo in it);
    ``lock``: hold it against that (deleting it). PostgreSQL only: SQLite has one writer."""
    query = select(ProjectRow).where(ProjectRow.name == name)
    if lock or share:
        query = query.with_for_update(read=share and not lock)
    return await session.scalar(query)


async def all_projects(session: AsyncSession) -> list[ProjectRow]:
    return list((await session.scalars(select(ProjectRow).order_by(ProjectRow.name))).all())


def _in_project(name: str) -> ColumnElement[bool]:
    # '_' is a LIKE wildcard; a project name holds no '%' but may hold '_'.
    escaped = name.replace("\\", "\\\\").replace("_", "\\_")
    return RepoRow.name.like(f"{escaped}/%", escape="\\")


async def repo_counts(session: AsyncSession) -> dict[str, int]:
    """How many repos each project holds, by project name (``default``: unqualified names)."""
    counts: dict[str, int] = {}
    for (name,) in (await session.execute(select(RepoRow.name))).all():
        project = name.split("/", 1)[0] if "/" in name else "default"
        counts[project] = counts.get(project, 0) + 1
    return counts


async def repos_in(session: AsyncSession, project: str) -> list[str]:
    query = select(RepoRow.name).where(_in_project(project)).order_by(RepoRow.name).limit(20)
    return list((await session.scalars(query)).all())


async def delete_project(session: AsyncSession, name: str) -> None:
    await session.execute(delete(ProjectRow).where(ProjectRow.name == name))
