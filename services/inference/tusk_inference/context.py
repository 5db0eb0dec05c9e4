"""The long-lived parts of one inference process, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from tusk.client.repo import RepoClient
from tusk.events.bus import EventBus
from tusk.events.factory import open_event_bus
from tusk_inference.config import InferenceSettings
from tusk_inference.domain.registry import Registry
from tusk_inference.domain.runtime_models import RuntimeModels
from tusk_inference.events import CommitWatcher
from tusk_inference.metrics import Metrics
from tusk_inference.service import ModelService

log = structlog.get_logger()


@dataclass(frozen=True)
class Context:
    settings: InferenceSettings
    registry: Registry
    service: ModelService
    metrics: Metrics
    repos: RepoClient
    bus: EventBus
    runtime_models: RuntimeModels
    changing_models: asyncio.Lock = field(default_factory=asyncio.Lock)


@asynccontextmanager
async def build_context(
    settings: InferenceSettings,
    *,
    bus: EventBus | None = None,
    repos: RepoClient | None = None,
) -> AsyncIterator[Context]:
    """``bus``: one shared by the services of this process (embedded mode); ``repos``: a client
    of an in-process repo service (tests). Otherwise its own, from the settings.

    On exit: stop following the branches, then let queued batches finish.
    """
    async with AsyncExitStack() as stack:
        if bus is None:
            bus = await stack.enter_async_context(open_event_bus(settings))
        if repos is None:
            repos = await stack.enter_async_context(
                RepoClient(settings.repo_url, token=settings.token)
            )
        work_dir = Path(tempfile.mkdtemp(prefix="tusk-inference-"))
        stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
        metrics = Metrics()
        runtime_models = RuntimeModels(settings.resolved_models_state)
        configured = settings.all_models()
        names = {spec.name for spec in configured}
        added = []
        for spec in runtime_models.load():
            if spec.name in names:
                log.warning("a model added at runtime is now configured in the settings; "
                            "the settings win", model=spec.name)
                continue
            added.append(spec)
        registry = Registry((*configured, *added), settings.max_versions)
        service = ModelService(settings, repos, registry, metrics, work_dir)
        watcher = CommitWatcher(bus, service)
        # Subscribed before the heads are read, so that no commit falls in between.
        await watcher.start()
        stack.push_async_callback(service.stop, settings.drain_seconds)
        stack.push_async_callback(watcher.stop)
        service.start()
        yield Context(settings, registry, service, metrics, repos, bus, runtime_models)
