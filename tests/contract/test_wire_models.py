"""The clients read what the services answer: every call of every client (the SDK and the CLI
use no other) goes to an operation of that service's OpenAPI document, and the model the client
parses the answer with has the very schema the operation documents. And each wire model is
defined once, so there are no copies left to drift apart."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter

from tusk.auth.audit import AuditRecord
from tusk.client.http import ServiceClient
from tusk.client.inference import InferenceClient
from tusk.client.pipelines import SchedulerClient, TriggerClient
from tusk.client.registry import ModelRegistryClient
from tusk.client.repo import RepoClient
from tusk_inference.app import create_app as inference_app
from tusk_inference.config import InferenceSettings
from tusk_repo.app import create_app as repo_app
from tusk_repo.config import RepoSettings
from tusk_scheduler.app import create_app as scheduler_app
from tusk_scheduler.config import SchedulerSettings
from tusk_trigger.app import create_app as trigger_app
from tusk_trigger.config import TriggerSettings

ROOT = Path(__file__).resolve().parents[2]
CLIENTS: tuple[type[ServiceClient], ...] = (
    RepoClient,
    TriggerClient,
    SchedulerClient,
    InferenceClient,
    ModelRegistryClient,
)
# Calls whose answer is not a JSON document: bytes, a tar stream, a status code.
BLOCKING = {"get_file_blocking"}
"""Calls on the blocking connection (urllib3), which a mock transport cannot stand in for:
each reads the same route as its async twin (``get_file``), which is checked."""
NOT_JSON = {
    "healthy",
    "ready",
    "get_file",
    "get_tree",
    "runner",
    "record_audit",
    "revoke_token",
    "revoke_role",
    "revoke_worker_tokens",
    "remove",
    "abandon_commit",
    "delete_branch",
    "delete_project",
    "delete_file",
    "delete_repo",
    "delete_pipeline",
}
# A value for each required argument, by its annotation (and, where that is `str`, its name).
STRINGS = {"path": "/a.csv", "pattern": "/*", "spec": "pipeline: {name: p}\n"}
VALUES: dict[str, Callable[[Path], object]] = {
    "str": lambda _: "x1",
    "int": lambda _: 1,
    "str | None": lambda _: "p1",
    "str | bytes": lambda _: STRINGS["spec"],
    "list[str]": lambda _: ["x1"],
    "Role": lambda _: "reader",
    "Path": lambda tmp: tmp / "out",
    "FileSource": lambda _: b"x",
    "dict[str, Any]": lambda _: {"inputs": []},
    "Iterable[tuple[str, str]]": lambda _: [("/a.csv", "0" * 64)],
    "Iterable[tuple[str, bytes | Path]]": lambda _: [("/a.csv", b"x")],
    "AuditRecord": lambda _: AuditRecord(
        identity="svc", action="POST", target="/v1/x", resource=None, status=200, request_id=None
    ),
}


def apps(tmp_path: Path) -> dict[str, FastAPI]:
    common = {"data_dir": tmp_path}
    return {
        "repo": repo_app(RepoSettings(**common)),  # type: ignore[arg-type]
        "trigger": trigger_app(TriggerSettings(**common)),  # type: ignore[arg-type]
        "scheduler": scheduler_app(SchedulerSettings(**common)),  # type: ignore[arg-type]
        "inference": inference_app(InferenceSettings(**common)),  # type: ignore[arg-type]
    }


@dataclass
class Call:
    """One request a client method sent, and the model it parsed the answer with, if any."""

    method: str
    client: type[ServiceClient]
    http_method: str
    path: str
    parsed: Any = None  # a model, or TypeAdapter target such as list[Model]


class _Parsed(Exception):
    """Ends a client call once it has chosen the model for the answer."""


def record_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every public method of every client, called against a transport that answers `{}`."""
    calls: list[Call] = []
    current: list[Call] = []

    def answer(request: httpx.Request) -> httpx.Response:
        current.append(
            Call(
                method="",
                client=ServiceClient,
                http_method=request.method,
                path=request.url.raw_path.decode().split("?")[0],
            )
        )
        return httpx.Response(200, json={})

    def parse(_self: ServiceClient, model: Any, _response: httpx.Response) -> Any:
        current[-1].parsed = model
        raise _Parsed

    def parse_list(_self: ServiceClient, model: Any, _response: httpx.Response) -> Any:
        current[-1].parsed = list[model]  # type: ignore[valid-type]
        raise _Parsed

    monkeypatch.setattr(ServiceClient, "_parse", parse)
    monkeypatch.setattr(ServiceClient, "_parse_list", parse_list)

    async def run() -> None:
        for cls in CLIENTS:
            client = cls("http://tusk.test", transport=httpx.MockTransport(answer), retries=0)
            for name, function in inspect.getmembers(cls, inspect.isfunction):
                if name.startswith("_") or name == "aclose" or name in BLOCKING:
                    continue
                kwargs = {
                    p.name: argument(p, tmp_path)
                    for p in inspect.signature(function).parameters.values()
                    if p.name != "self" and p.default is p.empty
                }
                current.clear()
                failure: Exception | None = None
                try:
                    result = getattr(client, name)(**kwargs)
                    if inspect.isasyncgen(result):
                        await anext(result)
                    else:
                        await result
                except _Parsed:
                    pass
                except Exception as e:  # an answer `{}` does not satisfy every call
                    failure = e
                assert failure is None or name in NOT_JSON, f"{cls.__name__}.{name}: {failure!r}"
                assert current or name == "healthy", f"{cls.__name__}.{name} sent nothing"
                assert name in NOT_JSON or current[-1].parsed is not None, (
                    f"{cls.__name__}.{name} parsed no model; if its answer is not JSON, add "
                    "it to NOT_JSON"
                )
                for call in current:
                    call.method, call.client = name, cls
                calls.extend(current)
            await client.aclose()

    asyncio.run(run())
    return calls


