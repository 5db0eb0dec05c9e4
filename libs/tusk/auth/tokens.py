"""Bearer tokens: how they are made, stored (hashed) and compared (in constant time).

A token reads ``tusk_<id>_<secret>``: the id finds its row, the secret (256 random bits) is
checked against the stored SHA-256 of the whole token with :func:`hmac.compare_digest`. A fast
hash is enough: the secret is random, not a password, so there is nothing to guess offline
that a slow hash would protect (GitHub stores its tokens the same way).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from tusk.auth.principal import Principal

_TOKEN_RE = re.compile(r"^tusk_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")


def new_token() -> tuple[str, str]:
    """A new token and its id."""
    token_id = secrets.token_hex(8)
    return f"tusk_{token_id}_{secrets.token_urlsafe(32)}", token_id


def token_id_of(token: str) -> str | None:
    """The id of a token of ours, or None for anything else (a static token)."""
    match = _TOKEN_RE.fullmatch(token)
    return match[1] if match else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class StaticTokens:
    """The tokens of ``TUSK_API_TOKENS``: each is an administrator (services and operators).
    Only their hashes are kept, and every one is compared, so the time taken says nothing
    about which one (if any) matched."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._hashes = [hash_token(t) for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._hashes)

    def match(self, token: str) -> Principal | None:
        presented = hash_token(token)
        found: int | None = None
        for n, known in enumerate(self._hashes):
            if same_hash(presented, known) and found is None:
                found = n
        if found is None:
            return None
        return Principal(name=f"admin-token-{found + 1}", admin=True)
