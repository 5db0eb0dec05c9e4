from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from tusk.paths import MAX_QUALIFIED_NAME_LENGTH, NAME_RE, QUALIFIED_NAME_RE, REF_RE
from tusk_repo.context import Context
from tusk_repo.service import RepoService


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


def get_service(context: ContextDep) -> RepoService:
    return context.service


ServiceDep = Annotated[RepoService, Depends(get_service)]

# In a route as ``{repo:qualified}``: ``p/x`` is one segment, sent as ``p%2Fx``.
RepoName = Annotated[
    str,
    Path(
        pattern=QUALIFIED_NAME_RE.pattern,
        max_length=MAX_QUALIFIED_NAME_LENGTH,
        openapi_examples={
            "plain": {"value": "raw"},
            "in a project": {"value": "vision/images", "description": "sent as vision%2F…"},
        },
        description="Repo name, optionally qualified by its project: 'p/x', sent as 'p%2Fx'",
    ),
]
ProjectName = Annotated[str, Path(pattern=NAME_RE.pattern, description="Project name")]
BranchName = Annotated[str, Path(pattern=NAME_RE.pattern, description="Branch name")]
CommitRef = Annotated[
    str,
    Path(
        pattern=REF_RE.pattern,
        description="A commit id or a branch (its head), optionally followed by ^, ^N or ~N "
        "for ancestors; URL-encode ^ as %5E",
    ),
]
