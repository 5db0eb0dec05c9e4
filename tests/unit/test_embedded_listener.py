"""The embedded stack's listening sockets: accepted connections must have TCP_NODELAY, or
every keep-alive request waits out the client's delayed ACK (about 40 ms on Linux)."""

from __future__ import annotations

import asyncio
import socket

import httpx
from fastapi import FastAPI

from tusk_stack.embedded import _listener


async def test_connections_to_an_embedded_service_are_not_delayed_by_nagle() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    listener = _listener("test", app, "127.0.0.1", 0, "TUSK_TEST_PORT", debug=False)
    port = listener.socket.getsockname()[1]
    serving = asyncio.create_task(listener.server.serve(sockets=[listener.socket]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                if listener.server.started:
                    break
                await asyncio.sleep(0.01)
            assert (await client.get("/ping")).json() == {"pong": "yes"}
            connections = list(listener.server.server_state.connections)
            assert connections, "the server saw no connection"
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")  # type: ignore[attr-defined]
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.server.should_exit = True
        await serving
        listener.socket.close()
