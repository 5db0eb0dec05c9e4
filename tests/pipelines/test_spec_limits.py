"""Specs that ask for the impossible are refused when loaded, each error naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.pipelines.helpers import base_spec
from tests.pipelines.test_datums import fake_datums
from tusk.errors import InvalidArgument
from tusk.pipelines import load_spec
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain.planning import make_plan


def nested_union(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"pfs": {"repo": "raw", "glob": "/*"}}
    for _ in range(depth):
        node = {"union": [node]}
    return node


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"parallelism_spec": {"constant": 1_000_000}}, ("parallelism_spec.constant", "1000")),
        ({"datum_tries": 10**9}, ("datum_tries", "100")),
        ({"job_timeout": "100000000000000000000h"}, ("job_timeout", "at most 3650d")),
        ({"datum_timeout": "1e20h"}, ("datum_timeout", "invalid duration")),
        ({"input": nested_union(200)}, ("input", "nested more than 32 levels")),
        ({"transform": {"cmd": ["python3", "-c", "print(1)\x00"]}}, ("transform.cmd[2]", "NUL")),
        ({"transform": {"cmd": ["true"], "env": {"A": "\x00"}}}, ("transform.env", "NUL")),
        ({"description": "before\x00after"}, ("description", "NUL")),
    ],
)
def test_impossible_specs_are_refused(change: dict[str, Any], fragments: tuple[str, ...]) -> None:
    spec = {**base_spec(), **change}
    with pytest.raises(InvalidArgument) as refused:
        load_spec(json.dumps(spec))
    for fragment in fragments:
        assert fragment in refused.value.message


def test_deeper_nesting_than_the_parser_takes_is_a_400() -> None:
    text = '{"pipeline": {"name": "p"}, "input": ' + "[" * 50_000 + "]" * 50_000 + "}"
    with pytest.raises(InvalidArgument, match="nested too deep"):
        load_spec(text)


def test_a_job_is_split_into_at_most_the_local_runners_workers() -> None:
    spec = load_spec(json.dumps({**base_spec(), "parallelism_spec": {"constant": 1000}}))
    plan = make_plan(spec, fake_datums(25), {}, max_shards=4)
    assert len(plan.shards) == 4
    assert sum(len(s) for s in plan.shards) == 25
    assert len(make_plan(spec, fake_datums(25), {}).shards) == 25  # no cap: as the spec says
    settings = SchedulerSettings(TUSK_SCHEDULER_MAX_LOCAL_WORKERS=3)  # type: ignore[call-arg]
    assert settings.max_local_workers == 3
    assert SchedulerSettings().max_local_workers >= 2
