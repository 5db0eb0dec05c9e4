"""``GET /v1/about``: which service answers, its version, and the adapters it runs on.

``tusk status`` asks every service; a deployment that answers on some addresses and not
others, or with a different database or bus than expected, shows up at a glance.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import make_url

from tusk import __version__
from tusk.auth.http import authenticated
from tusk.settings import CommonSettings


class ServiceAbout(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    service: str
    version: str
    database: str | None = Field(description="The database in use, without its password")
    bus: str = Field(description="'memory' (in-process) or 'kafka <bootstrap servers>'")
    object_store: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)


def describe(
    service: str,
    settings: CommonSettings,
    *,
    uses_database: bool = True,
    uses_objects: bool = False,
    extra: dict[str, str] | None = None,
) -> ServiceAbout:
    return ServiceAbout(
        service=service,
        version=__version__,
        database=make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        if uses_database
        else None,
        bus=f"kafka {settings.kafka_bootstrap}" if settings.kafka_bootstrap else "memory",
        object_store=settings.resolved_object_store_url if uses_objects else None,
        extra=extra or {},
    )


def add_about_route(app: FastAPI, about: ServiceAbout) -> None:
    # It names the database and brokers: for callers with a token, when tokens are on.
    @app.get(
        "/v1/about",
        tags=["health"],
        response_model=ServiceAbout,
        dependencies=[Depends(authenticated)],
    )
    async def service_about() -> ServiceAbout:
        return about
