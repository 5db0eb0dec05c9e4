"""Pipeline specs: every field read from YAML and JSON, and every error naming its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from tests.pipelines.helpers import base_spec
from tusk.errors import InvalidArgument
from tusk.pipelines import (
    CronInput,
    PipelineSpec,
    check_input_repos,
    check_no_cycle,
    cron_pfs_input,
    cron_repo_name,
    cron_tick_path,
    find_cycle,
    load_spec,
)
from tusk.pipelines.models import BranchTrigger
from tusk.pipelines.spec import load_specs

FULL_YAML = """
pipeline: {name: train}
description: Fits the credit-limit models.
input:
  cross:
    - pfs: {repo: features, branch: master, glob: "/"}
    - cron: {name: weekly, spec: "0 3 * * 1", overwrite: true, start: 2024-01-01T00:00:00Z}
transform:
  image: registry.example.com/credit/train:1.2
  cmd: ["python", "/code/train.py"]
  stdin: ["echo hi"]
  env: {SEED: 7, MODE: fast}
  secrets:
    - {name: s3-creds, key: access-key, env_var: AWS_ACCESS_KEY_ID}
    - {name: certs, mount_path: /etc/certs}
parallelism_spec: {constant: 4}
resource_requests: {cpu: 1, memory: 2Gi}
resource_limits: {cpu: "1500m", memory: 4Gi, gpu: 1}
datum_tries: 5
datum_timeout: 30s
job_timeout: 1h30m
output_branch: models
"""


def load(data: dict[str, Any]) -> PipelineSpec:
    return load_spec(json.dumps(data))


def test_every_field_from_yaml() -> None:
    spec = load_spec(FULL_YAML, filename="train.yaml")
    assert spec.name == "train"
    assert spec.description == "Fits the credit-limit models."
    assert spec.input.kind == "cross"
    features, weekly = spec.input.cross or ()
    assert features.pfs is not None
    assert (features.pfs.name, features.pfs.repo, features.pfs.branch, features.pfs.glob) == (
        "features",
        "features",
        "master",
        "/",
    )
    assert weekly.cron == CronInput(
        name="weekly",
        spec="0 3 * * 1",
        overwrite=True,
        start=datetime(2024, 1, 1, tzinfo=UTC),
    )
    transform = spec.transform
    assert transform.image == "registry.example.com/credit/train:1.2"
    assert transform.cmd == ("python", "/code/train.py")
    assert transform.stdin == ("echo hi",)
    assert transform.env == {"SEED": "7", "MODE": "fast"}  # YAML numbers become strings
    assert [(s.name, s.key, s.env_var, s.mount_path) for s in transform.secrets] == [
        ("s3-creds", "access-key", "AWS_ACCESS_KEY_ID", None),
        ("certs", None, None, "/etc/certs"),
    ]
    assert spec.parallelism_spec.constant == 4
    assert spec.resource_requests is not None
    assert (spec.resource_requests.cpu, spec.resource_requests.memory) == ("1", "2Gi")
    assert spec.resource_limits is not None
    assert (spec.resource_limits.cpu, spec.resource_limits.gpu) == ("1500m", "1")
    assert spec.datum_tries == 5
    assert spec.datum_timeout == timedelta(seconds=30)
    assert spec.job_timeout == timedelta(hours=1, minutes=30)
    assert spec.output_branch == "models"


def test_json_reads_like_yaml() -> None:
    from_yaml = load_spec(FULL_YAML)
    as_json = json.dumps(yaml.safe_load(FULL_YAML), default=str)
    assert load_spec(as_json) == from_yaml
    assert load_spec(as_json.encode(), filename="train.json") == from_yaml


def test_round_trip_through_to_dict() -> None:
    spec = load_spec(FULL_YAML)
    data = spec.to_dict()
    assert data["job_timeout"] == "1h30m"
    assert load_spec(json.dumps(data)) == spec
    assert load_spec(yaml.safe_dump(data)) == spec


def test_defaults() -> None:
    spec = load(base_spec())
    pfs = spec.input.pfs
    assert pfs is not None
    assert (pfs.name, pfs.branch, pfs.outer_join, pfs.join_on, pfs.group_by) == (
        "features",
        "master",
        False,
        None,
        None,
    )
    assert load(base_spec(input={"pfs": {"repo": "x"}})).pfs_inputs()[0].glob == "/"
    assert spec.parallelism_spec.constant == 1
    assert spec.datum_tries == 3
    assert spec.output_branch == "master"
    assert spec.datum_timeout is None
    assert spec.job_timeout is None
    assert spec.resource_requests is None
    assert spec.transform.image is None
    assert spec.transform.env == {}


def test_specs_are_frozen() -> None:
    spec = load(base_spec())
    with pytest.raises(ValueError, match="frozen"):
        spec.datum_tries = 4  # type: ignore[misc]


def test_every_input_kind() -> None:
    spec = load(
        base_spec(
            input={
                "union": [
                    {"pfs": {"repo": "a", "glob": "/*"}},
                    {
                        "join": [
                            {"pfs": {"repo": "b", "glob": "/(*).csv", "join_on": "$1"}},
                            {
                                "pfs": {
                                    "repo": "c",
                                    "glob": "/(*).txt",
                                    "join_on": "$1",
                                    "outer_join": True,
                                }
                            },
                        ]
                    },
                    {
                        "group": [
                            {"pfs": {"repo": "d", "glob": "/(*)/*", "group_by": "$1"}},
                            {
                                "pfs": {
                                    "name": "e2",
                                    "repo": "e",
                                    "glob": "/(*)-*",
                                    "group_by": "$1",
                                }
                            },
                        ]
                    },
                    {
                        "cross": [
                            {"pfs": {"repo": "f"}},
                            {"cron": {"name": "tick", "spec": "@daily"}},
                        ]
                    },
                ]
            }
        )
    )
    assert [p.name for p in spec.pfs_inputs()] == ["a", "b", "c", "d", "e2", "f"]
    assert [c.name for c in spec.cron_inputs()] == ["tick"]
    assert spec.input_repos() == ["a", "b", "c", "d", "e", "f"]
    assert spec.cron_repos() == ["train_tick"]
    locs = [loc for loc, node in spec.input.walk() if node.pfs is not None]
    assert locs[1] == ("input", "union", 1, "join", 0)


def test_input_names_may_repeat_across_union_branches_of_one_repo() -> None:
    spec = load(
        base_spec(
            input={
                "union": [
                    {"pfs": {"name": "in", "repo": "a", "glob": "/x/*"}},
                    {"pfs": {"name": "in", "repo": "a", "glob": "/y/*"}},
                ]
            }
        )
    )
    assert [p.name for p in spec.pfs_inputs()] == ["in", "in"]


# --- errors ----------------------------------------------------------------------------------

PFS = {"repo": "features", "glob": "/*"}
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("typo at the top", {"transfrom": {"cmd": ["x"]}}, "transfrom", "did you mean 'transform'"),
    ("typo in pfs", {"input": {"pfs": {"repo": "a", "glbo": "/"}}}, "input.pfs.glbo", "'glob'"),
    (
        "field in the wrong place",
        {"transform": {"cmd": ["x"], "glob": "/*"}},
        "transform.glob",
        "belongs in pfs",
    ),
    ("pachyderm-only field", {"standby": True}, "standby", "Pachyderm field"),
    (
        "pachyderm-only nested",
        {"parallelism_spec": {"coefficient": 1}},
        "parallelism_spec.coefficient",
        "Pachyderm field",
    ),
    ("missing pipeline", {"pipeline": None}, "pipeline", ""),
    ("missing cmd", {"transform": {"image": "x"}}, "transform.cmd", "required"),
    ("empty cmd", {"transform": {"cmd": []}}, "transform.cmd", "must not be empty"),
    ("empty program", {"transform": {"cmd": [" "]}}, "transform.cmd[0]", "empty"),
    ("empty image", {"transform": {"cmd": ["x"], "image": ""}}, "transform.image", "empty"),
    ("cmd not a list", {"transform": {"cmd": {"a": 1}}}, "transform.cmd", "expected a list"),
    ("bad pipeline name", {"pipeline": {"name": "no spaces"}}, "pipeline.name", "invalid name"),
    ("long pipeline name", {"pipeline": {"name": "p" * 64}}, "pipeline.name", "1-63"),
    ("bad repo", {"input": {"pfs": {"repo": "-a"}}}, "input.pfs.repo", "invalid repo name"),
    ("bad input name", {"input": {"pfs": {"repo": "a", "name": "a/b"}}}, "input.pfs.name", ""),
    (
        "branch like a commit id",
        {"input": {"pfs": {"repo": "a", "branch": "0" * 32}}},
        "input.pfs.branch",
        "commit id",
    ),
    ("bad output branch", {"output_branch": "a b"}, "output_branch", "invalid"),
    ("no input", {"input": {}}, "input", "exactly one of pfs, cross"),
    (
        "two input kinds",
        {"input": {"pfs": PFS, "cron": {"name": "c", "spec": "@daily"}}},
        "input",
        "found pfs, cron",
    ),
    ("empty cross", {"input": {"cross": []}}, "input.cross", "must not be empty"),
    (
        "glob with ..",
        {"input": {"cross": [{"pfs": PFS}, {"pfs": {"repo": "b", "glob": "/a/../b"}}]}},
        "input.cross[1].pfs.glob",
        "'..'",
    ),
    ("empty glob", {"input": {"pfs": {"repo": "a", "glob": ""}}}, "input.pfs.glob", "empty"),
    (
        "unbalanced glob",
        {"input": {"pfs": {"repo": "a", "glob": "/(*.csv"}}},
        "input.pfs.glob",
        "never closed",
    ),
    (
        "globstar captured",
        {"input": {"pfs": {"repo": "a", "glob": "/(**)/x"}}},
        "input.pfs.glob",
        "'**'",
    ),
    (
        "join_on beyond the groups",
        {
            "input": {
                "join": [
                    {"pfs": {"repo": "a", "glob": "/(*).csv", "join_on": "$2"}},
                    {"pfs": {"repo": "b", "glob": "/(*).csv", "join_on": "$1"}},
                ]
            }
        },
        "input.join[0].pfs.join_on",
        "has 1",
    ),
    (
        "join of a cross",
        {
            "input": {
                "join": [
                    {"pfs": {"repo": "a", "glob": "/(*).csv", "join_on": "$1"}},
                    {"cross": [{"pfs": {"repo": "b"}}]},
                ]
            }
        },
        "input.join[1]",
        "must be a pfs input",
    ),
    (
        "join_on outside a join",
        {"input": {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}}},
        "input.pfs.join_on",
        "only means something inside a join",
    ),
    (
        "outer_join outside a join",
        {"input": {"pfs": {"repo": "a", "outer_join": True}}},
        "input.pfs.outer_join",
        "inside a join",
    ),
    (
        "group_by outside a group",
        {"input": {"cross": [{"pfs": {"repo": "a", "glob": "/(*)", "group_by": "$1"}}]}},
        "input.cross[0].pfs.group_by",
        "inside a group",
    ),
    (
        "group without group_by",
        {"input": {"group": [{"pfs": {"repo": "a", "glob": "/(*)"}}]}},
        "input.group[0].pfs.group_by",
        "required in a group",
    ),
    (
        "cron in a group",
        {"input": {"group": [{"cron": {"name": "c", "spec": "@daily"}}]}},
        "input.group[0]",
        "must be a pfs input",
    ),
    (
        "cron expression out of range",
        {"input": {"cross": [{"pfs": PFS}, {"cron": {"name": "c", "spec": "61 * * * *"}}]}},
        "input.cross[1].cron.spec",
        "out of range",
    ),
    (
        "cron with seconds",
        {"input": {"cron": {"name": "c", "spec": "* * * * * *"}}},
        "input.cron.spec",
        "5 fields",
    ),
    (
        "cron never fires",
        {"input": {"cron": {"name": "c", "spec": "0 0 31 2 *"}}},
        "input.cron.spec",
        "never",
    ),
    (
        "cron @every without a period",
        {"input": {"cron": {"name": "c", "spec": "@every soon"}}},
        "input.cron.spec",
        "invalid duration",
    ),
    ("cron @reboot", {"input": {"cron": {"name": "c", "spec": "@reboot"}}}, "input.cron.spec", ""),
    ("cron without spec", {"input": {"cron": {"name": "c"}}}, "input.cron.spec", "required"),
    (
        "cron bad start",
        {"input": {"cron": {"name": "c", "spec": "@daily", "start": "yesterday"}}},
        "input.cron.start",
        "datetime",
    ),
    (
        "cron repo name too long",
        {"pipeline": {"name": "p" * 40}, "input": {"cron": {"name": "c" * 30, "spec": "@daily"}}},
        "input.cron.name",
        "over 63",
    ),
    ("duration words", {"datum_timeout": "5 minutes"}, "datum_timeout", "invalid duration"),
    ("duration number", {"job_timeout": 30}, "job_timeout", "'30s'"),
    ("zero duration", {"job_timeout": "0s"}, "job_timeout", "at least"),
    ("negative cpu", {"resource_limits": {"cpu": "-1"}}, "resource_limits.cpu", "quantity"),
    ("boolean cpu", {"resource_limits": {"cpu": True}}, "resource_limits.cpu", "quantity"),
    ("half a gpu", {"resource_limits": {"gpu": "0.5"}}, "resource_limits.gpu", "whole"),
    (
        "request above limit",
        {"resource_requests": {"cpu": "2"}, "resource_limits": {"cpu": "1500m"}},
        "resource_requests.cpu",
        "more than resource_limits.cpu",
    ),
    (
        "parallelism zero",
        {"parallelism_spec": {"constant": 0}},
        "parallelism_spec.constant",
        "greater than or equal to 1",
    ),
    ("datum_tries zero", {"datum_tries": 0}, "datum_tries", "greater than or equal to 1"),
    ("datum_tries text", {"datum_tries": "three"}, "datum_tries", "integer"),
    (
        "same name twice in a cross",
        {"input": {"cross": [{"pfs": {"repo": "a"}}, {"pfs": {"repo": "a", "glob": "/*"}}]}},
        "input.cross[1]",
        "also used by cross[0]",
    ),
    (
        "same name for two repos in a union",
        {
            "input": {
                "union": [
                    {"pfs": {"name": "in", "repo": "a"}},
                    {"pfs": {"name": "in", "repo": "b"}},
                ]
            }
        },
        "input.union[1].pfs.name",
        "already used by input.union[0].pfs.name",
    ),
    (
        "cron named like a pfs input",
        {"input": {"cross": [{"pfs": {"repo": "a"}}, {"cron": {"name": "a", "spec": "@daily"}}]}},
        "input.cross[1]",
        "also used",
    ),
    ("input named out", {"input": {"pfs": {"repo": "out"}}}, "input.pfs.name", "reserved"),
    (
        "reading its own output",
        {"input": {"pfs": {"repo": "train"}}},
        "input.pfs.repo",
        "own output repo",
    ),
    (
        "bad env name",
        {"transform": {"cmd": ["x"], "env": {"1X": "y"}}},
        "transform.env.1X",
        "environment variable",
    ),
    (
        "env value not text",
        {"transform": {"cmd": ["x"], "env": {"X": [1]}}},
        "transform.env.X",
        "string",
    ),
    (
        "secret env_var without key",
        {"transform": {"cmd": ["x"], "secrets": [{"name": "s", "env_var": "X"}]}},
        "transform.secrets[0].key",
        "required with env_var",
    ),
    (
        "secret used nowhere",
        {"transform": {"cmd": ["x"], "secrets": [{"name": "s", "key": "k"}]}},
        "transform.secrets[0]",
        "env_var (with key) or mount_path",
    ),
    (
        "secret name",
        {"transform": {"cmd": ["x"], "secrets": [{"name": "S_1", "mount_path": "/s"}]}},
        "transform.secrets[0].name",
        "secret name",
    ),
    (
        "secret relative mount",
        {"transform": {"cmd": ["x"], "secrets": [{"name": "s", "mount_path": "s"}]}},
        "transform.secrets[0].mount_path",
        "absolute",
    ),
    (
        "secret env_var also in env",
        {
            "transform": {
                "cmd": ["x"],
                "env": {"X": "1"},
                "secrets": [{"name": "s", "key": "k", "env_var": "X"}],
            }
        },
        "transform.secrets[0].env_var",
        "also set in env",
    ),
    ("description not text", {"description": ["x"]}, "description", "string"),
]


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_error_names_its_field(change: dict[str, Any], field: str, fragment: str) -> None:
    data = {k: v for k, v in base_spec(**change).items() if v is not None}
    for text in (json.dumps(data), yaml.safe_dump(data)):
        with pytest.raises(InvalidArgument) as raised:
            load_spec(text)
        errors = raised.value.details["errors"]
        assert field in [e["field"] for e in errors], errors
        message = next(e["message"] for e in errors if e["field"] == field)
        assert fragment in message, message
        assert f"{field}: " in raised.value.message
        assert raised.value.status_code == 400


def test_all_errors_are_reported_at_once() -> None:
    data = base_spec(
        pipeline={"name": "bad name"},
        transform={"cmd": ["x"], "imagee": "y"},
        datum_tries=0,
    )
    with pytest.raises(InvalidArgument) as raised:
        load_spec(json.dumps(data), filename="spec.json")
    fields = [e["field"] for e in raised.value.details["errors"]]
    assert fields == ["pipeline.name", "transform.imagee", "datum_tries"]
    assert raised.value.message.startswith("spec.json: pipeline.name: ")
    assert "did you mean 'image'" in raised.value.message


def test_one_clash_is_one_error() -> None:
    data = base_spec(
        input={"cross": [{"pfs": {"repo": "a"}}, {"cron": {"name": "a", "spec": "@daily"}}]}
    )
    with pytest.raises(InvalidArgument) as raised:
        load(data)
    assert [e["field"] for e in raised.value.details["errors"]] == ["input.cross[1]"]


def test_a_list_of_bad_inputs_is_not_also_too_short() -> None:
    data = base_spec(input={"cross": [{"pfs": {"repo": "-"}}]})
    with pytest.raises(InvalidArgument) as raised:
        load(data)
    assert [e["field"] for e in raised.value.details["errors"]] == ["input.cross[0].pfs.repo"]


@pytest.mark.parametrize(
    ("text", "filename", "fragment"),
    [
        ("pipeline: [unclosed", None, "invalid YAML at line 1"),
        ("pipeline: {name: a}\npipeline: {name: b}\n", None, "duplicate key 'pipeline'"),
        ('{"pipeline": {"name": "a", "name": "b"}}', None, "duplicate key 'name'"),
        ("- a\n- b\n", None, "must be a mapping"),
        ("", None, "must be a mapping"),
        (b"\xff\xfe", "spec.yaml", "not UTF-8"),
        ("a: 1\n---\nb: 2\n", None, "2 specs separated by '---'"),
        ('{"pipeline": [}', None, "invalid YAML at line 1"),
        ("pipeline: {name: a", "spec.json", "invalid YAML"),
        ("gpu: {number: 1", None, "invalid YAML"),
        # A complex key (a list or a mapping) cannot be a spec's field name.
        ("? [a, b]\n: 1\n", None, "mapping key"),
        ("pipeline:\n  ? {name: a}\n  : 1\n", "spec.yaml", "mapping key"),
    ],
)
def test_unreadable_documents(text: str | bytes, filename: str | None, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        load_spec(text, filename=filename)
    assert fragment in raised.value.message
    if filename:
        assert raised.value.message.startswith(f"{filename}: ")


def test_yaml_with_filename_and_bom() -> None:
    text = yaml.safe_dump(base_spec())
    assert load_spec(b"\xef\xbb\xbf" + text.encode(), filename="spec.yml").name == "train"


# --- cron inputs -------------------------------------------------------------------------------


def test_cron_input_maps_to_a_repo() -> None:
    spec = load(
        base_spec(
            input={
                "cross": [
                    {"pfs": {"repo": "features"}},
                    {"cron": {"name": "weekly", "spec": "0 3 * * 1"}},
                ]
            }
        )
    )
    cron = spec.cron_inputs()[0]
    assert cron_repo_name("train", "weekly") == "train_weekly"
    view = cron_pfs_input("train", cron)
    assert (view.name, view.repo, view.branch, view.glob) == (
        "weekly",
        "train_weekly",
        "master",
        "/",
    )
    resolved = spec.resolved_input()
    assert resolved.cron_inputs() == []
    assert [p.repo for p in resolved.pfs_inputs()] == ["features", "train_weekly"]
    assert spec.cron_repos() == ["train_weekly"]
    assert spec.input_repos() == ["features"]


def test_cron_ticks() -> None:
    after = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)  # a Monday
    weekly = CronInput(name="w", spec="0 3 * * 1")
    assert weekly.interval is None
    assert weekly.next_tick(after) == datetime(2024, 5, 13, 3, 0, tzinfo=UTC)
    assert weekly.next_tick(datetime(2024, 5, 13, 3, 0, tzinfo=UTC)) == datetime(
        2024, 5, 20, 3, 0, tzinfo=UTC
    )
    started = CronInput(name="w", spec="@daily", start=datetime(2025, 1, 1, 12))
    assert started.start == datetime(2025, 1, 1, 12, tzinfo=UTC)  # naive is UTC
    assert started.next_tick(after) == datetime(2025, 1, 2, tzinfo=UTC)

    every = CronInput(name="e", spec="@every 60s")
    assert every.interval == timedelta(seconds=60)
    assert every.next_tick(after) == after + timedelta(seconds=60)
    grid = CronInput(name="e", spec="@every 1h30m", start=datetime(2024, 5, 6, tzinfo=UTC))
    assert grid.next_tick(after) == datetime(2024, 5, 6, 10, 30, tzinfo=UTC)
    assert grid.next_tick(datetime(2024, 5, 6, 10, 30, tzinfo=UTC)) == datetime(
        2024, 5, 6, 12, 0, tzinfo=UTC
    )
    assert grid.next_tick(datetime(2024, 1, 1, tzinfo=UTC)) == datetime(
        2024, 5, 6, 1, 30, tzinfo=UTC
    )
    assert every.next_tick(datetime(2024, 1, 1)) == datetime(2024, 1, 1, 0, 1, tzinfo=UTC)


def test_cron_tick_path() -> None:
    assert cron_tick_path(datetime(2024, 5, 13, 3, 0, tzinfo=UTC)) == "/2024-05-13T03:00:00Z"
    assert cron_tick_path(datetime(2024, 5, 13, 3, 0, 0, 500, tzinfo=UTC)) == (
        "/2024-05-13T03:00:00.000500Z"
    )


# --- the DAG -----------------------------------------------------------------------------------


def test_find_cycle() -> None:
    assert find_cycle({}) is None
    assert find_cycle({"b": ["a"], "c": ["a", "b"], "d": ["c", "raw"]}) is None
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"x": ["raw"], "a": ["b"], "b": ["c"], "c": ["raw", "a"]}) == [
        "a",
        "b",
        "c",
        "a",
    ]
    # a cycle reached from a node that is not on it
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]


def test_find_cycle_on_a_long_chain() -> None:
    chain = {f"p{i}": [f"p{i + 1}"] for i in range(5000)}
    assert find_cycle(chain) is None
    chain["p5000"] = ["p0"]
    cycle = find_cycle(chain)
    assert cycle is not None
    assert len(cycle) == 5002


def test_check_no_cycle_names_the_input() -> None:
    spec = load(base_spec(pipeline={"name": "a"}, input={"pfs": {"repo": "b"}}))
    check_no_cycle(spec, {"b": ["raw"], "c": ["a"]})
    with pytest.raises(InvalidArgument, match=r"^input: pipeline 'a' would make a cycle") as e:
        check_no_cycle(spec, {"b": ["c"], "c": ["a"]})
    assert e.value.details["cycle"] == ["a", "b", "c", "a"]
    # an unrelated cycle elsewhere is not this spec's problem
    check_no_cycle(spec, {"b": ["raw"], "x": ["y"], "y": ["x"]})


def test_check_input_repos() -> None:
    spec = load(base_spec(input={"cross": [{"pfs": {"repo": "a"}}, {"pfs": {"repo": "b"}}]}))
    check_input_repos(spec, {"a", "b"})
    with pytest.raises(InvalidArgument, match=r"input.cross\[1\].pfs.repo: repo 'b' does not"):
        check_input_repos(spec, {"a"})


# --- Pachyderm's dialect -----------------------------------------------------------------------


def test_lower_camel_case_is_read_and_stored_as_snake_case() -> None:
    camel = load_spec(
        json.dumps(
            {
                "pipeline": {"name": "train"},
                "input": {
                    "join": [
                        {
                            "pfs": {
                                "repo": "a",
                                "glob": "/(*).csv",
                                "joinOn": "$1",
                                "outerJoin": True,
                            }
                        },
                        {"pfs": {"repo": "b", "glob": "/(*).csv", "joinOn": "$1"}},
                    ]
                },
                "transform": {
                    "cmd": ["true"],
                    "secrets": [{"name": "creds", "key": "k", "envVar": "TOKEN"}],
                    "acceptReturnCode": [3],
                },
                "parallelismSpec": {"constant": 2},
                "resourceLimits": {"memory": "2GB", "gpu": {"type": "amd.com/gpu", "number": 1}},
                "datumTries": 2,
            }
        )
    )
    data = camel.to_dict()
    assert data["parallelism_spec"] == {"constant": 2}
    assert data["input"]["join"][0]["pfs"]["join_on"] == "$1"
    assert data["transform"]["secrets"][0]["env_var"] == "TOKEN"
    assert data["resource_limits"] == {"memory": "2G", "gpu": "1", "gpu_type": "amd.com/gpu"}
    assert load_spec(json.dumps(data)) == camel


def test_a_field_given_in_both_spellings_is_refused() -> None:
    with pytest.raises(InvalidArgument) as raised:
        load(
            {**base_spec(), "parallelism_spec": {"constant": 1}, "parallelismSpec": {"constant": 2}}
        )
    assert "parallelism_spec: given twice, as 'parallelism_spec' and 'parallelismSpec'" in (
        raised.value.message
    )


def test_unknown_camel_case_field_suggests_the_right_name() -> None:
    with pytest.raises(InvalidArgument) as raised:
        load({**base_spec(), "parallelismSpecs": {"constant": 1}})
    assert "unknown field 'parallelismSpecs' (did you mean 'parallelism_spec'?)" in (
        raised.value.message
    )


def test_json_with_trailing_commas_and_several_documents() -> None:
    text = (
        '{"pipeline": {"name": "a"}, "input": {"pfs": {"repo": "r",}},\n'
        ' "transform": {"cmd": ["true"],},}\n'
        "---\n"
        '{"pipeline": {"name": "b"}, "input": {"pfs": {"repo": "a"}},\n'
        '\t"transform": {"cmd": ["true"]}}\n'
    )
    specs = load_specs(text, filename="two.json")
    assert [s.name for s in specs] == ["a", "b"]


def test_several_documents_name_the_one_at_fault() -> None:
    text = (
        "pipeline: {name: a}\ninput: {pfs: {repo: r}}\ntransform: {cmd: [x]}\n---\n"
        "pipeline: {name: b}\ninput: {pfs: {repo: r, glob: 7}}\ntransform: {cmd: [x]}\n"
    )
    with pytest.raises(InvalidArgument) as raised:
        load_specs(text, filename="two.yaml")
    assert raised.value.message.startswith("two.yaml[1]: input.pfs.glob: ")


def test_a_join_without_join_on_joins_everything() -> None:
    spec = load(
        {
            **base_spec(),
            "input": {
                "join": [{"pfs": {"repo": "a", "glob": "/*"}}, {"pfs": {"repo": "b", "glob": "/*"}}]
            },
        }
    )
    assert spec.input is not None
    assert spec.input.kind == "join"


def test_datum_identity_ignores_what_does_not_change_outputs() -> None:
    spec = load(base_spec())
    same = load(
        {
            **base_spec(),
            "parallelism_spec": {"constant": 7},
            "description": "other",
            "resource_requests": {"cpu": "2"},
            "datum_tries": 1,
            "job_timeout": "1h",
        }
    )
    assert same.datum_identity() == spec.datum_identity()
    other_cmd = load({**base_spec(), "transform": {"cmd": ["python3", "other.py"]}})
    assert other_cmd.datum_identity() != spec.datum_identity()
    other_image = load({**base_spec(), "transform": {**base_spec()["transform"], "image": "x:2"}})
    assert other_image.datum_identity() != spec.datum_identity()
    salted = load({**base_spec(), "salt": "fresh"})
    assert salted.datum_identity() != spec.datum_identity()


def test_a_lone_surrogate_is_refused_with_a_400_not_a_crash() -> None:
    text = '{"pipeline": {"name": "p"}, "input": {"pfs": {"repo": "r"}}, ' \
        '"transform": {"cmd": ["x"], "env": {"\\udb31": "v"}}}'
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        load_spec(text)


def test_rate_limit_spec_passes_once_a_tick_came_after_the_head() -> None:
    trigger = BranchTrigger(branch="staging", rate_limit_spec="0 * * * *")  # on the hour
    head = datetime(2026, 1, 5, 9, 10, tzinfo=UTC)
    assert trigger.rate_limit_passed(None, head)  # no head yet
    assert not trigger.rate_limit_passed(head, datetime(2026, 1, 5, 9, 59, tzinfo=UTC))
    assert trigger.rate_limit_passed(head, datetime(2026, 1, 5, 10, 0, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="cron"):
        BranchTrigger(branch="staging", rate_limit_spec="every hour")


def test_a_pipeline_of_a_project_reads_its_projects_repos_unless_an_input_names_one() -> None:
    spec = load_spec(
        json.dumps({
            "pipeline": {"name": "edges", "project": {"name": "vision"}},
            "input": {
                "cross": [
                    {"pfs": {"repo": "images", "glob": "/*"}},
                    {"pfs": {"repo": "labels", "project": "shared", "glob": "/"}},
                    {"pfs": {"repo": "params", "project": "default", "glob": "/"}},
                ]
            },
            "transform": {"cmd": ["true"]},
        })
    )
    assert (spec.name, spec.project) == ("vision/edges", "vision")
    assert [(p.name, p.repo) for p in spec.pfs_inputs()] == [
        ("images", "vision/images"),
        ("labels", "shared/labels"),
        ("params", "params"),
    ]
    assert spec.input_repos() == ["params", "shared/labels", "vision/images"]
    # The stored form reads back to the same spec.
    assert load_spec(json.dumps(spec.to_dict())) == spec


def test_a_pipeline_without_a_project_is_in_default() -> None:
    spec = load_spec(
        json.dumps({
            "pipeline": {"name": "edges", "project": {"name": "default"}},
            "input": {"pfs": {"repo": "images", "glob": "/*"}},
            "transform": {"cmd": ["true"]},
        })
    )
    assert (spec.name, spec.pfs_inputs()[0].repo) == ("edges", "images")


def test_a_qualified_pipeline_name_over_63_characters_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"pipeline\.name: .*at most 63"):
        load_spec(
            json.dumps({
                "pipeline": {"name": "e" * 40, "project": {"name": "p" * 30}},
                "input": {"pfs": {"repo": "images", "glob": "/*"}},
                "transform": {"cmd": ["true"]},
            })
        )


def test_an_input_missing_from_the_pipelines_project_says_where_it_is() -> None:
    spec = load_spec(
        json.dumps({
            "pipeline": {"name": "edges", "project": {"name": "vision"}},
            "input": {"pfs": {"repo": "images", "glob": "/*"}},
            "transform": {"cmd": ["true"]},
        })
    )
    hint = r"'vision/images' does not exist in project 'vision'.*set pfs\.project"
    with pytest.raises(InvalidArgument, match=hint):
        check_input_repos(spec, {"images"})
    check_input_repos(spec, {"vision/images"})
