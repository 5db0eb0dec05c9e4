from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tusk_repo.context import Context
from tusk_repo.service import RepoService


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


def get_service(context: ContextDep) -> RepoService:
    return context.service


ServiceDep = Annotated[RepoService, Depends(get_service)]
