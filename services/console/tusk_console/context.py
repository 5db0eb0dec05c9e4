"""The long-lived parts of one console process, built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx

from tusk.events.bus import EventBus
from tusk.events.factory import open_event_bus
from tusk_console.config import ConsoleSettings
from tusk_console.domain.metrics import RateTracker
from tusk_console.live import LiveFeed


@dataclass(frozen=True)
class Context:
    settings: ConsoleSettings
    live: LiveFeed
    # One connection pool for every call to the other services; each call carries the
    # user's own token (see api/deps.py), never one of the console's.
    transport: httpx.AsyncBaseTransport
    rates: RateTracker


@asynccontextmanager
async def build_context(
    settings: ConsoleSettings, bus: EventBus | None = None
) -> AsyncIterator[Context]:
    """``bus`` lets an embedded stack share its MemoryBus with the console."""
    async with AsyncExitStack() as stack:
        if bus is None:
            bus = await stack.enter_async_context(open_event_bus(settings))
        live = LiveFeed(bus)
        await live.start()
        stack.push_async_callback(live.stop)
        pool = httpx.AsyncHTTPTransport()
        stack.push_async_callback(pool.aclose)
        yield Context(
            settings=settings, live=live, transport=SharedTransport(pool), rates=RateTracker()
        )


class SharedTransport(httpx.AsyncBaseTransport):
    """The pool, lent to the short-lived per-request clients: closing one of them must not
    close the pool the others use."""

    def __init__(self, pool: httpx.AsyncBaseTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None
