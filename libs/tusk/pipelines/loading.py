"""From text (YAML, JSON or a jsonnet template) to validated specs, every problem reported as
one :class:`InvalidArgument` whose message names each field, e.g.
``input.cross[1].pfs.glob: …``, with a hint where a field belongs or what was meant."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)
from pydantic.alias_generators import to_snake

from tusk.errors import InvalidArgument
from tusk.pipelines.documents import parse_document, parse_documents, prefix, render_jsonnet
from tusk.pipelines.models import (
    MAX_INPUT_DEPTH,
    BranchTrigger,
    CronInput,
    Egress,
    Input,
    Loc,
    ParallelismSpec,
    PfsInput,
    PipelineRef,
    PipelineSpec,
    ProjectRef,
    Resources,
    SchedulingSpec,
    Secret,
    Service,
    SpecErrors,
    Spout,
    SqlEgress,
    Transform,
    format_loc,
)


def load_spec(text: str | bytes, *, filename: str | None = None) -> PipelineSpec:
    """Parse a YAML or JSON spec and validate it; every error names its field."""
    return validate_spec(parse_document(text, filename=filename), filename=filename)


def load_specs(
    text: str | bytes,
    *,
    filename: str | None = None,
    jsonnet_args: Mapping[str, str] | None = None,
) -> list[PipelineSpec]:
    """Every spec of a file, as pachctl reads it: YAML documents separated by ``---`` (JSON
    being YAML), or, with ``jsonnet_args`` (possibly empty), a jsonnet template rendered with
    them. Errors name the document when the file holds several."""
    if jsonnet_args is not None:
        documents = render_jsonnet(text, jsonnet_args, filename=filename)
    else:
        documents = parse_documents(text, filename=filename)
    if not documents:
        raise InvalidArgument(prefix(filename) + "the file holds no spec")
    specs: list[PipelineSpec] = []
    problems: list[str] = []
    for i, document in enumerate(documents):
        where = filename if len(documents) == 1 else f"{filename or 'spec'}[{i}]"
        try:
            specs.append(validate_spec(document, filename=where))
        except InvalidArgument as exc:
            problems.append(exc.message)
    if problems:
        raise InvalidArgument("; ".join(problems))
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgument(
            prefix(filename) + f"pipeline.name: {', '.join(map(repr, repeated))} is given by "
            "more than one spec in the file"
        )
    return specs


def validate_spec(data: Any, *, filename: str | None = None) -> PipelineSpec:
    """A parsed document as a spec; every error names its field."""
    if not isinstance(data, dict):
        raise InvalidArgument(
            prefix(filename) + "the spec must be a mapping with pipeline, input and transform"
        )
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        errors = _describe(exc)
    except RecursionError:
        raise InvalidArgument(
            prefix(filename) + f"input: nested too deep (at most {MAX_INPUT_DEPTH} levels)"
        ) from None
    except UnicodeEncodeError:  # a JSON escape of half a UTF-16 pair ("\ud800")
        raise InvalidArgument(
            prefix(filename) + "the spec holds text that is not valid Unicode (a lone surrogate)"
        ) from None
    lines = [f"{field}: {message}" for field, message in errors]
    raise InvalidArgument(
        prefix(filename) + "; ".join(lines),
        errors=[{"field": field, "message": message} for field, message in errors],
    )


_CMD_REQUIRED = (
    "required: tusk's worker runs the command itself and cannot read an image's entrypoint; "
    "give the command the image would run (its ENTRYPOINT and CMD)"
)


def _describe(exc: ValidationError) -> list[tuple[str, str]]:
    described: list[tuple[str, str]] = []
    raw = exc.errors(include_url=False)
    # pydantic also reports a list whose every item failed as "too short"; the items say more.
    nested = {tuple(e["loc"][:n]) for e in raw for n in range(len(e["loc"]))}
    # A pfs name defaults to the repo, so a bad repo already explains the missing name.
    bad_repos = {tuple(e["loc"][:-1]) for e in raw if e["loc"][-1:] == ("repo",)}
    for error in raw:
        loc: Loc = tuple(error["loc"])
        if error["type"] == "too_short" and loc in nested:
            continue
        if error["type"] == "missing" and loc[-1:] == ("name",) and loc[:-1] in bad_repos:
            continue
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SpecErrors):
            described += [(format_loc((*loc, *sub)) or "(spec)", msg) for sub, msg in cause.errors]
        elif error["type"] == "extra_forbidden":
            described.append((format_loc(loc), _unknown_field(loc)))
        elif error["type"] == "missing" and loc == ("transform", "cmd"):
            described.append((format_loc(loc), _CMD_REQUIRED))
        elif error["type"] == "missing":
            described.append((format_loc(loc), "required"))
        elif error["type"] == "too_short":
            described.append((format_loc(loc), "must not be empty"))
        elif error["type"] in ("tuple_type", "list_type"):
            described.append((format_loc(loc), "expected a list"))
        elif isinstance(cause, Exception):
            described.append((format_loc(loc) or "(spec)", str(cause)))
        else:
            described.append((format_loc(loc) or "(spec)", error["msg"]))
    return described


# --- unknown fields: say where the field belongs, or what was probably meant ----------------

_WHERE = {
    "PipelineSpec": "the top level",
    "PipelineRef": "pipeline",
    "Input": "input",
    "PfsInput": "pfs",
    "CronInput": "cron",
    "Transform": "transform",
    "Secret": "transform.secrets[]",
    "ParallelismSpec": "parallelism_spec",
    "Resources": "resource_requests / resource_limits",
    "ProjectRef": "pipeline.project",
    "BranchTrigger": "pfs.trigger",
    "Service": "service",
    "Spout": "spout",
    "Egress": "egress",
    "SqlEgress": "egress.sql_database",
    "SchedulingSpec": "scheduling_spec",
}
_PACHYDERM_ONLY = frozenset(
    {
        "coefficient", "commit", "datum_set_spec", "git", "max_queue_size",
        "maximum_expected_uptime", "pod_patch", "pod_spec", "repo_type",
        "sidecar_resource_limits", "sidecar_resource_requests", "spec_commit", "standby",
        "tf_job", "tolerations",
    }
)  # fmt: skip


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is None and isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = PipelineSpec
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    return model


def _all_models() -> list[type[BaseModel]]:
    return [PipelineSpec, PipelineRef, Input, PfsInput, CronInput, Transform, Secret,
            ParallelismSpec, Resources, ProjectRef, BranchTrigger, Service, Spout, Egress,
            SqlEgress, SchedulingSpec]  # fmt: skip


def _unknown_field(loc: Loc) -> str:
    written = str(loc[-1])
    key = to_snake(written)
    model = _model_at(loc[:-1])
    fields = sorted(model.model_fields) if model is not None else []
    homes = [_WHERE[m.__name__] for m in _all_models() if key in m.model_fields and m is not model]
    if homes:
        return f"unknown field {written!r} here (it belongs in {' or '.join(homes)})"
    close = difflib.get_close_matches(key, fields, n=1)
    if close:
        return f"unknown field {written!r} (did you mean {close[0]!r}?)"
    if key in _PACHYDERM_ONLY:
        return f"unknown field {written!r}: a Pachyderm field that tusk does not support"
    expected = f" (expected {', '.join(fields)})" if fields else ""
    return f"unknown field {written!r}{expected}"
