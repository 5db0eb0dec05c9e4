from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from tusk_scheduler.context import Context


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]

JobId = Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,32}$", description="Job id")]
DatumId = Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$", description="Datum id")]
