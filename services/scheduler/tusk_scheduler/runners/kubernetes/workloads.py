"""The Deployments and Services of spouts and service pipelines, through the Kubernetes API
(on the runner's client and namespace), with errors translated at the boundary.

The scheduler's Role needs, besides the pods': deployments and services create, list, update,
delete (apps and core API groups).
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from tusk_scheduler.runners.k8s_errors import KubernetesError
from tusk_scheduler.runners.kubernetes.api import call_api
from tusk_scheduler.runners.kubernetes.deployments import SELECTOR
from tusk_scheduler.runners.kubernetes.runner import KubernetesRunner

_DEPLOYMENTS, _SERVICES = "deployments", "services"


class Workloads:
    def __init__(self, runner: KubernetesRunner) -> None:
        self.runner = runner
        self._apps: client.AppsV1Api | None = None

    @property
    def namespace(self) -> str:
        return self.runner.namespace

    async def _clients(self) -> tuple[client.CoreV1Api, client.AppsV1Api]:
        core = await self.runner.connect()
        if self._apps is None:
            self._apps = client.AppsV1Api(self.runner.api_client)
        return core, self._apps

    async def _call(
        self, verb: str, resource: str, name: str | None, call: Any, *args: Any, **kw: Any
    ) -> Any:
        return await call_api(self.namespace, verb, resource, name, call, *args, **kw)

    async def deployments(self) -> list[dict[str, Any]]:
        """Every spout's and service's Deployment in the namespace."""
        _, apps = await self._clients()
        listed = await self._call(
            "list", _DEPLOYMENTS, None, apps.list_namespaced_deployment, self.namespace,
            label_selector=SELECTOR,
        )  # fmt: skip
        return list(listed.get("items") or ())

    async def pods(self, selector: str) -> list[dict[str, Any]]:
        """The pods the label selector picks (a Deployment's)."""
        core, _ = await self._clients()
        listed = await self._call(
            "list", "pods", None, core.list_namespaced_pod, self.namespace,
            label_selector=selector,
        )  # fmt: skip
        return list(listed.get("items") or ())

    async def pod_log(self, pod: str, container: str, *, tail_lines: int) -> str:
        """The last ``tail_lines`` lines of a container's log, each after its timestamp
        (RFC 3339, to the nanosecond) and a space."""
        core, _ = await self._clients()
        text: str = await self._call(
            "get", "pods/log", pod, core.read_namespaced_pod_log, pod, self.namespace,
            container=container, tail_lines=tail_lines, timestamps=True,
        )  # fmt: skip
        return text

    async def services(self) -> list[dict[str, Any]]:
        core, _ = await self._clients()
        listed = await self._call(
            "list", _SERVICES, None, core.list_namespaced_service, self.namespace,
            label_selector=SELECTOR,
        )  # fmt: skip
        return list(listed.get("items") or ())

    async def apply_deployment(
        self, manifest: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Create it, or replace ``existing`` (which rolls its pods)."""
        _, apps = await self._clients()
        name = manifest["metadata"]["name"]
        if existing is None:
            try:
                created: dict[str, Any] = await self._call(
                    "create", _DEPLOYMENTS, name, apps.create_namespaced_deployment,
                    self.namespace, manifest,
                )  # fmt: skip
                return created
            except KubernetesError as exc:
                if exc.details.get("status") != 409:
                    raise
                existing = await self._call(
                    "get", _DEPLOYMENTS, name, apps.read_namespaced_deployment, name,
                    self.namespace,
                )  # fmt: skip
        assert existing is not None
        manifest["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        replaced: dict[str, Any] = await self._call(
            "update", _DEPLOYMENTS, name, apps.replace_namespaced_deployment, name,
            self.namespace, manifest,
        )  # fmt: skip
        return replaced

    async def apply_service(
        self, manifest: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        core, _ = await self._clients()
        name = manifest["metadata"]["name"]
        if existing is not None:
            # A Service's type and ports are replaced together; deleting it first keeps the
            # update free of the fields Kubernetes allocated (clusterIP, nodePorts).
            await self.delete(_SERVICES, name)
        created: dict[str, Any] = await self._call(
            "create", _SERVICES, name, core.create_namespaced_service, self.namespace, manifest
        )
        return created

    async def delete(self, resource: str, name: str) -> None:
        """Delete a Deployment (its pods go with it) or a Service; one already gone is fine."""
        core, apps = await self._clients()
        call = (
            apps.delete_namespaced_deployment
            if resource == _DEPLOYMENTS
            else core.delete_namespaced_service
        )
        try:
            await self._call(
                "delete", resource, name, call, name, self.namespace,
                propagation_policy="Background",
            )  # fmt: skip
        except KubernetesError as exc:
            if exc.details.get("status") != 404:
                raise
