"""A private event loop on a thread of its own, for calling async code from sync code.

``asyncio.run`` refuses to run inside a running loop (Jupyter runs one); submitting the
coroutine to a loop that lives on another thread works everywhere, and keeps the HTTP
connection pool alive between calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """One event loop running on a daemon thread until :meth:`close`."""

    def __init__(self, name: str = "tusk-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or its exception)."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a tusk.Client method was called from its own loop's thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Pull an async iterator's items one by one from this thread; closing the returned
        generator early closes the async one (so an HTTP stream is released)."""

        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(iterator)
            except StopAsyncIteration:
                return False, None

        finished = False
        try:
            while True:
                more, item = self.run(step())
                if not more:
                    finished = True
                    return
                yield item  # type: ignore[misc]
        finally:
            closer = getattr(iterator, "aclose", None)
            if not finished and closer is not None and not self.loop.is_closed():
                self.run(closer())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
