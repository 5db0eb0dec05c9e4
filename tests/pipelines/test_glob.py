"""Globs with capture groups: the regex must agree with the repo service's own glob."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pipelines.helpers import TreeLister
from tusk.pipelines.glob import GlobError, expand_key, key_references, parse_glob
from tusk_repo import trees


@pytest.mark.parametrize(
    ("pattern", "listing", "path", "groups"),
    [
        ("/", "/", "/", ()),
        ("/*", "/*", "/a", ()),
        ("*", "/*", "/a", ()),
        ("/(*).csv", "/*.csv", "/jan.csv", ("jan",)),
        ("/(*)/(*).csv", "/*/*.csv", "/2024/jan.csv", ("2024", "jan")),
        ("/(*/*).csv", "/*/*.csv", "/2024/jan.csv", ("2024/jan",)),
        ("/((*)-(*))", "/*-*", "/a-b", ("a-b", "a", "b")),
        ("/**/(*).json", "/**/*.json", "/x/y/z.json", ("z",)),
        ("/**/(*).json", "/**/*.json", "/z.json", ("z",)),
        ("/(?)*", "/?*", "/abc", ("a",)),
        ("/([ab])*", "/[ab]*", "/bcd", ("b",)),
        ("/[(]x[)]", "/[(]x[)]", "/(x)", ()),
        ("/[!a](*)", "/[!a]*", "/bcd", ("cd",)),
        ("/a[b", "/a[b", "/a[b", ()),
        ("//a//(*)/", "/a/*", "/a/b", ("b",)),
        ("/a**", "/a**", "/abc", ()),
    ],
)
def test_groups(pattern: str, listing: str, path: str, groups: tuple[str, ...]) -> None:
    glob = parse_glob(pattern)
    assert glob.listing == listing
    assert glob.groups(path) == groups
    assert glob.group_count == len(groups)


def test_segments_do_not_cross() -> None:
    assert parse_glob("/(*)").groups("/a/b") is None
    assert parse_glob("/?").groups("/ab") is None
    assert parse_glob("/**").groups("/a/b/c") == ()
    assert parse_glob("/**").groups("/") == ()


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "empty"),
        ("/a/../b", "'..'"),
        ("/./b", "'.'"),
        ("/a\nb", "control character"),
        ("/(*", "never closed"),
        ("/*)", "has no '('"),
        ("/(**)", "'**'"),
        ("/(a/**/b)", "'**'"),
        ("/()/x", "empty without its parentheses"),
    ],
)
def test_invalid_globs(pattern: str, fragment: str) -> None:
    with pytest.raises(GlobError, match=fragment.replace("(", r"\(").replace("*", r"\*")):
        parse_glob(pattern)


def test_key_templates() -> None:
    assert key_references("$1-${2}x$$3") == [1, 2]
    assert expand_key("$1-${2}x$$", ("a", "b")) == "a-bx$"
    assert expand_key("$10", tuple("abcdefghij")) == "j"
    assert expand_key("static", ("a",)) == "static"


# --- agreement with the repo service's glob, on random trees --------------------------------

NAMES = ["a", "b", "ab", "a.csv", "b.txt"]
SEGMENTS = ["a", "b", "*", "?", "**", "a*", "*.csv", "[ab]", "[!a]*", "*b", "a?"]


def as_tree(files: dict[str, bytes]) -> dict[str, bytes]:
    """Drop each file that another file needs as a directory."""
    return {p: v for p, v in files.items() if not any(q.startswith(p + "/") for q in files)}


files = st.dictionaries(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)),
    st.binary(max_size=3),
    max_size=8,
).map(as_tree)
# Each segment may be captured whole, which must not change what matches.
segment = st.tuples(st.sampled_from(SEGMENTS), st.booleans())
patterns = st.lists(segment, max_size=4)


def build(segments: list[tuple[str, bool]]) -> str:
    parts = [f"({s})" if captured and s != "**" else s for s, captured in segments]
    return "/" + "/".join(parts)


@settings(max_examples=400, deadline=None)
@given(files, patterns)
def test_regex_agrees_with_the_repo_glob(
    tree: dict[str, bytes], segments: list[tuple[str, bool]]
) -> None:
    pattern = build(segments)
    glob = parse_glob(pattern)

    async def run() -> tuple[set[str], dict[str, str]]:
        lister = TreeLister()
        commit = await lister.commit("r", tree)
        listed = {m.path for m in await lister.glob("r", commit, glob.listing)}
        return listed, await lister.all_paths("r", commit)

    listed, everything = asyncio.run(run())
    for path, kind in everything.items():
        captured = glob.groups(path)
        if path in listed:
            assert captured is not None, (pattern, path)
            assert len(captured) == glob.group_count
        elif captured is not None:
            # The one difference: a trailing '**' also matches the file it would descend from,
            # where the repo service only descends into directories.
            assert kind == trees.FILE, (pattern, path)
            assert pattern.endswith("/**"), (pattern, path)
