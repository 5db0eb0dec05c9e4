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

from bisect import insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tusk_repo import rowspans
from tusk_repo.trees import EMPTY_NODE, EMPTY_TREE, node_hash
from tusk_repo.treewalk import (
    BlobLoader,
    Sides,
    decode_row,
    encode_row,
    join_rows,
    path_order,
    raw_rows,
    row_name,
    walk,
)

Strategy = Literal["ours", "theirs"] | None
Row = tuple[str, str, str, int, int]  # name, kind ("dir"/"file"), hash, size, count
_DIR = "dir"


@dataclass(frozen=True, slots=True)
class Splice:
    """How a merged node was made from ours (``ours``, its hash; ``blob``, its encoding): rows
    replaced in place, each as (offset in ``blob``, old kind, new kind, new hash). Saving it
    rewrites ours' packed references (``trees.replaced_refs``) instead of scanning it whole."""

    ours: str
    blob: bytes
    replaced: list[tuple[int, str, str, str]]


@dataclass
class ThreeWay:
    root: str = EMPTY_TREE
    new_nodes: dict[str, bytes] = field(default_factory=dict)
    spliced: dict[str, Splice] = field(default_factory=dict)  # new nodes made by splicing
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
    """A directory both sides changed. Its merged rows are ours (``blob``, encoded) with
    ``replaced`` (our row → the merged one, None: removed) and ``added`` applied; a
    subdirectory still being merged stands as its ``_Dir`` until it is finished (children
    finish before their parents). ``size`` and ``count`` start as ours and follow the
    changes."""

    name: str
    path: str
    size: int = 0
    count: int = 0
    ours: str | None = None  # ours' hash (None: no directory on our side)
    blob: bytes = EMPTY_NODE  # ours, encoded
    located: dict[bytes, int] | None = None  # offsets in ``blob`` of rows that may be replaced
    replaced: dict[bytes, Row | _Dir | None] = field(default_factory=dict)
    added: list[Row | _Dir] = field(default_factory=list)
    merged: Row | None = None  # once finished: its row in the parent (None: nothing left)
    finished: bool = False


def _finished(value: Row | _Dir | None) -> Row | None:
    return value.merged if isinstance(value, _Dir) else value


def _compared_by_spans(
    base: bytes, ours: bytes, theirs: bytes
) -> tuple[tuple[rowspans.Located, rowspans.Located], ...] | None:
    if not rowspans.comparable(base, ours, theirs):
        return None
    try:
        return rowspans.changed_rows(base, ours), rowspans.changed_rows(base, theirs)
    except rowspans.Ambiguous:
        return None


def _spliced(at: _Dir) -> tuple[bytes, Splice] | None:
    """Ours with each replaced row's merged row put in its place, when every change is such a
    replacement (nothing added or removed) of a row whose offset is known: the other rows are
    neither split out nor joined again. Updates ``size`` and ``count``; None when it cannot."""
    if at.located is None or at.added or at.ours is None:
        return None
    replacements: list[tuple[int, bytes, bytes]] = []
    replaced: list[tuple[int, str, str, str]] = []
    size, count = at.size, at.count
    for raw, value in at.replaced.items():
        new, offset = _finished(value), at.located.get(raw)
        if new is None or offset is None or not rowspans.holds_row_at(at.blob, raw, offset):
            return None
        old = decode_row(raw)
        size += new[3] - old[3]
        count += new[4] - old[4]
        replacements.append((offset, raw, encode_row(new)))
        replaced.append((offset, old[1], new[1], new[2]))
    at.size, at.count = size, count
    return rowspans.splice(at.blob, replacements), Splice(at.ours, at.blob, replaced)


# Told of each merged node as soon as it is made (hash, encoding, how it was spliced if it
# was), while the walk goes on: a caller may start writing it.
NodeSink = Callable[[str, bytes, Splice | None], None]


