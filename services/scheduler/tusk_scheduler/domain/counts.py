"""A job's datum counts, as the events carry them and the job row keeps them."""

from __future__ import annotations

from collections.abc import Mapping

from tusk.events.types import DatumCounts
from tusk_scheduler.tables import DATUM_SUCCESS, FAILED, RECOVERED, SKIPPED


def empty_counts() -> dict[str, int]:
    return DatumCounts().model_dump()


def counts_from_states(by_state: Mapping[str, int]) -> DatumCounts:
    """Counts from the number of datums in each state."""
    return DatumCounts(
        total=sum(by_state.values()),
        processed=by_state.get(DATUM_SUCCESS, 0),
        skipped=by_state.get(SKIPPED, 0),
        failed=by_state.get(FAILED, 0),
        recovered=by_state.get(RECOVERED, 0),
    )
