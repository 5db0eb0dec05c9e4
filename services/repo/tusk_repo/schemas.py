"""The repo API's request models, and its answers: the wire models of :mod:`tusk.wire.repo`,
which the clients read too (all kept apart from the SQL rows)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tusk.wire.base import ErrorBody
from tusk.wire.repo import NAME_SCHEMA as _NAME
from tusk.wire.repo import QUALIFIED_NAME_SCHEMA as _QUALIFIED_NAME
from tusk.wire.repo import REF_SCHEMA as _REF
from tusk.wire.repo import (
    BranchInfo,
    CommitInfo,
    CommitRef,
    DiffEntry,
    DiffResult,
    DroppedCommits,
    FileInfo,
    GcReport,
    HistoryEntry,
    MergeConflict,
    MergeInfo,
    Page,
    ProjectInfo,
    PutResult,
    RepoInfo,
    TagInfo,
)

__all__ = [
    "BranchCreate",
    "BranchInfo",
    "BranchMove",
    "CommitFinish",
    "CommitInfo",
    "CommitRef",
    "CommitRefInput",
    "CommitRefModel",
    "CommitStart",
    "DiffEntry",
    "DiffResult",
    "DroppedCommits",
    "ErrorBody",
    "FileInfo",
    "GcReport",
    "HistoryEntry",
    "LinkFile",
    "LinkRequest",
    "MergeConflict",
    "MergeInfo",
    "MergeRequest",
    "Page",
    "ProjectCreate",
    "ProjectInfo",
    "PutResult",
    "RepoCreate",
    "RepoInfo",
    "RetentionRules",
    "SquashRequest",
    "TagCreate",
    "TagInfo",
]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The name the service's code gives the wire model.
CommitRefModel = CommitRef


class CommitRefInput(CommitRef):
    """A commit in a request body, where an unknown field is refused as everywhere else."""

    model_config = ConfigDict(extra="forbid")


# PostgreSQL cannot store a NUL in text: refused here, on every backend alike.
_NO_NUL = r"^[^\x00]*$"


class ProjectCreate(Model):
    name: str = Field(
        description="1-63 letters, digits, '_' or '-'",
        examples=["vision"],
        json_schema_extra=_NAME,
    )
    description: str = Field(default="", max_length=10_000, pattern=_NO_NUL)


class RepoCreate(Model):
    name: str = Field(
        description="1-63 letters, digits, '_' or '-', optionally after its project and '/' "
        "(project 'default' when none; at most 63 characters in all)",
        examples=["raw", "vision/images"],
        json_schema_extra=_QUALIFIED_NAME,
    )
    description: str = Field(default="", max_length=10_000, pattern=_NO_NUL)
    pipeline: str | None = Field(
        default=None,
        description="The pipeline whose output repo this is: only its jobs may write to it",
    )


class BranchCreate(Model):
    name: str = Field(json_schema_extra=_NAME)
    head: str | None = Field(
        default=None,
        description="Branch or commit (with optional ^N) the branch starts at",
        json_schema_extra=_REF,
    )


class BranchMove(Model):
    head: str = Field(
        description="Branch or commit (with optional ^N) to move the head to",
        json_schema_extra=_REF,
    )


class CommitStart(Model):
    branch: str = Field(default="master", json_schema_extra=_NAME)
    description: str = Field(default="", max_length=10_000, pattern=_NO_NUL)
    provenance: list[CommitRefInput] = Field(
        default_factory=list, max_length=1000, description="Input commits this one derives from"
    )
    global_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="Id of the change this commit belongs to; default: the commit's own id",
    )
    empty: bool = Field(
        default=False,
        description="Start from no files rather than the parent's (the parent stays the "
        "parent): what a pipeline's output commit does, since a job writes its whole output",
    )
    pipeline: str | None = Field(
        default=None,
        description="The pipeline whose job opens this commit (the scheduler sets it); an "
        "output repo takes commits only from its own pipeline",
    )
    admin_override: str | None = Field(
        default=None,
        min_length=3,
        max_length=1000,
        description="Why an admin writes to a pipeline's output repo or a protected branch by "
        "hand; recorded in the commit",
    )


class CommitFinish(Model):
    error: str | None = Field(
        default=None,
        max_length=100_000,
        pattern=_NO_NUL,
        description="Finish the commit marked failed",
    )


class LinkFile(Model):
    path: str
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="Content hash of a stored file")


class LinkRequest(Model):
    files: list[LinkFile] = Field(max_length=1_000_000)


# --- data lifecycle ----------------------------------------------------------------------------


class TagCreate(Model):
    name: str = Field(description="1-63 letters, digits, '_' or '-'", examples=["v1"])
    ref: str = Field(description="The commit to name: a branch, a commit id or another tag")


class MergeRequest(Model):
    source: str = Field(description="The ref merged in: a branch, a tag or a commit id")
    into: str = Field(description="The branch that receives the merge")
    strategy: Literal["ours", "theirs"] | None = Field(
        default=None,
        description="How a path changed on both sides is resolved: keep the destination's "
        "(ours) or the source's (theirs); none: such paths are conflicts and nothing is written",
    )
    description: str = Field(default="", max_length=10_000)
    admin_override: str | None = Field(
        default=None,
        min_length=3,
        max_length=1000,
        description="Why an admin merges into a pipeline's output repo by hand",
    )


class SquashRequest(Model):
    oldest: str = Field(description="The first commit of the range (a ref)")
    newest: str = Field(description="The last commit of the range, which keeps its id")
    cascade: bool = False


class RetentionRules(Model):
    keep_days: int | None = Field(
        default=None, ge=0, description="Keep commits of non-default branches this many days"
    )
    keep_last: int | None = Field(
        default=None, ge=1, description="Keep at least this many newest commits per branch"
    )
