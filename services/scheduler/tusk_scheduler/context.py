"""The long-lived parts of one scheduler process, built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from tusk.client import RepoClient
from tusk.client.pipelines import TriggerClient
from tusk.db import Database, migrate
from tusk.events.bus import EventBus
from tusk.events.consumer import EventConsumer
from tusk.events.factory import open_event_bus
from tusk.events.outbox import OutboxWriter
from tusk.events.relay import OutboxRelay
from tusk_scheduler.background.dispatcher import Dispatcher
from tusk_scheduler.background.kube_spouts import KubeWorkloads
from tusk_scheduler.background.leadership import Leadership
from tusk_scheduler.background.spouts import SpoutSupervisor
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain.execution import Deps
from tusk_scheduler.domain.results import ResultReader
from tusk_scheduler.events import GROUP, TOPICS, TYPES, make_handler, make_prepare
from tusk_scheduler.metrics import Metrics
from tusk_scheduler.runners.base import Runner
from tusk_scheduler.runners.local import LocalRunner
from tusk_scheduler.tables import outbox, processed_events

log = structlog.get_logger()

SOURCE = "tusk/scheduler"


@dataclass(frozen=True)
class Context:
    settings: SchedulerSettings
    db: Database
    bus: EventBus
    repos: RepoClient
    triggers: TriggerClient
    runner: Runner
    results: ResultReader
    dispatcher: Dispatcher
    leadership: Leadership
    consumer: EventConsumer
    relay: OutboxRelay
    metrics: Metrics
    spouts: SpoutSupervisor


def make_runner(settings: SchedulerSettings) -> Runner:
    if settings.runner == "local":
        return LocalRunner(
            settings.resolved_workspace_dir,
            repo_url=settings.repo_url,
            worker_command=settings.worker_command,
            cancel_grace=settings.cancel_grace,
            code_dir=settings.code_dir,
            warm_workers=settings.warm_workers,
            max_workers=settings.max_local_workers,
        )
    if settings.runner == "kubernetes":
        # Imported here: kubernetes-asyncio is only loaded by schedulers that use it.
        from tusk_scheduler.runners.kubernetes import KubernetesRunner, PodTemplate

        template = PodTemplate(
            repo_url=settings.kube_worker_repo_url or settings.repo_url,
            token_secret=settings.kube_worker_token_secret,
            default_image=settings.kube_worker_image,
            image_pull_policy=settings.kube_worker_image_pull_policy,
            worker_command=settings.worker_command or ("tusk-worker",),
            service_account=settings.kube_worker_service_account,
            node_selector=settings.kube_node_selector,
            tolerations=settings.kube_tolerations,
            image_pull_secrets=settings.kube_image_pull_secrets,
            restricted=settings.kube_restricted,
            run_as_user=settings.kube_run_as_user,
            node_lost_after=settings.kube_node_lost_after,
        )
        return KubernetesRunner(
            template,
            namespace=settings.kube_namespace,
            kubeconfig=settings.kubeconfig,
            cancel_grace=settings.cancel_grace,
            unschedulable_timeout=settings.kube_unschedulable_timeout,
            warm_pods=settings.kube_warm_pods,
            warm_port=settings.kube_warm_port,
            handover_timeout=settings.kube_warm_handover_timeout,
        )
    raise AssertionError(f"unknown runner {settings.runner!r}")  # the settings validated it


def kube_workloads(runner: Runner) -> KubeWorkloads | None:
    """Where spouts and services run on the Kubernetes runner (None: beside the local one)."""
    if runner.kind != "kubernetes":
        return None
    from tusk_scheduler.runners.kubernetes import KubernetesRunner
    from tusk_scheduler.runners.kubernetes.workloads import Workloads

    if not isinstance(runner, KubernetesRunner):  # a stand-in of the tests'
        return None
    return KubeWorkloads(Workloads(runner))


@asynccontextmanager
async def build_context(
    settings: SchedulerSettings, *, bus: EventBus | None = None, runner: Runner | None = None
) -> AsyncIterator[Context]:
    """Everything the scheduler needs, started: the relay, the dispatcher once this process
    leads (it resumes the jobs a previous process left unfinished) and the consumer. ``bus``:
    one shared with the other services of this process (the embedded mode's MemoryBus,
    closed by its owner).

    On the way out the consumer stops first, then the dispatcher (running workers are left
    alone, to be adopted by the next leader), then the relay, which publishes what is left."""
    url = settings.resolved_database_url
    if settings.migrate_on_start:
        await migrate(url)
    async with AsyncExitStack() as stack:
        db = Database.from_url(url)
        stack.push_async_callback(db.dispose)
        if bus is None:
            bus = await stack.enter_async_context(open_event_bus(settings))
        repos = await stack.enter_async_context(RepoClient(settings.repo_url, token=settings.token))
        triggers = await stack.enter_async_context(
            TriggerClient(settings.trigger_url, token=settings.token)
        )
        runner = runner or make_runner(settings)
        stack.push_async_callback(runner.close)
        if isinstance(runner, LocalRunner):
            await runner.warm_up()  # the first job need not wait for a worker's start-up
        metrics = Metrics()
        relay = OutboxRelay(
            db,
            outbox,
            bus,
            max_record_bytes=settings.max_event_bytes,
            registry=metrics.registry,
        )
        results = ResultReader(repos, log_tail_bytes=settings.log_tail_bytes)
        deps = Deps(
            settings=settings,
            db=db,
            repos=repos,
            runner=runner,
            outbox=OutboxWriter(outbox, SOURCE, on_commit=relay.wake),
            results=results,
            metrics=metrics,
        )
        dispatcher = Dispatcher(deps, max_running=settings.max_running_jobs)
        consumer = EventConsumer(
            bus,
            db,
            processed_events,
            group=GROUP,
            topics=TOPICS,
            types=TYPES,
            handler=make_handler(dispatcher.wake),
            prepare=make_prepare(db, triggers, deps.outbox, dispatcher.wake),
        )
        relay.start()
        stack.push_async_callback(relay.stop)
        spouts = SpoutSupervisor(settings, triggers, repos, kubernetes=kube_workloads(runner))

        def lead() -> None:
            dispatcher.start()
            spouts.start()

        async def step_down() -> None:
            await spouts.stop()
            await dispatcher.stop()

        leadership = Leadership(db, lead=lead, step_down=step_down)
        leadership.start()
        stack.push_async_callback(leadership.stop)
        consumer.start()
        stack.push_async_callback(consumer.stop)
        yield Context(
            settings=settings,
            db=db,
            bus=bus,
            repos=repos,
            triggers=triggers,
            runner=runner,
            results=results,
            dispatcher=dispatcher,
            leadership=leadership,
            consumer=consumer,
            relay=relay,
            metrics=metrics,
            spouts=spouts,
        )
