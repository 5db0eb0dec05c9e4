"""Comparing two encodings of a directory where they differ, without splitting them into rows.

Two versions of a large directory usually have the same length: a changed file keeps its name
and its hash's length, and most often the digits of its size. Their encodings then differ only
at a few byte positions, found at memory speed (numpy); only the rows around those positions
are cut out and compared. A directory of ten thousand entries with a hundred changed costs a
few hundred rows of Python work instead of thirty thousand.

Rows are the pieces between ``],["`` separators (``treewalk.raw_rows``); where a name ends in
``],[`` the separator found there is not a row's end, which shows as a piece starting with
``,"f","`` or ``,"d","``: such encodings are left to the general comparison.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from tusk_repo.trees import EMPTY_NODE

SEP = b'],["'
_HEAD = 3  # the '[["' before the first row
_TAIL = 2  # the ']]' after the last one
_WORD = 8
_NOT_A_ROW = (b',"f","', b',"d","')  # what follows a separator inside a name, never a row

# Rows by their encoding, each with its offset in the encoding it comes from.
Located = dict[bytes, int]


def comparable(*blobs: bytes) -> bool:
    """Whether these encodings can be compared span by span: of equal length and not empty."""
    first = blobs[0]
    return first != EMPTY_NODE and all(len(b) == len(first) for b in blobs)


class Ambiguous(Exception):
    """A separator found inside a name: the encoding needs the general comparison."""


def _row_start(blob: bytes, at: int) -> int:
    sep = blob.rfind(SEP, 0, at)
    return _HEAD if sep < 0 else sep + len(SEP)


def _row_end(blob: bytes, at: int) -> int:
    sep = blob.find(SEP, at)
    return len(blob) - _TAIL if sep < 0 else sep


def _split(blob: bytes, start: int, end: int, into: Located) -> None:
    if blob.startswith(_NOT_A_ROW, end + len(SEP)):
        raise Ambiguous
    offset = start
    for row in blob[start:end].split(SEP):
        if row.startswith(_NOT_A_ROW):
            raise Ambiguous
        into[row] = offset
        offset += len(row) + len(SEP)


def changed_rows(old: bytes, new: bytes) -> tuple[Located, Located]:
    """The rows of ``old`` not in ``new`` and those of ``new`` not in ``old`` (as the set
    differences of their rows), each with its offset; ``comparable(old, new)`` must hold.
    Raises ``Ambiguous`` where a name hides a separator.

    Every differing byte is widened to whole rows on both sides (a span that starts and ends at
    a row boundary in both); outside such spans both hold the same rows at the same offsets."""
    # Compared a word of 8 bytes at a time: a changed hash is one span, not sixty positions.
    words = len(old) // _WORD
    diff: list[int] = (
        np.flatnonzero(np.frombuffer(old, np.uint64, words) != np.frombuffer(new, np.uint64, words))
        * _WORD
    ).tolist()
    if old[words * _WORD :] != new[words * _WORD :]:
        diff.append(words * _WORD)
    olds: Located = {}
    news: Located = {}
    i, count = 0, len(diff)
    while i < count:
        # Widened from the whole word (within the rows: the first and last bytes never differ).
        start = max(diff[i], _HEAD)
        end = min(diff[i] + _WORD, len(old) - _TAIL)
        while True:
            wider = (
                min(_row_start(old, start), _row_start(new, start)),
                max(_row_end(old, end), _row_end(new, end)),
            )
            if wider == (start, end):
                break
            start, end = wider
        _split(old, start, end, olds)
        _split(new, start, end, news)
        # Words reaching past this span are looked at again (their rows can be split twice:
        # the same rows at the same offsets).
        i = bisect_left(diff, end - _WORD + 1, i + 1)
    removed = {row: at for row, at in olds.items() if row not in news}
    added = {row: at for row, at in news.items() if row not in olds}
    return removed, added


def holds_row_at(blob: bytes, row: bytes, at: int) -> bool:
    """Whether ``row`` is a whole row of ``blob`` at offset ``at``."""
    end = at + len(row)
    return (
        blob[at:end] == row
        and (at == _HEAD or blob[at - len(SEP) : at] == SEP)
        and (end == len(blob) - _TAIL or blob[end : end + len(SEP)] == SEP)
    )


def splice(blob: bytes, replacements: list[tuple[int, bytes, bytes]]) -> bytes:
    """``blob`` with rows replaced: (offset, the row there, its replacement), by offset."""
    pieces: list[bytes] = []
    done = 0
    for at, row, replacement in sorted(replacements):
        pieces.append(blob[done:at])
        pieces.append(replacement)
        done = at + len(row)
    pieces.append(blob[done:])
    return b"".join(pieces)