def argument(parameter: inspect.Parameter, tmp_path: Path) -> object:
    annotation = str(parameter.annotation)
    if annotation == "str" and parameter.name in STRINGS:
        return STRINGS[parameter.name]
    if annotation not in VALUES:
        raise AssertionError(f"no test value for {parameter.name}: {annotation}; add one")
    return VALUES[annotation](tmp_path)


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The operation of the OpenAPI document that serves ``method path``: the one whose
    template matches with the most literal characters."""
    best: tuple[int, dict[str, Any]] | None = None
    for template, operations in document["paths"].items():
        if method.lower() not in operations:
            continue
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, operations[method.lower()])
    return best[1] if best else None


IGNORED = ("title", "default")


def inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """The schema with every reference replaced by what it names, without titles (FastAPI and
    pydantic name generic models differently: `Page_CommitInfo_`, `Page[CommitInfo]`) and
    defaults (FastAPI leaves them out of answers, which are complete: `required` still says
    which fields an answer may lack)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return inline(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {k: inline(v, definitions) for k, v in schema.items() if k not in IGNORED}
    if isinstance(schema, list):
        return [inline(v, definitions) for v in schema]
    return schema


def success_schema(op: dict[str, Any], document: dict[str, Any]) -> Any:
    for status, response in op["responses"].items():
        if status.startswith("2"):
            content = response.get("content", {}).get("application/json")
            assert content is not None, f"{op['operationId']} answers no JSON"
            return inline(content["schema"], document["components"]["schemas"])
    raise AssertionError(f"{op['operationId']} documents no success")


def model_schema(parsed: Any) -> Any:
    schema = TypeAdapter(parsed).json_schema(mode="serialization")
    return inline(schema, schema.pop("$defs", {}))


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {name: app.openapi() for name, app in apps(tmp_path_factory.mktemp("apps")).items()}


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Call]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield record_calls(tmp_path_factory.mktemp("calls"), monkeypatch)


def test_every_client_call_is_an_operation_of_its_service(
    calls: list[Call], documents: dict[str, dict[str, Any]]
) -> None:
    assert len(calls) > 60
    missing = [
        f"{c.client.__name__}.{c.method}: {c.http_method} {c.path}"
        for c in calls
        if operation(documents[c.client.service], c.http_method, c.path) is None
    ]
    assert missing == []


def test_each_answer_is_parsed_with_the_schema_the_service_documents(
    calls: list[Call], documents: dict[str, dict[str, Any]]
) -> None:
    parsed = [c for c in calls if c.parsed is not None]
    assert len(parsed) > 50
    differing = []
    for call in parsed:
        document = documents[call.client.service]
        op = operation(document, call.http_method, call.path)
        assert op is not None, call
        if model_schema(call.parsed) != success_schema(op, document):
            differing.append(f"{call.client.__name__}.{call.method} ({op['operationId']})")
    assert differing == []


def test_a_changed_model_is_noticed(documents: dict[str, dict[str, Any]]) -> None:
    """The comparison above sees a difference of one field (so it cannot pass vacuously)."""
    from tusk.wire.jobs import InputCommit

    class Copy(BaseModel):
        name: str
        repo: str
        branch: str
        commit: int

    document = documents["trigger"]
    original = inline(document["components"]["schemas"]["InputCommit"], {})
    assert model_schema(InputCommit) == original
    assert model_schema(Copy) != original


# Where wire models live: the services' API models, the clients, the events, the worker's.
WIRE_MODULES = [
    *ROOT.glob("services/*/*/schemas.py"),
    *ROOT.glob("services/*/*/auth_schemas.py"),
    *ROOT.glob("libs/tusk/client/*.py"),
    *ROOT.glob("libs/tusk/events/*.py"),
    *ROOT.glob("libs/tusk/wire/*.py"),
    ROOT / "libs/tusk/worker/protocol.py",
]


def test_each_wire_model_is_defined_once() -> None:
    defined: dict[str, list[str]] = {}
    for module in WIRE_MODULES:
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                defined.setdefault(node.name, []).append(str(module.relative_to(ROOT)))
    assert len(defined) > 40
    twice = {name: where for name, where in defined.items() if len(where) > 1}
    assert twice == {}


def test_services_events_and_clients_share_the_classes() -> None:
    from tusk.client import models as client
    from tusk.events import types as events
    from tusk.worker import protocol
    from tusk_repo import schemas as repo
    from tusk_scheduler import schemas as scheduler
    from tusk_trigger import schemas as trigger

    assert events.InputCommit is client.InputCommit is trigger.InputCommit
    assert scheduler.InputCommit is client.InputCommit
    assert events.DatumCounts is client.DatumCounts is trigger.DatumCounts
    assert scheduler.DatumCounts is client.DatumCounts
    assert events.CommitRef is client.CommitRef is repo.CommitRef
    assert protocol.OutputFile is client.OutputFile is scheduler.OutputFile
    assert issubclass(scheduler.JobInfo, client.JobInfo)
