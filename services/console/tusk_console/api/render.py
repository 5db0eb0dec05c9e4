"""Rendering pages: the whole page, or only its ``<main>`` when a live page refreshes."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from tusk import __version__
from tusk_console.api.deps import TEMPLATES

# Asset URLs carry the version, so browsers may keep them (see app.py) and still get new ones.
TEMPLATES.env.globals["version"] = __version__


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    values["fragment"] = request.query_params.get("fragment") == "1"
    values["signed_in"] = bool(request.app.state.context.settings.api_tokens)
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)
