"""Turning a presented token into a :class:`Principal`.

Each service has one :class:`Verifier`. The repo service's reads its own tables; the others
ask the repo service (``GET /v1/auth/whoami`` with the presented token). Both keep answers,
positive and negative, for ``TUSK_AUTH_CACHE_SECONDS``: a revoked token stops working there
within that time (at once on the repo service, which forgets its answers on every change).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import structlog

from tusk.auth.principal import Principal
from tusk.auth.tokens import StaticTokens, hash_token
from tusk.client.auth import AuthApi
from tusk.errors import TuskError, Unauthorized, Unavailable

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
    """Asks the repo service who holds a token, through the service's own repo client."""

    def __init__(self, static: StaticTokens, client: Callable[[], AuthApi], ttl: float) -> None:
        super().__init__(static, self._whoami, ttl)
        self._client = client

    async def _whoami(self, token: str) -> Principal | None:
        try:
            return await self._client().whoami(token=token)
        except Unauthorized:
            return None
        except TuskError as e:
            if isinstance(e, Unavailable):
                raise
            raise Unavailable(f"cannot check the token with the repo service: {e.message}") from e


def remote_verifier(
    tokens: Iterable[str], client: Callable[[], AuthApi], ttl: float
) -> RemoteVerifier:
    """The verifier of a service other than the repo service; ``client``: its repo client
    (looked up when a token is first checked, as it is made in the app's lifespan)."""
    return RemoteVerifier(StaticTokens(tokens), client, ttl)
