"""What of a pipeline spec a job runs: everything but free text such as the description,
under a size bound checked when the spec is stored. ``job.created`` names it by digest (the
scheduler reads it by id); the bound keeps what the scheduler stores and reads per job small,
and lets an older scheduler, which takes the spec inline (``job.created.v1``), still fit it in
one broker record."""

from __future__ import annotations

import json
from typing import Any

from tusk.errors import PayloadTooLarge
from tusk.wire.specs import runnable_spec as job_spec

__all__ = ["MAX_JOB_SPEC_BYTES", "check_job_spec_size", "job_spec"]

# Well under the 1 MB of a Kafka record, leaving room for the job's inputs and attributes.
MAX_JOB_SPEC_BYTES = 256 * 1024


def check_job_spec_size(document: dict[str, Any]) -> None:
    """Refuse a spec whose jobs' events would be too large to publish (413, naming it)."""
    size = len(json.dumps(job_spec(document), ensure_ascii=False).encode())
    if size > MAX_JOB_SPEC_BYTES:
        raise PayloadTooLarge(
            f"the spec without its description is {size} bytes once normalised, over the "
            f"{MAX_JOB_SPEC_BYTES}-byte limit for what each job carries; move large values "
            "(environment, stdin, command lines) into files in a repo"
        )
