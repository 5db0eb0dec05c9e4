from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from tusk.paths import MAX_QUALIFIED_NAME_LENGTH, QUALIFIED_NAME_RE
from tusk_trigger.context import Context


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]
# In a route as ``{name:qualified}``: ``p/x`` is one segment, sent as ``p%2Fx``.
PipelineName = Annotated[
    str,
    Path(
        pattern=QUALIFIED_NAME_RE.pattern,
        max_length=MAX_QUALIFIED_NAME_LENGTH,
        openapi_examples={
            "plain": {"value": "edges"},
            "in a project": {"value": "vision/edges", "description": "sent as vision%2F…"},
        },
        description="Pipeline name, optionally qualified by its project: 'p/x', sent as 'p%2Fx'",
    ),
]
JobId = Annotated[
    str,
    Path(pattern=r"^[0-9a-f]{8,32}$", description="Job id, or a unique prefix of 8 or more"),
]
