"""What a job runs of its pipeline's spec, and the digest that names it.

``job.created`` carries the pipeline's name, version and this digest rather than the spec: an
event stays small whatever a spec holds, and the scheduler reads the spec by id (from jobs it
already stores, else from the trigger) and checks that it is the one the job was made for (a
pipeline deleted and created again starts over at version 1, with another spec)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from tusk.wire.base import WireModel

# Free text that changes nothing a job does.
_NOT_RUN = frozenset({"description"})


def runnable_spec(document: dict[str, Any]) -> dict[str, Any]:
    """The spec as a job runs it: the stored document without its free text."""
    return {k: v for k, v in document.items() if k not in _NOT_RUN}


def spec_digest(document: dict[str, Any]) -> str:
    """SHA-256 of the runnable spec in canonical JSON (sorted keys, UTF-8)."""
    canonical = json.dumps(
        runnable_spec(document), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class PipelineVersionSpec(WireModel):
    """One version of a pipeline's spec, as stored when it was created or updated."""

    pipeline: str
    version: int
    digest: str  # spec_digest(spec): what job.created names the spec by
    spec: dict[str, Any]
    created_at: datetime
