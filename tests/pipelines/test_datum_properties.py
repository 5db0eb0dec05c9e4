"""Properties of datum computation over random repo contents."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pipelines.helpers import ReversedLister, TreeLister
from tusk.pipelines import (
    Datum,
    DatumInput,
    Input,
    compute_datums,
    datum_id,
    find_output_collisions,
    plan_datums,
    split_into_shards,
)

KEYS = ["k1", "k2", "k3", "k4"]
FILES = ["a", "b", "c"]

# /<key>/<file>: under glob "/(*)/*" several files share a key.
contents = st.dictionaries(
    st.tuples(st.sampled_from(KEYS), st.sampled_from(FILES)).map(lambda kf: f"/{kf[0]}/{kf[1]}"),
    st.sampled_from(["x", "y", "z"]),
    max_size=6,
)
repos = st.lists(contents, min_size=1, max_size=3)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def commit_all(lister: TreeLister, repos: list[dict[str, str]]) -> dict[str, str]:
    return {f"r{i}": await lister.commit(f"r{i}", files) for i, files in enumerate(repos)}


def pfs(i: int, glob: str = "/*/*", **extra: Any) -> dict[str, Any]:
    return {"pfs": {"repo": f"r{i}", "glob": glob, **extra}}


async def datums_of(data: Mapping[str, Any], commits: dict[str, str], lister: Any) -> list[Datum]:
    return await compute_datums(Input.model_validate(data), commits, lister)


@settings(max_examples=60, deadline=None)
@given(repos)
def test_cross_size_is_the_product(repos: list[dict[str, str]]) -> None:
    async def check() -> None:
        lister = TreeLister()
        commits = await commit_all(lister, repos)
        singles = [await datums_of(pfs(i), commits, lister) for i in range(len(repos))]
        crossed = await datums_of({"cross": [pfs(i) for i in range(len(repos))]}, commits, lister)
        assert len(crossed) == math.prod(len(s) for s in singles)
        assert len({d.id for d in crossed}) == len(crossed)
        assert all(len(d.inputs) == len(repos) for d in crossed)
        # the order of the crossed inputs changes the order of datums, never their ids
        reordered = await datums_of(
            {"cross": [pfs(i) for i in reversed(range(len(repos)))]}, commits, lister
        )
        assert {d.id for d in reordered} == {d.id for d in crossed}

    run(check())


@settings(max_examples=60, deadline=None)
@given(repos)
def test_union_contains_its_parts(repos: list[dict[str, str]]) -> None:
    async def check() -> None:
        lister = TreeLister()
        commits = await commit_all(lister, repos)
        # r0 twice under one name (two globs that overlap), then the other repos crossed
        parts: list[dict[str, Any]] = [pfs(0), pfs(0, "/k1/*")]
        if len(repos) > 1:
            parts.append({"cross": [pfs(i) for i in range(1, len(repos))]})
        union = await datums_of({"union": parts}, commits, lister)
        ids = [d.id for d in union]
        assert len(ids) == len(set(ids))  # kept once
        total = 0
        for part in parts:
            alone = await datums_of(part, commits, lister)
            assert {d.id for d in alone} <= set(ids)
            total += len(alone)
        assert len(union) <= total
        assert len(union) == total - len(await datums_of(pfs(0, "/k1/*"), commits, lister))

    run(check())


@settings(max_examples=60, deadline=None)
@given(repos, st.permutations(range(3)))
def test_datums_do_not_depend_on_listing_order(
    repos: list[dict[str, str]], order: list[int]
) -> None:
    async def check() -> None:
        lister = TreeLister()
        commits = await commit_all(lister, repos)
        spec = {"cross": [pfs(i) for i in range(len(repos))]}
        assert await datums_of(spec, commits, ReversedLister(lister)) == await datums_of(
            spec, commits, lister
        )

    run(check())
    parts = [("in", f"/{i}", f"h{i}") for i in range(3)]
    assert datum_id([parts[i] for i in order]) == datum_id(parts)


@settings(max_examples=60, deadline=None)
@given(repos.filter(lambda r: len(r) >= 2), st.lists(st.booleans(), min_size=3, max_size=3))
def test_inner_join_is_within_outer_join(repos: list[dict[str, str]], outer: list[bool]) -> None:
    async def check() -> None:
        lister = TreeLister()
        commits = await commit_all(lister, repos)

        def join(flags: list[bool]) -> dict[str, Any]:
            return {
                "join": [
                    pfs(i, "/(*)/*", join_on="$1", outer_join=flags[i]) for i in range(len(repos))
                ]
            }

        inner = await datums_of(join([False] * 3), commits, lister)
        outer_datums = await datums_of(join(outer), commits, lister)
        assert {d.id for d in inner} <= {d.id for d in outer_datums}
        for datum in inner:
            assert len(datum.inputs) == len(repos)
            assert len({i.path.split("/")[1] for i in datum.inputs}) == 1
        for datum in outer_datums:
            assert len({i.path.split("/")[1] for i in datum.inputs}) == 1
            if len(datum.inputs) < len(repos):
                assert any(outer[int(i.repo[1:])] for i in datum.inputs)
        # every match of an outer input is in some datum
        for i in range(len(repos)):
            if outer[i]:
                matched = {(p.repo, p.path) for d in outer_datums for p in d.inputs}
                assert {(f"r{i}", path) for path in repos[i]} <= matched

    run(check())


@settings(max_examples=60, deadline=None)
@given(repos)
def test_group_puts_each_match_in_exactly_one_datum(repos: list[dict[str, str]]) -> None:
    async def check() -> None:
        lister = TreeLister()
        commits = await commit_all(lister, repos)
        group = {"group": [pfs(i, "/(*)/*", group_by="$1") for i in range(len(repos))]}
        datums = await datums_of(group, commits, lister)
        placed = [(p.repo, p.path) for d in datums for p in d.inputs]
        assert sorted(placed) == sorted(
            (f"r{i}", p) for i, files in enumerate(repos) for p in files
        )
        keys = [{p.path.split("/")[1] for p in d.inputs} for d in datums]
        assert all(len(k) == 1 for k in keys)
        assert len(datums) == len({p.split("/")[1] for files in repos for p in files})

    run(check())


def make_datums(n: int) -> list[Datum]:
    return [
        Datum.of([DatumInput("in", "r", "master", "c", f"/{i}", "file", f"h{i}", 1)])
        for i in range(n)
    ]


@given(st.integers(0, 200), st.integers(1, 40))
def test_shards_partition_the_datums(count: int, n: int) -> None:
    datums = make_datums(count)
    shards = split_into_shards(datums, n)
    assert [d for shard in shards for d in shard] == datums
    assert len(shards) == min(n, count)
    assert all(shards)
    sizes = [len(s) for s in shards]
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert split_into_shards(datums, n) == shards


@given(st.integers(0, 50), st.sets(st.integers(0, 60)))
def test_plan_splits_new_from_processed(count: int, done: set[int]) -> None:
    datums = make_datums(count)
    processed = {make_datums(61)[i].id for i in done}
    plan = plan_datums(datums, processed)
    assert sorted(plan.new + plan.skipped, key=datums.index) == datums
    assert all(d.id in processed for d in plan.skipped)
    assert all(d.id not in processed for d in plan.new)


paths = st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3).map(
    lambda p: "/" + "/".join(p)
)


@given(st.dictionaries(st.sampled_from(["d1", "d2", "d3"]), st.lists(paths, max_size=3)))
def test_collisions_are_exactly_the_unmergeable_outputs(outputs: dict[str, list[str]]) -> None:
    found = find_output_collisions(outputs)
    clashing = set()
    for a, a_paths in outputs.items():
        for b, b_paths in outputs.items():
            for p in a_paths:
                for q in b_paths:
                    if a < b and (p == q or q.startswith(p + "/") or p.startswith(q + "/")):
                        clashing.add((a, b))
    # each reported pair clashes, and every datum in a clash is named at least once
    assert {(a, b) for _, a, b in found} <= clashing
    assert {d for _, a, b in found for d in (a, b)} == {d for pair in clashing for d in pair}
    assert found == sorted(found)
