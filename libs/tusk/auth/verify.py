"""Turning a presented token into a :class:`Principal`.

Each service has one :class:`Verifier`. The repo service's reads its own tables; the others
ask the repo service (``GET /v1/auth/whoami`` with the presented token). Both keep answers,
positive and negative, for ``TUSK_AUTH_CACHE_SECONDS``: a revoked token stops working there
within that time (at once on the repo service, which forgets its answers on every change).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx
import structlog

from tusk.auth.principal import Principal
from tusk.auth.tokens import StaticTokens, hash_token
from tusk.errors import Unavailable

log = structlog.get_logger()

_MAX_CACHED = 10_000


class Verifier(Protocol):
    @property
    def enabled(self) -> bool:
        """Whether requests need a token at all."""
        ...

    async def verify(self, token: str) -> Principal | None:
        """Who holds the token; None when it is unknown, revoked or expired."""
        ...

    async def aclose(self) -> None: ...


class CachingVerifier:
    """Static tokens first, then ``lookup`` (whose answers are kept ``ttl`` seconds)."""

    def __init__(
        self,
        static: StaticTokens,
        lookup: Callable[[str], Awaitable[Principal | None]] | None,
        ttl: float,
    ) -> None:
        self.static = static
        self._lookup = lookup
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.static)

    def forget(self) -> None:
        self._cache.clear()

    async def verify(self, token: str) -> Principal | None:
        if (principal := self.static.match(token)) is not None:
            return principal
        if self._lookup is None:
            return None
        key = hash_token(token)  # the cache holds no secret either
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self._lookup(token)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (now + self._ttl, principal)
        return principal

    async def aclose(self) -> None:
        return None


class RemoteVerifier(CachingVerifier):
    """Asks the repo service who holds a token."""

    def __init__(self, static: StaticTokens, repo_url: str, ttl: float) -> None:
        super().__init__(static, self._whoami, ttl)
        self.repo_url = repo_url.rstrip("/")
        self._http: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def _client(self) -> httpx.AsyncClient:
        async with self._lock:
            if self._http is None:
                self._http = httpx.AsyncClient(
                    base_url=self.repo_url, timeout=httpx.Timeout(10.0, connect=5.0)
                )
            return self._http

    async def _whoami(self, token: str) -> Principal | None:
        http = await self._client()
        try:
            response = await http.get(
                "/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TransportError as e:
            raise Unavailable(
                f"cannot check the token: the repo service at {self.repo_url} does not answer "
                f"({type(e).__name__}); set TUSK_REPO_URL"
            ) from e
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            raise Unavailable(
                f"cannot check the token: the repo service answered {response.status_code}"
            )
        return Principal.model_validate_json(response.content)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
