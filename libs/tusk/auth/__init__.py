"""Who is calling and what they may do: identities, roles, tokens and their verification.

Identities live in the repo service's tables (it is the service every other one already
trusts for data, and the one a worker talks to). The other services verify a token by asking
the repo service who holds it (``GET /v1/auth/whoami``), keeping the answer for a few seconds.
"""

from tusk.auth.principal import (
    ANONYMOUS,
    ROLES,
    Grant,
    Principal,
    Resource,
    Role,
    WorkerScope,
    parse_resource,
)

__all__ = [
    "ANONYMOUS",
    "ROLES",
    "Grant",
    "Principal",
    "Resource",
    "Role",
    "WorkerScope",
    "parse_resource",
]
