"""Spouts and services, the pipelines whose command runs all the time.

A spout (``spout`` and no input) runs one long-lived command that commits into
its output repo by itself (Pachyderm's spout contract: each put it makes is a commit; in Python
:func:`tusk.worker.spout.spout_commit`). The leading scheduler keeps each running spout's command
running: on the local runner as a child process here, started when the pipeline appears,
started again (after a growing pause) when it dies, restarted when the pipeline's version
changes, stopped when the pipeline is stopped or deleted; on the Kubernetes runner as a
Deployment (:mod:`.kube_spouts`), which Kubernetes restarts.

A service (``service: {internal_port: …}``) runs one long-lived command on its inputs' latest
commits, staged as a datum is (``/pfs/<input>`` in the sandbox, else ``$TUSK_PFS_ROOT/<input>``),
listening on its port; when an input branch moves, the command is stopped and started again
on the new commits (on Kubernetes, its Deployment is rolled).

When the services check tokens, each command gets a credential of its own (never the
scheduler's): a spout's commits into its output repo, a service's reads its inputs.

Which spouts and services exist is read from the trigger service every
``TUSK_SCHEDULER_SPOUT_INTERVAL`` seconds (its API is where the scheduler reads pipeline specs).
The same look tells the Kubernetes runner which pipelines may keep warm worker pods: those of a
pipeline deleted, stopped, made ``autoscaling: true`` or changed in what its pods are made of
are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import structlog

from tusk.client import RepoClient
from tusk.client.pipelines import TriggerClient
from tusk.errors import InvalidArgument, NotFound, TuskError
from tusk.paths import flat_name
from tusk.pipelines import PipelineSpec
from tusk.wire.spouts import SpoutPlace
from tusk.worker.sandbox import PFS, Sandbox, make_sandbox
from tusk_scheduler.background.kube_spouts import KubeWorkloads
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain.credentials import SpoutCredential, SpoutCredentials
from tusk_scheduler.domain.running import pipeline_launch
from tusk_scheduler.runners.base import ShardLaunch, SpoutLaunch

log = structlog.get_logger()

MIN_BACKOFF, MAX_BACKOFF = 1.0, 60.0
LOG_TAIL_BYTES = 8192  # the end of a log shown without a cursor
LOG_READ_BYTES = 1 << 20  # at most this much of what came after a cursor, per answer
STOP_GRACE = 10.0


def read_log_file(path: Path, after: str | None) -> tuple[str, str | None]:
    """A local command's log: its end, or what follows the cursor ``after`` (a byte offset
    given earlier; a log found shorter, made anew by a restart, is read from its start), and
    the cursor after what was read (none while there is no log)."""
    try:
        file = path.open("rb")
    except OSError:
        return "", None
    with file:
        size = file.seek(0, os.SEEK_END)
        if after is None:
            start = max(0, size - LOG_TAIL_BYTES)
        elif not after.isdigit():
            raise InvalidArgument(f"after={after!r} is not a log cursor this scheduler gave")
        else:
            start = int(after) if int(after) <= size else 0
        file.seek(start)
        data = file.read(min(size - start, LOG_READ_BYTES))
    if after is not None and len(data) == LOG_READ_BYTES:
        data = data[: data.rfind(b"\n") + 1] or data  # whole lines; the rest in the next read
    return data.decode(errors="replace"), str(start + len(data))


@dataclass
class _Spout:
    pipeline: str
    version: int
    process: asyncio.subprocess.Process | None = None
    log_file: IO[bytes] | None = None
    restarts: int = 0
    backoff: float = MIN_BACKOFF
    next_start: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    inputs: tuple[tuple[str, str, str], ...] = ()
    """A service's (input name, repo, commit) it was started on; () for a spout."""
    staged: Path | None = None
    credential: SpoutCredential | None = None


