from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from tusk.auth.http import authorization, principal_of
from tusk.auth.principal import Principal
from tusk_scheduler import store
from tusk_scheduler.context import Context


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]

JobId = Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,32}$", description="Job id")]
DatumId = Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$", description="Datum id")]


@authorization
async def job_reader(request: Request, ctx: ContextDep) -> Principal:
    """The caller must read the pipeline whose job the path names."""
    principal = principal_of(request)
    if not principal.admin:
        async with ctx.db.session(write=False) as session:
            row = await store.get_job(session, request.path_params["job"])
        principal.require("pipeline", row.pipeline, "reader")
    return principal
