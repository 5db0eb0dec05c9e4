"""Request bodies a route parses itself (streamed, or fast-pathed) described in the OpenAPI
schema by a pydantic model, with the model's nested definitions where OpenAPI looks for them
(``#/components/schemas``), not in a ``$defs`` no reference resolves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"


def body_schema(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's schema with references into the components, and the definitions to add."""
    schema = model.model_json_schema(ref_template=_REF)
    return schema, schema.pop("$defs", {})


def add_component_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Make the app's OpenAPI document hold ``schemas`` among its components."""

    def add(document: dict[str, Any]) -> None:
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in schemas.items():
            if components.setdefault(name, schema) != schema:
                raise AssertionError(f"two different schemas are named {name!r}")

    _amend(app, add)


def add_links(app: FastAPI, links: list[tuple[str, str, str, str, str, dict[str, str]]]) -> None:
    """Declare OpenAPI links: what an answer's fields are good for in later requests (clients
    and stateful testing follow them). Each link: (method, path, status) of the answer, the
    link's name, the operationId it leads to, and that operation's parameters as runtime
    expressions such as ``$response.body#/name``."""

    def add(document: dict[str, Any]) -> None:
        for method, path, status, name, operation, parameters in links:
            response = document["paths"][path][method]["responses"][status]
            response.setdefault("links", {})[name] = {
                "operationId": operation,
                "parameters": parameters,
            }

    _amend(app, add)


def _amend(app: FastAPI, change: Callable[[dict[str, Any]], None]) -> None:
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            change(generate())
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def add_auth_responses(app: FastAPI, public_paths: frozenset[str]) -> None:
    """Document the 401 and 403 every operation but the public ones may answer."""

    def add(document: dict[str, Any]) -> None:
        for path, operations in document.get("paths", {}).items():
            if path in public_paths:
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.setdefault(
                    "401", {"description": "Missing, invalid, revoked or expired bearer token"}
                )
                responses.setdefault("403", {"description": "The caller lacks the role needed"})

    _amend(app, add)
