from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tusk.auth.http import authorization, principal_of, public
from tusk.auth.principal import Principal
from tusk_inference.context import Context


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


@authorization
def model_reader(request: Request) -> Principal:
    """The caller must read the repo the model comes from: whoever may read a model's file
    may use it."""
    principal = principal_of(request)
    check_model_reader(request, principal)
    return principal


def check_model_reader(request: Request, principal: Principal) -> None:
    if not principal.admin:
        context: Context = request.app.state.context
        slot = context.registry.slot(request.path_params["model"])
        principal.require("repo", slot.spec.repo, "reader")


ModelReader = Depends(model_reader)
Public = Depends(public)
