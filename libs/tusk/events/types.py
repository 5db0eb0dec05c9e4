"""Every event type tusk emits. Changing a payload means a new ``.vN`` type, never an edit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tusk.events.envelope import EventData, register
from tusk.wire.jobs import DatumCounts, InputCommit
from tusk.wire.repo import CommitRef

__all__ = [
    "COMMITS_TOPIC",
    "DLQ_TOPIC",
    "JOBS_TOPIC",
    "REPOS_TOPIC",
    "TOPICS",
    "BranchMoved",
    "CommitFinished",
    "CommitRef",
    "CommitStarted",
    "DatumCounts",
    "InputCommit",
    "JobCancel",
    "JobCreated",
    "JobDeleted",
    "JobFailed",
    "JobProgress",
    "JobStarted",
    "JobSucceeded",
    "RepoCreated",
    "RepoDeleted",
]

REPOS_TOPIC = "tusk.repos"
COMMITS_TOPIC = "tusk.commits"
JOBS_TOPIC = "tusk.jobs"
DLQ_TOPIC = "tusk.dlq"
TOPICS = (REPOS_TOPIC, COMMITS_TOPIC, JOBS_TOPIC)


@register
class RepoCreated(EventData):
    type = "io.tusk.repo.created.v1"
    topic = REPOS_TOPIC
    repo: str
    created_at: datetime

    def key(self) -> str:
        return self.repo


@register
class RepoDeleted(EventData):
    type = "io.tusk.repo.deleted.v1"
    topic = REPOS_TOPIC
    repo: str

    def key(self) -> str:
        return self.repo


class _CommitEvent(EventData):
    topic = COMMITS_TOPIC
    repo: str
    commit: str
    branch: str | None
    parent: str | None
    global_id: str
    provenance: tuple[CommitRef, ...] = ()

    def key(self) -> str:
        return self.repo

    def subject(self) -> str:
        return f"{self.repo}@{self.commit}"


@register
class CommitStarted(_CommitEvent):
    type = "io.tusk.commit.started.v1"
    started_at: datetime


@register
class CommitFinished(_CommitEvent):
    type = "io.tusk.commit.finished.v1"
    finished_at: datetime
    size_bytes: int
    file_count: int
    error: str | None = None


@register
class BranchMoved(EventData):
    type = "io.tusk.branch.moved.v1"
    topic = COMMITS_TOPIC
    repo: str
    branch: str
    head: str | None
    previous: str | None

    def key(self) -> str:
        return self.repo

    def subject(self) -> str:
        return f"{self.repo}@{self.branch}"


# --- jobs: emitted by the trigger (created, cancel) and the scheduler (the rest) -------------


class _JobEvent(EventData):
    topic = JOBS_TOPIC
    job: str
    pipeline: str

    def key(self) -> str:
        return self.pipeline

    def subject(self) -> str:
        return f"{self.pipeline}/{self.job}"


@register
class JobCreated(_JobEvent):
    """A pipeline version must run on a set of input commits (exactly one job per such set)."""

    type = "io.tusk.job.created.v1"
    version: int
    spec: dict[str, Any]
    inputs: tuple[InputCommit, ...]
    global_id: str
    output_repo: str
    output_branch: str
    created_at: datetime


@register
class JobCancel(_JobEvent):
    type = "io.tusk.job.cancel.v1"
    reason: str


@register
class JobDeleted(_JobEvent):
    """An ended job was deleted with its output commit: what it processed no longer counts
    as processed (its outputs are gone), and its execution records go."""

    type = "io.tusk.job.deleted.v1"
    output_commit: str | None


@register
class JobStarted(_JobEvent):
    type = "io.tusk.job.started.v1"
    output_commit: str
    counts: DatumCounts
    started_at: datetime


@register
class JobProgress(_JobEvent):
    type = "io.tusk.job.progress.v1"
    counts: DatumCounts


@register
class JobSucceeded(_JobEvent):
    type = "io.tusk.job.succeeded.v1"
    output_commit: str
    counts: DatumCounts
    finished_at: datetime
    warning: str | None = None
    """Something the user should look at although nothing failed (say, no datums at all)."""


@register
class JobFailed(_JobEvent):
    """The job ended without success: ``killed`` when it was stopped, else it failed."""

    type = "io.tusk.job.failed.v1"
    output_commit: str | None
    reason: str
    killed: bool = False
    counts: DatumCounts
    finished_at: datetime
