from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from tusk.paths import NAME_RE
from tusk_trigger.context import Context


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]
PipelineName = Annotated[str, Path(pattern=NAME_RE.pattern, description="Pipeline name")]
JobId = Annotated[
    str,
    Path(pattern=r"^[0-9a-f]{8,32}$", description="Job id, or a unique prefix of 8 or more"),
]
