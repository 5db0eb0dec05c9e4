"""The repo service's verifier (static tokens, then its own token table) and audit sink."""

from __future__ import annotations

from fastapi import FastAPI

from tusk.auth.audit import AuditRecord, Sink
from tusk.auth.principal import Principal
from tusk.auth.tokens import StaticTokens
from tusk.auth.verify import CachingVerifier
from tusk_repo import access
from tusk_repo.config import RepoSettings


def repo_verifier(app: FastAPI, settings: RepoSettings) -> CachingVerifier:
    async def lookup(token: str) -> Principal | None:
        async with app.state.context.db.session(write=False) as session:
            return await access.principal_for(session, token)

    return CachingVerifier(StaticTokens(settings.api_tokens), lookup, settings.auth_cache_seconds)


def audit_sink(app: FastAPI) -> Sink:
    async def record(entry: AuditRecord) -> None:
        async with app.state.context.db.session() as session:
            await access.record(
                session,
                identity=entry.identity,
                action=entry.action,
                target=entry.target,
                resource=entry.resource,
                status=entry.status,
                request_id=entry.request_id,
            )

    return record
