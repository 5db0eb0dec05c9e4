"""Walking several trees side by side, one level at a time: the comparison that diffs and
three-way merges are made of.

Directories are visited breadth first, and the nodes a level needs are read a few directories
at a time through a ``ManyLoader`` (one SQL query each), where a depth-first walk would read
them one by one; the next directories' nodes are read while these are compared, so that the
database sends rows while the comparison runs. Only directories whose hashes differ between
the sides are visited at all: equal hashes are equal subtrees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import orjson

from tusk.paths import split_path
from tusk_repo import rowspans
from tusk_repo.trees import (
    DIR,
    EMPTY_NODE,
    FILE,
    Entry,
    ManyLoader,
    Node,
    encode_rows,
    lookup,
    single,
)

Row = tuple[str, str, str, int, int]  # name, kind, hash, size, count: a node's entry
Sides = tuple[str | None, ...]  # each side's directory hash at a path (None: no directory there)
K = TypeVar("K")
V = TypeVar("V")
# Encoded nodes by hash, as stored: compared as rows of bytes, decoded only where they differ.
BlobLoader = Callable[[Collection[str]], Awaitable[Mapping[str, bytes]]]


def raw_rows(blob: bytes) -> list[bytes]:
    """A node's encoded rows, each without its brackets. The encoding is JSON of
    ``[["name","f","hash",size,count],…]``, so rows are joined by ``],["``. Inside a row that
    can only occur where a name ends in ``],[`` (a quote within a name is escaped, so the
    quote is the name's end): the piece after such a split starts with ``,"f","`` or
    ``,"d","`` (the rest of that row), which no row does (after a name's first character
    ``,``, an unescaped quote ends the name), and is put back."""
    if blob == EMPTY_NODE:
        return []
    pieces = blob[3:-2].split(b'],["')
    if b'],[","' not in blob:
        return pieces
    rows: list[bytes] = []
    for piece in pieces:
        if rows and piece.startswith((b',"f","', b',"d","')):
            rows[-1] += b'],["' + piece
        else:
            rows.append(piece)
    return rows


def join_rows(rows: Sequence[bytes]) -> bytes:
    return b'[["' + b'],["'.join(rows) + b"]]" if rows else EMPTY_NODE


def decode_row(raw: bytes) -> Row:
    name, kind, digest, size, count = orjson.loads(b'["' + raw + b"]")
    return (name, DIR if kind == "d" else FILE, digest, size, count)


def encode_row(row: Row) -> bytes:
    return encode_rows((row,))[3:-2]


def row_name(raw: bytes) -> str:
    return decode_row(raw)[0]


# Directories whose nodes are read at once: a tenth of a level of a hundred large directories
# (three nodes of ~1 MB each), small enough that most of the reading overlaps comparing.
PER_READ = 10


async def walk(
    load_many: Callable[[Collection[str]], Awaitable[Mapping[str, V]]],
    start: Iterable[tuple[K, Sides]],
    visit: Callable[[K, Sequence[V | None]], Iterable[tuple[K, Sides]]],
    per_read: int = PER_READ,
) -> None:
    """Call ``visit(key, nodes)`` for every directory reached from ``start``, a level at a time;
    ``visit`` answers the child directories to visit next, with keys of its choosing. The nodes
    of ``per_read`` directories are read at a time, the next ones while these are visited (one
    read in flight: a session's connection runs one statement at a time)."""

    def read(frames: Sequence[tuple[K, Sides]]) -> asyncio.Future[Mapping[str, V]]:
        wanted = {h for _, sides in frames for h in sides if h is not None}
        return asyncio.ensure_future(load_many(wanted))

    frames = list(start)
    while frames:
        groups = [frames[i : i + per_read] for i in range(0, len(frames), per_read)]
        following: list[tuple[K, Sides]] = []
        ahead = read(groups[0])
        try:
            for i, group in enumerate(groups):
                nodes = await ahead
                if i + 1 < len(groups):
                    ahead = read(groups[i + 1])
                for key, sides in group:
                    following.extend(visit(key, [None if h is None else nodes[h] for h in sides]))
                    # Lets the read in flight take in the rows that have arrived meanwhile.
                    await asyncio.sleep(0)
        finally:
            if not ahead.done():  # a visit failed: the statement in flight ends before the error
                await asyncio.wait([ahead])
            if not ahead.cancelled():
                ahead.exception()  # retrieved: the visit's error is the one raised
        frames = following


def changed_rows(old: bytes, new: bytes) -> tuple[Collection[bytes], Collection[bytes]]:
    """The rows of ``old`` not in ``new`` and those of ``new`` not in ``old``: span by span
    when the encodings allow it (``rowspans``), else as sets of rows."""
    if rowspans.comparable(old, new):
        try:
            gone, came = rowspans.changed_rows(old, new)
            return gone.keys(), came.keys()
        except rowspans.Ambiguous:
            pass
    old_rows, new_rows = raw_rows(old), raw_rows(new)
    return set(old_rows).difference(new_rows), set(new_rows).difference(old_rows)


def by_name(node: Node | None) -> dict[str, Row]:
    return {} if node is None else {row[0]: row for row in node.rows}


def changed_names(one: Node | None, other: Node | None) -> set[str]:
    """Names whose entries differ between two directories. Rows are compared whole: an equal
    hash means an equal size and count, so a differing row is a differing entry."""
    if one is None or other is None:
        present = one if one is not None else other
        return set() if present is None else {row[0] for row in present.rows}
    return {row[0] for row in set(one.rows).symmetric_difference(other.rows)}


def path_order(path: str) -> tuple[str, ...]:
    """Sort key giving a depth-first walk's order (``/a/b`` before ``/a-c``)."""
    return tuple(split_path(path))


# --- diff ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    path: str
    change: Literal["added", "deleted", "modified"]
    old: Entry | None
    new: Entry | None


async def diff(
    load_many: ManyLoader,
    load_blobs: BlobLoader,
    old_root: str,
    new_root: str,
    path: str = "/",
) -> list[Change]:
    """File-level changes from ``old_root`` to ``new_root`` under ``path``, in path order.
    Directories are compared as encoded rows (``changed_rows``): only the rows that differ are
    decoded."""
    load = single(load_many)
    old, new = await lookup(load, old_root, path), await lookup(load, new_root, path)
    changes: list[Change] = []

    def compare(where: str, o: Row | None, n: Row | None) -> Iterable[tuple[str, Sides]]:
        if o is not None and n is not None and o[1:3] == n[1:3]:
            return ()
        if o is not None and n is not None and o[1] == FILE and n[1] == FILE:
            changes.append(Change(where, "modified", Entry(*o), Entry(*n)))
            return ()
        if o is not None and o[1] == FILE:
            changes.append(Change(where, "deleted", Entry(*o), None))
        if n is not None and n[1] == FILE:
            changes.append(Change(where, "added", None, Entry(*n)))
        sides = (
            o[2] if o is not None and o[1] == DIR else None,
            n[2] if n is not None and n[1] == DIR else None,
        )
        return ((where, sides),) if sides != (None, None) else ()

    def visit(where: str, blobs: Sequence[bytes | None]) -> Iterable[tuple[str, Sides]]:
        gone, came = changed_rows(*(EMPTY_NODE if b is None else b for b in blobs))
        prefix = where.rstrip("/")
        olds = {r[0]: r for r in map(decode_row, gone)}
        news = {r[0]: r for r in map(decode_row, came)}
        following: list[tuple[str, Sides]] = []
        for name in olds.keys() | news.keys():
            following.extend(compare(f"{prefix}/{name}", olds.get(name), news.get(name)))
        return following

    def row(entry: Entry | None) -> Row | None:
        if entry is None:
            return None
        return (entry.name, entry.kind, entry.hash, entry.size, entry.count)

    await walk(load_blobs, compare(path, row(old), row(new)), visit)
    changes.sort(key=lambda c: path_order(c.path))
    return changes
