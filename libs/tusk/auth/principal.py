"""Principals (who a request comes from), their grants, and what a grant allows.

Roles follow Pachyderm's and lakeFS's: on a repo or a pipeline an identity is a ``reader``
(sees it), a ``writer`` (changes its contents or runs it) or an ``owner`` (also deletes it and
grants roles on it); an ``admin`` may do anything, including managing tokens. A grant names one
resource (``repo:raw``, ``pipeline:train``) or every one of a kind (``repo:*``).

A pipeline's worker is a principal of its own: it may read its job's input repos and its
output repo, and write only into its job's output and meta commits. A spout's (or a service
pipeline's) command is one too, without a job: a spout may commit into its output repo.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tusk.errors import Forbidden, InvalidArgument

Role = Literal["reader", "writer", "owner", "admin"]
ResourceKind = Literal["repo", "pipeline"]
ROLES: tuple[Role, ...] = ("reader", "writer", "owner", "admin")
_RANK: dict[str, int] = {"reader": 1, "writer": 2, "owner": 3, "admin": 4}
# A repo or pipeline may be qualified by its project: repo:vision/images.
RESOURCE_PATTERN = r"^(repo|pipeline):((?:[A-Za-z0-9_-]{1,63}/)?[A-Za-z0-9_-]{1,63}|\*)$"
_RESOURCE_RE = re.compile(RESOURCE_PATTERN)
IDENTITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$"


class Resource(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ResourceKind
    name: str  # or "*": every resource of the kind

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def parse_resource(text: str) -> Resource:
    match = _RESOURCE_RE.fullmatch(text)
    if match is None:
        raise InvalidArgument(
            f"resource {text!r} must be repo:NAME or pipeline:NAME (NAME may be * for all)"
        )
    kind: ResourceKind = "repo" if match[1] == "repo" else "pipeline"
    return Resource(kind=kind, name=match[2])


class Grant(BaseModel):
    """``role`` on ``resource``; an admin grant has no resource."""

    model_config = ConfigDict(frozen=True)

    role: Role
    resource: str | None = Field(
        default=None, description="repo:NAME, pipeline:NAME, repo:* or pipeline:*; none for admin"
    )


class WorkerScope(BaseModel):
    """What a job's worker may touch: nothing but its inputs and its job's two commits."""

    model_config = ConfigDict(frozen=True)

    job: str
    pipeline: str
    output_repo: str
    read_repos: tuple[str, ...] = ()
    write_commits: tuple[str, ...] = Field(
        default=(), description="The job's output and meta commits, on the output repo."
    )
    spout: bool = Field(
        default=False,
        description="A spout's credential: it also opens, finishes and abandons commits on its "
        "output repo, and writes files into any of them (a spout makes its own commits).",
    )


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    admin: bool = False
    grants: tuple[Grant, ...] = ()
    worker: WorkerScope | None = None
    token_id: str | None = None

    @property
    def pipeline(self) -> str | None:
        """The pipeline whose worker this is: how the repo service tells a pipeline's writes."""
        return self.worker.pipeline if self.worker is not None else None

    def role_on(self, kind: ResourceKind, name: str) -> int:
        """The rank of the highest role held on the resource (0: none)."""
        if self.admin:
            return _RANK["admin"]
        best = 0
        for grant in self.grants:
            if grant.resource in (f"{kind}:{name}", f"{kind}:*"):
                best = max(best, _RANK[grant.role])
        return best

    def can(self, kind: ResourceKind, name: str, role: Role) -> bool:
        if self.worker is not None:
            if kind == "repo" and role == "reader":
                return name in self.worker.read_repos or name == self.worker.output_repo
            return False  # writes are checked per commit: see can_write_commit
        return self.role_on(kind, name) >= _RANK[role]

    def can_write_commit(self, repo: str, commit: str) -> bool:
        """Whether a worker may change this commit (only its job's output and meta commits)."""
        if self.worker is None:
            return self.can("repo", repo, "writer")
        if repo != self.worker.output_repo:
            return False
        return self.worker.spout or commit in self.worker.write_commits

    def require(self, kind: ResourceKind, name: str, role: Role) -> None:
        if not self.can(kind, name, role):
            raise Forbidden(
                f"{self.name} may not do this: it needs the {role} role on {kind}:{name} "
                "(an owner or an admin grants it: tusk auth grant)"
            )

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden(f"{self.name} may not do this: it needs the admin role")


ANONYMOUS = Principal(name="anonymous", admin=True)
"""Whoever calls when authentication is off (no ``TUSK_API_TOKENS``): allowed everything."""
