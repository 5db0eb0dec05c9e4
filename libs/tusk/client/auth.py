"""The repo service's ``/v1/auth`` routes, as methods of :class:`tusk.client.RepoClient`."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tusk.client.http import LazyModule, ServiceClient, params, seg

if TYPE_CHECKING:
    from tusk.auth import principal
    from tusk.auth.audit import AuditRecord  # its module imports structlog and starlette
    from tusk.auth.principal import Principal, Role
    from tusk.wire import auth as wire
    from tusk.wire.auth import AuditEntry, RoleInfo, TokenCreated, TokenInfo, WorkerTokenCreated
else:  # pydantic models: imported when an answer is first parsed
    principal = LazyModule("tusk.auth.principal")
    wire = LazyModule("tusk.wire.auth")

__all__ = [
    "AuditEntry",
    "AuthApi",
    "RoleInfo",
    "TokenCreated",
    "TokenInfo",
    "WorkerTokenCreated",
]


def __getattr__(name: str) -> Any:
    # The answers' models, named here for callers of these methods (``__all__``).
    if name in __all__ and name != "AuthApi":
        return getattr(wire, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AuthApi(ServiceClient):
    async def whoami(self, *, token: str | None = None) -> Principal:
        """Who the client's token (or ``token``) belongs to."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        response = await self._request("GET", "/v1/auth/whoami", headers=headers)
        return self._parse(principal.Principal, response)

    async def create_token(
        self, identity: str, *, description: str = "", expires_in_seconds: int | None = None
    ) -> TokenCreated:
        body = {
            "identity": identity,
            "description": description,
            "expires_in_seconds": expires_in_seconds,
        }
        response = await self._request("POST", "/v1/auth/tokens", json=body)
        return self._parse(wire.TokenCreated, response)

    async def list_tokens(
        self, *, identity: str | None = None, revoked: bool = False
    ) -> list[TokenInfo]:
        query = params(identity=identity, revoked="true" if revoked else None)
        response = await self._request("GET", "/v1/auth/tokens", params=query)
        return self._parse_list(wire.TokenInfo, response)

    async def revoke_token(self, token_id: str) -> None:
        await self._request("DELETE", f"/v1/auth/tokens/{seg(token_id)}")

    async def grant_role(self, identity: str, role: Role, resource: str | None = None) -> RoleInfo:
        body = {"identity": identity, "role": role, "resource": resource}
        return self._parse(wire.RoleInfo, await self._request("POST", "/v1/auth/roles", json=body))

    async def revoke_role(self, identity: str, resource: str | None = None) -> None:
        await self._request(
            "DELETE", "/v1/auth/roles", params=params(identity=identity, resource=resource)
        )

    async def list_roles(
        self, *, identity: str | None = None, resource: str | None = None
    ) -> list[RoleInfo]:
        response = await self._request(
            "GET", "/v1/auth/roles", params=params(identity=identity, resource=resource)
        )
        return self._parse_list(wire.RoleInfo, response)

    async def create_worker_token(
        self,
        *,
        job: str,
        pipeline: str,
        output_repo: str,
        read_repos: list[str],
        write_commits: list[str],
        expires_in_seconds: int | None = None,
        spout: bool = False,
    ) -> WorkerTokenCreated:
        """A job's workers' credential; with ``spout``, a spout's (``job`` then names the
        credential, and ``write_commits`` is empty: the spout makes its own commits)."""
        body: dict[str, object] = {
            "job": job,
            "pipeline": pipeline,
            "output_repo": output_repo,
            "read_repos": read_repos,
            "write_commits": write_commits,
        }
        if spout:
            body["spout"] = True
        if expires_in_seconds is not None:
            body["expires_in_seconds"] = expires_in_seconds
        response = await self._request("POST", "/v1/auth/worker-tokens", json=body)
        return self._parse(wire.WorkerTokenCreated, response)

    async def revoke_worker_tokens(self, job: str) -> None:
        await self._request("DELETE", f"/v1/auth/worker-tokens/{seg(job)}")

    async def record_audit(self, record: AuditRecord) -> None:
        """Add an entry to the audit log (services record their own writes so)."""
        await self._request("POST", "/v1/auth/audit", json=dataclasses.asdict(record))

    async def audit(
        self,
        *,
        identity: str | None = None,
        resource: str | None = None,
        since: datetime | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        query = params(
            identity=identity,
            resource=resource,
            since=since.isoformat() if since else None,
            before=before,
            limit=limit,
        )
        return self._parse_list(
            wire.AuditEntry, await self._request("GET", "/v1/auth/audit", params=query)
        )
