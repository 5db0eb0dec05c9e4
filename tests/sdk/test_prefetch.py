"""The streamed read that runs ahead of a synchronous reader (tusk:// files read through)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from tusk.errors import Unavailable
from tusk.sdk.loop import LoopThread
from tusk.sdk.prefetch import Prefetch


def _pieces(data: bytes, size: int, sent: list[int] | None = None,
            fail_after: int | None = None) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise Unavailable("the stream broke")
        if sent is not None:
            sent.append(start)
        yield data[start : start + size]


def test_reads_come_back_in_order_whatever_their_sizes() -> None:
    data = bytes(range(256)) * 400
    stream = Prefetch(_pieces(data, 1000), 5, window=4096)
    got = [stream.read(n) for n in (1, 999, 1000, 3333, 7, 50_000, 50_000)]
    assert b"".join(got) == data
    assert stream.position == 5 + len(data)
    assert stream.read(10) == b""


def test_stays_within_its_window_ahead_of_the_reader() -> None:
    data = bytes(100_000)
    sent: list[int] = []
    waiting = threading.Event()

    def pieces() -> Iterator[bytes]:
        yield from _pieces(data, 1000, sent)

    stream = Prefetch(pieces(), 0, window=10_000)
    stream.read(1)
    # The thread stops when the window is full: it then waits on the stream's condition.
    with stream._changed:
        waiting.set() if stream._changed.wait_for(lambda: stream._held >= 10_000, 30) else None
    assert waiting.is_set()
    # One piece taken by the reader, the window full, and the piece being put: no more.
    assert len(sent) * 1000 <= 10_000 + 2000
    assert b"".join([stream.read(5_000) for _ in range(20)]) == data[1:]


def test_a_broken_stream_raises_where_the_reader_waits() -> None:
    stream = Prefetch(_pieces(bytes(10_000), 1000, fail_after=3000), 0)
    assert stream.read(3000) == bytes(3000)
    with pytest.raises(Unavailable, match="broke"):
        stream.read(1)


def test_close_stops_the_stream_and_closes_it_on_its_thread() -> None:
    closed = threading.Event()
    closed_on: list[threading.Thread] = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 1000
        finally:
            closed_on.append(threading.current_thread())
            closed.set()

    stream = Prefetch(endless(), 0, window=5000)
    assert stream.read(10) == b"x" * 10
    stream.close()
    assert closed.wait(30)
    assert closed_on[0] is not threading.current_thread()


def test_an_async_stream_through_a_loop_thread() -> None:
    """What a client with a transport of the caller's (async only) reads through."""
    loop = LoopThread("prefetch-test")
    closed = threading.Event()

    async def pieces() -> AsyncIterator[bytes]:
        try:
            for i in range(100):
                yield bytes([i]) * 100
                await asyncio.sleep(0)
        finally:
            closed.set()

    try:
        stream = Prefetch(loop.iterate(pieces()), 0, window=1000)
        assert stream.read(250) == bytes([0]) * 100 + bytes([1]) * 100 + bytes([2]) * 50
        stream.close()
        assert closed.wait(30)
    finally:
        loop.close()
