"""One streamed read of a file, running ahead of a synchronous reader.

A reader that goes through a file from one end to the other (``pd.read_csv``, a copy) is
served by a single GET that a thread of its own keeps reading while the caller parses what it
has: one request instead of one per block, and the transfer overlaps the parsing. At most
``window`` bytes are held ahead of the reader (plus the piece being received): the thread
waits when they are, so a file of any size costs bounded memory.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator, Iterator

DEFAULT_WINDOW = 64 << 20
"""Bytes read ahead of the reader at most."""


class Prefetch:
    """Bytes from ``start`` to the end of ``pieces``, read ahead on a thread; :meth:`read`
    takes them in order. ``position`` is where the next :meth:`read` starts.

    ``pieces`` is iterated, and closed, on that thread only (a generator that holds an HTTP
    response open is closed where it runs, which releases the connection)."""

    def __init__(self, pieces: Iterator[bytes], start: int, window: int = DEFAULT_WINDOW,
                 name: str = "tusk-prefetch") -> None:
        self.position = start
        self._window = window
        self._queue: deque[bytes] = deque()
        self._held = 0  # bytes queued and not yet taken by the reader
        self._ended = False  # the thread put its last piece (or its error)
        self._error: BaseException | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._rest = memoryview(b"")
        self._thread = threading.Thread(target=self._pump, args=(pieces,), name=name,
                                        daemon=True)
        self._thread.start()

    def _pump(self, pieces: Iterator[bytes]) -> None:
        try:
            for piece in pieces:
                with self._changed:
                    while self._held >= self._window and not self._closed:
                        self._changed.wait()
                    if self._closed:
                        return
                    self._queue.append(piece)
                    self._held += len(piece)
                    self._changed.notify_all()
        except BaseException as e:  # the reader raises it where it waits
            with self._changed:
                self._error = e
        finally:
            if isinstance(pieces, Generator):
                pieces.close()
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def _next_piece(self) -> bytes | None:
        """The next piece received, waiting for it; None at the end of the stream."""
        with self._changed:
            while not self._queue and not self._ended:
                self._changed.wait()
            if self._queue:
                piece = self._queue.popleft()
                self._held -= len(piece)
                if self._held < self._window:
                    self._changed.notify_all()
                return piece
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            return None

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end of the stream)."""
        if len(self._rest) >= size:  # the common case: no join, one copy at most
            data = self._rest[:size].tobytes()
            self._rest = self._rest[size:]
            self.position += size
            return data
        parts: list[bytes | memoryview] = []
        wanted = size
        while wanted > 0:
            if not self._rest:
                piece = self._next_piece()
                if piece is None:
                    break
                if len(piece) == wanted and not parts:
                    self.position += wanted
                    return piece  # a whole piece as it came: no copy at all
                self._rest = memoryview(piece)
            take = self._rest[:wanted]
            parts.append(take)
            self._rest = self._rest[len(take):]
            wanted -= len(take)
        data = b"".join(parts)
        self.position += len(data)
        return data

    def close(self) -> None:
        """Stop the stream (its thread closes it at its next piece, which releases its
        connection) and drop what was read ahead."""
        with self._changed:
            self._closed = True
            self._queue.clear()
            self._held = 0
            self._changed.notify_all()
        self._rest = memoryview(b"")
