"""Who may call the repo routes: the role each needs on the repo in its path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tusk.auth.http import authorization, principal_of
from tusk.auth.principal import Principal
from tusk.errors import Forbidden

# The routes a worker writes through: files into its job's output and meta commits.
_WORKER_WRITES = ("/file", "/files", "/links")
# What a spout does beyond writing files: it makes its own commits (start, finish, abandon).
_SPOUT_COMMIT_ROUTES = frozenset(
    {
        ("POST", "/repos/{repo}/commits"),
        ("POST", "/repos/{repo}/commits/{ref}/finish"),
        ("DELETE", "/repos/{repo}/commits/{ref}"),
    }
)
# A POST that only reads: a directory's tar, its skip list in the body.
_READS_BY_POST = ("/tar",)
# What changes who may write, or what is kept: the repo's owner decides.
_OWNER_WRITES = ("/protection", "/retention", "/owner")


@authorization
def repo_access(request: Request) -> Principal:
    """Reads need ``reader`` on the repo, writes ``writer``; a worker reads its inputs and
    writes files only into its job's own commits (by id)."""
    principal = principal_of(request)
    repo = request.path_params.get("repo")
    path = request.url.path
    reading = request.method in ("GET", "HEAD") or (
        request.method == "POST" and path.endswith(_READS_BY_POST)
    )
    if repo is None:  # /v1/repos: the list shows what the caller may read
        if not reading and principal.worker is not None:
            raise Forbidden(f"{principal.name} is a pipeline worker: it cannot create repos")
        return principal
    if reading:
        principal.require("repo", repo, "reader")
    elif principal.worker is not None:
        ref = request.path_params.get("ref", "")
        if _spout_commits(request, principal, repo):
            return principal
        if not path.endswith(_WORKER_WRITES) or not principal.can_write_commit(
            repo, ref
        ):
            raise Forbidden(
                f"{principal.name} is a worker of pipeline {principal.worker.pipeline}: it may "
                f"only put and delete files in its job's commits of {principal.worker.output_repo}"
            )
    else:
        principal.require("repo", repo, "owner" if path.endswith(_OWNER_WRITES) else "writer")
    return principal


def _spout_commits(request: Request, principal: Principal, repo: str) -> bool:
    """Whether this is a spout opening, finishing or abandoning a commit of its output repo
    (the only writes beyond files a spout's credential allows)."""
    worker = principal.worker
    if worker is None or not worker.spout or repo != worker.output_repo:
        return False
    route = getattr(request.scope.get("route"), "path_format", "")
    return (request.method, route.removeprefix("/v1")) in _SPOUT_COMMIT_ROUTES


@authorization
def repo_owner(request: Request) -> Principal:
    principal = principal_of(request)
    principal.require("repo", request.path_params["repo"], "owner")
    return principal


RepoAccess = Depends(repo_access)
RepoReaderDep = Annotated[Principal, RepoAccess]
RepoOwnerDep = Annotated[Principal, Depends(repo_owner)]


def forget_roles(request: Request) -> None:
    """Tokens or roles changed: the verifier must not answer from what it remembers."""
    request.app.state.verifier.forget()
