"""Three-way merge of Merkle trees by content hash.

Only subtrees whose hashes differ on the two sides are descended into, so merging branches
that each changed a few thousand of a million files reads the directories on those paths and
no others. A path is taken from the side that changed it relative to the merge base; a path
both sides changed differently is a conflict, settled by a strategy or reported.

Entries are handled as the nodes' plain tuples, and a directory's names are decided in one
loop, recursing only where both sides changed a directory: a directory of ten thousand
entries costs a few dictionary operations per entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from tusk_repo.trees import EMPTY_NODE, EMPTY_TREE, Loader, node_hash

Strategy = Literal["ours", "theirs"] | None
Row = tuple[str, str, str, int, int]  # name, kind ("dir"/"file"), hash, size, count
_DIR = "dir"


@dataclass
class ThreeWay:
    root: str = EMPTY_TREE
    new_nodes: dict[str, bytes] = field(default_factory=dict)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    resolved: list[tuple[str, str]] = field(default_factory=list)
    changed: int = 0  # entries taken from the source side


def _reason(base: Row | None, ours: Row | None, theirs: Row | None) -> str:
    if ours is None or theirs is None:
        return "deleted on one side, changed on the other"
    if base is None:
        return "added on both sides with different contents"
    if ours[1] != theirs[1]:
        return "a file on one side, a directory on the other"
    return "changed on both sides"


def _encode(rows: list[Row]) -> bytes:
    """The same encoding as ``trees.encode_node``, from tuples."""
    return json.dumps(
        [[n, "d" if k == _DIR else "f", h, s, c] for n, k, h, s, c in rows],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


async def merge_trees(
    load: Loader, base: str, ours: str, theirs: str, strategy: Strategy = None
) -> ThreeWay:
    """Merge ``theirs`` into ``ours`` (root hashes) against their common ancestor ``base``."""
    result = ThreeWay()

    async def rows_of(row: Row | None) -> dict[str, Row]:
        if row is None or row[1] != _DIR:
            return {}
        return {r[0]: r for r in (await load(row[2])).rows}

    async def merge_dir(
        name: str, path: str, b: Row | None, o: Row | None, t: Row | None
    ) -> Row | None:
        """Merge directories (a missing side: deleted, or never there)."""
        bc, oc, tc = await rows_of(b), await rows_of(o), await rows_of(t)
        merged: list[Row] = []
        for name in sorted(oc.keys() | tc.keys() | bc.keys()):
            bn, on, tn = bc.get(name), oc.get(name), tc.get(name)
            # The common cases decided inline: same on both sides, or changed on one only.
            if (
                on == tn
                or (bn is not None and tn is not None and bn[1:3] == tn[1:3])
                or (bn is None and tn is None)
            ):
                chosen = on
            elif (bn is not None and on is not None and bn[1:3] == on[1:3]) or (
                bn is None and on is None
            ):
                chosen = tn
                result.changed += 1
            elif on is not None and tn is not None and on[1:3] == tn[1:3]:
                chosen = on
            elif (on is None or on[1] == _DIR) and (tn is None or tn[1] == _DIR):
                # Directories (or a directory deleted on one side): decided file by file.
                chosen = await merge_dir(
                    name, f"{path}/{name}", bn if bn is not None and bn[1] == _DIR else None, on, tn
                )
            else:
                chosen = settle(f"{path}/{name}", bn, on, tn)
            if chosen is not None:
                merged.append((name, chosen[1], chosen[2], chosen[3], chosen[4]))
        if not merged:
            return None
        blob = _encode(merged)
        digest = node_hash(blob)
        result.new_nodes[digest] = blob
        return (name, _DIR, digest, sum(r[3] for r in merged), sum(r[4] for r in merged))

    def settle(path: str, b: Row | None, o: Row | None, t: Row | None) -> Row | None:
        reason = _reason(b, o, t)
        if strategy is None:
            result.conflicts.append((path, reason))
            return o
        result.resolved.append((path, reason))
        if strategy == "theirs":
            result.changed += 1
            return t
        return o

    def root(digest: str) -> Row:
        return ("", _DIR, digest, 0, 0)

    if ours == theirs or base == theirs:
        result.root = ours
        return result
    if base == ours:
        result.root = theirs
        result.changed += 1
        return result
    top = await merge_dir("", "", root(base), root(ours), root(theirs))
    if top is None:
        result.new_nodes[EMPTY_TREE] = EMPTY_NODE
        return result
    result.root = top[2]
    return result