async def merge_trees(
    load_blobs: BlobLoader,
    base: str,
    ours: str,
    theirs: str,
    strategy: Strategy = None,
    made: NodeSink | None = None,
) -> ThreeWay:
    """Merge ``theirs`` into ``ours`` (root hashes) against their common ancestor ``base``.

    Each directory is compared as sets of encoded rows: only the rows a side changed are
    decoded, and the merged node is ours' rows with those changes, re-encoded row by row. A
    directory is encoded as soon as the directories in it are: one with no directory still
    being merged in it, as soon as it is visited (``made`` is told of it then)."""
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

    def finish(at: _Dir) -> None:
        at.finished = True
        spliced = _spliced(at)
        if spliced is not None:
            blob, splice = spliced
            digest = node_hash(blob)
            result.new_nodes[digest] = blob
            result.spliced[digest] = splice
            at.merged = (at.name, _DIR, digest, at.size, at.count)
            if made is not None:
                made(digest, blob, splice)
            return
        rows: list[bytes] = []
        for raw in raw_rows(at.blob):
            if raw not in at.replaced:
                rows.append(raw)
                continue
            old, new = decode_row(raw), _finished(at.replaced[raw])
            at.size -= old[3]
            at.count -= old[4]
            if new is not None:
                rows.append(encode_row(new))
                at.size += new[3]
                at.count += new[4]
        for value in at.added:
            new = _finished(value)
            if new is not None:
                insort(rows, encode_row(new), key=row_name)
                at.size += new[3]
                at.count += new[4]
        if rows:
            blob = join_rows(rows)
            digest = node_hash(blob)
            result.new_nodes[digest] = blob
            at.merged = (at.name, _DIR, digest, at.size, at.count)
            if made is not None:
                made(digest, blob, None)

    def decoded(raws: Iterable[bytes]) -> dict[str, tuple[Row, bytes]]:
        return {row[0]: (row, raw) for raw in raws for row in (decode_row(raw),)}

    def visit(at: _Dir, blobs: Sequence[bytes | None]) -> list[tuple[_Dir, Sides]]:
        b_blob, o_blob, t_blob = (EMPTY_NODE if blob is None else blob for blob in blobs)
        at.blob = o_blob
        spans = _compared_by_spans(b_blob, o_blob, t_blob)
        if spans is not None:
            (b_gone, o_rows), (t_gone, t_rows) = spans
            # Where our rows are: those we changed, and the base's rows they changed (found at
            # the base's offset unless our changes moved them; checked before use).
            at.located = {**t_gone, **o_rows}
            ours_new, ours_old = decoded(o_rows.keys()), decoded(b_gone.keys())
            theirs_new, theirs_old = decoded(t_rows.keys()), decoded(t_gone.keys())
        else:
            b_set, o_set, t_set = (set(raw_rows(blob)) for blob in (b_blob, o_blob, t_blob))
            ours_new, ours_old = decoded(o_set - b_set), decoded(b_set - o_set)
            theirs_new, theirs_old = decoded(t_set - b_set), decoded(b_set - t_set)
        following: list[tuple[_Dir, Sides]] = []
        for name in theirs_new.keys() | theirs_old.keys():
            b_pair, t_pair = theirs_old.get(name), theirs_new.get(name)
            bn, tn = (b_pair[0] if b_pair else None), (t_pair[0] if t_pair else None)
            ours_changed = name in ours_new or name in ours_old
            o_pair = ours_new.get(name) if ours_changed else b_pair
            on = o_pair[0] if o_pair else None
            chosen: Row | _Dir | None
            if not ours_changed:
                chosen = tn  # changed on their side only
                result.changed += 1
            elif (on is None and tn is None) or (
                on is not None and tn is not None and on[1:3] == tn[1:3]
            ):
                continue  # changed the same way on both sides: ours stands
            elif (on is None or on[1] == _DIR) and (tn is None or tn[1] == _DIR):
                # Directories (or a directory deleted on one side): decided file by file.
                chosen = _Dir(
                    name,
                    f"{at.path}/{name}",
                    on[3] if on else 0,
                    on[4] if on else 0,
                    None if on is None else on[2],
                )
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
                if chosen is on:
                    continue
            if o_pair is not None:
                at.replaced[o_pair[1]] = chosen
            elif chosen is not None:
                at.added.append(chosen)
        if not following:  # no directory in it still to merge: encoded now
            finish(at)
        return following

    top = _Dir("", "", ours=ours)
    merged.append(top)
    await walk(load_blobs, [(top, (base, ours, theirs))], visit)
    # Listed in path order, as a depth-first walk would have found them.
    result.conflicts.sort(key=lambda c: path_order(c[0]))
    result.resolved.sort(key=lambda c: path_order(c[0]))
    # Deepest first: a directory is encoded once all the directories in it are.
    for at in reversed(merged):
        if not at.finished:
            finish(at)
    if top.merged is None:
        result.new_nodes[EMPTY_TREE] = EMPTY_NODE
        return result
    result.root = top.merged[2]
    return result
