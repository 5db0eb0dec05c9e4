"""Comparing encoded directories span by span against comparing them as sets of rows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tusk_repo import rowspans, trees
from tusk_repo.treewalk import raw_rows

# Names that sort among each other, one ending in the separator's first half; contents whose
# rows keep their length (sizes 5 and 7) or not (12).
NAMES = ["a", "b", "c],[", "c", "d", ",", 'e"', "f"]
row = st.tuples(
    st.sampled_from([f"{i:x}" * 64 for i in range(3)]),
    st.sampled_from([5, 7, 12]),
    st.sampled_from([trees.FILE, trees.DIR]),
)
directory = st.dictionaries(st.sampled_from(NAMES), row, min_size=1)


def encoded(entries: dict[str, tuple[str, int, str]]) -> bytes:
    return trees.encode_rows(
        (name, kind, digest, size, 1 if kind == trees.FILE else 3)
        for name, (digest, size, kind) in sorted(entries.items())
    )


@settings(max_examples=500, deadline=None)
@given(directory, directory)
def test_changed_rows_are_the_set_differences_of_rows(
    one: dict[str, tuple[str, int, str]], other: dict[str, tuple[str, int, str]]
) -> None:
    old, new = encoded(one), encoded(other)
    if not rowspans.comparable(old, new):
        return
    olds, news = set(raw_rows(old)), set(raw_rows(new))
    try:
        removed, added = rowspans.changed_rows(old, new)
    except rowspans.Ambiguous:
        assert b'],[","' in old + new
        return
    assert set(removed) == olds - news
    assert set(added) == news - olds
    for raw, at in removed.items():
        assert rowspans.holds_row_at(old, raw, at)
    for raw, at in added.items():
        assert rowspans.holds_row_at(new, raw, at)


def test_a_separator_inside_a_name_is_left_to_the_general_comparison() -> None:
    digest = "0" * 64
    old = encoded({"c],[": (digest, 5, trees.FILE), "d": (digest, 5, trees.FILE)})
    new = encoded({"c],[": ("1" * 64, 5, trees.FILE), "d": (digest, 5, trees.FILE)})
    with pytest.raises(rowspans.Ambiguous):
        rowspans.changed_rows(old, new)


def test_splice_replaces_rows_in_place() -> None:
    entries = dict.fromkeys("abc", ("0" * 64, 5, trees.FILE))
    changed = {**entries, "b": ("1" * 64, 5, trees.FILE)}
    blob = encoded(entries)
    removed, added = rowspans.changed_rows(blob, encoded(changed))
    [(raw, at)] = removed.items()
    [replacement] = added
    assert rowspans.splice(blob, [(at, raw, replacement)]) == encoded(changed)


@pytest.mark.parametrize("pad", range(16))
def test_changes_at_every_alignment_are_found(pad: int) -> None:
    """Encodings are compared eight bytes at a time: a change in the last bytes (the tail after
    the last whole word) or one that starts in the same word where the previous changed row
    ends is found wherever the word boundaries fall."""
    name = "a" * pad + "x"

    def node(*rows: tuple[str, str, int]) -> bytes:
        return trees.encode_rows((n, trees.DIR, h, 5, count) for n, h, count in rows)

    zeros, ones = "0" * 64, "1" * 64
    pairs = [
        # The first row's hash and count change, the next row's name too.
        (node((name, zeros, 1), ("m", zeros, 1)), node((name, ones, 2), ("n", zeros, 1))),
        # Only the last row's count changes.
        (node((name, zeros, 1), ("m", zeros, 1)), node((name, zeros, 1), ("m", zeros, 2))),
    ]
    for old, new in pairs:
        assert rowspans.comparable(old, new)
        removed, added = rowspans.changed_rows(old, new)
        olds, news = set(raw_rows(old)), set(raw_rows(new))
        assert (set(removed), set(added)) == (olds - news, news - olds)