class SpoutSupervisor:
    def __init__(
        self,
        settings: SchedulerSettings,
        triggers: TriggerClient,
        repos: RepoClient,
        kubernetes: KubeWorkloads | None = None,
    ) -> None:
        self.settings = settings
        self.triggers = triggers
        self.repos = repos
        self.credentials = SpoutCredentials(repos, enabled=settings.token is not None)
        self.kubernetes = kubernetes
        self._sandbox: Sandbox | None = None
        self.spouts: dict[str, _Spout] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="spout supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for name in list(self.spouts):
            await self._stop(name, "the scheduler is stopping")

    def pid(self, pipeline: str) -> int | None:
        """The running command's process id (for status and tests)."""
        spout = self.spouts.get(pipeline)
        process = spout.process if spout else None
        return process.pid if process is not None and process.returncode is None else None

    async def where(
        self, pipeline: str, spec: PipelineSpec, *, after: str | None = None
    ) -> SpoutPlace:
        """Where the pipeline's command runs (for ``tusk pipeline inspect`` and ``tusk logs``),
        with the end of its log, or what it logged since the cursor ``after``."""
        kind: Literal["spout", "service"] = "service" if spec.service is not None else "spout"
        if self.kubernetes is not None:
            return await self.kubernetes.where(
                pipeline, kind, exposed=spec.exposed is not None, after=after
            )
        path = self.settings.resolved_workspace_dir / "spouts" / f"{flat_name(pipeline)}.log"
        pid = self.pid(pipeline)
        logs, cursor = read_log_file(path, after)
        return SpoutPlace(
            pipeline=pipeline,
            kind=kind,
            runner="local",
            running=pid is not None,
            where=f"process {pid} on the scheduler's machine, logging to {path}"
            if pid is not None
            else "not running now (the leading scheduler starts it within "
            f"{self.settings.spout_interval:g} s; see its log {path})",
            pid=pid,
            log_path=str(path),
            logs=logs,
            log_cursor=cursor,
        )

    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except TuskError as e:  # the trigger or the apiserver is down: look again later
                log.warning("spouts and services not reconciled; trying again", error=e.message)
            await asyncio.sleep(self.settings.spout_interval)

    async def reconcile(self) -> None:
        wanted: dict[str, tuple[int, PipelineSpec]] = {}
        keep_warm: dict[str, ShardLaunch] = {}  # pipelines whose warm worker pods may stay
        for info in await self.triggers.list_pipelines():
            if info.state != "running":
                continue
            if info.spec.get("spout") is None and info.spec.get("service") is None:
                if not info.spec.get("autoscaling"):
                    spec = PipelineSpec.model_validate(info.spec)
                    keep_warm[info.name] = pipeline_launch(spec, info.name, info.name)
                continue
            wanted[info.name] = (info.version, PipelineSpec.model_validate(info.spec))
        if self.kubernetes is not None:
            try:
                await self.kubernetes.prune_warm(keep_warm)
            except TuskError as e:  # not worth holding the spouts back for
                log.warning("warm worker pods not pruned", error=e.message)
        heads = {name: await self._heads(spec) for name, (_, spec) in wanted.items()}
        for name in list(self.spouts):
            if name not in wanted:
                await self._stop(name, "the pipeline was stopped or deleted")
            elif self.spouts[name].version != wanted[name][0]:
                await self._stop(name, "the pipeline was updated")
            elif self.spouts[name].inputs != heads[name]:
                await self._stop(name, "its input changed")
            elif (credential := self.spouts[name].credential) is not None and credential.due():
                await self._stop(name, "its credential is renewed")
        if self.kubernetes is not None:
            await self.kubernetes.reconcile(
                {
                    name: SpoutLaunch(spec, version, heads[name])
                    for name, (version, spec) in wanted.items()
                    if spec.service is None or heads[name]  # a service needs its inputs
                },
                self.credentials,
            )
            return
        now = time.monotonic()
        for name, (version, spec) in wanted.items():
            if spec.service is not None and not heads[name]:
                continue  # an input without a commit yet: nothing to serve
            spout = self.spouts.setdefault(name, _Spout(name, version, inputs=heads[name]))
            process = spout.process
            if process is not None and process.returncode is None:
                continue
            if process is not None:  # it died: say so once, then wait before starting again
                log.warning(
                    "spout exited; starting it again", pipeline=name,
                    exit_code=process.returncode, retry_in=spout.backoff,
                )  # fmt: skip
                spout.process = None
                spout.next_start = now + spout.backoff
                if now - spout.started_at > MAX_BACKOFF:  # it ran a good while: not a crash loop
                    spout.backoff = MIN_BACKOFF
                spout.backoff = min(spout.backoff * 2, MAX_BACKOFF)
                spout.restarts += 1
            if now >= spout.next_start:
                await self._start(spout, spec)

    async def _heads(self, spec: PipelineSpec) -> tuple[tuple[str, str, str], ...]:
        """A service's input commits (the heads of its input branches); () for a spout, or
        while an input has no commit."""
        if spec.service is None or spec.input is None:
            return ()
        found = []
        for pfs in spec.resolved_input().pfs_inputs():
            try:
                head = (await self.repos.inspect_branch(pfs.repo, pfs.branch)).head
            except NotFound:
                head = None
            if head is None:
                return ()
            found.append((pfs.name, pfs.repo, head))
        return tuple(sorted(set(found)))

    async def _stage(self, spout: _Spout) -> Path:
        """A service's inputs downloaded into a directory of their own: <dir>/<input>/…"""
        root = self.settings.resolved_workspace_dir / "services" / flat_name(spout.pipeline)
        shutil.rmtree(root, ignore_errors=True)
        for name, repo, commit in spout.inputs:
            (root / name).mkdir(parents=True, exist_ok=True)
            await self.repos.get_tree(repo, commit, "/", root / name)
        (root / "out").mkdir(parents=True, exist_ok=True)
        return root

    def _wrap(self, spec: PipelineSpec, root: Path, names: list[str], cwd: Path) -> list[str]:
        """A service's command in the datum sandbox (inputs at /pfs/<input>) where it can be
        made, as the workers' commands are."""
        if self._sandbox is None:
            self._sandbox = make_sandbox("auto", os.environ, cwd)
        return self._sandbox.wrap(spec.transform.cmd, root=root, inputs=names, cwd=cwd)

    async def _start(self, spout: _Spout, spec: PipelineSpec) -> None:
        directory = self.settings.resolved_workspace_dir / "spouts"
        directory.mkdir(parents=True, exist_ok=True)
        if spout.log_file is None:
            spout.log_file = (directory / f"{flat_name(spout.pipeline)}.log").open("ab")
        env = {
            **os.environ,
            **spec.transform.env,
            "TUSK_REPO_URL": self.settings.repo_url,
            "PPS_PIPELINE_NAME": spec.pipeline.name,
            "PPS_PROJECT_NAME": spec.project,
            "TUSK_PIPELINE": spec.name,
            "TUSK_OUTPUT_REPO": spec.name,
            "TUSK_OUTPUT_BRANCH": spec.output_branch,
            "TUSK_SPOUT": spec.name,
        }
        if spec.spout is not None and spec.spout.overwrite:
            env["TUSK_SPOUT_OVERWRITE"] = "true"
        if spout.credential is None and self.credentials.enabled:
            # Never the scheduler's own token (an admin's): one scoped to this pipeline.
            try:
                spout.credential = await self.credentials.issue(spec)
            except TuskError as e:
                log.warning("spout credential not issued", pipeline=spout.pipeline, error=e.message)
                spout.next_start = time.monotonic() + spout.backoff
                return
        if spout.credential is not None:
            env["TUSK_TOKEN"] = spout.credential.token
        else:
            env.pop("TUSK_TOKEN", None)
        cwd = self.settings.code_dir or Path.cwd()
        argv = list(spec.transform.cmd)
        if spec.exposed is not None:
            env["TUSK_SERVICE_PORT"] = str(spec.exposed.internal_port)
        if spec.service is not None:
            try:
                root = spout.staged = await self._stage(spout)
            except TuskError as e:
                log.warning("service inputs not staged", pipeline=spout.pipeline, error=e.message)
                spout.next_start = time.monotonic() + spout.backoff
                return
            names = [name for name, _, _ in spout.inputs]
            argv = self._wrap(spec, root, names, cwd)
            view = PFS if self._sandbox is not None and self._sandbox.active else root
            env["TUSK_PFS_ROOT"] = str(view)
            for name, _, commit in spout.inputs:
                env[name] = str(view / name)
                env[f"{name}_COMMIT"] = commit
        try:
            spout.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=spout.log_file,
                stderr=spout.log_file,
                start_new_session=True,  # stopped as a group: its children go with it
            )
        except OSError as e:
            log.warning("spout cannot start", pipeline=spout.pipeline, error=str(e))
            spout.next_start = time.monotonic() + spout.backoff
            spout.backoff = min(spout.backoff * 2, MAX_BACKOFF)
            return
        spout.started_at = time.monotonic()
        log.info(
            "service started" if spec.service else "spout started", pipeline=spout.pipeline,
            version=spout.version, pid=spout.process.pid, restarts=spout.restarts,
            inputs={name: commit for name, _, commit in spout.inputs} or None,
        )  # fmt: skip

    async def _stop(self, name: str, why: str) -> None:
        spout = self.spouts.pop(name)
        process = spout.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            log.info("spout or service stopped", pipeline=name, why=why)
        if spout.log_file is not None:
            spout.log_file.close()
        if spout.staged is not None:
            shutil.rmtree(spout.staged, ignore_errors=True)
        if spout.credential is not None:
            await self.credentials.revoke(spout.credential.key)
