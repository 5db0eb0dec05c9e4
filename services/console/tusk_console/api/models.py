from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from tusk.client.inference import InferResponse, ModelMetadata
from tusk.errors import InvalidArgument, TuskError
from tusk_console.api.deps import BackendsDep, ContextDep
from tusk_console.api.render import page
from tusk_console.backends import Backends
from tusk_console.domain.metrics import ModelStats

router = APIRouter()


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, backends: BackendsDep, ctx: ContextDep) -> HTMLResponse:
    """Every served model: its version, since when, where it came from, and its traffic."""
    entries = await backends.inference.models()
    names = sorted({e.name for e in entries})
    metadata = await asyncio.gather(*(_metadata(backends, n) for n in names))
    stats = await _stats(backends, ctx)
    return page(
        request, "models.html", entries=entries,
        models=[(n, m, stats.get(n)) for n, m in zip(names, metadata, strict=True)],
    )


@router.get("/models/{name}", response_class=HTMLResponse)
async def model_page(request: Request, name: str, backends: BackendsDep, ctx: ContextDep,
                     ) -> HTMLResponse:
    metadata = await backends.inference.model(name)
    stats = await _stats(backends, ctx)
    return page(request, "model.html", name=name, model=metadata, stats=stats.get(name),
                request_text=_example_request(metadata), answer=None, error=None)


@router.post("/models/{name}/predict", response_class=HTMLResponse)
async def predict(
    request: Request, name: str, backends: BackendsDep, ctx: ContextDep,
    request_text: str = Form(..., alias="request", max_length=1_000_000),
) -> HTMLResponse:
    """Send the form's OIP v2 request to the model; show the answer, or what was wrong."""
    metadata = await backends.inference.model(name)
    answer: InferResponse | None = None
    error: str | None = None
    status = 200
    try:
        body = json.loads(request_text)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise InvalidArgument('the request must be a JSON object with an "inputs" list')
        answer = await backends.inference.infer(name, body)
    except ValueError as e:
        error, status = f"the request is not valid JSON: {e}", 400
    except TuskError as e:
        if e.status_code >= 500 or e.status_code == 401:
            raise
        error, status = e.message, e.status_code
    stats = await _stats(backends, ctx)
    return page(request, "model.html", status_code=status, name=name, model=metadata,
                stats=stats.get(name), request_text=request_text, answer=answer, error=error)


async def _metadata(backends: Backends, name: str) -> ModelMetadata | None:
    try:
        return await backends.inference.model(name)
    except TuskError:  # not loaded yet (no commit on its branch): the index says why
        return None


async def _stats(backends: Backends, ctx: ContextDep) -> dict[str, ModelStats]:
    try:
        text = await backends.inference.metrics_text()
    except TuskError:
        return {}
    return ctx.rates.observe(ctx.settings.inference_url, text)


def _example_request(metadata: ModelMetadata) -> str:
    """One row of zeros in each input's shape, to edit before sending."""
    inputs: list[dict[str, Any]] = []
    for tensor in metadata.inputs:
        shape = [1 if d < 0 else d for d in tensor.shape] or [1]
        size = 1
        for d in shape:
            size *= d
        zero: Any = "" if tensor.datatype == "BYTES" else 0
        inputs.append({"name": tensor.name, "shape": shape, "datatype": tensor.datatype,
                       "data": [zero] * min(size, 10_000)})
    return json.dumps({"inputs": inputs}, indent=2)
