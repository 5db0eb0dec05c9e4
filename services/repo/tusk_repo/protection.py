"""Who may write where: output repos belong to their pipeline, protected branches move only by
merges.

Today a writer is known by how it opens a commit: the scheduler opens a job's output and meta
commits naming the job's pipeline, and its workers then write into those commits by their ids.
Every decision goes through :func:`check_open` and :func:`check_write_into`, which take the
writer, so that an identity check (a token bound to a pipeline or a role) can replace the
self-declared pipeline name without touching their callers.
"""

from __future__ import annotations

from dataclasses import dataclass

from tusk.errors import Forbidden
from tusk_repo.tables import BranchRow, CommitRow, RepoRow

PIPELINE_PREFIX = "pipeline:"
ADMIN_PREFIX = "admin: "


@dataclass(frozen=True)
class Writer:
    """Who opens a commit: a pipeline's job, an admin repairing something (with the reason,
    recorded in the commit), or anyone else (both None)."""

    pipeline: str | None = None
    admin_override: str | None = None

    def label(self) -> str | None:
        """What the commit records as its opener."""
        if self.admin_override:
            return ADMIN_PREFIX + self.admin_override
        if self.pipeline:
            return PIPELINE_PREFIX + self.pipeline
        return None


ANYONE = Writer()


def check_open(repo: RepoRow, branch: BranchRow | None, writer: Writer) -> None:
    """Refuse opening a commit on ``branch`` of ``repo`` unless ``writer`` may."""
    if writer.admin_override:
        return
    owner = repo.owner_pipeline
    if owner is not None and writer.pipeline != owner:
        raise Forbidden(
            f"repo {repo.name!r} is the output of pipeline {owner!r}: only its jobs write to it. "
            "To repair it by hand, pass an admin override with the reason "
            "(tusk put --admin-override REASON), which the commit records",
            owner_pipeline=owner,
        )
    if branch is not None and branch.protected:
        raise Forbidden(
            f"branch {branch.name!r} of repo {repo.name!r} is protected: it changes only by "
            f"merges (tusk merge {repo.name}@BRANCH --into {branch.name})",
            protected_branch=branch.name,
        )


def check_move(repo: RepoRow, branch: BranchRow) -> None:
    """Refuse pointing a protected branch at another commit by hand."""
    if branch.protected:
        raise Forbidden(
            f"branch {branch.name!r} of repo {repo.name!r} is protected: it changes only by "
            f"merges (unprotect it first: tusk branch protect {repo.name}@{branch.name} --off)",
            protected_branch=branch.name,
        )


def check_write_into(repo: RepoRow, commit: CommitRow, *, by_id: bool) -> None:
    """Refuse a write into an open commit of an output repo that its pipeline did not open, or
    one addressed by branch name rather than by the id its opener was given (so a user's
    ``repo@master`` cannot reach into a running job's commit). An admin's repair commit takes
    writes either way."""
    owner = repo.owner_pipeline
    if owner is None:
        return
    opener = commit.opened_by or ""
    if opener.startswith(ADMIN_PREFIX):
        return
    if opener == PIPELINE_PREFIX + owner and by_id:
        return
    raise Forbidden(
        f"repo {repo.name!r} is the output of pipeline {owner!r}: only its jobs write to it "
        f"(commit {commit.id} is "
        + ("a job's, written through its id" if opener else "not one its jobs opened")
        + "). To repair it by hand, open a commit with an admin override and its reason",
        owner_pipeline=owner,
    )
