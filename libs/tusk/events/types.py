"""Every event type tusk emits. Changing a payload means a new ``.vN`` type, never an edit."""

from __future__ import annotations

from datetime import datetime

from tusk.events.envelope import EventData, register

REPOS_TOPIC = "tusk.repos"
COMMITS_TOPIC = "tusk.commits"
JOBS_TOPIC = "tusk.jobs"
DLQ_TOPIC = "tusk.dlq"
TOPICS = (REPOS_TOPIC, COMMITS_TOPIC, JOBS_TOPIC)


class CommitRef(EventData):
    """A commit named by its repo and id (not itself an event)."""

    repo: str
    commit: str


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
