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
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in schemas.items():
                if components.setdefault(name, schema) != schema:
                    raise AssertionError(f"two different schemas are named {name!r}")
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
