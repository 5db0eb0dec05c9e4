"""What of a pipeline spec travels in ``job.created``: everything the scheduler runs, nothing
it does not (free text such as the description), under a size bound checked when the spec is
stored, so that every job event of a pipeline fits in one broker record."""

from __future__ import annotations

import json
from typing import Any

from tusk.errors import PayloadTooLarge

# Well under the 1 MB of a Kafka record, leaving room for the job's inputs and attributes.
MAX_JOB_SPEC_BYTES = 256 * 1024
_NOT_FOR_THE_SCHEDULER = frozenset({"description"})


def job_spec(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in _NOT_FOR_THE_SCHEDULER}


def check_job_spec_size(document: dict[str, Any]) -> None:
    """Refuse a spec whose jobs' events would be too large to publish (413, naming it)."""
    size = len(json.dumps(job_spec(document), ensure_ascii=False).encode())
    if size > MAX_JOB_SPEC_BYTES:
        raise PayloadTooLarge(
            f"the spec without its description is {size} bytes once normalised, over the "
            f"{MAX_JOB_SPEC_BYTES}-byte limit for what each job carries; move large values "
            "(environment, stdin, command lines) into files in a repo"
        )
