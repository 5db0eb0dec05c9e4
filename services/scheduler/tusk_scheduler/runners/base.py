"""The ``Runner`` protocol: how the scheduler starts, watches and stops shards.

A shard is one worker process (or pod) running ``tusk-worker`` over a list of datums whose
spec the scheduler writes to the job's meta commit (before the start, unless the runner hands
the spec to the worker itself). The worker reports through the meta
commit, not through the runner: the runner only says whether the worker is still there and,
once it is gone, how it ended. Workers outlive the scheduler: after a restart the scheduler
asks the runner for the shards of a job that are still running and adopts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tusk.pipelines import PipelineSpec, Secret


@dataclass(frozen=True)
class ShardLaunch:
    """Everything a runner needs to start one shard's worker."""

    job: str
    pipeline: str
    shard: int
    attempt: int
    output_repo: str
    meta_commit: str
    # From the pipeline spec; the local runner ignores what it cannot use (image, resources).
    image: str | None = None
    resource_requests: Mapping[str, Any] = field(default_factory=dict)
    resource_limits: Mapping[str, Any] = field(default_factory=dict)
    # transform.env and transform.secrets: the Kubernetes runner sets them on the pod (the
    # worker passes its environment on to the pipeline's command).
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    # scheduling_spec and transform.image_pull_secrets (Kubernetes only).
    node_selector: Mapping[str, str] = field(default_factory=dict)
    priority_class_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    version: int | None = None  # the pipeline version the job runs
    # For runners that can hand these to the worker directly (the local runner), each saving it
    # a request: the shard spec as written to the meta commit, and whether the job's datums
    # have no results yet (its first start), so that there are none to look for.
    spec: str | None = None
    fresh: bool = False
    # The job's own credential for the repo service (None: it checks no tokens): the worker's
    # TUSK_TOKEN, never the scheduler's.
    token: str | None = None

    def worker_args(self) -> list[str]:
        """The ``tusk-worker`` arguments that run this shard (in a pod's args, or in a warm
        worker's assignment)."""
        return [
            "--output-repo", self.output_repo, "--meta-commit", self.meta_commit,
            "--job", self.job, "--shard", str(self.shard),
        ]  # fmt: skip
    # The pipeline keeps workers between jobs (autoscaling: false, Pachyderm's default): a
    # runner that can may hand the shard to a worker made ahead and make another for the next.
    keep_warm: bool = False


@dataclass(frozen=True)
class SpoutLaunch:
    """A spout or service pipeline that should run: its spec and version, and for a service
    the commits it serves, as (input name, repo, commit)."""

    spec: PipelineSpec
    version: int
    inputs: tuple[tuple[str, str, str], ...] = ()

    @property
    def kind(self) -> Literal["spout", "service"]:
        return "service" if self.spec.service is not None else "spout"


@dataclass(frozen=True)
class ShardHandle:
    """A started shard. ``ref`` is the runner's own name for it (a pid, a pod name)."""

    job: str
    shard: int
    attempt: int
    ref: str


@dataclass(frozen=True)
class ShardStatus:
    """``running``; ``exited`` with the worker's exit code; or ``lost``: gone without an exit
    code (killed, evicted, its node lost) — its unfinished datums must run again."""

    state: Literal["running", "exited", "lost"]
    exit_code: int | None = None
    detail: str = ""
    # A worker that could not start for a reason that another attempt would meet again (an
    # image that does not exist, a Secret that is missing): the job fails at once, not after
    # every attempt has met the same wall.
    permanent: bool = False

    @property
    def running(self) -> bool:
        return self.state == "running"


class SecretNotFound(Exception):
    """A secret, or a key of it, that a pipeline names is not where the runner keeps secrets;
    the message says where it looked."""


class Runner(Protocol):
    kind: str
    # Whether the runner hands ``ShardLaunch.spec`` to a shard's first worker itself. If not,
    # the worker reads its spec from the meta commit, so it must be there before the start;
    # if so, the scheduler writes it there once the workers are under way.
    takes_spec: bool
    # The most shards one job is split into on this runner (None: as the spec says). Each
    # shard is a worker process on the local runner, so this bounds what a job starts at once.
    max_shards: int | None

    async def start(self, launch: ShardLaunch) -> ShardHandle:
        """Start the shard's worker; returns once it is started (not finished)."""
        ...

    async def status(self, handle: ShardHandle) -> ShardStatus:
        """Whether the worker still runs, and how it ended. Cheap: called every poll."""
        ...

    async def cancel(self, handle: ShardHandle) -> None:
        """Stop the worker (politely, then by force); a worker already gone is no error."""
        ...

    async def find_running(self, job: str) -> list[ShardHandle]:
        """The job's workers that are running now, including ones a previous scheduler
        process started (re-adoption after a restart)."""
        ...

    async def output(self, handle: ShardHandle, max_bytes: int) -> str:
        """The end of the worker process's own output (not the datums' logs)."""
        ...

    async def read_secret(self, name: str, key: str) -> str:
        """One key of a secret, as the runner's workers would get it (the scheduler's own
        uses, such as an SQL egress password); ``SecretNotFound`` if there is none."""
        ...

    async def cleanup(self, job: str) -> None:
        """Remove what the job's workers left behind (scratch space, pods)."""
        ...

    async def close(self) -> None:
        """Let go of the runner's clients; running workers are left running."""
        ...
