"""The streamed read that runs ahead of a synchronous reader (tusk:// files read through)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from tusk.errors import Unavailable
from tusk.sdk.loop import LoopThread
from tusk.sdk.prefetch import Prefetch


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread("prefetch-test")
    yield thread
    thread.close()


async def _pieces(data: bytes, size: int, sent: list[int] | None = None,
                  fail_after: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise Unavailable("the stream broke")
        if sent is not None:
            sent.append(start)
        yield data[start : start + size]
        await asyncio.sleep(0)


def test_reads_come_back_in_order_whatever_their_sizes(loop: LoopThread) -> None:
    data = bytes(range(256)) * 400
    stream = Prefetch(loop, _pieces(data, 1000), 5, window=4096)
    got = [stream.read(n) for n in (1, 999, 1000, 3333, 7, 50_000, 50_000)]
    assert b"".join(got) == data
    assert stream.position == 5 + len(data)
    assert stream.read(10) == b""


def test_stays_within_its_window_ahead_of_the_reader(loop: LoopThread) -> None:
    data = bytes(100_000)
    sent: list[int] = []
    stream = Prefetch(loop, _pieces(data, 1000, sent), 0, window=10_000)
    stream.read(1)
    # Wait for the stream to stop, then it has read no more than the window past the reader.
    done = threading.Event()

    async def settle() -> None:
        previous = -1
        while len(sent) != previous:
            previous = len(sent)
            for _ in range(20):
                await asyncio.sleep(0)
        done.set()

    loop.run(settle())
    assert done.is_set()
    assert len(sent) * 1000 <= 10_000 + 1000
    assert b"".join([stream.read(5_000) for _ in range(20)]) == data[1:]


def test_a_broken_stream_raises_where_the_reader_waits(loop: LoopThread) -> None:
    stream = Prefetch(loop, _pieces(bytes(10_000), 1000, fail_after=3000), 0)
    assert stream.read(3000) == bytes(3000)
    with pytest.raises(Unavailable, match="broke"):
        stream.read(1)


def test_close_stops_the_stream(loop: LoopThread) -> None:
    closed = threading.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x" * 1000
                await asyncio.sleep(0)
        finally:
            closed.set()

    stream = Prefetch(loop, endless(), 0, window=5000)
    assert stream.read(10) == b"x" * 10
    stream.close()
    assert closed.wait(30)
