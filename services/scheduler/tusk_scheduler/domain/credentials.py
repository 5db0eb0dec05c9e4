"""Each job's workers get a credential of their own, never the scheduler's token.

The repo service issues it (``POST /v1/auth/worker-tokens``) for the identity
``pipeline:<name>``: it reads the job's input repos and its output repo, and writes files
only into the job's output and meta commits. It is revoked when the job ends, and expires
on its own (the job's timeout, or a week) should the revocation never come.
"""

from __future__ import annotations

from datetime import timedelta
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
