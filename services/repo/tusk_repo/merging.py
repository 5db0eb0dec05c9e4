"""Three-way merge of Merkle trees by content hash.

Only subtrees whose hashes differ on the two sides are descended into, so merging branches
that each changed a few thousand of a million files reads the directories on those paths and
no others. A path is taken from the side that changed it relative to the merge base; a path
both sides changed differently is a conflict, settled by a strategy or reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tusk_repo.trees import DIR, EMPTY_NODE, EMPTY_TREE, Entry, Loader, encode_node, node_hash

Strategy = Literal["ours", "theirs"] | None


@dataclass
class ThreeWay:
    root: str = EMPTY_TREE
    size: int = 0
    count: int = 0
    new_nodes: dict[str, bytes] = field(default_factory=dict)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    resolved: list[tuple[str, str]] = field(default_factory=list)
    changed: int = 0  # entries taken from the source side


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.kind == b.kind and a.hash == b.hash


def _reason(base: Entry | None, ours: Entry | None, theirs: Entry | None) -> str:
    if ours is None or theirs is None:
        return "deleted on one side, changed on the other"
    if base is None:
        return "added on both sides with different contents"
    if ours.kind != theirs.kind:
        return "a file on one side, a directory on the other"
    return "changed on both sides"


async def merge_trees(
    load: Loader, base: str, ours: str, theirs: str, strategy: Strategy = None
) -> ThreeWay:
    """Merge ``theirs`` into ``ours`` (root hashes) against their common ancestor ``base``."""
    result = ThreeWay()

    async def children(entry: Entry | None) -> dict[str, Entry]:
        if entry is None or entry.kind != DIR:
            return {}
        return {e.name: e for e in (await load(entry.hash)).entries}

    async def merge(path: str, b: Entry | None, o: Entry | None, t: Entry | None) -> Entry | None:
        if _same(o, t) or _same(b, t):
            return o
        if _same(b, o):
            result.changed += 1
            return t
        both_dirs = o is not None and t is not None and o.kind == DIR and t.kind == DIR
        if not both_dirs:
            reason = _reason(b, o, t)
            if strategy is None:
                result.conflicts.append((path or "/", reason))
                return o
            result.resolved.append((path or "/", reason))
            if strategy == "theirs":
                result.changed += 1
                return t
            return o
        assert o is not None
        bc, oc, tc = (
            await children(b if b is not None and b.kind == DIR else None),
            await children(o),
            await children(t),
        )
        merged: list[Entry] = []
        for name in sorted(oc.keys() | tc.keys() | bc.keys()):
            entry = await merge(f"{path}/{name}", bc.get(name), oc.get(name), tc.get(name))
            if entry is not None:
                merged.append(Entry(name, entry.kind, entry.hash, entry.size, entry.count))
        if not merged:
            return None
        blob = encode_node(tuple(merged))
        digest = node_hash(blob)
        result.new_nodes[digest] = blob
        return Entry(o.name, DIR, digest, sum(e.size for e in merged), sum(e.count for e in merged))

    def root(digest: str) -> Entry:
        return Entry("", DIR, digest, 0, 0)

    top = await merge("", root(base), root(ours), root(theirs))
    if top is None:
        result.new_nodes[EMPTY_TREE] = EMPTY_NODE
        return result
    result.root = top.hash
    return result
