"""Kubernetes API errors as tusk errors: the Kubernetes runner lets no ``ApiException`` out.

``KubeUnavailable`` is an ``Unavailable`` (the apiserver did not answer, or asked us to slow
down): the scheduler waits it out. The others will not go away by trying again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from tusk.errors import TuskError, Unavailable


class KubernetesError(TuskError):
    """The Kubernetes API refused a request of the scheduler's."""

    status_code = 502
    code = "kubernetes_error"


class KubePermissionDenied(KubernetesError):
    """The scheduler's identity lacks an RBAC permission (HTTP 403)."""

    code = "kubernetes_forbidden"


class KubeUnauthorized(KubernetesError):
    """The scheduler's credentials were not accepted (HTTP 401)."""

    code = "kubernetes_unauthorized"


class KubeInvalid(KubernetesError):
    """The apiserver rejected what we sent (HTTP 400/422): usually a bad setting or spec."""

    code = "kubernetes_invalid"


class KubeUnavailable(Unavailable):
    """The apiserver could not be reached, failed, or throttled us; worth trying again."""

    code = "kubernetes_unavailable"


def _message(exc: ApiException) -> str:
    try:
        body: Any = json.loads(exc.body) if exc.body else None
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or exc.body or exc.status)


def translate(
    exc: BaseException, *, verb: str, resource: str, namespace: str, name: str | None = None
) -> TuskError:
    """The tusk error for a failed call ``verb`` on ``resource`` (``pods``, ``pods/log``)."""
    target = f"{resource}/{name}" if name else resource
    if isinstance(exc, ApiException):
        status, detail = exc.status, _message(exc)
        if status == 403:
            return KubePermissionDenied(
                f"the scheduler's service account lacks permission {verb!r} on resource "
                f"{resource!r} in namespace {namespace!r}: grant it in the scheduler's Role "
                f"(the apiserver said: {detail})",
                verb=verb,
                resource=resource,
                namespace=namespace,
            )
        if status == 401:
            return KubeUnauthorized(
                "the Kubernetes apiserver did not accept the scheduler's credentials (check "
                f"TUSK_KUBECONFIG or the pod's service account token): {detail}"
            )
        if status in (400, 422):
            return KubeInvalid(f"Kubernetes rejected {verb} {target} in {namespace!r}: {detail}")
        if status == 429 or status is None or status >= 500:
            return KubeUnavailable(
                f"Kubernetes apiserver failed on {verb} {target} (HTTP {status}): {detail}"
            )
        return KubernetesError(
            f"Kubernetes {verb} {target} in {namespace!r} failed (HTTP {status}): {detail}",
            status=status,
        )
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return KubeUnavailable(f"Kubernetes apiserver unreachable on {verb} {target}: {exc}")
    return KubernetesError(f"Kubernetes {verb} {target} in {namespace!r} failed: {exc}")


RETRYABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
