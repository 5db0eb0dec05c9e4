"""One streamed read of a file, running ahead of a synchronous reader.

A reader that goes through a file from one end to the other (``pd.read_csv``, a copy) is
served by a single GET that the client's event loop keeps reading while the caller parses
what it has: one request instead of one per block, and the transfer overlaps the parsing.
At most ``window`` bytes are held ahead of the reader; the stream waits when they are.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator
from contextlib import aclosing

from tusk.sdk.loop import LoopThread

DEFAULT_WINDOW = 64 << 20
"""Bytes read ahead of the reader at most."""

_END = object()


class Prefetch:
    """Bytes from ``start`` to the end of a stream, read ahead on ``loop``; :meth:`read` takes
    them in order. ``position`` is where the next :meth:`read` starts."""

    def __init__(self, loop: LoopThread, pieces: AsyncIterator[bytes], start: int,
                 window: int = DEFAULT_WINDOW) -> None:
        self.position = start
        self._loop = loop.loop
        self._window = window
        self._pieces: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._held = 0  # bytes queued and not yet read
        self._lock = threading.Lock()
        self._rest = memoryview(b"")
        self._ended = False
        self._room = asyncio.Event()
        self._task = asyncio.run_coroutine_threadsafe(self._pump(pieces), self._loop)

    async def _pump(self, pieces: AsyncIterator[bytes]) -> None:
        try:
            async with aclosing(pieces) as stream:  # type: ignore[type-var]
                async for piece in stream:
                    with self._lock:
                        self._held += len(piece)
                        full = self._held >= self._window
                        if full:
                            self._room.clear()
                    self._pieces.put(piece)
                    if full:
                        await self._room.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # the reader raises it where it waits
            self._pieces.put(e)
            return
        self._pieces.put(_END)

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end of the stream)."""
        parts: list[bytes | memoryview] = []
        wanted = size
        while wanted > 0:
            if not self._rest:
                if self._ended:
                    break
                item = self._pieces.get()
                if item is _END:
                    self._ended = True
                    break
                if isinstance(item, BaseException):
                    self._ended = True
                    raise item
                assert isinstance(item, bytes)
                self._taken(len(item))
                self._rest = memoryview(item)
            take = self._rest[:wanted]
            parts.append(take)
            self._rest = self._rest[len(take):]
            wanted -= len(take)
        data = b"".join(parts)
        self.position += len(data)
        return data

    def _taken(self, size: int) -> None:
        with self._lock:
            self._held -= size
            resume = self._held < self._window // 2 and not self._room.is_set()
        if resume:
            self._loop.call_soon_threadsafe(self._room.set)

    def close(self) -> None:
        """Stop the stream (its connection is released) and drop what was read ahead."""
        self._task.cancel()
        self._rest = memoryview(b"")
