"""Every event type tusk emits. Changing a payload means a new ``.vN`` type, never an edit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator

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
    "JobCreatedV1",
    "JobDeleted",
    "JobFailed",
    "JobProgress",
    "JobStarted",
    "JobSucceeded",
    "RepoCreated",
    "RepoDeleted",
]

MAX_EVENT_TEXT = 16 * 1024
"""Characters of free text (a commit's error, a job's reason) an event carries; the rest stays
with the commit or job, so that no message a user writes can make an event unpublishable."""


def _bounded(text: str) -> str:
    if len(text) <= MAX_EVENT_TEXT:
        return text
    return text[:MAX_EVENT_TEXT] + f" … ({len(text) - MAX_EVENT_TEXT} more characters not shown)"


BoundedText = Annotated[str, AfterValidator(_bounded)]

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
    error: BoundedText | None = None


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
class JobCreatedV1(_JobEvent):
    """``job.created`` with the spec inline, as triggers wrote it before v2; still run, so
    that an upgrade loses none in flight."""

    type = "io.tusk.job.created.v1"
    version: int
    spec: dict[str, Any]
    inputs: tuple[InputCommit, ...]
    global_id: str
    output_repo: str
    output_branch: str
    created_at: datetime


@register
class JobCreated(_JobEvent):
    """A pipeline version must run on a set of input commits (exactly one job per such set).

    The spec is named, not carried: ``pipeline``, ``version`` and ``spec_digest``
    (``tusk.wire.specs.spec_digest``); the scheduler reads it by those. Every field is bounded,
    so the event fits a broker record whatever the spec holds."""

    type = "io.tusk.job.created.v2"
    version: int
    spec_digest: str
    inputs: tuple[InputCommit, ...]
    global_id: str
    output_repo: str
    output_branch: str
    created_at: datetime


@register
class JobCancel(_JobEvent):
    type = "io.tusk.job.cancel.v1"
    reason: BoundedText


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
    warning: BoundedText | None = None
    """Something the user should look at although nothing failed (say, no datums at all)."""


@register
class JobFailed(_JobEvent):
    """The job ended without success: ``killed`` when it was stopped, else it failed."""

    type = "io.tusk.job.failed.v1"
    output_commit: str | None
    reason: BoundedText
    killed: bool = False
    counts: DatumCounts
    finished_at: datetime
