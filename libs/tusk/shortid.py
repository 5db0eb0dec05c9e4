"""Short ids: any unique prefix of an id, at least ``MIN_PREFIX`` characters long, names it.

The CLI prints the first 8 characters of job and commit ids; a user copies what they see.
A prefix that matches several ids is refused with the candidates listed, never guessed.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tusk.errors import InvalidArgument

MIN_PREFIX = 8
SHOWN_CANDIDATES = 5
HEX_PREFIX_RE = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX},}}$")


def is_prefix(text: str, full_length: int) -> bool:
    """True when ``text`` can only be a shortened hex id (not a whole one)."""
    return len(text) < full_length and bool(HEX_PREFIX_RE.fullmatch(text))


async def expand(
    session: AsyncSession,
    column: InstrumentedAttribute[str],
    prefix: str,
    *where: ColumnElement[bool],
    kind: str,
) -> str | None:
    """The one id in ``column`` starting with ``prefix`` (among rows matching ``where``), or
    None when there is none; several raise ``InvalidArgument`` naming them."""
    if len(prefix) < MIN_PREFIX:
        return None
    query: Any = (
        select(column)
        .where(column.startswith(prefix, autoescape=True), *where)
        .order_by(column)
        .limit(SHOWN_CANDIDATES + 1)
    )
    found = list((await session.scalars(query)).all())
    if len(found) > 1:
        listed = ", ".join(found[:SHOWN_CANDIDATES])
        more = " and more" if len(found) > SHOWN_CANDIDATES else ""
        raise InvalidArgument(
            f"{kind} id prefix {prefix!r} is ambiguous: it matches {listed}{more}; "
            "give more characters",
            candidates=found[:SHOWN_CANDIDATES],
        )
    return found[0] if found else None
