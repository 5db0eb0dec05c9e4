"""Pachyderm's own pipeline specs (153 files from its examples and docs, unchanged) as a user
moving to tusk brings them: each is accepted, or refused with a message naming a field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tusk.errors import InvalidArgument
from tusk.pipelines.compat import spec_warnings
from tusk.pipelines.spec import PipelineSpec, load_specs

CORPUS = Path(__file__).parent / "pachyderm_corpus"
INDEX: list[dict[str, Any]] = json.loads((CORPUS / "index.json").read_text())["specs"]

ACCEPTED = 143
"""Files accepted as they are; a change in the dialect that loses one fails here."""

# Each refusal, with what its message must say. Pachyderm refuses all but s128 too: five are
# marked so in index.json, four are documentation placeholders (`$PIPELINE_NAME`,
# `<PIPELINE NAME>`, `"type": string`, `"internalPort": int`). s128 leaves out cmd, which
# Pachyderm takes as "the image's entrypoint", which tusk's worker cannot know.
REFUSED = {
    "s056.json": r"pipeline\.name: invalid name '\$PIPELINE_NAME'",
    "s078.json": r"transform\.\.\.\.: unknown field '\.\.\.'",
    "s081.json": r"egress\.sql_database\.file_format\.type: ",
    "s084.json": r"service\.internal_port: .*integer",
    "s089.json": r"\.\.\.: unknown field '\.\.\.'",
    "s111.json": r"transform\.stdout: unknown field 'stdout'",
    "s112.json": r"transform\.\.\.\.: unknown field '\.\.\.'",
    "s118.yaml": r"pipeline\.description: unknown field 'description' here \(it belongs in the "
    r"top level\)",
    "s128.yaml": r"transform\.cmd: required: tusk's worker runs the command itself",
    "s129.json": r"pipeline\.name: invalid name '<PIPELINE NAME>'",
}


# index.json gives each template argument its own name as a value; where that cannot be valid
# (a cron schedule, a Kubernetes secret name) a user passes a real one, and so does the test.
REAL_ARGS = {"cronSpec": "@daily", "secretName": "snowflake-secret"}


def load(entry: dict[str, Any]) -> list[PipelineSpec]:
    path = CORPUS / entry["file"]
    args = None
    if entry["kind"] == "jsonnet":
        args = {k: REAL_ARGS.get(k, v) for k, v in entry["jsonnet_args"].items()}
    return load_specs(path.read_bytes(), filename=entry["file"], jsonnet_args=args)


def test_the_corpus_is_complete() -> None:
    assert len(INDEX) == 153
    assert sorted(p.name for p in CORPUS.glob("s*")) == sorted(e["file"] for e in INDEX)


def test_accepted_as_they_are_or_refused_naming_a_field() -> None:
    accepted, refused = [], {}
    for entry in INDEX:
        try:
            specs = load(entry)
        except InvalidArgument as exc:
            refused[entry["file"]] = exc.message
            continue
        assert len(specs) == entry["documents"], entry["file"]
        accepted.append(entry["file"])
    for file, message in refused.items():
        # "<file>: <field>: <why>": every refusal names the field at fault.
        assert re.match(rf"{re.escape(file)}(\[\d+\])?: [^\s:]+: \S", message), message
    assert len(accepted) == ACCEPTED, sorted(refused.items())
    assert sorted(refused) == sorted(REFUSED)
    for file, pattern in REFUSED.items():
        assert re.search(pattern, refused[file]), (file, refused[file])
    accepts = {e["file"]: e["pachyderm_accepts"] for e in INDEX}
    assert all(not accepts[f] for f in ("s078.json", "s089.json", "s111.json", "s112.json"))
    assert {f for f, ok in accepts.items() if not ok} <= set(refused)


def test_camel_case_and_snake_case_give_one_canonical_spec() -> None:
    (camel,) = load(next(e for e in INDEX if e["file"] == "s001.json"))
    data = camel.to_dict()
    assert "resource_limits" in data
    assert "resourceLimits" not in json.dumps(data)
    assert data["egress"]["sql_database"]["file_format"] == {"type": "CSV", "columns": []}
    again = load_specs(json.dumps(data))
    assert again == [camel]


def test_fields_tusk_cannot_apply_are_named_in_warnings() -> None:
    (spec,) = load(next(e for e in INDEX if e["file"] == "s001.json"))
    warnings = spec_warnings(spec)
    # Its database is Snowflake: hosted only, not written to.
    assert any(
        w.startswith("egress.sql_database.url: snowflake:// is not written to") for w in warnings
    ), warnings


@pytest.mark.parametrize(
    "entry", [e for e in INDEX if e["kind"] == "jsonnet"], ids=lambda e: e["file"]
)
def test_jsonnet_templates_render_with_their_arguments(entry: dict[str, Any]) -> None:
    specs = load(entry)
    assert len(specs) == entry["documents"]
    args = entry["jsonnet_args"]
    if "suffix" in args:
        assert any(s.name.endswith(args["suffix"]) for s in specs)


def test_a_template_missing_an_argument_says_which() -> None:
    entry = next(e for e in INDEX if e["file"] == "s018.jsonnet")
    with pytest.raises(InvalidArgument) as raised:
        load_specs((CORPUS / entry["file"]).read_bytes(), filename="t.jsonnet", jsonnet_args={})
    assert "suffix" in raised.value.message
    assert "--arg" in raised.value.message
