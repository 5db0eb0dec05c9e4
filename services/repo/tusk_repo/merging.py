"""Three-way merge of Merkle trees by content hash.

Only subtrees whose hashes differ on the two sides are descended into, so merging branches
that each changed a few thousand of a million files reads the directories on those paths and
no others, a level of the trees at a time (``treewalk``). A path is taken from the side that
changed it relative to the merge base; a path both sides changed differently is a conflict,
settled by a strategy or reported.

Entries are handled as the nodes' plain tuples. In a directory only the names their side
changed are decided (found by comparing each side's rows with the base's as sets); the rest
are ours as they are, in the order they already have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tusk_repo.trees import EMPTY_NODE, EMPTY_TREE, ManyLoader, Node, encode_rows, node_hash
from tusk_repo.treewalk import Sides, by_name, changed_names, walk

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


@dataclass(slots=True, eq=False)
class _Dir:
    """A directory both sides changed: its merged entries, where a subdirectory still being
    merged holds its ``_Dir`` until that is finished (children finish before their parents)."""

    name: str
    path: str
    parent: _Dir | None
    entries: dict[str, Row | _Dir] = field(default_factory=dict)
    reordered: bool = False  # names were added, so the entries are no longer in name order


async def merge_trees(
    load_many: ManyLoader, base: str, ours: str, theirs: str, strategy: Strategy = None
) -> ThreeWay:
    """Merge ``theirs`` into ``ours`` (root hashes) against their common ancestor ``base``."""
    result = ThreeWay()
    if ours == theirs or base == theirs:
        result.root = ours
        return result
    if base == ours:
        result.root = theirs
        result.changed += 1
        return result

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

    merged: list[_Dir] = []

    def visit(at: _Dir, nodes: Sequence[Node | None]) -> list[tuple[_Dir, Sides]]:
        b, o, t = nodes
        bc, tc = by_name(b), by_name(t)
        at.entries = dict(by_name(o))  # ours, then what theirs changed
        ours_changed = changed_names(b, o)
        following: list[tuple[_Dir, Sides]] = []
        for name in changed_names(b, t):
            bn, on, tn = bc.get(name), at.entries.get(name), tc.get(name)
            assert not isinstance(on, _Dir)
            chosen: Row | _Dir | None
            if name not in ours_changed:
                chosen = tn  # changed on their side only
                result.changed += 1
            elif (on is None and tn is None) or (
                on is not None and tn is not None and on[1:3] == tn[1:3]
            ):
                chosen = on  # changed the same way on both sides
            elif (on is None or on[1] == _DIR) and (tn is None or tn[1] == _DIR):
                # Directories (or a directory deleted on one side): decided file by file.
                chosen = _Dir(name, f"{at.path}/{name}", at)
                merged.append(chosen)
                following.append(
                    (
                        chosen,
                        (
                            bn[2] if bn is not None and bn[1] == _DIR else None,
                            None if on is None else on[2],
                            None if tn is None else tn[2],
                        ),
                    )
                )
            else:
                chosen = settle(f"{at.path}/{name}", bn, on, tn)
            if chosen is None:
                at.entries.pop(name, None)
            else:
                if name not in at.entries:
                    at.reordered = True
                at.entries[name] = chosen
        return following

    top = _Dir("", "", None)
    merged.append(top)
    await walk(load_many, [(top, (base, ours, theirs))], visit)
    # Deepest first: a directory is encoded once all the directories in it are.
    root: Row | None = None
    for at in reversed(merged):
        rows = (
            at.entries.values() if not at.reordered else dict(sorted(at.entries.items())).values()
        )
        finished = [r for r in rows if not isinstance(r, _Dir)]
        assert len(finished) == len(at.entries), "a subdirectory was left unmerged"
        row: Row | None = None
        if finished:
            blob = encode_rows(finished)
            digest = node_hash(blob)
            result.new_nodes[digest] = blob
            row = (
                at.name,
                _DIR,
                digest,
                sum(r[3] for r in finished),
                sum(r[4] for r in finished),
            )
        if at.parent is None:
            root = row
        elif row is None:
            del at.parent.entries[at.name]
        else:
            at.parent.entries[at.name] = row
    if root is None:
        result.new_nodes[EMPTY_TREE] = EMPTY_NODE
        return result
    result.root = root[2]
    return result
