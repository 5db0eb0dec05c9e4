"""How a warm worker pod takes its shard: one :class:`Assignment` over HTTP.

A pod cannot be written to on stdin, so a warm pod's worker listens on its pod's address and
takes ``POST /v1/assignment`` with the JSON of an assignment, once. The request must carry the
key the runner put in the pod's environment (``Authorization: Bearer <key>``): anything that can
reach the pod's port could otherwise make it run a shard of its choosing with the pipeline's
secrets. ``GET /healthz`` says whether the worker is still waiting (for probes and people).

A deliberately small HTTP/1.1 server on asyncio streams (one request per connection): the
worker's image carries no web framework, and the exchange is one request long.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from http import HTTPStatus

import structlog
from pydantic import ValidationError

from tusk.worker.protocol import Assignment

log = structlog.get_logger("tusk.worker")

ASSIGNMENT_PATH = "/v1/assignment"
HEALTH_PATH = "/healthz"
MAX_BODY = 4 * 1024 * 1024  # a shard spec inline; far more than any has needed
READ_TIMEOUT = 10.0  # seconds a client has to send its whole request


class AssignmentListener:
    """Accepts one assignment that carries ``key``; :meth:`wait` returns it."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()
        self._taken: asyncio.Future[Assignment] = asyncio.get_running_loop().create_future()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    async def wait(self) -> Assignment:
        try:
            return await self._taken
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, message = await asyncio.wait_for(self._answer(reader), READ_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, ConnectionError):
            status, message = HTTPStatus.BAD_REQUEST, "incomplete or malformed request"
        with contextlib.suppress(ConnectionError):
            body = json.dumps({"status": int(status), "message": message}).encode()
            writer.write(
                f"HTTP/1.1 {status.value} {status.phrase}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[HTTPStatus, str]:
        request = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(request) != 3:
            return HTTPStatus.BAD_REQUEST, "malformed request line"
        method, path, _ = request
        if path == HEALTH_PATH and method == "GET":
            if self._taken.done():
                return HTTPStatus.CONFLICT, "assigned"
            return HTTPStatus.OK, "waiting for an assignment"
        if path != ASSIGNMENT_PATH:
            return HTTPStatus.NOT_FOUND, f"no such path; POST {ASSIGNMENT_PATH}"
        if method != "POST":
            return HTTPStatus.METHOD_NOT_ALLOWED, f"POST {ASSIGNMENT_PATH}"
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.encode(), self._key):
            log.warning("assignment refused: wrong or missing key")
            return HTTPStatus.FORBIDDEN, "wrong or missing key"
        length = int(headers.get("content-length", "0"))
        if not 0 < length <= MAX_BODY:
            return HTTPStatus.BAD_REQUEST, f"a body of 1 to {MAX_BODY} bytes is needed"
        body = await reader.readexactly(length)
        try:
            assignment = Assignment.model_validate_json(body)
        except ValidationError as e:
            return HTTPStatus.BAD_REQUEST, f"not an assignment: {e}"
        if self._taken.done():
            return HTTPStatus.CONFLICT, "this worker has its assignment already"
        self._taken.set_result(assignment)
        return HTTPStatus.ACCEPTED, "assigned"
