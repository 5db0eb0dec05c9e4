"""Keeping each model's served version in step with its branch.

For every model, the newest commit wanted (from start-up, an event or a periodic check of the
branch head) is loaded by one loader task per model: the file is fetched through the repo API,
loaded and warmed in a worker thread, its lineage traced, and only then swapped in. Commits
that arrive while a load runs replace each other: only the newest one is loaded next.

A commit finished with an error is never loaded. A model file that onnxruntime refuses (or
that is missing from the commit) fails that commit for good: the previous version keeps
serving and the failure shows in the model's metadata, the log and
``tusk_inference_reload_failures``. An unreachable repo service is retried with back-off until
it answers or a newer commit supersedes the one being loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from tusk.client.models import CommitInfo
from tusk.client.repo import RepoClient
from tusk.errors import NotFound, TuskError, Unavailable
from tusk.events.types import BranchMoved, CommitFinished
from tusk_inference.config import InferenceSettings
from tusk_inference.domain.engine import Engine, EngineOptions, ModelLoadError
from tusk_inference.domain.lineage import Lineage, upstream
from tusk_inference.domain.registry import LoadFailure, Registry, Slot, Version
from tusk_inference.domain.runner import Runner
from tusk_inference.domain.specs import ModelSpec
from tusk_inference.metrics import Metrics

log = structlog.get_logger()

MAX_FAILED_PARENTS = 20  # at start-up, how far back past failed commits to look for a model
RETRY_MAX_SECONDS = 30.0
REMEMBERED_OUTCOMES = 100


class ModelService:
    def __init__(
        self,
        settings: InferenceSettings,
        repos: RepoClient,
        registry: Registry,
        metrics: Metrics,
        work_dir: Path,
    ) -> None:
        self.settings = settings
        self.repos = repos
        self.registry = registry
        self.metrics = metrics
        self.work_dir = work_dir
        self._wanted: dict[str, str] = {}
        self._loaders: dict[str, asyncio.Task[None]] = {}
        # Commits already decided per model (failed or skipped), so that neither the
        # branch.moved that follows each commit.finished nor a resync loads them again.
        self._settled: dict[str, OrderedDict[str, str]] = {
            name: OrderedDict() for name in registry.slots
        }
        self._wants = dict.fromkeys(registry.slots, 0)  # calls of want() so far, per model
        self._resync: asyncio.Task[None] | None = None
        self._stopping = False
        self._changed = asyncio.Event()  # replaced on each change; waiters hold the old one
        self._adding: set[asyncio.Task[None]] = set()

    # --- what to load ------------------------------------------------------------------------

    def start(self) -> None:
        """Load each model's branch head now, and check the heads again periodically."""
        self._resync = asyncio.create_task(self._resync_loop(), name="inference resync")

    def on_commit_finished(self, event: CommitFinished) -> None:
        for slot in self._slots_of(event.repo, event.branch):
            if event.error is not None:
                self._settle(slot, event.commit, "failed commit")
                log.info(
                    "not loading a failed commit",
                    model=slot.name,
                    commit=event.commit,
                    commit_error=event.error,
                )
                continue
            self.want(slot, event.commit)

    def on_branch_moved(self, event: BranchMoved) -> None:
        # Also after every finished commit; only a move elsewhere (a rollback) adds anything.
        if event.head is None:
            return
        for slot in self._slots_of(event.repo, event.branch):
            self.want(slot, event.head)

    def _slots_of(self, repo: str, branch: str | None) -> list[Slot]:
        return [
            s
            for s in self.registry.slots.values()
            if s.spec.repo == repo and s.spec.branch == branch
        ]

    def want(self, slot: Slot, commit: str) -> None:
        """Make ``commit`` the model's served version as soon as it is loaded."""
        if self.registry.slots.get(slot.name) is not slot:  # removed or replaced meanwhile
            return
        if self._stopping or commit in self._settled[slot.name]:
            return
        if slot.latest is not None and slot.latest.commit == commit:
            return
        if slot.has(commit):  # back to a version still in memory (the branch moved back)
            self._install(slot, slot.versions[commit], reused=True)
            return
        self._wants[slot.name] += 1
        if slot.loading == commit:  # on its way already
            return
        self._wanted[slot.name] = commit
        if slot.name not in self._loaders:
            self._loaders[slot.name] = asyncio.create_task(
                self._loader(slot), name=f"inference loader {slot.name}"
            )

    async def sync_head(self, slot: Slot) -> None:
        """Want the newest commit of the model's branch that did not fail."""
        spec = slot.spec
        # An event that arrives while the head is being read is newer than what we read.
        wants = self._wants.get(slot.name)
        try:
            info: CommitInfo | None = await self.repos.inspect_commit(spec.repo, spec.branch)
        except NotFound:
            if slot.latest is None:
                log.info("no model to load yet", model=slot.name, source=spec.source)
            return
        for _ in range(MAX_FAILED_PARENTS):
            if info is None or info.error is None:
                break
            self._settle(slot, info.id, "failed commit")
            info = await self.repos.inspect_commit(spec.repo, info.parent) if info.parent else None
        if info is not None and info.error is None and self._wants.get(slot.name) == wants:
            self.want(slot, info.id)

    async def _resync_loop(self) -> None:
        """Read the heads now, again whenever one could not be read (with back-off: at
        start-up the repo service may not be listening yet), else every resync_seconds."""
        delay = 0.5
        while True:
            failed = False
            for slot in list(self.registry.slots.values()):
                try:
                    await self.sync_head(slot)
                except TuskError as e:
                    failed = True
                    log.warning(
                        "cannot check the model's branch",
                        model=slot.name,
                        source=slot.spec.source,
                        error=e.message,
                        retry_in=delay,
                    )
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.resync_seconds)
            else:
                delay = 0.5
                await asyncio.sleep(self.settings.resync_seconds)

    # --- loading -----------------------------------------------------------------------------

    async def _loader(self, slot: Slot) -> None:
        try:
            while (commit := self._wanted.pop(slot.name, None)) is not None:
                slot.loading = commit
                try:
                    await self._load_until_done(slot, commit)
                finally:
                    slot.loading = None
        finally:
            self._loaders.pop(slot.name, None)

    async def _load_until_done(self, slot: Slot, commit: str) -> None:
        delay = 0.5
        while True:
            try:
                await self._load(slot, commit)
                return
            except Unavailable as e:
                if slot.name in self._wanted:  # superseded by a newer commit
                    return
                log.warning(
                    "cannot fetch the model; retrying",
                    model=slot.name,
                    commit=commit,
                    error=e.message,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except (ModelLoadError, TuskError) as e:
                message = e.message if isinstance(e, TuskError) else str(e)
                self._fail(slot, commit, message)
                return

    async def _load(self, slot: Slot, commit: str) -> None:
        spec = slot.spec
        started = time.perf_counter()
        info = await self.repos.inspect_commit(spec.repo, commit)
        if info.error is not None:
            self._settle(slot, commit, "failed commit")
            log.info("not loading a failed commit", model=slot.name, commit=commit)
            return
        try:
            stat = await self.repos.stat(spec.repo, commit, spec.path)
        except NotFound:
            raise ModelLoadError(
                f"commit {commit} of {spec.repo} has no file {spec.path}"
            ) from None
        if stat.type != "file":
            raise ModelLoadError(f"{spec.path} in commit {commit} of {spec.repo} is a directory")
        runner = slot.runner_for(stat.hash)
        if runner is None:
            path = await self._download(slot, commit, stat.size_bytes)
            try:
                engine = await asyncio.to_thread(
                    Engine.load, path, stat.hash, self._engine_options(slot)
                )
            finally:
                path.unlink(missing_ok=True)
            metrics = self.metrics.model(slot.name)
            runner = Runner(
                engine,
                name=slot.name,
                max_rows=self.settings.max_batch_size,
                max_delay=self.settings.max_batch_delay_ms / 1000,
                queue_limit=self.settings.queue_limit,
                observer=metrics,
            )
        lineage = Lineage(
            model_repo=spec.repo,
            model_branch=spec.branch,
            model_path=spec.path,
            model_commit=commit,
            global_id=info.global_id,
            data_commits=await upstream(self.repos, info),
        )
        version = Version(spec, commit, runner, lineage, datetime.now(UTC))
        if self._stopping:
            return
        self._install(slot, version)
        engine = runner.engine
        log.info(
            "model version loaded",
            model=slot.name,
            commit=commit,
            mode=engine.mode,
            warm_latency_ms=round(engine.latency * 1000, 3),
            size_bytes=engine.size_bytes,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _install(self, slot: Slot, version: Version, *, reused: bool = False) -> None:
        previous = slot.latest
        slot.install(version)
        slot.last_failure = None
        metrics = self.metrics.model(slot.name)
        metrics.versions.set(len(slot.versions))
        if previous is not None:
            with contextlib.suppress(KeyError):
                self.metrics.serving.remove(slot.name, previous.commit)
        self.metrics.serving.labels(slot.name, version.commit).set(1)
        self._notify()
        if not reused:
            metrics.reloads.inc()
        else:
            log.info("serving a loaded version again", model=slot.name, commit=version.commit)

    async def _download(self, slot: Slot, commit: str, size: int) -> Path:
        """The model file, streamed to a private temporary file (never whole in memory)."""
        spec = slot.spec
        path = self.work_dir / f"{slot.name}-{commit}.onnx"
        written = 0
        async with await anyio.open_file(path, "wb") as out:
            async for piece in self.repos.get_file(spec.repo, commit, spec.path):
                await out.write(piece)
                written += len(piece)
        if written != size:
            path.unlink(missing_ok=True)
            raise Unavailable(f"{spec.path} was cut off after {written} of {size} bytes")
        return path

    def _engine_options(self, slot: Slot) -> EngineOptions:
        return EngineOptions(
            threads=self.settings.ort_threads,
            warmup_runs=self.settings.warmup_runs,
            batching=slot.spec.batching or self.settings.batching,
            inline_max_seconds=self.settings.inline_max_ms / 1000,
        )

    def _fail(self, slot: Slot, commit: str, error: str) -> None:
        self._settle(slot, commit, error)
        slot.last_failure = LoadFailure(commit, error, datetime.now(UTC))
        self.metrics.model(slot.name).reload_failures.inc()
        self._notify()
        serving = slot.latest.commit if slot.latest else None
        log.error(
            "cannot load the model version; the previous one keeps serving"
            if serving
            else "cannot load the model version",
            model=slot.name,
            commit=commit,
            error=error,
            serving=serving,
        )

    def _settle(self, slot: Slot, commit: str, outcome: str) -> None:
        settled = self._settled.get(slot.name)
        if settled is None:  # the model was removed meanwhile
            return
        settled[commit] = outcome
        while len(settled) > REMEMBERED_OUTCOMES:
            settled.popitem(last=False)

    # --- models added and removed at runtime -------------------------------------------------

    def add_model(self, spec: ModelSpec) -> Slot:
        """Serve a new model (or a new source under a served name): its branch head is loaded
        at once, then its new commits as they finish."""
        if spec.name in self.registry.slots:
            self.remove_model(spec.name)
        slot = Slot(spec, self.settings.max_versions)
        self.registry.slots[spec.name] = slot
        self._settled[spec.name] = OrderedDict()
        self._wants[spec.name] = 0
        task = asyncio.create_task(self._first_sync(slot), name=f"inference add {spec.name}")
        self._adding.add(task)
        task.add_done_callback(self._adding.discard)
        self._notify()
        log.info("model added", model=spec.name, source=spec.source)
        return slot

    async def _first_sync(self, slot: Slot) -> None:
        try:
            await self.sync_head(slot)
        except TuskError as e:  # the resync loop tries again
            log.warning("cannot check the model's branch", model=slot.name, error=e.message)

    def remove_model(self, name: str) -> None:
        """Stop serving a model: requests already running on it finish, new ones get 404."""
        self.registry.slot(name)  # NotFound, naming the served ones
        del self.registry.slots[name]
        self._wanted.pop(name, None)
        loader = self._loaders.pop(name, None)
        if loader is not None:
            loader.cancel()
        self._settled.pop(name, None)
        self._wants.pop(name, None)
        self._notify()
        log.info("model removed", model=name)

    # --- shutdown ----------------------------------------------------------------------------

    async def stop(self, drain_seconds: float) -> None:
        """Stop loading, then let queued batches finish (up to ``drain_seconds``)."""
        self._stopping = True
        tasks = [
            t for t in (self._resync, *self._loaders.values(), *self._adding) if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        runners = {
            id(v.runner): v.runner
            for slot in self.registry.slots.values()
            for v in slot.versions.values()
        }
        with anyio.move_on_after(drain_seconds) as scope:
            await asyncio.gather(*(r.wait_idle() for r in runners.values()))
        if scope.cancelled_caught:
            log.warning("batches still queued at shutdown were cut off", after=drain_seconds)

    async def wait_loaded(self) -> None:
        """Until every model serves a version (wrap it in a timeout)."""
        while not self.registry.ready:
            await self.changed()

    async def changed(self) -> None:
        """Until the next version is installed or the next load fails."""
        await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
