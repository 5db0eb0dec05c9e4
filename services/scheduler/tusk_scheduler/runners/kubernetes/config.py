"""Where the runner's API client comes from: a kubeconfig named in the settings, else the pod's
service account, else the default kubeconfig."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from tusk_scheduler.runners.k8s_errors import KubernetesError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


async def load_api_client(kubeconfig: Path | None = None) -> tuple[client.ApiClient, str | None]:
    """An API client from ``kubeconfig``, else the pod's service account, else the default
    kubeconfig; and the namespace that configuration names, if any."""
    configuration = client.Configuration()
    namespace: str | None = None
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            pass
        else:
            with contextlib.suppress(OSError):
                namespace = (await asyncio.to_thread(IN_CLUSTER_NAMESPACE.read_text)).strip()
            return client.ApiClient(configuration=configuration), namespace or None
    try:
        await config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            client_configuration=configuration,
            persist_config=False,
        )
        _, active = config.list_kube_config_contexts(
            config_file=str(kubeconfig) if kubeconfig else None
        )
    except (ConfigException, OSError) as exc:
        where = kubeconfig or "~/.kube/config"
        raise KubernetesError(
            f"no Kubernetes configuration: not in a pod with a service account, and {where} "
            f"could not be loaded ({exc}); set TUSK_KUBECONFIG"
        ) from exc
    namespace = ((active or {}).get("context") or {}).get("namespace")
    return client.ApiClient(configuration=configuration), namespace

