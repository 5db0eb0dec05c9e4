"""The trigger service's tables (prefix ``trigger_``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tusk.db import Base, UTCDateTime
from tusk.events.consumer import processed_events_table
from tusk.events.outbox import outbox_table


class PipelineRow(Base):
    __tablename__ = "trigger_pipelines"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # running | stopped
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PipelineVersionRow(Base):
    __tablename__ = "trigger_pipeline_versions"

    pipeline: Mapped[str] = mapped_column(
        ForeignKey("trigger_pipelines.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobRow(Base):
    __tablename__ = "trigger_jobs"
    # The natural key that makes job creation idempotent under redelivered events.
    __table_args__ = (UniqueConstraint("pipeline", "version", "input_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[int] = mapped_column(Integer)
    input_key: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    global_id: Mapped[str] = mapped_column(String(32))
    output_repo: Mapped[str] = mapped_column(String(63))
    output_branch: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    output_commit: Mapped[str | None] = mapped_column(String(32))
    counts: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CronRow(Base):
    """When a pipeline's cron input ticks next. A tick is a commit to the input's cron repo."""

    __tablename__ = "trigger_cron"

    pipeline: Mapped[str] = mapped_column(
        ForeignKey("trigger_pipelines.name", ondelete="CASCADE"), primary_key=True
    )
    input_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    repo: Mapped[str] = mapped_column(String(63))
    spec: Mapped[str] = mapped_column(String(255))
    overwrite: Mapped[bool]
    next_tick_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BranchScheduleRow(Base):
    """When a pipeline input's cron branch trigger (``pfs.trigger.cron_spec``) looks next at
    its watched branch, to move the input branch there if it has grown."""

    __tablename__ = "trigger_branch_schedules"

    pipeline: Mapped[str] = mapped_column(
        ForeignKey("trigger_pipelines.name", ondelete="CASCADE"), primary_key=True
    )
    input_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    repo: Mapped[str] = mapped_column(String(63))
    branch: Mapped[str] = mapped_column(String(255))  # the input branch, which is moved
    watched: Mapped[str] = mapped_column(String(255))  # the branch commits land on
    spec: Mapped[str] = mapped_column(String(255))
    next_tick_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The commit a claimed tick moves the input branch to, until its jobs are made: a tick
    # interrupted by a crash is finished after a restart, never claimed a second time.
    firing: Mapped[str | None] = mapped_column(String(32))


outbox = outbox_table("trigger", Base.metadata)
processed_events = processed_events_table("trigger", Base.metadata)
