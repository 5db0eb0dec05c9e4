"""The routes every service with an outbox serves about its parked rows (see
:mod:`tusk.events.relay`): list them with their reason, and replay them once the cause is
fixed (the broker's limit raised, the consumer fixed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from tusk.auth.http import PrincipalDep, require_admin
from tusk.errors import NotFound
from tusk.events.relay import OutboxRelay


class ParkedEvent(BaseModel):
    id: int
    event_id: str
    type: str
    topic: str
    key: str
    size_bytes: int
    reason: str
    parked_at: datetime


class ParkedEvents(BaseModel):
    count: int
    items: list[ParkedEvent]


class Replayed(BaseModel):
    replayed: int


def add_outbox_routes(
    app: FastAPI, relay_of: Callable[[Request], OutboxRelay], *, serve_metrics: bool = False
) -> None:
    """``/v1/outbox/parked`` (and, with ``serve_metrics``, ``/metrics`` with the relay's
    gauges, for services that have no metrics of their own)."""
    # Replaying events is an operator's repair: administrators only.
    router = APIRouter(
        prefix="/v1/outbox",
        tags=["outbox"],
        dependencies=[Depends(require_admin)],
        responses={
            400: {"description": "a parameter out of range"},
            404: {"description": "no parked row of that id"},
        },
    )

    @router.get("/parked", response_model=ParkedEvents)
    async def list_parked(
        request: Request, limit: int = Query(100, ge=1, le=1000)
    ) -> ParkedEvents:
        """Events the broker refused for good, oldest first, with the reason."""
        relay = relay_of(request)
        rows = await relay.list_parked(limit)
        return ParkedEvents(
            count=await relay.count_parked(),
            items=[ParkedEvent.model_validate(r, from_attributes=True) for r in rows],
        )

    @router.post("/parked/replay", response_model=Replayed)
    async def replay_all(request: Request) -> Replayed:
        """Publish every parked event again (in order with what is pending)."""
        return Replayed(replayed=await relay_of(request).replay())

    @router.post("/parked/{row_id}/replay", response_model=Replayed)
    async def replay_one(request: Request, row_id: int = Path(ge=1)) -> Replayed:
        """Publish one parked event again; it is parked again if the broker still refuses."""
        replayed = await relay_of(request).replay(row_id)
        if not replayed:
            raise NotFound(f"no parked outbox row {row_id}")
        return Replayed(replayed=replayed)

    app.include_router(router)

    if serve_metrics:

        @app.get("/metrics", tags=["health"], response_class=Response)
        async def metrics(request: Request, _: PrincipalDep) -> Response:
            relay = relay_of(request)
            await relay.count_parked()
            return Response(generate_latest(relay.registry), media_type=CONTENT_TYPE_LATEST)
