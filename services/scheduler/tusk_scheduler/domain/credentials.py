"""Each job's workers get a credential of their own, never the scheduler's token.

The repo service issues it (``POST /v1/auth/worker-tokens``) for the identity
``pipeline:<name>``: it reads the job's input repos and its output repo, and writes files
only into the job's output and meta commits. It is revoked when the job ends, and expires
on its own (the job's timeout, or a week) should the revocation never come.

A spout's command (and a service pipeline's) gets one too, with no job: issued when it is
started, revoked when it is stopped or replaced, renewed well before it expires.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from tusk.client import RepoClient
from tusk.errors import TuskError
from tusk.pipelines import PipelineSpec

log = structlog.get_logger()

_MARGIN = timedelta(hours=1)
_WITHOUT_TIMEOUT = timedelta(days=7)


class _Job(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def pipeline(self) -> str: ...
    @property
    def output_repo(self) -> str: ...
    @property
    def output_commit(self) -> str | None: ...
    @property
    def meta_commit(self) -> str | None: ...


class WorkerCredentials:
    """Issues one job's credential once per execution (a restarted scheduler issues a new
    one: the old, held by workers it adopts, stays valid until the job ends)."""

    def __init__(self, repos: RepoClient, *, enabled: bool) -> None:
        self.repos = repos
        self.enabled = enabled  # without a token of its own, the repo service checks none
        self._token: str | None = None

    async def issue(self, job: _Job, spec: PipelineSpec) -> str | None:
        if not self.enabled:
            return None
        if self._token is None:
            assert job.output_commit is not None
            assert job.meta_commit is not None
            lifetime = (spec.job_timeout + _MARGIN) if spec.job_timeout else _WITHOUT_TIMEOUT
            issued = await self.repos.create_worker_token(
                job=job.id,
                pipeline=job.pipeline,
                output_repo=job.output_repo,
                read_repos=sorted({*spec.input_repos(), *spec.cron_repos()}),
                write_commits=[job.output_commit, job.meta_commit],
                expires_in_seconds=int(lifetime.total_seconds()),
            )
            self._token = issued.token
            log.info("worker credential issued", job=job.id, token_id=issued.id)
        return self._token

    async def revoke(self, job: str) -> None:
        """Revoke every credential of the job; one that cannot be revoked now expires."""
        if not self.enabled:
            return
        self._token = None
        try:
            await self.repos.revoke_worker_tokens(job)
        except TuskError as e:
            log.warning("could not revoke the job's worker credential", job=job, error=e.message)


SPOUT_LIFETIME = timedelta(days=90)
SPOUT_RENEW_BEFORE = timedelta(days=30)
"""A spout's or a service's credential is renewed (and its command started again with the new
one) once less than this is left of its life: a command that runs for months needs one that
does not run out under it."""


@dataclass(frozen=True)
class SpoutCredential:
    key: str
    """The credential's own id at the repo service (in a job's place), by which it is revoked."""
    token: str
    expires_at: datetime

    def due(self, now: datetime | None = None) -> bool:
        """Whether it is time to renew it."""
        return self.expires_at - (now or datetime.now(UTC)) < SPOUT_RENEW_BEFORE


class SpoutCredentials:
    """Credentials of spouts and service pipelines, never the scheduler's own token: a spout's
    reads its output repo and commits into it; a service's reads its inputs and output repo."""

    def __init__(self, repos: RepoClient, *, enabled: bool) -> None:
        self.repos = repos
        self.enabled = enabled  # without a token of its own, the repo service checks none

    async def issue(self, spec: PipelineSpec) -> SpoutCredential | None:
        if not self.enabled:
            return None
        key = uuid.uuid4().hex
        issued = await self.repos.create_worker_token(
            job=key,
            pipeline=spec.name,
            output_repo=spec.name,
            read_repos=sorted(spec.input_repos()) if spec.service is not None else [],
            write_commits=[],
            expires_in_seconds=int(SPOUT_LIFETIME.total_seconds()),
            spout=spec.spout is not None,
        )
        log.info(
            "spout credential issued", pipeline=spec.name, key=key, token_id=issued.id
        )  # fmt: skip
        return SpoutCredential(key, issued.token, datetime.now(UTC) + SPOUT_LIFETIME)

    async def revoke(self, key: str | None) -> None:
        """Revoke a credential; one that cannot be revoked now expires on its own."""
        if not self.enabled or key is None:
            return
        try:
            await self.repos.revoke_worker_tokens(key)
        except TuskError as e:
            log.warning("could not revoke a spout's credential", key=key, error=e.message)
