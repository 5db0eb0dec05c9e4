"""The watch on the worker pods of one namespace, and the cache it keeps.

One watch per runner follows every worker pod in the namespace (resuming from the last
resource version, listing again when the apiserver answers 410 Gone) into a cache that the
runner's ``status()`` reads: polling a thousand shards costs no API calls. Pods deleted while
watched keep their last state for a while (bounded), so a shard whose pod is gone can still
say how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from tusk.errors import TuskError
from tusk_scheduler.runners.k8s_errors import translate
from tusk_scheduler.runners.kubernetes.api import call_api
from tusk_scheduler.runners.kubernetes.manifest import MANAGED_BY, MANAGER

log = structlog.get_logger()

WATCH_TIMEOUT = 240  # seconds the apiserver keeps one watch open; then we resume
MAX_TOMBSTONES = 10_000


class PodWatch:
    def __init__(
        self, core: client.CoreV1Api, namespace: str, *, on_gone: Callable[[str], object]
    ) -> None:
        self.core = core
        self.namespace = namespace
        self._on_gone = on_gone  # told the name of each pod that leaves the cache
        # Pod name -> pod (a dict as the API sends it).
        self.pods: dict[str, dict[str, Any]] = {}
        # Pods deleted while watched: their last state (bounded).
        self.gone: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.relists = 0  # how often the watch had to list again (410 Gone, errors)
        self._synced = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tusk-kube-watch")

    async def wait_synced(self) -> None:
        """Return once the cache holds a full list; raise what keeps the watch from one."""
        await self._synced.wait()
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def seen(self, name: str, pod: dict[str, Any]) -> None:
        """A pod the runner created or read itself, ahead of its watch event."""
        self.pods.setdefault(name, pod)

    async def _run(self) -> None:
        """List, then watch from the list's resource version; list again on 410 Gone."""
        selector = f"{MANAGED_BY}={MANAGER}"
        backoff = 0.2
        while True:
            try:
                if self.resource_version is None:
                    await self._relist(selector)
                stream = Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=selector,
                    resource_version=self.resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_TIMEOUT,
                )
                async with stream:
                    async for event in stream:
                        self.apply(event["type"], event["raw_object"])
                        backoff = 0.2
            except asyncio.CancelledError:
                raise
            except (ApiException, TuskError) as exc:
                if isinstance(exc, ApiException) and exc.status == 410:
                    # Our resource version is too old: start over from a list.
                    log.info("pod watch expired; listing again", namespace=self.namespace)
                    self.resource_version = None
                    continue
                self._error = (
                    exc
                    if isinstance(exc, TuskError)
                    else translate(exc, verb="watch", resource="pods", namespace=self.namespace)
                )
                log.warning("pod watch failed", error=str(self._error))
                self._synced.set()  # wake waiters: they raise the error
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # a watch that stopped would hang every job
                log.warning("pod watch interrupted; resuming", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _relist(self, selector: str) -> None:
        listed = await call_api(
            self.namespace,
            "list",
            "pods",
            None,
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
        )
        self.relists += 1
        fresh = {p["metadata"]["name"]: p for p in listed.get("items") or ()}
        for name, pod in self.pods.items():
            if name not in fresh:
                self.bury(name, pod)
        self.pods = fresh
        self.resource_version = listed["metadata"]["resourceVersion"]
        self._error = None
        self._synced.set()

    def apply(self, kind: str, pod: dict[str, Any]) -> None:
        """One watch event into the cache."""
        version = pod.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        if kind == "ERROR":  # the library raises 410s; anything else: list again
            self.resource_version = None
            raise ApiException(status=pod.get("code"), reason=pod.get("message"))
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            self.pods.pop(name, None)
            self.bury(name, pod)
        else:
            self.pods[name] = pod

    def bury(self, name: str, pod: dict[str, Any]) -> None:
        self.gone[name] = pod
        self._on_gone(name)
        while len(self.gone) > MAX_TOMBSTONES:
            self.gone.pop(next(iter(self.gone)))
