"""Which failures are worth retrying: a backend that is down, restarting or unreachable.

A consumer that mistakes a database restart for a bad event dead-letters the event and moves
on: the event's effect is lost. So a failure counts as transient when the connection to a
backend broke or could not be made, however the driver spells it: an OSError or timeout
anywhere in its causes, a connection SQLAlchemy invalidated, or a PostgreSQL SQLSTATE of
class 08 (connection exception), 57P01-57P03 (shutdown, crash, "not yet accepting
connections") or 53300 (too many connections); and SQLite's "database is locked".
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from tusk.errors import Unavailable

_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_transient(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Unavailable | OSError | TimeoutError):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            orig = current.orig
            state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
            if isinstance(state, str) and (state.startswith("08") or state in _SQLSTATES):
                return True
            if "database is locked" in str(orig):
                return True
            current = orig if isinstance(orig, BaseException) else current.__cause__
            continue
        current = current.__cause__ or current.__context__
    return False
