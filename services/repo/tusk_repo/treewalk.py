"""Walking several trees side by side, one level at a time: the comparison that diffs and
three-way merges are made of.

Directories are visited breadth first, and all the nodes a level needs are read in one call to
a ``ManyLoader`` (one SQL query per level, however many directories changed), where a
depth-first walk would read them one by one. Only directories whose hashes differ between the
sides are visited at all: equal hashes are equal subtrees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from tusk.paths import split_path
from tusk_repo.trees import DIR, FILE, Entry, ManyLoader, Node, lookup, single

Row = tuple[str, str, str, int, int]  # name, kind, hash, size, count: a node's entry
Sides = tuple[str | None, ...]  # each side's directory hash at a path (None: no directory there)
K = TypeVar("K")


async def walk(
    load_many: ManyLoader,
    start: Iterable[tuple[K, Sides]],
    visit: Callable[[K, Sequence[Node | None]], Iterable[tuple[K, Sides]]],
) -> None:
    """Call ``visit(key, nodes)`` for every directory reached from ``start``, a level at a time;
    ``visit`` answers the child directories to visit next, with keys of its choosing."""
    frames = list(start)
    while frames:
        nodes = await load_many({h for _, sides in frames for h in sides if h is not None})
        following: list[tuple[K, Sides]] = []
        for key, sides in frames:
            following.extend(visit(key, [None if h is None else nodes[h] for h in sides]))
        frames = following


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
    load_many: ManyLoader, old_root: str, new_root: str, path: str = "/"
) -> list[Change]:
    """File-level changes from ``old_root`` to ``new_root`` under ``path``, in path order."""
    load = single(load_many)
    old, new = await lookup(load, old_root, path), await lookup(load, new_root, path)
    changes: list[Change] = []
    start: list[tuple[str, Sides]] = []

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

    def visit(where: str, nodes: Sequence[Node | None]) -> Iterable[tuple[str, Sides]]:
        old_node, new_node = nodes
        prefix = where.rstrip("/")
        olds, news = by_name(old_node), by_name(new_node)
        following: list[tuple[str, Sides]] = []
        for name in changed_names(old_node, new_node):
            following.extend(compare(f"{prefix}/{name}", olds.get(name), news.get(name)))
        return following

    def row(entry: Entry | None) -> Row | None:
        return (
            None if entry is None else (entry.name, entry.kind, entry.hash, entry.size, entry.count)
        )

    start.extend(compare(path, row(old), row(new)))
    await walk(load_many, start, visit)
    changes.sort(key=lambda c: path_order(c.path))
    return changes
