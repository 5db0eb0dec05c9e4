from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from tusk.api import qualified_name
from tusk_trigger.context import Context


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]
# In a route as ``{name:qualified}``: ``p/x`` is one segment, sent as ``p%2Fx``.
PipelineName = Annotated[str, qualified_name("Pipeline", "edges")]
JobId = Annotated[
    str,
    Path(pattern=r"^[0-9a-f]{8,32}$", description="Job id, or a unique prefix of 8 or more"),
]
