"""A client reusing a kept-alive connection the server has just closed.

uvicorn closes a connection idle for 5 s, httpx keeps one for 5 s: a request sent as the
server closes gets "Server disconnected without sending a response". Nothing reached the
server, so the client must send it again rather than call the service unavailable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tusk.client.repo import RepoClient

BODY = b"model bytes"
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


async def _read_request_head(reader: asyncio.StreamReader) -> bool:
    try:
        await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return False
    return True


@pytest.fixture
async def closing_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server whose first connection answers one request, then closes unanswered as the
    second arrives on it; every later connection answers normally. Yields its URL and the
    number of requests each connection received."""
    received: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_connection = not received
        received.append(0)
        index = len(received) - 1
        while await _read_request_head(reader):
            received[index] += 1
            if first_connection and received[index] == 2:
                break
            writer.write(ANSWER)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", received


async def test_a_download_on_a_connection_closed_as_it_is_reused_is_sent_again(
    closing_server: tuple[str, list[int]],
) -> None:
    url, received = closing_server
    async with RepoClient(url) as client:
        first = b"".join([piece async for piece in client.get_file("train", "master", "/m")])
        second = b"".join([piece async for piece in client.get_file("train", "master", "/m")])
    assert first == second == BODY
    # The second request went out on the kept-alive connection, was dropped, and was sent
    # again on a new one.
    assert received == [2, 1]


async def test_a_blocking_download_on_a_connection_closed_as_it_is_reused_is_sent_again(
    closing_server: tuple[str, list[int]],
) -> None:
    url, received = closing_server

    def download() -> bytes:
        return b"".join(client.get_file_blocking("train", "master", "/m"))

    async with RepoClient(url) as client:
        first = await asyncio.to_thread(download)
        second = await asyncio.to_thread(download)
    assert first == second == BODY
    assert received == [2, 1]
