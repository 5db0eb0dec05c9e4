"""AWS Signature Version 4, checked on the server side, mapped onto tusk's tokens.

An S3 client signs each request with a secret access key; the gateway recomputes the signature
with the secrets that :class:`S3Credentials` offers for the request's access key id and
accepts the request when one matches. By default (:class:`TokenCredentials`) the secret access
key *is* a tusk API token (``TUSK_API_TOKENS``) and the access key id is free (a name, for the
logs): ``aws configure`` with ``tusk`` / ``<your token>``. A verifier that keeps tokens hashed
plugs in by implementing :class:`S3Credentials`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

from tusk.errors import InvalidArgument, Unauthorized

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_PREFIX = "STREAMING-"


class S3Credentials(Protocol):
    """The secrets an access key id may have signed with; empty when it is unknown."""

    def secrets_for(self, access_key_id: str) -> Sequence[str]: ...

    @property
    def required(self) -> bool:
        """Whether requests must be signed at all (False when no tokens are configured)."""
        ...


class TokenCredentials:
    """Secret access key = one of the service's bearer tokens; any access key id."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(tokens)

    def secrets_for(self, access_key_id: str) -> Sequence[str]:
        return self._tokens

    @property
    def required(self) -> bool:
        return bool(self._tokens)


@dataclass(frozen=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(header: str) -> Authorization:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise Unauthorized(f"unsupported authorization {algorithm!r}: sign with {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    try:
        credential = fields["Credential"].split("/")
        access_key_id, date, region, service, terminal = credential
        if terminal != "aws4_request":
            raise ValueError(terminal)
        return Authorization(
            access_key_id, date, region, service,
            tuple(fields["SignedHeaders"].split(";")), fields["Signature"],
        )
    except (KeyError, ValueError):
        raise Unauthorized("malformed SigV4 Authorization header") from None


def _uri_encode(text: str, *, slash: bool) -> str:
    return quote(text, safe="-_.~" + ("/" if slash else ""))


def canonical_query(query_string: str) -> str:
    pairs = []
    for item in query_string.split("&") if query_string else []:
        key, _, value = item.partition("=")
        pairs.append((_uri_encode(unquote(key), slash=False),
                      _uri_encode(unquote(value), slash=False)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _signing_key(secret: str, auth: Authorization) -> bytes:
    return _derived_key(secret, auth.date, auth.region, auth.service)


@functools.lru_cache(maxsize=256)
def _derived_key(secret: str, date: str, region: str, service: str) -> bytes:
    """A day's signing key: four HMACs that every request of the day would repeat (clients
    cache it too)."""
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


@dataclass(frozen=True)
class SignedRequest:
    """What a verified request's body must still prove: the payload hash it announced, and
    for aws-chunked bodies the seed of the chunk signatures."""

    payload_hash: str
    signing_key: bytes | None
    seed_signature: str
    amz_date: str
    scope: str


def verify(
    credentials: S3Credentials,
    *,
    method: str,
    raw_path: str,
    query_string: str,
    headers: dict[str, str],
) -> SignedRequest | None:
    """Check the request's SigV4 signature; None when it is unsigned and none is required.
    Raises :class:`Unauthorized` (as S3's SignatureDoesNotMatch / AccessDenied)."""
    header = headers.get("authorization")
    payload_hash = headers.get("x-amz-content-sha256", UNSIGNED)
    if header is None:
        if credentials.required:
            raise Unauthorized("AccessDenied: this gateway needs SigV4-signed requests "
                               "(secret access key: a tusk API token)")
        return None
    auth = parse_authorization(header)
    amz_date = headers.get("x-amz-date") or headers.get("date", "")
    missing = [h for h in auth.signed_headers if h not in headers]
    if "host" not in auth.signed_headers or missing:
        raise Unauthorized(f"SignatureDoesNotMatch: signed headers missing: {missing or ['host']}")
    canonical_headers = "".join(
        f"{name}:{' '.join(headers[name].split())}\n" for name in auth.signed_headers
    )
    query = canonical_query(query_string)
    # Clients encode the path once (S3 does not double-encode); the raw path as sent is what
    # they signed, but some normalise it: accept either form.
    paths = dict.fromkeys((raw_path, _uri_encode(unquote(raw_path), slash=True)))
    secrets = credentials.secrets_for(auth.access_key_id) if credentials.required else ()
    if not credentials.required:
        return SignedRequest(payload_hash, None, auth.signature, amz_date, auth.scope)
    for path in paths:
        canonical = "\n".join((method, path, query, canonical_headers,
                               ";".join(auth.signed_headers), payload_hash))
        to_sign = "\n".join((ALGORITHM, amz_date, auth.scope,
                             hashlib.sha256(canonical.encode()).hexdigest()))
        for secret in secrets:
            key = _signing_key(secret, auth)
            expected = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
            if hmac.compare_digest(expected, auth.signature):
                return SignedRequest(payload_hash, key, auth.signature, amz_date, auth.scope)
    raise Unauthorized(
        "SignatureDoesNotMatch: the request signature does not match any tusk token; the "
        "secret access key must be a tusk API token"
    )


async def checked_body(
    body: AsyncIterator[bytes], signed: SignedRequest | None, headers: dict[str, str]
) -> AsyncIterator[bytes]:
    """The payload: aws-chunked bodies decoded, and an announced SHA-256 checked at the end
    (the caller stages nothing before the iterator is exhausted)."""
    announced = signed.payload_hash if signed else headers.get("x-amz-content-sha256", UNSIGNED)
    if announced.startswith(STREAMING_PREFIX) or "aws-chunked" in headers.get(
        "content-encoding", ""
    ):
        async for piece in _decode_aws_chunked(body):
            yield piece
        return
    if announced == UNSIGNED or len(announced) != 64:
        async for piece in body:
            yield piece
        return
    digest = hashlib.sha256()
    async for piece in body:
        digest.update(piece)
        yield piece
    if digest.hexdigest() != announced:
        raise InvalidArgument("XAmzContentSHA256Mismatch: the body does not match "
                              "x-amz-content-sha256; nothing was written")


async def _decode_aws_chunked(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``size[;chunk-signature=…]\\r\\n data \\r\\n … 0…\\r\\n trailers \\r\\n``.

    Chunk signatures are chained from the request's; the request itself was verified, and
    the data's integrity is the transport's here (trailing checksums are not checked).
    """
    buffer = bytearray()
    stream = body.__aiter__()

    async def fill(need: int) -> bool:
        while len(buffer) < need:
            try:
                buffer.extend(await anext(stream))
            except StopAsyncIteration:
                return False
        return True

    while True:
        while b"\r\n" not in buffer:
            if not await fill(len(buffer) + 1):
                raise InvalidArgument("IncompleteBody: aws-chunked body cut off")
        line, _, _ = bytes(buffer).partition(b"\r\n")
        del buffer[: len(line) + 2]
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise InvalidArgument("IncompleteBody: malformed aws-chunked body") from None
        if size == 0:
            return  # trailers (checksums) follow; nothing of the object's
        if not await fill(size + 2):
            raise InvalidArgument("IncompleteBody: aws-chunked body cut off")
        yield bytes(buffer[:size])
        del buffer[: size + 2]
