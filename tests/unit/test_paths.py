from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusk.errors import InvalidArgument
from tusk.paths import (
    flat_name,
    in_project,
    normalize_path,
    parse_address,
    parse_ref,
    qualified_name,
    split_path,
    split_project,
)

segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))
any_text = st.text(max_size=200)


@given(any_text)
def test_normalize_never_escapes_and_is_idempotent(path: str) -> None:
    try:
        normalized = normalize_path(path)
    except InvalidArgument:
        return
    assert normalized.startswith("/")
    assert ".." not in normalized.split("/")
    assert "//" not in normalized
    assert "\x00" not in normalized
    assert normalize_path(normalized) == normalized


@given(st.lists(st.sampled_from(["a", "..", ".", "", "b"]), min_size=1, max_size=8))
def test_dot_dot_is_always_refused(parts: list[str]) -> None:
    path = "/".join(parts)
    if ".." in parts:
        with pytest.raises(InvalidArgument, match=r"\.\."):
            normalize_path(path)
    else:
        assert ".." not in normalize_path(path)


@given(st.lists(segment, max_size=6))
def test_clean_segments_round_trip(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    if any(ord(c) < 0x20 or c == "\x7f" for c in path) or any(
        len(s.encode()) > 255 for s in segments
    ):
        with pytest.raises(InvalidArgument):
            normalize_path(path)
        return
    assert split_path(normalize_path(path)) == segments


@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "a\\b", "x" * 5000, "/" + "y" * 300])
def test_bad_paths(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_path(bad)


def test_root_is_refused_where_a_file_is_needed() -> None:
    with pytest.raises(InvalidArgument):
        normalize_path("//", allow_root=False)


@pytest.mark.parametrize(
    ("text", "base", "ancestry"),
    [
        ("master", "master", 0),
        ("master^", "master", 1),
        ("master^2", "master", 2),
        ("master~3", "master", 3),
        ("master^^", "master", 2),
        ("master^~2", "master", 3),
        ("0123456789abcdef0123456789abcdef^", "0123456789abcdef0123456789abcdef", 1),
    ],
)
def test_parse_ref(text: str, base: str, ancestry: int) -> None:
    ref = parse_ref(text)
    assert (ref.base, ref.ancestry) == (base, ancestry)


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)


@given(
    names,
    st.one_of(st.none(), names),
    st.integers(0, 5),
    st.one_of(st.none(), st.lists(segment, max_size=4)),
)
def test_address_round_trip(repo: str, ref: str | None, up: int, path: list[str] | None) -> None:
    text = repo
    if ref is not None:
        text += f"@{ref}" + ("^" * up)
    if path is not None:
        text += ":/" + "/".join(path)
    try:
        address = parse_address(text)
    except InvalidArgument:
        assert path is not None  # only a path with control characters is refused
        return
    assert address.repo == repo
    if ref is not None:
        assert address.ref is not None
        assert (address.ref.base, address.ref.ancestry) == (ref, up)
    assert parse_address(str(address)) == address


@pytest.mark.parametrize("bad", ["", "@master", "repo@", "re po", "repo@bad ref", "repo@m:/../x"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_address(bad)


@pytest.mark.parametrize(
    ("text", "project", "name", "normalized"),
    [
        ("raw", "default", "raw", "raw"),
        ("default/raw", "default", "raw", "raw"),
        ("vision/raw", "vision", "raw", "vision/raw"),
    ],
)
def test_split_project(text: str, project: str, name: str, normalized: str) -> None:
    qualified = split_project("repo", text)
    assert (qualified.project, qualified.name, str(qualified)) == (project, name, normalized)
    assert qualified_name("repo", text) == normalized


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("/raw", "nothing before '/'"),
        ("a/b/c", "with one '/'"),
        ("bad.p/raw", "invalid project name 'bad.p'"),
        ("p/bad.r", "invalid repo name 'bad.r'"),
        ("p/", "invalid repo name ''"),
        ("pp/" + "x" * 61, "at most 63 characters"),
    ],
)
def test_bad_qualified_names(bad: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace(".", r"\.")):
        split_project("repo", bad)


def test_an_input_takes_its_pipelines_project_unless_it_names_one() -> None:
    assert in_project("p", "repo", "images") == "p/images"
    assert in_project("default", "repo", "images") == "images"
    assert in_project("p", "repo", "q/images") == "q/images"
    assert in_project("p", "repo", "default/images") == "images"


def test_flat_names_of_a_project_and_of_a_repo_never_meet() -> None:
    # A pipeline 'p' and a pipeline 'p/x' of project p: the second is no path under the first.
    assert flat_name("p/x") == "p.x"
    assert "/" not in flat_name("p/x")
    assert flat_name("p") != flat_name("p/x")


def test_parse_address_takes_a_project() -> None:
    address = parse_address("vision/images@dev:/a/b.png")
    assert (address.repo, str(address.ref), address.path) == ("vision/images", "dev", "/a/b.png")
    assert parse_address("default/images").repo == "images"
