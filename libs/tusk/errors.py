"""One error hierarchy for every service: each error knows its HTTP status and a stable code.

Adapters translate library exceptions (botocore, asyncpg, aiokafka, Kubernetes) into these at
the boundary, so API handlers never see a library's own exception types.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TuskError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


class InvalidArgument(TuskError):
    status_code = 400
    code = "invalid_argument"


class Unauthorized(TuskError):
    status_code = 401
    code = "unauthorized"


class Forbidden(TuskError):
    """The caller may not do this: it lacks the role the request needs, or writes to a
    pipeline's output repo."""

    status_code = 403
    code = "forbidden"


class NotFound(TuskError):
    status_code = 404
    code = "not_found"


class AlreadyExists(TuskError):
    status_code = 409
    code = "already_exists"


class Conflict(TuskError):
    """The request is valid but clashes with the current state (e.g. commit already finished)."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(TuskError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(TuskError):
    status_code = 415
    code = "unsupported_media_type"


class TooManyRequests(TuskError):
    """A per-client limit is reached; the client should wait ``retry_after`` seconds."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int = 1, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class RangeNotSatisfiable(TuskError):
    status_code = 416
    code = "range_not_satisfiable"


class Unavailable(TuskError):
    """A backing service (database, object store, broker) did not answer; retrying may help.
    Answered with ``Retry-After: retry_after`` so that clients know when to try again."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class InsufficientStorage(TuskError):
    """The store has no room left for the write (disk full); nothing was half-written."""

    status_code = 507
    code = "insufficient_storage"
