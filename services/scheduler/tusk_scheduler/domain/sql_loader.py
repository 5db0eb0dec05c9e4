"""The seam between SQL egress and one kind of database: a :class:`Loader` is one open
connection that empties a table and loads rows into it, inside one transaction, and says which
of its driver's errors may pass by themselves (:class:`~tusk.errors.Unavailable`) and which will
not (:class:`EgressRefused`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from tusk_scheduler.domain.rows import Row


class EgressRefused(Exception):
    """The egress cannot succeed as the spec and the data stand; the message says why."""


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    """Rows of one file in its order, with the line of the file each begins on."""

    rows: list[Row]
    lines: list[int]


class Loader(Protocol):
    errors: tuple[type[BaseException], ...]
    """The driver's and the network's exceptions, which :meth:`failure` translates."""

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """All of one commit's changes: committed together, or rolled back together."""
        ...

    async def empty_table(self, directory: str) -> Table:
        """The table a top-level directory names, emptied so that readers still see its old
        rows until the transaction commits; ``EgressRefused`` if there is none."""
        ...

    async def load(
        self, table: Table, columns: tuple[str, ...], batches: AsyncIterator[Batch]
    ) -> None:
        """Insert the rows of one file into ``columns`` of ``table``."""
        ...

    def failure(self, error: BaseException, path: str | None) -> Exception:
        """One of :attr:`errors` as ``Unavailable`` (worth retrying) or ``EgressRefused`` (the
        message names ``path``, and the line where the database says)."""
        ...

    async def close(self) -> None: ...
