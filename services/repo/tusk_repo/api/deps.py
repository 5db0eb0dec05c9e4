from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from tusk.api import qualified_name
from tusk.paths import NAME_RE, REF_RE
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
RepoName = Annotated[str, qualified_name("Repo", "raw")]
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
