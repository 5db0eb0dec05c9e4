"""One call to the Kubernetes API with its errors translated at the boundary, the answer read
as plain JSON (dicts, not the client's model objects: cheaper for thousands of pods)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from tusk_scheduler.runners.k8s_errors import RETRYABLE, translate


async def call_api(
    namespace: str,
    verb: str,
    resource: str,
    name: str | None,
    call: Any,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """``call(*args, **kwargs)``; the answer as a dict (a log as text); a ``KubernetesError``
    naming the verb, resource, namespace and name when it fails."""
    try:
        response = await call(*args, _preload_content=False, **kwargs)
        async with response:
            # Unread answers are not checked by the client: errors are ours to raise.
            if not 200 <= response.status < 300:
                error = ApiException(status=response.status, reason=response.reason)
                error.body = await response.text()
                raise error
            if resource == "pods/log":
                return (await response.read()).decode(errors="replace")
            return await response.json()
    except (ApiException, *RETRYABLE) as exc:
        raise translate(exc, verb=verb, resource=resource, namespace=namespace, name=name) from exc
