"""The scheduler's tables (prefix ``scheduler_``): execution state, nothing else.

A job row is the trigger's ``job.created`` plus how far its execution got; the output and meta
commit ids are recorded as soon as they are opened, so that a restarted scheduler resumes the
same commits. Datum rows are the job's datums with their outcome; shard rows are the workers
started for it (the runner's handle, e.g. a pid, is what re-adoption looks for). Processed
datums are what incremental jobs skip: one row per pipeline version and datum id, with the
outputs to carry forward.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tusk.db import Base, UTCDateTime
from tusk.events.consumer import processed_events_table
from tusk.events.outbox import outbox_table

BigId = BigInteger().with_variant(Integer(), "sqlite")

# Job states, in order; the last three are final.
CREATED, STARTING, RUNNING, FINISHING = "created", "starting", "running", "finishing"
SUCCESS, FAILURE, KILLED = "success", "failure", "killed"
FINAL_STATES = (SUCCESS, FAILURE, KILLED)
ACTIVE_STATES = (CREATED, STARTING, RUNNING, FINISHING)

# Datum states.
PENDING, DATUM_RUNNING, DATUM_SUCCESS, SKIPPED, FAILED, RECOVERED = (
    "pending",
    "running",
    "success",
    "skipped",
    "failed",
    "recovered",
)

# Shard states: ``started`` once the runner has it; ``done`` once its results are read.
SHARD_PENDING, SHARD_STARTED, SHARD_DONE = "pending", "started", "done"


class JobRow(Base):
    __tablename__ = "scheduler_jobs"
    __table_args__ = (Index("ix_scheduler_jobs_state_seq", "state", "seq"),)

    # Insertion order is creation order per pipeline: job.created is keyed by pipeline.
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    pipeline: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    global_id: Mapped[str] = mapped_column(String(32))
    output_repo: Mapped[str] = mapped_column(String(63))
    output_branch: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    output_commit: Mapped[str | None] = mapped_column(String(32))
    meta_commit: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where egress stands: {url, state, files, bytes, error, finished_at}; None without egress.
    egress: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DatumRow(Base):
    __tablename__ = "scheduler_datums"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    datum: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    shard: Mapped[int | None] = mapped_column(Integer)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ShardRow(Base):
    __tablename__ = "scheduler_shards"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    handle: Mapped[str | None] = mapped_column(String(255))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProcessedDatumRow(Base):
    """A datum a job of this pipeline version processed successfully, and what it wrote.
    Later jobs look it up by ``identity`` (what the output depends on), not by version."""

    __tablename__ = "scheduler_processed_datums"
    __table_args__ = (
        Index("ix_scheduler_processed_datums_identity", "pipeline", "identity", "datum"),
    )

    pipeline: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    datum: Mapped[str] = mapped_column(String(64), primary_key=True)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    job: Mapped[str] = mapped_column(String(32))
    identity: Mapped[str] = mapped_column(String(64), server_default="")


outbox = outbox_table("scheduler", Base.metadata)
processed_events = processed_events_table("scheduler", Base.metadata)
