"""One mapping, for every service, from a backend's failure to the answer a client can act on.

A database, object store or broker that is down, restarting or locked is not the caller's
fault and usually passes: it answers ``503`` with ``Retry-After``, so that clients (ours retry
them) try again instead of giving up on a ``500``. A full disk answers ``507``. A value the
database refuses to store (a NUL in text on PostgreSQL, an integer out of range) is the
caller's: ``400``.
"""

from __future__ import annotations

import errno

from sqlalchemy import exc as sa_exc

from tusk.errors import InsufficientStorage, InvalidArgument, TuskError, Unavailable

# Seconds a client is asked to wait: a restarting PostgreSQL or a lock holder is usually gone
# within a few seconds, and clients back off further on their own.
RETRY_AFTER_SECONDS = 2

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_DATA_SQLSTATES = ("22",)  # PostgreSQL's "data exception" class
# Connection exceptions, insufficient resources (too many connections), operator intervention
# (shutting down, starting up), and transaction rollbacks (serialization, deadlock): each
# passes, so the request may be tried again.
_TRANSIENT_SQLSTATES = ("08", "53", "57P", "40001", "40P01")


def translate_backend_error(exc: BaseException) -> TuskError | None:
    """The :class:`TuskError` to answer for a backend's exception, or None if it is a bug."""
    if isinstance(exc, TuskError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return InsufficientStorage(
            f"no space left to store the data ({exc.strerror}); nothing was written"
        )
    if isinstance(exc, sa_exc.TimeoutError):
        return Unavailable(
            "the database did not hand out a connection in time; retry shortly",
            retry_after=RETRY_AFTER_SECONDS,
        )
    if isinstance(exc, sa_exc.DBAPIError):
        return _from_dbapi(exc)
    if _is_asyncpg_connection_error(exc) or isinstance(
        exc, ConnectionError | TimeoutError | sa_exc.ResourceClosedError
    ):
        return Unavailable(
            f"a backend did not answer ({type(exc).__name__}); retry shortly",
            retry_after=RETRY_AFTER_SECONDS,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
        return Unavailable(
            f"a backend is unreachable ({exc.strerror}); retry shortly",
            retry_after=RETRY_AFTER_SECONDS,
        )
    return None


def _from_dbapi(exc: sa_exc.DBAPIError) -> TuskError | None:
    original = exc.orig
    sqlstate = str(getattr(original, "sqlstate", None) or getattr(original, "pgcode", "") or "")
    if isinstance(exc, sa_exc.DataError) or sqlstate.startswith(_DATA_SQLSTATES):
        return InvalidArgument(f"a value cannot be stored: {_first_line(original)}")
    if (
        exc.connection_invalidated
        or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        or sqlstate.startswith(_TRANSIENT_SQLSTATES)
    ):
        what = "locked" if "locked" in str(original).lower() else "unavailable"
        return Unavailable(
            f"the database is {what} ({_first_line(original)}); retry shortly",
            retry_after=RETRY_AFTER_SECONDS,
        )
    cause = getattr(original, "__cause__", None)
    if any(e is not None and _is_asyncpg_connection_error(e) for e in (original, cause)):
        return Unavailable(
            f"the database is unavailable ({_first_line(original)}); retry shortly",
            retry_after=RETRY_AFTER_SECONDS,
        )
    return None


def _is_asyncpg_connection_error(exc: BaseException) -> bool:
    # By module and name, so that services on SQLite need not import asyncpg to ask.
    if not type(exc).__module__.startswith("asyncpg"):
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "PostgresConnectionError",
            "ConnectionDoesNotExistError",
            "InterfaceError",
            "CannotConnectNowError",
            "AdminShutdownError",
            "CrashShutdownError",
            "OperatorInterventionError",
            "TooManyConnectionsError",
        }
    )


def _first_line(error: object) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
