"""Datum computation on an in-memory repo service: glob, cross, union, join, group; ids that
stay the same for unchanged content; incremental plans, shards and output collisions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.pipelines.helpers import ReversedLister, TreeLister, base_spec
from tusk.errors import InvalidArgument, NotFound
from tusk.pipelines import (
    Datum,
    DatumInput,
    Input,
    compute_datums,
    datum_id,
    find_output_collisions,
    load_spec,
    plan_datums,
    removed_datums,
    split_into_shards,
)

FILES = {
    "/a/x.csv": "1",
    "/a/y.txt": "2",
    "/b/c/z.csv": "3",
    "/top.csv": "4",
}


def node(data: dict[str, Any]) -> Input:
    return Input.model_validate(data)


def paths(datums: list[Datum]) -> list[list[tuple[str, str]]]:
    return [[(i.name, i.path) for i in d.inputs] for d in datums]


@pytest.fixture
def lister() -> TreeLister:
    return TreeLister()


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("/", ["/"]),
        ("/*", ["/a", "/b", "/top.csv"]),
        ("/*/*", ["/a/x.csv", "/a/y.txt", "/b/c"]),
        ("/**/*.csv", ["/a/x.csv", "/b/c/z.csv", "/top.csv"]),
        ("/nothing/*", []),
    ],
)
async def test_pfs_glob(lister: TreeLister, glob: str, expected: list[str]) -> None:
    commit = await lister.commit("data", FILES)
    datums = await compute_datums(
        node({"pfs": {"repo": "data", "glob": glob}}), {"data": commit}, lister
    )
    assert [d.inputs[0].path for d in datums] == expected
    assert all(len(d.inputs) == 1 for d in datums)


async def test_datum_inputs_describe_the_match(lister: TreeLister) -> None:
    commit = await lister.commit("data", FILES)
    pfs = {"pfs": {"name": "in", "repo": "data", "branch": "dev", "glob": "/*"}}
    datums = await compute_datums(node(pfs), {"in": commit}, lister)
    a, _, top = (d.inputs[0] for d in datums)
    assert (a.name, a.repo, a.branch, a.commit, a.type, a.size) == (
        "in",
        "data",
        "dev",
        commit,
        "dir",
        2,
    )
    assert (top.type, top.size) == ("file", 1)
    assert a.hash != top.hash
    whole = await compute_datums(node({"pfs": {"repo": "data"}}), {"data": commit}, lister)
    (root,) = whole[0].inputs
    assert (root.path, root.type, root.size) == ("/", "dir", 4)
    assert root.hash == lister.roots[("data", commit)]  # the Merkle hash of the whole commit


async def test_cross_is_the_product(lister: TreeLister) -> None:
    one = await lister.commit("one", {"/1": "a", "/2": "b"})
    two = await lister.commit("two", {"/x": "c", "/y": "d", "/z": "e"})
    cross = node(
        {"cross": [{"pfs": {"repo": "two", "glob": "/*"}}, {"pfs": {"repo": "one", "glob": "/*"}}]}
    )
    datums = await compute_datums(cross, {"one": one, "two": two}, lister)
    assert paths(datums) == [
        [("one", "/1"), ("two", "/x")],
        [("one", "/2"), ("two", "/x")],
        [("one", "/1"), ("two", "/y")],
        [("one", "/2"), ("two", "/y")],
        [("one", "/1"), ("two", "/z")],
        [("one", "/2"), ("two", "/z")],
    ]
    assert len({d.id for d in datums}) == 6


async def test_union_concatenates_and_keeps_a_datum_once(lister: TreeLister) -> None:
    commit = await lister.commit("data", {"/ab": "1", "/ac": "2", "/bc": "3"})
    other = await lister.commit("other", {"/q": "4"})
    union = node(
        {
            "union": [
                {"pfs": {"name": "in", "repo": "data", "glob": "/a*"}},
                {"pfs": {"repo": "other", "glob": "/*"}},
                {"pfs": {"name": "in", "repo": "data", "glob": "/*c"}},
            ]
        }
    )
    datums = await compute_datums(union, {"in": commit, "other": other}, lister)
    assert paths(datums) == [[("in", "/ab")], [("in", "/ac")], [("other", "/q")], [("in", "/bc")]]
    # both branches read /ac from the same name: one datum, listed once
    assert len(lister.calls) == 3


async def test_inner_join(lister: TreeLister) -> None:
    orders = await lister.commit("orders", {"/jan.csv": "1", "/feb.csv": "2", "/mar.csv": "3"})
    rates = await lister.commit("rates", {"/feb.txt": "4", "/mar.txt": "5", "/apr.txt": "6"})
    join = node(
        {
            "join": [
                {"pfs": {"repo": "orders", "glob": "/(*).csv", "join_on": "$1"}},
                {"pfs": {"repo": "rates", "glob": "/(*).txt", "join_on": "$1"}},
            ]
        }
    )
    datums = await compute_datums(join, {"orders": orders, "rates": rates}, lister)
    assert paths(datums) == [
        [("orders", "/feb.csv"), ("rates", "/feb.txt")],
        [("orders", "/mar.csv"), ("rates", "/mar.txt")],
    ]
    assert lister.calls[0][2] in ("/*.csv", "/*.txt")  # the service never sees parentheses


async def test_join_key_matches_several_files(lister: TreeLister) -> None:
    left = await lister.commit("left", {"/k1/a": "1", "/k1/b": "2", "/k2/c": "3"})
    right = await lister.commit("right", {"/x-k1": "4", "/y-k1": "5", "/z-k2": "6"})
    join = node(
        {
            "join": [
                {"pfs": {"repo": "left", "glob": "/(*)/(*)", "join_on": "$1"}},
                {"pfs": {"repo": "right", "glob": "/(*)-(*)", "join_on": "$2"}},
            ]
        }
    )
    datums = await compute_datums(join, {"left": left, "right": right}, lister)
    assert paths(datums) == [
        [("left", "/k1/a"), ("right", "/x-k1")],
        [("left", "/k1/a"), ("right", "/y-k1")],
        [("left", "/k1/b"), ("right", "/x-k1")],
        [("left", "/k1/b"), ("right", "/y-k1")],
        [("left", "/k2/c"), ("right", "/z-k2")],
    ]


@pytest.mark.parametrize(
    ("outer", "expected"),
    [
        ((False, False), [["/b.txt", "/b.csv"]]),
        ((True, False), [["/a.csv"], ["/b.txt", "/b.csv"]]),
        ((False, True), [["/b.txt", "/b.csv"], ["/c.txt"]]),
        ((True, True), [["/a.csv"], ["/b.txt", "/b.csv"], ["/c.txt"]]),
    ],
)
async def test_outer_join(
    lister: TreeLister, outer: tuple[bool, bool], expected: list[list[str]]
) -> None:
    stores = await lister.commit("stores", {"/a.csv": "1", "/b.csv": "2"})
    returns = await lister.commit("returns", {"/b.txt": "3", "/c.txt": "4"})
    join = node(
        {
            "join": [
                {
                    "pfs": {
                        "repo": "stores",
                        "glob": "/(*).csv",
                        "join_on": "$1",
                        "outer_join": outer[0],
                    }
                },
                {
                    "pfs": {
                        "repo": "returns",
                        "glob": "/(*).txt",
                        "join_on": "$1",
                        "outer_join": outer[1],
                    }
                },
            ]
        }
    )
    datums = await compute_datums(join, {"stores": stores, "returns": returns}, lister)
    assert [[i.path for i in d.inputs] for d in datums] == expected


async def test_outer_join_of_three(lister: TreeLister) -> None:
    a = await lister.commit("a", {"/k1": "1", "/k2": "2"})
    b = await lister.commit("b", {"/k1": "3", "/k3": "4"})
    c = await lister.commit("c", {"/k1": "5", "/k2": "6"})
    join = node(
        {
            "join": [
                {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}},
                {"pfs": {"repo": "b", "glob": "/(*)", "join_on": "$1", "outer_join": True}},
                {"pfs": {"repo": "c", "glob": "/(*)", "join_on": "$1"}},
            ]
        }
    )
    datums = await compute_datums(join, {"a": a, "b": b, "c": c}, lister)
    # k1 everywhere; k2 only in the inner inputs: dropped; k3 only in the outer one: kept
    assert paths(datums) == [[("a", "/k1"), ("b", "/k1"), ("c", "/k1")], [("b", "/k3")]]


async def test_group(lister: TreeLister) -> None:
    sales = await lister.commit(
        "sales", {"/2024-01/s1.csv": "1", "/2024-01/s2.csv": "2", "/2024-02/s3.csv": "3"}
    )
    costs = await lister.commit("costs", {"/2024-01.csv": "4", "/2024-03.csv": "5"})
    group = node(
        {
            "group": [
                {"pfs": {"repo": "sales", "glob": "/(*)-(*)/*", "group_by": "$1-$2"}},
                {"pfs": {"repo": "costs", "glob": "/(*).csv", "group_by": "$1"}},
            ]
        }
    )
    datums = await compute_datums(group, {"sales": sales, "costs": costs}, lister)
    assert paths(datums) == [
        [("costs", "/2024-01.csv"), ("sales", "/2024-01/s1.csv"), ("sales", "/2024-01/s2.csv")],
        [("sales", "/2024-02/s3.csv")],
        [("costs", "/2024-03.csv")],
    ]


async def test_nested_inputs(lister: TreeLister) -> None:
    a = await lister.commit("a", {"/k1.csv": "1", "/k2.csv": "2"})
    b = await lister.commit("b", {"/k1.csv": "3"})
    model = await lister.commit("model", {"/m": "4"})
    spec = node(
        {
            "cross": [
                {
                    "join": [
                        {"pfs": {"repo": "a", "glob": "/(*).csv", "join_on": "$1"}},
                        {"pfs": {"repo": "b", "glob": "/(*).csv", "join_on": "$1"}},
                    ]
                },
                {"union": [{"pfs": {"repo": "model", "glob": "/*"}}, {"pfs": {"repo": "model2"}}]},
            ]
        }
    )
    datums = await compute_datums(spec, {"a": a, "b": b, "model": model}, lister)
    assert paths(datums) == [[("a", "/k1.csv"), ("b", "/k1.csv"), ("model", "/m")]]


# --- ids and incremental processing ----------------------------------------------------------


async def test_unchanged_content_keeps_its_id_across_commits(lister: TreeLister) -> None:
    pfs = node({"pfs": {"repo": "data", "glob": "/*"}})
    first = await compute_datums(
        pfs, {"data": await lister.commit("data", {"/a": "1", "/b": "2", "/d/x": "3"})}, lister
    )
    second = await compute_datums(
        pfs,
        {
            "data": await lister.commit(
                "data", {"/a": "1", "/b": "changed", "/c": "new", "/d/x": "3"}
            )
        },
        lister,
    )
    old = {d.inputs[0].path: d.id for d in first}
    new = {d.inputs[0].path: d.id for d in second}
    assert new["/a"] == old["/a"]
    assert new["/d"] == old["/d"]  # a directory whose content did not change
    assert new["/b"] != old["/b"]
    plan = plan_datums(second, {d.id for d in first})
    assert [d.inputs[0].path for d in plan.new] == ["/b", "/c"]
    assert [d.inputs[0].path for d in plan.skipped] == ["/a", "/d"]
    assert removed_datums(old.values(), second) == [old["/b"]]


async def test_whole_commit_datum_changes_with_any_file(lister: TreeLister) -> None:
    pfs = node({"pfs": {"repo": "data"}})

    async def only_id(files: dict[str, str]) -> str:
        (datum,) = await compute_datums(pfs, {"data": await lister.commit("data", files)}, lister)
        return datum.id

    first = await only_id({"/a": "1", "/d/b": "2"})
    assert await only_id({"/d/b": "2", "/a": "1"}) == first
    assert await only_id({"/a": "1", "/d/b": "3"}) != first
    assert await only_id({"/a": "1", "/e/b": "2"}) != first  # moving a file changes the tree


async def test_datum_id_depends_on_name_path_and_content_only(lister: TreeLister) -> None:
    one = await lister.commit("r1", {"/f": "same"})
    two = await lister.commit("r2", {"/f": "same"})
    first = await compute_datums(
        node({"pfs": {"name": "in", "repo": "r1", "glob": "/*"}}), {"in": one}, lister
    )
    moved = await compute_datums(
        node({"pfs": {"name": "in", "repo": "r2", "branch": "b", "glob": "/*"}}),
        {"in": two},
        lister,
    )
    renamed = await compute_datums(
        node({"pfs": {"name": "other", "repo": "r1", "glob": "/*"}}), {"other": one}, lister
    )
    assert first[0].id == moved[0].id
    assert first[0].id != renamed[0].id
    assert first[0].id == datum_id([("in", "/f", first[0].inputs[0].hash)])
    assert len(first[0].id) == 64


async def test_listing_order_does_not_matter(lister: TreeLister) -> None:
    a = await lister.commit("a", {"/1": "x", "/2": "y", "/3": "z"})
    b = await lister.commit("b", {"/k": "w", "/l": "v"})
    spec = node(
        {"cross": [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "b", "glob": "/*"}}]}
    )
    commits = {"a": a, "b": b}
    assert await compute_datums(spec, commits, ReversedLister(lister)) == await compute_datums(
        spec, commits, lister
    )


async def test_an_input_without_a_commit_matches_nothing(lister: TreeLister) -> None:
    a = await lister.commit("a", {"/1": "x"})
    cross = node({"cross": [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "b"}}]})
    assert await compute_datums(cross, {"a": a}, lister) == []
    union = node({"union": [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "b"}}]})
    assert paths(await compute_datums(union, {"a": a}, lister)) == [[("a", "/1")]]


async def test_lister_errors_propagate(lister: TreeLister) -> None:
    with pytest.raises(NotFound):
        await compute_datums(node({"pfs": {"repo": "a"}}), {"a": "0" * 32}, lister)


async def test_cron_inputs_are_read_through_their_repo(lister: TreeLister) -> None:
    spec = load_spec(
        json.dumps(
            base_spec(
                input={
                    "cross": [
                        {"pfs": {"repo": "features", "glob": "/*"}},
                        {"cron": {"name": "weekly", "spec": "@weekly"}},
                    ]
                }
            )
        )
    )
    features = await lister.commit("features", {"/f1": "1", "/f2": "2"})
    tick = await lister.commit("train_weekly", {"/2024-05-13T03:00:00Z": ""})
    with pytest.raises(InvalidArgument, match="resolved_input"):
        await compute_datums(spec.input, {"features": features, "weekly": tick}, lister)
    datums = await compute_datums(
        spec.resolved_input(), {"features": features, "weekly": tick}, lister
    )
    assert paths(datums) == [
        [("features", "/f1"), ("weekly", "/")],
        [("features", "/f2"), ("weekly", "/")],
    ]
    assert datums[0].inputs[1].repo == "train_weekly"


def test_datum_round_trips_through_a_dict() -> None:
    part = DatumInput("in", "repo", "master", "c" * 32, "/a", "file", "h", 3)
    datum = Datum.of([part])
    assert Datum.from_dict(json.loads(json.dumps(datum.to_dict()))) == datum
    assert datum.size == 3


# --- shards, plans, collisions ---------------------------------------------------------------


def fake_datums(n: int) -> list[Datum]:
    return [
        Datum.of([DatumInput("in", "r", "master", "c", f"/{i}", "file", str(i), i)])
        for i in range(n)
    ]


def test_split_into_shards() -> None:
    datums = fake_datums(10)
    shards = split_into_shards(datums, 3)
    assert [len(s) for s in shards] == [4, 3, 3]
    assert [d for s in shards for d in s] == datums
    assert [len(s) for s in split_into_shards(datums[:2], 4)] == [1, 1]
    assert split_into_shards([], 4) == []
    assert split_into_shards(datums, 1) == [datums]
    with pytest.raises(InvalidArgument):
        split_into_shards(datums, 0)


def test_plan_datums() -> None:
    datums = fake_datums(4)
    plan = plan_datums(datums, {datums[1].id, datums[3].id, "gone"})
    assert plan.new == [datums[0], datums[2]]
    assert plan.skipped == [datums[1], datums[3]]
    assert plan_datums(datums, set()).new == datums


def test_find_output_collisions() -> None:
    assert find_output_collisions({"d1": ["/a", "/b/c"], "d2": ["/b/d", "/e"]}) == []
    assert find_output_collisions({"d2": ["/x", "/y"], "d1": ["/x"], "d3": ["/x", "/x"]}) == [
        ("/x", "d1", "d2"),
        ("/x", "d1", "d3"),
    ]
    # a file of one datum where another writes inside a directory of the same name
    assert find_output_collisions({"d1": ["/m/model.onnx"], "d2": ["/m"]}) == [("/m", "d1", "d2")]
    assert find_output_collisions({"d1": ["/m/a", "/m/b"]}) == []
